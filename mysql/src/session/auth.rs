//! The connection phase with a client: greeting, TLS when the client asks
//! for it, handshake response, the proof of the user's credential (see
//! `authenticate`), its access and default database, its session slot.

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::auth::caching_sha2::FastAuthCache;
use crate::backend::Shared;
use crate::errors::ToClient;
use crate::handshake::{
    greeting, is_ssl_request, new_salt, parse_hello, ClientHello, ServerIdentity,
};
use crate::ok_err::{status, OkInfo};
use crate::packet::{frame_into, read_packet_exact, PacketReader, PacketWriter, ReadError};
use shardgate_core::access::UserAccess;
use shardgate_core::admission::{Admission, UserSlot};
use shardgate_core::error::{ErrorKind, ProxyError};
use shardgate_core::net::{split_plain, split_tls, ReadHalf, WriteHalf};
use shardgate_rules::config::UserConfig;

use super::authenticate::{authenticate, Claim, Exchange, Refused, LOGIN_PACKET_LIMIT};

/// What the logins on one listener share.
pub struct Front {
    /// What the greeting says of the server.
    pub identity: ServerIdentity,
    /// caching_sha2_password's digests learnt from full authentications.
    pub fast_auth: FastAuthCache,
}

/// A client that logged in.
pub struct LoggedIn {
    pub hello: ClientHello,
    /// The logical database it selected (the first it may use when none).
    pub database: std::sync::Arc<crate::backend::LogicalDatabase>,
    /// What its user may do, as the configuration said at login.
    pub access: UserAccess,
    /// Its place among its user's sessions, held while the session lasts.
    pub user_slot: UserSlot,
    /// The challenge its answers were checked against (COM_CHANGE_USER's
    /// are too).
    pub challenge: [u8; 20],
    /// Whether the connection is over TLS.
    pub secure: bool,
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
    front: &Front,
    connection_id: u32,
    peer_ip: &str,
    stream: TcpStream,
) -> Result<LoggedIn, LoginError> {
    let salt = new_salt();
    let offer = greeting(&front.identity, connection_id, &salt, shared.tls.is_some());
    let Opened {
        mut reader,
        mut writer,
        seq,
        payload,
        secure,
    } = open(shared, stream, &offer).await?;
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
    let claim = Claim {
        user: &hello.user,
        capabilities: hello.capabilities,
        plugin: hello.auth_plugin.as_deref(),
        answer: &hello.auth_response,
    };
    let mut exchange = Exchange {
        reader: &mut reader,
        writer: &mut writer,
        challenge: &salt,
        secure,
        fast_auth: &front.fast_auth,
    };
    let user = match authenticate(&mut exchange, &claim, &shared.config.server.users).await? {
        Ok(user) => user,
        Err(refused) => return refuse(&mut writer, refusal(refused, &hello.user, peer_ip)).await,
    };
    let access = UserAccess::new(user, peer_ip);
    let database = match login_database(shared, &access, hello.database.as_deref()) {
        Ok(db) => db,
        Err(e) => return refuse(&mut writer, e).await,
    };
    let user_slot = match admit(admission, shared, user) {
        Ok(slot) => slot,
        Err(err) => return refuse(&mut writer, err).await,
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
        access,
        user_slot,
        challenge: salt,
        secure,
        reader,
        writer,
    })
}

/// A connection past the greeting: over TLS when the client asked for it,
/// with the client's handshake response.
struct Opened {
    reader: PacketReader<ReadHalf>,
    writer: PacketWriter<WriteHalf>,
    /// The handshake response's sequence id and payload.
    seq: u8,
    payload: Vec<u8>,
    secure: bool,
}

/// Greets the client with `offer` and reads its answer; an SSL request
/// (when TLS is offered) is answered with the TLS handshake, and the
/// handshake response read over TLS.
async fn open(shared: &Shared, mut stream: TcpStream, offer: &[u8]) -> Result<Opened, LoginError> {
    let mut framed = Vec::with_capacity(128);
    frame_into(&mut framed, 0, offer);
    stream.write_all(&framed).await?;
    // Read exactly: after an SSL request the next bytes are TLS's.
    let (seq, first) = read_packet_exact(&mut stream, LOGIN_PACKET_LIMIT).await?;
    match &shared.tls {
        Some(acceptor) if is_ssl_request(&first) => {
            let tls = acceptor.accept(stream).await.map_err(LoginError::Tls)?;
            let (r, w) = split_tls(tls);
            let mut reader = PacketReader::new(r);
            let (seq, payload) = reader.read_packet(LOGIN_PACKET_LIMIT).await?;
            Ok(Opened {
                reader,
                writer: PacketWriter::new(w),
                seq,
                payload: payload.to_vec(),
                secure: true,
            })
        }
        _ => {
            let (r, w) = split_plain(stream);
            Ok(Opened {
                reader: PacketReader::new(r),
                writer: PacketWriter::new(w),
                seq,
                payload: first,
                secure: false,
            })
        }
    }
}

/// `user`'s place among its sessions, or 1203 when it has as many as it
/// may (`users[].max_connections`, `server.max_user_connections`).
pub(super) fn admit(
    admission: &std::sync::Arc<Admission>,
    shared: &Shared,
    user: &UserConfig,
) -> Result<UserSlot, ProxyError> {
    let limit = user.session_limit(&shared.config.server);
    admission.admit_user(&user.name, limit).ok_or_else(|| {
        // MariaDB's words; the limit is ShardGate's.
        ProxyError::new(
            ErrorKind::TooManyUserConnections,
            format!(
                "User {} already has more than 'max_user_connections' active connections (ShardGate's users[].max_connections or server.max_user_connections)",
                user.name
            ),
        )
    })
}

/// The error for a proof that failed.
pub fn refusal(refused: Refused, user: &str, peer_ip: &str) -> ProxyError {
    let message = match refused {
        Refused::Denied { used_password } => {
            let using = if used_password { "YES" } else { "NO" };
            format!("Access denied for user '{user}'@'{peer_ip}' (using password: {using})")
        }
        // MariaDB's code; the reason and the way out in the message.
        Refused::NeedsTls => format!(
            "Access denied for user '{user}'@'{peer_ip}': caching_sha2_password needs the password sent over TLS (server.tls) the first time it logs in after a start or a change of its password_hash"
        ),
    };
    ProxyError::new(ErrorKind::AccessDenied, message)
}

type Database = std::sync::Arc<crate::backend::LogicalDatabase>;

/// The logical database a login (or COM_CHANGE_USER) lands on: the one it names, when the user
/// may use it (checked first, so that a restricted user learns nothing of
/// the others, as from MariaDB) and the proxy serves it; else the first
/// the user may use.
pub(super) fn login_database(
    shared: &Shared,
    access: &UserAccess,
    named: Option<&str>,
) -> Result<Database, ProxyError> {
    match named {
        Some(name) => {
            access.check_database(name)?;
            shared
                .database(name)
                .cloned()
                .ok_or_else(|| unknown_database(name))
        }
        None => first_allowed(shared, access).ok_or_else(|| {
            // The config's validation gives each user a declared one.
            ProxyError::new(
                ErrorKind::Internal,
                "the user may use no logical database this configuration declares",
            )
        }),
    }
}

/// The first logical database (in `Shared::databases` order) `access` may use.
pub fn first_allowed(shared: &Shared, access: &UserAccess) -> Option<Database> {
    shared
        .databases
        .iter()
        .find(|db| access.may_use(&db.name))
        .cloned()
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
