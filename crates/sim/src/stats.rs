//! Counters of what the simulator served and injected, exposed at `GET /__sim/stats`.
//!
//! Every injected event is counted where it happens, so a test can compare what a detector
//! found with what was injected, and requests are counted per `METHOD route-template` (so a
//! test can prove that a request never reached a simulator). Counters are relaxed atomics in
//! fixed arrays indexed by route slot: no lock and no allocation on the request path.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::engine::EngineInjected;
use crate::routes::{self, ALL_ROUTES, METHOD_COUNT, METHOD_NAMES, SLOT_COUNT};

/// Fault counters, in the order of [`FAULT_NAMES`].
pub(crate) const FAULT_NAMES: [&str; 7] = [
    "reset",
    "hang",
    "slow_body",
    "garbage",
    "stall",
    "error_5xx",
    "latency",
];

/// Index of a fault counter.
#[derive(Debug, Clone, Copy)]
pub(crate) enum FaultCounter {
    Reset = 0,
    Hang = 1,
    SlowBody = 2,
    Garbage = 3,
    Stall = 4,
    Error5xx = 5,
    Latency = 6,
}

/// Live counters shared by every connection.
#[derive(Debug)]
pub struct Stats {
    requests: Box<[AtomicU64]>,
    faults: [AtomicU64; FAULT_NAMES.len()],
    latency_ns: AtomicU64,
    stall_ns: AtomicU64,
    changed_field: Box<[AtomicU64]>,
    dropped_sse: AtomicU64,
    sse_active: AtomicU64,
    sse_opened: AtomicU64,
    sse_events: AtomicU64,
    sse_refused: AtomicU64,
    seq: AtomicU64,
}

impl Stats {
    /// Counters for `changed_field_rules` divergence rules.
    pub(crate) fn new(changed_field_rules: usize) -> Stats {
        Stats {
            requests: (0..SLOT_COUNT).map(|_| AtomicU64::new(0)).collect(),
            faults: Default::default(),
            latency_ns: AtomicU64::new(0),
            stall_ns: AtomicU64::new(0),
            changed_field: (0..changed_field_rules)
                .map(|_| AtomicU64::new(0))
                .collect(),
            dropped_sse: AtomicU64::new(0),
            sse_active: AtomicU64::new(0),
            sse_opened: AtomicU64::new(0),
            sse_events: AtomicU64::new(0),
            sse_refused: AtomicU64::new(0),
            seq: AtomicU64::new(0),
        }
    }

