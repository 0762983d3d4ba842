//! Line diff of non-JSON bodies with `similar`, capped in input size, hunks and output size.

use std::fmt::Write as _;

use similar::{ChangeTag, TextDiff};

use crate::rules::Limits;

/// One text difference: the removed lines, the added lines and a unified-diff snippet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TextOutcome {
    pub(crate) removed: String,
    pub(crate) added: String,
    pub(crate) unified: String,
}

/// The longest prefix of `s` of at most `max` bytes that ends on a char boundary.
pub(crate) fn cap(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn push_capped(out: &mut String, text: &str, max: usize) {
    if out.len() >= max {
        return;
    }
    let room = max - out.len();
    if text.len() <= room {
        out.push_str(text);
    } else {
        out.push_str(cap(text, room));
        out.push('…');
    }
}

/// Diffs the first `limits.max_text_bytes` of each side by lines. `None` when those prefixes
/// are equal (the caller reports a size difference if the full texts are not).
pub(crate) fn diff_text(primary: &str, candidate: &str, limits: &Limits) -> Option<TextOutcome> {
    let p = cap(primary, limits.max_text_bytes);
    let c = cap(candidate, limits.max_text_bytes);
    if p == c {
        return None;
    }
    let diff = TextDiff::from_lines(p, c);
    let max = limits.max_excerpt_bytes;
    let mut out = TextOutcome {
        removed: String::new(),
        added: String::new(),
        unified: String::new(),
    };
    let unified = diff.unified_diff();
    for (n, hunk) in unified.iter_hunks().enumerate() {
        if n >= limits.max_text_hunks {
            out.unified.push_str("@@ more hunks not shown @@\n");
            break;
        }
        let mut piece = String::new();
        // Writing to a String cannot fail.
        let _ = write!(piece, "{hunk}");
        push_capped(&mut out.unified, &piece, max);
        for change in hunk.iter_changes() {
            match change.tag() {
                ChangeTag::Delete => push_capped(&mut out.removed, &change.to_string_lossy(), max),
                ChangeTag::Insert => push_capped(&mut out.added, &change.to_string_lossy(), max),
                ChangeTag::Equal => {}
            }
        }
        if out.unified.len() >= max {
            break;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_diff_and_caps() {
        let limits = Limits::default();
        let out = diff_text("a\nb\nc\n", "a\nB\nc\n", &limits).unwrap();
        assert_eq!(out.removed, "b\n");
        assert_eq!(out.added, "B\n");
        assert!(out.unified.contains("-b\n+B\n"), "{}", out.unified);
        assert!(diff_text("same", "same", &limits).is_none());

        let tiny = Limits {
            max_text_bytes: 4,
            ..Limits::default()
        };
        assert!(diff_text("abcdXXX", "abcdYYY", &tiny).is_none());

        let few = Limits {
            max_text_hunks: 1,
            ..Limits::default()
        };
        let p: String = (0..200).map(|i| format!("line {i}\n")).collect();
        let c = p.replace("line 10\n", "x\n").replace("line 150\n", "y\n");
        let out = diff_text(&p, &c, &few).unwrap();
        assert!(out.unified.contains("more hunks"), "{}", out.unified);
        assert!(!out.unified.contains("+y"), "{}", out.unified);
        let short = Limits {
            max_excerpt_bytes: 64,
            ..Limits::default()
        };
        let out = diff_text(&p, &c, &short).unwrap();
        // Cut at the cap, marked with an ellipsis ('…' is 3 bytes).
        assert!(
            out.unified.len() <= 64 + 3 && out.unified.ends_with('…'),
            "{}",
            out.unified
        );
        assert_eq!(cap("héllo", 2), "h");
    }
}
