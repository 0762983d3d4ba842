//! The shadow side: which requests are mirrored (write policy, sampling), the candidate's
//! circuit breaker, translating a request for the candidate, and the shadow task that sends it
//! and hands both answers to the comparison thread.
//!
//! Nothing here runs on the client's path except [`decide`] (pure, no I/O) and
//! [`Shadow::fire`] (a breaker check, a `try_acquire` and a `spawn`), which runs when the
//! primary's answer is complete.

use std::net::IpAddr;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::Full;
use shadowgate_diff::{RouteRule, SampleKey, WritePolicy};
use shadowgate_record::Outcome;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::analysis::{AnalysisJob, Submitter};
use crate::config::Upstream;
use crate::headers::X_SHADOWGATE_SHADOW;
use crate::stats::{Metrics, RouteHandles, ShadowEvent, Shards};
use crate::upstream::{Driver, Elapsed, ExchangeError, ShadowPool, Work, within};

/// Methods mirrored without an opt-in rule: the safe ones (RFC 9110 §9.2.1) that a gateway
/// serves. Everything else — PUT and DELETE included, which are idempotent but still writes —
/// needs `write_policy = "mirror"` or `"mirror-marked"` on its route.
pub(crate) fn is_safe(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The mirroring decision for one request, made before it goes to the primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Not mirrored: a write without an opt-in rule.
    WriteSkipped,
    /// Not mirrored: left out by sampling.
    NotSampled,
    /// Mirrored; `marked` adds `X-Shadowgate-Shadow: 1`.
    Mirror { marked: bool },
}

/// Whether sampling this route needs the request body (a `body:` key with a percentage
/// below 100): then the body is read before the decision.
pub(crate) fn samples_by_body(rule: Option<&RouteRule>) -> bool {
    rule.is_some_and(|r| {
        matches!(r.sample_key(), Some(SampleKey::Body(_))) && r.sample_percent() < 100.0
    })
}

/// Write policy, then sampling. `body` is the request body when it has been read (needed
/// only for `body:` sampling keys; without it such a key counts as absent).
pub(crate) fn decide(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Option<&[u8]>,
    rule: Option<&RouteRule>,
    client: IpAddr,
    seq: u64,
) -> Decision {
    let marked = if is_safe(method) {
        false
    } else {
        match rule.map(RouteRule::write_policy) {
            Some(WritePolicy::Mirror) => false,
            Some(WritePolicy::MirrorMarked) => true,
            Some(WritePolicy::Skip) | None => return Decision::WriteSkipped,
        }
    };
    let percent = rule.map_or(100.0, RouteRule::sample_percent);
    if percent >= 100.0 {
        return Decision::Mirror { marked };
    }
    if percent <= 0.0 {
        return Decision::NotSampled;
    }
    // A request without the key falls back to per-request sampling.
    let h = rule
        .and_then(|r| key_hash(r, uri, headers, body, client))
        .unwrap_or_else(|| mix(seq ^ 0x5348_4144_4f57_4741));
    // Percent in millionths: 0.0001 % resolution.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let threshold = (percent * 10_000.0) as u64;
    if h % 1_000_000 < threshold {
        Decision::Mirror { marked }
    } else {
        Decision::NotSampled
    }
}

/// Hash of the sampling key's value, so every request of one account/order/client is in or
/// out together.
fn key_hash(
    rule: &RouteRule,
    uri: &Uri,
    headers: &HeaderMap,
    body: Option<&[u8]>,
    client: IpAddr,
) -> Option<u64> {
    match rule.sample_key()? {
        SampleKey::Header(name) => headers.get(name.as_str()).map(|v| fnv(v.as_bytes())),
        SampleKey::Query(name) => uri.query().and_then(|q| {
            q.split('&').find_map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (k == name).then(|| fnv(v.as_bytes()))
            })
        }),
        SampleKey::Capture(name) => rule
            .template()
            .captures(uri.path())?
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| fnv(v.as_bytes())),
        SampleKey::ClientIp => Some(match client {
            IpAddr::V4(a) => fnv(&a.octets()),
            IpAddr::V6(a) => fnv(&a.octets()),
        }),
        SampleKey::Body(field) => body.and_then(|b| body_field_hash(b, field)),
    }
    .map(mix)
}

