//! `doctor report` on the live machine: redaction of a secrets corpus placed in this process's
//! environment, in a helper process's argv and in an included run file; real holders and
//! findings; the Python versions of the managed venv.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

use common::*;

/// A realistic corpus of secrets (all fake), in the shapes the redactor knows.
struct Corpus {
    /// Variables of the `doctor report` process's own environment.
    env: Vec<(&'static str, String)>,
    /// Extra argv of a helper rank.
    argv: Vec<String>,
    /// The `--include-run` file (YAML).
    run_file: String,
    /// Every secret that must not appear in any output.
    secrets: Vec<String>,
}

fn corpus() -> Corpus {
    let hf1 = "hf_QwErTyUiOpAsDfGhJkLzXcVbNm0123456789".to_string();
    let hf2 = "hf_ZyXwVuTsRqPoNmLkJiHgFeDcBa9876543210".to_string();
    let hf3 = "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".to_string();
    let ghp1 = "ghp_1a2B3c4D5e6F7g8H9i0JkLmNoPqRsTuVwXyZ".to_string();
    let ghp2 = "ghp_ZZ9yy8XX7ww6VV5uu4TT3ss2RR1qq0PPooNN".to_string();
    let gho = "gho_16C7e42F292c6912E7710c838347Ae178B4a".to_string();
    let pat =
        "github_pat_11ABCDEFG0aBcDeFgHiJkLm_NoPqRsTuVwXyZ0123456789aBcDeFgHiJkLmNoPqRsTuVwXyZ01"
            .to_string();
    let akia1 = "AKIAIOSFODNN7EXAMPLE".to_string();
    let akia2 = "AKIAZ3MXKQ4WPLR7TBNA".to_string();
    let akia3 = "AKIAJ5Q2PL8RMN3VXW4Y".to_string();
    let aws_secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".to_string();
    let aws_session = "FwoGZXIvYXdzEBYaDHqa0AP1/mDSpEpNSyLBAWJ7yFg3hC".to_string();
    let sk_proj = "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb7cDe".to_string();
    let sk_ant = "sk-ant-api03-Zq8Wx7Ec6Rv5Tb4Yn3Um2Ik1Ol0Pa9Sd8Fg".to_string();
    let sk_plain = "sk-9f8e7d6c5b4a3928170615243f3e2d1c0b".to_string();
    let sk_live = "sk_live_51HqLyjWDarjtT1zdp7dcXYZabc".to_string();
    let wandb = "0123456789abcdef0123456789abcdef01234567".to_string();
    let wandb2 = "fedcba9876543210fedcba9876543210fedcba98".to_string();
    let xoxb = "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx".to_string();
    let xoxp = "xoxp-210987654321-3210987654321-ZyXwVuTsRqPoNmLkJiHg".to_string();
    let xoxa = "xoxa-2-98765432109-8765432109876-QwErTyUiOpAs".to_string();
    let jwt1 = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c".to_string();
    let jwt2 = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ0cmFpbmVyIiwiZXhwIjoxOTAwMDAwMDAwfQ.c2lnbmF0dXJlLXBhcnQtb2YtdGhlLWp3dA".to_string();
    let jwt3 = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzUxMiJ9.eyJ1c2VyIjoiYWxpY2UiLCJyb2xlIjoiYWRtaW4ifQ.bm90LWEtcmVhbC1zaWduYXR1cmU".to_string();
    let pem_body = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj";
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{pem_body}\nMwIDAQABAoIBAQCKk3w\n-----END PRIVATE KEY-----"
    );
    let pem2_body = "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW";
    let pem2 = format!(
        "-----BEGIN OPENSSH PRIVATE KEY-----\n{pem2_body}\n-----END OPENSSH PRIVATE KEY-----"
    );
    let db_pass = "correct-horse-battery-staple-42".to_string();
    let pg_pass = "Pg-Sup3r-S3cret!".to_string();
    let mysql_pass = "my5ql-r00t-pa55".to_string();
    let cookie = "s%3AkQ7xv2Lq9Zt.8HnYbB3VvM0pWqRrTtUu".to_string();
    let creds = "svc-account:Zx9-Cv8-Bn7-Mm6".to_string();
    let lightning_auth = "lt-auth-77c1e0b2a9f34d5e8c6b".to_string();
    let google = "AIzaSyA1bC2dE3fG4hI5jK6lM7nO8pQ9rS0tU1v".to_string();
    let npm = "npm_aB1cD2eF3gH4iJ5kL6mN7oP8qR9sT0uV1wX2y".to_string();
    let glpat = "glpat-xY7zW6vU5tS4rQ3pO2nM".to_string();
    let url_pass = "Pa55w0rdIndex".to_string();
    let proxy_pass = "ProxyPa55-7781".to_string();
    let hf_endpoint_pass = "HfEndpointPass99".to_string();
    let argv_token = "tok-AbCdEf0123456789zz".to_string();
    let argv_pass = "hunter2-but-longer-7781".to_string();
    let argv_key = "ak_live_9f8e7d6c5b4a39281706".to_string();
    let argv_db_pass = "PgS3cretPass".to_string();
    let argv_secret = "somesecretvalue123".to_string();
    let run_db_pass = "MyRootPw99".to_string();
    let bearer = "ya29.a0AfH6SMBxQwErTyUiOpAsDfGh".to_string();
    let run_plain = "k8s-plain-db-password-0042".to_string();
    let run_cli_token = "cli-token-5566778899".to_string();

