//! Connections to the data sources and the pools that share them between
//! sessions.

pub mod maintenance;
pub mod pool;
pub mod waits;

pub use pool::{Pool, PoolContext, PooledConn, Role};
pub use shardgate_mysql::backend::{BackendConn, Flavor};
pub use waits::Holder;