/// Hash of a request body field: JSON (a field name or a pointer), else form-encoded (a
/// field name). Strings hash their text, so `"web-1"` in a body samples like `web-1` in a
/// query or a path.
fn body_field_hash(body: &[u8], field: &str) -> Option<u64> {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        let found = if field.starts_with('/') {
            v.pointer(field)
        } else {
            v.get(field)
        }?;
        return Some(match found {
            serde_json::Value::String(s) => fnv(s.as_bytes()),
            other => fnv(other.to_string().as_bytes()),
        });
    }
    let text = std::str::from_utf8(body).ok()?;
    text.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == field).then(|| fnv(v.as_bytes()))
    })
}

fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// splitmix64's finalizer: spreads a hash or a counter over all bits.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// What the breaker said about one shadow request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Closed: send.
    Closed,
    /// The pause is over: this request is the one probe.
    Probe,
    /// Open: do not send.
    Open,
}

/// The candidate's circuit breaker: opens after `threshold` consecutive failures (connect
/// errors, timeouts, broken answers — not 5xx, which are answers to compare), lets one probe
/// through after `pause`, closes when the probe succeeds and reopens when it fails.
#[derive(Debug)]
pub(crate) struct Breaker {
    threshold: u32,
    pause_ns: u64,
    epoch: Instant,
    failures: AtomicU32,
    /// 0 = closed; otherwise the time (ns since `epoch`, at least 1) the pause ends.
    open_until: AtomicU64,
    probing: AtomicBool,
    metrics: Arc<Metrics>,
}

impl Breaker {
    pub(crate) fn new(threshold: u32, pause: Duration, metrics: Arc<Metrics>) -> Breaker {
        Breaker {
            threshold: threshold.max(1),
            pause_ns: u64::try_from(pause.as_nanos()).unwrap_or(u64::MAX),
            epoch: Instant::now(),
            failures: AtomicU32::new(0),
            open_until: AtomicU64::new(0),
            probing: AtomicBool::new(false),
            metrics,
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    pub(crate) fn admit(&self) -> Admit {
        let until = self.open_until.load(Ordering::Acquire);
        if until == 0 {
            return Admit::Closed;
        }
        if self.now() < until {
            return Admit::Open;
        }
        if self
            .probing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.metrics.breaker_state.set(2);
            Admit::Probe
        } else {
            Admit::Open
        }
    }

    /// The probe was admitted but not sent (no permit): let another request probe.
    pub(crate) fn cancel(&self, admit: Admit) {
        if admit == Admit::Probe {
            self.probing.store(false, Ordering::Release);
            self.metrics.breaker_state.set(1);
        }
    }

    pub(crate) fn success(&self, admit: Admit) {
        self.failures.store(0, Ordering::Relaxed);
        if admit == Admit::Probe {
            self.open_until.store(0, Ordering::Release);
            self.probing.store(false, Ordering::Release);
            self.metrics.breaker_state.set(0);
        }
    }

    pub(crate) fn failure(&self, admit: Admit) {
        let n = self
            .failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        let reopen = admit == Admit::Probe;
        if reopen || (n >= self.threshold && self.open_until.load(Ordering::Acquire) == 0) {
            let until = self.now().saturating_add(self.pause_ns);
            self.open_until.store(until, Ordering::Release);
            if reopen {
                self.probing.store(false, Ordering::Release);
            }
            self.metrics.breaker_trips.inc();
            self.metrics.breaker_state.set(1);
        }
    }

    /// `closed`, `open` or `probing`.
    pub(crate) fn state(&self) -> &'static str {
        if self.open_until.load(Ordering::Acquire) == 0 {
            "closed"
        } else if self.probing.load(Ordering::Acquire) {
            "probing"
        } else {
            "open"
        }
    }
}

