//! One load run, end to end: plan → target check → (calibration) → run directory → Goose with
//! our pacer and workers → summary and manifest.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use goose::GooseAttack;
use goose::config::GooseConfiguration;
use hdrhistogram::Histogram;
use http::{HeaderName, HeaderValue};
use serde::Serialize;
use shadowgate_record::{Manifest, Measure, Run, RunKind, RunWriter, SeriesKey};
use shadowgate_sim::Profile;
use shadowgate_sim::auth::{JwtHeaderStyle, mint_jwt};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::client::Target;
use crate::error::LoadError;
use crate::null_server::{NullListener, NullServer, ServerTimes};
use crate::pacer::{Pacer, PacerMode, PacerStats, Phases, new_histogram};
use crate::progress::{self, ProgressMode, fmt_ns, group_thousands};
use crate::scenario::{Auth, JwtStyle, Plan, Scenario};
use crate::schedule::Schedule;
use crate::sse::{self, SseCounters, SseTask};
use crate::usage::{Sample, ThreadSet, Usage};
use crate::worker::{self, Live, Shared, Totals};

/// Generator `I` of `N` (`--shard I/N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// The whole run on one generator.
    pub const SINGLE: Shard = Shard { index: 0, count: 1 };

    /// Parses `I/N` with `0 <= I < N`.
    pub fn parse(spec: &str) -> Result<Shard, LoadError> {
        let bad = || LoadError::BadShard {
            spec: spec.to_owned(),
        };
        let (i, n) = spec.split_once('/').ok_or_else(bad)?;
        let index: u32 = i.trim().parse().map_err(|_| bad())?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The default run directory: `<base>/load-YYYYMMDD-HHMMSS` (UTC), with `-shardIofN` for a
/// shard, and `-2`, `-3`, ... when that name is taken.
pub fn default_run_dir(base: &Path, now: SystemTime, shard: Shard) -> PathBuf {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    let mut name = format!(
        "load-{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    );
    if shard.count > 1 {
        name.push_str(&format!("-shard{}of{}", shard.index, shard.count));
    }
    let first = base.join(&name);
    // Bounded: stops at the first free name among a thousand.
    (1..1000)
        .map(|n| {
            if n == 1 {
                first.clone()
            } else {
                base.join(format!("{name}-{n}"))
            }
        })
        .find(|p| !p.exists())
        .unwrap_or(first)
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Everything a load run needs.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Target base URL; `None` with `calibrate`: a calibration-only run against the null server.
    pub target: Option<String>,
    /// Target name in the run directory (`candidate`, `primary`, ...).
    pub target_name: String,
    /// The validated scenario, command-line overrides applied.
    pub scenario: Scenario,
    pub profile: Option<Profile>,
    pub shard: Shard,
    pub out_dir: PathBuf,
    /// Measure the generator's floor against an in-process null server first.
    pub calibrate: bool,
    /// Send no credentials whatever the scenario says.
    pub no_auth: bool,
    pub progress: ProgressMode,
    /// Version written into the manifest.
    pub tool_version: String,
    /// Write Goose's HTML/Markdown/JSON reports into the run directory.
    pub goose_reports: bool,
    /// Run token for ids (`{run}`); random when `None`.
    pub run_token: Option<String>,
}

/// Latency percentiles of a histogram, ns.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub max_ns: u64,
    pub mean_ns: f64,
}

impl Percentiles {
    /// `None` for an empty histogram.
    pub fn of(h: &Histogram<u64>) -> Option<Percentiles> {
        (!h.is_empty()).then(|| Percentiles {
            count: h.len(),
            p50_ns: h.value_at_quantile(0.5),
            p90_ns: h.value_at_quantile(0.9),
            p99_ns: h.value_at_quantile(0.99),
            p999_ns: h.value_at_quantile(0.999),
            max_ns: h.max(),
            mean_ns: h.mean(),
        })
    }
}

/// One route's figures.
#[derive(Debug, Clone, Serialize)]
pub struct RouteSummary {
    pub method: String,
    pub route: String,
    pub requests: u64,
    /// No answer, or 4xx/5xx.
    pub errors: u64,
    /// From the intended send time.
    pub response: Option<Percentiles>,
    /// From the actual send time.
    pub service: Option<Percentiles>,
}

/// Order-flow counts (measured flows only).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct FlowSummary {
    pub started: u64,
    pub completed: u64,
    /// A step failed, or a value could not be taken from its answer.
    pub broken: u64,
    /// Later steps still waiting when the run ended.
    pub unfinished: u64,
    /// Later steps of broken flows, never sent: the rate falls short by these because the
    /// gateway failed a step, not because the generator fell behind.
    pub steps_not_sent: u64,
}

/// SSE subscriber figures.
#[derive(Debug, Clone, Serialize)]
pub struct SseSummary {
    pub subscribers: usize,
    pub opened: u64,
    pub failed: u64,
    pub reopened: u64,
    /// Events in the measured window, all streams together.
    pub events: u64,
    pub events_per_s: f64,
    /// Gap between consecutive events of a stream.
    pub lag: Option<Percentiles>,
}

/// The generator's own floor, measured against the in-process null server.
#[derive(Debug, Clone, Serialize)]
pub struct Calibration {
    pub rate: f64,
    pub duration_s: f64,
    pub connections: usize,
    pub achieved_rate: f64,
    pub response: Option<Percentiles>,
    pub service: Option<Percentiles>,
    /// The null server's own time per request, from the request's arrival (kernel stamp) to
    /// its answer: the part of `response` that is not the generator's. A gateway's time counts
    /// from the same point (the simulator's injected latency too), so the generator's own
    /// floor is `response` − `server` (P50: `generator_p50_ns`).
    pub server: Option<Percentiles>,
    /// `response.p50_ns` − `server.p50_ns`: what the generator itself adds to a P50.
    pub generator_p50_ns: Option<u64>,
    pub generator_limited: bool,
    /// Its run directory, relative to the main one.
    pub dir: String,
}

