//! Finding (or creating) a Python interpreter with torch and lightning.
//!
//! Order: `--python`, `DOCTOR_PYTHON`, the active virtualenv (`VIRTUAL_ENV`) or conda env
//! (`CONDA_PREFIX`), `python3` on PATH, then the managed venv in the user cache directory
//! (`$DOCTOR_CACHE_DIR`, `$XDG_CACHE_HOME/ddp-doctor` or `~/.cache/ddp-doctor`, venv at
//! `<cache>/venv`), which is created with the pinned versions of `repro/requirements.txt` when
//! set-up is allowed. Interpreters are checked with `importlib.util.find_spec` and package
//! metadata, without importing torch (which takes seconds).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::error::user_error;

/// The pins used for the managed environment (one place).
pub const REQUIREMENTS: &str = include_str!("../../repro/requirements.txt");

/// The hint for a `--python-base` that is no interpreter (a pyenv shim answers only for the
/// version pyenv has selected).
pub const BASE_HINT: &str = "give the path of a Python interpreter, e.g. --python-base /usr/bin/python3.12 (pyenv's: $(pyenv root)/versions/3.12.1/bin/python3)";

/// The oldest torch the bundled reproductions run on.
pub const MIN_TORCH: (u32, u32) = (2, 0);

/// What the probe prints (one JSON line).
/// How long the version probe may take.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

const PROBE: &str = r#"
import importlib.util, json, sys
try:
    import importlib.metadata as md
except ImportError:
    md = None
def version(name):
    try:
        if importlib.util.find_spec(name) is None:
            return None
    except Exception:
        return None
    try:
        return md.version(name) if md else "unknown"
    except Exception:
        return "unknown"
print(json.dumps({
    "executable": sys.executable,
    "python_version": "%d.%d.%d" % sys.version_info[:3],
    "prefix": sys.prefix,
    "torch": version("torch"),
    "lightning": version("lightning"),
    "numpy": version("numpy"),
}))
"#;

/// An interpreter and what it has.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PythonEnv {
    /// The interpreter as it will be started.
    #[serde(default)]
    pub path: PathBuf,
    /// `sys.executable` as the interpreter reports it.
    pub executable: String,
    pub python_version: String,
    pub prefix: String,
    pub torch: Option<String>,
    pub lightning: Option<String>,
    pub numpy: Option<String>,
    /// Where it was found: `--python`, `DOCTOR_PYTHON`, `VIRTUAL_ENV`, `CONDA_PREFIX`, `PATH`,
    /// `managed`.
    #[serde(default)]
    pub source: String,
}

impl PythonEnv {
    pub fn has_all(&self) -> bool {
        self.torch.is_some() && self.lightning.is_some()
    }

    /// One line for stderr: `python 3.11.7 (/path), torch 2.15.0, lightning 2.6.6`.
    pub fn summary(&self) -> String {
        format!(
            "python {} ({}), torch {}, lightning {}",
            self.python_version,
            self.path.display(),
            self.torch.as_deref().unwrap_or("missing"),
            self.lightning.as_deref().unwrap_or("missing"),
        )
    }
}

/// Run the probe with `python`; Err when it cannot be started or does not answer.
pub fn probe(python: &Path) -> anyhow::Result<PythonEnv> {
    let mut cmd = Command::new(python);
    cmd.args(["-c", PROBE]);
    // No interpreter answers this probe slowly unless something is wrong with it (a hung
    // sitecustomize, a stalled network filesystem): doctor says so instead of waiting for ever.
    let out = super::command::run(&mut cmd, PROBE_TIMEOUT)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("cannot run {}", python.display()))?;
    if !out.status.success() {
        anyhow::bail!(
            "{} failed: {}",
            python.display(),
            one_line(&String::from_utf8_lossy(&out.stderr))
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default();
    let mut env: PythonEnv = serde_json::from_str(line).with_context(|| {
        format!(
            "{} did not answer the probe: {}",
            python.display(),
            one_line(line)
        )
    })?;
    env.path = python.to_path_buf();
    Ok(env)
}

/// What a failed interpreter said, as one line: a traceback's last line (the exception), else the
/// first line (`pyenv: python3.12: command not found` of a pyenv shim for another version).
fn one_line(stderr: &str) -> String {
    let mut lines = stderr.lines().map(str::trim).filter(|l| !l.is_empty());
    let line = if stderr.contains("Traceback (most recent call last)") {
        lines.next_back()
    } else {
        lines.next()
    };
    let line = line.unwrap_or("no message");
    // A program that is no Python may echo the whole probe script back (`ls` names it as a file).
    match line.char_indices().nth(200) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line.to_string(),
    }
}

