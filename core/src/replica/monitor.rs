//! The background monitor of one replica: every `monitor_interval_ms` it
//! asks the replica, on a connection of its own, how replication goes
//! ([`Replicated::replica_status`]). A replica that does not
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

use crate::backend::pool::{Pool, Replication};
use crate::backend::{Connection, Lag, Replicated};
use crate::error::BackendError;
use crate::metrics::Metrics;

/// Starts monitoring `pool` (a replica of `primary`); ends when the handle
/// is aborted.
pub fn spawn<C: Replicated>(
    pool: Arc<Pool<C>>,
    primary: Arc<Pool<C>>,
    read: ReadConfig,
    metrics: Arc<Metrics>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let interval = Duration::from_millis(read.monitor_interval_ms.max(50));
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut conn: Option<C> = None;
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

fn unusable<P: Default>(reason: String) -> Replication<P> {
    Replication {
        usable: false,
        reason: Some(reason),
        lag: None,
        applied: P::default(),
        checked_at: SystemTime::now(),
    }
}

/// One look at the replica.
async fn check<C: Replicated>(
    pool: &Pool<C>,
    primary: &Pool<C>,
    conn: &mut Option<C>,
    read: &ReadConfig,
) -> Result<Replication<C::Position>, BackendError> {
    if conn.is_none() {
        let name: Arc<str> = Arc::from(format!("{} (monitor)", pool.name()));
        *conn = Some(C::connect(name, pool.url(), C::internal_flavor(), pool.limits()).await?);
    }
    let Some(c) = conn.as_mut() else {
        unreachable!("connected above");
    };
    let status = c.replica_status().await?;
    let max_lag = Duration::from_millis(read.max_replica_lag_ms);
    let reason = if let Some(stopped) = status.applier_stopped {
        Some(stopped)
    } else if let Some(stopped) = status.receiver_stopped {
        // When the primary itself is down there is nothing newer to lag
        // behind: a replica that applied all it received is the freshest
        // copy there is, and keeps serving reads while the primary is away.
        if status.applied_all_received && !answers(primary).await {
            None
        } else {
            Some(stopped)
        }
    } else {
        match &status.lag {
            Lag::Unknown(why) => Some(why.clone()),
            Lag::Behind(lag) if *lag > max_lag => Some(format!(
                "lags {}s, more than max_replica_lag_ms = {}",
                lag.as_secs(),
                read.max_replica_lag_ms
            )),
            Lag::Behind(_) => None,
        }
    };
    Ok(Replication {
        usable: reason.is_none(),
        reason,
        lag: status.lag.known(),
        applied: status.applied,
        checked_at: SystemTime::now(),
    })
}

/// Whether the primary accepts a connection (and the proxy's login)
/// within a short bound.
async fn answers<C: Connection>(primary: &Pool<C>) -> bool {
    let name: Arc<str> = Arc::from(format!("{} (replica monitor)", primary.name()));
    let connect = C::connect(name, primary.url(), C::internal_flavor(), primary.limits());
    matches!(
        tokio::time::timeout(PRIMARY_PROBE_TIMEOUT, connect).await,
        Ok(Ok(_))
    )
}

/// How long the probe of a primary may take when a replica's IO thread is
/// not running.
const PRIMARY_PROBE_TIMEOUT: Duration = Duration::from_millis(500);
