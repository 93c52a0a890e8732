//! `doctor repro ./train.py --verify-fix`: fix a copy of the user's script the way
//! `doctor scan --fix` would, run the original and the fixed copy under each start method
//! (forced through a `sitecustomize` shim), supervised like the bundled cases, and say whether
//! the fix is verified: the original fails where the fixed copy passes in every context.

use std::path::{Path, PathBuf};

use super::{
    ReproArgs, contexts, plan_resources, python_info, run_cases, setup_mode, wanted_python,
};
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
///
/// And the re-import probe (spawn and forkserver only): when the script ends, its first process
/// starts one child of the case's context, which re-imports the script as `__mp_main__` the way
/// every DataLoader worker or spawned rank does. That child records, by line tracing, which
/// lines of the script ran during that import; if a launch line (`DOCTOR_PROBE_LAUNCH_LINES`)
/// ran, it says so on stderr (even when the import then fails) and the case fails; when none ran
/// and the child exits cleanly, the first process says so too (`no launch ran again`). A child
/// that crashes or hangs while importing fails the case. A script that ended with an exception
/// is probed all the same (after its launch it may fail for a reason of its own: no GPU, a
/// placeholder argument); its exception stays the case's error. So a script that starts no
/// child of its own still shows whether its launch runs again on re-import (the original) or
/// not (the fixed copy).
const SHIM: &str = r#"import os as _os
import sys as _sys

_ctx = _os.environ.get("DOCTOR_FORCE_START_METHOD")
if _ctx:
    import multiprocessing as _mp

    _mp.set_start_method(_ctx, force=True)

    # A script that sets the start method itself keeps its choice (instead of "context has
    # already been set", which only the forcing above would cause).
    def _doctor_set_start_method(method, force=False, _set=_mp.set_start_method):
        _set(method, force=True)

    _mp.set_start_method = _doctor_set_start_method
    _mp.context._default_context.set_start_method = _doctor_set_start_method

# Only the case's first process probes (the variable is not inherited); its probe child traces.
_lines = _os.environ.pop("DOCTOR_PROBE_LAUNCH_LINES", None)
_ran = set()
# Python deletes __main__.__file__ once the script has run; the probe puts it back.
_main_file = _os.path.abspath(_sys.argv[0]) if _sys.argv and _sys.argv[0].endswith(".py") else None


def _local(frame, event, arg):
    if event == "line":
        _ran.add(frame.f_lineno)
    return _local


def _tracer(frame, event, arg):
    if frame.f_globals.get("__name__") != "__mp_main__":
        return None
    _ran.add(frame.f_lineno)
    return _local


_reported = []


def _doctor_relaunch_line(lines):
    hit = sorted(set(int(n) for n in lines.split(",") if n) & _ran)
    return hit[0] if hit else None


def _doctor_say_relaunch(line, ctx):
    _reported.append(line)
    print(
        "error: the launch on line %d ran again in a %s child that re-imported the script"
        % (line, ctx),
        file=_sys.stderr,
        flush=True,
    )


def _doctor_child_excepthook(kind, value, tb, _hook=_sys.excepthook):
    # The probe child's import of the script failed (an EADDRINUSE of the launch it re-ran, or an
    # error of the script's own): say first whether a launch line ran before it.
    lines = _os.environ.get("DOCTOR_PROBE_CHILD_LINES", "")
    line = _doctor_relaunch_line(lines)
    if line is not None and not _reported:
        _doctor_say_relaunch(line, _ctx)
    _hook(kind, value, tb)


if _os.environ.get("DOCTOR_PROBE_TRACE") == "1" and _lines is None:
    _sys.settrace(_tracer)
    _sys.excepthook = _doctor_child_excepthook


