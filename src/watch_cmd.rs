//! `shadowgate watch --metrics URL [--rollback FILE] [--on-rollback CMD] [--interval 15s]`:
//! evaluate the rollback decision matrix live against a gateway's `/metrics` and `/health`,
//! print every rule state change, and run `--on-rollback` once when a rollback rule fires.
//! Exit 0 when no rollback rule fired, 1 when one did, 2 bad input.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::Uri;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use shadowgate_report::rollback::{Action, RollbackMatrix};
use shadowgate_report::watch::{Event, MetricNames, Snapshot, State, Watcher};
use shadowgate_report::{prom, units};

/// The built-in rollback matrix (scenarios/rollback.toml).
const BUILTIN_MATRIX: &str = include_str!("../scenarios/rollback.toml");

/// Arguments of `shadowgate watch`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "Examples:\n  \
    shadowgate watch --metrics http://127.0.0.1:8081/metrics --on-rollback './switch-to-python.sh'\n  \
    shadowgate watch --metrics http://gw:8081/metrics --names cpp --interval 5s\n\n\
    Rules are scenarios/rollback.toml's (built in) unless --rollback names another file. \
    --names cpp reads the C++ gateway's own metric names (http_requests_total, \
    gateway_errors_total, http_request_duration_seconds_bucket) instead of the plan's \
    veloz_gateway_* names.")]
pub struct WatchArgs {
    /// The gateway's Prometheus metrics URL (http).
    #[arg(long, value_name = "URL")]
    pub metrics: String,

    /// Rollback matrix (default: the built-in scenarios/rollback.toml).
    #[arg(long, value_name = "FILE")]
    pub rollback: Option<PathBuf>,

    /// Shell command run once (sh -c) when a rollback rule fires.
    #[arg(long, value_name = "CMD")]
    pub on_rollback: Option<String>,

    /// Time between scrapes.
    #[arg(long, value_name = "D", default_value = "15s", value_parser = humantime::parse_duration)]
    pub interval: Duration,

    /// Rate window: counters are compared with the scrape at least this much older.
    #[arg(long, value_name = "D", default_value = "1m", value_parser = humantime::parse_duration)]
    pub window: Duration,

    /// Health URL (default: /health on the metrics URL's host).
    #[arg(long, value_name = "URL")]
    pub health: Option<String>,

    /// Metric name set: veloz (the plan's veloz_gateway_*) or cpp (the real C++ gateway's).
    #[arg(long, value_name = "SET", default_value = "veloz", value_parser = ["veloz", "cpp"])]
    pub names: String,

    /// Request counter name (overrides --names).
    #[arg(long, value_name = "NAME")]
    pub requests_metric: Option<String>,

    /// Failed-request counter name, for gateways without a status label (overrides --names).
    #[arg(long, value_name = "NAME")]
    pub errors_metric: Option<String>,

    /// Duration histogram bucket name (overrides --names).
    #[arg(long, value_name = "NAME")]
    pub duration_metric: Option<String>,

    /// Baseline auth failure rate (default: the one measured over the first window).
    #[arg(long, value_name = "FRACTION")]
    pub baseline_auth_failure_rate: Option<f64>,

    /// Stop after this long (default: until SIGINT/SIGTERM).
    #[arg(long, value_name = "D", value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
}

fn names(args: &WatchArgs) -> MetricNames {
    let mut n = MetricNames::default();
    if args.names == "cpp" {
        n.requests = "http_requests_total".into();
        n.errors = Some("gateway_errors_total".into());
        n.duration_bucket = "http_request_duration_seconds_bucket".into();
    }
    if let Some(r) = &args.requests_metric {
        n.requests.clone_from(r);
    }
    if let Some(e) = &args.errors_metric {
        n.errors = Some(e.clone());
    }
    if let Some(d) = &args.duration_metric {
        n.duration_bucket.clone_from(d);
    }
    n
}

fn http_uri(url: &str, what: &str) -> anyhow::Result<Uri> {
    let uri: Uri = url.parse().with_context(|| {
        format!("{what} `{url}` is not a URL; write e.g. http://127.0.0.1:8081/metrics")
    })?;
    if uri.scheme_str() != Some("http") || uri.authority().is_none() {
        bail!("{what} `{url}`: only http://HOST:PORT/... URLs are supported");
    }
    Ok(uri)
}

