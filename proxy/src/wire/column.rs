//! Column definitions (protocol 4.1 `ColumnDefinition41` packets): the
//! type, flags and decimals that decide how a value is decoded, compared,
//! aggregated and re-encoded, and what the merge engine makes of them
//! (`ColumnInfo::meta`).

use shardgate_merge::{ColumnMeta, MergeError, TypeClass};

use super::ok_err::{put_lenenc_int, put_lenenc_str, take_lenenc_int};

/// MySQL column type codes (`enum_field_types`).
pub mod types {
    pub const DECIMAL: u8 = 0;
    pub const TINY: u8 = 1;
    pub const SHORT: u8 = 2;
    pub const LONG: u8 = 3;
    pub const FLOAT: u8 = 4;
    pub const DOUBLE: u8 = 5;
    pub const NULL: u8 = 6;
    pub const TIMESTAMP: u8 = 7;
    pub const LONGLONG: u8 = 8;
    pub const INT24: u8 = 9;
    pub const DATE: u8 = 10;
    pub const TIME: u8 = 11;
    pub const DATETIME: u8 = 12;
    pub const YEAR: u8 = 13;
    pub const NEWDATE: u8 = 14;
    pub const VARCHAR: u8 = 15;
    pub const BIT: u8 = 16;
    pub const TIMESTAMP2: u8 = 17;
    pub const DATETIME2: u8 = 18;
    pub const TIME2: u8 = 19;
    pub const JSON: u8 = 245;
    pub const NEWDECIMAL: u8 = 246;
    pub const ENUM: u8 = 247;
    pub const SET: u8 = 248;
    pub const TINY_BLOB: u8 = 249;
    pub const MEDIUM_BLOB: u8 = 250;
    pub const LONG_BLOB: u8 = 251;
    pub const BLOB: u8 = 252;
    pub const VAR_STRING: u8 = 253;
    pub const STRING: u8 = 254;
    pub const GEOMETRY: u8 = 255;
}

/// Column flag bits.
pub mod flags {
    pub const UNSIGNED: u16 = 32;
    pub const ZEROFILL: u16 = 64;
}

/// The `binary` character set number: byte strings, compared bytewise.
pub const BINARY_CHARSET: u16 = 63;

/// One column definition as sent by a data node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnInfo {
    pub catalog: String,
    pub schema: String,
    pub table: String,
    pub org_table: String,
    pub name: String,
    pub org_name: String,
    pub charset: u16,
    pub length: u32,
    pub column_type: u8,
    pub flags: u16,
    pub decimals: u8,
    /// The packet payload exactly as received (forwarded to the client).
    pub raw: Vec<u8>,
}

impl ColumnInfo {
    /// Parses a protocol 4.1 column definition payload.
    pub fn parse(payload: &[u8]) -> Result<ColumnInfo, MergeError> {
        let mut buf = payload;
        let mut text = || -> Result<String, MergeError> {
            let len = take_lenenc_int(&mut buf)
                .ok_or_else(|| malformed("truncated column definition"))?;
            let len = usize::try_from(len).map_err(|_| malformed("column name too long"))?;
            let bytes = buf
                .get(..len)
                .ok_or_else(|| malformed("truncated column definition"))?;
            buf = &buf[len..];
            Ok(String::from_utf8_lossy(bytes).into_owned())
        };
        let catalog = text()?;
        let schema = text()?;
        let table = text()?;
        let org_table = text()?;
        let name = text()?;
        let org_name = text()?;
        let fixed_len = take_lenenc_int(&mut buf)
            .ok_or_else(|| malformed("column definition without fixed fields"))?;
        let fixed = buf
            .get(..12)
            .filter(|_| fixed_len >= 12)
            .ok_or_else(|| malformed("column definition fixed fields truncated"))?;
        Ok(ColumnInfo {
            catalog,
            schema,
            table,
            org_table,
            name,
            org_name,
            charset: u16::from_le_bytes([fixed[0], fixed[1]]),
            length: u32::from_le_bytes([fixed[2], fixed[3], fixed[4], fixed[5]]),
            column_type: fixed[6],
            flags: u16::from_le_bytes([fixed[7], fixed[8]]),
            decimals: fixed[9],
            raw: payload.to_vec(),
        })
    }

