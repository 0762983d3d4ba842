//! Server-Sent Events: an incremental parser ([`SseParser`]), the stream rules
//! ([`RawStreamRule`] → [`StreamRule`]) and a pure event matcher ([`StreamMatcher`]) that pairs
//! the primary's and the candidate's events and reports what is missing, extra, different or
//! late.
//!
//! # Design decisions
//!
//! **Parser.** The WHATWG event-stream grammar, fed in arbitrary chunks: lines end in CRLF, LF
//! or CR (a CR at the end of one chunk and an LF at the start of the next are one line end);
//! a leading BOM is skipped; `:` lines are comments (counted: keep-alives); `data` lines are
//! joined with `\n`; a frame is dispatched at a blank line when it has data or an event name.
//! A frame's `id` is the `id` field of that frame only (not the sticky last-event-id), because
//! the matcher uses it to recognize the same event delivered on two client streams. Lines
//! longer than [`SseParser::MAX_LINE`] are dropped and counted, so a garbage stream cannot grow
//! memory without bound.
//!
//! **Types and keys.** Each side's event name maps to a canonical type (`market` and
//! `market-data` → `market`; `order_update`, `order_state`, `fill` and `order-update` →
//! `order`); names no rule lists are their own type. The event's data is parsed as JSON (text
//! that is not JSON is a JSON string), normalized with the type's per-side normalization (the
//! body rules: rename, map values, drop, unwrap) and keyed by the type's JSON Pointers
//! (e.g. `/type`, `/client_order_id`, `/status`). Events without a key pair by type alone.
//!
//! **Matching.** Events of the same (type, key) pair first-in first-out: an arriving event
//! takes the oldest unpaired event of the other side with that (type, key) that arrived at
//! most `late` before it. A pair within `window` (default 2 s) is matched; one further apart is
//! late. Lag is candidate arrival minus primary arrival (signed). An event still unpaired
//! `late` after it arrived is missing (primary) or extra (candidate). FIFO pairing keeps counts
//! exact even when periodic events (market ticks) drift: one dropped tick shifts the pairing by
//! one and leaves exactly one event unpaired.
//!
//! **What is not reported.** The caller marks events that must never be reported themselves
//! (replayed history, the settling time after a subscription starts, the primary's events while
//! the candidate stream was down): they can absorb a partner, but produce no finding and no lag
//! sample, and are counted apart. A judged event pairs with a judged partner first, and with an
//! unjudged one only if it came less than `settle` before (the newest), so replayed history
//! cannot take the partners of live events. Events named in `ignore_events` (default `keepalive`) and
//! comments are counted and skipped.
//!
//! **Data.** A matched pair's data is compared with the diff engine under the type's rules
//! (ignore, noise, tolerance, normalization), so a stream difference is classed exactly as a
//! body difference would be. Missing and extra events carry their data, redacted.
//!
//! **Bounded.** At most `max_pending` unpaired events are kept per side; the oldest is evicted
//! (and counted) beyond that. No clock: the caller passes arrival times as offsets from any
//! fixed origin.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::compare::{Class, Comparer, Comparison, Difference, Exchange, Response, Signature};
use crate::error::RuleError;
use crate::pointer::Pointer;
use crate::route::RouteTemplate;
use crate::rules::{RawCompare, RawRuleSet, RuleSet};
use crate::value::Fnv;

// ----------------------------------------------------------------------------------------
// Parser
// ----------------------------------------------------------------------------------------

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseFrame {
    /// The `id` field of this frame, if it had one.
    pub id: Option<String>,
    /// The event name (`message` when the frame had none).
    pub event: String,
    /// The data lines joined with `\n`.
    pub data: String,
    /// The `retry` field, if it had a valid one.
    pub retry: Option<u64>,
}

/// Incremental event-stream parser (see the module docs).
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    /// The previous chunk ended in CR: an LF starting this one ends no new line.
    after_cr: bool,
    /// Bytes seen yet (a BOM is skipped only at the very start).
    started: bool,
    /// The line being read is over the limit: skip to its end.
    skipping: bool,
    id: Option<String>,
    event: Option<String>,
    data: String,
    has_data: bool,
    retry: Option<u64>,
    comments: u64,
    oversized: u64,
}

impl SseParser {
    /// Longest line kept (1 MiB); longer lines are dropped and counted.
    pub const MAX_LINE: usize = 1 << 20;

    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Comment lines seen (keep-alives).
    pub fn comments(&self) -> u64 {
        self.comments
    }

    /// Lines dropped for being longer than [`Self::MAX_LINE`].
    pub fn oversized(&self) -> u64 {
        self.oversized
    }

    /// Feeds a chunk; complete frames are appended to `out`.
    pub fn feed(&mut self, mut bytes: &[u8], out: &mut Vec<SseFrame>) {
        if !self.started && !bytes.is_empty() {
            // The BOM may itself be split; the stream is ours to read whole, so keep it simple:
            // a BOM is recognized when the first chunk holds it.
            self.started = true;
            if let Some(rest) = bytes.strip_prefix(b"\xEF\xBB\xBF") {
                bytes = rest;
            }
        }
        if self.after_cr {
            self.after_cr = false;
            if let Some(rest) = bytes.strip_prefix(b"\n") {
                bytes = rest;
            }
        }
        while !bytes.is_empty() {
            match bytes.iter().position(|&b| b == b'\n' || b == b'\r') {
                None => {
                    self.push_partial(bytes);
                    return;
                }
                Some(i) => {
                    self.push_partial(&bytes[..i]);
                    let cr = bytes[i] == b'\r';
                    bytes = &bytes[i + 1..];
                    if cr {
                        match bytes.first() {
                            Some(b'\n') => bytes = &bytes[1..],
                            Some(_) => {}
                            None => self.after_cr = true,
                        }
                    }
                    self.end_line(out);
                }
            }
        }
    }

