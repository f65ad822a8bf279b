//! Finds where a backend's response to one command ends, packet by packet,
//! without decoding rows: this is what lets a single-node result be
//! forwarded byte for byte while the proxy still learns the final status
//! (transaction state, last insert id) and whether more result sets follow.

use super::ok_err::{eof_status, status, take_lenenc_int, ErrInfo, OkInfo};
use super::packet::MAX_PAYLOAD;
use crate::codes;

/// The shape of the response a command gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseKind {
    /// One OK, ERR or EOF packet (COM_PING, COM_INIT_DB, COM_STMT_RESET, ...).
    Single,
    /// OK, ERR, or result sets (COM_QUERY, COM_STMT_EXECUTE).
    ResultSets,
    /// COM_STMT_PREPARE: prepare-OK with parameter and column definitions, or ERR.
    Prepare,
    /// COM_FIELD_LIST: column definitions up to EOF, or ERR.
    FieldList,
}

/// How the response ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok(OkInfo),
    Err(ErrInfo),
    /// A prepare-OK: the backend's statement id and its counts.
    Prepared(PrepareOk),
}

impl Outcome {
    /// Server status flags after the response, when it says.
    pub fn status(&self) -> Option<u16> {
        match self {
            Outcome::Ok(ok) => Some(ok.status),
            _ => None,
        }
    }
}

/// The fixed part of a COM_STMT_PREPARE response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrepareOk {
    pub statement_id: u32,
    pub num_columns: u16,
    pub num_params: u16,
}

impl PrepareOk {
    pub fn parse(payload: &[u8]) -> Option<Self> {
        if payload.len() < 9 || payload[0] != 0x00 {
            return None;
        }
        Some(Self {
            statement_id: u32::from_le_bytes([payload[1], payload[2], payload[3], payload[4]]),
            num_columns: u16::from_le_bytes([payload[5], payload[6]]),
            num_params: u16::from_le_bytes([payload[7], payload[8]]),
        })
    }
}

#[derive(Debug, Clone, Copy)]
enum State {
    Start,
    /// `remaining` column definitions, then an EOF unless DEPRECATE_EOF.
    Columns {
        remaining: u64,
        then: AfterColumns,
    },
    ColumnsEof {
        then: AfterColumns,
    },
    Rows,
    /// COM_FIELD_LIST: definitions until EOF.
    FieldDefs,
}

#[derive(Debug, Clone, Copy)]
enum AfterColumns {
    Rows,
    /// In a prepare response: parameter definitions come first, then columns.
    PrepareColumns(u16),
    PrepareDone,
}

/// Feeds on the payload of each packet of one response; says when it ends.
#[derive(Debug)]
pub struct ResponseScanner {
    kind: ResponseKind,
    deprecate_eof: bool,
    state: State,
    /// The previous packet was full size, so this one continues it.
    continuing: bool,
    prepared: Option<PrepareOk>,
    last_ok: Option<OkInfo>,
    /// Column count packets carry MariaDB's "metadata follows" byte
    /// (MARIADB_CLIENT_CACHE_METADATA).
    metadata_flag: bool,
    /// The packet fed last was an OK or EOF, which carries status flags.
    status_packet: bool,
}

/// What the scanner learned from one packet.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    More,
    Done(Outcome),
}

impl ResponseScanner {
    pub fn new(kind: ResponseKind, deprecate_eof: bool) -> Self {
        let state = match kind {
            ResponseKind::FieldList => State::FieldDefs,
            _ => State::Start,
        };
        Self {
            kind,
            deprecate_eof,
            state,
            continuing: false,
            prepared: None,
            last_ok: None,
            metadata_flag: false,
            status_packet: false,
        }
    }

    /// Reads column count packets as a connection with MariaDB's metadata
    /// caching sends them: with a byte saying whether definitions follow.
    pub fn with_metadata_flag(mut self, on: bool) -> Self {
        self.metadata_flag = on;
        self
    }

    /// Whether the next packet is a column (or parameter) definition.
    pub fn expects_column_definition(&self) -> bool {
        !self.continuing && matches!(self.state, State::Columns { .. })
    }

    /// Whether `payload`, the next packet, is a column count packet with
    /// MariaDB's "metadata follows" byte (its last byte).
    pub fn expects_column_count(&self, payload: &[u8]) -> bool {
        self.metadata_flag
            && !self.continuing
            && self.kind == ResponseKind::ResultSets
            && matches!(self.state, State::Start)
            && payload.len() >= 2
            && !matches!(payload[0], 0x00 | 0xFB | 0xFF)
    }

