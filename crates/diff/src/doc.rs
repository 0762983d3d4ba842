//! A parsed JSON document in one arena, strings borrowed from the input.
//!
//! Why not `serde_json::Value`: building a `Value` allocates every key, every string and every
//! map; for a 1 KiB VeloZ order list that is ~6× the cost of parsing itself and alone exceeds
//! the mirror's per-pair budget. Here a strict parser appends nodes to three flat vectors;
//! strings without escapes are borrowed from the input (escaped ones are decoded into one side
//! buffer). Normalization edits the arena in place (a rename changes
//! an entry's key, a drop marks it dead, a sort permutes an item range, an unwrap moves the
//! root), and `Value`s are built only for the few subtrees that end up in a difference.
//!
//! Duplicate object keys: the last one wins, as with `serde_json::Value` and Python's `json`.

use serde_json::{Map, Number, Value};
use std::cmp::Ordering;

use crate::normalize::{FieldSelector, KeySpec, Normalization};
use crate::pointer::{PatSeg, Pointer};

/// A JSON number as parsed.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Num {
    U(u64),
    I(i64),
    F(f64),
}

impl Num {
    // Integer → f64 may round beyond 2^53; that is the comparison serde_json users expect.
    #[allow(clippy::cast_precision_loss)]
    pub(crate) fn f64(self) -> f64 {
        match self {
            Num::U(u) => u as f64,
            Num::I(i) => i as f64,
            Num::F(f) => f,
        }
    }

    /// Equal by value: exact for two integers, `f64` otherwise (`42000` = `42000.0`).
    pub(crate) fn same(self, other: Num) -> bool {
        match (self, other) {
            (Num::U(a), Num::U(b)) => a == b,
            (Num::I(a), Num::I(b)) => a == b,
            (Num::U(u), Num::I(i)) | (Num::I(i), Num::U(u)) => {
                u64::try_from(i).is_ok_and(|i| i == u)
            }
            _ => self.f64() == other.f64(),
        }
    }

    fn from_json(n: &Number) -> Num {
        if let Some(u) = n.as_u64() {
            Num::U(u)
        } else if let Some(i) = n.as_i64() {
            Num::I(i)
        } else {
            Num::F(n.as_f64().unwrap_or(0.0))
        }
    }

    fn to_json(self) -> Value {
        match self {
            Num::U(u) => Value::from(u),
            Num::I(i) => Value::from(i),
            Num::F(f) => Number::from_f64(f).map_or(Value::Null, Value::Number),
        }
    }
}

/// A string: borrowed (from the input or the rules) or in the document's side buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Str<'a> {
    Ref(&'a str),
    Buf { start: u32, len: u32 },
}

/// One node. Containers point at a range of `entries` (objects) or `items` (arrays).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Node<'a> {
    Null,
    Bool(bool),
    Num(Num),
    Str(Str<'a>),
    Arr {
        start: u32,
        len: u32,
    },
    /// `shape`: objects of one document with equal shapes (other than [`NO_SHAPE`]) have the
    /// same keys in the same order, all live — the elements of a list usually do. Work that
    /// depends only on the keys (anywhere-normalization, member matching) is done once per
    /// shape and replayed.
    Obj {
        start: u32,
        len: u32,
        shape: u32,
        /// As parsed, no member held anything: each member value was one node (a scalar or
        /// an empty container). Normalization may map a value to a container since.
        leaf: bool,
    },
}

/// The shape of an object that shares it with no other (edited by a rule that picked it
/// alone, or built from a rule value).
pub(crate) const NO_SHAPE: u32 = u32::MAX;

/// One edit of an object's members by the anywhere-rules, by slot in the object.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Edit<'a> {
    Kill(u32),
    Rename(u32, &'a str),
    Map(u32, &'a [(String, Value)]),
}

/// The edits the anywhere-rules made to the last object normalized, and its shape.
struct EditMemo<'a> {
    shape: u32,
    edits: Vec<Edit<'a>>,
    /// A value map may turn a scalar into an object or an array.
    maps_to_containers: bool,
}

/// One object member; `live` is false once dropped, renamed over, or shadowed by a later
/// duplicate key.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry<'a> {
    pub(crate) key: Str<'a>,
    pub(crate) val: u32,
    pub(crate) live: bool,
}

/// Reusable storage for documents: a [`crate::Comparer`] keeps one per side so parsing a pair
/// allocates nothing once the vectors have grown to the bodies' size.
#[derive(Debug, Default)]
pub(crate) struct Arena {
    nodes: Vec<Node<'static>>,
    entries: Vec<Entry<'static>>,
    items: Vec<u32>,
    buf: String,
    stack_e: Vec<Entry<'static>>,
    stack_i: Vec<u32>,
    edits: Vec<Edit<'static>>,
}

/// Empties a vector and retypes it (here: to another lifetime of the same type), keeping its
/// allocation: std collects a `vec::IntoIter` adapter back into the source buffer when the
/// element layouts match, which they do for one type at two lifetimes. If that optimization
/// ever stopped applying, this would merely allocate.
pub(crate) fn relifetime<T, U>(v: Vec<T>) -> Vec<U> {
    v.into_iter().filter_map(|_| None).collect()
}

/// A parsed document.
#[derive(Debug, Default)]
pub(crate) struct Doc<'a> {
    nodes: Vec<Node<'a>>,
    entries: Vec<Entry<'a>>,
    items: Vec<u32>,
    buf: String,
    root: u32,
    /// Scratch of normalization (see [`EditMemo`]).
    edits: Vec<Edit<'a>>,
}

fn range(start: u32, len: u32) -> std::ops::Range<usize> {
    start as usize..start as usize + len as usize
}

/// Objects up to this size are searched linearly; larger ones through a sorted index.
const LINEAR_MAX: usize = 24;

/// Objects up to this size get their keys fingerprinted into a stack array (or one bit
/// each in a `u64`) for member lookups.
pub(crate) const SMALL_OBJECT: usize = 64;