def _doctor_probe_report(lines, ctx):
    _sys.settrace(None)
    line = _doctor_relaunch_line(lines)
    if line is not None:
        _doctor_say_relaunch(line, ctx)
        _sys.exit(3)
    # A launch on no line the scan flagged (a helper of a package, a name it cannot read) that
    # still ran during the import: the default process group is there in a fresh child.
    dist = _sys.modules.get("torch.distributed")
    try:
        initialised = dist is not None and dist.is_available() and dist.is_initialized()
    except Exception:
        initialised = False
    if initialised:
        print(
            "error: the launch ran again in a %s child that re-imported the script: "
            "torch.distributed is initialised after the import, by a line doctor did not flag"
            % ctx,
            file=_sys.stderr,
            flush=True,
        )
        _sys.exit(3)


_failed = []


def _doctor_excepthook(kind, value, tb, _hook=_sys.excepthook):
    _failed.append(kind)
    _hook(kind, value, tb)


def _doctor_probe():
    if _failed:
        # The script failed of its own (its exception is above; it stays the case's error). Its
        # launch may have run before: a child that re-imports the script still shows whether it
        # runs again there.
        print(
            "doctor: the script ended with %s; re-importing it in a %s child all the same"
            % (_failed[0].__name__, _ctx),
            file=_sys.stderr,
            flush=True,
        )
    import multiprocessing as mp

    ctx = mp.get_context(_ctx)
    _os.environ["DOCTOR_PROBE_TRACE"] = "1"
    _os.environ["DOCTOR_PROBE_CHILD_LINES"] = _lines
    if _ctx == "forkserver":
        # A forkserver started before imported the script untraced: start a fresh one.
        from multiprocessing import forkserver as _fs

        stop = getattr(_fs._forkserver, "_stop", None)
        if stop is not None:
            stop()
    main = _sys.modules.get("__main__")
    if main is not None and _main_file and getattr(main, "__file__", None) is None:
        main.__file__ = _main_file
    try:
        p = ctx.Process(target=_doctor_probe_report, args=(_lines, _ctx))
        p.start()
        p.join(60)
    except BaseException as e:
        print(
            "error: a %s child that re-imports the script could not start: %s: %s"
            % (_ctx, type(e).__name__, e),
            file=_sys.stderr,
            flush=True,
        )
        _os._exit(3)
    if p.exitcode is None:
        p.kill()
        p.join()
        print(
            "error: a %s child that re-imported the script hung (killed after 60 s)" % _ctx,
            file=_sys.stderr,
            flush=True,
        )
        _os._exit(3)
    if p.exitcode != 0:
        print(
            "error: a %s child that re-imported the script failed (exit code %s)"
            % (_ctx, p.exitcode),
            file=_sys.stderr,
            flush=True,
        )
        _os._exit(3)
    print(
        "doctor: a %s child re-imported the script; no launch ran again" % _ctx,
        file=_sys.stderr,
        flush=True,
    )


if _lines is not None and _ctx in ("spawn", "forkserver"):
    import atexit as _atexit

    _sys.excepthook = _doctor_excepthook
    _atexit.register(_doctor_probe)
"#;

pub fn main(args: &ReproArgs, python: Option<&Path>, base: Option<&Path>) -> anyhow::Result<i32> {
    let script = the_script(args)?;
    let (fix, launch_lines) = fixed_copy(&script)?;
    let lines = LaunchLines::of(&fix, &launch_lines)?;
    let need = needs(&fix.before);
    let want = wanted_python(&[script.as_path()], base)?;
    let env =
        pyenv::find_python_with(python, setup_mode(args.no_setup), need, want.as_ref(), base)?;
    render::note(&format!("doctor: using {} [{}]", env.summary(), env.source));
    if imports(&fix.before, "deepspeed") && !args.no_setup {
        // Its first init_distributed() on CPU compiles a C++ op: once, here, not in a case's timeout.
        pyenv::prepare_deepspeed_op(&env, render::settings().quiet);
    }
    let mut extra_env = pyenv::case_env(&env);
    if needs_local_rank(&fix.before) {
        extra_env.push(("LOCAL_RANK".into(), "0".into()));
    }
    let ctxs = contexts(&args.ctx);
    let (accel, jobs) = plan_resources(args, ctxs.len() * 2)?;
    supervise::init()?;
    let workdir = CaseDir::new()?;
    let cases = write_cases(&script, &fix, &lines, &ctxs, &extra_env, workdir.path())?;
    render::note(&format!(
        "doctor: verifying the fix of {} ({} case(s), {} at a time, timeout {}s each)",
        render::escape_control(&script.display().to_string()),
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
            format!("{}: no such file", render::escape_control(name)),
            "give the path of your training script; the bundled pairs are verified by plain `doctor repro NAME`",
        ));
    }
    Ok(path.to_path_buf())
}

