//! Redaction of secrets before anything leaves the engine (DESIGN: "Secrets never reach a
//! report").
//!
//! A secret becomes `"[redacted:<first 8 hex of SHA-256(secret)>]"`. The digest keeps equal
//! secrets equal (a token that the candidate echoes unchanged still compares equal) while the
//! 32 bits shown are far too few to recover or brute-force-confirm a real credential.
//! Redaction is idempotent: a token is never redacted again.

use std::borrow::Cow;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Headers redacted by default (matched case-insensitively).
pub const DEFAULT_SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "cookie",
    "set-cookie",
];

/// Body field names redacted by default (matched case-insensitively at any depth, also as a
/// `_`/`-`/camelCase suffix: `admin_password`, `accessToken`).
pub const DEFAULT_SECRET_FIELDS: &[&str] = &[
    "password",
    "token",
    "access_token",
    "refresh_token",
    "api_key",
    "raw_key",
    "secret",
    "api_secret",
];

const TOKEN_PREFIX: &str = "[redacted:";

/// The redaction token for a secret.
pub fn redaction_token(secret: &[u8]) -> String {
    let digest = Sha256::digest(secret);
    let mut token = String::with_capacity(TOKEN_PREFIX.len() + 9);
    token.push_str(TOKEN_PREFIX);
    token.push_str(&hex::encode(&digest[..4]));
    token.push(']');
    token
}

/// Whether `text` is already a redaction token.
pub fn is_redaction_token(text: &str) -> bool {
    text.len() == TOKEN_PREFIX.len() + 9
        && text.starts_with(TOKEN_PREFIX)
        && text.ends_with(']')
        && text.as_bytes()[TOKEN_PREFIX.len()..TOKEN_PREFIX.len() + 8]
            .iter()
            .all(|b| b.is_ascii_hexdigit())
}

/// Token for a JSON value: strings hash their text (so a secret hashes alike in a header and
/// in a body), other values their compact JSON.
fn value_token(value: &Value) -> Value {
    match value {
        Value::String(s) if is_redaction_token(s) => value.clone(),
        Value::String(s) => Value::String(redaction_token(s.as_bytes())),
        other => {
            let text = serde_json::to_string(other).unwrap_or_default();
            Value::String(redaction_token(text.as_bytes()))
        }
    }
}

/// Redacts headers, JSON fields and text by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redactor {
    headers: Vec<String>,
    fields: Vec<String>,
    /// `fields` lower-cased without `_`/`-`, for the fast matcher.
    squashed: Vec<Vec<u8>>,
    /// Which bytes a squashed secret name can end with: most field names are rejected on
    /// their last byte alone.
    last_bytes: [bool; 256],
    /// The last two bytes of every squashed secret name, when all have two: most names
    /// that pass the last-byte test are rejected here.
    last_pairs: Option<Vec<[u8; 2]>>,
}

impl Default for Redactor {
    fn default() -> Self {
        Self::new(DEFAULT_SECRET_HEADERS, DEFAULT_SECRET_FIELDS)
    }
}

impl Redactor {
    /// A redactor for exactly these header names and body field names.
    pub fn new<H, F>(headers: H, fields: F) -> Self
    where
        H: IntoIterator,
        H::Item: AsRef<str>,
        F: IntoIterator,
        F::Item: AsRef<str>,
    {
        let lower = |s: &str| s.trim().to_ascii_lowercase();
        let mut r = Self {
            headers: headers.into_iter().map(|h| lower(h.as_ref())).collect(),
            fields: fields.into_iter().map(|f| lower(f.as_ref())).collect(),
            squashed: Vec::new(),
            last_bytes: [false; 256],
            last_pairs: None,
        };
        r.headers.retain(|h| !h.is_empty());
        r.fields.retain(|f| !f.is_empty());
        r.headers.sort();
        r.headers.dedup();
        r.fields.sort();
        r.fields.dedup();
        r.squashed = r
            .fields
            .iter()
            .map(|f| {
                f.bytes()
                    .filter(|c| *c != b'_' && *c != b'-')
                    .collect::<Vec<u8>>()
            })
            .filter(|f| !f.is_empty())
            .collect();
        for f in &r.squashed {
            if let Some(&b) = f.last() {
                r.last_bytes[usize::from(b)] = true;
            }
        }
        r.last_pairs = r
            .squashed
            .iter()
            .map(|f| f.last_chunk::<2>().copied())
            .collect::<Option<Vec<[u8; 2]>>>();
        if let Some(pairs) = &mut r.last_pairs {
            pairs.sort_unstable();
            pairs.dedup();
        }
        r
    }

