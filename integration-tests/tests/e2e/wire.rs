//! The protocol seen byte by byte, for what drivers do not exercise: a
//! client that opens with `caching_sha2_password` is switched to
//! `mysql_native_password`; unknown and empty commands get 1047; COM_RESET_CONNECTION
//! forgets session state; COM_FIELD_LIST answers; the admin listener is up;
//! COM_STMT_SEND_LONG_DATA is joined per parameter and bounded as the
//! server bounds it, and a session's prepared statements are bounded.

use mysql_common::auth::plugins::caching_sha2_password::scramble_sha256;
use mysql_common::auth::plugins::mysql_native_password::scramble_native;
use mysql_common::constants::CapabilityFlags;
use mysql_common::io::ParseBuf;
use mysql_common::packets::{AuthPlugin, HandshakePacket, HandshakeResponse};
use mysql_common::proto::MySerialize;
use shardgate_integration_tests::fixtures::{config_with_table, connect};
use shardgate_integration_tests::{sandbox, sandbox_ready, start_proxy, test_config};
use shardgate_rules::config::UserConfig;
use sqlx::{Executor, Row};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub(crate) struct Wire {
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

impl Wire {
    /// Prepares `sql`, reading its whole answer: the statement id, or the
    /// error code.
    pub(crate) async fn prepare(&mut self, sql: &str) -> Result<u32, u16> {
        let mut payload = vec![0x16];
        payload.extend_from_slice(sql.as_bytes());
        self.write(0, &payload).await;
        let (_, ok) = self.read().await;
        if ok[0] == 0xFF {
            return Err(u16::from_le_bytes([ok[1], ok[2]]));
        }
        let id = u32::from_le_bytes(ok[1..5].try_into().expect("statement id"));
        let columns = u16::from_le_bytes([ok[5], ok[6]]);
        let params = u16::from_le_bytes([ok[7], ok[8]]);
        // Definitions, each list ended by an EOF (no CLIENT_DEPRECATE_EOF).
        for n in [params, columns] {
            for _ in 0..n + u16::from(n > 0) {
                self.read().await;
            }
        }
        Ok(id)
    }

    pub(crate) async fn long_data(&mut self, id: u32, param: u16, data: &[u8]) {
        let mut payload = vec![0x18];
        payload.extend_from_slice(&id.to_le_bytes());
        payload.extend_from_slice(&param.to_le_bytes());
        payload.extend_from_slice(data);
        self.write(0, &payload).await;
    }

    /// Executes statement `id` whose parameters are BLOBs sent as long data
    /// (no values in the packet): "ROW <first column as the binary row
    /// holds it>", "OK", or "ERR <code> <sqlstate> <message>".
    pub(crate) async fn execute_long_data(&mut self, id: u32, params: u16) -> String {
        let mut payload = vec![0x17];
        payload.extend_from_slice(&id.to_le_bytes());
        payload.push(0);
        payload.extend_from_slice(&1u32.to_le_bytes());
        payload.extend(std::iter::repeat_n(0, usize::from(params).div_ceil(8)));
        payload.push(1);
        for _ in 0..params {
            payload.extend_from_slice(&[0xFC, 0]);
        }
        self.answer(&payload).await
    }

    /// COM_STMT_RESET of statement `id`: "OK" or "ERR ...".
    async fn reset(&mut self, id: u32) -> String {
        let mut payload = vec![0x1A];
        payload.extend_from_slice(&id.to_le_bytes());
        self.answer(&payload).await
    }

    pub(crate) async fn answer(&mut self, payload: &[u8]) -> String {
        let reply = self.command(payload, 2).await;
        let first = &reply[0];
        match first[0] {
            0xFF => format!(
                "ERR {} {} {}",
                u16::from_le_bytes([first[1], first[2]]),
                String::from_utf8_lossy(&first[4..9]),
                String::from_utf8_lossy(&first[9..])
            ),
            0x00 => "OK".into(),
            _ => {
                // Column count, its definition, EOF, the row, EOF.
                let row = &reply[reply.len() - 2];
                format!("ROW {:?}", &row[2..])
            }
        }
    }
}

/// No CLIENT_DEPRECATE_EOF: result sets end with EOF packets.
fn base_caps() -> CapabilityFlags {
    CapabilityFlags::CLIENT_PROTOCOL_41
        | CapabilityFlags::CLIENT_SECURE_CONNECTION
        | CapabilityFlags::CLIENT_PLUGIN_AUTH
        | CapabilityFlags::CLIENT_LONG_PASSWORD
        | CapabilityFlags::CLIENT_TRANSACTIONS
}

/// A handshake response packet's payload.
fn handshake_response(
    answer: &[u8],
    user: &str,
    db: &str,
    plugin: AuthPlugin<'_>,
    caps: CapabilityFlags,
) -> Vec<u8> {
    let response = HandshakeResponse::new(
        Some(answer),
        (10, 11, 0),
        Some(user.as_bytes()),
        Some(db.as_bytes()),
        Some(plugin),
        caps,
        None,
        1 << 24,
    );
    let mut bytes = Vec::new();
    response.serialize(&mut bytes);
    bytes
}

/// Logs in with `mysql_native_password`, as every MariaDB client can.
pub(crate) async fn login_native(
    addr: std::net::SocketAddr,
    user: &str,
    password: &str,
    db: &str,
) -> Wire {
    let mut wire = Wire {
        stream: TcpStream::connect(addr).await.expect("connect"),
    };
    let (_, greeting) = wire.read().await;
    let handshake: HandshakePacket<'_> = ParseBuf(&greeting).parse(()).expect("greeting");
    let nonce = handshake.nonce();
    // No password: an empty answer.
    let answer: Vec<u8> = scramble_native(&nonce[..20], password.as_bytes())
        .map(|a| a.to_vec())
        .unwrap_or_default();
    let caps = base_caps() | CapabilityFlags::CLIENT_CONNECT_WITH_DB;
    let response = handshake_response(&answer, user, db, AuthPlugin::MysqlNativePassword, caps);
    wire.write(1, &response).await;
    let (_, ok) = wire.read().await;
    assert_eq!(ok[0], 0x00, "login OK, got {ok:?}");
    wire
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
    let response = handshake_response(
        &answer,
        "app",
        "wework",
        AuthPlugin::CachingSha2Password,
        base_caps(),
    );
    wire.write(1, &response).await;
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
    cfg.server
        .users
        .push(UserConfig::with_password("app", PASSWORD));
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

/// `SELECT LENGTH(?)` with its parameter as long data: each answer as MariaDB
/// 10.11 gives it, measured against a server with `max_allowed_packet` =
/// 16 MiB (the proxy's here; the sandbox's servers take 1 GiB, so they
/// cannot be the reference in the same run): one parameter past the bound
/// fails the execution with 1105, and every execution after it until
/// COM_STMT_RESET; long data for a parameter the statement does not have
/// fails it with 1210.
const LONG_DATA_ANSWERS: [(&str, &str); 10] = [
    ("two chunks", "ROW [4, 0, 0, 0]"),
    ("no value", "ERR 1210 HY000 Incorrect arguments to mysqld_stmt_execute"),
    ("past max_allowed_packet", "ERR 1105 HY000 Parameter of prepared statement which is set through mysql_send_long_data() is longer than 'max_allowed_packet' bytes"),
    ("again", "ERR 1105 HY000 Parameter of prepared statement which is set through mysql_send_long_data() is longer than 'max_allowed_packet' bytes"),
    ("more data", "ERR 1105 HY000 Parameter of prepared statement which is set through mysql_send_long_data() is longer than 'max_allowed_packet' bytes"),
    ("reset", "OK"),
    ("after the reset", "ROW [3, 0, 0, 0]"),
    ("no such parameter", "ERR 1210 HY000 Incorrect arguments to mysqld_stmt_send_long_data"),
    ("reset", "OK"),
    ("after the reset", "ROW [1, 0, 0, 0]"),
];

const MIB: usize = 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_data_and_prepared_statements_are_bounded() {
    let _sandbox = sandbox::shared().await;
    let table = "it_long_data";
    let mut cfg = config_with_table(table, |_| {});
    if !sandbox_ready(&cfg, "long_data_and_prepared_statements_are_bounded") {
        return;
    }
    // The shipped config reads from replicas.
    cfg.server.read_write_splitting = true;
    cfg.server.max_allowed_packet = 16 * MIB;
    cfg.server.max_long_data_per_session = 20 * MIB;
    cfg.server.max_prepared_statements = 3;
    let proxy = start_proxy(cfg).await;
    let mut sql = connect(&proxy).await;
    for ddl in [
        format!("DROP TABLE IF EXISTS {table}"),
        format!("CREATE TABLE {table} (id BIGINT PRIMARY KEY, body LONGTEXT)"),
    ] {
        sql.execute(ddl.as_str()).await.expect(&ddl);
    }
    let mut wire = login_native(proxy.addr, "root", "", "wework").await;

    // The server's answers, one by one.
    let length = wire.prepare("SELECT LENGTH(?)").await.expect("prepare");
    let mut answers = Vec::new();
    wire.long_data(length, 0, b"ab").await;
    wire.long_data(length, 0, b"cd").await;
    answers.push(wire.execute_long_data(length, 1).await);
    answers.push(wire.execute_long_data(length, 1).await);
    let chunk = vec![b'x'; MIB];
    for _ in 0..16 {
        wire.long_data(length, 0, &chunk).await;
    }
    wire.long_data(length, 0, b"y").await;
    answers.push(wire.execute_long_data(length, 1).await);
    answers.push(wire.execute_long_data(length, 1).await);
    wire.long_data(length, 0, b"z").await;
    answers.push(wire.execute_long_data(length, 1).await);
    answers.push(wire.reset(length).await);
    wire.long_data(length, 0, b"xyz").await;
    answers.push(wire.execute_long_data(length, 1).await);
    wire.long_data(length, 5, b"q").await;
    answers.push(wire.execute_long_data(length, 1).await);
    answers.push(wire.reset(length).await);
    wire.long_data(length, 0, b"q").await;
    answers.push(wire.execute_long_data(length, 1).await);
    for ((step, expected), got) in LONG_DATA_ANSWERS.iter().zip(&answers) {
        assert_eq!(got, expected, "{step}");
    }

    // The session's whole: 10 MiB held by one statement leaves no room for
    // 10 MiB more (with the packets' headers) in 20 MiB.
    let other = wire.prepare("SELECT LENGTH(?)").await.expect("prepare");
    for _ in 0..10 {
        wire.long_data(length, 0, &chunk).await;
        wire.long_data(other, 0, &chunk).await;
    }
    let refused = wire.execute_long_data(other, 1).await;
    assert!(
        refused.starts_with("ERR 1105 HY000 ")
            && refused.contains("server.max_long_data_per_session"),
        "{refused}"
    );
    let ten_mib = (10 * MIB as u32).to_le_bytes();
    assert_eq!(
        wire.execute_long_data(length, 1).await,
        format!("ROW {ten_mib:?}")
    );
    // The execution gave its bytes back.
    assert_eq!(wire.reset(other).await, "OK");
    for _ in 0..10 {
        wire.long_data(other, 0, &chunk).await;
    }
    assert_eq!(
        wire.execute_long_data(other, 1).await,
        format!("ROW {ten_mib:?}")
    );

    // Chunks of a sharded statement's parameter are joined before it is
    // routed and written.
    let insert = wire
        .prepare(&format!("INSERT INTO {table} (id, body) VALUES (7, ?)"))
        .await
        .expect("prepare");
    wire.long_data(insert, 0, b"first half, ").await;
    wire.long_data(insert, 0, b"second half").await;
    assert_eq!(wire.execute_long_data(insert, 1).await, "OK");
    let row = sqlx::query(&format!("SELECT body FROM {table} WHERE id = 7"))
        .fetch_one(&mut sql)
        .await
        .expect("the row");
    assert_eq!(row.get::<String, _>(0), "first half, second half");

    // Three statements are this session's bound: a fourth is refused with
    // MariaDB's code until one is closed.
    assert_eq!(wire.prepare("SELECT 1").await, Err(1461));
    wire.write(0, &[&[0x19][..], &other.to_le_bytes()].concat())
        .await;
    assert!(wire.prepare("SELECT 1").await.is_ok());
    sql.execute(format!("DROP TABLE {table}").as_str())
        .await
        .expect("drop");
}

/// COM_RESET_CONNECTION forgets a session's `SET wait_timeout`: the session
/// is closed after the configured `server.wait_timeout_ms` again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_connection_brings_back_the_configured_wait_timeout() {
    let _sandbox = sandbox::shared().await;
    let mut cfg = test_config();
    if !sandbox_ready(
        &cfg,
        "reset_connection_brings_back_the_configured_wait_timeout",
    ) {
        return;
    }
    cfg.server.wait_timeout_ms = 1000;
    let proxy = start_proxy(cfg).await;
    let mut kept = login_native(proxy.addr, "root", "", "wework").await;
    let mut reset = login_native(proxy.addr, "root", "", "wework").await;
    for wire in [&mut kept, &mut reset] {
        assert_eq!(wire.answer(b"\x03SET wait_timeout = 30").await, "OK");
    }
    assert_eq!(reset.answer(&[0x1F]).await, "OK");
    tokio::time::sleep(std::time::Duration::from_millis(1800)).await;
    assert_eq!(kept.answer(&[0x0E]).await, "OK", "30 s are not over");
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        reset.stream.read_to_end(&mut rest),
    )
    .await;
    assert!(
        matches!(closed, Ok(Ok(0))),
        "the reset session was closed after 1 s without a word: {closed:?} {rest:?}"
    );
}
