//! Audit-log consistency between the two gateways: parsing both audit formats, mapping their
//! actions onto common names, and matching entries by order id.
//!
//! Pure like the rest of this crate: it takes the logs' text and returns values; reading files
//! and writing the run directory are the caller's job.
//!
//! # Design decisions
//!
//! **Formats** (veloz-api.md §6). *Python*: `YYYY-MM-DD HH:MM:SS [AUDIT] <msg>` lines, where
//! `<msg>` is a JSON object for data actions (`{"action","user","auth_method","ip",…}`) and
//! free text for logins, auth failures and rate limits; a free-text message is read as an
//! action word followed by `key=value` words (`login_success user=admin ip=…`). Lines of
//! other loggers (no `[AUDIT]` tag) are skipped and counted, since the Python gateway writes
//! its audit lines to stderr among everything else. *C++*: NDJSON objects
//! `{"timestamp","type","action","user_id","ip_address"[,"request_id"][,"details":{}]}`.
//! Every entry becomes an action, a user and a flat map of string fields, so the rest does
//! not care where it came from. [`detect_format`] tells the two apart from the first line
//! that looks like either.
//!
//! **Bad lines are data, not errors.** A line that carries the audit tag (or, in NDJSON, any
//! line) but cannot be read is counted with its `source:line` and a reason; parsing goes on.
//! A torn last line (no final newline — the writer was killed mid-line) is counted apart.
//!
//! **Actions** map onto a common name per [`AuditRules`] (`place_order` ↔ `ORDER_SUBMIT` is
//! `ORDER_SUBMIT`); an action no rule names is counted per side, not compared.
//!
//! **Matching.** An entry whose fields hold an order id (the first of `id_fields` present;
//! a comma-separated or JSON-array list gives one logical entry per id, so one bulk cancel
//! matches several single cancels) is keyed by (action, id). The candidate's id is first
//! translated to the primary's through the run's id map ([`IdMap`]); an id the map does not
//! know is used as it is (clients that send their own ids get the same id on both sides),
//! and counted. Entries without an id are keyed by (action, user). Within a key, the n-th
//! primary entry pairs with the n-th candidate entry (log order); the rest are `missing` or
//! `extra`. Paired entries compare the configured fields: numbers numerically (relative
//! tolerance), listed fields case-insensitively, the rest as text; a field absent on one
//! side differs from any value.
//!
//! **Findings** carry a signature (FNV-1a 64 of `AUDIT`, the route `audit:<ACTION>`, the
//! field and the kind, as the comparison engine's signatures) so a report groups them.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use crate::value::Fnv;

/// Which gateway's audit format a log is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditFormat {
    /// `YYYY-MM-DD HH:MM:SS [AUDIT] <msg>` lines (the Python gateway).
    Python,
    /// NDJSON objects (the C++ gateway's `audit-YYYY-MM-DD.log` files).
    Cpp,
}

impl AuditFormat {
    /// `python` or `cpp`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditFormat::Python => "python",
            AuditFormat::Cpp => "cpp",
        }
    }
}

/// The tag between the timestamp and the message of a Python audit line.
const PY_TAG: &str = " [AUDIT] ";

/// Guesses the format from the first line that looks like either; `None` when no line does.
pub fn detect_format(text: &str) -> Option<AuditFormat> {
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('{') {
            return Some(AuditFormat::Cpp);
        }
        if python_prefix(line).is_some() {
            return Some(AuditFormat::Python);
        }
    }
    None
}

/// One audit entry, whichever format it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// Where it came from (a file name).
    pub source: Arc<str>,
    /// 1-based line number in `source`.
    pub line: usize,
    /// The timestamp as written.
    pub ts: String,
    /// The action as written (`place_order`, `ORDER_SUBMIT`, `login_success`).
    pub action: String,
    /// The acting user, if the entry names one.
    pub user: Option<String>,
    /// Every other field as text (C++ `details` are flattened in; `type`, `ip`, … too).
    pub fields: BTreeMap<String, String>,
}

impl AuditEntry {
    /// `source:line`.
    pub fn location(&self) -> String {
        format!("{}:{}", self.source, self.line)
    }

    /// A field by name; `user` is the entry's user.
    pub fn field(&self, name: &str) -> Option<&str> {
        if name == "user" {
            return self.user.as_deref();
        }
        self.fields.get(name).map(String::as_str)
    }
}

/// A line that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// The file it is in.
    pub source: Arc<str>,
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for BadLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.source, self.line, self.reason)
    }
}

/// Everything read from one side's log (one file or several, in order).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParsedLog {
    /// The entries, in log order.
    pub entries: Vec<AuditEntry>,
    /// Lines that are not audit lines (other loggers on the Python gateway's stderr).
    pub skipped: usize,
    /// Audit lines that could not be read.
    pub unparseable: Vec<BadLine>,
    /// Torn last lines (a file not ending in a newline whose last line does not parse).
    pub torn: Vec<BadLine>,
}

