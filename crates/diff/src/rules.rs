//! Rules: a raw serde form ([`RawRuleSet`], `deny_unknown_fields`, strings for every enum so
//! all mistakes can be collected) and the validated [`RuleSet`] the engine runs on.
//!
//! `defaults` apply to every route and to paths that match no route. A route's lists (ignore,
//! noise, tolerances, arrays, normalization steps) are added to the defaults' — the route's
//! own entries are consulted first — and its scalars (headers, status, tolerance, labels,
//! unwrap) replace the defaults'.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use crate::error::RuleError;
use crate::labels::Label;
use crate::normalize::{
    BodyMap, FieldSelector, KeySpec, Normalization, Rename, SortRule, Unwrap, ValueMap,
};
use crate::pointer::{PathPattern, Pointer, Seg};
use crate::redact::Redactor;
use crate::route::{PathTemplate, RouteTemplate, generalize_path};

/// Headers never compared: hop-by-hop headers and ones that change on every response.
pub const NEVER_COMPARED_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "date",
    "server",
    "content-length",
];

/// Headers compared when no rule says otherwise (the status is compared too).
pub const DEFAULT_COMPARED_HEADERS: &[&str] = &["content-type"];

// ----------------------------------------------------------------------------------------
// Raw form
// ----------------------------------------------------------------------------------------

/// The rule file as written (the loader deserializes this; [`RuleSet::validate`] checks it).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRuleSet {
    /// Comparison rules for every route (and for unmatched paths).
    pub defaults: RawCompare,
    /// Extra secret names.
    pub redact: RawRedact,
    /// Size caps.
    pub limits: RawLimits,
    /// Per-route rules.
    pub routes: Vec<RawRoute>,
    /// Event-stream comparison (`[[streams]]`).
    pub streams: Vec<crate::stream::RawStreamRule>,
    /// Order-flow tracking and comparison (`[flows]`).
    pub flows: crate::flow::RawFlows,
}

/// Comparison rules (the `defaults` table; routes carry the same fields).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCompare {
    /// Headers to compare (lower-case or any case); default `["content-type"]`.
    pub headers: Option<Vec<String>>,
    /// Compared headers whose differences are classed ignored.
    pub ignore_headers: Vec<String>,
    /// Compare the status code (default true).
    pub compare_status: Option<bool>,
    /// Patterns whose differences are classed ignored (still reported and counted).
    pub ignore: Vec<String>,
    /// Patterns whose differences are classed noise.
    pub noise: Vec<String>,
    /// Heuristic labels (`timestamp`, `uuid`, `counter`, `generated-id`) whose differences are
    /// classed noise.
    pub noise_labels: Vec<String>,
    /// Label differences heuristically (default true).
    pub labels: Option<bool>,
    /// Numeric tolerance for every number.
    pub tolerance: Option<RawTolerance>,
    /// Numeric tolerance under given paths.
    pub tolerances: Vec<RawPathTolerance>,
    /// How arrays are matched.
    pub arrays: Vec<RawArrayRule>,
    /// Normalization of both sides.
    pub normalize: RawNormalize,
    /// Normalization of the primary only.
    pub primary: RawNormalize,
    /// Normalization of the candidate only.
    pub candidate: RawNormalize,
}

/// One route's rules: what the mirror needs, then the comparison rules.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRoute {
    /// Route template, e.g. `/api/orders/{id}`.
    pub template: String,
    /// Methods this rule applies to (empty = all).
    pub methods: Vec<String>,
    /// For non-idempotent methods: `mirror`, `skip` (default) or `mirror-marked`.
    pub write_policy: Option<String>,
    /// Percentage of requests to mirror (0–100, default 100).
    pub sample_percent: Option<f64>,
    /// What sampling hashes on: `header:<name>`, `query:<name>`, `capture:<name>`,
    /// `body:<field or /pointer>`, `client-ip`.
    pub sample_key: Option<String>,
    /// Method to send to the candidate.
    pub candidate_method: Option<String>,
    /// Path to send to the candidate, with `{captures}`.
    pub candidate_path: Option<String>,
    /// Request body mapping for the candidate.
    pub candidate_body: RawBodyMap,
    /// Where order (and other) ids live in this route's answers and requests.
    pub ids: crate::flow::RawIdsField,
    /// The route's role in an order flow: `submit`, `cancel` or `state`.
    pub flow: Option<String>,

    /// See [`RawCompare::headers`].
    pub headers: Option<Vec<String>>,
    /// See [`RawCompare::ignore_headers`].
    pub ignore_headers: Vec<String>,
    /// See [`RawCompare::compare_status`].
    pub compare_status: Option<bool>,
    /// See [`RawCompare::ignore`].
    pub ignore: Vec<String>,
    /// See [`RawCompare::noise`].
    pub noise: Vec<String>,
    /// See [`RawCompare::noise_labels`].
    pub noise_labels: Vec<String>,
    /// See [`RawCompare::labels`].
    pub labels: Option<bool>,
    /// See [`RawCompare::tolerance`].
    pub tolerance: Option<RawTolerance>,
    /// See [`RawCompare::tolerances`].
    pub tolerances: Vec<RawPathTolerance>,
    /// See [`RawCompare::arrays`].
    pub arrays: Vec<RawArrayRule>,
    /// See [`RawCompare::normalize`].
    pub normalize: RawNormalize,
    /// See [`RawCompare::primary`].
    pub primary: RawNormalize,
    /// See [`RawCompare::candidate`].
    pub candidate: RawNormalize,
}

impl RawRoute {
    /// A route rule for `template` with everything else default.
    pub fn new(template: impl Into<String>) -> Self {
        Self {
            template: template.into(),
            ..Self::default()
        }
    }

    fn split_compare(&mut self) -> RawCompare {
        RawCompare {
            headers: self.headers.take(),
            ignore_headers: std::mem::take(&mut self.ignore_headers),
            compare_status: self.compare_status.take(),
            ignore: std::mem::take(&mut self.ignore),
            noise: std::mem::take(&mut self.noise),
            noise_labels: std::mem::take(&mut self.noise_labels),
            labels: self.labels.take(),
            tolerance: self.tolerance.take(),
            tolerances: std::mem::take(&mut self.tolerances),
            arrays: std::mem::take(&mut self.arrays),
            normalize: std::mem::take(&mut self.normalize),
            primary: std::mem::take(&mut self.primary),
            candidate: std::mem::take(&mut self.candidate),
        }
    }
}

