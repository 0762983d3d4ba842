//! The pacer: hands schedule tickets to the Goose users at their intended send times.
//!
//! Not on tokio's timer: it has 1 ms granularity, which at 10,000 req/s releases requests in
//! bursts of ten. Three ways to wait precisely, none spinning (on two cores a spinning
//! generator steals the CPU the gateway under test needs, and P99 gets worse):
//! - **tick** (default): a task on the generator's runtime that, between tickets, puts the
//!   runtime's own thread to sleep (`std::thread::sleep`, timer slack 1 ns). While it sleeps
//!   the thread is not in `epoll_wait`, so an arriving answer does not wake it; when it wakes
//!   it first lets the runtime read every answer that arrived meanwhile, then issues the due
//!   tickets, lets the users send them and sleeps again. **One wake-up per ticket and none per
//!   answer** — and no accuracy lost, because an answer is timed by the kernel's receive stamp
//!   of its last segment (module `rxstamp`), not by when it was read. Measured at 10,000 req/s
//!   on the 2-vCPU box against the `timer` pacer (ten alternating pairs of runs, generator and
//!   server pinned to one vCPU or to two): 5–26 % less generator CPU per request (median
//!   13 %), send lateness P99 lower in 9 of 10 pairs. The runtime is blocked only for one gap between tickets, and never longer
//!   than [`TICK_MAX_NAP`]: a longer gap (a slow schedule, a Poisson lull) is waited on the
//!   timerfd like the `timer` pacer, as is every gap when the kernel refused to stamp answers
//!   (reading them late would then inflate their time) or when the runtime has more than one
//!   thread (another worker would read the answers anyway).
//! - **timer**: a task on the generator's runtime sleeping on a `timerfd` — an hrtimer with no
//!   slack whose expiry arrives through the epoll set the runtime already parks in. The runtime
//!   thread wakes once per ticket and once per answer.
//! - **thread**: a dedicated OS thread sleeping with `std::thread::sleep` after setting its
//!   timer slack to 1 ns (`prctl(PR_SET_TIMERSLACK)`: Linux's default 50 µs slack makes a sleep
//!   wake ~66 µs late, 1 ns brings that to ~15 µs). Its wake-up and the cross-thread hand-off
//!   cost a second context switch per request (measured: the thread alone 26 % of a core at
//!   10,000 req/s on the 2-vCPU box).
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
use shadowgate_sim::hrtimer::Timer;

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
    /// The pacer thread's scheduling (module `priority`), or how the task pacer waited.
    pub scheduling: String,
    /// Gaps between tickets the `tick` pacer slept through on the runtime's thread, and gaps
    /// a task pacer waited on its timerfd.
    pub gaps_slept: u64,
    pub gaps_waited: u64,
}

