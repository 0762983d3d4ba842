//! JSON Pointer paths (RFC 6901) and compiled path patterns with `*` / `**` wildcard segments.
//!
//! A pattern is written like a JSON Pointer (`""` is the whole document, `/items/0/price`), where
//! a whole segment `*` matches exactly one segment (an object key or an array index) and a whole
//! segment `**` matches zero or more segments. `*` inside a segment (`/a*b`) is rejected so a
//! typo never silently matches nothing. Escapes follow RFC 6901 (`~0` = `~`, `~1` = `/`).

use serde_json::Value;

/// One step of a path through a JSON document during a walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seg<'v> {
    /// An object key (unescaped).
    Key(&'v str),
    /// An array index.
    Index(usize),
}

/// Appends `segment` to `out` with RFC 6901 escaping (`~` → `~0`, `/` → `~1`).
#[inline]
pub fn escape_into(out: &mut String, segment: &str) {
    // A byte scan: both characters are ASCII (a `char` pattern search is much slower).
    if !segment.bytes().any(|b| b == b'~' || b == b'/') {
        out.push_str(segment);
        return;
    }
    for ch in segment.chars() {
        match ch {
            '~' => out.push_str("~0"),
            '/' => out.push_str("~1"),
            other => out.push(other),
        }
    }
}

/// Writes the JSON Pointer of `path` into `out` (cleared first). With `generalize`, array
/// indices become `*`, which is how alike differences at different positions group together.
pub(crate) fn write_pointer(out: &mut String, path: &[Seg<'_>], generalize: bool) {
    out.clear();
    for seg in path {
        out.push('/');
        match *seg {
            Seg::Key(k) => escape_into(out, k),
            Seg::Index(_) if generalize => out.push('*'),
            Seg::Index(i) => push_usize(out, i),
        }
    }
}

/// Appends a decimal number without going through `format!` (hot path).
pub(crate) fn push_usize(out: &mut String, mut n: usize) {
    if n < 10 {
        // n < 10, so the cast cannot truncate.
        out.push(char::from(b'0' + n as u8));
        return;
    }
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    loop {
        at -= 1;
        // n % 10 < 10, so the cast cannot truncate.
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Only ASCII digits were written, so this is valid UTF-8 and the fallback never runs.
    out.push_str(std::str::from_utf8(&buf[at..]).unwrap_or_default());
}

/// Splits a JSON Pointer into unescaped segments. `""` gives no segments.
fn split_pointer(pointer: &str) -> Result<Vec<String>, String> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err("a path must be empty (the whole body) or start with '/'".to_owned());
    };
    rest.split('/').map(unescape).collect()
}

fn unescape(segment: &str) -> Result<String, String> {
    if !segment.contains('~') {
        return Ok(segment.to_owned());
    }
    let mut out = String::with_capacity(segment.len());
    let mut chars = segment.chars();
    while let Some(ch) = chars.next() {
        if ch == '~' {
            match chars.next() {
                Some('0') => out.push('~'),
                Some('1') => out.push('/'),
                _ => {
                    return Err(format!(
                        "bad escape in segment {segment:?}: use ~0 for '~' and ~1 for '/'"
                    ));
                }
            }
        } else {
            out.push(ch);
        }
    }
    Ok(out)
}

/// A validated JSON Pointer without wildcards (used to unwrap envelopes and set fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer {
    source: String,
    segments: Vec<String>,
}

impl Pointer {
    /// Parses a JSON Pointer (`""` or `/a/b`).
    ///
    /// # Errors
    /// A reason (for [`crate::RuleError`]) when the text is not a JSON Pointer.
    pub fn parse(text: &str) -> Result<Self, String> {
        Ok(Self {
            source: text.to_owned(),
            segments: split_pointer(text)?,
        })
    }

    /// The pointer as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The unescaped segments.
    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    /// The value at this pointer, if present.
    pub fn get<'v>(&self, value: &'v Value) -> Option<&'v Value> {
        let mut at = value;
        for seg in &self.segments {
            at = child(at, seg)?;
        }
        Some(at)
    }

    /// The value at this pointer, mutably.
    pub fn get_mut<'v>(&self, value: &'v mut Value) -> Option<&'v mut Value> {
        let mut at = value;
        for seg in &self.segments {
            at = child_mut(at, seg)?;
        }
        Some(at)
    }
}

fn child<'v>(value: &'v Value, seg: &str) -> Option<&'v Value> {
    match value {
        Value::Object(map) => map.get(seg),
        Value::Array(items) => items.get(parse_index(seg)?),
        _ => None,
    }
}

