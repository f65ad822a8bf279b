//! Errors of the backend layer, in terms of data sources and pools, not of
//! a wire protocol: a data source that cannot be reached, a pool that is
//! exhausted, a server's own error. Each protocol's front end maps them to
//! what its clients understand, once.

use std::fmt;

/// An error a database server sent: its SQLSTATE, the vendor's own code
/// where it has one (MariaDB's error numbers; 0 where there is none), and
/// its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbError {
    pub code: u16,
    pub sqlstate: [u8; 5],
    pub message: String,
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ERROR {} ({}): {}",
            self.code,
            String::from_utf8_lossy(&self.sqlstate),
            self.message
        )
    }
}

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
    Login { ds: String, err: DbError },
    #[error("connection to data source {ds} lost: {reason}")]
    Lost { ds: String, reason: String },
    #[error("unexpected reply from data source {ds}: {what}")]
    Protocol { ds: String, what: String },
    #[error("{err}")]
    Server { ds: String, err: DbError },
}

impl ConnError {
    pub fn lost(ds: &str, err: impl fmt::Display) -> Self {
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
}

/// A failure talking to one data source: on its connection, or waiting
/// for one from its pool.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(transparent)]
    Conn(#[from] ConnError),
    #[error("pool for {ds} exhausted ({in_use}/{max} in use, waited {}); raise the pool's max_size (or acquire_timeout_ms) in data_sources.{}.pool", seconds(.waited), data_source_of(.ds))]
    PoolExhausted {
        ds: String,
        in_use: usize,
        max: usize,
        waited: std::time::Duration,
    },
    #[error("no usable replica for reads on {ds} ({why}); data_sources.{ds}.read.fallback = \"error\" forbids reading the primary")]
    NoUsableReplica { ds: String, why: String },
    #[error("Deadlock found when trying to get a connection to {ds} ({in_use}/{max} in use by transactions waiting on each other); try restarting transaction")]
    Deadlock {
        ds: String,
        in_use: usize,
        max: usize,
    },
}

/// `5s`, `0.25s`: a wait as people write it.
fn seconds(d: &std::time::Duration) -> String {
    let text = format!("{:.1}", d.as_secs_f64());
    format!("{}s", text.strip_suffix(".0").unwrap_or(&text))
}

/// `ds0` for the pool `ds0.replica1`.
fn data_source_of(pool: &str) -> &str {
    pool.split('.').next().unwrap_or(pool)
}

impl BackendError {
    pub fn lost(ds: &str, err: impl fmt::Display) -> Self {
        ConnError::lost(ds, err).into()
    }

    /// The data source did not answer at all (refused, reset, closed):
    /// it is down or cut off, not merely busy or refusing the statement.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, BackendError::Conn(e) if e.is_unreachable())
    }
}
