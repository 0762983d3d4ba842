//! The run so far, as `/summary` serves it and as the manifest's `extra.mirror` keeps it.
//!
//! Every figure is read from the live counters; differences are grouped by signature with
//! their first occurrence as an example (values already redacted by the comparison engine).
//! Coverage is `compared ÷ eligible`: a low-coverage run is visibly not a clean one.

use serde::{Deserialize, Serialize};
use shadowgate_record::Outcome;

use crate::analysis::{AnalysisState, Group, LearnedNoise, Outcomes};
use crate::proxy::Shared;
use crate::stats::{RouteHandles, ShadowEvent, TargetHandles};

/// Outcomes of one upstream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetCounts {
    /// Requests attempted.
    pub requests: u64,
    /// 1xx answers.
    pub status_1xx: u64,
    /// 2xx answers.
    pub status_2xx: u64,
    /// 3xx answers.
    pub status_3xx: u64,
    /// 4xx answers.
    pub status_4xx: u64,
    /// 5xx answers.
    pub status_5xx: u64,
    /// Connect failures.
    pub connect_errors: u64,
    /// Timeouts.
    pub timeouts: u64,
    /// Other failures (reset, garbage, broken body).
    pub other_errors: u64,
}

impl TargetCounts {
    fn add(&mut self, h: &TargetHandles) {
        self.requests += h.total();
        self.status_1xx += h.count(Outcome::Status1xx);
        self.status_2xx += h.count(Outcome::Status2xx);
        self.status_3xx += h.count(Outcome::Status3xx);
        self.status_4xx += h.count(Outcome::Status4xx);
        self.status_5xx += h.count(Outcome::Status5xx);
        self.connect_errors += h.count(Outcome::ConnectError);
        self.timeouts += h.count(Outcome::Timeout);
        self.other_errors += h.count(Outcome::OtherError);
    }
}

/// What happened to the shadow copies. `eligible` = `compared` + every reason a copy was not
/// compared (`dropped_budget` … `queue_full`), once the copies in flight have ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowCounts {
    /// Selected for mirroring.
    pub eligible: u64,
    /// Writes on routes without an opt-in rule (never sent).
    pub write_skipped: u64,
    /// Left out by sampling.
    pub not_sampled: u64,
    /// Sent to the candidate.
    pub sent: u64,
    /// Compared.
    pub compared: u64,
    /// No shadow permit free.
    pub dropped_budget: u64,
    /// Not sent: the circuit breaker was open.
    pub breaker_open: u64,
    /// Candidate timed out.
    pub timeout: u64,
    /// Candidate refused or unreachable.
    pub connect_error: u64,
    /// Candidate reset, sent garbage, or the request could not be translated.
    pub error: u64,
    /// A body over the limit.
    pub body_over_limit: u64,
    /// Event streams (passed through, not compared here).
    pub sse: u64,
    /// The primary failed or its answer did not complete.
    pub primary_failed: u64,
    /// The comparison queue was full.
    pub queue_full: u64,
}

impl ShadowCounts {
    fn add(&mut self, h: &RouteHandles) {
        for e in ShadowEvent::ALL {
            let n = h.shadow_count(e);
            let slot = match e {
                ShadowEvent::Eligible => &mut self.eligible,
                ShadowEvent::WriteSkipped => &mut self.write_skipped,
                ShadowEvent::NotSampled => &mut self.not_sampled,
                ShadowEvent::Sent => &mut self.sent,
                ShadowEvent::Compared => &mut self.compared,
                ShadowEvent::DroppedBudget => &mut self.dropped_budget,
                ShadowEvent::BreakerOpen => &mut self.breaker_open,
                ShadowEvent::Timeout => &mut self.timeout,
                ShadowEvent::ConnectError => &mut self.connect_error,
                ShadowEvent::Error => &mut self.error,
                ShadowEvent::BodyOverLimit => &mut self.body_over_limit,
                ShadowEvent::Sse => &mut self.sse,
                ShadowEvent::PrimaryFailed => &mut self.primary_failed,
                ShadowEvent::QueueFull => &mut self.queue_full,
            };
            *slot += n;
        }
    }

    /// `compared ÷ eligible`, or `None` before anything was eligible.
    pub fn coverage(&self) -> Option<f64> {
        // Counts stay far below 2^53.
        #[allow(clippy::cast_precision_loss)]
        (self.eligible > 0).then(|| self.compared as f64 / self.eligible as f64)
    }
}

/// One (method, route) line of the summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteSummary {
    /// Method.
    pub method: String,
    /// Route template.
    pub route: String,
    /// The primary's outcomes.
    pub primary: TargetCounts,
    /// The candidate's outcomes.
    pub candidate: TargetCounts,
    /// Shadow copies.
    pub shadow: ShadowCounts,
    /// `compared ÷ eligible`.
    pub coverage: Option<f64>,
}

/// Breaker state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakerSummary {
    /// `closed`, `open` or `probing`.
    pub state: String,
    /// Times it opened.
    pub trips: u64,
}

/// TCP connections opened (churn).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connections {
    /// Client connections accepted.
    pub client: u64,
    /// Connections opened to the primary.
    pub primary: u64,
    /// Connections opened to the candidate.
    pub candidate: u64,
    /// Connections opened to the secondary.
    pub secondary: u64,
}

