//! Counting and recording: the Prometheus registry (metrics are the counters; the summary
//! reads them back), the per-(method, route) handles the hot path uses, and the record shards.
//!
//! Hot-path cost per request: one route lookup (rule routes: a slot per method, created once;
//! other paths: one map lookup under a short lock), then relaxed atomic increments and one
//! histogram observation per target, and one sample into a [`LocalRecorder`] shard picked by
//! connection id (a mutex that is uncontended in practice). No label strings are built per
//! request: every handle is resolved once per (method, route) and kept.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use http::Method;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use shadowgate_diff::{RuleSet, generalize_path};
use shadowgate_record::{LatencyRecorder, LocalRecorder, Outcome, SeriesId, SeriesKey};

/// Distinct (method, route) pairs for paths no rule covers before they are lumped together,
/// so that a scanner cannot grow the series and metric families without bound.
pub(crate) const MAX_OTHER_ROUTES: usize = 512;
/// The route name of the lumped pairs.
pub(crate) const OVERFLOW_ROUTE: &str = "(other)";

/// Latency buckets (seconds) of the Prometheus histograms: 100 µs … 10 s.
const BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

fn latency_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    target: &'static str,
    method: String,
    route: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SeriesLabels {
    target: &'static str,
    method: String,
    route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShadowLabels {
    method: String,
    route: String,
    event: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct DiscrepancyLabels {
    pub method: String,
    pub route: String,
    pub kind: &'static str,
    pub class: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CompareLabels {
    method: String,
    route: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    target: &'static str,
}

/// Outcome columns, in the order of [`TargetHandles::outcomes`].
pub(crate) const OUTCOMES: [(&str, Outcome); 8] = [
    ("1xx", Outcome::Status1xx),
    ("2xx", Outcome::Status2xx),
    ("3xx", Outcome::Status3xx),
    ("4xx", Outcome::Status4xx),
    ("5xx", Outcome::Status5xx),
    ("connect_error", Outcome::ConnectError),
    ("timeout", Outcome::Timeout),
    ("other_error", Outcome::OtherError),
];

fn outcome_index(o: Outcome) -> usize {
    match o {
        Outcome::Status1xx => 0,
        Outcome::Status2xx => 1,
        Outcome::Status3xx => 2,
        Outcome::Status4xx => 3,
        Outcome::Status5xx => 4,
        Outcome::ConnectError => 5,
        Outcome::Timeout => 6,
        // Shadow drops are counted by the shadow counters, never through here.
        Outcome::OtherError | Outcome::ShadowDrop => 7,
    }
}

/// Why a request's shadow copy was or was not compared; one counter each per route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ShadowEvent {
    /// Selected for mirroring (rules allow it and sampling picked it): the coverage
    /// denominator.
    Eligible,
    /// A write on a route without an opt-in rule: never sent.
    WriteSkipped,
    /// Left out by sampling.
    NotSampled,
    /// Sent to the candidate.
    Sent,
    /// Compared: the coverage numerator.
    Compared,
    /// No shadow permit free: dropped.
    DroppedBudget,
    /// The circuit breaker is open: not sent.
    BreakerOpen,
    /// The candidate timed out.
    Timeout,
    /// The candidate could not be connected to.
    ConnectError,
    /// The candidate failed otherwise (reset, garbage, protocol error).
    Error,
    /// A body (request, primary or candidate answer) was over the limit: not compared.
    BodyOverLimit,
    /// The primary answered with an event stream: passed through, not compared here.
    Sse,
    /// The primary failed or its body broke off: nothing to compare against.
    PrimaryFailed,
    /// The comparison queue was full: dropped.
    QueueFull,
}

impl ShadowEvent {
    pub(crate) const ALL: [ShadowEvent; 14] = [
        ShadowEvent::Eligible,
        ShadowEvent::WriteSkipped,
        ShadowEvent::NotSampled,
        ShadowEvent::Sent,
        ShadowEvent::Compared,
        ShadowEvent::DroppedBudget,
        ShadowEvent::BreakerOpen,
        ShadowEvent::Timeout,
        ShadowEvent::ConnectError,
        ShadowEvent::Error,
        ShadowEvent::BodyOverLimit,
        ShadowEvent::Sse,
        ShadowEvent::PrimaryFailed,
        ShadowEvent::QueueFull,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            ShadowEvent::Eligible => "eligible",
            ShadowEvent::WriteSkipped => "write_skipped",
            ShadowEvent::NotSampled => "not_sampled",
            ShadowEvent::Sent => "sent",
            ShadowEvent::Compared => "compared",
            ShadowEvent::DroppedBudget => "dropped_budget",
            ShadowEvent::BreakerOpen => "breaker_open",
            ShadowEvent::Timeout => "timeout",
            ShadowEvent::ConnectError => "connect_error",
            ShadowEvent::Error => "error",
            ShadowEvent::BodyOverLimit => "body_over_limit",
            ShadowEvent::Sse => "sse",
            ShadowEvent::PrimaryFailed => "primary_failed",
            ShadowEvent::QueueFull => "queue_full",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The registry and the metric families. Nothing global: the registry is created per proxy.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<SeriesLabels, Histogram, fn() -> Histogram>,
    shadow: Family<ShadowLabels, Counter>,
    pub(crate) discrepancies: Family<DiscrepancyLabels, Counter>,
    comparisons: Family<CompareLabels, Counter>,
    connections: Family<TargetLabels, Counter>,
    /// 0 closed, 1 open, 2 probing.
    pub(crate) breaker_state: Gauge,
    pub(crate) breaker_trips: Counter,
    pub(crate) shadow_in_flight: Gauge,
    pub(crate) client_connections: Counter,
    pub(crate) held_back: Gauge,
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let mut registry = Registry::with_prefix("shadowgate_mirror");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<SeriesLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        let shadow = Family::<ShadowLabels, Counter>::default();
        let discrepancies = Family::<DiscrepancyLabels, Counter>::default();
        let comparisons = Family::<CompareLabels, Counter>::default();
        let connections = Family::<TargetLabels, Counter>::default();
        let breaker_state = Gauge::default();
        let breaker_trips = Counter::default();
        let shadow_in_flight = Gauge::default();
        let client_connections = Counter::default();
        let held_back = Gauge::default();
        // Counter names are registered without `_total`: the encoder appends it (and a name
        // already ending in `_total` panics in debug builds).
        registry.register(
            "requests",
            "Requests per upstream, method, route template and outcome (status class or error)",
            requests.clone(),
        );
        registry.register(
            "response_seconds",
            "Time to the full response per upstream, method and route template",
            latency.clone(),
        );
        registry.register(
            "shadow",
            "Shadow copies per method, route and event (eligible, sent, compared, dropped_budget, breaker_open, timeout, ...)",
            shadow.clone(),
        );
        registry.register(
            "discrepancies",
            "Differences found per method, route, kind and class (regression, noise, ignored)",
            discrepancies.clone(),
        );
        registry.register(
            "comparisons",
            "Compared exchanges per method, route and outcome (match, ignored, noise, regression)",
            comparisons.clone(),
        );
        registry.register(
            "upstream_connections",
            "TCP connections opened to each upstream (churn: with keep-alive this stays near the concurrency)",
            connections.clone(),
        );
        registry.register(
            "client_connections",
            "Client connections accepted",
            client_connections.clone(),
        );
        registry.register(
            "breaker_state",
            "Candidate circuit breaker: 0 closed, 1 open, 2 probing",
            breaker_state.clone(),
        );
        registry.register(
            "breaker_trips",
            "Times the candidate circuit breaker opened",
            breaker_trips.clone(),
        );
        registry.register(
            "shadow_in_flight",
            "Shadow requests in flight",
            shadow_in_flight.clone(),
        );
        registry.register(
            "held_back",
            "Regression lines held back until learned noise decides (with --secondary)",
            held_back.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            shadow,
            discrepancies,
            comparisons,
            connections,
            breaker_state,
            breaker_trips,
            shadow_in_flight,
            client_connections,
            held_back,
        }
    }

    /// Prometheus text format 0.0.4.
    pub(crate) fn encode(&self) -> String {
        let mut out = String::with_capacity(16 << 10);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }

    pub(crate) fn connections(&self, target: &'static str) -> Counter {
        self.connections
            .get_or_create_owned(&TargetLabels { target })
    }

    pub(crate) fn comparison(&self, method: &str, route: &str, outcome: &'static str) -> Counter {
        self.comparisons.get_or_create_owned(&CompareLabels {
            method: method.to_owned(),
            route: route.to_owned(),
            outcome,
        })
    }
}

/// Handles of one upstream for one (method, route).
#[derive(Debug)]
pub(crate) struct TargetHandles {
    series: Option<SeriesId>,
    latency: Histogram,
    outcomes: [Counter; 8],
}

impl TargetHandles {
    fn new(
        metrics: &Metrics,
        recorder: &LatencyRecorder,
        target: &'static str,
        method: &str,
        route: &str,
    ) -> TargetHandles {
        let series = SeriesKey::response(target, method, route)
            .and_then(|k| recorder.series(k))
            .map_err(|e| tracing::warn!(error = %e, "latency series not recorded"))
            .ok();
        let latency = metrics.latency.get_or_create_owned(&SeriesLabels {
            target,
            method: method.to_owned(),
            route: route.to_owned(),
        });
        let outcomes = OUTCOMES.map(|(name, _)| {
            metrics.requests.get_or_create_owned(&RequestLabels {
                target,
                method: method.to_owned(),
                route: route.to_owned(),
                outcome: name,
            })
        });
        TargetHandles {
            series,
            latency,
            outcomes,
        }
    }

    /// Counts an outcome and, for a complete response, its time.
    pub(crate) fn record(
        &self,
        shard: &mut LocalRecorder,
        outcome: Outcome,
        time: Option<Duration>,
    ) {
        self.outcomes[outcome_index(outcome)].inc();
        if let Some(id) = self.series {
            shard.count(id, outcome);
            if let Some(t) = time {
                shard.record_duration(id, t);
            }
        }
        if let Some(t) = time {
            self.latency.observe(t.as_secs_f64());
        }
    }

    /// Counts a shadow copy not sent (budget or breaker) in `counts.csv`'s `shadow_drops`.
    pub(crate) fn record_drop(&self, shard: &mut LocalRecorder) {
        if let Some(id) = self.series {
            shard.count(id, Outcome::ShadowDrop);
        }
    }

    pub(crate) fn total(&self) -> u64 {
        self.outcomes.iter().map(Counter::get).sum()
    }

    pub(crate) fn count(&self, outcome: Outcome) -> u64 {
        self.outcomes[outcome_index(outcome)].get()
    }
}

/// Everything the hot path needs for one (method, route template).
#[derive(Debug)]
pub(crate) struct RouteHandles {
    /// The route template (or generalized path).
    pub route: Arc<str>,
    /// The method.
    pub method: Method,
    /// Index into `RuleSet::routes()` of the matching rule.
    pub rule: Option<usize>,
    pub primary: TargetHandles,
    pub candidate: TargetHandles,
    pub secondary: Option<TargetHandles>,
    shadow: [Counter; ShadowEvent::ALL.len()],
}

impl RouteHandles {
    pub(crate) fn count(&self, e: ShadowEvent) {
        self.shadow[e.index()].inc();
    }

    pub(crate) fn shadow_count(&self, e: ShadowEvent) -> u64 {
        self.shadow[e.index()].get()
    }
}

/// Per-method slots of one rule route.
const METHOD_SLOTS: usize = 7;

fn method_slot(m: &Method) -> Option<usize> {
    Some(match *m {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PUT => 3,
        Method::DELETE => 4,
        Method::PATCH => 5,
        Method::OPTIONS => 6,
        _ => return None,
    })
}

/// Finds (creating on first use) the handles of a request's (method, route).
#[derive(Debug)]
pub(crate) struct Routes {
    rules: Arc<RuleSet>,
    metrics: Arc<Metrics>,
    recorder: LatencyRecorder,
    has_secondary: bool,
    slots: Vec<[OnceLock<Arc<RouteHandles>>; METHOD_SLOTS]>,
    other: Mutex<HashMap<(Method, String), Arc<RouteHandles>>>,
}

impl Routes {
    pub(crate) fn new(
        rules: Arc<RuleSet>,
        metrics: Arc<Metrics>,
        recorder: LatencyRecorder,
        has_secondary: bool,
    ) -> Routes {
        let slots = (0..rules.routes().len())
            .map(|_| std::array::from_fn(|_| OnceLock::new()))
            .collect();
        Routes {
            rules,
            metrics,
            recorder,
            has_secondary,
            slots,
            other: Mutex::new(HashMap::new()),
        }
    }

    fn make(&self, method: &Method, route: &str, rule: Option<usize>) -> Arc<RouteHandles> {
        let m = method.as_str();
        let target = |name| TargetHandles::new(&self.metrics, &self.recorder, name, m, route);
        let shadow = ShadowEvent::ALL.map(|e| {
            self.metrics.shadow.get_or_create_owned(&ShadowLabels {
                method: m.to_owned(),
                route: route.to_owned(),
                event: e.name(),
            })
        });
        Arc::new(RouteHandles {
            route: Arc::from(route),
            method: method.clone(),
            rule,
            primary: target("primary"),
            candidate: target("candidate"),
            secondary: self.has_secondary.then(|| target("secondary")),
            shadow,
        })
    }

    /// The handles for a request (a query in `path` is ignored).
    pub(crate) fn lookup(&self, method: &Method, path: &str) -> Arc<RouteHandles> {
        let routes = self.rules.routes();
        let rule = self
            .rules
            .find_route(method.as_str(), path)
            .and_then(|r| routes.iter().position(|x| std::ptr::eq(x, r)));
        if let (Some(i), Some(slot)) = (rule, method_slot(method)) {
            return Arc::clone(
                self.slots[i][slot]
                    .get_or_init(|| self.make(method, routes[i].template().as_str(), Some(i))),
            );
        }
        let mut name = String::with_capacity(path.len());
        match rule {
            Some(i) => name.push_str(routes[i].template().as_str()),
            None => generalize_path(path, &mut name),
        }
        let key = (method.clone(), name);
        let mut map = lock(&self.other);
        if let Some(h) = map.get(&key) {
            return Arc::clone(h);
        }
        if map.len() >= MAX_OTHER_ROUTES {
            let key = (method.clone(), OVERFLOW_ROUTE.to_owned());
            if let Some(h) = map.get(&key) {
                return Arc::clone(h);
            }
            let h = self.make(method, OVERFLOW_ROUTE, None);
            map.insert(key, Arc::clone(&h));
            return h;
        }
        let h = self.make(method, &key.1, rule);
        map.insert(key, Arc::clone(&h));
        h
    }

    /// Every route seen so far.
    pub(crate) fn all(&self) -> Vec<Arc<RouteHandles>> {
        let mut out: Vec<Arc<RouteHandles>> = self
            .slots
            .iter()
            .flat_map(|s| s.iter().filter_map(|c| c.get().cloned()))
            .collect();
        out.extend(lock(&self.other).values().cloned());
        out.sort_by(|a, b| {
            (a.route.as_ref(), a.method.as_str()).cmp(&(b.route.as_ref(), b.method.as_str()))
        });
        out
    }
}

/// Shards of the latency recorder: picked by connection (or shadow) sequence number, so two
/// worker threads rarely meet on one.
#[derive(Debug)]
pub(crate) struct Shards {
    shards: Vec<Mutex<LocalRecorder>>,
}

impl Shards {
    pub(crate) fn new(recorder: &LatencyRecorder, n: usize) -> Shards {
        Shards {
            shards: (0..n.max(1))
                .map(|_| Mutex::new(recorder.local()))
                .collect(),
        }
    }

    pub(crate) fn get(&self, seq: u64) -> MutexGuard<'_, LocalRecorder> {
        // `usize` is at least 32 bits; the modulo keeps it in range.
        let i = (seq % self.shards.len() as u64) as usize;
        lock(&self.shards[i])
    }

    /// Moves every shard's samples into the recorder's collector.
    pub(crate) fn flush(&self) {
        for s in &self.shards {
            lock(s).flush();
        }
    }
}

/// Locks a mutex, recovering from poisoning: every guarded value here stays consistent
/// between statements, so a panic elsewhere leaves nothing half-updated.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shadowgate_diff::{RawRoute, RawRuleSet};

    #[test]
    fn counters_are_exported_with_total_once() {
        let m = Metrics::new();
        m.breaker_trips.inc();
        m.connections("candidate").inc();
        let text = m.encode();
        assert!(
            text.contains("shadowgate_mirror_breaker_trips_total 1"),
            "{text}"
        );
        assert!(
            text.contains("shadowgate_mirror_upstream_connections_total{target=\"candidate\"} 1"),
            "{text}"
        );
        assert!(!text.contains("_total_total"));
    }

    #[test]
    fn routes_are_resolved_once_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let recorder = LatencyRecorder::create(
            dir.path(),
            std::time::SystemTime::now(),
            Duration::from_secs(1),
        )
        .unwrap();
        let raw = RawRuleSet {
            routes: vec![RawRoute::new("/api/orders/{id}")],
            ..RawRuleSet::default()
        };
        let rules = Arc::new(RuleSet::validate(raw).unwrap());
        let routes = Routes::new(rules, Arc::new(Metrics::new()), recorder, false);
        let a = routes.lookup(&Method::GET, "/api/orders/1");
        let b = routes.lookup(&Method::GET, "/api/orders/2?x=1");
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(&*a.route, "/api/orders/{id}");
        assert_eq!(a.rule, Some(0));
        let c = routes.lookup(&Method::GET, "/other/123");
        assert_eq!(&*c.route, "/other/{id}");
        assert!(Arc::ptr_eq(&c, &routes.lookup(&Method::GET, "/other/456")));
        let ext = Method::from_bytes(b"PURGE").unwrap();
        assert_eq!(
            &*routes.lookup(&ext, "/api/orders/9").route,
            "/api/orders/{id}"
        );
        for i in 0..MAX_OTHER_ROUTES + 10 {
            routes.lookup(&Method::GET, &format!("/scan/p{i}x"));
        }
        assert_eq!(
            &*routes.lookup(&Method::GET, "/scan/late").route,
            OVERFLOW_ROUTE
        );
        assert!(routes.all().len() <= MAX_OTHER_ROUTES + 2);
    }
}
