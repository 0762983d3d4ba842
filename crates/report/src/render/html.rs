//! `report.html`: one self-contained file — inline CSS, inline SVG charts, no script, nothing
//! fetched from the network — so it can be attached to a CI run or mailed.
//!
//! Rendered with a minijinja template (auto-escaped: every value from a run is text, only the
//! charts are inserted as markup). Charts (plotters, SVG backend):
//! - latency percentile spectrum per target, on a log `1/(1-p)` axis as HdrHistogram plots;
//! - latency over time (P50 solid, P99 dashed) per target, from the interval histograms;
//! - throughput over time per target, from `counts.csv`;
//! - CPU and RSS over time per target, from `resources.csv`.
//!
//! Discrepancy groups are `<details>` elements: collapsible without any script.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::UNIX_EPOCH;

use minijinja::Environment;
use minijinja::value::{Serde, Value};
use serde::Serialize;
use shadowgate_record::Measure;
use shadowgate_record::hdrhistogram::Histogram;

use crate::error::ReportError;
use crate::measure::Measurements;
use crate::model::{Group, Latency, Report, SectionKind, Side, Status, StreamRoute, Verdict};
use crate::render::svg::{self, Line};
use crate::render::{
    STREAM_HEADS, audit_line, class_name, flows_line, fmt_frac, fmt_lat, fmt_rate, fmt_ratio,
    fmt_shift, group_place, ids_line, lag_line, orders_text, section_line, shown_sections,
    stream_cells, verdict_line,
};
use crate::units;

const TEMPLATE: &str = include_str!("report.html.j2");

#[derive(Serialize)]
struct View {
    title: String,
    criteria_file: String,
    verdict_class: &'static str,
    verdict_line: String,
    sources: Vec<SourceRow>,
    criteria: Vec<CriterionRow>,
    targets: Vec<Vec<String>>,
    charts: Vec<Chart>,
    comparison: Option<ComparisonView>,
    discrepancies: Option<DiscrepancyView>,
    warnings: Vec<String>,
    tool_version: String,
    schema_version: u32,
}

#[derive(Serialize)]
struct SourceRow {
    dir: String,
    kind: &'static str,
    started: String,
    ended: String,
    note: &'static str,
}

#[derive(Serialize)]
struct CriterionRow {
    name: String,
    target: String,
    threshold: String,
    measured: String,
    status: &'static str,
    class: &'static str,
    detail: Option<String>,
}

#[derive(Serialize)]
struct Chart {
    title: String,
    svg: String,
}

#[derive(Serialize)]
struct ComparisonView {
    title: String,
    note: String,
    rows: Vec<Vec<String>>,
}

#[derive(Serialize)]
struct DiscrepancyView {
    summary: String,
    sections: Vec<SectionView>,
}

/// One collapsible section (exchanges, order flows, event streams, audit log).
#[derive(Serialize)]
struct SectionView {
    id: &'static str,
    title: &'static str,
    summary: String,
    /// Open by default when it has regressions.
    open: bool,
    /// The producer's counters, one line each.
    facts: Vec<String>,
    /// Event streams: the per-route table and a lag percentile line per route.
    stream_heads: Vec<&'static str>,
    stream_rows: Vec<Vec<String>>,
    lag_lines: Vec<String>,
    groups: Vec<GroupView>,
}

#[derive(Serialize)]
struct GroupView {
    count: u64,
    class: String,
    route: String,
    kind: String,
    path: String,
    label: Option<String>,
    orders: String,
    samples: Vec<SampleView>,
}

#[derive(Serialize)]
struct SampleView {
    ts: String,
    flow: String,
    primary: String,
    candidate: String,
}

/// Writes the HTML report.
pub fn render(r: &Report, m: &Measurements, w: &mut dyn Write) -> Result<(), ReportError> {
    let fail = |reason: String| ReportError::Render {
        format: "html",
        reason,
    };
    let view = view(r, m).map_err(fail)?;
    let mut env = Environment::new();
    env.add_template("report.html", TEMPLATE)
        .map_err(|e| fail(format!("template: {e:#}")))?;
    let tmpl = env
        .get_template("report.html")
        .map_err(|e| fail(format!("template: {e:#}")))?;
    let html = tmpl
        .render(Value::from(Serde(&view)))
        .map_err(|e| fail(format!("template: {e:#}")))?;
    w.write_all(html.as_bytes())
        .map_err(|e| fail(e.to_string()))
}

