//! Order flows, event streams and the audit log in the report: lines land in their section
//! with the right counts and examples, the SSE `;lag` series stays out of request latency,
//! criteria gate on the new kinds, and every format shows the sections.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use shadowgate_record::{
    Class, Discrepancy, DiscrepancyKind as K, DiscrepancyWriter, LatencyRecorder, Manifest,
    Measure, Outcome, RunKind, SeriesKey,
};
use shadowgate_report::model::{OrderPair, SectionKind};
use shadowgate_report::render;
use shadowgate_report::{Criteria, Measurements, Options, Report, Status, evaluate};

fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(1_764_408_000_000)
}

fn line(kind: K, method: &str, route: &str, class: Class) -> Discrepancy {
    Discrepancy {
        ts: t0() + Duration::from_millis(100),
        method: method.into(),
        route: route.into(),
        flow_id: None,
        kind,
        path: String::new(),
        primary: Value::Null,
        candidate: Value::Null,
        signature: format!("{method} {route} {}", kind.as_str()),
        class,
        label: None,
        detail: None,
    }
}

fn flow_line(kind: K, pid: &str, cid: &str, steps: &[(&str, Value, Value)]) -> Discrepancy {
    let mut d = line(kind, "POST", "/api/order", Class::Regression);
    d.flow_id = Some(pid.into());
    d.path = format!("/{}", steps[0].0);
    d.primary = Value::Object(
        steps
            .iter()
            .map(|(s, p, _)| ((*s).to_owned(), p.clone()))
            .collect(),
    );
    d.candidate = Value::Object(
        steps
            .iter()
            .map(|(s, _, c)| ((*s).to_owned(), c.clone()))
            .collect(),
    );
    d.detail = Some(format!(
        "order {pid} on the primary, {cid} on the candidate; differing steps: {}",
        steps.iter().map(|s| s.0).collect::<Vec<_>>().join(", ")
    ));
    d
}

/// Lag samples of the candidate's stream: 1..=100 ms.
const LAG_MS: std::ops::RangeInclusive<u64> = 1..=100;

