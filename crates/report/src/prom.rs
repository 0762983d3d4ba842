//! Prometheus: a small parser for the text exposition format 0.0.4 (what `/metrics` serves)
//! and the metric names a PromQL expression uses.
//!
//! Our own, small and strict where it matters: the existing parser crates are unmaintained
//! (prometheus-parse, regex-based) or LGPL (openmetrics-parser). Only what shadowgate needs:
//! sample names, labels and values; `# HELP`/`# TYPE` lines are read for the metric families.

use std::collections::{BTreeMap, BTreeSet};

/// One sample line: `name{labels} value [timestamp]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric (sample) name, e.g. `http_request_duration_seconds_bucket`.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Value (`NaN`, `+Inf`, `-Inf` allowed).
    pub value: f64,
}

/// A parsed scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scrape {
    /// Every sample, in order.
    pub samples: Vec<Sample>,
    /// `# TYPE` declarations: family name → type.
    pub types: BTreeMap<String, String>,
}

impl Scrape {
    /// Every name a PromQL selector could match: sample names and declared family names.
    pub fn names(&self) -> BTreeSet<String> {
        let mut out: BTreeSet<String> = self.samples.iter().map(|s| s.name.clone()).collect();
        out.extend(self.types.keys().cloned());
        out
    }

    /// Sum of the values of samples named `name` (over all label sets); `None` if absent.
    pub fn sum(&self, name: &str) -> Option<f64> {
        let mut found = false;
        let mut total = 0.0;
        for s in self.samples.iter().filter(|s| s.name == name) {
            found = true;
            total += s.value;
        }
        found.then_some(total)
    }
}

/// Parses a text-format scrape; errors name the 1-based line.
pub fn parse(text: &str) -> Result<Scrape, String> {
    let mut out = Scrape::default();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('#') {
            let mut parts = rest.split_whitespace();
            if parts.next() == Some("TYPE")
                && let (Some(name), Some(ty)) = (parts.next(), parts.next())
            {
                out.types.insert(name.to_owned(), ty.to_owned());
            }
            continue;
        }
        out.samples
            .push(sample(line).map_err(|e| format!("line {}: {e}: `{line}`", i + 1))?);
    }
    Ok(out)
}

fn sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or("no value after the metric name")?;
    let name = &line[..name_end];
    if !is_metric_name(name) {
        return Err(format!("`{name}` is not a metric name"));
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.strip_prefix('{') {
        let mut s = after;
        loop {
            s = s.trim_start_matches([' ', ',']);
            if let Some(r) = s.strip_prefix('}') {
                rest = r;
                break;
            }
            let eq = s.find('=').ok_or("label without `=`")?;
            let key = s[..eq].trim().to_owned();
            s = s[eq + 1..].trim_start();
            let body = s.strip_prefix('"').ok_or("label value not quoted")?;
            let mut value = String::new();
            let mut chars = body.char_indices();
            let end = loop {
                match chars.next() {
                    None => return Err("unterminated label value".into()),
                    Some((j, '"')) => break j,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c)) => value.push(c),
                        None => return Err("unterminated label value".into()),
                    },
                    Some((_, c)) => value.push(c),
                }
            };
            labels.insert(key, value);
            s = &body[end + 1..];
        }
    }
    let value_text = rest
        .split_whitespace()
        .next()
        .ok_or("no value after the metric name")?;
    let value = match value_text {
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().map_err(|_| format!("`{v}` is not a number"))?,
    };
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// PromQL words that are not metric names.
const KEYWORDS: [&str; 18] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
    "and",
    "or",
    "unless",
    "atan2",
    "inf",
    "nan",
    "start",
    "end",
    "Inf",
    "NaN",
];

/// PromQL aggregation operators.
const AGGREGATIONS: [&str; 14] = [
    "sum",
    "avg",
    "min",
    "max",
    "count",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "group",
    "limitk",
    "limit_ratio",
];

/// Series Prometheus makes itself (never on a target's `/metrics`).
pub fn is_synthetic(name: &str) -> bool {
    matches!(name, "up" | "ALERTS" | "ALERTS_FOR_STATE") || name.starts_with("scrape_")
}

