//! `doctor repro ./train.py --verify-fix`: fix a copy of the user's script the way
//! `doctor scan --fix` would, run the original and the fixed copy under each start method
//! (forced through a `sitecustomize` shim), supervised like the bundled cases, and say whether
//! the fix is verified: the original fails where the fixed copy passes in every context.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{
    Accelerator, CaseResult, CaseSpec, Ctx, Launcher, Outcome, PythonInfo, ReproArgs,
    SCHEMA_VERSION, TempDir, Variant, buggy_text, contexts, ctx_list, mismatches, plan_resources,
    run_cases, setup_mode,
};
use crate::error::user_error;
use crate::render::{self, Format, Paint};
use crate::scan::fix::{self, FileFix, Fix};
use crate::sys::{pyenv, supervise};

/// Imported first by every Python process of a case (through PYTHONPATH): makes the start
/// method the case's context, for the script's own children and for DataLoader workers
/// created without an explicit context.
const SHIM: &str = "\
import os as _os

_ctx = _os.environ.get(\"DOCTOR_FORCE_START_METHOD\")
if _ctx:
    import multiprocessing as _mp

    _mp.set_start_method(_ctx, force=True)
";

#[derive(Serialize)]
struct VerifyDocument {
    schema_version: u32,
    script: String,
    /// The fix, as `doctor scan --diff` prints it.
    diff: String,
    python: PythonInfo,
    accelerator: Accelerator,
    jobs: usize,
    timeout_s: f64,
    cases: Vec<CaseResult>,
    verdict: super::Verdict,
}

pub fn main(args: &ReproArgs, python: Option<&Path>) -> anyhow::Result<i32> {
    let script = the_script(args)?;
    let fix = fixed_copy(&script)?;
    let need = needs(&fix.before);
    let env = pyenv::find_python_for(python, setup_mode(args.no_setup), need)?;
    render::note(&format!("doctor: using {} [{}]", env.summary(), env.source));
    let ctxs = contexts(&args.ctx);
    let (accel, jobs) = plan_resources(args, ctxs.len() * 2)?;
    supervise::init()?;
    let workdir = TempDir::new()?;
    let cases = write_cases(&script, &fix, &ctxs, workdir.path())?;
    render::note(&format!(
        "doctor: verifying the fix of {} ({} case(s), {} at a time, timeout {}s each)",
        script.display(),
        cases.len(),
        jobs,
        args.timeout
    ));
    let mut results = match run_cases(&cases, &env, &accel, jobs, workdir.path(), args) {
        Ok(results) => results,
        Err(code) => return Ok(code),
    };
    results.sort_by_key(|c| (c.ctx, c.variant));
    let doc = VerifyDocument {
        schema_version: SCHEMA_VERSION,
        script: script.display().to_string(),
        diff: fix.diff(),
        python: PythonInfo::of(&env),
        accelerator: accel,
        jobs,
        timeout_s: args.timeout,
        verdict: verdict(&file_name(&script), &results),
        cases: results,
    };
    match args.format.unwrap_or(Format::Table) {
        Format::Table => render::print(&render_matrix(&doc)),
        f => render::print(&render::document(&doc, f)?),
    }
    Ok(if doc.verdict.fix_verified { 0 } else { 1 })
}

/// The one script to verify.
fn the_script(args: &ReproArgs) -> anyhow::Result<PathBuf> {
    let [name] = args.names.as_slice() else {
        return Err(user_error(
            "--verify-fix needs exactly one script",
            "give the path of your training script, e.g. doctor repro ./train.py --verify-fix",
        ));
    };
    let path = Path::new(name);
    if !path.is_file() {
        return Err(user_error(
            format!("{name}: no such file"),
            "give the path of your training script; the bundled pairs are verified by plain `doctor repro NAME`",
        ));
    }
    Ok(path.to_path_buf())
}

/// The fix `doctor scan --fix` would make, or why there is none.
fn fixed_copy(script: &Path) -> anyhow::Result<FileFix> {
    let report = crate::scan::scan_path(script, &crate::scan::default_options());
    let shown = script.display();
    if let Some(why) = &report.skipped {
        return Err(user_error(
            format!("cannot read {shown}: {why}"),
            "give a Python source file",
        ));
    }
    let Some(fix) = fix::fix_report(&report) else {
        return Err(user_error(
            format!("{shown} has no import-time launch to fix (doctor scan reports no S001/S002)"),
            format!("run it as it is: doctor repro {shown}"),
        ));
    };
    match &fix.outcome {
        Fix::Fixed(_) => Ok(fix),
        Fix::Refused(why) => Err(user_error(
            format!("{shown} cannot be fixed automatically: {why}"),
            format!(
                "move the launch under `if __name__ == \"__main__\":` by hand, then run `doctor repro {shown}`"
            ),
        )),
        Fix::Broken(why) => Err(user_error(
            format!("the fix of {shown} failed its own check: {why}; nothing was run"),
            "please report this with the script; move the launch under the main guard by hand",
        )),
        Fix::Unchanged => Err(user_error(
            format!("{shown}: the fix changes nothing"),
            format!("run it as it is: doctor repro {shown}"),
        )),
    }
}

/// What the script imports decides which interpreter the search looks for.
fn needs(source: &str) -> pyenv::Need {
    let imports = |module: &str| {
        source.lines().any(|l| {
            let l = l.trim_start();
            (l.starts_with("import ") || l.starts_with("from "))
                && l.split([' ', ',', '.']).nth(1) == Some(module)
        })
    };
    if ["lightning", "pytorch_lightning", "lightning_fabric"]
        .iter()
        .any(|m| imports(m))
    {
        pyenv::Need::TorchAndLightning
    } else if imports("torch") {
        pyenv::Need::Torch
    } else {
        pyenv::Need::Anything
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |f| f.to_string_lossy().into_owned(),
    )
}

/// The original and the fixed copy, each in its own folder of `dir` under the script's name,
/// with the shim; sibling modules of the script stay importable (PYTHONPATH).
fn write_cases(
    script: &Path,
    fix: &FileFix,
    ctxs: &[Ctx],
    dir: &Path,
) -> anyhow::Result<Vec<CaseSpec>> {
    use anyhow::Context;
    let name = file_name(script);
    let shim = dir.join("shim");
    std::fs::create_dir_all(&shim)?;
    std::fs::write(shim.join("sitecustomize.py"), SHIM).context("cannot write the shim")?;
    let home = std::fs::canonicalize(script)?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut path = std::env::join_paths([shim.as_path(), home.as_path()])?;
    if let Some(old) = std::env::var_os("PYTHONPATH").filter(|p| !p.is_empty()) {
        path = std::env::join_paths([PathBuf::from(path), PathBuf::from(old)])?;
    }
    let mut cases = Vec::new();
    for (variant, folder) in [(Variant::Original, "original"), (Variant::Fixed, "fixed")] {
        let copy = dir.join(folder).join(&name);
        std::fs::create_dir_all(dir.join(folder))?;
        match variant {
            Variant::Fixed => fix.write_to(&copy)?,
            _ => {
                std::fs::copy(script, &copy)
                    .with_context(|| format!("cannot copy {}", script.display()))?;
            }
        }
        for &ctx in ctxs {
            cases.push(CaseSpec {
                name: name.clone(),
                variant,
                ctx,
                launcher: Launcher::Direct,
                script: copy.clone(),
                expected: match variant {
                    Variant::Fixed => &[Outcome::Ok],
                    _ => &[
                        Outcome::Ok,
                        Outcome::Eaddrinuse,
                        Outcome::Hang,
                        Outcome::Error,
                    ],
                },
                env: vec![
                    ("DOCTOR_FORCE_START_METHOD".into(), ctx.as_str().into()),
                    ("PYTHONPATH".into(), path.to_string_lossy().into_owned()),
                ],
                bundled: false,
            });
        }
    }
    Ok(cases)
}

/// Verified: the fixed copy passes in every context (same weights where it reports them),
/// the original fails in at least one, and nothing was left behind.
fn verdict(name: &str, cases: &[CaseResult]) -> super::Verdict {
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
    let fix_verified = fixed_ok && same_weights && !fails.is_empty() && clean;
    // Every context of the original counts (no outcome is a race here): list what passed.
    let before = if fails.is_empty() {
        format!("the original {name} passes under {}", ctx_list(&original))
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
    let after = if fixed_ok {
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
    let head = if fix_verified {
        "fix verified"
    } else if fails.is_empty() && fixed_ok {
        "nothing to verify (the original passes too)"
    } else {
        "fix NOT verified"
    };
    let mut summary = format!("{head}: {before}; {after}");
    if !clean {
        summary.push_str(&format!(" (left behind: {})", mismatches.join("; ")));
    }
    super::Verdict {
        fix_verified,
        matches_expected: fix_verified,
        summary,
        mismatches,
    }
}

/// CTX | ORIGINAL | FIXED | DETAIL, then the verdict.
fn render_matrix(doc: &VerifyDocument) -> String {
    let color = render::stdout_color();
    let mut rows: Vec<[String; 5]> = Vec::new();
    let ctxs: BTreeSet<Ctx> = doc.cases.iter().map(|c| c.ctx).collect();
    for ctx in ctxs {
        let find = |v: Variant| doc.cases.iter().find(|c| c.ctx == ctx && c.variant == v);
        let (orig, fixed) = (find(Variant::Original), find(Variant::Fixed));
        let cell = |c: Option<&CaseResult>, good: bool| match c {
            Some(c) => {
                let paint = if good == (c.outcome == Outcome::Ok) {
                    Paint::Green
                } else {
                    Paint::Red
                };
                render::paint(
                    &format!("{} ({:.1}s)", c.outcome.as_str(), c.seconds),
                    paint,
                    color,
                )
            }
            None => "-".to_string(),
        };
        let detail = orig
            .and_then(|c| {
                c.frame
                    .as_ref()
                    .map(|f| {
                        format!(
                            "original: port {} bound again at {}",
                            c.eaddrinuse_port.unwrap_or(c.port),
                            super::short_frame(f)
                        )
                    })
                    .or_else(|| {
                        c.error.as_ref().map(|e| {
                            format!(
                                "original: {}",
                                render::escape_control(&render::shorten(e, 60))
                            )
                        })
                    })
            })
            .into_iter()
            .chain(fixed.and_then(|c| {
                c.error
                    .as_ref()
                    .map(|e| format!("fixed: {}", render::escape_control(&render::shorten(e, 60))))
            }))
            .collect::<Vec<_>>()
            .join("; ");
        rows.push([
            ctx.as_str().to_string(),
            cell(orig, false),
            cell(fixed, true),
            fixed
                .and_then(|c| c.result_digest.as_deref())
                .map_or("-".to_string(), |d| d.chars().take(12).collect()),
            detail,
        ]);
    }
    let header = ["CTX", "ORIGINAL", "FIXED", "DIGEST", "DETAIL"];
    let mut out = format!("{}\n{}\n", doc.script, render::grid::grid(&header, &rows));
    let paint = if doc.verdict.fix_verified {
        Paint::Green
    } else {
        Paint::Red
    };
    out.push('\n');
    out.push_str(&render::paint(&doc.verdict.summary, paint, color));
    out.push('\n');
    if doc.verdict.fix_verified {
        out.push_str(&format!(
            "apply it with: doctor scan --fix {}   (preview: doctor scan --diff {})\n",
            doc.script, doc.script
        ));
    }
    out
}
