//! `doctor repro`: run the bundled reproductions (module-level launch vs guarded launch) under
//! the spawn, fork and forkserver start methods, each case supervised in its own session with
//! its own free rendezvous port, and say whether the fix is verified.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;

use crate::analysis::{outcome, repro as judge};
use crate::error::user_error;
use crate::model::repro::{
    Accelerator, BUNDLED, CaseResult, CaseSpec, Ctx, Document, Launcher, Outcome, PythonInfo,
    Variant, bundled,
};
use crate::render::{self, Format, progress};
use crate::sys::case::{self as sys_case, CaseDir, Plan};
use crate::sys::pyenv;
use crate::sys::supervise;

mod verify_fix;

/// Default per-case timeout: a case takes 5-10 s on an idle 2-core CPU machine and several times
/// that on a loaded one; a hang is only declared well past that.
pub const DEFAULT_TIMEOUT_S: f64 = 120.0;

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  doctor repro                          the Lightning Fabric pair, all contexts, both variants
  doctor repro --ctx spawn              one context
  doctor repro torchrun --timeout 60    the plain-PyTorch pair under torchrun
  doctor repro ./train.py --ctx spawn   your own script, supervised the same way
  doctor repro ./train.py --verify-fix  fix a copy (doctor scan --fix), run both, before/after
  doctor repro --list | --show fabric   what is bundled
  doctor repro --setup                  create doctor's Python environment (torch + lightning)

Exit codes: 0 the observed matrix matched the expected one, 1 it did not, 2 usage or internal
error, 130 interrupted (every case tree is killed first).")]
pub struct ReproArgs {
    /// Bundled reproductions to run (`fabric`, `torchrun`; default `fabric`), or paths of your own
    /// Python scripts, run as `python SCRIPT [ARGS after --]` and expected to pass
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,

    /// Multiprocessing start method(s) of the DataLoader workers (comma-separated)
    #[arg(long, value_enum, value_delimiter = ',', default_value = "all")]
    pub ctx: Vec<CtxArg>,

    /// Which variant of each bundled pair
    #[arg(long, value_enum, default_value = "both")]
    pub variant: VariantArg,

    /// `auto`: CUDA with NCCL when GPUs are visible, else CPU with gloo
    #[arg(long, value_enum, default_value = "auto")]
    pub accelerator: Accel,

    /// Processes per case (default: one per visible GPU on CUDA, 2 on CPU)
    #[arg(long, value_name = "N")]
    pub devices: Option<u32>,

