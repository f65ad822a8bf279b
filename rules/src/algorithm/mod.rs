//! Sharding algorithms: each maps a sharding value (or a range of them) to
//! positions in the ordered list of targets of one dimension — the data
//! sources of a table's nodes, or its distinct physical table names.

mod crc32_mod;
mod expression;
mod modulo;
mod month;
mod number;

pub use crc32_mod::Crc32Modulo;
pub use expression::{
    ArithmeticError, Expression, ExpressionAlgorithm, ExpressionError, NameTemplate, Operator,
};
pub use modulo::Modulo;
pub use month::{Month, MonthTargetError};
pub use number::{compared_integer, stored_integer};

use crate::datetime::DateTimeError;
use std::collections::BTreeSet;
use std::fmt;
use std::ops::Bound;
use thiserror::Error;

/// A value of a sharding column as the SQL layer saw it. Dates arrive as
/// `Text` in MySQL's literal form (`'2024-03-15 10:20:30'`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ShardValue {
    Int(i64),
    Text(String),
    Null,
}

impl ShardValue {
    /// The value an algorithm can work on; `None` for NULL, which routes
    /// nowhere (`col = NULL` matches no row, and a NULL key has no home).
    pub fn as_key(&self) -> Option<ShardKey<'_>> {
        match self {
            ShardValue::Int(value) => Some(ShardKey::Int(*value)),
            ShardValue::Text(text) => Some(ShardKey::Text(text)),
            ShardValue::Null => None,
        }
    }
}

impl From<i64> for ShardValue {
    fn from(value: i64) -> Self {
        ShardValue::Int(value)
    }
}

impl From<&str> for ShardValue {
    fn from(value: &str) -> Self {
        ShardValue::Text(value.to_string())
    }
}

impl fmt::Display for ShardValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShardValue::Int(value) => write!(f, "{value}"),
            ShardValue::Text(text) => write!(f, "'{text}'"),
            ShardValue::Null => f.write_str("NULL"),
        }
    }
}

/// A non-NULL sharding value: algorithms never see NULL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardKey<'a> {
    Int(i64),
    Text(&'a str),
}

impl ShardKey<'_> {
    /// The integer an integer column compares this key equal with, as
    /// MariaDB reads text as a number (`'5'`, `' 5'`, `'5.0'`, `'5e0'`,
    /// `'5abc'` are 5); an error when no integer equals it (`'5.5'`, a value
    /// beyond BIGINT).
    pub fn integer(self) -> Result<i64, AlgorithmError> {
        match self {
            ShardKey::Int(value) => Ok(value),
            ShardKey::Text(text) => compared_integer(text).ok_or(AlgorithmError::NotInteger),
        }
    }
}

/// Which targets of a dimension a condition can reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Targets {
    All,
    Only(BTreeSet<usize>),
}

/// Why a value could not be mapped to a target.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AlgorithmError {
    #[error("not an integer")]
    NotInteger,
    #[error(transparent)]
    NotDate(#[from] DateTimeError),
    #[error(transparent)]
    Arithmetic(#[from] ArithmeticError),
    #[error("it maps to '{0}', which is not a declared target")]
    NoTarget(String),
}

/// One sharding algorithm, configured with the targets of its dimension.
pub trait ShardingAlgorithm: fmt::Debug + Send + Sync {
    /// The position of the one target that holds rows with this value.
    fn target(&self, key: ShardKey<'_>) -> Result<usize, AlgorithmError>;

    /// The targets that may hold rows whose value lies between the bounds.
    /// Hash-like algorithms scatter neighbours, so they answer `All`.
    fn targets_in_range(
        &self,
        lower: Bound<ShardKey<'_>>,
        upper: Bound<ShardKey<'_>>,
    ) -> Result<Targets, AlgorithmError>;

    /// Whether the algorithm works on integers (its column is an integer
    /// column): a row's text value is then stored, and routed, as the
    /// integer MariaDB makes of it.
    fn takes_integers(&self) -> bool {
        false
    }

    /// Whether the algorithm places an integer and the same digits as text
    /// apart (it hashes text): a value must then be taken as its column
    /// stores and compares it, which only the column's type tells.
    fn places_by_column_type(&self) -> bool {
        false
    }
}

/// `value mod count` as a target index; `rem_euclid` so that negative values
/// land on a valid target (MySQL's `%` would give a negative remainder).
fn euclid_index(value: i64, count: u32) -> usize {
    // rem_euclid of a positive count is in 0..count, which fits usize.
    value.rem_euclid(i64::from(count)) as usize
}
