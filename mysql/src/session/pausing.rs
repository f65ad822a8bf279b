//! The session's side of a resharding cutover: the pause gate every
//! statement passes before it is analysed (see `shardgate_core::pause`), the record
//! of the logical tables its open transaction writes (the in-flight
//! transactions a migrator waits for), and the refusal of statements on
//! re-ruled tables by a transaction that keeps an older rules version.

use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;

use super::{Failure, Session};
use crate::command::{Command, CommandKind};
use shardgate_core::error::{ErrorKind, ProxyError};
use shardgate_core::pause::statement::StatementTables;
use shardgate_sql::dialect::MARIADB;
use shardgate_sql::shard::analyze::{ShardedStatement, StatementKind};

/// The SQL text of a statement command (a prepared statement's own text for
/// an execution); None for other commands.
fn statement_text(session: &Session, command: &Command<'_>) -> Option<Arc<[u8]>> {
    match command.kind {
        CommandKind::Query(sql) | CommandKind::Prepare(sql) => Some(Arc::from(sql)),
        // Only with a pause on: an execution's text is not copied otherwise.
        CommandKind::Execute(_) => session
            .current
            .executing
            .as_ref()
            .and_then(|e| session.statements.get(e.id))
            .map(|stmt| stmt.sql.clone()),
        _ => None,
    }
}

impl Session {
    /// The pause gate: waits while a pause holds this command's statement,
    /// or refuses it after the pause's `max_queue_ms`. With nothing paused
    /// it costs one atomic load.
    pub(super) async fn wait_while_paused(
        &mut self,
        command: &Command<'_>,
    ) -> Result<(), ProxyError> {
        let gate = self.proxy.pauses().gate();
        self.admitted = gate;
        if !gate.any() {
            return Ok(());
        }
        let Some(sql) = statement_text(self, command) else {
            return Ok(());
        };
        let sql = String::from_utf8_lossy(&sql);
        let mut statement = StatementTables::of(&MARIADB, &sql);
        if let CommandKind::Prepare(_) = command.kind {
            statement = statement.as_read();
        }
        let written = self.registration.written();
        let pauses = self.proxy.pauses().clone();
        match pauses.admit(&statement, &written).await {
            Ok(gate) => {
                self.admitted = gate;
                Ok(())
            }
            Err(refused) => {
                tracing::debug!(table = %refused.table, "statement refused: {refused}");
                Err(ProxyError::new(
                    ErrorKind::PausedTooLong,
                    refused.to_string(),
                ))
            }
        }
    }

    /// Records that `st` writes its tables, before it runs. When a pause
    /// that began after the statement passed the gate holds one of them, the
    /// record is taken back and the statement goes back to the gate
    /// (nothing of it ran yet).
    pub(super) fn note_writes(&mut self, st: &ShardedStatement) -> Result<(), Failure> {
        let writes = match st.kind {
            StatementKind::Select => st.select.locking,
            StatementKind::Describe => false,
            StatementKind::Insert | StatementKind::Update | StatementKind::Delete => true,
            StatementKind::Ddl => true,
        };
        if !writes {
            return Ok(());
        }
        let added = self.registration.record_writes(&st.tables);
        self.wrote = true;
        // Pairs with the fence of the in-flight count (`Sessions::in_flight`).
        fence(Ordering::SeqCst);
        let pauses = self.proxy.pauses();
        if !pauses.gate().any() {
            return Ok(());
        }
        let mut before = self.registration.written();
        before.retain(|t| !added.contains(t));
        if pauses.newly_holds(self.admitted, &st.tables, &before) {
            self.registration.forget_writes(&added);
            return Err(Failure::Requeue);
        }
        Ok(())
    }

    /// Forgets the writes of a transaction that ended (or of a statement
    /// that ran outside one).
    pub(super) fn forget_ended_writes(&mut self) {
        if self.wrote && !self.in_transaction() {
            self.registration.clear_writes();
            self.wrote = false;
        }
    }

    /// For a session that keeps an older rules version (it is inside a
    /// transaction, or keeps its backend connection): refuses a statement naming a table whose rules changed
    /// since, which its version would route to the old layout — after a
    /// cutover renamed the physical tables, the wrong ones.
    pub(super) fn refuse_re_ruled_tables(&self, command: &Command<'_>) -> Result<(), Failure> {
        let current = self.proxy.current();
        let changed =
            shardgate_core::reload::tables_with_new_rules(&self.shared.config, &current.config);
        if changed.is_empty() {
            return Ok(());
        }
        let Some(sql) = statement_text(self, command) else {
            return Ok(());
        };
        let sql = String::from_utf8_lossy(&sql);
        let statement = StatementTables::of(&MARIADB, &sql);
        let Some(table) = changed.iter().find(|t| statement.mentions(t)) else {
            return Ok(());
        };
        let (held_by, remedy) = if self.in_transaction() {
            ("this transaction was open", "roll it back and run it again")
        } else {
            (
                "this session kept its backend connection",
                "reconnect to use the new rules",
            )
        };
        Err(Failure::Reply(ProxyError::new(
            ErrorKind::RulesChanged,
            format!(
                "Table definition has changed, please retry transaction: the sharding rules of table `{table}` changed (version {} -> {}) while {held_by}; {remedy}",
                self.shared.version, current.version
            ),
        )))
    }
}
