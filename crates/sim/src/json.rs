//! A small ordered JSON value and the two ways the gateways print it.
//!
//! Why not `serde_json::Value`: its objects are sorted maps (the workspace does not enable
//! `preserve_order`, and enabling it would change every other crate's `Value`), so a response
//! would come out with its keys re-ordered, and `serde_json` prints floats in its own way.
//! The two gateways differ exactly there:
//! - **Python** (`json.dumps` defaults): `", "` and `": "` separators, `ensure_ascii` escaping
//!   (`\u00e9`), floats in `repr` form (`42000.0`, `1e-05`, `1e+16`), ints as ints.
//! - **C++** (hand-built strings and `kj::str(double)`): compact, only `"`, `\\` and the
//!   common control characters escaped, doubles printed `%g`-style (`42000`, `0.01`, `1e+20`).
//!
//! [`J`] keeps insertion order, so every response lists its keys in the order the real gateway
//! writes them, and a divergence rule can still change one field by JSON Pointer.

use std::borrow::Cow;
use std::io::Write as _;

use serde_json::Value;

/// How a [`J`] value is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonStyle {
    /// Python `json.dumps` with default arguments.
    Python,
    /// Compact JSON with C++ (`kj::str`) number formatting.
    Compact,
}

/// A JSON value whose objects keep their key order.
#[derive(Debug, Clone, PartialEq)]
pub enum J {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    /// Printed per [`JsonStyle`]: `42000.0` (Python) or `42000` (C++).
    Float(f64),
    Str(Cow<'static, str>),
    Arr(Vec<J>),
    Obj(Vec<(Cow<'static, str>, J)>),
}

impl J {
    /// An object from `(key, value)` pairs with static keys, in order.
    pub fn obj<const N: usize>(pairs: [(&'static str, J); N]) -> J {
        J::Obj(
            pairs
                .into_iter()
                .map(|(k, v)| (Cow::Borrowed(k), v))
                .collect(),
        )
    }

    /// A string value.
    pub fn s(text: impl Into<Cow<'static, str>>) -> J {
        J::Str(text.into())
    }

    /// A string, or `null` when absent.
    pub fn opt_s(text: Option<&str>) -> J {
        text.map_or(J::Null, |t| J::Str(Cow::Owned(t.to_owned())))
    }

    /// A float, or `null` when absent.
    pub fn opt_f(x: Option<f64>) -> J {
        x.map_or(J::Null, J::Float)
    }

    /// An unsigned integer, or `null` when absent.
    pub fn opt_u(x: Option<u64>) -> J {
        x.map_or(J::Null, J::UInt)
    }

    /// Converts a `serde_json::Value`, keeping integers as integers and floats as floats
    /// (what Python's `json.loads` followed by `json.dumps` does with an engine line).
    pub fn from_value(v: &Value) -> J {
        match v {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    J::Int(i)
                } else if let Some(u) = n.as_u64() {
                    J::UInt(u)
                } else {
                    n.as_f64().map_or(J::Null, J::Float)
                }
            }
            Value::String(s) => J::Str(Cow::Owned(s.clone())),
            Value::Array(items) => J::Arr(items.iter().map(J::from_value).collect()),
            Value::Object(map) => J::Obj(
                map.iter()
                    .map(|(k, v)| (Cow::Owned(k.clone()), J::from_value(v)))
                    .collect(),
            ),
        }
    }

    /// Converts to a `serde_json::Value` (used by tests and by the stats endpoint's readers).
    pub fn to_value(&self) -> Value {
        match self {
            J::Null => Value::Null,
            J::Bool(b) => Value::Bool(*b),
            J::Int(i) => Value::from(*i),
            J::UInt(u) => Value::from(*u),
            J::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            J::Str(s) => Value::String(s.to_string()),
            J::Arr(items) => Value::Array(items.iter().map(J::to_value).collect()),
            J::Obj(pairs) => Value::Object(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_value()))
                    .collect(),
            ),
        }
    }

    /// Appends `(key, value)` to an object; does nothing to other values.
    pub fn push(&mut self, key: impl Into<Cow<'static, str>>, value: J) {
        if let J::Obj(pairs) = self {
            pairs.push((key.into(), value));
        }
    }

    /// The value at an RFC 6901 JSON Pointer (`""` is the whole value).
    pub fn pointer_mut(&mut self, pointer: &str) -> Option<&mut J> {
        if pointer.is_empty() {
            return Some(self);
        }
        let rest = pointer.strip_prefix('/')?;
        let mut cur = self;
        for raw in rest.split('/') {
            let token = raw.replace("~1", "/").replace("~0", "~");
            cur = match cur {
                J::Obj(pairs) => pairs
                    .iter_mut()
                    .find(|(k, _)| k.as_ref() == token)
                    .map(|(_, v)| v)?,
                J::Arr(items) => {
                    let idx: usize = token.parse().ok()?;
                    items.get_mut(idx)?
                }
                _ => return None,
            };
        }
        Some(cur)
    }

    /// Prints the value in `style` onto `out`.
    pub fn write(&self, style: JsonStyle, out: &mut Vec<u8>) {
        match self {
            J::Null => out.extend_from_slice(b"null"),
            J::Bool(true) => out.extend_from_slice(b"true"),
            J::Bool(false) => out.extend_from_slice(b"false"),
            // Writing into a Vec cannot fail.
            J::Int(i) => {
                let _ = write!(out, "{i}");
            }
            J::UInt(u) => {
                let _ = write!(out, "{u}");
            }
            J::Float(f) => match style {
                JsonStyle::Python => write_python_float(*f, out),
                JsonStyle::Compact => write_kj_double(*f, out),
            },
            J::Str(s) => write_string(s, style, out),
            J::Arr(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.extend_from_slice(item_separator(style));
                    }
                    item.write(style, out);
                }
                out.push(b']');
            }
            J::Obj(pairs) => {
                out.push(b'{');
                for (i, (k, v)) in pairs.iter().enumerate() {
                    if i > 0 {
                        out.extend_from_slice(item_separator(style));
                    }
                    write_string(k, style, out);
                    out.extend_from_slice(match style {
                        JsonStyle::Python => b": ",
                        JsonStyle::Compact => b":",
                    });
                    v.write(style, out);
                }
                out.push(b'}');
            }
        }
    }

    /// The value printed in `style`.
    pub fn to_bytes(&self, style: JsonStyle) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        self.write(style, &mut out);
        out
    }
}