    /// Whether the packet fed last was an OK or EOF packet, whose status
    /// flags [`StatusFix`] may adjust.
    pub fn fed_status_packet(&self) -> bool {
        self.status_packet
    }

    /// Feeds one physical packet's payload.
    pub fn feed(&mut self, payload: &[u8]) -> Step {
        self.status_packet = false;
        let continuation = self.continuing;
        self.continuing = payload.len() == MAX_PAYLOAD;
        if continuation {
            return Step::More;
        }
        let first = payload.first().copied();
        if first == Some(0xFF) {
            return Step::Done(Outcome::Err(ErrInfo::parse(payload).unwrap_or_else(|| {
                ErrInfo::new(
                    codes::ER_UNKNOWN_ERROR,
                    "HY000",
                    "malformed error packet from backend",
                )
            })));
        }
        match self.state {
            State::Start => self.on_first(payload),
            State::Columns { remaining, then } => {
                let remaining = remaining.saturating_sub(1);
                self.state = if remaining > 0 {
                    State::Columns { remaining, then }
                } else if self.deprecate_eof {
                    return self.after_columns(then);
                } else {
                    State::ColumnsEof { then }
                };
                Step::More
            }
            State::ColumnsEof { then } => {
                self.status_packet = true;
                self.after_columns(then)
            }
            State::Rows => {
                if self.is_terminator(payload) {
                    self.status_packet = true;
                    let status = self.terminator_status(payload);
                    self.end_of_result(status)
                } else {
                    Step::More
                }
            }
            State::FieldDefs => {
                if self.is_terminator(payload) {
                    self.status_packet = true;
                    let status = self.terminator_status(payload);
                    Step::Done(Outcome::Ok(OkInfo {
                        status,
                        ..OkInfo::default()
                    }))
                } else {
                    Step::More
                }
            }
        }
    }

    fn on_first(&mut self, payload: &[u8]) -> Step {
        match (self.kind, payload.first().copied()) {
            (ResponseKind::Prepare, Some(0x00)) => {
                let Some(ok) = PrepareOk::parse(payload) else {
                    return malformed();
                };
                self.prepared = Some(ok);
                if ok.num_params > 0 {
                    self.state = State::Columns {
                        remaining: u64::from(ok.num_params),
                        then: AfterColumns::PrepareColumns(ok.num_columns),
                    };
                    Step::More
                } else {
                    self.start_prepare_columns(ok.num_columns)
                }
            }
            (ResponseKind::Single, Some(0xFE)) => {
                self.status_packet = true;
                Step::Done(Outcome::Ok(OkInfo {
                    status: eof_status(payload),
                    ..OkInfo::default()
                }))
            }
            (_, Some(0x00)) => match OkInfo::parse(payload) {
                Some(ok) => {
                    self.status_packet = true;
                    self.end_of_result(ok.status).with_ok(ok)
                }
                None => malformed(),
            },
            // COM_STATISTICS answers with a bare string.
            (ResponseKind::Single, _) => Step::Done(Outcome::Ok(OkInfo::default())),
            (ResponseKind::ResultSets, Some(0xFB)) => Step::Done(Outcome::Err(ErrInfo::new(
                codes::ER_NOT_ALLOWED_COMMAND,
                "42000",
                "LOAD DATA LOCAL INFILE is not supported through ShardGate",
            ))),
            (ResponseKind::ResultSets, Some(_)) => {
                let mut rest = payload;
                match take_lenenc_int(&mut rest) {
                    // Metadata skipped: the column count is followed by
                    // the EOF that would end the definitions, or the rows.
                    Some(n) if n > 0 && self.metadata_flag && rest.first() == Some(&0) => {
                        self.state = if self.deprecate_eof {
                            State::Rows
                        } else {
                            State::ColumnsEof {
                                then: AfterColumns::Rows,
                            }
                        };
                        Step::More
                    }
                    Some(n) if n > 0 => {
                        self.state = State::Columns {
                            remaining: n,
                            then: AfterColumns::Rows,
                        };
                        Step::More
                    }
                    _ => malformed(),
                }
            }
            _ => malformed(),
        }
    }

