//! What a client hears when the analysis cannot parse its statement on
//! sharded tables: MariaDB's own syntax error when MariaDB refuses the
//! statement too, the proxy's refusal (1235) when MariaDB would have run it.
//!
//! The statement is prepared (COM_STMT_PREPARE) on the default data
//! source, which parses it and runs nothing: a syntax error comes back as
//! 1064 with MariaDB's message, quoting the client's own text near the
//! error, as one unsharded server answers. A statement that prepares is
//! closed at once.

use std::borrow::Cow;

use shardgate_core::error::{DbError, ProxyError};
use shardgate_sql::classify::Classified;
use shardgate_sql::lex::Tokens;
use shardgate_sql::shard::analyze::Analysis;

use super::{command_payload, Failure, Session};
use crate::codes;
use crate::command::{COM_STMT_CLOSE, COM_STMT_PREPARE};
use crate::response::{Outcome, ResponseKind};

impl Session {
    /// [`Session::analyze_from`] of `text`, the analysis text of `sent` (the
    /// client's bytes); a statement it cannot parse is answered as
    /// [`Session::unparsable`] says.
    pub(super) async fn analyze_sent<'a>(
        &mut self,
        sent: &[u8],
        text: &'a str,
        tokens: Option<Tokens<'_, '_>>,
    ) -> Result<(Analysis, Cow<'a, str>), Failure> {
        match self.analyze_from(text, tokens) {
            Err(Failure::Unparsable(refusal)) => Err(self.unparsable(sent, refusal).await),
            analyzed => analyzed,
        }
    }

    /// The error for statement `sql` (the client's bytes) that the
    /// analysis could not parse: MariaDB's syntax error, or `refusal`.
    async fn unparsable(&mut self, sql: &[u8], refusal: ProxyError) -> Failure {
        match self.server_syntax_error(sql).await {
            Ok(Some(err)) => Failure::Reply(err),
            Ok(None) => Failure::Reply(refusal),
            // The question failed, not the statement: the refusal stands.
            Err(Failure::Reply(_) | Failure::Lost { .. }) => Failure::Reply(refusal),
            Err(other) => other,
        }
    }

    /// The default data source's syntax error for `sql`, if it has one.
    async fn server_syntax_error(&mut self, sql: &[u8]) -> Result<Option<ProxyError>, Failure> {
        let classified = Classified::default();
        let mut conn = self.checkout(&classified).await?;
        let asked = async {
            conn.send_command(&command_payload(COM_STMT_PREPARE, sql))
                .await?;
            conn.read_outcome(ResponseKind::Prepare).await
        }
        .await;
        let found = match asked? {
            Outcome::Err(err) if err.code == codes::ER_PARSE_ERROR => {
                Some(ProxyError::server(DbError {
                    code: err.code,
                    sqlstate: err.sqlstate,
                    message: err.message,
                }))
            }
            Outcome::Prepared(ok) => {
                // Closed with the connection's next command (no reply).
                let mut close = vec![COM_STMT_CLOSE];
                close.extend_from_slice(&ok.statement_id.to_le_bytes());
                conn.queue_command(&close);
                None
            }
            Outcome::Ok(_) | Outcome::Err(_) => None,
        };
        self.release(conn, &classified);
        Ok(found)
    }
}
