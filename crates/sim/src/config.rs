//! Simulator configuration: TOML → [`RawSimConfig`] (serde, unknown keys rejected) →
//! validated [`SimConfig`], with every problem reported at once under its key path
//! (`faults[2].fraction: 1.5 is not in 0..=1`).
//!
//! # The `[differences]` switches (cpp profile only)
//!
//! Each switch names one aspect in which the C++ gateway differs from the Python one
//! (veloz-api.md §9). All are `true` by default, so a `cpp` simulator shows every real
//! difference; switching one off makes that aspect behave as the Python gateway does, so tests
//! can also run "identical" pairs. The `python` profile is Python in every aspect.
//!
//! | switch | §9 item | observable over HTTP as |
//! |---|---|---|
//! | `paths` | 1 | route table: `POST /api/order` vs `/api/orders`, `/api/cancel` body (`client_order_id` vs `order_ids`), `orders_state`/`order_state`/`execution/ping` only in PY, key deletion by query vs path, CPP-only `/api/health`, `/metrics`, refresh, logout, positions, config CRUD, `/api/market/{symbol}`, `GET/DELETE /api/orders/{id}` |
//! | `envelope` | 2 | `{"status":"success","data":…}` vs bare objects / `{"items":…}` |
//! | `shapes` | 3 | `/health`, `/api/market`, `/api/account` (zeroed balances), `/api/config`, order lists (order objects vs raw events), order placement request parsing and answer, API-key answers |
//! | `login` | 4 | login request (`user_id` vs `username`), admin-only vs any user, answer (`token` vs `access_token`+`refresh_token`+`expires_in`), JWT header spacing and claims |
//! | `auth` | 5 | default enablement, public paths (`/api/stream`), X-API-Key vs Bearer priority, 401 bodies and `WWW-Authenticate`, permission model (PY read/write/admin vs scoped `write:orders`…, so JWT users get 403), JWT checks (`alg`, future `iat`), key handlers that demand a Bearer token |
//! | `errors` | 6 | machine codes (`bad_params`) vs sentences; HTML vs JSON 404 for unknown routes |
//! | `sse` | 7 | event names, `retry:`, replay on connect vs only with a last id, `Last-Event-ID`, keep-alive comment vs `keepalive` event, data shape, stream limit |
//! | `rate_limit_headers` | 8 | `Retry-After` seconds vs ISO 8601, duplicated headers on 429, bucket key |
//! | `json_format` | (§1) | Python `json.dumps` spacing and float `repr` vs compact JSON with `%g` doubles; `application/json; charset=utf-8` vs `application/json` |
//! | `headers` | (§1) | `Server: SimpleHTTP/0.6 Python/3.11.7`, CORS headers on every answer, title-case header names, `Connection: close` on HTML errors |
//!
//! §9.9 (engine command spelling and engine version) is **not** observable over HTTP: both
//! profiles drive the same simulated (old, simulating) engine in-process, so there is no
//! switch for it.
//!
//! # Other decisions
//! - `auth.enabled` defaults to the real gateways' defaults: off for `python`, on for `cpp`
//!   (and off for `cpp` when `differences.auth = false`, as Python would be).
//! - `auth.admin_password` defaults to `"admin"`, a simulator convenience: the real gateways
//!   default to an empty password, with which no login can succeed (set `""` to get that).
//! - A `cpp` JWT secret shorter than 32 bytes is a configuration error, as the real gateway
//!   fails to start with one. Without `jwt_secret`, `python` draws a random secret per process
//!   (tokens do not carry over between instances) and `cpp` uses its published default.
//! - `seed` makes every injected decision reproducible; `deterministic` (default: on when a
//!   seed is given) also puts the engine's ticks on an epoch-aligned grid so two simulators
//!   quote the same prices.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use crate::engine::{EngineConfig, EngineDivergence};
use crate::routes;

/// Which gateway a simulator imitates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    Python,
    Cpp,
}

impl Profile {
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Python => "python",
            Profile::Cpp => "cpp",
        }
    }

    /// Parses `python` or `cpp`.
    pub fn parse(s: &str) -> Option<Profile> {
        match s {
            "python" | "py" => Some(Profile::Python),
            "cpp" | "c++" => Some(Profile::Cpp),
            _ => None,
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Python or C++ behaviour for one aspect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Python,
    Cpp,
}

/// One switch per §9 difference (see the module docs); `true` = behave as the C++ gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Differences {
    pub paths: bool,
    pub envelope: bool,
    pub shapes: bool,
    pub login: bool,
    pub auth: bool,
    pub errors: bool,
    pub sse: bool,
    pub rate_limit_headers: bool,
    pub json_format: bool,
    pub headers: bool,
}

impl Differences {
    /// Every switch set to `on`.
    pub fn all(on: bool) -> Differences {
        Differences {
            paths: on,
            envelope: on,
            shapes: on,
            login: on,
            auth: on,
            errors: on,
            sse: on,
            rate_limit_headers: on,
            json_format: on,
            headers: on,
        }
    }
}

/// The behaviour chosen for each aspect, derived from profile and [`Differences`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Aspects {
    pub paths: Style,
    pub envelope: Style,
    pub shapes: Style,
    pub login: Style,
    pub auth: Style,
    pub errors: Style,
    pub sse: Style,
    pub rate_limit_headers: Style,
    pub json_format: Style,
    pub headers: Style,
}

impl Aspects {
    pub fn new(profile: Profile, d: &Differences) -> Aspects {
        let pick = |on: bool| {
            if profile == Profile::Cpp && on {
                Style::Cpp
            } else {
                Style::Python
            }
        };
        Aspects {
            paths: pick(d.paths),
            envelope: pick(d.envelope),
            shapes: pick(d.shapes),
            login: pick(d.login),
            auth: pick(d.auth),
            errors: pick(d.errors),
            sse: pick(d.sse),
            rate_limit_headers: pick(d.rate_limit_headers),
            json_format: pick(d.json_format),
            headers: pick(d.headers),
        }
    }
}

