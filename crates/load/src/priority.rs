//! Real-time scheduling for the generator's timing threads.
//!
//! The pacer sleeps between tickets and does a few µs of work per wake-up, but a wake-up that
//! waits behind other runnable threads is a late schedule: on the 2-vCPU development box, with
//! the gateway and other jobs busy, the pacer's P99 hand-off lateness was 2.4–3 ms under the
//! normal policy and 26–36 µs as `SCHED_FIFO` (measured in alternating runs at 10,000 req/s),
//! and one quiet-box run against oha was flagged generator-limited for exactly that. So the
//! pacer asks for `SCHED_FIFO` at the lowest real-time priority by default: any normal thread
//! yields to it, system real-time threads still win, and it uses a few percent of a core.
//!
//! This applies to the thread pacer (`[generator] pacer = "thread"`); the default timer pacer
//! runs on the generator's runtime thread, which only `"all"` changes.
//!
//! `[generator] realtime = "all"` also puts the runtime thread(s) that send and time requests
//! on `SCHED_FIFO`. It is not the default: those threads carry the whole request load (most of
//! a core at 10,000 req/s), so on a machine shared with the gateway under test they would
//! always win the CPU from it. The kernel's real-time throttling (95 % by default) keeps a
//! runaway from locking a core. Without the permission (root, `CAP_SYS_NICE` or an `rtprio`
//! limit), the threads stay on the normal policy and the manifest says so.

use thread_priority::{
    RealtimeThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy,
    set_thread_priority_and_policy, thread_native_id,
};

/// Which generator threads ask for real-time scheduling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Realtime {
    /// None.
    Off,
    /// The pacer only (default).
    #[default]
    Pacer,
    /// The pacer and the runtime thread(s).
    All,
}

impl Realtime {
    /// Parses the scenario's `[generator] realtime`.
    pub fn parse(s: &str) -> Option<Realtime> {
        match s {
            "off" => Some(Realtime::Off),
            "pacer" => Some(Realtime::Pacer),
            "all" => Some(Realtime::All),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Realtime::Off => "off",
            Realtime::Pacer => "pacer",
            Realtime::All => "all",
        }
    }
}

/// Puts the calling thread on `SCHED_FIFO` at the lowest real-time priority. The error says
/// why not, and what would allow it.
pub fn make_current_thread_realtime() -> Result<(), String> {
    set_thread_priority_and_policy(
        thread_native_id(),
        ThreadPriority::Min,
        ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::Fifo),
    )
    .map_err(|e| {
        format!(
            "SCHED_FIFO refused ({e:?}); run as root, or grant CAP_SYS_NICE or an rtprio limit \
             (ulimit -r 1)"
        )
    })
}

/// What a thread got, for the manifest: `"SCHED_FIFO"`, or `"normal"` with the reason.
pub fn describe(asked: bool, outcome: &Result<(), String>) -> String {
    match (asked, outcome) {
        (false, _) => "normal".to_owned(),
        (true, Ok(())) => "SCHED_FIFO".to_owned(),
        (true, Err(e)) => format!("normal: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_setting_parses_and_names_itself() {
        for r in [Realtime::Off, Realtime::Pacer, Realtime::All] {
            assert_eq!(Realtime::parse(r.as_str()), Some(r));
        }
        assert_eq!(Realtime::parse("yes"), None);
        assert_eq!(Realtime::default(), Realtime::Pacer);
    }

    #[test]
    fn a_thread_gets_fifo_or_a_reason() {
        // Run on a thread of its own: the policy must not leak into the test harness.
        let outcome = std::thread::spawn(make_current_thread_realtime)
            .join()
            .unwrap();
        match &outcome {
            Ok(()) => assert_eq!(describe(true, &outcome), "SCHED_FIFO"),
            Err(e) => {
                assert!(e.contains("CAP_SYS_NICE"), "{e}");
                assert!(describe(true, &outcome).starts_with("normal: "));
            }
        }
        assert_eq!(describe(false, &outcome), "normal");
    }
}
