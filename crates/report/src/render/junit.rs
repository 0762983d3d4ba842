//! `junit.xml`: one test suite for the phase, one test case per criterion result, so CI
//! systems (GitLab, Jenkins, GitHub test reporters) show the gate like a test run.
//!
//! - pass → a passing test case;
//! - fail → `<failure type="threshold" message="measured 1.2 ms, threshold p99 < 1 ms">`;
//! - no data / generator-limited → `<error type="no-data|generator-limited">` (could not be
//!   judged, which is not the same as the gateway failing);
//! - skipped → `<skipped>`.
//!
//! The test case's `classname` is `shadowgate.phase<id>.<target>`.

use std::io::Write;

use std::time::Duration;

use quick_junit::{NonSuccessKind, Property, TestCase, TestCaseStatus, TestSuite, XmlString};

use crate::error::ReportError;
use crate::model::{Report, Status};

/// Writes the JUnit XML report.
pub fn render(r: &Report, w: &mut dyn Write) -> Result<(), ReportError> {
    let mut report = quick_junit::Report::new("shadowgate");
    let mut suite = TestSuite::new(format!("phase {}: {}", r.phase.id, r.phase.title));
    suite.add_property(Property::new("criteria", r.criteria_file.as_str()));
    suite.add_property(Property::new(
        "schema_version",
        r.schema_version.to_string(),
    ));
    for s in &r.sources {
        suite.add_property(Property::new("run", s.dir.display().to_string()));
    }
    // The Ant JUnit schema requires timestamp, hostname and time on a suite: the run's start
    // (without a zone, as that schema's ISO8601_DATETIME_PATTERN wants), its host and length.
    if let Some(first) = r.sources.iter().min_by_key(|s| s.started_at) {
        let ts = humantime::format_rfc3339_seconds(first.started_at).to_string();
        suite.extra.insert(
            XmlString::new("timestamp"),
            XmlString::new(ts.trim_end_matches('Z')),
        );
        suite.extra.insert(
            XmlString::new("hostname"),
            XmlString::new(first.host.as_str()),
        );
        let end = r.sources.iter().filter_map(|s| s.ended_at).max();
        let length = end
            .and_then(|e| e.duration_since(first.started_at).ok())
            .unwrap_or_default();
        suite.set_time(length);
    }
    for c in &r.criteria {
        let measured = c
            .measured
            .as_ref()
            .map_or_else(|| "no data".to_owned(), |m| m.display.clone());
        let summary = format!(
            "measured {measured}, threshold {} {} {}",
            c.metric, c.op, c.threshold.display
        );
        let with_detail = match &c.detail {
            Some(d) => format!("{summary} ({d})"),
            None => summary.clone(),
        };
        let status = match c.status {
            Status::Pass => TestCaseStatus::success(),
            Status::Fail => {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                s.set_type("threshold").set_message(with_detail.clone());
                s.set_description(format!("{}\nexpression: {}", with_detail, c.expr));
                s
            }
            Status::NoData | Status::GeneratorLimited => {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
                let ty = if c.status == Status::NoData {
                    "no-data"
                } else {
                    "generator-limited"
                };
                s.set_type(ty).set_message(with_detail.clone());
                s
            }
            Status::Skipped => {
                let mut s = TestCaseStatus::skipped();
                s.set_message(with_detail.clone());
                s
            }
        };
        let mut case = TestCase::new(c.name.as_str(), status);
        case.set_classname(format!("shadowgate.phase{}.{}", r.phase.id, c.target));
        case.set_time(Duration::ZERO);
        case.set_system_out(with_detail);
        suite.add_test_case(case);
    }
    report.add_test_suite(suite);
    report.serialize(w).map_err(|e| ReportError::Render {
        format: "junit",
        reason: e.to_string(),
    })
}
