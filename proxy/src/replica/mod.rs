//! Replicas: their GTID positions, the monitor that keeps each one in or
//! out of the read rotation, and the balancer that picks one for a read.

pub mod balance;
pub mod gtid;
pub mod monitor;

use std::collections::HashMap;
use std::sync::Arc;

use shardgate_rules::config::{Config, PrimaryReads, ReadConfig, ReadFallback};

use crate::backend::Pool;
use crate::error::codes;
use crate::wire::ok_err::ErrInfo;
use balance::{Balancer, Candidate};
use gtid::Position;

/// Where one read goes.
#[derive(Clone)]
pub enum ReadChoice {
    /// A replica; when `wait_for` is set, only once it has applied that
    /// transaction (the session's own last write there), checked with a
    /// short `MASTER_GTID_WAIT` — else the read goes to the primary.
    Replica {
        pool: Arc<Pool>,
        wait_for: Option<Position>,
    },
    Primary,
}

/// The replica balancers of every data source.
pub struct ReadRouter {
    balancers: HashMap<String, Balancer>,
}

impl ReadRouter {
    pub fn new(config: &Config) -> Self {
        ReadRouter {
            balancers: config
                .data_sources
                .iter()
                .map(|(name, ds)| (name.clone(), Balancer::new(ds.read.strategy)))
                .collect(),
        }
    }

    /// Picks the server of data source `ds` for a read. `avoid`: replicas
    /// this read already failed on. `written`: the session's last write on
    /// that data source, when reads must not be older than it.
    pub fn choose(
        &self,
        ds: &str,
        replicas: &[Arc<Pool>],
        avoid: &[Arc<Pool>],
        read: &ReadConfig,
        primary: &Arc<Pool>,
        written: Option<&Position>,
    ) -> Result<ReadChoice, ErrInfo> {
        let usable: Vec<(usize, &Arc<Pool>)> = replicas
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
        let caught_up: Vec<(usize, &Arc<Pool>)> = match written {
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

fn candidate(index: usize, pool: &Pool, weight: u32) -> Candidate {
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
fn no_replica(ds: &str, replicas: &[Arc<Pool>]) -> ErrInfo {
    let why: Vec<String> = replicas
        .iter()
        .map(|p| {
            let reason = p
                .replication()
                .and_then(|r| r.reason)
                .unwrap_or_else(|| "not checked yet".into());
            format!("{}: {reason}", p.name())
        })
        .collect();
    ErrInfo::new(
        codes::ER_CONNECT_TO_FOREIGN_DATA_SOURCE,
        "HY000",
        format!(
            "no usable replica for reads on {ds} ({}); data_sources.{ds}.read.fallback = \"error\" forbids reading the primary",
            if why.is_empty() { "none configured".into() } else { why.join("; ") }
        ),
    )
}
