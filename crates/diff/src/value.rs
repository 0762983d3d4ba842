//! Value helpers: numeric-aware equality, canonical hashing and ordering, stable FNV-1a.
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

/// A fast in-process hasher (multiply-rotate, the FxHash scheme). Not stable across versions:
/// only used to match array elements within one comparison.
struct Mix(u64);

const MIX_K: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl Mix {
    fn word(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(MIX_K);
    }

    fn bytes(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(chunk);
            self.word(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        self.word(u64::from_le_bytes(w));
        self.word(bytes.len() as u64);
    }
}

/// Hash of a value's canonical form: numbers by value, object keys in any order.
pub(crate) fn canonical_hash(v: &Value) -> u64 {
    let mut h = Mix(0);
    hash_into(v, &mut h);
    h.0
}

fn hash_into(v: &Value, h: &mut Mix) {
    match v {
        Value::Null => h.word(1),
        Value::Bool(b) => h.word(2 + u64::from(*b)),
        Value::Number(n) => {
            h.word(4);
            let f = n.as_f64().unwrap_or(0.0);
            // -0.0 == 0.0 numerically, so they must hash alike.
            let f = if f == 0.0 { 0.0 } else { f };
            h.word(f.to_bits());
        }
        Value::String(s) => {
            h.word(5);
            h.bytes(s.as_bytes());
        }
        Value::Array(items) => {
            h.word(6);
            for item in items {
                hash_into(item, h);
            }
            h.word(items.len() as u64);
        }
        Value::Object(map) => {
            h.word(7);
            // Sum of per-entry hashes: independent of key order, so this is right whether or
            // not serde_json's `preserve_order` feature is on somewhere in the build.
            let mut sum = 0u64;
            for (k, val) in map {
                let mut e = Mix(0);
                e.bytes(k.as_bytes());
                hash_into(val, &mut e);
                sum = sum.wrapping_add(e.0);
            }
            h.word(sum);
            h.word(map.len() as u64);
        }
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

/// Short description of a value's JSON type, for messages.
pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
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
        assert_eq!(
            canonical_hash(&json!(42000)),
            canonical_hash(&json!(42000.0))
        );
        assert_eq!(canonical_hash(&json!(-0.0)), canonical_hash(&json!(0)));
        assert_ne!(
            canonical_hash(&json!([1, 2])),
            canonical_hash(&json!([2, 1]))
        );
        assert_ne!(canonical_hash(&json!("1")), canonical_hash(&json!(1)));
        assert_ne!(
            canonical_hash(&json!({"a": 1})),
            canonical_hash(&json!({"b": 1}))
        );
    }

    #[test]
    fn ordering_and_fnv() {
        assert_eq!(canonical_cmp(&json!(2), &json!(10.5)), Ordering::Less);
        assert_eq!(canonical_cmp(&json!("b"), &json!("a")), Ordering::Greater);
        assert_eq!(canonical_cmp(&json!(null), &json!("a")), Ordering::Less);
        // FNV-1a of "a" is a published test vector.
        assert_eq!(Fnv::new().write(b"a").finish(), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(type_name(&json!([])), "array");
    }
}