fn status_class(s: Status) -> &'static str {
    match s {
        Status::Pass => "pass",
        Status::Fail => "fail",
        Status::NoData => "no-data",
        Status::Skipped => "skipped",
        Status::GeneratorLimited => "generator-limited",
    }
}

fn view(r: &Report, m: &Measurements) -> Result<View, String> {
    let sources = r
        .sources
        .iter()
        .map(|s| SourceRow {
            dir: s.dir.display().to_string(),
            kind: s.kind.as_str(),
            started: humantime::format_rfc3339_millis(s.started_at).to_string(),
            ended: s.ended_at.map_or_else(
                || "unfinished".to_owned(),
                |e| humantime::format_rfc3339_millis(e).to_string(),
            ),
            note: if s.generator_limited {
                "generator-limited"
            } else {
                ""
            },
        })
        .collect();
    let criteria = r
        .criteria
        .iter()
        .map(|c| CriterionRow {
            name: c.name.clone(),
            target: c.target.clone(),
            threshold: format!("{} {}", c.op, c.threshold.display),
            measured: c
                .measured
                .as_ref()
                .map_or_else(|| "-".into(), |v| v.display.clone()),
            status: c.status.label(),
            class: status_class(c.status),
            detail: c.detail.clone(),
        })
        .collect();
    let targets = r
        .targets
        .iter()
        .map(|t| {
            let l = t.latency.as_ref();
            let res = t.resources.as_ref();
            let name = if t.generator_limited {
                format!("{} (generator-limited)", t.name)
            } else {
                t.name.clone()
            };
            vec![
                name,
                units::fmt_number(t.requests as f64),
                fmt_frac(t.error_rate),
                fmt_rate(t.throughput),
                fmt_lat(l.map(|l| l.p50_ns)),
                fmt_lat(l.map(|l| l.p99_ns)),
                fmt_lat(l.map(|l| l.p999_ns)),
                fmt_lat(l.map(|l| l.max_ns)),
                res.and_then(|x| x.cpu_mean)
                    .map_or_else(|| "-".into(), units::fmt_percent),
                res.and_then(|x| x.rss_max)
                    .map_or_else(|| "-".into(), units::fmt_bytes),
                res.and_then(|x| x.rss_growth_per_hour.map(|g| (g, x.rss_span_s)))
                    .map_or_else(|| "-".into(), |(g, span)| units::fmt_growth(g, span)),
            ]
        })
        .collect();
    let comparison = r.comparison.as_ref().map(|c| {
        let lat = |s: &Side, f: fn(&Latency) -> u64| fmt_lat(s.latency.as_ref().map(f));
        ComparisonView {
            title: format!("{} vs {}", c.candidate, c.primary),
            note: format!(
                "Ratios are candidate ÷ primary. The latency verdict is a two-sided Mann-Whitney \
                 U test on the two histograms at alpha {}; P(c>p) is the chance a candidate \
                 request is slower than a primary one (0.5 = same).",
                c.alpha
            ),
            rows: c
                .routes
                .iter()
                .map(|row| {
                    let (a, b) = (&row.candidate, &row.primary);
                    vec![
                        if row.route == "*" {
                            "all routes".to_owned()
                        } else {
                            format!("{} {}", row.method, row.route)
                        },
                        format!(
                            "{} / {} ({})",
                            lat(a, |l| l.p50_ns),
                            lat(b, |l| l.p50_ns),
                            fmt_ratio(row.ratio.p50)
                        ),
                        format!(
                            "{} / {} ({})",
                            lat(a, |l| l.p99_ns),
                            lat(b, |l| l.p99_ns),
                            fmt_ratio(row.ratio.p99)
                        ),
                        format!(
                            "{} / {} ({})",
                            lat(a, |l| l.p999_ns),
                            lat(b, |l| l.p999_ns),
                            fmt_ratio(row.ratio.p999)
                        ),
                        format!(
                            "{} / {} ({})",
                            fmt_rate(a.throughput),
                            fmt_rate(b.throughput),
                            fmt_ratio(row.ratio.throughput)
                        ),
                        format!("{} / {}", fmt_frac(a.error_rate), fmt_frac(b.error_rate)),
                        fmt_shift(row),
                    ]
                })
                .collect(),
        }
    });
    let d = &r.discrepancies;
    let discrepancies = (d.compared || d.total > 0).then(|| DiscrepancyView {
        summary: format!(
            "{} regression, {} noise, {} ignored ({} order-flow), in {} groups.",
            d.regression,
            d.noise,
            d.ignored,
            d.flow,
            d.groups.len()
        ),
        sections: shown_sections(d)
            .into_iter()
            .map(|(section, t)| {
                let mut facts = Vec::new();
                match section {
                    SectionKind::Flow => {
                        facts.extend(d.flows.as_ref().map(flows_line));
                        facts.extend(d.ids.as_ref().map(ids_line));
                    }
                    SectionKind::Audit => facts.extend(d.audit.as_ref().map(audit_line)),
                    SectionKind::Exchange | SectionKind::Stream => {}
                }
                let streams: &[StreamRoute] = if section == SectionKind::Stream {
                    &d.streams
                } else {
                    &[]
                };
                SectionView {
                    id: section.name(),
                    title: section.title(),
                    summary: section_line(t),
                    open: t.regression > 0 && section != SectionKind::Exchange,
                    facts,
                    stream_heads: if streams.is_empty() {
                        Vec::new()
                    } else {
                        STREAM_HEADS.to_vec()
                    },
                    stream_rows: streams.iter().map(stream_cells).collect(),
                    lag_lines: streams
                        .iter()
                        .map(|s| format!("{}: {}", s.route, lag_line(s.lag.as_ref())))
                        .collect(),
                    groups: d.groups_in(section).map(group_view).collect(),
                }
            })
            .collect(),
    });
    Ok(View {
        title: format!(
            "shadowgate report — phase {}: {}",
            r.phase.id, r.phase.title
        ),
        criteria_file: r.criteria_file.clone(),
        verdict_class: match r.verdict {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
        },
        verdict_line: verdict_line(r),
        sources,
        criteria,
        targets,
        charts: charts(m)?,
        comparison,
        discrepancies,
        warnings: r.warnings.clone(),
        tool_version: r.tool_version.clone(),
        schema_version: r.schema_version,
    })
}

