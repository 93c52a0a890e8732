//! Every operating-system access: /proc, sockets, host facts, process supervision, seccomp-notify
//! tracing, Python discovery. Nothing above this layer opens a file under /proc (`tests/layout.rs`
//! keeps the OS crates here).

pub mod bindable;
pub mod blocked;
pub mod case;
pub mod command;
pub mod freeport;
pub mod host;
pub mod inplace;
pub mod observe;
pub mod output;
pub mod proc;
pub mod pyenv;
pub mod python;
pub mod sockets;
pub mod source;
pub mod supervise;
pub mod syscalls;
pub mod trace;

/// The tests' waits on process state (tests/common/procs.rs), shared with the integration tests.
#[cfg(test)]
#[path = "../../tests/common/procs.rs"]
pub(crate) mod test_procs;
