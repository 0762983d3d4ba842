//! `shadowgate replay`: send a capture (`shadowgate mirror --capture`) into two gateways
//! again, and diff them exactly as the mirror does.
//!
//! **Design: the replay is a client of an in-process mirror.** The mirror is started on
//! `127.0.0.1:0` with the given primary, candidate, rules and run directory, and the captured
//! requests are sent to it. So id correlation, order flows, event streams and the comparison
//! are the mirror's own code, not a second implementation that could drift; the run
//! directory is a mirror run directory whose manifest says kind `replay` (with the capture
//! file and the replay's counts in `extra.replay`).
//!
//! **Order.** Requests are started in capture order, each at its due time: `recorded`, its
//! captured offset from the start; a rate, `t0 + i/rate`; `max`, at once. At most
//! `--in-flight` are outstanding, and a request of a captured client connection waits for the
//! previous one of that connection to be answered. The default window is 1 for `max` and a
//! rate — strictly one after the other, so a cancel never overtakes its order's submit even
//! when the clients opened a connection per request — and 64 for `recorded`, whose timing
//! already keeps apart what the clients kept apart (a client that waited for an answer sent
//! its next request later).
//!
//! **Secrets.** A capture written without `--capture-secrets` holds redaction tokens instead
//! of credentials. Those headers are not sent (a token is not a credential), and the replay
//! warns, naming the headers: against gateways with authentication on, such requests are
//! answered as unauthenticated ones. Capture with `--capture-secrets` against test gateways
//! (throw-away credentials) to replay authenticated traffic in CI.
//!
//! Records whose body was over the mirror's limit at capture time (`body_omitted`) are
//! skipped and counted: sending them without their body would be a different request.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::header::{HeaderName, HeaderValue};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use shadowgate_mirror::{CapturedRequest, RawMirrorConfig, read_capture};
use shadowgate_record::{Manifest, RunKind};
use tokio::sync::Semaphore;

/// How fast to replay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// At the captured offsets.
    Recorded,
    /// As fast as each connection allows.
    Max,
    /// A global rate (requests per second).
    Rate(f64),
}

fn parse_pace(text: &str) -> Result<Pace, String> {
    match text.trim() {
        "recorded" => Ok(Pace::Recorded),
        "max" => Ok(Pace::Max),
        t => match t.parse::<f64>() {
            Ok(r) if r.is_finite() && r > 0.0 => Ok(Pace::Rate(r)),
            _ => Err(format!(
                "`{text}` is not a pace: give recorded, max or a rate in requests per second (e.g. 200)"
            )),
        },
    }
}

/// Arguments of `shadowgate replay`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
EXAMPLES:
    shadowgate mirror --primary http://127.0.0.1:8080 --candidate http://127.0.0.1:8081 \\
        --rules scenarios/veloz.toml --capture traffic.ndjson --capture-secrets
    shadowgate replay traffic.ndjson --primary http://127.0.0.1:8080 \\
        --candidate http://127.0.0.1:8081 --rules scenarios/veloz.toml --out reports/replay-1
    shadowgate report reports/replay-1

A capture made without --capture-secrets has its credentials redacted: those headers are not
sent, so gateways with authentication on answer them as unauthenticated requests (the replay
warns, naming the headers). Use --capture-secrets for CI captures against test gateways.")]
pub struct ReplayArgs {
    /// The capture file (NDJSON written by `shadowgate mirror --capture`).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// The gateway whose answers are the reference (http://host:port).
    #[arg(long, value_name = "URL")]
    pub primary: String,

    /// The gateway under test (http://host:port).
    #[arg(long, value_name = "URL")]
    pub candidate: String,

    /// Diff and mirroring rules (as for `shadowgate mirror`).
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,

    /// Run directory to write (must not hold a run yet).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// `recorded` (captured timing), `max`, or a rate in requests per second.
    #[arg(long, default_value = "recorded", value_name = "recorded|max|RATE", value_parser = parse_pace)]
    pub pace: Pace,

    /// Requests outstanding at once [default: 1 with --pace max or a rate (strict capture
    /// order), 64 with --pace recorded].
    #[arg(long, value_name = "N")]
    pub in_flight: Option<usize>,

