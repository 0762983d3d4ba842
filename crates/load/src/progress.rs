//! Live progress: an indicatif bar when stdout is a terminal, a plain line every few seconds
//! when it is not (CI logs), or nothing.
//!
//! The figures come from counters the workers flush every 250 ms, never from the timed path
//! directly: achieved send rate over the last tick, measured errors, and P50/P99 (from the
//! intended send time) of the responses completed since the last tick.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::watch;

use crate::worker::Shared;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProgressMode {
    /// A bar on a terminal, plain lines otherwise.
    #[default]
    Auto,
    /// Always the bar.
    Bar,
    /// Always plain lines.
    Plain,
    /// Nothing.
    Off,
}

/// One progress reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProgressLine {
    pub elapsed: Duration,
    pub total: Duration,
    /// Requests sent per second over the last tick.
    pub rate: f64,
    /// Measured requests that failed or answered 4xx/5xx, so far.
    pub errors: u64,
    pub p50_ns: Option<u64>,
    pub p99_ns: Option<u64>,
}

impl ProgressLine {
    /// `12.0s/20.0s  9,998 req/s  0 errors  P50 92µs  P99 250µs`
    pub fn text(&self) -> String {
        let pct = |p: Option<u64>| p.map_or_else(|| "-".to_owned(), fmt_ns);
        format!(
            "{:.1}s/{:.1}s  {} req/s  {} errors  P50 {}  P99 {}",
            self.elapsed.as_secs_f64(),
            self.total.as_secs_f64(),
            group_thousands(self.rate.round() as u64),
            self.errors,
            pct(self.p50_ns),
            pct(self.p99_ns)
        )
    }
}

/// `1234567` → `1,234,567`.
pub fn group_thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A latency in ns, in the unit that reads best (`850ns`, `92.1µs`, `1.37ms`, `2.5s`).
pub fn fmt_ns(ns: u64) -> String {
    let f = ns as f64;
    if ns < 1_000 {
        format!("{ns}ns")
    } else if ns < 1_000_000 {
        format!("{:.1}µs", f / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.2}ms", f / 1e6)
    } else {
        format!("{:.2}s", f / 1e9)
    }
}

/// Shows progress until `stop` turns true. `total` is the expected run length from `t0`.
pub(crate) async fn run(
    shared: Arc<Shared>,
    mode: ProgressMode,
    total: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let tty = std::io::stdout().is_terminal();
    let bar = match (mode, tty) {
        (ProgressMode::Off, _) => return,
        (ProgressMode::Bar, _) | (ProgressMode::Auto, true) => {
            let bar = ProgressBar::with_draw_target(
                Some(total.as_millis() as u64),
                ProgressDrawTarget::stdout_with_hz(4),
            );
            let style = ProgressStyle::with_template("{bar:30} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            Some(bar)
        }
        _ => None,
    };
    // Plain lines: every second for short runs, every 5 s for long ones.
    let plain_every = if total > Duration::from_secs(30) {
        5
    } else {
        1
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The last readings `(when, sent so far)`, RATE_WINDOW ticks back: the workers flush
    // their counts every 250 ms each, so a one-second window would jump by ±20 % on a steady
    // rate.
    let mut readings: std::collections::VecDeque<(Instant, u64)> =
        std::collections::VecDeque::from([(Instant::now(), 0)]);
    let mut n: u64 = 0;
    let mut rate = 0.0;
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = tick.tick() => {}
        }
        if *stop.borrow() {
            break;
        }
        let Some(t0) = shared.t0.get().copied() else {
            continue;
        };
        n += 1;
        let now = Instant::now();
        let sent = shared.live.sent.load(Ordering::Relaxed);
        let end = t0 + total;
        if now >= end {
            // The schedule is over: the average over all of it (the workers flush their
            // counts every 250 ms, so a last short window would overstate).
            rate = sent as f64 / total.as_secs_f64().max(1e-3);
        } else if let Some(&(from, before)) = readings.front()
            && let Some(r) = window_rate(sent.saturating_sub(before), from, now, t0, end)
        {
            rate = r;
        }
        readings.push_back((now, sent));
        if readings.len() > RATE_WINDOW {
            readings.pop_front();
        }
        let (p50, p99) = {
            let mut h = shared
                .live
                .hist
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let r = if h.is_empty() {
                (None, None)
            } else {
                (
                    Some(h.value_at_quantile(0.5)),
                    Some(h.value_at_quantile(0.99)),
                )
            };
            h.reset();
            r
        };
        let line = ProgressLine {
            elapsed: now.saturating_duration_since(t0).min(total),
            total,
            rate,
            errors: shared.live.errors.load(Ordering::Relaxed),
            p50_ns: p50,
            p99_ns: p99,
        };
        match &bar {
            Some(bar) => {
                bar.set_position(line.elapsed.as_millis().min(total.as_millis()) as u64);
                bar.set_message(line.text());
            }
            None => {
                if n.is_multiple_of(plain_every) {
                    println!("{}", line.text());
                }
            }
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
}

/// How many one-second ticks the shown send rate spans.
const RATE_WINDOW: usize = 3;

/// The send rate of `sent` requests counted between `from` and `to`, over the part of that
/// window inside the schedule (`start`..`end`): the first tick began before the schedule, and
/// dividing by the whole tick would show a rate the run never had. `None` when too little of
/// the window was inside (keep the last reading).
fn window_rate(sent: u64, from: Instant, to: Instant, start: Instant, end: Instant) -> Option<f64> {
    let inside = to.min(end).saturating_duration_since(from.max(start));
    (inside >= Duration::from_millis(50)).then(|| sent as f64 / inside.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_counts_only_the_scheduled_part_of_a_tick() {
        let start = Instant::now();
        let end = start + Duration::from_secs(10);
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        // A whole tick inside the schedule.
        assert_eq!(
            window_rate(10_000, start + s(2), start + s(3), start, end),
            Some(10_000.0)
        );
        // The last tick: 9.6 s .. 10.6 s, of which 0.4 s scheduled.
        let r = window_rate(4_000, start + ms(9_600), start + ms(10_600), start, end).unwrap();
        assert!((r - 10_000.0).abs() < 1e-6, "{r}");
        // The first tick began 0.5 s before the schedule started.
        let r = window_rate(5_000, start, start + ms(1_000), start + ms(500), end).unwrap();
        assert!((r - 10_000.0).abs() < 1e-6, "{r}");
        // Almost nothing of the window inside: no reading.
        assert_eq!(
            window_rate(10, start + ms(9_990), start + s(11), start, end),
            None
        );
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(group_thousands(0), "0");
        assert_eq!(group_thousands(999), "999");
        assert_eq!(group_thousands(9_998), "9,998");
        assert_eq!(group_thousands(1_234_567), "1,234,567");
        assert_eq!(fmt_ns(850), "850ns");
        assert_eq!(fmt_ns(92_100), "92.1µs");
        assert_eq!(fmt_ns(1_370_000), "1.37ms");
        assert_eq!(fmt_ns(2_500_000_000), "2.50s");
        let line = ProgressLine {
            elapsed: Duration::from_secs(12),
            total: Duration::from_secs(20),
            rate: 9998.4,
            errors: 0,
            p50_ns: Some(92_000),
            p99_ns: None,
        };
        assert_eq!(
            line.text(),
            "12.0s/20.0s  9,998 req/s  0 errors  P50 92.0µs  P99 -"
        );
    }
}
