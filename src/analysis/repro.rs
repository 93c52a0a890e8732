//! The verdict of `doctor repro`: each case's record from its run and judgement, whether the
//! observed matrix is the expected one, and whether the fix is verified (bundled pairs, scripts
//! of one's own, and `--verify-fix`'s original against its fixed copy). Pure functions of data.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use regex::Regex;

use super::outcome::Judged;
use crate::model::repro::{CaseResult, CaseSpec, Ctx, Outcome, Reimport, Variant, Verdict};
use crate::model::run::CaseRun;
use crate::model::text::shorten;

/// The record of a case that could not be started.
pub fn failed_to_start(case: &CaseSpec, error: String) -> CaseResult {
    CaseResult {
        name: case.name.clone(),
        variant: case.variant,
        ctx: case.ctx,
        outcome: Outcome::Error,
        expected: case.expected.to_vec(),
        matches_expected: false,
        port: 0,
        exit_code: None,
        seconds: 0.0,
        result_digest: None,
        ranks: Vec::new(),
        eaddrinuse_port: None,
        frame: None,
        error: Some(error),
        reimport: None,
        killed: Vec::new(),
        leftovers: Vec::new(),
        command: Vec::new(),
        log_tail: Vec::new(),
        pid: 0,
        tag: String::new(),
    }
}

/// The document's record of one case.
pub fn case_result(
    case: &CaseSpec,
    port: u16,
    command: Vec<String>,
    run: CaseRun,
    judged: Judged,
) -> CaseResult {
    let outcome = judged.outcome;
    CaseResult {
        name: case.name.clone(),
        variant: case.variant,
        ctx: case.ctx,
        outcome,
        expected: case.expected.to_vec(),
        matches_expected: case.expected.contains(&outcome) && run.leftovers.is_empty(),
        port,
        exit_code: run.exit_code,
        seconds: (run.seconds * 1000.0).round() / 1000.0,
        result_digest: judged.digest,
        ranks: judged.ranks,
        eaddrinuse_port: judged.eaddrinuse_port,
        frame: judged.frame,
        error: judged.error,
        reimport: judged.reimport,
        killed: run.killed,
        leftovers: run.leftovers,
        command,
        log_tail: if outcome == Outcome::Ok {
            Vec::new()
        } else {
            log_tail(&run.text)
        },
        pid: run.pid,
        tag: run.tag,
    }
}

/// The last 25 non-blank lines a failed case printed.
fn log_tail(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(25)..]
        .iter()
        .map(|l| shorten(l, 300))
        .collect()
}

/// The verdict over the bundled pairs and scripts of one's own.
pub fn verdict(cases: &[CaseResult]) -> Verdict {
    let mismatches = mismatches(cases);
    let mut parts: Vec<String> = Vec::new();
    let mut fix_verified = !cases.is_empty();
    let names: BTreeSet<&str> = cases.iter().map(|c| c.name.as_str()).collect();
    for name in names {
        let of = |v: Variant| -> Vec<&CaseResult> {
            cases
                .iter()
                .filter(|c| c.name == name && c.variant == v)
                .collect()
        };
        let custom = of(Variant::Custom);
        let (part, verified) = if custom.is_empty() {
            pair_part(name, &of(Variant::Buggy), &of(Variant::Fixed))
        } else {
            custom_part(name, &custom)
        };
        fix_verified &= verified;
        parts.push(part);
    }
    let matches_expected = mismatches.is_empty() && !cases.is_empty();
    let head = if fix_verified {
        "fix verified"
    } else if matches_expected {
        "as expected"
    } else {
        "fix NOT verified"
    };
    let mut summary = format!("{head}: {}", parts.join("; "));
    if !mismatches.is_empty() {
        summary.push_str(&format!(" (unexpected: {})", mismatches.join("; ")));
    }
    Verdict {
        fix_verified,
        matches_expected,
        summary,
        mismatches,
    }
}

/// Cases whose outcome was not among the expected ones, or that left something behind.
pub fn mismatches(cases: &[CaseResult]) -> Vec<String> {
    let mut out = Vec::new();
    for c in cases {
        let what = format!("{} {} {}", c.name, c.variant.as_str(), c.ctx.as_str());
        if !c.expected.contains(&c.outcome) {
            out.push(format!(
                "{what}: {} (expected {})",
                c.outcome.as_str(),
                expected_str(&c.expected)
            ));
        }
        if !c.leftovers.is_empty() {
            out.push(format!("{what}: left behind {}", c.leftovers.join("; ")));
        }
    }
    out
}

