//! `doctor`: finds who holds the PyTorch rendezvous port, why, and how to fix it.

use clap::{Parser, Subcommand};

use ddp_doctor::cmd::{merge, ports, report, repro, run, snapshot, tree};
use ddp_doctor::error::UserError;
use ddp_doctor::render;

/// The exit-code contract, word for word the same in README.md (a test compares them).
const EXIT_CODES: &str = "Exit codes: 0 nothing at warning level or worse was found, 1 a finding at warning level or \
     worse, 2 usage, input or internal error (an `error:` and a `hint:` line); `doctor run` exits with the \
     command's status.";

#[derive(Parser)]
#[command(
    name = "doctor",
    version,
    about = "Diagnoses EADDRINUSE and rendezvous hangs in PyTorch / Lightning distributed training",
    after_help = EXIT_CODES
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Print only the document and errors: no notes, no progress
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Also print notes that rarely matter (repeatable)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// When to use colour (auto honours NO_COLOR, FORCE_COLOR and CLICOLOR_FORCE)
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "auto",
        value_name = "WHEN"
    )]
    color: render::ColorChoice,
    /// Show secrets in command lines, environment and URLs instead of `[redacted]` (local use only)
    #[arg(long, global = true)]
    show_secrets: bool,
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

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => usage_error(err),
    };
    render::configure(render::Settings {
        quiet: cli.quiet,
        verbose: cli.verbose,
        color: cli.color,
        show_secrets: cli.show_secrets,
    });
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

/// clap's usage errors in doctor's shape: `error:` and a `hint:` line (clap's tip, or where to
/// look), exit 2; `--help` and `--version` go to stdout with 0.
fn usage_error(err: clap::Error) -> ! {
    use clap::error::ErrorKind;
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        err.exit();
    }
    let text = err.render().to_string();
    let mut lines = Vec::new();
    let mut hint = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if let Some(tip) = trimmed.strip_prefix("tip: ") {
            hint.get_or_insert_with(|| tip.to_string());
        } else if let Some(values) = trimmed
            .strip_prefix("[possible values: ")
            .and_then(|v| v.strip_suffix(']'))
        {
            hint = Some(format!("possible values: {values}"));
        } else if !line.trim().is_empty() && !line.starts_with("For more information") {
            lines.push(render::escape_control(line).into_owned());
        }
    }
    let color = render::stderr_color();
    let first = lines
        .first()
        .map(String::as_str)
        .unwrap_or("error: bad usage");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    eprintln!(
        "{} {first}",
        render::paint("error:", render::Paint::Red, color)
    );
    for l in &lines[1.min(lines.len())..] {
        eprintln!("{l}");
    }
    let hint = hint.unwrap_or_else(|| "see `doctor --help` or `doctor COMMAND --help`".into());
    eprintln!(
        "{} {hint}",
        render::paint("hint:", render::Paint::Blue, color)
    );
    std::process::exit(2);
}

fn report_error(err: &anyhow::Error) {
    let color = render::stderr_color();
    let label = render::paint("error:", render::Paint::Red, color);
    eprintln!("{label} {err:#}");
    if let Some(hint) = err
        .downcast_ref::<UserError>()
        .and_then(|u| u.hint.as_deref())
    {
        let label = render::paint("hint:", render::Paint::Blue, color);
        eprintln!("{label} {hint}");
    }
}
