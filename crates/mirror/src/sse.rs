//! Event streams (`text/event-stream`): compared without touching what the client gets.
//!
//! # Design decisions
//!
//! **The client's stream is untouched.** It passes through [`crate::tee::TeeBody`] frame by
//! frame, unbuffered, exactly as for any other answer. The only addition is a [`Tap`]: each
//! frame's `Bytes` (a reference-count increment) goes over a channel to the stream thread. The
//! tap never blocks: past a byte budget of queued chunks it switches itself off for that
//! client (counted as a tap overflow) rather than queue without bound.
//!
//! **One candidate subscription per stream route**, shared by every client: the first client
//! on a route starts it (with that client's path, query — less `last_id`, whose ids are the
//! primary's — and headers, less `Last-Event-ID`), and it is kept while any client is
//! subscribed and for the rule's `linger` after the last one left. N clients never open N
//! candidate streams.
//!
//! **The primary side is the union of the client streams, deduplicated by event id.** Every
//! client of one gateway sees the same events; the comparison takes each event once, on its
//! first arrival. An event whose numeric id is not above the highest seen is a copy or a
//! replay, and is skipped; events without an id are taken from the oldest client stream only.
//!
//! **History is not compared.** Both gateways may replay history when a stream opens (Python
//! always does). Events arriving within the rule's `settle` time after a side's feed started
//! (its first client, or each candidate (re)connection) are not reportable: they may pair with
//! the other side's events but are never judged (see [`shadowgate_diff::stream`]).
//!
//! **A stalled or dropped candidate stream is a gap, never silence.** The subscription task
//! reads with a stall timeout (no byte at all — keep-alives included — for the rule's `stall`
//! time), reconnects with exponential backoff (`reconnect_min` doubling to `reconnect_max`),
//! and the hub writes one `not-compared` line of class `regression` per gap with its duration,
//! the reconnect attempts and the primary events that passed meanwhile; those events are
//! counted (`events_in_gaps`) instead of being reported one by one as missing. The gap counters
//! are in `/summary` and the manifest.
//!
//! **Lag** (candidate arrival minus primary arrival of each judged pair) is recorded as the
//! series `candidate:GET:<route>;lag` in `latency.hlog`. A histogram holds no negative values:
//! a candidate event that came first is recorded as 0 and counted (`candidate_first`).
//!
//! **Threading.** One thread with a single-threaded runtime owns every stream's state: parsers,
//! matchers, the candidate subscription tasks. Nothing is shared with the proxy workers but the
//! channel and a summary snapshot refreshed every 100 ms.
//!
//! **Hooks.** [`OrderEventSink`] receives every order event of either side (for order-flow
//! comparison); [`CandidateIds`] maps a candidate's `client_order_id` to the primary's before
//! matching (for id correlation). When the rules track order flows, the server wires them to
//! the flow tracker and its id map; otherwise they do nothing.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shadowgate_diff::stream::{
    Finding, Side, SseFrame, SseParser, StreamCounts, StreamMatcher, StreamRule, stream_signature,
};
use shadowgate_diff::{Difference, RuleSet};
use shadowgate_record::hdrhistogram::Histogram;
use shadowgate_record::{
    Class, Discrepancy, DiscrepancyKind, DiscrepancyWriter, LatencyRecorder, LocalRecorder,
    Measure, SeriesId, SeriesKey,
};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::Upstream;
use crate::headers::strip_hop_by_hop;
use crate::stats::lock;

/// Queued tap bytes (all clients together) beyond which a tap switches itself off.
const TAP_BUDGET: usize = 16 << 20;
/// How often matchers expire, stalls and lingers are checked and the summary refreshed.
const TICK: Duration = Duration::from_millis(100);

/// Receives order events from both sides' streams (for order-flow comparison).
pub trait OrderEventSink: Send + Sync + std::fmt::Debug {
    /// One event: which side, its event name, its data (parsed JSON, or a JSON string).
    fn order_event(&self, side: Side, name: &str, data: &Value) {
        let _ = (side, name, data);
    }
}

/// The default sink: ignores every event.
#[derive(Debug, Default)]
pub struct NoOrderEvents;

impl OrderEventSink for NoOrderEvents {}

/// Maps the candidate's order ids to the primary's before events are matched.
pub trait CandidateIds: Send + Sync + std::fmt::Debug {
    /// The primary's id for a candidate id, if known.
    fn to_primary(&self, candidate_id: &str) -> Option<String> {
        let _ = candidate_id;
        None
    }
}

/// The default: ids are the same on both sides.
#[derive(Debug, Default)]
pub struct SameIds;

impl CandidateIds for SameIds {}

