//! Order flows: where order ids live per route (`ids`), how whole order lifecycles are
//! observed and compared (`[flows]`), and the pure comparison of two flows.
//!
//! # Design decisions
//! - **A flow is what a client could learn about one order** on one gateway: the submit
//!   answer, the ack or reject, fills (qty, price), the cancel answer and the final state
//!   (status, executed qty, average price). The mirror fills a [`Flow`] per side from
//!   answers, order events and polls; this module only compares two of them.
//! - **One difference per kind per flow.** A flow the candidate rejected differs from the
//!   primary's filled flow in its ack, its fills and its final state; all of that is one
//!   `state-mismatch` naming every differing step, not three findings. Consequences are
//!   suppressed: once the outcome (submit status, ack, final status) differs, fills and
//!   amounts are not compared, so a count of `fill-mismatch` flows is a count of orders whose
//!   outcome agrees but whose executions do not.
//! - **Missing events are only findings when both streams were watched.** Without order
//!   events a flow has no ack or fill steps on either side; steps derived from the final
//!   state are compared instead.
//! - **Known gateway differences are normalized, not compared:** statuses are compared
//!   upper-case, an empty `reason` equals none (C++ strings are never null), and a missing
//!   average price equals 0 when nothing executed (Python `null`, C++ `0.0`).
//! - **A cancel-fill race is noise, from evidence only.** The mirror sends a cancel to the
//!   candidate only after the primary answered it (and after the candidate answered the
//!   submit), so each engine races its own fill against a cancel that arrives at another
//!   time: one side can end CANCELLED and the other FILLED with both gateways right. The
//!   outcome difference is classed noise ([`Noise`], label [`RACE_CANDIDATE_FILLED`] or
//!   [`RACE_PRIMARY_FILLED`]) only when each side's own evidence ([`FlowTimes`], on the
//!   observer's clock) shows the other order: one side cancelled with nothing executed, the
//!   other filled *before its cancel reached it* — its fill was seen before the cancel was
//!   sent to it, or it refused the cancel after the fill (a reject after the ack in its own
//!   event order, or a refusing cancel answer after the fill was seen) and, allowing for that
//!   side's own event lag (its ack's arrival after its submit answer), the fill was seen no
//!   later than its cancel answer. Anything else — a side that filled although its cancel was
//!   answered well before the fill showed, no timings, a timeout, a different ack — stays a
//!   regression: a candidate that fills when it should not is a real bug. Noise is kept
//!   apart and counted, never dropped and never a match.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::error::RuleError;
use crate::rules::Tolerance;

// ----------------------------------------------------------------------------------------
// Raw rules
// ----------------------------------------------------------------------------------------

/// One id location rule of a route (`ids = { kind = "order", primary = "/client_order_id",
/// candidate = "/data/client_order_id" }`, or a list of them).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawIds {
    /// What the id names (`order`, `venue`, ...): ids of one kind map to each other.
    pub kind: Option<String>,
    /// JSON Pointer of the id in the primary's answer (learned from).
    pub primary: Option<String>,
    /// JSON Pointer of the id in the candidate's answer (learned from).
    pub candidate: Option<String>,
    /// Where a request on this route carries a primary id, rewritten to the candidate's id
    /// in the candidate's copy: `body:<field or /pointer>`, `query:<name>`, `capture:<name>`.
    pub request: Vec<String>,
    /// What to do with a request id the map does not know: `skip` (default: the copy is not
    /// sent, and reported) or `send` (sent as it is, counted: for reads of ids that may not
    /// have been placed through the mirror, so their answers are still compared).
    pub unmapped: Option<String>,
}

/// `ids` as written: one table or a list of tables.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawIdsField {
    /// `ids = { ... }`
    One(RawIds),
    /// `ids = [{ ... }, { ... }]`
    Many(Vec<RawIds>),
}

impl Default for RawIdsField {
    fn default() -> Self {
        RawIdsField::Many(Vec::new())
    }
}

impl RawIdsField {
    fn entries(&self) -> &[RawIds] {
        match self {
            RawIdsField::One(one) => std::slice::from_ref(one),
            RawIdsField::Many(many) => many,
        }
    }
}

/// One side's order-state poll.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawFlowSide {
    /// Path (and query) of the order-state route, with `{id}` for this side's order id;
    /// absent: this side is not polled.
    pub poll: Option<String>,
    /// JSON Pointer of the order-state object in the answer (`/data`); default the root.
    pub unwrap: Option<String>,
}

/// The `[flows]` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawFlows {
    /// Track and compare order flows (default true when any route has a `flow` step).
    pub enabled: Option<bool>,
    /// A flow with no news for this long is polled (when polling is set up) or compared.
    pub quiet_ms: Option<u64>,
    /// A flow not final on both sides this long after its submit is compared as it is, and
    /// the side that is not final is reported as `timeout`.
    pub timeout_ms: Option<u64>,
    /// Statuses that end a flow (upper-case; default FILLED, CANCELLED, CANCELED, REJECTED).
    pub final_statuses: Option<Vec<String>>,
    /// Tolerance of fill and average prices (quantities are compared exactly).
    pub price_tolerance: Option<crate::rules::RawTolerance>,
    /// Most flows tracked at once; more are not tracked (and counted).
    pub max_flows: Option<usize>,
    /// Primary's order-state poll.
    pub primary: RawFlowSide,
    /// Candidate's order-state poll.
    pub candidate: RawFlowSide,
}

// ----------------------------------------------------------------------------------------
// Validated rules
// ----------------------------------------------------------------------------------------

/// Where a request carries an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdLocation {
    /// A JSON body field: a top-level name or a JSON Pointer.
    Body(String),
    /// A query parameter.
    Query(String),
    /// A capture of the route template.
    Capture(String),
}

/// A validated id rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdRule {
    /// What the id names (`order` by default).
    pub kind: String,
    /// JSON Pointer into the primary's answer.
    pub primary: Option<String>,
    /// JSON Pointer into the candidate's answer.
    pub candidate: Option<String>,
    /// Request-side locations to rewrite.
    pub request: Vec<IdLocation>,
    /// Send a request whose id is not in the map as it is (instead of not at all).
    pub send_unmapped: bool,
}

/// The role of a route in an order flow (`flow = "submit"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowStep {
    /// Places an order; its answer carries the order id.
    Submit,
    /// Cancels an order.
    Cancel,
    /// Reads an order's state.
    State,
}

impl FlowStep {
    /// The name used in rules and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            FlowStep::Submit => "submit",
            FlowStep::Cancel => "cancel",
            FlowStep::State => "state",
        }
    }
}

/// One side's order-state poll, validated.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FlowSide {
    /// Path template with `{id}`.
    pub poll: Option<String>,
    /// Where the state object is in the answer.
    pub unwrap: String,
}

