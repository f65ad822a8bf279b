//! Running a job: `start` (plan, then create the job and run it), `resume`
//! (continue a job from its state file), and `cancel` (drop what the job
//! created). Running means: create the new-layout tables, record each
//! source primary's binlog position, then copy while the forward streams
//! apply the captured changes (catch-up), catch up, verify with the
//! streams still running, and reach `ready`; then, as asked, cut over, keep
//! following until a signal, or stop the streams (positions saved) and
//! exit. A job resumed after cutover runs its reverse stream.

use crate::backend::Backends;
use crate::catchup::{applied_columns, beside_streams, follow, streams, Control, Until};
use crate::copy::Copier;
use crate::cutover::{cut_over, follow_reverse, recover_interrupted, SwitchRequest};
use crate::error::{DbContext, MigrateError};
use crate::layout::{Layout, Mode, RowRouter};
use crate::lifecycle::{ensure, Command};
use crate::plan::plan_table;
use crate::progress::Progress;
use crate::retention;
use crate::schema::{create_statement, retarget_create, row_count, table_schema, TableSchema};
use crate::state::{
    job_id, now_ms, CopyOptions, CopyRun, Direction, JobState, Phase, PhaseEntry, PrimaryState,
    SourceTable, StateStore, TargetTable,
};
use crate::throttle::Throttle;
use crate::values::ident;
use crate::verify::{self, VerifyOptions};
use mysql_async::prelude::Queryable;
use shardgate_rules::config::Config;
use shardgate_rules::{DataNode, ShardingRules};
use std::collections::BTreeSet;
use std::time::Duration;

/// A job's configurations, rules and layout, as its state records them.
pub struct JobContext {
    pub from: Config,
    pub to: Config,
    pub old_rules: ShardingRules,
    pub new_rules: ShardingRules,
    pub layout: Layout,
}

/// Parses a configuration's text; `path` names it in errors.
pub fn parse_config(path: &str, text: &str) -> Result<Config, MigrateError> {
    let config_error = |source| MigrateError::config(path.to_string(), source);
    let config = Config::from_toml_str(text).map_err(config_error)?;
    ShardingRules::new(&config).map_err(config_error)?;
    Ok(config)
}

/// Reads and parses a configuration file; returns its text too.
pub fn read_config(path: &str) -> Result<(String, Config), MigrateError> {
    let text = std::fs::read_to_string(path).map_err(|source| MigrateError::ConfigFile {
        path: path.to_string(),
        source,
    })?;
    let config = parse_config(path, &text)?;
    Ok((text, config))
}

impl JobContext {
    pub fn of(state: &JobState) -> Result<JobContext, MigrateError> {
        let from = parse_config(&state.from_path, &state.from_config)?;
        let to = parse_config(&state.to_path, &state.to_config)?;
        JobContext::new(from, to, &state.table)
    }

    /// The context of moving `table` from `from`'s layout to `to`'s.
    pub fn new(from: Config, to: Config, table: &str) -> Result<JobContext, MigrateError> {
        let old_rules = ShardingRules::new(&from)
            .map_err(|source| MigrateError::config("old configuration", source))?;
        let new_rules = ShardingRules::new(&to)
            .map_err(|source| MigrateError::config("new configuration", source))?;
        let layout = Layout::new(table, &old_rules, &new_rules);
        Ok(JobContext {
            from,
            to,
            old_rules,
            new_rules,
            layout,
        })
    }

    /// The old layout's first table, the model whose columns every copy and
    /// check reads, with its schema; None when the old layout has no table.
    pub async fn model_schema(
        &self,
        backends: &Backends,
    ) -> Result<Option<(&DataNode, TableSchema)>, MigrateError> {
        let Some(model) = self.layout.old.first() else {
            return Ok(None);
        };
        let mut conn = backends.conn(&model.data_source).await?;
        let database = backends.database(&model.data_source)?;
        let schema = table_schema(&mut conn, database, &model.table)
            .await?
            .ok_or_else(|| MigrateError::Table {
                node: model.to_string(),
                problem: "the source table no longer exists".into(),
            })?;
        Ok(Some((model, schema)))
    }
}

