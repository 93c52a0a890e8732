//! The one way a test says it needs something this machine may lack (root, a program, torch, a
//! kernel feature): under CI (`CI=true`) the test fails, elsewhere it says `SKIP:` on stderr and
//! returns. Never a silent return. Standard library only: the unit tests in `src/` include this
//! file too (`#[path]`).

#![allow(dead_code)]

use std::path::PathBuf;

/// Whether the tests run under CI (`CI=true`, as GitHub Actions, GitLab and most CI systems set
/// it): there a test may not skip for want of something.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// A test (or one of its checks) that cannot run here for `reason`: it fails under CI, and
/// elsewhere says SKIP on stderr so that the caller returns (or leaves out that one check).
pub fn skip_or_fail(reason: &str) {
    if under_ci() {
        panic!("CI=true: this test may not be skipped: {reason}");
    }
    eprintln!("SKIP: {reason}");
}

/// `found`, or None after [`skip_or_fail`] with `reason`:
/// `let Some(py) = need(torch_python(), "torch in the managed venv") else { return };`
pub fn need<T>(found: Option<T>, reason: &str) -> Option<T> {
    if found.is_none() {
        skip_or_fail(reason);
    }
    found
}

/// Whether this test runs as root (CI does); if not, [`skip_or_fail`] with `why`.
pub fn need_root(why: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { geteuid() } == 0;
    if !root {
        skip_or_fail(&format!("needs root: {why}"));
    }
    root
}

unsafe extern "C" {
    fn geteuid() -> u32;
}

/// Program `name` on PATH (or in /usr/sbin, /sbin), or None after [`skip_or_fail`].
pub fn need_tool(name: &str) -> Option<PathBuf> {
    let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    need(
        found,
        &format!("the program `{name}` is needed (scripts/test.sh installs it)"),
    )
}
