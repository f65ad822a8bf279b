//! Why the planner refuses a statement or cannot merge its results, in
//! terms of the statement, not of a wire protocol: the protocol's edge
//! (`crate::error` for MySQL) maps each kind to its codes once.

use thiserror::Error;

/// A statement the planner will not route as asked.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PlanError {
    /// A statement the proxy cannot run correctly across data nodes; the
    /// message names the tables and what to change.
    #[error("{0}")]
    NotSupported(String),
    /// A row whose sharding column is NULL: no data node holds it.
    #[error("Column '{column}' cannot be null: it is the sharding column of table '{table}'")]
    NullShardingValue { table: String, column: String },
    /// An INSERT that gives no value for a sharding column.
    #[error("Field '{column}' doesn't have a default value: table '{table}' is sharded by it; give it a value")]
    MissingShardingColumn { table: String, column: String },
    /// A value the rules route to no data node (the rules' own reason).
    #[error("{0}; nothing was written")]
    Unroutable(String),
    /// A client-given argument the statement cannot take (a LIMIT that is
    /// not a count, a HAVING parameter without a value).
    #[error("{0}")]
    BadArguments(String),
    /// The key generator could not give a key for an INSERT.
    #[error("cannot generate a key for {table}: {reason}")]
    KeyGeneration { table: String, reason: String },
}

/// What part of a SELECT the proxy cannot merge across data nodes, as a
/// noun phrase ("ORDER BY ALL", "GROUP_CONCAT() across data nodes"): the
/// planner refuses the statement with it once it reaches several nodes.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct Unmergeable(pub String);

impl From<&str> for Unmergeable {
    fn from(what: &str) -> Self {
        Unmergeable(what.to_owned())
    }
}

impl From<String> for Unmergeable {
    fn from(what: String) -> Self {
        Unmergeable(what)
    }
}

/// Node results whose shape does not fit the merge planned for them.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MergeShapeError {
    #[error("the nodes returned {columns} columns, fewer than the {derived} the proxy added")]
    FewerColumnsThanDerived { columns: usize, derived: usize },
    #[error("HAVING parameter {0} has no value")]
    UnboundHavingParameter(usize),
}
