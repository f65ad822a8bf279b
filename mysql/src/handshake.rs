//! The server side of the connection phase: the greeting the proxy sends,
//! the client's handshake response, `mysql_native_password` verification
//! and the auth switch for clients that open with another plugin.

use mysql_common::auth::plugins::mysql_native_password::scramble_native;
use mysql_common::constants::{CapabilityFlags, StatusFlags};
use mysql_common::io::ParseBuf;
use mysql_common::packets::{HandshakePacket, HandshakeResponse};
use mysql_common::proto::MySerialize;
use rand::Rng;
use shardgate_sql::text::ClientCharset;

pub const NATIVE_PASSWORD: &str = "mysql_native_password";

/// Capabilities a session works with (TLS, offered apart by [`greeting`],
/// is done when the session starts). No compression or LOCAL
/// INFILE yet; session tracking is the backend's, passed through; CLIENT_LONG_PASSWORD (CLIENT_MYSQL) is set, so
/// MariaDB clients do not expect MariaDB extended capabilities (bulk
/// execute, metadata caching) that the proxy does not speak.
pub fn server_capabilities() -> CapabilityFlags {
    CapabilityFlags::CLIENT_LONG_PASSWORD
        | CapabilityFlags::CLIENT_FOUND_ROWS
        | CapabilityFlags::CLIENT_LONG_FLAG
        | CapabilityFlags::CLIENT_CONNECT_WITH_DB
        | CapabilityFlags::CLIENT_IGNORE_SPACE
        | CapabilityFlags::CLIENT_PROTOCOL_41
        | CapabilityFlags::CLIENT_INTERACTIVE
        | CapabilityFlags::CLIENT_TRANSACTIONS
        | CapabilityFlags::CLIENT_SECURE_CONNECTION
        | CapabilityFlags::CLIENT_MULTI_STATEMENTS
        | CapabilityFlags::CLIENT_MULTI_RESULTS
        | CapabilityFlags::CLIENT_PS_MULTI_RESULTS
        | CapabilityFlags::CLIENT_PLUGIN_AUTH
        | CapabilityFlags::CLIENT_CONNECT_ATTRS
        | CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
        | CapabilityFlags::CLIENT_SESSION_TRACK
        | CapabilityFlags::CLIENT_DEPRECATE_EOF
}

/// A fresh 20-byte scramble of printable, non-NUL bytes (as MySQL makes them).
pub fn new_salt() -> [u8; 20] {
    let mut rng = rand::rng();
    let mut salt = [0u8; 20];
    for b in &mut salt {
        *b = rng.random_range(0x21..0x7F);
    }
    salt
}

/// What the proxy says about itself in the greeting.
#[derive(Debug, Clone)]
pub struct ServerIdentity {
    pub version: String,
    pub collation: u8,
}

/// The initial handshake packet payload; `tls`: the proxy offers TLS.
pub fn greeting(
    identity: &ServerIdentity,
    connection_id: u32,
    salt: &[u8; 20],
    tls: bool,
) -> Vec<u8> {
    let mut capabilities = server_capabilities();
    capabilities.set(CapabilityFlags::CLIENT_SSL, tls);
    let mut first = [0u8; 8];
    first.copy_from_slice(&salt[..8]);
    // The second part is NUL-terminated on the wire.
    let mut second = salt[8..].to_vec();
    second.push(0);
    let packet = HandshakePacket::new(
        10,
        identity.version.as_bytes(),
        connection_id,
        first,
        Some(second),
        capabilities,
        identity.collation,
        StatusFlags::SERVER_STATUS_AUTOCOMMIT,
        Some(NATIVE_PASSWORD.as_bytes()),
    );
    let mut out = Vec::with_capacity(96);
    packet.serialize(&mut out);
    out
}

/// The parts of the client's handshake response the proxy uses.
#[derive(Debug, Clone)]
pub struct ClientHello {
    pub capabilities: CapabilityFlags,
    pub collation: u8,
    pub user: String,
    pub auth_response: Vec<u8>,
    pub database: Option<String>,
    pub auth_plugin: Option<String>,
}

/// Why a handshake response was refused.
#[derive(Debug, thiserror::Error)]
pub enum HelloError {
    #[error("client does not speak protocol 4.1")]
    NoProtocol41,
    #[error("SSL/TLS is not offered by this server")]
    SslRequested,
    #[error("malformed handshake response")]
    Malformed,
}

/// Whether a client's first answer asks to start TLS (the SSL request: the
/// handshake response's first 32 bytes, with CLIENT_SSL, and nothing else).
pub fn is_ssl_request(payload: &[u8]) -> bool {
    payload.len() == 32
        && CapabilityFlags::from_bits_truncate(u32::from_le_bytes([
            payload[0], payload[1], payload[2], payload[3],
        ]))
        .contains(CapabilityFlags::CLIENT_SSL)
}

