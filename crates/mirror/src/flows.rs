//! Order flows: per order seen through the mirror, the flow on each side is built from the
//! answers (submit, cancel, state), from order events, and from polling the order-state
//! route once the flow has gone quiet; then the two flows are compared whole
//! ([`shadowgate_diff::flow::compare_flows`]) and each difference is written to
//! `discrepancies.ndjson` with the order's `flow_id`.
//!
//! Hook for order events of the event streams (call it for every order event of either
//! side; events of orders not placed through the mirror are ignored):
//!
//! ```text
//! impl Flows {
//!     pub(crate) fn on_order_event(&self, side: Side, event: &str, data: &serde_json::Value);
//! }
//! // reachable as `shared.shadow.flows: Option<Arc<Flows>>`
//! ```
//!
//! `event` is the SSE event name (`order_update`, `order_state`, `fill`, or C++
//! `order-update` whose data carries `type`), `data` the parsed `data:` JSON. The order id is
//! read from `data.client_order_id`; a candidate id is mapped back through the id map.
//!
//! # Design decisions
//! - **A flow starts when its submit's shadow copy is fired** (the primary's answer holds
//!   the id), so events that race ahead of the candidate's answer find it. Events for ids
//!   not known yet are held briefly (bounded) and applied when the flow starts or the
//!   candidate's id is learned.
//! - **Quiet, then poll, then compare.** A flow with no news for `quiet_ms` is polled on both
//!   sides (each with its own id) when `[flows.primary|candidate].poll` is set; it is
//!   compared once both sides are final and quiet, or `timeout_ms` after its submit (the
//!   side not final is reported as `timeout`). One sweeper task does this every few tens of
//!   milliseconds; polls run as tasks bounded by a semaphore.
//! - **Bounded.** At most `max_flows` are tracked; more are counted as `untracked`.
//! - **Polls carry the submitter's credentials.** A gateway with auth on answers a bare
//!   order-state poll 401, so each side's poll sends the `Authorization`, `X-API-Key` and
//!   `Cookie` headers that the order's submit carried *to that side* (the candidate's from
//!   its copy as sent, after translation). They live only in the flow's memory, are marked
//!   sensitive (hyper never logs them; `Debug` shows header names only), are never written
//!   anywhere, and go when the flow is compared or expires. A poll still answered 401/403 is
//!   counted (`poll_unauthorized`) and that side is not polled again; a flow whose side is not
//!   final at the end and whose polls were refused is counted (`poll_unauthorized_flows`) and
//!   reported as not compared (class ignored), never as a regression: the mirror could not
//!   see the order, which says nothing about the candidate.
//! - **Every id of a bulk request.** A request location whose value is a JSON array (C++
//!   `POST /api/cancel {"order_ids":[...]}`, rule `body:/order_ids`) names one order per
//!   element: each is rewritten through the map (all waited for at once, each up to the same
//!   wait) and each order's flow gets the cancel. One id that cannot be mapped keeps the whole
//!   copy from being sent (each such id is reported).
//! - **Cancel-fill races are noise, on evidence.** A cancel reaches the candidate later than
//!   the primary (its copy leaves after the primary answered and after the candidate
//!   answered the submit), so each engine races its fill against the cancel on its own. The
//!   tracker keeps, per side on its own clock, when the submit was answered, when the ack and
//!   the first fill evidence (fill event, FILLED state from an event, answer or poll) were
//!   seen, when the cancel left for the candidate (when `rewrite` hands it over), when each
//!   cancel answer came (the primary's: when its copy was fired) and when a cancel was
//!   refused; `compare_flows` decides. Race flows are written with class `noise` and the
//!   race's label, counted as `noise` and `cancel_fill_races` (never as matched, never in
//!   `by_kind`), grouped apart from regressions.
//! - **Venue ids** are learned from order events and state polls as well as from state
//!   answers: once both sides of a flow have shown a non-empty `venue_order_id`, the pair goes
//!   into the map (kind `venue`).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Uri};
use http_body_util::Full;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shadowgate_diff::RuleSet;
use shadowgate_diff::flow::{
    Flow, FlowDifference, FlowKind, FlowRules, FlowSide, IdLocation, OrderState, compare_flows,
};
use shadowgate_record::{Class as RecClass, Discrepancy, DiscrepancyKind, DiscrepancyWriter};
use tokio::sync::Semaphore;

use crate::config::Upstream;
use crate::correlate::{Correlator, Resolved};
use crate::stats::lock;
use crate::upstream::ShadowPool;

/// Which gateway an observation comes from.
#[allow(dead_code)] // built by the event-stream comparison
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Primary,
    Candidate,
}

/// The id kind order flows are keyed by.
pub(crate) const ORDER: &str = "order";
/// The id kind of venue (exchange) order ids.
const VENUE: &str = "venue";
/// Events held for ids not known yet, at most.
const MAX_ORPHANS: usize = 10_000;
/// How long such events are kept.
const ORPHAN_TTL: Duration = Duration::from_secs(10);
/// Polls in flight at once.
const POLLS: usize = 32;
/// Bytes read of a poll answer.
const POLL_LIMIT: usize = 64 << 10;

/// The credential headers one side's copy of a submit carried, for that side's polls.
/// Memory only: values are marked sensitive and `Debug` shows header names only.
#[derive(Clone, Default)]
pub(crate) struct Credentials(Vec<(HeaderName, HeaderValue)>);

/// Headers that authenticate a request to a gateway (§2: Bearer token, API key; a session
/// cookie for gateways behind a login page).
const CREDENTIAL_HEADERS: [HeaderName; 3] = [
    header::AUTHORIZATION,
    HeaderName::from_static("x-api-key"),
    header::COOKIE,
];

impl Credentials {
    /// The credential headers of a request as it was sent.
    pub(crate) fn of(h: &HeaderMap) -> Credentials {
        let mut out = Vec::new();
        for name in &CREDENTIAL_HEADERS {
            for v in h.get_all(name) {
                let mut v = v.clone();
                v.set_sensitive(true);
                out.push((name.clone(), v));
            }
        }
        Credentials(out)
    }

    fn add_to(&self, h: &mut HeaderMap) {
        for (n, v) in &self.0 {
            h.append(n.clone(), v.clone());
        }
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(n, _)| n.as_str()))
            .finish()
    }
}

/// The candidate copy's credentials when `rule` is a submit of a tracked flow (so its
/// state polls can carry them); nothing otherwise.
pub(crate) fn submit_credentials(
    flows: Option<&Arc<Flows>>,
    rule: Option<&shadowgate_diff::RouteRule>,
    sent: &HeaderMap,
) -> Option<Credentials> {
    (flows.is_some()
        && rule.is_some_and(|r| r.flow_step() == Some(shadowgate_diff::flow::FlowStep::Submit)))
    .then(|| Credentials::of(sent))
}

/// Index of a side in per-side arrays.
fn ix(side: Side) -> usize {
    usize::from(side == Side::Candidate)
}

#[derive(Debug)]
struct Tracked {
    p: Flow,
    c: Flow,
    method: String,
    route: String,
    created: Instant,
    last: Instant,
    polled: Option<Instant>,
    polling: bool,
    /// What each side's submit was authenticated with: [primary, candidate].
    creds: [Credentials; 2],
    /// A side's poll was answered 401/403: not polled again.
    refused: [bool; 2],
    /// A poll gave a side its final state.
    by_poll: bool,
    /// Venue ids seen per side (learned as a pair once both are known).
    venue: [Option<String>; 2],
}

impl Tracked {
    fn side(&mut self, side: Side) -> &mut Flow {
        match side {
            Side::Primary => &mut self.p,
            Side::Candidate => &mut self.c,
        }
    }

    /// Notes a venue id of one side; the pair when this completes it.
    fn venue(&mut self, side: Side, v: Option<String>) -> Option<(String, String)> {
        let v = v?;
        let slot = &mut self.venue[ix(side)];
        if slot.as_deref() == Some(v.as_str()) {
            return None;
        }
        *slot = Some(v);
        match &self.venue {
            [Some(p), Some(c)] => Some((p.clone(), c.clone())),
            _ => None,
        }
    }

    /// Applies an event that arrived `at` to one side; the venue pair it completes, if any.
    fn apply(
        &mut self,
        side: Side,
        event: &str,
        data: &Value,
        at: Instant,
    ) -> (bool, Option<(String, String)>) {
        let t = self.offset(at);
        let changed = self.side(side).apply_event_at(event, data, t);
        (changed, self.venue(side, venue_id(data)))
    }

    /// `at` as an offset from the flow's start (what the flows' times are kept in); zero for
    /// what came before the start (events held for the order).
    fn offset(&self, at: Instant) -> Duration {
        at.saturating_duration_since(self.created)
    }
}

/// Events held for an id not known yet: (when, event name, data).
type Held = Vec<(Instant, String, Value)>;

/// One poll to send: the flow, which sides (not final, not refused), their credentials.
struct PollJob {
    pid: String,
    cid: Option<String>,
    want: (bool, bool),
    creds: [Credentials; 2],
}

/// How a poll of one side ended.
enum Polled {
    /// A state, and the answer's venue id.
    State(OrderState, Option<String>),
    /// 401 or 403.
    Refused,
    /// Not sent, failed, or no state in the answer.
    Nothing,
}

