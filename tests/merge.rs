//! `doctor merge`: two simulated nodes built with network namespaces (veth pair, 10.77.0.1 and
//! 10.77.0.2), real rank processes in each, `doctor report` taken inside each namespace, merged.
//! Without the privilege to create namespaces, the merge runs on reports recorded from an
//! earlier real run (tests/fixtures/reports/, re-recorded with DOCTOR_RECORD_FIXTURES=1).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reports")
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Two namespaces joined by a veth pair; deleted (with the veth) on drop, pass or fail.
struct Nodes {
    ns: [String; 2],
}

impl Nodes {
    /// `which` tells apart the namespaces of tests running at once (one letter).
    fn create(which: char) -> Result<Nodes, String> {
        let tag = std::process::id();
        let nodes = Nodes {
            ns: [format!("ddm{tag}{which}a"), format!("ddm{tag}{which}b")],
        };
        let (va, vb) = (format!("ddv{tag}{which}a"), format!("ddv{tag}{which}b"));
        let [a, b] = &nodes.ns;
        ip(&["netns", "add", a])?;
        ip(&["netns", "add", b])?;
        ip(&["link", "add", &va, "type", "veth", "peer", "name", &vb])?;
        ip(&["link", "set", &va, "netns", a])?;
        ip(&["link", "set", &vb, "netns", b])?;
        ip(&["-n", a, "addr", "add", "10.77.0.1/24", "dev", &va])?;
        ip(&["-n", b, "addr", "add", "10.77.0.2/24", "dev", &vb])?;
        for (ns, dev) in [(a, &va), (b, &vb)] {
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(nodes)
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for ns in &self.ns {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

/// Start `multinode.py WHAT PORT` inside namespace `ns` with the given environment.
fn start_in(ns: &str, env: &[(&str, String)], what: &str, port: u16) -> Situation {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, "env"]);
    for (k, v) in env {
        cmd.arg(format!("{k}={v}"));
    }
    cmd.arg(python())
        .arg(helper("multinode.py"))
        .arg(what)
        .arg(port.to_string());
    Situation::start_cmd(&mut cmd)
}

/// `doctor report -o FILE` inside namespace `ns`, with its own UTS namespace and host name.
fn report_in(ns: &str, hostname: &str, file: &Path, env: &[(&str, String)]) {
    report_in_with(ns, hostname, file, env, "")
}

fn report_in_with(ns: &str, hostname: &str, file: &Path, env: &[(&str, String)], flag: &str) {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, "unshare", "--uts", "sh", "-c"])
        .arg("hostname \"$1\" && exec \"$2\" report -o \"$3\" $4")
        .arg("sh")
        .arg(hostname)
        .arg(env!("CARGO_BIN_EXE_doctor"))
        .arg(file)
        .arg(flag)
        .env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("doctor report runs in the namespace");
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "report in {ns} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn merge_json(files: &[&Path], extra: &[&str]) -> (serde_json::Value, i32) {
    let mut args: Vec<&str> = vec!["merge", "--format", "json"];
    args.extend(extra);
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    args.extend(names.iter().map(String::as_str));
    json(&args)
}

fn codes(doc: &serde_json::Value) -> Vec<String> {
    doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap().to_string())
        .collect()
}

fn node<'a>(doc: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    doc["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == name)
        .unwrap_or_else(|| panic!("node {name} in {doc:#}"))
}

