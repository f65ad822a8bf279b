//! Sharded statements: what a statement touches (`analyze`, `simple` for
//! point SELECTs that need no parse), where it goes
//! (`plan`), and the SQL each data node runs (`labels`, `rewrite`, `node_sql`). The executor in
//! `session` carries a plan out.

pub mod analyze;
mod chains;
pub mod column_values;
pub(crate) mod condensed;
pub mod error;
#[cfg(test)]
mod golden;
pub mod having;
pub mod labels;
pub mod metadata;
pub mod node_rows;
pub mod node_sql;
pub mod params;
pub mod plan;
pub mod preview;
pub mod repeatable;
pub mod rewrite;
pub mod scatter;
pub mod simple;

pub use error::PlanError;
