//! Route templates (`/api/orders/{id}`): compiled matchers that map a concrete path to its
//! template and captures, so ids do not split result groups.
//!
//! A segment is either literal or a whole capture `{name}`; a last segment `{*name}` captures
//! the rest of the path. The query string is never part of a match. A path that matches no
//! template is grouped under a generalized form of itself where segments that look like ids
//! (digits, UUIDs, long hex, `veloz_1_2`, `web-17…`) become `{id}`.

/// One segment of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TSeg {
    Lit(String),
    Capture(String),
    Rest(String),
}

/// A compiled route template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTemplate {
    source: String,
    segs: Vec<TSeg>,
}

/// Strips the query and fragment, and a trailing `/` (except for the root).
pub fn path_only(path: &str) -> &str {
    // A byte scan (both are ASCII, so the cut is a char boundary): a `char` pattern search
    // decodes the path char by char, and this runs for every route tried per request.
    let end = path
        .bytes()
        .position(|b| b == b'?' || b == b'#')
        .unwrap_or(path.len());
    let p = path.get(..end).unwrap_or(path);
    if p.len() > 1 {
        p.strip_suffix('/').unwrap_or(p)
    } else {
        p
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl RouteTemplate {
    /// Compiles a template such as `/api/orders/{id}`.
    ///
    /// # Errors
    /// A reason (for [`crate::RuleError`]) when the template is malformed.
    pub fn parse(text: &str) -> Result<Self, String> {
        if !text.starts_with('/') {
            return Err("a route template must start with '/'".to_owned());
        }
        if text.contains(['?', '#']) {
            return Err("a route template matches the path only; remove the query".to_owned());
        }
        let body = path_only(text);
        let mut segs = Vec::new();
        let parts: Vec<&str> = body[1..].split('/').collect();
        let last = parts.len() - 1;
        for (i, part) in parts.iter().enumerate() {
            let seg = if let Some(inner) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}'))
            {
                if let Some(rest) = inner.strip_prefix('*') {
                    if i != last {
                        return Err(format!("{{*{rest}}} may only be the last segment"));
                    }
                    if !valid_name(rest) {
                        return Err(format!(
                            "bad capture name {rest:?}: use letters, digits and '_'"
                        ));
                    }
                    TSeg::Rest(rest.to_owned())
                } else {
                    if !valid_name(inner) {
                        return Err(format!(
                            "bad capture name {inner:?}: use letters, digits and '_'"
                        ));
                    }
                    TSeg::Capture(inner.to_owned())
                }
            } else if part.contains(['{', '}']) {
                return Err(format!(
                    "segment {part:?}: a capture must be a whole segment like {{id}}"
                ));
            } else {
                TSeg::Lit((*part).to_owned())
            };
            segs.push(seg);
        }
        let mut names: Vec<&str> = segs
            .iter()
            .filter_map(|s| match s {
                TSeg::Capture(n) | TSeg::Rest(n) => Some(n.as_str()),
                TSeg::Lit(_) => None,
            })
            .collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!("capture {{{}}} appears twice", w[0]));
        }
        Ok(Self {
            source: body.to_owned(),
            segs,
        })
    }

    /// The template as written (without a trailing `/`).
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Names of the captures, in order.
    pub fn capture_names(&self) -> impl Iterator<Item = &str> {
        self.segs.iter().filter_map(|s| match s {
            TSeg::Capture(n) | TSeg::Rest(n) => Some(n.as_str()),
            TSeg::Lit(_) => None,
        })
    }

    /// More literal segments = more specific; a catch-all is least specific.
    pub(crate) fn specificity(&self) -> (usize, usize, bool) {
        let lits = self
            .segs
            .iter()
            .filter(|s| matches!(s, TSeg::Lit(_)))
            .count();
        let rest = self.segs.iter().any(|s| matches!(s, TSeg::Rest(_)));
        (lits, self.segs.len(), !rest)
    }

    /// Whether a concrete path (query ignored) matches.
    pub fn matches(&self, path: &str) -> bool {
        self.visit(path, |_, _| {})
    }

    /// The captures of a matching path, or `None` when it does not match.
    pub fn captures<'p>(&self, path: &'p str) -> Option<Vec<(&str, &'p str)>> {
        let mut out = Vec::new();
        self.visit(path, |name, value| out.push((name, value)))
            .then_some(out)
    }

    fn visit<'s, 'p>(&'s self, path: &'p str, mut f: impl FnMut(&'s str, &'p str)) -> bool {
        let path = path_only(path);
        let Some(body) = path.strip_prefix('/') else {
            return false;
        };
        let mut parts = body.split('/');
        let mut offset = 0;
        for seg in &self.segs {
            let part = match seg {
                TSeg::Rest(name) => {
                    f(name, &body[offset.min(body.len())..]);
                    return true;
                }
                _ => match parts.next() {
                    Some(part) => part,
                    None => return false,
                },
            };
            offset += part.len() + 1;
            match seg {
                TSeg::Lit(l) if l != part => return false,
                TSeg::Capture(_) if part.is_empty() => return false,
                TSeg::Capture(name) => f(name, part),
                _ => {}
            }
        }
        parts.next().is_none()
    }
}

