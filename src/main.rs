//! `doctor`: finds who holds the PyTorch rendezvous port, why, and how to fix it.

use clap::{Parser, Subcommand};

use ddp_doctor::cmd::{explain, merge, ports, report, repro, run, snapshot, tree};
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
    /// Print the page of a finding code (what, why, fix, example); without CODE, list the codes
    Explain(explain::ExplainArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) of doctor and all its commands (`doctor man > doctor.1`)
    Man,
}

/// `eprintln!` that ignores a failed write (stderr on a closed pipe or `/dev/full`).
macro_rules! eprintln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
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
        Command::Explain(args) => explain::main(args),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "doctor", &mut out);
            render::print(&String::from_utf8_lossy(&out));
            Ok(0)
        }
        Command::Repro(args) => repro::main(args),
        Command::Man => man_page().map(|page| {
            render::print(&page);
            0
        }),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            report_error(&err);
            std::process::exit(2);
        }
    }
}

/// The page `doctor man` prints: clap_mangen's top-level page with one section per command (its
/// synopsis, description and options) between the command list and the exit codes.
fn man_page() -> anyhow::Result<String> {
    use clap::CommandFactory;
    // roff's preamble, which every clap_mangen render_* call writes again: kept once, at the top.
    const PREAMBLE: &str = ".ie \\n(.g .ds Aq \\(aq\n.el .ds Aq '\n";
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let subs: Vec<&clap::Command> = cmd.get_subcommands().filter(|s| !s.is_hide_set()).collect();
    let man = clap_mangen::Man::new(cmd.clone());
    let mut top = Vec::new();
    man.render_title(&mut top)?;
    man.render_name_section(&mut top)?;
    man.render_synopsis_section(&mut top)?;
    man.render_description_section(&mut top)?;
    man.render_options_section(&mut top)?;
    man.render_subcommands_section(&mut top)?;
    let mut page = String::from_utf8(top)?;
    for sub in &subs {
        // The list names a page per command (doctor-ports(1)); they all live on this page.
        let name = sub.get_name();
        let escaped = name.replace('-', "\\-");
        page = page.replace(
            &format!("doctor\\-{escaped}(1)"),
            &format!("\\fBdoctor {escaped}\\fR"),
        );
    }
    for sub in &subs {
        let title = format!("doctor {}", sub.get_name()).to_uppercase();
        let sub_man = clap_mangen::Man::new((*sub).clone());
        let mut part = Vec::new();
        sub_man.render_synopsis_section(&mut part)?;
        sub_man.render_description_section(&mut part)?;
        sub_man.render_options_section(&mut part)?;
        let part = String::from_utf8(part)?
            .replace("\n.SH DESCRIPTION\n", "\n.PP\n")
            .replace("\n.SH ", "\n.SS ")
            .replacen(".SS SYNOPSIS", &format!(".SH \"{title}\""), 1);
        page.push_str(&part);
    }
    let mut tail = Vec::new();
    man.render_extra_section(&mut tail)?;
    man.render_version_section(&mut tail)?;
    // The top-level after_help is the exit codes.
    page.push_str(&String::from_utf8(tail)?.replacen(".SH EXTRA", ".SH \"EXIT STATUS\"", 1));
    Ok(format!("{PREAMBLE}{}", page.replace(PREAMBLE, "")))
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
            // clap's "to pass '--x' as a value, use '-- --x'" is about positional values, which
            // is not what someone typing an option meant: say the option does not exist here.
            if tip.starts_with("to pass '") && tip.contains("as a value, use '-- ") {
                continue;
            }
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
    let hint = hint.unwrap_or_else(|| unknown_option_hint(&err, &text));
    eprintln!(
        "{} {hint}",
        render::paint("hint:", render::Paint::Blue, color)
    );
    std::process::exit(2);
}

/// The hint for an option the command does not have: which command, and where its options are.
fn unknown_option_hint(err: &clap::Error, text: &str) -> String {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    // "Usage: doctor scan [OPTIONS] ..." names the command.
    let command = text
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("Usage: "))
        .map(|u| {
            u.split_whitespace()
                .take_while(|w| !w.starts_with(['[', '<', '-']))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "doctor".into());
    if err.kind() == ErrorKind::UnknownArgument
        && let Some(ContextValue::String(arg)) = err.get(ContextKind::InvalidArg)
    {
        let arg = render::escape_control(arg.split('=').next().unwrap_or(arg)).into_owned();
        return format!("`{command}` has no option {arg}; `{command} --help` lists its options");
    }
    format!("see `{command} --help`")
}

fn report_error(err: &anyhow::Error) {
    render::print_error(err);
}
