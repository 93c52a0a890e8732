//! Issue 11: secrets are redacted in every command and format by default. A real process holds
//! a rendezvous port with the corpus in its argv and environment; every output is searched.

mod common;

use std::process::Command;

use common::*;

/// (argument, the secret in it). Each secret is unique, so a hit names the leak.
const CORPUS: &[(&str, &str)] = &[
    ("--token", ""),
    (
        "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
        "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
    ),
    ("--password", ""),
    ("pwLongFlagA1", "pwLongFlagA1"),
    ("-p", ""),
    ("pwShortFlagB2", "pwShortFlagB2"),
    ("--pw", ""),
    ("pwPwFlagC3", "pwPwFlagC3"),
    ("postgres://bob:pwPostgresD4@db/train", "pwPostgresD4"),
    ("redis://:pwRedisE5@cache:6379/0", "pwRedisE5"),
    ("http://user:p@ssProxyF6@proxy:3128", "ssProxyF6"),
    ("{\"password\": \"pwJsonG7\"}", "pwJsonG7"),
    (
        "Server=db;User Id=sa;Password=pwAdoH8;Database=x",
        "pwAdoH8",
    ),
    (
        "https://a.blob.core.windows.net/c/f?sv=2020&sig=pwSigI9%3D&se=2030",
        "pwSigI9",
    ),
    (
        "--hf-token=hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
        "hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
    ),
    // Issue 21: a secret flag after another flag.
    ("--verbose", ""),
    ("--password", ""),
    ("Hunter2xQ", "Hunter2xQ"),
    ("--debug", ""),
    ("--token", ""),
    ("tokAfterDebugR3", "tokAfterDebugR3"),
    ("--setcomm", ""),
    ("--api_key", ""),
    ("apiAfterSetcommS4", "apiAfterSetcommS4"),
    // Issue 21: forms never redacted before.
    ("--header", ""),
    ("X-Api-Key: hdrValueT5", "hdrValueT5"),
    ("-H", ""),
    ("Authorization: Bearer bearerValU6", "bearerValU6"),
    ("sh -c 'mysql -u root -pMysqlPwV7 mlflow'", "MysqlPwV7"),
    ("curl -u alice:curlPwW8 https://x.example.com", "curlPwW8"),
    ("redis-cli -a redisPwX9 ping", "redisPwX9"),
    (
        "wandb login 0a1b2c3d4e5f60718293a4b5c6d7e8f9feedbeef",
        "feedbeef",
    ),
    ("http_proxy=user:proxyPwY1@proxy:3128", "proxyPwY1"),
    // Issue 21: useful values that must stay (checked by `KEEP`).
    ("--key-frames", ""),
    ("10", ""),
    ("--auth-mode", ""),
    ("none", ""),
    ("--private-key-file", ""),
    ("/etc/keys/id_rsa", ""),
    ("--model", ""),
    ("sk-learn-baseline-model-v2", ""),
];

/// Values of the holder's argv that every output must keep readable (issue 21).
const KEEP: &[&str] = &[
    "--key-frames 10",
    "--auth-mode none",
    "--private-key-file /etc/keys/id_rsa",
    "--model sk-learn-baseline-model-v2",
    "--verbose --password [redacted]",
];

const ENV_SECRETS: &[(&str, &str, &str)] = &[
    (
        "https_proxy",
        "http://user:p@ssEnvJ10@proxy:3128",
        "ssEnvJ10",
    ),
    (
        "HF_TOKEN",
        "hf_EnvTokenK11abcdefghijklmnopqrstu",
        "EnvTokenK11",
    ),
    ("DATABASE_URL", "postgres://u:pwEnvL12@db/x", "pwEnvL12"),
];

fn secrets() -> Vec<&'static str> {
    CORPUS
        .iter()
        .map(|(_, s)| *s)
        .chain(ENV_SECRETS.iter().map(|(_, _, s)| *s))
        .filter(|s| !s.is_empty())
        .collect()
}