/// `(major, minor)` of a version string such as `2.15.0+cpu`.
pub fn major_minor(version: &str) -> Option<(u32, u32)> {
    let mut it = version.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    Some((major, minor))
}

/// The user cache directory of doctor.
pub fn cache_dir() -> Option<PathBuf> {
    let nonempty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(dir) = nonempty("DOCTOR_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = nonempty("XDG_CACHE_HOME") {
        return Some(PathBuf::from(dir).join("ddp-doctor"));
    }
    // HOME, or the account's home directory when HOME is not set (cron, some CI runners).
    let home = nonempty("HOME").map(PathBuf::from).or_else(|| {
        nix::unistd::User::from_uid(nix::unistd::getuid())
            .ok()
            .flatten()
            .map(|u| u.dir)
    });
    home.map(|h| h.join(".cache").join("ddp-doctor"))
}

/// `<cache>/venv`.
pub fn managed_venv() -> Option<PathBuf> {
    cache_dir().map(|c| c.join("venv"))
}

fn venv_python(prefix: &Path) -> PathBuf {
    prefix.join("bin").join("python")
}

fn on_path(name: &str) -> Option<PathBuf> {
    which::which(name).ok()
}

/// A path as given, or a bare name (`python3`) looked up on PATH; None when neither exists.
pub fn resolve(python: &Path) -> Option<PathBuf> {
    let text = python.to_string_lossy();
    if !text.contains('/')
        && let Some(found) = on_path(&text)
    {
        return Some(found);
    }
    python.is_file().then(|| python.to_path_buf())
}

fn check_torch(env: PythonEnv) -> anyhow::Result<PythonEnv> {
    if let Some(v) = env.torch.as_deref()
        && let Some(mm) = major_minor(v)
        && mm < MIN_TORCH
    {
        return Err(user_error(
            format!(
                "torch {v} in {} is too old for the bundled reproductions (need {}.{} or newer)",
                env.path.display(),
                MIN_TORCH.0,
                MIN_TORCH.1
            ),
            "upgrade torch there, or run without --python/DOCTOR_PYTHON to use doctor's own environment (`doctor repro --setup`)",
        ));
    }
    Ok(env)
}

/// The interpreters a user is working with, in discovery order: the active virtualenv and conda
/// environment, then `python3` on PATH (the managed venv and named ones are handled apart).
pub fn search_candidates() -> Vec<(PathBuf, &'static str)> {
    let mut out = Vec::new();
    for var in ["VIRTUAL_ENV", "CONDA_PREFIX"] {
        if let Some(prefix) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            out.push((venv_python(Path::new(&prefix)), var));
        }
    }
    if let Some(p) = on_path("python3") {
        out.push((p, "PATH"));
    }
    out
}

/// Every interpreter worth reporting, without duplicates: `DOCTOR_PYTHON`, the search
/// candidates, and doctor's managed venv when it exists.
pub fn all_candidates() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    let named = std::env::var_os("DOCTOR_PYTHON")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from);
    let managed = managed_venv()
        .map(|v| venv_python(&v))
        .filter(|p| p.exists());
    for p in named
        .into_iter()
        .chain(search_candidates().into_iter().map(|(p, _)| p))
        .chain(managed)
    {
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// What an interpreter must have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// torch and lightning (the bundled Fabric reproductions, the managed venv).
    TorchAndLightning,
    /// torch only (plain-PyTorch reproductions) when the interpreter is named explicitly.
    Torch,
    /// Any interpreter when it is named explicitly (the user's own scripts).
    Anything,
}

/// Whether the managed venv may be created (or completed), and how much to say while doing it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setup {
    /// `--no-setup`: only look.
    Forbidden,
    /// Create it when needed; `quiet` (`-q`): no phase lines, pip with `-q` and no progress bar
    /// (its errors still show).
    Allowed { quiet: bool },
}

