//! Report sections: which discrepancy line belongs to exchanges, order flows, event streams or
//! the audit log, and the producers' own counters for each (from the manifests).
//!
//! The line's `kind` decides where it can: `sse-*` lines are streams, the flow kinds and
//! `timeout` (only the flow tracker writes it) are flows, `audit-*` lines are the audit log.
//! `not-compared` is shared by every producer, so its place comes from what wrote it: a line
//! on a compared stream route (or a "candidate stream gap" note) is a stream gap, a follow-up
//! whose order id could not be mapped ("… not sent to the candidate") is a flow, and an
//! `AUDIT` line (route `audit:*`) is the audit log. Everything else is an exchange.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use shadowgate_record::hdrhistogram::Histogram;
use shadowgate_record::{Discrepancy, DiscrepancyKind as K, Measure};

use crate::measure::Measurements;
use crate::model::{AuditFacts, FlowFacts, IdCorrelation, OrderPair, SectionKind, StreamRoute};

/// The section a line belongs to; `stream_routes` are the compared stream route templates.
pub fn classify(d: &Discrepancy, stream_routes: &BTreeSet<String>) -> SectionKind {
    match d.kind {
        K::SseMissing | K::SseExtra | K::SseDifferent | K::SseLate => SectionKind::Stream,
        K::MissingOnCandidate
        | K::ExtraOnCandidate
        | K::StateMismatch
        | K::FillMismatch
        | K::SequenceMismatch
        | K::Timeout => SectionKind::Flow,
        K::AuditMissing | K::AuditExtra | K::AuditMismatch => SectionKind::Audit,
        K::NotCompared => {
            let detail = d.detail.as_deref().unwrap_or("");
            if d.method == "AUDIT" || d.route.starts_with("audit:") {
                SectionKind::Audit
            } else if detail.starts_with("candidate stream gap") || stream_routes.contains(&d.route)
            {
                SectionKind::Stream
            } else if d.flow_id.is_some() && detail.contains("not sent to the candidate") {
                SectionKind::Flow
            } else {
                SectionKind::Exchange
            }
        }
        _ => SectionKind::Exchange,
    }
}

/// The order ids a flow line names: `detail` says "order P on the primary, C on the
/// candidate; …"; unmapped follow-ups name only the primary's (their `flow_id`).
pub fn order_pair(d: &Discrepancy) -> Option<OrderPair> {
    let parsed = d.detail.as_deref().and_then(|t| {
        let rest = t.strip_prefix("order ")?;
        let (p, rest) = rest.split_once(" on the primary, ")?;
        let (c, _) = rest.split_once(" on the candidate")?;
        Some(OrderPair {
            primary: p.to_owned(),
            candidate: Some(c.to_owned()),
        })
    });
    parsed.or_else(|| {
        d.flow_id.as_ref().map(|p| OrderPair {
            primary: p.clone(),
            candidate: None,
        })
    })
}

/// The differing steps of a flow line: the keys of its `primary`/`candidate` objects, in the
/// primary's order, then any only the candidate has.
pub fn steps(d: &Discrepancy) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for v in [&d.primary, &d.candidate] {
        if let Value::Object(m) = v {
            for k in m.keys() {
                if !out.contains(k) {
                    out.push(k.clone());
                }
            }
        }
    }
    out
}

fn u(v: &Value, path: &[&str]) -> u64 {
    let mut cur = v;
    for p in path {
        match cur.get(p) {
            Some(x) => cur = x,
            None => return 0,
        }
    }
    cur.as_u64().unwrap_or(0)
}

