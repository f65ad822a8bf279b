//! What one user may do through the proxy: the logical databases it may use
//! (`users[].databases`) and whether it may write (`users[].read_only`).
//! Refusals are worded as MariaDB words a missing grant or its `read_only`,
//! so that clients and their users read them as they would from a server;
//! nothing refused reaches a data source.
//!
//! A session takes its user's access at login, from the configuration of
//! that moment, and keeps it: a reload applies a changed list or role to
//! new logins, as a changed password applies to them (see `reload`).

use shardgate_rules::config::UserConfig;
use shardgate_sql::dialect::Dialect;
use shardgate_sql::label::{first_word, statement_label};
use shardgate_sql::lex::{qualified_names, Token, Tokens};
use shardgate_sql::reads::writes_lexed;

use crate::error::{ErrorKind, ProxyError};

/// The access of one logged-in user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserAccess {
    user: String,
    /// The client's host, which MariaDB names in a refused table.
    host: String,
    /// None: every logical database.
    databases: Option<Vec<String>>,
    read_only: bool,
}

impl UserAccess {
    /// The access `user` has, logged in from `host`.
    pub fn new(user: &UserConfig, host: &str) -> Self {
        UserAccess {
            user: user.name.clone(),
            host: host.to_owned(),
            databases: user.databases.clone(),
            read_only: user.read_only,
        }
    }

    /// Whether the user may use logical database `name`.
    pub fn may_use(&self, name: &str) -> bool {
        self.databases
            .as_ref()
            .is_none_or(|list| list.iter().any(|db| db == name))
    }

    /// Whether the user may use only some logical databases.
    pub fn is_restricted(&self) -> bool {
        self.databases.is_some()
    }

    /// Refuses a database the user may not use (at login, `USE`, COM_INIT_DB)
    /// with MariaDB's 1044, which names the account's host: ShardGate's
    /// users log in from anywhere (`'%'`). A restricted user naming a
    /// database the proxy does not serve gets it too, as from MariaDB.
    pub fn check_database(&self, name: &str) -> Result<(), ProxyError> {
        if self.may_use(name) {
            return Ok(());
        }
        Err(ProxyError::new(
            ErrorKind::DatabaseAccessDenied,
            format!(
                "Access denied for user '{}'@'%' to database '{name}'",
                self.user
            ),
        ))
    }

