//! The send schedule: the intended send time of every ticket, as an offset from `t0`.
//!
//! Arrivals are generated as points `s_i` of a unit-rate process (`s_i = i + phase` for a fixed
//! rate; cumulative sums of Exp(1) gaps for Poisson) and mapped through the inverse of the
//! cumulative arrival count `N(t)`. With a linear ramp of length `T` to the rate `R`,
//! `N(t) = R t² / 2T` for `t < T` and `R T / 2 + R (t - T)` after, so one formula serves both
//! arrival processes, and a fixed rate without ramp is exactly `t0 + (i + phase) / R`.
//!
//! `phase` (in periods, `0 <= phase < 1`) staggers shards: shard `I` of `N` at `R / N` uses
//! `phase = I / N`, so the union of all shards' fixed schedules is the one-generator schedule.

use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::scenario::Arrival;

/// A send schedule (pure: no clock).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// Tickets per second once the ramp is over.
    pub rate: f64,
    pub arrival: Arrival,
    pub ramp: Duration,
    /// Offset in periods (`0..1`), for shards.
    pub phase: f64,
    /// Seeds the Poisson gaps.
    pub seed: u64,
}

impl Schedule {
    /// The offsets of ticket 0, 1, 2, ... (an endless iterator).
    pub fn iter(&self) -> ScheduleIter {
        let mut rng = SmallRng::seed_from_u64(self.seed);
        let first = match self.arrival {
            Arrival::Fixed => self.phase,
            Arrival::Poisson => exp1(&mut rng),
        };
        ScheduleIter {
            schedule: *self,
            next_s: first,
            rng,
        }
    }

    /// How many tickets the schedule puts in `[from, to)`: the rate a window asked for. For a
    /// fixed rate that is `rate × (to − from)`; Poisson draws stray from it by about √n
    /// (±2 % over 10 s at 200/s), which must not read as a generator falling behind.
    pub fn count_between(&self, from: Duration, to: Duration) -> u64 {
        let mut n = 0;
        for at in self.iter() {
            if at >= to {
                break;
            }
            if at >= from {
                n += 1;
            }
        }
        n
    }

    /// The time (seconds from t0) at which the cumulative arrival count reaches `s`.
    pub fn time_of(&self, s: f64) -> f64 {
        let ramp = self.ramp.as_secs_f64();
        let ramp_count = self.rate * ramp / 2.0;
        if ramp > 0.0 && s < ramp_count {
            (2.0 * ramp * s / self.rate).sqrt()
        } else {
            ramp + (s - ramp_count) / self.rate
        }
    }

    /// The offset of a unit-process point, rounded to the nanosecond.
    fn offset(&self, s: f64) -> Duration {
        if self.ramp.is_zero() {
            // `s * 1e9` is exact for integral `s` below 2^53 / 1e9; one division keeps
            // `i / rate` exact whenever the period is a whole number of nanoseconds.
            return Duration::from_nanos((s * 1e9 / self.rate).round().max(0.0) as u64);
        }
        Duration::from_nanos((self.time_of(s) * 1e9).round().max(0.0) as u64)
    }
}

/// An endless iterator of intended offsets from `t0`.
#[derive(Debug)]
pub struct ScheduleIter {
    schedule: Schedule,
    next_s: f64,
    rng: SmallRng,
}

impl Iterator for ScheduleIter {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let s = self.next_s;
        self.next_s = match self.schedule.arrival {
            Arrival::Fixed => s + 1.0,
            Arrival::Poisson => s + exp1(&mut self.rng),
        };
        Some(self.schedule.offset(s))
    }
}

