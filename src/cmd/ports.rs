//! `doctor ports`: who holds the rendezvous ports, and what they are to the training job.

use std::path::PathBuf;

use serde::Serialize;

use crate::analysis::holders::{Holder, holders};
use crate::analysis::{Analysis, Job};
use crate::cmd::{analyse, load_or_inspect, parse_port};
use crate::model::finding::{Finding, worth_exit_1};
use crate::model::snapshot::{SCHEMA_VERSION, Unreadable};
use crate::render::findings::render_findings;
use crate::render::table::ports_table;
use crate::render::{self, Format, permission_note};
use crate::sys::{freeport, observe};

#[derive(clap::Args)]
pub struct PortsArgs {
    /// Also look at this port (repeatable); by default every MASTER_PORT seen, 29500 and 29400
    #[arg(long, value_parser = parse_port)]
    port: Vec<u16>,
    /// Show every listening socket, not only rendezvous ports
    #[arg(long)]
    all: bool,
    /// Print nothing; exit 0 when PORT is free to bind, 1 when it is taken (holder on stderr)
    #[arg(long, value_name = "PORT", value_parser = parse_port, conflicts_with_all = ["all", "from"])]
    check: Option<u16>,
    /// Print one port that is free now (a bind succeeds), below the ephemeral range, not reserved
    /// and named by no job; exit 1 when there is none
    #[arg(long, conflicts_with_all = ["all", "from", "check"])]
    free: bool,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Analyse a snapshot written by `doctor snapshot` instead of this machine
    #[arg(long, value_name = "FILE")]
    from: Option<PathBuf>,
}

#[derive(Serialize)]
struct PortsDoc<'a> {
    schema_version: u32,
    hostname: &'a str,
    ports: Vec<u16>,
    holders: Vec<Holder>,
    jobs: &'a [Job],
    findings: &'a [Finding],
    unreadable: &'a [Unreadable],
}

pub fn ports(args: PortsArgs) -> anyhow::Result<i32> {
    if let Some(port) = args.check {
        return Ok(check(port));
    }
    if args.free {
        return Ok(free(&args.port));
    }
    let snap = load_or_inspect(&args.from, &args.port)?;
    let a = analyse(&snap, &args.port, args.from.is_none());
    let rows = holders(&a, args.all);
    let scope: Vec<u16> = if args.all {
        Vec::new()
    } else {
        a.rendezvous_ports.iter().copied().collect()
    };
    let text = match args.format {
        Format::Table => {
            let mut t = ports_table(&rows, &scope);
            t.push_str(&render_findings(&a.findings, render::stdout_color()));
            t
        }
        f => render::document(
            &PortsDoc {
                schema_version: SCHEMA_VERSION,
                hostname: &snap.host.hostname,
                ports: a.rendezvous_ports.iter().copied().collect(),
                holders: rows,
                jobs: &a.jobs,
                findings: &a.findings,
                unreadable: &snap.unreadable,
            },
            f,
        )?,
    };
    render::print(&text);
    permission_note(&snap);
    Ok(if worth_exit_1(&a.findings) { 1 } else { 0 })
}

/// `--check N`: exit 0 when free, 1 when taken, holder on stderr.
fn check(port: u16) -> i32 {
    if observe::port_is_free(port) {
        return 0;
    }
    let snap = observe::snapshot();
    let a = Analysis::new(&snap, &[port]);
    let rows: Vec<Holder> = holders(&a, false)
        .into_iter()
        .filter(|h| {
            h.port == port && h.state != "TIME_WAIT" && h.local.ends_with(&format!(":{port}"))
        })
        .collect();
    if rows.is_empty() {
        eprintln!(
            "port {port} is taken (no holder visible; run as root to see other users' processes)"
        );
    }
    for h in rows {
        let who = match h.pid {
            Some(pid) => format!(
                "pid {pid} ({}) {}",
                h.role.unwrap_or("?"),
                h.command.as_deref().unwrap_or("")
            ),
            None => "a process doctor cannot see".into(),
        };
        eprintln!("port {port} is taken: {} {} by {who}", h.proto, h.state);
    }
    1
}

/// `--free`: one port a rendezvous can use now, on stdout alone.
fn free(also_taken: &[u16]) -> i32 {
    let snap = observe::snapshot();
    let a = Analysis::facts(&snap, also_taken);
    match freeport::pick(&snap.host, &a.taken_ports()) {
        Some(p) => {
            println!("{p}");
            0
        }
        None => {
            eprintln!(
                "error: no free port below the ephemeral range start {}",
                snap.host.ephemeral_range[0]
            );
            1
        }
    }
}
