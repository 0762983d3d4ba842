//! Normalization applied to a parsed body before comparing, per route and per side.
//!
//! Steps run in a fixed order: unwrap the envelope, rename fields, map enum values, drop
//! fields, sort arrays by key. Selectors written without a leading `/` (`last_price`) name a
//! field at any depth; selectors written as a pattern (`/items/*/order_qty`) name that field
//! under the matching parents. Patterns refer to the document as the earlier steps left it
//! (after unwrap; renames' own keys use the original name).

use serde_json::{Map, Value};

use crate::pointer::{PathPattern, Pointer, for_each_match_mut};
use crate::value::{canonical_cmp, strict_eq};

/// Which field(s) a rename, value map or drop applies to.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldSelector {
    /// A field of this name in any object at any depth.
    Anywhere(String),
    /// A field of this name in the objects that `parent` selects.
    At {
        /// Pattern of the objects holding the field.
        parent: PathPattern,
        /// The field name.
        field: String,
    },
}

impl FieldSelector {
    /// Parses `name` (any depth) or `/pattern/.../name`.
    ///
    /// # Errors
    /// A reason when the text is neither a plain name nor a pattern ending in a literal key.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("a field selector cannot be empty".to_owned());
        }
        if !text.starts_with('/') {
            if text.contains('*') {
                return Err(
                    "a bare field name cannot hold '*'; write a pattern like /**/name".to_owned(),
                );
            }
            return Ok(Self::Anywhere(text.to_owned()));
        }
        let pattern = PathPattern::parse(text)?;
        let (parent, field) = pattern
            .split_last_key()
            .ok_or_else(|| "the last segment must be a field name, not a wildcard".to_owned())?;
        Ok(Self::At { parent, field })
    }

    /// The field name the selector ends in.
    pub fn field(&self) -> &str {
        match self {
            Self::Anywhere(f) | Self::At { field: f, .. } => f,
        }
    }
}

/// Where an array element's key is: a field name or a JSON Pointer inside the element.
#[derive(Debug, Clone, PartialEq)]
pub enum KeySpec {
    /// A top-level field of the element.
    Field(String),
    /// A pointer inside the element (`/order/id`).
    Pointer(Pointer),
}

impl KeySpec {
    /// Parses `client_order_id` or `/order/id`.
    ///
    /// # Errors
    /// A reason when the key is empty or a malformed pointer.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("a key cannot be empty".to_owned());
        }
        if text.starts_with('/') {
            Ok(Self::Pointer(Pointer::parse(text)?))
        } else {
            Ok(Self::Field(text.to_owned()))
        }
    }

    /// The key value of one element.
    pub fn get<'v>(&self, element: &'v Value) -> Option<&'v Value> {
        match self {
            Self::Field(f) => element.as_object()?.get(f.as_str()),
            Self::Pointer(p) => p.get(element),
        }
    }

    /// The key as written.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Field(f) => f,
            Self::Pointer(p) => p.as_str(),
        }
    }
}

/// Replace the document with the value at `pointer` when every `when` condition holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Unwrap {
    /// Where the payload is (`/data`).
    pub pointer: Pointer,
    /// Conditions (`/status` = `"success"`); all must hold.
    pub when: Vec<(Pointer, Value)>,
}

/// Rename a field.
#[derive(Debug, Clone, PartialEq)]
pub struct Rename {
    /// The field(s) to rename.
    pub from: FieldSelector,
    /// The new name. An existing field of that name is replaced.
    pub to: String,
}

/// Map string values of a field (`BUY` → `buy`).
#[derive(Debug, Clone, PartialEq)]
pub struct ValueMap {
    /// The field(s) whose values are mapped.
    pub at: FieldSelector,
    /// `from` string → replacement value.
    pub map: Vec<(String, Value)>,
}

/// Sort an array by a key (elements without the key go last, in their original order).
#[derive(Debug, Clone, PartialEq)]
pub struct SortRule {
    /// Pattern of the array(s).
    pub at: PathPattern,
    /// The element key.
    pub key: KeySpec,
}

/// A side's normalization steps.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Normalization {
    /// Envelope unwrap.
    pub unwrap: Option<Unwrap>,
    /// Field renames.
    pub rename: Vec<Rename>,
    /// Enum value maps.
    pub map_values: Vec<ValueMap>,
    /// Fields removed before comparing (not counted anywhere: use `ignore` for noise).
    pub drop: Vec<FieldSelector>,
    /// Arrays sorted by key.
    pub sort: Vec<SortRule>,
}

