//! OK, ERR and EOF packets: building the ones the proxy sends itself and
//! reading the status a backend's OK/EOF carries.

use shardgate_core::error::DbError;
use shardgate_core::execute::{WriteCounts, WriteDone};

/// Server status flags the proxy looks at.
pub mod status {
    pub const IN_TRANS: u16 = 0x0001;
    pub const AUTOCOMMIT: u16 = 0x0002;
    pub const MORE_RESULTS_EXISTS: u16 = 0x0008;
    pub const CURSOR_EXISTS: u16 = 0x0040;
    pub const IN_TRANS_READONLY: u16 = 0x2000;
}

/// An error as the client sees it: code, SQLSTATE and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrInfo {
    pub code: u16,
    pub sqlstate: [u8; 5],
    pub message: String,
}

impl ErrInfo {
    pub fn new(code: u16, sqlstate: &str, message: impl Into<String>) -> Self {
        let mut state = *b"HY000";
        if sqlstate.len() == 5 {
            state.copy_from_slice(sqlstate.as_bytes());
        }
        Self {
            code,
            sqlstate: state,
            message: message.into(),
        }
    }

    /// The ERR packet payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(9 + self.message.len());
        out.push(0xFF);
        out.extend_from_slice(&self.code.to_le_bytes());
        out.push(b'#');
        out.extend_from_slice(&self.sqlstate);
        out.extend_from_slice(self.message.as_bytes());
        out
    }

    /// Parses an ERR packet payload (header byte 0xFF included).
    pub fn parse(payload: &[u8]) -> Option<Self> {
        if payload.len() < 3 || payload[0] != 0xFF {
            return None;
        }
        let code = u16::from_le_bytes([payload[1], payload[2]]);
        let rest = &payload[3..];
        let (state, msg) = match rest.first() {
            Some(b'#') if rest.len() >= 6 => (&rest[1..6], &rest[6..]),
            _ => (&b"HY000"[..], rest),
        };
        let mut sqlstate = [0u8; 5];
        sqlstate.copy_from_slice(state);
        Some(Self {
            code,
            sqlstate,
            message: String::from_utf8_lossy(msg).into_owned(),
        })
    }
}

/// A server's error as the core carries it, and back: the same three
/// fields, without the packet.
impl From<ErrInfo> for DbError {
    fn from(err: ErrInfo) -> DbError {
        DbError {
            code: err.code,
            sqlstate: err.sqlstate,
            message: err.message,
        }
    }
}

impl From<&DbError> for ErrInfo {
    fn from(err: &DbError) -> ErrInfo {
        ErrInfo {
            code: err.code,
            sqlstate: err.sqlstate,
            message: err.message.clone(),
        }
    }
}

impl std::fmt::Display for ErrInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ERROR {} ({}): {}",
            self.code,
            String::from_utf8_lossy(&self.sqlstate),
            self.message
        )
    }
}

/// What an OK packet (or an OK-shaped end of result set) says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OkInfo {
    pub affected_rows: u64,
    pub last_insert_id: u64,
    pub status: u16,
    pub warnings: u16,
    /// The counts of the human-readable info ("Rows matched: 3  Changed: 3
    /// Warnings: 0"), when the server sent one.
    pub info: Option<WriteCounts>,
}

/// Reads the counts of MariaDB's info text ("Rows matched: 3  Changed: 3
/// Warnings: 0", "Records: 3  Duplicates: 0  Warnings: 0").
pub fn parse_info(text: &str) -> Option<WriteCounts> {
    let numbers: Vec<u64> = text
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect();
    match (
        text.starts_with("Rows matched:"),
        text.starts_with("Records:"),
        numbers.as_slice(),
    ) {
        (true, _, [matched, changed, warnings]) => Some(WriteCounts::Update {
            matched: *matched,
            changed: *changed,
            warnings: *warnings,
        }),
        (_, true, [records, duplicates, warnings]) => Some(WriteCounts::Insert {
            records: *records,
            duplicates: *duplicates,
            warnings: *warnings,
        }),
        _ => None,
    }
}

/// The info text of `counts` as MariaDB words it.
pub fn info_text(counts: &WriteCounts) -> String {
    match counts {
        WriteCounts::Update {
            matched,
            changed,
            warnings,
        } => format!("Rows matched: {matched}  Changed: {changed}  Warnings: {warnings}"),
        WriteCounts::Insert {
            records,
            duplicates,
            warnings,
        } => format!("Records: {records}  Duplicates: {duplicates}  Warnings: {warnings}"),
    }
}

/// The proxy's view of an OK: what adds up across nodes.
impl From<OkInfo> for WriteDone {
    fn from(ok: OkInfo) -> Self {
        WriteDone {
            affected_rows: ok.affected_rows,
            last_insert_id: ok.last_insert_id,
            warnings: u64::from(ok.warnings),
            counts: ok.info,
        }
    }
}

impl OkInfo {
    /// The OK packet payload (header 0x00).
    pub fn encode(&self) -> Vec<u8> {
        self.encode_with_header(0x00)
    }

