//! Our `latency.hlog` read by an independent implementation: the Python `hdrhistogram` package
//! (module `hdrh`), which, like Java's HistogramLogProcessor, accepts only V2 + DEFLATE payloads.
//!
//! Quantile definitions differ, and the test pins the difference instead of hiding it:
//!
//! - Rust (hdrhistogram 7.6) `value_at_quantile(q)` walks to rank `ceil(q * count)` (at least
//!   1), as Java HdrHistogram does since 2.1.
//! - Python `get_value_at_percentile(p)` walks to rank `int(p * count / 100 + 0.5)` (rounds half
//!   up, at least 1), the older C/Java rule.
//!
//! Both then report the highest value equivalent to the bucket reached. So they agree whenever
//! `q * count` has a fractional part of 0 or at least .5 (every p50), and Python reports the
//! bucket one rank lower when the fraction is below .5: with 170 samples, p99 is rank 169 in
//! Rust and 168 in Python. The script therefore prints both Python's own answer and the value at
//! Rust's rank computed from Python's decoded counts, and each is compared with its Rust
//! counterpart. Count and max are defined identically and must match exactly.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shadowgate_record::hdrhistogram::Histogram;
use shadowgate_record::{LatencyRecorder, Measure, Run, SeriesKey};

const SCRIPT: &str = r#"
import json, math, sys
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader

def value_at_rank(h, rank):
    total = 0
    for i in range(h.counts_len):
        total += h.get_count_at_index(i)
        if total >= rank:
            return h.get_highest_equivalent_value(h.get_value_from_index(i))
    return 0

reader = HistogramLogReader(sys.argv[1], HdrHistogram(1, 3600 * 10**9, 3))
acc = {}
intervals = {}
while True:
    h = reader.get_next_interval_histogram()
    if h is None:
        break
    tag = h.get_tag()
    if tag not in acc:
        acc[tag] = HdrHistogram(1, 3600 * 10**9, 3)
        intervals[tag] = []
    acc[tag].add(h)
    intervals[tag].append(h.get_start_time_stamp())
out = {}
for tag, h in acc.items():
    n = h.get_total_count()
    out[tag] = {
        "count": n,
        "max": h.get_max_value(),
        "p50": h.get_value_at_percentile(50.0),
        "p99": h.get_value_at_percentile(99.0),
        "p50_rust_rank": value_at_rank(h, max(1, math.ceil(0.5 * n))),
        "p99_rust_rank": value_at_rank(h, max(1, math.ceil(0.99 * n))),
        "interval_starts_ms": intervals[tag],
        "start_time_s": reader.get_start_time_sec(),
    }
print(json.dumps(out))
"#;

