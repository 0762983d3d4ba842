//! What the machine did during the measured window: this process's CPU time and the share of
//! the machine's CPU time the hypervisor took (steal).
//!
//! A run whose pacer or sends were late is generator-limited, but the fix depends on why: a
//! generator that used all of its cores needs more of them (or shards); one that used half a
//! core and still ran late was waiting for a CPU held by something else — the gateway under
//! test on the same machine, other jobs, or, on a virtual machine, the hypervisor. The reasons
//! in the manifest say which, from these two figures.

use std::time::{Duration, Instant};

/// One reading: when, this process's CPU time so far, and the machine's CPU times.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    at: Instant,
    cpu: Option<Duration>,
    machine: Option<CpuTimes>,
}

/// The machine-wide counters of `/proc/stat`'s `cpu` line, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CpuTimes {
    /// Every column summed (user, nice, system, idle, iowait, irq, softirq, steal).
    total: u64,
    steal: u64,
}

/// The measured window's usage.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Usage {
    /// This process's CPU time over the window, in cores (1.0 = one core busy throughout).
    pub generator_cores: Option<f64>,
    /// Steal over the window, as a share of all the machine's CPU time (0.01 = 1 %).
    pub steal_share: Option<f64>,
}

impl Sample {
    /// Reads the counters now (each `None` where the platform has none).
    pub fn now() -> Sample {
        Sample {
            at: Instant::now(),
            cpu: process_cpu(),
            machine: std::fs::read_to_string("/proc/stat")
                .ok()
                .and_then(|s| parse_proc_stat(&s)),
        }
    }

    /// The usage from `self` to `later`.
    pub fn until(&self, later: &Sample) -> Usage {
        let wall = later.at.saturating_duration_since(self.at).as_secs_f64();
        let generator_cores = match (self.cpu, later.cpu) {
            (Some(a), Some(b)) if wall > 0.0 => Some(b.saturating_sub(a).as_secs_f64() / wall),
            _ => None,
        };
        let steal_share = match (self.machine, later.machine) {
            (Some(a), Some(b)) if b.total > a.total => {
                Some(b.steal.saturating_sub(a.steal) as f64 / (b.total - a.total) as f64)
            }
            _ => None,
        };
        Usage {
            generator_cores,
            steal_share,
        }
    }
}

/// User + system CPU time of this process.
fn process_cpu() -> Option<Duration> {
    use nix::sys::resource::{UsageWho, getrusage};
    let u = getrusage(UsageWho::RUSAGE_SELF).ok()?;
    let d = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(u64::try_from(t.tv_sec()).ok()?)
            .checked_add(Duration::from_micros(u64::try_from(t.tv_usec()).ok()?))
    };
    d(u.user_time())?.checked_add(d(u.system_time())?)
}

/// The `cpu` line of `/proc/stat`: `cpu user nice system idle iowait irq softirq steal ...`
/// (guest time is already inside user and nice, so columns after steal are not added).
fn parse_proc_stat(text: &str) -> Option<CpuTimes> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let cols: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    if cols.len() < 8 {
        return None;
    }
    Some(CpuTimes {
        total: cols.iter().sum(),
        steal: cols[7],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_gives_total_and_steal() {
        let text = "cpu  100 5 50 800 10 0 5 30 0 0\ncpu0 50 2 25 400 5 0 3 15 0 0\nintr 1\n";
        assert_eq!(
            parse_proc_stat(text),
            Some(CpuTimes {
                total: 1000,
                steal: 30
            })
        );
        // A kernel without a steal column, or a garbled line: no figure rather than a wrong one.
        assert_eq!(parse_proc_stat("cpu  1 2 3 4\n"), None);
        assert_eq!(parse_proc_stat("cpu  1 x 3 4 5 6 7 8\n"), None);
        assert_eq!(parse_proc_stat("intr 1\n"), None);
    }

    #[test]
    fn usage_between_two_samples() {
        let t = Instant::now();
        let a = Sample {
            at: t,
            cpu: Some(Duration::from_millis(100)),
            machine: Some(CpuTimes {
                total: 1000,
                steal: 10,
            }),
        };
        let b = Sample {
            at: t + Duration::from_secs(2),
            cpu: Some(Duration::from_millis(1100)),
            machine: Some(CpuTimes {
                total: 1400,
                steal: 30,
            }),
        };
        let u = a.until(&b);
        assert_eq!(u.generator_cores, Some(0.5));
        assert_eq!(u.steal_share, Some(0.05));
        let none = Sample {
            at: t + Duration::from_secs(2),
            cpu: None,
            machine: None,
        };
        assert_eq!(
            a.until(&none),
            Usage {
                generator_cores: None,
                steal_share: None
            }
        );
    }

    #[test]
    fn this_process_has_cpu_time_that_grows() {
        let a = Sample::now();
        // Burn a little CPU (bounded).
        let mut x = 0u64;
        let until = Instant::now() + Duration::from_millis(30);
        while Instant::now() < until {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let u = a.until(&Sample::now());
        let cores = u.generator_cores.expect("getrusage works on Linux");
        assert!(cores > 0.0, "{cores}");
        if let Some(s) = u.steal_share {
            assert!((0.0..=1.0).contains(&s), "{s}");
        }
    }
}
