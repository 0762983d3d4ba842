//! Golden comparison results: the engine's hot path has fast paths (arena parsing, in-place
//! normalization, lazily built paths and details), and every one of them must give exactly
//! the differences the straightforward code gave.
//!
//! A deterministic corpus — the benchmark's VeloZ bodies and ~1,000 mutations of them
//! (changed, retyped, removed, added, duplicated, reordered and secret fields; shuffled key
//! order; escapes; compact and pretty spacing) under several rule sets — is compared, and
//! each `Comparison`, serialized, is reduced to a SHA-256 prefix. `golden/compare.txt` holds
//! the digests the engine produced before its speed work; a changed digest names the case.
//!
//! After an intended change of behaviour, regenerate with
//! `GOLDEN_WRITE=1 cargo test -p shadowgate-diff --test golden` and review the diff.

use std::fmt::Write as _;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use shadowgate_diff::{Comparer, Comparison, Exchange, RawRuleSet, Response, RuleSet};

#[path = "golden/bodies.rs"]
mod bodies;
use bodies::{cpp_orders, py_orders};

const GOLDEN: &str = "tests/golden/compare.txt";

/// A small deterministic generator (xorshift64*), so the corpus is the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n.max(1) as u64).unwrap()
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const MARKET_PY: &str = r#"{"symbol": "BTCUSDT", "price": 42012.5, "ts_ns": 1767225600123456789}"#;
const MARKET_CPP: &str = r#"{"symbol":"BTCUSDT","best_bid_price":42012.4,"best_bid_qty":1.2,"best_ask_price":42012.6,"best_ask_qty":0.8,"last_price":42012.5,"volume_24h":1234.5,"last_trade_id":991,"last_update_ns":1767225600223456789,"exchange_ts_ns":1767225600223456000}"#;
const ACCOUNT: &str = r#"{"account_id": "acc-1", "api_key": "veloz_KEY1", "user": {"password": "hunter2", "name": "Ann\n\"Lee\""}, "balances": [{"asset": "USDT", "free": 1000.5, "locked": 0}, {"asset": "BTC", "free": 0.25, "locked": 0.01}], "tags": ["a", "b", "c"], "created_at": "2026-01-01T00:00:00Z", "id": "7c9e6679-7425-40de-944b-e07fc1f90ae7", "seq": 17, "flags": [true, false, null], "nested": {"deep": {"deeper": [1, [2, 3], {"x": -0.0}]}}}"#;

fn rules(v: Value) -> RuleSet {
    let raw: RawRuleSet = serde_json::from_value(v).unwrap();
    RuleSet::validate(raw).unwrap()
}

/// The benchmark's VeloZ routes plus routes that exercise every array mode, tolerances,
/// sorting, pointer keys, noise labels and header rules.
fn rule_sets() -> Vec<(&'static str, RuleSet)> {
    vec![
        ("default", RuleSet::default()),
        (
            "veloz",
            rules(json!({
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
                    },
                    {"template": "/api/account", "arrays": [{"path": "/balances", "key": "asset"}]}
                ]
            })),
        ),
        (
            "aggressive",
            rules(json!({
                "limits": {"max_differences": 7},
                "defaults": {
                    "headers": ["content-type", "x-request-id"],
                    "ignore_headers": ["x-request-id"],
                    "tolerance": {"rel": 0.001},
                    "tolerances": [{"path": "/**/price", "abs": 0.5}],
                    "arrays": [{"path": "/tags", "mode": "unordered"},
                               {"path": "/items", "mode": "keyed", "key": "/client_order_id"},
                               {"path": "/data", "key": "client_order_id"}],
                    "normalize": {"sort": {"/balances": "asset"}, "rename": {"qty": "order_qty"},
                                  "drop": ["/*/venue_order_id"]},
                    "candidate": {"map_values": {"status": {"ACCEPTED": "accepted"}}},
                    "ignore": ["/**/created_ns", "/nested/deep"],
                    "noise": ["/*/symbol"],
                    "noise_labels": ["timestamp", "uuid"]
                }
            })),
        ),
        (
            "positional",
            rules(
                json!({"defaults": {"labels": false, "candidate": {"unwrap": "/data"},
                                      "primary": {"unwrap": "/items"}}}),
            ),
        ),
    ]
}

