//! Configuration: [`RawMirrorConfig`] (what the user typed, strings and options) →
//! [`MirrorConfig`] (validated, typed), with every problem reported at once, before any port
//! is bound.

use std::num::{NonZeroU32, NonZeroUsize};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::{HeaderValue, Uri};
use shadowgate_diff::RuleSet;

use crate::error::ConfigError;

/// Defaults, shared with the CLI's help text.
pub mod defaults {
    use std::time::Duration;

    /// Shadow requests in flight at once (the candidate's budget).
    pub const SHADOW_CONCURRENCY: usize = 256;
    /// Deadline of one shadow request (headers and body).
    pub const SHADOW_TIMEOUT: Duration = Duration::from_secs(2);
    /// TCP connect deadline, every upstream.
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
    /// Deadline for the primary's response headers (its body may stream for as long as it likes).
    pub const PRIMARY_TIMEOUT: Duration = Duration::from_secs(30);
    /// Bodies buffered for comparison up to this size.
    pub const BODY_LIMIT: usize = 1 << 20;
    /// Recording interval.
    pub const INTERVAL: Duration = Duration::from_secs(1);
    /// Consecutive candidate failures that open the circuit breaker.
    pub const BREAKER_FAILURES: u32 = 5;
    /// How long an open breaker waits before one probe request.
    pub const BREAKER_PAUSE: Duration = Duration::from_secs(5);
    /// Exchanges waiting for comparison before new ones are dropped (and counted).
    pub const COMPARE_QUEUE: usize = 1024;
    /// Bytes of bodies waiting for comparison before new exchanges are dropped (and counted).
    pub const COMPARE_QUEUE_BYTES: usize = 64 << 20;
    /// Regression lines held back for learned noise (with `--secondary`) before they are
    /// written with a provisional verdict.
    pub const HOLD_MAX: usize = 100_000;
    /// How long shutdown lets open requests and shadow requests finish.
    pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
    /// Proxy worker threads (each a single-threaded runtime).
    pub const WORKERS: usize = 2;
    /// How long a learned id pair is kept.
    pub const ID_TTL: Duration = Duration::from_secs(600);
    /// Most id pairs kept at once.
    pub const ID_MAX: usize = 1_000_000;
}

/// The configuration as given (the CLI fills it from flags). `Default` holds the defaults of
/// [`defaults`] and no URLs.
#[derive(Debug, Clone)]
pub struct RawMirrorConfig {
    /// Primary base URL (`http://host:port`).
    pub primary: String,
    /// Candidate base URL.
    pub candidate: String,
    /// Optional second primary for learned noise.
    pub secondary: Option<String>,
    /// Run directory.
    pub out: PathBuf,
    /// Rules (already loaded).
    pub rules: Arc<RuleSet>,
    /// Where the rules came from (for the manifest's `scenario`).
    pub rules_source: Option<String>,
    /// Rollout phase (for the manifest).
    pub phase: Option<String>,
    /// Shadow requests in flight at once.
    pub shadow_concurrency: usize,
    /// Deadline of one shadow request.
    pub shadow_timeout: Duration,
    /// TCP connect deadline (every upstream).
    pub connect_timeout: Duration,
    /// Deadline for the primary's response headers.
    pub primary_timeout: Duration,
    /// Body buffering limit for comparison.
    pub body_limit: usize,
    /// Recording interval.
    pub interval: Duration,
    /// Consecutive candidate failures that open the breaker.
    pub breaker_failures: u32,
    /// Pause of an open breaker before a probe.
    pub breaker_pause: Duration,
    /// Exchanges waiting for comparison.
    pub compare_queue: usize,
    /// Body bytes waiting for comparison.
    pub compare_queue_bytes: usize,
    /// Regression lines held back for learned noise.
    pub hold_max: usize,
    /// Send the client's `Host` to every upstream instead of the upstream's own authority.
    pub preserve_host: bool,
    /// Shutdown grace period.
    pub shutdown_grace: Duration,
    /// Proxy worker threads.
    pub workers: usize,
    /// Append every request to this NDJSON file (`--capture`), for `shadowgate replay`.
    pub capture: Option<PathBuf>,
    /// Keep secrets in the capture (`--capture-secrets`; test gateways only).
    pub capture_secrets: bool,
    /// Version written into the manifest.
    pub tool_version: String,
    /// How long a learned id pair is kept (`--id-ttl`).
    pub id_ttl: Duration,
    /// Most id pairs kept (`--id-max`).
    pub id_max: usize,
    /// How long a follow-up waits for its order's candidate id; `None`: the shadow timeout.
    pub id_wait: Option<Duration>,
}

