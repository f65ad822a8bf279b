//! The client's transaction as a session keeps it across data sources: how
//! it was opened (so that data sources it reaches later join alike) and its
//! savepoints (so that `ROLLBACK TO` works on every data source).

use shardgate_sql::classify::Savepoint;
use shardgate_sql::dialect::Dialect;

/// A session's transaction state.
#[derive(Debug, Default)]
pub struct TransactionState {
    /// The client's explicit transaction, so data sources it reaches later
    /// join alike.
    pub open: Option<OpenTransaction>,
    /// The transaction's savepoints, oldest first: a data source that joins
    /// the transaction later sets them too (nothing happened there before
    /// them), so `ROLLBACK TO` works on every data source.
    pub savepoints: Vec<String>,
    /// Characteristics `SET TRANSACTION` gave the next transaction.
    pub next_characteristics: Option<String>,
}

/// An explicit transaction the client opened.
#[derive(Debug, Clone)]
pub struct OpenTransaction {
    /// How it was opened (`START TRANSACTION READ ONLY`, ...): each data
    /// source joins it with the same statement.
    pub begin: String,
    pub read_only: bool,
    /// `SET TRANSACTION` characteristics given before it (isolation level,
    /// access mode): each data source that joins gets them first.
    pub characteristics: Option<String>,
}

impl TransactionState {
    /// The transaction ended (committed, rolled back, or lost).
    pub fn end(&mut self) {
        self.open = None;
        self.savepoints.clear();
    }

    /// The statements that bring a connection into the transaction the
    /// session has open on other data sources (`explicit`: opened by the
    /// client; else the work autocommit off began): its characteristics,
    /// its BEGIN, and its savepoints, so that `ROLLBACK TO` works there too.
    pub fn joining_statements(&self, dialect: &dyn Dialect) -> Vec<String> {
        let mut statements = Vec::with_capacity(2 + self.savepoints.len());
        match &self.open {
            Some(open) => {
                if let Some(c) = &open.characteristics {
                    statements.push(format!("SET TRANSACTION {c}"));
                }
                statements.push(open.begin.clone());
            }
            None => statements.push("START TRANSACTION".to_owned()),
        }
        for name in &self.savepoints {
            statements.push(format!("SAVEPOINT {}", dialect.quoted(name)));
        }
        statements
    }

    /// Follows a savepoint statement that succeeded, as a server keeps its
    /// savepoints: setting one again moves it last, rolling back to one
    /// forgets those after it, releasing one forgets it and those after.
    /// Names compare without regard to case, as MariaDB's and PostgreSQL's
    /// unquoted names do.
    pub fn track_savepoint(&mut self, op: &Savepoint) {
        let position = |savepoints: &[String], name: &str| {
            savepoints.iter().position(|s| s.eq_ignore_ascii_case(name))
        };
        match op {
            Savepoint::Set(name) => {
                if let Some(i) = position(&self.savepoints, name) {
                    self.savepoints.remove(i);
                }
                self.savepoints.push(name.clone());
            }
            Savepoint::RollbackTo(name) => {
                if let Some(i) = position(&self.savepoints, name) {
                    self.savepoints.truncate(i + 1);
                }
            }
            Savepoint::Release(name) => {
                if let Some(i) = position(&self.savepoints, name) {
                    self.savepoints.truncate(i);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after(ops: &[Savepoint]) -> Vec<String> {
        let mut tx = TransactionState::default();
        for op in ops {
            tx.track_savepoint(op);
        }
        tx.savepoints
    }

    fn set(name: &str) -> Savepoint {
        Savepoint::Set(name.into())
    }

    #[test]
    fn savepoints_follow_the_servers_rules() {
        assert_eq!(after(&[set("a"), set("b"), set("A")]), ["b", "A"]);
        assert_eq!(
            after(&[
                set("a"),
                set("b"),
                set("c"),
                Savepoint::RollbackTo("B".into())
            ]),
            ["a", "b"]
        );
        assert_eq!(
            after(&[set("a"), set("b"), set("c"), Savepoint::Release("b".into())]),
            ["a"]
        );
        assert_eq!(after(&[set("a"), Savepoint::Release("zz".into())]), ["a"]);
    }

    #[test]
    fn an_ended_transaction_keeps_nothing() {
        let mut tx = TransactionState {
            open: Some(OpenTransaction {
                begin: "BEGIN".into(),
                read_only: false,
                characteristics: None,
            }),
            ..TransactionState::default()
        };
        tx.track_savepoint(&set("a"));
        tx.end();
        assert!(tx.open.is_none() && tx.savepoints.is_empty());
    }

    #[test]
    fn a_connection_joins_the_transaction_as_it_was_opened_with_its_savepoints() {
        use shardgate_sql::dialect::MARIADB;
        let mut tx = TransactionState::default();
        assert_eq!(tx.joining_statements(&MARIADB), ["START TRANSACTION"]);
        tx.open = Some(OpenTransaction {
            begin: "START TRANSACTION READ ONLY".into(),
            read_only: true,
            characteristics: Some("ISOLATION LEVEL SERIALIZABLE".into()),
        });
        tx.track_savepoint(&set("a`b"));
        assert_eq!(
            tx.joining_statements(&MARIADB),
            [
                "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
                "START TRANSACTION READ ONLY",
                "SAVEPOINT `a``b`"
            ]
        );
    }
}