/// What the merge of the two simulated nodes must say, live or from the fixtures.
fn check_cluster_view(doc: &serde_json::Value, code: i32, port: u16) {
    assert_eq!(code, 1, "{doc:#}");
    assert_eq!(doc["kind"], "doctor-merge");
    let r = &doc["rendezvous"];
    assert_eq!(r["master_addr"], "10.77.0.1", "{doc:#}");
    assert_eq!(r["master_port"], port);
    assert_eq!(
        r["master_node"], "node-a",
        "MASTER_ADDR is node-a's address"
    );
    assert_eq!(r["slurm_job_ids"], serde_json::json!(["4242"]));
    let holders = r["master_port_holders"].as_array().unwrap();
    assert_eq!(holders.len(), 1, "{doc:#}");
    assert_eq!(holders[0]["role"], "rank");
    assert!(node(doc, "node-a")["master"] == true);

    // Ranks per node: rank 0 on node-a; rank 1 and a second rank 0 on node-b.
    let ranks = |n: &str| -> Vec<i64> {
        let mut v: Vec<i64> = node(doc, n)["ranks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["rank"].as_i64().unwrap())
            .collect();
        v.sort();
        v
    };
    assert_eq!(ranks("node-a"), vec![0]);
    assert_eq!(ranks("node-b"), vec![0, 1]);
    // Each node's report saw only its own namespace's processes.
    assert_eq!(node(doc, "node-a")["ranks"].as_array().unwrap().len(), 1);

    let c = codes(doc);
    let find = |code: &str| -> Vec<&serde_json::Value> {
        doc["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["code"] == code)
            .collect()
    };
    // Duplicate rank across nodes.
    let m004 = find("M004");
    assert_eq!(m004.len(), 1, "{c:?}");
    assert!(m004[0]["message"].as_str().unwrap().contains("RANK 0"));
    assert_eq!(m004[0]["nodes"], serde_json::json!(["node-a", "node-b"]));
    // The port held by another program on node-b (not the master: a warning).
    let m003 = find("M003");
    assert_eq!(m003.len(), 1, "{c:?}");
    assert_eq!(m003[0]["nodes"], serde_json::json!(["node-b"]));
    assert_eq!(m003[0]["severity"], "warning");
    // torch on node-a only.
    let m005 = find("M005");
    assert!(
        m005.iter()
            .any(|f| f["message"].as_str().unwrap().starts_with("torch differs")),
        "{c:?}"
    );
    assert!(
        !c.contains(&"M002".to_string()),
        "the master listens: {c:?}"
    );
    assert!(!c.contains(&"M007".to_string()), "taken together: {c:?}");
    for f in doc["findings"].as_array().unwrap() {
        assert!(!f["fix"]["message"].as_str().unwrap().is_empty());
    }
}

fn fixture_port(a: &Path) -> u16 {
    let doc: serde_json::Value =
        serde_yaml::from_str(&std::fs::read_to_string(a).unwrap()).unwrap();
    doc["environment"]["shell"]["MASTER_PORT"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn merge_fixtures() {
    let (a, b) = (
        fixtures().join("report-node-a.yaml"),
        fixtures().join("report-node-b.yaml"),
    );
    let port = fixture_port(&a);
    let (doc, code) = merge_json(&[&a, &b], &[]);
    check_cluster_view(&doc, code, port);
    // Reports taken apart are flagged (here: more than 0 minutes apart).
    let (doc, _) = merge_json(&[&a, &b], &["--max-spread", "0"]);
    assert!(codes(&doc).contains(&"M007".to_string()));
}

#[test]
fn two_nodes_in_network_namespaces() {
    let have_ip = Command::new("ip").arg("-V").output().is_ok();
    let have_unshare = Command::new("unshare").arg("--version").output().is_ok();
    let nodes = if !have_ip || !have_unshare {
        Err("`ip` (iproute2) or `unshare` (util-linux) is not installed".to_string())
    } else {
        Nodes::create('x')
    };
    let nodes = match nodes {
        Ok(n) => n,
        Err(why) => {
            skip_or_fail(&format!(
                "live multi-node part: cannot create network namespaces ({why}); \
                 merging the reports recorded from an earlier real run in tests/fixtures/reports instead"
            ));
            merge_fixtures();
            return;
        }
    };
    let [a, b] = nodes.ns.clone();
    let port = free_low_port();
    let job = |rank: u32, local: u32, node: u32| -> Vec<(&str, String)> {
        vec![
            ("MASTER_ADDR", "10.77.0.1".into()),
            ("MASTER_PORT", port.to_string()),
            ("RANK", rank.to_string()),
            ("LOCAL_RANK", local.to_string()),
            ("NODE_RANK", node.to_string()),
            ("WORLD_SIZE", "2".into()),
            ("TORCHELASTIC_RUN_ID", "job-77".into()),
            ("SLURM_JOB_ID", "4242".into()),
        ]
    };
    // node-a: rank 0 hosts the store on 10.77.0.1:PORT.
    let rank0 = start_in(&a, &job(0, 0, 0), "rank", port);
    // node-b: rank 1 connects to it across the veth pair; a misconfigured second "rank 0"
    // (NODE_RANK 0 on the wrong node) waits; another program holds PORT there.
    let rank1 = start_in(&b, &job(1, 0, 1), "rank", port);
    let dup0 = start_in(&b, &job(0, 1, 0), "idle", port);
    let other = start_in(&b, &[], "listen", port);

    let dir = tempfile::tempdir().unwrap();
    let (fa, fb) = (
        dir.path().join("report-node-a.yaml"),
        dir.path().join("report-node-b.yaml"),
    );
    let home_b = tempfile::tempdir().unwrap();
    let shell = |extra: Vec<(&'static str, String)>| {
        let mut v = vec![
            ("MASTER_ADDR", "10.77.0.1".to_string()),
            ("MASTER_PORT", port.to_string()),
            ("SLURM_JOB_ID", "4242".to_string()),
        ];
        v.extend(extra);
        v
    };
    report_in(&a, "node-a", &fa, &shell(vec![]));
    // node-b has no torch: only the system python, no managed venv under its HOME.
    report_in(
        &b,
        "node-b",
        &fb,
        &shell(vec![
            ("HOME", home_b.path().display().to_string()),
            ("DOCTOR_PYTHON", "/usr/bin/python3".into()),
            ("PATH", "/usr/bin:/bin".into()),
        ]),
    );

    // node-b's own report sees rank 1's connection to the master across the namespaces.
    let rb: serde_json::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&fb).unwrap()).unwrap();
    assert!(
        rb["ports"]["holders"].as_array().unwrap().iter().any(|h| {
            h["pid"] == rank1.pid("me")
                && h["state"] == "ESTABLISHED"
                && h["remote"] == format!("10.77.0.1:{port}")
        }),
        "{:#}",
        rb["ports"]["holders"]
    );
    assert!(
        rb["host"]["addresses"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x == "10.77.0.2")
    );

    let (doc, code) = merge_json(&[&fa, &fb], &[]);
    check_cluster_view(&doc, code, port);
    assert_eq!(
        doc["rendezvous"]["master_port_holders"][0]["pid"],
        rank0.pid("me")
    );
    let m003 = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == "M003")
        .unwrap();
    assert!(
        m003["message"]
            .as_str()
            .unwrap()
            .contains(&format!("pid {}", other.pid("me"))),
        "{m003:#}"
    );
    let dup = node(&doc, "node-b")["ranks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["pid"] == dup0.pid("me"));
    assert!(dup);

    if std::env::var_os("DOCTOR_RECORD_FIXTURES").is_some() {
        std::fs::create_dir_all(fixtures()).unwrap();
        std::fs::copy(&fa, fixtures().join("report-node-a.yaml")).unwrap();
        std::fs::copy(&fb, fixtures().join("report-node-b.yaml")).unwrap();
        eprintln!("recorded fixtures in {}", fixtures().display());
    }
    drop((rank0, rank1, dup0, other));
}

/// A healthy job: rank 0 on node-a (MASTER_ADDR given as its host name), rank 1 on node-b; the
/// reports are anonymised, and the merge still finds the master by the host name's pseudonym.
#[test]
fn two_nodes_healthy_job_anonymized() {
    let nodes = match Nodes::create('y') {
        Ok(n) => n,
        Err(why) => {
            skip_or_fail(&format!(
                "cannot create network namespaces ({why}); nothing recorded for this case"
            ));
            return;
        }
    };
    let [a, b] = nodes.ns.clone();
    let port = free_low_port();
    let job = |rank: u32| -> Vec<(&str, String)> {
        vec![
            ("MASTER_ADDR", "node-a".into()),
            ("MASTER_PORT", port.to_string()),
            ("RANK", rank.to_string()),
            ("LOCAL_RANK", "0".into()),
            ("NODE_RANK", rank.to_string()),
            ("WORLD_SIZE", "2".into()),
            ("TORCHELASTIC_RUN_ID", "job-88".into()),
        ]
    };
    let rank0 = start_in(&a, &job(0), "rank", port);
    // No name service in the namespaces: rank 1 waits instead of connecting to "node-a".
    let rank1 = start_in(&b, &job(1), "idle", port);
    let dir = tempfile::tempdir().unwrap();
    let (fa, fb) = (dir.path().join("a.yaml"), dir.path().join("b.yaml"));
    let shell = vec![
        ("MASTER_ADDR", "node-a".to_string()),
        ("MASTER_PORT", port.to_string()),
    ];
    report_in_with(&a, "node-a", &fa, &shell, "--anonymize");
    report_in_with(&b, "node-b", &fb, &shell, "--anonymize");
    let text = std::fs::read_to_string(&fa).unwrap() + &std::fs::read_to_string(&fb).unwrap();
    assert!(
        !text.contains("node-a") && !text.contains("node-b"),
        "host names stay hidden"
    );

    let (doc, code) = merge_json(&[&fa, &fb], &[]);
    assert_eq!(code, 0, "a healthy job has no findings: {doc:#}");
    assert!(doc["findings"].as_array().unwrap().is_empty(), "{doc:#}");
    let master = doc["rendezvous"]["master_node"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(master.starts_with("host-"), "{doc:#}");
    assert_eq!(
        doc["rendezvous"]["master_addr"], master,
        "MASTER_ADDR got the same pseudonym"
    );
    assert_eq!(
        doc["rendezvous"]["master_port_holders"][0]["pid"],
        rank0.pid("me")
    );
    assert_eq!(doc["rendezvous"]["ranks_visible"], 2);
    drop((rank0, rank1));
}

#[test]
fn merge_of_recorded_reports() {
    merge_fixtures();
}

fn expect_bad(file: &Path, needle: &str) {
    let out = run(&["merge", file.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(out.stdout.is_empty());
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains(needle), "{needle} in {err}");
    assert!(err.contains("\nhint: "), "{err}");
}

#[test]
fn bad_input_is_exit_2_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let full = std::fs::read_to_string(fixtures().join("report-node-a.yaml")).unwrap();
    let w = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    // Cut at several points: never accepted.
    for frac in [0.1, 0.5, 0.9, 0.999] {
        let mut cut = (full.len() as f64 * frac) as usize;
        while !full.is_char_boundary(cut) {
            cut -= 1;
        }
        let p = w("truncated.yaml", &full[..cut]);
        let out = run(&["merge", p.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "cut at {frac}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("hint: "), "{err}");
    }
    expect_bad(&w("trunc.yaml", &full[..full.len() / 2]), "truncated");
    expect_bad(
        &w(
            "v99.yaml",
            &full.replacen("schema_version: 1", "schema_version: 99", 1),
        ),
        "schema_version 99 is not supported",
    );
    expect_bad(
        &w("other.yaml", "name: my-config\nitems:\n  - 1\n  - 2\n"),
        "not a doctor report",
    );
    // A doctor snapshot is YAML with a schema_version but not a report.
    let snap = dir.path().join("snap.yaml");
    let out = run(&["snapshot", "-o", snap.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    expect_bad(&snap, "not a doctor report");
    expect_bad(&w("empty.yaml", ""), "empty");
    expect_bad(
        &w("binary.yaml", "\u{0}\u{1}\u{2}garbage: ["),
        "not valid YAML",
    );
    expect_bad(&dir.path().join("missing.yaml"), "cannot read");
    // No file at all is a usage error too.
    let out = run(&["merge"]);
    assert_eq!(out.status.code(), Some(2));
}

/// `doctor merge DIR` (the srun pattern: one report per node written into a shared directory)
/// merges exactly what naming the report files does; other documents there are skipped with a
/// note, a broken report stops it, a directory without reports is exit 2.
#[test]
fn merge_of_a_directory_equals_merge_of_its_reports() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (
        fixtures().join("report-node-a.yaml"),
        fixtures().join("report-node-b.yaml"),
    );
    let (ca, cb) = (
        dir.path().join("report-node-a.yaml"),
        dir.path().join("report-node-b.json"),
    );
    std::fs::copy(&a, &ca).unwrap();
    // The same report as JSON: a directory takes both formats.
    let doc_b: serde_json::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&b).unwrap()).unwrap();
    std::fs::write(&cb, serde_json::to_string(&doc_b).unwrap()).unwrap();
    // What else a shared directory holds: a snapshot, another program's YAML, an earlier merge,
    // a half-written temporary of an atomic write, a log.
    let snap = dir.path().join("snap.yaml");
    assert_eq!(
        run(&["snapshot", "-o", snap.to_str().unwrap()])
            .status
            .code(),
        Some(0)
    );
    std::fs::write(dir.path().join("values.yml"), "replicas: 2\n").unwrap();
    std::fs::write(dir.path().join(".doctor-x1.yaml"), "schema_version: 1\nki").unwrap();
    std::fs::write(dir.path().join("slurm-1.out"), "log\n").unwrap();
    let (by_files, code_files) = merge_json(&[&a, &b], &[]);
    let merged = run(&["merge", "--format", "json", dir.path().to_str().unwrap()]);
    std::fs::write(dir.path().join("merged.json"), &merged.stdout).unwrap();
    let (by_dir, code_dir) = merge_json(&[dir.path()], &[]);
    assert_eq!(code_dir, code_files);
    assert_eq!(by_dir["findings"], by_files["findings"]);
    assert_eq!(by_dir["rendezvous"], by_files["rendezvous"]);
    let names = |d: &serde_json::Value| -> Vec<String> {
        d["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&by_dir), names(&by_files));
    let out = run(&["merge", "--format", "json", dir.path().to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    for skipped in ["snap.yaml", "values.yml", "merged.json"] {
        assert!(
            err.contains(&format!("skipped {}", dir.path().join(skipped).display())),
            "{err}"
        );
    }
    assert!(
        !err.contains(".doctor-x1") && !err.contains("slurm-1.out"),
        "{err}"
    );

    // A directory and a file of it named again (node-b: its JSON copy in the directory is the
    // same report as the YAML): the same report twice is bad input, not a third node (counted
    // twice, its ranks were duplicate ranks across nodes); the_same_report_twice_is_bad_input.
    for again in [&a, &b] {
        let out = run(&[
            "merge",
            dir.path().to_str().unwrap(),
            again.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
    }

    // A truncated report in the directory is an error, never skipped.
    let full = std::fs::read_to_string(&a).unwrap();
    std::fs::write(
        dir.path().join("report-node-c.yaml"),
        &full[..full.len() / 2],
    )
    .unwrap();
    let out = run(&["merge", dir.path().to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("report-node-c.yaml") && err.contains("\nhint: "),
        "{err}"
    );

    // No report at all.
    let empty = tempfile::tempdir().unwrap();
    std::fs::write(empty.path().join("values.yml"), "replicas: 2\n").unwrap();
    let out = run(&["merge", empty.path().to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("holds no doctor report") && err.contains("\nhint: "),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

/// Reports recorded from the namespace test bed (scripts/testbed/cluster.sh OUT leftover): a
/// leftover rank 0 of an earlier run holds the master port on node-a, node-b's agent waits on it.
/// The verdict is the same with and without SLURM (as under Kubernetes: the reports taken with
/// `kubectl exec` carry no SLURM_JOB_ID): the leftover is told apart by its run id.
#[test]
fn leftover_verdict_without_slurm() {
    let dir = fixtures().join("testbed-leftover");
    let plain = tempfile::tempdir().unwrap();
    for n in ["a", "b"] {
        let text = std::fs::read_to_string(dir.join(format!("report-node-{n}.yaml"))).unwrap();
        let kept: String = text
            .lines()
            .filter(|l| !l.to_ascii_lowercase().contains("slurm"))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(plain.path().join(format!("report-node-{n}.yaml")), kept).unwrap();
    }
    for d in [dir.as_path(), plain.path()] {
        let (doc, code) = merge_json(&[d], &[]);
        assert_eq!(code, 1);
        let m003: Vec<_> = doc["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["code"] == "M003")
            .collect();
        assert_eq!(m003.len(), 1, "{doc:#}");
        assert_eq!(m003[0]["nodes"], serde_json::json!(["node-a", "node-b"]));
        let msg = m003[0]["message"].as_str().unwrap();
        assert!(
            msg.contains("node-b (agent pid") && msg.contains("job-old"),
            "{msg}"
        );
        assert_eq!(doc["rendezvous"]["ranks_visible"], 0, "{doc:#}");
        assert!(!codes(&doc).contains(&"M006".to_string()), "{doc:#}");
    }
}

/// The same report twice (one file named twice, a copy beside it, both in one directory) is bad
/// input, not two nodes: counted twice, its ranks were "duplicate ranks across nodes" (M004).
#[test]
fn the_same_report_twice_is_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("report-a.json");
    let out = doctor()
        .args(["report", "-q", "-o"])
        .arg(&a)
        .output()
        .unwrap();
    assert!(out.status.code().is_some_and(|c| c <= 1), "{out:?}");
    let b = dir.path().join("report-b.json");
    std::fs::copy(&a, &b).unwrap();
    let cases: [Vec<&Path>; 3] = [vec![&a, &a], vec![&a, &b], vec![dir.path()]];
    for files in cases {
        let out = doctor().arg("merge").args(&files).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{files:?}: {err}");
        assert!(err.starts_with("error: "), "{files:?}: {err}");
        assert!(
            err.contains("the same report as") || err.contains("is named twice"),
            "{files:?}: {err}"
        );
        assert!(err.contains("\nhint: "), "{files:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// A job restarted on one node (same host, same port, the second run started after the first
/// died) and reported before and after: two reports of one node, not two nodes. Its ranks show in
/// both reports with no run id, with another run id, or with the same one (torchrun restarted
/// with the same --rdzv-id): no M004 (duplicate ranks across nodes), no M001 (a loopback
/// MASTER_ADDR with ranks on several nodes); M009 says the reports come from one node, and the
/// job's ranks are counted once. The same ranks on another node are M004 still (the control).
#[test]
fn a_job_restarted_on_one_node_is_no_duplicate_across_nodes() {
    let have_ip = Command::new("ip").arg("-V").output().is_ok();
    let have_unshare = Command::new("unshare").arg("--version").output().is_ok();
    let nodes = if !have_ip || !have_unshare {
        Err("`ip` (iproute2) or `unshare` (util-linux) is not installed".to_string())
    } else {
        Nodes::create('r')
    };
    let nodes = match nodes {
        Ok(n) => n,
        Err(why) => {
            skip_or_fail(&format!(
                "restarted job: cannot create network namespaces ({why})"
            ));
            return;
        }
    };
    let [a, b] = nodes.ns.clone();
    let port = free_low_port();
    let job = |rank: u32, run: Option<&str>| -> Vec<(&str, String)> {
        let mut v = vec![
            ("MASTER_ADDR", "127.0.0.1".to_string()),
            ("MASTER_PORT", port.to_string()),
            ("RANK", rank.to_string()),
            ("LOCAL_RANK", rank.to_string()),
            ("WORLD_SIZE", "2".to_string()),
        ];
        if let Some(r) = run {
            v.push(("TORCHELASTIC_RUN_ID", r.to_string()));
        }
        v
    };
    let dir = tempfile::tempdir().unwrap();
    // One run of the job on `ns`, reported while it runs, then killed (its group): the next run
    // binds the same port again.
    let run_on = |ns: &str, host: &str, run: Option<&str>, file: &Path| {
        let r0 = start_in(ns, &job(0, run), "rank", port);
        let r1 = start_in(ns, &job(1, run), "rank", port);
        report_in(ns, host, file, &[]);
        drop((r1, r0));
    };
    let runs = [
        (None, None),
        (Some("run-1"), Some("run-2")),
        (Some("run-1"), Some("run-1")),
    ];
    let mut first = None;
    for (i, (before, after)) in runs.into_iter().enumerate() {
        let fa = dir.path().join(format!("before-{i}.json"));
        let fb = dir.path().join(format!("after-{i}.json"));
        run_on(&a, "node-a", before, &fa);
        run_on(&a, "node-a", after, &fb);
        let (doc, code) = merge_json(&[&fa, &fb], &[]);
        let got = codes(&doc);
        let case = format!("runs {before:?} then {after:?}");
        assert!(
            !got.iter().any(|c| c == "M004" || c == "M001"),
            "{case}: {got:?}: {doc:#}"
        );
        assert!(got.iter().any(|c| c == "M009"), "{case}: {got:?}");
        assert_eq!(code, 1, "{case}: M009 is a warning");
        assert_eq!(
            doc["rendezvous"]["ranks_visible"], 2,
            "{case}: each rank once: {doc:#}"
        );
        first.get_or_insert(fa);
    }
    // The control: the same ranks on another node are duplicates across nodes.
    let fc = dir.path().join("other-node.json");
    run_on(&b, "node-b", None, &fc);
    let (doc, _) = merge_json(&[first.as_deref().unwrap(), &fc], &[]);
    let m004: Vec<&serde_json::Value> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"] == "M004")
        .collect();
    assert_eq!(m004.len(), 2, "RANK 0 and RANK 1 on two nodes: {doc:#}");
    assert!(
        m004[0]["message"]
            .as_str()
            .unwrap()
            .ends_with("on 2 nodes: node-a, node-b"),
        "{:#}",
        m004[0]
    );
}
