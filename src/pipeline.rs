//! The pieces `demo` and `validate` chain together: a Ctrl-C that stops the step in progress
//! cleanly, simulated gateways on threads of their own, resource sampling, a load run that can
//! be interrupted, step-by-step progress, and the report over the sub-runs.
//!
//! Design decisions:
//! - **One signal owner.** [`Interrupt::install`] takes SIGINT (through `ctrlc`, before any
//!   load run starts: Goose's own `ctrlc` handler would replace any other, but `ctrlc` admits
//!   one per process, so Goose's attempt fails and ours stays) and SIGTERM (through tokio). On
//!   a signal it sets a flag every step checks and pulls Goose's killswitch, which ends a
//!   running load between two requests with its run directory finished. Goose clears the killswitch when a load test starts, so an interrupted
//!   [`run_load`] pulls it again until the run has returned. A second Ctrl-C exits at once
//!   (130), as a user pressing it twice expects.
//! - **A simulated gateway is a thread** ([`SimThread`]) with its own current-thread runtime,
//!   as a real gateway is a process of its own: its CPU is that thread's CPU
//!   (`/proc/self/task/TID`), so the demo's CPU criterion judges the candidate and not the
//!   load generator or the mirror sharing the process. Resident memory is per process and is
//!   reported for the whole demo (threads share it).
//! - **Progress**: each step prints one line on stdout when it starts; on a terminal, a line
//!   on stderr shows the step and its elapsed time, rewritten in place four times a second.

use std::io::{IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, anyhow, bail};
use shadowgate_load::{LoadOptions, LoadSummary};
use shadowgate_record::{Manifest, RunKind, RunWriter};
use shadowgate_report::render::Format;
use shadowgate_report::{Criteria, Options, Report, evaluate};
use shadowgate_sim::{SimConfig, StatsSnapshot};
use tokio::sync::{oneshot, watch};

use crate::sample_cmd::{Sampler, Source, run_sampler};

/// Exit code of a run stopped by SIGINT/SIGTERM (128 + SIGINT, as shells report it).
pub const EXIT_INTERRUPTED: u8 = 130;

/// How long an interrupted load run may take to wind down before it is abandoned.
const LOAD_STOP_LIMIT: Duration = Duration::from_secs(30);

/// Set once SIGINT or SIGTERM arrived.
#[derive(Debug, Clone)]
pub struct Interrupt {
    rx: watch::Receiver<Option<&'static str>>,
}

impl Interrupt {
    /// Takes over SIGINT and SIGTERM for the rest of the process.
    pub fn install() -> anyhow::Result<Interrupt> {
        use tokio::signal::unix::{SignalKind, signal};
        let (tx, rx) = watch::channel(None);
        let tx = Arc::new(tx);
        // SIGINT through ctrlc: Goose installs a ctrlc handler (which replaces any other SIGINT
        // handler, tokio's included) when a load test starts, unless one exists; this one is
        // first, so Goose's attempt fails harmlessly and Ctrl-C stays ours.
        let on_int = Arc::clone(&tx);
        ctrlc::set_handler(move || {
            if on_int.borrow().is_some() {
                eprintln!("second Ctrl-C: exiting now; the run directory may be incomplete");
                std::process::exit(i32::from(EXIT_INTERRUPTED));
            }
            stop_with(&on_int, "interrupted by SIGINT (Ctrl-C)");
        })
        .context("cannot watch SIGINT")?;
        let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
        tokio::spawn(async move {
            if term.recv().await.is_some() && tx.borrow().is_none() {
                stop_with(&tx, "stopped by SIGTERM");
            }
        });
        Ok(Interrupt { rx })
    }

