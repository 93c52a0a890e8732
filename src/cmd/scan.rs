//! `doctor scan`: the static check, like a linter (text, JSON, SARIF, GitHub annotations).

use serde::Serialize;

use crate::error::user_error;
use crate::render as output;
use crate::scan::render as scan_render;
use crate::scan::{
    Diagnostic, Platform, ScanOptions, Severity, default_start_method, local_python_version,
    parse_version, scan_paths,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ScanFormat {
    /// path:line:col: CODE message, with the source line and a help: line
    Text,
    /// one JSON document (schema_version 1)
    Json,
    /// SARIF 2.1.0, for code-scanning dashboards
    Sarif,
    /// GitHub Actions workflow annotations
    Github,
}

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Rules: S001 module-level-launch, S002 spawn-reimports-main, S003 module-level-cuda, \
S900 parse-error. Exit codes: 0 nothing at warning level or worse, 1 found something, 2 usage error."
)]
pub struct ScanArgs {
    /// Python files or directories (searched for *.py, honouring .gitignore); `-` reads stdin
    #[arg(default_value = ".")]
    pub paths: Vec<String>,

    /// Output format
    #[arg(long, value_enum, default_value_t = ScanFormat::Text)]
    pub format: ScanFormat,

    /// Python version to assume for the default start method (3.14+ on Linux: forkserver)
    /// [default: the version of `python3` on PATH, else 3.11]
    #[arg(long, value_name = "X.Y", value_parser = parse_version)]
    pub python_version: Option<(u32, u32)>,

    /// Platform to assume for the default start method (macos, windows: spawn) [default: this one]
    #[arg(long, value_enum)]
    pub platform: Option<Platform>,

    /// Report only these codes or code prefixes (comma-separated, e.g. S001,S002)
    #[arg(long, value_delimiter = ',', value_name = "CODES")]
    pub select: Vec<String>,

    /// Do not report these codes or code prefixes (comma-separated)
    #[arg(long, value_delimiter = ',', value_name = "CODES")]
    pub ignore: Vec<String>,

    /// Exit 0 even when problems are found
    #[arg(long)]
    pub exit_zero: bool,
}

/// The scan's result, as the JSON document has it.
#[derive(Serialize)]
pub struct ScanDocument<'r> {
    pub schema_version: u32,
    pub findings: Vec<&'r Diagnostic>,
    pub files_scanned: usize,
    pub files_skipped: Vec<Skipped<'r>>,
    pub assumed: Assumed,
}

#[derive(Serialize)]
pub struct Skipped<'r> {
    pub path: &'r str,
    pub reason: &'r str,
}

#[derive(Serialize)]
pub struct Assumed {
    pub python_version: String,
    pub platform: Platform,
    /// The start method used when a program chooses none.
    pub default_start_method: &'static str,
}

pub fn scan(args: ScanArgs) -> anyhow::Result<i32> {
    for code in args.select.iter().chain(&args.ignore) {
        if !crate::scan::diagnostic::RULES
            .iter()
            .any(|r| r.code.starts_with(code.as_str()))
            || code.is_empty()
        {
            return Err(user_error(
                format!("unknown rule code '{code}'"),
                "codes are S001, S002, S003 and S900 (a prefix like S00 selects several)",
            ));
        }
    }
    let opts = ScanOptions {
        python_version: args.python_version.unwrap_or_else(local_python_version),
        platform: args.platform.unwrap_or_else(Platform::current),
        select: args.select.clone(),
        ignore: args.ignore.clone(),
    };
    let reports = scan_paths(&args.paths, &opts)?;

    let diags: Vec<&Diagnostic> = reports.iter().flat_map(|r| r.diagnostics.iter()).collect();
    let color = output::stdout_color();
    let default_start_method = default_start_method(&opts);
    match args.format {
        ScanFormat::Text => {
            let text = scan_render::text(&reports, color);
            if !text.is_empty() {
                output::print(&text);
            }
        }
        ScanFormat::Json => {
            let doc = ScanDocument {
                schema_version: crate::model::snapshot::SCHEMA_VERSION,
                findings: diags.clone(),
                files_scanned: reports.iter().filter(|r| r.skipped.is_none()).count(),
                files_skipped: reports
                    .iter()
                    .filter_map(|r| {
                        r.skipped.as_deref().map(|reason| Skipped {
                            path: &r.path,
                            reason,
                        })
                    })
                    .collect(),
                assumed: Assumed {
                    python_version: format!("{}.{}", opts.python_version.0, opts.python_version.1),
                    platform: opts.platform,
                    default_start_method,
                },
            };
            output::print(&output::document(&doc, output::Format::Json)?);
        }
        ScanFormat::Sarif => output::print(&scan_render::sarif(&diags)?),
        ScanFormat::Github => output::print(&scan_render::github(&diags)),
    }
    let ecolor = output::stderr_color();
    for r in &reports {
        if let Some(reason) = &r.skipped {
            eprintln!(
                "{} skipped {}: {reason}",
                output::paint("warning:", output::Paint::Yellow, ecolor),
                output::escape_control(&r.path)
            );
        }
    }
    if args.format == ScanFormat::Text {
        eprintln!("{}", scan_render::summary(&reports));
    }
    // A file named on the command line that could not be scanned is an error, not a pass.
    let named = |path: &str| {
        args.paths
            .iter()
            .any(|p| p == path && !std::path::Path::new(p).is_dir())
    };
    if let Some((path, reason)) = reports
        .iter()
        .find_map(|r| r.skipped.as_deref().map(|why| (&r.path, why)))
        .filter(|(path, _)| named(path))
    {
        return Err(user_error(
            format!("cannot scan {path}: {reason}"),
            "pass a readable, UTF-8 (or PEP 263 encoded) Python file, or a directory to scan what it holds",
        ));
    }
    let found = diags.iter().any(|d| d.severity >= Severity::Warning);
    Ok(if found && !args.exit_zero { 1 } else { 0 })
}
