//! MariaDB error codes the proxy sends itself (`include/mysqld_error.h`).

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