/// A mirror run: exchanges, order flows, one stream route with its lag series and a gap.
fn write_mirror(dir: &Path, with_lag: bool) {
    std::fs::create_dir_all(dir).unwrap();
    let mut m = Manifest::new(RunKind::Mirror, "0.1.0-test");
    m.started_at = t0();
    m.ended_at = Some(t0() + Duration::from_secs(2));
    m.targets = BTreeMap::from([
        ("primary".to_owned(), "http://127.0.0.1:8080".to_owned()),
        ("candidate".to_owned(), "http://127.0.0.1:8081".to_owned()),
    ]);
    m.extra.insert(
        "mirror".into(),
        json!({
            "coverage": 1.0,
            "streams": [{
                "route": "/api/stream", "clients": 0, "clients_total": 3,
                "candidate_subscriptions": 2, "candidate_connected": true, "reconnects": 1,
                "gaps": 1, "gap_ms": 1500, "events_in_gaps": 4,
                "counts": {"primary_events": 60, "candidate_events": 57, "ignored_events": 0,
                    "matched": 50, "different": 2, "different_noise": 0, "late": 1,
                    "missing": 3, "extra": 1, "absorbed": 0, "unreported": 0, "evicted": 0},
                "candidate_first": 0, "lag_p50_us": 50000, "lag_p99_us": 99000,
                "tap_overflows": 0, "lines": 8, "regression_lines": 8, "noise_lines": 0
            }],
            "flows": {
                "tracked": 20, "compared": 19, "matched": 16, "differing": 3, "untracked": 0,
                "submit_failed": 1, "open": 0, "primary_polls": 0, "candidate_polls": 0,
                "noise": 2, "cancel_fill_races": 2, "completed_by_poll": 5, "follow_up_lost": 4,
                "poll_unauthorized": 3, "poll_unauthorized_flows": 1,
                "by_kind": {"state-mismatch": 2, "fill-mismatch": 1}, "groups": [],
                "ids": {"learned": 19, "rewritten": 12, "unmapped": 2, "timed_out": 1,
                    "expired": 5, "evicted": 0, "entries": 14}
            }
        }),
    );
    m.write(dir).unwrap();

    let rec = LatencyRecorder::create(dir, t0(), Duration::from_secs(1)).unwrap();
    let series = |target: &str, route: &str, measure: Measure| {
        rec.series(SeriesKey::new(target, "GET", route, measure).unwrap())
            .unwrap()
    };
    let cand = series("candidate", "/api/market", Measure::Response);
    let prim = series("primary", "/api/market", Measure::Response);
    let mut local = rec.local();
    for i in 0..100_u64 {
        local.record(cand, 100_000 + i * 1_000);
        local.count(cand, Outcome::Status2xx);
        local.record(prim, 200_000 + i * 1_000);
        local.count(prim, Outcome::Status2xx);
    }
    if with_lag {
        // Seconds-long lag: were it read as request latency, every figure would move.
        let lag = series("candidate", "/api/stream", Measure::Other("lag".into()));
        for ms in LAG_MS {
            local.record(lag, ms * 1_000_000);
        }
    }
    local.flush();
    rec.write_interval_at(Duration::from_secs(1)).unwrap();
    drop(local);
    rec.finish().unwrap();

    let w = DiscrepancyWriter::create(dir).unwrap();
    let mut lines = vec![
        line(K::Value, "GET", "/api/market", Class::Regression),
        line(K::Value, "GET", "/api/market", Class::Noise),
        flow_line(
            K::StateMismatch,
            "web-1",
            "veloz_1_1",
            &[
                ("ack", json!("ACCEPTED"), json!("REJECTED")),
                ("final/status", json!("FILLED"), json!("REJECTED")),
            ],
        ),
        flow_line(
            K::StateMismatch,
            "web-2",
            "veloz_1_2",
            &[
                ("ack", json!("ACCEPTED"), json!("REJECTED")),
                ("final/status", json!("FILLED"), json!("REJECTED")),
            ],
        ),
        flow_line(
            K::FillMismatch,
            "web-3",
            "veloz_1_3",
            &[("fills/0/price", json!(100.0), json!(101.5))],
        ),
    ];
    // A follow-up whose submit did not answer in time, and one with no mapped id.
    let mut timeout = line(K::Timeout, "DELETE", "/api/orders/{id}", Class::Regression);
    timeout.flow_id = Some("web-4".into());
    timeout.detail = Some(
        "order id web-4: not sent to the candidate, the candidate did not answer its submit in time"
            .into(),
    );
    lines.push(timeout);
    let mut unmapped = line(K::NotCompared, "DELETE", "/api/orders/{id}", Class::Ignored);
    unmapped.flow_id = Some("web-5".into());
    unmapped.detail = Some("order id web-5: not sent to the candidate, no candidate id".into());
    lines.push(unmapped);
    // Streams: 3 missing, 1 extra, 2 different, 1 late, 1 gap.
    for (kind, n) in [
        (K::SseMissing, 3),
        (K::SseExtra, 1),
        (K::SseDifferent, 2),
        (K::SseLate, 1),
    ] {
        for _ in 0..n {
            let mut d = line(kind, "GET", "/api/stream", Class::Regression);
            d.flow_id = Some("sse:fill:web-1".into());
            d.path = "/price".into();
            lines.push(d);
        }
    }
    let mut gap = line(K::NotCompared, "GET", "/api/stream", Class::Regression);
    gap.detail = Some("candidate stream gap of 1500 ms (reset; 1 reconnect attempt(s))".into());
    lines.push(gap);
    for d in &lines {
        w.write(d).unwrap();
    }
    w.flush().unwrap();
}

