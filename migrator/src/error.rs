//! The migrator's error type: what failed, with the data source, table or
//! file it failed on.

use crate::layout::RowRouteError;
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
    #[error(
        "cutover of job {job} failed and was undone (writes resumed on the old layout): {reason}"
    )]
    SwitchUndone { job: String, reason: String },
    #[error("cutover of job {job} failed and could NOT be fully undone: {reason}; undo problems: {undo}")]
    SwitchStuck {
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
    #[error("job {job} is in phase {phase}: cannot {action}")]
    WrongPhase {
        job: String,
        phase: Phase,
        action: &'static str,
    },
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
