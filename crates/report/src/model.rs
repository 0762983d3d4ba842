//! The report: everything the renderers print, as plain data. Its JSON form (`report.json`) is
//! a stable, documented schema:
//!
//! - `schema_version` (1): bumped on any incompatible change (a field removed, renamed or its
//!   meaning changed). Fields may be *added* within a version; readers must ignore unknown ones.
//! - Latencies are integers in nanoseconds (`*_ns`), sizes in bytes, rates in requests per
//!   second, error rates and coverage as fractions (0.001 = 0.1 %), CPU in percent of one CPU,
//!   times as RFC 3339 strings. Every measured value has a `display` string beside it in
//!   `criteria[]`.
//! - `verdict`: `pass` when at least one criterion passed and none has status `fail`,
//!   `no-data` or `generator-limited`; otherwise `fail`.
//! - `criteria[].status`: `pass`, `fail`, `no-data` (data missing and the criterion's rule is
//!   `missing = "fail"`), `skipped` (data missing, rule `skip`), `generator-limited` (a
//!   throughput criterion on a run whose load generator could not hold its rate).
//!
//! Top-level fields: `schema_version`, `tool_version`, `phase {id, title}`, `criteria_file`,
//! `verdict`, `tally {passed, failed, no_data, skipped, generator_limited}`, `sources[]`,
//! `criteria[]`, `targets[]`, `routes[]`, `comparison` (or null), `discrepancies`,
//! `warnings[]`.
//!
//! `discrepancies` keeps every group in one list (`groups[]`, regressions first); each group
//! names its `section` (`flow`, `stream`, `audit`, `exchange`, see [`SectionKind`]), and
//! `sections[]` has the totals by class of each. Order-flow groups carry `orders[]` (example
//! primary ↔ candidate order ids) and `steps[]` (the flow steps that differ); `flows`, `ids`,
//! `streams[]` and `audit` are the producers' own counters from the manifests (absent or
//! empty when no run recorded them). These were added within version 1 (additive).

use serde::Serialize;

use crate::expr::Op;
use crate::measure::Source;
use crate::stats::{MannWhitney, Shift};
use crate::units::Dimension;

/// The JSON schema version of [`Report`].
pub const SCHEMA_VERSION: u32 = 1;

/// The verdict of a whole phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Every judged criterion passed.
    Pass,
    /// At least one failed (or could not be judged and is not skippable).
    Fail,
}

/// The outcome of one criterion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Measured and within the threshold.
    Pass,
    /// Measured and outside the threshold.
    Fail,
    /// No data, and the rule says that fails.
    NoData,
    /// No data, and the rule says skip.
    Skipped,
    /// Throughput on a generator-limited run: neither the gateway's pass nor its fault.
    GeneratorLimited,
}

impl Status {
    /// Short label for tables.
    pub fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::NoData => "NO DATA",
            Status::Skipped => "SKIPPED",
            Status::GeneratorLimited => "GENERATOR-LIMITED",
        }
    }

    /// Whether this status stops the gate.
    pub fn blocks(self) -> bool {
        matches!(
            self,
            Status::Fail | Status::NoData | Status::GeneratorLimited
        )
    }
}

/// A number with its formatted form.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Value {
    /// In the metric's base unit (see the module docs).
    pub value: f64,
    /// For people (`150 µs`, `0.1%`).
    pub display: String,
}

/// Phase id and title.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseInfo {
    /// `1`..`5` or `overall`.
    pub id: String,
    /// Title from the criteria file.
    pub title: String,
}

/// How many criteria ended how.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    /// Passed.
    pub passed: usize,
    /// Failed.
    pub failed: usize,
    /// No data (blocking).
    pub no_data: usize,
    /// Skipped (no data, not blocking).
    pub skipped: usize,
    /// Generator-limited (blocking).
    pub generator_limited: usize,
}

/// One criterion's result (a `route = "*"` criterion gives one per route).
#[derive(Debug, Clone, Serialize)]
pub struct CriterionResult {
    /// Name (with ` [METHOD /route]` for per-route expansions).
    pub name: String,
    /// The expression as written.
    pub expr: String,
    /// The metric (`p99`, `ratio(p50, primary)`, ...).
    pub metric: String,
    /// Its dimension (`duration`, `fraction`, ...).
    pub dimension: Dimension,
    /// Target judged (name in the data).
    pub target: String,
    /// Route scope, if not all routes.
    pub route: Option<String>,
    /// Comparison.
    pub op: Op,
    /// Threshold.
    pub threshold: Value,
    /// What was measured (absent when there was no data).
    pub measured: Option<Value>,
    /// Outcome.
    pub status: Status,
    /// Why, when not a plain pass/fail (no data, generator-limited), or how it was measured.
    pub detail: Option<String>,
    /// Free text from the criteria file.
    pub note: Option<String>,
    /// Line in the criteria file.
    pub line: usize,
}

