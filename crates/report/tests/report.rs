//! Evaluation over fixed run directories (merge exactness, generator limits, missing data) and
//! golden files of every text format.

mod fixture;

use std::path::{Path, PathBuf};

use shadowgate_record::hdrhistogram::Histogram;
use shadowgate_record::{Measure, Run};
use shadowgate_report::render::{self, Format};
use shadowgate_report::{Criteria, Measurements, Options, Report, Status, Verdict, evaluate};

fn opts(phase: &str) -> Options {
    Options {
        phase: phase.into(),
        tool_version: "0.1.0-test".into(),
        alpha: None,
    }
}

fn report_for(dirs: &[PathBuf], criteria: &Criteria, phase: &str) -> (Report, Measurements) {
    let m = Measurements::open(dirs).unwrap();
    let r = evaluate(criteria, &m, &opts(phase)).unwrap();
    (r, m)
}

fn status_of<'a>(r: &'a Report, name: &str) -> &'a shadowgate_report::model::CriterionResult {
    r.criteria
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no criterion {name}: {:#?}", r.criteria))
}

fn render_text(r: &Report, f: Format) -> String {
    let mut out = Vec::new();
    match f {
        Format::Term => render::term::render(r, &mut out).unwrap(),
        Format::Markdown => render::markdown::render(r, &mut out).unwrap(),
        Format::Json => render::json::render(r, &mut out).unwrap(),
        Format::Csv => render::csv::render(r, &mut out).unwrap(),
        Format::Junit => render::junit::render(r, &mut out).unwrap(),
        other => panic!("{other} is not a text format here"),
    }
    String::from_utf8(out).unwrap()
}

fn one_run(spec: &fixture::Spec) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run-a");
    fixture::write_run(&dir, spec);
    (tmp, dir)
}

#[test]
fn phase_one_on_the_fixture() {
    let (_tmp, dir) = one_run(&fixture::Spec::default());
    let (r, _) = report_for(&[dir], &Criteria::builtin(), "1");
    // 10 of 2500 candidate requests are 5xx: 0.4 %, over the 0.1 % limit.
    let e = status_of(&r, "error rate < 0.1%");
    assert_eq!(e.status, Status::Fail);
    assert_eq!(e.measured.as_ref().unwrap().value, 0.004);
    assert_eq!(status_of(&r, "P50 latency < 150 µs").status, Status::Pass);
    assert_eq!(status_of(&r, "P99 latency < 1 ms").status, Status::Pass);
    // 10 samples of 3 ms in 2500: P99.9 lands on them, under 5 ms.
    let p999 = status_of(&r, "P99.9 latency < 5 ms");
    assert_eq!(p999.status, Status::Pass);
    assert!((p999.measured.as_ref().unwrap().value - 3e6).abs() < 3e3);
    let cpu = status_of(&r, "CPU < 30%");
    assert_eq!(cpu.status, Status::Pass);
    assert!((cpu.measured.as_ref().unwrap().value - 21.967).abs() < 0.01);
    assert_eq!(r.verdict, Verdict::Fail);
    assert_eq!(r.exit_code(), 1);
    assert_eq!(r.tally.passed, 4);
    assert_eq!(r.tally.failed, 1);
}

#[test]
fn phase_three_memory_and_leak_slope() {
    let (_tmp, dir) = one_run(&fixture::Spec::default());
    let (r, _) = report_for(&[dir], &Criteria::builtin(), "3");
    let rss = status_of(&r, "memory < 200 MB");
    assert_eq!(rss.status, Status::Pass);
    assert_eq!(rss.measured.as_ref().unwrap().value, 103_000_000.0);
    let growth = status_of(&r, "memory stable: growth < 50 MB/hour");
    assert_eq!(growth.status, Status::Pass);
    // 50 KB per 10 s = 18 MB/hour exactly.
    assert!((growth.measured.as_ref().unwrap().value - 18e6).abs() < 1.0);
}

