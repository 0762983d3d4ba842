//! The simulator's shared state and the request pipeline.
//!
//! One request goes through, in order:
//! 1. routing by `match` on `(method, path)` in the active route table;
//! 2. counting (`/__sim/stats` itself is answered here, exempt from everything below);
//! 3. injection: stall window, latency, then at most one terminal fault (hang, reset,
//!    garbage, 5xx) — before any application logic, so a faulted request never reaches the
//!    engine;
//! 4. authentication, rate limiting, permissions;
//! 5. the handler;
//! 6. rendering for the profile's aspects, injected field changes, slow body.
//!
//! Nothing on this path holds a lock across an `.await` or logs above `trace`.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use tokio::sync::watch;

use crate::access::Guard;
use crate::audit::{Action, D};
use crate::auth::{ApiKeyStore, CreatedKey, JwtRules};
use crate::body::SimBody;
use crate::config::{Aspects, SimConfig};
use crate::cpp_state::CppState;
use crate::engine::Engine;
use crate::faults::{self, ConnCtl, Plan, Terminal};
use crate::handlers::Req;
use crate::json::{J, JsonStyle};
use crate::metrics::Metrics;
use crate::ratelimit::RateLimiter;
use crate::reply::{Render, Reply, change_value};
use crate::routes::{self, RouteId};
use crate::stats::{FaultCounter, Stats};

/// Request bodies above this are cut off (treated as empty).
const MAX_BODY: usize = 1 << 20;

/// Everything the handlers share.
#[derive(Debug)]
pub(crate) struct App {
    pub cfg: SimConfig,
    pub aspects: Aspects,
    pub json: JsonStyle,
    /// The resolved seed (random when the configuration has none).
    pub seed: u64,
    pub engine: Engine,
    pub stats: Arc<Stats>,
    pub metrics: Metrics,
    /// Whether `/metrics` exists, so recording is worth its atomics.
    pub metrics_on: bool,
    pub plan: Plan,
    pub keys: ApiKeyStore,
    /// Python's default admin key (never revealed over HTTP).
    pub admin_key: Option<CreatedKey>,
    pub limiter: Option<RateLimiter>,
    pub jwt_secret: Vec<u8>,
    pub jwt_rules: JwtRules,
    pub cpp: Arc<CppState>,
    pub shutdown: watch::Receiver<bool>,
    pub started: Instant,
    /// The audit log, when configured.
    pub audit: Option<crate::audit::AuditLog>,
}

impl App {
    /// A monotonic nanosecond count standing in for the C++ `steady_clock` values that leak
    /// into some answers (never epoch time).
    pub(crate) fn steady_ns(&self) -> u64 {
        self.started.elapsed().as_nanos() as u64 + 1_000_000_000
    }

    fn render(&self) -> Render<'_> {
        Render {
            aspects: &self.aspects,
            json: self.json,
        }
    }

    /// Auth, rate limit, permission, body, handler.
    async fn serve(
        self: &Arc<Self>,
        route: RouteId,
        param: Option<&str>,
        parts: &hyper::http::request::Parts,
        body: Incoming,
        peer: SocketAddr,
        seq: u64,
    ) -> (Reply, Option<crate::reply::RateHeaders>) {
        let principal = match self.authenticate(route, &parts.headers) {
            Ok(p) => p,
            Err(reply) => {
                let path = [("path", D::S(parts.uri.path()))];
                self.audit_event(Action::AuthFailed, "-", Some(peer.ip()), &path);
                return (reply, None);
            }
        };
        let rate = match self.rate_check(route, &principal, peer) {
            Ok(r) => r,
            Err(limited) => {
                let path = [("path", D::S(parts.uri.path()))];
                self.audit_event(
                    Action::RateLimited,
                    &principal.user_id,
                    Some(peer.ip()),
                    &path,
                );
                let (reply, headers) = *limited;
                return (reply, Some(headers));
            }
        };
        if self.cfg.auth.enabled
            && self.guard(route) == Guard::Protected
            && let Err(reply) = self.permit(route, &principal)
        {
            return (reply, rate);
        }
        let body = if matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
            Bytes::new()
        } else {
            // A body over the limit or a broken upload reads as empty: the handler then
            // answers as to an empty body, which both gateways reject as bad input.
            match Limited::new(body, MAX_BODY).collect().await {
                Ok(c) => c.to_bytes(),
                Err(_) => Bytes::new(),
            }
        };
        let reply = self.dispatch(Req {
            route,
            param,
            parts,
            body,
            principal: &principal,
            seq,
            peer,
        });
        // Event streams carry no rate-limit headers.
        let rate = if matches!(reply, Reply::Sse { .. }) {
            None
        } else {
            rate
        };
        (reply, rate)
    }
}

