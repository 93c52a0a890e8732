//! The Python section of `doctor report`: for each interpreter, the versions of torch (with its
//! CUDA and NCCL build), lightning, pytorch_lightning, accelerate, deepspeed and numpy, read from
//! installed package metadata by one `python -c` that never imports torch.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::command::stdout_text;

/// Interpreters worth reporting: the same discovery as `doctor repro` (`DOCTOR_PYTHON`, the
/// active virtualenv and conda environment, `python3` on PATH, doctor's managed venv).
pub fn interpreters() -> Vec<PathBuf> {
    crate::sys::pyenv::all_candidates()
}

/// What one interpreter has installed; `error` says why the rest is missing.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Interpreter {
    #[serde(default)]
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executable: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub python: Option<String>,
    /// Distribution name -> version, for the packages asked about that are installed (others absent).
    #[serde(default)]
    pub packages: std::collections::BTreeMap<String, String>,
    /// `torch.version.cuda` read from `torch/version.py`: null for CPU-only builds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub torch_cuda: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub torch_git: Option<String>,
    /// NCCL from the installed `nvidia-nccl-*` distribution (the library torch loads).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nccl: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Runs inside the interpreter: package metadata only, `import torch` never happens.
const PROBE: &str = r#"
import json, re, sys
out = {"executable": sys.executable, "prefix": sys.prefix, "python": sys.version.split()[0], "packages": {}}
try:
    import importlib.metadata as md
except ImportError:
    md = None
    out["error"] = "importlib.metadata is missing (Python < 3.8)"
if md is not None:
    names = ["torch", "lightning", "pytorch-lightning", "accelerate", "deepspeed", "numpy"]
    for n in names:
        try:
            out["packages"][n.replace("-", "_")] = md.version(n)
        except Exception:
            pass
    try:
        d = md.distribution("torch")
        text = open(str(d.locate_file("torch/version.py")), encoding="utf-8").read()
        m = re.search(r"^cuda\s*(?::[^=]*)?=\s*['\"]([^'\"]+)['\"]", text, re.M)
        if m: out["torch_cuda"] = m.group(1)
        m = re.search(r"^git_version\s*(?::[^=]*)?=\s*['\"]([^'\"]+)['\"]", text, re.M)
        if m: out["torch_git"] = m.group(1)
    except Exception:
        pass
    # The NCCL wheels torch depends on, by name (scanning every distribution is slower).
    for n in ["nvidia-nccl-cu13", "nvidia-nccl-cu12", "nvidia-nccl-cu11", "nvidia-nccl"]:
        try:
            out["nccl"] = md.version(n)
            break
        except Exception:
            pass
print(json.dumps(out))
"#;

/// The versions installed in each interpreter, probed in parallel; a missing or broken
/// interpreter is recorded with its error.
pub fn versions(interpreters: &[PathBuf]) -> Vec<Interpreter> {
    use rayon::prelude::*;
    let mut found: Vec<Interpreter> = interpreters.par_iter().map(|p| probe(p)).collect();
    // A venv and its base can be reached by two paths; keep the first of each (executable, prefix).
    let mut seen = Vec::new();
    found.retain(|i| {
        if i.error.is_some() || i.prefix.is_none() {
            return true;
        }
        let key = (i.executable.clone(), i.prefix.clone());
        if seen.contains(&key) {
            return false;
        }
        seen.push(key);
        true
    });
    found
}

pub fn probe(path: &Path) -> Interpreter {
    let mut rec = Interpreter {
        path: path.display().to_string(),
        ..Default::default()
    };
    if !path.exists() {
        rec.error = Some("not found".into());
        return rec;
    }
    let mut cmd = Command::new(path);
    // Run from `/` so a `json.py` in the current directory cannot shadow the standard library.
    cmd.args(["-c", PROBE]).current_dir("/");
    // The probe must not look like a rank to anyone observing this machine.
    for (k, _) in std::env::vars_os() {
        if let Some(k) = k.to_str()
            && crate::model::snapshot::is_rendezvous_env(k)
        {
            cmd.env_remove(k);
        }
    }
    match stdout_text(&mut cmd, Duration::from_secs(30)) {
        Ok(text) => match text
            .lines()
            .rev()
            .find(|l| l.trim_start().starts_with('{'))
            .map(serde_json::from_str::<Interpreter>)
        {
            Some(Ok(mut i)) => {
                i.path = rec.path;
                i
            }
            Some(Err(e)) => {
                rec.error = Some(format!("unexpected probe output: {e}"));
                rec
            }
            None => {
                rec.error = Some("the probe printed nothing".into());
                rec
            }
        },
        Err(e) => {
            rec.error = Some(e);
            rec
        }
    }
}