fn child_mut<'v>(value: &'v mut Value, seg: &str) -> Option<&'v mut Value> {
    match value {
        Value::Object(map) => map.get_mut(seg),
        Value::Array(items) => items.get_mut(parse_index(seg)?),
        _ => None,
    }
}

/// RFC 6901 array index: decimal without leading zeros.
fn parse_index(seg: &str) -> Option<usize> {
    if seg.is_empty() || (seg.len() > 1 && seg.starts_with('0')) {
        return None;
    }
    if !seg.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    seg.parse().ok()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PatSeg {
    /// A literal key; `index` is set when the key is also a valid array index.
    Lit { text: String, index: Option<usize> },
    /// `*`: exactly one segment.
    Any,
    /// `**`: zero or more segments.
    Deep,
}

impl PatSeg {
    fn matches(&self, seg: &Seg<'_>) -> bool {
        match (self, seg) {
            (PatSeg::Any, _) => true,
            (PatSeg::Lit { text, .. }, Seg::Key(k)) => text == k,
            (PatSeg::Lit { index, .. }, Seg::Index(i)) => *index == Some(*i),
            (PatSeg::Deep, _) => false,
        }
    }
}

/// Most `**` segments one pattern may hold; matching backtracks over them, so this bounds the
/// work one pattern can cause.
const MAX_DEEP: usize = 3;

/// A compiled path pattern: a JSON Pointer whose whole segments may be `*` or `**`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    source: String,
    segs: Vec<PatSeg>,
    deep: bool,
}