/// What a run measured; also written into the manifest's `extra`.
#[derive(Debug, Clone, Serialize)]
pub struct LoadSummary {
    #[serde(skip)]
    pub dir: PathBuf,
    pub target: String,
    pub target_name: String,
    pub scenario: String,
    pub profile: Option<String>,
    pub shard: String,
    pub run_token: String,
    pub arrival: String,
    pub connections: usize,
    /// This generator's share of the scenario rate, requests/s.
    pub target_rate: f64,
    /// The requests per second the schedule put in the measured window: `target_rate` for a
    /// fixed rate, the actual draws of a Poisson schedule (they stray by ~√n).
    pub drawn_rate: f64,
    /// Requests whose actual send time fell in the measured window, per second of it.
    pub achieved_rate: f64,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub ramp_s: f64,
    /// Measured requests.
    pub requests: u64,
    pub errors: u64,
    /// All routes, from the intended send time (the gate's figure).
    pub response: Option<Percentiles>,
    /// All routes, from the actual send time.
    pub service: Option<Percentiles>,
    /// Actual − intended send time.
    pub send_lateness: Option<Percentiles>,
    /// The pacer's hand-off − intended time.
    pub pacer_lateness: Option<Percentiles>,
    /// How long after the kernel's receive stamp the generator read an answer (its own
    /// wake-up and parsing, excluded from the figures above).
    pub receive_delay: Option<Percentiles>,
    /// Share of measured answers timed by the kernel's receive stamp (the rest by the time
    /// they were read: 1.0 on Linux).
    pub kernel_stamped_share: f64,
    pub generator_limited: bool,
    pub generator_limited_reasons: Vec<String>,
    pub routes: Vec<RouteSummary>,
    /// Requests Goose counted (equal to `requests` when its aggregation kept up).
    pub goose_requests: u64,
    pub goose_reports: Vec<String>,
    pub tickets_issued: u64,
    pub tickets_dropped: u64,
    pub sent_warmup: u64,
    pub sent_tail: u64,
    pub connects: u64,
    pub flows: FlowSummary,
    pub sse: Option<SseSummary>,
    pub calibration: Option<Calibration>,
    pub timer_slack_set: bool,
    /// The generator threads' CPU time over the measured window, in cores (1.0 = one core
    /// throughout), and the time they were kept waiting for a CPU, per second of the window.
    pub generator_cores: Option<f64>,
    pub cpu_wait_share: Option<f64>,
    /// The machine's CPU time the hypervisor took over the window (steal), as a share.
    pub steal_share: Option<f64>,
    /// The largest steal share of a single vCPU over the window.
    pub steal_share_max_cpu: Option<f64>,
    /// `[generator] realtime` and what the pacer and runtime threads got (module `priority`).
    pub realtime: String,
    pub pacer_scheduling: String,
    pub runtime_scheduling: String,
    pub measurement: String,
}

impl LoadSummary {
    /// A human-readable summary (several lines).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let p = |x: &Option<Percentiles>| match x {
            Some(p) => format!(
                "P50 {}  P90 {}  P99 {}  P99.9 {}  max {}",
                fmt_ns(p.p50_ns),
                fmt_ns(p.p90_ns),
                fmt_ns(p.p99_ns),
                fmt_ns(p.p999_ns),
                fmt_ns(p.max_ns)
            ),
            None => "no samples".to_owned(),
        };
        out.push_str(&format!(
            "load run {} ({}) -> {}\n",
            self.target_name,
            self.target,
            self.dir.display()
        ));
        out.push_str(&format!(
            "  scenario {}  profile {}  shard {}  {} arrivals  {} connections\n",
            self.scenario,
            self.profile.as_deref().unwrap_or("-"),
            self.shard,
            self.arrival,
            self.connections
        ));
        out.push_str(&format!(
            "  rate: achieved {} req/s of {} target ({:.2}%) over {:.1}s; {} requests, {} errors\n",
            group_thousands(self.achieved_rate.round() as u64),
            group_thousands(self.target_rate.round() as u64),
            if self.target_rate > 0.0 {
                100.0 * self.achieved_rate / self.target_rate
            } else {
                0.0
            },
            self.duration_s,
            group_thousands(self.requests),
            group_thousands(self.errors)
        ));
        if (self.drawn_rate - self.target_rate).abs() >= 0.005 * self.target_rate {
            out.push_str(&format!(
                "        the Poisson schedule drew {} req/s for this window ({:.2}% of it achieved)\n",
                group_thousands(self.drawn_rate.round() as u64),
                100.0 * self.achieved_rate / self.drawn_rate.max(1e-9)
            ));
        }
        if self.flows.steps_not_sent > 0 {
            out.push_str(&format!(
                "        {} later steps of broken flows were never sent (an earlier step failed); \
                 with them {} req/s{}\n",
                group_thousands(self.flows.steps_not_sent),
                group_thousands(
                    (self.achieved_rate
                        + self.flows.steps_not_sent as f64 / self.duration_s.max(1e-9))
                    .round() as u64
                ),
                if self.generator_limited {
                    ""
                } else {
                    ": the generator kept its schedule"
                }
            ));
        }
        out.push_str(&format!(
            "  latency from intended send: {}\n",
            p(&self.response)
        ));
        out.push_str(&format!(
            "  latency from actual send:   {}\n",
            p(&self.service)
        ));
        out.push_str(&format!(
            "  send lateness:              {}\n",
            p(&self.send_lateness)
        ));
        out.push_str(&format!(
            "  read after arrival:         {}\n",
            p(&self.receive_delay)
        ));
        out.push_str(&format!(
            "  scheduling: pacer {}; runtime {}\n",
            self.pacer_scheduling, self.runtime_scheduling
        ));
        if let Some(c) = self.generator_cores {
            out.push_str(&format!(
                "  CPU over the window: generator {:.0} % of a core{}{}\n",
                100.0 * c,
                self.cpu_wait_share
                    .map(|w| format!(", kept waiting for a CPU {:.1} ms/s", 1000.0 * w))
                    .unwrap_or_default(),
                self.steal_share
                    .map(|s| format!(
                        ", hypervisor steal {:.2} % of the machine{}",
                        100.0 * s,
                        self.steal_share_max_cpu
                            .map(|c| format!(" ({:.2} % of its busiest vCPU)", 100.0 * c))
                            .unwrap_or_default()
                    ))
                    .unwrap_or_default()
            ));
        }
        if let Some(c) = &self.calibration {
            out.push_str(&format!(
                "  generator floor (null server, {} req/s): {}\n",
                group_thousands(c.rate.round() as u64),
                p(&c.response)
            ));
            if let (Some(server), Some(own)) = (&c.server, c.generator_p50_ns) {
                out.push_str(&format!(
                    "    of which the null server itself (request arrival to answer): P50 {}; \
                     the generator's own share of the P50: {}\n",
                    fmt_ns(server.p50_ns),
                    fmt_ns(own)
                ));
            }
        }
        for r in &self.routes {
            out.push_str(&format!(
                "    {:<6} {:<28} {:>9} req {:>6} err  {}\n",
                r.method,
                r.route,
                group_thousands(r.requests),
                r.errors,
                p(&r.response)
            ));
        }
        if self.flows.started > 0 {
            out.push_str(&format!(
                "  flows: {} started, {} completed, {} broken, {} unfinished\n",
                self.flows.started, self.flows.completed, self.flows.broken, self.flows.unfinished
            ));
        }
        if let Some(s) = &self.sse {
            out.push_str(&format!(
                "  sse: {} subscribers, {} events ({:.1}/s), lag {}\n",
                s.subscribers,
                s.events,
                s.events_per_s,
                p(&s.lag)
            ));
        }
        out.push_str(&format!(
            "  goose counted {} requests; reports: {}\n",
            group_thousands(self.goose_requests),
            if self.goose_reports.is_empty() {
                "none".to_owned()
            } else {
                self.goose_reports.join(", ")
            }
        ));
        if self.generator_limited {
            out.push_str("  GENERATOR-LIMITED: the figures above say more about this generator than about the target:\n");
            for r in &self.generator_limited_reasons {
                out.push_str(&format!("    - {r}\n"));
            }
        }
        out
    }
}