fn group_view(g: &Group) -> GroupView {
    GroupView {
        count: g.count,
        class: class_name(g.class).to_owned(),
        route: format!("{} {}", g.method, g.route),
        kind: g.kind.clone(),
        path: group_place(g),
        label: g.label.clone(),
        orders: orders_text(g),
        samples: g
            .samples
            .iter()
            .map(|s| SampleView {
                ts: s.ts.clone(),
                flow: s.flow_id.clone().unwrap_or_else(|| "-".into()),
                primary: pretty(&s.primary),
                candidate: pretty(&s.candidate),
            })
            .collect(),
    }
}

fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

/// Every chart that has data.
fn charts(m: &Measurements) -> Result<Vec<Chart>, String> {
    let targets: Vec<String> = m.targets().into_iter().collect();
    let colour = |t: &str| targets.iter().position(|x| x == t).unwrap_or(0);
    let mut charts = Vec::new();

    // Percentile spectrum.
    let mut lines = Vec::new();
    for t in &targets {
        if let Some(h) = m.latency(t, None, &Measure::Response) {
            lines.push(Line {
                name: t.clone(),
                points: spectrum_points(&h),
                dashed: false,
                colour: colour(t),
            });
        }
    }
    push(&mut charts, "Latency by percentile", svg::spectrum(&lines)?);

    // Latency over time: P50 solid, P99 dashed. Every interval histogram is decoded (tens of
    // thousands for a long run), so targets are done on threads of their own.
    let timelines: Vec<Result<Timeline, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = targets
            .iter()
            .map(|t| scope.spawn(move || latency_over_time(m, t)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a chart thread panicked".to_owned()))
            })
            .collect()
    });
    let mut lines = Vec::new();
    for (t, per) in targets.iter().zip(timelines) {
        let per = per?;
        if per.is_empty() {
            continue;
        }
        lines.push(Line {
            name: format!("{t} P50"),
            points: per.iter().map(|(x, p50, _)| (*x, *p50)).collect(),
            dashed: false,
            colour: colour(t),
        });
        lines.push(Line {
            name: format!("{t} P99"),
            points: per.iter().map(|(x, _, p99)| (*x, *p99)).collect(),
            dashed: true,
            colour: colour(t),
        });
    }
    push(
        &mut charts,
        "Latency over time",
        svg::timeline("Latency over time (P50 solid, P99 dashed)", "ms", &lines)?,
    );

    // Throughput over time.
    let mut per: BTreeMap<&str, BTreeMap<u64, (u64, f64)>> = BTreeMap::new();
    for row in &m.run.counts {
        let start = row.start().as_millis() as u64;
        let e = per
            .entry(row.target.as_str())
            .or_default()
            .entry(start)
            .or_insert((0, row.length().as_secs_f64()));
        e.0 += row.requests;
    }
    let lines: Vec<Line> = per
        .iter()
        .map(|(t, rows)| Line {
            name: (*t).to_owned(),
            points: rows
                .iter()
                .filter(|(_, (_, len))| *len > 0.0)
                .map(|(start, (n, len))| ((*start as f64 / 1000.0) + len, *n as f64 / len))
                .collect(),
            dashed: false,
            colour: colour(t),
        })
        .collect();
    push(
        &mut charts,
        "Throughput over time",
        svg::timeline("Throughput over time", "requests/s", &lines)?,
    );

    // CPU and RSS over time.
    let start_ms = m
        .run
        .manifest
        .started_at
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as f64)
        .unwrap_or(0.0);
    let resource_lines = |f: &dyn Fn(&shadowgate_record::ResourceSample) -> Option<f64>| {
        targets
            .iter()
            .filter_map(|t| {
                let points: Vec<(f64, f64)> = m
                    .resources(t)
                    .iter()
                    .filter_map(|s| Some(((s.unix_ms as f64 - start_ms) / 1000.0, f(s)?)))
                    .collect();
                (!points.is_empty()).then(|| Line {
                    name: t.clone(),
                    points,
                    dashed: false,
                    colour: colour(t),
                })
            })
            .collect::<Vec<_>>()
    };
    push(
        &mut charts,
        "CPU over time",
        svg::timeline(
            "CPU over time",
            "% of one CPU",
            &resource_lines(&|s| s.cpu_percent),
        )?,
    );
    push(
        &mut charts,
        "Memory over time",
        svg::timeline(
            "Resident memory over time",
            "MB",
            &resource_lines(&|s| s.rss_bytes.map(|b| b as f64 / 1e6)),
        )?,
    );
    Ok(charts)
}

