//! The one error type of this crate.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong writing or reading a run directory.
///
/// Every variant names the file (or directory) involved, and corrupt data names the 1-based
/// line, so the message alone tells a user where to look.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// An I/O operation on a file or directory failed.
    #[error("{}: {action}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done ("creating", "reading", "writing", ...).
        action: &'static str,
        /// The underlying error.
        source: io::Error,
    },

    /// `Run::open` was pointed at a directory without `manifest.json`.
    #[error(
        "{}: no manifest.json, so this is not a shadowgate run directory; \
         it is written by the command that records a run (shadowgate load, mirror, sample, \
         validate, replay or demo, into --out DIR), so pass a directory one of them wrote",
        dir.display()
    )]
    MissingManifest {
        /// The directory that was opened.
        dir: PathBuf,
    },

    /// `RunWriter::create` was pointed at a directory that already holds a run.
    #[error(
        "{}: already holds a run (manifest.json exists); choose a new --out directory or \
         remove the old run first",
        dir.display()
    )]
    RunExists {
        /// The directory.
        dir: PathBuf,
    },

    /// A line of a file could not be parsed.
    #[error("{} line {line}: {reason}", file.display())]
    Corrupt {
        /// The file.
        file: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with the line, and the likely cause.
        reason: String,
    },

    /// A series name cannot be turned into an interval-log tag.
    #[error("invalid latency series {what} {value:?}: {reason}")]
    InvalidSeries {
        /// Which part of the series ("target", "method", "measure", "tag").
        what: &'static str,
        /// The offending value.
        value: String,
        /// Why it is rejected.
        reason: &'static str,
    },

    /// Data could not be encoded, or a histogram could not be created or added to another.
    #[error("{}: {action}: {reason}", path.display())]
    Encode {
        /// The file being written or read.
        path: PathBuf,
        /// What was being done ("serializing a histogram", ...).
        action: &'static str,
        /// The underlying error, as text.
        reason: String,
    },

    /// `merge` was given no runs.
    #[error("nothing to merge: no run directories were given")]
    NothingToMerge,

    /// The background interval writer thread could not be started or stopped cleanly.
    #[error("latency interval writer thread: {0}")]
    WriterThread(String),
}

impl RecordError {
    pub(crate) fn io(path: impl Into<PathBuf>, action: &'static str, source: io::Error) -> Self {
        RecordError::Io {
            path: path.into(),
            action,
            source,
        }
    }

    pub(crate) fn corrupt(
        file: impl Into<PathBuf>,
        line: usize,
        reason: impl Into<String>,
    ) -> Self {
        RecordError::Corrupt {
            file: file.into(),
            line,
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_names_file_and_line() {
        let e = RecordError::corrupt(
            "reports/x/counts.csv",
            7,
            "expected 15 columns, found 3 — the file was edited or written by another tool",
        );
        assert_eq!(
            e.to_string(),
            "reports/x/counts.csv line 7: expected 15 columns, found 3 — the file was edited or \
             written by another tool"
        );
    }

    #[test]
    fn missing_manifest_says_which_command_writes_it() {
        let e = RecordError::MissingManifest {
            dir: PathBuf::from("reports/nope"),
        };
        let s = e.to_string();
        assert!(s.starts_with("reports/nope: no manifest.json"), "{s}");
        assert!(s.contains("shadowgate load"), "{s}");
    }
}