/// Runs a load test and writes its run directory.
pub async fn run(opts: LoadOptions) -> Result<LoadSummary, LoadError> {
    let plan = opts.scenario.plan(opts.profile)?;
    let lifetime = opts.scenario.ramp + opts.scenario.warmup + opts.scenario.duration;
    let auth = if opts.no_auth {
        None
    } else {
        auth_header(&opts.scenario.auth, plan.profile, lifetime)?
    };
    let run_token = opts
        .run_token
        .clone()
        .unwrap_or_else(|| format!("{:08x}", rand::random::<u32>()));

    let null = match &opts.target {
        Some(_) => None,
        None => Some(NullListener::bind()?),
    };
    let null_times = null.as_ref().map(NullListener::server_times);
    let target = match (&opts.target, &null) {
        (Some(url), _) => Target::resolve(url).await?,
        (None, Some(n)) => Target::for_addr(n.addr()),
        (None, None) => unreachable_null(),
    };
    target.preflight(opts.scenario.connect_timeout).await?;

    let calibration = if opts.calibrate && opts.target.is_some() {
        Some(calibrate(&opts, &plan, &run_token).await?)
    } else {
        None
    };

    let target_name = if opts.target.is_none() {
        "null".to_owned()
    } else {
        opts.target_name.clone()
    };
    let mut manifest = Manifest::new(RunKind::Load, opts.tool_version.clone());
    manifest
        .targets
        .insert(target_name.clone(), target.url.clone());
    manifest.scenario = Some(opts.scenario.origin.clone());
    let writer = Arc::new(RunWriter::create(&opts.out_dir, manifest)?);
    let input = PhaseInput {
        scenario: opts.scenario.clone(),
        plan,
        target,
        target_name,
        auth,
        shard: opts.shard,
        writer: Arc::clone(&writer),
        progress: opts.progress,
        goose_reports: opts.goose_reports,
        run_token,
        threads: ThreadSet::default(),
        null,
    };
    let mut summary = run_phase_dedicated(input).await?;
    if opts.target.is_none() && opts.calibrate {
        let times =
            null_times.unwrap_or_else(|| Arc::new(Mutex::new(crate::pacer::new_histogram())));
        summary.calibration = Some(calibration_of(&summary, ".", &times));
    } else {
        summary.calibration = calibration;
    }
    let extra = match serde_json::to_value(&summary) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    writer.update_manifest(|m| m.extra = extra)?;
    Ok(summary)
}

fn unreachable_null() -> Target {
    // `null` is always started when there is no target URL; keep the function total anyway.
    Target::for_addr(std::net::SocketAddr::from(([127, 0, 0, 1], 9)))
}

fn calibration_of(s: &LoadSummary, dir: &str, times: &ServerTimes) -> Calibration {
    let server = Percentiles::of(
        &times
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    Calibration {
        rate: s.target_rate,
        duration_s: s.duration_s,
        connections: s.connections,
        achieved_rate: s.achieved_rate,
        response: s.response,
        service: s.service,
        server,
        generator_p50_ns: s
            .response
            .map(|r| r.p50_ns.saturating_sub(server.map_or(0, |t| t.p50_ns))),
        generator_limited: s.generator_limited,
        dir: dir.to_owned(),
    }
}

/// The same plan at the same rate against the null server, into `<out>/calibration`.
async fn calibrate(
    opts: &LoadOptions,
    plan: &Plan,
    run_token: &str,
) -> Result<Calibration, LoadError> {
    let server = NullListener::bind()?;
    let times = server.server_times();
    let mut scenario = opts.scenario.clone();
    scenario.duration = scenario.duration.min(Duration::from_secs(10));
    scenario.warmup = scenario.warmup.min(Duration::from_secs(1));
    scenario.ramp = Duration::ZERO;
    let mut plan = plan.clone();
    plan.sse = None;
    let dir = opts.out_dir.join("calibration");
    let mut manifest = Manifest::new(RunKind::Load, opts.tool_version.clone());
    let target = Target::for_addr(server.addr());
    manifest
        .targets
        .insert("null".to_owned(), target.url.clone());
    manifest.scenario = Some(opts.scenario.origin.clone());
    let writer = Arc::new(RunWriter::create(&dir, manifest)?);
    let input = PhaseInput {
        scenario,
        plan,
        target,
        target_name: "null".to_owned(),
        auth: None,
        shard: opts.shard,
        writer: Arc::clone(&writer),
        progress: ProgressMode::Off,
        goose_reports: false,
        run_token: run_token.to_owned(),
        threads: ThreadSet::default(),
        null: Some(server),
    };
    let summary = run_phase_dedicated(input).await?;
    let extra = match serde_json::to_value(&summary) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    writer.update_manifest(|m| m.extra = extra)?;
    Ok(calibration_of(&summary, "calibration", &times))
}

/// The scenario's credentials as one header, minted now.
fn auth_header(
    auth: &Auth,
    profile: Option<Profile>,
    lifetime: Duration,
) -> Result<Option<(HeaderName, HeaderValue)>, LoadError> {
    match auth {
        Auth::None => Ok(None),
        Auth::Jwt {
            secret,
            subject,
            expiry,
            style,
        } => {
            let secret = secret.resolve().ok_or_else(|| LoadError::MissingSecret {
                what: "auth.secret_env (JWT secret)",
                var: env_name(secret),
            })?;
            let python = match style {
                JwtStyle::Python => true,
                JwtStyle::Compact => false,
                JwtStyle::Auto => profile == Some(Profile::Python),
            };
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            // A token must outlive the run, or the last minutes would measure 401s.
            let exp = now + (*expiry).max(lifetime + Duration::from_secs(600)).as_secs();
            let mut claims = serde_json::json!({ "sub": subject, "iat": now, "exp": exp });
            if !python {
                claims["type"] = serde_json::Value::from("access");
            }
            let style = if python {
                JwtHeaderStyle::Python
            } else {
                JwtHeaderStyle::Compact
            };
            let token = mint_jwt(style, &claims, secret.as_bytes());
            let value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                LoadError::MissingSecret {
                    what: "auth (the minted token is not a valid header)",
                    var: env_name(&crate::scenario::Secret::Inline(String::new())),
                }
            })?;
            Ok(Some((http::header::AUTHORIZATION, value)))
        }
        Auth::ApiKey { key, header } => {
            let value = key.resolve().ok_or_else(|| LoadError::MissingSecret {
                what: "auth.key_env (API key)",
                var: env_name(key),
            })?;
            let value = HeaderValue::from_str(&value).map_err(|_| LoadError::MissingSecret {
                what: "auth.key_env (the key is not a valid header value)",
                var: env_name(key),
            })?;
            Ok(Some((header.clone(), value)))
        }
    }
}

fn env_name(s: &crate::scenario::Secret) -> String {
    match s {
        crate::scenario::Secret::Env(v) => v.clone(),
        crate::scenario::Secret::Inline(_) => "(inline)".to_owned(),
    }
}

