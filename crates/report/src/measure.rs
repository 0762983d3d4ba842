//! Measurements: what the run directories recorded, merged, and the queries criteria ask.
//!
//! Several run directories (several load generators, several proxies) become one set of
//! measurements: [`shadowgate_record::merge`] adds histograms and counts exactly; the facts
//! each producer wrote into its manifest's `extra` are read per directory *before* merging.
//!
//! # Manifest keys read
//!
//! From load runs (`kind = "load"`, written by shadowgate-load's `LoadSummary`):
//! `duration_s` (the measured window, without ramp, warm-up and tail), `generator_limited`,
//! `generator_limited_reasons`, `target_rate`, `achieved_rate`, and `calibration.response`
//! (`p50_ns`, `p99_ns`: the generator's own floor against a null server). From mirror runs:
//! `mirror.coverage` (compared ÷ eligible shadow copies). Unknown or absent keys are simply
//! not used.
//!
//! # Throughput window
//!
//! Throughput is requests over the run's *own* window, not the manifest's start-to-end
//! (which includes start-up, ramp and warm-up): a load run's measured window (`duration_s`),
//! otherwise the span of the `counts.csv` intervals in which the target had requests.
//! Runs whose `[started_at, ended_at]` overlap ran side by side (shards of one load): their
//! requests add over the longest of their windows. Runs that did not overlap ran one after
//! the other: their windows add.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use shadowgate_record::hdrhistogram::Histogram;
use shadowgate_record::{
    Counts, DISCREPANCIES_FILE, Discrepancy, Measure, ResourceSample, Run, RunKind,
};

use crate::criteria::RoutePattern;
use crate::error::ReportError;

/// Facts about one run directory.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Source {
    /// The directory as given.
    pub dir: PathBuf,
    /// Which command recorded it.
    pub kind: RunKind,
    /// Start (RFC 3339 in JSON).
    #[serde(serialize_with = "ser_time")]
    pub started_at: SystemTime,
    /// End, if the run finished.
    #[serde(serialize_with = "ser_time_opt")]
    pub ended_at: Option<SystemTime>,
    /// Host it was recorded on.
    pub host: String,
    /// Targets it recorded (name → URL).
    pub targets: BTreeMap<String, String>,
    /// The load generator could not hold its rate.
    pub generator_limited: bool,
    /// Why, as the generator said.
    pub generator_limited_reasons: Vec<String>,
    /// Load runs: the rate asked for (req/s).
    pub target_rate: Option<f64>,
    /// Load runs: the rate achieved (req/s).
    pub achieved_rate: Option<f64>,
    /// Load runs: the measured window in seconds.
    pub measured_s: Option<f64>,
    /// Mirror runs: compared ÷ eligible.
    pub coverage: Option<f64>,
    /// Load runs with `--calibrate`: the generator's own P50 and P99 against a null server (ns).
    pub calibration_p50_ns: Option<f64>,
    /// See `calibration_p50_ns`.
    pub calibration_p99_ns: Option<f64>,
    /// It has a `discrepancies.ndjson` (it compared answers).
    pub compared: bool,
    /// Mirror runs: `extra.mirror.streams` (event-stream comparison per route).
    #[serde(skip)]
    pub(crate) streams: Vec<serde_json::Value>,
    /// Mirror runs: `extra.mirror.flows` (order flows and the id map).
    #[serde(skip)]
    pub(crate) flows: Option<serde_json::Value>,
    /// Audit-diff runs: `extra.audit`.
    #[serde(skip)]
    pub(crate) audit: Option<serde_json::Value>,
    /// Requests per target, for throughput.
    #[serde(skip)]
    requests: BTreeMap<String, u64>,
    /// Window per target in seconds, for throughput.
    #[serde(skip)]
    windows: BTreeMap<String, f64>,
}

fn ser_time<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_rfc3339_millis(*t).to_string())
}

fn ser_time_opt<S: serde::Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => ser_time(t, s),
        None => s.serialize_none(),
    }
}

