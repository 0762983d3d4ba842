//! `shadowgate report`: exit codes 0/1/2 through the binary, files written, messages naming
//! the bad input.

use std::path::Path;

use crate::util::{run, tempdir};

#[path = "../crates/report/tests/fixture/mod.rs"]
mod fixture;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn exit_0_when_every_criterion_passes_and_files_are_written() {
    let tmp = tempdir();
    let dir = tmp.path().join("run");
    fixture::write_run(
        &dir,
        &fixture::Spec {
            candidate_5xx: 0,
            ..fixture::Spec::default()
        },
    );
    let out = run(&["report", s(&dir), "--phase", "1"]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(out.stdout.contains("PASS: Phase 1"), "{}", out.stdout);
    assert!(out.stdout.contains("error rate < 0.1%"), "{}", out.stdout);
    for f in [
        "report.md",
        "report.json",
        "summary.csv",
        "junit.xml",
        "report.html",
    ] {
        assert!(dir.join(f).is_file(), "{f} not written");
    }
    assert!(!dir.join("hgrm").exists(), "hgrm only on request");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["verdict"], "pass");
}

#[test]
fn exit_1_when_a_criterion_fails() {
    let tmp = tempdir();
    let dir = tmp.path().join("run");
    fixture::write_run(&dir, &fixture::Spec::default());
    let out_dir = tmp.path().join("out");
    let out = run(&[
        "report",
        s(&dir),
        "--phase",
        "1",
        "--format",
        "json,junit,hgrm",
        "--out",
        s(&out_dir),
    ]);
    assert_eq!(out.code(), Some(1), "{out:?}");
    // Without `term`, stdout still says the verdict.
    assert!(out.stdout.starts_with("FAIL: Phase 1"), "{}", out.stdout);
    assert!(out_dir.join("report.json").is_file());
    assert!(out_dir.join("junit.xml").is_file());
    assert!(!out_dir.join("report.md").exists());
    assert!(!dir.join("report.json").exists(), "--out moves the files");
    let hgrm =
        std::fs::read_to_string(out_dir.join("hgrm/candidate_GET__api_market.hgrm")).unwrap();
    assert!(
        hgrm.contains("Value     Percentile TotalCount 1/(1-Percentile)"),
        "{hgrm}"
    );
    assert!(out_dir.join("hgrm/candidate.hgrm").is_file());
}

#[test]
fn the_manifest_phase_is_the_default() {
    let tmp = tempdir();
    let dir = tmp.path().join("run");
    fixture::write_run(&dir, &fixture::Spec::default());
    let out = run(&["report", s(&dir), "--format", "term"]);
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(out.stdout.contains("phase 1: Phase 1"), "{}", out.stdout);
}

#[test]
fn exit_2_for_bad_input_naming_the_file() {
    let tmp = tempdir();
    let dir = tmp.path().join("run");
    fixture::write_run(&dir, &fixture::Spec::default());

    let missing = tmp.path().join("nope");
    let out = run(&["report", s(&missing)]);
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(out.stderr.contains(s(&missing)), "{}", out.stderr);

    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = run(&["report", s(&empty)]);
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(out.stderr.contains("no manifest.json"), "{}", out.stderr);

    let criteria = tmp.path().join("gates.toml");
    std::fs::write(
        &criteria,
        "[phases.1]\ncriteria = [\n  \"p99 < 1\",\n  \"speed > 3\",\n]\n",
    )
    .unwrap();
    let out = run(&[
        "report",
        s(&dir),
        "--criteria",
        s(&criteria),
        "--phase",
        "1",
    ]);
    assert_eq!(out.code(), Some(2), "{out:?}");
    let e = &out.stderr;
    assert!(e.contains(&format!("{}:3:", criteria.display())), "{e}");
    assert!(e.contains(&format!("{}:4:", criteria.display())), "{e}");
    assert!(
        e.contains("1us") && e.contains("unknown metric `speed`"),
        "{e}"
    );

    let out = run(&["report", s(&dir), "--phase", "9"]);
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(out.stderr.contains("no phase `9`"), "{}", out.stderr);

    let out = run(&["report", s(&dir), "--format", "pdf"]);
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(
        out.stderr.contains("unknown format `pdf`"),
        "{}",
        out.stderr
    );

    let corrupt = tmp.path().join("corrupt");
    fixture::write_run(&corrupt, &fixture::Spec::default());
    let counts = corrupt.join("counts.csv");
    let mut text = std::fs::read_to_string(&counts).unwrap();
    text.insert_str(text.find('\n').unwrap() + 1, "garbage,line\n");
    std::fs::write(&counts, text).unwrap();
    let out = run(&["report", s(&corrupt)]);
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(out.stderr.contains("counts.csv line 2"), "{}", out.stderr);
}