    /// Why the run was stopped, if it was.
    pub fn reason(&self) -> Option<&'static str> {
        *self.rx.borrow()
    }

    /// Resolves when the signal arrives (never, if it does not).
    pub async fn wait(&self) {
        let mut rx = self.rx.clone();
        if rx.wait_for(Option::is_some).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

fn stop_with(tx: &watch::Sender<Option<&'static str>>, why: &'static str) {
    goose::trigger_killswitch(why);
    tx.send_replace(Some(why));
    eprintln!(
        "\n{why}: stopping the current step and writing what was recorded (Ctrl-C again to quit at once)"
    );
}

/// Runs a load test; on an interrupt, ends it early with its run directory finished.
pub async fn run_load(opts: LoadOptions, interrupt: &Interrupt) -> anyhow::Result<LoadSummary> {
    let dir = opts.out_dir.clone();
    let context = || format!("load run into {}", dir.display());
    let run = shadowgate_load::run(opts);
    tokio::pin!(run);
    tokio::select! {
        r = &mut run => return r.with_context(context),
        () = interrupt.wait() => {}
    }
    let deadline = Instant::now() + LOAD_STOP_LIMIT;
    // Bounded by LOAD_STOP_LIMIT: 200 ms per round.
    loop {
        goose::trigger_killswitch(interrupt.reason().unwrap_or("interrupted"));
        match tokio::time::timeout(Duration::from_millis(200), &mut run).await {
            Ok(r) => return r.with_context(context),
            Err(_) if Instant::now() < deadline => {}
            Err(_) => bail!(
                "the load run into {} did not stop within {LOAD_STOP_LIMIT:?} of the interrupt",
                dir.display()
            ),
        }
    }
}

/// A simulated gateway serving on a thread of its own.
#[derive(Debug)]
pub struct SimThread {
    addr: SocketAddr,
    tid: Option<i32>,
    stop: Option<oneshot::Sender<()>>,
    join: Option<std::thread::JoinHandle<Option<StatsSnapshot>>>,
}

impl SimThread {
    /// Starts `config` on 127.0.0.1:0 on a new thread named `sim-<name>`.
    pub async fn start(name: &str, config: SimConfig) -> anyhow::Result<SimThread> {
        let (ready_tx, ready_rx) = oneshot::channel::<Result<(SocketAddr, Option<i32>), String>>();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let join = std::thread::Builder::new()
            .name(format!("sim-{name}"))
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("cannot start a runtime: {e}")));
                        return None;
                    }
                };
                rt.block_on(async move {
                    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = ready_tx.send(Err(format!("cannot bind 127.0.0.1:0: {e}")));
                            return None;
                        }
                    };
                    let sim = match shadowgate_sim::start(config, listener).await {
                        Ok(s) => s,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.to_string()));
                            return None;
                        }
                    };
                    let _ = ready_tx.send(Ok((sim.local_addr(), crate::sample_cmd::current_tid())));
                    let _ = stop_rx.await;
                    let stats = sim.stats();
                    sim.shutdown().await;
                    Some(stats)
                })
            })
            .with_context(|| format!("cannot start a thread for the {name} simulator"))?;
        let (addr, tid) = tokio::time::timeout(Duration::from_secs(10), ready_rx)
            .await
            .map_err(|_| anyhow!("the {name} simulator did not start within 10 s"))?
            .map_err(|_| anyhow!("the {name} simulator's thread ended before it started"))?
            .map_err(|e| anyhow!("cannot start the {name} simulator: {e}"))?;
        Ok(SimThread {
            addr,
            tid,
            stop: Some(stop_tx),
            join: Some(join),
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Where its CPU is read: its own thread, else the whole process.
    pub fn source(&self) -> Source {
        match self.tid {
            Some(tid) => Source::Thread(tid),
            None => Source::Pid(std::process::id() as i32),
        }
    }

    /// Stops it (open connections finish within its shutdown grace); returns its counters.
    pub async fn stop(mut self) -> Option<StatsSnapshot> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let join = self.join.take()?;
        tokio::task::spawn_blocking(move || join.join().ok().flatten())
            .await
            .ok()
            .flatten()
    }
}

