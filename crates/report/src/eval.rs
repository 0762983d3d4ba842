//! Evaluation: criteria × measurements → [`Report`].
//!
//! Rules worth knowing:
//! - `error_rate` counts 5xx answers, connect errors, timeouts and other transport failures;
//!   4xx answers are the client's business (a 404 for an unknown order is correct) and are
//!   shown beside it, not counted.
//! - Missing data never passes: no samples, no `counts.csv` rows, no `resources.csv`, no
//!   comparison run → `no-data` (blocks the gate) or `skipped` (with `missing = "skip"`).
//! - A throughput criterion (or a throughput ratio) on a target driven by a generator-limited
//!   load run is `generator-limited`: it blocks the gate, but the message blames the
//!   generator, not the gateway.
//! - `route = "*"` expands into one result per route of the target.

use std::collections::{BTreeMap, BTreeSet};

use shadowgate_record::hdrhistogram::Histogram;
use shadowgate_record::{Class, Measure};

use crate::criteria::{Criteria, Criterion, RoutePattern, RouteScope};
use crate::error::ReportError;
use crate::expr::{self, Agg, LatencyStat, Metric};
use crate::measure::Measurements;
use crate::model::*;
use crate::sections;
use crate::stats;
use crate::units::{self, Dimension};

/// Settings of one evaluation.
#[derive(Debug, Clone)]
pub struct Options {
    /// The phase id (`1`..`5`, `overall`).
    pub phase: String,
    /// The version written into the report.
    pub tool_version: String,
    /// Overrides the criteria file's alpha.
    pub alpha: Option<f64>,
}