impl Default for RawMirrorConfig {
    fn default() -> Self {
        Self {
            primary: String::new(),
            candidate: String::new(),
            secondary: None,
            out: PathBuf::new(),
            rules: Arc::new(RuleSet::default()),
            rules_source: None,
            phase: None,
            shadow_concurrency: defaults::SHADOW_CONCURRENCY,
            shadow_timeout: defaults::SHADOW_TIMEOUT,
            connect_timeout: defaults::CONNECT_TIMEOUT,
            primary_timeout: defaults::PRIMARY_TIMEOUT,
            body_limit: defaults::BODY_LIMIT,
            interval: defaults::INTERVAL,
            breaker_failures: defaults::BREAKER_FAILURES,
            breaker_pause: defaults::BREAKER_PAUSE,
            compare_queue: defaults::COMPARE_QUEUE,
            compare_queue_bytes: defaults::COMPARE_QUEUE_BYTES,
            hold_max: defaults::HOLD_MAX,
            preserve_host: false,
            shutdown_grace: defaults::SHUTDOWN_GRACE,
            workers: defaults::WORKERS,
            capture: None,
            capture_secrets: false,
            tool_version: env!("CARGO_PKG_VERSION").to_owned(),
            id_ttl: defaults::ID_TTL,
            id_max: defaults::ID_MAX,
            id_wait: None,
        }
    }
}

/// One upstream: a plain-HTTP origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// `primary`, `candidate` or `secondary` (the target name in the run directory).
    pub name: &'static str,
    /// `http://host:port` as normalized (no path, no credentials).
    pub url: String,
    /// Host to connect to.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Authority for absolute request URIs.
    pub authority: Authority,
    /// Value of the `Host` header this upstream gets (its own authority, see the crate docs).
    pub host_header: HeaderValue,
}