impl ParsedLog {
    /// Parses one file's text and appends what it holds.
    pub fn add(&mut self, source: &str, text: &str, format: AuditFormat) {
        let source: Arc<str> = Arc::from(source);
        let complete = text.is_empty() || text.ends_with('\n');
        let count = text.lines().count();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim_end_matches('\r');
            if line.trim().is_empty() {
                continue;
            }
            let parsed = match format {
                AuditFormat::Python => parse_python_line(line),
                AuditFormat::Cpp => parse_cpp_line(line).map(Some),
            };
            match parsed {
                Ok(Some(mut e)) => {
                    e.source = Arc::clone(&source);
                    e.line = i + 1;
                    self.entries.push(e);
                }
                Ok(None) => self.skipped += 1,
                Err(reason) => {
                    let bad = BadLine {
                        source: Arc::clone(&source),
                        line: i + 1,
                        reason,
                    };
                    if !complete && i + 1 == count {
                        self.torn.push(bad);
                    } else {
                        self.unparseable.push(bad);
                    }
                }
            }
        }
    }
}

/// `YYYY-MM-DD HH:MM:SS` then the tag: returns (timestamp, message).
fn python_prefix(line: &str) -> Option<(&str, &str)> {
    let b = line.as_bytes();
    if b.len() < 19 + PY_TAG.len() {
        return None;
    }
    let shape = b"dddd-dd-dd dd:dd:dd";
    let ok = shape.iter().zip(b).all(|(s, c)| match s {
        b'd' => c.is_ascii_digit(),
        other => other == c,
    });
    if !ok {
        return None;
    }
    let rest = line.get(19..)?;
    // Python's logging may add milliseconds (`,123`) depending on the format; accept them.
    let rest = match rest.strip_prefix(',') {
        Some(r) => r.trim_start_matches(|c: char| c.is_ascii_digit()),
        None => rest,
    };
    let msg = rest.strip_prefix(PY_TAG)?;
    Some((line.get(..19)?, msg))
}

fn json_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Array(items) => items.iter().map(json_text).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// A Python line: `Ok(None)` when it is not an audit line.
fn parse_python_line(line: &str) -> Result<Option<AuditEntry>, String> {
    let Some((ts, msg)) = python_prefix(line) else {
        if line.contains("[AUDIT]") {
            return Err("an [AUDIT] line without a `YYYY-MM-DD HH:MM:SS` timestamp".into());
        }
        return Ok(None);
    };
    let msg = msg.trim();
    let mut entry = AuditEntry {
        source: Arc::from(""),
        line: 0,
        ts: ts.to_owned(),
        action: String::new(),
        user: None,
        fields: BTreeMap::new(),
    };
    if msg.starts_with('{') {
        let obj = match serde_json::from_str::<Value>(msg) {
            Ok(Value::Object(map)) => map,
            Ok(_) => return Err("the message is not a JSON object".into()),
            Err(e) => return Err(format!("the JSON message does not parse: {e}")),
        };
        for (k, v) in obj {
            match k.as_str() {
                "action" => entry.action = json_text(&v),
                "user" => entry.user = Some(json_text(&v)).filter(|u| !u.is_empty()),
                _ => {
                    entry.fields.insert(k, json_text(&v));
                }
            }
        }
        if entry.action.is_empty() {
            return Err("the JSON message has no `action`".into());
        }
    } else {
        // Free text: an action word, then `key=value` words; other words are kept as `text`.
        let mut words = msg.split_whitespace();
        let Some(first) = words.next() else {
            return Err("an empty [AUDIT] message".into());
        };
        entry.action = first.trim_end_matches(':').to_owned();
        let mut text = Vec::new();
        for w in words {
            match w.split_once('=') {
                Some(("user" | "user_id", v)) => entry.user = Some(v.to_owned()),
                Some((k, v)) if !k.is_empty() => {
                    entry.fields.insert(k.to_owned(), v.to_owned());
                }
                _ => text.push(w),
            }
        }
        if !text.is_empty() {
            entry.fields.insert("text".into(), text.join(" "));
        }
    }
    Ok(Some(entry))
}

/// A C++ NDJSON line.
fn parse_cpp_line(line: &str) -> Result<AuditEntry, String> {
    let obj = match serde_json::from_str::<Value>(line) {
        Ok(Value::Object(map)) => map,
        Ok(_) => return Err("not a JSON object".into()),
        Err(e) => return Err(format!("not JSON: {e}")),
    };
    let mut entry = AuditEntry {
        source: Arc::from(""),
        line: 0,
        ts: String::new(),
        action: String::new(),
        user: None,
        fields: BTreeMap::new(),
    };
    for (k, v) in obj {
        match k.as_str() {
            "timestamp" => entry.ts = json_text(&v),
            "action" => entry.action = json_text(&v),
            "user_id" => entry.user = Some(json_text(&v)).filter(|u| !u.is_empty()),
            "ip_address" => {
                entry.fields.insert("ip".into(), json_text(&v));
            }
            "details" => match v {
                Value::Object(d) => {
                    for (dk, dv) in d {
                        entry.fields.insert(dk, json_text(&dv));
                    }
                }
                Value::Null => {}
                _ => return Err("`details` is not an object".into()),
            },
            _ => {
                entry.fields.insert(k, json_text(&v));
            }
        }
    }
    if entry.action.is_empty() {
        return Err("no `action`".into());
    }
    Ok(entry)
}

// ---------------------------------------------------------------------------------------------
// Id map
// ---------------------------------------------------------------------------------------------

