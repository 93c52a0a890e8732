//! `doctor repro`: run the bundled reproductions (module-level launch vs guarded launch) under
//! the spawn, fork and forkserver start methods, each case supervised in its own session with
//! its own free rendezvous port, and say whether the fix is verified.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;

use crate::analysis::outcome::{self, Judged};
use crate::analysis::traceback::RankResult;
use crate::error::user_error;
use crate::render::{self, Format, Paint, progress};
use crate::sys::case::{self as sys_case, CaseCommand, CaseRun};
use crate::sys::pyenv;
use crate::sys::supervise::{self, Killed};

mod verify_fix;

/// The version of repro's documents: the same as every doctor document (docs/changelog.md).
pub const SCHEMA_VERSION: u32 = crate::model::snapshot::SCHEMA_VERSION;

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

    /// Output format (default: table)
    #[arg(long, value_enum)]
    pub format: Option<Format>,

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

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Ctx {
    Spawn,
    Fork,
    Forkserver,
}

impl Ctx {
    pub fn as_str(self) -> &'static str {
        match self {
            Ctx::Spawn => "spawn",
            Ctx::Fork => "fork",
            Ctx::Forkserver => "forkserver",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum VariantArg {
    Buggy,
    Fixed,
    Both,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    Buggy,
    Fixed,
    /// A script given by path.
    Custom,
    /// `--verify-fix`: the user's script as it is (the fixed copy is `Fixed`).
    Original,
}

impl Variant {
    pub fn as_str(self) -> &'static str {
        match self {
            Variant::Buggy => "buggy",
            Variant::Fixed => "fixed",
            Variant::Custom => "custom",
            Variant::Original => "original",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Accel {
    Auto,
    Cpu,
    Cuda,
}

pub use crate::analysis::outcome::Outcome;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Launcher {
    /// `python script.py ...`; the script launches its own ranks (Lightning).
    Direct,
    /// `python -m torch.distributed.run --nproc-per-node N ... script.py ...`.
    Torchrun,
}

/// A bundled pair.
pub struct Bundled {
    pub name: &'static str,
    pub about: &'static str,
    launcher: Launcher,
    buggy: (&'static str, &'static str),
    fixed: (&'static str, &'static str),
    /// Outcomes accepted for the buggy variant in a context (the fixed one must pass).
    expect_buggy: fn(Ctx) -> &'static [Outcome],
    /// What was measured, for `--list` and the docs.
    pub measured: &'static str,
}

pub const BUNDLED: &[Bundled] = &[
    Bundled {
        name: "fabric",
        about: "Lightning Fabric DDP; fabric.launch() at module level (buggy) vs inside main() under the __main__ guard (fixed)",
        launcher: Launcher::Direct,
        buggy: (
            "fabric_buggy.py",
            include_str!("../../repro/fabric_buggy.py"),
        ),
        fixed: (
            "fabric_fixed.py",
            include_str!("../../repro/fabric_fixed.py"),
        ),
        expect_buggy: |ctx| match ctx {
            Ctx::Fork => &[Outcome::Ok],
            Ctx::Spawn | Ctx::Forkserver => &[Outcome::Eaddrinuse],
        },
        measured: "buggy: EADDRINUSE under spawn and forkserver (the DataLoader worker re-runs the launch as a second rank 0), passes under fork; fixed: passes everywhere",
    },
    Bundled {
        name: "torchrun",
        about: "plain PyTorch DDP under torchrun; init_process_group at module level (buggy) vs inside main() (fixed)",
        launcher: Launcher::Torchrun,
        buggy: (
            "torchrun_buggy.py",
            include_str!("../../repro/torchrun_buggy.py"),
        ),
        fixed: (
            "torchrun_fixed.py",
            include_str!("../../repro/torchrun_fixed.py"),
        ),
        expect_buggy: |ctx| match ctx {
            Ctx::Fork => &[Outcome::Ok],
            Ctx::Spawn | Ctx::Forkserver => &[Outcome::Hang, Outcome::Error, Outcome::Ok],
        },
        measured: "buggy: never EADDRINUSE; under spawn and forkserver the worker joins torchrun's agent store as a duplicate rank and the run races: it hangs, dies in gloo's connection mesh, or (sometimes) passes; passes under fork; fixed: passes everywhere",
    },
];

fn bundled(name: &str) -> Option<&'static Bundled> {
    BUNDLED.iter().find(|b| b.name == name)
}

/// One case to run.
#[derive(Clone, Debug)]
struct CaseSpec {
    name: String,
    variant: Variant,
    ctx: Ctx,
    launcher: Launcher,
    /// The script on disk (written to the run's temp dir for bundled ones).
    script: PathBuf,
    expected: &'static [Outcome],
    /// Extra environment for the case (the forced start method of --verify-fix).
    env: Vec<(String, String)>,
    /// A bundled script (takes --ctx/--accelerator/--devices, prints DOCTOR_RESULT per rank).
    bundled: bool,
}

/// The result of one case, as in the JSON/YAML document.
#[derive(Clone, Debug, Serialize)]
pub struct CaseResult {
    pub name: String,
    pub variant: Variant,
    pub ctx: Ctx,
    pub outcome: Outcome,
    /// The outcomes that count as expected (one, except where measurement showed a race).
    pub expected: Vec<Outcome>,
    pub matches_expected: bool,
    /// The rendezvous port (MASTER_PORT) given to the case.
    pub port: u16,
    /// The launcher's exit status (128+signal when killed); null when it was still running at the timeout.
    pub exit_code: Option<i32>,
    pub seconds: f64,
    /// Digest of the trained weights, when every rank reported the same one.
    pub result_digest: Option<String>,
    pub ranks: Vec<RankResult>,
    /// For eaddrinuse: the port named in the error and the user-script frame that re-ran the launch.
    pub eaddrinuse_port: Option<u16>,
    pub frame: Option<String>,
    /// The first meaningful error line (any failure).
    pub error: Option<String>,
    /// Processes that were still running when the case ended and had to be killed.
    pub killed: Vec<Killed>,
    /// Processes or ports still alive after the kill; must be empty.
    pub leftovers: Vec<String>,
    pub command: Vec<String>,
    /// The last lines the case printed, when it did not pass.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub log_tail: Vec<String>,
    /// The launcher's pid, and the DOCTOR_TAG value every process of the case carried.
    pub pid: i32,
    pub tag: String,
}

#[derive(Serialize)]
struct Accelerator {
    kind: &'static str,
    backend: &'static str,
    devices: u32,
}

#[derive(Serialize)]
struct PythonInfo {
    path: String,
    python_version: String,
    torch: Option<String>,
    lightning: Option<String>,
    source: String,
}

#[derive(Serialize, Debug)]
pub struct Verdict {
    pub fix_verified: bool,
    /// Every case had its expected outcome and nothing was left behind.
    pub matches_expected: bool,
    pub summary: String,
    pub mismatches: Vec<String>,
}

#[derive(Serialize)]
struct Document {
    schema_version: u32,
    python: PythonInfo,
    accelerator: Accelerator,
    jobs: usize,
    timeout_s: f64,
    cases: Vec<CaseResult>,
    verdict: Verdict,
}

pub fn main(args: ReproArgs) -> anyhow::Result<i32> {
    if args.list {
        return list(args.format);
    }
    if let Some(name) = &args.show {
        return show(name);
    }
    check_numbers(&args)?;
    let python = match &args.python {
        Some(p) => Some(pyenv::resolve(p).ok_or_else(|| {
            user_error(
                format!("--python {}: no such file", p.display()),
                "give the path of a Python interpreter, e.g. --python .venv/bin/python",
            )
        })?),
        None => None,
    };
    if args.verify_fix {
        return verify_fix::main(&args, python.as_deref());
    }
    // Resolve names before the (possibly slow) environment check, so typos fail fast.
    let selection = select(&args)?;
    let env = python_env(&args, python.as_deref(), &selection)?;
    if args.setup {
        eprintln!("doctor: using {} [{}]", env.summary(), env.source);
        render::print(&format!("{}\n", env.path.display()));
        return Ok(0);
    }
    render::note(&format!("doctor: using {} [{}]", env.summary(), env.source));
    let (accel, jobs) = plan_resources(&args, selection.len())?;
    supervise::init()?;
    let workdir = TempDir::new()?;
    let cases = materialise(selection, workdir.path())?;
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
    let verdict = verdict(&results);
    let doc = Document {
        schema_version: SCHEMA_VERSION,
        python: PythonInfo::of(&env),
        accelerator: accel,
        jobs,
        timeout_s: args.timeout,
        cases: results,
        verdict,
    };
    match args.format.unwrap_or(Format::Table) {
        Format::Table => render::print(&render_table(&doc)),
        f => render::print(&render::document(&doc, f)?),
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

/// The interpreter the cases need (torch, lightning, or anything for scripts of one's own).
fn python_env(
    args: &ReproArgs,
    python: Option<&Path>,
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
    let env = pyenv::find_python_for(python, setup_mode(args.no_setup), need)?;
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
    let ctx = RunCtx {
        python: env.path.clone(),
        accel_kind: accel.kind,
        devices: accel.devices,
        timeout: Duration::from_secs_f64(args.timeout),
        workdir: workdir.to_path_buf(),
        script_args: args.script_args.clone(),
    };
    let results = run_all(cases, &ctx, jobs, progress::Mode::choose(args.no_progress));
    if supervise::interrupted() {
        return Err(report_interrupted(&results));
    }
    let mut results: Vec<CaseResult> = results.into_iter().flatten().collect();
    if !render::settings().show_secrets {
        redact_cases(&mut results);
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

impl PythonInfo {
    fn of(env: &pyenv::PythonEnv) -> PythonInfo {
        PythonInfo {
            path: env.path.display().to_string(),
            python_version: env.python_version.clone(),
            torch: env.torch.clone(),
            lightning: env.lightning.clone(),
            source: env.source.clone(),
        }
    }
}

fn list(format: Option<Format>) -> anyhow::Result<i32> {
    #[derive(Serialize)]
    struct Item {
        name: &'static str,
        about: &'static str,
        scripts: [&'static str; 2],
        measured: &'static str,
    }
    let items: Vec<Item> = BUNDLED
        .iter()
        .map(|b| Item {
            name: b.name,
            about: b.about,
            scripts: [b.buggy.0, b.fixed.0],
            measured: b.measured,
        })
        .collect();
    match format.unwrap_or(Format::Table) {
        Format::Table => {
            let mut s = String::new();
            for i in &items {
                s.push_str(&format!(
                    "{}\n  {}\n  scripts: {}, {}\n  measured: {}\n",
                    i.name, i.about, i.scripts[0], i.scripts[1], i.measured
                ));
            }
            render::print(&s);
        }
        f => {
            #[derive(Serialize)]
            struct Doc<'a> {
                schema_version: u32,
                repros: &'a [Item],
            }
            render::print(&render::document(
                &Doc {
                    schema_version: SCHEMA_VERSION,
                    repros: &items,
                },
                f,
            )?)
        }
    }
    Ok(0)
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
            CtxArg::All => out.extend([Ctx::Spawn, Ctx::Fork, Ctx::Forkserver]),
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

/// Write bundled scripts into `dir` and point the cases at them.
fn materialise(mut cases: Vec<CaseSpec>, dir: &Path) -> anyhow::Result<Vec<CaseSpec>> {
    for case in &mut cases {
        if !case.bundled {
            continue;
        }
        let file = case.script.to_string_lossy().to_string();
        let src = BUNDLED
            .iter()
            .flat_map(|b| [b.buggy, b.fixed])
            .find(|(f, _)| *f == file)
            .map(|(_, s)| s)
            .context("bundled script missing")?;
        let path = dir.join(&file);
        if !path.exists() {
            std::fs::write(&path, src)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        case.script = path;
    }
    Ok(cases)
}

/// Visible NVIDIA GPUs, honouring CUDA_VISIBLE_DEVICES, without importing torch.
fn visible_gpus() -> u32 {
    let installed = crate::sys::host::nvidia_gpus_installed();
    if installed == 0 {
        return 0;
    }
    match std::env::var("CUDA_VISIBLE_DEVICES") {
        Ok(v) => {
            let ids: Vec<&str> = v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
            if ids.first().is_some_and(|s| s.starts_with('-')) {
                0
            } else {
                (ids.len() as u32).min(installed)
            }
        }
        Err(_) => installed,
    }
}

fn accelerator(accel: Accel, devices: Option<u32>) -> anyhow::Result<(&'static str, u32)> {
    let gpus = visible_gpus();
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

struct RunCtx {
    python: PathBuf,
    accel_kind: &'static str,
    devices: u32,
    timeout: Duration,
    workdir: PathBuf,
    script_args: Vec<String>,
}

/// Variables of an enclosing job that would confuse the case's ranks.
const SCRUB_ENV: &[&str] = &[
    "RANK",
    "LOCAL_RANK",
    "NODE_RANK",
    "GROUP_RANK",
    "WORLD_SIZE",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
    "PL_GLOBAL_SEED",
    "SLURM_JOB_ID",
    "SLURM_NTASKS",
    "SLURM_PROCID",
];

/// The command line of a case (without the supervision around it). Also what the benchmark
/// runs bare.
fn case_argv(case: &CaseSpec, ctx: &RunCtx, port: u16) -> Vec<String> {
    let mut argv = vec![ctx.python.display().to_string()];
    if case.launcher == Launcher::Torchrun {
        argv.extend([
            "-m".into(),
            "torch.distributed.run".into(),
            format!("--nproc-per-node={}", ctx.devices),
            "--master-addr=127.0.0.1".into(),
            format!("--master-port={port}"),
        ]);
    }
    argv.push(case.script.display().to_string());
    match case.variant {
        _ if !case.bundled => argv.extend(
            ctx.script_args
                .iter()
                .map(|a| a.replace("{ctx}", case.ctx.as_str())),
        ),
        _ => {
            argv.extend([
                "--ctx".into(),
                case.ctx.as_str().into(),
                "--accelerator".into(),
                ctx.accel_kind.into(),
            ]);
            if case.launcher == Launcher::Direct {
                argv.extend(["--devices".into(), ctx.devices.to_string()]);
            }
        }
    }
    argv
}

fn run_all(
    cases: &[CaseSpec],
    ctx: &RunCtx,
    jobs: usize,
    mode: progress::Mode,
) -> Vec<Option<CaseResult>> {
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let slots: Mutex<Vec<Option<CaseResult>>> = Mutex::new(vec![None; cases.len()]);
    let color = render::stderr_color();
    let bars = progress::Progress::new(mode, cases.len());
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| {
                loop {
                    if supervise::interrupted() {
                        break;
                    }
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(case) = cases.get(i) else { break };
                    let label = format!(
                        "{} {} {}",
                        case.name,
                        case.variant.as_str(),
                        case.ctx.as_str()
                    );
                    bars.start(i, &label, "starting");
                    progress::set_current(Some((bars.clone(), i)));
                    let result = match run_case(case, ctx, i) {
                        Ok(r) => r,
                        Err(e) => failed_to_start(case, &e),
                    };
                    progress::set_current(None);
                    let n = done.fetch_add(1, Ordering::SeqCst) + 1;
                    let line = if supervise::interrupted() {
                        String::new()
                    } else {
                        result_line(&result, n, cases.len(), color)
                    };
                    bars.finish(i, &line);
                    if let Ok(mut v) = slots.lock() {
                        v[i] = Some(result);
                    }
                }
            });
        }
    });
    slots.into_inner().unwrap_or_default()
}

/// Secrets in what the cases ran and printed (a custom script's arguments, its output) are
/// redacted like every other output.
fn redact_cases(cases: &mut [CaseResult]) {
    use crate::render::redact::{redact_argv, scrub_text};
    for c in cases {
        redact_argv(&mut c.command);
        for line in c.log_tail.iter_mut().chain(c.error.iter_mut()) {
            *line = scrub_text(line);
        }
    }
}

/// The line a finished case leaves: `[n/total] name variant ctx: outcome (secs) ...`.
fn result_line(r: &CaseResult, n: usize, total: usize, color: bool) -> String {
    let paint = if r.matches_expected {
        Paint::Green
    } else {
        Paint::Red
    };
    let mut detail = String::new();
    if let Some(f) = &r.frame {
        detail = format!(
            " port {} at {}",
            r.eaddrinuse_port.unwrap_or(r.port),
            short_frame(f)
        );
    } else if let Some(e) = &r.error {
        let e = if render::settings().show_secrets {
            e.clone()
        } else {
            render::redact::scrub_text(e)
        };
        detail = format!(" {}", render::escape_control(&render::shorten(&e, 90)));
    }
    format!(
        "  [{n}/{total}] {} {} {}: {} ({:.1}s){}{}",
        r.name,
        r.variant.as_str(),
        r.ctx.as_str(),
        render::paint(r.outcome.as_str(), paint, color),
        r.seconds,
        if r.killed.is_empty() {
            String::new()
        } else {
            format!(", killed {} process(es)", r.killed.len())
        },
        detail
    )
}

fn failed_to_start(case: &CaseSpec, e: &anyhow::Error) -> CaseResult {
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
        error: Some(format!("{e:#}")),
        killed: Vec::new(),
        leftovers: Vec::new(),
        command: Vec::new(),
        log_tail: Vec::new(),
        pid: 0,
        tag: String::new(),
    }
}

fn run_case(case: &CaseSpec, ctx: &RunCtx, index: usize) -> anyhow::Result<CaseResult> {
    let port = crate::sys::freeport::for_a_new_job()?; // below the ephemeral range
    let argv = case_argv(case, ctx, port);
    let label = format!(
        "{}-{}-{}",
        case.name,
        case.variant.as_str(),
        case.ctx.as_str()
    );
    let mut env = vec![(
        "DOCTOR_REPRO_CTX".to_string(),
        case.ctx.as_str().to_string(),
    )];
    env.extend(case.env.iter().cloned());
    let run = sys_case::run(&CaseCommand {
        argv: &argv,
        workdir: &ctx.workdir,
        log_path: ctx.workdir.join(format!("case{index}.log")),
        label: &label,
        port,
        timeout: ctx.timeout,
        scrub_env: SCRUB_ENV,
        env,
        on_phase: &progress::phase,
    })?;
    // Bundled scripts print one DOCTOR_RESULT line per rank; scripts of one's own need not.
    let expected_ranks = if case.bundled {
        ctx.devices as usize
    } else {
        0
    };
    let judged = outcome::judge(&run, port, expected_ranks, ctx.timeout);
    Ok(case_result(case, port, argv, run, judged))
}

/// The document's record of one case.
fn case_result(
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
        .map(|l| render::shorten(l, 300))
        .collect()
}

fn short_frame(frame: &str) -> String {
    Path::new(frame)
        .file_name()
        .map_or_else(|| frame.to_string(), |f| f.to_string_lossy().to_string())
}

fn verdict(cases: &[CaseResult]) -> Verdict {
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
fn mismatches(cases: &[CaseResult]) -> Vec<String> {
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

fn expected_str(expected: &[Outcome]) -> String {
    expected
        .iter()
        .map(|o| o.as_str())
        .collect::<Vec<_>>()
        .join("|")
}

fn join_and(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => one.to_string(),
        [a, b] => format!("{a} and {b}"),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

fn render_table(doc: &Document) -> String {
    let color = render::stdout_color();
    let mut rows: Vec<[String; 8]> = Vec::new();
    for c in &doc.cases {
        let outcome = render::paint(
            c.outcome.as_str(),
            if c.matches_expected {
                Paint::Green
            } else {
                Paint::Red
            },
            color,
        );
        let detail = if let Some(f) = &c.frame {
            format!(
                "port {} bound again at {}",
                c.eaddrinuse_port.unwrap_or(c.port),
                short_frame(f)
            )
        } else if let Some(e) = &c.error {
            render::escape_control(&render::shorten(e, 70)).into_owned()
        } else {
            String::new()
        };
        let mut detail = detail;
        if !c.killed.is_empty() {
            detail.push_str(&format!(
                "{}killed {} process(es)",
                if detail.is_empty() { "" } else { "; " },
                c.killed.len()
            ));
        }
        if !c.leftovers.is_empty() {
            detail.push_str(&format!("; LEFT BEHIND: {}", c.leftovers.join(", ")));
        }
        rows.push([
            render::shorten(&c.name, 24),
            c.ctx.as_str().to_string(),
            c.variant.as_str().to_string(),
            outcome,
            expected_str(&c.expected),
            format!("{:.1}", c.seconds),
            c.result_digest
                .as_deref()
                .map_or("-".to_string(), |d| d.chars().take(12).collect()),
            detail,
        ]);
    }
    let header = [
        "REPRO", "CTX", "VARIANT", "OUTCOME", "EXPECTED", "SECONDS", "DIGEST", "DETAIL",
    ];
    let mut out = render::grid::grid(&header, &rows);
    out.push('\n');
    let v = &doc.verdict;
    out.push('\n');
    let head_paint = if v.fix_verified || v.matches_expected {
        Paint::Green
    } else {
        Paint::Red
    };
    out.push_str(&render::paint(&v.summary, head_paint, color));
    out.push('\n');
    out.push_str(&format!(
        "python {} ({}), torch {}, lightning {}; {} x{} ({})\n",
        doc.python.python_version,
        doc.python.path,
        doc.python.torch.as_deref().unwrap_or("-"),
        doc.python.lightning.as_deref().unwrap_or("-"),
        doc.accelerator.kind,
        doc.accelerator.devices,
        doc.accelerator.backend
    ));
    out
}

/// A per-run temporary directory, removed on drop.
struct TempDir(tempfile::TempDir);

impl TempDir {
    fn new() -> anyhow::Result<TempDir> {
        let base = std::env::temp_dir();
        tempfile::Builder::new()
            .prefix("doctor-repro-")
            .tempdir_in(&base)
            .map(TempDir)
            .with_context(|| {
                format!(
                    "cannot create a temporary directory under {}",
                    base.display()
                )
            })
    }
    fn path(&self) -> &Path {
        self.0.path()
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
            killed: vec![],
            leftovers: vec![],
            command: vec![],
            log_tail: vec![],
            pid: 0,
            tag: String::new(),
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