/// The position of the model table's one integer primary-key column: the
/// copy cursor, the verify chunks and the applier go by it.
pub fn integer_key_of(model: &DataNode, schema: &TableSchema) -> Result<usize, MigrateError> {
    schema.integer_key().map_err(|problem| MigrateError::Table {
        node: model.to_string(),
        problem,
    })
}

impl JobContext {
    /// Pools for the job's data sources.
    pub fn backends(&self, options: &CopyOptions) -> Backends {
        Backends::new(&self.from, &self.to, options.parallelism * 2 + 2)
    }
}

/// What `start` needs besides the state directory.
pub struct StartRequest {
    pub from_path: String,
    pub to_path: String,
    pub table: String,
    pub options: CopyOptions,
    /// Proxy admin URLs the cutover switches (stored in the job).
    pub proxies: Vec<String>,
}

/// How far a run goes once the job is `ready`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Cut over once ready (with these proxies, or the job's).
    pub cutover: Option<SwitchRequest>,
    /// Keep the streams running until SIGINT/SIGTERM (after a cutover:
    /// the reverse stream).
    pub follow: bool,
    pub verify: VerifyOptions,
}

/// Plans the table, refuses what the plan refuses, creates the job (its id
/// is printed before anything else) and runs it.
pub async fn start(
    store: &StateStore,
    request: StartRequest,
    run_options: &RunOptions,
) -> Result<String, MigrateError> {
    let (from_text, from) = read_config(&request.from_path)?;
    let (to_text, to) = read_config(&request.to_path)?;
    let backends = Backends::new(&from, &to, 2);
    let planned = plan_table(&from, &to, &request.table, &backends).await;
    let retention = match &planned {
        Ok(plan) if plan.mode == Some(Mode::Rebuild) => {
            check_retention(&backends, &plan.source_data_sources(), plan.rows_to_copy).await
        }
        _ => Ok(()),
    };
    backends.disconnect().await;
    let plan = planned?;
    retention?;
    let Some(mode) = plan.mode else {
        return Err(MigrateError::Refused(plan.refusal_text()));
    };
    let old_rules = ShardingRules::new(&from)
        .map_err(|source| MigrateError::config(request.from_path.clone(), source))?;
    let new_rules = ShardingRules::new(&to)
        .map_err(|source| MigrateError::config(request.to_path.clone(), source))?;
    let layout = Layout::new(&request.table, &old_rules, &new_rules);
    let created_at_ms = now_ms();
    let sources: Vec<SourceTable> = match mode {
        Mode::Extend => vec![],
        Mode::Rebuild => layout
            .old
            .iter()
            .map(|node| SourceTable {
                data_source: node.data_source.clone(),
                table: node.table.clone(),
                rows_total: 0,
                rows_copied: 0,
                cursor: None,
                done: false,
            })
            .collect(),
    };
    let primaries: BTreeSet<&String> = sources.iter().map(|s| &s.data_source).collect();
    let state = JobState {
        id: job_id(&request.table, created_at_ms),
        table: request.table.clone(),
        mode,
        phase: Phase::Planned,
        from_path: request.from_path,
        to_path: request.to_path,
        from_config: from_text,
        to_config: to_text,
        options: request.options,
        created_at_ms,
        updated_at_ms: created_at_ms,
        targets: layout
            .tables_to_create(mode)
            .into_iter()
            .map(|node| TargetTable {
                data_source: node.data_source,
                table: node.table,
                created: false,
            })
            .collect(),
        primaries: primaries
            .into_iter()
            .map(|data_source| PrimaryState {
                data_source: data_source.clone(),
                start: None,
                start_gtid: None,
                applied: None,
            })
            .collect(),
        sources,
        copy_run: None,
        verification: None,
        errors: vec![],
        proxies: request.proxies,
        reverse: vec![],
        cutover: None,
        rollback: None,
        phases: vec![PhaseEntry {
            phase: Phase::Planned,
            at_ms: created_at_ms,
        }],
        held: None,
    };
    store.create(&state)?;
    println!(
        "job {} ({mode}, {} rows to copy)",
        state.id, plan.rows_to_copy
    );
    run(store, &state.id, run_options).await?;
    Ok(state.id)
}

