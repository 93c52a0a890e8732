//! `doctor ports`, `doctor tree` and `doctor snapshot`: observe (or load) a snapshot, analyse it,
//! render it.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::Context;
use comfy_table::{ContentArrangement, Table};
use serde::Serialize;

use crate::analysis::{Analysis, Identity, Job};
use crate::error::user_error;
use crate::model::finding::{Finding, Severity, worth_exit_1};
use crate::model::snapshot::{SCHEMA_VERSION, Snapshot, Unreadable};
use crate::render::{self, Format, Paint, paint};
use crate::sys::observe;

/// A port number from the command line: 1-65535.
pub fn parse_port(s: &str) -> Result<u16, String> {
    match s.trim().parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => Ok(p as u16),
        Ok(p) => Err(format!("{p} is not a usable port (ports are 1-65535)")),
        Err(_) => Err(format!("'{s}' is not a port number (ports are 1-65535)")),
    }
}

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
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Analyse a snapshot written by `doctor snapshot` instead of this machine
    #[arg(long, value_name = "FILE")]
    from: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct TreeArgs {
    /// The tree around this process
    #[arg(long, conflicts_with = "port")]
    pid: Option<i32>,
    /// The trees around the holders of this port
    #[arg(long, value_parser = parse_port)]
    port: Option<u16>,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Analyse a snapshot written by `doctor snapshot` instead of this machine
    #[arg(long, value_name = "FILE")]
    from: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct SnapshotArgs {
    /// Write to FILE instead of stdout (format from the extension: .json, else YAML)
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// json or yaml (table is not a snapshot format)
    #[arg(long, value_enum)]
    format: Option<Format>,
}

fn load_or_observe(from: &Option<PathBuf>) -> anyhow::Result<Snapshot> {
    match from {
        Some(path) => Snapshot::load(path),
        None => Ok(observe::snapshot()),
    }
}

/// One row of `doctor ports`: a (socket, holding process) pair.
#[derive(Serialize)]
pub struct Holder {
    pub port: u16,
    pub proto: String,
    pub state: String,
    pub local: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    pub inode: u64,
    pub pid: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ppid: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pgid: Option<i32>,
    pub uid: u32,
    pub role: Option<&'static str>,
    pub rank: Option<i64>,
    pub local_rank: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<Identity>,
    pub job: Option<String>,
    pub age_seconds: Option<f64>,
    pub command: Option<String>,
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

/// Rows for the sockets in scope: rendezvous ports (local or remote side), and with `all`
/// every listening socket.
pub fn holders(a: &Analysis, all: bool) -> Vec<Holder> {
    let snap = a.snap;
    let mut rows = Vec::new();
    for s in &snap.sockets {
        let local_in = a.rendezvous_ports.contains(&s.local_port);
        let remote_in = a.rendezvous_ports.contains(&s.remote_port)
            && s.state != "LISTEN"
            && s.remote_port != 0;
        let listening = s.state == "LISTEN"
            || (s.proto == crate::model::snapshot::Proto::Udp && s.state == "UNCONN");
        if !(local_in || remote_in || (all && listening)) {
            continue;
        }
        let port = if local_in || !remote_in {
            s.local_port
        } else {
            s.remote_port
        };
        let pids = a.holders.get(&s.inode).cloned().unwrap_or_default();
        let base = |pid: Option<i32>| {
            let p = pid.and_then(|pid| a.process(pid));
            let id = pid.and_then(|pid| a.identity(pid)).cloned();
            Holder {
                port,
                proto: format!("{:?}", s.proto).to_lowercase(),
                state: s.state.clone(),
                local: format!("{}:{}", bracket(&s.local_addr), s.local_port),
                remote: (s.remote_port != 0)
                    .then(|| format!("{}:{}", bracket(&s.remote_addr), s.remote_port)),
                inode: s.inode,
                pid,
                ppid: p.map(|p| p.ppid),
                pgid: p.map(|p| p.pgid),
                uid: p.map_or(s.uid, |p| p.uid),
                role: pid.map(|pid| a.role(pid).name()),
                rank: id.as_ref().and_then(|i| i.rank),
                local_rank: id.as_ref().and_then(|i| i.local_rank),
                identity: id,
                job: pid.and_then(|pid| a.job(pid)).map(|j| j.id.clone()),
                age_seconds: p.map(|p| ((snap.taken_at - p.start_time) * 10.0).round() / 10.0),
                command: p.map(|p| p.command()),
            }
        };
        if pids.is_empty() {
            rows.push(base(None));
        } else {
            rows.extend(pids.into_iter().map(|pid| base(Some(pid))));
        }
    }
    let state_order = |s: &str| if s == "LISTEN" { 0 } else { 1 };
    rows.sort_by(|x, y| {
        (x.port, state_order(&x.state), &x.state, x.pid, x.inode).cmp(&(
            y.port,
            state_order(&y.state),
            &y.state,
            y.pid,
            y.inode,
        ))
    });
    rows
}

fn bracket(addr: &std::net::IpAddr) -> String {
    match addr {
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        v4 => v4.to_string(),
    }
}

pub fn ports(args: PortsArgs) -> anyhow::Result<i32> {
    if let Some(port) = args.check {
        return Ok(check(port));
    }
    let snap = load_or_observe(&args.from)?;
    let a = Analysis::new(&snap, &args.port);
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

fn terminal_width() -> Option<usize> {
    use std::io::IsTerminal;
    if let Some(c) = std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()) {
        return Some(c);
    }
    if !std::io::stdout().is_terminal() {
        return None;
    }
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes a winsize into the pointer we pass.
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0;
    (ok && ws.ws_col > 0).then_some(ws.ws_col as usize)
}

fn ports_table(rows: &[Holder], scope: &[u16]) -> String {
    if rows.is_empty() {
        let list = scope
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        return if scope.is_empty() {
            "no listening sockets\n".into()
        } else {
            format!("no sockets on the rendezvous ports ({list})\n")
        };
    }
    let mut table = Table::new();
    table.load_style(comfy_table::presets::NOTHING);
    table.set_header([
        "PORT", "STATE", "PID", "ROLE", "RANK", "JOB", "AGE", "COMMAND",
    ]);
    let cells: Vec<[String; 8]> = rows
        .iter()
        .map(|h| {
            let state = match (&h.remote, h.state.as_str()) {
                (Some(r), s) if s != "LISTEN" && !h.local.ends_with(&format!(":{}", h.port)) => {
                    format!("{s} ->{}", r.rsplit(':').next().unwrap_or(""))
                }
                (_, s) => s.to_string(),
            };
            [
                h.port.to_string(),
                if h.proto == "udp" {
                    format!("udp {state}")
                } else {
                    state
                },
                h.pid.map_or("-".into(), |p| p.to_string()),
                h.role.unwrap_or("-").to_string(),
                h.identity
                    .as_ref()
                    .map(|i| i.label())
                    .filter(|l| !l.is_empty())
                    .unwrap_or("-".into()),
                h.job.clone().unwrap_or("-".into()),
                h.age_seconds.map_or("-".into(), render::age),
                h.command.clone().unwrap_or("-".into()),
            ]
        })
        .collect();
    let fixed: usize = (0..7)
        .map(|c| {
            cells
                .iter()
                .map(|r| r[c].chars().count())
                .max()
                .unwrap_or(0)
                .max(5)
                + 2
        })
        .sum();
    let width = terminal_width();
    for mut r in cells {
        if let Some(w) = width {
            r[7] = render::shorten(&r[7], w.saturating_sub(fixed).max(20));
        }
        table.add_row(r);
    }
    table.set_content_arrangement(ContentArrangement::Disabled);
    let mut s = table.trim_fmt();
    s.push('\n');
    s
}

/// Findings as a person reads them: code, severity, message, fix.
pub fn render_findings(findings: &[Finding], color: bool) -> String {
    let mut s = String::new();
    if findings.is_empty() {
        return s;
    }
    s.push('\n');
    for f in findings {
        let sev = match f.severity {
            Severity::Error => paint("error", Paint::Red, color),
            Severity::Warning => paint("warning", Paint::Yellow, color),
            Severity::Info => paint("info", Paint::Blue, color),
        };
        s.push_str(&format!("{sev}[{}] {}: {}\n", f.code, f.name, f.message));
        s.push_str(&format!(
            "  {} {}\n",
            paint("fix:", Paint::Green, color),
            f.fix
        ));
    }
    s
}

fn permission_note(snap: &Snapshot) {
    let denied: BTreeSet<i32> = snap
        .unreadable
        .iter()
        .filter(|u| u.reason == "permission denied")
        .map(|u| u.pid)
        .collect();
    if denied.is_empty() {
        return;
    }
    if snap.host.observer_uid == 0 {
        let list: Vec<String> = denied.iter().take(8).map(i32::to_string).collect();
        eprintln!(
            "note: {} processes refused parts of /proc even to root (pid {}); their sockets or environment may be missing",
            denied.len(),
            list.join(", ")
        );
    } else {
        eprintln!(
            "note: {} processes could not be fully read (their sockets or environment are hidden); run as root, \
             or with CAP_SYS_PTRACE in a container, to see them",
            denied.len()
        );
    }
}

// ----- tree -----

#[derive(Serialize)]
pub(crate) struct TreeNode {
    pid: i32,
    role: &'static str,
    state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    identity: Option<Identity>,
    command: String,
    sockets: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    findings: Vec<&'static str>,
    children: Vec<TreeNode>,
}

#[derive(Serialize)]
struct TreeDoc<'a> {
    schema_version: u32,
    hostname: &'a str,
    jobs: &'a [Job],
    trees: Vec<TreeNode>,
    findings: &'a [Finding],
    unreadable: &'a [Unreadable],
}

fn rendezvous_sockets(a: &Analysis, pid: i32) -> Vec<String> {
    a.sockets_of(pid)
        .into_iter()
        .filter(|s| {
            a.rendezvous_ports.contains(&s.local_port)
                || a.rendezvous_ports.contains(&s.remote_port)
        })
        .map(|s| {
            if s.state == "LISTEN" {
                format!("LISTEN :{}", s.local_port)
            } else if a.rendezvous_ports.contains(&s.remote_port) {
                format!("{} ->:{}", s.state, s.remote_port)
            } else {
                format!("{} :{}", s.state, s.local_port)
            }
        })
        .collect()
}

pub(crate) fn build_node(
    a: &Analysis,
    pid: i32,
    keep: &dyn Fn(i32) -> bool,
    depth: usize,
) -> TreeNode {
    let p = a.process(pid);
    let mut children: Vec<i32> = a
        .children(pid)
        .iter()
        .copied()
        .filter(|&c| keep(c))
        .collect();
    // In order of birth (pids wrap around, start times do not).
    children.sort_by(|x, y| {
        let start = |pid: &i32| a.process(*pid).map_or(0.0, |p| p.start_time);
        start(x).total_cmp(&start(y)).then(x.cmp(y))
    });
    TreeNode {
        pid,
        role: a.role(pid).name(),
        state: p.map(|p| p.state.clone()).unwrap_or_default(),
        identity: a.identity(pid).cloned(),
        command: p.map(|p| p.command()).unwrap_or_default(),
        sockets: rendezvous_sockets(a, pid),
        findings: a
            .findings
            .iter()
            .filter(|f| f.pids.contains(&pid))
            .map(|f| f.code)
            .collect(),
        children: if depth > 64 {
            Vec::new()
        } else {
            children
                .into_iter()
                .map(|c| build_node(a, c, keep, depth + 1))
                .collect()
        },
    }
}

pub fn tree(args: TreeArgs) -> anyhow::Result<i32> {
    let snap = load_or_observe(&args.from)?;
    let extra: Vec<u16> = args.port.into_iter().collect();
    let a = Analysis::new(&snap, &extra);
    let (roots, focus): (Vec<i32>, Option<BTreeSet<i32>>) = if let Some(pid) = args.pid {
        if a.process(pid).is_none() {
            return Err(user_error(
                format!("no process with pid {pid}"),
                if args.from.is_some() {
                    "the snapshot has no such pid"
                } else {
                    "it may have exited; `doctor tree` shows the training jobs"
                },
            ));
        }
        let root = tree_root(&a, pid);
        let mut focus: BTreeSet<i32> = a.ancestors(pid).into_iter().collect();
        focus.extend(a.subtree(pid));
        (vec![root], Some(focus))
    } else if let Some(port) = args.port {
        let holder_pids: BTreeSet<i32> = holders(&a, false)
            .into_iter()
            .filter(|h| h.port == port)
            .filter_map(|h| h.pid)
            .collect();
        if holder_pids.is_empty() {
            render::print(&format!("nobody visible holds port {port}\n"));
            permission_note(&snap);
            return Ok(0);
        }
        let mut roots: Vec<i32> = holder_pids.iter().map(|&p| tree_root(&a, p)).collect();
        roots.sort_unstable();
        roots.dedup();
        (roots, None)
    } else {
        (a.jobs.iter().map(|j| j.root).collect(), None)
    };
    let keep = |pid: i32| {
        focus.as_ref().is_none_or(|f| f.contains(&pid))
            || focus
                .as_ref()
                .is_some_and(|_| args.pid.is_some_and(|p| a.ancestors(pid).contains(&p)))
    };
    let trees: Vec<TreeNode> = roots.iter().map(|&r| build_node(&a, r, &keep, 0)).collect();
    // Around a pid or a port, only the findings about what is drawn.
    let mut shown = BTreeSet::new();
    trees.iter().for_each(|t| t.collect_pids(&mut shown));
    let findings: Vec<Finding> = if args.pid.is_some() || args.port.is_some() {
        a.findings
            .iter()
            .filter(|f| f.pids.iter().any(|p| shown.contains(p)))
            .cloned()
            .collect()
    } else {
        a.findings.clone()
    };
    let text = match args.format {
        Format::Table => {
            let color = render::stdout_color();
            let mut s = String::new();
            if trees.is_empty() {
                s.push_str("no training jobs found (no launcher, rank or process with MASTER_PORT/RANK in its environment)\n");
            }
            for (t, root) in trees.iter().zip(&roots) {
                if let Some(job) = a.job(*root) {
                    let port = job
                        .master_port
                        .map(|p| format!(" on port {p}"))
                        .unwrap_or_default();
                    let gone = if job.launcher_gone {
                        " (launcher gone)"
                    } else {
                        ""
                    };
                    s.push_str(&format!(
                        "{}{port}{gone}\n",
                        paint(&job.id, Paint::Bold, color)
                    ));
                }
                draw(t, "", true, true, &mut s, color);
                s.push('\n');
            }
            for f in findings.iter().filter(|f| !f.path.is_empty()) {
                let chain: Vec<String> = f
                    .path
                    .iter()
                    .map(|&p| format!("{p} {}", a.role(p).name()))
                    .collect();
                s.push_str(&format!("{} path: {}\n", f.code, chain.join(" -> ")));
            }
            s.push_str(&render_findings(&findings, color));
            s
        }
        f => render::document(
            &TreeDoc {
                schema_version: SCHEMA_VERSION,
                hostname: &snap.host.hostname,
                jobs: &a.jobs,
                trees,
                findings: &findings,
                unreadable: &snap.unreadable,
            },
            f,
        )?,
    };
    render::print(&text);
    permission_note(&snap);
    Ok(if worth_exit_1(&findings) { 1 } else { 0 })
}

impl TreeNode {
    fn collect_pids(&self, out: &mut BTreeSet<i32>) {
        out.insert(self.pid);
        self.children.iter().for_each(|c| c.collect_pids(out));
    }
}

/// The top of the job a process belongs to, or its top-most ancestor below init.
fn tree_root(a: &Analysis, pid: i32) -> i32 {
    if let Some(job) = a.job(pid) {
        return job.root;
    }
    a.ancestors(pid)
        .into_iter()
        .rfind(|&p| p > 1 && a.process(p).is_some_and(|q| q.ppid > 1))
        .unwrap_or(pid)
}

fn draw(node: &TreeNode, prefix: &str, last: bool, top: bool, out: &mut String, color: bool) {
    let branch = if top {
        ""
    } else if last {
        "└─ "
    } else {
        "├─ "
    };
    let id = node
        .identity
        .as_ref()
        .map(|i| i.label())
        .filter(|l| !l.is_empty())
        .map(|l| format!(" [{l}]"))
        .unwrap_or_default();
    let state = match node.state.as_str() {
        "Z" => " <zombie>",
        "D" => " <D: uninterruptible>",
        _ => "",
    };
    let socks = if node.sockets.is_empty() {
        String::new()
    } else {
        format!("  {{{}}}", node.sockets.join(", "))
    };
    let marks = if node.findings.is_empty() {
        String::new()
    } else {
        paint(
            &format!("  <- {}", node.findings.join(" ")),
            Paint::Red,
            color,
        )
    };
    let head = format!(
        "{prefix}{branch}{} {}{id}{state} ",
        node.pid,
        paint(node.role, Paint::Bold, color)
    );
    let command = match terminal_width() {
        Some(w) => render::shorten(
            &node.command,
            w.saturating_sub(head.chars().count() + 2).max(24),
        ),
        None => node.command.clone(),
    };
    out.push_str(&format!("{head}{command}{socks}{marks}\n"));
    let child_prefix = if top {
        prefix.to_string()
    } else {
        format!("{prefix}{}", if last { "   " } else { "│  " })
    };
    for (i, c) in node.children.iter().enumerate() {
        draw(
            c,
            &child_prefix,
            i + 1 == node.children.len(),
            false,
            out,
            color,
        );
    }
}

// ----- snapshot -----

pub fn snapshot(args: SnapshotArgs) -> anyhow::Result<i32> {
    let format = match (args.format, &args.output) {
        (Some(Format::Table), _) => {
            return Err(user_error(
                "a snapshot is written as yaml or json",
                "use --format yaml or --format json",
            ));
        }
        (Some(f), _) => f,
        (None, Some(p)) if p.extension().is_some_and(|e| e == "json") => Format::Json,
        _ => Format::Yaml,
    };
    let snap = observe::snapshot();
    let text = render::document(&snap, format)?;
    match args.output {
        Some(path) => {
            std::fs::write(&path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!(
                "wrote {} ({} processes, {} sockets); analyse it with `doctor ports --from {}`",
                path.display(),
                snap.processes.len(),
                snap.sockets.len(),
                path.display()
            );
        }
        None => render::print(&text),
    }
    permission_note(&snap);
    Ok(0)
}
