//! The crate's one error type, and the every-problem-at-once config error.

use std::fmt;
use std::path::PathBuf;

/// One problem in a criteria or rollback file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// Every problem found in a criteria or rollback file, reported at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors {
    /// The file.
    pub origin: String,
    /// The problems, by line.
    pub issues: Vec<ConfigIssue>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.issues.len();
        write!(
            f,
            "{}: invalid criteria ({n} problem{})",
            self.origin,
            if n == 1 { "" } else { "s" }
        )?;
        for i in &self.issues {
            match i.line {
                Some(line) => write!(f, "\n  {}:{line}: {}", self.origin, i.message)?,
                None => write!(f, "\n  {}: {}", self.origin, i.message)?,
            }
        }
        Ok(())
    }
}

/// Everything that can go wrong producing a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file could not be read.
    #[error("cannot read {what} {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What it is ("criteria file", ...).
        what: &'static str,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A criteria or rollback file is invalid (every problem listed).
    #[error(transparent)]
    Config(#[from] ConfigErrors),
    /// A run directory could not be read.
    #[error(transparent)]
    Record(#[from] shadowgate_record::RecordError),
    /// The requested phase is not in the criteria file.
    #[error("{origin}: no phase `{phase}`; it defines {known}")]
    UnknownPhase {
        /// The criteria file.
        origin: String,
        /// What was asked for.
        phase: String,
        /// The phases it has, comma-separated.
        known: String,
    },
    /// An output could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A renderer failed (template, chart or XML serialisation).
    #[error("rendering {format}: {reason}")]
    Render {
        /// The format (`html`, `junit`, ...).
        format: &'static str,
        /// What went wrong.
        reason: String,
    },
}
