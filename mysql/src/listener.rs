//! The MySQL front end's listener: the accept loop that hands each client
//! to a session (within `server.max_connections`, unless its host is
//! blocked for failed logins), and the identity
//! (server version, collation) it greets clients with, taken from the
//! default data source.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mysql_common::io::ParseBuf;
use mysql_common::packets::HandshakePacket;
use shardgate_rules::config::BackendUrl;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tracing::warn;

use crate::auth::caching_sha2::FastAuthCache;
use crate::backend::Proxy;
use crate::codes::{ER_CON_COUNT_ERROR, ER_HOST_IS_BLOCKED};
use crate::handshake::ServerIdentity;
use crate::ok_err::ErrInfo;
use crate::packet::{frame_into, PacketReader};
use crate::session::Front;
use shardgate_core::log_limit::LogLimit;

/// Hands each client to a session, greeting it as `identity`, while fewer
/// than `server.max_connections` are open (read at each accept, so a
/// reload changes it); one more is refused with 1040 before any greeting.
pub async fn accept_loop(listener: TcpListener, proxy: Arc<Proxy>, identity: ServerIdentity) {
    let front = Arc::new(Front {
        identity,
        fast_auth: FastAuthCache::default(),
    });
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let shared = proxy.current();
                let max = shared.config.server.max_connections;
                if open.load(Ordering::Relaxed) >= max {
                    log_refusal(peer, max);
                    tokio::spawn(refuse(stream, too_many_connections()));
                    continue;
                }
                if let Some(left) = proxy.admission().blocked(peer.ip(), Instant::now()) {
                    shared.metrics.failed_login("host_blocked");
                    tokio::spawn(refuse(stream, host_blocked(peer, left)));
                    continue;
                }
                let counted = Counted::new(open.clone());
                let (proxy, front) = (proxy.clone(), front.clone());
                tokio::spawn(async move {
                    crate::session::serve(proxy, front, stream).await;
                    drop(counted);
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// One open client connection, counted until it ends.
struct Counted(Arc<AtomicUsize>);

impl Counted {
    fn new(open: Arc<AtomicUsize>) -> Self {
        open.fetch_add(1, Ordering::Relaxed);
        Counted(open)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn too_many_connections() -> ErrInfo {
    ErrInfo::new(ER_CON_COUNT_ERROR, "08004", "Too many connections")
}

/// MariaDB's words, with when the block ends instead of FLUSH HOSTS.
fn host_blocked(peer: SocketAddr, left: Duration) -> ErrInfo {
    ErrInfo::new(
        ER_HOST_IS_BLOCKED,
        "HY000",
        format!(
            "Host '{}' is blocked because of many connection errors; it is unblocked in {} s (server.max_connect_errors, server.host_block_ms)",
            peer.ip(),
            left.as_secs().max(1)
        ),
    )
}

/// Tells a client it may not connect, as MariaDB does: an error packet
/// where the greeting would be, then the connection closes.
async fn refuse(mut stream: TcpStream, err: ErrInfo) {
    let payload = err.encode();
    let mut packet = Vec::new();
    frame_into(&mut packet, 0, &payload);
    let write = async {
        stream.write_all(&packet).await?;
        stream.shutdown().await
    };
    // A client that does not read its refusal does not hold the task.
    let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
}

/// Refused connections are logged at most once every 10 s.
static REFUSALS_LOG: LogLimit = LogLimit::new(Duration::from_secs(10));

fn log_refusal(peer: SocketAddr, max: usize) {
    if let Some(held_back) = REFUSALS_LOG.allow() {
        warn!(
            %peer,
            held_back,
            "server.max_connections = {max} connections are open; refusing new ones (1040)"
        );
    }
}

/// The default data source's version and collation, so clients see the
/// server they are really talking to; a fixed MariaDB identity when it is
/// not reachable at start.
pub async fn probe_identity(url: &BackendUrl) -> ServerIdentity {
    let fallback = ServerIdentity {
        version: "10.11.0-MariaDB-ShardGate".into(),
        collation: 45,
    };
    let addr = format!("{}:{}", url.host, url.port);
    let greeting = async {
        let stream = TcpStream::connect(&addr).await.ok()?;
        let mut reader = PacketReader::new(stream);
        let (_, payload) = reader.read_packet(64 * 1024).await.ok()?;
        let packet: HandshakePacket<'_> = ParseBuf(&payload).parse(()).ok()?;
        Some(ServerIdentity {
            version: packet.server_version_str().into_owned(),
            collation: packet.default_collation(),
        })
    };
    match tokio::time::timeout(Duration::from_secs(5), greeting).await {
        Ok(Some(identity)) => identity,
        _ => {
            warn!(%addr, "default data source not reachable at start; greeting clients as {}", fallback.version);
            fallback
        }
    }
}
