//! Bad input gets an `error:` line, a `hint:` where one helps, exit code 2, and no panic.

mod common;

use common::*;

fn fails_with(args: &[&str], needle: &str) -> String {
    let out = run(args);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "doctor {args:?}: {err}");
    assert!(err.contains("error:"), "{err}");
    assert!(err.contains(needle), "doctor {args:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[test]
fn bad_ports() {
    fails_with(&["ports", "--port", "0"], "0 is not a usable port");
    fails_with(&["ports", "--port", "65536"], "65536 is not a usable port");
    fails_with(&["ports", "--port", "abc"], "'abc' is not a port number");
    fails_with(&["ports", "--check", "-1"], "error");
    fails_with(&["tree", "--port", "70000"], "not a usable port");
}

/// A path with control characters or bytes that are not UTF-8, given to an option that names a
/// file: the error line says it escaped (no raw ESC reaches the terminal), exit 2.
#[test]
fn control_characters_in_paths_are_escaped_in_errors() {
    use std::os::unix::ffi::OsStrExt;
    let (_dir, script) = common::temp_script(
        "t.py",
        "import torch.distributed as d\nd.init_process_group('gloo')\n",
    );
    let odd = std::ffi::OsStr::from_bytes(b"/nonexistent/a\x1b[31mb\x07\xff");
    for option in ["--python-base", "--python"] {
        let out = doctor()
            .args(["repro", &script, "--verify-fix", "--no-setup", option])
            .arg(odd)
            .output()
            .expect("doctor");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(2), "{option}: {err}");
        assert!(err.contains("error:") && err.contains("hint:"), "{err}");
        assert!(err.contains("a\\x1b[31mb\\x07"), "{option}: {err:?}");
        assert!(
            !err.chars().any(|c| c.is_control() && c != '\n'),
            "{option}: {err:?}"
        );
    }
}

/// `--python-base` that is a directory, or a program that is no Python: one short error line.
#[test]
fn python_base_that_is_no_interpreter() {
    let (dir, script) = common::temp_script(
        "t.py",
        "type V = int\nimport torch.distributed as d\nd.init_process_group('gloo')\n",
    );
    let folder = dir.path().to_string_lossy().into_owned();
    let err = fails_with(
        &[
            "repro",
            &script,
            "--verify-fix",
            "--no-setup",
            "--python-base",
            &folder,
        ],
        "is a directory",
    );
    assert!(err.contains("hint:"), "{err}");
    let err = fails_with(
        &[
            "repro",
            &script,
            "--verify-fix",
            "--no-setup",
            "--python-base",
            "/bin/ls",
        ],
        "--python-base /bin/ls",
    );
    let line = err.lines().find(|l| l.starts_with("error:")).unwrap_or("");
    assert!(
        line.chars().count() < 400,
        "{} chars: {line}",
        line.chars().count()
    );
}

#[test]
fn unknown_pid() {
    let err = fails_with(
        &["tree", "--pid", "2147483647"],
        "no process with pid 2147483647",
    );
    assert!(err.contains("hint:"), "{err}");
    fails_with(&["tree", "--pid", "abc"], "invalid value");
}

#[test]
fn bad_snapshot_files() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.yaml");
    fails_with(
        &["ports", "--from", missing.to_str().unwrap()],
        "cannot read snapshot",
    );
    let junk = dir.path().join("junk.yaml");
    std::fs::write(&junk, "just: [a, list\n").unwrap();
    let err = fails_with(
        &["ports", "--from", junk.to_str().unwrap()],
        "is not a doctor snapshot",
    );
    assert!(
        err.contains("hint: write one with `doctor snapshot"),
        "{err}"
    );
    let other = dir.path().join("other.json");
    std::fs::write(&other, r#"{"schema_version": 99, "processes": []}"#).unwrap();
    fails_with(
        &["tree", "--from", other.to_str().unwrap()],
        "schema_version 99 is not supported",
    );
    let binary = dir.path().join("bin.yaml");
    std::fs::write(&binary, [0xff, 0xfe, 0x00, 0x01]).unwrap();
    fails_with(&["ports", "--from", binary.to_str().unwrap()], "error");
    let err = fails_with(&["snapshot", "--format", "table"], "invalid value 'table'");
    assert!(err.contains("hint: possible values: json, yaml"), "{err}");
}

