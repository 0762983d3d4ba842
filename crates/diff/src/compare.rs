//! The comparison engine: one exchange in, typed differences out.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use similar::{Algorithm, DiffTag, capture_diff_slices};

use crate::doc::{Arena, Doc, Entry, NO_SHAPE, Node, SMALL_OBJECT, relifetime, same_text};
use crate::labels::{Label, label_pair};
use crate::normalize::KeySpec;
use crate::pointer::{PathPattern, Seg, escape_into, push_usize, write_pointer};
use crate::redact::Redactor;
use crate::route::generalize_path;
use crate::rules::{ArrayMode, CompareRules, Identity, Limits, RuleSet};
use crate::text::{cap, diff_text};
use crate::value::Fnv;

/// One HTTP response, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct Response<'a> {
    /// Status code.
    pub status: u16,
    /// Headers in wire order; names in any case; repeated names allowed.
    pub headers: &'a [(&'a str, &'a [u8])],
    /// The whole body.
    pub body: &'a [u8],
}

/// One request and the two answers to it.
#[derive(Debug, Clone, Copy)]
pub struct Exchange<'a> {
    /// Request method.
    pub method: &'a str,
    /// Concrete request path (a query is allowed and ignored for grouping).
    pub path: &'a str,
    /// Request body (not used by the comparison today; carried for rules that may need it).
    pub request_body: &'a [u8],
    /// The primary's answer.
    pub primary: Response<'a>,
    /// The candidate's answer (or the secondary primary's, when learning noise).
    pub candidate: Response<'a>,
}

/// What kind of difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Status codes differ (path `/status`).
    Status,
    /// A compared header differs or is absent on one side (path `/headers/<lower-name>`).
    Header,
    /// Present in the primary only (`candidate` is null).
    Missing,
    /// Present in the candidate only (`primary` is null).
    Extra,
    /// Different JSON types (`"42000"` vs `42000`, JSON vs text).
    Type,
    /// Same type, different value.
    Value,
    /// An array holds the same elements in a different order.
    Order,
    /// Bodies too large or binary: compared by length and digest only.
    Size,
    /// Non-JSON bodies differ by lines.
    Text,
}

impl Kind {
    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Status => "status",
            Kind::Header => "header",
            Kind::Missing => "missing",
            Kind::Extra => "extra",
            Kind::Type => "type",
            Kind::Value => "value",
            Kind::Order => "order",
            Kind::Size => "size",
            Kind::Text => "text",
        }
    }
}

/// How a difference counts. Noise and ignored differences are kept and counted as such —
/// never as matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    /// A real discrepancy.
    Regression,
    /// Non-determinism: configured noise, a noise label, or learned from a second primary.
    Noise,
    /// A configured ignore rule covers it.
    Ignored,
}

/// Groups alike differences: a stable FNV-1a hash of method, route template, the path with
/// array indices generalized to `*`, and the kind. Serialized as 16 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Signature(pub u64);

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl Serialize for Signature {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        u64::from_str_radix(&text, 16)
            .map(Signature)
            .map_err(serde::de::Error::custom)
    }
}

/// One difference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Difference {
    /// JSON Pointer into the normalized primary body (`""` = the whole body), or
    /// `/headers/<lower-name>`, or `/status`. Extras in arrays use the candidate's index.
    pub path: String,
    /// What differs.
    pub kind: Kind,
    /// The primary's value (redacted), null when absent.
    pub primary: Value,
    /// The candidate's value (redacted), null when absent.
    pub candidate: Value,
    /// How it counts.
    pub class: Class,
    /// What the values look like, if generated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<Label>,
    /// Groups alike differences.
    pub signature: Signature,
    /// `path` with array indices as `*` (what the signature hashes).
    pub pattern: String,
    /// Extra context: the key of a keyed array element (`client_order_id="web-1"`), a unified
    /// text diff, or why a body was compared by size only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Difference {
    /// An empty difference to fill in.
    fn blank() -> Self {
        Self {
            path: String::new(),
            kind: Kind::Value,
            primary: Value::Null,
            candidate: Value::Null,
            class: Class::Regression,
            label: None,
            signature: Signature(0),
            pattern: String::new(),
            detail: None,
        }
    }
}

/// The worst class present in a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// No differences at all.
    Match,
    /// Only ignored differences.
    Ignored,
    /// Noise (and maybe ignored) differences, no regression.
    Noise,
    /// At least one regression.
    Regression,
}

/// The result of comparing one exchange.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Comparison {
    /// Request method (upper-case).
    pub method: String,
    /// Route template grouping the request.
    pub route: String,
    /// Differences in a stable order: status, headers, then the body walk.
    pub differences: Vec<Difference>,
    /// More than `limits.max_differences` were found; the rest were not reported.
    pub truncated: bool,
}

impl Comparison {
    /// Empties the comparison, keeping its allocations.
    pub fn clear(&mut self) {
        self.method.clear();
        self.route.clear();
        self.differences.clear();
        self.truncated = false;
    }

    /// How many differences have this class.
    pub fn count(&self, class: Class) -> usize {
        self.differences.iter().filter(|d| d.class == class).count()
    }

    /// The worst class present.
    pub fn outcome(&self) -> Outcome {
        let has = |c: Class| self.differences.iter().any(|d| d.class == c);
        if has(Class::Regression) {
            Outcome::Regression
        } else if has(Class::Noise) {
            Outcome::Noise
        } else if has(Class::Ignored) {
            Outcome::Ignored
        } else {
            Outcome::Match
        }
    }

    /// The regressions.
    pub fn regressions(&self) -> impl Iterator<Item = &Difference> {
        self.differences
            .iter()
            .filter(|d| d.class == Class::Regression)
    }
}

/// Compares one exchange (allocating a fresh [`Comparer`]; prefer a reused one on hot paths).
pub fn compare(rules: &RuleSet, exchange: &Exchange<'_>) -> Comparison {
    let mut out = Comparison::default();
    Comparer::new().compare(rules, exchange, &mut out);
    out
}

/// Reusable comparison state: one per worker, so the hot path keeps its buffers.
#[derive(Debug, Default)]
pub struct Comparer {
    path: String,
    pattern: String,
    /// Document storage for the primary and the candidate body.
    arenas: [Arena; 2],
    /// Differences beyond what the last comparison needed, recycled.
    pool: Vec<Difference>,
    /// Signatures computed lately, by route hash, kind and pattern: alike differences recur
    /// (the same field in every element, the same route request after request), and FNV-1a
    /// goes one byte per multiply.
    signatures: Vec<(u64, Kind, String, Signature)>,
    /// Buffers of keyed-array matching.
    keyed: KeyedScratch,
    /// Buffers of the walk.
    walk: WalkScratch,
    /// What body differences learnt from their path shapes, under one rule set.
    sites: Sites,
}

/// The [`Site`]s learnt under one rule set. A comparison under another rule set empties
/// them first: the owner's identity is held here, so no other rule set can ever have it.
#[derive(Debug, Default)]
struct Sites {
    owner: Option<Identity>,
    /// Live sites (`..live`), then spare slots.
    list: Vec<Site>,
    live: usize,
    /// The slot the next new site replaces once [`MAX_SITES`] are live.
    next: usize,
}

/// What the shape of a body difference's path decides on its own, for one route of one
/// rule set and one signature base (method and route template) — pattern, signature, class
/// from the ignore and noise patterns, secrecy — kept for the alike differences that follow
/// (the same field in every element of a list, the same route request after request).
#[derive(Debug)]
struct Site {
    /// Index of the route in the rule set (`usize::MAX`: the defaults).
    route: usize,
    /// The signature base (FNV-1a state after method and route template): equal bases give
    /// equal signatures for equal patterns and kinds.
    base: u64,
    kind: Kind,
    /// Per path segment: [`INDEX_SEG`] for an array index, else the key's length; the keys
    /// themselves are in `pattern`, verbatim (a path whose keys need escaping is not kept).
    segs: Vec<u32>,
    pattern: String,
    signature: Signature,
    /// The class the ignore and noise patterns give (used only when no pattern names an
    /// array index, so the class cannot depend on the indices).
    class: Class,
    /// A key on the path is a secret field.
    secret: bool,
}

/// [`Site::segs`] for an array index (no key is 4 GiB long).
const INDEX_SEG: u32 = u32::MAX;

/// How many sites a comparer keeps: beyond that, a new site replaces an old one.
const MAX_SITES: usize = 32;

