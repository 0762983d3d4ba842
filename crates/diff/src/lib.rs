//! `shadowgate-diff`: the pure comparison engine of shadowgate.
//!
//! It takes one exchange — a request and the primary's and candidate's answers, as bytes —
//! and a validated [`RuleSet`], and returns typed [`Difference`]s. No sockets, no files, no
//! clock, no async: it can be unit-tested, benchmarked and fuzzed alone. Comparing never
//! fails; a body that is not JSON is itself something to compare.
//!
//! ```
//! use shadowgate_diff::{Class, Exchange, Kind, Response, RuleSet, compare};
//!
//! let rules = RuleSet::default();
//! let ct: &[(&str, &[u8])] = &[("Content-Type", b"application/json")];
//! let exchange = Exchange {
//!     method: "GET",
//!     path: "/api/market",
//!     request_body: b"",
//!     primary: Response { status: 200, headers: ct, body: br#"{"price": 42000}"# },
//!     candidate: Response { status: 200, headers: ct, body: br#"{"price": 42000.0, "x": 1}"# },
//! };
//! let cmp = compare(&rules, &exchange);
//! assert_eq!(cmp.differences.len(), 1); // 42000 == 42000.0; "x" is extra
//! assert_eq!(cmp.differences[0].kind, Kind::Extra);
//! assert_eq!(cmp.differences[0].path, "/x");
//! assert_eq!(cmp.differences[0].class, Class::Regression);
//! ```
//!
//! # Design decisions
//!
//! **Pipeline.** route lookup → status → compared headers → body: parse (JSON when it parses,
//! else UTF-8 text, else binary) → per-side normalization → walk. Differences come out in
//! that order, deterministically.
//!
//! **Paths.** Every difference has a JSON Pointer `path` into the *normalized primary* body
//! (`""` is the whole body; renamed fields appear under their new name). Headers are
//! `/headers/<lower-case name>` and the status is `/status` (the `kind` tells them apart from
//! body fields of the same name). Array elements use indices: a `missing` element and every
//! difference inside a matched element use the **primary's** index; an `extra` element uses
//! the **candidate's** index. In keyed arrays the index depends on each side's order, so the
//! element's key is put in `detail` (`client_order_id="web-1"`; nested keyed arrays give
//! `k1=…, k2=…`). `pattern` is the path with array indices written `*`
//! (`/items/*/price`).
//!
//! **Signatures** group alike differences across requests: FNV-1a 64 (fixed forever, so runs
//! from different builds group together) of method, route template, `pattern` and kind,
//! printed as 16 hex digits.
//!
//! **Classes.** `regression`, `noise` or `ignored`. A configured `ignore` pattern (matching
//! the path or an ancestor) gives `ignored`; a `noise` pattern, or a heuristic label listed in
//! `noise_labels`, gives `noise`; learned noise ([`NoiseModel`], the Diffy rule over a second
//! primary) turns regressions into `noise` after the fact. Nothing is dropped: an ignored
//! difference is still reported and counted as ignored, never as a match ([`Outcome`]).
//! `drop` in normalization is different: it removes a field before comparing (shape
//! alignment, e.g. a field one side never has) and is not counted.
//!
//! **Numbers** compare by value (`42000` = `42000.0`), exactly for two integers, as `f64`
//! otherwise, with an optional absolute/relative tolerance (default and per path). A string
//! against a number is a `type` difference.
//!
//! **Arrays** are positional by default, aligned with Myers' LCS over canonical element
//! hashes, so one inserted element is one `extra` (not a run of `value`s); when both sides
//! hold the same elements in another order the result is one `order` difference at the array
//! (`primary` = `[0, 1, …]`, `candidate` = the primary index found at each candidate position,
//! both cut at 64). Keyed arrays match elements by a key (field or pointer) and ignore order;
//! elements without the key are compared in order among themselves. Unordered arrays match
//! equal elements as a multiset and report the leftovers as `missing`/`extra`.
//!
//! **Normalization** per route and side, in a fixed order: unwrap an envelope (optionally only
//! when e.g. `/status` is `"success"`), rename fields, map enum values, drop fields, sort arrays
//! by key. Byte-identical bodies under symmetric rules are not even parsed.
//!
//! **Non-JSON bodies** get a `similar` line diff of the first `max_text_bytes` (64 KiB), at most
//! `max_text_hunks` hunks: one `text` difference with removed lines in `primary`, added lines
//! in `candidate` and a unified diff in `detail`. Bodies over `max_body_bytes` and binary
//! bodies are compared by length and SHA-256 only (`size`). JSON against text is a `type`
//! difference at `""`.
//!
//! **Headers** are compared case-insensitively, only those a rule lists (default:
//! `content-type`); hop-by-hop headers, `date`, `server` and `content-length` are never
//! compared (listing them is a rule error). A repeated header compares as its values joined
//! with `, `, so a duplicated header is visible.
//!
//! **Redaction** happens before a difference leaves [`Comparer::compare`]: values under a
//! secret field name are replaced with `"[redacted:<8 hex of SHA-256>]"`, secret fields inside
//! reported subtrees too, secret header values, and `name=value` secrets in text excerpts.
//! Equal secrets give equal tokens, so they still compare equal. [`Redactor`] is public for
//! other crates (capture files).
//!
//! **Labels** ([`Label`]) describe values that look generated — timestamps, UUIDs, counters,
//! generated ids — and never change the class on their own.
//!
//! **Route templates** (`/api/orders/{id}`) group results; the most specific matching template
//! wins (more literal segments). A path matching no rule is grouped under itself with id-like
//! segments replaced by `{id}`. Route rules also store what the mirror needs (methods, write
//! policy, sampling, candidate method/path/body translation); the comparison ignores those.
//!
//! **Hot path (a deliberate deviation from "parse into `serde_json::Value`").** Building a
//! `Value` allocates every key, string and map; for a 1 KiB order list that alone measured
//! ~4× the per-pair budget (≥ 200k pairs/s per core). Bodies are therefore parsed by a strict
//! RFC 8259 parser (property-tested against serde_json: same accepted inputs, same values,
//! last duplicate key wins, depth limit 128) into an arena: flat vectors of nodes, strings
//! borrowed from the body. Normalization edits the arena in place, and `Value`s are built only
//! for what a difference reports. A [`Comparer`] is reused per worker: it keeps the arenas of
//! both sides and its path buffers, and writes into a reused [`Comparison`]. Work that
//! depends only on structure is done once and reused: objects the parser finds with the
//! previous object's keys share a shape, so normalization edits and member matching are
//! replayed for list elements; what a difference's path shape decides (pattern, signature,
//! class, secrecy) is kept across comparisons under the identity of the [`RuleSet`] it was
//! learnt from, which the comparer holds so no other rule set can be taken for it. The public
//! [`Normalization::apply`] still works on a `Value` (for request bodies in the mirror) with
//! the same semantics, which a test checks.