/// Latency percentiles of one distribution (ns).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50_ns: u64,
    /// 90th percentile.
    pub p90_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// 99.9th percentile.
    pub p999_ns: u64,
    /// Highest.
    pub max_ns: u64,
    /// Mean.
    pub mean_ns: f64,
}

/// Resource use of one target.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Resources {
    /// Samples.
    pub samples: usize,
    /// Mean CPU, percent of one CPU.
    pub cpu_mean: Option<f64>,
    /// 95th percentile CPU.
    pub cpu_p95: Option<f64>,
    /// Highest CPU.
    pub cpu_max: Option<f64>,
    /// Peak resident memory (bytes).
    pub rss_max: Option<f64>,
    /// Least-squares slope of RSS, bytes per hour.
    pub rss_growth_per_hour: Option<f64>,
    /// Seconds the memory samples behind that slope span (a slope over seconds is mostly
    /// start-up, not a leak).
    pub rss_span_s: Option<f64>,
}

/// Totals of one target.
#[derive(Debug, Clone, Serialize)]
pub struct TargetSummary {
    /// Name in the data.
    pub name: String,
    /// URL from the manifest.
    pub url: Option<String>,
    /// Requests attempted.
    pub requests: u64,
    /// 5xx + transport errors.
    pub errors: u64,
    /// 4xx answers (not errors, shown for context).
    pub status_4xx: u64,
    /// `errors / requests`.
    pub error_rate: Option<f64>,
    /// Requests per second over `window_s`.
    pub throughput: Option<f64>,
    /// The throughput window (seconds).
    pub window_s: Option<f64>,
    /// Response time, all routes.
    pub latency: Option<Latency>,
    /// CPU and memory.
    pub resources: Option<Resources>,
    /// A load generator driving it could not hold its rate.
    pub generator_limited: bool,
    /// The generator's floor (its own P50/P99 against a null server), when calibrated.
    pub generator_floor: Option<Latency>,
}

/// Totals of one target's route.
#[derive(Debug, Clone, Serialize)]
pub struct RouteSummary {
    /// Target.
    pub target: String,
    /// Method.
    pub method: String,
    /// Route template.
    pub route: String,
    /// Requests.
    pub requests: u64,
    /// 5xx + transport errors.
    pub errors: u64,
    /// `errors / requests`.
    pub error_rate: Option<f64>,
    /// Requests per second over the target's window.
    pub throughput: Option<f64>,
    /// Response time.
    pub latency: Option<Latency>,
}

/// One side of a comparison row.
#[derive(Debug, Clone, Serialize)]
pub struct Side {
    /// Response time.
    pub latency: Option<Latency>,
    /// Requests per second.
    pub throughput: Option<f64>,
    /// Error rate.
    pub error_rate: Option<f64>,
}

/// Candidate ÷ primary.
#[derive(Debug, Clone, Serialize)]
pub struct Ratios {
    /// P50 ratio.
    pub p50: Option<f64>,
    /// P99 ratio.
    pub p99: Option<f64>,
    /// P99.9 ratio.
    pub p999: Option<f64>,
    /// Throughput ratio.
    pub throughput: Option<f64>,
    /// Error-rate ratio.
    pub error_rate: Option<f64>,
}

/// Candidate against primary on one route (or `*` for all).
#[derive(Debug, Clone, Serialize)]
pub struct RouteComparison {
    /// Method (`*` for all).
    pub method: String,
    /// Route (`*` for all).
    pub route: String,
    /// The candidate.
    pub candidate: Side,
    /// The primary.
    pub primary: Side,
    /// Candidate ÷ primary.
    pub ratio: Ratios,
    /// Mann-Whitney U test of the candidate's latency against the primary's.
    pub mann_whitney: Option<MannWhitney>,
    /// The conclusion at alpha; `None` without samples on both sides.
    pub shift: Option<Shift>,
}

/// Candidate vs primary.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// Candidate's name in the data.
    pub candidate: String,
    /// Primary's name in the data.
    pub primary: String,
    /// Significance level.
    pub alpha: f64,
    /// First row: all routes; then one per route both have.
    pub routes: Vec<RouteComparison>,
}

