//! Run-directory round trips, torn and corrupt lines, killed writers, and exact merging.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use shadowgate_record::hdrhistogram::Histogram;
use shadowgate_record::{
    COUNTS_FILE, Class, Counts, CountsRow, DISCREPANCIES_FILE, Discrepancy, DiscrepancyKind,
    LATENCY_FILE, LatencyRecorder, Manifest, Measure, Outcome, RESOURCES_FILE, RecordError,
    ResourceSample, Run, RunKind, RunWriter, SeriesKey, merge,
};

/// A tiny deterministic generator (Knuth's MMIX LCG), so no rand dependency is needed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn start() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(1_764_408_000_000)
}

fn manifest(start: SystemTime) -> Manifest {
    let mut m = Manifest::new(RunKind::Load, "0.1.0-test");
    m.started_at = start;
    m.targets
        .insert("primary".into(), "http://127.0.0.1:8080".into());
    m.targets
        .insert("candidate".into(), "http://127.0.0.1:8081".into());
    m.phase = Some("1".into());
    m
}

fn keys() -> Vec<SeriesKey> {
    vec![
        SeriesKey::response("primary", "GET", "/api/ticker").unwrap(),
        SeriesKey::response("candidate", "GET", "/api/ticker").unwrap(),
        SeriesKey::response("candidate", "POST", "/api/order, with space;and%").unwrap(),
        SeriesKey::new(
            "candidate",
            "POST",
            "/api/order, with space;and%",
            Measure::Service,
        )
        .unwrap(),
        SeriesKey::new(
            "candidate",
            "GET",
            "/stream\nline",
            Measure::Other("lag".into()),
        )
        .unwrap(),
    ]
}

fn discrepancy(i: u64) -> Discrepancy {
    Discrepancy {
        ts: start() + Duration::from_millis(i * 250),
        method: "POST".into(),
        route: "/api/order".into(),
        flow_id: i.is_multiple_of(2).then(|| format!("flow-{i}")),
        kind: DiscrepancyKind::Value,
        path: "/data/price".into(),
        primary: json!({"p": i}),
        candidate: json!(null),
        signature: "POST /api/order value /data/price".into(),
        class: if i.is_multiple_of(3) {
            Class::Noise
        } else {
            Class::Regression
        },
        label: i.is_multiple_of(3).then(|| "timestamp".to_owned()),
        detail: None,
    }
}

fn recorded(h: &Histogram<u64>) -> Vec<(u64, u64)> {
    h.iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .collect()
}

/// Writes a complete run: 3 intervals of latency and counts, discrepancies, resources.
/// Returns the expected totals per series and counts per route.
fn write_run(
    dir: &Path,
) -> (
    BTreeMap<SeriesKey, Histogram<u64>>,
    BTreeMap<String, Counts>,
) {
    let run = RunWriter::create(dir, manifest(start())).unwrap();
    let rec = run.latency().unwrap();
    let ids: Vec<_> = keys()
        .into_iter()
        .map(|k| (rec.series(k.clone()).unwrap(), k))
        .collect();
    let mut expected: BTreeMap<SeriesKey, Histogram<u64>> = BTreeMap::new();
    let mut counts: BTreeMap<String, Counts> = BTreeMap::new();
    let mut rng = Lcg(7);
    for interval in 1..=3u64 {
        // Two workers on two threads, each with its own shard.
        let per_worker: Vec<Vec<(usize, u64, u16)>> = (0..2)
            .map(|_| {
                (0..200)
                    .map(|_| {
                        let s = rng.below(ids.len() as u64) as usize;
                        let v = 1_000 + rng.below(5_000_000);
                        let status = [200, 201, 404, 503][rng.below(4) as usize];
                        (s, v, status)
                    })
                    .collect()
            })
            .collect();
        for samples in &per_worker {
            for &(s, v, status) in samples {
                let key = &ids[s].1;
                expected
                    .entry(key.clone())
                    .or_insert_with(|| Histogram::new_with_bounds(1, 3_600_000_000_000, 3).unwrap())
                    .record(v)
                    .unwrap();
                counts
                    .entry(format!("{}", key.route_key()))
                    .or_default()
                    .record_status(status);
            }
        }
        std::thread::scope(|scope| {
            for samples in per_worker {
                let rec = rec.clone();
                let ids = &ids;
                scope.spawn(move || {
                    let mut local = rec.local();
                    for (s, v, status) in samples {
                        local.record(ids[s].0, v);
                        local.count_status(ids[s].0, status);
                    }
                });
            }
        });
        rec.write_interval_at(Duration::from_secs(interval))
            .unwrap();
    }
    let dw = run.discrepancies().unwrap();
    for i in 0..4 {
        dw.write(&discrepancy(i)).unwrap();
    }
    let rw = run.resources().unwrap();
    for i in 0..3 {
        rw.write(&ResourceSample::new(
            start() + Duration::from_secs(i),
            "candidate",
            Some(10.0 * i as f64),
            Some(1_000_000 + i),
        ))
        .unwrap();
    }
    run.update_manifest(|m| {
        m.extra.insert("achieved_rate".into(), json!(1_200.5));
    })
    .unwrap();
    run.finish().unwrap();
    (expected, counts)
}