/// A path template for the candidate request, with `{name}` placeholders anywhere (the query
/// included) that refer to captures of the route template, and `{?name}` placeholders that
/// take the value of the client's query parameter `name` as written (so a Python
/// `DELETE /api/auth/keys?key_id=X` can become the C++ `DELETE /api/auth/keys/X`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    source: String,
    parts: Vec<PathPart>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PathPart {
    Text(String),
    Capture(String),
    Query(String),
}

impl PathTemplate {
    /// Compiles `/api/auth/keys/{id}` or `/api/auth/keys?key_id={id}`.
    ///
    /// # Errors
    /// A reason when braces are unbalanced or a name is malformed.
    pub fn parse(text: &str) -> Result<Self, String> {
        if !text.starts_with('/') {
            return Err("a candidate path must start with '/'".to_owned());
        }
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find(['{', '}']) {
            if rest.as_bytes()[open] == b'}' {
                return Err("unbalanced '}'".to_owned());
            }
            let Some(close) = rest[open..].find('}') else {
                return Err("unbalanced '{'".to_owned());
            };
            let name = &rest[open + 1..open + close];
            let (query, bare) = match name.strip_prefix('?') {
                Some(q) => (true, q),
                None => (false, name),
            };
            if !valid_name(bare) {
                return Err(format!(
                    "bad capture name {name:?}: use letters, digits and '_' ({{?name}} for a query parameter)"
                ));
            }
            if open > 0 {
                parts.push(PathPart::Text(rest[..open].to_owned()));
            }
            parts.push(if query {
                PathPart::Query(bare.to_owned())
            } else {
                PathPart::Capture(bare.to_owned())
            });
            rest = &rest[open + close + 1..];
        }
        if !rest.is_empty() {
            parts.push(PathPart::Text(rest.to_owned()));
        }
        Ok(Self {
            source: text.to_owned(),
            parts,
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Names of the route-template captures the template uses (not its `{?query}` ones).
    pub fn capture_names(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            PathPart::Capture(n) => Some(n.as_str()),
            PathPart::Text(_) | PathPart::Query(_) => None,
        })
    }

    /// Fills in captures; `Err` names the first capture that is missing.
    ///
    /// # Errors
    /// The name of a capture (or `?name` of a query parameter) that has no value.
    pub fn render(&self, captures: &[(&str, &str)]) -> Result<String, String> {
        self.render_with_query(captures, None)
    }

    /// Fills in captures and `{?name}` query parameters from `query` (the request's query
    /// string without `?`; the first `name=` wins; the value is copied as written).
    ///
    /// # Errors
    /// The name of a capture (or `?name` of a query parameter) that has no value.
    pub fn render_with_query(
        &self,
        captures: &[(&str, &str)],
        query: Option<&str>,
    ) -> Result<String, String> {
        let mut out = String::with_capacity(self.source.len() + 16);
        for part in &self.parts {
            match part {
                PathPart::Text(t) => out.push_str(t),
                PathPart::Capture(name) => {
                    let value = captures
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, v)| *v)
                        .ok_or_else(|| name.clone())?;
                    out.push_str(value);
                }
                PathPart::Query(name) => {
                    let value = query
                        .into_iter()
                        .flat_map(|q| q.split('&'))
                        .find_map(|pair| {
                            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                            (k == name && !v.is_empty()).then_some(v)
                        })
                        .ok_or_else(|| format!("?{name}"))?;
                    out.push_str(value);
                }
            }
        }
        Ok(out)
    }
}

/// Whether a path segment looks like an id rather than a name (for unmatched paths).
fn looks_like_id(seg: &str) -> bool {
    let b = seg.as_bytes();
    if b.is_empty() {
        return false;
    }
    let digits = b.iter().filter(|c| c.is_ascii_digit()).count();
    if digits == b.len() {
        return true;
    }
    let hexish = b.iter().all(|c| c.is_ascii_hexdigit() || *c == b'-');
    if hexish && b.len() >= 8 && digits > 0 {
        return true;
    }
    // `veloz_123_4`, `web-1767225600000`, `sim-3`, `vk_0123abcd…`: a word, a separator, and a
    // tail that is mostly digits.
    match seg.find(['-', '_']) {
        Some(at) if at > 0 => {
            let tail = &b[at + 1..];
            !tail.is_empty()
                && tail
                    .iter()
                    .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
                && tail.iter().filter(|c| c.is_ascii_digit()).count() * 2 >= tail.len()
        }
        _ => false,
    }
}

