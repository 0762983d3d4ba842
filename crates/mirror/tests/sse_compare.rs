//! Event-stream comparison through the mirror: one shared candidate subscription, client
//! streams equal to a direct subscription, zero differences between identical gateways, the
//! candidate's dropped events found exactly, gaps reported, Python → C++ names mapped.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::HeaderValue;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use shadowgate_mirror::{Mirror, StreamSummary};
use shadowgate_record::{DiscrepancyKind, Run};
use shadowgate_sim::SimServer;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::util::{self, HttpClient, TestBody, client, serve, url};

/// Stream rules for two Python-profile simulators: same names on both sides, prices and
/// balances within the market tolerance (fills land on one tick or the next, §8).
const RULES: &str = r##"
[[routes]]
template = "/api/order"
methods = ["POST"]
write_policy = "mirror"

[[streams]]
route = "/api/stream"
window_ms = 500
late_ms = 1000
settle_ms = 300
stall_ms = 600
linger_ms = 300
reconnect_min_ms = 50
reconnect_max_ms = 200
[streams.compare]
tolerance = { rel = 0.01 }
[streams.compare.normalize]
drop = ["ts_ns", "last_ts_ns"]

[[streams.events]]
type = "market"
key = ["/symbol"]

[[streams.events]]
type = "order"
primary = ["order_update", "order_state", "fill"]
candidate = ["order_update", "order_state", "fill"]
key = ["/type", "/client_order_id", "/status"]

# A balance snapshot depends on how the accepts and fills of concurrent orders interleave on
# each engine (§8): noise when orders overlap.
[[streams.events]]
type = "account"
compare = { noise = ["/balances"] }
"##;

/// The rules with another stall time (a busy test machine can hold a stream back a while).
fn rules(stall_ms: u64) -> shadowgate_diff::RuleSet {
    let text = RULES.replace("stall_ms = 600", &format!("stall_ms = {stall_ms}"));
    shadowgate_mirror::parse_rules(&text, "sse.toml").unwrap()
}

fn python(extra: &str) -> String {
    format!(
        "profile = \"python\"\nseed = 11\n[engine]\ntick = \"100ms\"\nfill_delay = \"50ms\"\n{extra}"
    )
}

/// Reads a stream until `stop` fires (or 30 s), returning every byte.
async fn read_stream(
    http: HttpClient,
    base: String,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<u8> {
    let req = http::Request::get(format!("{base}/api/stream"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), http.request(req))
        .await
        .expect("stream answered within 10 s")
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return out,
            _ = tokio::time::sleep_until(deadline) => return out,
            f = body.frame() => match f {
                Some(Ok(f)) => {
                    if let Ok(d) = f.into_data() {
                        out.extend_from_slice(&d);
                    }
                }
                _ => return out,
            },
        }
    }
}

/// The frames of a stream as raw bytes keyed by id (comments and frames without id left out).
fn frames_by_id(bytes: &[u8]) -> Vec<(u64, Vec<u8>)> {
    let text = String::from_utf8_lossy(bytes);
    let mut out = Vec::new();
    for frame in text.split("\n\n") {
        let id = frame
            .lines()
            .find_map(|l| l.strip_prefix("id: "))
            .and_then(|i| i.parse::<u64>().ok());
        if let Some(id) = id {
            out.push((id, frame.as_bytes().to_vec()));
        }
    }
    out
}

async fn place_orders(http: &HttpClient, base: &str, prefix: &str, n: usize, every: Duration) {
    for i in 0..n {
        let body = format!(
            r#"{{"side":"BUY","symbol":"BTCUSDT","qty":0.001,"price":42000,"client_order_id":"{prefix}-{i}"}}"#
        );
        let r = util::request(
            http,
            Method::POST,
            &format!("{base}/api/order"),
            &[("content-type", "application/json")],
            &body,
        )
        .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        tokio::time::sleep(every).await;
    }
}

/// The one stream route's summary (empty until the first client is seen).
fn stream_summary(m: &Mirror) -> StreamSummary {
    let s = m.summary();
    assert!(s.streams.len() <= 1, "{:?}", s.streams);
    s.streams.first().cloned().unwrap_or_default()
}

fn sse_lines(dir: &std::path::Path) -> Vec<shadowgate_record::Discrepancy> {
    let run = Run::open(dir).unwrap();
    run.discrepancies
        .into_iter()
        .filter(|d| d.route == "/api/stream")
        .collect()
}

