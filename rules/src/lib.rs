//! ShardGate's sharding rules: the configuration model, inline node
//! expressions, sharding algorithms, routing of sharding conditions to data
//! nodes, and snowflake key generation. Pure logic: no I/O, no async; the
//! proxy reads the config file and hands over its text.

pub mod algorithm;
pub mod column_kind;
pub mod config;
pub mod datetime;
pub mod inline;
pub mod route;
pub mod snowflake;

pub use algorithm::ShardValue;
pub use column_kind::{ColumnKind, ColumnKinds};
pub use config::{Config, ConfigError};
pub use inline::DataNode;
pub use route::{Condition, RouteError, ShardingRules, TableKind};
pub use snowflake::{Clock, Ids, SnowflakeError, SnowflakeGenerator, SystemClock};