impl PathPattern {
    /// Compiles a pattern such as `/items/*/ts_ns` or `/**/created_ns`.
    ///
    /// # Errors
    /// A reason (for [`crate::RuleError`]) when the pattern is malformed.
    pub fn parse(text: &str) -> Result<Self, String> {
        let raw = split_pointer(text)?;
        let mut segs = Vec::with_capacity(raw.len());
        let mut deep_count = 0;
        for seg in raw {
            let compiled = match seg.as_str() {
                "*" => PatSeg::Any,
                "**" => {
                    deep_count += 1;
                    PatSeg::Deep
                }
                s if s.contains('*') => {
                    return Err(format!(
                        "segment {s:?}: '*' and '**' must be a whole segment"
                    ));
                }
                _ => {
                    let index = parse_index(&seg);
                    PatSeg::Lit { text: seg, index }
                }
            };
            segs.push(compiled);
        }
        if deep_count > MAX_DEEP {
            return Err(format!("at most {MAX_DEEP} '**' segments are allowed"));
        }
        Ok(Self {
            source: text.to_owned(),
            deep: deep_count > 0,
            segs,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub(crate) fn segs(&self) -> &[PatSeg] {
        &self.segs
    }

    /// Splits `/a/*/b` into the parent pattern `/a/*` and the literal last key `b`; `None` when
    /// the last segment is a wildcard or the pattern is the root.
    pub(crate) fn split_last_key(&self) -> Option<(PathPattern, String)> {
        let (last, parent) = self.segs.split_last()?;
        let PatSeg::Lit { text, .. } = last else {
            return None;
        };
        let cut = self.source.rfind('/').unwrap_or(0);
        let parent = PathPattern {
            source: self.source[..cut].to_owned(),
            deep: parent.contains(&PatSeg::Deep),
            segs: parent.to_vec(),
        };
        Some((parent, text.clone()))
    }

    /// Whether a literal segment can match an array index (`/items/0`): then what the pattern
    /// matches depends on the indices on a path, not only on its keys and shape.
    pub(crate) fn names_an_index(&self) -> bool {
        self.segs
            .iter()
            .any(|s| matches!(s, PatSeg::Lit { index: Some(_), .. }))
    }

    /// Whether the pattern matches exactly this path.
    pub(crate) fn matches(&self, path: &[Seg<'_>]) -> bool {
        match_from(&self.segs, path)
    }

    /// Whether the pattern matches this path or one of its ancestors (a rule on `/meta` covers
    /// `/meta/x`).
    pub(crate) fn matches_prefix(&self, path: &[Seg<'_>]) -> bool {
        if self.deep {
            (0..=path.len()).any(|k| match_from(&self.segs, &path[..k]))
        } else {
            path.len() >= self.segs.len() && match_from(&self.segs, &path[..self.segs.len()])
        }
    }

    /// Whether the pattern matches a concrete JSON Pointer (for callers outside a walk).
    pub fn matches_pointer(&self, pointer: &str) -> bool {
        let Ok(raw) = split_pointer(pointer) else {
            return false;
        };
        let segs: Vec<Seg<'_>> = raw.iter().map(|s| Seg::Key(s.as_str())).collect();
        // A pointer does not say whether "3" is a key or an index; literal patterns compare
        // text, and `*` matches either, so treating every segment as a key is exact here.
        match_from(&self.segs, &segs)
    }
}

fn match_from(pat: &[PatSeg], path: &[Seg<'_>]) -> bool {
    match pat.split_first() {
        None => path.is_empty(),
        Some((PatSeg::Deep, rest)) => (0..=path.len()).any(|k| match_from(rest, &path[k..])),
        Some((seg, rest)) => match path.split_first() {
            Some((first, tail)) => seg.matches(first) && match_from(rest, tail),
            None => false,
        },
    }
}

/// Calls `f` on every value inside `root` that `pattern` selects (navigating directly rather
/// than testing every node).
pub(crate) fn for_each_match_mut(
    root: &mut Value,
    pattern: &[PatSeg],
    f: &mut dyn FnMut(&mut Value),
) {
    let Some((first, rest)) = pattern.split_first() else {
        f(root);
        return;
    };
    match first {
        PatSeg::Lit { text, index } => match root {
            Value::Object(map) => {
                if let Some(v) = map.get_mut(text.as_str()) {
                    for_each_match_mut(v, rest, f);
                }
            }
            Value::Array(items) => {
                if let Some(v) = index.and_then(|i| items.get_mut(i)) {
                    for_each_match_mut(v, rest, f);
                }
            }
            _ => {}
        },
        PatSeg::Any => for_each_child_mut(root, &mut |v| for_each_match_mut(v, rest, f)),
        PatSeg::Deep => {
            for_each_match_mut(root, rest, f);
            for_each_child_mut(root, &mut |v| for_each_match_mut(v, pattern, f));
        }
    }
}

fn for_each_child_mut(value: &mut Value, f: &mut dyn FnMut(&mut Value)) {
    match value {
        Value::Object(map) => map.values_mut().for_each(f),
        Value::Array(items) => items.iter_mut().for_each(f),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(s: &str) -> PathPattern {
        PathPattern::parse(s).unwrap()
    }

    #[test]
    fn escapes_and_numbers() {
        let mut s = String::new();
        escape_into(&mut s, "a/b~c");
        assert_eq!(s, "a~1b~0c");
        let mut s = String::new();
        push_usize(&mut s, 0);
        push_usize(&mut s, 1234567);
        assert_eq!(s, "01234567");
        let mut out = String::new();
        write_pointer(
            &mut out,
            &[Seg::Key("items"), Seg::Index(3), Seg::Key("a/b")],
            false,
        );
        assert_eq!(out, "/items/3/a~1b");
        write_pointer(
            &mut out,
            &[Seg::Key("items"), Seg::Index(3), Seg::Key("x")],
            true,
        );
        assert_eq!(out, "/items/*/x");
    }

    #[test]
    fn pattern_matching() {
        let path = [Seg::Key("items"), Seg::Index(2), Seg::Key("ts_ns")];
        assert!(p("/items/*/ts_ns").matches(&path));
        assert!(p("/items/2/ts_ns").matches(&path));
        assert!(!p("/items/3/ts_ns").matches(&path));
        assert!(p("/**/ts_ns").matches(&path));
        assert!(p("/**").matches(&path));
        assert!(!p("/*/ts_ns").matches(&path));
        assert!(p("/items").matches_prefix(&path));
        assert!(p("/**/items").matches_prefix(&path));
        assert!(!p("/items/*/price").matches_prefix(&path));
        assert!(p("").matches_prefix(&path));
        assert!(p("").matches(&[]));
        assert!(p("/items/*/ts_ns").matches_pointer("/items/7/ts_ns"));
    }

    #[test]
    fn bad_patterns() {
        assert!(PathPattern::parse("items").is_err());
        assert!(PathPattern::parse("/data/**x").is_err());
        assert!(PathPattern::parse("/a~2").is_err());
        assert!(PathPattern::parse("/**/**/**/**").is_err());
        assert!(PathPattern::parse("/a~1b/~0").is_ok());
    }

    #[test]
    fn pointer_get_and_navigation() {
        let mut v = json!({"data": {"items": [{"a": 1}, {"a": 2}]}});
        let ptr = Pointer::parse("/data/items/1/a").unwrap();
        assert_eq!(ptr.get(&v), Some(&json!(2)));
        let mut seen = 0;
        for_each_match_mut(&mut v, p("/**/a").segs(), &mut |x| {
            seen += 1;
            *x = json!(0);
        });
        assert_eq!(seen, 2);
        assert_eq!(v, json!({"data": {"items": [{"a": 0}, {"a": 0}]}}));
        assert!(
            Pointer::parse("/x/01")
                .unwrap()
                .get(&json!({"x": [1, 2]}))
                .is_none()
        );
    }
}