/// Runs the command.
pub async fn run(args: WatchArgs) -> anyhow::Result<ExitCode> {
    let matrix = match &args.rollback {
        Some(path) => RollbackMatrix::load(path)?,
        None => RollbackMatrix::parse(BUILTIN_MATRIX, "built-in scenarios/rollback.toml")?,
    };
    if args.interval.is_zero() {
        bail!("--interval must be more than 0, e.g. 15s");
    }
    let metrics = http_uri(&args.metrics, "--metrics")?;
    let health = match &args.health {
        Some(h) => http_uri(h, "--health")?,
        None => {
            let authority = metrics
                .authority()
                .map(|a| a.as_str().to_owned())
                .unwrap_or_default();
            http_uri(&format!("http://{authority}/health"), "--health")?
        }
    };
    let names = names(&args);
    let mut watcher = Watcher::new(matrix, args.window, args.baseline_auth_failure_rate);
    println!(
        "watching {} ({} rules, scrape every {}, window {})",
        args.metrics,
        watcher.matrix().rules.len(),
        humantime::format_duration(args.interval),
        humantime::format_duration(args.window)
    );
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(2)
        .build(HttpConnector::new());
    let start = Instant::now();
    let mut tick = tokio::time::interval(args.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let stop = async {
        match args.duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(stop);
    let mut signals = crate::signals::Shutdown::install()?;
    let shutdown = signals.recv();
    tokio::pin!(shutdown);
    let mut rolled_back = false;
    let mut failed_scrapes = 0_u64;
    loop {
        tokio::select! {
            () = &mut stop => break,
            () = &mut shutdown => break,
            _ = tick.tick() => {}
        }
        let timeout = args.interval.min(Duration::from_secs(10));
        let mut snap = match get(&client, &metrics, timeout).await {
            Ok((200..=299, text)) => match prom::parse(&text) {
                Ok(scrape) => Snapshot::from_scrape(&scrape, &names),
                Err(e) => {
                    failed_scrapes += 1;
                    eprintln!("scrape of {}: not Prometheus text: {e}", args.metrics);
                    Snapshot::default()
                }
            },
            Ok((status, _)) => {
                failed_scrapes += 1;
                eprintln!("scrape of {} answered {status}", args.metrics);
                Snapshot::default()
            }
            Err(e) => {
                failed_scrapes += 1;
                eprintln!("scrape of {}: {e}", args.metrics);
                Snapshot::default()
            }
        };
        snap.health_ok = Some(match get(&client, &health, timeout).await {
            Ok((status, body)) => matches!(
                crate::health::classify(status, body.as_bytes()),
                crate::health::Verdict::Healthy(_)
            ),
            Err(_) => false,
        });
        for event in watcher.observe(start.elapsed(), snap) {
            print_event(&event, &watcher);
            if event.to == State::Firing && event.action == Action::Rollback && !rolled_back {
                rolled_back = true;
                if let Some(cmd) = &args.on_rollback {
                    run_hook(cmd, &event).await;
                }
            }
        }
    }
    println!(
        "stopped after {}; {}{}",
        humantime::format_duration(Duration::from_secs(start.elapsed().as_secs())),
        if rolled_back {
            "a rollback condition fired"
        } else {
            "no rollback condition fired"
        },
        if failed_scrapes > 0 {
            format!(" ({failed_scrapes} failed scrapes)")
        } else {
            String::new()
        }
    );
    Ok(if rolled_back {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_event(e: &Event, w: &Watcher) {
    let rule = &w.matrix().rules[e.rule];
    let value = e.value.map_or_else(
        || "no data".to_owned(),
        |v| {
            units::Display {
                value: v,
                dim: rule.expr.metric.dimension(),
            }
            .to_string()
        },
    );
    let state = |s: State| match s {
        State::Ok => "ok",
        State::Pending => "pending",
        State::Firing => "FIRING",
    };
    let action = match (e.to, e.action) {
        (State::Firing, Action::Rollback) => " -> ROLLBACK",
        (State::Firing, Action::Alert) => " -> ALERT",
        _ => "",
    };
    println!(
        "[{:>7.1}s] {}: {} -> {}{action} ({} = {value}; rule {} {} {}, for {})",
        e.at.as_secs_f64(),
        e.name,
        state(e.from),
        state(e.to),
        rule.expr.metric.name(),
        rule.expr.metric.name(),
        rule.expr.op,
        rule.expr.threshold_display(),
        humantime::format_duration(rule.hold)
    );
}

/// Runs the rollback command once; its failure is reported, not fatal (the watch goes on).
async fn run_hook(cmd: &str, e: &Event) {
    println!("running --on-rollback: {cmd}");
    let (cmd, rule) = (cmd.to_owned(), e.name.clone());
    // A blocking wait on its own thread: the runtime keeps scraping meanwhile.
    let status = tokio::task::spawn_blocking(move || {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(&cmd)
            .env("SHADOWGATE_RULE", rule)
            .stdin(std::process::Stdio::null())
            .status()
    })
    .await;
    match status {
        Ok(Ok(s)) if s.success() => println!("--on-rollback finished"),
        Ok(Ok(s)) => eprintln!("--on-rollback exited with {s}"),
        Ok(Err(err)) => eprintln!("--on-rollback could not start: {err}"),
        Err(err) => eprintln!("--on-rollback: {err}"),
    }
}

async fn get(
    client: &Client<HttpConnector, Empty<Bytes>>,
    uri: &Uri,
    timeout: Duration,
) -> Result<(u16, String), String> {
    let request = hyper::Request::get(uri.clone())
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let fetch = async {
        let response = client.request(request).await.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), 16 * 1024 * 1024)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(timeout, fetch)
        .await
        .map_err(|_| format!("no answer within {}", humantime::format_duration(timeout)))?
}
