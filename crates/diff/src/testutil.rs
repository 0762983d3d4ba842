//! Shared test strategies.

use proptest::prelude::*;
use serde_json::{Value, json};

/// Arbitrary JSON values: every type, nesting up to 4 levels, keys and strings that include
/// characters needing escapes.
pub(crate) fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        (-1.0e12..1.0e12f64).prop_map(|f| json!(f)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "[a-z0-9_]{0,8}".prop_map(Value::String),
        "\\PC{0,6}".prop_map(Value::String),
        "[\"\\\\/\u{0}-\u{1f}é€😀]{0,4}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z_]{1,6}|\\PC{0,3}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}