    /// Deadline of one replayed request (the primary's answer through the mirror).
    #[arg(long, default_value = "30s", value_name = "D", value_parser = humantime::parse_duration)]
    pub timeout: Duration,

    /// Deadline of one shadow request (as `shadowgate mirror --shadow-timeout`).
    #[arg(long, default_value = "2s", value_name = "D", value_parser = humantime::parse_duration)]
    pub shadow_timeout: Duration,

    /// Recording interval of the run directory.
    #[arg(long, default_value = "1s", value_name = "D", value_parser = humantime::parse_duration)]
    pub interval: Duration,
}

/// Headers never replayed as captured: hop-by-hop fields and those the client or the mirror
/// sets itself.
const NOT_REPLAYED: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "upgrade",
    "proxy-connection",
    "x-forwarded-for",
];

#[derive(Debug, Default)]
struct Counts {
    sent: AtomicU64,
    errors: AtomicU64,
    s2xx: AtomicU64,
    s3xx: AtomicU64,
    s4xx: AtomicU64,
    s5xx: AtomicU64,
}

/// One request ready to send.
#[derive(Debug)]
struct Prepared {
    index: usize,
    at: Duration,
    method: hyper::Method,
    path: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
}

fn prepare(index: usize, r: &CapturedRequest, line: usize) -> anyhow::Result<Prepared> {
    let method = hyper::Method::from_bytes(r.method.as_bytes())
        .map_err(|_| anyhow::anyhow!("record {line}: `{}` is not an HTTP method", r.method))?;
    if !r.path.starts_with('/') {
        bail!("record {line}: path `{}` does not start with /", r.path);
    }
    let mut headers = Vec::with_capacity(r.headers.len());
    for (name, value) in &r.headers {
        let lower = name.to_ascii_lowercase();
        if NOT_REPLAYED.contains(&lower.as_str()) || r.redacted.contains(&lower) {
            continue;
        }
        let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(lower.as_bytes()),
            HeaderValue::from_str(value),
        ) else {
            bail!("record {line}: header `{name}` cannot be sent");
        };
        headers.push((n, v));
    }
    let body = r
        .body_bytes()
        .map_err(|e| anyhow::anyhow!("record {line}: {e}"))?;
    Ok(Prepared {
        index,
        at: Duration::from_micros(r.t_us),
        method,
        path: r.path.clone(),
        headers,
        body: Bytes::from(body),
    })
}