/// The flow tracker's counters summed over the sources that tracked flows.
pub fn flow_facts(m: &Measurements) -> Option<FlowFacts> {
    let mut out: Option<FlowFacts> = None;
    for f in m.sources.iter().filter_map(|s| s.flows.as_ref()) {
        let o = out.get_or_insert_with(FlowFacts::default);
        o.tracked += u(f, &["tracked"]);
        o.compared += u(f, &["compared"]);
        o.matched += u(f, &["matched"]);
        o.differing += u(f, &["differing"]);
        o.untracked += u(f, &["untracked"]);
        o.submit_failed += u(f, &["submit_failed"]);
        o.open += u(f, &["open"]);
        o.noise += u(f, &["noise"]);
        o.follow_up_lost += u(f, &["follow_up_lost"]);
        o.cancel_fill_races += u(f, &["cancel_fill_races"]);
        o.completed_by_poll += u(f, &["completed_by_poll"]);
        o.poll_unauthorized += u(f, &["poll_unauthorized"]);
        o.poll_unauthorized_flows += u(f, &["poll_unauthorized_flows"]);
        if let Some(Value::Object(k)) = f.get("by_kind") {
            for (kind, n) in k {
                *o.by_kind.entry(kind.clone()).or_default() += n.as_u64().unwrap_or(0);
            }
        }
    }
    out
}

/// The id map's counters summed over the sources that correlated ids.
pub fn id_correlation(m: &Measurements) -> Option<IdCorrelation> {
    let mut out: Option<IdCorrelation> = None;
    for ids in m
        .sources
        .iter()
        .filter_map(|s| s.flows.as_ref()?.get("ids"))
    {
        let o = out.get_or_insert_with(IdCorrelation::default);
        o.mapped += u(ids, &["learned"]);
        o.rewritten += u(ids, &["rewritten"]);
        o.unmapped += u(ids, &["unmapped"]);
        o.timed_out += u(ids, &["timed_out"]);
        o.expired += u(ids, &["expired"]);
        o.evicted += u(ids, &["evicted"]);
    }
    out
}

/// Per stream route: the mirror's counters summed over sources, and the candidate's event
/// lag from its `;lag` series (also for a route whose manifest did not list it).
pub fn stream_routes(m: &Measurements) -> Vec<StreamRoute> {
    let mut by_route: BTreeMap<String, StreamRoute> = BTreeMap::new();
    for s in m.sources.iter().flat_map(|s| &s.streams) {
        let Some(route) = s.get("route").and_then(Value::as_str) else {
            continue;
        };
        let o = by_route
            .entry(route.to_owned())
            .or_insert_with(|| StreamRoute {
                route: route.to_owned(),
                ..StreamRoute::default()
            });
        o.clients += u(s, &["clients_total"]);
        o.candidate_subscriptions += u(s, &["candidate_subscriptions"]);
        o.primary_events += u(s, &["counts", "primary_events"]);
        o.candidate_events += u(s, &["counts", "candidate_events"]);
        o.matched += u(s, &["counts", "matched"]);
        o.missing += u(s, &["counts", "missing"]);
        o.extra += u(s, &["counts", "extra"]);
        o.different += u(s, &["counts", "different"]);
        o.late += u(s, &["counts", "late"]);
        o.gaps += u(s, &["gaps"]);
        o.gap_ms += u(s, &["gap_ms"]);
        o.events_in_gaps += u(s, &["events_in_gaps"]);
        o.reconnects += u(s, &["reconnects"]);
    }
    let cand = m.resolve("candidate");
    let lag = Measure::Other("lag".into());
    let mut lags: BTreeMap<String, Histogram<u64>> = BTreeMap::new();
    for (key, data) in &m.run.latency {
        if key.target != cand || key.measure != lag || data.total.is_empty() {
            continue;
        }
        match lags.get_mut(&key.route) {
            None => {
                lags.insert(key.route.clone(), data.total.clone());
            }
            Some(h) => {
                if h.add(&data.total).is_err() {
                    tracing::warn!(series = %key.tag(), "Could not add a lag series.");
                }
            }
        }
    }
    for (route, h) in lags {
        by_route
            .entry(route.clone())
            .or_insert_with(|| StreamRoute {
                route,
                ..StreamRoute::default()
            })
            .lag = crate::eval::latency_of(&h);
    }
    by_route.into_values().collect()
}

