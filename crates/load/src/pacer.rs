//! The pacer: a dedicated OS thread that hands schedule tickets to the Goose users.
//!
//! Why a thread and not a tokio task: tokio's timer has 1 ms granularity, which at 10,000 req/s
//! releases requests in bursts of ten. The pacer sleeps with `std::thread::sleep` after setting
//! its timer slack to 1 ns (`prctl(PR_SET_TIMERSLACK)`): Linux's default 50 µs slack makes a
//! sleep wake ~66 µs late, 1 ns brings that to ~15 µs, at no CPU cost. It never spins: on two
//! cores a spinning generator steals the CPU the gateway under test needs, and P99 gets worse.
//!
//! Each wake-up issues every ticket whose intended time has passed (or comes within the
//! wake-up lead: the pacer aims early by its typical sleep overshoot), in order, into one bounded
//! multi-consumer queue; whichever user is free takes the next ticket, so a stalled connection
//! delays only its own request (the others keep the schedule). A ticket that finds the queue
//! full is dropped and counted (a measured one marks the run generator-limited). Ticket
//! lateness (hand-off − intended) of measured tickets is recorded: a late pacer means the
//! generator's own CPU was short.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::error::LoadError;
use crate::schedule::Schedule;

/// Which part of the run a ticket belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Ramp and warm-up: sent, not recorded.
    Warmup,
    /// The measured window.
    Measured,
    /// After the window, until Goose has stopped every user: sent (so the load stays level
    /// until the end), not recorded.
    Tail,
}

/// One scheduled request.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    /// Schedule index.
    pub seq: u64,
    /// Intended send time.
    pub intended: Instant,
    pub phase: Phase,
}

/// The phases of a run, as offsets from `t0`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Phases {
    /// End of ramp + warm-up = start of the measured window.
    pub window_start: Duration,
    /// End of the measured window.
    pub window_end: Duration,
    /// The pacer stops (and closes the queue) after issuing tickets up to here: a short tail
    /// after the window keeps the load level while the last measured requests finish, then
    /// the closed queue wakes every idle user so Goose can stop them at once.
    pub feed_until: Duration,
}

impl Phases {
    /// The phase of a ticket due at `offset`.
    pub fn of(&self, offset: Duration) -> Phase {
        if offset < self.window_start {
            Phase::Warmup
        } else if offset < self.window_end {
            Phase::Measured
        } else {
            Phase::Tail
        }
    }
}

/// What the pacer did.
#[derive(Debug, Clone)]
pub struct PacerStats {
    /// Tickets handed to the queue, by phase: warm-up, measured, tail.
    pub issued: [u64; 3],
    /// Tickets dropped because the queue was full, by phase.
    pub dropped: [u64; 3],
    /// Hand-off − intended time of measured tickets, ns.
    pub lateness: Histogram<u64>,
    /// Whether the 1 ns timer slack could be set.
    pub timer_slack_set: bool,
    /// The pacer thread's scheduling (module `priority`).
    pub scheduling: String,
}

impl PacerStats {
    fn new() -> PacerStats {
        PacerStats {
            issued: [0; 3],
            dropped: [0; 3],
            lateness: new_histogram(),
            timer_slack_set: false,
            scheduling: String::new(),
        }
    }
}

/// A histogram of 1 ns .. 1 h at 3 significant digits (record with `saturating_record`).
pub fn new_histogram() -> Histogram<u64> {
    // Constant, valid bounds: creation cannot fail (pinned by a unit test).
    #[allow(clippy::expect_used)]
    Histogram::new_with_bounds(1, shadowgate_record::HIGHEST_TRACKABLE_NS, 3)
        .expect("constant histogram bounds are valid")
}

fn idx(p: Phase) -> usize {
    match p {
        Phase::Warmup => 0,
        Phase::Measured => 1,
        Phase::Tail => 2,
    }
}

/// The running pacer thread.
#[derive(Debug)]
pub struct Pacer {
    stop: Arc<AtomicBool>,
    start: mpsc::Sender<Instant>,
    join: JoinHandle<PacerStats>,
}