#[test]
fn phase_two_counts_flow_and_order_discrepancies() {
    let (_tmp, dir) = one_run(&fixture::Spec::default());
    let (r, _) = report_for(&[dir], &Criteria::builtin(), "2");
    let flow = status_of(
        &r,
        "order processing consistent: no order-flow discrepancies",
    );
    assert_eq!(flow.status, Status::Fail);
    assert_eq!(flow.measured.as_ref().unwrap().value, 1.0);
    let order = status_of(
        &r,
        "order processing consistent: no discrepancies on order routes",
    );
    assert_eq!(order.measured.as_ref().unwrap().value, 5.0);
    let d = &r.discrepancies;
    assert_eq!(
        (d.total, d.regression, d.noise, d.ignored, d.flow),
        (10, 5, 5, 0, 1)
    );
    assert_eq!(d.groups.len(), 3);
    // Regressions first, largest first; three samples each at most.
    assert_eq!(d.groups[0].kind, "type");
    assert_eq!(d.groups[0].count, 4);
    assert_eq!(d.groups[0].flows, 4);
    assert_eq!(d.groups[0].samples.len(), 3);
    assert_eq!(d.groups[1].kind, "state-mismatch");
    assert_eq!(d.groups[2].kind, "value");
    assert_eq!(d.groups[2].label.as_deref(), Some("timestamp"));
}

#[test]
fn missing_data_never_passes() {
    let spec = fixture::Spec {
        resources: false,
        discrepancies: false,
        ..fixture::Spec::default()
    };
    let (_tmp, dir) = one_run(&spec);
    let (r, _) = report_for(std::slice::from_ref(&dir), &Criteria::builtin(), "3");
    let cpu = status_of(&r, "CPU < 50%");
    assert_eq!(cpu.status, Status::NoData);
    assert!(
        cpu.detail.as_ref().unwrap().contains("resources.csv"),
        "{cpu:?}"
    );
    assert_eq!(status_of(&r, "memory < 200 MB").status, Status::NoData);
    let (r, _) = report_for(std::slice::from_ref(&dir), &Criteria::builtin(), "2");
    let flow = status_of(
        &r,
        "order processing consistent: no order-flow discrepancies",
    );
    assert_eq!(
        flow.status,
        Status::NoData,
        "no comparison run: zero is not proof"
    );

    let skip = Criteria::parse(
        "[phases.1]\ncriteria = [{ expr = \"cpu < 30%\", missing = \"skip\" }, \"p99 < 1ms\"]\n",
        "skip.toml",
    )
    .unwrap();
    let (r, _) = report_for(std::slice::from_ref(&dir), &skip, "1");
    assert_eq!(r.criteria[0].status, Status::Skipped);
    assert_eq!(r.verdict, Verdict::Pass);
    let only_skipped = Criteria::parse(
        "[phases.1]\ncriteria = [{ expr = \"cpu < 30%\", missing = \"skip\" }]\n",
        "skip.toml",
    )
    .unwrap();
    let (r, _) = report_for(&[dir], &only_skipped, "1");
    assert_eq!(r.verdict, Verdict::Fail, "nothing judged is not a pass");
}

#[test]
fn merging_two_shards_is_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("shard-0");
    let b = tmp.path().join("shard-1");
    fixture::write_run(&a, &fixture::Spec::default());
    fixture::write_run(
        &b,
        &fixture::Spec {
            shard: 1,
            resources: false,
            discrepancies: false,
            ..fixture::Spec::default()
        },
    );
    let m = Measurements::open(&[a.clone(), b.clone()]).unwrap();
    let ra = Run::open(&a).unwrap();
    let rb = Run::open(&b).unwrap();
    for target in ["candidate", "primary"] {
        let mut expected: Option<Histogram<u64>> = None;
        for run in [&ra, &rb] {
            for (k, data) in &run.latency {
                if k.target == target {
                    match &mut expected {
                        None => expected = Some(data.total.clone()),
                        Some(h) => h.add(&data.total).unwrap(),
                    }
                }
            }
        }
        let merged = m.latency(target, None, &Measure::Response).unwrap();
        let expected = expected.unwrap();
        assert_eq!(merged.len(), 5_000);
        assert_eq!(merged.len(), expected.len());
        for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(
                merged.value_at_quantile(q),
                expected.value_at_quantile(q),
                "{target} {q}"
            );
        }
        let c = m.counts(target, None).unwrap();
        assert_eq!(c.requests, 5_000);
        // The two shards ran side by side over the same 10 s: rates add.
        assert_eq!(m.window_s(target), Some(10.0));
        assert_eq!(m.throughput(target, None), Some(500.0));
    }
    let (r, _) = report_for(&[a, b], &Criteria::builtin(), "1");
    assert_eq!(r.sources.len(), 2);
    let e = status_of(&r, "error rate < 0.1%");
    assert_eq!(e.measured.as_ref().unwrap().value, 20.0 / 5_000.0);
}

