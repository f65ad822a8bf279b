//! Errors of the backend layer and how every refusal maps to what a MySQL
//! client understands: an error code, a SQLSTATE and a message that says
//! what to change.

use crate::wire::ok_err::ErrInfo;
use crate::wire::packet::ReadError;
use shardgate_sql::shard::PlanError;

/// MySQL error codes the proxy sends itself.
pub mod codes {
    pub const ER_CON_COUNT_ERROR: u16 = 1040;
    pub const ER_HANDSHAKE_ERROR: u16 = 1043;
    pub const ER_ACCESS_DENIED_ERROR: u16 = 1045;
    pub const ER_UNKNOWN_COM_ERROR: u16 = 1047;
    pub const ER_BAD_DB_ERROR: u16 = 1049;
    pub const ER_PARSE_ERROR: u16 = 1064;
    pub const ER_UNKNOWN_ERROR: u16 = 1105;
    pub const ER_NO_SUCH_TABLE: u16 = 1146;
    pub const ER_NOT_ALLOWED_COMMAND: u16 = 1148;
    pub const ER_NET_PACKET_TOO_LARGE: u16 = 1153;
    pub const ER_UNKNOWN_STMT_HANDLER: u16 = 1243;
    pub const ER_LOCK_WAIT_TIMEOUT: u16 = 1205;
    pub const ER_LOCK_DEADLOCK: u16 = 1213;
    pub const ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION: u16 = 1792;
    pub const ER_NOT_SUPPORTED_YET: u16 = 1235;
    pub const ER_UNSUPPORTED_PS: u16 = 1295;
    pub const ER_TABLE_DEF_CHANGED: u16 = 1412;
    pub const ER_CONNECT_TO_FOREIGN_DATA_SOURCE: u16 = 1429;
    pub const ER_BAD_NULL_ERROR: u16 = 1048;
    pub const ER_WRONG_ARGUMENTS: u16 = 1210;
    pub const ER_NO_DEFAULT_FOR_FIELD: u16 = 1364;
    pub const ER_NO_PARTITION_FOR_GIVEN_VALUE: u16 = 1526;
}

/// A statement the proxy will not run because it cannot run it correctly
/// across data nodes; the message names the tables and what to change.
pub fn not_supported(message: impl Into<String>) -> ErrInfo {
    ErrInfo::new(codes::ER_NOT_SUPPORTED_YET, "42000", message)
}

/// The planner's refusals as MariaDB words the nearest of its own.
impl From<&PlanError> for ErrInfo {
    fn from(error: &PlanError) -> ErrInfo {
        let message = error.to_string();
        match error {
            PlanError::NotSupported(_) => not_supported(message),
            PlanError::NullShardingValue { .. } => {
                ErrInfo::new(codes::ER_BAD_NULL_ERROR, "23000", message)
            }
            PlanError::MissingShardingColumn { .. } => {
                ErrInfo::new(codes::ER_NO_DEFAULT_FOR_FIELD, "HY000", message)
            }
            PlanError::Unroutable(_) => {
                ErrInfo::new(codes::ER_NO_PARTITION_FOR_GIVEN_VALUE, "HY000", message)
            }
            PlanError::BadArguments(_) => ErrInfo::new(codes::ER_WRONG_ARGUMENTS, "HY000", message),
            PlanError::KeyGeneration { .. } => {
                ErrInfo::new(codes::ER_UNKNOWN_ERROR, "HY000", message)
            }
        }
    }
}

impl From<PlanError> for ErrInfo {
    fn from(error: PlanError) -> ErrInfo {
        ErrInfo::from(&error)
    }
}

/// A failure talking to one data source.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
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
        BackendError::Lost {
            ds: ds.to_owned(),
            reason: err.to_string(),
        }
    }

    /// The data source did not answer at all (refused, reset, closed):
    /// it is down or cut off, not merely busy or refusing the statement.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            BackendError::Connect { .. } | BackendError::Lost { .. }
        )
    }

    /// Maps a read failure on a backend connection.
    pub fn from_read(ds: &str, err: ReadError) -> Self {
        Self::lost(ds, err)
    }

    /// The error the client gets.
    pub fn to_client(&self) -> ErrInfo {
        match self {
            BackendError::Server { err, .. } => err.clone(),
            BackendError::Connect { .. } | BackendError::Login { .. } => ErrInfo::new(
                codes::ER_CONNECT_TO_FOREIGN_DATA_SOURCE,
                "HY000",
                self.to_string(),
            ),
            BackendError::PoolExhausted { .. } => {
                ErrInfo::new(codes::ER_CON_COUNT_ERROR, "08004", self.to_string())
            }
            BackendError::Deadlock { .. } => {
                ErrInfo::new(codes::ER_LOCK_DEADLOCK, "40001", self.to_string())
            }
            BackendError::Lost { .. } | BackendError::Protocol { .. } => {
                ErrInfo::new(codes::ER_UNKNOWN_ERROR, "HY000", self.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapped(error: PlanError) -> (u16, String, String) {
        let err = ErrInfo::from(&error);
        (
            err.code,
            String::from_utf8_lossy(&err.sqlstate).into_owned(),
            err.message,
        )
    }

    #[test]
    fn plan_errors_map_to_the_codes_mariadb_gives_alike_failures() {
        let null = PlanError::NullShardingValue {
            table: "users".into(),
            column: "user_id".into(),
        };
        assert_eq!(
            mapped(null),
            (
                1048,
                "23000".into(),
                "Column 'user_id' cannot be null: it is the sharding column of table 'users'"
                    .into()
            )
        );
        let missing = PlanError::MissingShardingColumn {
            table: "users".into(),
            column: "user_id".into(),
        };
        assert_eq!(mapped(missing).0, 1364);
        assert_eq!(
            mapped(PlanError::NotSupported("joins".into())),
            (1235, "42000".into(), "joins".into())
        );
        assert_eq!(
            mapped(PlanError::Unroutable("no node for 2023".into())),
            (
                1526,
                "HY000".into(),
                "no node for 2023; nothing was written".into()
            )
        );
        assert_eq!(
            mapped(PlanError::BadArguments(
                "Incorrect arguments to LIMIT".into()
            ))
            .0,
            1210
        );
        let key = PlanError::KeyGeneration {
            table: "orders".into(),
            reason: "clock moved back".into(),
        };
        assert_eq!(mapped(key).0, 1105);
    }
}
