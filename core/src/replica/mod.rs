//! Replicas: the monitor that keeps each one in or out of the read
//! rotation, the balancer that picks one for a read, and the watermarks of
//! what reads must see.

pub mod balance;
pub mod monitor;
pub mod session_reads;
pub mod session_writes;
pub mod watermark;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use shardgate_rules::config::{Config, PrimaryReads, ReadConfig, ReadFallback};

use crate::backend::{Connection, Pool, ReplicaPosition};
use crate::error::BackendError;
use balance::{Balancer, Candidate};

/// Where one read goes.
pub enum ReadChoice<C: Connection> {
    /// A replica; when `wait_for` is set, only once it has applied that
    /// position (the session's own last write there), checked with a short
    /// wait — else the read goes to the primary.
    Replica {
        pool: Arc<Pool<C>>,
        wait_for: Option<C::Position>,
    },
    Primary,
}

/// The replica balancers of every data source.
pub struct ReadRouter {
    balancers: HashMap<String, Balancer>,
    /// Turns of broadcast-table reads over the data sources.
    broadcast_turn: AtomicUsize,
}

impl ReadRouter {
    pub fn new(config: &Config) -> Self {
        ReadRouter {
            balancers: config
                .data_sources
                .iter()
                .map(|(name, ds)| (name.clone(), Balancer::new(ds.read.strategy)))
                .collect(),
            broadcast_turn: AtomicUsize::new(0),
        }
    }

    /// The data source that serves the next read of broadcast tables, in
    /// turn among `candidates` (every one holds a copy): the reads spread
    /// over all data sources' replicas instead of the default one's.
    pub fn broadcast_source<'a>(&self, candidates: &[&'a str]) -> Option<&'a str> {
        if candidates.is_empty() {
            return None;
        }
        let turn = self.broadcast_turn.fetch_add(1, Ordering::Relaxed);
        candidates.get(turn % candidates.len()).copied()
    }

    /// Picks the server of data source `ds` for a read. `avoid`: replicas
    /// this read already failed on. `written`: the session's last write on
    /// that data source, when reads must not be older than it.
    pub fn choose<C: Connection>(
        &self,
        ds: &str,
        replicas: &[Arc<Pool<C>>],
        avoid: &[Arc<Pool<C>>],
        read: &ReadConfig,
        primary: &Arc<Pool<C>>,
        written: Option<&C::Position>,
    ) -> Result<ReadChoice<C>, BackendError> {
        let usable: Vec<(usize, &Arc<Pool<C>>)> = replicas
            .iter()
            .enumerate()
            .filter(|(_, p)| p.replication().is_some_and(|r| r.usable))
            .filter(|(_, p)| !avoid.iter().any(|a| Arc::ptr_eq(a, p)))
            .collect();
        if usable.is_empty() {
            return match read.fallback {
                ReadFallback::Primary => Ok(ReadChoice::Primary),
                ReadFallback::Error => Err(no_replica(ds, replicas)),
            };
        }
        // Replicas known to have the session's write need no wait.
        let caught_up: Vec<(usize, &Arc<Pool<C>>)> = match written {
            Some(pos) => usable
                .iter()
                .copied()
                .filter(|(_, p)| p.replication().is_some_and(|r| r.applied.includes_all(pos)))
                .collect(),
            None => Vec::new(),
        };
        let pick_from = if caught_up.is_empty() {
            &usable
        } else {
            &caught_up
        };
        let mut candidates: Vec<Candidate> = pick_from
            .iter()
            .map(|(i, p)| candidate(*i, p, read.weight(*i)))
            .collect();
        if read.primary_reads == PrimaryReads::Always {
            candidates.push(candidate(replicas.len(), primary, 1));
        }
        let balancer = self.balancers.get(ds);
        let chosen = balancer
            .and_then(|b| b.pick(&candidates))
            .unwrap_or(candidates[0].index);
        let Some(pool) = replicas.get(chosen) else {
            return Ok(ReadChoice::Primary);
        };
        let wait_for = if caught_up.is_empty() {
            written.cloned()
        } else {
            None
        };
        Ok(ReadChoice::Replica {
            pool: pool.clone(),
            wait_for,
        })
    }
}