/// The learned order-id map of a run: candidate id → primary id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdMap {
    to_primary: HashMap<String, String>,
}

/// A line of an id-map file that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct IdMapError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

impl IdMap {
    /// Adds a pair.
    pub fn insert(&mut self, primary: impl Into<String>, candidate: impl Into<String>) {
        self.to_primary.insert(candidate.into(), primary.into());
    }

    /// The primary's id for a candidate id.
    pub fn primary_of(&self, candidate: &str) -> Option<&str> {
        self.to_primary.get(candidate).map(String::as_str)
    }

    /// How many pairs are known.
    pub fn len(&self) -> usize {
        self.to_primary.len()
    }

    /// Whether no pair is known.
    pub fn is_empty(&self) -> bool {
        self.to_primary.is_empty()
    }

    /// Reads `ids.ndjson`: `{"kind":"order","primary":"…","candidate":"…"}` lines (other kinds
    /// and other fields are ignored; a line without `kind` counts as an order). A torn last
    /// line is skipped and returned as a warning; any other bad line is an error.
    ///
    /// # Errors
    /// The first line that is not such an object.
    pub fn parse_ndjson(text: &str) -> Result<(IdMap, Option<IdMapError>), IdMapError> {
        let mut map = IdMap::default();
        let complete = text.is_empty() || text.ends_with('\n');
        let count = text.lines().count();
        let mut torn = None;
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let err = |reason: String| IdMapError {
                line: i + 1,
                reason,
            };
            let parsed = match serde_json::from_str::<Value>(line) {
                Ok(Value::Object(o)) => Ok(o),
                Ok(_) => Err(err("not a JSON object".into())),
                Err(e) => Err(err(format!("not JSON: {e}"))),
            };
            let obj = match parsed {
                Ok(o) => o,
                Err(e) if !complete && i + 1 == count => {
                    torn = Some(e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("order");
            if kind != "order" {
                continue;
            }
            match (
                obj.get("primary").and_then(Value::as_str),
                obj.get("candidate").and_then(Value::as_str),
            ) {
                (Some(p), Some(c)) => map.insert(p, c),
                _ => {
                    return Err(err(
                        "an order line needs string fields `primary` and `candidate`".into(),
                    ));
                }
            }
        }
        Ok((map, torn))
    }
}

// ---------------------------------------------------------------------------------------------
// Rules
// ---------------------------------------------------------------------------------------------

/// The `[audit]` table as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuditRules {
    /// Action mappings; empty: the VeloZ defaults.
    #[serde(default)]
    pub actions: Vec<RawAuditAction>,
    /// Fields that hold an order id, tried in order.
    pub id_fields: Option<Vec<String>>,
    /// Fields compared between paired entries (`user` is the acting user), unless an action
    /// lists its own.
    pub compare: Option<Vec<String>>,
    /// Compared field name → the primary's field name, where they differ.
    #[serde(default)]
    pub primary_fields: BTreeMap<String, String>,
    /// Compared field name → the candidate's field name, where they differ.
    #[serde(default)]
    pub candidate_fields: BTreeMap<String, String>,
    /// Compared fields whose text is compared case-insensitively (`BUY` = `buy`).
    pub ignore_case: Option<Vec<String>>,
    /// Relative tolerance for numeric fields.
    pub tolerance: Option<f64>,
    /// `count` (default): actions no mapping names are counted; `report`: each is also a
    /// finding (missing or extra).
    pub unmapped: Option<String>,
}

/// One action mapping as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuditAction {
    /// The common name (reported as route `audit:<name>`).
    pub name: String,
    /// The primary's action names.
    pub primary: Vec<String>,
    /// The candidate's action names.
    pub candidate: Vec<String>,
    /// Fields compared for this action (default: the table's `compare`).
    pub compare: Option<Vec<String>>,
}

/// Validated audit rules. `Default` is the VeloZ mapping (Python primary, C++ candidate).
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRules {
    primary: HashMap<String, usize>,
    candidate: HashMap<String, usize>,
    names: Vec<String>,
    /// Per common action (index as `names`): the fields compared.
    per_action: Vec<Vec<String>>,
    id_fields: Vec<String>,
    primary_fields: BTreeMap<String, String>,
    candidate_fields: BTreeMap<String, String>,
    ignore_case: Vec<String>,
    tolerance: f64,
    report_unmapped: bool,
}

/// One VeloZ action mapping: common name, Python actions, C++ actions, and the fields
/// compared when not the table's default (what both gateways log for that action).
pub type VelozAction = (
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
    Option<&'static [&'static str]>,
);

/// Only the acting user: what every gateway logs for reads, cancels and logins (a C++ bulk
/// cancel names no symbol).
const USER_ONLY: Option<&[&str]> = Some(&["user"]);

