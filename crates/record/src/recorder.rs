//! The latency and counts recorder: per-worker shards, a shared collector, an interval writer.
//!
//! ```text
//!  worker 1: LocalRecorder ─┐  (own histograms and counts; no lock, no allocation per sample)
//!  worker 2: LocalRecorder ─┼─ flush, at most once per interval, under one short mutex
//!  worker n: LocalRecorder ─┘        │
//!                               Collector (one full-range histogram per series, counts per route)
//!                                    │  write_interval(): swap out, then encode and append
//!                               latency.hlog + counts.csv, flushed after every interval
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use hdrhistogram::Histogram;

use crate::counts::{Counts, CountsRow, Outcome};
use crate::hlog::{HIGHEST_TRACKABLE_NS, HlogWriter, full_histogram, growing_histogram};
use crate::linefile::{LineFile, lock};
use crate::series::{RouteKey, SeriesKey};
use crate::{COUNTS_FILE, RecordError, timefmt};

/// Default interval: local shards flush at most this often, and the interval writer thread
/// writes one interval this long.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// Shortest accepted interval (shorter values are raised to it).
const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// A registered series: a small index into the recorder's tables, obtained once per series with
/// [`LatencyRecorder::series`] and then used on every sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeriesId(u32);

impl SeriesId {
    fn index(self) -> usize {
        self.0 as usize
    }
}

/// Records latency samples and request outcomes into `latency.hlog` and `counts.csv`.
///
/// A cheap `Clone` handle; all clones share one run. Samples are recorded through
/// [`LocalRecorder`]s ([`LatencyRecorder::local`]), one per worker thread or task; intervals are
/// written by [`LatencyRecorder::write_interval`] (the producer's own timer) or by the thread
/// started with [`LatencyRecorder::start_interval_writer`]. [`LatencyRecorder::finish`], or
/// dropping the last handle and local, writes the last interval and flushes the files.
#[derive(Debug, Clone)]
pub struct LatencyRecorder {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    interval: Duration,
    start: SystemTime,
    /// The `Instant` matching `start`, for cheap offsets.
    start_instant: Instant,
    /// Cloned for each new series in a local shard (empty, auto-resizing).
    local_template: Histogram<u64>,
    collector: Mutex<Collector>,
    sink: Mutex<Sink>,
    thread: Mutex<Option<WriterThread>>,
    /// First error of the interval writer thread, returned by `finish`.
    thread_error: Mutex<Option<RecordError>>,
    finished: AtomicBool,
}

#[derive(Debug)]
struct Collector {
    index: HashMap<SeriesKey, SeriesId>,
    keys: Vec<SeriesKey>,
    /// Series → index into `routes`.
    route_of: Vec<usize>,
    routes: Vec<RouteKey>,
    route_index: HashMap<RouteKey, usize>,
    /// Per series: samples of the current interval.
    hist: Vec<Histogram<u64>>,
    /// Per route: outcomes of the current interval.
    counts: Vec<Counts>,
    /// Samples clamped to the histogram range since the start.
    clamped: u64,
}

#[derive(Debug)]
struct Sink {
    hlog: HlogWriter,
    counts: LineFile,
    /// End of the last written interval, ms since start.
    last_end_ms: u64,
    /// Copies of the collector's (append-only) tags and routes.
    tags: Vec<String>,
    routes: Vec<RouteKey>,
    /// Swapped with the collector's tables: the interval being written, then reset.
    hist: Vec<Histogram<u64>>,
    counts_buf: Vec<Counts>,
    closed: bool,
}

#[derive(Debug)]
struct WriterThread {
    stop: mpsc::Sender<()>,
    join: JoinHandle<()>,
}

