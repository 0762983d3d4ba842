//! The primary path is sacred: whatever the candidate does (refuse, reset, answer slowly,
//! hang, send garbage, fail with 5xx), every client gets exactly what the primary answers,
//! and the candidate's trouble is counted in the run directory.

use std::time::Duration;

use shadowgate_mirror::{Summary, default_rules};
use shadowgate_record::{Counts, Run};

use crate::util::{self, PYTHON_SEEDED, client, get, sim, url};

/// Paths with deterministic answers on a seeded python simulator (JSON, and an HTML 404).
const PATHS: [&str; 4] = [
    "/health",
    "/api/config",
    "/api/execution/ping",
    "/no/such/page",
];
const ROUNDS: usize = 5;

/// Runs the same requests directly and through the mirror with the given candidate, checks
/// every answer is the primary's, and returns the candidate's counts and the summary.
async fn through_mirror(candidate_toml: Option<&str>) -> (Counts, Summary, Run) {
    let primary = sim(PYTHON_SEEDED).await;
    let candidate = match candidate_toml {
        Some(t) => Some(sim(t).await),
        None => None,
    };
    let candidate_url = candidate
        .as_ref()
        .map_or_else(util::closed_port, |c| url(c.local_addr()));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mirror = util::mirror(
        &url(primary.local_addr()),
        &candidate_url,
        &out,
        default_rules(),
        |c| {
            c.shadow_timeout = Duration::from_millis(300);
            c.breaker_pause = Duration::from_millis(200);
        },
    )
    .await;
    let http = client();
    let via = url(mirror.local_addr());
    let direct = url(primary.local_addr());
    for _ in 0..ROUNDS {
        for path in PATHS {
            let d = get(&http, &format!("{direct}{path}")).await;
            let m = get(&http, &format!("{via}{path}")).await;
            assert_eq!(d.status, m.status, "{path}");
            assert_eq!(d.body, m.body, "{path}");
            assert_eq!(d.stable_headers(), m.stable_headers(), "{path}");
        }
    }
    let summary = mirror.shutdown().await.unwrap();
    let run = Run::open(&out).unwrap();
    assert!(run.manifest.ended_at.is_some());
    assert!(run.warnings.is_empty(), "{:?}", run.warnings);
    let by_target = run.counts_by_target();
    let n = (ROUNDS * PATHS.len()) as u64;
    assert_eq!(by_target["primary"].requests, n);
    assert_eq!(summary.shadow.eligible, n);
    let candidate_counts = by_target.get("candidate").copied().unwrap_or_default();
    if let Some(c) = candidate {
        c.shutdown().await;
    }
    primary.shutdown().await;
    (candidate_counts, summary, run)
}

/// Every eligible copy ends in exactly one outcome.
fn accounted(s: &Summary) {
    let sh = &s.shadow;
    let ended = sh.compared
        + sh.dropped_budget
        + sh.breaker_open
        + sh.timeout
        + sh.connect_error
        + sh.error
        + sh.body_over_limit
        + sh.sse
        + sh.primary_failed
        + sh.queue_full;
    assert_eq!(ended, sh.eligible, "{sh:?}");
}

#[tokio::test]
async fn refused_candidate() {
    let (c, s, _) = through_mirror(None).await;
    assert!(c.connect_errors >= 1, "{c:?}");
    // The breaker opens after 5 consecutive failures; the rest are not even tried.
    assert!(s.breaker.trips >= 1, "{:?}", s.breaker);
    assert!(c.shadow_drops >= 1, "{c:?}");
    assert_eq!(
        c.shadow_drops,
        s.shadow.breaker_open + s.shadow.dropped_budget
    );
    accounted(&s);
}

#[tokio::test]
async fn resetting_candidate() {
    let (c, s, _) = through_mirror(Some(
        "profile = \"python\"\n[[faults]]\nkind = \"reset\"\nfraction = 1.0\n",
    ))
    .await;
    assert!(c.other_errors + c.connect_errors >= 1, "{c:?}");
    assert!(
        s.shadow.error + s.shadow.connect_error >= 1,
        "{:?}",
        s.shadow
    );
    accounted(&s);
}

