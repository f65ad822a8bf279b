//! Pausing statements per logical table, for a resharding cutover: while a
//! table is paused, statements that would write it (with scope `all`, any
//! statement on it) wait at the session's gate before they are analysed or
//! routed, and continue — under the rules version current then — as soon
//! as the pause lifts, or are refused after the pause's `max_queue`.
//!
//! A session whose open transaction already wrote a paused table is "in
//! flight": it is not held (it must be able to finish), and the migrator
//! waits until no session is. A pause that is neither renewed nor lifted
//! within its lease lifts by itself, so a dead migrator cannot block the
//! application for good.
//!
//! With no pause in effect a statement costs one atomic load ([`Gate`]).

pub mod statement;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::metrics::Metrics;
use statement::StatementTables;

/// What a pause holds (the admin API's type).
pub use shardgate_admin_api::Scope;

/// How a pause behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PauseTerms {
    pub scope: Scope,
    /// How long a statement may wait before it is refused.
    pub max_queue: Duration,
    /// How long the pause lasts unless it is renewed or lifted.
    pub lease: Duration,
}

/// One paused table.
#[derive(Debug)]
struct Pause {
    /// Tells this pause from a later one of the same table.
    id: u64,
    terms: PauseTerms,
    since: SystemTime,
    lease_until: Instant,
    queued: usize,
    refused: u64,
}

/// One pause as the admin API shows it (in-flight transactions are the
/// sessions' to count).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PauseStatus {
    pub table: String,
    pub scope: Scope,
    pub since_unix_ms: u64,
    pub max_queue_ms: u64,
    pub lease_remaining_ms: u64,
    pub queued: usize,
    pub refused: u64,
}

/// The gate word a session loads once per statement: how many pauses are
/// in effect, and an epoch that grows with every pause begun or changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Gate(u64);

impl Gate {
    fn new(epoch: u64, paused: usize) -> Self {
        Gate((epoch << 32) | (paused as u64 & 0xffff_ffff))
    }

    /// Whether any pause is in effect.
    pub fn any(self) -> bool {
        self.0 & 0xffff_ffff != 0
    }

    fn epoch(self) -> u64 {
        self.0 >> 32
    }
}

/// A statement refused after waiting `max_queue` for a pause to lift.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{what} table `{table}` are paused for a resharding cutover and did not resume within {max_queue_ms} ms; retry the statement")]
pub struct Refused {
    /// "writes to" or "statements on".
    what: &'static str,
    pub table: String,
    pub max_queue_ms: u64,
}

#[derive(Debug, Default)]
struct State {
    pauses: BTreeMap<String, Pause>,
    epoch: u64,
    next_id: u64,
}

/// The pauses in effect (one per proxy, across rules versions).
pub struct Pauses {
    gate: AtomicU64,
    state: Mutex<State>,
    /// Bumped whenever a pause lifts or changes: wakes waiting statements
    /// at once.
    changed: watch::Sender<u64>,
    /// Wakes the lease keeper when a lease begins, changes or ends.
    leases_changed: Notify,
    metrics: Arc<Metrics>,
}

impl Pauses {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Pauses {
            gate: AtomicU64::new(0),
            state: Mutex::default(),
            changed: watch::Sender::new(0),
            leases_changed: Notify::new(),
            metrics,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The gate word now: the one load a statement pays when nothing is paused.
    pub fn gate(&self) -> Gate {
        Gate(self.gate.load(Ordering::SeqCst))
    }

    /// Publishes the state's gate word and gauge, and wakes whoever waits.
    fn changed(&self, state: &State) {
        self.gate.store(
            Gate::new(state.epoch, state.pauses.len()).0,
            Ordering::SeqCst,
        );
        self.metrics.paused_tables(state.pauses.len());
        self.changed.send_modify(|generation| *generation += 1);
        self.leases_changed.notify_one();
    }

    /// Pauses `tables` (lower case), or renews and updates their pauses.
    pub fn pause(&self, tables: &[String], terms: PauseTerms) {
        let mut state = self.lock();
        let lease_until = Instant::now() + terms.lease;
        state.epoch += 1;
        for table in tables {
            let id = state.next_id;
            match state.pauses.get_mut(table) {
                Some(pause) => {
                    pause.terms = terms;
                    pause.lease_until = lease_until;
                }
                None => {
                    state.next_id += 1;
                    state.pauses.insert(
                        table.clone(),
                        Pause {
                            id,
                            terms,
                            since: SystemTime::now(),
                            lease_until,
                            queued: 0,
                            refused: 0,
                        },
                    );
                }
            }
        }
        self.changed(&state);
    }

    /// Lifts the pauses of `tables` (those paused); queued statements go on.
    pub fn resume(&self, tables: &[String]) -> Vec<String> {
        let mut state = self.lock();
        let lifted: Vec<String> = tables
            .iter()
            .filter(|t| state.pauses.remove(t.as_str()).is_some())
            .cloned()
            .collect();
        self.changed(&state);
        lifted
    }