    fn push_partial(&mut self, part: &[u8]) {
        if self.skipping {
            return;
        }
        if self.line.len() + part.len() > Self::MAX_LINE {
            self.skipping = true;
            self.oversized += 1;
            self.line.clear();
            return;
        }
        self.line.extend_from_slice(part);
    }

    fn end_line(&mut self, out: &mut Vec<SseFrame>) {
        if self.skipping {
            self.skipping = false;
            return;
        }
        let line = std::mem::take(&mut self.line);
        self.process(&line, out);
        // Reuse the allocation.
        self.line = line;
        self.line.clear();
    }

    fn process(&mut self, line: &[u8], out: &mut Vec<SseFrame>) {
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if line[0] == b':' {
            self.comments += 1;
            return;
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        let value = String::from_utf8_lossy(value);
        match name {
            b"event" => self.event = Some(value.into_owned()),
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(&value);
                self.has_data = true;
            }
            b"id" if !value.contains('\0') => self.id = Some(value.into_owned()),
            b"retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                self.retry = value.parse().ok();
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, out: &mut Vec<SseFrame>) {
        let id = self.id.take();
        let event = self.event.take();
        let retry = self.retry.take();
        if !self.has_data && event.is_none() {
            return;
        }
        self.has_data = false;
        out.push(SseFrame {
            id,
            event: event
                .filter(|e| !e.is_empty())
                .unwrap_or_else(|| "message".to_owned()),
            data: std::mem::take(&mut self.data),
            retry,
        });
    }
}

// ----------------------------------------------------------------------------------------
// Rules
// ----------------------------------------------------------------------------------------

/// Default pairing window.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(2);
/// Default horizon for late events (and for declaring one missing).
pub const DEFAULT_LATE: Duration = Duration::from_secs(10);
/// Default settling time after a subscription starts (replayed history arrives in it).
pub const DEFAULT_SETTLE: Duration = Duration::from_millis(500);
/// Default unpaired events kept per side.
pub const DEFAULT_MAX_PENDING: usize = 20_000;
/// Default: a candidate stream silent (not even a keep-alive) this long is stalled.
pub const DEFAULT_STALL: Duration = Duration::from_secs(30);
/// Default: the shadow subscription is kept this long after the last client left.
pub const DEFAULT_LINGER: Duration = Duration::from_secs(5);
/// Default first reconnect delay (doubled per failed attempt).
pub const DEFAULT_RECONNECT_MIN: Duration = Duration::from_millis(100);
/// Default longest reconnect delay.
pub const DEFAULT_RECONNECT_MAX: Duration = Duration::from_secs(5);

/// `[[streams]]`: how one event-stream route is compared.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawStreamRule {
    /// Route template of the stream (`/api/stream`).
    pub route: String,
    /// Pairing window in milliseconds (default 2000).
    pub window_ms: Option<u64>,
    /// Pairs further apart than the window but within this are late; unpaired events are
    /// reported after it (default 10000; at least the window).
    pub late_ms: Option<u64>,
    /// After a subscription starts, events arriving within this are history (default 500).
    pub settle_ms: Option<u64>,
    /// Event names skipped on both sides (default `["keepalive"]`).
    pub ignore_events: Option<Vec<String>>,
    /// Unpaired events kept per side (default 20000).
    pub max_pending: Option<usize>,
    /// The candidate stream is stalled after this many ms without a byte, keep-alives
    /// included (default 30000: three missed 10 s keep-alives).
    pub stall_ms: Option<u64>,
    /// Keep the shadow subscription this many ms after the last client left (default 5000).
    pub linger_ms: Option<u64>,
    /// First reconnect delay in ms, doubled per failed attempt (default 100).
    pub reconnect_min_ms: Option<u64>,
    /// Longest reconnect delay in ms (default 5000).
    pub reconnect_max_ms: Option<u64>,
    /// Comparison rules for every event's data (each type's rules add to these).
    pub compare: RawCompare,
    /// Event types: name mapping, key and rules.
    pub events: Vec<RawStreamEvent>,
}

/// `[[streams.events]]`: one canonical event type.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawStreamEvent {
    /// Canonical type name (what reports show).
    #[serde(rename = "type")]
    pub kind: String,
    /// The primary's event names of this type (default: the type name).
    pub primary: Vec<String>,
    /// The candidate's event names of this type (default: the type name).
    pub candidate: Vec<String>,
    /// JSON Pointers into the normalized data that identify one event.
    pub key: Vec<String>,
    /// Comparison rules added to the stream's.
    pub compare: RawCompare,
}

/// One event type, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamType {
    name: String,
    key: Vec<Pointer>,
    rules: RuleSet,
}

impl StreamType {
    /// Canonical name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A validated stream rule.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamRule {
    /// `None` for the defaults applied to a stream no rule covers.
    route: Option<RouteTemplate>,
    window: Duration,
    late: Duration,
    settle: Duration,
    ignore: Vec<String>,
    max_pending: usize,
    stall: Duration,
    linger: Duration,
    reconnect: (Duration, Duration),
    /// Rules for names no type lists.
    fallback: RuleSet,
    types: Vec<StreamType>,
    /// (side, event name) → type index.
    names: BTreeMap<(Side, String), usize>,
}

impl Default for StreamRule {
    fn default() -> Self {
        Self {
            route: None,
            window: DEFAULT_WINDOW,
            late: DEFAULT_LATE,
            settle: DEFAULT_SETTLE,
            ignore: vec!["keepalive".to_owned()],
            max_pending: DEFAULT_MAX_PENDING,
            stall: DEFAULT_STALL,
            linger: DEFAULT_LINGER,
            reconnect: (DEFAULT_RECONNECT_MIN, DEFAULT_RECONNECT_MAX),
            fallback: RuleSet::default(),
            types: Vec::new(),
            names: BTreeMap::new(),
        }
    }
}

