//! `doctor`: finds who holds the PyTorch rendezvous port, why, and how to fix it.

use clap::{Parser, Subcommand};

use ddp_doctor::cmd::{merge, ports, report, repro, run, snapshot, tree};
use ddp_doctor::error::UserError;
use ddp_doctor::render;

#[derive(Parser)]
#[command(
    name = "doctor",
    version,
    about = "Diagnoses EADDRINUSE and rendezvous hangs in PyTorch / Lightning distributed training",
    after_help = "Exit codes: 0 nothing found, 1 found something at warning level or worse, 2 usage or internal error."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Who holds the rendezvous ports, and what they are to the training job
    Ports(ports::PortsArgs),
    /// The process trees of training jobs, with roles, ranks and rendezvous sockets
    Tree(tree::TreeArgs),
    /// Write a snapshot of processes, sockets and host facts for later analysis
    Snapshot(snapshot::SnapshotArgs),
    /// Static check of Python code: distributed launches that run at import time (S001-S003)
    Scan(ddp_doctor::cmd::scan::ScanArgs),
    /// Run the bundled spawn/fork/forkserver reproductions (bug and fix) and verify the fix
    Repro(repro::ReproArgs),
    /// Run a training command, watch every bind, explain a rendezvous failure, leave nothing behind
    Run(run::RunArgs),
    /// One document for a support ticket: host, GPUs, Python packages, rendezvous environment,
    /// port holders, jobs and findings, with secrets redacted
    Report(report::ReportArgs),
    /// Merge the reports of several nodes into one cluster view: master node, ranks per node,
    /// duplicate ranks, ports held by other jobs, version mismatches
    Merge(merge::MergeArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// `eprintln!` that ignores a failed write (stderr on a closed pipe or `/dev/full`).
macro_rules! eprintln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

macro_rules! eprint {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr(), $($arg)*);
    }};
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => exit_usage(e),
    };
    let result = match cli.command {
        Command::Ports(args) => ports::ports(args),
        Command::Tree(args) => tree::tree(args),
        Command::Snapshot(args) => snapshot::snapshot(args),
        Command::Run(args) => run::main(args),
        Command::Scan(args) => ddp_doctor::cmd::scan::scan(args),
        Command::Report(args) => report::report(args),
        Command::Merge(args) => merge::merge(args),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "doctor", &mut out);
            render::print(&String::from_utf8_lossy(&out));
            Ok(0)
        }
        Command::Repro(args) => repro::main(args),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            report_error(&err);
            std::process::exit(2);
        }
    }
}

/// Clap's own errors (help, version, bad flags): a bad flag gets clap's `error:` line and a
/// `hint:` line, exit 2; help and version go to stdout, exit 0.
fn exit_usage(e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        std::process::exit(e.exit_code());
    }
    let text = e.render().to_string();
    let color = render::stderr_color();
    let label = render::paint("hint:", render::Paint::Blue, color);
    let mut out = String::new();
    for line in text.lines() {
        match line.strip_prefix("For more information, try ") {
            Some(rest) => out.push_str(&format!("{label} for more information, try {rest}\n")),
            None if line.is_empty() => {}
            None => out.push_str(&format!("{line}\n")),
        }
    }
    if !out.contains("hint:") {
        out.push_str(&format!("{label} see `doctor --help`\n"));
    }
    eprint!("{out}");
    std::process::exit(2);
}

fn report_error(err: &anyhow::Error) {
    let color = render::stderr_color();
    let label = render::paint("error:", render::Paint::Red, color);
    eprintln!("{label} {err:#}");
    // Every exit-2 error gets a hint: its own, or where to look next.
    let hint = err
        .downcast_ref::<UserError>()
        .and_then(|u| u.hint.as_deref())
        .unwrap_or("see `doctor --help` and the command's `--help`");
    let label = render::paint("hint:", render::Paint::Blue, color);
    eprintln!("{label} {hint}");
}