/// An `audit-diff` run: one missing entry and one mismatch.
fn write_audit(dir: &Path, findings: bool) {
    std::fs::create_dir_all(dir).unwrap();
    let mut m = Manifest::new(RunKind::AuditDiff, "0.1.0-test");
    m.started_at = t0();
    m.ended_at = Some(t0() + Duration::from_secs(1));
    m.extra.insert(
        "audit".into(),
        json!({
            "consistent": !findings,
            "primary": {"format": "python", "entries": 10, "skipped": 0, "unparseable": 0, "torn": 0},
            "candidate": {"format": "cpp", "entries": 9, "skipped": 0, "unparseable": 0, "torn": 0},
            "actions": {
                "ORDER_SUBMIT": {"primary": 6, "candidate": 5, "matched": 5,
                    "missing": u64::from(findings), "extra": 0, "mismatched": u64::from(findings)},
                "ORDER_CANCEL": {"primary": 4, "candidate": 4, "matched": 4,
                    "missing": 0, "extra": 0, "mismatched": 0}
            }
        }),
    );
    m.write(dir).unwrap();
    let w = DiscrepancyWriter::create(dir).unwrap();
    if findings {
        for kind in [K::AuditMissing, K::AuditMismatch] {
            let mut d = line(kind, "AUDIT", "audit:ORDER_SUBMIT", Class::Regression);
            d.flow_id = Some("web-1".into());
            d.path = "/qty".into();
            w.write(&d).unwrap();
        }
    }
    w.flush().unwrap();
}

struct Fixture {
    _tmp: tempfile::TempDir,
    mirror: PathBuf,
    audit: PathBuf,
    clean_audit: PathBuf,
    no_lag: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let mirror = tmp.path().join("mirror");
    let audit = tmp.path().join("audit");
    let clean_audit = tmp.path().join("audit-clean");
    let no_lag = tmp.path().join("mirror-no-lag");
    write_mirror(&mirror, true);
    write_mirror(&no_lag, false);
    write_audit(&audit, true);
    write_audit(&clean_audit, false);
    Fixture {
        _tmp: tmp,
        mirror,
        audit,
        clean_audit,
        no_lag,
    }
}

const CRITERIA: &str = r#"
version = 1
[defaults]
target = "candidate"
[phases.t]
title = "sections"
criteria = [
  { name = "flows", expr = 'discrepancies{kind="flow"} == 0' },
  { name = "streams", expr = 'discrepancies{kind="stream"} == 0' },
  { name = "sse kinds only", expr = 'discrepancies{kind="sse"} == 0' },
  { name = "audit", expr = 'discrepancies{kind="audit"} == 0' },
  { name = "exchanges", expr = 'discrepancies{kind="exchange"} == 0' },
  { name = "flows, any class", expr = 'discrepancies{kind="flow", class="any"} == 0' },
  { name = "lag p99", expr = 'sse_lag_p99 < "500ms"' },
  { name = "lag max", expr = 'sse_lag_max < "50ms"' },
  { name = "lag p50 on the stream route", expr = 'sse_lag_p50{route="GET /api/stream"} < "51ms"' },
  { name = "request p99", expr = 'p99 < "1ms"' },
  { name = "each route", expr = 'p99 < "1ms"', route = "*" },
]
"#;

fn report(dirs: &[&Path]) -> (Report, Measurements) {
    let dirs: Vec<PathBuf> = dirs.iter().map(|d| d.to_path_buf()).collect();
    let m = Measurements::open(&dirs).unwrap();
    let c = Criteria::parse(CRITERIA, "test.toml").unwrap();
    let r = evaluate(
        &c,
        &m,
        &Options {
            phase: "t".into(),
            tool_version: "0.1.0-test".into(),
            alpha: None,
        },
    )
    .unwrap();
    (r, m)
}

fn criterion<'a>(r: &'a Report, name: &str) -> &'a shadowgate_report::model::CriterionResult {
    r.criteria
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no criterion {name}"))
}

fn measured(r: &Report, name: &str) -> f64 {
    criterion(r, name)
        .measured
        .as_ref()
        .unwrap_or_else(|| panic!("{name} has no value: {:?}", criterion(r, name)))
        .value
}

