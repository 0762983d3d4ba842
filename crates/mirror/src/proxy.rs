//! The client-facing request pipeline. Per request, in order:
//!
//! 1. **route** — find the (method, route template) handles (counters, series, rule);
//! 2. **decide** — write policy and sampling: is this request mirrored? (no I/O);
//! 3. **forward headers** — drop hop-by-hop fields, add `X-Forwarded-For`, set `Host`;
//! 4. **buffer the request body** — only for mirrored requests with a body, up to the limit
//!    (the same bytes go to both upstreams; over the limit the body streams on and the request
//!    is not compared);
//! 5. **primary** — send on this client connection's primary connection; no answer → 502/504
//!    JSON naming the upstream;
//! 6. **answer** — hand the primary's status, headers (hop-by-hop removed) and body to the
//!    client at once; the body passes through a [`TeeBody`] that copies it for the comparison;
//! 7. **complete** — when the body has passed ([`Pending::finish`]): record the primary's
//!    time and outcome, then fire the shadow copy (after the primary has answered: measured
//!    slightly better than firing both at once, and the client's answer never waits for it).

use std::convert::Infallible;
use std::net::IpAddr;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use hyper::body::{Body as _, Incoming};
use shadowgate_diff::RuleSet;
use shadowgate_record::Outcome;

use crate::body::{Buffered, ReqBody, RespBody, buffer_request, concat};
use crate::headers::{add_forwarded_for, is_event_stream, strip_hop_by_hop};
use crate::shadow::{
    Captured, Decision, Shadow, ShadowJob, ShadowRequest, decide, samples_by_body,
};
use crate::stats::{RouteHandles, Routes, ShadowEvent, Shards};
use crate::tee::TeeBody;
use crate::upstream::{Elapsed, PrimaryError, PrimaryLink, Work, within};
use tokio::sync::mpsc;

/// What every request handler shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub rules: Arc<RuleSet>,
    pub routes: Routes,
    pub shards: Arc<Shards>,
    pub shadow: Arc<Shadow>,
    pub primary: Arc<crate::upstream::PrimaryTarget>,
    pub primary_url: String,
    pub primary_host: HeaderValue,
    pub preserve_host: bool,
    pub body_limit: usize,
    pub primary_timeout: Duration,
    /// Request capture (`--capture`), if on.
    pub capture: Option<Arc<crate::capture::Capturer>>,
    /// Event-stream comparison (module `sse`).
    pub sse: Arc<crate::sse::SseHub>,
}

/// One client connection.
#[derive(Debug)]
pub(crate) struct ConnCtx {
    pub shared: Arc<Shared>,
    pub link: PrimaryLink,
    pub client_ip: IpAddr,
    /// The client address as a header value, made once per connection.
    pub client_ip_header: HeaderValue,
    /// Connection sequence number (picks the record shard).
    pub seq: u64,
    /// Requests on this connection so far (mixed with `seq` for sampling).
    pub requests: AtomicU64,
}

