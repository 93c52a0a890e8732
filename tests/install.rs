//! The package as users get it: the wheel built by maturin, installed into a fresh venv; `pip
//! install .`, `uv tool install .` and `pipx install .` from the source tree; the man page; the
//! `doctor-scan` pre-commit hook run by the real pre-commit.
//!
//! The tools (maturin, pre-commit, uv, pipx, pinned below) are installed by pip from PyPI into a
//! scratch venv under the cargo target directory (`target/tmp/install/tools`); pip's cache makes
//! later runs quick. The wheel is built once per test process. Every release build here shares one
//! cargo target directory (`target/tmp/install/cargo`), so the dependencies are compiled once.
//!
//! A prerequisite the test cannot install (python3 with venv, git, PyPI) fails the test under CI
//! (`CI=true`); elsewhere the test says what it did not check and passes.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};

const TOOLS: [&str; 4] = [
    "maturin==1.16.0",
    "pre-commit==4.7.0",
    "uv==0.13.9",
    "pipx==1.18.4",
];

/// The committed page that the wheel installs as share/man/man1/doctor.1.
const MAN_PAGE: &str = "packaging/wheel-data/data/share/man/man1/doctor.1";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn work() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("install")
}

/// The cargo target directory of every release build in these tests.
fn cargo_target() -> PathBuf {
    work().join("cargo")
}

/// A prerequisite the test cannot install: a failure under CI, SKIP elsewhere
/// (`common::skip_or_fail`).
fn unavailable<T>(why: &str) -> Option<T> {
    common::need(None, why)
}