    fn start_prepare_columns(&mut self, num_columns: u16) -> Step {
        if num_columns > 0 {
            self.state = State::Columns {
                remaining: u64::from(num_columns),
                then: AfterColumns::PrepareDone,
            };
            Step::More
        } else {
            self.prepare_done()
        }
    }

    fn prepare_done(&mut self) -> Step {
        match self.prepared {
            Some(ok) => Step::Done(Outcome::Prepared(ok)),
            None => malformed(),
        }
    }

    fn after_columns(&mut self, then: AfterColumns) -> Step {
        match then {
            AfterColumns::Rows => {
                self.state = State::Rows;
                Step::More
            }
            AfterColumns::PrepareColumns(n) => self.start_prepare_columns(n),
            AfterColumns::PrepareDone => self.prepare_done(),
        }
    }

    /// EOF (or, with DEPRECATE_EOF, an OK with header 0xFE) ends a row stream.
    /// A row can start with 0xFE only if its first value is 16 MiB or longer,
    /// which makes the packet full size.
    fn is_terminator(&self, payload: &[u8]) -> bool {
        payload.first() == Some(&0xFE)
            && if self.deprecate_eof {
                payload.len() < MAX_PAYLOAD
            } else {
                payload.len() < 9
            }
    }

    fn terminator_status(&mut self, payload: &[u8]) -> u16 {
        if self.deprecate_eof {
            match OkInfo::parse(payload) {
                Some(ok) => {
                    self.last_ok = Some(ok);
                    ok.status
                }
                None => 0,
            }
        } else {
            eof_status(payload)
        }
    }

    fn end_of_result(&mut self, status_flags: u16) -> Step {
        if status_flags & status::MORE_RESULTS_EXISTS != 0 && self.kind == ResponseKind::ResultSets
        {
            self.state = State::Start;
            return Step::More;
        }
        let ok = self.last_ok.take().unwrap_or(OkInfo {
            status: status_flags,
            ..OkInfo::default()
        });
        Step::Done(Outcome::Ok(OkInfo {
            status: status_flags,
            ..ok
        }))
    }
}

/// Status flags the proxy sets in a forwarded reply's OK and EOF packets,
/// so that the client sees the session's state rather than one backend
/// connection's: a transaction open on other data sources, and more
/// results to come from the rest of a multi-statement.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusFix {
    /// Set in every OK and EOF packet.
    pub set: u16,
    /// Set in the packet that ends the reply.
    pub set_at_end: u16,
}

impl StatusFix {
    pub fn is_none(&self) -> bool {
        self.set == 0 && self.set_at_end == 0
    }

    /// Applies the fix to an OK or EOF packet's payload in place; `last`
    /// says whether it ends the reply.
    pub fn apply(&self, payload: &mut [u8], last: bool) {
        let bits = if last {
            self.set | self.set_at_end
        } else {
            self.set
        };
        if bits == 0 {
            return;
        }
        if let Some(at) = status_offset(payload) {
            let status = u16::from_le_bytes([payload[at], payload[at + 1]]) | bits;
            payload[at..at + 2].copy_from_slice(&status.to_le_bytes());
        }
    }
}

/// Where the status flags of an OK or EOF payload are.
fn status_offset(payload: &[u8]) -> Option<usize> {
    match payload.first()? {
        0xFE if payload.len() < 9 => (payload.len() >= 5).then_some(3),
        0x00 | 0xFE => {
            let mut rest = &payload[1..];
            take_lenenc_int(&mut rest)?;
            take_lenenc_int(&mut rest)?;
            let at = payload.len() - rest.len();
            (rest.len() >= 2).then_some(at)
        }
        _ => None,
    }
}

impl Step {
    /// Replaces the outcome of a finished OK step with the full OK packet.
    fn with_ok(self, ok: OkInfo) -> Step {
        match self {
            Step::Done(Outcome::Ok(_)) => Step::Done(Outcome::Ok(ok)),
            other => other,
        }
    }
}

fn malformed() -> Step {
    Step::Done(Outcome::Err(ErrInfo::new(
        codes::ER_UNKNOWN_ERROR,
        "HY000",
        "malformed response from backend",
    )))
}

#[cfg(test)]
mod tests {
    use super::super::ok_err::encode_eof;
    use super::*;

    fn feed_all(scanner: &mut ResponseScanner, packets: &[Vec<u8>]) -> Vec<Step> {
        packets.iter().map(|p| scanner.feed(p)).collect()
    }

