//! Load scenarios: `scenarios/*.load.toml` → [`RawScenario`] (serde, unknown keys rejected) →
//! validated [`Scenario`], with every problem reported at once under its key path
//! (`flow[0].step[1].body: unknown variable {idd} ...`), then → [`Plan`] for one gateway
//! profile.
//!
//! ```toml
//! name = "smoke"
//! rate = 500                # requests per second, all requests together (flow steps included)
//! arrival = "fixed"         # or "poisson"
//! duration = "5s"           # measured window
//! warmup = "1s"             # sent at the full rate, excluded from the statistics
//! ramp = "0s"               # the rate rises linearly from 0 before the warm-up (excluded too)
//! connections = 8           # Goose users, one keep-alive connection each
//! profile = "python"        # default for --profile when the mix has profile-specific entries
//! symbols = ["BTCUSDT"]
//!
//! [vars]                    # constants for templates: {qty}
//! qty = "0.001"
//!
//! [[request]]
//! weight = 10
//! method = "GET"
//! path = "/api/market?symbol={symbol}"
//!
//! [[flow]]                  # submit, then cancel with the id taken from the answer
//! weight = 2
//! profile = "cpp"
//! [[flow.step]]
//! method = "POST"
//! path = "/api/orders"
//! body = '{"side":"{side}","symbol":"{symbol}","qty":{qty},"client_order_id":"{client_order_id}"}'
//! extract = { id = "/data/client_order_id" }
//! [[flow.step]]
//! delay = "50ms"
//! method = "DELETE"
//! path = "/api/orders/{id}"
//! ```
//!
//! Decisions:
//! - **The rate counts requests, not flows.** A flow of k steps uses k requests of the rate, so
//!   the pacer issues `rate / mean steps per entry` schedule tickets per second and later steps
//!   are sent by the same user `delay` after the previous answer (their intended send time),
//!   in addition to the tickets: a follow-up never takes a ticket's place, so the mix keeps
//!   its weights. The delay is the client's think time: when the user was idle and its timer
//!   woke late, the step is timed from the wake-up; when the user was busy with another
//!   request, the wait counts against the gateway like a late ticket.
//! - **Profiles pick variants.** An entry with `profile = "python"` is used only when the run's
//!   profile is python; entries without a profile are used always. The VeloZ gateways differ
//!   in their order paths (python `POST /api/order` + `POST /api/cancel`; cpp
//!   `POST /api/orders` + `DELETE /api/orders/{id}`), so order flows come in two variants.
//! - **Secrets are not in scenario files.** JWT secrets and API keys are named by environment
//!   variable (`secret_env`, `key_env`); inline values are accepted for throw-away test setups.
//! - **A series per route.** The latency series of a step is `<METHOD>:<route>`, where route
//!   is the path template without its query (`/api/orders/{id}`), or `route = "..."`.

use std::collections::BTreeMap;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use serde::Deserialize;
use shadowgate_sim::Profile;

use crate::error::{ScenarioErrors, ScenarioIssue};
use crate::template::{BUILTIN_NAMES, Template, Var};

/// How intended send times are spaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// `t0 + i / rate`.
    Fixed,
    /// Exponential gaps with mean `1 / rate` (seeded).
    Poisson,
}

impl Arrival {
    /// `fixed` or `poisson`.
    pub fn as_str(self) -> &'static str {
        match self {
            Arrival::Fixed => "fixed",
            Arrival::Poisson => "poisson",
        }
    }
}

/// Where a secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Secret {
    /// Written in the scenario (test setups only).
    Inline(String),
    /// Read from this environment variable when the run starts.
    Env(String),
}

impl Secret {
    /// The secret's value; `None` when the variable is unset or empty.
    pub fn resolve(&self) -> Option<String> {
        match self {
            Secret::Inline(s) => Some(s.clone()),
            Secret::Env(var) => std::env::var(var).ok().filter(|v| !v.is_empty()),
        }
    }
}

/// JWT header/claims spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtStyle {
    /// Python with `--profile python`, compact (C++) otherwise.
    Auto,
    /// `{"alg": "HS256", "typ": "JWT"}` and `{sub, iat, exp}`.
    Python,
    /// Compact JSON and `{sub, iat, exp, type: "access"}`.
    Compact,
}

/// Credentials sent with every request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// No credentials.
    None,
    /// An HS256 JWT minted at the start of the run, as `Authorization: Bearer <token>`.
    Jwt {
        secret: Secret,
        subject: String,
        expiry: Duration,
        style: JwtStyle,
    },
    /// An API key in a header (default `X-API-Key`).
    ApiKey { key: Secret, header: HeaderName },
}

/// One HTTP request of an entry.
#[derive(Debug, Clone)]
pub struct Step {
    pub method: Method,
    /// Path and query.
    pub path: Template,
    /// The route template the series is named after.
    pub route: String,
    pub headers: Vec<(HeaderName, Template)>,
    pub body: Option<Template>,
    /// Wait after the previous step's answer (0 for the first step).
    pub delay: Duration,
    /// `(index into the flow's extracted values, JSON pointer)`.
    pub extract: Vec<(usize, String)>,
}

/// A weighted entry of the mix: a single request, or a flow of steps.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Name shown in reports (`GET /api/market`, or the flow's name).
    pub name: String,
    pub weight: u32,
    /// `None`: used with every profile.
    pub profile: Option<Profile>,
    pub steps: Vec<Step>,
    /// Names of the values extracted by the steps (index = `Var::Extracted`).
    pub extracted: Vec<String>,
    /// `true` for `[[flow]]` entries.
    pub is_flow: bool,
}

