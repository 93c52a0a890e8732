//! Issue 21: redaction measured on two corpora, each case in every form a secret reaches an
//! output (free text such as a report's command line, an argv, a document's values):
//!
//! - the leak corpus (`tests/fixtures/redaction/leak.txt` plus generated flag/variable
//!   combinations): every marked secret must be gone (leaks == 0);
//! - the keep corpus (`tests/fixtures/redaction/keep.txt` plus generated harmless flags and
//!   variables): every line must come out byte for byte (false redactions == 0).
//!
//! The sizes and rates are printed (`cargo test --test redaction_corpus -- --nocapture`) and
//! recorded in docs/redaction.md.

use ddp_doctor::render::redact::{REDACTED, redact, redact_argv, scrub_text};
use serde_json::{Value, json};

const OPEN: char = '«';
const CLOSE: char = '»';

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/redaction/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.replace("\\n", "\n"))
        .collect()
}

/// A leak case: the text without marks, and its secrets.
struct Leak {
    text: String,
    secrets: Vec<String>,
}

fn parse_leak(line: &str) -> Leak {
    let mut text = String::new();
    let mut secrets = Vec::new();
    let mut cur: Option<String> = None;
    for c in line.chars() {
        match (c, &mut cur) {
            (OPEN, None) => cur = Some(String::new()),
            (CLOSE, Some(s)) => {
                secrets.push(std::mem::take(s));
                cur = None;
            }
            (c, Some(s)) => {
                s.push(c);
                text.push(c);
            }
            (c, None) => text.push(c),
        }
    }
    assert!(
        cur.is_none() && !secrets.is_empty(),
        "bad leak case: {line}"
    );
    Leak { text, secrets }
}

/// Every form of a case, after redaction: (form name, output).
fn forms(text: &str) -> Vec<(&'static str, String)> {
    let mut out = vec![("text", scrub_text(text))];
    // A document value (a report's `command`, a finding message).
    let mut doc = json!({ "command": text });
    redact(&mut doc);
    out.push(("document", doc["command"].as_str().unwrap().to_string()));
    // An argv, where splitting at white space gives the argv a shell would (no quotes).
    if !text.contains(['\'', '"', '\n']) {
        let mut argv: Vec<String> = text.split(' ').map(str::to_string).collect();
        redact_argv(&mut argv);
        out.push(("argv", argv.join(" ")));
    }
    // An environment variable (`NAME=value` alone) as a document key.
    if let Some((name, value)) = text.split_once('=') {
        let is_name =
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if is_name && !value.contains(' ') {
            let mut env = json!({ name: value });
            redact(&mut env);
            let v = env[name].as_str().unwrap_or_default();
            out.push(("environment", format!("{name}={v}")));
        }
    }
    out
}

/// Generated leak cases: each secret flag after each kind of neighbour, each separator.
fn generated_leaks() -> Vec<String> {
    let flags = [
        "--password",
        "--passwd",
        "--pw",
        "--token",
        "--hf-token",
        "--hf_token",
        "--api-key",
        "--api_key",
        "--apikey",
        "--wandb-key",
        "--secret",
        "--client-secret",
        "--aws-secret-access-key",
        "--access-token",
        "--auth-token",
        "--db-password",
        "--passphrase",
        "--key",
        "--credentials",
        "--auth",
        "-p",
    ];
    let before = ["", "--verbose ", "--debug ", "-v ", "--setcomm ", "--fp16 "];
    let values = [
        "Hunter2",
        "x9Q!pw",
        "tok_3f9a",
        "123456",
        "s3cr3t-value",
        "pa:ss",
    ];
    let mut out = Vec::new();
    for (i, flag) in flags.iter().enumerate() {
        for b in before {
            for (k, v) in values.iter().enumerate() {
                out.push(format!("python3 train.py {b}{flag} «{v}» --epochs 3"));
                if flag.starts_with("--") && (i + k) % 2 == 0 {
                    out.push(format!("python3 train.py {b}{flag}=«{v}»"));
                }
            }
        }
    }
    let names = [
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
        "WANDB_API_KEY",
        "OPENAI_API_KEY",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "GITHUB_TOKEN",
        "DB_PASSWORD",
        "MYSQL_PWD",
        "PGPASSWORD",
        "REDIS_PASSWORD",
        "SLACK_BOT_TOKEN",
        "COMET_API_KEY",
        "NEPTUNE_API_TOKEN",
        "MLFLOW_TRACKING_PASSWORD",
        "client_secret",
        "apiKey",
    ];
    for n in names {
        for v in values {
            out.push(format!("{n}=«{v}»"));
        }
    }
    out
}