/// The VeloZ action mapping (Python primary, C++ candidate).
pub const VELOZ_ACTIONS: &[VelozAction] = &[
    ("ORDER_SUBMIT", &["place_order"], &["ORDER_SUBMIT"], None),
    (
        "ORDER_CANCEL",
        &["cancel_order"],
        &["ORDER_CANCEL", "ORDER_BULK_CANCEL"],
        USER_ONLY,
    ),
    (
        "ORDER_QUERY",
        &["get_order_state"],
        &["ORDER_QUERY"],
        USER_ONLY,
    ),
    (
        "ORDERS_LIST",
        &["list_orders", "list_orders_state"],
        &["ORDERS_LIST"],
        USER_ONLY,
    ),
    (
        "ACCOUNT_QUERY",
        &["get_account"],
        &["ACCOUNT_QUERY"],
        USER_ONLY,
    ),
    (
        "API_KEY_CREATE",
        &["create_api_key"],
        &["api_key_created"],
        USER_ONLY,
    ),
    (
        "API_KEY_LIST",
        &["list_api_keys"],
        &["api_keys_listed"],
        USER_ONLY,
    ),
    (
        "API_KEY_REVOKE",
        &["revoke_api_key"],
        &["api_key_revoked"],
        USER_ONLY,
    ),
    // The C++ gateway takes any user name with the admin password (§2): users may differ.
    (
        "LOGIN_SUCCESS",
        &["login_success"],
        &["login_success"],
        Some(&[]),
    ),
    (
        "LOGIN_FAILED",
        &["login_failed"],
        &["login_failed"],
        Some(&[]),
    ),
    // Authentication failures and rate-limit hits (free text in Python). The two gateways'
    // limiters key their buckets differently (§3), so these may legitimately differ.
    ("AUTH_FAILED", &["auth_failed"], &["auth_failed"], Some(&[])),
    (
        "RATE_LIMITED",
        &["rate_limited"],
        &["rate_limit_exceeded"],
        Some(&[]),
    ),
];

impl Default for AuditRules {
    fn default() -> Self {
        match RawAuditRules::default().validate() {
            Ok(r) => r,
            // The defaults are valid (a unit test checks); an empty rule set keeps this total.
            Err(_) => AuditRules {
                primary: HashMap::new(),
                candidate: HashMap::new(),
                names: Vec::new(),
                per_action: Vec::new(),
                id_fields: Vec::new(),
                primary_fields: BTreeMap::new(),
                candidate_fields: BTreeMap::new(),
                ignore_case: Vec::new(),
                tolerance: 0.0,
                report_unmapped: false,
            },
        }
    }
}

impl RawAuditRules {
    /// Checks every value; returns all problems at once (each naming its key).
    ///
    /// # Errors
    /// One message per problem.
    pub fn validate(self) -> Result<AuditRules, Vec<String>> {
        let mut problems = Vec::new();
        let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<String>>();
        let actions: Vec<RawAuditAction> = if self.actions.is_empty() {
            VELOZ_ACTIONS
                .iter()
                .map(|(n, p, c, cmp)| RawAuditAction {
                    name: (*n).to_owned(),
                    primary: owned(p),
                    candidate: owned(c),
                    compare: cmp.map(owned),
                })
                .collect()
        } else {
            self.actions
        };
        let compare = self
            .compare
            .unwrap_or_else(|| owned(&["symbol", "side", "qty", "price", "user"]));
        let mut names = Vec::new();
        let mut per_action = Vec::new();
        let mut primary = HashMap::new();
        let mut candidate = HashMap::new();
        for (i, a) in actions.into_iter().enumerate() {
            let RawAuditAction {
                name,
                primary: p,
                candidate: c,
                compare: cmp,
            } = a;
            per_action.push(cmp.unwrap_or_else(|| compare.clone()));
            if name.trim().is_empty() {
                problems.push(format!("audit.actions[{i}].name: is empty"));
            }
            if names.contains(&name) {
                problems.push(format!("audit.actions[{i}].name: `{name}` is listed twice"));
            }
            if p.is_empty() && c.is_empty() {
                problems.push(format!(
                    "audit.actions[{i}]: names no primary and no candidate action"
                ));
            }
            for (side, list, map) in [
                ("primary", p, &mut primary),
                ("candidate", c, &mut candidate),
            ] {
                for a in list {
                    if map.insert(a.clone(), names.len()).is_some() {
                        problems.push(format!(
                            "audit.actions[{i}].{side}: `{a}` is already mapped by an earlier action"
                        ));
                    }
                }
            }
            names.push(name);
        }
        let list = |v: Option<Vec<String>>, d: &[&str]| {
            v.unwrap_or_else(|| d.iter().map(|s| (*s).to_owned()).collect())
        };
        let id_fields = list(
            self.id_fields,
            &["client_order_id", "order_id", "order_ids"],
        );
        for (key, map) in [
            ("primary_fields", &self.primary_fields),
            ("candidate_fields", &self.candidate_fields),
        ] {
            for k in map.keys() {
                if !per_action.iter().any(|c| c.contains(k)) {
                    problems.push(format!(
                        "audit.{key}.{k}: `{k}` is not in `compare`, so renaming it has no effect"
                    ));
                }
            }
        }
        let tolerance = self.tolerance.unwrap_or(1e-9);
        if !(tolerance.is_finite() && tolerance >= 0.0) {
            problems.push(format!(
                "audit.tolerance: {tolerance} is not a finite number >= 0"
            ));
        }
        let report_unmapped = match self.unmapped.as_deref() {
            None | Some("count") => false,
            Some("report") => true,
            Some(other) => {
                problems.push(format!(
                    "audit.unmapped: `{other}` is not one of `count`, `report`"
                ));
                false
            }
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(AuditRules {
            primary,
            candidate,
            names,
            per_action,
            id_fields,
            primary_fields: self.primary_fields,
            candidate_fields: self.candidate_fields,
            ignore_case: list(self.ignore_case, &["side"]),
            tolerance,
            report_unmapped,
        })
    }
}

impl AuditRules {
    /// The common name of an action on one side.
    pub fn common_name(&self, side: Side, action: &str) -> Option<&str> {
        let map = match side {
            Side::Primary => &self.primary,
            Side::Candidate => &self.candidate,
        };
        map.get(action).map(|&i| self.names[i].as_str())
    }
}

/// Which gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The primary.
    Primary,
    /// The candidate.
    Candidate,
}