    let env = vec![
        ("HF_TOKEN", hf1.clone()),
        ("HUGGING_FACE_HUB_TOKEN", hf2.clone()),
        ("GITHUB_TOKEN", ghp1.clone()),
        ("GH_ENTERPRISE_TOKEN", gho.clone()),
        ("GITHUB_PAT", pat.clone()),
        ("AWS_ACCESS_KEY_ID", akia1.clone()),
        ("AWS_SECRET_ACCESS_KEY", aws_secret.clone()),
        ("AWS_SESSION_TOKEN", aws_session.clone()),
        ("OPENAI_API_KEY", sk_proj.clone()),
        ("ANTHROPIC_API_KEY", sk_ant.clone()),
        ("WANDB_API_KEY", wandb.clone()),
        ("SLACK_BOT_TOKEN", xoxb.clone()),
        ("SLACK_USER_TOKEN", xoxp.clone()),
        ("DB_PASSWORD", db_pass.clone()),
        ("PGPASSWORD", pg_pass.clone()),
        ("MYSQL_PASSWD", mysql_pass.clone()),
        ("JWT_AUTH", jwt1.clone()),
        ("SESSION_COOKIE", cookie.clone()),
        ("SERVICE_CREDENTIALS", creds.clone()),
        ("LIGHTNING_AUTH_TOKEN", lightning_auth.clone()),
        ("SSH_PRIVATE_KEY", pem.clone()),
        ("GOOGLE_API_KEY", google.clone()),
        ("NPM_TOKEN", npm.clone()),
        ("GITLAB_TOKEN", glpat.clone()),
        ("STRIPE_SECRET", sk_live.clone()),
        // Secrets in variables whose names say nothing: caught by their shape or URL.
        (
            "PIP_INDEX_URL",
            format!("https://deploy:{url_pass}@pypi.internal.example/simple"),
        ),
        (
            "HTTPS_PROXY",
            format!("http://proxyuser:{proxy_pass}@proxy.example:3128"),
        ),
        (
            "HF_ENDPOINT",
            format!("https://hfuser:{hf_endpoint_pass}@hf.example.org"),
        ),
        ("TORCH_HUB_NOTE", format!("pulled with {ghp2}")),
        ("NCCL_DEBUG_NOTE", format!("token {akia2} rotated")),
        ("PYTHON_TRAIN_ARGS", format!("--jwt {jwt2} --slack {xoxa}")),
        ("CUDA_CACHE_NOTE", format!("{hf3} {pem2}")),
        // Ordinary values that must stay.
        ("MASTER_ADDR", "10.1.2.3".into()),
        ("MASTER_PORT", "29555".into()),
        ("RANK", "0".into()),
        ("WORLD_SIZE", "8".into()),
        ("TOKENIZERS_PARALLELISM", "false".into()),
        ("NCCL_SOCKET_IFNAME", "eth0".into()),
    ];
    let argv = vec![
        "--token".into(),
        argv_token.clone(),
        "--password".into(),
        argv_pass.clone(),
        format!("--api-key={argv_key}"),
        "--db".into(),
        format!("postgresql://trainer:{argv_db_pass}@db.example:5432/runs"),
        "--bearer-jwt".into(),
        jwt3.clone(),
        "--aws".into(),
        akia3.clone(),
        format!("--secret={argv_secret}"),
        "--openai".into(),
        sk_plain.clone(),
        "--ckpt".into(),
        "/data/ckpt/run-7".into(),
    ];
    let run_file = format!(
        r#"schema_version: 1
run:
  command: "python train.py --token {run_cli_token} --epochs 3"
  config:
    lr: 0.001
    world_size: 8
    checkpoint_dir: /data/ckpt/run-7
    torch_version: 2.15.0
    wandb:
      api_key: {wandb2}
    db_url: "mysql://root:{run_db_pass}@mysql.example:3306/metrics"
  auth:
    headers:
      Authorization: "Bearer {bearer}"
  env:
    - name: DB_PASSWORD
      value: {run_plain}
    - name: MASTER_ADDR
      value: 10.9.8.7
  logs:
    - "loaded key sk-proj-Qq1Ww2Ee3Rr4Tt5Yy6Uu7Ii8Oo9Pp0"
    - "HF hub login ok with hf_RunLogTokenAbCdEfGhIjKlMnOpQrSt"
"#
    );
    let mut secrets = vec![
        hf1,
        hf2,
        hf3,
        ghp1,
        ghp2,
        gho,
        pat,
        akia1,
        akia2,
        akia3,
        aws_secret,
        aws_session,
        sk_proj,
        sk_ant,
        sk_plain,
        sk_live,
        wandb,
        wandb2,
        xoxb,
        xoxp,
        xoxa,
        jwt1,
        jwt2,
        jwt3,
        db_pass,
        pg_pass,
        mysql_pass,
        cookie,
        creds,
        lightning_auth,
        google,
        npm,
        glpat,
        url_pass,
        proxy_pass,
        hf_endpoint_pass,
        argv_token,
        argv_pass,
        argv_key,
        argv_db_pass,
        argv_secret,
        run_db_pass,
        bearer,
        run_plain,
        run_cli_token,
    ];
    secrets.push(pem_body.to_string());
    secrets.push(pem2_body.to_string());
    secrets.push("sk-proj-Qq1Ww2Ee3Rr4Tt5Yy6Uu7Ii8Oo9Pp0".into());
    secrets.push("hf_RunLogTokenAbCdEfGhIjKlMnOpQrSt".into());
    Corpus {
        env,
        argv,
        run_file,
        secrets,
    }
}