/// A latency distribution for injected delays.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LatencyModel {
    Fixed(Duration),
    Uniform {
        low: Duration,
        high: Duration,
    },
    /// Log-normal with the given median and 99th percentile
    /// (`sigma = ln(p99 / median) / 2.326`).
    LogNormal {
        median: Duration,
        p99: Duration,
    },
}

impl LatencyModel {
    /// Parses `fixed:200us`, `uniform:100us..1ms`, `lognormal:150us,1ms` (median, p99), or
    /// `0`/`none` for no delay.
    pub fn parse(spec: &str) -> Result<LatencyModel, String> {
        let spec = spec.trim();
        if spec == "0" || spec == "none" {
            return Ok(LatencyModel::Fixed(Duration::ZERO));
        }
        let (kind, args) = spec.split_once(':').ok_or_else(|| {
            format!("`{spec}`: expected `fixed:D`, `uniform:D..D` or `lognormal:MEDIAN,P99`")
        })?;
        let d = |s: &str| parse_duration(s.trim());
        match kind.trim() {
            "fixed" => Ok(LatencyModel::Fixed(d(args)?)),
            "uniform" => {
                let (a, b) = args
                    .split_once("..")
                    .ok_or_else(|| format!("`{spec}`: uniform needs `LOW..HIGH`"))?;
                let (low, high) = (d(a)?, d(b)?);
                if low > high {
                    return Err(format!("`{spec}`: low bound is above the high bound"));
                }
                Ok(LatencyModel::Uniform { low, high })
            }
            "lognormal" | "log-normal" => {
                let (a, b) = args
                    .split_once(',')
                    .ok_or_else(|| format!("`{spec}`: lognormal needs `MEDIAN,P99`"))?;
                let (median, p99) = (d(a)?, d(b)?);
                if median.is_zero() || p99 < median {
                    return Err(format!("`{spec}`: needs 0 < median <= p99"));
                }
                Ok(LatencyModel::LogNormal { median, p99 })
            }
            other => Err(format!(
                "`{other}` is not a latency model (fixed, uniform, lognormal)"
            )),
        }
    }

    /// True when the model never delays.
    pub fn is_zero(&self) -> bool {
        matches!(self, LatencyModel::Fixed(d) if d.is_zero())
    }
}

/// Parses a humantime duration (`200us`, `1ms`, `10s`, `0`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("`{s}` is not a duration ({e})"))
}

/// A route pattern: `[METHOD ]PATH-GLOB`, matched against `METHOD template` keys
/// (`GET /api/orders/{id}`, `POST (unmatched)`); `*` in the path matches any run of characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePattern {
    pub method: Option<String>,
    pub path: String,
}

impl RoutePattern {
    pub fn parse(text: &str) -> Result<RoutePattern, String> {
        let text = text.trim();
        let (method, path) = match text.split_once(' ') {
            Some((m, p)) => (Some(m.trim().to_ascii_uppercase()), p.trim()),
            None => (None, text),
        };
        if let Some(m) = &method
            && m != "*"
            && !routes::METHOD_NAMES.contains(&m.as_str())
        {
            return Err(format!("`{text}`: `{m}` is not an HTTP method"));
        }
        if !(path.starts_with('/') || path.starts_with('(') || path.starts_with('*')) {
            return Err(format!(
                "`{text}`: expected `[METHOD ]/path` (a `*` matches anything)"
            ));
        }
        Ok(RoutePattern {
            method: method.filter(|m| m != "*"),
            path: path.to_owned(),
        })
    }

    /// Whether the pattern matches a `METHOD template` key.
    pub fn matches(&self, key: &str) -> bool {
        let (method, template) = key.split_once(' ').unwrap_or(("", key));
        if let Some(m) = &self.method
            && m != method
        {
            return false;
        }
        glob_match(self.path.as_bytes(), template.as_bytes())
    }
}

impl fmt::Display for RoutePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.method {
            Some(m) => write!(f, "{m} {}", self.path),
            None => f.write_str(&self.path),
        }
    }
}

/// `*` matches any (possibly empty) run of bytes; everything else literally.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// What an injected fault does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FaultKind {
    /// Close the connection with a TCP RST instead of answering.
    Reset,
    /// Never answer (until shutdown).
    Hang,
    /// Send the answer `chunk_bytes` at a time, `delay` apart.
    SlowBody { delay: Duration, chunk_bytes: usize },
    /// Send `bytes` bytes of garbage instead of the answer, then close.
    Garbage { bytes: usize },
    /// Epoch-aligned stall: a request arriving while `(now % every) < stall` waits until the
    /// stall window ends.
    Stall { stall: Duration, every: Duration },
    /// Answer with this 5xx status instead of handling the request.
    Error { status: u16 },
}

impl FaultKind {
    /// The counter name used in `/__sim/stats`.
    pub fn name(&self) -> &'static str {
        match self {
            FaultKind::Reset => "reset",
            FaultKind::Hang => "hang",
            FaultKind::SlowBody { .. } => "slow_body",
            FaultKind::Garbage { .. } => "garbage",
            FaultKind::Stall { .. } => "stall",
            FaultKind::Error { .. } => "error_5xx",
        }
    }
}

/// One fault rule: a fraction of the requests on matching routes get the fault.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultRule {
    pub kind: FaultKind,
    /// `None`: every route (the simulator's own `/__sim/stats` is always exempt).
    pub route: Option<RoutePattern>,
    pub fraction: f64,
}