    /// Seconds before a case is declared a hang and its whole tree is killed
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_TIMEOUT_S)]
    pub timeout: f64,

    /// Python interpreter with torch and lightning (else DOCTOR_PYTHON, the active venv/conda
    /// env, python3 on PATH, then doctor's managed venv)
    #[arg(long, value_name = "PATH")]
    pub python: Option<PathBuf>,

    /// Cases run at once (default on CPU: as many as keep the ranks at or below the number of
    /// CPUs, 1 to 6; on CUDA: 1)
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,

    /// No live progress (each running case's phase and time) on stderr
    #[arg(long)]
    pub no_progress: bool,

    /// Output format (default: table; `--output-format` is the same option)
    #[arg(long, value_enum, alias = "output-format")]
    pub format: Option<Format>,

    #[command(flatten)]
    pub out: super::OutputArg,

    /// List the bundled reproductions and exit
    #[arg(long, conflicts_with_all = ["show", "setup"])]
    pub list: bool,

    /// Print a bundled script (`fabric`, `fabric-buggy`, `torchrun-fixed`, ...) and exit
    #[arg(long, value_name = "NAME", conflicts_with = "setup")]
    pub show: Option<String>,

    /// Make sure a Python environment with torch and lightning exists (creating doctor's
    /// managed venv if needed; with --no-setup only check), print the interpreter, and exit
    #[arg(long)]
    pub setup: bool,

    /// Never create the managed venv; fail if no interpreter has torch and lightning
    #[arg(long)]
    pub no_setup: bool,

    /// The Python a managed venv is made from, and its version (`--setup --python-base
    /// /usr/bin/python3.12` makes `venv-3.12` in doctor's cache); without it, a script that needs a
    /// newer Python than python3 gets one made from python3.N on PATH or pyenv's versions
    #[arg(long, value_name = "PATH", conflicts_with_all = ["python", "list", "show"])]
    pub python_base: Option<PathBuf>,

    /// Fix your script with `doctor scan --fix` (a copy; your file is not touched), run the
    /// original and the fixed copy under each context, and say whether the fix is verified.
    /// `{ctx}` in ARGS is replaced by the context of each run
    #[arg(long, conflicts_with_all = ["list", "show", "setup", "variant"])]
    pub verify_fix: bool,

    /// Arguments for your own scripts (after `--`)
    #[arg(last = true, value_name = "ARGS")]
    pub script_args: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CtxArg {
    Spawn,
    Fork,
    Forkserver,
    All,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum VariantArg {
    Buggy,
    Fixed,
    Both,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Accel {
    Auto,
    Cpu,
    Cuda,
}

pub fn main(args: ReproArgs) -> anyhow::Result<i32> {
    args.out.check()?;
    if args.list {
        return list(&args);
    }
    if let Some(name) = &args.show {
        return show(name);
    }
    check_numbers(&args)?;
    let python = interpreter(
        "--python",
        args.python.as_deref(),
        "give the path of a Python interpreter, e.g. --python .venv/bin/python",
    )?;
    let base = interpreter(
        "--python-base",
        args.python_base.as_deref(),
        pyenv::BASE_HINT,
    )?;
    if args.verify_fix {
        return verify_fix::main(&args, python.as_deref(), base.as_deref());
    }
    // Resolve names before the (possibly slow) environment check, so typos fail fast.
    let selection = select(&args)?;
    let env = python_env(&args, python.as_deref(), base.as_deref(), &selection)?;
    if args.setup {
        // deepspeed's CPU op, compiled once here rather than in the first case that needs it
        // (`--no-setup` only looks). Not for a venv of another Python (`--python-base`), made
        // for scripts that need newer syntax: a `--verify-fix` of a deepspeed script there
        // builds it before its cases.
        if !args.no_setup && base.is_none() {
            pyenv::prepare_deepspeed_op(&env, render::settings().quiet);
        }
        eprintln!("doctor: using {} [{}]", env.summary(), env.source);
        render::print(&format!("{}\n", env.path.display()));
        return Ok(0);
    }
    render::note(&format!("doctor: using {} [{}]", env.summary(), env.source));
    let (accel, jobs) = plan_resources(&args, selection.len())?;
    supervise::init()?;
    let workdir = CaseDir::new()?;
    let cases = sys_case::materialise(selection, workdir.path())?;
    render::note(&format!(
        "doctor: {} case(s), {} at a time, {} x{} ({}), timeout {}s each",
        cases.len(),
        jobs,
        accel.kind,
        accel.devices,
        accel.backend,
        args.timeout
    ));
    let mut results = match run_cases(&cases, &env, &accel, jobs, workdir.path(), &args) {
        Ok(results) => results,
        Err(code) => return Ok(code),
    };
    results.sort_by(|a, b| (&a.name, a.ctx, a.variant).cmp(&(&b.name, b.ctx, b.variant)));
    let verdict = judge::verdict(&results);
    let doc = Document {
        envelope: super::envelope(crate::model::envelope::Kind::Repro),
        python: python_info(&env),
        accelerator: accel,
        jobs,
        timeout_s: args.timeout,
        cases: results,
        verdict,
    };
    match args.out.format(args.format, Format::Table) {
        Format::Table => args.out.emit(&render::repro::table(&doc))?,
        f => args.out.emit(&render::document(&doc, f)?)?,
    }
    Ok(if doc.verdict.matches_expected { 0 } else { 1 })
}

/// --timeout, --jobs and --devices make sense.
/// `--no-setup` forbids creating the managed venv; `-q` keeps its creation quiet.
fn setup_mode(no_setup: bool) -> pyenv::Setup {
    if no_setup {
        pyenv::Setup::Forbidden
    } else {
        pyenv::Setup::Allowed {
            quiet: render::settings().quiet,
        }
    }
}

/// The interpreter `flag` names, resolved (a path, or a name on PATH); a usage error that says
/// whether it is a directory or missing.
fn interpreter(flag: &str, path: Option<&Path>, hint: &str) -> anyhow::Result<Option<PathBuf>> {
    let Some(p) = path else {
        return Ok(None);
    };
    let resolved = pyenv::resolve(p).ok_or_else(|| {
        let why = if p.is_dir() {
            "is a directory"
        } else {
            "no such file"
        };
        user_error(format!("{flag} {}: {why}", p.display()), hint)
    })?;
    Ok(Some(resolved))
}

fn check_numbers(args: &ReproArgs) -> anyhow::Result<()> {
    if !(args.timeout.is_finite() && args.timeout > 0.0 && args.timeout <= 7.0 * 86_400.0) {
        return Err(user_error(
            format!(
                "--timeout {} is not a positive number of seconds (at most a week)",
                if args.timeout.abs() >= 1e9 {
                    format!("{:e}", args.timeout)
                } else {
                    args.timeout.to_string()
                }
            ),
            format!(
                "give the seconds after which a case counts as a hang, e.g. --timeout {DEFAULT_TIMEOUT_S}"
            ),
        ));
    }
    if args.jobs == Some(0) {
        return Err(user_error("--jobs 0 runs nothing", "give --jobs 1 or more"));
    }
    if args.devices == Some(0) {
        return Err(user_error(
            "--devices 0 starts no rank",
            "give --devices 1 or more (2 on CPU shows the bug best)",
        ));
    }
    Ok(())
}

/// The Python version the run needs: the newest that a script of one's own needs for its syntax
/// (said on stderr up front), else exactly the version of `--python-base`, else any.
pub(crate) fn wanted_python(
    scripts: &[&Path],
    base: Option<&Path>,
) -> anyhow::Result<Option<pyenv::Want>> {
    let mut want: Option<pyenv::Want> = None;
    for script in scripts {
        let Some(needed) = crate::scan::version::needed_python_of(script) else {
            continue;
        };
        if want.as_ref().is_some_and(|w| w.version >= needed.version) {
            continue;
        }
        let name = script.file_name().map_or_else(
            || script.display().to_string(),
            |f| f.to_string_lossy().into_owned(),
        );
        want = Some(pyenv::Want {
            version: needed.version,
            exact: false,
            why: format!(
                "{} needs {}",
                render::escape_control(&name),
                needed.describe()
            ),
        });
    }
    if let Some(w) = &want {
        render::note(&format!("doctor: {}", w.why));
    }
    let Some(base) = base else {
        return Ok(want);
    };
    let env = pyenv::probe(base).map_err(|e| {
        user_error(
            format!("--python-base {}: {e:#}", base.display()),
            pyenv::BASE_HINT,
        )
    })?;
    if let Some(w) = want {
        if !w.accepts(&env.python_version) {
            return Err(user_error(
                format!(
                    "--python-base {} is Python {}, but {}",
                    base.display(),
                    env.python_version,
                    w.why
                ),
                format!("give --python-base of a {}, or leave it out", w.text()),
            ));
        }
        return Ok(Some(w));
    }
    let version = pyenv::major_minor(&env.python_version).ok_or_else(|| {
        user_error(
            format!(
                "--python-base {}: cannot read its version ({})",
                base.display(),
                env.python_version
            ),
            "give the path of a CPython interpreter",
        )
    })?;
    Ok(Some(pyenv::Want {
        version,
        exact: true,
        why: format!(
            "--python-base {} is Python {}",
            base.display(),
            env.python_version
        ),
    }))
}

/// The interpreter the cases need (torch, lightning, or anything for scripts of one's own).
fn python_env(
    args: &ReproArgs,
    python: Option<&Path>,
    base: Option<&Path>,
    selection: &[CaseSpec],
) -> anyhow::Result<pyenv::PythonEnv> {
    let need = if args.setup {
        pyenv::Need::TorchAndLightning
    } else if selection.iter().all(|s| s.variant == Variant::Custom) {
        pyenv::Need::Anything
    } else if selection
        .iter()
        .all(|s| s.launcher == Launcher::Torchrun || s.variant == Variant::Custom)
    {
        pyenv::Need::Torch
    } else {
        pyenv::Need::TorchAndLightning
    };
    let mut scripts: Vec<&Path> = Vec::new();
    for s in selection.iter().filter(|s| s.variant == Variant::Custom) {
        if !scripts.contains(&s.script.as_path()) {
            scripts.push(&s.script);
        }
    }
    let want = wanted_python(&scripts, base)?;
    let env =
        pyenv::find_python_with(python, setup_mode(args.no_setup), need, want.as_ref(), base)?;
    if !args.setup
        && selection
            .iter()
            .any(|s| s.launcher == Launcher::Direct && s.variant != Variant::Custom)
        && env.lightning.is_none()
    {
        return Err(user_error(
            format!("{} has no lightning package", env.path.display()),
            "install lightning there, or run `doctor repro torchrun` (plain PyTorch)",
        ));
    }
    Ok(env)
}

/// The accelerator and how many cases run at once.
fn plan_resources(args: &ReproArgs, cases: usize) -> anyhow::Result<(Accelerator, usize)> {
    let (kind, devices) = accelerator(args.accelerator, args.devices)?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Never more torch ranks at once than CPUs by default (each case starts `devices` ranks).
    let jobs = args
        .jobs
        .unwrap_or(if kind == "cuda" {
            1
        } else {
            (cpus / devices.max(1) as usize).clamp(1, 6)
        })
        .min(cases.max(1));
    let accel = Accelerator {
        kind,
        backend: if kind == "cuda" { "nccl" } else { "gloo" },
        devices,
    };
    Ok((accel, jobs))
}

/// Run the cases (live progress unless `--no-progress`), their secrets redacted; `Err(exit code)`
/// when interrupted.
fn run_cases(
    cases: &[CaseSpec],
    env: &pyenv::PythonEnv,
    accel: &Accelerator,
    jobs: usize,
    workdir: &Path,
    args: &ReproArgs,
) -> Result<Vec<CaseResult>, i32> {
    let plan = Plan {
        python: env.path.clone(),
        accel_kind: accel.kind,
        devices: accel.devices,
        timeout: Duration::from_secs_f64(args.timeout),
        workdir: workdir.to_path_buf(),
        script_args: args.script_args.clone(),
    };
    let results = run_all(cases, &plan, jobs, progress::Mode::choose(args.no_progress));
    if supervise::interrupted() {
        return Err(report_interrupted(&results));
    }
    let mut results: Vec<CaseResult> = results.into_iter().flatten().collect();
    if !render::settings().show_secrets {
        render::repro::redact_cases(&mut results);
    }
    Ok(results)
}

/// Ctrl-C: say what was killed and whether anything is left; the exit code.
fn report_interrupted(results: &[Option<CaseResult>]) -> i32 {
    let done: Vec<&CaseResult> = results.iter().flatten().collect();
    let killed: usize = done.iter().map(|r| r.killed.len()).sum();
    let left: Vec<&String> = done.iter().flat_map(|r| r.leftovers.iter()).collect();
    if left.is_empty() {
        eprintln!(
            "doctor: interrupted; killed {killed} process(es) of the running cases, none left running"
        );
    } else {
        eprintln!(
            "doctor: interrupted; killed {killed} process(es), but these are left: {}",
            left.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    supervise::interrupt_exit_code()
}

fn list(args: &ReproArgs) -> anyhow::Result<i32> {
    #[derive(Serialize)]
    struct Item {
        name: &'static str,
        about: &'static str,
        scripts: [&'static str; 2],
        measured: &'static str,
    }
    #[derive(Serialize)]
    struct Doc {
        #[serde(flatten)]
        envelope: crate::model::envelope::Envelope,
        repros: Vec<Item>,
    }
    match args.out.format(args.format, Format::Table) {
        Format::Table => args.out.emit(&render::repro::list())?,
        f => {
            let repros = BUNDLED
                .iter()
                .map(|b| Item {
                    name: b.name,
                    about: b.about,
                    scripts: [b.buggy.0, b.fixed.0],
                    measured: b.measured,
                })
                .collect();
            args.out.emit(&render::document(
                &Doc {
                    envelope: super::envelope(crate::model::envelope::Kind::ReproList),
                    repros,
                },
                f,
            )?)?
        }
    }
    Ok(0)
}

/// What the document says of the interpreter.
fn python_info(env: &pyenv::PythonEnv) -> PythonInfo {
    PythonInfo {
        path: env.path.display().to_string(),
        python_version: env.python_version.clone(),
        torch: env.torch.clone(),
        lightning: env.lightning.clone(),
        source: env.source.clone(),
    }
}

fn unknown_name(name: &str, for_show: bool) -> anyhow::Error {
    let mut names: Vec<String> = Vec::new();
    for b in BUNDLED {
        names.push(b.name.to_string());
        if for_show {
            names.push(format!("{}-buggy", b.name));
            names.push(format!("{}-fixed", b.name));
        }
    }
    let tail = if for_show {
        ""
    } else {
        "; a script of your own is given by its path, e.g. ./train.py"
    };
    user_error(
        format!("unknown reproduction `{name}`"),
        format!(
            "bundled: {} (see `doctor repro --list`){tail}",
            names.join(", ")
        ),
    )
}

fn show(name: &str) -> anyhow::Result<i32> {
    let key = name.trim_end_matches(".py").replace('_', "-");
    let (base, which) = match key.rsplit_once('-') {
        Some((b, v @ ("buggy" | "fixed"))) => (b.to_string(), Some(v)),
        _ => (key.clone(), None),
    };
    let b = bundled(&base).ok_or_else(|| unknown_name(name, true))?;
    let mut out = String::new();
    for (variant, (file, src)) in [("buggy", b.buggy), ("fixed", b.fixed)] {
        if which.is_some_and(|w| w != variant) {
            continue;
        }
        if which.is_none() {
            out.push_str(&format!("# ===== {file} ({variant}) =====\n"));
        }
        out.push_str(src);
        if which.is_none() {
            out.push('\n');
        }
    }
    render::print(&out);
    Ok(0)
}

fn contexts(args: &[CtxArg]) -> Vec<Ctx> {
    let mut out = BTreeSet::new();
    for a in args {
        match a {
            CtxArg::Spawn => {
                out.insert(Ctx::Spawn);
            }
            CtxArg::Fork => {
                out.insert(Ctx::Fork);
            }
            CtxArg::Forkserver => {
                out.insert(Ctx::Forkserver);
            }
            CtxArg::All => out.extend(Ctx::ALL),
        }
    }
    out.into_iter().collect()
}

/// The cases, before scripts are written.
fn select(args: &ReproArgs) -> anyhow::Result<Vec<CaseSpec>> {
    let ctxs = contexts(&args.ctx);
    let names = if args.names.is_empty() {
        vec!["fabric".to_string()]
    } else {
        args.names.clone()
    };
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for name in names {
        if !seen.insert(name.clone()) {
            continue;
        }
        if let Some(b) = bundled(&name) {
            for &ctx in &ctxs {
                for (variant, (file, _)) in [(Variant::Buggy, b.buggy), (Variant::Fixed, b.fixed)] {
                    let wanted = match args.variant {
                        VariantArg::Both => true,
                        VariantArg::Buggy => variant == Variant::Buggy,
                        VariantArg::Fixed => variant == Variant::Fixed,
                    };
                    if !wanted {
                        continue;
                    }
                    out.push(CaseSpec {
                        name: b.name.to_string(),
                        variant,
                        ctx,
                        launcher: b.launcher,
                        script: PathBuf::from(file),
                        expected: if variant == Variant::Buggy {
                            (b.expect_buggy)(ctx)
                        } else {
                            &[Outcome::Ok]
                        },
                        env: Vec::new(),
                        bundled: true,
                    });
                }
            }
            continue;
        }
        let path = Path::new(&name);
        let looks_like_path = name.ends_with(".py") || name.contains('/');
        if looks_like_path && path.is_file() {
            let abs = std::fs::canonicalize(path)
                .with_context(|| format!("cannot resolve {}", path.display()))?;
            for &ctx in &ctxs {
                out.push(CaseSpec {
                    name: name.clone(),
                    variant: Variant::Custom,
                    ctx,
                    launcher: Launcher::Direct,
                    script: abs.clone(),
                    expected: &[Outcome::Ok],
                    env: Vec::new(),
                    bundled: false,
                });
            }
            continue;
        }
        if looks_like_path {
            return Err(user_error(
                format!("{name}: no such file"),
                "give the path of a Python script, or a bundled name (`doctor repro --list`)",
            ));
        }
        return Err(unknown_name(&name, false));
    }
    Ok(out)
}

fn accelerator(accel: Accel, devices: Option<u32>) -> anyhow::Result<(&'static str, u32)> {
    let gpus = crate::sys::host::visible_gpus();
    match accel {
        Accel::Cpu => Ok(("cpu", devices.unwrap_or(2))),
        Accel::Auto if gpus == 0 => Ok(("cpu", devices.unwrap_or(2))),
        Accel::Auto | Accel::Cuda => {
            if gpus == 0 {
                return Err(user_error(
                    "--accelerator cuda, but no NVIDIA GPU is visible (/proc/driver/nvidia/gpus, CUDA_VISIBLE_DEVICES)",
                    "use --accelerator cpu (or auto)",
                ));
            }
            Ok(("cuda", devices.unwrap_or(gpus)))
        }
    }
}

/// The cases, `jobs` at a time, with live progress.
fn run_all(
    cases: &[CaseSpec],
    plan: &Plan,
    jobs: usize,
    mode: progress::Mode,
) -> Vec<Option<CaseResult>> {
    let done = std::sync::atomic::AtomicUsize::new(0);
    let color = render::stderr_color();
    let bars = progress::Progress::new(mode, cases.len());
    sys_case::run_parallel(cases.len(), jobs, |i| {
        let case = &cases[i];
        let label = format!(
            "{} {} {}",
            case.name,
            case.variant.as_str(),
            case.ctx.as_str()
        );
        bars.start(i, &label, "starting");
        progress::set_current(Some((bars.clone(), i)));
        let result = match run_case(case, plan, i) {
            Ok(r) => r,
            Err(e) => judge::failed_to_start(case, format!("{e:#}")),
        };
        progress::set_current(None);
        let n = done.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        let line = if supervise::interrupted() {
            String::new()
        } else {
            render::repro::result_line(&result, n, cases.len(), color)
        };
        bars.finish(i, &line);
        result
    })
}

/// Run one case and judge it.
fn run_case(case: &CaseSpec, plan: &Plan, index: usize) -> anyhow::Result<CaseResult> {
    let ran = sys_case::run_spec(case, plan, index, &progress::phase)?;
    // Bundled scripts print one DOCTOR_RESULT line per rank; scripts of one's own need not.
    let expected_ranks = if case.bundled {
        plan.devices as usize
    } else {
        0
    };
    let judged = outcome::judge(&ran.run, ran.port, expected_ranks, plan.timeout);
    Ok(judge::case_result(
        case, ran.port, ran.argv, ran.run, judged,
    ))
}
