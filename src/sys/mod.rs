//! Every operating-system access: /proc, sockets, host facts, process supervision, ptrace
//! tracing, Python discovery. Nothing above this layer opens a file under /proc.

pub mod case;
pub mod host;
pub mod observe;
pub mod pyenv;
pub mod python;
pub mod supervise;
pub mod trace;