/// `{ abs = 0.5, rel = 0.001 }`: numbers are equal when within either bound.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTolerance {
    /// Absolute bound.
    pub abs: Option<f64>,
    /// Relative bound (of the larger magnitude).
    pub rel: Option<f64>,
}

/// A tolerance under a path pattern.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPathTolerance {
    /// Pattern (applies to the path and everything under it).
    pub path: String,
    /// Absolute bound.
    pub abs: Option<f64>,
    /// Relative bound.
    pub rel: Option<f64>,
}

/// How the arrays at `path` are matched.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawArrayRule {
    /// Pattern of the array(s) (`""` is a root array).
    pub path: String,
    /// `positional`, `keyed` (default when `key` is set) or `unordered`.
    pub mode: Option<String>,
    /// For keyed mode: a field name or a JSON Pointer inside the element.
    pub key: Option<String>,
}

/// Normalization steps (see [`Normalization`]).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawNormalize {
    /// JSON Pointer of the payload to keep (`/data`).
    pub unwrap: Option<String>,
    /// Conditions for the unwrap: pointer → required value.
    pub unwrap_if: BTreeMap<String, Value>,
    /// Field selector → new name.
    pub rename: BTreeMap<String, String>,
    /// Field selector → { from string → to value }.
    pub map_values: BTreeMap<String, BTreeMap<String, Value>>,
    /// Field selectors to remove.
    pub drop: Vec<String>,
    /// Array pattern → key to sort by.
    pub sort: BTreeMap<String, String>,
}

/// Candidate request body mapping.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawBodyMap {
    /// Field selector → new name.
    pub rename: BTreeMap<String, String>,
    /// Field selectors to remove.
    pub drop: Vec<String>,
    /// Field selectors (after renames) whose value becomes a one-element array.
    pub wrap: Vec<String>,
    /// JSON Pointer → value to set.
    pub set: BTreeMap<String, Value>,
}

/// Secret names added to the defaults (or replacing them).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRedact {
    /// Extra header names.
    pub headers: Vec<String>,
    /// Extra body field names.
    pub fields: Vec<String>,
    /// Use only the names above, not the built-in defaults.
    pub replace_defaults: bool,
}

/// Size caps (all optional).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLimits {
    /// Most differences reported per exchange (default 200).
    pub max_differences: Option<usize>,
    /// Bodies larger than this are compared by length and digest only (default 4 MiB).
    pub max_body_bytes: Option<usize>,
    /// Text bodies are line-diffed up to this many bytes (default 64 KiB).
    pub max_text_bytes: Option<usize>,
    /// Hunks kept in a text diff (default 8).
    pub max_text_hunks: Option<usize>,
    /// Bytes kept of a text excerpt or unified diff (default 4 KiB).
    pub max_excerpt_bytes: Option<usize>,
}

// ----------------------------------------------------------------------------------------
// Validated form
// ----------------------------------------------------------------------------------------

/// Numbers are equal when `|a-b| <= abs` or `|a-b| <= rel * max(|a|,|b|)`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Tolerance {
    /// Absolute bound.
    pub abs: f64,
    /// Relative bound.
    pub rel: f64,
}

impl Tolerance {
    /// Exact numeric equality.
    pub const EXACT: Tolerance = Tolerance { abs: 0.0, rel: 0.0 };

    /// Whether `a` and `b` are equal within this tolerance.
    pub fn accepts(&self, a: f64, b: f64) -> bool {
        let d = (a - b).abs();
        d <= self.abs || d <= self.rel * a.abs().max(b.abs())
    }

    fn is_exact(&self) -> bool {
        self.abs == 0.0 && self.rel == 0.0
    }
}

/// How an array's elements are paired.
#[derive(Debug, Clone, PartialEq)]
pub enum ArrayMode {
    /// By position, aligned with an LCS so an insert is one `extra`.
    Positional,
    /// By a key value; order does not matter.
    Keyed(KeySpec),
    /// As a multiset; order does not matter.
    Unordered,
}

/// An array-matching rule.
#[derive(Debug, Clone, PartialEq)]
pub struct ArrayRule {
    /// Which arrays.
    pub at: PathPattern,
    /// How.
    pub mode: ArrayMode,
}

/// What the mirror does with a non-idempotent request on this route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WritePolicy {
    /// Send it to the candidate too.
    Mirror,
    /// Do not send it to the candidate (the default: writes are not mirrored by accident).
    #[default]
    Skip,
    /// Send it with a shadow marker header.
    MirrorMarked,
}

/// What sampling hashes on, so one user's requests are all in or all out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SampleKey {
    /// A request header (lower-case name).
    Header(String),
    /// A query parameter.
    Query(String),
    /// A capture of the route template.
    Capture(String),
    /// The client address.
    ClientIp,
    /// A field of the request body: a top-level field name (JSON or form-encoded) or a JSON
    /// Pointer (`/order/client_order_id`), so an order's placement, queries and cancel (which
    /// carry its id in the body, the query or the path) can be sampled together.
    Body(String),
}

/// Size caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most differences reported per exchange; more set [`crate::Comparison::truncated`].
    pub max_differences: usize,
    /// Bodies larger than this are compared by length and digest only.
    pub max_body_bytes: usize,
    /// Text bodies are line-diffed up to this many bytes.
    pub max_text_bytes: usize,
    /// Hunks kept in a text diff.
    pub max_text_hunks: usize,
    /// Bytes kept of a text excerpt or unified diff.
    pub max_excerpt_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_differences: 200,
            max_body_bytes: 4 << 20,
            max_text_bytes: 64 << 10,
            max_text_hunks: 8,
            max_excerpt_bytes: 4 << 10,
        }
    }
}

/// The comparison rules in force for one route (defaults merged in).
#[derive(Debug, Clone, PartialEq)]
pub struct CompareRules {
    /// Compared headers (lower-case).
    pub headers: Vec<String>,
    /// Compared headers whose differences are ignored (lower-case).
    pub ignore_headers: Vec<String>,
    /// Whether the status is compared.
    pub compare_status: bool,
    /// Patterns classed ignored.
    pub ignore: Vec<PathPattern>,
    /// Patterns classed noise.
    pub noise: Vec<PathPattern>,
    /// Labels classed noise.
    pub noise_labels: Vec<Label>,
    /// Whether heuristic labels are computed.
    pub labels: bool,
    /// Default numeric tolerance.
    pub tolerance: Tolerance,
    /// Path tolerances (first match wins).
    pub tolerances: Vec<(PathPattern, Tolerance)>,
    /// Array rules (first match wins).
    pub arrays: Vec<ArrayRule>,
    /// Primary-side normalization.
    pub primary: Normalization,
    /// Candidate-side normalization.
    pub candidate: Normalization,
    /// Both sides normalize alike, so byte-identical bodies cannot differ.
    pub symmetric: bool,
}