fn ctx_list(cases: &[&CaseResult]) -> String {
    let names: Vec<&str> = cases.iter().map(|c| c.ctx.as_str()).collect();
    join_and(&names)
}

/// A script of one's own: it must pass everywhere.
fn custom_part(name: &str, custom: &[&CaseResult]) -> (String, bool) {
    let (ok, bad): (Vec<&CaseResult>, Vec<&CaseResult>) =
        custom.iter().partition(|c| c.outcome == Outcome::Ok);
    if bad.is_empty() {
        return (format!("{name} passes under {}", ctx_list(&ok)), true);
    }
    let what: Vec<String> = bad
        .iter()
        .map(|c| format!("{} under {}", c.outcome.as_str(), c.ctx.as_str()))
        .collect();
    (format!("{name}: {}", what.join(", ")), false)
}

/// A bundled pair: verified when the buggy one fails as expected and the fixed one passes
/// everywhere with identical weights.
fn pair_part(name: &str, buggy: &[&CaseResult], fixed: &[&CaseResult]) -> (String, bool) {
    let buggy_fails: Vec<&CaseResult> = buggy
        .iter()
        .copied()
        .filter(|c| c.outcome != Outcome::Ok)
        .collect();
    let buggy_as_expected = buggy.iter().all(|c| c.expected.contains(&c.outcome));
    let fixed_ok = fixed
        .iter()
        .all(|c| c.outcome == Outcome::Ok && c.leftovers.is_empty());
    let fixed_digests: BTreeSet<Option<&str>> =
        fixed.iter().map(|c| c.result_digest.as_deref()).collect();
    let identical = fixed_digests.len() == 1 && !fixed_digests.contains(&None);
    let verified =
        !fixed.is_empty() && fixed_ok && identical && buggy_as_expected && !buggy_fails.is_empty();
    let mut s = String::new();
    if !buggy.is_empty() {
        s = buggy_text(name, buggy, &buggy_fails);
    }
    if !fixed.is_empty() {
        if !s.is_empty() {
            s.push_str("; ");
        }
        s.push_str(&fixed_text(fixed, fixed_ok, identical));
    }
    (s, verified)
}

/// How the module-level launch fared.
fn buggy_text(name: &str, buggy: &[&CaseResult], fails: &[&CaseResult]) -> String {
    let lucky: Vec<&CaseResult> = buggy
        .iter()
        .copied()
        .filter(|c| c.outcome == Outcome::Ok && c.expected.len() > 1)
        .collect();
    if fails.is_empty() {
        return format!(
            "the buggy {name} program passes under {}{}",
            ctx_list(buggy),
            if lucky.is_empty() {
                ""
            } else {
                " (this time: it is a race)"
            }
        );
    }
    let outcomes: BTreeSet<Outcome> = fails.iter().map(|c| c.outcome).collect();
    let mut s = if outcomes.len() == 1 {
        format!(
            "the module-level launch ({name}) fails under {} {}",
            ctx_list(fails),
            failure_phrase(fails[0].outcome)
        )
    } else {
        let each: Vec<String> = fails
            .iter()
            .map(|c| format!("{} ({})", c.ctx.as_str(), c.outcome.as_str()))
            .collect();
        let each: Vec<&str> = each.iter().map(String::as_str).collect();
        format!(
            "the module-level launch ({name}) fails under {}",
            join_and(&each)
        )
    };
    if !lucky.is_empty() {
        s.push_str(&format!(
            " and happened to pass under {} (a race)",
            ctx_list(&lucky)
        ));
    }
    s
}

fn failure_phrase(o: Outcome) -> &'static str {
    match o {
        Outcome::Eaddrinuse => "with EADDRINUSE on the rendezvous port",
        Outcome::Hang => "by hanging (a duplicate rank joins the store)",
        Outcome::Error => "with an error",
        Outcome::Ok => "",
    }
}

