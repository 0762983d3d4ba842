//! `shadowgate failover-drill`: kill the C++ gateway under steady load behind the nginx split
//! and measure what clients see.
//!
//! The drill builds the rollout's whole path on loopback: a python-profile simulator (the
//! primary), a cpp-profile simulator (the candidate, a child process so it can be killed
//! like a crashed gateway), `shadowgate mirror` in the Python path, and a real nginx running
//! the split that `nginx-config` renders, with the plan's passive failure detection
//! (`max_fails`/`fail_timeout`, configurable so a test can use a short window). Then:
//!
//! 1. steady load: GETs at a fixed rate (each request's send time is fixed in advance, and a
//!    slow answer never delays the next send), for `--warmup`;
//! 2. the candidate is killed (SIGKILL by default: a crash, not a clean stop);
//! 3. after `--down-for` it is started again on the same port;
//! 4. the load goes on until traffic is seen back on the candidate (plus a short tail to
//!    measure the split again), or until `--return-within` passes.
//!
//! Every request's send time, status and `X-Upstream-Addr` (nginx's `$upstream_addr`: every
//! upstream the request was tried on, in order) is kept, and [`analyse`] — a pure function,
//! unit-tested on synthetic timelines — derives the figures: failed client requests, time
//! until N consecutive requests succeeded, time until nginx stopped trying the dead server
//! (routed around it), requests that paid for a retry on it, and time until traffic came
//! back after the restart. The result goes to `failover.json` and `failover.md` in `--out`
//! (with every child's log), and the markdown is printed.
//!
//! Design decisions: the drill manages its own gateways rather than taking kill/restart
//! commands, so it is one reproducible command (and a test); against a real deployment,
//! render the same split with `nginx-config` and kill the real process by hand while
//! loading. Only GETs are sent: nginx retries an idempotent request on the next server, so
//! a dead C++ gateway costs GET clients latency, not errors. A POST already sent to C++ when
//! it dies is not replayed (nginx never replays a non-idempotent request it has sent) and
//! fails with 502, which the report notes.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command};

use crate::nginx_cmd::{self, Split};

/// Arguments of `shadowgate failover-drill`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
EXAMPLES:
    shadowgate failover-drill --out reports/failover-1
    shadowgate failover-drill --out reports/failover-2 --cpp-weight 50 --rate 200 \\
        --fail-timeout 30s --down-for 40s
    shadowgate failover-drill --out /tmp/fo --fail-timeout 2s --warmup 2s --down-for 4s

Needs nginx (apt-get install nginx). Writes failover.json, failover.md and the logs of
nginx, the mirror and both simulated gateways into --out.")]
pub struct FailoverArgs {
    /// Where the results and logs go (created; must not exist or be empty).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// Percent of the traffic C++ serves (1 to 100).
    #[arg(long, default_value_t = 25, value_name = "N")]
    pub cpp_weight: u32,

    /// Requests per second, sent at fixed intervals.
    #[arg(long, default_value_t = 200, value_name = "N")]
    pub rate: u32,

    /// nginx max_fails: failed attempts within --fail-timeout that take a server out.
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub max_fails: u32,

    /// nginx fail_timeout: how long a failed server is skipped (the plan: 30s).
    #[arg(long, default_value = "30s", value_name = "D", value_parser = humantime::parse_duration)]
    pub fail_timeout: Duration,

    /// Steady load before the kill.
    #[arg(long, default_value = "5s", value_name = "D", value_parser = humantime::parse_duration)]
    pub warmup: Duration,

    /// How long the candidate stays dead.
    #[arg(long, default_value = "10s", value_name = "D", value_parser = humantime::parse_duration)]
    pub down_for: Duration,

    /// After the restart, how long to wait for traffic to come back to the candidate
    /// [default: --fail-timeout + 10s].
    #[arg(long, value_name = "D", value_parser = humantime::parse_duration)]
    pub return_within: Option<Duration>,

    /// Consecutive successful requests that count as "recovered" / "routed around".
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub consecutive: usize,

    /// Path every request GETs.
    #[arg(long, default_value = "/health", value_name = "PATH")]
    pub path: String,

    /// How the candidate dies: kill (SIGKILL, a crash) or term (SIGTERM, a clean stop).
    #[arg(long, value_enum, default_value_t = KillSignal::Kill)]
    pub signal: KillSignal,

    /// Exit 1 if more client requests than this failed.
    #[arg(long, value_name = "N")]
    pub max_failed: Option<u64>,