/// The request as the shadow copy needs it, taken before the original goes to the primary.
#[derive(Debug)]
pub(crate) struct ShadowRequest {
    pub method: Method,
    /// Origin-form path and query.
    pub path: String,
    /// Headers as forwarded (hop-by-hop removed, `X-Forwarded-For` added), without `Host`.
    pub headers: HeaderMap,
    /// The client's `Host`, for `--preserve-host`.
    pub client_host: Option<HeaderValue>,
    pub body: Bytes,
    pub marked: bool,
}

/// One complete answer.
#[derive(Debug)]
pub(crate) struct Captured {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Captured {
    pub(crate) fn size(&self) -> usize {
        self.body.len()
    }
}

/// A request whose primary answer is complete, ready for its shadow copy.
#[derive(Debug)]
pub(crate) struct ShadowJob {
    pub handles: Arc<RouteHandles>,
    pub request: ShadowRequest,
    pub primary: Captured,
    pub seq: u64,
}

/// Why a shadow request produced nothing to compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Connect,
    Timeout,
    Broken,
    /// The answer came (with this status) but its body is over the limit.
    OverLimit(StatusCode),
    /// The request could not be translated for the candidate (the rules do not fit the path).
    Untranslatable,
}

/// Everything the shadow side shares.
#[derive(Debug)]
pub(crate) struct Shadow {
    pub candidate: Upstream,
    pub secondary: Option<Upstream>,
    pub candidate_pool: ShadowPool,
    pub secondary_pool: Option<ShadowPool>,
    pub permits: Arc<Semaphore>,
    pub breaker: Breaker,
    pub timeout: Duration,
    pub body_limit: usize,
    pub preserve_host: bool,
    pub rules: Arc<shadowgate_diff::RuleSet>,
    pub metrics: Arc<Metrics>,
    pub shards: Arc<Shards>,
    pub submitter: Submitter,
    /// Order flows and the id map (when the rules track flows or ids).
    pub flows: Option<Arc<crate::flows::Flows>>,
    /// How long a follow-up waits for its order's candidate id.
    pub id_wait: Duration,
}

/// A shadow request in flight: holds its permit and keeps the in-flight gauge right however
/// the future ends (completed, or dropped at a forced shutdown).
struct InFlight {
    _permit: OwnedSemaphorePermit,
    metrics: Arc<Metrics>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.metrics.shadow_in_flight.dec();
    }
}

impl Shadow {
    /// Sends the shadow copy of a request whose primary answer is complete, within budget.
    /// The exchange runs in the client connection's task (`work`), which drives it along
    /// with the connection; if that connection has already gone, on the runtime.
    pub(crate) fn fire(self: &Arc<Self>, job: ShadowJob, work: &mpsc::UnboundedSender<Work>) {
        let admit = self.breaker.admit();
        if admit == Admit::Open {
            job.handles.count(ShadowEvent::BreakerOpen);
            job.handles
                .candidate
                .record_drop(&mut self.shards.get(job.seq));
            self.follow_up_lost(&job, "dropped: the candidate's circuit breaker was open");
            return;
        }
        let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else {
            self.breaker.cancel(admit);
            job.handles.count(ShadowEvent::DroppedBudget);
            job.handles
                .candidate
                .record_drop(&mut self.shards.get(job.seq));
            self.follow_up_lost(&job, "dropped: the shadow budget was full");
            return;
        };
        job.handles.count(ShadowEvent::Sent);
        self.begin_flow(&job);
        self.metrics.shadow_in_flight.inc();
        let guard = InFlight {
            _permit: permit,
            metrics: Arc::clone(&self.metrics),
        };
        let this = Arc::clone(self);
        let shadow: Driver = Box::pin(async move {
            this.run(job, admit).await;
            drop(guard);
        });
        if let Err(mpsc::error::SendError(Work::Shadow(f) | Work::Upstream(f))) =
            work.send(Work::Shadow(shadow))
        {
            tokio::spawn(f);
        }
    }