#[test]
fn every_file_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let (expected, counts) = write_run(&dir);
    let run = Run::open(&dir).unwrap();
    assert!(run.warnings.is_empty(), "{:?}", run.warnings);

    assert_eq!(run.manifest.kind, RunKind::Load);
    assert_eq!(run.manifest.started_at, start());
    assert!(run.manifest.ended_at.unwrap() >= start());
    assert_eq!(run.manifest.extra["achieved_rate"], json!(1_200.5));
    assert_eq!(run.manifest.targets.len(), 2);

    assert_eq!(run.latency.len(), expected.len());
    for (key, want) in &expected {
        let got = &run.latency[key];
        assert_eq!(got.total.len(), want.len(), "{key}");
        assert_eq!(recorded(&got.total), recorded(want), "{key}");
        assert_eq!(got.intervals.len(), 3, "{key}");
        let mut sum = Histogram::<u64>::new_with_bounds(1, 3_600_000_000_000, 3).unwrap();
        for (i, iv) in got.intervals.iter().enumerate() {
            assert_eq!(iv.start, Duration::from_secs(i as u64), "{key}");
            assert_eq!(iv.length, Duration::from_secs(1), "{key}");
            let h = iv.histogram().unwrap();
            assert_eq!(iv.summary.count, h.len());
            assert_eq!(iv.summary.p99, h.value_at_quantile(0.99));
            sum.add(&h).unwrap();
        }
        assert_eq!(recorded(&sum), recorded(want), "{key}");
        assert_eq!(
            run.time_at(got.intervals[2].start),
            start() + Duration::from_secs(2)
        );
    }

    let by_route: BTreeMap<String, Counts> = run
        .counts_by_route()
        .into_iter()
        .map(|(k, c)| (k.to_string(), c))
        .collect();
    assert_eq!(by_route, counts);
    assert!(run.counts.iter().all(|r| r.interval_s == 1.0));
    let total: u64 = run.counts_by_target().values().map(|c| c.requests).sum();
    assert_eq!(total, 3 * 2 * 200);

    assert_eq!(
        run.discrepancies,
        (0..4).map(discrepancy).collect::<Vec<_>>()
    );
    assert_eq!(run.resources.len(), 3);
    assert_eq!(run.resources[2].rss_bytes, Some(1_000_002));
    assert_eq!(run.resources[0].time(), start());
    assert!(run.duration().is_some());
}

/// Appends `text` (without a line end) to a file of the run.
fn append(dir: &Path, file: &str, text: &str) {
    let mut data = fs::read(dir.join(file)).unwrap();
    data.extend_from_slice(text.as_bytes());
    fs::write(dir.join(file), data).unwrap();
}

