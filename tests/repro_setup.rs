//! `doctor repro --setup` creating the managed environment with the package index out of reach:
//! a real `python -m venv` and a real pip that fails at once. Without `-q` doctor says its two
//! phases; with `-q` it says neither and pip prints only its errors. Either way the failure ends
//! in an `error:` and a `hint:`, exit 2. And a managed venv made before the latest pins (it has
//! torch and lightning, not deepspeed or ninja): `--setup` adds exactly what it lacks, and stays
//! usable when it cannot.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{skip_or_fail, torch_python};

/// The real interpreter behind `python3` on PATH, when it lacks torch (so that doctor has to make
/// its own environment).
fn base_python() -> Option<PathBuf> {
    let out = Command::new("python3")
        .args(["-c", "import sys, importlib.util as u; print(sys.executable); print(u.find_spec('torch') is None)"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut lines = text.lines();
    let exe = PathBuf::from(lines.next()?);
    (lines.next()? == "True").then_some(exe)
}

fn setup(quiet: bool, cache: &Path, bin: &Path) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_doctor"));
    if quiet {
        c.arg("-q");
    }
    c.args(["repro", "--setup"])
        .env("NO_COLOR", "1")
        .env("DOCTOR_CACHE_DIR", cache)
        .env("PATH", bin) // only that python3
        .env_remove("DOCTOR_PYTHON")
        .env_remove("VIRTUAL_ENV")
        .env_remove("CONDA_PREFIX")
        .env("PIP_INDEX_URL", "http://127.0.0.1:9/simple") // discard port: refused at once
        .env("PIP_RETRIES", "0")
        .env("PIP_TIMEOUT", "2")
        .env("PIP_CONFIG_FILE", "/dev/null")
        .env("PIP_NO_INPUT", "1")
        .env_remove("PIP_FIND_LINKS") // a local wheel folder could hold the real torch
        .env_remove("PIP_EXTRA_INDEX_URL")
        .output()
        .expect("doctor runs")
}

#[test]
fn setup_says_its_phases_and_quiet_setup_says_none() {
    let Some(python) = base_python() else {
        skip_or_fail("python3 on PATH has torch: doctor would not create its environment");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(&python, bin.join("python3")).unwrap();

    let loud = setup(false, &dir.path().join("cache-a"), &bin);
    let err = String::from_utf8_lossy(&loud.stderr);
    assert_eq!(loud.status.code(), Some(2), "{err}");
    assert!(
        err.contains("doctor: [1/2] creating the virtual environment"),
        "{err}"
    );
    assert!(err.contains("doctor: [2/2] installing torch=="), "{err}");
    assert!(err.contains("error: installing torch=="), "{err}");
    assert!(err.contains("hint: "), "{err}");
    assert!(
        err.contains("Looking in indexes"),
        "pip speaks without -q: {err}"
    );
    // The environment itself was made (by the real venv module) before pip failed.
    assert!(dir.path().join("cache-a/venv/bin/python").exists(), "{err}");

    let quiet = setup(true, &dir.path().join("cache-b"), &bin);
    let err = String::from_utf8_lossy(&quiet.stderr);
    assert_eq!(quiet.status.code(), Some(2), "{err}");
    assert!(!err.contains("[1/2]") && !err.contains("[2/2]"), "{err}");
    assert!(!err.contains("no interpreter with torch"), "{err}");
    assert!(err.contains("error: installing torch=="), "{err}");
    assert!(err.contains("hint: "), "{err}");
    // pip under -q: its error, no progress and no "Looking in indexes" chatter.
    assert!(!err.contains("Looking in indexes"), "{err}");
    assert!(err.contains("ERROR"), "{err}");
}

/// A managed venv in `dir/cache/venv` that has torch and lightning (a real venv, made by the
/// real managed venv's Python, whose `.pth` file adds that venv's site-packages) and nothing of
/// its own; `dir/bin` holds only `python3` (without torch). The `bin` folder and the real
/// managed venv's interpreter; None after `skip_or_fail`.
fn venv_before_the_pins(dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let torch = torch_python()?;
    let Some(python) = base_python() else {
        skip_or_fail("python3 on PATH has torch: doctor would not look at its own environment");
        return None;
    };
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(&python, bin.join("python3")).unwrap();
    let venv = dir.join("cache/venv");
    // The same Python as the real managed venv, so that its compiled packages load.
    let made = Command::new(&torch)
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .expect("venv");
    assert!(made.success());
    let site = |py: &Path| {
        let out = Command::new(py)
            .args([
                "-c",
                "import sysconfig; print(sysconfig.get_paths()['purelib'])",
            ])
            .output()
            .expect("python runs");
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    };
    std::fs::write(
        site(&venv.join("bin/python")).join("doctor-test-managed.pth"),
        format!("{}\n", site(&torch).display()),
    )
    .unwrap();
    Some((bin, torch))
}

/// A venv made before deepspeed was pinned, but whose deepspeed is there (its command linked from
/// the real managed venv, its package through the `.pth`), without the op built and without
/// ninja: `--setup --no-setup` only looks (no build, as every test's `torch_python()` asks it);
/// `--setup` runs deepspeed's builder, which fails for want of ninja on PATH, says so, and the
/// environment stays usable (exit 0, the interpreter named).
#[test]
fn setup_builds_deepspeeds_op_only_when_allowed_and_says_when_it_cannot() {
    let dir = tempfile::tempdir().unwrap();
    let Some((bin, torch)) = venv_before_the_pins(dir.path()) else {
        return;
    };
    let real = torch.parent().unwrap().join("deepspeed");
    assert!(
        real.exists(),
        "the managed venv lacks deepspeed: run doctor repro --setup"
    );
    let venv = dir.path().join("cache/venv");
    std::os::unix::fs::symlink(&real, venv.join("bin/deepspeed")).unwrap();
    let library = venv.join("torch_extensions/deepspeed_shm_comm/deepspeed_shm_comm.so");

    let looked = Command::new(env!("CARGO_BIN_EXE_doctor"))
        .args(["repro", "--setup", "--no-setup"])
        .env("DOCTOR_CACHE_DIR", dir.path().join("cache"))
        .env("PATH", &bin)
        .env_remove("DOCTOR_PYTHON")
        .env_remove("VIRTUAL_ENV")
        .env_remove("CONDA_PREFIX")
        .output()
        .expect("doctor runs");
    let err = String::from_utf8_lossy(&looked.stderr);
    assert_eq!(looked.status.code(), Some(0), "{err}");
    assert!(
        !err.contains("deepspeed"),
        "--no-setup touched something: {err}"
    );

    let out = setup(false, &dir.path().join("cache"), &bin);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("doctor: building deepspeed's CPU op deepspeed_shm_comm once into"),
        "{err}"
    );
    assert!(
        err.contains("ninja") && err.contains("doctor: could not build deepspeed's CPU op"),
        "{err}"
    );
    assert!(!library.exists());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        venv.join("bin/python").display().to_string()
    );
}

