//! `shadowgate mirror --capture` and `shadowgate replay`: a mirrored run of seeded simulators
//! is captured, replayed into fresh simulators with the same seeds, and the replay's run
//! directory holds the same discrepancy groups with the same counts. Secrets stay out of a
//! capture unless `--capture-secrets` is given, and a replay of a redacted capture says so.

use std::collections::BTreeMap;
use std::path::Path;

use shadowgate_record::Run;

use crate::audit_cli::{mirror, order_traffic, request, sims, veloz_rules};
use crate::util::run;

/// signature → (route, kind, class, count), over every line of a run directory.
fn groups(dir: &Path) -> BTreeMap<String, (String, String, String, usize)> {
    let r = Run::open(dir).unwrap();
    let mut g: BTreeMap<String, (String, String, String, usize)> = BTreeMap::new();
    for d in &r.discrepancies {
        let key = if d.signature.is_empty() {
            format!("{} {} {:?}", d.route, d.kind.as_str(), d.detail)
        } else {
            d.signature.clone()
        };
        let e = g.entry(key).or_insert_with(|| {
            (
                d.route.clone(),
                d.kind.as_str().to_owned(),
                format!("{:?}", d.class),
                0,
            )
        });
        e.3 += 1;
    }
    g
}

const SECRET: &str = "Bearer sekrit-token-4711";

#[test]
fn a_replayed_capture_reproduces_the_discrepancy_groups_and_counts() {
    let tmp = crate::util::tempdir();
    let dir = tmp.path();
    let capture = dir.join("capture.ndjson");
    let original = dir.join("original");

    // The original run, captured (secrets redacted).
    let a = dir.join("a");
    std::fs::create_dir_all(&a).unwrap();
    let (py, cpp) = sims(&a, "5");
    let m = mirror(
        &py,
        &cpp,
        &original,
        &["--capture", capture.to_str().unwrap()],
    );
    order_traffic(m.addr, 15);
    assert_eq!(
        request(m.addr, "GET", "/health", &[("Authorization", SECRET)], ""),
        200
    );
    let (status, stderr) = m.signal_and_wait("TERM");
    assert_eq!(status.code(), Some(0), "{stderr}");
    drop((py, cpp));

    let text = std::fs::read_to_string(&capture).unwrap();
    // 1 + 15 orders + 5 cancels + 1.
    assert_eq!(text.lines().count(), 22, "{text}");
    assert!(
        !text.contains("sekrit-token-4711"),
        "a secret reached the capture"
    );
    assert!(text.contains("[redacted:"), "{text}");
    let g1 = groups(&original);
    assert!(
        !g1.is_empty(),
        "python vs cpp always differ (/health at least)"
    );

    // Fresh simulators with the same seeds, the capture replayed as fast as it goes.
    let b = dir.join("b");
    std::fs::create_dir_all(&b).unwrap();
    let (py, cpp) = sims(&b, "5");
    let replayed = dir.join("replayed");
    let o = run(&[
        "replay",
        capture.to_str().unwrap(),
        "--primary",
        &py.url(),
        "--candidate",
        &cpp.url(),
        "--rules",
        &veloz_rules(),
        "--out",
        replayed.to_str().unwrap(),
        "--pace",
        "max",
        "--interval",
        "100ms",
    ]);
    assert_eq!(o.code(), Some(0), "{}\n{}", o.stdout, o.stderr);
    assert!(o.stdout.contains("replayed 22 of 22"), "{}", o.stdout);
    // The redacted header is named, and not sent.
    assert!(
        o.stderr.contains("authorization (1)") && o.stderr.contains("--capture-secrets"),
        "{}",
        o.stderr
    );
    let r = Run::open(&replayed).unwrap();
    assert_eq!(r.manifest.kind.as_str(), "replay");
    assert_eq!(r.manifest.extra["replay"]["sent"], 22);
    let g2 = groups(&replayed);
    if g2 != g1 {
        let details = |d: &Path| {
            Run::open(d)
                .unwrap()
                .discrepancies
                .iter()
                .filter(|x| !matches!(x.kind.as_str(), "header" | "missing" | "extra"))
                .map(|x| {
                    format!(
                        "{} {} {:?} {:?}",
                        x.route,
                        x.kind.as_str(),
                        x.path,
                        x.detail
                    )
                })
                .collect::<Vec<_>>()
        };
        panic!(
            "groups differ\noriginal: {g1:#?}\nreplayed: {g2:#?}\noriginal lines: {:#?}\nreplayed lines: {:#?}",
            details(&original),
            details(&replayed)
        );
    }

    // The replay reached both gateways: the candidate's audit log has the same orders.
    let o = run(&[
        "audit-diff",
        b.join("py-audit.log").to_str().unwrap(),
        b.join("cpp-audit").to_str().unwrap(),
        "--out",
        dir.join("audit").to_str().unwrap(),
    ]);
    assert_eq!(o.code(), Some(0), "{}\n{}", o.stdout, o.stderr);
}

#[test]
fn capture_secrets_keeps_them_and_is_refused_without_capture() {
    let tmp = crate::util::tempdir();
    let dir = tmp.path();
    let (py, cpp) = sims(dir, "3");
    let capture = dir.join("c.ndjson");
    let m = mirror(
        &py,
        &cpp,
        &dir.join("run"),
        &["--capture", capture.to_str().unwrap(), "--capture-secrets"],
    );
    assert_eq!(
        request(m.addr, "GET", "/health", &[("Authorization", SECRET)], ""),
        200
    );
    let (status, stdout_err) = m.signal_and_wait("TERM");
    assert_eq!(status.code(), Some(0), "{stdout_err}");
    let text = std::fs::read_to_string(&capture).unwrap();
    assert!(text.contains("sekrit-token-4711"), "{text}");

    let o = run(&[
        "mirror",
        "--primary",
        &py.url(),
        "--candidate",
        &cpp.url(),
        "--capture-secrets",
        "--out",
        dir.join("x").to_str().unwrap(),
    ]);
    assert_eq!(o.code(), Some(2), "{}", o.stderr);
    assert!(o.stderr.contains("--capture"), "{}", o.stderr);

    // A torn last line is skipped with a warning; a bad line elsewhere is an error naming it.
    let torn = dir.join("torn.ndjson");
    std::fs::write(&torn, format!("{text}{{\"seq\":")).unwrap();
    let bad = dir.join("bad.ndjson");
    std::fs::write(&bad, format!("garbage\n{text}")).unwrap();
    let o = run(&[
        "replay",
        bad.to_str().unwrap(),
        "--primary",
        &py.url(),
        "--candidate",
        &cpp.url(),
        "--out",
        dir.join("r1").to_str().unwrap(),
    ]);
    assert_eq!(o.code(), Some(2));
    assert!(o.stderr.contains("bad.ndjson: line 1"), "{}", o.stderr);
    let o = run(&[
        "replay",
        torn.to_str().unwrap(),
        "--primary",
        &py.url(),
        "--candidate",
        &cpp.url(),
        "--out",
        dir.join("r2").to_str().unwrap(),
        "--pace",
        "1000",
    ]);
    assert_eq!(o.code(), Some(0), "{}", o.stderr);
    assert!(o.stderr.contains("torn last line"), "{}", o.stderr);
    assert!(o.stdout.contains("replayed 1 of 1"), "{}", o.stdout);
}
