//! Reloading the configuration file while serving (`POST /api/reload`,
//! SIGHUP): the new file is validated whole; if it is invalid the old
//! configuration keeps serving and the errors are returned. A valid one
//! becomes a new version: unchanged pools are kept, new statements use it,
//! and sessions in a transaction finish theirs on the old one first.
//! Users (passwords, `databases`, `read_only`) apply to new logins: a
//! session keeps the access it logged in with (see `access`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use shardgate_rules::config::Config;
use shardgate_rules::ConfigError;
use tracing::{info, warn};

use crate::alerts::Alerts;
use crate::backend::Backend;
use crate::proxy::{build_shared, Proxy, Shared};

/// Why a configuration could not be (re)loaded.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("no configuration file to reload: this proxy was started from a config value")]
    NoFile,
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config {}: {source}", path.display())]
    Invalid {
        path: PathBuf,
        source: Box<ConfigError>,
    },
    #[error(
        "{key} cannot change while running ('{old}' -> '{new}'); restart ShardGate to apply it"
    )]
    NeedsRestart {
        key: &'static str,
        old: String,
        new: String,
    },
    #[error("invalid config: {0}")]
    InvalidText(Box<ConfigError>),
    #[error("cannot apply the new config: {0}")]
    Build(String),
}

/// A reload that took effect.
#[derive(Debug, Clone)]
pub struct Reloaded {
    pub version: u64,
    /// What differs from the previous version, one line each.
    pub changes: Vec<String>,
}

