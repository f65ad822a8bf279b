//! A minimal MySQL-protocol client over a plain [`TcpStream`], for the
//! tests that send what no driver sends: malformed or empty command
//! packets, statements of many megabytes written before the answer is
//! awaited, commands out of order.
//!
//! It logs in with `mysql_native_password` (answering an auth switch to
//! it too), asks for no `CLIENT_DEPRECATE_EOF` (result sets end with EOF
//! packets) and no multi-statements, and then sends any payload as a
//! command. Its answer is read as [`Reply`]: OK, ERR (code, SQL state,
//! message), a result set (drained to its end, the rows' raw packets
//! kept), or any other first packet. Every read has a deadline, so that a
//! server that stays silent fails the test instead of hanging it. The
//! same client talks to ShardGate and straight to MariaDB, so that a test
//! can compare their answers.

use mysql_common::auth::plugins::mysql_native_password::scramble_native;
use mysql_common::constants::CapabilityFlags;
use mysql_common::io::ParseBuf;
use mysql_common::packets::{AuthPlugin, HandshakePacket, HandshakeResponse};
use mysql_common::proto::MySerialize;
use std::fmt;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The largest payload of one packet; a longer one continues in the next.
const MAX_PAYLOAD: usize = 0xFF_FFFF;

/// How long a read may wait by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// COM_QUERY.
pub const COM_QUERY: u8 = 0x03;
/// COM_STMT_PREPARE.
pub const COM_STMT_PREPARE: u8 = 0x16;
/// COM_STMT_EXECUTE.
pub const COM_STMT_EXECUTE: u8 = 0x17;
/// COM_STMT_FETCH.
pub const COM_STMT_FETCH: u8 = 0x1C;

/// What a server answered to one command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// An OK packet.
    Ok,
    /// An ERR packet (first, or ending a result set).
    Err {
        code: u16,
        sqlstate: String,
        message: String,
    },
    /// A result set, read to its end: its column count and the raw
    /// payloads of its rows.
    ResultSet { columns: u64, rows: Vec<Vec<u8>> },
    /// Any other first packet, as it came.
    Other(Vec<u8>),
}

impl Reply {
    /// The error code, if this is an ERR.
    pub fn code(&self) -> Option<u16> {
        match self {
            Reply::Err { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The rows of a text-protocol result set, each column a string or
    /// NULL, sorted (the rows of several shards come in no set order).
    pub fn text_rows(&self) -> Result<Vec<Vec<Option<String>>>, String> {
        let Reply::ResultSet { columns, rows } = self else {
            return Err(format!("not a result set: {self}"));
        };
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let mut pos = 0usize;
            let mut values = Vec::new();
            for _ in 0..*columns {
                if row.get(pos) == Some(&0xFB) {
                    pos += 1;
                    values.push(None);
                    continue;
                }
                let len =
                    lenenc_int(row, &mut pos).ok_or_else(|| format!("a truncated row: {row:?}"))?;
                let end = usize::try_from(len)
                    .ok()
                    .and_then(|l| pos.checked_add(l))
                    .filter(|&e| e <= row.len())
                    .ok_or_else(|| format!("a truncated row: {row:?}"))?;
                values.push(Some(String::from_utf8_lossy(&row[pos..end]).into_owned()));
                pos = end;
            }
            out.push(values);
        }
        out.sort();
        Ok(out)
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Ok => write!(f, "OK"),
            Reply::Err {
                code,
                sqlstate,
                message,
            } => {
                let short: String = message.chars().take(200).collect();
                write!(f, "ERR {code} ({sqlstate}) {short}")
            }
            Reply::ResultSet { columns, rows } => {
                write!(f, "a result set of {columns} columns, {} rows", rows.len())
            }
            Reply::Other(p) => {
                let head: Vec<u8> = p.iter().take(16).copied().collect();
                write!(f, "a packet of {} bytes starting {head:?}", p.len())
            }
        }
    }
}

/// A prepared statement, as COM_STMT_PREPARE's OK described it.
#[derive(Clone, Copy, Debug)]
pub struct Prepared {
    pub id: u32,
    pub columns: u16,
    pub params: u16,
}

/// One logged-in connection.
pub struct RawConn {
    stream: TcpStream,
    timeout: Duration,
}

impl RawConn {
    /// Connects to `addr` and logs in as `user` with `password` (empty: an
    /// empty answer) into `database`.
    pub async fn connect(
        addr: &str,
        user: &str,
        password: &str,
        database: &str,
    ) -> Result<RawConn, String> {
        let stream = tokio::time::timeout(DEFAULT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| format!("connect to {addr}: timed out"))?
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let mut conn = RawConn {
            stream,
            timeout: DEFAULT_TIMEOUT,
        };
        conn.login(user, password, database)
            .await
            .map_err(|e| format!("login to {addr} as {user}: {e}"))?;
        Ok(conn)
    }

