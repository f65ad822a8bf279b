//! The migrator's error type: what failed, with the data source, table or
//! file it failed on.

use crate::layout::RowRouteError;
use crate::lifecycle::Command;
use crate::proxies::ProxyError;
use crate::state::{Phase, StateError};
use shardgate_rules::ConfigError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum MigrateError {
    #[error("{context}: {source}")]
    Db {
        context: String,
        #[source]
        source: mysql_async::Error,
    },
    #[error("{path}: {source}")]
    ConfigFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Config {
        path: String,
        #[source]
        source: Box<ConfigError>,
    },
    #[error(transparent)]
    State(#[from] StateError),
    #[error("change capture on {data_source}: {source}")]
    Cdc {
        data_source: String,
        #[source]
        source: Box<shardgate_cdc::CdcError>,
    },
    #[error(transparent)]
    Proxy(#[from] ProxyError),
    #[error("{0}")]
    CatchUp(String),
    #[error("cannot watch for SIGINT/SIGTERM: {0}")]
    Signal(#[source] std::io::Error),
    #[error("job {0}: {1}")]
    Switch(String, String),
    /// `what`: "cutover" or "rollback".
    #[error(
        "{what} of job {job} failed and was undone (the layout that served before serves on): {reason}"
    )]
    SwitchUndone {
        what: &'static str,
        job: String,
        reason: String,
    },
    #[error(
        "{what} of job {job} failed and could NOT be fully undone: {reason}; undo problems: {undo}"
    )]
    SwitchStuck {
        what: &'static str,
        job: String,
        reason: String,
        undo: String,
    },
    #[error("verification of job {0} found differences (see `verify {0}`)")]
    Differences(String),
    #[error("data source `{0}` is declared in neither configuration")]
    UnknownDataSource(String),
    #[error("a row of {node} (key {key}) cannot be routed: {source}")]
    Route {
        node: String,
        key: String,
        #[source]
        source: Box<RowRouteError>,
    },
    #[error("{node}: {problem}")]
    Table { node: String, problem: String },
    #[error("the plan is refused:\n{0}")]
    Refused(String),
    /// A run of a job that failed on the way (a data source went down, a
    /// table changed): the state keeps everything saved so far.
    #[error("job {job} stopped in phase {phase}: {source}; {}", resume_hint(.job, *.phase))]
    Stopped {
        job: String,
        phase: Phase,
        #[source]
        source: Box<MigrateError>,
    },
    #[error(
        "job {job} is cancelled, but not all of its tables are dropped: {source}; \
         `cancel {job}` again drops the rest"
    )]
    CancelUnfinished {
        job: String,
        #[source]
        source: Box<MigrateError>,
    },
    #[error("job {job} is in phase {phase}: cannot {command}; {next}")]
    WrongPhase {
        job: String,
        phase: Phase,
        command: Command,
        next: &'static str,
    },
}

/// What an operator can do about a stopped job.
fn resume_hint(job: &str, phase: Phase) -> String {
    let resume = format!(
        "its state is kept: once the cause is fixed, `resume {job}` continues from the last \
         saved batch and positions"
    );
    if phase.is_past_cutover() {
        resume
    } else {
        format!("{resume} (or `cancel {job}` drops the tables it created)")
    }
}

impl MigrateError {
    pub fn config(path: impl Into<String>, source: ConfigError) -> MigrateError {
        MigrateError::Config {
            path: path.into(),
            source: Box::new(source),
        }
    }

    pub fn route(
        node: impl ToString,
        key: impl Into<String>,
        source: RowRouteError,
    ) -> MigrateError {
        MigrateError::Route {
            node: node.to_string(),
            key: key.into(),
            source: Box::new(source),
        }
    }
}

/// Adds what was being done to a database error.
pub trait DbContext<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T, MigrateError>;
}

impl<T> DbContext<T> for Result<T, mysql_async::Error> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T, MigrateError> {
        self.map_err(|source| MigrateError::Db {
            context: context(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stopped(phase: Phase) -> String {
        MigrateError::Stopped {
            job: "migration_users_1".into(),
            phase,
            source: Box::new(MigrateError::CatchUp("ds5 is down".into())),
        }
        .to_string()
    }

    #[test]
    fn a_stopped_job_names_its_phase_the_cause_and_what_to_do() {
        let copying = stopped(Phase::Copying);
        assert!(
            copying.starts_with("job migration_users_1 stopped in phase copying: ds5 is down; "),
            "{copying}"
        );
        assert!(
            copying.contains("`resume migration_users_1` continues"),
            "{copying}"
        );
        assert!(copying.contains("`cancel migration_users_1`"), "{copying}");
        // After cutover the new tables are live: no cancel.
        let cut_over = stopped(Phase::CutOver);
        assert!(cut_over.contains("phase cut_over"), "{cut_over}");
        assert!(!cut_over.contains("cancel"), "{cut_over}");
    }
}