/// An Exp(1) sample.
fn exp1(rng: &mut SmallRng) -> f64 {
    // `random::<f64>()` is in [0, 1): 1 - u is in (0, 1], so the log is finite.
    -(1.0 - rng.random::<f64>()).ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_counts_what_the_schedule_put_in_it() {
        let s = fixed(1000.0);
        assert_eq!(
            s.count_between(Duration::from_secs(1), Duration::from_secs(3)),
            2000
        );
        let p = Schedule {
            arrival: Arrival::Poisson,
            ..fixed(200.0)
        };
        let (from, to) = (Duration::from_secs(2), Duration::from_secs(12));
        let by_hand = p
            .iter()
            .take_while(|at| *at < to)
            .filter(|at| *at >= from)
            .count();
        assert_eq!(p.count_between(from, to), by_hand as u64);
        // About 2,000, but rarely exactly.
        assert!((1800..2200).contains(&by_hand), "{by_hand}");
    }

    fn fixed(rate: f64) -> Schedule {
        Schedule {
            rate,
            arrival: Arrival::Fixed,
            ramp: Duration::ZERO,
            phase: 0.0,
            seed: 1,
        }
    }

    #[test]
    fn fixed_rate_times_are_exact() {
        let offs: Vec<Duration> = fixed(1000.0).iter().take(100_001).collect();
        for (i, d) in offs.iter().enumerate() {
            assert_eq!(*d, Duration::from_micros(1000 * i as u64), "ticket {i}");
        }
        let offs: Vec<Duration> = fixed(10_000.0).iter().take(600_001).collect();
        assert_eq!(offs[600_000], Duration::from_secs(60));
        assert_eq!(offs[12_345], Duration::from_nanos(1_234_500_000));
        // A period that is not a whole number of ns rounds to the nearest ns.
        let offs: Vec<Duration> = fixed(3.0).iter().take(4).collect();
        assert_eq!(
            offs,
            [0, 333_333_333, 666_666_667, 1_000_000_000].map(Duration::from_nanos)
        );
    }

    #[test]
    fn shard_phases_interleave_into_the_whole_schedule() {
        let whole: Vec<Duration> = fixed(1000.0).iter().take(1000).collect();
        let mut merged: Vec<Duration> = Vec::new();
        for shard in 0..4u32 {
            let s = Schedule {
                rate: 250.0,
                phase: f64::from(shard) / 4.0,
                ..fixed(250.0)
            };
            merged.extend(s.iter().take(250));
        }
        merged.sort();
        assert_eq!(merged, whole);
    }

    #[test]
    fn ramp_rises_linearly_then_holds_the_rate() {
        let s = Schedule {
            ramp: Duration::from_secs(2),
            ..fixed(1000.0)
        };
        let offs: Vec<Duration> = s.iter().take(5000).collect();
        // N(2 s) = 1000 * 2 / 2 = 1000 tickets during the ramp.
        let in_ramp = offs.iter().filter(|d| **d < Duration::from_secs(2)).count();
        assert_eq!(in_ramp, 1000);
        // Quadratic: N(1 s) = 1000 * 1 / (2 * 2) = 250.
        let first_half = offs.iter().filter(|d| **d < Duration::from_secs(1)).count();
        assert_eq!(first_half, 250);
        // After the ramp: exactly 1 ms apart.
        assert_eq!(offs[1000], Duration::from_secs(2));
        assert_eq!(offs[1001] - offs[1000], Duration::from_millis(1));
        assert!(offs.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn poisson_gaps_have_the_right_mean_and_spread() {
        let s = Schedule {
            arrival: Arrival::Poisson,
            seed: 42,
            ..fixed(1000.0)
        };
        let n = 200_000;
        let offs: Vec<Duration> = s.iter().take(n).collect();
        let gaps: Vec<f64> = offs
            .windows(2)
            .map(|w| (w[1] - w[0]).as_secs_f64())
            .collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        assert!((mean - 0.001).abs() < 0.00002, "mean gap {mean}");
        // Exponential: standard deviation equals the mean.
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
        assert!(
            (var.sqrt() / mean - 1.0).abs() < 0.02,
            "sd/mean {}",
            var.sqrt() / mean
        );
        // Seeded: the same schedule twice.
        let again: Vec<Duration> = s.iter().take(100).collect();
        assert_eq!(&offs[..100], &again[..]);
    }
}
