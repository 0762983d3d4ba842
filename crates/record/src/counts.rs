//! `counts.csv`: request outcomes per interval and per target/route.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::series::RouteKey;
use crate::timefmt;

/// How one request ended, i.e. which column of [`Counts`] it adds to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A 1xx status.
    Status1xx,
    /// A 2xx status.
    Status2xx,
    /// A 3xx status.
    Status3xx,
    /// A 4xx status.
    Status4xx,
    /// A 5xx status.
    Status5xx,
    /// The connection could not be established (refused, reset before the response, DNS).
    ConnectError,
    /// No complete response within the deadline.
    Timeout,
    /// Any other failure (protocol error, a status outside 100..=599, body read error, ...).
    OtherError,
    /// A shadow request the mirror did not send because its budget (queue, concurrency, body
    /// size) was exhausted. Counted apart: it is *not* a request.
    ShadowDrop,
}

impl Outcome {
    /// The column a status code belongs to; codes outside 100..=599 are `OtherError`.
    pub fn from_status(code: u16) -> Outcome {
        match code {
            100..=199 => Outcome::Status1xx,
            200..=299 => Outcome::Status2xx,
            300..=399 => Outcome::Status3xx,
            400..=499 => Outcome::Status4xx,
            500..=599 => Outcome::Status5xx,
            _ => Outcome::OtherError,
        }
    }
}

/// Outcome counters for one target/route over some time.
///
/// Every request that was attempted adds 1 to `requests` and 1 to exactly one status or error
/// column, so `requests == status_* + connect_errors + timeouts + other_errors`. Shadow drops
/// were never attempted and are counted only in `shadow_drops`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Requests attempted.
    pub requests: u64,
    /// 1xx responses.
    pub status_1xx: u64,
    /// 2xx responses.
    pub status_2xx: u64,
    /// 3xx responses.
    pub status_3xx: u64,
    /// 4xx responses.
    pub status_4xx: u64,
    /// 5xx responses.
    pub status_5xx: u64,
    /// Connection failures.
    pub connect_errors: u64,
    /// Timeouts.
    pub timeouts: u64,
    /// Other failures.
    pub other_errors: u64,
    /// Shadow requests dropped over budget (not included in `requests`).
    pub shadow_drops: u64,
}

impl Counts {
    /// Counts one outcome.
    pub fn record(&mut self, outcome: Outcome) {
        self.record_n(outcome, 1);
    }

    /// Counts `n` requests with the same outcome.
    pub fn record_n(&mut self, outcome: Outcome, n: u64) {
        let column = match outcome {
            Outcome::ShadowDrop => {
                self.shadow_drops = self.shadow_drops.saturating_add(n);
                return;
            }
            Outcome::Status1xx => &mut self.status_1xx,
            Outcome::Status2xx => &mut self.status_2xx,
            Outcome::Status3xx => &mut self.status_3xx,
            Outcome::Status4xx => &mut self.status_4xx,
            Outcome::Status5xx => &mut self.status_5xx,
            Outcome::ConnectError => &mut self.connect_errors,
            Outcome::Timeout => &mut self.timeouts,
            Outcome::OtherError => &mut self.other_errors,
        };
        *column = column.saturating_add(n);
        self.requests = self.requests.saturating_add(n);
    }

    /// Counts one response with this status code.
    pub fn record_status(&mut self, code: u16) {
        self.record(Outcome::from_status(code));
    }

