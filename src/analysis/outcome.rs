//! What a reproduction case's end and output mean: passed, EADDRINUSE, hang or error, with the
//! error line, the frame that re-ran the launch, and the digest the ranks agree on.

use std::collections::BTreeSet;
use std::time::Duration;

use super::traceback::{self, RankResult};
pub use crate::model::repro::Outcome;
use crate::model::repro::Reimport;
use crate::model::run::{CaseRun, Waited};

/// The judgement of one case.
pub struct Judged {
    pub outcome: Outcome,
    pub ranks: Vec<RankResult>,
    /// The digest of the trained weights, when the case passed and every rank reported the same.
    pub digest: Option<String>,
    /// For EADDRINUSE: the port named in the error, and the user-script frame that re-ran the launch.
    pub eaddrinuse_port: Option<u16>,
    pub frame: Option<String>,
    /// The first meaningful error line (any failure).
    pub error: Option<String>,
    /// What the re-import probe of `--verify-fix` said, when it ran.
    pub reimport: Option<Reimport>,
}

/// Judge a case that was given `port`: `expected_ranks` ranks must print a DOCTOR_RESULT line
/// (0: any number) and agree on the weights.
pub fn judge(run: &CaseRun, port: u16, expected_ranks: usize, timeout: Duration) -> Judged {
    let text = run.text.as_str();
    let ranks = traceback::results(text);
    let bind = traceback::bind_failure(text);
    let digests: BTreeSet<&str> = ranks.iter().map(|r| r.digest.as_str()).collect();
    let all_ranks = ranks.len() >= expected_ranks;
    let outcome = if bind.is_some() {
        Outcome::Eaddrinuse
    } else if run.waited == Waited::TimedOut {
        Outcome::Hang
    } else if run.exit_code == Some(0) && all_ranks && digests.len() <= 1 {
        Outcome::Ok
    } else {
        Outcome::Error
    };
    let error = match outcome {
        Outcome::Ok => None,
        Outcome::Hang => traceback::first_error(text).or_else(|| {
            Some(format!(
                "no exit after {:.0}s; killed the whole tree",
                timeout.as_secs_f64()
            ))
        }),
        Outcome::Eaddrinuse => traceback::first_error(text),
        Outcome::Error => traceback::first_error(text).or_else(|| {
            Some(if run.waited == Waited::Interrupted {
                "interrupted".to_string()
            } else if run.exit_code == Some(0) && !all_ranks {
                format!(
                    "exited 0 but only {} of {expected_ranks} ranks printed a DOCTOR_RESULT line",
                    ranks.len()
                )
            } else if digests.len() > 1 {
                "ranks disagree on the trained weights".to_string()
            } else {
                format!("exited with {}", run.exit_code.unwrap_or(-1))
            })
        }),
    };
    let digest = (outcome == Outcome::Ok && digests.len() == 1)
        .then(|| digests.iter().next().map(|d| d.to_string()))
        .flatten();
    let frame = bind
        .as_ref()
        .and_then(|_| traceback::relaunch_frame(text))
        .map(|f| f.location());
    Judged {
        reimport: reimport(text),
        outcome,
        eaddrinuse_port: bind.as_ref().map(|b| b.port.unwrap_or(port)),
        ranks,
        digest,
        frame,
        error,
    }
}

/// The re-import probe's verdict, from the lines the `--verify-fix` shim prints: a launch that ran
/// again in the child (said even when the child's import then failed), a clean re-import, or a
/// child that failed before any launch ran.
pub fn reimport(text: &str) -> Option<Reimport> {
    let lines = || text.lines().map(str::trim);
    if lines().any(|l| {
        l.starts_with("error: the launch ") && l.contains(" child that re-imported the script")
    }) {
        Some(Reimport::Relaunched)
    } else if lines().any(|l| {
        l.starts_with("error: a ")
            && (l.contains(" child that re-imported the script ")
                || l.contains(" child that re-imports the script could not start"))
    }) {
        Some(Reimport::Failed)
    } else if lines().any(|l| {
        l.starts_with("doctor: a ")
            && l.ends_with(" child re-imported the script; no launch ran again")
    }) {
        Some(Reimport::Clean)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shim's own lines (src/cmd/repro/verify_fix.rs), in the order it prints them.
    #[test]
    fn the_probe_lines_read_back() {
        assert_eq!(reimport("a\nb\n"), None);
        assert_eq!(
            reimport("doctor: a spawn child re-imported the script; no launch ran again\n"),
            Some(Reimport::Clean)
        );
        let relaunch = "Traceback (most recent call last):\nAssertionError: x\n\
            doctor: the script ended with AssertionError; re-importing it in a spawn child all the same\n\
            error: the launch on line 3 ran again in a spawn child that re-imported the script\n\
            torch.distributed.DistNetworkError: ... EADDRINUSE\n\
            error: a spawn child that re-imported the script failed (exit code 1)\n";
        assert_eq!(reimport(relaunch), Some(Reimport::Relaunched));
        assert_eq!(
            reimport(
                "error: the launch ran again in a spawn child that re-imported the script: \
                 torch.distributed is initialised after the import, by a line doctor did not flag\n"
            ),
            Some(Reimport::Relaunched)
        );
        assert_eq!(
            reimport(
                "error: a forkserver child that re-imported the script hung (killed after 60 s)\n"
            ),
            Some(Reimport::Failed)
        );
        assert_eq!(
            reimport(
                "error: a spawn child that re-imports the script could not start: OSError: x\n"
            ),
            Some(Reimport::Failed)
        );
    }
}