/// One stream route's comparison so far (in `/summary` and the manifest).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamSummary {
    /// Route template.
    pub route: String,
    /// Client streams open now.
    pub clients: u64,
    /// Client streams opened.
    pub clients_total: u64,
    /// Candidate stream connections that were answered with an event stream.
    pub candidate_subscriptions: u64,
    /// Whether the candidate stream is up now.
    pub candidate_connected: bool,
    /// Connection attempts after a failure or drop.
    pub reconnects: u64,
    /// Gaps in the candidate stream (drops, stalls, failed first connections).
    pub gaps: u64,
    /// Their total duration.
    pub gap_ms: u64,
    /// Primary events that passed while the candidate stream was down.
    pub events_in_gaps: u64,
    /// Matching counters.
    pub counts: StreamCounts,
    /// Judged pairs whose candidate event came first (recorded as lag 0).
    pub candidate_first: u64,
    /// Lag of judged pairs, P50, in microseconds.
    pub lag_p50_us: Option<u64>,
    /// Lag of judged pairs, P99, in microseconds.
    pub lag_p99_us: Option<u64>,
    /// Clients whose tap switched off (the stream thread fell behind).
    pub tap_overflows: u64,
    /// Lines written to `discrepancies.ndjson`.
    pub lines: u64,
    /// Of those, class `regression` (gaps included).
    #[serde(default)]
    pub regression_lines: u64,
    /// Of those, class `noise`.
    #[serde(default)]
    pub noise_lines: u64,
}

/// What the stream thread needs.
pub(crate) struct SseSetup {
    pub rules: Arc<RuleSet>,
    pub candidate: Upstream,
    pub connect_timeout: Duration,
    pub writer: DiscrepancyWriter,
    pub recorder: LatencyRecorder,
    pub orders: Arc<dyn OrderEventSink>,
    pub ids: Arc<dyn CandidateIds>,
    /// `/metrics`: stream lines count in the discrepancy counters like any other.
    pub metrics: Arc<crate::stats::Metrics>,
}

enum Msg {
    Open {
        stream: u64,
        route: Arc<str>,
        path: String,
        headers: HeaderMap,
        at: Instant,
    },
    Chunk {
        stream: u64,
        at: Instant,
        bytes: Bytes,
    },
    Overflow {
        stream: u64,
    },
    Close {
        stream: u64,
        at: Instant,
    },
    Cand {
        route: Arc<str>,
        generation: u64,
        event: CandEvent,
    },
    Stop(std::sync::mpsc::Sender<()>),
}

enum CandEvent {
    Up(Instant),
    Chunk(Instant, Bytes),
    Down(Instant, String),
}

/// The stream comparison: a handle to its thread.
#[derive(Debug)]
pub(crate) struct SseHub {
    tx: mpsc::UnboundedSender<Msg>,
    next: AtomicU64,
    queued: Arc<AtomicUsize>,
    snapshot: Arc<Mutex<Vec<StreamSummary>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Msg")
    }
}

