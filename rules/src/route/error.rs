//! Why a condition or a row could not be routed.

use crate::algorithm::{AlgorithmError, ShardValue};
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RouteError {
    #[error("no data node of table '{table}' holds {column} = {value}")]
    NoNode {
        table: String,
        column: String,
        value: ShardValue,
    },
    #[error("table '{table}': sharding column {column} is NULL, which routes nowhere")]
    NullValue { table: String, column: String },
    #[error("table '{table}': {column} = {value} cannot be routed: {reason}")]
    InvalidValue {
        table: String,
        column: String,
        value: ShardValue,
        reason: AlgorithmError,
    },
    #[error("table '{table}': the row has no value for sharding column {column}")]
    MissingShardingColumn { table: String, column: String },
    #[error("table '{table}' is a broadcast table: a row goes to every data source")]
    BroadcastRow { table: String },
}