    /// Refuses a statement that names a table of a logical database the
    /// user may not use (`other.t`; `SHOW ... FROM other`). `database_of`
    /// tells which logical database a qualifier names, if any (its logical
    /// or its physical name): other qualifiers (tables, aliases,
    /// `information_schema`) are no logical database's.
    pub fn check_tables<'n>(
        &self,
        sql: &str,
        tokens: Tokens<'_, '_>,
        database_of: impl Fn(&str) -> Option<&'n str>,
    ) -> Result<(), ProxyError> {
        if !self.is_restricted() {
            return Ok(());
        }
        for (qualifier, table) in qualified_names(tokens) {
            if database_of(qualifier).is_some_and(|db| !self.may_use(db)) {
                return Err(ProxyError::new(
                    ErrorKind::TableAccessDenied,
                    format!(
                        "{} command denied to user '{}'@'{}' for table `{qualifier}`.`{table}`",
                        command_of(sql),
                        self.user,
                        self.host
                    ),
                ));
            }
        }
        if tokens.first().is_some_and(|t| t.token.is_word("SHOW")) {
            for (before, t) in tokens.iter().zip(tokens.iter().skip(1)) {
                let from = before.token.is_word("FROM") || before.token.is_word("IN");
                if let (true, Token::Word(name) | Token::QuotedIdent(name)) = (from, t.token) {
                    if let Some(db) = database_of(name) {
                        self.check_database(db)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Refuses a statement that writes (see `sql::reads::writes_lexed`)
    /// from a read-only user.
    pub fn check_write(
        &self,
        dialect: &dyn Dialect,
        sql: &str,
        tokens: Tokens<'_, '_>,
    ) -> Result<(), ProxyError> {
        if self.read_only && writes_lexed(dialect, sql, tokens) {
            return Err(self.read_only_refusal());
        }
        Ok(())
    }

    /// Whether the user may only read.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// MariaDB's 1290 for a server in `read_only`, naming the user and the
    /// key that makes it read-only.
    pub fn read_only_refusal(&self) -> ProxyError {
        ProxyError::new(
            ErrorKind::ReadOnlyUser,
            format!(
                "The ShardGate user '{}' is read-only (users[].read_only), so it cannot execute this statement",
                self.user
            ),
        )
    }
}

/// The privilege MariaDB names when it refuses a table to `sql`.
fn command_of(sql: &str) -> String {
    match statement_label(sql.as_bytes()) {
        "insert" => "INSERT".into(),
        "update" => "UPDATE".into(),
        "delete" => "DELETE".into(),
        "replace" => "INSERT, DELETE".into(),
        "ddl" => match String::from_utf8_lossy(first_word(sql.as_bytes())).to_ascii_uppercase() {
            truncate if truncate == "TRUNCATE" => "DROP".into(),
            rename if rename == "RENAME" => "ALTER".into(),
            word => word,
        },
        _ => "SELECT".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardgate_sql::dialect::MARIADB;
    use shardgate_sql::lex::TokenList;

    fn user(databases: Option<&[&str]>, read_only: bool) -> UserAccess {
        let mut config = UserConfig::with_password("report", "");
        config.databases = databases.map(|d| d.iter().map(|s| s.to_string()).collect());
        config.read_only = read_only;
        UserAccess::new(&config, "10.0.0.7")
    }

    /// `ops` (physical `ops_db`) and `wework` are the logical databases.
    fn database_of(name: &str) -> Option<&'static str> {
        match name {
            "ops" | "ops_db" => Some("ops"),
            "wework" => Some("wework"),
            _ => None,
        }
    }

    fn tables(access: &UserAccess, sql: &str) -> Result<(), String> {
        access
            .check_tables(sql, TokenList::of(sql).tokens(), database_of)
            .map_err(|e| e.message)
    }

    #[test]
    fn a_restricted_user_is_refused_other_databases_in_mariadbs_words() {
        let access = user(Some(&["wework"]), false);
        assert!(access.check_database("wework").is_ok());
        let err = access.check_database("ops").unwrap_err();
        assert_eq!(err.kind, ErrorKind::DatabaseAccessDenied);
        assert_eq!(
            err.message,
            "Access denied for user 'report'@'%' to database 'ops'"
        );
        assert!(tables(&access, "SELECT * FROM wework.t JOIN t2 ON t2.a = t.a").is_ok());
        assert!(tables(&access, "SELECT * FROM information_schema.tables").is_ok());
        for (sql, message) in [
            (
                "SELECT * FROM t JOIN ops.t2 USING (id)",
                "SELECT command denied to user 'report'@'10.0.0.7' for table `ops`.`t2`",
            ),
            (
                "insert into `ops_db`.`t` values (1)",
                "INSERT command denied to user 'report'@'10.0.0.7' for table `ops_db`.`t`",
            ),
            (
                "REPLACE INTO ops.t VALUES (1)",
                "INSERT, DELETE command denied to user 'report'@'10.0.0.7' for table `ops`.`t`",
            ),
            (
                "TRUNCATE ops.t",
                "DROP command denied to user 'report'@'10.0.0.7' for table `ops`.`t`",
            ),
            (
                "SHOW TABLES FROM ops",
                "Access denied for user 'report'@'%' to database 'ops'",
            ),
        ] {
            assert_eq!(tables(&access, sql), Err(message.to_owned()), "{sql}");
        }
        let everything = user(None, false);
        assert!(everything.check_database("ops").is_ok());
        assert!(tables(&everything, "SELECT * FROM ops.t").is_ok());
    }

    #[test]
    fn a_read_only_user_is_refused_writes_only() {
        let check = |access: &UserAccess, sql: &str| {
            access.check_write(&MARIADB, sql, TokenList::of(sql).tokens())
        };
        let reader = user(None, true);
        let err = check(&reader, "DELETE FROM t").unwrap_err();
        assert_eq!(err.kind, ErrorKind::ReadOnlyUser);
        assert_eq!(
            err.message,
            "The ShardGate user 'report' is read-only (users[].read_only), so it cannot execute this statement"
        );
        assert!(check(&reader, "SELECT * FROM t").is_ok());
        assert!(check(&user(None, false), "DELETE FROM t").is_ok());
    }
}