/// Find an interpreter with torch and lightning; create the managed venv when none has them and
/// `setup` allows it. An interpreter named explicitly (argument or `DOCTOR_PYTHON`) must work.
#[allow(dead_code)] // public API, for `doctor report` and `doctor run`
pub fn find_python(explicit: Option<&Path>, setup: Setup) -> anyhow::Result<PythonEnv> {
    find_python_for(explicit, setup, Need::TorchAndLightning)
}

/// The interpreter named by `--python` or `DOCTOR_PYTHON`: it must have what `need` asks for.
/// A version `want` does not accept is returned as it is, for the caller to refuse.
fn named_python(
    path: &Path,
    source: &str,
    need: Need,
    want: Option<&Want>,
) -> anyhow::Result<PythonEnv> {
    let mut env = probe(path).map_err(|e| {
        user_error(
            format!("{source} {}: {e:#}", path.display()),
            "give the path of a Python interpreter, e.g. --python /path/to/venv/bin/python",
        )
    })?;
    env.source = source.to_string();
    if want.is_some_and(|w| !w.accepts(&env.python_version)) {
        return Ok(env);
    }
    let enough = match need {
        Need::TorchAndLightning => env.has_all(),
        Need::Torch => env.torch.is_some(),
        Need::Anything => true,
    };
    if !enough {
        return Err(user_error(
            format!("{source} {} lacks {}", path.display(), missing(&env)),
            format!(
                "install them there (`{} -m pip install torch lightning`), or leave out {source} to use doctor's own environment",
                path.display()
            ),
        ));
    }
    check_torch(env)
}

/// [`find_python`], with a weaker requirement for an interpreter named explicitly. The search
/// itself always looks for torch and lightning.
pub fn find_python_for(
    explicit: Option<&Path>,
    setup: Setup,
    need: Need,
) -> anyhow::Result<PythonEnv> {
    find_python_with(explicit, setup, need, None, None)
}

/// The Python version an interpreter must have: at least `version` (a script's syntax), or
/// exactly that minor version (`--python-base`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Want {
    pub version: (u32, u32),
    pub exact: bool,
    /// Why, for messages: "modern_syntax.py needs Python 3.12 or newer (... line 5)".
    pub why: String,
}

impl Want {
    /// Whether an interpreter of `python_version` (`3.12.1`) will do.
    pub fn accepts(&self, python_version: &str) -> bool {
        match major_minor(python_version) {
            Some(v) if self.exact => v == self.version,
            Some(v) => v >= self.version,
            None => false,
        }
    }

    /// "Python 3.12 or newer" / "Python 3.12".
    pub fn text(&self) -> String {
        let (major, minor) = self.version;
        if self.exact {
            format!("Python {major}.{minor}")
        } else {
            format!("Python {major}.{minor} or newer")
        }
    }
}