fn push(charts: &mut Vec<Chart>, title: &str, svg: String) {
    if !svg.is_empty() {
        charts.push(Chart {
            title: title.to_owned(),
            svg,
        });
    }
}

/// `(1/(1-p), latency ms)` points, as in HdrHistogram's percentile plots.
fn spectrum_points(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    let mut pts = Vec::new();
    for v in h.iter_quantiles(5) {
        let q = v.quantile_iterated_to();
        if q >= 1.0 {
            break;
        }
        pts.push((1.0 / (1.0 - q), v.value_iterated_to() as f64 / 1e6));
    }
    if let Some(&(x, _)) = pts.last() {
        pts.push((x * 2.0, h.max() as f64 / 1e6));
    }
    pts
}

/// `(interval end s, P50 ms, P99 ms)` points.
type Timeline = Vec<(f64, f64, f64)>;

/// Per interval end (s): P50 and P99 (ms) of a target's response time over all routes.
fn latency_over_time(m: &Measurements, target: &str) -> Result<Timeline, String> {
    let target = m.resolve(target);
    let mut per: BTreeMap<(u128, u128), Histogram<u64>> = BTreeMap::new();
    for (k, data) in &m.run.latency {
        if k.target != target || k.measure != Measure::Response {
            continue;
        }
        for iv in &data.intervals {
            let key = (iv.start.as_millis(), (iv.start + iv.length).as_millis());
            let h = iv.histogram().map_err(|e| e.to_string())?;
            match per.get_mut(&key) {
                Some(acc) => acc.add(&h).map_err(|e| e.to_string())?,
                None => {
                    per.insert(key, h);
                }
            }
        }
    }
    Ok(per
        .into_iter()
        .filter(|(_, h)| !h.is_empty())
        .map(|((_, end), h)| {
            (
                end as f64 / 1000.0,
                h.value_at_quantile(0.5) as f64 / 1e6,
                h.value_at_quantile(0.99) as f64 / 1e6,
            )
        })
        .collect())
}
