//! The rollback decision matrix, live: scrapes of a gateway's `/metrics` (and its health
//! check) go in, rule state changes come out. No I/O here; `shadowgate watch` scrapes, prints
//! and runs the rollback command.
//!
//! Each observation evaluates every rule's metric over a sliding *rate window* (like
//! Prometheus' `rate(x[1m])`): counter increases between the newest scrape and the last one
//! at least a window older. A rule goes `ok → pending` when its condition first holds and
//! `pending → firing` once it has held for the rule's `for`; it returns to `ok` as soon as
//! it does not hold (or has no data).
//!
//! Metrics, from the names in [`MetricNames`] (the plan's `veloz_gateway_*` by default;
//! configurable, since the real C++ gateway exports `gateway_*`/`http_*`):
//! - `error_rate`: increase of 5xx requests (a `status` label starting with 5, or a separate
//!   errors counter) over the increase of all requests;
//! - `p50`..`p99.9`, `max`: from the increase of the duration histogram's buckets, with
//!   Prometheus' `histogram_quantile` interpolation;
//! - `auth_failure_rate`: failures over attempts; `ratio(auth_failure_rate, baseline)` divides
//!   by its value over the first window of the watch (or a given baseline);
//! - `cpu` (percent of one CPU), `rss`, `rss_growth_per_hour` (least squares since the start);
//! - `health_ok`: 1 when the health check passed, 0 when not.

use std::collections::VecDeque;
use std::time::Duration;

use crate::expr::{Agg, LatencyStat, Metric};
use crate::prom::Scrape;
use crate::rollback::{Action, RollbackMatrix};

/// Names of the metrics read from a scrape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricNames {
    /// Request counter (with a `status` label unless `errors` is set).
    pub requests: String,
    /// A counter of failed requests, for gateways without a status label.
    pub errors: Option<String>,
    /// Duration histogram buckets (seconds, `le` label).
    pub duration_bucket: String,
    /// Authentication failures counter.
    pub auth_failures: String,
    /// Authentication attempts counter.
    pub auth_attempts: String,
    /// CPU seconds counter.
    pub cpu_seconds: String,
    /// Resident memory gauge (bytes).
    pub rss_bytes: String,
}

impl Default for MetricNames {
    fn default() -> MetricNames {
        MetricNames {
            requests: "veloz_gateway_requests_total".into(),
            errors: None,
            duration_bucket: "veloz_gateway_request_duration_seconds_bucket".into(),
            auth_failures: "veloz_gateway_auth_failures_total".into(),
            auth_attempts: "veloz_gateway_auth_attempts_total".into(),
            cpu_seconds: "process_cpu_seconds_total".into(),
            rss_bytes: "process_resident_memory_bytes".into(),
        }
    }
}

/// The numbers taken from one scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// All requests.
    pub requests: Option<f64>,
    /// Failed (5xx) requests.
    pub errors: Option<f64>,
    /// Cumulative buckets `(le seconds, count)`, sorted by `le`.
    pub buckets: Vec<(f64, f64)>,
    /// Auth failures.
    pub auth_failures: Option<f64>,
    /// Auth attempts.
    pub auth_attempts: Option<f64>,
    /// CPU seconds.
    pub cpu_seconds: Option<f64>,
    /// RSS bytes.
    pub rss_bytes: Option<f64>,
    /// The health check passed (`None`: not checked).
    pub health_ok: Option<bool>,
}

impl Snapshot {
    /// Reads the named metrics out of a scrape.
    pub fn from_scrape(s: &Scrape, names: &MetricNames) -> Snapshot {
        let requests = s.sum(&names.requests);
        let errors = match &names.errors {
            Some(e) => s.sum(e),
            None => requests.map(|_| {
                s.samples
                    .iter()
                    .filter(|x| {
                        x.name == names.requests
                            && x.labels
                                .get("status")
                                .or_else(|| x.labels.get("code"))
                                .is_some_and(|v| v.starts_with('5'))
                    })
                    .map(|x| x.value)
                    .sum()
            }),
        };
        let mut buckets: Vec<(f64, f64)> = Vec::new();
        for x in s.samples.iter().filter(|x| x.name == names.duration_bucket) {
            let Some(le) = x.labels.get("le").and_then(|v| match v.as_str() {
                "+Inf" | "Inf" => Some(f64::INFINITY),
                v => v.parse::<f64>().ok(),
            }) else {
                continue;
            };
            // Buckets of several label sets (routes) add up per bound.
            match buckets.iter_mut().find(|(b, _)| *b == le) {
                Some(b) => b.1 += x.value,
                None => buckets.push((le, x.value)),
            }
        }
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        Snapshot {
            requests,
            errors,
            buckets,
            auth_failures: s.sum(&names.auth_failures),
            auth_attempts: s.sum(&names.auth_attempts),
            cpu_seconds: s.sum(&names.cpu_seconds),
            rss_bytes: s.sum(&names.rss_bytes),
            health_ok: None,
        }
    }
}

