//! `/api/stream`: event names, replay, resume and keep-alives per profile.

use std::time::Duration;

use crate::util::*;

const QUIET_PY: &str = r#"
profile = "python"
[engine]
tick = "1h"
[sse]
keepalive = "150ms"
"#;

const QUIET_CPP: &str = r#"
profile = "cpp"
[auth]
enabled = false
[engine]
tick = "1h"
[sse]
keepalive = "150ms"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_replays_the_ring_uses_engine_names_and_resumes_by_query() {
    let sim = start(cfg("profile = \"python\"\n[engine]\ntick = \"20ms\"\n")).await;
    let a = sim.local_addr();
    tokio::time::sleep(Duration::from_millis(150)).await;

    let (head, frames) = read_sse(a, "/api/stream", &[], IO_TIMEOUT, |f| f.len() >= 5).await;
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-type"),
        Some("text/event-stream; charset=utf-8")
    );
    assert_eq!(head.header("cache-control"), Some("no-cache"));
    assert!(head.header("x-ratelimit-limit").is_none());
    // The whole ring from id 1: the start-up account event, then market ticks.
    assert_eq!(frames[0].id, Some(1));
    assert_eq!(frames[0].event.as_deref(), Some("account"));
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(f.id, Some(i as u64 + 1), "consecutive ids");
        assert!(f.retry.is_none(), "python sends no retry:");
        let data = f.json();
        assert_eq!(
            data["type"].as_str(),
            f.event.as_deref(),
            "event name = engine type"
        );
        assert!(data.get("_id").is_none());
        assert!(
            f.data.as_deref().unwrap().contains("\": "),
            "python spacing"
        );
    }
    assert!(
        frames[1..]
            .iter()
            .all(|f| f.event.as_deref() == Some("market"))
    );

    // ?last_id resumes after N; Last-Event-ID is ignored (full replay again).
    let (_, frames) = read_sse(a, "/api/stream?last_id=3", &[], IO_TIMEOUT, |f| {
        !f.is_empty()
    })
    .await;
    assert_eq!(frames[0].id, Some(4));
    let (_, frames) = read_sse(
        a,
        "/api/stream",
        &[("Last-Event-ID", "3")],
        IO_TIMEOUT,
        |f| !f.is_empty(),
    )
    .await;
    assert_eq!(frames[0].id, Some(1));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_streams_order_events_and_keepalive_comments() {
    let sim = start(cfg(QUIET_PY)).await;
    let a = sim.local_addr();
    let reader = tokio::spawn(async move {
        read_sse(a, "/api/stream?last_id=2", &[], IO_TIMEOUT, |f| {
            f.iter().any(|x| x.event.as_deref() == Some("fill"))
                && f.last().is_some_and(|x| x.comment.is_some())
        })
        .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = post_json(
        a,
        "/api/order",
        r#"{"side":"BUY","qty":0.01,"price":42000,"client_order_id":"s1"}"#,
    )
    .await;
    assert_eq!(r.status, 200);
    let (_, frames) = reader.await.unwrap();
    let names: Vec<&str> = frames.iter().filter_map(|f| f.event.as_deref()).collect();
    for want in ["order_update", "order_state", "account", "fill"] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    let comments: Vec<_> = frames.iter().filter_map(|f| f.comment.as_deref()).collect();
    assert!(comments.contains(&"keep-alive"), "{frames:?}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpp_names_retry_live_only_and_last_event_id() {
    let sim = start(cfg(QUIET_CPP)).await;
    let a = sim.local_addr();

    // No last id: no history (the ring holds the start-up account and market events), only
    // the keep-alive event.
    let (head, frames) = read_sse(a, "/api/stream", &[], IO_TIMEOUT, |f| !f.is_empty()).await;
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    assert_eq!(frames[0].event.as_deref(), Some("keepalive"));
    assert_eq!(frames[0].data.as_deref(), Some("{}"));
    assert_eq!(frames[0].retry.as_deref(), Some("3000"));

    // Last-Event-ID (or ?last_id) replays after it.
    let (_, frames) = read_sse(
        a,
        "/api/stream",
        &[("Last-Event-ID", "0")],
        IO_TIMEOUT,
        |f| f.len() >= 2,
    )
    .await;
    assert_eq!(frames[0].id, Some(1));
    assert_eq!(frames[0].event.as_deref(), Some("account"));
    assert_eq!(frames[1].event.as_deref(), Some("market-data"));
    assert_shape(
        &frames[1].json(),
        &serde_json::json!({"symbol":"str","last_price":"num","last_update_ns":"int"}),
    );
    let (_, frames) = read_sse(a, "/api/stream?last_id=1", &[], IO_TIMEOUT, |f| {
        !f.is_empty()
    })
    .await;
    assert_eq!(frames[0].id, Some(2));

    // Live order events are all `order-update` (order_update, order_state and fill).
    let reader = tokio::spawn(async move {
        read_sse(a, "/api/stream", &[], IO_TIMEOUT, |f| {
            f.iter().any(|x| {
                x.data
                    .as_deref()
                    .is_some_and(|d| d.contains("\"type\":\"fill\""))
            })
        })
        .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = post_json(
        a,
        "/api/orders",
        r#"{"side":"buy","symbol":"BTCUSDT","qty":0.01,"price":42000,"client_order_id":"s2"}"#,
    )
    .await;
    assert_eq!(r.status, 200);
    let (_, frames) = reader.await.unwrap();
    let events: Vec<&str> = frames.iter().filter_map(|f| f.event.as_deref()).collect();
    assert!(events.contains(&"order-update"), "{events:?}");
    assert!(events.contains(&"account"), "{events:?}");
    for f in &frames {
        assert_eq!(f.retry.as_deref(), Some("3000"));
        let name = f.event.as_deref().unwrap();
        assert!(
            ["order-update", "account", "keepalive", "market-data"].contains(&name),
            "{name}"
        );
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_over_the_limit_are_refused() {
    let sim = start(cfg(&format!("{QUIET_CPP}max_streams = 1\n"))).await;
    let a = sim.local_addr();
    let first = tokio::spawn(async move {
        read_sse(a, "/api/stream", &[], Duration::from_millis(600), |_| false).await
    });
    let ok = eventually(40, || async { (sim.stats().sse.active == 1).then_some(()) }).await;
    assert!(ok.is_some(), "first stream open");
    let r = get(a, "/api/stream").await;
    assert_eq!(r.status, 503);
    assert_eq!(sim.stats().sse.refused, 1);
    let _ = first.await;
    sim.shutdown().await;
}