#[test]
fn sequential_runs_add_their_windows() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    fixture::write_run(&a, &fixture::Spec::default());
    fixture::write_run(&b, &fixture::Spec::default());
    // Move b one minute later: it ran after a.
    let mut mb = shadowgate_record::Manifest::read(&b).unwrap();
    mb.started_at += std::time::Duration::from_secs(60);
    mb.ended_at = mb.ended_at.map(|e| e + std::time::Duration::from_secs(60));
    mb.write(&b).unwrap();
    let m = Measurements::open(&[a, b]).unwrap();
    assert_eq!(m.window_s("candidate"), Some(20.0));
    assert_eq!(m.throughput("candidate", None), Some(250.0));
}

#[test]
fn generator_limited_runs_do_not_blame_the_gateway() {
    let (_tmp, dir) = one_run(&fixture::Spec {
        generator_limited: true,
        ..fixture::Spec::default()
    });
    let (r, _) = report_for(&[dir], &Criteria::builtin(), "overall");
    let t = status_of(&r, "throughput > 10,000 req/s");
    assert_eq!(t.status, Status::GeneratorLimited);
    assert_eq!(t.measured.as_ref().unwrap().value, 250.0);
    assert!(
        t.detail
            .as_ref()
            .unwrap()
            .contains("not the gateway's fault"),
        "{t:?}"
    );
    let ratio = status_of(&r, "throughput at least 10x the primary's");
    assert_eq!(ratio.status, Status::GeneratorLimited);
    assert!(r.targets.iter().all(|t| t.generator_limited));
    assert!(r.warnings.iter().any(|w| w.contains("could not drive")));
    assert_eq!(r.verdict, Verdict::Fail);
}

#[test]
fn overall_ratios_and_comparison() {
    let (_tmp, dir) = one_run(&fixture::Spec::default());
    let (r, _) = report_for(&[dir], &Criteria::builtin(), "overall");
    let p50 = status_of(&r, "P50 at least 7x lower than the primary's");
    // Candidate P50 ≈ 120 µs vs primary ≈ 850 µs.
    assert_eq!(p50.status, Status::Pass, "{p50:?}");
    let v = p50.measured.as_ref().unwrap().value;
    assert!(v > 0.1 && v < 1.0 / 7.0, "{v}");
    let thr = status_of(&r, "throughput at least 10x the primary's");
    assert_eq!(thr.status, Status::Fail);
    assert_eq!(thr.measured.as_ref().unwrap().value, 1.0);
    let c = r.comparison.as_ref().unwrap();
    assert_eq!(c.routes.len(), 3);
    assert_eq!(c.routes[0].route, "*");
    let mw = c.routes[0].mann_whitney.unwrap();
    assert!(mw.p_value < 1e-12 && mw.effect < 0.1, "{mw:?}");
    assert_eq!(
        c.routes[0].shift,
        Some(shadowgate_report::stats::Shift::Faster)
    );
}

#[test]
fn a_slower_candidate_is_claimed_only_when_significant() {
    let (_tmp, dir) = one_run(&fixture::Spec {
        candidate_scale: 10,
        ..fixture::Spec::default()
    });
    let (r, _) = report_for(&[dir], &Criteria::builtin(), "overall");
    let c = r.comparison.as_ref().unwrap();
    // GET /api/market: candidate 0.8-1.4 ms vs primary 0.6-1.0 ms.
    let market = c.routes.iter().find(|x| x.route == "/api/market").unwrap();
    assert_eq!(market.shift, Some(shadowgate_report::stats::Shift::Slower));
    // POST /api/order: candidate 1.2-4 ms vs primary 1.2-2 ms, also slower.
    let order = c.routes.iter().find(|x| x.route == "/api/order").unwrap();
    assert_eq!(order.shift, Some(shadowgate_report::stats::Shift::Slower));
}

#[test]
fn per_route_criteria_expand() {
    let (_tmp, dir) = one_run(&fixture::Spec::default());
    let c = Criteria::parse(
        r#"[phases.1]
criteria = [
  { name = "route p99", expr = "p99 < 1ms", route = "*" },
  { expr = "p99 < 1ms", route = "POST /api/order", target = "primary" },
  { expr = 'error_rate{route="GET /api/market"} == 0' },
]
"#,
        "routes.toml",
    )
    .unwrap();
    let (r, _) = report_for(&[dir], &c, "1");
    let names: Vec<&str> = r.criteria.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "route p99 [GET /api/market]",
            "route p99 [POST /api/order]",
            "p99 < 1ms",
            "error_rate{route=\"GET /api/market\"} == 0"
        ]
    );
    assert_eq!(r.criteria[0].status, Status::Pass);
    assert_eq!(
        r.criteria[2].status,
        Status::Fail,
        "primary orders take 1.2-2 ms"
    );
    assert_eq!(r.criteria[3].status, Status::Pass);
}

