//! The merge engine's error type.

/// Why a multi-node result could not be merged.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// A data node sent something that is not a valid result set row or
    /// column definition.
    #[error("malformed result from a data node: {0}")]
    Malformed(String),
    /// The merge would have to hold more rows in memory than allowed.
    #[error(
        "the merged result needs more than {cap} rows in memory (ORDER BY on an aggregate \
         or on columns that differ from GROUP BY); narrow the query with WHERE or LIMIT, \
         or raise max_buffered_rows"
    )]
    TooManyRows { cap: usize },
    /// An aggregate does not fit its result column.
    #[error("numeric overflow while merging results: {0}")]
    Overflow(String),
    /// Reading a node's rows failed.
    #[error("reading rows from a data node failed: {0}")]
    Source(String),
    /// Passing merged rows on failed: whoever reads them (the client) is
    /// gone.
    #[error("passing merged rows on failed: {0}")]
    Sink(String),
    /// The plan refers to columns that the result does not have, or is
    /// otherwise inconsistent.
    #[error("invalid merge plan: {0}")]
    Plan(String),
}