/// SSE subscribers held open during the run.
#[derive(Debug, Clone)]
pub struct SseSpec {
    pub subscribers: usize,
    pub path: String,
    pub route: String,
    pub profile: Option<Profile>,
}

/// When a run counts as generator-limited (see the crate docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Achieved / target rate below this marks the run (default 0.99).
    pub min_achieved_ratio: f64,
    /// Median send lateness, or the pacer's P99 lateness, above this marks the run (1 ms).
    pub lateness_threshold: Duration,
    /// Schedule tickets that may wait for a free connection (default: 2 s worth, at least
    /// 1,024, at most 1,048,576). Tickets beyond it are dropped and mark the run.
    pub queue_capacity: Option<usize>,
    /// Runtime threads of the generator (default 1: a current-thread runtime; see `run`).
    pub threads: usize,
    /// Which generator threads ask for `SCHED_FIFO` (module `priority`; default the pacer).
    pub realtime: crate::priority::Realtime,
    /// How the pacer waits (module `pacer`; default `tick`: a task sleeping the runtime's
    /// thread between tickets).
    pub pacer: crate::pacer::PacerMode,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            min_achieved_ratio: 0.99,
            lateness_threshold: Duration::from_millis(1),
            queue_capacity: None,
            threads: 1,
            realtime: crate::priority::Realtime::Pacer,
            pacer: crate::pacer::PacerMode::Tick,
        }
    }
}

/// A validated scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub description: Option<String>,
    /// The file it came from.
    pub origin: String,
    /// Requests per second, all requests together.
    pub rate: f64,
    pub arrival: Arrival,
    pub duration: Duration,
    pub warmup: Duration,
    pub ramp: Duration,
    pub connections: usize,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub seed: Option<u64>,
    pub default_profile: Option<Profile>,
    pub symbols: Vec<String>,
    /// `[vars]`, name → value (index = `Var::Const`).
    pub consts: Vec<(String, String)>,
    pub auth: Auth,
    pub entries: Vec<Entry>,
    pub sse: Option<SseSpec>,
    pub limits: Limits,
}

/// The mix for one run: the entries of the chosen profile.
#[derive(Debug, Clone)]
pub struct Plan {
    pub profile: Option<Profile>,
    pub entries: Vec<Entry>,
    /// Mean requests per schedule ticket (weighted mean step count).
    pub requests_per_ticket: f64,
    /// `rate / requests_per_ticket`.
    pub ticket_rate: f64,
    /// SSE subscribers for this profile (`None`: none).
    pub sse: Option<SseSpec>,
}

/// Values given on the command line that replace the scenario's.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Overrides {
    pub rate: Option<f64>,
    pub duration: Option<Duration>,
    pub connections: Option<usize>,
    pub warmup: Option<Duration>,
}

// ---------------------------------------------------------------------------------------------
// Raw (serde) side
// ---------------------------------------------------------------------------------------------