    /// A submit's copy is going out: its order is registered before the client can follow
    /// up on it (so a follow-up waits for the candidate's answer).
    /// When `job` is a flow's cancel that will not reach the candidate, tells the tracker.
    fn follow_up_lost(&self, job: &ShadowJob, why: &str) {
        let (Some(flows), Some(rule)) = (
            &self.flows,
            job.handles.rule.and_then(|i| self.rules.routes().get(i)),
        ) else {
            return;
        };
        if rule.flow_step() == Some(shadowgate_diff::flow::FlowStep::Cancel) {
            let pids = crate::flows::request_order_ids(rule, &job.request.path, &job.request.body);
            flows.follow_up_lost(&pids, why);
        }
    }

    fn begin_flow(&self, job: &ShadowJob) {
        let (Some(flows), Some(rule)) = (
            &self.flows,
            job.handles.rule.and_then(|i| self.rules.routes().get(i)),
        ) else {
            return;
        };
        if rule.flow_step() == Some(shadowgate_diff::flow::FlowStep::Submit)
            && job.primary.status.is_success()
            && let Some(pid) = crate::flows::answer_id(rule, &job.primary.body, true)
        {
            flows.begin(
                &pid,
                job.primary.status.as_u16(),
                job.handles.method.as_str(),
                &job.handles.route,
                crate::flows::Credentials::of(&job.request.headers),
            );
        }
    }

