//! What `doctor repro` runs and finds, as plain data: the bundled pairs, the cases, their
//! outcomes, the verdict and the documents. Judged in `analysis::repro`, run by `sys::case`,
//! shown by `render::repro`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use super::run::Killed;

/// The version of repro's documents: the same as every doctor document (docs/changelog.md).
pub const SCHEMA_VERSION: u32 = super::snapshot::SCHEMA_VERSION;

/// A multiprocessing start method of the DataLoader workers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Ctx {
    Spawn,
    Fork,
    Forkserver,
}

impl Ctx {
    pub const ALL: [Ctx; 3] = [Ctx::Spawn, Ctx::Fork, Ctx::Forkserver];

    pub fn as_str(self) -> &'static str {
        match self {
            Ctx::Spawn => "spawn",
            Ctx::Fork => "fork",
            Ctx::Forkserver => "forkserver",
        }
    }
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

/// How a case ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    Eaddrinuse,
    Hang,
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Eaddrinuse => "eaddrinuse",
            Outcome::Hang => "hang",
            Outcome::Error => "error",
        }
    }
}

/// What the re-import probe of `repro --verify-fix` saw (spawn and forkserver cases only): a
/// child of the case's context that re-imported the script as `__mp_main__`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reimport {
    /// A launch line of the script ran again in that child.
    Relaunched,
    /// The child re-imported the script, ran no launch line and exited cleanly.
    Clean,
    /// The child failed, hung or could not start before any launch line ran.
    Failed,
}

/// One rank's `DOCTOR_RESULT {...}` line.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RankResult {
    pub rank: i64,
    #[serde(default)]
    pub world_size: Option<i64>,
    #[serde(default)]
    pub loss: Option<f64>,
    pub digest: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Launcher {
    /// `python script.py ...`; the script launches its own ranks (Lightning).
    Direct,
    /// `python -m torch.distributed.run --nproc-per-node N ... script.py ...`.
    Torchrun,
}

/// A bundled pair.
pub struct Bundled {
    pub name: &'static str,
    pub about: &'static str,
    pub launcher: Launcher,
    pub buggy: (&'static str, &'static str),
    pub fixed: (&'static str, &'static str),
    /// Outcomes accepted for the buggy variant in a context (the fixed one must pass).
    pub expect_buggy: fn(Ctx) -> &'static [Outcome],
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

/// The bundled pair of that name.
pub fn bundled(name: &str) -> Option<&'static Bundled> {
    BUNDLED.iter().find(|b| b.name == name)
}

/// The source of a bundled script by its file name (`fabric_buggy.py`).
pub fn bundled_source(file: &str) -> Option<&'static str> {
    BUNDLED
        .iter()
        .flat_map(|b| [b.buggy, b.fixed])
        .find(|(f, _)| *f == file)
        .map(|(_, s)| s)
}

/// One case to run.
#[derive(Clone, Debug)]
pub struct CaseSpec {
    pub name: String,
    pub variant: Variant,
    pub ctx: Ctx,
    pub launcher: Launcher,
    /// The script on disk (written to the run's temp dir for bundled ones).
    pub script: PathBuf,
    pub expected: &'static [Outcome],
    /// Extra environment for the case (the forced start method of --verify-fix).
    pub env: Vec<(String, String)>,
    /// A bundled script (takes --ctx/--accelerator/--devices, prints DOCTOR_RESULT per rank).
    pub bundled: bool,
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
    /// `--verify-fix` under spawn and forkserver: what the child that re-imported the script did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reimport: Option<Reimport>,
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
pub struct Accelerator {
    pub kind: &'static str,
    pub backend: &'static str,
    pub devices: u32,
}

#[derive(Serialize)]
pub struct PythonInfo {
    pub path: String,
    pub python_version: String,
    pub torch: Option<String>,
    pub lightning: Option<String>,
    pub source: String,
}

#[derive(Serialize, Debug)]
pub struct Verdict {
    pub fix_verified: bool,
    /// Every case had its expected outcome and nothing was left behind.
    pub matches_expected: bool,
    pub summary: String,
    pub mismatches: Vec<String>,
}

/// `doctor repro`'s document.
#[derive(Serialize)]
pub struct Document {
    #[serde(flatten)]
    pub envelope: crate::model::envelope::Envelope,
    pub python: PythonInfo,
    pub accelerator: Accelerator,
    pub jobs: usize,
    pub timeout_s: f64,
    pub cases: Vec<CaseResult>,
    pub verdict: Verdict,
}

/// `doctor repro SCRIPT --verify-fix`'s document.
#[derive(Serialize)]
pub struct VerifyDocument {
    #[serde(flatten)]
    pub envelope: crate::model::envelope::Envelope,
    pub script: String,
    /// The fix, as `doctor scan --diff` prints it.
    pub diff: String,
    pub python: PythonInfo,
    pub accelerator: Accelerator,
    pub jobs: usize,
    pub timeout_s: f64,
    pub cases: Vec<CaseResult>,
    pub verdict: Verdict,
}
