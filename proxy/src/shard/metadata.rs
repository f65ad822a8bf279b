//! Metadata as the client's logical database shows it: `SHOW TABLES`,
//! `SHOW CREATE TABLE`, `SHOW COLUMNS` / `DESCRIBE`, `SHOW INDEX` and the
//! information_schema queries drivers and ORMs issue. They run on the
//! default data source with logical names mapped to its physical ones, and
//! the rows come back with physical names mapped to logical ones (`users`,
//! not `users_7`; `wework`, not `ds0`), one row per logical table.

use std::collections::HashMap;

use shardgate_rules::{Config, ShardingRules, TableKind};

use crate::sql::lex::{Lexer, Token};
use crate::wire::ok_err::{put_lenenc_int, put_lenenc_str, take_lenenc_int};

/// The names to translate between the logical database and the default
/// data source's physical one.
#[derive(Debug, Clone)]
pub struct MetadataNames {
    logical_db: String,
    physical_db: String,
    /// Physical table on the default data source → logical table.
    to_logical: HashMap<String, String>,
    /// Logical sharded table → the physical table that stands for it.
    to_physical: HashMap<String, String>,
    /// Physical databases of every data source.
    physical_dbs: Vec<String>,
    /// Physical table on any data source → logical table (for column definitions).
    any_to_logical: HashMap<String, String>,
}

impl MetadataNames {
    pub fn new(config: &Config, rules: &ShardingRules) -> Self {
        let default = &config.server.default_data_source;
        let physical_db = config
            .data_sources
            .get(default)
            .map(|d| d.url.database.clone())
            .unwrap_or_default();
        let mut to_logical = HashMap::new();
        let mut to_physical = HashMap::new();
        let mut any_to_logical = HashMap::new();
        for table in config.tables.keys() {
            if rules.table_kind(table) != TableKind::Sharded {
                continue;
            }
            let nodes = rules.nodes(table);
            for node in &nodes {
                any_to_logical.insert(node.table.clone(), table.clone());
            }
            for node in nodes.iter().filter(|n| &n.data_source == default) {
                to_logical.insert(node.table.to_ascii_lowercase(), table.clone());
                to_physical
                    .entry(table.to_ascii_lowercase())
                    .or_insert_with(|| node.table.clone());
            }
        }
        let mut physical_dbs: Vec<String> = config
            .data_sources
            .values()
            .map(|d| d.url.database.clone())
            .collect();
        physical_dbs.dedup();
        Self {
            logical_db: config.server.database.clone(),
            physical_db,
            to_logical,
            to_physical,
            physical_dbs,
            any_to_logical,
        }
    }

    /// `sql` with the logical database and sharded table names (as
    /// identifiers or string literals) replaced by their physical ones.
    pub fn to_physical_sql(&self, sql: &str) -> String {
        let mut out = String::with_capacity(sql.len() + 16);
        let mut from = 0;
        for t in Lexer::new(sql) {
            let replacement = match t.token {
                Token::Word(w) | Token::QuotedIdent(w) => self
                    .physical_name(w)
                    .map(|p| format!("`{}`", p.replace('`', "``"))),
                Token::Str(s) if s.len() >= 2 => {
                    let quote = &s[..1];
                    let inner = &s[1..s.len() - 1];
                    self.physical_name(inner)
                        .map(|p| format!("{quote}{p}{quote}"))
                }
                _ => None,
            };
            if let Some(r) = replacement {
                out.push_str(&sql[from..t.start]);
                out.push_str(&r);
                from = t.end;
            }
        }
        out.push_str(&sql[from..]);
        out
    }

    fn physical_name(&self, name: &str) -> Option<String> {
        if name == self.logical_db {
            return Some(self.physical_db.clone());
        }
        self.to_physical.get(&name.to_ascii_lowercase()).cloned()
    }

    /// A result cell with physical names mapped back; None when unchanged.
    pub fn logical_cell(&self, cell: &[u8]) -> Option<Vec<u8>> {
        let text = std::str::from_utf8(cell).ok()?;
        if text == self.physical_db {
            return Some(self.logical_db.clone().into_bytes());
        }
        if let Some(logical) = self.to_logical.get(&text.to_ascii_lowercase()) {
            return Some(logical.clone().into_bytes());
        }
        // SHOW CREATE TABLE: the statement names the physical table.
        let rest = text.strip_prefix("CREATE TABLE `")?;
        let end = rest.find('`')?;
        let logical = self.to_logical.get(&rest[..end].to_ascii_lowercase())?;
        Some(format!("CREATE TABLE `{logical}`{}", &rest[end + 1..]).into_bytes())
    }