/// Longest single sleep, so a stop request is seen promptly.
const MAX_SLEEP: Duration = Duration::from_millis(20);
/// The most a ticket is handed out ahead of its intended time.
const MAX_LEAD: Duration = Duration::from_micros(200);
/// Most tickets issued per wake-up before checking the stop flag again.
const MAX_BATCH: usize = 65_536;

impl Pacer {
    /// Starts the thread; it waits for [`Pacer::start`] before issuing anything.
    pub fn spawn(
        schedule: Schedule,
        phases: Phases,
        tx: flume::Sender<Ticket>,
        realtime: bool,
    ) -> Result<Pacer, LoadError> {
        let stop = Arc::new(AtomicBool::new(false));
        let (start, start_rx) = mpsc::channel();
        let flag = Arc::clone(&stop);
        let join = std::thread::Builder::new()
            .name("shadowgate-pacer".to_owned())
            .spawn(move || run(schedule, phases, tx, start_rx, &flag, realtime))
            .map_err(|source| LoadError::Start {
                what: "the pacer thread",
                source,
            })?;
        Ok(Pacer { stop, start, join })
    }

    /// Sets `t0` and starts issuing tickets.
    pub fn start(&self, t0: Instant) {
        // The thread only goes away after `stop`, so a failed send changes nothing.
        let _ = self.start.send(t0);
    }

    /// Stops issuing and returns what the pacer did.
    pub fn stop(self) -> PacerStats {
        self.stop.store(true, Ordering::SeqCst);
        drop(self.start);
        self.join.join().unwrap_or_else(|_| {
            tracing::warn!("The pacer thread panicked; its statistics are lost.");
            PacerStats::new()
        })
    }
}

/// Sets this thread's timer slack to 1 ns (Linux); returns whether it worked.
fn set_timer_slack() -> bool {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        match nix::sys::prctl::set_timerslack(1) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(error = %e, "could not set the pacer's timer slack");
                false
            }
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        false
    }
}

