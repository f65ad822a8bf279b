//! The MySQL client side of a data source: one logged-in connection
//! ([`BackendConn`]) with the connection options it shares with the session
//! it serves ([`Flavor`]), the column definitions MariaDB's metadata
//! caching leaves out ([`columns`]), as the core's pools keep it (it is
//! their [`shardgate_core::backend::Connection`]); [`MariaDb`], the core's
//! [`Backend`], and the core's types instantiated with it.

pub mod columns;
pub mod conn;
mod execute;
mod login;
mod replication;
pub mod result_set;

use mysql_common::constants::CapabilityFlags;

pub use conn::BackendConn;
pub use shardgate_core::backend::{Holder, PoolContext, Role};
pub use shardgate_core::error::ConnError;

use shardgate_core::backend::{pool, Backend};
use shardgate_core::error::{DbError, ProxyError};
use shardgate_sql::dialect::{Dialect, MARIADB};

use crate::errors::ToClient;
use crate::gtid::Position;

/// MariaDB data sources behind a MySQL front end.
pub struct MariaDb;

impl Backend for MariaDb {
    type Conn = BackendConn;

    fn dialect() -> &'static dyn Dialect {
        &MARIADB
    }

    fn client_error(error: &ProxyError) -> DbError {
        error.to_client().into()
    }
}

// The core over MariaDB: its proxy state, pools, replica choices and read
// watermarks instantiated with MariaDB connections and GTID positions.

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

/// The client-visible connection options a backend connection must share
/// with the session it serves: they change how the server answers
/// (affected-row counts, EOF packets, multi-statements) or converts text,
/// so forwarding raw bytes is only correct between equal flavors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flavor {
    capabilities: u32,
    pub collation: u8,
}

impl Flavor {
    const MASK: CapabilityFlags = CapabilityFlags::CLIENT_FOUND_ROWS
        .union(CapabilityFlags::CLIENT_IGNORE_SPACE)
        .union(CapabilityFlags::CLIENT_MULTI_STATEMENTS)
        .union(CapabilityFlags::CLIENT_MULTI_RESULTS)
        .union(CapabilityFlags::CLIENT_PS_MULTI_RESULTS)
        .union(CapabilityFlags::CLIENT_SESSION_TRACK)
        .union(CapabilityFlags::CLIENT_DEPRECATE_EOF);

    /// The flavor a client with these negotiated capabilities needs.
    pub fn for_client(capabilities: CapabilityFlags, collation: u8) -> Self {
        Self {
            capabilities: (capabilities & Self::MASK).bits(),
            collation,
        }
    }

    pub fn capabilities(&self) -> CapabilityFlags {
        CapabilityFlags::from_bits_truncate(self.capabilities)
    }

    pub fn deprecate_eof(&self) -> bool {
        self.capabilities()
            .contains(CapabilityFlags::CLIENT_DEPRECATE_EOF)
    }

    /// The flavor of the proxy's own connections (health checks): text
    /// results with EOF packets, utf8mb4.
    pub fn internal() -> Self {
        Self::for_client(CapabilityFlags::CLIENT_PROTOCOL_41, 45)
    }

    /// The same flavor with multi-statements switched on or off (COM_SET_OPTION).
    pub fn with_multi_statements(self, on: bool) -> Self {
        let mut caps = self.capabilities();
        caps.set(CapabilityFlags::CLIENT_MULTI_STATEMENTS, on);
        Self {
            capabilities: caps.bits(),
            collation: self.collation,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flavor_keeps_only_result_shaping_capabilities() {
        let caps = CapabilityFlags::CLIENT_PROTOCOL_41
            | CapabilityFlags::CLIENT_FOUND_ROWS
            | CapabilityFlags::CLIENT_CONNECT_ATTRS
            | CapabilityFlags::CLIENT_DEPRECATE_EOF;
        let flavor = Flavor::for_client(caps, 45);
        assert_eq!(
            flavor.capabilities(),
            CapabilityFlags::CLIENT_FOUND_ROWS | CapabilityFlags::CLIENT_DEPRECATE_EOF
        );
        assert!(flavor.deprecate_eof());
        assert_ne!(flavor, flavor.with_multi_statements(true));
        assert_eq!(
            flavor,
            flavor
                .with_multi_statements(true)
                .with_multi_statements(false)
        );
    }
}
