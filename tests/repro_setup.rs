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