fn with_env(mut c: Command) -> Command {
    for (k, v, _) in ENV_SECRETS {
        c.env(k, v);
    }
    c
}

/// The holder process: argv and environment carry the corpus, MASTER_PORT is `port`.
fn start_holder(port: u16) -> Situation {
    let mut cmd = with_env(Command::new(python()));
    cmd.arg(helper("holder.py")).arg(port.to_string());
    cmd.args(CORPUS.iter().map(|(a, _)| *a));
    Situation::start_cmd(&mut cmd)
}

/// Run doctor (the corpus also in its own environment) and return stdout + stderr.
fn doctor_all(args: &[&str]) -> (String, i32) {
    let out = with_env(doctor()).args(args).output().expect("doctor runs");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (text, out.status.code().unwrap_or(-1))
}

/// Every string of a JSON document that holds a command line (argv joined, or `command`).
fn command_lines(text: &str) -> Vec<String> {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Array(items) => {
                if items.iter().all(serde_json::Value::is_string) && !items.is_empty() {
                    let words: Vec<&str> = items.iter().filter_map(|i| i.as_str()).collect();
                    out.push(words.join(" "));
                }
                items.iter().for_each(|i| walk(i, out));
            }
            serde_json::Value::Object(m) => m.values().for_each(|i| walk(i, out)),
            serde_json::Value::String(s) => out.push(s.clone()),
            _ => {}
        }
    }
    let start = text.find('{').unwrap_or(0);
    let mut de =
        serde_json::Deserializer::from_str(&text[start..]).into_iter::<serde_json::Value>();
    let mut out = Vec::new();
    if let Some(Ok(v)) = de.next() {
        walk(&v, &mut out);
    }
    out
}

fn assert_clean(what: &str, text: &str) {
    let leaked: Vec<&str> = secrets().into_iter().filter(|s| text.contains(s)).collect();
    assert!(leaked.is_empty(), "{what} leaks {leaked:?}:\n{text}");
}