impl SseHub {
    /// Starts the stream thread.
    pub(crate) fn start(setup: SseSetup) -> std::io::Result<SseHub> {
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let snapshot = Arc::new(Mutex::new(Vec::new()));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let hub = Hub {
            local: setup.recorder.local(),
            setup,
            tx: tx.clone(),
            queued: Arc::clone(&queued),
            snapshot: Arc::clone(&snapshot),
            routes: BTreeMap::new(),
            streams: HashMap::new(),
            frames: Vec::new(),
            findings: Vec::new(),
            origin: Instant::now(),
        };
        let thread = std::thread::Builder::new()
            .name("shadowgate-sse".into())
            .spawn(move || runtime.block_on(hub.run(rx)))?;
        Ok(SseHub {
            tx,
            next: AtomicU64::new(1),
            queued,
            snapshot,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// A client subscribed to `route`: returns the tap its body passes through.
    pub(crate) fn open(&self, route: Arc<str>, path: String, headers: HeaderMap) -> Tap {
        let stream = self.next.fetch_add(1, Ordering::Relaxed);
        let _ = self.tx.send(Msg::Open {
            stream,
            route,
            path,
            headers,
            at: Instant::now(),
        });
        Tap {
            stream,
            tx: self.tx.clone(),
            queued: Arc::clone(&self.queued),
            off: false,
        }
    }

    /// Every stream route so far.
    pub(crate) fn summary(&self) -> Vec<StreamSummary> {
        lock(&self.snapshot).clone()
    }

    /// Reports what is left, closes the candidate streams, and ends the thread (blocking).
    pub(crate) fn stop(&self) {
        let (tx, rx) = std::sync::mpsc::channel();
        if self.tx.send(Msg::Stop(tx)).is_ok() {
            let _ = rx.recv_timeout(Duration::from_secs(10));
        }
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
    }
}

impl Drop for SseHub {
    fn drop(&mut self) {
        // A mirror dropped without `shutdown`: end the thread and its candidate streams anyway
        // (after `stop` the channel is closed and this does nothing).
        let (tx, _rx) = std::sync::mpsc::channel();
        let _ = self.tx.send(Msg::Stop(tx));
    }
}

/// A client stream's copy to the comparison. Dropping it tells the hub the client left.
#[derive(Debug)]
pub(crate) struct Tap {
    stream: u64,
    tx: mpsc::UnboundedSender<Msg>,
    queued: Arc<AtomicUsize>,
    off: bool,
}

impl Tap {
    /// Copies one frame of the client's stream (never blocks).
    pub(crate) fn chunk(&mut self, bytes: &Bytes) {
        if self.off {
            return;
        }
        let n = bytes.len();
        let before = self.queued.fetch_add(n, Ordering::AcqRel);
        if before + n > TAP_BUDGET {
            self.queued.fetch_sub(n, Ordering::AcqRel);
            self.off = true;
            let _ = self.tx.send(Msg::Overflow {
                stream: self.stream,
            });
            return;
        }
        if self
            .tx
            .send(Msg::Chunk {
                stream: self.stream,
                at: Instant::now(),
                bytes: bytes.clone(),
            })
            .is_err()
        {
            self.queued.fetch_sub(n, Ordering::AcqRel);
            self.off = true;
        }
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        let _ = self.tx.send(Msg::Close {
            stream: self.stream,
            at: Instant::now(),
        });
    }
}

/// The thread's state.
struct Hub {
    setup: SseSetup,
    tx: mpsc::UnboundedSender<Msg>,
    queued: Arc<AtomicUsize>,
    snapshot: Arc<Mutex<Vec<StreamSummary>>>,
    routes: BTreeMap<Arc<str>, RouteState>,
    /// Client stream → its route.
    streams: HashMap<u64, Arc<str>>,
    local: LocalRecorder,
    frames: Vec<SseFrame>,
    findings: Vec<Finding>,
    origin: Instant,
}

struct Client {
    parser: SseParser,
    tapped: bool,
}

struct Candidate {
    generation: u64,
    task: Option<JoinHandle<()>>,
    parser: SseParser,
    up_since: Option<Instant>,
    last_byte: Option<Instant>,
    /// Start of the current gap (down, or never up yet).
    down_since: Option<Instant>,
    down_reason: String,
    attempts: u64,
    max_id: Option<u64>,
}

struct RouteState {
    route: Arc<str>,
    matcher: StreamMatcher,
    lag: Option<SeriesId>,
    lag_hist: Option<Histogram<u64>>,
    clients: BTreeMap<u64, Client>,
    primary_since: Option<Instant>,
    max_id: Option<u64>,
    idle_since: Option<Instant>,
    cand: Candidate,
    sum: StreamSummary,
    events_in_gap: u64,
}

impl Hub {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Bounded by the mirror's life: ends on Stop or when every sender is gone.
        loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    None => {
                        self.finish();
                        return;
                    }
                    Some(Msg::Stop(done)) => {
                        self.finish();
                        let _ = done.send(());
                        return;
                    }
                    Some(m) => self.handle(m),
                },
                _ = tick.tick() => self.tick(Instant::now()),
            }
        }
    }

    fn at(&self, t: Instant) -> Duration {
        t.saturating_duration_since(self.origin)
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Open {
                stream,
                route,
                path,
                headers,
                at,
            } => self.open(stream, route, &path, headers, at),
            Msg::Chunk { stream, at, bytes } => {
                self.queued.fetch_sub(bytes.len(), Ordering::AcqRel);
                self.primary_chunk(stream, at, &bytes);
            }
            Msg::Overflow { stream } => {
                if let Some(r) = self.streams.get(&stream).cloned()
                    && let Some(st) = self.routes.get_mut(&r)
                {
                    st.sum.tap_overflows += 1;
                    if let Some(c) = st.clients.get_mut(&stream) {
                        c.tapped = false;
                    }
                }
            }
            Msg::Close { stream, at } => self.close(stream, at),
            Msg::Cand {
                route,
                generation,
                event,
            } => self.candidate(&route, generation, event),
            Msg::Stop(done) => {
                let _ = done.send(());
            }
        }
    }

    fn open(&mut self, stream: u64, route: Arc<str>, path: &str, headers: HeaderMap, at: Instant) {
        let rules = Arc::clone(&self.setup.rules);
        let st = self.routes.entry(Arc::clone(&route)).or_insert_with(|| {
            let rule = rules
                .stream_for(shadowgate_diff::path_only(path))
                .cloned()
                .unwrap_or_else(|| StreamRule::for_route(&route));
            let lag = SeriesKey::new("candidate", "GET", &*route, Measure::Other("lag".into()))
                .ok()
                .and_then(|k| self.setup.recorder.series(k).ok());
            RouteState {
                route: Arc::clone(&route),
                matcher: StreamMatcher::new(rule),
                lag,
                lag_hist: Histogram::new_with_bounds(1, 3_600_000_000_000, 3).ok(),
                clients: BTreeMap::new(),
                primary_since: None,
                max_id: None,
                idle_since: None,
                cand: Candidate {
                    generation: 0,
                    task: None,
                    parser: SseParser::new(),
                    up_since: None,
                    last_byte: None,
                    down_since: None,
                    down_reason: String::new(),
                    attempts: 0,
                    max_id: None,
                },
                sum: StreamSummary {
                    route: route.to_string(),
                    ..StreamSummary::default()
                },
                events_in_gap: 0,
            }
        });
        self.streams.insert(stream, Arc::clone(&route));
        st.clients.insert(
            stream,
            Client {
                parser: SseParser::new(),
                tapped: true,
            },
        );
        st.sum.clients_total += 1;
        st.idle_since = None;
        if st.primary_since.is_none() {
            st.primary_since = Some(at);
            st.max_id = None;
        }
        if st.cand.task.is_none() {
            st.cand.generation += 1;
            st.cand.up_since = None;
            st.cand.down_since = None;
            st.cand.attempts = 0;
            let target = CandTarget::new(&self.setup, path, &headers);
            st.cand.task = Some(tokio::spawn(subscribe(
                target,
                Arc::clone(&route),
                st.cand.generation,
                st.matcher.rule().stall(),
                st.matcher.rule().reconnect(),
                self.tx.clone(),
            )));
        }
    }

    fn close(&mut self, stream: u64, at: Instant) {
        let Some(route) = self.streams.remove(&stream) else {
            return;
        };
        let now = self.at(at);
        let Some(st) = self.routes.get_mut(&route) else {
            return;
        };
        st.clients.remove(&stream);
        if st.clients.is_empty() {
            st.primary_since = None;
            st.idle_since = Some(at);
            // The primary's feed ended: candidate events near the end may have partners that
            // no client will now receive.
            let window = st.matcher.rule().window();
            st.matcher
                .demote(Side::Candidate, now.saturating_sub(window));
        }
    }

    fn primary_chunk(&mut self, stream: u64, at: Instant, bytes: &[u8]) {
        let Some(route) = self.streams.get(&stream).cloned() else {
            return;
        };
        let t = self.at(at);
        let Some(st) = self.routes.get_mut(&route) else {
            return;
        };
        let leader = st.clients.keys().next().copied();
        let Some(client) = st.clients.get_mut(&stream) else {
            return;
        };
        if !client.tapped {
            return;
        }
        self.frames.clear();
        client.parser.feed(bytes, &mut self.frames);
        let settle = st.matcher.rule().settle();
        for frame in self.frames.drain(..) {
            match frame
                .id
                .as_deref()
                .and_then(|i| i.trim().parse::<u64>().ok())
            {
                Some(id) => {
                    if st.max_id.is_some_and(|m| id <= m) {
                        continue;
                    }
                    st.max_id = Some(id);
                }
                None if leader != Some(stream) => continue,
                None => {}
            }
            let reportable = st.primary_since.is_some_and(|p| at >= p + settle)
                && st.cand.up_since.is_some_and(|u| at >= u + settle);
            if st.cand.up_since.is_none() && !st.matcher.rule().ignores(&frame.event) {
                st.events_in_gap += 1;
            }
            emit_order_event(&*self.setup.orders, &st.matcher, Side::Primary, &frame);
            st.matcher
                .push(Side::Primary, t, &frame, reportable, &mut self.findings);
        }
        self.flush_findings(&route);
    }

    fn candidate(&mut self, route: &Arc<str>, generation: u64, event: CandEvent) {
        let Some(st) = self.routes.get_mut(route) else {
            return;
        };
        if generation != st.cand.generation || st.cand.task.is_none() {
            return;
        }
        match event {
            CandEvent::Up(at) => {
                st.cand.up_since = Some(at);
                st.cand.last_byte = Some(at);
                st.cand.parser = SseParser::new();
                st.cand.max_id = None;
                st.sum.candidate_subscriptions += 1;
                if let Some(since) = st.cand.down_since.take() {
                    let gap = at.saturating_duration_since(since);
                    let line = gap_line(st, gap, false);
                    st.sum.lines += 1;
                    self.write(&line);
                }
                // Events while the first connection was being made are no gap.
                if let Some(st) = self.routes.get_mut(route) {
                    st.events_in_gap = 0;
                }
            }
            CandEvent::Down(at, reason) => {
                // The subscription task tries again after its backoff.
                st.sum.reconnects += 1;
                if st.cand.up_since.take().is_some() {
                    // Primary events of the last window may have had partners on the way.
                    let last = st.cand.last_byte.unwrap_or(at);
                    let since = last
                        .saturating_duration_since(self.origin)
                        .saturating_sub(st.matcher.rule().window());
                    st.matcher.demote(Side::Primary, since);
                }
                if st.cand.down_since.is_none() {
                    st.cand.down_since = Some(at);
                    st.events_in_gap = 0;
                    st.cand.attempts = 0;
                }
                st.cand.attempts += 1;
                // Every distinct reason of the gap, in order (bounded).
                if st.cand.down_reason.is_empty() {
                    st.cand.down_reason = reason;
                } else if !st.cand.down_reason.contains(reason.as_str())
                    && st.cand.down_reason.len() < 400
                {
                    st.cand.down_reason.push_str(", then ");
                    st.cand.down_reason.push_str(&reason);
                }
            }
            CandEvent::Chunk(at, bytes) => {
                let t = at.saturating_duration_since(self.origin);
                st.cand.last_byte = Some(at);
                self.frames.clear();
                st.cand.parser.feed(&bytes, &mut self.frames);
                let settle = st.matcher.rule().settle();
                for mut frame in self.frames.drain(..) {
                    if let Some(id) = frame
                        .id
                        .as_deref()
                        .and_then(|i| i.trim().parse::<u64>().ok())
                    {
                        if st.cand.max_id.is_some_and(|m| id <= m) {
                            continue;
                        }
                        st.cand.max_id = Some(id);
                    }
                    // The sink gets the candidate's own ids (it maps them itself).
                    emit_order_event(&*self.setup.orders, &st.matcher, Side::Candidate, &frame);
                    map_ids(&*self.setup.ids, &mut frame);
                    let reportable = st.primary_since.is_some_and(|p| at >= p + settle)
                        && st.cand.up_since.is_some_and(|u| at >= u + settle);
                    st.matcher
                        .push(Side::Candidate, t, &frame, reportable, &mut self.findings);
                }
                let route = Arc::clone(route);
                self.flush_findings(&route);
            }
        }
    }

    fn tick(&mut self, now: Instant) {
        let t = self.at(now);
        let routes: Vec<Arc<str>> = self.routes.keys().cloned().collect();
        for r in routes {
            if let Some(st) = self.routes.get_mut(&r) {
                st.matcher.expire(t, &mut self.findings);
                // Linger over: close the shadow subscription (a later client opens a new one).
                if st
                    .idle_since
                    .is_some_and(|i| now.saturating_duration_since(i) >= st.matcher.rule().linger())
                    && let Some(task) = st.cand.task.take()
                {
                    task.abort();
                    st.idle_since = None;
                    st.cand.up_since = None;
                    st.cand.down_since = None;
                    st.matcher.discard(Side::Primary);
                    st.matcher.discard(Side::Candidate);
                }
            }
            self.flush_findings(&r);
        }
        self.local.flush();
        self.refresh();
    }

    fn finish(&mut self) {
        let now = Instant::now();
        let t = self.at(now);
        let routes: Vec<Arc<str>> = self.routes.keys().cloned().collect();
        for r in routes {
            let mut gap = None;
            if let Some(st) = self.routes.get_mut(&r) {
                st.matcher.expire(t, &mut self.findings);
                // What is younger than the late horizon could still have been paired.
                st.matcher.discard(Side::Primary);
                st.matcher.discard(Side::Candidate);
                if let Some(task) = st.cand.task.take() {
                    task.abort();
                    if let Some(since) = st.cand.down_since.take() {
                        gap = Some(gap_line(st, now.saturating_duration_since(since), true));
                    }
                }
            }
            self.flush_findings(&r);
            if let Some(line) = gap {
                self.write(&line);
                if let Some(st) = self.routes.get_mut(&r) {
                    st.sum.lines += 1;
                }
            }
        }
        self.local.flush();
        let _ = self.setup.writer.flush();
        self.refresh();
    }

    fn refresh(&mut self) {
        let list: Vec<StreamSummary> = self
            .routes
            .values()
            .map(|st| {
                let mut s = st.sum.clone();
                s.clients = st.clients.len() as u64;
                s.candidate_connected = st.cand.up_since.is_some();
                s.counts = st.matcher.counts();
                if let Some(h) = st.lag_hist.as_ref().filter(|h| !h.is_empty()) {
                    s.lag_p50_us = Some(h.value_at_quantile(0.5) / 1000);
                    s.lag_p99_us = Some(h.value_at_quantile(0.99) / 1000);
                }
                s
            })
            .collect();
        *lock(&self.snapshot) = list;
    }

    fn write(&self, d: &Discrepancy) {
        self.setup
            .metrics
            .discrepancies
            .get_or_create(&crate::stats::DiscrepancyLabels {
                method: d.method.clone(),
                route: d.route.clone(),
                kind: d.kind.as_str(),
                class: match d.class {
                    Class::Regression => "regression",
                    Class::Noise => "noise",
                    Class::Ignored => "ignored",
                },
            })
            .inc();
        if let Err(e) = self.setup.writer.write(d) {
            tracing::warn!(error = %e, "a stream discrepancy line could not be written");
        }
    }

    /// Records lag and writes the lines of what the matcher found on `route`.
    fn flush_findings(&mut self, route: &Arc<str>) {
        if self.findings.is_empty() {
            return;
        }
        let findings = std::mem::take(&mut self.findings);
        let mut lines = Vec::new();
        if let Some(st) = self.routes.get_mut(route) {
            for f in &findings {
                if let Finding::Paired { lag_ns, .. } = f {
                    let ns = u64::try_from(*lag_ns).unwrap_or(0);
                    if *lag_ns < 0 {
                        st.sum.candidate_first += 1;
                    }
                    if let Some(id) = st.lag {
                        self.local.record(id, ns);
                    }
                    if let Some(h) = st.lag_hist.as_mut() {
                        let _ = h.record(ns.max(1));
                    }
                }
                finding_lines(route, f, &mut lines);
            }
            st.sum.lines += lines.len() as u64;
            for l in &lines {
                match l.class {
                    Class::Regression => st.sum.regression_lines += 1,
                    Class::Noise => st.sum.noise_lines += 1,
                    Class::Ignored => {}
                }
            }
        }
        for l in &lines {
            self.write(l);
        }
        self.findings = findings;
        self.findings.clear();
    }
}