impl FlowSide {
    /// The poll path for `id` (the id is percent-encoded where it needs to be).
    pub fn poll_path(&self, id: &str) -> Option<String> {
        let tpl = self.poll.as_deref()?;
        Some(tpl.replace("{id}", &encode_component(id)))
    }

    /// The state object of an answer body.
    pub fn state_of<'v>(&self, body: &'v Value) -> Option<&'v Value> {
        body.pointer(&self.unwrap)
    }
}

/// The `[flows]` settings.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowRules {
    /// Track flows.
    pub enabled: bool,
    /// Quiet time before a poll or a comparison (ms).
    pub quiet_ms: u64,
    /// Time after the submit before a flow is compared as it is (ms).
    pub timeout_ms: u64,
    /// Final statuses (upper-case).
    pub final_statuses: Vec<String>,
    /// Price tolerance.
    pub price_tolerance: Tolerance,
    /// Most flows tracked at once.
    pub max_flows: usize,
    /// Primary's poll.
    pub primary: FlowSide,
    /// Candidate's poll.
    pub candidate: FlowSide,
}

impl Default for FlowRules {
    fn default() -> Self {
        FlowRules {
            enabled: false,
            quiet_ms: 1000,
            timeout_ms: 10_000,
            final_statuses: ["FILLED", "CANCELLED", "CANCELED", "REJECTED"]
                .map(str::to_owned)
                .to_vec(),
            price_tolerance: Tolerance::EXACT,
            max_flows: 100_000,
            primary: FlowSide::default(),
            candidate: FlowSide::default(),
        }
    }
}

impl FlowRules {
    /// Whether `status` ends a flow.
    pub fn is_final(&self, status: &str) -> bool {
        self.final_statuses
            .iter()
            .any(|s| s.eq_ignore_ascii_case(status))
    }
}

fn pointer_ok(p: &str) -> bool {
    p.is_empty() || p.starts_with('/')
}

/// Validates a route's `ids` and `flow` (`key` is `routes[i]`; `captures` are the template's).
pub(crate) fn compile_ids(
    raw: &RawIdsField,
    flow: Option<&str>,
    key: &str,
    captures: &[String],
    errs: &mut Vec<RuleError>,
) -> (Vec<IdRule>, Option<FlowStep>) {
    let invalid = |errs: &mut Vec<RuleError>, k: String, reason: String| {
        errs.push(RuleError::Invalid { key: k, reason });
    };
    let mut out = Vec::new();
    let many = matches!(raw, RawIdsField::Many(_));
    for (i, r) in raw.entries().iter().enumerate() {
        let k = if many {
            format!("{key}.ids[{i}]")
        } else {
            format!("{key}.ids")
        };
        let kind = r.kind.clone().unwrap_or_else(|| "order".to_owned());
        if kind.is_empty()
            || !kind
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            invalid(
                errs,
                format!("{k}.kind"),
                format!("{kind:?}: use a short name such as order or venue"),
            );
        }
        for (name, p) in [("primary", &r.primary), ("candidate", &r.candidate)] {
            if let Some(p) = p
                && !pointer_ok(p)
            {
                invalid(
                    errs,
                    format!("{k}.{name}"),
                    format!("{p:?} is not a JSON Pointer (it starts with /)"),
                );
            }
        }
        if r.primary.is_some() != r.candidate.is_some() {
            invalid(
                errs,
                k.clone(),
                "set both primary and candidate (where each gateway's answer carries the id), or neither".to_owned(),
            );
        }
        let mut request = Vec::new();
        for (j, loc) in r.request.iter().enumerate() {
            let lk = format!("{k}.request[{j}]");
            match loc.split_once(':') {
                Some(("body", f)) if !f.is_empty() && (!f.starts_with('/') || f.len() > 1) => {
                    request.push(IdLocation::Body(f.to_owned()));
                }
                Some(("query", q)) if !q.is_empty() => {
                    request.push(IdLocation::Query(q.to_owned()))
                }
                Some(("capture", c)) if captures.iter().any(|x| x == c) => {
                    request.push(IdLocation::Capture(c.to_owned()));
                }
                Some(("capture", c)) => {
                    invalid(errs, lk, format!("the template has no capture {{{c}}}"));
                }
                _ => invalid(
                    errs,
                    lk,
                    format!(
                        "{loc:?}: use body:<field or /pointer>, query:<name> or capture:<name>"
                    ),
                ),
            }
        }
        if r.primary.is_none() && r.request.is_empty() {
            invalid(
                errs,
                k.clone(),
                "says nothing: set primary/candidate (learn) or request (rewrite)".to_owned(),
            );
        }
        let send_unmapped = match r.unmapped.as_deref() {
            None | Some("skip") => false,
            Some("send") => true,
            Some(other) => {
                invalid(
                    errs,
                    format!("{k}.unmapped"),
                    format!("{other:?}: use skip or send"),
                );
                false
            }
        };
        out.push(IdRule {
            kind,
            primary: r.primary.clone(),
            candidate: r.candidate.clone(),
            request,
            send_unmapped,
        });
    }
    let step = flow.and_then(|f| match f {
        "submit" => Some(FlowStep::Submit),
        "cancel" => Some(FlowStep::Cancel),
        "state" => Some(FlowStep::State),
        other => {
            invalid(
                errs,
                format!("{key}.flow"),
                format!("{other:?}: use submit, cancel or state"),
            );
            None
        }
    });
    if step.is_some() && !out.iter().any(|r| r.kind == "order") {
        invalid(
            errs,
            format!("{key}.flow"),
            "a flow step needs an `ids` rule of kind \"order\" saying where the order id is"
                .to_owned(),
        );
    }
    if step == Some(FlowStep::Submit)
        && !out.iter().any(|r| r.kind == "order" && r.primary.is_some())
    {
        invalid(
            errs,
            format!("{key}.ids"),
            "a submit route needs primary and candidate pointers of the order id in the answers"
                .to_owned(),
        );
    }
    (out, step)
}

