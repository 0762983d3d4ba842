//! `shadowgate health URL`: the rollout plan's health check, for either gateway.
//!
//! The two gateways answer `/health` differently — python `{"ok": true}`, C++
//! `{"status":"ok","timestamp":...}` — so "healthy" means a 2xx answer whose JSON body has one
//! of those two shapes, and the output names which one it saw. Parsing the URL and judging
//! the answer are pure functions ([`health_uri`], [`classify`]); only [`probe`] touches the
//! network. Exit codes: 0 healthy, 1 unhealthy (with a one-line reason and a fix hint),
//! 2 bad input (an unparsable URL, https).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::Uri;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

/// A health body larger than this is not a health body; it is read no further.
const MAX_BODY: usize = 64 * 1024;
/// How much of an unexpected body is echoed in the output.
const ECHO_BODY: usize = 2048;

#[derive(Debug, clap::Args)]
pub struct HealthArgs {
    /// The gateway's base URL, e.g. http://127.0.0.1:8080 (a trailing /health is accepted;
    /// a bare host:port means http).
    pub url: String,
    /// Give up after this long (connect + answer), e.g. 500ms, 5s.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Print one JSON object (url, healthy, status, shape, reason, body) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Which health-body shape a gateway answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// `{"ok": true}`.
    Python,
    /// `{"status": "ok" | "healthy", ...}`; holds the status value seen.
    Cpp(String),
}

impl Shape {
    fn describe(&self) -> String {
        match self {
            Shape::Python => r#"python-style {"ok":true}"#.to_owned(),
            Shape::Cpp(status) => format!(r#"cpp-style {{"status":"{status}"}}"#),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Shape::Python => "python",
            Shape::Cpp(_) => "cpp",
        }
    }
}

/// The judgement on one answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Healthy(Shape),
    /// A one-line reason, already carrying its fix hint.
    Unhealthy(String),
}

/// Builds the URL to GET from what the user typed: adds `http://` to a bare `host:port`,
/// appends `/health` unless the path already ends with it, and refuses https (there is no TLS
/// client in this binary) and other schemes.
pub fn health_uri(input: &str) -> anyhow::Result<Uri> {
    let input = input.trim();
    if input.is_empty() {
        bail!("empty URL: give the gateway's base URL, e.g. http://127.0.0.1:8080");
    }
    let with_scheme = match input.split_once("://") {
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("http") => input.to_owned(),
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("https") => bail!(
            "{input}: https is not supported (shadowgate health speaks plain HTTP); \
             check the gateway on its http port, e.g. http://127.0.0.1:8080"
        ),
        Some((scheme, _)) => {
            bail!("{input}: unsupported scheme {scheme:?}; use http://HOST:PORT")
        }
        None => format!("http://{input}"),
    };
    let uri: Uri = with_scheme
        .parse()
        .with_context(|| format!("{input}: not a valid URL; use http://HOST:PORT"))?;
    let Some(authority) = uri.authority() else {
        bail!("{input}: no host in URL; use http://HOST:PORT");
    };
    if authority.host().is_empty() {
        bail!("{input}: no host in URL; use http://HOST:PORT");
    }
    if authority.as_str().contains('@') {
        bail!("{input}: credentials in the URL are not supported; use http://HOST:PORT");
    }
    let path = uri.path().trim_end_matches('/');
    let path = if path.ends_with("/health") {
        path.to_owned()
    } else {
        format!("{path}/health")
    };
    let path_and_query = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    Uri::builder()
        .scheme("http")
        .authority(authority.clone())
        .path_and_query(path_and_query)
        .build()
        .with_context(|| format!("{input}: not a valid URL; use http://HOST:PORT"))
}

/// Judges a `/health` answer. Pure: the status code and the body bytes are all it sees.
pub fn classify(status: u16, body: &[u8]) -> Verdict {
    if !(200..300).contains(&status) {
        return Verdict::Unhealthy(format!(
            "answered HTTP {status}; a healthy gateway answers 2xx — check the gateway's log"
        ));
    }
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return Verdict::Unhealthy(
            "answered 2xx but the body is not JSON; is this URL a VeloZ gateway?".to_owned(),
        );
    };
    let wrong_shape = || {
        Verdict::Unhealthy(
            r#"answered 2xx but the body is neither {"ok":true} (python) nor {"status":"ok"} (cpp); is this URL a VeloZ gateway?"#
                .to_owned(),
        )
    };
    let Some(obj) = value.as_object() else {
        return wrong_shape();
    };
    if let Some(ok) = obj.get("ok") {
        return match ok {
            Value::Bool(true) => Verdict::Healthy(Shape::Python),
            Value::Bool(false) => Verdict::Unhealthy(
                r#"python-style body reports {"ok":false}; check the gateway's log and engine"#
                    .to_owned(),
            ),
            _ => wrong_shape(),
        };
    }
    match obj.get("status") {
        Some(Value::String(s)) if s == "ok" || s == "healthy" => {
            Verdict::Healthy(Shape::Cpp(s.clone()))
        }
        Some(Value::String(s)) => Verdict::Unhealthy(format!(
            r#"cpp-style body reports {{"status":"{s}"}}; check the gateway's log and engine"#
        )),
        _ => wrong_shape(),
    }
}

