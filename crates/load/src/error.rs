//! The crate's one error type.

use std::fmt;
use std::path::PathBuf;

/// One problem found in a scenario file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioIssue {
    /// Key path, e.g. `flow[0].step[1].body` (empty for document-level problems).
    pub path: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// Every problem found in a scenario file, reported at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ScenarioErrors {
    /// The file (or `command line` for overrides).
    pub origin: String,
    /// The problems, in document order.
    pub issues: Vec<ScenarioIssue>,
}

impl ScenarioErrors {
    /// True when a problem was reported under `path` (exactly).
    pub fn has(&self, path: &str) -> bool {
        self.issues.iter().any(|i| i.path == path)
    }
}

impl fmt::Display for ScenarioErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.issues.len();
        write!(
            f,
            "{}: invalid load scenario ({n} problem{})",
            self.origin,
            if n == 1 { "" } else { "s" }
        )?;
        for issue in &self.issues {
            if issue.path.is_empty() {
                write!(f, "\n  {}", issue.message)?;
            } else {
                write!(f, "\n  {}: {}", issue.path, issue.message)?;
            }
        }
        Ok(())
    }
}

/// Errors of the load generator.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The scenario file could not be read.
    #[error("cannot read scenario {path}: {source}")]
    ReadScenario {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The scenario is invalid (every problem is listed).
    #[error(transparent)]
    Scenario(#[from] ScenarioErrors),
    /// The target URL cannot be used.
    #[error("bad target URL `{url}`: {reason}")]
    BadTarget { url: String, reason: String },
    /// The target's host name did not resolve.
    #[error("cannot resolve the target {authority}: {reason}")]
    Resolve { authority: String, reason: String },
    /// Nothing accepted a connection at the target before the run started.
    #[error(
        "the target {url} ({addr}) is unreachable: {reason}; start the gateway (or `shadowgate sim`) \
         first, or check --target"
    )]
    Unreachable {
        url: String,
        addr: String,
        reason: String,
    },
    /// A secret the scenario needs is not in the environment.
    #[error(
        "{what}: the environment variable {var} is not set (or is empty); export it, or pass --no-auth"
    )]
    MissingSecret { what: &'static str, var: String },
    /// A shard spec is not `I/N` with `0 <= I < N`.
    #[error("bad shard `{spec}`: expected I/N with 0 <= I < N (e.g. 0/2)")]
    BadShard { spec: String },
    /// The run directory could not be written.
    #[error(transparent)]
    Record(#[from] shadowgate_record::RecordError),
    /// Goose refused the configuration or failed while running.
    #[error("the load test could not run: {0}")]
    Goose(String),
    /// A thread or server the generator needs could not be started.
    #[error("could not start {what}: {source}")]
    Start {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}