#[test]
fn torn_last_lines_are_skipped_with_a_warning_in_every_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    write_run(&dir);
    let clean = Run::open(&dir).unwrap();

    // Half of a real interval line, as a writer killed mid-flush leaves it.
    let hlog = fs::read_to_string(dir.join(LATENCY_FILE)).unwrap();
    let last = hlog.lines().last().unwrap();
    append(&dir, LATENCY_FILE, &last[..last.len() / 2]);
    append(&dir, COUNTS_FILE, "3.0,1.0,candidate,GET,/api/ticker,5,0,5");
    append(
        &dir,
        DISCREPANCIES_FILE,
        r#"{"ts":"2026-01-01T00:00:00Z","method":"GE"#,
    );
    append(&dir, "resources.csv", "1764408003000,candid");

    let run = Run::open(&dir).unwrap();
    assert_eq!(run.warnings.len(), 4, "{:#?}", run.warnings);
    for file in [
        LATENCY_FILE,
        COUNTS_FILE,
        DISCREPANCIES_FILE,
        RESOURCES_FILE,
    ] {
        assert!(
            run.warnings
                .iter()
                .any(|w| w.contains(file) && w.contains("torn last line")),
            "no warning for {file}: {:#?}",
            run.warnings
        );
    }
    assert_eq!(run.counts, clean.counts);
    assert_eq!(run.discrepancies, clean.discrepancies);
    assert_eq!(run.resources, clean.resources);
    for (key, data) in &clean.latency {
        assert_eq!(recorded(&run.latency[key].total), recorded(&data.total));
    }
}

#[test]
fn truncating_a_file_mid_line_still_reads_back() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    write_run(&dir);
    // Cut the last interval line of the log in the middle: its interval is lost, the rest read.
    let hlog = fs::read(dir.join(LATENCY_FILE)).unwrap();
    let last_line_start = hlog[..hlog.len() - 1]
        .iter()
        .rposition(|&b| b == b'\n')
        .unwrap()
        + 1;
    let cut = last_line_start + (hlog.len() - last_line_start) / 2;
    fs::write(dir.join(LATENCY_FILE), &hlog[..cut]).unwrap();
    let counts = fs::read(dir.join(COUNTS_FILE)).unwrap();
    fs::write(dir.join(COUNTS_FILE), &counts[..counts.len() - 3]).unwrap();

    let run = Run::open(&dir).unwrap();
    assert_eq!(run.warnings.len(), 2, "{:#?}", run.warnings);
    let intervals: usize = run.latency.values().map(|d| d.intervals.len()).sum();
    assert_eq!(intervals, keys().len() * 3 - 1);
}

#[test]
fn unterminated_but_complete_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    write_run(&dir);
    // A complete JSON object without its line end is kept.
    let line = serde_json::to_string(&discrepancy(9)).unwrap();
    append(&dir, DISCREPANCIES_FILE, &line);
    // A complete-looking CSV row without its line end is dropped: it may be cut in a number.
    append(
        &dir,
        COUNTS_FILE,
        "9.0,1.0,candidate,GET,/x,1,0,1,0,0,0,0,0,0,0",
    );
    let run = Run::open(&dir).unwrap();
    assert_eq!(run.discrepancies.len(), 5);
    assert_eq!(run.discrepancies[4], discrepancy(9));
    assert!(!run.counts.iter().any(|r| r.route == "/x"));
    assert_eq!(run.warnings.len(), 1, "{:#?}", run.warnings);
    assert!(run.warnings[0].contains(COUNTS_FILE));
}

/// Replaces 1-based line `n` of a file.
fn replace_line(dir: &Path, file: &str, n: usize, with: &str) {
    let text = fs::read_to_string(dir.join(file)).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines[n - 1] = with;
    fs::write(dir.join(file), lines.join("\n") + "\n").unwrap();
}

fn corrupt_at(dir: &Path) -> (String, usize, String) {
    match Run::open(dir) {
        Err(RecordError::Corrupt { file, line, .. }) => {
            let msg = Run::open(dir).unwrap_err().to_string();
            (
                file.file_name().unwrap().to_string_lossy().into_owned(),
                line,
                msg,
            )
        }
        other => panic!("expected a Corrupt error, got {other:?}"),
    }
}

