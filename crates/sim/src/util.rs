//! Small parsing and formatting helpers: URL decoding, ISO 8601 times, and the C++ gateway's
//! hand-written JSON field scanners (reproduced because they accept and reject different
//! bodies than a JSON parser would).

use std::time::{SystemTime, UNIX_EPOCH};

/// Decodes `%XX` escapes (and `+` as a space when `plus_is_space`), replacing invalid UTF-8.
pub(crate) fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex_val(bytes[i + 1]), hex_val(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `application/x-www-form-urlencoded` pairs, blank values dropped (as Python's `parse_qs`).
pub(crate) fn parse_form(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            let v = percent_decode(v, true);
            (!v.is_empty()).then(|| (percent_decode(k, true), v))
        })
        .collect()
}

/// The first value of `name` in a query string.
pub(crate) fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    parse_form(query?)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Milliseconds since the Unix epoch.
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `YYYY-MM-DDTHH:MM:SSZ` (UTC) for Unix seconds.
pub(crate) fn iso8601(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
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

/// The C++ gateway's string scanner: finds `"name"`, then `:`, skips spaces and tabs, and
/// takes a quoted value (escapes are skipped over, not decoded). `None` when the value is not
/// a string.
pub(crate) fn scan_string_field(body: &str, name: &str) -> Option<String> {
    let after = after_key(body, name)?;
    let rest = after.trim_start_matches([' ', '\t']);
    let rest = rest.strip_prefix('"')?;
    let bytes = rest.as_bytes();
    let mut end = 0;
    while end < bytes.len() && bytes[end] != b'"' {
        if bytes[end] == b'\\' {
            end += 1;
        }
        end += 1;
    }
    if end >= bytes.len() {
        return None;
    }
    Some(rest[..end].to_owned())
}

/// The C++ gateway's number scanner: the text up to `,`, `}`, `]`, space or newline must
/// parse entirely as a double (`strtod`).
pub(crate) fn scan_number_field(body: &str, name: &str) -> Option<f64> {
    let after = after_key(body, name)?;
    let rest = after.trim_start_matches([' ', '\t']);
    let end = rest
        .find([',', '}', ']', ' ', '\n', '\r'])
        .unwrap_or(rest.len());
    if end == 0 {
        return None;
    }
    rest[..end].parse().ok()
}

/// The text after the first `"name"` and the colon that follows it.
fn after_key<'a>(body: &'a str, name: &str) -> Option<&'a str> {
    let pattern = format!("\"{name}\"");
    let pos = body.find(&pattern)?;
    let after = &body[pos + pattern.len()..];
    let colon = after.find(':')?;
    after.get(colon + 1..)
}

/// The C++ bulk-cancel scanner: every quoted string after the `[` that follows `"order_ids"`.
pub(crate) fn scan_order_ids(body: &str) -> Vec<String> {
    let Some(start) = body.find("\"order_ids\"") else {
        return Vec::new();
    };
    let Some(bracket) = body[start..].find('[') else {
        return Vec::new();
    };
    let mut rest = &body[start + bracket + 1..];
    let mut ids = Vec::new();
    // Bounded by the body length: each turn consumes at least two bytes.
    while let Some(open) = rest.find('"') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('"') else {
            break;
        };
        ids.push(after[..close].to_owned());
        rest = &after[close + 1..];
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_and_forms() {
        assert_eq!(percent_decode("a%20b+c%2", true), "a b c%2");
        assert_eq!(percent_decode("a+b", false), "a+b");
        assert_eq!(percent_decode("%zz%41", false), "%zzA");
        let form = parse_form("side=buy&qty=0.5&price=&client_order_id=a%2Fb");
        assert_eq!(
            form,
            vec![
                ("side".to_owned(), "buy".to_owned()),
                ("qty".to_owned(), "0.5".to_owned()),
                ("client_order_id".to_owned(), "a/b".to_owned()),
            ]
        );
        assert_eq!(
            query_param(Some("last_id=12&x=1"), "last_id").as_deref(),
            Some("12")
        );
        assert_eq!(query_param(None, "x"), None);
    }

    #[test]
    fn iso_times() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn cpp_scanners_behave_like_the_hand_written_ones() {
        let body = r#"{"side": "buy", "symbol":"BTCUSDT", "qty": 0.5, "price":42000}"#;
        assert_eq!(scan_string_field(body, "side").as_deref(), Some("buy"));
        assert_eq!(
            scan_string_field(body, "symbol").as_deref(),
            Some("BTCUSDT")
        );
        assert_eq!(scan_number_field(body, "qty"), Some(0.5));
        assert_eq!(scan_number_field(body, "price"), Some(42000.0));
        assert_eq!(scan_number_field(body, "nope"), None);
        // A quoted number is not a number to the scanner.
        assert_eq!(scan_number_field(r#"{"qty":"1"}"#, "qty"), None);
        // Not JSON at all, still scanned.
        assert_eq!(
            scan_string_field(r#"junk "side":"sell" junk"#, "side").as_deref(),
            Some("sell")
        );
        assert_eq!(
            scan_order_ids(r#"{"order_ids": ["a", "b-2"]}"#),
            vec!["a".to_owned(), "b-2".to_owned()]
        );
        assert!(scan_order_ids(r#"{"ids": ["a"]}"#).is_empty());
    }
}