impl Default for CompareRules {
    fn default() -> Self {
        Self {
            headers: DEFAULT_COMPARED_HEADERS
                .iter()
                .map(|h| (*h).to_owned())
                .collect(),
            ignore_headers: Vec::new(),
            compare_status: true,
            ignore: Vec::new(),
            noise: Vec::new(),
            noise_labels: Vec::new(),
            labels: true,
            tolerance: Tolerance::EXACT,
            tolerances: Vec::new(),
            arrays: Vec::new(),
            primary: Normalization::default(),
            candidate: Normalization::default(),
            symmetric: true,
        }
    }
}

impl CompareRules {
    pub(crate) fn tolerance_for(&self, path: &[Seg<'_>]) -> Tolerance {
        self.tolerances
            .iter()
            .find(|(p, _)| p.matches_prefix(path))
            .map_or(self.tolerance, |(_, t)| *t)
    }

    pub(crate) fn has_tolerance(&self) -> bool {
        !self.tolerance.is_exact() || !self.tolerances.is_empty()
    }

    pub(crate) fn array_mode(&self, path: &[Seg<'_>]) -> &ArrayMode {
        self.arrays
            .iter()
            .find(|r| r.at.matches(path))
            .map_or(&ArrayMode::Positional, |r| &r.mode)
    }
}

/// How the request is translated for the candidate (stored for the mirror; the comparison
/// ignores it).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RequestTranslation {
    /// Method for the candidate (upper-case), if different.
    pub method: Option<String>,
    /// Path for the candidate, if different.
    pub path: Option<PathTemplate>,
    /// Body mapping.
    pub body: BodyMap,
}

/// One validated route rule.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteRule {
    template: RouteTemplate,
    methods: Vec<String>,
    write_policy: WritePolicy,
    sample_percent: f64,
    sample_key: Option<SampleKey>,
    translation: RequestTranslation,
    compare: CompareRules,
    ids: Vec<crate::flow::IdRule>,
    flow_step: Option<crate::flow::FlowStep>,
}

impl RouteRule {
    /// The template.
    pub fn template(&self) -> &RouteTemplate {
        &self.template
    }

    /// Methods (upper-case; empty = all).
    pub fn methods(&self) -> &[String] {
        &self.methods
    }

    /// Whether this rule covers `method`.
    pub fn allows_method(&self, method: &str) -> bool {
        self.methods.is_empty() || self.methods.iter().any(|m| m.eq_ignore_ascii_case(method))
    }

    /// Write policy for non-idempotent methods.
    pub fn write_policy(&self) -> WritePolicy {
        self.write_policy
    }

    /// Percentage of requests to mirror.
    pub fn sample_percent(&self) -> f64 {
        self.sample_percent
    }

    /// Sampling key.
    pub fn sample_key(&self) -> Option<&SampleKey> {
        self.sample_key.as_ref()
    }

    /// Candidate request translation.
    pub fn translation(&self) -> &RequestTranslation {
        &self.translation
    }

    /// Comparison rules (defaults merged in).
    pub fn compare_rules(&self) -> &CompareRules {
        &self.compare
    }

    /// Where ids live in this route's answers and requests.
    pub fn ids(&self) -> &[crate::flow::IdRule] {
        &self.ids
    }

    /// The route's role in an order flow.
    pub fn flow_step(&self) -> Option<crate::flow::FlowStep> {
        self.flow_step
    }

    /// The candidate's method and path for a request on this route.
    ///
    /// # Errors
    /// [`crate::Error::MissingCapture`] when the path does not supply a capture the candidate
    /// path needs (the path does not match the template).
    pub fn candidate_request(
        &self,
        method: &str,
        path: &str,
    ) -> Result<(String, String), crate::Error> {
        let method = self
            .translation
            .method
            .clone()
            .unwrap_or_else(|| method.to_ascii_uppercase());
        let Some(tpl) = &self.translation.path else {
            return Ok((method, path.to_owned()));
        };
        let captures = self.template.captures(path).unwrap_or_default();
        let query = path
            .split_once('?')
            .map(|(_, q)| q.split('#').next().unwrap_or(q));
        tpl.render_with_query(&captures, query)
            .map(|p| (method, p))
            .map_err(|name| crate::Error::MissingCapture {
                template: self.template.as_str().to_owned(),
                candidate_path: tpl.as_str().to_owned(),
                path: path.to_owned(),
                name,
            })
    }
}

/// A validated rule set. The default has no routes and the default comparison rules.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RuleSet {
    /// Which rule set this is, for what a [`crate::Comparer`] keeps between comparisons.
    identity: Identity,
    routes: Vec<RouteRule>,
    /// Route indices, most specific template first.
    order: Vec<usize>,
    defaults: CompareRules,
    redactor: Redactor,
    limits: Limits,
    streams: Vec<crate::stream::StreamRule>,
    flows: crate::flow::FlowRules,
}

/// The identity of one validated rule set (its clones share it). A
/// [`crate::Comparer`] keeps what it learnt from the rules under the identity of the rule set
/// it learnt it from, holding that identity so that no other rule set can ever be given it.
/// Not part of the rule set's value: identities always compare equal.
#[derive(Debug, Clone, Default)]
pub(crate) struct Identity(Arc<()>);

impl Identity {
    /// Whether both are the identity of one rule set (or of its clones).
    pub(crate) fn same(&self, other: &Identity) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl PartialEq for Identity {
    fn eq(&self, _: &Identity) -> bool {
        true
    }
}

/// The route a request falls under.
#[derive(Debug, Clone, Copy)]
pub struct RouteMatch<'r> {
    /// The matching rule, or `None` for a path no rule covers.
    pub rule: Option<&'r RouteRule>,
    /// The comparison rules in force.
    pub compare: &'r CompareRules,
}