/// A rule's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// The condition does not hold.
    Ok,
    /// It holds, not yet for long enough.
    Pending,
    /// It has held for the rule's `for`.
    Firing,
}

/// A rule changed state.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// When (since the watch started).
    pub at: Duration,
    /// Index of the rule.
    pub rule: usize,
    /// Its name.
    pub name: String,
    /// Its action.
    pub action: Action,
    /// Old state.
    pub from: State,
    /// New state.
    pub to: State,
    /// The value that decided it (`None`: no data).
    pub value: Option<f64>,
}

/// Evaluates the rollback matrix over successive snapshots.
#[derive(Debug)]
pub struct Watcher {
    matrix: RollbackMatrix,
    window: Duration,
    history: VecDeque<(Duration, Snapshot)>,
    /// `(time, rss)` since the start, for the leak slope (thinned to at most 10,000 points).
    rss: Vec<(f64, f64)>,
    baseline_auth: Option<f64>,
    states: Vec<(State, Option<Duration>)>,
}

impl Watcher {
    /// A watcher with a rate window (e.g. 1 min; seconds in tests) and an optional
    /// auth-failure-rate baseline.
    pub fn new(matrix: RollbackMatrix, window: Duration, baseline_auth: Option<f64>) -> Watcher {
        let n = matrix.rules.len();
        Watcher {
            matrix,
            window,
            history: VecDeque::new(),
            rss: Vec::new(),
            baseline_auth,
            states: vec![(State::Ok, None); n],
        }
    }

    /// The rules.
    pub fn matrix(&self) -> &RollbackMatrix {
        &self.matrix
    }

    /// Current state of every rule.
    pub fn states(&self) -> Vec<State> {
        self.states.iter().map(|s| s.0).collect()
    }

    /// Adds a snapshot taken at `at` and returns the state changes it causes.
    pub fn observe(&mut self, at: Duration, snap: Snapshot) -> Vec<Event> {
        if let Some(r) = snap.rss_bytes {
            if self.rss.len() >= 10_000 {
                // Keep every other point: the slope stays a fit over the whole watch.
                let mut i = 0;
                self.rss.retain(|_| {
                    i += 1;
                    i % 2 == 0
                });
            }
            self.rss.push((at.as_secs_f64(), r));
        }
        self.history.push_back((at, snap));
        // Keep one snapshot at least a window old, drop older ones.
        while self.history.len() > 2
            && self
                .history
                .get(1)
                .is_some_and(|(t, _)| at.saturating_sub(*t) >= self.window)
        {
            self.history.pop_front();
        }
        if self.baseline_auth.is_none() && self.window_complete() {
            self.baseline_auth = self.value(&Metric::AuthFailureRate);
        }
        let mut events = Vec::new();
        for i in 0..self.matrix.rules.len() {
            let rule = &self.matrix.rules[i];
            let value = self.value(&rule.expr.metric);
            let holds = value.is_some_and(|v| rule.expr.op.holds(v, rule.expr.threshold));
            let (state, since) = self.states[i];
            let next = match (holds, since) {
                (false, _) => (State::Ok, None),
                (true, None) => {
                    if rule.hold.is_zero() {
                        (State::Firing, Some(at))
                    } else {
                        (State::Pending, Some(at))
                    }
                }
                (true, Some(s)) if at.saturating_sub(s) >= rule.hold => (State::Firing, Some(s)),
                (true, Some(s)) => (State::Pending, Some(s)),
            };
            if next.0 != state {
                events.push(Event {
                    at,
                    rule: i,
                    name: rule.name.clone(),
                    action: rule.action,
                    from: state,
                    to: next.0,
                    value,
                });
            }
            self.states[i] = next;
        }
        events
    }

    fn window_complete(&self) -> bool {
        match (self.history.front(), self.history.back()) {
            (Some((a, _)), Some((b, _))) => b.saturating_sub(*a) >= self.window,
            _ => false,
        }
    }