    /// A sequence number per request that has injection rules or opens a stream (seeds its
    /// injection decisions).
    pub(crate) fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn count_request(&self, slot: usize) {
        if let Some(c) = self.requests.get(slot) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn count_fault(&self, which: FaultCounter) {
        self.faults[which as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add_latency(&self, ns: u64) {
        self.count_fault(FaultCounter::Latency);
        self.latency_ns.fetch_add(ns, Ordering::Relaxed);
    }

    pub(crate) fn add_stall(&self, ns: u64) {
        self.count_fault(FaultCounter::Stall);
        self.stall_ns.fetch_add(ns, Ordering::Relaxed);
    }

    pub(crate) fn count_changed_field(&self, rule: usize) {
        if let Some(c) = self.changed_field.get(rule) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn count_dropped_sse(&self) {
        self.dropped_sse.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn sse_opened(&self) {
        self.sse_opened.fetch_add(1, Ordering::Relaxed);
        self.sse_active.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn sse_closed(&self) {
        self.sse_active.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn sse_refused(&self) {
        self.sse_refused.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn sse_events(&self, n: u64) {
        self.sse_events.fetch_add(n, Ordering::Relaxed);
    }

    /// Streams open right now.
    pub(crate) fn sse_active(&self) -> u64 {
        self.sse_active.load(Ordering::Relaxed)
    }

    /// Requests on one slot so far.
    pub(crate) fn requests_at(&self, slot: usize) -> u64 {
        self.requests
            .get(slot)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// A consistent-enough copy of every counter (each counter is read once).
    pub(crate) fn snapshot(&self, engine: EngineInjected) -> StatsSnapshot {
        let mut requests = BTreeMap::new();
        for route in ALL_ROUTES {
            for (m, name) in METHOD_NAMES.iter().enumerate().take(METHOD_COUNT) {
                let n = self.requests_at(routes::slot(route, m));
                if n > 0 {
                    requests.insert(format!("{name} {}", route.path_template()), n);
                }
            }
        }
        let requests_total = requests.values().sum();
        let faults = FAULT_NAMES
            .iter()
            .zip(&self.faults)
            .map(|(name, c)| ((*name).to_owned(), c.load(Ordering::Relaxed)))
            .collect();
        let by_rule: Vec<u64> = self
            .changed_field
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        StatsSnapshot {
            requests,
            requests_total,
            faults,
            latency_injected_ns: self.latency_ns.load(Ordering::Relaxed),
            stall_injected_ns: self.stall_ns.load(Ordering::Relaxed),
            divergence: DivergenceStats {
                changed_field: by_rule.iter().sum(),
                changed_field_by_rule: by_rule,
                dropped_sse_events: self.dropped_sse.load(Ordering::Relaxed),
                rejected_orders: engine.rejected,
                fill_price_changed: engine.fill_price_changed,
            },
            sse: SseStats {
                active: self.sse_active.load(Ordering::Relaxed),
                opened: self.sse_opened.load(Ordering::Relaxed),
                refused: self.sse_refused.load(Ordering::Relaxed),
                events_sent: self.sse_events.load(Ordering::Relaxed),
            },
        }
    }
}

/// What `GET /__sim/stats` returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct StatsSnapshot {
    /// Requests per `METHOD route-template` (the stats endpoint itself is not counted).
    pub requests: BTreeMap<String, u64>,
    pub requests_total: u64,
    /// Injected faults per kind: `reset`, `hang`, `slow_body`, `garbage`, `stall` (requests
    /// that actually waited), `error_5xx`, `latency` (requests given a non-zero delay).
    pub faults: BTreeMap<String, u64>,
    pub latency_injected_ns: u64,
    pub stall_injected_ns: u64,
    pub divergence: DivergenceStats,
    pub sse: SseStats,
}

impl StatsSnapshot {
    /// Requests seen on `METHOD template` (0 when none).
    pub fn requests_on(&self, key: &str) -> u64 {
        self.requests.get(key).copied().unwrap_or(0)
    }

    /// Injected faults of one kind (0 when none).
    pub fn fault(&self, kind: &str) -> u64 {
        self.faults.get(kind).copied().unwrap_or(0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct DivergenceStats {
    /// Answers with a field changed by a `changed_field` rule (sum over rules).
    pub changed_field: u64,
    pub changed_field_by_rule: Vec<u64>,
    /// SSE events left out of a stream.
    pub dropped_sse_events: u64,
    /// Orders the engine rejected on purpose.
    pub rejected_orders: u64,
    /// Fills the engine executed at a moved price.
    pub fill_price_changed: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SseStats {
    pub active: u64,
    pub opened: u64,
    pub refused: u64,
    pub events_sent: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::RouteId;

    #[test]
    fn snapshot_names_requests_by_method_and_template() {
        let stats = Stats::new(2);
        stats.count_request(routes::slot(RouteId::Market, 0));
        stats.count_request(routes::slot(RouteId::Market, 0));
        stats.count_request(routes::slot(RouteId::NotFound, 1));
        stats.count_fault(FaultCounter::Reset);
        stats.add_latency(1500);
        stats.count_changed_field(1);
        stats.count_changed_field(7);
        let snap = stats.snapshot(EngineInjected {
            rejected: 3,
            fill_price_changed: 1,
        });
        assert_eq!(snap.requests_on("GET /api/market"), 2);
        assert_eq!(snap.requests_on("POST (unmatched)"), 1);
        assert_eq!(snap.requests_total, 3);
        assert_eq!(snap.fault("reset"), 1);
        assert_eq!(snap.fault("latency"), 1);
        assert_eq!(snap.fault("hang"), 0);
        assert_eq!(snap.latency_injected_ns, 1500);
        assert_eq!(snap.divergence.changed_field_by_rule, vec![0, 1]);
        assert_eq!(snap.divergence.rejected_orders, 3);
        let json = serde_json::to_value(&snap).unwrap();
        assert_eq!(json["faults"]["error_5xx"], 0);
    }
}