/// Which part of the report a discrepancy line belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SectionKind {
    /// Whole order flows (`missing-on-candidate` … `timeout`), and follow-ups whose order id
    /// could not be mapped to the candidate's.
    Flow,
    /// Event streams (`sse-*`), and gaps in the candidate's stream.
    Stream,
    /// Audit-log consistency (`audit-*`, from `shadowgate audit-diff`).
    Audit,
    /// One request's two answers (status, headers, bodies), and notes on exchanges not
    /// compared.
    Exchange,
}

impl SectionKind {
    /// Every section, in report order: the whole-flow views first, because the exchange
    /// list is the long one and would bury them.
    pub const ALL: [SectionKind; 4] = [
        SectionKind::Flow,
        SectionKind::Stream,
        SectionKind::Audit,
        SectionKind::Exchange,
    ];

    /// The name in JSON, CSV and `kind=` selectors.
    pub fn name(self) -> &'static str {
        match self {
            SectionKind::Exchange => "exchange",
            SectionKind::Flow => "flow",
            SectionKind::Stream => "stream",
            SectionKind::Audit => "audit",
        }
    }

    /// The heading renderers print.
    pub fn title(self) -> &'static str {
        match self {
            SectionKind::Exchange => "Exchanges",
            SectionKind::Flow => "Order flows",
            SectionKind::Stream => "Event streams",
            SectionKind::Audit => "Audit log",
        }
    }
}

/// Totals of one section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SectionTotals {
    /// Which.
    pub section: SectionKind,
    /// Heading.
    pub title: String,
    /// All lines.
    pub total: u64,
    /// Regressions.
    pub regression: u64,
    /// Noise.
    pub noise: u64,
    /// Ignored (and not-compared notes).
    pub ignored: u64,
    /// Groups in `groups[]` with this section.
    pub groups: u64,
}

/// An order as each gateway named it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderPair {
    /// The primary's order id.
    pub primary: String,
    /// The candidate's, when it had one (none for unmapped or timed-out follow-ups).
    pub candidate: Option<String>,
}

/// The order-flow tracker's counters (summed over mirror runs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FlowFacts {
    /// Flows started (submits mirrored).
    pub tracked: u64,
    /// Flows compared.
    pub compared: u64,
    /// Compared without a difference.
    pub matched: u64,
    /// Compared with at least one difference.
    pub differing: u64,
    /// Not tracked (over the tracker's size cap).
    pub untracked: u64,
    /// Not compared: the candidate's submit failed or did not answer.
    pub submit_failed: u64,
    /// Not compared: a cancel's copy did not complete on the candidate (dropped or failed).
    pub follow_up_lost: u64,
    /// Still open when the run ended.
    pub open: u64,
    /// Compared, and every difference was noise (a cancel-fill race).
    pub noise: u64,
    /// Flows whose outcome differed only because cancel and fill raced differently per side.
    pub cancel_fill_races: u64,
    /// Compared flows where a state poll supplied a side's final state.
    pub completed_by_poll: u64,
    /// State polls answered 401/403 (the submit's credentials were refused).
    pub poll_unauthorized: u64,
    /// Flows left unfinished because their polls were refused (ignored, not regressions).
    pub poll_unauthorized_flows: u64,
    /// Differing flows per kind.
    pub by_kind: std::collections::BTreeMap<String, u64>,
}

/// The id map's counters (summed over mirror runs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct IdCorrelation {
    /// Primary ↔ candidate pairs learned.
    pub mapped: u64,
    /// Ids rewritten in candidate requests.
    pub rewritten: u64,
    /// Follow-ups whose id was not in the map (not sent to the candidate).
    pub unmapped: u64,
    /// Follow-ups whose submit did not answer in time (not sent).
    pub timed_out: u64,
    /// Entries expired by their TTL.
    pub expired: u64,
    /// Entries dropped over the size cap.
    pub evicted: u64,
}

/// One event-stream route's comparison (summed over mirror runs).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StreamRoute {
    /// Route template.
    pub route: String,
    /// Client streams opened through the mirror.
    pub clients: u64,
    /// Candidate subscriptions (one shared by all clients, plus reconnects).
    pub candidate_subscriptions: u64,
    /// Primary events taken in.
    pub primary_events: u64,
    /// Candidate events taken in.
    pub candidate_events: u64,
    /// Pairs within the window.
    pub matched: u64,
    /// Primary events the candidate never sent.
    pub missing: u64,
    /// Candidate events the primary never sent.
    pub extra: u64,
    /// Pairs whose data differ (regression).
    pub different: u64,
    /// Pairs further apart than the window.
    pub late: u64,
    /// Gaps in the candidate's stream (drops, stalls).
    pub gaps: u64,
    /// Their total length (ms).
    pub gap_ms: u64,
    /// Primary events not compared because they fell into a gap.
    pub events_in_gaps: u64,
    /// Reconnect attempts.
    pub reconnects: u64,
    /// Candidate minus primary event lag, from the `<candidate>:GET:<route>;lag` series.
    pub lag: Option<Latency>,
}

