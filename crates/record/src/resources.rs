//! `resources.csv`: CPU and memory samples of the targets.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::linefile::{LineFile, lock};
use crate::{RESOURCES_FILE, RecordError, timefmt};

/// Column names of `resources.csv`, in order.
pub const RESOURCES_COLUMNS: [&str; 4] = ["unix_ms", "target", "cpu_percent", "rss_bytes"];

/// One resource sample of one target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceSample {
    /// Sample time, milliseconds since the Unix epoch.
    pub unix_ms: u64,
    /// Target name as in the manifest.
    pub target: String,
    /// CPU use since the previous sample, in percent of one CPU (can exceed 100); empty when
    /// unknown (e.g. the first sample of a `/proc` source).
    pub cpu_percent: Option<f64>,
    /// Resident set size in bytes; empty when the source does not expose it.
    pub rss_bytes: Option<u64>,
}

impl ResourceSample {
    /// A sample taken at `at`.
    pub fn new(
        at: SystemTime,
        target: impl Into<String>,
        cpu_percent: Option<f64>,
        rss_bytes: Option<u64>,
    ) -> ResourceSample {
        ResourceSample {
            unix_ms: timefmt::unix_millis(at),
            target: target.into(),
            cpu_percent,
            rss_bytes,
        }
    }

    /// The sample time.
    pub fn time(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.unix_ms)
    }
}

/// Appends to `resources.csv`. A cheap `Clone` handle; flushed after every row by default (a
/// sampler writes about one row per target per second) and when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct ResourceWriter {
    file: Arc<Mutex<LineFile>>,
}

impl ResourceWriter {
    /// Creates (truncates) `dir/resources.csv` and writes its header.
    pub fn create(dir: &Path) -> Result<ResourceWriter, RecordError> {
        let mut file = LineFile::create(dir.join(RESOURCES_FILE), Duration::ZERO)?;
        let mut header = RESOURCES_COLUMNS.join(",");
        header.push('\n');
        file.append(header.as_bytes())?;
        Ok(ResourceWriter {
            file: Arc::new(Mutex::new(file)),
        })
    }

    /// Flush at most once per `every` (plus on [`flush`](Self::flush) and drop).
    pub fn set_flush_interval(&self, every: Duration) {
        lock(&self.file).set_flush_every(every);
    }

    /// Appends one sample.
    pub fn write(&self, sample: &ResourceSample) -> Result<(), RecordError> {
        let mut w = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(Vec::with_capacity(64));
        let line = w
            .serialize(sample)
            .map_err(|e| e.to_string())
            .and_then(|()| w.into_inner().map_err(|e| e.to_string()))
            .map_err(|reason| RecordError::Encode {
                path: lock(&self.file).path().to_path_buf(),
                action: "serializing a resource sample",
                reason,
            })?;
        lock(&self.file).append(&line)
    }

    /// Flushes buffered rows to the file.
    pub fn flush(&self) -> Result<(), RecordError> {
        lock(&self.file).flush()
    }
}

/// Reads `resources.csv` rows (see `linefile::read_csv` for the torn-line rule).
pub(crate) fn read(
    path: &Path,
    warnings: &mut Vec<String>,
) -> Result<Vec<ResourceSample>, RecordError> {
    crate::linefile::read_csv(
        path,
        &RESOURCES_COLUMNS,
        |_: &ResourceSample| Ok(()),
        warnings,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_unknown_values() {
        let dir = tempfile::tempdir().unwrap();
        let w = ResourceWriter::create(dir.path()).unwrap();
        let t = UNIX_EPOCH + Duration::from_millis(1_764_408_000_500);
        let a = ResourceSample::new(t, "candidate", Some(37.5), Some(52_428_800));
        let b = ResourceSample::new(t, "primary", None, Some(1));
        let c = ResourceSample::new(t, "weird,name \"x\"", Some(0.0), None);
        for s in [&a, &b, &c] {
            w.write(s).unwrap();
        }
        let text = std::fs::read_to_string(dir.path().join(RESOURCES_FILE)).unwrap();
        assert!(
            text.starts_with("unix_ms,target,cpu_percent,rss_bytes\n"),
            "{text}"
        );
        assert!(text.contains("1764408000500,primary,,1\n"), "{text}");
        let mut warnings = Vec::new();
        let back = read(&dir.path().join(RESOURCES_FILE), &mut warnings).unwrap();
        assert_eq!(back, vec![a.clone(), b, c]);
        assert_eq!(a.time(), t);
        assert!(warnings.is_empty());
    }
}