impl<'a> Doc<'a> {
    /// Parses `input`; `None` when it is not one JSON value (surrounding whitespace allowed).
    #[cfg(test)]
    pub(crate) fn parse(input: &'a [u8]) -> Option<Doc<'a>> {
        Self::parse_in(input, &mut Arena::default())
    }

    /// Parses `input` into vectors taken from `arena` (give them back with
    /// [`Doc::recycle`]); on failure they go back at once.
    pub(crate) fn parse_in(input: &'a [u8], arena: &mut Arena) -> Option<Doc<'a>> {
        // JSON text is UTF-8 (RFC 8259 §8.1); validating it once lets the parser slice strings
        // without checking each.
        let text = std::str::from_utf8(input).ok()?;
        let mut buf = std::mem::take(&mut arena.buf);
        buf.clear();
        let mut p = Parser {
            text,
            pos: 0,
            depth: 0,
            doc: Doc {
                nodes: relifetime(std::mem::take(&mut arena.nodes)),
                entries: relifetime(std::mem::take(&mut arena.entries)),
                items: relifetime(std::mem::take(&mut arena.items)),
                buf,
                root: 0,
                edits: relifetime(std::mem::take(&mut arena.edits)),
            },
            stack_e: relifetime(std::mem::take(&mut arena.stack_e)),
            stack_i: relifetime(std::mem::take(&mut arena.stack_i)),
            escaped_at: (0, 0),
            last_unique: (0, 0, NO_SHAPE),
            shapes: 0,
        };
        p.ws();
        let root = p.value();
        p.ws();
        let complete = p.pos == text.len();
        arena.stack_e = relifetime(std::mem::take(&mut p.stack_e));
        arena.stack_i = relifetime(std::mem::take(&mut p.stack_i));
        match root {
            Some(root) if complete => {
                p.doc.root = root;
                Some(p.doc)
            }
            _ => {
                p.doc.recycle(arena);
                None
            }
        }
    }

    /// Gives the document's vectors back to `arena` for the next parse.
    pub(crate) fn recycle(self, arena: &mut Arena) {
        arena.nodes = relifetime(self.nodes);
        arena.entries = relifetime(self.entries);
        arena.items = relifetime(self.items);
        arena.buf = self.buf;
        arena.edits = relifetime(self.edits);
    }

    pub(crate) fn root(&self) -> u32 {
        self.root
    }

    pub(crate) fn node(&self, i: u32) -> Node<'a> {
        self.nodes[i as usize]
    }

    #[inline]
    pub(crate) fn text<'s>(&'s self, s: Str<'a>) -> &'s str {
        match s {
            Str::Ref(r) => r,
            Str::Buf { start, len } => &self.buf[range(start, len)],
        }
    }

    pub(crate) fn entries(&self, start: u32, len: u32) -> &[Entry<'a>] {
        &self.entries[range(start, len)]
    }

    pub(crate) fn items(&self, start: u32, len: u32) -> &[u32] {
        &self.items[range(start, len)]
    }

    /// Live entries of an object node (empty for other nodes).
    pub(crate) fn members(&self, i: u32) -> impl Iterator<Item = (&str, u32)> {
        let slice = match self.node(i) {
            Node::Obj { start, len, .. } => self.entries(start, len),
            _ => &[],
        };
        slice
            .iter()
            .filter(|e| e.live)
            .map(|e| (self.text(e.key), e.val))
    }

    pub(crate) fn live_count(&self, i: u32) -> usize {
        match self.node(i) {
            Node::Obj { start, len, .. } => {
                self.entries(start, len).iter().filter(|e| e.live).count()
            }
            _ => 0,
        }
    }

    /// The value of a live member `key` of object node `i`.
    pub(crate) fn get(&self, i: u32, key: &str) -> Option<u32> {
        self.members(i)
            .find(|(k, _)| same_text(k, key))
            .map(|(_, v)| v)
    }

    /// A lookup table for a large object (`None` when linear search is as fast).
    pub(crate) fn index(&self, i: u32) -> Option<Vec<(&str, u32)>> {
        let Node::Obj { len, .. } = self.node(i) else {
            return None;
        };
        if (len as usize) <= LINEAR_MAX {
            return None;
        }
        let mut idx: Vec<(&str, u32)> = self.members(i).collect();
        idx.sort_unstable_by(|a, b| a.0.cmp(b.0));
        Some(idx)
    }

    /// Live members of object `i` with their slot in the object.
    pub(crate) fn member_slots(&self, i: u32) -> impl Iterator<Item = (usize, &str, u32)> {
        let slice = match self.node(i) {
            Node::Obj { start, len, .. } => self.entries(start, len),
            _ => &[],
        };
        slice
            .iter()
            .enumerate()
            .filter(|(_, e)| e.live)
            .map(|(k, e)| (k, self.text(e.key), e.val))
    }

    /// Looks `key` up in object `i`: through `index` when there is one, else first at slot
    /// `hint` (two answers from one producer usually list members in the same order), then
    /// linearly.
    pub(crate) fn lookup(
        &self,
        i: u32,
        index: Option<&[(&str, u32)]>,
        key: &str,
        hint: usize,
    ) -> Option<u32> {
        if let Some(idx) = index {
            return idx
                .binary_search_by(|(k, _)| (*k).cmp(key))
                .ok()
                .map(|at| idx[at].1);
        }
        if let Node::Obj { start, len, .. } = self.node(i)
            && let Some(e) = self.entries(start, len).get(hint)
            && e.live
            && same_text(self.text(e.key), key)
        {
            return Some(e.val);
        }
        self.get(i, key)
    }

    /// The child of node `i` named by one unescaped pointer segment.
    fn child(&self, i: u32, seg: &str, index: Option<usize>) -> Option<u32> {
        match self.node(i) {
            Node::Obj { .. } => self.get(i, seg),
            Node::Arr { start, len } => index.and_then(|k| self.items(start, len).get(k).copied()),
            _ => None,
        }
    }

    pub(crate) fn pointer(&self, i: u32, ptr: &Pointer) -> Option<u32> {
        let mut at = i;
        for seg in ptr.segments() {
            let index = seg
                .parse::<usize>()
                .ok()
                .filter(|_| !(seg.len() > 1 && seg.starts_with('0')));
            at = self.child(at, seg, index)?;
        }
        Some(at)
    }

    pub(crate) fn key_of(&self, i: u32, key: &KeySpec) -> Option<u32> {
        match key {
            KeySpec::Field(f) => match self.node(i) {
                Node::Obj { .. } => self.get(i, f),
                _ => None,
            },
            KeySpec::Pointer(p) => self.pointer(i, p),
        }
    }

    /// The subtree at `i` as a `serde_json::Value` (only for what is reported).
    pub(crate) fn to_value(&self, i: u32) -> Value {
        match self.node(i) {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(b),
            Node::Num(n) => n.to_json(),
            Node::Str(s) => Value::String(self.text(s).to_owned()),
            Node::Arr { start, len } => Value::Array(
                self.items(start, len)
                    .iter()
                    .map(|&c| self.to_value(c))
                    .collect(),
            ),
            Node::Obj { .. } => {
                let mut map = Map::new();
                for (k, v) in self.members(i) {
                    map.insert(k.to_owned(), self.to_value(v));
                }
                Value::Object(map)
            }
        }
    }

    /// Appends the compact JSON of a scalar node to `out`, exactly as
    /// `to_value(i).to_string()` writes it, without building a `Value`; `false` (nothing
    /// written) for arrays and objects.
    pub(crate) fn write_scalar_json(&self, i: u32, out: &mut String) -> bool {
        use std::fmt::Write as _;
        match self.node(i) {
            Node::Null => out.push_str("null"),
            Node::Bool(b) => out.push_str(if b { "true" } else { "false" }),
            // A number `Value` holds no heap data; writing it formats in place.
            Node::Num(n) => {
                let _ = write!(out, "{}", n.to_json());
            }
            Node::Str(s) => write_json_string(self.text(s), out),
            Node::Arr { .. } | Node::Obj { .. } => return false,
        }
        true
    }

    /// Hash of the canonical form: numbers by value, object members in any order. In-process
    /// only (used to pair array elements), so a fast non-cryptographic mix is enough.
    pub(crate) fn hash(&self, i: u32) -> u64 {
        let mut h = Mix(0);
        self.hash_into(i, &mut h);
        h.0
    }

    fn hash_into(&self, i: u32, h: &mut Mix) {
        match self.node(i) {
            Node::Null => h.word(1),
            Node::Bool(b) => h.word(2 + u64::from(b)),
            Node::Num(n) => {
                h.word(4);
                let f = n.f64();
                // -0.0 == 0.0 numerically, so they must hash alike.
                h.word(if f == 0.0 { 0 } else { f.to_bits() });
            }
            Node::Str(s) => {
                h.word(5);
                h.bytes(self.text(s).as_bytes());
            }
            Node::Arr { start, len } => {
                h.word(6);
                for &c in self.items(start, len) {
                    self.hash_into(c, h);
                }
                h.word(u64::from(len));
            }
            Node::Obj { .. } => {
                h.word(7);
                let mut sum = 0u64;
                let mut n = 0u64;
                for (k, v) in self.members(i) {
                    let mut e = Mix(0);
                    e.bytes(k.as_bytes());
                    self.hash_into(v, &mut e);
                    sum = sum.wrapping_add(e.0);
                    n += 1;
                }
                h.word(sum);
                h.word(n);
            }
        }
    }

    /// Deep equality with numbers by value (no tolerance), across documents.
    pub(crate) fn same(&self, i: u32, other: &Doc<'_>, j: u32) -> bool {
        match (self.node(i), other.node(j)) {
            (Node::Null, Node::Null) => true,
            (Node::Bool(a), Node::Bool(b)) => a == b,
            (Node::Num(a), Node::Num(b)) => a.same(b),
            (Node::Str(a), Node::Str(b)) => same_text(self.text(a), other.text(b)),
            (Node::Arr { start: s1, len: l1 }, Node::Arr { start: s2, len: l2 }) => {
                l1 == l2
                    && self
                        .items(s1, l1)
                        .iter()
                        .zip(other.items(s2, l2))
                        .all(|(&a, &b)| self.same(a, other, b))
            }
            (Node::Obj { .. }, Node::Obj { .. }) => {
                self.live_count(i) == other.live_count(j)
                    && self
                        .members(i)
                        .all(|(k, v)| other.get(j, k).is_some_and(|w| self.same(v, other, w)))
            }
            _ => false,
        }
    }

    /// Whether node `i` equals a rule value.
    fn same_json(&self, i: u32, v: &Value) -> bool {
        match (self.node(i), v) {
            (Node::Null, Value::Null) => true,
            (Node::Bool(a), Value::Bool(b)) => a == *b,
            (Node::Num(a), Value::Number(b)) => a.same(Num::from_json(b)),
            (Node::Str(a), Value::String(b)) => self.text(a) == b,
            (Node::Arr { start, len }, Value::Array(b)) => {
                len as usize == b.len()
                    && self
                        .items(start, len)
                        .iter()
                        .zip(b)
                        .all(|(&x, y)| self.same_json(x, y))
            }
            (Node::Obj { .. }, Value::Object(b)) => {
                self.live_count(i) == b.len()
                    && self
                        .members(i)
                        .all(|(k, x)| b.get(k).is_some_and(|y| self.same_json(x, y)))
            }
            _ => false,
        }
    }

    /// Total order for sorting by key: by type, numbers by value, strings by bytes.
    fn order(&self, i: u32, j: u32) -> Ordering {
        fn rank(n: Node<'_>) -> u8 {
            match n {
                Node::Null => 0,
                Node::Bool(_) => 1,
                Node::Num(_) => 2,
                Node::Str(_) => 3,
                Node::Arr { .. } => 4,
                Node::Obj { .. } => 5,
            }
        }
        match (self.node(i), self.node(j)) {
            (Node::Bool(a), Node::Bool(b)) => a.cmp(&b),
            (Node::Num(Num::I(a)), Node::Num(Num::I(b))) => a.cmp(&b),
            (Node::Num(Num::U(a)), Node::Num(Num::U(b))) => a.cmp(&b),
            (Node::Num(a), Node::Num(b)) => a.f64().total_cmp(&b.f64()),
            (Node::Str(a), Node::Str(b)) => self.text(a).cmp(self.text(b)),
            (Node::Arr { len: a, .. }, Node::Arr { len: b, .. }) => a.cmp(&b),
            (Node::Obj { .. }, Node::Obj { .. }) => self.live_count(i).cmp(&self.live_count(j)),
            (a, b) => rank(a).cmp(&rank(b)),
        }
    }

    // ------------------------------------------------------------------------------------
    // Normalization (same semantics as `Normalization::apply` on a `Value`)
    // ------------------------------------------------------------------------------------

    /// Applies a side's normalization in place.
    pub(crate) fn normalize(&mut self, n: &'a Normalization) {
        if n.is_empty() {
            return;
        }
        if let Some(u) = &n.unwrap {
            let root = self.root;
            let applies = u.when.iter().all(|(p, want)| {
                self.pointer(root, p)
                    .is_some_and(|x| self.same_json(x, want))
            });
            if applies && let Some(inner) = self.pointer(root, &u.pointer) {
                self.root = inner;
            }
        }
        let anywhere = n
            .rename
            .iter()
            .any(|r| matches!(r.from, FieldSelector::Anywhere(_)))
            || n.map_values
                .iter()
                .any(|m| matches!(m.at, FieldSelector::Anywhere(_)))
            || n.drop
                .iter()
                .any(|d| matches!(d, FieldSelector::Anywhere(_)));
        if anywhere {
            let mut memo = EditMemo {
                shape: NO_SHAPE,
                edits: std::mem::take(&mut self.edits),
                maps_to_containers: n
                    .map_values
                    .iter()
                    .any(|m| m.map.iter().any(|(_, to)| to.is_array() || to.is_object())),
            };
            self.walk_anywhere(self.root, n, &mut memo);
            self.edits = memo.edits;
        }
        let mut found = Vec::new();
        for r in &n.rename {
            if let FieldSelector::At { parent, field } = &r.from {
                self.select(parent.segs(), &mut found);
                for &obj in &found {
                    self.rename_in(obj, field, &r.to);
                }
            }
        }
        for m in &n.map_values {
            if let FieldSelector::At { parent, field } = &m.at {
                self.select(parent.segs(), &mut found);
                for &obj in &found {
                    if let Some(v) = self.get(obj, field) {
                        self.map_value(v, &m.map);
                    }
                }
            }
        }
        for d in &n.drop {
            if let FieldSelector::At { parent, field } = d {
                self.select(parent.segs(), &mut found);
                for &obj in &found {
                    self.kill(obj, field);
                }
            }
        }
        for s in &n.sort {
            self.select(s.at.segs(), &mut found);
            for &arr in &found {
                self.sort_by_key(arr, &s.key);
            }
        }
    }

    /// Collects the nodes a pattern selects, from the root.
    fn select(&self, pat: &[PatSeg], out: &mut Vec<u32>) {
        out.clear();
        self.select_from(self.root, pat, out);
        // `**` can reach a node along two routes; act on it once.
        if pat.contains(&PatSeg::Deep) {
            out.sort_unstable();
            out.dedup();
        }
    }

    fn select_from(&self, i: u32, pat: &[PatSeg], out: &mut Vec<u32>) {
        let Some((first, rest)) = pat.split_first() else {
            out.push(i);
            return;
        };
        match first {
            PatSeg::Lit { text, index } => {
                if let Some(c) = self.child(i, text, *index) {
                    self.select_from(c, rest, out);
                }
            }
            PatSeg::Any => self.for_children(i, |c| self.select_from(c, rest, out)),
            PatSeg::Deep => {
                self.select_from(i, rest, out);
                self.for_children(i, |c| self.select_from(c, pat, out));
            }
        }
    }

    fn for_children(&self, i: u32, mut f: impl FnMut(u32)) {
        match self.node(i) {
            Node::Obj { start, len, .. } => self
                .entries(start, len)
                .iter()
                .filter(|e| e.live)
                .for_each(|e| f(e.val)),
            Node::Arr { start, len } => self.items(start, len).iter().for_each(|&c| f(c)),
            _ => {}
        }
    }

    fn walk_anywhere(&mut self, i: u32, n: &'a Normalization, memo: &mut EditMemo<'a>) {
        match self.node(i) {
            Node::Obj {
                start,
                len,
                shape,
                leaf,
            } if len as usize <= SMALL_OBJECT => {
                self.anywhere_small(start, len, shape, n, memo);
                if leaf && !memo.maps_to_containers {
                    // No member holds an object.
                    return;
                }
                for k in range(start, len) {
                    let e = self.entries[k];
                    // Only containers hold objects; skipping scalars here saves a call each.
                    if e.live
                        && matches!(
                            self.nodes[e.val as usize],
                            Node::Obj { .. } | Node::Arr { .. }
                        )
                    {
                        self.walk_anywhere(e.val, n, memo);
                    }
                }
            }
            Node::Obj { start, len, .. } => {
                for r in &n.rename {
                    if let FieldSelector::Anywhere(from) = &r.from {
                        self.rename_in(i, from, &r.to);
                    }
                }
                for m in &n.map_values {
                    if let FieldSelector::Anywhere(field) = &m.at
                        && let Some(v) = self.get(i, field)
                    {
                        self.map_value(v, &m.map);
                    }
                }
                for d in &n.drop {
                    if let FieldSelector::Anywhere(field) = d {
                        self.kill(i, field);
                    }
                }
                for k in range(start, len) {
                    let e = self.entries[k];
                    if e.live {
                        self.walk_anywhere(e.val, n, memo);
                    }
                }
            }
            Node::Arr { start, len } => {
                for k in range(start, len) {
                    let c = self.items[k];
                    self.walk_anywhere(c, n, memo);
                }
            }
            _ => {}
        }
    }

    /// The anywhere-rules on one object of at most [`SMALL_OBJECT`] members, in the same
    /// order and with the same effect as [`Doc::rename_in`], [`Doc::get`] and [`Doc::kill`]
    /// one rule at a time, with the member scan inlined (lengths first, then short keys as
    /// machine words). Which members the rules touch depends only on the keys, so the edits
    /// made to one object are replayed, slot by slot, on the next object of its shape.
    fn anywhere_small(
        &mut self,
        start: u32,
        len: u32,
        shape: u32,
        n: &'a Normalization,
        memo: &mut EditMemo<'a>,
    ) {
        if shape != NO_SHAPE && shape == memo.shape {
            for &edit in &memo.edits {
                self.apply(start, edit);
            }
            return;
        }
        memo.shape = shape;
        memo.edits.clear();
        let slots = 0..len;
        let entry = |k: u32| start as usize + k as usize;
        // One bit per key length present (lengths of 64 and more share the top bit; a
        // rename adds its new length): most rules name a length the object lacks.
        let bit = |key: &str| 1u64 << key.len().min(63);
        let mut lens = self.entries[range(start, len)]
            .iter()
            .fold(0u64, |acc, e| acc | bit(self.text(e.key)));
        let find = |doc: &Self, lens: u64, key: &str| {
            if lens & bit(key) == 0 {
                return None;
            }
            slots.clone().find(|&k| {
                let e = doc.entries[entry(k)];
                e.live && same_text(doc.text(e.key), key)
            })
        };
        let mut edit = |doc: &mut Self, e: Edit<'a>| {
            memo.edits.push(e);
            doc.apply(start, e);
        };
        for r in &n.rename {
            if let FieldSelector::Anywhere(from) = &r.from
                && *from != r.to
                && let Some(slot) = find(self, lens, from)
            {
                // The renamed member replaces an existing one of the new name.
                if let Some(old) = find(self, lens, &r.to) {
                    edit(self, Edit::Kill(old));
                }
                edit(self, Edit::Rename(slot, &r.to));
                lens |= bit(&r.to);
            }
        }
        for m in &n.map_values {
            if let FieldSelector::Anywhere(field) = &m.at
                && let Some(slot) = find(self, lens, field)
            {
                edit(self, Edit::Map(slot, &m.map));
            }
        }
        for d in &n.drop {
            if let FieldSelector::Anywhere(field) = d
                && let Some(slot) = find(self, lens, field)
            {
                edit(self, Edit::Kill(slot));
            }
        }
    }