    /// The window's oldest and newest snapshots and the seconds between them.
    fn ends(&self) -> Option<(&Snapshot, &Snapshot, f64)> {
        let (t0, a) = self.history.front()?;
        let (t1, b) = self.history.back()?;
        let dt = t1.saturating_sub(*t0).as_secs_f64();
        (dt > 0.0).then_some((a, b, dt))
    }

    /// The value of a metric now (`None`: no data).
    pub fn value(&self, metric: &Metric) -> Option<f64> {
        let delta = |f: fn(&Snapshot) -> Option<f64>| -> Option<f64> {
            let (a, b, _) = self.ends()?;
            // A counter reset (restart) counts from zero, as Prometheus' rate() does.
            let (x, y) = (f(a)?, f(b)?);
            Some(if y >= x { y - x } else { y })
        };
        match metric {
            Metric::ErrorRate => {
                let req = delta(|s| s.requests)?;
                (req > 0.0).then_some(delta(|s| s.errors)? / req)
            }
            Metric::AuthFailureRate => {
                let att = delta(|s| s.auth_attempts)?;
                (att > 0.0).then_some(delta(|s| s.auth_failures)? / att)
            }
            Metric::Throughput => {
                let (_, _, dt) = self.ends()?;
                Some(delta(|s| s.requests)? / dt)
            }
            Metric::Cpu(_) => {
                let (_, _, dt) = self.ends()?;
                Some(delta(|s| s.cpu_seconds)? / dt * 100.0)
            }
            Metric::Rss(Agg::Max | Agg::Mean | Agg::P95) => self.history.back()?.1.rss_bytes,
            Metric::RssGrowthPerHour => {
                crate::stats::least_squares_slope(&self.rss).map(|s| s * 3600.0)
            }
            Metric::HealthOk => self
                .history
                .back()?
                .1
                .health_ok
                .map(|ok| if ok { 1.0 } else { 0.0 }),
            Metric::Latency(stat) => {
                let (a, b, _) = self.ends()?;
                let q = match stat {
                    LatencyStat::Quantile(q) => *q,
                    LatencyStat::Max => 1.0,
                    LatencyStat::Min | LatencyStat::Mean => return None,
                };
                histogram_quantile(q, &bucket_delta(&a.buckets, &b.buckets)).map(|s| s * 1e9)
            }
            Metric::Ratio(inner, base) if base == "baseline" => {
                let v = self.value(inner)?;
                let b = match **inner {
                    Metric::AuthFailureRate => self.baseline_auth?,
                    _ => return None,
                };
                (b > 0.0).then_some(v / b)
            }
            _ => None,
        }
    }
}

/// Per-bucket increase between two cumulative bucket lists (same bounds).
fn bucket_delta(a: &[(f64, f64)], b: &[(f64, f64)]) -> Vec<(f64, f64)> {
    b.iter()
        .map(|&(le, y)| {
            let x = a.iter().find(|(l, _)| *l == le).map_or(0.0, |p| p.1);
            (le, if y >= x { y - x } else { y })
        })
        .collect()
}

/// Prometheus' `histogram_quantile`: linear interpolation inside the bucket holding the rank;
/// a rank in the `+Inf` bucket gives the highest finite bound. `None` without observations.
pub fn histogram_quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 || buckets.len() < 2 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total;
    let mut lower = 0.0;
    let mut below = 0.0;
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(lower);
            }
            let in_bucket = count - below;
            let frac = if in_bucket > 0.0 {
                (rank - below) / in_bucket
            } else {
                1.0
            };
            return Some(lower + (le - lower) * frac);
        }
        lower = le;
        below = count;
    }
    Some(lower)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prom;

    const MATRIX: &str = r#"