/// The scenario as written: every field optional, unknown keys rejected.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScenario {
    pub name: Option<String>,
    pub description: Option<String>,
    pub rate: Option<f64>,
    pub arrival: Option<String>,
    pub duration: Option<String>,
    pub warmup: Option<String>,
    pub ramp: Option<String>,
    pub connections: Option<i64>,
    pub timeout: Option<String>,
    pub connect_timeout: Option<String>,
    pub seed: Option<u64>,
    pub profile: Option<String>,
    pub symbols: Option<Vec<String>>,
    #[serde(default)]
    pub vars: BTreeMap<String, toml::Value>,
    pub auth: Option<RawAuth>,
    #[serde(default, rename = "request")]
    pub requests: Vec<RawRequest>,
    #[serde(default, rename = "flow")]
    pub flows: Vec<RawFlow>,
    pub sse: Option<RawSse>,
    pub generator: Option<RawGenerator>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    pub kind: Option<String>,
    pub secret: Option<String>,
    pub secret_env: Option<String>,
    pub subject: Option<String>,
    pub expiry: Option<String>,
    pub style: Option<String>,
    pub key: Option<String>,
    pub key_env: Option<String>,
    pub header: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRequest {
    pub name: Option<String>,
    pub weight: Option<i64>,
    pub profile: Option<String>,
    pub method: Option<String>,
    pub path: Option<String>,
    pub route: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub body: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFlow {
    pub name: Option<String>,
    pub weight: Option<i64>,
    pub profile: Option<String>,
    #[serde(default)]
    pub step: Vec<RawStep>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    pub method: Option<String>,
    pub path: Option<String>,
    pub route: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub body: Option<String>,
    pub delay: Option<String>,
    #[serde(default)]
    pub extract: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSse {
    pub subscribers: Option<i64>,
    pub path: Option<String>,
    pub route: Option<String>,
    pub profile: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGenerator {
    pub min_achieved_ratio: Option<f64>,
    pub lateness_threshold: Option<String>,
    pub queue_capacity: Option<i64>,
    pub threads: Option<i64>,
    pub realtime: Option<String>,
    pub pacer: Option<String>,
}

impl RawScenario {
    /// Parses TOML; a syntax error or an unknown key is reported with its line and column.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<RawScenario, ScenarioErrors> {
        toml::from_str(text).map_err(|e| {
            let at = e
                .span()
                .map(|s| {
                    let (line, col) = line_col(text, s.start);
                    format!("line {line}, column {col}: ")
                })
                .unwrap_or_default();
            ScenarioErrors {
                origin: origin.to_owned(),
                issues: vec![ScenarioIssue {
                    path: String::new(),
                    message: format!(
                        "{at}{} (the shipped scenarios/*.load.toml files show every key)",
                        e.message().trim_end()
                    ),
                }],
            }
        })
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..offset.min(text.len())];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let col = before.iter().rev().take_while(|b| **b != b'\n').count() + 1;
    (line, col)
}

impl Scenario {
    /// Parses and validates a scenario document; `origin` names it in errors (the file).
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Scenario, ScenarioErrors> {
        RawScenario::from_toml_str(text, origin)?.validate(origin)
    }

    /// Reads and validates a scenario file.
    pub fn from_file(path: &std::path::Path) -> Result<Scenario, crate::LoadError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| crate::LoadError::ReadScenario {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Scenario::from_toml_str(&text, &path.display().to_string())?)
    }

    /// Applies command-line overrides, checking them as the file's values are checked.
    pub fn apply(&mut self, o: &Overrides) -> Result<(), ScenarioErrors> {
        let mut v = Issues::default();
        if let Some(rate) = o.rate
            && check_rate(rate, "--rate", &mut v)
        {
            self.rate = rate;
        }
        if let Some(d) = o.duration {
            if d.is_zero() {
                v.push("--duration", "must be above 0 (e.g. 10s)");
            } else {
                self.duration = d;
            }
        }
        if let Some(c) = o.connections {
            if c == 0 || c > MAX_CONNECTIONS {
                v.push(
                    "--connections",
                    format!("{c} is not in 1..={MAX_CONNECTIONS}"),
                );
            } else {
                self.connections = c;
            }
        }
        if let Some(w) = o.warmup {
            self.warmup = w;
        }
        v.finish("command line")
    }

    /// True when some entry (or the SSE block) is specific to a profile.
    pub fn has_profile_variants(&self) -> bool {
        self.entries.iter().any(|e| e.profile.is_some())
    }

    /// The mix for `profile` (or the scenario's default profile).
    pub fn plan(&self, profile: Option<Profile>) -> Result<Plan, ScenarioErrors> {
        let profile = profile.or(self.default_profile);
        let err = |message: String| ScenarioErrors {
            origin: self.origin.clone(),
            issues: vec![ScenarioIssue {
                path: String::new(),
                message,
            }],
        };
        if profile.is_none() && self.has_profile_variants() {
            return Err(err(
                "the mix has python- and cpp-specific entries (the gateways' order paths differ): \
                 pass --profile python|cpp, or set `profile = \"...\"` in the scenario"
                    .to_owned(),
            ));
        }
        let entries: Vec<Entry> = self
            .entries
            .iter()
            .filter(|e| e.profile.is_none() || e.profile == profile)
            .cloned()
            .collect();
        if entries.is_empty() {
            return Err(err(format!(
                "no [[request]] or [[flow]] is used with profile {}: add entries without `profile`, \
                 or for this profile",
                profile.map_or("(none)", |p| p.as_str())
            )));
        }
        let total: f64 = entries.iter().map(|e| f64::from(e.weight)).sum();
        let steps: f64 = entries
            .iter()
            .map(|e| f64::from(e.weight) * e.steps.len() as f64)
            .sum();
        let requests_per_ticket = steps / total;
        let sse = self
            .sse
            .clone()
            .filter(|s| s.subscribers > 0 && (s.profile.is_none() || s.profile == profile));
        Ok(Plan {
            profile,
            entries,
            requests_per_ticket,
            ticket_rate: self.rate / requests_per_ticket,
            sse,
        })
    }

    /// The constant values, in `Var::Const` order.
    pub fn const_values(&self) -> Vec<String> {
        self.consts.iter().map(|(_, v)| v.clone()).collect()
    }
}

const MAX_CONNECTIONS: usize = 10_000;
const MAX_RATE: f64 = 10_000_000.0;

#[derive(Default)]
struct Issues(Vec<ScenarioIssue>);

impl Issues {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ScenarioIssue {
            path: path.into(),
            message: message.into(),
        });
    }

    fn finish(self, origin: &str) -> Result<(), ScenarioErrors> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ScenarioErrors {
                origin: origin.to_owned(),
                issues: self.0,
            })
        }
    }
}

fn check_rate(rate: f64, path: &str, v: &mut Issues) -> bool {
    if !rate.is_finite() || rate <= 0.0 || rate > MAX_RATE {
        v.push(
            path,
            format!("{rate} is not a rate in requests per second: use a number above 0 and at most {MAX_RATE}"),
        );
        false
    } else {
        true
    }
}

fn duration(
    v: &mut Issues,
    path: &str,
    value: Option<&str>,
    default: Duration,
    allow_zero: bool,
) -> Duration {
    let Some(text) = value else { return default };
    match humantime::parse_duration(text.trim()) {
        Ok(d) if d.is_zero() && !allow_zero => {
            v.push(path, format!("`{text}` must be above 0"));
            default
        }
        Ok(d) => d,
        Err(e) => {
            v.push(
                path,
                format!("`{text}` is not a duration ({e}); write e.g. \"500ms\", \"10s\", \"1m\""),
            );
            default
        }
    }
}

fn profile(v: &mut Issues, path: &str, value: Option<&str>) -> Option<Profile> {
    let text = value?;
    let p = Profile::parse(text.trim());
    if p.is_none() {
        v.push(
            path,
            format!("`{text}` is not a profile: use \"python\" or \"cpp\""),
        );
    }
    p
}