    /// Applies one edit to the member at `slot` of the object whose entries start at `start`.
    fn apply(&mut self, start: u32, edit: Edit<'a>) {
        let at = |slot: u32| start as usize + slot as usize;
        match edit {
            Edit::Kill(slot) => self.entries[at(slot)].live = false,
            Edit::Rename(slot, to) => self.entries[at(slot)].key = Str::Ref(to),
            Edit::Map(slot, map) => self.map_value(self.entries[at(slot)].val, map),
        }
    }

    fn entry_slot(&self, obj: u32, key: &str) -> Option<usize> {
        let Node::Obj { start, len, .. } = self.node(obj) else {
            return None;
        };
        range(start, len)
            .find(|&k| self.entries[k].live && same_text(self.text(self.entries[k].key), key))
    }

    fn rename_in(&mut self, obj: u32, from: &str, to: &'a str) {
        if from == to {
            return;
        }
        if let Some(slot) = self.entry_slot(obj, from) {
            // The renamed member replaces an existing one of the new name.
            self.kill(obj, to);
            self.entries[slot].key = Str::Ref(to);
            self.unshare(obj);
        }
    }

    fn kill(&mut self, obj: u32, key: &str) {
        if let Some(slot) = self.entry_slot(obj, key) {
            self.entries[slot].live = false;
            self.unshare(obj);
        }
    }

