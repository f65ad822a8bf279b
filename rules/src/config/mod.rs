//! The configuration model: one TOML file, deserialised with serde
//! (`deny_unknown_fields` everywhere) and validated as a whole, so that a
//! loaded [`Config`] is one the proxy can run.

mod backend_url;
mod error;
mod table;

pub use backend_url::{BackendUrl, BackendUrlError};
pub(crate) use error::declared_list;
pub use error::{ConfigError, Problem};
pub use table::{AlgorithmConfig, KeyConfig, KeyGenerator, StrategyConfig, TableConfig};

use crate::datetime::parse_utc_millis;
use crate::route::ShardingRules;
use crate::snowflake::{Epoch, WorkerId};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use table::RawTableConfig;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub server: ServerConfig,
    /// Keyed by data source name (`ds0`), in name order.
    pub data_sources: BTreeMap<String, DataSourceConfig>,
    /// Sharded tables keyed by logical name.
    pub tables: BTreeMap<String, TableConfig>,
    pub broadcast: BroadcastConfig,
    /// Groups of sharded tables laid out alike, so that rows joined on
    /// their sharding columns sit on the same node (ShardingSphere's
    /// binding tables).
    pub binding: Vec<BindingConfig>,
    pub snowflake: SnowflakeConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    #[serde(default = "default_mysql_listen")]
    pub mysql_listen: String,
    #[serde(default = "default_admin_listen")]
    pub admin_listen: String,
    /// The logical database name clients see.
    pub database: String,
    /// Where tables named by no rule live.
    #[serde(default = "default_data_source")]
    pub default_data_source: String,
    /// Largest packet accepted from a client, in bytes.
    #[serde(default = "default_max_allowed_packet")]
    pub max_allowed_packet: usize,
    #[serde(default)]
    pub users: Vec<UserConfig>,
}

#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    #[serde(default)]
    pub password: String,
}

/// Redacts the password so that logging a config never leaks it.
impl fmt::Debug for UserConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserConfig")
            .field("name", &self.name)
            .field("password", &"***")
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSourceConfig {
    /// The primary: all writes go here.
    pub url: BackendUrl,
    /// Read replicas of the primary.
    #[serde(default)]
    pub replicas: Vec<BackendUrl>,
    #[serde(default)]
    pub pool: PoolConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    #[serde(default = "default_pool_max_size")]
    pub max_size: usize,
    #[serde(default = "default_acquire_timeout_ms")]
    pub acquire_timeout_ms: u64,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            max_size: default_pool_max_size(),
            acquire_timeout_ms: default_acquire_timeout_ms(),
        }
    }
}

/// One group of binding tables (`[[binding]] tables = ["a", "b"]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindingConfig {
    pub tables: Vec<String>,
}

/// Tables copied in full on every data source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BroadcastConfig {
    #[serde(default)]
    pub tables: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnowflakeConfig {
    pub epoch: Epoch,
    pub worker_id: WorkerId,
    /// How far the clock may step back before generation fails.
    pub max_clock_backward_ms: u64,
}

impl Default for SnowflakeConfig {
    fn default() -> Self {
        SnowflakeConfig {
            epoch: Epoch::DEFAULT,
            worker_id: WorkerId::default(),
            max_clock_backward_ms: DEFAULT_MAX_CLOCK_BACKWARD_MS,
        }
    }
}

const DEFAULT_MAX_CLOCK_BACKWARD_MS: u64 = 10;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    server: ServerConfig,
    #[serde(default)]
    data_sources: BTreeMap<String, DataSourceConfig>,
    #[serde(default)]
    tables: BTreeMap<String, RawTableConfig>,
    #[serde(default)]
    broadcast: BroadcastConfig,
    #[serde(default)]
    binding: Vec<BindingConfig>,
    snowflake: Option<RawSnowflakeConfig>,
}

/// Raw so that a bad epoch or worker id is reported with its key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSnowflakeConfig {
    epoch: Option<String>,
    #[serde(default)]
    worker_id: i64,
    #[serde(default = "default_max_clock_backward_ms")]
    max_clock_backward_ms: u64,
}

impl Config {
    /// Parses and validates a whole configuration file's text.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text)?;
        let tables = raw
            .tables
            .into_iter()
            .map(|(name, table)| table.into_table(&name).map(|table| (name, table)))
            .collect::<Result<_, _>>()?;
        let config = Config {
            server: raw.server,
            data_sources: raw.data_sources,
            tables,
            broadcast: raw.broadcast,
            binding: raw.binding,
            snowflake: raw
                .snowflake
                .map(RawSnowflakeConfig::into_config)
                .transpose()?
                .unwrap_or_default(),
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot: cross-references and value ranges. Table
    /// rules are checked by building them, so that what loads also routes.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.server.users.is_empty() {
            return Err(ConfigError::invalid("server.users", Problem::Empty("user")));
        }
        if self.data_sources.is_empty() {
            return Err(ConfigError::invalid(
                "data_sources",
                Problem::Empty("data source"),
            ));
        }
        for (name, source) in &self.data_sources {
            if source.pool.max_size == 0 {
                let problem = Problem::OutOfRange {
                    value: 0,
                    range: "1..",
                };
                return Err(ConfigError::invalid(
                    format!("data_sources.{name}.pool.max_size"),
                    problem,
                ));
            }
        }
        ShardingRules::new(self).map(drop)
    }
}

impl RawSnowflakeConfig {
    fn into_config(self) -> Result<SnowflakeConfig, ConfigError> {
        let epoch = match self.epoch {
            None => Epoch::DEFAULT,
            Some(text) => parse_utc_millis(&text)
                .ok()
                .and_then(|millis| u64::try_from(millis).ok())
                .map(Epoch::from_unix_millis)
                .ok_or_else(|| {
                    let reason = "expected an RFC 3339 UTC instant at or after 1970, like 2024-01-01T00:00:00Z";
                    ConfigError::invalid("snowflake.epoch", Problem::BadValue { value: text, reason: reason.into() })
                })?,
        };
        let worker_id = u16::try_from(self.worker_id)
            .ok()
            .and_then(WorkerId::new)
            .ok_or_else(|| {
                let problem = Problem::OutOfRange {
                    value: self.worker_id,
                    range: "0..=1023",
                };
                ConfigError::invalid("snowflake.worker_id", problem)
            })?;
        Ok(SnowflakeConfig {
            epoch,
            worker_id,
            max_clock_backward_ms: self.max_clock_backward_ms,
        })
    }
}

fn default_mysql_listen() -> String {
    "127.0.0.1:3307".to_string()
}

fn default_admin_listen() -> String {
    "127.0.0.1:9797".to_string()
}

fn default_data_source() -> String {
    "ds0".to_string()
}

fn default_max_allowed_packet() -> usize {
    64 * 1024 * 1024
}

fn default_pool_max_size() -> usize {
    20
}

fn default_acquire_timeout_ms() -> u64 {
    5_000
}

fn default_max_clock_backward_ms() -> u64 {
    DEFAULT_MAX_CLOCK_BACKWARD_MS
}

#[cfg(test)]
mod tests;
