//! Metadata as the client's logical database shows it: `SHOW TABLES`,
//! `SHOW CREATE TABLE`, `SHOW COLUMNS` / `DESCRIBE`, `SHOW INDEX` and the
//! information_schema queries drivers and ORMs issue. They run on the
//! default data source with logical names mapped to its physical ones, and
//! the rows come back with physical names mapped to logical ones (`users`,
//! not `users_7`; `wework`, not `ds0`), one row per logical table.

use foldhash::HashMap;

use shardgate_rules::config::DatabaseRules;
use shardgate_rules::{Config, ShardingRules, TableKind};

use crate::dialect::{Dialect, MARIADB};
use crate::lex::{Lexer, Token, TokenList};

/// The names to translate between a logical database and its default
/// data source's physical one (and those of the other logical databases
/// whose tables live on the same server, which a statement may name).
#[derive(Debug, Clone)]
pub struct MetadataNames {
    /// Logical database → its physical one, for every logical database on
    /// the same server as this one's default data source (this one too).
    same_server: Vec<(String, String)>,
    /// Physical table on the default data source → logical table.
    to_logical: HashMap<String, String>,
    /// Logical sharded table → the physical table that stands for it.
    to_physical: HashMap<String, String>,
    /// Physical database of every data source → its logical database.
    schemas: HashMap<String, String>,
    /// Physical table on any data source → logical table (for column definitions).
    any_to_logical: HashMap<String, String>,
    /// How the data sources quote the names written into the statements
    /// sent to them.
    dialect: &'static dyn Dialect,
}

impl MetadataNames {
    pub fn new(
        config: &Config,
        db: &DatabaseRules<'_>,
        rules: &ShardingRules,
        dialect: &'static dyn Dialect,
    ) -> Self {
        let default = db.default_data_source;
        let url_of = |ds: &str| config.data_sources.get(ds).map(|d| &d.url);
        let mut to_logical = HashMap::default();
        let mut to_physical = HashMap::default();
        let mut any_to_logical = HashMap::default();
        for table in db.tables.keys() {
            if rules.table_kind(table) != TableKind::Sharded {
                continue;
            }
            let nodes = rules.nodes(table);
            for node in &nodes {
                any_to_logical.insert(node.table.clone(), table.clone());
            }
            for node in nodes.iter().filter(|n| n.data_source == default) {
                to_logical.insert(node.table.to_ascii_lowercase(), table.clone());
                to_physical
                    .entry(table.to_ascii_lowercase())
                    .or_insert_with(|| node.table.clone());
            }
        }
        let server = url_of(default).map(|u| (u.host.clone(), u.port));
        let mut same_server = Vec::new();
        let mut schemas = HashMap::default();
        for other in config.logical_databases() {
            let Some(url) = url_of(other.default_data_source) else {
                continue;
            };
            if Some((url.host.clone(), url.port)) == server {
                same_server.push((other.name.to_owned(), url.database.clone()));
            }
            for ds in config.database_data_sources(&other) {
                if let Some(url) = url_of(&ds) {
                    schemas
                        .entry(url.database.clone())
                        .or_insert_with(|| other.name.to_owned());
                }
            }
        }
        Self {
            same_server,
            to_logical,
            to_physical,
            schemas,
            any_to_logical,
            dialect,
        }
    }