/// One grammar: an unknown option before `--` is an error with the closest option named, in
/// `run` too (it used to become the command to run).
#[test]
fn unknown_options_are_errors_with_a_hint() {
    let err = fails_with(&["run", "--timout", "5", "--", "true"], "'--timout'");
    assert!(err.contains("hint:") && err.contains("--timeout"), "{err}");
    // `run --format json` is accepted now (the record on stdout); a misspelling is not.
    let err = fails_with(&["run", "--formt", "json", "--", "true"], "'--formt'");
    assert!(err.contains("hint:") && err.contains("--format"), "{err}");
    let err = fails_with(&["ports", "--prot", "29500"], "'--prot'");
    assert!(err.contains("hint:") && err.contains("--port"), "{err}");
    // `--record` stays an alias of `-o/--output`; options after the command are the command's.
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("r.json");
    let out = run(&[
        "run",
        "--record",
        rec.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "exit 0",
        "--timout",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(rec.is_file());
    let out = run(&["-q", "run", "echo", "--not-doctors", "-x"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "--not-doctors -x\n");
}

/// Every `--format` value `--help` lists is accepted, and no value is refused that it lists.
#[test]
fn help_lists_only_accepted_formats() {
    for cmd in [
        "ports", "tree", "snapshot", "report", "merge", "repro", "scan",
    ] {
        let out = run(&[cmd, "--help"]);
        let help = String::from_utf8_lossy(&out.stdout).to_string();
        let from = help
            .find("--format <")
            .expect("the --format option in help");
        let section: String = help[from..]
            .lines()
            .take_while(|l| !l.trim_start().starts_with("--") || l.contains("--format"))
            .collect::<Vec<_>>()
            .join("\n");
        for v in ["table", "json", "yaml", "text", "sarif", "github", "csv"] {
            let listed = section.contains(&format!(" {v},"))
                || section.contains(&format!(" {v}]"))
                || section.contains(&format!("- {v}:"))
                || section.contains(&format!(" {v}\n"));
            let accepted = run(&[cmd, "--format", v, "--help"]).status.code() == Some(0);
            assert_eq!(
                listed, accepted,
                "{cmd} --format {v}: listed {listed}, accepted {accepted}\n{section}"
            );
        }
    }
}

/// The exit-code contract reads the same in `doctor --help` and in README.md.
#[test]
fn readme_exit_codes_match_help() {
    let help = String::from_utf8_lossy(&run(&["--help"]).stdout).to_string();
    let from_help: String = help
        .split("Exit codes:")
        .nth(1)
        .expect("--help states the exit codes")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let line = readme
        .lines()
        .find(|l| l.starts_with("Exit codes:"))
        .expect("README states the exit codes");
    let from_readme = line
        .trim_start_matches("Exit codes:")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert_eq!(from_help, from_readme);
}

#[test]
fn closed_stdout_ends_quietly() {
    use std::process::Stdio;
    let mut child = doctor()
        .args(["ports", "--all", "--format", "yaml"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader goes away at once, like `| head -0`
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("panicked") && !err.contains("Broken pipe"),
        "{err}"
    );
    assert!(
        matches!(out.status.code(), Some(0) | Some(1)),
        "{:?}",
        out.status
    );
}

#[test]
fn help_and_version() {
    let out = run(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["ports", "tree", "snapshot"] {
        assert!(text.contains(cmd), "{text}");
    }
    assert_eq!(run(&["--version"]).status.code(), Some(0));
    let bash = run(&["completions", "bash"]);
    assert_eq!(bash.status.code(), Some(0));
    let script = String::from_utf8_lossy(&bash.stdout);
    assert!(
        script.contains("_doctor") && script.contains("ports") && script.contains("--check"),
        "{script}"
    );
    assert_eq!(run(&["completions", "tcsh"]).status.code(), Some(2));
    assert_eq!(run(&["no-such-command"]).status.code(), Some(2));
}

#[test]
fn managed_env_install_failure_is_a_clear_error() {
    // A real venv is created in a scratch cache directory; pip, cut off from any index, fails.
    let dir = tempfile::tempdir().unwrap();
    let out = doctor()
        .args(["repro", "--setup"])
        .env_remove("VIRTUAL_ENV")
        .env_remove("CONDA_PREFIX")
        .env_remove("DOCTOR_PYTHON")
        .env("DOCTOR_CACHE_DIR", dir.path())
        .env("PIP_NO_INDEX", "1")
        .env("PIP_FIND_LINKS", dir.path())
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(0) {
        skip_or_fail(&format!(
            "an interpreter on this machine already has torch and lightning: {err}"
        ));
        return;
    }
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("about 5 GB"),
        "it says what it will download first: {err}"
    );
    assert!(err.contains("error: installing torch=="), "{err}");
    assert!(err.contains("hint:"), "{err}");
    assert!(
        dir.path().join("venv/bin/python").exists(),
        "the venv itself was created"
    );
}
