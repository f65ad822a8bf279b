//! Choosing a replica for a read (SPEC.md §5): round robin, smooth
//! weighted round robin, least connections, response time, and the seed's
//! adaptive score restricted to what a proxy measures.
//!
//! The seed scores 0.2·(1−cpu) + 0.2·(1−memory) + 0.3·(1/latency) +
//! 0.2·(1−error rate) + 0.1·(1−active/max). A proxy does not know a
//! replica's cpu or memory, so those terms are dropped and the rest keep
//! their proportions (0.5, 0.33, 0.17); latency enters as best/own (1 for
//! the fastest candidate). A random factor of ±5% lets equal replicas share
//! the load instead of one taking it all.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use rand::Rng;
use shardgate_rules::config::BalanceStrategy;

/// What the balancer knows of one usable replica.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// Position in the data source's replica list.
    pub index: usize,
    pub weight: u32,
    /// Statements running on it now.
    pub in_flight: usize,
    /// Its pool's size.
    pub max: usize,
    /// Moving average of recent statement latency, in µs (0: unknown).
    pub latency_us: f64,
    /// Moving average of failures (0..=1).
    pub error_rate: f64,
}

/// Picks replicas for one data source.
#[derive(Debug)]
pub struct Balancer {
    strategy: BalanceStrategy,
    next: AtomicUsize,
    /// Smooth weighted round robin's current weights, by replica index.
    current: Mutex<Vec<i64>>,
}

impl Balancer {
    pub fn new(strategy: BalanceStrategy) -> Self {
        Balancer {
            strategy,
            next: AtomicUsize::new(0),
            current: Mutex::new(Vec::new()),
        }
    }

    pub fn strategy(&self) -> BalanceStrategy {
        self.strategy
    }

    /// The index (`Candidate::index`) of the replica to use, None when
    /// there is no candidate.
    pub fn pick(&self, candidates: &[Candidate]) -> Option<usize> {
        let first = candidates.first()?;
        if candidates.len() == 1 {
            return Some(first.index);
        }
        let chosen = match self.strategy {
            BalanceStrategy::RoundRobin => {
                let n = self.next.fetch_add(1, Ordering::Relaxed);
                &candidates[n % candidates.len()]
            }
            BalanceStrategy::WeightedRoundRobin => self.smooth_weighted(candidates),
            BalanceStrategy::LeastConnections => {
                // Ties go round robin, so idle replicas share the load.
                let least = candidates.iter().map(|c| c.in_flight).min().unwrap_or(0);
                let tied: Vec<&Candidate> =
                    candidates.iter().filter(|c| c.in_flight == least).collect();
                let n = self.next.fetch_add(1, Ordering::Relaxed);
                tied[n % tied.len()]
            }
            BalanceStrategy::ResponseTime => {
                // Unknown latency (0) counts as fastest, so a new replica is tried.
                let mut rng = rand::rng();
                candidates
                    .iter()
                    .map(|c| (c, c.latency_us * rng.random_range(0.95..1.05)))
                    .min_by(|a, b| a.1.total_cmp(&b.1))
                    .map(|(c, _)| c)
                    .unwrap_or(first)
            }
            BalanceStrategy::Adaptive => {
                let best_latency = candidates
                    .iter()
                    .map(|c| c.latency_us)
                    .filter(|l| *l > 0.0)
                    .fold(f64::INFINITY, f64::min);
                let mut rng = rand::rng();
                candidates
                    .iter()
                    .map(|c| {
                        (
                            c,
                            adaptive_score(c, best_latency) * rng.random_range(0.95..1.05),
                        )
                    })
                    .max_by(|a, b| a.1.total_cmp(&b.1))
                    .map(|(c, _)| c)
                    .unwrap_or(first)
            }
        };
        Some(chosen.index)
    }

