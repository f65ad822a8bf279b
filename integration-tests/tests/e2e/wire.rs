//! The protocol seen byte by byte, for what drivers do not exercise: a
//! client that opens with `caching_sha2_password` is switched to
//! `mysql_native_password`; unknown and empty commands get 1047; COM_RESET_CONNECTION
//! forgets session state; COM_FIELD_LIST answers; the admin listener is up.

use mysql_common::auth::plugins::caching_sha2_password::scramble_sha256;
use mysql_common::auth::plugins::mysql_native_password::scramble_native;
use mysql_common::constants::CapabilityFlags;
use mysql_common::io::ParseBuf;
use mysql_common::packets::{AuthPlugin, HandshakePacket, HandshakeResponse};
use mysql_common::proto::MySerialize;
use shardgate_integration_tests::{sandbox, sandbox_ready, test_config};
use shardgate_rules::config::UserConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Wire {
    stream: TcpStream,
}

impl Wire {
    async fn read(&mut self) -> (u8, Vec<u8>) {
        let mut header = [0u8; 4];
        self.stream
            .read_exact(&mut header)
            .await
            .expect("packet header");
        let len =
            usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
        let mut payload = vec![0u8; len];
        self.stream
            .read_exact(&mut payload)
            .await
            .expect("packet payload");
        (header[3], payload)
    }

    async fn write(&mut self, seq: u8, payload: &[u8]) {
        let len = payload.len();
        let mut packet = vec![len as u8, (len >> 8) as u8, (len >> 16) as u8, seq];
        packet.extend_from_slice(payload);
        self.stream.write_all(&packet).await.expect("write");
    }

    /// A command and its reply packets up to the first OK, ERR or EOF
    /// (or the second EOF of a result set).
    async fn command(&mut self, payload: &[u8], ends_after_eofs: usize) -> Vec<Vec<u8>> {
        self.write(0, payload).await;
        let mut packets = Vec::new();
        let mut eofs = 0;
        loop {
            let (_, p) = self.read().await;
            let first = p.first().copied();
            packets.push(p.clone());
            match first {
                Some(0xFF) => return packets,
                Some(0x00) if packets.len() == 1 => return packets,
                Some(0xFE) if p.len() < 9 => {
                    eofs += 1;
                    if eofs >= ends_after_eofs {
                        return packets;
                    }
                }
                _ => {}
            }
        }
    }
}

const PASSWORD: &str = "s3cret";

async fn login_with_sha2(addr: std::net::SocketAddr) -> Wire {
    let mut wire = Wire {
        stream: TcpStream::connect(addr).await.expect("connect"),
    };
    let (_, greeting) = wire.read().await;
    let handshake: HandshakePacket<'_> = ParseBuf(&greeting).parse(()).expect("greeting");
    let nonce: [u8; 20] = handshake.nonce()[..20].try_into().expect("20-byte nonce");
    let answer = scramble_sha256(&nonce, PASSWORD.as_bytes()).expect("scramble");
    // No CLIENT_DEPRECATE_EOF: result sets end with EOF packets.
    let caps = CapabilityFlags::CLIENT_PROTOCOL_41
        | CapabilityFlags::CLIENT_SECURE_CONNECTION
        | CapabilityFlags::CLIENT_PLUGIN_AUTH
        | CapabilityFlags::CLIENT_LONG_PASSWORD
        | CapabilityFlags::CLIENT_TRANSACTIONS;
    let response = HandshakeResponse::new(
        Some(&answer[..]),
        (10, 11, 0),
        Some(&b"app"[..]),
        Some(&b"wework"[..]),
        Some(AuthPlugin::CachingSha2Password),
        caps,
        None,
        1 << 24,
    );
    let mut bytes = Vec::new();
    response.serialize(&mut bytes);
    wire.write(1, &bytes).await;
    let (seq, switch) = wire.read().await;
    assert_eq!(seq, 2);
    assert_eq!(switch[0], 0xFE, "expected an auth switch request");
    let body = &switch[1..];
    let name_end = body.iter().position(|&b| b == 0).expect("plugin name");
    assert_eq!(&body[..name_end], b"mysql_native_password");
    let salt = body[name_end + 1..]
        .strip_suffix(&[0])
        .unwrap_or(&body[name_end + 1..]);
    let native = scramble_native(salt, PASSWORD.as_bytes()).expect("native scramble");
    wire.write(3, &native).await;
    let (seq, ok) = wire.read().await;
    assert_eq!(seq, 4);
    assert_eq!(ok[0], 0x00, "login OK, got {ok:?}");
    wire
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wire_level_commands_and_admin() {
    let _sandbox = sandbox::shared().await;
    let mut cfg = test_config();
    if !sandbox_ready(&cfg, "wire_level_commands_and_admin") {
        return;
    }
    cfg.server.users.push(UserConfig {
        name: "app".into(),
        password: PASSWORD.into(),
    });
    let proxy = shardgate_proxy::start(cfg).await.expect("shardgate starts");
    let mut wire = login_with_sha2(proxy.mysql_addr()).await;

    // An unknown command: error 1047, and the session goes on.
    let reply = wire.command(&[0x3F], 1).await;
    assert_eq!(reply[0][0], 0xFF);
    assert_eq!(u16::from_le_bytes([reply[0][1], reply[0][2]]), 1047);
    let ping = wire.command(&[0x0E], 1).await;
    assert_eq!(ping[0][0], 0x00);
    // An empty command packet: MariaDB reads it as COM_SLEEP and answers
    // 1047 too; the session goes on.
    let reply = wire.command(&[], 1).await;
    assert_eq!(reply[0][0], 0xFF);
    assert_eq!(u16::from_le_bytes([reply[0][1], reply[0][2]]), 1047);
    assert_eq!(&reply[0][3..9], b"#08S01");
    let ping = wire.command(&[0x0E], 1).await;
    assert_eq!(ping[0][0], 0x00);

    // KILL names a ShardGate connection id: refused rather than forwarded to
    // a server, where it would kill an unrelated thread.
    let kill = wire.command(b"\x03KILL QUERY 1", 1).await;
    assert_eq!(kill[0][0], 0xFF);
    assert_eq!(u16::from_le_bytes([kill[0][1], kill[0][2]]), 1235);

    // COM_RESET_CONNECTION forgets user variables.
    let set = wire.command(b"\x03SET @wire_v = 42", 1).await;
    assert_eq!(set[0][0], 0x00, "{set:?}");
    let before = wire.command(b"\x03SELECT @wire_v", 2).await;
    assert_eq!(before[3], b"\x0242", "the row before the reset");
    let reset = wire.command(&[0x1F], 1).await;
    assert_eq!(reset[0][0], 0x00);
    let after = wire.command(b"\x03SELECT @wire_v", 2).await;
    assert_eq!(after[3], [0xFB], "NULL after the reset");

    // COM_FIELD_LIST lists a table's columns.
    wire.command(b"\x03DROP TABLE IF EXISTS it_wire", 1).await;
    wire.command(b"\x03CREATE TABLE it_wire (a INT, b VARCHAR(10))", 1)
        .await;
    let fields = wire.command(b"\x04it_wire\x00", 1).await;
    assert_eq!(
        fields.len(),
        3,
        "two column definitions and an EOF: {fields:?}"
    );
    wire.command(b"\x03DROP TABLE it_wire", 1).await;

    // The admin listener answers.
    let mut http = TcpStream::connect(proxy.admin_addr())
        .await
        .expect("admin connect");
    http.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("admin write");
    let mut text = String::new();
    http.read_to_string(&mut text).await.expect("admin read");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("ok\n"), "{text}");
    proxy.stop();
}