#[test]
fn unknown_phase_names_the_choices() {
    let (_tmp, dir) = one_run(&fixture::Spec::default());
    let m = Measurements::open(&[dir]).unwrap();
    let e = evaluate(&Criteria::builtin(), &m, &opts("7")).unwrap_err();
    assert!(e.to_string().contains("1, 2, 3, 4, 5, overall"), "{e}");
}

/// Replaces the temporary directory in rendered text, so golden files are stable.
fn stable(text: &str, dir: &Path) -> String {
    text.replace(&dir.display().to_string(), "[run]")
}

#[test]
fn golden_text_formats() {
    let (_tmp, dir) = one_run(&fixture::Spec::default());
    let (r, _) = report_for(std::slice::from_ref(&dir), &Criteria::builtin(), "overall");
    for f in [
        Format::Term,
        Format::Markdown,
        Format::Json,
        Format::Csv,
        Format::Junit,
    ] {
        let text = stable(&render_text(&r, f), &dir);
        insta::assert_snapshot!(format!("overall_{}", f.name()), text);
    }
    let (r, _) = report_for(std::slice::from_ref(&dir), &Criteria::builtin(), "2");
    insta::assert_snapshot!("phase2_term", stable(&render_text(&r, Format::Term), &dir));
}

#[test]
fn json_has_the_documented_schema() {
    let (_tmp, dir) = one_run(&fixture::Spec::default());
    let (r, _) = report_for(&[dir], &Criteria::builtin(), "1");
    let v: serde_json::Value = serde_json::from_str(&render_text(&r, Format::Json)).unwrap();
    assert_eq!(v["schema_version"], 1);
    for key in [
        "tool_version",
        "phase",
        "criteria_file",
        "verdict",
        "tally",
        "sources",
        "criteria",
        "targets",
        "routes",
        "comparison",
        "discrepancies",
        "warnings",
    ] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    let c = &v["criteria"][0];
    for key in [
        "name",
        "expr",
        "metric",
        "target",
        "op",
        "threshold",
        "measured",
        "status",
    ] {
        assert!(c.get(key).is_some(), "criterion lacks {key}: {c}");
    }
    assert_eq!(c["threshold"]["value"], 0.001);
    assert_eq!(c["op"], "<");
    assert_eq!(v["verdict"], "fail");
}

/// The Ant/Jenkins JUnit schema's required elements and attributes.
#[test]
fn junit_has_the_schemas_required_parts() {
    let (_tmp, dir) = one_run(&fixture::Spec::default());
    let (r, _) = report_for(&[dir], &Criteria::builtin(), "3");
    let xml = render_text(&r, Format::Junit);
    let attr = |tag: &str, name: &str| -> Vec<String> {
        let mut out = Vec::new();
        for chunk in xml.split(&format!("<{tag} ")).skip(1) {
            let head = &chunk[..chunk.find('>').unwrap()];
            let needle = format!("{name}=\"");
            let at = head
                .find(&needle)
                .unwrap_or_else(|| panic!("<{tag}> lacks {name}: {head}"));
            let rest = &head[at + needle.len()..];
            out.push(rest[..rest.find('"').unwrap()].to_owned());
        }
        out
    };
    assert!(
        xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"),
        "{xml}"
    );
    // Eight criteria (the audit one without an audit-diff run is an error: no data), and a
    // second suite with one case per order-flow regression group.
    assert_eq!(attr("testsuites", "tests"), ["9"]);
    for a in [
        "name",
        "tests",
        "failures",
        "errors",
        "skipped",
        "timestamp",
        "hostname",
        "time",
    ] {
        assert_eq!(attr("testsuite", a).len(), 2, "testsuite {a}");
    }
    assert_eq!(
        attr("testsuite", "timestamp"),
        ["2025-11-29T09:20:00", "2025-11-29T09:20:00"]
    );
    assert_eq!(attr("testsuite", "hostname"), ["ci-host", "ci-host"]);
    assert_eq!(attr("testsuite", "failures"), ["1", "1"]);
    assert_eq!(attr("testsuite", "errors"), ["1", "0"]);
    let names = attr("testcase", "name");
    assert_eq!(names.len(), 9);
    assert_eq!(attr("testcase", "classname").len(), 9);
    assert_eq!(attr("testcase", "time").len(), 9);
    assert_eq!(attr("error", "type"), ["no-data"]);
    let failures = attr("failure", "type");
    assert_eq!(failures, ["threshold", "state-mismatch"]);
    assert_eq!(
        attr("testcase", "classname").last().map(String::as_str),
        Some("shadowgate.flow")
    );
    let msg = attr("failure", "message");
    assert!(
        msg[0].starts_with("measured 0.4%, threshold error_rate &lt; 0.1%"),
        "{msg:?}"
    );
    assert!(xml.contains("<property name=\"criteria\""));
}