impl Site {
    /// Whether this site is for `route`, `base` and `kind`, and `path` has exactly its shape:
    /// the same keys at the same depths and array indices (any) at the same depths.
    fn matches(&self, route: usize, base: u64, kind: Kind, path: &[Seg<'_>]) -> bool {
        if self.base != base
            || self.kind != kind
            || self.route != route
            || self.segs.len() != path.len()
        {
            return false;
        }
        let mut at = 0;
        for (&len, seg) in self.segs.iter().zip(path) {
            match *seg {
                Seg::Index(_) if len == INDEX_SEG => at += 2,
                Seg::Key(k) if len as usize == k.len() => {
                    let end = at + 1 + k.len();
                    match self.pattern.get(at + 1..end) {
                        Some(text) if same_text(text, k) => at = end,
                        _ => return false,
                    }
                }
                _ => return false,
            }
        }
        true
    }

    /// Writes the JSON Pointer of `path`, a path of this site's shape, into `out`: the
    /// pattern's runs of verbatim keys with the indices written in.
    fn write_path(&self, path: &[Seg<'_>], out: &mut String) {
        out.clear();
        let (mut copied, mut at) = (0, 0);
        for seg in path {
            match *seg {
                Seg::Key(k) => at += 1 + k.len(),
                Seg::Index(i) => {
                    out.push_str(self.pattern.get(copied..at).unwrap_or_default());
                    out.push('/');
                    push_usize(out, i);
                    at += 2;
                    copied = at;
                }
            }
        }
        out.push_str(self.pattern.get(copied..).unwrap_or_default());
    }
}

/// Reused buffers of [`Walk::keyed`] (a nested keyed array finds them taken and allocates).
#[derive(Debug, Default)]
struct KeyedScratch {
    ka: Vec<Option<u32>>,
    kb: Vec<Option<u32>>,
    index: Vec<(u64, usize)>,
    used: Vec<bool>,
    keyless_a: Vec<usize>,
    keyless_b: Vec<usize>,
}

/// Reused buffers of [`Walk`], kept between comparisons at a `'static` placeholder
/// lifetime (emptied and retyped, see [`relifetime`]).
#[derive(Debug, Default)]
struct WalkScratch {
    stack: Vec<Seg<'static>>,
    notes: Vec<Note<'static, 'static>>,
    detail: String,
}

/// How many signatures [`Comparer`] remembers.
const SIGNATURE_CACHE: usize = 32;

impl Comparer {
    /// A comparer with empty buffers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Compares `exchange` under `rules` into `out` (cleared first).
    pub fn compare(&mut self, rules: &RuleSet, exchange: &Exchange<'_>, out: &mut Comparison) {
        // The previous answer's differences stay where they are and are overwritten in place
        // (every field), so reporting alike differences neither allocates nor moves them.
        out.method.clear();
        out.route.clear();
        out.truncated = false;
        out.method
            .extend(exchange.method.chars().map(|c| c.to_ascii_uppercase()));
        let route_index = rules.route_index(exchange.method, exchange.path);
        let route = rules.route_at(route_index);
        if !self
            .sites
            .owner
            .as_ref()
            .is_some_and(|o| o.same(rules.identity()))
        {
            self.sites.owner = Some(rules.identity().clone());
            self.sites.live = 0;
            self.sites.next = 0;
        }
        match route.rule {
            Some(rule) => out.route.push_str(rule.template().as_str()),
            None => generalize_path(exchange.path, &mut out.route),
        }
        let mut sig = Fnv::new();
        sig.write(out.method.as_bytes())
            .sep()
            .write(out.route.as_bytes())
            .sep();
        let mut sink = Sink {
            rules: route.compare,
            redactor: rules.redactor(),
            limits: rules.limits(),
            sig_base: sig,
            diffs: &mut out.differences,
            used: 0,
            truncated: false,
            path: &mut self.path,
            pattern: &mut self.pattern,
            arenas: &mut self.arenas,
            pool: &mut self.pool,
            signatures: &mut self.signatures,
            keyed: &mut self.keyed,
            walk: &mut self.walk,
            sites: &mut self.sites,
            route_key: route_index.unwrap_or(usize::MAX),
            shape_classes: !route
                .compare
                .ignore
                .iter()
                .chain(&route.compare.noise)
                .any(PathPattern::names_an_index),
        };
        sink.status(exchange.primary.status, exchange.candidate.status);
        sink.headers(exchange.primary.headers, exchange.candidate.headers);
        sink.body(exchange.primary.body, exchange.candidate.body);
        let (used, truncated) = (sink.used, sink.truncated);
        out.truncated = truncated;
        // The previous answer's surplus becomes spares (bounded by `max_differences`).
        self.pool.extend(out.differences.drain(used..));
    }
}

/// Where differences go: classifies, labels, redacts and signs each one.
struct Sink<'r, 'o> {
    rules: &'r CompareRules,
    redactor: &'r Redactor,
    limits: &'r Limits,
    sig_base: Fnv,
    /// This comparison's differences (`..used`), then the previous one's, to overwrite.
    diffs: &'o mut Vec<Difference>,
    used: usize,
    truncated: bool,
    path: &'o mut String,
    pattern: &'o mut String,
    arenas: &'o mut [Arena; 2],
    pool: &'o mut Vec<Difference>,
    signatures: &'o mut Vec<(u64, Kind, String, Signature)>,
    keyed: &'o mut KeyedScratch,
    walk: &'o mut WalkScratch,
    sites: &'o mut Sites,
    /// Index of the route in the rule set (`usize::MAX`: the defaults).
    route_key: usize,
    /// No ignore or noise pattern names an array index, so a site's class holds for every
    /// path of its shape.
    shape_classes: bool,
}

/// A parsed body.
enum Body<'b> {
    Empty,
    Json(Doc<'b>),
    Text(&'b str),
    Binary(&'b [u8]),
}

fn parse_body<'b>(bytes: &'b [u8], arena: &mut Arena) -> Body<'b> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Body::Empty;
    }
    if let Some(doc) = Doc::parse_in(bytes, arena) {
        return Body::Json(doc);
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => Body::Text(text),
        Err(_) => Body::Binary(bytes),
    }
}

/// Length and a short digest of a body compared by size only.
fn size_value(bytes: &[u8]) -> Value {
    let digest = Sha256::digest(bytes);
    json!({"bytes": bytes.len(), "sha256": hex::encode(&digest[..4])})
}

/// Fast check without allocating: both sides carry the header once with the same value, or
/// neither carries it. Anything else goes through [`header_value`].
fn headers_equal(p: &[(&str, &[u8])], c: &[(&str, &[u8])], name: &str) -> bool {
    matches!((single_header(p, name), single_header(c, name)), (Some(a), Some(b)) if a == b)
}

/// `name.trim()`, without the Unicode scan from both ends for the usual name that starts
/// and ends with a visible ASCII character (then no whitespace can be trimmed: a multi-byte
/// character never starts or ends with an ASCII byte).
fn trim_name(name: &str) -> &str {
    match (name.as_bytes().first(), name.as_bytes().last()) {
        (Some(a), Some(b)) if a.is_ascii_graphic() && b.is_ascii_graphic() => name,
        _ => name.trim(),
    }
}

/// `Some(None)`: absent; `Some(Some(v))`: present once; `None`: repeated.
fn single_header<'h>(headers: &[(&str, &'h [u8])], name: &str) -> Option<Option<&'h [u8]>> {
    let mut found = None;
    for (n, v) in headers {
        if trim_name(n).eq_ignore_ascii_case(name) {
            if found.is_some() {
                return None;
            }
            found = Some(v.trim_ascii());
        }
    }
    Some(found)
}

/// Header values joined in wire order (`a, b` for a repeated header); `None` when absent.
fn header_value(headers: &[(&str, &[u8])], name: &str) -> Option<String> {
    let mut out: Option<String> = None;
    for (n, v) in headers {
        if trim_name(n).eq_ignore_ascii_case(name) {
            let text = String::from_utf8_lossy(v);
            match &mut out {
                Some(s) => {
                    s.push_str(", ");
                    s.push_str(text.trim());
                }
                None => out = Some(text.trim().to_owned()),
            }
        }
    }
    out
}

impl Sink<'_, '_> {
    fn room(&mut self) -> bool {
        if self.used >= self.limits.max_differences {
            self.truncated = true;
            false
        } else {
            true
        }
    }

    /// The signature of a difference of `kind` at `pattern`, from the cache when there.
    fn signature(&mut self, pattern: &str, kind: Kind) -> Signature {
        let base = self.sig_base.finish();
        if let Some(&(.., sig)) = self
            .signatures
            .iter()
            .find(|(b, k, p, _)| *b == base && *k == kind && same_text(p, pattern))
        {
            return sig;
        }
        let mut h = self.sig_base;
        h.write(pattern.as_bytes())
            .sep()
            .write(kind.as_str().as_bytes());
        let sig = Signature(h.finish());
        if self.signatures.len() < SIGNATURE_CACHE {
            self.signatures.push((base, kind, pattern.to_owned(), sig));
        } else {
            // Full: overwrite an entry picked by the signature's low bits (cheap, and
            // spreads replacements).
            let slot = &mut self.signatures[(sig.0 as usize) % SIGNATURE_CACHE];
            slot.0 = base;
            slot.1 = kind;
            slot.2.clear();
            slot.2.push_str(pattern);
            slot.3 = sig;
        }
        sig
    }

    /// The index of the next difference to fill in: the previous comparison's difference at
    /// that place when there is one (its strings keep their capacity, so a steady stream of
    /// alike answers reports without allocating), else a spare.
    fn next_slot(&mut self) -> usize {
        if self.used == self.diffs.len() {
            let d = self.pool.pop().unwrap_or_else(Difference::blank);
            self.diffs.push(d);
        }
        self.used += 1;
        self.used - 1
    }

    /// Pushes a difference whose path and pattern are in `self.path` / `self.pattern`.
    fn push(
        &mut self,
        kind: Kind,
        class: Class,
        label: Option<Label>,
        primary: Value,
        candidate: Value,
        detail: Option<&str>,
    ) {
        let i = self.next_slot();
        let d = &mut self.diffs[i];
        d.path.clear();
        d.path.push_str(self.path);
        d.pattern.clear();
        d.pattern.push_str(self.pattern);
        self.fill(i, kind, class, label, primary, candidate, detail);
    }

    /// Completes difference `i` (its `path` and `pattern` written).
    #[allow(clippy::too_many_arguments)]
    fn fill(
        &mut self,
        i: usize,
        kind: Kind,
        class: Class,
        label: Option<Label>,
        primary: Value,
        candidate: Value,
        detail: Option<&str>,
    ) {
        let pattern = std::mem::take(&mut self.diffs[i].pattern);
        let signature = self.signature(&pattern, kind);
        let d = &mut self.diffs[i];
        d.pattern = pattern;
        d.kind = kind;
        d.primary = primary;
        d.candidate = candidate;
        d.class = class;
        d.label = label;
        d.signature = signature;
        set_detail(&mut d.detail, detail);
    }

    fn status(&mut self, p: u16, c: u16) {
        if !self.rules.compare_status || p == c || !self.room() {
            return;
        }
        self.path.clear();
        self.path.push_str("/status");
        self.pattern.clear();
        self.pattern.push_str("/status");
        self.push(
            Kind::Status,
            Class::Regression,
            None,
            json!(p),
            json!(c),
            None,
        );
    }

    fn headers(&mut self, p: &[(&str, &[u8])], c: &[(&str, &[u8])]) {
        let rules = self.rules;
        for name in &rules.headers {
            if headers_equal(p, c, name) {
                continue;
            }
            let pv = header_value(p, name);
            let cv = header_value(c, name);
            if pv == cv {
                continue;
            }
            if !self.room() {
                return;
            }
            let class = if rules.ignore_headers.iter().any(|h| h == name) {
                Class::Ignored
            } else {
                Class::Regression
            };
            let label = match (&pv, &cv) {
                (Some(a), Some(b)) if rules.labels => match (a.parse::<i64>(), b.parse::<i64>()) {
                    (Ok(x), Ok(y)) => label_pair(Some(name), &json!(x), &json!(y)),
                    _ => label_pair(
                        Some(name),
                        &Value::String(a.clone()),
                        &Value::String(b.clone()),
                    ),
                },
                _ => None,
            };
            let class = self.label_class(class, label);
            let redact = |v: Option<String>| match v {
                None => Value::Null,
                Some(s) => Value::String(
                    self.redactor
                        .redact_header_value(name, s.as_bytes())
                        .unwrap_or(s),
                ),
            };
            let (pj, cj) = (redact(pv), redact(cv));
            self.path.clear();
            self.path.push_str("/headers/");
            escape_into(self.path, name);
            self.pattern.clear();
            self.pattern.push_str(self.path);
            self.push(Kind::Header, class, label, pj, cj, None);
        }
    }

    fn label_class(&self, class: Class, label: Option<Label>) -> Class {
        match label {
            Some(l) if class == Class::Regression && self.rules.noise_labels.contains(&l) => {
                Class::Noise
            }
            _ => class,
        }
    }

