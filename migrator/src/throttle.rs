//! Throttling the copy by replication lag: before a batch from a data
//! source, wait while one of its replicas (as the configuration lists them)
//! is further behind its primary than the bound, so that the copy's load
//! never leaves the replicas serving stale reads.

use crate::backend::Backends;
use mysql_async::prelude::Queryable;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a good lag reading is trusted before asking the replicas again.
const RECHECK: Duration = Duration::from_secs(1);
/// How long to wait before asking a lagging replica again.
const WAIT: Duration = Duration::from_millis(500);

/// One replica's `Seconds_Behind_Master`; None when it is not replicating
/// or could not be asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaLag {
    pub address: String,
    pub seconds: Option<u64>,
}

/// The first replica further behind than `bound_secs`. A replica that is not
/// replicating does not hold the copy back: it serves no fresh reads, and
/// waiting for it could take forever (the health monitor reports it).
pub fn lagging(lags: &[ReplicaLag], bound_secs: u64) -> Option<&ReplicaLag> {
    lags.iter()
        .find(|lag| lag.seconds.is_some_and(|s| s > bound_secs))
}

/// Replica lag checks of every data source, shared by the copy workers.
pub struct Throttle {
    bound_secs: u64,
    /// When each data source's replicas were last seen within the bound.
    last_ok: Mutex<HashMap<String, Instant>>,
}

impl Throttle {
    pub fn new(bound_secs: u64) -> Throttle {
        Throttle {
            bound_secs,
            last_ok: Mutex::new(HashMap::new()),
        }
    }

    fn recently_ok(&self, data_source: &str) -> bool {
        self.last_ok
            .lock()
            .map(|m| m.get(data_source).is_some_and(|t| t.elapsed() < RECHECK))
            .unwrap_or(false)
    }

    fn mark_ok(&self, data_source: &str) {
        if let Ok(mut m) = self.last_ok.lock() {
            m.insert(data_source.to_string(), Instant::now());
        }
    }

    /// Why the copy from `data_source` waits for `lag`, and what to do.
    pub fn reason(&self, data_source: &str, lag: &ReplicaLag) -> String {
        format!(
            "the copy from {data_source} waits: its replica {} is {} s behind (bound {} s, \
             --max-replica-lag-secs); a long transaction or a lock on the replica holds its \
             replication back (look there: SHOW PROCESSLIST), or raise the bound",
            lag.address,
            lag.seconds.unwrap_or_default(),
            self.bound_secs
        )
    }

    /// Returns once every replica of `data_source` is within the bound;
    /// returns how long it waited. `on_hold` hears why it waits when it
    /// starts to (Some) and when the wait ends (None).
    pub async fn wait(
        &self,
        backends: &Backends,
        data_source: &str,
        on_hold: impl Fn(Option<String>),
    ) -> Duration {
        let started = Instant::now();
        let mut announced = false;
        loop {
            if self.recently_ok(data_source) {
                return started.elapsed();
            }
            let lags = replica_lags(backends, data_source).await;
            match lagging(&lags, self.bound_secs) {
                None => {
                    self.mark_ok(data_source);
                    if announced {
                        on_hold(None);
                        tracing::info!(
                            data_source,
                            waited_ms = started.elapsed().as_millis() as u64,
                            "replicas caught up; copy continues"
                        );
                    }
                    return started.elapsed();
                }
                Some(lag) => {
                    if !announced {
                        on_hold(Some(self.reason(data_source, lag)));
                        tracing::info!(
                            data_source,
                            replica = %lag.address,
                            lag_secs = lag.seconds.unwrap_or_default(),
                            bound_secs = self.bound_secs,
                            "replica lags: copy paused"
                        );
                        announced = true;
                    }
                    tokio::time::sleep(WAIT).await;
                }
            }
        }
    }
}

/// Asks each replica of a data source how far behind it is.
pub async fn replica_lags(backends: &Backends, data_source: &str) -> Vec<ReplicaLag> {
    let mut lags = Vec::new();
    for replica in backends.replicas(data_source) {
        let seconds = match replica.pool.get_conn().await {
            Ok(mut conn) => match conn
                .query_first::<mysql_async::Row, _>("SHOW SLAVE STATUS")
                .await
            {
                Ok(row) => {
                    row.and_then(|row| row.get::<Option<u64>, _>("Seconds_Behind_Master").flatten())
                }
                Err(error) => {
                    tracing::warn!(replica = %replica.address, %error, "cannot read replica lag");
                    None
                }
            },
            Err(error) => {
                tracing::warn!(replica = %replica.address, %error, "cannot reach replica");
                None
            }
        };
        lags.push(ReplicaLag {
            address: replica.address.clone(),
            seconds,
        });
    }
    lags
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lag(address: &str, seconds: Option<u64>) -> ReplicaLag {
        ReplicaLag {
            address: address.into(),
            seconds,
        }
    }

    #[test]
    fn only_a_replica_beyond_the_bound_holds_the_copy() {
        let lags = [lag("a", Some(5)), lag("b", None), lag("c", Some(6))];
        assert_eq!(lagging(&lags, 5).map(|l| l.address.as_str()), Some("c"));
        assert_eq!(lagging(&lags, 6), None);
        assert_eq!(lagging(&[lag("b", None)], 0), None);
        assert_eq!(lagging(&[], 0), None);
    }
}
