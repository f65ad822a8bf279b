//! Configuration errors: each names the offending key and the reason, so a
//! bad file is refused at start-up with a message that says what to change.

use crate::algorithm::{ExpressionError, MonthTargetError};
use crate::inline::{DataNode, InlineError};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    /// TOML syntax or shape (unknown field, wrong type, a malformed data
    /// source URL): toml's own message, which points at the line and quotes
    /// it, with the passwords of the URLs it quotes masked.
    #[error("{0}")]
    Syntax(String),
    #[error("{key}: {problem}")]
    Invalid { key: String, problem: Problem },
}

impl ConfigError {
    /// toml's error, its quote of the file masked (see [`mask_passwords`]).
    pub(crate) fn syntax(error: &toml::de::Error) -> Self {
        ConfigError::Syntax(mask_passwords(&error.to_string()))
    }

    pub(crate) fn invalid(key: impl Into<String>, problem: Problem) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            problem,
        }
    }
}

/// What is wrong with one key's value.
#[derive(Debug, Error)]
pub enum Problem {
    #[error("missing '{0}'")]
    Missing(&'static str),
    #[error("needs '{0}'")]
    Requires(&'static str),
    #[error("at least one {0} is required")]
    Empty(&'static str),
    #[error("unknown data source '{name}' (declared: {declared})")]
    UnknownDataSource { name: String, declared: String },
    #[error(transparent)]
    Inline(#[from] InlineError),
    #[error(transparent)]
    Expression(#[from] ExpressionError),
    #[error(transparent)]
    MonthTargets(#[from] MonthTargetError),
    #[error("node {0} is listed twice")]
    DuplicateNode(DataNode),
    #[error("table '{0}' is declared more than once")]
    DuplicateTable(String),
    #[error("table '{0}' is both sharded ([tables]) and broadcast")]
    ShardedAndBroadcast(String),
    #[error("table '{0}' is not a sharded table, so it cannot be bound")]
    BindingNotSharded(String),
    #[error("table '{0}' is in more than one binding group")]
    BindingTwice(String),
    #[error("tables '{a}' and '{b}' are not sharded alike: {reason}")]
    BindingNotAlike {
        a: String,
        b: String,
        reason: String,
    },
    #[error("unknown algorithm '{0}' (expected mod, crc32_mod or month, or an 'expression')")]
    UnknownAlgorithm(String),
    #[error("give either 'algorithm' or 'expression', not both")]
    AlgorithmAndExpression,
    #[error("'{field}' does not apply to {applies_to}")]
    NotApplicable {
        field: &'static str,
        applies_to: &'static str,
    },
    #[error("unsupported month format '{0}' (only \"%Y%m\" is supported)")]
    UnsupportedMonthFormat(String),
    #[error("count {count} does not match the {targets} {what} of the nodes")]
    CountMismatch {
        count: u32,
        targets: usize,
        what: &'static str,
    },
    #[error("missing, but {0}: a strategy must choose between them")]
    StrategyRequired(&'static str),
    #[error("{value} is out of range {range}")]
    OutOfRange { value: i64, range: &'static str },
    #[error("'{value}' is not valid: {reason}")]
    BadValue { value: String, reason: String },
}

/// `ds0, ds1, ...` for the "declared:" part of messages.
pub(crate) fn declared_list<'a>(names: impl IntoIterator<Item = &'a String>) -> String {
    names
        .into_iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `text` with the password of every `mysql://user:password@...` in it
/// replaced by `***`, as [`super::BackendUrl`]'s `Display` shows it. A URL
/// ends at a quote or white space; its credentials at its last '@', as the
/// parser splits them.
fn mask_passwords(text: &str) -> String {
    const SCHEME: &str = "mysql://";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(SCHEME) {
        let (before, url) = rest.split_at(at + SCHEME.len());
        out.push_str(before);
        let end = url
            .find(|c: char| c == '"' || c == '\'' || c.is_whitespace())
            .unwrap_or(url.len());
        let (token, after) = url.split_at(end);
        match token
            .rfind('@')
            .and_then(|at| Some((at, token[..at].find(':')?)))
        {
            Some((at, colon)) => {
                out.push_str(&token[..=colon]);
                out.push_str("***");
                out.push_str(&token[at..]);
            }
            None => out.push_str(token),
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::mask_passwords;

    #[test]
    fn quoted_urls_lose_their_passwords_only() {
        assert_eq!(
            mask_passwords("9 | url = \"mysql://app:p@ss@db:3306/x?ssl-mode=ON\"\n  | ^^^"),
            "9 | url = \"mysql://app:***@db:3306/x?ssl-mode=ON\"\n  | ^^^"
        );
        assert_eq!(
            mask_passwords("'mysql://root@h/d' and mysql://a:b@h/d"),
            "'mysql://root@h/d' and mysql://a:***@h/d"
        );
        assert_eq!(mask_passwords("no url here"), "no url here");
    }
}
