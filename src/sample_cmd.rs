//! `shadowgate sample --pid PID | --metrics URL --out DIR`: record a target's CPU % and
//! resident memory every interval into a run directory's `resources.csv`.
//!
//! Sources:
//! - `/proc/PID/stat` (procfs): `utime + stime` in clock ticks, RSS in pages. CPU % is the
//!   ticks used between two samples over the wall time between them, in percent of one CPU
//!   (so it can exceed 100 on several cores); the first sample has no CPU value.
//! - a Prometheus `/metrics` URL: `process_cpu_seconds_total` (CPU % from its increase, as
//!   above) and `process_resident_memory_bytes`, read with our own text-format parser. A
//!   failed scrape is logged and skipped, not fatal: a gateway restarting for a second must
//!   not end the recording.
//!
//! The sampler runs until `--duration` has passed, SIGINT/SIGTERM, or the process exits; it
//! then finishes the run directory (`ended_at`). [`Sampler`] is what `validate` and `demo`
//! can drive in-process.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::Uri;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use shadowgate_record::{Manifest, ResourceSample, ResourceWriter, RunKind, RunWriter};

/// Arguments of `shadowgate sample`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "Examples:\n  \
    shadowgate sample --pid $(pgrep -f veloz_gateway) --target candidate --out reports/res-cpp\n  \
    shadowgate sample --metrics http://127.0.0.1:8081/metrics --duration 10m --out reports/res\n\n\
    Then: shadowgate report reports/load-cpp reports/res-cpp --phase 3")]
pub struct SampleArgs {
    /// Process to sample through /proc/PID.
    #[arg(
        long,
        value_name = "PID",
        required_unless_present = "metrics",
        conflicts_with = "metrics"
    )]
    pub pid: Option<i32>,

    /// Prometheus metrics URL exposing process_cpu_seconds_total and
    /// process_resident_memory_bytes.
    #[arg(long, value_name = "URL")]
    pub metrics: Option<String>,

    /// Run directory to create.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// Target name written with each sample (as the load and mirror runs name it).
    #[arg(long, value_name = "NAME", default_value = "candidate")]
    pub target: String,

    /// Time between samples.
    #[arg(long, value_name = "D", default_value = "1s", value_parser = humantime::parse_duration)]
    pub interval: Duration,

    /// Stop after this long (default: until SIGINT/SIGTERM or the process exits).
    #[arg(long, value_name = "D", value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
}

/// Where samples come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// `/proc/PID`.
    Pid(i32),
    /// A Prometheus text endpoint.
    Metrics(Uri),
    /// One thread of this process (`/proc/self/task/TID`): CPU of that thread alone, RSS of
    /// the whole process (threads share it). `demo` runs each simulated gateway on a thread of
    /// its own, so this is each gateway's own CPU.
    Thread(i32),
}

/// One raw reading: cumulative CPU seconds and RSS bytes.
#[derive(Debug, Clone, Copy)]
struct Reading {
    cpu_seconds: Option<f64>,
    rss_bytes: Option<u64>,
}

/// Takes readings from a source and turns them into samples.
#[derive(Debug)]
pub struct Sampler {
    source: Source,
    target: String,
    client: Client<HttpConnector, Empty<Bytes>>,
    last: Option<(Instant, f64)>,
}

/// Why a reading could not be taken.
#[derive(Debug)]
pub enum ReadError {
    /// The process is gone: stop sampling.
    Gone(String),
    /// A transient failure (scrape error): skip this sample.
    Skip(String),
}

impl Sampler {
    /// A sampler for `target`.
    pub fn new(source: Source, target: impl Into<String>) -> Sampler {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        Sampler {
            source,
            target: target.into(),
            client: Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(1)
                .build(connector),
            last: None,
        }
    }

