//! `shadowgate demo` — interim version.
//!
//! The full demo (mirror + load + resource sampling + report on a pair of simulated gateways)
//! needs crates that are not built yet. Until then this command shows the part that exists:
//! it starts a `python`-profile and a `cpp`-profile simulator in-process on 127.0.0.1:0, sends
//! both the same handful of requests, and prints the answers side by side with a one-line
//! summary of how they differ. It says plainly that it is the interim demo.
//!
//! Both simulators run with authentication off and the same seed (deterministic ticks), so
//! what differs is the API itself — routes, envelopes, shapes, JSON spelling — and not login
//! state or prices. The real C++ gateway defaults to auth on; the output explains that.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use shadowgate_sim::{Profile, SimConfig, SimServer};

/// Per-request bound: the simulators answer in microseconds; this only stops a hang.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest body line printed per answer.
const SHOW_BODY: usize = 110;
/// The order both requests place (as the python UI would send it).
const ORDER_BODY: &str =
    r#"{"side":"BUY","symbol":"BTCUSDT","qty":0.01,"price":42000,"client_order_id":"demo-1"}"#;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Seed for both simulators (same seed: same prices, same injected decisions).
    #[arg(long, default_value_t = 42, value_name = "N")]
    pub seed: u64,
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// One answer, or why there was none.
#[derive(Debug, Clone, PartialEq)]
enum Answer {
    Http {
        status: u16,
        content_type: String,
        body: Bytes,
    },
    Failed(String),
}

pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let python = start_sim(Profile::Python, args.seed).await?;
    let cpp = match start_sim(Profile::Cpp, args.seed).await {
        Ok(s) => s,
        Err(e) => {
            python.shutdown().await;
            return Err(e);
        }
    };
    let (py_addr, cpp_addr) = (python.local_addr(), cpp.local_addr());

    println!("shadowgate demo (interim): the two simulated VeloZ gateways, side by side");
    println!("  python profile  http://{py_addr}   (imitates the Python gateway, :8080)");
    println!("  cpp profile     http://{cpp_addr}   (imitates the C++ gateway, :8081)");
    println!(
        "  Both run with seed {} and authentication off. The real C++ gateway defaults to\n  \
         auth on (Python to off): with real defaults every /api call below would get a 401\n  \
         {{\"error\":\"unauthorized\",...}} from cpp — a difference in itself. `shadowgate sim\n  \
         --profile cpp` keeps that default; add --auth off to match this demo.",
        args.seed
    );

    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(REQUEST_TIMEOUT));
    let client: HttpClient = Client::builder(TokioExecutor::new()).build(connector);

    // Let the engines publish a tick and the first account snapshot.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let steps: [(&str, &str, Option<&str>, &str); 6] = [
        (
            "GET",
            "/health",
            None,
            "the health check the rollout plan polls",
        ),
        ("GET", "/api/market", None, "latest market tick"),
        ("GET", "/api/account", None, "balances"),
        (
            "POST",
            "/api/order",
            Some(ORDER_BODY),
            "place an order, the Python route",
        ),
        (
            "POST",
            "/api/orders",
            Some(ORDER_BODY),
            "place an order, the C++ route",
        ),
        (
            "GET",
            "/api/orders",
            None,
            "orders so far (after the engine filled them)",
        ),
    ];
    for (method, path, body, what) in steps {
        if method == "GET" && path == "/api/orders" {
            // Orders fill after the engine's fill delay (300 ms by default).
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
        let py = exchange(&client, py_addr, method, path, body).await;
        let cp = exchange(&client, cpp_addr, method, path, body).await;
        println!();
        println!("{method} {path}  — {what}");
        println!("  python  {}", show(&py));
        println!("  cpp     {}", show(&cp));
        println!("  => {}", differences(&py, &cp));
    }

    println!();
    println!(
        "This is the interim demo: it only shows the simulators. The full `shadowgate demo`\n\
         (not built yet) will run the whole pipeline on this pair with a few injected\n\
         discrepancies: the mirror proxy serves clients from the python gateway and\n\
         duplicates each request to the cpp one, diffing status, headers, JSON bodies, SSE\n\
         streams and order flows into discrepancies.ndjson (noise such as timestamps kept\n\
         apart from regressions); a short fixed-rate load run drives each gateway and records\n\
         latency in HDR histograms; CPU and memory are sampled; and a report checks the\n\
         rollout phase criteria (P50/P99/P99.9 latency, error rate, resources) with an exit\n\
         code a CI job can gate on."
    );

    python.shutdown().await;
    cpp.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

async fn start_sim(profile: Profile, seed: u64) -> anyhow::Result<SimServer> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .with_context(|| format!("cannot bind 127.0.0.1:0 for the {profile} simulator"))?;
    let mut config = SimConfig::default_for(profile);
    config.seed = Some(seed);
    config.deterministic = true;
    config.auth.enabled = false;
    shadowgate_sim::start(config, listener)
        .await
        .with_context(|| format!("cannot start the {profile} simulator"))
}

