//! The C++ gateway's Prometheus `/metrics` (veloz-api.md §5), with real counts.
//!
//! The real gateway registers `http_*` (metrics middleware) and `gateway_*` metrics, all without
//! labels; its middleware records every completed request as status 200. The simulator keeps
//! the names and the absence of labels and counts what it served. It adds the process metrics
//! `process_cpu_seconds_total` and `process_resident_memory_bytes` of the simulator process
//! (from `/proc/self/stat`), so resource sampling works against it as against a real gateway
//! exporting them. With `metrics.deployment_names` it also exports the `veloz_gateway_*` names
//! DEPLOYMENT.md's alerts use, which the real gateway does not register.
//!
//! Recording is a handful of relaxed atomic adds per request; rendering happens on scrape.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Histogram bounds in seconds (the real `http_request_duration_seconds` buckets).
const BUCKETS: [f64; 8] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0];

/// Statuses are counted in an array indexed by code.
const STATUS_SLOTS: usize = 600;

/// Request metrics shared by every connection.
#[derive(Debug)]
pub(crate) struct Metrics {
    requests: AtomicU64,
    errors: AtomicU64,
    in_flight: AtomicI64,
    buckets: [AtomicU64; BUCKETS.len()],
    sum_ns: AtomicU64,
    by_status: Box<[AtomicU64]>,
    auth_attempts: AtomicU64,
    auth_failures: AtomicU64,
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        Metrics {
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            in_flight: AtomicI64::new(0),
            buckets: Default::default(),
            sum_ns: AtomicU64::new(0),
            by_status: (0..STATUS_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            auth_attempts: AtomicU64::new(0),
            auth_failures: AtomicU64::new(0),
        }
    }

    pub(crate) fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a finished request (its head is ready to be written).
    pub(crate) fn request_finished(&self, status: u16, elapsed: Duration) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        if status >= 500 {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        let secs = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_ns
            .fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
        if let Some(c) = self.by_status.get(usize::from(status)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn auth_attempt(&self, ok: bool) {
        self.auth_attempts.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.auth_failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Prometheus text format 0.0.4.
    pub(crate) fn render(&self, sse_connections: u64, deployment_names: bool) -> String {
        let mut out = String::with_capacity(4096);
        let requests = self.requests.load(Ordering::Relaxed);
        let errors = self.errors.load(Ordering::Relaxed);
        let in_flight = self.in_flight.load(Ordering::Relaxed).max(0);
        let buckets: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;

        for prefix in ["gateway", "http"] {
            counter(
                &mut out,
                &format!("{prefix}_requests_total"),
                "Total HTTP requests",
                requests,
            );
            histogram(
                &mut out,
                &format!("{prefix}_request_duration_seconds"),
                "Request duration in seconds",
                "",
                &buckets,
                sum,
                requests,
            );
            gauge(
                &mut out,
                &format!("{prefix}_active_connections"),
                "Active HTTP connections",
                in_flight,
            );
        }
        counter(
            &mut out,
            "gateway_errors_total",
            "Total gateway errors",
            errors,
        );
        // The real middleware records every completed request as 200, with no label.
        counter(
            &mut out,
            "http_requests_by_status",
            "HTTP requests by status code",
            requests,
        );
        process_metrics(&mut out);

        if deployment_names {
            let _ = writeln!(
                out,
                "# HELP veloz_gateway_requests_total Total HTTP requests by status\n\
                 # TYPE veloz_gateway_requests_total counter"
            );
            for (code, c) in self.by_status.iter().enumerate() {
                let n = c.load(Ordering::Relaxed);
                if n > 0 {
                    let _ = writeln!(out, "veloz_gateway_requests_total{{status=\"{code}\"}} {n}");
                }
            }
            histogram(
                &mut out,
                "veloz_gateway_request_duration_seconds",
                "Request duration in seconds",
                "",
                &buckets,
                sum,
                requests,
            );
            gauge(
                &mut out,
                "veloz_gateway_sse_connections",
                "Open SSE streams",
                sse_connections as i64,
            );
            counter(
                &mut out,
                "veloz_gateway_auth_failures_total",
                "Failed authentications",
                self.auth_failures.load(Ordering::Relaxed),
            );
            counter(
                &mut out,
                "veloz_gateway_auth_attempts_total",
                "Authentication attempts",
                self.auth_attempts.load(Ordering::Relaxed),
            );
        }
        out
    }
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
    );
}

fn gauge(out: &mut String, name: &str, help: &str, value: i64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}

fn histogram(
    out: &mut String,
    name: &str,
    help: &str,
    labels: &str,
    buckets: &[u64],
    sum: f64,
    count: u64,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    let sep = if labels.is_empty() { "" } else { "," };
    let mut cumulative = 0;
    for (bound, n) in BUCKETS.iter().zip(buckets) {
        cumulative += n;
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
        );
    }
    let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "{name}_sum {sum}");
    let _ = writeln!(out, "{name}_count {count}");
}

/// CPU seconds and resident bytes of this process, when `/proc` can tell.
pub(crate) fn process_usage() -> Option<(f64, u64)> {
    let stat = procfs::process::Process::myself().ok()?.stat().ok()?;
    let ticks = procfs::ticks_per_second().max(1) as f64;
    let cpu = (stat.utime + stat.stime) as f64 / ticks;
    let rss = stat.rss.saturating_mul(procfs::page_size());
    Some((cpu, rss))
}

fn process_metrics(out: &mut String) {
    if let Some((cpu, rss)) = process_usage() {
        let _ = writeln!(
            out,
            "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n\
             # TYPE process_cpu_seconds_total counter\n\
             process_cpu_seconds_total {cpu}\n\
             # HELP process_resident_memory_bytes Resident memory size in bytes.\n\
             # TYPE process_resident_memory_bytes gauge\n\
             process_resident_memory_bytes {rss}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_counts_requests_and_has_process_metrics() {
        let m = Metrics::new();
        for (status, ms) in [(200, 0), (200, 3), (503, 700)] {
            m.request_started();
            m.request_finished(status, Duration::from_millis(ms));
        }
        m.auth_attempt(false);
        let text = m.render(2, false);
        assert!(text.contains("\nhttp_requests_total 3\n"), "{text}");
        assert!(text.contains("\ngateway_errors_total 1\n"), "{text}");
        assert!(text.contains("http_request_duration_seconds_bucket{le=\"0.001\"} 1\n"));
        assert!(text.contains("http_request_duration_seconds_bucket{le=\"0.005\"} 2\n"));
        assert!(text.contains("http_request_duration_seconds_bucket{le=\"1\"} 3\n"));
        assert!(text.contains("http_request_duration_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("\nhttp_active_connections 0\n"));
        assert!(text.contains("\nprocess_resident_memory_bytes "), "{text}");
        assert!(text.contains("\nprocess_cpu_seconds_total "), "{text}");
        assert!(!text.contains("veloz_gateway"));
        let text = m.render(2, true);
        assert!(text.contains("veloz_gateway_requests_total{status=\"503\"} 1\n"));
        assert!(text.contains("veloz_gateway_sse_connections 2\n"));
        assert!(text.contains("veloz_gateway_auth_failures_total 1\n"));
        assert!(text.contains("veloz_gateway_request_duration_seconds_count 3\n"));
    }
}
