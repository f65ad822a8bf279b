//! The session state a client set (character sets, `sql_mode`,
//! `time_zone`, `search_path`, user variables, ...), kept by the proxy so
//! that any pooled backend connection can be brought to it before serving
//! the session. What a setting replaces and the statements that replay
//! them are the data sources' dialect's.

use std::hash::{DefaultHasher, Hash, Hasher};

use shardgate_sql::classify::Assignment;
use shardgate_sql::dialect::Dialect;

/// Ordered session assignments, later ones replayed after earlier ones.
#[derive(Debug, Clone)]
pub struct SessionVars {
    entries: Vec<(String, String)>,
    fingerprint: u64,
    dialect: &'static dyn Dialect,
}

impl SessionVars {
    /// No settings, replayed in `dialect`'s statements.
    pub fn new(dialect: &'static dyn Dialect) -> Self {
        SessionVars {
            entries: Vec::new(),
            fingerprint: 0,
            dialect,
        }
    }

    /// Records an assignment (replacing an earlier one of the same key, which
    /// moves to the end so the replay order stays the order of effect).
    pub fn record(&mut self, assignment: &Assignment) {
        self.record_fragment(&assignment.key, assignment.fragment.clone());
    }

    pub fn record_fragment(&mut self, key: &str, fragment: String) {
        let replaced = self.dialect.settings_replaced_by(key);
        self.entries
            .retain(|(k, _)| k != key && !replaced.contains(&k.as_str()));
        self.entries.push((key.to_owned(), fragment));
        self.refresh();
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.fingerprint = 0;
    }

    fn refresh(&mut self) {
        let mut h = DefaultHasher::new();
        self.entries.hash(&mut h);
        // 0 is reserved for "nothing applied".
        self.fingerprint = h.finish().max(1);
    }

    /// Identifies the state; 0 when nothing was set.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// The statements that bring a freshly reset connection to this state.
    pub fn replay_statements(&self) -> Vec<String> {
        self.dialect.replay_settings(&self.entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardgate_sql::dialect::MARIADB;

    fn assign(key: &str, fragment: &str) -> Assignment {
        Assignment {
            key: key.into(),
            fragment: fragment.into(),
            read_back: false,
        }
    }

    #[test]
    fn replaces_and_reorders() {
        let mut vars = SessionVars::new(&MARIADB);
        assert_eq!(vars.fingerprint(), 0);
        vars.record(&assign("names", "NAMES latin1"));
        vars.record(&assign("time_zone", "@@session.time_zone = '+05:00'"));
        let fp = vars.fingerprint();
        vars.record(&assign("names", "NAMES utf8mb4"));
        assert_ne!(vars.fingerprint(), fp);
        assert_eq!(
            vars.replay_statements(),
            vec!["SET @@session.time_zone = '+05:00', NAMES utf8mb4"]
        );
    }

    #[test]
    fn names_overrides_charset_variables() {
        let mut vars = SessionVars::new(&MARIADB);
        vars.record(&assign(
            "character_set_client",
            "@@session.character_set_client = latin1",
        ));
        vars.record(&assign("names", "NAMES utf8mb4"));
        assert_eq!(vars.replay_statements(), vec!["SET NAMES utf8mb4"]);
    }

    #[test]
    fn transaction_and_backslash_fragments_stand_alone() {
        let mut vars = SessionVars::new(&MARIADB);
        vars.record(&assign("a", "@@session.a = 1"));
        vars.record(&assign("transaction", "SESSION TRANSACTION READ ONLY"));
        vars.record(&assign("@s", r"@`s` = 'a\\b'"));
        vars.record(&assign("b", "@@session.b = 2"));
        assert_eq!(
            vars.replay_statements(),
            vec![
                "SET @@session.a = 1".to_owned(),
                "SET SESSION TRANSACTION READ ONLY".to_owned(),
                r"SET @`s` = 'a\\b'".to_owned(),
                "SET @@session.b = 2".to_owned(),
            ]
        );
    }
}