#[derive(Debug, Default)]
struct Table {
    flows: HashMap<String, Tracked>,
    /// (side, id) → events not yet attached, with when they came.
    orphans: HashMap<(bool, String), Held>,
}

/// A group of alike flow differences for `/summary`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowGroup {
    /// Kind (`state-mismatch`, ...).
    pub kind: String,
    /// Differing steps (`ack,final`).
    pub steps: String,
    /// `regression`, or `noise` for differences explained by the mirroring (`label` says how).
    #[serde(default = "regression")]
    pub class: String,
    /// Why a noise group is noise (`cancel-fill race: ...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Flows that showed it.
    pub count: u64,
    /// The first such flow (the primary's order id).
    pub example: String,
}

fn regression() -> String {
    "regression".to_owned()
}

/// Flow and id-map counters for `/summary` and the manifest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FlowSummary {
    /// Flows started (submits mirrored).
    pub tracked: u64,
    /// Flows compared.
    pub compared: u64,
    /// Compared with no difference.
    pub matched: u64,
    /// Compared with at least one regression.
    pub differing: u64,
    /// Compared, and every difference was noise (a cancel-fill race): neither a match nor a
    /// regression; the lines are in `discrepancies.ndjson` with class `noise`.
    #[serde(default)]
    pub noise: u64,
    /// Flows whose outcome differed because the cancel and the fill raced differently on
    /// each side (the evidence of both sides shows it): counted here and as `noise`, and
    /// grouped with class `noise` and the race's label.
    #[serde(default)]
    pub cancel_fill_races: u64,
    /// Not tracked: over `max_flows`.
    pub untracked: u64,
    /// Not compared: the candidate's submit failed or did not answer (reported by the
    /// exchange comparison as a status or counted as a shadow timeout/error).
    pub submit_failed: u64,
    /// Not compared: a follow-up (a cancel) never reached the candidate — its copy was
    /// dropped (shadow budget, breaker open) or failed (timeout, connection) — so the
    /// candidate's side cannot be judged. One `not-compared` line (class ignored) each.
    #[serde(default)]
    pub follow_up_lost: u64,
    /// Tracked and not compared yet.
    pub open: u64,
    /// Order-state polls sent to the primary.
    pub primary_polls: u64,
    /// Order-state polls sent to the candidate.
    pub candidate_polls: u64,
    /// State polls (either side) answered 401 or 403 although they carried the credentials
    /// of the order's submit.
    #[serde(default)]
    pub poll_unauthorized: u64,
    /// Not compared: a side had no final state at the end and its polls were refused
    /// (401/403). Reported as not compared, never as a regression.
    #[serde(default)]
    pub poll_unauthorized_flows: u64,
    /// Compared flows where a poll gave at least one side its final state.
    #[serde(default)]
    pub completed_by_poll: u64,
    /// Flows per difference kind, regressions only (noise: `noise`, `cancel_fill_races`).
    pub by_kind: BTreeMap<String, u64>,
    /// Groups (kind + steps), most frequent first.
    pub groups: Vec<FlowGroup>,
    /// The id map.
    pub ids: IdSummary,
}

/// Id-map counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IdSummary {
    /// Pairs learned.
    pub learned: u64,
    /// Ids rewritten in candidate requests.
    pub rewritten: u64,
    /// Ids not in the map (the copy was not sent).
    pub unmapped: u64,
    /// Ids whose submit did not answer in time (the copy was not sent).
    pub timed_out: u64,
    /// Entries expired by TTL.
    pub expired: u64,
    /// Entries dropped over the size cap.
    pub evicted: u64,
    /// Entries held now.
    pub entries: u64,
}

#[derive(Debug, Default)]
struct Counters {
    tracked: AtomicU64,
    compared: AtomicU64,
    matched: AtomicU64,
    differing: AtomicU64,
    noise: AtomicU64,
    races: AtomicU64,
    untracked: AtomicU64,
    submit_failed: AtomicU64,
    follow_up_lost: AtomicU64,
    polls: [AtomicU64; 2],
    poll_unauthorized: AtomicU64,
    poll_unauthorized_flows: AtomicU64,
    completed_by_poll: AtomicU64,
}