impl RuleSet {
    /// Validates a raw rule set, reporting every problem at once.
    ///
    /// # Errors
    /// Every [`RuleError`] found, each with its key path.
    pub fn validate(raw: RawRuleSet) -> Result<RuleSet, Vec<RuleError>> {
        let mut errs = Vec::new();
        let defaults = compile_compare(&raw.defaults, "defaults", &mut errs);
        let mut routes = Vec::with_capacity(raw.routes.len());
        for (i, mut route) in raw.routes.into_iter().enumerate() {
            let key = format!("routes[{i}]");
            let compare_raw = route.split_compare();
            let partial = compile_compare(&compare_raw, &key, &mut errs);
            if let Some(rule) = compile_route(&route, &key, merge(&defaults, partial), &mut errs) {
                routes.push((i, rule));
            }
        }
        // Two rules for the same template and an overlapping method set would make the first
        // one win silently.
        for a in 0..routes.len() {
            for b in a + 1..routes.len() {
                let (ia, ra) = &routes[a];
                let (ib, rb) = &routes[b];
                let overlap = ra.methods.is_empty()
                    || rb.methods.is_empty()
                    || ra.methods.iter().any(|m| rb.methods.contains(m));
                if ra.template.as_str() == rb.template.as_str() && overlap {
                    errs.push(RuleError::Invalid {
                        key: format!("routes[{ib}].template"),
                        reason: format!(
                            "{:?} is already covered by routes[{ia}] for the same methods; merge them or split the methods",
                            rb.template.as_str()
                        ),
                    });
                }
            }
        }
        let limits = compile_limits(&raw.limits, &mut errs);
        let redactor = compile_redact(&raw.redact, &mut errs);
        let streams = crate::stream::compile_streams(&raw.streams, &mut errs);
        let any_step = routes.iter().any(|(_, r)| r.flow_step.is_some());
        let flows = crate::flow::compile_flows(&raw.flows, any_step, &mut errs);
        if !errs.is_empty() {
            return Err(errs);
        }
        let routes: Vec<RouteRule> = routes.into_iter().map(|(_, r)| r).collect();
        let mut order: Vec<usize> = (0..routes.len()).collect();
        order.sort_by(|&a, &b| {
            routes[b]
                .template
                .specificity()
                .cmp(&routes[a].template.specificity())
        });
        let defaults = merge(&Partial::default(), defaults);
        Ok(RuleSet {
            identity: Identity::default(),
            routes,
            order,
            defaults,
            redactor,
            limits,
            streams,
            flows,
        })
    }

    /// Route rules in the order written.
    pub fn routes(&self) -> &[RouteRule] {
        &self.routes
    }

    /// Rules for paths no route covers.
    pub fn defaults(&self) -> &CompareRules {
        &self.defaults
    }

    /// The redactor every output passes through.
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// Size caps.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Order-flow settings.
    pub fn flows(&self) -> &crate::flow::FlowRules {
        &self.flows
    }

    /// Event-stream rules.
    pub fn streams(&self) -> &[crate::stream::StreamRule] {
        &self.streams
    }

    /// The stream rule covering `path` (without a query), if any.
    pub fn stream_for(&self, path: &str) -> Option<&crate::stream::StreamRule> {
        self.streams.iter().find(|s| s.matches(path))
    }

    /// The most specific rule whose template and methods match.
    pub fn find_route(&self, method: &str, path: &str) -> Option<&RouteRule> {
        self.route_index(method, path).map(|i| &self.routes[i])
    }

    /// [`RuleSet::find_route`] as an index into [`RuleSet::routes`].
    pub(crate) fn route_index(&self, method: &str, path: &str) -> Option<usize> {
        self.order.iter().copied().find(|&i| {
            let r = &self.routes[i];
            r.allows_method(method) && r.template.matches(path)
        })
    }

    /// The route and comparison rules for a request.
    pub fn route_for(&self, method: &str, path: &str) -> RouteMatch<'_> {
        self.route_at(self.route_index(method, path))
    }

    /// The route and comparison rules of route `index` (`None`: the defaults).
    pub(crate) fn route_at(&self, index: Option<usize>) -> RouteMatch<'_> {
        match index.map(|i| &self.routes[i]) {
            Some(rule) => RouteMatch {
                rule: Some(rule),
                compare: &rule.compare,
            },
            None => RouteMatch {
                rule: None,
                compare: &self.defaults,
            },
        }
    }

    pub(crate) fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Writes the template that groups `path` into `out`: the matching rule's template, or
    /// the path with id-like segments generalized to `{id}`.
    pub fn route_template(&self, method: &str, path: &str, out: &mut String) {
        match self.find_route(method, path) {
            Some(rule) => {
                out.clear();
                out.push_str(rule.template.as_str());
            }
            None => generalize_path(path, out),
        }
    }
}

// ----------------------------------------------------------------------------------------
// Validation
// ----------------------------------------------------------------------------------------

/// Compiled comparison rules before merging with the defaults.
#[derive(Debug, Default)]
struct Partial {
    headers: Option<Vec<String>>,
    ignore_headers: Vec<String>,
    compare_status: Option<bool>,
    ignore: Vec<PathPattern>,
    noise: Vec<PathPattern>,
    noise_labels: Vec<Label>,
    labels: Option<bool>,
    tolerance: Option<Tolerance>,
    tolerances: Vec<(PathPattern, Tolerance)>,
    arrays: Vec<ArrayRule>,
    /// [both, primary, candidate]
    norms: [Normalization; 3],
    asymmetric: bool,
}

fn merge(defaults: &Partial, route: Partial) -> CompareRules {
    let base = CompareRules::default();
    let cat = |r: &[PathPattern], d: &[PathPattern]| -> Vec<PathPattern> {
        r.iter().chain(d).cloned().collect()
    };
    let side = |s: usize| -> Normalization {
        let parts = [
            &defaults.norms[0],
            &defaults.norms[s],
            &route.norms[0],
            &route.norms[s],
        ];
        Normalization {
            unwrap: parts.iter().rev().find_map(|n| n.unwrap.clone()),
            rename: parts
                .iter()
                .flat_map(|n| n.rename.iter().cloned())
                .collect(),
            map_values: parts
                .iter()
                .flat_map(|n| n.map_values.iter().cloned())
                .collect(),
            drop: parts.iter().flat_map(|n| n.drop.iter().cloned()).collect(),
            sort: parts.iter().flat_map(|n| n.sort.iter().cloned()).collect(),
        }
    };
    let mut noise_labels: Vec<Label> = route
        .noise_labels
        .iter()
        .chain(&defaults.noise_labels)
        .copied()
        .collect();
    noise_labels.sort_unstable();
    noise_labels.dedup();
    let mut ignore_headers: Vec<String> = route
        .ignore_headers
        .iter()
        .chain(&defaults.ignore_headers)
        .cloned()
        .collect();
    ignore_headers.sort();
    ignore_headers.dedup();
    CompareRules {
        headers: route
            .headers
            .clone()
            .or_else(|| defaults.headers.clone())
            .unwrap_or(base.headers),
        ignore_headers,
        compare_status: route
            .compare_status
            .or(defaults.compare_status)
            .unwrap_or(true),
        ignore: cat(&route.ignore, &defaults.ignore),
        noise: cat(&route.noise, &defaults.noise),
        noise_labels,
        labels: route.labels.or(defaults.labels).unwrap_or(true),
        tolerance: route
            .tolerance
            .or(defaults.tolerance)
            .unwrap_or(Tolerance::EXACT),
        tolerances: route
            .tolerances
            .iter()
            .chain(&defaults.tolerances)
            .cloned()
            .collect(),
        arrays: route
            .arrays
            .iter()
            .chain(&defaults.arrays)
            .cloned()
            .collect(),
        primary: side(1),
        candidate: side(2),
        symmetric: !route.asymmetric && !defaults.asymmetric,
    }
}

