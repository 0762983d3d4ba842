//! The criteria file (`scenarios/phases.toml`): rollout phases and their gates, as data.
//!
//! ```toml
//! version = 1
//!
//! [defaults]
//! target = "candidate"   # whose numbers a criterion judges, unless it says otherwise
//! missing = "fail"       # a criterion without data fails ("skip": reported, not judged)
//! alpha = 0.05           # significance level for "candidate is slower" (Mann-Whitney U)
//!
//! [phases.1]
//! title = "Phase 1: ..."
//! criteria = [
//!   "error_rate < 0.1%",
//!   { name = "P99 latency", expr = 'p99 < "1ms"' },
//!   { expr = "p99 < 2ms", route = "POST /api/order" },
//!   { expr = "p99 < 2ms", route = "*" },          # every route, one result each
//!   { expr = "cpu < 30%", missing = "skip" },
//! ]
//! ```
//!
//! A criterion is an expression string (see [`crate::expr`]) or an inline table with `expr` and
//! optional `name`, `target`, `route` (`"GET /api/order"`, `"/api/order"` for any method,
//! `"/api/order*"` for a prefix, `"*"` for each route separately), `missing` and `note`.
//! Loading follows the typed-config habit: TOML → raw serde structs (`deny_unknown_fields`) →
//! validation that collects *every* problem, each with its line, before anything is evaluated.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use crate::error::{ConfigErrors, ConfigIssue, ReportError};
use crate::expr::{self, Expr, Metric};

/// What a criterion whose data is missing (no samples, no `resources.csv`, ...) becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Missing {
    /// Reported as "no data" and fails the gate (the default: a gate never passes on
    /// numbers nobody measured).
    Fail,
    /// Reported as "skipped (no data)" and does not decide the gate.
    Skip,
}

/// Which routes a criterion looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteScope {
    /// Every route of the target together.
    All,
    /// Each route separately: one result per route found in the data.
    Each,
    /// Routes matching a pattern.
    Match(RoutePattern),
}

/// `GET /api/order`, `/api/order` (any method) or `/api/order*` (prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePattern {
    /// Method, if given.
    pub method: Option<String>,
    /// The route template, or its prefix when `prefix` is set.
    pub route: String,
    /// The route ended in `*`.
    pub prefix: bool,
}

impl RoutePattern {
    /// Parses a route scope string.
    pub fn parse(s: &str) -> Result<RoutePattern, String> {
        let s = s.trim();
        let (method, route) = match s.split_once(' ') {
            Some((m, r)) => (Some(m.trim().to_owned()), r.trim()),
            None => (None, s),
        };
        if let Some(m) = &method
            && !m.bytes().all(|b| b.is_ascii_alphabetic())
        {
            return Err(format!(
                "route `{s}`: write `METHOD /template` (e.g. `GET /api/order`) or `/template`"
            ));
        }
        if route.is_empty() {
            return Err("route is empty; write e.g. `GET /api/order` or `/api/order*`".into());
        }
        let (route, prefix) = match route.strip_suffix('*') {
            Some(r) => (r.to_owned(), true),
            None => (route.to_owned(), false),
        };
        Ok(RoutePattern {
            method: method.map(|m| m.to_ascii_uppercase()),
            route,
            prefix,
        })
    }

    /// True when `method route` is in scope.
    pub fn matches(&self, method: &str, route: &str) -> bool {
        if let Some(m) = &self.method
            && !m.eq_ignore_ascii_case(method)
        {
            return false;
        }
        if self.prefix {
            route.starts_with(&self.route)
        } else {
            route == self.route
        }
    }
}

impl fmt::Display for RoutePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(m) = &self.method {
            write!(f, "{m} ")?;
        }
        f.write_str(&self.route)?;
        if self.prefix {
            f.write_str("*")?;
        }
        Ok(())
    }
}

/// One validated criterion.
#[derive(Debug, Clone)]
pub struct Criterion {
    /// Name shown in reports (defaults to the expression).
    pub name: String,
    /// The expression as written.
    pub text: String,
    /// The parsed expression.
    pub expr: Expr,
    /// The target judged.
    pub target: String,
    /// The routes judged.
    pub route: RouteScope,
    /// What missing data means.
    pub missing: Missing,
    /// Free text shown beside the result.
    pub note: Option<String>,
    /// 1-based line in the criteria file.
    pub line: usize,
}

