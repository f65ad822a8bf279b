//! The connection phase with a client: greeting, handshake response,
//! password check (with an auth switch for clients that open with another
//! plugin), default database.

use mysql_common::constants::CapabilityFlags;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::backend::Shared;
use crate::errors::ToClient;
use crate::handshake::{
    auth_switch_request, greeting, is_ssl_request, new_salt, parse_hello, verify_native_password,
    ClientHello, ServerIdentity, NATIVE_PASSWORD,
};
use crate::ok_err::{status, OkInfo};
use crate::packet::{frame_into, read_packet_exact, PacketReader, PacketWriter, ReadError};
use shardgate_core::admission::{Admission, UserSlot};
use shardgate_core::error::{ErrorKind, ProxyError};
use shardgate_core::net::{split_plain, split_tls, ReadHalf, WriteHalf};

/// Handshake packets are small; anything bigger is not a client.
const HANDSHAKE_LIMIT: usize = 64 * 1024;

/// A client that logged in.
pub struct LoggedIn {
    pub hello: ClientHello,
    /// The logical database it selected (the first one when none).
    pub database: std::sync::Arc<crate::backend::LogicalDatabase>,
    /// Its place among its user's sessions, held while the session lasts.
    pub user_slot: UserSlot,
    /// The connection, over TLS when the client asked for it.
    pub reader: PacketReader<ReadHalf>,
    pub writer: PacketWriter<WriteHalf>,
}

/// Why the connection phase ended without a session.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("client went away during login: {0}")]
    Gone(#[from] ReadError),
    #[error("write to client failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
    #[error("refused: {0}")]
    Refused(ProxyError),
}

pub async fn login(
    shared: &Shared,
    admission: &std::sync::Arc<Admission>,
    identity: &ServerIdentity,
    connection_id: u32,
    peer_ip: &str,
    mut stream: TcpStream,
) -> Result<LoggedIn, LoginError> {
    let salt = new_salt();
    let mut framed = Vec::with_capacity(128);
    let offer = greeting(identity, connection_id, &salt, shared.tls.is_some());
    frame_into(&mut framed, 0, &offer);
    stream.write_all(&framed).await?;

    // Read exactly: after an SSL request the next bytes are TLS's.
    let (seq, first) = read_packet_exact(&mut stream, HANDSHAKE_LIMIT).await?;
    let (mut reader, mut writer, seq, payload, secure) = match &shared.tls {
        Some(acceptor) if is_ssl_request(&first) => {
            let tls = acceptor.accept(stream).await.map_err(LoginError::Tls)?;
            let (r, w) = split_tls(tls);
            let mut reader = PacketReader::new(r);
            let (seq, payload) = reader.read_packet(HANDSHAKE_LIMIT).await?;
            (reader, PacketWriter::new(w), seq, payload.to_vec(), true)
        }
        _ => {
            let (r, w) = split_plain(stream);
            (
                PacketReader::new(r),
                PacketWriter::new(w),
                seq,
                first,
                false,
            )
        }
    };
    writer.set_seq(seq.wrapping_add(1));
    let hello = match parse_hello(&payload) {
        Ok(hello) => hello,
        Err(e) => {
            let err = ProxyError::new(ErrorKind::BadHandshake, format!("Bad handshake: {e}"));
            return refuse(&mut writer, err).await;
        }
    };
    if shared.config.server.require_secure_transport && !secure {
        // MariaDB's answer to a client in the clear, with the reason.
        let err = ProxyError::new(
            ErrorKind::InsecureTransport,
            format!(
                "Access denied for user '{}'@'{peer_ip}': connections must use TLS (server.require_secure_transport)",
                hello.user
            ),
        );
        return refuse(&mut writer, err).await;
    }
    let user = shared
        .config
        .server
        .users
        .iter()
        .find(|u| u.name == hello.user);
    let mut answer = hello.auth_response.clone();
    let switch = hello
        .capabilities
        .contains(CapabilityFlags::CLIENT_PLUGIN_AUTH)
        && hello.auth_plugin.as_deref() != Some(NATIVE_PASSWORD);
    if switch && user.is_some() {
        writer.push(&auth_switch_request(&salt));
        writer.flush().await?;
        let (seq, payload) = reader.read_packet(HANDSHAKE_LIMIT).await?;
        writer.set_seq(seq.wrapping_add(1));
        answer = payload.to_vec();
    }
    let authenticated = user.is_some_and(|u| verify_native_password(&salt, &u.password, &answer));
    if !authenticated {
        let using = if answer.is_empty() { "NO" } else { "YES" };
        let err = ProxyError::new(
            ErrorKind::AccessDenied,
            format!(
                "Access denied for user '{}'@'{}' (using password: {using})",
                hello.user, peer_ip
            ),
        );
        return refuse(&mut writer, err).await;
    }
    let database = match &hello.database {
        Some(name) => match shared.database(name) {
            Some(db) => db.clone(),
            None => return refuse(&mut writer, unknown_database(name)).await,
        },
        None => shared.first_database().clone(),
    };
    let limit = user.and_then(|u| u.session_limit(&shared.config.server));
    let Some(user_slot) = admission.admit_user(&hello.user, limit) else {
        // MariaDB's words; the limit is ShardGate's.
        let err = ProxyError::new(
            ErrorKind::TooManyUserConnections,
            format!(
                "User {} already has more than 'max_user_connections' active connections (ShardGate's users[].max_connections or server.max_user_connections)",
                hello.user
            ),
        );
        return refuse(&mut writer, err).await;
    };
    writer.push(
        &OkInfo {
            status: status::AUTOCOMMIT,
            ..OkInfo::default()
        }
        .encode(),
    );
    writer.flush().await?;
    Ok(LoggedIn {
        hello,
        database,
        user_slot,
        reader,
        writer,
    })
}

/// Error 1049 for a database the proxy does not serve.
pub fn unknown_database(name: &str) -> ProxyError {
    ProxyError::new(
        ErrorKind::UnknownDatabase,
        format!("Unknown database '{name}'"),
    )
}

async fn refuse<T>(writer: &mut PacketWriter<WriteHalf>, err: ProxyError) -> Result<T, LoginError> {
    writer.push(&err.to_client().encode());
    writer.flush().await?;
    Err(LoginError::Refused(err))
}
