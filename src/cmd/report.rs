//! `doctor report`: one document to attach to a support ticket - host, GPUs, Python packages,
//! rendezvous environment, port holders, jobs and findings - with secrets redacted.
//!
//! The document is built once as a `serde_json::Value`, redacted (and anonymised on request),
//! and every format (table, YAML, JSON) is rendered from that same value.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Value, json};

use crate::analysis::holders::holders;
use crate::analysis::tree::build_node;
use crate::analysis::{Analysis, Identity};
use crate::cmd::parse_port;
use crate::error::user_error;
use crate::model::envelope::{Envelope, Kind};
use crate::model::finding::{Finding, worth_exit_1};
use crate::model::report::REPORT_KIND;
use crate::model::snapshot::{Snapshot, is_rendezvous_env};
use crate::render::redact;
use crate::render::report::report_table;
use crate::render::{self, Format};
use crate::sys::observe;

#[derive(clap::Args)]
#[command(
    after_help = "Format: --format, else from the -o extension (.json: JSON, else YAML), \
else a table (on a terminal and in a pipe alike).\n\
Exit codes: 0 nothing found, 1 a finding at warning level or worse, 2 usage or internal error."
)]
pub struct ReportArgs {
    /// Write the report to FILE instead of stdout
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// table (the summary, one screen), yaml (the attachment) or json
    #[arg(long, value_enum, alias = "output-format")]
    format: Option<Format>,
    /// Also run `doctor scan` on this Python file or directory (repeatable)
    #[arg(long, value_name = "PATH")]
    scan: Vec<PathBuf>,
    /// Embed this YAML or JSON file (e.g. from `doctor run --record`) in the report
    #[arg(long, value_name = "FILE")]
    include_run: Option<PathBuf>,
    /// Deprecated name of the global --show-secrets (kept for scripts)
    #[arg(long, hide = true)]
    no_redact: bool,
    /// Replace host names and user names by stable pseudonyms (host-xxxxxx, user-xxxxxx)
    #[arg(long)]
    anonymize: bool,
    /// Only this port in the ports section (repeatable; a rendezvous port for the analysis too)
    #[arg(long, value_parser = parse_port)]
    port: Vec<u16>,
    /// Also explain the rendezvous failure of this live process (as `doctor ports --failed-pid`):
    /// its findings join the report's
    #[arg(long, value_name = "PID")]
    failed_pid: Option<i32>,
    /// With --failed-pid: the failing process's output or traceback (a file)
    #[arg(long, value_name = "FILE", requires = "failed_pid")]
    output_of: Option<PathBuf>,
}

/// `--port`: the ports section shows only those ports, as `doctor ports --port` does.
fn keep_ports(doc: &mut Value, ports: &[u16]) {
    if ports.is_empty() {
        return;
    }
    let wanted = |v: &Value| {
        v.as_u64()
            .is_some_and(|p| ports.iter().any(|q| u64::from(*q) == p))
    };
    let section = &mut doc["ports"];
    section["ports"] = Value::from(ports.to_vec());
    if let Some(rows) = section["holders"].as_array_mut() {
        rows.retain(|h| wanted(&h["port"]));
    }
    if let Some(found) = section["findings"].as_array_mut() {
        found.retain(|f| {
            f["ports"]
                .as_array()
                .is_none_or(|p| p.is_empty() || p.iter().any(wanted))
        });
    }
}

/// Environment variables of this shell worth showing: rendezvous and launcher settings, the
/// communication libraries, the Python environment, proxies and indexes (credentials in their
/// URLs are redacted), and any variable named like a secret (shown as `[redacted]`, so support
/// can see that it is set).
const SHELL_ENV_PREFIXES: &[&str] = &[
    "NCCL_",
    "GLOO_",
    "TORCH",
    "PYTORCH_",
    "CUDA_",
    "SLURM_",
    "PMI_",
    "PMIX_",
    "OMPI_",
    "HF_",
    "HUGGING",
    "TRANSFORMERS_",
    "WANDB_",
    "PL_",
    "LIGHTNING_",
    "ACCELERATE_",
    "DEEPSPEED_",
    "OMP_",
    "MKL_",
    "PYTHON",
    "CONDA_",
    "PIP_",
    "UV_",
];
const SHELL_ENV_NAMES: &[&str] = &[
    "PATH",
    "LD_LIBRARY_PATH",
    "LD_PRELOAD",
    "VIRTUAL_ENV",
    "HOME",
    "USER",
    "HOSTNAME",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "DOCTOR_PYTHON",
    "TOKENIZERS_PARALLELISM",
];