    /// Adds `other` column by column.
    pub fn add(&mut self, other: &Counts) {
        let Counts {
            requests,
            status_1xx,
            status_2xx,
            status_3xx,
            status_4xx,
            status_5xx,
            connect_errors,
            timeouts,
            other_errors,
            shadow_drops,
        } = *other;
        self.requests = self.requests.saturating_add(requests);
        self.status_1xx = self.status_1xx.saturating_add(status_1xx);
        self.status_2xx = self.status_2xx.saturating_add(status_2xx);
        self.status_3xx = self.status_3xx.saturating_add(status_3xx);
        self.status_4xx = self.status_4xx.saturating_add(status_4xx);
        self.status_5xx = self.status_5xx.saturating_add(status_5xx);
        self.connect_errors = self.connect_errors.saturating_add(connect_errors);
        self.timeouts = self.timeouts.saturating_add(timeouts);
        self.other_errors = self.other_errors.saturating_add(other_errors);
        self.shadow_drops = self.shadow_drops.saturating_add(shadow_drops);
    }

    /// Failed requests: connect errors, timeouts and other errors (not 4xx/5xx, which are
    /// answers; a criterion decides whether those count as errors).
    pub fn transport_errors(&self) -> u64 {
        self.connect_errors
            .saturating_add(self.timeouts)
            .saturating_add(self.other_errors)
    }

    /// True when every column is zero.
    pub fn is_zero(&self) -> bool {
        *self == Counts::default()
    }
}

/// Column names of `counts.csv`, in order.
pub const COUNTS_COLUMNS: [&str; 15] = [
    "interval_start_s",
    "interval_s",
    "target",
    "method",
    "route",
    "requests",
    "status_1xx",
    "status_2xx",
    "status_3xx",
    "status_4xx",
    "status_5xx",
    "connect_errors",
    "timeouts",
    "other_errors",
    "shadow_drops",
];

/// One row of `counts.csv`: one target/route over one interval.
///
/// Flat on purpose (the csv crate cannot (de)serialize nested structs); use [`CountsRow::counts`]
/// and [`CountsRow::new`] to move between this and [`Counts`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CountsRow {
    /// Interval start, seconds since the manifest's `started_at` (millisecond precision).
    pub interval_start_s: f64,
    /// Interval length in seconds (millisecond precision).
    pub interval_s: f64,
    /// Target name.
    pub target: String,
    /// HTTP method.
    pub method: String,
    /// Route template.
    pub route: String,
    /// See [`Counts::requests`].
    pub requests: u64,
    /// See [`Counts`].
    pub status_1xx: u64,
    /// See [`Counts`].
    pub status_2xx: u64,
    /// See [`Counts`].
    pub status_3xx: u64,
    /// See [`Counts`].
    pub status_4xx: u64,
    /// See [`Counts`].
    pub status_5xx: u64,
    /// See [`Counts`].
    pub connect_errors: u64,
    /// See [`Counts`].
    pub timeouts: u64,
    /// See [`Counts`].
    pub other_errors: u64,
    /// See [`Counts`].
    pub shadow_drops: u64,
}

impl CountsRow {
    /// A row for `route` over the interval `[start, start + length)` (offsets from the run
    /// start, kept to whole milliseconds).
    pub fn new(start: Duration, length: Duration, route: &RouteKey, c: &Counts) -> CountsRow {
        CountsRow {
            interval_start_s: timefmt::millis_to_secs_f64(timefmt::millis_u64(start)),
            interval_s: timefmt::millis_to_secs_f64(timefmt::millis_u64(length)),
            target: route.target.clone(),
            method: route.method.clone(),
            route: route.route.clone(),
            requests: c.requests,
            status_1xx: c.status_1xx,
            status_2xx: c.status_2xx,
            status_3xx: c.status_3xx,
            status_4xx: c.status_4xx,
            status_5xx: c.status_5xx,
            connect_errors: c.connect_errors,
            timeouts: c.timeouts,
            other_errors: c.other_errors,
            shadow_drops: c.shadow_drops,
        }
    }

    /// The counters of this row.
    pub fn counts(&self) -> Counts {
        Counts {
            requests: self.requests,
            status_1xx: self.status_1xx,
            status_2xx: self.status_2xx,
            status_3xx: self.status_3xx,
            status_4xx: self.status_4xx,
            status_5xx: self.status_5xx,
            connect_errors: self.connect_errors,
            timeouts: self.timeouts,
            other_errors: self.other_errors,
            shadow_drops: self.shadow_drops,
        }
    }