    /// The nginx binary [default: nginx on PATH, else /usr/sbin/nginx].
    #[arg(long, value_name = "PATH", env = "NGINX")]
    pub nginx: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KillSignal {
    Kill,
    Term,
}

/// One client request of the drill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Scheduled send time, from the start of the load.
    pub sent: Duration,
    /// From the scheduled send time to the end of the answer (or the error).
    pub latency: Duration,
    /// HTTP status, if an answer came.
    pub status: Option<u16>,
    /// Why no answer came (connect error, timeout, ...).
    pub error: Option<String>,
    /// nginx's `$upstream_addr`: every server tried, in order.
    pub upstreams: Vec<String>,
}

impl Sample {
    fn ok(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }

    fn touched(&self, addr: &str) -> bool {
        self.upstreams.iter().any(|u| u == addr)
    }

    fn served_by(&self, addr: &str) -> bool {
        self.ok() && self.upstreams.last().is_some_and(|u| u == addr)
    }
}

/// `127.0.0.1:1, 127.0.0.1:2 : 127.0.0.1:3` → the three addresses (`,` separates retries,
/// ` : ` internal redirects).
pub fn parse_upstreams(header: &str) -> Vec<String> {
    header
        .split([',', ' '])
        .map(str::trim)
        .filter(|s| !s.is_empty() && *s != ":")
        .map(str::to_owned)
        .collect()
}

/// When the candidate went down and came back, from the start of the load.
#[derive(Debug, Clone, Copy)]
pub struct Timeline {
    pub kill: Duration,
    pub restart: Option<Duration>,
}

/// What the drill measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    pub requests: usize,
    pub failed: usize,
    pub failed_before_kill: usize,
    pub failed_after_kill: usize,
    /// Share of requests the candidate served before the kill.
    pub cpp_share_before: Option<f64>,
    /// Requests sent between the kill and the restart that nginx tried on the dead candidate
    /// first (each paid for a failed attempt, and failed if it could not be retried).
    pub touched_dead: usize,
    /// The slowest of those.
    pub touched_dead_max_latency: Option<Duration>,
    /// Kill → first of `consecutive` successful requests in a row.
    pub recovered_after: Option<Duration>,
    /// Kill → first of `consecutive` successful requests in a row none of which was tried
    /// on the candidate: nginx had taken it out.
    pub routed_around_after: Option<Duration>,
    /// Requests tried on the dead candidate after nginx had routed around it: the re-probes
    /// nginx makes each time fail_timeout expires.
    pub probes_while_down: usize,
    /// Restart → first request the candidate served again.
    pub returned_after: Option<Duration>,
    /// Share the candidate served from its return to the end of the load.
    pub cpp_share_after_return: Option<f64>,
    pub max_latency: Option<Duration>,
    /// The five slowest requests, slowest first: where the drill's latency went.
    pub slowest: Vec<Sample>,
}

/// Derives the drill's figures from the samples (in any order), the timeline and the
/// candidate's address.
pub fn analyse(samples: &[Sample], t: Timeline, cpp: &str, consecutive: usize) -> Analysis {
    let mut s: Vec<&Sample> = samples.iter().collect();
    s.sort_by_key(|x| x.sent);
    let consecutive = consecutive.max(1);
    let before: Vec<&Sample> = s.iter().copied().filter(|x| x.sent < t.kill).collect();
    let after_kill: Vec<&Sample> = s.iter().copied().filter(|x| x.sent >= t.kill).collect();
    let down_end = t.restart.unwrap_or(Duration::MAX);
    let down: Vec<&Sample> = after_kill
        .iter()
        .copied()
        .filter(|x| x.sent < down_end)
        .collect();
    let share = |xs: &[&Sample]| {
        let ok = xs.iter().filter(|x| x.ok()).count();
        (ok > 0).then(|| xs.iter().filter(|x| x.served_by(cpp)).count() as f64 / ok as f64)
    };
    // The first index from which `consecutive` requests in a row satisfy `good`.
    let first_run = |xs: &[&Sample], good: &dyn Fn(&Sample) -> bool| {
        let mut run = 0;
        for (i, x) in xs.iter().enumerate() {
            if good(x) {
                run += 1;
                if run == consecutive {
                    return Some(xs[i + 1 - consecutive].sent.saturating_sub(t.kill));
                }
            } else {
                run = 0;
            }
        }
        None
    };
    let recovered_after = first_run(&after_kill, &|x| x.ok());
    let routed_around_after = first_run(&down, &|x| x.ok() && !x.touched(cpp));
    let touched: Vec<&Sample> = down.iter().copied().filter(|x| x.touched(cpp)).collect();
    let probes_while_down = routed_around_after.map_or(0, |r| {
        touched
            .iter()
            .filter(|x| x.sent.saturating_sub(t.kill) > r)
            .count()
    });
    let returned = t.restart.and_then(|r| {
        s.iter()
            .find(|x| x.sent >= r && x.served_by(cpp))
            .map(|x| (x.sent, x.sent - r))
    });
    let cpp_share_after_return = returned.and_then(|(at, _)| {
        let tail: Vec<&Sample> = s.iter().copied().filter(|x| x.sent >= at).collect();
        share(&tail)
    });
    let failed = |xs: &[&Sample]| xs.iter().filter(|x| !x.ok()).count();
    Analysis {
        requests: s.len(),
        failed: failed(&s),
        failed_before_kill: failed(&before),
        failed_after_kill: failed(&after_kill),
        cpp_share_before: share(&before),
        touched_dead: touched.len(),
        touched_dead_max_latency: touched.iter().map(|x| x.latency).max(),
        recovered_after,
        routed_around_after,
        probes_while_down,
        returned_after: returned.map(|(_, d)| d),
        cpp_share_after_return,
        max_latency: s.iter().map(|x| x.latency).max(),
        slowest: {
            let mut by_latency = s.clone();
            by_latency.sort_by_key(|x| std::cmp::Reverse(x.latency));
            by_latency.into_iter().take(5).cloned().collect()
        },
    }
}

