//! One file per subcommand: arguments, orchestration, exit code. Commands never import each other.

pub mod args;
pub mod explain;
pub mod merge;
pub mod ports;
pub mod report;
pub mod repro;
pub mod run;
pub mod scan;
pub mod snapshot;
pub mod tree;

use std::path::PathBuf;

use crate::analysis::Analysis;
use crate::model::snapshot::Snapshot;
use crate::render::Format;
use crate::sys::{bindable, blocked, freeport, observe};

/// `-o/--output FILE` of every command that prints a document: the path is checked before any
/// work starts (`check`) and the document written atomically (`emit`).
#[derive(clap::Args, Debug, Default, Clone)]
pub struct OutputArg {
    /// Write the output to FILE instead of stdout (format from --format, else from the
    /// extension: .json JSON, .yaml/.yml YAML, else a table)
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

impl OutputArg {
    /// An unusable path is an `error:` + `hint:` before the command runs.
    pub fn check(&self) -> anyhow::Result<()> {
        match &self.output {
            Some(p) => crate::sys::output::check_writable(p),
            None => Ok(()),
        }
    }

    /// The format asked for, else the one the file's extension names, else `default`. Never
    /// from whether stdout is a terminal: a pipe gets what a terminal gets.
    pub fn format(&self, asked: Option<Format>, default: Format) -> Format {
        if let Some(f) = asked {
            return f;
        }
        let ext = self
            .output
            .as_ref()
            .and_then(|p| p.extension())
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("json") => Format::Json,
            Some("yaml" | "yml") => Format::Yaml,
            _ => default,
        }
    }

    /// The document to the file (atomically) or stdout.
    pub fn emit(&self, text: &str) -> anyhow::Result<()> {
        match &self.output {
            Some(p) => crate::sys::output::write_atomic(p, text.as_bytes()),
            None => {
                crate::render::print(text);
                Ok(())
            }
        }
    }

    /// The end of `ports` and `tree`: the text out, the note on processes doctor could not
    /// read, and the exit code (1 when a finding is worth it).
    pub fn finish(
        &self,
        text: &str,
        snap: &crate::model::snapshot::Snapshot,
        findings: &[crate::model::finding::Finding],
    ) -> anyhow::Result<i32> {
        self.emit(text)?;
        crate::render::permission_note(snap);
        Ok(i32::from(crate::model::finding::worth_exit_1(findings)))
    }

    /// Colour only on a terminal, never in a file.
    pub fn color(&self) -> bool {
        self.output.is_none() && crate::render::stdout_color()
    }
}

/// The envelope of a document about this machine, now (documents about a snapshot or a report
/// take the snapshot's host and time instead: `Envelope::new`).
pub fn envelope(kind: crate::model::envelope::Kind) -> crate::model::envelope::Envelope {
    crate::model::envelope::Envelope::new(kind, observe::hostname(), observe::now())
}

/// Give the D001 findings of a live machine the user's line: the launch statement that the
/// child re-ran, found by `doctor scan` of the rank's script (a relative path read from the
/// rank's working directory). Nothing is guessed: no script, no launch found, no location.
pub fn locate_launches(findings: &mut [crate::model::finding::Finding], a: &Analysis) {
    use crate::model::finding::{Location, Rule};
    for f in findings.iter_mut().filter(|f| f.code == Rule::D001) {
        // The chain starts at the rank; the duplicate runs the same script.
        let Some(&pid) = f.path.first().or(f.pids.first()) else {
            continue;
        };
        let Some(script) = a.script_of(pid).filter(|s| s.ends_with(".py")) else {
            continue;
        };
        let path = std::path::Path::new(&script);
        let full = if path.is_absolute() {
            path.to_path_buf()
        } else {
            match crate::sys::proc::cwd(pid) {
                Some(dir) => dir.join(path),
                None => continue,
            }
        };
        if !full.is_file() {
            continue;
        }
        let diags = crate::scan::scan_file(&full, &crate::scan::ScanOptions::default());
        if let Some(d) = diags
            .iter()
            .find(|d| matches!(d.code, Rule::S001 | Rule::S002))
        {
            f.location = Some(Location {
                path: script.clone(),
                line: d.line,
                column: d.column,
                end_line: d.end_line,
                end_column: d.end_column,
            });
        }
    }
}