#[test]
fn lines_land_in_their_sections_with_counts_and_examples() {
    let f = fixture();
    let (r, _) = report(&[&f.mirror, &f.audit]);
    let d = &r.discrepancies;
    let totals = |s| {
        let t = d.section(s).unwrap();
        (t.total, t.regression, t.noise, t.ignored)
    };
    assert_eq!(totals(SectionKind::Exchange), (2, 1, 1, 0));
    // 3 flow lines + the timeout (regressions) + the unmapped note (ignored).
    assert_eq!(totals(SectionKind::Flow), (5, 4, 0, 1));
    // 7 sse-* lines + the gap.
    assert_eq!(totals(SectionKind::Stream), (8, 8, 0, 0));
    assert_eq!(totals(SectionKind::Audit), (2, 2, 0, 0));
    assert_eq!(d.total, 17);
    assert_eq!(d.flow, 5);
    let order: Vec<SectionKind> = d.sections.iter().map(|t| t.section).collect();
    assert_eq!(order, SectionKind::ALL);

    // Flow groups: by kind and differing steps, with example order-id pairs.
    let flows: Vec<_> = d.groups_in(SectionKind::Flow).collect();
    let state = flows.iter().find(|g| g.kind == "state-mismatch").unwrap();
    assert_eq!(state.count, 2);
    assert_eq!(state.steps, ["ack", "final/status"]);
    assert_eq!(
        state.orders,
        [
            OrderPair {
                primary: "web-1".into(),
                candidate: Some("veloz_1_1".into())
            },
            OrderPair {
                primary: "web-2".into(),
                candidate: Some("veloz_1_2".into())
            }
        ]
    );
    let fill = flows.iter().find(|g| g.kind == "fill-mismatch").unwrap();
    assert_eq!(fill.steps, ["fills/0/price"]);
    assert_eq!(fill.orders[0].candidate.as_deref(), Some("veloz_1_3"));
    let timeout = flows.iter().find(|g| g.kind == "timeout").unwrap();
    assert_eq!(timeout.orders[0].primary, "web-4");
    assert_eq!(timeout.orders[0].candidate, None);
    assert!(flows.iter().any(|g| g.kind == "not-compared"));

    // Streams: one group per kind, the gap among them; the route's counters and lag.
    let streams: Vec<_> = d.groups_in(SectionKind::Stream).collect();
    let count = |k: &str| streams.iter().find(|g| g.kind == k).map(|g| g.count);
    assert_eq!(count("sse-missing"), Some(3));
    assert_eq!(count("sse-extra"), Some(1));
    assert_eq!(count("sse-different"), Some(2));
    assert_eq!(count("sse-late"), Some(1));
    assert_eq!(count("not-compared"), Some(1));
    assert_eq!(d.streams.len(), 1);
    let s = &d.streams[0];
    assert_eq!(s.route, "/api/stream");
    assert_eq!(
        (
            s.matched,
            s.missing,
            s.extra,
            s.different,
            s.late,
            s.gaps,
            s.reconnects
        ),
        (50, 3, 1, 2, 1, 1, 1)
    );
    assert_eq!(
        (s.clients, s.candidate_subscriptions, s.gap_ms),
        (3, 2, 1500)
    );
    let lag = s.lag.unwrap();
    assert_eq!(lag.count, 100);
    // 3 significant digits: within 0.1 % of 50 ms, 99 ms and 100 ms.
    for (got, want) in [(lag.p50_ns, 50e6), (lag.p99_ns, 99e6), (lag.max_ns, 100e6)] {
        assert!((got as f64 - want).abs() <= want * 1e-3, "{got} vs {want}");
    }

    // Id correlation and flow counters from the manifest.
    let ids = d.ids.unwrap();
    assert_eq!(
        (ids.mapped, ids.unmapped, ids.timed_out, ids.expired),
        (19, 2, 1, 5)
    );
    let fl = d.flows.as_ref().unwrap();
    assert_eq!((fl.tracked, fl.compared, fl.differing), (20, 19, 3));
    assert_eq!(
        (fl.noise, fl.cancel_fill_races, fl.follow_up_lost),
        (2, 2, 4)
    );
    assert_eq!(
        (
            fl.completed_by_poll,
            fl.poll_unauthorized,
            fl.poll_unauthorized_flows
        ),
        (5, 3, 1)
    );
    assert_eq!(fl.by_kind.get("fill-mismatch"), Some(&1));

    // Audit: lines and the audit-diff counters.
    let audit: Vec<_> = d.groups_in(SectionKind::Audit).collect();
    assert_eq!(audit.len(), 2);
    assert!(audit.iter().all(|g| g.route == "audit:ORDER_SUBMIT"));
    let a = d.audit.unwrap();
    assert_eq!(
        (
            a.runs,
            a.consistent,
            a.primary_entries,
            a.missing,
            a.mismatched
        ),
        (1, false, 10, 1, 1)
    );
}