    /// The defaults plus these extra names.
    pub fn with_extra<H, F>(headers: H, fields: F) -> Self
    where
        H: IntoIterator,
        H::Item: AsRef<str>,
        F: IntoIterator,
        F::Item: AsRef<str>,
    {
        let h: Vec<String> = DEFAULT_SECRET_HEADERS
            .iter()
            .map(|s| (*s).to_owned())
            .chain(headers.into_iter().map(|s| s.as_ref().to_owned()))
            .collect();
        let f: Vec<String> = DEFAULT_SECRET_FIELDS
            .iter()
            .map(|s| (*s).to_owned())
            .chain(fields.into_iter().map(|s| s.as_ref().to_owned()))
            .collect();
        Self::new(h, f)
    }

    /// Redacted header names (lower-case).
    pub fn header_names(&self) -> &[String] {
        &self.headers
    }

    /// Redacted field names (lower-case).
    pub fn field_names(&self) -> &[String] {
        &self.fields
    }

    /// Whether a header of this name is a secret.
    pub fn is_secret_header(&self, name: &str) -> bool {
        self.headers
            .iter()
            .any(|h| h.eq_ignore_ascii_case(name.trim()))
    }

    /// Whether a body field of this name is a secret.
    pub fn is_secret_field(&self, name: &str) -> bool {
        // Called for every key on a reported path, so it avoids allocating: the name is
        // squashed (lower-case, no separators) into a stack buffer, with a bit per position
        // where a word starts (after `_`/`-`, or at a camelCase hump).
        const CAP: usize = 64;
        let mut tail = name
            .bytes()
            .rev()
            .filter(|c| *c != b'_' && *c != b'-')
            .map(|c| c.to_ascii_lowercase());
        match tail.next() {
            Some(last) if self.last_bytes[usize::from(last)] => {
                if let Some(pairs) = &self.last_pairs {
                    // Every secret name has two bytes, so a one-byte name is none of them.
                    let Some(before) = tail.next() else {
                        return false;
                    };
                    if !pairs.contains(&[before, last]) {
                        return false;
                    }
                }
            }
            _ => return false,
        }
        let mut buf = [0u8; CAP];
        let mut starts: u64 = 0;
        let mut n = 0;
        let mut after_sep = true;
        let mut prev_lower = false;
        for &c in name.as_bytes() {
            if c == b'_' || c == b'-' {
                after_sep = true;
                prev_lower = false;
                continue;
            }
            if n == CAP {
                return self.fields.iter().any(|f| field_matches(name, f));
            }
            if after_sep || c.is_ascii_uppercase() && prev_lower {
                starts |= 1 << n;
            }
            buf[n] = c.to_ascii_lowercase();
            prev_lower = c.is_ascii_lowercase();
            after_sep = false;
            n += 1;
        }
        let name = &buf[..n];
        self.squashed.iter().any(|p| {
            name.len() >= p.len()
                && name.ends_with(p)
                && starts & (1 << (name.len() - p.len())) != 0
        })
    }

    /// The token that replaces a header's value, or `None` when the header is not secret.
    pub fn redact_header_value(&self, name: &str, value: &[u8]) -> Option<String> {
        if !self.is_secret_header(name) {
            return None;
        }
        match std::str::from_utf8(value) {
            Ok(text) if is_redaction_token(text) => Some(text.to_owned()),
            _ => Some(redaction_token(value)),
        }
    }

    /// Replaces the values of secret headers in place.
    pub fn redact_headers(&self, headers: &mut [(String, String)]) {
        for (name, value) in headers.iter_mut() {
            if let Some(token) = self.redact_header_value(name, value.as_bytes()) {
                *value = token;
            }
        }
    }

    /// Replaces every secret field's value (at any depth) with its token; returns how many
    /// values were replaced.
    pub fn redact_value(&self, value: &mut Value) -> usize {
        match value {
            Value::Object(map) => {
                let mut n = 0;
                for (k, v) in map.iter_mut() {
                    if self.is_secret_field(k) {
                        let token = value_token(v);
                        if *v != token {
                            *v = token;
                            n += 1;
                        }
                    } else {
                        n += self.redact_value(v);
                    }
                }
                n
            }
            Value::Array(items) => items.iter_mut().map(|v| self.redact_value(v)).sum(),
            _ => 0,
        }
    }

    /// Replaces a whole value with its token (the value sits under a secret field).
    pub fn tokenize(&self, value: &mut Value) {
        if !value.is_null() {
            *value = value_token(value);
        }
    }

