//! The job state: one JSON file per job in the state directory, written
//! atomically (temp file, fsync, rename, fsync of the directory), so that a
//! job survives the migrator being killed and any data source being down.
//! Writers read-modify-write under a short lock, so that a process copying
//! and another verifying the same job never undo each other's fields; the
//! process running a job's copy holds a run lock for as long as it runs.

use crate::layout::Mode;
use crate::values::Key;
use serde::{Deserialize, Serialize};
use shardgate_cdc::BinlogPosition;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};
use thiserror::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Planned,
    Creating,
    Copying,
    CatchingUp,
    Verifying,
    Ready,
    CuttingOver,
    CutOver,
    RollingBack,
    RolledBack,
    Completed,
    Failed,
    Cancelled,
}

impl Phase {
    /// Phases in which the new layout serves (or is becoming) the live
    /// table: its tables must not be dropped.
    pub fn is_past_cutover(self) -> bool {
        matches!(
            self,
            Phase::CuttingOver | Phase::CutOver | Phase::RollingBack | Phase::Completed
        )
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        f.write_str(&text)
    }
}

/// How the copy runs; kept in the state so that `resume` runs it alike.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyOptions {
    pub batch_size: usize,
    pub parallelism: usize,
    /// Copying from a data source waits while one of its replicas is
    /// further behind than this.
    pub max_replica_lag_secs: u64,
    /// A pause after each batch, to lighten the load on busy sources.
    pub pause_ms: u64,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            batch_size: 1000,
            parallelism: 4,
            max_replica_lag_secs: 5,
            pause_ms: 0,
        }
    }
}

/// An old-layout table the job copies from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceTable {
    pub data_source: String,
    pub table: String,
    /// Rows when its copy started.
    pub rows_total: u64,
    pub rows_copied: u64,
    /// The last key copied: the copy continues after it.
    pub cursor: Option<Key>,
    pub done: bool,
}

/// A table the job creates (and `cancel` drops).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetTable {
    pub data_source: String,
    pub table: String,
    pub created: bool,
}

/// A source primary's binlog positions: where catch-up starts (recorded
/// before the copy), and how far it has applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrimaryState {
    pub data_source: String,
    pub start: Option<BinlogPosition>,
    /// `@@gtid_binlog_pos` at `start`, for display.
    pub start_gtid: Option<String>,
    pub applied: Option<BinlogPosition>,
}

/// The current (or last) run of the copy, for its rate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyRun {
    pub started_at_ms: u64,
    pub rows_at_start: u64,
    /// When its last batch was saved: the rate counts the time the copy
    /// ran, not what came after it.
    #[serde(default)]
    pub last_batch_at_ms: Option<u64>,
}

/// When the job entered a phase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseEntry {
    pub phase: Phase,
    pub at_ms: u64,
}

/// What holds the job back right now, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// The data source it concerns.
    pub source: String,
    pub reason: String,
    pub since_ms: u64,
}

/// The outcome of the last `verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    pub at_ms: u64,
    /// After the cutover: the old layout's tables against the new ones.
    #[serde(default)]
    pub after_cutover: bool,
    pub chunks: usize,
    pub source_rows: u64,
    pub target_rows: u64,
    pub missing: usize,
    pub extra: usize,
    pub different: usize,
    pub misplaced: usize,
}

impl Verification {
    pub fn is_clean(&self) -> bool {
        self.missing + self.extra + self.different + self.misplaced == 0
    }
}

/// Which way a change stream carries changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Before cutover: old layout -> new layout (catch-up).
    Forward,
    /// After cutover: new layout -> the old layout's `__sgold` tables,
    /// which keeps rollback possible.
    Reverse,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Forward => "catch-up",
            Direction::Reverse => "reverse stream",
        })
    }
}

