//! How a sharding column stores its values, which decides the value a row
//! is placed by: an integer column stores `'7'` as 7, a string column
//! stores `7` as `'7'`, and `crc32_mod` places 7 and `'7'` apart. The proxy
//! (for the values a client writes and compares) and the migrator (for the
//! rows it reads back) both go by the column's declared type, so a row is
//! where either looks for it.

/// The kind of a sharding column's SQL type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ColumnKind {
    /// TINYINT .. BIGINT (signed or not).
    Integer,
    /// CHAR, VARCHAR, the TEXTs and their binary forms.
    Text,
    /// Anything else (dates, DECIMAL, ENUM, ...), or not known: values are
    /// taken as they are written.
    #[default]
    Other,
}

impl ColumnKind {
    /// The kind of a type as `SHOW COLUMNS` and `information_schema`'s
    /// `COLUMN_TYPE` spell it (`bigint(20) unsigned`, `varchar(64)`).
    pub fn of_sql_type(column_type: &str) -> ColumnKind {
        let name: String = column_type
            .trim_start()
            .chars()
            .take_while(char::is_ascii_alphabetic)
            .map(|c| c.to_ascii_lowercase())
            .collect();
        match name.as_str() {
            "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" => {
                ColumnKind::Integer
            }
            "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "binary"
            | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => ColumnKind::Text,
            _ => ColumnKind::Other,
        }
    }
}

/// The kinds of the sharding columns a statement's tables shard by,
/// by column name (any letter case); columns not listed are `Other`.
/// A statement names a handful of sharding columns: a list is enough.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ColumnKinds(Vec<(String, ColumnKind)>);

impl ColumnKinds {
    /// No column known: every value is taken as written.
    pub fn none() -> &'static ColumnKinds {
        static NONE: ColumnKinds = ColumnKinds(Vec::new());
        &NONE
    }

    /// Records `column`'s kind unless one is recorded already.
    pub fn add(&mut self, column: &str, kind: ColumnKind) {
        if self.find(column).is_none() {
            self.0.push((column.to_ascii_lowercase(), kind));
        }
    }

    pub fn of(&self, column: &str) -> ColumnKind {
        self.find(column).unwrap_or_default()
    }

    fn find(&self, column: &str) -> Option<ColumnKind> {
        self.0
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(column))
            .map(|(_, kind)| *kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_of_sql_types() {
        for (sql_type, kind) in [
            ("bigint(20) unsigned", ColumnKind::Integer),
            ("INT(11)", ColumnKind::Integer),
            ("tinyint(1)", ColumnKind::Integer),
            ("varchar(64)", ColumnKind::Text),
            ("char(3)", ColumnKind::Text),
            ("longtext", ColumnKind::Text),
            ("varbinary(16)", ColumnKind::Text),
            ("decimal(10,2)", ColumnKind::Other),
            ("datetime(3)", ColumnKind::Other),
            ("enum('a','b')", ColumnKind::Other),
            ("", ColumnKind::Other),
        ] {
            assert_eq!(ColumnKind::of_sql_type(sql_type), kind, "{sql_type}");
        }
    }

    #[test]
    fn kinds_by_any_letter_case() {
        let mut kinds = ColumnKinds::default();
        kinds.add("Tenant_ID", ColumnKind::Text);
        kinds.add("tenant_id", ColumnKind::Integer);
        assert_eq!(kinds.of("TENANT_id"), ColumnKind::Text);
        assert_eq!(kinds.of("user_id"), ColumnKind::Other);
    }
}