    /// Takes one sample now.
    pub async fn sample(&mut self) -> Result<ResourceSample, ReadError> {
        let reading = match &self.source {
            Source::Pid(pid) => read_proc(*pid)?,
            Source::Thread(tid) => read_thread(*tid)?,
            Source::Metrics(uri) => self.read_metrics(uri.clone()).await?,
        };
        let now = Instant::now();
        let cpu = match (reading.cpu_seconds, self.last) {
            (Some(cpu), Some((t, prev))) => {
                let wall = now.duration_since(t).as_secs_f64();
                (wall > 0.0).then(|| (cpu - prev).max(0.0) / wall * 100.0)
            }
            _ => None,
        };
        if let Some(c) = reading.cpu_seconds {
            self.last = Some((now, c));
        }
        Ok(ResourceSample::new(
            SystemTime::now(),
            self.target.clone(),
            cpu,
            reading.rss_bytes,
        ))
    }

    async fn read_metrics(&self, uri: Uri) -> Result<Reading, ReadError> {
        let request = hyper::Request::get(uri.clone())
            .header(hyper::header::ACCEPT, "text/plain;version=0.0.4")
            .body(Empty::new())
            .map_err(|e| ReadError::Skip(e.to_string()))?;
        let fetch = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| format!("{uri}: {e}"))?;
            if !response.status().is_success() {
                return Err(format!("{uri} answered {}", response.status()));
            }
            let body = Limited::new(response.into_body(), 16 * 1024 * 1024)
                .collect()
                .await
                .map_err(|e| format!("{uri}: {e}"))?
                .to_bytes();
            String::from_utf8(body.to_vec()).map_err(|_| format!("{uri}: body is not UTF-8"))
        };
        let text = tokio::time::timeout(Duration::from_secs(5), fetch)
            .await
            .map_err(|_| ReadError::Skip(format!("{uri}: no answer within 5s")))?
            .map_err(ReadError::Skip)?;
        let scrape = shadowgate_report::prom::parse(&text)
            .map_err(|e| ReadError::Skip(format!("{uri}: {e}")))?;
        Ok(Reading {
            cpu_seconds: scrape.sum("process_cpu_seconds_total"),
            rss_bytes: scrape
                .sum("process_resident_memory_bytes")
                .filter(|b| b.is_finite() && *b >= 0.0)
                .map(|b| b as u64),
        })
    }
}

fn read_proc(pid: i32) -> Result<Reading, ReadError> {
    let gone = |e: procfs::ProcError| ReadError::Gone(format!("process {pid}: {e}"));
    let stat = procfs::process::Process::new(pid)
        .and_then(|p| p.stat())
        .map_err(gone)?;
    let ticks = procfs::ticks_per_second().max(1) as f64;
    Ok(Reading {
        cpu_seconds: Some((stat.utime + stat.stime) as f64 / ticks),
        rss_bytes: Some(stat.rss.saturating_mul(procfs::page_size())),
    })
}

fn read_thread(tid: i32) -> Result<Reading, ReadError> {
    let gone = |e: procfs::ProcError| ReadError::Gone(format!("thread {tid}: {e}"));
    let stat = procfs::process::Process::myself()
        .and_then(|p| p.task_from_tid(tid))
        .and_then(|t| t.stat())
        .map_err(gone)?;
    let ticks = procfs::ticks_per_second().max(1) as f64;
    Ok(Reading {
        cpu_seconds: Some((stat.utime + stat.stime) as f64 / ticks),
        rss_bytes: Some(stat.rss.saturating_mul(procfs::page_size())),
    })
}

/// The calling thread's id (for [`Source::Thread`]), from the `/proc/thread-self` link
/// (`PID/task/TID`); `None` where procfs does not have it.
pub fn current_tid() -> Option<i32> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