fn pattern(text: &str, key: String, errs: &mut Vec<RuleError>) -> Option<PathPattern> {
    PathPattern::parse(text)
        .map_err(|reason| {
            errs.push(RuleError::Pattern {
                key,
                text: text.to_owned(),
                reason,
            })
        })
        .ok()
}

fn invalid(errs: &mut Vec<RuleError>, key: String, reason: impl Into<String>) {
    errs.push(RuleError::Invalid {
        key,
        reason: reason.into(),
    });
}

fn header_names(names: &[String], key: &str, errs: &mut Vec<RuleError>) -> Vec<String> {
    let mut out = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let lower = name.trim().to_ascii_lowercase();
        let k = format!("{key}[{i}]");
        if lower.is_empty() || !lower.bytes().all(is_token_byte) {
            invalid(errs, k, format!("{name:?} is not a header name"));
        } else if NEVER_COMPARED_HEADERS.contains(&lower.as_str()) {
            invalid(
                errs,
                k,
                format!(
                    "{name:?} is never compared (hop-by-hop, or it changes with every response); remove it"
                ),
            );
        } else {
            out.push(lower);
        }
    }
    out
}

/// RFC 9110 token characters.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn tolerance(
    abs: Option<f64>,
    rel: Option<f64>,
    key: &str,
    errs: &mut Vec<RuleError>,
) -> Tolerance {
    let mut check = |v: Option<f64>, name: &str| -> f64 {
        match v {
            None => 0.0,
            Some(x) if x.is_finite() && x >= 0.0 => x,
            Some(x) => {
                invalid(
                    errs,
                    format!("{key}.{name}"),
                    format!("{x} must be a finite number >= 0"),
                );
                0.0
            }
        }
    };
    Tolerance {
        abs: check(abs, "abs"),
        rel: check(rel, "rel"),
    }
}

fn compile_compare(raw: &RawCompare, key: &str, errs: &mut Vec<RuleError>) -> Partial {
    let patterns = |list: &[String], name: &str, errs: &mut Vec<RuleError>| -> Vec<PathPattern> {
        list.iter()
            .enumerate()
            .filter_map(|(i, p)| pattern(p, format!("{key}.{name}[{i}]"), errs))
            .collect()
    };
    let headers = raw
        .headers
        .as_ref()
        .map(|h| header_names(h, &format!("{key}.headers"), errs));
    let ignore_headers = header_names(&raw.ignore_headers, &format!("{key}.ignore_headers"), errs);
    let ignore = patterns(&raw.ignore, "ignore", errs);
    let noise = patterns(&raw.noise, "noise", errs);
    let mut noise_labels = Vec::new();
    for (i, l) in raw.noise_labels.iter().enumerate() {
        match Label::parse(l) {
            Some(label) => noise_labels.push(label),
            None => invalid(
                errs,
                format!("{key}.noise_labels[{i}]"),
                format!("{l:?} is not a label; use timestamp, uuid, counter or generated-id"),
            ),
        }
    }
    let tol = raw
        .tolerance
        .as_ref()
        .map(|t| tolerance(t.abs, t.rel, &format!("{key}.tolerance"), errs));
    let mut tolerances = Vec::new();
    for (i, t) in raw.tolerances.iter().enumerate() {
        let k = format!("{key}.tolerances[{i}]");
        let tv = tolerance(t.abs, t.rel, &k, errs);
        if t.abs.is_none() && t.rel.is_none() {
            invalid(errs, k.clone(), "set abs, rel or both");
        }
        if let Some(p) = pattern(&t.path, format!("{k}.path"), errs) {
            tolerances.push((p, tv));
        }
    }
    let mut arrays = Vec::new();
    for (i, a) in raw.arrays.iter().enumerate() {
        let k = format!("{key}.arrays[{i}]");
        let at = pattern(&a.path, format!("{k}.path"), errs);
        let mode = match (a.mode.as_deref(), a.key.as_deref()) {
            (None | Some("keyed"), Some(kt)) => match KeySpec::parse(kt) {
                Ok(ks) => Some(ArrayMode::Keyed(ks)),
                Err(reason) => {
                    invalid(errs, format!("{k}.key"), format!("{kt:?}: {reason}"));
                    None
                }
            },
            (Some("keyed"), None) => {
                invalid(
                    errs,
                    format!("{k}.key"),
                    "keyed mode needs a key (a field name or a JSON Pointer)",
                );
                None
            }
            (Some("positional"), None) => Some(ArrayMode::Positional),
            (Some("unordered"), None) => Some(ArrayMode::Unordered),
            (Some(m @ ("positional" | "unordered")), Some(_)) => {
                invalid(
                    errs,
                    format!("{k}.key"),
                    format!("{m} mode takes no key; remove it or use keyed"),
                );
                None
            }
            (None, None) => {
                invalid(
                    errs,
                    k.clone(),
                    "set mode (positional, keyed, unordered) or key",
                );
                None
            }
            (Some(other), _) => {
                invalid(
                    errs,
                    format!("{k}.mode"),
                    format!("{other:?} is not a mode; use positional, keyed or unordered"),
                );
                None
            }
        };
        if let (Some(at), Some(mode)) = (at, mode) {
            arrays.push(ArrayRule { at, mode });
        }
    }
    let norms = [
        compile_normalize(&raw.normalize, &format!("{key}.normalize"), errs),
        compile_normalize(&raw.primary, &format!("{key}.primary"), errs),
        compile_normalize(&raw.candidate, &format!("{key}.candidate"), errs),
    ];
    let asymmetric = !norms[1].is_empty() || !norms[2].is_empty();
    Partial {
        headers,
        ignore_headers,
        compare_status: raw.compare_status,
        ignore,
        noise,
        noise_labels,
        labels: raw.labels,
        tolerance: tol,
        tolerances,
        arrays,
        norms,
        asymmetric,
    }
}

