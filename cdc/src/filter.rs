//! Which tables a change stream watches: a set of (schema, table) names.
//! Schema names compare exactly (MariaDB on Linux keeps them case
//! sensitive); table names compare ignoring case, so that a watched
//! `users_5` also matches a statement that wrote `USERS_5`.

use std::collections::HashSet;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableFilter {
    /// (schema, lower-cased table name)
    tables: HashSet<(String, String)>,
}

impl TableFilter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a table to watch.
    pub fn insert(&mut self, schema: impl Into<String>, table: &str) {
        self.tables.insert((schema.into(), table.to_lowercase()));
    }

    /// This filter with one more table to watch.
    pub fn with_table(mut self, schema: impl Into<String>, table: &str) -> Self {
        self.insert(schema, table);
        self
    }

    pub fn contains(&self, schema: &str, table: &str) -> bool {
        // A lookup key must be owned; tables are few, so the allocation is
        // only paid on table maps and statements, not on every row.
        self.tables
            .contains(&(schema.to_owned(), table.to_lowercase()))
    }

    /// Whether any watched table lives in `schema`.
    pub fn watches_schema(&self, schema: &str) -> bool {
        self.tables.iter().any(|(s, _)| s == schema)
    }

    /// The watched tables called `table` in any schema, for statements that
    /// name a table without a schema and ran with no default database.
    pub fn schemas_of(&self, table: &str) -> impl Iterator<Item = &str> {
        let table = table.to_lowercase();
        self.tables
            .iter()
            .filter(move |(_, t)| *t == table)
            .map(|(s, _)| s.as_str())
    }

    /// The watched tables of `schema`, as stored (lower-cased names).
    pub fn tables_of<'a>(&'a self, schema: &'a str) -> impl Iterator<Item = &'a str> {
        self.tables
            .iter()
            .filter(move |(s, _)| s == schema)
            .map(|(_, t)| t.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    pub fn len(&self) -> usize {
        self.tables.len()
    }
}

impl<S: Into<String>, T: AsRef<str>> FromIterator<(S, T)> for TableFilter {
    fn from_iter<I: IntoIterator<Item = (S, T)>>(iter: I) -> Self {
        let mut filter = TableFilter::new();
        for (schema, table) in iter {
            filter.insert(schema, table.as_ref());
        }
        filter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_ignore_case_but_schemas_do_not() {
        let filter: TableFilter = [("ds1", "Users_5")].into_iter().collect();
        assert!(filter.contains("ds1", "users_5"));
        assert!(filter.contains("ds1", "USERS_5"));
        assert!(!filter.contains("DS1", "users_5"));
        assert!(!filter.contains("ds1", "users_6"));
        assert!(filter.watches_schema("ds1"));
        assert!(!filter.watches_schema("ds2"));
        assert_eq!(filter.schemas_of("USERS_5").collect::<Vec<_>>(), ["ds1"]);
        assert_eq!(filter.tables_of("ds1").collect::<Vec<_>>(), ["users_5"]);
        assert_eq!(filter.len(), 1);
        assert!(TableFilter::new().is_empty());
    }
}