    /// A column definition packet with the physical schema and tables
    /// renamed to the logical ones; None when it names none of them.
    ///
    /// Every column definition of every result passes here, so the fields
    /// are read in place and a packet is built only when something is
    /// renamed; the fields not renamed keep their bytes.
    pub fn logical_column(&self, payload: &[u8]) -> Option<Vec<u8>> {
        let mut rest = payload;
        let mut fields = [&[][..]; 6];
        for field in &mut fields {
            let len = usize::try_from(take_lenenc_int(&mut rest)?).ok()?;
            *field = rest.get(..len)?;
            rest = &rest[len..];
        }
        let fixed_len = take_lenenc_int(&mut rest)?;
        // charset, length, type, flags, decimals (the filler is rewritten).
        let fixed = rest.get(..12).filter(|_| fixed_len >= 12)?.get(..10)?;
        let [catalog, schema, table, org_table, name, org_name] = fields;
        let schema = (schema != self.logical_db.as_bytes()
            && self.physical_dbs.iter().any(|d| d.as_bytes() == schema))
        .then_some(self.logical_db.as_bytes());
        let logical_table = |t: &[u8]| {
            let logical = self.any_to_logical.get(std::str::from_utf8(t).ok()?)?;
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

    /// A column label with the physical database mapped (`Tables_in_ds0`,
    /// `Tables_in_ds0 (user%)`).
    pub fn logical_label(&self, label: &str) -> Option<String> {
        let marker = format!("_in_{}", self.physical_db);
        let at = label.find(&marker)?;
        let rest = &label[at + marker.len()..];
        (rest.is_empty() || rest.starts_with(' '))
            .then(|| format!("{}_in_{}{rest}", &label[..at], self.logical_db))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> MetadataNames {
        let config = Config::from_toml_str(include_str!("../../../examples/wework.toml")).unwrap();
        let rules = ShardingRules::new(&config).unwrap();
        MetadataNames::new(&config, &rules)
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
        use crate::merge::column::ColumnInfo;
        let n = names();
        let physical = definition("ds2", "u", "users_7", b"name");
        let renamed = n.logical_column(&physical).unwrap();
        assert_eq!(renamed, definition("wework", "u", "users", b"name"));
        let parsed = ColumnInfo::parse(&physical).unwrap();
        let mut expected = parsed.clone();
        expected.schema = "wework".into();
        expected.org_table = "users".into();
        assert_eq!(renamed, expected.encode());
        assert_eq!(
            n.logical_column(&definition("ds1", "users_3", "users_3", b"c")),
            Some(definition("wework", "users", "users", b"c"))
        );
        // Nothing to rename: the packet goes out as it came.
        assert_eq!(n.logical_column(&definition("other", "t", "t", b"c")), None);
        assert_eq!(
            n.logical_column(&definition("wework", "t", "t", b"c")),
            None
        );
        assert_eq!(n.logical_column(&definition("", "", "", b"1")), None);
        // A column name that is not UTF-8 keeps its bytes.
        assert_eq!(
            n.logical_column(&definition("ds0", "users_0", "users_0", b"\xe9t\xe9")),
            Some(definition("wework", "users", "users", b"\xe9t\xe9"))
        );
        // Truncated definitions are left alone.
        let whole = definition("ds0", "users_0", "users_0", b"c");
        for len in [0, 5, whole.len() - 13, whole.len() - 1] {
            assert_eq!(n.logical_column(&whole[..len]), None, "{len}");
        }
    }

    #[test]
    fn maps_names_both_ways() {
        let n = names();
        assert_eq!(
            n.to_physical_sql("SELECT * FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'wework' AND TABLE_NAME = 'users'"),
            "SELECT * FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'ds0' AND TABLE_NAME = 'users_0'"
        );
        assert_eq!(
            n.to_physical_sql("SHOW CREATE TABLE wework.users"),
            "SHOW CREATE TABLE `ds0`.`users_0`"
        );
        assert_eq!(n.logical_cell(b"users_7"), Some(b"users".to_vec()));
        assert_eq!(
            n.logical_cell(b"message_records_202403"),
            Some(b"message_records".to_vec())
        );
        assert_eq!(n.logical_cell(b"ds0"), Some(b"wework".to_vec()));
        assert_eq!(n.logical_cell(b"sys_configs"), None);
        assert_eq!(
            n.logical_cell(b"CREATE TABLE `users_0` (\n  `user_id` bigint"),
            Some(b"CREATE TABLE `users` (\n  `user_id` bigint".to_vec())
        );
        assert_eq!(
            n.logical_label("Tables_in_ds0").as_deref(),
            Some("Tables_in_wework")
        );
        assert_eq!(n.logical_label("Table"), None);
        assert_eq!(
            n.logical_label("Tables_in_ds0 (user%)").as_deref(),
            Some("Tables_in_wework (user%)")
        );
    }
}
