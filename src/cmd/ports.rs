//! `doctor ports`: who holds the rendezvous ports, and what they are to the training job.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::Serialize;

use crate::analysis::holders::{Holder, holders};
use crate::analysis::{Analysis, Job};
use crate::cmd::{parse_port, with_analysis};
use crate::model::envelope::{Envelope, Kind};
use crate::model::finding::{Finding, worth_exit_1};
use crate::model::snapshot::Unreadable;
use crate::render::findings::render_findings;
use crate::render::table::ports_table;
use crate::render::{self, Format, escape_control, permission_note};
use crate::sys::{freeport, host, observe};

#[derive(clap::Args)]
pub struct PortsArgs {
    /// Only this port (repeatable; a rendezvous port for the analysis too); by default every
    /// MASTER_PORT seen, 29500 and 29400
    #[arg(long, value_parser = parse_port)]
    port: Vec<u16>,
    /// Widen to every listening socket, not only rendezvous ports
    #[arg(long)]
    all: bool,
    /// Exit 0 when PORT is free to bind, 1 when it is taken (holder on stderr; with
    /// --format json/yaml a document on stdout)
    #[arg(long, value_name = "PORT", value_parser = parse_port, conflicts_with_all = ["all", "from", "port"])]
    check: Option<u16>,
    /// Print one port that is free now (a bind succeeds), below the ephemeral range, not reserved
    /// and named by no job; exit 1 when there is none
    #[arg(long, conflicts_with_all = ["all", "from", "check"])]
    free: bool,
    /// table (default), json or yaml
    #[arg(long, value_enum, alias = "output-format")]
    format: Option<Format>,
    #[command(flatten)]
    out: super::OutputArg,
    /// Analyse a snapshot written by `doctor snapshot` instead of this machine
    #[arg(long, value_name = "FILE")]
    from: Option<PathBuf>,
    /// Explain the rendezvous failure of this live process (the pid that failed to bind or reach
    /// the store, as the `DDP_DOCTOR=1` hook passes its own): the holder, the path between them,
    /// the script line, the fix
    #[arg(long, value_name = "PID", conflicts_with_all = ["all", "from", "check", "free"])]
    failed_pid: Option<i32>,
    /// With --failed-pid: the failing process's output or traceback (`-`: stdin), for the port,
    /// the error and the line of the user's script
    #[arg(long, value_name = "FILE", requires = "failed_pid")]
    output_of: Option<PathBuf>,
}

#[derive(Serialize)]
struct PortsDoc<'a> {
    #[serde(flatten)]
    envelope: Envelope,
    ports: Vec<u16>,
    holders: Vec<Holder>,
    jobs: &'a [Job],
    findings: &'a [Finding],
    unreadable: &'a [Unreadable],
}

pub fn ports(args: PortsArgs) -> anyhow::Result<i32> {
    args.out.check()?;
    if let Some(port) = args.check {
        return check(port, args.out.format(args.format, Format::Table), &args.out);
    }
    if args.free {
        return free(
            &args.port,
            args.out.format(args.format, Format::Table),
            &args.out,
        );
    }
    if let Some(pid) = args.failed_pid {
        return failed(pid, &args);
    }
    with_analysis(&args.from, &args.port, |a| show(&args, a))?
}

/// The table or document of `doctor ports` for analysis `a`; the exit code.
fn show(args: &PortsArgs, a: &Analysis) -> anyhow::Result<i32> {
    let snap = a.snap;
    let mut rows = holders(a, args.all);
    let mut findings = a.findings.clone();
    if args.from.is_none() {
        super::locate_launches(&mut findings, a);
    }
    let mut scope: Vec<u16> = a.rendezvous_ports.iter().copied().collect();
    // `--port` filters (rows and the findings about other ports); `--all` widens again.
    if !args.port.is_empty() && !args.all {
        rows.retain(|h| args.port.contains(&h.port));
        findings.retain(|f| f.ports.is_empty() || f.ports.iter().any(|p| args.port.contains(p)));
        scope = args.port.clone();
    }
    let format = args.out.format(args.format, Format::Table);
    if format == Format::Table {
        // What the findings cannot say (D009 without a world size), said rather than left out.
        let asked = if args.all { &[][..] } else { &args.port[..] };
        for n in a.unjudged_rendezvous(asked) {
            render::note(&render::escape_control(&n));
        }
    }
    let text = match format {
        Format::Table => {
            let users: BTreeMap<u32, String> = rows
                .iter()
                .map(|h| h.uid)
                .collect::<BTreeSet<u32>>()
                .into_iter()
                .filter_map(|uid| host::account_name(uid).map(|n| (uid, n)))
                .collect();
            let mut t = ports_table(&rows, if args.all { &[] } else { &scope }, &users);
            t.push_str(&render_findings(&findings, args.out.color()));
            t
        }
        f => render::document(
            &PortsDoc {
                envelope: Envelope::new(Kind::Ports, &snap.host.hostname, snap.taken_at),
                ports: scope,
                holders: rows,
                jobs: &a.jobs,
                findings: &findings,
                unreadable: &snap.unreadable,
            },
            f,
        )?,
    };
    args.out.finish(&text, snap, &findings)
}

#[derive(Serialize)]
struct CheckDoc {
    #[serde(flatten)]
    envelope: Envelope,
    port: u16,
    free: bool,
    holders: Vec<Holder>,
}

