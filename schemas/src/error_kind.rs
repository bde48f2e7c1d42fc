//! The classification shared by every domain error.

use serde::{Deserialize, Serialize};

/// What kind of failure a domain error is; the API maps each kind to one
/// HTTP status (noted per variant) and puts the error's `code()` in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The command's input is invalid (422).
    Invalid,
    /// The aggregate does not exist (404).
    NotFound,
    /// The aggregate's state does not allow the command (409).
    Conflict,
    /// The actor may not do this (403).
    Forbidden,
    /// A dependency, such as the payment provider, is down (503).
    Unavailable,
}

impl ErrorKind {
    /// The kind's stable snake_case name, as used in error codes and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorKind::Invalid => "invalid",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::Unavailable => "unavailable",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Implemented by the error of every aggregate, so the command service and
/// the API can treat them alike.
pub trait DomainError: std::error::Error + Send + Sync + 'static {
    /// Stable, machine-readable snake_case code (never changes once published).
    fn code(&self) -> &'static str;
    /// The kind of failure.
    fn kind(&self) -> ErrorKind;
}
