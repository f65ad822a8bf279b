//! Configuration errors: each names the offending key and the reason, so a
//! bad file is refused at start-up with a message that says what to change.

use crate::algorithm::{ExpressionError, MonthTargetError};
use crate::inline::{DataNode, InlineError};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    /// TOML syntax or shape (unknown field, wrong type): toml's own message,
    /// which already points at the line and key.
    #[error("{0}")]
    Syntax(#[from] toml::de::Error),
    #[error("{key}: {problem}")]
    Invalid { key: String, problem: Problem },
}

impl ConfigError {
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
