//! Errors of this crate. Comparing never fails (bad input is itself a difference); only rule
//! validation and request translation can.

/// One problem in a rule set, with the key path of the offending entry
/// (`routes[3].ignore[1]`), so a user can find it in the rules file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// A path pattern does not parse.
    #[error("{key}: {text:?} is not a valid pattern: {reason}")]
    Pattern {
        /// Where in the rules.
        key: String,
        /// The pattern as written.
        text: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// A route template does not parse.
    #[error("{key}: {text:?} is not a valid route template: {reason}")]
    Template {
        /// Where in the rules.
        key: String,
        /// The template as written.
        text: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// Any other invalid value.
    #[error("{key}: {reason}")]
    Invalid {
        /// Where in the rules.
        key: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
}

impl RuleError {
    /// The key path of the offending entry.
    pub fn key(&self) -> &str {
        match self {
            Self::Pattern { key, .. } | Self::Template { key, .. } | Self::Invalid { key, .. } => {
                key
            }
        }
    }
}

fn list(errors: &[RuleError]) -> String {
    errors
        .iter()
        .map(|e| format!("  {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The crate's error type, for callers that want one `?`-able error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The rule set is invalid; every problem is listed.
    #[error("invalid diff rules ({} problem(s)):\n{}", .0.len(), list(.0))]
    Rules(Vec<RuleError>),
    /// A candidate path names a capture that the request path did not provide.
    #[error(
        "route {template}: candidate path {candidate_path} needs capture {{{name}}}, which path {path} did not match"
    )]
    MissingCapture {
        /// The route template.
        template: String,
        /// The candidate path template.
        candidate_path: String,
        /// The concrete request path.
        path: String,
        /// The missing capture.
        name: String,
    },
}

impl From<Vec<RuleError>> for Error {
    fn from(errors: Vec<RuleError>) -> Self {
        Self::Rules(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_key() {
        let e = RuleError::Pattern {
            key: "routes[3].ignore[1]".into(),
            text: "/data/**x".into(),
            reason: "bad".into(),
        };
        assert_eq!(
            e.to_string(),
            r#"routes[3].ignore[1]: "/data/**x" is not a valid pattern: bad"#
        );
        assert_eq!(e.key(), "routes[3].ignore[1]");
        let all = Error::from(vec![e.clone(), e]);
        assert!(
            all.to_string()
                .starts_with("invalid diff rules (2 problem(s)):\n  routes[3]")
        );
    }
}
