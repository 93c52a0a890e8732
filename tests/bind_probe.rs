//! The bind probe (`sys::bindable`, D005/D007) against the real owner of the port: torch's
//! `TCPStore`, started while the probe's socket is bound (its window held open for the whole
//! start, far longer than the microseconds a probe takes), binds, listens and serves, with the
//! libuv backend (torch's default) and the classic one. Real torch from the managed venv.

mod common;

use std::process::Command;

use common::*;

const STORE: &str = r#"
import sys
from datetime import timedelta
import torch.distributed as dist
port, libuv = int(sys.argv[1]), sys.argv[2] == "1"
server = dist.TCPStore("127.0.0.1", port, 1, True, timedelta(seconds=20), wait_for_workers=False, use_libuv=libuv)
client = dist.TCPStore("127.0.0.1", port, 1, False, timedelta(seconds=20), use_libuv=libuv)
client.set("k", "v")
assert server.get("k") == b"v"
print("SERVED", port, flush=True)
"#;

#[test]
fn a_torch_store_started_inside_the_probe_window_binds_and_serves() {
    let Some(python) = torch_python() else { return };
    for libuv in ["1", "0"] {
        let port = free_low_port();
        let held = ddp_doctor::sys::bindable::bound(port).expect("the probe binds a free port");
        let out = Command::new("timeout")
            .args(["-s", "KILL", "120"])
            .arg(&python)
            .args(["-c", STORE, &port.to_string(), libuv])
            .output()
            .expect("python runs");
        drop(held);
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && text.contains(&format!("SERVED {port}")),
            "use_libuv={libuv}: the store failed while the probe was bound:\n{text}"
        );
    }
}
