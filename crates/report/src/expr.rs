//! Threshold expressions: `p99 < "1ms"`, `p50<150us`, `error_rate < 0.1%`,
//! `throughput >= 10000`, `rss_growth_per_hour < "50MB"`, `discrepancies{kind="flow"} == 0`,
//! `ratio(p50, primary) <= 1/7`, `p(99.9){route="GET /api/order"} < 5ms`,
//! `sse_lag_p99 < "500ms"`.
//!
//! `kind=` takes a kind (`fill-mismatch`), a family of kinds (`sse` = the four `sse-*`
//! kinds, `body`), or a report section (`flow`, `stream`, `audit`, `exchange`), which also
//! takes that section's `not-compared` lines: stream gaps, unmapped order ids. The `flow`
//! family includes `timeout` (only the flow tracker writes it).
//!
//! Grammar (whitespace is free between tokens):
//!
//! ```text
//! expr      = metric [ "{" selector { "," selector } "}" ] op value
//! metric    = name | "p(" number ")" | "ratio(" metric "," target ")"
//! selector  = key ( "=" | ":" ) ( '"' text '"' | word )
//! op        = "<" | "<=" | ">" | ">=" | "==" | "!="
//! value     = '"' literal '"' | literal          (literal: see `units`)
//! ```
//!
//! The left side reads like k6 (`metric{tag="value"}`) and the whole like Goose's compact form
//! (`p50<150us`), so thresholds users already write can be pasted in. Quoting the value is
//! allowed because TOML users tend to write `"1ms"`.

use std::fmt;

use crate::units::{self, Dimension, Literal};

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Op {
    /// `<`
    #[serde(rename = "<")]
    Lt,
    /// `<=`
    #[serde(rename = "<=")]
    Le,
    /// `>`
    #[serde(rename = ">")]
    Gt,
    /// `>=`
    #[serde(rename = ">=")]
    Ge,
    /// `==`
    #[serde(rename = "==")]
    Eq,
    /// `!=`
    #[serde(rename = "!=")]
    Ne,
}

impl Op {
    /// `measured op threshold`. Equality allows a relative error of 1e-9 (values are floats).
    pub fn holds(self, measured: f64, threshold: f64) -> bool {
        let eq = (measured - threshold).abs() <= 1e-9 * threshold.abs().max(1.0);
        match self {
            Op::Lt => measured < threshold,
            Op::Le => measured <= threshold || eq,
            Op::Gt => measured > threshold,
            Op::Ge => measured >= threshold || eq,
            Op::Eq => eq,
            Op::Ne => !eq,
        }
    }

    /// The operator as written.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Eq => "==",
            Op::Ne => "!=",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A statistic of a latency distribution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LatencyStat {
    /// A quantile in (0, 1], e.g. 0.999 for P99.9.
    Quantile(f64),
    /// Highest sample.
    Max,
    /// Lowest sample.
    Min,
    /// Mean.
    Mean,
}

/// Aggregation of resource samples over the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agg {
    /// Mean of the samples.
    Mean,
    /// Highest sample.
    Max,
    /// 95th percentile of the samples.
    P95,
}

/// What a criterion measures.
#[derive(Debug, Clone, PartialEq)]
pub enum Metric {
    /// Latency of the target (response time unless `measure` says otherwise).
    Latency(LatencyStat),
    /// (5xx + connect errors + timeouts + other errors) ÷ requests.
    ErrorRate,
    /// Requests per second over the run's own measured window.
    Throughput,
    /// Requests attempted.
    Requests,
    /// 5xx + connect errors + timeouts + other errors.
    Errors,
    /// CPU use, percent of one CPU.
    Cpu(Agg),
    /// Resident memory, bytes.
    Rss(Agg),
    /// Least-squares slope of RSS over the run, bytes per hour.
    RssGrowthPerHour,
    /// Lines of `discrepancies.ndjson` (regressions unless `class` says otherwise).
    Discrepancies,
    /// The mirror's compared ÷ eligible shadow copies.
    Coverage,
    /// Authentication failures ÷ attempts (live scrapes only).
    AuthFailureRate,
    /// 1 while the health check passes, 0 when it fails (live checks only).
    HealthOk,
    /// Event lag of the target's SSE streams (candidate event minus primary event), from
    /// its `;lag` series: `sse_lag_p50`, `sse_lag_p99`, `sse_lag_max`, …
    SseLag(LatencyStat),
    /// `metric(target) ÷ metric(baseline)`.
    Ratio(Box<Metric>, String),
}