    /// Takes object `obj` out of its shape: a rule edited its members alone.
    fn unshare(&mut self, obj: u32) {
        if let Node::Obj { shape, .. } = &mut self.nodes[obj as usize] {
            *shape = NO_SHAPE;
        }
    }

    fn map_value(&mut self, v: u32, map: &'a [(String, Value)]) {
        let Node::Str(s) = self.node(v) else {
            return;
        };
        let text = self.text(s);
        if let Some((_, to)) = map.iter().find(|(from, _)| from == text) {
            let node = self.import(to);
            self.nodes[v as usize] = node;
        }
    }

    /// Appends a rule value to the arena and returns its node (strings stay borrowed).
    fn import(&mut self, v: &'a Value) -> Node<'a> {
        match v {
            Value::Null => Node::Null,
            Value::Bool(b) => Node::Bool(*b),
            Value::Number(n) => Node::Num(Num::from_json(n)),
            Value::String(s) => Node::Str(Str::Ref(s)),
            Value::Array(xs) => {
                let kids: Vec<u32> = xs
                    .iter()
                    .map(|x| {
                        let node = self.import(x);
                        self.push_node(node)
                    })
                    .collect();
                let start = self.items.len();
                self.items.extend(kids);
                Node::Arr {
                    start: clamp_u32(start),
                    len: clamp_u32(xs.len()),
                }
            }
            Value::Object(m) => {
                let kids: Vec<Entry<'a>> = m
                    .iter()
                    .map(|(k, x)| {
                        let node = self.import(x);
                        Entry {
                            key: Str::Ref(k),
                            val: self.push_node(node),
                            live: true,
                        }
                    })
                    .collect();
                let start = self.entries.len();
                self.entries.extend(kids);
                Node::Obj {
                    start: clamp_u32(start),
                    len: clamp_u32(m.len()),
                    shape: NO_SHAPE,
                    leaf: false,
                }
            }
        }
    }

    fn push_node(&mut self, node: Node<'a>) -> u32 {
        self.nodes.push(node);
        clamp_u32(self.nodes.len() - 1)
    }

    fn sort_by_key(&mut self, arr: u32, key: &KeySpec) {
        let Node::Arr { start, len } = self.node(arr) else {
            return;
        };
        let mut items = std::mem::take(&mut self.items);
        items[range(start, len)].sort_by(|&a, &b| {
            match (self.key_of(a, key), self.key_of(b, key)) {
                (Some(x), Some(y)) => self.order(x, y),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            }
        });
        self.items = items;
    }
}

/// Appends `text` as a JSON string with serde_json's escaping: `"` and backslash, the short
/// escapes for backspace, form feed, newline, return and tab, `\u00XX` for other control
/// characters, all else verbatim.
pub(crate) fn write_json_string(text: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    let bytes = text.as_bytes();
    // Most strings need no escape at all: find the first byte that might, 8 bytes a step.
    let plain = plain_run(bytes);
    if plain == bytes.len() {
        out.push_str(text);
        out.push('"');
        return;
    }
    let mut chunk = 0;
    for (i, &b) in bytes.iter().enumerate().skip(plain) {
        let esc: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        // Every escaped byte is ASCII, so `chunk..i` lies on char boundaries.
        out.push_str(&text[chunk..i]);
        if esc.is_empty() {
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        } else {
            out.push_str(esc);
        }
        chunk = i + 1;
    }
    out.push_str(&text[chunk..]);
    out.push('"');
}

/// Arena indices are `u32`; documents are capped far below that by `max_body_bytes`, and an
/// index that would not fit is refused while parsing.
fn clamp_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A fast in-process hasher (multiply-rotate, the FxHash scheme).
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

// ----------------------------------------------------------------------------------------
// Parsing
// ----------------------------------------------------------------------------------------

/// Nesting deeper than this is refused (serde_json's limit too), so recursion is bounded.
const MAX_DEPTH: u32 = 128;

/// What [`Parser::string_end`] returns for a string decoded into the side buffer (no input
/// is this long).
const ESCAPED: usize = usize::MAX;

/// A strict RFC 8259 parser writing straight into the arena.
///
/// Why our own parser rather than serde_json's through a visitor: serde_json validates UTF-8
/// string by string and goes through the visitor machinery per value; validating the whole
/// body once and scanning bytes is about twice as fast on small bodies, which is most of the
/// per-pair budget. Agreement with serde_json on what is valid JSON and on every value is
/// checked by property tests.
struct Parser<'a> {
    text: &'a str,
    pos: usize,
    depth: u32,
    doc: Doc<'a>,
    /// Members of the objects being parsed; an object's members move to `doc.entries` in one
    /// contiguous run when it closes.
    stack_e: Vec<Entry<'a>>,
    /// Same for array items.
    stack_i: Vec<u32>,
    /// Start and length in the side buffer of the last string that had escapes.
    escaped_at: (u32, u32),
    /// Entries (start, length) and shape of the last object found free of duplicate keys.
    last_unique: (u32, u32, u32),
    /// Shapes handed out so far.
    shapes: u32,
}

