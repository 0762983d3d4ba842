//! Acceptance of the shipped VeloZ rules (`scenarios/veloz*.toml`) end to end: simulated
//! gateways on 127.0.0.1:0, the mirror started in process with a shipped rules file, the run
//! directory read back with `Run::open` after a clean shutdown (which flushes every line).
//!
//! - `python_to_cpp_*`: every real difference of veloz-api.md §9 that reaches a mirrored
//!   route is reported at its route and path, and no §8 noise field is a regression.
//! - `control_run_*`: two seeded Python simulators, ≥ 1,000 mixed requests, no regression.
//! - `injected_price_divergence_*`: the regressions found equal what the candidate injected.
//!
//! Requests are sent one at a time and each waits until its shadow copy has been compared:
//! a write's copy reaches the candidate only after the primary answered, so without the
//! wait the next read could overtake it on the candidate (ordering noise that is not what
//! these tests are about).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use shadowgate_diff::{RuleSet, WritePolicy};
use shadowgate_mirror::{Mirror, RawMirrorConfig, Summary, load_rules};
use shadowgate_record::{Class, Discrepancy, DiscrepancyKind as K, Run};
use shadowgate_sim::{SimConfig, SimServer, StatsSnapshot};
use tokio::net::TcpListener;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

const JSON: (&str, &str) = ("content-type", "application/json");

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../scenarios")
        .join(name)
}

fn rules(name: &str) -> RuleSet {
    load_rules(scenario(name)).unwrap_or_else(|e| panic!("{e}"))
}

async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

async fn sim(toml: &str) -> SimServer {
    let cfg = SimConfig::from_toml_str(toml, "test.toml").unwrap_or_else(|e| panic!("{e}"));
    shadowgate_sim::start(cfg, bind().await).await.unwrap()
}

/// A whole answer as the client got it.
#[derive(Debug)]
struct Resp {
    status: u16,
    body: Bytes,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// Two simulators behind the mirror, and what came out of it.
struct Pair {
    primary: SimServer,
    candidate: SimServer,
    mirror: Mirror,
    http: HttpClient,
    via: String,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

/// What a finished run left behind.
struct Finished {
    summary: Summary,
    run: Run,
    candidate: StatsSnapshot,
}

impl Pair {
    async fn start(primary: &str, candidate: &str, rules_file: &str) -> Pair {
        let primary = sim(primary).await;
        let candidate = sim(candidate).await;
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("run");
        let raw = RawMirrorConfig {
            primary: format!("http://{}", primary.local_addr()),
            candidate: format!("http://{}", candidate.local_addr()),
            out: out.clone(),
            rules: Arc::new(rules(rules_file)),
            rules_source: Some(rules_file.to_owned()),
            interval: Duration::from_millis(100),
            ..RawMirrorConfig::default()
        };
        let mirror = shadowgate_mirror::start(raw.validate().unwrap(), bind().await, None)
            .await
            .unwrap();
        let via = format!("http://{}", mirror.local_addr());
        Pair {
            primary,
            candidate,
            mirror,
            http: Client::builder(TokioExecutor::new()).build_http(),
            via,
            out,
            _dir: dir,
        }
    }

    /// Sends one request through the mirror and waits until its shadow copy (if any) has
    /// ended: compared, or counted as not compared.
    async fn send(&self, method: Method, path: &str, headers: &[(&str, &str)], body: &str) -> Resp {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.via));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::from(body.to_owned()))).unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(10), self.http.request(req))
            .await
            .expect("an answer within 10 s")
            .unwrap();
        let status = resp.status().as_u16();
        let body = tokio::time::timeout(Duration::from_secs(10), resp.into_body().collect())
            .await
            .expect("a body within 10 s")
            .unwrap()
            .to_bytes();
        self.settle().await;
        Resp { status, body }
    }

    async fn get(&self, path: &str) -> Resp {
        self.send(Method::GET, path, &[], "").await
    }

    async fn post(&self, path: &str, body: &str) -> Resp {
        self.send(Method::POST, path, &[JSON], body).await
    }

    /// Waits (bounded) until every shadow copy selected so far has ended.
    async fn settle(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.mirror.summary().shadow;
            let ended = s.compared
                + s.dropped_budget
                + s.breaker_open
                + s.timeout
                + s.connect_error
                + s.error
                + s.body_over_limit
                + s.sse
                + s.primary_failed
                + s.queue_full;
            if ended >= s.eligible {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "shadow copies did not end: {s:?}"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Stops the mirror (which writes every line), reads the run directory back.
    async fn finish(self) -> Finished {
        // After the mirror: its shutdown finishes the order flows (their state polls).
        let summary = self.mirror.shutdown().await.unwrap();
        let candidate = self.candidate.stats();
        let run = Run::open(&self.out).unwrap();
        assert!(run.warnings.is_empty(), "{:?}", run.warnings);
        self.primary.shutdown().await;
        self.candidate.shutdown().await;
        Finished {
            summary,
            run,
            candidate,
        }
    }
}

fn regressions(run: &Run) -> Vec<&Discrepancy> {
    run.discrepancies
        .iter()
        .filter(|d| d.class == Class::Regression)
        .collect()
}

/// Whether `path` matches `pattern`, where a `*` segment stands for any one segment.
fn path_matches(pattern: &str, path: &str) -> bool {
    let (a, b): (Vec<&str>, Vec<&str>) = (pattern.split('/').collect(), path.split('/').collect());
    a.len() == b.len() && a.iter().zip(&b).all(|(p, s)| *p == "*" || p == s)
}

fn find<'r>(
    run: &'r Run,
    class: Class,
    method: &str,
    route: &str,
    pattern: &str,
    kind: K,
) -> Vec<&'r Discrepancy> {
    run.discrepancies
        .iter()
        .filter(|d| {
            d.class == class
                && d.method == method
                && d.route == route
                && d.kind == kind
                && path_matches(pattern, &d.path)
        })
        .collect()
}

