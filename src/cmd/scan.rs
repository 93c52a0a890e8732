//! `doctor scan`: the static check, like a linter (text, JSON, SARIF, GitHub annotations).

use serde::Serialize;

use crate::error::user_error;
use crate::render as output;
use crate::scan::fix::{self, Fix};
use crate::scan::render as scan_render;
use crate::scan::{
    Diagnostic, FileReport, Platform, ScanOptions, Severity, default_start_method,
    local_python_version, parse_version, scan_paths,
};

/// `--platform`: the command-line face of [`Platform`] (clap stays in cmd).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PlatformArg {
    Linux,
    Macos,
    Windows,
}

impl From<PlatformArg> for Platform {
    fn from(p: PlatformArg) -> Platform {
        match p {
            PlatformArg::Linux => Platform::Linux,
            PlatformArg::Macos => Platform::Macos,
            PlatformArg::Windows => Platform::Windows,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ScanFormat {
    /// path:line:col: CODE message, with the source line and a help: line
    Text,
    /// one JSON document (schema_version 2, docs/schema/scan.schema.json)
    Json,
    /// SARIF 2.1.0, for code-scanning dashboards
    Sarif,
    /// GitHub Actions workflow annotations
    Github,
}

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Rules: S001 module-level-launch, S002 spawn-reimports-main, S003 module-level-cuda, \
S900 parse-error. Exit codes: 0 nothing at warning level or worse, 1 found something, 2 usage error. \
With --fix: 0 when nothing is left after fixing, 1 when findings remain. With --diff: 1 when a file would change \
or findings would remain."
)]
pub struct ScanArgs {
    /// Python files or directories (searched for *.py, honouring .gitignore); `-` reads stdin
    #[arg(default_value = ".")]
    pub paths: Vec<String>,

    /// Output format (`--output-format`, ruff's name, is the same option)
    #[arg(long, value_enum, default_value_t = ScanFormat::Text, alias = "output-format")]
    pub format: ScanFormat,

    #[command(flatten)]
    pub out: super::OutputArg,

    /// Python version to assume for the default start method (3.14+ on Linux: forkserver)
    /// [default: the version of `python3` on PATH, else 3.11]
    #[arg(long, value_name = "X.Y", value_parser = parse_version)]
    pub python_version: Option<(u32, u32)>,

    /// Platform to assume for the default start method (macos, windows: spawn) [default: this one]
    #[arg(long, value_enum)]
    pub platform: Option<PlatformArg>,

    /// Report only these codes or code prefixes (comma-separated, e.g. S001,S002)
    #[arg(long, value_delimiter = ',', value_name = "CODES")]
    pub select: Vec<String>,

    /// Do not report these codes or code prefixes (comma-separated)
    #[arg(long, value_delimiter = ',', value_name = "CODES")]
    pub ignore: Vec<String>,

    /// Exit 0 even when problems are found
    #[arg(long)]
    pub exit_zero: bool,

    /// Rewrite files in place: move an import-time launch (S001/S002) into `main()` under
    /// `if __name__ == "__main__":`; files where that cannot be shown safe are left as they are
    #[arg(long, conflicts_with = "diff")]
    pub fix: bool,

