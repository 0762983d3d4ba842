//! `latency.hlog`: the HdrHistogram interval log, writing and reading.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::interval_log::{
    IntervalLogIterator, IntervalLogWriterBuilder, LogEntry, Tag,
};
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2DeflateSerializer};

use crate::linefile::{read_optional, split_tail, torn_warning};
use crate::series::SeriesKey;
use crate::{LATENCY_FILE, RecordError};

/// Highest value a latency histogram tracks: one hour in nanoseconds. Larger samples are clamped
/// to it (and counted); see the crate docs.
pub const HIGHEST_TRACKABLE_NS: u64 = 3_600 * 1_000_000_000;

/// Significant decimal digits kept by every latency histogram.
pub const SIGNIFICANT_DIGITS: u8 = 3;

/// The Java log-format version whose layout we write (comments, StartTime, BaseTime, legend).
const LOG_FORMAT_VERSION: &str = "1.3";

/// A histogram covering `[1, HIGHEST_TRACKABLE_NS]` at 3 digits. Its size is fixed (about
/// 260 KB), so it is used once per series, not per worker.
pub(crate) fn full_histogram(path: &Path) -> Result<Histogram<u64>, RecordError> {
    Histogram::new_with_bounds(1, HIGHEST_TRACKABLE_NS, SIGNIFICANT_DIGITS).map_err(|e| {
        RecordError::Encode {
            path: path.to_path_buf(),
            action: "creating a histogram",
            reason: e.to_string(),
        }
    })
}

/// A histogram with the same bucket layout as [`full_histogram`] that starts tiny and grows to
/// the largest value recorded: per-worker shards stay small for sub-millisecond latencies.
pub(crate) fn growing_histogram(path: &Path) -> Result<Histogram<u64>, RecordError> {
    Histogram::new(SIGNIFICANT_DIGITS).map_err(|e| RecordError::Encode {
        path: path.to_path_buf(),
        action: "creating a histogram",
        reason: e.to_string(),
    })
}

/// Writes `latency.hlog`.
pub(crate) struct HlogWriter {
    path: PathBuf,
    out: BufWriter<File>,
    serializer: V2DeflateSerializer,
}

impl std::fmt::Debug for HlogWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HlogWriter")
            .field("path", &self.path)
            .finish()
    }
}

impl HlogWriter {
    /// Creates (truncates) `dir/latency.hlog` and writes its header: comments, `StartTime` and
    /// `BaseTime` (both `start`; interval timestamps are seconds since it) and the legend.
    pub(crate) fn create(dir: &Path, start: SystemTime) -> Result<HlogWriter, RecordError> {
        let path = dir.join(LATENCY_FILE);
        let f = File::create(&path).map_err(|e| RecordError::io(&path, "creating", e))?;
        let mut w = HlogWriter {
            out: BufWriter::with_capacity(64 * 1024, f),
            serializer: V2DeflateSerializer::new(),
            path: path.clone(),
        };
        let io = |e| RecordError::io(&path, "writing", e);
        let mut builder = IntervalLogWriterBuilder::new();
        builder
            .add_comment("shadowgate latency log: values in nanoseconds, 3 significant digits")
            .add_comment(
                "tags: <target>:<METHOD>:<route>[;<measure>], route percent-encoded \
                 (space , ; % and control characters)",
            )
            .add_comment(&format!(
                "[Histogram log format version {LOG_FORMAT_VERSION}]"
            ))
            .with_start_time(start)
            .with_base_time(start);
        builder
            .begin_log_with(&mut w.out, &mut w.serializer)
            .map_err(io)?;
        w.out
            .write_all(
                b"\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\
                  \"Interval_Compressed_Histogram\"\n",
            )
            .and_then(|()| w.out.flush())
            .map_err(io)?;
        Ok(w)
    }

