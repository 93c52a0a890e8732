//! The system call a process is in, from `/proc/PID/syscall` text: a number, by name where
//! known for this architecture (the calls a blocked rank sits in).

/// The system call in `/proc/PID/syscall` text, by name where known (`futex`, `accept4`, ...),
/// `running`, or `syscall N`. (`wchan` is `None` when unreadable, empty or `0`: running, or
/// hidden by the kernel.)
pub fn syscall_text(text: &str) -> Option<String> {
    let first = text.split_whitespace().next()?;
    if first == "running" {
        return Some("running".into());
    }
    let n: i64 = first.parse().ok()?;
    if n < 0 {
        return Some("not in a system call".into());
    }
    Some(
        syscall_name(n)
            .map(str::to_string)
            .unwrap_or_else(|| format!("syscall {n}")),
    )
}

#[cfg(target_arch = "x86_64")]
const SYSCALLS: &[(i64, &str)] = &[
    (0, "read"),
    (1, "write"),
    (7, "poll"),
    (23, "select"),
    (34, "pause"),
    (35, "nanosleep"),
    (42, "connect"),
    (43, "accept"),
    (45, "recvfrom"),
    (47, "recvmsg"),
    (61, "wait4"),
    (130, "rt_sigsuspend"),
    (202, "futex"),
    (230, "clock_nanosleep"),
    (232, "epoll_wait"),
    (247, "waitid"),
    (270, "pselect6"),
    (271, "ppoll"),
    (281, "epoll_pwait"),
    (288, "accept4"),
    (441, "epoll_pwait2"),
];

#[cfg(target_arch = "aarch64")]
const SYSCALLS: &[(i64, &str)] = &[
    (22, "epoll_pwait"),
    (63, "read"),
    (64, "write"),
    (72, "pselect6"),
    (73, "ppoll"),
    (95, "waitid"),
    (98, "futex"),
    (101, "nanosleep"),
    (115, "clock_nanosleep"),
    (133, "rt_sigsuspend"),
    (202, "accept"),
    (203, "connect"),
    (207, "recvfrom"),
    (212, "recvmsg"),
    (242, "accept4"),
    (260, "wait4"),
    (441, "epoll_pwait2"),
];

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const SYSCALLS: &[(i64, &str)] = &[];

fn syscall_name(n: i64) -> Option<&'static str> {
    SYSCALLS.iter().find(|(k, _)| *k == n).map(|(_, v)| *v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_numbers_and_states() {
        assert_eq!(syscall_text("-1 0x0"), Some("not in a system call".into()));
        assert_eq!(syscall_text("running"), Some("running".into()));
        assert_eq!(syscall_text("99999 0x0"), Some("syscall 99999".into()));
        assert_eq!(syscall_text(""), None);
        assert_eq!(syscall_text("x"), None);
        #[cfg(target_arch = "x86_64")]
        assert_eq!(syscall_text("202 0x1 0x2"), Some("futex".into()));
    }
}