impl Source {
    fn of(run: &Run) -> Source {
        let extra = &run.manifest.extra;
        let num = |k: &str| extra.get(k).and_then(serde_json::Value::as_f64);
        let calib = |k: &str| {
            extra
                .get("calibration")
                .and_then(|c| c.get("response"))
                .and_then(|r| r.get(k))
                .and_then(serde_json::Value::as_f64)
        };
        let is_load = run.manifest.kind == RunKind::Load;
        let measured_s = if is_load {
            num("duration_s").filter(|d| *d > 0.0)
        } else {
            None
        };
        let mut requests: BTreeMap<String, u64> = BTreeMap::new();
        let mut spans: BTreeMap<String, (Duration, Duration)> = BTreeMap::new();
        for row in &run.counts {
            if row.requests == 0 {
                continue;
            }
            *requests.entry(row.target.clone()).or_default() += row.requests;
            let (s, e) = (row.start(), row.start() + row.length());
            spans
                .entry(row.target.clone())
                .and_modify(|(a, b)| {
                    *a = (*a).min(s);
                    *b = (*b).max(e);
                })
                .or_insert((s, e));
        }
        let windows = spans
            .into_iter()
            .map(|(t, (s, e))| {
                let w = measured_s.unwrap_or_else(|| (e - s).as_secs_f64());
                (t, w)
            })
            .filter(|(_, w)| *w > 0.0)
            .collect();
        Source {
            dir: run.dir.clone(),
            kind: run.manifest.kind,
            started_at: run.manifest.started_at,
            ended_at: run.manifest.ended_at,
            host: run.manifest.host.hostname.clone(),
            targets: run.manifest.targets.clone(),
            generator_limited: extra
                .get("generator_limited")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false),
            generator_limited_reasons: extra
                .get("generator_limited_reasons")
                .and_then(serde_json::Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            target_rate: if is_load { num("target_rate") } else { None },
            achieved_rate: if is_load { num("achieved_rate") } else { None },
            measured_s,
            coverage: extra
                .get("mirror")
                .and_then(|m| m.get("coverage"))
                .and_then(serde_json::Value::as_f64),
            calibration_p50_ns: calib("p50_ns"),
            calibration_p99_ns: calib("p99_ns"),
            compared: run.dir.join(DISCREPANCIES_FILE).exists() || !run.discrepancies.is_empty(),
            streams: extra
                .get("mirror")
                .and_then(|m| m.get("streams"))
                .and_then(serde_json::Value::as_array)
                .cloned()
                .unwrap_or_default(),
            flows: extra
                .get("mirror")
                .and_then(|m| m.get("flows"))
                .filter(|f| f.is_object())
                .cloned(),
            audit: extra.get("audit").filter(|a| a.is_object()).cloned(),
            requests,
            windows,
        }
    }

    fn end_or(&self, window: f64) -> SystemTime {
        self.ended_at
            .unwrap_or(self.started_at + Duration::from_secs_f64(window.max(0.0)))
    }
}

/// Whether a series times requests (response or service time). Other measures (`;lag`, the
/// SSE event lag) are side series: they never make a target or a route of their own, so a
/// `route = "*"` latency criterion is not expanded to a stream route that only has lag, and
/// request latency figures never include them.
pub fn is_request_measure(m: &Measure) -> bool {
    matches!(m, Measure::Response | Measure::Service)
}

/// Everything recorded, merged, with the queries the evaluation needs.
#[derive(Debug)]
pub struct Measurements {
    /// The merged run.
    pub run: Run,
    /// One entry per directory, in the order given.
    pub sources: Vec<Source>,
    /// Criteria's target names → names in the data (e.g. `candidate` → `target`).
    pub aliases: BTreeMap<String, String>,
}

impl Measurements {
    /// Opens and merges run directories.
    pub fn open(dirs: &[PathBuf]) -> Result<Measurements, ReportError> {
        let runs = dirs.iter().map(Run::open).collect::<Result<Vec<_>, _>>()?;
        Measurements::from_runs(runs)
    }

    /// Merges runs already read.
    pub fn from_runs(runs: Vec<Run>) -> Result<Measurements, ReportError> {
        let sources = runs.iter().map(Source::of).collect();
        let run = shadowgate_record::merge(&runs)?;
        Ok(Measurements {
            run,
            sources,
            aliases: BTreeMap::new(),
        })
    }

    /// The data's name for a target named in criteria.
    pub fn resolve<'a>(&'a self, name: &'a str) -> &'a str {
        self.aliases.get(name).map_or(name, String::as_str)
    }

    /// Every target with any data, sorted.
    pub fn targets(&self) -> BTreeSet<String> {
        let mut out: BTreeSet<String> = self.run.manifest.targets.keys().cloned().collect();
        out.extend(
            self.run
                .latency
                .keys()
                .filter(|k| is_request_measure(&k.measure))
                .map(|k| k.target.clone()),
        );
        out.extend(self.run.counts.iter().map(|r| r.target.clone()));
        out.extend(self.run.resources.iter().map(|r| r.target.clone()));
        out
    }

    /// Response-time (or `measure`) histogram of a target over the routes in scope; `None`
    /// without samples.
    pub fn latency(
        &self,
        target: &str,
        route: Option<&RoutePattern>,
        measure: &Measure,
    ) -> Option<Histogram<u64>> {
        let target = self.resolve(target);
        let mut out: Option<Histogram<u64>> = None;
        for (key, data) in &self.run.latency {
            if key.target != target
                || &key.measure != measure
                || route.is_some_and(|r| !r.matches(&key.method, &key.route))
                || data.total.is_empty()
            {
                continue;
            }
            match &mut out {
                None => out = Some(data.total.clone()),
                Some(h) => {
                    // Same layout on both sides (the record crate writes one), so this only
                    // fails on a foreign file with larger values than an auto-resizing
                    // total can take; such a series is skipped with a warning upstream.
                    if h.add(&data.total).is_err() {
                        tracing::warn!(series = %key.tag(), "Could not add a latency series.");
                    }
                }
            }
        }
        out
    }

