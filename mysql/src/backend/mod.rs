//! The MySQL client side of a data source: one logged-in connection
//! ([`BackendConn`]) with the connection options it shares with the session
//! it serves ([`Flavor`]), the column definitions MariaDB's metadata
//! caching leaves out ([`columns`]), and what can go wrong on it
//! ([`ConnError`]).

pub mod columns;
pub mod conn;

use mysql_common::constants::CapabilityFlags;

use crate::codes;
use crate::ok_err::ErrInfo;
use crate::packet::ReadError;

pub use conn::BackendConn;

/// A failure on one connection to a data source.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("cannot connect to data source {ds} ({addr}): {source}")]
    Connect {
        ds: String,
        addr: String,
        source: std::io::Error,
    },
    #[error("data source {ds} refused the proxy's login: {err}")]
    Login { ds: String, err: ErrInfo },
    #[error("connection to data source {ds} lost: {reason}")]
    Lost { ds: String, reason: String },
    #[error("unexpected reply from data source {ds}: {what}")]
    Protocol { ds: String, what: String },
    #[error("{err}")]
    Server { ds: String, err: ErrInfo },
}

impl ConnError {
    pub fn lost(ds: &str, err: impl std::fmt::Display) -> Self {
        ConnError::Lost {
            ds: ds.to_owned(),
            reason: err.to_string(),
        }
    }

    /// The data source did not answer at all (refused, reset, closed):
    /// it is down or cut off, not merely busy or refusing the statement.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, ConnError::Connect { .. } | ConnError::Lost { .. })
    }

    /// Maps a read failure on a backend connection.
    pub fn from_read(ds: &str, err: ReadError) -> Self {
        Self::lost(ds, err)
    }

    /// The error the client gets: the server's own, or one naming the data
    /// source the proxy could not use.
    pub fn to_client(&self) -> ErrInfo {
        match self {
            ConnError::Server { err, .. } => err.clone(),
            ConnError::Connect { .. } | ConnError::Login { .. } => ErrInfo::new(
                codes::ER_CONNECT_TO_FOREIGN_DATA_SOURCE,
                "HY000",
                self.to_string(),
            ),
            ConnError::Lost { .. } | ConnError::Protocol { .. } => {
                ErrInfo::new(codes::ER_UNKNOWN_ERROR, "HY000", self.to_string())
            }
        }
    }
}

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
