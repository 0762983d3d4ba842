//! `check-alerts`: every metric an alerting rule uses must exist on the gateway, or the alert
//! can never fire. (The plan's rules use `veloz_gateway_*`; the real C++ gateway registers
//! `gateway_*`/`http_*`.)
//!
//! The rules file is Prometheus's (`groups: - name: ... rules: - alert: ... expr: ...`). It
//! is read line by line for `alert:`/`record:` and `expr:` (plain, quoted, or `|`/`>` block
//! scalars, the forms rule files use) rather than with a YAML library; `promtool check rules`
//! validates the rest of the file. Recording rules' outputs count as available metrics, and
//! series Prometheus makes itself (`up`, `scrape_*`, `ALERTS`) are never missing.

use std::collections::BTreeSet;

use crate::criteria::Issues;
use crate::error::ConfigErrors;
use crate::prom::{self, Scrape};

/// One rule of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertRule {
    /// `alert:` name, or `record:` name for recording rules.
    pub name: String,
    /// A recording rule (its name becomes a metric).
    pub recording: bool,
    /// The PromQL expression.
    pub expr: String,
    /// 1-based line of `alert:`/`record:`.
    pub line: usize,
    /// Metric names the expression selects.
    pub metrics: BTreeSet<String>,
}

/// The check of one alerting rule against a scrape.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AlertCheck {
    /// Alert name.
    pub alert: String,
    /// Line in the rules file.
    pub line: usize,
    /// Metrics it uses.
    pub uses: Vec<String>,
    /// Those not on the gateway.
    pub missing: Vec<String>,
}

/// Reads the rules of a Prometheus rules file.
pub fn parse_rules(text: &str, origin: &str) -> Result<Vec<AlertRule>, ConfigErrors> {
    let mut v = Issues::new(origin, text);
    let lines: Vec<&str> = text.lines().collect();
    let mut rules: Vec<AlertRule> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let raw = lines[i];
        let content = raw.trim_start().trim_start_matches("- ").trim_start();
        let indent = raw.len() - raw.trim_start().len();
        if let Some((key, value)) = content.split_once(':')
            && matches!(key.trim(), "alert" | "record" | "expr")
        {
            let key = key.trim();
            let mut value = value.trim().to_owned();
            // Block scalar or plain scalar continued on more-indented lines.
            let block = value.starts_with('|') || value.starts_with('>');
            if block || key == "expr" {
                let mut parts: Vec<String> = if block {
                    Vec::new()
                } else {
                    vec![value.clone()]
                };
                let key_indent = raw.find(key).unwrap_or(indent);
                while i + 1 < lines.len() {
                    let next = lines[i + 1];
                    let next_indent = next.len() - next.trim_start().len();
                    if !next.trim().is_empty() && next_indent <= key_indent {
                        break;
                    }
                    parts.push(next.trim().to_owned());
                    i += 1;
                }
                value = parts.join(" ").trim().to_owned();
            }
            let value = unquote(&value);
            match key {
                "alert" | "record" => rules.push(AlertRule {
                    name: value,
                    recording: key == "record",
                    expr: String::new(),
                    line: i + 1,
                    metrics: BTreeSet::new(),
                }),
                _ => match rules.last_mut() {
                    Some(r) if r.expr.is_empty() => {
                        r.metrics = prom::metric_names(&value);
                        r.expr = value;
                    }
                    _ => v.push(
                        Some(i + 1),
                        "`expr:` outside a rule (expected after `- alert:` or `- record:`)".into(),
                    ),
                },
            }
        }
        i += 1;
    }
    for r in &rules {
        if r.name.is_empty() {
            v.push(Some(r.line), "rule without a name".into());
        }
        if r.expr.is_empty() {
            v.push(Some(r.line), format!("rule `{}` has no `expr:`", r.name));
        } else if r.metrics.is_empty() {
            v.push(
                Some(r.line),
                format!("rule `{}`: its expression selects no metric", r.name),
            );
        }
    }
    if rules.is_empty() {
        v.push(
            None,
            "no `- alert:` rules; a Prometheus rules file has groups: - name: ... rules: - alert: \
             NAME expr: ..."
                .into(),
        );
    }
    v.finish()?;
    Ok(rules)
}

fn unquote(v: &str) -> String {
    for q in ['"', '\''] {
        if let Some(inner) = v.strip_prefix(q).and_then(|s| s.strip_suffix(q)) {
            return inner.to_owned();
        }
    }
    v.to_owned()
}