/// What one phase (the run, or its calibration) needs; owned, because it runs on the
/// generator's own thread.
struct PhaseInput {
    scenario: Scenario,
    plan: Plan,
    target: Target,
    target_name: String,
    auth: Option<(HeaderName, HeaderValue)>,
    shard: Shard,
    writer: Arc<RunWriter>,
    progress: ProgressMode,
    goose_reports: bool,
    run_token: String,
    /// The generator's threads, for the window's usage (module `usage`).
    threads: ThreadSet,
    /// A null server to serve on the phase's own runtime (the target of a calibration).
    null: Option<NullListener>,
}

/// Runs a phase on a runtime of its own, on its own OS thread: a current-thread runtime for
/// `[generator] threads = 1` (the default), multi-threaded otherwise. One thread carries
/// 10,000 req/s here, and with a single runtime thread no wake-up of the pacer ever unparks a
/// second worker to steal the task: on two cores every context switch saved is CPU the
/// gateway under test keeps. The calibration's null server is served on this runtime too, so
/// the floor holds no server wake-up: a wake-up of another thread belongs to the server's side
/// of the exchange (the simulator counts its injected latency from the request's arrival for
/// the same reason), and it is what made the floor swing between 22 and 45 µs from run to run
/// when the null server had a runtime of its own.
async fn run_phase_dedicated(input: PhaseInput) -> Result<LoadSummary, LoadError> {
    let threads = input.scenario.limits.threads;
    let realtime_all = input.scenario.limits.realtime == crate::priority::Realtime::All;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let thread_set = input.threads.clone();
    let join = std::thread::Builder::new()
        .name("shadowgate-load".to_owned())
        .spawn(move || {
            // `[generator] realtime = "all"`: every runtime thread asks for SCHED_FIFO; the
            // first refusal is what the manifest shows.
            let refused: Arc<Mutex<Option<String>>> = Arc::default();
            let make_rt = {
                let refused = Arc::clone(&refused);
                move || {
                    if let Err(e) = crate::priority::make_current_thread_realtime() {
                        refused
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .get_or_insert(e);
                    }
                }
            };
            let rt = if threads <= 1 {
                thread_set.register_current();
                if realtime_all {
                    make_rt();
                }
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
            } else {
                let mut b = tokio::runtime::Builder::new_multi_thread();
                b.worker_threads(threads).enable_all();
                b.on_thread_start(move || {
                    thread_set.register_current();
                    if realtime_all {
                        make_rt();
                    }
                });
                b.build()
            };
            let result = match rt {
                Ok(rt) => rt.block_on(run_phase(input)),
                Err(source) => Err(LoadError::Start {
                    what: "the generator's runtime",
                    source,
                }),
            };
            let result = result.map(|mut summary| {
                let outcome = refused
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .take()
                    .map_or(Ok(()), Err);
                summary.runtime_scheduling = crate::priority::describe(realtime_all, &outcome);
                summary
            });
            let _ = tx.send(result);
        })
        .map_err(|source| LoadError::Start {
            what: "the generator thread",
            source,
        })?;
    let result = rx.await.unwrap_or_else(|_| {
        Err(LoadError::Goose(
            "the generator thread ended without a result".to_owned(),
        ))
    });
    // The thread has sent its result and only drops its runtime now.
    let _ = tokio::task::spawn_blocking(move || join.join()).await;
    result
}

/// How long to wait for every user's `on_start` before starting the schedule anyway.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// `t0` is this far after the last user is ready, so the first tickets are not already late.
const T0_LEAD: Duration = Duration::from_millis(5);
/// How long the pacer keeps feeding after the measured window (not recorded).
const TAIL: Duration = Duration::from_millis(250);
/// Goose launches every user within ~50 ms (`increase_rate` = 20 x users per second) and then
/// resets its metrics; `t0` is not set before this much time after `execute()` started.
const GOOSE_LAUNCH: Duration = Duration::from_millis(200);