fn ms(d: Option<Duration>) -> Value {
    d.map_or(Value::Null, |d| {
        json!((d.as_secs_f64() * 1e4).round() / 10.0)
    })
}

fn pct(x: Option<f64>) -> Value {
    x.map_or(Value::Null, |x| json!((x * 1e3).round() / 10.0))
}

/// The JSON summary (times in milliseconds, shares in percent).
pub fn to_json(a: &Analysis, args: &FailoverArgs, t: Timeline) -> Value {
    json!({
        "settings": {
            "cpp_weight_percent": args.cpp_weight,
            "rate_per_s": args.rate,
            "max_fails": args.max_fails,
            "fail_timeout_ms": args.fail_timeout.as_millis() as u64,
            "signal": match args.signal { KillSignal::Kill => "SIGKILL", KillSignal::Term => "SIGTERM" },
            "path": args.path,
            "consecutive": args.consecutive,
        },
        "kill_at_ms": ms(Some(t.kill)),
        "restart_at_ms": ms(t.restart),
        "requests": a.requests,
        "failed": a.failed,
        "failed_before_kill": a.failed_before_kill,
        "failed_after_kill": a.failed_after_kill,
        "cpp_share_before_percent": pct(a.cpp_share_before),
        "touched_dead_candidate": a.touched_dead,
        "touched_dead_max_latency_ms": ms(a.touched_dead_max_latency),
        "recovered_after_ms": ms(a.recovered_after),
        "routed_around_after_ms": ms(a.routed_around_after),
        "probes_while_down": a.probes_while_down,
        "returned": a.returned_after.is_some(),
        "returned_after_ms": ms(a.returned_after),
        "cpp_share_after_return_percent": pct(a.cpp_share_after_return),
        "max_latency_ms": ms(a.max_latency),
        "slowest": a.slowest.iter().map(|x| json!({
            "sent_ms": ms(Some(x.sent)),
            "latency_ms": ms(Some(x.latency)),
            "status": x.status,
            "error": x.error,
            "upstreams": x.upstreams,
        })).collect::<Vec<_>>(),
    })
}

fn show(d: Option<Duration>) -> String {
    d.map_or_else(
        || "never".to_owned(),
        |d| format!("{:.1} ms", d.as_secs_f64() * 1e3),
    )
}

fn show_pct(x: Option<f64>) -> String {
    x.map_or_else(|| "n/a".to_owned(), |x| format!("{:.1} %", x * 100.0))
}