impl Normalization {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.unwrap.is_none()
            && self.rename.is_empty()
            && self.map_values.is_empty()
            && self.drop.is_empty()
            && self.sort.is_empty()
    }

    /// Applies every step to `value` in place.
    pub fn apply(&self, value: &mut Value) {
        if let Some(u) = &self.unwrap {
            let applies = u
                .when
                .iter()
                .all(|(p, want)| p.get(value).is_some_and(|v| strict_eq(v, want)));
            if applies && let Some(inner) = u.pointer.get_mut(value) {
                let inner = inner.take();
                *value = inner;
            }
        }
        let anywhere = self
            .rename
            .iter()
            .any(|r| matches!(r.from, FieldSelector::Anywhere(_)))
            || self
                .map_values
                .iter()
                .any(|m| matches!(m.at, FieldSelector::Anywhere(_)))
            || self
                .drop
                .iter()
                .any(|d| matches!(d, FieldSelector::Anywhere(_)));
        if anywhere {
            self.walk_anywhere(value);
        }
        for r in &self.rename {
            if let FieldSelector::At { parent, field } = &r.from {
                for_each_match_mut(value, parent.segs(), &mut |obj| {
                    if let Value::Object(map) = obj {
                        rename_in(map, field, &r.to);
                    }
                });
            }
        }
        for m in &self.map_values {
            if let FieldSelector::At { parent, field } = &m.at {
                for_each_match_mut(value, parent.segs(), &mut |obj| {
                    if let Some(v) = obj
                        .as_object_mut()
                        .and_then(|map| map.get_mut(field.as_str()))
                    {
                        map_value(v, &m.map);
                    }
                });
            }
        }
        for d in &self.drop {
            if let FieldSelector::At { parent, field } = d {
                for_each_match_mut(value, parent.segs(), &mut |obj| {
                    if let Value::Object(map) = obj {
                        map.remove(field.as_str());
                    }
                });
            }
        }
        for s in &self.sort {
            for_each_match_mut(value, s.at.segs(), &mut |arr| {
                if let Value::Array(items) = arr {
                    items.sort_by(|a, b| match (s.key.get(a), s.key.get(b)) {
                        (Some(x), Some(y)) => canonical_cmp(x, y),
                        (Some(_), None) => std::cmp::Ordering::Less,
                        (None, Some(_)) => std::cmp::Ordering::Greater,
                        (None, None) => std::cmp::Ordering::Equal,
                    });
                }
            });
        }
    }

    fn walk_anywhere(&self, value: &mut Value) {
        match value {
            Value::Object(map) => {
                for r in &self.rename {
                    if let FieldSelector::Anywhere(from) = &r.from {
                        rename_in(map, from, &r.to);
                    }
                }
                for m in &self.map_values {
                    if let FieldSelector::Anywhere(field) = &m.at
                        && let Some(v) = map.get_mut(field.as_str())
                    {
                        map_value(v, &m.map);
                    }
                }
                for d in &self.drop {
                    if let FieldSelector::Anywhere(field) = d {
                        map.remove(field.as_str());
                    }
                }
                for child in map.values_mut() {
                    self.walk_anywhere(child);
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.walk_anywhere(v)),
            _ => {}
        }
    }
}

fn rename_in(map: &mut Map<String, Value>, from: &str, to: &str) {
    if from == to {
        return;
    }
    if let Some(v) = map.remove(from) {
        map.insert(to.to_owned(), v);
    }
}

fn map_value(v: &mut Value, map: &[(String, Value)]) {
    if let Value::String(s) = v
        && let Some((_, to)) = map.iter().find(|(from, _)| from == s)
    {
        *v = to.clone();
    }
}

/// Request-body mapping for the candidate (renames, drops, wraps, fixed values), stored for
/// the mirror. Steps run in that order, so a wrap names a field by its new name.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BodyMap {
    /// Renames and drops.
    pub steps: Normalization,
    /// Fields whose value is put into a one-element array (a single id becoming a bulk list:
    /// `{"order_ids": "a"}` → `{"order_ids": ["a"]}`). An array value is left as it is.
    pub wrap: Vec<FieldSelector>,
    /// Fields set to fixed values (intermediate objects are created).
    pub set: Vec<(Pointer, Value)>,
}

impl BodyMap {
    /// Whether the mapping does nothing.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty() && self.wrap.is_empty() && self.set.is_empty()
    }

    /// Applies the mapping to a request body in place.
    pub fn apply(&self, value: &mut Value) {
        self.steps.apply(value);
        for w in &self.wrap {
            match w {
                FieldSelector::Anywhere(field) => wrap_anywhere(value, field),
                FieldSelector::At { parent, field } => {
                    for_each_match_mut(value, parent.segs(), &mut |obj| {
                        if let Some(v) = obj.as_object_mut().and_then(|m| m.get_mut(field.as_str()))
                        {
                            wrap_value(v);
                        }
                    });
                }
            }
        }
        for (ptr, v) in &self.set {
            set_at(value, ptr.segments(), v.clone());
        }
    }
}

fn wrap_value(v: &mut Value) {
    if !v.is_array() {
        let inner = v.take();
        *v = Value::Array(vec![inner]);
    }
}

