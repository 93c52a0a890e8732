//! One reproduction case run under supervision: its own session and process group (tagged), its
//! own rendezvous port, output to a log file, a timeout; afterwards the whole tree is killed and
//! what is still alive (processes, the port) is reported. Also what `doctor repro` needs around
//! that: its per-run directory with the bundled scripts, the command line of a case, and the
//! cases run a few at a time.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;

use crate::model::repro::{self, CaseSpec, Launcher};
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

/// How the cases of one `doctor repro` run: the interpreter, the accelerator, the timeout.
pub struct Plan {
    pub python: PathBuf,
    pub accel_kind: &'static str,
    pub devices: u32,
    pub timeout: Duration,
    pub workdir: PathBuf,
    pub script_args: Vec<String>,
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
pub fn case_argv(case: &CaseSpec, plan: &Plan, port: u16) -> Vec<String> {
    let mut argv = vec![plan.python.display().to_string()];
    if case.launcher == Launcher::Torchrun {
        argv.extend([
            "-m".into(),
            "torch.distributed.run".into(),
            format!("--nproc-per-node={}", plan.devices),
            "--master-addr=127.0.0.1".into(),
            format!("--master-port={port}"),
        ]);
    }
    argv.push(case.script.display().to_string());
    if case.bundled {
        argv.extend([
            "--ctx".into(),
            case.ctx.as_str().into(),
            "--accelerator".into(),
            plan.accel_kind.into(),
        ]);
        if case.launcher == Launcher::Direct {
            argv.extend(["--devices".into(), plan.devices.to_string()]);
        }
    } else {
        argv.extend(
            plan.script_args
                .iter()
                .map(|a| a.replace("{ctx}", case.ctx.as_str())),
        );
    }
    argv
}

/// A case as it ran: the port it was given, its command line, how it ended.
pub struct Ran {
    pub port: u16,
    pub argv: Vec<String>,
    pub run: CaseRun,
}

/// Run one case of `doctor repro` on a port proved free below the ephemeral range, its log
/// `case{index}.log` in the plan's directory.
pub fn run_spec(
    case: &CaseSpec,
    plan: &Plan,
    index: usize,
    on_phase: &dyn Fn(&'static str),
) -> anyhow::Result<Ran> {
    let port = super::freeport::for_a_new_job()?;
    let argv = case_argv(case, plan, port);
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
    let run = run(&CaseCommand {
        argv: &argv,
        workdir: &plan.workdir,
        log_path: plan.workdir.join(format!("case{index}.log")),
        label: &label,
        port,
        timeout: plan.timeout,
        scrub_env: SCRUB_ENV,
        env,
        on_phase,
    })?;
    Ok(Ran { port, argv, run })
}

/// Run `n` cases, `jobs` at a time, each through `each(i)`; no case starts once doctor is
/// interrupted, and the slots of those never started stay empty.
pub fn run_parallel<R: Send>(
    n: usize,
    jobs: usize,
    each: impl Fn(usize) -> R + Sync,
) -> Vec<Option<R>> {
    let next = AtomicUsize::new(0);
    let slots: Mutex<Vec<Option<R>>> = Mutex::new((0..n).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| {
                loop {
                    if supervise::interrupted() {
                        break;
                    }
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= n {
                        break;
                    }
                    let result = each(i);
                    if let Ok(mut v) = slots.lock() {
                        v[i] = Some(result);
                    }
                }
            });
        }
    });
    slots.into_inner().unwrap_or_default()
}

/// A per-run temporary directory, removed on drop.
pub struct CaseDir(tempfile::TempDir);

impl CaseDir {
    pub fn new() -> anyhow::Result<CaseDir> {
        let base = std::env::temp_dir();
        tempfile::Builder::new()
            .prefix("doctor-repro-")
            .tempdir_in(&base)
            .map(CaseDir)
            .with_context(|| {
                format!(
                    "cannot create a temporary directory under {}",
                    base.display()
                )
            })
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

/// Write the bundled scripts into `dir` and point the cases at them.
pub fn materialise(mut cases: Vec<CaseSpec>, dir: &Path) -> anyhow::Result<Vec<CaseSpec>> {
    for case in &mut cases {
        if !case.bundled {
            continue;
        }
        let file = case.script.to_string_lossy().to_string();
        let src = repro::bundled_source(&file).context("bundled script missing")?;
        let path = dir.join(&file);
        if !path.exists() {
            std::fs::write(&path, src)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        case.script = path;
    }
    Ok(cases)
}