/// Lines of `discrepancies.ndjson` by class (held lines included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lines {
    /// Regressions.
    pub regression: u64,
    /// Noise.
    pub noise: u64,
    /// Ignored (and not-compared notes).
    pub ignored: u64,
    /// Regression lines held back for learned noise.
    pub held_back: u64,
}

/// The run so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Every (method, route) together: the primary's outcomes.
    pub primary: TargetCounts,
    /// The candidate's outcomes.
    pub candidate: TargetCounts,
    /// The secondary's outcomes (with `--secondary`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary: Option<TargetCounts>,
    /// Shadow copies.
    pub shadow: ShadowCounts,
    /// `compared ÷ eligible`.
    pub coverage: Option<f64>,
    /// Shadow requests in flight now.
    pub shadow_in_flight: i64,
    /// The candidate's circuit breaker.
    pub breaker: BreakerSummary,
    /// Connections opened.
    pub connections: Connections,
    /// Compared exchanges by outcome (verdict at the time of comparison).
    pub comparisons: Outcomes,
    /// Discrepancy lines by class.
    pub lines: Lines,
    /// Files that could not be written (see the log).
    pub write_errors: u64,
    /// Per (method, route).
    pub routes: Vec<RouteSummary>,
    /// Difference groups, regressions first.
    pub groups: Vec<Group>,
    /// Learned noise (with `--secondary`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learned_noise: Option<Vec<LearnedNoise>>,
    /// Event streams, per route (their lines are in `lines` too).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub streams: Vec<crate::sse::StreamSummary>,
    /// Order flows and the id map (when the rules track them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flows: Option<crate::flows::FlowSummary>,
    /// `--capture`: the file and its counts (written, dropped, without body, failed), so the
    /// run directory says where its traffic was recorded and whether the capture is whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture: Option<crate::capture::CaptureSummary>,
}

impl Summary {
    pub(crate) fn collect(shared: &Shared, state: &AnalysisState, groups: bool) -> Summary {
        let mut primary = TargetCounts::default();
        let mut candidate = TargetCounts::default();
        let mut secondary: Option<TargetCounts> = None;
        let mut shadow = ShadowCounts::default();
        let mut routes = Vec::new();
        for h in shared.routes.all() {
            let mut r = RouteSummary {
                method: h.method.as_str().to_owned(),
                route: h.route.to_string(),
                primary: TargetCounts::default(),
                candidate: TargetCounts::default(),
                shadow: ShadowCounts::default(),
                coverage: None,
            };
            r.primary.add(&h.primary);
            r.candidate.add(&h.candidate);
            r.shadow.add(&h);
            r.coverage = r.shadow.coverage();
            primary.add(&h.primary);
            candidate.add(&h.candidate);
            if let Some(s) = &h.secondary {
                secondary.get_or_insert_with(TargetCounts::default).add(s);
            }
            shadow.add(&h);
            routes.push(r);
        }
        let m = &shared.shadow.metrics;
        let line = |k: &str| state.lines.get(k).copied().unwrap_or(0);
        let flows = shared.shadow.flows.as_ref();
        // Flow lines go to the same file: counted with the exchanges' lines.
        // Stream lines go to the same file too: [regression, noise, ignored].
        let streams = shared.sse.summary();
        let stream_lines = |class: usize| -> u64 {
            streams
                .iter()
                .map(|s| match class {
                    0 => s.regression_lines,
                    1 => s.noise_lines,
                    _ => s.lines.saturating_sub(s.regression_lines + s.noise_lines),
                })
                .sum()
        };
        let flow_noise_lines = flows.map_or(0, |f| {
            f.noise_lines.load(std::sync::atomic::Ordering::Relaxed)
        });
        let flow_lines = |ignored: bool| {
            flows.map_or(0, |f| {
                if ignored {
                    f.ignored_lines.load(std::sync::atomic::Ordering::Relaxed)
                } else {
                    f.lines.load(std::sync::atomic::Ordering::Relaxed)
                }
            })
        };
        Summary {
            primary,
            candidate,
            secondary,
            coverage: shadow.coverage(),
            shadow,
            shadow_in_flight: m.shadow_in_flight.get(),
            breaker: BreakerSummary {
                state: shared.shadow.breaker.state().to_owned(),
                trips: m.breaker_trips.get(),
            },
            connections: Connections {
                client: m.client_connections.get(),
                primary: m.connections("primary").get(),
                candidate: m.connections("candidate").get(),
                secondary: m.connections("secondary").get(),
            },
            comparisons: state.outcomes,
            lines: Lines {
                regression: line("regression") + flow_lines(false) + stream_lines(0),
                noise: line("noise") + flow_noise_lines + stream_lines(1),
                ignored: line("ignored") + flow_lines(true) + stream_lines(2),
                held_back: state.held as u64,
            },
            write_errors: state.write_errors,
            routes,
            groups: if groups { state.groups() } else { Vec::new() },
            learned_noise: state.learned(),
            streams,
            flows: flows.map(|f| f.summary()),
            capture: shared.capture.as_ref().map(|c| c.summary()),
        }
    }
}
