//! Renderers: each turns a [`Report`] (plus, for `.hgrm` and HTML, the measurements'
//! histograms) into one format, written to any `io::Write`. Measuring is done before and
//! apart from this, as oha does, so every format shows the same numbers.

use std::fmt;
use std::str::FromStr;

use crate::model::Report;

pub mod csv;
pub mod hgrm;
pub mod html;
pub mod json;
pub mod junit;
pub mod markdown;
mod svg;
pub mod term;

/// An output format of `shadowgate report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Format {
    /// The terminal table (stdout).
    Term,
    /// `report.md`.
    Markdown,
    /// `report.json`.
    Json,
    /// `summary.csv`.
    Csv,
    /// `junit.xml`.
    Junit,
    /// `report.html`.
    Html,
    /// `hgrm/<series>.hgrm`.
    Hgrm,
}

impl Format {
    /// Every format, in the order they are written.
    pub const ALL: [Format; 7] = [
        Format::Term,
        Format::Markdown,
        Format::Json,
        Format::Csv,
        Format::Junit,
        Format::Html,
        Format::Hgrm,
    ];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Format::Term => "term",
            Format::Markdown => "md",
            Format::Json => "json",
            Format::Csv => "csv",
            Format::Junit => "junit",
            Format::Html => "html",
            Format::Hgrm => "hgrm",
        }
    }

    /// The file written in the output directory (`None` for the terminal; `.hgrm` files go in
    /// a `hgrm/` folder).
    pub fn file_name(self) -> Option<&'static str> {
        match self {
            Format::Term => None,
            Format::Markdown => Some("report.md"),
            Format::Json => Some("report.json"),
            Format::Csv => Some("summary.csv"),
            Format::Junit => Some("junit.xml"),
            Format::Html => Some("report.html"),
            Format::Hgrm => Some("hgrm"),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Format, String> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "term" | "text" | "terminal" => Format::Term,
            "md" | "markdown" => Format::Markdown,
            "json" => Format::Json,
            "csv" => Format::Csv,
            "junit" | "xml" => Format::Junit,
            "html" => Format::Html,
            "hgrm" => Format::Hgrm,
            other => {
                return Err(format!(
                    "unknown format `{other}`; use term, md, json, csv, junit, html or hgrm"
                ));
            }
        })
    }
}

/// `PASS`/`FAIL` banner text of a report.
pub(crate) fn verdict_line(r: &Report) -> String {
    let t = &r.tally;
    let mut parts = vec![format!("{} passed", t.passed)];
    if t.failed > 0 {
        parts.push(format!("{} failed", t.failed));
    }
    if t.no_data > 0 {
        parts.push(format!("{} without data", t.no_data));
    }
    if t.generator_limited > 0 {
        parts.push(format!("{} generator-limited", t.generator_limited));
    }
    if t.skipped > 0 {
        parts.push(format!("{} skipped", t.skipped));
    }
    let word = match r.verdict {
        crate::model::Verdict::Pass => "PASS",
        crate::model::Verdict::Fail => "FAIL",
    };
    format!("{word}: {} — {}", r.phase.title, parts.join(", "))
}

/// `1.5x`, or `-` when unknown.
pub(crate) fn fmt_ratio(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{}x", crate::units::sig3(v)))
}

/// A latency in ns, or `-`.
pub(crate) fn fmt_lat(v: Option<u64>) -> String {
    v.map_or_else(|| "-".into(), |v| crate::units::fmt_ns(v as f64))
}

/// A fraction as a percentage, or `-`.
pub(crate) fn fmt_frac(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| crate::units::fmt_percent(v * 100.0))
}

/// Requests per second, or `-`.
pub(crate) fn fmt_rate(v: Option<f64>) -> String {
    v.map_or_else(
        || "-".into(),
        |v| format!("{}/s", crate::units::fmt_number(v)),
    )
}

/// The p-value and effect size of a comparison, and what they mean.
pub(crate) fn fmt_shift(c: &crate::model::RouteComparison) -> String {
    use crate::stats::Shift;
    match (&c.mann_whitney, c.shift) {
        (Some(mw), Some(shift)) => {
            let word = match shift {
                Shift::Slower => "candidate slower",
                Shift::Faster => "candidate faster",
                Shift::NoSignificantDifference => "no significant difference",
            };
            format!(
                "{word} (p={}, P(c>p)={})",
                fmt_p(mw.p_value),
                crate::units::sig3(mw.effect)
            )
        }
        _ => "not enough data".into(),
    }
}

/// A p-value: `<1e-12` for vanishing ones, else three significant digits.
pub(crate) fn fmt_p(p: f64) -> String {
    if p < 1e-12 {
        "<1e-12".into()
    } else if p < 1e-3 {
        format!("{p:.1e}")
    } else {
        crate::units::sig3(p)
    }
}

/// `regression`, `noise` or `ignored`.
pub(crate) fn class_name(c: shadowgate_record::Class) -> &'static str {
    match c {
        shadowgate_record::Class::Regression => "regression",
        shadowgate_record::Class::Noise => "noise",
        shadowgate_record::Class::Ignored => "ignored",
    }
}

