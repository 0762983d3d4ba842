//! Injected faults and divergence: each mode does what it says, and `/__sim/stats` counts
//! exactly what was injected.

use std::io::ErrorKind;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::util::*;

fn faults(profile: &str, extra: &str) -> shadowgate_sim::SimConfig {
    cfg(&format!(
        "profile = \"{profile}\"\nseed = 5\n[auth]\nenabled = false\n{extra}"
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_closes_with_rst_and_never_reaches_the_engine() {
    let sim = start(faults(
        "python",
        "[[faults]]\nkind = \"reset\"\nroute = \"POST /api/order\"\n",
    ))
    .await;
    let a = sim.local_addr();
    let raw = raw_request(
        "POST",
        "/api/order",
        &[("Content-Type", "application/json")],
        br#"{"qty":1,"price":1,"client_order_id":"r1"}"#,
    );
    let err = exchange(a, &raw)
        .await
        .expect_err("the connection is reset");
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
    // Other routes are untouched.
    assert_eq!(get(a, "/health").await.status, 200);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let state = get(a, "/api/order_state?client_order_id=r1").await;
    assert_eq!(state.status, 404, "a reset request places no order");
    let stats = sim.stats();
    assert_eq!(stats.fault("reset"), 1);
    assert_eq!(
        stats.requests_on("POST /api/order"),
        1,
        "counted as received"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hang_never_answers_until_shutdown() {
    let sim = start(faults(
        "cpp",
        "[[faults]]\nkind = \"hang\"\nroute = \"GET /api/market\"\n",
    ))
    .await;
    let a = sim.local_addr();
    let mut s = TcpStream::connect(a).await.unwrap();
    s.write_all(&raw_request("GET", "/api/market", &[], b""))
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let waited = tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf)).await;
    assert!(
        waited.is_err(),
        "no byte within the client timeout: {waited:?}"
    );
    assert_eq!(get(a, "/health").await.status, 200, "other routes answer");
    assert_eq!(sim.stats().fault("hang"), 1);
    // Shutdown releases the hung request, and the connection closes without an answer.
    let stopping = tokio::spawn(sim.shutdown());
    let n = tokio::time::timeout(IO_TIMEOUT, s.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without an answer");
    tokio::time::timeout(IO_TIMEOUT, stopping)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_body_sends_the_whole_body_in_delayed_chunks() {
    let sim = start(faults(
        "python",
        "[[faults]]\nkind = \"slow_body\"\nroute = \"GET /api/config\"\ndelay = \"30ms\"\nchunk_bytes = 64\n",
    ))
    .await;
    let a = sim.local_addr();
    let started = Instant::now();
    let r = get(a, "/api/config").await;
    let elapsed = started.elapsed();
    assert_eq!(r.status, 200);
    let len = r.body.len();
    assert_eq!(r.header("content-length"), Some(len.to_string().as_str()));
    assert_eq!(r.json()["market_source"], "sim", "the body arrives intact");
    let pauses = (len.div_ceil(64) - 1) as u32;
    assert!(pauses >= 2, "{len} bytes");
    assert!(
        elapsed >= Duration::from_millis(30) * pauses,
        "{elapsed:?} for {pauses} pauses"
    );
    assert_eq!(sim.stats().fault("slow_body"), 1);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_replaces_the_answer_with_random_bytes() {
    let sim = start(faults(
        "cpp",
        "[[faults]]\nkind = \"garbage\"\nroute = \"GET /health\"\nbytes = 48\n",
    ))
    .await;
    let a = sim.local_addr();
    let raw = exchange(a, &raw_request("GET", "/health", &[], b""))
        .await
        .unwrap();
    assert_eq!(raw.len(), 48);
    assert!(!raw.starts_with(b"HTTP/"));
    assert!(parse_response(&raw).is_none());
    assert_eq!(sim.stats().fault("garbage"), 1);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stall_delays_requests_inside_the_epoch_aligned_window_only() {
    let sim = start(faults(
        "python",
        "[[faults]]\nkind = \"stall\"\nstall = \"300ms\"\nevery = \"1s\"\n",
    ))
    .await;
    let a = sim.local_addr();
    let into_second = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_millis() as u64
    };
    // Wait until 50 ms into a second (inside the window), then ask.
    let wait_until = |target: u64| async move {
        let ms = into_second();
        let wait = (target + 1000 - ms) % 1000;
        tokio::time::sleep(Duration::from_millis(wait)).await;
    };
    wait_until(50).await;
    let t = Instant::now();
    assert_eq!(get(a, "/health").await.status, 200);
    let stalled = t.elapsed();
    assert!(
        stalled >= Duration::from_millis(150),
        "stalled only {stalled:?}"
    );
    assert_eq!(sim.stats().fault("stall"), 1);
    // 600 ms into a second: outside the window, no stall recorded.
    wait_until(600).await;
    assert_eq!(get(a, "/health").await.status, 200);
    let stats = sim.stats();
    assert_eq!(stats.fault("stall"), 1);
    assert!(stats.stall_injected_ns >= 150_000_000);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_rate_answers_5xx_and_is_counted() {
    for profile in ["python", "cpp"] {
        let sim = start(faults(
            profile,
            "[[faults]]\nkind = \"error\"\nfraction = 0.3\n",
        ))
        .await;
        let a = sim.local_addr();
        let mut errors = 0;
        for _ in 0..200 {
            let r = get(a, "/health").await;
            match r.status {
                200 => {}
                500 => {
                    errors += 1;
                    match profile {
                        "python" => assert!(r.text().contains("<p>Error code: 500</p>")),
                        _ => assert_eq!(r.json(), json!({"error": "Internal Server Error"})),
                    }
                }
                other => panic!("unexpected {other}"),
            }
        }
        assert_eq!(sim.stats().fault("error_5xx"), errors, "{profile}");
        assert!(
            (30..=100).contains(&errors),
            "{profile}: {errors} of 200 at 0.3"
        );
        sim.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_is_added_per_route() {
    let sim = start(faults(
        "python",
        "[latency]\ndefault = \"fixed:40ms\"\n[[latency.routes]]\nroute = \"GET /health\"\nmodel = \"0\"\n",
    ))
    .await;
    let a = sim.local_addr();
    let t = Instant::now();
    assert_eq!(get(a, "/api/market").await.status, 200);
    assert!(t.elapsed() >= Duration::from_millis(40));
    assert_eq!(get(a, "/health").await.status, 200);
    let stats = sim.stats();
    assert_eq!(stats.fault("latency"), 1, "only /api/market was delayed");
    assert_eq!(stats.latency_injected_ns, 40_000_000);
    // The stats endpoint itself is exempt.
    let t = Instant::now();
    assert_eq!(get(a, "/__sim/stats").await.status, 200);
    assert!(t.elapsed() < Duration::from_secs(5));
    sim.shutdown().await;
}

/// The injected latency counts from the request's arrival in the kernel, not from when the
/// simulator got round to handling it: a simulator whose thread is busy for 200 ms when the
/// request arrives still answers 300 ms after it arrived, not 500 ms. Each request goes on a
/// fresh connection the simulator has not accepted yet: it is stamped because the listener
/// keeps the kernel's stamping on.
#[test]
fn latency_counts_from_the_requests_arrival() {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (block_tx, block_rx) = std::sync::mpsc::channel::<std::sync::mpsc::Sender<()>>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    // The simulator on a current-thread runtime of its own, so a task can block its only
    // thread on request.
    let server = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let sim = start(faults(
                "python",
                "[[latency.routes]]\nroute = \"GET /api/market\"\nmodel = \"fixed:300ms\"\n",
            ))
            .await;
            addr_tx.send(sim.local_addr()).unwrap();
            // Serve, and block the thread whenever asked (bounded by the test's requests).
            let mut stop_rx = stop_rx;
            loop {
                tokio::select! {
                    _ = &mut stop_rx => break,
                    _ = tokio::time::sleep(Duration::from_millis(1)) => {
                        if let Ok(blocking) = block_rx.try_recv() {
                            blocking.send(()).unwrap();
                            std::thread::sleep(Duration::from_millis(200));
                        }
                    }
                }
            }
            sim.shutdown().await;
        });
    });
    let addr = addr_rx.recv_timeout(IO_TIMEOUT).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Linux turns receive stamping on a moment after the first socket asks for it, so an
    // early request may be timed from its handling: up to three tries.
    let mut took = Vec::new();
    for _ in 0..3 {
        let (ack_tx, ack_rx) = std::sync::mpsc::channel();
        block_tx.send(ack_tx).unwrap();
        ack_rx.recv_timeout(IO_TIMEOUT).unwrap();
        // The simulator's thread is now asleep for 200 ms; the request arrives meanwhile.
        let t = Instant::now();
        let resp = rt.block_on(get(addr, "/api/market"));
        let elapsed = t.elapsed();
        assert_eq!(resp.status, 200);
        assert!(
            elapsed >= Duration::from_millis(300),
            "answered after {elapsed:?}"
        );
        took.push(elapsed);
        if elapsed < Duration::from_millis(450) {
            break;
        }
    }
    let _ = stop_tx.send(());
    server.join().unwrap();
    assert!(
        took.iter().any(|t| *t < Duration::from_millis(450)),
        "each answer took 300 ms after the simulator's thread woke (500 ms after the \
         request arrived) instead of 300 ms after the arrival: {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_fields_match_the_stats() {
    let sim = start(faults(
        "python",
        "[[divergence.changed_field]]\nroute = \"GET /health\"\npointer = \"/ok\"\nfraction = 0.4\n",
    ))
    .await;
    let a = sim.local_addr();
    let mut changed = 0;
    for _ in 0..100 {
        let v = get(a, "/health").await.json();
        if v == json!({"ok": false}) {
            changed += 1;
        } else {
            assert_eq!(v, json!({"ok": true}));
        }
    }
    let stats = sim.stats();
    assert_eq!(stats.divergence.changed_field, changed);
    assert_eq!(stats.divergence.changed_field_by_rule, vec![changed]);
    assert!((15..=70).contains(&changed), "{changed} of 100 at 0.4");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_orders_and_dropped_sse_events_match_the_stats() {
    let sim = start(faults(
        "python",
        "[engine]\ntick = \"1h\"\n[engine.divergence]\nreject_fraction = 0.5\nfill_price_fraction = 0.5\n\
         [divergence]\ndropped_sse_fraction = 0.3\n",
    ))
    .await;
    let a = sim.local_addr();
    for i in 0..30 {
        let body = format!(r#"{{"side":"BUY","qty":0.001,"price":100,"client_order_id":"d{i}"}}"#);
        assert_eq!(post_json(a, "/api/order", &body).await.status, 200);
    }
    let states = eventually(60, || async {
        let v = get(a, "/api/orders_state").await.json();
        let items = v["items"].as_array()?.clone();
        let settled = items.len() == 30
            && items
                .iter()
                .all(|o| o["status"] == "FILLED" || o["status"] == "REJECTED");
        settled.then_some(items)
    })
    .await
    .expect("every order settles");
    let rejected = states
        .iter()
        .filter(|o| o["status"] == "REJECTED" && o["reason"] == "risk_max_notional")
        .count() as u64;
    let stats = sim.stats();
    assert_eq!(stats.divergence.rejected_orders, rejected);
    assert!((5..=25).contains(&rejected), "{rejected} of 30 at 0.5");
    // No ticks: every fill should be at the one market price, unless moved on purpose.
    let market = get(a, "/api/market").await.json()["price"].clone();
    let fills = get(a, "/api/orders").await.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "fill")
        .map(|i| i["price"].clone())
        .collect::<Vec<_>>();
    assert_eq!(fills.len() as u64, 30 - rejected);
    let moved = fills.iter().filter(|p| **p != market).count() as u64;
    assert_eq!(stats.divergence.fill_price_changed, moved);
    assert!(moved > 0);

    // Every event of the ring is either sent or dropped (and counted). With no ticks, the
    // ring holds the start-up account and market events plus each order's events:
    // rejected = order_update + order_state; filled = those + account + fill + order_state
    // + account.
    let total = 2 + 2 * rejected + 6 * (30 - rejected);
    let (_, frames) = read_sse(a, "/api/stream", &[], Duration::from_millis(700), |_| false).await;
    let snap = sim.stats();
    assert_eq!(snap.sse.events_sent, frames.len() as u64);
    assert_eq!(
        snap.divergence.dropped_sse_events + frames.len() as u64,
        total
    );
    assert!(snap.divergence.dropped_sse_events > 0);
    assert!(frames.iter().all(|f| f.id.is_some_and(|id| id <= total)));
    sim.shutdown().await;
}
