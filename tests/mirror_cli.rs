//! `shadowgate mirror` as a process: prints its address, serves from the primary, stops
//! cleanly on SIGTERM leaving a readable run directory, and rejects bad rules with exit 2.

use shadowgate_record::Run;

use crate::util::{InProcessSim, Server, http, run, tempdir};

#[test]
fn mirror_serves_and_leaves_a_readable_run_directory_on_sigterm() {
    let primary = InProcessSim::start("python");
    let candidate = InProcessSim::start("cpp");
    let dir = tempdir();
    let out = dir.path().join("run");
    let mirror = Server::spawn(&[
        "mirror",
        "--primary",
        &primary.url(),
        "--candidate",
        &candidate.url(),
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--out",
        out.to_str().unwrap(),
        "--interval",
        "100ms",
    ]);
    assert!(
        mirror.first_line.contains("admin http://"),
        "{}",
        mirror.first_line
    );
    let admin: std::net::SocketAddr = mirror
        .first_line
        .split("admin http://")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no admin address in {:?}", mirror.first_line));
    for _ in 0..5 {
        let (status, body) = http(mirror.addr, "GET", "/health", None);
        assert_eq!(status, 200, "{body}");
        // The python primary's answer, not the cpp candidate's.
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&body).unwrap(),
            serde_json::json!({"ok": true})
        );
    }
    let (status, metrics) = http(admin, "GET", "/metrics", None);
    assert_eq!(status, 200);
    assert!(
        metrics.contains("shadowgate_mirror_requests_total"),
        "{metrics}"
    );
    let (exit, stderr) = mirror.signal_and_wait("TERM");
    assert_eq!(exit.code(), Some(0), "stderr:\n{stderr}");
    let run = Run::open(&out).unwrap();
    assert!(run.manifest.ended_at.is_some());
    assert_eq!(run.counts_by_target()["primary"].requests, 5);
    assert!(run.manifest.extra.contains_key("mirror"));
    // python vs cpp /health differ: reported.
    assert!(run.discrepancies.iter().any(|d| d.route == "/health"));
}

#[test]
fn bad_rules_exit_2_naming_the_file_and_key() {
    let dir = tempdir();
    let rules = dir.path().join("broken-rules.toml");
    std::fs::write(
        &rules,
        "[[routes]]\ntemplate = \"/api/order\"\nwrite_policy = \"sometimes\"\n",
    )
    .unwrap();
    let out = run(&[
        "mirror",
        "--primary",
        "http://127.0.0.1:1",
        "--candidate",
        "https://127.0.0.1:2",
        "--listen",
        "127.0.0.1:0",
        "--rules",
        rules.to_str().unwrap(),
        "--out",
        dir.path().join("run").to_str().unwrap(),
    ]);
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(out.stderr.contains("broken-rules.toml"), "{}", out.stderr);
    assert!(
        out.stderr.contains("routes[0].write_policy"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty(), "nothing is served: {}", out.stdout);
    // Nothing was created for a run that never started.
    assert!(!dir.path().join("run").exists());
}

#[test]
fn bad_settings_are_all_reported() {
    let dir = tempdir();
    let out = run(&[
        "mirror",
        "--primary",
        "https://127.0.0.1:1",
        "--candidate",
        "127.0.0.1:2",
        "--listen",
        "127.0.0.1:0",
        "--shadow-concurrency",
        "0",
        "--out",
        dir.path().join("run").to_str().unwrap(),
    ]);
    assert_eq!(out.code(), Some(2), "{out:?}");
    for flag in ["--primary", "--candidate", "--shadow-concurrency"] {
        assert!(
            out.stderr.contains(flag),
            "{flag} missing in {}",
            out.stderr
        );
    }
}