fn is_order_event(ty: &str, name: &str) -> bool {
    ty == "order"
        || matches!(
            name,
            "order_update" | "order_state" | "fill" | "order-update"
        )
}

fn emit_order_event(sink: &dyn OrderEventSink, m: &StreamMatcher, side: Side, frame: &SseFrame) {
    if is_order_event(m.rule().type_of(side, &frame.event), &frame.event) {
        let data =
            serde_json::from_str(&frame.data).unwrap_or_else(|_| Value::String(frame.data.clone()));
        sink.order_event(side, &frame.event, &data);
    }
}

/// Rewrites the candidate's `client_order_id` through the id hook (only when it maps).
fn map_ids(ids: &dyn CandidateIds, frame: &mut SseFrame) {
    if !frame.data.contains("client_order_id") {
        return;
    }
    let Ok(mut v) = serde_json::from_str::<Value>(&frame.data) else {
        return;
    };
    let Some(slot) = v.get_mut("client_order_id") else {
        return;
    };
    if let Some(mapped) = slot.as_str().and_then(|id| ids.to_primary(id)) {
        *slot = Value::String(mapped);
        frame.data = v.to_string();
    }
}

fn class_of(c: shadowgate_diff::Class) -> Class {
    match c {
        shadowgate_diff::Class::Regression => Class::Regression,
        shadowgate_diff::Class::Noise => Class::Noise,
        shadowgate_diff::Class::Ignored => Class::Ignored,
    }
}