fn item_separator(style: JsonStyle) -> &'static [u8] {
    match style {
        JsonStyle::Python => b", ",
        JsonStyle::Compact => b",",
    }
}

fn write_string(s: &str, style: JsonStyle, out: &mut Vec<u8>) {
    out.push(b'"');
    // Most strings (keys, symbols, ids) need no escaping in either style: copy them whole.
    if s.bytes()
        .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\')
    {
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        return;
    }
    match style {
        JsonStyle::Python => {
            // ensure_ascii: everything outside printable ASCII becomes \uXXXX (UTF-16 units).
            for c in s.chars() {
                match c {
                    '"' => out.extend_from_slice(b"\\\""),
                    '\\' => out.extend_from_slice(b"\\\\"),
                    '\n' => out.extend_from_slice(b"\\n"),
                    '\r' => out.extend_from_slice(b"\\r"),
                    '\t' => out.extend_from_slice(b"\\t"),
                    '\u{8}' => out.extend_from_slice(b"\\b"),
                    '\u{c}' => out.extend_from_slice(b"\\f"),
                    ' '..='~' => out.push(c as u8),
                    _ => {
                        let mut units = [0u16; 2];
                        for unit in c.encode_utf16(&mut units) {
                            let _ = write!(out, "\\u{unit:04x}");
                        }
                    }
                }
            }
        }
        JsonStyle::Compact => {
            for &b in s.as_bytes() {
                match b {
                    b'"' => out.extend_from_slice(b"\\\""),
                    b'\\' => out.extend_from_slice(b"\\\\"),
                    b'\n' => out.extend_from_slice(b"\\n"),
                    b'\r' => out.extend_from_slice(b"\\r"),
                    b'\t' => out.extend_from_slice(b"\\t"),
                    // The C++ escaper passes other control bytes through raw, which is not
                    // JSON; escaping them keeps the output parseable.
                    0..=0x1f => {
                        let _ = write!(out, "\\u{b:04x}");
                    }
                    _ => out.push(b),
                }
            }
        }
    }
    out.push(b'"');
}

/// A stack buffer for number formatting (no allocation on the response path).
struct StackBuf {
    buf: [u8; 40],
    len: usize,
}