impl StreamRule {
    /// A rule with the defaults for `route` (used for streams no rule covers).
    pub fn for_route(route: &str) -> Self {
        Self {
            route: RouteTemplate::parse(route).ok(),
            ..Self::default()
        }
    }

    /// Route template text (`""` for the defaults).
    pub fn route(&self) -> &str {
        self.route.as_ref().map_or("", RouteTemplate::as_str)
    }

    /// Whether a request path falls under this rule.
    pub fn matches(&self, path: &str) -> bool {
        self.route.as_ref().is_some_and(|t| t.matches(path))
    }

    /// Pairing window.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Late horizon.
    pub fn late(&self) -> Duration {
        self.late
    }

    /// Settling time after a subscription starts.
    pub fn settle(&self) -> Duration {
        self.settle
    }

    /// Silence after which the candidate stream counts as stalled.
    pub fn stall(&self) -> Duration {
        self.stall
    }

    /// How long the shadow subscription outlives its last client.
    pub fn linger(&self) -> Duration {
        self.linger
    }

    /// First and longest reconnect delay.
    pub fn reconnect(&self) -> (Duration, Duration) {
        self.reconnect
    }

    /// Event types.
    pub fn types(&self) -> &[StreamType] {
        &self.types
    }

    /// Whether events of this name are skipped.
    pub fn ignores(&self, name: &str) -> bool {
        self.ignore.iter().any(|n| n == name)
    }

    /// The canonical type of a side's event name (the name itself when no type lists it).
    pub fn type_of<'a>(&'a self, side: Side, name: &'a str) -> &'a str {
        self.names
            .get(&(side, name.to_owned()))
            .map_or(name, |&i| self.types[i].name.as_str())
    }

    fn type_index(&self, side: Side, name: &str) -> Option<usize> {
        self.names.get(&(side, name.to_owned())).copied()
    }

    fn rules_of(&self, ty: Option<usize>) -> &RuleSet {
        ty.map_or(&self.fallback, |i| &self.types[i].rules)
    }
}

fn ms(v: Option<u64>, default: Duration) -> Duration {
    v.map_or(default, Duration::from_millis)
}

/// Lists add, scalars of `extra` replace those of `base`, normalization maps merge.
fn merge_compare(base: &RawCompare, extra: &RawCompare) -> RawCompare {
    let mut m = base.clone();
    let e = extra.clone();
    if e.headers.is_some() {
        m.headers = e.headers;
    }
    m.ignore_headers.extend(e.ignore_headers);
    if e.compare_status.is_some() {
        m.compare_status = e.compare_status;
    }
    m.ignore.extend(e.ignore);
    m.noise.extend(e.noise);
    m.noise_labels.extend(e.noise_labels);
    if e.labels.is_some() {
        m.labels = e.labels;
    }
    if e.tolerance.is_some() {
        m.tolerance = e.tolerance;
    }
    m.tolerances.extend(e.tolerances);
    m.arrays.extend(e.arrays);
    for (to, from) in [
        (&mut m.normalize, e.normalize),
        (&mut m.primary, e.primary),
        (&mut m.candidate, e.candidate),
    ] {
        if from.unwrap.is_some() {
            to.unwrap = from.unwrap;
        }
        to.unwrap_if.extend(from.unwrap_if);
        to.rename.extend(from.rename);
        to.map_values.extend(from.map_values);
        to.drop.extend(from.drop);
        to.sort.extend(from.sort);
    }
    m
}

fn compile_rules(raw: RawCompare, key: &str, errs: &mut Vec<RuleError>) -> RuleSet {
    let set = RawRuleSet {
        defaults: raw,
        ..RawRuleSet::default()
    };
    match RuleSet::validate(set) {
        Ok(r) => r,
        Err(found) => {
            errs.extend(found.into_iter().map(|e| match e {
                RuleError::Invalid { key: k, reason } => RuleError::Invalid {
                    key: format!("{key}.{}", k.trim_start_matches("defaults.")),
                    reason,
                },
                other => other,
            }));
            RuleSet::default()
        }
    }
}

