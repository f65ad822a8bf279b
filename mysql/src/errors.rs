//! Errors in the proxy's terms (the core's [`ProxyError`] and the errors
//! that become one) as a MySQL client understands them: an error code, a
//! SQLSTATE and the message. Mapped here, once, at the protocol's edge.

use crate::codes;
use crate::ok_err::ErrInfo;
use shardgate_core::error::{BackendError, ConnError, DbError, ErrorKind, ProxyError};
use shardgate_sql::shard::PlanError;

/// The ERR packet's fields a client gets for an error.
pub trait ToClient {
    fn to_client(&self) -> ErrInfo;
}

/// Each kind as MariaDB words the nearest failure of its own; a data
/// source's error goes out as it came.
impl ToClient for ProxyError {
    fn to_client(&self) -> ErrInfo {
        let (code, sqlstate) = match self.kind {
            ErrorKind::Server { code, sqlstate } => {
                return ErrInfo {
                    code,
                    sqlstate,
                    message: self.message.clone(),
                }
            }
            ErrorKind::NotSupported => (codes::ER_NOT_SUPPORTED_YET, "42000"),
            ErrorKind::NullShardingValue => (codes::ER_BAD_NULL_ERROR, "23000"),
            ErrorKind::MissingShardingValue => (codes::ER_NO_DEFAULT_FOR_FIELD, "HY000"),
            ErrorKind::Unroutable => (codes::ER_NO_PARTITION_FOR_GIVEN_VALUE, "HY000"),
            ErrorKind::BadArguments => (codes::ER_WRONG_ARGUMENTS, "HY000"),
            ErrorKind::DataSourceUnreachable => (codes::ER_CONNECT_TO_FOREIGN_DATA_SOURCE, "HY000"),
            ErrorKind::DataSourceLost | ErrorKind::Internal => (codes::ER_UNKNOWN_ERROR, "HY000"),
            ErrorKind::PoolExhausted => (codes::ER_CON_COUNT_ERROR, "08004"),
            ErrorKind::PoolDeadlock => (codes::ER_LOCK_DEADLOCK, "40001"),
            // What a client does about a lock it waited too long for
            // (retry the statement) is what it should do here.
            ErrorKind::PausedTooLong => (codes::ER_LOCK_WAIT_TIMEOUT, "HY000"),
            ErrorKind::RulesChanged => (codes::ER_TABLE_DEF_CHANGED, "HY000"),
            ErrorKind::ReadOnlyTransaction => {
                (codes::ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION, "25006")
            }
            ErrorKind::UnknownCommand => (codes::ER_UNKNOWN_COM_ERROR, "08S01"),
            ErrorKind::UnknownStatement => (codes::ER_UNKNOWN_STMT_HANDLER, "HY000"),
            ErrorKind::MalformedPacket => (codes::ER_MALFORMED_PACKET, "HY000"),
            ErrorKind::NoOpenCursor => (codes::ER_STMT_HAS_NO_OPEN_CURSOR, "HY000"),
            ErrorKind::PacketTooLarge => (codes::ER_NET_PACKET_TOO_LARGE, "08S01"),
            ErrorKind::LongDataTooLong => (codes::ER_UNKNOWN_ERROR, "HY000"),
            ErrorKind::TooManyPreparedStatements => {
                (codes::ER_MAX_PREPARED_STMT_COUNT_REACHED, "42000")
            }
            ErrorKind::AdminNotPrepared => (codes::ER_UNSUPPORTED_PS, "HY000"),
            ErrorKind::AdminSyntax => (codes::ER_PARSE_ERROR, "42000"),
            ErrorKind::UnknownTable => (codes::ER_NO_SUCH_TABLE, "42S02"),
            ErrorKind::BadHandshake => (codes::ER_HANDSHAKE_ERROR, "08S01"),
            // MariaDB 10.11 refuses a client in the clear under
            // require_secure_transport with 1045, as a wrong password.
            ErrorKind::AccessDenied | ErrorKind::InsecureTransport => {
                (codes::ER_ACCESS_DENIED_ERROR, "28000")
            }
            ErrorKind::TooManyUserConnections => (codes::ER_TOO_MANY_USER_CONNECTIONS, "42000"),
            ErrorKind::UnknownDatabase => (codes::ER_BAD_DB_ERROR, "42000"),
            ErrorKind::DatabaseAccessDenied => (codes::ER_DBACCESS_DENIED_ERROR, "42000"),
            ErrorKind::TableAccessDenied => (codes::ER_TABLEACCESS_DENIED_ERROR, "42000"),
            ErrorKind::ReadOnlyUser => (codes::ER_OPTION_PREVENTS_STATEMENT, "HY000"),
        };
        ErrInfo::new(code, sqlstate, self.message.clone())
    }
}