#[test]
fn several_run_directories_make_one_verdict() {
    let tmp = tempdir();
    let a = tmp.path().join("gen-0");
    let b = tmp.path().join("gen-1");
    let ok = fixture::Spec {
        candidate_5xx: 0,
        ..fixture::Spec::default()
    };
    fixture::write_run(&a, &ok);
    fixture::write_run(
        &b,
        &fixture::Spec {
            shard: 1,
            resources: false,
            discrepancies: false,
            ..ok
        },
    );
    let out = run(&[
        "report",
        s(&a),
        s(&b),
        "--phase",
        "1",
        "--format",
        "term,csv",
    ]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(out.stdout.contains("5,000"), "{}", out.stdout);
    let csv = std::fs::read_to_string(a.join("summary.csv")).unwrap();
    assert!(
        csv.contains("route,,candidate,GET,/api/market,,,,,,,4000,0,0.0,400.0"),
        "{csv}"
    );
}

const ALERTS: &str = "scenarios/prometheus/alerts.yml";

#[test]
fn check_alerts_against_saved_scrapes() {
    let tmp = tempdir();
    // The C++ gateway's own names (veloz-api.md §5): the plan's veloz_gateway_* alerts cannot
    // fire; the process_* ones can.
    let cpp = tmp.path().join("cpp.txt");
    std::fs::write(
        &cpp,
        "# TYPE gateway_requests_total counter\ngateway_requests_total 10\n\
         http_request_duration_seconds_bucket{le=\"0.001\"} 3\n\
         process_cpu_seconds_total 1.5\nprocess_resident_memory_bytes 1e7\n",
    )
    .unwrap();
    let out = run(&["check-alerts", ALERTS, "--scrape", s(&cpp)]);
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(
        out.stdout
            .contains("MISSING  VelozGatewayHighErrorRate (line 11): veloz_gateway_requests_total"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("ok       VelozGatewayMemoryLeak"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("ok       VelozGatewayHealthCheckFailing"),
        "{}",
        out.stdout
    );

    let bad = tmp.path().join("bad.txt");
    std::fs::write(&bad, "<html>404</html>\n").unwrap();
    let out = run(&["check-alerts", ALERTS, "--scrape", s(&bad)]);
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(
        out.stderr.contains("not Prometheus text format"),
        "{}",
        out.stderr
    );

    let out = run(&[
        "check-alerts",
        s(&tmp.path().join("none.yml")),
        "--scrape",
        s(&cpp),
    ]);
    assert_eq!(out.code(), Some(2), "{out:?}");
}

#[test]
fn check_alerts_against_both_sim_profiles() {
    let cpp = crate::util::Server::spawn(&["sim", "--profile", "cpp", "--listen", "127.0.0.1:0"]);
    let url = format!("{}/metrics", cpp.url());
    let out = run(&["check-alerts", ALERTS, "--metrics", &url]);
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(
        out.stdout.contains("MISSING  VelozGatewayP99Above5ms"),
        "{}",
        out.stdout
    );

    // With DEPLOYMENT.md's names exported, every alert can fire.
    let tmp = tempdir();
    let config = tmp.path().join("sim.toml");
    std::fs::write(&config, "[metrics]\ndeployment_names = true\n").unwrap();
    let named = crate::util::Server::spawn(&[
        "sim",
        "--profile",
        "cpp",
        "--listen",
        "127.0.0.1:0",
        "--config",
        s(&config),
    ]);
    let out = run(&[
        "check-alerts",
        ALERTS,
        "--metrics",
        &format!("{}/metrics", named.url()),
    ]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(
        out.stdout.contains("8 of 8 alerts can fire"),
        "{}",
        out.stdout
    );

    // The python gateway has no /metrics at all.
    let py = crate::util::Server::spawn(&["sim", "--profile", "python", "--listen", "127.0.0.1:0"]);
    let out = run(&[
        "check-alerts",
        ALERTS,
        "--metrics",
        &format!("{}/metrics", py.url()),
    ]);
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(out.stderr.contains("answered 404"), "{}", out.stderr);
}

#[test]
fn promtool_accepts_the_shipped_rules_where_installed() {
    // promtool comes with Debian's prometheus package (installed by scripts/test.sh).
    let Ok(out) = std::process::Command::new("promtool")
        .args(["check", "rules", ALERTS])
        .output()
    else {
        // Not installed here: the rules are still parsed by our own reader.
        let text = std::fs::read_to_string(ALERTS).unwrap();
        let rules = shadowgate_report::alerts::parse_rules(&text, ALERTS).unwrap();
        assert_eq!(rules.len(), 8);
        return;
    };
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn sample_records_resources_from_proc_and_from_metrics() {
    let sim = crate::util::Server::spawn(&["sim", "--profile", "cpp", "--listen", "127.0.0.1:0"]);
    let tmp = tempdir();
    let by_pid = tmp.path().join("by-pid");
    let pid = sim.pid().to_string();
    let out = run(&[
        "sample",
        "--pid",
        &pid,
        "--out",
        s(&by_pid),
        "--interval",
        "200ms",
        "--duration",
        "1s",
    ]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let by_url = tmp.path().join("by-url");
    let url = format!("{}/metrics", sim.url());
    let out = run(&[
        "sample",
        "--metrics",
        &url,
        "--target",
        "primary",
        "--out",
        s(&by_url),
        "--interval",
        "200ms",
        "--duration",
        "1s",
    ]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    for (dir, target) in [(&by_pid, "candidate"), (&by_url, "primary")] {
        let run = shadowgate_record::Run::open(dir).unwrap();
        assert!(run.manifest.ended_at.is_some());
        assert!(run.resources.len() >= 3, "{:?}", run.resources);
        assert!(run.resources.iter().all(|r| r.target == target));
        assert!(
            run.resources
                .iter()
                .all(|r| r.rss_bytes.unwrap_or(0) > 100_000)
        );
        assert!(run.resources[1..].iter().all(|r| r.cpu_percent.is_some()));
    }
    // The report reads them: CPU and memory criteria get numbers.
    let gates = tmp.path().join("gates.toml");
    std::fs::write(
        &gates,
        "[phases.1]\ncriteria = [\"cpu < 400%\", \"rss < 2GB\"]\n",
    )
    .unwrap();
    let out = run(&[
        "report",
        s(&by_pid),
        "--criteria",
        s(&gates),
        "--phase",
        "1",
        "--format",
        "term",
    ]);
    assert_eq!(out.code(), Some(0), "{out:?}");

    let out = run(&[
        "sample",
        "--pid",
        "2147483600",
        "--out",
        s(&tmp.path().join("x")),
    ]);
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(out.stderr.contains("process 2147483600"), "{}", out.stderr);
    assert!(
        !tmp.path().join("x").exists(),
        "nothing created for a bad PID"
    );
}

/// Sends GET /api/market to `addr` in a loop until `stop` is set (bounded by 30 s).
fn traffic(
    addr: std::net::SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut n = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) && std::time::Instant::now() < until
        {
            let _ = crate::util::http(addr, "GET", "/api/market", None);
            n += 1;
        }
        n
    })
}

/// A scripted gateway: every /metrics scrape shows 100 more requests, 5 of them 503s; /health
/// is healthy. Serves at most `max` connections (bounded), on 127.0.0.1:0.
fn erroring_gateway(max: usize) -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut scrapes = 0_u64;
        for conn in listener.incoming().take(max) {
            let Ok(mut conn) = conn else { continue };
            let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(5)));
            let mut buf = [0_u8; 2048];
            let n = conn.read(&mut buf).unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]);
            let body = if head.starts_with("GET /metrics") {
                scrapes += 1;
                format!(
                    "veloz_gateway_requests_total{{status=\"200\"}} {}\n\
                     veloz_gateway_requests_total{{status=\"503\"}} {}\n",
                    scrapes * 95,
                    scrapes * 5
                )
            } else {
                "{\"status\":\"ok\"}".to_owned()
            };
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

#[test]
fn watch_fires_a_rollback_once_and_stays_quiet_on_a_healthy_sim() {
    let tmp = tempdir();
    let matrix = tmp.path().join("rollback.toml");
    std::fs::write(
        &matrix,
        "[[rule]]\nname = \"errors\"\nexpr = \"error_rate > 1%\"\nfor = \"600ms\"\naction = \"rollback\"\n\
         [[rule]]\nname = \"very slow\"\nexpr = \"p99 > 2s\"\nfor = \"600ms\"\naction = \"alert\"\n\
         [[rule]]\nname = \"health\"\nexpr = \"health_ok == 0\"\nfor = \"600ms\"\naction = \"rollback\"\n",
    )
    .unwrap();
    let marker = tmp.path().join("rolled-back");
    let hook = format!("echo $SHADOWGATE_RULE >> {}", marker.display());
    let watch = |url: &str, duration: &str| {
        run(&[
            "watch",
            "--metrics",
            url,
            "--rollback",
            s(&matrix),
            "--on-rollback",
            &hook,
            "--interval",
            "200ms",
            "--window",
            "400ms",
            "--duration",
            duration,
        ])
    };

    // 5 % errors in every window: pending, then firing after 600 ms; the hook runs once.
    let gw = erroring_gateway(200);
    let out = watch(&format!("http://{gw}/metrics"), "3s");
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(
        out.stdout.contains("errors: ok -> pending"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("errors: pending -> FIRING -> ROLLBACK (error_rate = 5%"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("very slow:"), "{}", out.stdout);
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "errors\n");
    std::fs::remove_file(&marker).unwrap();

    // The simulated C++ gateway with the plan's metric names, under load: nothing fires.
    let config = tmp.path().join("sim.toml");
    std::fs::write(
        &config,
        "[auth]\nenabled = false\n[metrics]\ndeployment_names = true\n",
    )
    .unwrap();
    let sim = crate::util::Server::spawn(&[
        "sim",
        "--profile",
        "cpp",
        "--listen",
        "127.0.0.1:0",
        "--config",
        s(&config),
    ]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = traffic(sim.addr, stop.clone());
    let out = watch(&format!("{}/metrics", sim.url()), "2s");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(load.join().unwrap() > 10);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(
        out.stdout.contains("no rollback condition fired"),
        "{}",
        out.stdout
    );
    assert!(!marker.exists());

    // The gateway goes away: the health rule fires.
    let url = format!("{}/metrics", sim.url());
    let out = std::thread::scope(|sc| {
        let watcher = sc.spawn(|| watch(&url, "3s"));
        std::thread::sleep(std::time::Duration::from_millis(800));
        let _ = sim.signal_and_wait("TERM");
        watcher.join().unwrap()
    });
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(
        out.stdout.contains("health: pending -> FIRING -> ROLLBACK"),
        "{}",
        out.stdout
    );
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "health\n");

    let out = run(&["watch", "--metrics", "ftp://x/metrics", "--duration", "1s"]);
    assert_eq!(out.code(), Some(2), "{out:?}");
}

/// The rollback matrix against the simulator's own /metrics: injected 5xx answers and injected
/// latency on `GET /api/market` show in its counters and histogram, and both rules fire.
#[test]
fn watch_fires_on_the_sims_injected_errors_and_latency() {
    let tmp = tempdir();
    let matrix = tmp.path().join("rollback.toml");
    std::fs::write(
        &matrix,
        "[[rule]]\nname = \"errors\"\nexpr = \"error_rate > 1%\"\nfor = \"600ms\"\naction = \"rollback\"\n\
         [[rule]]\nname = \"slow\"\nexpr = \"p99 > 15ms\"\nfor = \"600ms\"\naction = \"alert\"\n",
    )
    .unwrap();
    // Faults only on the route the traffic uses, so the scrapes themselves stay clean.
    let config = tmp.path().join("sim.toml");
    std::fs::write(
        &config,
        "[auth]\nenabled = false\n[metrics]\ndeployment_names = true\n\
         [[latency.routes]]\nroute = \"GET /api/market\"\nmodel = \"fixed:20ms\"\n\
         [[faults]]\nkind = \"error\"\nroute = \"GET /api/market\"\nfraction = 0.5\nstatus = 503\n",
    )
    .unwrap();
    let sim = crate::util::Server::spawn(&[
        "sim",
        "--profile",
        "cpp",
        "--listen",
        "127.0.0.1:0",
        "--config",
        s(&config),
        "--seed",
        "3",
    ]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loads = [
        traffic(sim.addr, stop.clone()),
        traffic(sim.addr, stop.clone()),
    ];
    let out = run(&[
        "watch",
        "--metrics",
        &format!("{}/metrics", sim.url()),
        "--rollback",
        s(&matrix),
        "--interval",
        "200ms",
        "--window",
        "1s",
        "--duration",
        "4s",
    ]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent: u64 = loads.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(sent > 20, "traffic reached the sim: {sent}");
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(
        out.stdout.contains("errors: pending -> FIRING -> ROLLBACK"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("slow: pending -> FIRING"),
        "{}",
        out.stdout
    );
    let (_, stats) = crate::util::http(sim.addr, "GET", "/__sim/stats", None);
    assert!(stats.contains("503") || stats.contains("error"), "{stats}");
}