/// Validates the `[[streams]]` rules, reporting every problem into `errs`.
pub(crate) fn compile_streams(raw: &[RawStreamRule], errs: &mut Vec<RuleError>) -> Vec<StreamRule> {
    let mut out = Vec::with_capacity(raw.len());
    for (i, r) in raw.iter().enumerate() {
        let at = format!("streams[{i}]");
        let before = errs.len();
        let route = match RouteTemplate::parse(&r.route) {
            Ok(t) => Some(t),
            Err(reason) => {
                errs.push(RuleError::Invalid {
                    key: format!("{at}.route"),
                    reason,
                });
                None
            }
        };
        let window = ms(r.window_ms, DEFAULT_WINDOW);
        let late = ms(r.late_ms, DEFAULT_LATE.max(window));
        if window.is_zero() {
            errs.push(RuleError::Invalid {
                key: format!("{at}.window_ms"),
                reason: "must be at least 1".into(),
            });
        }
        if late < window {
            errs.push(RuleError::Invalid {
                key: format!("{at}.late_ms"),
                reason: format!(
                    "{} is shorter than window_ms ({}); late_ms must be at least the window",
                    late.as_millis(),
                    window.as_millis()
                ),
            });
        }
        let stall = ms(r.stall_ms, DEFAULT_STALL);
        let reconnect = (
            ms(r.reconnect_min_ms, DEFAULT_RECONNECT_MIN),
            ms(r.reconnect_max_ms, DEFAULT_RECONNECT_MAX),
        );
        for (name, zero) in [
            ("stall_ms", stall.is_zero()),
            ("reconnect_min_ms", reconnect.0.is_zero()),
        ] {
            if zero {
                errs.push(RuleError::Invalid {
                    key: format!("{at}.{name}"),
                    reason: "must be at least 1".into(),
                });
            }
        }
        if reconnect.1 < reconnect.0 {
            errs.push(RuleError::Invalid {
                key: format!("{at}.reconnect_max_ms"),
                reason: "must be at least reconnect_min_ms".into(),
            });
        }
        if r.max_pending == Some(0) {
            errs.push(RuleError::Invalid {
                key: format!("{at}.max_pending"),
                reason: "must be at least 1".into(),
            });
        }
        let fallback = compile_rules(r.compare.clone(), &format!("{at}.compare"), errs);
        let mut types = Vec::with_capacity(r.events.len());
        let mut names = BTreeMap::new();
        for (j, ev) in r.events.iter().enumerate() {
            let ek = format!("{at}.events[{j}]");
            if ev.kind.is_empty() {
                errs.push(RuleError::Invalid {
                    key: format!("{ek}.type"),
                    reason: "an event type needs a name".into(),
                });
            }
            let mut key = Vec::with_capacity(ev.key.len());
            for (n, p) in ev.key.iter().enumerate() {
                match Pointer::parse(p) {
                    Ok(p) => key.push(p),
                    Err(reason) => errs.push(RuleError::Invalid {
                        key: format!("{ek}.key[{n}]"),
                        reason,
                    }),
                }
            }
            let rules = compile_rules(
                merge_compare(&r.compare, &ev.compare),
                &format!("{ek}.compare"),
                errs,
            );
            for (side, list) in [
                (Side::Primary, &ev.primary),
                (Side::Candidate, &ev.candidate),
            ] {
                let list: Vec<String> = if list.is_empty() {
                    vec![ev.kind.clone()]
                } else {
                    list.clone()
                };
                for name in list {
                    if let Some(prev) = names.insert((side, name.clone()), j) {
                        errs.push(RuleError::Invalid {
                            key: format!("{ek}.{}", side.as_str()),
                            reason: format!(
                                "event {name:?} is already mapped by {at}.events[{prev}]"
                            ),
                        });
                    }
                }
            }
            types.push(StreamType {
                name: ev.kind.clone(),
                key,
                rules,
            });
        }
        if errs.len() > before {
            continue;
        }
        if let Some(route) = route {
            out.push((
                i,
                StreamRule {
                    route: Some(route),
                    window,
                    late,
                    settle: ms(r.settle_ms, DEFAULT_SETTLE),
                    ignore: r
                        .ignore_events
                        .clone()
                        .unwrap_or_else(|| vec!["keepalive".to_owned()]),
                    max_pending: r.max_pending.unwrap_or(DEFAULT_MAX_PENDING),
                    stall,
                    linger: ms(r.linger_ms, DEFAULT_LINGER),
                    reconnect,
                    fallback,
                    types,
                    names,
                },
            ));
        }
    }
    for a in 0..out.len() {
        for b in a + 1..out.len() {
            if out[a].1.route() == out[b].1.route() {
                errs.push(RuleError::Invalid {
                    key: format!("streams[{}].route", out[b].0),
                    reason: format!("{:?} has two stream rules; merge them", out[b].1.route()),
                });
            }
        }
    }
    out.into_iter().map(|(_, r)| r).collect()
}

// ----------------------------------------------------------------------------------------
// Matcher
// ----------------------------------------------------------------------------------------

/// Which gateway an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The primary (its clients' streams).
    Primary,
    /// The candidate (the shadow subscription).
    Candidate,
}

impl Side {
    /// `primary` or `candidate`.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Primary => "primary",
            Side::Candidate => "candidate",
        }
    }

    fn index(self) -> usize {
        match self {
            Side::Primary => 0,
            Side::Candidate => 1,
        }
    }

    fn other(self) -> Side {
        match self {
            Side::Primary => Side::Candidate,
            Side::Candidate => Side::Primary,
        }
    }
}

/// Counters of one stream comparison.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamCounts {
    /// Primary events taken in (not ignored).
    pub primary_events: u64,
    /// Candidate events taken in (not ignored).
    pub candidate_events: u64,
    /// Events skipped by name (`ignore_events`).
    pub ignored_events: u64,
    /// Pairs within the window (including those with different data).
    pub matched: u64,
    /// Pairs (matched or late) whose data differ in a regression.
    pub different: u64,
    /// Pairs whose data differ only in noise or ignored fields.
    pub different_noise: u64,
    /// Pairs further apart than the window.
    pub late: u64,
    /// Primary events the candidate never sent.
    pub missing: u64,
    /// Candidate events the primary never sent.
    pub extra: u64,
    /// Pairs where one side was not reportable (history, settling, gap): not judged.
    pub absorbed: u64,
    /// Unpaired events that were not reportable.
    pub unreported: u64,
    /// Unpaired events evicted over `max_pending`.
    pub evicted: u64,
}

/// What the matcher found.
#[derive(Debug, Clone, PartialEq)]
pub enum Finding {
    /// A pair (within the window, or late).
    Paired {
        /// Canonical type.
        ty: String,
        /// Key text (`"web-1"|"ACCEPTED"`), empty without key pointers.
        key: String,
        /// Candidate arrival minus primary arrival.
        lag_ns: i64,
        /// Further apart than the window.
        late: bool,
        /// The primary's and the candidate's event names.
        names: (String, String),
        /// Data differences (redacted), empty when equal.
        differences: Vec<Difference>,
    },
    /// An unpaired event.
    Unpaired {
        /// Side it came from (primary = missing on the candidate, candidate = extra).
        side: Side,
        /// Canonical type.
        ty: String,
        /// Key text.
        key: String,
        /// The event name.
        name: String,
        /// Its data (parsed, redacted).
        data: Value,
        /// Its arrival.
        at: Duration,
    },
}

