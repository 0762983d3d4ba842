//! `shadowgate mirror`: the shadow proxy.
//!
//! Everything is checked before a port is bound: the rules file (every problem at once, with
//! file and key), the URLs and the settings. Then the proxy (and admin) addresses are bound,
//! one line goes to stdout —
//! `shadowgate mirror listening on http://<addr> (admin http://<addr>) -> <run dir>` — and the
//! mirror serves until SIGINT or SIGTERM, when it stops cleanly (open requests finish, shadow
//! requests in flight end, the run directory is finished with `ended_at`), prints a one-line
//! summary and exits 0.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use shadowgate_mirror::{RawMirrorConfig, Summary, defaults};

/// Arguments of `shadowgate mirror`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
EXAMPLES:
    shadowgate mirror --primary http://127.0.0.1:8080 --candidate http://127.0.0.1:8081 \\
        --listen 127.0.0.1:8000 --rules scenarios/veloz.toml --out reports/mirror-1 --admin 127.0.0.1:9100
    shadowgate mirror --primary http://127.0.0.1:8080 --candidate http://127.0.0.1:8081 \\
        --secondary http://127.0.0.1:8082 --rules scenarios/veloz.toml

Without --rules, every answer is compared whole (status, content-type, body) and only GET,
HEAD and OPTIONS are mirrored. The admin listener serves /metrics (Prometheus text),
/summary (JSON: coverage, drops, breaker, difference groups) and /health.")]
pub struct MirrorArgs {
    /// The gateway that serves the clients (http://host:port).
    #[arg(long, value_name = "URL")]
    pub primary: String,

    /// The gateway that gets the shadow copy (http://host:port).
    #[arg(long, value_name = "URL")]
    pub candidate: String,

    /// A second instance of the primary's implementation: safe requests also go there, and
    /// whatever differs between the two primaries is learned as noise (Diffy's rule). The
    /// final verdicts are written at the end of the run.
    #[arg(long, value_name = "URL")]
    pub secondary: Option<String>,

    /// Address to listen on for clients (port 0 picks a free port; the bound address is
    /// printed).
    #[arg(long, default_value = "127.0.0.1:8000", value_name = "ADDR")]
    pub listen: String,

    /// Diff and mirroring rules (TOML; may `include` shared files). Default: compare
    /// everything, mirror only GET/HEAD/OPTIONS.
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,

    /// Run directory [default: reports/mirror-<UTC time>].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Admin listener address (/metrics, /summary, /health); none if not given.
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<String>,

    /// Shadow requests in flight at once; a copy that finds none free is dropped and counted.
    #[arg(long, default_value_t = defaults::SHADOW_CONCURRENCY, value_name = "N")]
    pub shadow_concurrency: usize,

    /// Deadline of one shadow request, answer body included.
    #[arg(long, default_value = "2s", value_name = "D", value_parser = humantime::parse_duration)]
    pub shadow_timeout: Duration,

    /// TCP connect deadline for every upstream (the primary unreachable: 502 within it).
    #[arg(long, default_value = "1s", value_name = "D", value_parser = humantime::parse_duration)]
    pub connect_timeout: Duration,

    /// Deadline for the primary's response headers (then 504); its body may stream longer.
    #[arg(long, default_value = "30s", value_name = "D", value_parser = humantime::parse_duration)]
    pub primary_timeout: Duration,

    /// Bodies are buffered for comparison up to this size (e.g. 1MiB, 64KiB, 4096); larger
    /// ones stream through and are counted as not compared.
    #[arg(long, default_value = "1MiB", value_name = "SIZE", value_parser = parse_size)]
    pub body_limit: usize,

    /// Recording interval (latency and counts are written every interval).
    #[arg(long, default_value = "1s", value_name = "D", value_parser = humantime::parse_duration)]
    pub interval: Duration,

    /// Consecutive candidate failures (connect error, timeout, broken answer) that open the
    /// circuit breaker.
    #[arg(long, default_value_t = defaults::BREAKER_FAILURES, value_name = "N")]
    pub breaker_failures: u32,

    /// How long an open breaker waits before letting one probe request through.
    #[arg(long, default_value = "5s", value_name = "D", value_parser = humantime::parse_duration)]
    pub breaker_pause: Duration,

    /// Send the client's Host header to every upstream (default: each upstream gets its own
    /// host:port, as nginx's proxy_pass does).
    #[arg(long)]
    pub preserve_host: bool,

    /// Rollout phase, recorded in the manifest.
    #[arg(long, value_name = "NAME")]
    pub phase: Option<String>,

    /// Proxy worker threads, each with its own event loop; a client connection, its primary
    /// connection and its shadow requests stay on one of them.
    #[arg(long, default_value_t = defaults::WORKERS, value_name = "N")]
    pub workers: usize,

    /// How long a learned id pair (primary ↔ candidate order id) is kept.
    #[arg(long, default_value = "10m", value_name = "D", value_parser = humantime::parse_duration)]
    pub id_ttl: Duration,

    /// Most id pairs kept at once (the oldest go first; both are counted).
    #[arg(long, default_value_t = defaults::ID_MAX, value_name = "N")]
    pub id_max: usize,

    /// How long a stop lets open requests finish.
    #[arg(long, default_value = "5s", value_name = "D", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,

    /// Append every request (method, path, headers, body, arrival time, client) to FILE as
    /// NDJSON, for `shadowgate replay`. Secret headers and body fields are redacted.
    #[arg(long, value_name = "FILE")]
    pub capture: Option<PathBuf>,