/// How the guarded launch fared.
fn fixed_text(fixed: &[&CaseResult], fixed_ok: bool, identical: bool) -> String {
    if !fixed_ok {
        let bad: Vec<String> = fixed
            .iter()
            .filter(|c| c.outcome != Outcome::Ok)
            .map(|c| format!("{} under {}", c.outcome.as_str(), c.ctx.as_str()))
            .collect();
        return format!("the guarded launch still fails: {}", bad.join(", "));
    }
    format!(
        "the guarded launch passes under {}{}",
        match fixed.len() {
            3 => "all three contexts".to_string(),
            _ => ctx_list(fixed),
        },
        if fixed.len() > 1 {
            if identical {
                ", with identical weights"
            } else {
                ", but the weights differ between contexts"
            }
        } else {
            ""
        }
    )
}

/// `eaddrinuse|hang`.
pub fn expected_str(expected: &[Outcome]) -> String {
    expected
        .iter()
        .map(|o| o.as_str())
        .collect::<Vec<_>>()
        .join("|")
}

pub fn join_and(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => one.to_string(),
        [a, b] => format!("{a} and {b}"),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// The same error of the script's own in both copies: the texts alike but for what differs
/// between the two runs by construction: the copy's folder (`.../original/` or `.../fixed/`,
/// in a FileNotFoundError of a file beside the script, say), each case's own rendezvous port,
/// process ids (`DataLoader worker (pid(s) 4711) exited unexpectedly`) and object addresses
/// (`Can't pickle <function <lambda> at 0x7f3a...>`).
fn same_error(o: &CaseResult, f: &CaseResult) -> bool {
    static PID: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?i)\b(pid(?:\(s\))?\s*[=:]?\s*)\d+(?:\s*,\s*\d+)*").expect("regex")
    });
    static ADDRESS: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"\b0x[0-9a-fA-F]{6,}\b").expect("regex"));
    let norm = |c: &CaseResult| {
        c.error.as_deref().map(|e| {
            let e = e
                .replace("/original/", "/<copy>/")
                .replace("/fixed/", "/<copy>/");
            let e = PID.replace_all(&e, "${1}<pid>");
            let e = ADDRESS.replace_all(&e, "0x<address>");
            mask_number(&e, c.port)
        })
    };
    norm(o) == norm(f)
}

/// `text` with each whole number equal to `n` replaced by `<port>`.
fn mask_number(text: &str, n: u16) -> String {
    let n = n.to_string();
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(|c: char| c.is_ascii_digit()) {
        let len = rest[at..]
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len() - at);
        let (head, number) = (&rest[..at], &rest[at..at + len]);
        let joined = head.ends_with(|c: char| c.is_alphanumeric() || c == '_');
        out.push_str(head);
        out.push_str(if number == n && !joined {
            "<port>"
        } else {
            number
        });
        rest = &rest[at + len..];
    }
    out.push_str(rest);
    out
}

/// A script that fails of its own after its launch (no GPU, a placeholder argument): every
/// fixed case that failed stopped at the original's error in the same context, and where the
/// re-import probe ran, the original's launch ran again in the child and the fixed copy's did
/// not (at least once; never the other way). Then the fix removed the re-launch and changed
/// nothing else that ran: the shared error, else None.
fn stops_alike(original: &[&CaseResult], fixed: &[&CaseResult]) -> Option<String> {
    let twin = |f: &CaseResult| original.iter().copied().find(|o| o.ctx == f.ctx);
    let mut shown = None;
    let mut proved = false;
    for f in fixed {
        if f.outcome == Outcome::Ok {
            continue;
        }
        let o = twin(f)?;
        if f.outcome != Outcome::Error || f.error.is_none() || !same_error(o, f) {
            return None;
        }
        match (o.reimport, f.reimport) {
            (Some(Reimport::Relaunched), Some(Reimport::Clean)) => proved = true,
            // No child re-imports under fork: both stopped at the same error, nothing more.
            (None, None) if f.ctx == Ctx::Fork && o.outcome == Outcome::Error => {}
            _ => return None,
        }
        shown.get_or_insert_with(|| f.error.clone().unwrap_or_default());
    }
    proved.then_some(shown).flatten()
}

