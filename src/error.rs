//! Errors a person caused: printed as `error:` plus a `hint:` line, exit code 2.

use std::fmt;

/// An error a person caused (bad argument, bad file): printed as `error:` plus an optional `hint:`,
/// exit code 2. Any other error reaching `main` is printed the same way.
#[derive(Debug)]
pub struct UserError {
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for UserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for UserError {}

/// Build an `anyhow::Error` carrying a hint line.
pub fn user_error(message: impl Into<String>, hint: impl Into<String>) -> anyhow::Error {
    let hint = hint.into();
    anyhow::Error::new(UserError {
        message: message.into(),
        hint: (!hint.is_empty()).then_some(hint),
    })
}