/// What came back over the wire.
#[derive(Debug)]
pub enum Probe {
    Answer {
        status: u16,
        body: Bytes,
    },
    /// No usable answer; the reason carries its fix hint.
    Failed(String),
}

/// GETs `uri` once, giving up after `timeout` (connect, headers and body together).
pub async fn probe(uri: &Uri, timeout: Duration) -> Probe {
    let mut connector = HttpConnector::new();
    // One small request: Nagle would only add delay.
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(timeout));
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(connector);
    let request = match hyper::Request::get(uri.clone())
        .header(
            hyper::header::USER_AGENT,
            concat!("shadowgate/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::new())
    {
        Ok(r) => r,
        Err(e) => return Probe::Failed(format!("could not build the request: {e}")),
    };
    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| describe_client_error(uri, &e))?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| format!("the answer's body could not be read: {e}"))?
            .to_bytes();
        Ok::<_, String>(Probe::Answer { status, body })
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(reason)) => Probe::Failed(reason),
        Err(_) => Probe::Failed(timeout_reason(timeout)),
    }
}

fn timeout_reason(timeout: Duration) -> String {
    format!(
        "no answer within {}; the gateway may be hung or overloaded — check it, or raise --timeout",
        humantime::format_duration(timeout)
    )
}

fn describe_client_error(uri: &Uri, err: &hyper_util::client::legacy::Error) -> String {
    let addr = uri.authority().map(|a| a.as_str()).unwrap_or("?");
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    return format!(
                        "connection refused; is the gateway running and listening on {addr}?"
                    );
                }
                std::io::ErrorKind::TimedOut => {
                    return format!("connecting to {addr} timed out; check the host and firewall");
                }
                _ => {}
            }
        }
        source = e.source();
    }
    format!(
        "request failed: {}; check the URL and that a gateway listens on {addr}",
        chain(err)
    )
}

fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    // Bounded: error chains are short, but nothing stops a cycle-free chain from being long.
    for _ in 0..8 {
        let Some(e) = source else { break };
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}

/// Runs the command. Bad input is an `Err` (exit 2); unhealthy is `Ok(1)`.
pub async fn run(args: HealthArgs) -> anyhow::Result<ExitCode> {
    let uri = health_uri(&args.url)?;
    if args.timeout.is_zero() {
        bail!("--timeout must be more than 0, e.g. 5s");
    }
    let probe = probe(&uri, args.timeout).await;
    let (status, body, verdict) = match probe {
        Probe::Answer { status, body } => {
            let verdict = classify(status, &body);
            (Some(status), Some(body), verdict)
        }
        Probe::Failed(reason) => (None, None, Verdict::Unhealthy(reason)),
    };
    if args.json {
        let body_json = body
            .as_ref()
            .map(|b| serde_json::from_slice::<Value>(b).unwrap_or_else(|_| Value::String(echo(b))));
        let (healthy, shape, reason) = match &verdict {
            Verdict::Healthy(shape) => (true, Some(shape.name()), None),
            Verdict::Unhealthy(reason) => (false, None, Some(reason.as_str())),
        };
        let out = json!({
            "url": uri.to_string(),
            "healthy": healthy,
            "status": status,
            "shape": shape,
            "reason": reason,
            "body": body_json,
        });
        println!("{out}");
    } else {
        match &verdict {
            Verdict::Healthy(shape) => println!(
                "healthy: {uri} answered {} with {}",
                status.unwrap_or_default(),
                shape.describe()
            ),
            Verdict::Unhealthy(reason) => println!("unhealthy: {uri}: {reason}"),
        }
        if let Some(b) = &body
            && !b.is_empty()
        {
            println!("{}", echo(b));
        }
    }
    Ok(match verdict {
        Verdict::Healthy(_) => ExitCode::SUCCESS,
        Verdict::Unhealthy(_) => ExitCode::from(1),
    })
}

