//! `cutover`, `rollback` and `complete`: switching the proxies to the new
//! layout (forward streams brought to each primary's final position, the
//! tables swapped by rename, the staged rules activated; see [`switch`]),
//! the reverse stream that keeps the old layout (now the `__sgold` tables)
//! current afterwards, switching back, and dropping what the layout left
//! behind no longer needs.
//!
//! [`switch`]: crate::switch

use crate::backend::Backends;
use crate::catchup::{applied_columns, beside_streams, follow, streams, Control, Until};
use crate::error::{DbContext, MigrateError};
use crate::job::{drop_targets, JobContext};
use crate::layout::{retired_name, Layout, Mode};
use crate::lifecycle::{ensure, Command};
use crate::proxies::ProxyAdmin;
use crate::schema::row_count;
use crate::state::{now_ms, Direction, JobState, Phase, PrimaryState, StateStore, SwitchRecord};
use crate::switch::{has_table, inverse, swap_marker, Failed, Renames, Switch};
use crate::values::ident;
use mysql_async::prelude::Queryable;
use shardgate_rules::DataNode;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// How a switch is asked for.
#[derive(Debug, Clone)]
pub struct SwitchRequest {
    /// Proxy admin URLs; empty: the ones the job stored.
    pub proxies: Vec<String>,
    pub bounds: SwitchBounds,
    /// Keep the reverse stream running after a cutover until SIGINT or
    /// SIGTERM.
    pub follow: bool,
    /// Further attempts after a switch that failed and was undone.
    pub retries: u32,
}

/// How long a switch may take.
#[derive(Debug, Clone, Copy)]
pub struct SwitchBounds {
    /// The bound on the write pause (and on each queued statement's wait).
    pub max_pause: Duration,
    /// How long the change streams may take to converge before the pause.
    pub catch_up: Duration,
}

/// The wait before a switch tries again: the writes a failed attempt held
/// back go through, and the streams catch up from where it left them.
const RETRY_AFTER: Duration = Duration::from_secs(2);

/// Runs `attempt` (a whole switch, streams included) until it succeeds,
/// fails in a way a retry cannot help, or `retries` more attempts failed
/// and were undone.
async fn with_retries<F, Fut>(
    job: &str,
    what: &str,
    retries: u32,
    attempt: F,
) -> Result<(), MigrateError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), MigrateError>>,
{
    let mut failed = 0;
    loop {
        match attempt().await {
            Err(error @ MigrateError::SwitchUndone { .. }) if failed < retries => {
                failed += 1;
                println!(
                    "{job}: {what} attempt {failed} of {} failed: {error}; trying again in {} s",
                    retries + 1,
                    RETRY_AFTER.as_secs()
                );
                tokio::time::sleep(RETRY_AFTER).await;
            }
            other => return other,
        }
    }
}

/// Per data source, the renames of a cutover: each old table whose name
/// the new layout keeps retires to `__sgold` and its shadow takes the name.
/// None in an extend (rows stay where they are).
pub fn cutover_renames(layout: &Layout, mode: Mode) -> BTreeMap<String, Renames> {
    let mut renames: BTreeMap<String, Renames> = BTreeMap::new();
    if mode == Mode::Extend {
        return renames;
    }
    for node in layout.new.iter().filter(|n| layout.is_old_node(n)) {
        let shadow = layout.staging(node, mode);
        let pairs = renames.entry(node.data_source.clone()).or_default();
        pairs.push((node.table.clone(), retired_name(&node.table)));
        pairs.push((shadow.table, node.table.clone()));
    }
    renames
}

/// The tables a completed cutover leaves behind: the retired old ones.
pub fn retired_tables(layout: &Layout, mode: Mode) -> Vec<DataNode> {
    cutover_renames(layout, mode)
        .into_iter()
        .flat_map(|(ds, pairs)| {
            pairs
                .into_iter()
                .step_by(2)
                .map(move |(_, retired)| DataNode::new(&ds, retired))
        })
        .collect()
}

