//! Change streams of a job: one [`ChangeStream`] per source primary, from
//! its last saved position (else its start), each transaction applied at
//! the rows' other-layout places through the [`Applier`], the position
//! saved at most every [`SAVE_EVERY`] (a state write is an fsync) and when
//! the stream stops. A crash replays at most that much, which the
//! idempotent applier makes harmless.
//!
//! The streams run as one future beside whatever drives the job (the copy,
//! verification, the cutover), steered through a [`Control`]: keep
//! following, stop at given final positions (the cutover's "reach F"), or
//! stop now. Forward streams carry the old layout's changes to the new one
//! before cutover; reverse streams carry the new layout's changes back to
//! the `__sgold` tables after it.

use crate::apply::{record_applied, AppliedColumns, Applier};
use crate::backend::Backends;
use crate::error::MigrateError;
use crate::job::{integer_key_of, JobContext};
use crate::state::{Direction, JobState, StateStore};
use futures_util::future::join_all;
use futures_util::FutureExt;
use shardgate_cdc::{BinlogPosition, CdcError, ChangeStream, StreamItem, TableFilter, Transaction};
use shardgate_rules::DataNode;
use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How often a stream's applied position is saved while it runs.
pub const SAVE_EVERY: Duration = Duration::from_millis(200);

/// What the streams are told to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Goal {
    /// Keep applying what the primaries write.
    Follow,
    /// Stop each stream once it has applied its primary's binlog up to
    /// this position.
    StopAt(BTreeMap<String, BinlogPosition>),
    /// Stop now (after the transaction being applied).
    Stop,
}

/// Where one stream is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamStatus {
    /// Everything before it is applied.
    pub position: Option<BinlogPosition>,
    pub transactions: u64,
    pub finished: bool,
    pub error: Option<String>,
}

type Statuses = BTreeMap<String, StreamStatus>;

/// Steers running streams and watches them.
pub struct Control {
    direction: Direction,
    goal: watch::Sender<Goal>,
    status: watch::Receiver<Statuses>,
}

impl Control {
    /// Stops every stream after the transaction it is applying.
    pub fn stop(&self) {
        self.goal.send_replace(Goal::Stop);
    }

    /// The first stream error, if one failed.
    pub fn failure(&self) -> Option<String> {
        self.status
            .borrow()
            .iter()
            .find_map(|(ds, s)| s.error.as_ref().map(|e| format!("{ds}: {e}")))
    }

    /// Transactions applied so far, over every stream.
    pub fn transactions(&self) -> u64 {
        self.status.borrow().values().map(|s| s.transactions).sum()
    }

    /// Each stream's position now.
    pub fn positions(&self) -> BTreeMap<String, Option<BinlogPosition>> {
        self.status
            .borrow()
            .iter()
            .map(|(ds, s)| (ds.clone(), s.position.clone()))
            .collect()
    }

    /// Waits until every stream has applied its primary's binlog up to
    /// `targets` (they keep following), or fails when one fails or
    /// `timeout` passes.
    pub async fn wait_until(
        &self,
        targets: &BTreeMap<String, BinlogPosition>,
        timeout: Duration,
    ) -> Result<(), MigrateError> {
        self.wait(timeout, "reach the primaries' positions", |statuses| {
            targets.iter().all(|(ds, target)| {
                statuses
                    .get(ds)
                    .and_then(|s| s.position.as_ref())
                    .is_some_and(|p| p >= target)
            })
        })
        .await
    }

    /// Tells every stream to stop once it has applied up to `targets` and
    /// waits until all have stopped there.
    pub async fn stop_at(
        &self,
        targets: BTreeMap<String, BinlogPosition>,
        timeout: Duration,
    ) -> Result<(), MigrateError> {
        self.goal.send_replace(Goal::StopAt(targets));
        self.wait(timeout, "stop at the final positions", |statuses| {
            statuses.values().all(|s| s.finished)
        })
        .await?;
        match self.failure() {
            Some(error) => Err(MigrateError::CatchUp(format!(
                "the {} failed: {error}",
                self.direction
            ))),
            None => Ok(()),
        }
    }

