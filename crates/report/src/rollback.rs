//! The rollback decision matrix (`scenarios/rollback.toml`): conditions that, held over a
//! sliding window, call for a rollback or an alert.
//!
//! ```toml
//! version = 1
//! [[rule]]
//! name = "error rate"
//! expr = "error_rate > 1%"
//! for = "5m"            # how long the condition must hold (a sliding window)
//! action = "rollback"   # or "alert"
//! ```
//!
//! Expressions use the same language as the phase criteria ([`crate::expr`]), plus
//! `ratio(<metric>, baseline)`: the metric against its own value over the first window of the
//! watch (or a baseline given on the command line).

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::criteria::{Issues, toml_error};
use crate::error::{ConfigErrors, ReportError};
use crate::expr::{self, Expr};

/// What to do when a rule fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Roll the traffic back to the primary.
    Rollback,
    /// Tell a person.
    Alert,
}

/// One validated rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Name shown when it fires.
    pub name: String,
    /// The expression as written.
    pub text: String,
    /// The condition.
    pub expr: Expr,
    /// How long it must hold; zero fires on the first evaluation.
    pub hold: Duration,
    /// What to do.
    pub action: Action,
    /// 1-based line in the file.
    pub line: usize,
}

/// A validated rollback matrix.
#[derive(Debug, Clone)]
pub struct RollbackMatrix {
    /// Where it came from.
    pub origin: String,
    /// The rules, in file order.
    pub rules: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    version: Option<u32>,
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Option<String>,
    expr: Option<String>,
    #[serde(rename = "for")]
    hold: Option<String>,
    action: Option<String>,
    #[allow(dead_code)]
    note: Option<String>,
}

impl RollbackMatrix {
    /// Reads and validates a rollback file.
    pub fn load(path: &Path) -> Result<RollbackMatrix, ReportError> {
        let text = std::fs::read_to_string(path).map_err(|source| ReportError::Read {
            path: path.to_path_buf(),
            what: "rollback file",
            source,
        })?;
        Ok(RollbackMatrix::parse(&text, &path.display().to_string())?)
    }

    /// Parses and validates; every problem is reported at once.
    pub fn parse(text: &str, origin: &str) -> Result<RollbackMatrix, ConfigErrors> {
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
        if raw.rule.is_empty() {
            v.push(
                None,
                "no [[rule]]; add e.g. [[rule]] expr = \"error_rate > 1%\" for = \"5m\" \
                 action = \"rollback\""
                    .into(),
            );
        }
        let mut rules = Vec::new();
        for (i, spanned) in raw.rule.into_iter().enumerate() {
            let line = v.line(spanned.span().start);
            let r = spanned.into_inner();
            let place = format!("rule {}", i + 1);
            let expr = match &r.expr {
                None => {
                    v.push(
                        Some(line),
                        format!("{place}: missing `expr`, e.g. expr = \"p99 > 5ms\""),
                    );
                    None
                }
                Some(text) => match expr::parse(text) {
                    Ok(e) => Some(e),
                    Err(errors) => {
                        for e in errors {
                            v.push(Some(line), format!("{place} `{text}`: {e}"));
                        }
                        None
                    }
                },
            };
            let hold = match r.hold.as_deref() {
                None => Some(Duration::ZERO),
                Some(h) => {
                    match humantime::parse_duration(h) {
                        Ok(d) => Some(d),
                        Err(e) => {
                            v.push(
                            Some(line),
                            format!("{place}: for = \"{h}\": {e}; write e.g. \"5m\", \"30m\", \"1h\""),
                        );
                            None
                        }
                    }
                }
            };
            let action = match r.action.as_deref() {
                Some("rollback") => Some(Action::Rollback),
                Some("alert") => Some(Action::Alert),
                Some(other) => {
                    v.push(
                        Some(line),
                        format!("{place}: action = \"{other}\": use \"rollback\" or \"alert\""),
                    );
                    None
                }
                None => {
                    v.push(
                        Some(line),
                        format!("{place}: missing `action` (\"rollback\" or \"alert\")"),
                    );
                    None
                }
            };
            if let (Some(expr), Some(hold), Some(action), Some(text)) = (expr, hold, action, r.expr)
            {
                rules.push(Rule {
                    name: r.name.unwrap_or_else(|| text.clone()),
                    text,
                    expr,
                    hold,
                    action,
                    line,
                });
            }
        }
        v.finish()?;
        Ok(RollbackMatrix {
            origin: origin.to_owned(),
            rules,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_matrix_is_valid_and_matches_the_plan() {
        let text = include_str!("../../../scenarios/rollback.toml");
        let m = RollbackMatrix::parse(text, "scenarios/rollback.toml").unwrap();
        let find = |needle: &str| {
            m.rules
                .iter()
                .find(|r| r.text.replace(' ', "") == needle.replace(' ', ""))
                .unwrap_or_else(|| panic!("no rule {needle}"))
        };
        let r = find("error_rate > 1%");
        assert_eq!(
            (r.hold, r.action),
            (Duration::from_secs(300), Action::Rollback)
        );
        assert_eq!(r.expr.threshold, 0.01);
        let r = find("p99 > 5ms");
        assert_eq!(
            (r.hold, r.action),
            (Duration::from_secs(300), Action::Rollback)
        );
        let r = find("p99 > 1ms");
        assert_eq!(
            (r.hold, r.action),
            (Duration::from_secs(1800), Action::Alert)
        );
        let r = find("rss_growth_per_hour > 50MB");
        assert_eq!(r.action, Action::Rollback);
        let r = find("ratio(auth_failure_rate, baseline) > 2");
        assert_eq!(r.action, Action::Rollback);
        let r = find("health_ok == 0");
        assert_eq!(r.hold, Duration::from_secs(60));
        let r = find("cpu > 80%");
        assert_eq!(r.hold, Duration::from_secs(1800));
        assert_eq!(m.rules.len(), 7);
    }

    #[test]
    fn every_problem_at_once() {
        let bad = r#"
[[rule]]
expr = "p99 > 5"
for = "soon"
action = "panic"

[[rule]]
name = "no expr"
"#;
        let e = RollbackMatrix::parse(bad, "rb.toml").unwrap_err();
        let t = e.to_string();
        assert_eq!(e.issues.len(), 5, "{t}");
        assert!(t.contains("rb.toml:2: rule 1 `p99 > 5`"), "{t}");
        assert!(t.contains("for = \"soon\""), "{t}");
        assert!(t.contains("action = \"panic\""), "{t}");
        assert!(t.contains("rb.toml:7: rule 2: missing `expr`"), "{t}");
        assert!(t.contains("missing `action`"), "{t}");
        assert!(RollbackMatrix::parse("", "e.toml").is_err());
        assert!(RollbackMatrix::parse("[[rul]]\n", "e.toml").is_err());
    }
}
