//! MariaDB's own binlog events, which mysql_common (written for MySQL)
//! does not decode: their type codes, and the GTID event that opens every
//! event group.

pub(crate) const GTID_EVENT: u8 = 162;
pub(crate) const QUERY_COMPRESSED_EVENT: u8 = 165;
/// WRITE/UPDATE/DELETE_ROWS_COMPRESSED_EVENT(_V1): 166..=171.
pub(crate) const COMPRESSED_ROWS_EVENTS: std::ops::RangeInclusive<u8> = 166..=171;

/// The group is one statement with no COMMIT after it (DDL, or a write to
/// a non-transactional table logged alone).
const FL_STANDALONE: u8 = 1;
/// The group carries a commit id for parallel replication.
const FL_GROUP_COMMIT_ID: u8 = 2;
/// The group is the XA PREPARE part of an XA transaction.
const FL_PREPARED_XA: u8 = 64;

/// A decoded MariaDB GTID event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MariadbGtid {
    pub domain_id: u32,
    pub server_id: u32,
    pub sequence: u64,
    pub standalone: bool,
    pub prepared_xa: bool,
}

impl MariadbGtid {
    /// Decodes the event body (after the common header, checksum removed):
    /// sequence number (8 bytes), domain id (4), flags (1), then optional
    /// parts that this reader does not need. The server id is the event
    /// header's.
    pub fn parse(data: &[u8], server_id: u32) -> Option<Self> {
        let sequence = u64::from_le_bytes(data.get(0..8)?.try_into().ok()?);
        let domain_id = u32::from_le_bytes(data.get(8..12)?.try_into().ok()?);
        let flags = *data.get(12)?;
        // A commit id, when flagged, must be there: a shorter body is not a
        // GTID event this reader understands.
        if flags & FL_GROUP_COMMIT_ID != 0 {
            data.get(13..21)?;
        }
        Some(MariadbGtid {
            domain_id,
            server_id,
            sequence,
            standalone: flags & FL_STANDALONE != 0,
            prepared_xa: flags & FL_PREPARED_XA != 0,
        })
    }
}

impl std::fmt::Display for MariadbGtid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}-{}", self.domain_id, self.server_id, self.sequence)
    }
}

/// The table id at the start of a (compressed) rows event body: 6 bytes.
pub(crate) fn rows_event_table_id(data: &[u8]) -> Option<u64> {
    let bytes = data.get(0..6)?;
    Some(
        bytes
            .iter()
            .rev()
            .fold(0, |acc, b| (acc << 8) | u64::from(*b)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gtid_event_decodes_domain_server_sequence_and_flags() {
        let mut body = Vec::new();
        body.extend_from_slice(&42u64.to_le_bytes());
        body.extend_from_slice(&3u32.to_le_bytes());
        body.push(FL_STANDALONE);
        let gtid = MariadbGtid::parse(&body, 13309).unwrap();
        assert_eq!(gtid.to_string(), "3-13309-42");
        assert!(gtid.standalone);
        assert!(!gtid.prepared_xa);

        // A commit id is announced but missing.
        body[12] = FL_GROUP_COMMIT_ID | FL_PREPARED_XA;
        assert_eq!(MariadbGtid::parse(&body, 1), None);
        body.extend_from_slice(&7u64.to_le_bytes());
        let gtid = MariadbGtid::parse(&body, 1).unwrap();
        assert!(!gtid.standalone);
        assert!(gtid.prepared_xa);
        assert_eq!(MariadbGtid::parse(&body[..10], 1), None);
    }

    #[test]
    fn table_id_is_six_little_endian_bytes() {
        assert_eq!(
            rows_event_table_id(&[0x01, 0x02, 0, 0, 0, 0x01, 0xff]),
            Some(0x0100_0000_0201)
        );
        assert_eq!(rows_event_table_id(&[1, 2]), None);
    }
}
