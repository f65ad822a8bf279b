//! Deadlock detection between sessions waiting for pooled connections.
//!
//! A session in a transaction keeps one connection per data source it has
//! touched; when its next statement needs a data source whose pool is
//! exhausted, it waits while holding the others. Sessions that wait on each
//! other that way would wait until `acquire_timeout`, each (the classic
//! "Can not get N connections one time" of ShardingSphere). Statements of
//! one session take their connections in data-source order, so only waits
//! across statements can close a cycle; every cycle is closed by a session
//! starting to wait, and that is when it is looked for.
//!
//! The check is a reduction (as in deadlock detection for resources with
//! several units): sessions not waiting are assumed to finish and give
//! their connections back; a waiting session whose pool then has a free
//! connection can finish too and gives back what it holds; the waiting
//! sessions that remain can never be served. If the session that just
//! started waiting is among them it is the victim: it gets MySQL's
//! "deadlock" error (1213) and its transaction is rolled back, as a server
//! does for a lock deadlock; clients and benchmarks retry such errors.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The connections one session holds, by pool: shared between the
/// session's pooled connections (which add and remove themselves) and the
/// wait graph (which reads it).
#[derive(Debug, Default)]
pub struct Holder {
    id: u64,
    /// Pool ids, one entry per connection held.
    held: Mutex<Vec<usize>>,
}

static NEXT_HOLDER: AtomicU64 = AtomicU64::new(1);

impl Holder {
    pub fn new() -> Arc<Self> {
        Arc::new(Holder {
            id: NEXT_HOLDER.fetch_add(1, Ordering::Relaxed),
            held: Mutex::new(Vec::new()),
        })
    }

    pub(super) fn add(&self, pool: usize) {
        self.lock().push(pool);
    }

    pub(super) fn remove(&self, pool: usize) {
        let mut held = self.lock();
        if let Some(i) = held.iter().position(|&p| p == pool) {
            held.swap_remove(i);
        }
    }

    pub(super) fn holds_any(&self) -> bool {
        !self.lock().is_empty()
    }

    fn held(&self) -> Vec<usize> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<usize>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A session waiting for a connection of pool `wants`.
struct Waiter {
    holder: Arc<Holder>,
    wants: usize,
}

/// The sessions waiting for connections while holding others.
#[derive(Default)]
pub struct WaitGraph {
    waiters: Mutex<Vec<Waiter>>,
}

/// What the wait graph needs to know of a pool: its current size.
pub trait PoolSizes {
    fn size_of(&self, pool: usize) -> usize;
}

impl<F: Fn(usize) -> usize> PoolSizes for F {
    fn size_of(&self, pool: usize) -> usize {
        self(pool)
    }
}

impl WaitGraph {
    /// Records that `holder` waits for pool `wants`; returns `false` (and
    /// records nothing) when that wait can never end.
    pub fn start_waiting(
        &self,
        holder: &Arc<Holder>,
        wants: usize,
        sizes: &impl PoolSizes,
    ) -> bool {
        let mut waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        waiters.push(Waiter {
            holder: holder.clone(),
            wants,
        });
        if stuck(&waiters, sizes).contains(&holder.id) {
            waiters.pop();
            return false;
        }
        true
    }

    /// The wait of `holder` ended (served, timed out or cancelled).
    pub fn stop_waiting(&self, holder: &Arc<Holder>) {
        let mut waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = waiters.iter().position(|w| w.holder.id == holder.id) {
            waiters.swap_remove(i);
        }
    }
}

/// Ids of the waiters that can never be served (see the module doc).
fn stuck(waiters: &[Waiter], sizes: &impl PoolSizes) -> Vec<u64> {
    let holdings: Vec<Vec<usize>> = waiters.iter().map(|w| w.holder.held()).collect();
    // Free connections once every session that is not waiting has finished.
    let mut free: HashMap<usize, i64> = HashMap::new();
    for pool in waiters
        .iter()
        .map(|w| w.wants)
        .chain(holdings.iter().flatten().copied())
    {
        free.entry(pool)
            .or_insert_with(|| sizes.size_of(pool) as i64);
    }
    for pool in holdings.iter().flatten() {
        *free.entry(*pool).or_default() -= 1;
    }
    let mut done = vec![false; waiters.len()];
    loop {
        let mut progress = false;
        for (i, w) in waiters.iter().enumerate() {
            if !done[i] && free.get(&w.wants).copied().unwrap_or(0) > 0 {
                done[i] = true;
                progress = true;
                for pool in &holdings[i] {
                    *free.entry(*pool).or_default() += 1;
                }
            }
        }
        if !progress {
            break;
        }
    }
    waiters
        .iter()
        .zip(done)
        .filter(|(_, done)| !done)
        .map(|(w, _)| w.holder.id)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(pools: &[usize]) -> Arc<Holder> {
        let h = Holder::new();
        for &p in pools {
            h.add(p);
        }
        h
    }

    #[test]
    fn two_sessions_crossing_two_full_pools_deadlock() {
        let graph = WaitGraph::default();
        let size = |_: usize| 1;
        let a = holder(&[0]);
        let b = holder(&[1]);
        assert!(graph.start_waiting(&a, 1, &size));
        assert!(!graph.start_waiting(&b, 0, &size), "b closes the cycle");
        // b gave up; a can still be served once b rolls back.
        graph.stop_waiting(&a);
    }

    #[test]
    fn a_free_connection_breaks_the_cycle() {
        let graph = WaitGraph::default();
        let size = |p: usize| if p == 0 { 2 } else { 1 };
        let a = holder(&[0]);
        let b = holder(&[1]);
        assert!(graph.start_waiting(&a, 1, &size));
        assert!(
            graph.start_waiting(&b, 0, &size),
            "pool 0 has a second connection"
        );
    }

    #[test]
    fn sessions_not_waiting_are_assumed_to_finish() {
        let graph = WaitGraph::default();
        // Pool 1 (size 1) is held by someone not waiting: a's wait ends when it commits.
        let a = holder(&[0]);
        assert!(graph.start_waiting(&a, 1, &|_: usize| 1));
    }

    #[test]
    fn a_three_way_cycle_is_found_by_its_last_member() {
        let graph = WaitGraph::default();
        let size = |_: usize| 1;
        let a = holder(&[0]);
        let b = holder(&[1]);
        let c = holder(&[2]);
        assert!(graph.start_waiting(&a, 1, &size));
        assert!(graph.start_waiting(&b, 2, &size));
        assert!(!graph.start_waiting(&c, 0, &size));
        graph.stop_waiting(&b);
        assert!(
            graph.start_waiting(&c, 0, &size),
            "without b waiting, b's connection comes back"
        );
    }

    #[test]
    fn many_holders_of_one_pool_wait_for_another() {
        // 4 sessions each hold one of pool 0 (size 4) and want pool 1
        // (size 2), held by 2 sessions that want pool 0: a cycle.
        let graph = WaitGraph::default();
        let size = |p: usize| if p == 0 { 4 } else { 2 };
        let on0: Vec<_> = (0..4).map(|_| holder(&[0])).collect();
        let on1: Vec<_> = (0..2).map(|_| holder(&[1])).collect();
        for h in &on0 {
            assert!(graph.start_waiting(h, 1, &size));
        }
        assert!(graph.start_waiting(&on1[0], 0, &size));
        assert!(!graph.start_waiting(&on1[1], 0, &size));
    }
}