/// One phase (or `overall`).
#[derive(Debug, Clone)]
pub struct Phase {
    /// The key under `[phases]` (`1`..`5`, `overall`).
    pub id: String,
    /// Human title.
    pub title: String,
    /// The criteria, in file order.
    pub criteria: Vec<Criterion>,
}

/// A validated criteria file.
#[derive(Debug, Clone)]
pub struct Criteria {
    /// Where it came from (file path or `built-in`).
    pub origin: String,
    /// Significance level for latency comparisons.
    pub alpha: f64,
    /// Phases in key order.
    pub phases: Vec<Phase>,
}

impl Criteria {
    /// The phase with this id (`3`, `phase3`, `overall` are accepted).
    pub fn phase(&self, id: &str) -> Option<&Phase> {
        let id = id.trim();
        let id = id
            .strip_prefix("phase")
            .map(|s| s.trim_start_matches(['-', '_', ' ']))
            .unwrap_or(id);
        self.phases.iter().find(|p| p.id.eq_ignore_ascii_case(id))
    }

    /// The shipped `scenarios/phases.toml`, used when no `--criteria` is given.
    pub fn builtin() -> Criteria {
        // Validated by a unit test, so this cannot fail in a released binary; an empty set is
        // the total fallback rather than a panic.
        Criteria::parse(BUILTIN, "built-in scenarios/phases.toml").unwrap_or_else(|_| Criteria {
            origin: "built-in".into(),
            alpha: 0.05,
            phases: Vec::new(),
        })
    }

    /// Reads and validates a criteria file.
    pub fn load(path: &Path) -> Result<Criteria, ReportError> {
        let text = std::fs::read_to_string(path).map_err(|source| ReportError::Read {
            path: path.to_path_buf(),
            what: "criteria file",
            source,
        })?;
        Ok(Criteria::parse(&text, &path.display().to_string())?)
    }

    /// Parses and validates criteria text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Criteria, ConfigErrors> {
        let raw: RawFile = toml::from_str(text).map_err(|e| toml_error(&e, text, origin))?;
        let mut v = Issues::new(origin, text);
        if let Some(version) = raw.version
            && version != 1
        {
            v.push(
                None,
                format!("version = {version} is not supported; this shadowgate reads version = 1"),
            );
        }
        let defaults = raw.defaults.unwrap_or_default();
        let default_missing = defaults
            .missing
            .as_ref()
            .and_then(|m| v.missing(m, "defaults.missing"))
            .unwrap_or(Missing::Fail);
        let alpha = match defaults.alpha {
            Some(a) if !(a > 0.0 && a < 1.0) => {
                v.push(
                    None,
                    format!("defaults.alpha = {a} must be between 0 and 1 (e.g. 0.05)"),
                );
                0.05
            }
            Some(a) => a,
            None => 0.05,
        };
        let default_target = defaults.target.unwrap_or_else(|| "candidate".to_owned());
        if raw.phases.is_empty() {
            v.push(
                None,
                "no [phases.<id>] table; add e.g. [phases.1] with criteria = [...]".into(),
            );
        }
        let mut phases = Vec::new();
        for (id, spanned) in raw.phases {
            let line = v.line(spanned.span().start);
            let rp = spanned.into_inner();
            let target = rp.target.unwrap_or_else(|| default_target.clone());
            let missing = rp
                .missing
                .as_ref()
                .and_then(|m| v.missing(m, &format!("phases.{id}.missing")))
                .unwrap_or(default_missing);
            if rp.criteria.is_empty() {
                v.push(
                    Some(line),
                    format!("phases.{id} has no criteria; add criteria = [\"p99 < 1ms\", ...]"),
                );
            }
            let mut criteria = Vec::new();
            for (i, c) in rp.criteria.into_iter().enumerate() {
                let cline = v.line(c.span().start);
                let place = format!("phases.{id} criterion {}", i + 1);
                if let Some(c) = criterion(c.into_inner(), &place, cline, &target, missing, &mut v)
                {
                    criteria.push(c);
                }
            }
            phases.push(Phase {
                title: rp.title.unwrap_or_else(|| format!("Phase {id}")),
                id,
                criteria,
            });
        }
        v.finish()?;
        Ok(Criteria {
            origin: origin.to_owned(),
            alpha,
            phases,
        })
    }
}