    fn body_class(&self, path: &[Seg<'_>]) -> Class {
        if self.rules.ignore.iter().any(|p| p.matches_prefix(path)) {
            Class::Ignored
        } else if self.rules.noise.iter().any(|p| p.matches_prefix(path)) {
            Class::Noise
        } else {
            Class::Regression
        }
    }

    /// A difference inside a JSON body (or at its root).
    fn at(
        &mut self,
        path: &[Seg<'_>],
        kind: Kind,
        p: Option<Value>,
        c: Option<Value>,
        detail: Option<&str>,
    ) {
        let i = self.next_slot();
        let (class, secret, signature) = self.site(i, path, kind);
        let label = match (kind, &p, &c) {
            (Kind::Value, Some(p), Some(c)) if self.rules.labels => {
                label_pair(last_key(path), p, c)
            }
            _ => None,
        };
        let class = self.label_class(class, label);
        let prepare = |v: Option<Value>| {
            let mut v = v.unwrap_or(Value::Null);
            if secret {
                self.redactor.tokenize(&mut v);
            } else if v.is_object() || v.is_array() {
                // Only containers hold fields to redact.
                self.redactor.redact_value(&mut v);
            }
            v
        };
        let (pv, cv) = (prepare(p), prepare(c));
        let d = &mut self.diffs[i];
        d.kind = kind;
        d.primary = pv;
        d.candidate = cv;
        d.class = class;
        d.label = label;
        d.signature = signature;
        set_detail(&mut d.detail, detail);
    }

    /// Writes the path and pattern of a body difference at `path` into difference `i` and
    /// returns its class (before labels), whether a key on the path is secret, and its
    /// signature: from a site when an alike difference came before (in this comparison or an
    /// earlier one under the same rule set), else computed (and kept).
    fn site(&mut self, i: usize, path: &[Seg<'_>], kind: Kind) -> (Class, bool, Signature) {
        let (route, base) = (self.route_key, self.sig_base.finish());
        if let Some(site) = self.sites.list[..self.sites.live]
            .iter()
            .find(|s| s.matches(route, base, kind, path))
        {
            let d = &mut self.diffs[i];
            d.pattern.clear();
            d.pattern.push_str(&site.pattern);
            site.write_path(path, &mut d.path);
            let class = if self.shape_classes {
                site.class
            } else {
                self.body_class(path)
            };
            return (class, site.secret, site.signature);
        }
        let mut pattern = std::mem::take(&mut self.diffs[i].pattern);
        write_pointer(&mut pattern, path, true);
        let class = self.body_class(path);
        let secret = path
            .iter()
            .any(|s| matches!(s, Seg::Key(k) if self.redactor.is_secret_field(k)));
        let signature = self.signature(&pattern, kind);
        // Escaping only lengthens a key, so an unchanged length means every key is verbatim.
        let verbatim = pattern.len()
            == path
                .iter()
                .map(|s| match s {
                    Seg::Key(k) => 1 + k.len(),
                    Seg::Index(_) => 2,
                })
                .sum::<usize>();
        if verbatim {
            let sites = &mut *self.sites;
            let slot = if sites.live < MAX_SITES {
                sites.live += 1;
                sites.live - 1
            } else {
                sites.next = (sites.next + 1) % MAX_SITES;
                sites.next
            };
            if slot == sites.list.len() {
                sites.list.push(Site {
                    route,
                    base,
                    kind,
                    segs: Vec::new(),
                    pattern: String::new(),
                    signature,
                    class,
                    secret,
                });
            }
            let site = &mut sites.list[slot];
            site.route = route;
            site.base = base;
            site.kind = kind;
            site.segs.clear();
            site.segs.extend(path.iter().map(|s| match s {
                Seg::Key(k) => u32::try_from(k.len()).unwrap_or(INDEX_SEG - 1),
                Seg::Index(_) => INDEX_SEG,
            }));
            site.pattern.clear();
            site.pattern.push_str(&pattern);
            site.signature = signature;
            site.class = class;
            site.secret = secret;
        }
        let d = &mut self.diffs[i];
        d.pattern = pattern;
        write_pointer(&mut d.path, path, false);
        (class, secret, signature)
    }

    /// A whole-body difference that is not a JSON walk (text, size, JSON vs text).
    fn whole(&mut self, kind: Kind, p: Value, c: Value, detail: Option<&str>) {
        if !self.room() {
            return;
        }
        let class = self.body_class(&[]);
        self.path.clear();
        self.pattern.clear();
        self.push(kind, class, None, p, c, detail);
    }

    fn excerpt(&self, text: &str) -> Value {
        Value::String(
            self.redactor
                .redact_text(cap(text, self.limits.max_excerpt_bytes))
                .into_owned(),
        )
    }

    fn side_value(&self, body: &Body<'_>) -> Value {
        match body {
            Body::Empty => Value::Null,
            Body::Json(doc) => {
                let mut v = doc.to_value(doc.root());
                self.redactor.redact_value(&mut v);
                v
            }
            Body::Text(t) => self.excerpt(t),
            Body::Binary(b) => size_value(b),
        }
    }

    fn body(&mut self, pb: &[u8], cb: &[u8]) {
        let rules = self.rules;
        if rules.symmetric && pb == cb {
            // Identical bytes normalize identically, so they cannot differ.
            return;
        }
        let max = self.limits.max_body_bytes;
        if pb.len() > max || cb.len() > max {
            if pb != cb {
                let detail = format!("a body is over {max} bytes; compared by length and digest");
                self.whole(Kind::Size, size_value(pb), size_value(cb), Some(&detail));
            }
            return;
        }
        let [pa, ca] = &mut *self.arenas;
        let mut p = parse_body(pb, pa);
        let mut c = parse_body(cb, ca);
        if let Body::Json(doc) = &mut p {
            doc.normalize(&rules.primary);
        }
        if let Body::Json(doc) = &mut c {
            doc.normalize(&rules.candidate);
        }
        self.bodies(&p, &c, pb, cb);
        if let Body::Json(doc) = p {
            doc.recycle(&mut self.arenas[0]);
        }
        if let Body::Json(doc) = c {
            doc.recycle(&mut self.arenas[1]);
        }
    }

    fn bodies(&mut self, p: &Body<'_>, c: &Body<'_>, pb: &[u8], cb: &[u8]) {
        match (p, c) {
            (Body::Json(pd), Body::Json(cd)) => {
                let scratch = std::mem::take(self.walk);
                let mut walk = Walk {
                    sink: self,
                    p: pd,
                    c: cd,
                    stack: relifetime(scratch.stack),
                    notes: relifetime(scratch.notes),
                    detail_ready: false,
                    detail: scratch.detail,
                    matching: Matching {
                        shapes: (NO_SHAPE, NO_SHAPE),
                        found: [NO_MATCH; SMALL_OBJECT],
                        matched: 0,
                    },
                };
                walk.value(pd.root(), cd.root());
                let Walk {
                    stack,
                    notes,
                    detail,
                    ..
                } = walk;
                *self.walk = WalkScratch {
                    stack: relifetime(stack),
                    notes: relifetime(notes),
                    detail,
                };
            }
            (Body::Empty, Body::Empty) => {}
            (Body::Json(_), Body::Empty) => {
                let v = self.side_value(p);
                self.whole(Kind::Missing, v, Value::Null, None);
            }
            (Body::Empty, Body::Json(_)) => {
                let v = self.side_value(c);
                self.whole(Kind::Extra, Value::Null, v, None);
            }
            (Body::Json(_), _) | (_, Body::Json(_)) => {
                let (pv, cv) = (self.side_value(p), self.side_value(c));
                let detail = format!(
                    "primary body is {}, candidate body is {}",
                    describe(p),
                    describe(c)
                );
                self.whole(Kind::Type, pv, cv, Some(&detail));
            }
            (Body::Binary(_), _) | (_, Body::Binary(_)) => {
                if pb != cb {
                    let detail = "binary body; compared by length and digest".to_owned();
                    self.whole(Kind::Size, size_value(pb), size_value(cb), Some(&detail));
                }
            }
            (Body::Text(_) | Body::Empty, Body::Text(_) | Body::Empty) => {
                let pt = if let Body::Text(t) = p { *t } else { "" };
                let ct = if let Body::Text(t) = c { *t } else { "" };
                match diff_text(pt, ct, self.limits) {
                    Some(out) => {
                        let removed = self.excerpt(&out.removed);
                        let added = self.excerpt(&out.added);
                        let unified = self.redactor.redact_text(&out.unified).into_owned();
                        self.whole(Kind::Text, removed, added, Some(&unified));
                    }
                    None if pt != ct => {
                        let detail = format!(
                            "the first {} bytes are equal; compared by length and digest after that",
                            self.limits.max_text_bytes
                        );
                        self.whole(Kind::Size, size_value(pb), size_value(cb), Some(&detail));
                    }
                    None => {}
                }
            }
        }
    }
}

fn describe(body: &Body<'_>) -> String {
    match body {
        Body::Empty => "empty".to_owned(),
        Body::Json(doc) => {
            let t = match doc.node(doc.root()) {
                Node::Null => "null",
                Node::Bool(_) => "boolean",
                Node::Num(_) => "number",
                Node::Str(_) => "string",
                Node::Arr { .. } => "array",
                Node::Obj { .. } => "object",
            };
            format!("JSON {t}")
        }
        Body::Text(_) => "text".to_owned(),
        Body::Binary(_) => "binary".to_owned(),
    }
}

/// Sets a difference's `detail`, reusing the buffer it had.
fn set_detail(slot: &mut Option<String>, detail: Option<&str>) {
    match (detail, slot) {
        (None, slot) => *slot = None,
        (Some(text), Some(buf)) => {
            buf.clear();
            buf.push_str(text);
        }
        (Some(text), slot) => *slot = Some(text.to_owned()),
    }
}

/// The nearest object key on the path (`/ids/3` → `ids`).
fn last_key<'p>(path: &[Seg<'p>]) -> Option<&'p str> {
    path.iter().rev().find_map(|s| match *s {
        Seg::Key(k) => Some(k),
        Seg::Index(_) => None,
    })
}

/// The note added to differences inside a keyed array element: which key, and where its
/// value is.
#[derive(Debug)]
struct Note<'v, 'd> {
    key: &'v KeySpec,
    /// The key's field name is a secret field.
    secret: bool,
    doc: &'v Doc<'d>,
    node: u32,
}

/// The recursive walk over two normalized documents.
struct Walk<'s, 'r, 'o, 'v, 'd> {
    sink: &'s mut Sink<'r, 'o>,
    p: &'v Doc<'d>,
    c: &'v Doc<'d>,
    stack: Vec<Seg<'v>>,
    notes: Vec<Note<'v, 'd>>,
    /// Whether `detail` holds the text for the current notes: it is built on the first
    /// difference that needs it (an element often has several differences).
    detail_ready: bool,
    /// The `detail` text (empty: no detail), reused from one element to the next.
    detail: String,
    /// The last small-object member matching, for the next objects of the same shapes.
    matching: Matching,
}

