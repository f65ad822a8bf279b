//! The COM_STMT_SEND_LONG_DATA a prepared statement holds until it
//! executes, bounded before it is kept.
//!
//! The server appends each packet to its parameter and refuses a parameter
//! past `max_allowed_packet`. The proxy keeps the packets themselves (the
//! execution may run on any pooled connection, which gets them replayed
//! first, or be planned over several nodes, which needs the values), so
//! it bounds the session's sum as well (`server.max_long_data_per_session`).
//! A refusal is reported as the server reports it: by the statement's
//! executions (the send itself has no reply) until COM_STMT_RESET.

use std::borrow::Cow;

use shardgate_core::error::{ErrorKind, ProxyError};

use crate::stmt::long_data_param;

/// Bytes before a packet's data: the command, statement id, parameter.
const HEADER: usize = 7;

/// The bounds long data is kept under.
#[derive(Debug, Clone, Copy)]
pub struct LongDataLimits {
    /// Per parameter (`server.max_allowed_packet`).
    pub per_parameter: usize,
    /// What the session's statements may still add between them.
    pub session_left: usize,
    /// The session's whole (`server.max_long_data_per_session`), for the message.
    pub per_session: usize,
}

/// Why a statement's long data was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Sent for a parameter the statement does not have.
    NoSuchParameter,
    /// One parameter's data past `max_allowed_packet`.
    ParameterTooLong,
    /// The session's long data past its bound.
    SessionFull { limit: usize },
}

impl Refusal {
    /// The error the statement's execution answers with.
    pub fn error(self) -> ProxyError {
        match self {
            // The server's own words for both.
            Refusal::NoSuchParameter => ProxyError::new(
                ErrorKind::BadArguments,
                "Incorrect arguments to mysqld_stmt_send_long_data",
            ),
            Refusal::ParameterTooLong => ProxyError::new(
                ErrorKind::LongDataTooLong,
                "Parameter of prepared statement which is set through mysql_send_long_data() is longer than 'max_allowed_packet' bytes",
            ),
            Refusal::SessionFull { limit } => ProxyError::new(
                ErrorKind::LongDataTooLong,
                format!(
                    "Parameters of prepared statements set through mysql_send_long_data() and not yet executed are longer than {limit} bytes in this session; execute or reset them first, or raise server.max_long_data_per_session in the ShardGate config"
                ),
            ),
        }
    }
}

/// One statement's long data: its packets as sent, or why they were refused.
#[derive(Debug, Default)]
pub struct LongData {
    packets: Vec<Vec<u8>>,
    /// Data bytes per parameter, to bound each as the server does.
    per_parameter: Vec<(u16, usize)>,
    refused: Option<Refusal>,
}

impl LongData {
    /// Whether an execution has packets to send first, or a refusal to report.
    pub fn is_pending(&self) -> bool {
        !self.packets.is_empty() || self.refused.is_some()
    }

    /// Bytes kept.
    pub fn bytes(&self) -> usize {
        self.packets.iter().map(Vec::len).sum()
    }

    /// Keeps `payload` (a COM_STMT_SEND_LONG_DATA of a statement with
    /// `num_params` parameters), or refuses it and drops what was kept:
    /// the statement cannot execute with it any more. Returns the change
    /// in bytes kept. A packet too short to name a parameter is ignored,
    /// as the server ignores it.
    pub fn add(&mut self, payload: &[u8], num_params: u16, limits: LongDataLimits) -> isize {
        if self.refused.is_some() || payload.len() < HEADER {
            return 0;
        }
        let refusal = match long_data_param(payload) {
            Some(param) if param < num_params => {
                let data = payload.len() - HEADER;
                let so_far = self
                    .per_parameter
                    .iter()
                    .find(|(p, _)| *p == param)
                    .map_or(0, |(_, n)| *n);
                if so_far.saturating_add(data) > limits.per_parameter {
                    Refusal::ParameterTooLong
                } else if payload.len() > limits.session_left {
                    Refusal::SessionFull {
                        limit: limits.per_session,
                    }
                } else {
                    match self.per_parameter.iter_mut().find(|(p, _)| *p == param) {
                        Some((_, n)) => *n += data,
                        None => self.per_parameter.push((param, data)),
                    }
                    self.packets.push(payload.to_vec());
                    return isize::try_from(payload.len()).unwrap_or(isize::MAX);
                }
            }
            _ => Refusal::NoSuchParameter,
        };
        let freed = self.bytes();
        self.packets = Vec::new();
        self.per_parameter.clear();
        self.refused = Some(refusal);
        -isize::try_from(freed).unwrap_or(isize::MAX)
    }