/// Audit-diff counters summed over the audit runs.
pub fn audit_facts(m: &Measurements) -> Option<AuditFacts> {
    let mut out: Option<AuditFacts> = None;
    for a in m.sources.iter().filter_map(|s| s.audit.as_ref()) {
        let o = out.get_or_insert(AuditFacts {
            consistent: true,
            ..AuditFacts::default()
        });
        o.runs += 1;
        o.consistent &= a.get("consistent").and_then(Value::as_bool) == Some(true);
        o.primary_entries += u(a, &["primary", "entries"]);
        o.candidate_entries += u(a, &["candidate", "entries"]);
        if let Some(Value::Object(actions)) = a.get("actions") {
            for c in actions.values() {
                o.matched += u(c, &["matched"]);
                o.missing += u(c, &["missing"]);
                o.extra += u(c, &["extra"]);
                o.mismatched += u(c, &["mismatched"]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use shadowgate_record::Class;
    use std::time::SystemTime;

    fn line(kind: K, method: &str, route: &str, detail: Option<&str>) -> Discrepancy {
        Discrepancy {
            ts: SystemTime::UNIX_EPOCH,
            method: method.into(),
            route: route.into(),
            flow_id: Some("web-1".into()),
            kind,
            path: String::new(),
            primary: Value::Null,
            candidate: Value::Null,
            signature: String::new(),
            class: Class::Regression,
            label: None,
            detail: detail.map(str::to_owned),
        }
    }

    #[test]
    fn not_compared_lines_go_where_their_producer_is() {
        let streams: BTreeSet<String> = ["/api/stream".to_owned()].into();
        let c = |d: &Discrepancy| classify(d, &streams);
        assert_eq!(
            c(&line(K::NotCompared, "GET", "/api/stream", None)),
            SectionKind::Stream
        );
        assert_eq!(
            c(&line(
                K::NotCompared,
                "GET",
                "/other",
                Some("candidate stream gap of 5 ms")
            )),
            SectionKind::Stream
        );
        assert_eq!(
            c(&line(
                K::NotCompared,
                "DELETE",
                "/api/orders/{id}",
                Some("order id web-1: not sent to the candidate, …")
            )),
            SectionKind::Flow
        );
        assert_eq!(
            c(&line(K::NotCompared, "AUDIT", "audit:unreadable", None)),
            SectionKind::Audit
        );
        assert_eq!(
            c(&line(
                K::NotCompared,
                "GET",
                "/api/market",
                Some("over the limit")
            )),
            SectionKind::Exchange
        );
        assert_eq!(
            c(&line(K::Timeout, "POST", "/api/cancel", None)),
            SectionKind::Flow
        );
        assert_eq!(c(&line(K::SseLate, "GET", "/x", None)), SectionKind::Stream);
        assert_eq!(
            c(&line(K::Value, "GET", "/api/stream", None)),
            SectionKind::Exchange
        );
    }

    #[test]
    fn order_ids_and_steps_from_a_flow_line() {
        let mut d = line(
            K::StateMismatch,
            "POST",
            "/api/order",
            Some("order web-1 on the primary, veloz_9 on the candidate; differing steps: ack"),
        );
        d.primary = serde_json::json!({"ack": "ACCEPTED", "final/status": "FILLED"});
        d.candidate = serde_json::json!({"ack": "REJECTED", "fills/0/qty": 1});
        assert_eq!(
            order_pair(&d),
            Some(OrderPair {
                primary: "web-1".into(),
                candidate: Some("veloz_9".into())
            })
        );
        assert_eq!(steps(&d), ["ack", "final/status", "fills/0/qty"]);
        d.detail = Some("order id web-1: not sent to the candidate".into());
        assert_eq!(order_pair(&d).and_then(|p| p.candidate), None);
    }
}
