//! Heuristic labels for value pairs that look non-deterministic (veloz-api §8): timestamps,
//! UUIDs, generated ids and counters.
//!
//! A label only *describes* a difference; it never changes its class by itself. A rule set
//! can opt in to treating labelled differences as noise (`noise_labels`), which is a
//! configured decision, visible in the rules.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What a differing value pair looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Label {
    /// Both sides are timestamps (ISO 8601 text, epoch s/ms/µs/ns near 2026, or a field named
    /// like one: `*_ts_ns`, `*_at`, `timestamp`, …).
    Timestamp,
    /// Both sides are UUIDs.
    Uuid,
    /// Both sides are counters (integer fields named `id`, `_id`, `seq`, `*_count`, …).
    Counter,
    /// Both sides are generated ids of one shape (`web-<digits>`, `veloz_<n>_<n>`, `sim-N`,
    /// long hex, or string fields named `*_id` / `jti`).
    GeneratedId,
}

impl Label {
    /// The kebab-case name used in rules and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Label::Timestamp => "timestamp",
            Label::Uuid => "uuid",
            Label::Counter => "counter",
            Label::GeneratedId => "generated-id",
        }
    }

    /// Parses the kebab-case name.
    pub fn parse(text: &str) -> Option<Self> {
        [
            Label::Timestamp,
            Label::Uuid,
            Label::Counter,
            Label::GeneratedId,
        ]
        .into_iter()
        .find(|l| l.as_str() == text)
    }
}

/// Epoch seconds of 2016-01-01 and 2036-01-01: ±10 years around 2026.
const EPOCH_LO: f64 = 1_451_606_400.0;
const EPOCH_HI: f64 = 2_082_758_400.0;

