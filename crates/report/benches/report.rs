//! The report on a large run: 10 million latency samples across 40 series (2 targets × 20
//! routes, 60 one-second intervals), from opening the run directory to the rendered files.
//!
//! `cargo bench -p shadowgate-report --bench report`

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use criterion::{Criterion, criterion_group, criterion_main};
use shadowgate_record::{LatencyRecorder, Manifest, Measure, Outcome, RunKind, SeriesKey};
use shadowgate_report::render;
use shadowgate_report::{Criteria, Measurements, Options, evaluate};

const SAMPLES: u64 = 10_000_000;
const ROUTES: u64 = 20;
const INTERVALS: u64 = 60;

/// Writes the large run once.
fn write_run(dir: &Path) {
    let start = UNIX_EPOCH + Duration::from_secs(1_764_408_000);
    let mut m = Manifest::new(RunKind::Validate, "bench");
    m.started_at = start;
    m.ended_at = Some(start + Duration::from_secs(INTERVALS));
    m.targets
        .insert("primary".into(), "http://127.0.0.1:8080".into());
    m.targets
        .insert("candidate".into(), "http://127.0.0.1:8081".into());
    m.write(dir).unwrap();
    let rec = LatencyRecorder::create(dir, start, Duration::from_secs(1)).unwrap();
    let mut ids = Vec::new();
    for target in ["primary", "candidate"] {
        for r in 0..ROUTES {
            let key = SeriesKey::new(target, "GET", format!("/api/r{r}"), Measure::Response);
            ids.push(rec.series(key.unwrap()).unwrap());
        }
    }
    let per_interval = SAMPLES / INTERVALS;
    let mut local = rec.local();
    let mut x = 88_172_645_463_325_252_u64;
    for k in 0..INTERVALS {
        for i in 0..per_interval {
            // xorshift: cheap, deterministic
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let id = ids[(i % ids.len() as u64) as usize];
            local.record(id, 50_000 + x % 2_000_000);
            local.count(id, Outcome::Status2xx);
        }
        local.flush();
        rec.write_interval_at(Duration::from_secs(k + 1)).unwrap();
    }
    drop(local);
    rec.finish().unwrap();
}

fn bench(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("big");
    std::fs::create_dir_all(&dir).unwrap();
    write_run(&dir);
    let dirs = vec![dir.clone()];
    let criteria = Criteria::builtin();
    let opts = Options {
        phase: "overall".into(),
        tool_version: "bench".into(),
        alpha: None,
    };
    let mut g = c.benchmark_group("report_10M_samples_40_series");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.bench_function("open_only", |b| {
        b.iter(|| black_box(shadowgate_record::Run::open(&dir).unwrap().latency.len()))
    });
    let m = Measurements::open(&dirs).unwrap();
    g.bench_function("evaluate_only", |b| {
        b.iter(|| black_box(evaluate(&criteria, &m, &opts).unwrap().criteria.len()))
    });
    g.bench_function("open_merge_evaluate_render_text", |b| {
        b.iter(|| {
            let m = Measurements::open(&dirs).unwrap();
            let r = evaluate(&criteria, &m, &opts).unwrap();
            let mut out = Vec::new();
            render::term::render(&r, &mut out).unwrap();
            render::json::render(&r, &mut out).unwrap();
            render::markdown::render(&r, &mut out).unwrap();
            render::csv::render(&r, &mut out).unwrap();
            render::junit::render(&r, &mut out).unwrap();
            black_box(out.len())
        })
    });
    g.bench_function("open_merge_evaluate_render_all_with_html", |b| {
        b.iter(|| {
            let m = Measurements::open(&dirs).unwrap();
            let r = evaluate(&criteria, &m, &opts).unwrap();
            let mut out = Vec::new();
            render::term::render(&r, &mut out).unwrap();
            render::json::render(&r, &mut out).unwrap();
            render::markdown::render(&r, &mut out).unwrap();
            render::csv::render(&r, &mut out).unwrap();
            render::junit::render(&r, &mut out).unwrap();
            render::html::render(&r, &m, &mut out).unwrap();
            black_box(out.len())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