/// [`find_python_for`] for an interpreter of the version `want` asks for (else any), creating
/// the managed venv of that version (`<cache>/venv-3.12`) from `base` (`--python-base`) or from a
/// Python of that version it finds (`python3.N` on PATH, pyenv's versions) when none has torch
/// and lightning and `setup` allows it.
pub fn find_python_with(
    explicit: Option<&Path>,
    setup: Setup,
    need: Need,
    want: Option<&Want>,
    base: Option<&Path>,
) -> anyhow::Result<PythonEnv> {
    let named = explicit.map(|p| (p.to_path_buf(), "--python")).or_else(|| {
        std::env::var_os("DOCTOR_PYTHON")
            .filter(|v| !v.is_empty())
            .map(|v| (PathBuf::from(v), "DOCTOR_PYTHON"))
    });
    if let Some((path, source)) = named {
        let env = named_python(&path, source, need, want)?;
        if let Some(w) = want
            && !w.accepts(&env.python_version)
        {
            return Err(user_error(
                format!(
                    "{source} {} is Python {}, but {}",
                    path.display(),
                    env.python_version,
                    w.why
                ),
                format!(
                    "give --python of a {} environment with torch, or leave out {source}: doctor then finds one (python3.N on PATH, pyenv) or makes one (`doctor repro --setup --python-base PATH`)",
                    w.text()
                ),
            ));
        }
        return Ok(env);
    }

    let fits = |env: &PythonEnv| want.is_none_or(|w| w.accepts(&env.python_version));
    let mut found_base: Option<PathBuf> = None;
    let mut seen: Vec<String> = Vec::new();
    let mut candidates = search_candidates();
    if let Some(w) = want {
        candidates.extend(versioned_on_path(w));
    }
    for (path, source) in candidates {
        if let Ok(mut env) = probe(&path) {
            env.source = source.to_string();
            if !fits(&env) {
                seen.push(format!(
                    "{} ({source}) is Python {}",
                    path.display(),
                    env.python_version
                ));
                continue;
            }
            if env.has_all() {
                return check_torch(env);
            }
            seen.push(format!(
                "{} ({source}) lacks {}",
                path.display(),
                missing(&env)
            ));
            if found_base.is_none() && source == "PATH" {
                found_base = Some(path);
            }
        }
    }

    let cache = cache_dir().ok_or_else(|| {
        user_error(
            "cannot tell where the user cache directory is (HOME is not set)",
            "set DOCTOR_CACHE_DIR, or point --python at an interpreter that has torch and lightning",
        )
    })?;
    for venv in managed_venvs(&cache) {
        let py = venv_python(&venv);
        if py.exists()
            && let Ok(mut env) = probe(&py)
        {
            env.source = "managed".to_string();
            if fits(&env) && env.has_all() {
                if let Setup::Allowed { quiet } = setup {
                    complete_tools(&venv, quiet);
                }
                return check_torch(env);
            }
        }
    }

    // The interpreter a new managed venv is made from.
    let base = match base {
        Some(b) => Some(b.to_path_buf()),
        None if want.is_some() => found_base.or_else(|| want.and_then(pyenv_version)),
        None => found_base,
    };
    let Some(base) = base else {
        return Err(match want {
            Some(w) => user_error(
                format!(
                    "{}, and no {} was found ({})",
                    w.why,
                    w.text(),
                    if seen.is_empty() {
                        "looked at VIRTUAL_ENV, CONDA_PREFIX, python3 and python3.N on PATH, pyenv's versions".to_string()
                    } else {
                        seen.join("; ")
                    }
                ),
                format!(
                    "install a {} (e.g. `pyenv install {}.{}`, or your distribution's python{}.{}), then `doctor repro --setup --python-base PATH`; or give --python PATH of such an environment with torch",
                    w.text(),
                    w.version.0,
                    w.version.1,
                    w.version.0,
                    w.version.1
                ),
            ),
            None => user_error(
                "no Python interpreter found (looked at --python, DOCTOR_PYTHON, VIRTUAL_ENV, CONDA_PREFIX and python3 on PATH)",
                "install Python 3.9 or newer (e.g. `apt-get install python3 python3-venv`), or give one with --python PATH",
            ),
        });
    };
    let base_env = probe(&base).map_err(|e| {
        user_error(
            format!("--python-base {}: {e:#}", base.display()),
            BASE_HINT,
        )
    })?;
    if let Some(w) = want
        && !w.accepts(&base_env.python_version)
    {
        return Err(user_error(
            format!(
                "--python-base {} is Python {}, but {}",
                base.display(),
                base_env.python_version,
                w.why
            ),
            format!("give --python-base of a {}", w.text()),
        ));
    }
    let venv = match want {
        None => cache.join("venv"),
        Some(_) => {
            let (major, minor) = major_minor(&base_env.python_version).unwrap_or((3, 0));
            cache.join(format!("venv-{major}.{minor}"))
        }
    };
    let py = venv_python(&venv);
    let Setup::Allowed { quiet } = setup else {
        return Err(user_error(
            format!(
                "no {} with torch and lightning found ({}), and --no-setup forbids creating {}",
                want.map_or("interpreter".to_string(), Want::text),
                seen.join("; "),
                venv.display()
            ),
            format!(
                "run `doctor repro --setup{}` once (downloads about 5 GB), or give --python PATH of an environment that has torch and lightning",
                if want.is_some() {
                    format!(" --python-base {}", base.display())
                } else {
                    String::new()
                }
            ),
        ));
    };
    create_venv(&base, &venv, quiet)?;
    let mut env = probe(&py)?;
    env.source = "managed".to_string();
    if !env.has_all() {
        return Err(user_error(
            format!(
                "the managed environment {} still lacks {} after installing",
                venv.display(),
                missing(&env)
            ),
            format!(
                "remove {} and run `doctor repro --setup` again",
                venv.display()
            ),
        ));
    }
    check_torch(env)
}