    /// Redacts `name=value`, `"name": "value"` and `Header: value` occurrences of secret names
    /// in free text (form bodies, HTML error pages, text diffs).
    pub fn redact_text<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let lower = text.to_ascii_lowercase();
        let mut ranges: Vec<(usize, usize)> = Vec::new();
        for name in &self.fields {
            find_values(&lower, name, false, &mut ranges);
        }
        for name in &self.headers {
            find_values(&lower, name, true, &mut ranges);
        }
        if ranges.is_empty() {
            return Cow::Borrowed(text);
        }
        ranges.sort_unstable();
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for (start, end) in ranges {
            if start < at {
                continue;
            }
            let secret = &text[start..end];
            out.push_str(&text[at..start]);
            if is_redaction_token(secret) {
                out.push_str(secret);
            } else {
                out.push_str(&redaction_token(secret.as_bytes()));
            }
            at = end;
        }
        out.push_str(&text[at..]);
        Cow::Owned(out)
    }

    /// Redacts a body for storage: JSON is parsed, redacted and re-serialized when something
    /// changed; other UTF-8 goes through [`Redactor::redact_text`]; binary is returned as is.
    pub fn redact_body<'b>(&self, body: &'b [u8]) -> Cow<'b, [u8]> {
        if let Ok(mut value) = serde_json::from_slice::<Value>(body) {
            if self.redact_value(&mut value) == 0 {
                return Cow::Borrowed(body);
            }
            return match serde_json::to_vec(&value) {
                Ok(bytes) => Cow::Owned(bytes),
                // Serializing a Value cannot fail; an empty body beats leaking the secret.
                Err(_) => Cow::Owned(Vec::new()),
            };
        }
        match std::str::from_utf8(body) {
            Ok(text) => match self.redact_text(text) {
                Cow::Borrowed(_) => Cow::Borrowed(body),
                Cow::Owned(s) => Cow::Owned(s.into_bytes()),
            },
            Err(_) => Cow::Borrowed(body),
        }
    }
}

/// Compares two names ignoring ASCII case and `_`/`-` separators (`accessToken` ~
/// `access_token`).
fn squash_eq(a: &str, b: &str) -> bool {
    let mut x = a.bytes().filter(|c| *c != b'_' && *c != b'-');
    let mut y = b.bytes().filter(|c| *c != b'_' && *c != b'-');
    loop {
        match (x.next(), y.next()) {
            (None, None) => return true,
            (Some(p), Some(q)) if p.eq_ignore_ascii_case(&q) => {}
            _ => return false,
        }
    }
}

/// `name` is `pattern`, or ends with it at a word boundary (`admin_password`, `jwtSecret`).
fn field_matches(name: &str, pattern: &str) -> bool {
    if squash_eq(name, pattern) {
        return true;
    }
    let b = name.as_bytes();
    (1..b.len()).any(|i| {
        let boundary = matches!(b[i - 1], b'_' | b'-')
            || b[i].is_ascii_uppercase() && b[i - 1].is_ascii_lowercase();
        boundary && name.is_char_boundary(i) && squash_eq(&name[i..], pattern)
    })
}

/// Finds the value ranges following `name` in `lower` (an ASCII-lower-cased copy of the text,
/// so byte offsets are shared). Every boundary found is an ASCII byte or an end of the text,
/// so the ranges are valid `str` slice bounds of the original.
fn find_values(lower: &str, name: &str, header: bool, out: &mut Vec<(usize, usize)>) {
    let b = lower.as_bytes();
    let mut from = 0;
    while let Some(found) = lower[from..].find(name) {
        let start = from + found;
        from = start + name.len();
        if start > 0 && b[start - 1].is_ascii_alphanumeric() {
            continue;
        }
        let mut i = from;
        if matches!(b.get(i), Some(b'"' | b'\'')) {
            i += 1;
        }
        while matches!(b.get(i), Some(b' ' | b'\t')) {
            i += 1;
        }
        if !matches!(b.get(i), Some(b'=' | b':')) {
            continue;
        }
        i += 1;
        while matches!(b.get(i), Some(b' ' | b'\t')) {
            i += 1;
        }
        let (vstart, vend) = if let Some(&q @ (b'"' | b'\'')) = b.get(i) {
            let s = i + 1;
            let mut e = s;
            while e < b.len() && b[e] != q {
                e += if b[e] == b'\\' { 2 } else { 1 };
            }
            (s, e.min(b.len()))
        } else {
            let mut e = i;
            while e < b.len() && !is_value_end(b[e], header) {
                e += 1;
            }
            (i, e)
        };
        if vend > vstart {
            out.push((vstart, vend));
        }
        from = from.max(vend);
    }
}