pub fn shell_env() -> BTreeMap<String, String> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.to_string_lossy().into_owned())))
        .filter(|(k, _)| {
            is_rendezvous_env(k)
                || SHELL_ENV_NAMES.contains(&k.as_str())
                || SHELL_ENV_PREFIXES.iter().any(|p| k.starts_with(p))
                || redact::is_secret_name(k)
        })
        .collect()
}

#[derive(Serialize)]
struct TrainingProcess<'a> {
    pid: i32,
    ppid: i32,
    role: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    job: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    identity: Option<&'a Identity>,
    env: &'a BTreeMap<String, String>,
    command: String,
}

fn read_included(path: &Path) -> anyhow::Result<Value> {
    let text = crate::model::load::read_document(path).map_err(|e| {
        user_error(
            format!("cannot read {}: {e}", path.display()),
            "--include-run takes a YAML or JSON file, e.g. one written by `doctor run --record FILE`",
        )
    })?;
    if text.trim().is_empty() {
        return Err(user_error(
            format!("{} is empty", path.display()),
            "--include-run takes a YAML or JSON document",
        ));
    }
    let parsed: Result<Value, String> = if text.trim_start().starts_with(['{', '[']) {
        serde_json::from_str(&text).map_err(|e| e.to_string())
    } else {
        // A multi-document YAML stream becomes a list of its documents.
        use serde::Deserialize;
        let mut docs = Vec::new();
        let mut err = None;
        for d in serde_yaml::Deserializer::from_str(&text) {
            match Value::deserialize(d) {
                Ok(v) => docs.push(v),
                Err(e) => {
                    err = Some(e.to_string());
                    break;
                }
            }
        }
        match (err, docs.len()) {
            (Some(e), _) => Err(e),
            (None, 1) => Ok(docs.pop().unwrap_or(Value::Null)),
            (None, _) => Ok(Value::Array(docs)),
        }
    };
    parsed.map_err(|e| {
        user_error(
            format!("{} is not valid YAML or JSON: {e}", path.display()),
            "--include-run takes a YAML or JSON document; check that the file is complete",
        )
    })
}

/// The snapshot of this network namespace (and how many processes of others were left out),
/// the Python interpreters' versions and the GPUs, read in parallel.
fn observe_all() -> ((Value, Value), (Snapshot, usize)) {
    // The Python probes take the longest; run them while /proc is read.
    // The namespace check follows the snapshot at once, before short-lived processes exit.
    rayon::join(
        || {
            rayon::join(
                || {
                    json!(crate::sys::python::versions(
                        &crate::sys::python::interpreters()
                    ))
                },
                || json!(crate::sys::host::gpus()),
            )
        },
        || {
            let mut snap = observe::snapshot();
            let other = observe::same_netns_only(&mut snap);
            (snap, other)
        },
    )
}

/// The processes of training jobs, or with rendezvous variables, other than doctor itself.
fn training_processes<'a>(snap: &'a Snapshot, a: &'a Analysis) -> Vec<TrainingProcess<'a>> {
    snap.processes
        .iter()
        .filter(|p| p.pid != snap.host.observer_pid)
        .filter(|p| !p.env.is_empty() || a.identity(p.pid).is_some() || a.job(p.pid).is_some())
        .map(|p| TrainingProcess {
            pid: p.pid,
            ppid: p.ppid,
            role: a.role(p.pid).name(),
            job: a.job(p.pid).map(|j| j.id.as_str()),
            identity: a.identity(p.pid),
            env: &p.env,
            command: p.command(),
        })
        .collect()
}

/// `doctor scan` over the --scan paths: the `scan` section (null without paths) and the static
/// findings.
fn scan_section(paths: &[PathBuf]) -> anyhow::Result<(Value, Vec<crate::scan::Diagnostic>)> {
    let mut diags: Vec<crate::scan::Diagnostic> = Vec::new();
    if paths.is_empty() {
        return Ok((Value::Null, diags));
    }
    let mut scanned = 0;
    let mut skipped: Vec<Value> = Vec::new();
    let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    for r in crate::scan::scan_paths(&shown, &crate::scan::default_options())? {
        match r.skipped {
            Some(reason) => skipped.push(json!({ "path": r.path, "reason": reason })),
            None => scanned += 1,
        }
        diags.extend(r.diagnostics);
    }
    let section = json!({
        "paths": shown,
        "files_scanned": scanned,
        "files_skipped": skipped,
        "findings": diags,
    });
    Ok((section, diags))
}