/// Says how long each source primary keeps its binlogs, and warns where
/// that is short for a job of `rows`.
async fn check_retention(
    backends: &Backends,
    data_sources: &[String],
    rows: u64,
) -> Result<(), MigrateError> {
    let mut kept = Vec::new();
    for ds in data_sources {
        let retention = retention::retention_secs(backends, ds).await?;
        kept.push(format!("{ds} {}", retention::describe(retention)));
        if let Some(warning) = retention::warning(ds, retention, rows) {
            eprintln!("warning: {warning}");
        }
    }
    println!("binlogs: {}", kept.join(", "));
    Ok(())
}

/// Continues a job where its state says it stopped.
pub async fn resume(
    store: &StateStore,
    job: &str,
    run_options: &RunOptions,
) -> Result<(), MigrateError> {
    run(store, job, run_options).await
}

/// Runs the job's steps from its current phase. An error is recorded in
/// the state and the phase kept, so that `resume` retries from the last
/// saved batch and position.
async fn run(store: &StateStore, job: &str, options: &RunOptions) -> Result<(), MigrateError> {
    let _claim = store.claim(job)?;
    let state = store.load(job)?;
    ensure(job, Command::Resume, state.phase)?;
    if let Some(request) = &options.cutover {
        if !request.proxies.is_empty() {
            store.update(job, |s| s.proxies = request.proxies.clone())?;
        }
    }
    let context = JobContext::of(&state)?;
    let backends = context.backends(&state.options);
    let result = run_phase(store, &state, &context, &backends, options).await;
    backends.disconnect().await;
    match result {
        Ok(()) => Ok(()),
        // A failed switch recorded its own error.
        Err(error @ (MigrateError::SwitchUndone { .. } | MigrateError::SwitchStuck { .. })) => {
            Err(error)
        }
        // An outcome of verification, which the command line reports.
        Err(error @ MigrateError::Differences(_)) => {
            store.update(job, |s| s.record_error(error.to_string()))?;
            Err(error)
        }
        // Named with the phase it stopped in (the phase is kept, so that
        // `resume` carries on from there).
        Err(error) => {
            let phase = store.load(job).map_or(state.phase, |s| s.phase);
            let error = MigrateError::Stopped {
                job: job.to_string(),
                phase,
                source: Box::new(error),
            };
            store.update(job, |s| s.record_error(error.to_string()))?;
            Err(error)
        }
    }
}

async fn run_phase(
    store: &StateStore,
    state: &JobState,
    context: &JobContext,
    backends: &Backends,
    options: &RunOptions,
) -> Result<(), MigrateError> {
    let job = state.id.as_str();
    match recover_interrupted(store, state, context, backends).await? {
        Phase::CutOver => {
            let until = if options.follow {
                Until::Shutdown
            } else {
                Until::CaughtUp
            };
            follow_reverse(store, job, context, backends, until).await
        }
        _ => run_steps(store, &store.load(job)?, context, backends, options).await,
    }
}

async fn run_steps(
    store: &StateStore,
    state: &JobState,
    context: &JobContext,
    backends: &Backends,
    options: &RunOptions,
) -> Result<(), MigrateError> {
    let job = state.id.as_str();
    if matches!(state.phase, Phase::Planned | Phase::Creating) {
        store.update(job, |s| s.phase = Phase::Creating)?;
        create_tables(store, state, context, backends).await?;
        let next = match state.mode {
            Mode::Extend => Phase::Ready,
            Mode::Rebuild => Phase::Copying,
        };
        store.update(job, |s| s.phase = next)?;
        if next == Phase::Ready {
            println!("{job}: new tables created; nothing to copy (extend): ready for cutover");
        }
    }
    if state.mode == Mode::Extend {
        if let Some(request) = &options.cutover {
            cut_over(store, job, context, backends, None, request.bounds).await?;
        }
        return Ok(());
    }
    record_start(store, job, backends).await?;
    let columns = applied_columns(context, backends).await?;
    let state = store.load(job)?;
    let (control, running) = streams(
        store,
        &state,
        context,
        backends,
        &columns,
        Direction::Forward,
    )?;
    let forward = drive_forward(store, job, context, backends, &control, options);
    beside_streams(&control, running, forward).await?;
    if options.follow && store.load(job)?.phase == Phase::CutOver {
        follow_reverse(store, job, context, backends, Until::Shutdown).await?;
    }
    Ok(())
}