/// Where a group differs: its flow steps (order flows), otherwise its path.
pub(crate) fn group_place(g: &crate::model::Group) -> String {
    if g.steps.is_empty() {
        g.path.clone()
    } else {
        g.steps.join(", ")
    }
}

/// Example orders of a flow group: `web-1 ↔ veloz_9, web-2 ↔ (unmapped)`.
pub(crate) fn orders_text(g: &crate::model::Group) -> String {
    g.orders
        .iter()
        .map(|o| {
            format!(
                "{} ↔ {}",
                o.primary,
                o.candidate.as_deref().unwrap_or("(none)")
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The sections worth a heading: exchanges whenever answers were compared, the others when
/// they have lines or their producer reported counters.
pub(crate) fn shown_sections(
    d: &crate::model::Discrepancies,
) -> Vec<(crate::model::SectionKind, &crate::model::SectionTotals)> {
    use crate::model::SectionKind as S;
    d.sections
        .iter()
        .filter(|t| {
            t.total > 0
                || match t.section {
                    S::Exchange => {
                        d.compared
                            && (d.audit.is_none() || d.flows.is_some() || !d.streams.is_empty())
                    }
                    S::Flow => d.flows.is_some() || d.ids.is_some(),
                    S::Stream => !d.streams.is_empty(),
                    S::Audit => d.audit.is_some(),
                }
        })
        .map(|t| (t.section, t))
        .collect()
}

/// `3 regression, 1 noise, 0 ignored in 2 groups`.
pub(crate) fn section_line(t: &crate::model::SectionTotals) -> String {
    format!(
        "{} regression, {} noise, {} ignored in {} group{}",
        t.regression,
        t.noise,
        t.ignored,
        t.groups,
        if t.groups == 1 { "" } else { "s" }
    )
}

/// The flow tracker's counters in one line.
pub(crate) fn flows_line(f: &crate::model::FlowFacts) -> String {
    let mut line = format!(
        "flows: {} tracked, {} compared, {} matched, {} differing, {} noise only ({} cancel-fill races), {} submit failed, {} cancels lost on the way to the candidate, {} untracked, {} open",
        f.tracked,
        f.compared,
        f.matched,
        f.differing,
        f.noise,
        f.cancel_fill_races,
        f.submit_failed,
        f.follow_up_lost,
        f.untracked,
        f.open
    );
    if f.completed_by_poll > 0 || f.poll_unauthorized > 0 {
        line.push_str(&format!(
            "; {} completed by a state poll, {} polls refused (401/403) leaving {} flows unfinished",
            f.completed_by_poll, f.poll_unauthorized, f.poll_unauthorized_flows
        ));
    }
    line
}

/// The id map's counters in one line.
pub(crate) fn ids_line(i: &crate::model::IdCorrelation) -> String {
    format!(
        "id correlation: {} mapped, {} rewritten, {} unmapped, {} timed out, {} expired, {} evicted",
        i.mapped, i.rewritten, i.unmapped, i.timed_out, i.expired, i.evicted
    )
}

/// The audit-diff counters in one line.
pub(crate) fn audit_line(a: &crate::model::AuditFacts) -> String {
    format!(
        "audit-diff: {} run{}, logs {}; entries {} primary / {} candidate: {} matched, {} missing, {} extra, {} mismatched",
        a.runs,
        if a.runs == 1 { "" } else { "s" },
        if a.consistent {
            "consistent"
        } else {
            "INCONSISTENT"
        },
        a.primary_entries,
        a.candidate_entries,
        a.matched,
        a.missing,
        a.extra,
        a.mismatched
    )
}

/// `lag P50 1.2 ms · P99 40 ms · max 90 ms (1,234 events)`, or why there is none.
pub(crate) fn lag_line(l: Option<&crate::model::Latency>) -> String {
    match l {
        None => "lag: no samples".into(),
        Some(l) => format!(
            "lag P50 {} · P99 {} · max {} ({} events)",
            fmt_lat(Some(l.p50_ns)),
            fmt_lat(Some(l.p99_ns)),
            fmt_lat(Some(l.max_ns)),
            crate::units::fmt_number(l.count as f64)
        ),
    }
}

/// Column heads of the stream-route table.
pub(crate) const STREAM_HEADS: [&str; 11] = [
    "route",
    "matched",
    "missing",
    "extra",
    "different",
    "late",
    "gaps",
    "reconnects",
    "lag p50",
    "lag p99",
    "lag max",
];

/// One stream route as table cells (see [`STREAM_HEADS`]).
pub(crate) fn stream_cells(s: &crate::model::StreamRoute) -> Vec<String> {
    let n = |v: u64| crate::units::fmt_number(v as f64);
    let l = s.lag.as_ref();
    vec![
        s.route.clone(),
        n(s.matched),
        n(s.missing),
        n(s.extra),
        n(s.different),
        n(s.late),
        n(s.gaps),
        n(s.reconnects),
        fmt_lat(l.map(|l| l.p50_ns)),
        fmt_lat(l.map(|l| l.p99_ns)),
        fmt_lat(l.map(|l| l.max_ns)),
    ]
}