/// Writes the generalized form of an unmatched path into `out` (cleared first).
pub fn generalize_path(path: &str, out: &mut String) {
    out.clear();
    let path = path_only(path);
    if path.is_empty() || path == "/" {
        out.push('/');
        return;
    }
    for seg in path.trim_start_matches('/').split('/') {
        out.push('/');
        if looks_like_id(seg) {
            out.push_str("{id}");
        } else {
            out.push_str(seg);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_and_capture() {
        let t = RouteTemplate::parse("/api/orders/{id}").unwrap();
        assert!(t.matches("/api/orders/web-17"));
        assert!(t.matches("/api/orders/web-17/"));
        assert!(t.matches("/api/orders/x?y=1"));
        assert!(!t.matches("/api/orders"));
        assert!(!t.matches("/api/orders/"));
        assert!(!t.matches("/api/orders/1/fills"));
        assert!(!t.matches("api/orders/1"));
        assert_eq!(t.captures("/api/orders/abc").unwrap(), vec![("id", "abc")]);
        let root = RouteTemplate::parse("/").unwrap();
        assert!(root.matches("/"));
        assert!(!root.matches("/x"));
        let rest = RouteTemplate::parse("/static/{*file}").unwrap();
        assert_eq!(
            rest.captures("/static/a/b.css").unwrap(),
            vec![("file", "a/b.css")]
        );
        assert_eq!(rest.captures("/static").unwrap(), vec![("file", "")]);
        let lit = RouteTemplate::parse("/api/orders").unwrap();
        assert!(lit.matches("/api/orders?limit=5"));
        assert!(!lit.matches("/api/orders/1"));
        assert!(t.specificity() < lit.specificity() || t.specificity().0 == lit.specificity().0);
    }

    #[test]
    fn path_only_cuts_query_fragment_and_trailing_slash() {
        for (path, want) in [
            ("/api/orders?limit=5", "/api/orders"),
            ("/api/orders/#top", "/api/orders"),
            ("/é/ü?x=é", "/é/ü"),
            ("/?a", "/"),
            ("?a", ""),
            ("/a/b/", "/a/b"),
            ("/", "/"),
        ] {
            assert_eq!(path_only(path), want, "{path}");
        }
    }

    #[test]
    fn bad_templates() {
        for bad in [
            "api",
            "/a/{id",
            "/a/x{id}",
            "/a/{*r}/b",
            "/a/{id}/{id}",
            "/a?b",
            "/a/{b-c}",
        ] {
            assert!(RouteTemplate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn path_templates_render() {
        let p = PathTemplate::parse("/api/auth/keys?key_id={id}").unwrap();
        assert_eq!(
            p.render(&[("id", "vk_1")]).unwrap(),
            "/api/auth/keys?key_id=vk_1"
        );
        assert_eq!(p.render(&[]).unwrap_err(), "id");
        assert!(PathTemplate::parse("/a/{").is_err());
        assert!(PathTemplate::parse("/a/}").is_err());
        assert_eq!(p.capture_names().collect::<Vec<_>>(), vec!["id"]);
        // A query parameter of the client's request becomes a path segment.
        let q = PathTemplate::parse("/api/auth/keys/{?key_id}").unwrap();
        assert_eq!(q.capture_names().count(), 0);
        assert_eq!(
            q.render_with_query(&[], Some("x=1&key_id=vk_1&key_id=vk_2"))
                .unwrap(),
            "/api/auth/keys/vk_1"
        );
        assert_eq!(
            q.render_with_query(&[], Some("key_id=")).unwrap_err(),
            "?key_id"
        );
        assert_eq!(q.render(&[]).unwrap_err(), "?key_id");
        assert!(PathTemplate::parse("/a/{?}").is_err());
        assert!(PathTemplate::parse("/a/{?b-c}").is_err());
    }

    #[test]
    fn unmatched_paths_generalize() {
        let mut out = String::new();
        generalize_path("/api/orders/veloz_123_4?x=1", &mut out);
        assert_eq!(out, "/api/orders/{id}");
        generalize_path("/api/orders/web-1767225600000", &mut out);
        assert_eq!(out, "/api/orders/{id}");
        generalize_path("/api/market/BTCUSDT", &mut out);
        assert_eq!(out, "/api/market/BTCUSDT");
        generalize_path("/api/auth/keys/vk_0123456789abcdef", &mut out);
        assert_eq!(out, "/api/auth/keys/{id}");
        generalize_path("/x/123e4567-e89b-12d3-a456-426614174000/42", &mut out);
        assert_eq!(out, "/x/{id}/{id}");
        generalize_path("/api/orders_state", &mut out);
        assert_eq!(out, "/api/orders_state");
        generalize_path("", &mut out);
        assert_eq!(out, "/");
    }
}
