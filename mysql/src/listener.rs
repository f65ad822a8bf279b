//! The MySQL front end's listener: the accept loop that hands each client
//! to a session, and the identity (server version, collation) it greets
//! clients with, taken from the default data source.

use std::sync::Arc;
use std::time::Duration;

use mysql_common::io::ParseBuf;
use mysql_common::packets::HandshakePacket;
use shardgate_rules::config::BackendUrl;
use tokio::net::{TcpListener, TcpStream};
use tracing::warn;

use crate::backend::Proxy;
use crate::handshake::ServerIdentity;
use crate::packet::PacketReader;

/// Hands each client to a session, greeting it as `identity`.
pub async fn accept_loop(listener: TcpListener, proxy: Arc<Proxy>, identity: Arc<ServerIdentity>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(crate::session::serve(
                    proxy.clone(),
                    identity.clone(),
                    stream,
                ));
            }
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
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