/// The shipped criteria file.
pub const BUILTIN: &str = include_str!("../../../scenarios/phases.toml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    version: Option<u32>,
    defaults: Option<RawDefaults>,
    #[serde(default)]
    phases: BTreeMap<String, Spanned<RawPhase>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    target: Option<String>,
    missing: Option<String>,
    alpha: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPhase {
    title: Option<String>,
    #[allow(dead_code)]
    description: Option<String>,
    target: Option<String>,
    missing: Option<String>,
    #[serde(default)]
    criteria: Vec<Spanned<toml::Value>>,
}

const CRITERION_KEYS: [&str; 6] = ["expr", "name", "target", "route", "missing", "note"];

fn criterion(
    value: toml::Value,
    place: &str,
    line: usize,
    phase_target: &str,
    phase_missing: Missing,
    v: &mut Issues<'_>,
) -> Option<Criterion> {
    let mut table = match value {
        toml::Value::String(s) => {
            let mut t = toml::Table::new();
            t.insert("expr".into(), toml::Value::String(s));
            t
        }
        toml::Value::Table(t) => t,
        other => {
            v.push(
                Some(line),
                format!(
                    "{place}: a criterion is a string like \"p99 < 1ms\" or a table \
                     {{ expr = \"p99 < 1ms\", name = \"...\" }}, not a {}",
                    other.type_str()
                ),
            );
            return None;
        }
    };
    let mut ok = true;
    for key in table.keys() {
        if !CRITERION_KEYS.contains(&key.as_str()) {
            v.push(
                Some(line),
                format!(
                    "{place}: unknown key `{key}`; a criterion takes {}",
                    CRITERION_KEYS.join(", ")
                ),
            );
            ok = false;
        }
    }
    let mut string = |key: &str, v: &mut Issues<'_>| -> Option<String> {
        match table.remove(key) {
            None => None,
            Some(toml::Value::String(s)) => Some(s),
            Some(other) => {
                v.push(
                    Some(line),
                    format!(
                        "{place}: `{key}` must be a string, not a {}",
                        other.type_str()
                    ),
                );
                ok = false;
                None
            }
        }
    };
    let text = string("expr", v);
    let name = string("name", v);
    let target = string("target", v);
    let route = string("route", v);
    let missing = string("missing", v);
    let note = string("note", v);
    let Some(text) = text else {
        v.push(
            Some(line),
            format!("{place}: missing `expr`, e.g. expr = \"p99 < 1ms\""),
        );
        return None;
    };
    let expr = match expr::parse(&text) {
        Ok(e) => Some(e),
        Err(errors) => {
            for e in errors {
                v.push(Some(line), format!("{place} `{text}`: {e}"));
            }
            None
        }
    };
    let missing = match missing {
        Some(m) => v.missing(&m, &format!("{place} missing"))?,
        None => phase_missing,
    };
    let expr = expr?;
    // The expression's own selectors win only if they do not contradict the table.
    let target = match (expr.selectors.get("target"), target) {
        (Some(a), Some(b)) if a != b => {
            v.push(Some(line), format!("{place}: target = \"{b}\" contradicts {{target=\"{a}\"}} in the expression; keep one"));
            return None;
        }
        (Some(a), _) => a.to_owned(),
        (None, Some(b)) => b,
        (None, None) => phase_target.to_owned(),
    };
    let route_text = match (expr.selectors.get("route"), route) {
        (Some(a), Some(b)) if a != b => {
            v.push(Some(line), format!("{place}: route = \"{b}\" contradicts {{route=\"{a}\"}} in the expression; keep one"));
            return None;
        }
        (Some(a), _) => Some(a.to_owned()),
        (None, b) => b,
    };
    let route = match route_text.as_deref().map(str::trim) {
        None => match expr.selectors.get("method") {
            Some(m) => RouteScope::Match(RoutePattern {
                method: Some(m.to_ascii_uppercase()),
                route: String::new(),
                prefix: true,
            }),
            None => RouteScope::All,
        },
        Some("*") => RouteScope::Each,
        Some(r) => match RoutePattern::parse(r) {
            Ok(mut p) => {
                if let Some(m) = expr.selectors.get("method") {
                    p.method = Some(m.to_ascii_uppercase());
                }
                RouteScope::Match(p)
            }
            Err(e) => {
                v.push(Some(line), format!("{place}: {e}"));
                return None;
            }
        },
    };
    if route != RouteScope::All
        && !matches!(
            expr.metric,
            Metric::Latency(_)
                | Metric::SseLag(_)
                | Metric::ErrorRate
                | Metric::Throughput
                | Metric::Requests
                | Metric::Errors
                | Metric::Discrepancies
        )
        && !matches!(&expr.metric, Metric::Ratio(m, _) if matches!(**m, Metric::Latency(_) | Metric::SseLag(_) | Metric::ErrorRate | Metric::Throughput))
    {
        v.push(
            Some(line),
            format!(
                "{place}: {} is measured per process, not per route; remove `route`",
                expr.metric.name()
            ),
        );
        return None;
    }
    if let Metric::Ratio(_, base) = &expr.metric
        && base == &target
    {
        v.push(Some(line), format!("{place}: ratio against `{base}` judged on `{base}` itself is always 1; set target to the other gateway"));
        return None;
    }
    if !ok {
        return None;
    }
    Some(Criterion {
        name: name.unwrap_or_else(|| text.clone()),
        text,
        expr,
        target,
        route,
        missing,
        note,
        line,
    })
}