/// A divergence rule: change the JSON field at `pointer` in a fraction of the answers of
/// matching routes.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangedField {
    pub route: RoutePattern,
    pub pointer: String,
    pub fraction: f64,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct DivergenceConfig {
    pub changed_fields: Vec<ChangedField>,
    /// Fraction of SSE events silently left out of each stream.
    pub dropped_sse_fraction: f64,
    /// Engine event types (`fill`, `market`, ...) that may be dropped; empty = every type.
    pub dropped_sse_kinds: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuthConfig {
    pub enabled: bool,
    /// `None`: a random secret per process (python's behaviour with an empty secret).
    pub jwt_secret: Option<Vec<u8>>,
    /// `None`: no login can succeed.
    pub admin_password: Option<String>,
    /// Access token lifetime (PY `VELOZ_TOKEN_EXPIRY`, CPP `VELOZ_JWT_ACCESS_EXPIRY`).
    pub token_expiry: Duration,
    /// CPP refresh token lifetime.
    pub refresh_expiry: Duration,
    /// Serve `/metrics` without credentials (the real C++ public-path list does not include
    /// it; scrapers do not log in, so the simulator does by default).
    pub public_metrics: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitConfig {
    pub enabled: bool,
    pub capacity: u32,
    pub refill_per_s: f64,
    pub idle_ttl: Duration,
    /// CPP `VELOZ_RATE_LIMIT_PER_USER`: bucket by user id rather than by client address.
    pub per_user: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SseConfig {
    /// Quiet time after which a keep-alive is written (both gateways: 10 s).
    pub keepalive: Duration,
    /// Concurrent streams allowed (CPP 1000; PY unlimited).
    pub max_streams: Option<usize>,
    /// The CPP `retry:` field, in milliseconds.
    pub retry_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct LatencyConfig {
    pub default: Option<LatencyModel>,
    /// First matching rule wins over `default`.
    pub routes: Vec<(RoutePattern, LatencyModel)>,
    /// Precise waits (the default): a timerfd, then yielding in a loop for the last 150 µs
    /// (module `hrtimer`), instead of tokio's 1 ms timer alone (cheaper, but a 200 µs wait
    /// becomes ~1 ms).
    pub spin: bool,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct MetricsConfig {
    /// Also export the `veloz_gateway_*` names DEPLOYMENT.md's alerts use (the real gateway
    /// does not register them).
    pub deployment_names: bool,
}

/// A validated simulator configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    pub profile: Profile,
    /// `None`: a random seed per start.
    pub seed: Option<u64>,
    pub deterministic: bool,
    pub differences: Differences,
    /// The engine's settings; its `seed` and `deterministic` are filled in at start.
    pub engine: EngineConfig,
    pub auth: AuthConfig,
    pub rate_limit: RateLimitConfig,
    pub sse: SseConfig,
    pub latency: LatencyConfig,
    pub faults: Vec<FaultRule>,
    pub divergence: DivergenceConfig,
    pub metrics: MetricsConfig,
    /// How long shutdown waits for open connections before dropping them.
    pub shutdown_grace: Duration,
    /// Audit log (off by default).
    pub audit: crate::audit::AuditConfig,
}

impl SimConfig {
    /// The defaults of a profile: every §9 difference on, no injection.
    pub fn default_for(profile: Profile) -> SimConfig {
        let raw = RawSimConfig {
            profile: Some(profile),
            ..RawSimConfig::default()
        };
        // The defaults are valid by construction; the fallback is unreachable but keeps this
        // function total.
        raw.validate("defaults")
            .unwrap_or_else(|_| unreachable_defaults(profile))
    }

    /// Parses and validates a TOML document; `origin` names it in errors (a file name).
    pub fn from_toml_str(text: &str, origin: &str) -> Result<SimConfig, ConfigErrors> {
        RawSimConfig::from_toml_str(text, origin)?.validate(origin)
    }

    /// The behaviour chosen for each aspect.
    pub fn aspects(&self) -> Aspects {
        Aspects::new(self.profile, &self.differences)
    }
}

/// The defaults written out. `default_for` validates an empty document instead, which cannot
/// fail; this copy only keeps it total without a panic, and a unit test checks the two agree.
fn unreachable_defaults(profile: Profile) -> SimConfig {
    let cpp = profile == Profile::Cpp;
    SimConfig {
        profile,
        seed: None,
        deterministic: false,
        differences: Differences::all(true),
        engine: EngineConfig {
            divergence: EngineDivergence {
                fill_price_offset: 0.001,
                ..EngineDivergence::default()
            },
            ..EngineConfig::default()
        },
        auth: AuthConfig {
            enabled: cpp,
            jwt_secret: cpp.then(|| b"veloz-default-secret-change-in-production".to_vec()),
            admin_password: Some("admin".to_owned()),
            token_expiry: Duration::from_secs(3600),
            refresh_expiry: Duration::from_secs(604_800),
            public_metrics: true,
        },
        rate_limit: RateLimitConfig {
            enabled: cpp,
            capacity: 100,
            refill_per_s: 10.0,
            idle_ttl: Duration::from_secs(if cpp { 1800 } else { 600 }),
            per_user: true,
        },
        sse: SseConfig {
            keepalive: Duration::from_secs(10),
            max_streams: cpp.then_some(1000),
            retry_ms: 3000,
        },
        latency: LatencyConfig {
            default: None,
            routes: Vec::new(),
            spin: true,
        },
        faults: Vec::new(),
        divergence: DivergenceConfig::default(),
        metrics: MetricsConfig::default(),
        shutdown_grace: Duration::from_secs(5),
        audit: crate::audit::AuditConfig::default(),
    }
}

/// One problem found in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Key path, e.g. `faults[2].fraction` (empty for document-level problems).
    pub path: String,
    pub message: String,
}

/// Every problem found in a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors {
    /// Where the configuration came from (file name, `command line`, `defaults`).
    pub origin: String,
    pub issues: Vec<ConfigIssue>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.issues.len();
        write!(
            f,
            "{}: invalid sim config ({n} problem{})",
            self.origin,
            if n == 1 { "" } else { "s" }
        )?;
        for issue in &self.issues {
            if issue.path.is_empty() {
                write!(f, "\n  {}", issue.message)?;
            } else {
                write!(f, "\n  {}: {}", issue.path, issue.message)?;
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Raw (serde) side
// ---------------------------------------------------------------------------------------------

/// The configuration as written: every field optional, unknown keys rejected.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSimConfig {
    pub profile: Option<Profile>,
    pub seed: Option<u64>,
    pub deterministic: Option<bool>,
    #[serde(default)]
    pub engine: RawEngine,
    #[serde(default)]
    pub auth: RawAuth,
    #[serde(default)]
    pub rate_limit: RawRateLimit,
    #[serde(default)]
    pub sse: RawSse,
    #[serde(default)]
    pub latency: RawLatency,
    #[serde(default)]
    pub faults: Vec<RawFault>,
    #[serde(default)]
    pub divergence: RawDivergence,
    pub differences: Option<RawDifferences>,
    #[serde(default)]
    pub metrics: RawMetrics,
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub audit: crate::audit::RawAudit,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEngine {
    pub tick: Option<String>,
    pub fill_delay: Option<String>,
    pub start_price: Option<f64>,
    pub symbol: Option<String>,
    pub balances: Option<Vec<RawBalance>>,
    pub history: Option<usize>,
    #[serde(default)]
    pub divergence: RawEngineDivergence,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBalance {
    pub asset: String,
    pub free: f64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEngineDivergence {
    pub reject_fraction: Option<f64>,
    pub fill_price_fraction: Option<f64>,
    pub fill_price_offset: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    pub enabled: Option<bool>,
    pub jwt_secret: Option<String>,
    pub admin_password: Option<String>,
    pub token_expiry: Option<String>,
    pub refresh_expiry: Option<String>,
    pub public_metrics: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    pub enabled: Option<bool>,
    pub capacity: Option<u32>,
    pub refill_per_s: Option<f64>,
    pub idle_ttl: Option<String>,
    pub per_user: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSse {
    pub keepalive: Option<String>,
    pub max_streams: Option<usize>,
    pub retry_ms: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLatency {
    /// A latency spec (`fixed:200us`, `uniform:100us..1ms`, `lognormal:150us,1ms`).
    pub default: Option<String>,
    pub spin: Option<bool>,
    #[serde(default)]
    pub routes: Vec<RawRouteLatency>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouteLatency {
    pub route: String,
    pub model: String,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawFault {
    pub kind: String,
    pub route: Option<String>,
    pub fraction: Option<f64>,
    /// slow_body: pause between chunks.
    pub delay: Option<String>,
    /// slow_body: bytes per chunk (default 16).
    pub chunk_bytes: Option<usize>,
    /// garbage: how many bytes (default 64).
    pub bytes: Option<usize>,
    /// stall: length of the stall window.
    pub stall: Option<String>,
    /// stall: period of the stall windows.
    pub every: Option<String>,
    /// error: the status (default 500).
    pub status: Option<u16>,
}

impl RawFault {
    /// Parses a command-line fault spec: `KIND[:ARG[,ARG]][@ROUTE]`, where an ARG is a
    /// fraction (`0.1`), a duration (`slow-body:50ms`), `N/M` durations (`stall:100ms/1s`) or
    /// a status (`error:0.01,503`). Checked fully by validation.
    pub fn from_cli_spec(spec: &str) -> Result<RawFault, String> {
        let (body, route) = match spec.split_once('@') {
            Some((b, r)) => (b, Some(r.trim().to_owned())),
            None => (spec, None),
        };
        let (kind, args) = match body.split_once(':') {
            Some((k, a)) => (k.trim(), a),
            None => (body.trim(), ""),
        };
        let kind = kind.replace('-', "_");
        let mut fault = RawFault {
            kind: kind.clone(),
            route,
            ..RawFault::default()
        };
        for arg in args.split(',').map(str::trim).filter(|a| !a.is_empty()) {
            if let Some((n, m)) = arg.split_once('/') {
                fault.stall = Some(n.trim().to_owned());
                fault.every = Some(m.trim().to_owned());
            } else if kind == "error" && arg.parse::<u16>().is_ok_and(|s| s >= 100) {
                fault.status = arg.parse().ok();
            } else if let Ok(x) = arg.parse::<f64>() {
                fault.fraction = Some(x);
            } else if humantime::parse_duration(arg).is_ok() {
                fault.delay = Some(arg.to_owned());
            } else {
                return Err(format!(
                    "`{spec}`: `{arg}` is neither a fraction, a duration, N/M nor a status"
                ));
            }
        }
        Ok(fault)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDivergence {
    #[serde(default)]
    pub changed_field: Vec<RawChangedField>,
    pub dropped_sse_fraction: Option<f64>,
    /// Engine event types the drop applies to (default: all).
    #[serde(default)]
    pub dropped_sse_kinds: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChangedField {
    pub route: String,
    pub pointer: String,
    pub fraction: Option<f64>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDifferences {
    pub paths: Option<bool>,
    pub envelope: Option<bool>,
    pub shapes: Option<bool>,
    pub login: Option<bool>,
    pub auth: Option<bool>,
    pub errors: Option<bool>,
    pub sse: Option<bool>,
    pub rate_limit_headers: Option<bool>,
    pub json_format: Option<bool>,
    pub headers: Option<bool>,
}

impl RawDifferences {
    /// Every switch explicitly set to `on`.
    pub fn all(on: bool) -> RawDifferences {
        RawDifferences {
            paths: Some(on),
            envelope: Some(on),
            shapes: Some(on),
            login: Some(on),
            auth: Some(on),
            errors: Some(on),
            sse: Some(on),
            rate_limit_headers: Some(on),
            json_format: Some(on),
            headers: Some(on),
        }
    }

    fn resolve(&self) -> Differences {
        let d = |v: Option<bool>| v.unwrap_or(true);
        Differences {
            paths: d(self.paths),
            envelope: d(self.envelope),
            shapes: d(self.shapes),
            login: d(self.login),
            auth: d(self.auth),
            errors: d(self.errors),
            sse: d(self.sse),
            rate_limit_headers: d(self.rate_limit_headers),
            json_format: d(self.json_format),
            headers: d(self.headers),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    pub deployment_names: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub shutdown_grace: Option<String>,
}

/// Collects problems with their key paths.
#[derive(Debug, Default)]
struct Issues(Vec<ConfigIssue>);

impl Issues {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigIssue {
            path: path.into(),
            message: message.into(),
        });
    }

    fn duration(&mut self, path: &str, value: Option<&str>, default: Duration) -> Duration {
        match value {
            None => default,
            Some(text) => parse_duration(text).unwrap_or_else(|e| {
                self.push(path, e);
                default
            }),
        }
    }

    fn fraction(&mut self, path: &str, value: Option<f64>, default: f64) -> f64 {
        match value {
            None => default,
            Some(x) if (0.0..=1.0).contains(&x) => x,
            Some(x) => {
                self.push(path, format!("{x} is not in 0..=1"));
                default
            }
        }
    }

    fn pattern(
        &mut self,
        path: &str,
        text: &str,
        keys: &[(String, usize)],
        profile: &str,
    ) -> Option<RoutePattern> {
        match RoutePattern::parse(text) {
            Err(e) => {
                self.push(path, e);
                None
            }
            Ok(p) if !keys.iter().any(|(k, _)| p.matches(k)) => {
                self.push(
                    path,
                    format!("`{text}` matches no route of the {profile} route table"),
                );
                None
            }
            Ok(p) => Some(p),
        }
    }
}

impl RawSimConfig {
    /// Parses TOML (syntax and unknown keys; values are checked by [`RawSimConfig::validate`]).
    pub fn from_toml_str(text: &str, origin: &str) -> Result<RawSimConfig, ConfigErrors> {
        toml::from_str(text).map_err(|e: toml::de::Error| ConfigErrors {
            origin: origin.to_owned(),
            issues: vec![ConfigIssue {
                path: String::new(),
                message: e.to_string().trim_end().to_owned(),
            }],
        })
    }

    /// Checks every value and builds the typed configuration, reporting all problems at once.
    pub fn validate(self, origin: &str) -> Result<SimConfig, ConfigErrors> {
        let mut issues = Issues::default();
        let profile = self.profile.unwrap_or_else(|| {
            issues.push(
                "profile",
                "missing: set `profile = \"python\"` or `\"cpp\"`",
            );
            Profile::Python
        });
        let differences = match (&self.differences, profile) {
            (Some(_), Profile::Python) => {
                issues.push(
                    "differences",
                    "only applies to the cpp profile (python is python in every aspect)",
                );
                Differences::all(true)
            }
            (Some(d), Profile::Cpp) => d.resolve(),
            (None, _) => Differences::all(true),
        };
        let aspects = Aspects::new(profile, &differences);
        let keys = routes::table_keys(aspects.paths);
        let table_name = match aspects.paths {
            Style::Python => "python",
            Style::Cpp => "cpp",
        };

        let deterministic = self.deterministic.unwrap_or(self.seed.is_some());
        let engine = validate_engine(&self.engine, &mut issues);

        // Auth.
        let a = &self.auth;
        let auth_enabled = a.enabled.unwrap_or(aspects.auth == Style::Cpp);
        let jwt_secret = match (&a.jwt_secret, aspects.auth) {
            (Some(s), Style::Cpp) if s.len() < 32 => {
                issues.push(
                    "auth.jwt_secret",
                    format!(
                        "{} bytes; the cpp gateway requires at least 32 (it fails to start)",
                        s.len()
                    ),
                );
                None
            }
            (Some(s), _) if s.is_empty() => None,
            (Some(s), _) => Some(s.as_bytes().to_vec()),
            (None, Style::Cpp) => Some(b"veloz-default-secret-change-in-production".to_vec()),
            (None, Style::Python) => None,
        };
        let admin_password = match &a.admin_password {
            Some(p) if p.is_empty() => None,
            Some(p) => Some(p.clone()),
            None => Some("admin".to_owned()),
        };
        let token_expiry = issues.duration(
            "auth.token_expiry",
            a.token_expiry.as_deref(),
            Duration::from_secs(3600),
        );
        let refresh_expiry = issues.duration(
            "auth.refresh_expiry",
            a.refresh_expiry.as_deref(),
            Duration::from_secs(604_800),
        );
        for (path, d) in [
            ("auth.token_expiry", token_expiry),
            ("auth.refresh_expiry", refresh_expiry),
        ] {
            if d < Duration::from_secs(1) {
                issues.push(path, "must be at least 1s");
            }
        }
        let auth = AuthConfig {
            enabled: auth_enabled,
            jwt_secret,
            admin_password,
            token_expiry,
            refresh_expiry,
            public_metrics: a.public_metrics.unwrap_or(true),
        };

        // Rate limiting.
        let r = &self.rate_limit;
        let capacity = r.capacity.unwrap_or(100);
        if capacity == 0 {
            issues.push("rate_limit.capacity", "must be at least 1");
        }
        let refill_per_s = r.refill_per_s.unwrap_or(10.0);
        if !(refill_per_s.is_finite() && refill_per_s >= 0.0) {
            issues.push(
                "rate_limit.refill_per_s",
                format!("{refill_per_s} is not a finite rate >= 0"),
            );
        }
        let default_ttl = match aspects.rate_limit_headers {
            Style::Python => Duration::from_secs(600),
            Style::Cpp => Duration::from_secs(1800),
        };
        let rate_limit = RateLimitConfig {
            enabled: r.enabled.unwrap_or(auth_enabled),
            capacity,
            refill_per_s,
            idle_ttl: issues.duration("rate_limit.idle_ttl", r.idle_ttl.as_deref(), default_ttl),
            per_user: r.per_user.unwrap_or(true),
        };

        // SSE.
        let keepalive = issues.duration(
            "sse.keepalive",
            self.sse.keepalive.as_deref(),
            Duration::from_secs(10),
        );
        if keepalive < Duration::from_millis(1) {
            issues.push("sse.keepalive", "must be at least 1ms");
        }
        let max_streams = match (self.sse.max_streams, aspects.sse) {
            (Some(0), _) => {
                issues.push("sse.max_streams", "must be at least 1");
                None
            }
            (Some(n), _) => Some(n),
            (None, Style::Cpp) => Some(1000),
            (None, Style::Python) => None,
        };
        let sse = SseConfig {
            keepalive,
            max_streams,
            retry_ms: self.sse.retry_ms.unwrap_or(3000),
        };

        // Latency.
        let default = match &self.latency.default {
            None => None,
            Some(spec) => match LatencyModel::parse(spec) {
                Ok(m) => Some(m).filter(|m| !m.is_zero()),
                Err(e) => {
                    issues.push("latency.default", e);
                    None
                }
            },
        };
        let mut latency_routes = Vec::new();
        for (i, rl) in self.latency.routes.iter().enumerate() {
            let pattern = issues.pattern(
                &format!("latency.routes[{i}].route"),
                &rl.route,
                &keys,
                table_name,
            );
            let model = LatencyModel::parse(&rl.model)
                .map_err(|e| issues.push(format!("latency.routes[{i}].model"), e))
                .ok();
            if let (Some(p), Some(m)) = (pattern, model) {
                latency_routes.push((p, m));
            }
        }
        let latency = LatencyConfig {
            default,
            routes: latency_routes,
            spin: self.latency.spin.unwrap_or(true),
        };

        // Faults.
        let mut faults = Vec::new();
        for (i, f) in self.faults.iter().enumerate() {
            if let Some(rule) = validate_fault(i, f, &keys, table_name, &mut issues) {
                faults.push(rule);
            }
        }

        // Divergence.
        let mut changed_fields = Vec::new();
        for (i, c) in self.divergence.changed_field.iter().enumerate() {
            let path = format!("divergence.changed_field[{i}]");
            let route = issues.pattern(&format!("{path}.route"), &c.route, &keys, table_name);
            if !(c.pointer.is_empty() || c.pointer.starts_with('/')) {
                issues.push(
                    format!("{path}.pointer"),
                    format!(
                        "`{}` is not a JSON Pointer (it must start with `/`)",
                        c.pointer
                    ),
                );
            }
            let fraction = issues.fraction(&format!("{path}.fraction"), c.fraction, 1.0);
            if let Some(route) = route {
                changed_fields.push(ChangedField {
                    route,
                    pointer: c.pointer.clone(),
                    fraction,
                });
            }
        }
        let divergence = DivergenceConfig {
            changed_fields,
            dropped_sse_fraction: issues.fraction(
                "divergence.dropped_sse_fraction",
                self.divergence.dropped_sse_fraction,
                0.0,
            ),
            dropped_sse_kinds: self.divergence.dropped_sse_kinds.clone(),
        };

        let shutdown_grace = issues.duration(
            "server.shutdown_grace",
            self.server.shutdown_grace.as_deref(),
            Duration::from_secs(5),
        );

        let audit = self.audit.validate(profile).unwrap_or_else(|problems| {
            for (key, message) in problems {
                issues.push(key, message);
            }
            crate::audit::AuditConfig::default()
        });

        if !issues.0.is_empty() {
            return Err(ConfigErrors {
                origin: origin.to_owned(),
                issues: issues.0,
            });
        }
        Ok(SimConfig {
            profile,
            seed: self.seed,
            deterministic,
            differences,
            engine: EngineConfig {
                deterministic,
                seed: self.seed.unwrap_or(0),
                ..engine
            },
            auth,
            rate_limit,
            sse,
            latency,
            faults,
            divergence,
            metrics: MetricsConfig {
                deployment_names: self.metrics.deployment_names.unwrap_or(false),
            },
            shutdown_grace,
            audit,
        })
    }
}

fn validate_engine(e: &RawEngine, issues: &mut Issues) -> EngineConfig {
    let d = EngineConfig::default();
    let tick = issues.duration("engine.tick", e.tick.as_deref(), d.tick_interval);
    if tick < Duration::from_millis(1) {
        issues.push("engine.tick", "must be at least 1ms");
    }
    let fill_delay = issues.duration("engine.fill_delay", e.fill_delay.as_deref(), d.fill_delay);
    let start_price = e.start_price.unwrap_or(d.start_price);
    if !(start_price.is_finite() && start_price > 0.0) {
        issues.push(
            "engine.start_price",
            format!("{start_price} is not a price > 0"),
        );
    }
    let symbol = e.symbol.clone().unwrap_or(d.symbol);
    if symbol.is_empty() || symbol.contains(char::is_whitespace) {
        issues.push("engine.symbol", format!("`{symbol}` is not a symbol"));
    }
    let balances = match &e.balances {
        None => d.balances,
        Some(list) => {
            for (i, b) in list.iter().enumerate() {
                if b.asset.is_empty() {
                    issues.push(format!("engine.balances[{i}].asset"), "is empty");
                }
                if !(b.free.is_finite() && b.free >= 0.0) {
                    issues.push(
                        format!("engine.balances[{i}].free"),
                        format!("{} is not an amount >= 0", b.free),
                    );
                }
            }
            list.iter().map(|b| (b.asset.clone(), b.free)).collect()
        }
    };
    let history = e.history.unwrap_or(d.history);
    if history == 0 {
        issues.push("engine.history", "must be at least 1");
    }
    let ed = &e.divergence;
    let fill_price_offset = ed.fill_price_offset.unwrap_or(0.001);
    if !(fill_price_offset.is_finite() && fill_price_offset > -1.0) {
        issues.push(
            "engine.divergence.fill_price_offset",
            format!("{fill_price_offset} is not a relative offset > -1"),
        );
    }
    EngineConfig {
        tick_interval: tick,
        fill_delay,
        start_price,
        symbol,
        balances,
        history,
        divergence: EngineDivergence {
            reject_fraction: issues.fraction(
                "engine.divergence.reject_fraction",
                ed.reject_fraction,
                0.0,
            ),
            fill_price_fraction: issues.fraction(
                "engine.divergence.fill_price_fraction",
                ed.fill_price_fraction,
                0.0,
            ),
            fill_price_offset,
        },
        ..d
    }
}

fn validate_fault(
    i: usize,
    f: &RawFault,
    keys: &[(String, usize)],
    table_name: &str,
    issues: &mut Issues,
) -> Option<FaultRule> {
    let path = format!("faults[{i}]");
    let before = issues.0.len();
    let route = f
        .route
        .as_ref()
        .and_then(|r| issues.pattern(&format!("{path}.route"), r, keys, table_name));
    let fraction = issues.fraction(&format!("{path}.fraction"), f.fraction, 1.0);
    // Which optional parameters each kind takes; any other one given is a mistake.
    let given = [
        ("delay", f.delay.is_some()),
        ("chunk_bytes", f.chunk_bytes.is_some()),
        ("bytes", f.bytes.is_some()),
        ("stall", f.stall.is_some()),
        ("every", f.every.is_some()),
        ("status", f.status.is_some()),
    ];
    let (kind, allowed): (Option<FaultKind>, &[&str]) = match f.kind.replace('-', "_").as_str() {
        "reset" => (Some(FaultKind::Reset), &[]),
        "hang" => (Some(FaultKind::Hang), &[]),
        "slow_body" => {
            let delay = match &f.delay {
                Some(d) => issues.duration(&format!("{path}.delay"), Some(d), Duration::ZERO),
                None => {
                    issues.push(format!("{path}.delay"), "missing: slow_body needs a delay");
                    Duration::ZERO
                }
            };
            let chunk_bytes = f.chunk_bytes.unwrap_or(16);
            if chunk_bytes == 0 {
                issues.push(format!("{path}.chunk_bytes"), "must be at least 1");
            }
            (
                Some(FaultKind::SlowBody { delay, chunk_bytes }),
                &["delay", "chunk_bytes"],
            )
        }
        "garbage" => {
            let bytes = f.bytes.unwrap_or(64);
            if bytes == 0 {
                issues.push(format!("{path}.bytes"), "must be at least 1");
            }
            (Some(FaultKind::Garbage { bytes }), &["bytes"])
        }
        "stall" => {
            let stall = match &f.stall {
                Some(s) => issues.duration(&format!("{path}.stall"), Some(s), Duration::ZERO),
                None => {
                    issues.push(
                        format!("{path}.stall"),
                        "missing: stall needs `stall` and `every`",
                    );
                    Duration::ZERO
                }
            };
            let every = match &f.every {
                Some(s) => issues.duration(&format!("{path}.every"), Some(s), Duration::ZERO),
                None => {
                    issues.push(
                        format!("{path}.every"),
                        "missing: stall needs `stall` and `every`",
                    );
                    Duration::ZERO
                }
            };
            if f.stall.is_some() && f.every.is_some() && (every.is_zero() || stall >= every) {
                issues.push(
                    format!("{path}.stall"),
                    format!(
                        "{} is not shorter than every = {}",
                        humantime::format_duration(stall),
                        humantime::format_duration(every)
                    ),
                );
            }
            (Some(FaultKind::Stall { stall, every }), &["stall", "every"])
        }
        "error" | "5xx" => {
            let status = f.status.unwrap_or(500);
            if !(500..=599).contains(&status) {
                issues.push(
                    format!("{path}.status"),
                    format!("{status} is not a 5xx status"),
                );
            }
            (Some(FaultKind::Error { status }), &["status"])
        }
        other => {
            issues.push(
                format!("{path}.kind"),
                format!(
                    "`{other}` is not a fault kind (reset, hang, slow_body, garbage, stall, error)"
                ),
            );
            (
                None,
                &["delay", "chunk_bytes", "bytes", "stall", "every", "status"],
            )
        }
    };
    for (name, present) in given {
        if present && !allowed.contains(&name) {
            issues.push(
                format!("{path}.{name}"),
                format!("not used by fault kind `{}`", f.kind),
            );
        }
    }
    if issues.0.len() != before {
        return None;
    }
    Some(FaultRule {
        kind: kind?,
        route,
        fraction,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_written_out_defaults_are_the_validated_ones() {
        for p in [Profile::Python, Profile::Cpp] {
            let validated = RawSimConfig {
                profile: Some(p),
                ..RawSimConfig::default()
            }
            .validate("t")
            .unwrap();
            assert_eq!(validated, unreachable_defaults(p), "{p}");
        }
    }

    #[test]
    fn defaults_follow_the_real_gateways() {
        let py = SimConfig::default_for(Profile::Python);
        assert!(!py.auth.enabled);
        assert!(py.auth.jwt_secret.is_none());
        assert_eq!(py.aspects().paths, Style::Python);
        assert_eq!(py.sse.max_streams, None);
        let cpp = SimConfig::default_for(Profile::Cpp);
        assert!(cpp.auth.enabled);
        assert!(cpp.rate_limit.enabled);
        assert_eq!(
            cpp.aspects(),
            Aspects::new(Profile::Cpp, &Differences::all(true))
        );
        assert_eq!(cpp.aspects().sse, Style::Cpp);
        assert_eq!(cpp.sse.max_streams, Some(1000));
        assert_eq!(cpp.engine.tick_interval, Duration::from_millis(200));
    }

    #[test]
    fn a_full_document_parses() {
        let text = r#"
            profile = "cpp"
            seed = 7
            [engine]
            tick = "50ms"
            balances = [{ asset = "USDT", free = 5000.0 }]
            [engine.divergence]
            reject_fraction = 0.1
            [auth]
            enabled = false
            jwt_secret = "0123456789abcdef0123456789abcdef"
            [sse]
            keepalive = "200ms"
            [latency]
            default = "fixed:200us"
            [[latency.routes]]
            route = "GET /api/market"
            model = "lognormal:150us,1ms"
            [[faults]]
            kind = "stall"
            stall = "100ms"
            every = "1s"
            [[faults]]
            kind = "reset"
            route = "POST /api/orders"
            fraction = 0.1
            [divergence]
            dropped_sse_fraction = 0.2
            [[divergence.changed_field]]
            route = "GET /api/market"
            pointer = "/last_price"
            fraction = 0.5
            [differences]
            sse = false
        "#;
        let cfg = SimConfig::from_toml_str(text, "t.toml").unwrap();
        assert_eq!(cfg.profile, Profile::Cpp);
        assert!(cfg.deterministic, "a seed implies deterministic");
        assert_eq!(cfg.engine.seed, 7);
        assert_eq!(cfg.engine.balances, vec![("USDT".to_owned(), 5000.0)]);
        assert!(!cfg.auth.enabled);
        assert!(!cfg.rate_limit.enabled, "rate limiting follows auth");
        assert_eq!(cfg.aspects().sse, Style::Python);
        assert_eq!(cfg.aspects().paths, Style::Cpp);
        assert_eq!(
            cfg.latency.default,
            Some(LatencyModel::Fixed(Duration::from_micros(200)))
        );
        assert_eq!(cfg.faults.len(), 2);
        assert_eq!(
            cfg.faults[0].kind,
            FaultKind::Stall {
                stall: Duration::from_millis(100),
                every: Duration::from_secs(1)
            }
        );
        assert_eq!(cfg.divergence.changed_fields[0].pointer, "/last_price");
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let text = r#"
            profile = "cpp"
            [auth]
            jwt_secret = "short"
            [[faults]]
            kind = "reset"
            fraction = 0.5
            [[faults]]
            kind = "hang"
            [[faults]]
            kind = "garbage"
            fraction = 1.5
            delay = "1ms"
            [[faults]]
            kind = "explode"
            [[faults]]
            kind = "reset"
            route = "POST /api/order"
            [latency]
            default = "gaussian:1ms"
        "#;
        let err = SimConfig::from_toml_str(text, "bad.toml").unwrap_err();
        let paths: Vec<&str> = err.issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "auth.jwt_secret",
                "latency.default",
                "faults[2].fraction",
                "faults[2].delay",
                "faults[3].kind",
                "faults[4].route",
            ],
            "{err}"
        );
        let text = err.to_string();
        assert!(
            text.starts_with("bad.toml: invalid sim config (6 problems)"),
            "{text}"
        );
        assert!(
            text.contains("faults[2].fraction: 1.5 is not in 0..=1"),
            "{text}"
        );
        assert!(
            text.contains("matches no route of the cpp route table"),
            "{text}"
        );
    }

    #[test]
    fn unknown_keys_and_syntax_errors_name_the_origin() {
        let err =
            SimConfig::from_toml_str("profile = \"python\"\nbogus = 1\n", "x.toml").unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
        assert!(err.to_string().starts_with("x.toml"), "{err}");
        let err = SimConfig::from_toml_str("[differences]\npaths = false\n", "y.toml").unwrap_err();
        let paths: Vec<&str> = err.issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(paths, ["profile", "differences"]);
    }

    #[test]
    fn latency_specs_parse() {
        assert_eq!(
            LatencyModel::parse("uniform:100us..1ms").unwrap(),
            LatencyModel::Uniform {
                low: Duration::from_micros(100),
                high: Duration::from_millis(1)
            }
        );
        assert!(LatencyModel::parse("lognormal:1ms,100us").is_err());
        assert!(LatencyModel::parse("fixed:abc").is_err());
        assert!(LatencyModel::parse("0").unwrap().is_zero());
    }

    #[test]
    fn cli_fault_specs_parse() {
        let f = RawFault::from_cli_spec("reset:0.1").unwrap();
        assert_eq!((f.kind.as_str(), f.fraction), ("reset", Some(0.1)));
        let f = RawFault::from_cli_spec("stall:100ms/1s").unwrap();
        assert_eq!(
            (f.stall.as_deref(), f.every.as_deref()),
            (Some("100ms"), Some("1s"))
        );
        let f = RawFault::from_cli_spec("slow-body:50ms,0.5@GET /api/*").unwrap();
        assert_eq!(f.kind, "slow_body");
        assert_eq!((f.delay.as_deref(), f.fraction), (Some("50ms"), Some(0.5)));
        assert_eq!(f.route.as_deref(), Some("GET /api/*"));
        let f = RawFault::from_cli_spec("error:0.01,503").unwrap();
        assert_eq!((f.fraction, f.status), (Some(0.01), Some(503)));
        assert!(RawFault::from_cli_spec("hang:soon").is_err());
    }

    #[test]
    fn route_patterns_glob_over_templates() {
        let p = RoutePattern::parse("GET /api/*").unwrap();
        assert!(p.matches("GET /api/orders/{id}"));
        assert!(!p.matches("POST /api/orders"));
        let p = RoutePattern::parse("/api/orders*").unwrap();
        assert!(p.matches("POST /api/orders"));
        assert!(p.matches("DELETE /api/orders/{id}"));
        assert!(!p.matches("GET /api/order_state"));
        assert!(RoutePattern::parse("FETCH /x").is_err());
        assert!(RoutePattern::parse("api/x").is_err());
    }
}