    /// A column definition made by the proxy (for results it computes
    /// itself); `raw` is its encoding.
    pub fn synthetic(name: &str, column_type: u8, flags: u16, decimals: u8, charset: u16) -> Self {
        let mut col = ColumnInfo {
            catalog: "def".to_owned(),
            schema: String::new(),
            table: String::new(),
            org_table: String::new(),
            name: name.to_owned(),
            org_name: String::new(),
            charset,
            length: 0,
            column_type,
            flags,
            decimals,
            raw: Vec::new(),
        };
        col.raw = col.encode();
        col
    }

    /// Encodes the definition from its fields (ignoring `raw`).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        for s in [
            &self.catalog,
            &self.schema,
            &self.table,
            &self.org_table,
            &self.name,
            &self.org_name,
        ] {
            put_lenenc_str(&mut out, s.as_bytes());
        }
        put_lenenc_int(&mut out, 12);
        out.extend_from_slice(&self.charset.to_le_bytes());
        out.extend_from_slice(&self.length.to_le_bytes());
        out.push(self.column_type);
        out.extend_from_slice(&self.flags.to_le_bytes());
        out.push(self.decimals);
        out.extend_from_slice(&[0, 0]);
        out
    }

    pub fn is_unsigned(&self) -> bool {
        self.flags & flags::UNSIGNED != 0
    }

    pub fn is_binary_charset(&self) -> bool {
        self.charset == BINARY_CHARSET
    }

    pub(crate) fn is_zerofill(&self) -> bool {
        self.flags & flags::ZEROFILL != 0
    }

    /// Whether FLOAT/DOUBLE values print with a fixed number of decimals
    /// (MariaDB uses 31 and above for "not fixed").
    pub(crate) fn fixed_decimals(&self) -> Option<usize> {
        (self.decimals < 31).then_some(usize::from(self.decimals))
    }

    /// The column as the merge engine sees it.
    pub fn meta(&self) -> ColumnMeta {
        ColumnMeta {
            name: self.name.clone(),
            class: self.class(),
            unsigned: self.is_unsigned(),
            decimals: self.decimals,
        }
    }

    pub(crate) fn class(&self) -> TypeClass {
        use types::*;
        match self.column_type {
            TINY => TypeClass::Int { width: 1 },
            SHORT | YEAR => TypeClass::Int { width: 2 },
            LONG | INT24 => TypeClass::Int { width: 4 },
            LONGLONG => TypeClass::Int { width: 8 },
            FLOAT => TypeClass::Float,
            DOUBLE => TypeClass::Double,
            DECIMAL | NEWDECIMAL => TypeClass::Decimal,
            DATE | NEWDATE => TypeClass::Date,
            DATETIME | TIMESTAMP | DATETIME2 | TIMESTAMP2 => TypeClass::DateTime,
            TIME | TIME2 => TypeClass::Time,
            _ => TypeClass::Bytes,
        }
    }
}

fn malformed(what: &str) -> MergeError {
    MergeError::Malformed(what.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_round_trips_synthetic_definition() {
        let col = ColumnInfo::synthetic("AVG(`score`)", types::NEWDECIMAL, 0, 4, 33);
        let parsed = ColumnInfo::parse(&col.raw).unwrap();
        assert_eq!(parsed, col);
        assert_eq!(parsed.class(), TypeClass::Decimal);
        assert!(!parsed.is_unsigned());
        assert!(!parsed.is_binary_charset());
    }

    #[test]
    fn parse_captured_mariadb_definition() {
        // `SELECT user_id FROM users_0` on MariaDB 11: BIGINT UNSIGNED NOT NULL PK.
        let mut raw = Vec::new();
        for s in ["def", "ds0", "users_0", "users_0", "user_id", "user_id"] {
            put_lenenc_str(&mut raw, s.as_bytes());
        }
        raw.extend_from_slice(&[0x0c, 0x3f, 0x00, 0x14, 0, 0, 0, 0x08, 0x23, 0x42, 0, 0, 0]);
        let col = ColumnInfo::parse(&raw).unwrap();
        assert_eq!(col.table, "users_0");
        assert_eq!(col.column_type, types::LONGLONG);
        assert_eq!(col.length, 20);
        assert!(col.is_unsigned());
        assert!(col.is_binary_charset());
        assert_eq!(col.class(), TypeClass::Int { width: 8 });
        assert_eq!(col.raw, raw);
    }

    #[test]
    fn truncated_definition_is_malformed() {
        let col = ColumnInfo::synthetic("x", types::LONG, 0, 0, 63);
        let cut = &col.raw[..col.raw.len() - 5];
        assert!(matches!(
            ColumnInfo::parse(cut),
            Err(MergeError::Malformed(_))
        ));
    }
}