impl Upstream {
    /// Parses `http://host[:port][/]`.
    ///
    /// # Errors
    /// A message saying what is wrong (https, a path, credentials, no host).
    pub fn parse(name: &'static str, text: &str) -> Result<Upstream, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("is empty; give a URL such as http://127.0.0.1:8080".into());
        }
        let uri: Uri = text
            .parse()
            .map_err(|e| format!("{text:?} is not a URL ({e})"))?;
        match uri.scheme() {
            Some(s) if *s == Scheme::HTTP => {}
            Some(s) if *s == Scheme::HTTPS => {
                return Err(format!(
                    "{text:?}: https upstreams are not supported; put the mirror next to the gateway on plain http"
                ));
            }
            _ => {
                return Err(format!(
                    "{text:?} needs the http:// scheme, e.g. http://127.0.0.1:8080"
                ));
            }
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| format!("{text:?} has no host"))?;
        if authority.as_str().contains('@') {
            return Err(format!(
                "{text:?}: credentials in the URL are not supported (they would be written to the run directory)"
            ));
        }
        if let Some(pq) = uri.path_and_query()
            && (pq.as_str() != "/" && !pq.as_str().is_empty())
        {
            return Err(format!(
                "{text:?}: a path prefix is not supported; give only http://host:port"
            ));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if host.is_empty() {
            return Err(format!("{text:?} has no host"));
        }
        let port = authority.port_u16().unwrap_or(80);
        let host_header = HeaderValue::from_str(authority.as_str())
            .map_err(|_| format!("{text:?}: the host is not a valid Host header"))?;
        Ok(Upstream {
            name,
            url: format!("http://{}", authority.as_str()),
            host,
            port,
            authority,
            host_header,
        })
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct MirrorConfig {
    /// Serves the clients.
    pub primary: Upstream,
    /// Gets the shadow copy.
    pub candidate: Upstream,
    /// Second primary for learned noise (idempotent requests only).
    pub secondary: Option<Upstream>,
    /// Run directory.
    pub out: PathBuf,
    /// Comparison and mirroring rules.
    pub rules: Arc<RuleSet>,
    /// Where the rules came from.
    pub rules_source: Option<String>,
    /// Rollout phase.
    pub phase: Option<String>,
    /// Shadow budget and deadlines.
    pub shadow: ShadowConfig,
    /// TCP connect deadline (every upstream).
    pub connect_timeout: Duration,
    /// Deadline for the primary's response headers.
    pub primary_timeout: Duration,
    /// Bodies are buffered for comparison up to this many bytes.
    pub body_limit: usize,
    /// Recording interval.
    pub interval: Duration,
    /// Send the client's `Host` to every upstream.
    pub preserve_host: bool,
    /// Shutdown grace period.
    pub shutdown_grace: Duration,
    /// Proxy worker threads (each a single-threaded runtime; a connection stays on one).
    pub workers: NonZeroUsize,
    /// Request capture, if on.
    pub capture: Option<crate::capture::CaptureConfig>,
    /// Version written into the manifest.
    pub tool_version: String,
    /// Id correlation bounds.
    pub ids: IdConfig,
}

/// Id correlation: how long pairs are kept, how many, how long a follow-up waits.
#[derive(Debug, Clone, Copy)]
pub struct IdConfig {
    /// Time to live of a learned pair.
    pub ttl: Duration,
    /// Most pairs kept.
    pub max: NonZeroUsize,
    /// Wait of a follow-up for its order's candidate id.
    pub wait: Duration,
}

/// Shadow budget: bounded concurrency, deadline, breaker, comparison queue.
#[derive(Debug, Clone)]
pub struct ShadowConfig {
    /// Shadow requests in flight at once.
    pub concurrency: NonZeroUsize,
    /// Deadline of one shadow request (headers and body).
    pub timeout: Duration,
    /// Consecutive failures that open the breaker.
    pub breaker_failures: NonZeroU32,
    /// Pause before a probe.
    pub breaker_pause: Duration,
    /// Exchanges waiting for comparison.
    pub compare_queue: NonZeroUsize,
    /// Body bytes waiting for comparison.
    pub compare_queue_bytes: usize,
    /// Regression lines held back for learned noise.
    pub hold_max: usize,
}

impl RawMirrorConfig {
    /// Validates everything, reporting every problem at once.
    ///
    /// # Errors
    /// [`ConfigError`] listing each problem with the setting it concerns.
    pub fn validate(self) -> Result<MirrorConfig, ConfigError> {
        let mut problems: Vec<(String, String)> = Vec::new();
        let mut upstream = |name: &'static str, flag: &str, text: &str| {
            Upstream::parse(name, text)
                .map_err(|m| problems.push((flag.to_owned(), m)))
                .ok()
        };
        let primary = upstream("primary", "primary", &self.primary);
        let candidate = upstream("candidate", "candidate", &self.candidate);
        let secondary = self
            .secondary
            .as_deref()
            .and_then(|s| upstream("secondary", "secondary", s));
        let mut check = |ok: bool, key: &str, msg: &str| {
            if !ok {
                problems.push((key.to_owned(), msg.to_owned()));
            }
        };
        check(
            !self.out.as_os_str().is_empty(),
            "out",
            "a run directory is needed",
        );
        check(
            !self.shadow_timeout.is_zero(),
            "shadow-timeout",
            "must be more than 0",
        );
        check(
            !self.connect_timeout.is_zero(),
            "connect-timeout",
            "must be more than 0",
        );
        check(
            !self.primary_timeout.is_zero(),
            "primary-timeout",
            "must be more than 0",
        );
        check(
            self.interval >= Duration::from_millis(10),
            "interval",
            "must be at least 10ms",
        );
        check(
            self.body_limit >= 1,
            "body-limit",
            "must be at least 1 byte",
        );
        check(
            self.capture.is_some() || !self.capture_secrets,
            "capture-secrets",
            "only applies together with --capture FILE",
        );
        let capture = self
            .capture
            .clone()
            .map(|path| crate::capture::CaptureConfig {
                path,
                secrets: self.capture_secrets,
                queue: crate::capture::DEFAULT_QUEUE,
            });
        let concurrency = NonZeroUsize::new(self.shadow_concurrency);
        check(
            concurrency.is_some(),
            "shadow-concurrency",
            "must be at least 1 (to mirror nothing, point the rules' sample_percent at 0)",
        );
        let failures = NonZeroU32::new(self.breaker_failures);
        check(failures.is_some(), "breaker-failures", "must be at least 1");
        let queue = NonZeroUsize::new(self.compare_queue);
        check(queue.is_some(), "compare-queue", "must be at least 1");
        let workers = NonZeroUsize::new(self.workers);
        check(workers.is_some(), "workers", "must be at least 1");
        let id_max = NonZeroUsize::new(self.id_max).unwrap_or(NonZeroUsize::MIN);
        check(self.id_max >= 1, "id-max", "must be at least 1");
        check(!self.id_ttl.is_zero(), "id-ttl", "must be more than 0");
        let ids = IdConfig {
            ttl: self.id_ttl,
            max: id_max,
            wait: self.id_wait.unwrap_or(self.shadow_timeout),
        };
        if let (Some(p), Some(c)) = (&primary, &candidate)
            && p.authority == c.authority
        {
            problems.push((
                "candidate".into(),
                format!(
                    "is the same address as the primary ({}): the candidate would receive every write twice",
                    p.url
                ),
            ));
        }
        match (
            primary,
            candidate,
            concurrency,
            failures,
            (queue, workers),
            problems.is_empty(),
        ) {
            (
                Some(primary),
                Some(candidate),
                Some(concurrency),
                Some(failures),
                (Some(queue), Some(workers)),
                true,
            ) => Ok(MirrorConfig {
                primary,
                candidate,
                secondary,
                out: self.out,
                rules: self.rules,
                rules_source: self.rules_source,
                phase: self.phase,
                shadow: ShadowConfig {
                    concurrency,
                    timeout: self.shadow_timeout,
                    breaker_failures: failures,
                    breaker_pause: self.breaker_pause,
                    compare_queue: queue,
                    compare_queue_bytes: self.compare_queue_bytes,
                    hold_max: self.hold_max,
                },
                connect_timeout: self.connect_timeout,
                primary_timeout: self.primary_timeout,
                body_limit: self.body_limit,
                interval: self.interval,
                preserve_host: self.preserve_host,
                shutdown_grace: self.shutdown_grace,
                workers,
                capture,
                tool_version: self.tool_version,
                ids,
            }),
            _ => Err(ConfigError { problems }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_upstreams() {
        let u = Upstream::parse("primary", "http://127.0.0.1:8080/").unwrap();
        assert_eq!(u.url, "http://127.0.0.1:8080");
        assert_eq!((u.host.as_str(), u.port), ("127.0.0.1", 8080));
        assert_eq!(u.host_header, "127.0.0.1:8080");
        let u = Upstream::parse("primary", "http://gw").unwrap();
        assert_eq!(u.port, 80);
        let u = Upstream::parse("primary", "http://[::1]:9").unwrap();
        assert_eq!(u.host, "::1");
        for bad in [
            "",
            "127.0.0.1:80",
            "https://h:1",
            "http://u:p@h:1",
            "http://h:1/api",
            "ftp://h",
        ] {
            assert!(Upstream::parse("primary", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reports_every_problem() {
        let raw = RawMirrorConfig {
            primary: "https://x".into(),
            candidate: "nope".into(),
            shadow_concurrency: 0,
            interval: Duration::ZERO,
            ..RawMirrorConfig::default()
        };
        let err = raw.validate().unwrap_err();
        let keys: Vec<&str> = err.problems.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "primary",
                "candidate",
                "out",
                "interval",
                "shadow-concurrency"
            ]
        );
        assert!(err.to_string().contains("https upstreams"));
    }

    #[test]
    fn candidate_must_differ_from_primary() {
        let raw = RawMirrorConfig {
            primary: "http://127.0.0.1:1".into(),
            candidate: "http://127.0.0.1:1/".into(),
            out: "x".into(),
            ..RawMirrorConfig::default()
        };
        let err = raw.validate().unwrap_err();
        assert_eq!(err.problems[0].0, "candidate");
        let ok = RawMirrorConfig {
            primary: "http://127.0.0.1:1".into(),
            candidate: "http://127.0.0.1:2".into(),
            out: "x".into(),
            ..RawMirrorConfig::default()
        };
        let cfg = ok.validate().unwrap();
        assert_eq!(cfg.shadow.concurrency.get(), 256);
    }
}