async fn exchange(
    client: &HttpClient,
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Answer {
    let mut builder = hyper::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header(
            hyper::header::USER_AGENT,
            concat!("shadowgate/", env!("CARGO_PKG_VERSION")),
        );
    if body.is_some() {
        builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
    }
    let request = match builder.body(Full::new(Bytes::from(body.unwrap_or("").to_owned()))) {
        Ok(r) => r,
        Err(e) => return Answer::Failed(format!("bad request: {e}")),
    };
    let call = async {
        let response = client.request(request).await.map_err(|e| format!("{e}"))?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body = Limited::new(response.into_body(), 1 << 20)
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        Ok::<_, String>(Answer::Http {
            status,
            content_type,
            body,
        })
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, call).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(reason)) => Answer::Failed(reason),
        Err(_) => Answer::Failed(format!("no answer within {REQUEST_TIMEOUT:?}")),
    }
}

/// `200  {"ok": true}` — status and the body on one line, cut to [`SHOW_BODY`] characters.
fn show(answer: &Answer) -> String {
    match answer {
        Answer::Failed(reason) => format!("no answer ({reason})"),
        Answer::Http { status, body, .. } => {
            let text = String::from_utf8_lossy(body);
            let mut line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
            if line.chars().count() > SHOW_BODY {
                line = line.chars().take(SHOW_BODY).collect();
                line.push_str(" …");
            }
            format!("{status}  {line}")
        }
    }
}

/// A one-line summary of how two answers to the same request differ.
fn differences(python: &Answer, cpp: &Answer) -> String {
    let (
        Answer::Http {
            status: ps,
            content_type: pct,
            body: pb,
        },
        Answer::Http {
            status: cs,
            content_type: cct,
            body: cb,
        },
    ) = (python, cpp)
    else {
        return "at least one side did not answer".to_owned();
    };
    let mut parts: Vec<String> = Vec::new();
    if ps != cs {
        parts.push(format!("status {ps} vs {cs}"));
    }
    let pj = serde_json::from_slice::<Value>(pb).ok();
    let cj = serde_json::from_slice::<Value>(cb).ok();
    match (&pj, &cj) {
        (Some(Value::Object(p)), Some(Value::Object(c))) => {
            let only = |a: &serde_json::Map<String, Value>, b: &serde_json::Map<String, Value>| {
                a.keys()
                    .filter(|k| !b.contains_key(*k))
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let (py_only, cpp_only) = (only(p, c), only(c, p));
            if !py_only.is_empty() || !cpp_only.is_empty() {
                let mut s = "body keys differ".to_owned();
                if !py_only.is_empty() {
                    let _ = write!(s, " — python only: {py_only}");
                }
                if !cpp_only.is_empty() {
                    let _ = write!(s, " — cpp only: {cpp_only}");
                }
                parts.push(s);
            } else if pb != cb {
                parts.push("same keys, different bytes (values or JSON spacing)".to_owned());
            }
        }
        (Some(_), None) => parts.push("cpp body is not JSON".to_owned()),
        (None, Some(_)) => parts.push("python body is not JSON (an HTML error page)".to_owned()),
        (None, None) if pb != cb => parts.push("bodies differ".to_owned()),
        _ if pb != cb => parts.push("bodies differ".to_owned()),
        _ => {}
    }
    if pct != cct {
        parts.push(format!("Content-Type {pct:?} vs {cct:?}"));
    }
    if parts.is_empty() {
        "identical answers".to_owned()
    } else {
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(status: u16, ct: &str, body: &str) -> Answer {
        Answer::Http {
            status,
            content_type: ct.to_owned(),
            body: Bytes::from(body.to_owned()),
        }
    }

    #[test]
    fn differences_name_status_keys_and_content_type() {
        let py = http(200, "application/json; charset=utf-8", r#"{"ok": true}"#);
        let cpp = http(
            200,
            "application/json",
            r#"{"status":"ok","timestamp":"x"}"#,
        );
        let d = differences(&py, &cpp);
        assert!(d.contains("python only: ok"), "{d}");
        assert!(d.contains("cpp only: status, timestamp"), "{d}");
        assert!(d.contains("Content-Type"), "{d}");
        assert!(!d.contains("status 200"), "{d}");

        let html = http(404, "text/html", "<html>404</html>");
        let ok = http(200, "application/json", r#"{"status":"success"}"#);
        let d = differences(&html, &ok);
        assert!(d.starts_with("status 404 vs 200"), "{d}");
        assert!(d.contains("python body is not JSON"), "{d}");
    }

    #[test]
    fn identical_and_spacing_only_answers() {
        let a = http(200, "application/json", r#"{"a":1}"#);
        assert_eq!(differences(&a, &a.clone()), "identical answers");
        let spaced = http(200, "application/json", r#"{"a": 1}"#);
        assert!(differences(&spaced, &a).contains("same keys"));
        let failed = Answer::Failed("refused".into());
        assert_eq!(differences(&failed, &a), "at least one side did not answer");
    }

    #[test]
    fn show_keeps_one_short_line() {
        let long = format!("{{\n  \"k\": \"{}\"\n}}", "x".repeat(300));
        let line = show(&http(200, "", &long));
        assert!(line.starts_with("200  { \"k\""), "{line}");
        assert!(line.ends_with(" …"));
        assert!(!line.contains('\n'));
        assert_eq!(show(&Answer::Failed("boom".into())), "no answer (boom)");
    }
}