/// Serves one request (the hyper service function).
pub(crate) async fn handle(
    app: Arc<App>,
    ctl: Arc<ConnCtl>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<SimBody>, io::Error> {
    let (parts, body) = req.into_parts();
    let resolved = routes::resolve(&parts.method, parts.uri.path(), app.aspects.paths);
    let route = resolved.route;
    if route == RouteId::SimStats {
        return Ok(app.render().response(app.stats_reply(), None, &mut |_| {}));
    }
    let slot = routes::slot(route, routes::method_index(&parts.method));
    app.stats.count_request(slot);
    // Numbered only when something is decided from the number (keeps a contended atomic off
    // the plain path).
    let seq = if app.plan.is_active(slot) || route == RouteId::Stream {
        app.stats.next_seq()
    } else {
        0
    };
    let decision = app.plan.decide(slot, seq);
    // Timed from here so that injected stalls and latency show in /metrics as a real gateway's
    // slowness would: `watch` and the alert checks are tested against these figures.
    let started = app.metrics_on.then(Instant::now);
    let mut latency_deadline = None;

    if let Some(d) = &decision {
        // Waits count from the request's arrival (its kernel receive stamp, module `faults`).
        let now = Instant::now();
        let arrived = ctl.arrival.instant(now).unwrap_or(now);
        let arrived_wall = SystemTime::now() - now.saturating_duration_since(arrived);
        let arrived = tokio::time::Instant::from_std(arrived);
        let precise = app.cfg.latency.spin;
        let mut from = arrived;
        if let Some((stall, every)) = d.stall {
            let w = faults::stall_wait(stall, every, arrived_wall);
            if !w.is_zero() {
                app.stats.add_stall(w.as_nanos() as u64);
                from += w;
                faults::wait_until(from, precise).await;
            }
        }
        if let Some(l) = d.latency {
            app.stats.add_latency(l.as_nanos() as u64);
            // A normal answer is prepared first and leaves at the deadline (so the simulator's
            // own handling is inside the injected latency, as a gateway's would be); a
            // terminal fault happens at the deadline.
            latency_deadline = Some(from + l);
            if d.terminal.is_some() {
                faults::wait_until(from + l, precise).await;
            }
        }
        match d.terminal {
            None => {}
            Some(Terminal::Hang) => {
                app.stats.count_fault(FaultCounter::Hang);
                let mut stop = app.shutdown.clone();
                let _ = stop.wait_for(|s| *s).await;
                return Err(io::Error::other("hung request released at shutdown"));
            }
            Some(Terminal::Reset) => {
                app.stats.count_fault(FaultCounter::Reset);
                ctl.reset();
                return Ok(Response::new(SimBody::empty()));
            }
            Some(Terminal::Garbage { bytes }) => {
                app.stats.count_fault(FaultCounter::Garbage);
                ctl.garbage(faults::garbage_bytes(bytes, d.noise));
                return Ok(Response::new(SimBody::empty()));
            }
            Some(Terminal::Error { status }) => {
                app.stats.count_fault(FaultCounter::Error5xx);
                let reply = app.injected_error(status);
                let resp = app.render().response(reply, None, &mut |_| {});
                // An injected 5xx is an error the gateway answered: count it like one.
                if let Some(t0) = started {
                    app.metrics.request_started();
                    app.metrics
                        .request_finished(resp.status().as_u16(), t0.elapsed());
                }
                return Ok(resp);
            }
        }
    }

    if started.is_some() {
        app.metrics.request_started();
    }
    let (reply, rate) = app
        .serve(route, resolved.param, &parts, body, peer, seq)
        .await;
    let changed: &[usize] = decision.as_ref().map_or(&[], |d| &d.changed);
    let mut change = |body: &mut J| {
        for &i in changed {
            let rule = &app.cfg.divergence.changed_fields[i];
            if let Some(v) = body.pointer_mut(&rule.pointer) {
                change_value(v);
                app.stats.count_changed_field(i);
            }
        }
    };
    let mut resp = app.render().response(reply, rate, &mut change);
    if let Some((delay, chunk)) = decision.as_ref().and_then(|d| d.slow_body)
        && matches!(resp.body(), SimBody::Full(Some(_)))
    {
        app.stats.count_fault(FaultCounter::SlowBody);
        resp = resp.map(|b| b.into_slow(delay, chunk));
    }
    if let Some(deadline) = latency_deadline {
        faults::wait_until(deadline, app.cfg.latency.spin).await;
    }
    if let Some(t0) = started {
        app.metrics
            .request_finished(resp.status().as_u16(), t0.elapsed());
    }
    Ok(resp)
}
