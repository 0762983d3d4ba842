//! `summary.csv`: one row per criterion result (`row = criterion`) and one per target route
//! (`row = route`), in one table so a spreadsheet or a CI chart can read both. Columns that
//! do not apply to a row are empty. Latencies in ns, rates in req/s, error rates as fractions.

use std::io::{self, Write};

use serde::Serialize;

use crate::model::Report;

/// Column order of `summary.csv`.
pub const COLUMNS: [&str; 19] = [
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
