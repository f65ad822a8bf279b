//! A pool of connections to one primary or replica: at most `size` in use,
//! bounded waiting, deadlock detection between waiting sessions,
//! connections matched to the session's flavor and state, validation of
//! long-idle connections, resizing that never closes a connection in use,
//! a guard that puts a connection back only when it is clean, and the
//! server marked down when it stops answering (statements for it fail at
//! once, those waiting on it are broken off) until it answers again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use shardgate_rules::config::{BackendUrl, PoolConfig};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{info, warn};

use super::breaker::Breakers;
use super::waits::{Holder, WaitGraph};
use super::{ConnLimits, Connection};
use crate::error::{BackendError, ConnError};
use crate::metrics::Metrics;

/// What a pool's server is to its data source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Primary,
    /// The n-th replica (0-based) in the data source's list.
    Replica(usize),
}

impl Role {
    pub fn label(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica(_) => "replica",
        }
    }
}

/// Why and since when a pool's server is marked down.
#[derive(Debug, Clone)]
pub struct Down {
    pub since: Instant,
    pub why: String,
    /// It stopped answering (rather than refusing): checkouts fail at once.
    pub silent: bool,
}

/// How often a server that stopped answering is probed.
const DOWN_PROBE_INTERVAL: Duration = Duration::from_millis(200);

/// The outcome of the last health check.
#[derive(Debug, Clone)]
pub struct HealthCheck {
    pub at: std::time::SystemTime,
    pub ok: bool,
    pub latency: Duration,
    pub error: Option<String>,
}

/// What the replica monitor last learnt of a replica.
#[derive(Debug, Clone)]
pub struct Replication<P> {
    /// In the read rotation.
    pub usable: bool,
    /// Why not, when not.
    pub reason: Option<String>,
    /// `Seconds_Behind_Master` (None: unknown, e.g. SQL thread stopped).
    pub lag: Option<Duration>,
    /// What it has applied.
    pub applied: P,
    pub checked_at: std::time::SystemTime,
}

/// Moving averages of what statements on this server took and how often
/// they failed, for the replica balancer.
#[derive(Debug, Clone, Copy, Default)]
pub struct Observed {
    pub latency_us: f64,
    pub error_rate: f64,
}

/// Weight of the newest sample in the moving averages.
const EWMA_ALPHA: f64 = 0.1;

/// A pool's figures at one instant (for the admin API and metrics).
#[derive(Debug, Clone)]
pub struct PoolStats {
    /// Connections in use at most now.
    pub max: usize,
    /// Connections open (idle and in use).
    pub open: usize,
    pub active: usize,
    pub idle: usize,
    pub waiting: usize,
    /// Highest demand (in use + waiting) since the last resize decision.
    pub peak: usize,
    pub acquired: u64,
    pub timeouts: u64,
    pub errors: u64,
    pub acquire_p50: Duration,
    pub acquire_p99: Duration,
    pub last_health_check: Option<HealthCheck>,
}

/// Everything the pools of a proxy share.
pub struct PoolContext {
    pub metrics: Arc<Metrics>,
    waits: WaitGraph,
    /// Every pool by wait-graph id, so a pool can size the others that a
    /// waiting session holds.
    pools: Mutex<HashMap<usize, Weak<dyn PoolSize>>>,
}

/// A pool as the others see it when they size themselves.
trait PoolSize: Send + Sync {
    fn size(&self) -> usize;
}

impl<C: Connection> PoolSize for Pool<C> {
    fn size(&self) -> usize {
        Pool::size(self)
    }
}

impl PoolContext {
    pub fn new(metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(PoolContext {
            metrics,
            waits: WaitGraph::default(),
            pools: Mutex::default(),
        })
    }

    fn register<C: Connection>(&self, pool: &Arc<Pool<C>>) {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        pools.retain(|_, p| p.strong_count() > 0);
        let id = pool.id;
        let pool: Arc<dyn PoolSize> = pool.clone();
        pools.insert(id, Arc::downgrade(&pool));
    }

    fn size_of(&self, id: usize) -> usize {
        let pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        pools
            .get(&id)
            .and_then(Weak::upgrade)
            .map_or(0, |p| p.size())
    }
}

