//! `shadowgate audit-diff` against the simulators' own audit logs: a python-profile primary
//! (`[AUDIT]` lines in a file) and a cpp-profile candidate (NDJSON files in a directory),
//! driven with orders and cancels through the mirror. Consistent logs exit 0; seeded
//! divergences (lines deleted from the candidate's log, a changed quantity) are found with
//! exactly their counts; bad input exits 2 naming the file and line.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};

use shadowgate_record::Run;

use crate::util::{Server, WAIT, run};

/// The shipped VeloZ rules (python primary, C++ candidate).
pub(crate) fn veloz_rules() -> String {
    format!("{}/scenarios/veloz.toml", env!("CARGO_MANIFEST_DIR"))
}

/// A seeded python-profile primary and cpp-profile candidate (auth off, so the candidate
/// accepts the mirrored orders), with their audit logs under `dir`.
pub(crate) fn sims(dir: &Path, seed: &str) -> (Server, Server) {
    let py = Server::spawn(&[
        "sim",
        "--profile",
        "python",
        "--listen",
        "127.0.0.1:0",
        "--seed",
        seed,
        "--audit-log",
        dir.join("py-audit.log").to_str().unwrap(),
    ]);
    let cpp = Server::spawn(&[
        "sim",
        "--profile",
        "cpp",
        "--listen",
        "127.0.0.1:0",
        "--seed",
        seed,
        "--auth",
        "off",
        "--audit-dir",
        dir.join("cpp-audit").to_str().unwrap(),
    ]);
    (py, cpp)
}