    /// Appends one line per `(tag, histogram)` for the interval `[start, start + length)`
    /// (offsets from the log's BaseTime). Does not flush.
    pub(crate) fn write_interval<'h>(
        &mut self,
        start: Duration,
        length: Duration,
        series: impl Iterator<Item = (&'h str, &'h Histogram<u64>)>,
    ) -> Result<(), RecordError> {
        // A builder without headers writes nothing itself; it only gives us a line writer.
        let mut log = IntervalLogWriterBuilder::new()
            .begin_log_with(&mut self.out, &mut self.serializer)
            .map_err(|e| RecordError::io(&self.path, "writing", e))?;
        for (tag, h) in series {
            let tag = Tag::new(tag).ok_or_else(|| RecordError::InvalidSeries {
                what: "tag",
                value: tag.to_owned(),
                reason: "contains ' ', ',', CR or LF",
            })?;
            log.write_histogram(h, start, length, Some(tag))
                .map_err(|e| RecordError::Encode {
                    path: self.path.clone(),
                    action: "writing an interval histogram",
                    reason: e.to_string(),
                })?;
        }
        Ok(())
    }

    pub(crate) fn flush(&mut self) -> Result<(), RecordError> {
        self.out
            .flush()
            .map_err(|e| RecordError::io(&self.path, "writing", e))
    }
}

impl Drop for HlogWriter {
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            tracing::warn!(error = %e, "Could not flush the latency log on close.");
        }
    }
}

/// Summary statistics of one histogram, computed once when a run is read.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Summary {
    /// Number of samples.
    pub count: u64,
    /// Lowest sample (ns, lowest equivalent value of its bucket); 0 when empty.
    pub min: u64,
    /// Highest sample (ns, highest equivalent value of its bucket); 0 when empty.
    pub max: u64,
    /// Mean (ns).
    pub mean: f64,
    /// Median (ns), hdrhistogram's `value_at_quantile(0.5)`.
    pub p50: u64,
    /// 90th percentile (ns).
    pub p90: u64,
    /// 99th percentile (ns).
    pub p99: u64,
    /// 99.9th percentile (ns).
    pub p999: u64,
}

impl Summary {
    /// Summarises `h`.
    pub fn of(h: &Histogram<u64>) -> Summary {
        if h.is_empty() {
            return Summary::default();
        }
        Summary {
            count: h.len(),
            min: h.min(),
            max: h.max(),
            mean: h.mean(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
        }
    }
}

/// One interval of one series.
///
/// The histogram is kept encoded (a few hundred bytes) and decoded on demand: a decoded
/// full-range histogram takes about 260 KB, and an hour of 1-second intervals for a dozen
/// series would not fit in memory decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct IntervalHistogram {
    /// Interval start, as an offset from the run's `started_at`.
    pub start: Duration,
    /// Interval length.
    pub length: Duration,
    /// Statistics of the interval.
    pub summary: Summary,
    /// The histogram, V2 + DEFLATE, base64 (as in the log line).
    pub encoded: String,
}

impl IntervalHistogram {
    /// Decodes the interval's histogram.
    pub fn histogram(&self) -> Result<Histogram<u64>, RecordError> {
        decode(&self.encoded).map_err(|reason| RecordError::Encode {
            path: PathBuf::from(LATENCY_FILE),
            action: "decoding an interval histogram",
            reason,
        })
    }

    /// An interval holding `h`.
    pub fn new(
        start: Duration,
        length: Duration,
        h: &Histogram<u64>,
    ) -> Result<IntervalHistogram, RecordError> {
        Ok(IntervalHistogram {
            start,
            length,
            summary: Summary::of(h),
            encoded: encode(h).map_err(|reason| RecordError::Encode {
                path: PathBuf::from(LATENCY_FILE),
                action: "encoding an interval histogram",
                reason,
            })?,
        })
    }
}

/// Everything recorded for one series.
#[derive(Debug, Clone)]
pub struct SeriesData {
    /// All intervals added together.
    pub total: Histogram<u64>,
    /// The intervals, in file order (by start time for files this crate writes).
    pub intervals: Vec<IntervalHistogram>,
}

/// Base64 + V2/V2-DEFLATE bytes → histogram.
pub(crate) fn decode(encoded: &str) -> Result<Histogram<u64>, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|e| format!("histogram payload is not base64: {e}"))?;
    Deserializer::new()
        .deserialize(&mut &bytes[..])
        .map_err(|e| format!("histogram payload does not decode: {e}"))
}