/// `python3.N` on PATH for every N the version asks for (up to 3.20).
fn versioned_on_path(want: &Want) -> Vec<(PathBuf, &'static str)> {
    let (major, minor) = want.version;
    let last = if want.exact { minor } else { 20 };
    (minor..=last)
        .filter_map(|n| on_path(&format!("python{major}.{n}")))
        .map(|p| (p, "PATH"))
        .collect()
}

/// The managed venvs in `cache`: `venv` (made from python3 on PATH) first, then `venv-3.N`
/// (one per Python version) in version order.
fn managed_venvs(cache: &Path) -> Vec<PathBuf> {
    let mut versioned: Vec<((u32, u32), PathBuf)> = std::fs::read_dir(cache)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let v = major_minor(name.strip_prefix("venv-")?)?;
            Some((v, e.path()))
        })
        .collect();
    versioned.sort();
    std::iter::once(cache.join("venv"))
        .chain(versioned.into_iter().map(|(_, p)| p))
        .collect()
}

/// The oldest interpreter of pyenv's (`$PYENV_ROOT/versions/X.Y.Z`, else `~/.pyenv`) that
/// `want` accepts: pyenv's shims on PATH answer only for the selected version.
fn pyenv_version(want: &Want) -> Option<PathBuf> {
    let root = std::env::var_os("PYENV_ROOT")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pyenv")))?;
    let mut found: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir(root.join("versions"))
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let parts: Vec<u32> = name
                .split('.')
                .map(|p| p.parse().ok())
                .collect::<Option<_>>()?;
            let py = e.path().join("bin").join("python3");
            (parts.len() >= 2 && want.accepts(&name) && py.is_file()).then_some((parts, py))
        })
        .collect();
    found.sort();
    found.into_iter().next().map(|(_, p)| p)
}

fn missing(env: &PythonEnv) -> String {
    match (env.torch.is_some(), env.lightning.is_some()) {
        (false, false) => "torch and lightning".into(),
        (false, true) => "torch".into(),
        (true, false) => "lightning".into(),
        (true, true) => "nothing".into(),
    }
}

fn pins() -> Vec<String> {
    REQUIREMENTS
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

/// A managed venv made before a pinned tool joined the pins (py-spy, for what a hung rank is
/// blocked in; accelerate, whose `accelerate launch` the launcher matrix runs; deepspeed and
/// ninja, for `--verify-fix` of deepspeed scripts) gets it now;
/// torch and lightning are never reinstalled here. A tool is there when its command is in the
/// venv's `bin/`. Best effort: a failure is said on stderr and the venv stays usable.
fn complete_tools(venv: &Path, quiet: bool) {
    let missing: Vec<String> = missing_tools(venv);
    if missing.is_empty() {
        return;
    }
    let say = |line: String| {
        if !quiet {
            eprintln!("{line}");
        }
    };
    say(format!(
        "doctor: adding {} to the managed environment {}",
        missing.join(" "),
        venv.display()
    ));
    let ok = Command::new(venv_python(venv))
        .args(["-m", "pip", "install", "--disable-pip-version-check", "-q"])
        .args(&missing)
        .stdin(Stdio::null())
        .stdout(stderr_stdio())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        say(format!(
            "doctor: could not install {}; the environment stays usable (without py-spy a hung rank is shown without its Python stack, without jsonargparse a LightningCLI script fails, without deepspeed a script that imports it cannot be verified)",
            missing.join(" ")
        ));
    }
}

/// The pinned tools (every pin but torch and lightning) that the venv lacks: a tool is there when
/// its command is in `venv/bin`, or, for a library without a command (jsonargparse), when its
/// `NAME-VERSION.dist-info` is in the venv's `site-packages`.
fn missing_tools(venv: &Path) -> Vec<String> {
    let installed = installed_dists(venv);
    pins()
        .into_iter()
        .filter(|p| !p.starts_with("torch==") && !p.starts_with("lightning=="))
        .filter(|p| {
            let name = p
                .split(['=', '<', '>', '~', '!', '['])
                .next()
                .unwrap_or(p)
                .trim();
            !venv.join("bin").join(name).exists() && !installed.contains(&dist_key(name))
        })
        .collect()
}