/// A switch of the proxies between layouts (a cutover or a rollback).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchRecord {
    pub at_ms: u64,
    /// The longest time a proxy held the table's writes (pause to resume).
    pub longest_pause_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobError {
    pub at_ms: u64,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobState {
    pub id: String,
    /// The logical table.
    pub table: String,
    pub mode: Mode,
    pub phase: Phase,
    pub from_path: String,
    pub to_path: String,
    /// Both configurations' text as the job started, so that a resumed
    /// job runs under the same rules whatever happened to the files.
    pub from_config: String,
    pub to_config: String,
    pub options: CopyOptions,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    pub targets: Vec<TargetTable>,
    pub sources: Vec<SourceTable>,
    pub primaries: Vec<PrimaryState>,
    pub copy_run: Option<CopyRun>,
    pub verification: Option<Verification>,
    pub errors: Vec<JobError>,
    /// The admin URLs of the proxies the cutover switches.
    #[serde(default)]
    pub proxies: Vec<String>,
    /// After cutover: the new layout's data sources, with the positions
    /// the reverse stream (new layout -> old) starts from and has applied.
    #[serde(default)]
    pub reverse: Vec<PrimaryState>,
    #[serde(default)]
    pub cutover: Option<SwitchRecord>,
    #[serde(default)]
    pub rollback: Option<SwitchRecord>,
    /// Every phase the job entered, in order (kept by [`StateStore::update`]).
    #[serde(default)]
    pub phases: Vec<PhaseEntry>,
    /// What holds it back now (a lagging replica, ...), if anything.
    #[serde(default)]
    pub held: Option<Hold>,
}

impl JobState {
    /// The rows to copy, re-estimated as the copy goes: a finished table
    /// counts what it copied, one being copied at least that (rows written
    /// during the copy are copied too).
    pub fn rows_total(&self) -> u64 {
        self.sources
            .iter()
            .map(|s| {
                if s.done {
                    s.rows_copied
                } else {
                    s.rows_total.max(s.rows_copied)
                }
            })
            .sum()
    }

    pub fn rows_copied(&self) -> u64 {
        self.sources.iter().map(|s| s.rows_copied).sum()
    }

    pub fn source_mut(&mut self, data_source: &str, table: &str) -> Option<&mut SourceTable> {
        self.sources
            .iter_mut()
            .find(|s| s.data_source == data_source && s.table == table)
    }

    pub fn primary_mut(&mut self, data_source: &str) -> Option<&mut PrimaryState> {
        self.primaries
            .iter_mut()
            .find(|p| p.data_source == data_source)
    }

    /// The source primaries of a change stream and their positions.
    pub fn stream_sources(&self, direction: Direction) -> &[PrimaryState] {
        match direction {
            Direction::Forward => &self.primaries,
            Direction::Reverse => &self.reverse,
        }
    }

    pub fn stream_source_mut(
        &mut self,
        direction: Direction,
        data_source: &str,
    ) -> Option<&mut PrimaryState> {
        let list = match direction {
            Direction::Forward => &mut self.primaries,
            Direction::Reverse => &mut self.reverse,
        };
        list.iter_mut().find(|p| p.data_source == data_source)
    }

    pub fn record_error(&mut self, message: String) {
        self.errors.push(JobError {
            at_ms: now_ms(),
            message,
        });
    }
}

#[derive(Debug, Error)]
pub enum StateError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a job state: {source}")]
    Json {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("no job `{job}` in {dir}")]
    NotFound { job: String, dir: String },
    #[error("job `{0}` already exists")]
    Exists(String),
    #[error("`{0}` is not a job id (letters, digits and '_' only)")]
    BadJobId(String),
    #[error("job `{0}` is being run by another migrator process")]
    Busy(String),
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// `migration_<table>_<millis>`.
pub fn job_id(table: &str, millis: u64) -> String {
    format!("migration_{table}_{millis}")
}

/// An exclusive `flock` on a file, released when dropped (or when the
/// process dies, so that a killed migrator leaves no stale lock).
pub struct FileLock {
    _file: File,
}

impl FileLock {
    fn acquire(path: &Path, wait: bool) -> Result<Option<FileLock>, StateError> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|source| io_error(path, source))?;
        let operation = if wait {
            libc::LOCK_EX
        } else {
            libc::LOCK_EX | libc::LOCK_NB
        };
        // SAFETY: flock on a descriptor this function owns; no memory is shared.
        let rc = unsafe { libc::flock(file.as_raw_fd(), operation) };
        if rc == 0 {
            return Ok(Some(FileLock { _file: file }));
        }
        let error = std::io::Error::last_os_error();
        if !wait && error.kind() == std::io::ErrorKind::WouldBlock {
            return Ok(None);
        }
        Err(io_error(path, error))
    }
}