async fn run_phase(mut input: PhaseInput) -> Result<LoadSummary, LoadError> {
    // Dropped (stopped) when the phase returns, after every user has stopped.
    let _null = input.null.take().map(NullServer::serve).transpose()?;
    let s = &input.scenario;
    let plan = &input.plan;
    let shard = input.shard;
    let recorder = input.writer.latency()?;
    recorder.start_interval_writer()?;
    let entries = worker::compile(&plan.entries, &input.target_name, &recorder)?;

    let phases = Phases {
        window_start: s.ramp + s.warmup,
        window_end: s.ramp + s.warmup + s.duration,
        feed_until: s.ramp + s.warmup + s.duration + TAIL,
    };
    let ticket_rate = plan.ticket_rate / f64::from(shard.count);
    let capacity = s
        .limits
        .queue_capacity
        .unwrap_or_else(|| ((ticket_rate * 2.0) as usize).clamp(1024, 1 << 20));
    let (tx, rx) = flume::bounded(capacity);
    let seed = s.seed.unwrap_or_else(rand::random);
    let shared = Arc::new(Shared {
        target: input.target.clone(),
        entries,
        rx,
        phases,
        t0: OnceLock::new(),
        ready: AtomicUsize::new(0),
        ready_notify: tokio::sync::Notify::new(),
        run_token: input.run_token.clone(),
        shard: shard.index,
        shards: shard.count,
        symbols: s.symbols.clone(),
        consts: s.const_values(),
        auth: input.auth.clone(),
        timeout: s.timeout,
        connect_timeout: s.connect_timeout,
        seed,
        recorder: recorder.clone(),
        live: Live {
            sent: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            hist: Mutex::new(new_histogram()),
        },
        totals: Mutex::new(Totals::new()),
        done: AtomicBool::new(false),
    });
    let schedule = Schedule {
        rate: ticket_rate,
        arrival: s.arrival,
        ramp: s.ramp,
        phase: f64::from(shard.index) / f64::from(shard.count),
        seed: seed.wrapping_add(u64::from(shard.index)),
    };
    // The tick pacer needs the runtime's only thread (module `pacer`).
    let tick = s.limits.pacer == PacerMode::Tick && s.limits.threads <= 1;
    let pacer = match s.limits.pacer {
        PacerMode::Tick | PacerMode::Timer => Pacer::spawn_task(schedule, phases, tx, tick)?,
        PacerMode::Thread => Pacer::spawn(
            schedule,
            phases,
            tx,
            s.limits.realtime != crate::priority::Realtime::Off,
            input.threads.clone(),
        )?,
    };

    // SSE subscribers and progress: tasks that end when `stop` is set.
    let (stop_tx, stop_rx) = watch::channel(false);
    let sse_counters = Arc::new(SseCounters::default());
    let mut tasks = JoinSet::new();
    let mut sse_lag_key = None;
    if let Some(spec) = &plan.sse {
        let lag_key = SeriesKey::new(
            &input.target_name,
            "GET",
            &spec.route,
            Measure::Other("lag".to_owned()),
        )?;
        let task = SseTask {
            path: spec.path.clone(),
            lag: recorder.series(lag_key.clone())?,
            stream: recorder.series(SeriesKey::response(
                &input.target_name,
                "GET",
                &spec.route,
            )?)?,
        };
        sse_lag_key = Some(lag_key);
        for _ in 0..spec.subscribers {
            tasks.spawn(sse::subscriber(
                Arc::clone(&shared),
                task.clone(),
                Arc::clone(&sse_counters),
                stop_rx.clone(),
            ));
        }
    }
    // The measured window's CPU usage, for the generator-limited reasons.
    let window_usage: Arc<Mutex<Option<Usage>>> = Arc::default();
    {
        let shared = Arc::clone(&shared);
        let out = Arc::clone(&window_usage);
        let mut stop = stop_rx.clone();
        let threads = input.threads.clone();
        tasks.spawn(async move {
            let sampled = async {
                let t0 = loop {
                    if let Some(t0) = shared.t0.get() {
                        break *t0;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                };
                tokio::time::sleep_until((t0 + shared.phases.window_start).into()).await;
                let start = Sample::now(&threads);
                tokio::time::sleep_until((t0 + shared.phases.window_end).into()).await;
                start.until(&Sample::now(&threads))
            };
            tokio::select! {
                _ = stop.changed() => {}
                u = sampled => *lock_usage(&out) = Some(u),
            }
        });
    }
    tasks.spawn(progress::run(
        Arc::clone(&shared),
        input.progress,
        phases.window_end,
        stop_rx.clone(),
    ));

    let reports: Vec<String> = if input.goose_reports {
        ["html", "md", "json"]
            .iter()
            .map(|ext| {
                input
                    .writer
                    .dir()
                    .join(format!("goose-report.{ext}"))
                    .display()
                    .to_string()
            })
            .collect()
    } else {
        Vec::new()
    };
    // Goose counts its run time from its metrics reset, before t0 (GOOSE_LAUNCH); it must
    // not stop the users before the tail has been fed and the last answers have come back.
    let run_time = (phases.feed_until + GOOSE_LAUNCH + Duration::from_millis(500))
        .as_secs_f64()
        .ceil() as u64;
    let attack = build_attack(
        &shared,
        s.connections,
        run_time,
        reports.clone(),
        &input.target.url,
    )?;

    // Start the schedule once every user is connected and Goose has reset its metrics (or
    // after READY_TIMEOUT).
    let users = s.connections;
    let exec_start = Instant::now();
    let starter = {
        let shared = Arc::clone(&shared);
        let pacer = &pacer;
        async move {
            let deadline = Instant::now() + READY_TIMEOUT;
            while shared.ready.load(Ordering::SeqCst) < users && Instant::now() < deadline {
                let _ =
                    tokio::time::timeout(Duration::from_millis(50), shared.ready_notify.notified())
                        .await;
            }
            tokio::time::sleep_until((exec_start + GOOSE_LAUNCH).into()).await;
            let t0 = Instant::now() + T0_LEAD;
            let _ = shared.t0.set(t0);
            pacer.start(t0);
        }
    };
    let execute = attack.execute();
    tokio::pin!(execute);
    let result = tokio::select! {
        r = &mut execute => r,
        () = starter => execute.await,
    };
    // The users are gone: stop feeding, then stop the side tasks.
    shared.done.store(true, Ordering::SeqCst);
    let mut pacer_stats = pacer.stop().await;
    if s.limits.pacer == PacerMode::Tick && !tick {
        pacer_stats.scheduling.push_str(
            "; `tick` needs a one-thread runtime (`[generator] threads = 1`), so every gap was \
             waited on the timerfd",
        );
    }
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    let goose_metrics = result.map_err(|e| LoadError::Goose(e.to_string()))?;
    let goose_requests: u64 = goose_metrics
        .requests
        .values()
        .map(|a| (a.success_count + a.fail_count) as u64)
        .sum();
    drop(goose_metrics);

    let totals = {
        let t = shared
            .totals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Totals {
            lateness: t.lateness.clone(),
            receive_delay: t.receive_delay.clone(),
            ..*t
        }
    };
    drop(shared);
    input.writer.finish()?;
    let run = Run::open(input.writer.dir())?;
    let reports = reports
        .into_iter()
        .filter(|r| Path::new(r).exists())
        .collect();
    Ok(summarize(
        &input,
        &run,
        SummaryInputs {
            totals,
            pacer: pacer_stats,
            goose_requests,
            goose_reports: reports,
            sse: sse_counters,
            sse_lag_key,
            scheduled_tickets: schedule.count_between(phases.window_start, phases.window_end),
            usage: *lock_usage(&window_usage),
        },
    ))
}

fn build_attack(
    shared: &Arc<Shared>,
    users: usize,
    run_time_s: u64,
    reports: Vec<String>,
    host: &str,
) -> Result<GooseAttack, LoadError> {
    let goose = |e: goose::GooseError| LoadError::Goose(e.to_string());
    let mut config = GooseConfiguration::default();
    config.host = Some(host.to_owned());
    config.users = Some(users);
    // Start every user within ~50 ms: the ramp is the schedule's, not Goose's.
    config.increase_rate = Some((users * 20).max(20).to_string());
    config.run_time = Some(run_time_s.to_string());
    config.quiet = 1;
    config.no_print_metrics = true;
    // Goose resets its metrics once every user has launched (the launch takes ~50 ms); t0 is
    // set after that (see GOOSE_LAUNCH), and warm-up requests are never reported to Goose, so
    // the reset cannot cut into the measured window. (With no reset, Goose prints "All N
    // users launched" to stdout whatever the quiet settings say.)
    // No fixed ports (telnet controller) in a load generator that tests run in parallel.
    config.no_telnet = true;
    // One Goose metric per request (the request metric, per route) is enough: transaction and
    // scenario metrics would double Goose's per-request work for the same figures.
    config.no_transaction_metrics = true;
    config.no_scenario_metrics = true;
    // Ours is the intended-send-time correction; Goose's backfill would count stalls twice.
    config.co_mitigation = Some(goose::metrics::GooseCoordinatedOmissionMitigation::Disabled);
    config.report_file = reports;
    let mut scenario = goose::goose::Scenario::new("load")
        .register_transaction(worker::on_start(Arc::clone(shared)))
        .register_transaction(worker::on_stop());
    for i in 0..shared.entries.len() {
        scenario = scenario
            .register_transaction(worker::entry_transaction(Arc::clone(shared), i).map_err(goose)?);
    }
    Ok(GooseAttack::initialize_with_config(config)
        .map_err(goose)?
        .register_scenario(scenario))
}

struct SummaryInputs {
    totals: Totals,
    pacer: PacerStats,
    goose_requests: u64,
    goose_reports: Vec<String>,
    sse: Arc<SseCounters>,
    sse_lag_key: Option<SeriesKey>,
    /// Tickets the schedule put in the measured window.
    scheduled_tickets: u64,
    /// The measured window's CPU usage (module `usage`), when the window was reached.
    usage: Option<Usage>,
}

fn summarize(input: &PhaseInput, run: &Run, si: SummaryInputs) -> LoadSummary {
    let s = &input.scenario;
    let mut response = new_histogram();
    let mut service = new_histogram();
    let mut routes: Vec<RouteSummary> = Vec::new();
    let counts = run.counts_by_route();
    for (key, data) in &run.latency {
        match &key.measure {
            Measure::Response => {
                let _ = response.add(&data.total);
            }
            Measure::Service => {
                let _ = service.add(&data.total);
            }
            Measure::Other(_) => continue,
        }
        let idx = match routes
            .iter()
            .position(|r| r.method == key.method && r.route == key.route)
        {
            Some(i) => i,
            None => {
                let c = counts
                    .iter()
                    .find(|(rk, _)| rk.method == key.method && rk.route == key.route)
                    .map(|(_, c)| *c)
                    .unwrap_or_default();
                routes.push(RouteSummary {
                    method: key.method.clone(),
                    route: key.route.clone(),
                    requests: c.requests,
                    errors: c.requests - c.status_1xx - c.status_2xx - c.status_3xx,
                    response: None,
                    service: None,
                });
                routes.len() - 1
            }
        };
        let p = Percentiles::of(&data.total);
        match key.measure {
            Measure::Response => routes[idx].response = p,
            _ => routes[idx].service = p,
        }
    }
    let sse_route = input.plan.sse.as_ref().map(|x| x.route.clone());
    // The SSE stream's own row counts streams, not requests.
    let (requests, errors) = counts
        .iter()
        .filter(|(rk, _)| !(rk.method == "GET" && Some(&rk.route) == sse_route.as_ref()))
        .fold((0, 0), |(n, e), (_, c)| {
            (
                n + c.requests,
                e + c.requests - c.status_1xx - c.status_2xx - c.status_3xx,
            )
        });
    routes.retain(|r| {
        !(r.method == "GET" && Some(&r.route) == sse_route.as_ref() && r.response.is_none())
    });

    let duration_s = s.duration.as_secs_f64();
    let target_rate = s.rate / f64::from(input.shard.count);
    let achieved_rate = si.totals.sent_in_window as f64 / duration_s;
    let drawn_rate = si.scheduled_tickets as f64 * input.plan.requests_per_ticket / duration_s;
    let send_lateness = Percentiles::of(&si.totals.lateness);
    let pacer_lateness = Percentiles::of(&si.pacer.lateness);

    let measured = si.totals.sent[1].max(1);
    let reasons = limit_reasons(&LimitInputs {
        target_rate,
        drawn_rate,
        achieved_rate,
        // What the schedule sent, counting the steps broken flows did not need.
        kept_rate: (si.totals.sent_in_window + si.totals.steps_not_sent) as f64 / duration_s,
        min_achieved_ratio: s.limits.min_achieved_ratio,
        threshold_ns: u64::try_from(s.limits.lateness_threshold.as_nanos()).unwrap_or(u64::MAX),
        send_lateness_p50_ns: send_lateness.map(|l| l.p50_ns),
        pacer_lateness_p99_ns: pacer_lateness.map(|l| l.p99_ns),
        dropped_measured: si.pacer.dropped[1],
        connections: s.connections,
        mean_service_s: si.totals.service_sum_ns as f64 / measured as f64 / 1e9,
        threads: s.limits.threads,
        usage: si.usage,
    });

    let sse = input.plan.sse.as_ref().map(|spec| {
        let lag = si
            .sse_lag_key
            .as_ref()
            .and_then(|k| run.latency.get(k))
            .and_then(|d| Percentiles::of(&d.total));
        let events = si.sse.events.load(Ordering::Relaxed);
        SseSummary {
            subscribers: spec.subscribers,
            opened: si.sse.opened.load(Ordering::Relaxed),
            failed: si.sse.failed.load(Ordering::Relaxed),
            reopened: si.sse.reopened.load(Ordering::Relaxed),
            events,
            events_per_s: events as f64 / duration_s,
            lag,
        }
    });
    LoadSummary {
        dir: run.dir.clone(),
        target: input.target.url.clone(),
        target_name: input.target_name.clone(),
        scenario: s.name.clone(),
        profile: input.plan.profile.map(|p| p.as_str().to_owned()),
        shard: input.shard.to_string(),
        run_token: input.run_token.clone(),
        arrival: s.arrival.as_str().to_owned(),
        connections: s.connections,
        target_rate,
        drawn_rate,
        achieved_rate,
        duration_s,
        warmup_s: s.warmup.as_secs_f64(),
        ramp_s: s.ramp.as_secs_f64(),
        requests,
        errors,
        response: Percentiles::of(&response),
        service: Percentiles::of(&service),
        send_lateness,
        pacer_lateness,
        receive_delay: Percentiles::of(&si.totals.receive_delay),
        kernel_stamped_share: si.totals.receive_delay.len() as f64 / si.totals.sent[1].max(1) as f64,
        generator_limited: !reasons.is_empty(),
        generator_limited_reasons: reasons,
        routes,
        goose_requests: si.goose_requests,
        goose_reports: si.goose_reports,
        tickets_issued: si.pacer.issued.iter().sum(),
        tickets_dropped: si.pacer.dropped.iter().sum(),
        sent_warmup: si.totals.sent[0],
        sent_tail: si.totals.sent[2],
        connects: si.totals.connects,
        flows: FlowSummary {
            started: si.totals.flows_started,
            completed: si.totals.flows_completed,
            broken: si.totals.flows_broken,
            unfinished: si.totals.flows_unfinished,
            steps_not_sent: si.totals.steps_not_sent,
        },
        sse,
        calibration: None,
        timer_slack_set: si.pacer.timer_slack_set,
        generator_cores: si.usage.and_then(|u| u.generator_cores),
        cpu_wait_share: si.usage.and_then(|u| u.cpu_wait_share),
        steal_share: si.usage.and_then(|u| u.steal_share),
        steal_share_max_cpu: si.usage.and_then(|u| u.steal_share_max_cpu),
        realtime: s.limits.realtime.as_str().to_owned(),
        pacer_scheduling: si.pacer.scheduling.clone(),
        runtime_scheduling: "normal".to_owned(),
        measurement: "open model: intended send times fixed by the pacer; latency (no tag \
                      suffix) from the intended send time, corrected for coordinated omission; \
                      `;service` from the actual send time; an answer is complete at the kernel's receive \
                      timestamp of its last segment (SO_TIMESTAMPNS), so the generator's own \
                      wake-up is not charged to the gateway; ns HDR histograms, 3 digits"
            .to_owned(),
    }
}

fn lock_usage(m: &Mutex<Option<Usage>>) -> std::sync::MutexGuard<'_, Option<Usage>> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What the generator-limited rules look at.
#[derive(Debug, Clone, Copy)]
struct LimitInputs {
    target_rate: f64,
    /// The requests per second the schedule put in the window (`target_rate` for a fixed rate,
    /// give or take one ticket).
    drawn_rate: f64,
    achieved_rate: f64,
    /// `achieved_rate` plus the follow-up steps of broken flows, which were never due: a
    /// gateway that fails a flow's first step lowers the achieved rate, not the generator.
    kept_rate: f64,
    min_achieved_ratio: f64,
    threshold_ns: u64,
    send_lateness_p50_ns: Option<u64>,
    pacer_lateness_p99_ns: Option<u64>,
    dropped_measured: u64,
    connections: usize,
    mean_service_s: f64,
    /// Runtime threads, and what the generator's threads and the hypervisor used over the
    /// window (module `usage`).
    threads: usize,
    usage: Option<Usage>,
}

/// Steal on one vCPU (the hypervisor's share of its time) over the window from which a run is
/// marked: 1 % of the window is as much as the P99 tail, so a single-threaded generator on
/// that vCPU can owe its whole P99 to the host's stalls. On the development VM undisturbed
/// runs read 0–0.4 % of the machine; a pair of runs with 0.66 % read P99 1.0 ms against
/// 0.15–0.4 ms otherwise, and runs with 7–16 % several ms.
const STEAL_LIMIT: f64 = 0.01;

/// Why the generator's thread was short of CPU, from the window's usage: saturated (it used
/// its cores) or starved (others held the CPU it needed).
fn cpu_cause(l: &LimitInputs) -> String {
    let usage = l.usage.unwrap_or_default();
    let steal = usage
        .steal_share
        .filter(|s| *s >= 0.005)
        .map(|s| {
            format!(
                "; the hypervisor took {:.1} % of the machine's CPU time (steal)",
                100.0 * s
            )
        })
        .unwrap_or_default();
    match usage.generator_cores {
        Some(c) if c >= 0.85 * l.threads as f64 => format!(
            "the generator used {:.0} % of its {} runtime core(s): it is saturated (shard it, or \
             raise `[generator] threads` where cores are free){steal}",
            100.0 * c / l.threads as f64,
            l.threads
        ),
        Some(c) => format!(
            "the generator used only {:.0} % of a core{}: the CPU it needed was held by other \
             work (the gateway under test, other jobs{}); run the generator on cores of its \
             own{steal}",
            100.0 * c,
            usage
                .cpu_wait_share
                .filter(|w| *w >= 0.001)
                .map(|w| format!(
                    " and its threads were kept waiting for a CPU {:.0} ms per second",
                    1000.0 * w
                ))
                .unwrap_or_default(),
            if steal.is_empty() {
                ""
            } else {
                ", the hypervisor"
            }
        ),
        None => {
            format!("the generator was short of CPU (run it on its own cores, or shard it){steal}")
        }
    }
}

/// The generator-limited rules (see the crate docs); empty when the run is not limited.
fn limit_reasons(l: &LimitInputs) -> Vec<String> {
    let mut reasons = Vec::new();
    if l.kept_rate < l.min_achieved_ratio * l.drawn_rate {
        let broken = l.kept_rate - l.achieved_rate;
        reasons.push(format!(
            "achieved {:.0} req/s{}, below {:.0}% of the target {:.0} req/s{}",
            l.kept_rate,
            if broken >= 0.5 {
                format!(" (counting {broken:.0} req/s of steps that broken flows did not need)")
            } else {
                String::new()
            },
            l.min_achieved_ratio * 100.0,
            l.target_rate,
            if (l.drawn_rate - l.target_rate).abs() >= 0.005 * l.target_rate {
                format!(
                    " ({:.0} req/s drawn by the Poisson schedule for this window)",
                    l.drawn_rate
                )
            } else {
                String::new()
            }
        ));
    }
    if let Some(p50) = l.send_lateness_p50_ns.filter(|p| *p > l.threshold_ns) {
        let capacity = if l.mean_service_s > 0.0 {
            l.connections as f64 / l.mean_service_s
        } else {
            f64::INFINITY
        };
        let why = if capacity < l.target_rate * 1.05 {
            format!(
                "{} connections at a mean service time of {} carry at most {:.0} req/s: raise `connections`",
                l.connections,
                fmt_ns((l.mean_service_s * 1e9) as u64),
                capacity
            )
        } else {
            cpu_cause(l)
        };
        reasons.push(format!(
            "median send lateness {} exceeds {}: requests waited to be sent; {why}",
            fmt_ns(p50),
            fmt_ns(l.threshold_ns)
        ));
    }
    if let Some(p99) = l.pacer_lateness_p99_ns.filter(|p| *p > l.threshold_ns) {
        reasons.push(format!(
            "the pacer handed out tickets late (P99 {} > {}): {}",
            fmt_ns(p99),
            fmt_ns(l.threshold_ns),
            cpu_cause(l)
        ));
    }
    // Without per-CPU figures the machine's share stands in (a lower bound of the worst vCPU).
    let usage = l.usage.unwrap_or_default();
    if let Some(worst) = usage
        .steal_share_max_cpu
        .or(usage.steal_share)
        .filter(|s| *s >= STEAL_LIMIT)
    {
        reasons.push(format!(
            "the hypervisor stopped a vCPU for {:.1} % of the measured window (steal ≥ {:.0} %{}): \
             as much as the P99 tail, so P99 and above can be the host's stalls rather than the \
             gateway's time; rerun when the host is quieter, or on dedicated cores",
            100.0 * worst,
            100.0 * STEAL_LIMIT,
            usage
                .steal_share
                .map(|m| format!("; {:.1} % of the whole machine", 100.0 * m))
                .unwrap_or_default()
        ));
    }
    if l.dropped_measured > 0 {
        reasons.push(format!(
            "{} measured requests were never sent: the queue of requests waiting for a connection was full",
            l.dropped_measured
        ));
    }
    reasons
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy() -> LimitInputs {
        LimitInputs {
            target_rate: 10_000.0,
            drawn_rate: 10_000.0,
            achieved_rate: 9_999.0,
            kept_rate: 9_999.0,
            min_achieved_ratio: 0.99,
            threshold_ns: 1_000_000,
            send_lateness_p50_ns: Some(20_000),
            pacer_lateness_p99_ns: Some(60_000),
            dropped_measured: 0,
            connections: 32,
            mean_service_s: 0.000_1,
            threads: 1,
            usage: None,
        }
    }

    #[test]
    fn a_healthy_run_or_a_stalling_gateway_is_not_generator_limited() {
        assert!(limit_reasons(&healthy()).is_empty());
        // A gateway stall delays a minority of requests a lot: the median is untouched.
        let stall = LimitInputs {
            achieved_rate: 9_990.0,
            kept_rate: 9_990.0,
            send_lateness_p50_ns: Some(150_000),
            ..healthy()
        };
        assert!(limit_reasons(&stall).is_empty());
        // A gateway that fails a flow's first step: its later steps were never due.
        let broken_flows = LimitInputs {
            achieved_rate: 9_000.0,
            kept_rate: 9_998.0,
            ..healthy()
        };
        assert!(limit_reasons(&broken_flows).is_empty());
        // A Poisson schedule that drew 2.5 % fewer arrivals for the window than the mean rate.
        let poisson_lull = LimitInputs {
            drawn_rate: 9_750.0,
            achieved_rate: 9_745.0,
            kept_rate: 9_745.0,
            ..healthy()
        };
        assert!(limit_reasons(&poisson_lull).is_empty());
        let behind_the_draws = LimitInputs {
            achieved_rate: 9_000.0,
            kept_rate: 9_000.0,
            ..poisson_lull
        };
        let r = limit_reasons(&behind_the_draws);
        assert!(
            r[0].contains("(9750 req/s drawn by the Poisson schedule"),
            "{r:?}"
        );
    }

    #[test]
    fn each_rule_names_its_reason() {
        let slow = LimitInputs {
            achieved_rate: 9_000.0,
            kept_rate: 9_000.0,
            ..healthy()
        };
        assert!(limit_reasons(&slow)[0].contains("achieved 9000 req/s, below 99%"));
        let slow_and_broken = LimitInputs {
            achieved_rate: 8_000.0,
            kept_rate: 9_000.0,
            ..healthy()
        };
        assert!(
            limit_reasons(&slow_and_broken)[0]
                .contains("achieved 9000 req/s (counting 1000 req/s of steps that broken flows")
        );
        let few_conns = LimitInputs {
            send_lateness_p50_ns: Some(5_000_000),
            connections: 4,
            mean_service_s: 0.001,
            ..healthy()
        };
        let r = limit_reasons(&few_conns);
        assert!(
            r[0].contains("raise `connections`") && r[0].contains("4000 req/s"),
            "{r:?}"
        );
        let cpu = LimitInputs {
            send_lateness_p50_ns: Some(5_000_000),
            ..healthy()
        };
        assert!(limit_reasons(&cpu)[0].contains("short of CPU"));
        // With the window's usage, the reason says saturated or starved (and names steal).
        let saturated = LimitInputs {
            usage: Some(Usage {
                generator_cores: Some(0.97),
                cpu_wait_share: Some(0.01),
                steal_share: Some(0.0),
                steal_share_max_cpu: Some(0.0),
            }),
            ..cpu
        };
        let r = limit_reasons(&saturated);
        assert!(r[0].contains("97 % of its 1 runtime core(s)"), "{r:?}");
        assert!(!r[0].contains("steal"), "{r:?}");
        let starved = LimitInputs {
            usage: Some(Usage {
                generator_cores: Some(0.46),
                cpu_wait_share: Some(0.12),
                steal_share: Some(0.021),
                steal_share_max_cpu: Some(0.03),
            }),
            pacer_lateness_p99_ns: Some(1_300_000),
            ..cpu
        };
        let r = limit_reasons(&starved);
        // Late sends, a late pacer, and 2.1 % steal on its own.
        assert_eq!(r.len(), 3, "{r:?}");
        assert!(r[2].contains("stopped a vCPU for 3.0 %"), "{r:?}");
        assert!(r[2].contains("2.1 % of the whole machine"), "{r:?}");
        let r = &r[..2];
        for reason in r {
            assert!(
                reason.contains("only 46 % of a core and its threads were kept waiting for a CPU 120 ms per second")
                    && reason.contains("cores of its own")
                    && reason.contains("2.1 % of the machine's CPU time (steal)"),
                "{reason}"
            );
        }
        let pacer = LimitInputs {
            pacer_lateness_p99_ns: Some(2_000_000),
            ..healthy()
        };
        assert!(limit_reasons(&pacer)[0].contains("pacer"));
        // Steal alone marks the run once one vCPU lost 1 % of the window; below, it does not.
        let stolen = |machine: f64, worst: Option<f64>| LimitInputs {
            usage: Some(Usage {
                generator_cores: Some(0.4),
                cpu_wait_share: Some(0.0),
                steal_share: Some(machine),
                steal_share_max_cpu: worst,
            }),
            ..healthy()
        };
        assert!(limit_reasons(&stolen(0.004, Some(0.009))).is_empty());
        // Half the machine's steal on one of two vCPUs: that vCPU lost 1.3 %.
        let r = limit_reasons(&stolen(0.0066, Some(0.013)));
        assert_eq!(r.len(), 1, "{r:?}");
        assert!(
            r[0].contains("1.3 %") && r[0].contains("P99") && r[0].contains("rerun"),
            "{r:?}"
        );
        // Without per-CPU figures the machine's share stands in.
        assert!(limit_reasons(&stolen(0.009, None)).is_empty());
        let r = limit_reasons(&stolen(0.113, None));
        assert!(r[0].contains("11.3 %"), "{r:?}");
        let dropped = LimitInputs {
            dropped_measured: 3,
            ..healthy()
        };
        assert!(limit_reasons(&dropped)[0].contains("3 measured requests"));
    }

    #[test]
    fn default_run_dirs_are_timestamped_and_unique() {
        let tmp = tempfile::tempdir().unwrap();
        // 2026-11-20 10:15:30 UTC
        let t = UNIX_EPOCH + Duration::from_secs(1_795_169_730);
        let a = default_run_dir(tmp.path(), t, Shard::SINGLE);
        assert_eq!(a.file_name().unwrap(), "load-20261120-101530");
        std::fs::create_dir(&a).unwrap();
        let b = default_run_dir(tmp.path(), t, Shard::SINGLE);
        assert_eq!(b.file_name().unwrap(), "load-20261120-101530-2");
        let c = default_run_dir(tmp.path(), t, Shard { index: 1, count: 2 });
        assert_eq!(c.file_name().unwrap(), "load-20261120-101530-shard1of2");
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn shards_parse() {
        assert_eq!(Shard::parse("0/1").unwrap(), Shard::SINGLE);
        assert_eq!(
            Shard::parse(" 2 / 3 ").unwrap(),
            Shard { index: 2, count: 3 }
        );
        for bad in ["1/1", "0/0", "a/2", "3", "-1/2", ""] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Shard { index: 1, count: 4 }.to_string(), "1/4");
    }

    #[test]
    fn jwt_auth_mints_a_bearer_token_in_the_profile_style() {
        let auth = Auth::Jwt {
            secret: crate::scenario::Secret::Inline("s".repeat(32)),
            subject: "admin".to_owned(),
            expiry: Duration::from_secs(3600),
            style: JwtStyle::Auto,
        };
        let (name, value) = auth_header(&auth, Some(Profile::Python), Duration::from_secs(5))
            .unwrap()
            .unwrap();
        assert_eq!(name, http::header::AUTHORIZATION);
        let token = value
            .to_str()
            .unwrap()
            .strip_prefix("Bearer ")
            .unwrap()
            .to_owned();
        let claims = shadowgate_sim::auth::verify_jwt(
            &token,
            "s".repeat(32).as_bytes(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs(),
            &shadowgate_sim::auth::JwtRules::python(),
        );
        assert!(claims.is_ok(), "{claims:?}");
        let missing = Auth::Jwt {
            secret: crate::scenario::Secret::Env("SHADOWGATE_TEST_SURELY_UNSET_VAR".to_owned()),
            subject: "a".to_owned(),
            expiry: Duration::from_secs(1),
            style: JwtStyle::Auto,
        };
        let err = auth_header(&missing, None, Duration::ZERO).unwrap_err();
        assert!(
            err.to_string().contains("SHADOWGATE_TEST_SURELY_UNSET_VAR"),
            "{err}"
        );
    }
}