/// Reads and validates a configuration file.
pub fn read_config(path: &Path) -> Result<Config, ReloadError> {
    let text = std::fs::read_to_string(path).map_err(|source| ReloadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Config::from_toml_str(&text).map_err(|source| ReloadError::Invalid {
        path: path.to_path_buf(),
        source: Box::new(source),
    })
}

impl<B: Backend> Proxy<B> {
    /// Re-reads the configuration file and makes it current.
    pub async fn reload(&self) -> Result<Reloaded, ReloadError> {
        let _one_at_a_time = self.reload_guard().await;
        let result = self.try_reload();
        match &result {
            Ok(r) => info!(version = r.version, changes = ?r.changes, "configuration reloaded"),
            Err(e) => warn!("configuration not reloaded, the old one keeps serving: {e}"),
        }
        result
    }

    fn try_reload(&self) -> Result<Reloaded, ReloadError> {
        let path = self.config_path().ok_or(ReloadError::NoFile)?;
        let config = read_config(path)?;
        let old = self.current();
        let changes = check_replacement(&old.config, &config)?;
        let shared = self.next_version(&old, config)?;
        let version = shared.version;
        self.install(Arc::new(shared));
        if let Some(staged) = self.discard_staged() {
            // Its version number is now taken by the file's configuration.
            warn!(
                staged,
                "the reload discarded the staged rules version; stage it again"
            );
        }
        Ok(Reloaded { version, changes })
    }

    /// The version after `old`, built from `config` (already checked with
    /// [`check_replacement`]); not yet in force.
    pub(crate) fn next_version(
        &self,
        old: &Shared<B>,
        config: Config,
    ) -> Result<Shared<B>, ReloadError> {
        let alerts = if old.config.alerts.webhook == config.alerts.webhook {
            old.alerts.clone()
        } else {
            Alerts::new(old.metrics.clone(), config.alerts.webhook.clone())
        };
        build_shared(
            config,
            old.version + 1,
            Some(old),
            self.context(),
            old.metrics.clone(),
            alerts,
        )
        .map_err(|e| ReloadError::Build(e.to_string()))
    }
}

/// Whether `new` may replace `old` while running (the listeners stay);
/// what it changes, one line each.
pub(crate) fn check_replacement(old: &Config, new: &Config) -> Result<Vec<String>, ReloadError> {
    for (key, was, now) in [
        (
            "server.mysql_listen",
            &old.server.mysql_listen,
            &new.server.mysql_listen,
        ),
        (
            "server.admin_listen",
            &old.server.admin_listen,
            &new.server.admin_listen,
        ),
    ] {
        if was != now {
            return Err(ReloadError::NeedsRestart {
                key,
                old: was.clone(),
                new: now.clone(),
            });
        }
    }
    let threads = |c: &Config| {
        c.server
            .worker_threads
            .map_or_else(|| "one per CPU".to_owned(), |n| n.to_string())
    };
    if old.server.worker_threads != new.server.worker_threads {
        return Err(ReloadError::NeedsRestart {
            key: "server.worker_threads",
            old: threads(old),
            new: threads(new),
        });
    }
    Ok(describe_changes(old, new))
}

/// Logical tables whose routing differs between two configurations: added,
/// removed or changed sharded tables, and tables that became or stopped
/// being broadcast.
pub fn tables_with_new_rules(old: &Config, new: &Config) -> Vec<String> {
    let mut tables: Vec<String> = old
        .tables
        .keys()
        .chain(new.tables.keys())
        .filter(|name| old.tables.get(*name) != new.tables.get(*name))
        .chain(
            old.broadcast
                .tables
                .iter()
                .filter(|t| !new.broadcast.tables.contains(t)),
        )
        .chain(
            new.broadcast
                .tables
                .iter()
                .filter(|t| !old.broadcast.tables.contains(t)),
        )
        .map(|t| t.to_ascii_lowercase())
        .collect();
    tables.sort();
    tables.dedup();
    tables
}

/// What differs between two configurations, for people.
fn describe_changes(old: &Config, new: &Config) -> Vec<String> {
    let mut changes = Vec::new();
    for (name, ds) in &new.data_sources {
        match old.data_sources.get(name) {
            None => changes.push(format!("data source {name} added ({})", ds.url)),
            Some(was) => {
                if was.url != ds.url {
                    changes.push(format!(
                        "data source {name}: primary {} -> {}",
                        was.url, ds.url
                    ));
                }
                if was.replicas != ds.replicas {
                    changes.push(format!("data source {name}: replicas changed"));
                }
                if was.pool != ds.pool {
                    changes.push(format!("data source {name}: pool settings changed"));
                }
                if was.read != ds.read {
                    changes.push(format!("data source {name}: read settings changed"));
                }
            }
        }
    }
    for name in old.data_sources.keys() {
        if !new.data_sources.contains_key(name) {
            changes.push(format!("data source {name} removed"));
        }
    }
    for (name, table) in &new.tables {
        match old.tables.get(name) {
            None => changes.push(format!("sharded table {name} added ({})", table.nodes)),
            Some(was) if was != table => changes.push(format!("sharded table {name} changed")),
            Some(_) => {}
        }
    }
    for name in old.tables.keys() {
        if !new.tables.contains_key(name) {
            changes.push(format!("sharded table {name} removed"));
        }
    }
    let sections = [
        ("broadcast tables", old.broadcast != new.broadcast),
        ("binding tables", old.binding != new.binding),
        ("snowflake", old.snowflake != new.snowflake),
        ("alerts", old.alerts != new.alerts),
        ("users", old.server.users != new.server.users),
        (
            "server settings",
            old.server.default_data_source != new.server.default_data_source
                || old.server.max_allowed_packet != new.server.max_allowed_packet
                || old.server.max_long_data_per_session != new.server.max_long_data_per_session
                || old.server.max_prepared_statements != new.server.max_prepared_statements
                || old.server.wait_timeout_ms != new.server.wait_timeout_ms
                || old.server.max_user_connections != new.server.max_user_connections
                || old.server.max_connect_errors != new.server.max_connect_errors
                || old.server.host_block_ms != new.server.host_block_ms
                || old.server.read_write_splitting != new.server.read_write_splitting
                || old.server.read_consistency != new.server.read_consistency
                || old.server.transaction_reads != new.server.transaction_reads
                || old.server.admin_token != new.server.admin_token,
        ),
    ];
    for (what, changed) in sections {
        if changed {
            changes.push(format!("{what} changed"));
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::{check_replacement, tables_with_new_rules, ReloadError};
    use shardgate_rules::config::Config;

    const SEED: &str = include_str!("../../examples/wework.toml");

    #[test]
    fn re_ruled_tables_are_the_changed_added_and_removed_ones() {
        let old = Config::from_toml_str(SEED).unwrap();
        assert!(tables_with_new_rules(&old, &old).is_empty());
        let mut new = old.clone();
        let users = new.tables.remove("users").unwrap();
        new.tables.insert("members".into(), users);
        new.broadcast.tables.push("sys_extra".into());
        assert_eq!(
            tables_with_new_rules(&old, &new),
            ["members", "sys_extra", "users"]
        );
    }

    #[test]
    fn worker_threads_change_only_with_a_restart() {
        let old = Config::from_toml_str(SEED).unwrap();
        let mut new = old.clone();
        new.server.worker_threads = Some(1);
        let err = check_replacement(&old, &new).unwrap_err();
        assert!(
            matches!(
                err,
                ReloadError::NeedsRestart {
                    key: "server.worker_threads",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("'one per CPU' -> '1'"), "{err}");
        assert!(check_replacement(&old, &old).is_ok());
    }
}