#[test]
fn no_secret_in_any_command_or_format() {
    let port = free_low_port();
    let sit = start_holder(port);
    let holder = sit.child.id().to_string();
    let p = port.to_string();
    let dir = tempfile::tempdir().unwrap();
    let mut seen_holder = 0;
    for cmd in ["ports", "tree"] {
        for format in ["table", "json", "yaml"] {
            let (text, _) = doctor_all(&[cmd, "--port", &p, "--format", format]);
            assert_clean(&format!("{cmd} --format {format}"), &text);
            seen_holder += usize::from(text.contains("holder.py"));
        }
    }
    assert_eq!(
        seen_holder, 6,
        "every ports/tree output shows the holder {holder}"
    );
    for format in ["json", "yaml"] {
        let (text, code) = doctor_all(&["snapshot", "--format", format]);
        assert_eq!(code, 0, "{text}");
        assert!(text.contains("holder.py"), "the snapshot shows the holder");
        assert_clean(&format!("snapshot --format {format}"), &text);
        let file = dir.path().join(format!("snap.{format}"));
        let (text, _) = doctor_all(&["snapshot", "-o", file.to_str().unwrap()]);
        assert_clean(
            "snapshot -o",
            &(text + &std::fs::read_to_string(&file).unwrap()),
        );
        let (text, _) = doctor_all(&[
            "ports",
            "--from",
            file.to_str().unwrap(),
            "--format",
            "json",
        ]);
        assert_clean("ports --from", &text);
    }
    let report = dir.path().join("report.json");
    for format in ["table", "json", "yaml"] {
        let (text, _) = doctor_all(&["report", "--port", &p, "--format", format]);
        assert_clean(&format!("report --format {format}"), &text);
    }
    // The useful values stay in every document (a false redaction would hide them).
    for cmd in ["ports", "tree", "report"] {
        let (text, _) = doctor_all(&[cmd, "--port", &p, "--format", "json"]);
        let joined = command_lines(&text);
        for keep in KEEP {
            assert!(
                joined.iter().any(|c| c.contains(keep)),
                "{cmd} --format json lost {keep:?}: {joined:?}"
            );
        }
    }
    // An unredacted report, merged: the merge redacts it.
    let (_, _) = doctor_all(&[
        "--show-secrets",
        "report",
        "--port",
        &p,
        "-o",
        report.to_str().unwrap(),
    ]);
    let raw = std::fs::read_to_string(&report).unwrap();
    assert!(
        raw.contains("pwLongFlagA1"),
        "--show-secrets keeps secrets (the test can fail)"
    );
    for format in ["table", "json", "yaml"] {
        let (text, _) = doctor_all(&["merge", report.to_str().unwrap(), "--format", format]);
        assert_clean(&format!("merge --format {format}"), &text);
    }
    // `run`, failing so it explains, with its record file.
    let record = dir.path().join("run.json");
    let mut args: Vec<&str> = vec![
        "run",
        "--explain",
        "-o",
        record.to_str().unwrap(),
        "--",
        "python3",
        "-c",
        "import sys; sys.exit(3)",
    ];
    args.extend(CORPUS.iter().map(|(a, _)| *a));
    let (text, code) = doctor_all(&args);
    assert_eq!(code, 3, "{text}");
    let rec = std::fs::read_to_string(&record).unwrap();
    assert!(rec.contains("sys.exit(3)"), "the record has the command");
    assert_clean("run", &text);
    assert_clean("run -o record", &rec);
    // The record, included in a report (shown unredacted first, so redaction has work to do).
    let raw_record = dir.path().join("run-raw.json");
    let mut raw_args = vec!["--show-secrets", "run", "-o", raw_record.to_str().unwrap()];
    raw_args.extend(["--", "python3", "-c", "import sys; sys.exit(3)"]);
    raw_args.extend(CORPUS.iter().map(|(a, _)| *a));
    let (_, code) = doctor_all(&raw_args);
    assert_eq!(code, 3);
    assert!(
        std::fs::read_to_string(&raw_record)
            .unwrap()
            .contains("Hunter2xQ")
    );
    for format in ["table", "json", "yaml"] {
        let (text, _) = doctor_all(&[
            "report",
            "--include-run",
            raw_record.to_str().unwrap(),
            "--format",
            format,
        ]);
        assert_clean(&format!("report --include-run --format {format}"), &text);
    }
    drop(sit);
}

#[test]
fn show_secrets_turns_redaction_off() {
    let port = free_low_port();
    let _sit = start_holder(port);
    let p = port.to_string();
    let (text, _) = doctor_all(&["--show-secrets", "ports", "--port", &p, "--format", "json"]);
    assert!(
        text.contains("pwLongFlagA1") && text.contains("pwRedisE5"),
        "{text}"
    );
    let (text, _) = doctor_all(&["ports", "--port", &p, "--format", "json"]);
    assert!(text.contains("[redacted]"), "{text}");
    assert_clean("ports json", &text);
}

/// `repro` with a custom script: its arguments and the output it printed are redacted too.
#[test]
fn repro_documents_are_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("leaky_case.py");
    std::fs::write(
        &script,
        "import sys\nprint('connecting to redis://:pwRedisE5@cache:6379/0 with', sys.argv[1:])\nsys.exit(1)\n",
    )
    .unwrap();
    let s = script.to_str().unwrap();
    let mut args = vec!["repro", s, "--ctx", "spawn", "--no-setup", "--no-progress"];
    args.extend(["--format", "json", "--", "--password", "pwLongFlagA1"]);
    let out = with_env(doctor())
        .args(&args)
        .env("DOCTOR_PYTHON", python())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "the case fails");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("connecting to redis://[redacted]@cache"),
        "{text}"
    );
    assert_clean("repro --format json", &text);
}
