//! Writes are not mirrored by accident: a POST on a route without an opt-in rule never
//! reaches the candidate; an opted-in one does, exactly once per request.

use http::Method;
use shadowgate_mirror::default_rules;

use crate::util::{self, PYTHON_SEEDED, client, request, sim, test_rules, url};

const ORDER: &str = r#"{"side":"BUY","symbol":"BTCUSDT","qty":0.01,"price":42000}"#;
const JSON: [(&str, &str); 1] = [("content-type", "application/json")];

#[tokio::test]
async fn writes_without_an_opt_in_never_reach_the_candidate() {
    for (name, rules) in [
        ("default rules", default_rules()),
        ("test rules", test_rules()),
    ] {
        let primary = sim(PYTHON_SEEDED).await;
        let candidate = sim(PYTHON_SEEDED).await;
        let dir = tempfile::tempdir().unwrap();
        let mirror = util::mirror(
            &url(primary.local_addr()),
            &url(candidate.local_addr()),
            &dir.path().join("run"),
            rules,
            |_| {},
        )
        .await;
        let http = client();
        let via = url(mirror.local_addr());
        for _ in 0..5 {
            let r = request(
                &http,
                Method::POST,
                &format!("{via}/api/order"),
                &JSON,
                ORDER,
            )
            .await;
            assert_eq!(r.status, 200, "{name}: {:?}", r.body);
        }
        // A safe request on the same connection pool is mirrored (the candidate is reachable).
        let r = request(&http, Method::GET, &format!("{via}/health"), &[], "").await;
        assert_eq!(r.status, 200);
        let s = mirror.shutdown().await.unwrap();
        assert_eq!(primary.stats().requests_on("POST /api/order"), 5, "{name}");
        assert_eq!(
            candidate.stats().requests_on("POST /api/order"),
            0,
            "{name}"
        );
        assert_eq!(candidate.stats().requests_on("GET /health"), 1, "{name}");
        assert_eq!(s.shadow.write_skipped, 5, "{name}");
        assert_eq!(s.shadow.eligible, 1, "{name}");
        primary.shutdown().await;
        candidate.shutdown().await;
    }
}

#[tokio::test]
async fn opted_in_writes_are_mirrored_once_each() {
    let primary = sim(PYTHON_SEEDED).await;
    let candidate = sim(PYTHON_SEEDED).await;
    let dir = tempfile::tempdir().unwrap();
    let mirror = util::mirror(
        &url(primary.local_addr()),
        &url(candidate.local_addr()),
        &dir.path().join("run"),
        test_rules(),
        |_| {},
    )
    .await;
    let http = client();
    let via = url(mirror.local_addr());
    for i in 0..3 {
        let body = format!(r#"{{"client_order_id":"web-{i}"}}"#);
        let r = request(
            &http,
            Method::POST,
            &format!("{via}/api/cancel"),
            &JSON,
            &body,
        )
        .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    let m = &mirror;
    util::eventually("the candidate got the three cancels", || {
        candidate.stats().requests_on("POST /api/cancel") == 3
    })
    .await;
    let s = m.summary();
    assert_eq!(s.shadow.eligible, 3);
    mirror.shutdown().await.unwrap();
    assert_eq!(primary.stats().requests_on("POST /api/cancel"), 3);
    assert_eq!(candidate.stats().requests_on("POST /api/cancel"), 3);
    primary.shutdown().await;
    candidate.shutdown().await;
}
