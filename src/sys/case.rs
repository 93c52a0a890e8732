//! One reproduction case run under supervision: its own session and process group (tagged), its
//! own rendezvous port, output to a log file, a timeout; afterwards the whole tree is killed and
//! what is still alive (processes, the port) is reported.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context;

pub use crate::model::run::CaseRun;

use super::supervise::{self, Exit, Tree, Waited};

/// What to run and how.
pub struct CaseCommand<'a> {
    pub argv: &'a [String],
    pub workdir: &'a Path,
    pub log_path: PathBuf,
    /// Names the case in the DOCTOR_TAG every process of it carries.
    pub label: &'a str,
    /// The MASTER_PORT given to the case (and checked free afterwards).
    pub port: u16,
    pub timeout: Duration,
    /// Variables removed from the environment (an enclosing job's RANK, MASTER_PORT, ...).
    pub scrub_env: &'a [&'a str],
    /// Variables set for the case.
    pub env: Vec<(String, String)>,
    /// Told each phase as it starts (`running`, `cleaning up`, `reading the output`).
    pub on_phase: &'a dyn Fn(&'static str),
}

/// Run one case to its end (exit, timeout or interrupt), kill its tree, check for leftovers.
pub fn run(case: &CaseCommand) -> anyhow::Result<CaseRun> {
    let log = File::create(&case.log_path)
        .with_context(|| format!("cannot create {}", case.log_path.display()))?;
    let mut cmd = Command::new(&case.argv[0]);
    cmd.args(&case.argv[1..])
        .current_dir(case.workdir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    for v in case.scrub_env {
        cmd.env_remove(v);
    }
    cmd.env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", case.port.to_string())
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    cmd.envs(case.env.iter().map(|(k, v)| (k, v)));
    let tag = supervise::new_tag(case.label);
    let mut tree = Tree::spawn(cmd, &tag)?;
    (case.on_phase)("running");
    let waited = tree.wait(case.timeout);
    (case.on_phase)("cleaning up");
    let seconds = tree.elapsed().as_secs_f64();
    // What the case printed on its own, before doctor's signals made it print more.
    let printed = std::fs::metadata(&case.log_path).map_or(0, |m| m.len() as usize);
    let killed = tree.terminate(settle_time(waited), Duration::from_secs(3));
    let left = tree.leftovers(Some(case.port));
    let leftovers = if left.is_empty() {
        Vec::new()
    } else {
        left.describe()
    };
    (case.on_phase)("reading the output");
    let mut text = std::fs::read(&case.log_path).unwrap_or_default();
    if !matches!(waited, Waited::Exited(_)) {
        text.truncate(printed);
    }
    Ok(CaseRun {
        waited,
        exit_code: match waited {
            Waited::Exited(e) => Some(e.shell_code()),
            _ => None,
        },
        seconds,
        text: String::from_utf8_lossy(&text).into_owned(),
        killed,
        leftovers,
        pid: tree.pid(),
        tag: tree.tag().to_string(),
    })
}

/// A run that passed may leave helpers that end on their own a moment later (the resource
/// tracker); a failed one leaves orphans that never will.
fn settle_time(waited: Waited) -> Duration {
    match waited {
        Waited::Exited(Exit::Code(0)) => Duration::from_millis(1500),
        Waited::Exited(_) => Duration::from_millis(300),
        _ => Duration::ZERO,
    }
}