/// Generated keep cases: flags and variables whose names touch secret words but whose values
/// are counts, modes, paths or names.
fn generated_keeps() -> Vec<String> {
    let pairs = [
        ("--key-frames", "10"),
        ("--auth-mode", "none"),
        ("--auth-type", "oauth"),
        ("--private-key-file", "/etc/keys/id_rsa"),
        ("--password-file", "/run/secrets/pw"),
        ("--token-file", "./token.txt"),
        ("--max-tokens", "512"),
        ("--max_new_tokens", "64"),
        ("--tokenizer", "gpt2"),
        ("--tokenizer-name", "meta-llama/Llama-2-7b-hf"),
        ("--num-keys", "8"),
        ("--key", "3"),
        ("--monkey-patch", "on"),
        ("--secret-name", "prod-db"),
        ("--api-key-env", "OPENAI_API_KEY"),
        ("--credentials-path", "~/.config/gcloud/creds.json"),
        ("--model", "sk-learn-baseline-model-v2"),
        ("--session-dir", "/tmp/sessions"),
        ("--cookie-jar", "cookies.txt"),
        ("--hf-token", "$HF_TOKEN"),
    ];
    let before = ["", "--verbose ", "-v ", "--fp16 "];
    let mut out = Vec::new();
    for (flag, v) in pairs {
        for b in before {
            out.push(format!("python3 train.py {b}{flag} {v} --epochs 3"));
            out.push(format!("python3 train.py {b}{flag}={v}"));
        }
    }
    let env = [
        ("MASTER_ADDR", "10.0.0.1"),
        ("MASTER_PORT", "29500"),
        ("TOKENIZERS_PARALLELISM", "false"),
        ("KEY_FRAMES", "10"),
        ("AUTH_MODE", "none"),
        ("XDG_SESSION_TYPE", "tty"),
        ("HF_TOKEN_PATH", "/home/u/.cache/huggingface/token"),
        ("PRIVATE_KEY_FILE", "/etc/keys/id_rsa"),
        ("PYTHONPATH", "/opt/sk-tools/lib"),
        ("MAX_TOKENS", "512"),
        ("NCCL_IB_TIMEOUT", "22"),
        ("CUDA_VISIBLE_DEVICES", "0,1"),
        ("WANDB_MODE", "offline"),
    ];
    for (n, v) in env {
        out.push(format!("{n}={v}"));
    }
    out
}

#[test]
fn leak_and_keep_corpora_rates() {
    let mut leak_lines = lines(&fixture("leak.txt"));
    let written_leaks = leak_lines.len();
    leak_lines.extend(generated_leaks());
    let mut keep_lines = lines(&fixture("keep.txt"));
    let written_keeps = keep_lines.len();
    keep_lines.extend(generated_keeps());

    let (mut secrets, mut leaked, mut leak_forms) = (0usize, Vec::new(), 0usize);
    for line in &leak_lines {
        let case = parse_leak(line);
        for (form, out) in forms(&case.text) {
            leak_forms += 1;
            for s in &case.secrets {
                secrets += 1;
                if out.contains(s.as_str()) || !out.contains(REDACTED) {
                    leaked.push(format!("[{form}] {s:?} in {out:?}"));
                }
            }
        }
    }
    let (mut keep_forms, mut changed) = (0usize, Vec::new());
    for line in &keep_lines {
        for (form, out) in forms(line) {
            keep_forms += 1;
            if out != *line {
                changed.push(format!("[{form}] {line:?}\n    -> {out:?}"));
            }
        }
    }
    println!(
        "leak corpus: {} cases ({written_leaks} written, {} generated), {leak_forms} case-forms, \
         {secrets} secret checks; leaks {} ({:.2} %)",
        leak_lines.len(),
        leak_lines.len() - written_leaks,
        leaked.len(),
        100.0 * leaked.len() as f64 / secrets.max(1) as f64
    );
    println!(
        "keep corpus: {} cases ({written_keeps} written, {} generated), {keep_forms} case-forms; \
         false redactions {} ({:.2} %)",
        keep_lines.len(),
        keep_lines.len() - written_keeps,
        changed.len(),
        100.0 * changed.len() as f64 / keep_forms.max(1) as f64
    );
    assert!(
        leaked.is_empty() && changed.is_empty(),
        "{} leaks:\n{}\n{} false redactions:\n{}",
        leaked.len(),
        leaked.join("\n"),
        changed.len(),
        changed.join("\n")
    );
}

/// The corpus test can fail: a corpus secret redacted by nothing is counted as a leak.
#[test]
fn an_unredacted_secret_counts_as_a_leak() {
    let case = parse_leak("python3 train.py --epochs «3»");
    let leaks = forms(&case.text)
        .iter()
        .filter(|(_, out)| out.contains(&case.secrets[0]))
        .count();
    assert!(leaks > 0);
    let mut v: Value = json!({"x": "--verbose"});
    redact(&mut v);
    assert_eq!(v["x"], "--verbose");
}