/// Connections of one server.
pub struct Pool<C: Connection> {
    /// Process-unique, for the wait graph.
    id: usize,
    /// `ds0` for a primary, `ds0.replica1` for its first replica.
    name: Arc<str>,
    /// The data source (node) this server belongs to.
    data_source: Arc<str>,
    role: Role,
    url: BackendUrl,
    config: PoolConfig,
    acquire_timeout: Duration,
    context: Arc<PoolContext>,
    /// One permit per connection that may be in use.
    permits: Arc<Semaphore>,
    /// The current size (permits issued, less those owed).
    size: AtomicUsize,
    /// Permits to retire as connections in use come back (after a shrink).
    owed: AtomicUsize,
    /// Boxed: a connection moves in and out of sessions' hands on every
    /// statement, and a pointer moves for less than the connection.
    idle: Mutex<Vec<Box<C>>>,
    open: AtomicUsize,
    active: AtomicUsize,
    waiting: AtomicUsize,
    peak: AtomicUsize,
    acquired: AtomicU64,
    timeouts: AtomicU64,
    errors: AtomicU64,
    /// Recent acquire latencies in µs, for p50/p99.
    latencies: Mutex<LatencyWindow>,
    /// The flavor sessions used last, for connections opened in advance.
    last_flavor: Mutex<Option<C::Flavor>>,
    health: Mutex<Option<HealthCheck>>,
    acquire_seconds: prometheus::Histogram,
    /// Set by the replica monitor (replicas only).
    replication: Mutex<Option<Arc<Replication<C::Position>>>>,
    observed: Mutex<Observed>,
    /// The bounds its connections work within.
    limits: ConnLimits,
    /// What breaks its open connections when it is marked down.
    breakers: Breakers,
    /// Marked down; `down` says why.
    is_down: AtomicBool,
    /// Marked down for silence: read on every checkout, which fails at once.
    silent: AtomicBool,
    down: Mutex<Option<Down>>,
}

static NEXT_POOL: AtomicUsize = AtomicUsize::new(0);

impl<C: Connection> Pool<C> {
    pub fn new(
        name: &str,
        data_source: &str,
        role: Role,
        url: BackendUrl,
        config: PoolConfig,
        context: Arc<PoolContext>,
    ) -> Arc<Self> {
        let size = config.max_size;
        let acquire_seconds = context.metrics.pool_acquire_histogram(name);
        let pool = Arc::new(Self {
            id: NEXT_POOL.fetch_add(1, Ordering::Relaxed),
            name: Arc::from(name),
            data_source: Arc::from(data_source),
            role,
            url,
            acquire_timeout: Duration::from_millis(config.acquire_timeout_ms),
            limits: ConnLimits::of(&config),
            breakers: Breakers::default(),
            is_down: AtomicBool::new(false),
            silent: AtomicBool::new(false),
            down: Mutex::new(None),
            config,
            context,
            permits: Arc::new(Semaphore::new(size)),
            size: AtomicUsize::new(size),
            owed: AtomicUsize::new(0),
            idle: Mutex::new(Vec::new()),
            open: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            acquired: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            latencies: Mutex::new(LatencyWindow::default()),
            last_flavor: Mutex::new(None),
            health: Mutex::new(None),
            acquire_seconds,
            replication: Mutex::new(None),
            observed: Mutex::new(Observed::default()),
        });
        pool.context.register(&pool);
        pool
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn data_source(&self) -> &str {
        &self.data_source
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn url(&self) -> &BackendUrl {
        &self.url
    }

    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// The bounds its connections work within.
    pub fn limits(&self) -> ConnLimits {
        self.limits
    }

    /// Opens a connection within the pool's limits, which `mark_down` can
    /// break. Not counted in `open` (the caller counts what it keeps).
    async fn open_connection(&self, flavor: C::Flavor) -> Result<C, ConnError> {
        let conn = C::connect(self.name.clone(), &self.url, flavor, self.limits).await?;
        if let Some(breaker) = conn.breaker() {
            self.breakers.add(breaker);
        }
        Ok(conn)
    }

    /// Why its server is marked down, if it is.
    pub fn down(&self) -> Option<Down> {
        if !self.is_down.load(Ordering::Relaxed) {
            return None;
        }
        self.down.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Marks the server down for `why`, breaking every connection open to
    /// it (a statement waiting on it ends with an error) and closing the
    /// idle ones. A `silent` server (it let a connect or a check time out)
    /// fails checkouts at once, so that statements do not queue behind it,
    /// and is probed in the background until it answers; one that refuses
    /// connections fails them quickly by itself, so checkouts keep trying
    /// and the first that connects brings it back.
    pub fn mark_down(self: &Arc<Self>, why: String, silent: bool) {
        {
            let mut down = self.down.lock().unwrap_or_else(|e| e.into_inner());
            match down.as_mut() {
                Some(was) if was.silent || !silent => return,
                Some(was) => {
                    was.silent = true;
                    was.why = why;
                }
                None => {
                    warn!(pool = %self.name, "marked down: {why}; statements for it fail until it answers again");
                    *down = Some(Down {
                        since: Instant::now(),
                        why,
                        silent,
                    });
                    self.is_down.store(true, Ordering::Relaxed);
                    self.context.metrics.pool_event(&self.name, "down");
                }
            }
            self.silent.store(silent, Ordering::Relaxed);
        }
        let idle = std::mem::take(&mut *self.idle.lock().unwrap_or_else(|e| e.into_inner()));
        self.open.fetch_sub(idle.len(), Ordering::Relaxed);
        drop(idle);
        self.breakers.trip_all();
        if silent {
            self.probe_until_up();
        }
    }

    /// Probes a silent server every [`DOWN_PROBE_INTERVAL`] until it
    /// answers (or the pool is gone).
    fn probe_until_up(self: &Arc<Self>) {
        let pool = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(DOWN_PROBE_INTERVAL).await;
                let Some(pool) = pool.upgrade() else { return };
                if !pool.silent.load(Ordering::Relaxed) {
                    return;
                }
                let timeout = Duration::from_millis(pool.config.validation_timeout_ms);
                let probe = tokio::time::timeout(timeout, pool.probe(pool.check_flavor()));
                if let Ok(Ok(())) = probe.await {
                    pool.mark_up();
                    return;
                }
            }
        });
    }

