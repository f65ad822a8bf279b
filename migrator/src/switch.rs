//! Switching the proxies from one layout to the other, the step shared by
//! cutover and rollback: stage the other configuration on every proxy
//! (before any pause), pause writes to the table on every proxy, wait until
//! no transaction that already wrote it is open, read each streamed
//! primary's final position and let the streams apply up to it, pause reads
//! too, swap the physical tables with one atomic `RENAME TABLE` per data
//! source, read the positions the next streams start from, activate the
//! staged version on every proxy, resume.
//!
//! Any failure, or a pause about to outlast its bound, undoes what was
//! done (renames reversed, the old configuration staged and activated
//! where the new one was, staged versions discarded), then resumes writes
//! on the layout that served before. Nothing is lost: the streams stopped
//! at a position every change before which they applied, and while the
//! table stays paused nothing else changes it.

use crate::backend::{Backends, Replica};
use crate::catchup::{positions_now, Control};
use crate::error::{DbContext, MigrateError};
use crate::proxies::{ProxyAdmin, Scope};
use crate::values::ident;
use futures_util::future::join_all;
use mysql_async::prelude::Queryable;
use shardgate_cdc::BinlogPosition;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Catch-up rounds before the pause, at most: a backlog that does not
/// shrink in this many rounds will not.
const CONVERGE_ROUNDS: usize = 30;
/// What to do when the pause cannot fit its bound.
const PAUSE_ADVICE: &str = "lower the write rate to the table, raise --max-pause-ms, or let the \
                            switch try again (--retries)";
/// The bound on admin requests outside the pause, and on undo steps.
const SLOW_REQUEST: Duration = Duration::from_secs(10);
/// How often the in-flight transactions are polled during the pause.
const IN_FLIGHT_POLL: Duration = Duration::from_millis(2);
/// Tries to resume a proxy before leaving it to its pause lease.
const RESUME_TRIES: u32 = 3;
/// How long the replicas get to apply the renames, after the switch, before
/// the job says which did not and why.
const REPLICA_SWAP_WAIT: Duration = Duration::from_secs(5);

/// One data source's renames, in order (`RENAME TABLE a TO b, c TO d`).
pub type Renames = Vec<(String, String)>;

/// What a switch does.
pub struct Switch<'a> {
    pub table: &'a str,
    /// The configuration the proxies switch to.
    pub config: &'a str,
    /// The configuration in force before, restored by an undo.
    pub previous_config: &'a str,
    /// Per data source, the renames that swap the layouts.
    pub renames: BTreeMap<String, Renames>,
    /// The running streams that must reach the final positions, and the
    /// primaries they read.
    pub streams: Option<(&'a Control, Vec<String>)>,
    /// Data sources whose binlog position after the renames is recorded
    /// (where the next streams start).
    pub record_after: Vec<String>,
    pub backends: &'a Backends,
    pub proxies: Vec<ProxyAdmin>,
    /// The pause bound (also each queued statement's `max_queue_ms`).
    pub max_pause: Duration,
    /// How long the streams may take to converge before the pause.
    pub catch_up: Duration,
}

/// A switch that took effect.
#[derive(Debug)]
pub struct Switched {
    /// The longest pause among the proxies (pause to resume).
    pub longest_pause: Duration,
    /// The `record_after` data sources' positions after the renames.
    pub positions_after: BTreeMap<String, BinlogPosition>,
    /// Proxies that could not be resumed (their pause lease lifts it).
    pub resume_problems: Vec<String>,
    /// Replicas that had not applied the renames within
    /// [`REPLICA_SWAP_WAIT`], each with what holds it back.
    pub replica_problems: Vec<String>,
}

/// A switch that failed and what its undo did.
#[derive(Debug)]
pub struct Failed {
    pub reason: MigrateError,
    /// Undo steps that failed: when not empty, a person must look.
    pub undo_problems: Vec<String>,
    /// When the tables were renamed and renamed back: the streamed
    /// primaries' positions after that, where the streams must continue
    /// (the renames are schema changes a stream refuses to read through;
    /// nothing else changed the table meanwhile, it was paused).
    pub streams_continue_at: Option<BTreeMap<String, BinlogPosition>>,
    pub longest_pause: Option<Duration>,
}