impl PacerStats {
    fn new() -> PacerStats {
        PacerStats {
            issued: [0; 3],
            dropped: [0; 3],
            lateness: new_histogram(),
            timer_slack_set: false,
            scheduling: String::new(),
            gaps_slept: 0,
            gaps_waited: 0,
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

/// Where the pacer runs (`[generator] pacer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PacerMode {
    /// A task on the generator's runtime that sleeps the runtime's thread between tickets, so
    /// answers are read when it wakes instead of each waking it (default; module docs).
    #[default]
    Tick,
    /// A task on the generator's runtime, woken by a `timerfd` in the runtime's own epoll set.
    Timer,
    /// A dedicated OS thread that sleeps with 1 ns timer slack (on `SCHED_FIFO` when allowed).
    Thread,
}

impl PacerMode {
    /// Parses the scenario's `[generator] pacer`.
    pub fn parse(s: &str) -> Option<PacerMode> {
        match s {
            "tick" => Some(PacerMode::Tick),
            "timer" => Some(PacerMode::Timer),
            "thread" => Some(PacerMode::Thread),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PacerMode::Tick => "tick",
            PacerMode::Timer => "timer",
            PacerMode::Thread => "thread",
        }
    }
}

/// The running pacer.
#[derive(Debug)]
pub struct Pacer {
    stop: Arc<AtomicBool>,
    start: mpsc::Sender<Instant>,
    join: PacerJoin,
}

#[derive(Debug)]
enum PacerJoin {
    Thread(JoinHandle<PacerStats>),
    Task(tokio::task::JoinHandle<PacerStats>),
}

/// Longest single sleep, so a stop request is seen promptly.
const MAX_SLEEP: Duration = Duration::from_millis(20);
/// The most a ticket is handed out ahead of its intended time.
const MAX_LEAD: Duration = Duration::from_micros(200);
/// The longest gap the `tick` pacer sleeps the runtime's thread through; longer gaps are
/// waited on the timerfd, so the runtime (SSE subscribers, flows' delayed steps, Goose's run
/// control) is never held for longer than this.
pub const TICK_MAX_NAP: Duration = Duration::from_micros(500);
/// Most tickets issued per wake-up before checking the stop flag again.
const MAX_BATCH: usize = 65_536;

impl Pacer {
    /// Starts the thread; it waits for [`Pacer::start`] before issuing anything.
    pub fn spawn(
        schedule: Schedule,
        phases: Phases,
        tx: flume::Sender<Ticket>,
        realtime: bool,
        threads: crate::usage::ThreadSet,
    ) -> Result<Pacer, LoadError> {
        let stop = Arc::new(AtomicBool::new(false));
        let (start, start_rx) = mpsc::channel();
        let flag = Arc::clone(&stop);
        let join = std::thread::Builder::new()
            .name("shadowgate-pacer".to_owned())
            .spawn(move || {
                threads.register_current();
                run(schedule, phases, tx, start_rx, &flag, realtime)
            })
            .map_err(|source| LoadError::Start {
                what: "the pacer thread",
                source,
            })?;
        Ok(Pacer {
            stop,
            start,
            join: PacerJoin::Thread(join),
        })
    }

    /// Starts the pacer as a task on the current tokio runtime, woken by a `timerfd`
    /// (Linux), or, with `tick`, sleeping the runtime's thread through short gaps (module
    /// docs; only for a current-thread runtime); it waits for [`Pacer::start`] before issuing
    /// anything.
    pub fn spawn_task(
        schedule: Schedule,
        phases: Phases,
        tx: flume::Sender<Ticket>,
        tick: bool,
    ) -> Result<Pacer, LoadError> {
        let timer = Timer::new().map_err(|source| LoadError::Start {
            what: "the pacer's timerfd",
            source,
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let (start, start_rx) = mpsc::channel();
        let flag = Arc::clone(&stop);
        let join = tokio::spawn(run_task(schedule, phases, tx, start_rx, flag, timer, tick));
        Ok(Pacer {
            stop,
            start,
            join: PacerJoin::Task(join),
        })
    }

    /// Sets `t0` and starts issuing tickets.
    pub fn start(&self, t0: Instant) {
        // The pacer only goes away after `stop`, so a failed send changes nothing.
        let _ = self.start.send(t0);
    }

    /// Stops issuing and returns what the pacer did.
    pub async fn stop(self) -> PacerStats {
        self.stop.store(true, Ordering::SeqCst);
        drop(self.start);
        let joined = match self.join {
            PacerJoin::Thread(join) => join.join().ok(),
            PacerJoin::Task(join) => join.await.ok(),
        };
        joined.unwrap_or_else(|| {
            tracing::warn!("The pacer panicked; its statistics are lost.");
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

/// The walk along the schedule, shared by the thread and the task pacers: issues every
/// ticket due by `now + lead` and says when to wake next.
struct Feed {
    offsets: crate::schedule::ScheduleIter,
    phases: Phases,
    t0: Instant,
    seq: u64,
    next_off: Duration,
    next: Instant,
    /// Wake-up lead: a wake-up overshoots its deadline (tens of µs on a busy VM), so the pacer
    /// aims that much early and hands out every ticket due within the lead. The estimate
    /// follows the observed overshoot (EWMA, capped); a ticket handed out early keeps its
    /// intended time, and a request that leaves before it is measured from when it left (see
    /// the worker), so early never reads as fast.
    lead: Duration,
}

impl Feed {
    fn new(schedule: &Schedule, phases: Phases, t0: Instant) -> Option<Feed> {
        let mut offsets = schedule.iter();
        let next_off = offsets.next()?;
        Some(Feed {
            offsets,
            phases,
            t0,
            seq: 0,
            next_off,
            next: t0 + next_off,
            lead: Duration::ZERO,
        })
    }

    /// Issues what is due; `None` when the schedule (or the queue) has ended.
    fn issue(&mut self, tx: &flume::Sender<Ticket>, stats: &mut PacerStats) -> Option<()> {
        let now = Instant::now();
        let horizon = now + self.lead;
        let mut batch = 0;
        while self.next <= horizon && batch < MAX_BATCH {
            let phase = self.phases.of(self.next_off);
            let ticket = Ticket {
                seq: self.seq,
                intended: self.next,
                phase,
            };
            match tx.try_send(ticket) {
                Ok(()) => {
                    stats.issued[idx(phase)] += 1;
                    if phase == Phase::Measured {
                        let late =
                            u64::try_from(now.saturating_duration_since(self.next).as_nanos())
                                .unwrap_or(u64::MAX);
                        stats.lateness.saturating_record(late.max(1));
                    }
                }
                Err(flume::TrySendError::Full(_)) => stats.dropped[idx(phase)] += 1,
                Err(flume::TrySendError::Disconnected(_)) => return None,
            }
            self.seq += 1;
            batch += 1;
            self.next_off = match self.offsets.next() {
                Some(o) if o < self.phases.feed_until => o,
                _ => return None,
            };
            self.next = self.t0 + self.next_off;
        }
        Some(())
    }

    /// How long to sleep from `now` (capped so a stop request is seen promptly); zero when
    /// the next ticket is already due.
    fn nap(&self, now: Instant) -> Duration {
        let wake_at = self.next.checked_sub(self.lead).unwrap_or(self.next);
        wake_at.saturating_duration_since(now).min(MAX_SLEEP)
    }

    /// Feeds the observed overshoot of a nap that should have ended at `due`.
    fn woke(&mut self, due: Instant) {
        let overshoot = Instant::now().saturating_duration_since(due).min(MAX_LEAD);
        self.lead = (self.lead * 7 + overshoot) / 8;
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
    let Some(mut feed) = Feed::new(&schedule, phases, t0) else {
        return stats;
    };
    while !stop.load(Ordering::Relaxed) {
        if feed.issue(&tx, &mut stats).is_none() {
            break;
        }
        let now = Instant::now();
        let nap = feed.nap(now);
        if !nap.is_zero() {
            std::thread::sleep(nap);
            feed.woke(now + nap);
        }
    }
    stats
}

async fn run_task(
    schedule: Schedule,
    phases: Phases,
    tx: flume::Sender<Ticket>,
    start: mpsc::Receiver<Instant>,
    stop: Arc<AtomicBool>,
    timer: Timer,
    tick: bool,
) -> PacerStats {
    let mut stats = PacerStats::new();
    // The tick pacer sleeps the runtime's own thread: give it the precise sleep.
    stats.timer_slack_set = tick && set_timer_slack();
    let t0 = loop {
        match start.try_recv() {
            Ok(t0) => break t0,
            Err(mpsc::TryRecvError::Empty) if !stop.load(Ordering::Relaxed) => {
                if timer.sleep(Duration::from_millis(1)).await.is_err() {
                    return stats;
                }
            }
            Err(_) => return stats,
        }
    };
    if let Some(mut feed) = Feed::new(&schedule, phases, t0) {
        while !stop.load(Ordering::Relaxed) {
            if feed.issue(&tx, &mut stats).is_none() {
                break;
            }
            let now = Instant::now();
            let nap = feed.nap(now);
            if nap.is_zero() {
                // Behind schedule: let the users send what was issued before issuing more.
                tokio::task::yield_now().await;
            } else if tick && nap <= TICK_MAX_NAP && !crate::rxstamp::refused() {
                // Let the users send what was just issued (the runtime runs every woken task,
                // then polls its reactor without blocking, before polling this task again).
                tokio::task::yield_now().await;
                let now = Instant::now();
                let nap = feed.nap(now);
                if !nap.is_zero() {
                    std::thread::sleep(nap);
                    // Read the answers that arrived meanwhile before sending the next ticket;
                    // the lead then also covers this, so the ticket still leaves on time.
                    tokio::task::yield_now().await;
                    feed.woke(now + nap);
                    stats.gaps_slept += 1;
                }
            } else {
                if let Err(e) = timer.sleep(nap).await {
                    tracing::warn!(error = %e, "the pacer's timerfd failed; the schedule stops here");
                    break;
                }
                feed.woke(now + nap);
                stats.gaps_waited += 1;
            }
        }
    }
    stats.scheduling = if tick {
        format!(
            "on the generator's runtime (tick: {} gaps slept by the runtime thread, {} \
             waited on a timerfd)",
            stats.gaps_slept, stats.gaps_waited
        )
    } else {
        "on the generator's runtime (timerfd)".to_owned()
    };
    stats
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Arrival;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    /// 2,000 tickets/s: 20 warm-up, 100 measured, then tail.
    fn two_thousand_a_second() -> (Schedule, Phases) {
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
        (schedule, phases)
    }

    /// The tickets of [`two_thousand_a_second`] started at `t0`: in order, 500 µs apart, in
    /// their phases; 20 warm-up and 100 measured issued (each measured one timed).
    fn check_tickets<'a>(t0: Instant, got: impl Iterator<Item = &'a Ticket>, stats: &PacerStats) {
        for (i, t) in got.enumerate() {
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

    /// Runs a task pacer (`tick` or `timer`) through [`two_thousand_a_second`] on a
    /// current-thread runtime, collecting tickets on the same runtime as the users do.
    fn run_task_pacer(tick: bool) -> PacerStats {
        let (schedule, phases) = two_thousand_a_second();
        block_on(async {
            let (tx, rx) = flume::bounded(10_000);
            let pacer = Pacer::spawn_task(schedule, phases, tx, tick).unwrap();
            // Nothing before `start`.
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert!(rx.is_empty());
            let t0 = Instant::now();
            pacer.start(t0);
            let mut got = Vec::new();
            while got.len() < 200 {
                let t = tokio::time::timeout(Duration::from_secs(10), rx.recv_async())
                    .await
                    .expect("a ticket within 10 s")
                    .unwrap();
                got.push((t, Instant::now()));
            }
            let stats = pacer.stop().await;
            for (i, (t, at)) in got.iter().enumerate() {
                // Handed out at most the capped wake-up lead ahead of its time: the task
                // sleeps between tickets instead of issuing them all at once.
                assert!(
                    *at + MAX_LEAD >= t.intended,
                    "ticket {i} handed out {:?} early",
                    t.intended - *at
                );
            }
            check_tickets(t0, got.iter().map(|(t, _)| t), &stats);
            stats
        })
    }

    #[test]
    fn the_timer_task_issues_the_schedule_in_order_never_early() {
        let stats = run_task_pacer(false);
        assert_eq!(
            stats.gaps_slept, 0,
            "the timer pacer never blocks the runtime"
        );
        assert!(stats.gaps_waited > 0);
    }

    #[test]
    fn the_tick_task_sleeps_the_runtime_through_short_gaps_and_keeps_the_schedule() {
        // 500 µs gaps: at most TICK_MAX_NAP, so slept through (unless this process was
        // refused receive stamps, when every gap is waited on the timerfd instead).
        let stats = run_task_pacer(true);
        if crate::rxstamp::refused() {
            assert_eq!(stats.gaps_slept, 0);
        } else {
            assert!(
                stats.gaps_slept > stats.gaps_waited,
                "slept {} gaps, waited {}",
                stats.gaps_slept,
                stats.gaps_waited
            );
        }
        assert!(stats.scheduling.contains("tick"), "{}", stats.scheduling);
    }

    #[test]
    fn issues_the_schedule_in_order_with_phases() {
        let (schedule, phases) = two_thousand_a_second();
        let (tx, rx) = flume::bounded(10_000);
        let pacer = Pacer::spawn(schedule, phases, tx, false, Default::default()).unwrap();
        let t0 = Instant::now();
        pacer.start(t0);
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while got.len() < 200 && Instant::now() < deadline {
            if let Ok(t) = rx.recv_timeout(Duration::from_millis(100)) {
                got.push(t);
            }
        }
        let stats = block_on(pacer.stop());
        assert_eq!(got.len(), 200);
        check_tickets(t0, got.iter(), &stats);
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
        let pacer = Pacer::spawn(schedule, phases, tx, false, Default::default()).unwrap();
        pacer.start(Instant::now());
        let mut n = 0;
        // Bounded by the 20 ms schedule: the queue closes after 20 tickets.
        while rx.recv_timeout(Duration::from_secs(5)).is_ok() {
            n += 1;
        }
        assert_eq!(n, 20);
        assert!(rx.is_disconnected());
        let stats = block_on(pacer.stop());
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
        let pacer = Pacer::spawn(schedule, phases, tx, false, Default::default()).unwrap();
        pacer.start(Instant::now());
        std::thread::sleep(Duration::from_millis(50));
        let stats = block_on(pacer.stop());
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
        let stats = block_on(
            Pacer::spawn(schedule, phases, tx, false, Default::default())
                .unwrap()
                .stop(),
        );
        assert_eq!(stats.issued, [0, 0, 0]);
    }
}