#[derive(Debug)]
struct Held {
    ty: Option<usize>,
    ty_name: String,
    key: String,
    name: String,
    at: Duration,
    raw: String,
    reportable: bool,
}

/// Pairs two event streams (see the module docs). One per stream route.
#[derive(Debug)]
pub struct StreamMatcher {
    rule: StreamRule,
    route_path: String,
    /// Per side, per (type, key): unpaired events oldest first.
    held: [HashMap<(String, String), VecDeque<Held>>; 2],
    /// Per side: (arrival, type, key) in arrival order, for expiry and eviction.
    order: [VecDeque<(Duration, String, String)>; 2],
    counts: StreamCounts,
    comparer: Comparer,
    cmp: Comparison,
}

impl StreamMatcher {
    /// A matcher for one stream under `rule`.
    pub fn new(rule: StreamRule) -> Self {
        let route_path = match rule.route() {
            "" => "/".to_owned(),
            r => r.to_owned(),
        };
        Self {
            rule,
            route_path,
            held: [HashMap::new(), HashMap::new()],
            order: [VecDeque::new(), VecDeque::new()],
            counts: StreamCounts::default(),
            comparer: Comparer::new(),
            cmp: Comparison::default(),
        }
    }

    /// The rule in force.
    pub fn rule(&self) -> &StreamRule {
        &self.rule
    }

    /// Counters so far.
    pub fn counts(&self) -> StreamCounts {
        self.counts
    }

    /// Events held unpaired, per side.
    pub fn pending(&self) -> (usize, usize) {
        (self.order[0].len(), self.order[1].len())
    }

    /// Takes in one event of `side` that arrived at `at`. `reportable` is false for events
    /// that may pair but must not be judged (history, settling, the primary during a
    /// candidate gap). Returns `false` when the event's name is ignored.
    pub fn push(
        &mut self,
        side: Side,
        at: Duration,
        frame: &SseFrame,
        reportable: bool,
        out: &mut Vec<Finding>,
    ) -> bool {
        if self.rule.ignores(&frame.event) {
            self.counts.ignored_events += 1;
            return false;
        }
        match side {
            Side::Primary => self.counts.primary_events += 1,
            Side::Candidate => self.counts.candidate_events += 1,
        }
        let ty = self.rule.type_index(side, &frame.event);
        let ty_name = self.rule.type_of(side, &frame.event).to_owned();
        let key = self.key_of(side, ty, &frame.data);
        let held = Held {
            ty,
            ty_name,
            key,
            name: frame.event.clone(),
            at,
            raw: frame.data.clone(),
            reportable,
        };
        let slot = (held.ty_name.clone(), held.key.clone());
        let other = side.other().index();
        let late = self.rule.late;
        let partner = match self.held[other].get_mut(&slot) {
            Some(q) => {
                // Ones too old to pair are left for expiry. A judged event pairs with the
                // oldest judged partner first, so history held on the other side (a replay of
                // hundreds of ticks) cannot take live events' partners; failing that, with the
                // newest unjudged one that came less than the settling time before (its
                // partner came just before the comparison started; history came at least the
                // settling time before). Unjudged events pair among themselves first.
                let window = self.rule.window;
                let edge = self.rule.settle.min(window);
                let near = |h: &Held, d: Duration| at.abs_diff(h.at) <= d;
                let idx = if reportable {
                    q.iter()
                        .position(|h| h.reportable && near(h, late))
                        .or_else(|| {
                            q.iter()
                                .rposition(|h| !h.reportable && at.abs_diff(h.at) < edge)
                        })
                } else {
                    q.iter()
                        .position(|h| !h.reportable && near(h, late))
                        .or_else(|| q.iter().position(|h| near(h, window)))
                };
                let found = idx.and_then(|i| q.remove(i));
                if q.is_empty() {
                    self.held[other].remove(&slot);
                }
                found
            }
            None => None,
        };
        match partner {
            Some(p) => {
                if let Some(pos) = self.order[other]
                    .iter()
                    .position(|(t, ty, k)| *t == p.at && *ty == slot.0 && *k == slot.1)
                {
                    self.order[other].remove(pos);
                }
                let (prim, cand) = match side {
                    Side::Primary => (held, p),
                    Side::Candidate => (p, held),
                };
                self.pair(prim, cand, out);
            }
            None => {
                let me = side.index();
                self.order[me].push_back((at, slot.0.clone(), slot.1.clone()));
                self.held[me].entry(slot).or_default().push_back(held);
                if self.order[me].len() > self.rule.max_pending {
                    self.evict(side);
                }
            }
        }
        true
    }

    /// Reports events unpaired for longer than the late horizon as of `now`.
    pub fn expire(&mut self, now: Duration, out: &mut Vec<Finding>) {
        for side in [Side::Primary, Side::Candidate] {
            let i = side.index();
            // Bounded by the number held: each turn removes one.
            while let Some((at, _, _)) = self.order[i].front() {
                if now.saturating_sub(*at) <= self.rule.late {
                    break;
                }
                if let Some((_, ty, key)) = self.order[i].pop_front()
                    && let Some(h) = self.take_held(i, &ty, &key)
                {
                    self.unpaired(side, h, out);
                }
            }
        }
    }

    /// Reports every event still unpaired (end of the comparison).
    pub fn finish(&mut self, out: &mut Vec<Finding>) {
        for side in [Side::Primary, Side::Candidate] {
            let i = side.index();
            while let Some((_, ty, key)) = self.order[i].pop_front() {
                if let Some(h) = self.take_held(i, &ty, &key) {
                    self.unpaired(side, h, out);
                }
            }
        }
    }

    /// Forgets unpaired events of `side` without reporting them (counted as unreported):
    /// used when that side's feed restarts and its held events can no longer be trusted.
    pub fn discard(&mut self, side: Side) {
        let i = side.index();
        self.counts.unreported += self.order[i].len() as u64;
        self.order[i].clear();
        self.held[i].clear();
    }