    /// The packets for an execution, which consumes them; the refusal
    /// instead, which stays until `reset`.
    pub fn take(&mut self) -> Result<Vec<Vec<u8>>, Refusal> {
        if let Some(refusal) = self.refused {
            return Err(refusal);
        }
        self.per_parameter.clear();
        Ok(std::mem::take(&mut self.packets))
    }

    /// Forgets the packets and any refusal (COM_STMT_RESET).
    pub fn reset(&mut self) {
        *self = LongData::default();
    }
}

/// Each parameter's data from `packets`, its chunks joined in the order sent.
pub fn parameter_values(packets: &[Vec<u8>]) -> Vec<(u16, Cow<'_, [u8]>)> {
    let mut values: Vec<(u16, Cow<'_, [u8]>)> = Vec::new();
    for packet in packets {
        let (Some(param), Some(data)) = (long_data_param(packet), packet.get(HEADER..)) else {
            continue;
        };
        match values.iter_mut().find(|(p, _)| *p == param) {
            Some((_, value)) => value.to_mut().extend_from_slice(data),
            None => values.push((param, Cow::Borrowed(data))),
        }
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(param: u16, data: &[u8]) -> Vec<u8> {
        let mut p = vec![0x18, 1, 0, 0, 0];
        p.extend_from_slice(&param.to_le_bytes());
        p.extend_from_slice(data);
        p
    }

    fn limits(per_parameter: usize, session_left: usize) -> LongDataLimits {
        LongDataLimits {
            per_parameter,
            session_left,
            per_session: 1000,
        }
    }

    #[test]
    fn chunks_of_a_parameter_are_joined_in_order() {
        let mut data = LongData::default();
        assert_eq!(data.add(&packet(1, b"ab"), 2, limits(10, 100)), 9);
        data.add(&packet(0, b"x"), 2, limits(10, 100));
        data.add(&packet(1, b"cd"), 2, limits(10, 100));
        assert!(data.is_pending());
        let packets = data.take().unwrap();
        let values = parameter_values(&packets);
        assert_eq!(
            values,
            vec![
                (1, Cow::Borrowed(&b"abcd"[..])),
                (0, Cow::Borrowed(&b"x"[..]))
            ]
        );
        assert!(!data.is_pending(), "taken by the execution");
    }

    #[test]
    fn a_parameter_past_its_bound_is_refused_until_reset() {
        let mut data = LongData::default();
        data.add(&packet(0, b"12345"), 1, limits(8, 100));
        // 5 + 4 > 8: what was kept goes, and so does whatever follows.
        assert_eq!(data.add(&packet(0, b"6789"), 1, limits(8, 100)), -12);
        assert_eq!(data.add(&packet(0, b"1"), 1, limits(8, 100)), 0);
        assert_eq!(data.bytes(), 0);
        assert_eq!(data.take(), Err(Refusal::ParameterTooLong));
        assert_eq!(data.take(), Err(Refusal::ParameterTooLong), "until reset");
        data.reset();
        assert!(!data.is_pending());
        assert_eq!(data.take(), Ok(vec![]));
    }

    #[test]
    fn the_session_bound_and_unknown_parameters_are_refused() {
        let mut data = LongData::default();
        data.add(&packet(0, b"12345"), 1, limits(100, 11));
        assert_eq!(data.take(), Err(Refusal::SessionFull { limit: 1000 }));
        let mut data = LongData::default();
        data.add(&packet(1, b"1"), 1, limits(100, 100));
        assert_eq!(data.take(), Err(Refusal::NoSuchParameter));
        let err = Refusal::ParameterTooLong.error();
        assert_eq!(err.kind, ErrorKind::LongDataTooLong);
        assert!(Refusal::SessionFull { limit: 1000 }
            .error()
            .message
            .contains("server.max_long_data_per_session"));
    }
}