#[test]
fn lag_series_do_not_change_request_latency() {
    let f = fixture();
    let (with, m) = report(&[&f.mirror]);
    let (without, _) = report(&[&f.no_lag]);
    let lat = |r: &Report| -> Vec<_> {
        r.targets
            .iter()
            .map(|t| (t.name.clone(), t.latency, t.requests))
            .collect()
    };
    assert_eq!(lat(&with), lat(&without));
    let routes = |r: &Report| -> Vec<_> {
        r.routes
            .iter()
            .map(|x| (x.target.clone(), x.route.clone(), x.latency))
            .collect()
    };
    assert_eq!(routes(&with), routes(&without));
    assert!(with.routes.iter().all(|x| x.route != "/api/stream"));
    let cmp = |r: &Report| -> Vec<String> {
        r.comparison
            .as_ref()
            .unwrap()
            .routes
            .iter()
            .map(|x| x.route.clone())
            .collect()
    };
    assert_eq!(cmp(&with), ["*", "/api/market"]);
    assert_eq!(cmp(&with), cmp(&without));
    assert_eq!(
        measured(&with, "request p99"),
        measured(&without, "request p99")
    );
    assert!(measured(&with, "request p99") < 1e6);
    // `route = "*"` expands to request routes only: no stream route without samples.
    let each: Vec<_> = with
        .criteria
        .iter()
        .filter(|c| c.name.starts_with("each route"))
        .collect();
    assert_eq!(each.len(), 1, "{each:?}");
    assert_eq!(each[0].status, Status::Pass);
    // The lag is only where it belongs.
    assert!(
        m.targets()
            .iter()
            .all(|t| t == "candidate" || t == "primary")
    );
    assert!(without.discrepancies.streams[0].lag.is_none());
}

#[test]
fn criteria_gate_on_flows_streams_audit_and_lag() {
    let f = fixture();
    let (r, _) = report(&[&f.mirror]);
    assert_eq!(criterion(&r, "flows").status, Status::Fail);
    assert_eq!(measured(&r, "flows"), 4.0);
    assert_eq!(measured(&r, "flows, any class"), 5.0);
    assert_eq!(criterion(&r, "streams").status, Status::Fail);
    assert_eq!(measured(&r, "streams"), 8.0, "the gap counts");
    assert_eq!(measured(&r, "sse kinds only"), 7.0);
    assert_eq!(measured(&r, "exchanges"), 1.0);
    // Without an audit-diff run the audit criterion cannot pass.
    let audit = criterion(&r, "audit");
    assert_eq!(audit.status, Status::NoData);
    assert!(audit.detail.as_deref().unwrap().contains("audit-diff"));
    // Lag 1..=100 ms: P99 99 ms < 500 ms; max 100 ms is not < 50 ms; P50 50 ms (its HDR bucket's
    // top, within 0.1 %) < 51 ms.
    assert_eq!(criterion(&r, "lag p99").status, Status::Pass);
    assert_eq!(criterion(&r, "lag max").status, Status::Fail);
    assert_eq!(
        criterion(&r, "lag p50 on the stream route").status,
        Status::Pass
    );
    assert_eq!(criterion(&r, "lag p99").metric, "sse_lag_p99");

    let (r, _) = report(&[&f.mirror, &f.audit]);
    assert_eq!(criterion(&r, "audit").status, Status::Fail);
    assert_eq!(measured(&r, "audit"), 2.0);
    let (r, _) = report(&[&f.mirror, &f.clean_audit]);
    assert_eq!(criterion(&r, "audit").status, Status::Pass);

    // Without a stream there is no lag to judge.
    let (r, _) = report(&[&f.no_lag]);
    assert_eq!(criterion(&r, "lag p99").status, Status::NoData);
}