impl LatencyRecorder {
    /// Creates `dir/latency.hlog` and `dir/counts.csv` for a run that started at `start`
    /// (normally the manifest's `started_at`; truncated to whole milliseconds). Interval offsets
    /// in both files are measured from `start`.
    ///
    /// `interval` is the local flush period and the interval writer's period (at least 10 ms).
    pub fn create(
        dir: &Path,
        start: SystemTime,
        interval: Duration,
    ) -> Result<LatencyRecorder, RecordError> {
        let start = timefmt::truncate_to_millis(start);
        let since_start = SystemTime::now()
            .duration_since(start)
            .unwrap_or(Duration::ZERO);
        let now = Instant::now();
        let start_instant = now.checked_sub(since_start).unwrap_or(now);
        let hlog = HlogWriter::create(dir, start)?;
        // Flushed explicitly after each interval, never in between.
        let mut counts = LineFile::create(dir.join(COUNTS_FILE), Duration::MAX)?;
        let mut header = crate::counts::COUNTS_COLUMNS.join(",");
        header.push('\n');
        counts.append(header.as_bytes())?;
        counts.flush()?;
        let shared = Shared {
            dir: dir.to_path_buf(),
            interval: interval.max(MIN_INTERVAL),
            start,
            start_instant,
            local_template: growing_histogram(&dir.join(crate::LATENCY_FILE))?,
            collector: Mutex::new(Collector {
                index: HashMap::new(),
                keys: Vec::new(),
                route_of: Vec::new(),
                routes: Vec::new(),
                route_index: HashMap::new(),
                hist: Vec::new(),
                counts: Vec::new(),
                clamped: 0,
            }),
            sink: Mutex::new(Sink {
                hlog,
                counts,
                last_end_ms: 0,
                tags: Vec::new(),
                routes: Vec::new(),
                hist: Vec::new(),
                counts_buf: Vec::new(),
                closed: false,
            }),
            thread: Mutex::new(None),
            thread_error: Mutex::new(None),
            finished: AtomicBool::new(false),
        };
        Ok(LatencyRecorder {
            shared: Arc::new(shared),
        })
    }

    /// The run start the interval offsets are measured from.
    pub fn start_time(&self) -> SystemTime {
        self.shared.start
    }

    /// The interval length.
    pub fn interval(&self) -> Duration {
        self.shared.interval
    }

    /// Registers a series (or finds it if already registered) and returns its id. Call once per
    /// series, not per sample: it takes a lock and may allocate.
    pub fn series(&self, key: SeriesKey) -> Result<SeriesId, RecordError> {
        key.validate()?;
        let mut c = lock(&self.shared.collector);
        if let Some(&id) = c.index.get(&key) {
            return Ok(id);
        }
        let id =
            u32::try_from(c.keys.len())
                .map(SeriesId)
                .map_err(|_| RecordError::InvalidSeries {
                    what: "tag",
                    value: key.tag(),
                    reason: "too many series",
                })?;
        let hist = full_histogram(&self.shared.dir.join(crate::LATENCY_FILE))?;
        let route = key.route_key();
        let route_idx = match c.route_index.get(&route) {
            Some(&i) => i,
            None => {
                let i = c.routes.len();
                c.routes.push(route.clone());
                c.route_index.insert(route, i);
                c.counts.push(Counts::default());
                i
            }
        };
        c.hist.push(hist);
        c.route_of.push(route_idx);
        c.keys.push(key.clone());
        c.index.insert(key, id);
        Ok(id)
    }

    /// A new per-worker shard. Keep one per worker thread or long-lived task (not per virtual
    /// user or request: each shard holds a histogram per series it has seen, tens of KB each).
    pub fn local(&self) -> LocalRecorder {
        LocalRecorder {
            shared: Arc::clone(&self.shared),
            hist: Vec::new(),
            counts: Vec::new(),
            dirty: false,
            clamped: 0,
            next_flush: Instant::now() + self.shared.interval,
        }
    }

    /// Writes one interval, from the end of the previous one to now: every series with samples
    /// gets an `latency.hlog` line, every route with outcomes a `counts.csv` row; both files are
    /// flushed. Samples still in local shards that have not flushed yet go to a later interval.
    pub fn write_interval(&self) -> Result<(), RecordError> {
        self.shared
            .write_interval_at(self.shared.start_instant.elapsed())
    }

    /// Like [`write_interval`](Self::write_interval), with an explicit interval end (offset from
    /// the start). For replaying recorded timings and for tests. Ends before the previous end
    /// are raised to it.
    pub fn write_interval_at(&self, end: Duration) -> Result<(), RecordError> {
        self.shared.write_interval_at(end)
    }

