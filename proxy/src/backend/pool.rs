//! A pool of connections to one data source: at most `max_size` in use,
//! bounded waiting, connections matched to the session's flavor and state,
//! and a guard that puts a connection back only when it is clean.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shardgate_rules::config::BackendUrl;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{BackendConn, Flavor};
use crate::error::BackendError;

/// Connections of one data source.
pub struct Pool {
    name: Arc<str>,
    url: BackendUrl,
    max_size: usize,
    acquire_timeout: Duration,
    /// One permit per connection in use.
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<BackendConn>>,
    open: AtomicUsize,
}

impl Pool {
    pub fn new(
        name: &str,
        url: BackendUrl,
        max_size: usize,
        acquire_timeout: Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            name: Arc::from(name),
            url,
            max_size,
            acquire_timeout,
            permits: Arc::new(Semaphore::new(max_size)),
            idle: Mutex::new(Vec::new()),
            open: AtomicUsize::new(0),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn url(&self) -> &BackendUrl {
        &self.url
    }

    /// Takes a connection of the given flavor, preferring one that already
    /// carries the session state `state` (0: none).
    pub async fn acquire(
        self: &Arc<Self>,
        flavor: Flavor,
        state: u64,
    ) -> Result<PooledConn, BackendError> {
        let started = Instant::now();
        let permit =
            match tokio::time::timeout(self.acquire_timeout, self.permits.clone().acquire_owned())
                .await
            {
                Ok(Ok(permit)) => permit,
                _ => {
                    return Err(BackendError::PoolExhausted {
                        ds: self.name.to_string(),
                        in_use: self.max_size - self.permits.available_permits(),
                        max: self.max_size,
                        waited_ms: started.elapsed().as_millis() as u64,
                    })
                }
            };
        let conn = match self.take_idle(flavor, state) {
            Some(conn) => conn,
            None => {
                let conn = BackendConn::connect(self.name.clone(), &self.url, flavor).await?;
                self.open.fetch_add(1, Ordering::Relaxed);
                conn
            }
        };
        Ok(PooledConn {
            conn: Some(conn),
            pool: self.clone(),
            _permit: permit,
        })
    }

    /// A connection ready for the session state `state` at once, if the
    /// pool has room now: an idle one already carrying `state`, or a new
    /// one when `state` is none (0) and the pool may open one. Never waits
    /// for a permit, resets or replays state: for work that has another way
    /// to be done when the pool is busy, which here means half of it or
    /// more in use (the other half stays for sessions that must wait for a
    /// connection). A failed connect is `None` too.
    pub async fn try_acquire_ready(
        self: &Arc<Self>,
        flavor: Flavor,
        state: u64,
    ) -> Option<PooledConn> {
        if self.permits.available_permits() <= self.max_size / 2 {
            return None;
        }
        let permit = self.permits.clone().try_acquire_owned().ok()?;
        let idle = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            idle.iter()
                .rposition(|c| c.flavor == flavor && c.applied_state == state)
                .map(|i| idle.swap_remove(i))
        };
        let conn = match idle {
            Some(conn) => conn,
            None if state == 0 && self.open.load(Ordering::Relaxed) < self.max_size => {
                match BackendConn::connect(self.name.clone(), &self.url, flavor).await {
                    Ok(conn) => {
                        self.open.fetch_add(1, Ordering::Relaxed);
                        conn
                    }
                    Err(e) => {
                        tracing::debug!(ds = %self.name, "no extra connection: {e}");
                        return None;
                    }
                }
            }
            None => return None,
        };
        Some(PooledConn {
            conn: Some(conn),
            pool: self.clone(),
            _permit: permit,
        })
    }

    /// An idle connection of this flavor, best one carrying `state`. When
    /// only other flavors idle and the pool is full, one of them is closed
    /// to make room.
    fn take_idle(&self, flavor: Flavor, state: u64) -> Option<BackendConn> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let mut best: Option<usize> = None;
        for (i, conn) in idle.iter().enumerate().rev() {
            if conn.flavor == flavor {
                if conn.applied_state == state {
                    best = Some(i);
                    break;
                }
                best.get_or_insert(i);
            }
        }
        if let Some(i) = best {
            return Some(idle.swap_remove(i));
        }
        if self.open.load(Ordering::Relaxed) >= self.max_size && !idle.is_empty() {
            idle.remove(0);
            self.open.fetch_sub(1, Ordering::Relaxed);
        }
        None
    }

    fn give_back(&self, conn: BackendConn) {
        if conn.reusable() {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < self.max_size {
                idle.push(conn);
                return;
            }
        }
        self.open.fetch_sub(1, Ordering::Relaxed);
    }

    /// Connections open now (idle and in use).
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Connections in use now.
    pub fn in_use(&self) -> usize {
        self.max_size - self.permits.available_permits()
    }
}

/// A connection on loan from a pool; dropping it returns the connection if
/// it is clean (reply read to its end, no open transaction), else closes it.
pub struct PooledConn {
    conn: Option<BackendConn>,
    pool: Arc<Pool>,
    _permit: OwnedSemaphorePermit,
}

impl PooledConn {
    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }
}

impl std::ops::Deref for PooledConn {
    type Target = BackendConn;
    fn deref(&self) -> &BackendConn {
        // The option is only emptied in drop.
        self.conn
            .as_ref()
            .unwrap_or_else(|| unreachable!("connection taken before drop"))
    }
}

impl std::ops::DerefMut for PooledConn {
    fn deref_mut(&mut self) -> &mut BackendConn {
        self.conn
            .as_mut()
            .unwrap_or_else(|| unreachable!("connection taken before drop"))
    }
}

impl Drop for PooledConn {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.give_back(conn);
        }
    }
}