    /// Marks the unpaired events of `side` that arrived at or after `since` as not
    /// reportable: their partners can no longer arrive (the other side's feed ended), so their
    /// being unpaired says nothing about the candidate.
    pub fn demote(&mut self, side: Side, since: Duration) {
        for q in self.held[side.index()].values_mut() {
            for h in q.iter_mut().filter(|h| h.at >= since) {
                h.reportable = false;
            }
        }
    }

    fn take_held(&mut self, i: usize, ty: &str, key: &str) -> Option<Held> {
        let slot = (ty.to_owned(), key.to_owned());
        let q = self.held[i].get_mut(&slot)?;
        let h = q.pop_front();
        if q.is_empty() {
            self.held[i].remove(&slot);
        }
        h
    }

    fn evict(&mut self, side: Side) {
        let i = side.index();
        if let Some((_, ty, key)) = self.order[i].pop_front()
            && self.take_held(i, &ty, &key).is_some()
        {
            self.counts.evicted += 1;
        }
    }

    fn unpaired(&mut self, side: Side, h: Held, out: &mut Vec<Finding>) {
        if !h.reportable {
            self.counts.unreported += 1;
            return;
        }
        match side {
            Side::Primary => self.counts.missing += 1,
            Side::Candidate => self.counts.extra += 1,
        }
        let mut data = parse_data(&h.raw);
        self.rule.rules_of(h.ty).redactor().redact_value(&mut data);
        out.push(Finding::Unpaired {
            side,
            ty: h.ty_name,
            key: h.key,
            name: h.name,
            data,
            at: h.at,
        });
    }

    fn pair(&mut self, prim: Held, cand: Held, out: &mut Vec<Finding>) {
        if !prim.reportable || !cand.reportable {
            self.counts.absorbed += 1;
            return;
        }
        let lag = i128::from(u64::try_from(cand.at.as_nanos()).unwrap_or(u64::MAX))
            - i128::from(u64::try_from(prim.at.as_nanos()).unwrap_or(u64::MAX));
        let lag_ns = i64::try_from(lag).unwrap_or(if lag < 0 { i64::MIN } else { i64::MAX });
        let late = lag.unsigned_abs() > self.rule.window.as_nanos();
        if late {
            self.counts.late += 1;
        } else {
            self.counts.matched += 1;
        }
        // Either side's type rules: they are the same type (paired by type name).
        let rules = self.rule.rules_of(prim.ty.or(cand.ty));
        let exchange = Exchange {
            method: "GET",
            path: &self.route_path,
            request_body: b"",
            primary: Response {
                status: 200,
                headers: &[],
                body: prim.raw.as_bytes(),
            },
            candidate: Response {
                status: 200,
                headers: &[],
                body: cand.raw.as_bytes(),
            },
        };
        self.comparer.compare(rules, &exchange, &mut self.cmp);
        let differences = std::mem::take(&mut self.cmp.differences);
        if differences.iter().any(|d| d.class == Class::Regression) {
            self.counts.different += 1;
        } else if !differences.is_empty() {
            self.counts.different_noise += 1;
        }
        out.push(Finding::Paired {
            ty: prim.ty_name,
            key: prim.key,
            lag_ns,
            late,
            names: (prim.name, cand.name),
            differences,
        });
    }

    fn key_of(&self, side: Side, ty: Option<usize>, data: &str) -> String {
        let Some(i) = ty else {
            return String::new();
        };
        let t = &self.rule.types[i];
        if t.key.is_empty() {
            return String::new();
        }
        let mut v = parse_data(data);
        let c = t.rules.defaults();
        match side {
            Side::Primary => c.primary.apply(&mut v),
            Side::Candidate => c.candidate.apply(&mut v),
        }
        let mut key = String::new();
        for (n, p) in t.key.iter().enumerate() {
            if n > 0 {
                key.push('|');
            }
            match p.get(&v) {
                // Numbers by value, so `1` and `1.0` key alike.
                Some(Value::Number(x)) => match x.as_f64() {
                    Some(f) => key.push_str(&f.to_string()),
                    None => key.push_str(&x.to_string()),
                },
                Some(other) => key.push_str(&other.to_string()),
                None => key.push('-'),
            }
        }
        key
    }
}

/// Signature of a stream line: FNV-1a of `GET`, the route, `sse:<type>` plus the pattern, and
/// the kind name (the same construction as a body difference's, with the event type folded
/// into the pattern so that `/price` of `market` and of `order` group apart).
pub fn stream_signature(route: &str, ty: &str, pattern: &str, kind: &str) -> Signature {
    let mut h = Fnv::new();
    h.write(b"GET")
        .sep()
        .write(route.as_bytes())
        .sep()
        .write(b"sse:")
        .write(ty.as_bytes())
        .write(pattern.as_bytes())
        .sep()
        .write(kind.as_bytes());
    Signature(h.finish())
}

