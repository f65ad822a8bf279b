//! Binlog positions: where a reader is in a primary's binlog.

use std::fmt;

/// A position in a primary's binlog: file name and byte offset. Orders
/// as the binlog does (file sequence first, then offset), since MariaDB
/// names files `<base>.000001`, `<base>.000002`, ...
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct BinlogPosition {
    pub file: String,
    pub pos: u64,
}

impl fmt::Display for BinlogPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_order_by_file_then_offset() {
        let p = |file: &str, pos| BinlogPosition {
            file: file.into(),
            pos,
        };
        assert!(p("bin.000001", 900) < p("bin.000002", 4));
        assert!(p("bin.000002", 4) < p("bin.000002", 120));
        assert_eq!(p("bin.000003", 7).to_string(), "bin.000003:7");
    }
}