    /// Print the fixes as a unified diff and write nothing
    #[arg(long)]
    pub diff: bool,
}

/// The scan's result, as the JSON document has it.
#[derive(Serialize)]
pub struct ScanDocument<'r> {
    #[serde(flatten)]
    pub envelope: crate::model::envelope::Envelope,
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

/// --select/--ignore name known codes.
fn check_codes(args: &ScanArgs) -> anyhow::Result<()> {
    for code in args.select.iter().chain(&args.ignore) {
        if !crate::scan::diagnostic::RULES
            .iter()
            .any(|r| r.code.code().starts_with(code.as_str()))
            || code.is_empty()
        {
            return Err(user_error(
                format!("unknown rule code '{code}'"),
                "codes are S001, S002, S003 and S900 (a prefix like S00 selects several)",
            ));
        }
    }
    Ok(())
}

pub fn scan(args: ScanArgs) -> anyhow::Result<i32> {
    check_codes(&args)?;
    args.out.check()?;
    let opts = ScanOptions {
        python_version: args.python_version.unwrap_or_else(local_python_version),
        platform: args.platform.map_or_else(Platform::current, Platform::from),
        select: args.select.clone(),
        ignore: args.ignore.clone(),
    };
    let mut reports = scan_paths(&args.paths, &opts)?;
    // A named file that could not be scanned, or nothing scanned at all, is an error, not a
    // pass: said before anything is printed or fixed.
    if let Some(err) = unscanned(&reports, &args) {
        warn_skipped(&reports);
        return Err(err);
    }
    if args.fix || args.diff {
        let fixes = apply_fixes(&mut reports, &args, &opts)?;
        if args.diff {
            let changes = fixes > 0 || remaining(&reports);
            return Ok(if changes && !args.exit_zero { 1 } else { 0 });
        }
    }

    let diags: Vec<&Diagnostic> = reports.iter().flat_map(|r| r.diagnostics.iter()).collect();
    let color = args.out.color();
    let default_start_method = default_start_method(&opts);
    match args.format {
        ScanFormat::Text => {
            let text = scan_render::text(&reports, color);
            if !text.is_empty() || args.out.output.is_some() {
                args.out.emit(&text)?;
            }
        }
        ScanFormat::Json => {
            let doc = ScanDocument {
                envelope: super::envelope(crate::model::envelope::Kind::Scan),
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
            args.out
                .emit(&output::document(&doc, output::Format::Json)?)?;
        }
        ScanFormat::Sarif => args.out.emit(&output::document(
            &scan_render::sarif(&diags),
            output::Format::Json,
        )?)?,
        ScanFormat::Github => args.out.emit(&scan_render::github(&diags))?,
    }
    warn_skipped(&reports);
    // `-q`: only the document and errors.
    if args.format == ScanFormat::Text && !output::settings().quiet {
        eprintln!("{}", scan_render::summary(&reports));
    }
    Ok(if remaining(&reports) && !args.exit_zero {
        1
    } else {
        0
    })
}

fn warn_skipped(reports: &[FileReport]) {
    let ecolor = output::stderr_color();
    for r in reports {
        if let Some(reason) = &r.skipped {
            eprintln!(
                "{} skipped {}: {reason}",
                output::paint("warning:", output::Paint::Yellow, ecolor),
                output::escape_control(&r.path)
            );
        }
    }
}

/// The error for input that was not scanned: a file named on the command line that was
/// skipped, or arguments whose every file was skipped (a directory holding only files over the
/// size limit must not read as "No problems found").
fn unscanned(reports: &[FileReport], args: &ScanArgs) -> Option<anyhow::Error> {
    let named = |path: &str| {
        args.paths
            .iter()
            .any(|p| p == path && !std::path::Path::new(p).is_dir())
    };
    if let Some(r) = reports
        .iter()
        .find(|r| r.skipped.is_some() && named(&r.path))
    {
        return Some(user_error(
            format!(
                "cannot scan {}: {}",
                output::escape_control(&r.path),
                r.skipped.as_deref().unwrap_or_default()
            ),
            "pass a readable, regular, UTF-8 (or PEP 263 encoded) Python file, or a directory to scan what it holds",
        ));
    }
    let skipped = reports.iter().filter(|r| r.skipped.is_some()).count();
    if skipped > 0 && skipped == reports.len() {
        let too_big = reports.iter().all(|r| {
            r.skipped
                .as_deref()
                .is_some_and(|w| w.starts_with("larger than"))
        });
        let files = if skipped == 1 { "file" } else { "files" };
        return Some(user_error(
            format!(
                "nothing was scanned: the {skipped} Python {files} found {} skipped (see the warnings above)",
                if skipped == 1 { "was" } else { "were all" }
            ),
            if too_big {
                "files over 10 MiB are not scanned (generated code or data); scan the script that launches, or split the file"
            } else {
                "each warning says why a file was skipped; pass readable, UTF-8 (or PEP 263 encoded) Python files"
            },
        ));
    }
    None
}

fn remaining(reports: &[FileReport]) -> bool {
    reports
        .iter()
        .flat_map(|r| &r.diagnostics)
        .any(|d| d.severity >= Severity::Warning)
}

/// `--fix` / `--diff`: rewrite (or show) each fixable file, say why the others are left alone,
/// and rescan what was fixed. Returns how many files were (or would be) changed.
fn apply_fixes(
    reports: &mut [FileReport],
    args: &ScanArgs,
    opts: &ScanOptions,
) -> anyhow::Result<usize> {
    let ecolor = output::stderr_color();
    let mut changed = 0;
    let mut attempted = 0;
    let mut broken: Vec<(String, String)> = Vec::new();
    let mut unwritten: Vec<crate::sys::inplace::Refusal> = Vec::new();
    for report in reports.iter_mut() {
        let Some(fix) = fix::fix_report(report) else {
            continue;
        };
        attempted += 1;
        match &fix.outcome {
            Fix::Fixed(after) if args.diff => {
                output::print(&fix.diff());
                changed += 1;
                // What would remain after the fix.
                report.diagnostics = crate::scan::scan_source(&report.path, after, opts);
            }
            Fix::Fixed(after) => {
                let path = std::path::Path::new(&fix.path);
                match crate::sys::inplace::rewrite(path, |current| fix.encoded(current)) {
                    Ok(()) => {
                        changed += 1;
                        report.diagnostics = crate::scan::scan_source(&report.path, after, opts);
                        report.source = Some(after.clone());
                    }
                    Err(refusal) => unwritten.push(refusal),
                }
            }
            Fix::Refused(why) => {
                eprintln!(
                    "{} not fixed {}: {}",
                    output::paint("warning:", output::Paint::Yellow, ecolor),
                    output::escape_control(&fix.path),
                    output::escape_control(why)
                );
                if fix.path != "<stdin>" {
                    eprintln!(
                        "{} move the launch under `if __name__ == \"__main__\":` by hand, then prove it with `doctor repro {} --verify-fix`",
                        output::paint("hint:", output::Paint::Blue, ecolor),
                        output::escape_control(&fix.path)
                    );
                }
            }
            Fix::Broken(why) => broken.push((fix.path.clone(), why.clone())),
            Fix::Unchanged => {}
        }
    }
    let verb = if args.diff { "Would fix" } else { "Fixed" };
    let noun = if changed == 1 { "file" } else { "files" };
    if let Some(first) = unwritten.first() {
        for r in &unwritten[1..] {
            eprintln!(
                "{} {}",
                output::paint("warning:", output::Paint::Yellow, ecolor),
                output::escape_control(&r.error)
            );
        }
        if changed > 0 {
            eprintln!("{verb} {changed} {noun}.");
        }
        return Err(user_error(output::escape_control(&first.error), first.hint));
    }
    if let Some((path, why)) = broken.first() {
        // The fixer's own check failed: nothing of that file was written, and it is not "Fixed".
        let others = if broken.len() > 1 {
            format!(" (and {} more files)", broken.len() - 1)
        } else {
            String::new()
        };
        return Err(user_error(
            format!(
                "the fix of {} failed its own check: {why}; the file was left as it was{others}",
                output::escape_control(path)
            ),
            "move the launch under `if __name__ == \"__main__\":` by hand, and please report the file (doctor scan --diff shows nothing for it)",
        ));
    }
    if attempted > 0 {
        eprintln!("{verb} {changed} {noun}.");
    }
    Ok(changed)
}
