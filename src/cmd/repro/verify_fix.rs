//! `doctor repro ./train.py --verify-fix`: fix a copy of the user's script the way
//! `doctor scan --fix` would, run the original and the fixed copy under each start method
//! (forced through a `sitecustomize` shim), supervised like the bundled cases, and say whether
//! the fix is verified: the original fails where the fixed copy passes in every context.

use std::path::{Path, PathBuf};

use super::{ReproArgs, contexts, plan_resources, python_info, run_cases, setup_mode};
use crate::analysis::repro::verify_verdict;
use crate::error::user_error;
use crate::model::repro::{CaseSpec, Ctx, Launcher, Outcome, Variant, VerifyDocument};
use crate::render::{self, Format};
use crate::scan::fix::{self, FileFix, Fix};
use crate::sys::case::CaseDir;
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

pub fn main(args: &ReproArgs, python: Option<&Path>) -> anyhow::Result<i32> {
    let script = the_script(args)?;
    let fix = fixed_copy(&script)?;
    let need = needs(&fix.before);
    let env = pyenv::find_python_for(python, setup_mode(args.no_setup), need)?;
    render::note(&format!("doctor: using {} [{}]", env.summary(), env.source));
    let ctxs = contexts(&args.ctx);
    let (accel, jobs) = plan_resources(args, ctxs.len() * 2)?;
    supervise::init()?;
    let workdir = CaseDir::new()?;
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
        envelope: crate::cmd::envelope(crate::model::envelope::Kind::ReproVerify),
        script: script.display().to_string(),
        diff: fix.diff(),
        python: python_info(&env),
        accelerator: accel,
        jobs,
        timeout_s: args.timeout,
        verdict: verify_verdict(&file_name(&script), &results),
        cases: results,
    };
    match args.out.format(args.format, Format::Table) {
        Format::Table => args.out.emit(&render::repro::verify_matrix(&doc))?,
        f => args.out.emit(&render::document(&doc, f)?)?,
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