fn show(out: &Output) -> String {
    format!(
        "exit status: {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `cmd`; Err (with its output) when it cannot start or exits non-zero.
fn try_run(cmd: &mut Command) -> Result<Output, String> {
    let what = format!("{cmd:?}");
    match cmd.output() {
        Ok(out) if out.status.success() => Ok(out),
        Ok(out) => Err(format!("{what} failed\n{}", show(&out))),
        Err(e) => Err(format!("{what} did not start: {e}")),
    }
}

/// Runs `cmd` and panics unless it exits 0.
fn run_ok(cmd: &mut Command) -> Output {
    try_run(cmd).unwrap_or_else(|e| panic!("{e}"))
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A command without the caller's virtualenv, with colour off and the shared cargo target.
fn command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new(program);
    c.env_remove("VIRTUAL_ENV")
        .env_remove("PYTHONPATH")
        .env("NO_COLOR", "1")
        .env("CARGO_TARGET_DIR", cargo_target())
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1");
    c
}

/// Runs `f`, a build in the shared cargo target directory, alone: two maturin builds there at once
/// race (each moves target/release/doctor away once cargo is done).
fn building<T>(f: impl FnOnce() -> T) -> T {
    static BUILD: Mutex<()> = Mutex::new(());
    let _alone = BUILD
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    f()
}

/// PATH with `dir` first.
fn path_with(dir: &Path) -> std::ffi::OsString {
    let mut dirs = vec![dir.to_path_buf()];
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(dirs).expect("PATH")
}

/// A new venv at `dir` (python3 -m venv); None when python3 or its venv module is missing.
fn new_venv(dir: &Path) -> Option<PathBuf> {
    match try_run(command("python3").args(["-m", "venv"]).arg(dir)) {
        Ok(_) => Some(dir.join("bin")),
        Err(e) => unavailable(&format!("python3 -m venv: {e}")),
    }
}

struct Setup {
    /// bin/ of the scratch venv with maturin, pre-commit, uv and pipx.
    tools: PathBuf,
    wheel: PathBuf,
}

enum Problem {
    /// A prerequisite could not be installed.
    Unavailable(String),
    /// Something of this project failed.
    Failed(String),
}

static SETUP: OnceLock<Result<Setup, Problem>> = OnceLock::new();

/// The tools venv and the wheel, made once per test process.
fn setup() -> Option<&'static Setup> {
    match SETUP.get_or_init(prepare) {
        Ok(s) => Some(s),
        Err(Problem::Unavailable(why)) => unavailable(why),
        Err(Problem::Failed(why)) => panic!("{why}"),
    }
}

fn prepare() -> Result<Setup, Problem> {
    let venv = work().join("tools");
    let tools = venv.join("bin");
    if !tools.join("pip").is_file() {
        let _ = fs::remove_dir_all(&venv);
        fs::create_dir_all(work()).map_err(|e| Problem::Failed(e.to_string()))?;
        try_run(command("python3").args(["-m", "venv"]).arg(&venv))
            .map_err(|e| Problem::Unavailable(format!("python3 -m venv: {e}")))?;
    }
    try_run(command(tools.join("pip")).arg("install").args(TOOLS)).map_err(|e| {
        Problem::Unavailable(format!("pip could not install {TOOLS:?} from PyPI: {e}"))
    })?;

    let wheels = work().join("wheels");
    let _ = fs::remove_dir_all(&wheels);
    let started = std::time::Instant::now();
    try_run(
        command(tools.join("maturin"))
            .args(["build", "--release", "--locked", "--out"])
            .arg(&wheels)
            .current_dir(root()),
    )
    .map_err(|e| Problem::Failed(format!("the wheel does not build: {e}")))?;
    eprintln!(
        "built the wheel in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let found: Vec<PathBuf> = fs::read_dir(&wheels)
        .map_err(|e| Problem::Failed(e.to_string()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "whl"))
        .collect();
    match found.as_slice() {
        [wheel] => Ok(Setup {
            tools,
            wheel: wheel.clone(),
        }),
        other => Err(Problem::Failed(format!(
            "expected one wheel in {}, found {other:?}",
            wheels.display()
        ))),
    }
}

/// The checks every installed `doctor` must pass: version, scan of a buggy script, ports.
fn check_installed(doctor: &Path) {
    assert!(doctor.is_file(), "{} was not installed", doctor.display());
    let out = run_ok(command(doctor).arg("--version"));
    assert_eq!(
        stdout(&out).trim(),
        format!("doctor {}", env!("CARGO_PKG_VERSION"))
    );

    let buggy = root().join("tests/fixtures/scan/seed.py");
    let out = command(doctor).arg("scan").arg(&buggy).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(stdout(&out).contains("S002"), "{}", show(&out));

    let out = command(doctor).arg("ports").output().unwrap();
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "doctor ports: {}",
        show(&out)
    );
}

#[test]
fn man_page_is_current() {
    let out = common::run(&["man"]);
    assert!(out.status.success(), "{}", show(&out));
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(page.contains(".TH doctor 1"), "no page header:\n{page}");
    for command in ["ports", "tree", "scan", "run", "repro", "report", "merge"] {
        assert!(
            page.contains(&format!(".SH \"DOCTOR {}\"", command.to_uppercase())),
            "no section for doctor {command}"
        );
    }
    let committed = fs::read_to_string(root().join(MAN_PAGE)).unwrap_or_default();
    assert!(
        committed == page,
        "{MAN_PAGE} is not what `doctor man` prints: run scripts/gen-man.sh and commit it"
    );
}

#[test]
fn wheel_installs_doctor_into_a_fresh_venv() {
    let Some(setup) = setup() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let Some(bin) = new_venv(&tmp.path().join("venv")) else {
        return;
    };
    run_ok(
        command(bin.join("pip"))
            .args(["install", "--no-index", "--no-deps"])
            .arg(&setup.wheel),
    );
    let doctor = bin.join("doctor");
    check_installed(&doctor);

    // The shipped binary is stripped: no symbol table, no debug info.
    let bytes = fs::read(&doctor).unwrap();
    for section in [&b".symtab\0"[..], b".debug_info\0", b".debug_line\0"] {
        assert!(
            !bytes.windows(section.len()).any(|w| w == section),
            "the installed doctor has a {} section",
            String::from_utf8_lossy(&section[..section.len() - 1])
        );
    }

    // `doctor man | head`, as a user types it.
    let out = run_ok(
        command("sh")
            .args(["-c", "doctor man | head"])
            .env("PATH", path_with(&bin)),
    );
    assert!(
        stdout(&out).contains(".TH doctor 1"),
        "doctor man | head: {}",
        show(&out)
    );

    // The page lies where man finds it: <venv>/share/man next to <venv>/bin on PATH.
    let page = tmp.path().join("venv/share/man/man1/doctor.1");
    assert_eq!(
        fs::read_to_string(&page).ok(),
        fs::read_to_string(root().join(MAN_PAGE)).ok(),
        "{} is not the committed page",
        page.display()
    );
    match command("man")
        .args(["-w", "doctor"])
        .env_remove("MANPATH")
        .env("PATH", path_with(&bin))
        .output()
    {
        Ok(out) => assert_eq!(
            stdout(&out).trim(),
            page.to_str().unwrap(),
            "man -w doctor: {}",
            show(&out)
        ),
        // man itself is the machine's, not something this project installs.
        Err(e) => eprintln!("note: `man -w doctor` not checked: no man ({e})"),
    }
}

#[test]
fn pip_install_from_the_source_tree() {
    let Some(_) = setup() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let Some(bin) = new_venv(&tmp.path().join("v")) else {
        return;
    };
    // `v/bin/pip install .` from the project root (maturin is fetched by pip's build isolation).
    building(|| {
        run_ok(
            command(bin.join("pip"))
                .args(["install", "."])
                .current_dir(root()),
        )
    });
    check_installed(&bin.join("doctor"));
    assert!(tmp.path().join("v/share/man/man1/doctor.1").is_file());
}

#[test]
fn uv_tool_and_pipx_install_put_doctor_on_path() {
    let Some(setup) = setup() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();

    // Never download a Python: uv uses python3 from PATH.
    building(|| {
        run_ok(
            command(setup.tools.join("uv"))
                .args(["tool", "install", "."])
                .current_dir(root())
                .env("UV_TOOL_DIR", t.join("uv-tools"))
                .env("UV_TOOL_BIN_DIR", t.join("uv-bin"))
                .env("UV_PYTHON_DOWNLOADS", "never"),
        )
    });
    check_installed(&t.join("uv-bin/doctor"));

    building(|| {
        run_ok(
            command(setup.tools.join("pipx"))
                .args(["install", "."])
                .current_dir(root())
                .env("PIPX_HOME", t.join("pipx"))
                .env("PIPX_BIN_DIR", t.join("pipx-bin"))
                .env("PIPX_MAN_DIR", t.join("pipx-man")),
        )
    });
    check_installed(&t.join("pipx-bin/doctor"));
    // pipx links the page into its man directory (~/.local/share/man by default).
    assert!(
        t.join("pipx-man/man1/doctor.1").exists(),
        "pipx did not install the man page"
    );
}

/// git with a fixed identity and no signing, for scratch repositories.
fn git(dir: &Path) -> Command {
    let mut c = command("git");
    c.current_dir(dir)
        .args([
            "-c",
            "commit.gpgsign=false",
            "-c",
            "init.defaultBranch=main",
        ])
        .env("GIT_AUTHOR_NAME", "doctor test")
        .env("GIT_AUTHOR_EMAIL", "test@example.invalid")
        .env("GIT_COMMITTER_NAME", "doctor test")
        .env("GIT_COMMITTER_EMAIL", "test@example.invalid");
    c
}

/// The project's working tree (tracked and untracked files that git does not ignore), committed in
/// a new repository: `pre-commit try-repo` takes only committed and modified tracked files.
fn project_repo(dir: &Path) -> Option<()> {
    let listed = match try_run(git(&root()).args([
        "ls-files",
        "-z",
        "--cached",
        "--others",
        "--exclude-standard",
    ])) {
        Ok(out) => out.stdout,
        Err(e) => return unavailable(&format!("the project's files from git: {e}")),
    };
    for rel in listed.split(|&b| b == 0).filter(|s| !s.is_empty()) {
        let rel = Path::new(std::str::from_utf8(rel).expect("UTF-8 path"));
        let from = root().join(rel);
        if !from.is_file() {
            continue; // deleted in the working tree
        }
        let to = dir.join(rel);
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(&from, &to).unwrap();
    }
    run_ok(git(dir).args(["init", "-q"]));
    run_ok(git(dir).args(["add", "-A"]));
    run_ok(git(dir).args(["commit", "-q", "-m", "ddp-doctor working tree"]));
    Some(())
}

#[test]
fn pre_commit_hook_fails_on_a_module_level_launch_then_passes_after_the_fix() {
    let Some(setup) = setup() else { return };
    if let Err(e) = try_run(command("git").arg("--version")) {
        return unavailable(&format!("git: {e}")).unwrap_or(());
    }
    let tmp = tempfile::tempdir().unwrap();
    let hooks = tmp.path().join("ddp-doctor");
    let Some(()) = project_repo(&hooks) else {
        return;
    };

    let user = tmp.path().join("user");
    fs::create_dir_all(&user).unwrap();
    run_ok(git(&user).args(["init", "-q"]));
    let fixtures = root().join("tests/fixtures/scan");
    fs::copy(fixtures.join("seed.py"), user.join("train.py")).unwrap();
    fs::write(user.join("README.md"), "not Python: the hook skips it\n").unwrap();
    run_ok(git(&user).args(["add", "-A"]));
    run_ok(git(&user).args(["commit", "-q", "-m", "train"]));

    // Each try-repo clones the hook repository into a new store and builds the wheel there
    // (`pip install .`).
    let try_repo = || {
        building(|| {
            command(setup.tools.join("pre-commit"))
                .arg("try-repo")
                .arg(&hooks)
                .args(["doctor-scan", "--all-files", "--color", "never"])
                .current_dir(&user)
                .env("PRE_COMMIT_HOME", tmp.path().join("pre-commit-home"))
                .output()
                .expect("pre-commit runs")
        })
    };

    // The module-level `fabric.launch()`: the hook fails and shows the finding.
    let out = try_repo();
    let text = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(text.contains("Failed"), "{}", show(&out));
    assert!(text.contains("error[S002]"), "{}", show(&out));
    assert!(text.contains("--> train.py:6:1"), "{}", show(&out));

    // The launch moved under the main guard: the hook passes.
    fs::copy(fixtures.join("seed_fixed.py"), user.join("train.py")).unwrap();
    run_ok(git(&user).args(["commit", "-q", "-am", "launch under the main guard"]));
    let out = try_repo();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(stdout(&out).contains("Passed"), "{}", show(&out));
}

// ---- The `DDP_DOCTOR=1` hook shipped in the wheel (issue 23) ----

/// The managed venv's python (torch, Lightning); None (a failure under CI) when it is missing.
fn managed_python() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let python = home.join(".cache/ddp-doctor/venv/bin/python");
    if python.is_file() {
        Some(python)
    } else {
        unavailable(&format!(
            "no managed venv at {} (doctor repro --setup)",
            python.display()
        ))
    }
}

