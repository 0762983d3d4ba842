//! Every route of veloz-api.md §1, per profile: status and JSON shape (key sets and types).

use serde_json::{Value, json};

use crate::util::*;

const ORDER_STATE: &str = r#"{"client_order_id":"str","symbol":"str","side":"str",
    "order_qty":"num|null","limit_price":"num|null","venue_order_id":"str|null",
    "status":"str|null","reason":"str|null","executed_qty":"num","avg_price":"num|null",
    "last_ts_ns":"int|null"}"#;

const CPP_ORDER: &str = r#"{"client_order_id":"str","symbol":"str","side":"str","qty":"num|null",
    "price":"num|null","executed_qty":"num","avg_price":"num","status":"str",
    "venue_order_id":"str","reason":"str","last_update_ns":"int","created_ns":"int"}"#;

fn shape(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_profile_serves_every_python_route() {
    let sim = start(cfg("profile = \"python\"\nseed = 1\n")).await;
    let a = sim.local_addr();

    let r = get(a, "/health").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), r#"{"ok": true}"#, "python json.dumps spacing");
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(r.header("server"), Some("SimpleHTTP/0.6 Python/3.11.7"));
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        r.header("access-control-allow-methods"),
        Some("GET,POST,DELETE,OPTIONS")
    );
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("Content-Type,Authorization,X-API-Key")
    );
    assert!(r.header("date").is_some());

    let r = get(a, "/api/config").await;
    assert_eq!(r.status, 200);
    assert_shape(
        &r.json(),
        &json!({"market_source":"str","market_symbol":"str","binance_base_url":"str|null",
                "execution_mode":"str","binance_trade_enabled":"bool",
                "binance_trade_base_url":"str|null","binance_user_stream_connected":"bool",
                "auth_enabled":"bool"}),
    );
    assert_eq!(r.json()["auth_enabled"], false);

    let r = get(a, "/api/market").await;
    assert_eq!(r.status, 200);
    assert_shape(
        &r.json(),
        &json!({"symbol":"str","price":"num|null","ts_ns":"int|null"}),
    );
    assert!(
        r.text().contains("\"symbol\": \"BTCUSDT\", \"price\": "),
        "{}",
        r.text()
    );

    // Orders: JSON and form bodies, defaults, errors.
    let r = post_json(
        a,
        "/api/order",
        r#"{"side":"buy","qty":0.01,"price":42000,"client_order_id":"o1"}"#,
    )
    .await;
    assert_eq!(
        (r.status, r.json()),
        (200, json!({"ok": true, "client_order_id": "o1"}))
    );
    let r = req(
        a,
        "POST",
        "/api/order",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"side=sell&qty=0.001&price=50000",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_shape(&r.json(), &json!({"ok":"bool","client_order_id":"str"}));
    assert!(
        r.json()["client_order_id"]
            .as_str()
            .unwrap()
            .starts_with("web-")
    );
    let r = post_json(a, "/api/order", r#"{"qty":-1,"price":1}"#).await;
    assert_eq!(
        (r.status, r.text()),
        (400, r#"{"error": "bad_params"}"#.to_owned())
    );
    let r = post_json(a, "/api/order", "{not json").await;
    assert_eq!((r.status, r.json()), (400, json!({"error": "bad_json"})));
    let r = post_json(a, "/api/order", r#"{"side":"HOLD","qty":1,"price":1}"#).await;
    assert_eq!(r.status, 400);

    // The outcome arrives as events; wait for the fill of o1.
    let orders = eventually(60, || async {
        let r = get(a, "/api/orders").await;
        let v = r.json();
        let filled = v["items"]
            .as_array()?
            .iter()
            .any(|i| i["type"] == "fill" && i["client_order_id"] == "o1");
        filled.then_some(v)
    })
    .await
    .expect("o1 fills");
    for item in orders["items"].as_array().unwrap() {
        assert!(item["type"].is_string() && item["_id"].is_u64(), "{item}");
        assert!(item["ts_ns"].is_u64(), "{item}");
    }

    let r = get(a, "/api/orders_state").await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_shape(&v, &json!({ "items": [shape(ORDER_STATE)] }));
    let o1 = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["client_order_id"] == "o1")
        .unwrap()
        .clone();
    assert_eq!(o1["status"], "FILLED");
    assert!(
        r.text().contains("\"limit_price\": 42000.0"),
        "OrderStore floats: {}",
        r.text()
    );

    let r = get(a, "/api/order_state?client_order_id=o1").await;
    assert_eq!(r.status, 200);
    assert_shape(&r.json(), &shape(ORDER_STATE));
    let r = get(a, "/api/order_state").await;
    assert_eq!((r.status, r.json()), (400, json!({"error": "bad_params"})));
    let r = get(a, "/api/order_state?client_order_id=nope").await;
    assert_eq!((r.status, r.json()), (404, json!({"error": "not_found"})));

    let r = post_json(a, "/api/cancel", r#"{"client_order_id":"unknown-1"}"#).await;
    assert_eq!(
        (r.status, r.json()),
        (200, json!({"ok": true, "client_order_id": "unknown-1"}))
    );
    let r = post_json(a, "/api/cancel", r#"{}"#).await;
    assert_eq!((r.status, r.json()), (400, json!({"error": "bad_params"})));

    let r = get(a, "/api/account").await;
    assert_eq!(r.status, 200);
    assert_shape(
        &r.json(),
        &json!({"ts_ns":"int|null","balances":[{"asset":"str","free":"num","locked":"num"}]}),
    );

    let r = get(a, "/api/execution/ping").await;
    assert_eq!((r.status, r.json()), (200, json!({"ok": true})));

    let r = post_json(
        a,
        "/api/auth/login",
        r#"{"user_id":"admin","password":"admin"}"#,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_shape(&r.json(), &json!({"token":"str","token_type":"Bearer"}));
    let r = post_json(
        a,
        "/api/auth/login",
        r#"{"user_id":"bob","password":"admin"}"#,
    )
    .await;
    assert_eq!(
        (r.status, r.json()),
        (401, json!({"error": "invalid_credentials"}))
    );

    // API keys (auth disabled: every permission granted).
    let r = post_json(a, "/api/auth/keys", r#"{"name":"ci"}"#).await;
    assert_eq!(r.status, 201);
    assert_shape(
        &r.json(),
        &json!({"key_id":"str","api_key":"str","message":"str"}),
    );
    let key_id = r.json()["key_id"].as_str().unwrap().to_owned();
    assert!(key_id.starts_with("vk_"));
    assert!(r.json()["api_key"].as_str().unwrap().starts_with("veloz_"));
    let r = get(a, "/api/auth/keys").await;
    assert_eq!(r.status, 200);
    assert_shape(
        &r.json(),
        &json!({"keys":[{"key_id":"str","user_id":"str","name":"str","created_at":"int",
                         "last_used_at":"int|null","revoked":"bool","permissions":["str"]}]}),
    );
    let r = req(
        a,
        "DELETE",
        &format!("/api/auth/keys?key_id={key_id}"),
        &[],
        b"",
    )
    .await;
    assert_eq!(
        (r.status, r.json()),
        (200, json!({"ok": true, "key_id": key_id}))
    );
    let r = req(a, "DELETE", "/api/auth/keys?key_id=vk_nope", &[], b"").await;
    assert_eq!((r.status, r.json()), (404, json!({"error": "not_found"})));

    // What the Python gateway does not have: HTML 404s; other methods: 501.
    for (method, path, message) in [
        ("GET", "/api/health", "File not found"),
        ("GET", "/metrics", "File not found"),
        ("POST", "/api/orders", "Not Found"),
        ("DELETE", "/api/orders/o1", "Not Found"),
    ] {
        let r = req(a, method, path, &[], b"").await;
        assert_eq!(r.status, 404, "{method} {path}");
        assert_eq!(r.header("content-type"), Some("text/html;charset=utf-8"));
        assert!(
            r.text().contains(&format!("<p>Message: {message}.</p>")),
            "{}",
            r.text()
        );
    }
    let r = req(a, "PUT", "/api/order", &[], b"").await;
    assert_eq!(r.status, 501);
    assert!(r.text().contains("Unsupported method ('PUT')"));

    let r = req(a, "OPTIONS", "/api/order", &[], b"").await;
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    let r = get(a, "/").await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));

    // Requests are counted per method and route template.
    let stats = sim.stats();
    assert_eq!(stats.requests_on("POST /api/order"), 5);
    assert_eq!(stats.requests_on("POST (unmatched)"), 1);
    assert_eq!(stats.requests_on("GET (static)"), 2);
    assert_eq!(stats.requests_on("PUT (unsupported)"), 1);
    let over_http: shadowgate_sim::StatsSnapshot =
        serde_json::from_slice(&get(a, "/__sim/stats").await.body).unwrap();
    assert_eq!(over_http.requests, stats.requests);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpp_profile_serves_every_cpp_route() {
    // Auth off here (shapes only); auth itself is tested in auth.rs.
    let sim = start(cfg(
        "profile = \"cpp\"\nseed = 1\n[auth]\nenabled = false\n",
    ))
    .await;
    let a = sim.local_addr();

    let r = get(a, "/health").await;
    assert_eq!(r.status, 200);
    assert_shape(&r.json(), &json!({"status":"ok","timestamp":"str"}));
    assert!(!r.text().contains(": "), "compact JSON: {}", r.text());
    assert!(r.header("server").is_none());
    assert!(r.header("access-control-allow-origin").is_none());

    let r = get(a, "/api/health").await;
    assert_eq!(r.status, 200);
    assert_shape(
        &r.json(),
        &json!({"status":"ok","timestamp":"str","engine":{"running":"bool",
                "uptime_seconds":"int","orders_processed":"int"},"memory_mb":"num",
                "version":"1.0.0"}),
    );

    let market = json!({"symbol":"str","last_price":"num","volume_24h":"num",
                        "last_trade_id":"int","last_update_ns":"int","exchange_ts_ns":"int"});
    for path in [
        "/api/market",
        "/api/market?symbol=ETHUSDT",
        "/api/market/BTCUSDT",
    ] {
        let r = get(a, path).await;
        assert_eq!(r.status, 200, "{path}");
        assert_shape(&r.json(), &market);
    }
    assert_eq!(
        get(a, "/api/market?symbol=ETHUSDT").await.json()["symbol"],
        "ETHUSDT"
    );

    let r = get(a, "/api/config").await;
    assert_eq!(r.status, 200);
    assert_shape(&r.json(), &json!({"status":"success","data":"obj"}));
    let r = post_json(a, "/api/config/risk_limit", r#"{"value": 5}"#).await;
    assert_eq!(
        (r.status, r.json()),
        (
            200,
            json!({"status":"success","data":{"key":"risk_limit","value":5}})
        )
    );
    assert_eq!(
        get(a, "/api/config/risk_limit").await.json()["data"]["value"],
        5
    );
    let r = post_json(a, "/api/config", r#"{"a": true}"#).await;
    assert_eq!(r.json()["data"]["a"], true);
    let r = req(a, "DELETE", "/api/config/risk_limit", &[], b"").await;
    assert_eq!(r.status, 200);
    assert_eq!(get(a, "/api/config/risk_limit").await.status, 404);

    let r = post_json(
        a,
        "/api/orders",
        r#"{"side":"buy","symbol":"BTCUSDT","qty":0.01,"price":42000,"client_order_id":"c1"}"#,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_shape(
        &r.json(),
        &json!({"status":"success","data":{"client_order_id":"c1","symbol":"str","side":"BUY",
                "qty":"num","price":"num","status":"new","created_at":"str"}}),
    );
    assert!(
        r.text().contains("\"price\":42000,"),
        "kj doubles: {}",
        r.text()
    );
    let r = post_json(
        a,
        "/api/orders",
        r#"{"side":"buy","symbol":"BTCUSDT","qty":0}"#,
    )
    .await;
    assert_eq!(
        (r.status, r.text()),
        (
            400,
            r#"{"error":"Order quantity must be positive"}"#.to_owned()
        )
    );
    let r = post_json(a, "/api/orders", r#"{"side":"buy","qty":1}"#).await;
    assert_eq!(
        r.json(),
        json!({"error": "Invalid order request: missing required fields"})
    );
    // Price defaults to 0 and is allowed; the id is generated.
    let r = post_json(
        a,
        "/api/orders",
        r#"{"side":"SELL","symbol":"BTCUSDT","qty":0.5}"#,
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(
        r.json()["data"]["client_order_id"]
            .as_str()
            .unwrap()
            .starts_with("veloz_")
    );

    let orders = eventually(60, || async {
        let v = get(a, "/api/orders").await.json();
        let done = v["data"]
            .as_array()?
            .iter()
            .any(|o| o["client_order_id"] == "c1" && o["status"] == "FILLED");
        done.then_some(v)
    })
    .await
    .expect("c1 fills");
    assert_shape(
        &orders,
        &json!({"status":"success","data":[shape(CPP_ORDER)]}),
    );
    let c1 = get(a, "/api/orders/c1").await;
    assert_shape(
        &c1.json(),
        &json!({"status":"success","data":shape(CPP_ORDER)}),
    );
    // The bridge cache was overwritten by an order_state line: qty/price are null.
    assert_eq!(c1.json()["data"]["qty"], Value::Null);
    let r = get(a, "/api/orders/nope").await;
    assert_eq!(
        (r.status, r.json()),
        (404, json!({"error": "Order not found"}))
    );

    let r = req(a, "DELETE", "/api/orders/c1", &[], b"").await;
    assert_shape(
        &r.json(),
        &json!({"status":"success","data":{"client_order_id":"c1","status":"cancel_requested",
                "cancelled_at":"str"}}),
    );
    let r = post_json(a, "/api/cancel", r#"{"order_ids":["a","b"]}"#).await;
    assert_shape(
        &r.json(),
        &json!({"status":"success","data":{"cancelled_count":2,"cancelled_at":"str"}}),
    );
    let r = post_json(a, "/api/cancel", r#"{"client_order_id":"a"}"#).await;
    assert_eq!(
        (r.status, r.json()),
        (400, json!({"error": "No order IDs provided"}))
    );

    let r = get(a, "/api/account").await;
    assert_shape(
        &r.json(),
        &json!({"status":"success","data":{"total_equity":"num","available_balance":"num",
                "unrealized_pnl":"num","open_position_count":"int",
                "total_position_notional":"num","last_update_ns":"int","balances":"obj"}}),
    );
    let balances = r.json()["data"]["balances"].clone();
    assert_eq!(
        balances["USDT"], 0,
        "the C++ bridge zeroes balances: {balances}"
    );
    assert_eq!(balances["BTC"], 0);

    assert_eq!(
        get(a, "/api/account/positions").await.json(),
        json!({"status":"success","data":[]})
    );
    let r = get(a, "/api/account/positions/BTCUSDT").await;
    assert_eq!(
        (r.status, r.json()),
        (404, json!({"error": "Position not found"}))
    );

    // Login, refresh, logout, keys.
    let r = post_json(
        a,
        "/api/auth/login",
        r#"{"username":"anyone","password":"admin"}"#,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    let tokens = r.json();
    assert_shape(
        &tokens,
        &json!({"access_token":"str","refresh_token":"str","expires_in":3600,"token_type":"Bearer"}),
    );
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let bearer = format!("Bearer {access}");
    let r = post_json(
        a,
        "/api/auth/refresh",
        &json!({"refresh_token": tokens["refresh_token"]}).to_string(),
    )
    .await;
    assert_shape(&r.json(), &json!({"access_token":"str","expires_in":"int"}));
    let r = post_json(
        a,
        "/api/auth/refresh",
        &json!({"refresh_token": access}).to_string(),
    )
    .await;
    assert_eq!(
        (r.status, r.json()),
        (401, json!({"error": "invalid_token"}))
    );

    let auth = [
        ("Authorization", bearer.as_str()),
        ("Content-Type", "application/json"),
    ];
    let r = req(a, "POST", "/api/auth/keys", &auth, br#"{"name":"k"}"#).await;
    assert_eq!(
        (r.status, r.json()),
        (400, json!({"error": "missing_required_fields"}))
    );
    let r = req(
        a,
        "POST",
        "/api/auth/keys",
        &auth,
        br#"{"name":"k","permissions":["read:orders"]}"#,
    )
    .await;
    assert_eq!(r.status, 200, "C++ creates keys with 200");
    assert_shape(
        &r.json(),
        &json!({"key_id":"str","raw_key":"str","message":"str"}),
    );
    let key_id = r.json()["key_id"].as_str().unwrap().to_owned();
    let r = req(a, "GET", "/api/auth/keys", &auth, b"").await;
    assert_shape(
        &r.json(),
        &json!({"keys":[{"key_id":"str","user_id":"anyone","name":"str","created_at":"str",
                         "last_used":"str","revoked":"bool","permissions":["str"]}]}),
    );
    // Key handlers demand a Bearer token of their own, even with auth disabled.
    let r = get(a, "/api/auth/keys").await;
    assert_eq!(
        (r.status, r.json()),
        (401, json!({"error": "unauthorized"}))
    );
    let r = req(a, "DELETE", &format!("/api/auth/keys/{key_id}"), &auth, b"").await;
    assert_eq!((r.status, r.json()), (200, json!({"ok": true})));
    let r = req(a, "DELETE", "/api/auth/keys/vk_nope", &auth, b"").await;
    assert_eq!(
        (r.status, r.json()),
        (404, json!({"error": "key_not_found"}))
    );
    let r = req(a, "POST", "/api/auth/logout", &auth, b"").await;
    assert_eq!((r.status, r.json()), (200, json!({"ok": true})));

    let r = get(a, "/metrics").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = r.text();
    for name in [
        "gateway_requests_total",
        "gateway_request_duration_seconds_bucket",
        "gateway_active_connections",
        "gateway_errors_total",
        "http_requests_total",
        "http_request_duration_seconds_bucket{le=\"0.001\"}",
        "http_requests_by_status",
        "http_active_connections",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics:\n{text}");
    }
    assert!(
        !text.contains("veloz_gateway"),
        "opt-in names are off by default"
    );

    // Python-only paths are unknown to the C++ router: JSON 404.
    for (method, path) in [
        ("POST", "/api/order"),
        ("GET", "/api/orders_state"),
        ("GET", "/api/order_state"),
        ("GET", "/api/execution/ping"),
        ("DELETE", "/api/auth/keys"),
    ] {
        let r = req(a, method, path, &[], b"").await;
        assert_eq!(
            (r.status, r.json()),
            (404, json!({"error": "Not found"})),
            "{method} {path}"
        );
    }
    let stats = sim.stats();
    assert_eq!(stats.requests_on("POST (unmatched)"), 1);
    assert_eq!(
        stats.requests_on("POST /api/order"),
        0,
        "never reached as a route"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_metric_names_are_opt_in() {
    let sim = start(cfg(
        "profile = \"cpp\"\n[metrics]\ndeployment_names = true\n[auth]\nenabled = false\n",
    ))
    .await;
    let a = sim.local_addr();
    assert_eq!(get(a, "/health").await.status, 200);
    let text = get(a, "/metrics").await.text();
    for name in [
        "veloz_gateway_requests_total{status=\"200\"} 1",
        "veloz_gateway_request_duration_seconds_bucket",
        "veloz_gateway_request_duration_seconds_sum",
        "veloz_gateway_request_duration_seconds_count",
        "veloz_gateway_sse_connections 0",
        "veloz_gateway_auth_failures_total",
        "veloz_gateway_auth_attempts_total",
    ] {
        assert!(text.contains(name), "{name} missing:\n{text}");
    }
    sim.shutdown().await;
}

/// A cpp simulator with every difference off answers like the python one on the routes
/// python has (modulo the §8 noise fields).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_cpp_answers_like_python() {
    let py = start(cfg("profile = \"python\"\nseed = 9\n")).await;
    // Through validation, so that defaults follow the switches (auth off as python's).
    let cpp_cfg = cfg(r#"
            profile = "cpp"
            seed = 9
            [differences]
            paths = false
            envelope = false
            shapes = false
            login = false
            auth = false
            errors = false
            sse = false
            rate_limit_headers = false
            json_format = false
            headers = false
        "#);
    assert!(
        !cpp_cfg.auth.enabled,
        "python's auth default follows differences.auth"
    );
    let cpp = start(cpp_cfg).await;
    let noise = [
        "ts_ns",
        "last_ts_ns",
        "_id",
        "price",
        "avg_price",
        "token",
        "free",
        "locked",
    ];

    let script: Vec<(&str, &str, &str)> = vec![
        ("GET", "/health", ""),
        ("GET", "/api/config", ""),
        ("GET", "/api/market", ""),
        (
            "POST",
            "/api/order",
            r#"{"side":"buy","qty":0.01,"price":42000,"client_order_id":"i1"}"#,
        ),
        ("POST", "/api/order", r#"{"qty":0}"#),
        ("POST", "/api/cancel", r#"{"client_order_id":"zz"}"#),
        ("GET", "/api/execution/ping", ""),
        ("GET", "/api/order_state?client_order_id=nope", ""),
        ("POST", "/api/orders", ""),
        ("GET", "/api/health", ""),
        ("PUT", "/api/order", ""),
        ("OPTIONS", "/api/order", ""),
    ];
    for (method, path, body) in &script {
        let headers = [("Content-Type", "application/json")];
        let rp = req(py.local_addr(), method, path, &headers, body.as_bytes()).await;
        let rc = req(cpp.local_addr(), method, path, &headers, body.as_bytes()).await;
        assert_eq!(rp.status, rc.status, "{method} {path}");
        for h in [
            "content-type",
            "server",
            "access-control-allow-origin",
            "connection",
        ] {
            assert_eq!(rp.header(h), rc.header(h), "{method} {path}: header {h}");
        }
        if rp
            .header("content-type")
            .is_some_and(|c| c.contains("json"))
        {
            let (mut vp, mut vc) = (rp.json(), rc.json());
            strip(&mut vp, &noise);
            strip(&mut vc, &noise);
            assert_eq!(vp, vc, "{method} {path}");
        } else {
            assert_eq!(rp.body, rc.body, "{method} {path}");
        }
    }
    // Order flows line up too, once both engines have filled the order.
    for path in [
        "/api/orders_state",
        "/api/order_state?client_order_id=i1",
        "/api/account",
    ] {
        let fetch = |addr| async move {
            eventually(60, || async {
                let mut v = get(addr, path).await.json();
                let text = v.to_string();
                (text.contains("FILLED") || path == "/api/account").then(|| {
                    strip(&mut v, &noise);
                    v
                })
            })
            .await
            .expect("the order fills")
        };
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        assert_eq!(
            fetch(py.local_addr()).await,
            fetch(cpp.local_addr()).await,
            "{path}"
        );
    }
    py.shutdown().await;
    cpp.shutdown().await;
}