    /// The OK packet payload with the given header byte (0xFE ends a result
    /// set when CLIENT_DEPRECATE_EOF is on).
    pub fn encode_with_header(&self, header: u8) -> Vec<u8> {
        let mut out = Vec::with_capacity(16);
        out.push(header);
        put_lenenc_int(&mut out, self.affected_rows);
        put_lenenc_int(&mut out, self.last_insert_id);
        out.extend_from_slice(&self.status.to_le_bytes());
        out.extend_from_slice(&self.warnings.to_le_bytes());
        if let Some(info) = self.info {
            // MariaDB sends the info as a length-encoded string.
            put_lenenc_str(&mut out, info_text(&info).as_bytes());
        }
        out
    }

    /// Parses an OK packet payload (header 0x00 or 0xFE).
    pub fn parse(payload: &[u8]) -> Option<Self> {
        let mut rest = payload.get(1..)?;
        let affected_rows = take_lenenc_int(&mut rest)?;
        let last_insert_id = take_lenenc_int(&mut rest)?;
        let status = u16::from_le_bytes([*rest.first()?, *rest.get(1)?]);
        let warnings = match rest.get(2..4) {
            Some(w) => u16::from_le_bytes([w[0], w[1]]),
            None => 0,
        };
        let mut tail = rest.get(4..).unwrap_or(&[]);
        let info = take_lenenc_int(&mut tail)
            .and_then(|len| tail.get(..usize::try_from(len).ok()?))
            .and_then(|text| parse_info(&String::from_utf8_lossy(text)));
        Some(Self {
            affected_rows,
            last_insert_id,
            status,
            warnings,
            info,
        })
    }
}

/// An EOF packet payload.
pub fn encode_eof(warnings: u16, status: u16) -> Vec<u8> {
    let mut out = vec![0xFE];
    out.extend_from_slice(&warnings.to_le_bytes());
    out.extend_from_slice(&status.to_le_bytes());
    out
}

/// Status flags of an EOF packet payload (0xFE, warnings, status).
pub fn eof_status(payload: &[u8]) -> u16 {
    match payload.get(3..5) {
        Some(s) => u16::from_le_bytes([s[0], s[1]]),
        None => 0,
    }
}

/// Appends a length-encoded integer.
pub fn put_lenenc_int(out: &mut Vec<u8>, v: u64) {
    match v {
        0..=250 => out.push(v as u8),
        251..=0xFFFF => {
            out.push(0xFC);
            out.extend_from_slice(&(v as u16).to_le_bytes());
        }
        0x1_0000..=0xFF_FFFF => {
            out.push(0xFD);
            out.extend_from_slice(&(v as u32).to_le_bytes()[..3]);
        }
        _ => {
            out.push(0xFE);
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
}

/// Appends a length-encoded string.
pub fn put_lenenc_str(out: &mut Vec<u8>, s: &[u8]) {
    put_lenenc_int(out, s.len() as u64);
    out.extend_from_slice(s);
}

/// Reads a length-encoded integer from the front of `buf`.
pub fn take_lenenc_int(buf: &mut &[u8]) -> Option<u64> {
    let (first, rest) = buf.split_first()?;
    let (v, used) = match *first {
        n @ 0..=250 => (u64::from(n), 0),
        0xFC => (
            u64::from(u16::from_le_bytes([*rest.first()?, *rest.get(1)?])),
            2,
        ),
        0xFD => {
            let b = rest.get(..3)?;
            (
                u64::from(b[0]) | u64::from(b[1]) << 8 | u64::from(b[2]) << 16,
                3,
            )
        }
        0xFE => {
            let b: [u8; 8] = rest.get(..8)?.try_into().ok()?;
            (u64::from_le_bytes(b), 8)
        }
        _ => return None,
    };
    *buf = &rest[used..];
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ok_round_trip() {
        let ok = OkInfo {
            affected_rows: 70_000,
            last_insert_id: 1 << 40,
            status: status::AUTOCOMMIT | status::MORE_RESULTS_EXISTS,
            warnings: 2,
            info: Some(WriteCounts::Update {
                matched: 3,
                changed: 2,
                warnings: 0,
            }),
        };
        assert_eq!(OkInfo::parse(&ok.encode()), Some(ok));
        assert_eq!(OkInfo::parse(&ok.encode_with_header(0xFE)), Some(ok));
    }

    #[test]
    fn info_counts_add_up() {
        let a = parse_info("Records: 3  Duplicates: 1  Warnings: 0").unwrap();
        let b = parse_info("Records: 5  Duplicates: 0  Warnings: 2").unwrap();
        assert_eq!(
            info_text(&a.sum_with(b)),
            "Records: 8  Duplicates: 1  Warnings: 2"
        );
        assert_eq!(parse_info("(no info)"), None);
    }

    #[test]
    fn err_round_trip() {
        let err = ErrInfo::new(1049, "42000", "Unknown database 'nope'");
        let bytes = err.encode();
        assert_eq!(&bytes[..4], &[0xFF, 0x19, 0x04, b'#']);
        assert_eq!(ErrInfo::parse(&bytes), Some(err));
    }

    #[test]
    fn lenenc_boundaries() {
        for v in [
            0,
            250,
            251,
            0xFFFF,
            0x1_0000,
            0xFF_FFFF,
            0x100_0000,
            u64::MAX,
        ] {
            let mut out = Vec::new();
            put_lenenc_int(&mut out, v);
            let mut slice = &out[..];
            assert_eq!(take_lenenc_int(&mut slice), Some(v));
            assert!(slice.is_empty());
        }
    }

    #[test]
    fn eof_status_reads_flags() {
        assert_eq!(eof_status(&encode_eof(1, 0x0022)), 0x0022);
    }
}