/// The `summary` section: runtime and static findings counted alike. Returns it and the exit-1
/// verdict.
fn summary(findings: &[Finding], diags: &[crate::scan::Diagnostic]) -> (Value, bool) {
    // The summary lists runtime and static findings in the one finding shape.
    let mut summary_findings: Vec<(Value, &str)> = findings
        .iter()
        .map(|f| (json!(f), f.severity.as_str()))
        .collect();
    for d in diags {
        summary_findings.push((json!(d), d.severity.as_str()));
    }
    let count = |sev: &str| summary_findings.iter().filter(|(_, s)| *s == sev).count();
    let (errors, warnings, infos) = (count("error"), count("warning"), count("info"));
    let summary_findings: Vec<Value> = summary_findings.into_iter().map(|(v, _)| v).collect();
    let exit_1 = worth_exit_1(findings) || errors + warnings > 0;
    let section = json!({
        "exit_code": i32::from(exit_1),
        "errors": errors,
        "warnings": warnings,
        "info": infos,
        "findings": summary_findings,
    });
    (section, exit_1)
}

/// The `unreadable` section: what /proc refused, by kind.
fn unreadable(snap: &Snapshot) -> Value {
    let mut by_what: BTreeMap<&str, usize> = BTreeMap::new();
    let mut denied = 0;
    for u in &snap.unreadable {
        *by_what.entry(u.what.as_str()).or_default() += 1;
        if u.reason == "permission denied" {
            denied += 1;
        }
    }
    json!({
        "count": snap.unreadable.len(),
        "permission_denied": denied,
        "by_what": by_what,
        "processes_seen": snap.processes.len(),
    })
}

/// Build the whole report, unredacted. Returns the document and the exit-1 verdict.
fn build(args: &ReportArgs, included: Option<Value>) -> anyhow::Result<(Value, bool)> {
    let ((python, gpus), (mut snap, other_netns)) = observe_all();
    crate::cmd::probe_binds(&mut snap, &args.port);
    let a = Analysis::live(&snap, &args.port, crate::sys::freeport::pick);
    let rows = holders(&a, false);
    let host = crate::sys::host::host_facts(&snap.host);
    let training = training_processes(&snap, &a);
    let mut all = a.findings.clone();
    if let Some(pid) = args.failed_pid {
        let text = match &args.output_of {
            Some(p) => std::fs::read(p)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .map_err(|e| {
                    crate::error::user_error(
                        format!("cannot read {}: {e}", p.display()),
                        "--output-of takes a readable file with the failing process's output",
                    )
                })?,
            None => String::new(),
        };
        let output = crate::analysis::traceback::read_output(&text);
        let d = crate::analysis::run_diagnosis::diagnose_live(
            &snap,
            pid,
            args.port.first().copied(),
            &output,
            crate::sys::freeport::pick,
        );
        for f in d.findings {
            if !all.iter().any(|g| g.code == f.code && g.pids == f.pids) {
                all.push(f);
            }
        }
    }
    let findings: &[Finding] = &all;
    // Static findings of the --scan paths count in the summary like runtime ones.
    let (scan, diags) = scan_section(&args.scan)?;
    let (summary, exit_1) = summary(findings, &diags);
    let included_run = match (&args.include_run, included) {
        (Some(path), Some(doc)) => json!({ "path": path.display().to_string(), "document": doc }),
        _ => Value::Null,
    };

    let envelope = Envelope::new(Kind::Report, &snap.host.hostname, snap.taken_at);
    debug_assert_eq!(envelope.kind, REPORT_KIND);
    let doc = envelope.wrap(json!({
        "redacted": !show_secrets(args),
        "anonymized": args.anonymize,
        "summary": summary,
        "host": host,
        "gpus": gpus,
        "python": {
            "discovery": "DOCTOR_PYTHON, VIRTUAL_ENV, CONDA_PREFIX, python3 on PATH, ~/.cache/ddp-doctor/venv; versions from package metadata, torch is not imported",
            "interpreters": python,
        },
        "environment": {
            "shell": shell_env(),
            "doctor_argv": std::env::args().collect::<Vec<_>>(),
            "training_processes": training,
            "other_netns_processes": other_netns,
        },
        "ports": {
            "ports": a.rendezvous_ports.iter().collect::<Vec<_>>(),
            "holders": rows,
            "jobs": a.jobs,
            "findings": findings,
        },
        // The process tree of each job, as `doctor tree --format json` draws it.
        "trees": a.jobs.iter().map(|j| build_node(&a, j.root, &|_| true, 0)).collect::<Vec<_>>(),
        "unreadable": unreadable(&snap),
        "scan": scan,
        "included_run": included_run,
        "complete": true,
    }));
    Ok((doc, exit_1))
}