/// The markdown summary.
pub fn to_markdown(a: &Analysis, args: &FailoverArgs, t: Timeline) -> String {
    let mut out = String::new();
    let sig = match args.signal {
        KillSignal::Kill => "SIGKILL",
        KillSignal::Term => "SIGTERM",
    };
    // `writeln!` into a String cannot fail.
    let _ = writeln!(out, "# Failover drill\n");
    let _ = writeln!(
        out,
        "nginx split {} % Python (through the mirror) / {} % C++, `max_fails={} fail_timeout={}`; \
         {} GET {} per second; C++ killed with {sig} at {}, restarted at {}.\n",
        100 - args.cpp_weight,
        args.cpp_weight,
        args.max_fails,
        nginx_cmd::nginx_time(args.fail_timeout),
        args.rate,
        args.path,
        show(Some(t.kill)),
        show(t.restart),
    );
    let _ = writeln!(out, "| measure | value |\n|---|---|");
    let rows = [
        ("client requests", a.requests.to_string()),
        (
            "failed client requests (after the kill / before)",
            format!(
                "{} ({} / {})",
                a.failed, a.failed_after_kill, a.failed_before_kill
            ),
        ),
        ("C++ share before the kill", show_pct(a.cpp_share_before)),
        (
            "requests tried on the dead C++ first (retried by nginx)",
            a.touched_dead.to_string(),
        ),
        ("slowest of those", show(a.touched_dead_max_latency)),
        (
            &format!("kill → {} consecutive successes", args.consecutive),
            show(a.recovered_after),
        ),
        (
            "kill → routed around (that many in a row not sent to C++)",
            show(a.routed_around_after),
        ),
        (
            "re-probes of the dead C++ after that (one per fail_timeout)",
            a.probes_while_down.to_string(),
        ),
        ("restart → traffic back on C++", show(a.returned_after)),
        (
            "C++ share after its return",
            show_pct(a.cpp_share_after_return),
        ),
        ("slowest request", show(a.max_latency)),
    ];
    for (k, v) in rows {
        let _ = writeln!(out, "| {k} | {v} |");
    }
    let _ = writeln!(
        out,
        "\nOnly GETs were sent: nginx retries an idempotent request on the next server, so a \
         dead C++ gateway costs them a failed attempt, not an error. A POST already sent to \
         C++ when it died is not replayed and fails with 502 (one refused at connect is \
         passed on like a GET)."
    );
    out
}

/// A child process, stopped when dropped (so an early error leaves nothing running): with
/// SIGTERM for nginx (a SIGKILLed master would leave its worker behind), SIGKILL otherwise.
struct Guard {
    child: Option<Child>,
    term_on_drop: bool,
}

impl Guard {
    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Waits (polling, bounded) for the child to exit; true if it did.
    async fn wait_exit(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            match self.child.as_mut().map(Child::try_wait) {
                None | Some(Ok(Some(_))) | Some(Err(_)) => return true,
                Some(Ok(None)) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        false
    }

    /// SIGKILL, then reap.
    async fn kill(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
        }
        self.wait_exit(Duration::from_secs(5)).await;
        self.child = None;
    }

    /// SIGTERM, then SIGKILL after `grace`.
    async fn stop(&mut self, grace: Duration) {
        signal(self.pid(), "TERM");
        if !self.wait_exit(grace).await {
            self.kill().await;
        }
        self.child = None;
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if self.term_on_drop {
                signal(Some(c.id()), "TERM");
            } else {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// Sends `signal` to `pid` with kill(1).
fn signal(pid: Option<u32>, signal: &str) {
    if let Some(pid) = pid {
        let _ = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn as_strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// A shadowgate server child whose first stdout line names its address.
struct Proc {
    guard: Guard,
    addr: SocketAddr,
    first_line: String,
}

/// Starts `exe ARGS` with stderr to `log`, and reads its first stdout line (bounded).
async fn spawn_server(exe: &Path, args: &[&str], log: &Path) -> anyhow::Result<Proc> {
    let err =
        std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let mut child = Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(err))
        .spawn()
        .with_context(|| format!("cannot start {} {}", exe.display(), args.join(" ")))?;
    let stdout = child.stdout.take();
    let mut guard = Guard {
        child: Some(child),
        term_on_drop: false,
    };
    let stdout = stdout.context("child stdout was not captured")?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    // A blocking reader thread: the first line is handed over, the rest drained so the child
    // never blocks on a full pipe. It ends when the child's stdout closes.
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let _ = tx.send(lines.next().and_then(Result::ok));
        for _ in lines {}
    });
    let first_line = match tokio::time::timeout(Duration::from_secs(30), rx).await {
        Ok(Ok(Some(line))) => line,
        _ => {
            guard.kill().await;
            bail!(
                "`{} {}` printed no address; see {}",
                exe.display(),
                args.join(" "),
                log.display()
            )
        }
    };
    let addr = first_line
        .split_whitespace()
        .find_map(|w| {
            w.trim_start_matches("http://")
                .trim_end_matches(['/', ',', '.', ';'])
                .parse()
                .ok()
        })
        .with_context(|| format!("no address in {first_line:?}"))?;
    Ok(Proc {
        guard,
        addr,
        first_line,
    })
}

fn nginx_binary(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p.to_owned());
    }
    let on_path = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("nginx"))
            .find(|p| p.is_file())
    });
    let p = on_path.unwrap_or_else(|| PathBuf::from("/usr/sbin/nginx"));
    if !p.is_file() {
        bail!(
            "nginx not found on PATH or at /usr/sbin/nginx: install it (apt-get install nginx) or give --nginx"
        );
    }
    Ok(p)
}