fn is_ident(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// What a step's templates can refer to.
struct Names<'a> {
    consts: &'a [(String, String)],
    extracted: &'a [String],
}

impl Names<'_> {
    fn resolve(&self, name: &str) -> Option<Var> {
        Var::builtin(name)
            .or_else(|| {
                self.consts
                    .iter()
                    .position(|(n, _)| n == name)
                    .map(Var::Const)
            })
            .or_else(|| {
                self.extracted
                    .iter()
                    .position(|n| n == name)
                    .map(Var::Extracted)
            })
    }

    fn known(&self) -> String {
        let mut all: Vec<&str> = BUILTIN_NAMES.to_vec();
        all.extend(self.consts.iter().map(|(n, _)| n.as_str()));
        all.extend(self.extracted.iter().map(String::as_str));
        all.iter()
            .map(|n| format!("{{{n}}}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn template(&self, v: &mut Issues, path: &str, text: &str) -> Option<Template> {
        match Template::parse(text, |n| self.resolve(n)) {
            Ok(t) => Some(t),
            Err(unknown) => {
                let list = unknown
                    .iter()
                    .map(|n| format!("{{{n}}}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                v.push(
                    path,
                    format!(
                        "unknown variable{} {list}: known are {}; define constants under [vars], \
                         or extract values from an earlier step of a flow (write {{{{ for a literal {{)",
                        if unknown.len() == 1 { "" } else { "s" },
                        self.known()
                    ),
                );
                None
            }
        }
    }
}

/// The fields a request and a flow step share.
struct RawCall<'a> {
    method: Option<&'a str>,
    path: Option<&'a str>,
    route: Option<&'a str>,
    headers: &'a BTreeMap<String, String>,
    body: Option<&'a str>,
}

fn call(v: &mut Issues, at: &str, raw: &RawCall<'_>, names: &Names<'_>) -> Option<Step> {
    let method = match raw.method {
        None => Some(Method::GET),
        Some(m) => match Method::from_bytes(m.trim().to_ascii_uppercase().as_bytes()) {
            Ok(m) => Some(m),
            Err(_) => {
                v.push(
                    format!("{at}.method"),
                    format!("`{m}` is not an HTTP method"),
                );
                None
            }
        },
    };
    let path = match raw.path {
        None => {
            v.push(
                format!("{at}.path"),
                "missing: every request needs a path, e.g. path = \"/api/market\"",
            );
            None
        }
        Some(p) if !p.starts_with('/') => {
            v.push(
                format!("{at}.path"),
                format!("`{p}` must start with '/' (the target URL gives scheme, host and port)"),
            );
            None
        }
        Some(p)
            if p.bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) =>
        {
            v.push(
                format!("{at}.path"),
                format!("`{p}` contains whitespace or control characters: percent-encode them"),
            );
            None
        }
        Some(p) => names.template(v, &format!("{at}.path"), p),
    };
    let mut headers = Vec::new();
    let mut has_content_type = false;
    for (name, value) in raw.headers {
        let hpath = format!("{at}.headers.{name}");
        let Ok(hname) = HeaderName::from_bytes(name.as_bytes()) else {
            v.push(hpath, format!("`{name}` is not a valid header name"));
            continue;
        };
        if hname == http::header::HOST || hname == http::header::CONTENT_LENGTH {
            v.push(
                hpath,
                "is set by the generator (from the target URL and the body): remove it",
            );
            continue;
        }
        if value.bytes().any(|b| b == b'\r' || b == b'\n') {
            v.push(hpath, "contains a line break");
            continue;
        }
        if let Some(t) = names.template(v, &hpath, value) {
            if let Some(bytes) = t.static_bytes()
                && HeaderValue::from_bytes(&bytes).is_err()
            {
                v.push(hpath, format!("`{value}` is not a valid header value"));
                continue;
            }
            has_content_type |= hname == http::header::CONTENT_TYPE;
            headers.push((hname, t));
        }
    }
    let body = raw
        .body
        .and_then(|b| names.template(v, &format!("{at}.body"), b));
    if body.is_some() && !has_content_type {
        // Both gateways parse JSON bodies only with this header (python falls back to form
        // parsing without it).
        if let Ok(t) = Template::parse("application/json", |_| None) {
            headers.push((http::header::CONTENT_TYPE, t));
        }
    }
    let route = match raw.route {
        Some(r) if r.starts_with('/') => r.to_owned(),
        Some(r) => {
            v.push(format!("{at}.route"), format!("`{r}` must start with '/'"));
            r.to_owned()
        }
        None => raw
            .path
            .map(|p| p.split('?').next().unwrap_or(p).to_owned())
            .unwrap_or_default(),
    };
    Some(Step {
        method: method?,
        path: path?,
        route,
        headers,
        body,
        delay: Duration::ZERO,
        extract: Vec::new(),
    })
}

fn weight(v: &mut Issues, path: String, w: Option<i64>) -> u32 {
    match w {
        None => 1,
        Some(w) if (1..=1_000_000).contains(&w) => w as u32,
        Some(w) => {
            v.push(
                path,
                format!("{w} is not a weight: use a whole number in 1..=1000000"),
            );
            1
        }
    }
}