// ---------------------------------------------------------------------------------------------
// Matching
// ---------------------------------------------------------------------------------------------

/// What kind of inconsistency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FindingKind {
    /// The primary logged it; the candidate did not.
    Missing,
    /// Only the candidate logged it.
    Extra,
    /// Both logged it; a compared field differs.
    Mismatch,
}

impl FindingKind {
    /// `audit-missing`, `audit-extra`, `audit-mismatch` (the run directory's kind names).
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::Missing => "audit-missing",
            FindingKind::Extra => "audit-extra",
            FindingKind::Mismatch => "audit-mismatch",
        }
    }
}

/// One inconsistency.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// What kind.
    pub kind: FindingKind,
    /// The common action name (route `audit:<action>`).
    pub action: String,
    /// The order id (the primary's), if the entry is about an order.
    pub order_id: Option<String>,
    /// The candidate's own id for that order, when it differs.
    pub candidate_order_id: Option<String>,
    /// The differing field (mismatches), as a JSON Pointer (`/qty`); `""` for a whole entry.
    pub path: String,
    /// The primary's value (a field's text, or the whole entry for `missing`).
    pub primary: Value,
    /// The candidate's value.
    pub candidate: Value,
    /// `source:line` of the primary's entry.
    pub primary_at: Option<String>,
    /// `source:line` of the candidate's entry.
    pub candidate_at: Option<String>,
    /// Groups alike findings (16 hex digits when printed).
    pub signature: u64,
}

/// Counts per common action.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ActionCounts {
    /// Logical entries on the primary (a bulk entry counts once per id).
    pub primary: usize,
    /// Logical entries on the candidate.
    pub candidate: usize,
    /// Pairs whose compared fields agree.
    pub matched: usize,
    /// Primary entries without a candidate counterpart.
    pub missing: usize,
    /// Candidate entries without a primary counterpart.
    pub extra: usize,
    /// Pairs with at least one differing field.
    pub mismatched: usize,
}

/// The result of comparing two logs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditReport {
    /// Every inconsistency, by action, then key, then log order.
    pub findings: Vec<Finding>,
    /// Per common action.
    pub actions: BTreeMap<String, ActionCounts>,
    /// Primary actions no mapping names, with counts.
    pub unmapped_primary: BTreeMap<String, usize>,
    /// Candidate actions no mapping names, with counts.
    pub unmapped_candidate: BTreeMap<String, usize>,
    /// Candidate order ids the id map did not know (used as they are).
    pub unmapped_ids: usize,
}

impl AuditReport {
    /// Whether the logs agree (no finding).
    pub fn is_consistent(&self) -> bool {
        self.findings.is_empty()
    }

    /// Totals over every action.
    pub fn totals(&self) -> ActionCounts {
        let mut t = ActionCounts::default();
        for c in self.actions.values() {
            t.primary += c.primary;
            t.candidate += c.candidate;
            t.matched += c.matched;
            t.missing += c.missing;
            t.extra += c.extra;
            t.mismatched += c.mismatched;
        }
        t
    }
}

/// Key of a logical entry: common action index, then the order id or the user.
type Key = (usize, KeyPart);

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum KeyPart {
    Order(String),
    User(Option<String>),
}

struct Logical<'a> {
    entry: &'a AuditEntry,
    /// The side's own id.
    own_id: Option<String>,
}