    /// Waits until every stream stopped or one failed; returns the
    /// failure.
    pub async fn ended(&self) -> Option<String> {
        let mut status = self.status.clone();
        // An error here means the streams' future is gone: they ended.
        let _ = status
            .wait_for(|s| s.values().all(|s| s.finished) || s.values().any(|s| s.error.is_some()))
            .await;
        self.failure()
    }

    async fn wait(
        &self,
        timeout: Duration,
        what: &str,
        done: impl Fn(&Statuses) -> bool,
    ) -> Result<(), MigrateError> {
        let mut status = self.status.clone();
        let waited = tokio::time::timeout(
            timeout,
            status.wait_for(|s| done(s) || s.values().any(|s| s.error.is_some())),
        )
        .await;
        match waited {
            Err(_) => Err(MigrateError::CatchUp(format!(
                "the {} did not {what} within {timeout:?} (at {})",
                self.direction,
                describe(&self.positions())
            ))),
            Ok(Err(_)) => Err(MigrateError::CatchUp(format!(
                "the {} ended before it could {what}",
                self.direction
            ))),
            Ok(Ok(_)) => match self.failure() {
                Some(error) => Err(MigrateError::CatchUp(format!(
                    "the {} failed: {error}",
                    self.direction
                ))),
                None => Ok(()),
            },
        }
    }
}

fn describe(positions: &BTreeMap<String, Option<BinlogPosition>>) -> String {
    positions
        .iter()
        .map(|(ds, p)| match p {
            Some(p) => format!("{ds} {p}"),
            None => format!("{ds} not started"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where a stream run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// Once the streams applied what the primaries held when asked.
    CaughtUp,
    /// At SIGINT or SIGTERM (`--follow`).
    Shutdown,
}

/// How long catching up may take before a run gives up.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(24 * 3600);

/// Drives running streams until `until` (or until one fails); the caller
/// stops them afterwards.
pub async fn follow(
    control: &Control,
    backends: &Backends,
    sources: &[String],
    until: Until,
) -> Result<(), MigrateError> {
    match until {
        Until::CaughtUp => {
            let now = positions_now(backends, sources).await?;
            control.wait_until(&now, CATCH_UP_LIMIT).await
        }
        Until::Shutdown => {
            tokio::select! {
                signal = shutdown_signal() => signal,
                failure = control.ended() => Err(MigrateError::CatchUp(
                    failure.unwrap_or_else(|| format!("the {} ended", control.direction)),
                )),
            }
        }
    }
}

/// Resolves at SIGINT or SIGTERM.
pub async fn shutdown_signal() -> Result<(), MigrateError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).map_err(MigrateError::Signal)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(MigrateError::Signal)?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    tracing::info!("signal received: stopping the streams (positions are saved)");
    Ok(())
}

/// The current binlog position of each of `data_sources`' primaries.
pub async fn positions_now<'a>(
    backends: &Backends,
    data_sources: impl IntoIterator<Item = &'a String>,
) -> Result<BTreeMap<String, BinlogPosition>, MigrateError> {
    let mut positions = BTreeMap::new();
    for ds in data_sources {
        let (position, _) = backends.position(ds).await?;
        positions.insert(ds.clone(), position);
    }
    Ok(positions)
}

/// What the appliers need of the logical table's columns: its integer
/// primary key column and the kinds of its columns.
pub async fn applied_columns(
    context: &JobContext,
    backends: &Backends,
) -> Result<AppliedColumns, MigrateError> {
    let (model, schema) =
        context
            .model_schema(backends)
            .await?
            .ok_or_else(|| MigrateError::Table {
                node: context.layout.table.clone(),
                problem: "the old layout has no tables".into(),
            })?;
    let index = integer_key_of(model, &schema)?;
    let names = schema.column_names();
    let all: Vec<&str> = names.iter().map(String::as_str).collect();
    Ok(AppliedColumns {
        key: names[index].clone(),
        kinds: schema.kinds_of(&all),
    })
}

