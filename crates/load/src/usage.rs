//! What the machine did during the measured window: the generator's own threads' CPU time
//! and their wait for a CPU, and the share of the machine's CPU time the hypervisor took
//! (steal).
//!
//! A run whose pacer or sends were late is generator-limited, but the fix depends on why: a
//! generator that used all of its cores needs more of them (or shards); one that used half a
//! core and still ran late was waiting for a CPU held by something else — the gateway under
//! test on the same machine, other jobs, or, on a virtual machine, the hypervisor. The reasons
//! in the manifest say which, from these figures.
//!
//! The generator's threads are counted, not the process: `shadowgate demo` and `validate` run
//! the simulators and the mirror in the same process. Each thread's figures come from
//! `/proc/self/task/<tid>/schedstat` (ns on a CPU, ns runnable but waiting for one).

use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The generator's threads (Linux thread ids), registered by each thread as it starts.
#[derive(Debug, Clone, Default)]
pub struct ThreadSet(Arc<Mutex<Vec<i32>>>);

impl ThreadSet {
    /// Adds the calling thread.
    pub fn register_current(&self) {
        let tid = nix::unistd::gettid().as_raw();
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(tid);
    }

    fn tids(&self) -> Vec<i32> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// One reading: when, the generator threads' scheduler counters, and the machine's CPU times
/// (all CPUs, then each CPU).
#[derive(Debug, Clone)]
pub struct Sample {
    at: Instant,
    threads: Option<SchedStat>,
    machine: Option<CpuTimes>,
    per_cpu: Vec<CpuTimes>,
}

/// Summed `schedstat` of some threads, ns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct SchedStat {
    on_cpu_ns: u64,
    waiting_ns: u64,
}

/// The counters of one `/proc/stat` `cpu` line (the machine's, or one CPU's), in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CpuTimes {
    /// Every column summed (user, nice, system, idle, iowait, irq, softirq, steal).
    total: u64,
    steal: u64,
}

/// The measured window's usage.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct Usage {
    /// The generator threads' CPU time over the window, in cores (1.0 = one core throughout).
    pub generator_cores: Option<f64>,
    /// The time those threads were runnable but waiting for a CPU, over the window's length
    /// (0.05 = they waited 50 ms per second between them).
    pub cpu_wait_share: Option<f64>,
    /// Steal over the window, as a share of all the machine's CPU time (0.01 = 1 %).
    pub steal_share: Option<f64>,
    /// The largest steal share of a single CPU over the window: the hypervisor's stalls land
    /// on one vCPU at a time, and a single-threaded generator on it stops for all of them.
    pub steal_share_max_cpu: Option<f64>,
}

impl Sample {
    /// Reads the counters now (each `None` where the platform has none).
    pub fn now(threads: &ThreadSet) -> Sample {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        Sample {
            at: Instant::now(),
            threads: threads_schedstat(&threads.tids()),
            machine: parse_proc_stat(&stat),
            per_cpu: parse_proc_stat_cpus(&stat),
        }
    }

    /// The usage from `self` to `later`.
    pub fn until(&self, later: &Sample) -> Usage {
        let wall = later.at.saturating_duration_since(self.at).as_secs_f64();
        let (generator_cores, cpu_wait_share) = match (self.threads, later.threads) {
            (Some(a), Some(b)) if wall > 0.0 => (
                Some(b.on_cpu_ns.saturating_sub(a.on_cpu_ns) as f64 / 1e9 / wall),
                Some(b.waiting_ns.saturating_sub(a.waiting_ns) as f64 / 1e9 / wall),
            ),
            _ => (None, None),
        };
        let share = |a: &CpuTimes, b: &CpuTimes| {
            (b.total > a.total)
                .then(|| b.steal.saturating_sub(a.steal) as f64 / (b.total - a.total) as f64)
        };
        let steal_share = match (&self.machine, &later.machine) {
            (Some(a), Some(b)) => share(a, b),
            _ => None,
        };
        // The same CPUs in both readings (CPU hot-plug between them: no per-CPU figure).
        let steal_share_max_cpu = (self.per_cpu.len() == later.per_cpu.len())
            .then(|| {
                self.per_cpu
                    .iter()
                    .zip(&later.per_cpu)
                    .filter_map(|(a, b)| share(a, b))
                    .reduce(f64::max)
            })
            .flatten();
        Usage {
            generator_cores,
            cpu_wait_share,
            steal_share,
            steal_share_max_cpu,
        }
    }
}

/// The summed `schedstat` of these threads of this process; `None` when none could be read.
fn threads_schedstat(tids: &[i32]) -> Option<SchedStat> {
    let mut sum = SchedStat::default();
    let mut read = 0;
    for tid in tids {
        let Ok(text) = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")) else {
            continue;
        };
        if let Some(s) = parse_schedstat(&text) {
            sum.on_cpu_ns += s.on_cpu_ns;
            sum.waiting_ns += s.waiting_ns;
            read += 1;
        }
    }
    (read > 0).then_some(sum)
}