fn is_value_end(c: u8, header: bool) -> bool {
    if header {
        c == b'\r' || c == b'\n'
    } else {
        matches!(c, b'&' | b',' | b';' | b'}' | b']' | b'"' | b'<' | b'\'')
            || c.is_ascii_whitespace()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tokens() {
        let t = redaction_token(b"hunter2");
        assert!(is_redaction_token(&t));
        assert_eq!(t, redaction_token(b"hunter2"));
        assert_ne!(t, redaction_token(b"hunter3"));
        // SHA-256("abc") starts with ba7816bf.
        assert_eq!(redaction_token(b"abc"), "[redacted:ba7816bf]");
        assert!(!is_redaction_token("[redacted:xyz]"));
    }

    #[test]
    fn field_names() {
        let r = Redactor::default();
        for secret in [
            "password",
            "PASSWORD",
            "admin_password",
            "accessToken",
            "refresh_token",
            "x-api-key",
            "apiSecret",
            "raw_key",
            "jwt_secret",
        ] {
            assert!(r.is_secret_field(secret), "{secret}");
        }
        for plain in [
            "token_type",
            "expires_in",
            "secret_version",
            "passwords_count",
            "user_id",
            "mytoken",
            "",
        ] {
            assert!(!r.is_secret_field(plain), "{plain}");
        }
        // The fast matcher agrees with the plain one, also past its buffer.
        let long = format!("{}_password", "x".repeat(80));
        for name in [
            "a__password",
            "Password",
            "jwtSECRET",
            "xApiKey",
            "api-key",
            "tokenX",
            &long,
            "é_token",
            "mytoken",
        ] {
            let slow = r.fields.iter().any(|f| field_matches(name, f));
            assert_eq!(r.is_secret_field(name), slow, "{name}");
        }
        assert!(r.is_secret_header("Authorization"));
        assert!(r.is_secret_header("set-cookie"));
        assert!(!r.is_secret_header("content-type"));
    }

    #[test]
    fn values_and_idempotence() {
        let r = Redactor::default();
        let mut v =
            json!({"token": "abc", "token_type": "Bearer", "nested": [{"api_key": 42, "ok": 1}]});
        assert_eq!(r.redact_value(&mut v), 2);
        assert_eq!(v["token"], json!("[redacted:ba7816bf]"));
        assert_eq!(v["token_type"], json!("Bearer"));
        assert!(is_redaction_token(
            v["nested"][0]["api_key"].as_str().unwrap()
        ));
        let once = v.clone();
        assert_eq!(r.redact_value(&mut v), 0);
        assert_eq!(v, once);
        let mut headers = vec![
            ("Authorization".to_owned(), "Bearer abc".to_owned()),
            ("Accept".to_owned(), "x".to_owned()),
        ];
        r.redact_headers(&mut headers);
        assert_eq!(headers[0].1, redaction_token(b"Bearer abc"));
        assert_eq!(headers[1].1, "x");
    }

    mod props {
        use super::*;
        use crate::testutil::arb_json;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn redaction_is_idempotent(v in arb_json(), secret in "\\PC{0,12}") {
                let r = Redactor::default();
                let mut once = json!({"data": v, "password": secret, "list": [{"api_key": secret}]});
                r.redact_value(&mut once);
                let mut twice = once.clone();
                prop_assert_eq!(r.redact_value(&mut twice), 0);
                prop_assert_eq!(&twice, &once);
                let text = once.to_string();
                let again = r.redact_text(&text);
                prop_assert_eq!(r.redact_text(&again), again.clone());
                let body = r.redact_body(text.as_bytes()).into_owned();
                prop_assert_eq!(r.redact_body(&body).into_owned(), body);
            }
        }
    }

    #[test]
    fn text_and_bodies() {
        let r = Redactor::default();
        let out = r.redact_text("user=admin&password=hunter2&x=1");
        assert_eq!(
            out,
            format!("user=admin&password={}&x=1", redaction_token(b"hunter2"))
        );
        let out = r.redact_text("{\"token\": \"eyJabc\", \"n\": 1");
        assert!(!out.contains("eyJabc"), "{out}");
        let out = r.redact_text("Authorization: Bearer zzz\nOther: 1");
        assert!(!out.contains("zzz") && out.contains("Other: 1"), "{out}");
        assert_eq!(r.redact_text(&out), out);
        assert!(matches!(
            r.redact_text("nothing secret here"),
            Cow::Borrowed(_)
        ));
        // Non-ASCII around a secret keeps slicing on char boundaries.
        let out = r.redact_text("é password=ü€x é");
        assert!(!out.contains("ü€x"), "{out}");
        let body = r.redact_body(br#"{"password":"p"}"#);
        assert!(!String::from_utf8_lossy(&body).contains("\"p\""));
        assert!(matches!(r.redact_body(br#"{"a":1}"#), Cow::Borrowed(_)));
        assert!(matches!(r.redact_body(&[0xff, 0xfe]), Cow::Borrowed(_)));
    }
}