async fn start_pair(p: &str, c: &str) -> (SimServer, SimServer) {
    (util::sim(p).await, util::sim(c).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_clients_share_one_candidate_subscription_and_get_the_primarys_bytes() {
    let (p, c) = start_pair(&python(""), &python("")).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mirror = util::mirror(
        &url(p.local_addr()),
        &url(c.local_addr()),
        &out,
        rules(3000),
        |_| {},
    )
    .await;
    let base = url(mirror.local_addr());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);

    // The direct subscription starts first, so every event a client sees is in its window.
    let direct = tokio::spawn(read_stream(client(), url(p.local_addr()), stop_rx.clone()));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let clients: Vec<JoinHandle<Vec<u8>>> = (0..100)
        .map(|_| tokio::spawn(read_stream(client(), base.clone(), stop_rx.clone())))
        .collect();
    util::eventually("100 clients subscribed", || {
        stream_summary(&mirror).clients == 100
    })
    .await;
    // Past the settling time, orders make order, fill and account events on both sides.
    tokio::time::sleep(Duration::from_millis(400)).await;
    // One at a time (each filled before the next), so both engines see the same sequence.
    place_orders(&client(), &base, "s", 20, Duration::from_millis(100)).await;
    // Every event is paired or judged within the late horizon.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _ = stop_tx.send(true);
    let direct = direct.await.unwrap();
    let mut streams = Vec::new();
    for c in clients {
        streams.push(c.await.unwrap());
    }

    // One candidate subscription for 100 clients.
    let s = stream_summary(&mirror);
    assert_eq!(
        c.stats().sse.opened,
        1,
        "the candidate saw one stream: {s:?}"
    );
    assert_eq!((s.clients_total, s.candidate_subscriptions), (100, 1));

    // What is compared: every frame with an id, byte for byte (`id:`, `event:`, `data:` lines),
    // over the ids both the client and the direct subscription received; keep-alive comments
    // are left out (they depend on each connection's idle time).
    let direct = frames_by_id(&direct);
    let (lo, hi) = (direct[0].0, direct[direct.len() - 1].0);
    for (i, bytes) in streams.iter().enumerate() {
        let mine: Vec<(u64, Vec<u8>)> = frames_by_id(bytes)
            .into_iter()
            .filter(|(id, _)| (lo..=hi).contains(id))
            .collect();
        let first = mine.first().map_or(hi, |f| f.0);
        let last = mine.last().map_or(lo, |f| f.0);
        let same: Vec<&(u64, Vec<u8>)> = direct
            .iter()
            .filter(|(id, _)| (first..=last).contains(id))
            .collect();
        assert!(mine.len() >= 50, "client {i} got {} frames", mine.len());
        assert_eq!(mine.len(), same.len(), "client {i}: same ids");
        for (a, b) in mine.iter().zip(same) {
            assert_eq!(a, b, "client {i}: frame {} differs", a.0);
        }
    }

    // Identical gateways: nothing missing, extra, different or late.
    let summary = mirror.shutdown().await.unwrap();
    let s = &summary.streams[0];
    let n = s.counts;
    assert!(n.matched >= 50, "{n:?}");
    assert_eq!(
        (n.missing, n.extra, n.different, n.different_noise, n.late),
        (0, 0, 0, 0, 0),
        "{n:?} {:?}",
        sse_lines(&out)
    );
    assert_eq!(s.gaps, 0);
    assert_eq!((s.regression_lines, summary.lines.regression), (0, 0));
    assert!(s.lag_p50_us.is_some());
    eprintln!(
        "identical: matched {} absorbed {} unreported {} lag p50 {:?} us p99 {:?} us",
        n.matched, n.absorbed, n.unreported, s.lag_p50_us, s.lag_p99_us
    );
    assert!(sse_lines(&out).is_empty(), "{:?}", sse_lines(&out));
    let run = Run::open(&out).unwrap();
    assert!(
        run.latency
            .keys()
            .any(|k| k.tag() == "candidate:GET:/api/stream;lag"),
        "lag series recorded: {:?}",
        run.latency.keys().map(|k| k.tag()).collect::<Vec<_>>()
    );
    p.shutdown().await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_fill_events_are_reported_missing_exactly() {
    let candidate =
        python("[divergence]\ndropped_sse_fraction = 0.01\ndropped_sse_kinds = [\"fill\"]\n");
    let (p, c) = start_pair(&python(""), &candidate).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mirror = util::mirror(
        &url(p.local_addr()),
        &url(c.local_addr()),
        &out,
        rules(3000),
        |_| {},
    )
    .await;
    let base = url(mirror.local_addr());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let reader = tokio::spawn(read_stream(client(), base.clone(), stop_rx));
    util::eventually("subscribed", || {
        let s = mirror.summary();
        s.streams.first().is_some_and(|s| s.candidate_connected)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    place_orders(&client(), &base, "d", 400, Duration::from_millis(2)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _ = stop_tx.send(true);
    let _ = reader.await.unwrap();
    // `/metrics` counts the stream lines like any other discrepancy line.
    let injected = c.stats().divergence.dropped_sse_events;
    let admin = url(mirror.admin_addr().unwrap());
    let want = format!(" {injected}");
    let mut text = String::new();
    for _ in 0..50 {
        text =
            String::from_utf8_lossy(&util::get(&client(), &format!("{admin}/metrics")).await.body)
                .into_owned();
        if text
            .lines()
            .any(|l| l.contains("kind=\"sse-missing\"") && l.ends_with(&want))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        text.lines()
            .any(|l| l.contains("kind=\"sse-missing\"") && l.ends_with(&want)),
        "{text}"
    );
    let summary = mirror.shutdown().await.unwrap();
    let s = &summary.streams[0];
    eprintln!(
        "dropped fills: injected {injected}, counts {:?}, lag p50 {:?} us p99 {:?} us",
        s.counts, s.lag_p50_us, s.lag_p99_us
    );
    assert!(injected >= 1, "400 fills at 1 % drop at least one");
    assert_eq!(s.counts.missing, injected);
    let lines = sse_lines(&out);
    let other: Vec<_> = lines
        .iter()
        .filter(|d| d.kind != DiscrepancyKind::SseMissing)
        .take(5)
        .collect();
    assert_eq!((s.counts.extra, s.counts.different), (0, 0), "{other:?}");
    let missing: Vec<_> = sse_lines(&out)
        .into_iter()
        .filter(|d| d.kind == DiscrepancyKind::SseMissing)
        .collect();
    assert_eq!(missing.len() as u64, injected);
    assert!(
        missing.iter().all(|d| d.primary["type"] == "fill"),
        "{missing:?}"
    );
    assert!(summary.lines.regression >= injected, "{:?}", summary.lines);

    // The counts are in the manifest too.
    let run = Run::open(&out).unwrap();
    let streams = &run.manifest.extra["mirror"]["streams"][0];
    assert_eq!(streams["counts"]["missing"], injected);
    assert_eq!(streams["candidate_subscriptions"], 1);
    p.shutdown().await;
    c.shutdown().await;
}

/// A candidate that stalls its first stream, refuses the next attempt, ends the third after a
/// moment and keeps the fourth open with keep-alives.
async fn scripted_candidate() -> (std::net::SocketAddr, JoinHandle<()>, Arc<AtomicUsize>) {
    let n = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&n);
    let (addr, task) = serve(move |_req| {
        let i = count.fetch_add(1, Ordering::SeqCst);
        async move {
            if i == 1 {
                let mut r = http::Response::new(TestBody::text("busy"));
                *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                return r;
            }
            let (tx, rx) = mpsc::channel::<Bytes>(8);
            tokio::spawn(async move {
                let _ = tx.send(Bytes::from_static(b": hello\n\n")).await;
                match i {
                    // Silent while holding the stream open (bounded).
                    0 => tokio::time::sleep(Duration::from_secs(20)).await,
                    2 => tokio::time::sleep(Duration::from_millis(200)).await,
                    _ => {
                        for _ in 0..200 {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            if tx.send(Bytes::from_static(b": ka\n\n")).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
            let mut r = http::Response::new(TestBody::Chan(rx));
            r.headers_mut().insert(
                "content-type",
                HeaderValue::from_static("text/event-stream"),
            );
            r
        }
    })
    .await;
    (addr, task, n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_and_dropped_candidate_streams_are_reconnected_and_reported_as_gaps() {
    let p = util::sim(&python("")).await;
    let (c_addr, c_task, attempts) = scripted_candidate().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mirror = util::mirror(&url(p.local_addr()), &url(c_addr), &out, rules(600), |_| {}).await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let reader = tokio::spawn(read_stream(client(), url(mirror.local_addr()), stop_rx));
    // stall (600 ms) → 503 → up, ends after 200 ms → up for good.
    for _ in 0..100 {
        let s = stream_summary(&mirror);
        if s.candidate_subscriptions >= 3 && s.candidate_connected && s.gaps >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop_tx.send(true);
    let primary_bytes = reader.await.unwrap();
    assert!(!primary_bytes.is_empty(), "the client's stream was served");
    let summary = mirror.shutdown().await.unwrap();
    let s = &summary.streams[0];
    eprintln!("gaps: {s:?}");
    assert!(attempts.load(Ordering::SeqCst) >= 4);
    assert_eq!(s.candidate_subscriptions, 3);
    assert_eq!(s.gaps, 2, "stall+refusal, then the ended stream");
    assert_eq!(s.reconnects, 3, "after the stall, the 503 and the end");
    assert!(s.gap_ms >= 100);
    let gaps: Vec<String> = sse_lines(&out)
        .into_iter()
        .filter(|d| d.kind == DiscrepancyKind::NotCompared)
        .map(|d| d.detail.unwrap_or_default())
        .collect();
    assert_eq!(gaps.len(), 2, "{gaps:?}");
    assert!(gaps.iter().any(|g| g.contains("answered 503")), "{gaps:?}");
    assert!(
        gaps.iter().any(|g| g.contains("ended by the candidate")),
        "{gaps:?}"
    );
    p.shutdown().await;
    c_task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_to_cpp_with_the_shipped_rules_maps_names_and_reports_no_noise() {
    let p = util::sim(&python("")).await;
    let c = util::sim(
        "profile = \"cpp\"\nseed = 11\n[engine]\ntick = \"100ms\"\nfill_delay = \"50ms\"\n[auth]\nenabled = false\n",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let rules = shadowgate_mirror::load_rules(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/veloz.toml"),
    )
    .unwrap();
    let mirror = util::mirror(
        &url(p.local_addr()),
        &url(c.local_addr()),
        &out,
        rules,
        |_| {},
    )
    .await;
    let base = url(mirror.local_addr());
    // Python replays its ring on connect (C++ does not): let it hold some history first.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let reader = tokio::spawn(read_stream(client(), base.clone(), stop_rx));
    util::eventually("subscribed", || {
        mirror
            .summary()
            .streams
            .first()
            .is_some_and(|s| s.candidate_connected)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    // Python POST /api/order, translated by the rules into C++ POST /api/orders.
    place_orders(&client(), &base, "x", 3, Duration::from_millis(300)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _ = stop_tx.send(true);
    let _ = reader.await.unwrap();
    let summary = mirror.shutdown().await.unwrap();
    let s = &summary.streams[0];
    eprintln!("python -> cpp: {:?}", s.counts);
    assert!(
        s.counts.matched >= 15,
        "names mapped, events paired: {:?}",
        s.counts
    );
    let lines = sse_lines(&out);
    // Names mapped: every event found its counterpart.
    assert_eq!((s.counts.missing, s.counts.extra), (0, 0), "{lines:?}");
    let regressions: Vec<_> = lines
        .iter()
        .filter(|d| d.class == shadowgate_record::Class::Regression)
        .collect();
    // §8 noise never comes out as a regression ...
    let noise = [
        "/ts_ns",
        "/last_ts_ns",
        "/last_update_ns",
        "/created_ns",
        "/venue_order_id",
    ];
    assert!(
        !regressions.iter().any(|d| noise.contains(&d.path.as_str())),
        "{regressions:?}"
    );
    // Market prices follow each engine's ticks (within the 1 % tolerance): no market line.
    assert!(
        !lines.iter().any(|d| d
            .flow_id
            .as_deref()
            .is_some_and(|f| f.starts_with("sse:market"))),
        "{lines:?}"
    );
    // ... while the real differences of the C++ bridge are reported (veloz.toml lists them):
    // its order updates carry executed_qty, its order_state updates reset qty and price to
    // null (§1.2), its account balances are a map.
    let paths: std::collections::BTreeSet<&str> =
        regressions.iter().map(|d| d.path.as_str()).collect();
    eprintln!("python -> cpp regressions at {paths:?}");
    for p in ["/executed_qty", "/qty", "/balances"] {
        assert!(paths.contains(p), "{p} not in {paths:?}");
    }
    assert!(
        regressions
            .iter()
            .all(|d| d.kind == DiscrepancyKind::SseDifferent)
    );
    p.shutdown().await;
    c.shutdown().await;
}