#[test]
fn criteria_errors_list_the_valid_names() {
    let bad = r#"
version = 1
[phases.t]
title = "bad"
criteria = [
  { expr = 'discrepancies{kind="streams"} == 0' },
  { expr = 'sse_lagp99 < "1s"' },
  { expr = 'sse_lag_p99 < 0.5' },
]
"#;
    let e = Criteria::parse(bad, "bad.toml").unwrap_err().to_string();
    assert!(
        e.contains("kind `streams` is unknown")
            && e.contains("exchange, flow, stream, audit")
            && e.contains("sse-late"),
        "{e}"
    );
    assert!(
        e.contains("unknown metric `sse_lagp99`") && e.contains("sse_lag_p99"),
        "{e}"
    );
    assert!(e.contains("sse_lag_p99"), "{e}");
    assert!(e.contains("3 problems"), "every error at once: {e}");
}

#[test]
fn phase_three_gates_on_consistent_audit_logs() {
    let c = Criteria::builtin();
    let p3 = c.phase("3").unwrap();
    let audit = p3
        .criteria
        .iter()
        .find(|x| x.name == "audit logs consistent")
        .unwrap();
    assert_eq!(audit.text, r#"discrepancies{kind="audit"} == 0"#);
    // The plan's other phase 3 criteria are all still there.
    for name in [
        "error rate < 0.1%",
        "P50 latency < 150 µs",
        "P99 latency < 1 ms",
        "P99.9 latency < 5 ms",
        "CPU < 50%",
        "memory < 200 MB",
        "memory stable: growth < 50 MB/hour",
    ] {
        assert!(p3.criteria.iter().any(|x| x.name == name), "{name}");
    }
}

fn text(r: &Report, f: fn(&Report, &mut Vec<u8>) -> String) -> String {
    let mut out = Vec::new();
    f(r, &mut out)
}

#[test]
fn every_format_shows_the_sections() {
    let f = fixture();
    let (r, m) = report(&[&f.mirror, &f.audit]);

    let term = text(&r, |r, o| {
        render::term::render(r, o).unwrap();
        String::from_utf8(o.clone()).unwrap()
    });
    for s in [
        "order flows: 4 regression, 0 noise, 1 ignored",
        "event streams: 8 regression",
        "audit log: 2 regression",
        "exchanges: 1 regression, 1 noise",
        "id correlation: 19 mapped, 12 rewritten, 2 unmapped, 1 timed out, 5 expired",
        "e.g. web-1 ↔ veloz_1_1, web-2 ↔ veloz_1_2",
        "state-mismatch ack, final/status",
        "/api/stream  50",
    ] {
        assert!(term.contains(s), "term lacks {s:?}:\n{term}");
    }

    let md = text(&r, |r, o| {
        render::markdown::render(r, o).unwrap();
        String::from_utf8(o.clone()).unwrap()
    });
    for s in [
        "### Order flows",
        "### Event streams",
        "### Audit log",
        "### Exchanges",
        "| Order flows | 5 | 4 | 0 | 1 |",
        "Orders (primary ↔ candidate): web-1 ↔ veloz_1_1",
        "| /api/stream | 50 | 3 | 1 | 2 | 1 | 1 | 1 |",
        "audit-diff: 1 run, logs INCONSISTENT",
    ] {
        assert!(md.contains(s), "markdown lacks {s:?}:\n{md}");
    }

    let json: Value = serde_json::from_str(&text(&r, |r, o| {
        render::json::render(r, o).unwrap();
        String::from_utf8(o.clone()).unwrap()
    }))
    .unwrap();
    assert_eq!(json["schema_version"], 1);
    let d = &json["discrepancies"];
    let names: Vec<&str> = d["sections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["section"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["flow", "stream", "audit", "exchange"]);
    assert_eq!(d["ids"]["mapped"], 19);
    assert_eq!(d["streams"][0]["lag"]["count"], 100);
    let state = d["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["kind"] == "state-mismatch")
        .unwrap();
    assert_eq!(state["section"], "flow");
    assert_eq!(state["orders"][0]["candidate"], "veloz_1_1");
    assert_eq!(state["steps"], json!(["ack", "final/status"]));

    let csv = text(&r, |r, o| {
        render::csv::render(r, o).unwrap();
        String::from_utf8(o.clone()).unwrap()
    });
    let rows: Vec<&str> = csv.lines().collect();
    let head: Vec<&str> = rows[0].split(',').collect();
    assert_eq!(head, render::csv::COLUMNS);
    let kinds = |k: &str| {
        rows.iter()
            .filter(|l| l.starts_with(&format!("{k},")))
            .count()
    };
    assert_eq!(kinds("section"), 4);
    assert_eq!(kinds("stream"), 1);
    assert_eq!(kinds("ids"), 1);
    // Groups of the flow, stream and audit sections (not the exchanges').
    assert_eq!(kinds("group"), 4 + 5 + 2);
    assert!(
        csv.lines()
            .any(|l| l.starts_with("section,Order flows,") && l.contains(",flow,,,5,4,0,1,")),
        "{csv}"
    );

    let junit = text(&r, |r, o| {
        render::junit::render(r, o).unwrap();
        String::from_utf8(o.clone()).unwrap()
    });
    for (class, n) in [
        // The unmapped note is class ignored: not a failing case.
        ("shadowgate.flow", 3),
        ("shadowgate.stream", 5),
        ("shadowgate.audit", 2),
    ] {
        assert_eq!(
            junit.matches(&format!("classname=\"{class}\"")).count(),
            n,
            "{class}: {junit}"
        );
    }
    assert!(junit.contains("type=\"fill-mismatch\""));
    assert!(junit.contains("web-3 ↔ veloz_1_3"));

    let mut html = Vec::new();
    render::html::render(&r, &m, &mut html).unwrap();
    let html = String::from_utf8(html).unwrap();
    for s in [
        "<b>Order flows</b>",
        "<b>Event streams</b>",
        "<b>Audit log</b>",
        "<b>Exchanges</b>",
        "lag P50 50",
        "id correlation: 19 mapped",
        "web-1 ↔ veloz_1_1",
    ] {
        assert!(html.contains(s), "html lacks {s:?}");
    }
    // Sections with regressions other than exchanges start open.
    assert_eq!(html.matches("<details class=\"section\"").count(), 4);
    assert!(html.contains("id=\"flow\" open"));
    for banned in ["<script", "<link", "src=", "href="] {
        assert!(!html.contains(banned), "found {banned}");
    }
}

#[test]
fn a_clean_audit_run_alone_shows_only_the_audit_section() {
    let f = fixture();
    let (r, _) = report(&[&f.clean_audit]);
    let mut out = Vec::new();
    render::term::render(&r, &mut out).unwrap();
    let term = String::from_utf8(out).unwrap();
    assert!(term.contains("audit log: 0 regression"), "{term}");
    assert!(term.contains("logs consistent"), "{term}");
    assert!(!term.contains("exchanges:"), "{term}");
    let mut out = Vec::new();
    render::junit::render(&r, &mut out).unwrap();
    let junit = String::from_utf8(out).unwrap();
    assert!(junit.contains("audit log: no regressions"), "{junit}");
}
