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
    /// Print the manual page (roff) of doctor and all its commands (`doctor man > doctor.1`)
    Man,
}

fn main() {
    let cli = Cli::parse();
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