[[rule]]
name = "errors"
expr = "error_rate > 1%"
for = "2s"
action = "rollback"
[[rule]]
name = "slow"
expr = "p99 > 5ms"
action = "alert"
[[rule]]
name = "auth"
expr = "ratio(auth_failure_rate, baseline) > 2"
action = "rollback"
[[rule]]
name = "health"
expr = "health_ok == 0"
for = "1s"
action = "rollback"
"#;

    fn scrape(req: u64, err: u64, fast: u64, slow: u64, auth: (u64, u64)) -> Snapshot {
        let text = format!(
            "veloz_gateway_requests_total{{status=\"200\"}} {}\n\
             veloz_gateway_requests_total{{status=\"503\"}} {err}\n\
             veloz_gateway_request_duration_seconds_bucket{{le=\"0.001\"}} {fast}\n\
             veloz_gateway_request_duration_seconds_bucket{{le=\"0.01\"}} {}\n\
             veloz_gateway_request_duration_seconds_bucket{{le=\"+Inf\"}} {}\n\
             veloz_gateway_auth_failures_total {}\nveloz_gateway_auth_attempts_total {}\n\
             process_cpu_seconds_total {}\nprocess_resident_memory_bytes 1e8\n",
            req - err,
            fast + slow,
            fast + slow,
            auth.0,
            auth.1,
            req as f64 / 1000.0,
        );
        let mut s = Snapshot::from_scrape(&prom::parse(&text).unwrap(), &MetricNames::default());
        s.health_ok = Some(true);
        s
    }

    #[test]
    fn quantiles_like_prometheus() {
        let b = [(0.001, 50.0), (0.01, 100.0), (f64::INFINITY, 100.0)];
        assert_eq!(histogram_quantile(0.5, &b), Some(0.001));
        assert!((histogram_quantile(0.75, &b).unwrap() - 0.0055).abs() < 1e-12);
        assert_eq!(
            histogram_quantile(0.5, &[(1.0, 0.0), (f64::INFINITY, 0.0)]),
            None
        );
        let inf = [(0.001, 0.0), (f64::INFINITY, 10.0)];
        assert_eq!(histogram_quantile(0.99, &inf), Some(0.001));
    }

    #[test]
    fn errors_must_hold_for_their_duration_and_recover() {
        let m = RollbackMatrix::parse(MATRIX, "m.toml").unwrap();
        let mut w = Watcher::new(m, Duration::from_secs(1), None);
        let s = Duration::from_secs;
        assert!(
            w.observe(s(0), scrape(1000, 0, 1000, 0, (10, 100)))
                .is_empty()
        );
        assert!(
            w.observe(s(1), scrape(2000, 0, 2000, 0, (20, 200)))
                .is_empty()
        );
        // 5 % errors from t=2: pending, then firing after 2 s.
        let e = w.observe(s(2), scrape(3000, 50, 3000, 0, (30, 300)));
        assert_eq!((e.len(), e[0].to), (1, State::Pending));
        assert_eq!(e[0].value, Some(0.05));
        assert!(
            w.observe(s(3), scrape(4000, 100, 4000, 0, (40, 400)))
                .is_empty()
        );
        let e = w.observe(s(4), scrape(5000, 150, 5000, 0, (50, 500)));
        assert_eq!(
            (e[0].name.as_str(), e[0].to, e[0].action),
            ("errors", State::Firing, Action::Rollback)
        );
        // Errors stop: back to ok.
        let e = w.observe(s(5), scrape(6000, 150, 6000, 0, (60, 600)));
        assert_eq!(e[0].to, State::Ok);
    }

    #[test]
    fn latency_auth_and_health() {
        let m = RollbackMatrix::parse(MATRIX, "m.toml").unwrap();
        let mut w = Watcher::new(m, Duration::from_secs(1), None);
        let s = Duration::from_secs;
        w.observe(s(0), scrape(1000, 0, 1000, 0, (10, 100)));
        w.observe(s(1), scrape(2000, 0, 2000, 0, (20, 200)));
        // 10 % of the new requests take 1-10 ms: P99 ≈ 9.1 ms > 5 ms fires at once (no for).
        let e = w.observe(s(2), scrape(3000, 0, 2900, 100, (30, 300)));
        let slow: Vec<_> = e.iter().filter(|e| e.name == "slow").collect();
        assert_eq!(slow[0].to, State::Firing);
        assert!(slow[0].value.unwrap() > 5e6);
        // Auth failures: baseline 10 % (first window); now 50 %.
        let e = w.observe(s(3), scrape(4000, 0, 3900, 100, (80, 400)));
        let auth: Vec<_> = e.iter().filter(|e| e.name == "auth").collect();
        assert_eq!(auth[0].to, State::Firing, "{e:?}");
        assert_eq!(auth[0].value, Some(5.0));
        let mut down = scrape(5000, 0, 4900, 100, (90, 500));
        down.health_ok = Some(false);
        let e = w.observe(s(4), down.clone());
        assert!(
            e.iter()
                .any(|e| e.name == "health" && e.to == State::Pending)
        );
        let e = w.observe(s(5), down);
        assert!(
            e.iter()
                .any(|e| e.name == "health" && e.to == State::Firing)
        );
        // The last window (t=4..5) used no CPU seconds (the scrapes repeat 5000 requests).
        assert_eq!(w.value(&Metric::Cpu(Agg::Mean)), Some(0.0));
        assert_eq!(w.value(&Metric::RssGrowthPerHour), Some(0.0));
    }
}