/// A new venv made by the managed python, with the wheel installed and the managed venv's
/// site-packages visible (a path line in a .pth file), so torch and Lightning import.
fn hook_venv(setup: &Setup, dir: &Path) -> Option<PathBuf> {
    let python = managed_python()?;
    run_ok(command(&python).args(["-m", "venv"]).arg(dir));
    let purelib = |py: &Path| {
        let out = run_ok(command(py).args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('purelib'))",
        ]));
        PathBuf::from(stdout(&out).trim())
    };
    let bin = dir.join("bin");
    let ours = purelib(&bin.join("python"));
    fs::write(
        ours.join("managed-venv.pth"),
        format!("{}\n", purelib(&python).display()),
    )
    .unwrap();
    run_ok(
        command(bin.join("pip"))
            .args(["install", "--no-index", "--no-deps"])
            .arg(&setup.wheel),
    );
    assert!(
        ours.join("ddp_doctor_hook.pth").is_file(),
        "no .pth installed"
    );
    assert!(ours.join("ddp_doctor_hook/__init__.py").is_file());
    Some(bin)
}

/// `cmd` in a process group of its own, killed whole after `limit` or when the test fails;
/// TMPDIR in `tmp` (the hook's once-per-job lock files).
fn run_job(cmd: &mut Command, tmp: &Path, limit: std::time::Duration) -> Output {
    use std::os::unix::process::CommandExt;
    use std::process::Stdio;
    let child = cmd
        .env("TMPDIR", tmp)
        .env_remove("DDP_DOCTOR_BIN")
        .env_remove("DDP_DOCTOR_TIMEOUT")
        .env_remove("MASTER_PORT")
        .env_remove("MASTER_ADDR")
        .env_remove("LOCAL_RANK")
        .env_remove("RANK")
        .env_remove("WORLD_SIZE")
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the job starts");
    struct Group(i32);
    impl Drop for Group {
        fn drop(&mut self) {
            // The whole group, the job's leftovers included (a hung rank, its workers).
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(self.0),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    let group = Group(child.id() as i32);
    let pgid = group.0;
    // The watchdog kills the group after `limit`, and stops as soon as the job is done (the
    // group's id may be reused after that).
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if finished.recv_timeout(limit).is_err() {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pgid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    });
    let out = child.wait_with_output().expect("the job runs");
    drop(group);
    let _ = done.send(());
    watchdog.join().unwrap();
    out
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn hook_explains_a_module_level_launch_and_writes_a_report() {
    let Some(setup) = setup() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let Some(bin) = hook_venv(setup, &tmp.path().join("v")) else {
        return;
    };
    let train = tmp.path().join("train.py");
    fs::copy(root().join("repro/fabric_buggy.py"), &train).unwrap();
    let launch_line = fs::read_to_string(&train)
        .unwrap()
        .lines()
        .position(|l| l.starts_with("fabric.launch()"))
        .expect("the module-level launch")
        + 1;
    let reports = tmp.path().join("reports");
    let out = run_job(
        command(bin.join("python"))
            .arg(&train)
            .args(["--ctx", "spawn", "--devices", "1"])
            .env("DDP_DOCTOR", "1")
            .env("DDP_DOCTOR_DIR", &reports),
        tmp.path(),
        std::time::Duration::from_secs(240),
    );
    let err = stderr(&out);
    // The job fails as it would have: exit 1, torch's error still printed.
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        err.contains("torch.distributed.DistNetworkError: The server socket has failed to listen"),
        "{}",
        show(&out)
    );
    // The diagnosis, once: D001 with the script's line, the path, the fix.
    assert_eq!(
        err.matches("ddp-doctor (DDP_DOCTOR=1): this process")
            .count(),
        1,
        "{}",
        show(&out)
    );
    let at = format!("{}:{launch_line}", train.display());
    assert!(err.contains("error[D001]"), "{}", show(&out));
    assert!(
        err.contains(&format!("re-ran `fabric.launch()` at {at}")),
        "{}",
        show(&out)
    );
    assert!(err.contains(" rank -> "), "no path: {}", show(&out));
    assert!(
        err.contains("= fix: move `fabric.launch()`"),
        "{}",
        show(&out)
    );
    // The diagnosis comes before the traceback it explains.
    assert!(
        err.find("error[D001]").unwrap()
            < err.find("\ntorch.distributed.DistNetworkError: ").unwrap(),
        "{}",
        show(&out)
    );

    // One report in DDP_DOCTOR_DIR, no temporary file; `doctor merge DIR` exits 1 with D001.
    let files: Vec<String> = fs::read_dir(&reports)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(
        files[0].starts_with("ddp-doctor-") && files[0].ends_with(".yaml"),
        "{files:?}"
    );
    assert!(err.contains(&format!(
        "report written to {}",
        reports.join(&files[0]).display()
    )));
    let merged = command(bin.join("doctor"))
        .args(["merge", "--format", "json"])
        .arg(&reports)
        .output()
        .unwrap();
    assert_eq!(merged.status.code(), Some(1), "{}", show(&merged));
    let doc: serde_json::Value = serde_json::from_slice(&merged.stdout).unwrap();
    let text = doc.to_string();
    assert!(
        text.contains(&files[0]),
        "merge does not name the report: {text}"
    );
    assert!(text.contains("\"D001\""), "{text}");
    assert!(
        text.contains(&format!("re-ran `fabric.launch()` at {at}")),
        "{text}"
    );
}

/// A TCPStore on a port held by a listener of this test: the hook's output with the variable,
/// and byte for byte the plain output without it.
#[test]
fn hook_is_silent_without_the_variable_and_keeps_the_error_with_it() {
    let Some(setup) = setup() else { return };
    let Some(managed) = managed_python() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let Some(bin) = hook_venv(setup, &tmp.path().join("v")) else {
        return;
    };
    let held = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let script = format!(
        "import torch.distributed as d\nprint('store on', {port}, flush=True)\nd.TCPStore('127.0.0.1', {port}, 1, True)\n"
    );
    let limit = std::time::Duration::from_secs(120);
    let job = |python: &Path, var: bool| {
        let mut c = command(python);
        c.args(["-c", &script]);
        if var {
            c.env("DDP_DOCTOR", "1");
        } else {
            c.env_remove("DDP_DOCTOR");
        }
        run_job(&mut c, tmp.path(), limit)
    };
    let plain = job(&managed, false);
    let installed = job(&bin.join("python"), false);
    assert_ne!(plain.status.code(), Some(0), "{}", show(&plain));
    assert!(stderr(&plain).contains("EADDRINUSE"), "{}", show(&plain));
    assert_eq!(installed.status.code(), plain.status.code());
    assert_eq!(installed.stdout, plain.stdout);
    assert_eq!(
        stderr(&installed),
        stderr(&plain),
        "the installed package changed the output without DDP_DOCTOR"
    );

    let hooked = job(&bin.join("python"), true);
    let err = stderr(&hooked);
    assert_eq!(
        hooked.status.code(),
        plain.status.code(),
        "{}",
        show(&hooked)
    );
    assert_eq!(hooked.stdout, plain.stdout);
    // The original error, whole, after the diagnosis.
    assert!(err.ends_with(&stderr(&plain)), "{}", show(&hooked));
    assert!(err.contains("error[D008]"), "{}", show(&hooked));
    assert!(
        err.contains(&format!(
            "port {port} is held by pid {}",
            std::process::id()
        )),
        "{}",
        show(&hooked)
    );
    drop(held);
}

#[test]
fn hook_in_torchruns_agent_names_the_holder_and_a_free_port() {
    let Some(setup) = setup() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let Some(bin) = hook_venv(setup, &tmp.path().join("v")) else {
        return;
    };
    let held = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let torchrun = |var: bool| {
        let mut c = command(bin.join("python"));
        c.args(["-m", "torch.distributed.run", "--nproc-per-node", "1"])
            .arg(format!("--master-port={port}"))
            .arg(root().join("repro/torchrun_buggy.py"))
            .args(["--ctx", "fork"]);
        if var {
            c.env("DDP_DOCTOR", "1");
        } else {
            c.env_remove("DDP_DOCTOR");
        }
        run_job(&mut c, tmp.path(), std::time::Duration::from_secs(180))
    };
    let plain = torchrun(false);
    let hooked = torchrun(true);
    let err = stderr(&hooked);
    assert_ne!(plain.status.code(), Some(0), "{}", show(&plain));
    assert_eq!(
        hooked.status.code(),
        plain.status.code(),
        "{}",
        show(&hooked)
    );
    assert!(err.contains("EADDRINUSE"), "{}", show(&hooked));
    assert!(
        err.contains("error[D008]") || err.contains("error[D002]"),
        "{}",
        show(&hooked)
    );
    assert!(
        err.contains(&format!(
            "port {port} is held by pid {}",
            std::process::id()
        )),
        "{}",
        show(&hooked)
    );
    // The fix names a port that is free.
    let fix = err
        .lines()
        .find(|l| l.contains("= fix:"))
        .unwrap_or_else(|| panic!("no fix: {}", show(&hooked)));
    let free: u16 = fix
        .split_once("MASTER_PORT=")
        .and_then(|(_, rest)| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no MASTER_PORT=N in the fix: {fix}"));
    assert_ne!(free, port);
    assert!(
        fix.contains(&format!("--master-port {free}")),
        "the fix gives torchrun's flag: {fix}"
    );
    assert!(
        std::net::TcpListener::bind(("0.0.0.0", free)).is_ok(),
        "the fix's port {free} is not free: {fix}"
    );
    drop(held);
}

// ---- The hook under hostile conditions (no torch needed: a bind that fails with EADDRINUSE) ----

/// A fresh venv of python3 with the hook's files installed as the wheel installs them
/// (packaging/wheel-data/purelib into site-packages), and this build's doctor as
/// DDP_DOCTOR_BIN: the hook's own logic, quickly, without building the wheel.
fn hook_files_venv(dir: &Path) -> Option<PathBuf> {
    let bin = new_venv(dir)?;
    let out = run_ok(command(bin.join("python")).args([
        "-c",
        "import sysconfig; print(sysconfig.get_path('purelib'))",
    ]));
    let site = PathBuf::from(stdout(&out).trim());
    let purelib = root().join("packaging/wheel-data/purelib");
    fs::copy(
        purelib.join("ddp_doctor_hook.pth"),
        site.join("ddp_doctor_hook.pth"),
    )
    .unwrap();
    fs::create_dir_all(site.join("ddp_doctor_hook")).unwrap();
    fs::copy(
        purelib.join("ddp_doctor_hook/__init__.py"),
        site.join("ddp_doctor_hook/__init__.py"),
    )
    .unwrap();
    Some(bin.join("python"))
}

/// A fresh venv with the hook's files, in a temporary directory that lives as long as the
/// returned guard; None when no venv can be made here (said by `new_venv`: SKIP, or a failure
/// under CI).
fn scratch_hook_venv() -> Option<(tempfile::TempDir, PathBuf)> {
    let tmp = tempfile::tempdir().unwrap();
    let python = hook_files_venv(&tmp.path().join("v"))?;
    Some((tmp, python))
}

/// A process that fails to bind a port its own child holds (EADDRINUSE), in `main`, or in a
/// `multiprocessing.Process` of context ARGV[1], or with a user's own `sys.excepthook`.
const FAILING: &str = r#"
import multiprocessing as mp, socket, subprocess, sys, time
def fail():
    holder = subprocess.Popen([sys.executable, "-c", "import socket,time; h=socket.socket(); h.bind(('127.0.0.1', 0)); h.listen(); print(h.getsockname()[1], flush=True); time.sleep(60)"], stdout=subprocess.PIPE)
    port = int(holder.stdout.readline())
    try:
        socket.socket().bind(("127.0.0.1", port))
    finally:
        holder.kill()
        holder.wait()
if __name__ == "__main__":
    how = sys.argv[1] if len(sys.argv) > 1 else "main"
    if how == "excepthook":
        def mine(kind, value, tb):
            sys.stderr.write("my own hook: %s\n" % value)
        sys.excepthook = mine
    if how in ("spawn", "fork", "forkserver"):
        p = mp.get_context(how).Process(target=fail)
        p.start()
        p.join()
        print("child", p.pid, "exitcode", p.exitcode, flush=True)
        sys.exit(p.exitcode)
    fail()
"#;

const DIAGNOSED: &str = "ddp-doctor (DDP_DOCTOR=1): this process (pid ";

/// `python failing.py how` (FAILING) with `env` (given through env(1): run_job clears some of these
/// variables), TMPDIR `tmp`, this build's doctor first on PATH.
fn failing(python: &Path, tmp: &Path, how: &str, env: &[(&str, &str)]) -> Output {
    let mut c = command("env");
    let doctor = Path::new(env!("CARGO_BIN_EXE_doctor"));
    c.args([
        "-u",
        "DDP_DOCTOR",
        "-u",
        "SLURM_JOB_ID",
        "-u",
        "SLURM_STEP_ID",
        "-u",
        "TORCHELASTIC_ERROR_FILE",
    ])
    .env("PATH", path_with(doctor.parent().unwrap()));
    for (k, v) in env {
        c.arg(format!("{k}={v}"));
    }
    // A file, not `-c`: spawn children import the script's functions from it.
    let script = tmp.join("failing.py");
    fs::write(&script, FAILING).unwrap();
    c.arg(python).arg(&script).arg(how);
    run_job(&mut c, tmp, std::time::Duration::from_secs(60))
}

#[test]
fn hook_explains_every_failing_run_of_one_slurm_allocation() {
    let Some((tmp, python)) = scratch_hook_venv() else {
        return;
    };
    // `salloc` then `python train.py` twice: no step id (or the batch step's), one job id.
    for step in [None, Some("4294967294")] {
        for attempt in 0..2 {
            let mut env = vec![("DDP_DOCTOR", "1"), ("SLURM_JOB_ID", "4711")];
            if let Some(s) = step {
                env.push(("SLURM_STEP_ID", s));
            }
            let out = failing(&python, tmp.path(), "main", &env);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(1), "{}", show(&out));
            assert_eq!(
                err.matches(DIAGNOSED).count(),
                1,
                "step {step:?}, run {attempt}: {}",
                show(&out)
            );
        }
    }
}

#[test]
fn hook_is_not_silenced_by_files_another_user_planted_in_tmp() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        unavailable::<()>("planting files as another user needs root (CI runs as root)");
        return;
    }
    let Some((tmp, python)) = scratch_hook_venv() else {
        return;
    };
    let shared = tmp.path().join("tmp");
    fs::create_dir(&shared).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
    let victim = tmp.path().join("victim");
    fs::write(&victim, "untouched").unwrap();
    // Every name the hook could use for job slurm-99.0 of uid 0, planted by uid 65534: a
    // symlink at the old lock name, a directory and a file at private-directory names.
    let key = "slurm-99.0";
    let digest = {
        use sha2::Digest;
        let d = sha2::Sha256::digest(key.as_bytes());
        d.iter().map(|b| format!("{b:02x}")).collect::<String>()[..16].to_string()
    };
    let lock = shared.join(format!("ddp-doctor-0-{digest}.lock"));
    std::os::unix::fs::symlink(&victim, &lock).unwrap();
    let dir = shared.join("ddp-doctor-0");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
    std::os::unix::fs::symlink(&victim, dir.join(format!("{digest}.lock"))).unwrap();
    for p in [&lock, &dir, &dir.join(format!("{digest}.lock"))] {
        nix::unistd::fchownat(
            nix::fcntl::AT_FDCWD,
            p.as_path(),
            Some(nix::unistd::Uid::from_raw(65534)),
            Some(nix::unistd::Gid::from_raw(65534)),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .unwrap();
    }
    let env = [
        ("DDP_DOCTOR", "1"),
        ("SLURM_JOB_ID", "99"),
        ("SLURM_STEP_ID", "0"),
    ];
    let out = failing(&python, &shared, "main", &env);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert_eq!(err.matches(DIAGNOSED).count(), 1, "{}", show(&out));
    assert_eq!(fs::read_to_string(&victim).unwrap(), "untouched");
}