/// Checks every alerting rule's metrics against a scrape.
pub fn check(rules: &[AlertRule], scrape: &Scrape) -> Vec<AlertCheck> {
    let mut available = scrape.names();
    available.extend(rules.iter().filter(|r| r.recording).map(|r| r.name.clone()));
    rules
        .iter()
        .filter(|r| !r.recording)
        .map(|r| AlertCheck {
            alert: r.name.clone(),
            line: r.line,
            uses: r.metrics.iter().cloned().collect(),
            missing: r
                .metrics
                .iter()
                .filter(|m| !available.contains(*m) && !prom::is_synthetic(m))
                .cloned()
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: &str = r#"groups:
  - name: gw
    rules:
      - record: job:errors:rate5m
        expr: sum(rate(http_requests_total{status=~"5.."}[5m]))
      - alert: HighErrors
        expr: job:errors:rate5m / sum(rate(http_requests_total[5m])) > 0.01
        for: 5m
      - alert: "SlowP99"
        expr: |
          histogram_quantile(0.99,
            sum by (le) (rate(veloz_gateway_request_duration_seconds_bucket[5m])))
          > 0.005
        labels:
          severity: critical
      - alert: Down
        expr: 'up{job="gw"} == 0'
"#;

    #[test]
    fn reads_rules_in_every_scalar_form() {
        let rules = parse_rules(RULES, "alerts.yml").unwrap();
        assert_eq!(rules.len(), 4);
        assert!(rules[0].recording);
        assert_eq!(rules[1].name, "HighErrors");
        assert_eq!(rules[1].line, 6);
        assert_eq!(rules[2].name, "SlowP99");
        assert!(rules[2].expr.contains("> 0.005"), "{}", rules[2].expr);
        assert_eq!(
            rules[2].metrics.iter().collect::<Vec<_>>(),
            ["veloz_gateway_request_duration_seconds_bucket"]
        );
        assert_eq!(rules[3].expr, "up{job=\"gw\"} == 0");
    }

    #[test]
    fn lists_missing_metrics_per_alert() {
        let rules = parse_rules(RULES, "alerts.yml").unwrap();
        let scrape = prom::parse("http_requests_total 5\n").unwrap();
        let checks = check(&rules, &scrape);
        assert_eq!(checks.len(), 3);
        assert!(checks[0].missing.is_empty(), "{checks:?}");
        assert_eq!(
            checks[1].missing,
            ["veloz_gateway_request_duration_seconds_bucket"]
        );
        assert!(checks[2].missing.is_empty(), "up is Prometheus's own");
    }

    #[test]
    fn bad_files() {
        let e = parse_rules("groups: []\n", "a.yml").unwrap_err();
        assert!(e.to_string().contains("no `- alert:`"), "{e}");
        let e = parse_rules(
            "- alert: X\n  for: 5m\n- alert: Y\n  expr: 1 > 0\n",
            "a.yml",
        )
        .unwrap_err();
        let t = e.to_string();
        assert!(t.contains("a.yml:1: rule `X` has no `expr:`"), "{t}");
        assert!(
            t.contains("a.yml:3: rule `Y`: its expression selects no metric"),
            "{t}"
        );
    }

    #[test]
    fn shipped_rules_use_the_plans_names() {
        let text = include_str!("../../../scenarios/prometheus/alerts.yml");
        let rules = parse_rules(text, "alerts.yml").unwrap();
        let used: BTreeSet<String> = rules.iter().flat_map(|r| r.metrics.clone()).collect();
        for name in [
            "veloz_gateway_requests_total",
            "veloz_gateway_request_duration_seconds_bucket",
            "veloz_gateway_auth_failures_total",
            "veloz_gateway_auth_attempts_total",
            "veloz_gateway_sse_connections",
            "process_resident_memory_bytes",
            "process_cpu_seconds_total",
        ] {
            assert!(used.contains(name), "{name} unused");
        }
        // The C++ gateway's registered names (veloz-api.md §5) satisfy none of the
        // veloz_gateway_* alerts.
        let cpp = prom::parse(
            "gateway_requests_total 1\nhttp_requests_total 1\n\
             http_request_duration_seconds_bucket{le=\"0.001\"} 1\n\
             process_resident_memory_bytes 1\nprocess_cpu_seconds_total 1\n",
        )
        .unwrap();
        let checks = check(&rules, &cpp);
        assert!(checks.iter().filter(|c| !c.missing.is_empty()).count() >= 4);
    }
}