fn run(
    schedule: Schedule,
    phases: Phases,
    tx: flume::Sender<Ticket>,
    start: mpsc::Receiver<Instant>,
    stop: &AtomicBool,
    realtime: bool,
) -> PacerStats {
    let mut stats = PacerStats::new();
    stats.timer_slack_set = set_timer_slack();
    let outcome = if realtime {
        crate::priority::make_current_thread_realtime()
    } else {
        Ok(())
    };
    stats.scheduling = crate::priority::describe(realtime, &outcome);
    let t0 = loop {
        match start.recv_timeout(MAX_SLEEP) {
            Ok(t0) => break t0,
            Err(mpsc::RecvTimeoutError::Timeout) if !stop.load(Ordering::Relaxed) => {}
            Err(_) => return stats,
        }
    };
    let mut offsets = schedule.iter();
    let mut seq: u64 = 0;
    let Some(mut next_off) = offsets.next() else {
        return stats;
    };
    let mut next = t0 + next_off;
    // Wake-up lead: a sleep overshoots its deadline (tens of µs on a busy VM even with 1 ns
    // slack), so the pacer aims that much early and hands out every ticket due within the
    // lead. The estimate follows the observed overshoot (EWMA, capped); a ticket handed out
    // early keeps its intended time, and a request that leaves before it is measured from
    // when it left (see the worker), so early never reads as fast.
    let mut lead = Duration::ZERO;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let horizon = now + lead;
        let mut batch = 0;
        while next <= horizon && batch < MAX_BATCH {
            let phase = phases.of(next_off);
            let ticket = Ticket {
                seq,
                intended: next,
                phase,
            };
            match tx.try_send(ticket) {
                Ok(()) => {
                    stats.issued[idx(phase)] += 1;
                    if phase == Phase::Measured {
                        let late = u64::try_from(now.saturating_duration_since(next).as_nanos())
                            .unwrap_or(u64::MAX);
                        stats.lateness.saturating_record(late.max(1));
                    }
                }
                Err(flume::TrySendError::Full(_)) => stats.dropped[idx(phase)] += 1,
                Err(flume::TrySendError::Disconnected(_)) => return stats,
            }
            seq += 1;
            batch += 1;
            next_off = match offsets.next() {
                Some(o) if o < phases.feed_until => o,
                _ => return stats,
            };
            next = t0 + next_off;
        }
        let now = Instant::now();
        let wake_at = next.checked_sub(lead).unwrap_or(next);
        if wake_at > now {
            let nap = (wake_at - now).min(MAX_SLEEP);
            std::thread::sleep(nap);
            let overshoot = Instant::now()
                .saturating_duration_since(now + nap)
                .min(MAX_LEAD);
            lead = (lead * 7 + overshoot) / 8;
        }
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Arrival;

    #[test]
    fn issues_the_schedule_in_order_with_phases() {
        let schedule = Schedule {
            rate: 2000.0,
            arrival: Arrival::Fixed,
            ramp: Duration::ZERO,
            phase: 0.0,
            seed: 0,
        };
        let phases = Phases {
            window_start: Duration::from_millis(10),
            window_end: Duration::from_millis(60),
            feed_until: Duration::from_secs(3600),
        };
        let (tx, rx) = flume::bounded(10_000);
        let pacer = Pacer::spawn(schedule, phases, tx, false).unwrap();
        let t0 = Instant::now();
        pacer.start(t0);
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while got.len() < 200 && Instant::now() < deadline {
            if let Ok(t) = rx.recv_timeout(Duration::from_millis(100)) {
                got.push(t);
            }
        }
        let stats = pacer.stop();
        assert_eq!(got.len(), 200);
        for (i, t) in got.iter().enumerate() {
            assert_eq!(t.seq, i as u64);
            assert_eq!(t.intended, t0 + Duration::from_micros(500 * i as u64));
            let want = match i {
                0..20 => Phase::Warmup,
                20..120 => Phase::Measured,
                _ => Phase::Tail,
            };
            assert_eq!(t.phase, want, "ticket {i}");
        }
        assert_eq!(stats.issued[0], 20);
        assert_eq!(stats.issued[1], 100);
        assert_eq!(stats.lateness.len(), 100);
    }

    #[test]
    fn the_queue_closes_after_the_tail() {
        let schedule = Schedule {
            rate: 1000.0,
            arrival: Arrival::Fixed,
            ramp: Duration::ZERO,
            phase: 0.0,
            seed: 0,
        };
        let phases = Phases {
            window_start: Duration::ZERO,
            window_end: Duration::from_millis(10),
            feed_until: Duration::from_millis(20),
        };
        let (tx, rx) = flume::bounded(1000);
        let pacer = Pacer::spawn(schedule, phases, tx, false).unwrap();
        pacer.start(Instant::now());
        let mut n = 0;
        // Bounded by the 20 ms schedule: the queue closes after 20 tickets.
        while rx.recv_timeout(Duration::from_secs(5)).is_ok() {
            n += 1;
        }
        assert_eq!(n, 20);
        assert!(rx.is_disconnected());
        let stats = pacer.stop();
        assert_eq!(stats.issued, [0, 10, 10]);
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let schedule = Schedule {
            rate: 100_000.0,
            arrival: Arrival::Fixed,
            ramp: Duration::ZERO,
            phase: 0.0,
            seed: 0,
        };
        let phases = Phases {
            window_start: Duration::ZERO,
            window_end: Duration::from_secs(3600),
            feed_until: Duration::from_secs(3600),
        };
        let (tx, rx) = flume::bounded(10);
        let pacer = Pacer::spawn(schedule, phases, tx, false).unwrap();
        pacer.start(Instant::now());
        std::thread::sleep(Duration::from_millis(50));
        let stats = pacer.stop();
        assert_eq!(stats.issued[1], 10);
        assert!(stats.dropped[1] > 100, "{:?}", stats.dropped);
        assert_eq!(rx.len(), 10);
    }

    #[test]
    fn histogram_bounds_are_valid() {
        let mut h = new_histogram();
        h.saturating_record(u64::MAX);
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn stop_before_start_returns() {
        let schedule = Schedule {
            rate: 1.0,
            arrival: Arrival::Fixed,
            ramp: Duration::ZERO,
            phase: 0.0,
            seed: 0,
        };
        let phases = Phases {
            window_start: Duration::ZERO,
            window_end: Duration::from_secs(1),
            feed_until: Duration::from_secs(1),
        };
        let (tx, _rx) = flume::bounded(1);
        let stats = Pacer::spawn(schedule, phases, tx, false).unwrap().stop();
        assert_eq!(stats.issued, [0, 0, 0]);
    }
}