/// The regression `(method, route, path pattern, kind)` is in the run; returns its rows.
#[track_caller]
fn reported<'r>(
    run: &'r Run,
    method: &str,
    route: &str,
    pattern: &str,
    kind: K,
) -> Vec<&'r Discrepancy> {
    let rows = find(run, Class::Regression, method, route, pattern, kind);
    assert!(
        !rows.is_empty(),
        "no {kind:?} regression at {method} {route} {pattern:?}; regressions: {:#?}",
        regressions(run)
            .iter()
            .map(|d| (&d.method, &d.route, &d.path, d.kind))
            .collect::<Vec<_>>()
    );
    rows
}

/// The distinct regression paths of one route.
fn regression_paths(run: &Run, method: &str, route: &str) -> BTreeSet<String> {
    regressions(run)
        .into_iter()
        .filter(|d| d.method == method && d.route == route)
        .map(|d| d.path.clone())
        .collect()
}

/// veloz-api.md §8: fields that differ between two identical runs. None may be a regression.
const NOISE_FIELDS: &[&str] = &[
    "ts_ns",
    "last_ts_ns",
    "_id",
    "timestamp",
    "created_at",
    "cancelled_at",
    "last_update_ns",
    "created_ns",
    "exchange_ts_ns",
    "uptime_seconds",
    "memory_mb",
    "venue_order_id",
    "key_id",
    "api_key",
    "raw_key",
    "last_used_at",
    "last_used",
    "token",
    "access_token",
    "refresh_token",
    "jti",
    "iat",
    "exp",
];

/// §8 noise headers (`Date` is never compared at all).
const NOISE_HEADERS: &[&str] = &["date", "x-ratelimit-remaining", "x-ratelimit-reset"];

/// §8 market-dependent numbers: a regression there must be a real one — another type, or a
/// value outside the 1 % the rules allow for phase-shifted engines.
const MARKET_FIELDS: &[&str] = &["price", "last_price", "avg_price", "balances"];

fn rel_diff(a: &Value, b: &Value) -> Option<f64> {
    let (a, b) = (a.as_f64()?, b.as_f64()?);
    Some((a - b).abs() / a.abs().max(b.abs()).max(f64::MIN_POSITIVE))
}

/// No regression row is §8 noise.
#[track_caller]
fn assert_no_noise_regressions(run: &Run) {
    for d in regressions(run) {
        let segs: Vec<&str> = d.path.split('/').skip(1).collect();
        if d.kind == K::Header {
            let name = segs.last().copied().unwrap_or("");
            assert!(
                !NOISE_HEADERS.contains(&name),
                "noise header as a regression: {d:#?}"
            );
            continue;
        }
        assert!(
            !segs.iter().any(|s| NOISE_FIELDS.contains(s)),
            "§8 noise field reported as a regression: {d:#?}"
        );
        if segs.iter().any(|s| MARKET_FIELDS.contains(s)) && d.kind == K::Value {
            let diff = rel_diff(&d.primary, &d.candidate);
            assert!(
                diff.is_none_or(|x| x > 0.01),
                "market drift within tolerance reported as a regression: {d:#?}"
            );
        }
    }
}

// ------------------------------------------------------------------------------------------
// The shipped files
// ------------------------------------------------------------------------------------------