/// Verifications of a job under live writes before its differences count:
/// a stream that fell behind for a moment (a busy primary) makes rows
/// differ that the next catch-up settles.
const VERIFY_ATTEMPTS: u32 = 3;

/// Catches up, then verifies with the streams running; differences send
/// it back to catching up and verifying again, up to [`VERIFY_ATTEMPTS`]
/// times. Leaves the job `ready` when clean.
async fn verify_caught_up(
    store: &StateStore,
    job: &str,
    context: &JobContext,
    backends: &Backends,
    streams: &Control,
    sources: &[String],
    options: &RunOptions,
) -> Result<verify::VerifyReport, MigrateError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        follow(streams, backends, sources, Until::CaughtUp).await?;
        store.update(job, |s| s.phase = Phase::Verifying)?;
        let state = store.load(job)?;
        let streams = verify::Streams {
            control: streams,
            sources,
        };
        let report = verify::verify(
            &state,
            context,
            backends,
            &options.verify,
            false,
            Some(streams),
        )
        .await?;
        let clean = report.is_clean();
        store.update(job, |s| {
            s.verification = Some(report.summary());
            s.phase = if clean {
                Phase::Ready
            } else {
                Phase::CatchingUp
            };
        })?;
        if clean {
            return Ok(report);
        }
        if attempt >= VERIFY_ATTEMPTS {
            print!("{}", verify::render_text(job, &report));
            return Err(MigrateError::Differences(job.to_string()));
        }
        let summary = report.summary();
        println!(
            "{job}: verification {attempt} found {} differing rows while the sources change; \
             catching up and verifying again",
            summary.missing + summary.extra + summary.different + summary.misplaced
        );
    }
}

/// `verify <job>`: in phase ready (and after a rollback), the forward
/// streams run from their saved positions while the new layout is compared
/// with the old, live one (after a rollback, this shows it lost nothing:
/// a row the new layout had and the old one lacks is a difference); after
/// the cutover, the reverse streams while the old layout's tables (which
/// keep a rollback lossless) are compared with the new, live ones. Either
/// way the streams catch up first, and a differing row is compared again
/// (`rechecks` times) locked on the source side once the streams applied
/// every earlier change, so rows the application changes meanwhile are not
/// counted as differences; the report is stored with
/// the job, whose phase stays.
pub async fn verify_ready(
    store: &StateStore,
    job: &str,
    options: &VerifyOptions,
) -> Result<verify::VerifyReport, MigrateError> {
    let _claim = store.claim(job)?;
    let state = store.load(job)?;
    ensure(job, Command::Verify, state.phase)?;
    let after_cutover = state.phase == Phase::CutOver;
    let context = JobContext::of(&state)?;
    let backends = context.backends(&state.options);
    let result = async {
        if state.mode == Mode::Extend {
            // Rows stay where they are: nothing streams, only placement
            // is checked.
            let report = verify::verify(&state, &context, &backends, options, false, None).await?;
            store.update(job, |s| s.verification = Some(report.summary()))?;
            return Ok(report);
        }
        let direction = if after_cutover {
            Direction::Reverse
        } else {
            Direction::Forward
        };
        let columns = applied_columns(&context, &backends).await?;
        let (control, running) = streams(store, &state, &context, &backends, &columns, direction)?;
        let sources: Vec<String> = state
            .stream_sources(direction)
            .iter()
            .map(|p| p.data_source.clone())
            .collect();
        let work = async {
            follow(&control, &backends, &sources, Until::CaughtUp).await?;
            let streams = verify::Streams {
                control: &control,
                sources: &sources,
            };
            let report = verify::verify(
                &state,
                &context,
                &backends,
                options,
                after_cutover,
                Some(streams),
            )
            .await?;
            store.update(job, |s| s.verification = Some(report.summary()))?;
            Ok(report)
        };
        beside_streams(&control, running, work).await
    }
    .await;
    backends.disconnect().await;
    result
}