/// Histogram → V2-DEFLATE bytes → base64.
pub(crate) fn encode(h: &Histogram<u64>) -> Result<String, String> {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut bytes)
        .map_err(|e| e.to_string())?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// Reads `latency.hlog` (absent file: no series). Interval offsets are made relative to
/// `run_start`.
///
/// Timestamp rules, as Java's `HistogramLogReader`: with a BaseTime, timestamps are seconds since
/// it; with only a StartTime, timestamps more than a year below it are offsets from it and others
/// are absolute; with neither, they are Unix times.
pub(crate) fn read(
    dir: &Path,
    run_start: SystemTime,
    warnings: &mut Vec<String>,
) -> Result<BTreeMap<SeriesKey, SeriesData>, RecordError> {
    let path = dir.join(LATENCY_FILE);
    let mut out = BTreeMap::new();
    let Some(data) = read_optional(&path)? else {
        return Ok(out);
    };
    let run_start = run_start.duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut clock = LogClock::default();
    let (complete, tail) = split_tail(&data);
    for (i, line) in complete.split_inclusive(|&b| b == b'\n').enumerate() {
        let parsed = parse_line(line, &clock, run_start)
            .and_then(|p| apply(p, &mut clock, &mut out))
            .map_err(|reason| RecordError::corrupt(&path, i + 1, reason));
        parsed?;
    }
    if let Some((n, text)) = tail {
        let mut line = text.to_vec();
        line.push(b'\n');
        // A complete line that merely lacks its line end is kept; anything else is torn.
        match parse_line(&line, &clock, run_start) {
            Ok(p) => apply(p, &mut clock, &mut out)
                .map_err(|reason| RecordError::corrupt(&path, n, reason))?,
            Err(_) => torn_warning(&path, n, text, warnings),
        }
    }
    Ok(out)
}

#[derive(Debug, Default, Clone, Copy)]
struct LogClock {
    start_time: Option<Duration>,
    base_time: Option<Duration>,
}

impl LogClock {
    /// Absolute time (since the epoch) of an interval timestamp.
    fn absolute(&self, ts: Duration) -> Duration {
        const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);
        match (self.base_time, self.start_time) {
            (Some(base), _) => base + ts,
            (None, Some(start)) if ts + YEAR < start => start + ts,
            _ => ts,
        }
    }
}

/// One parsed line of an interval log.
enum Parsed {
    Ignored,
    StartTime(Duration),
    BaseTime(Duration),
    // Boxed: the histogram header is large and lines are parsed one at a time anyway.
    Interval(Box<(SeriesKey, Histogram<u64>, IntervalHistogram)>),
}

/// Parses and decodes one line (with its line end) without changing any state, so that a
/// candidate torn line can be tried and dropped.
fn parse_line(line: &[u8], clock: &LogClock, run_start: Duration) -> Result<Parsed, String> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(Parsed::Ignored);
    }
    let entry = match IntervalLogIterator::new(line).next() {
        // Comments and the legend line.
        None => return Ok(Parsed::Ignored),
        Some(Ok(entry)) => entry,
        Some(Err(_)) => {
            return Err(
                "not an interval-log line (comment, StartTime/BaseTime header, legend or \
                 Tag=...,start,length,max,histogram) — the file was edited or written by \
                 another tool"
                    .to_owned(),
            );
        }
    };
    Ok(match entry {
        LogEntry::StartTime(t) => Parsed::StartTime(t),
        LogEntry::BaseTime(t) => Parsed::BaseTime(t),
        LogEntry::Interval(ilh) => {
            let tag = ilh.tag().ok_or(
                "interval without a Tag=; shadowgate series are tagged \
                 <target>:<METHOD>:<route>[;<measure>]",
            )?;
            let key = SeriesKey::parse_tag(tag.as_str()).map_err(|e| e.to_string())?;
            let h = decode(ilh.encoded_histogram())?;
            let interval = IntervalHistogram {
                start: clock
                    .absolute(ilh.start_timestamp())
                    .saturating_sub(run_start),
                length: ilh.duration(),
                summary: Summary::of(&h),
                encoded: ilh.encoded_histogram().trim().to_owned(),
            };
            Parsed::Interval(Box::new((key, h, interval)))
        }
    })
}