fn admins(state: &JobState) -> Result<Vec<ProxyAdmin>, MigrateError> {
    if state.proxies.is_empty() {
        return Err(MigrateError::Switch(
            state.id.clone(),
            "no proxy to switch: give their admin URLs with --proxy http://host:port".into(),
        ));
    }
    state
        .proxies
        .iter()
        .map(|url| ProxyAdmin::new(url, Duration::from_secs(10)).map_err(MigrateError::from))
        .collect()
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Records a failed switch: the phase it returns to (or `failed` when its
/// undo went wrong too), where the streams continue, the error.
fn record_failure(
    store: &StateStore,
    job: &str,
    what: &'static str,
    back_to: Phase,
    direction: Direction,
    failed: Failed,
) -> MigrateError {
    if let Some(pause) = failed.longest_pause {
        println!(
            "{job}: {what} failed; longest write pause {} ms",
            pause.as_millis()
        );
    }
    let reason = failed.reason.to_string();
    let error = if failed.undo_problems.is_empty() {
        MigrateError::SwitchUndone {
            what,
            job: job.to_string(),
            reason,
        }
    } else {
        MigrateError::SwitchStuck {
            what,
            job: job.to_string(),
            reason,
            undo: failed.undo_problems.join("; "),
        }
    };
    let stuck = !failed.undo_problems.is_empty();
    let recorded = store.update(job, |s| {
        s.phase = if stuck { Phase::Failed } else { back_to };
        for (ds, position) in failed.streams_continue_at.iter().flatten() {
            if let Some(p) = s.stream_source_mut(direction, ds) {
                p.applied = Some(position.clone());
            }
        }
        s.record_error(error.to_string());
    });
    if let Err(state_error) = recorded {
        tracing::error!(%state_error, "cannot record the failed switch");
    }
    error
}

/// Switches the proxies to the new layout (the job must be `ready`);
/// `streams`: the running forward streams (None in an extend).
pub async fn cut_over(
    store: &StateStore,
    job: &str,
    context: &JobContext,
    backends: &Backends,
    streams: Option<&Control>,
    bounds: SwitchBounds,
) -> Result<(), MigrateError> {
    let state = store.load(job)?;
    let proxies = admins(&state)?;
    let new_sources: BTreeSet<String> = match state.mode {
        Mode::Rebuild => context
            .layout
            .new
            .iter()
            .map(|n| n.data_source.clone())
            .collect(),
        Mode::Extend => BTreeSet::new(),
    };
    let sources: Vec<String> = state
        .primaries
        .iter()
        .map(|p| p.data_source.clone())
        .collect();
    store.update(job, |s| s.phase = Phase::CuttingOver)?;
    let switch = Switch {
        table: &state.table,
        config: &state.to_config,
        previous_config: &state.from_config,
        renames: cutover_renames(&context.layout, state.mode),
        streams: streams.map(|c| (c, sources)),
        record_after: new_sources.into_iter().collect(),
        backends,
        proxies,
        max_pause: bounds.max_pause,
        catch_up: bounds.catch_up,
    };
    match switch.run().await {
        Ok(done) => {
            let pause_ms = millis(done.longest_pause);
            store.update(job, |s| {
                s.phase = Phase::CutOver;
                s.reverse = done
                    .positions_after
                    .iter()
                    .map(|(ds, position)| PrimaryState {
                        data_source: ds.clone(),
                        start: Some(position.clone()),
                        start_gtid: None,
                        applied: None,
                    })
                    .collect();
                s.cutover = Some(SwitchRecord {
                    at_ms: now_ms(),
                    longest_pause_ms: pause_ms,
                });
                for problem in done.resume_problems.iter().chain(&done.replica_problems) {
                    s.record_error(format!("after the cutover: {problem}"));
                }
            })?;
            println!("{job}: cut over to the new layout; longest write pause {pause_ms} ms");
            for problem in &done.replica_problems {
                println!("{job}: warning: {problem}");
            }
            Ok(())
        }
        Err(failed) => Err(record_failure(
            store,
            job,
            "cutover",
            Phase::Ready,
            Direction::Forward,
            *failed,
        )),
    }
}

/// Switches the proxies back to the old layout (the job must be
/// `cut_over`); `streams`: the running reverse streams (None in an extend).
pub async fn roll_back(
    store: &StateStore,
    job: &str,
    context: &JobContext,
    backends: &Backends,
    streams: Option<&Control>,
    bounds: SwitchBounds,
) -> Result<(), MigrateError> {
    let state = store.load(job)?;
    let proxies = admins(&state)?;
    let sources: Vec<String> = state
        .reverse
        .iter()
        .map(|p| p.data_source.clone())
        .collect();
    store.update(job, |s| s.phase = Phase::RollingBack)?;
    let switch = Switch {
        table: &state.table,
        config: &state.from_config,
        previous_config: &state.to_config,
        renames: cutover_renames(&context.layout, state.mode)
            .into_iter()
            .map(|(ds, renames)| (ds, inverse(&renames)))
            .collect(),
        streams: streams.map(|c| (c, sources)),
        // Where the forward streams go on from: after the rollback they
        // keep the new tables following the old, live ones, which lets
        // `verify` check that the rollback lost nothing.
        record_after: state
            .primaries
            .iter()
            .map(|p| p.data_source.clone())
            .collect(),
        backends,
        proxies,
        max_pause: bounds.max_pause,
        catch_up: bounds.catch_up,
    };
    match switch.run().await {
        Ok(done) => {
            let pause_ms = millis(done.longest_pause);
            store.update(job, |s| {
                s.phase = Phase::RolledBack;
                for (ds, position) in &done.positions_after {
                    if let Some(p) = s.stream_source_mut(Direction::Forward, ds) {
                        p.applied = Some(position.clone());
                    }
                }
                s.rollback = Some(SwitchRecord {
                    at_ms: now_ms(),
                    longest_pause_ms: pause_ms,
                });
                for problem in done.resume_problems.iter().chain(&done.replica_problems) {
                    s.record_error(format!("after the rollback: {problem}"));
                }
            })?;
            println!(
                "{job}: rolled back to the old layout; longest write pause {pause_ms} ms; \
                 `complete {job}` drops the new layout's tables, then start a new job to try again"
            );
            for problem in &done.replica_problems {
                println!("{job}: warning: {problem}");
            }
            Ok(())
        }
        Err(failed) => Err(record_failure(
            store,
            job,
            "rollback",
            Phase::CutOver,
            Direction::Reverse,
            *failed,
        )),
    }
}

/// The data sources of a stream direction.
fn stream_sources(state: &JobState, direction: Direction) -> Vec<String> {
    state
        .stream_sources(direction)
        .iter()
        .map(|p| p.data_source.clone())
        .collect()
}

/// Runs the reverse streams of a cut-over job until `until`.
pub async fn follow_reverse(
    store: &StateStore,
    job: &str,
    context: &JobContext,
    backends: &Backends,
    until: Until,
) -> Result<(), MigrateError> {
    let state = store.load(job)?;
    if state.reverse.is_empty() {
        return Ok(());
    }
    let columns = applied_columns(context, backends).await?;
    let (control, running) = streams(
        store,
        &state,
        context,
        backends,
        &columns,
        Direction::Reverse,
    )?;
    let sources = stream_sources(&state, Direction::Reverse);
    beside_streams(
        &control,
        running,
        follow(&control, backends, &sources, until),
    )
    .await
}

/// Updates the job's proxy list when the command gave one.
fn store_proxies(store: &StateStore, job: &str, proxies: &[String]) -> Result<(), MigrateError> {
    if !proxies.is_empty() {
        store.update(job, |s| s.proxies = proxies.to_vec())?;
    }
    Ok(())
}

/// `cutover <job>`: the forward streams from their saved positions, the
/// switch, then (with `follow`) the reverse stream until a signal.
pub async fn cutover(
    store: &StateStore,
    job: &str,
    request: &SwitchRequest,
) -> Result<(), MigrateError> {
    let _claim = store.claim(job)?;
    with_retries(job, "cutover", request.retries, || async {
        let (state, context, backends) = switch_job(store, job, request, Command::Cutover)?;
        let result = cutover_and_follow(store, &state, &context, &backends, request).await;
        backends.disconnect().await;
        result
    })
    .await
}

/// What a switch needs once the job's phase allows `command`: its state,
/// rules and connections; the command's proxy list (if any) stored in the
/// job.
fn switch_job(
    store: &StateStore,
    job: &str,
    request: &SwitchRequest,
    command: Command,
) -> Result<(JobState, JobContext, Backends), MigrateError> {
    let state = store.load(job)?;
    ensure(job, command, state.phase)?;
    store_proxies(store, job, &request.proxies)?;
    let context = JobContext::of(&state)?;
    let backends = context.backends(&state.options);
    Ok((state, context, backends))
}

async fn cutover_and_follow(
    store: &StateStore,
    state: &JobState,
    context: &JobContext,
    backends: &Backends,
    request: &SwitchRequest,
) -> Result<(), MigrateError> {
    let job = state.id.as_str();
    match state.mode {
        Mode::Extend => cut_over(store, job, context, backends, None, request.bounds).await?,
        Mode::Rebuild => {
            let columns = applied_columns(context, backends).await?;
            let (control, running) = streams(
                store,
                state,
                context,
                backends,
                &columns,
                Direction::Forward,
            )?;
            let switch = cut_over(
                store,
                job,
                context,
                backends,
                Some(&control),
                request.bounds,
            );
            beside_streams(&control, running, switch).await?;
        }
    }
    if request.follow {
        follow_reverse(store, job, context, backends, Until::Shutdown).await?;
    }
    Ok(())
}

/// `rollback <job>`: the reverse streams brought to the final positions,
/// the tables renamed back, the old rules activated.
pub async fn rollback(
    store: &StateStore,
    job: &str,
    request: &SwitchRequest,
) -> Result<(), MigrateError> {
    let _claim = store.claim(job)?;
    with_retries(job, "rollback", request.retries, || async {
        let (state, context, backends) = switch_job(store, job, request, Command::Rollback)?;
        let result = rollback_with_streams(store, &state, &context, &backends, request).await;
        backends.disconnect().await;
        result
    })
    .await
}

async fn rollback_with_streams(
    store: &StateStore,
    state: &JobState,
    context: &JobContext,
    backends: &Backends,
    request: &SwitchRequest,
) -> Result<(), MigrateError> {
    let job = state.id.as_str();
    match state.mode {
        Mode::Extend => {
            refuse_filled_new_tables(state, backends).await?;
            roll_back(store, job, context, backends, None, request.bounds).await
        }
        Mode::Rebuild => {
            let columns = applied_columns(context, backends).await?;
            let (control, running) = streams(
                store,
                state,
                context,
                backends,
                &columns,
                Direction::Reverse,
            )?;
            let switch = roll_back(
                store,
                job,
                context,
                backends,
                Some(&control),
                request.bounds,
            );
            beside_streams(&control, running, switch).await
        }
    }
}

/// In an extend the old rules have no place for rows written to the new
/// tables since the cutover: rolling back would strand them.
async fn refuse_filled_new_tables(
    state: &JobState,
    backends: &Backends,
) -> Result<(), MigrateError> {
    for target in &state.targets {
        let mut conn = backends.conn(&target.data_source).await?;
        let rows = row_count(&mut conn, &target.table).await?;
        if rows > 0 {
            return Err(MigrateError::Switch(
                state.id.clone(),
                format!(
                    "cannot roll back: {}.{} holds {rows} rows written since the cutover, \
                     which the old rules cannot reach",
                    target.data_source, target.table
                ),
            ));
        }
    }
    Ok(())
}

/// Brings back a job whose switch the migrator did not finish (it was
/// killed): when no data source renamed its tables yet, nothing switched
/// (proxies activate only after the renames; their pauses lift by their
/// lease), so the job returns to the phase before the switch. Otherwise a
/// person must look: the error says so. Returns the phase to go on from.
pub async fn recover_interrupted(
    store: &StateStore,
    state: &JobState,
    context: &JobContext,
    backends: &Backends,
) -> Result<Phase, MigrateError> {
    let back_to = match state.phase {
        Phase::CuttingOver => Phase::Ready,
        Phase::RollingBack => Phase::CutOver,
        phase => return Ok(phase),
    };
    let stuck = |why: &str| {
        MigrateError::Switch(
            state.id.clone(),
            format!(
                "the migrator stopped in the middle of a switch (phase {}): {why}; check which \
                 rules the proxies serve and which tables carry the `__sgold` and `__sgnew` \
                 suffixes before going on",
                state.phase
            ),
        )
    };
    if state.mode == Mode::Extend {
        return Err(stuck(
            "an extend renames nothing, so whether proxies switched is unknown",
        ));
    }
    for (ds, pairs) in cutover_renames(&context.layout, state.mode) {
        let renames = match state.phase {
            Phase::CuttingOver => pairs,
            _ => inverse(&pairs),
        };
        let Some(marker) = swap_marker(&renames) else {
            continue;
        };
        let mut conn = backends.conn(&ds).await?;
        let found = has_table(&mut conn, marker)
            .await
            .context(|| format!("looking for {ds}.{marker}"))?;
        if found {
            return Err(stuck(&format!(
                "{ds} already renamed its tables ({marker} exists)"
            )));
        }
    }
    let note = format!(
        "the {} was interrupted before any table was renamed: back to {back_to}",
        if back_to == Phase::Ready {
            "cutover"
        } else {
            "rollback"
        }
    );
    store.update(&state.id, |s| {
        s.phase = back_to;
        s.record_error(note.clone());
    })?;
    println!("{}: {note}", state.id);
    Ok(back_to)
}

/// `complete <job>`: after a cutover, drops the retired old tables; after
/// a rollback, the tables the job created. Refused in any other phase.
pub async fn complete(store: &StateStore, job: &str) -> Result<(), MigrateError> {
    let _claim = store.claim(job)?;
    let state = store.load(job)?;
    ensure(job, Command::Complete, state.phase)?;
    let context = JobContext::of(&state)?;
    let backends = context.backends(&state.options);
    // Allowed after a cutover (the old tables retire) or a rollback (the
    // new ones go).
    let result = if state.phase == Phase::CutOver {
        drop_retired(&state, &context, &backends).await
    } else {
        drop_targets(store, &state, &context, &backends).await
    };
    backends.disconnect().await;
    result?;
    store.update(job, |s| {
        s.phase = Phase::Completed;
        s.reverse.clear();
    })?;
    println!("{job}: completed; start a new job for another change");
    Ok(())
}

async fn drop_retired(
    state: &JobState,
    context: &JobContext,
    backends: &Backends,
) -> Result<(), MigrateError> {
    for node in retired_tables(&context.layout, state.mode) {
        let mut conn = backends.conn(&node.data_source).await?;
        conn.query_drop(format!("DROP TABLE IF EXISTS {}", ident(&node.table)))
            .await
            .context(|| format!("dropping {node}"))?;
        tracing::debug!(job = state.id, %node, "dropped");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::tests::{rules, users_config};

    #[test]
    fn cutover_swaps_each_name_in_use_and_leaves_new_names_alone() {
        let (old, new) = (rules(&users_config(4, 16)), rules(&users_config(4, 32)));
        let layout = Layout::new("users", &old, &new);
        let renames = cutover_renames(&layout, Mode::Rebuild);
        assert_eq!(renames.len(), 4);
        let ds1 = &renames["ds1"];
        assert_eq!(ds1.len(), 32, "16 tables, two renames each");
        assert_eq!(
            ds1[..2],
            [
                ("users_0".to_string(), "users_0__sgold".to_string()),
                ("users_0__sgnew".to_string(), "users_0".to_string())
            ]
        );
        assert!(!ds1.iter().any(|(from, _)| from == "users_20"));
        let retired = retired_tables(&layout, Mode::Rebuild);
        assert_eq!(retired.len(), 64);
        assert!(retired.contains(&DataNode::new("ds3", "users_15__sgold")));
        assert!(cutover_renames(&layout, Mode::Extend).is_empty());

        // New data sources: only ds0..ds3 rename.
        let layout = Layout::new("users", &old, &rules(&users_config(8, 16)));
        let renames = cutover_renames(&layout, Mode::Rebuild);
        assert_eq!(
            renames.keys().collect::<Vec<_>>(),
            ["ds0", "ds1", "ds2", "ds3"]
        );
    }
}