fn selector(text: &str, key: String, errs: &mut Vec<RuleError>) -> Option<FieldSelector> {
    FieldSelector::parse(text)
        .map_err(|reason| {
            errs.push(RuleError::Pattern {
                key,
                text: text.to_owned(),
                reason,
            })
        })
        .ok()
}

fn field_name(text: &str, key: String, errs: &mut Vec<RuleError>) -> bool {
    if text.is_empty() || text.contains('/') {
        invalid(
            errs,
            key,
            format!("{text:?} must be a plain field name (no '/')"),
        );
        false
    } else {
        true
    }
}

fn compile_renames(
    map: &BTreeMap<String, String>,
    key: &str,
    errs: &mut Vec<RuleError>,
) -> Vec<Rename> {
    let mut out = Vec::new();
    for (from, to) in map {
        let k = format!("{key}.rename.{from:?}");
        let sel = selector(from, k.clone(), errs);
        if field_name(to, k, errs)
            && let Some(from) = sel
        {
            out.push(Rename {
                from,
                to: to.clone(),
            });
        }
    }
    out
}

fn compile_drops(list: &[String], key: &str, errs: &mut Vec<RuleError>) -> Vec<FieldSelector> {
    list.iter()
        .enumerate()
        .filter_map(|(i, d)| selector(d, format!("{key}.drop[{i}]"), errs))
        .collect()
}

fn compile_normalize(raw: &RawNormalize, key: &str, errs: &mut Vec<RuleError>) -> Normalization {
    let mut n = Normalization::default();
    let mut when = Vec::new();
    for (p, v) in &raw.unwrap_if {
        match Pointer::parse(p) {
            Ok(ptr) => when.push((ptr, v.clone())),
            Err(reason) => errs.push(RuleError::Pattern {
                key: format!("{key}.unwrap_if.{p:?}"),
                text: p.clone(),
                reason,
            }),
        }
    }
    match &raw.unwrap {
        Some(u) => match Pointer::parse(u) {
            Ok(pointer) if pointer.segments().is_empty() => {
                invalid(
                    errs,
                    format!("{key}.unwrap"),
                    "unwrapping \"\" (the whole body) does nothing; name the payload, e.g. /data",
                );
            }
            Ok(pointer) => n.unwrap = Some(Unwrap { pointer, when }),
            Err(reason) => errs.push(RuleError::Pattern {
                key: format!("{key}.unwrap"),
                text: u.clone(),
                reason,
            }),
        },
        None if !raw.unwrap_if.is_empty() => {
            invalid(
                errs,
                format!("{key}.unwrap_if"),
                "unwrap_if needs unwrap (the pointer of the payload)",
            );
        }
        None => {}
    }
    n.rename = compile_renames(&raw.rename, key, errs);
    for (at, map) in &raw.map_values {
        let k = format!("{key}.map_values.{at:?}");
        if map.is_empty() {
            invalid(errs, k.clone(), "an empty value map does nothing");
        }
        if let Some(at) = selector(at, k, errs) {
            n.map_values.push(ValueMap {
                at,
                map: map.iter().map(|(f, t)| (f.clone(), t.clone())).collect(),
            });
        }
    }
    n.drop = compile_drops(&raw.drop, key, errs);
    for (at, k) in &raw.sort {
        let kk = format!("{key}.sort.{at:?}");
        let at = pattern(at, kk.clone(), errs);
        let spec = KeySpec::parse(k)
            .map_err(|reason| invalid(errs, kk, format!("{k:?}: {reason}")))
            .ok();
        if let (Some(at), Some(key)) = (at, spec) {
            n.sort.push(SortRule { at, key });
        }
    }
    n
}

fn method_token(m: &str, key: String, errs: &mut Vec<RuleError>) -> Option<String> {
    if !m.is_empty() && m.bytes().all(|b| b.is_ascii_alphabetic()) {
        Some(m.to_ascii_uppercase())
    } else {
        invalid(errs, key, format!("{m:?} is not an HTTP method"));
        None
    }
}