    fn coldef() -> Vec<u8> {
        b"\x03def\x00\x00\x00\x01a\x00\x0c\x3f\x00\x0b\x00\x00\x00\x03\x00\x00\x00\x00\x00".to_vec()
    }

    #[test]
    fn text_result_with_eof() {
        let mut s = ResponseScanner::new(ResponseKind::ResultSets, false);
        let steps = feed_all(
            &mut s,
            &[
                vec![1],
                coldef(),
                encode_eof(0, 2),
                b"\x011".to_vec(),
                b"\xfb".to_vec(),
                encode_eof(0, 0x0003),
            ],
        );
        assert!(steps[..5].iter().all(|s| *s == Step::More));
        assert_eq!(
            steps[5],
            Step::Done(Outcome::Ok(OkInfo {
                status: 3,
                ..OkInfo::default()
            }))
        );
    }

    #[test]
    fn deprecate_eof_result_and_more_results() {
        let mut s = ResponseScanner::new(ResponseKind::ResultSets, true);
        let end_more = OkInfo {
            status: status::MORE_RESULTS_EXISTS | status::AUTOCOMMIT,
            ..OkInfo::default()
        }
        .encode_with_header(0xFE);
        let final_ok = OkInfo {
            status: status::AUTOCOMMIT,
            ..OkInfo::default()
        };
        let steps = feed_all(
            &mut s,
            &[
                vec![1],
                coldef(),
                b"\x011".to_vec(),
                end_more,
                final_ok.encode(),
            ],
        );
        assert!(steps[..4].iter().all(|s| *s == Step::More));
        assert_eq!(steps[4], Step::Done(Outcome::Ok(final_ok)));
    }

    #[test]
    fn metadata_flag_with_definitions() {
        let mut s = ResponseScanner::new(ResponseKind::ResultSets, true).with_metadata_flag(true);
        let count = vec![2, 1];
        assert!(s.expects_column_count(&count));
        let end = OkInfo::default().encode_with_header(0xFE);
        let steps = feed_all(
            &mut s,
            &[count, coldef(), coldef(), b"\x011\x012".to_vec(), end],
        );
        assert!(steps[..4].iter().all(|s| *s == Step::More));
        assert!(matches!(steps[4], Step::Done(Outcome::Ok(_))));
    }

    #[test]
    fn metadata_flag_without_definitions() {
        // DEPRECATE_EOF: the rows follow the count at once.
        let mut s = ResponseScanner::new(ResponseKind::ResultSets, true).with_metadata_flag(true);
        let end = OkInfo::default().encode_with_header(0xFE);
        let steps = feed_all(&mut s, &[vec![2, 0], b"\x011\x012".to_vec(), end]);
        assert_eq!(steps[..2], [Step::More, Step::More]);
        assert!(matches!(steps[2], Step::Done(Outcome::Ok(_))));
        // Without it, the EOF that would end the definitions comes first.
        let mut s = ResponseScanner::new(ResponseKind::ResultSets, false).with_metadata_flag(true);
        let steps = feed_all(
            &mut s,
            &[
                vec![2, 0],
                encode_eof(0, 2),
                b"\x011\x012".to_vec(),
                encode_eof(0, 2),
            ],
        );
        assert!(steps[..3].iter().all(|s| *s == Step::More));
        assert!(matches!(steps[3], Step::Done(Outcome::Ok(_))));
    }

    #[test]
    fn only_result_headers_are_column_counts() {
        let s = ResponseScanner::new(ResponseKind::ResultSets, true).with_metadata_flag(true);
        assert!(!s.expects_column_count(&OkInfo::default().encode()));
        assert!(!s.expects_column_count(b"\xff\x15\x04#42000"));
        assert!(!s.expects_column_count(&[1]), "no flag byte");
        let plain = ResponseScanner::new(ResponseKind::ResultSets, true);
        assert!(!plain.expects_column_count(&[1, 1]), "no metadata caching");
        let prepare = ResponseScanner::new(ResponseKind::Prepare, true).with_metadata_flag(true);
        assert!(!prepare.expects_column_count(&[1, 1]));
    }

    #[test]
    fn ok_carries_last_insert_id() {
        let mut s = ResponseScanner::new(ResponseKind::ResultSets, false);
        let ok = OkInfo {
            affected_rows: 1,
            last_insert_id: 42,
            status: 2,
            ..OkInfo::default()
        };
        assert_eq!(s.feed(&ok.encode()), Step::Done(Outcome::Ok(ok)));
    }