/// Writes `v` as JSON with object members in a shuffled order, sometimes with a shadowed
/// duplicate key in front (the last duplicate wins), compact or spaced.
fn write_shuffled(v: &Value, rng: &mut Rng, spaced: bool, out: &mut String) {
    let (comma, colon) = if spaced { (", ", ": ") } else { (",", ":") };
    match v {
        Value::Array(items) => {
            out.push('[');
            for (n, item) in items.iter().enumerate() {
                if n > 0 {
                    out.push_str(comma);
                }
                write_shuffled(item, rng, spaced, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            if rng.chance(50) {
                for k in (1..keys.len()).rev() {
                    keys.swap(k, rng.below(k + 1));
                }
            }
            out.push('{');
            if !keys.is_empty() && rng.chance(5) {
                let k = keys[rng.below(keys.len())];
                write!(out, "{}{colon}\"shadowed\"{comma}", Value::from(k.as_str())).unwrap();
            }
            for (n, k) in keys.iter().enumerate() {
                if n > 0 {
                    out.push_str(comma);
                }
                write!(out, "{}{colon}", Value::from(k.as_str())).unwrap();
                write_shuffled(&map[k.as_str()], rng, spaced, out);
            }
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Every node of `v` by its path of keys/indices (as values to navigate with).
fn paths(v: &Value, at: &mut Vec<Value>, out: &mut Vec<Vec<Value>>) {
    out.push(at.clone());
    match v {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                at.push(json!(i));
                paths(item, at, out);
                at.pop();
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                at.push(json!(k));
                paths(item, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

fn node_mut<'v>(mut v: &'v mut Value, path: &[Value]) -> &'v mut Value {
    for seg in path {
        v = match seg {
            Value::Number(n) => &mut v[usize::try_from(n.as_u64().unwrap()).unwrap()],
            Value::String(k) => &mut v[k.as_str()],
            _ => unreachable!(),
        };
    }
    v
}

const NEW_KEYS: &[&str] = &[
    "password",
    "api_key",
    "refresh_token",
    "note",
    "client_order_id",
    "ts_ns",
    "a/b~c",
    "created_at",
];
const NEW_STRINGS: &[&str] = &[
    "",
    "BUY",
    "sell",
    "web-1767225600001",
    "2026-01-01T00:00:09Z",
    "quote\"and\\slash\u{1}",
    "é€😀",
    "42000",
    "[redacted:00000000]",
];

/// One random edit somewhere in `v`.
fn mutate(v: &mut Value, rng: &mut Rng) {
    let mut all = Vec::new();
    paths(v, &mut Vec::new(), &mut all);
    let path = all[rng.below(all.len())].clone();
    let node = node_mut(v, &path);
    match rng.below(10) {
        0 => {
            *node = match node.take() {
                Value::Number(n) if n.is_u64() => json!(n.as_u64().unwrap().wrapping_add(1)),
                Value::Number(n) => json!(n.as_f64().unwrap() * 1.0001),
                Value::String(s) if rng.chance(50) => Value::String(format!("{s}x")),
                Value::Bool(b) => json!(!b),
                _ => json!(NEW_STRINGS[rng.below(NEW_STRINGS.len())]),
            }
        }
        1 => {
            *node = match node.take() {
                Value::Number(n) => Value::String(n.to_string()),
                Value::String(s) => s.parse::<f64>().map_or(json!(null), |f| json!(f)),
                Value::Null => json!(0),
                other => json!([other]),
            }
        }
        2 => {
            if let Value::Object(map) = node {
                if let Some(k) = map.keys().nth(rng.below(map.len())).cloned() {
                    map.remove(&k);
                }
            } else if let Value::Array(items) = node
                && !items.is_empty()
            {
                items.remove(rng.below(items.len()));
            }
        }
        3 | 4 => match node {
            Value::Object(map) => {
                let k = NEW_KEYS[rng.below(NEW_KEYS.len())];
                map.insert(
                    k.to_owned(),
                    json!(NEW_STRINGS[rng.below(NEW_STRINGS.len())]),
                );
            }
            Value::Array(items) if !items.is_empty() => {
                let copy = items[rng.below(items.len())].clone();
                items.insert(rng.below(items.len() + 1), copy);
            }
            other => *other = json!({"wrapped": other.take()}),
        },
        5 => {
            if let Value::Array(items) = node
                && items.len() > 1
            {
                let a = rng.below(items.len());
                let b = rng.below(items.len());
                items.swap(a, b);
            } else {
                *node = Value::Null;
            }
        }
        6 => {
            if let Value::Array(items) = node {
                items.reverse();
            } else {
                *node = json!(-0.0);
            }
        }
        7 => *node = json!(NEW_STRINGS[rng.below(NEW_STRINGS.len())]),
        8 => *node = json!(1.5e300),
        _ => {
            if let Value::Object(map) = node {
                let inner: Map<String, Value> = map.clone();
                map.insert("nested".to_owned(), Value::Object(inner));
            } else {
                *node = json!({"token": "tok-SECRET", "v": [1, 2.5, "x"]});
            }
        }
    }
}

const JSON_CT: &[(&str, &[u8])] = &[
    ("Content-Type", b"application/json"),
    ("X-Request-Id", b"r-1"),
];
const JSON_CT2: &[(&str, &[u8])] = &[
    ("content-type", b"application/json; charset=utf-8"),
    ("x-request-id", b"r-2"),
];

/// The corpus: (route path, primary body, candidate body, candidate headers differ).
fn corpus() -> Vec<(&'static str, String, String, bool)> {
    let mut rng = Rng(0x5eed_cafe_f00d_0001);
    let bases: Vec<(&str, String, String)> = vec![
        ("/api/orders", py_orders(4), cpp_orders(4)),
        ("/api/orders", py_orders(1), cpp_orders(3)),
        ("/api/orders", py_orders(8), cpp_orders(8)),
        ("/api/orders_state", py_orders(4), py_orders(4)),
        ("/api/orders_state", py_orders(0), py_orders(2)),
        ("/api/market", MARKET_PY.to_owned(), MARKET_CPP.to_owned()),
        ("/api/account", ACCOUNT.to_owned(), ACCOUNT.to_owned()),
        ("/x/1", cpp_orders(4), cpp_orders(4)),
    ];
    let mut out = Vec::new();
    for (path, p, c) in &bases {
        out.push((*path, p.clone(), c.clone(), false));
        let pv: Value = serde_json::from_str(p).unwrap();
        let cv: Value = serde_json::from_str(c).unwrap();
        for _ in 0..120 {
            let (mut a, mut b) = (pv.clone(), cv.clone());
            for _ in 0..=rng.below(3) {
                if rng.chance(70) {
                    mutate(&mut b, &mut rng);
                } else {
                    mutate(&mut a, &mut rng);
                }
            }
            let (mut ta, mut tb) = (String::new(), String::new());
            let spaced = rng.chance(50);
            write_shuffled(&a, &mut rng, spaced, &mut ta);
            let spaced = rng.chance(50);
            write_shuffled(&b, &mut rng, spaced, &mut tb);
            if rng.chance(3) {
                tb = format!("{ta}\nnot json: password=hunter3\n");
            }
            out.push((*path, ta, tb, rng.chance(20)));
        }
    }
    out
}

fn digest(c: &Comparison) -> String {
    let text = serde_json::to_string(c).unwrap();
    hex::encode(&Sha256::digest(text.as_bytes())[..8])
}

fn results() -> Vec<String> {
    let sets = rule_sets();
    let mut comparer = Comparer::new();
    let mut out = Comparison::default();
    let mut lines = Vec::new();
    for (n, (path, p, c, other_headers)) in corpus().iter().enumerate() {
        for (name, rules) in &sets {
            let ex = Exchange {
                method: "GET",
                path,
                request_body: b"",
                primary: Response {
                    status: 200,
                    headers: JSON_CT,
                    body: p.as_bytes(),
                },
                candidate: Response {
                    status: 200,
                    headers: if *other_headers { JSON_CT2 } else { JSON_CT },
                    body: c.as_bytes(),
                },
            };
            // A reused comparer must give what a fresh one gives.
            comparer.compare(rules, &ex, &mut out);
            let fresh = shadowgate_diff::compare(rules, &ex);
            assert_eq!(out, fresh, "case {n} rules {name}: reused comparer differs");
            lines.push(format!("{n} {name} {}", digest(&out)));
        }
    }
    lines
}

#[test]
fn comparisons_match_the_golden_digests() {
    let got = results();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(GOLDEN);
    if std::env::var_os("GOLDEN_WRITE").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, got.join("\n") + "\n").unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap();
    let want: Vec<&str> = want.lines().collect();
    assert_eq!(want.len(), got.len(), "corpus size changed");
    let wrong: Vec<(&str, &String)> = want
        .iter()
        .zip(&got)
        .filter(|(w, g)| *w != *g)
        .map(|(w, g)| (*w, g))
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of {} comparisons changed, first: want {:?}, got {:?}",
        wrong.len(),
        got.len(),
        wrong[0].0,
        wrong[0].1
    );
}
