//! The session state a client set (`SET NAMES`, `sql_mode`, `time_zone`,
//! `autocommit`, user variables, ...), kept by the proxy so that any pooled
//! backend connection can be brought to it before serving the session.

use std::hash::{DefaultHasher, Hash, Hasher};

use shardgate_sql::classify::Assignment;

/// Ordered session assignments, later ones replayed after earlier ones.
#[derive(Debug, Default, Clone)]
pub struct SessionVars {
    entries: Vec<(String, String)>,
    fingerprint: u64,
}

/// Keys whose value `SET NAMES` / `SET CHARACTER SET` overrides.
const CHARSET_KEYS: [&str; 4] = [
    "character_set_client",
    "character_set_connection",
    "character_set_results",
    "collation_connection",
];

impl SessionVars {
    /// Records an assignment (replacing an earlier one of the same key, which
    /// moves to the end so the replay order stays the order of effect).
    pub fn record(&mut self, assignment: &Assignment) {
        self.record_fragment(&assignment.key, assignment.fragment.clone());
    }

    pub fn record_fragment(&mut self, key: &str, fragment: String) {
        self.entries.retain(|(k, _)| k != key);
        if key == "names" {
            self.entries
                .retain(|(k, _)| !CHARSET_KEYS.contains(&k.as_str()));
        }
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

    /// The statements that bring a freshly reset connection to this state:
    /// assignments merged into one `SET` where that parses the same.
    pub fn replay_statements(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut merged: Vec<&str> = Vec::new();
        for (key, fragment) in &self.entries {
            // A transaction characteristic is its own statement; a backslash
            // may parse differently once an earlier sql_mode has taken effect.
            if key == "transaction" || fragment.contains('\\') {
                if !merged.is_empty() {
                    out.push(format!("SET {}", merged.join(", ")));
                    merged.clear();
                }
                out.push(format!("SET {fragment}"));
            } else {
                merged.push(fragment);
            }
        }
        if !merged.is_empty() {
            out.push(format!("SET {}", merged.join(", ")));
        }
        out
    }
}

/// A value read back from `SELECT @@session.x` as a literal to replay.
pub fn literal_from_read_back(value: Option<&str>) -> String {
    match value {
        None => "NULL".to_owned(),
        Some(v) if !v.is_empty() && v.parse::<f64>().is_ok() && !v.contains(['e', 'E']) => {
            v.to_owned()
        }
        Some(v) => format!("'{}'", v.replace('\'', "''")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assign(key: &str, fragment: &str) -> Assignment {
        Assignment {
            key: key.into(),
            fragment: fragment.into(),
            read_back: false,
        }
    }

    #[test]
    fn replaces_and_reorders() {
        let mut vars = SessionVars::default();
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
        let mut vars = SessionVars::default();
        vars.record(&assign(
            "character_set_client",
            "@@session.character_set_client = latin1",
        ));
        vars.record(&assign("names", "NAMES utf8mb4"));
        assert_eq!(vars.replay_statements(), vec!["SET NAMES utf8mb4"]);
    }

    #[test]
    fn transaction_and_backslash_fragments_stand_alone() {
        let mut vars = SessionVars::default();
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

    #[test]
    fn read_back_literals() {
        assert_eq!(literal_from_read_back(Some("0")), "0");
        assert_eq!(literal_from_read_back(Some("")), "''");
        assert_eq!(literal_from_read_back(Some("ANSI,IT'S")), "'ANSI,IT''S'");
        assert_eq!(literal_from_read_back(None), "NULL");
    }
}