    async fn run(&self, job: ShadowJob, admit: Admit) {
        let rule = job.handles.rule.and_then(|i| self.rules.routes().get(i));
        let write = !is_safe(&job.request.method);
        // Follow-ups carry the primary's ids: the candidate gets its own (waiting for them).
        let rewritten = match (&self.flows, rule) {
            (Some(f), Some(r)) if r.ids().iter().any(|i| !i.request.is_empty()) => {
                match f
                    .rewrite(r, &job.request, self.id_wait, &job.handles.route)
                    .await
                {
                    Ok(x) => x,
                    Err(()) => {
                        self.breaker.cancel(admit);
                        crate::flows::observe(f, r, &job.request, &job.primary, None, None);
                        job.handles.count(ShadowEvent::Error);
                        return;
                    }
                }
            }
            _ => None,
        };
        let cand_req = rewritten.as_ref().unwrap_or(&job.request);
        // A submit's credentials as sent to the candidate, for its flow's state polls.
        let mut sent = None;
        let candidate = async {
            match candidate_request(rule, cand_req, &self.candidate, self.preserve_host) {
                Some(req) => {
                    sent =
                        crate::flows::submit_credentials(self.flows.as_ref(), rule, req.headers());
                    send(&self.candidate_pool, req, self.timeout, self.body_limit).await
                }
                None => (Err(Failure::Untranslatable), Duration::ZERO),
            }
        };
        // The secondary (a second primary, for learned noise) only gets what is safe to
        // repeat, untranslated.
        let secondary = async {
            match (&self.secondary, &self.secondary_pool) {
                (Some(u), Some(c)) if !write => {
                    let req = build(
                        job.request.method.clone(),
                        &job.request.path,
                        job.request.headers.clone(),
                        host_for(u, &job.request, self.preserve_host),
                        u,
                        job.request.body.clone(),
                    );
                    Some(match req {
                        // Boxed: only with a secondary, and inline it would double the
                        // size of every shadow future (allocated and copied per request).
                        Some(req) => Box::pin(send(c, req, self.timeout, self.body_limit)).await,
                        None => (Err(Failure::Untranslatable), Duration::ZERO),
                    })
                }
                _ => None,
            }
        };
        let ((cand, cand_time), sec) = tokio::join!(candidate, secondary);
        {
            let mut shard = self.shards.get(job.seq);
            record(&job.handles.candidate, &mut shard, &cand, cand_time);
            if let (Some(h), Some((s, t))) = (&job.handles.secondary, &sec) {
                record(h, &mut shard, s, *t);
            }
        }
        match &cand {
            Ok(_) | Err(Failure::OverLimit(_)) => self.breaker.success(admit),
            Err(Failure::Untranslatable) => self.breaker.cancel(admit),
            Err(_) => self.breaker.failure(admit),
        }
        if let (Some(f), Some(r)) = (&self.flows, rule) {
            match &cand {
                // A cancel that failed on the way may or may not have reached the engine:
                // the candidate's side of its flows cannot be judged.
                Err(e) if r.flow_step() == Some(shadowgate_diff::flow::FlowStep::Cancel) => {
                    let why = match e {
                        Failure::Connect => "its copy could not connect",
                        Failure::Timeout => "its copy timed out",
                        Failure::Untranslatable => "its copy could not be translated",
                        Failure::OverLimit(_) | Failure::Broken => "its copy failed",
                    };
                    let pids =
                        crate::flows::request_order_ids(r, &job.request.path, &job.request.body);
                    f.follow_up_lost(&pids, why);
                }
                _ => crate::flows::observe(
                    f,
                    r,
                    &job.request,
                    &job.primary,
                    cand.as_ref().ok(),
                    sent,
                ),
            }
        }
        let candidate = match cand {
            Ok(c) => c,
            Err(f) => {
                job.handles.count(match f {
                    Failure::Connect => ShadowEvent::ConnectError,
                    Failure::Timeout => ShadowEvent::Timeout,
                    Failure::OverLimit(_) => ShadowEvent::BodyOverLimit,
                    Failure::Broken | Failure::Untranslatable => ShadowEvent::Error,
                });
                return;
            }
        };
        let secondary = sec.and_then(|(s, _)| s.ok());
        let ShadowJob {
            handles,
            request,
            primary,
            ..
        } = job;
        self.submitter.submit(AnalysisJob {
            handles,
            method: request.method,
            path: request.path,
            request_body: request.body,
            primary,
            candidate,
            secondary,
        });
    }
}

fn record(
    h: &crate::stats::TargetHandles,
    shard: &mut shadowgate_record::LocalRecorder,
    r: &Result<Captured, Failure>,
    time: Duration,
) {
    match r {
        Ok(c) => h.record(shard, Outcome::from_status(c.status.as_u16()), Some(time)),
        Err(Failure::OverLimit(s)) => {
            h.record(shard, Outcome::from_status(s.as_u16()), Some(time));
        }
        Err(Failure::Connect) => h.record(shard, Outcome::ConnectError, None),
        Err(Failure::Timeout) => h.record(shard, Outcome::Timeout, None),
        Err(Failure::Broken) => h.record(shard, Outcome::OtherError, None),
        // Never sent: not a request.
        Err(Failure::Untranslatable) => {}
    }
}

fn host_for(u: &Upstream, req: &ShadowRequest, preserve_host: bool) -> HeaderValue {
    match (&req.client_host, preserve_host) {
        (Some(h), true) => h.clone(),
        _ => u.host_header.clone(),
    }
}