impl ToClient for ConnError {
    fn to_client(&self) -> ErrInfo {
        ProxyError::from(self).to_client()
    }
}

impl ToClient for BackendError {
    fn to_client(&self) -> ErrInfo {
        ProxyError::from(self).to_client()
    }
}

impl ToClient for PlanError {
    fn to_client(&self) -> ErrInfo {
        ProxyError::from(self).to_client()
    }
}

/// A data source's ERR packet (`payload`), relayed; one that cannot be read
/// is a broken reply.
pub fn relayed(payload: &[u8]) -> ProxyError {
    ErrInfo::parse(payload).map_or_else(
        || {
            ProxyError::new(
                ErrorKind::DataSourceLost,
                "malformed error packet from a data source",
            )
        },
        ProxyError::from,
    )
}

/// A data source's ERR packet, relayed.
impl From<ErrInfo> for ProxyError {
    fn from(err: ErrInfo) -> ProxyError {
        ProxyError::server(DbError::from(err))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapped(error: PlanError) -> (u16, String, String) {
        let err = error.to_client();
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

    #[test]
    fn a_data_sources_error_goes_to_the_client_as_it_came() {
        let sent = ErrInfo::new(1062, "23000", "Duplicate entry '1' for key 'PRIMARY'");
        let relayed = ProxyError::from(sent.clone());
        assert_eq!(relayed.to_client(), sent);
        assert_eq!(relayed.metric_label(), "backend");
        let deadlock = ProxyError::from(ErrInfo::new(
            1213,
            "40001",
            "Deadlock found when trying to get lock; try restarting transaction",
        ));
        assert!(deadlock.rolled_back_transaction());
        assert_eq!(deadlock.metric_label(), "deadlock");
    }

    #[test]
    fn backend_failures_name_the_data_source_with_mariadbs_codes() {
        let refused = BackendError::from(ConnError::Connect {
            ds: "ds2".into(),
            addr: "127.0.0.1:13308".into(),
            source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        });
        let err = refused.to_client();
        assert_eq!((err.code, &err.sqlstate), (1429, b"HY000"));
        assert!(err.message.contains("ds2"), "{}", err.message);
        let no_tls = BackendError::from(ConnError::Tls {
            ds: "ds3".into(),
            addr: "127.0.0.1:13309".into(),
            source: Box::new(
                shardgate_core::data_source_tls::DataSourceTlsError::NotOffered(
                    shardgate_rules::config::SslMode::Required,
                ),
            ),
        });
        let err = no_tls.to_client();
        assert_eq!((err.code, &err.sqlstate), (1429, b"HY000"));
        assert!(
            err.message.starts_with("TLS to data source ds3 "),
            "{}",
            err.message
        );
        let exhausted = BackendError::PoolExhausted {
            ds: "ds1".into(),
            in_use: 4,
            max: 4,
            waited: std::time::Duration::from_secs(5),
        };
        assert_eq!(exhausted.to_client().code, 1040);
        assert_eq!(
            ProxyError::from(&exhausted).metric_label(),
            "pool_exhausted"
        );
        let deadlock = BackendError::Deadlock {
            ds: "ds1".into(),
            in_use: 2,
            max: 2,
        };
        let as_proxy = ProxyError::from(&deadlock);
        assert!(as_proxy.rolled_back_transaction());
        assert_eq!(deadlock.to_client().code, 1213);
    }
}