/// Collects problems with their lines.
pub(crate) struct Issues<'a> {
    origin: &'a str,
    line_starts: Vec<usize>,
    issues: Vec<ConfigIssue>,
}

impl<'a> Issues<'a> {
    pub(crate) fn new(origin: &'a str, text: &str) -> Issues<'a> {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Issues {
            origin,
            line_starts,
            issues: Vec::new(),
        }
    }

    /// 1-based line of a byte offset.
    pub(crate) fn line(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|&s| s <= offset)
    }

    pub(crate) fn push(&mut self, line: Option<usize>, message: String) {
        self.issues.push(ConfigIssue { line, message });
    }

    pub(crate) fn missing(&mut self, m: &str, place: &str) -> Option<Missing> {
        match m {
            "fail" => Some(Missing::Fail),
            "skip" => Some(Missing::Skip),
            other => {
                self.push(
                    None,
                    format!("{place} = \"{other}\": use \"fail\" or \"skip\""),
                );
                None
            }
        }
    }

    pub(crate) fn finish(mut self) -> Result<(), ConfigErrors> {
        if self.issues.is_empty() {
            return Ok(());
        }
        self.issues.sort_by_key(|i| i.line.unwrap_or(0));
        Err(ConfigErrors {
            origin: self.origin.to_owned(),
            issues: self.issues,
        })
    }
}