    #[test]
    fn error_ends_mid_rows() {
        let mut s = ResponseScanner::new(ResponseKind::ResultSets, true);
        s.feed(&[1]);
        s.feed(&coldef());
        s.feed(b"\x011");
        let err = ErrInfo::new(1317, "70100", "Query execution was interrupted");
        assert_eq!(s.feed(&err.encode()), Step::Done(Outcome::Err(err)));
    }

    #[test]
    fn prepare_with_params_and_columns() {
        let mut s = ResponseScanner::new(ResponseKind::Prepare, false);
        let ok = b"\x00\x07\x00\x00\x00\x01\x00\x02\x00\x00\x00\x00".to_vec();
        let steps = feed_all(
            &mut s,
            &[
                ok,
                coldef(),
                coldef(),
                encode_eof(0, 2),
                coldef(),
                encode_eof(0, 2),
            ],
        );
        assert!(steps[..5].iter().all(|s| *s == Step::More));
        assert_eq!(
            steps[5],
            Step::Done(Outcome::Prepared(PrepareOk {
                statement_id: 7,
                num_columns: 1,
                num_params: 2
            }))
        );
    }

    #[test]
    fn prepare_without_defs_ends_at_once() {
        let mut s = ResponseScanner::new(ResponseKind::Prepare, true);
        let ok = b"\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00".to_vec();
        assert!(matches!(s.feed(&ok), Step::Done(Outcome::Prepared(_))));
    }

    #[test]
    fn field_list_until_eof() {
        let mut s = ResponseScanner::new(ResponseKind::FieldList, false);
        assert_eq!(s.feed(&coldef()), Step::More);
        assert!(matches!(
            s.feed(&encode_eof(0, 2)),
            Step::Done(Outcome::Ok(_))
        ));
    }

    #[test]
    fn status_fix_sets_flags_in_ok_and_eof() {
        let fix = StatusFix {
            set: status::IN_TRANS,
            set_at_end: status::MORE_RESULTS_EXISTS,
        };
        let mut eof = encode_eof(0, status::AUTOCOMMIT);
        fix.apply(&mut eof, false);
        assert_eq!(eof_status(&eof), status::AUTOCOMMIT | status::IN_TRANS);
        let ok = OkInfo {
            affected_rows: 300,
            last_insert_id: 70_000,
            status: status::AUTOCOMMIT,
            warnings: 1,
            info: None,
        };
        let mut packet = ok.encode_with_header(0xFE);
        fix.apply(&mut packet, true);
        let patched = OkInfo::parse(&packet).unwrap();
        assert_eq!(
            patched.status,
            status::AUTOCOMMIT | status::IN_TRANS | status::MORE_RESULTS_EXISTS
        );
        assert_eq!((patched.affected_rows, patched.warnings), (300, 1));
        let mut row = b"\x011".to_vec();
        fix.apply(&mut row, true);
        assert_eq!(row, b"\x011");
    }

    #[test]
    fn status_packets_are_recognised() {
        let mut s = ResponseScanner::new(ResponseKind::ResultSets, false);
        let mut seen = Vec::new();
        for p in [
            vec![1],
            coldef(),
            encode_eof(0, 2),
            b"\x011".to_vec(),
            encode_eof(0, 2),
        ] {
            s.feed(&p);
            seen.push(s.fed_status_packet());
        }
        assert_eq!(seen, [false, false, true, false, true]);
        let mut s = ResponseScanner::new(ResponseKind::ResultSets, true);
        s.feed(&OkInfo::default().encode());
        assert!(s.fed_status_packet());
    }

    #[test]
    fn full_size_row_continues() {
        let mut s = ResponseScanner::new(ResponseKind::ResultSets, false);
        s.feed(&[1]);
        s.feed(&coldef());
        s.feed(&encode_eof(0, 2));
        let mut big = vec![0u8; MAX_PAYLOAD];
        big[0] = 0xFE;
        assert_eq!(s.feed(&big), Step::More);
        // The continuation looks like an EOF but is row data.
        assert_eq!(s.feed(&encode_eof(0, 2)), Step::More);
        assert!(matches!(s.feed(&encode_eof(0, 2)), Step::Done(_)));
    }
}