    /// Sets how long each read may wait.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    async fn login(&mut self, user: &str, password: &str, database: &str) -> Result<(), String> {
        let (_, greeting) = self.read_packet().await?;
        if greeting.first() == Some(&0xFF) {
            return Err(format!("refused: {}", parse_err(&greeting)));
        }
        let handshake: HandshakePacket<'_> = ParseBuf(&greeting)
            .parse(())
            .map_err(|e| format!("the greeting: {e}"))?;
        let nonce = handshake.nonce();
        let salt = nonce.get(..20).unwrap_or(&nonce[..]);
        let answer: Vec<u8> = scramble_native(salt, password.as_bytes())
            .map(|a| a.to_vec())
            .unwrap_or_default();
        let caps = CapabilityFlags::CLIENT_PROTOCOL_41
            | CapabilityFlags::CLIENT_SECURE_CONNECTION
            | CapabilityFlags::CLIENT_PLUGIN_AUTH
            | CapabilityFlags::CLIENT_LONG_PASSWORD
            | CapabilityFlags::CLIENT_TRANSACTIONS
            | CapabilityFlags::CLIENT_CONNECT_WITH_DB;
        let response = HandshakeResponse::new(
            Some(&answer[..]),
            (10, 11, 0),
            Some(user.as_bytes()),
            Some(database.as_bytes()),
            Some(AuthPlugin::MysqlNativePassword),
            caps,
            None,
            1 << 24,
        );
        let mut bytes = Vec::new();
        response.serialize(&mut bytes);
        self.write_packet(1, &bytes).await?;
        let (seq, reply) = self.read_packet().await?;
        match reply.first() {
            Some(0x00) => Ok(()),
            Some(0xFF) => Err(parse_err(&reply).to_string()),
            Some(0xFE) => {
                // Auth switch: plugin name, NUL, salt (NUL-ended).
                let body = &reply[1..];
                let end = body
                    .iter()
                    .position(|&b| b == 0)
                    .ok_or("an auth switch without a plugin name")?;
                let plugin = String::from_utf8_lossy(&body[..end]).into_owned();
                if plugin != "mysql_native_password" {
                    return Err(format!("switched to {plugin}, which this client lacks"));
                }
                let rest = &body[end + 1..];
                let salt = rest.strip_suffix(&[0]).unwrap_or(rest);
                let answer: Vec<u8> = scramble_native(salt, password.as_bytes())
                    .map(|a| a.to_vec())
                    .unwrap_or_default();
                self.write_packet(seq.wrapping_add(1), &answer).await?;
                let (_, ok) = self.read_packet().await?;
                match ok.first() {
                    Some(0x00) => Ok(()),
                    Some(0xFF) => Err(parse_err(&ok).to_string()),
                    _ => Err(format!("after the auth switch: {ok:?}")),
                }
            }
            _ => Err(format!("an unexpected login reply: {reply:?}")),
        }
    }

    /// Writes one logical packet (split into 16 MiB pieces as needed;
    /// an empty payload is one header of length 0) starting at `seq`.
    pub async fn write_packet(&mut self, seq: u8, payload: &[u8]) -> Result<(), String> {
        let mut seq = seq;
        let mut rest = payload;
        let mut out = Vec::with_capacity(payload.len() + 4 * (payload.len() / MAX_PAYLOAD + 1));
        loop {
            let n = rest.len().min(MAX_PAYLOAD);
            out.extend_from_slice(&[n as u8, (n >> 8) as u8, (n >> 16) as u8, seq]);
            out.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            seq = seq.wrapping_add(1);
            if n < MAX_PAYLOAD {
                break;
            }
        }
        self.stream
            .write_all(&out)
            .await
            .map_err(|e| format!("write: {e}"))?;
        self.stream.flush().await.map_err(|e| format!("flush: {e}"))
    }

    /// Reads one logical packet (joining 16 MiB pieces): its first
    /// sequence number and payload.
    pub async fn read_packet(&mut self) -> Result<(u8, Vec<u8>), String> {
        let mut payload = Vec::new();
        let mut first_seq = None;
        loop {
            let mut header = [0u8; 4];
            self.read_exact(&mut header).await?;
            let len =
                usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
            first_seq.get_or_insert(header[3]);
            let start = payload.len();
            payload.resize(start + len, 0);
            self.read_exact(&mut payload[start..]).await?;
            if len < MAX_PAYLOAD {
                return Ok((first_seq.unwrap_or(header[3]), payload));
            }
        }
    }

