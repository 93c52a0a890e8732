//! What a snapshot means: roles, identities and jobs ([`facts`]), then one file per rule
//! ([`rules`]), and the facts read from a command's output ([`traceback`]).

pub mod facts;
pub mod rules;
pub mod traceback;

pub use facts::*;