/// Starts nginx with the split on a free loopback port (nginx cannot bind port 0: a port is
/// found free and released, and another is tried if nginx loses the race for it).
async fn start_nginx(bin: &Path, dir: &Path, split: &Split) -> anyhow::Result<(Guard, SocketAddr)> {
    let conf_path = dir.join("nginx.conf");
    let err_log = dir.join("error.log");
    let mut last = String::new();
    for _ in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("cannot find a free port")?
            .port();
        let split = Split {
            listen: format!("127.0.0.1:{port}"),
            ..split.clone()
        };
        let conf = nginx_cmd::standalone(&nginx_cmd::render(&split)?, dir);
        nginx_cmd::write_atomically(&conf_path, &conf)?;
        let child = Command::new(bin)
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(&err_log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let mut guard = Guard {
            child: Some(child),
            term_on_drop: true,
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(Ok(Some(status))) = guard.child.as_mut().map(Child::try_wait) {
                last = format!(
                    "nginx exited ({status}): {}",
                    std::fs::read_to_string(&err_log).unwrap_or_default().trim()
                );
                break;
            }
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok((guard, addr));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        guard.stop(Duration::from_secs(2)).await;
        if !last.contains("Address already in use") {
            break;
        }
    }
    bail!("nginx did not start: {last}")
}

type Samples = Arc<Mutex<Vec<Sample>>>;

fn lock(s: &Samples) -> std::sync::MutexGuard<'_, Vec<Sample>> {
    // A panic while holding the lock only ever happens between pushes; the data is fine.
    s.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Sends GETs at `rate` until `stop` flips (or `limit` requests), each on its own task;
/// returns when all have answered or timed out.
async fn load(
    target: SocketAddr,
    path: String,
    (rate, limit): (u32, u32),
    t0: Instant,
    samples: Samples,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(2)));
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let uri: hyper::Uri = match format!("http://{target}{path}").parse() {
        Ok(u) => u,
        Err(_) => return,
    };
    let period = Duration::from_secs(1) / rate.max(1);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..limit {
        if *stop.borrow() {
            break;
        }
        let due = t0 + period * i;
        tokio::time::sleep_until(due.into()).await;
        let (client, uri, samples) = (client.clone(), uri.clone(), samples.clone());
        tasks.spawn(async move {
            let sample = one_request(&client, uri, due, t0).await;
            lock(&samples).push(sample);
        });
        // Reap finished tasks so the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

async fn one_request(
    client: &Client<HttpConnector, Empty<Bytes>>,
    uri: hyper::Uri,
    due: Instant,
    t0: Instant,
) -> Sample {
    let sent = due.saturating_duration_since(t0);
    let exchange = async {
        let req = hyper::Request::get(uri)
            .body(Empty::new())
            .map_err(|e| format!("request: {e}"))?;
        let resp = client
            .request(req)
            .await
            .map_err(|e| format!("send: {e}"))?;
        let status = resp.status().as_u16();
        let upstreams = resp
            .headers()
            .get("x-upstream-addr")
            .and_then(|v| v.to_str().ok())
            .map(parse_upstreams)
            .unwrap_or_default();
        resp.into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?;
        Ok::<_, String>((status, upstreams))
    };
    let result = tokio::time::timeout(Duration::from_secs(5), exchange).await;
    let latency = due.elapsed();
    let (status, error, upstreams) = match result {
        Ok(Ok((status, up))) => (Some(status), None, up),
        Ok(Err(e)) => (None, Some(e), Vec::new()),
        Err(_) => (None, Some("timeout after 5s".to_owned()), Vec::new()),
    };
    Sample {
        sent,
        latency,
        status,
        error,
        upstreams,
    }
}

fn validate(args: &FailoverArgs) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    if !(1..=100).contains(&args.cpp_weight) {
        problems.push(format!(
            "--cpp-weight {} must be 1 to 100: at 0 the candidate gets no traffic to fail over",
            args.cpp_weight
        ));
    }
    if !(1..=5000).contains(&args.rate) {
        problems.push(format!("--rate {} must be 1 to 5000 per second", args.rate));
    }
    if args.fail_timeout < Duration::from_millis(100) {
        problems.push("--fail-timeout must be at least 100ms".to_owned());
    }
    if args.warmup < Duration::from_millis(500) {
        problems
            .push("--warmup must be at least 500ms (the split needs requests to show)".to_owned());
    }
    if args.down_for.is_zero() {
        problems.push("--down-for must be more than 0".to_owned());
    }
    if args.consecutive == 0 {
        problems.push("--consecutive must be at least 1".to_owned());
    }
    if !args.path.starts_with('/') {
        problems.push(format!("--path {:?} must start with /", args.path));
    }
    if args.out.exists() && std::fs::read_dir(&args.out).map_or(true, |mut d| d.next().is_some()) {
        problems.push(format!(
            "--out {} exists and is not empty: give a new directory",
            args.out.display()
        ));
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("\n  "));
    }
    Ok(())
}

