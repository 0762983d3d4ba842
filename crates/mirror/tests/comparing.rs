//! What the mirror records: comparisons of identical and of different gateways, body limits,
//! learned noise with a secondary, and the run directory read back with `Run::open`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use http::Method;
use http::header::HeaderValue;
use serde_json::json;
use shadowgate_mirror::default_rules;
use shadowgate_record::{Class, DiscrepancyKind, Run, SeriesKey};

use crate::util::{
    self, PYTHON_SEEDED, TestBody, client, get, request, serve, sim, test_rules, url,
};

/// Read-only routes whose answers do not depend on the (unmirrored) writes below.
const MIXED: [&str; 5] = [
    "/health",
    "/api/config",
    "/api/market",
    "/api/execution/ping",
    "/static/missing.js",
];

#[tokio::test]
async fn identical_gateways_show_no_regression() {
    let primary = sim(PYTHON_SEEDED).await;
    let candidate = sim(PYTHON_SEEDED).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mirror = util::mirror(
        &url(primary.local_addr()),
        &url(candidate.local_addr()),
        &out,
        test_rules(),
        |_| {},
    )
    .await;
    let http = client();
    let via = url(mirror.local_addr());
    let rounds = 40;
    for _ in 0..rounds {
        for p in MIXED {
            get(&http, &format!("{via}{p}")).await;
        }
        // Skipped write (no opt-in): not eligible, not compared.
        request(
            &http,
            Method::POST,
            &format!("{via}/api/order"),
            &[("content-type", "application/json")],
            r#"{"side":"BUY","qty":1,"price":1}"#,
        )
        .await;
    }
    let n = (rounds * MIXED.len()) as u64;
    util::eventually("every exchange compared", || {
        mirror.summary().shadow.compared == n
    })
    .await;
    let s = mirror.shutdown().await.unwrap();
    assert_eq!(s.comparisons.regression, 0, "{:#?}", s.groups);
    assert_eq!(s.coverage, Some(1.0));
    assert_eq!(s.shadow.write_skipped, rounds as u64);
    // Keep-alive both sides: connections are reused. (The python gateway closes the
    // connection after each HTML 404, one per round here, so some reconnects are its own.)
    assert!(
        s.connections.primary <= rounds as u64 + 2,
        "{:?}",
        s.connections
    );
    assert!(
        s.connections.candidate <= rounds as u64 + 2,
        "{:?}",
        s.connections
    );
    assert!(s.connections.primary < n / 4, "{:?}", s.connections);

    let run = Run::open(&out).unwrap();
    assert!(run.warnings.is_empty(), "{:?}", run.warnings);
    assert!(
        run.discrepancies
            .iter()
            .all(|d| d.class != Class::Regression),
        "{:?}",
        run.discrepancies
    );
    for target in ["primary", "candidate"] {
        let key = SeriesKey::response(target, "GET", "/api/market").unwrap();
        let series = run.latency.get(&key).unwrap_or_else(|| panic!("{key:?}"));
        assert_eq!(series.total.len(), rounds as u64, "{target}");
    }
    // Unmatched paths are grouped by their generalized form.
    assert!(
        run.counts_by_route()
            .keys()
            .any(|k| k.route == "/static/missing.js")
    );
    let extra = &run.manifest.extra["mirror"];
    assert_eq!(extra["coverage"], json!(1.0));
    assert_eq!(extra["shadow"]["compared"], json!(n));
    assert_eq!(run.manifest.targets["primary"], url(primary.local_addr()));
    primary.shutdown().await;
    candidate.shutdown().await;
}

#[tokio::test]
async fn different_gateways_are_reported_by_route() {
    let primary = sim(PYTHON_SEEDED).await;
    let candidate = sim("profile = \"cpp\"\nseed = 11\n[auth]\nenabled = false\n").await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mirror = util::mirror(
        &url(primary.local_addr()),
        &url(candidate.local_addr()),
        &out,
        default_rules(),
        |_| {},
    )
    .await;
    let http = client();
    let via = url(mirror.local_addr());
    for _ in 0..3 {
        get(&http, &format!("{via}/health")).await;
    }
    util::eventually("compared", || mirror.summary().shadow.compared == 3).await;
    let admin = url(mirror.admin_addr().unwrap());
    let metrics =
        String::from_utf8(get(&http, &format!("{admin}/metrics")).await.body.to_vec()).unwrap();
    assert!(
        metrics.contains("shadowgate_mirror_discrepancies_total{method=\"GET\",route=\"/health\""),
        "{metrics}"
    );
    assert!(metrics.contains("# TYPE shadowgate_mirror_response_seconds histogram"));
    assert!(metrics.contains("shadowgate_mirror_requests_total{target=\"candidate\",method=\"GET\",route=\"/health\",outcome=\"2xx\"} 3"), "{metrics}");
    let summary = get(&http, &format!("{admin}/summary")).await.json();
    let groups = summary["groups"].as_array().unwrap();
    assert!(!groups.is_empty());
    assert!(groups.iter().all(|g| g["route"] == "/health"));
    assert_eq!(groups[0]["class"], "regression");
    assert_eq!(groups[0]["count"], 3);
    let s = mirror.shutdown().await.unwrap();
    assert_eq!(s.comparisons.regression, 3);
    let run = Run::open(&out).unwrap();
    let lines: Vec<_> = run
        .discrepancies
        .iter()
        .filter(|d| d.route == "/health")
        .collect();
    assert!(lines.len() >= 3);
    assert!(
        lines
            .iter()
            .all(|d| d.method == "GET" && !d.signature.is_empty())
    );
    primary.shutdown().await;
    candidate.shutdown().await;
}