fn apply(
    parsed: Parsed,
    clock: &mut LogClock,
    out: &mut BTreeMap<SeriesKey, SeriesData>,
) -> Result<(), String> {
    match parsed {
        Parsed::Ignored => {}
        Parsed::StartTime(t) => clock.start_time = Some(t),
        Parsed::BaseTime(t) => clock.base_time = Some(t),
        Parsed::Interval(parsed) => {
            let (key, h, interval) = *parsed;
            let series = match out.entry(key) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => e.insert(SeriesData {
                    total: total_histogram()?,
                    intervals: Vec::new(),
                }),
            };
            series
                .total
                .add(&h)
                .map_err(|e| format!("cannot add the interval histogram: {e}"))?;
            series.intervals.push(interval);
        }
    }
    Ok(())
}

/// An accumulator for a series total: our full range, growing if a file from another tool holds
/// larger values.
pub(crate) fn total_histogram() -> Result<Histogram<u64>, String> {
    let mut total = full_histogram(Path::new(LATENCY_FILE)).map_err(|e| e.to_string())?;
    total.auto(true);
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(values: &[u64]) -> Histogram<u64> {
        let mut h = full_histogram(Path::new("x")).unwrap();
        for &v in values {
            h.record(v).unwrap();
        }
        h
    }

    #[test]
    fn header_is_readable_by_the_hdrhistogram_parser() {
        let dir = tempfile::tempdir().unwrap();
        let start = UNIX_EPOCH + Duration::from_millis(1_764_408_000_123);
        let mut w = HlogWriter::create(dir.path(), start).unwrap();
        let h = hist(&[1_000, 2_000, 3_000_000]);
        w.write_interval(
            Duration::from_millis(1_000),
            Duration::from_millis(1_000),
            [("candidate:GET:/a", &h)].into_iter(),
        )
        .unwrap();
        drop(w);
        let text = std::fs::read_to_string(dir.path().join(LATENCY_FILE)).unwrap();
        assert!(
            text.contains("#[StartTime: 1764408000.123 (seconds since epoch)]\n"),
            "{text}"
        );
        assert!(text.contains("#[BaseTime: 1764408000.123 (seconds since epoch)]\n"));
        assert!(text.contains("\"StartTimestamp\",\"Interval_Length\""));
        assert!(text.contains("Tag=candidate:GET:/a,1.000,1.000,"), "{text}");
        // V2 + DEFLATE cookie: base64 of 0x1c849304 starts with "HISTFAAA".
        assert!(text.contains(",HISTFAAA"), "{text}");

        let mut warnings = Vec::new();
        let series = read(dir.path(), start, &mut warnings).unwrap();
        let data = &series[&SeriesKey::parse_tag("candidate:GET:/a").unwrap()];
        assert_eq!(data.total, h);
        assert_eq!(data.intervals.len(), 1);
        assert_eq!(data.intervals[0].start, Duration::from_secs(1));
        assert_eq!(data.intervals[0].histogram().unwrap(), h);
        assert_eq!(data.intervals[0].summary.count, 3);
        assert!(warnings.is_empty());
    }

    #[test]
    fn clock_rules() {
        let start = Duration::from_secs(1_764_408_000);
        let only_start = LogClock {
            start_time: Some(start),
            base_time: None,
        };
        assert_eq!(
            only_start.absolute(Duration::from_secs(5)),
            start + Duration::from_secs(5)
        );
        assert_eq!(only_start.absolute(start), start);
        assert_eq!(LogClock::default().absolute(start), start);
        let base = LogClock {
            start_time: None,
            base_time: Some(Duration::from_secs(10)),
        };
        assert_eq!(
            base.absolute(Duration::from_secs(5)),
            Duration::from_secs(15)
        );
    }

    #[test]
    fn encode_decode_and_summary() {
        let h = hist(&[0, 1, 999, 1_000_000, HIGHEST_TRACKABLE_NS]);
        assert_eq!(decode(&encode(&h).unwrap()).unwrap(), h);
        let s = Summary::of(&h);
        assert_eq!(s.count, 5);
        assert_eq!(s.max, h.max());
        assert_eq!(Summary::of(&hist(&[])), Summary::default());
        assert!(decode("not base64!").is_err());
        assert!(decode("AAAA").is_err());
    }
}