/// The member matching of the last pair of small objects compared (see
/// [`Walk::small_object`]).
struct Matching {
    /// The primary's and the candidate's object shape.
    shapes: (u32, u32),
    /// Per primary slot, the candidate slot of the same key, or [`NO_MATCH`].
    found: [u8; SMALL_OBJECT],
    /// One bit per matched candidate slot.
    matched: u64,
}

/// [`Matching::found`] of a primary member the candidate lacks (or a dead slot).
const NO_MATCH: u8 = u8::MAX;

/// Whether nodes `i` of `p` and `j` of `c` are equal scalars ([`Walk::value`] would find
/// nothing there); `false` for containers and unequal scalars.
#[inline(always)]
fn same_scalar(p: &Doc<'_>, i: u32, c: &Doc<'_>, j: u32) -> bool {
    match (p.node(i), c.node(j)) {
        (Node::Str(x), Node::Str(y)) => same_text(p.text(x), c.text(y)),
        (Node::Num(x), Node::Num(y)) => x.same(y),
        (Node::Bool(x), Node::Bool(y)) => x == y,
        (Node::Null, Node::Null) => true,
        _ => false,
    }
}

/// The live member of `key` among a candidate object's entries: first at `slot` (the
/// primary member's own slot), then by a scan.
fn match_slot(c: &Doc<'_>, c_entries: &[Entry<'_>], slot: usize, key: &str) -> Option<usize> {
    let is = |j: usize| {
        let e = &c_entries[j];
        e.live && same_text(c.text(e.key), key)
    };
    if slot < c_entries.len() && is(slot) {
        Some(slot)
    } else {
        (0..c_entries.len()).find(|&j| is(j))
    }
}

/// Keyed arrays of at most this many candidate elements are matched by scanning, without a
/// hash index.
const KEYED_SCAN: usize = 16;

/// Order differences list at most this many indices.
const MAX_ORDER_LIST: usize = 64;

