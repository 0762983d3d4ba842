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