/// Labels a differing pair `primary`/`candidate` found under field `field` (the nearest object
/// key on the path), or `None` when nothing about it looks generated.
pub fn label_pair(field: Option<&str>, primary: &Value, candidate: &Value) -> Option<Label> {
    let field = field.unwrap_or("");
    match (primary, candidate) {
        (Value::String(p), Value::String(c)) => {
            if is_uuid(p) && is_uuid(c) {
                Some(Label::Uuid)
            } else if is_iso8601(p) && is_iso8601(c)
                || timestamp_name(field) && !p.is_empty() && !c.is_empty()
            {
                Some(Label::Timestamp)
            } else if id_prefix(p).is_some_and(|pp| id_prefix(c) == Some(pp))
                || id_name(field) && !p.is_empty() && !c.is_empty()
            {
                Some(Label::GeneratedId)
            } else {
                None
            }
        }
        (Value::Number(p), Value::Number(c)) => {
            let (p, c) = (p.as_f64()?, c.as_f64()?);
            if timestamp_name(field) || is_epoch(p) && is_epoch(c) {
                Some(Label::Timestamp)
            } else if counter_name(field) && is_counter(p) && is_counter(c) {
                Some(Label::Counter)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// Epoch time in seconds, milliseconds, microseconds or nanoseconds within ±10 years of 2026.
fn is_epoch(x: f64) -> bool {
    [1.0, 1e3, 1e6, 1e9]
        .iter()
        .any(|scale| (EPOCH_LO * scale..=EPOCH_HI * scale).contains(&x))
}

fn is_counter(x: f64) -> bool {
    x >= 0.0 && x.fract() == 0.0 && x < 1e12
}

fn lower_ends_with(name: &str, suffix: &str) -> bool {
    name.len() >= suffix.len()
        && name.is_char_boundary(name.len() - suffix.len())
        && name[name.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
}

fn timestamp_name(name: &str) -> bool {
    ["ts", "timestamp", "time", "date"]
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n))
        || ["_ts", "_ns", "_at", "_time", "_timestamp", "_date"]
            .iter()
            .any(|s| lower_ends_with(name, s))
        || name.len() > "timestamp".len()
            && name
                .get(.."timestamp".len())
                .is_some_and(|p| p.eq_ignore_ascii_case("timestamp"))
}

fn id_name(name: &str) -> bool {
    ["id", "_id", "jti", "request_id"]
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n))
        || lower_ends_with(name, "_id")
}

fn counter_name(name: &str) -> bool {
    [
        "id", "_id", "seq", "sequence", "counter", "count", "n", "version",
    ]
    .iter()
    .any(|n| name.eq_ignore_ascii_case(n))
        || [
            "_id",
            "_count",
            "_seq",
            "_counter",
            "_seconds",
            "_total",
            "_processed",
        ]
        .iter()
        .any(|s| lower_ends_with(name, s))
}

/// `8-4-4-4-12` hex digits.
fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// `YYYY-MM-DD`, or `YYYY-MM-DD[T ]HH:MM[:SS[.frac]][Z|±HH[:]MM]`.
fn is_iso8601(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    if !(digits(0..4)
        && b.get(4) == Some(&b'-')
        && digits(5..7)
        && b.get(7) == Some(&b'-')
        && digits(8..10))
    {
        return false;
    }
    if b.len() == 10 {
        // A date alone.
        return true;
    }
    let time = matches!(b.get(10), Some(b'T' | b't' | b' '))
        && digits(11..13)
        && b.get(13) == Some(&b':')
        && digits(14..16);
    if !time {
        return false;
    }
    let mut i = 16;
    if b.get(i) == Some(&b':') {
        if !digits(i + 1..i + 3) {
            return false;
        }
        i += 3;
        if b.get(i) == Some(&b'.') || b.get(i) == Some(&b',') {
            i += 1;
            let start = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == start {
                return false;
            }
        }
    }
    match b.get(i) {
        None => true,
        Some(b'Z' | b'z') => i + 1 == b.len(),
        Some(b'+' | b'-') => {
            let tz = &b[i + 1..];
            tz.len() == 2 && digits(i + 1..i + 3)
                || tz.len() == 4 && digits(i + 1..i + 5)
                || tz.len() == 5 && digits(i + 1..i + 3) && tz[2] == b':' && digits(i + 4..i + 6)
        }
        _ => false,
    }
}

/// If `s` looks like a generated id, its prefix (letters plus one separator, possibly empty):
/// `web-1700000000000` → `web-`, `veloz_123_4` → `veloz_`, `sim-7` → `sim-`, a 32-hex `jti`
/// → ``. The tail must be digits (with `-`/`_` between groups) or at least 8 hex digits.
fn id_prefix(s: &str) -> Option<&str> {
    let letters = s.bytes().take_while(u8::is_ascii_alphabetic).count();
    if letters > 16 {
        return None;
    }
    let mut cut = letters;
    if matches!(s.as_bytes().get(cut), Some(b'-' | b'_')) {
        cut += 1;
    }
    let tail = &s[cut..];
    if tail.is_empty() {
        return None;
    }
    let digit_groups = tail
        .bytes()
        .all(|c| c.is_ascii_digit() || c == b'-' || c == b'_')
        && tail.as_bytes()[0].is_ascii_digit();
    let hex = tail.len() >= 8
        && tail.bytes().all(|c| c.is_ascii_hexdigit() || c == b'-')
        && tail.bytes().any(|c| c.is_ascii_digit());
    if !digit_groups && !hex {
        return None;
    }
    // When the "prefix" letters are hex themselves (`deadbeef01`), the split is ambiguous; the
    // letters then belong to the tail.
    if hex && !digit_groups && s.bytes().all(|c| c.is_ascii_hexdigit() || c == b'-') {
        return Some("");
    }
    Some(&s[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn timestamps() {
        let l = |f: Option<&str>, p: Value, c: Value| label_pair(f, &p, &c);
        assert_eq!(
            l(
                None,
                json!("2026-03-01T10:00:00Z"),
                json!("2026-03-01T10:00:01Z")
            ),
            Some(Label::Timestamp)
        );
        assert_eq!(
            l(
                None,
                json!("2026-03-01 10:00:00.123"),
                json!("2026-03-01T10:00:01+01:00")
            ),
            Some(Label::Timestamp)
        );
        assert_eq!(
            l(
                None,
                json!(1_767_225_600_123_456_789_u64),
                json!(1_767_225_600_223_456_789_u64)
            ),
            Some(Label::Timestamp)
        );
        assert_eq!(
            l(None, json!(1_767_225_600), json!(1_767_225_601)),
            Some(Label::Timestamp)
        );
        assert_eq!(
            l(
                None,
                json!(1_767_225_600_000_u64),
                json!(1_767_225_600_500_u64)
            ),
            Some(Label::Timestamp)
        );
        // A steady-clock value is not an epoch, but the field name says what it is.
        assert_eq!(
            l(Some("last_update_ns"), json!(123456), json!(999999)),
            Some(Label::Timestamp)
        );
        assert_eq!(
            l(Some("created_at"), json!("x"), json!("y")),
            Some(Label::Timestamp)
        );
        assert_eq!(l(None, json!(42000), json!(42001)), None);
        assert_eq!(
            l(None, json!("2026-03-01"), json!("2026-03-02")),
            Some(Label::Timestamp)
        );
        assert_eq!(l(None, json!("2026-03-01x"), json!("2026-03-02")), None);
        assert_eq!(
            l(
                None,
                json!("2026-03-01T10:00:00Q"),
                json!("2026-03-01T10:00:00Z")
            ),
            None
        );
    }

    #[test]
    fn ids_and_counters() {
        let l = |f: Option<&str>, p: Value, c: Value| label_pair(f, &p, &c);
        assert_eq!(
            l(
                None,
                json!("123e4567-e89b-12d3-a456-426614174000"),
                json!("00000000-0000-4000-8000-000000000001")
            ),
            Some(Label::Uuid)
        );
        assert_eq!(
            l(None, json!("web-1767225600000"), json!("web-1767225600123")),
            Some(Label::GeneratedId)
        );
        assert_eq!(
            l(None, json!("veloz_123456789_1"), json!("veloz_987654321_2")),
            Some(Label::GeneratedId)
        );
        assert_eq!(
            l(None, json!("sim-3"), json!("sim-5")),
            Some(Label::GeneratedId)
        );
        assert_eq!(
            l(
                None,
                json!("0123456789abcdef0123456789abcdef"),
                json!("fedcba9876543210fedcba9876543210")
            ),
            Some(Label::GeneratedId)
        );
        assert_eq!(
            l(Some("key_id"), json!("vk_x"), json!("vk_y")),
            Some(Label::GeneratedId)
        );
        // Different shapes are a real difference, not an id.
        assert_eq!(l(None, json!("web-17"), json!("veloz_1_2")), None);
        assert_eq!(l(None, json!("BTCUSDT"), json!("ETHUSDT")), None);
        assert_eq!(l(None, json!("buy"), json!("sell")), None);
        assert_eq!(l(Some("_id"), json!(17), json!(19)), Some(Label::Counter));
        assert_eq!(
            l(Some("uptime_seconds"), json!(17), json!(19)),
            Some(Label::Counter)
        );
        assert_eq!(l(Some("qty"), json!(1), json!(2)), None);
        assert_eq!(Label::parse("generated-id"), Some(Label::GeneratedId));
        assert_eq!(Label::parse("nope"), None);
    }
}
