//! The background care of one pool, once a second: keep `min_idle`
//! connections open, resize adaptively, health-check, and raise alerts
//! when the pool runs hot for a sustained period or a health check fails.

use std::sync::Arc;
use std::time::{Duration, Instant};

use shardgate_rules::config::AlertConfig;
use tokio::task::JoinHandle;
use tracing::info;

use super::{Connection, Pool};
use crate::alerts::Alerts;

const TICK: Duration = Duration::from_secs(1);

/// What the task remembers between ticks.
struct Care<C: Connection> {
    pool: Arc<Pool<C>>,
    alerts: Arc<Alerts>,
    config: AlertConfig,
    last_resize: Instant,
    /// When the health check ran last (None: never).
    last_health: Option<Instant>,
    /// Whether the last health check failed (alerts fire on the change).
    unhealthy: bool,
    /// Since when the pool has been above the usage threshold.
    hot_since: Option<Instant>,
    hot_alerted: bool,
}

/// Starts the care of `pool`; the task ends when the handle is aborted.
pub fn spawn<C: Connection>(
    pool: Arc<Pool<C>>,
    alerts: Arc<Alerts>,
    config: AlertConfig,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut care = Care {
            pool,
            alerts,
            config,
            last_resize: Instant::now(),
            last_health: None,
            unhealthy: false,
            hot_since: None,
            hot_alerted: false,
        };
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            care.tick().await;
        }
    })
}

impl<C: Connection> Care<C> {
    async fn tick(&mut self) {
        self.watch_usage();
        self.resize_adaptively();
        self.check_health().await;
        self.pool.fill_min_idle().await;
    }

    fn watch_usage(&mut self) {
        let stats = self.pool.stats();
        let threshold = self.config.pool_usage_ratio * stats.max as f64;
        if (stats.active as f64) <= threshold {
            self.hot_since = None;
            self.hot_alerted = false;
            return;
        }
        let since = *self.hot_since.get_or_insert_with(Instant::now);
        let sustain = Duration::from_millis(self.config.pool_usage_sustain_ms);
        if !self.hot_alerted && since.elapsed() >= sustain {
            self.hot_alerted = true;
            self.alerts.fire(
                "pool_saturated",
                self.pool.name(),
                format!(
                    "pool {} has had more than {:.0}% of its {} connections in use for {:?} ({} in use, {} waiting)",
                    self.pool.name(),
                    self.config.pool_usage_ratio * 100.0,
                    stats.max,
                    since.elapsed(),
                    stats.active,
                    stats.waiting
                ),
            );
        }
    }

    fn resize_adaptively(&mut self) {
        let config = self.pool.config();
        let interval = Duration::from_millis(config.resize_interval_ms);
        if !config.adaptive || self.last_resize.elapsed() < interval {
            return;
        }
        self.last_resize = Instant::now();
        let (peak, optimal) = self.pool.take_peak_and_optimal_size();
        let current = self.pool.size();
        if optimal.abs_diff(current) > 5 {
            info!(pool = %self.pool.name(), peak, from = current, to = optimal, "adaptive resize");
            self.pool.resize(optimal, "adaptive");
        }
    }

    async fn check_health(&mut self) {
        let interval = Duration::from_millis(self.pool.config().health_check_interval_ms);
        // A server marked down is checked at every tick, to come back soon.
        if self.pool.down().is_none() && self.last_health.is_some_and(|at| at.elapsed() < interval)
        {
            return;
        }
        self.last_health = Some(Instant::now());
        let check = self.pool.health_check().await;
        match (check.ok, self.unhealthy) {
            (false, false) => {
                self.unhealthy = true;
                self.alerts.fire(
                    "health_check_failed",
                    self.pool.name(),
                    format!(
                        "health check of {} failed: {}",
                        self.pool.name(),
                        check.error.as_deref().unwrap_or("unknown error")
                    ),
                );
            }
            (true, true) => {
                self.unhealthy = false;
                info!(pool = %self.pool.name(), "health check passes again");
            }
            _ => {}
        }
    }
}
