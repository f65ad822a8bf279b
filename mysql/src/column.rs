//! Column definitions (protocol 4.1 `ColumnDefinition41` packets): the
//! type, flags and decimals that decide how a value is decoded, compared,
//! aggregated and re-encoded, and what the merge engine makes of them
//! (`ColumnInfo::meta`).

use shardgate_merge::{ColumnMeta, MergeError, TypeClass};
use shardgate_sql::shard::metadata::MetadataNames;

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
        let ([catalog, schema, table, org_table, name, org_name], mut buf) = text_fields(payload)?;
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        let (catalog, schema, table, org_table, name, org_name) = (
            text(catalog),
            text(schema),
            text(table),
            text(org_table),
            text(name),
            text(org_name),
        );
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

    /// The name of the column a definition payload describes, read without
    /// parsing the rest (internal queries key their rows by it).
    pub fn name_of(payload: &[u8]) -> Result<String, MergeError> {
        let ([_, _, _, _, name, _], _) = text_fields(payload)?;
        Ok(String::from_utf8_lossy(name).into_owned())
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
            collated: self.is_collated_text(),
        }
    }

    /// Whether the column holds text compared by collation.
    fn is_collated_text(&self) -> bool {
        !self.is_binary_charset()
            && matches!(
                self.column_type,
                types::VARCHAR
                    | types::VAR_STRING
                    | types::STRING
                    | types::BLOB
                    | types::TINY_BLOB
                    | types::MEDIUM_BLOB
                    | types::LONG_BLOB
                    | types::ENUM
                    | types::SET
            )
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

/// A column definition packet with the physical schema and tables
/// renamed to the logical ones of `names`; None when it names none of them.
///
/// Every column definition of every result passes here, so the fields
/// are read in place and a packet is built only when something is
/// renamed; the fields not renamed keep their bytes.
pub fn logical_column(names: &MetadataNames, payload: &[u8]) -> Option<Vec<u8>> {
    let (fields, mut rest) = text_fields(payload).ok()?;
    let fixed_len = take_lenenc_int(&mut rest)?;
    // charset, length, type, flags, decimals (the filler is rewritten).
    let fixed = rest.get(..12).filter(|_| fixed_len >= 12)?.get(..10)?;
    let [catalog, schema, table, org_table, name, org_name] = fields;
    let schema = std::str::from_utf8(schema)
        .ok()
        .and_then(|s| names.logical_schema(s))
        .map(str::as_bytes);
    let logical_table = |t: &[u8]| {
        let logical = names.logical_table(std::str::from_utf8(t).ok()?)?;
        Some(logical.as_bytes())
    };
    let renamed_table = logical_table(table);
    // Usually the same name twice (no alias): one lookup.
    let org_table = if org_table == table {
        renamed_table
    } else {
        logical_table(org_table)
    };
    let table = renamed_table;
    if schema.is_none() && table.is_none() && org_table.is_none() {
        return None;
    }
    let mut out = Vec::with_capacity(payload.len() + 16);
    for field in [
        catalog,
        schema.unwrap_or(fields[1]),
        table.unwrap_or(fields[2]),
        org_table.unwrap_or(fields[3]),
        name,
        org_name,
    ] {
        put_lenenc_str(&mut out, field);
    }
    put_lenenc_int(&mut out, 12);
    out.extend_from_slice(fixed);
    out.extend_from_slice(&[0, 0]);
    Some(out)
}

/// The six length-encoded text fields that start a column definition
/// (catalog, schema, table, org_table, name, org_name), and what follows.
fn text_fields(payload: &[u8]) -> Result<([&[u8]; 6], &[u8]), MergeError> {
    let mut rest = payload;
    let mut fields = [&[][..]; 6];
    for field in &mut fields {
        let len =
            take_lenenc_int(&mut rest).ok_or_else(|| malformed("truncated column definition"))?;
        let len = usize::try_from(len).map_err(|_| malformed("column name too long"))?;
        *field = rest
            .get(..len)
            .ok_or_else(|| malformed("truncated column definition"))?;
        rest = &rest[len..];
    }
    Ok((fields, rest))
}

fn malformed(what: &str) -> MergeError {
    MergeError::Malformed(what.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardgate_rules::{Config, ShardingRules};

    fn names() -> MetadataNames {
        let config = Config::from_toml_str(include_str!("../../examples/wework.toml")).unwrap();
        let rules = ShardingRules::new(&config).unwrap();
        MetadataNames::new(
            &config,
            &config.logical_databases()[0],
            &rules,
            &shardgate_sql::dialect::MARIADB,
        )
    }

    /// The definition as `ColumnInfo` encodes it.
    fn definition(schema: &str, table: &str, org_table: &str, name: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for field in [
            b"def",
            schema.as_bytes(),
            table.as_bytes(),
            org_table.as_bytes(),
            name,
            name,
        ] {
            put_lenenc_str(&mut out, field);
        }
        put_lenenc_int(&mut out, 12);
        out.extend_from_slice(&[45, 0, 120, 0, 0, 0, 254, 3, 16, 0, 0, 0]);
        out
    }

    #[test]
    fn column_definitions_name_logical_tables() {
        let n = names();
        let physical = definition("ds2", "u", "users_7", b"name");
        let renamed = logical_column(&n, &physical).unwrap();
        assert_eq!(renamed, definition("wework", "u", "users", b"name"));
        let parsed = ColumnInfo::parse(&physical).unwrap();
        let mut expected = parsed.clone();
        expected.schema = "wework".into();
        expected.org_table = "users".into();
        assert_eq!(renamed, expected.encode());
        assert_eq!(
            logical_column(&n, &definition("ds1", "users_3", "users_3", b"c")),
            Some(definition("wework", "users", "users", b"c"))
        );
        // Nothing to rename: the packet goes out as it came.
        assert_eq!(
            logical_column(&n, &definition("other", "t", "t", b"c")),
            None
        );
        assert_eq!(
            logical_column(&n, &definition("wework", "t", "t", b"c")),
            None
        );
        assert_eq!(logical_column(&n, &definition("", "", "", b"1")), None);
        // A column name that is not UTF-8 keeps its bytes.
        assert_eq!(
            logical_column(&n, &definition("ds0", "users_0", "users_0", b"\xe9t\xe9")),
            Some(definition("wework", "users", "users", b"\xe9t\xe9"))
        );
        // Truncated definitions are left alone.
        let whole = definition("ds0", "users_0", "users_0", b"c");
        for len in [0, 5, whole.len() - 13, whole.len() - 1] {
            assert_eq!(logical_column(&n, &whole[..len]), None, "{len}");
        }
    }

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
