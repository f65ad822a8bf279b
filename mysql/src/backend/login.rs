//! Opening a connection to a data source: the server's greeting, TLS when
//! the URL's `ssl-mode` asks for it (an SSL request, the TLS handshake on
//! the socket, everything after over TLS), then the handshake response.
//! The challenge that may follow is the connection's own
//! ([`BackendConn::authenticate`]).

use std::sync::Arc;

use bytes::BytesMut;
use mysql_common::auth::plugins::mysql_native_password::scramble_native;
use mysql_common::constants::{CapabilityFlags, MariadbCapabilities};
use mysql_common::io::ParseBuf;
use mysql_common::packets::{AuthPlugin, HandshakePacket, HandshakeResponse};
use mysql_common::proto::MySerialize;
use shardgate_core::backend::{Breaker, ConnLimits};
use shardgate_core::data_source_tls::{DataSourceTls, DataSourceTlsError};
use shardgate_core::net::split_plain;
use shardgate_rules::config::BackendUrl;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::conn::{login_error, BackendConn};
use super::{ConnError, Flavor};
use crate::packet::{frame_into, PacketReader, PacketWriter, HEADER};

/// An SSL request is the handshake response's fixed part (capabilities,
/// max packet size, collation, filler, MariaDB's capabilities), alone.
const SSL_REQUEST: usize = 32;

/// Greetings are a few dozen bytes; a larger one is not a MySQL server's.
const GREETING_LIMIT: usize = 64 * 1024;

/// Capabilities every backend connection asks for; the session-visible ones
/// come from the client through `Flavor`.
fn base_capabilities() -> CapabilityFlags {
    CapabilityFlags::CLIENT_LONG_PASSWORD
        | CapabilityFlags::CLIENT_LONG_FLAG
        | CapabilityFlags::CLIENT_CONNECT_WITH_DB
        | CapabilityFlags::CLIENT_PROTOCOL_41
        | CapabilityFlags::CLIENT_TRANSACTIONS
        | CapabilityFlags::CLIENT_SECURE_CONNECTION
        | CapabilityFlags::CLIENT_PLUGIN_AUTH
        | CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
}

/// A connection being opened: what its login needs.
pub(super) struct Opening<'a> {
    pub ds: Arc<str>,
    pub addr: &'a str,
    pub url: &'a BackendUrl,
    pub flavor: Flavor,
    pub limits: ConnLimits,
    /// The TLS the URL asks for (None: DISABLED).
    pub tls: Option<&'a DataSourceTls>,
    pub breaker: Arc<Breaker>,
}