/// A distribution name as its `.dist-info` folder spells it, lower-cased (PEP 503: `-`, `_` and
/// `.` are one).
fn dist_key(name: &str) -> String {
    name.to_ascii_lowercase().replace(['-', '.'], "_")
}

/// The distributions installed in `venv` (`lib/python*/site-packages/NAME-VERSION.dist-info`), as
/// [`dist_key`]s.
fn installed_dists(venv: &Path) -> std::collections::HashSet<String> {
    let mut out = std::collections::HashSet::new();
    let Ok(libs) = std::fs::read_dir(venv.join("lib")) else {
        return out;
    };
    for lib in libs.flatten() {
        let Ok(entries) = std::fs::read_dir(lib.path().join("site-packages")) else {
            continue;
        };
        for e in entries.flatten() {
            let file = e.file_name();
            let file = file.to_string_lossy();
            if let Some(stem) = file.strip_suffix(".dist-info")
                && let Some((name, _version)) = stem.split_once('-')
            {
                out.insert(dist_key(name));
            }
        }
    }
    out
}

/// The C++ op deepspeed builds on first use on a CPU machine: `init_distributed()` loads its
/// shared-memory collective op (`deepspeed/comm/torch.py`, `build_shm_op`) whenever the CPU
/// accelerator is active, whatever the world size; with no prebuilt copy it JIT-compiles it
/// with ninja and a C++ compiler (minutes on 2 cores).
pub const DEEPSPEED_CPU_OP: &str = "deepspeed_shm_comm";

/// Where the managed venv keeps the C++ ops torch builds for it (`TORCH_EXTENSIONS_DIR`): inside
/// the venv, so removing the venv removes them.
pub fn extensions_dir(venv: &Path) -> PathBuf {
    venv.join("torch_extensions")
}

/// What a case started with `env`'s interpreter needs in its environment to run as it would in
/// that environment activated: the interpreter's folder first on PATH (torch looks `ninja` up on
/// PATH each time deepspeed loads a JIT-built op, even one built before) and, for the managed
/// venv, the folder of the ops `--setup` built.
pub fn case_env(env: &PythonEnv) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(dir) = env.path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let mut paths = vec![dir.to_path_buf()];
        if let Some(old) = std::env::var_os("PATH") {
            paths.extend(std::env::split_paths(&old));
        }
        if let Ok(joined) = std::env::join_paths(paths) {
            out.push(("PATH".into(), joined.to_string_lossy().into_owned()));
        }
    }
    if is_managed(env) {
        out.push((
            "TORCH_EXTENSIONS_DIR".into(),
            extensions_dir(Path::new(&env.prefix))
                .to_string_lossy()
                .into_owned(),
        ));
    }
    out
}

/// Whether `env` is doctor's managed venv, found by the search or named (`--python`,
/// `DOCTOR_PYTHON`) by its path.
fn is_managed(env: &PythonEnv) -> bool {
    let same = |a: &Path, b: &Path| match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    };
    env.source == "managed" || managed_venv().is_some_and(|m| same(&m, Path::new(&env.prefix)))
}

/// What became of deepspeed's CPU op in the managed venv.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpState {
    /// Not the managed venv, or it has no deepspeed: nothing to build.
    NotNeeded,
    /// Built before (its shared library is there).
    Ready,
    /// Built now.
    Built,
    /// The build failed (said on stderr); deepspeed will try again on first use.
    Failed,
}

/// The shared library of [`DEEPSPEED_CPU_OP`] once built into the managed venv `venv`.
pub fn deepspeed_op_library(venv: &Path) -> PathBuf {
    extensions_dir(venv)
        .join(DEEPSPEED_CPU_OP)
        .join(format!("{DEEPSPEED_CPU_OP}.so"))
}

