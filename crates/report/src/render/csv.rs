//! `summary.csv`: one row per criterion result (`row = criterion`) and one per target route
//! (`row = route`), in one table so a spreadsheet or a CI chart can read both. Columns that
//! do not apply to a row are empty. Latencies in ns, rates in req/s, error rates as fractions.
//!
//! Discrepancies: one `row = section` per report section shown (exchange, flow, stream,
//! audit: `count` lines, by class), one `row = group` per order-flow, event-stream and audit
//! group (`name` = the path or differing steps, `detail` = example order ids), one
//! `row = stream` per event-stream route (its counters; `p50_ns`/`p99_ns`/`max_ns` are the
//! event lag), and one `row = ids` with the id-correlation counters. Those columns come
//! after the first 19, so readers of the older layout keep working.

use std::io::{self, Write};

use serde::Serialize;

use crate::model::{Report, SectionKind};
use crate::render::{class_name, group_place, orders_text, shown_sections};

/// Column order of `summary.csv`.
pub const COLUMNS: [&str; 36] = [
    "row",
    "name",
    "target",
    "method",
    "route",
    "metric",
    "op",
    "threshold",
    "measured",
    "status",
    "detail",
    "requests",
    "errors",
    "error_rate",
    "throughput",
    "p50_ns",
    "p99_ns",
    "p999_ns",
    "max_ns",
    "section",
    "kind",
    "class",
    "count",
    "regression",
    "noise",
    "ignored",
    "matched",
    "missing",
    "extra",
    "different",
    "late",
    "gaps",
    "reconnects",
    "unmapped",
    "timed_out",
    "expired",
];

#[derive(Debug, Default, Serialize)]
struct Row<'a> {
    row: &'a str,
    name: &'a str,
    target: &'a str,
    method: Option<&'a str>,
    route: Option<&'a str>,
    metric: Option<&'a str>,
    op: Option<&'a str>,
    threshold: Option<f64>,
    measured: Option<f64>,
    status: Option<&'a str>,
    detail: Option<&'a str>,
    requests: Option<u64>,
    errors: Option<u64>,
    error_rate: Option<f64>,
    throughput: Option<f64>,
    p50_ns: Option<u64>,
    p99_ns: Option<u64>,
    p999_ns: Option<u64>,
    max_ns: Option<u64>,
    section: Option<&'a str>,
    kind: Option<&'a str>,
    class: Option<&'a str>,
    count: Option<u64>,
    regression: Option<u64>,
    noise: Option<u64>,
    ignored: Option<u64>,
    matched: Option<u64>,
    missing: Option<u64>,
    extra: Option<u64>,
    different: Option<u64>,
    late: Option<u64>,
    gaps: Option<u64>,
    reconnects: Option<u64>,
    unmapped: Option<u64>,
    timed_out: Option<u64>,
    expired: Option<u64>,
}

/// Writes the CSV summary.
pub fn render(r: &Report, w: &mut dyn Write) -> io::Result<()> {
    let mut out = csv::Writer::from_writer(w);
    for c in &r.criteria {
        let (method, route) = match c.route.as_deref().and_then(|s| s.split_once(' ')) {
            Some((m, rt)) => (Some(m), Some(rt)),
            None => (None, c.route.as_deref()),
        };
        out.serialize(Row {
            row: "criterion",
            name: &c.name,
            target: &c.target,
            method,
            route,
            metric: Some(&c.metric),
            op: Some(c.op.as_str()),
            threshold: Some(c.threshold.value),
            measured: c.measured.as_ref().map(|m| m.value),
            status: Some(status_name(c.status)),
            detail: c.detail.as_deref(),
            ..Row::default()
        })
        .map_err(io::Error::other)?;
    }
    for rt in &r.routes {
        let l = rt.latency.as_ref();
        out.serialize(Row {
            row: "route",
            name: "",
            target: &rt.target,
            method: Some(&rt.method),
            route: Some(&rt.route),
            requests: Some(rt.requests),
            errors: Some(rt.errors),
            error_rate: rt.error_rate,
            throughput: rt.throughput,
            p50_ns: l.map(|l| l.p50_ns),
            p99_ns: l.map(|l| l.p99_ns),
            p999_ns: l.map(|l| l.p999_ns),
            max_ns: l.map(|l| l.max_ns),
            ..Row::default()
        })
        .map_err(io::Error::other)?;
    }
    let d = &r.discrepancies;
    for (section, t) in shown_sections(d) {
        out.serialize(Row {
            row: "section",
            name: &t.title,
            section: Some(section.name()),
            count: Some(t.total),
            regression: Some(t.regression),
            noise: Some(t.noise),
            ignored: Some(t.ignored),
            ..Row::default()
        })
        .map_err(io::Error::other)?;
    }
    for g in d
        .groups
        .iter()
        .filter(|g| g.section != SectionKind::Exchange)
    {
        let place = group_place(g);
        let orders = orders_text(g);
        out.serialize(Row {
            row: "group",
            name: &place,
            method: Some(&g.method),
            route: Some(&g.route),
            detail: (!orders.is_empty()).then_some(orders.as_str()),
            section: Some(g.section.name()),
            kind: Some(&g.kind),
            class: Some(class_name(g.class)),
            count: Some(g.count),
            ..Row::default()
        })
        .map_err(io::Error::other)?;
    }
    for s in &d.streams {
        let l = s.lag.as_ref();
        out.serialize(Row {
            row: "stream",
            name: "",
            method: Some("GET"),
            route: Some(&s.route),
            section: Some(SectionKind::Stream.name()),
            p50_ns: l.map(|l| l.p50_ns),
            p99_ns: l.map(|l| l.p99_ns),
            max_ns: l.map(|l| l.max_ns),
            matched: Some(s.matched),
            missing: Some(s.missing),
            extra: Some(s.extra),
            different: Some(s.different),
            late: Some(s.late),
            gaps: Some(s.gaps),
            reconnects: Some(s.reconnects),
            ..Row::default()
        })
        .map_err(io::Error::other)?;
    }
    if let Some(i) = &d.ids {
        out.serialize(Row {
            row: "ids",
            name: "id correlation",
            section: Some(SectionKind::Flow.name()),
            matched: Some(i.mapped),
            unmapped: Some(i.unmapped),
            timed_out: Some(i.timed_out),
            expired: Some(i.expired),
            ..Row::default()
        })
        .map_err(io::Error::other)?;
    }
    out.flush()
}

fn status_name(s: crate::model::Status) -> &'static str {
    use crate::model::Status::*;
    match s {
        Pass => "pass",
        Fail => "fail",
        NoData => "no-data",
        Skipped => "skipped",
        GeneratorLimited => "generator-limited",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_matches_columns() {
        let mut buf = Vec::new();
        let mut out = csv::Writer::from_writer(&mut buf);
        out.serialize(Row::default()).unwrap();
        drop(out);
        let text = String::from_utf8(buf).unwrap();
        assert_eq!(text.lines().next().unwrap(), COLUMNS.join(","));
    }
}