#[test]
fn hook_explains_a_multiprocessing_process_whose_run_fails() {
    let Some((tmp, python)) = scratch_hook_venv() else {
        return;
    };
    for ctx in ["spawn", "fork", "forkserver"] {
        let plain = failing(&python, tmp.path(), ctx, &[]);
        let out = failing(&python, tmp.path(), ctx, &[("DDP_DOCTOR", "1")]);
        let err = stderr(&out);
        // The child's failure as before: its traceback, its exit code, the parent's status.
        assert_eq!(
            out.status.code(),
            plain.status.code(),
            "{ctx}: {}",
            show(&out)
        );
        assert_eq!(
            out.stdout.len(),
            plain.stdout.len(),
            "{ctx}: {}",
            show(&out)
        );
        assert!(
            err.ends_with(&stderr(&plain)[stderr(&plain).find("Process ").unwrap_or(0)..])
                || err.contains("Address already in use"),
            "{ctx}: {}",
            show(&out)
        );
        let child = stdout(&out)
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string();
        assert_eq!(
            err.matches(&format!("{DIAGNOSED}{child})")).count(),
            1,
            "{ctx}: the child {child} is diagnosed once: {}",
            show(&out)
        );
    }
}

#[test]
fn hook_runs_under_a_users_own_excepthook() {
    let Some((tmp, python)) = scratch_hook_venv() else {
        return;
    };
    let plain = failing(&python, tmp.path(), "excepthook", &[]);
    let out = failing(&python, tmp.path(), "excepthook", &[("DDP_DOCTOR", "1")]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), plain.status.code(), "{}", show(&out));
    assert_eq!(err.matches(DIAGNOSED).count(), 1, "{}", show(&out));
    // The user's hook still runs, once, after the diagnosis.
    assert_eq!(err.matches("my own hook:").count(), 1, "{}", show(&out));
    assert!(err.ends_with(&stderr(&plain)), "{}", show(&out));
}