    /// Starts a background thread that calls `write_interval` every interval, aligned to
    /// multiples of the interval since the start. Stopped by [`finish`](Self::finish) or when the
    /// last handle is dropped. Calling it again while it runs does nothing.
    ///
    /// A plain thread rather than a runtime task, so this works the same with or without tokio.
    pub fn start_interval_writer(&self) -> Result<(), RecordError> {
        let mut slot = lock(&self.shared.thread);
        if slot.is_some() {
            return Ok(());
        }
        let (stop, stopped) = mpsc::channel();
        let weak = Arc::downgrade(&self.shared);
        let period = self.shared.interval;
        let start = self.shared.start_instant;
        let join = thread::Builder::new()
            .name("latency-writer".into())
            .spawn(move || interval_thread(weak, stopped, period, start))
            .map_err(|e| RecordError::WriterThread(e.to_string()))?;
        *slot = Some(WriterThread { stop, join });
        Ok(())
    }

    /// Samples clamped to the histogram's range (over one hour) so far, in flushed shards.
    pub fn clamped_samples(&self) -> u64 {
        lock(&self.shared.collector).clamped
    }

    /// Stops the interval writer thread, writes the last interval and flushes the files.
    /// Idempotent. Drop (or [`LocalRecorder::flush`]) the local shards first: samples a live
    /// shard has not flushed are not in the files.
    ///
    /// Returns the first error of the interval writer thread, if it had one.
    pub fn finish(&self) -> Result<(), RecordError> {
        if self.shared.finished.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let thread = lock(&self.shared.thread).take();
        let mut panicked = false;
        if let Some(WriterThread { stop, join }) = thread {
            drop(stop);
            panicked = join.join().is_err();
        }
        // Write what is left even if the thread failed: the data is in the collector.
        let end = self.shared.start_instant.elapsed();
        self.shared.write_interval_at(end)?;
        self.shared.close()?;
        if panicked {
            return Err(RecordError::WriterThread("the thread panicked".into()));
        }
        match lock(&self.shared.thread_error).take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

fn interval_thread(
    weak: Weak<Shared>,
    stopped: mpsc::Receiver<()>,
    period: Duration,
    start: Instant,
) {
    let period_ns = period.as_nanos().max(1);
    let next_k = || {
        let k = start.elapsed().as_nanos() / period_ns + 1;
        u32::try_from(k).unwrap_or(u32::MAX)
    };
    let mut k = next_k();
    loop {
        let deadline = start + period.saturating_mul(k);
        match stopped.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Err(RecvTimeoutError::Timeout) => {}
            // Stop requested, or every handle dropped.
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        let Some(shared) = weak.upgrade() else {
            return;
        };
        if let Err(e) = shared.write_interval_at(start.elapsed()) {
            tracing::warn!(error = %e, "Could not write a latency interval.");
            lock(&shared.thread_error).get_or_insert(e);
        }
        drop(shared);
        // Skip ticks missed while writing (a stalled disk) instead of bursting to catch up.
        k = next_k().max(k.saturating_add(1));
    }
}

impl Shared {
    fn write_interval_at(&self, end: Duration) -> Result<(), RecordError> {
        let mut sink = lock(&self.sink);
        if sink.closed {
            return Ok(());
        }
        let sink = &mut *sink;
        let end_ms = timefmt::millis_u64(end).max(sink.last_end_ms);
        {
            let mut c = lock(&self.collector);
            for key in &c.keys[sink.tags.len()..] {
                sink.tags.push(key.tag());
            }
            sink.routes
                .extend_from_slice(&c.routes[sink.routes.len()..]);
            // The collector only grows, so after this the two tables have the same length; the
            // swap hands the interval's data to the sink and reset tables to the collector.
            while sink.hist.len() < c.hist.len() {
                sink.hist
                    .push(full_histogram(&self.dir.join(crate::LATENCY_FILE))?);
            }
            sink.counts_buf.resize(c.counts.len(), Counts::default());
            std::mem::swap(&mut c.hist, &mut sink.hist);
            std::mem::swap(&mut c.counts, &mut sink.counts_buf);
        }
        let start = Duration::from_millis(sink.last_end_ms);
        let length = Duration::from_millis(end_ms - sink.last_end_ms);
        sink.last_end_ms = end_ms;
        let written = sink.write(start, length);
        // Reset whatever happened, so a failed write does not leak into the next interval.
        for h in &mut sink.hist {
            if !h.is_empty() {
                h.reset();
            }
        }
        sink.counts_buf.fill(Counts::default());
        written
    }

    fn close(&self) -> Result<(), RecordError> {
        let mut sink = lock(&self.sink);
        sink.closed = true;
        sink.hlog.flush()?;
        sink.counts.flush()
    }
}

impl Sink {
    fn write(&mut self, start: Duration, length: Duration) -> Result<(), RecordError> {
        let series = self
            .tags
            .iter()
            .zip(&self.hist)
            .filter(|(_, h)| !h.is_empty())
            .map(|(tag, h)| (tag.as_str(), h));
        self.hlog.write_interval(start, length, series)?;
        let mut rows = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(Vec::new());
        for (route, c) in self.routes.iter().zip(&self.counts_buf) {
            if !c.is_zero() {
                rows.serialize(CountsRow::new(start, length, route, c))
                    .map_err(|e| RecordError::Encode {
                        path: self.counts.path().to_path_buf(),
                        action: "serializing a counts row",
                        reason: e.to_string(),
                    })?;
            }
        }
        let rows = rows.into_inner().map_err(|e| RecordError::Encode {
            path: self.counts.path().to_path_buf(),
            action: "serializing counts rows",
            reason: e.to_string(),
        })?;
        if !rows.is_empty() {
            self.counts.append(&rows)?;
        }
        self.hlog.flush()?;
        self.counts.flush()
    }
}

impl Drop for Shared {
    /// The last handle and the last local shard are gone: write what is left, as `finish` would
    /// (errors can only be logged here).
    fn drop(&mut self) {
        if let Some(WriterThread { stop, join }) = lock(&self.thread).take() {
            // Do not join: this may run on the writer thread itself (it briefly holds a strong
            // reference while writing). Dropping the sender makes it exit.
            drop(stop);
            drop(join);
        }
        if self.finished.load(Ordering::SeqCst) {
            let c = lock(&self.collector);
            let lost: u64 = c.hist.iter().map(Histogram::len).sum();
            if lost > 0 {
                tracing::warn!(
                    samples = lost,
                    "Latency samples flushed after finish() were not written."
                );
            }
            return;
        }
        let end = self.start_instant.elapsed();
        if let Err(e) = self.write_interval_at(end).and_then(|()| self.close()) {
            tracing::warn!(error = %e, "Could not write the last latency interval.");
        }
    }
}

/// A per-worker shard of a [`LatencyRecorder`]: records with no lock and, once a series has been
/// seen, no allocation.
///
/// It moves its samples into the shared collector at most once per interval: on the first
/// record/count after the interval has passed (one `Instant::now()` per call, ~20 ns), on
/// [`flush`](Self::flush) and on drop. An idle shard keeps its samples until one of those, so
/// short-lived tasks should drop their shard when done. A sample can therefore land in the
/// interval after the one it happened in; totals are exact.
#[derive(Debug)]
pub struct LocalRecorder {
    shared: Arc<Shared>,
    hist: Vec<Histogram<u64>>,
    counts: Vec<Counts>,
    dirty: bool,
    clamped: u64,
    next_flush: Instant,
}

impl LocalRecorder {
    /// Records a latency sample in nanoseconds. Values above one hour are clamped to one hour
    /// and counted ([`LatencyRecorder::clamped_samples`]).
    pub fn record(&mut self, id: SeriesId, ns: u64) {
        let i = self.slot(id);
        let v = self.clamp(ns);
        if self.hist[i].record(v).is_err() {
            // Unreachable with the clamp above (the shard grows up to the clamp value); counted
            // rather than panicking.
            self.clamped += 1;
        }
        self.dirty = true;
        self.maybe_flush();
    }

    /// Records a `Duration` sample (see [`record`](Self::record)).
    pub fn record_duration(&mut self, id: SeriesId, d: Duration) {
        self.record(id, u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Records a sample and corrects for coordinated omission (hdrhistogram's `record_correct`):
    /// when `ns` exceeds `expected_interval_ns`, also records `ns - k * expected_interval_ns`
    /// down to the interval, the samples a stalled closed-loop sender failed to send.
    /// Costs `ns / expected_interval_ns` records; 0 disables the correction.
    ///
    /// Not needed when latency is already measured from the intended send time.
    pub fn record_correct(&mut self, id: SeriesId, ns: u64, expected_interval_ns: u64) {
        let i = self.slot(id);
        let v = self.clamp(ns);
        if self.hist[i]
            .record_correct(v, expected_interval_ns)
            .is_err()
        {
            self.clamped += 1;
        }
        self.dirty = true;
        self.maybe_flush();
    }

    /// Counts one request outcome for the series' target/route (counts are per route: counting
    /// through a `;service` series id adds to the same row as through the response series).
    pub fn count(&mut self, id: SeriesId, outcome: Outcome) {
        let i = self.slot(id);
        self.counts[i].record(outcome);
        self.dirty = true;
        self.maybe_flush();
    }

    /// Counts one response with this status code.
    pub fn count_status(&mut self, id: SeriesId, status: u16) {
        self.count(id, Outcome::from_status(status));
    }

    /// Moves everything recorded so far into the shared collector.
    pub fn flush(&mut self) {
        if !self.dirty {
            return;
        }
        let now = Instant::now();
        let mut c = lock(&self.shared.collector);
        let c = &mut *c;
        for (i, (h, counts)) in self.hist.iter_mut().zip(&mut self.counts).enumerate() {
            if !h.is_empty() {
                match c.hist.get_mut(i) {
                    Some(total) => {
                        if total.add(&*h).is_err() {
                            c.clamped += h.len();
                        }
                    }
                    // An id from another recorder: nothing to file it under.
                    None => c.clamped += h.len(),
                }
                h.reset();
            }
            if !counts.is_zero() {
                if let Some(&r) = c.route_of.get(i) {
                    c.counts[r].add(counts);
                }
                *counts = Counts::default();
            }
        }
        c.clamped += std::mem::take(&mut self.clamped);
        self.dirty = false;
        self.next_flush = now + self.shared.interval;
    }

    fn maybe_flush(&mut self) {
        if Instant::now() >= self.next_flush {
            self.flush();
        }
    }

    fn clamp(&mut self, ns: u64) -> u64 {
        if ns > HIGHEST_TRACKABLE_NS {
            self.clamped += 1;
            HIGHEST_TRACKABLE_NS
        } else {
            ns
        }
    }

    /// The index for `id`, growing the tables the first time this shard sees the series.
    fn slot(&mut self, id: SeriesId) -> usize {
        let i = id.index();
        if i >= self.hist.len() {
            self.hist.resize(i + 1, self.shared.local_template.clone());
            self.counts.resize(i + 1, Counts::default());
        }
        i
    }
}

impl Drop for LocalRecorder {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::Measure;
    use std::time::UNIX_EPOCH;

    fn start() -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(1_764_408_000_000)
    }

    #[test]
    fn handles_can_cross_threads() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send_sync::<LatencyRecorder>();
        send_sync::<crate::RunWriter>();
        send_sync::<crate::DiscrepancyWriter>();
        send_sync::<crate::ResourceWriter>();
        send::<LocalRecorder>();
    }

    #[test]
    fn series_ids_are_deduplicated_and_routes_shared() {
        let dir = tempfile::tempdir().unwrap();
        let rec = LatencyRecorder::create(dir.path(), start(), DEFAULT_INTERVAL).unwrap();
        let a = rec
            .series(SeriesKey::response("candidate", "GET", "/a").unwrap())
            .unwrap();
        let a2 = rec
            .series(SeriesKey::response("candidate", "GET", "/a").unwrap())
            .unwrap();
        let s = rec
            .series(SeriesKey::new("candidate", "GET", "/a", Measure::Service).unwrap())
            .unwrap();
        assert_eq!(a, a2);
        assert_ne!(a, s);
        let c = lock(&rec.shared.collector);
        assert_eq!(c.routes.len(), 1);
        assert_eq!(c.route_of, vec![0, 0]);
    }

    #[test]
    fn invalid_series_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let rec = LatencyRecorder::create(dir.path(), start(), DEFAULT_INTERVAL).unwrap();
        let bad = SeriesKey {
            target: "a:b".into(),
            method: "GET".into(),
            route: "/".into(),
            measure: Measure::Response,
        };
        assert!(rec.series(bad).is_err());
    }

    #[test]
    fn out_of_range_values_are_clamped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let rec = LatencyRecorder::create(dir.path(), start(), DEFAULT_INTERVAL).unwrap();
        let id = rec
            .series(SeriesKey::response("t", "GET", "/").unwrap())
            .unwrap();
        let mut local = rec.local();
        local.record(id, u64::MAX);
        local.record(id, 0);
        local.record_duration(id, Duration::from_secs(7200));
        local.record_correct(id, u64::MAX, 0);
        local.flush();
        assert_eq!(rec.clamped_samples(), 3);
        let c = lock(&rec.shared.collector);
        assert_eq!(c.hist[0].len(), 4);
        assert_eq!(
            c.hist[0].max(),
            c.hist[0].highest_equivalent(HIGHEST_TRACKABLE_NS)
        );
    }

    #[test]
    fn record_correct_adds_the_missing_samples() {
        let dir = tempfile::tempdir().unwrap();
        let rec = LatencyRecorder::create(dir.path(), start(), DEFAULT_INTERVAL).unwrap();
        let id = rec
            .series(SeriesKey::response("t", "GET", "/").unwrap())
            .unwrap();
        let mut local = rec.local();
        local.record_correct(id, 10_000, 1_000);
        drop(local);
        assert_eq!(lock(&rec.shared.collector).hist[0].len(), 10);
    }

    #[test]
    fn write_interval_writes_only_series_with_data_and_advances() {
        let dir = tempfile::tempdir().unwrap();
        let rec = LatencyRecorder::create(dir.path(), start(), DEFAULT_INTERVAL).unwrap();
        let a = rec
            .series(SeriesKey::response("t", "GET", "/a").unwrap())
            .unwrap();
        let _b = rec
            .series(SeriesKey::response("t", "GET", "/b").unwrap())
            .unwrap();
        let mut local = rec.local();
        local.record(a, 1_000);
        local.count_status(a, 200);
        local.flush();
        rec.write_interval_at(Duration::from_millis(1_000)).unwrap();
        rec.write_interval_at(Duration::from_millis(500)).unwrap();
        local.record(a, 2_000);
        local.flush();
        rec.write_interval_at(Duration::from_millis(2_500)).unwrap();
        let hlog = std::fs::read_to_string(dir.path().join(crate::LATENCY_FILE)).unwrap();
        let lines: Vec<&str> = hlog.lines().filter(|l| l.starts_with("Tag=")).collect();
        assert_eq!(lines.len(), 2, "{hlog}");
        assert!(lines[0].starts_with("Tag=t:GET:/a,0.000,1.000,"), "{hlog}");
        assert!(lines[1].starts_with("Tag=t:GET:/a,1.000,1.500,"), "{hlog}");
        let counts = std::fs::read_to_string(dir.path().join(COUNTS_FILE)).unwrap();
        assert_eq!(
            counts.lines().nth(1).unwrap(),
            "0.0,1.0,t,GET,/a,1,0,1,0,0,0,0,0,0,0"
        );
        assert_eq!(counts.lines().count(), 2, "{counts}");
    }

    #[test]
    fn interval_thread_writes_and_finish_stops_it() {
        let dir = tempfile::tempdir().unwrap();
        let rec = LatencyRecorder::create(dir.path(), SystemTime::now(), Duration::from_millis(20))
            .unwrap();
        let id = rec
            .series(SeriesKey::response("t", "GET", "/").unwrap())
            .unwrap();
        rec.start_interval_writer().unwrap();
        rec.start_interval_writer().unwrap();
        let mut local = rec.local();
        local.record(id, 5);
        local.flush();
        // Wait (bounded) until the thread has written the sample.
        let path = dir.path().join(crate::LATENCY_FILE);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(&path).unwrap().contains("Tag=") {
            assert!(
                Instant::now() < deadline,
                "the interval thread wrote nothing"
            );
            thread::sleep(Duration::from_millis(5));
        }
        drop(local);
        rec.finish().unwrap();
        rec.finish().unwrap();
        assert!(lock(&rec.shared.thread).is_none());
    }

    #[test]
    fn dropping_everything_without_finish_writes_the_data() {
        let dir = tempfile::tempdir().unwrap();
        let rec = LatencyRecorder::create(dir.path(), start(), DEFAULT_INTERVAL).unwrap();
        let id = rec
            .series(SeriesKey::response("t", "GET", "/").unwrap())
            .unwrap();
        let mut local = rec.local();
        local.record(id, 42);
        local.count(id, Outcome::Timeout);
        drop(rec);
        // The local still holds the run open; dropping it flushes and closes.
        drop(local);
        let hlog = std::fs::read_to_string(dir.path().join(crate::LATENCY_FILE)).unwrap();
        assert!(hlog.contains("Tag=t:GET:/,"), "{hlog}");
        let counts = std::fs::read_to_string(dir.path().join(COUNTS_FILE)).unwrap();
        assert!(
            counts.contains(",t,GET,/,1,0,0,0,0,0,0,1,0,0\n"),
            "{counts}"
        );
    }
}