/// The fix `doctor scan --fix` would make and the lines of the launches it moves (S001/S002),
/// or why there is none.
fn fixed_copy(script: &Path) -> anyhow::Result<(FileFix, Vec<usize>)> {
    let report = crate::scan::scan_path(script, &crate::scan::default_options());
    let shown = render::escape_control(&script.display().to_string()).into_owned();
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
    let lines: Vec<usize> = report
        .diagnostics
        .iter()
        .filter(|d| matches!(d.code, crate::scan::Rule::S001 | crate::scan::Rule::S002))
        .map(|d| d.line)
        .collect();
    match &fix.outcome {
        Fix::Fixed(_) => Ok((fix, lines)),
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

/// The lines of the launches in the original and in the fixed copy, for the re-import probe.
struct LaunchLines {
    original: Vec<usize>,
    fixed: Vec<usize>,
}

impl LaunchLines {
    /// The fixed copy's launch lines are the lines whose text is a launch line's text (the fix
    /// only re-indents what it moves); every launch must be found there.
    fn of(fix: &FileFix, original: &[usize]) -> anyhow::Result<LaunchLines> {
        let Fix::Fixed(after) = &fix.outcome else {
            anyhow::bail!("there is no fix");
        };
        let before: Vec<&str> = fix.before.lines().collect();
        let after: Vec<&str> = after.lines().collect();
        let mut fixed = Vec::new();
        for &n in original {
            let Some(text) = n
                .checked_sub(1)
                .and_then(|i| before.get(i))
                .map(|l| l.trim())
            else {
                continue;
            };
            let found: Vec<usize> = after
                .iter()
                .enumerate()
                .filter(|(_, l)| l.trim() == text)
                .map(|(i, _)| i + 1)
                .collect();
            if found.is_empty() {
                return Err(user_error(
                    format!(
                        "cannot find the launch of line {n} (`{}`) in the fixed copy; nothing was run",
                        render::escape_control(text)
                    ),
                    "please report this with the script; doctor scan --diff shows the fix",
                ));
            }
            fixed.extend(found);
        }
        fixed.sort_unstable();
        fixed.dedup();
        Ok(LaunchLines {
            original: original.to_vec(),
            fixed,
        })
    }
}

fn joined(lines: &[usize]) -> String {
    lines
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether a line of `source` imports the top-level `module` (`import m`, `import m.x as y`,
/// `import a, m`, `from m import ...`, `from m.x import ...`).
fn imports(source: &str, module: &str) -> bool {
    let top = |name: &str| name.trim().split(['.', ' ']).next() == Some(module);
    source.lines().any(|l| {
        let l = l.trim_start();
        if let Some(names) = l.strip_prefix("import ") {
            names.split(',').any(top)
        } else if let Some(from) = l.strip_prefix("from ") {
            top(from)
        } else {
            false
        }
    })
}

/// deepspeed's launcher gives every rank `LOCAL_RANK`; without it `deepspeed.init_distributed()`
/// takes the script for an MPI job (`mpi_discovery`, mpi4py) instead of reading `env://`. Not for
/// a Lightning script (its DeepSpeed strategy): Lightning sets `LOCAL_RANK` for the ranks it
/// starts, and with one set from outside it would wait for ranks it did not start.
fn needs_local_rank(source: &str) -> bool {
    imports(source, "deepspeed") && needs(source) != pyenv::Need::TorchAndLightning
}

/// What the script imports decides which interpreter the search looks for.
fn needs(source: &str) -> pyenv::Need {
    let imports = |module: &str| imports(source, module);
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
    lines: &LaunchLines,
    ctxs: &[Ctx],
    extra_env: &[(String, String)],
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
        mirror_folder(&home, &dir.join(folder), &name);
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
                env: extra_env
                    .iter()
                    .cloned()
                    .chain([
                        ("DOCTOR_FORCE_START_METHOD".into(), ctx.as_str().into()),
                        ("PYTHONPATH".into(), path.to_string_lossy().into_owned()),
                        // The env:// rendezvous of a world of one, for scripts that a launcher
                        // normally starts (MASTER_ADDR and MASTER_PORT come with every case).
                        // No LOCAL_RANK: with it, Lightning would wait for ranks it did not start.
                        ("RANK".into(), "0".into()),
                        ("WORLD_SIZE".into(), "1".into()),
                        (
                            "DOCTOR_PROBE_LAUNCH_LINES".into(),
                            joined(match variant {
                                Variant::Fixed => &lines.fixed,
                                _ => &lines.original,
                            }),
                        ),
                    ])
                    .collect(),
                bundled: false,
            });
        }
    }
    Ok(cases)
}