/// Verified: the fixed copy passes in every context (same weights where it reports them),
/// the original fails in at least one, and nothing was left behind.
pub fn verify_verdict(name: &str, cases: &[CaseResult]) -> Verdict {
    let of = |v: Variant| -> Vec<&CaseResult> { cases.iter().filter(|c| c.variant == v).collect() };
    let (original, fixed) = (of(Variant::Original), of(Variant::Fixed));
    let fails: Vec<&CaseResult> = original
        .iter()
        .copied()
        .filter(|c| c.outcome != Outcome::Ok)
        .collect();
    let fixed_ok = !fixed.is_empty() && fixed.iter().all(|c| c.outcome == Outcome::Ok);
    let digests: BTreeSet<Option<&str>> =
        fixed.iter().map(|c| c.result_digest.as_deref()).collect();
    let same_weights = digests.len() == 1;
    let mismatches = mismatches(cases);
    let clean = cases.iter().all(|c| c.leftovers.is_empty());
    let stops_alike = stops_alike(&original, &fixed);
    // The original's failure must be its launch running again: a child re-ran it (the probe),
    // or a re-importing context failed as that does (EADDRINUSE, a duplicate rank's hang). An
    // original that failed otherwise (under fork, where no child re-imports; a flaky script)
    // proves nothing about the fix.
    let relaunch_seen = fails.iter().any(|c| {
        c.reimport == Some(Reimport::Relaunched)
            || (matches!(c.ctx, Ctx::Spawn | Ctx::Forkserver)
                && matches!(c.outcome, Outcome::Eaddrinuse | Outcome::Hang))
    });
    let fix_verified = ((fixed_ok && same_weights) || stops_alike.is_some())
        && !fails.is_empty()
        && relaunch_seen
        && clean;
    // Every context of the original counts (no outcome is a race here): list what passed.
    // Stopped alike: only the contexts whose child ran the launch again show the launch failing
    // (elsewhere the original stopped at the script's own error, as the fixed copy did).
    let relaunched: Vec<&CaseResult> = original
        .iter()
        .copied()
        .filter(|c| c.reimport == Some(Reimport::Relaunched) && c.outcome != Outcome::Ok)
        .collect();
    let before = if fails.is_empty() {
        format!("the original {name} passes under {}", ctx_list(&original))
    } else if !relaunch_seen {
        format!("the original {name} fails under {}", ctx_list(&fails))
    } else if stops_alike.is_some() && !fixed_ok {
        buggy_text(name, &relaunched, &relaunched)
    } else {
        let passed: Vec<&CaseResult> = original
            .iter()
            .copied()
            .filter(|c| c.outcome == Outcome::Ok)
            .collect();
        let mut s = buggy_text(name, &fails, &fails);
        if !passed.is_empty() {
            s.push_str(&format!(" and passes under {}", ctx_list(&passed)));
        }
        s
    };
    let after = if let (false, Some(error)) = (fixed_ok, &stops_alike) {
        let of = |keep: &dyn Fn(&CaseResult) -> bool| {
            ctx_list(
                &fixed
                    .iter()
                    .copied()
                    .filter(|c| keep(c))
                    .collect::<Vec<_>>(),
            )
        };
        format!(
            "the fixed copy's re-import runs no launch (under {}), and both copies then stop at \
             the same error of the script's own (under {}), which the fix does not touch: {error}",
            of(&|c| c.reimport == Some(Reimport::Clean)),
            of(&|c| c.outcome != Outcome::Ok),
        )
    } else if fixed_ok {
        let weights = match (fixed.len() > 1, digests.iter().next()) {
            (true, Some(Some(_))) if same_weights => ", with identical weights",
            (true, _) if !same_weights => ", but the weights differ between contexts",
            _ => "",
        };
        format!("the fixed copy passes under {}{weights}", ctx_list(&fixed))
    } else {
        let bad: Vec<String> = fixed
            .iter()
            .filter(|c| c.outcome != Outcome::Ok)
            .map(|c| format!("{} under {}", c.outcome.as_str(), c.ctx.as_str()))
            .collect();
        format!("the fixed copy still fails: {}", bad.join(", "))
    };
    // The fixed copy failing exactly as the original did (same outcome, same error) is the
    // script not running this far here, whatever the fix: say so, never "verified".
    let fixed_failures: Vec<&CaseResult> = fixed
        .iter()
        .copied()
        .filter(|c| c.outcome != Outcome::Ok)
        .collect();
    let same_failure = !fixed_failures.is_empty()
        && fixed_failures.iter().all(|f| {
            original
                .iter()
                .any(|o| o.ctx == f.ctx && o.outcome == f.outcome && same_error(o, f))
        });
    let reimports = cases
        .iter()
        .any(|c| matches!(c.ctx, Ctx::Spawn | Ctx::Forkserver));
    let head = if fix_verified {
        "fix verified".to_string()
    } else if same_failure {
        let f = fixed_failures[0];
        format!(
            "cannot verify: {name} fails the same way with and without the fix (under {}: {}); \
             it does not run this far here (a GPU, a dataset, a package or a launcher it needs?)",
            f.ctx.as_str(),
            f.error.as_deref().unwrap_or(f.outcome.as_str())
        )
    } else if !fails.is_empty() && !relaunch_seen && fixed_ok && clean {
        let f = fails[0];
        format!(
            "cannot verify: the original failed where no child ran its launch again (under {}: \
             {}), which the fix does not explain (run it again; add --ctx spawn or forkserver)",
            f.ctx.as_str(),
            f.error.as_deref().unwrap_or(f.outcome.as_str())
        )
    } else if fails.is_empty() && fixed_ok && !reimports {
        "cannot verify: under fork no child re-imports the script, so the launch runs once \
         either way; add --ctx spawn or forkserver"
            .to_string()
    } else if fails.is_empty() && fixed_ok {
        "cannot verify: the original passes too (its launch did not run again in a child that \
         re-imported it)"
            .to_string()
    } else {
        "fix NOT verified".to_string()
    };
    let mut summary = format!("{head}: {before}; {after}");
    if !clean {
        summary.push_str(&format!(" (left behind: {})", mismatches.join("; ")));
    }
    Verdict {
        fix_verified,
        matches_expected: fix_verified,
        summary,
        mismatches,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(
        name: &str,
        variant: Variant,
        ctx: Ctx,
        outcome: Outcome,
        expected: Outcome,
        digest: Option<&str>,
    ) -> CaseResult {
        CaseResult {
            name: name.into(),
            variant,
            ctx,
            outcome,
            expected: vec![expected],
            matches_expected: outcome == expected,
            port: 1,
            exit_code: Some(0),
            seconds: 1.0,
            result_digest: digest.map(String::from),
            ranks: vec![],
            eaddrinuse_port: None,
            frame: None,
            error: None,
            reimport: None,
            killed: vec![],
            leftovers: vec![],
            command: vec![],
            log_tail: vec![],
            pid: 0,
            tag: String::new(),
        }
    }

    /// Both variants failing alike is "cannot verify", with the error; an original that
    /// passes is "cannot verify" too (under fork alone, the hint to add a re-importing context);
    /// never "fix verified".
    #[test]
    fn what_cannot_be_verified_says_why() {
        use Outcome::*;
        let failing = |variant| {
            let mut c = result("t.py", variant, Ctx::Spawn, Error, Error, None);
            c.error = Some("ModuleNotFoundError: No module named 'deepspeed'".into());
            c
        };
        let v = verify_verdict(
            "t.py",
            &[failing(Variant::Original), failing(Variant::Fixed)],
        );
        assert!(!v.fix_verified);
        assert!(
            v.summary
                .starts_with("cannot verify: t.py fails the same way")
                && v.summary.contains("No module named 'deepspeed'"),
            "{}",
            v.summary
        );
        // A different failure of the fixed copy is a failed fix, not "cannot verify".
        let mut other = failing(Variant::Fixed);
        other.error = Some("NameError: name 'weights' is not defined".into());
        let v = verify_verdict("t.py", &[failing(Variant::Original), other]);
        assert!(v.summary.starts_with("fix NOT verified"), "{}", v.summary);
        let ok = |variant, ctx| result("t.py", variant, ctx, Ok, Ok, None);
        let v = verify_verdict(
            "t.py",
            &[
                ok(Variant::Original, Ctx::Fork),
                ok(Variant::Fixed, Ctx::Fork),
            ],
        );
        assert!(
            v.summary.starts_with("cannot verify: under fork"),
            "{}",
            v.summary
        );
        let v = verify_verdict(
            "t.py",
            &[
                ok(Variant::Original, Ctx::Spawn),
                ok(Variant::Fixed, Ctx::Spawn),
            ],
        );
        assert!(
            v.summary
                .starts_with("cannot verify: the original passes too"),
            "{}",
            v.summary
        );
    }

    /// A script that fails of its own after its launch: verified only when, in the same
    /// context, both copies stop at the same error and the probe saw the original's launch run
    /// again in the re-importing child and the fixed copy's not.
    #[test]
    fn a_script_failing_after_its_launch_is_verified_by_the_probe_alone() {
        use Outcome::*;
        use Reimport::*;
        let assertion = "AssertionError: deepspeed.initialize requires a model";
        let case = |variant, ctx, outcome, error: &str, reimport| {
            let mut c = result("ds.py", variant, ctx, outcome, outcome, None);
            c.error = Some(error.into());
            c.reimport = reimport;
            c
        };
        let original = case(
            Variant::Original,
            Ctx::Spawn,
            Eaddrinuse,
            assertion,
            Some(Relaunched),
        );
        let fixed = case(Variant::Fixed, Ctx::Spawn, Error, assertion, Some(Clean));
        let v = verify_verdict("ds.py", &[original.clone(), fixed.clone()]);
        assert!(v.fix_verified, "{}", v.summary);
        assert!(
            v.summary.starts_with("fix verified")
                && v.summary.contains("re-import runs no launch (under spawn)")
                && v.summary.contains(assertion),
            "{}",
            v.summary
        );
        // Under fork as well (no probe there): the same error in both copies does not spoil it.
        let v = verify_verdict(
            "ds.py",
            &[
                original.clone(),
                fixed.clone(),
                case(Variant::Original, Ctx::Fork, Error, assertion, None),
                case(Variant::Fixed, Ctx::Fork, Error, assertion, None),
            ],
        );
        assert!(v.fix_verified, "{}", v.summary);
        // Under fork the original did not fail of its launch: only spawn is named as its failure.
        assert!(
            v.summary.contains("fails under spawn with EADDRINUSE")
                && v.summary
                    .contains("stop at the same error of the script's own (under spawn and fork)"),
            "{}",
            v.summary
        );
        // Each neighbour that is not proof: never "fix verified".
        let not = |cases: &[CaseResult]| {
            let v = verify_verdict("ds.py", cases);
            assert!(!v.fix_verified, "{}", v.summary);
            v.summary
        };
        // The fixed copy's child launched too.
        not(&[
            original.clone(),
            case(
                Variant::Fixed,
                Ctx::Spawn,
                Error,
                assertion,
                Some(Relaunched),
            ),
        ]);
        // The fixed copy stops at another error: the fix broke something.
        let s = not(&[
            original.clone(),
            case(
                Variant::Fixed,
                Ctx::Spawn,
                Error,
                "NameError: name 'w' is not defined",
                Some(Clean),
            ),
        ]);
        assert!(s.starts_with("fix NOT verified"), "{s}");
        // The original's child failed before any launch (the script fails before it): no proof.
        let s = not(&[
            case(
                Variant::Original,
                Ctx::Spawn,
                Error,
                assertion,
                Some(Failed),
            ),
            case(Variant::Fixed, Ctx::Spawn, Error, assertion, Some(Failed)),
        ]);
        assert!(s.starts_with("cannot verify"), "{s}");
        // The original's re-import ran no launch either.
        not(&[
            case(Variant::Original, Ctx::Spawn, Error, assertion, Some(Clean)),
            fixed.clone(),
        ]);
        // No probe at all (fork only): the same failure, nothing proved.
        let s = not(&[
            case(Variant::Original, Ctx::Fork, Error, assertion, None),
            case(Variant::Fixed, Ctx::Fork, Error, assertion, None),
        ]);
        assert!(s.starts_with("cannot verify"), "{s}");
        // A leftover spoils it as it spoils every verdict.
        let mut left = fixed.clone();
        left.leftovers = vec!["pid 5 (S) python".into()];
        not(&[original.clone(), left]);
        // A fixed case that hangs is no shared error.
        not(&[
            original,
            case(Variant::Fixed, Ctx::Spawn, Hang, assertion, Some(Clean)),
        ]);
    }

    /// Both copies stop at the same error of the script's own, whose text names the copy's own
    /// folder or the case's own port: the same error (fix verified), and "cannot verify" where
    /// no launch ran; any other difference is another error (never verified).
    #[test]
    fn errors_differing_only_in_the_copy_folder_or_port_are_the_same() {
        use Outcome::*;
        use Reimport::*;
        let case = |variant, outcome, port, error: &str, reimport| {
            let mut c = result("cfg.py", variant, Ctx::Spawn, outcome, outcome, None);
            c.port = port;
            c.error = Some(error.into());
            c.reimport = reimport;
            c
        };
        let missing = |folder: &str| {
            format!(
                "FileNotFoundError: [Errno 2] No such file or directory: '/tmp/.tmpAb/{folder}/data.csv'"
            )
        };
        let refused = |port: u16| format!("ConnectionRefusedError: 127.0.0.1:{port} (port {port})");
        let o = case(
            Variant::Original,
            Eaddrinuse,
            31057,
            &missing("original"),
            Some(Relaunched),
        );
        let f = case(Variant::Fixed, Error, 31058, &missing("fixed"), Some(Clean));
        let v = verify_verdict("cfg.py", &[o, f]);
        assert!(v.fix_verified, "{}", v.summary);
        let o = case(
            Variant::Original,
            Error,
            31057,
            &refused(31057),
            Some(Relaunched),
        );
        let f = case(Variant::Fixed, Error, 31058, &refused(31058), Some(Clean));
        assert!(verify_verdict("cfg.py", &[o, f]).fix_verified);
        for (a, b) in [
            (
                "RuntimeError: DataLoader worker (pid(s) 4711, 4712) exited unexpectedly",
                "RuntimeError: DataLoader worker (pid(s) 5003, 5004) exited unexpectedly",
            ),
            (
                "AttributeError: Can't pickle local object <function <lambda> at 0x7f3a2c1e5b80>",
                "AttributeError: Can't pickle local object <function <lambda> at 0x7f91d04a1e40>",
            ),
        ] {
            let o = case(Variant::Original, Error, 31057, a, Some(Relaunched));
            let f = case(Variant::Fixed, Error, 31058, b, Some(Clean));
            let v = verify_verdict("cfg.py", &[o, f]);
            assert!(v.fix_verified, "{a} / {b}: {}", v.summary);
        }
        // No launch proved: "cannot verify", not "fix NOT verified".
        let o = case(
            Variant::Original,
            Error,
            31057,
            &missing("original"),
            Some(Failed),
        );
        let f = case(
            Variant::Fixed,
            Error,
            31058,
            &missing("fixed"),
            Some(Failed),
        );
        let v = verify_verdict("cfg.py", &[o, f]);
        assert!(v.summary.starts_with("cannot verify"), "{}", v.summary);
        // Another number (not the case's port), another file, another folder name: other errors.
        for (a, b) in [
            (refused(31057).replace("31057)", "31059)"), refused(31058)),
            (
                missing("original"),
                missing("fixed").replace("data", "labels"),
            ),
            (missing("original"), missing("other")),
            (
                "ValueError: 12 != 31057".into(),
                "ValueError: 13 != 31058".into(),
            ),
            ("KeyError: 'pid 12'".into(), "KeyError: 'uid 12'".into()),
            (
                "ValueError: 0x7f3a2c1e5b80".into(),
                "TypeError: 0x7f3a2c1e5b80".into(),
            ),
        ] {
            let o = case(Variant::Original, Error, 31057, &a, Some(Relaunched));
            let f = case(Variant::Fixed, Error, 31058, &b, Some(Clean));
            let v = verify_verdict("cfg.py", &[o, f]);
            assert!(!v.fix_verified, "{a} / {b}: {}", v.summary);
        }
        assert_eq!(
            mask_number("a 310 3105 31057 x31057 31057", 3105),
            "a 310 <port> 31057 x31057 31057"
        );
    }

    /// An original that fails only where no child re-ran its launch (under fork, or an error
    /// with a clean re-import: a flaky script) and a fixed copy that passes: nothing about the
    /// fix is proved, "cannot verify"; with the relaunch seen anywhere, verified.
    #[test]
    fn an_original_failing_without_a_relaunch_proves_nothing() {
        use Outcome::*;
        let case = |variant, ctx, outcome, reimport| {
            let mut c = result("flaky.py", variant, ctx, outcome, outcome, None);
            if outcome != Ok {
                c.error = Some("OSError: [Errno 16] Device or resource busy".into());
            }
            c.reimport = reimport;
            c
        };
        for original in [
            vec![case(Variant::Original, Ctx::Fork, Error, None)],
            vec![case(
                Variant::Original,
                Ctx::Spawn,
                Error,
                Some(Reimport::Clean),
            )],
            vec![
                case(Variant::Original, Ctx::Spawn, Error, Some(Reimport::Failed)),
                case(Variant::Original, Ctx::Fork, Error, None),
            ],
        ] {
            let mut cases = original.clone();
            for o in &original {
                cases.push(case(
                    Variant::Fixed,
                    o.ctx,
                    Ok,
                    o.reimport.map(|_| Reimport::Clean),
                ));
            }
            let v = verify_verdict("flaky.py", &cases);
            assert!(!v.fix_verified, "{}", v.summary);
            assert!(
                v.summary
                    .starts_with("cannot verify: the original failed where no child")
                    && v.summary.contains("the original flaky.py fails under")
                    && !v.summary.contains("module-level launch"),
                "{}",
                v.summary
            );
        }
        // The relaunch seen in one context (or EADDRINUSE there) verifies it.
        for o in [
            case(
                Variant::Original,
                Ctx::Spawn,
                Error,
                Some(Reimport::Relaunched),
            ),
            case(Variant::Original, Ctx::Forkserver, Eaddrinuse, None),
            case(Variant::Original, Ctx::Spawn, Hang, None),
        ] {
            let f = case(Variant::Fixed, o.ctx, Ok, Some(Reimport::Clean));
            let v = verify_verdict("flaky.py", &[o, f]);
            assert!(v.fix_verified, "{}", v.summary);
        }
    }

    fn matrix(fixed_digests: [&str; 3]) -> Vec<CaseResult> {
        use Outcome::*;
        vec![
            result(
                "fabric",
                Variant::Buggy,
                Ctx::Spawn,
                Eaddrinuse,
                Eaddrinuse,
                None,
            ),
            result("fabric", Variant::Buggy, Ctx::Fork, Ok, Ok, Some("a")),
            result(
                "fabric",
                Variant::Buggy,
                Ctx::Forkserver,
                Eaddrinuse,
                Eaddrinuse,
                None,
            ),
            result(
                "fabric",
                Variant::Fixed,
                Ctx::Spawn,
                Ok,
                Ok,
                Some(fixed_digests[0]),
            ),
            result(
                "fabric",
                Variant::Fixed,
                Ctx::Fork,
                Ok,
                Ok,
                Some(fixed_digests[1]),
            ),
            result(
                "fabric",
                Variant::Fixed,
                Ctx::Forkserver,
                Ok,
                Ok,
                Some(fixed_digests[2]),
            ),
        ]
    }

    #[test]
    fn expected_matrix_verifies_the_fix() {
        let v = verdict(&matrix(["d", "d", "d"]));
        assert!(v.fix_verified && v.matches_expected, "{v:?}");
        assert_eq!(
            v.summary,
            "fix verified: the module-level launch (fabric) fails under spawn and forkserver with EADDRINUSE on the rendezvous port; the guarded launch passes under all three contexts, with identical weights"
        );
    }

    #[test]
    fn differing_digests_do_not_verify() {
        let v = verdict(&matrix(["d", "e", "d"]));
        assert!(!v.fix_verified);
        assert!(v.summary.contains("weights differ"), "{}", v.summary);
    }

    #[test]
    fn unexpected_outcome_is_a_mismatch() {
        let mut m = matrix(["d", "d", "d"]);
        m[0].outcome = Outcome::Ok;
        let v = verdict(&m);
        assert!(!v.matches_expected && !v.fix_verified);
        assert_eq!(
            v.mismatches,
            vec!["fabric buggy spawn: ok (expected eaddrinuse)"]
        );
    }

    #[test]
    fn leftovers_are_a_mismatch() {
        let mut m = matrix(["d", "d", "d"]);
        m[3].leftovers = vec!["pid 5 (S) python".into()];
        let v = verdict(&m);
        assert!(!v.matches_expected && !v.fix_verified);
    }

    #[test]
    fn joins_read_well() {
        assert_eq!(join_and(&["a"]), "a");
        assert_eq!(join_and(&["a", "b"]), "a and b");
        assert_eq!(join_and(&["a", "b", "c"]), "a, b and c");
    }
}