    async fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), String> {
        match tokio::time::timeout(self.timeout, self.stream.read_exact(buf)).await {
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
            Ok(Err(e)) => Err(format!("read: {e} (connection closed?)")),
            Ok(Ok(_)) => Ok(()),
        }
    }

    /// Sends `payload` as a command (sequence 0) without reading the answer.
    pub async fn send_command(&mut self, payload: &[u8]) -> Result<(), String> {
        self.write_packet(0, payload).await
    }

    /// Reads the answer to a command: OK, ERR, a result set (read to its
    /// end) or another packet.
    pub async fn read_reply(&mut self) -> Result<Reply, String> {
        let (_, first) = self.read_packet().await?;
        match first.first() {
            Some(0x00) => return Ok(Reply::Ok),
            Some(0xFF) => return Ok(parse_err(&first)),
            None | Some(0xFE) | Some(0xFB) => return Ok(Reply::Other(first)),
            _ => {}
        }
        let mut pos = 0;
        let Some(columns) = lenenc_int(&first, &mut pos).filter(|_| pos == first.len()) else {
            return Ok(Reply::Other(first));
        };
        // Column definitions, then an EOF.
        loop {
            let (_, p) = self.read_packet().await?;
            if is_eof(&p) {
                break;
            }
            if p.first() == Some(&0xFF) {
                return Ok(parse_err(&p));
            }
        }
        let mut rows = Vec::new();
        loop {
            let (_, p) = self.read_packet().await?;
            if is_eof(&p) {
                return Ok(Reply::ResultSet { columns, rows });
            }
            if p.first() == Some(&0xFF) {
                return Ok(parse_err(&p));
            }
            rows.push(p);
        }
    }

    /// Sends a command and reads its answer.
    pub async fn command(&mut self, payload: &[u8]) -> Result<Reply, String> {
        self.send_command(payload).await?;
        self.read_reply().await
    }

    /// A COM_QUERY of `sql` and its answer.
    pub async fn query(&mut self, sql: &str) -> Result<Reply, String> {
        self.command(&query_payload(sql)).await
    }

    /// Prepares `sql`: the statement, or the server's refusal.
    pub async fn prepare(&mut self, sql: &str) -> Result<Result<Prepared, Reply>, String> {
        let mut payload = vec![COM_STMT_PREPARE];
        payload.extend_from_slice(sql.as_bytes());
        self.send_command(&payload).await?;
        let (_, ok) = self.read_packet().await?;
        match ok.first() {
            Some(0x00) if ok.len() >= 9 => {}
            Some(0xFF) => return Ok(Err(parse_err(&ok))),
            _ => return Ok(Err(Reply::Other(ok))),
        }
        let id = u32::from_le_bytes([ok[1], ok[2], ok[3], ok[4]]);
        let columns = u16::from_le_bytes([ok[5], ok[6]]);
        let params = u16::from_le_bytes([ok[7], ok[8]]);
        // Each list of definitions ends with an EOF (no CLIENT_DEPRECATE_EOF).
        for n in [params, columns] {
            if n > 0 {
                for _ in 0..=n {
                    self.read_packet().await?;
                }
            }
        }
        Ok(Ok(Prepared {
            id,
            columns,
            params,
        }))
    }

    /// Whether the server has closed the connection (read returns end of
    /// stream within `wait`); false when it is merely silent.
    pub async fn closed_within(&mut self, wait: Duration) -> bool {
        let mut byte = [0u8; 1];
        matches!(
            tokio::time::timeout(wait, self.stream.read(&mut byte)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}

/// A COM_QUERY payload.
pub fn query_payload(sql: &str) -> Vec<u8> {
    let mut payload = Vec::with_capacity(sql.len() + 1);
    payload.push(COM_QUERY);
    payload.extend_from_slice(sql.as_bytes());
    payload
}

fn is_eof(p: &[u8]) -> bool {
    p.first() == Some(&0xFE) && p.len() < 9
}

/// An ERR packet's fields (the SQL state is absent from errors sent before
/// the handshake completes).
fn parse_err(p: &[u8]) -> Reply {
    let code = match p.get(1..3) {
        Some(b) => u16::from_le_bytes([b[0], b[1]]),
        None => 0,
    };
    let (sqlstate, message) = match p.get(3) {
        Some(b'#') if p.len() >= 9 => (
            String::from_utf8_lossy(&p[4..9]).into_owned(),
            String::from_utf8_lossy(&p[9..]).into_owned(),
        ),
        _ => (
            String::new(),
            String::from_utf8_lossy(p.get(3..).unwrap_or_default()).into_owned(),
        ),
    };
    Reply::Err {
        code,
        sqlstate,
        message,
    }
}

/// A length-encoded integer at `*pos`, advancing it.
fn lenenc_int(p: &[u8], pos: &mut usize) -> Option<u64> {
    let first = *p.get(*pos)?;
    let width = match first {
        0..=0xFA => {
            *pos += 1;
            return Some(u64::from(first));
        }
        0xFC => 2,
        0xFD => 3,
        0xFE => 8,
        _ => return None,
    };
    let bytes = p.get(*pos + 1..*pos + 1 + width)?;
    let mut v = 0u64;
    for (i, b) in bytes.iter().enumerate() {
        v |= u64::from(*b) << (8 * i);
    }
    *pos += 1 + width;
    Some(v)
}