fn split_ids(text: &str) -> Vec<String> {
    let t = text.trim().trim_start_matches('[').trim_end_matches(']');
    t.split(',')
        .map(|s| s.trim().trim_matches('"').trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

fn signature(action: &str, path: &str, kind: FindingKind) -> u64 {
    let mut h = Fnv::new();
    h.write(b"AUDIT")
        .sep()
        .write(b"audit:")
        .write(action.as_bytes())
        .sep()
        .write(path.as_bytes())
        .sep()
        .write(kind.as_str().as_bytes());
    h.finish()
}

fn entry_value(e: &AuditEntry, id: Option<&str>) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("action".into(), Value::String(e.action.clone()));
    if let Some(id) = id {
        m.insert("order_id".into(), Value::String(id.to_owned()));
    }
    if let Some(u) = &e.user {
        m.insert("user".into(), Value::String(u.clone()));
    }
    m.insert("at".into(), Value::String(e.location()));
    Value::Object(m)
}

/// Compares two parsed logs.
pub fn compare_logs(
    rules: &AuditRules,
    primary: &ParsedLog,
    candidate: &ParsedLog,
    ids: &IdMap,
) -> AuditReport {
    let mut report = AuditReport::default();
    let mut sides: [BTreeMap<Key, Vec<Logical<'_>>>; 2] = [BTreeMap::new(), BTreeMap::new()];
    for (side, log, slot) in [
        (Side::Primary, primary, 0usize),
        (Side::Candidate, candidate, 1usize),
    ] {
        let map = match side {
            Side::Primary => &rules.primary,
            Side::Candidate => &rules.candidate,
        };
        for e in &log.entries {
            let Some(&action) = map.get(&e.action) else {
                let unmapped = match side {
                    Side::Primary => &mut report.unmapped_primary,
                    Side::Candidate => &mut report.unmapped_candidate,
                };
                *unmapped.entry(e.action.clone()).or_default() += 1;
                if rules.report_unmapped {
                    let (kind, p, c) = match side {
                        Side::Primary => (FindingKind::Missing, entry_value(e, None), Value::Null),
                        Side::Candidate => (FindingKind::Extra, Value::Null, entry_value(e, None)),
                    };
                    report.findings.push(Finding {
                        kind,
                        action: e.action.clone(),
                        order_id: None,
                        candidate_order_id: None,
                        path: String::new(),
                        primary: p,
                        candidate: c,
                        primary_at: (side == Side::Primary).then(|| e.location()),
                        candidate_at: (side == Side::Candidate).then(|| e.location()),
                        signature: signature(&e.action, "", kind),
                    });
                }
                continue;
            };
            let id_text = rules.id_fields.iter().find_map(|f| e.fields.get(f));
            let ids_here = id_text.map(|t| split_ids(t)).unwrap_or_default();
            if ids_here.is_empty() {
                sides[slot]
                    .entry((action, KeyPart::User(e.user.clone())))
                    .or_default()
                    .push(Logical {
                        entry: e,
                        own_id: None,
                    });
                continue;
            }
            for own in ids_here {
                let primary_id = match side {
                    Side::Primary => own.clone(),
                    Side::Candidate => match ids.primary_of(&own) {
                        Some(p) => p.to_owned(),
                        None => {
                            report.unmapped_ids += 1;
                            own.clone()
                        }
                    },
                };
                sides[slot]
                    .entry((action, KeyPart::Order(primary_id)))
                    .or_default()
                    .push(Logical {
                        entry: e,
                        own_id: Some(own),
                    });
            }
        }
    }
    let [mut p_side, mut c_side] = sides;
    let mut keys: Vec<Key> = p_side.keys().chain(c_side.keys()).cloned().collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let ps = p_side.remove(&key).unwrap_or_default();
        let cs = c_side.remove(&key).unwrap_or_default();
        let name = rules.names[key.0].clone();
        let counts = report.actions.entry(name.clone()).or_default();
        counts.primary += ps.len();
        counts.candidate += cs.len();
        let order_id = match &key.1 {
            KeyPart::Order(id) => Some(id.clone()),
            KeyPart::User(_) => None,
        };
        let n = ps.len().max(cs.len());
        for i in 0..n {
            match (ps.get(i), cs.get(i)) {
                (Some(p), Some(c)) => {
                    let before = report.findings.len();
                    compare_pair(
                        rules,
                        key.0,
                        &name,
                        order_id.as_deref(),
                        p,
                        c,
                        &mut report.findings,
                    );
                    let counts = report.actions.entry(name.clone()).or_default();
                    if report.findings.len() > before {
                        counts.mismatched += 1;
                    } else {
                        counts.matched += 1;
                    }
                }
                (Some(p), None) => {
                    report.actions.entry(name.clone()).or_default().missing += 1;
                    report.findings.push(Finding {
                        kind: FindingKind::Missing,
                        action: name.clone(),
                        order_id: order_id.clone(),
                        candidate_order_id: None,
                        path: String::new(),
                        primary: entry_value(p.entry, p.own_id.as_deref()),
                        candidate: Value::Null,
                        primary_at: Some(p.entry.location()),
                        candidate_at: None,
                        signature: signature(&name, "", FindingKind::Missing),
                    });
                }
                (None, Some(c)) => {
                    report.actions.entry(name.clone()).or_default().extra += 1;
                    report.findings.push(Finding {
                        kind: FindingKind::Extra,
                        action: name.clone(),
                        order_id: order_id.clone(),
                        candidate_order_id: c
                            .own_id
                            .clone()
                            .filter(|o| Some(o) != order_id.as_ref()),
                        path: String::new(),
                        primary: Value::Null,
                        candidate: entry_value(c.entry, c.own_id.as_deref()),
                        primary_at: None,
                        candidate_at: Some(c.entry.location()),
                        signature: signature(&name, "", FindingKind::Extra),
                    });
                }
                (None, None) => {}
            }
        }
    }
    report
}

fn field_of<'e>(rules: &AuditRules, side: Side, name: &str, e: &'e AuditEntry) -> Option<&'e str> {
    let renames = match side {
        Side::Primary => &rules.primary_fields,
        Side::Candidate => &rules.candidate_fields,
    };
    let raw = renames.get(name).map_or(name, String::as_str);
    e.field(raw)
}