#[test]
fn shipped_rules_load_with_their_write_policies_and_translations() {
    let py_cpp = rules("veloz.toml");
    let policy = |r: &RuleSet, m: &str, p: &str| {
        r.find_route(m, p)
            .map_or(WritePolicy::Skip, |x| x.write_policy())
    };
    for (m, p) in [
        ("POST", "/api/order"),
        ("POST", "/api/cancel"),
        ("POST", "/api/auth/login"),
    ] {
        assert_eq!(policy(&py_cpp, m, p), WritePolicy::MirrorMarked, "{m} {p}");
    }
    for (m, p) in [
        ("POST", "/api/auth/keys"),
        ("DELETE", "/api/auth/keys?key_id=vk_1"),
        ("POST", "/api/auth/refresh"),
        ("DELETE", "/api/orders/web-1"),
    ] {
        assert_eq!(policy(&py_cpp, m, p), WritePolicy::Skip, "{m} {p}");
    }
    let order = py_cpp.find_route("POST", "/api/order").unwrap();
    assert_eq!(
        order.candidate_request("POST", "/api/order").unwrap(),
        ("POST".to_owned(), "/api/orders".to_owned())
    );
    let cancel = py_cpp.find_route("POST", "/api/cancel").unwrap();
    let mut body = serde_json::json!({"client_order_id": "web-1", "symbol": "BTCUSDT"});
    cancel.translation().body.apply(&mut body);
    assert_eq!(body, serde_json::json!({"order_ids": ["web-1"]}));
    let login = py_cpp.find_route("POST", "/api/auth/login").unwrap();
    let mut body = serde_json::json!({"user_id": "admin", "password": "x"});
    login.translation().body.apply(&mut body);
    assert_eq!(
        body,
        serde_json::json!({"username": "admin", "password": "x"})
    );
    let revoke = py_cpp
        .find_route("DELETE", "/api/auth/keys?key_id=vk_1")
        .unwrap();
    assert_eq!(
        revoke
            .candidate_request("DELETE", "/api/auth/keys?key_id=vk_1")
            .unwrap()
            .1,
        "/api/auth/keys/vk_1"
    );
    let state = py_cpp
        .find_route("GET", "/api/order_state?client_order_id=a")
        .unwrap();
    assert_eq!(
        state
            .candidate_request("GET", "/api/order_state?client_order_id=a")
            .unwrap()
            .1,
        "/api/orders/a"
    );

    let control = rules("veloz-control.toml");
    for (m, p, want) in [
        ("POST", "/api/order", WritePolicy::MirrorMarked),
        ("POST", "/api/cancel", WritePolicy::MirrorMarked),
        ("POST", "/api/auth/keys", WritePolicy::Skip),
        ("DELETE", "/api/auth/keys?key_id=x", WritePolicy::Skip),
    ] {
        assert_eq!(policy(&control, m, p), want, "control {m} {p}");
    }
    // No translation in the control run.
    assert!(control.routes().iter().all(|r| {
        let t = r.translation();
        t.method.is_none() && t.path.is_none() && t.body.is_empty()
    }));

    let cpp = rules("veloz-cpp.toml");
    for (m, p, want) in [
        ("POST", "/api/orders", WritePolicy::MirrorMarked),
        ("DELETE", "/api/orders/veloz_1_2", WritePolicy::MirrorMarked),
        ("POST", "/api/cancel", WritePolicy::MirrorMarked),
        ("POST", "/api/auth/keys", WritePolicy::Skip),
        ("DELETE", "/api/auth/keys/vk_1", WritePolicy::Skip),
    ] {
        assert_eq!(policy(&cpp, m, p), want, "cpp {m} {p}");
    }
    assert!(cpp.routes().iter().all(|r| r.translation().path.is_none()));
}

// ------------------------------------------------------------------------------------------
// Python → C++ (veloz.toml)
// ------------------------------------------------------------------------------------------

/// Seeded (deterministic prices on both), fast fills so the reads below see settled orders.
const PY: &str = "profile = \"python\"\nseed = 11\n[engine]\nfill_delay = \"200ms\"\n";
/// Auth consistent with the Python default (off); every other §9 difference on.
const CPP: &str =
    "profile = \"cpp\"\nseed = 11\n[auth]\nenabled = false\n[engine]\nfill_delay = \"200ms\"\n";

fn order(side: &str, id: &str) -> String {
    format!(
        r#"{{"side":"{side}","symbol":"BTCUSDT","qty":0.01,"price":42000,"client_order_id":"{id}"}}"#
    )
}