/// Samples into `writer` every `interval` until `stop` resolves or the process is gone.
/// Returns the number of samples written.
pub async fn run_sampler(
    mut sampler: Sampler,
    writer: ResourceWriter,
    interval: Duration,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<u64> {
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(interval.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut written = 0;
    loop {
        tokio::select! {
            () = &mut stop => break,
            _ = tick.tick() => {}
        }
        match sampler.sample().await {
            Ok(s) => {
                writer.write(&s)?;
                written += 1;
            }
            Err(ReadError::Gone(why)) => {
                tracing::info!(reason = %why, "Stopping: the sampled process is gone.");
                break;
            }
            Err(ReadError::Skip(why)) => {
                tracing::warn!(reason = %why, "Skipped a resource sample.");
            }
        }
    }
    writer.flush()?;
    Ok(written)
}

/// Runs the command.
pub async fn run(args: SampleArgs) -> anyhow::Result<ExitCode> {
    if args.interval.is_zero() {
        bail!("--interval must be more than 0, e.g. 1s");
    }
    let source = match (&args.pid, &args.metrics) {
        (Some(pid), _) => {
            // Fail now, before creating the run directory, if the process is not there.
            read_proc(*pid).map_err(|e| match e {
                ReadError::Gone(why) | ReadError::Skip(why) => {
                    anyhow::anyhow!("{why}; pass the PID of a running gateway")
                }
            })?;
            Source::Pid(*pid)
        }
        (None, Some(url)) => {
            let uri: Uri = url.parse().with_context(|| {
                format!("`{url}` is not a URL; write e.g. http://127.0.0.1:8081/metrics")
            })?;
            if uri.scheme_str() != Some("http") {
                bail!("`{url}`: only http:// URLs are supported");
            }
            Source::Metrics(uri)
        }
        (None, None) => bail!("give --pid PID or --metrics URL"),
    };
    let mut manifest = Manifest::new(RunKind::Sample, env!("CARGO_PKG_VERSION"));
    let described = match &source {
        Source::Pid(pid) => format!("pid:{pid}"),
        Source::Metrics(uri) => uri.to_string(),
        Source::Thread(tid) => format!("thread:{tid}"),
    };
    manifest
        .targets
        .insert(args.target.clone(), described.clone());
    manifest
        .extra
        .insert("sample_source".into(), described.into());
    manifest.extra.insert(
        "sample_interval_s".into(),
        args.interval.as_secs_f64().into(),
    );
    let run = RunWriter::create(&args.out, manifest)?;
    let writer = run.resources()?;
    let sampler = Sampler::new(source, args.target.clone());
    let duration = args.duration;
    // Before the path is printed: a signal right after it must stop us cleanly.
    let mut shutdown = crate::signals::Shutdown::install()?;
    let stop = async move {
        match duration {
            Some(d) => tokio::select! {
                () = tokio::time::sleep(d) => {}
                () = shutdown.recv() => {}
            },
            None => shutdown.recv().await,
        }
    };
    // Printed first so a wrapper script knows where the samples go.
    println!("sampling {} into {}", args.target, args.out.display());
    let n = run_sampler(sampler, writer, args.interval, stop).await?;
    run.finish()?;
    println!(
        "{n} samples written to {}",
        args.out.join(shadowgate_record::RESOURCES_FILE).display()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn samples_this_process_through_proc() {
        let mut s = Sampler::new(Source::Pid(std::process::id() as i32), "self");
        let first = s.sample().await.unwrap();
        assert_eq!(
            first.cpu_percent, None,
            "no CPU value without a previous reading"
        );
        assert!(first.rss_bytes.unwrap() > 1_000_000);
        // Burn a little CPU so the second sample has something to measure.
        let until = Instant::now() + Duration::from_millis(50);
        let mut x = 0_u64;
        while Instant::now() < until {
            x = x.wrapping_add(1);
        }
        std::hint::black_box(x);
        let second = s.sample().await.unwrap();
        let cpu = second.cpu_percent.unwrap();
        assert!((0.0..=800.0).contains(&cpu), "{cpu}");
        assert!(matches!(read_proc(i32::MAX), Err(ReadError::Gone(_))));
    }

    #[tokio::test]
    async fn samples_one_thread_of_this_process() {
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let worker = std::thread::spawn(move || {
            tx.send(current_tid()).unwrap();
            let _ = stop_rx.recv();
        });
        let tid = rx.recv().unwrap().expect("procfs has /proc/thread-self");
        assert_ne!(tid, std::process::id() as i32, "a thread, not the process");
        let mut s = Sampler::new(Source::Thread(tid), "sim");
        let sample = s.sample().await.unwrap();
        assert_eq!(sample.target, "sim");
        assert!(sample.rss_bytes.unwrap() > 1_000_000);
        stop_tx.send(()).unwrap();
        worker.join().unwrap();
        assert!(matches!(read_thread(i32::MAX), Err(ReadError::Gone(_))));
    }
}