fn candidate<C: Connection>(index: usize, pool: &Pool<C>, weight: u32) -> Candidate {
    let observed = pool.observed();
    Candidate {
        index,
        weight,
        in_flight: pool.in_use(),
        max: pool.size(),
        latency_us: observed.latency_us,
        error_rate: observed.error_rate,
    }
}

/// The error of a read when no replica is usable and the data source says
/// `fallback = "error"`.
fn no_replica<C: Connection>(ds: &str, replicas: &[Arc<Pool<C>>]) -> BackendError {
    let why: Vec<String> = replicas
        .iter()
        .map(|p| {
            let reason = p
                .replication()
                .and_then(|r| r.reason.clone())
                .unwrap_or_else(|| "not checked yet".into());
            format!("{}: {reason}", p.name())
        })
        .collect();
    BackendError::NoUsableReplica {
        ds: ds.to_owned(),
        why: if why.is_empty() {
            "none configured".into()
        } else {
            why.join("; ")
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::{Memory, Seq};
    use crate::backend::pool::Replication;
    use crate::backend::{PoolContext, Role};
    use crate::metrics::Metrics;
    use shardgate_rules::config::{BackendUrl, PoolConfig};

    /// Choosing never connects.
    type Pool = super::Pool<Memory>;

    fn replica(i: usize, context: &Arc<PoolContext>) -> Arc<Pool> {
        let url = BackendUrl::parse(&format!("mysql://root@127.0.0.1:{}/ds0", 13316 + 10 * i))
            .expect("url");
        let pool = Pool::new(
            &format!("ds0.replica{}", i + 1),
            "ds0",
            Role::Replica(i),
            url,
            PoolConfig::default(),
            context.clone(),
        );
        pool.set_replication(Replication {
            usable: true,
            reason: None,
            lag: None,
            applied: Seq(0),
            checked_at: std::time::SystemTime::now(),
        });
        pool
    }

    #[test]
    fn a_replica_to_avoid_is_not_chosen_and_broadcast_reads_take_turns() {
        let config =
            Config::from_toml_str(include_str!("../../../examples/wework.toml")).expect("config");
        let router = ReadRouter::new(&config);
        let context = PoolContext::new(Arc::new(Metrics::new()));
        let replicas = [replica(0, &context), replica(1, &context)];
        let primary = Pool::new(
            "ds0",
            "ds0",
            Role::Primary,
            BackendUrl::parse("mysql://root@127.0.0.1:13306/ds0").expect("url"),
            PoolConfig::default(),
            context.clone(),
        );
        let read = ReadConfig::default();
        for _ in 0..10 {
            let choice = router
                .choose("ds0", &replicas, &replicas[..1], &read, &primary, None)
                .expect("a choice");
            let ReadChoice::Replica { pool, .. } = choice else {
                panic!("the other replica, not the primary");
            };
            assert_eq!(pool.name(), "ds0.replica2");
        }
        let all = router.choose("ds0", &replicas, &replicas, &read, &primary, None);
        assert!(
            matches!(all, Ok(ReadChoice::Primary)),
            "none left: the primary"
        );
        let turns: Vec<&str> = (0..6)
            .filter_map(|_| router.broadcast_source(&["ds0", "ds1", "ds2"]))
            .collect();
        assert_eq!(turns, ["ds0", "ds1", "ds2", "ds0", "ds1", "ds2"]);
        assert_eq!(router.broadcast_source(&[]), None);
    }

    #[test]
    fn a_failure_counts_as_an_error_not_as_a_fast_answer() {
        let context = PoolContext::new(Arc::new(Metrics::new()));
        let pool = replica(0, &context);
        pool.observe(std::time::Duration::from_millis(5), true);
        pool.observe(std::time::Duration::ZERO, false);
        let observed = pool.observed();
        assert_eq!(observed.latency_us, 5_000.0);
        assert!((observed.error_rate - 0.1).abs() < 1e-9, "{observed:?}");
    }
}