fn line(route: &str, kind: DiscrepancyKind, ty: &str, pattern: &str) -> Discrepancy {
    Discrepancy {
        ts: SystemTime::now(),
        method: "GET".into(),
        route: route.to_owned(),
        flow_id: None,
        kind,
        path: String::new(),
        primary: Value::Null,
        candidate: Value::Null,
        signature: stream_signature(route, ty, pattern, kind.as_str()).to_string(),
        class: Class::Regression,
        label: None,
        detail: None,
    }
}

fn flow_id(ty: &str, key: &str) -> Option<String> {
    Some(if key.is_empty() {
        format!("sse:{ty}")
    } else {
        format!("sse:{ty}:{key}")
    })
}

fn finding_lines(route: &str, f: &Finding, out: &mut Vec<Discrepancy>) {
    match f {
        Finding::Paired {
            ty,
            key,
            lag_ns,
            late,
            names,
            differences,
        } => {
            let lag_ms = *lag_ns as f64 / 1e6;
            if *late {
                let mut d = line(route, DiscrepancyKind::SseLate, ty, "");
                d.flow_id = flow_id(ty, key);
                d.primary = Value::String(names.0.clone());
                d.candidate = Value::String(names.1.clone());
                d.detail = Some(format!(
                    "event {ty} (key {key}) came {lag_ms:.1} ms after the primary's, beyond the window"
                ));
                out.push(d);
            }
            for diff in differences {
                out.push(difference_line(route, ty, key, names, lag_ms, diff));
            }
        }
        Finding::Unpaired {
            side,
            ty,
            key,
            name,
            data,
            ..
        } => {
            let kind = match side {
                Side::Primary => DiscrepancyKind::SseMissing,
                Side::Candidate => DiscrepancyKind::SseExtra,
            };
            // The event's name is the group's "path": a missing fill and a missing order
            // update are different findings.
            let mut d = line(route, kind, ty, name);
            d.path = name.clone();
            d.flow_id = flow_id(ty, key);
            match side {
                Side::Primary => d.primary = data.clone(),
                Side::Candidate => d.candidate = data.clone(),
            }
            d.detail = Some(match side {
                Side::Primary => {
                    format!("primary event {name:?} (type {ty}) never came from the candidate")
                }
                Side::Candidate => {
                    format!("candidate event {name:?} (type {ty}) has no primary counterpart")
                }
            });
            out.push(d);
        }
    }
}