/// A port number from the command line: 1-65535.
pub fn parse_port(s: &str) -> Result<u16, String> {
    match s.trim().parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => Ok(p as u16),
        Ok(p) => Err(format!("{p} is not a usable port (ports are 1-65535)")),
        Err(_) => Err(format!("'{s}' is not a port number (ports are 1-65535)")),
    }
}

/// A number of seconds from the command line: finite, above 0 and at most `max` (so that every
/// `Duration` and `Instant` built from it is representable).
pub fn parse_seconds_max(s: &str, max: f64) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= max => Ok(v),
        Ok(v) if v.is_finite() && v > 0.0 => {
            Err(format!("{s} is too large (at most {max} seconds)"))
        }
        _ => Err(format!(
            "'{s}' is not a positive number of seconds (0 < seconds <= {max})"
        )),
    }
}

/// A timeout: up to a year.
pub fn parse_timeout(s: &str) -> Result<f64, String> {
    parse_seconds_max(s, 365.0 * 86400.0)
}

/// A grace period between SIGTERM and SIGKILL: up to an hour.
pub fn parse_grace(s: &str) -> Result<f64, String> {
    parse_seconds_max(s, 3600.0)
}

/// Minutes from the command line: finite, 0 or more, at most a year.
pub fn parse_minutes(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=525_600.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "'{s}' is not a number of minutes (0 <= minutes <= 525600)"
        )),
    }
}

/// The snapshot to analyse (a file, or this machine now), with its secrets redacted unless
/// `--show-secrets`: every output of it, findings included, is then clean.
pub fn load_or_observe(from: &Option<PathBuf>) -> anyhow::Result<Snapshot> {
    let mut snap = match from {
        Some(path) => Snapshot::load(path)?,
        None => {
            // A process of another network namespace (a container, `ip netns exec`) holds no
            // port of this one: its job on the same port number is no conflict (was D002).
            let mut snap = observe::snapshot();
            observe::same_netns_only(&mut snap);
            snap
        }
    };
    if !crate::render::settings().show_secrets {
        crate::render::redact::redact_snapshot(&mut snap);
    }
    Ok(snap)
}

/// The snapshot to analyse (loaded with `--from`, or this machine now) and its analysis, handed
/// to `f`. Live, when a job may hang at rendezvous, its ranks are asked what they are blocked in
/// (wchan, syscall, py-spy) and the analysis is made again with those facts; otherwise (nearly
/// always) the analysis is made once.
pub fn with_analysis<R>(
    from: &Option<PathBuf>,
    ports: &[u16],
    f: impl FnOnce(&Analysis) -> R,
) -> anyhow::Result<R> {
    let mut snap = load_or_observe(from)?;
    let live = from.is_none();
    let mut a = analyse(&snap, ports, live);
    let suspects = if live { a.hang_suspects() } else { Vec::new() };
    // Live, a rendezvous port nobody listens on but a connection uses is bound for real, as
    // torch's store binds it, before anything says that binding it fails.
    let unbound = if live { a.bind_suspects() } else { Vec::new() };
    if !suspects.is_empty() || !unbound.is_empty() {
        drop(a);
        if !suspects.is_empty() {
            blocked::inspect(&mut snap, &suspects);
        }
        snap.bind_probes.extend(bindable::probe_all(&unbound));
        a = analyse(&snap, ports, live);
    }
    Ok(f(&a))
}

/// Live: bind for real, as torch's store binds, each rendezvous port of `snap` that nobody
/// listens on but a connection uses (so no finding says that binding it fails unless it does).
pub fn probe_binds(snap: &mut Snapshot, ports: &[u16]) {
    let unbound = Analysis::facts(snap, ports).bind_suspects();
    snap.bind_probes.extend(bindable::probe_all(&unbound));
}

/// Facts and findings; for a live snapshot (`live`), fixes name a port a bind proved free now.
fn analyse<'a>(snap: &'a Snapshot, ports: &[u16], live: bool) -> Analysis<'a> {
    if live {
        Analysis::live(snap, ports, freeport::pick)
    } else {
        Analysis::new(snap, ports)
    }
}
