//! shadowgate-load: the open-model load generator behind `shadowgate load`.
//!
//! **Goose organizes the test; the timing path is lean.** Goose runs the users, the weighted
//! transactions of the mix, the run control and its HTML/Markdown/JSON report. The send
//! schedule and the measurement are ours, because a generator whose own overhead is larger than
//! the 150 µs a phase gate judges cannot judge it:
//!
//! ```text
//!  pacer (timerfd task on the generator's runtime)  Goose users (one per connection)
//!  intended times t0 + i/rate (or Poisson)   ──▶   take the next ticket, send it on their own
//!  → bounded multi-consumer ticket queue            keep-alive hyper connection, record into
//!                                                   their own histogram shard, report to Goose
//! ```
//!
//! Design decisions:
//! - **Open model.** A pacer ([`pacer`]) fixes each request's intended send time
//!   ([`schedule`]: `t0 + i / rate`, a linear ramp, or Poisson arrivals) and hands tickets to
//!   whichever user is free. tokio's 1 ms timer is not used for pacing. By default (`tick`)
//!   the pacer is a task on the generator's own runtime that puts the runtime's thread to
//!   sleep between tickets (an hrtimer sleep with 1 ns slack, at most 500 µs, so nothing else
//!   on the runtime waits long) and, on waking, lets it read every answer that arrived
//!   meanwhile before sending the next request: **one wake-up per request**, where waking for
//!   each answer too cost a second one. Reading an answer later costs no accuracy because its
//!   time is the kernel's receive stamp (below). Longer gaps, and every gap when the kernel
//!   refuses stamps, are waited on a `timerfd` in the runtime's epoll set (`pacer = "timer"`
//!   does that always). The first design, a dedicated pacer thread sleeping with 1 ns timer
//!   slack that hands tickets across threads, cost yet another wake-up per request (the pacer
//!   thread alone used 26 % of a core at 10,000 req/s on the 2-vCPU box); it remains as
//!   `[generator] pacer = "thread"` (on `SCHED_FIFO` when allowed, module [`priority`]).
//!   None spins: on two shared cores spinning starves the gateway under test. Measured on the
//!   2-vCPU box at 10,000 req/s (alternating runs, pinned placements): generator CPU per
//!   request `timer` 44–66 µs, `tick` 36–52 µs.
//! - **Latency from the intended send time** is the gate's figure (no series suffix): it
//!   includes time a request waited for a free connection, so a stalling gateway is charged
//!   for every request it delayed (coordinated omission corrected by construction). The service
//!   time (from the actual send) is kept beside it as `;service`. Values are ns in HDR
//!   histograms (3 digits), per route, recorded into per-user shards of the run's
//!   [`shadowgate_record::LatencyRecorder`]: no lock per request.
//! - **An answer is complete when its last segment reached this host**: the kernel's receive
//!   timestamp (`SO_TIMESTAMPNS`, [`rxstamp`]), not when the generator's thread woke up to read
//!   it. On a VM with halting idle vCPUs that wake-up grows with the wait (~30 µs for a 200 µs
//!   answer on the development box): it is the generator's cost, recorded as `receive_delay`
//!   in the manifest and kept out of the gateway's figures.
//! - **Goose sees the same timings** through `record_custom_request_duration` (µs precision),
//!   so its report agrees with ours; our histograms are the source of truth (Goose's report
//!   rounds and holds one of the two timings), and the achieved rate is computed over our own
//!   window (Goose divides by whole seconds). Goose's request logs and its own
//!   coordinated-omission mitigation stay off, and its metrics are not reset mid-run.
//! - **Warm-up is excluded.** `t0` is set only after every user's `on_start` has connected and
//!   Goose has reset its metrics; the ramp and warm-up tickets are sent but not recorded. After
//!   the measured window the pacer feeds 250 ms more (tail tickets, not recorded) so the load
//!   stays level while the last measured answers come back, then closes the queue: that wakes
//!   every idle user at once, and a user facing a closed queue sleeps 10 ms per transaction
//!   (an instant return would spin a core) until Goose stops it — Goose checks its stop signal
//!   only between transactions. An idle user waits on the queue with no timer (the common
//!   case costs no timer registration), or with one when a flow's next step is due.
//! - **The generator runs on a runtime of its own**, on its own thread: current-thread by
//!   default (`[generator] threads = N` for more). One thread carries 10,000 req/s, and no
//!   pacer wake-up then unparks a second worker to steal the task — on two cores each context
//!   switch saved is CPU the gateway under test keeps.
//! - **Goose's per-request work is kept to one metric**: request metrics per route only;
//!   transaction and scenario metrics are off (they would double it for the same figures).
//! - **Generator-limited runs are flagged** (`generator_limited` in the manifest, with the
//!   reasons), so a failed gate is never blamed on the gateway when the generator (or the
//!   host under it) was the bottleneck. A run is generator-limited when any of these holds:
//!   1. achieved rate (requests actually sent inside the measured window, per second, plus the
//!      later steps of flows that broke on the gateway's error and so were never due) is
//!      below `min_achieved_ratio` (0.99) × what the schedule put in the window (the target
//!      rate for fixed arrivals; a Poisson schedule's own draws, which stray by ~√n);
//!   2. the median send lateness (actual − intended send time) exceeds `lateness_threshold`
//!      (1 ms): requests queue for a connection or for CPU in the typical case — a stall of the
//!      gateway delays a minority of requests and does not trip this;
//!   3. the pacer's own P99 hand-off lateness exceeds `lateness_threshold`: its CPU is short;
//!   4. a measured ticket was dropped because the waiting queue was full;
//!   5. the hypervisor stopped one vCPU for ≥ 1 % of the window (steal, per CPU from
//!      `/proc/stat`): as much as the P99 tail, so a single-threaded generator on it can owe
//!      its whole P99 to the host (measured: 0.66 % of the machine gave P99 1.0 ms against
//!      0.15–0.4 ms in undisturbed runs, 7–16 % several ms).
//!
//!   For 2 and 3 the reason says which kind of short ([`usage`]): the generator threads' CPU
//!   time over the measured window tells a saturated generator (it used its cores) from a
//!   starved one (it used part of a core and still ran late, its threads kept waiting for a
//!   CPU that the gateway on the same machine, other jobs or the hypervisor — steal, from
//!   `/proc/stat` — held); the figures go into the manifest (`generator_cores`,
//!   `cpu_wait_share`, `steal_share`, `steal_share_max_cpu`).
//! - **Sharding** (`--shard I/N`): generator I runs rate / N with its fixed schedule offset by
//!   I/N of a period (the union of the shards is the one-generator schedule) and puts I in every
//!   generated id (`{client_order_id}` = `sg-<run>-<I>-<seq>`), so N generators never collide
//!   and their run directories merge exactly (histograms add, counts add).
//! - **Calibration** (`--calibrate`) runs the same mix at the same rate against an in-process
//!   null server first and stores the generator's floor in the manifest.

pub mod client;
pub mod error;
pub mod null_server;
pub mod pacer;
pub mod priority;
pub mod progress;
pub mod run;
pub mod scenario;
pub mod schedule;
pub mod template;
pub mod usage;

mod sse;
mod worker;

/// The kernel's receive stamps (shared with the simulator, which times injected latency
/// from a request's arrival).
pub use shadowgate_sim::rxstamp;

pub use error::{LoadError, ScenarioErrors, ScenarioIssue};
pub use progress::ProgressMode;
pub use run::{Calibration, LoadOptions, LoadSummary, Percentiles, Shard, default_run_dir, run};
pub use scenario::{Overrides, Plan, RawScenario, Scenario};