#[test]
fn hook_keeps_its_time_bound_and_diagnoses_with_a_bad_timeout_value() {
    let Some((tmp, python)) = scratch_hook_venv() else {
        return;
    };
    for value in ["inf", "nan", "abc", "-5", "0", "1e400", ""] {
        let env = [("DDP_DOCTOR", "1"), ("DDP_DOCTOR_TIMEOUT", value)];
        let out = failing(&python, tmp.path(), "main", &env);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{value:?}: {}", show(&out));
        assert_eq!(
            err.matches(DIAGNOSED).count(),
            1,
            "{value:?}: {}",
            show(&out)
        );
        assert!(
            !err.contains("the hook failed"),
            "{value:?}: {}",
            show(&out)
        );
        if !value.is_empty() {
            assert!(
                err.contains(&format!("DDP_DOCTOR_TIMEOUT={value:?} is not")),
                "{value:?}: a note on the value: {}",
                show(&out)
            );
        }
    }
}

#[test]
fn hook_is_off_for_the_usual_spellings_of_off() {
    let Some((tmp, python)) = scratch_hook_venv() else {
        return;
    };
    let plain = failing(&python, tmp.path(), "main", &[]);
    for value in ["0", "false", "FALSE", "no", "off", " 0", "0 ", "False"] {
        let out = failing(&python, tmp.path(), "main", &[("DDP_DOCTOR", value)]);
        assert_eq!(out.status.code(), plain.status.code());
        assert_eq!(stderr(&out), stderr(&plain), "DDP_DOCTOR={value:?}");
    }
    for value in ["1", "yes", "true", "on"] {
        let out = failing(&python, tmp.path(), "main", &[("DDP_DOCTOR", value)]);
        assert_eq!(
            stderr(&out).matches(DIAGNOSED).count(),
            1,
            "DDP_DOCTOR={value:?}: {}",
            show(&out)
        );
    }
}