fn secret(
    v: &mut Issues,
    at: &str,
    (inline_key, inline): (&str, Option<&String>),
    (env_key, env): (&str, Option<&String>),
) -> Option<Secret> {
    match (inline, env) {
        (Some(_), Some(_)) => {
            v.push(
                at,
                format!("give `{inline_key}` or `{env_key}`, not both (prefer `{env_key}`)"),
            );
            None
        }
        (Some(s), None) if s.is_empty() => {
            v.push(format!("{at}.{inline_key}"), "is empty");
            None
        }
        (Some(s), None) => Some(Secret::Inline(s.clone())),
        (None, Some(e)) if e.is_empty() => {
            v.push(
                format!("{at}.{env_key}"),
                "is empty: name an environment variable",
            );
            None
        }
        (None, Some(e)) => Some(Secret::Env(e.clone())),
        (None, None) => {
            v.push(
                at,
                format!(
                    "missing `{env_key}` (the environment variable that holds it) or `{inline_key}`"
                ),
            );
            None
        }
    }
}

fn auth(v: &mut Issues, raw: Option<&RawAuth>) -> Auth {
    let Some(a) = raw else { return Auth::None };
    let kind = a.kind.as_deref().unwrap_or("none").trim();
    let stray = |v: &mut Issues, fields: &[(&str, bool)]| {
        for (name, given) in fields {
            if *given {
                v.push(
                    format!("auth.{name}"),
                    format!("does not apply to kind = \"{kind}\""),
                );
            }
        }
    };
    match kind {
        "none" => {
            stray(
                v,
                &[
                    ("secret", a.secret.is_some()),
                    ("secret_env", a.secret_env.is_some()),
                    ("key", a.key.is_some()),
                    ("key_env", a.key_env.is_some()),
                ],
            );
            Auth::None
        }
        "jwt" => {
            stray(
                v,
                &[
                    ("key", a.key.is_some()),
                    ("key_env", a.key_env.is_some()),
                    ("header", a.header.is_some()),
                ],
            );
            let secret = secret(
                v,
                "auth",
                ("secret", a.secret.as_ref()),
                ("secret_env", a.secret_env.as_ref()),
            );
            let expiry = duration(
                v,
                "auth.expiry",
                a.expiry.as_deref(),
                Duration::from_secs(3600),
                false,
            );
            let style = match a.style.as_deref().map(str::trim) {
                None | Some("auto") => JwtStyle::Auto,
                Some("python") => JwtStyle::Python,
                Some("compact" | "cpp") => JwtStyle::Compact,
                Some(other) => {
                    v.push(
                        "auth.style",
                        format!("`{other}`: use \"auto\", \"python\" or \"compact\""),
                    );
                    JwtStyle::Auto
                }
            };
            match secret {
                Some(secret) => Auth::Jwt {
                    secret,
                    subject: a.subject.clone().unwrap_or_else(|| "admin".to_owned()),
                    expiry,
                    style,
                },
                None => Auth::None,
            }
        }
        "api_key" | "api-key" => {
            stray(
                v,
                &[
                    ("secret", a.secret.is_some()),
                    ("secret_env", a.secret_env.is_some()),
                    ("subject", a.subject.is_some()),
                    ("expiry", a.expiry.is_some()),
                    ("style", a.style.is_some()),
                ],
            );
            let key = secret(
                v,
                "auth",
                ("key", a.key.as_ref()),
                ("key_env", a.key_env.as_ref()),
            );
            let header = match a.header.as_deref() {
                None => Some(HeaderName::from_static("x-api-key")),
                Some(h) => match HeaderName::from_bytes(h.as_bytes()) {
                    Ok(h) => Some(h),
                    Err(_) => {
                        v.push("auth.header", format!("`{h}` is not a valid header name"));
                        None
                    }
                },
            };
            match (key, header) {
                (Some(key), Some(header)) => Auth::ApiKey { key, header },
                _ => Auth::None,
            }
        }
        other => {
            v.push(
                "auth.kind",
                format!("`{other}`: use \"none\", \"jwt\" or \"api_key\""),
            );
            Auth::None
        }
    }
}

