//! What the migrator needs to know about a physical table: its columns and
//! primary key (from `information_schema`), its definition for creating
//! new-layout tables (`SHOW CREATE TABLE`, renamed, AUTO_INCREMENT counter
//! stripped), and its row count.

use crate::error::{DbContext, MigrateError};
use crate::values::{ident, string_literal};
use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use serde::Serialize;
use shardgate_rules::{ColumnKind, ColumnKinds};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Column {
    pub name: String,
    /// `COLUMN_TYPE`, e.g. `bigint(20) unsigned`.
    pub column_type: String,
    pub nullable: bool,
}

/// Columns (in order) and primary key of a physical table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableSchema {
    pub columns: Vec<Column>,
    pub primary_key: Vec<String>,
}

impl TableSchema {
    pub fn column_names(&self) -> Vec<String> {
        self.columns.iter().map(|c| c.name.clone()).collect()
    }

    /// The kinds of `columns` (sharding columns) by their SQL types.
    pub fn kinds_of(&self, columns: &[&str]) -> ColumnKinds {
        let mut kinds = ColumnKinds::default();
        for column in columns {
            if let Some(c) = self
                .columns
                .iter()
                .find(|c| c.name.eq_ignore_ascii_case(column))
            {
                kinds.add(column, ColumnKind::of_sql_type(&c.column_type));
            }
        }
        kinds
    }

    /// The position of the one integer primary-key column, or why the table
    /// has none: the copy cursor and verify chunks are integer key ranges.
    pub fn integer_key(&self) -> Result<usize, String> {
        let [key] = self.primary_key.as_slice() else {
            return Err(if self.primary_key.is_empty() {
                "it has no primary key".to_string()
            } else {
                format!(
                    "its primary key has {} columns ({}); the copy needs one integer column",
                    self.primary_key.len(),
                    self.primary_key.join(", ")
                )
            });
        };
        let position = self
            .columns
            .iter()
            .position(|c| c.name.eq_ignore_ascii_case(key))
            .ok_or_else(|| format!("primary key column `{key}` is not among its columns"))?;
        let column_type = self.columns[position].column_type.to_ascii_lowercase();
        let integer = ["tinyint", "smallint", "mediumint", "int", "bigint"]
            .iter()
            .any(|t| column_type.starts_with(t));
        if integer {
            Ok(position)
        } else {
            Err(format!(
                "its primary key `{key}` is {column_type}; the copy needs an integer key"
            ))
        }
    }
}

/// The table's columns and primary key; None when it does not exist.
pub async fn table_schema(
    conn: &mut Conn,
    database: &str,
    table: &str,
) -> Result<Option<TableSchema>, MigrateError> {
    let context = || format!("reading the columns of {database}.{table}");
    let columns: Vec<(String, String, String)> = conn
        .query(format!(
            "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = {} AND TABLE_NAME = {} ORDER BY ORDINAL_POSITION",
            string_literal(database),
            string_literal(table)
        ))
        .await
        .context(context)?;
    if columns.is_empty() {
        return Ok(None);
    }
    let primary_key: Vec<String> = conn
        .query(format!(
            "SELECT COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = {} \
             AND TABLE_NAME = {} AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX",
            string_literal(database),
            string_literal(table)
        ))
        .await
        .context(context)?;
    Ok(Some(TableSchema {
        columns: columns
            .into_iter()
            .map(|(name, column_type, nullable)| Column {
                name,
                column_type,
                nullable: nullable == "YES",
            })
            .collect(),
        primary_key,
    }))
}

/// `SHOW CREATE TABLE` of a table.
pub async fn create_statement(conn: &mut Conn, table: &str) -> Result<String, MigrateError> {
    let row: Option<(String, String)> = conn
        .query_first(format!("SHOW CREATE TABLE {}", ident(table)))
        .await
        .context(|| format!("SHOW CREATE TABLE {table}"))?;
    row.map(|(_, create)| create)
        .ok_or_else(|| MigrateError::Table {
            node: table.to_string(),
            problem: "SHOW CREATE TABLE returned nothing".into(),
        })
}

