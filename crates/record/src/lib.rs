//! The shadowgate run directory: writers for producers (mirror proxy, load generator, resource
//! sampler) and readers for the report.
//!
//! # Files
//!
//! | file | type | written by |
//! |---|---|---|
//! | `manifest.json` | [`Manifest`]: version, kind, start/end (RFC 3339), targets, scenario, phase, host, `extra` | every producer, atomically (temp file + rename) |
//! | `latency.hlog` | HdrHistogram interval log, ns, 3 digits, V2 + DEFLATE payloads; one tag per [`SeriesKey`] | [`LatencyRecorder`] |
//! | `counts.csv` | [`CountsRow`]: per interval and target/route, requests by outcome | [`LatencyRecorder`] |
//! | `discrepancies.ndjson` | [`Discrepancy`], one JSON object a line | [`DiscrepancyWriter`] |
//! | `resources.csv` | [`ResourceSample`]: `unix_ms,target,cpu_percent,rss_bytes` | [`ResourceWriter`] |
//!
//! [`RunWriter`] ties them together for a producer; [`Run::open`] reads a directory and [`merge`]
//! combines several exactly (histograms add, counts add).
//!
//! # Latency tags
//!
//! A series is tagged `<target>:<METHOD>:<route>[;<measure>]`, e.g. `candidate:POST:/api/order`
//! or `candidate:POST:/api/order;service`. The design first said `<target>:<METHOD> <route>`, but
//! interval-log tags cannot contain ' ', ',', CR or LF: the Rust writer refuses them and Java's
//! reader splits lines on them. So the separator is ':' and the route is percent-encoded (space,
//! ',', ';', '%' and control characters), which lets any route round-trip. No suffix is the
//! response time the phase gate uses (for the load generator: from the *intended* send time,
//! i.e. corrected for coordinated omission); `;service` is from the actual send time; other
//! suffixes (`;lag` for SSE event lag, ...) are free-form.
//!
//! Payloads are V2 + DEFLATE ("HISTFAAA..."), because Java's `HistogramLogProcessor` and the
//! Python `hdrhistogram` reader refuse plain V2. Every histogram covers 1 ns to 1 h at 3
//! significant digits; larger samples are *clamped* to 1 h and counted
//! ([`LatencyRecorder::clamped_samples`]) rather than auto-resizing, so every interval in the
//! file has the same range and adds cheaply in any reader.
//!
//! # Flush model
//!
//! Each worker thread or task records into its own [`LocalRecorder`] (`recorder.local()`):
//! histograms and counts it owns, no lock, no allocation per sample once a series has been seen.
//! A shard moves its data into the shared collector under one short mutex at most once per
//! interval (default 1 s), on `flush()`, and on drop. The interval is written by the producer's
//! own timer (`write_interval()`) or by a plain thread (`start_interval_writer()`; no tokio
//! dependency), which swaps the collector's tables out, appends one `latency.hlog` line per
//! series with samples and one `counts.csv` row per route with outcomes, and flushes both files.
//! `finish()` (or dropping every handle and shard) writes the last interval; [`RunWriter::finish`]
//! also writes `ended_at`. A sample can land in the interval after the one it happened in;
//! totals are exact.
//!
//! `discrepancies.ndjson` and `resources.csv` are flushed after every line by default (or at
//! most once per a chosen period) and on drop, so a killed process loses at most its last
//! partial line.
//!
//! # Torn lines
//!
//! Readers skip a *torn last line* — one without a line end that does not parse — with a
//! `tracing` warning and a message in [`Run::warnings`]. In CSV files an unterminated last record
//! (or one left inside an open quote) is skipped even if it parses, because a row cut inside its
//! last number still parses to a wrong value. Any other bad line is [`RecordError::Corrupt`],
//! naming the file and 1-based line.

mod counts;
mod discrepancy;
mod error;
mod hlog;
mod linefile;
mod manifest;
mod recorder;
mod resources;
mod run;
mod series;
mod timefmt;

pub use counts::{COUNTS_COLUMNS, Counts, CountsRow, Outcome};
pub use discrepancy::{Class, Discrepancy, DiscrepancyKind, DiscrepancyWriter};
pub use error::RecordError;
pub use hlog::{HIGHEST_TRACKABLE_NS, IntervalHistogram, SIGNIFICANT_DIGITS, SeriesData, Summary};
pub use manifest::{FORMAT_VERSION, HostInfo, Manifest, RunKind};
pub use recorder::{DEFAULT_INTERVAL, LatencyRecorder, LocalRecorder, SeriesId};
pub use resources::{RESOURCES_COLUMNS, ResourceSample, ResourceWriter};
pub use run::{Run, RunWriter, merge};
pub use series::{Measure, RouteKey, SeriesKey};

/// Re-exported so users name the same `Histogram` type as [`SeriesData::total`].
pub use hdrhistogram;

/// `manifest.json`
pub const MANIFEST_FILE: &str = "manifest.json";
/// `latency.hlog`
pub const LATENCY_FILE: &str = "latency.hlog";
/// `counts.csv`
pub const COUNTS_FILE: &str = "counts.csv";
/// `discrepancies.ndjson`
pub const DISCREPANCIES_FILE: &str = "discrepancies.ndjson";
/// `resources.csv`
pub const RESOURCES_FILE: &str = "resources.csv";