#![warn(missing_docs)]

pub mod audit;
mod compare;
mod doc;
mod error;
pub mod flow;
mod labels;
mod noise;
mod normalize;
mod pointer;
mod redact;
mod route;
mod rules;
pub mod stream;
mod text;
mod value;

#[cfg(test)]
mod testutil;

pub use compare::{
    Class, Comparer, Comparison, Difference, Exchange, Kind, Outcome, Response, Signature, compare,
};
pub use error::{Error, RuleError};
pub use labels::{Label, label_pair};
pub use noise::{NoiseModel, NoiseThresholds, SignatureCounts, is_regression};
pub use normalize::{
    BodyMap, FieldSelector, KeySpec, Normalization, Rename, SortRule, Unwrap, ValueMap,
};
pub use pointer::{PathPattern, Pointer, escape_into};
pub use redact::{
    DEFAULT_SECRET_FIELDS, DEFAULT_SECRET_HEADERS, Redactor, is_redaction_token, redaction_token,
};
pub use route::{PathTemplate, RouteTemplate, generalize_path, path_only};
pub use rules::{
    ArrayMode, ArrayRule, CompareRules, DEFAULT_COMPARED_HEADERS, Limits, NEVER_COMPARED_HEADERS,
    RawArrayRule, RawBodyMap, RawCompare, RawLimits, RawNormalize, RawPathTolerance, RawRedact,
    RawRoute, RawRuleSet, RawTolerance, RequestTranslation, RouteMatch, RouteRule, RuleSet,
    SampleKey, Tolerance, WritePolicy,
};