/// The body as text, cut at [`ECHO_BODY`] bytes, on one line.
fn echo(body: &[u8]) -> String {
    let cut = &body[..body.len().min(ECHO_BODY)];
    let mut text = String::from_utf8_lossy(cut).replace(['\n', '\r'], " ");
    if body.len() > ECHO_BODY {
        text.push_str(" …");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(s: &str) -> String {
        health_uri(s).unwrap().to_string()
    }

    #[test]
    fn health_uri_adds_scheme_and_suffix_once() {
        assert_eq!(uri("http://127.0.0.1:8080"), "http://127.0.0.1:8080/health");
        assert_eq!(
            uri("http://127.0.0.1:8080/"),
            "http://127.0.0.1:8080/health"
        );
        assert_eq!(
            uri("http://127.0.0.1:8080/health"),
            "http://127.0.0.1:8080/health"
        );
        assert_eq!(
            uri("http://127.0.0.1:8080/health/"),
            "http://127.0.0.1:8080/health"
        );
        assert_eq!(uri("127.0.0.1:8081"), "http://127.0.0.1:8081/health");
        assert_eq!(uri("HTTP://localhost"), "http://localhost/health");
        assert_eq!(uri(" http://[::1]:9/gw "), "http://[::1]:9/gw/health");
        assert_eq!(uri("http://h:1/health?x=1"), "http://h:1/health?x=1");
    }

    #[test]
    fn health_uri_rejects_https_and_nonsense() {
        let https = health_uri("https://gw.example:443")
            .unwrap_err()
            .to_string();
        assert!(https.contains("https is not supported"), "{https}");
        for bad in [
            "",
            "   ",
            "ftp://h:1",
            "http://",
            "http://:80",
            "http://a b",
            "http://u:p@h:1",
        ] {
            assert!(health_uri(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn both_gateway_shapes_are_healthy() {
        assert_eq!(
            classify(200, br#"{"ok": true}"#),
            Verdict::Healthy(Shape::Python)
        );
        assert_eq!(
            classify(
                200,
                br#"{"status":"ok","timestamp":"2026-01-01T00:00:00Z"}"#
            ),
            Verdict::Healthy(Shape::Cpp("ok".into()))
        );
        assert_eq!(
            classify(204, br#"{"status":"healthy"}"#),
            Verdict::Healthy(Shape::Cpp("healthy".into()))
        );
        assert_eq!(Shape::Python.describe(), r#"python-style {"ok":true}"#);
        assert_eq!(
            Shape::Cpp("ok".into()).describe(),
            r#"cpp-style {"status":"ok"}"#
        );
    }

    #[test]
    fn unhealthy_answers_say_why() {
        let cases: [(u16, &[u8], &str); 7] = [
            (500, br#"{"ok": true}"#, "HTTP 500"),
            (404, b"<html>", "HTTP 404"),
            (200, b"<html>", "not JSON"),
            (200, br#"{"ok": false}"#, r#"{"ok":false}"#),
            (200, br#"{"status":"degraded"}"#, r#"{"status":"degraded"}"#),
            (200, br#"{"hello":1}"#, "neither"),
            (200, br#"[true]"#, "neither"),
        ];
        for (status, body, needle) in cases {
            match classify(status, body) {
                Verdict::Unhealthy(reason) => assert!(reason.contains(needle), "{reason}"),
                v => panic!("{status} {body:?} judged {v:?}"),
            }
        }
        assert!(matches!(
            classify(200, br#"{"ok":"yes"}"#),
            Verdict::Unhealthy(_)
        ));
        assert!(matches!(
            classify(200, br#"{"status":1}"#),
            Verdict::Unhealthy(_)
        ));
    }

    #[test]
    fn echo_keeps_one_line_and_cuts_long_bodies() {
        assert_eq!(echo(b"{\n\"a\": 1\n}"), "{ \"a\": 1 }");
        let long = vec![b'x'; ECHO_BODY + 10];
        assert!(echo(&long).ends_with(" …"));
        assert_eq!(
            timeout_reason(Duration::from_secs(5))
                .split(';')
                .next()
                .unwrap(),
            "no answer within 5s"
        );
    }

    #[tokio::test]
    async fn probe_reports_a_closed_port_as_refused() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let uri = health_uri(&addr.to_string()).unwrap();
        match probe(&uri, Duration::from_secs(5)).await {
            Probe::Failed(reason) => assert!(reason.contains("connection refused"), "{reason}"),
            p => panic!("{p:?}"),
        }
    }

    #[tokio::test]
    async fn probe_times_out_on_a_silent_server() {
        // Accepts the connection (kernel backlog) but never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri = health_uri(&listener.local_addr().unwrap().to_string()).unwrap();
        match probe(&uri, Duration::from_millis(200)).await {
            Probe::Failed(reason) => assert!(reason.contains("no answer within 200ms"), "{reason}"),
            p => panic!("{p:?}"),
        }
        drop(listener);
    }
}