impl std::fmt::Write for StackBuf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Shortest round-trip decimal digits of a finite, non-zero |x| (at most 17) and the decimal
/// exponent of the first digit (`42000.0` → `("42", 4)`).
struct Digits {
    digits: [u8; 24],
    len: usize,
    exp: i32,
}

impl Digits {
    fn of(x: f64) -> Digits {
        use std::fmt::Write as _;
        let mut sci = StackBuf {
            buf: [0; 40],
            len: 0,
        };
        // `{:e}` of an f64 is at most 24 bytes (`1.7976931348623157e308`).
        let _ = write!(sci, "{:e}", x.abs());
        let text = &sci.buf[..sci.len];
        let e = text.iter().position(|&b| b == b'e').unwrap_or(text.len());
        let exp = std::str::from_utf8(&text[(e + 1).min(text.len())..])
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut d = Digits {
            digits: [0; 24],
            len: 0,
            exp,
        };
        for &b in text[..e].iter().filter(|b| b.is_ascii_digit()) {
            if d.len < d.digits.len() {
                d.digits[d.len] = b;
                d.len += 1;
            }
        }
        while d.len > 1 && d.digits[d.len - 1] == b'0' {
            d.len -= 1;
        }
        if d.len == 0 {
            d.digits[0] = b'0';
            d.len = 1;
        }
        d
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.digits[..self.len]).unwrap_or("0")
    }
}

/// Fixed notation from digits and exponent; `always_fraction` adds `.0` to integral values.
fn fixed_notation(digits: &str, exp: i32, always_fraction: bool, out: &mut Vec<u8>) {
    let n = digits.len() as i32;
    if exp < 0 {
        out.extend_from_slice(b"0.");
        for _ in 0..(-exp - 1) {
            out.push(b'0');
        }
        out.extend_from_slice(digits.as_bytes());
        return;
    }
    let int_len = exp + 1;
    if n <= int_len {
        out.extend_from_slice(digits.as_bytes());
        for _ in 0..(int_len - n) {
            out.push(b'0');
        }
        if always_fraction {
            out.extend_from_slice(b".0");
        }
    } else {
        out.extend_from_slice(&digits.as_bytes()[..int_len as usize]);
        out.push(b'.');
        out.extend_from_slice(&digits.as_bytes()[int_len as usize..]);
    }
}

/// `d.ddde+XX`: at least two exponent digits, sign always shown (C `printf` and Python).
fn exponent_notation(digits: &str, exp: i32, out: &mut Vec<u8>) {
    out.push(digits.as_bytes()[0]);
    if digits.len() > 1 {
        out.push(b'.');
        out.extend_from_slice(&digits.as_bytes()[1..]);
    }
    let sign = if exp < 0 { '-' } else { '+' };
    let _ = write!(out, "e{sign}{:02}", exp.abs());
}

/// Python `repr(float)`: shortest round-trip digits, fixed notation for exponents in
/// `-4..16` (always with a fraction), exponent notation otherwise.
pub fn write_python_float(x: f64, out: &mut Vec<u8>) {
    if x.is_nan() {
        out.extend_from_slice(b"NaN");
        return;
    }
    if x.is_infinite() {
        out.extend_from_slice(if x > 0.0 { b"Infinity" } else { b"-Infinity" });
        return;
    }
    if x.is_sign_negative() {
        out.push(b'-');
    }
    if x == 0.0 {
        out.extend_from_slice(b"0.0");
        return;
    }
    let d = Digits::of(x);
    if (-4..16).contains(&d.exp) {
        fixed_notation(d.as_str(), d.exp, true, out);
    } else {
        exponent_notation(d.as_str(), d.exp, out);
    }
}

/// `kj::str(double)`: `%.15g` (or `%.17g` when 15 digits do not round-trip), so integral
/// values print without a fraction. Approximated with the shortest round-trip digits, which
/// `%g` prints identically whenever they fit in 15 digits.
pub fn write_kj_double(x: f64, out: &mut Vec<u8>) {
    if !x.is_finite() {
        // Not valid JSON either way; `null` keeps the body parseable.
        out.extend_from_slice(b"null");
        return;
    }
    if x.is_sign_negative() && x != 0.0 {
        out.push(b'-');
    }
    if x == 0.0 {
        out.push(b'0');
        return;
    }
    let d = Digits::of(x);
    let precision = if d.len <= 15 { 15 } else { 17 };
    if d.exp >= -4 && d.exp < precision {
        fixed_notation(d.as_str(), d.exp, false, out);
    } else {
        exponent_notation(d.as_str(), d.exp, out);
    }
}

