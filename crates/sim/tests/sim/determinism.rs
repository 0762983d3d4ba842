//! Two seeded python simulators given the same script answer the same, modulo the noise
//! fields of veloz-api.md §8.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;

use crate::util::*;

/// §8 noise: engine timestamps, `_id`, market-dependent prices.
const NOISE: [&str; 5] = ["ts_ns", "last_ts_ns", "_id", "price", "avg_price"];

/// USDT balances depend on fill prices (§8); other assets do not.
fn strip_noise(v: &mut Value) {
    strip(v, &NOISE);
    if let Some(balances) = v.get_mut("balances").and_then(Value::as_array_mut) {
        for b in balances {
            if b["asset"] == "USDT"
                && let Some(obj) = b.as_object_mut()
            {
                obj.remove("free");
                obj.remove("locked");
            }
        }
    }
}

async fn run_script(a: SocketAddr) -> Vec<(u16, Value, String)> {
    let steps: [(&str, &str, &str); 12] = [
        ("GET", "/health", ""),
        ("GET", "/api/config", ""),
        ("GET", "/api/market", ""),
        (
            "POST",
            "/api/order",
            r#"{"side":"buy","qty":0.01,"price":42000,"client_order_id":"o1"}"#,
        ),
        (
            "POST",
            "/api/order",
            r#"{"side":"sell","qty":0.5,"price":43000,"client_order_id":"o2"}"#,
        ),
        ("POST", "/api/cancel", r#"{"client_order_id":"o2"}"#),
        (
            "POST",
            "/api/order",
            r#"{"side":"sell","qty":50,"price":43000,"client_order_id":"o3"}"#,
        ),
        ("POST", "/api/order", r#"{"side":"buy","qty":-1,"price":1}"#),
        (
            "POST",
            "/api/cancel",
            r#"{"client_order_id":"never-placed"}"#,
        ),
        ("WAIT", "", ""),
        ("GET", "/api/orders_state", ""),
        ("GET", "/api/order_state?client_order_id=o1", ""),
    ];
    let mut out = Vec::new();
    for (method, path, body) in steps {
        if method == "WAIT" {
            // o1 fills 300 ms after it is accepted.
            tokio::time::sleep(Duration::from_millis(700)).await;
            continue;
        }
        let r = req(
            a,
            method,
            path,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
        .await;
        out.push((r.status, r.json(), r.text()));
    }
    for path in ["/api/orders", "/api/account"] {
        let r = get(a, path).await;
        out.push((r.status, r.json(), r.text()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_seeded_python_sims_agree_modulo_noise() {
    let config = "profile = \"python\"\nseed = 42\ndeterministic = true\n";
    let one = start(cfg(config)).await;
    // Started later on purpose: event counts (and so `_id`s) differ, answers must not.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let two = start(cfg(config)).await;
    let (a, b) = tokio::join!(run_script(one.local_addr()), run_script(two.local_addr()));
    assert_eq!(a.len(), b.len());
    for (i, ((sa, mut va, ta), (sb, mut vb, tb))) in a.into_iter().zip(b).enumerate() {
        assert_eq!(sa, sb, "step {i}");
        if i < 2 {
            assert_eq!(ta, tb, "step {i}: byte-identical without noise fields");
        }
        strip_noise(&mut va);
        strip_noise(&mut vb);
        if let Some(items) = va.get_mut("items").and_then(Value::as_array_mut) {
            items.iter_mut().for_each(strip_noise);
        }
        if let Some(items) = vb.get_mut("items").and_then(Value::as_array_mut) {
            items.iter_mut().for_each(strip_noise);
        }
        assert_eq!(va, vb, "step {i}");
    }
    // The script exercised the flows it meant to.
    let states = get(one.local_addr(), "/api/orders_state").await.json();
    let status = |id: &str| {
        states["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["client_order_id"] == id)
            .map(|o| o["status"].clone())
    };
    assert_eq!(status("o1").unwrap(), "FILLED");
    assert_eq!(status("o2").unwrap(), "CANCELLED");
    assert_eq!(status("o3").unwrap(), "REJECTED");
    one.shutdown().await;
    two.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_sims_quote_the_same_prices_at_the_same_time() {
    let config = "profile = \"python\"\nseed = 3\n[engine]\ntick = \"1s\"\n";
    let one = start(cfg(config)).await;
    let two = start(cfg(config)).await;
    // Both engines tick on the same epoch-aligned 1 s grid; ask mid-interval.
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_millis() as u64;
    tokio::time::sleep(Duration::from_millis((1500 - ms) % 1000)).await;
    let (pa, pb) = tokio::join!(
        get(one.local_addr(), "/api/market"),
        get(two.local_addr(), "/api/market")
    );
    assert_eq!(pa.json()["price"], pb.json()["price"]);
    assert_eq!(pa.json()["ts_ns"].is_u64(), pb.json()["ts_ns"].is_u64());
    one.shutdown().await;
    two.shutdown().await;
}