/// What was done so far, to undo.
#[derive(Default)]
struct Done {
    staged: Vec<usize>,
    /// Proxies paused and when their pause began.
    paused: Vec<(usize, Instant)>,
    renamed: Vec<String>,
    activated: Vec<usize>,
}

/// Whether `table` exists in the replica's database.
pub async fn has_table(
    conn: &mut mysql_async::Conn,
    table: &str,
) -> Result<bool, mysql_async::Error> {
    let found: Option<u64> = conn
        .exec_first(
            "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() \
             AND TABLE_NAME = ?",
            (table,),
        )
        .await?;
    Ok(found.is_some())
}

/// The table that tells whether a data source's renames ran: they are one
/// atomic statement, and the first name it creates exists once it did (a
/// cutover's retired old table, a rollback's shadow).
pub fn swap_marker(renames: &Renames) -> Option<&str> {
    renames.first().map(|(_, to)| to.as_str())
}

/// The transactions open on a server, longest first (at most five), as
/// people name them, and the state of a thread waiting for a metadata lock
/// there, if one is.
async fn open_transactions(
    conn: &mut mysql_async::Conn,
) -> Result<(Option<String>, Vec<String>), mysql_async::Error> {
    let waiting: Option<String> = conn
        .query_first(
            "SELECT STATE FROM information_schema.PROCESSLIST \
             WHERE STATE LIKE '%metadata lock%' LIMIT 1",
        )
        .await?;
    let open: Vec<(u64, String, String, u64)> = conn
        .query(
            "SELECT p.ID, p.USER, p.HOST, p.TIME FROM information_schema.INNODB_TRX t \
             JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id \
             ORDER BY p.TIME DESC LIMIT 5",
        )
        .await?;
    let holders = open
        .iter()
        .map(|(id, user, host, time)| {
            format!("connection {id} ({user}@{host}, {time} s in its current state)")
        })
        .collect();
    Ok((waiting, holders))
}

/// What to do about transactions holding a metadata lock.
const END_THEM: &str = "end them (their clients commit, or KILL <id> on that server; a \
                        ShardGate session's backend connection shows ShardGate's address)";

/// What keeps a replica from applying the swap, as far as it tells: its
/// replication's state, and the transactions open there (with what to do).
async fn what_holds(replica: &Replica) -> String {
    let asked = async {
        let mut conn = replica.pool.get_conn().await?;
        open_transactions(&mut conn).await
    };
    match asked.await {
        Ok((waiting, holders)) => {
            let state = match waiting {
                Some(state) => format!("its replication is in state '{state}'"),
                None => "its replication is behind".to_string(),
            };
            if holders.is_empty() {
                format!("{state}; until it applies the swap it serves the old tables and lags")
            } else {
                format!(
                    "{state}, behind a metadata lock of a transaction open there: {}. To go \
                     on, {END_THEM}; until then the replica serves the old tables and lags, and \
                     ShardGate takes it out of rotation",
                    holders.join(", ")
                )
            }
        }
        Err(error) => format!("and cannot be asked why: {error}"),
    }
}

/// One catch-up round before the pause.
struct Round {
    took: Duration,
    /// Binlog bytes the streams were behind when it began (over primaries
    /// whose stream was in the same binlog file).
    bytes: u64,
    transactions: u64,
}

impl std::fmt::Display for Round {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ms to apply {} transactions ({} binlog bytes behind)",
            self.took.as_millis(),
            self.transactions,
            self.bytes
        )
    }
}

/// How many binlog bytes the streams at `applied` are behind `targets`,
/// summed over the primaries whose stream reads the target's file (a
/// stream a file behind counts the target's offset).
fn bytes_behind(
    applied: &BTreeMap<String, Option<BinlogPosition>>,
    targets: &BTreeMap<String, BinlogPosition>,
) -> u64 {
    targets
        .iter()
        .map(|(ds, target)| match applied.get(ds).cloned().flatten() {
            Some(at) if at.file == target.file => target.pos.saturating_sub(at.pos),
            _ => target.pos,
        })
        .sum()
}