/// Build deepspeed's CPU op once into the managed venv (`doctor repro --setup`, and before a
/// `--verify-fix` of a script that imports deepspeed), with deepspeed's own builder, so that no
/// case spends its timeout on the compile. Only for the managed venv that has deepspeed; a venv
/// of one's own keeps deepspeed's behaviour (a compile into torch's cache on first use).
/// Best effort: a failure is said on stderr and the venv stays usable.
pub fn prepare_deepspeed_op(env: &PythonEnv, quiet: bool) -> OpState {
    let venv = Path::new(&env.prefix);
    if !is_managed(env) || !venv.join("bin").join("deepspeed").exists() {
        return OpState::NotNeeded;
    }
    let library = deepspeed_op_library(venv);
    if library.exists() {
        return OpState::Ready;
    }
    let say = |line: String| {
        if !quiet {
            eprintln!("{line}");
        }
    };
    say(format!(
        "doctor: building deepspeed's CPU op {DEEPSPEED_CPU_OP} once into {} (a C++ compile with ninja; minutes on 2 cores)",
        extensions_dir(venv).display()
    ));
    let started = std::time::Instant::now();
    let mut cmd = Command::new(&env.path);
    cmd.args([
        "-c",
        "from deepspeed.accelerator import get_accelerator\n\
         get_accelerator().create_op_builder('ShareMemCommBuilder').load()\n",
    ])
    // The CPU accelerator is the one that needs the op (on a GPU machine deepspeed would pick CUDA).
    .env("DS_ACCELERATOR", "cpu")
    .envs(case_env(env))
    .stdin(Stdio::null())
    .stdout(if quiet { Stdio::null() } else { stderr_stdio() });
    if quiet {
        cmd.stderr(Stdio::null());
    }
    let ok = cmd.status().is_ok_and(|s| s.success()) && library.exists();
    if ok {
        say(format!(
            "doctor: built {DEEPSPEED_CPU_OP} in {:.0} s",
            started.elapsed().as_secs_f64()
        ));
        OpState::Built
    } else {
        eprintln!(
            "doctor: could not build deepspeed's CPU op {DEEPSPEED_CPU_OP} (it needs a C++ compiler: `apt-get install g++`); the environment stays usable, and deepspeed will try again when a script first calls init_distributed()"
        );
        OpState::Failed
    }
}

fn stderr_stdio() -> Stdio {
    use std::os::fd::AsFd;
    std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::inherit())
}

/// Create `venv` with `base -m venv` and pip-install the pinned torch and lightning into it, in
/// two phases said on stderr with pip's own progress; `quiet`: neither (pip's errors still show).
fn create_venv(base: &Path, venv: &Path, quiet: bool) -> anyhow::Result<()> {
    let pins = pins();
    let say = |line: String| {
        if !quiet {
            eprintln!("{line}");
        }
    };
    say("doctor: no interpreter with torch and lightning found".into());
    say(format!(
        "doctor: [1/2] creating the virtual environment {}",
        venv.display()
    ));
    if let Some(parent) = venv.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let status = Command::new(base)
        .args(["-m", "venv", "--clear"])
        .arg(venv)
        .stdin(Stdio::null())
        .stdout(if quiet { Stdio::null() } else { stderr_stdio() })
        .status()
        .with_context(|| format!("cannot run {} -m venv", base.display()))?;
    if !status.success() {
        return Err(user_error(
            format!("`{} -m venv {}` failed", base.display(), venv.display()),
            "install the venv module (Debian/Ubuntu: `apt-get install python3-venv`), or give --python PATH",
        ));
    }
    say(format!(
        "doctor: [2/2] installing {} with pip: about 5 GB of wheels (CUDA libraries included; they also run on CPU), about a minute on a fast link",
        pins.join(" ")
    ));
    let py = venv_python(venv);
    let status = Command::new(&py)
        .args(["-m", "pip", "install", "--disable-pip-version-check"])
        .args(pip_output_args(quiet))
        .args(&pins)
        .stdin(Stdio::null())
        .stdout(stderr_stdio())
        .status()
        .with_context(|| format!("cannot run {} -m pip", py.display()))?;
    if !status.success() {
        return Err(user_error(
            format!(
                "installing {} into {} failed (pip exited with {})",
                pins.join(" "),
                venv.display(),
                status.code().map_or("a signal".into(), |c| c.to_string())
            ),
            "pip's own message is above; without network access to PyPI, give --python PATH of an environment that already has torch and lightning",
        ));
    }
    say(format!("doctor: created {}", venv.display()));
    Ok(())
}

