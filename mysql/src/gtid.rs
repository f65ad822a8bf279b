//! MariaDB GTIDs (`domain-server-sequence`) and positions (one GTID per
//! domain, comma-separated), enough to tell whether a replica has applied
//! a given transaction.

use std::fmt;

use shardgate_core::backend::ReplicaPosition;

/// One MariaDB GTID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Gtid {
    pub domain: u32,
    pub server: u32,
    pub sequence: u64,
}

impl Gtid {
    /// Parses `0-13306-9727`.
    pub fn parse(text: &str) -> Option<Gtid> {
        let mut parts = text.trim().splitn(3, '-');
        Some(Gtid {
            domain: parts.next()?.parse().ok()?,
            server: parts.next()?.parse().ok()?,
            sequence: parts.next()?.parse().ok()?,
        })
    }
}

impl fmt::Display for Gtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.domain, self.server, self.sequence)
    }
}

/// A replication position: the last GTID applied in each domain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Position(Vec<Gtid>);

impl Position {
    /// Parses `@@gtid_slave_pos` (`0-1-5,1-2-9`; empty: nothing applied).
    pub fn parse(text: &str) -> Position {
        Position(
            text.split(',')
                .filter(|p| !p.trim().is_empty())
                .filter_map(Gtid::parse)
                .collect(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether the transaction `gtid` is included (sequences grow within a
    /// domain, whichever server wrote them).
    pub fn includes(&self, gtid: &Gtid) -> bool {
        self.0
            .iter()
            .any(|g| g.domain == gtid.domain && g.sequence >= gtid.sequence)
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, g) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{g}")?;
        }
        Ok(())
    }
}

impl ReplicaPosition for Position {
    /// Every GTID of `other` is included.
    fn includes_all(&self, other: &Position) -> bool {
        other.0.iter().all(|g| self.includes(g))
    }

    fn is_empty(&self) -> bool {
        Position::is_empty(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_include_what_they_passed() {
        let pos = Position::parse("0-13306-9727,1-7-3");
        let at = |s: &str| Gtid::parse(s).unwrap();
        assert!(pos.includes(&at("0-13306-9727")));
        assert!(pos.includes(&at("0-13306-100")));
        assert!(!pos.includes(&at("0-13306-9728")));
        assert!(pos.includes(&at("1-7-3")));
        assert!(!pos.includes(&at("2-1-1")));
        assert!(!Position::parse("").includes(&at("0-1-1")));
        assert_eq!(at("0-13306-9727").to_string(), "0-13306-9727");
        assert_eq!(Gtid::parse("garbage"), None);
        assert!(pos.includes_all(&Position::parse("0-13306-9000,1-7-3")));
        assert!(!pos.includes_all(&Position::parse("0-13306-9000,1-7-4")));
        assert!(pos.includes_all(&Position::parse("")));
    }
}