fn wrap_anywhere(value: &mut Value, field: &str) {
    match value {
        Value::Object(map) => {
            if let Some(v) = map.get_mut(field) {
                wrap_value(v);
            }
            for (k, child) in map.iter_mut() {
                if k != field {
                    wrap_anywhere(child, field);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| wrap_anywhere(v, field)),
        _ => {}
    }
}

fn set_at(root: &mut Value, segs: &[String], value: Value) {
    let Some((last, parents)) = segs.split_last() else {
        *root = value;
        return;
    };
    let mut at = root;
    for seg in parents {
        if at.is_null() {
            *at = Value::Object(Map::new());
        }
        at = match at {
            Value::Object(map) => map.entry(seg.as_str()).or_insert(Value::Null),
            Value::Array(items) => match seg.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                Some(v) => v,
                None => return,
            },
            _ => return,
        };
    }
    if at.is_null() {
        *at = Value::Object(Map::new());
    }
    match at {
        Value::Object(map) => {
            map.insert(last.clone(), value);
        }
        Value::Array(items) => {
            if let Some(slot) = last.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                *slot = value;
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sel(s: &str) -> FieldSelector {
        FieldSelector::parse(s).unwrap()
    }

    #[test]
    fn unwrap_rename_map_drop_sort() {
        let n = Normalization {
            unwrap: Some(Unwrap {
                pointer: Pointer::parse("/data").unwrap(),
                when: vec![(Pointer::parse("/status").unwrap(), json!("success"))],
            }),
            rename: vec![
                Rename {
                    from: sel("last_price"),
                    to: "price".into(),
                },
                Rename {
                    from: sel("/*/order_qty"),
                    to: "qty".into(),
                },
            ],
            map_values: vec![ValueMap {
                at: sel("side"),
                map: vec![("BUY".into(), json!("buy"))],
            }],
            drop: vec![sel("/*/_id"), sel("junk")],
            sort: vec![SortRule {
                at: PathPattern::parse("").unwrap(),
                key: KeySpec::parse("client_order_id").unwrap(),
            }],
        };
        let mut v = json!({"status": "success", "data": [
            {"client_order_id": "b", "side": "BUY", "order_qty": 1, "_id": 7, "last_price": 5, "junk": {}},
            {"client_order_id": "a", "side": "SELL", "nested": {"last_price": 1}},
            {"side": "BUY"}
        ]});
        n.apply(&mut v);
        assert_eq!(
            v,
            json!([
                {"client_order_id": "a", "side": "SELL", "nested": {"price": 1}},
                {"client_order_id": "b", "side": "buy", "qty": 1, "price": 5},
                {"side": "buy"}
            ])
        );
        // The condition guards the unwrap: an error envelope stays as it is.
        let mut err = json!({"status": "error", "data": 1});
        n.apply(&mut err);
        assert_eq!(err, json!({"status": "error", "data": 1}));
        assert!(!n.is_empty());
        assert!(Normalization::default().is_empty());
    }

    #[test]
    fn selectors_and_keys() {
        assert!(FieldSelector::parse("").is_err());
        assert!(FieldSelector::parse("a*").is_err());
        assert!(FieldSelector::parse("/items/*").is_err());
        assert_eq!(sel("/a/b").field(), "b");
        let k = KeySpec::parse("/order/id").unwrap();
        assert_eq!(k.get(&json!({"order": {"id": 3}})), Some(&json!(3)));
        assert_eq!(KeySpec::parse("id").unwrap().get(&json!(3)), None);
        assert!(KeySpec::parse("").is_err());
    }

    #[test]
    fn body_map() {
        let m = BodyMap {
            steps: Normalization {
                rename: vec![Rename {
                    from: sel("user_id"),
                    to: "username".into(),
                }],
                ..Default::default()
            },
            wrap: Vec::new(),
            set: vec![(Pointer::parse("/meta/source").unwrap(), json!("shadow"))],
        };
        let mut v = json!({"user_id": "admin", "password": "x"});
        m.apply(&mut v);
        assert_eq!(
            v,
            json!({"username": "admin", "password": "x", "meta": {"source": "shadow"}})
        );
    }

    #[test]
    fn body_map_wraps_a_single_id_into_a_list() {
        // Python `POST /api/cancel {client_order_id, symbol}` → C++ `{"order_ids": [id]}`.
        let m = BodyMap {
            steps: Normalization {
                rename: vec![Rename {
                    from: sel("client_order_id"),
                    to: "order_ids".into(),
                }],
                drop: vec![sel("symbol")],
                ..Default::default()
            },
            wrap: vec![sel("order_ids"), sel("/nested/ids")],
            set: Vec::new(),
        };
        assert!(!m.is_empty());
        let mut v = json!({"client_order_id": "web-1", "symbol": "BTCUSDT"});
        m.apply(&mut v);
        assert_eq!(v, json!({"order_ids": ["web-1"]}));
        // Already a list: unchanged (no nesting); a pattern selector reaches nested fields.
        let mut v = json!({"order_ids": ["a", "b"], "nested": {"ids": 3}});
        m.apply(&mut v);
        assert_eq!(v, json!({"order_ids": ["a", "b"], "nested": {"ids": [3]}}));
    }
}
