//! Loading a rules file (`--rules FILE`): TOML → [`RawRuleSet`] → validated [`RuleSet`].
//!
//! # Format
//! The file is the TOML form of [`RawRuleSet`] (`[defaults]`, `[redact]`, `[limits]`,
//! `[[routes]]`, `[flows]`, `[[streams]]`), plus one key of its own at the top:
//! `include = ["veloz-common.toml"]`.
//!
//! # Includes
//! Paths are relative to the including file. Included files are read first, in the order
//! listed (depth first), then the including file is laid over them:
//! - tables merge key by key;
//! - arrays concatenate, the included entries first (so `[[routes]]` from a shared file and
//!   from the including file add up, and so do `ignore`/`noise` lists);
//! - any other value set in both is taken from the including file.
//!
//! A file that includes itself, directly or through others, is an error naming the chain.
//! A file included twice along different paths (a diamond) is read twice; its routes would
//! then be duplicated, which validation reports as a duplicate template.
//!
//! # Errors
//! Every problem is reported at once, each with the file it is in and its key path
//! (`veloz.toml: routes[3].ignore[1]: "/data/**x" is not a valid pattern: ...`): unreadable
//! files, TOML syntax errors (with line and column), unknown keys and wrong types (one per
//! section or route, from serde), and every rule error of [`RuleSet::validate`]. Route keys
//! are mapped back to the file that defined the route and its index there; keys under
//! `defaults`, `redact` and `limits` name the file that sets that section (or all of them).

use std::fmt;
use std::path::{Path, PathBuf};

use shadowgate_diff::{RawCompare, RawLimits, RawRedact, RawRoute, RawRuleSet, RuleError, RuleSet};
use toml::{Table, Value};

/// One problem in a rules file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleProblem {
    /// The file the problem is in.
    pub file: PathBuf,
    /// Key path inside that file (`routes[2].write_policy`); empty for whole-file problems.
    pub key: String,
    /// What is wrong and, where possible, how to fix it.
    pub message: String,
}

impl fmt::Display for RuleProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}: {}: {}", self.file.display(), self.key, self.message)
        }
    }
}

/// Every problem found while loading a rules file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid rules file {} ({} problem(s)):\n{}", .file.display(), .problems.len(), list(.problems))]
pub struct RulesFileError {
    /// The file that was asked for.
    pub file: PathBuf,
    /// Every problem, in the order found.
    pub problems: Vec<RuleProblem>,
}