impl<'a> Parser<'a> {
    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes().get(self.pos).copied()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn eat(&mut self, b: u8) -> Option<()> {
        (self.peek() == Some(b)).then(|| self.pos += 1)
    }

    #[inline(always)]
    fn push(&mut self, node: Node<'a>) -> Option<u32> {
        let at = u32::try_from(self.doc.nodes.len()).ok()?;
        self.doc.nodes.push(node);
        Some(at)
    }

    fn value(&mut self) -> Option<u32> {
        match self.peek()? {
            b'{' => self.object(),
            b'[' => self.array(),
            b'"' => {
                let s = self.string()?;
                self.push(Node::Str(s))
            }
            b't' => self.literal("true", Node::Bool(true)),
            b'f' => self.literal("false", Node::Bool(false)),
            b'n' => self.literal("null", Node::Null),
            b'-' | b'0'..=b'9' => {
                let n = self.number()?;
                self.push(Node::Num(n))
            }
            _ => None,
        }
    }

    fn literal(&mut self, word: &str, node: Node<'a>) -> Option<u32> {
        if self.bytes()[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            self.push(node)
        } else {
            None
        }
    }

    fn enter(&mut self) -> Option<()> {
        self.depth += 1;
        (self.depth <= MAX_DEPTH).then_some(())
    }

