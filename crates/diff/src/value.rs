//! `Value` helpers (for the public `Normalization` on request bodies): numeric-aware
//! equality and ordering, plus the stable FNV-1a used for signatures.
//!
//! `serde_json` keeps `42000` and `42000.0` as different `Value`s; VeloZ's two gateways print
//! the same number both ways (veloz-api §8), so everything here compares numbers by value.

use std::cmp::Ordering;

use serde_json::{Number, Value};

/// Numbers equal by value: exact for two integers, `f64` otherwise.
pub(crate) fn num_eq(a: &Number, b: &Number) -> bool {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return x == y;
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return x == y;
    }
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// Deep equality with numbers compared by value (no tolerance).
pub(crate) fn strict_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Number(x), Value::Number(y)) => num_eq(x, y),
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, c)| strict_eq(p, c))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| strict_eq(v, w)))
        }
        _ => false,
    }
}

fn type_rank(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Number(_) => 2,
        Value::String(_) => 3,
        Value::Array(_) => 4,
        Value::Object(_) => 5,
    }
}

/// A total order on values for sorting arrays by key: by type, then numbers by value, strings
/// by bytes; arrays and objects by length (they are unusual sort keys).
pub(crate) fn canonical_cmp(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(p), Some(q)) = (x.as_i64(), y.as_i64()) {
                return p.cmp(&q);
            }
            let p = x.as_f64().unwrap_or(0.0);
            let q = y.as_f64().unwrap_or(0.0);
            p.total_cmp(&q)
        }
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => x.len().cmp(&y.len()),
        (Value::Object(x), Value::Object(y)) => x.len().cmp(&y.len()),
        _ => type_rank(a).cmp(&type_rank(b)),
    }
}

/// FNV-1a 64: small, fixed forever, so signatures computed today group with those computed
/// by a later build.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fnv(u64);

impl Fnv {
    pub(crate) fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    pub(crate) fn write(&mut self, bytes: &[u8]) -> &mut Self {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self
    }

    /// A field separator that cannot occur in text (keeps `"ab"+"c"` apart from `"a"+"bc"`).
    pub(crate) fn sep(&mut self) -> &mut Self {
        self.write(&[0xff])
    }

    pub(crate) fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_by_value() {
        assert!(strict_eq(&json!(42000), &json!(42000.0)));
        assert!(strict_eq(&json!({"a": [1, 2.0]}), &json!({"a": [1.0, 2]})));
        assert!(!strict_eq(&json!(1), &json!("1")));
        assert!(!strict_eq(&json!(u64::MAX), &json!(u64::MAX - 1)));
        assert!(strict_eq(&json!(-0.0), &json!(0)));
    }

    #[test]
    fn ordering_and_fnv() {
        assert_eq!(canonical_cmp(&json!(2), &json!(10.5)), Ordering::Less);
        assert_eq!(canonical_cmp(&json!("b"), &json!("a")), Ordering::Greater);
        assert_eq!(canonical_cmp(&json!(null), &json!("a")), Ordering::Less);
        // FNV-1a of "a" is a published test vector.
        assert_eq!(Fnv::new().write(b"a").finish(), 0xaf63_dc4c_8601_ec8c);
    }
}