/// The candidate's request: translated method, path and body where the route rule says so.
fn candidate_request(
    rule: Option<&RouteRule>,
    req: &ShadowRequest,
    u: &Upstream,
    preserve_host: bool,
) -> Option<Request<Full<Bytes>>> {
    let mut headers = req.headers.clone();
    let (method, path) = match rule {
        Some(r) => {
            let (m, p) = r.candidate_request(req.method.as_str(), &req.path).ok()?;
            let method = if m == req.method.as_str() {
                req.method.clone()
            } else {
                Method::from_bytes(m.as_bytes()).ok()?
            };
            let path = match (r.translation().path.is_some(), req.path.split_once('?')) {
                // A rendered path without its own query keeps the client's query.
                (true, Some((_, q))) if !p.contains('?') => format!("{p}?{q}"),
                _ => p,
            };
            (method, path)
        }
        None => (req.method.clone(), req.path.clone()),
    };
    let mut body = req.body.clone();
    if let Some(r) = rule
        && !r.translation().body.is_empty()
        && let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&body)
    {
        r.translation().body.apply(&mut v);
        if let Ok(b) = serde_json::to_vec(&v) {
            body = Bytes::from(b);
            // The length changed; the client sets it from the new body.
            headers.remove(header::CONTENT_LENGTH);
        }
    }
    if req.marked {
        headers.insert(X_SHADOWGATE_SHADOW.clone(), HeaderValue::from_static("1"));
    }
    build(
        method,
        &path,
        headers,
        host_for(u, req, preserve_host),
        u,
        body,
    )
}

fn build(
    method: Method,
    path: &str,
    mut headers: HeaderMap,
    host: HeaderValue,
    u: &Upstream,
    body: Bytes,
) -> Option<Request<Full<Bytes>>> {
    let uri = Uri::builder()
        .scheme("http")
        .authority(u.authority.clone())
        .path_and_query(path)
        .build()
        .ok()?;
    headers.insert(header::HOST, host);
    let mut req = Request::new(Full::new(body));
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.headers_mut() = headers;
    Some(req)
}

