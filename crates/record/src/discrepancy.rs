//! `discrepancies.ndjson`: one difference between primary and candidate per line.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::linefile::{LineFile, lock};
use crate::{DISCREPANCIES_FILE, RecordError, timefmt};

/// What kind of difference was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DiscrepancyKind {
    /// Different status codes.
    Status,
    /// A header differs.
    Header,
    /// A body field present on the primary is missing on the candidate.
    Missing,
    /// A body field present on the candidate is absent on the primary.
    Extra,
    /// A body field has a different JSON type.
    Type,
    /// A body field has a different value.
    Value,
    /// An array has the same elements in a different order.
    Order,
    /// An array or body has a different size.
    Size,
    /// A non-JSON body differs.
    Text,
    /// An SSE event of the primary never came from the candidate.
    SseMissing,
    /// The candidate sent an SSE event the primary did not.
    SseExtra,
    /// Matching SSE events with different content.
    SseDifferent,
    /// The candidate's SSE event came later than allowed.
    SseLate,
    /// A whole request/flow step missing on the candidate.
    MissingOnCandidate,
    /// A whole request/flow step only the candidate produced.
    ExtraOnCandidate,
    /// Order/flow state differs after a step.
    StateMismatch,
    /// Fills (executions) differ.
    FillMismatch,
    /// Sequence numbers differ or have gaps.
    SequenceMismatch,
    /// The candidate did not answer in time, so nothing could be compared.
    Timeout,
    /// An audit-log record of the primary is missing on the candidate.
    AuditMissing,
    /// An audit-log record only the candidate has.
    AuditExtra,
    /// Matching audit-log records differ.
    AuditMismatch,
    /// Not compared (body over the size limit, unsupported content type, ...); `detail` says why.
    NotCompared,
}

impl DiscrepancyKind {
    /// The name used in the file (`sse-missing`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            DiscrepancyKind::Status => "status",
            DiscrepancyKind::Header => "header",
            DiscrepancyKind::Missing => "missing",
            DiscrepancyKind::Extra => "extra",
            DiscrepancyKind::Type => "type",
            DiscrepancyKind::Value => "value",
            DiscrepancyKind::Order => "order",
            DiscrepancyKind::Size => "size",
            DiscrepancyKind::Text => "text",
            DiscrepancyKind::SseMissing => "sse-missing",
            DiscrepancyKind::SseExtra => "sse-extra",
            DiscrepancyKind::SseDifferent => "sse-different",
            DiscrepancyKind::SseLate => "sse-late",
            DiscrepancyKind::MissingOnCandidate => "missing-on-candidate",
            DiscrepancyKind::ExtraOnCandidate => "extra-on-candidate",
            DiscrepancyKind::StateMismatch => "state-mismatch",
            DiscrepancyKind::FillMismatch => "fill-mismatch",
            DiscrepancyKind::SequenceMismatch => "sequence-mismatch",
            DiscrepancyKind::Timeout => "timeout",
            DiscrepancyKind::AuditMissing => "audit-missing",
            DiscrepancyKind::AuditExtra => "audit-extra",
            DiscrepancyKind::AuditMismatch => "audit-mismatch",
            DiscrepancyKind::NotCompared => "not-compared",
        }
    }
}

/// How a difference is judged. Noise and ignored differences are kept, never dropped, and never
/// counted as matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    /// A real difference: the candidate behaves differently.
    Regression,
    /// Expected non-determinism (timestamps, generated ids, counters).
    Noise,
    /// Excluded by a rule.
    Ignored,
}

/// One line of `discrepancies.ndjson`. Secrets must be redacted by the producer before writing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Discrepancy {
    /// When the difference was found (RFC 3339).
    #[serde(with = "timefmt::rfc3339")]
    pub ts: SystemTime,
    /// HTTP method of the request.
    pub method: String,
    /// Route template of the request (e.g. `/api/order/{id}`).
    pub route: String,
    /// Flow (order lifecycle, SSE subscription) the request belongs to.
    #[serde(default)]
    pub flow_id: Option<String>,
    /// What kind of difference.
    pub kind: DiscrepancyKind,
    /// Where: a JSON Pointer into the body (`/data/0/price`), or `/headers/<name>`, `/status`.
    pub path: String,
    /// The primary's value (`null` if absent).
    #[serde(default)]
    pub primary: serde_json::Value,
    /// The candidate's value (`null` if absent).
    #[serde(default)]
    pub candidate: serde_json::Value,
    /// Groups alike differences (same route, kind and normalised path).
    pub signature: String,
    /// Regression, noise or ignored.
    pub class: Class,
    /// Heuristic label for noise (`timestamp`, `uuid`, `counter`, ...).
    #[serde(default)]
    pub label: Option<String>,
    /// Free-text detail (e.g. why something was not compared).
    #[serde(default)]
    pub detail: Option<String>,
}

