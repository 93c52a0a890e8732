//! The global flags: `--color` with NO_COLOR / FORCE_COLOR / CLICOLOR_FORCE, `-q`, `-v`.

mod common;

use common::*;

fn run_stderr(env: &[(&str, &str)], args: &[&str]) -> String {
    let mut c = doctor();
    c.env_remove("NO_COLOR")
        .env_remove("FORCE_COLOR")
        .env_remove("CLICOLOR_FORCE");
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.args(args).output().unwrap();
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn color_follows_the_flag_and_the_environment() {
    let explain = ["run", "--explain", "--", "true"];
    let colored = |env: &[(&str, &str)], pre: &[&str]| {
        let args: Vec<&str> = pre.iter().chain(explain.iter()).copied().collect();
        run_stderr(env, &args).contains("\x1b[")
    };
    assert!(!colored(&[], &[]), "not a terminal: no colour");
    assert!(colored(&[], &["--color", "always"]));
    assert!(colored(&[("FORCE_COLOR", "1")], &[]));
    assert!(colored(&[("CLICOLOR_FORCE", "1")], &[]));
    assert!(
        !colored(&[("FORCE_COLOR", "1"), ("NO_COLOR", "1")], &[]),
        "NO_COLOR wins"
    );
    assert!(!colored(&[("FORCE_COLOR", "1")], &["--color", "never"]));
    assert!(
        colored(&[("NO_COLOR", "1")], &["--color", "always"]),
        "the flag wins"
    );
    let err = run_stderr(&[], &["--color", "sometimes", "ports"]);
    assert!(
        err.contains("hint: possible values: auto, always, never"),
        "{err}"
    );
}

#[test]
fn quiet_leaves_only_the_document() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.json");
    let err = run_stderr(&[], &["snapshot", "-o", file.to_str().unwrap()]);
    assert!(err.contains("wrote "), "{err}");
    let err = run_stderr(&[], &["-q", "snapshot", "-o", file.to_str().unwrap()]);
    assert_eq!(err, "");
    let err = run_stderr(&[], &["snapshot", "-q", "-o", file.to_str().unwrap()]);
    assert_eq!(err, "", "global flags go after the subcommand too");
    let rec = dir.path().join("r.json");
    let err = run_stderr(&[], &["run", "-o", rec.to_str().unwrap(), "--", "true"]);
    assert!(err.contains("wrote the timeline"), "{err}");
    let err = run_stderr(
        &[],
        &["-q", "run", "-o", rec.to_str().unwrap(), "--", "true"],
    );
    assert_eq!(err, "");
    let err = run_stderr(&[], &["-q", "run", "--", "sh", "-c", "echo on-stderr >&2"]);
    assert_eq!(
        err, "on-stderr\n",
        "the command's own output still passes through"
    );
    // A failing command: its exit status, and no talk of doctor's (the record keeps it).
    let err = run_stderr(&[], &["-q", "run", "--", "sh", "-c", "exit 1"]);
    assert_eq!(err, "", "-q run of a failing command");
    let err = run_stderr(&[], &["-q", "-v", "ports"]);
    assert!(err.contains("cannot be used with"), "{err}");
}