/// Sends one shadow request and reads its answer whole (up to the limit), within the deadline.
async fn send(
    pool: &ShadowPool,
    req: Request<Full<Bytes>>,
    deadline: Duration,
    limit: usize,
) -> (Result<Captured, Failure>, Duration) {
    let start = Instant::now();
    let exchange = pin!(pool.exchange(req, limit));
    let r = match within(deadline, exchange).await {
        Err(Elapsed) => Err(Failure::Timeout),
        Ok(Ok((parts, body))) => Ok(Captured {
            status: parts.status,
            headers: parts.headers,
            body,
        }),
        Ok(Err(ExchangeError::Connect)) => Err(Failure::Connect),
        Ok(Err(ExchangeError::Broken)) => Err(Failure::Broken),
        Ok(Err(ExchangeError::OverLimit(s))) => Err(Failure::OverLimit(s)),
    };
    (r, start.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;
    use shadowgate_diff::{RawRoute, RawRuleSet, RuleSet};

    fn rules(routes: Vec<RawRoute>) -> RuleSet {
        RuleSet::validate(RawRuleSet {
            routes,
            ..RawRuleSet::default()
        })
        .unwrap()
    }

    fn uri(s: &str) -> Uri {
        s.parse().unwrap()
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn writes_need_an_opt_in() {
        let h = HeaderMap::new();
        let u = uri("/api/order");
        assert_eq!(
            decide(&Method::GET, &u, &h, None, None, IP, 0),
            Decision::Mirror { marked: false }
        );
        for m in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
            assert_eq!(
                decide(&m, &u, &h, None, None, IP, 0),
                Decision::WriteSkipped
            );
        }
        let mut marked = RawRoute::new("/api/order");
        marked.write_policy = Some("mirror-marked".into());
        let mut plain = RawRoute::new("/api/cancel");
        plain.write_policy = Some("mirror".into());
        let skip = RawRoute::new("/api/keys");
        let r = rules(vec![marked, plain, skip]);
        let rule = |p: &str| r.find_route("POST", p);
        assert_eq!(
            decide(&Method::POST, &u, &h, None, rule("/api/order"), IP, 0),
            Decision::Mirror { marked: true }
        );
        assert_eq!(
            decide(
                &Method::POST,
                &uri("/api/cancel"),
                &h,
                None,
                rule("/api/cancel"),
                IP,
                0
            ),
            Decision::Mirror { marked: false }
        );
        assert_eq!(
            decide(
                &Method::POST,
                &uri("/api/keys"),
                &h,
                None,
                rule("/api/keys"),
                IP,
                0
            ),
            Decision::WriteSkipped
        );
    }

    #[test]
    fn sampling_by_key_keeps_flows_together() {
        let mut route = RawRoute::new("/api/orders/{id}");
        route.sample_percent = Some(30.0);
        route.sample_key = Some("header:x-account".into());
        let r = rules(vec![route]);
        let rule = r.find_route("GET", "/api/orders/1");
        let mut picked = 0;
        for account in 0..1000 {
            let mut h = HeaderMap::new();
            h.insert("x-account", HeaderValue::from(account));
            let first = decide(&Method::GET, &uri("/api/orders/1"), &h, None, rule, IP, 0);
            // Same account, other request: same decision.
            for seq in 1..4 {
                let again = decide(&Method::GET, &uri("/api/orders/2"), &h, None, rule, IP, seq);
                assert_eq!(first, again);
            }
            if first != Decision::NotSampled {
                picked += 1;
            }
        }
        assert!((220..380).contains(&picked), "{picked} of 1000 at 30 %");
    }

    #[test]
    fn sampling_without_key_is_per_request() {
        let mut route = RawRoute::new("/m");
        route.sample_percent = Some(10.0);
        let r = rules(vec![route]);
        let rule = r.find_route("GET", "/m");
        let h = HeaderMap::new();
        let n = (0..10_000)
            .filter(|s| {
                decide(&Method::GET, &uri("/m"), &h, None, rule, IP, *s) != Decision::NotSampled
            })
            .count();
        assert!((800..1200).contains(&n), "{n}");
        let mut zero = RawRoute::new("/z");
        zero.sample_percent = Some(0.0);
        let r = rules(vec![zero]);
        assert_eq!(
            decide(
                &Method::GET,
                &uri("/z"),
                &h,
                None,
                r.find_route("GET", "/z"),
                IP,
                1
            ),
            Decision::NotSampled
        );
    }

    #[test]
    fn query_and_capture_keys() {
        let mut q = RawRoute::new("/q");
        q.sample_percent = Some(50.0);
        q.sample_key = Some("query:acct".into());
        let mut c = RawRoute::new("/c/{id}");
        c.sample_percent = Some(50.0);
        c.sample_key = Some("capture:id".into());
        let r = rules(vec![q, c]);
        let h = HeaderMap::new();
        let d = |p: &str, seq| {
            decide(
                &Method::GET,
                &uri(p),
                &h,
                None,
                r.find_route("GET", p),
                IP,
                seq,
            )
        };
        for i in 0..50 {
            let a = format!("/q?x=1&acct={i}");
            assert_eq!(d(&a, 1), d(&a, 2));
            let b = format!("/c/{i}");
            assert_eq!(d(&b, 1), d(&b, 99));
        }
    }

    #[test]
    fn body_keys_sample_an_order_with_its_queries() {
        let mut place = RawRoute::new("/api/order");
        place.methods = vec!["POST".into()];
        place.write_policy = Some("mirror".into());
        place.sample_percent = Some(50.0);
        place.sample_key = Some("body:client_order_id".into());
        let mut query = RawRoute::new("/api/order_state");
        query.sample_percent = Some(50.0);
        query.sample_key = Some("query:client_order_id".into());
        let r = rules(vec![place, query]);
        let h = HeaderMap::new();
        let place_rule = r.find_route("POST", "/api/order");
        assert!(samples_by_body(place_rule));
        assert!(!samples_by_body(r.find_route("GET", "/api/order_state")));
        let mut picked = 0;
        for i in 0..200 {
            let id = format!("web-{i}");
            let json = format!(r#"{{"client_order_id":"{id}","qty":1}}"#);
            let form = format!("qty=1&client_order_id={id}");
            let q = uri(&format!("/api/order_state?client_order_id={id}"));
            let a = decide(
                &Method::POST,
                &uri("/api/order"),
                &h,
                Some(json.as_bytes()),
                place_rule,
                IP,
                1,
            );
            let b = decide(
                &Method::POST,
                &uri("/api/order"),
                &h,
                Some(form.as_bytes()),
                place_rule,
                IP,
                2,
            );
            let c = decide(
                &Method::GET,
                &q,
                &h,
                None,
                r.find_route("GET", q.path()),
                IP,
                3,
            );
            assert_eq!(a == Decision::NotSampled, b == Decision::NotSampled, "{id}");
            assert_eq!(a == Decision::NotSampled, c == Decision::NotSampled, "{id}");
            if c != Decision::NotSampled {
                picked += 1;
            }
        }
        assert!((60..140).contains(&picked), "{picked}");
    }

    #[test]
    fn breaker_opens_probes_and_closes() {
        let b = Breaker::new(3, Duration::from_millis(20), Arc::new(Metrics::new()));
        for _ in 0..2 {
            assert_eq!(b.admit(), Admit::Closed);
            b.failure(Admit::Closed);
        }
        b.success(Admit::Closed);
        for _ in 0..3 {
            b.failure(Admit::Closed);
        }
        assert_eq!(b.admit(), Admit::Open);
        assert_eq!(b.state(), "open");
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(b.admit(), Admit::Probe);
        // Only one probe at a time.
        assert_eq!(b.admit(), Admit::Open);
        b.failure(Admit::Probe);
        assert_eq!(b.admit(), Admit::Open);
        std::thread::sleep(Duration::from_millis(30));
        let p = b.admit();
        assert_eq!(p, Admit::Probe);
        b.success(p);
        assert_eq!(b.admit(), Admit::Closed);
        assert_eq!(b.state(), "closed");
        assert_eq!(b.metrics.breaker_trips.get(), 2);
    }

    #[test]
    fn translates_method_path_and_body() {
        let mut route = RawRoute::new("/api/cancel");
        route.methods = vec!["POST".into()];
        route.write_policy = Some("mirror-marked".into());
        route.candidate_method = Some("DELETE".into());
        route.candidate_path = Some("/api/orders/x".into());
        route
            .candidate_body
            .rename
            .insert("client_order_id".into(), "id".into());
        let r = rules(vec![route]);
        let rule = r.find_route("POST", "/api/cancel");
        let u = Upstream::parse("candidate", "http://127.0.0.1:9").unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(27));
        let req = ShadowRequest {
            method: Method::POST,
            path: "/api/cancel?v=1".into(),
            headers,
            client_host: Some(HeaderValue::from_static("front:80")),
            body: Bytes::from_static(br#"{"client_order_id":"web-1"}"#),
            marked: true,
        };
        let out = candidate_request(rule, &req, &u, false).unwrap();
        assert_eq!(out.method(), Method::DELETE);
        assert_eq!(out.uri().to_string(), "http://127.0.0.1:9/api/orders/x?v=1");
        assert_eq!(out.headers()[header::HOST], "127.0.0.1:9");
        assert_eq!(out.headers()[&X_SHADOWGATE_SHADOW], "1");
        assert!(out.headers().get(header::CONTENT_LENGTH).is_none());
        let preserved = candidate_request(rule, &req, &u, true).unwrap();
        assert_eq!(preserved.headers()[header::HOST], "front:80");
        let no_rule = candidate_request(None, &req, &u, false).unwrap();
        assert_eq!(no_rule.uri().path(), "/api/cancel");
        assert_eq!(no_rule.headers()[header::CONTENT_LENGTH], "27");
    }
}