/// Runs the replay; exit 0 when every request was replayed (answers and differences are in
/// the run directory), 2 on bad input.
pub async fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    // 1. Everything that can be wrong, before anything is started.
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read the capture {}", args.file.display()))?;
    let capture =
        read_capture(&text).map_err(|e| anyhow::anyhow!("{}: {e}", args.file.display()))?;
    for w in &capture.warnings {
        eprintln!("warning: {}: {w}", args.file.display());
    }
    if capture.requests.is_empty() {
        bail!("{}: the capture holds no requests", args.file.display());
    }
    let mut redacted: BTreeMap<String, usize> = BTreeMap::new();
    for r in &capture.requests {
        for h in &r.redacted {
            *redacted.entry(h.clone()).or_default() += 1;
        }
    }
    if !redacted.is_empty() {
        let list: Vec<String> = redacted.iter().map(|(h, n)| format!("{h} ({n})")).collect();
        eprintln!(
            "warning: {}: captured with secrets redacted — these headers are not replayed: {}. \
             Gateways with authentication on will answer those requests as unauthenticated; \
             capture with `shadowgate mirror --capture-secrets` against test gateways to \
             replay authenticated traffic.",
            args.file.display(),
            list.join(", ")
        );
    }
    let mut skipped = 0u64;
    let mut prepared = Vec::with_capacity(capture.requests.len());
    for (i, r) in capture.requests.iter().enumerate() {
        if r.body_omitted {
            skipped += 1;
            continue;
        }
        prepared.push((r.conn, prepare(i, r, i + 1)?));
    }
    if skipped > 0 {
        eprintln!(
            "warning: {skipped} request(s) skipped: their body was over the mirror's body limit \
             when captured, so they were recorded without it"
        );
    }
    let window = args.in_flight.unwrap_or(match args.pace {
        Pace::Recorded => 64,
        Pace::Max | Pace::Rate(_) => 1,
    });
    if window == 0 {
        bail!("--in-flight must be at least 1");
    }
    let (rules, rules_source) = match &args.rules {
        Some(path) => (
            shadowgate_mirror::load_rules(path)?,
            Some(path.display().to_string()),
        ),
        None => (shadowgate_mirror::default_rules(), None),
    };
    let config = RawMirrorConfig {
        primary: args.primary.clone(),
        candidate: args.candidate.clone(),
        out: args.out.clone(),
        rules: Arc::new(rules),
        rules_source,
        shadow_timeout: args.shadow_timeout,
        interval: args.interval,
        tool_version: env!("CARGO_PKG_VERSION").to_owned(),
        ..RawMirrorConfig::default()
    }
    .validate()?;

    // 2. The mirror, in-process, on a loopback port of its own.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot listen on 127.0.0.1:0 for the in-process mirror")?;
    let mirror = shadowgate_mirror::start(config, listener, None).await?;
    let base = format!("http://{}", mirror.local_addr());

    // 3. Send, in capture order (see the module docs).
    let total = prepared.len();
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let counts = Arc::new(Counts::default());
    let permits = Arc::new(Semaphore::new(window));
    // The last request started per captured connection (finished ones are pruned).
    let mut last_of_conn: HashMap<u64, tokio::task::JoinHandle<()>> = HashMap::new();
    let (end_tx, end_rx) = tokio::sync::watch::channel(false);
    let streams = Streams {
        end: end_rx,
        open: Arc::default(),
    };
    let t0 = Instant::now();
    for (conn, p) in prepared {
        let due = match args.pace {
            Pace::Recorded => Some(p.at),
            Pace::Max => None,
            Pace::Rate(r) => Some(Duration::from_secs_f64(p.index as f64 / r)),
        };
        if let Some(due) = due {
            tokio::time::sleep_until((t0 + due).into()).await;
        }
        if let Some(previous) = last_of_conn.remove(&conn) {
            let _ = previous.await;
        }
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            break;
        };
        let (client, counts, base) = (client.clone(), Arc::clone(&counts), base.clone());
        let (timeout, streams) = (args.timeout, streams.clone());
        let task = tokio::spawn(async move {
            send(&client, &base, p, timeout, &counts, &streams).await;
            drop(permit);
        });
        if last_of_conn.len() >= 1024 {
            last_of_conn.retain(|_, t| !t.is_finished());
        }
        last_of_conn.insert(conn, task);
    }
    for (_, t) in last_of_conn {
        let _ = t.await;
    }
    let streams_held = streams.close(end_tx).await;
    let elapsed = t0.elapsed();

    // 4. Stop the mirror (it finishes comparisons and flows), mark the run as a replay.
    let summary = mirror.shutdown().await?;
    let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let replay = serde_json::json!({
        "capture": args.file.display().to_string(),
        "pace": match args.pace {
            Pace::Recorded => "recorded".to_owned(),
            Pace::Max => "max".to_owned(),
            Pace::Rate(r) => format!("{r}/s"),
        },
        "requests": total,
        "sent": c(&counts.sent),
        "errors": c(&counts.errors),
        "skipped_body_omitted": skipped,
        "event_streams": streams_held,
        "redacted_headers_not_sent": redacted,
        "duration_ms": elapsed.as_millis() as u64,
    });
    let mut manifest = Manifest::read(&args.out)?;
    manifest.kind = RunKind::Replay;
    manifest.extra.insert("replay".into(), replay);
    manifest.write(&args.out)?;

    println!(
        "replayed {} of {} request(s) in {:.1} s: {} 2xx, {} 3xx, {} 4xx, {} 5xx, {} errors{}",
        c(&counts.sent),
        total,
        elapsed.as_secs_f64(),
        c(&counts.s2xx),
        c(&counts.s3xx),
        c(&counts.s4xx),
        c(&counts.s5xx),
        c(&counts.errors),
        if skipped > 0 {
            format!(", {skipped} skipped")
        } else {
            String::new()
        }
    );
    println!(
        "shadow: {} compared of {} eligible; comparisons: {} regression, {} noise, {} ignored-only, {} match -> {} (shadowgate report {})",
        summary.shadow.compared,
        summary.shadow.eligible,
        summary.comparisons.regression,
        summary.comparisons.noise,
        summary.comparisons.ignored,
        summary.comparisons.matched,
        args.out.display(),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Event streams opened by the replay: held open (and read) until the last request has been
/// answered, so the events the replayed orders cause flow through the mirror's stream
/// comparison; then closed together.
#[derive(Debug, Clone)]
struct Streams {
    end: tokio::sync::watch::Receiver<bool>,
    open: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Streams {
    fn hold(&self, body: hyper::body::Incoming) {
        let mut end = self.end.clone();
        let task = tokio::spawn(async move {
            let mut body = body;
            loop {
                tokio::select! {
                    _ = end.wait_for(|e| *e) => break,
                    frame = body.frame() => match frame {
                        Some(Ok(_)) => {}
                        _ => break,
                    },
                }
            }
        });
        match self.open.lock() {
            Ok(mut v) => v.push(task),
            Err(p) => p.into_inner().push(task),
        }
    }

    /// Closes every held stream (they end at once) and waits for them, bounded.
    async fn close(self, end: tokio::sync::watch::Sender<bool>) -> usize {
        let _ = end.send(true);
        let tasks = match self.open.lock() {
            Ok(mut v) => std::mem::take(&mut *v),
            Err(p) => std::mem::take(&mut *p.into_inner()),
        };
        let n = tasks.len();
        let all = async {
            for t in tasks {
                let _ = t.await;
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), all).await;
        n
    }
}

async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    base: &str,
    p: Prepared,
    timeout: Duration,
    counts: &Counts,
    streams: &Streams,
) {
    let uri = format!("{base}{}", p.path);
    let mut builder = hyper::Request::builder().method(p.method).uri(uri);
    for (n, v) in p.headers {
        builder = builder.header(n, v);
    }
    let Ok(req) = builder.body(Full::new(p.body)) else {
        counts.errors.fetch_add(1, Ordering::Relaxed);
        return;
    };
    counts.sent.fetch_add(1, Ordering::Relaxed);
    let exchange = async {
        let resp = client.request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let stream = resp
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("text/event-stream"));
        if stream {
            streams.hold(resp.into_body());
            return Ok(status);
        }
        // Read the whole answer: the mirror compares once the primary's body has passed.
        resp.into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        Ok::<u16, String>(status)
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(status)) => {
            let slot = match status {
                200..=299 => &counts.s2xx,
                300..=399 => &counts.s3xx,
                400..=499 => &counts.s4xx,
                _ => &counts.s5xx,
            };
            slot.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "replayed request failed");
            counts.errors.fetch_add(1, Ordering::Relaxed);
        }
        Err(_) => {
            counts.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paces() {
        assert_eq!(parse_pace("recorded"), Ok(Pace::Recorded));
        assert_eq!(parse_pace("max"), Ok(Pace::Max));
        assert_eq!(parse_pace("250"), Ok(Pace::Rate(250.0)));
        for bad in ["0", "-1", "fast", "inf"] {
            assert!(parse_pace(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn redacted_and_hop_by_hop_headers_are_not_sent() {
        let r = CapturedRequest {
            seq: 0,
            t_us: 1500,
            method: "POST".into(),
            path: "/api/order".into(),
            headers: vec![
                ("authorization".into(), "[redacted:0123abcd]".into()),
                ("content-type".into(), "application/json".into()),
                ("content-length".into(), "2".into()),
                ("x-forwarded-for".into(), "10.0.0.1".into()),
            ],
            body: "{}".into(),
            body_base64: false,
            body_omitted: false,
            client: None,
            conn: 0,
            redacted: vec!["authorization".into()],
        };
        let p = prepare(0, &r, 1).unwrap();
        let names: Vec<&str> = p.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, vec!["content-type"]);
        assert_eq!(p.at, Duration::from_micros(1500));
        assert_eq!(&p.body[..], b"{}");
        let bad = CapturedRequest {
            method: "NOT A METHOD".into(),
            ..r
        };
        assert!(
            prepare(0, &bad, 7)
                .unwrap_err()
                .to_string()
                .contains("record 7")
        );
    }
}