/// Serves one request.
pub(crate) async fn handle(
    ctx: Arc<ConnCtx>,
    req: Request<Incoming>,
) -> Result<Response<RespBody>, Infallible> {
    let t0 = Instant::now();
    let shared = Arc::clone(&ctx.shared);
    let n = ctx.requests.fetch_add(1, Ordering::Relaxed);
    let seq = (ctx.seq << 24) ^ n;
    let (mut parts, body) = req.into_parts();

    // 1. route
    let handles = shared.routes.lookup(&parts.method, parts.uri.path());
    let rule = handles.rule.and_then(|i| shared.rules.routes().get(i));

    // 2. decide (a `body:` sampling key needs the body first: read it now, bounded)
    let (body, early) = if samples_by_body(rule) {
        match buffer_request(body, shared.body_limit).await {
            Buffered::Whole(bytes) if bytes.is_empty() => (ReqBody::Full(None), Some(bytes)),
            Buffered::Whole(bytes) => (ReqBody::Full(Some(bytes.clone())), Some(bytes)),
            Buffered::Over(b) => (b, None),
            Buffered::Failed(e) => return Ok(bad_request(&e)),
        }
    } else {
        (ReqBody::Stream(body), None)
    };
    let decision = decide(
        &parts.method,
        &parts.uri,
        &parts.headers,
        early.as_deref(),
        rule,
        ctx.client_ip,
        seq,
    );
    let marked = match decision {
        Decision::WriteSkipped => {
            handles.count(ShadowEvent::WriteSkipped);
            None
        }
        Decision::NotSampled => {
            handles.count(ShadowEvent::NotSampled);
            None
        }
        Decision::Mirror { marked } => {
            handles.count(ShadowEvent::Eligible);
            Some(marked)
        }
    };

    // 3. forward headers
    strip_hop_by_hop(&mut parts.headers);
    add_forwarded_for(&mut parts.headers, &ctx.client_ip_header);
    let client_host = parts.headers.get(header::HOST).cloned();
    if !shared.preserve_host || client_host.is_none() {
        parts
            .headers
            .insert(header::HOST, shared.primary_host.clone());
    }
    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        // Absolute-form (a client configured to use us as a forward proxy): origin-form for
        // the upstream.
        parts.uri = parts
            .uri
            .path_and_query()
            .map_or_else(|| Uri::from_static("/"), |pq| Uri::from(pq.clone()));
    }

    // 4. buffer the request body (mirrored requests only)
    let (body, shadow) = match marked {
        None => (body, None),
        Some(marked) => {
            let read = match (early, body) {
                (Some(bytes), _) => Buffered::Whole(bytes),
                (None, ReqBody::Stream(incoming)) => {
                    buffer_request(incoming, shared.body_limit).await
                }
                // Read for sampling, and over the limit.
                (None, other) => Buffered::Over(other),
            };
            match read {
                Buffered::Whole(bytes) => {
                    let mut headers = parts.headers.clone();
                    headers.remove(header::HOST);
                    let req = ShadowRequest {
                        method: parts.method.clone(),
                        path: parts
                            .uri
                            .path_and_query()
                            .map_or_else(|| "/".to_owned(), |pq| pq.as_str().to_owned()),
                        headers,
                        client_host,
                        body: bytes.clone(),
                        marked,
                    };
                    let body = if bytes.is_empty() {
                        ReqBody::Full(None)
                    } else {
                        ReqBody::Full(Some(bytes))
                    };
                    (body, Some(req))
                }
                Buffered::Over(body) => {
                    over_limit(&shared, &handles, "request");
                    (body, None)
                }
                Buffered::Failed(e) => {
                    handles.count(ShadowEvent::PrimaryFailed);
                    return Ok(bad_request(&e));
                }
            }
        }
    };

    // 4b. capture: handed to a writer thread, never waited for (module `capture`)
    let body = match &shared.capture {
        None => body,
        Some(cap) => {
            let held = shadow.as_ref().map(|s| &s.body);
            let conn = ctx.seq;
            match crate::capture::observe(
                cap,
                &parts,
                body,
                held,
                ctx.client_ip,
                conn,
                shared.body_limit,
            )
            .await
            {
                Ok(b) => b,
                Err(e) => {
                    handles.count(ShadowEvent::PrimaryFailed);
                    return Ok(bad_request(&e));
                }
            }
        }
    };

    // 5. primary
    let req = Request::from_parts(parts, body);
    let send = pin!(ctx.link.send(req));
    let answer = match within(shared.primary_timeout, send).await {
        Ok(r) => r,
        Err(Elapsed) => Err(PrimaryError::Timeout(shared.primary_timeout)),
    };
    let resp = match answer {
        Ok(r) => r,
        Err(e) => {
            let outcome = match e {
                PrimaryError::Connect(_) | PrimaryError::ConnectTimeout(_) => Outcome::ConnectError,
                PrimaryError::Timeout(_) => Outcome::Timeout,
                PrimaryError::Http(_) => Outcome::OtherError,
            };
            handles
                .primary
                .record(&mut shared.shards.get(ctx.seq), outcome, None);
            if shadow.is_some() {
                handles.count(ShadowEvent::PrimaryFailed);
            }
            return Ok(primary_error(&shared.primary_url, &e));
        }
    };

    // 6. answer
    let (mut rparts, rbody) = resp.into_parts();
    strip_hop_by_hop(&mut rparts.headers);
    let sse = is_event_stream(&rparts.headers);
    let mut tap = None;
    let capture = match shadow {
        Some(request) if sse => {
            // The stream passes through untouched; a tap copies its frames to the stream
            // comparison, which holds the one shared candidate subscription (module `sse`).
            handles.count(ShadowEvent::Sse);
            tap = Some(
                shared
                    .sse
                    .open(Arc::clone(&handles.route), request.path, request.headers),
            );
            None
        }
        Some(request) => Some(Box::new(Capture {
            request,
            work: ctx.link.work().clone(),
            headers: rparts.headers.clone(),
            chunks: Vec::new(),
            size: 0,
            // A declared length over the limit: do not even start copying.
            over: rbody.size_hint().lower() > shared.body_limit as u64,
        })),
        None => None,
    };
    let pending = Pending {
        shared,
        handles,
        t0,
        status: rparts.status,
        sse,
        shard: ctx.seq,
        seq,
        capture,
        tap,
    };
    Ok(Response::from_parts(
        rparts,
        RespBody::Tee(TeeBody::new(rbody, pending)),
    ))
}