/// Parses the client's handshake response.
pub fn parse_hello(payload: &[u8]) -> Result<ClientHello, HelloError> {
    if payload.len() < 4 {
        return Err(HelloError::Malformed);
    }
    let caps = CapabilityFlags::from_bits_truncate(u32::from_le_bytes([
        payload[0], payload[1], payload[2], payload[3],
    ]));
    if !caps.contains(CapabilityFlags::CLIENT_PROTOCOL_41) {
        return Err(HelloError::NoProtocol41);
    }
    if is_ssl_request(payload) {
        return Err(HelloError::SslRequested);
    }
    let response: HandshakeResponse<'_> = ParseBuf(payload)
        .parse(())
        .map_err(|_| HelloError::Malformed)?;
    let capabilities = response.capabilities() & server_capabilities();
    Ok(ClientHello {
        capabilities,
        collation: response.collation(),
        user: String::from_utf8_lossy(response.user()).into_owned(),
        auth_response: response.scramble_buf().to_vec(),
        database: response
            .db_name()
            .filter(|db| !db.is_empty())
            .map(|db| String::from_utf8_lossy(db).into_owned()),
        auth_plugin: response
            .auth_plugin()
            .map(|p| String::from_utf8_lossy(p.as_bytes()).into_owned()),
    })
}

/// The AuthSwitchRequest asking the client to answer with `mysql_native_password`.
pub fn auth_switch_request(salt: &[u8; 20]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + NATIVE_PASSWORD.len() + 21);
    out.push(0xFE);
    out.extend_from_slice(NATIVE_PASSWORD.as_bytes());
    out.push(0);
    out.extend_from_slice(salt);
    out.push(0);
    out
}

/// Checks a `mysql_native_password` answer against the configured password.
pub fn verify_native_password(salt: &[u8; 20], password: &str, answer: &[u8]) -> bool {
    match scramble_native(salt, password.as_bytes()) {
        // scramble_native gives None for an empty password: the client sends nothing.
        None => answer.is_empty(),
        Some(expected) => constant_time_eq(&expected, answer),
    }
}

/// The character set of a collation id, as a handshake or
/// `SET NAMES` leaves it on a connection.
pub fn client_charset(collation: u8) -> ClientCharset {
    use mysql_common::collations::{Collation, CollationId};
    let collation: Collation<'static> = CollationId::from(u16::from(collation)).into();
    ClientCharset::named(collation.charset())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use mysql_common::packets::AuthPlugin;

    #[test]
    fn collations_name_their_charset() {
        assert_eq!(client_charset(45), ClientCharset::UTF8);
        assert_eq!(client_charset(33).name(), "utf8mb3");
        assert_eq!(client_charset(8), ClientCharset::named("latin1"));
        assert_eq!(client_charset(28), ClientCharset::named("gbk"));
    }

    #[test]
    fn greeting_parses_back() {
        let identity = ServerIdentity {
            version: "10.11.6-MariaDB".into(),
            collation: 45,
        };
        let salt = new_salt();
        let bytes = greeting(&identity, 7, &salt, false);
        let parsed: HandshakePacket<'_> = ParseBuf(&bytes).parse(()).unwrap();
        assert!(!parsed.capabilities().contains(CapabilityFlags::CLIENT_SSL));
        let with_tls = greeting(&identity, 7, &salt, true);
        let offered: HandshakePacket<'_> = ParseBuf(&with_tls).parse(()).unwrap();
        assert!(offered.capabilities().contains(CapabilityFlags::CLIENT_SSL));
        assert_eq!(parsed.connection_id(), 7);
        assert_eq!(parsed.nonce(), salt.to_vec());
        assert_eq!(parsed.server_version_ref(), b"10.11.6-MariaDB");
        assert_eq!(
            parsed.auth_plugin().map(|p| p.as_bytes().to_vec()),
            Some(NATIVE_PASSWORD.as_bytes().to_vec())
        );
    }

    #[test]
    fn native_password_round_trip() {
        let salt = new_salt();
        let answer = scramble_native(&salt, b"secret").unwrap();
        assert!(verify_native_password(&salt, "secret", &answer));
        assert!(!verify_native_password(&salt, "other", &answer));
        assert!(verify_native_password(&salt, "", &[]));
        assert!(!verify_native_password(&salt, "secret", &[]));
    }

    #[test]
    fn hello_parses_user_db_and_plugin() {
        let salt = new_salt();
        let answer = scramble_native(&salt, b"pw").unwrap();
        let response = HandshakeResponse::new(
            Some(&answer[..]),
            (10, 11, 0),
            Some(&b"app"[..]),
            Some(&b"wework"[..]),
            Some(AuthPlugin::MysqlNativePassword),
            CapabilityFlags::CLIENT_PROTOCOL_41
                | CapabilityFlags::CLIENT_SECURE_CONNECTION
                | CapabilityFlags::CLIENT_DEPRECATE_EOF,
            None,
            1 << 24,
        );
        let mut bytes = Vec::new();
        response.serialize(&mut bytes);
        let hello = parse_hello(&bytes).unwrap();
        assert_eq!(hello.user, "app");
        assert_eq!(hello.database.as_deref(), Some("wework"));
        assert_eq!(hello.auth_plugin.as_deref(), Some(NATIVE_PASSWORD));
        assert!(verify_native_password(&salt, "pw", &hello.auth_response));
        assert!(hello
            .capabilities
            .contains(CapabilityFlags::CLIENT_DEPRECATE_EOF));
    }
}
