//! Errors of this crate. Only starting and stopping can fail: once serving, every upstream
//! problem becomes a counted outcome (and, for the primary, a 502/504 for the client).

use std::net::SocketAddr;

use shadowgate_record::RecordError;

use crate::rules_file::RulesFileError;

/// Invalid settings, every problem listed with the setting (flag name) it concerns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid mirror settings ({} problem(s)):\n{}", .problems.len(), list(.problems))]
pub struct ConfigError {
    /// `(setting, what is wrong)`.
    pub problems: Vec<(String, String)>,
}

fn list(problems: &[(String, String)]) -> String {
    problems
        .iter()
        .map(|(k, m)| format!("  --{k}: {m}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The crate's error type.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// The settings are invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The rules file is invalid.
    #[error(transparent)]
    Rules(#[from] RulesFileError),
    /// The run directory could not be created or written.
    #[error("run directory: {0}")]
    Record(#[from] RecordError),
    /// A listener handed in has no usable local address.
    #[error("the {which} listener has no local address: {source}")]
    Listener {
        /// `proxy` or `admin`.
        which: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The comparison thread could not be started.
    #[error("cannot start the comparison thread: {0}")]
    Thread(#[source] std::io::Error),
    /// The capture file could not be opened (or its writer thread started).
    #[error("cannot capture to {}: {source}", .path.display())]
    Capture {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The comparison thread stopped with an error or panicked; the run directory may be
    /// incomplete.
    #[error("the comparison thread failed: {0}")]
    Analysis(String),
    /// The id map file of the run directory could not be created.
    #[error("cannot create the id map file {}: {source}", .path.display())]
    IdsFile {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Binding an address failed (only the CLI binds).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}
