//! Errors of the backend layer (a data source that cannot be reached, a
//! pool that is exhausted, a server's own error) and the MySQL error each
//! becomes for the client.

use shardgate_mysql::backend::ConnError;
use shardgate_mysql::codes;
use shardgate_mysql::ok_err::ErrInfo;

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
    pub fn lost(ds: &str, err: impl std::fmt::Display) -> Self {
        ConnError::lost(ds, err).into()
    }

    /// The data source did not answer at all (refused, reset, closed):
    /// it is down or cut off, not merely busy or refusing the statement.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, BackendError::Conn(e) if e.is_unreachable())
    }

    /// The error the client gets.
    pub fn to_client(&self) -> ErrInfo {
        match self {
            BackendError::Conn(e) => e.to_client(),
            BackendError::PoolExhausted { .. } => {
                ErrInfo::new(codes::ER_CON_COUNT_ERROR, "08004", self.to_string())
            }
            BackendError::Deadlock { .. } => {
                ErrInfo::new(codes::ER_LOCK_DEADLOCK, "40001", self.to_string())
            }
        }
    }
}
