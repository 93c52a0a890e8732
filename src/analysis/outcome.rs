//! What a reproduction case's end and output mean: passed, EADDRINUSE, hang or error, with the
//! error line, the frame that re-ran the launch, and the digest the ranks agree on.

use std::collections::BTreeSet;
use std::time::Duration;

use super::traceback::{self, RankResult};
pub use crate::model::repro::Outcome;
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
        outcome,
        eaddrinuse_port: bind.as_ref().map(|b| b.port.unwrap_or(port)),
        ranks,
        digest,
        frame,
        error,
    }
}