/// The names `--anonymize` replaces: this host, this user, and the owners of training processes.
fn anonymizer(doc: &Value) -> redact::Anonymizer {
    let mut an = redact::Anonymizer::new();
    if let Some(h) = doc["host"]["hostname"].as_str() {
        an.host(h);
    }
    if let Some(u) = doc["host"]["user"].as_str() {
        an.user(u);
    }
    if let Ok(u) = std::env::var("USER") {
        an.user(&u);
    }
    // The owners D008 names (`pid N (user NAME, ...`): a foreign holder's user.
    for f in doc["summary"]["findings"].as_array().into_iter().flatten() {
        let msg = f["message"].as_str().unwrap_or_default();
        if let Some(rest) = msg.split_once("(user ").map(|(_, r)| r) {
            an.user(rest.split([',', ')']).next().unwrap_or_default());
        }
    }
    // Host names the rendezvous names (MASTER_ADDR of this shell and of the training processes):
    // other nodes' names, given the same pseudonyms their own reports give them.
    let shell = &doc["environment"]["shell"];
    let mut names: Vec<&str> = ["HOSTNAME", "SLURMD_NODENAME", "MASTER_ADDR"]
        .iter()
        .filter_map(|k| shell[*k].as_str())
        .collect();
    for p in doc["environment"]["training_processes"]
        .as_array()
        .into_iter()
        .flatten()
    {
        names.extend(p["identity"]["master_addr"].as_str());
    }
    for h in names {
        if h.parse::<std::net::IpAddr>().is_err() && !h.is_empty() {
            an.host(h);
        }
    }
    an
}

/// `--show-secrets` (global) or its older name `--no-redact`.
fn show_secrets(args: &ReportArgs) -> bool {
    args.no_redact || render::settings().show_secrets
}

pub fn report(args: ReportArgs) -> anyhow::Result<i32> {
    if let Some(p) = &args.output {
        crate::sys::output::check_writable(p)?;
    }
    let format = match (args.format, &args.output) {
        (Some(f), _) => f,
        (None, Some(p)) if p.extension().is_some_and(|e| e == "json") => Format::Json,
        (None, Some(_)) => Format::Yaml,
        // A pipe gets what a terminal gets, as in every command.
        (None, None) => Format::Table,
    };
    let included = match &args.include_run {
        Some(p) => Some(read_included(p)?),
        None => None,
    };
    let (mut doc, exit_1) = build(&args, included)?;
    keep_ports(&mut doc, &args.port);
    if show_secrets(&args) {
        eprintln!(
            "warning: --show-secrets: the report keeps {}; do not attach it where others can read it",
            redact::WHAT_REDACTION_COVERS
        );
    } else {
        redact::redact(&mut doc);
    }
    if args.anonymize {
        anonymizer(&doc).apply(&mut doc);
    }
    let text = match format {
        Format::Table => {
            let mut shown = doc.clone();
            render::escape_document(&mut shown);
            report_table(&shown, args.output.is_none() && render::stdout_color())
        }
        f => render::document(&doc, f)?,
    };
    match &args.output {
        Some(path) => {
            crate::sys::output::write_atomic(path, text.as_bytes())?;
            render::note(&format!(
                "wrote {}: {}; merge reports of several nodes with `doctor merge report-*.yaml`",
                path.display(),
                render::counts(&doc["summary"])
            ));
        }
        None => render::print(&text),
    }
    Ok(i32::from(exit_1))
}
