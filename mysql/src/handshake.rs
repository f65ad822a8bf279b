//! The server side of the connection phase's packets: the greeting the
//! proxy sends, the SSL request and the client's handshake response, and
//! the auth switch request (the plugins' checks are in `auth`).

use mysql_common::constants::{CapabilityFlags, StatusFlags};
use mysql_common::io::ParseBuf;
use mysql_common::packets::{HandshakePacket, HandshakeResponse};
use mysql_common::proto::MySerialize;
use rand::Rng;
use shardgate_sql::text::ClientCharset;

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
        Some(crate::auth::native::NAME.as_bytes()),
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

/// COM_CHANGE_USER's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeUser {
    pub user: String,
    pub auth_response: Vec<u8>,
    pub database: Option<String>,
    /// The collation the client now speaks, when it says.
    pub collation: Option<u8>,
    pub auth_plugin: Option<String>,
}

/// Parses COM_CHANGE_USER (its command byte first) as a client with
/// `capabilities` writes it: user NUL, the answer (length-prefixed under
/// CLIENT_SECURE_CONNECTION), database NUL, then optionally the collation
/// (2 bytes), the plugin name NUL and connection attributes (ignored).
pub fn parse_change_user(
    packet: &[u8],
    capabilities: CapabilityFlags,
) -> Result<ChangeUser, HelloError> {
    fn until_nul<'a>(rest: &mut &'a [u8]) -> Result<&'a [u8], HelloError> {
        let end = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(HelloError::Malformed)?;
        let (field, tail) = rest.split_at(end);
        *rest = &tail[1..];
        Ok(field)
    }
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let mut rest = packet.get(1..).ok_or(HelloError::Malformed)?;
    let user = text(until_nul(&mut rest)?);
    let auth_response = if capabilities.contains(CapabilityFlags::CLIENT_SECURE_CONNECTION) {
        let (&len, tail) = rest.split_first().ok_or(HelloError::Malformed)?;
        let len = usize::from(len);
        let answer = tail.get(..len).ok_or(HelloError::Malformed)?;
        rest = &tail[len..];
        answer.to_vec()
    } else {
        until_nul(&mut rest)?.to_vec()
    };
    let database = Some(text(until_nul(&mut rest)?)).filter(|db| !db.is_empty());
    let mut collation = None;
    if let [low, _high, tail @ ..] = rest {
        collation = Some(*low);
        rest = tail;
    }
    let auth_plugin =
        if capabilities.contains(CapabilityFlags::CLIENT_PLUGIN_AUTH) && !rest.is_empty() {
            Some(text(until_nul(&mut rest)?))
        } else {
            None
        };
    Ok(ChangeUser {
        user,
        auth_response,
        database,
        collation,
        auth_plugin,
    })
}

/// The AuthSwitchRequest asking the client to answer `challenge` with
/// `plugin`.
pub fn auth_switch_request(plugin: &str, challenge: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + plugin.len() + challenge.len());
    out.push(0xFE);
    out.extend_from_slice(plugin.as_bytes());
    out.push(0);
    out.extend_from_slice(challenge);
    out
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

/// The character set of a collation id, as a handshake or
/// `SET NAMES` leaves it on a connection.
pub fn client_charset(collation: u8) -> ClientCharset {
    use mysql_common::collations::{Collation, CollationId};
    let collation: Collation<'static> = CollationId::from(u16::from(collation)).into();
    ClientCharset::named(collation.charset())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::native;
    use mysql_common::auth::plugins::mysql_native_password::scramble_native;
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
            Some(crate::auth::native::NAME.as_bytes().to_vec())
        );
    }

    #[test]
    fn change_user_parses_as_clients_write_it() {
        let caps = CapabilityFlags::CLIENT_PROTOCOL_41
            | CapabilityFlags::CLIENT_SECURE_CONNECTION
            | CapabilityFlags::CLIENT_PLUGIN_AUTH;
        let mut packet = vec![0x11];
        packet.extend_from_slice(b"app\0");
        packet.push(3);
        packet.extend_from_slice(b"\x01\x02\x03");
        packet.extend_from_slice(b"wework\0");
        packet.extend_from_slice(&[45, 0]);
        packet.extend_from_slice(b"mysql_native_password\0");
        packet.extend_from_slice(&[0x00]); // no attributes
        let parsed = parse_change_user(&packet, caps).unwrap();
        assert_eq!(
            parsed,
            ChangeUser {
                user: "app".into(),
                auth_response: vec![1, 2, 3],
                database: Some("wework".into()),
                collation: Some(45),
                auth_plugin: Some("mysql_native_password".into()),
            }
        );
        // An older client: no collation, no plugin, no database.
        let short = [&[0x11][..], b"app\0", &[0], b"\0"].concat();
        let parsed = parse_change_user(&short, caps).unwrap();
        assert_eq!(
            (parsed.database, parsed.collation, parsed.auth_plugin),
            (None, None, None)
        );
        // Cut short anywhere: malformed, never a panic.
        for end in 0..packet.len() - 26 {
            let _ = parse_change_user(&packet[..end], caps);
        }
        assert!(parse_change_user(&packet[..6], caps).is_err());
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
        assert_eq!(hello.auth_plugin.as_deref(), Some(native::NAME));
        assert!(native::verify(
            &salt,
            &native::stored_hash(b"pw"),
            &hello.auth_response
        ));
        assert!(hello
            .capabilities
            .contains(CapabilityFlags::CLIENT_DEPRECATE_EOF));
    }
}