fn compile_route(
    raw: &RawRoute,
    key: &str,
    compare: CompareRules,
    errs: &mut Vec<RuleError>,
) -> Option<RouteRule> {
    let template = RouteTemplate::parse(&raw.template)
        .map_err(|reason| {
            errs.push(RuleError::Template {
                key: format!("{key}.template"),
                text: raw.template.clone(),
                reason,
            });
        })
        .ok();
    let mut methods: Vec<String> = raw
        .methods
        .iter()
        .enumerate()
        .filter_map(|(i, m)| method_token(m, format!("{key}.methods[{i}]"), errs))
        .collect();
    methods.sort();
    methods.dedup();
    let write_policy = match raw.write_policy.as_deref() {
        None | Some("skip") => WritePolicy::Skip,
        Some("mirror") => WritePolicy::Mirror,
        Some("mirror-marked") => WritePolicy::MirrorMarked,
        Some(other) => {
            invalid(
                errs,
                format!("{key}.write_policy"),
                format!("{other:?} is not a policy; use mirror, skip or mirror-marked"),
            );
            WritePolicy::Skip
        }
    };
    let sample_percent = match raw.sample_percent {
        None => 100.0,
        Some(p) if p.is_finite() && (0.0..=100.0).contains(&p) => p,
        Some(p) => {
            invalid(
                errs,
                format!("{key}.sample_percent"),
                format!("{p} must be between 0 and 100"),
            );
            100.0
        }
    };
    let captures: Vec<String> = template
        .as_ref()
        .map(|t| t.capture_names().map(str::to_owned).collect())
        .unwrap_or_default();
    let sample_key = raw.sample_key.as_deref().and_then(|s| {
        let k = format!("{key}.sample_key");
        let parsed = match s.split_once(':') {
            Some(("header", name)) if !name.is_empty() && name.bytes().all(is_token_byte) => {
                Some(SampleKey::Header(name.to_ascii_lowercase()))
            }
            Some(("query", name)) if !name.is_empty() => Some(SampleKey::Query(name.to_owned())),
            Some(("capture", name)) if template.is_none() || captures.iter().any(|c| c == name) => {
                Some(SampleKey::Capture(name.to_owned()))
            }
            Some(("capture", name)) => {
                invalid(errs, k, format!("the template has no capture {{{name}}}"));
                return None;
            }
            Some(("body", name)) if !name.is_empty() && !name.starts_with('/') => {
                Some(SampleKey::Body(name.to_owned()))
            }
            Some(("body", name)) if name.len() > 1 && Pointer::parse(name).is_ok() => {
                Some(SampleKey::Body(name.to_owned()))
            }
            None if s == "client-ip" => Some(SampleKey::ClientIp),
            _ => None,
        };
        if parsed.is_none() {
            invalid(
                errs,
                k,
                format!(
                    "{s:?}: use header:<name>, query:<name>, capture:<name>, body:<field or /pointer> or client-ip"
                ),
            );
        }
        parsed
    });
    let cand_method = raw
        .candidate_method
        .as_deref()
        .and_then(|m| method_token(m, format!("{key}.candidate_method"), errs));
    let cand_path = raw.candidate_path.as_deref().and_then(|p| {
        let k = format!("{key}.candidate_path");
        match PathTemplate::parse(p) {
            Ok(pt) => {
                let missing: Vec<&str> = pt
                    .capture_names()
                    .filter(|n| !captures.iter().any(|c| c == n))
                    .collect();
                if template.is_some() && !missing.is_empty() {
                    invalid(
                        errs,
                        k,
                        format!(
                            "{p:?} uses {{{}}}, which the template does not capture",
                            missing.join("}, {")
                        ),
                    );
                    None
                } else {
                    Some(pt)
                }
            }
            Err(reason) => {
                errs.push(RuleError::Template {
                    key: k,
                    text: p.to_owned(),
                    reason,
                });
                None
            }
        }
    });
    let bkey = format!("{key}.candidate_body");
    let mut body = BodyMap {
        steps: Normalization {
            rename: compile_renames(&raw.candidate_body.rename, &bkey, errs),
            drop: compile_drops(&raw.candidate_body.drop, &bkey, errs),
            ..Normalization::default()
        },
        wrap: raw
            .candidate_body
            .wrap
            .iter()
            .enumerate()
            .filter_map(|(i, w)| selector(w, format!("{bkey}.wrap[{i}]"), errs))
            .collect(),
        set: Vec::new(),
    };
    for (p, v) in &raw.candidate_body.set {
        match Pointer::parse(p) {
            Ok(ptr) => body.set.push((ptr, v.clone())),
            Err(reason) => errs.push(RuleError::Pattern {
                key: format!("{bkey}.set.{p:?}"),
                text: p.clone(),
                reason,
            }),
        }
    }
    let (ids, flow_step) =
        crate::flow::compile_ids(&raw.ids, raw.flow.as_deref(), key, &captures, errs);
    Some(RouteRule {
        template: template?,
        methods,
        write_policy,
        sample_percent,
        sample_key,
        translation: RequestTranslation {
            method: cand_method,
            path: cand_path,
            body,
        },
        compare,
        ids,
        flow_step,
    })
}

fn compile_limits(raw: &RawLimits, errs: &mut Vec<RuleError>) -> Limits {
    let d = Limits::default();
    let mut pick = |v: Option<usize>, default: usize, name: &str| match v {
        Some(0) => {
            invalid(errs, format!("limits.{name}"), "must be at least 1");
            default
        }
        Some(x) => x,
        None => default,
    };
    Limits {
        max_differences: pick(raw.max_differences, d.max_differences, "max_differences"),
        max_body_bytes: pick(raw.max_body_bytes, d.max_body_bytes, "max_body_bytes"),
        max_text_bytes: pick(raw.max_text_bytes, d.max_text_bytes, "max_text_bytes"),
        max_text_hunks: pick(raw.max_text_hunks, d.max_text_hunks, "max_text_hunks"),
        max_excerpt_bytes: pick(
            raw.max_excerpt_bytes,
            d.max_excerpt_bytes,
            "max_excerpt_bytes",
        ),
    }
}