impl RawScenario {
    /// Checks everything and returns the typed scenario, or every problem found.
    pub fn validate(&self, origin: &str) -> Result<Scenario, ScenarioErrors> {
        let mut v = Issues::default();
        let rate = match self.rate {
            None => {
                v.push("rate", "missing: requests per second, e.g. rate = 1000");
                1.0
            }
            Some(r) => {
                if check_rate(r, "rate", &mut v) {
                    r
                } else {
                    1.0
                }
            }
        };
        let arrival = match self.arrival.as_deref().map(str::trim) {
            None | Some("fixed") => Arrival::Fixed,
            Some("poisson") => Arrival::Poisson,
            Some(other) => {
                v.push(
                    "arrival",
                    format!("`{other}`: use \"fixed\" or \"poisson\""),
                );
                Arrival::Fixed
            }
        };
        let duration_v = if self.duration.is_none() {
            v.push(
                "duration",
                "missing: the measured window, e.g. duration = \"60s\"",
            );
            Duration::from_secs(1)
        } else {
            duration(
                &mut v,
                "duration",
                self.duration.as_deref(),
                Duration::from_secs(1),
                false,
            )
        };
        let warmup = duration(
            &mut v,
            "warmup",
            self.warmup.as_deref(),
            Duration::from_secs(1),
            true,
        );
        let ramp = duration(&mut v, "ramp", self.ramp.as_deref(), Duration::ZERO, true);
        let connections = match self.connections {
            None => 32,
            Some(c) if c >= 1 && c as u64 <= MAX_CONNECTIONS as u64 => c as usize,
            Some(c) => {
                v.push(
                    "connections",
                    format!("{c} is not in 1..={MAX_CONNECTIONS}"),
                );
                1
            }
        };
        let timeout = duration(
            &mut v,
            "timeout",
            self.timeout.as_deref(),
            Duration::from_secs(10),
            false,
        );
        let connect_timeout = duration(
            &mut v,
            "connect_timeout",
            self.connect_timeout.as_deref(),
            Duration::from_secs(2),
            false,
        );
        let default_profile = profile(&mut v, "profile", self.profile.as_deref());
        let symbols = match &self.symbols {
            None => vec!["BTCUSDT".to_owned()],
            Some(s) if s.is_empty() => {
                v.push("symbols", "is empty: list at least one, e.g. [\"BTCUSDT\"]");
                vec!["BTCUSDT".to_owned()]
            }
            Some(s) => {
                for (i, sym) in s.iter().enumerate() {
                    if sym.is_empty() || !sym.bytes().all(|b| b.is_ascii_graphic()) {
                        v.push(
                            format!("symbols[{i}]"),
                            format!("`{sym}` must be printable ASCII without spaces"),
                        );
                    }
                }
                s.clone()
            }
        };
        let mut consts = Vec::new();
        for (name, value) in &self.vars {
            let path = format!("vars.{name}");
            if !is_ident(name) {
                v.push(
                    path,
                    "a variable name may contain only letters, digits and '_'",
                );
                continue;
            }
            if Var::builtin(name).is_some() {
                v.push(
                    path,
                    format!("`{name}` is a built-in variable: choose another name"),
                );
                continue;
            }
            let text = match value {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                _ => {
                    v.push(path, "must be a string, a number or a boolean");
                    continue;
                }
            };
            consts.push((name.clone(), text));
        }
        let auth = auth(&mut v, self.auth.as_ref());

        let mut entries = Vec::new();
        for (i, r) in self.requests.iter().enumerate() {
            let at = format!("request[{i}]");
            let names = Names {
                consts: &consts,
                extracted: &[],
            };
            let raw = RawCall {
                method: r.method.as_deref(),
                path: r.path.as_deref(),
                route: r.route.as_deref(),
                headers: &r.headers,
                body: r.body.as_deref(),
            };
            let weight = weight(&mut v, format!("{at}.weight"), r.weight);
            let profile = profile(&mut v, &format!("{at}.profile"), r.profile.as_deref());
            if let Some(step) = call(&mut v, &at, &raw, &names) {
                entries.push(Entry {
                    name: r
                        .name
                        .clone()
                        .unwrap_or_else(|| format!("{} {}", step.method, step.route)),
                    weight,
                    profile,
                    steps: vec![step],
                    extracted: Vec::new(),
                    is_flow: false,
                });
            }
        }
        for (i, f) in self.flows.iter().enumerate() {
            let at = format!("flow[{i}]");
            let weight = weight(&mut v, format!("{at}.weight"), f.weight);
            let profile = profile(&mut v, &format!("{at}.profile"), f.profile.as_deref());
            if f.step.is_empty() {
                v.push(
                    format!("{at}.step"),
                    "a flow needs at least one [[flow.step]] (a single request is a [[request]])",
                );
                continue;
            }
            let mut extracted: Vec<String> = Vec::new();
            let mut steps = Vec::new();
            let mut ok = true;
            for (k, s) in f.step.iter().enumerate() {
                let sat = format!("{at}.step[{k}]");
                let names = Names {
                    consts: &consts,
                    extracted: &extracted,
                };
                let raw = RawCall {
                    method: s.method.as_deref(),
                    path: s.path.as_deref(),
                    route: s.route.as_deref(),
                    headers: &s.headers,
                    body: s.body.as_deref(),
                };
                let step = call(&mut v, &sat, &raw, &names);
                let delay = if k == 0 {
                    if s.delay.is_some() {
                        v.push(
                            format!("{sat}.delay"),
                            "the first step is sent on the schedule: put `delay` on later steps",
                        );
                    }
                    Duration::ZERO
                } else {
                    duration(
                        &mut v,
                        &format!("{sat}.delay"),
                        s.delay.as_deref(),
                        Duration::ZERO,
                        true,
                    )
                };
                let mut extract = Vec::new();
                for (name, pointer) in &s.extract {
                    let epath = format!("{sat}.extract.{name}");
                    if !is_ident(name)
                        || Var::builtin(name).is_some()
                        || consts.iter().any(|(c, _)| c == name)
                    {
                        v.push(
                            epath,
                            "must be a new variable name (letters, digits, '_'; not a built-in or [vars] name)",
                        );
                        continue;
                    }
                    if !(pointer.is_empty() || pointer.starts_with('/')) {
                        v.push(
                            epath,
                            format!("`{pointer}` is not a JSON Pointer: write e.g. \"/data/client_order_id\""),
                        );
                        continue;
                    }
                    let idx = match extracted.iter().position(|n| n == name) {
                        Some(i) => i,
                        None => {
                            extracted.push(name.clone());
                            extracted.len() - 1
                        }
                    };
                    extract.push((idx, pointer.clone()));
                }
                match step {
                    Some(mut step) => {
                        step.delay = delay;
                        step.extract = extract;
                        steps.push(step);
                    }
                    None => ok = false,
                }
            }
            if ok {
                entries.push(Entry {
                    name: f.name.clone().unwrap_or_else(|| format!("flow {i}")),
                    weight,
                    profile,
                    steps,
                    extracted,
                    is_flow: true,
                });
            }
        }
        if self.requests.is_empty() && self.flows.is_empty() {
            v.push(
                "",
                "the mix is empty: add at least one [[request]] (method, path) or [[flow]]",
            );
        }

        let sse = self.sse.as_ref().map(|s| {
            let subscribers = match s.subscribers {
                None => 1,
                Some(n) if (0..=10_000).contains(&n) => n as usize,
                Some(n) => {
                    v.push("sse.subscribers", format!("{n} is not in 0..=10000"));
                    0
                }
            };
            let path = s.path.clone().unwrap_or_else(|| "/api/stream".to_owned());
            if !path.starts_with('/') {
                v.push("sse.path", format!("`{path}` must start with '/'"));
            }
            let profile = profile(&mut v, "sse.profile", s.profile.as_deref());
            SseSpec {
                subscribers,
                route: s
                    .route
                    .clone()
                    .unwrap_or_else(|| path.split('?').next().unwrap_or(&path).to_owned()),
                path,
                profile,
            }
        });

        let mut limits = Limits::default();
        if let Some(g) = &self.generator {
            if let Some(r) = g.min_achieved_ratio {
                if (0.0..=1.0).contains(&r) {
                    limits.min_achieved_ratio = r;
                } else {
                    v.push(
                        "generator.min_achieved_ratio",
                        format!("{r} is not in 0..=1"),
                    );
                }
            }
            limits.lateness_threshold = duration(
                &mut v,
                "generator.lateness_threshold",
                g.lateness_threshold.as_deref(),
                limits.lateness_threshold,
                false,
            );
            if let Some(t) = g.threads {
                if (1..=64).contains(&t) {
                    limits.threads = t as usize;
                } else {
                    v.push("generator.threads", format!("{t} is not in 1..=64"));
                }
            }
            if let Some(r) = &g.realtime {
                match crate::priority::Realtime::parse(r) {
                    Some(r) => limits.realtime = r,
                    None => v.push(
                        "generator.realtime",
                        format!(
                            "`{r}` is not a choice: \"pacer\" (default: a thread pacer runs on \
                             SCHED_FIFO), \"all\" (the runtime threads too) or \"off\""
                        ),
                    ),
                }
            }
            if let Some(m) = &g.pacer {
                match crate::pacer::PacerMode::parse(m) {
                    Some(m) => limits.pacer = m,
                    None => v.push(
                        "generator.pacer",
                        format!(
                            "`{m}` is not a choice: \"tick\" (default: the generator's \
                             thread sleeps between tickets and reads answers when it wakes), \
                             \"timer\" (a timerfd on the generator's runtime; answers wake it) \
                             or \"thread\" (a dedicated pacer thread)"
                        ),
                    ),
                }
            }
            if let Some(q) = g.queue_capacity {
                if (1..=16_777_216).contains(&q) {
                    limits.queue_capacity = Some(q as usize);
                } else {
                    v.push(
                        "generator.queue_capacity",
                        format!("{q} is not in 1..=16777216"),
                    );
                }
            }
        }

        v.finish(origin)?;
        let name = self.name.clone().unwrap_or_else(|| {
            std::path::Path::new(origin)
                .file_name()
                .and_then(|f| f.to_str())
                .map(|f| {
                    f.trim_end_matches(".toml")
                        .trim_end_matches(".load")
                        .to_owned()
                })
                .unwrap_or_else(|| "scenario".to_owned())
        });
        Ok(Scenario {
            name,
            description: self.description.clone(),
            origin: origin.to_owned(),
            rate,
            arrival,
            duration: duration_v,
            warmup,
            ramp,
            connections,
            timeout,
            connect_timeout,
            seed: self.seed,
            default_profile,
            symbols,
            consts,
            auth,
            entries,
            sse,
            limits,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "t"
rate = 1000
duration = "5s"
connections = 4
[vars]
qty = 0.01
[[request]]
weight = 3
path = "/api/market?symbol={symbol}"
[[flow]]
name = "submit-cancel"
profile = "python"
[[flow.step]]
method = "post"
path = "/api/order"
body = '{"side":"{side}","qty":{qty},"client_order_id":"{client_order_id}"}'
extract = { id = "/client_order_id" }
[[flow.step]]
delay = "50ms"
method = "POST"
path = "/api/cancel"
body = '{"client_order_id":"{id}"}'
"#;

    #[test]
    fn a_good_scenario_validates_with_defaults() {
        let s = Scenario::from_toml_str(GOOD, "good.load.toml").unwrap();
        assert_eq!(s.rate, 1000.0);
        assert_eq!(s.duration, Duration::from_secs(5));
        assert_eq!(s.warmup, Duration::from_secs(1));
        assert_eq!(s.connections, 4);
        assert_eq!(s.entries.len(), 2);
        assert_eq!(s.entries[0].name, "GET /api/market");
        assert_eq!(s.entries[0].steps[0].route, "/api/market");
        let flow = &s.entries[1];
        assert!(flow.is_flow);
        assert_eq!(flow.steps[0].method, Method::POST);
        assert_eq!(flow.steps[1].delay, Duration::from_millis(50));
        assert_eq!(flow.extracted, vec!["id".to_owned()]);
        assert!(flow.steps[1].body.as_ref().unwrap().uses(Var::Extracted(0)));
        // A body gets a JSON content type.
        assert!(
            flow.steps[0]
                .headers
                .iter()
                .any(|(n, _)| n == http::header::CONTENT_TYPE)
        );
    }

    #[test]
    fn generator_settings_have_defaults_and_named_choices() {
        let s = Scenario::from_toml_str(GOOD, "good.load.toml").unwrap();
        assert_eq!(s.limits.pacer, crate::pacer::PacerMode::Tick);
        assert_eq!(s.limits.realtime, crate::priority::Realtime::Pacer);
        let text = format!("{GOOD}\n[generator]\npacer = \"thread\"\nrealtime = \"all\"\n");
        let s = Scenario::from_toml_str(&text, "g").unwrap();
        assert_eq!(s.limits.pacer, crate::pacer::PacerMode::Thread);
        assert_eq!(s.limits.realtime, crate::priority::Realtime::All);
        let text = format!("{GOOD}\n[generator]\npacer = \"fast\"\nrealtime = \"yes\"\n");
        let err = Scenario::from_toml_str(&text, "g").unwrap_err();
        assert!(
            err.has("generator.pacer") && err.has("generator.realtime"),
            "{err}"
        );
        let text = err.to_string();
        assert!(
            text.contains("\"timer\"") && text.contains("\"all\""),
            "{text}"
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = r#"
rate = -5
duration = "soon"
arrival = "bursty"
connections = 0
profile = "java"
[vars]
seq = "x"
[auth]
kind = "jwt"
[[request]]
method = "GE T"
path = "api/market"
weight = 0
[[request]]
path = "/x/{nope}"
headers = { "Bad Header" = "1" }
[[flow]]
[[flow.step]]
delay = "1s"
path = "/a"
[[flow.step]]
path = "/b/{idd}"
extract = { "seq" = "/x", ok = "no-slash" }
"#;
        let err = Scenario::from_toml_str(text, "bad.load.toml").unwrap_err();
        for path in [
            "rate",
            "duration",
            "arrival",
            "connections",
            "profile",
            "vars.seq",
            "auth",
            "request[0].method",
            "request[0].path",
            "request[0].weight",
            "request[1].path",
            "request[1].headers.Bad Header",
            "flow[0].step[0].delay",
            "flow[0].step[1].path",
            "flow[0].step[1].extract.seq",
            "flow[0].step[1].extract.ok",
        ] {
            assert!(err.has(path), "no issue at {path}:\n{err}");
        }
        let text = err.to_string();
        assert!(
            text.starts_with("bad.load.toml: invalid load scenario (16 problems)"),
            "{text}"
        );
        assert!(text.contains("{idd}"), "{text}");
        assert!(text.contains("known are {seq}"), "{text}");
    }

    #[test]
    fn unknown_keys_and_syntax_errors_name_the_line() {
        let err = Scenario::from_toml_str("rate = 1\nduration = \"1s\"\nrat = 2\n", "f.toml")
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("line 3"), "{text}");
        assert!(text.contains("rat"), "{text}");
        let err = Scenario::from_toml_str("rate = [", "f.toml").unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
    }

    #[test]
    fn empty_mix_is_an_error() {
        let err = Scenario::from_toml_str("rate = 1\nduration = \"1s\"\n", "f").unwrap_err();
        assert!(err.to_string().contains("the mix is empty"), "{err}");
    }

    #[test]
    fn plan_picks_profile_variants_and_counts_flow_steps() {
        let s = Scenario::from_toml_str(GOOD, "good").unwrap();
        let err = s.plan(None).unwrap_err();
        assert!(err.to_string().contains("--profile"), "{err}");
        let py = s.plan(Some(Profile::Python)).unwrap();
        assert_eq!(py.entries.len(), 2);
        // weights 3 (1 step) and 1 (2 steps): 5 requests per 4 tickets.
        assert!((py.requests_per_ticket - 1.25).abs() < 1e-12);
        assert!((py.ticket_rate - 800.0).abs() < 1e-9);
        let cpp = s.plan(Some(Profile::Cpp)).unwrap();
        assert_eq!(cpp.entries.len(), 1);
        assert_eq!(cpp.ticket_rate, 1000.0);
    }

    #[test]
    fn overrides_are_checked() {
        let mut s = Scenario::from_toml_str(GOOD, "good").unwrap();
        s.apply(&Overrides {
            rate: Some(50.0),
            duration: Some(Duration::from_secs(2)),
            ..Overrides::default()
        })
        .unwrap();
        assert_eq!((s.rate, s.duration), (50.0, Duration::from_secs(2)));
        let err = s
            .apply(&Overrides {
                rate: Some(0.0),
                connections: Some(0),
                ..Overrides::default()
            })
            .unwrap_err();
        assert!(err.has("--rate") && err.has("--connections"), "{err}");
    }

    #[test]
    fn auth_kinds_validate() {
        let base = "rate = 1\nduration = \"1s\"\n[[request]]\npath = \"/\"\n";
        let s = Scenario::from_toml_str(
            &format!("{base}[auth]\nkind = \"jwt\"\nsecret_env = \"X\"\n"),
            "f",
        )
        .unwrap();
        assert!(matches!(s.auth, Auth::Jwt { secret: Secret::Env(ref e), .. } if e == "X"));
        let s = Scenario::from_toml_str(
            &format!("{base}[auth]\nkind = \"api_key\"\nkey = \"k\"\n"),
            "f",
        )
        .unwrap();
        assert!(matches!(s.auth, Auth::ApiKey { .. }));
        let err = Scenario::from_toml_str(
            &format!(
                "{base}[auth]\nkind = \"jwt\"\nsecret = \"a\"\nsecret_env = \"B\"\nkey = \"k\"\n"
            ),
            "f",
        )
        .unwrap_err();
        assert!(err.has("auth") && err.has("auth.key"), "{err}");
    }
}
