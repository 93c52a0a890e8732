//! Snapshot tests (insta) of what a person sees, on real processes, with the volatile parts
//! (pids, ports, ages, paths, fds) redacted.

mod common;

use common::*;

fn redact(text: &str, port: u16, pids: &[(i32, &str)]) -> String {
    let mut s = text.replace(&port.to_string(), "[PORT]");
    for (pid, name) in pids {
        s = s.replace(&pid.to_string(), &format!("[{name}]"));
    }
    s = s.replace(env!("CARGO_MANIFEST_DIR"), "[REPO]");
    let re = regex::Regex::new(r"\b\d+(s|m)\b").unwrap();
    s = re.replace_all(&s, "[AGE]").to_string();
    let re = regex::Regex::new(r"(tracker_fd=|pipe_handle=|main\()\d+").unwrap();
    s = re.replace_all(&s, "${1}N").to_string();
    let re = regex::Regex::new(r"/\S*/python3(\.\d+)?").unwrap();
    s = re.replace_all(&s, "[PYTHON]").to_string();
    let re = regex::Regex::new(r"\[PYTHON\]\s+").unwrap();
    s = re.replace_all(&s, "[PYTHON] ").to_string();
    // Column widths depend on the redacted values' original widths.
    let re = regex::Regex::new(r" {2,}").unwrap();
    re.replace_all(&s, "  ").to_string()
}

#[test]
fn tree_and_findings_of_a_duplicate_init() {
    let port = free_low_port();
    let s = Situation::start("d001", port);
    let (rank, child) = (s.pid("rank"), s.pid("child"));
    let out = run(&["tree", "--port", &port.to_string()]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    // The resource tracker's pid is not known to the test; find it in the output.
    let tracker: i32 = text
        .lines()
        .find(|l| l.contains("resource-tracker"))
        .and_then(|l| {
            l.trim_start_matches(['├', '└', '─', ' ', '│'])
                .split_whitespace()
                .next()
        })
        .and_then(|p| p.parse().ok())
        .expect("resource tracker line");
    insta::assert_snapshot!(redact(
        &text,
        port,
        &[(rank, "RANK0"), (child, "CHILD"), (tracker, "TRACKER")]
    ));
}

#[test]
fn ports_table_of_an_orphaned_rank() {
    let port = free_low_port();
    let s = Situation::start("d003", port);
    let out = run(&["ports", "--port", &port.to_string()]);
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: String = text
        .lines()
        .filter(|l| {
            l.starts_with(" LOCAL")
                || l.contains(&port.to_string()) && !l.contains("error[") && !l.contains("fix:")
        })
        .filter(|l| l.starts_with(" LOCAL") || l.contains(&s.pid("orphan").to_string()))
        .map(|l| format!("{l}\n"))
        .collect();
    let findings: String = text
        .lines()
        .filter(|l| l.contains("[D003]") || l.trim_start().starts_with("= fix: these"))
        .map(|l| format!("{l}\n"))
        .collect();
    let pgid = std::fs::read_to_string(format!("/proc/{}/stat", s.pid("orphan"))).unwrap();
    let pgid: i32 = pgid
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    // The USER column names whoever runs the tests.
    let user = std::process::Command::new("id")
        .arg("-un")
        .output()
        .unwrap();
    let user = String::from_utf8_lossy(&user.stdout).trim().to_string();
    let table = redact(
        &(rows + &findings),
        port,
        &[(s.pid("orphan"), "ORPHAN"), (pgid, "PGID")],
    )
    .replace(&format!("  {user}  "), "  [USER]  ");
    // The free port a fix names is whichever a bind proved free just now.
    let table = free_port_redacted(&table);
    insta::assert_snapshot!(table);
}

/// `MASTER_PORT=N` and `--master-port N` with N as `[FREE]`.
fn free_port_redacted(text: &str) -> String {
    let mut out = text.to_string();
    for key in ["MASTER_PORT=", "--master-port "] {
        let mut s = String::new();
        let mut rest = out.as_str();
        while let Some(at) = rest.find(key) {
            let after = &rest[at + key.len()..];
            let digits = after.chars().take_while(char::is_ascii_digit).count();
            s.push_str(&rest[..at + key.len()]);
            s.push_str(if digits > 0 { "[FREE]" } else { "" });
            rest = &after[digits..];
        }
        s.push_str(rest);
        out = s;
    }
    out
}