fn values_agree(rules: &AuditRules, field: &str, p: &str, c: &str) -> bool {
    if p == c {
        return true;
    }
    if let (Ok(x), Ok(y)) = (p.trim().parse::<f64>(), c.trim().parse::<f64>()) {
        let scale = x.abs().max(y.abs()).max(f64::MIN_POSITIVE);
        return (x - y).abs() <= rules.tolerance * scale;
    }
    rules.ignore_case.iter().any(|f| f == field) && p.eq_ignore_ascii_case(c)
}

fn compare_pair(
    rules: &AuditRules,
    action: usize,
    name: &str,
    order_id: Option<&str>,
    p: &Logical<'_>,
    c: &Logical<'_>,
    out: &mut Vec<Finding>,
) {
    // The action itself agrees by construction (both entries map to the same common name).
    for field in &rules.per_action[action] {
        let pv = field_of(rules, Side::Primary, field, p.entry);
        let cv = field_of(rules, Side::Candidate, field, c.entry);
        let agree = match (pv, cv) {
            (None, None) => true,
            (Some(a), Some(b)) => values_agree(rules, field, a, b),
            _ => false,
        };
        if agree {
            continue;
        }
        let path = format!("/{field}");
        let text = |v: Option<&str>| v.map_or(Value::Null, |s| Value::String(s.to_owned()));
        out.push(Finding {
            kind: FindingKind::Mismatch,
            action: name.to_owned(),
            order_id: order_id.map(str::to_owned),
            candidate_order_id: c.own_id.clone().filter(|o| Some(o.as_str()) != order_id),
            signature: signature(name, &path, FindingKind::Mismatch),
            path,
            primary: text(pv),
            candidate: text(cv),
            primary_at: Some(p.entry.location()),
            candidate_at: Some(c.entry.location()),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PY: &str = r#"2026-11-29 12:00:00 [AUDIT] {"action": "place_order", "user": "admin", "auth_method": "disabled", "ip": "127.0.0.1", "client_order_id": "o1", "symbol": "BTCUSDT", "side": "BUY", "qty": 0.01, "price": 42000.0}
2026-11-29 12:00:00 INFO something else
2026-11-29 12:00:01 [AUDIT] {"action": "cancel_order", "user": "admin", "auth_method": "disabled", "ip": "127.0.0.1", "client_order_id": "o1", "symbol": "BTCUSDT"}
2026-11-29 12:00:02 [AUDIT] login_success user=admin ip=127.0.0.1
2026-11-29 12:00:03 [AUDIT] {"action": "get_account", "user": "admin", "auth_method": "disabled", "ip": "127.0.0.1"}
"#;

    const CPP: &str = r#"{"timestamp":"2026-11-29T12:00:00.120Z","type":"order","action":"ORDER_SUBMIT","user_id":"admin","ip_address":"127.0.0.1","details":{"client_order_id":"c1","symbol":"BTCUSDT","side":"buy","qty":"0.01","price":"42000"}}
{"timestamp":"2026-11-29T12:00:01.000Z","type":"order","action":"ORDER_BULK_CANCEL","user_id":"admin","ip_address":"127.0.0.1","details":{"order_ids":"c1","count":"1"}}
{"timestamp":"2026-11-29T12:00:02.000Z","type":"auth","action":"login_success","user_id":"admin","ip_address":"unknown"}
{"timestamp":"2026-11-29T12:00:03.000Z","type":"access","action":"ACCOUNT_QUERY","user_id":"admin","ip_address":"127.0.0.1"}
"#;

    fn parse(text: &str, f: AuditFormat) -> ParsedLog {
        let mut log = ParsedLog::default();
        log.add("log", text, f);
        log
    }

    fn ids() -> IdMap {
        let mut m = IdMap::default();
        m.insert("o1", "c1");
        m
    }

    #[test]
    fn detects_both_formats() {
        assert_eq!(detect_format(PY), Some(AuditFormat::Python));
        assert_eq!(detect_format(CPP), Some(AuditFormat::Cpp));
        assert_eq!(detect_format("hello\n"), None);
    }

    #[test]
    fn parses_python_json_and_free_text() {
        let log = parse(PY, AuditFormat::Python);
        assert_eq!(log.entries.len(), 4);
        assert_eq!(log.skipped, 1);
        let e = &log.entries[0];
        assert_eq!((e.action.as_str(), e.line), ("place_order", 1));
        assert_eq!(e.user.as_deref(), Some("admin"));
        assert_eq!(e.field("qty"), Some("0.01"));
        assert_eq!(e.field("price"), Some("42000.0"));
        let login = &log.entries[2];
        assert_eq!(login.action, "login_success");
        assert_eq!(login.field("ip"), Some("127.0.0.1"));
    }

    #[test]
    fn bad_lines_are_counted_with_their_line_and_torn_tail_apart() {
        let text = "2026-11-29 12:00:00 [AUDIT] {\"action\": \nok [AUDIT] x\n2026-11-29 12:00:00 [AUDIT] {\"act";
        let log = parse(text, AuditFormat::Python);
        assert_eq!(log.unparseable.len(), 2);
        assert_eq!(log.unparseable[0].line, 1);
        assert_eq!(log.unparseable[1].line, 2);
        assert_eq!(log.torn.len(), 1);
        assert_eq!(log.torn[0].line, 3);
        let log = parse("{\"action\":1}\n[1]\n{\"type\":\"x\"}\n", AuditFormat::Cpp);
        assert_eq!(log.entries.len(), 1);
        assert_eq!(log.unparseable.len(), 2);
        assert_eq!(log.unparseable[1].to_string(), "log:3: no `action`");
    }

    #[test]
    fn consistent_logs_through_the_id_map() {
        let rules = AuditRules::default();
        let r = compare_logs(
            &rules,
            &parse(PY, AuditFormat::Python),
            &parse(CPP, AuditFormat::Cpp),
            &ids(),
        );
        assert!(r.is_consistent(), "{:#?}", r.findings);
        let t = r.totals();
        assert_eq!((t.primary, t.candidate, t.matched), (4, 4, 4));
        assert_eq!(r.unmapped_ids, 0);
    }

    #[test]
    fn missing_extra_and_mismatch() {
        let rules = AuditRules::default();
        let cpp = CPP
            .replace("\"qty\":\"0.01\"", "\"qty\":\"0.02\"")
            .replace("ORDER_BULK_CANCEL", "SOMETHING_ELSE");
        let extra = format!(
            "{cpp}{}\n",
            r#"{"timestamp":"t","type":"access","action":"ACCOUNT_QUERY","user_id":"admin","ip_address":"127.0.0.1"}"#
        );
        let r = compare_logs(
            &rules,
            &parse(PY, AuditFormat::Python),
            &parse(&extra, AuditFormat::Cpp),
            &ids(),
        );
        let kinds: Vec<(FindingKind, &str, &str)> = r
            .findings
            .iter()
            .map(|f| (f.kind, f.action.as_str(), f.path.as_str()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (FindingKind::Mismatch, "ORDER_SUBMIT", "/qty"),
                (FindingKind::Missing, "ORDER_CANCEL", ""),
                (FindingKind::Extra, "ACCOUNT_QUERY", ""),
            ]
        );
        assert_eq!(r.findings[0].candidate_order_id.as_deref(), Some("c1"));
        assert_eq!(r.findings[0].candidate_at.as_deref(), Some("log:1"));
        assert_eq!(r.unmapped_candidate.get("SOMETHING_ELSE"), Some(&1));
        let t = r.totals();
        assert_eq!((t.missing, t.extra, t.mismatched), (1, 1, 1));
        // Same kind of difference, same group.
        assert_eq!(
            r.findings[0].signature,
            signature("ORDER_SUBMIT", "/qty", FindingKind::Mismatch)
        );
    }

    #[test]
    fn without_a_map_ids_are_used_as_they_are() {
        let rules = AuditRules::default();
        let r = compare_logs(
            &rules,
            &parse(PY, AuditFormat::Python),
            &parse(&CPP.replace("c1", "o1"), AuditFormat::Cpp),
            &IdMap::default(),
        );
        assert!(r.is_consistent());
        assert_eq!(r.unmapped_ids, 2);
    }

    #[test]
    fn id_map_file() {
        let text = "{\"kind\":\"order\",\"primary\":\"p\",\"candidate\":\"c\"}\n{\"kind\":\"venue\",\"primary\":\"a\",\"candidate\":\"b\"}\n{\"kind\":\"or";
        let (m, torn) = IdMap::parse_ndjson(text).unwrap();
        assert_eq!(m.primary_of("c"), Some("p"));
        assert_eq!(m.len(), 1);
        assert_eq!(torn.unwrap().line, 3);
        let err = IdMap::parse_ndjson("x\n{}\n").unwrap_err();
        assert_eq!(err.line, 1);
        let err = IdMap::parse_ndjson("{\"primary\":\"p\"}\n").unwrap_err();
        assert!(err.reason.contains("candidate"));
    }

    #[test]
    fn rules_validate_and_report_every_problem() {
        let r = RawAuditRules::default().validate().unwrap();
        assert_eq!(
            r.common_name(Side::Candidate, "ORDER_BULK_CANCEL"),
            Some("ORDER_CANCEL")
        );
        assert_eq!(r, AuditRules::default());
        let raw = RawAuditRules {
            actions: vec![
                RawAuditAction {
                    name: "A".into(),
                    primary: vec!["a".into()],
                    candidate: vec![],
                    compare: None,
                },
                RawAuditAction {
                    name: "A".into(),
                    primary: vec!["a".into()],
                    candidate: vec![],
                    compare: None,
                },
            ],
            tolerance: Some(-1.0),
            unmapped: Some("maybe".into()),
            primary_fields: [("nope".to_owned(), "x".to_owned())].into(),
            ..RawAuditRules::default()
        };
        let problems = raw.validate().unwrap_err();
        assert_eq!(problems.len(), 5, "{problems:#?}");
    }

    #[test]
    fn renamed_fields_and_case() {
        let raw = RawAuditRules {
            candidate_fields: [("symbol".to_owned(), "sym".to_owned())].into(),
            ..RawAuditRules::default()
        };
        let rules = raw.validate().unwrap();
        let cpp = CPP.replace("\"symbol\":", "\"sym\":");
        let r = compare_logs(
            &rules,
            &parse(PY, AuditFormat::Python),
            &parse(&cpp, AuditFormat::Cpp),
            &ids(),
        );
        assert!(r.is_consistent(), "{:#?}", r.findings);
    }
}