/// Validates `[flows]`; `any_step` says whether some route has a flow step.
pub(crate) fn compile_flows(
    raw: &RawFlows,
    any_step: bool,
    errs: &mut Vec<RuleError>,
) -> FlowRules {
    let d = FlowRules::default();
    let mut invalid = |k: &str, reason: String| {
        errs.push(RuleError::Invalid {
            key: format!("flows.{k}"),
            reason,
        });
    };
    let quiet_ms = raw.quiet_ms.unwrap_or(d.quiet_ms);
    if quiet_ms == 0 {
        invalid("quiet_ms", "must be more than 0".to_owned());
    }
    let timeout_ms = raw.timeout_ms.unwrap_or(d.timeout_ms);
    if timeout_ms < quiet_ms {
        invalid(
            "timeout_ms",
            format!("{timeout_ms} must be at least quiet_ms ({quiet_ms})"),
        );
    }
    let max_flows = raw.max_flows.unwrap_or(d.max_flows);
    if max_flows == 0 {
        invalid("max_flows", "must be at least 1".to_owned());
    }
    let final_statuses = raw.final_statuses.as_ref().map_or(d.final_statuses, |l| {
        l.iter().map(|s| s.to_ascii_uppercase()).collect()
    });
    let mut price_tolerance = Tolerance::EXACT;
    if let Some(t) = &raw.price_tolerance {
        for (name, v) in [("abs", t.abs), ("rel", t.rel)] {
            if let Some(x) = v
                && !(x.is_finite() && x >= 0.0)
            {
                invalid(
                    &format!("price_tolerance.{name}"),
                    format!("{x} must be a finite number >= 0"),
                );
            }
        }
        price_tolerance = Tolerance {
            abs: t.abs.unwrap_or(0.0).max(0.0),
            rel: t.rel.unwrap_or(0.0).max(0.0),
        };
    }
    let mut side = |name: &str, s: &RawFlowSide| -> FlowSide {
        if let Some(p) = &s.poll
            && (!p.starts_with('/') || !p.contains("{id}"))
        {
            invalid(
                &format!("{name}.poll"),
                format!("{p:?}: a path starting with / and holding {{id}}"),
            );
        }
        let unwrap = s.unwrap.clone().unwrap_or_default();
        if !pointer_ok(&unwrap) {
            invalid(
                &format!("{name}.unwrap"),
                format!("{unwrap:?} is not a JSON Pointer"),
            );
        }
        FlowSide {
            poll: s.poll.clone(),
            unwrap,
        }
    };
    let primary = side("primary", &raw.primary);
    let candidate = side("candidate", &raw.candidate);
    if primary.poll.is_some() != candidate.poll.is_some() {
        invalid(
            "candidate.poll",
            "poll both sides or neither (one-sided states cannot be compared)".to_owned(),
        );
    }
    FlowRules {
        enabled: raw.enabled.unwrap_or(any_step),
        quiet_ms,
        timeout_ms,
        final_statuses,
        price_tolerance,
        max_flows,
        primary,
        candidate,
    }
}

/// Percent-encodes what cannot stand in a path segment or query value as it is.
fn encode_component(s: &str) -> String {
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

// ----------------------------------------------------------------------------------------
// Flows
// ----------------------------------------------------------------------------------------

/// An order's lifecycle on one gateway, as observed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Flow {
    /// This side's order id.
    pub id: Option<String>,
    /// Status of the submit answer; `None`: no answer (failed or never sent).
    pub submit: Option<u16>,
    /// The ack or reject from an order event: `Some(true)` accepted.
    pub ack: Option<bool>,
    /// The reject reason from the event.
    pub reject_reason: Option<String>,
    /// Fills from order events, in order.
    pub fills: Vec<Fill>,
    /// Status of the cancel answer, if the client cancelled.
    pub cancel: Option<u16>,
    /// The latest order state (from state answers, state events or polls).
    pub state: Option<OrderState>,
    /// Lifecycle events in the order they came (ack, reject, fill, cancelled).
    pub sequence: Vec<Step>,
    /// Whether order events of this side were being watched.
    pub events_watched: bool,
    /// When things were seen, for telling a cancel-fill race from a regression.
    pub times: FlowTimes,
}

/// When a side's flow steps were seen, as offsets from the flow's start on the observer's
/// (the mirror's) clock; the first sighting of each. What cannot be observed stays `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowTimes {
    /// The side's answer to the submit arrived.
    pub submit_answered: Option<Duration>,
    /// The ack (or reject) event arrived.
    pub ack_seen: Option<Duration>,
    /// First evidence of an execution arrived: a fill event, or a state (event, answer or
    /// poll) showing FILLED or an executed quantity.
    pub fill_seen: Option<Duration>,
    /// The cancel was sent to this side (known for the candidate: the mirror sends its copy;
    /// the primary's cancel passes through before the mirror sees it).
    pub cancel_sent: Option<Duration>,
    /// The side's answer to the cancel arrived.
    pub cancel_answered: Option<Duration>,
    /// The side refused the cancel: a reject event after the ack, or a non-2xx cancel answer.
    pub cancel_refused: Option<Duration>,
    /// The first refusal event: whether it came after a fill in the side's own event order
    /// (its engine says the order was no longer open when the cancel reached it).
    pub refused_after_fill: Option<bool>,
}

/// One execution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fill {
    /// Quantity.
    pub qty: f64,
    /// Price.
    pub price: f64,
}

/// An order's state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OrderState {
    /// Status (upper-case).
    pub status: String,
    /// Executed quantity.
    pub executed_qty: f64,
    /// Average price, if any.
    pub avg_price: Option<f64>,
    /// Reason of a reject (empty = none).
    pub reason: Option<String>,
}

impl OrderState {
    /// Reads a state object (`status`, `executed_qty`, `avg_price`, `reason`); `None` when it
    /// has no status.
    pub fn from_json(v: &Value) -> Option<OrderState> {
        let status = v.get("status")?.as_str()?.trim().to_ascii_uppercase();
        if status.is_empty() {
            return None;
        }
        let num = |k: &str| v.get(k).and_then(Value::as_f64);
        Some(OrderState {
            status,
            executed_qty: num("executed_qty").unwrap_or(0.0),
            avg_price: num("avg_price"),
            reason: v
                .get("reason")
                .and_then(Value::as_str)
                .filter(|r| !r.is_empty())
                .map(str::to_owned),
        })
    }
}

/// A lifecycle event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Step {
    /// Accepted.
    Ack,
    /// Rejected.
    Reject,
    /// A fill.
    Fill,
    /// Cancelled.
    Cancelled,
}

impl Step {
    /// Name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Ack => "ack",
            Step::Reject => "reject",
            Step::Fill => "fill",
            Step::Cancelled => "cancelled",
        }
    }
}

impl Flow {
    /// Applies one order event (`order_update`, `order_state`, `fill`, or a C++
    /// `order-update` whose data says its `type`). Returns false when it is not an order
    /// lifecycle event.
    pub fn apply_event(&mut self, event: &str, data: &Value) -> bool {
        self.apply(event, data, None)
    }

    /// [`Flow::apply_event`] for an event that arrived `at` (offset from the flow's start):
    /// also notes when the ack, the first fill evidence and a refused cancel were seen.
    pub fn apply_event_at(&mut self, event: &str, data: &Value, at: Duration) -> bool {
        let changed = self.apply(event, data, Some(at));
        self.note_seen(at);
        changed
    }