    /// The flavor a check's connection takes: the one sessions used last.
    fn check_flavor(&self) -> C::Flavor {
        (*self.last_flavor.lock().unwrap_or_else(|e| e.into_inner()))
            .unwrap_or_else(C::internal_flavor)
    }

    /// Whether the server answers, on a connection of the check's own,
    /// whatever the pool's state.
    async fn probe(&self, flavor: C::Flavor) -> Result<(), BackendError> {
        let mut conn = self.open_connection(flavor).await?;
        self.validate(&mut conn).await
    }

    /// The server answered: it takes statements again.
    fn mark_up(&self) {
        let mut down = self.down.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(was) = down.take() {
            self.is_down.store(false, Ordering::Relaxed);
            self.silent.store(false, Ordering::Relaxed);
            info!(pool = %self.name, after = ?was.since.elapsed(), "answers again; no longer marked down");
            self.context.metrics.pool_event(&self.name, "up");
        }
    }

    fn down_error(&self) -> BackendError {
        let (since, why) = match self.down() {
            Some(down) => (down.since.elapsed(), down.why),
            None => (Duration::ZERO, String::new()),
        };
        BackendError::Down {
            ds: self.name.to_string(),
            since,
            why,
        }
    }

    /// The current size: connections in use at most.
    pub fn size(&self) -> usize {
        self.size.load(Ordering::Relaxed)
    }

    /// Takes a connection of the given flavor for `holder`, preferring one
    /// that already carries the session state `state` (0: none).
    pub async fn acquire(
        self: &Arc<Self>,
        flavor: C::Flavor,
        state: u64,
        holder: &Arc<Holder>,
    ) -> Result<PooledConn<C>, BackendError> {
        remember(&self.last_flavor, flavor);
        self.checkout(flavor, state, holder).await
    }