fn parse_data(data: &str) -> Value {
    serde_json::from_str(data).unwrap_or_else(|_| Value::String(data.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse_all(chunks: &[&[u8]]) -> (Vec<SseFrame>, SseParser) {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c, &mut out);
        }
        (out, p)
    }

    #[test]
    fn parses_fields_comments_and_multiline_data() {
        let (f, p) = parse_all(&[
            b"\xEF\xBB\xBF: keep-alive\n\nid: 1\nevent: market\ndata: {\"a\":\n",
            b"data: 1}\nretry: 3000\n\n",
        ]);
        assert_eq!(p.comments(), 1);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].id.as_deref(), Some("1"));
        assert_eq!(f[0].event, "market");
        assert_eq!(f[0].data, "{\"a\":\n1}");
        assert_eq!(f[0].retry, Some(3000));
    }

    #[test]
    fn line_ends_split_across_chunks_are_one() {
        // CRLF split between chunks, bare CR, and a frame split in the middle of a field name.
        let (f, _) = parse_all(&[b"id: 7\r", b"\nda", b"ta: x\r\r", b"\ndata: y\n\n"]);
        assert_eq!(f.len(), 2, "{f:?}");
        assert_eq!(f[0].data, "x");
        assert_eq!(f[0].event, "message");
        assert_eq!(f[1].data, "y");
        assert_eq!(f[1].id, None, "an id belongs to its own frame");
    }

    #[test]
    fn byte_by_byte_equals_whole() {
        let text = b"id: 1\r\nevent: a\r\ndata: 1\r\n\r\n: c\r\nid: 2\nevent: b\ndata: 2\n\n";
        let whole = parse_all(&[text]).0;
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(parse_all(&bytes).0, whole);
        assert_eq!(whole.len(), 2);
    }

    #[test]
    fn frames_without_data_or_event_are_not_dispatched_and_long_lines_are_dropped() {
        let long = vec![b'x'; SseParser::MAX_LINE + 10];
        let mut p = SseParser::new();
        let mut out = Vec::new();
        p.feed(b"id: 3\n\ndata: ", &mut out);
        p.feed(&long, &mut out);
        p.feed(b"\n\nevent: k\n\n", &mut out);
        assert_eq!(p.oversized(), 1);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].event, "k");
    }

    fn py_cpp_rule(window_ms: u64) -> StreamRule {
        let raw: RawStreamRule = serde_json::from_value(json!({
            "route": "/api/stream",
            "window_ms": window_ms,
            "late_ms": window_ms * 5,
            "compare": {"ignore": ["/ts_ns"]},
            "events": [
                {"type": "market", "primary": ["market"], "candidate": ["market-data"],
                 "key": ["/symbol"],
                 "compare": {"noise": ["/price"],
                             "primary": {"drop": ["type"]},
                             "candidate": {"rename": {"last_price": "price", "last_update_ns": "ts_ns"}}}},
                {"type": "order", "primary": ["order_update", "order_state", "fill"],
                 "candidate": ["order-update"],
                 "key": ["/type", "/client_order_id", "/status"]}
            ]
        }))
        .unwrap();
        let mut errs = Vec::new();
        let mut v = compile_streams(&[raw], &mut errs);
        assert!(errs.is_empty(), "{errs:?}");
        v.remove(0)
    }

    fn frame(event: &str, data: Value) -> SseFrame {
        SseFrame {
            id: None,
            event: event.into(),
            data: data.to_string(),
            retry: None,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn names_map_and_pairs_match_within_the_window() {
        let mut m = StreamMatcher::new(py_cpp_rule(2000));
        let mut out = Vec::new();
        m.push(
            Side::Primary,
            ms(0),
            &frame(
                "market",
                json!({"type":"market","symbol":"BTCUSDT","ts_ns":1,"price":42000}),
            ),
            true,
            &mut out,
        );
        m.push(
            Side::Candidate,
            ms(30),
            &frame(
                "market-data",
                json!({"symbol":"BTCUSDT","last_price":42001.5,"last_update_ns":9}),
            ),
            true,
            &mut out,
        );
        assert_eq!(out.len(), 1);
        let Finding::Paired {
            ty,
            lag_ns,
            late,
            differences,
            ..
        } = &out[0]
        else {
            panic!("{out:?}")
        };
        assert_eq!(ty, "market");
        assert_eq!(*lag_ns, 30_000_000);
        assert!(!late);
        // Price is noise, ts_ns ignored: no regression.
        assert!(
            differences.iter().all(|d| d.class != Class::Regression),
            "{differences:?}"
        );
        assert_eq!(m.counts().different, 0);
        assert_eq!(m.counts().matched, 1);
    }

    #[test]
    fn missing_extra_different_and_late_are_reported() {
        let mut m = StreamMatcher::new(py_cpp_rule(100));
        let mut out = Vec::new();
        let order = |id: &str, status: &str, qty: f64| json!({"type":"order_update","client_order_id":id,"status":status,"qty":qty});
        // a: matched but different qty; b: late; c: missing; d: extra.
        m.push(
            Side::Primary,
            ms(0),
            &frame("order_update", order("a", "ACCEPTED", 1.0)),
            true,
            &mut out,
        );
        m.push(
            Side::Candidate,
            ms(10),
            &frame("order-update", order("a", "ACCEPTED", 2.0)),
            true,
            &mut out,
        );
        m.push(
            Side::Primary,
            ms(20),
            &frame("order_update", order("b", "ACCEPTED", 1.0)),
            true,
            &mut out,
        );
        m.push(
            Side::Candidate,
            ms(320),
            &frame("order-update", order("b", "ACCEPTED", 1.0)),
            true,
            &mut out,
        );
        m.push(
            Side::Primary,
            ms(30),
            &frame("order_update", order("c", "ACCEPTED", 1.0)),
            true,
            &mut out,
        );
        m.push(
            Side::Candidate,
            ms(40),
            &frame("order-update", order("d", "ACCEPTED", 1.0)),
            true,
            &mut out,
        );
        m.expire(ms(400), &mut out);
        assert!(
            out.len() == 2,
            "nothing expires before the late horizon: {out:?}"
        );
        m.expire(ms(1000), &mut out);
        let c = m.counts();
        assert_eq!(
            (c.matched, c.late, c.different, c.missing, c.extra),
            (1, 1, 1, 1, 1),
            "{c:?}"
        );
        assert!(out.iter().any(|f| matches!(f, Finding::Unpaired { side: Side::Primary, key, .. } if key.contains("\"c\""))));
        assert!(out.iter().any(|f| matches!(f, Finding::Unpaired { side: Side::Candidate, key, .. } if key.contains("\"d\""))));
    }

    #[test]
    fn unreportable_events_absorb_but_are_never_judged() {
        let mut m = StreamMatcher::new(py_cpp_rule(100));
        let mut out = Vec::new();
        let f = frame("fill", json!({"type":"fill","client_order_id":"x","qty":1}));
        m.push(Side::Primary, ms(0), &f, false, &mut out);
        m.push(
            Side::Candidate,
            ms(5),
            &frame(
                "order-update",
                json!({"type":"fill","client_order_id":"x","qty":9}),
            ),
            true,
            &mut out,
        );
        m.push(Side::Primary, ms(6), &f, false, &mut out);
        m.finish(&mut out);
        assert!(out.is_empty(), "{out:?}");
        let c = m.counts();
        assert_eq!((c.absorbed, c.unreported, c.different), (1, 1, 0));
    }

    #[test]
    fn keepalives_are_ignored_and_periodic_events_pair_in_order() {
        let mut m = StreamMatcher::new(py_cpp_rule(250));
        let mut out = Vec::new();
        let tick = |p: f64| json!({"type":"market","symbol":"BTCUSDT","price":p});
        let ctick = |p: f64| json!({"symbol":"BTCUSDT","last_price":p});
        assert!(!m.push(
            Side::Candidate,
            ms(0),
            &frame("keepalive", json!({})),
            true,
            &mut out
        ));
        // Ticks every 200 ms on each side, phase-shifted by 100 ms; the candidate drops one.
        for i in 0..10u64 {
            m.push(
                Side::Primary,
                ms(i * 200),
                &frame("market", tick(1.0)),
                true,
                &mut out,
            );
            if i != 4 {
                m.push(
                    Side::Candidate,
                    ms(i * 200 + 100),
                    &frame("market-data", ctick(1.0)),
                    true,
                    &mut out,
                );
            }
        }
        m.finish(&mut out);
        let c = m.counts();
        assert_eq!(c.ignored_events, 1);
        assert_eq!(c.matched + c.late, 9);
        assert_eq!(c.missing, 1);
        assert_eq!(c.extra, 0);
    }

    #[test]
    fn replayed_history_does_not_take_live_partners() {
        // The primary replays 200 ticks on connect (not judged); then both sides tick live,
        // the candidate sometimes a little before the primary.
        let mut m = StreamMatcher::new(py_cpp_rule(2000));
        let mut out = Vec::new();
        let tick = json!({"type":"market","symbol":"BTCUSDT","price":1.0});
        let ctick = json!({"symbol":"BTCUSDT","last_price":1.0});
        for _ in 0..200 {
            m.push(
                Side::Primary,
                ms(1),
                &frame("market", tick.clone()),
                false,
                &mut out,
            );
        }
        for i in 0..50u64 {
            let t = 1000 + i * 100;
            let (p, c) = if i % 3 == 0 { (t + 5, t) } else { (t, t + 5) };
            let mut pushes = [(p, Side::Primary), (c, Side::Candidate)];
            pushes.sort();
            for (at, side) in pushes {
                let f = match side {
                    Side::Primary => frame("market", tick.clone()),
                    Side::Candidate => frame("market-data", ctick.clone()),
                };
                m.push(side, ms(at), &f, true, &mut out);
            }
        }
        m.expire(ms(30_000), &mut out);
        let c = m.counts();
        assert_eq!((c.missing, c.extra), (0, 0), "{c:?}");
        assert!(c.matched >= 49, "{c:?}");
        assert_eq!(c.unreported + c.absorbed, 200, "{c:?}");
    }

    #[test]
    fn demoted_events_are_not_reported() {
        let mut m = StreamMatcher::new(py_cpp_rule(100));
        let mut out = Vec::new();
        let e = |id: &str| {
            frame(
                "order_update",
                json!({"type":"order_update","client_order_id":id}),
            )
        };
        m.push(Side::Primary, ms(0), &e("old"), true, &mut out);
        m.push(Side::Primary, ms(900), &e("recent"), true, &mut out);
        // The candidate's feed ended at 1000 ms: only what arrived within the window before
        // can still have been on its way.
        m.demote(Side::Primary, ms(900));
        m.finish(&mut out);
        assert_eq!(m.counts().missing, 1);
        assert_eq!(m.counts().unreported, 1);
        assert_ne!(
            stream_signature("/s", "order", "", "sse-missing"),
            stream_signature("/s", "market", "", "sse-missing")
        );
    }

    #[test]
    fn the_pending_set_is_bounded() {
        let raw = RawStreamRule {
            route: "/s".into(),
            max_pending: Some(3),
            ..RawStreamRule::default()
        };
        let mut errs = Vec::new();
        let rule = compile_streams(&[raw], &mut errs).remove(0);
        let mut m = StreamMatcher::new(rule);
        let mut out = Vec::new();
        for i in 0..10 {
            m.push(Side::Primary, ms(i), &frame("x", json!(i)), true, &mut out);
        }
        assert_eq!(m.pending(), (3, 0));
        assert_eq!(m.counts().evicted, 7);
    }

    #[test]
    fn bad_rules_are_all_reported() {
        let raw: Vec<RawStreamRule> = serde_json::from_value(json!([
            {"route": "no-slash", "window_ms": 0, "late_ms": 0,
             "events": [{"type": "a", "key": ["bad"]}, {"type": "b", "primary": ["a"]}]},
            {"route": "/s"}, {"route": "/s"}
        ]))
        .unwrap();
        let mut errs = Vec::new();
        let ok = compile_streams(&raw, &mut errs);
        let keys: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(ok.len(), 2);
        for want in [
            "streams[0].route",
            "streams[0].window_ms",
            "streams[0].events[0].key[0]",
            "streams[0].events[1].primary",
            "streams[2].route",
        ] {
            assert!(
                keys.iter().any(|k| k.contains(want)),
                "{want} not in {keys:?}"
            );
        }
    }
}