    /// Every pause in effect, by table.
    pub fn list(&self) -> Vec<PauseStatus> {
        let state = self.lock();
        let now = Instant::now();
        state
            .pauses
            .iter()
            .map(|(table, p)| PauseStatus {
                table: table.clone(),
                scope: p.terms.scope,
                since_unix_ms: p
                    .since
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64),
                max_queue_ms: p.terms.max_queue.as_millis() as u64,
                lease_remaining_ms: p.lease_until.saturating_duration_since(now).as_millis() as u64,
                queued: p.queued,
                refused: p.refused,
            })
            .collect()
    }

    /// Waits while a pause holds `statement`, for a session whose open
    /// transaction wrote `written` (lower case). Returns the gate word it
    /// was let through under, or why it was refused.
    pub async fn admit(
        &self,
        statement: &StatementTables<'_>,
        written: &[String],
    ) -> Result<Gate, Refused> {
        let mut changes = self.changed.subscribe();
        let mut queued = Queued {
            pauses: self,
            ids: Vec::new(),
        };
        let queued_at = Instant::now();
        loop {
            changes.borrow_and_update();
            let deadline = {
                let mut state = self.lock();
                let gate = self.gate();
                let in_flight = state.pauses.keys().any(|t| written.contains(t));
                let holding: Vec<(u64, Duration)> = if in_flight {
                    Vec::new()
                } else {
                    state
                        .pauses
                        .iter()
                        .filter(|(table, p)| {
                            statement.mentions(table)
                                && (p.terms.scope == Scope::All || !statement.pure_read())
                        })
                        .map(|(_, p)| (p.id, p.terms.max_queue))
                        .collect()
                };
                queued.count_in(&mut state, holding.iter().map(|(id, _)| *id).collect());
                let Some(&(shortest, max_queue)) = holding.iter().min_by_key(|(_, q)| *q) else {
                    return Ok(gate);
                };
                let deadline = queued_at + max_queue;
                if Instant::now() >= deadline {
                    queued.count_in(&mut state, Vec::new());
                    let what = if statement.pure_read() {
                        "statements on"
                    } else {
                        "writes to"
                    };
                    let Some((table, pause)) =
                        state.pauses.iter_mut().find(|(_, p)| p.id == shortest)
                    else {
                        continue;
                    };
                    pause.refused += 1;
                    self.metrics.pause_refused(table);
                    return Err(Refused {
                        what,
                        table: table.clone(),
                        max_queue_ms: max_queue.as_millis() as u64,
                    });
                }
                deadline
            };
            // A lift, a change or the deadline, whichever comes first.
            let _ = tokio::time::timeout_at(deadline, changes.changed()).await;
        }
    }

    /// Whether a pause begun after `admitted` holds one of `tables` (which
    /// the statement writes) for a session whose transaction wrote
    /// `written` before it: the statement must go back to the gate. The
    /// caller records its writes before asking, so that a migrator counting
    /// in-flight transactions after the pause began sees them.
    pub fn newly_holds(&self, admitted: Gate, tables: &[String], written: &[String]) -> bool {
        let now = self.gate();
        if !now.any() || now.epoch() == admitted.epoch() {
            return false;
        }
        let state = self.lock();
        let in_flight = state.pauses.keys().any(|t| written.contains(t));
        !in_flight && tables.iter().any(|t| state.pauses.contains_key(t))
    }

    /// Lifts every pause whose lease ended by `now`; returns them.
    fn expire_leases(&self, now: Instant) -> Vec<(String, PauseTerms)> {
        let mut state = self.lock();
        let expired: Vec<(String, PauseTerms)> = state
            .pauses
            .iter()
            .filter(|(_, p)| p.lease_until <= now)
            .map(|(t, p)| (t.clone(), p.terms))
            .collect();
        if !expired.is_empty() {
            for (table, _) in &expired {
                state.pauses.remove(table);
            }
            self.changed(&state);
        }
        expired
    }

    fn next_lease_end(&self) -> Option<Instant> {
        self.lock().pauses.values().map(|p| p.lease_until).min()
    }

    /// Lifts pauses as their leases end, calling `expired` for each, until
    /// the task is aborted.
    pub async fn keep_leases(&self, expired: impl Fn(&str, PauseTerms)) {
        loop {
            let woken = self.leases_changed.notified();
            match self.next_lease_end() {
                Some(at) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        () = woken => {}
                    }
                }
                None => woken.await,
            }
            for (table, terms) in self.expire_leases(Instant::now()) {
                expired(&table, terms);
            }
        }
    }
}

/// The pauses a waiting statement is counted in (`queued`); a statement
/// dropped while it waits (its session ended) is uncounted on drop.
struct Queued<'p> {
    pauses: &'p Pauses,
    ids: Vec<u64>,
}