impl<'r: 'v, 'v, 'd> Walk<'_, 'r, '_, 'v, 'd> {
    fn full(&self) -> bool {
        self.sink.truncated
    }

    /// Reports a difference at the current path; values are built only now.
    fn emit(&mut self, kind: Kind, p: Option<u32>, c: Option<u32>) {
        if !self.sink.room() {
            return;
        }
        if !self.detail_ready {
            let mut out = std::mem::take(&mut self.detail);
            self.write_detail(&mut out);
            self.detail = out;
            self.detail_ready = true;
        }
        let pv = p.map(|i| self.p.to_value(i));
        let cv = c.map(|i| self.c.to_value(i));
        let detail = (!self.detail.is_empty()).then_some(self.detail.as_str());
        self.sink.at(&self.stack, kind, pv, cv, detail);
    }

    /// Writes the `detail` of the current notes into `out` (cleared first; left empty when
    /// there are no notes): `key=<redacted JSON of the key's value>`, joined by `, `.
    fn write_detail(&self, out: &mut String) {
        out.clear();
        for note in &self.notes {
            if !out.is_empty() {
                out.push_str(", ");
            }
            out.push_str(note.key.as_str());
            out.push('=');
            let secret = note.secret;
            // A scalar outside a secret field has nothing to redact: write it straight from
            // the arena, byte for byte what `Value::to_string` gives.
            if secret || !note.doc.write_scalar_json(note.node, out) {
                let mut v = note.doc.to_value(note.node);
                if secret {
                    self.sink.redactor.tokenize(&mut v);
                } else {
                    self.sink.redactor.redact_value(&mut v);
                }
                out.push_str(&v.to_string());
            }
        }
    }

    fn value(&mut self, pi: u32, ci: u32) {
        if self.full() {
            return;
        }
        let (p, c) = (self.p, self.c);
        match (p.node(pi), c.node(ci)) {
            (Node::Obj { .. }, Node::Obj { .. }) => self.object(pi, ci),
            (Node::Arr { start: ps, len: pl }, Node::Arr { start: cs, len: cl }) => {
                self.array(p.items(ps, pl), c.items(cs, cl));
            }
            (Node::Num(x), Node::Num(y)) => {
                if x.same(y) {
                    return;
                }
                let rules = self.sink.rules;
                if rules.has_tolerance()
                    && rules.tolerance_for(&self.stack).accepts(x.f64(), y.f64())
                {
                    return;
                }
                self.emit(Kind::Value, Some(pi), Some(ci));
            }
            (Node::Str(x), Node::Str(y)) => {
                if !same_text(p.text(x), c.text(y)) {
                    self.emit(Kind::Value, Some(pi), Some(ci));
                }
            }
            (Node::Bool(x), Node::Bool(y)) => {
                if x != y {
                    self.emit(Kind::Value, Some(pi), Some(ci));
                }
            }
            (Node::Null, Node::Null) => {}
            _ => self.emit(Kind::Type, Some(pi), Some(ci)),
        }
    }

    fn object(&mut self, pi: u32, ci: u32) {
        let (p, c) = (self.p, self.c);
        if let Node::Obj {
            start, len, shape, ..
        } = c.node(ci)
            && len as usize <= SMALL_OBJECT
        {
            self.small_object(pi, c.entries(start, len), shape);
            return;
        }
        // Large objects get a sorted index so member lookup is not quadratic.
        let c_index = c.index(ci);
        let p_index = p.index(pi);
        let mut matched = 0;
        for (slot, k, pv) in p.member_slots(pi) {
            if self.full() {
                return;
            }
            self.stack.push(Seg::Key(k));
            match c.lookup(ci, c_index.as_deref(), k, slot) {
                Some(cv) => {
                    matched += 1;
                    self.value(pv, cv);
                }
                None => self.emit(Kind::Missing, Some(pv), None),
            }
            self.stack.pop();
        }
        if matched == c.live_count(ci) {
            // Every candidate member had a primary counterpart: nothing extra.
            return;
        }
        for (slot, k, cv) in c.member_slots(ci) {
            if self.full() {
                return;
            }
            if p.lookup(pi, p_index.as_deref(), k, slot).is_none() {
                self.stack.push(Seg::Key(k));
                self.emit(Kind::Extra, None, Some(cv));
                self.stack.pop();
            }
        }
    }

    /// [`Walk::object`] when the candidate object has at most [`SMALL_OBJECT`] members:
    /// each primary key is looked for first at its own slot (one producer lists members in
    /// one order), then by an inlined scan (lengths first, short keys as machine words);
    /// matched candidate members are one bit each, so the extras need no reverse lookups.
    /// Which members match depends only on the keys of both objects, so the matching is
    /// reused for the next pair of objects of the same shapes (list elements). Differences
    /// come out in the same order.
    fn small_object(&mut self, pi: u32, c_entries: &'v [Entry<'d>], c_shape: u32) {
        let (p, c) = (self.p, self.c);
        let Node::Obj {
            start,
            len,
            shape: p_shape,
            ..
        } = p.node(pi)
        else {
            return;
        };
        let p_entries = p.entries(start, len);
        if p_entries.len() > SMALL_OBJECT {
            return self.small_object_scan(pi, c_entries);
        }
        let shapes = (p_shape, c_shape);
        let (found, matched) =
            if p_shape != NO_SHAPE && c_shape != NO_SHAPE && self.matching.shapes == shapes {
                (self.matching.found, self.matching.matched)
            } else {
                let mut found = [NO_MATCH; SMALL_OBJECT];
                let mut matched: u64 = 0;
                for (slot, e) in p_entries.iter().enumerate() {
                    if !e.live {
                        continue;
                    }
                    if let Some(j) = match_slot(c, c_entries, slot, p.text(e.key)) {
                        // j < SMALL_OBJECT = 64, so it fits a byte.
                        found[slot] = j as u8;
                        matched |= 1 << j;
                    }
                }
                self.matching = Matching {
                    shapes,
                    found,
                    matched,
                };
                (found, matched)
            };
        for (slot, e) in p_entries.iter().enumerate() {
            if self.full() {
                return;
            }
            if !e.live {
                continue;
            }
            let cv = match found[slot] {
                NO_MATCH => None,
                j => Some(c_entries[usize::from(j)].val),
            };
            // Most members are equal scalars: settled here, without a call.
            if cv.is_some_and(|cv| same_scalar(p, e.val, c, cv)) {
                continue;
            }
            self.stack.push(Seg::Key(p.text(e.key)));
            match cv {
                None => self.emit(Kind::Missing, Some(e.val), None),
                Some(cv) => self.value(e.val, cv),
            }
            self.stack.pop();
        }
        self.unmatched_extras(c_entries, matched);
    }

    /// [`Walk::small_object`] for a primary object of more than [`SMALL_OBJECT`] members.
    fn small_object_scan(&mut self, pi: u32, c_entries: &'v [Entry<'d>]) {
        let (p, c) = (self.p, self.c);
        let mut matched: u64 = 0;
        for (slot, k, pv) in p.member_slots(pi) {
            if self.full() {
                break;
            }
            self.stack.push(Seg::Key(k));
            match match_slot(c, c_entries, slot, k) {
                Some(j) => {
                    matched |= 1 << j;
                    self.value(pv, c_entries[j].val);
                }
                None => self.emit(Kind::Missing, Some(pv), None),
            }
            self.stack.pop();
        }
        self.unmatched_extras(c_entries, matched);
    }

    /// The candidate's live members that no primary member matched (`matched`: bit j set for
    /// entry j) are extra.
    fn unmatched_extras(&mut self, c_entries: &'v [Entry<'d>], matched: u64) {
        let c = self.c;
        for (j, e) in c_entries.iter().enumerate() {
            if self.full() {
                return;
            }
            if e.live && matched & (1 << j) == 0 {
                self.stack.push(Seg::Key(c.text(e.key)));
                self.emit(Kind::Extra, None, Some(e.val));
                self.stack.pop();
            }
        }
    }

    fn at_index(&mut self, i: usize, f: impl FnOnce(&mut Self)) {
        self.stack.push(Seg::Index(i));
        f(self);
        self.stack.pop();
    }

    fn array(&mut self, a: &'v [u32], b: &'v [u32]) {
        let rules = self.sink.rules;
        match rules.array_mode(&self.stack) {
            ArrayMode::Positional => self.positional(a, b),
            ArrayMode::Keyed(key) => self.keyed(a, b, key),
            ArrayMode::Unordered => self.unordered(a, b),
        }
    }

    fn positional(&mut self, a: &'v [u32], b: &'v [u32]) {
        let (p, c) = (self.p, self.c);
        if a.len() == b.len() && a.iter().zip(b).all(|(&x, &y)| p.same(x, c, y)) {
            return;
        }
        let ha: Vec<u64> = a.iter().map(|&x| p.hash(x)).collect();
        let hb: Vec<u64> = b.iter().map(|&y| c.hash(y)).collect();
        if ha == hb {
            // Equal hashes yet not strictly equal: tolerance or a hash collision; pair up.
            for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
                self.at_index(i, |w| w.value(x, y));
            }
            return;
        }
        if ha.len() == hb.len() {
            let mut sa = ha.clone();
            let mut sb = hb.clone();
            sa.sort_unstable();
            sb.sort_unstable();
            if sa == sb {
                self.order(&ha, &hb);
                return;
            }
        }
        for op in capture_diff_slices(Algorithm::Myers, &ha, &hb) {
            if self.full() {
                return;
            }
            let (tag, old, new) = op.as_tag_tuple();
            match tag {
                DiffTag::Equal => {
                    for (i, j) in old.zip(new) {
                        if !p.same(a[i], c, b[j]) {
                            self.at_index(i, |w| w.value(a[i], b[j]));
                        }
                    }
                }
                DiffTag::Delete => {
                    for i in old {
                        self.at_index(i, |w| w.emit(Kind::Missing, Some(a[i]), None));
                    }
                }
                DiffTag::Insert => {
                    for j in new {
                        self.at_index(j, |w| w.emit(Kind::Extra, None, Some(b[j])));
                    }
                }
                DiffTag::Replace => {
                    let paired = old.len().min(new.len());
                    for (i, j) in old.clone().zip(new.clone()) {
                        self.at_index(i, |w| w.value(a[i], b[j]));
                    }
                    for i in old.skip(paired) {
                        self.at_index(i, |w| w.emit(Kind::Missing, Some(a[i]), None));
                    }
                    for j in new.skip(paired) {
                        self.at_index(j, |w| w.emit(Kind::Extra, None, Some(b[j])));
                    }
                }
            }
        }
    }

    /// Same elements, other order: one `order` difference at the array. `primary` lists the
    /// primary indices `[0, 1, …]`; `candidate` lists, per candidate position, which primary
    /// element sits there.
    fn order(&mut self, ha: &[u64], hb: &[u64]) {
        if !self.sink.room() {
            return;
        }
        let mut used = vec![false; ha.len()];
        let mut perm = Vec::with_capacity(hb.len().min(MAX_ORDER_LIST));
        for h in hb.iter().take(MAX_ORDER_LIST) {
            let i = (0..ha.len()).find(|&i| !used[i] && ha[i] == *h);
            if let Some(i) = i {
                used[i] = true;
            }
            perm.push(i.map_or(Value::Null, |i| json!(i)));
        }
        let primary: Vec<Value> = (0..ha.len().min(MAX_ORDER_LIST))
            .map(|i| json!(i))
            .collect();
        let mut detail = String::new();
        self.write_detail(&mut detail);
        // Indices are not secrets, and labels do not apply to an order.
        self.sink.at(
            &self.stack,
            Kind::Order,
            Some(Value::Array(primary)),
            Some(Value::Array(perm)),
            (!detail.is_empty()).then_some(detail.as_str()),
        );
    }

    fn keyed(&mut self, a: &'v [u32], b: &'v [u32], key: &'v KeySpec) {
        let mut scratch = std::mem::take(self.sink.keyed);
        self.keyed_with(a, b, key, &mut scratch);
        *self.sink.keyed = scratch;
    }

    fn keyed_with(&mut self, a: &'v [u32], b: &'v [u32], key: &'v KeySpec, s: &mut KeyedScratch) {
        let (p, c) = (self.p, self.c);
        let field = match key {
            KeySpec::Field(f) => f.as_str(),
            KeySpec::Pointer(p) => p.segments().last().map_or("", String::as_str),
        };
        let key_secret = self.sink.redactor.is_secret_field(field);
        s.ka.clear();
        s.ka.extend(a.iter().map(|&e| p.key_of(e, key)));
        s.kb.clear();
        s.kb.extend(b.iter().map(|&e| c.key_of(e, key)));
        let (ka, kb) = (&s.ka, &s.kb);
        // Short lists are searched in order: equal keys hash alike, so the first unused
        // equal key in candidate order is what the index finds too.
        let scan = b.len() <= KEYED_SCAN;
        s.index.clear();
        if !scan {
            s.index.extend(
                kb.iter()
                    .enumerate()
                    .filter_map(|(j, k)| k.map(|k| (c.hash(k), j))),
            );
            s.index.sort_unstable();
        }
        let index = &s.index;
        s.used.clear();
        s.used.resize(b.len(), false);
        let used = &mut s.used;
        s.keyless_a.clear();
        let keyless_a = &mut s.keyless_a;
        for (i, &pe) in a.iter().enumerate() {
            if self.full() {
                return;
            }
            let Some(kv) = ka[i] else {
                keyless_a.push(i);
                continue;
            };
            let free_and_equal = |j: usize| !used[j] && kb[j].is_some_and(|k| p.same(kv, c, k));
            let found = if scan {
                (0..b.len()).find(|&j| free_and_equal(j))
            } else {
                let h = p.hash(kv);
                let start = index.partition_point(|&(x, _)| x < h);
                index[start..]
                    .iter()
                    .take_while(|&&(x, _)| x == h)
                    .map(|&(_, j)| j)
                    .find(|&j| free_and_equal(j))
            };
            self.detail_ready = false;
            self.notes.push(Note {
                key,
                secret: key_secret,
                doc: p,
                node: kv,
            });
            match found {
                Some(j) => {
                    used[j] = true;
                    self.at_index(i, |w| w.value(pe, b[j]));
                }
                None => self.at_index(i, |w| w.emit(Kind::Missing, Some(pe), None)),
            }
            self.notes.pop();
            self.detail_ready = false;
        }
        // Elements without the key are compared in order among themselves.
        s.keyless_b.clear();
        s.keyless_b
            .extend((0..b.len()).filter(|&j| kb[j].is_none()));
        let keyless_b = &s.keyless_b;
        for (n, &i) in keyless_a.iter().enumerate() {
            match keyless_b.get(n) {
                Some(&j) => self.at_index(i, |w| w.value(a[i], b[j])),
                None => self.at_index(i, |w| w.emit(Kind::Missing, Some(a[i]), None)),
            }
        }
        for &j in keyless_b.iter().skip(keyless_a.len()) {
            self.at_index(j, |w| w.emit(Kind::Extra, None, Some(b[j])));
        }
        for (j, &ce) in b.iter().enumerate() {
            if self.full() {
                return;
            }
            if let (false, Some(kv)) = (used[j], kb[j]) {
                self.detail_ready = false;
                self.notes.push(Note {
                    key,
                    secret: key_secret,
                    doc: c,
                    node: kv,
                });
                self.at_index(j, |w| w.emit(Kind::Extra, None, Some(ce)));
                self.notes.pop();
                self.detail_ready = false;
            }
        }
    }

    fn unordered(&mut self, a: &'v [u32], b: &'v [u32]) {
        let (p, c) = (self.p, self.c);
        let mut index: Vec<(u64, usize)> =
            b.iter().enumerate().map(|(j, &e)| (c.hash(e), j)).collect();
        index.sort_unstable();
        let mut used = vec![false; b.len()];
        for (i, &pe) in a.iter().enumerate() {
            if self.full() {
                return;
            }
            let h = p.hash(pe);
            let start = index.partition_point(|&(x, _)| x < h);
            let found = index[start..]
                .iter()
                .take_while(|&&(x, _)| x == h)
                .map(|&(_, j)| j)
                .find(|&j| !used[j] && p.same(pe, c, b[j]));
            match found {
                Some(j) => used[j] = true,
                None => self.at_index(i, |w| w.emit(Kind::Missing, Some(pe), None)),
            }
        }
        for (j, &ce) in b.iter().enumerate() {
            if !used[j] {
                self.at_index(j, |w| w.emit(Kind::Extra, None, Some(ce)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redact::redaction_token;
    use crate::rules::RawRuleSet;
    use serde_json::Map;
    use serde_json::json;

    const JSON: &[(&str, &[u8])] = &[("Content-Type", b"application/json")];

    fn rules(v: Value) -> RuleSet {
        let raw: RawRuleSet = serde_json::from_value(v).unwrap();
        RuleSet::validate(raw).unwrap()
    }

    /// A 200 JSON exchange with these bodies.
    fn json_exchange<'a>(method: &'a str, path: &'a str, p: &'a str, c: &'a str) -> Exchange<'a> {
        Exchange {
            method,
            path,
            request_body: b"",
            primary: Response {
                status: 200,
                headers: JSON,
                body: p.as_bytes(),
            },
            candidate: Response {
                status: 200,
                headers: JSON,
                body: c.as_bytes(),
            },
        }
    }

    fn run_on(rules: &RuleSet, method: &str, path: &str, p: &str, c: &str) -> Comparison {
        compare(rules, &json_exchange(method, path, p, c))
    }

    fn run(rules: &RuleSet, p: Value, c: Value) -> Comparison {
        run_on(rules, "GET", "/x", &p.to_string(), &c.to_string())
    }

    fn kinds(c: &Comparison) -> Vec<(String, Kind)> {
        c.differences
            .iter()
            .map(|d| (d.path.clone(), d.kind))
            .collect()
    }

    #[test]
    fn numbers_compare_by_value_and_types_differ() {
        let r = RuleSet::default();
        assert!(
            run(
                &r,
                json!({"p": 42000, "q": [1, 2.5]}),
                json!({"p": 42000.0, "q": [1.0, 2.5]})
            )
            .differences
            .is_empty()
        );
        let c = run(
            &r,
            json!({"p": 42000, "s": "a", "b": true, "n": null}),
            json!({"p": "42000", "s": "b", "b": false, "n": 0}),
        );
        assert_eq!(
            kinds(&c),
            vec![
                ("/b".into(), Kind::Value),
                ("/n".into(), Kind::Type),
                ("/p".into(), Kind::Type),
                ("/s".into(), Kind::Value)
            ]
        );
        let p = c.differences.iter().find(|d| d.path == "/p").unwrap();
        assert_eq!((&p.primary, &p.candidate), (&json!(42000), &json!("42000")));
        assert_eq!(c.outcome(), Outcome::Regression);
    }

    #[test]
    fn tolerances_absolute_relative_and_per_path() {
        let r = rules(
            json!({"defaults": {"tolerance": {"abs": 0.01}, "tolerances": [{"path": "/price", "rel": 0.001}]}}),
        );
        let c = run(
            &r,
            json!({"qty": 1.0, "price": 42000.0, "fee": 1.0}),
            json!({"qty": 1.005, "price": 42040.0, "fee": 1.02}),
        );
        assert_eq!(kinds(&c), vec![("/fee".into(), Kind::Value)]);
        let c = run(&r, json!({"price": 42000.0}), json!({"price": 42050.0}));
        assert_eq!(kinds(&c), vec![("/price".into(), Kind::Value)]);
        // Exact by default.
        let c = run(
            &RuleSet::default(),
            json!({"a": 0.1}),
            json!({"a": 0.1000001}),
        );
        assert_eq!(c.differences.len(), 1);
    }

    #[test]
    fn missing_extra_and_nested_paths() {
        let c = run(
            &RuleSet::default(),
            json!({"a": {"x/y": 1, "k": 2}}),
            json!({"a": {"k": 2, "z~": 3}}),
        );
        assert_eq!(
            kinds(&c),
            vec![
                ("/a/x~1y".into(), Kind::Missing),
                ("/a/z~0".into(), Kind::Extra)
            ]
        );
        assert_eq!(c.differences[0].candidate, Value::Null);
        assert_eq!(c.differences[1].primary, Value::Null);
        assert_eq!(c.differences[1].candidate, json!(3));
    }

    #[test]
    fn status_and_headers() {
        let r = rules(
            json!({"defaults": {"headers": ["content-type", "x-ratelimit-limit", "x-ratelimit-reset"],
                                           "ignore_headers": ["x-ratelimit-reset"]}}),
        );
        let ph: &[(&str, &[u8])] = &[
            ("CONTENT-TYPE", b"application/json; charset=utf-8"),
            ("Date", b"Mon, 01 Jan 2026 00:00:00 GMT"),
            ("X-RateLimit-Limit", b"100"),
            ("X-RateLimit-Limit", b"100"),
            ("X-RateLimit-Reset", b"1767225600"),
        ];
        let ch: &[(&str, &[u8])] = &[
            ("content-type", b"application/json"),
            ("date", b"Mon, 01 Jan 2026 00:00:01 GMT"),
            ("x-ratelimit-limit", b"100"),
            ("x-ratelimit-reset", b"1767225601"),
            ("Server", b"other"),
        ];
        let ex = Exchange {
            method: "get",
            path: "/api/orders",
            request_body: b"",
            primary: Response {
                status: 429,
                headers: ph,
                body: b"{}",
            },
            candidate: Response {
                status: 200,
                headers: ch,
                body: b"{}",
            },
        };
        let c = compare(&r, &ex);
        assert_eq!(c.method, "GET");
        assert_eq!(
            kinds(&c),
            vec![
                ("/status".into(), Kind::Status),
                ("/headers/content-type".into(), Kind::Header),
                ("/headers/x-ratelimit-limit".into(), Kind::Header),
                ("/headers/x-ratelimit-reset".into(), Kind::Header),
            ]
        );
        assert_eq!(c.differences[0].primary, json!(429));
        // A duplicated header is visible as joined values.
        assert_eq!(c.differences[2].primary, json!("100, 100"));
        assert_eq!(c.differences[3].class, Class::Ignored);
        assert_eq!(c.differences[3].label, Some(Label::Timestamp));

        // Defaults: content-type only, compared case-insensitively by name.
        let d = RuleSet::default();
        let ex2 = Exchange {
            primary: Response {
                status: 200,
                headers: &[("Content-Type", b"text/plain"), ("X-A", b"1")],
                body: b"",
            },
            candidate: Response {
                status: 200,
                headers: &[("content-type", b"text/plain"), ("x-a", b"2")],
                body: b"",
            },
            ..ex
        };
        assert!(compare(&d, &ex2).differences.is_empty());
        let ex3 = Exchange {
            candidate: Response {
                status: 200,
                headers: &[],
                body: b"",
            },
            ..ex2
        };
        let c = compare(&d, &ex3);
        assert_eq!(
            kinds(&c),
            vec![("/headers/content-type".into(), Kind::Header)]
        );
        assert_eq!(c.differences[0].candidate, Value::Null);
        // Status comparison can be switched off.
        let off = rules(json!({"defaults": {"compare_status": false}}));
        assert!(
            compare(&off, &ex)
                .regressions()
                .all(|d| d.kind != Kind::Status)
        );
    }

    #[test]
    fn keyed_array_insert_is_one_extra() {
        let r =
            rules(json!({"defaults": {"arrays": [{"path": "/items", "key": "client_order_id"}]}}));
        let p = json!({"items": [{"client_order_id": "a", "qty": 1}, {"client_order_id": "b", "qty": 2}, {"client_order_id": "c", "qty": 3}]});
        let c = json!({"items": [{"client_order_id": "c", "qty": 3}, {"client_order_id": "new", "qty": 9},
                                 {"client_order_id": "a", "qty": 1}, {"client_order_id": "b", "qty": 5}]});
        let out = run(&r, p, c);
        assert_eq!(
            kinds(&out),
            vec![
                ("/items/1/qty".into(), Kind::Value),
                ("/items/1".into(), Kind::Extra)
            ]
        );
        assert_eq!(
            out.differences[0].detail.as_deref(),
            Some("client_order_id=\"b\"")
        );
        assert_eq!(out.differences[0].pattern, "/items/*/qty");
        assert_eq!(
            out.differences[1].detail.as_deref(),
            Some("client_order_id=\"new\"")
        );
        // A removed element is one missing; key by pointer works too.
        let r =
            rules(json!({"defaults": {"arrays": [{"path": "", "mode": "keyed", "key": "/o/id"}]}}));
        let out = run(
            &r,
            json!([{"o": {"id": 1}}, {"o": {"id": 2}}, {"n": 1}]),
            json!([{"o": {"id": 2}}, {"n": 2}]),
        );
        assert_eq!(
            kinds(&out),
            vec![("/0".into(), Kind::Missing), ("/2/n".into(), Kind::Value)]
        );
    }

    #[test]
    fn unordered_sets() {
        let r = rules(json!({"defaults": {"arrays": [{"path": "/tags", "mode": "unordered"}]}}));
        assert!(
            run(
                &r,
                json!({"tags": ["a", "b", "b", 1]}),
                json!({"tags": [1.0, "b", "a", "b"]})
            )
            .differences
            .is_empty()
        );
        let out = run(
            &r,
            json!({"tags": ["a", "b", "b"]}),
            json!({"tags": ["b", "c", "a"]}),
        );
        assert_eq!(
            kinds(&out),
            vec![
                ("/tags/2".into(), Kind::Missing),
                ("/tags/1".into(), Kind::Extra)
            ]
        );
    }

    #[test]
    fn positional_arrays_use_lcs_and_detect_order() {
        let r = RuleSet::default();
        let p = json!({"a": [{"i": 1}, {"i": 2}, {"i": 3}, {"i": 4}]});
        let c = json!({"a": [{"i": 1}, {"i": 9}, {"i": 2}, {"i": 3}, {"i": 4}]});
        let out = run(&r, p.clone(), c);
        assert_eq!(kinds(&out), vec![("/a/1".into(), Kind::Extra)]);
        let out = run(&r, p.clone(), json!({"a": [{"i": 1}, {"i": 3}, {"i": 4}]}));
        assert_eq!(kinds(&out), vec![("/a/1".into(), Kind::Missing)]);
        let out = run(
            &r,
            p.clone(),
            json!({"a": [{"i": 1}, {"i": 2}, {"i": 30}, {"i": 4}]}),
        );
        assert_eq!(kinds(&out), vec![("/a/2/i".into(), Kind::Value)]);
        let out = run(
            &r,
            p,
            json!({"a": [{"i": 4}, {"i": 1}, {"i": 2}, {"i": 3}]}),
        );
        assert_eq!(kinds(&out), vec![("/a".into(), Kind::Order)]);
        assert_eq!(out.differences[0].primary, json!([0, 1, 2, 3]));
        assert_eq!(out.differences[0].candidate, json!([3, 0, 1, 2]));
        // Same-position numeric drift inside a tolerance is not a difference.
        let t = rules(json!({"defaults": {"tolerance": {"rel": 0.01}}}));
        assert!(
            run(&t, json!([100.0, 200.0]), json!([100.5, 200.0]))
                .differences
                .is_empty()
        );
    }

    #[test]
    fn veloz_orders_envelope_rename_enum_map_and_ignore() {
        let r = rules(json!({"routes": [{
            "template": "/api/orders",
            "primary": {"unwrap": "/items", "drop": ["/*/_id", "/*/type"]},
            "candidate": {"unwrap": "/data", "unwrap_if": {"/status": "success"},
                          "rename": {"qty": "order_qty", "price": "limit_price"},
                          "map_values": {"status": {"new": "ACCEPTED"}, "side": {"buy": "BUY", "sell": "SELL"}}},
            "arrays": [{"path": "", "key": "client_order_id"}],
            "ignore": ["/*/ts_ns", "/*/created_ns"]
        }]}));
        let py = json!({"items": [
            {"_id": 1, "type": "order_update", "client_order_id": "web-1", "side": "BUY", "order_qty": 0.01, "limit_price": 42000, "status": "ACCEPTED", "ts_ns": 1},
            {"_id": 2, "type": "order_update", "client_order_id": "web-2", "side": "SELL", "order_qty": 0.02, "limit_price": 42100, "status": "ACCEPTED", "ts_ns": 2}
        ]});
        let cpp = json!({"status": "success", "data": [
            {"client_order_id": "web-2", "side": "sell", "qty": 0.02, "price": 42100.0, "status": "new", "ts_ns": 9},
            {"client_order_id": "web-1", "side": "buy", "qty": 0.01, "price": 42000.0, "status": "new", "ts_ns": 8}
        ]});
        let out = run_on(
            &r,
            "GET",
            "/api/orders?limit=5",
            &py.to_string(),
            &cpp.to_string(),
        );
        assert_eq!(out.route, "/api/orders");
        assert_eq!(
            kinds(&out),
            vec![
                ("/0/ts_ns".into(), Kind::Value),
                ("/1/ts_ns".into(), Kind::Value)
            ]
        );
        assert!(out.differences.iter().all(|d| d.class == Class::Ignored));
        assert_eq!(out.count(Class::Ignored), 2);
        // Ignored, not a match.
        assert_eq!(out.outcome(), Outcome::Ignored);
        assert_eq!(out.differences[0].signature, out.differences[1].signature);
        assert_eq!(out.differences[0].label, Some(Label::Timestamp));
    }

    #[test]
    fn sort_by_key_then_positional() {
        let r = rules(json!({"defaults": {"normalize": {"sort": {"/balances": "asset"}}}}));
        let out = run(
            &r,
            json!({"balances": [{"asset": "USDT", "free": 1}, {"asset": "BTC", "free": 0}]}),
            json!({"balances": [{"asset": "BTC", "free": 0}, {"asset": "USDT", "free": 2}]}),
        );
        assert_eq!(kinds(&out), vec![("/balances/1/free".into(), Kind::Value)]);
    }

    #[test]
    fn redaction_keeps_equal_secrets_equal_and_leaks_nothing() {
        let r = rules(json!({"defaults": {"headers": ["content-type", "set-cookie"]}}));
        let same = json!({"token": "eyJSAME", "token_type": "Bearer"});
        assert!(run(&r, same.clone(), same).differences.is_empty());
        let p = json!({"access_token": "eyJPRIMARYSECRET", "user": {"password": "hunter2PRIMARY"}, "k": 1});
        let c = json!({"access_token": "eyJCANDIDATESECRET", "user": {"password": "hunter2PRIMARY"},
                       "extra": {"api_key": "veloz_CANDIDATEKEY"}, "k": 2});
        let ph: &[(&str, &[u8])] = &[("Set-Cookie", b"sid=PRIMARYCOOKIE")];
        let ch: &[(&str, &[u8])] = &[("set-cookie", b"sid=CANDIDATECOOKIE")];
        let (pb, cb) = (p.to_string(), c.to_string());
        let ex = Exchange {
            method: "POST",
            path: "/api/auth/login",
            request_body: b"",
            primary: Response {
                status: 200,
                headers: ph,
                body: pb.as_bytes(),
            },
            candidate: Response {
                status: 200,
                headers: ch,
                body: cb.as_bytes(),
            },
        };
        let out = compare(&r, &ex);
        assert_eq!(
            kinds(&out),
            vec![
                ("/headers/set-cookie".into(), Kind::Header),
                ("/access_token".into(), Kind::Value),
                ("/k".into(), Kind::Value),
                ("/extra".into(), Kind::Extra),
            ]
        );
        let tok = &out.differences[1];
        assert_eq!(tok.primary, json!(redaction_token(b"eyJPRIMARYSECRET")));
        let text = serde_json::to_string(&out).unwrap();
        for secret in [
            "PRIMARYSECRET",
            "CANDIDATESECRET",
            "hunter2",
            "CANDIDATEKEY",
            "PRIMARYCOOKIE",
            "CANDIDATECOOKIE",
        ] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        // Text bodies and keys in details are redacted too.
        let out = run_on(
            &RuleSet::default(),
            "POST",
            "/login",
            "user=a&password=TEXTSECRET1\n",
            "user=a&password=TEXTSECRET2\n",
        );
        assert_eq!(kinds(&out), vec![("".into(), Kind::Text)]);
        let text = serde_json::to_string(&out).unwrap();
        assert!(!text.contains("TEXTSECRET"), "{text}");
        let keyed = rules(json!({"defaults": {"arrays": [{"path": "", "key": "token"}]}}));
        let out = run(
            &keyed,
            json!([{"token": "KEYSECRET", "v": 1}]),
            json!([{"token": "KEYSECRET", "v": 2}]),
        );
        let text = serde_json::to_string(&out).unwrap();
        assert_eq!(out.differences.len(), 1);
        assert!(!text.contains("KEYSECRET"), "{text}");
    }

    #[test]
    fn route_templates_group_and_signatures_are_stable() {
        let r = rules(json!({"routes": [{"template": "/api/orders/{id}"}]}));
        let a = run_on(
            &r,
            "GET",
            "/api/orders/web-1",
            r#"{"s":"new"}"#,
            r#"{"s":"filled"}"#,
        );
        let b = run_on(
            &r,
            "GET",
            "/api/orders/web-2",
            r#"{"s":"x"}"#,
            r#"{"s":"y"}"#,
        );
        assert_eq!(a.route, "/api/orders/{id}");
        assert_eq!(a.differences[0].signature, b.differences[0].signature);
        let d = run_on(
            &r,
            "DELETE",
            "/api/orders/web-1",
            r#"{"s":"x"}"#,
            r#"{"s":"y"}"#,
        );
        assert_ne!(a.differences[0].signature, d.differences[0].signature);
        let u = run_on(
            &r,
            "GET",
            "/api/unknown/veloz_1_2",
            r#"{"s":1}"#,
            r#"{"s":2}"#,
        );
        assert_eq!(u.route, "/api/unknown/{id}");
        // The signature is a fixed function of its inputs (pinned so it never drifts).
        let mut h = Fnv::new();
        h.write(b"GET")
            .sep()
            .write(b"/api/orders/{id}")
            .sep()
            .write(b"/s")
            .sep()
            .write(b"value");
        assert_eq!(a.differences[0].signature, Signature(h.finish()));
        let text = serde_json::to_value(a.differences[0].signature).unwrap();
        assert_eq!(text.as_str().unwrap().len(), 16);
        let back: Signature = serde_json::from_value(text).unwrap();
        assert_eq!(back, a.differences[0].signature);
    }

    #[test]
    fn labels_describe_and_noise_labels_classify() {
        let r = RuleSet::default();
        let out = run(
            &r,
            json!({"id": "veloz_1_1", "created_at": "2026-01-01T00:00:00Z", "q": 1}),
            json!({"id": "veloz_2_7", "created_at": "2026-01-01T00:00:05Z", "q": 2}),
        );
        let labels: Vec<Option<Label>> = out.differences.iter().map(|d| d.label).collect();
        assert_eq!(
            labels,
            vec![Some(Label::Timestamp), Some(Label::GeneratedId), None]
        );
        assert!(out.differences.iter().all(|d| d.class == Class::Regression));
        let r = rules(json!({"defaults": {"noise_labels": ["timestamp"], "noise": ["/q"]}}));
        let out = run(
            &r,
            json!({"id": "veloz_1_1", "created_at": "2026-01-01T00:00:00Z", "q": 1}),
            json!({"id": "veloz_2_7", "created_at": "2026-01-01T00:00:05Z", "q": 2}),
        );
        let classes: Vec<Class> = out.differences.iter().map(|d| d.class).collect();
        assert_eq!(classes, vec![Class::Noise, Class::Regression, Class::Noise]);
        let off = rules(json!({"defaults": {"labels": false}}));
        assert!(
            run(&off, json!({"created_at": "a"}), json!({"created_at": "b"})).differences[0]
                .label
                .is_none()
        );
    }

    #[test]
    fn text_type_size_and_empty_bodies() {
        let r = RuleSet::default();
        let out = run_on(
            &r,
            "GET",
            "/",
            "<html>404</html>\n",
            r#"{"error":"not_found"}"#,
        );
        assert_eq!(kinds(&out), vec![("".into(), Kind::Type)]);
        assert_eq!(out.differences[0].primary, json!("<html>404</html>\n"));
        assert_eq!(out.differences[0].candidate, json!({"error": "not_found"}));
        let out = run_on(&r, "GET", "/", "a\nb\n", "a\nc\n");
        assert_eq!(out.differences[0].kind, Kind::Text);
        assert_eq!(out.differences[0].primary, json!("b\n"));
        assert_eq!(out.differences[0].candidate, json!("c\n"));
        assert!(
            out.differences[0]
                .detail
                .as_deref()
                .unwrap()
                .contains("-b\n+c")
        );
        let out = run_on(&r, "GET", "/", r#"{"a":1}"#, "");
        assert_eq!(kinds(&out), vec![("".into(), Kind::Missing)]);
        let out = run_on(&r, "GET", "/", " ", r#"[1]"#);
        assert_eq!(kinds(&out), vec![("".into(), Kind::Extra)]);
        assert!(run_on(&r, "GET", "/", "", "  \n").differences.is_empty());
        let small = rules(json!({"limits": {"max_body_bytes": 8, "max_text_bytes": 4}}));
        let out = run_on(&small, "GET", "/", "0123456789", "0123456788");
        assert_eq!(out.differences[0].kind, Kind::Size);
        assert_eq!(out.differences[0].primary["bytes"], json!(10));
        let out = run_on(&small, "GET", "/", "abcdEFG", "abcdXYZ");
        assert_eq!(out.differences[0].kind, Kind::Size);
        let ex = Exchange {
            method: "GET",
            path: "/",
            request_body: b"",
            primary: Response {
                status: 200,
                headers: JSON,
                body: &[0xff, 0x00],
            },
            candidate: Response {
                status: 200,
                headers: JSON,
                body: &[0xfe, 0x00],
            },
        };
        assert_eq!(kinds(&compare(&r, &ex)), vec![("".into(), Kind::Size)]);
    }

    /// Differences of one comparison share what their path shape decides (pattern, class,
    /// secrecy, signature); a site must never be taken for a path of another shape.
    #[test]
    fn alike_differences_share_only_what_their_shape_decides() {
        // An ignore pattern naming an index: the class depends on the index, not the shape.
        let r = rules(json!({"defaults": {"ignore": ["/0/x"], "noise": ["/2"]}}));
        let c = run(
            &r,
            json!([{"x": 1}, {"x": 1}, {"x": 1}]),
            json!([{"x": 2}, {"x": 2}, {"x": 2}]),
        );
        let classes: Vec<(&str, &str, Class)> = c
            .differences
            .iter()
            .map(|d| (d.path.as_str(), d.pattern.as_str(), d.class))
            .collect();
        assert_eq!(
            classes,
            vec![
                ("/0/x", "/*/x", Class::Ignored),
                ("/1/x", "/*/x", Class::Regression),
                ("/2/x", "/*/x", Class::Noise)
            ]
        );
        assert!(
            c.differences
                .windows(2)
                .all(|w| w[0].signature == w[1].signature)
        );
        // A key written `*` and an array index share a pattern but not a shape: only the key
        // is a secret field here.
        let r = rules(json!({"redact": {"fields": ["*"]}}));
        let c = run(&r, json!([[1], {"*": 1}]), json!([[2], {"*": 2}]));
        assert_eq!(c.differences[0].path, "/0/0");
        assert_eq!(c.differences[1].path, "/1/*");
        assert_eq!(c.differences[0].pattern, c.differences[1].pattern);
        assert_eq!(c.differences[0].primary, json!(1));
        assert_eq!(
            c.differences[1].primary,
            json!(redaction_token(b"1")),
            "{c:?}"
        );
        // Keys that need escaping are written escaped, every time.
        let c = run(
            &RuleSet::default(),
            json!([{"a/b": 1, "a~1b": 1}, {"a/b": 1, "a~1b": 1}]),
            json!([{"a/b": 2, "a~1b": 2}, {"a/b": 2, "a~1b": 2}]),
        );
        let paths: Vec<(&str, &str)> = c
            .differences
            .iter()
            .map(|d| (d.path.as_str(), d.pattern.as_str()))
            .collect();
        assert_eq!(
            paths,
            vec![
                ("/0/a~1b", "/*/a~1b"),
                ("/0/a~01b", "/*/a~01b"),
                ("/1/a~1b", "/*/a~1b"),
                ("/1/a~01b", "/*/a~01b")
            ]
        );
    }

    /// A comparer keeps what path shapes decided across comparisons, per route and per
    /// signature base, under the rule set it learnt it from: it must always give what a
    /// fresh comparer gives, whichever rules, route or path comes next.
    #[test]
    fn a_reused_comparer_keeps_sites_only_for_their_rules() {
        let make = |ignore: &str, secret: &str| {
            rules(json!({
                "redact": {"fields": [secret]},
                "routes": [
                    {"template": "/a", "ignore": [ignore]},
                    {"template": "/b", "noise": ["/*/x"]}
                ]
            }))
        };
        let p = json!([{"x": 1, "y": 1, "z": 1}, {"x": 1, "y": 1, "z": 1}]).to_string();
        let c = json!([{"x": 2, "y": 2, "z": 2}, {"x": 2, "y": 2, "z": 2}]).to_string();
        let mut comparer = Comparer::new();
        let mut out = Comparison::default();
        let mut check = |r: &RuleSet, path: &str| {
            let ex = json_exchange("GET", path, &p, &c);
            comparer.compare(r, &ex, &mut out);
            assert_eq!(out, compare(r, &ex), "rules {r:?} path {path}");
            out.differences
                .iter()
                .map(|d| (d.class, d.signature))
                .collect::<Vec<_>>()
        };
        let first = make("/*/x", "y");
        let second = make("/*/y", "z");
        let a = check(&first, "/a");
        assert_eq!(a[0].0, Class::Ignored);
        assert_ne!(check(&first, "/b"), a);
        assert_ne!(check(&first, "/c/1"), check(&first, "/d/1"));
        assert_eq!(check(&first, "/a"), a);
        assert_ne!(check(&second, "/a"), a);
        assert_eq!(check(&first, "/a"), a);
        // Rule sets made and dropped one after another.
        for round in 0..4 {
            let r = if round % 2 == 0 {
                make("/*/x", "y")
            } else {
                make("/*/z", "x")
            };
            for path in ["/a", "/b", "/c/1"] {
                check(&r, path);
            }
        }
    }

    /// Short keyed arrays are matched by a scan, long ones through a hash index: the same
    /// pairs either way (first unused equal key in candidate order).
    #[test]
    fn keyed_arrays_match_alike_short_and_long() {
        let r = rules(json!({"defaults": {"arrays": [{"path": "", "key": "id"}]}}));
        for n in [KEYED_SCAN - 6, KEYED_SCAN + 4] {
            let p: Vec<Value> = (0..n)
                .map(|i| json!({"id": format!("k{i}"), "v": i}))
                .collect();
            let mut c = vec![json!({"id": "kx", "v": 0})];
            for i in (0..n).rev().filter(|&i| i != 7) {
                c.push(json!({"id": format!("k{i}"), "v": if i == 5 { 99 } else { i }}));
            }
            c.push(json!({"id": "k3", "v": 3}));
            let last = format!("/{}", c.len() - 1);
            let out = run(&r, Value::Array(p), Value::Array(c));
            assert_eq!(
                kinds(&out),
                vec![
                    ("/5/v".into(), Kind::Value),
                    ("/7".into(), Kind::Missing),
                    ("/0".into(), Kind::Extra),
                    (last, Kind::Extra)
                ],
                "{n} elements"
            );
        }
    }

    #[test]
    fn truncates_and_reuses_buffers() {
        let r = rules(json!({"limits": {"max_differences": 3}}));
        let p: Value = (0..10)
            .map(|i| (format!("k{i}"), json!(i)))
            .collect::<Map<_, _>>()
            .into();
        let c: Value = (0..10)
            .map(|i| (format!("k{i}"), json!(i + 1)))
            .collect::<Map<_, _>>()
            .into();
        let out = run(&r, p.clone(), c.clone());
        assert_eq!(out.differences.len(), 3);
        assert!(out.truncated);
        let mut comparer = Comparer::new();
        let mut reused = Comparison::default();
        let (pb, cb) = (p.to_string(), c.to_string());
        let ex = Exchange {
            method: "GET",
            path: "/x",
            request_body: b"",
            primary: Response {
                status: 200,
                headers: JSON,
                body: pb.as_bytes(),
            },
            candidate: Response {
                status: 200,
                headers: JSON,
                body: cb.as_bytes(),
            },
        };
        for _ in 0..3 {
            comparer.compare(&r, &ex, &mut reused);
            assert_eq!(reused, out);
        }
    }

    mod props {
        use super::*;
        use crate::testutil::arb_json;
        use proptest::prelude::*;

        /// `v` with every object key `from` renamed `to`, or `None` when `v` already holds a
        /// key `to` anywhere.
        fn renamed_keys(v: &Value, from: &str, to: &str) -> Option<Value> {
            Some(match v {
                Value::Object(map) => {
                    if map.contains_key(to) {
                        return None;
                    }
                    let mut out = Map::new();
                    for (k, child) in map {
                        let k = if k == from { to } else { k.as_str() };
                        out.insert(k.to_owned(), renamed_keys(child, from, to)?);
                    }
                    Value::Object(out)
                }
                Value::Array(items) => Value::Array(
                    items
                        .iter()
                        .map(|c| renamed_keys(c, from, to))
                        .collect::<Option<_>>()?,
                ),
                other => other.clone(),
            })
        }

        proptest! {
            #[test]
            fn compare_with_itself_finds_nothing(v in arb_json()) {
                let text = v.to_string();
                for r in [
                    RuleSet::default(),
                    rules(json!({"defaults": {"arrays": [{"path": "/**", "mode": "unordered"}]}})),
                ] {
                    let out = run_on(&r, "GET", "/p", &text, &text);
                    prop_assert!(out.differences.is_empty(), "{:?}", out.differences);
                }
                // The candidate calls `yy` `zz` and the rule renames it back. A document that
                // already holds a `zz` cannot be matched that way (the primary's `zz` has no
                // partner once the candidate's is renamed), so it is not a case of this property.
                if let Some(candidate) = renamed_keys(&v, "yy", "zz") {
                    let r = rules(json!({"defaults": {"candidate": {"rename": {"zz": "yy"}}}}));
                    let out = run_on(&r, "GET", "/p", &text, &candidate.to_string());
                    prop_assert!(out.differences.is_empty(), "{:?}", out.differences);
                }
            }

            #[test]
            fn any_pair_compares_without_panicking(
                a in arb_json(),
                b in arb_json(),
                junk in proptest::collection::vec(any::<u8>(), 0..64),
            ) {
                let rule_sets = [
                    RuleSet::default(),
                    rules(json!({"limits": {"max_differences": 5}, "defaults": {
                        "arrays": [{"path": "/**", "key": "a"}],
                        "tolerance": {"rel": 0.001},
                        "normalize": {"sort": {"/**": "b"}, "rename": {"a": "b"}, "drop": ["/*/c"]},
                        "candidate": {"unwrap": "/a", "map_values": {"x": {"y": [1, {"z": null}]}}},
                        "ignore": ["/**/a"], "noise": ["/*"]}})),
                    rules(json!({"defaults": {"arrays": [{"path": "/**", "mode": "unordered"}]}})),
                ];
                let (ta, tb) = (a.to_string(), b.to_string());
                for r in &rule_sets {
                    let out = run_on(r, "GET", "/p/1", &ta, &tb);
                    prop_assert!(out.differences.len() <= r.limits().max_differences);
                    for d in &out.differences {
                        prop_assert!(d.path.is_empty() || d.path.starts_with('/'));
                    }
                    let text = String::from_utf8_lossy(&junk).into_owned();
                    let _ = run_on(r, "GET", "/p/1", &ta, &text);
                }
            }

            /// Objects of one shape share their normalization edits and their member
            /// matching; each must still compare exactly as it does alone. Keys come from a
            /// small alphabet (with duplicates) so that shapes repeat; a rule on `/e1` edits one
            /// object alone.
            #[test]
            fn alike_objects_compare_as_they_do_alone(
                pool_p in proptest::collection::vec(proptest::collection::vec("[abcdz]", 0..6), 1..3),
                pool_c in proptest::collection::vec(proptest::collection::vec("[abcdz]", 0..6), 1..3),
                picks in proptest::collection::vec(
                    (0..3usize, 0..3usize, proptest::collection::vec(0..4usize, 12)),
                    1..6,
                ),
            ) {
                const VALUES: [&str; 4] = ["1", "2", "\"x\"", "\"y\""];
                let object = |keys: &[String], values: &[usize]| {
                    let members: Vec<String> = keys
                        .iter()
                        .zip(values)
                        .map(|(k, &v)| format!("\"{k}\": {}", VALUES[v]))
                        .collect();
                    format!("{{{}}}", members.join(", "))
                };
                let r = rules(json!({"defaults": {
                    "primary": {"rename": {"z": "a"}},
                    "candidate": {"rename": {"a": "b", "/e1/c": "z"},
                                  "map_values": {"c": {"x": "y"}},
                                  "drop": ["d"]}}}));
                let mut whole_p = Vec::new();
                let mut whole_c = Vec::new();
                let mut alone = Vec::new();
                for (i, (sp, sc, values)) in picks.iter().enumerate() {
                    let p = format!("\"e{i}\": {}", object(&pool_p[sp % pool_p.len()], &values[..6]));
                    let c = format!("\"e{i}\": {}", object(&pool_c[sc % pool_c.len()], &values[6..]));
                    alone.extend(run_on(&r, "GET", "/p", &format!("{{{p}}}"), &format!("{{{c}}}")).differences);
                    whole_p.push(p);
                    whole_c.push(c);
                }
                let whole = run_on(
                    &r,
                    "GET",
                    "/p",
                    &format!("{{{}}}", whole_p.join(", ")),
                    &format!("{{{}}}", whole_c.join(",")),
                );
                prop_assert_eq!(whole.differences, alone);
            }

            #[test]
            fn trim_name_is_trim(name in "\\s?[ -~\u{a0}\u{2003}é]{0,6}\\s?") {
                prop_assert_eq!(trim_name(&name), name.trim());
            }

            #[test]
            fn secrets_never_leak(secret in "[A-Z]{12}", other in "[A-Z]{12}", v in arb_json()) {
                prop_assume!(secret != other);
                let p = json!({"password": secret, "data": v, "nested": [{"refresh_token": secret}]});
                let c = json!({"password": other, "data": 1, "nested": [{"refresh_token": other}], "secret": secret});
                let out = run(&RuleSet::default(), p, c);
                let text = serde_json::to_string(&out).unwrap();
                prop_assert!(!text.contains(&secret) && !text.contains(&other), "{}", text);
            }
        }
    }
}