/// Audit-log consistency counters (summed over `audit-diff` runs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AuditFacts {
    /// `audit-diff` runs.
    pub runs: u64,
    /// Every one of them found the logs consistent.
    pub consistent: bool,
    /// Entries read from the primary's log.
    pub primary_entries: u64,
    /// Entries read from the candidate's log.
    pub candidate_entries: u64,
    /// Entries matched.
    pub matched: u64,
    /// Primary entries without a candidate entry.
    pub missing: u64,
    /// Candidate entries without a primary entry.
    pub extra: u64,
    /// Matched entries that differ.
    pub mismatched: u64,
}

/// One redacted example of a discrepancy group.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// When.
    pub ts: String,
    /// Flow, if any.
    pub flow_id: Option<String>,
    /// Primary's value (redacted by the producer).
    pub primary: serde_json::Value,
    /// Candidate's value.
    pub candidate: serde_json::Value,
    /// Free text.
    pub detail: Option<String>,
}

/// Alike discrepancies.
#[derive(Debug, Clone, Serialize)]
pub struct Group {
    /// `regression`, `noise` or `ignored`.
    pub class: shadowgate_record::Class,
    /// Method.
    pub method: String,
    /// Route template.
    pub route: String,
    /// Kind.
    pub kind: String,
    /// JSON Pointer (or `/status`, `/headers/<name>`).
    pub path: String,
    /// Lines in the group.
    pub count: u64,
    /// Distinct flows among them.
    pub flows: u64,
    /// Noise label, if any.
    pub label: Option<String>,
    /// Up to three examples, earliest first.
    pub samples: Vec<Sample>,
    /// The report section it belongs to.
    pub section: SectionKind,
    /// Order flows: up to three example orders, primary id ↔ candidate id.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub orders: Vec<OrderPair>,
    /// Order flows: the steps that differ (`ack`, `fills/0/price`, `final/status`, …).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<String>,
}

/// The discrepancy section.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Discrepancies {
    /// Whether any run compared answers at all.
    pub compared: bool,
    /// All lines.
    pub total: u64,
    /// Regressions.
    pub regression: u64,
    /// Noise.
    pub noise: u64,
    /// Ignored by rules.
    pub ignored: u64,
    /// Order-flow lines (the `flow` section's total).
    pub flow: u64,
    /// Groups: regressions first, then by count.
    pub groups: Vec<Group>,
    /// Totals per section, in [`SectionKind::ALL`] order (always all four).
    pub sections: Vec<SectionTotals>,
    /// The order-flow tracker's counters, when a mirror run tracked flows.
    pub flows: Option<FlowFacts>,
    /// The id map's counters, when a mirror run correlated ids.
    pub ids: Option<IdCorrelation>,
    /// Event-stream routes the mirror compared.
    pub streams: Vec<StreamRoute>,
    /// Audit-log counters, when an `audit-diff` run is among the sources.
    pub audit: Option<AuditFacts>,
}

impl Discrepancies {
    /// The totals of one section.
    pub fn section(&self, s: SectionKind) -> Option<&SectionTotals> {
        self.sections.iter().find(|t| t.section == s)
    }

    /// The groups of one section, in report order.
    pub fn groups_in(&self, s: SectionKind) -> impl Iterator<Item = &Group> {
        self.groups.iter().filter(move |g| g.section == s)
    }
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The shadowgate version that wrote it.
    pub tool_version: String,
    /// The phase judged.
    pub phase: PhaseInfo,
    /// Where the criteria came from.
    pub criteria_file: String,
    /// Pass or fail.
    pub verdict: Verdict,
    /// Counts by status.
    pub tally: Tally,
    /// The run directories.
    pub sources: Vec<Source>,
    /// Criterion results in file order.
    pub criteria: Vec<CriterionResult>,
    /// Per target.
    pub targets: Vec<TargetSummary>,
    /// Per target and route.
    pub routes: Vec<RouteSummary>,
    /// Candidate vs primary, when both were recorded.
    pub comparison: Option<Comparison>,
    /// Differences found by comparing answers.
    pub discrepancies: Discrepancies,
    /// Things to know (torn lines, unfinished runs, generator limits, aliases).
    pub warnings: Vec<String>,
}

impl Report {
    /// The exit code a CI job gates on: 0 pass, 1 fail.
    pub fn exit_code(&self) -> u8 {
        match self.verdict {
            Verdict::Pass => 0,
            Verdict::Fail => 1,
        }
    }
}
