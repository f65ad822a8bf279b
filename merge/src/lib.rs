//! Result merging for statements that ran on several data nodes: combines
//! the per-node row streams into the one result a single database would
//! have produced (ORDER BY k-way merge, GROUP BY streaming aggregation,
//! DISTINCT, LIMIT/OFFSET). Rows come as protocol-neutral `Value`s with a
//! `ColumnMeta` per column; each protocol's row codec decodes and encodes
//! them (`RowSource` / `RowSink`).
//!
//! Memory is bounded by the rows in flight (one head row per node), except
//! when groups must be re-sorted after aggregation (`order_after_group`),
//! which buffers up to `MergePlan::max_buffered_rows` groups.

mod aggregate;
pub mod column;
mod compare;
mod decimal;
pub mod engine;
pub mod error;
mod group;
mod kway;
pub mod plan;
pub mod temporal;
pub mod value;

pub use column::{ColumnMeta, TypeClass};
pub use engine::{merge, MergeStats, RowSink, RowSource};
pub use error::MergeError;
pub use plan::{Aggregate, AggregateKind, Compared, MergePlan, SortKey};
pub use value::Value;
