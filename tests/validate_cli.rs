//! `shadowgate validate` end to end against two simulator processes: health, a load run per
//! gateway with resources sampled, the mirror step, the report; a gateway that is down
//! stops it with exit 2; Ctrl-C leaves a partial run that `shadowgate report` reads; with
//! both gateways' audit logs, the mirror step's entries are compared and phase 3's audit
//! criterion is judged (without them it says how to get them).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::util::{BIN, Server, closed_port, run, run_with_timeout, tempdir, wait_bounded};

fn criteria() -> String {
    format!(
        "{}/scenarios/test-criteria.toml",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn sims() -> (Server, Server) {
    let py = Server::spawn(&["sim", "--profile", "python", "--listen", "127.0.0.1:0"]);
    let cpp = Server::spawn(&[
        "sim",
        "--profile",
        "cpp",
        "--auth",
        "off",
        "--listen",
        "127.0.0.1:0",
    ]);
    (py, cpp)
}

fn args<'a>(
    py: &'a str,
    cpp: &'a str,
    pids: &'a [String; 2],
    crit: &'a str,
    out: &'a str,
) -> Vec<&'a str> {
    vec![
        "validate",
        "--phase",
        "1",
        "--primary",
        py,
        "--candidate",
        cpp,
        "--criteria",
        crit,
        "--primary-pid",
        &pids[0],
        "--candidate-pid",
        &pids[1],
        "--rate",
        "200",
        "--duration",
        "3s",
        "--warmup",
        "1s",
        "--out",
        out,
    ]
}

fn manifest(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap()
}