/// The mirror in front of the two, with the VeloZ rules.
pub(crate) fn mirror(py: &Server, cpp: &Server, out: &Path, extra: &[&str]) -> Server {
    let mut args = vec![
        "mirror",
        "--primary",
        &py.url(),
        "--candidate",
        &cpp.url(),
        "--listen",
        "127.0.0.1:0",
        "--rules",
        &veloz_rules(),
        "--out",
        out.to_str().unwrap(),
        "--interval",
        "100ms",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect::<Vec<_>>();
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::spawn(&refs)
}

/// One HTTP/1.1 request with extra headers; returns the status.
pub(crate) fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> u16 {
    let mut s = TcpStream::connect_timeout(&addr, WAIT).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"))
}

/// `n` orders with client ids `t-0…`, every third one cancelled, plus reads; all through the
/// mirror, python-style (the rules translate for the candidate).
pub(crate) fn order_traffic(mirror: SocketAddr, n: usize) {
    let json = [("Content-Type", "application/json")];
    assert_eq!(request(mirror, "GET", "/health", &[], ""), 200);
    for i in 0..n {
        let side = if i % 2 == 0 { "BUY" } else { "SELL" };
        let body = format!(
            r#"{{"client_order_id": "t-{i}", "side": "{side}", "symbol": "BTCUSDT", "qty": 0.01, "price": 42000}}"#
        );
        assert_eq!(request(mirror, "POST", "/api/order", &json, &body), 200);
        if i % 3 == 0 {
            let body = format!(r#"{{"client_order_id": "t-{i}", "symbol": "BTCUSDT"}}"#);
            assert_eq!(request(mirror, "POST", "/api/cancel", &json, &body), 200);
        }
    }
}

/// The cpp audit file (the simulator writes one per UTC day; a test spanning midnight may
/// have two).
fn cpp_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("cpp-audit"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

/// Runs the traffic through the mirror (captured), stops everything, and returns the
/// mirror's run dir. The mirror's manifest records the capture file and its counts.
fn recorded_run(dir: &Path, orders: usize) -> PathBuf {
    let (py, cpp) = sims(dir, "11");
    let out = dir.join("mirror-run");
    let capture = dir.join("capture.ndjson");
    let m = mirror(&py, &cpp, &out, &["--capture", capture.to_str().unwrap()]);
    order_traffic(m.addr, orders);
    assert_eq!(request(m.addr, "GET", "/api/account", &[], ""), 200);
    let (status, stderr) = m.signal_and_wait("TERM");
    assert_eq!(status.code(), Some(0), "{stderr}");
    let _ = py.signal_and_wait("TERM");
    let _ = cpp.signal_and_wait("TERM");
    let lines = std::fs::read_to_string(&capture).unwrap().lines().count() as u64;
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let c = &manifest["extra"]["mirror"]["capture"];
    assert_eq!(c["file"], capture.to_str().unwrap(), "{manifest}");
    assert_eq!(c["written"].as_u64(), Some(lines), "{c}");
    assert_eq!(
        (c["dropped"].as_u64(), c["secrets_kept"].as_bool()),
        (Some(0), Some(false))
    );
    out
}

fn audit_diff(dir: &Path, candidate: &Path, out: &str, run_dir: &Path) -> crate::util::Output {
    let mut args = vec![
        "audit-diff".to_owned(),
        dir.join("py-audit.log").display().to_string(),
        candidate.display().to_string(),
        "--out".to_owned(),
        dir.join(out).display().to_string(),
        "--rules".to_owned(),
        format!("{}/scenarios/audit.toml", env!("CARGO_MANIFEST_DIR")),
    ];
    // The run's id map, when the mirror wrote one (ids the map does not know are used as
    // they are: these clients send their own).
    if run_dir.join("ids.ndjson").exists() {
        args.push("--ids".into());
        args.push(run_dir.display().to_string());
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    run(&refs)
}

fn kinds(out: &Path) -> Vec<(String, String, String)> {
    let r = Run::open(out).unwrap();
    assert_eq!(r.manifest.kind.as_str(), "audit-diff");
    let mut k: Vec<(String, String, String)> = r
        .discrepancies
        .iter()
        .map(|d| (d.kind.as_str().to_owned(), d.route.clone(), d.path.clone()))
        .collect();
    k.sort();
    k
}

#[test]
fn mirrored_orders_leave_consistent_audit_logs_and_seeded_divergence_is_counted_exactly() {
    let tmp = crate::util::tempdir();
    let dir = tmp.path();
    let run_dir = recorded_run(dir, 12);

    // Consistent: 12 submits, 4 cancels, 1 account query on each side.
    let o = audit_diff(dir, &dir.join("cpp-audit"), "audit-ok", &run_dir);
    assert_eq!(o.code(), Some(0), "{}\n{}", o.stdout, o.stderr);
    assert!(o.stdout.contains("audit logs consistent"), "{}", o.stdout);
    for line in ["ORDER_SUBMIT", "ORDER_CANCEL", "ACCOUNT_QUERY"] {
        assert!(o.stdout.contains(line), "{}", o.stdout);
    }
    // primary, candidate, matched, missing, extra, mismatched per action (order-state polls
    // of the flow comparison, if on, add ORDER_QUERY rows: consistent too).
    let row = |name: &str| -> Vec<String> {
        let line = o.stdout.lines().find(|l| l.starts_with(name)).unwrap();
        line.split_whitespace().skip(1).map(str::to_owned).collect()
    };
    assert_eq!(row("ORDER_SUBMIT"), ["12", "12", "12", "0", "0", "0"]);
    assert_eq!(row("ORDER_CANCEL"), ["4", "4", "4", "0", "0", "0"]);
    assert_eq!(row("ACCOUNT_QUERY"), ["1", "1", "1", "0", "0", "0"]);
    let total = row("total");
    assert_eq!(total[0], total[2], "everything matched: {total:?}");
    assert_eq!(&total[3..], ["0", "0", "0"]);
    assert!(kinds(&dir.join("audit-ok")).is_empty());

    // Seeded divergence in a copy of the candidate's log: t-1 and t-4 submits deleted,
    // t-2's quantity changed, one garbage line (reported with its line, not fatal).
    let files = cpp_files(dir);
    let text: String = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    let mut edited = Vec::new();
    for line in text.lines() {
        let submit = line.contains("ORDER_SUBMIT");
        if submit && (line.contains("\"t-1\"") || line.contains("\"t-4\"")) {
            continue;
        }
        if submit && line.contains("\"t-2\"") {
            edited.push(line.replace("\"qty\":\"0.01\"", "\"qty\":\"0.02\""));
        } else {
            edited.push(line.to_owned());
        }
        if edited.len() == 3 {
            edited.push("this is not json".to_owned());
        }
    }
    let diverged = dir.join("diverged.log");
    std::fs::write(&diverged, edited.join("\n") + "\n").unwrap();
    let o = audit_diff(dir, &diverged, "audit-bad", &run_dir);
    assert_eq!(o.code(), Some(1), "{}\n{}", o.stdout, o.stderr);
    assert!(
        o.stderr.contains("diverged.log:4"),
        "the garbage line is named: {}",
        o.stderr
    );
    let k = kinds(&dir.join("audit-bad"));
    let find = |kind: &str| k.iter().filter(|(x, _, _)| x == kind).collect::<Vec<_>>();
    assert_eq!(find("audit-missing").len(), 2, "{k:?}");
    assert!(
        find("audit-missing")
            .iter()
            .all(|(_, r, _)| r == "audit:ORDER_SUBMIT")
    );
    assert_eq!(
        find("audit-mismatch"),
        vec![&(
            "audit-mismatch".to_owned(),
            "audit:ORDER_SUBMIT".to_owned(),
            "/qty".to_owned()
        )]
    );
    assert!(find("audit-extra").is_empty(), "{k:?}");
    assert_eq!(find("not-compared").len(), 1, "{k:?}");
    assert!(
        o.stdout.contains("2 missing, 0 extra, 1 mismatched"),
        "{}",
        o.stdout
    );

    // The report shows them.
    let r = run(&["report", dir.join("audit-bad").to_str().unwrap()]);
    assert!(r.stdout.contains("3 regression"), "{}", r.stdout);
}

#[test]
fn bad_input_exits_2_naming_the_file_and_line() {
    let tmp = crate::util::tempdir();
    let dir = tmp.path();
    let py = dir.join("py.log");
    std::fs::write(
        &py,
        "2026-11-29 12:00:00 [AUDIT] {\"action\": \"get_account\", \"user\": \"u\"}\n",
    )
    .unwrap();
    let cpp = dir.join("cpp.log");
    std::fs::write(
        &cpp,
        "{\"timestamp\":\"t\",\"type\":\"access\",\"action\":\"ACCOUNT_QUERY\",\"user_id\":\"u\",\"ip_address\":\"x\"}\n",
    )
    .unwrap();
    let out = |name: &str| dir.join(name).display().to_string();

    // A good pair, for reference.
    let o = run(&[
        "audit-diff",
        &out("py.log"),
        &out("cpp.log"),
        "--out",
        &out("ok"),
    ]);
    assert_eq!(o.code(), Some(0), "{}", o.stderr);

    // A malformed id map line.
    let ids = dir.join("ids.ndjson");
    std::fs::write(
        &ids,
        "{\"kind\":\"order\",\"primary\":\"a\",\"candidate\":\"b\"}\nnope\n{}\n",
    )
    .unwrap();
    let o = run(&[
        "audit-diff",
        &out("py.log"),
        &out("cpp.log"),
        "--ids",
        &out("ids.ndjson"),
        "--out",
        &out("x1"),
    ]);
    assert_eq!(o.code(), Some(2));
    assert!(o.stderr.contains("ids.ndjson:2"), "{}", o.stderr);
    assert!(!dir.join("x1").exists(), "nothing written on bad input");

    // Something that is no audit log at all.
    let junk = dir.join("junk.txt");
    std::fs::write(&junk, "hello\nworld\n").unwrap();
    let o = run(&[
        "audit-diff",
        &out("py.log"),
        &out("junk.txt"),
        "--out",
        &out("x2"),
    ]);
    assert_eq!(o.code(), Some(2));
    assert!(o.stderr.contains("junk.txt:1"), "{}", o.stderr);

    // A rules problem names the file and the key.
    let rules = dir.join("audit.toml");
    std::fs::write(&rules, "[audit]\nunmapped = \"sometimes\"\n").unwrap();
    let o = run(&[
        "audit-diff",
        &out("py.log"),
        &out("cpp.log"),
        "--rules",
        &out("audit.toml"),
        "--out",
        &out("x3"),
    ]);
    assert_eq!(o.code(), Some(2));
    assert!(
        o.stderr.contains("audit.toml") && o.stderr.contains("audit.unmapped"),
        "{}",
        o.stderr
    );

    // A missing file.
    let o = run(&[
        "audit-diff",
        &out("nope.log"),
        &out("cpp.log"),
        "--out",
        &out("x4"),
    ]);
    assert_eq!(o.code(), Some(2));
    assert!(o.stderr.contains("nope.log"), "{}", o.stderr);
}

#[test]
fn generated_ids_are_matched_through_the_runs_id_map() {
    let tmp = crate::util::tempdir();
    let dir = tmp.path();
    let (py, cpp) = sims(dir, "13");
    let out = dir.join("mirror-run");
    let m = mirror(&py, &cpp, &out, &[]);
    // No client ids: python answers `web-<ms>`, C++ `veloz_<ns>_<n>`; the mirror learns the
    // pairs and rewrites the cancel for the candidate.
    for i in 0..4 {
        let (status, body) = crate::util::http(
            m.addr,
            "POST",
            "/api/order",
            Some(r#"{"side": "BUY", "symbol": "BTCUSDT", "qty": 0.01, "price": 42000}"#),
        );
        assert_eq!(status, 200, "{body}");
        if i == 1 {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            let id = v["client_order_id"].as_str().unwrap();
            let cancel = format!(r#"{{"client_order_id": "{id}", "symbol": "BTCUSDT"}}"#);
            let (status, _) = crate::util::http(m.addr, "POST", "/api/cancel", Some(&cancel));
            assert_eq!(status, 200);
        }
    }
    let (status, stderr) = m.signal_and_wait("TERM");
    assert_eq!(status.code(), Some(0), "{stderr}");
    drop((py, cpp));
    assert!(
        out.join("ids.ndjson").exists(),
        "the mirror writes its id map"
    );

    let with_map = audit_diff(dir, &dir.join("cpp-audit"), "with-map", &out);
    assert_eq!(
        with_map.code(),
        Some(0),
        "{}\n{}",
        with_map.stdout,
        with_map.stderr
    );
    let row = |o: &crate::util::Output, name: &str| -> Vec<String> {
        let line = o.stdout.lines().find(|l| l.starts_with(name)).unwrap();
        line.split_whitespace().skip(1).map(str::to_owned).collect()
    };
    assert_eq!(
        row(&with_map, "ORDER_SUBMIT"),
        ["4", "4", "4", "0", "0", "0"]
    );
    assert_eq!(
        row(&with_map, "ORDER_CANCEL"),
        ["1", "1", "1", "0", "0", "0"]
    );

    // Without the map the generated ids cannot be paired: every order is missing on one
    // side and extra on the other.
    let o = run(&[
        "audit-diff",
        dir.join("py-audit.log").to_str().unwrap(),
        dir.join("cpp-audit").to_str().unwrap(),
        "--out",
        dir.join("no-map").to_str().unwrap(),
    ]);
    assert_eq!(o.code(), Some(1), "{}", o.stdout);
    assert_eq!(row(&o, "ORDER_SUBMIT"), ["4", "4", "0", "4", "4", "0"]);
}