fn difference_line(
    route: &str,
    ty: &str,
    key: &str,
    names: &(String, String),
    lag_ms: f64,
    diff: &Difference,
) -> Discrepancy {
    let mut d = line(route, DiscrepancyKind::SseDifferent, ty, &diff.pattern);
    d.flow_id = flow_id(ty, key);
    d.path = diff.path.clone();
    d.primary = diff.primary.clone();
    d.candidate = diff.candidate.clone();
    d.class = class_of(diff.class);
    d.label = diff.label.map(|l| l.as_str().to_owned());
    d.detail = Some(format!(
        "{} in event {:?} vs {:?} (lag {lag_ms:.1} ms){}",
        diff.kind.as_str(),
        names.0,
        names.1,
        diff.detail
            .as_deref()
            .map(|x| format!("; {x}"))
            .unwrap_or_default()
    ));
    d
}

/// The line for a candidate gap, with its counters added to the summary.
fn gap_line(st: &mut RouteState, gap: Duration, at_end: bool) -> Discrepancy {
    st.sum.gaps += 1;
    st.sum.regression_lines += 1;
    st.sum.gap_ms += u64::try_from(gap.as_millis()).unwrap_or(u64::MAX);
    st.sum.events_in_gaps += st.events_in_gap;
    let mut d = line(&st.route, DiscrepancyKind::NotCompared, "gap", "");
    d.path = String::new();
    d.primary = Value::from(st.events_in_gap);
    d.detail = Some(format!(
        "candidate stream gap of {} ms ({}; {} reconnect attempt(s)); {} primary event(s) in it were not compared{}",
        gap.as_millis(),
        if st.cand.down_reason.is_empty() {
            "never connected"
        } else {
            st.cand.down_reason.as_str()
        },
        st.cand.attempts,
        st.events_in_gap,
        if at_end {
            "; still down at the end of the run"
        } else {
            ""
        }
    ));
    st.events_in_gap = 0;
    st.cand.attempts = 0;
    st.cand.down_reason.clear();
    d
}

