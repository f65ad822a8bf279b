//! The core over MariaDB: its proxy state, pools, replica choices and read
//! watermarks instantiated with MariaDB connections and GTID positions,
//! the one place that names both.

use shardgate_core::backend::pool;
pub use shardgate_core::backend::{Holder, PoolContext, Role};
pub use shardgate_mysql::backend::{BackendConn, Flavor, MariaDb};
use shardgate_mysql::gtid::Position;

/// The connections of one MariaDB server.
pub type Pool = pool::Pool<BackendConn>;
/// A MariaDB connection on loan from its pool.
pub type PooledConn = pool::PooledConn<BackendConn>;
/// What the replica monitor last learnt of a MariaDB replica.
pub type Replication = pool::Replication<Position>;
/// Where one read goes, among MariaDB servers.
pub type ReadChoice = shardgate_core::replica::ReadChoice<BackendConn>;
/// What reads must see of the writes this proxy acknowledged, as GTIDs.
pub type Watermarks = shardgate_core::replica::watermark::Watermarks<Position>;
/// The running proxy over MariaDB data sources.
pub type Proxy = shardgate_core::proxy::Proxy<MariaDb>;
/// One configuration version over MariaDB data sources.
pub type Shared = shardgate_core::proxy::Shared<MariaDb>;
/// A logical database over MariaDB data sources.
pub type LogicalDatabase = shardgate_core::databases::LogicalDatabase<MariaDb>;