/// `/proc/.../schedstat`: `<ns on a CPU> <ns waiting on a run queue> <time slices>`.
fn parse_schedstat(text: &str) -> Option<SchedStat> {
    let mut it = text.split_whitespace().map(str::parse::<u64>);
    Some(SchedStat {
        on_cpu_ns: it.next()?.ok()?,
        waiting_ns: it.next()?.ok()?,
    })
}

/// The `cpu` line of `/proc/stat`: `cpu user nice system idle iowait irq softirq steal ...`
/// (guest time is already inside user and nice, so columns after steal are not added).
fn parse_proc_stat(text: &str) -> Option<CpuTimes> {
    parse_cpu_line(text.lines().find(|l| l.starts_with("cpu "))?)
}

/// The `cpuN` lines of `/proc/stat`, in order; empty when any is garbled.
fn parse_proc_stat_cpus(text: &str) -> Vec<CpuTimes> {
    text.lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .map(parse_cpu_line)
        .collect::<Option<Vec<_>>>()
        .unwrap_or_default()
}

fn parse_cpu_line(line: &str) -> Option<CpuTimes> {
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
    use std::time::Duration;

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
        assert_eq!(
            parse_proc_stat_cpus(text),
            vec![CpuTimes {
                total: 500,
                steal: 15
            }]
        );
        assert_eq!(
            parse_proc_stat_cpus("cpu  1 2 3 4 5 6 7 8\ncpu0 1 2\n"),
            vec![]
        );
    }

    #[test]
    fn schedstat_gives_cpu_and_wait() {
        assert_eq!(
            parse_schedstat("244808971 747606 73\n"),
            Some(SchedStat {
                on_cpu_ns: 244_808_971,
                waiting_ns: 747_606
            })
        );
        assert_eq!(parse_schedstat("12\n"), None);
        assert_eq!(parse_schedstat("x 1 2\n"), None);
    }

    #[test]
    fn usage_between_two_samples() {
        let t = Instant::now();
        let a = Sample {
            at: t,
            threads: Some(SchedStat {
                on_cpu_ns: 100_000_000,
                waiting_ns: 5_000_000,
            }),
            machine: Some(CpuTimes {
                total: 1000,
                steal: 10,
            }),
            per_cpu: vec![
                CpuTimes {
                    total: 500,
                    steal: 10,
                },
                CpuTimes {
                    total: 500,
                    steal: 0,
                },
            ],
        };
        let b = Sample {
            at: t + Duration::from_secs(2),
            threads: Some(SchedStat {
                on_cpu_ns: 1_100_000_000,
                waiting_ns: 105_000_000,
            }),
            machine: Some(CpuTimes {
                total: 1400,
                steal: 30,
            }),
            per_cpu: vec![
                CpuTimes {
                    total: 700,
                    steal: 28,
                },
                CpuTimes {
                    total: 700,
                    steal: 2,
                },
            ],
        };
        let u = a.until(&b);
        assert_eq!(u.generator_cores, Some(0.5));
        assert_eq!(u.cpu_wait_share, Some(0.05));
        assert_eq!(u.steal_share, Some(0.05));
        // 18 of CPU 0's 200 ticks: the stalls landed on one vCPU.
        assert_eq!(u.steal_share_max_cpu, Some(0.09));
        let none = Sample {
            at: t + Duration::from_secs(2),
            threads: None,
            machine: None,
            per_cpu: Vec::new(),
        };
        assert_eq!(a.until(&none), Usage::default());
    }

    #[test]
    fn only_the_registered_threads_are_counted() {
        let set = ThreadSet::default();
        assert!(
            Sample::now(&set).threads.is_none(),
            "no thread registered yet"
        );
        // A registered thread that burns a little CPU (bounded), and an unregistered one that
        // burns more: only the first is counted.
        let burn = |ms: u64| {
            let mut x = 0u64;
            let until = Instant::now() + Duration::from_millis(ms);
            while Instant::now() < until {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
            std::hint::black_box(x);
        };
        let registered = set.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let worker = std::thread::spawn(move || {
            registered.register_current();
            ready_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            burn(40);
            // Stay alive until sampled.
            go_rx.recv().ok();
        });
        ready_rx.recv().unwrap();
        let a = Sample::now(&set);
        go_tx.send(()).unwrap();
        let other = std::thread::spawn(move || burn(200));
        std::thread::sleep(Duration::from_millis(60));
        other.join().unwrap();
        let u = a.until(&Sample::now(&set));
        drop(go_tx);
        worker.join().unwrap();
        // The window lasted at least the other thread's 200 ms; the registered thread burned
        // at most 40 ms of CPU in it, the other up to 200 ms: counted, both would read > 1.
        let cores = u.generator_cores.expect("schedstat on Linux");
        assert!(cores > 0.0 && cores < 0.5, "{u:?}");
        assert!(u.cpu_wait_share.is_some_and(|w| w >= 0.0), "{u:?}");
        if let Some(s) = u.steal_share {
            assert!((0.0..=1.0).contains(&s), "{s}");
        }
    }
}