    /// Notes, from what the flow holds now, the first sighting of its ack and of its first
    /// execution (after a state answer or poll `at`).
    pub fn note_seen(&mut self, at: Duration) {
        if self.ack.is_some() {
            self.times.ack_seen.get_or_insert(at);
        }
        if self.has_executed() {
            self.times.fill_seen.get_or_insert(at);
        }
    }

    /// Notes a cancel answer with `status` arriving `at`.
    pub fn note_cancel_answer(&mut self, status: u16, at: Duration) {
        self.times.cancel_answered.get_or_insert(at);
        if !(200..300).contains(&status) {
            self.times.cancel_refused.get_or_insert(at);
        }
    }

    /// Whether anything executed, as far as the flow knows.
    fn has_executed(&self) -> bool {
        !self.fills.is_empty()
            || self
                .state
                .as_ref()
                .is_some_and(|s| s.executed_qty > 0.0 || s.status == "FILLED")
    }

    fn apply(&mut self, event: &str, data: &Value, at: Option<Duration>) -> bool {
        let kind = data
            .get("type")
            .and_then(Value::as_str)
            .filter(|_| event == "order-update" || event == "message" || event.is_empty())
            .unwrap_or(event);
        self.events_watched = true;
        match kind {
            "fill" => {
                let num = |k: &str| data.get(k).and_then(Value::as_f64);
                let (Some(qty), Some(price)) = (num("qty"), num("price")) else {
                    return false;
                };
                self.fills.push(Fill { qty, price });
                self.sequence.push(Step::Fill);
                true
            }
            "order_update" => {
                let status = data
                    .get("status")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_ascii_uppercase();
                match status.as_str() {
                    "ACCEPTED" | "NEW" => {
                        self.ack = Some(true);
                        self.sequence.push(Step::Ack);
                    }
                    // A reject after the ack is a refused cancel (unknown order): the order
                    // itself is unchanged.
                    "REJECTED" if self.ack.is_none() => {
                        self.ack = Some(false);
                        self.reject_reason = data
                            .get("reason")
                            .and_then(Value::as_str)
                            .filter(|r| !r.is_empty())
                            .map(str::to_owned);
                        self.sequence.push(Step::Reject);
                    }
                    "CANCELLED" | "CANCELED" => self.sequence.push(Step::Cancelled),
                    "REJECTED" => {
                        // The refused cancel: when, and whether the engine had filled first.
                        if self.times.refused_after_fill.is_none() {
                            self.times.refused_after_fill = Some(self.has_executed());
                        }
                        if let Some(at) = at {
                            self.times.cancel_refused.get_or_insert(at);
                        }
                        return false;
                    }
                    _ => return false,
                }
                true
            }
            "order_state" => match OrderState::from_json(data) {
                Some(s) => {
                    self.state = Some(s);
                    true
                }
                None => false,
            },
            _ => false,
        }
    }

    /// Whether the events of a watched side have caught up with its state: an ack or reject,
    /// fills adding up to the executed quantity, the cancel of a cancelled order. A state
    /// from a poll can be ahead of a lagging stream; comparing then would report events as
    /// missing that are still on their way. Always true when events are not watched.
    pub fn events_complete(&self) -> bool {
        if !self.events_watched {
            return true;
        }
        let Some(state) = &self.state else {
            return self.ack == Some(false);
        };
        let filled: f64 = self.fills.iter().map(|f| f.qty).sum();
        self.ack.is_some()
            && filled + 1e-9 >= state.executed_qty
            && (!matches!(state.status.as_str(), "CANCELLED" | "CANCELED")
                || self.sequence.contains(&Step::Cancelled))
    }

    /// Whether the flow has ended (its state is final).
    pub fn is_final(&self, rules: &FlowRules) -> bool {
        self.state
            .as_ref()
            .is_some_and(|s| rules.is_final(&s.status))
            || self.ack == Some(false)
    }
}

/// Kinds of flow differences.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FlowKind {
    /// A step the primary took is missing on the candidate.
    MissingOnCandidate,
    /// The candidate took a step the primary did not.
    ExtraOnCandidate,
    /// Outcome differs (submit status, ack/reject, final status).
    StateMismatch,
    /// Executions differ (qty exactly, price beyond the tolerance).
    FillMismatch,
    /// The same steps in another order.
    SequenceMismatch,
    /// A side did not reach a final state in time.
    Timeout,
}

impl FlowKind {
    /// Name in reports (`missing-on-candidate`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            FlowKind::MissingOnCandidate => "missing-on-candidate",
            FlowKind::ExtraOnCandidate => "extra-on-candidate",
            FlowKind::StateMismatch => "state-mismatch",
            FlowKind::FillMismatch => "fill-mismatch",
            FlowKind::SequenceMismatch => "sequence-mismatch",
            FlowKind::Timeout => "timeout",
        }
    }

    /// Every kind.
    pub const ALL: [FlowKind; 6] = [
        FlowKind::MissingOnCandidate,
        FlowKind::ExtraOnCandidate,
        FlowKind::StateMismatch,
        FlowKind::FillMismatch,
        FlowKind::SequenceMismatch,
        FlowKind::Timeout,
    ];
}

/// One differing step.
#[derive(Debug, Clone, PartialEq)]
pub struct StepDiff {
    /// Which step (`submit`, `ack`, `fills/0/price`, `final/status`, ...).
    pub step: String,
    /// The primary's value (`null` when absent).
    pub primary: Value,
    /// The candidate's value.
    pub candidate: Value,
}

/// One flow difference: a kind and the steps that differ.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowDifference {
    /// Kind.
    pub kind: FlowKind,
    /// The differing steps.
    pub steps: Vec<StepDiff>,
    /// Set when the difference is explained by how the flow was mirrored, not by the
    /// candidate: reported as noise with this label and evidence, never as a regression.
    pub noise: Option<Noise>,
}

/// Label of an outcome difference where the candidate filled before its cancel reached it
/// and the primary cancelled first.
pub const RACE_CANDIDATE_FILLED: &str =
    "cancel-fill race: the cancel reached the candidate after its fill";
/// Label of the reverse: the primary filled before its cancel reached it, the candidate
/// cancelled first.
pub const RACE_PRIMARY_FILLED: &str =
    "cancel-fill race: the cancel reached the primary after its fill";

/// Why a difference is noise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Noise {
    /// Short label for reports ([`RACE_CANDIDATE_FILLED`], [`RACE_PRIMARY_FILLED`]).
    pub label: &'static str,
    /// The evidence, in words (times are offsets from the flow's start).
    pub evidence: String,
}

