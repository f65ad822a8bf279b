//! The core's pools over MariaDB connections: the one place that names
//! both.

use shardgate_core::backend::pool;
pub use shardgate_core::backend::{Holder, PoolContext, Role};
pub use shardgate_mysql::backend::{BackendConn, Flavor};

/// The connections of one MariaDB server.
pub type Pool = pool::Pool<BackendConn>;
/// A MariaDB connection on loan from its pool.
pub type PooledConn = pool::PooledConn<BackendConn>;
/// What the replica monitor last learnt of a MariaDB replica.
pub type Replication = pool::Replication<shardgate_mysql::gtid::Position>;