/// What groups flow differences: kind, steps and noise label (none: a regression).
type GroupKey = (FlowKind, String, Option<&'static str>);

/// The flow tracker.
#[derive(Debug)]
pub(crate) struct Flows {
    rules: Arc<RuleSet>,
    pub ids: Arc<Correlator>,
    table: Mutex<Table>,
    counters: Counters,
    groups: Mutex<HashMap<GroupKey, FlowGroup>>,
    by_kind: Mutex<BTreeMap<&'static str, u64>>,
    writer: DiscrepancyWriter,
    primary: Upstream,
    candidate: Upstream,
    primary_pool: ShadowPool,
    candidate_pool: ShadowPool,
    polls: Arc<Semaphore>,
    poll_timeout: Duration,
    /// Whether order events came from each side's stream ([primary, candidate]): once both
    /// are watched, every flow's events are compared (and waited for).
    watched: [std::sync::atomic::AtomicBool; 2],
    /// Regression lines written (for the summary's line counts).
    pub lines: AtomicU64,
    /// Ignored lines written (unmapped ids).
    pub ignored_lines: AtomicU64,
    /// Noise lines written (cancel-fill races).
    pub noise_lines: AtomicU64,
    /// The `discrepancies` metric family (flow lines are counted there too).
    metric: prometheus_client::metrics::family::Family<
        crate::stats::DiscrepancyLabels,
        prometheus_client::metrics::counter::Counter,
    >,
}

/// What [`Flows::new`] needs.
pub(crate) struct FlowSetup {
    pub rules: Arc<RuleSet>,
    pub ids: Arc<Correlator>,
    pub writer: DiscrepancyWriter,
    pub primary: Upstream,
    pub candidate: Upstream,
    pub connect_timeout: Duration,
    pub poll_timeout: Duration,
    pub metric: prometheus_client::metrics::family::Family<
        crate::stats::DiscrepancyLabels,
        prometheus_client::metrics::counter::Counter,
    >,
    pub opened: (
        prometheus_client::metrics::counter::Counter,
        prometheus_client::metrics::counter::Counter,
    ),
}

fn rules_of(r: &RuleSet) -> &FlowRules {
    r.flows()
}

impl Flows {
    pub(crate) fn new(s: FlowSetup) -> Flows {
        Flows {
            primary_pool: ShadowPool::new(&s.primary, s.connect_timeout, POLLS, s.opened.0),
            candidate_pool: ShadowPool::new(&s.candidate, s.connect_timeout, POLLS, s.opened.1),
            rules: s.rules,
            ids: s.ids,
            table: Mutex::new(Table::default()),
            counters: Counters::default(),
            groups: Mutex::new(HashMap::new()),
            by_kind: Mutex::new(BTreeMap::new()),
            writer: s.writer,
            primary: s.primary,
            candidate: s.candidate,
            polls: Arc::new(Semaphore::new(POLLS)),
            poll_timeout: s.poll_timeout,
            watched: Default::default(),
            lines: AtomicU64::new(0),
            ignored_lines: AtomicU64::new(0),
            noise_lines: AtomicU64::new(0),
            metric: s.metric,
        }
    }

    fn fr(&self) -> &FlowRules {
        rules_of(&self.rules)
    }

    /// A submit's shadow copy is being fired: registers the order (pending on the
    /// candidate) so follow-ups wait for it and events find it. `creds`: what the submit
    /// carried to the primary (for the primary's polls).
    pub(crate) fn begin(
        &self,
        primary_id: &str,
        status: u16,
        method: &str,
        route: &str,
        creds: Credentials,
    ) {
        self.ids.expect(ORDER, primary_id);
        let now = Instant::now();
        let mut t = lock(&self.table);
        if t.flows.contains_key(primary_id) {
            return;
        }
        if t.flows.len() >= self.fr().max_flows {
            self.counters.untracked.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.counters.tracked.fetch_add(1, Ordering::Relaxed);
        let mut p = Flow {
            id: Some(primary_id.to_owned()),
            submit: Some(status),
            ..Flow::default()
        };
        // The copy fires once the primary's answer has passed: its answer is the start.
        p.times.submit_answered = Some(Duration::ZERO);
        let mut tr = Tracked {
            p,
            c: Flow::default(),
            method: method.to_owned(),
            route: route.to_owned(),
            created: now,
            last: now,
            polled: None,
            polling: false,
            creds: [creds, Credentials::default()],
            refused: [false; 2],
            by_poll: false,
            venue: [None, None],
        };
        // The candidate's venue id is not known before its submit answer: no pair yet.
        if let Some(evs) = t.orphans.remove(&(true, primary_id.to_owned())) {
            for (at, e, d) in evs {
                tr.apply(Side::Primary, &e, &d, at);
            }
        }
        t.flows.insert(primary_id.to_owned(), tr);
    }

    /// The candidate's answer to a submit (`None`: no answer); `creds`: what the candidate's
    /// copy carried (for the candidate's polls).
    pub(crate) fn submitted(
        &self,
        primary_id: &str,
        candidate: Option<(u16, Option<String>)>,
        creds: Option<Credentials>,
    ) {
        match &candidate {
            Some((_, Some(cid))) => self.ids.learn(ORDER, primary_id, cid),
            _ => self.ids.fail(ORDER, primary_id),
        }
        let mut t = lock(&self.table);
        let orphans = match &candidate {
            Some((_, Some(cid))) => t.orphans.remove(&(false, cid.clone())),
            _ => None,
        };
        // A candidate submit that failed or did not answer is the exchange comparison's
        // finding (status, timeout): the flow is not compared too, only counted.
        if !matches!(&candidate, Some((s, Some(_))) if (200..300).contains(s)) {
            if t.flows.remove(primary_id).is_some() {
                self.counters.submit_failed.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        let mut venue = None;
        if let Some(tr) = t.flows.get_mut(primary_id) {
            let now = Instant::now();
            tr.last = now;
            if let Some((status, cid)) = candidate {
                tr.c.submit = Some(status);
                tr.c.id = cid;
                tr.c.times.submit_answered = Some(tr.offset(now));
            }
            if let Some(c) = creds {
                tr.creds[1] = c;
            }
            for (at, e, d) in orphans.into_iter().flatten() {
                venue = tr.apply(Side::Candidate, &e, &d, at).1.or(venue);
            }
        }
        drop(t);
        if let Some((p, c)) = venue {
            self.ids.learn(VENUE, &p, &c);
        }
    }

    /// A cancel's answers, for every order the request named (`c`: the candidate's, which
    /// has just arrived; the primary's came when its copy was fired, noted by `rewrite`).
    pub(crate) fn cancelled(&self, primary_ids: &[String], p: u16, c: Option<u16>) {
        let now = Instant::now();
        let mut t = lock(&self.table);
        for id in primary_ids {
            if let Some(tr) = t.flows.get_mut(id) {
                tr.last = now;
                let at = tr.offset(now);
                let p_at = tr.p.times.cancel_answered.unwrap_or(at);
                tr.p.note_cancel_answer(p, p_at);
                tr.p.cancel = Some(p);
                if let Some(c) = c {
                    tr.c.note_cancel_answer(c, at);
                }
                tr.c.cancel = c;
            }
        }
    }

    /// A follow-up (a cancel) of these orders never reached the candidate (`why`: dropped
    /// over the shadow budget, breaker open, timed out, …). Its flows cannot be judged on the
    /// candidate's side any more: each is taken out of the tracker, counted and written as
    /// one `not-compared` line (class ignored), never compared into a false regression.
    pub(crate) fn follow_up_lost(&self, primary_ids: &[String], why: &str) {
        let lost: Vec<(String, Tracked)> = {
            let mut t = lock(&self.table);
            primary_ids
                .iter()
                .filter_map(|id| t.flows.remove(id).map(|tr| (id.clone(), tr)))
                .collect()
        };
        for (pid, tr) in lost {
            self.counters.follow_up_lost.fetch_add(1, Ordering::Relaxed);
            let cid = tr.c.id.as_deref().unwrap_or("(none)");
            self.not_compared_line(
                &pid,
                &tr,
                &format!("flow follow-up-lost {why}"),
                format!(
                    "order {pid} on the primary, {cid} on the candidate: its cancel copy did not complete on the candidate ({why}); flow not compared"
                ),
            );
        }
    }

    /// Writes a flow's one `not-compared` line (class ignored) and counts it.
    fn not_compared_line(&self, pid: &str, tr: &Tracked, signature: &str, detail: String) {
        let line = Discrepancy {
            ts: SystemTime::now(),
            method: tr.method.clone(),
            route: tr.route.clone(),
            flow_id: Some(pid.to_owned()),
            kind: DiscrepancyKind::NotCompared,
            path: String::new(),
            primary: Value::String(pid.to_owned()),
            candidate: tr.c.id.clone().map_or(Value::Null, Value::String),
            signature: signature_text(signature),
            class: RecClass::Ignored,
            label: None,
            detail: Some(detail),
        };
        self.ignored_lines.fetch_add(1, Ordering::Relaxed);
        self.count_line(
            &tr.method,
            &tr.route,
            DiscrepancyKind::NotCompared.as_str(),
            "ignored",
        );
        let _ = self.writer.write(&line);
    }

    /// A cancel's copy is leaving for the candidate now; the primary's answer to it came
    /// when the copy was fired (`fired`). The times tell a cancel-fill race from a
    /// regression (`shadowgate_diff::flow::cancel_fill_race`).
    fn cancel_going_out(&self, primary_ids: &[String], fired: Instant) {
        let now = Instant::now();
        let mut t = lock(&self.table);
        for id in primary_ids {
            if let Some(tr) = t.flows.get_mut(id) {
                let (p_at, c_at) = (tr.offset(fired), tr.offset(now));
                tr.p.times.cancel_answered.get_or_insert(p_at);
                tr.c.times.cancel_sent.get_or_insert(c_at);
            }
        }
    }

    /// A state answer of either side (bodies as received).
    pub(crate) fn state(&self, primary_id: &str, p: Option<&[u8]>, c: Option<&[u8]>) {
        let fr = self.fr();
        let ps = p.and_then(|b| parse_state(&fr.primary, b));
        let cs = c.and_then(|b| parse_state(&fr.candidate, b));
        let now = Instant::now();
        let mut t = lock(&self.table);
        if let Some(tr) = t.flows.get_mut(primary_id) {
            let at = tr.offset(now);
            if ps.is_some() {
                tr.p.state = ps;
                tr.p.note_seen(at);
            }
            if cs.is_some() {
                tr.c.state = cs;
                tr.c.note_seen(at);
            }
        }
    }

    /// One order event of one side's stream (see the module docs).
    // Called by the event-stream comparison when it watches order events.
    #[allow(dead_code)]
    pub(crate) fn on_order_event(&self, side: Side, event: &str, data: &Value) {
        let Some(id) = data.get("client_order_id").and_then(Value::as_str) else {
            return;
        };
        self.watched[usize::from(side == Side::Candidate)].store(true, Ordering::Relaxed);
        let now = Instant::now();
        let mut t = lock(&self.table);
        // Looked up under the table's lock: `submitted` learns the id before it takes the
        // lock to collect held events, so an event is either mapped here or held for it.
        let primary_id = match side {
            Side::Primary => Some(id.to_owned()),
            Side::Candidate => self.ids.primary_of(ORDER, id),
        };
        if let Some(pid) = &primary_id
            && let Some(tr) = t.flows.get_mut(pid)
        {
            let (changed, venue) = tr.apply(side, event, data, now);
            if changed {
                tr.last = now;
            }
            drop(t);
            if let Some((p, c)) = venue {
                self.ids.learn(VENUE, &p, &c);
            }
            return;
        }
        // Not known yet: hold it for a while.
        if t.orphans.len() >= MAX_ORPHANS {
            t.orphans.retain(|_, v| {
                v.iter()
                    .any(|(at, _, _)| now.duration_since(*at) < ORPHAN_TTL)
            });
            if t.orphans.len() >= MAX_ORPHANS {
                return;
            }
        }
        t.orphans
            .entry((side == Side::Primary, id.to_owned()))
            .or_default()
            .push((now, event.to_owned(), data.clone()));
    }

    /// Flows tracked and not compared yet.
    pub(crate) fn open(&self) -> usize {
        lock(&self.table).flows.len()
    }

    /// One sweep: polls quiet flows, compares finished ones. `all`: compare everything now
    /// (shutdown).
    pub(crate) fn sweep(self: &Arc<Self>, all: bool) {
        let fr = self.fr();
        let quiet = Duration::from_millis(fr.quiet_ms);
        let timeout = Duration::from_millis(fr.timeout_ms);
        let poll = fr.primary.poll.is_some() && fr.candidate.poll.is_some();
        let now = Instant::now();
        let mut done = Vec::new();
        let mut to_poll = Vec::new();
        let watched = self.watched.iter().all(|w| w.load(Ordering::Relaxed));
        {
            let mut t = lock(&self.table);
            for (id, tr) in &mut t.flows {
                if watched {
                    tr.p.events_watched = true;
                    tr.c.events_watched = true;
                }
                let finals = (tr.p.is_final(fr), tr.c.is_final(fr));
                let caught_up = tr.p.events_complete() && tr.c.events_complete();
                let quiet_now = now.duration_since(tr.last) >= quiet;
                let expired = now.duration_since(tr.created) >= timeout;
                if all || expired || (finals == (true, true) && caught_up && quiet_now) {
                    done.push(id.clone());
                } else if poll
                    && quiet_now
                    && !tr.polling
                    && tr.polled.is_none_or(|at| now.duration_since(at) >= quiet)
                {
                    // A side that is final needs no poll; one that refused the credentials
                    // would refuse them again.
                    let want = (!finals.0 && !tr.refused[0], !finals.1 && !tr.refused[1]);
                    if want.0 || want.1 {
                        tr.polling = true;
                        tr.polled = Some(now);
                        to_poll.push(PollJob {
                            pid: id.clone(),
                            cid: tr.c.id.clone(),
                            want,
                            creds: tr.creds.clone(),
                        });
                    }
                }
            }
            if !all {
                t.orphans.retain(|_, v| {
                    v.iter()
                        .any(|(at, _, _)| now.duration_since(*at) < ORPHAN_TTL)
                });
            }
        }
        for job in to_poll {
            let this = Arc::clone(self);
            tokio::spawn(async move { this.poll(job).await });
        }
        let mut out = Vec::new();
        for id in done {
            // The flow's credentials go with it.
            let tr = lock(&self.table).flows.remove(&id);
            if let Some(tr) = tr {
                let timed = (!tr.p.is_final(fr), !tr.c.is_final(fr));
                if (timed.0 && tr.refused[0]) || (timed.1 && tr.refused[1]) {
                    self.not_completed(&id, &tr, timed);
                    continue;
                }
                compare_flows(fr, &tr.p, &tr.c, timed, &mut out);
                if tr.by_poll {
                    self.counters
                        .completed_by_poll
                        .fetch_add(1, Ordering::Relaxed);
                }
                self.report(&id, &tr, &out);
            }
        }
    }

    async fn poll(self: Arc<Self>, job: PollJob) {
        let Ok(_permit) = Arc::clone(&self.polls).acquire_owned().await else {
            return;
        };
        let [pc, cc] = &job.creds;
        let (pa, ca) = tokio::join!(
            self.fetch_state(Side::Primary, job.want.0.then_some(job.pid.as_str()), pc),
            self.fetch_state(
                Side::Candidate,
                job.cid.as_deref().filter(|_| job.want.1),
                cc
            )
        );
        let fr = self.fr();
        let mut venue = None;
        {
            let mut t = lock(&self.table);
            let Some(tr) = t.flows.get_mut(&job.pid) else {
                return;
            };
            tr.polling = false;
            let at = tr.offset(Instant::now());
            for (side, a) in [(Side::Primary, pa), (Side::Candidate, ca)] {
                match a {
                    Polled::State(st, v) => {
                        let f = tr.side(side);
                        let was_final = f.is_final(fr);
                        f.state = Some(st);
                        f.note_seen(at);
                        if !was_final && f.is_final(fr) {
                            tr.by_poll = true;
                        }
                        venue = tr.venue(side, v).or(venue);
                    }
                    Polled::Refused => tr.refused[ix(side)] = true,
                    Polled::Nothing => {}
                }
            }
        }
        if let Some((p, c)) = venue {
            self.ids.learn(VENUE, &p, &c);
        }
    }

    /// Polls one side's order state for its own `id`, with the credentials its submit carried.
    async fn fetch_state(&self, side: Side, id: Option<&str>, creds: &Credentials) -> Polled {
        let fr = self.fr();
        let (rules, u, pool) = match side {
            Side::Primary => (&fr.primary, &self.primary, &self.primary_pool),
            Side::Candidate => (&fr.candidate, &self.candidate, &self.candidate_pool),
        };
        let Some(mut req) = id
            .and_then(|id| rules.poll_path(id))
            .and_then(|p| build_get(u, &p))
        else {
            return Polled::Nothing;
        };
        creds.add_to(req.headers_mut());
        self.counters.polls[ix(side)].fetch_add(1, Ordering::Relaxed);
        match tokio::time::timeout(self.poll_timeout, pool.exchange(req, POLL_LIMIT)).await {
            Ok(Ok((parts, body))) if parts.status.is_success() => {
                let Ok(v) = serde_json::from_slice::<Value>(&body) else {
                    return Polled::Nothing;
                };
                let Some(obj) = rules.state_of(&v) else {
                    return Polled::Nothing;
                };
                match OrderState::from_json(obj) {
                    Some(st) => Polled::State(st, venue_id(obj)),
                    None => Polled::Nothing,
                }
            }
            Ok(Ok((parts, _)))
                if matches!(
                    parts.status,
                    http::StatusCode::UNAUTHORIZED | http::StatusCode::FORBIDDEN
                ) =>
            {
                self.counters
                    .poll_unauthorized
                    .fetch_add(1, Ordering::Relaxed);
                Polled::Refused
            }
            _ => Polled::Nothing,
        }
    }

    /// A flow that could not be completed because its polls were refused: counted and
    /// reported as not compared (class ignored).
    fn not_completed(&self, pid: &str, tr: &Tracked, timed: (bool, bool)) {
        self.counters
            .poll_unauthorized_flows
            .fetch_add(1, Ordering::Relaxed);
        let sides: Vec<&str> = [
            (timed.0 && tr.refused[0], "primary"),
            (timed.1 && tr.refused[1], "candidate"),
        ]
        .into_iter()
        .filter_map(|(x, n)| x.then_some(n))
        .collect();
        let sides = sides.join(" and ");
        let cid = tr.c.id.as_deref().unwrap_or("(none)");
        self.not_compared_line(
            pid,
            tr,
            &format!("flow poll-unauthorized {sides}"),
            format!(
                "order {pid} on the primary, {cid} on the candidate: not completed by poll, the {sides} refused the state polls (401/403) with the credentials of the order's submit; flow not compared"
            ),
        );
    }

    fn report(&self, pid: &str, tr: &Tracked, diffs: &[FlowDifference]) {
        self.counters.compared.fetch_add(1, Ordering::Relaxed);
        if diffs.is_empty() {
            self.counters.matched.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // Noise is neither a match nor a regression: counted apart.
        if diffs.iter().all(|d| d.noise.is_some()) {
            self.counters.noise.fetch_add(1, Ordering::Relaxed);
        } else {
            self.counters.differing.fetch_add(1, Ordering::Relaxed);
        }
        if diffs.iter().any(|d| d.noise.is_some()) {
            self.counters.races.fetch_add(1, Ordering::Relaxed);
        }
        let cid = tr.c.id.as_deref().unwrap_or("(none)");
        for d in diffs {
            let steps = d.step_names();
            let label = d.noise.as_ref().map(|n| n.label);
            {
                let mut g = lock(&self.groups);
                g.entry((d.kind, steps.clone(), label))
                    .or_insert_with(|| FlowGroup {
                        kind: d.kind.as_str().to_owned(),
                        steps: steps.clone(),
                        class: if label.is_some() {
                            "noise"
                        } else {
                            "regression"
                        }
                        .to_owned(),
                        label: label.map(str::to_owned),
                        count: 0,
                        example: pid.to_owned(),
                    })
                    .count += 1;
                if label.is_none() {
                    *lock(&self.by_kind).entry(d.kind.as_str()).or_default() += 1;
                }
            }
            let pick = |f: fn(&shadowgate_diff::flow::StepDiff) -> &Value| -> Value {
                Value::Object(
                    d.steps
                        .iter()
                        .map(|s| (s.step.clone(), f(s).clone()))
                        .collect(),
                )
            };
            let detail = d
                .steps
                .iter()
                .map(|s| format!("{} ({} vs {})", s.step, s.primary, s.candidate))
                .collect::<Vec<_>>()
                .join(", ");
            let (class, signature, why) = match &d.noise {
                None => (
                    RecClass::Regression,
                    signature(d.kind, &steps),
                    String::new(),
                ),
                Some(n) => (
                    RecClass::Noise,
                    signature_text(&format!(
                        "flow {} {steps} noise {}",
                        d.kind.as_str(),
                        n.label
                    )),
                    format!("; {} ({})", n.label, n.evidence),
                ),
            };
            let line = Discrepancy {
                ts: SystemTime::now(),
                method: tr.method.clone(),
                route: tr.route.clone(),
                flow_id: Some(pid.to_owned()),
                kind: rec_kind(d.kind),
                path: format!("/{}", d.steps.first().map_or("", |s| s.step.as_str())),
                primary: pick(|s| &s.primary),
                candidate: pick(|s| &s.candidate),
                signature,
                class,
                label: label.map(str::to_owned),
                detail: Some(format!(
                    "order {pid} on the primary, {cid} on the candidate; differing steps: {detail}{why}"
                )),
            };
            if label.is_some() {
                self.noise_lines.fetch_add(1, Ordering::Relaxed);
                self.count_line(&tr.method, &tr.route, d.kind.as_str(), "noise");
            } else {
                self.lines.fetch_add(1, Ordering::Relaxed);
                self.count_line(&tr.method, &tr.route, d.kind.as_str(), "regression");
            }
            let _ = self.writer.write(&line);
        }
    }

    /// Rewrites the ids a request carries to the candidate's. `Err` when one cannot be
    /// mapped (reported; the copy is not sent).
    pub(crate) async fn rewrite(
        &self,
        rule: &shadowgate_diff::RouteRule,
        req: &crate::shadow::ShadowRequest,
        wait: Duration,
        route: &str,
    ) -> Result<Option<crate::shadow::ShadowRequest>, ()> {
        // The primary's answer is complete when its copy is fired, which is about now.
        let fired = Instant::now();
        let cancel = rule.flow_step() == Some(shadowgate_diff::flow::FlowStep::Cancel);
        let mut cancelled: Vec<String> = Vec::new();
        let mut path = req.path.clone();
        let mut body: Option<Value> = None;
        let mut changed = false;
        for idr in rule.ids() {
            for loc in &idr.request {
                let mut pids = request_ids(rule, loc, &path, &req.body, &mut body);
                if pids.is_empty() {
                    continue;
                }
                pids.sort_unstable();
                pids.dedup();
                if cancel && idr.kind == ORDER {
                    cancelled.extend(pids.iter().cloned());
                }
                // Every id waits for its own submit, all at once: the longest wait is `wait`.
                let resolved = futures_util::future::join_all(
                    pids.iter()
                        .map(|pid| self.ids.resolve(&idr.kind, pid, wait)),
                )
                .await;
                let mut map: Vec<(String, String)> = Vec::new();
                let mut failed = false;
                for (pid, r) in pids.into_iter().zip(resolved) {
                    match r {
                        Resolved::Mapped(c) if c != pid => map.push((pid, c)),
                        Resolved::Mapped(_) => {}
                        // Counted by the map; the answers are compared as they are.
                        Resolved::Unmapped if idr.send_unmapped => {}
                        other => {
                            self.unmapped(req.method.as_str(), route, &idr.kind, &pid, &other);
                            failed = true;
                        }
                    }
                }
                if failed {
                    return Err(());
                }
                if map.is_empty() {
                    continue;
                }
                changed = true;
                let to = |id: &str| map.iter().find(|(p, _)| p == id).map(|(_, c)| c.clone());
                match loc {
                    IdLocation::Body(f) => {
                        if let Some(slot) = body.as_mut().and_then(|v| field_mut(v, f)) {
                            let slots: Vec<&mut Value> = match slot {
                                Value::Array(a) => a.iter_mut().collect(),
                                one => vec![one],
                            };
                            for s in slots {
                                if let Some(c) = id_text(s).and_then(|p| to(&p)) {
                                    *s = Value::String(c);
                                }
                            }
                        }
                    }
                    IdLocation::Query(q) => {
                        for (_, c) in &map {
                            path = replace_query(&path, q, c);
                        }
                    }
                    IdLocation::Capture(_) => {
                        for (p, c) in &map {
                            path = replace_segment(&path, p, c);
                        }
                    }
                }
            }
        }
        // Sent as soon as this returns.
        if cancel {
            self.cancel_going_out(&cancelled, fired);
        }
        if !changed {
            return Ok(None);
        }
        let mut out = crate::shadow::ShadowRequest {
            method: req.method.clone(),
            path,
            headers: req.headers.clone(),
            client_host: req.client_host.clone(),
            body: req.body.clone(),
            marked: req.marked,
        };
        if let Some(v) = body
            && let Ok(b) = serde_json::to_vec(&v)
        {
            out.body = Bytes::from(b);
            out.headers.remove(header::CONTENT_LENGTH);
        }
        Ok(Some(out))
    }

    fn unmapped(&self, method: &str, route: &str, kind: &str, pid: &str, r: &Resolved) {
        let (dk, class, why) = match r {
            Resolved::TimedOut => (
                DiscrepancyKind::Timeout,
                RecClass::Regression,
                "the candidate did not answer its submit in time",
            ),
            _ => (
                DiscrepancyKind::NotCompared,
                RecClass::Ignored,
                "no candidate id is known for it (not placed through the mirror, its candidate submit failed, or expired)",
            ),
        };
        match class {
            RecClass::Regression => self.lines.fetch_add(1, Ordering::Relaxed),
            _ => self.ignored_lines.fetch_add(1, Ordering::Relaxed),
        };
        let class_name = if class == RecClass::Regression {
            "regression"
        } else {
            "ignored"
        };
        self.count_line(method, route, dk.as_str(), class_name);
        let line = Discrepancy {
            ts: SystemTime::now(),
            method: method.to_owned(),
            route: route.to_owned(),
            flow_id: Some(pid.to_owned()),
            kind: dk,
            path: String::new(),
            primary: Value::String(pid.to_owned()),
            candidate: Value::Null,
            signature: signature_text(&format!("unmapped {kind} {method} {route} {}", dk.as_str())),
            class,
            label: None,
            detail: Some(format!("{kind} id {pid}: not sent to the candidate, {why}")),
        };
        let _ = self.writer.write(&line);
    }

    fn count_line(&self, method: &str, route: &str, kind: &'static str, class: &'static str) {
        self.metric
            .get_or_create(&crate::stats::DiscrepancyLabels {
                method: method.to_owned(),
                route: route.to_owned(),
                kind,
                class,
            })
            .inc();
    }

    /// The flow and id-map counters.
    pub(crate) fn summary(&self) -> FlowSummary {
        let c = &self.counters;
        let mut groups: Vec<FlowGroup> = lock(&self.groups).values().cloned().collect();
        // Regressions first, then most frequent.
        groups.sort_by(|a, b| {
            (a.class != "regression")
                .cmp(&(b.class != "regression"))
                .then(b.count.cmp(&a.count))
                .then(a.kind.cmp(&b.kind))
        });
        let ic = &self.ids.counters;
        FlowSummary {
            tracked: c.tracked.load(Ordering::Relaxed),
            compared: c.compared.load(Ordering::Relaxed),
            matched: c.matched.load(Ordering::Relaxed),
            differing: c.differing.load(Ordering::Relaxed),
            noise: c.noise.load(Ordering::Relaxed),
            cancel_fill_races: c.races.load(Ordering::Relaxed),
            untracked: c.untracked.load(Ordering::Relaxed),
            submit_failed: c.submit_failed.load(Ordering::Relaxed),
            follow_up_lost: c.follow_up_lost.load(Ordering::Relaxed),
            open: self.open() as u64,
            primary_polls: c.polls[0].load(Ordering::Relaxed),
            candidate_polls: c.polls[1].load(Ordering::Relaxed),
            poll_unauthorized: c.poll_unauthorized.load(Ordering::Relaxed),
            poll_unauthorized_flows: c.poll_unauthorized_flows.load(Ordering::Relaxed),
            completed_by_poll: c.completed_by_poll.load(Ordering::Relaxed),
            by_kind: lock(&self.by_kind)
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
            groups,
            ids: IdSummary {
                learned: ic.learned.load(Ordering::Relaxed),
                rewritten: ic.rewritten.load(Ordering::Relaxed),
                unmapped: ic.unmapped.load(Ordering::Relaxed),
                timed_out: ic.timed_out.load(Ordering::Relaxed),
                expired: ic.expired.load(Ordering::Relaxed),
                evicted: ic.evicted.load(Ordering::Relaxed),
                entries: self.ids.len() as u64,
            },
        }
    }
}

/// Feeds a mirrored exchange of a flow route to the tracker (`candidate`: its answer, if
/// any; `sent`: the credentials its copy carried, for a submit) and learns the other ids
/// the answers carry.
pub(crate) fn observe(
    f: &Flows,
    r: &shadowgate_diff::RouteRule,
    req: &crate::shadow::ShadowRequest,
    p: &crate::shadow::Captured,
    c: Option<&crate::shadow::Captured>,
    sent: Option<Credentials>,
) {
    use shadowgate_diff::flow::FlowStep;
    let ok = |x: &crate::shadow::Captured| x.status.is_success();
    match r.flow_step() {
        Some(FlowStep::Submit) => {
            if ok(p)
                && let Some(pid) = answer_id(r, &p.body, true)
            {
                let cand = c.map(|c| {
                    let cid = if ok(c) {
                        answer_id(r, &c.body, false)
                    } else {
                        None
                    };
                    (c.status.as_u16(), cid)
                });
                f.submitted(&pid, cand, sent);
            }
        }
        Some(FlowStep::Cancel) => {
            let pids = request_order_ids(r, &req.path, &req.body);
            f.cancelled(&pids, p.status.as_u16(), c.map(|c| c.status.as_u16()));
        }
        Some(FlowStep::State) => {
            if let Some(pid) = request_order_id(r, &req.path, &req.body) {
                f.state(
                    &pid,
                    ok(p).then_some(&p.body[..]),
                    c.filter(|c| ok(c)).map(|c| &c.body[..]),
                );
            }
        }
        None => {}
    }
    if let Some(c) = c
        && ok(p)
        && ok(c)
    {
        learn_other_ids(&f.ids, r, &p.body, &c.body);
    }
}

/// The flow tracker and id map for a run, when the rules use them.
pub(crate) fn build(
    config: &crate::config::MirrorConfig,
    metrics: &crate::stats::Metrics,
    writer: DiscrepancyWriter,
) -> Result<Option<Arc<Flows>>, crate::error::MirrorError> {
    let rules = &config.rules;
    let uses_ids = rules.routes().iter().any(|r| !r.ids().is_empty());
    if !uses_ids && !rules.flows().enabled {
        return Ok(None);
    }
    let ids = Correlator::new(config.ids.ttl, config.ids.max.get(), Some(&config.out)).map_err(
        |source| crate::error::MirrorError::IdsFile {
            path: config.out.join(crate::correlate::IDS_FILE),
            source,
        },
    )?;
    Ok(Some(Arc::new(Flows::new(FlowSetup {
        rules: Arc::clone(rules),
        ids: Arc::new(ids),
        writer,
        primary: config.primary.clone(),
        candidate: config.candidate.clone(),
        connect_timeout: config.connect_timeout,
        poll_timeout: config.shadow.timeout,
        metric: metrics.discrepancies.clone(),
        opened: (
            metrics.connections("primary"),
            metrics.connections("candidate"),
        ),
    }))))
}

impl Flows {
    /// At shutdown: lets open flows finish (polling as usual) for up to their timeout (at
    /// most 5 s), then compares whatever is left as it is.
    pub(crate) async fn drain(self: &Arc<Self>) {
        let limit = Duration::from_millis(self.fr().timeout_ms).min(Duration::from_secs(5));
        let deadline = Instant::now() + limit;
        // Bounded by the deadline.
        while self.open() > 0 && Instant::now() < deadline {
            self.sweep(false);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.sweep(true);
        self.ids.flush();
        let _ = self.writer.flush();
    }
}

/// Runs [`Flows::sweep`] until `stop` says so.
pub(crate) async fn sweeper(flows: Arc<Flows>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let quiet = flows.fr().quiet_ms;
    let every = Duration::from_millis((quiet / 4).clamp(10, 100));
    let mut ticks = 0u32;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        flows.sweep(false);
        ticks = ticks.wrapping_add(1);
        if ticks.is_multiple_of(10) {
            flows.ids.flush();
        }
    }
}

fn parse_state(side: &FlowSide, body: &[u8]) -> Option<OrderState> {
    let v: Value = serde_json::from_slice(body).ok()?;
    OrderState::from_json(side.state_of(&v)?)
}

fn build_get(u: &Upstream, path: &str) -> Option<Request<Full<Bytes>>> {
    let uri = Uri::builder()
        .scheme("http")
        .authority(u.authority.clone())
        .path_and_query(path)
        .build()
        .ok()?;
    let mut req = Request::new(Full::new(Bytes::new()));
    *req.method_mut() = Method::GET;
    *req.uri_mut() = uri;
    let mut h = HeaderMap::new();
    h.insert(header::HOST, u.host_header.clone());
    *req.headers_mut() = h;
    Some(req)
}

/// The id of a flow from the primary's answer to a submit (its `ids` rule of kind order).
pub(crate) fn answer_id(
    rule: &shadowgate_diff::RouteRule,
    body: &[u8],
    primary: bool,
) -> Option<String> {
    let idr = rule.ids().iter().find(|r| r.kind == ORDER)?;
    let ptr = if primary {
        idr.primary.as_deref()?
    } else {
        idr.candidate.as_deref()?
    };
    let v: Value = serde_json::from_slice(body).ok()?;
    id_text(v.pointer(ptr)?)
}

/// Pairs of other kinds (venue ids, ...) the answers carry: learned into the map.
pub(crate) fn learn_other_ids(
    ids: &Correlator,
    rule: &shadowgate_diff::RouteRule,
    p: &[u8],
    c: &[u8],
) {
    let mut parsed: Option<(Value, Value)> = None;
    for idr in rule.ids() {
        let (Some(pp), Some(cp)) = (&idr.primary, &idr.candidate) else {
            continue;
        };
        if idr.kind == ORDER && rule.flow_step() == Some(shadowgate_diff::flow::FlowStep::Submit) {
            continue;
        }
        if parsed.is_none() {
            let (Ok(a), Ok(b)) = (serde_json::from_slice(p), serde_json::from_slice(c)) else {
                return;
            };
            parsed = Some((a, b));
        }
        if let Some((a, b)) = &parsed
            && let (Some(x), Some(y)) = (
                a.pointer(pp).and_then(id_text),
                b.pointer(cp).and_then(id_text),
            )
        {
            ids.learn(&idr.kind, &x, &y);
        }
    }
}

/// The primary id a follow-up request carries for its flow (`ids` kind order): the first
/// one of a bulk request.
pub(crate) fn request_order_id(
    rule: &shadowgate_diff::RouteRule,
    path: &str,
    body: &[u8],
) -> Option<String> {
    request_order_ids(rule, path, body).into_iter().next()
}

/// Every primary order id a follow-up carries (one per element of a bulk list), from the
/// first location of its `ids` rule that holds any.
pub(crate) fn request_order_ids(
    rule: &shadowgate_diff::RouteRule,
    path: &str,
    body: &[u8],
) -> Vec<String> {
    let Some(idr) = rule.ids().iter().find(|r| r.kind == ORDER) else {
        return Vec::new();
    };
    let mut parsed = None;
    idr.request
        .iter()
        .map(|loc| request_ids(rule, loc, path, body, &mut parsed))
        .find(|v| !v.is_empty())
        .unwrap_or_default()
}

/// A non-empty `venue_order_id` of an event or state object (C++ sends `""` for none).
fn venue_id(v: &Value) -> Option<String> {
    v.get("venue_order_id").and_then(id_text)
}

fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn field_mut<'v>(v: &'v mut Value, f: &str) -> Option<&'v mut Value> {
    if f.starts_with('/') {
        v.pointer_mut(f)
    } else {
        v.get_mut(f)
    }
}

/// The ids at one request location: a body field holding an array names one id per element
/// (a bulk request); elements that are not ids are left alone.
fn request_ids(
    rule: &shadowgate_diff::RouteRule,
    loc: &IdLocation,
    path: &str,
    body: &[u8],
    parsed: &mut Option<Value>,
) -> Vec<String> {
    match loc {
        IdLocation::Body(f) => {
            if parsed.is_none() {
                *parsed = serde_json::from_slice(body).ok();
            }
            match parsed.as_mut().and_then(|v| field_mut(v, f)) {
                Some(Value::Array(a)) => a.iter().filter_map(id_text).collect(),
                Some(v) => id_text(v).into_iter().collect(),
                None => Vec::new(),
            }
        }
        IdLocation::Query(q) => path
            .split_once('?')
            .and_then(|(_, query)| {
                query.split('&').find_map(|pair| {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    (k == q && !v.is_empty()).then(|| percent_decode(v))
                })
            })
            .into_iter()
            .collect(),
        IdLocation::Capture(c) => rule
            .template()
            .captures(path.split('?').next().unwrap_or(path))
            .and_then(|caps| {
                caps.into_iter()
                    .find(|(n, _)| n == c)
                    .map(|(_, v)| v.to_string())
            })
            .into_iter()
            .collect(),
    }
}

fn percent_decode(s: &str) -> String {
    let hex = |c: u8| {
        char::from(c)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    // Bounded: every turn advances i.
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                    out.push(h * 16 + l);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b'+' => out.push(b' '),
            x => out.push(x),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn replace_query(path: &str, name: &str, value: &str) -> String {
    let Some((p, q)) = path.split_once('?') else {
        return path.to_owned();
    };
    let parts: Vec<String> = q
        .split('&')
        .map(|pair| {
            let k = pair.split_once('=').map_or(pair, |(k, _)| k);
            if k == name {
                format!("{k}={}", encode(value))
            } else {
                pair.to_owned()
            }
        })
        .collect();
    format!("{p}?{}", parts.join("&"))
}

fn replace_segment(path: &str, from: &str, to: &str) -> String {
    let (p, q) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    let enc_from = encode(from);
    let segs: Vec<String> = p
        .split('/')
        .map(|s| {
            if s == from || s == enc_from {
                encode(to)
            } else {
                s.to_owned()
            }
        })
        .collect();
    let mut out = segs.join("/");
    if let Some(q) = q {
        out.push('?');
        out.push_str(q);
    }
    out
}

fn rec_kind(k: FlowKind) -> DiscrepancyKind {
    match k {
        FlowKind::MissingOnCandidate => DiscrepancyKind::MissingOnCandidate,
        FlowKind::ExtraOnCandidate => DiscrepancyKind::ExtraOnCandidate,
        FlowKind::StateMismatch => DiscrepancyKind::StateMismatch,
        FlowKind::FillMismatch => DiscrepancyKind::FillMismatch,
        FlowKind::SequenceMismatch => DiscrepancyKind::SequenceMismatch,
        FlowKind::Timeout => DiscrepancyKind::Timeout,
    }
}

fn signature(kind: FlowKind, steps: &str) -> String {
    signature_text(&format!("flow {} {steps}", kind.as_str()))
}

/// 16 hex digits of FNV-1a: groups alike lines.
fn signature_text(s: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_path_rewrites() {
        assert_eq!(
            replace_query(
                "/api/order_state?x=1&client_order_id=web-1",
                "client_order_id",
                "veloz_1 2"
            ),
            "/api/order_state?x=1&client_order_id=veloz_1%202"
        );
        assert_eq!(
            replace_segment("/api/orders/web-1?v=1", "web-1", "veloz_9"),
            "/api/orders/veloz_9?v=1"
        );
        assert_eq!(percent_decode("a%20b+c%2"), "a b c%2");
    }

    fn tracker(dir: &std::path::Path) -> Arc<Flows> {
        tracker_with(dir, "[flows]\nenabled = true\n")
    }

    fn tracker_with(dir: &std::path::Path, rules: &str) -> Arc<Flows> {
        let run = shadowgate_record::RunWriter::create(
            dir.join("run"),
            shadowgate_record::Manifest::new(shadowgate_record::RunKind::Mirror, "t"),
        )
        .unwrap();
        let rules = crate::rules_file::parse_rules(rules, "t.toml").unwrap();
        Arc::new(Flows::new(FlowSetup {
            rules: Arc::new(rules),
            ids: Arc::new(Correlator::new(Duration::from_secs(60), 100, None).unwrap()),
            writer: run.discrepancies().unwrap(),
            primary: Upstream::parse("primary", "http://127.0.0.1:9").unwrap(),
            candidate: Upstream::parse("candidate", "http://127.0.0.1:10").unwrap(),
            connect_timeout: Duration::from_secs(1),
            poll_timeout: Duration::from_secs(1),
            metric: Default::default(),
            opened: (Default::default(), Default::default()),
        }))
    }

    #[tokio::test]
    async fn events_before_the_mapping_are_held_and_the_flow_compared() {
        let dir = tempfile::tempdir().unwrap();
        let f = tracker(dir.path());
        f.begin("web-1", 200, "POST", "/api/order", Credentials::default());
        // The candidate's events race ahead of its answer: held until the id is learned.
        let ev = |side, name: &str, v: Value| f.on_order_event(side, name, &v);
        ev(
            Side::Candidate,
            "order-update",
            serde_json::json!({"type": "order_update", "client_order_id": "veloz_1", "status": "ACCEPTED"}),
        );
        ev(
            Side::Primary,
            "order_update",
            serde_json::json!({"client_order_id": "web-1", "status": "ACCEPTED"}),
        );
        f.submitted("web-1", Some((200, Some("veloz_1".into()))), None);
        for (side, id, price) in [
            (Side::Primary, "web-1", 100.0),
            (Side::Candidate, "veloz_1", 101.0),
        ] {
            ev(
                side,
                "fill",
                serde_json::json!({"client_order_id": id, "qty": 0.5, "price": price}),
            );
            ev(
                side,
                "order_state",
                serde_json::json!({"client_order_id": id, "status": "FILLED", "executed_qty": 0.5, "avg_price": price}),
            );
        }
        // Orders not placed through the mirror are ignored.
        ev(
            Side::Primary,
            "fill",
            serde_json::json!({"client_order_id": "other", "qty": 1, "price": 1}),
        );
        assert_eq!(f.open(), 1);
        f.sweep(true);
        let s = f.summary();
        assert_eq!((s.compared, s.differing, s.open), (1, 1, 0));
        assert_eq!(s.by_kind.get("fill-mismatch"), Some(&1));
        assert_eq!(s.groups[0].steps, "fills,final");
        assert_eq!(s.ids.learned, 1);
    }

    #[tokio::test]
    async fn a_lost_cancel_takes_its_flow_out_as_not_compared() {
        let dir = tempfile::tempdir().unwrap();
        let f = tracker(dir.path());
        for id in ["web-3", "web-4"] {
            f.begin(id, 200, "POST", "/api/order", Credentials::default());
        }
        f.submitted("web-3", Some((200, Some("veloz_3".into()))), None);
        f.submitted("web-4", Some((200, Some("veloz_4".into()))), None);
        // The cancel of web-3 was dropped before reaching the candidate; an unknown id
        // in the same request changes nothing.
        f.follow_up_lost(
            &["web-3".to_owned(), "never-seen".to_owned()],
            "dropped: the shadow budget was full",
        );
        assert_eq!(f.open(), 1);
        f.sweep(true);
        let s = f.summary();
        assert_eq!((s.tracked, s.follow_up_lost, s.open), (2, 1, 0));
        assert_eq!(f.ignored_lines.load(Ordering::Relaxed), 1);
        f.writer.flush().unwrap();
        let text = std::fs::read_to_string(dir.path().join("run/discrepancies.ndjson")).unwrap();
        let line = text
            .lines()
            .find(|l| l.contains("did not complete on the candidate"))
            .expect("a not-compared line for the lost cancel");
        assert!(line.contains("\"class\":\"ignored\""), "{line}");
        assert!(line.contains("web-3") && line.contains("veloz_3"), "{line}");
        assert!(line.contains("shadow budget"), "{line}");
    }

    #[tokio::test]
    async fn a_failed_candidate_submit_is_counted_not_compared() {
        let dir = tempfile::tempdir().unwrap();
        let f = tracker(dir.path());
        f.begin("web-2", 200, "POST", "/api/order", Credentials::default());
        f.submitted("web-2", Some((400, None)), None);
        f.sweep(true);
        let s = f.summary();
        assert_eq!((s.tracked, s.compared, s.submit_failed), (1, 0, 1));
    }

    /// C++ bulk cancel: every id is rewritten (waiting for a submit still on its way) and
    /// every order's flow gets the cancel.
    #[tokio::test]
    async fn a_bulk_cancel_rewrites_every_id_and_cancels_each_flow() {
        let dir = tempfile::tempdir().unwrap();
        let f = tracker_with(
            dir.path(),
            "[flows]\nenabled = true\n[[routes]]\ntemplate = \"/api/cancel\"\nmethods = [\"POST\"]\n\
             write_policy = \"mirror\"\nflow = \"cancel\"\nids = { request = [\"body:/order_ids\"] }\n",
        );
        let rule = f.rules.find_route("POST", "/api/cancel").unwrap();
        for (p, c) in [("veloz_1_1", "veloz_9_1"), ("veloz_1_2", "veloz_9_2")] {
            f.begin(p, 200, "POST", "/api/orders", Credentials::default());
            f.submitted(p, Some((200, Some(c.into()))), None);
        }
        // The third order's candidate answer comes while the cancel waits for it.
        f.begin(
            "veloz_1_3",
            200,
            "POST",
            "/api/orders",
            Credentials::default(),
        );
        let late = Arc::clone(&f);
        let learner = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            late.submitted("veloz_1_3", Some((200, Some("veloz_9_3".into()))), None);
        });
        let req = crate::shadow::ShadowRequest {
            method: Method::POST,
            path: "/api/cancel".into(),
            headers: HeaderMap::new(),
            client_host: None,
            body: Bytes::from_static(
                br#"{"order_ids":["veloz_1_1","veloz_1_2","veloz_1_3",null],"note":"x"}"#,
            ),
            marked: false,
        };
        let out = f
            .rewrite(rule, &req, Duration::from_secs(5), "/api/cancel")
            .await
            .unwrap()
            .unwrap();
        learner.await.unwrap();
        let v: Value = serde_json::from_slice(&out.body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"order_ids": ["veloz_9_1", "veloz_9_2", "veloz_9_3", null], "note": "x"})
        );
        // What is not an id (null) is left alone.
        let s = f.summary();
        assert_eq!(
            (s.ids.rewritten, s.ids.unmapped, s.ids.timed_out),
            (3, 0, 0)
        );
        let ok = crate::shadow::Captured {
            status: http::StatusCode::OK,
            headers: HeaderMap::new(),
            body: Bytes::from_static(br#"{"status":"success"}"#),
        };
        observe(&f, rule, &req, &ok, Some(&ok), None);
        {
            let t = lock(&f.table);
            for id in ["veloz_1_1", "veloz_1_2", "veloz_1_3"] {
                let tr = &t.flows[id];
                assert_eq!((tr.p.cancel, tr.c.cancel), (Some(200), Some(200)), "{id}");
            }
        }
        assert_eq!(
            request_order_ids(rule, "/api/cancel", &req.body),
            ["veloz_1_1", "veloz_1_2", "veloz_1_3"]
        );
    }

    #[tokio::test]
    async fn a_bulk_cancel_with_an_unknown_order_is_not_sent() {
        let dir = tempfile::tempdir().unwrap();
        let f = tracker_with(
            dir.path(),
            "[flows]\nenabled = true\n[[routes]]\ntemplate = \"/api/cancel\"\nmethods = [\"POST\"]\n\
             write_policy = \"mirror\"\nflow = \"cancel\"\nids = { request = [\"body:order_ids\"] }\n",
        );
        let rule = f.rules.find_route("POST", "/api/cancel").unwrap();
        f.begin("a", 200, "POST", "/api/orders", Credentials::default());
        f.submitted("a", Some((200, Some("x".into()))), None);
        let req = crate::shadow::ShadowRequest {
            method: Method::POST,
            path: "/api/cancel".into(),
            headers: HeaderMap::new(),
            client_host: None,
            body: Bytes::from_static(br#"{"order_ids":["a","never-placed","also-not"]}"#),
            marked: false,
        };
        assert!(
            f.rewrite(rule, &req, Duration::from_millis(50), "/api/cancel")
                .await
                .is_err()
        );
        let s = f.summary();
        assert_eq!((s.ids.rewritten, s.ids.unmapped), (1, 2));
        // Each unknown id is reported (class ignored), not guessed.
        assert_eq!(f.ignored_lines.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn credentials_are_taken_as_sent_and_never_shown() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cret"),
        );
        h.insert("x-api-key", HeaderValue::from_static("veloz_k3y"));
        h.append(header::COOKIE, HeaderValue::from_static("a=1"));
        h.append(header::COOKIE, HeaderValue::from_static("sid=c00kie"));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let c = Credentials::of(&h);
        let shown = format!("{c:?}");
        assert_eq!(
            shown,
            r#"["authorization", "x-api-key", "cookie", "cookie"]"#
        );
        let mut out = HeaderMap::new();
        c.add_to(&mut out);
        assert_eq!(out.len(), 4);
        assert_eq!(out[header::AUTHORIZATION], "Bearer s3cret");
        assert!(out[header::AUTHORIZATION].is_sensitive());
        assert_eq!(out.get_all(header::COOKIE).iter().count(), 2);
        assert!(out.get(header::CONTENT_TYPE).is_none());
        // Only submits of tracked flows keep them.
        let rules = crate::rules_file::parse_rules(
            "[[routes]]\ntemplate = \"/o\"\nmethods = [\"POST\"]\nwrite_policy = \"mirror\"\n\
             flow = \"submit\"\nids = { primary = \"/id\", candidate = \"/id\" }\n",
            "t.toml",
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let f = tracker(dir.path());
        let submit = rules.find_route("POST", "/o");
        assert!(submit_credentials(Some(&f), submit, &h).is_some());
        assert!(submit_credentials(None, submit, &h).is_none());
        assert!(submit_credentials(Some(&f), None, &h).is_none());
    }

    #[tokio::test]
    async fn venue_ids_are_learned_from_order_events() {
        let dir = tempfile::tempdir().unwrap();
        let f = tracker(dir.path());
        f.begin("web-1", 200, "POST", "/api/order", Credentials::default());
        // The primary's ack (with its venue id) comes before the candidate's answer.
        f.on_order_event(
            Side::Primary,
            "order_update",
            &serde_json::json!({"client_order_id": "web-1", "status": "ACCEPTED", "venue_order_id": "sim-1"}),
        );
        f.submitted("web-1", Some((200, Some("veloz_1".into()))), None);
        assert!(f.ids.get(VENUE, "sim-1").is_none());
        // C++ sends "" before the venue knows the order: not an id.
        f.on_order_event(
            Side::Candidate,
            "order-update",
            &serde_json::json!({"type": "order_update", "client_order_id": "veloz_1", "status": "NEW", "venue_order_id": ""}),
        );
        assert!(f.ids.get(VENUE, "sim-1").is_none());
        f.on_order_event(
            Side::Candidate,
            "order-update",
            &serde_json::json!({"type": "order_update", "client_order_id": "veloz_1", "status": "ACCEPTED", "venue_order_id": "sim-7"}),
        );
        assert_eq!(f.ids.get(VENUE, "sim-1").as_deref(), Some("sim-7"));
        assert_eq!(f.ids.primary_of(VENUE, "sim-7").as_deref(), Some("sim-1"));
        assert_eq!(
            f.summary().ids.learned,
            2,
            "the order pair and the venue pair"
        );
    }

    /// A side whose polls were refused and that never became final: counted and reported as
    /// not compared (ignored), not as a timeout regression.
    #[tokio::test]
    async fn a_flow_whose_polls_were_refused_is_not_a_regression() {
        let dir = tempfile::tempdir().unwrap();
        let f = tracker(dir.path());
        f.begin("web-3", 200, "POST", "/api/order", Credentials::default());
        f.submitted("web-3", Some((200, Some("veloz_3".into()))), None);
        {
            let mut t = lock(&f.table);
            let tr = t.flows.get_mut("web-3").unwrap();
            tr.p.state = OrderState::from_json(&serde_json::json!({"status": "FILLED"}));
            tr.refused[1] = true;
        }
        f.sweep(true);
        let s = f.summary();
        assert_eq!((s.compared, s.poll_unauthorized_flows, s.open), (0, 1, 0));
        assert!(s.by_kind.is_empty());
        assert_eq!(f.lines.load(Ordering::Relaxed), 0);
        assert_eq!(f.ignored_lines.load(Ordering::Relaxed), 1);
        f.writer.flush().unwrap();
        let text = std::fs::read_to_string(dir.path().join("run/discrepancies.ndjson")).unwrap();
        let line: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(
            (&line["kind"], &line["class"], &line["flow_id"]),
            (
                &Value::from("not-compared"),
                &Value::from("ignored"),
                &Value::from("web-3")
            )
        );
        assert!(
            line["detail"]
                .as_str()
                .unwrap()
                .contains("candidate refused"),
            "{line}"
        );
    }

    /// Runs one submit → cancel flow through the tracker: the candidate's fill event comes
    /// before its cancel leaves (`fill_first`) or well after its cancel was answered.
    async fn race_flow(fill_first: bool) -> (FlowSummary, Vec<Value>) {
        let dir = tempfile::tempdir().unwrap();
        let f = tracker_with(
            dir.path(),
            "[flows]\nenabled = true\n[[routes]]\ntemplate = \"/api/cancel\"\nmethods = [\"POST\"]\n\
             write_policy = \"mirror\"\nflow = \"cancel\"\nids = { request = [\"body:client_order_id\"] }\n",
        );
        let rule = f.rules.find_route("POST", "/api/cancel").unwrap();
        let ev = |side, name: &str, v: Value| f.on_order_event(side, name, &v);
        f.begin("w-1", 200, "POST", "/api/order", Credentials::default());
        f.submitted("w-1", Some((200, Some("v-1".into()))), None);
        ev(
            Side::Primary,
            "order_update",
            serde_json::json!({"client_order_id": "w-1", "status": "ACCEPTED"}),
        );
        ev(
            Side::Candidate,
            "order_update",
            serde_json::json!({"client_order_id": "v-1", "status": "ACCEPTED"}),
        );
        let fill = |ev: &dyn Fn(Side, &str, Value)| {
            ev(
                Side::Candidate,
                "fill",
                serde_json::json!({"client_order_id": "v-1", "qty": 1, "price": 5}),
            );
            ev(
                Side::Candidate,
                "order_state",
                serde_json::json!({"client_order_id": "v-1", "status": "FILLED", "executed_qty": 1, "avg_price": 5}),
            );
        };
        if fill_first {
            fill(&ev);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let req = crate::shadow::ShadowRequest {
            method: Method::POST,
            path: "/api/cancel".into(),
            headers: HeaderMap::new(),
            client_host: None,
            body: Bytes::from_static(br#"{"client_order_id":"w-1"}"#),
            marked: false,
        };
        f.rewrite(rule, &req, Duration::from_secs(1), "/api/cancel")
            .await
            .unwrap();
        let ok = crate::shadow::Captured {
            status: http::StatusCode::OK,
            headers: HeaderMap::new(),
            body: Bytes::from_static(br#"{"ok":true}"#),
        };
        observe(&f, rule, &req, &ok, Some(&ok), None);
        ev(
            Side::Primary,
            "order_update",
            serde_json::json!({"client_order_id": "w-1", "status": "CANCELLED"}),
        );
        ev(
            Side::Primary,
            "order_state",
            serde_json::json!({"client_order_id": "w-1", "status": "CANCELLED", "executed_qty": 0}),
        );
        if !fill_first {
            // The fill comes when it was due, long after the cancel was answered.
            tokio::time::sleep(Duration::from_millis(60)).await;
            fill(&ev);
        }
        // Its engine refuses the cancel once the order is filled, either way.
        ev(
            Side::Candidate,
            "order_update",
            serde_json::json!({"client_order_id": "v-1", "status": "REJECTED", "reason": "unknown_order"}),
        );
        f.sweep(true);
        f.writer.flush().unwrap();
        let text = std::fs::read_to_string(dir.path().join("run/discrepancies.ndjson")).unwrap();
        let lines = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            f.noise_lines.load(Ordering::Relaxed) + f.lines.load(Ordering::Relaxed),
            1
        );
        (f.summary(), lines)
    }

    #[tokio::test]
    async fn a_cancel_fill_race_is_noise_and_a_late_fill_a_regression() {
        let (s, lines) = race_flow(true).await;
        assert_eq!(
            (
                s.compared,
                s.matched,
                s.differing,
                s.noise,
                s.cancel_fill_races
            ),
            (1, 0, 0, 1, 1)
        );
        assert!(s.by_kind.is_empty());
        assert_eq!(
            (s.groups[0].class.as_str(), s.groups[0].label.as_deref()),
            ("noise", Some(shadowgate_diff::flow::RACE_CANDIDATE_FILLED))
        );
        assert_eq!(
            (&lines[0]["class"], &lines[0]["label"]),
            (
                &Value::from("noise"),
                &Value::from(shadowgate_diff::flow::RACE_CANDIDATE_FILLED)
            )
        );
        assert!(
            lines[0]["detail"]
                .as_str()
                .unwrap()
                .contains("before the cancel was sent"),
            "{}",
            lines[0]
        );
        let (s, lines) = race_flow(false).await;
        assert_eq!(
            (s.compared, s.differing, s.noise, s.cancel_fill_races),
            (1, 1, 0, 0)
        );
        assert_eq!(s.by_kind.get("state-mismatch"), Some(&1));
        assert_eq!(
            (s.groups[0].class.as_str(), s.groups[0].label.as_deref()),
            ("regression", None)
        );
        assert_eq!(
            (&lines[0]["class"], &lines[0]["label"]),
            (&Value::from("regression"), &Value::Null)
        );
    }

    #[test]
    fn signatures_group_by_kind_and_steps() {
        assert_eq!(
            signature(FlowKind::StateMismatch, "ack,final"),
            signature(FlowKind::StateMismatch, "ack,final")
        );
        assert_ne!(
            signature(FlowKind::StateMismatch, "ack"),
            signature(FlowKind::FillMismatch, "ack")
        );
        assert_eq!(signature_text("x").len(), 16);
    }
}