/// Beside the running forward streams: copy, catch up, verify, then cut
/// over or follow as asked.
async fn drive_forward(
    store: &StateStore,
    job: &str,
    context: &JobContext,
    backends: &Backends,
    streams: &Control,
    options: &RunOptions,
) -> Result<(), MigrateError> {
    let state = store.load(job)?;
    let sources: Vec<String> = state
        .primaries
        .iter()
        .map(|p| p.data_source.clone())
        .collect();
    if state.phase == Phase::Copying {
        copy(store, job, context, backends).await?;
        if let Some(failure) = streams.failure() {
            return Err(MigrateError::CatchUp(format!("catch-up failed: {failure}")));
        }
        store.update(job, |s| s.phase = Phase::CatchingUp)?;
        println!("{job}: copy complete; catching up");
    }
    // Verification is much quieter once the streams hold what the
    // primaries hold (they keep running while it compares).
    let report =
        verify_caught_up(store, job, context, backends, streams, &sources, options).await?;
    println!(
        "{job}: verified clean ({} rows): ready for cutover",
        report.source_rows
    );
    if let Some(request) = &options.cutover {
        cut_over(store, job, context, backends, Some(streams), request.bounds).await?;
    } else if options.follow {
        println!("{job}: following the source binlogs until SIGINT/SIGTERM");
        follow(streams, backends, &sources, Until::Shutdown).await?;
    }
    Ok(())
}

/// Creates every target table not created yet, from the first source
/// table's definition.
async fn create_tables(
    store: &StateStore,
    state: &JobState,
    context: &JobContext,
    backends: &Backends,
) -> Result<(), MigrateError> {
    let Some(model) = context.layout.old.first() else {
        return Ok(());
    };
    let mut conn = backends.conn(&model.data_source).await?;
    let create = create_statement(&mut conn, &model.table).await?;
    drop(conn);
    for target in state.targets.iter().filter(|t| !t.created) {
        let sql = retarget_create(&create, &model.table, &target.table).map_err(|problem| {
            MigrateError::Table {
                node: model.to_string(),
                problem,
            }
        })?;
        let mut conn = backends.conn(&target.data_source).await?;
        conn.query_drop(sql)
            .await
            .context(|| format!("creating {}.{}", target.data_source, target.table))?;
        tracing::debug!(
            job = state.id,
            data_source = target.data_source,
            table = target.table,
            "created"
        );
        mark_created(store, &state.id, target, true)?;
    }
    Ok(())
}

/// Records in the job whether the target table `target` exists.
fn mark_created(
    store: &StateStore,
    job: &str,
    target: &TargetTable,
    created: bool,
) -> Result<(), MigrateError> {
    store.update(job, |s| {
        if let Some(t) = s
            .targets
            .iter_mut()
            .find(|t| t.data_source == target.data_source && t.table == target.table)
        {
            t.created = created;
        }
    })?;
    Ok(())
}

/// Before the first row is copied: each source primary's binlog position
/// (catch-up replays from there) and each source table's row count. A
/// resumed copy keeps the positions recorded by the first run.
async fn record_start(
    store: &StateStore,
    job: &str,
    backends: &Backends,
) -> Result<(), MigrateError> {
    let state = store.load(job)?;
    for primary in state.primaries.iter().filter(|p| p.start.is_none()) {
        let (position, gtid) = backends.position(&primary.data_source).await?;
        tracing::info!(job, data_source = primary.data_source, %position, gtid, "catch-up start position");
        store.update(job, |s| {
            if let Some(p) = s.primary_mut(&primary.data_source) {
                p.start = Some(position);
                p.start_gtid = Some(gtid);
            }
        })?;
    }
    for source in state
        .sources
        .iter()
        .filter(|s| s.rows_total == 0 && !s.done && s.cursor.is_none())
    {
        let mut conn = backends.conn(&source.data_source).await?;
        let rows = row_count(&mut conn, &source.table).await?;
        store.update(job, |s| {
            if let Some(t) = s.source_mut(&source.data_source, &source.table) {
                t.rows_total = rows;
            }
        })?;
    }
    Ok(())
}