/// Runs `work` beside the streams `running` (from [`streams`]) and stops
/// them when it ends; the work's error comes first, then the streams'.
pub async fn beside_streams<T>(
    control: &Control,
    running: impl Future<Output = Result<(), MigrateError>>,
    work: impl Future<Output = Result<T, MigrateError>>,
) -> Result<T, MigrateError> {
    let driver = async {
        let result = work.await;
        control.stop();
        result
    };
    let (streamed, driven) = tokio::join!(running, driver);
    let value = driven?;
    streamed?;
    Ok(value)
}

/// One stream's source: a primary, where to start, the tables to watch.
struct Source {
    data_source: String,
    from: BinlogPosition,
    filter: TableFilter,
}

/// Opens the job's streams in `direction` (lazily: nothing runs until the
/// returned future is polled). The future ends when every stream stopped;
/// its error is the first stream's error.
pub fn streams<'a>(
    store: &'a StateStore,
    state: &JobState,
    context: &'a JobContext,
    backends: &'a Backends,
    columns: &AppliedColumns,
    direction: Direction,
) -> Result<(Control, impl Future<Output = Result<(), MigrateError>> + 'a), MigrateError> {
    let (watched, applier): (&[DataNode], Applier<'a>) = match direction {
        Direction::Forward => (
            &context.layout.old,
            Applier::forward(context, state.mode, columns),
        ),
        Direction::Reverse => (&context.layout.new, Applier::reverse(context, columns)),
    };
    let mut sources = Vec::new();
    for primary in state.stream_sources(direction) {
        let from = primary
            .applied
            .clone()
            .or_else(|| primary.start.clone())
            .ok_or_else(|| {
                MigrateError::CatchUp(format!(
                    "the {direction} of {} has no start position",
                    primary.data_source
                ))
            })?;
        let database = backends.database(&primary.data_source)?;
        let filter = watched
            .iter()
            .filter(|n| n.data_source == primary.data_source)
            .map(|n| (database.to_string(), n.table.as_str()))
            .collect();
        sources.push(Source {
            data_source: primary.data_source.clone(),
            from,
            filter,
        });
    }
    let (goal_tx, goal_rx) = watch::channel(Goal::Follow);
    let initial: Statuses = sources
        .iter()
        .map(|s| {
            (
                s.data_source.clone(),
                StreamStatus {
                    position: Some(s.from.clone()),
                    ..StreamStatus::default()
                },
            )
        })
        .collect();
    let (status_tx, status_rx) = watch::channel(initial);
    let follower = Follower {
        store,
        job: state.id.clone(),
        backends,
        applier,
        direction,
    };
    let run = async move {
        let status = status_tx;
        let follower = follower;
        let runs = sources
            .into_iter()
            .map(|source| follower.run(source, goal_rx.clone(), &status));
        let results = join_all(runs).await;
        results
            .into_iter()
            .collect::<Result<Vec<()>, _>>()
            .map(drop)
    };
    let control = Control {
        direction,
        goal: goal_tx,
        status: status_rx,
    };
    Ok((control, run))
}

/// Most source transactions applied in one target commit.
const APPLY_BATCH: usize = 500;

/// Transactions a stream already holds, read without waiting.
struct Ready {
    transactions: Vec<Transaction>,
    /// Progress read after them (it ends the batch).
    progress: Option<BinlogPosition>,
    /// An error read after them: the batch is applied, then the stream
    /// stops with it.
    error: Option<CdcError>,
}

/// `first` and what follows it that the stream can give at once (already
/// received), up to [`APPLY_BATCH`] transactions.
fn read_ready(stream: &mut ChangeStream, first: Transaction) -> Ready {
    let mut ready = Ready {
        transactions: vec![first],
        progress: None,
        error: None,
    };
    while ready.transactions.len() < APPLY_BATCH {
        // `next` is cancel-safe: an item not ready now stays in the stream.
        match stream.next().now_or_never() {
            Some(Ok(StreamItem::Transaction(transaction))) => ready.transactions.push(transaction),
            Some(Ok(StreamItem::Progress(at))) => {
                ready.progress = Some(at);
                break;
            }
            Some(Err(error)) => {
                ready.error = Some(error);
                break;
            }
            None => break,
        }
    }
    ready
}

