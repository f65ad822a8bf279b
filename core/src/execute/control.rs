//! Transaction control (COMMIT, ROLLBACK, SAVEPOINT ...) on every data
//! source a session's transaction touched.

use shardgate_sql::label::first_word;
use tracing::{error, warn};

use super::{listed, StatementConn};
use crate::error::{ConnError, ProxyError};
use crate::metrics::Metrics;

/// Runs `sql` (the client's bytes) on every connection of the
/// transaction. Each gets it whatever the others answer (local
/// transactions), so it is sent to all before any reply is read: one round
/// trip, not one per data source. The last answer, or the first error with
/// the data sources it was done on; a COMMIT that failed after others
/// committed is logged and counted.
pub async fn on_every_source<C: StatementConn>(
    conns: &mut [C],
    sql: &[u8],
    metrics: &Metrics,
) -> Result<C::Done, ProxyError> {
    let mut sent = Vec::with_capacity(conns.len());
    for conn in conns.iter_mut() {
        // Until its reply is read, a connection cannot be reused.
        conn.set_broken(true);
        sent.push(conn.send(sql).await);
    }
    let mut done = Vec::new();
    let mut failed: Option<ProxyError> = None;
    let mut last = C::Done::default();
    for (conn, sent) in conns.iter_mut().zip(sent) {
        let reply = match sent {
            Ok(()) => conn.read_done().await,
            Err(e) => Err(e),
        };
        // An error reply was read whole: the connection stays usable (and
        // keeps its transaction, for a failed SAVEPOINT command).
        conn.set_broken(!matches!(reply, Ok(_) | Err(ConnError::Server { .. })));
        match reply {
            Ok(answer) => {
                last = answer;
                done.push(conn.data_source().to_owned());
            }
            Err(e) => {
                let err = ProxyError::from(e);
                let statement = String::from_utf8_lossy(sql);
                warn!(
                    ds = conn.data_source(),
                    "{statement} failed: {}", err.message
                );
                failed.get_or_insert(err.in_context(format_args!(
                    "on data source {}; done on: {}",
                    conn.data_source(),
                    listed(&done)
                )));
            }
        }
    }
    match failed {
        Some(err) => {
            if first_word(sql).eq_ignore_ascii_case(b"commit") && !done.is_empty() {
                error!(committed = %done.join(", "), "COMMIT failed after other data sources committed: {}", err.message);
                metrics.partial_commit();
            }
            Err(err)
        }
        None => Ok(last),
    }
}