#[tokio::test]
async fn bodies_over_the_limit_stream_through_and_are_counted() {
    let big = "x".repeat(64 << 10);
    let body = big.clone();
    // Reads the request body before answering, as a gateway does (answering early and
    // closing would break the upload off, which is the upstream's doing, not the mirror's).
    let (p_addr, p_task) = serve(move |r| {
        let b = body.clone();
        async move {
            let _ = http_body_util::BodyExt::collect(r.into_body()).await;
            http::Response::new(TestBody::text(b))
        }
    })
    .await;
    let (c_addr, c_task) = serve(|_r| async { http::Response::new(TestBody::text("small")) }).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mirror = util::mirror(&url(p_addr), &url(c_addr), &out, default_rules(), |c| {
        c.body_limit = 1024;
    })
    .await;
    let http = client();
    let via = url(mirror.local_addr());
    for _ in 0..3 {
        let r = get(&http, &format!("{via}/big")).await;
        assert_eq!(r.body.len(), big.len());
    }
    // A request body over the limit reaches the primary whole and is not mirrored.
    let r = request(&http, Method::GET, &format!("{via}/upload"), &[], &big).await;
    assert_eq!(r.status, 200);
    let s = mirror.shutdown().await.unwrap();
    assert_eq!(s.shadow.body_over_limit, 4);
    assert_eq!(s.shadow.sent, 0);
    assert_eq!(s.coverage, Some(0.0));
    let run = Run::open(&out).unwrap();
    let notes: Vec<_> = run
        .discrepancies
        .iter()
        .filter(|d| d.kind == DiscrepancyKind::NotCompared)
        .collect();
    // One line per route, the rest counted.
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(
        notes[0]
            .detail
            .as_deref()
            .unwrap()
            .contains("1024-byte limit")
    );
    p_task.abort();
    c_task.abort();
}

/// A server answering `{"nonce": <differs between servers and requests>, "v": <version>}`.
async fn versioned(version: u64, seed: u64) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let counter = Arc::new(AtomicU64::new(seed * 1_000_000));
    serve(move |_r| {
        let n = counter.fetch_add(1, Ordering::Relaxed);
        async move {
            let mut resp = http::Response::new(TestBody::text(
                json!({"nonce": n, "v": version}).to_string(),
            ));
            resp.headers_mut()
                .insert("content-type", HeaderValue::from_static("application/json"));
            resp
        }
    })
    .await
}

#[tokio::test]
async fn secondary_turns_nondeterminism_into_noise_at_the_end() {
    let (p, pt) = versioned(1, 1).await;
    let (s, st) = versioned(1, 2).await;
    let (c, ct) = versioned(2, 3).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mirror = util::mirror(&url(p), &url(c), &out, default_rules(), |cfg| {
        cfg.secondary = Some(url(s));
    })
    .await;
    let http = client();
    let via = url(mirror.local_addr());
    let n = 50;
    for _ in 0..n {
        get(&http, &format!("{via}/thing")).await;
    }
    util::eventually("compared", || mirror.summary().shadow.compared == n).await;
    let live = mirror.summary();
    assert_eq!(live.lines.held_back, 2 * n);
    let learned = live.learned_noise.unwrap();
    assert_eq!(learned.len(), 2, "{learned:?}");
    let summary = mirror.shutdown().await.unwrap();
    assert_eq!(summary.secondary.unwrap().status_2xx, n);
    let run = Run::open(&out).unwrap();
    let class_at = |path: &str| -> Vec<Class> {
        run.discrepancies
            .iter()
            .filter(|d| d.path == path)
            .map(|d| d.class)
            .collect()
    };
    assert_eq!(class_at("/nonce"), vec![Class::Noise; n as usize]);
    assert_eq!(class_at("/v"), vec![Class::Regression; n as usize]);
    let table = run.manifest.extra["mirror"]["learned_noise"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(table.len(), 2);
    for t in [pt, st, ct] {
        t.abort();
    }
}

#[tokio::test]
async fn injected_divergence_is_reported_exactly() {
    let primary = sim(PYTHON_SEEDED).await;
    let candidate = sim(
        "profile = \"python\"\nseed = 11\n\
         [[divergence.changed_field]]\nroute = \"GET /api/market\"\npointer = \"/symbol\"\nfraction = 0.05\n",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mirror = util::mirror(
        &url(primary.local_addr()),
        &url(candidate.local_addr()),
        &out,
        test_rules(),
        |_| {},
    )
    .await;
    let http = client();
    let via = url(mirror.local_addr());
    let n = 400;
    for _ in 0..n {
        get(&http, &format!("{via}/api/market")).await;
    }
    util::eventually("all compared", || mirror.summary().shadow.compared == n).await;
    mirror.shutdown().await.unwrap();
    let injected = candidate.stats().divergence.changed_field;
    assert!(injected > 5, "{injected} changes injected in {n}");
    let run = Run::open(&out).unwrap();
    let reported = run
        .discrepancies
        .iter()
        .filter(|d| d.path == "/symbol" && d.class == Class::Regression)
        .count() as u64;
    assert_eq!(reported, injected);
    let regressions = run
        .discrepancies
        .iter()
        .filter(|d| d.class == Class::Regression)
        .count() as u64;
    assert_eq!(
        regressions, injected,
        "only the injected changes are regressions"
    );
    primary.shutdown().await;
    candidate.shutdown().await;
}