/// A managed venv that has torch and lightning but none of the tools pinned since: `--setup`
/// tries to add each one, deepspeed and ninja among them, with pip (the index is out of reach
/// here), says it could not, builds no deepspeed op without deepspeed, and still names the
/// interpreter (exit 0).
#[test]
fn setup_completes_a_venv_made_before_the_latest_pins() {
    let dir = tempfile::tempdir().unwrap();
    let Some((bin, _)) = venv_before_the_pins(dir.path()) else {
        return;
    };
    let venv = dir.path().join("cache/venv");
    let out = setup(false, &dir.path().join("cache"), &bin);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let adding = err
        .lines()
        .find(|l| l.starts_with("doctor: adding "))
        .unwrap_or_else(|| panic!("no `adding` line: {err}"));
    let pins: Vec<&str> = include_str!("../repro/requirements.txt")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter(|l| !l.starts_with("torch==") && !l.starts_with("lightning=="))
        .collect();
    assert!(
        pins.iter().any(|p| p.starts_with("deepspeed==")),
        "{pins:?}"
    );
    assert!(pins.iter().any(|p| p.starts_with("ninja==")), "{pins:?}");
    for pin in &pins {
        assert!(adding.contains(pin), "{pin} not added: {adding}");
    }
    assert!(err.contains("doctor: could not install "), "{err}");
    assert!(!err.contains("building deepspeed's CPU op"), "{err}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        venv.join("bin/python").display().to_string()
    );
    assert!(err.contains("[managed]"), "{err}");
}

/// The newest real interpreter of pyenv's for Python `major.minor` (the image has 3.12.1 and
/// 3.13.0), None if there is none.
fn pyenv_python(major: u32, minor: u32) -> Option<PathBuf> {
    let root = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pyenv")))?;
    let prefix = format!("{major}.{minor}.");
    let mut found: Vec<PathBuf> = std::fs::read_dir(root.join("versions"))
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path().join("bin/python3"))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.pop()
}

/// A machine as a user has it: `python3` on PATH is 3.11 without torch, pyenv (a PYENV_ROOT of
/// the test's own, holding the real 3.12 interpreter as `versions/3.12.1`), doctor's cache empty,
/// the package index out of reach.
struct Machine {
    dir: tempfile::TempDir,
    python311: PathBuf,
    python312: PathBuf,
}

impl Machine {
    fn new() -> Option<Machine> {
        let Some(python311) = base_python() else {
            skip_or_fail("python3 on PATH has torch: doctor would not create its environment");
            return None;
        };
        let Some(python312) = pyenv_python(3, 12) else {
            skip_or_fail("pyenv's Python 3.12 (PYENV_ROOT/versions/3.12.*) is needed");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("bin")).unwrap();
        std::os::unix::fs::symlink(&python311, dir.path().join("bin/python3")).unwrap();
        let v = dir.path().join("pyenv/versions/3.12.1/bin");
        std::fs::create_dir_all(&v).unwrap();
        std::os::unix::fs::symlink(&python312, v.join("python3")).unwrap();
        Some(Machine {
            dir,
            python311,
            python312,
        })
    }