#[test]
fn validate_runs_every_step_against_two_sims_and_passes_loosened_phase_1() {
    let (py, cpp) = sims();
    let (pu, cu) = (py.url(), cpp.url());
    let pids = [py.pid().to_string(), cpp.pid().to_string()];
    let tmp = tempdir();
    let dir = tmp.path().join("v");
    let crit = criteria();
    let out = run_with_timeout(
        &args(&pu, &cu, &pids, &crit, dir.to_str().unwrap()),
        Duration::from_secs(120),
    );
    assert_eq!(out.code(), Some(0), "{out:?}");
    for step in [
        "[1/5] health",
        "[2/5] load primary",
        "[3/5] load candidate",
        "[4/5] mirror",
        "[5/5] report",
    ] {
        assert!(
            out.stdout.contains(step),
            "missing {step:?}:\n{}",
            out.stdout
        );
    }
    assert!(
        out.stdout.contains("PASS: Phase 1 (loosened for tests)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("candidate vs primary"),
        "side by side:\n{}",
        out.stdout
    );
    for f in [
        "load-primary/latency.hlog",
        "load-candidate/latency.hlog",
        "resources-primary/resources.csv",
        "resources-candidate/resources.csv",
        "mirror/discrepancies.ndjson",
        "report.html",
        "report.json",
        "junit.xml",
        "summary.csv",
        "report.md",
    ] {
        assert!(dir.join(f).exists(), "{f} missing");
    }
    let m = manifest(&dir);
    assert_eq!(m["kind"], "validate");
    assert_eq!(m["phase"], "1");
    assert_eq!(m["extra"]["partial"], false);
    assert_eq!(m["extra"]["compare_only"], serde_json::json!(["mirror"]));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap();
    // Every criterion had data: CPU and memory from the sampled PIDs.
    assert_eq!(report["tally"]["passed"], 5, "{report}");
    assert!(
        report["discrepancies"].to_string().contains("regression"),
        "the real differences are found"
    );
    // The mirror step's SSE event lag reaches the report (its request latency does not).
    let lag = &report["discrepancies"]["streams"][0]["lag"];
    assert!(lag["count"].as_u64().unwrap_or(0) > 0, "{report}");

    // `report DIR` re-makes the same verdict from the directory alone.
    let again = run(&[
        "report",
        dir.to_str().unwrap(),
        "--criteria",
        &crit,
        "--format",
        "term",
    ]);
    assert_eq!(again.code(), Some(0), "{again:?}");
    assert!(again.stdout.contains("PASS"), "{}", again.stdout);

    // Without the audit logs, phase 3's audit criterion has no data and says how to get it.
    let p3 = tmp.path().join("p3");
    let again = run(&[
        "report",
        dir.to_str().unwrap(),
        "--criteria",
        &crit,
        "--phase",
        "3",
        "--format",
        "json",
        "--out",
        p3.to_str().unwrap(),
    ]);
    assert_eq!(again.code(), Some(1), "{again:?}");
    let audit = criterion(&p3, "audit logs consistent");
    assert_eq!(audit["status"], "no-data", "{audit}");
    let why = audit["detail"].as_str().unwrap();
    assert!(
        why.contains("--primary-audit") && why.contains("shadowgate audit-diff"),
        "{why}"
    );
}

/// A criterion of `dir/report.json` by name.
fn criterion(dir: &Path, name: &str) -> serde_json::Value {
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap();
    report["criteria"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no criterion {name:?} in {report}"))
        .clone()
}

#[test]
fn validate_with_audit_logs_compares_the_mirror_steps_entries_for_phase_3() {
    let tmp = tempdir();
    let logs = tmp.path();
    let (py, cpp) = crate::audit_cli::sims(logs, "5");
    let (pu, cu) = (py.url(), cpp.url());
    let dir = tmp.path().join("v");
    let crit = criteria();
    let (pa, ca) = (logs.join("py-audit.log"), logs.join("cpp-audit"));
    let out = run_with_timeout(
        &[
            "validate",
            "--phase",
            "3",
            "--primary",
            &pu,
            "--candidate",
            &cu,
            "--criteria",
            &crit,
            "--rate",
            "100",
            "--duration",
            "2s",
            "--warmup",
            "1s",
            "--primary-audit",
            pa.to_str().unwrap(),
            "--candidate-audit",
            ca.to_str().unwrap(),
            "--out",
            dir.to_str().unwrap(),
        ],
        Duration::from_secs(120),
    );
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(out.stdout.contains("[5/6] audit logs"), "{}", out.stdout);
    assert!(out.stdout.contains("[6/6] report"), "{}", out.stdout);
    assert!(
        out.stdout.contains("audit logs consistent"),
        "{}",
        out.stdout
    );
    let m = manifest(&dir);
    assert_eq!(
        m["extra"]["compare_only"],
        serde_json::json!(["mirror", "audit"])
    );
    let a = manifest(&dir.join("audit"));
    assert_eq!(a["kind"], "audit-diff");
    assert_eq!(a["targets"]["candidate"], cu.as_str(), "{a}");
    let audit = &a["extra"]["audit"];
    assert_eq!(audit["consistent"], true, "{audit}");
    assert_eq!(audit["primary"]["from_mark"], true, "{audit}");
    // Only the mirror step's entries: both sides saw the same requests.
    let (p, c) = (
        audit["primary"]["entries"].as_u64().unwrap(),
        audit["candidate"]["entries"].as_u64().unwrap(),
    );
    assert!(p > 0 && p == c, "{audit}");
    // The direct load steps logged on one side each, before the mark.
    let whole = std::fs::read_to_string(&pa).unwrap();
    assert!(whole.lines().count() as u64 > p, "{audit}");

    let c = criterion(&dir, "audit logs consistent");
    assert_eq!(c["status"], "pass", "{c}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap();
    let section = &report["discrepancies"]["audit"];
    assert_eq!(section["consistent"], true, "{report}");
    assert_eq!(section["matched"].as_u64(), Some(p), "{section}");
}

#[test]
fn one_audit_flag_without_the_other_is_bad_input() {
    let tmp = tempdir();
    let dir = tmp.path().join("v");
    let log = tmp.path().join("py.log");
    std::fs::write(&log, "").unwrap();
    let down = format!("http://{}", closed_port());
    for (flag, missing) in [
        ("--primary-audit", "--candidate-audit"),
        ("--candidate-audit", "--primary-audit"),
    ] {
        let out = run(&[
            "validate",
            "--phase",
            "3",
            "--primary",
            &down,
            "--candidate",
            &down,
            flag,
            log.to_str().unwrap(),
            "--out",
            dir.to_str().unwrap(),
        ]);
        assert_eq!(out.code(), Some(2), "{out:?}");
        assert!(out.stderr.contains(missing), "{}", out.stderr);
        assert!(!dir.exists(), "nothing written");
    }
}

#[test]
fn a_gateway_that_is_down_stops_validate_with_exit_2_before_anything_is_written() {
    let py = Server::spawn(&["sim", "--profile", "python", "--listen", "127.0.0.1:0"]);
    let tmp = tempdir();
    let dir = tmp.path().join("v");
    let down = format!("http://{}", closed_port());
    let out = run(&[
        "validate",
        "--phase",
        "1",
        "--primary",
        &py.url(),
        "--candidate",
        &down,
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(out.stderr.contains("candidate"), "{}", out.stderr);
    assert!(out.stderr.contains("not healthy"), "{}", out.stderr);
    assert!(!dir.exists(), "nothing written");
}

#[test]
fn ctrl_c_leaves_a_partial_run_that_report_reads() {
    let (py, cpp) = sims();
    let (pu, cu) = (py.url(), cpp.url());
    let pids = [py.pid().to_string(), cpp.pid().to_string()];
    let tmp = tempdir();
    let dir = tmp.path().join("v");
    let crit = criteria();
    let mut a = args(&pu, &cu, &pids, &crit, dir.to_str().unwrap());
    // A long load step, interrupted in its middle.
    let pos = a.iter().position(|x| *x == "3s").unwrap();
    a[pos] = "60s";
    let mut child = Command::new(BIN)
        .args(&a)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let seen = Arc::new(Mutex::new(String::new()));
    let reader = {
        let seen = Arc::clone(&seen);
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let mut s = seen.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        })
    };
    let stderr = {
        let mut e = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut e, &mut s);
            s
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !seen.lock().unwrap().contains("[2/5]") {
        assert!(Instant::now() < deadline, "validate never started loading");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Into the measured window of the primary's load step.
    std::thread::sleep(Duration::from_secs(3));
    let sent = Instant::now();
    assert!(
        Command::new("kill")
            .arg("-INT")
            .arg(child.id().to_string())
            .status()
            .unwrap()
            .success()
    );
    let status = wait_bounded(&mut child, Duration::from_secs(60))
        .expect("validate did not stop after SIGINT");
    reader.join().unwrap();
    let stdout = seen.lock().unwrap().clone();
    let stderr = stderr.join().unwrap();
    assert_eq!(
        status.code(),
        Some(130),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        sent.elapsed() < Duration::from_secs(30),
        "stopped promptly, not after the 60 s step"
    );
    assert!(stdout.contains("PARTIAL"), "{stdout}");
    assert!(!stdout.contains("[3/5] load candidate") || stdout.contains("PARTIAL"));
    let m = manifest(&dir);
    assert_eq!(m["extra"]["partial"], true, "{m}");
    assert!(
        m["extra"]["interrupted"]
            .as_str()
            .unwrap()
            .contains("SIGINT"),
        "{m}"
    );
    assert!(dir.join("load-primary/latency.hlog").exists());
    assert!(
        dir.join("report.html").exists(),
        "the partial run is reported"
    );

    let out = run(&[
        "report",
        dir.to_str().unwrap(),
        "--criteria",
        &crit,
        "--format",
        "term",
    ]);
    assert!(matches!(out.code(), Some(0 | 1)), "readable: {out:?}");
    assert!(out.stdout.contains("PARTIAL RUN"), "{}", out.stdout);
}