pub async fn run(args: FailoverArgs) -> anyhow::Result<ExitCode> {
    validate(&args)?;
    let nginx_bin = nginx_binary(args.nginx.as_deref())?;
    let exe = std::env::current_exe().context("cannot find the shadowgate binary")?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let out = std::path::absolute(&args.out).context("cannot resolve --out")?;
    let nginx_dir = out.join("nginx");
    std::fs::create_dir_all(&nginx_dir)
        .with_context(|| format!("cannot create {}", nginx_dir.display()))?;

    eprintln!("starting the gateways, the mirror and nginx");
    let python = spawn_server(
        &exe,
        &["sim", "--profile", "python", "--listen", "127.0.0.1:0"],
        &out.join("python.log"),
    )
    .await?;
    let cpp_args = |listen: &str| {
        vec![
            "sim".to_owned(),
            "--profile".to_owned(),
            "cpp".to_owned(),
            "--auth".to_owned(),
            "off".to_owned(),
            "--listen".to_owned(),
            listen.to_owned(),
        ]
    };
    let cpp = spawn_server(
        &exe,
        &as_strs(&cpp_args("127.0.0.1:0")),
        &out.join("cpp.log"),
    )
    .await?;
    let cpp_addr = cpp.addr;
    let python_url = format!("http://{}", python.addr);
    let cpp_url = format!("http://{cpp_addr}");
    let mirror_out = out.join("mirror");
    let mirror_out_s = mirror_out.display().to_string();
    let mirror = spawn_server(
        &exe,
        &[
            "mirror",
            "--primary",
            &python_url,
            "--candidate",
            &cpp_url,
            "--listen",
            "127.0.0.1:0",
            "--out",
            &mirror_out_s,
        ],
        &out.join("mirror.log"),
    )
    .await?;
    tracing::debug!(mirror = %mirror.first_line, "mirror up");
    let split = Split {
        cpp_weight: args.cpp_weight,
        python: python.addr.to_string(),
        cpp: cpp_addr.to_string(),
        mirror: Some(mirror.addr.to_string()),
        listen: String::new(),
        header_switch: false,
        max_fails: args.max_fails,
        fail_timeout: args.fail_timeout,
    };
    let (nginx, nginx_addr) = start_nginx(&nginx_bin, &nginx_dir, &split).await?;
    eprintln!(
        "nginx on {nginx_addr}: {} % via mirror {} -> python {}, {} % cpp {cpp_addr}",
        100 - args.cpp_weight,
        mirror.addr,
        python.addr,
        args.cpp_weight
    );

    let samples: Samples = Arc::new(Mutex::new(Vec::new()));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let t0 = Instant::now() + Duration::from_millis(50);
    let return_within = args
        .return_within
        .unwrap_or(args.fail_timeout + Duration::from_secs(10));
    // An upper bound on the load, far past the drill's own end (which stops it first).
    let longest = args.warmup + args.down_for + return_within + Duration::from_secs(60);
    let limit =
        u32::try_from(u128::from(args.rate) * longest.as_millis() / 1000).unwrap_or(u32::MAX);
    let loader = tokio::spawn(load(
        nginx_addr,
        args.path.clone(),
        (args.rate, limit),
        t0,
        samples.clone(),
        stop_rx,
    ));

    // The drill's script. Every wait below is bounded.
    tokio::time::sleep_until((t0 + args.warmup).into()).await;
    eprintln!("killing the candidate ({:?})", args.signal);
    let kill_at = t0.elapsed();
    let mut cpp_guard = cpp.guard;
    match args.signal {
        KillSignal::Kill => cpp_guard.kill().await,
        KillSignal::Term => cpp_guard.stop(Duration::from_secs(10)).await,
    }
    tokio::time::sleep(args.down_for).await;
    eprintln!("restarting the candidate on {cpp_addr}");
    let listen = cpp_addr.to_string();
    let mut restarted = None;
    for attempt in 0..20 {
        match spawn_server(
            &exe,
            &as_strs(&cpp_args(&listen)),
            &out.join(format!("cpp-restart-{attempt}.log")),
        )
        .await
        {
            Ok(p) => {
                restarted = Some(p);
                break;
            }
            Err(e) => {
                tracing::debug!(error = %e, "candidate restart failed, retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let restart_at = restarted.as_ref().map(|_| t0.elapsed());
    if restarted.is_none() {
        eprintln!("the candidate could not be restarted on {cpp_addr}");
    }

    // Wait (bounded) for traffic to come back, then a short tail to measure the split.
    let cpp_s = cpp_addr.to_string();
    if let Some(r) = restart_at {
        let deadline = Instant::now() + return_within;
        while Instant::now() < deadline {
            let back = lock(&samples)
                .iter()
                .any(|x| x.sent >= r && x.served_by(&cpp_s));
            if back {
                eprintln!("traffic is back on the candidate");
                tokio::time::sleep(Duration::from_secs(2)).await;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(15), loader).await;

    // Stop everything; the mirror finishes its run directory on SIGTERM.
    let grace = Duration::from_secs(10);
    let mut nginx = nginx;
    nginx.stop(grace).await;
    let (mut mirror, mut python) = (mirror.guard, python.guard);
    mirror.stop(grace).await;
    python.stop(grace).await;
    if let Some(mut p) = restarted {
        p.guard.stop(grace).await;
    }

    let timeline = Timeline {
        kill: kill_at,
        restart: restart_at,
    };
    let all = std::mem::take(&mut *lock(&samples));
    let a = analyse(&all, timeline, &cpp_s, args.consecutive);
    let json_text = serde_json::to_string_pretty(&to_json(&a, &args, timeline))
        .context("cannot encode the summary")?;
    let md = to_markdown(&a, &args, timeline);
    std::fs::write(out.join("failover.json"), json_text + "\n")
        .with_context(|| format!("cannot write {}", out.join("failover.json").display()))?;
    std::fs::write(out.join("failover.md"), &md)
        .with_context(|| format!("cannot write {}", out.join("failover.md").display()))?;
    print!("{md}");
    println!("\nwritten: {}", out.join("failover.json").display());

    let too_many = args.max_failed.is_some_and(|m| a.failed as u64 > m);
    if a.returned_after.is_none() {
        eprintln!("traffic did not come back to the candidate within {return_within:?}");
    }
    if too_many {
        eprintln!(
            "{} client requests failed (--max-failed {:?})",
            a.failed, args.max_failed
        );
    }
    Ok(if a.returned_after.is_some() && !too_many {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CPP: &str = "127.0.0.1:81";
    const MIRROR: &str = "127.0.0.1:80";

    fn s(ms: u64, status: Option<u16>, up: &[&str]) -> Sample {
        Sample {
            sent: Duration::from_millis(ms),
            latency: Duration::from_millis(if up.len() > 1 { 30 } else { 1 }),
            status,
            error: status.is_none().then(|| "send: reset".to_owned()),
            upstreams: up.iter().map(|u| (*u).to_owned()).collect(),
        }
    }

    #[test]
    fn upstream_lists() {
        assert_eq!(parse_upstreams("127.0.0.1:81"), [CPP]);
        assert_eq!(
            parse_upstreams("127.0.0.1:81, 127.0.0.1:80 : 127.0.0.1:82"),
            [CPP, MIRROR, "127.0.0.1:82"]
        );
        assert!(parse_upstreams("").is_empty());
    }

    /// A synthetic drill at 100 req/s, 1 in 4 to C++; killed at 1 s, restarted at 3 s.
    fn timeline() -> Vec<Sample> {
        let mut v = Vec::new();
        for i in 0..600u64 {
            let t = i * 10;
            let to_cpp = i % 4 == 0;
            v.push(match t {
                // Healthy.
                _ if t < 1000 => s(t, Some(200), if to_cpp { &[CPP] } else { &[MIRROR] }),
                // Right after the kill: one request fails outright, then nginx retries the
                // candidate's share on the mirror until max_fails is reached.
                1000 => s(t, None, &[]),
                _ if t < 1200 && to_cpp => s(t, Some(200), &[CPP, MIRROR]),
                // Routed around; one re-probe at 2 s.
                2000 => s(t, Some(200), &[CPP, MIRROR]),
                _ if t < 3000 => s(t, Some(200), &[MIRROR]),
                // Restarted at 3 s; nginx tries it again at 3.5 s.
                _ if t < 3500 => s(t, Some(200), &[MIRROR]),
                _ => s(t, Some(200), if to_cpp { &[CPP] } else { &[MIRROR] }),
            });
        }
        v.reverse(); // analyse sorts
        v
    }

    #[test]
    fn analysis_of_a_synthetic_drill() {
        let t = Timeline {
            kill: Duration::from_millis(1000),
            restart: Some(Duration::from_millis(3000)),
        };
        let a = analyse(&timeline(), t, CPP, 10);
        assert_eq!(a.requests, 600);
        assert_eq!(a.failed, 1);
        assert_eq!(a.failed_before_kill, 0);
        assert_eq!(a.failed_after_kill, 1);
        assert_eq!(a.cpp_share_before, Some(0.25));
        // 1040, 1080, 1120, 1160 touched the candidate, plus the probe at 2000.
        assert_eq!(a.touched_dead, 5);
        assert_eq!(a.touched_dead_max_latency, Some(Duration::from_millis(30)));
        assert_eq!(a.slowest.len(), 5);
        assert_eq!(a.slowest[0].latency, Duration::from_millis(30));
        assert_eq!(a.recovered_after, Some(Duration::from_millis(10)));
        assert_eq!(a.routed_around_after, Some(Duration::from_millis(170)));
        assert_eq!(a.probes_while_down, 1);
        assert_eq!(a.returned_after, Some(Duration::from_millis(520)));
        assert_eq!(a.cpp_share_after_return, Some(0.25));
    }

    #[test]
    fn no_return_and_no_restart_are_reported_as_such() {
        let t = Timeline {
            kill: Duration::from_millis(1000),
            restart: None,
        };
        let a = analyse(&timeline(), t, CPP, 10);
        assert_eq!(a.returned_after, None);
        assert_eq!(a.cpp_share_after_return, None);
        let never_back: Vec<Sample> = timeline()
            .into_iter()
            .map(|mut x| {
                x.upstreams
                    .retain(|u| u != CPP || x.sent < Duration::from_millis(1000));
                if x.upstreams.is_empty() {
                    x.upstreams.push(MIRROR.to_owned());
                }
                x
            })
            .collect();
        let t = Timeline {
            kill: Duration::from_millis(1000),
            restart: Some(Duration::from_millis(3000)),
        };
        assert_eq!(analyse(&never_back, t, CPP, 10).returned_after, None);
        assert_eq!(analyse(&[], t, CPP, 10).requests, 0);
    }

    #[test]
    fn summaries_name_every_figure() {
        let args = FailoverArgs {
            out: PathBuf::from("x"),
            cpp_weight: 25,
            rate: 100,
            max_fails: 3,
            fail_timeout: Duration::from_secs(30),
            warmup: Duration::from_secs(1),
            down_for: Duration::from_secs(2),
            return_within: None,
            consecutive: 10,
            path: "/health".to_owned(),
            signal: KillSignal::Kill,
            max_failed: None,
            nginx: None,
        };
        let t = Timeline {
            kill: Duration::from_millis(1000),
            restart: Some(Duration::from_millis(3000)),
        };
        let a = analyse(&timeline(), t, CPP, 10);
        let j = to_json(&a, &args, t);
        assert_eq!(j["failed"], 1);
        assert_eq!(j["routed_around_after_ms"], 170.0);
        assert_eq!(j["cpp_share_before_percent"], 25.0);
        assert_eq!(j["returned"], true);
        let md = to_markdown(&a, &args, t);
        assert!(md.contains("| failed client requests (after the kill / before) | 1 (1 / 0) |"));
        assert!(md.contains("max_fails=3 fail_timeout=30s"));
        assert!(
            validate(&FailoverArgs {
                cpp_weight: 0,
                rate: 0,
                ..args
            })
            .is_err()
        );
    }
}