async fn copy(
    store: &StateStore,
    job: &str,
    context: &JobContext,
    backends: &Backends,
) -> Result<(), MigrateError> {
    let (_, state) = store.update(job, |s| {
        s.copy_run = Some(CopyRun {
            started_at_ms: now_ms(),
            rows_at_start: s.rows_copied(),
            last_batch_at_ms: None,
        })
    })?;
    let Some((model, schema)) = context.model_schema(backends).await? else {
        return Ok(());
    };
    let key_index = integer_key_of(model, &schema)?;
    let columns = schema.column_names();
    let sharding = context.new_rules.sharding_columns(&state.table);
    let mut placing_columns = vec![columns[key_index].clone()];
    placing_columns.extend(
        sharding
            .iter()
            .filter(|c| !c.eq_ignore_ascii_case(&columns[key_index]))
            .map(|c| c.to_string()),
    );
    let placer = RowRouter::new(
        &state.table,
        &sharding,
        &placing_columns,
        &schema.kinds_of(&sharding),
    )
    .map_err(|source| MigrateError::route(model.to_string(), "-", source))?;
    let progress = Progress::start(job, state.rows_copied(), state.rows_total());
    let copier = Copier {
        job,
        table: &state.table,
        store,
        backends,
        new_rules: &context.new_rules,
        layout: &context.layout,
        mode: state.mode,
        columns,
        key_index,
        placing_columns,
        placer,
        batch_size: state.options.batch_size.max(1),
        parallelism: state.options.parallelism.max(1),
        pause: Duration::from_millis(state.options.pause_ms),
        throttle: Throttle::new(state.options.max_replica_lag_secs),
        progress: &progress,
    };
    let result = copier.copy_all(state.sources.clone()).await;
    progress.finish();
    result
}

/// Drops the tables the job created and marks it cancelled; refused once
/// cutover began (the new tables may then be the live ones).
pub async fn cancel(store: &StateStore, job: &str) -> Result<(), MigrateError> {
    let _claim = store.claim(job)?;
    let state = store.load(job)?;
    ensure(job, Command::Cancel, state.phase)?;
    let context = JobContext::of(&state)?;
    // Cancelled from here on, even if a data source is down and some
    // tables stay: a resumed copy would write into a half-dropped layout,
    // and `cancel` again drops what is left.
    store.update(job, |s| s.phase = Phase::Cancelled)?;
    let backends = context.backends(&state.options);
    let result = drop_targets(store, &state, &context, &backends).await;
    backends.disconnect().await;
    if let Err(error) = result {
        let error = MigrateError::CancelUnfinished {
            job: job.to_string(),
            source: Box::new(error),
        };
        store.update(job, |s| s.record_error(error.to_string()))?;
        return Err(error);
    }
    println!("{job}: cancelled; {} tables dropped", state.targets.len());
    Ok(())
}

/// Drops the tables the job created, each marked as no longer created in
/// the state once it is gone.
pub(crate) async fn drop_targets(
    store: &StateStore,
    state: &JobState,
    context: &JobContext,
    backends: &Backends,
) -> Result<(), MigrateError> {
    for target in &state.targets {
        let node = shardgate_rules::DataNode::new(&target.data_source, &target.table);
        // Never drop an old-layout table, whatever the state file says.
        if context.layout.is_old_node(&node) {
            return Err(MigrateError::Table {
                node: node.to_string(),
                problem: "is a source table of the job; refusing to drop it".into(),
            });
        }
        let mut conn = backends.conn(&target.data_source).await?;
        conn.query_drop(format!("DROP TABLE IF EXISTS {}", ident(&target.table)))
            .await
            .context(|| format!("dropping {node}"))?;
        mark_created(store, &state.id, target, false)?;
        tracing::debug!(job = state.id, %node, "dropped");
    }
    Ok(())
}
