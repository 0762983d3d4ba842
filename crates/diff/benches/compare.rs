//! Comparison throughput on realistic VeloZ bodies (veloz-api §1.2, §8).
//!
//! Goal: ≥ 200k pairs/s per core for the ~1 KiB order list. Run with
//! `cargo bench -p shadowgate-diff`; criterion reports `thrpt` in pairs (elements) per second.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use shadowgate_diff::{Comparer, Comparison, Exchange, RawRuleSet, Response, RuleSet};

#[path = "../tests/golden/bodies.rs"]
mod bodies;
use bodies::{cpp_orders, py_orders};

const PY_HEADERS: &[(&str, &[u8])] = &[
    ("Server", b"SimpleHTTP/0.6 Python/3.11.4"),
    ("Date", b"Thu, 01 Jan 2026 00:00:00 GMT"),
    ("Content-Type", b"application/json; charset=utf-8"),
    ("Access-Control-Allow-Origin", b"*"),
    ("Content-Length", b"1024"),
];
const CPP_HEADERS: &[(&str, &[u8])] = &[
    ("Content-Type", b"application/json; charset=utf-8"),
    ("Content-Length", b"1100"),
];

fn veloz_rules() -> RuleSet {
    let raw: RawRuleSet = serde_json::from_value(json!({
        "defaults": {"ignore": ["/**/ts_ns"]},
        "routes": [
            {
                "template": "/api/orders",
                "methods": ["GET"],
                "primary": {"unwrap": "/items",
                            "rename": {"order_qty": "qty", "limit_price": "price", "last_ts_ns": "last_update_ns"}},
                "candidate": {"unwrap": "/data", "unwrap_if": {"/status": "success"},
                              "map_values": {"side": {"buy": "BUY", "sell": "SELL"}}},
                "arrays": [{"path": "", "key": "client_order_id"}],
                "ignore": ["/*/last_update_ns", "/*/created_ns"]
            },
            {
                "template": "/api/orders_state",
                "normalize": {"unwrap": "/items"},
                "arrays": [{"path": "", "key": "client_order_id"}],
                "ignore": ["/*/last_ts_ns"]
            },
            {
                "template": "/api/market",
                "candidate": {"rename": {"last_price": "price", "last_update_ns": "ts_ns"},
                              "drop": ["exchange_ts_ns", "best_bid_qty", "best_ask_qty"]}
            }
        ]
    }))
    .expect("bench rules deserialize");
    RuleSet::validate(raw).expect("bench rules validate")
}

fn exchange<'a>(path: &'a str, p: &'a [u8], c: &'a [u8]) -> Exchange<'a> {
    Exchange {
        method: "GET",
        path,
        request_body: b"",
        primary: Response {
            status: 200,
            headers: PY_HEADERS,
            body: p,
        },
        candidate: Response {
            status: 200,
            headers: CPP_HEADERS,
            body: c,
        },
    }
}

fn bench(c: &mut Criterion) {
    let rules = veloz_rules();
    let py = py_orders(4);
    let cpp = cpp_orders(4);
    // Same shape, other timestamps: parse and walk cost with ignored differences only.
    let py_later = py.replace("1234", "1235");
    let market_py = r#"{"symbol": "BTCUSDT", "price": 42012.5, "ts_ns": 1767225600123456789}"#;
    let market_cpp = r#"{"symbol":"BTCUSDT","best_bid_price":42012.4,"best_bid_qty":1.2,"best_ask_price":42012.6,"best_ask_qty":0.8,"last_price":42012.5,"volume_24h":1234.5,"last_trade_id":991,"last_update_ns":1767225600223456789,"exchange_ts_ns":1767225600223456000}"#;
    let cases: [(&str, Exchange<'_>); 4] = [
        (
            "orders_1k_py_vs_cpp",
            exchange("/api/orders", py.as_bytes(), cpp.as_bytes()),
        ),
        (
            "orders_1k_py_vs_py_ts_differ",
            exchange("/api/orders_state", py.as_bytes(), py_later.as_bytes()),
        ),
        (
            "orders_1k_identical",
            exchange("/api/orders_state", py.as_bytes(), py.as_bytes()),
        ),
        (
            "market_py_vs_cpp",
            exchange("/api/market", market_py.as_bytes(), market_cpp.as_bytes()),
        ),
    ];

    let mut group = c.benchmark_group("compare");
    group.throughput(Throughput::Elements(1));
    // Baseline on the same machine and run: parsing both bodies alone, the floor for any
    // Value-based comparison.
    group.bench_function("baseline_ignored_any_both_1k", |b| {
        b.iter(|| {
            let p: Option<serde::de::IgnoredAny> =
                serde_json::from_slice(black_box(py.as_bytes())).ok();
            let c: Option<serde::de::IgnoredAny> =
                serde_json::from_slice(black_box(cpp.as_bytes())).ok();
            black_box((p, c))
        });
    });
    group.bench_function("baseline_parse_both_1k", |b| {
        b.iter(|| {
            let p: serde_json::Value =
                serde_json::from_slice(black_box(py.as_bytes())).unwrap_or_default();
            let c: serde_json::Value =
                serde_json::from_slice(black_box(cpp.as_bytes())).unwrap_or_default();
            black_box((p, c))
        });
    });
    let mut comparer = Comparer::new();
    let mut out = Comparison::default();
    for (name, ex) in &cases {
        comparer.compare(&rules, ex, &mut out);
        eprintln!(
            "{name}: primary {} B, candidate {} B, {} differences ({} regressions)",
            ex.primary.body.len(),
            ex.candidate.body.len(),
            out.differences.len(),
            out.regressions().count()
        );
        group.bench_function(*name, |b| {
            b.iter(|| {
                comparer.compare(&rules, black_box(ex), &mut out);
                black_box(out.differences.len())
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