    /// `sql` with logical database and sharded table names (as identifiers
    /// or string literals) replaced by their physical ones.
    pub fn to_physical_sql(&self, sql: &str) -> String {
        let mut out = String::with_capacity(sql.len() + 16);
        let mut from = 0;
        for t in Lexer::new(sql) {
            let replacement = match t.token {
                Token::Word(w) | Token::QuotedIdent(w) => {
                    self.physical_name(w).map(|p| self.dialect.quoted(&p))
                }
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

    /// `sql` with logical databases named as qualifiers (`other.t`,
    /// `` `other`.t ``) replaced by their physical names on this server,
    /// but for `except` (the session's own, whose routed tables the
    /// analysis finds under their logical qualifier); None when it names
    /// none whose physical name differs. A statement that names none costs
    /// a substring search per such database.
    pub fn physical_qualifiers(&self, sql: &str, except: Option<&str>) -> Option<String> {
        let renamed = |logical: &String, physical: &String| {
            logical != physical && Some(logical.as_str()) != except
        };
        if !self
            .same_server
            .iter()
            .any(|(logical, physical)| renamed(logical, physical) && sql.contains(logical.as_str()))
        {
            return None;
        }
        let list = TokenList::of_statement(sql);
        let tokens = list.tokens();
        let mut out = String::with_capacity(sql.len() + 16);
        let mut from = 0;
        for (i, t) in tokens.iter().enumerate() {
            let qualifier = tokens.get(i + 1).map(|n| n.token) == Some(Token::Punct(b'.'))
                && tokens.get(i + 1).is_some_and(|n| n.start == t.end);
            let (Token::Word(name) | Token::QuotedIdent(name)) = t.token else {
                continue;
            };
            let physical = self
                .same_server
                .iter()
                .find(|(logical, physical)| logical == name && renamed(logical, physical))
                .map(|(_, physical)| physical);
            if let (true, Some(physical)) = (qualifier, physical) {
                out.push_str(&sql[from..t.start]);
                self.dialect.push_quoted(&mut out, physical);
                from = t.end;
            }
        }
        (from > 0).then(|| {
            out.push_str(&sql[from..]);
            out
        })
    }

    fn physical_name(&self, name: &str) -> Option<String> {
        if let Some((_, physical)) = self.same_server.iter().find(|(l, _)| l == name) {
            return (physical != name).then(|| physical.clone());
        }
        self.to_physical.get(&name.to_ascii_lowercase()).cloned()
    }

    /// The logical database a physical one on this server stands for.
    fn logical_db_of(&self, physical: &str) -> Option<&str> {
        self.same_server
            .iter()
            .find(|(_, p)| p == physical)
            .map(|(l, _)| l.as_str())
    }

    /// A result cell with physical names mapped back; None when unchanged.
    pub fn logical_cell(&self, cell: &[u8]) -> Option<Vec<u8>> {
        let text = std::str::from_utf8(cell).ok()?;
        if let Some(logical) = self.logical_db_of(text) {
            return (logical != text).then(|| logical.as_bytes().to_vec());
        }
        if let Some(logical) = self.to_logical.get(&text.to_ascii_lowercase()) {
            return Some(logical.clone().into_bytes());
        }
        // SHOW CREATE TABLE: the statement names the physical table, and
        // the physical databases of the tables its foreign keys reference.
        // This text is MariaDB's own output (PostgreSQL has no SHOW CREATE
        // TABLE: its definitions are read from the catalogs), so it is read
        // and written with MariaDB's backquotes, whatever `self.dialect` is.
        let rest = text.strip_prefix("CREATE TABLE ")?;
        let first = Lexer::new(rest).next()?;
        let Token::QuotedIdent(named) = first.token else {
            return None;
        };
        let mut out = match self.to_logical.get(&named.to_ascii_lowercase()) {
            Some(logical) => format!(
                "CREATE TABLE {}{}",
                MARIADB.quoted(logical),
                &rest[first.end..]
            ),
            None => text.to_owned(),
        };
        for (logical, physical) in &self.same_server {
            if logical != physical {
                out = out.replace(
                    &format!("REFERENCES {}.", MARIADB.quoted(physical)),
                    &format!("REFERENCES {}.", MARIADB.quoted(logical)),
                );
            }
        }
        (out != text).then(|| out.into_bytes())
    }

    /// The logical database of physical database `physical` (of any data
    /// source); None when it is not one or has the same name.
    pub fn logical_schema(&self, physical: &str) -> Option<&str> {
        self.schemas
            .get(physical)
            .map(String::as_str)
            .filter(|l| *l != physical)
    }

    /// The logical table that physical table `physical` (on any data
    /// source) stands for.
    pub fn logical_table(&self, physical: &str) -> Option<&str> {
        self.any_to_logical.get(physical).map(String::as_str)
    }

    /// A column label with the physical database mapped (`Tables_in_ds0`,
    /// `Tables_in_ds0 (user%)`).
    pub fn logical_label(&self, label: &str) -> Option<String> {
        let at = label.find("_in_")?;
        let after = &label[at + 4..];
        let end = after.find(' ').unwrap_or(after.len());
        let logical = self.logical_db_of(&after[..end])?;
        (logical != &after[..end])
            .then(|| format!("{}_in_{logical}{}", &label[..at], &after[end..]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::numbered::Numbered;
    use crate::dialect::MARIADB;

    fn names() -> MetadataNames {
        names_in(&MARIADB)
    }

    /// The seed's first logical database, its data sources in `dialect`.
    fn names_in(dialect: &'static dyn Dialect) -> MetadataNames {
        let config = Config::from_toml_str(include_str!("../../../examples/wework.toml")).unwrap();
        let rules = ShardingRules::new(&config).unwrap();
        MetadataNames::new(&config, &config.logical_databases()[0], &rules, dialect)
    }

    #[test]
    fn qualifiers_name_physical_databases() {
        let n = names();
        assert_eq!(
            n.physical_qualifiers(
                "SELECT wework.t.a, `wework`.t.b FROM wework.t JOIN x ON 'wework.t' = wework",
                None
            )
            .as_deref(),
            Some("SELECT `ds0`.t.a, `ds0`.t.b FROM `ds0`.t JOIN x ON 'wework.t' = wework")
        );
        assert_eq!(
            n.physical_qualifiers("SELECT * FROM t WHERE user_id = 5", None),
            None
        );
        assert_eq!(n.physical_qualifiers("SELECT 'wework'", None), None);
        assert_eq!(
            n.physical_qualifiers("SELECT wework.t.a", Some("wework")),
            None
        );
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
            n.logical_cell(b"CREATE TABLE `t` (\n  CONSTRAINT `f` FOREIGN KEY (`a`) REFERENCES `ds0`.`p` (`id`)"),
            Some(b"CREATE TABLE `t` (\n  CONSTRAINT `f` FOREIGN KEY (`a`) REFERENCES `wework`.`p` (`id`)".to_vec())
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

    #[test]
    fn metadata_names_are_written_as_the_dialect_quotes_them() {
        let names = names_in(&Numbered);
        assert_eq!(
            names.to_physical_sql(
                "SELECT * FROM information_schema.columns WHERE table_name = 'users'"
            ),
            "SELECT * FROM information_schema.columns WHERE table_name = 'users_0'"
        );
        assert_eq!(
            names.to_physical_sql("SHOW CREATE TABLE users"),
            "SHOW CREATE TABLE \"users_0\""
        );
        assert_eq!(
            names
                .physical_qualifiers("SELECT * FROM wework.t", None)
                .as_deref(),
            Some("SELECT * FROM \"ds0\".t")
        );
        // SHOW CREATE TABLE's reply is MariaDB's text, whichever dialect
        // the statements are written in.
        assert_eq!(
            names.logical_cell(b"CREATE TABLE `users_0` (\n  CONSTRAINT `f` FOREIGN KEY (`a`) REFERENCES `ds0`.`p` (`id`)"),
            Some(b"CREATE TABLE `users` (\n  CONSTRAINT `f` FOREIGN KEY (`a`) REFERENCES `wework`.`p` (`id`)".to_vec())
        );
    }
}