    fn cache(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    fn doctor(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_doctor"))
            .args(args)
            .env("NO_COLOR", "1")
            .env("DOCTOR_CACHE_DIR", self.cache())
            .env("PATH", self.dir.path().join("bin"))
            .env("PYENV_ROOT", self.dir.path().join("pyenv"))
            .env_remove("DOCTOR_PYTHON")
            .env_remove("VIRTUAL_ENV")
            .env_remove("CONDA_PREFIX")
            .env("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
            .env("PIP_RETRIES", "0")
            .env("PIP_TIMEOUT", "2")
            .env("PIP_CONFIG_FILE", "/dev/null")
            .env("PIP_NO_INPUT", "1")
            .env_remove("PIP_FIND_LINKS")
            .env_remove("PIP_EXTRA_INDEX_URL")
            .output()
            .expect("doctor runs")
    }
}

fn modern_syntax() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/scan/modern_syntax.py")
        .to_string_lossy()
        .into_owned()
}

/// A script with PEP 695 syntax on a machine whose python3 is 3.11: doctor says up front which
/// Python it needs and why, and makes a managed venv of that version (`venv-3.12`) from pyenv's
/// 3.12, which the shim on PATH would not have given (here pip cannot reach the index, so the
/// venv is made and the install fails with `error:` and `hint:`).
#[test]
fn a_script_that_needs_a_newer_python_gets_a_venv_of_that_version() {
    let Some(m) = Machine::new() else { return };
    let out = m.doctor(&["repro", &modern_syntax(), "--verify-fix", "--ctx", "spawn"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let needs = err
        .find(
            "doctor: modern_syntax.py needs Python 3.12 or newer (line 5: cannot use `type` alias statement before 3.12)",
        )
        .unwrap_or_else(|| panic!("{err}"));
    let creating = err
        .find(&format!(
            "doctor: [1/2] creating the virtual environment {}",
            m.cache().join("venv-3.12").display()
        ))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(needs < creating, "{err}");
    assert!(err.contains("error: installing torch=="), "{err}");
    assert!(err.contains("hint: "), "{err}");
    let made = Command::new(m.cache().join("venv-3.12/bin/python"))
        .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
        .output()
        .expect("the venv's python runs");
    assert_eq!(String::from_utf8_lossy(&made.stdout).trim(), "3.12");
    assert!(!m.cache().join("venv").exists(), "the 3.11 venv was made");
}

/// With `--no-setup` nothing is made: the error names the Python that would be the base, as a
/// ready `--python-base` command. With `--python` of a 3.11 interpreter: refused up front, the
/// version and the reason named. With no Python 3.12 anywhere: what to install.
#[test]
fn a_script_that_needs_a_newer_python_is_refused_with_what_to_do() {
    let Some(m) = Machine::new() else { return };
    let out = m.doctor(&["repro", &modern_syntax(), "--verify-fix", "--no-setup"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("error: no Python 3.12 or newer with torch and lightning found")
            && err.contains("is Python 3.11"),
        "{err}"
    );
    let base = m.dir.path().join("pyenv/versions/3.12.1/bin/python3");
    assert!(
        err.contains(&format!(
            "hint: run `doctor repro --setup --python-base {}` once",
            base.display()
        )),
        "{err}"
    );
    assert!(
        !m.cache().exists(),
        "--no-setup made {}",
        m.cache().display()
    );

    let old = m.python311.to_string_lossy().into_owned();
    let out = m.doctor(&["repro", &modern_syntax(), "--verify-fix", "--python", &old]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("error: --python {old} is Python 3.11."))
            && err.contains(", but modern_syntax.py needs Python 3.12 or newer"),
        "{err}"
    );
    assert!(err.contains("hint: "), "{err}");
    // A plain run of one's own script asks the same.
    let out = m.doctor(&["repro", &modern_syntax(), "--python", &old]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs Python 3.12 or newer"));

    std::fs::remove_dir_all(m.dir.path().join("pyenv/versions/3.12.1")).unwrap();
    let out = m.doctor(&["repro", &modern_syntax(), "--verify-fix"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("and no Python 3.12 or newer was found") && err.contains("pyenv install 3.12"),
        "{err}"
    );
    assert!(!m.cache().exists(), "{err}");
}

/// `--setup --python-base PATH` makes the managed venv of that interpreter's version, named for
/// it; a base too old for the script is refused up front.
#[test]
fn setup_with_a_python_base_makes_the_venv_of_its_version() {
    let Some(m) = Machine::new() else { return };
    let base = m.python312.to_string_lossy().into_owned();
    let out = m.doctor(&["repro", "--setup", "--python-base", &base]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "doctor: [1/2] creating the virtual environment {}",
            m.cache().join("venv-3.12").display()
        )),
        "{err}"
    );
    assert!(err.contains("error: installing torch=="), "{err}");

    let old = m.python311.to_string_lossy().into_owned();
    let out = m.doctor(&[
        "repro",
        &modern_syntax(),
        "--verify-fix",
        "--python-base",
        &old,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("error: --python-base ")
            && err.contains("but modern_syntax.py needs Python 3.12"),
        "{err}"
    );
}