fn compile_redact(raw: &RawRedact, errs: &mut Vec<RuleError>) -> Redactor {
    for (i, h) in raw.headers.iter().enumerate() {
        if h.trim().is_empty() || !h.trim().bytes().all(is_token_byte) {
            invalid(
                errs,
                format!("redact.headers[{i}]"),
                format!("{h:?} is not a header name"),
            );
        }
    }
    for (i, f) in raw.fields.iter().enumerate() {
        if f.trim().is_empty() {
            invalid(
                errs,
                format!("redact.fields[{i}]"),
                "a field name cannot be empty",
            );
        }
    }
    if raw.replace_defaults {
        Redactor::new(&raw.headers, &raw.fields)
    } else {
        Redactor::with_extra(&raw.headers, &raw.fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn raw(v: Value) -> RawRuleSet {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn collects_every_error_with_its_key() {
        let r = raw(json!({
            "defaults": {"headers": ["Date", "content-type"], "noise_labels": ["clock"]},
            "limits": {"max_differences": 0},
            "routes": [
                {"template": "/api/orders", "ignore": ["/ok", "/data/**x"], "tolerance": {"abs": -1.0}},
                {"template": "api/x", "arrays": [{"path": "/a", "mode": "keyed"}, {"path": "/b"}]},
                {"template": "/api/orders/{id}", "sample_key": "capture:nope", "candidate_path": "/v2/{oid}",
                 "write_policy": "sometimes", "sample_percent": 120.0, "methods": ["GET", "B@D"]},
                {"template": "/api/orders", "candidate": {"rename": {"/items/*": "x", "a": "b/c"}, "unwrap_if": {"/s": 1}}}
            ]
        }));
        let errs = RuleSet::validate(r).unwrap_err();
        let keys: Vec<&str> = errs.iter().map(RuleError::key).collect();
        for want in [
            "defaults.headers[0]",
            "defaults.noise_labels[0]",
            "limits.max_differences",
            "routes[0].ignore[1]",
            "routes[0].tolerance.abs",
            "routes[1].template",
            "routes[1].arrays[0].key",
            "routes[1].arrays[1]",
            "routes[2].sample_key",
            "routes[2].candidate_path",
            "routes[2].write_policy",
            "routes[2].sample_percent",
            "routes[2].methods[1]",
            "routes[3].candidate.rename.\"/items/*\"",
            "routes[3].candidate.rename.\"a\"",
            "routes[3].candidate.unwrap_if",
            "routes[3].template",
        ] {
            assert!(keys.contains(&want), "missing {want} in {keys:#?}");
        }
        let msg = errs
            .iter()
            .find(|e| e.key() == "routes[0].ignore[1]")
            .unwrap()
            .to_string();
        assert!(
            msg.starts_with(r#"routes[0].ignore[1]: "/data/**x" is not a valid pattern: "#),
            "{msg}"
        );
    }

    #[test]
    fn unknown_fields_are_rejected_by_serde() {
        let e = serde_json::from_value::<RawRuleSet>(
            json!({"routes": [{"template": "/", "ignroe": []}]}),
        );
        assert!(e.unwrap_err().to_string().contains("ignroe"));
    }

    #[test]
    fn merges_defaults_and_routes() {
        let r = raw(json!({
            "defaults": {"ignore": ["/**/ts_ns"], "headers": ["content-type", "x-ratelimit-limit"],
                         "normalize": {"rename": {"last_price": "price"}}},
            "routes": [
                {"template": "/api/orders/{id}", "methods": ["get"], "ignore": ["/x"], "headers": ["content-type"],
                 "candidate": {"unwrap": "/data", "unwrap_if": {"/status": "success"}},
                 "arrays": [{"path": "", "key": "client_order_id"}],
                 "candidate_method": "delete", "candidate_path": "/v2/orders/{id}", "sample_key": "capture:id",
                 "write_policy": "mirror-marked", "sample_percent": 5.0},
                {"template": "/api/orders/open"}
            ]
        }));
        let rules = RuleSet::validate(r).unwrap();
        let route = rules.find_route("GET", "/api/orders/web-1?x=1").unwrap();
        let c = route.compare_rules();
        assert_eq!(
            c.ignore.iter().map(PathPattern::as_str).collect::<Vec<_>>(),
            vec!["/x", "/**/ts_ns"]
        );
        assert_eq!(c.headers, vec!["content-type"]);
        assert!(!c.symmetric);
        assert!(c.candidate.unwrap.is_some() && c.primary.unwrap.is_none());
        assert_eq!(c.primary.rename.len(), 1);
        assert_eq!(route.write_policy(), WritePolicy::MirrorMarked);
        assert_eq!(route.sample_key(), Some(&SampleKey::Capture("id".into())));
        assert_eq!(route.sample_percent(), 5.0);
        assert_eq!(
            route.candidate_request("GET", "/api/orders/web-1").unwrap(),
            ("DELETE".to_owned(), "/v2/orders/web-1".to_owned())
        );
        // The literal template is more specific than the capture, whatever the order written.
        assert_eq!(
            rules
                .find_route("GET", "/api/orders/open")
                .unwrap()
                .template()
                .as_str(),
            "/api/orders/open"
        );
        // Method filter.
        assert_eq!(
            rules
                .find_route("POST", "/api/orders/web-1")
                .map(|r| r.template().as_str()),
            None
        );
        let mut out = String::new();
        rules.route_template("POST", "/api/orders/veloz_1_2", &mut out);
        assert_eq!(out, "/api/orders/{id}");
        assert_eq!(
            rules.defaults().headers,
            vec!["content-type", "x-ratelimit-limit"]
        );
        assert!(rules.defaults().symmetric);
    }

    #[test]
    fn duplicate_routes_and_redact_config() {
        let r = raw(json!({
            "redact": {"fields": ["pin"], "headers": ["x-session"]},
            "routes": [{"template": "/a", "methods": ["GET"]}, {"template": "/a", "methods": ["GET", "POST"]},
                       {"template": "/a", "methods": ["DELETE"]}]
        }));
        let errs = RuleSet::validate(r).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].key(), "routes[1].template");
        let r = raw(json!({"redact": {"fields": ["pin"], "headers": ["x-session"]}}));
        let rules = RuleSet::validate(r).unwrap();
        assert!(rules.redactor().is_secret_field("pin"));
        assert!(rules.redactor().is_secret_field("password"));
        assert!(rules.redactor().is_secret_header("X-Session"));
        let r = raw(json!({"redact": {"fields": ["pin"], "replace_defaults": true}}));
        assert!(
            !RuleSet::validate(r)
                .unwrap()
                .redactor()
                .is_secret_field("password")
        );
    }

    #[test]
    fn body_sample_keys() {
        let r = raw(json!({"routes": [
            {"template": "/a", "sample_key": "body:client_order_id"},
            {"template": "/b", "sample_key": "body:/order/id"},
            {"template": "/c", "sample_key": "body:"}
        ]}));
        let errs = RuleSet::validate(r).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].key(), "routes[2].sample_key");
        let r = raw(json!({"routes": [{"template": "/a", "sample_key": "body:/order/id"}]}));
        let rules = RuleSet::validate(r).unwrap();
        assert_eq!(
            rules.routes()[0].sample_key(),
            Some(&SampleKey::Body("/order/id".into()))
        );
    }

    #[test]
    fn candidate_path_from_a_query_parameter() {
        let r = raw(
            json!({"routes": [{"template": "/api/auth/keys", "methods": ["DELETE"],
            "candidate_path": "/api/auth/keys/{?key_id}"}]}),
        );
        let rules = RuleSet::validate(r).unwrap();
        let route = rules
            .find_route("DELETE", "/api/auth/keys?key_id=vk_1")
            .unwrap();
        assert_eq!(
            route
                .candidate_request("DELETE", "/api/auth/keys?key_id=vk_1")
                .unwrap(),
            ("DELETE".to_owned(), "/api/auth/keys/vk_1".to_owned())
        );
        let err = route
            .candidate_request("DELETE", "/api/auth/keys")
            .unwrap_err();
        assert!(err.to_string().contains("{?key_id}"), "{err}");
    }

    #[test]
    fn candidate_body_wraps() {
        let r = raw(json!({"routes": [{"template": "/api/cancel",
            "candidate_body": {"rename": {"client_order_id": "order_ids"}, "wrap": ["order_ids", "/items/*"]}}]}));
        let errs = RuleSet::validate(r).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].key(), "routes[0].candidate_body.wrap[1]");
        let r = raw(json!({"routes": [{"template": "/api/cancel",
            "candidate_body": {"rename": {"client_order_id": "order_ids"}, "wrap": ["order_ids"]}}]}));
        let rules = RuleSet::validate(r).unwrap();
        let mut body = json!({"client_order_id": "web-1"});
        rules.routes()[0].translation().body.apply(&mut body);
        assert_eq!(body, json!({"order_ids": ["web-1"]}));
    }

    #[test]
    fn tolerance_math() {
        let t = Tolerance { abs: 0.5, rel: 0.0 };
        assert!(t.accepts(100.0, 100.5));
        assert!(!t.accepts(100.0, 100.6));
        let t = Tolerance {
            abs: 0.0,
            rel: 0.01,
        };
        assert!(t.accepts(100.0, 101.0));
        assert!(!t.accepts(100.0, 102.0));
        assert!(Tolerance::EXACT.accepts(1.0, 1.0));
        assert!(!Tolerance::EXACT.accepts(1.0, 1.0000001));
    }
}
