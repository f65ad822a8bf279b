//! Conditions on sharding columns, as the SQL layer extracts them from a
//! WHERE clause. Anything it cannot express becomes `Unknown`.

use crate::algorithm::ShardValue;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    Eq(String, ShardValue),
    /// Union of the equalities; an empty list reaches no node.
    In(String, Vec<ShardValue>),
    /// Inclusive at both ends, like SQL's BETWEEN.
    Between(String, ShardValue, ShardValue),
    Lt(String, ShardValue),
    Le(String, ShardValue),
    Gt(String, ShardValue),
    Ge(String, ShardValue),
    /// Intersection; an empty `And` is true and reaches every node.
    And(Vec<Condition>),
    /// Union; an empty `Or` is false and reaches no node.
    Or(Vec<Condition>),
    /// A predicate that does not narrow the sharding columns.
    Unknown,
}

impl Condition {
    pub fn eq(column: &str, value: impl Into<ShardValue>) -> Condition {
        Condition::Eq(column.to_string(), value.into())
    }
}