/// A TOML syntax or shape error, with its line.
pub(crate) fn toml_error(e: &toml::de::Error, text: &str, origin: &str) -> ConfigErrors {
    let issues = Issues::new(origin, text);
    let line = e.span().map(|s| issues.line(s.start));
    ConfigErrors {
        origin: origin.to_owned(),
        issues: vec![ConfigIssue {
            line,
            message: e.message().trim().to_owned(),
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
version = 1
[defaults]
target = "candidate"

[phases.1]
title = "first"
criteria = [
  "error_rate < 0.1%",
  { name = "P99", expr = 'p99 < "1ms"' },
  { expr = "p99 < 2ms", route = "POST /api/order" },
  { expr = "p50 < 1ms", route = "*", missing = "skip" },
  { expr = 'p99{route="/api/*"} < 3ms' },
  { expr = "ratio(p50, primary) <= 1/7" },
]

[phases.overall]
target = "primary"
criteria = ["throughput >= 10000"]
"#;

    #[test]
    fn good_file() {
        let c = Criteria::parse(GOOD, "phases.toml").unwrap();
        assert_eq!(c.phases.len(), 2);
        let p1 = c.phase("1").unwrap();
        assert_eq!(p1.title, "first");
        assert_eq!(p1.criteria.len(), 6);
        assert_eq!(p1.criteria[0].line, 9);
        assert_eq!(p1.criteria[0].target, "candidate");
        assert_eq!(p1.criteria[0].missing, Missing::Fail);
        assert_eq!(p1.criteria[1].name, "P99");
        assert_eq!(
            p1.criteria[2].route,
            RouteScope::Match(RoutePattern {
                method: Some("POST".into()),
                route: "/api/order".into(),
                prefix: false
            })
        );
        assert_eq!(p1.criteria[3].route, RouteScope::Each);
        assert_eq!(p1.criteria[3].missing, Missing::Skip);
        match &p1.criteria[4].route {
            RouteScope::Match(p) => assert!(p.prefix && p.matches("GET", "/api/x")),
            r => panic!("{r:?}"),
        }
        assert_eq!(c.phase("overall").unwrap().criteria[0].target, "primary");
        assert!(c.phase("phase1").is_some());
        assert!(c.phase("9").is_none());
    }

    #[test]
    fn every_problem_at_once_with_lines() {
        let bad = r#"
[defaults]
missing = "maybe"

[phases.2]
criteria = [
  "p99 < 150",
  { expr = "cpu < 30%", route = "/x" },
  { name = "no expr" },
  { expr = "error_rate < 1%", colour = "red" },
  42,
  "latency < 1ms",
  { expr = "ratio(p50, candidate) < 1" },
]
[phases.3]
criteria = []
"#;
        let e = Criteria::parse(bad, "bad.toml").unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with("bad.toml: invalid criteria"), "{text}");
        for needle in [
            "defaults.missing = \"maybe\"",
            "bad.toml:7: phases.2 criterion 1 `p99 < 150`",
            "150us",
            "bad.toml:8:",
            "per process",
            "bad.toml:9: phases.2 criterion 3: missing `expr`",
            "unknown key `colour`",
            "bad.toml:11:",
            "not a integer",
            "unknown metric `latency`",
            "always 1",
            "phases.3 has no criteria",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
        assert_eq!(e.issues.len(), 9, "{text}");
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let e = Criteria::parse(
            "[phases.1]\ncriteria = [\n  \"p99 < 1ms\",\n  oops\n]\n",
            "x.toml",
        )
        .unwrap_err();
        assert_eq!(e.issues[0].line, Some(4), "{e}");
        let e = Criteria::parse("[phases.1]\ncritera = []\n", "x.toml").unwrap_err();
        assert!(e.to_string().contains("critera"), "{e}");
    }

    #[test]
    fn shipped_phases_have_the_plans_numbers() {
        let c = Criteria::parse(BUILTIN, "scenarios/phases.toml").unwrap();
        let ids: Vec<&str> = c.phases.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["1", "2", "3", "4", "5", "overall"]);
        let threshold = |phase: &str, metric: &str| -> Vec<f64> {
            c.phase(phase)
                .unwrap()
                .criteria
                .iter()
                .filter(|k| k.expr.metric.name() == metric)
                .map(|k| k.expr.threshold)
                .collect()
        };
        for p in ["1", "2", "3", "4", "5", "overall"] {
            assert_eq!(threshold(p, "error_rate"), [0.001], "phase {p}");
            assert_eq!(threshold(p, "p50"), [150_000.0], "phase {p}");
            assert_eq!(threshold(p, "p99"), [1_000_000.0], "phase {p}");
            assert_eq!(threshold(p, "p99.9"), [5_000_000.0], "phase {p}");
        }
        assert_eq!(threshold("1", "cpu"), [30.0]);
        assert_eq!(threshold("2", "cpu"), [40.0]);
        assert_eq!(threshold("3", "cpu"), [50.0]);
        assert_eq!(threshold("4", "cpu"), [50.0]);
        assert_eq!(threshold("3", "rss"), [200e6]);
        assert_eq!(threshold("3", "rss_growth_per_hour"), [50e6]);
        assert_eq!(threshold("2", "discrepancies"), [0.0, 0.0]);
        assert_eq!(threshold("overall", "throughput"), [10_000.0]);
        assert_eq!(threshold("overall", "ratio(p50, primary)"), [1.0 / 7.0]);
        assert_eq!(threshold("overall", "ratio(throughput, primary)"), [10.0]);
        assert!(
            c.phases
                .iter()
                .flat_map(|p| &p.criteria)
                .all(|k| k.target == "candidate")
        );
        assert_eq!(Criteria::builtin().phases.len(), 6);
    }

    #[test]
    fn route_patterns() {
        let p = RoutePattern::parse("get /api/order").unwrap();
        assert!(p.matches("GET", "/api/order") && !p.matches("POST", "/api/order"));
        let p = RoutePattern::parse("/api/order").unwrap();
        assert!(p.matches("POST", "/api/order") && !p.matches("POST", "/api/orders"));
        assert!(
            RoutePattern::parse("/api/order*")
                .unwrap()
                .matches("GET", "/api/orders/1")
        );
        assert!(RoutePattern::parse("G3T /x").is_err());
        assert_eq!(
            RoutePattern::parse("GET /a*").unwrap().to_string(),
            "GET /a*"
        );
    }
}