/// A `CREATE TABLE` of `source` turned into one of `target`: renamed, made
/// `IF NOT EXISTS` (a resumed job may have created it already), and without
/// the `AUTO_INCREMENT=n` counter (the new table starts its own).
pub fn retarget_create(create: &str, source: &str, target: &str) -> Result<String, String> {
    let head = format!("CREATE TABLE {}", ident(source));
    let body = create
        .strip_prefix(&head)
        .ok_or_else(|| format!("SHOW CREATE TABLE of `{source}` does not start with `{head}`"))?;
    // The table options follow the last ')': only there is `AUTO_INCREMENT=`
    // the counter (a column's attribute has no '=').
    let options_start = body.rfind(')').unwrap_or(0);
    let (columns, options) = body.split_at(options_start);
    let options = match options.find(" AUTO_INCREMENT=") {
        Some(at) => {
            let rest = &options[at + " AUTO_INCREMENT=".len()..];
            let digits = rest.chars().take_while(char::is_ascii_digit).count();
            format!("{}{}", &options[..at], &rest[digits..])
        }
        None => options.to_string(),
    };
    Ok(format!(
        "CREATE TABLE IF NOT EXISTS {}{columns}{options}",
        ident(target)
    ))
}

/// The number of rows of a table (`COUNT(*)`).
pub async fn row_count(conn: &mut Conn, table: &str) -> Result<u64, MigrateError> {
    let count: Option<u64> = conn
        .query_first(format!("SELECT COUNT(*) FROM {}", ident(table)))
        .await
        .context(|| format!("counting the rows of {table}"))?;
    Ok(count.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, column_type: &str) -> Column {
        Column {
            name: name.into(),
            column_type: column_type.into(),
            nullable: false,
        }
    }

    #[test]
    fn sharding_columns_kinds_come_from_their_types() {
        let schema = TableSchema {
            columns: vec![
                column("id", "bigint(20)"),
                column("Tenant_Id", "varchar(64)"),
                column("created_at", "datetime"),
            ],
            primary_key: vec!["id".into()],
        };
        let kinds = schema.kinds_of(&["tenant_id", "id", "created_at", "missing"]);
        assert_eq!(kinds.of("TENANT_ID"), ColumnKind::Text);
        assert_eq!(kinds.of("id"), ColumnKind::Integer);
        assert_eq!(kinds.of("created_at"), ColumnKind::Other);
        assert_eq!(kinds.of("missing"), ColumnKind::Other);
    }

    #[test]
    fn create_statements_are_renamed_and_lose_the_counter() {
        let create = "CREATE TABLE `users_3` (\n  `id` bigint(20) NOT NULL AUTO_INCREMENT,\n  \
                      PRIMARY KEY (`id`)\n) ENGINE=InnoDB AUTO_INCREMENT=4711 DEFAULT CHARSET=utf8mb4";
        assert_eq!(
            retarget_create(create, "users_3", "users_3__sgnew").unwrap(),
            "CREATE TABLE IF NOT EXISTS `users_3__sgnew` (\n  `id` bigint(20) NOT NULL AUTO_INCREMENT,\n  \
             PRIMARY KEY (`id`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
        );
        assert!(retarget_create(create, "users_4", "x").is_err());
    }

    #[test]
    fn only_one_integer_key_column_is_copyable() {
        let mut schema = TableSchema {
            columns: vec![
                column("user_id", "bigint(20) unsigned"),
                column("name", "varchar(9)"),
            ],
            primary_key: vec!["user_id".into()],
        };
        assert_eq!(schema.integer_key(), Ok(0));
        schema.primary_key = vec!["name".into()];
        assert!(schema.integer_key().unwrap_err().contains("varchar(9)"));
        schema.primary_key = vec!["user_id".into(), "name".into()];
        assert!(schema.integer_key().unwrap_err().contains("2 columns"));
        schema.primary_key.clear();
        assert_eq!(schema.integer_key().unwrap_err(), "it has no primary key");
    }
}