fn write_html(dir: &Path, phase: &str) -> PathBuf {
    let (r, m) = report_for(&[dir.to_path_buf()], &Criteria::builtin(), phase);
    let path = dir.join("report.html");
    let mut f = std::fs::File::create(&path).unwrap();
    render::html::render(&r, &m, &mut f).unwrap();
    path
}

#[test]
fn html_is_one_self_contained_file() {
    let (_tmp, dir) = one_run(&fixture::Spec::default());
    let html = std::fs::read_to_string(write_html(&dir, "overall")).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    // Five charts: spectrum, latency, throughput, CPU, memory.
    assert_eq!(html.matches("<svg").count(), 5, "charts");
    assert!(html.contains("Latency by percentile") && html.contains("99.9%"));
    assert!(html.contains("Resident memory over time"));
    // Nothing is fetched: no scripts, links, images, imports or remote URLs in attributes.
    for banned in [
        "<script", "<link", "<img", "src=", "href=", "@import", "url(",
    ] {
        assert!(!html.contains(banned), "found {banned}");
    }
    // Collapsible discrepancy groups without script, values escaped.
    assert_eq!(html.matches("<details class=\"section\"").count(), 2);
    assert!(html.contains("<b>Order flows</b>") && html.contains("<b>Exchanges</b>"));
    assert_eq!(
        html.matches("<details class=\"regression\"").count()
            + html.matches("<details class=\"noise\"").count(),
        3
    );
    assert!(html.contains("&quot;100.5&quot;"), "JSON sample escaped");
    assert!(html.contains("class=\"banner fail\""));
    assert!(html.contains("<td class=\"status fail\">FAIL</td>"));
}

/// Finds a Chromium binary on PATH.
fn chromium() -> PathBuf {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!("chromium is not installed: apt-get install -y chromium (scripts/test.sh does)");
}

#[test]
fn html_opens_in_headless_chromium_without_errors_and_is_not_blank() {
    let (tmp, dir) = one_run(&fixture::Spec::default());
    let html = write_html(&dir, "overall");
    let png = tmp.path().join("shot.png");
    let profile = tmp.path().join("profile");
    let mut child = std::process::Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg("--window-size=1280,2000")
        .arg(format!("file://{}", html.display()))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("chromium did not finish within 120 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(status.success(), "chromium failed: {stderr}");
    for bad in ["Uncaught", "ERROR:CONSOLE", ":CONSOLE("] {
        assert!(!stderr.contains(bad), "console message {bad}: {stderr}");
    }

    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (1280, 2000));
    let channels = info.color_type.samples();
    let pixels = &buf[..info.buffer_size()];
    // Luminance variance and the share of non-background pixels: a blank or single-colour
    // page has neither.
    let lum: Vec<f64> = pixels
        .chunks(channels * (info.bit_depth as usize / 8).max(1))
        .map(|p| {
            let (r, g, b) = (
                p[0] as f64,
                p[1.min(p.len() - 1)] as f64,
                p[2.min(p.len() - 1)] as f64,
            );
            0.299 * r + 0.587 * g + 0.114 * b
        })
        .collect();
    let mean = lum.iter().sum::<f64>() / lum.len() as f64;
    let var = lum.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / lum.len() as f64;
    let background = lum[0];
    let drawn = lum
        .iter()
        .filter(|l| (*l - background).abs() > 30.0)
        .count() as f64
        / lum.len() as f64;
    assert!(var > 100.0, "screenshot looks blank: variance {var}");
    assert!(
        drawn > 0.01,
        "screenshot looks blank: {drawn} of pixels differ from the background"
    );
    if let Ok(keep) = std::env::var("SHADOWGATE_KEEP_SCREENSHOT") {
        std::fs::copy(&png, keep).unwrap();
    }
}
