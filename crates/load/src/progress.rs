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
    let mut last_sent = 0u64;
    let mut last_at = Instant::now();
    let mut n: u64 = 0;
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
        let dt = now.duration_since(last_at).as_secs_f64().max(1e-3);
        let rate = sent.saturating_sub(last_sent) as f64 / dt;
        last_sent = sent;
        last_at = now;
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

#[cfg(test)]
mod tests {
    use super::*;

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
