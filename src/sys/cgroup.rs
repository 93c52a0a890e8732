//! Who owns a process: its user name and its control group (`/proc/PID/cgroup`), which tells a
//! systemd service or a container apart from a program someone started by hand.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use crate::model::snapshot::Process;
use crate::sys::proc::ReadText;

/// Fill the owner facts doctor's findings cite: user and cgroup for processes that hold sockets,
/// and what a rank is blocked in (see [`crate::sys::blocked`]) for processes with a rendezvous
/// identity. Cheap reads through `read` (the process's own `/proc/PID` files); nothing is fatal.
pub fn annotate(p: &mut Process, read: &mut ReadText<'_>) {
    if !p.socket_inodes.is_empty() {
        p.user = user_name(p.uid);
        p.cgroup = read(c"cgroup");
    }
    if !p.env.is_empty() && !p.is_zombie() {
        crate::sys::blocked::annotate_with(p, read);
    }
}

/// The name of `uid` from the user database, cached (one lookup per uid per run).
pub fn user_name(uid: u32) -> Option<String> {
    static CACHE: OnceLock<Mutex<HashMap<u32, Option<String>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(hit) = cache.lock().ok().and_then(|c| c.get(&uid).cloned()) {
        return hit;
    }
    let name = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name);
    if let Ok(mut c) = cache.lock() {
        c.insert(uid, name.clone());
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_cgroup_and_user() {
        let me = std::process::id() as i32;
        assert!(crate::sys::proc::text(me, c"cgroup").is_some());
        let uid = nix::unistd::getuid().as_raw();
        if uid == 0 {
            assert_eq!(user_name(0).as_deref(), Some("root"));
        }
    }
}