fn list(problems: &[RuleProblem]) -> String {
    problems
        .iter()
        .map(|p| format!("  {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The rules used when no `--rules` file is given: compare everything (status, `content-type`,
/// the whole body), mirror the safe methods (GET, HEAD, OPTIONS) and no write.
pub fn default_rules() -> RuleSet {
    RuleSet::default()
}

/// Reads, merges (see the module docs) and validates a rules file.
///
/// # Errors
/// [`RulesFileError`] listing every problem found.
pub fn load_rules(path: impl AsRef<Path>) -> Result<RuleSet, RulesFileError> {
    let path = path.as_ref();
    let mut loader = Loader::default();
    let merged = loader.load(path, &mut Vec::new());
    let fail = |problems| RulesFileError {
        file: path.to_path_buf(),
        problems,
    };
    let Some(merged) = merged else {
        return Err(fail(loader.problems));
    };
    let raw = loader.typed(merged, path);
    loader.validate(raw, path).map_err(fail)
}

/// Parses rules from TOML text (no includes allowed); `origin` names the text in errors.
///
/// # Errors
/// [`RulesFileError`] listing every problem found.
pub fn parse_rules(text: &str, origin: &str) -> Result<RuleSet, RulesFileError> {
    let path = Path::new(origin);
    let mut loader = Loader::default();
    let fail = |problems| RulesFileError {
        file: path.to_path_buf(),
        problems,
    };
    let Some(table) = loader.parse(text, path) else {
        return Err(fail(loader.problems));
    };
    if table.contains_key("include") {
        loader.problem(path, "include", "includes need a file; use load_rules");
        return Err(fail(loader.problems));
    }
    loader.note_origins(&table, path);
    let raw = loader.typed(table, path);
    loader.validate(raw, path).map_err(fail)
}

/// Where the merged document's parts came from.
#[derive(Debug, Default)]
struct Loader {
    problems: Vec<RuleProblem>,
    /// For each merged route: the file and its index in that file.
    route_origins: Vec<(PathBuf, usize)>,
    /// For each route that deserialized: its index among the merged routes (routes that did
    /// not deserialize are left out of validation, which shifts the indices after them).
    typed_routes: Vec<usize>,
    /// For each of `defaults`, `redact`, `limits`: the files that set it.
    section_origins: Vec<(&'static str, PathBuf)>,
}

const SECTIONS: [&str; 5] = ["defaults", "redact", "limits", "flows", "streams"];

impl Loader {
    /// Validates what deserialized, and returns every problem (serde's and the rules').
    fn validate(mut self, raw: RawRuleSet, top: &Path) -> Result<RuleSet, Vec<RuleProblem>> {
        match RuleSet::validate(raw) {
            Ok(rules) if self.problems.is_empty() => Ok(rules),
            Ok(_) => Err(self.problems),
            Err(errors) => {
                for e in errors {
                    let p = self.locate(e, top);
                    self.problems.push(p);
                }
                Err(self.problems)
            }
        }
    }

    fn problem(&mut self, file: &Path, key: impl Into<String>, message: impl Into<String>) {
        self.problems.push(RuleProblem {
            file: file.to_path_buf(),
            key: key.into(),
            message: message.into(),
        });
    }

    fn parse(&mut self, text: &str, path: &Path) -> Option<Table> {
        match text.parse::<Table>() {
            Ok(t) => Some(t),
            Err(e) => {
                let at = e
                    .span()
                    .map(|s| line_col(text, s.start))
                    .map(|(l, c)| format!("line {l}, column {c}: "))
                    .unwrap_or_default();
                let msg = e.message().trim().to_owned();
                self.problem(path, "", format!("{at}TOML syntax error: {msg}"));
                None
            }
        }
    }

    fn note_origins(&mut self, table: &Table, path: &Path) {
        if let Some(Value::Array(routes)) = table.get("routes") {
            for i in 0..routes.len() {
                self.route_origins.push((path.to_path_buf(), i));
            }
        }
        for s in SECTIONS {
            if table.contains_key(s) {
                self.section_origins.push((s, path.to_path_buf()));
            }
        }
    }

    /// Loads `path` with its includes merged in; `None` when it (or an include) could not be
    /// read or parsed. `stack` holds the files being loaded, for cycle detection.
    fn load(&mut self, path: &Path, stack: &mut Vec<PathBuf>) -> Option<Table> {
        let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        if let Some(at) = stack.iter().position(|p| *p == canonical) {
            let chain: Vec<String> = stack[at..]
                .iter()
                .chain(std::iter::once(&canonical))
                .map(|p| p.display().to_string())
                .collect();
            self.problem(
                path,
                "include",
                format!("include cycle: {}", chain.join(" -> ")),
            );
            return None;
        }
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                self.problem(path, "", format!("cannot read the rules file: {e}"));
                return None;
            }
        };
        let mut own = self.parse(&text, path)?;
        let includes = match own.remove("include") {
            None => Vec::new(),
            Some(Value::Array(items)) => {
                let mut out = Vec::new();
                for (i, item) in items.into_iter().enumerate() {
                    match item {
                        Value::String(s) => out.push(s),
                        other => self.problem(
                            path,
                            format!("include[{i}]"),
                            format!("expected a file name, found {}", other.type_str()),
                        ),
                    }
                }
                out
            }
            Some(other) => {
                self.problem(
                    path,
                    "include",
                    format!("expected a list of file names, found {}", other.type_str()),
                );
                Vec::new()
            }
        };
        stack.push(canonical);
        let base = path.parent().unwrap_or(Path::new(""));
        let mut merged = Table::new();
        let mut ok = true;
        for inc in includes {
            match self.load(&base.join(&inc), stack) {
                Some(t) => merge(&mut merged, t),
                None => ok = false,
            }
        }
        stack.pop();
        self.note_origins(&own, path);
        merge(&mut merged, own);
        ok.then_some(merged)
    }

    /// Deserializes the merged table section by section, so that one unknown key does not
    /// hide the problems of other routes.
    fn typed(&mut self, mut table: Table, top: &Path) -> RawRuleSet {
        let mut raw = RawRuleSet::default();
        if let Some(v) = table.remove("defaults")
            && let Some(x) = self.section::<RawCompare>(v, "defaults", top)
        {
            raw.defaults = x;
        }
        if let Some(v) = table.remove("redact")
            && let Some(x) = self.section::<RawRedact>(v, "redact", top)
        {
            raw.redact = x;
        }
        if let Some(v) = table.remove("limits")
            && let Some(x) = self.section::<RawLimits>(v, "limits", top)
        {
            raw.limits = x;
        }
        if let Some(v) = table.remove("flows")
            && let Some(x) = self.section::<shadowgate_diff::flow::RawFlows>(v, "flows", top)
        {
            raw.flows = x;
        }
        // `[[streams]]` (event-stream comparison); problems inside name `streams[i]`.
        if let Some(v) = table.remove("streams")
            && let Some(x) =
                self.section::<Vec<shadowgate_diff::stream::RawStreamRule>>(v, "streams", top)
        {
            raw.streams = x;
        }
        match table.remove("routes") {
            None => {}
            Some(Value::Array(routes)) => {
                for (i, v) in routes.into_iter().enumerate() {
                    let (file, local) = self.route_origin(i, top);
                    match v.try_into::<RawRoute>() {
                        Ok(r) => {
                            raw.routes.push(r);
                            self.typed_routes.push(i);
                        }
                        Err(e) => {
                            self.problem(&file, format!("routes[{local}]"), serde_message(&e))
                        }
                    }
                }
            }
            Some(other) => self.problem(
                top,
                "routes",
                format!("expected [[routes]] tables, found {}", other.type_str()),
            ),
        }
        for key in table.keys() {
            self.problem(
                top,
                key.clone(),
                "unknown key; expected include, defaults, redact, limits, flows, streams or routes",
            );
        }
        raw
    }

    fn section<T: serde::de::DeserializeOwned>(
        &mut self,
        v: Value,
        name: &'static str,
        top: &Path,
    ) -> Option<T> {
        match v.try_into::<T>() {
            Ok(x) => Some(x),
            Err(e) => {
                let file = self.section_file(name, top);
                self.problem(&file, name, serde_message(&e));
                None
            }
        }
    }

    fn merged_index(&self, typed: usize) -> usize {
        self.typed_routes.get(typed).copied().unwrap_or(typed)
    }

    fn route_origin(&self, merged_index: usize, top: &Path) -> (PathBuf, usize) {
        self.route_origins
            .get(merged_index)
            .cloned()
            .unwrap_or_else(|| (top.to_path_buf(), merged_index))
    }

    fn section_file(&self, name: &str, top: &Path) -> PathBuf {
        let files: Vec<&PathBuf> = self
            .section_origins
            .iter()
            .filter(|(s, _)| *s == name)
            .map(|(_, f)| f)
            .collect();
        match files.as_slice() {
            [one] => (*one).clone(),
            _ => top.to_path_buf(),
        }
    }

    /// Turns a rule error on the merged document into a problem at its file and local key.
    fn locate(&self, e: RuleError, top: &Path) -> RuleProblem {
        let key = e.key().to_owned();
        let message = match &e {
            RuleError::Pattern { text, reason, .. } => {
                format!("{text:?} is not a valid pattern: {reason}")
            }
            RuleError::Template { text, reason, .. } => {
                format!("{text:?} is not a valid route template: {reason}")
            }
            RuleError::Invalid { reason, .. } => reason.clone(),
        };
        if let Some(rest) = key.strip_prefix("routes[")
            && let Some((index, tail)) = rest.split_once(']')
            && let Ok(i) = index.parse::<usize>()
        {
            let (file, local) = self.route_origin(self.merged_index(i), top);
            // Messages may name other merged routes ("already covered by routes[2]").
            let message = self.rewrite_route_refs(&message, top);
            return RuleProblem {
                file,
                key: format!("routes[{local}]{tail}"),
                message,
            };
        }
        let section = key.split(['.', '[']).next().unwrap_or("");
        RuleProblem {
            file: self.section_file(section, top),
            key,
            message,
        }
    }

    fn rewrite_route_refs(&self, message: &str, top: &Path) -> String {
        let mut out = String::with_capacity(message.len());
        let mut rest = message;
        while let Some(at) = rest.find("routes[") {
            out.push_str(&rest[..at]);
            let after = &rest[at + "routes[".len()..];
            match after.split_once(']') {
                Some((n, tail)) if n.parse::<usize>().is_ok() => {
                    let i: usize = n.parse().unwrap_or(0);
                    let (file, local) = self.route_origin(self.merged_index(i), top);
                    if file == top {
                        out.push_str(&format!("routes[{local}]"));
                    } else {
                        out.push_str(&format!("routes[{local}] of {}", file.display()));
                    }
                    rest = tail;
                }
                _ => {
                    out.push_str("routes[");
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        out
    }
}

fn serde_message(e: &toml::de::Error) -> String {
    e.message().trim().to_owned()
}

/// Lays `over` on `base`: tables merge, arrays concatenate, other values are replaced.
fn merge(base: &mut Table, over: Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(Value::Table(b)), Value::Table(o)) => merge(b, o),
            (Some(Value::Array(b)), Value::Array(o)) => b.extend(o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map_or(1, |l| l.chars().count() + 1);
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shadowgate_diff::WritePolicy;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn loads_with_includes_and_merges_lists() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "common.toml",
            r#"
            [defaults]
            ignore = ["/**/ts_ns"]
            [[routes]]
            template = "/api/market"
            "#,
        );
        let top = write(
            dir.path(),
            "top.toml",
            r#"
            include = ["common.toml"]
            [defaults]
            ignore = ["/x"]
            [[routes]]
            template = "/api/order"
            methods = ["POST"]
            write_policy = "mirror-marked"
            sample_percent = 50
            "#,
        );
        let rules = load_rules(&top).unwrap();
        assert_eq!(rules.routes().len(), 2);
        assert_eq!(rules.routes()[0].template().as_str(), "/api/market");
        let order = rules.find_route("POST", "/api/order").unwrap();
        assert_eq!(order.write_policy(), WritePolicy::MirrorMarked);
        assert_eq!(order.sample_percent(), 50.0);
        let ignore: Vec<&str> = rules.defaults().ignore.iter().map(|p| p.as_str()).collect();
        assert_eq!(ignore, vec!["/**/ts_ns", "/x"]);
    }

    #[test]
    fn reports_every_problem_with_file_and_key() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "common.toml",
            r#"
            [[routes]]
            template = "/ok"
            [[routes]]
            template = "/a"
            write_policy = "sometimes"
            "#,
        );
        let top = write(
            dir.path(),
            "top.toml",
            r#"
            include = ["common.toml"]
            colour = 1
            [limits]
            max_differences = 0
            [[routes]]
            template = "/b"
            ignroe = []
            [[routes]]
            template = "/c"
            sample_percent = 120
            "#,
        );
        let err = load_rules(&top).unwrap_err();
        let got: Vec<String> = err
            .problems
            .iter()
            .map(|p| {
                format!(
                    "{}|{}",
                    p.file.file_name().unwrap().to_string_lossy(),
                    p.key
                )
            })
            .collect();
        for want in [
            "top.toml|colour",
            "top.toml|routes[0]",
            "common.toml|routes[1].write_policy",
            "top.toml|routes[1].sample_percent",
            "top.toml|limits.max_differences",
        ] {
            assert!(got.contains(&want.to_owned()), "missing {want} in {got:?}");
        }
        let text = err.to_string();
        assert!(text.contains("ignroe"), "{text}");
        assert!(text.contains("problem(s)"), "{text}");
    }

    #[test]
    fn stream_rules_load_and_their_problems_name_the_key() {
        let ok = parse_rules(
            r#"
            [[streams]]
            route = "/api/stream"
            window_ms = 1500
            [[streams.events]]
            type = "market"
            primary = ["market"]
            candidate = ["market-data"]
            key = ["/symbol"]
            "#,
            "s.toml",
        )
        .unwrap();
        let rule = ok.stream_for("/api/stream").unwrap();
        assert_eq!(rule.window(), std::time::Duration::from_millis(1500));
        assert_eq!(
            rule.type_of(shadowgate_diff::stream::Side::Candidate, "market-data"),
            "market"
        );
        let err = parse_rules(
            "[[streams]]\nroute = \"/s\"\nlate_ms = 1\nbogus = 1\n",
            "s.toml",
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("s.toml: streams"), "{text}");
        assert!(text.contains("bogus"), "{text}");
        let err = parse_rules("[[streams]]\nroute = \"/s\"\nlate_ms = 1\n", "s.toml").unwrap_err();
        assert!(err.to_string().contains("streams[0].late_ms"), "{err}");
    }

    #[test]
    fn include_cycles_are_named() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.toml", r#"include = ["b.toml"]"#);
        write(dir.path(), "b.toml", r#"include = ["a.toml"]"#);
        let err = load_rules(dir.path().join("a.toml")).unwrap_err();
        assert_eq!(err.problems.len(), 1, "{err}");
        assert!(err.problems[0].message.contains("include cycle"), "{err}");
        assert!(err.problems[0].message.contains("b.toml"), "{err}");
    }

    #[test]
    fn syntax_errors_and_missing_files_are_reported_together() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "bad.toml", "[defaults\nx = 1\n");
        let top = write(
            dir.path(),
            "top.toml",
            r#"include = ["bad.toml", "missing.toml"]"#,
        );
        let err = load_rules(&top).unwrap_err();
        assert_eq!(err.problems.len(), 2, "{err}");
        assert!(err.problems[0].message.contains("line 1"), "{err}");
        assert!(err.problems[1].message.contains("cannot read"), "{err}");
    }

    #[test]
    fn duplicate_routes_across_files_name_both() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "c.toml", "[[routes]]\ntemplate = \"/a\"\n");
        let top = write(
            dir.path(),
            "top.toml",
            "include = [\"c.toml\"]\n[[routes]]\ntemplate = \"/a\"\n",
        );
        let err = load_rules(&top).unwrap_err();
        assert_eq!(err.problems.len(), 1, "{err}");
        let p = &err.problems[0];
        assert!(p.file.ends_with("top.toml"));
        assert_eq!(p.key, "routes[0].template");
        assert!(p.message.contains("routes[0] of"), "{}", p.message);
        assert!(p.message.contains("c.toml"), "{}", p.message);
    }

    #[test]
    fn parse_rules_from_text_and_defaults() {
        let rules = parse_rules("[[routes]]\ntemplate = \"/x\"\n", "inline").unwrap();
        assert_eq!(rules.routes().len(), 1);
        assert!(parse_rules("include = [\"a\"]", "inline").is_err());
        assert!(default_rules().routes().is_empty());
    }
}