    async fn checkout(
        self: &Arc<Self>,
        flavor: C::Flavor,
        state: u64,
        holder: &Arc<Holder>,
    ) -> Result<PooledConn<C>, BackendError> {
        if self.silent.load(Ordering::Relaxed) {
            self.errors.fetch_add(1, Ordering::Relaxed);
            return Err(self.down_error());
        }
        let started = Instant::now();
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(permit) => {
                self.note_demand(1);
                permit
            }
            Err(_) => self.wait_for_permit(holder, started).await?,
        };
        self.active.fetch_add(1, Ordering::Relaxed);
        let mut guard = PooledConn {
            conn: None,
            pool: self.clone(),
            permit: Some(permit),
            holder: holder.clone(),
        };
        holder.add(self.id);
        let conn = match self.take_valid_idle(flavor, state).await {
            Some(conn) => conn,
            None => match self.open_connection(flavor).await {
                Ok(conn) => {
                    self.open.fetch_add(1, Ordering::Relaxed);
                    if self.is_down.load(Ordering::Relaxed) {
                        self.mark_up();
                    }
                    Box::new(conn)
                }
                Err(e) => {
                    self.errors.fetch_add(1, Ordering::Relaxed);
                    self.context.metrics.pool_event(&self.name, "connect_error");
                    if let ConnError::Connect { source, .. } = &e {
                        // Refused or timed out: not merely busy.
                        let silent = source.kind() == std::io::ErrorKind::TimedOut;
                        self.mark_down(e.to_string(), silent);
                        return Err(self.down_error());
                    }
                    return Err(e.into());
                }
            },
        };
        guard.conn = Some(conn);
        let waited = started.elapsed();
        self.acquired.fetch_add(1, Ordering::Relaxed);
        self.latencies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(waited);
        self.acquire_seconds.observe(waited.as_secs_f64());
        Ok(guard)
    }

    /// The slow path: the pool is exhausted; wait (bounded), unless the
    /// wait would close a cycle of sessions waiting on each other.
    async fn wait_for_permit(
        self: &Arc<Self>,
        holder: &Arc<Holder>,
        started: Instant,
    ) -> Result<OwnedSemaphorePermit, BackendError> {
        let waiting = WaitingGuard::new(self);
        self.note_demand(0);
        let tracked = holder.holds_any();
        if tracked {
            let sizes = |pool: usize| self.size_of_pool(pool);
            if !self.context.waits.start_waiting(holder, self.id, &sizes) {
                drop(waiting);
                self.errors.fetch_add(1, Ordering::Relaxed);
                self.context.metrics.pool_event(&self.name, "deadlock");
                return Err(BackendError::Deadlock {
                    ds: self.name.to_string(),
                    in_use: self.active.load(Ordering::Relaxed),
                    max: self.size(),
                });
            }
        }
        let result =
            tokio::time::timeout(self.acquire_timeout, self.permits.clone().acquire_owned()).await;
        if tracked {
            self.context.waits.stop_waiting(holder);
        }
        drop(waiting);
        match result {
            Ok(Ok(permit)) => Ok(permit),
            _ => {
                self.timeouts.fetch_add(1, Ordering::Relaxed);
                self.errors.fetch_add(1, Ordering::Relaxed);
                self.context.metrics.pool_event(&self.name, "timeout");
                Err(BackendError::PoolExhausted {
                    ds: self.name.to_string(),
                    in_use: self.active.load(Ordering::Relaxed),
                    max: self.size(),
                    waited: started.elapsed(),
                })
            }
        }
    }

    /// The size of the pool with wait-graph id `pool`: this one, or one of
    /// the pools registered with the same context.
    fn size_of_pool(&self, pool: usize) -> usize {
        if pool == self.id {
            return self.size();
        }
        self.context.size_of(pool)
    }

    /// Tracks peak demand: connections in use, sessions waiting, and
    /// `arriving` not yet counted in either. Demand rather than use, so a
    /// pool that is too small can grow.
    fn note_demand(&self, arriving: usize) {
        let demand =
            self.active.load(Ordering::Relaxed) + self.waiting.load(Ordering::Relaxed) + arriving;
        self.peak.fetch_max(demand, Ordering::Relaxed);
    }

    /// An idle connection of this flavor, best one carrying `state`,
    /// validated first when it has been idle long; broken ones are closed.
    async fn take_valid_idle(&self, flavor: C::Flavor, state: u64) -> Option<Box<C>> {
        let validate_after = Duration::from_millis(self.config.validate_idle_ms);
        loop {
            let mut conn = self.take_idle(flavor, state)?;
            if conn.last_used().elapsed() < validate_after {
                return Some(conn);
            }
            match self.validate(&mut conn).await {
                Ok(()) => return Some(conn),
                Err(e) => {
                    warn!(pool = %self.name, "idle connection failed validation; replacing it: {e}");
                    self.context
                        .metrics
                        .pool_event(&self.name, "validation_failed");
                    self.open.fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// `SELECT 1` within the validation timeout.
    pub async fn validate(&self, conn: &mut C) -> Result<(), BackendError> {
        let timeout = Duration::from_millis(self.config.validation_timeout_ms);
        match tokio::time::timeout(timeout, conn.ping()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => {
                conn.mark_broken();
                Err(e.into())
            }
            Err(_) => {
                conn.mark_broken();
                Err(BackendError::lost(
                    &self.name,
                    format!("validation (SELECT 1) took longer than {timeout:?}"),
                ))
            }
        }
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
        flavor: C::Flavor,
        state: u64,
        holder: &Arc<Holder>,
    ) -> Option<PooledConn<C>> {
        let size = self.size();
        if self.permits.available_permits() <= size / 2 || self.silent.load(Ordering::Relaxed) {
            return None;
        }
        let permit = self.permits.clone().try_acquire_owned().ok()?;
        let idle = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            idle.iter()
                .rposition(|c| c.flavor() == flavor && c.applied_state() == state)
                .map(|i| idle.swap_remove(i))
        };
        let conn = match idle {
            Some(conn) => conn,
            None if state == 0 && self.open.load(Ordering::Relaxed) < size => {
                match self.open_connection(flavor).await {
                    Ok(conn) => {
                        self.open.fetch_add(1, Ordering::Relaxed);
                        Box::new(conn)
                    }
                    Err(e) => {
                        tracing::debug!(ds = %self.name, "no extra connection: {e}");
                        return None;
                    }
                }
            }
            None => return None,
        };
        self.active.fetch_add(1, Ordering::Relaxed);
        holder.add(self.id);
        Some(PooledConn {
            conn: Some(conn),
            pool: self.clone(),
            permit: Some(permit),
            holder: holder.clone(),
        })
    }

    fn take_idle(&self, flavor: C::Flavor, state: u64) -> Option<Box<C>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let mut best: Option<usize> = None;
        for (i, conn) in idle.iter().enumerate().rev() {
            if conn.flavor() == flavor {
                if conn.applied_state() == state {
                    best = Some(i);
                    break;
                }
                best.get_or_insert(i);
            }
        }
        if let Some(i) = best {
            return Some(idle.swap_remove(i));
        }
        // Only other flavors idle and the pool is at its size: close one to
        // make room.
        if self.open.load(Ordering::Relaxed) >= self.size() && !idle.is_empty() {
            idle.remove(0);
            self.open.fetch_sub(1, Ordering::Relaxed);
        }
        None
    }

    fn give_back(&self, conn: Box<C>, shrinking: bool) {
        if conn.reusable() && !shrinking {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < self.size() {
                idle.push(conn);
                return;
            }
        }
        self.open.fetch_sub(1, Ordering::Relaxed);
    }

    /// Adds a connection opened ahead of need at the bottom of the idle
    /// stack: sessions take the top (the connection returned last), and a
    /// session's next statement must find the connection its previous one
    /// ran on, whose `ROW_COUNT()`, `FOUND_ROWS()` and warnings are its own.
    fn add_spare(&self, conn: C) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.size() {
            idle.insert(0, Box::new(conn));
        } else {
            self.open.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Whether a permit coming back should be retired instead (the pool
    /// was shrunk while it was in use).
    fn retire_owed(&self) -> bool {
        self.owed
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |owed| {
                owed.checked_sub(1)
            })
            .is_ok()
    }

    /// Changes the size. Growing adds permits at once; shrinking retires
    /// free permits at once and the others as their connections come back,
    /// so no connection in use is closed.
    pub fn resize(&self, new_size: usize, cause: &str) -> usize {
        let new_size = new_size.max(1);
        let old = self.size.swap(new_size, Ordering::AcqRel);
        if new_size > old {
            let mut grow = new_size - old;
            // Cancel retirements still owed before adding permits.
            while grow > 0 && self.retire_owed() {
                grow -= 1;
            }
            self.permits.add_permits(grow);
        } else if new_size < old {
            let shrink = old - new_size;
            let retired = self.permits.forget_permits(shrink);
            self.owed.fetch_add(shrink - retired, Ordering::AcqRel);
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            while idle.len() > new_size {
                idle.remove(0);
                self.open.fetch_sub(1, Ordering::Relaxed);
            }
        }
        if new_size != old {
            info!(pool = %self.name, from = old, to = new_size, cause, "pool resized");
            self.context.metrics.pool_resized(&self.name, cause);
        }
        old
    }

    /// The adaptive size for the peak demand seen since the last call
    /// (which starts a new window): ceil(peak × 1.2) within the bounds.
    pub fn take_peak_and_optimal_size(&self) -> (usize, usize) {
        let demand = self.active.load(Ordering::Relaxed) + self.waiting.load(Ordering::Relaxed);
        let peak = self.peak.swap(demand, Ordering::AcqRel);
        let optimal = (peak * 12).div_ceil(10);
        (
            peak,
            optimal.clamp(self.config.min_size, self.config.max_bound),
        )
    }

    /// Opens connections until `min_idle` are open, in the flavor sessions
    /// used last; nothing before the pool's first use.
    pub async fn fill_min_idle(&self) {
        let Some(flavor) = *self.last_flavor.lock().unwrap_or_else(|e| e.into_inner()) else {
            return;
        };
        if self.is_down.load(Ordering::Relaxed) {
            return;
        }
        let want = self.config.min_idle().min(self.size());
        while self.idle_count() < want && self.open.load(Ordering::Relaxed) < self.size() {
            match self.open_connection(flavor).await {
                Ok(conn) => {
                    self.open.fetch_add(1, Ordering::Relaxed);
                    self.add_spare(conn);
                }
                Err(e) => {
                    warn!(pool = %self.name, "cannot open an idle connection: {e}");
                    return;
                }
            }
        }
    }

    fn idle_count(&self) -> usize {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Takes a connection and validates it within the validation timeout.
    /// A server that does not answer (refused, cut off, silent) is marked
    /// down; one that answers again is marked up.
    pub async fn health_check(self: &Arc<Self>) -> HealthCheck {
        let started = Instant::now();
        let flavor = self.check_flavor();
        let timeout = Duration::from_millis(self.config.validation_timeout_ms);
        let holder = Holder::new();
        let down = self.is_down.load(Ordering::Relaxed);
        let result = tokio::time::timeout(timeout, async {
            if !down && self.permits.available_permits() > 0 {
                // Not `acquire`: a health check is not a sign of use that
                // should open min_idle connections.
                let mut conn = self.checkout(flavor, 0, &holder).await?;
                self.validate(&mut conn).await
            } else {
                // Every connection is in use (a busy pool is not a sick
                // server), or the server is down (checkouts fail).
                self.probe(flavor).await
            }
        })
        .await;
        let (error, unreachable) = match result {
            Ok(Ok(())) => (None, false),
            Ok(Err(e)) => (Some(e.to_string()), e.is_unreachable()),
            Err(_) => (
                Some(format!("no validated connection within {timeout:?}")),
                true,
            ),
        };
        match &error {
            Some(why) => {
                self.context.metrics.pool_event(&self.name, "health_failed");
                if unreachable {
                    // A refusal comes at once; silence takes the whole wait.
                    let silent = started.elapsed() >= timeout;
                    self.mark_down(format!("health check failed: {why}"), silent);
                }
            }
            None => self.mark_up(),
        }
        let check = HealthCheck {
            at: std::time::SystemTime::now(),
            ok: error.is_none(),
            latency: started.elapsed(),
            error,
        };
        *self.health.lock().unwrap_or_else(|e| e.into_inner()) = Some(check.clone());
        check
    }

    /// The figures of this pool now.
    pub fn stats(&self) -> PoolStats {
        let (acquire_p50, acquire_p99) = self
            .latencies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .percentiles();
        PoolStats {
            max: self.size(),
            open: self.open.load(Ordering::Relaxed),
            active: self.active.load(Ordering::Relaxed),
            idle: self.idle_count(),
            waiting: self.waiting.load(Ordering::Relaxed),
            peak: self.peak.load(Ordering::Relaxed),
            acquired: self.acquired.load(Ordering::Relaxed),
            timeouts: self.timeouts.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            acquire_p50,
            acquire_p99,
            last_health_check: self
                .health
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }

    /// The replica monitor's last findings (None: a primary, or not
    /// measured yet). Shared, not copied: every read that may use a
    /// replica looks at them.
    pub fn replication(&self) -> Option<Arc<Replication<C::Position>>> {
        self.replication
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_replication(&self, replication: Replication<C::Position>) {
        *self.replication.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(replication));
    }

    /// Records how a statement on this server went. A failure's latency
    /// is not the server's speed (a refused connection takes no time), so
    /// only the error rate learns from it.
    pub fn observe(&self, latency: Duration, ok: bool) {
        let mut o = self.observed.lock().unwrap_or_else(|e| e.into_inner());
        let us = latency.as_secs_f64() * 1e6;
        if ok {
            o.latency_us = if o.latency_us == 0.0 {
                us
            } else {
                o.latency_us + EWMA_ALPHA * (us - o.latency_us)
            };
        }
        let failed = if ok { 0.0 } else { 1.0 };
        o.error_rate += EWMA_ALPHA * (failed - o.error_rate);
    }

    pub fn observed(&self) -> Observed {
        *self.observed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Connections open now (idle and in use).
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Connections in use now.
    pub fn in_use(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }
}

fn remember<F: Copy + Eq>(slot: &Mutex<Option<F>>, flavor: F) {
    let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
    if *slot != Some(flavor) {
        *slot = Some(flavor);
    }
}

/// Counts a waiting session for as long as it waits.
struct WaitingGuard<'a, C: Connection>(&'a Pool<C>);

impl<'a, C: Connection> WaitingGuard<'a, C> {
    fn new(pool: &'a Pool<C>) -> Self {
        pool.waiting.fetch_add(1, Ordering::Relaxed);
        WaitingGuard(pool)
    }
}

impl<C: Connection> Drop for WaitingGuard<'_, C> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The last 1024 acquire latencies.
#[derive(Default)]
struct LatencyWindow {
    micros: Vec<u32>,
    next: usize,
}

const LATENCY_WINDOW: usize = 1024;

impl LatencyWindow {
    fn record(&mut self, d: Duration) {
        let us = u32::try_from(d.as_micros()).unwrap_or(u32::MAX);
        if self.micros.len() < LATENCY_WINDOW {
            self.micros.push(us);
        } else {
            self.micros[self.next] = us;
        }
        self.next = (self.next + 1) % LATENCY_WINDOW;
    }

    fn percentiles(&self) -> (Duration, Duration) {
        if self.micros.is_empty() {
            return (Duration::ZERO, Duration::ZERO);
        }
        let mut sorted = self.micros.clone();
        sorted.sort_unstable();
        let at = |q: f64| {
            let i = ((sorted.len() - 1) as f64 * q).round() as usize;
            Duration::from_micros(u64::from(sorted[i]))
        };
        (at(0.5), at(0.99))
    }
}

/// A connection on loan from a pool; dropping it returns the connection if
/// it is clean (reply read to its end, no open transaction), else closes it.
pub struct PooledConn<C: Connection> {
    conn: Option<Box<C>>,
    pool: Arc<Pool<C>>,
    permit: Option<OwnedSemaphorePermit>,
    holder: Arc<Holder>,
}

impl<C: Connection> PooledConn<C> {
    pub fn pool(&self) -> &Arc<Pool<C>> {
        &self.pool
    }
}

impl<C: Connection> std::ops::Deref for PooledConn<C> {
    type Target = C;
    fn deref(&self) -> &C {
        // The option is only empty before acquire returns and in drop.
        self.conn
            .as_ref()
            .unwrap_or_else(|| unreachable!("connection taken before drop"))
    }
}

impl<C: Connection> std::ops::DerefMut for PooledConn<C> {
    fn deref_mut(&mut self) -> &mut C {
        self.conn
            .as_mut()
            .unwrap_or_else(|| unreachable!("connection taken before drop"))
    }
}

impl<C: Connection> Drop for PooledConn<C> {
    fn drop(&mut self) {
        let shrinking = self.pool.retire_owed();
        if let Some(conn) = self.conn.take() {
            self.pool.give_back(conn, shrinking);
        }
        self.holder.remove(self.pool.id);
        self.pool.active.fetch_sub(1, Ordering::Relaxed);
        if let Some(permit) = self.permit.take() {
            if shrinking {
                permit.forget();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The pool's logic over an in-memory connection: what it opens, hands
    //! out, keeps, closes and refuses.

    use super::*;
    use crate::backend::memory::{opened, Memory};

    fn pool(name: &str, context: &Arc<PoolContext>, config: PoolConfig) -> Arc<Pool<Memory>> {
        let url = BackendUrl::parse("mysql://root@127.0.0.1:1/db").expect("url");
        Pool::new(name, name, Role::Primary, url, config, context.clone())
    }

    fn sized(max_size: usize) -> PoolConfig {
        PoolConfig {
            max_size,
            acquire_timeout_ms: 100,
            ..PoolConfig::default()
        }
    }

    fn context() -> Arc<PoolContext> {
        PoolContext::new(Arc::new(Metrics::new()))
    }

    #[tokio::test]
    async fn a_clean_connection_comes_back_and_a_broken_or_busy_one_is_closed() {
        let pool = pool("reuse", &context(), sized(4));
        let holder = Holder::new();
        drop(pool.acquire(1, 0, &holder).await.expect("a connection"));
        drop(pool.acquire(1, 0, &holder).await.expect("the same one"));
        assert_eq!(opened("reuse"), 1, "the idle connection is reused");
        assert_eq!((pool.stats().open, pool.stats().idle), (1, 1));

        let mut conn = pool.acquire(1, 0, &holder).await.expect("a connection");
        conn.mark_broken();
        drop(conn);
        assert_eq!((pool.stats().open, pool.stats().idle), (0, 0), "closed");

        let mut conn = pool.acquire(1, 0, &holder).await.expect("a new one");
        conn.in_transaction = true;
        drop(conn);
        assert_eq!(
            (pool.stats().open, pool.stats().idle),
            (0, 0),
            "a connection with an open transaction is not shared"
        );
        assert_eq!(opened("reuse"), 2);
        assert_eq!(pool.stats().active, 0);
    }

    #[tokio::test]
    async fn a_session_gets_its_flavor_and_preferably_its_state() {
        let pool = pool("flavors", &context(), sized(4));
        let holder = Holder::new();
        let mut a = pool.acquire(1, 0, &holder).await.expect("a");
        let mut b = pool.acquire(1, 0, &holder).await.expect("b");
        a.state = 7;
        b.state = 9;
        drop(b);
        drop(a);
        let conn = pool.acquire(1, 9, &holder).await.expect("one of flavor 1");
        assert_eq!(conn.state, 9, "the one carrying the session's state");
        let other = pool.acquire(2, 9, &holder).await.expect("flavor 2");
        assert_eq!(other.flavor, 2);
        assert_eq!(
            opened("flavors"),
            3,
            "no connection of another flavor is handed out"
        );
    }

    #[tokio::test]
    async fn an_exhausted_pool_refuses_after_the_bounded_wait() {
        let pool = pool("exhausted", &context(), sized(1));
        let _held = pool
            .acquire(1, 0, &Holder::new())
            .await
            .expect("the only one");
        let started = Instant::now();
        let refused = pool.acquire(1, 0, &Holder::new()).await;
        assert!(started.elapsed() >= Duration::from_millis(100));
        match refused {
            Err(BackendError::PoolExhausted { in_use, max, .. }) => {
                assert_eq!((in_use, max), (1, 1))
            }
            Err(other) => panic!("not exhaustion: {other}"),
            Ok(_) => panic!("a second connection from a pool of one"),
        }
        assert_eq!(pool.stats().timeouts, 1);
    }

    #[tokio::test]
    async fn sessions_waiting_on_each_other_get_a_deadlock_at_once() {
        let context = context();
        let (a, b) = (
            pool("deadlock-a", &context, sized(1)),
            pool("deadlock-b", &context, sized(1)),
        );
        let (first, second) = (Holder::new(), Holder::new());
        let on_a = a.acquire(1, 0, &first).await.expect("first holds a");
        let on_b = b.acquire(1, 0, &second).await.expect("second holds b");
        // The first session waits for b (held by the second) ...
        let waiting = {
            let (b, first) = (b.clone(), first.clone());
            tokio::spawn(async move { b.acquire(1, 0, &first).await.map(|_| ()) })
        };
        while b.stats().waiting == 0 {
            tokio::task::yield_now().await;
        }
        // ... and the second asks for a: neither could ever go on.
        let started = Instant::now();
        match a.acquire(1, 0, &second).await {
            Err(BackendError::Deadlock { ds, .. }) => assert_eq!(ds, "deadlock-a"),
            Err(other) => panic!("not a deadlock: {other}"),
            Ok(_) => panic!("a connection that is in use"),
        }
        assert!(started.elapsed() < Duration::from_millis(100), "no wait");
        // The victim rolls back and gives b back: the first session goes on.
        drop(on_b);
        waiting
            .await
            .expect("task")
            .expect("the first session is served");
        drop(on_a);
    }

    #[tokio::test]
    async fn shrinking_never_closes_a_connection_in_use() {
        let pool = pool("shrink", &context(), sized(2));
        let holder = Holder::new();
        let one = pool.acquire(1, 0, &holder).await.expect("one");
        let two = pool.acquire(1, 0, &holder).await.expect("two");
        assert_eq!(pool.resize(1, "test"), 2);
        assert_eq!(
            (pool.size(), pool.stats().active),
            (1, 2),
            "both stay in use"
        );
        drop(one);
        assert_eq!(
            (pool.stats().open, pool.stats().idle),
            (1, 0),
            "the first one back is retired"
        );
        drop(two);
        assert_eq!((pool.stats().open, pool.stats().idle), (1, 1));
        let _again = pool
            .acquire(1, 0, &holder)
            .await
            .expect("within the new size");
        assert!(
            pool.try_acquire_ready(1, 0, &holder).await.is_none(),
            "the pool holds one now"
        );
    }

    #[tokio::test]
    async fn a_long_idle_connection_that_fails_validation_is_replaced() {
        let config = PoolConfig {
            validate_idle_ms: 0,
            ..sized(2)
        };
        let pool = pool("validate", &context(), config);
        let holder = Holder::new();
        let mut conn = pool.acquire(1, 0, &holder).await.expect("a connection");
        conn.server_gone = true;
        drop(conn);
        let conn = pool
            .acquire(1, 0, &holder)
            .await
            .expect("a fresh connection");
        assert!(!conn.server_gone, "the dead one was not handed out");
        assert_eq!(opened("validate"), 2);
        drop(conn);
        assert_eq!(pool.stats().open, 1, "the dead one is no longer counted");
    }

    #[tokio::test]
    async fn a_data_source_that_refuses_connections_is_an_error_naming_it() {
        let pool = pool("down-ds", &context(), sized(2));
        let err = match pool.acquire(1, 0, &Holder::new()).await {
            Err(e) => e,
            Ok(_) => panic!("a connection to a refusing server"),
        };
        assert!(err.is_unreachable(), "{err}");
        assert!(err.to_string().contains("down-ds"), "{err}");
        let stats = pool.stats();
        assert_eq!((stats.errors, stats.open, stats.active), (1, 0, 0));
        let check = pool.health_check().await;
        assert!(!check.ok && check.error.is_some_and(|e| e.contains("down-ds")));
    }

    #[tokio::test]
    async fn a_server_marked_down_fails_checkouts_at_once_until_it_answers_a_health_check() {
        let pool = pool("marked", &context(), sized(2));
        let holder = Holder::new();
        let kept = pool.acquire(1, 0, &holder).await.expect("a connection");
        drop(kept);
        assert_eq!(pool.stats().idle, 1);
        pool.mark_down("it stopped answering".into(), true);
        assert_eq!(pool.stats().idle, 0, "idle connections closed");
        let down = pool.down().expect("marked down");
        assert_eq!(down.why, "it stopped answering");
        let err = match pool.acquire(1, 0, &holder).await {
            Err(e) => e,
            Ok(_) => panic!("a connection from a pool marked down"),
        };
        assert!(matches!(err, BackendError::Down { .. }) && err.is_unreachable());
        let message = err.to_string();
        assert!(
            message.contains("data source marked is down (it stopped answering"),
            "{message}"
        );
        assert!(pool.try_acquire_ready(1, 0, &holder).await.is_none());
        // The in-memory server answers: the check brings the pool back.
        assert!(pool.health_check().await.ok);
        assert!(pool.down().is_none());
        assert!(pool.acquire(1, 0, &holder).await.is_ok());
    }

    #[tokio::test]
    async fn a_failed_connect_or_health_check_marks_the_server_down() {
        let pool = pool("down-marked", &context(), sized(2));
        assert!(pool.acquire(1, 0, &Holder::new()).await.is_err());
        let down = pool.down().expect("a refused connect marks it down");
        assert!(down.why.contains("down-marked"), "{}", down.why);
        assert!(
            !down.silent,
            "refused: checkouts keep trying, and fail by themselves"
        );
        let pool = self::pool("down-checked", &context(), sized(2));
        assert!(!pool.health_check().await.ok);
        let down = pool.down().expect("a failed health check marks it down");
        assert!(down.why.contains("down-checked"), "{}", down.why);
    }
}