struct Follower<'a> {
    store: &'a StateStore,
    job: String,
    backends: &'a Backends,
    applier: Applier<'a>,
    direction: Direction,
}

impl Follower<'_> {
    /// Runs one stream; its outcome is also published in `status`.
    async fn run(
        &self,
        source: Source,
        goal: watch::Receiver<Goal>,
        status: &watch::Sender<Statuses>,
    ) -> Result<(), MigrateError> {
        let data_source = source.data_source.clone();
        let result = self.follow(source, goal, status).await;
        status.send_modify(|s| {
            let entry = s.entry(data_source.clone()).or_default();
            entry.finished = true;
            if let Err(error) = &result {
                entry.error = Some(error.to_string());
            }
        });
        match &result {
            Ok(()) => {
                tracing::info!(job = self.job, data_source, direction = %self.direction, "stream stopped")
            }
            Err(error) => {
                tracing::error!(job = self.job, data_source, direction = %self.direction, %error, "stream failed")
            }
        }
        result
    }

    async fn follow(
        &self,
        source: Source,
        mut goal: watch::Receiver<Goal>,
        status: &watch::Sender<Statuses>,
    ) -> Result<(), MigrateError> {
        let ds = source.data_source.as_str();
        let cdc_error = |source| MigrateError::Cdc {
            data_source: ds.to_string(),
            source: Box::new(source),
        };
        let mut position = source.from.clone();
        let mut saved = source.from.clone();
        let mut saved_at = Instant::now();
        let mut stream = None;
        let result = loop {
            let stop = match &*goal.borrow_and_update() {
                Goal::Follow => false,
                Goal::Stop => true,
                Goal::StopAt(targets) => targets.get(ds).is_none_or(|t| position >= *t),
            };
            if stop {
                break Ok(());
            }
            // Opened after the first goal check: a stream told to stop
            // before it started never connects.
            let open = match stream.as_mut() {
                Some(open) => open,
                None => {
                    let opened = ChangeStream::open(
                        self.backends.opts(ds)?,
                        position.clone(),
                        source.filter.clone(),
                    )
                    .await
                    .map_err(cdc_error)?;
                    stream.insert(opened)
                }
            };
            tokio::select! {
                changed = goal.changed() => {
                    if changed.is_err() {
                        // The control is gone: nobody steers, stop.
                        break Ok(());
                    }
                }
                item = open.next() => {
                    match item.map_err(cdc_error) {
                        Ok(StreamItem::Transaction(first)) => {
                            let batch = read_ready(open, first);
                            if let Err(error) = self
                                .applier
                                .apply_transactions(self.backends, ds, &batch.transactions)
                                .await
                            {
                                break Err(error);
                            }
                            if let Some(last) = batch.transactions.last() {
                                position = last.end.clone();
                            }
                            if let Some(at) = batch.progress {
                                position = at;
                            }
                            let applied = batch.transactions.len() as u64;
                            status.send_modify(|s| {
                                if let Some(entry) = s.get_mut(ds) {
                                    entry.transactions += applied;
                                }
                            });
                            if let Some(error) = batch.error {
                                break Err(cdc_error(error));
                            }
                        }
                        Ok(StreamItem::Progress(at)) => position = at,
                        Err(error) => break Err(error),
                    }
                }
            }
            status.send_modify(|s| {
                if let Some(entry) = s.get_mut(ds) {
                    entry.position = Some(position.clone());
                }
            });
            if position != saved && saved_at.elapsed() >= SAVE_EVERY {
                record_applied(self.store, &self.job, self.direction, ds, position.clone())?;
                saved = position.clone();
                saved_at = Instant::now();
            }
        };
        if position != saved {
            record_applied(self.store, &self.job, self.direction, ds, position)?;
        }
        if let Some(stream) = stream {
            if let Err(error) = stream.close().await {
                tracing::debug!(data_source = ds, %error, "closing a change stream");
            }
        }
        result
    }
}