impl Drop for SimThread {
    fn drop(&mut self) {
        // Never joined here: dropping only tells the thread to stop.
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// Resource sampling into one run directory, one sampler per target.
#[derive(Debug)]
pub struct Sampling {
    run: RunWriter,
    stop: watch::Sender<bool>,
    tasks: tokio::task::JoinSet<anyhow::Result<u64>>,
}

impl Sampling {
    /// Creates `dir` and starts sampling every `interval`. Each target is (name, its URL as
    /// the other runs name it, where its samples come from); `scenario` is recorded as the
    /// load runs beside it record theirs.
    pub fn start(
        dir: &Path,
        targets: Vec<(String, String, Source)>,
        scenario: Option<String>,
        interval: Duration,
    ) -> anyhow::Result<Sampling> {
        let mut manifest = Manifest::new(RunKind::Sample, env!("CARGO_PKG_VERSION"));
        manifest.scenario = scenario;
        let mut sources = serde_json::Map::new();
        for (name, url, source) in &targets {
            manifest.targets.insert(name.clone(), url.clone());
            sources.insert(name.clone(), describe(source).into());
        }
        manifest
            .extra
            .insert("sample_sources".into(), sources.into());
        manifest
            .extra
            .insert("sample_interval_s".into(), interval.as_secs_f64().into());
        let run = RunWriter::create(dir, manifest)?;
        let writer = run.resources()?;
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = tokio::task::JoinSet::new();
        for (name, _, source) in targets {
            let mut rx = stop_rx.clone();
            let stopped = async move {
                let _ = rx.wait_for(|s| *s).await;
            };
            tasks.spawn(run_sampler(
                Sampler::new(source, name),
                writer.clone(),
                interval,
                stopped,
            ));
        }
        Ok(Sampling { run, stop, tasks })
    }

    /// Stops every sampler and finishes the run directory; returns the samples written.
    pub async fn stop(mut self) -> anyhow::Result<u64> {
        let _ = self.stop.send(true);
        let mut n = 0;
        while let Some(r) = self.tasks.join_next().await {
            n += r.map_err(|e| anyhow!("a sampler failed: {e}"))??;
        }
        self.run.finish()?;
        Ok(n)
    }
}

fn describe(source: &Source) -> String {
    match source {
        Source::Pid(pid) => format!("pid:{pid}"),
        Source::Thread(tid) => format!("thread:{tid}"),
        Source::Metrics(uri) => uri.to_string(),
    }
}

/// Step lines on stdout; on a terminal, a live elapsed-time line on stderr.
#[derive(Debug)]
pub struct Progress {
    started: Instant,
    steps: usize,
    done: usize,
    live: Option<Live>,
    tty: bool,
}

#[derive(Debug)]
struct Live {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Progress {
    pub fn new(steps: usize) -> Progress {
        Progress {
            started: Instant::now(),
            steps,
            done: 0,
            live: None,
            tty: std::io::stderr().is_terminal(),
        }
    }

    /// Starts step `what`, expected to take about `expect` (shown as a bar when known).
    pub fn step(&mut self, what: &str, expect: Option<Duration>) {
        self.clear();
        self.done += 1;
        println!(
            "[{}/{}] {what}  (t+{:.1}s)",
            self.done,
            self.steps,
            self.started.elapsed().as_secs_f64()
        );
        let _ = std::io::stdout().flush();
        if !self.tty {
            return;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let label = format!("[{}/{}] {what}", self.done, self.steps);
        let (flag, t0, total) = (Arc::clone(&stop), Instant::now(), self.started);
        let task = tokio::spawn(async move {
            // Bounded by the flag, checked every 250 ms; the task is also aborted on clear.
            while !flag.load(Ordering::Relaxed) {
                let e = t0.elapsed();
                let bar = match expect {
                    Some(x) if !x.is_zero() => {
                        let f = (e.as_secs_f64() / x.as_secs_f64()).min(1.0);
                        let n = (f * 20.0).round() as usize;
                        format!(
                            " [{}{}] ~{:.0}s",
                            "#".repeat(n),
                            ".".repeat(20 - n),
                            x.as_secs_f64()
                        )
                    }
                    _ => String::new(),
                };
                eprint!(
                    "\r\x1b[2K{label}{bar}  {:.1}s  (total {:.0}s)",
                    e.as_secs_f64(),
                    total.elapsed().as_secs_f64()
                );
                let _ = std::io::stderr().flush();
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
        self.live = Some(Live { stop, task });
    }

    /// Removes the live line.
    pub fn clear(&mut self) {
        if let Some(live) = self.live.take() {
            live.stop.store(true, Ordering::Relaxed);
            live.task.abort();
            eprint!("\r\x1b[2K");
            let _ = std::io::stderr().flush();
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.clear();
    }
}

/// The top-level manifest of a `demo` or `validate` directory: which sub-runs it holds, and
/// whether it was interrupted. Rewritten after every step, so an interrupted run is readable.
#[derive(Debug)]
pub struct Composite {
    dir: PathBuf,
    manifest: Manifest,
    runs: Vec<String>,
    compare_only: Vec<String>,
}

impl Composite {
    pub fn create(dir: &Path, kind: RunKind, phase: &str) -> anyhow::Result<Composite> {
        if dir.join(shadowgate_record::MANIFEST_FILE).exists() {
            bail!(
                "{} already holds a run; choose another --out directory",
                dir.display()
            );
        }
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the run directory {}", dir.display()))?;
        let mut manifest = Manifest::new(kind, env!("CARGO_PKG_VERSION"));
        manifest.phase = Some(phase.to_owned());
        let c = Composite {
            dir: dir.to_path_buf(),
            manifest,
            runs: Vec::new(),
            compare_only: Vec::new(),
        };
        c.write()?;
        Ok(c)
    }

    pub fn manifest_mut(&mut self) -> &mut Manifest {
        &mut self.manifest
    }

    /// Path of sub-run `name` (not created).
    pub fn sub(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Records sub-run `name` (merged into the verdict) once it has a manifest.
    pub fn add_run(&mut self, name: &str) -> anyhow::Result<()> {
        self.runs.push(name.to_owned());
        self.write()
    }

    /// Records sub-run `name` whose discrepancies and coverage count but whose latency and
    /// counts do not (a mirror step beside direct load runs).
    pub fn add_compare_only(&mut self, name: &str) -> anyhow::Result<()> {
        self.compare_only.push(name.to_owned());
        self.write()
    }

    /// Marks the end: complete, or partial with the reason.
    pub fn finish(&mut self, interrupted: Option<&str>) -> anyhow::Result<()> {
        self.manifest.ended_at = Some(SystemTime::now());
        self.manifest
            .extra
            .insert("partial".into(), interrupted.is_some().into());
        if let Some(why) = interrupted {
            self.manifest.extra.insert("interrupted".into(), why.into());
        }
        self.write()
    }

    fn write(&self) -> anyhow::Result<()> {
        let mut m = self.manifest.clone();
        m.extra.insert("runs".into(), self.runs.clone().into());
        m.extra
            .insert("compare_only".into(), self.compare_only.clone().into());
        m.write(&self.dir)?;
        Ok(())
    }
}

/// Judges `dir` (a composite directory) against `phase`, writes every format into it and
/// prints the terminal table. Returns the report.
pub fn report(
    dir: &Path,
    criteria: &Criteria,
    phase: &str,
    extra_warnings: Vec<String>,
) -> anyhow::Result<Report> {
    let (mut m, notes, _) = crate::report_cmd::open_measurements(&[dir.to_path_buf()])?;
    m.aliases.clear();
    let opts = Options {
        phase: phase.to_owned(),
        tool_version: env!("CARGO_PKG_VERSION").to_owned(),
        alpha: None,
    };
    let mut report = evaluate(criteria, &m, &opts)?;
    report.warnings.extend(notes);
    report.warnings.extend(extra_warnings);
    let formats = [
        Format::Term,
        Format::Markdown,
        Format::Json,
        Format::Csv,
        Format::Junit,
        Format::Html,
    ];
    crate::report_cmd::write_formats(&report, &m, &formats, dir)?;
    Ok(report)
}

/// Starts an in-process mirror on 127.0.0.1:0 from `primary` to `candidate` with the rules
/// file at `rules_path`, recording into `out` (the demo's and validate's mirror step).
pub async fn start_mirror(
    primary: String,
    candidate: String,
    out: PathBuf,
    rules_path: &Path,
) -> anyhow::Result<shadowgate_mirror::Mirror> {
    let rules = shadowgate_mirror::load_rules(rules_path)?;
    let config = shadowgate_mirror::RawMirrorConfig {
        primary,
        candidate,
        out,
        rules: std::sync::Arc::new(rules),
        rules_source: Some(rules_path.display().to_string()),
        tool_version: env!("CARGO_PKG_VERSION").to_owned(),
        ..shadowgate_mirror::RawMirrorConfig::default()
    }
    .validate()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot bind 127.0.0.1:0 for the mirror")?;
    Ok(shadowgate_mirror::start(config, listener, None).await?)
}

/// `reports/<prefix>-YYYYMMDD-HHMMSS` (UTC), or with `-2`, `-3`… if taken.
pub fn default_dir(prefix: &str) -> PathBuf {
    default_dir_at(prefix, SystemTime::now())
}

/// [`default_dir`] for the time `now`.
pub fn default_dir_at(prefix: &str, now: SystemTime) -> PathBuf {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = crate::mirror_cmd::civil_from_days(days);
    let name = format!(
        "{prefix}-{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    );
    let base = PathBuf::from("reports");
    // Bounded: the first free name among a thousand.
    (1..1000)
        .map(|n| {
            if n == 1 {
                base.join(&name)
            } else {
                base.join(format!("{name}-{n}"))
            }
        })
        .find(|p| !p.exists())
        .unwrap_or_else(|| base.join(&name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_sim_thread_serves_and_reports_its_own_thread() {
        let sim = SimThread::start("t", SimConfig::default_for(shadowgate_sim::Profile::Python))
            .await
            .unwrap();
        assert!(sim.url().starts_with("http://127.0.0.1:"));
        match sim.source() {
            Source::Thread(tid) => assert_ne!(tid, std::process::id() as i32),
            other => panic!("{other:?}"),
        }
        let stats = sim.stop().await;
        assert!(stats.is_some());
    }

    #[test]
    fn composite_manifest_lists_sub_runs_and_partial() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("v");
        let mut c = Composite::create(&dir, RunKind::Validate, "1").unwrap();
        assert!(
            Composite::create(&dir, RunKind::Validate, "1").is_err(),
            "never overwrites"
        );
        c.add_run("load-primary").unwrap();
        c.add_compare_only("mirror").unwrap();
        c.finish(Some("interrupted by SIGINT (Ctrl-C)")).unwrap();
        let m = Manifest::read(&dir).unwrap();
        assert_eq!(m.kind, RunKind::Validate);
        assert_eq!(m.phase.as_deref(), Some("1"));
        assert_eq!(m.extra["runs"], serde_json::json!(["load-primary"]));
        assert_eq!(m.extra["compare_only"], serde_json::json!(["mirror"]));
        assert_eq!(m.extra["partial"], serde_json::json!(true));
        assert!(m.ended_at.is_some());
    }

    #[test]
    fn default_dirs_are_under_reports() {
        let d = default_dir("demo");
        assert!(d.starts_with("reports"));
        assert!(
            d.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("demo-20")
        );
    }
}