    /// Target, method and route of this row.
    pub fn route_key(&self) -> RouteKey {
        RouteKey {
            target: self.target.clone(),
            method: self.method.clone(),
            route: self.route.clone(),
        }
    }

    /// Interval start as an offset from the run start (whole milliseconds).
    pub fn start(&self) -> Duration {
        Duration::from_millis(timefmt::secs_f64_to_millis(self.interval_start_s).unwrap_or(0))
    }

    /// Interval length (whole milliseconds).
    pub fn length(&self) -> Duration {
        Duration::from_millis(timefmt::secs_f64_to_millis(self.interval_s).unwrap_or(0))
    }

    /// Problems a reader should report as corruption (negative or non-finite times).
    pub(crate) fn check(&self) -> Result<(), String> {
        if timefmt::secs_f64_to_millis(self.interval_start_s).is_none() {
            return Err(format!(
                "interval_start_s {} is not a non-negative number of seconds",
                self.interval_start_s
            ));
        }
        if timefmt::secs_f64_to_millis(self.interval_s).is_none() {
            return Err(format!(
                "interval_s {} is not a non-negative number of seconds",
                self.interval_s
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classification() {
        assert_eq!(Outcome::from_status(101), Outcome::Status1xx);
        assert_eq!(Outcome::from_status(200), Outcome::Status2xx);
        assert_eq!(Outcome::from_status(304), Outcome::Status3xx);
        assert_eq!(Outcome::from_status(429), Outcome::Status4xx);
        assert_eq!(Outcome::from_status(599), Outcome::Status5xx);
        assert_eq!(Outcome::from_status(99), Outcome::OtherError);
        assert_eq!(Outcome::from_status(600), Outcome::OtherError);
    }

    #[test]
    fn record_keeps_requests_equal_to_outcomes_and_drops_apart() {
        let mut c = Counts::default();
        c.record_status(200);
        c.record_status(503);
        c.record(Outcome::Timeout);
        c.record(Outcome::ConnectError);
        c.record(Outcome::ShadowDrop);
        c.record_n(Outcome::Status2xx, 5);
        assert_eq!(c.requests, 9);
        assert_eq!(c.status_2xx, 6);
        assert_eq!(c.status_5xx, 1);
        assert_eq!(c.transport_errors(), 2);
        assert_eq!(c.shadow_drops, 1);
        let mut d = c;
        d.add(&c);
        assert_eq!(d.requests, 18);
        assert_eq!(d.shadow_drops, 2);
        assert!(!d.is_zero());
        assert!(Counts::default().is_zero());
    }

    #[test]
    fn row_conversions() {
        let route = RouteKey {
            target: "candidate".into(),
            method: "GET".into(),
            route: "/api/ticker".into(),
        };
        let mut c = Counts::default();
        c.record_status(200);
        let row = CountsRow::new(
            Duration::from_millis(12_345),
            Duration::from_millis(1_001),
            &route,
            &c,
        );
        assert_eq!(row.interval_start_s, 12.345);
        assert_eq!(row.start(), Duration::from_millis(12_345));
        assert_eq!(row.length(), Duration::from_millis(1_001));
        assert_eq!(row.counts(), c);
        assert_eq!(row.route_key(), route);
        assert!(row.check().is_ok());
    }

    #[test]
    fn header_matches_row_fields() {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.serialize(CountsRow::new(
            Duration::ZERO,
            Duration::ZERO,
            &RouteKey {
                target: "t".into(),
                method: "GET".into(),
                route: "/".into(),
            },
            &Counts::default(),
        ))
        .unwrap();
        let text = String::from_utf8(w.into_inner().unwrap()).unwrap();
        assert_eq!(text.lines().next().unwrap(), COUNTS_COLUMNS.join(","));
    }
}