fn report_cmd(c: &Corpus, run_file: &std::path::Path, extra: &[&str]) -> Command {
    let mut cmd = doctor();
    cmd.arg("report")
        .arg("--include-run")
        .arg(run_file)
        .args(extra);
    for (k, v) in &c.env {
        cmd.env(k, v);
    }
    cmd
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn assert_clean(format: &str, out: &str, secrets: &[String]) {
    for s in secrets {
        assert!(
            !out.contains(s.as_str()),
            "{format} output leaks secret {s}"
        );
        // No recognisable part either.
        if s.len() >= 24 {
            let core = &s[s.len() / 2 - 8..s.len() / 2 + 8];
            assert!(
                !out.contains(core),
                "{format} output leaks part {core} of {s}"
            );
        }
    }
}

#[test]
fn secrets_corpus_never_appears_in_any_format() {
    let c = corpus();
    assert!(c.secrets.len() >= 40, "corpus has {}", c.secrets.len());
    let port = free_low_port();
    let mut cmd = Command::new(python());
    cmd.arg(helper("situations.py"))
        .arg("d001")
        .arg(port.to_string())
        .args(&c.argv);
    let s = Situation::start_cmd(&mut cmd);
    let dir = tempfile::tempdir().unwrap();
    let run_file = dir.path().join("run.yaml");
    std::fs::write(&run_file, &c.run_file).unwrap();

    for format in ["json", "yaml", "table"] {
        let out = report_cmd(&c, &run_file, &["--format", format])
            .output()
            .unwrap();
        let stdout = text(&out);
        assert_eq!(
            out.status.code(),
            Some(1),
            "D001 runs, so exit 1; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_clean(format, &stdout, &c.secrets);
        if format != "table" {
            assert!(stdout.contains("[redacted]"), "{format}: nothing redacted?");
        }
        // Ordinary values stay.
        assert!(stdout.contains("MASTER_ADDR"), "{format}");
        assert!(stdout.contains("10.1.2.3"), "{format}: MASTER_ADDR value");
        assert!(stdout.contains(&port.to_string()), "{format}: the port");
        if format != "table" {
            let doc: serde_json::Value = if format == "json" {
                serde_json::from_str(&stdout).unwrap()
            } else {
                serde_yaml::from_str(&stdout).unwrap()
            };
            let shell = &doc["environment"]["shell"];
            assert_eq!(shell["MASTER_PORT"], "29555");
            assert_eq!(shell["RANK"], "0");
            assert_eq!(shell["WORLD_SIZE"], "8");
            assert_eq!(shell["TOKENIZERS_PARALLELISM"], "false");
            assert_eq!(shell["NCCL_SOCKET_IFNAME"], "eth0");
            assert_eq!(shell["HF_TOKEN"], "[redacted]");
            assert_eq!(
                shell["PIP_INDEX_URL"],
                "https://[redacted]@pypi.internal.example/simple"
            );
            let run = &doc["included_run"]["document"]["run"];
            assert_eq!(run["config"]["lr"], 0.001);
            assert_eq!(run["config"]["world_size"], 8);
            assert_eq!(run["config"]["checkpoint_dir"], "/data/ckpt/run-7");
            assert_eq!(run["config"]["torch_version"], "2.15.0");
            assert_eq!(run["env"][1]["value"], "10.9.8.7");
            assert_eq!(
                run["command"],
                "python train.py --token [redacted] --epochs 3"
            );
            // The helper's argv: secrets gone, the ordinary argument kept.
            let rank = s.pid("rank");
            let procs = doc["environment"]["training_processes"].as_array().unwrap();
            let me = procs
                .iter()
                .find(|p| p["pid"] == rank)
                .expect("the helper rank is listed");
            let cmdline = me["command"].as_str().unwrap();
            assert!(cmdline.contains("--ckpt /data/ckpt/run-7"), "{cmdline}");
            assert!(cmdline.contains("--password [redacted]"), "{cmdline}");
            assert_eq!(me["identity"]["master_port"], port);
        }
    }

    // --no-redact keeps them, and says so.
    let out = report_cmd(&c, &run_file, &["--format", "json", "--no-redact"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("warning: --show-secrets"), "{stderr}");
    assert!(stderr.contains("credentials in URLs"), "{stderr}");
    assert!(text(&out).contains(&c.secrets[0]));
    drop(s);
}

#[test]
fn report_contains_live_holder_and_finding() {
    let port = free_low_port();
    let s = Situation::start("d001", port);
    let (rank, child) = (s.pid("rank"), s.pid("child"));
    let (doc, code) = json(&["report", "--format", "json"]);
    assert_eq!(code, 1);
    assert_eq!(doc["schema_version"], 2);
    assert_eq!(doc["kind"], "doctor-report");
    assert_eq!(doc["complete"], true);
    let holder = doc["ports"]["holders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["port"] == port && h["state"] == "LISTEN")
        .expect("the listener is in the report");
    assert_eq!(holder["pid"], rank);
    assert_eq!(holder["role"], "rank");
    let d001: Vec<_> = doc["ports"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"] == "D001" && f["ports"][0] == port)
        .collect();
    assert_eq!(d001.len(), 1, "{:#}", doc["ports"]["findings"]);
    assert_eq!(pids_of(d001[0]), vec![rank as i64, child as i64]);
    // The summary carries it with its fix.
    let summary = doc["summary"]["findings"].as_array().unwrap();
    assert!(
        summary
            .iter()
            .any(|f| f["code"] == "D001"
                && f["fix"]["message"].as_str().unwrap().contains("__main__"))
    );
    assert!(doc["summary"]["errors"].as_u64().unwrap() >= 1);
    // The job's tree: the rank with its spawn child under it, marked with D001.
    let tree = doc["trees"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["pid"] == rank)
        .expect("the rank's tree");
    let kid = tree["children"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["pid"] == child)
        .expect("the spawn child under the rank");
    assert_eq!(kid["role"], "spawn-child");
    assert!(
        kid["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "D001")
    );
    // Host facts are there.
    assert!(doc["host"]["cpu_count"].as_u64().unwrap() >= 1);
    assert!(doc["host"]["memory_total_bytes"].as_u64().unwrap() > 0);
    assert!(
        doc["host"]["addresses"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "127.0.0.1")
    );
    assert!(doc["gpus"]["source"].is_string());

    // The table shows the summary and the holder on one screen.
    let out = run(&["report", "--format", "table"]);
    let t = text(&out);
    assert!(t.contains("summary:"), "{t}");
    assert!(t.contains("error[D001]"), "{t}");
    assert!(t.contains(&format!("{port} LISTEN")), "{t}");
}

#[test]
fn versions_of_the_managed_venv() {
    let home = std::env::var("HOME").unwrap_or_default();
    let py = PathBuf::from(home).join(".cache/ddp-doctor/venv/bin/python");
    if !py.exists() {
        skip_or_fail(&format!(
            "the managed venv {} is absent; create it (torch 2.15.0 + lightning 2.6.6) to run this test",
            py.display()
        ));
        return;
    }
    let out = doctor()
        .args(["report", "--format", "json"])
        .env("DOCTOR_PYTHON", &py)
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let i = &doc["python"]["interpreters"][0];
    assert_eq!(i["path"], py.display().to_string(), "{i:#}");
    assert_eq!(i["packages"]["torch"], "2.15.0", "{i:#}");
    assert_eq!(i["packages"]["lightning"], "2.6.6", "{i:#}");
    assert!(i["packages"]["numpy"].is_string(), "{i:#}");
    assert!(
        i["torch_cuda"].is_string(),
        "torch/version.py has cuda: {i:#}"
    );
    assert!(i["nccl"].is_string(), "nvidia-nccl metadata: {i:#}");
    assert!(i["error"].is_null());

    // A missing interpreter is recorded, not fatal.
    let out = doctor()
        .args(["report", "--format", "json"])
        .env("DOCTOR_PYTHON", "/nonexistent/bin/python")
        .output()
        .unwrap();
    assert!(matches!(out.status.code(), Some(0 | 1)));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["python"]["interpreters"][0]["error"], "not found");
}

#[test]
fn anonymize_replaces_host_and_user() {
    let (doc, _) = json(&["report", "--format", "json"]);
    let host = doc["host"]["hostname"].as_str().unwrap().to_string();
    let out = doctor()
        .args(["report", "--format", "json", "--anonymize"])
        .env("USER", "alice-example-user")
        .env(
            "PIP_INDEX_URL",
            "https://pypi.example/alice-example-user/simple",
        )
        .output()
        .unwrap();
    let t = text(&out);
    let doc: serde_json::Value = serde_json::from_str(&t).unwrap();
    let anon = doc["host"]["hostname"].as_str().unwrap();
    assert!(anon.starts_with("host-"), "{anon}");
    assert_ne!(anon, host);
    assert!(!t.contains("alice-example-user"));
    assert!(
        doc["environment"]["shell"]["PIP_INDEX_URL"]
            .as_str()
            .unwrap()
            .contains("/user-")
    );
    assert_eq!(doc["anonymized"], true);
}

#[test]
fn bad_include_run_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "run: [1, 2\n  oops: {").unwrap();
    for path in [bad.clone(), dir.path().join("missing.yaml")] {
        let out = run(&["report", "--include-run", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("error: "), "{err}");
        assert!(err.contains("\nhint: "), "{err}");
    }
}

#[test]
fn output_file_is_yaml_and_scan_findings_are_in_it() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("train.py");
    std::fs::write(
        &script,
        "import lightning as L\nfabric = L.Fabric(devices=2, strategy=\"ddp\")\nfabric.launch()\n",
    )
    .unwrap();
    let file = dir.path().join("report.yaml");
    let out = run(&[
        "report",
        "-o",
        file.to_str().unwrap(),
        "--scan",
        script.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a static warning makes it exit 1"
    );
    assert!(out.stdout.is_empty());
    let doc: serde_json::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(doc["scan"]["files_scanned"], 1);
    let s001 = &doc["scan"]["findings"][0];
    assert_eq!(
        (s001["code"].as_str(), s001["location"]["line"].as_u64()),
        (Some("S001"), Some(3))
    );
    assert!(
        doc["summary"]["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["code"] == "S001")
    );
    // A path that does not exist is bad input.
    let out = run(&[
        "report",
        "--format",
        "json",
        "--scan",
        "/nonexistent/train.py",
    ]);
    assert_eq!(out.status.code(), Some(2));
    // The summary comes first in the attachment.
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.find("summary:").unwrap() < text.find("host:").unwrap());
}

/// `--port N` means the same as in `doctor ports`: the ports section shows only N.
#[test]
fn port_filters_the_ports_section() {
    let (a, b) = (free_low_port(), free_low_port());
    let _sa = Situation::start("d001", a);
    let _sb = Situation::start("d003", b);
    let (doc, _) = json(&["report", "--port", &a.to_string(), "--format", "json"]);
    let ports: Vec<u64> = doc["ports"]["holders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["port"].as_u64().unwrap())
        .collect();
    assert!(
        !ports.is_empty() && ports.iter().all(|p| *p == u64::from(a)),
        "{ports:?}"
    );
    assert_eq!(doc["ports"]["ports"], serde_json::json!([a]));
}
