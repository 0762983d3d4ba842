//! `shadowgate demo` end to end: the seeded demo fails its gate on purpose (exit 1) and
//! prints the verdict, the discrepancy groups and the report's path; `--clean` passes
//! (exit 0); report.html opens in headless Chromium and is not blank.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::util::{Output, run_with_timeout, tempdir};

/// Short runs keep the test time low; the default is 20 s.
fn demo(out: &Path, extra: &[&str]) -> Output {
    let out = out.to_str().unwrap();
    let mut args = vec!["demo", "--duration", "4s", "--rate", "400", "--out", out];
    args.extend_from_slice(extra);
    run_with_timeout(&args, Duration::from_secs(120))
}

#[test]
fn seeded_demo_fails_on_purpose_and_clean_demo_passes() {
    let tmp = tempdir();
    let seeded = tmp.path().join("seeded");
    let out = demo(&seeded, &[]);
    assert_eq!(out.code(), Some(1), "{out:?}");
    for expected in [
        "[1/5]",
        "[5/5]",
        "criterion",
        "FAIL: Demo gate",
        "discrepancies:",
        "regression  GET",
        "seeded in the candidate:",
        "This FAIL is on purpose",
    ] {
        assert!(
            out.stdout.contains(expected),
            "missing {expected:?}:\n{}",
            out.stdout
        );
    }
    let html = seeded.join("report.html");
    assert!(
        out.stdout.contains(&html.display().to_string()),
        "{}",
        out.stdout
    );
    for f in [
        "report.html",
        "report.md",
        "report.json",
        "junit.xml",
        "summary.csv",
        "mirror/discrepancies.ndjson",
        "mirror/latency.hlog",
        "load/latency.hlog",
        "resources/resources.csv",
        "rules/veloz.toml",
        "criteria.toml",
    ] {
        assert!(seeded.join(f).exists(), "{f} missing");
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(seeded.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["kind"], "demo");
    assert_eq!(manifest["extra"]["partial"], false);
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(seeded.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["verdict"], "fail", "{report}");
    screenshot_is_not_blank(&html, tmp.path());

    let clean = tmp.path().join("clean");
    let out = demo(&clean, &["--clean"]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(out.stdout.contains("PASS: Demo gate"), "{}", out.stdout);
    assert!(clean.join("report.html").exists());
}

/// Renders `html` in headless Chromium (as crates/report/tests/report.rs does) and checks the
/// screenshot has content.
fn screenshot_is_not_blank(html: &Path, tmp: &Path) {
    let png = tmp.join("shot.png");
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
        ])
        .arg(format!("--user-data-dir={}", tmp.join("profile").display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg("--window-size=1280,2000")
        .arg(format!("file://{}", html.canonicalize().unwrap().display()))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = crate::util::wait_bounded(&mut child, Duration::from_secs(120))
        .expect("chromium did not finish within 120 s");
    assert!(status.success(), "chromium failed");
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let lum: Vec<f64> = buf[..info.buffer_size()]
        .chunks(channels * (info.bit_depth as usize / 8).max(1))
        .map(|p| {
            let g = |i: usize| p[i.min(p.len() - 1)] as f64;
            0.299 * g(0) + 0.587 * g(1) + 0.114 * g(2)
        })
        .collect();
    let mean = lum.iter().sum::<f64>() / lum.len() as f64;
    let var = lum.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / lum.len() as f64;
    let drawn = lum.iter().filter(|l| (*l - lum[0]).abs() > 30.0).count() as f64 / lum.len() as f64;
    assert!(var > 100.0, "screenshot looks blank: variance {var}");
    assert!(
        drawn > 0.01,
        "screenshot looks blank: {drawn} of pixels drawn"
    );
}

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