/// Appends to `discrepancies.ndjson`. A cheap `Clone` handle: clones share one file, so it can be
/// handed to several tasks or threads; each line is written whole under a short lock.
///
/// Flushing: after every line by default (differences are rare next to requests, and this keeps
/// a killed process from losing any); [`DiscrepancyWriter::set_flush_interval`] batches instead.
/// The file is flushed when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct DiscrepancyWriter {
    file: Arc<Mutex<LineFile>>,
}

impl DiscrepancyWriter {
    /// Creates (truncates) `dir/discrepancies.ndjson`.
    pub fn create(dir: &Path) -> Result<DiscrepancyWriter, RecordError> {
        Ok(DiscrepancyWriter {
            file: Arc::new(Mutex::new(LineFile::create(
                dir.join(DISCREPANCIES_FILE),
                Duration::ZERO,
            )?)),
        })
    }

    /// Flush at most once per `every` (plus on [`flush`](Self::flush) and drop) instead of after
    /// every line. A killed process then loses up to `every` worth of lines.
    pub fn set_flush_interval(&self, every: Duration) {
        lock(&self.file).set_flush_every(every);
    }

    /// Appends one discrepancy.
    pub fn write(&self, d: &Discrepancy) -> Result<(), RecordError> {
        // Serialize outside the lock.
        let mut line = serde_json::to_vec(d).map_err(|e| RecordError::Encode {
            path: lock(&self.file).path().to_path_buf(),
            action: "serializing a discrepancy",
            reason: e.to_string(),
        })?;
        line.push(b'\n');
        lock(&self.file).append(&line)
    }

    /// Flushes buffered lines to the file.
    pub fn flush(&self) -> Result<(), RecordError> {
        lock(&self.file).flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    pub(crate) fn sample(i: u64) -> Discrepancy {
        Discrepancy {
            ts: UNIX_EPOCH + Duration::new(1_764_408_000 + i, 123_456_000),
            method: "POST".into(),
            route: "/api/order".into(),
            flow_id: Some(format!("flow-{i}")),
            kind: DiscrepancyKind::SseDifferent,
            path: "/data/0/price".into(),
            primary: serde_json::json!(100.5),
            candidate: serde_json::json!("100.5"),
            signature: "POST /api/order value /data/*/price".into(),
            class: Class::Regression,
            label: None,
            detail: Some("number vs string".into()),
        }
    }

    #[test]
    fn serde_names() {
        let v = serde_json::to_value(sample(0)).unwrap();
        assert_eq!(v["kind"], "sse-different");
        assert_eq!(v["class"], "regression");
        assert_eq!(v["ts"], "2025-11-29T09:20:00.123456Z");
        for k in [
            DiscrepancyKind::MissingOnCandidate,
            DiscrepancyKind::NotCompared,
            DiscrepancyKind::AuditMismatch,
            DiscrepancyKind::Type,
        ] {
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
    }

    #[test]
    fn writer_round_trip_and_optional_fields_default() {
        let dir = tempfile::tempdir().unwrap();
        let w = DiscrepancyWriter::create(dir.path()).unwrap();
        let w2 = w.clone();
        w.write(&sample(1)).unwrap();
        w2.write(&sample(2)).unwrap();
        let mut warnings = Vec::new();
        let back: Vec<Discrepancy> =
            crate::linefile::read_ndjson(&dir.path().join(DISCREPANCIES_FILE), &mut warnings)
                .unwrap();
        assert_eq!(back, vec![sample(1), sample(2)]);
        assert!(warnings.is_empty());

        let minimal = r#"{"ts":"2026-01-01T00:00:00Z","method":"GET","route":"/","kind":"status","path":"/status","signature":"s","class":"noise"}"#;
        let d: Discrepancy = serde_json::from_str(minimal).unwrap();
        assert_eq!(d.flow_id, None);
        assert_eq!(d.primary, serde_json::Value::Null);
    }
}