fn io_error(path: &Path, source: std::io::Error) -> StateError {
    StateError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct StateStore {
    dir: PathBuf,
}

impl StateStore {
    pub fn open(dir: impl Into<PathBuf>) -> Result<StateStore, StateError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
        Ok(StateStore { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn checked(job: &str) -> Result<&str, StateError> {
        let valid = !job.is_empty()
            && job
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if valid {
            Ok(job)
        } else {
            Err(StateError::BadJobId(job.to_string()))
        }
    }

    fn path(&self, job: &str, extension: &str) -> Result<PathBuf, StateError> {
        Ok(self
            .dir
            .join(format!("{}.{extension}", Self::checked(job)?)))
    }

    /// Writes a new job's state; refuses an id already used.
    pub fn create(&self, state: &JobState) -> Result<(), StateError> {
        let _lock = self.update_lock(&state.id)?;
        if self.path(&state.id, "json")?.exists() {
            return Err(StateError::Exists(state.id.clone()));
        }
        self.write(state)
    }

    pub fn load(&self, job: &str) -> Result<JobState, StateError> {
        let path = self.path(job, "json")?;
        let text = fs::read_to_string(&path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                StateError::NotFound {
                    job: job.to_string(),
                    dir: self.dir.display().to_string(),
                }
            } else {
                io_error(&path, source)
            }
        })?;
        serde_json::from_str(&text).map_err(|source| StateError::Json {
            path: path.display().to_string(),
            source,
        })
    }

    /// Reads the job's state, lets `change` modify it, and writes it back,
    /// all under the job's update lock. Returns what `change` returned.
    pub fn update<R>(
        &self,
        job: &str,
        change: impl FnOnce(&mut JobState) -> R,
    ) -> Result<(R, JobState), StateError> {
        let _lock = self.update_lock(job)?;
        let mut state = self.load(job)?;
        let phase = state.phase;
        let result = change(&mut state);
        state.updated_at_ms = now_ms();
        if state.phase != phase {
            state.phases.push(PhaseEntry {
                phase: state.phase,
                at_ms: state.updated_at_ms,
            });
        }
        self.write(&state)?;
        Ok((result, state))
    }

    /// Every job in the directory, newest first.
    pub fn list(&self) -> Result<Vec<JobState>, StateError> {
        let entries = fs::read_dir(&self.dir).map_err(|e| io_error(&self.dir, e))?;
        let mut jobs = Vec::new();
        for entry in entries {
            let path = entry.map_err(|e| io_error(&self.dir, e))?.path();
            let job = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"));
            if let Some(job) = job {
                jobs.push(self.load(job)?);
            }
        }
        jobs.sort_by_key(|job| std::cmp::Reverse(job.created_at_ms));
        Ok(jobs)
    }

    /// Claims the right to run the job's copy: fails with `Busy` while
    /// another process holds it.
    pub fn claim(&self, job: &str) -> Result<FileLock, StateError> {
        FileLock::acquire(&self.path(job, "run.lock")?, false)?
            .ok_or_else(|| StateError::Busy(job.to_string()))
    }

    fn update_lock(&self, job: &str) -> Result<FileLock, StateError> {
        FileLock::acquire(&self.path(job, "lock")?, true)?
            .ok_or_else(|| StateError::Busy(job.to_string()))
    }

    /// Temp file, fsync, rename over the old file, fsync of the directory:
    /// a reader sees the old state or the new one, never a torn one.
    fn write(&self, state: &JobState) -> Result<(), StateError> {
        let path = self.path(&state.id, "json")?;
        let temp = self.path(&state.id, "json.tmp")?;
        let text = serde_json::to_vec_pretty(state).map_err(|source| StateError::Json {
            path: path.display().to_string(),
            source,
        })?;
        let mut file = File::create(&temp).map_err(|e| io_error(&temp, e))?;
        file.write_all(&text).map_err(|e| io_error(&temp, e))?;
        file.sync_all().map_err(|e| io_error(&temp, e))?;
        fs::rename(&temp, &path).map_err(|e| io_error(&path, e))?;
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(|e| io_error(&self.dir, e))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "shardgate-migrator-{name}-{}-{}",
            std::process::id(),
            now_ms()
        ));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    pub fn sample(id: &str) -> JobState {
        JobState {
            id: id.into(),
            table: "users".into(),
            mode: Mode::Rebuild,
            phase: Phase::Copying,
            from_path: "a.toml".into(),
            to_path: "b.toml".into(),
            from_config: String::new(),
            to_config: String::new(),
            options: CopyOptions::default(),
            created_at_ms: 1,
            updated_at_ms: 1,
            targets: vec![],
            sources: vec![SourceTable {
                data_source: "ds0".into(),
                table: "users_0".into(),
                rows_total: 10,
                rows_copied: 4,
                cursor: Some(i128::from(u64::MAX)),
                done: false,
            }],
            primaries: vec![PrimaryState {
                data_source: "ds0".into(),
                start: Some(BinlogPosition {
                    file: "mariadb-bin.000001".into(),
                    pos: 328,
                }),
                start_gtid: Some("0-1-5".into()),
                applied: None,
            }],
            copy_run: None,
            verification: None,
            errors: vec![],
            proxies: vec![],
            reverse: vec![],
            cutover: None,
            rollback: None,
            phases: vec![],
            held: None,
        }
    }

    #[test]
    fn the_total_grows_with_rows_written_during_the_copy() {
        let mut state = sample("migration_users_1");
        state.sources[0].rows_total = 10;
        state.sources[0].rows_copied = 12;
        assert_eq!(state.rows_total(), 12);
        state.sources[0].rows_copied = 4;
        assert_eq!(state.rows_total(), 10);
        // A finished table counts what it copied (rows deleted meanwhile).
        state.sources[0].done = true;
        assert_eq!(state.rows_total(), 4);
    }

    #[test]
    fn phase_changes_are_timed_by_the_store() {
        let dir = temp_dir("phases");
        let store = StateStore::open(&dir).unwrap();
        store.create(&sample("migration_users_2")).unwrap();
        store
            .update("migration_users_2", |s| s.phase = Phase::CatchingUp)
            .unwrap();
        store
            .update("migration_users_2", |s| s.errors.clear())
            .unwrap();
        let state = store.load("migration_users_2").unwrap();
        let phases: Vec<Phase> = state.phases.iter().map(|p| p.phase).collect();
        assert_eq!(phases, vec![Phase::CatchingUp]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn states_round_trip_and_updates_persist() {
        let dir = temp_dir("state");
        let store = StateStore::open(&dir).unwrap();
        let state = sample("migration_users_1");
        store.create(&state).unwrap();
        assert!(matches!(store.create(&state), Err(StateError::Exists(_))));
        assert_eq!(store.load("migration_users_1").unwrap(), state);
        let (copied, after) = store
            .update("migration_users_1", |s| {
                s.sources[0].rows_copied += 3;
                s.phase = Phase::CatchingUp;
                s.rows_copied()
            })
            .unwrap();
        assert_eq!(copied, 7);
        assert_eq!(store.load("migration_users_1").unwrap(), after);
        assert_eq!(after.phase.to_string(), "catching_up");
        assert!(!dir.join("migration_users_1.json.tmp").exists());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn jobs_list_newest_first_and_ids_cannot_escape_the_directory() {
        let dir = temp_dir("list");
        let store = StateStore::open(&dir).unwrap();
        let mut old = sample("migration_users_1");
        old.created_at_ms = 1;
        let mut new = sample("migration_users_2");
        new.created_at_ms = 2;
        store.create(&old).unwrap();
        store.create(&new).unwrap();
        let ids: Vec<String> = store.list().unwrap().into_iter().map(|s| s.id).collect();
        assert_eq!(ids, ["migration_users_2", "migration_users_1"]);
        assert!(matches!(
            store.load("../etc/passwd"),
            Err(StateError::BadJobId(_))
        ));
        assert!(matches!(
            store.load("migration_x"),
            Err(StateError::NotFound { .. })
        ));
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_job_runs_in_one_process_at_a_time() {
        let dir = temp_dir("claim");
        let store = StateStore::open(&dir).unwrap();
        let held = store.claim("migration_users_3").unwrap();
        // flock is per open file description: a second claim fails even
        // from the same process.
        assert!(matches!(
            store.claim("migration_users_3"),
            Err(StateError::Busy(_))
        ));
        drop(held);
        store.claim("migration_users_3").unwrap();
        fs::remove_dir_all(dir).unwrap();
    }
}