#[test]
fn a_corrupt_middle_line_is_an_error_naming_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();

    let dir = tmp.path().join("counts");
    write_run(&dir);
    replace_line(&dir, COUNTS_FILE, 3, "1,2,3");
    let (file, line, msg) = corrupt_at(&dir);
    assert_eq!((file.as_str(), line), (COUNTS_FILE, 3));
    assert!(
        msg.ends_with(
            "counts.csv line 3: expected 15 columns, found 3 — the file was edited or written \
             by another tool"
        ),
        "{msg}"
    );

    let dir = tmp.path().join("counts-number");
    write_run(&dir);
    replace_line(
        &dir,
        COUNTS_FILE,
        2,
        "0.0,1.0,candidate,GET,/x,lots,0,1,0,0,0,0,0,0,0",
    );
    let (file, line, msg) = corrupt_at(&dir);
    assert_eq!((file.as_str(), line), (COUNTS_FILE, 2));
    assert!(msg.contains("column 6 (requests)"), "{msg}");

    let dir = tmp.path().join("hlog");
    write_run(&dir);
    // Line 8 is the second interval line (6 header lines).
    replace_line(
        &dir,
        LATENCY_FILE,
        8,
        "Tag=candidate:GET:/x,0.000,1.000,5.0,bm90IGEgaGlzdG9ncmFt",
    );
    let (file, line, msg) = corrupt_at(&dir);
    assert_eq!((file.as_str(), line), (LATENCY_FILE, 8));
    assert!(msg.contains("does not decode"), "{msg}");

    let dir = tmp.path().join("hlog-garbage");
    write_run(&dir);
    replace_line(&dir, LATENCY_FILE, 9, "garbage");
    assert_eq!(corrupt_at(&dir).1, 9);

    let dir = tmp.path().join("ndjson");
    write_run(&dir);
    replace_line(&dir, DISCREPANCIES_FILE, 2, r#"{"ts":"yesterday"}"#);
    let (file, line, _) = corrupt_at(&dir);
    assert_eq!((file.as_str(), line), (DISCREPANCIES_FILE, 2));

    let dir = tmp.path().join("ndjson-kind");
    write_run(&dir);
    let mut d = serde_json::to_value(discrepancy(1)).unwrap();
    d["kind"] = json!("vibes");
    replace_line(&dir, DISCREPANCIES_FILE, 3, &d.to_string());
    let (_, line, msg) = corrupt_at(&dir);
    assert_eq!(line, 3);
    assert!(msg.contains("unknown variant `vibes`"), "{msg}");

    let dir = tmp.path().join("resources");
    write_run(&dir);
    replace_line(&dir, RESOURCES_FILE, 2, "yesterday,candidate,1,2");
    let (file, line, _) = corrupt_at(&dir);
    assert_eq!((file.as_str(), line), (RESOURCES_FILE, 2));

    let dir = tmp.path().join("header");
    write_run(&dir);
    replace_line(&dir, RESOURCES_FILE, 1, "time,target,cpu");
    let (_, line, msg) = corrupt_at(&dir);
    assert_eq!(line, 1);
    assert!(
        msg.contains("lacks column(s) unix_ms, cpu_percent, rss_bytes"),
        "{msg}"
    );
}

#[test]
fn a_killed_producer_leaves_a_readable_run() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let run = RunWriter::create(&dir, manifest(start())).unwrap();
    let rec = run.latency().unwrap();
    let id = rec.series(keys()[1].clone()).unwrap();
    let mut local = rec.local();
    for v in 1..=100 {
        local.record(id, v * 1_000);
        local.count(id, Outcome::Status2xx);
    }
    local.flush();
    rec.write_interval_at(Duration::from_secs(1)).unwrap();
    local.record(id, 999_999_999);
    run.discrepancies().unwrap().write(&discrepancy(1)).unwrap();
    // A kill: nothing after this point runs, no destructor, no finish.
    std::mem::forget(local);
    std::mem::forget(rec);
    std::mem::forget(run);

    let back = Run::open(&dir).unwrap();
    assert_eq!(back.latency[&keys()[1]].total.len(), 100);
    assert_eq!(back.counts_by_target()["candidate"].status_2xx, 100);
    assert_eq!(back.discrepancies.len(), 1);
    assert_eq!(back.warnings.len(), 1, "{:#?}", back.warnings);
    assert!(back.warnings[0].contains("no end time"));
}

#[test]
fn dropping_a_producer_without_finish_keeps_every_sample() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let run = RunWriter::create(&dir, manifest(start())).unwrap();
    let rec = run.latency().unwrap();
    let id = rec.series(keys()[0].clone()).unwrap();
    let mut local = rec.local();
    for v in 1..=10 {
        local.record(id, v);
    }
    drop(local);
    drop(rec);
    drop(run);
    let back = Run::open(&dir).unwrap();
    assert_eq!(back.latency[&keys()[0]].total.len(), 10);
}

