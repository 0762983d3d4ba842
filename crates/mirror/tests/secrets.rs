//! Secrets never reach a report: two echo servers answer with the request's credentials
//! (the candidate slightly changed, so every one of them is in a reported difference: JSON
//! fields, a whole missing subtree, a compared header, a text body). None of the seeded
//! secrets may appear in any file of the run directory or in the admin endpoints.

use http::Method;
use http::header::HeaderValue;
use http_body_util::BodyExt;
use serde_json::{Value, json};

use crate::util::{self, TestBody, client, files, get, request, serve, test_rules, url};

const BEARER: &str = "Bearer sk-live-SEEDED-bearer-7f3a9c";
const API_KEY: &str = "ak-SEEDED-api-key-51e2";
const PASSWORD: &str = "pw-SEEDED-password-9d04";

async fn echo(
    req: http::Request<hyper::body::Incoming>,
    who: &'static str,
) -> http::Response<TestBody> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    let header = |n: &str| {
        parts
            .headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let change = |s: String| {
        if who == "candidate" {
            format!("{s}-changed")
        } else {
            s
        }
    };
    let (auth, key) = (header("authorization"), header("x-api-key"));
    let (ctype, text) = match parts.uri.path() {
        "/echo/json" => (
            "application/json",
            json!({"who": who, "auth": {"token": change(auth)}, "credentials": {"api_key": change(key.clone())}})
                .to_string(),
        ),
        "/echo/missing" if who == "primary" => (
            "application/json",
            json!({"session": {"token": auth, "api_secret": key.clone()}}).to_string(),
        ),
        "/echo/missing" => ("application/json", json!({}).to_string()),
        "/echo/text" => (
            "text/plain",
            format!("user=u password={}\nauthorization: {}\n", change(PASSWORD.into()), change(auth)),
        ),
        "/login" => {
            let mut v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            if let Some(p) = v.get_mut("password") {
                *p = Value::String(change(p.as_str().unwrap_or("").to_owned()));
            }
            ("application/json", json!({"who": who, "echo": v}).to_string())
        }
        _ => ("text/plain", "not found".to_owned()),
    };
    let mut resp = http::Response::new(TestBody::text(text));
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static(ctype));
    resp.headers_mut()
        .insert("x-api-key", HeaderValue::from_str(&change(key)).unwrap());
    resp
}

#[tokio::test]
async fn seeded_secrets_appear_nowhere() {
    let (p_addr, p_task) = serve(|r| echo(r, "primary")).await;
    let (c_addr, c_task) = serve(|r| echo(r, "candidate")).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mirror = util::mirror(&url(p_addr), &url(c_addr), &out, test_rules(), |_| {}).await;
    let http = client();
    let via = url(mirror.local_addr());
    let creds = [("authorization", BEARER), ("x-api-key", API_KEY)];
    for path in ["/echo/json", "/echo/missing", "/echo/text"] {
        let r = request(&http, Method::GET, &format!("{via}{path}"), &creds, "").await;
        assert_eq!(r.status, 200);
        // The client itself gets the primary's answer, secrets and all.
        if path == "/echo/json" {
            assert!(String::from_utf8_lossy(&r.body).contains(BEARER));
        }
    }
    let login = format!(r#"{{"user":"u","password":"{PASSWORD}"}}"#);
    let r = request(
        &http,
        Method::POST,
        &format!("{via}/login"),
        &[("content-type", "application/json")],
        &login,
    )
    .await;
    assert_eq!(r.status, 200);
    util::eventually("four exchanges compared", || {
        mirror.summary().shadow.compared == 4
    })
    .await;

    let admin = url(mirror.admin_addr().unwrap());
    let metrics = get(&http, &format!("{admin}/metrics")).await;
    let summary = get(&http, &format!("{admin}/summary")).await;
    assert_eq!(metrics.status, 200);
    assert_eq!(summary.status, 200);
    let summary_json = summary.json();
    assert!(
        summary_json["groups"].as_array().unwrap().len() >= 6,
        "{summary_json:#}"
    );
    mirror.shutdown().await.unwrap();

    let run = shadowgate_record::Run::open(&out).unwrap();
    let paths: Vec<&str> = run.discrepancies.iter().map(|d| d.path.as_str()).collect();
    for want in [
        "/auth/token",
        "/credentials/api_key",
        "/session",
        "/headers/x-api-key",
        "/echo/password",
    ] {
        assert!(paths.contains(&want), "no difference at {want}: {paths:?}");
    }
    assert!(
        run.discrepancies
            .iter()
            .any(|d| d.path == "/auth/token"
                && d.primary.as_str().unwrap().starts_with("[redacted:")),
    );

    let mut texts: Vec<(String, String)> = files(&out)
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (
                p.display().to_string(),
                String::from_utf8_lossy(&bytes).into_owned(),
            )
        })
        .collect();
    texts.push((
        "/metrics".into(),
        String::from_utf8_lossy(&metrics.body).into_owned(),
    ));
    texts.push((
        "/summary".into(),
        String::from_utf8_lossy(&summary.body).into_owned(),
    ));
    assert!(texts.len() >= 6, "{texts:?}");
    for (name, text) in &texts {
        for secret in [BEARER, API_KEY, PASSWORD, "SEEDED"] {
            assert!(!text.contains(secret), "{secret:?} leaked into {name}");
        }
    }
    p_task.abort();
    c_task.abort();
}