#[tokio::test]
async fn python_to_cpp_reports_each_real_difference_and_no_noise() {
    let pair = Pair::start(PY, CPP, "veloz.toml").await;

    // Reads before any order.
    pair.get("/health").await;
    pair.get("/api/config").await;
    for _ in 0..5 {
        assert_eq!(pair.get("/api/market").await.status, 200);
    }
    pair.get("/api/market?symbol=ETHUSDT").await;
    pair.send(Method::OPTIONS, "/api/market", &[], "").await;

    // Orders, translated to POST /api/orders.
    let mut placed = 0;
    for (side, id) in [("BUY", "t1-buy"), ("SELL", "t1-sell"), ("buy", "t1-lower")] {
        let r = pair.post("/api/order", &order(side, id)).await;
        assert_eq!(
            (r.status, r.json()["client_order_id"].as_str()),
            (200, Some(id))
        );
        placed += 1;
    }
    // Placed and cancelled at once (before its fill): cancel translated to {"order_ids":[…]}.
    pair.post("/api/order", &order("BUY", "t1-cxl")).await;
    placed += 1;
    let r = pair
        .post(
            "/api/cancel",
            r#"{"client_order_id":"t1-cxl","symbol":"BTCUSDT"}"#,
        )
        .await;
    assert_eq!(r.status, 200);
    // A generated id: `web-<ms>` vs `veloz_<ns>_<n>` (§8).
    pair.post(
        "/api/order",
        r#"{"side":"BUY","symbol":"BTCUSDT","qty":0.01,"price":41000}"#,
    )
    .await;
    placed += 1;
    // Validation: machine code vs sentence (§9.6); defaults and form input Python-only (§1.2).
    assert_eq!(
        pair.post("/api/order", &order("BUY", "t1-zero").replace("0.01", "0"))
            .await
            .status,
        400
    );
    placed += 1;
    pair.post(
        "/api/order",
        r#"{"side":"BUY","qty":0.01,"price":42000,"client_order_id":"t1-nosym"}"#,
    )
    .await;
    placed += 1;
    let form = "side=BUY&symbol=BTCUSDT&qty=0.01&price=42000&client_order_id=t1-form";
    let r = pair
        .send(
            Method::POST,
            "/api/order",
            &[("content-type", "application/x-www-form-urlencoded")],
            form,
        )
        .await;
    assert_eq!(r.status, 200, "python takes form-encoded orders");
    placed += 1;
    // Let every fill land on both engines before reading order state.
    tokio::time::sleep(Duration::from_millis(600)).await;

    pair.get("/api/orders").await;
    pair.get("/api/orders_state").await;
    pair.get("/api/order_state?client_order_id=t1-buy").await;
    pair.get("/api/order_state?client_order_id=no-such-order")
        .await;
    pair.get("/api/account").await;
    pair.get("/api/execution/ping").await;
    pair.get("/api/auth/keys").await;

    // Login: translated; admin only in Python; bad bodies.
    let r = pair
        .post(
            "/api/auth/login",
            r#"{"user_id":"admin","password":"admin"}"#,
        )
        .await;
    assert_eq!(r.status, 200);
    pair.post(
        "/api/auth/login",
        r#"{"user_id":"alice","password":"admin"}"#,
    )
    .await;
    pair.post("/api/auth/login", r#"{"password":"admin"}"#)
        .await;

    // Unknown and C++-only paths.
    pair.get("/nope.js").await;
    for p in ["/api/health", "/metrics", "/api/account/positions"] {
        pair.get(p).await;
    }

    // Writes with `skip`: answered by the primary, never sent to the candidate.
    let r = pair
        .post("/api/auth/keys", r#"{"name":"ci","permissions":["read"]}"#)
        .await;
    assert_eq!(r.status, 201);
    pair.send(
        Method::DELETE,
        "/api/auth/keys?key_id=vk_0000000000000000",
        &[],
        "",
    )
    .await;

    let done = pair.finish().await;
    let run = &done.run;

    // Translation reached the C++ routes; skipped writes never did.
    let c = &done.candidate;
    assert_eq!(c.requests_on("POST /api/orders"), placed);
    assert_eq!(c.requests_on("POST /api/cancel"), 1);
    assert_eq!(c.requests_on("POST /api/auth/login"), 3);
    // Two order_state lookups, plus the flow comparison's own order-state polls.
    let polls = done.summary.flows.as_ref().map_or(0, |f| f.candidate_polls);
    assert_eq!(
        c.requests_on("GET /api/orders/{id}"),
        2 + polls,
        "order_state → /api/orders/{{id}}"
    );
    assert_eq!(c.requests_on("POST /api/auth/keys"), 0);
    assert_eq!(c.requests_on("DELETE /api/auth/keys/{id}"), 0);
    assert_eq!(c.requests_on("POST (unmatched)"), 0);
    assert_eq!(done.summary.shadow.write_skipped, 2);
    assert_eq!(done.summary.shadow.error, 0, "{:?}", done.summary.shadow);

    // §9.3 /health body.
    reported(run, "GET", "/health", "/ok", K::Missing);
    reported(run, "GET", "/health", "/status", K::Extra);
    assert!(!find(run, Class::Noise, "GET", "/health", "/timestamp", K::Extra).is_empty());
    // §1.1 config shape.
    reported(
        run,
        "GET",
        "/api/config",
        "/binance_trade_enabled",
        K::Missing,
    );
    // §9.3 /api/market: normalized; only the ?symbol= request differs (C++ quotes the
    // unknown symbol at 0, Python ignores the parameter).
    assert_eq!(
        regression_paths(run, "GET", "/api/market"),
        ["/price", "/symbol"].map(String::from).into()
    );
    let zero = reported(run, "GET", "/api/market", "/price", K::Value);
    assert_eq!((zero.len(), zero[0].candidate.as_f64()), (1, Some(0.0)));
    assert!(regression_paths(run, "OPTIONS", "/api/market").is_empty());
    // §9.1 orders: translated; what remains is §9.6 and §1.2.
    assert_eq!(
        regression_paths(run, "POST", "/api/order"),
        ["/client_order_id", "/error", "/status"]
            .map(String::from)
            .into()
    );
    let msg = reported(run, "POST", "/api/order", "/error", K::Value);
    assert_eq!(msg[0].primary, "bad_params");
    assert_eq!(msg[0].candidate, "Order quantity must be positive");
    // Python places the order without a symbol and the form-encoded one, C++ rejects both:
    // the status, and the answer's missing id / extra error that go with it.
    assert_eq!(
        reported(run, "POST", "/api/order", "/status", K::Status).len(),
        2
    );
    assert_eq!(
        reported(run, "POST", "/api/order", "/client_order_id", K::Missing).len(),
        2
    );
    assert_eq!(
        reported(run, "POST", "/api/order", "/error", K::Extra).len(),
        2
    );
    let generated = find(
        run,
        Class::Noise,
        "POST",
        "/api/order",
        "/client_order_id",
        K::Value,
    );
    assert_eq!(generated.len(), 1);
    assert_eq!(generated[0].label.as_deref(), Some("generated-id"));
    // §9.1 cancel: the translated body was understood (no status difference); C++ does not
    // say which order it cancelled.
    assert_eq!(
        regression_paths(run, "POST", "/api/cancel"),
        ["/client_order_id"].map(String::from).into()
    );
    reported(run, "POST", "/api/cancel", "/client_order_id", K::Missing);
    // §9.2/§9.3 order list: raw events vs order objects.
    reported(run, "GET", "/api/orders", "/*/type", K::Missing);
    // §9.1 orders_state → the C++ order cache: qty/price reset to null, "" for null (§1.2).
    reported(run, "GET", "/api/orders_state", "/*/qty", K::Type);
    reported(run, "GET", "/api/orders_state", "/*/price", K::Type);
    reported(run, "GET", "/api/orders_state", "/*/reason", K::Type);
    reported(run, "GET", "/api/order_state", "/qty", K::Type);
    let nf = reported(run, "GET", "/api/order_state", "/error", K::Value);
    assert_eq!(
        (&nf[0].primary, &nf[0].candidate),
        (&Value::from("not_found"), &Value::from("Order not found"))
    );
    // §9.3 zeroed balances: a map of asset names to 0 where Python lists amounts.
    assert_eq!(
        regression_paths(run, "GET", "/api/account"),
        ["/balances"].map(String::from).into()
    );
    let bal = reported(run, "GET", "/api/account", "/balances", K::Type);
    let zeros = bal[0]
        .candidate
        .as_object()
        .expect("C++ balances are a map");
    assert!(
        !zeros.is_empty() && zeros.values().all(|v| v.as_f64() == Some(0.0)),
        "{zeros:?}"
    );
    assert!(
        bal[0]
            .primary
            .as_array()
            .is_some_and(|a| a.iter().any(|b| b["free"].as_f64() > Some(0.0)))
    );
    // §9.1 not routed in C++, and C++-only routes: the status alone.
    for (route, p, c) in [
        ("/api/execution/ping", 200, 404),
        ("/api/health", 404, 200),
        ("/metrics", 404, 200),
        ("/api/account/positions", 404, 200),
    ] {
        assert_eq!(
            regression_paths(run, "GET", route),
            ["/status"].map(String::from).into(),
            "{route}"
        );
        let s = reported(run, "GET", route, "/status", K::Status);
        assert_eq!(
            (s[0].primary.as_u64(), s[0].candidate.as_u64()),
            (Some(p), Some(c)),
            "{route}"
        );
    }
    // §9.5: the C++ key handlers demand a Bearer token even with auth off.
    let keys = reported(run, "GET", "/api/auth/keys", "/status", K::Status);
    assert_eq!(
        (keys[0].primary.as_u64(), keys[0].candidate.as_u64()),
        (Some(200), Some(401))
    );
    // §9.4 login: only admin in Python, any user in C++; error codes (§9.6).
    let alice = reported(run, "POST", "/api/auth/login", "/status", K::Status);
    assert_eq!(
        (alice[0].primary.as_u64(), alice[0].candidate.as_u64()),
        (Some(401), Some(200))
    );
    let bad = reported(run, "POST", "/api/auth/login", "/error", K::Value);
    assert_eq!(bad[0].candidate, "invalid_credentials_format");
    // The admin login itself: token renamed and noise, nothing else.
    assert!(
        !find(
            run,
            Class::Noise,
            "POST",
            "/api/auth/login",
            "/token",
            K::Value
        )
        .is_empty()
    );
    // §9.6 unknown paths: Python's HTML 404 page vs a JSON error.
    reported(run, "GET", "/nope.js", "", K::Type);

    // §8: no noise field is a regression anywhere.
    assert_no_noise_regressions(run);
    // And the noise was seen (classed, not dropped).
    for field in ["ts_ns", "created_at", "last_update_ns"] {
        assert!(
            run.discrepancies
                .iter()
                .any(|d| d.class == Class::Noise && d.path.ends_with(&format!("/{field}"))),
            "no noise row for {field}"
        );
    }
}

/// §9.5 auth defaults: Python off, C++ on. Every protected C++ route answers 401 with
/// `WWW-Authenticate`; the public /health does not.
#[tokio::test]
async fn python_to_cpp_default_auth_difference_is_a_status_regression() {
    let pair = Pair::start(
        "profile = \"python\"\nseed = 3\n",
        "profile = \"cpp\"\nseed = 3\n",
        "veloz.toml",
    )
    .await;
    for p in ["/api/account", "/api/orders", "/health"] {
        pair.get(p).await;
    }
    let done = pair.finish().await;
    let run = &done.run;
    for route in ["/api/account", "/api/orders"] {
        let s = reported(run, "GET", route, "/status", K::Status);
        assert_eq!(
            (s[0].primary.as_u64(), s[0].candidate.as_u64()),
            (Some(200), Some(401))
        );
        let h = reported(run, "GET", route, "/headers/www-authenticate", K::Header);
        assert_eq!(
            (&h[0].primary, &h[0].candidate),
            (&Value::Null, &Value::from("Bearer"))
        );
    }
    assert!(
        find(
            run,
            Class::Regression,
            "GET",
            "/health",
            "/status",
            K::Status
        )
        .is_empty()
    );
    assert_no_noise_regressions(run);
}

/// §9.5 and §9.8 with auth on both sides (same secret, same password): 401 bodies, X-API-Key
/// before Bearer in C++, no scoped permissions for JWT users in C++, and the 429 headers.
#[tokio::test]
async fn python_to_cpp_auth_and_rate_limit_differences() {
    const AUTH: &str = "[auth]\nenabled = true\njwt_secret = \"shadowgate-test-secret-0123456789abcdef\"\n\
                        admin_password = \"pw\"\n[rate_limit]\ncapacity = 6\nrefill_per_s = 0.01\n";
    let pair = Pair::start(
        &format!("profile = \"python\"\nseed = 5\n{AUTH}"),
        &format!("profile = \"cpp\"\nseed = 5\n{AUTH}"),
        "veloz.toml",
    )
    .await;
    // No credentials: 401 on both, with different bodies and headers.
    assert_eq!(pair.get("/api/account").await.status, 401);
    let login = pair
        .post("/api/auth/login", r#"{"user_id":"admin","password":"pw"}"#)
        .await;
    assert_eq!(login.status, 200);
    let token = login.json()["token"].as_str().unwrap().to_owned();
    let bearer = format!("Bearer {token}");
    // Both credentials: Python takes the Bearer token, C++ the (unknown) key and stops there.
    let r = pair
        .send(
            Method::GET,
            "/api/account",
            &[("authorization", &bearer), ("x-api-key", "veloz_not_a_key")],
            "",
        )
        .await;
    assert_eq!(r.status, 200);
    // The Python JWT verifies in C++ (same secret) but carries no scoped permission there;
    // the buckets run dry on both sides.
    for _ in 0..8 {
        pair.send(
            Method::GET,
            "/api/account",
            &[("authorization", &bearer)],
            "",
        )
        .await;
    }
    let done = pair.finish().await;
    let run = &done.run;
    let route = "/api/account";
    // 401 bodies: machine code vs the middleware's pretty object (§9.5).
    let e = reported(run, "GET", route, "/error", K::Value);
    assert_eq!(
        (&e[0].primary, &e[0].candidate),
        (
            &Value::from("authentication_required"),
            &Value::from("unauthorized")
        )
    );
    reported(run, "GET", route, "/message", K::Extra);
    reported(run, "GET", route, "/headers/www-authenticate", K::Header);
    let statuses: BTreeSet<(u64, u64)> =
        find(run, Class::Regression, "GET", route, "/status", K::Status)
            .iter()
            .filter_map(|d| Some((d.primary.as_u64()?, d.candidate.as_u64()?)))
            .collect();
    assert!(
        statuses.contains(&(200, 401)),
        "X-API-Key first in C++: {statuses:?}"
    );
    assert!(
        statuses.contains(&(200, 403)),
        "no scoped permission for JWT users: {statuses:?}"
    );
    // §9.8 on the 429s: integer seconds vs ISO 8601; Python repeats the headers.
    let retry = reported(run, "GET", route, "/headers/retry-after", K::Header);
    assert!(
        retry
            .iter()
            .any(|d| d.candidate.as_str().is_some_and(|c| c.starts_with("PT"))),
        "{retry:#?}"
    );
    let limit = reported(run, "GET", route, "/headers/x-ratelimit-limit", K::Header);
    assert!(
        limit
            .iter()
            .any(|d| d.primary == "6, 6" && d.candidate == "6"),
        "{limit:#?}"
    );
    // Remaining/reset: kept, classed ignored (§8), never regressions.
    assert!(
        !find(
            run,
            Class::Ignored,
            "GET",
            route,
            "/headers/x-ratelimit-remaining",
            K::Header
        )
        .is_empty()
    );
    // The login answer itself: renamed token, noise; nothing else.
    assert!(
        regression_paths(run, "POST", "/api/auth/login").is_empty(),
        "{:?}",
        regression_paths(run, "POST", "/api/auth/login")
    );
    assert_no_noise_regressions(run);
}

// ------------------------------------------------------------------------------------------
// Python → Python control run (veloz-control.toml)
// ------------------------------------------------------------------------------------------

/// Two identical seeded Python simulators. Fills come 1 s after accept: reads either land
/// right after the writes (long before any fill) or after the fills have all landed, so no
/// read races a fill (that timing noise is §8, and what a real control run would show).
const PY_CONTROL: &str = "profile = \"python\"\nseed = 7\n[engine]\nfill_delay = \"1s\"\n";

#[tokio::test]
async fn control_run_has_no_regression_over_a_thousand_mixed_requests() {
    let pair = Pair::start(PY_CONTROL, PY_CONTROL, "veloz-control.toml").await;
    let reads = [
        "/health",
        "/api/config",
        "/api/market",
        "/api/orders",
        "/api/orders_state",
        "/api/account",
        "/api/execution/ping",
        "/api/auth/keys",
        "/api/order_state",
        "/static/missing.js",
    ];
    let mut sent = 0u64;
    for round in 0..9 {
        // Writes: two buys, a sell, a cancel of an open order, a cancel of an unknown one, an
        // invalid order, a login.
        for (side, n) in [("BUY", 0), ("SELL", 1), ("BUY", 2)] {
            let r = pair
                .post("/api/order", &order(side, &format!("c{round}-{n}")))
                .await;
            assert_eq!(r.status, 200);
        }
        pair.post(
            "/api/cancel",
            &format!(r#"{{"client_order_id":"c{round}-2"}}"#),
        )
        .await;
        pair.post(
            "/api/cancel",
            &format!(r#"{{"client_order_id":"gone-{round}"}}"#),
        )
        .await;
        pair.post("/api/order", r#"{"side":"HOLD","qty":1,"price":1}"#)
            .await;
        pair.post(
            "/api/auth/login",
            r#"{"user_id":"admin","password":"admin"}"#,
        )
        .await;
        // Reads right after the writes, long before the fills.
        for p in reads {
            pair.get(p).await;
        }
        pair.get(&format!("/api/order_state?client_order_id=c{round}-0"))
            .await;
        sent += 7 + reads.len() as u64 + 1;
        // Let both engines fill, then read the settled state many times.
        tokio::time::sleep(Duration::from_millis(1300)).await;
        for i in 0..10 {
            for p in reads {
                pair.get(p).await;
            }
            pair.get(&format!(
                "/api/order_state?client_order_id=c{round}-{}",
                i % 3
            ))
            .await;
            sent += reads.len() as u64 + 1;
        }
    }
    // Skipped writes: not mirrored, not compared.
    pair.post("/api/auth/keys", r#"{"name":"ci"}"#).await;
    let done = pair.finish().await;
    assert!(sent >= 1000, "{sent}");
    let s = &done.summary;
    assert_eq!(s.shadow.compared, sent, "{:?}", s.shadow);
    assert_eq!(s.shadow.write_skipped, 1);
    assert_eq!(done.candidate.requests_on("POST /api/order"), 4 * 9);
    let regs: Vec<_> = regressions(&done.run)
        .iter()
        .map(|d| {
            (
                &d.method,
                &d.route,
                &d.path,
                d.kind,
                &d.primary,
                &d.candidate,
            )
        })
        .collect();
    assert!(regs.is_empty(), "{regs:#?}");
    assert_eq!(s.comparisons.regression, 0);
    // The control run did see noise, and kept it as noise. (Event `_id`s may or may not
    // differ: the seeded engines tick on the same epoch grid, so both count the same ticks
    // unless a tick falls between their starts.)
    assert!(s.comparisons.noise > 0, "{:?}", s.comparisons);
    for field in ["ts_ns", "token"] {
        assert!(
            done.run
                .discrepancies
                .iter()
                .any(|d| d.class == Class::Noise && d.path.ends_with(&format!("/{field}"))),
            "no noise row for {field}"
        );
    }
}

// ------------------------------------------------------------------------------------------
// Injected divergence: what is found equals what was injected
// ------------------------------------------------------------------------------------------

/// Sends `n` market reads through a pair whose candidate changes the price field `pointer`
/// in 5 % of its `/api/market` answers (by +1.0), and checks that the regressions found are
/// exactly the injected changes. Both engines start at a price of 20, so +1.0 is a 5 % move,
/// beyond the 1 % the rules allow for market drift (at 42,000 a +1.0 change is drift).
async fn injected_price_divergence(
    primary: &str,
    candidate: &str,
    rules_file: &str,
    pointer: &str,
    n: u64,
) {
    let engine = "[engine]\nstart_price = 20.0\n";
    let divergence = format!(
        "[[divergence.changed_field]]\nroute = \"GET /api/market\"\npointer = \"{pointer}\"\nfraction = 0.05\n"
    );
    let pair = Pair::start(
        &format!("{primary}{engine}"),
        &format!("{candidate}{engine}{divergence}"),
        rules_file,
    )
    .await;
    for _ in 0..n {
        assert_eq!(pair.get("/api/market").await.status, 200);
    }
    let done = pair.finish().await;
    let injected = done.candidate.divergence.changed_field;
    assert!(injected > 0, "nothing injected in {n} requests");
    let s = &done.summary;
    assert_eq!(s.shadow.compared, n, "{:?}", s.shadow);
    let regs = regressions(&done.run);
    assert_eq!(
        regs.len() as u64,
        injected,
        "{rules_file}: {:#?}",
        regs.iter()
            .map(|d| (&d.path, &d.primary, &d.candidate))
            .collect::<Vec<_>>()
    );
    assert_eq!(s.comparisons.regression, injected);
    for d in regs {
        assert_eq!(
            (d.method.as_str(), d.route.as_str(), d.kind),
            ("GET", "/api/market", K::Value)
        );
        assert!(d.path.ends_with("price"), "{d:#?}");
        let moved = d.candidate.as_f64().unwrap() - d.primary.as_f64().unwrap();
        assert!((moved - 1.0).abs() < 0.1, "{d:#?}");
    }
    assert_no_noise_regressions(&done.run);
}

#[tokio::test]
async fn injected_price_divergence_python_to_cpp() {
    injected_price_divergence(
        "profile = \"python\"\nseed = 21\n",
        "profile = \"cpp\"\nseed = 21\n[auth]\nenabled = false\n",
        "veloz.toml",
        "/last_price",
        400,
    )
    .await;
}

#[tokio::test]
async fn injected_price_divergence_control() {
    injected_price_divergence(
        "profile = \"python\"\nseed = 22\n",
        "profile = \"python\"\nseed = 22\n",
        "veloz-control.toml",
        "/price",
        400,
    )
    .await;
}

#[tokio::test]
async fn injected_price_divergence_cpp_to_cpp() {
    let cpp = "profile = \"cpp\"\nseed = 23\n[auth]\nenabled = false\n";
    injected_price_divergence(cpp, cpp, "veloz-cpp.toml", "/last_price", 400).await;
}
