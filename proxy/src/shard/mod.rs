//! Sharded statements: what a statement touches (`analyze`, `simple` for
//! point SELECTs that need no parse), where it goes
//! (`plan`), and the SQL each data node runs (`labels`, `rewrite`). The executor in
//! `session` carries a plan out.

pub mod analyze;
pub mod column_values;
#[cfg(test)]
mod golden;
pub mod having;
pub mod labels;
pub mod metadata;
pub mod params;
pub mod plan;
pub mod preview;
pub mod repeatable;
pub mod rewrite;
pub mod scatter;
pub mod simple;

use crate::error::codes;
use crate::wire::ok_err::ErrInfo;

/// A statement the proxy will not run because it cannot run it correctly
/// across data nodes; the message names the tables and what to change.
pub fn not_supported(message: impl Into<String>) -> ErrInfo {
    ErrInfo::new(codes::ER_NOT_SUPPORTED_YET, "42000", message)
}