impl Metric {
    /// The dimension of the metric's values.
    pub fn dimension(&self) -> Dimension {
        match self {
            Metric::Latency(_) | Metric::SseLag(_) => Dimension::Duration,
            Metric::ErrorRate | Metric::Coverage | Metric::AuthFailureRate => Dimension::Fraction,
            Metric::Throughput => Dimension::Rate,
            Metric::Requests | Metric::Errors | Metric::Discrepancies | Metric::HealthOk => {
                Dimension::Count
            }
            Metric::Cpu(_) => Dimension::Percent,
            Metric::Rss(_) => Dimension::Bytes,
            Metric::RssGrowthPerHour => Dimension::BytesPerHour,
            Metric::Ratio(..) => Dimension::Ratio,
        }
    }

    /// Selector keys that make sense for this metric.
    pub fn selector_keys(&self) -> &'static [&'static str] {
        match self {
            Metric::Latency(_) => &["target", "route", "method", "measure"],
            Metric::SseLag(_) => &["target", "route", "method"],
            Metric::ErrorRate | Metric::Throughput | Metric::Requests | Metric::Errors => {
                &["target", "route", "method"]
            }
            Metric::Cpu(_) | Metric::Rss(_) | Metric::RssGrowthPerHour => &["target"],
            Metric::Discrepancies => &["route", "method", "kind", "class"],
            Metric::Coverage | Metric::AuthFailureRate | Metric::HealthOk => &["target"],
            Metric::Ratio(inner, _) => inner.selector_keys(),
        }
    }

    /// A short name (`p99`, `p99.9`, `error_rate`, `ratio(p50, primary)`).
    pub fn name(&self) -> String {
        match self {
            Metric::Latency(LatencyStat::Quantile(q)) => format!("p{}", quantile_label(*q)),
            Metric::Latency(LatencyStat::Max) => "max".into(),
            Metric::Latency(LatencyStat::Min) => "min".into(),
            Metric::Latency(LatencyStat::Mean) => "mean".into(),
            Metric::ErrorRate => "error_rate".into(),
            Metric::Throughput => "throughput".into(),
            Metric::Requests => "requests".into(),
            Metric::Errors => "errors".into(),
            Metric::Cpu(Agg::Mean) => "cpu".into(),
            Metric::Cpu(Agg::Max) => "cpu_max".into(),
            Metric::Cpu(Agg::P95) => "cpu_p95".into(),
            Metric::Rss(Agg::Max) => "rss".into(),
            Metric::Rss(Agg::Mean) => "rss_mean".into(),
            Metric::Rss(Agg::P95) => "rss_p95".into(),
            Metric::RssGrowthPerHour => "rss_growth_per_hour".into(),
            Metric::Discrepancies => "discrepancies".into(),
            Metric::Coverage => "coverage".into(),
            Metric::AuthFailureRate => "auth_failure_rate".into(),
            Metric::HealthOk => "health_ok".into(),
            Metric::SseLag(stat) => format!("sse_lag_{}", stat_name(*stat)),
            Metric::Ratio(m, base) => format!("ratio({}, {base})", m.name()),
        }
    }
}

/// `p99.9`, `max`, … (the suffix of `sse_lag_*`).
fn stat_name(stat: LatencyStat) -> String {
    match stat {
        LatencyStat::Quantile(q) => format!("p{}", quantile_label(q)),
        LatencyStat::Max => "max".into(),
        LatencyStat::Min => "min".into(),
        LatencyStat::Mean => "mean".into(),
    }
}