impl FlowDifference {
    /// The step names joined with `,` (what groups alike differences).
    pub fn step_names(&self) -> String {
        let mut names: Vec<&str> = self
            .steps
            .iter()
            .map(|s| s.step.split('/').next().unwrap_or(&s.step))
            .collect();
        names.dedup();
        names.join(",")
    }
}

fn num(x: f64) -> Value {
    serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
}

fn opt_str(s: Option<&str>) -> Value {
    s.map_or(Value::Null, |s| Value::String(s.to_owned()))
}

/// Compares the primary's flow with the candidate's; `timed_out` says which sides did not
/// end in time. Differences go to `out` (cleared first), at most one per kind. An outcome
/// difference the sides' evidence explains as a cancel-fill race carries [`Noise`].
pub fn compare_flows(
    rules: &FlowRules,
    p: &Flow,
    c: &Flow,
    timed_out: (bool, bool),
    out: &mut Vec<FlowDifference>,
) {
    compare(rules, p, c, timed_out, out);
    let Some(noise) = cancel_fill_race(p, c) else {
        return;
    };
    // Only an outcome difference that is nothing but the race's consequence (the final
    // status, and the cancel answer of the side that refused it) is explained by it.
    if let Some(d) = out.iter_mut().find(|d| {
        d.kind == FlowKind::StateMismatch
            && d.steps
                .iter()
                .all(|s| s.step == "final/status" || s.step == "cancel")
    }) {
        d.noise = Some(noise);
    }
}

