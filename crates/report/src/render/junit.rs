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
//!
//! A second suite, `discrepancies`, has one test case per order-flow, event-stream and
//! audit-log *regression group* (classname `shadowgate.flow`, `shadowgate.stream`,
//! `shadowgate.audit`; a failure of type = the kind, with the count, the steps or path and
//! example order ids), so CI shows each group like a failing test; a section that was
//! compared and has no regression group gets one passing case.

use std::io::Write;

use std::time::Duration;

use quick_junit::{NonSuccessKind, Property, TestCase, TestCaseStatus, TestSuite, XmlString};

use crate::error::ReportError;
use crate::model::{Report, SectionKind, Status};
use crate::render::{group_place, orders_text, shown_sections};

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
    let discrepancies = discrepancy_suite(r).map(|mut s| {
        // The same run facts the schema requires on every suite.
        s.extra = suite.extra.clone();
        s.time = suite.time;
        s
    });
    report.add_test_suite(suite);
    if let Some(s) = discrepancies {
        report.add_test_suite(s);
    }
    report.serialize(w).map_err(|e| ReportError::Render {
        format: "junit",
        reason: e.to_string(),
    })
}

/// The `discrepancies` suite (see the module docs), or `None` when no flow, stream or audit
/// comparison is in the report.
fn discrepancy_suite(r: &Report) -> Option<TestSuite> {
    let d = &r.discrepancies;
    let sections: Vec<SectionKind> = shown_sections(d)
        .into_iter()
        .map(|(s, _)| s)
        .filter(|s| *s != SectionKind::Exchange)
        .collect();
    if sections.is_empty() {
        return None;
    }
    let mut suite = TestSuite::new("discrepancies: order flows, event streams, audit log");
    for section in sections {
        let classname = format!("shadowgate.{}", section.name());
        let mut any = false;
        for g in d
            .groups_in(section)
            .filter(|g| g.class == shadowgate_record::Class::Regression)
        {
            any = true;
            let place = group_place(g);
            let mut message = format!(
                "{} {} line{} on {} {} at {}",
                g.count,
                g.kind,
                if g.count == 1 { "" } else { "s" },
                g.method,
                g.route,
                if place.is_empty() { "-" } else { &place }
            );
            let orders = orders_text(g);
            if !orders.is_empty() {
                message.push_str(&format!("; e.g. orders (primary ↔ candidate) {orders}"));
            }
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
            status
                .set_type(g.kind.as_str())
                .set_message(message.clone());
            let samples: Vec<String> = g
                .samples
                .iter()
                .map(|s| {
                    format!(
                        "{} {}: primary {} candidate {}{}",
                        s.ts,
                        s.flow_id.as_deref().unwrap_or("-"),
                        s.primary,
                        s.candidate,
                        s.detail
                            .as_deref()
                            .map(|d| format!(" ({d})"))
                            .unwrap_or_default()
                    )
                })
                .collect();
            status.set_description(samples.join("\n"));
            let name = format!("{} {} {} {}", g.kind, g.method, g.route, place);
            let mut case = TestCase::new(name.trim_end(), status);
            case.set_classname(classname.as_str());
            case.set_time(Duration::ZERO);
            suite.add_test_case(case);
        }
        if !any {
            let mut case = TestCase::new(
                format!("{}: no regressions", section.title().to_lowercase()),
                TestCaseStatus::success(),
            );
            case.set_classname(classname.as_str());
            case.set_time(Duration::ZERO);
            suite.add_test_case(case);
        }
    }
    Some(suite)
}