    /// nginx's smooth weighted round robin: deterministic, and spreads the
    /// heavier replica's turns (3:1 gives a a b a, not a a a b).
    fn smooth_weighted<'c>(&self, candidates: &'c [Candidate]) -> &'c Candidate {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let slots = candidates.iter().map(|c| c.index + 1).max().unwrap_or(0);
        if current.len() < slots {
            current.resize(slots, 0);
        }
        let total: i64 = candidates.iter().map(|c| i64::from(c.weight)).sum();
        let mut best = &candidates[0];
        for c in candidates {
            current[c.index] += i64::from(c.weight);
            if current[c.index] > current[best.index] {
                best = c;
            }
        }
        current[best.index] -= total;
        best
    }
}

/// The seed's score over the terms a proxy measures (see the module doc).
fn adaptive_score(c: &Candidate, best_latency: f64) -> f64 {
    let speed = if c.latency_us > 0.0 && best_latency.is_finite() {
        best_latency / c.latency_us
    } else {
        1.0
    };
    let load = if c.max == 0 {
        1.0
    } else {
        c.in_flight as f64 / c.max as f64
    };
    (0.3 * speed + 0.2 * (1.0 - c.error_rate) + 0.1 * (1.0 - load.min(1.0))) / 0.6
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(index: usize) -> Candidate {
        Candidate {
            index,
            weight: 1,
            in_flight: 0,
            max: 20,
            latency_us: 500.0,
            error_rate: 0.0,
        }
    }

    fn shares(balancer: &Balancer, candidates: &[Candidate], n: usize) -> Vec<usize> {
        let mut counts = vec![0; 4];
        for _ in 0..n {
            counts[balancer.pick(candidates).unwrap()] += 1;
        }
        counts
    }

    #[test]
    fn round_robin_alternates() {
        let b = Balancer::new(BalanceStrategy::RoundRobin);
        let c = [candidate(0), candidate(1)];
        assert_eq!(shares(&b, &c, 100)[..2], [50, 50]);
    }

    #[test]
    fn weights_three_to_one_give_three_to_one_interleaved() {
        let b = Balancer::new(BalanceStrategy::WeightedRoundRobin);
        let c = [
            Candidate {
                weight: 3,
                ..candidate(0)
            },
            candidate(1),
        ];
        let picks: Vec<usize> = (0..8).map(|_| b.pick(&c).unwrap()).collect();
        assert_eq!(picks, [0, 0, 1, 0, 0, 0, 1, 0]);
        assert_eq!(shares(&b, &c, 400)[..2], [300, 100]);
    }

    #[test]
    fn least_connections_prefers_the_idle_replica() {
        let b = Balancer::new(BalanceStrategy::LeastConnections);
        let c = [
            Candidate {
                in_flight: 5,
                ..candidate(0)
            },
            candidate(1),
        ];
        assert_eq!(shares(&b, &c, 10)[..2], [0, 10]);
    }

    #[test]
    fn response_time_prefers_the_fast_replica() {
        let b = Balancer::new(BalanceStrategy::ResponseTime);
        let c = [
            Candidate {
                latency_us: 5_000.0,
                ..candidate(0)
            },
            candidate(1),
        ];
        assert_eq!(shares(&b, &c, 100)[..2], [0, 100]);
    }

    #[test]
    fn adaptive_shares_equal_replicas_and_avoids_slow_or_failing_ones() {
        let b = Balancer::new(BalanceStrategy::Adaptive);
        let equal = [candidate(0), candidate(1)];
        let s = shares(&b, &equal, 1000);
        assert!(s[0] > 300 && s[1] > 300, "{s:?}");
        let slow = [
            Candidate {
                latency_us: 2_000.0,
                ..candidate(0)
            },
            candidate(1),
        ];
        assert_eq!(shares(&b, &slow, 100)[..2], [0, 100]);
        let failing = [
            Candidate {
                error_rate: 0.5,
                ..candidate(0)
            },
            candidate(1),
        ];
        assert_eq!(shares(&b, &failing, 100)[..2], [0, 100]);
    }

    #[test]
    fn no_candidate_no_pick() {
        assert_eq!(Balancer::new(BalanceStrategy::Adaptive).pick(&[]), None);
    }
}
