//! Authentication (JWT, API keys, permissions) and rate limiting, per profile.

use serde_json::json;
use shadowgate_sim::auth::{JwtHeaderStyle, mint_jwt};

use crate::util::*;

const SECRET: &str = "0123456789abcdef0123456789abcdef-test";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn python_token(secret: &[u8]) -> String {
    let t = now();
    mint_jwt(
        JwtHeaderStyle::Python,
        &json!({"sub": "admin", "iat": t, "exp": t + 600}),
        secret,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_jwt_401_without_and_200_with_a_minted_token() {
    let sim = start(cfg(&format!(
        "profile = \"python\"\n[auth]\nenabled = true\njwt_secret = \"{SECRET}\"\n"
    )))
    .await;
    let a = sim.local_addr();

    let r = get(a, "/api/market").await;
    assert_eq!(
        (r.status, r.json()),
        (401, json!({"error": "authentication_required"}))
    );
    assert!(r.header("www-authenticate").is_none());

    let token = python_token(SECRET.as_bytes());
    let bearer = format!("Bearer {token}");
    let r = req(a, "GET", "/api/market", &[("Authorization", &bearer)], b"").await;
    assert_eq!(r.status, 200);

    let wrong = python_token(b"another secret of enough length!!");
    let r = req(
        a,
        "GET",
        "/api/market",
        &[("Authorization", &format!("Bearer {wrong}"))],
        b"",
    )
    .await;
    assert_eq!(
        (r.status, r.json()),
        (401, json!({"error": "invalid_token"}))
    );

    // Public paths stay open.
    assert_eq!(get(a, "/health").await.status, 200);
    let (head, _) = read_sse(a, "/api/stream", &[], IO_TIMEOUT, |f| !f.is_empty()).await;
    assert_eq!(head.status, 200);

    // Login mints a token that works.
    let r = post_json(
        a,
        "/api/auth/login",
        r#"{"user_id":"admin","password":"admin"}"#,
    )
    .await;
    let token = r.json()["token"].as_str().unwrap().to_owned();
    let r = req(
        a,
        "GET",
        "/api/orders",
        &[("Authorization", &format!("Bearer {token}"))],
        b"",
    )
    .await;
    assert_eq!(r.status, 200);

    // JWT users have read/write but not admin: key management is forbidden.
    let r = req(
        a,
        "POST",
        "/api/auth/keys",
        &[
            ("Authorization", &bearer),
            ("Content-Type", "application/json"),
        ],
        br#"{"name":"x"}"#,
    )
    .await;
    assert_eq!(
        (r.status, r.json()),
        (
            403,
            json!({"error": "forbidden", "message": "admin permission required"})
        )
    );

    // The default admin key (never shown by the real gateway) goes through X-API-Key.
    let admin = sim
        .admin_api_key()
        .expect("python creates a default admin key")
        .to_owned();
    let r = req(
        a,
        "POST",
        "/api/auth/keys",
        &[("X-API-Key", &admin), ("Content-Type", "application/json")],
        br#"{"name":"reader","permissions":["read"]}"#,
    )
    .await;
    assert_eq!(r.status, 201);
    let reader = r.json()["api_key"].as_str().unwrap().to_owned();
    let r = req(a, "GET", "/api/account", &[("X-API-Key", &reader)], b"").await;
    assert_eq!(r.status, 200);
    let r = req(
        a,
        "POST",
        "/api/order",
        &[("X-API-Key", &reader), ("Content-Type", "application/json")],
        br#"{"qty":1,"price":1}"#,
    )
    .await;
    assert_eq!(
        (r.status, r.json()),
        (
            403,
            json!({"error": "forbidden", "message": "write permission required"})
        )
    );
    let r = req(
        a,
        "GET",
        "/api/account",
        &[("X-API-Key", "veloz_nope")],
        b"",
    )
    .await;
    assert_eq!(
        (r.status, r.json()),
        (401, json!({"error": "invalid_api_key"}))
    );
    // Bearer is tried first: a bad token fails even with a good key.
    let r = req(
        a,
        "GET",
        "/api/account",
        &[("X-API-Key", &reader), ("Authorization", "Bearer x.y.z")],
        b"",
    )
    .await;
    assert_eq!(r.status, 401);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpp_auth_is_on_by_default_and_jwt_users_get_403() {
    let sim = start(cfg(&format!(
        "profile = \"cpp\"\n[auth]\njwt_secret = \"{SECRET}\"\n"
    )))
    .await;
    let a = sim.local_addr();
    assert!(sim.config().auth.enabled);

    let r = get(a, "/api/market").await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.text(),
        "{\n  \"error\": \"unauthorized\",\n  \"message\": \"Authentication required\"\n}"
    );
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    // /api/stream is not public in C++.
    assert_eq!(get(a, "/api/stream").await.status, 401);
    // Public: /health, /api/health; /metrics (simulator default, auth.public_metrics).
    for path in ["/health", "/api/health", "/metrics"] {
        assert_eq!(get(a, path).await.status, 200, "{path}");
    }

    let t = now();
    let token = mint_jwt(
        JwtHeaderStyle::Compact,
        &json!({"sub": "trader", "iat": t, "exp": t + 600, "type": "access"}),
        SECRET.as_bytes(),
    );
    let bearer = format!("Bearer {token}");
    let r = req(a, "GET", "/api/market", &[("Authorization", &bearer)], b"").await;
    assert_eq!(r.status, 200);
    for path in ["/api/orders", "/api/account"] {
        let r = req(a, "GET", path, &[("Authorization", &bearer)], b"").await;
        assert_eq!(r.status, 403, "{path}");
        assert!(
            r.json()["error"]
                .as_str()
                .unwrap()
                .starts_with("Permission denied: read:")
        );
    }
    // C++ rejects an iat more than 60 s ahead.
    let future = mint_jwt(
        JwtHeaderStyle::Compact,
        &json!({"sub": "x", "iat": t + 3600, "exp": t + 7200}),
        SECRET.as_bytes(),
    );
    let r = req(
        a,
        "GET",
        "/api/market",
        &[("Authorization", &format!("Bearer {future}"))],
        b"",
    )
    .await;
    assert_eq!(r.status, 401);

    // A scoped API key opens the order routes; X-API-Key wins over a bad Bearer.
    let r = req(
        a,
        "POST",
        "/api/auth/keys",
        &[("Authorization", &bearer)],
        br#"{"name":"bot","permissions":["read:orders","write:orders","read:account"]}"#,
    )
    .await;
    assert_eq!(r.status, 200);
    let key = r.json()["raw_key"].as_str().unwrap().to_owned();
    let r = req(
        a,
        "GET",
        "/api/orders",
        &[("X-API-Key", &key), ("Authorization", "Bearer junk")],
        b"",
    )
    .await;
    assert_eq!(r.status, 200);
    let r = req(
        a,
        "POST",
        "/api/orders",
        &[("X-API-Key", &key)],
        br#"{"side":"buy","symbol":"BTCUSDT","qty":0.01,"price":42000}"#,
    )
    .await;
    assert_eq!(r.status, 200);
    // No write:cancel on this key.
    let r = req(
        a,
        "POST",
        "/api/cancel",
        &[("X-API-Key", &key)],
        br#"{"order_ids":["a"]}"#,
    )
    .await;
    assert_eq!(
        (r.status, r.json()),
        (
            403,
            json!({"error": "Permission denied: write:cancel required"})
        )
    );
    // A present but bad X-API-Key does not fall back to a good Bearer token.
    let r = req(
        a,
        "GET",
        "/api/market",
        &[("X-API-Key", "veloz_bad"), ("Authorization", &bearer)],
        b"",
    )
    .await;
    assert_eq!(r.status, 401);
    sim.shutdown().await;
}

#[test]
fn cpp_rejects_a_short_secret_as_the_real_gateway_fails_to_start() {
    let err = shadowgate_sim::SimConfig::from_toml_str(
        "profile = \"cpp\"\n[auth]\njwt_secret = \"short\"\n",
        "t.toml",
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("auth.jwt_secret: 5 bytes"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_rate_limit_429_duplicates_headers() {
    let sim = start(cfg(&format!(
        "profile = \"python\"\n[auth]\nenabled = true\njwt_secret = \"{SECRET}\"\n\
         [rate_limit]\ncapacity = 3\nrefill_per_s = 0.01\n"
    )))
    .await;
    let a = sim.local_addr();
    let bearer = format!("Bearer {}", python_token(SECRET.as_bytes()));
    let h = [("Authorization", bearer.as_str())];
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let r = req(a, "GET", "/api/market", &h, b"").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-ratelimit-limit"), Some("3"));
        assert_eq!(r.header_count("x-ratelimit-limit"), 1);
        assert!(
            r.header("x-ratelimit-reset")
                .unwrap()
                .parse::<u64>()
                .unwrap()
                > now()
        );
        remaining.push(r.header("x-ratelimit-remaining").unwrap().to_owned());
    }
    assert_eq!(remaining, ["2", "1", "0"]);
    let r = req(a, "GET", "/api/market", &h, b"").await;
    assert_eq!(
        (r.status, r.json()),
        (429, json!({"error": "rate_limit_exceeded"}))
    );
    for name in [
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
        "retry-after",
    ] {
        assert_eq!(r.header_count(name), 2, "{name} twice on a python 429");
    }
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    // /health and login are exempt.
    for _ in 0..5 {
        assert_eq!(get(a, "/health").await.status, 200);
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpp_rate_limit_uses_iso8601_retry_after() {
    let sim = start(cfg(&format!(
        "profile = \"cpp\"\n[auth]\njwt_secret = \"{SECRET}\"\n\
         [rate_limit]\ncapacity = 2\nrefill_per_s = 0.5\n"
    )))
    .await;
    let a = sim.local_addr();
    let t = now();
    let token = mint_jwt(
        JwtHeaderStyle::Compact,
        &json!({"sub": "u", "iat": t, "exp": t + 600}),
        SECRET.as_bytes(),
    );
    let bearer = format!("Bearer {token}");
    let h = [("Authorization", bearer.as_str())];
    for _ in 0..2 {
        assert_eq!(req(a, "GET", "/api/market", &h, b"").await.status, 200);
    }
    let r = req(a, "GET", "/api/market", &h, b"").await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header_count("x-ratelimit-limit"), 1);
    let retry = r.header("retry-after").unwrap();
    assert!(retry.starts_with("PT") && retry.ends_with('S'), "{retry}");
    sim.shutdown().await;
}