/// Order events go to the order-flow tracker, which maps candidate ids itself.
impl OrderEventSink for crate::flows::Flows {
    fn order_event(&self, side: Side, name: &str, data: &Value) {
        let side = match side {
            Side::Primary => crate::flows::Side::Primary,
            Side::Candidate => crate::flows::Side::Candidate,
        };
        self.on_order_event(side, name, data);
    }
}

/// Candidate order ids are matched under the primary's id learned by id correlation.
impl CandidateIds for crate::correlate::Correlator {
    fn to_primary(&self, candidate_id: &str) -> Option<String> {
        self.primary_of(crate::flows::ORDER, candidate_id)
    }
}

/// Where and how the shadow subscription connects.
struct CandTarget {
    host: String,
    port: u16,
    host_header: HeaderValue,
    connect_timeout: Duration,
    path: String,
    headers: HeaderMap,
}

impl CandTarget {
    fn new(setup: &SseSetup, path: &str, client: &HeaderMap) -> CandTarget {
        let mut headers = client.clone();
        strip_hop_by_hop(&mut headers);
        headers.remove(header::HOST);
        headers.remove(HeaderName::from_static("last-event-id"));
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/event-stream"),
        );
        CandTarget {
            host: setup.candidate.host.clone(),
            port: setup.candidate.port,
            host_header: setup.candidate.host_header.clone(),
            connect_timeout: setup.connect_timeout,
            path: without_last_id(path),
            headers,
        }
    }
}

/// The path with any `last_id` query parameter removed (its ids are the primary's).
fn without_last_id(path: &str) -> String {
    let Some((p, q)) = path.split_once('?') else {
        return path.to_owned();
    };
    let kept: Vec<&str> = q
        .split('&')
        .filter(|kv| !kv.is_empty() && kv.split('=').next() != Some("last_id"))
        .collect();
    if kept.is_empty() {
        p.to_owned()
    } else {
        format!("{p}?{}", kept.join("&"))
    }
}