/// Python `repr` of a float as a string (for tests and messages).
pub fn python_float(x: f64) -> String {
    let mut out = Vec::new();
    write_python_float(x, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// `kj::str(double)` as a string.
pub fn kj_double(x: f64) -> String {
    let mut out = Vec::new();
    write_kj_double(x, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_float_repr_matches_cpython() {
        let cases = [
            (42000.0, "42000.0"),
            (0.01, "0.01"),
            (99580.06, "99580.06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1e16, "1e+16"),
            (1.2345e16, "1.2345e+16"),
            (9999999999999998.0, "9999999999999998.0"),
            (-3.5, "-3.5"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (0.1 + 0.2, "0.30000000000000004"),
        ];
        for (x, want) in cases {
            assert_eq!(python_float(x), want, "repr({x:?})");
        }
    }

    #[test]
    fn kj_double_prints_like_percent_g() {
        let cases = [
            (42000.0, "42000"),
            (0.01, "0.01"),
            (42000.5, "42000.5"),
            (1e20, "1e+20"),
            (0.00001, "1e-05"),
            (123456789012345.0, "123456789012345"),
            (1e15, "1e+15"),
            (-2.0, "-2"),
            (0.0, "0"),
        ];
        for (x, want) in cases {
            assert_eq!(kj_double(x), want, "kj::str({x:?})");
        }
    }

    #[test]
    fn python_style_has_json_dumps_spacing_and_ascii_escapes() {
        let v = J::obj([
            ("ok", J::Bool(true)),
            ("items", J::Arr(vec![J::Int(1), J::Float(2.0)])),
            ("name", J::s("caf\u{e9} \"x\"\n\u{1f600}")),
            ("empty", J::Obj(vec![])),
        ]);
        let text = String::from_utf8(v.to_bytes(JsonStyle::Python)).unwrap();
        assert_eq!(
            text,
            r#"{"ok": true, "items": [1, 2.0], "name": "caf\u00e9 \"x\"\n\ud83d\ude00", "empty": {}}"#
        );
    }

    #[test]
    fn compact_style_is_compact_and_keeps_utf8() {
        let v = J::obj([
            ("status", J::s("success")),
            (
                "data",
                J::obj([("qty", J::Float(0.5)), ("price", J::Float(42000.0))]),
            ),
            ("name", J::s("caf\u{e9}\u{1}")),
        ]);
        let text = String::from_utf8(v.to_bytes(JsonStyle::Compact)).unwrap();
        assert_eq!(
            text,
            "{\"status\":\"success\",\"data\":{\"qty\":0.5,\"price\":42000},\"name\":\"caf\u{e9}\\u0001\"}"
        );
    }

    #[test]
    fn both_styles_parse_back_to_the_same_value() {
        let v = J::obj([
            ("a", J::Float(1e-7)),
            ("b", J::UInt(u64::MAX)),
            ("c", J::s("\u{7f}\u{0}")),
        ]);
        for style in [JsonStyle::Python, JsonStyle::Compact] {
            let parsed: Value = serde_json::from_slice(&v.to_bytes(style)).unwrap();
            assert_eq!(parsed, v.to_value(), "{style:?}");
        }
    }

    #[test]
    fn pointer_reaches_nested_fields_and_escapes() {
        let mut v = J::obj([(
            "data",
            J::Arr(vec![J::obj([("a/b", J::Int(1)), ("m~n", J::Int(2))])]),
        )]);
        *v.pointer_mut("/data/0/a~1b").unwrap() = J::Int(10);
        *v.pointer_mut("/data/0/m~0n").unwrap() = J::Int(20);
        assert_eq!(
            v.to_value(),
            serde_json::json!({"data": [{"a/b": 10, "m~n": 20}]})
        );
        assert!(v.pointer_mut("/data/1").is_none());
        assert!(v.pointer_mut("nope").is_none());
        assert!(v.pointer_mut("").is_some());
    }

    #[test]
    fn from_value_keeps_ints_and_floats_apart() {
        let v: Value = serde_json::from_str(r#"{"i": 42000, "f": 42000.5, "n": -1}"#).unwrap();
        let j = J::from_value(&v);
        assert_eq!(
            String::from_utf8(j.to_bytes(JsonStyle::Python)).unwrap(),
            r#"{"f": 42000.5, "i": 42000, "n": -1}"#
        );
    }
}