/// The race between a cancel and a fill, when each side's evidence shows it: one side
/// cancelled first, the other filled before its cancel reached it (see the module docs).
pub fn cancel_fill_race(p: &Flow, c: &Flow) -> Option<Noise> {
    if let (Some(cancelled), Some(filled)) = (cancelled_first(p), filled_first(c)) {
        return Some(Noise {
            label: RACE_CANDIDATE_FILLED,
            evidence: format!("candidate: {filled}; primary: {cancelled}"),
        });
    }
    if let (Some(filled), Some(cancelled)) = (filled_first(p), cancelled_first(c)) {
        return Some(Noise {
            label: RACE_PRIMARY_FILLED,
            evidence: format!("primary: {filled}; candidate: {cancelled}"),
        });
    }
    None
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// The side got a cancel and its engine took it before any fill: cancelled, nothing executed.
fn cancelled_first(f: &Flow) -> Option<String> {
    let st = f.state.as_ref()?;
    let got_cancel = f.cancel.is_some() || f.times.cancel_sent.is_some();
    (matches!(st.status.as_str(), "CANCELLED" | "CANCELED")
        && st.executed_qty == 0.0
        && f.fills.is_empty()
        && got_cancel)
        .then(|| "cancelled with nothing executed".to_owned())
}

/// The side got a cancel, ended filled, and its evidence shows the fill came before the
/// cancel reached it (module docs); the evidence in words.
fn filled_first(f: &Flow) -> Option<String> {
    let st = f.state.as_ref()?;
    if st.status != "FILLED" || f.sequence.contains(&Step::Cancelled) {
        return None;
    }
    let t = &f.times;
    let fill = t.fill_seen?;
    // The fill was seen before the cancel even left for this side.
    if let Some(sent) = t.cancel_sent
        && fill <= sent
    {
        return Some(format!(
            "fill seen at {} ms, before the cancel was sent to it at {} ms",
            ms(fill),
            ms(sent)
        ));
    }
    // The side refused the cancel after the fill: in its own event order, or by an answer
    // that came after the fill was seen (a refusal event before the fill says otherwise).
    let refused_after = match t.refused_after_fill {
        Some(after) => after,
        None => t.cancel_refused.is_some_and(|r| fill <= r),
    };
    if !refused_after {
        return None;
    }
    // ... and the fill happened about when the cancel was answered, not well after: a side
    // that accepted the cancel and filled long after is wrong, whatever it answered later.
    // The fill's arrival is allowed this side's own event lag (its ack after its answer).
    let answered = t.cancel_answered.or(t.cancel_sent)?;
    let lag = match (t.ack_seen, t.submit_answered) {
        (Some(a), Some(s)) => a.saturating_sub(s),
        _ => Duration::ZERO,
    };
    (fill.saturating_sub(lag) <= answered).then(|| {
        format!(
            "fill seen at {} ms (event lag {} ms), cancel refused after the fill, cancel answered at {} ms",
            ms(fill),
            ms(lag),
            ms(answered)
        )
    })
}

fn compare(
    rules: &FlowRules,
    p: &Flow,
    c: &Flow,
    timed_out: (bool, bool),
    out: &mut Vec<FlowDifference>,
) {
    out.clear();
    let mut add = |kind: FlowKind, step: String, pv: Value, cv: Value| {
        let d = StepDiff {
            step,
            primary: pv,
            candidate: cv,
        };
        match out.iter_mut().find(|x| x.kind == kind) {
            Some(x) => x.steps.push(d),
            None => out.push(FlowDifference {
                kind,
                steps: vec![d],
                noise: None,
            }),
        }
    };
    // The submit: no answer at all is a missing flow; another status an outcome.
    match (p.submit, c.submit) {
        (Some(ps), None) => {
            add(
                FlowKind::MissingOnCandidate,
                "submit".into(),
                ps.into(),
                Value::Null,
            );
            return;
        }
        (Some(ps), Some(cs)) if (200..300).contains(&ps) != (200..300).contains(&cs) => {
            add(
                FlowKind::StateMismatch,
                "submit".into(),
                ps.into(),
                cs.into(),
            );
            return;
        }
        _ => {}
    }
    let (pt, ct) = timed_out;
    if pt || ct {
        let status = |f: &Flow| opt_str(f.state.as_ref().map(|s| s.status.as_str()));
        add(
            FlowKind::Timeout,
            match (pt, ct) {
                (true, true) => "final/both",
                (true, false) => "final/primary",
                _ => "final/candidate",
            }
            .into(),
            status(p),
            status(c),
        );
    }
    let watched = p.events_watched && c.events_watched;
    // The outcome: ack or reject, then the final status.
    let mut outcome_differs = false;
    match (p.ack, c.ack) {
        (Some(a), Some(b)) if a != b => {
            let v = |f: &Flow, ok: bool| {
                if ok {
                    Value::String("ACCEPTED".into())
                } else {
                    Value::String(format!(
                        "REJECTED{}",
                        f.reject_reason
                            .as_deref()
                            .map(|r| format!(" {r}"))
                            .unwrap_or_default()
                    ))
                }
            };
            add(FlowKind::StateMismatch, "ack".into(), v(p, a), v(c, b));
            outcome_differs = true;
        }
        (Some(a), None) if watched => add(
            FlowKind::MissingOnCandidate,
            "ack".into(),
            Value::String(if a { "ACCEPTED" } else { "REJECTED" }.into()),
            Value::Null,
        ),
        (None, Some(b)) if watched => add(
            FlowKind::ExtraOnCandidate,
            "ack".into(),
            Value::Null,
            Value::String(if b { "ACCEPTED" } else { "REJECTED" }.into()),
        ),
        _ => {}
    }
    if let (Some(ps), Some(cs)) = (&p.state, &c.state)
        && ps.status != cs.status
        && !pt
        && !ct
    {
        add(
            FlowKind::StateMismatch,
            "final/status".into(),
            ps.status.clone().into(),
            cs.status.clone().into(),
        );
        outcome_differs = true;
    }
    if let (Some(pc), Some(cc)) = (p.cancel, c.cancel)
        && (200..300).contains(&pc) != (200..300).contains(&cc)
    {
        add(
            FlowKind::StateMismatch,
            "cancel".into(),
            pc.into(),
            cc.into(),
        );
        outcome_differs = true;
    }
    if outcome_differs {
        // Fills and amounts follow from the outcome: not findings of their own.
        return;
    }
    // Fills from events.
    if watched {
        let n = p.fills.len().min(c.fills.len());
        for i in 0..n {
            let (a, b) = (p.fills[i], c.fills[i]);
            if a.qty != b.qty {
                add(
                    FlowKind::FillMismatch,
                    format!("fills/{i}/qty"),
                    num(a.qty),
                    num(b.qty),
                );
            }
            if !rules.price_tolerance.accepts(a.price, b.price) {
                add(
                    FlowKind::FillMismatch,
                    format!("fills/{i}/price"),
                    num(a.price),
                    num(b.price),
                );
            }
        }
        for (i, f) in p.fills.iter().enumerate().skip(n) {
            add(
                FlowKind::MissingOnCandidate,
                format!("fills/{i}"),
                fill_json(f),
                Value::Null,
            );
        }
        for (i, f) in c.fills.iter().enumerate().skip(n) {
            add(
                FlowKind::ExtraOnCandidate,
                format!("fills/{i}"),
                Value::Null,
                fill_json(f),
            );
        }
        let cancelled = |f: &Flow| f.sequence.contains(&Step::Cancelled);
        match (cancelled(p), cancelled(c)) {
            (true, false) => add(
                FlowKind::MissingOnCandidate,
                "cancelled".into(),
                true.into(),
                Value::Null,
            ),
            (false, true) => add(
                FlowKind::ExtraOnCandidate,
                "cancelled".into(),
                Value::Null,
                true.into(),
            ),
            _ => {}
        }
        // Same steps, another order.
        if p.sequence != c.sequence {
            let mut a = p.sequence.clone();
            let mut b = c.sequence.clone();
            a.sort_unstable();
            b.sort_unstable();
            if a == b {
                let names = |s: &[Step]| {
                    Value::String(s.iter().map(|x| x.as_str()).collect::<Vec<_>>().join(","))
                };
                add(
                    FlowKind::SequenceMismatch,
                    "sequence".into(),
                    names(&p.sequence),
                    names(&c.sequence),
                );
            }
        }
    }
    // Amounts of the final state.
    if let (Some(ps), Some(cs)) = (&p.state, &c.state) {
        if ps.executed_qty != cs.executed_qty {
            add(
                FlowKind::FillMismatch,
                "final/executed_qty".into(),
                num(ps.executed_qty),
                num(cs.executed_qty),
            );
        }
        // Nothing executed: no average price, however each gateway spells that.
        let avg = |s: &OrderState| match s.avg_price {
            None if s.executed_qty == 0.0 => Some(0.0),
            other => other,
        };
        match (avg(ps), avg(cs)) {
            (Some(a), Some(b)) if !rules.price_tolerance.accepts(a, b) => {
                add(
                    FlowKind::FillMismatch,
                    "final/avg_price".into(),
                    num(a),
                    num(b),
                );
            }
            (Some(a), None) => add(
                FlowKind::FillMismatch,
                "final/avg_price".into(),
                num(a),
                Value::Null,
            ),
            (None, Some(b)) => add(
                FlowKind::FillMismatch,
                "final/avg_price".into(),
                Value::Null,
                num(b),
            ),
            _ => {}
        }
    }
}

fn fill_json(f: &Fill) -> Value {
    serde_json::json!({ "qty": num(f.qty), "price": num(f.price) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn filled(price: f64) -> Flow {
        let mut f = Flow {
            submit: Some(200),
            ..Flow::default()
        };
        f.apply_event(
            "order_update",
            &json!({"status": "ACCEPTED", "client_order_id": "a"}),
        );
        f.apply_event("fill", &json!({"qty": 0.5, "price": price}));
        f.apply_event(
            "order_state",
            &json!({"status": "FILLED", "executed_qty": 0.5, "avg_price": price}),
        );
        f
    }

    fn kinds(out: &[FlowDifference]) -> Vec<FlowKind> {
        out.iter().map(|d| d.kind).collect()
    }

    impl FlowDifference {
        fn steps_names_for_test(&self) -> Vec<&str> {
            self.steps.iter().map(|s| s.step.as_str()).collect()
        }
    }

    #[test]
    fn equal_flows_have_no_difference() {
        let mut out = Vec::new();
        compare_flows(
            &FlowRules::default(),
            &filled(100.0),
            &filled(100.0),
            (false, false),
            &mut out,
        );
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn a_reject_is_one_state_mismatch_not_a_fill_mismatch() {
        let p = filled(100.0);
        let mut c = Flow {
            submit: Some(200),
            ..Flow::default()
        };
        c.apply_event(
            "order-update",
            &json!({"type": "order_update", "status": "REJECTED", "reason": "risk"}),
        );
        c.apply_event(
            "order-update",
            &json!({"type": "order_state", "status": "REJECTED", "reason": "risk"}),
        );
        let mut out = Vec::new();
        compare_flows(&FlowRules::default(), &p, &c, (false, false), &mut out);
        assert_eq!(kinds(&out), vec![FlowKind::StateMismatch]);
        assert_eq!(out[0].step_names(), "ack,final");
        assert_eq!(out[0].steps[0].candidate, json!("REJECTED risk"));
    }

    #[test]
    fn fill_price_within_tolerance_only() {
        let mut rules = FlowRules::default();
        let mut out = Vec::new();
        compare_flows(
            &rules,
            &filled(100.0),
            &filled(100.1),
            (false, false),
            &mut out,
        );
        assert_eq!(kinds(&out), vec![FlowKind::FillMismatch]);
        assert_eq!(out[0].steps.len(), 2, "the fill and the average: {out:?}");
        rules.price_tolerance = Tolerance {
            abs: 0.0,
            rel: 0.01,
        };
        compare_flows(
            &rules,
            &filled(100.0),
            &filled(100.1),
            (false, false),
            &mut out,
        );
        assert!(out.is_empty());
    }

    #[test]
    fn a_dropped_fill_event_is_missing_on_candidate() {
        let p = filled(100.0);
        let mut c = filled(100.0);
        c.fills.clear();
        c.sequence.retain(|s| *s != Step::Fill);
        let mut out = Vec::new();
        compare_flows(&FlowRules::default(), &p, &c, (false, false), &mut out);
        assert_eq!(kinds(&out), vec![FlowKind::MissingOnCandidate]);
        assert_eq!(out[0].steps[0].step, "fills/0");
        // Not watched: nothing to say about events.
        let mut c2 = c.clone();
        c2.events_watched = false;
        compare_flows(&FlowRules::default(), &p, &c2, (false, false), &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn events_must_catch_up_with_a_polled_state() {
        let mut f = Flow {
            events_watched: true,
            state: OrderState::from_json(
                &json!({"status": "FILLED", "executed_qty": 0.5, "avg_price": 1.0}),
            ),
            ..Flow::default()
        };
        assert!(!f.events_complete());
        f.apply_event("order_update", &json!({"status": "ACCEPTED"}));
        assert!(!f.events_complete(), "the fill is still on its way");
        f.apply_event("fill", &json!({"qty": 0.5, "price": 1.0}));
        assert!(f.events_complete());
        f.state = OrderState::from_json(&json!({"status": "CANCELLED"}));
        assert!(!f.events_complete());
        f.apply_event("order_update", &json!({"status": "CANCELLED"}));
        assert!(f.events_complete());
        assert!(Flow::default().events_complete(), "not watched");
    }

    #[test]
    fn extra_fill_and_sequence() {
        let p = filled(100.0);
        let mut c = filled(100.0);
        c.apply_event("fill", &json!({"qty": 0.5, "price": 100.0}));
        let mut out = Vec::new();
        compare_flows(&FlowRules::default(), &p, &c, (false, false), &mut out);
        assert!(kinds(&out).contains(&FlowKind::ExtraOnCandidate));
        let mut c = Flow {
            submit: Some(200),
            ..Flow::default()
        };
        c.apply_event("fill", &json!({"qty": 0.5, "price": 100.0}));
        c.apply_event("order_update", &json!({"status": "ACCEPTED"}));
        c.apply_event(
            "order_state",
            &json!({"status": "FILLED", "executed_qty": 0.5, "avg_price": 100.0}),
        );
        compare_flows(&FlowRules::default(), &p, &c, (false, false), &mut out);
        assert_eq!(kinds(&out), vec![FlowKind::SequenceMismatch]);
    }

    #[test]
    fn known_spelling_differences_are_not_findings() {
        // Python: avg_price null, reason null; C++: 0.0 and "" (veloz-api.md §1.2).
        let p = Flow {
            submit: Some(200),
            cancel: Some(200),
            state: OrderState::from_json(
                &json!({"status": "CANCELLED", "executed_qty": 0.0, "avg_price": null, "reason": null}),
            ),
            ..Flow::default()
        };
        let c = Flow {
            submit: Some(200),
            cancel: Some(200),
            state: OrderState::from_json(
                &json!({"status": "cancelled", "executed_qty": 0, "avg_price": 0.0, "reason": ""}),
            ),
            ..Flow::default()
        };
        let mut out = Vec::new();
        compare_flows(&FlowRules::default(), &p, &c, (false, false), &mut out);
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn missing_candidate_answer_and_timeouts() {
        let p = filled(1.0);
        let c = Flow::default();
        let mut out = Vec::new();
        compare_flows(&FlowRules::default(), &p, &c, (false, false), &mut out);
        assert_eq!(kinds(&out), vec![FlowKind::MissingOnCandidate]);
        let mut c = Flow {
            submit: Some(200),
            ..Flow::default()
        };
        c.apply_event("order_update", &json!({"status": "ACCEPTED"}));
        c.apply_event("fill", &json!({"qty": 0.5, "price": 1.0}));
        compare_flows(&FlowRules::default(), &p, &c, (false, true), &mut out);
        assert_eq!(kinds(&out), vec![FlowKind::Timeout]);
        assert_eq!(out[0].steps[0].step, "final/candidate");
        let c = Flow {
            submit: Some(400),
            ..Flow::default()
        };
        compare_flows(&FlowRules::default(), &p, &c, (false, false), &mut out);
        assert_eq!(kinds(&out), vec![FlowKind::StateMismatch]);
    }

    fn ms_(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A side that got the client's cancel before its fill: accepted at 2 ms, cancelled.
    fn cancelled_at(answered: u64) -> Flow {
        let mut f = Flow {
            submit: Some(200),
            ..Flow::default()
        };
        f.times.submit_answered = Some(Duration::ZERO);
        f.apply_event_at("order_update", &json!({"status": "ACCEPTED"}), ms_(2));
        f.note_cancel_answer(200, ms_(answered));
        f.cancel = Some(200);
        f.apply_event_at(
            "order_update",
            &json!({"status": "CANCELLED"}),
            ms_(answered + 1),
        );
        f.apply_event_at(
            "order_state",
            &json!({"status": "CANCELLED", "executed_qty": 0.0, "avg_price": null}),
            ms_(answered + 1),
        );
        f
    }

    /// A side whose fill event arrived at `fill`, its cancel sent at `sent` (if known) and
    /// answered at `answered`; `refusal`: when its engine's refusal of the cancel arrived.
    fn filled_at(fill: u64, sent: Option<u64>, answered: u64, refusal: Option<u64>) -> Flow {
        let mut f = Flow {
            submit: Some(200),
            ..Flow::default()
        };
        f.times.submit_answered = Some(ms_(5));
        f.times.cancel_sent = sent.map(ms_);
        f.apply_event_at("order_update", &json!({"status": "ACCEPTED"}), ms_(7));
        let mut events = vec![
            (fill, "fill", json!({"qty": 0.5, "price": 100.0})),
            (
                fill,
                "order_state",
                json!({"status": "FILLED", "executed_qty": 0.5, "avg_price": 100.0}),
            ),
        ];
        if let Some(r) = refusal {
            events.push((
                r,
                "order_update",
                json!({"status": "REJECTED", "reason": "unknown_order"}),
            ));
        }
        // In arrival order (a refusal may come before the fill).
        events.sort_by_key(|e| e.0);
        for (t, name, data) in events {
            f.apply_event_at(name, &data, ms_(t));
        }
        f.note_cancel_answer(200, ms_(answered));
        f.cancel = Some(200);
        f
    }

    fn race(p: &Flow, c: &Flow) -> Vec<FlowDifference> {
        let mut out = Vec::new();
        compare_flows(&FlowRules::default(), p, c, (false, false), &mut out);
        out
    }

    #[test]
    fn the_candidate_filled_before_its_cancel_was_sent_is_noise() {
        // Candidate fill after 20 ms, its cancel sent at 60 ms (after the primary's answer).
        let out = race(&cancelled_at(50), &filled_at(20, Some(60), 62, Some(63)));
        assert_eq!(kinds(&out), vec![FlowKind::StateMismatch]);
        assert_eq!(out[0].steps_names_for_test(), ["final/status"]);
        let noise = out[0].noise.as_ref().expect("a race");
        assert_eq!(noise.label, RACE_CANDIDATE_FILLED);
        assert!(
            noise
                .evidence
                .contains("fill seen at 20 ms, before the cancel was sent to it at 60 ms"),
            "{noise:?}"
        );
        // A refusal after the fill alone (the fill seen only after the cancel left, within
        // the side's event lag of its answer) is the same race.
        let out = race(&cancelled_at(50), &filled_at(64, Some(60), 62, Some(65)));
        assert_eq!(
            out[0].noise.as_ref().map(|n| n.label),
            Some(RACE_CANDIDATE_FILLED)
        );
    }

    #[test]
    fn the_primary_filled_before_its_cancel_reached_it_is_noise() {
        // The primary's cancel answer came at 305 ms, its fill at 300 ms and then its engine
        // refused the cancel (the order was gone); the candidate cancelled first.
        let p = filled_at(300, None, 305, Some(306));
        let out = race(&p, &cancelled_at(320));
        assert_eq!(kinds(&out), vec![FlowKind::StateMismatch]);
        let noise = out[0].noise.as_ref().expect("a race");
        assert_eq!(noise.label, RACE_PRIMARY_FILLED);
        assert!(
            noise.evidence.starts_with("primary: fill seen at 300 ms"),
            "{noise:?}"
        );
        // A refusing cancel answer after the fill is evidence too, and its step is part of
        // the same noise.
        let mut p = filled_at(300, None, 305, None);
        p.times = FlowTimes {
            cancel_answered: None,
            cancel_refused: None,
            ..p.times
        };
        p.note_cancel_answer(404, ms_(310));
        p.cancel = Some(404);
        let out = race(&p, &cancelled_at(320));
        assert_eq!(out[0].steps_names_for_test(), ["final/status", "cancel"]);
        assert_eq!(
            out[0].noise.as_ref().map(|n| n.label),
            Some(RACE_PRIMARY_FILLED)
        );
    }

    #[test]
    fn a_candidate_that_fills_after_its_cancel_arrived_is_a_regression() {
        let p = cancelled_at(50);
        // Cancel sent at 50 ms and answered at 52 ms; the fill came at 300 ms, when it was
        // due: the cancel had arrived well before, and no refusal says otherwise.
        let out = race(&p, &filled_at(300, Some(50), 52, None));
        assert_eq!(kinds(&out), vec![FlowKind::StateMismatch]);
        assert_eq!(out[0].noise, None);
        // Its engine refusing the cancel after that late fill does not excuse it.
        let out = race(&p, &filled_at(300, Some(50), 52, Some(301)));
        assert_eq!(out[0].noise, None);
        // Nor does a refusal before the fill (the order was open).
        let out = race(&p, &filled_at(64, Some(60), 62, Some(61)));
        assert_eq!(out[0].noise, None);
        // No timings at all: no evidence, a regression.
        let mut c = filled(100.0);
        c.cancel = Some(200);
        let mut pc = cancelled_at(50);
        pc.times = FlowTimes::default();
        assert_eq!(race(&pc, &c)[0].noise, None);
        // Both cancelled or both filled: no race, and no difference.
        assert!(race(&p, &cancelled_at(80)).is_empty());
        // A side that never got a cancel is not in a race.
        let mut c = filled_at(20, Some(60), 62, None);
        c.cancel = None;
        c.times.cancel_sent = None;
        c.times.cancel_answered = None;
        assert_eq!(cancel_fill_race(&p, &c), None);
    }

    #[test]
    fn id_rules_validate() {
        let mut errs = Vec::new();
        let raw = RawIdsField::One(RawIds {
            kind: None,
            primary: Some("/client_order_id".into()),
            candidate: Some("/data/client_order_id".into()),
            request: vec![],
            unmapped: None,
        });
        let (ids, step) = compile_ids(&raw, Some("submit"), "routes[0]", &[], &mut errs);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(ids[0].kind, "order");
        assert_eq!(step, Some(FlowStep::Submit));
        let raw = RawIdsField::Many(vec![RawIds {
            kind: Some("order".into()),
            primary: Some("nope".into()),
            candidate: None,
            request: vec![
                "capture:x".into(),
                "header:y".into(),
                "query:client_order_id".into(),
            ],
            unmapped: None,
        }]);
        let (ids, _) = compile_ids(
            &raw,
            Some("sideways"),
            "routes[1]",
            &["id".into()],
            &mut errs,
        );
        let keys: Vec<&str> = errs.iter().map(RuleError::key).collect();
        assert_eq!(
            keys,
            vec![
                "routes[1].ids[0].primary",
                "routes[1].ids[0]",
                "routes[1].ids[0].request[0]",
                "routes[1].ids[0].request[1]",
                "routes[1].flow"
            ]
        );
        assert_eq!(
            ids[0].request,
            vec![IdLocation::Query("client_order_id".into())]
        );
    }

    #[test]
    fn flow_rules_validate_and_poll_paths() {
        let mut errs = Vec::new();
        let raw = RawFlows {
            quiet_ms: Some(500),
            primary: RawFlowSide {
                poll: Some("/api/order_state?client_order_id={id}".into()),
                unwrap: None,
            },
            candidate: RawFlowSide {
                poll: Some("/api/orders/{id}".into()),
                unwrap: Some("/data".into()),
            },
            ..RawFlows::default()
        };
        let r = compile_flows(&raw, true, &mut errs);
        assert!(errs.is_empty(), "{errs:?}");
        assert!(r.enabled);
        assert_eq!(
            r.candidate.poll_path("a b/c").unwrap(),
            "/api/orders/a%20b%2Fc"
        );
        let body = json!({"data": {"status": "filled"}});
        assert_eq!(r.candidate.state_of(&body).unwrap()["status"], "filled");
        let bad = RawFlows {
            quiet_ms: Some(0),
            primary: RawFlowSide {
                poll: Some("api".into()),
                unwrap: Some("x".into()),
            },
            ..RawFlows::default()
        };
        compile_flows(&bad, false, &mut errs);
        assert_eq!(errs.len(), 4, "{errs:?}");
    }
}