/// Records the same random samples into `all` and, split at random, into `a` or `b`; all three
/// write the same intervals.
fn record_split(all: &LatencyRecorder, a: &LatencyRecorder, b: &LatencyRecorder, seed: u64) {
    let keys = keys();
    let ids = |r: &LatencyRecorder| -> Vec<_> {
        keys.iter().map(|k| r.series(k.clone()).unwrap()).collect()
    };
    let (ids_all, ids_a, ids_b) = (ids(all), ids(a), ids(b));
    let (mut l_all, mut l_a, mut l_b) = (all.local(), a.local(), b.local());
    let mut rng = Lcg(seed);
    for interval in 1..=5u64 {
        for _ in 0..2_000 {
            let s = rng.below(keys.len() as u64) as usize;
            // Log-uniform-ish from 100 ns to ~100 s, plus the odd over-range value.
            let v = match rng.below(100) {
                0 => 5_000_000_000_000,
                _ => (100 + rng.below(900)) * 10u64.pow(rng.below(9) as u32),
            };
            let outcome = match rng.below(10) {
                0 => Outcome::Timeout,
                1 => Outcome::ConnectError,
                2 => Outcome::ShadowDrop,
                3 => Outcome::Status5xx,
                _ => Outcome::Status2xx,
            };
            let corrected = rng.below(5) == 0;
            l_all.count(ids_all[s], outcome);
            let (local, ids) = if rng.below(2) == 0 {
                (&mut l_a, &ids_a)
            } else {
                (&mut l_b, &ids_b)
            };
            local.count(ids[s], outcome);
            if corrected {
                l_all.record_correct(ids_all[s], v.min(50_000_000), 1_000_000);
                local.record_correct(ids[s], v.min(50_000_000), 1_000_000);
            } else {
                l_all.record(ids_all[s], v);
                local.record(ids[s], v);
            }
        }
        for l in [&mut l_all, &mut l_a, &mut l_b] {
            l.flush();
        }
        for r in [all, a, b] {
            r.write_interval_at(Duration::from_secs(interval)).unwrap();
        }
    }
}

fn sorted_rows(mut rows: Vec<CountsRow>) -> Vec<CountsRow> {
    rows.sort_by(|x, y| {
        (x.start(), x.route_key(), x.length()).cmp(&(y.start(), y.route_key(), y.length()))
    });
    rows
}

#[test]
fn merging_two_runs_equals_recording_everything_in_one() {
    let tmp = tempfile::tempdir().unwrap();
    let writers: Vec<RunWriter> = ["all", "a", "b"]
        .iter()
        .map(|name| RunWriter::create(tmp.path().join(name), manifest(start())).unwrap())
        .collect();
    let recs: Vec<LatencyRecorder> = writers.iter().map(|w| w.latency().unwrap()).collect();
    record_split(&recs[0], &recs[1], &recs[2], 0x5eed);
    drop(recs);
    for (i, w) in writers.iter().enumerate() {
        w.update_manifest(|m| {
            m.extra.insert("worker".into(), json!(i));
        })
        .unwrap();
        w.finish().unwrap();
    }
    let all = Run::open(tmp.path().join("all")).unwrap();
    let a = Run::open(tmp.path().join("a")).unwrap();
    let b = Run::open(tmp.path().join("b")).unwrap();
    let merged = merge(&[a.clone(), b.clone()]).unwrap();

    assert_eq!(merged.latency.len(), all.latency.len());
    for (key, want) in &all.latency {
        let got = &merged.latency[key];
        assert_eq!(got.total.len(), want.total.len(), "{key}");
        assert_eq!(recorded(&got.total), recorded(&want.total), "{key}");
        // Same start times, so the intervals line up and add exactly too.
        assert_eq!(got.intervals.len(), want.intervals.len(), "{key}");
        for (g, w) in got.intervals.iter().zip(&want.intervals) {
            assert_eq!((g.start, g.length), (w.start, w.length), "{key}");
            assert_eq!(g.summary, w.summary, "{key}");
            assert_eq!(
                recorded(&g.histogram().unwrap()),
                recorded(&w.histogram().unwrap()),
                "{key}"
            );
        }
    }
    // The split is real: each part holds only some of the requests.
    let requests = |r: &Run| r.counts.iter().map(|c| c.requests).sum::<u64>();
    assert!(requests(&a) > 0 && requests(&b) > 0);
    assert_eq!(requests(&a) + requests(&b), requests(&all));
    assert_eq!(
        sorted_rows(merged.counts.clone()),
        sorted_rows(all.counts.clone())
    );
    assert_eq!(merged.counts_by_route(), all.counts_by_route());

    assert_eq!(merged.manifest.started_at, start());
    assert_eq!(merged.manifest.targets, all.manifest.targets);
    assert_eq!(merged.manifest.extra["a"], json!({"worker": 1}));
    assert_eq!(merged.manifest.extra["b"], json!({"worker": 2}));
    assert_eq!(merged.sources.len(), 2);
    assert!(merged.warnings.is_empty(), "{:?}", merged.warnings);
}