/// `0.999` → `99.9`, `0.5` → `50`.
pub fn quantile_label(q: f64) -> String {
    let p = q * 100.0;
    let s = format!("{p:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// `key="value"` pairs written in braces.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selectors {
    /// The pairs in the order written.
    pub pairs: Vec<(String, String)>,
}

impl Selectors {
    /// The value of `key`, if written.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A parsed, unit-checked expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    /// What is measured.
    pub metric: Metric,
    /// Scope written in the expression.
    pub selectors: Selectors,
    /// The comparison.
    pub op: Op,
    /// The threshold in the metric's base unit.
    pub threshold: f64,
    /// The threshold as written (without quotes).
    pub threshold_text: String,
}

impl Expr {
    /// The threshold formatted for people.
    pub fn threshold_display(&self) -> String {
        match self.metric.dimension() {
            Dimension::Ratio if self.threshold_text.contains('/') => {
                format!("{} ({})", self.threshold_text, units::sig3(self.threshold))
            }
            dim => units::Display {
                value: self.threshold,
                dim,
            }
            .to_string(),
        }
    }
}

/// Parses and checks an expression. On failure returns every problem found (a syntax error
/// stops parsing; unit and selector problems are all collected).
pub fn parse(text: &str) -> Result<Expr, Vec<String>> {
    let mut p = Parser {
        s: text,
        pos: 0,
        errors: Vec::new(),
    };
    let parsed = p.expr();
    match parsed {
        Ok(e) if p.errors.is_empty() => Ok(e),
        Ok(_) => Err(p.errors),
        Err(msg) => {
            p.errors.push(msg);
            Err(p.errors)
        }
    }
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
    errors: Vec<String>,
}

const OPS_HINT: &str = "one of < <= > >= == !=";

impl Parser<'_> {
    fn rest(&self) -> &str {
        &self.s[self.pos..]
    }

    fn ws(&mut self) {
        let r = self.rest();
        self.pos += r.len() - r.trim_start().len();
    }

    fn at(&self) -> String {
        let col = self.s[..self.pos].chars().count() + 1;
        if self.pos >= self.s.len() {
            format!("at the end of `{}`", self.s)
        } else {
            format!("at column {col} of `{}`", self.s)
        }
    }

    fn eat(&mut self, c: char) -> bool {
        self.ws();
        if self.rest().starts_with(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn ident(&mut self) -> Option<&str> {
        self.ws();
        let r = self.rest();
        let n = r
            .char_indices()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '.'))
            .map_or(r.len(), |(i, _)| i);
        if n == 0 {
            return None;
        }
        let start = self.pos;
        self.pos += n;
        Some(&self.s[start..start + n])
    }

    fn expr(&mut self) -> Result<Expr, String> {
        self.ws();
        if self.rest().is_empty() {
            return Err("empty expression; write e.g. p99 < 1ms or error_rate < 0.1%".to_owned());
        }
        let metric = self.metric()?;
        let selectors = if self.eat('{') {
            self.selectors()?
        } else {
            Selectors::default()
        };
        self.check_selectors(&metric, &selectors);
        let op = self.op()?;
        self.ws();
        let value_text = self.rest().trim().to_owned();
        let unquoted = unquote(&value_text).map_err(|e| format!("{e} {}", self.at()))?;
        if unquoted.is_empty() {
            return Err(format!(
                "missing threshold after `{op}`; write {}",
                metric.dimension().hint()
            ));
        }
        let threshold = match units::parse_literal(unquoted)
            .and_then(|lit: Literal| units::to_base(&lit, metric.dimension(), unquoted))
        {
            Ok(v) => v,
            Err(e) => {
                self.errors
                    .push(format!("{} (metric {})", e, metric.name()));
                0.0
            }
        };
        Ok(Expr {
            metric,
            selectors,
            op,
            threshold,
            threshold_text: unquoted.to_owned(),
        })
    }

    fn metric(&mut self) -> Result<Metric, String> {
        let start = self.pos;
        let Some(name) = self.ident().map(str::to_owned) else {
            return Err(format!(
                "expected a metric name {} (e.g. p99, error_rate, throughput, cpu, rss)",
                self.at()
            ));
        };
        if name == "p" && self.eat('(') {
            let num_start = self.pos;
            let r = self.rest();
            let close = r
                .find(')')
                .ok_or_else(|| format!("missing `)` {}", self.at()))?;
            let inner = r[..close].trim().to_owned();
            self.pos += close + 1;
            return match inner.parse::<f64>() {
                Ok(p) if p > 0.0 && p <= 100.0 => Ok(Metric::Latency(LatencyStat::Quantile(
                    percent_to_quantile(p),
                ))),
                _ => {
                    self.pos = num_start;
                    Err(format!(
                        "`p({inner})`: a percentile is a number in (0, 100], e.g. p(99.9) {}",
                        self.at()
                    ))
                }
            };
        }
        if name == "ratio" && self.eat('(') {
            let inner = self.metric()?;
            if matches!(inner, Metric::Ratio(..)) {
                return Err("ratio(...) cannot nest another ratio".to_owned());
            }
            if !self.eat(',') {
                return Err(format!(
                    "expected `, <baseline target>)` {}, e.g. ratio(p50, primary)",
                    self.at()
                ));
            }
            let Some(base) = self.ident().map(str::to_owned) else {
                return Err(format!(
                    "expected the baseline target name {}, e.g. ratio(p50, primary)",
                    self.at()
                ));
            };
            if !self.eat(')') {
                return Err(format!("missing `)` {}", self.at()));
            }
            return Ok(Metric::Ratio(Box::new(inner), base));
        }
        metric_by_name(&name).ok_or_else(|| {
            self.pos = start;
            format!(
                "unknown metric `{name}` {}; known: p50, p90, p95, p99, p999 (or p99.9, p(99.9)), \
                 max, min, mean, error_rate, throughput, requests, errors, cpu, cpu_max, cpu_p95, \
                 rss, rss_mean, rss_growth_per_hour, discrepancies, coverage, auth_failure_rate, \
                 health_ok, sse_lag_p50, sse_lag_p99, sse_lag_p99.9, sse_lag_max, sse_lag_mean \
                 (SSE event lag), ratio(<metric>, <target>)",
                self.at()
            )
        })
    }

    fn selectors(&mut self) -> Result<Selectors, String> {
        let mut out = Selectors::default();
        if self.eat('}') {
            return Ok(out);
        }
        loop {
            let Some(key) = self.ident().map(str::to_owned) else {
                return Err(format!(
                    "expected a selector key {}, e.g. {{target=\"candidate\"}}",
                    self.at()
                ));
            };
            if !(self.eat('=') || self.eat(':')) {
                return Err(format!("expected `=` after `{key}` {}", self.at()));
            }
            self.ws();
            let value = if self.rest().starts_with('"') {
                let r = &self.rest()[1..];
                let end = r
                    .find('"')
                    .ok_or_else(|| format!("unterminated string {}", self.at()))?;
                let v = r[..end].to_owned();
                self.pos += end + 2;
                v
            } else {
                let r = self.rest();
                let end = r.find([',', '}']).unwrap_or(r.len());
                let v = r[..end].trim().to_owned();
                self.pos += end;
                v
            };
            if out.get(&key).is_some() {
                self.errors.push(format!("selector `{key}` is given twice"));
            }
            out.pairs.push((key, value));
            if self.eat(',') {
                continue;
            }
            if self.eat('}') {
                return Ok(out);
            }
            return Err(format!("expected `,` or `}}` {}", self.at()));
        }
    }

    fn check_selectors(&mut self, metric: &Metric, sel: &Selectors) {
        let allowed = metric.selector_keys();
        for (k, v) in &sel.pairs {
            if !allowed.contains(&k.as_str()) {
                self.errors.push(format!(
                    "selector `{k}` does not apply to {}; it takes {}",
                    metric.name(),
                    allowed.join(", ")
                ));
                continue;
            }
            let problem = match k.as_str() {
                "kind" => check_kind(v).err(),
                "class" => (!matches!(v.as_str(), "regression" | "noise" | "ignored" | "any"))
                    .then(|| format!("class `{v}` is not one of regression, noise, ignored, any")),
                "measure" => (v.is_empty()
                    || !v
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')))
                .then(|| format!("measure `{v}` is not a name like response, service or lag")),
                _ if v.is_empty() => Some(format!("selector `{k}` is empty")),
                _ => None,
            };
            if let Some(p) = problem {
                self.errors.push(p);
            }
        }
    }

    fn op(&mut self) -> Result<Op, String> {
        self.ws();
        let r = self.rest();
        let (op, n) = if r.starts_with("<=") {
            (Op::Le, 2)
        } else if r.starts_with(">=") {
            (Op::Ge, 2)
        } else if r.starts_with("==") {
            (Op::Eq, 2)
        } else if r.starts_with("!=") {
            (Op::Ne, 2)
        } else if r.starts_with('<') {
            (Op::Lt, 1)
        } else if r.starts_with('>') {
            (Op::Gt, 1)
        } else if r.starts_with('=') {
            return Err(format!("`=` {}: write `==` to compare", self.at()));
        } else {
            return Err(format!("expected a comparison ({OPS_HINT}) {}", self.at()));
        };
        self.pos += n;
        Ok(op)
    }
}

/// Strips one pair of double or single quotes.
fn unquote(v: &str) -> Result<&str, String> {
    for q in ['"', '\''] {
        if let Some(inner) = v.strip_prefix(q) {
            return inner
                .strip_suffix(q)
                .map(str::trim)
                .ok_or_else(|| format!("unterminated quote in `{v}`"));
        }
    }
    Ok(v)
}

fn metric_by_name(name: &str) -> Option<Metric> {
    use LatencyStat::*;
    Some(match name {
        "max" => Metric::Latency(Max),
        "min" => Metric::Latency(Min),
        "mean" | "avg" => Metric::Latency(Mean),
        "error_rate" => Metric::ErrorRate,
        "throughput" | "rps" => Metric::Throughput,
        "requests" => Metric::Requests,
        "errors" => Metric::Errors,
        "cpu" | "cpu_mean" => Metric::Cpu(Agg::Mean),
        "cpu_max" => Metric::Cpu(Agg::Max),
        "cpu_p95" => Metric::Cpu(Agg::P95),
        "rss" | "rss_max" | "memory" => Metric::Rss(Agg::Max),
        "rss_mean" => Metric::Rss(Agg::Mean),
        "rss_p95" => Metric::Rss(Agg::P95),
        "rss_growth_per_hour" | "memory_growth_per_hour" => Metric::RssGrowthPerHour,
        "discrepancies" => Metric::Discrepancies,
        "coverage" => Metric::Coverage,
        "auth_failure_rate" => Metric::AuthFailureRate,
        "health_ok" => Metric::HealthOk,
        _ => {
            if let Some(stat) = name.strip_prefix("sse_lag_") {
                return match stat {
                    "max" => Some(Metric::SseLag(Max)),
                    "min" => Some(Metric::SseLag(Min)),
                    "mean" | "avg" => Some(Metric::SseLag(Mean)),
                    p => percentile_name(p).map(|q| Metric::SseLag(Quantile(q))),
                };
            }
            return percentile_name(name).map(|q| Metric::Latency(Quantile(q)));
        }
    })
}

/// `p50` → 0.5, `p99.9` → 0.999, `p999` → 0.999, `p9999` → 0.9999, `p95` → 0.95.
fn percentile_name(name: &str) -> Option<f64> {
    let digits = name.strip_prefix('p')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let p: f64 = if digits.contains('.') {
        digits.parse().ok()?
    } else if digits.len() > 2 && digits.starts_with("99") {
        // HdrHistogram/Goose shorthand: p999 is 99.9, p9999 is 99.99.
        format!("99.{}", &digits[2..]).parse().ok()?
    } else if digits == "100" {
        100.0
    } else {
        digits.parse().ok()?
    };
    (p > 0.0 && p <= 100.0).then_some(percent_to_quantile(p))
}

/// `99.9` → `0.999` exactly as written (`99.9 / 100.0` is `0.9990000000000001`).
fn percent_to_quantile(p: f64) -> f64 {
    (p * 1e7).round() / 1e9
}

/// Families of discrepancy kinds usable in `kind="..."`, besides every single kind name.
pub const KIND_FAMILIES: [(&str, &[&str]); 4] = [
    (
        "flow",
        &[
            "missing-on-candidate",
            "extra-on-candidate",
            "state-mismatch",
            "fill-mismatch",
            "sequence-mismatch",
            "timeout",
        ],
    ),
    (
        "sse",
        &["sse-missing", "sse-extra", "sse-different", "sse-late"],
    ),
    ("audit", &["audit-missing", "audit-extra", "audit-mismatch"]),
    (
        "body",
        &["missing", "extra", "type", "value", "order", "size", "text"],
    ),
];

/// Every single kind name of `discrepancies.ndjson`.
pub const KINDS: [&str; 23] = [
    "status",
    "header",
    "missing",
    "extra",
    "type",
    "value",
    "order",
    "size",
    "text",
    "sse-missing",
    "sse-extra",
    "sse-different",
    "sse-late",
    "missing-on-candidate",
    "extra-on-candidate",
    "state-mismatch",
    "fill-mismatch",
    "sequence-mismatch",
    "timeout",
    "audit-missing",
    "audit-extra",
    "audit-mismatch",
    "not-compared",
];

/// Families that are whole report sections ([`crate::model::SectionKind`]): they also take
/// the section's `not-compared` lines (stream gaps, unmapped order ids, unreadable audit
/// lines), which a kind name alone cannot place.
pub const SECTION_FAMILIES: [&str; 4] = ["exchange", "flow", "stream", "audit"];

/// Checks a `kind=` value: a kind, a family, or several joined by `|`.
fn check_kind(v: &str) -> Result<(), String> {
    for part in v.split('|') {
        let part = part.trim();
        if !KINDS.contains(&part)
            && !KIND_FAMILIES.iter().any(|(f, _)| *f == part)
            && !SECTION_FAMILIES.contains(&part)
        {
            return Err(format!(
                "kind `{part}` is unknown; use a section (exchange, flow, stream, audit), a \
                 family (sse, body) or a kind ({}), several joined with |",
                KINDS.join(", ")
            ));
        }
    }
    Ok(())
}

/// True when discrepancy kind `kind` matches a `kind=` selector value.
pub fn kind_matches(selector: &str, kind: &str) -> bool {
    selector.split('|').map(str::trim).any(|part| {
        part == kind
            || KIND_FAMILIES
                .iter()
                .any(|(f, members)| *f == part && members.contains(&kind))
    })
}

/// True when a line of kind `kind` in report section `section` matches a `kind=` selector
/// value: a kind, a family of kinds, or a section name (which takes the section's
/// `not-compared` lines too).
pub fn line_matches(selector: &str, kind: &str, section: &str) -> bool {
    kind_matches(selector, kind)
        || selector
            .split('|')
            .map(str::trim)
            .any(|part| SECTION_FAMILIES.contains(&part) && part == section)
}

/// True when a `kind=` selector names only audit lines (so it needs an `audit-diff` run).
pub fn only_audit(selector: &str) -> bool {
    selector
        .split('|')
        .map(str::trim)
        .all(|p| p == "audit" || p.starts_with("audit-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Expr {
        parse(s).unwrap_or_else(|e| panic!("{s}: {e:?}"))
    }

    fn err(s: &str) -> String {
        parse(s).expect_err(s).join("\n")
    }

    #[test]
    fn every_operator() {
        for (text, op) in [
            ("p99 < 1ms", Op::Lt),
            ("p99 <= 1ms", Op::Le),
            ("p99 > 1ms", Op::Gt),
            ("p99 >= 1ms", Op::Ge),
            ("p99 == 1ms", Op::Eq),
            ("p99 != 1ms", Op::Ne),
        ] {
            assert_eq!(ok(text).op, op, "{text}");
        }
        assert!(Op::Lt.holds(1.0, 2.0) && !Op::Lt.holds(2.0, 2.0));
        assert!(Op::Le.holds(2.0, 2.0) && !Op::Le.holds(2.1, 2.0));
        assert!(Op::Gt.holds(3.0, 2.0) && !Op::Gt.holds(2.0, 2.0));
        assert!(Op::Ge.holds(2.0, 2.0) && !Op::Ge.holds(1.9, 2.0));
        assert!(Op::Eq.holds(0.0, 0.0) && !Op::Eq.holds(1.0, 0.0));
        assert!(Op::Ne.holds(1.0, 0.0) && !Op::Ne.holds(0.0, 0.0));
        // 1/7 computed two ways compares equal.
        assert!(Op::Le.holds(1.0 / 7.0 + 1e-17, 1.0 / 7.0));
        assert!(err("p99 = 1ms").contains("`==`"));
        assert!(err("p99 ~ 1ms").contains("comparison"));
    }

    #[test]
    fn brief_examples() {
        let e = ok(r#"p50 < "150us""#);
        assert_eq!(e.metric, Metric::Latency(LatencyStat::Quantile(0.5)));
        assert_eq!(e.threshold, 150_000.0);
        assert_eq!(e.threshold_display(), "150 µs");
        assert_eq!(ok(r#"p99 < "1ms""#).threshold, 1e6);
        assert_eq!(ok("error_rate < 0.001").threshold, 0.001);
        assert_eq!(ok("error_rate < 0.1%").threshold, 0.001);
        assert_eq!(ok("throughput >= 10000").threshold, 10_000.0);
        assert_eq!(ok(r#"rss_growth_per_hour < "50MB""#).threshold, 50e6);
        let d = ok(r#"discrepancies{kind="flow"} == 0"#);
        assert_eq!(d.metric, Metric::Discrepancies);
        assert_eq!(d.selectors.get("kind"), Some("flow"));
        let r = ok("ratio(p50, primary) <= 1/7");
        assert_eq!(
            r.metric,
            Metric::Ratio(
                Box::new(Metric::Latency(LatencyStat::Quantile(0.5))),
                "primary".into()
            )
        );
        assert!((r.threshold - 1.0 / 7.0).abs() < 1e-12);
        assert_eq!(r.threshold_display(), "1/7 (0.143)");
        // Goose's compact form.
        let g = ok("p50<150us");
        assert_eq!(g.threshold, 150_000.0);
        assert_eq!(ok("ratio(throughput,primary)>=10").threshold, 10.0);
    }

    #[test]
    fn percentile_spellings() {
        for (s, q) in [
            ("p50", 0.5),
            ("p90", 0.9),
            ("p95", 0.95),
            ("p99", 0.99),
            ("p999", 0.999),
            ("p99.9", 0.999),
            ("p9999", 0.9999),
            ("p100", 1.0),
        ] {
            let e = ok(&format!("{s} < 1ms"));
            match e.metric {
                Metric::Latency(LatencyStat::Quantile(got)) => {
                    assert!((got - q).abs() < 1e-12, "{s}: {got}")
                }
                m => panic!("{s}: {m:?}"),
            }
        }
        assert_eq!(
            ok("p(99.9) < 5ms").metric,
            Metric::Latency(LatencyStat::Quantile(0.999))
        );
        assert_eq!(ok("p(99.9) < 5ms").metric.name(), "p99.9");
        assert!(err("p(0) < 1ms").contains("(0, 100]"));
        assert!(err("p101 < 1ms").contains("unknown metric"));
    }

    #[test]
    fn selectors_and_scope() {
        let e = ok(r#"p99{target="primary", route="GET /api/order", measure=service} < 2ms"#);
        assert_eq!(e.selectors.get("target"), Some("primary"));
        assert_eq!(e.selectors.get("route"), Some("GET /api/order"));
        assert_eq!(e.selectors.get("measure"), Some("service"));
        let k6 = ok("p99{route:/api/ticker} < 2ms");
        assert_eq!(k6.selectors.get("route"), Some("/api/ticker"));
        assert!(err(r#"cpu{route="/x"} < 30%"#).contains("does not apply to cpu"));
        assert!(err(r#"discrepancies{kind="flw"} == 0"#).contains("kind `flw` is unknown"));
        assert!(err(r#"discrepancies{class="bad"} == 0"#).contains("class"));
        assert!(err(r#"p99{target="a", target="b"} < 1ms"#).contains("twice"));
        assert!(err(r#"p99{target="a" < 1ms"#).contains("`,` or `}`"));
        assert!(kind_matches("flow", "fill-mismatch"));
        assert!(kind_matches("value|status", "status"));
        assert!(!kind_matches("flow", "value"));
    }

    #[test]
    fn sse_lag_metrics_and_section_kinds() {
        assert_eq!(
            ok(r#"sse_lag_p99 < "500ms""#).metric,
            Metric::SseLag(LatencyStat::Quantile(0.99))
        );
        assert_eq!(ok("sse_lag_p99.9 < 1s").metric.name(), "sse_lag_p99.9");
        assert_eq!(
            ok("sse_lag_max < 2s").metric,
            Metric::SseLag(LatencyStat::Max)
        );
        assert_eq!(ok("sse_lag_p50 < 1s").threshold, 1e9);
        assert!(err("sse_lag_p99 < 0.5").contains("no unit"));
        assert!(err(r#"sse_lag_p99{measure="lag"} < 1s"#).contains("measure"));
        assert!(err("sse_lagp99 < 1s").contains("sse_lag_p99"));
        for k in ["flow", "stream", "audit", "exchange", "sse|audit"] {
            ok(&format!(r#"discrepancies{{kind="{k}"}} == 0"#));
        }
        assert!(err(r#"discrepancies{kind="streams"} == 0"#).contains("section (exchange, flow"));
        // Sections take their not-compared lines; kind families do not.
        assert!(line_matches("stream", "not-compared", "stream"));
        assert!(!line_matches("sse", "not-compared", "stream"));
        assert!(line_matches("sse", "sse-late", "stream"));
        assert!(!line_matches("flow", "not-compared", "exchange"));
        assert!(kind_matches("flow", "timeout"));
        assert!(only_audit("audit") && only_audit("audit-missing|audit"));
        assert!(!only_audit("audit|flow"));
    }

    #[test]
    fn every_error_at_once() {
        let e = parse(r#"cpu{route="/x", kind="zz"} < 30ms"#).unwrap_err();
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(err("p99 < 150").contains("150us"));
        assert!(err("").contains("empty expression"));
        assert!(err("latency < 1ms").contains("unknown metric `latency`"));
        assert!(err("p99 <").contains("missing threshold"));
        assert!(err(r#"p99 < "1ms"#).contains("unterminated"));
        assert!(err("ratio(p50 primary) < 1").contains("baseline"));
        assert!(err("ratio(ratio(p50, a), b) < 1").contains("nest"));
        assert!(err("error_rate < 5ms").contains("fraction"));
    }
}
