//! The errors of the layers below the protocol (the planner's refusals, the
//! backend layer's failures) as a MySQL client understands them: an error
//! code, a SQLSTATE and the message. Mapped here, once, at the protocol's
//! edge.

use crate::codes;
use crate::ok_err::ErrInfo;
use shardgate_core::error::{BackendError, ConnError};
use shardgate_sql::shard::PlanError;

/// The ERR packet's fields a client gets for an error of a lower layer.
pub trait ToClient {
    fn to_client(&self) -> ErrInfo;
}

/// The server's own error as it sent it, or one naming the data source the
/// proxy could not use.
impl ToClient for ConnError {
    fn to_client(&self) -> ErrInfo {
        match self {
            ConnError::Server { err, .. } => err.into(),
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

impl ToClient for BackendError {
    fn to_client(&self) -> ErrInfo {
        match self {
            BackendError::Conn(e) => e.to_client(),
            BackendError::NoUsableReplica { .. } => ErrInfo::new(
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
        }
    }
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