/// pip's progress bar on stderr, or (`quiet`) only its warnings and errors.
fn pip_output_args(quiet: bool) -> [&'static str; 2] {
    if quiet {
        ["-q", "--progress-bar=off"]
    } else {
        ["--progress-bar", "on"]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse() {
        assert_eq!(major_minor("2.15.0+cpu"), Some((2, 15)));
        assert_eq!(major_minor("1.13.1"), Some((1, 13)));
        assert_eq!(major_minor("2"), Some((2, 0)));
        assert_eq!(major_minor("x"), None);
        assert!(major_minor("1.13.1").unwrap() < MIN_TORCH);
    }

    #[test]
    fn a_venv_without_its_tools_gets_every_pinned_tool() {
        let dir = std::env::temp_dir().join(format!("doctor-tools-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        let missing = missing_tools(&dir);
        assert!(
            missing.iter().any(|p| p.starts_with("py-spy==")),
            "{missing:?}"
        );
        assert!(
            missing.iter().any(|p| p.starts_with("accelerate==")),
            "{missing:?}"
        );
        assert!(
            !missing.iter().any(|p| p.starts_with("torch")),
            "{missing:?}"
        );
        assert!(
            missing.iter().any(|p| p.starts_with("jsonargparse[")),
            "{missing:?}"
        );
        for tool in ["deepspeed==", "ninja=="] {
            assert!(missing.iter().any(|p| p.starts_with(tool)), "{missing:?}");
        }
        std::fs::write(dir.join("bin").join("accelerate"), "").unwrap();
        // A library without a command is there when its dist-info is.
        let site = dir.join("lib/python3.11/site-packages/jsonargparse-4.53.0.dist-info");
        std::fs::create_dir_all(&site).unwrap();
        let missing = missing_tools(&dir);
        assert!(!missing.iter().any(|p| p.starts_with("accelerate")));
        assert!(!missing.iter().any(|p| p.starts_with("jsonargparse")));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A case of the managed venv finds the venv's `bin/` (ninja) first on PATH and the ops
    /// `--setup` built; another interpreter gets its own folder first and no extensions folder.
    #[test]
    fn cases_run_as_in_the_activated_environment() {
        let env = |path: &str, prefix: &str, source: &str| PythonEnv {
            path: PathBuf::from(path),
            executable: path.into(),
            python_version: "3.11.7".into(),
            prefix: prefix.into(),
            torch: Some("2.15.0".into()),
            lightning: Some("2.6.6".into()),
            numpy: None,
            source: source.into(),
        };
        let vars = case_env(&env("/c/venv/bin/python", "/c/venv", "managed"));
        let get = |vars: &[(String, String)], k: &str| {
            vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        };
        let path = get(&vars, "PATH").unwrap();
        assert!(
            path.starts_with("/c/venv/bin:") || path == "/c/venv/bin",
            "{path}"
        );
        assert_eq!(
            get(&vars, "TORCH_EXTENSIONS_DIR").as_deref(),
            Some("/c/venv/torch_extensions")
        );
        assert_eq!(
            deepspeed_op_library(Path::new("/c/venv")),
            Path::new("/c/venv/torch_extensions/deepspeed_shm_comm/deepspeed_shm_comm.so")
        );
        let vars = case_env(&env("/opt/py/bin/python3", "/opt/py", "PATH"));
        assert!(get(&vars, "PATH").unwrap().starts_with("/opt/py/bin"));
        assert_eq!(get(&vars, "TORCH_EXTENSIONS_DIR"), None);
    }

    #[test]
    fn a_failed_interpreter_is_said_in_one_line() {
        let shim = "pyenv: python3.12: command not found\n\nThe `python3.12' command exists in these Python versions:\n  3.12.1\n\nNote: See 'pyenv help global'\n";
        assert_eq!(one_line(shim), "pyenv: python3.12: command not found");
        let tb = "Traceback (most recent call last):\n  File \"<string>\", line 1, in <module>\nImportError: bad sitecustomize\n";
        assert_eq!(one_line(tb), "ImportError: bad sitecustomize");
        assert_eq!(one_line("\n \n"), "no message");
    }

    #[test]
    fn pins_come_from_requirements() {
        let p = pins();
        assert!(p.iter().any(|l| l.starts_with("torch==")));
        assert!(p.iter().any(|l| l.starts_with("lightning==")));
    }
}