/// Evaluates one phase's criteria over the measurements.
pub fn evaluate(
    criteria: &Criteria,
    m: &Measurements,
    opts: &Options,
) -> Result<Report, ReportError> {
    let phase = criteria
        .phase(&opts.phase)
        .ok_or_else(|| ReportError::UnknownPhase {
            origin: criteria.origin.clone(),
            phase: opts.phase.clone(),
            known: criteria
                .phases
                .iter()
                .map(|p| p.id.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    let alpha = opts.alpha.unwrap_or(criteria.alpha);
    let mut warnings: Vec<String> = m.run.warnings.clone();
    for (from, to) in &m.aliases {
        warnings.push(format!(
            "criteria target `{from}` is read as `{to}` in the data"
        ));
    }
    for s in m.sources.iter().filter(|s| s.generator_limited) {
        let reasons = if s.generator_limited_reasons.is_empty() {
            String::new()
        } else {
            format!(": {}", s.generator_limited_reasons.join("; "))
        };
        warnings.push(format!(
            "{}: the load generator could not drive the target at its rate{reasons}; \
             throughput criteria report generator-limited, and latency includes the \
             generator's own delay",
            s.dir.display()
        ));
    }

    let mut results = Vec::new();
    for c in &phase.criteria {
        match &c.route {
            RouteScope::Each => {
                let routes = m.routes(&c.target);
                if routes.is_empty() {
                    results.push(judge(c, m, None, None));
                }
                for (method, route) in routes {
                    let p = RoutePattern {
                        method: Some(method.clone()),
                        route: route.clone(),
                        prefix: false,
                    };
                    results.push(judge(c, m, Some(&p), Some(format!("{method} {route}"))));
                }
            }
            RouteScope::Match(p) => results.push(judge(c, m, Some(p), None)),
            RouteScope::All => results.push(judge(c, m, None, None)),
        }
    }

    let mut tally = Tally::default();
    for r in &results {
        match r.status {
            Status::Pass => tally.passed += 1,
            Status::Fail => tally.failed += 1,
            Status::NoData => tally.no_data += 1,
            Status::Skipped => tally.skipped += 1,
            Status::GeneratorLimited => tally.generator_limited += 1,
        }
    }
    let verdict = if tally.passed > 0 && !results.iter().any(|r| r.status.blocks()) {
        Verdict::Pass
    } else {
        Verdict::Fail
    };
    if tally.passed == 0 && !results.iter().any(|r| r.status.blocks()) {
        warnings.push(
            "no criterion could be judged (all skipped for missing data): the gate does not pass"
                .into(),
        );
    }

    Ok(Report {
        schema_version: SCHEMA_VERSION,
        tool_version: opts.tool_version.clone(),
        phase: PhaseInfo {
            id: phase.id.clone(),
            title: phase.title.clone(),
        },
        criteria_file: criteria.origin.clone(),
        verdict,
        tally,
        sources: m.sources.clone(),
        criteria: results,
        targets: targets(m),
        routes: routes(m),
        comparison: comparison(m, alpha),
        discrepancies: discrepancies(m),
        warnings,
    })
}

/// A measured value, or why there is none.
enum Measured {
    Value(f64, Option<String>),
    NoData(String),
    GeneratorLimited(f64, String),
}

fn judge(
    c: &Criterion,
    m: &Measurements,
    route: Option<&RoutePattern>,
    route_label: Option<String>,
) -> CriterionResult {
    let dim = c.expr.metric.dimension();
    let measured = measure(&c.expr.metric, &c.expr.selectors, &c.target, m, route);
    let fmt = |v: f64| Value {
        value: v,
        display: units::Display { value: v, dim }.to_string(),
    };
    let (status, measured_value, detail) = match measured {
        Measured::Value(v, detail) => {
            let ok = c.expr.op.holds(v, c.expr.threshold);
            (
                if ok { Status::Pass } else { Status::Fail },
                Some(fmt(v)),
                detail,
            )
        }
        Measured::NoData(why) => (
            match c.missing {
                crate::criteria::Missing::Fail => Status::NoData,
                crate::criteria::Missing::Skip => Status::Skipped,
            },
            None,
            Some(why),
        ),
        Measured::GeneratorLimited(v, why) => (Status::GeneratorLimited, Some(fmt(v)), Some(why)),
    };
    let route_text = route_label.or_else(|| match &c.route {
        RouteScope::Match(p) => Some(p.to_string()),
        _ => None,
    });
    CriterionResult {
        name: match (&c.route, &route_text) {
            (RouteScope::Each, Some(r)) => format!("{} [{r}]", c.name),
            _ => c.name.clone(),
        },
        expr: c.text.clone(),
        metric: c.expr.metric.name(),
        dimension: dim,
        // Discrepancies and coverage belong to the pair, not to one target.
        target: if matches!(c.expr.metric, Metric::Discrepancies | Metric::Coverage) {
            "-".to_owned()
        } else {
            m.resolve(&c.target).to_owned()
        },
        route: route_text,
        op: c.expr.op,
        threshold: Value {
            value: c.expr.threshold,
            display: c.expr.threshold_display(),
        },
        measured: measured_value,
        status,
        detail,
        note: c.note.clone(),
        line: c.line,
    }
}

fn measure(
    metric: &Metric,
    sel: &expr::Selectors,
    target: &str,
    m: &Measurements,
    route: Option<&RoutePattern>,
) -> Measured {
    let name = m.resolve(target);
    let no_target = || {
        Measured::NoData(format!(
            "nothing recorded for target `{name}` (targets in the data: {})",
            m.targets().into_iter().collect::<Vec<_>>().join(", ")
        ))
    };
    let scope = || match route {
        Some(r) => format!("`{name}` {r}"),
        None => format!("`{name}`"),
    };
    match metric {
        Metric::Latency(stat) => {
            let measure = match sel.get("measure") {
                None => Measure::Response,
                Some(name) => match Measure::from_name(name) {
                    Ok(m) => m,
                    Err(e) => return Measured::NoData(e.to_string()),
                },
            };
            match m.latency(target, route, &measure) {
                None => Measured::NoData(format!("no latency samples for {}", scope())),
                Some(h) => Measured::Value(latency_stat(&h, *stat), Some(samples(h.len()))),
            }
        }
        Metric::SseLag(stat) => match m.latency(target, route, &Measure::Other("lag".into())) {
            None => Measured::NoData(format!(
                "no SSE lag samples (`;lag` series) for {}: no event stream was compared",
                scope()
            )),
            Some(h) => Measured::Value(latency_stat(&h, *stat), Some(samples(h.len()))),
        },
        Metric::ErrorRate | Metric::Requests | Metric::Errors => match m.counts(target, route) {
            None => Measured::NoData(format!("no counts.csv rows for {}", scope())),
            Some(c) => {
                let errors = (c.status_5xx + c.transport_errors()) as f64;
                match metric {
                    Metric::Requests => Measured::Value(c.requests as f64, None),
                    Metric::Errors => Measured::Value(errors, None),
                    _ if c.requests == 0 => {
                        Measured::NoData(format!("no requests for {}", scope()))
                    }
                    _ => Measured::Value(
                        errors / c.requests as f64,
                        Some(format!(
                            "{} errors (5xx and transport) in {} requests",
                            units::fmt_number(errors),
                            units::fmt_number(c.requests as f64)
                        )),
                    ),
                }
            }
        },
        Metric::Throughput => {
            let Some(c) = m.counts(target, route) else {
                return no_target();
            };
            let Some(w) = m.window_s(target) else {
                return Measured::NoData(format!("no time window for {}", scope()));
            };
            let v = c.requests as f64 / w;
            let detail = format!(
                "{} requests over {}s",
                units::fmt_number(c.requests as f64),
                units::sig3(w)
            );
            let limited = m.generator_limited(target);
            if limited.is_empty() {
                Measured::Value(v, Some(detail))
            } else {
                Measured::GeneratorLimited(v, generator_message(&limited))
            }
        }
        Metric::Cpu(agg) => {
            let v: Vec<f64> = m
                .resources(target)
                .iter()
                .filter_map(|s| s.cpu_percent)
                .collect();
            match aggregate(&v, *agg) {
                None => Measured::NoData(format!(
                    "no CPU samples for `{name}` (resources.csv: record them with shadowgate \
                     sample)"
                )),
                Some(x) => Measured::Value(x, Some(samples(v.len() as u64))),
            }
        }
        Metric::Rss(agg) => {
            let v: Vec<f64> = m
                .resources(target)
                .iter()
                .filter_map(|s| s.rss_bytes.map(|b| b as f64))
                .collect();
            match aggregate(&v, *agg) {
                None => Measured::NoData(format!(
                    "no memory samples for `{name}` (resources.csv: record them with shadowgate \
                     sample)"
                )),
                Some(x) => Measured::Value(x, Some(samples(v.len() as u64))),
            }
        }
        Metric::RssGrowthPerHour => match m.rss_growth_per_hour(target) {
            None => Measured::NoData(format!(
                "fewer than two memory samples at different times for `{name}`"
            )),
            Some((slope, n, span)) => Measured::Value(
                slope,
                Some(format!(
                    "least squares over {n} samples spanning {}",
                    humantime::format_duration(std::time::Duration::from_secs(span.as_secs()))
                )),
            ),
        },
        Metric::Discrepancies => {
            // Audit lines come from audit-diff alone: say how to get them before anything else.
            if sel.get("kind").is_some_and(expr::only_audit) && !m.audited() {
                return Measured::NoData(
                    "no audit-diff run among the run directories: give validate \
                     --primary-audit PATH --candidate-audit PATH, or run shadowgate audit-diff \
                     PRIMARY_LOG CANDIDATE_LOG --ids MIRROR_RUN --out DIR and pass DIR to the \
                     report too"
                        .into(),
                );
            }
            if !m.compared() {
                return Measured::NoData(
                    "no run compared answers (no discrepancies.ndjson): run the mirror or replay"
                        .into(),
                );
            }
            let class = sel.get("class").unwrap_or("regression");
            let streams = m.stream_routes();
            let n = m
                .discrepancies()
                .iter()
                .filter(|d| {
                    (class == "any" || class_name(d.class) == class)
                        && sel.get("kind").is_none_or(|k| {
                            expr::line_matches(
                                k,
                                d.kind.as_str(),
                                sections::classify(d, &streams).name(),
                            )
                        })
                        && route.is_none_or(|r| r.matches(&d.method, &d.route))
                })
                .count();
            Measured::Value(n as f64, None)
        }
        Metric::Coverage => match m.coverage() {
            None => Measured::NoData("no mirror run reported its coverage".into()),
            Some(c) => Measured::Value(c, None),
        },
        Metric::AuthFailureRate | Metric::HealthOk => Measured::NoData(format!(
            "{} is measured live by shadowgate watch, not recorded in run directories",
            metric.name()
        )),
        Metric::Ratio(inner, base) => {
            let a = measure(inner, sel, target, m, route);
            let b = measure(inner, sel, base, m, route);
            let (va, limited_a) = match a {
                Measured::Value(v, _) => (v, None),
                Measured::GeneratorLimited(v, why) => (v, Some(why)),
                Measured::NoData(why) => return Measured::NoData(why),
            };
            let (vb, limited_b) = match b {
                Measured::Value(v, _) => (v, None),
                Measured::GeneratorLimited(v, why) => (v, Some(why)),
                Measured::NoData(why) => return Measured::NoData(why),
            };
            if vb == 0.0 {
                return Measured::NoData(format!(
                    "{} of `{}` is zero, so the ratio is undefined",
                    inner.name(),
                    m.resolve(base)
                ));
            }
            let ratio = va / vb;
            let detail = format!(
                "{} {} vs {} {}",
                m.resolve(target),
                units::Display {
                    value: va,
                    dim: inner.dimension()
                },
                m.resolve(base),
                units::Display {
                    value: vb,
                    dim: inner.dimension()
                }
            );
            match limited_a.or(limited_b) {
                Some(why) => Measured::GeneratorLimited(ratio, format!("{detail}; {why}")),
                None => Measured::Value(ratio, Some(detail)),
            }
        }
    }
}

fn samples(n: u64) -> String {
    format!(
        "{} sample{}",
        units::fmt_number(n as f64),
        if n == 1 { "" } else { "s" }
    )
}

fn generator_message(limited: &[&crate::measure::Source]) -> String {
    let parts: Vec<String> = limited
        .iter()
        .map(|s| {
            let rate = match (s.achieved_rate, s.target_rate) {
                (Some(a), Some(t)) => format!(
                    " (achieved {} of {} req/s)",
                    units::fmt_number(a),
                    units::fmt_number(t)
                ),
                _ => String::new(),
            };
            let dir = s.dir.file_name().map_or_else(
                || s.dir.display().to_string(),
                |n| n.to_string_lossy().into(),
            );
            format!("{dir}{rate}")
        })
        .collect();
    format!(
        "the load generator could not hold its rate in {}: not the gateway's fault, not a pass; \
         rerun with more generators (--shard) or fewer connections per core",
        parts.join(", ")
    )
}

fn class_name(c: Class) -> &'static str {
    match c {
        Class::Regression => "regression",
        Class::Noise => "noise",
        Class::Ignored => "ignored",
    }
}

fn latency_stat(h: &Histogram<u64>, stat: LatencyStat) -> f64 {
    match stat {
        LatencyStat::Quantile(q) => h.value_at_quantile(q) as f64,
        LatencyStat::Max => h.max() as f64,
        LatencyStat::Min => h.min() as f64,
        LatencyStat::Mean => h.mean(),
    }
}

fn aggregate(v: &[f64], agg: Agg) -> Option<f64> {
    match agg {
        Agg::Mean => stats::mean(v),
        Agg::Max => v.iter().copied().max_by(f64::total_cmp),
        Agg::P95 => stats::quantile(v, 0.95),
    }
}

/// Percentiles of a histogram (`None` when empty).
pub fn latency_of(h: &Histogram<u64>) -> Option<Latency> {
    (!h.is_empty()).then(|| Latency {
        count: h.len(),
        p50_ns: h.value_at_quantile(0.5),
        p90_ns: h.value_at_quantile(0.9),
        p99_ns: h.value_at_quantile(0.99),
        p999_ns: h.value_at_quantile(0.999),
        max_ns: h.max(),
        mean_ns: h.mean(),
    })
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => Some(a / b),
        _ => None,
    }
}

fn error_rate(c: &shadowgate_record::Counts) -> Option<f64> {
    (c.requests > 0).then(|| (c.status_5xx + c.transport_errors()) as f64 / c.requests as f64)
}

fn targets(m: &Measurements) -> Vec<TargetSummary> {
    m.targets()
        .into_iter()
        .map(|name| {
            let counts = m.counts(&name, None).unwrap_or_default();
            let res = m.resources(&name);
            let growth = m.rss_growth_per_hour(&name);
            let resources = (!res.is_empty()).then(|| {
                let cpu: Vec<f64> = res.iter().filter_map(|s| s.cpu_percent).collect();
                let rss: Vec<f64> = res
                    .iter()
                    .filter_map(|s| s.rss_bytes.map(|b| b as f64))
                    .collect();
                Resources {
                    samples: res.len(),
                    cpu_mean: aggregate(&cpu, Agg::Mean),
                    cpu_p95: aggregate(&cpu, Agg::P95),
                    cpu_max: aggregate(&cpu, Agg::Max),
                    rss_max: aggregate(&rss, Agg::Max),
                    rss_growth_per_hour: growth.map(|g| g.0),
                    rss_span_s: growth.map(|g| g.2.as_secs_f64()),
                }
            });
            let floor = m
                .sources
                .iter()
                .find(|s| s.targets.contains_key(&name) && s.calibration_p50_ns.is_some());
            TargetSummary {
                url: m.run.manifest.targets.get(&name).cloned(),
                requests: counts.requests,
                errors: counts.status_5xx + counts.transport_errors(),
                status_4xx: counts.status_4xx,
                error_rate: error_rate(&counts),
                throughput: m.throughput(&name, None),
                window_s: m.window_s(&name),
                latency: m
                    .latency(&name, None, &Measure::Response)
                    .as_ref()
                    .and_then(latency_of),
                resources,
                generator_limited: !m.generator_limited(&name).is_empty(),
                generator_floor: floor.map(|s| Latency {
                    count: 0,
                    p50_ns: s.calibration_p50_ns.unwrap_or(0.0) as u64,
                    p90_ns: 0,
                    p99_ns: s.calibration_p99_ns.unwrap_or(0.0) as u64,
                    p999_ns: 0,
                    max_ns: 0,
                    mean_ns: 0.0,
                }),
                name,
            }
        })
        .collect()
}

fn routes(m: &Measurements) -> Vec<RouteSummary> {
    let mut out = Vec::new();
    for target in m.targets() {
        for (method, route) in m.routes(&target) {
            let p = RoutePattern {
                method: Some(method.clone()),
                route: route.clone(),
                prefix: false,
            };
            let c = m.counts(&target, Some(&p)).unwrap_or_default();
            out.push(RouteSummary {
                target: target.clone(),
                method,
                route,
                requests: c.requests,
                errors: c.status_5xx + c.transport_errors(),
                error_rate: error_rate(&c),
                throughput: m.throughput(&target, Some(&p)),
                latency: m
                    .latency(&target, Some(&p), &Measure::Response)
                    .as_ref()
                    .and_then(latency_of),
            });
        }
    }
    out
}

fn side(
    m: &Measurements,
    target: &str,
    p: Option<&RoutePattern>,
) -> (Side, Option<Histogram<u64>>) {
    let h = m.latency(target, p, &Measure::Response);
    let c = m.counts(target, p);
    (
        Side {
            latency: h.as_ref().and_then(latency_of),
            throughput: m.throughput(target, p),
            error_rate: c.as_ref().and_then(error_rate),
        },
        h,
    )
}

fn comparison(m: &Measurements, alpha: f64) -> Option<Comparison> {
    let cand = m.resolve("candidate").to_owned();
    let prim = m.resolve("primary").to_owned();
    let targets = m.targets();
    if !targets.contains(&cand) || !targets.contains(&prim) {
        return None;
    }
    let row = |method: &str, route: &str, p: Option<&RoutePattern>| {
        let (c, hc) = side(m, &cand, p);
        let (pr, hp) = side(m, &prim, p);
        let mw = match (&hc, &hp) {
            (Some(a), Some(b)) => stats::mann_whitney(a, b),
            _ => None,
        };
        let q = |s: &Side, f: fn(&Latency) -> u64| s.latency.as_ref().map(|l| f(l) as f64);
        RouteComparison {
            method: method.to_owned(),
            route: route.to_owned(),
            ratio: Ratios {
                p50: ratio(q(&c, |l| l.p50_ns), q(&pr, |l| l.p50_ns)),
                p99: ratio(q(&c, |l| l.p99_ns), q(&pr, |l| l.p99_ns)),
                p999: ratio(q(&c, |l| l.p999_ns), q(&pr, |l| l.p999_ns)),
                throughput: ratio(c.throughput, pr.throughput),
                error_rate: ratio(c.error_rate, pr.error_rate),
            },
            shift: mw.map(|mw| mw.shift(alpha)),
            mann_whitney: mw,
            candidate: c,
            primary: pr,
        }
    };
    let mut routes = vec![row("*", "*", None)];
    let both: BTreeSet<(String, String)> = m
        .routes(&cand)
        .intersection(&m.routes(&prim))
        .cloned()
        .collect();
    for (method, route) in both {
        let p = RoutePattern {
            method: Some(method.clone()),
            route: route.clone(),
            prefix: false,
        };
        routes.push(row(&method, &route, Some(&p)));
    }
    Some(Comparison {
        candidate: cand,
        primary: prim,
        alpha,
        routes,
    })
}

fn discrepancies(m: &Measurements) -> Discrepancies {
    // Regressions first; within a class, sections in report order, then route, kind, and the
    // place (the path, or for order flows the set of differing steps).
    type Key = (u8, SectionKind, String, String, String, String, Class);
    let streams = m.stream_routes();
    let mut groups: BTreeMap<Key, (Group, BTreeSet<String>)> = BTreeMap::new();
    let mut totals: BTreeMap<SectionKind, SectionTotals> = SectionKind::ALL
        .iter()
        .map(|s| {
            (
                *s,
                SectionTotals {
                    section: *s,
                    title: s.title().to_owned(),
                    total: 0,
                    regression: 0,
                    noise: 0,
                    ignored: 0,
                    groups: 0,
                },
            )
        })
        .collect();
    let mut out = Discrepancies {
        compared: m.compared(),
        ..Discrepancies::default()
    };
    for d in m.discrepancies() {
        let section = sections::classify(d, &streams);
        out.total += 1;
        let t = totals.entry(section).or_insert_with(|| SectionTotals {
            section,
            title: section.title().to_owned(),
            total: 0,
            regression: 0,
            noise: 0,
            ignored: 0,
            groups: 0,
        });
        t.total += 1;
        match d.class {
            Class::Regression => {
                out.regression += 1;
                t.regression += 1;
            }
            Class::Noise => {
                out.noise += 1;
                t.noise += 1;
            }
            Class::Ignored => {
                out.ignored += 1;
                t.ignored += 1;
            }
        }
        let rank = match d.class {
            Class::Regression => 0,
            Class::Noise => 1,
            Class::Ignored => 2,
        };
        let steps = if section == SectionKind::Flow {
            sections::steps(d)
        } else {
            Vec::new()
        };
        // Array indices do not split a group (as route templates keep ids from splitting
        // one): `/0/reason` and `/7/reason` are the same difference, shown as `/*/reason`.
        let pattern = index_pattern(&d.path);
        let place = if steps.is_empty() {
            pattern.clone()
        } else {
            steps.join(",")
        };
        let key = (
            rank,
            section,
            d.route.clone(),
            d.method.clone(),
            d.kind.as_str().to_owned(),
            place,
            d.class,
        );
        let (g, flows) = groups.entry(key).or_insert_with(|| {
            (
                Group {
                    class: d.class,
                    method: d.method.clone(),
                    route: d.route.clone(),
                    kind: d.kind.as_str().to_owned(),
                    path: pattern,
                    count: 0,
                    flows: 0,
                    label: d.label.clone(),
                    samples: Vec::new(),
                    section,
                    orders: Vec::new(),
                    steps,
                },
                BTreeSet::new(),
            )
        });
        g.count += 1;
        if let Some(f) = &d.flow_id {
            flows.insert(f.clone());
        }
        if g.samples.len() < 3 {
            g.samples.push(Sample {
                ts: humantime::format_rfc3339_millis(d.ts).to_string(),
                flow_id: d.flow_id.clone(),
                primary: d.primary.clone(),
                candidate: d.candidate.clone(),
                detail: d.detail.clone(),
            });
            if section == SectionKind::Flow
                && let Some(pair) = sections::order_pair(d)
            {
                g.orders.push(pair);
            }
        }
    }
    let mut list: Vec<(u8, Group)> = groups
        .into_iter()
        .map(|(k, (mut g, flows))| {
            g.flows = flows.len() as u64;
            (k.0, g)
        })
        .collect();
    // Regressions first, then the largest groups; ties keep route order (stable sort).
    list.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.count.cmp(&a.1.count)));
    out.groups = list.into_iter().map(|(_, g)| g).collect();
    for g in &out.groups {
        if let Some(t) = totals.get_mut(&g.section) {
            t.groups += 1;
        }
    }
    out.flow = totals.get(&SectionKind::Flow).map_or(0, |t| t.total);
    out.sections = totals.into_values().collect();
    out.flows = sections::flow_facts(m);
    out.ids = sections::id_correlation(m);
    out.streams = sections::stream_routes(m);
    out.audit = sections::audit_facts(m);
    out
}

/// The dimension's unit-aware display of a value (for renderers).
pub fn display(value: f64, dim: Dimension) -> String {
    units::Display { value, dim }.to_string()
}

/// A JSON Pointer with every array index (an all-digit segment) as `*`, the form the
/// comparison engine's signatures hash.
fn index_pattern(path: &str) -> String {
    if !path.bytes().any(|b| b.is_ascii_digit()) {
        return path.to_owned();
    }
    path.split('/')
        .map(|seg| {
            if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
                "*"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_indices_do_not_split_groups() {
        assert_eq!(index_pattern("/0/reason"), "/*/reason");
        assert_eq!(
            index_pattern("/data/12/fills/3/price"),
            "/data/*/fills/*/price"
        );
        assert_eq!(index_pattern("/balances/USDT"), "/balances/USDT");
        assert_eq!(index_pattern("/v2x/1a"), "/v2x/1a");
        assert_eq!(index_pattern(""), "");
        assert_eq!(index_pattern("/status"), "/status");
    }
}