impl Opening<'_> {
    /// Logs in on a connected socket.
    pub(super) async fn login(self, mut stream: TcpStream) -> Result<BackendConn, ConnError> {
        let greeting = self.greeting(&mut stream).await?;
        if greeting.first() == Some(&0xFF) {
            return Err(login_error(&self.ds, &greeting));
        }
        let handshake: HandshakePacket<'_> = ParseBuf(&greeting)
            .parse(())
            .map_err(|e| self.protocol(format!("bad greeting: {e}")))?;
        let offered = handshake
            .capabilities()
            .contains(CapabilityFlags::CLIENT_SSL);
        let tls = match self.tls {
            Some(tls) if tls.wanted(offered).map_err(|e| self.tls_error(e))? => Some(tls),
            _ => None,
        };
        // A MariaDB server (no CLIENT_MYSQL bit) that can skip the column
        // definitions of repeated executes: they are the larger part of a
        // point select's reply, and building them is work on the server.
        let mariadb_caps = MariadbCapabilities::MARIADB_CLIENT_CACHE_METADATA;
        let cache_metadata = !handshake
            .capabilities()
            .contains(CapabilityFlags::CLIENT_LONG_PASSWORD)
            && handshake.mariadb_ext_capabilities().contains(mariadb_caps);
        let mut caps = base_capabilities() | self.flavor.capabilities();
        if cache_metadata {
            caps.remove(CapabilityFlags::CLIENT_LONG_PASSWORD);
        }
        caps.set(CapabilityFlags::CLIENT_SSL, tls.is_some());
        let scramble = scramble_native(&handshake.nonce(), self.url.password.as_bytes());
        let response = HandshakeResponse::new(
            Some(scramble.as_ref().map(|s| &s[..]).unwrap_or(&[])),
            handshake.server_version_parsed().unwrap_or((10, 0, 0)),
            Some(self.url.user.as_bytes()),
            Some(self.url.database.as_bytes()),
            Some(AuthPlugin::MysqlNativePassword),
            caps,
            None,
            1 << 30,
        )
        .with_mariadb_ext_capabilities(if cache_metadata {
            mariadb_caps
        } else {
            MariadbCapabilities::empty()
        });
        let mut payload = Vec::with_capacity(128);
        response.serialize(&mut payload);
        // The collation byte follows capabilities and max packet size; it
        // must be the client's so the backend converts text as the client expects.
        if let Some(b) = payload.get_mut(8) {
            *b = self.flavor.collation;
        }
        let ((r, w), seq) = match tls {
            None => (split_plain(stream), 1),
            Some(tls) => {
                let request = payload
                    .get(..SSL_REQUEST)
                    .ok_or_else(|| self.protocol("handshake response too short".into()))?;
                let mut framed = Vec::with_capacity(HEADER + SSL_REQUEST);
                frame_into(&mut framed, 1, request);
                stream
                    .write_all(&framed)
                    .await
                    .map_err(|e| ConnError::lost(&self.ds, e))?;
                let halves = tls.handshake(stream).await.map_err(|e| self.tls_error(e))?;
                (halves, 2)
            }
        };
        let mut reader = PacketReader::new(r);
        reader.set_silence_limit(self.limits.silence);
        let mut writer = PacketWriter::new(w);
        writer.set_seq(seq);
        writer.push(&payload);
        writer
            .flush()
            .await
            .map_err(|e| ConnError::lost(&self.ds, e))?;
        let mut conn = BackendConn::new(
            self.ds,
            self.flavor,
            reader,
            writer,
            &self.url.database,
            self.breaker,
        );
        conn.thread_id = handshake.connection_id();
        conn.cache_metadata = cache_metadata;
        conn.authenticate(self.url).await?;
        Ok(conn)
    }

    /// The server's greeting, read off the socket itself. The server says
    /// nothing more until the client answers, so nothing past the greeting
    /// can have been read: were it otherwise, those bytes (the start of the
    /// TLS handshake's reply, say) would be lost with this reader.
    async fn greeting(&self, stream: &mut TcpStream) -> Result<BytesMut, ConnError> {
        let mut reader = PacketReader::new(stream);
        reader.set_silence_limit(self.limits.silence);
        let (_, greeting) = reader
            .read_packet(GREETING_LIMIT)
            .await
            .map_err(|e| ConnError::lost(&self.ds, e))?;
        if !reader.buffer().is_empty() {
            return Err(self.protocol("bytes after the greeting, before the proxy answered".into()));
        }
        Ok(greeting)
    }

    fn protocol(&self, what: String) -> ConnError {
        ConnError::Protocol {
            ds: self.ds.to_string(),
            what,
        }
    }

    fn tls_error(&self, source: DataSourceTlsError) -> ConnError {
        ConnError::Tls {
            ds: self.ds.to_string(),
            addr: self.addr.to_string(),
            source: Box::new(source),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::PacketReader;
    use mysql_common::constants::StatusFlags;
    use std::time::Duration;
    use tokio::net::TcpListener;

    /// A server whose greeting does not offer TLS; it accepts whatever
    /// handshake response comes, returning its sequence id and capabilities.
    async fn clear_server() -> (u16, tokio::task::JoinHandle<Option<(u8, u32)>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let served = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.ok()?;
            let caps = base_capabilities() | CapabilityFlags::CLIENT_PLUGIN_AUTH;
            let greeting = HandshakePacket::new(
                10,
                &b"5.5.5-10.11.0-MariaDB"[..],
                7,
                *b"12345678",
                Some(&b"123456789012"[..]),
                caps,
                45,
                StatusFlags::SERVER_STATUS_AUTOCOMMIT,
                Some(&b"mysql_native_password"[..]),
            );
            let mut payload = Vec::new();
            greeting.serialize(&mut payload);
            let mut framed = Vec::new();
            frame_into(&mut framed, 0, &payload);
            socket.write_all(&framed).await.ok()?;
            let (seq, response) = PacketReader::new(&mut socket)
                .read_packet(1 << 20)
                .await
                .ok()?;
            let caps = u32::from_le_bytes(response.get(..4)?.try_into().ok()?);
            let mut ok = Vec::new();
            frame_into(&mut ok, seq + 1, &[0, 0, 0, 2, 0, 0, 0]);
            socket.write_all(&ok).await.ok()?;
            Some((seq, caps))
        });
        (port, served)
    }

    async fn connect(port: u16, mode: &str) -> Result<BackendConn, ConnError> {
        let url = BackendUrl::parse(&format!("mysql://root@127.0.0.1:{port}/db?ssl-mode={mode}"))
            .unwrap();
        let limits = ConnLimits {
            connect: Duration::from_secs(5),
            silence: None,
        };
        BackendConn::connect("ds3".into(), &url, Flavor::internal(), limits).await
    }

    #[tokio::test]
    async fn a_server_without_tls_is_refused_unless_tls_is_only_preferred() {
        let (port, _) = clear_server().await;
        let err = connect(port, "REQUIRED").await.err().expect("refused");
        assert!(matches!(err, ConnError::Tls { .. }), "{err}");
        let message = err.to_string();
        assert!(
            message.starts_with("TLS to data source ds3 (127.0.0.1:"),
            "{message}"
        );
        assert!(message.contains("does not offer TLS"), "{message}");

        let (port, served) = clear_server().await;
        connect(port, "PREFERRED")
            .await
            .expect("logged in, in the clear");
        let (seq, caps) = served.await.unwrap().expect("a handshake response");
        assert_eq!(seq, 1, "no SSL request came first");
        assert_eq!(caps & CapabilityFlags::CLIENT_SSL.bits(), 0);
    }
}