/// Counts a body over the limit and writes one `not-compared` line per route the first time.
fn over_limit(shared: &Shared, handles: &RouteHandles, which: &str) {
    if handles.shadow_count(ShadowEvent::BodyOverLimit) == 0 {
        shared.shadow.submitter.not_compared(
            handles.method.as_str(),
            &handles.route,
            format!(
                "not compared: {which} body over the {}-byte limit (this is the first on the route; the rest are counted in the manifest and metrics)",
                shared.body_limit
            ),
        );
    }
    handles.count(ShadowEvent::BodyOverLimit);
}

/// How a response body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// Every byte passed.
    Complete,
    /// The primary's body broke off.
    Failed,
    /// Dropped before its end (the client went away).
    Abandoned,
}

/// The copy of a mirrored answer being collected.
#[derive(Debug)]
pub(crate) struct Capture {
    request: ShadowRequest,
    /// The client connection task's work queue, where the shadow exchange will run.
    work: mpsc::UnboundedSender<Work>,
    headers: HeaderMap,
    chunks: Vec<Bytes>,
    size: usize,
    over: bool,
}

/// A request whose answer is passing to the client.
#[derive(Debug)]
pub(crate) struct Pending {
    shared: Arc<Shared>,
    handles: Arc<RouteHandles>,
    t0: Instant,
    status: StatusCode,
    sse: bool,
    shard: u64,
    seq: u64,
    /// Boxed: the answer's body (and so this) is moved several times on its way to the
    /// client, on every request; a mirrored one pays an allocation instead.
    capture: Option<Box<Capture>>,
    /// An event stream's copy to the comparison (dropped with the stream: the client left).
    tap: Option<crate::sse::Tap>,
}

impl Pending {
    /// Keeps a frame for the comparison (a reference, not a copy) while under the limit.
    pub(crate) fn observe(&mut self, data: &Bytes) {
        if let Some(t) = self.tap.as_mut() {
            t.chunk(data);
        }
        let limit = self.shared.body_limit;
        if let Some(c) = self.capture.as_mut()
            && !c.over
        {
            c.size += data.len();
            if c.size > limit {
                c.over = true;
                c.chunks = Vec::new();
            } else {
                c.chunks.push(data.clone());
            }
        }
    }

    /// Records the primary's outcome and fires the shadow copy. Called exactly once.
    pub(crate) fn finish(self, end: End) {
        let Pending {
            shared,
            handles,
            t0,
            status,
            sse,
            shard,
            seq,
            capture,
            tap: _,
        } = self;
        let (outcome, time) = match end {
            // An event stream's "time to full response" is its lifetime: not a latency.
            End::Complete if sse => (Outcome::from_status(status.as_u16()), None),
            End::Complete => (Outcome::from_status(status.as_u16()), Some(t0.elapsed())),
            End::Failed => (Outcome::OtherError, None),
            // The primary did answer; the client left before the end.
            End::Abandoned => (Outcome::from_status(status.as_u16()), None),
        };
        handles
            .primary
            .record(&mut shared.shards.get(shard), outcome, time);
        let Some(c) = capture else { return };
        if end != End::Complete {
            handles.count(ShadowEvent::PrimaryFailed);
            return;
        }
        if c.over {
            over_limit(&shared, &handles, "primary's");
            return;
        }
        let c = *c;
        let chunks = c.chunks;
        shared.shadow.fire(
            ShadowJob {
                primary: Captured {
                    status,
                    headers: c.headers,
                    body: concat(chunks.into_iter()),
                },
                request: c.request,
                handles,
                seq,
            },
            &c.work,
        );
    }
}

/// 400: the client's own body broke off before it could be forwarded.
fn bad_request(e: &hyper::Error) -> Response<RespBody> {
    json_error(
        StatusCode::BAD_REQUEST,
        serde_json::json!({
            "error": "bad_request",
            "reason": format!("the request body could not be read: {e}"),
        }),
    )
}

/// 502 (or 504 for a timeout) with a JSON body naming the upstream.
fn primary_error(url: &str, e: &PrimaryError) -> Response<RespBody> {
    let (status, error) = match e {
        PrimaryError::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "gateway_timeout"),
        _ => (StatusCode::BAD_GATEWAY, "bad_gateway"),
    };
    json_error(
        status,
        serde_json::json!({
            "error": error,
            "upstream": "primary",
            "url": url,
            "reason": e.reason(),
        }),
    )
}

pub(crate) fn json_error(status: StatusCode, body: serde_json::Value) -> Response<RespBody> {
    let mut text = body.to_string();
    text.push('\n');
    let mut resp = Response::new(RespBody::full(text));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primary_errors_name_the_upstream() {
        let r = primary_error(
            "http://127.0.0.1:1",
            &PrimaryError::Connect(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
        );
        assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        let r = primary_error("http://h:1", &PrimaryError::Timeout(Duration::from_secs(1)));
        assert_eq!(r.status(), StatusCode::GATEWAY_TIMEOUT);
    }
}