    /// Keep secrets (Authorization, X-API-Key, cookies, password/token fields) in the
    /// capture, so a replay can authenticate. Only for test gateways with throw-away
    /// credentials (CI); a redacted capture replays as unauthenticated requests.
    #[arg(long, requires = "capture")]
    pub capture_secrets: bool,
}

/// `1MiB`, `64KiB`, `2MB`, `4096`.
fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: usize = num
        .parse()
        .map_err(|_| format!("`{text}` is not a size (e.g. 1MiB, 64KiB, 4096)"))?;
    let mult: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        other => {
            return Err(format!(
                "`{other}` is not a size unit (B, KiB, MiB, KB, MB)"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{text}` is too large"))
}

pub async fn run(args: MirrorArgs) -> anyhow::Result<ExitCode> {
    // 1. Everything that can be wrong, before binding.
    let (rules, rules_source) = match &args.rules {
        Some(path) => (
            shadowgate_mirror::load_rules(path)?,
            Some(path.display().to_string()),
        ),
        None => (shadowgate_mirror::default_rules(), None),
    };
    let listen: SocketAddr = args.listen.parse().with_context(|| {
        format!(
            "--listen {:?} is not an address (e.g. 127.0.0.1:8000)",
            args.listen
        )
    })?;
    let admin: Option<SocketAddr> = args
        .admin
        .as_deref()
        .map(|a| {
            a.parse()
                .with_context(|| format!("--admin {a:?} is not an address (e.g. 127.0.0.1:9100)"))
        })
        .transpose()?;
    let out = args
        .out
        .unwrap_or_else(|| default_run_dir(SystemTime::now()));
    let config = RawMirrorConfig {
        primary: args.primary,
        candidate: args.candidate,
        secondary: args.secondary,
        out: out.clone(),
        rules: Arc::new(rules),
        rules_source,
        phase: args.phase,
        shadow_concurrency: args.shadow_concurrency,
        shadow_timeout: args.shadow_timeout,
        connect_timeout: args.connect_timeout,
        primary_timeout: args.primary_timeout,
        body_limit: args.body_limit,
        interval: args.interval,
        breaker_failures: args.breaker_failures,
        breaker_pause: args.breaker_pause,
        preserve_host: args.preserve_host,
        shutdown_grace: args.shutdown_grace,
        workers: args.workers,
        id_ttl: args.id_ttl,
        id_max: args.id_max,
        capture: args.capture,
        capture_secrets: args.capture_secrets,
        tool_version: env!("CARGO_PKG_VERSION").to_owned(),
        ..RawMirrorConfig::default()
    }
    .validate()?;

    // 2. Bind, start, announce.
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let admin_listener = match admin {
        Some(a) => Some(
            tokio::net::TcpListener::bind(a)
                .await
                .with_context(|| format!("cannot listen on {a} (--admin)"))?,
        ),
        None => None,
    };
    let mirror = shadowgate_mirror::start(config, listener, admin_listener).await?;
    // Before the address is printed: a signal right after it must stop us cleanly.
    let mut shutdown = crate::signals::Shutdown::install()?;
    {
        let admin = mirror
            .admin_addr()
            .map(|a| format!(" (admin http://{a})"))
            .unwrap_or_default();
        let mut stdout = std::io::stdout().lock();
        writeln!(
            stdout,
            "shadowgate mirror listening on http://{}{admin} -> {}",
            mirror.local_addr(),
            out.display()
        )
        .and_then(|()| stdout.flush())
        .context("cannot write to stdout")?;
    }

    // 3. Serve until told to stop, then stop cleanly.
    shutdown.recv().await;
    tracing::info!("signal received, shutting down");
    let capture = mirror.capture();
    let summary = mirror.shutdown().await?;
    println!("{}", one_line(&summary));
    if let Some(c) = capture {
        let c = c.summary();
        println!(
            "captured {} request(s) to {} ({} dropped, {} without body{})",
            c.written,
            c.file.display(),
            c.dropped,
            c.body_omitted,
            if c.secrets_kept {
                ", secrets kept"
            } else {
                ", secrets redacted"
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn one_line(s: &Summary) -> String {
    let coverage = s
        .coverage
        .map_or_else(|| "n/a".to_owned(), |c| format!("{:.1}%", c * 100.0));
    format!(
        "mirror stopped: {} requests; shadow: {} eligible, {} compared (coverage {coverage}), {} dropped, {} breaker-open, {} timeouts; comparisons: {} regression, {} noise, {} ignored-only, {} match",
        s.primary.requests,
        s.shadow.eligible,
        s.shadow.compared,
        s.shadow.dropped_budget,
        s.shadow.breaker_open,
        s.shadow.timeout,
        s.comparisons.regression,
        s.comparisons.noise,
        s.comparisons.ignored,
        s.comparisons.matched,
    )
}

/// `reports/mirror-YYYYMMDD-HHMMSS` (UTC), or with `-2`, `-3`… if taken.
fn default_run_dir(now: SystemTime) -> PathBuf {
    crate::pipeline::default_dir_at("mirror", now)
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (Howard Hinnant's
/// algorithm).
pub(crate) fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("2MB"), Ok(2_000_000));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5 parsecs").is_err());
    }

    #[test]
    fn run_dir_names_are_utc_dates() {
        // 2026-03-01 12:34:56 UTC
        let t = std::time::UNIX_EPOCH + Duration::from_secs(1_772_368_496);
        let p = default_run_dir(t);
        assert_eq!(p, PathBuf::from("reports/mirror-20260301-123456"));
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