/// `--check N`: exit 0 when free, 1 when taken; the holders on stderr, or a document on
/// stdout with `--format json/yaml`.
fn check(port: u16, format: Format, out: &super::OutputArg) -> anyhow::Result<i32> {
    // EACCES/EPERM (std's PermissionDenied) is "not permitted for this user", not "taken".
    if let Some(err) = crate::sys::sockets::bind_error(port)
        && err.kind() == std::io::ErrorKind::PermissionDenied
        && !crate::sys::supervise::listening_ports().contains(&port)
    {
        let start = crate::sys::proc::sysctl("/proc/sys/net/ipv4/ip_unprivileged_port_start")
            .unwrap_or_else(|| "1024".into());
        eprintln!(
            "port {port} is not permitted for this user ({err}): it is not in use, but binding \
             ports below {start} needs root or CAP_NET_BIND_SERVICE; choose a port above it"
        );
        return Ok(1);
    }
    let free = observe::port_is_free(port);
    let rows: Vec<Holder> = if free {
        Vec::new()
    } else {
        let mut snap = observe::snapshot();
        if !render::settings().show_secrets {
            render::redact::redact_snapshot(&mut snap);
        }
        let a = Analysis::new(&snap, &[port]);
        holders(&a, false)
            .into_iter()
            .filter(|h| {
                h.port == port && h.state != "TIME_WAIT" && h.local.ends_with(&format!(":{port}"))
            })
            .collect()
    };
    let code = if free { 0 } else { 1 };
    if format != Format::Table {
        let doc = CheckDoc {
            envelope: super::envelope(Kind::PortsCheck),
            port,
            free,
            holders: rows,
        };
        out.emit(&render::document(&doc, format)?)?;
        return Ok(code);
    }
    if !free && rows.is_empty() {
        eprintln!(
            "port {port} is taken (no holder visible; run as root to see other users' processes)"
        );
    }
    for h in rows {
        let who = match h.pid {
            Some(pid) => format!(
                "pid {pid} ({}) {}",
                h.role.unwrap_or("?"),
                escape_control(h.command.as_deref().unwrap_or(""))
            ),
            None => "a process doctor cannot see".into(),
        };
        eprintln!("port {port} is taken: {} {} by {who}", h.proto, h.state);
    }
    Ok(code)
}

/// The document of `--free` (docs/schema/ports-free.schema.json): the port, or null.
#[derive(Serialize)]
struct FreeDoc {
    #[serde(flatten)]
    envelope: Envelope,
    port: Option<u16>,
}

/// `--free`: one port a rendezvous can use now, alone on stdout (or as a document).
fn free(also_taken: &[u16], format: Format, out: &super::OutputArg) -> anyhow::Result<i32> {
    let snap = observe::snapshot();
    let a = Analysis::facts(&snap, also_taken);
    let port = freeport::pick(&snap.host, &a.taken_ports());
    if format != Format::Table {
        let doc = FreeDoc {
            envelope: Envelope::new(Kind::PortsFree, &snap.host.hostname, snap.taken_at),
            port,
        };
        out.emit(&render::document(&doc, format)?)?;
    } else if let Some(p) = port {
        out.emit(&format!("{p}\n"))?;
    }
    if port.is_none() {
        eprintln!(
            "error: no free port below the ephemeral range start {}",
            snap.host.ephemeral_range[0]
        );
        return Ok(1);
    }
    Ok(0)
}

/// The document of `--failed-pid` (docs/schema/ports-failed.schema.json).
#[derive(Serialize)]
struct FailedDoc<'a> {
    #[serde(flatten)]
    envelope: Envelope,
    failed_pid: i32,
    diagnosis: &'a crate::analysis::run_diagnosis::Diagnosis,
}

/// `--failed-pid PID [--output-of FILE]`: why the live process PID failed at the rendezvous.
fn failed(pid: i32, args: &PortsArgs) -> anyhow::Result<i32> {
    let text = match &args.output_of {
        Some(p) => read_output_of(p)?,
        None => String::new(),
    };
    let output = crate::analysis::traceback::read_output(&text);
    let snap = crate::cmd::load_or_observe(&None)?;
    if !snap.processes.iter().any(|p| p.pid == pid) {
        return Err(crate::error::user_error(
            format!("process {pid} is not running"),
            "--failed-pid names a live process: the one failing now (the DDP_DOCTOR=1 hook passes its own pid)",
        ));
    }
    let d = crate::analysis::run_diagnosis::diagnose_live(
        &snap,
        pid,
        args.port.first().copied(),
        &output,
        freeport::pick,
    );
    let text = match args.out.format(args.format, Format::Table) {
        Format::Table => crate::render::run::live_explanation(&d, args.out.color()),
        f => render::document(
            &FailedDoc {
                envelope: Envelope::new(Kind::PortsFailed, &snap.host.hostname, snap.taken_at),
                failed_pid: pid,
                diagnosis: &d,
            },
            f,
        )?,
    };
    args.out.emit(&text)?;
    permission_note(&snap);
    Ok(if worth_exit_1(&d.findings) { 1 } else { 0 })
}

/// The text of `--output-of`: a file or stdin, at most 1 MiB (a traceback, not a whole log).
fn read_output_of(path: &std::path::Path) -> anyhow::Result<String> {
    use std::io::Read;
    const LIMIT: u64 = 1 << 20;
    let mut bytes = Vec::new();
    let read = if path.as_os_str() == "-" {
        std::io::stdin().take(LIMIT).read_to_end(&mut bytes)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(LIMIT).read_to_end(&mut bytes))
    };
    read.map_err(|e| {
        crate::error::user_error(
            format!("cannot read {}: {e}", path.display()),
            "--output-of takes a readable file with the failing process's output, or - for stdin",
        )
    })?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}
