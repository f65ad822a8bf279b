//! The background monitor of one replica: every `monitor_interval_ms` it
//! asks the replica, on a connection of its own, how replication goes
//! (`SHOW SLAVE STATUS`, `@@gtid_slave_pos`). A replica that does not
//! answer, whose replication threads stopped, or that lags more than
//! `max_replica_lag_ms` leaves the read rotation; it comes back when
//! healthy again. Each transition is logged once and counted. A replica
//! whose IO thread lost a primary that is down (the proxy cannot reach it
//! either) stays in: it has all there is, and reads go on without the
//! primary.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use shardgate_rules::config::ReadConfig;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::backend::{BackendConn, Flavor};
use crate::backend::{Pool, Replication};
use shardgate_core::error::BackendError;
use shardgate_core::metrics::Metrics;
use shardgate_mysql::gtid::Position;

/// Starts monitoring `pool` (a replica of `primary`); ends when the handle
/// is aborted.
pub fn spawn(
    pool: Arc<Pool>,
    primary: Arc<Pool>,
    read: ReadConfig,
    metrics: Arc<Metrics>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let interval = Duration::from_millis(read.monitor_interval_ms.max(50));
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut conn: Option<BackendConn> = None;
        let mut was_usable: Option<bool> = None;
        loop {
            tick.tick().await;
            // A check may take a whole interval, at least a second.
            let bound = interval.max(Duration::from_secs(1));
            let state =
                match tokio::time::timeout(bound, check(&pool, &primary, &mut conn, &read)).await {
                    Ok(Ok(state)) => state,
                    Ok(Err(e)) => {
                        conn = None;
                        unusable(format!("not answering: {e}"))
                    }
                    Err(_) => {
                        conn = None;
                        unusable(format!("no answer within {bound:?}"))
                    }
                };
            if was_usable != Some(state.usable) {
                let name = pool.name();
                match (&state.reason, state.usable) {
                    (_, true) => info!(replica = %name, "replica is in the read rotation"),
                    (Some(reason), false) => {
                        warn!(replica = %name, "replica leaves the read rotation: {reason}")
                    }
                    (None, false) => warn!(replica = %name, "replica leaves the read rotation"),
                }
                // The first finding is not a transition unless it is bad.
                if was_usable.is_some() || !state.usable {
                    metrics.replica_transition(name, state.usable);
                }
                was_usable = Some(state.usable);
            }
            pool.set_replication(state);
        }
    })
}

fn unusable(reason: String) -> Replication {
    Replication {
        usable: false,
        reason: Some(reason),
        lag: None,
        applied: Position::default(),
        checked_at: SystemTime::now(),
    }
}

/// One look at the replica.
async fn check(
    pool: &Pool,
    primary: &Pool,
    conn: &mut Option<BackendConn>,
    read: &ReadConfig,
) -> Result<Replication, BackendError> {
    if conn.is_none() {
        let name: Arc<str> = Arc::from(format!("{} (monitor)", pool.name()));
        *conn = Some(BackendConn::connect(name, pool.url(), Flavor::internal()).await?);
    }
    let Some(c) = conn.as_mut() else {
        unreachable!("connected above");
    };
    let status = c.query_text_named("SHOW SLAVE STATUS").await?;
    let applied = c
        .query_text("SELECT @@gtid_slave_pos")
        .await?
        .first()
        .and_then(|r| r.first().cloned().flatten())
        .unwrap_or_default();
    let applied = Position::parse(&applied);
    let Some(row) = status.first() else {
        return Ok(Replication {
            reason: Some("not replicating (SHOW SLAVE STATUS is empty)".into()),
            applied,
            ..unusable(String::new())
        });
    };
    let field = |name: &str| row.get(name).and_then(|v| v.as_deref()).unwrap_or("");
    let io = field("Slave_IO_Running");
    let sql = field("Slave_SQL_Running");
    let lag = field("Seconds_Behind_Master")
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs);
    let max_lag = Duration::from_millis(read.max_replica_lag_ms);
    // Everything the IO thread received has been applied.
    let applied_all = field("Master_Log_File") == field("Relay_Master_Log_File")
        && field("Read_Master_Log_Pos") == field("Exec_Master_Log_Pos");
    let reason = if sql != "Yes" {
        Some(format!("replication SQL thread is {}", or_unknown(sql)))
    } else if io != "Yes" {
        // When the primary itself is down there is nothing newer to lag
        // behind: a replica that applied all it received is the freshest
        // copy there is, and keeps serving reads while the primary is away.
        if applied_all && !answers(primary).await {
            None
        } else {
            Some(format!("replication IO thread is {}", or_unknown(io)))
        }
    } else {
        match lag {
            None => Some("lag unknown (Seconds_Behind_Master is NULL)".into()),
            Some(lag) if lag > max_lag => Some(format!(
                "lags {}s, more than max_replica_lag_ms = {}",
                lag.as_secs(),
                read.max_replica_lag_ms
            )),
            Some(_) => None,
        }
    };
    Ok(Replication {
        usable: reason.is_none(),
        reason,
        lag,
        applied,
        checked_at: SystemTime::now(),
    })
}

/// Whether the primary accepts a connection (and the proxy's login)
/// within a short bound.
async fn answers(primary: &Pool) -> bool {
    let name: Arc<str> = Arc::from(format!("{} (replica monitor)", primary.name()));
    let connect = BackendConn::connect(name, primary.url(), Flavor::internal());
    matches!(
        tokio::time::timeout(PRIMARY_PROBE_TIMEOUT, connect).await,
        Ok(Ok(_))
    )
}

/// How long the probe of a primary may take when a replica's IO thread is
/// not running.
const PRIMARY_PROBE_TIMEOUT: Duration = Duration::from_millis(500);

fn or_unknown(state: &str) -> &str {
    if state.is_empty() {
        "stopped"
    } else {
        state
    }
}
