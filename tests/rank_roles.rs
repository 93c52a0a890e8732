//! Only a Python rank is a rank (issue 20, part 2): a process that only carries a rank's
//! environment and is no Python rank (OpenMPI's `orted` on a GPU box, a shell, `env`, an `srun`
//! step) gives no `D006 duplicate-rank` and is not drawn or listed as a rank. Real processes: a
//! stand-in `orted` (a copy of `sleep` so named) and `bash -c "sleep ...; true"` beside the real
//! ranks, all in one process group killed when the test ends.

mod common;

use std::process::Command;

use common::*;

fn role_in_tree(doc: &serde_json::Value, pid: i32) -> Option<String> {
    fn walk(n: &serde_json::Value, pid: i32) -> Option<String> {
        if n["pid"] == pid {
            return n["role"].as_str().map(String::from);
        }
        n["children"].as_array()?.iter().find_map(|c| walk(c, pid))
    }
    doc["trees"].as_array()?.iter().find_map(|t| walk(t, pid))
}

#[test]
fn a_process_that_only_carries_a_rank_environment_is_no_rank() {
    let port = free_low_port();
    let sit = Situation::start_cmd(
        Command::new(python())
            .arg(helper("run_cells.py"))
            .args(["carriers", &port.to_string()]),
    );
    let p = port.to_string();
    for args in [
        vec!["ports", "--port", &p, "--format", "json"],
        vec!["tree", "--format", "json"],
    ] {
        let (doc, _) = json(&args);
        let d006 = findings(&doc, "D006", port);
        assert!(d006.is_empty(), "{args:?}: a carrier is no rank: {d006:#?}");
        let about: Vec<&serde_json::Value> = doc["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| {
                let pids = pids_of(f);
                pids.contains(&i64::from(sit.pid("orted")))
                    || pids.contains(&i64::from(sit.pid("shell")))
            })
            .collect();
        assert!(
            about.is_empty(),
            "{args:?}: no finding names a carrier: {about:#?}"
        );
    }
    let (tree, _) = json(&["tree", "--port", &p, "--format", "json"]);
    assert_eq!(
        role_in_tree(&tree, sit.pid("rank0")).as_deref(),
        Some("rank"),
        "{tree:#}"
    );
    let (all, _) = json(&["tree", "--format", "json"]);
    for who in ["orted", "shell"] {
        let role = role_in_tree(&all, sit.pid(who));
        assert_ne!(role.as_deref(), Some("rank"), "{who} is no rank: {all:#}");
    }
}
