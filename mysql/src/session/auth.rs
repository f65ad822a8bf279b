//! The connection phase with a client: greeting, handshake response,
//! password check (with an auth switch for clients that open with another
//! plugin), default database.

use mysql_common::constants::CapabilityFlags;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::backend::Shared;
use crate::errors::ToClient;
use crate::handshake::{
    auth_switch_request, greeting, new_salt, parse_hello, verify_native_password, ClientHello,
    ServerIdentity, NATIVE_PASSWORD,
};
use crate::ok_err::{status, OkInfo};
use crate::packet::{PacketReader, PacketWriter, ReadError};
use shardgate_core::admission::{Admission, UserSlot};
use shardgate_core::error::{ErrorKind, ProxyError};

/// Handshake packets are small; anything bigger is not a client.
const HANDSHAKE_LIMIT: usize = 64 * 1024;

/// A client that logged in.
pub struct LoggedIn {
    pub hello: ClientHello,
    /// The logical database it selected (the first one when none).
    pub database: std::sync::Arc<crate::backend::LogicalDatabase>,
    /// Its place among its user's sessions, held while the session lasts.
    pub user_slot: UserSlot,
}

/// Why the connection phase ended without a session.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("client went away during login: {0}")]
    Gone(#[from] ReadError),
    #[error("write to client failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("refused: {0}")]
    Refused(ProxyError),
}

pub async fn login(
    shared: &Shared,
    admission: &std::sync::Arc<Admission>,
    identity: &ServerIdentity,
    connection_id: u32,
    peer_ip: &str,
    reader: &mut PacketReader<OwnedReadHalf>,
    writer: &mut PacketWriter<OwnedWriteHalf>,
) -> Result<LoggedIn, LoginError> {
    let salt = new_salt();
    writer.set_seq(0);
    writer.push(&greeting(identity, connection_id, &salt));
    writer.flush().await?;

    let (seq, payload) = reader.read_packet(HANDSHAKE_LIMIT).await?;
    writer.set_seq(seq.wrapping_add(1));
    let hello = match parse_hello(&payload) {
        Ok(hello) => hello,
        Err(e) => {
            return refuse(
                writer,
                ProxyError::new(ErrorKind::BadHandshake, format!("Bad handshake: {e}")),
            )
            .await
        }
    };
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
        return refuse(writer, err).await;
    }
    let database = match &hello.database {
        Some(name) => match shared.database(name) {
            Some(db) => db.clone(),
            None => return refuse(writer, unknown_database(name)).await,
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
        return refuse(writer, err).await;
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
    })
}

/// Error 1049 for a database the proxy does not serve.
pub fn unknown_database(name: &str) -> ProxyError {
    ProxyError::new(
        ErrorKind::UnknownDatabase,
        format!("Unknown database '{name}'"),
    )
}

async fn refuse<T>(
    writer: &mut PacketWriter<OwnedWriteHalf>,
    err: ProxyError,
) -> Result<T, LoginError> {
    writer.push(&err.to_client().encode());
    writer.flush().await?;
    Err(LoginError::Refused(err))
}