    /// Counts of a target over the routes in scope; `None` when it has no rows at all.
    pub fn counts(&self, target: &str, route: Option<&RoutePattern>) -> Option<Counts> {
        let target = self.resolve(target);
        let mut out: Option<Counts> = None;
        for row in &self.run.counts {
            if row.target == target && route.is_none_or(|r| r.matches(&row.method, &row.route)) {
                out.get_or_insert_with(Counts::default).add(&row.counts());
            }
        }
        out
    }

    /// `(method, route)` pairs a target has latency or counts for.
    pub fn routes(&self, target: &str) -> BTreeSet<(String, String)> {
        let target = self.resolve(target);
        let mut out = BTreeSet::new();
        for k in self.run.latency.keys() {
            if k.target == target && is_request_measure(&k.measure) {
                out.insert((k.method.clone(), k.route.clone()));
            }
        }
        for r in &self.run.counts {
            if r.target == target {
                out.insert((r.method.clone(), r.route.clone()));
            }
        }
        out
    }

    /// The throughput window of a target in seconds (see the module docs).
    pub fn window_s(&self, target: &str) -> Option<f64> {
        let target = self.resolve(target);
        let mut spans: Vec<(SystemTime, SystemTime, f64)> = self
            .sources
            .iter()
            .filter_map(|s| {
                let w = *s.windows.get(target)?;
                Some((s.started_at, s.end_or(w), w))
            })
            .collect();
        if spans.is_empty() {
            return None;
        }
        spans.sort_by_key(|s| s.0);
        let mut total = 0.0;
        let mut cluster_end = spans[0].1;
        let mut cluster_max = 0.0_f64;
        for (start, end, w) in spans {
            if start >= cluster_end && cluster_max > 0.0 {
                total += cluster_max;
                cluster_max = 0.0;
            }
            cluster_end = cluster_end.max(end);
            cluster_max = cluster_max.max(w);
        }
        Some(total + cluster_max)
    }

    /// Requests per second of a target over its window, for the routes in scope.
    pub fn throughput(&self, target: &str, route: Option<&RoutePattern>) -> Option<f64> {
        let w = self.window_s(target)?;
        let c = self.counts(target, route)?;
        Some(c.requests as f64 / w)
    }

    /// Sources that recorded this target with a generator that could not hold its rate.
    pub fn generator_limited(&self, target: &str) -> Vec<&Source> {
        let target = self.resolve(target);
        self.sources
            .iter()
            .filter(|s| {
                s.generator_limited
                    && (s.targets.contains_key(target) || s.requests.contains_key(target))
            })
            .collect()
    }

    /// Resource samples of a target.
    pub fn resources(&self, target: &str) -> Vec<&ResourceSample> {
        let target = self.resolve(target);
        self.run
            .resources
            .iter()
            .filter(|s| s.target == target)
            .collect()
    }

    /// Least-squares RSS slope of a target in bytes per hour, with the number of samples and
    /// the time they span.
    pub fn rss_growth_per_hour(&self, target: &str) -> Option<(f64, usize, Duration)> {
        let samples: Vec<(f64, f64)> = self
            .resources(target)
            .iter()
            .filter_map(|s| Some((s.unix_ms as f64 / 1000.0, s.rss_bytes? as f64)))
            .collect();
        let slope = crate::stats::least_squares_slope(&samples)?;
        let first = samples.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
        let last = samples
            .iter()
            .map(|p| p.0)
            .fold(f64::NEG_INFINITY, f64::max);
        Some((
            slope * 3600.0,
            samples.len(),
            Duration::from_secs_f64((last - first).max(0.0)),
        ))
    }

    /// True when any source compared answers (so "no discrepancies" means something).
    pub fn compared(&self) -> bool {
        self.sources.iter().any(|s| s.compared)
    }

    /// Discrepancy lines.
    pub fn discrepancies(&self) -> &[Discrepancy] {
        &self.run.discrepancies
    }

    /// Route templates of the event streams the mirror compared (from the manifests).
    pub fn stream_routes(&self) -> BTreeSet<String> {
        self.sources
            .iter()
            .flat_map(|s| &s.streams)
            .filter_map(|v| v.get("route").and_then(serde_json::Value::as_str))
            .map(str::to_owned)
            .collect()
    }

    /// Whether an `audit-diff` run (or a run with audit lines) is among the sources.
    pub fn audited(&self) -> bool {
        self.sources
            .iter()
            .any(|s| s.kind == RunKind::AuditDiff || s.audit.is_some())
    }

    /// Lowest mirror coverage among the sources that report one.
    pub fn coverage(&self) -> Option<f64> {
        self.sources
            .iter()
            .filter_map(|s| s.coverage)
            .min_by(f64::total_cmp)
    }
}