fn python() -> String {
    std::env::var("SHADOWGATE_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

const HOW_TO_FIX: &str = "run scripts/test.sh (which installs it) or \
    `python3 -m pip install hdrhistogram`; set SHADOWGATE_PYTHON to choose the interpreter";

/// The value Python's `get_value_at_percentile` returns, computed from our histogram.
fn python_rule(h: &Histogram<u64>, percentile: f64) -> u64 {
    let rank = ((percentile * h.len() as f64 / 100.0 + 0.5) as u64).max(1);
    let mut total = 0;
    for v in h.iter_recorded() {
        total += v.count_at_value();
        if total >= rank {
            return h.highest_equivalent(v.value_iterated_to());
        }
    }
    0
}

#[test]
fn python_hdrh_reads_our_log_and_agrees() {
    let py = python();
    match Command::new(&py).args(["-c", "import hdrh.log"]).output() {
        Err(e) => panic!("cannot run {py:?} ({e}): the interop test needs Python; {HOW_TO_FIX}"),
        Ok(o) if !o.status.success() => panic!(
            "{py:?} cannot import the hdrhistogram package ({}); {HOW_TO_FIX}",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Ok(_) => {}
    }

    let dir = tempfile::tempdir().unwrap();
    let start = UNIX_EPOCH + Duration::from_millis(1_764_408_000_250);
    let rec = LatencyRecorder::create(dir.path(), start, Duration::from_secs(1)).unwrap();
    let series = [
        // 170 distinct buckets: p99 lands on rank 169 (Rust) vs 168 (Python).
        (
            SeriesKey::response("candidate", "POST", "/api/order").unwrap(),
            (1..=170u64).map(|i| i * 1_000).collect::<Vec<_>>(),
        ),
        (
            SeriesKey::new("candidate", "POST", "/api/order", Measure::Service).unwrap(),
            (1..=1_000u64).map(|i| 50_000 + i * i * 37).collect(),
        ),
        (
            SeriesKey::response("primary", "GET", "/odd route, with;chars%").unwrap(),
            vec![1, 2, 3, 1_000_000_000, 3_600_000_000_000, 42_000],
        ),
        (
            SeriesKey::new("primary", "GET", "/stream", Measure::Other("lag".into())).unwrap(),
            (0..333u64).map(|i| 10_000 + i % 7 * 250_000).collect(),
        ),
    ];
    let ids: Vec<_> = series
        .iter()
        .map(|(k, _)| rec.series(k.clone()).unwrap())
        .collect();
    // Spread every series over three intervals.
    for interval in 0..3usize {
        let mut local = rec.local();
        for ((_, values), &id) in series.iter().zip(&ids) {
            for v in values.iter().skip(interval).step_by(3) {
                local.record(id, *v);
            }
        }
        drop(local);
        rec.write_interval_at(Duration::from_secs(interval as u64 + 1))
            .unwrap();
    }
    rec.finish().unwrap();

    let log = dir.path().join(shadowgate_record::LATENCY_FILE);
    let out = Command::new(&py)
        .arg("-c")
        .arg(SCRIPT)
        .arg(&log)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the Python reader failed on our log:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: BTreeMap<String, serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();

    // Our own reader's totals are the reference (checked against the samples elsewhere).
    fs_manifest(dir.path(), start);
    let run = Run::open(dir.path()).unwrap();
    assert_eq!(got.len(), series.len(), "{got:#?}");
    let mut python_differs = false;
    for (key, values) in &series {
        let tag = key.tag();
        let py = &got[&tag];
        let h = &run.latency[key].total;
        assert_eq!(h.len(), values.len() as u64);
        assert_eq!(py["count"], h.len(), "{tag}");
        assert_eq!(py["max"], h.max(), "{tag}");
        assert_eq!(py["p50_rust_rank"], h.value_at_quantile(0.5), "{tag}");
        assert_eq!(py["p99_rust_rank"], h.value_at_quantile(0.99), "{tag}");
        assert_eq!(py["p50"], python_rule(h, 50.0), "{tag}");
        assert_eq!(py["p99"], python_rule(h, 99.0), "{tag}");
        // Python reads StartTime and BaseTime as we wrote them: intervals at start + 0, 1, 2 s.
        assert_eq!(py["start_time_s"], 1_764_408_000.25, "{tag}");
        let starts: Vec<f64> = py["interval_starts_ms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let want: Vec<f64> = (0..3)
            .map(|i| 1_764_408_000_250.0 + 1_000.0 * f64::from(i))
            .collect();
        assert_eq!(starts.len(), 3, "{tag}");
        for (s, w) in starts.iter().zip(&want) {
            assert!((s - w).abs() < 0.01, "{tag}: {starts:?} vs {want:?}");
        }
        python_differs |= py["p99"] != py["p99_rust_rank"];
    }
    assert!(
        python_differs,
        "expected the 170-sample series to show the p99 rank-rounding difference"
    );
}

/// `Run::open` needs a manifest; the recorder alone does not write one.
fn fs_manifest(dir: &std::path::Path, start: SystemTime) {
    let mut m = shadowgate_record::Manifest::new(shadowgate_record::RunKind::Load, "test");
    m.started_at = start;
    m.ended_at = Some(start + Duration::from_secs(3));
    m.write(dir).unwrap();
}