/// Aborts a spawned task when dropped (the connection driver of an aborted subscription).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The shadow subscription: connect, read, and on a drop or stall reconnect with backoff.
/// Bounded by the route's life: the hub aborts it.
async fn subscribe(
    target: CandTarget,
    route: Arc<str>,
    generation: u64,
    stall: Duration,
    (min, max): (Duration, Duration),
    tx: mpsc::UnboundedSender<Msg>,
) {
    let send = |event: CandEvent| {
        let _ = tx.send(Msg::Cand {
            route: Arc::clone(&route),
            generation,
            event,
        });
    };
    let mut delay = min;
    loop {
        let was_up = once(&target, stall, &send).await;
        if was_up {
            delay = min;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(max);
    }
}

/// One connection; `true` when the candidate answered with an event stream.
async fn once(target: &CandTarget, stall: Duration, send: &impl Fn(CandEvent)) -> bool {
    let down = |why: String| send(CandEvent::Down(Instant::now(), why));
    let connect = TcpStream::connect((target.host.as_str(), target.port));
    let stream = match tokio::time::timeout(target.connect_timeout, connect).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            down(format!("connect failed: {e}"));
            return false;
        }
        Err(_) => {
            down("connect timed out".into());
            return false;
        }
    };
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = match http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream)).await {
        Ok(x) => x,
        Err(e) => {
            down(format!("handshake failed: {e}"));
            return false;
        }
    };
    let _driver = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let uri: Uri = match target.path.parse() {
        Ok(u) => u,
        Err(_) => {
            down(format!("invalid path {:?}", target.path));
            return false;
        }
    };
    let mut req = Request::new(Empty::<Bytes>::new());
    *req.uri_mut() = uri;
    *req.headers_mut() = target.headers.clone();
    req.headers_mut()
        .insert(header::HOST, target.host_header.clone());
    let resp = match tokio::time::timeout(stall, sender.send_request(req)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            down(format!("request failed: {e}"));
            return false;
        }
        Err(_) => {
            down(format!("no answer within {} ms", stall.as_millis()));
            return false;
        }
    };
    if !resp.status().is_success() || !crate::headers::is_event_stream(resp.headers()) {
        down(format!(
            "answered {} {}",
            resp.status().as_u16(),
            resp.headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("without a content type")
        ));
        return false;
    }
    send(CandEvent::Up(Instant::now()));
    let mut body = resp.into_body();
    // Bounded by the stream: every turn reads a frame, or ends it.
    loop {
        match tokio::time::timeout(stall, body.frame()).await {
            Err(_) => {
                down(format!("stalled: no byte for {} ms", stall.as_millis()));
                return true;
            }
            Ok(None) => {
                down("ended by the candidate".into());
                return true;
            }
            Ok(Some(Err(e))) => {
                down(format!("broken: {e}"));
                return true;
            }
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    send(CandEvent::Chunk(Instant::now(), data));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_id_is_not_sent_to_the_candidate() {
        assert_eq!(without_last_id("/api/stream"), "/api/stream");
        assert_eq!(without_last_id("/api/stream?last_id=5"), "/api/stream");
        assert_eq!(
            without_last_id("/api/stream?a=1&last_id=5&b=2"),
            "/api/stream?a=1&b=2"
        );
    }

    #[derive(Debug)]
    struct Map;
    impl CandidateIds for Map {
        fn to_primary(&self, id: &str) -> Option<String> {
            (id == "veloz_1").then(|| "web-1".to_owned())
        }
    }

    #[test]
    fn candidate_ids_are_mapped_before_matching() {
        let mut f = SseFrame {
            data: r#"{"client_order_id":"veloz_1","qty":1}"#.into(),
            ..SseFrame::default()
        };
        map_ids(&Map, &mut f);
        assert!(f.data.contains("\"web-1\""), "{}", f.data);
        let mut g = SseFrame {
            data: r#"{"client_order_id":"other"}"#.into(),
            ..SseFrame::default()
        };
        map_ids(&Map, &mut g);
        assert_eq!(g.data, r#"{"client_order_id":"other"}"#);
    }

    #[test]
    fn lines_name_kind_type_and_key() {
        let mut out = Vec::new();
        finding_lines(
            "/api/stream",
            &Finding::Unpaired {
                side: Side::Primary,
                ty: "order".into(),
                key: "\"fill\"|\"a\"".into(),
                name: "fill".into(),
                data: serde_json::json!({"qty": 1}),
                at: Duration::ZERO,
            },
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].kind, DiscrepancyKind::SseMissing);
        assert_eq!(out[0].flow_id.as_deref(), Some("sse:order:\"fill\"|\"a\""));
        assert_eq!(out[0].class, Class::Regression);
        assert_eq!(out[0].signature.len(), 16);
    }
}