#[test]
fn merging_runs_with_different_starts_rebases_intervals() {
    let tmp = tempfile::tempdir().unwrap();
    let later = start() + Duration::from_millis(1_500);
    let wa = RunWriter::create(tmp.path().join("a"), manifest(start())).unwrap();
    let mut mb = manifest(later);
    mb.targets
        .insert("shadow".into(), "http://127.0.0.1:9000".into());
    mb.phase = Some("2".into());
    let wb = RunWriter::create(tmp.path().join("b"), mb).unwrap();
    let key = keys()[1].clone();
    for (w, v) in [(&wa, 1_000), (&wb, 2_000)] {
        let rec = w.latency().unwrap();
        let id = rec.series(key.clone()).unwrap();
        let mut local = rec.local();
        local.record(id, v);
        local.count_status(id, 200);
        drop(local);
        rec.write_interval_at(Duration::from_secs(1)).unwrap();
        w.finish().unwrap();
    }
    let a = Run::open(tmp.path().join("a")).unwrap();
    let b = Run::open(tmp.path().join("b")).unwrap();
    let merged = merge(&[b, a]).unwrap();
    assert_eq!(merged.manifest.started_at, start());
    assert_eq!(merged.manifest.targets.len(), 3);
    assert_eq!(merged.latency[&key].total.len(), 2);
    let starts: Vec<_> = merged.latency[&key]
        .intervals
        .iter()
        .map(|iv| iv.start)
        .collect();
    assert_eq!(starts, vec![Duration::ZERO, Duration::from_millis(1_500)]);
    let row_starts: Vec<f64> = merged.counts.iter().map(|r| r.interval_start_s).collect();
    assert_eq!(row_starts, vec![0.0, 1.5]);
    assert_eq!(merged.warnings.len(), 1, "{:?}", merged.warnings);
    assert!(merged.warnings[0].contains("phase"));
}

#[test]
fn a_scenario_differing_across_run_kinds_is_not_a_warning_but_within_one_kind_it_is() {
    let tmp = tempfile::tempdir().unwrap();
    let write = |name: &str, kind: RunKind, scenario: &str| {
        let mut m = manifest(start());
        m.kind = kind;
        m.scenario = Some(scenario.into());
        RunWriter::create(tmp.path().join(name), m)
            .unwrap()
            .finish()
            .unwrap();
        Run::open(tmp.path().join(name)).unwrap()
    };
    let load = write("load", RunKind::Load, "scenarios/smoke.load.toml");
    let mirror = write("mirror", RunKind::Mirror, "scenarios/veloz.toml");
    let other_load = write("load2", RunKind::Load, "scenarios/order-flow.load.toml");

    let merged = merge(&[load.clone(), mirror]).unwrap();
    assert!(merged.warnings.is_empty(), "{:?}", merged.warnings);

    let merged = merge(&[load, other_load]).unwrap();
    assert_eq!(merged.warnings.len(), 1, "{:?}", merged.warnings);
    let w = &merged.warnings[0];
    assert!(
        w.contains("scenario scenarios/smoke.load.toml") && w.contains("order-flow.load.toml"),
        "{w}"
    );
}