/// The metric names a PromQL expression selects: identifiers that are not functions,
/// aggregations, keywords, label names (in `{...}`, `by (...)`, `on (...)`, ...), durations
/// or strings; plus `{__name__="..."}` selectors.
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    let b = expr.as_bytes();
    let mut out = BTreeSet::new();
    let mut i = 0;
    // Set after `by`/`without`/`on`/`ignoring`/`group_*`: the next parenthesis holds labels.
    let mut label_list_next = false;
    while i < b.len() {
        let c = b[i];
        if c == b'"' || c == b'\'' || c == b'`' {
            i = skip_string(b, i);
            continue;
        }
        if c == b'#' {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if c == b'{' {
            let end = expr[i..].find('}').map_or(b.len(), |e| i + e + 1);
            let inner = &expr[i + 1..end.saturating_sub(1).max(i + 1)];
            if let Some(name) = dunder_name(inner) {
                out.insert(name);
            }
            i = end;
            continue;
        }
        if c == b'[' {
            i = expr[i..].find(']').map_or(b.len(), |e| i + e + 1);
            continue;
        }
        if c == b'(' && label_list_next {
            i = expr[i..].find(')').map_or(b.len(), |e| i + e + 1);
            label_list_next = false;
            continue;
        }
        if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) {
            // Numbers and durations (5m, 1e-3, 0x1f).
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.' || b[i] == b'_') {
                i += 1;
            }
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' || c == b':' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
                i += 1;
            }
            let word = &expr[start..i];
            let mut j = i;
            while j < b.len() && b[j].is_ascii_whitespace() {
                j += 1;
            }
            let is_call = b.get(j) == Some(&b'(');
            if matches!(
                word,
                "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
            ) {
                label_list_next = true;
                continue;
            }
            // Aggregations can put their grouping first: `sum by (le) (...)`.
            if is_call || KEYWORDS.contains(&word) || AGGREGATIONS.contains(&word) {
                continue;
            }
            out.insert(word.to_owned());
            continue;
        }
        i += 1;
    }
    out
}

fn skip_string(b: &[u8], start: usize) -> usize {
    let q = b[start];
    let mut i = start + 1;
    while i < b.len() {
        if b[i] == b'\\' && q != b'`' {
            i += 2;
            continue;
        }
        if b[i] == q {
            return i + 1;
        }
        i += 1;
    }
    b.len()
}

/// `__name__="x"` (or `=~` with a plain name) inside a selector.
fn dunder_name(inner: &str) -> Option<String> {
    let at = inner.find("__name__")?;
    let rest = inner[at + 8..].trim_start();
    let rest = rest.strip_prefix('=')?.trim_start();
    let rest = rest.strip_prefix('"')?;
    let end = rest.find('"')?;
    let name = &rest[..end];
    is_metric_name(name).then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_text_format() {
        let text = "# HELP http_requests_total Total\n# TYPE http_requests_total counter\n\
                    http_requests_total 1027\n\
                    http_request_duration_seconds_bucket{le=\"0.005\"} 3\n\
                    http_request_duration_seconds_bucket{le=\"+Inf\",path=\"a\\\"b\"} 5 1700000000\n\
                    process_resident_memory_bytes 1.5e+07\n\
                    weird{a=\"x\",} NaN\n";
        let s = parse(text).unwrap();
        assert_eq!(s.samples.len(), 5);
        assert_eq!(s.samples[0].value, 1027.0);
        assert_eq!(s.samples[2].labels["path"], "a\"b");
        assert_eq!(s.samples[2].labels["le"], "+Inf");
        assert_eq!(s.sum("http_request_duration_seconds_bucket"), Some(8.0));
        assert_eq!(s.sum("process_resident_memory_bytes"), Some(1.5e7));
        assert!(s.samples[4].value.is_nan());
        assert_eq!(s.types["http_requests_total"], "counter");
        assert!(s.names().contains("http_requests_total"));
        assert!(parse("9bad 1\n").unwrap_err().starts_with("line 1"));
        assert!(parse("ok 1\nx{a=b} 1\n").unwrap_err().starts_with("line 2"));
        assert!(parse("x notanumber\n").is_err());
    }

    #[test]
    fn names_in_promql() {
        let names = |e: &str| metric_names(e).into_iter().collect::<Vec<_>>();
        assert_eq!(
            names(
                r#"sum(rate(veloz_gateway_requests_total{status=~"5.."}[5m])) / sum(rate(veloz_gateway_requests_total[5m])) > 0.01"#
            ),
            ["veloz_gateway_requests_total"]
        );
        assert_eq!(
            names(
                "histogram_quantile(0.99, sum by (le) (rate(veloz_gateway_request_duration_seconds_bucket[5m]))) > 0.005"
            ),
            ["veloz_gateway_request_duration_seconds_bucket"]
        );
        assert_eq!(
            names("deriv(process_resident_memory_bytes[1h]) * 3600 > 50e6"),
            ["process_resident_memory_bytes"]
        );
        assert_eq!(
            names("a / on(instance) group_left(job) b offset 1d and c unless bool d"),
            ["a", "b", "c", "d"]
        );
        assert_eq!(names(r#"{__name__="x_total", job="y"} > 1"#), ["x_total"]);
        assert_eq!(names("up{job=\"gw\"} == 0"), ["up"]);
        assert_eq!(names("max without (instance) (x)"), ["x"]);
        assert!(is_synthetic("up") && is_synthetic("scrape_duration_seconds"));
        assert!(!is_synthetic("process_cpu_seconds_total"));
        assert_eq!(
            names("avg_over_time(foo:rate5m[1d:5m]) > 2 * bar"),
            ["bar", "foo:rate5m"]
        );
    }
}