/// The copy's folder shows what the script's folder holds (a link to each entry but the script
/// itself), so a script that reads a file beside it (`os.path.dirname(__file__)`: a config, a
/// dataset) finds it as it does in place; without them both copies stopped at a
/// FileNotFoundError that naming its own folder (original/ or fixed/) made two errors, and a
/// working fix was "fix NOT verified". An entry that cannot be linked is left out.
fn mirror_folder(home: &Path, folder: &Path, script: &str) {
    let Ok(entries) = std::fs::read_dir(home) else {
        return;
    };
    for e in entries.flatten() {
        let entry = e.file_name();
        // Not the script, and not its bytecode cache: a hash-checked `.pyc` of the original
        // would be loaded for the fixed copy's `import NAME` of itself.
        if entry == std::ffi::OsStr::new(script) || entry == "__pycache__" {
            continue;
        }
        let _ = std::os::unix::fs::symlink(e.path(), folder.join(&entry));
    }
}

#[cfg(test)]
mod tests {
    use super::{imports, needs_local_rank};

    #[test]
    fn local_rank_for_deepspeed_scripts_that_lightning_does_not_launch() {
        assert!(needs_local_rank(
            "import deepspeed\ndeepspeed.init_distributed()\n"
        ));
        assert!(needs_local_rank(
            "import torch\nfrom deepspeed import zero\n"
        ));
        assert!(!needs_local_rank("import torch\n"));
        assert!(!needs_local_rank(
            "import deepspeed\nimport lightning as L\nL.Trainer(strategy='deepspeed')\n"
        ));
        assert!(!needs_local_rank(
            "import deepspeed\nfrom pytorch_lightning import Trainer\n"
        ));
    }

    #[test]
    fn imports_are_read_in_each_spelling() {
        for yes in [
            "import deepspeed",
            "  import deepspeed.comm as dist",
            "import torch, deepspeed",
            "import torch,deepspeed",
            "from deepspeed import zero",
            "from deepspeed.ops import adam",
            "import torch as t, deepspeed as ds",
        ] {
            assert!(imports(yes, "deepspeed"), "{yes}");
        }
        for no in [
            "import deepspeedx",
            "from torch import deepspeed",
            "# import deepspeed",
            "x = 'import deepspeed'",
            "import torch",
        ] {
            assert!(!imports(no, "deepspeed"), "{no}");
        }
    }
}