    fn array(&mut self) -> Option<u32> {
        self.enter()?;
        self.pos += 1;
        let base = self.stack_i.len();
        self.ws();
        if self.eat(b']').is_none() {
            loop {
                self.ws();
                let v = self.value()?;
                self.stack_i.push(v);
                self.ws();
                match self.peek()? {
                    b',' => self.pos += 1,
                    b']' => {
                        self.pos += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        self.depth -= 1;
        let start = u32::try_from(self.doc.items.len()).ok()?;
        let len = u32::try_from(self.stack_i.len() - base).ok()?;
        self.doc.items.extend_from_slice(&self.stack_i[base..]);
        self.stack_i.truncate(base);
        self.push(Node::Arr { start, len })
    }

    fn object(&mut self) -> Option<u32> {
        self.enter()?;
        self.pos += 1;
        let base = self.stack_e.len();
        let first_node = self.doc.nodes.len();
        self.ws();
        if self.eat(b'}').is_none() {
            loop {
                self.ws();
                if self.peek()? != b'"' {
                    return None;
                }
                let key = self.string()?;
                self.ws();
                self.eat(b':')?;
                self.ws();
                let val = self.value()?;
                self.stack_e.push(Entry {
                    key,
                    val,
                    live: true,
                });
                self.ws();
                match self.peek()? {
                    b',' => self.pos += 1,
                    b'}' => {
                        self.pos += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        self.depth -= 1;
        let same = self.same_keys_as_last(base);
        let unique = same || self.dedup(base);
        let start = u32::try_from(self.doc.entries.len()).ok()?;
        let len = u32::try_from(self.stack_e.len() - base).ok()?;
        self.doc.entries.extend_from_slice(&self.stack_e[base..]);
        self.stack_e.truncate(base);
        let shape = if same {
            self.last_unique.2
        } else {
            let fresh = self.shapes;
            // Saturates at NO_SHAPE, which is never shared (no document gets near).
            self.shapes = self.shapes.saturating_add(1);
            fresh
        };
        if unique {
            self.last_unique = (start, len, shape);
        }
        // Every value pushes its own node; one that held something pushed more.
        let leaf = self.doc.nodes.len() - first_node == len as usize;
        self.push(Node::Obj {
            start,
            len,
            shape,
            leaf,
        })
    }

    /// Whether the members in `stack_e[base..]` have exactly the keys, in the same order, of
    /// the last object found free of duplicates: the elements of an array of objects
    /// usually do, and then they are free of duplicates too, at one key compare per member.
    fn same_keys_as_last(&self, base: usize) -> bool {
        let (start, len, _) = self.last_unique;
        let members = &self.stack_e[base..];
        len > 0
            && members.len() == len as usize
            && members
                .iter()
                .zip(&self.doc.entries[range(start, len)])
                .all(|(a, b)| same_text(self.doc.text(a.key), self.doc.text(b.key)))
    }

    /// Marks all but the last of duplicate keys among `stack_e[base..]` dead; `true` when
    /// there were none.
    fn dedup(&mut self, base: usize) -> bool {
        let members = &self.stack_e[base..];
        let n = members.len();
        if n < 2 {
            return true;
        }
        let doc = &self.doc;
        let mut dead: Vec<usize> = Vec::new();
        if n <= DEDUP_TABLE / 4 {
            // An open-addressing set of the keys seen so far (slot + 1 per bucket, 0 = empty),
            // probed by fingerprint: linear in the members, text compared only on a
            // fingerprint match.
            let mut table = [0u8; DEDUP_TABLE];
            let mut fps = [0u64; DEDUP_TABLE / 4];
            for (b, e) in members.iter().enumerate() {
                let key = doc.text(e.key);
                let fp = fingerprint(key);
                fps[b] = fp;
                let mut at = bucket(fp);
                loop {
                    match table[at] {
                        0 => {
                            // b < DEDUP_TABLE / 4, so b + 1 fits a byte.
                            table[at] = u8::try_from(b + 1).unwrap_or(u8::MAX);
                            break;
                        }
                        seen => {
                            let a = usize::from(seen - 1);
                            if fps[a] == fp && same_text(doc.text(members[a].key), key) {
                                // The earlier one is shadowed; the later one takes its bucket.
                                dead.push(a);
                                table[at] = u8::try_from(b + 1).unwrap_or(u8::MAX);
                                break;
                            }
                            at = (at + 1) % DEDUP_TABLE;
                        }
                    }
                }
            }
        } else {
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by(|&a, &b| {
                doc.text(members[a].key)
                    .cmp(doc.text(members[b].key))
                    .then(a.cmp(&b))
            });
            for w in order.windows(2) {
                if doc.text(members[w[0]].key) == doc.text(members[w[1]].key) {
                    dead.push(w[0]);
                }
            }
        }
        let unique = dead.is_empty();
        for a in dead {
            self.stack_e[base + a].live = false;
        }
        unique
    }

    /// A string starting at the opening quote. Without escapes it is borrowed from the input;
    /// with escapes it is decoded into the side buffer.
    #[inline(always)]
    fn string(&mut self) -> Option<Str<'a>> {
        let start = self.pos + 1;
        let end = self.string_end()?;
        if end == ESCAPED {
            return Some(Str::Buf {
                start: self.escaped_at.0,
                len: self.escaped_at.1,
            });
        }
        // Both ends are ASCII quotes, so they are char boundaries.
        Some(Str::Ref(self.text.get(start..end).unwrap_or_default()))
    }

    /// Scans a string from its opening quote to after its closing one and returns where its
    /// text ends ([`ESCAPED`]: decoded into the side buffer at `escaped_at`). Two machine
    /// words come back in registers; a `Str` came back through memory and was read back
    /// before the write had landed (a store-forwarding stall that cost more than the scan).
    #[inline(always)]
    fn string_end(&mut self) -> Option<usize> {
        let bytes = self.bytes();
        let start = self.pos + 1;
        let mut i = start + plain_run(&bytes[start.min(bytes.len())..]);
        loop {
            match *bytes.get(i)? {
                b'"' => {
                    self.pos = i + 1;
                    return Some(i);
                }
                b'\\' => return self.escaped(start, i),
                c if c < 0x20 => return None,
                _ => i += 1,
            }
        }
    }

    /// The rest of a string from its first backslash at `i` (`start`: after the quote).
    #[cold]
    #[inline(never)]
    fn escaped(&mut self, start: usize, mut i: usize) -> Option<usize> {
        let bytes = self.bytes();
        let buf_start = u32::try_from(self.doc.buf.len()).ok()?;
        let mut chunk = start;
        loop {
            match *bytes.get(i)? {
                b'"' => {
                    self.doc.buf.push_str(&self.text[chunk..i]);
                    self.pos = i + 1;
                    let len = u32::try_from(self.doc.buf.len()).ok()? - buf_start;
                    self.escaped_at = (buf_start, len);
                    return Some(ESCAPED);
                }
                b'\\' => {
                    self.doc.buf.push_str(&self.text[chunk..i]);
                    let esc = *bytes.get(i + 1)?;
                    i += 2;
                    let ch = match esc {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = hex4(bytes.get(i..i + 4)?)?;
                            i += 4;
                            let code = if (0xD800..0xDC00).contains(&hi) {
                                // A high surrogate must be followed by an escaped low one.
                                if bytes.get(i..i + 2)? != b"\\u" {
                                    return None;
                                }
                                let lo = hex4(bytes.get(i + 2..i + 6)?)?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return None;
                                }
                                i += 6;
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else {
                                hi
                            };
                            char::from_u32(code)?
                        }
                        _ => return None,
                    };
                    self.doc.buf.push(ch);
                    chunk = i;
                }
                c if c < 0x20 => return None,
                _ => i += 1,
            }
        }
    }

    /// Reads digits into `mant` (flagging overflow); returns how many there were.
    #[inline(always)]
    fn digits_into(&mut self, mant: &mut u64, overflow: &mut bool) -> i32 {
        let mut n = 0;
        // Eight digits per step while they fit (nanosecond timestamps have 19), then one by
        // one; the per-digit loop also notes an overflow at the exact digit.
        while !*overflow
            && let Some(chunk) = self
                .bytes()
                .get(self.pos..)
                .and_then(<[u8]>::first_chunk::<8>)
        {
            let w = u64::from_le_bytes(*chunk);
            let Some(eight) = eight_digits(w) else {
                break;
            };
            let Some(m) = mant
                .checked_mul(100_000_000)
                .and_then(|m| m.checked_add(eight))
            else {
                break;
            };
            *mant = m;
            self.pos += 8;
            n += 8;
        }
        while let Some(d @ b'0'..=b'9') = self.peek() {
            match mant
                .checked_mul(10)
                .and_then(|x| x.checked_add(u64::from(d - b'0')))
            {
                Some(x) => *mant = x,
                None => *overflow = true,
            }
            self.pos += 1;
            n += 1;
        }
        n
    }

    fn number(&mut self) -> Option<Num> {
        let start = self.pos;
        let negative = self.eat(b'-').is_some();
        let mut mant: u64 = 0;
        let mut overflow = false;
        match self.peek()? {
            b'0' => self.pos += 1,
            b'1'..=b'9' => {
                self.digits_into(&mut mant, &mut overflow);
            }
            _ => return None,
        }
        let mut float = false;
        let mut frac_digits = 0;
        if self.eat(b'.').is_some() {
            float = true;
            frac_digits = self.digits_into(&mut mant, &mut overflow);
            if frac_digits == 0 {
                return None;
            }
        }
        let mut exp: i32 = 0;
        if let Some(b'e' | b'E') = self.peek() {
            float = true;
            self.pos += 1;
            let exp_negative = match self.peek() {
                Some(b'-') => {
                    self.pos += 1;
                    true
                }
                Some(b'+') => {
                    self.pos += 1;
                    false
                }
                _ => false,
            };
            let mut n = 0;
            while let Some(d @ b'0'..=b'9') = self.peek() {
                // Saturate: anything this large is out of range either way.
                exp = exp.saturating_mul(10).saturating_add(i32::from(d - b'0'));
                self.pos += 1;
                n += 1;
            }
            if n == 0 {
                return None;
            }
            if exp_negative {
                exp = -exp;
            }
        }
        if !float && !overflow {
            if !negative {
                return Some(Num::U(mant));
            }
            if mant == 0 {
                // serde_json reads `-0` as the float -0.0; so do we.
                return Some(Num::F(-0.0));
            }
            if let Some(i) = 0i64.checked_sub_unsigned(mant) {
                return Some(Num::I(i));
            }
        }
        // Clinger's fast path: an exactly representable mantissa times or divided by an exactly
        // representable power of ten is one correctly rounded IEEE operation.
        let e = exp.saturating_sub(frac_digits);
        if float && !overflow && mant < (1 << 53) && (-22..=22).contains(&e) {
            // mant < 2^53, so the conversion is exact.
            #[allow(clippy::cast_precision_loss)]
            let m = mant as f64;
            let p = POW10[e.unsigned_abs() as usize];
            let v = if e >= 0 { m * p } else { m / p };
            return Some(Num::F(if negative { -v } else { v }));
        }
        // Long mantissas, big exponents, and integers beyond 64 bits (as serde_json does
        // without `arbitrary_precision`). The slice is ASCII, so its bounds are char
        // boundaries.
        let f: f64 = self.text[start..self.pos].parse().ok()?;
        f.is_finite().then_some(Num::F(f))
    }
}

/// Buckets of the duplicate-key table: objects up to a quarter of this size use it.
const DEDUP_TABLE: usize = 256;

fn bucket(fp: u64) -> usize {
    // The top byte of a multiplicative hash; `>> 56` leaves a value below 256.
    usize::from((fp.wrapping_mul(MIX_K) >> 56) as u8)
}

/// A cheap summary of a key: its length with its first and last 8 bytes. Equal keys have
/// equal fingerprints, so unequal fingerprints settle most key comparisons with one integer
/// compare (no call into `memcmp`).
pub(crate) fn fingerprint(key: &str) -> u64 {
    let b = key.as_bytes();
    let len = b.len() as u64;
    match (b.first_chunk::<8>(), b.last_chunk::<8>()) {
        (Some(head), Some(tail)) => {
            u64::from_le_bytes(*head) ^ u64::from_le_bytes(*tail).rotate_left(29) ^ len << 58
        }
        _ => b.iter().fold(len, |acc, &c| acc << 8 | u64::from(c)),
    }
}

/// String equality without a call into `memcmp` for the short keys and values JSON is made
/// of: up to 32 bytes compare as two overlapping 16-, 8-, 4- or 2-byte blocks.
#[inline(always)]
pub(crate) fn same_text(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    if a.len() > 16 {
        return match (a.first_chunk::<16>(), b.first_chunk::<16>()) {
            // Two overlapping 16-byte blocks cover up to 32 bytes (ids, timestamps).
            (Some(ha), Some(hb)) if a.len() <= 32 => {
                ha == hb && a.last_chunk::<16>() == b.last_chunk::<16>()
            }
            _ => a == b,
        };
    }
    if let (Some(ha), Some(hb)) = (a.first_chunk::<8>(), b.first_chunk::<8>()) {
        return ha == hb && a.last_chunk::<8>() == b.last_chunk::<8>();
    }
    if let (Some(ha), Some(hb)) = (a.first_chunk::<4>(), b.first_chunk::<4>()) {
        return ha == hb && a.last_chunk::<4>() == b.last_chunk::<4>();
    }
    if let (Some(ha), Some(hb)) = (a.first_chunk::<2>(), b.first_chunk::<2>()) {
        return ha == hb && a.last_chunk::<2>() == b.last_chunk::<2>();
    }
    a.first() == b.first()
}

const LOW: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// How many leading bytes of `bytes` need no attention inside a JSON string (not `"`, not a
/// backslash, not a control character), looked at 8 bytes per step.
#[inline(always)]
fn plain_run(bytes: &[u8]) -> usize {
    let mut i = 0;
    while let Some(chunk) = bytes.get(i..).and_then(<[u8]>::first_chunk::<8>) {
        let w = u64::from_le_bytes(*chunk);
        // A byte of `x` is zero / below 0x20: the classic SWAR tests. Bits above the lowest
        // flagged byte may be false alarms, the lowest flagged byte is exact.
        let zero = |x: u64| x.wrapping_sub(LOW) & !x & HIGH;
        let flagged = zero(w ^ (LOW * u64::from(b'"')))
            | zero(w ^ (LOW * u64::from(b'\\')))
            | w.wrapping_sub(LOW * 0x20) & !w & HIGH;
        if flagged != 0 {
            return i + (flagged.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    i
}

/// The value of eight ASCII digits read as a little-endian word (first digit lowest), or
/// `None` when any byte is not a digit. SWAR: pairs, then quads, then the eight combine in
/// three multiplies.
fn eight_digits(w: u64) -> Option<u64> {
    let all_digits = w & 0xF0F0_F0F0_F0F0_F0F0 == 0x3030_3030_3030_3030
        && w.wrapping_add(0x0606_0606_0606_0606) & 0xF0F0_F0F0_F0F0_F0F0 == 0x3030_3030_3030_3030;
    if !all_digits {
        return None;
    }
    let v = w - 0x3030_3030_3030_3030;
    // Each byte pair (d0, d1) becomes 10*d0 + d1 in the low byte of the pair.
    let v = (v * 10 + (v >> 8)) & 0x00FF_00FF_00FF_00FF;
    // Each 4-byte group becomes 100*p0 + p1 in its low 16 bits.
    let v = (v * 100 + (v >> 16)) & 0x0000_FFFF_0000_FFFF;
    // The two groups: 10000*q0 + q1.
    Some((v * 10000 + (v >> 32)) & 0xFFFF_FFFF)
}

/// Powers of ten that are exact in an `f64`.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

fn hex4(b: &[u8]) -> Option<u32> {
    b.iter()
        .try_fold(0u32, |acc, &c| Some(acc * 16 + char::from(c).to_digit(16)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::{Rename, SortRule, Unwrap, ValueMap};
    use crate::pointer::PathPattern;
    use serde_json::json;

    fn parse(s: &str) -> Doc<'_> {
        Doc::parse(s.as_bytes()).unwrap()
    }

    #[test]
    fn round_trips_and_borrows() {
        let text = r#"{"a": [1, -2, 3.5, "x\"y", null, true, {"b": {}}], "c": "plain", "big": 18446744073709551615}"#;
        let d = parse(text);
        let want: Value = serde_json::from_str(text).unwrap();
        assert_eq!(d.to_value(d.root()), want);
        // Only the escaped string needed the side buffer.
        assert_eq!(d.buf, "x\"y");
        assert!(Doc::parse(b"{\"a\": 1} x").is_none());
        assert!(Doc::parse(b"not json").is_none());
        assert!(Doc::parse(b" [1] \n").is_some());
    }

    #[test]
    fn arenas_are_reused() {
        let mut arena = Arena::default();
        let d = Doc::parse_in(br#"{"a": [1, 2, "x\"y"]}"#, &mut arena).unwrap();
        let cap = d.nodes.capacity();
        let ptr = d.nodes.as_ptr() as usize;
        d.recycle(&mut arena);
        assert!(Doc::parse_in(b"{oops", &mut arena).is_none());
        let d = Doc::parse_in(br#"[true]"#, &mut arena).unwrap();
        assert_eq!(d.to_value(d.root()), json!([true]));
        assert_eq!((d.nodes.capacity(), d.nodes.as_ptr() as usize), (cap, ptr));
        assert!(d.buf.is_empty());
    }

    #[test]
    fn duplicate_keys_last_wins() {
        let d = parse(r#"{"type": "order_received", "n": 1, "type": "limit"}"#);
        assert_eq!(d.to_value(d.root()), json!({"type": "limit", "n": 1}));
        let many: String = (0..100)
            .map(|i| format!("\"k{}\": {i}", i % 60))
            .collect::<Vec<_>>()
            .join(",");
        let text = format!("{{{many}}}");
        let d = parse(&text);
        let want: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(d.to_value(d.root()), want);
        assert_eq!(d.index(d.root()).unwrap().len(), 60);
    }

    #[test]
    fn equality_hash_and_order() {
        let a = parse(r#"{"x": [1, 2.0], "y": {"k": "v"}}"#);
        let b = parse(r#"{"y": {"k": "v"}, "x": [1.0, 2]}"#);
        assert!(a.same(a.root(), &b, b.root()));
        assert_eq!(a.hash(a.root()), b.hash(b.root()));
        let c = parse(r#"{"y": {"k": "w"}, "x": [1.0, 2]}"#);
        assert!(!a.same(a.root(), &c, c.root()));
        assert_ne!(a.hash(a.root()), c.hash(c.root()));
        let n = parse("[-1, 18446744073709551615, 0.5, -0.0, 0]");
        let items = match n.node(n.root()) {
            Node::Arr { start, len } => n.items(start, len).to_vec(),
            _ => unreachable!(),
        };
        assert!(!n.same(items[0], &n, items[1]));
        assert_eq!(n.order(items[0], items[2]), Ordering::Less);
        assert!(n.same(items[3], &n, items[4]));
        assert_eq!(n.hash(items[3]), n.hash(items[4]));
        assert!(Num::U(5).same(Num::I(5)));
        assert!(!Num::U(5).same(Num::I(-5)));
    }

    #[test]
    fn normalization_matches_the_value_version() {
        let n = Normalization {
            unwrap: Some(Unwrap {
                pointer: Pointer::parse("/data").unwrap(),
                when: vec![(Pointer::parse("/status").unwrap(), json!("success"))],
            }),
            rename: vec![
                Rename {
                    from: FieldSelector::parse("last_price").unwrap(),
                    to: "price".into(),
                },
                Rename {
                    from: FieldSelector::parse("/*/order_qty").unwrap(),
                    to: "qty".into(),
                },
            ],
            map_values: vec![
                ValueMap {
                    at: FieldSelector::parse("side").unwrap(),
                    map: vec![("BUY".into(), json!("buy"))],
                },
                ValueMap {
                    at: FieldSelector::parse("/*/status").unwrap(),
                    map: vec![("x".into(), json!({"o": [1]}))],
                },
            ],
            drop: vec![
                FieldSelector::parse("/*/_id").unwrap(),
                FieldSelector::parse("junk").unwrap(),
            ],
            sort: vec![SortRule {
                at: PathPattern::parse("").unwrap(),
                key: KeySpec::parse("client_order_id").unwrap(),
            }],
        };
        let text = r#"{"status": "success", "data": [
            {"client_order_id": "b", "side": "BUY", "order_qty": 1, "qty": 0, "_id": 7, "last_price": 5, "junk": {}, "status": "x"},
            {"client_order_id": "a", "side": "SELL", "nested": {"last_price": 1}},
            {"side": "BUY"}
        ]}"#;
        let mut want: Value = serde_json::from_str(text).unwrap();
        n.apply(&mut want);
        let mut d = parse(text);
        d.normalize(&n);
        assert_eq!(d.to_value(d.root()), want);
        let mut err = parse(r#"{"status": "error", "data": 1}"#);
        err.normalize(&n);
        assert_eq!(
            err.to_value(err.root()),
            json!({"status": "error", "data": 1})
        );
    }

    #[test]
    fn parser_edge_cases_agree_with_serde_json() {
        let cases = [
            "0",
            "-0",
            "-0.0",
            "1e400",
            "-1e400",
            "1E+2",
            "1e-2",
            "01",
            "1.",
            ".5",
            "-",
            "+1",
            "1.5e",
            "--1",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "-9223372036854775809",
            "123456789012345678901234567890",
            "true",
            "tru",
            "nul",
            "[1,]",
            "[,1]",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "{1:2}",
            "\"\\u0041\\u00e9\"",
            "\"\\ud83d\\ude00\"",
            "\"\\ud83d\"",
            "\"\\ude00\"",
            "\"\\x\"",
            "\"a\tb\"",
            "\"\\u00\"",
            "[]",
            "{}",
            " [ ] ",
            "[1] [2]",
            "\u{feff}[]",
            "\"\u{0}\"",
            "\"é\"",
        ];
        for text in cases {
            let ours = Doc::parse(text.as_bytes()).map(|d| d.to_value(d.root()));
            let theirs = serde_json::from_str::<Value>(text).ok();
            assert_eq!(ours, theirs, "{text:?}");
        }
        assert!(Doc::parse(&[b'"', 0xff, b'"']).is_none());
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(Doc::parse(deep.as_bytes()).is_none());
        let ok = "[".repeat(100) + &"]".repeat(100);
        assert!(Doc::parse(ok.as_bytes()).is_some());
    }

    mod props {
        use super::*;
        use crate::testutil::arb_json;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn round_trips_what_serde_json_writes(v in arb_json()) {
                for text in [serde_json::to_string(&v).unwrap(), serde_json::to_string_pretty(&v).unwrap()] {
                    let d = Doc::parse(text.as_bytes());
                    prop_assert!(d.is_some(), "{}", text);
                    let d = d.unwrap();
                    prop_assert_eq!(d.to_value(d.root()), v.clone());
                }
            }

            #[test]
            fn numbers_are_correctly_rounded(text in "-?(0|[1-9][0-9]{0,19})(\\.[0-9]{1,20})?([eE][+-]?[0-9]{1,3})?") {
                let want: f64 = text.parse().unwrap();
                match Doc::parse(text.as_bytes()) {
                    // Out of range: refused, as serde_json does.
                    None => prop_assert!(!want.is_finite(), "{}", text),
                    Some(d) => {
                        let Node::Num(n) = d.node(d.root()) else { panic!("{text} is not a number") };
                        prop_assert_eq!(n.f64().to_bits(), want.to_bits(), "{}", text);
                    }
                }
            }

            #[test]
            fn scalars_are_written_as_value_to_string_writes(v in arb_json(), s in "\\PC{0,8}|[\u{0}-\u{7f}]{0,8}") {
                for v in [v, Value::String(s)] {
                    let text = v.to_string();
                    let d = Doc::parse(text.as_bytes()).unwrap();
                    let mut out = String::from("x");
                    let scalar = d.write_scalar_json(d.root(), &mut out);
                    prop_assert_eq!(scalar, !(v.is_array() || v.is_object()));
                    if scalar {
                        prop_assert_eq!(&out[1..], text.as_str());
                    } else {
                        prop_assert_eq!(out.as_str(), "x");
                    }
                }
            }

            /// Objects of one shape share their anywhere-normalization edits (replayed by
            /// slot); the result must be what `Normalization::apply` gives on a `Value`. Keys
            /// come from a small alphabet, with duplicates, so shapes repeat; a rule on `/1`
            /// edits one element alone; a map to an object builds nodes of no shape.
            #[test]
            fn shared_edits_agree_with_the_value_version(
                pool in proptest::collection::vec(proptest::collection::vec("[abcdz]", 0..6), 1..3),
                picks in proptest::collection::vec((0..3usize, proptest::collection::vec(0..5usize, 6)), 0..6),
            ) {
                const VALUES: [&str; 5] = ["1", "\"w\"", "\"x\"", "{\"a\": \"x\", \"z\": [{\"a\": 1}]}", "[]"];
                let elements: Vec<String> = picks
                    .iter()
                    .map(|(k, values)| {
                        let members: Vec<String> = pool[k % pool.len()]
                            .iter()
                            .zip(values)
                            .map(|(k, &v)| format!("\"{k}\": {}", VALUES[v]))
                            .collect();
                        format!("{{{}}}", members.join(", "))
                    })
                    .collect();
                let text = format!("[{}]", elements.join(", "));
                let rename = |from: &str, to: &str| Rename {
                    from: FieldSelector::parse(from).unwrap(),
                    to: to.into(),
                };
                // With and without a map to an object (then objects whose members held
                // nothing are not looked into).
                for w in [json!({"d": "x", "c": "x"}), json!("v")] {
                    let n = Normalization {
                        rename: vec![rename("a", "b"), rename("z", "a"), rename("/1/c", "z")],
                        map_values: vec![ValueMap {
                            at: FieldSelector::parse("c").unwrap(),
                            map: vec![("x".into(), json!("y")), ("w".into(), w)],
                        }],
                        drop: vec![FieldSelector::parse("d").unwrap()],
                        ..Normalization::default()
                    };
                    let mut want: Value = serde_json::from_str(&text).unwrap();
                    n.apply(&mut want);
                    let mut d = Doc::parse(text.as_bytes()).unwrap();
                    d.normalize(&n);
                    prop_assert_eq!(d.to_value(d.root()), want, "{}", text);
                }
            }

            #[test]
            fn duplicate_keys_agree_with_serde_json(
                members in proptest::collection::vec(("[ab]{0,2}|k[0-9]{1,2}|[a-z_]{8,12}", any::<u8>()), 0..90),
            ) {
                let body: Vec<String> = members
                    .iter()
                    .map(|(k, v)| format!("{}: {v}", Value::from(k.as_str())))
                    .collect();
                let text = format!("{{{}}}", body.join(", "));
                // In arrays too, where objects may share the previous one's key order.
                let mut seen = std::collections::HashSet::new();
                let unique: Vec<&String> = body.iter().filter(|m| seen.insert(m.split(':').next())).collect();
                let first = format!("{{{}}}", unique.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", "));
                for text in [text.clone(), format!("[{first}, {text}, {first}, {text}, {{}}, {text}]")] {
                    let d = parse(&text);
                    let want: Value = serde_json::from_str(&text).unwrap();
                    prop_assert_eq!(d.to_value(d.root()), want);
                }
            }

            #[test]
            fn same_text_is_string_equality(a in "[ab]{0,40}", b in "[ab]{0,40}", c in "\\PC{0,40}") {
                for (x, y) in [(&a, &b), (&a, &a), (&c, &a), (&c, &c)] {
                    prop_assert_eq!(same_text(x, y), x == y);
                }
            }

            #[test]
            fn eight_digits_agrees_with_parsing(bytes in proptest::array::uniform8(prop_oneof![b'0'..=b'9', any::<u8>()])) {
                let want = std::str::from_utf8(&bytes)
                    .ok()
                    .filter(|t| t.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|t| t.parse::<u64>().ok());
                prop_assert_eq!(eight_digits(u64::from_le_bytes(bytes)), want);
            }

            #[test]
            fn eight_digits_reads_every_digit_string(text in "[0-9]{8}") {
                let bytes: [u8; 8] = text.as_bytes().try_into().unwrap();
                prop_assert_eq!(eight_digits(u64::from_le_bytes(bytes)), Some(text.parse::<u64>().unwrap()));
            }

            #[test]
            fn plain_run_stops_at_the_first_special_byte(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
                let want = bytes
                    .iter()
                    .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
                    .unwrap_or(bytes.len());
                let got = plain_run(&bytes);
                // Whole 8-byte steps may stop short of the end; never past a special byte.
                prop_assert!(got == want || (got == bytes.len() / 8 * 8 && got < want), "{} {}", got, want);
            }

            #[test]
            fn accepts_exactly_what_serde_json_accepts(text in "[\\[\\]{}\",:0-9eE.+\\-tfnrulsa\\\\/ u]{0,16}") {
                let ours = Doc::parse(text.as_bytes()).map(|d| d.to_value(d.root()));
                let theirs = serde_json::from_str::<Value>(&text).ok();
                prop_assert_eq!(ours, theirs, "{:?}", text);
            }
        }
    }
}