/// The inverse of a list of renames.
pub fn inverse(renames: &Renames) -> Renames {
    renames
        .iter()
        .rev()
        .map(|(from, to)| (to.clone(), from.clone()))
        .collect()
}

/// `RENAME TABLE a TO b, c TO d`.
pub fn rename_statement(renames: &Renames) -> String {
    let pairs: Vec<String> = renames
        .iter()
        .map(|(from, to)| format!("{} TO {}", ident(from), ident(to)))
        .collect();
    format!("RENAME TABLE {}", pairs.join(", "))
}

impl Switch<'_> {
    /// Runs the switch; on failure undoes it.
    pub async fn run(&self) -> Result<Switched, Box<Failed>> {
        let mut done = Done::default();
        match self.steps(&mut done).await {
            Ok(switched) => Ok(switched),
            Err(reason) => Err(Box::new(self.undo(done, reason).await)),
        }
    }

    /// Catch-up rounds until one is short: each reads the primaries'
    /// positions and waits until the streams applied up to them. Writes go
    /// on meanwhile, so a round leaves about the backlog it took to drain;
    /// once a round takes at most a quarter of the pause bound, the catch-up
    /// inside the pause (writes stopped) ends well within it, and the pause
    /// may begin. A backlog that does not come down fails here, before any
    /// write waited.
    async fn converge(&self, streams: &Control, sources: &[String]) -> Result<(), MigrateError> {
        let short = self.max_pause / 4;
        let started = Instant::now();
        let mut rounds: Vec<Round> = Vec::new();
        while rounds.len() < CONVERGE_ROUNDS {
            let targets = positions_now(self.backends, sources).await?;
            let behind = bytes_behind(&streams.positions(), &targets);
            let applied_before = streams.transactions();
            let round_started = Instant::now();
            let left = self.catch_up.saturating_sub(started.elapsed());
            match tokio::time::timeout(left, streams.wait_until(&targets, self.catch_up)).await {
                Ok(reached) => reached?,
                Err(_) => break,
            }
            let round = Round {
                took: round_started.elapsed(),
                bytes: behind,
                transactions: streams.transactions().saturating_sub(applied_before),
            };
            tracing::info!(
                took_ms = round.took.as_millis(),
                binlog_bytes = round.bytes,
                transactions = round.transactions,
                "catch-up round before the pause"
            );
            if round.took <= short {
                return Ok(());
            }
            rounds.push(round);
        }
        let last = rounds
            .last()
            .map_or_else(|| "none ended".to_string(), Round::to_string);
        Err(MigrateError::CatchUp(format!(
            "the change streams did not converge before the pause: {} catch-up rounds in {} s, \
             none within {} ms (a quarter of the pause bound); the last: {last}. Writes were \
             not paused. To cut over: {PAUSE_ADVICE}",
            rounds.len(),
            started.elapsed().as_secs(),
            short.as_millis(),
        )))
    }

    /// Time left before the pause reaches its bound (with a margin for
    /// the steps after the check), or an error when none is left.
    fn remaining(&self, paused_at: Instant, before: &str) -> Result<Duration, MigrateError> {
        let margin = (self.max_pause / 5).max(Duration::from_millis(20));
        let limit = self.max_pause.saturating_sub(margin);
        let elapsed = paused_at.elapsed();
        if elapsed >= limit {
            return Err(MigrateError::CatchUp(format!(
                "the pause reached {} ms before {before}, near its bound of {} ms; {PAUSE_ADVICE}",
                elapsed.as_millis(),
                self.max_pause.as_millis()
            )));
        }
        Ok(limit - elapsed)
    }

    /// The error of a request bounded by the pause's remaining time: once
    /// that time is gone, the bound is the cause, whatever the request
    /// reported (a timeout of the last microseconds, say).
    fn bound_or(
        &self,
        paused_at: Instant,
        before: &str,
        error: impl Into<MigrateError>,
    ) -> MigrateError {
        match self.remaining(paused_at, before) {
            Err(bound) => bound,
            Ok(_) => error.into(),
        }
    }

    async fn steps(&self, done: &mut Done) -> Result<Switched, MigrateError> {
        let max_queue_ms = u64::try_from(self.max_pause.as_millis()).unwrap_or(u64::MAX);
        // A dead migrator must not hold the application's writes for long,
        // yet the lease must outlast the pause with room to spare.
        let lease_ms = (max_queue_ms * 10).max(10_000);
        let mut versions = Vec::new();
        for (i, proxy) in self.proxies.iter().enumerate() {
            let version = proxy.with_timeout(SLOW_REQUEST).stage(self.config).await?;
            done.staged.push(i);
            versions.push(version);
        }
        if let Some((streams, sources)) = &self.streams {
            self.converge(streams, sources).await?;
        }

        let first_pause = Instant::now();
        for (i, proxy) in self.proxies.iter().enumerate() {
            let started = Instant::now();
            let fast = proxy.with_timeout(self.remaining(first_pause, "pausing")?);
            fast.pause(self.table, Scope::Writes, max_queue_ms, lease_ms)
                .await
                .map_err(|e| self.bound_or(first_pause, "pausing", e))?;
            done.paused.push((i, started));
        }
        let step = |what: &str| {
            tracing::info!(
                elapsed_ms = first_pause.elapsed().as_millis(),
                "pause: {what}"
            )
        };
        step("writes paused");
        self.wait_for_in_flight(first_pause).await?;
        step("no transaction in flight");
        if let Some((streams, sources)) = &self.streams {
            let finals = positions_now(self.backends, sources).await?;
            step("final positions read");
            let left = self.remaining(first_pause, "reaching the final positions")?;
            streams.stop_at(finals, left).await?;
            step("streams stopped at the final positions");
        }
        for proxy in &self.proxies {
            let fast = proxy.with_timeout(self.remaining(first_pause, "pausing reads")?);
            fast.pause(self.table, Scope::All, max_queue_ms, lease_ms)
                .await
                .map_err(|e| self.bound_or(first_pause, "pausing reads", e))?;
        }
        step("reads paused");
        // The data sources are separate servers: rename on all at once.
        let left = self.remaining(first_pause, "renaming the tables")?;
        let renamed = join_all(
            self.renames
                .iter()
                .map(|(data_source, renames)| async move {
                    (data_source, self.rename(data_source, renames, left).await)
                }),
        )
        .await;
        let mut failure = None;
        for (data_source, result) in renamed {
            match result {
                Ok(()) => done.renamed.push(data_source.clone()),
                Err(error) => failure = failure.or(Some(error)),
            }
        }
        if let Some(error) = failure {
            return Err(error);
        }
        step("tables renamed");
        let positions_after = positions_now(self.backends, &self.record_after).await?;
        for (i, proxy) in self.proxies.iter().enumerate() {
            let fast = proxy.with_timeout(self.remaining(first_pause, "activating")?);
            fast.activate(versions[i])
                .await
                .map_err(|e| self.bound_or(first_pause, "activating", e))?;
            done.activated.push(i);
        }
        step("activated");
        let (longest_pause, resume_problems) = self.resume_all(&done.paused).await;
        let replica_problems = self.replicas_behind_the_swap().await;
        Ok(Switched {
            longest_pause,
            positions_after,
            resume_problems,
            replica_problems,
        })
    }

    /// The replicas of the renamed data sources that have not applied the
    /// renames within [`REPLICA_SWAP_WAIT`] (writes are resumed by now: the
    /// wait costs the application nothing). A replica whose replication
    /// waits for a metadata lock names the open transactions there: a
    /// client's transaction that read the table keeps the rename, and every
    /// change after it, from applying, and the replica falls behind.
    async fn replicas_behind_the_swap(&self) -> Vec<String> {
        let deadline = Instant::now() + REPLICA_SWAP_WAIT;
        let mut problems = Vec::new();
        for (data_source, renames) in &self.renames {
            let Some(marker) = swap_marker(renames) else {
                continue;
            };
            for replica in self.backends.replicas(data_source) {
                loop {
                    let applied = async {
                        let mut conn = replica.pool.get_conn().await?;
                        has_table(&mut conn, marker).await
                    };
                    match applied.await {
                        Ok(true) => break,
                        Ok(false) if Instant::now() < deadline => {
                            tokio::time::sleep(Duration::from_millis(100)).await
                        }
                        Ok(false) => {
                            problems.push(format!(
                                "replica {} of {data_source} has not applied the table swap \
                                 within {} s: {}",
                                replica.address,
                                REPLICA_SWAP_WAIT.as_secs(),
                                what_holds(replica).await
                            ));
                            break;
                        }
                        Err(error) => {
                            problems.push(format!(
                                "replica {} of {data_source}: cannot check that it applied the \
                                 table swap: {error}",
                                replica.address
                            ));
                            break;
                        }
                    }
                }
            }
        }
        problems
    }

    /// Waits until no proxy has an open transaction that wrote the table.
    async fn wait_for_in_flight(&self, paused_at: Instant) -> Result<(), MigrateError> {
        loop {
            let mut busy = 0;
            for proxy in &self.proxies {
                let fast = proxy
                    .with_timeout(self.remaining(paused_at, "transactions in flight finished")?);
                busy += fast
                    .pauses()
                    .await
                    .map_err(|e| self.bound_or(paused_at, "transactions in flight finished", e))?
                    .iter()
                    .filter(|p| p.table.eq_ignore_ascii_case(self.table))
                    .map(|p| p.in_flight_transactions)
                    .sum::<u64>();
            }
            if busy == 0 {
                return Ok(());
            }
            tokio::time::sleep(IN_FLIGHT_POLL).await;
        }
    }

    async fn rename(
        &self,
        data_source: &str,
        renames: &Renames,
        timeout: Duration,
    ) -> Result<(), MigrateError> {
        let sql = rename_statement(renames);
        let renaming_connection = std::sync::Mutex::new(None);
        let rename = async {
            let mut conn = self.backends.conn(data_source).await?;
            if let Ok(mut id) = renaming_connection.lock() {
                *id = Some(conn.id());
            }
            // Waits for metadata locks no longer than the pause allows.
            let lock_wait = timeout.as_secs().max(1);
            conn.query_drop(format!("SET SESSION lock_wait_timeout = {lock_wait}"))
                .await
                .context(|| format!("renaming on {data_source}"))?;
            conn.query_drop(&sql)
                .await
                .context(|| format!("RENAME TABLE of {} tables on {data_source}", renames.len()))
        };
        let failure = match tokio::time::timeout(timeout, rename).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(error)) => error.to_string(),
            Err(_) => {
                // The statement may still wait on the server: stop it, so
                // that it cannot swap the tables after this gave up, then
                // see whether it ran before it was stopped.
                let id = renaming_connection.lock().ok().and_then(|id| *id);
                if let Some(id) = id {
                    let mut conn = self.backends.conn(data_source).await?;
                    conn.query_drop(format!("KILL QUERY {id}"))
                        .await
                        .context(|| format!("stopping the rename on {data_source}"))?;
                }
                if self.renamed_on(data_source, renames).await? {
                    return Ok(());
                }
                format!(
                    "it did not get its metadata locks within {} ms",
                    timeout.as_millis()
                )
            }
        };
        let holders = async {
            let mut conn = self.backends.conn(data_source).await?;
            open_transactions(&mut conn)
                .await
                .context(|| format!("asking {data_source} what holds the rename"))
        };
        let holders = match holders.await {
            Ok((_, holders)) if !holders.is_empty() => format!(
                "; transactions open on {data_source} (a transaction that read or wrote the \
                 table holds its metadata lock): {}: {END_THEM}",
                holders.join(", ")
            ),
            _ => String::new(),
        };
        Err(MigrateError::CatchUp(format!(
            "renaming the tables on {data_source}: {failure}{holders}; {PAUSE_ADVICE}"
        )))
    }

    /// Whether `data_source` applied `renames`.
    async fn renamed_on(&self, data_source: &str, renames: &Renames) -> Result<bool, MigrateError> {
        let Some(marker) = swap_marker(renames) else {
            return Ok(true);
        };
        let mut conn = self.backends.conn(data_source).await?;
        has_table(&mut conn, marker)
            .await
            .context(|| format!("checking the rename on {data_source}"))
    }

    /// Resumes the paused proxies; returns the longest pause and the
    /// proxies that would not resume.
    async fn resume_all(&self, paused: &[(usize, Instant)]) -> (Duration, Vec<String>) {
        let mut longest = Duration::ZERO;
        let mut problems = Vec::new();
        for (i, started) in paused {
            let proxy = self.proxies[*i].with_timeout(SLOW_REQUEST);
            let mut outcome = Ok(vec![]);
            for _ in 0..RESUME_TRIES {
                outcome = proxy.resume(self.table).await;
                if outcome.is_ok() {
                    break;
                }
            }
            longest = longest.max(started.elapsed());
            if let Err(error) = outcome {
                tracing::error!(proxy = proxy.url(), %error, "cannot resume; the pause lease will lift it");
                problems.push(error.to_string());
            }
        }
        (longest, problems)
    }

    async fn undo(&self, done: Done, reason: MigrateError) -> Failed {
        tracing::warn!(%reason, "switch failed; undoing it");
        let mut problems = Vec::new();
        for data_source in done.renamed.iter().rev() {
            let Some(renames) = self.renames.get(data_source) else {
                continue;
            };
            if let Err(error) = self
                .rename(data_source, &inverse(renames), SLOW_REQUEST)
                .await
            {
                problems.push(error.to_string());
            }
        }
        for i in &done.staged {
            let proxy = self.proxies[*i].with_timeout(SLOW_REQUEST);
            let restored = if done.activated.contains(i) {
                match proxy.stage(self.previous_config).await {
                    Ok(version) => proxy.activate(version).await.map(drop),
                    Err(error) => Err(error),
                }
            } else {
                proxy.discard_staged().await
            };
            if let Err(error) = restored {
                problems.push(error.to_string());
            }
        }
        let streams_continue_at = match &self.streams {
            Some((_, sources)) if !done.renamed.is_empty() => {
                match positions_now(self.backends, sources).await {
                    Ok(positions) => Some(positions),
                    Err(error) => {
                        problems.push(format!(
                            "reading the positions after the renames back: {error}"
                        ));
                        None
                    }
                }
            }
            _ => None,
        };
        let (longest, resume_problems) = self.resume_all(&done.paused).await;
        problems.extend(resume_problems);
        Failed {
            reason,
            undo_problems: problems,
            streams_continue_at,
            longest_pause: (!done.paused.is_empty()).then_some(longest),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backlog_in_binlog_bytes() {
        let at = |file: &str, pos: u64| BinlogPosition {
            file: file.into(),
            pos,
        };
        let applied = BTreeMap::from([
            ("ds0".to_string(), Some(at("bin.000001", 1000))),
            ("ds1".to_string(), Some(at("bin.000001", 900))),
            ("ds2".to_string(), None),
        ]);
        let targets = BTreeMap::from([
            ("ds0".to_string(), at("bin.000001", 1500)),
            // A file further: the target's offset counts.
            ("ds1".to_string(), at("bin.000002", 300)),
            ("ds2".to_string(), at("bin.000001", 200)),
        ]);
        assert_eq!(bytes_behind(&applied, &targets), 500 + 300 + 200);
    }

    #[test]
    fn renames_swap_and_their_inverse_swaps_back() {
        let cutover: Renames = vec![
            ("users_5".into(), "users_5__sgold".into()),
            ("users_5__sgnew".into(), "users_5".into()),
        ];
        assert_eq!(
            rename_statement(&cutover),
            "RENAME TABLE `users_5` TO `users_5__sgold`, `users_5__sgnew` TO `users_5`"
        );
        assert_eq!(
            rename_statement(&inverse(&cutover)),
            "RENAME TABLE `users_5` TO `users_5__sgnew`, `users_5__sgold` TO `users_5`"
        );
        assert_eq!(inverse(&inverse(&cutover)), cutover);
    }
}