impl Queued<'_> {
    /// Counts the statement in the pauses `ids` instead of the previous ones.
    fn count_in(&mut self, state: &mut State, ids: Vec<u64>) {
        let before = self.ids.len();
        for pause in state.pauses.values_mut() {
            let was = self.ids.contains(&pause.id);
            let is = ids.contains(&pause.id);
            if was && !is {
                pause.queued = pause.queued.saturating_sub(1);
            } else if is && !was {
                pause.queued += 1;
            }
        }
        self.pauses
            .metrics
            .paused_statements(ids.len() as i64 - before as i64);
        self.ids = ids;
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        if !self.ids.is_empty() {
            let mut state = self.pauses.lock();
            self.count_in(&mut state, Vec::new());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardgate_sql::dialect::MARIADB;

    fn terms(scope: Scope, max_queue_ms: u64) -> PauseTerms {
        PauseTerms {
            scope,
            max_queue: Duration::from_millis(max_queue_ms),
            lease: Duration::from_secs(60),
        }
    }

    fn users() -> Vec<String> {
        vec!["users".to_string()]
    }

    #[tokio::test]
    async fn nothing_paused_admits_at_once() {
        let pauses = Pauses::new(Arc::new(Metrics::new()));
        assert!(!pauses.gate().any());
        let write = StatementTables::of(&MARIADB, "DELETE FROM users");
        assert!(pauses.admit(&write, &[]).await.is_ok());
    }

    #[tokio::test]
    async fn a_held_write_goes_on_when_the_pause_lifts() {
        let pauses = Arc::new(Pauses::new(Arc::new(Metrics::new())));
        pauses.pause(&users(), terms(Scope::Writes, 10_000));
        assert!(pauses.gate().any());
        let read = StatementTables::of(&MARIADB, "SELECT * FROM users");
        assert!(pauses.admit(&read, &[]).await.is_ok(), "reads pass");
        let other = StatementTables::of(&MARIADB, "DELETE FROM orders");
        assert!(pauses.admit(&other, &[]).await.is_ok(), "other tables pass");

        let waiter = {
            let pauses = pauses.clone();
            tokio::spawn(async move {
                let write = StatementTables::of(&MARIADB, "UPDATE users SET a = 1");
                pauses.admit(&write, &[]).await
            })
        };
        while pauses.list()[0].queued == 0 {
            tokio::task::yield_now().await;
        }
        assert!(!waiter.is_finished());
        pauses.resume(&users());
        let admitted = tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("woken at once")
            .expect("task");
        assert!(admitted.is_ok());
        assert!(!pauses.gate().any());
    }

    #[tokio::test]
    async fn a_statement_waiting_too_long_is_refused_and_counted() {
        let pauses = Pauses::new(Arc::new(Metrics::new()));
        pauses.pause(&users(), terms(Scope::All, 50));
        let read = StatementTables::of(&MARIADB, "SELECT * FROM users");
        let refused = pauses.admit(&read, &[]).await.expect_err("refused");
        assert_eq!(refused.table, "users");
        assert_eq!(
            refused.to_string(),
            "statements on table `users` are paused for a resharding cutover and did not resume within 50 ms; retry the statement"
        );
        let status = &pauses.list()[0];
        assert_eq!((status.refused, status.queued), (1, 0));
    }

    #[tokio::test]
    async fn a_transaction_that_wrote_the_table_is_not_held() {
        let pauses = Pauses::new(Arc::new(Metrics::new()));
        pauses.pause(&users(), terms(Scope::All, 10));
        let write = StatementTables::of(&MARIADB, "INSERT INTO users VALUES (1)");
        assert!(pauses.admit(&write, &users()).await.is_ok());
    }

    #[tokio::test]
    async fn a_pause_begun_after_admission_sends_a_write_back() {
        let pauses = Pauses::new(Arc::new(Metrics::new()));
        let admitted = pauses.gate();
        assert!(!pauses.newly_holds(admitted, &users(), &[]));
        pauses.pause(&users(), terms(Scope::Writes, 10));
        assert!(pauses.newly_holds(admitted, &users(), &[]));
        assert!(
            !pauses.newly_holds(admitted, &users(), &users()),
            "in flight"
        );
        assert!(!pauses.newly_holds(pauses.gate(), &users(), &[]));
    }

    #[tokio::test]
    async fn an_unrenewed_lease_lifts_the_pause() {
        let pauses = Arc::new(Pauses::new(Arc::new(Metrics::new())));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let keeper = {
            let pauses = pauses.clone();
            tokio::spawn(async move {
                pauses
                    .keep_leases(|table, _| {
                        let _ = tx.send(table.to_string());
                    })
                    .await
            })
        };
        pauses.pause(
            &users(),
            PauseTerms {
                lease: Duration::from_millis(50),
                ..terms(Scope::Writes, 10)
            },
        );
        let lifted = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("lifted within the lease and some")
            .expect("lifted");
        assert_eq!(lifted, "users");
        assert!(pauses.list().is_empty());
        assert!(!pauses.gate().any());
        keeper.abort();
    }
}