#[tokio::test]
async fn slow_candidate() {
    let (c, s, _) = through_mirror(Some(
        "profile = \"python\"\n[latency]\ndefault = \"fixed:1s\"\n",
    ))
    .await;
    assert!(c.timeouts >= 1, "{c:?}");
    assert_eq!(s.shadow.compared, 0);
    accounted(&s);
}

#[tokio::test]
async fn hanging_candidate() {
    let (c, s, _) = through_mirror(Some(
        "profile = \"python\"\n[[faults]]\nkind = \"hang\"\nfraction = 1.0\n",
    ))
    .await;
    assert!(c.timeouts >= 1, "{c:?}");
    assert!(s.shadow.timeout >= 1, "{:?}", s.shadow);
    accounted(&s);
}

#[tokio::test]
async fn garbage_candidate() {
    let (c, s, _) = through_mirror(Some(
        "profile = \"python\"\n[[faults]]\nkind = \"garbage\"\nbytes = 64\nfraction = 1.0\n",
    ))
    .await;
    assert!(c.other_errors >= 1, "{c:?}");
    assert!(s.shadow.error >= 1, "{:?}", s.shadow);
    accounted(&s);
}

#[tokio::test]
async fn failing_candidate() {
    let (c, s, run) = through_mirror(Some(
        "profile = \"python\"\n[[faults]]\nkind = \"error\"\nstatus = 503\nfraction = 1.0\n",
    ))
    .await;
    // A 5xx is an answer: compared (and reported), not a breaker failure.
    assert_eq!(c.status_5xx, c.requests, "{c:?}");
    assert_eq!(s.breaker.trips, 0);
    assert_eq!(s.shadow.compared, s.shadow.eligible);
    let status_diffs = run
        .discrepancies
        .iter()
        .filter(|d| d.path == "/status")
        .count() as u64;
    assert_eq!(status_diffs, s.shadow.compared);
    accounted(&s);
}

#[tokio::test]
async fn primary_down_is_a_502_naming_the_upstream() {
    let candidate = sim(PYTHON_SEEDED).await;
    let dir = tempfile::tempdir().unwrap();
    let primary = util::closed_port();
    let mirror = util::mirror(
        &primary,
        &url(candidate.local_addr()),
        &dir.path().join("run"),
        default_rules(),
        |c| c.connect_timeout = Duration::from_secs(2),
    )
    .await;
    let http = client();
    let resp = tokio::time::timeout(
        Duration::from_secs(2),
        get(&http, &format!("{}/health", url(mirror.local_addr()))),
    )
    .await
    .expect("the 502 comes within the connect timeout");
    assert_eq!(resp.status, 502);
    assert_eq!(resp.headers["content-type"], "application/json");
    let body = resp.json();
    assert_eq!(body["error"], "bad_gateway");
    assert_eq!(body["upstream"], "primary");
    assert_eq!(body["url"], primary.as_str());
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .starts_with("connect failed"),
        "{body}"
    );
    let s = mirror.shutdown().await.unwrap();
    assert_eq!(s.primary.connect_errors, 1);
    assert_eq!(s.shadow.primary_failed, 1);
    // Nothing reached the candidate.
    assert_eq!(candidate.stats().requests_total, 0);
    candidate.shutdown().await;
}

#[tokio::test]
async fn slow_primary_headers_are_a_504_naming_the_upstream() {
    let primary = sim("profile = \"python\"\n[latency]\ndefault = \"fixed:2s\"\n").await;
    let candidate = sim(PYTHON_SEEDED).await;
    let dir = tempfile::tempdir().unwrap();
    let mirror = util::mirror(
        &url(primary.local_addr()),
        &url(candidate.local_addr()),
        &dir.path().join("run"),
        default_rules(),
        |c| c.primary_timeout = Duration::from_millis(200),
    )
    .await;
    let resp = get(&client(), &format!("{}/health", url(mirror.local_addr()))).await;
    assert_eq!(resp.status, 504);
    let body = resp.json();
    assert_eq!(body["error"], "gateway_timeout");
    assert_eq!(body["upstream"], "primary");
    let s = mirror.shutdown().await.unwrap();
    assert_eq!(s.primary.timeouts, 1);
    assert_eq!(s.shadow.primary_failed, 1);
    assert_eq!(candidate.stats().requests_total, 0);
    primary.shutdown().await;
    candidate.shutdown().await;
}
