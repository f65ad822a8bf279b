//! `[tables.*]` entries: the raw TOML shape and its conversion into typed
//! sharding strategies, with errors that name the key.

use super::error::{ConfigError, Problem};
use crate::algorithm::NameTemplate;
use serde::Deserialize;
use std::num::NonZeroU32;

/// A sharded logical table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableConfig {
    /// The inline expression of the physical nodes, as written.
    pub nodes: String,
    /// How a row picks its data source; `None` when the nodes use only one.
    pub database: Option<StrategyConfig>,
    /// How a row picks its table; `None` when each data source holds one.
    pub table: Option<StrategyConfig>,
    pub key: Option<KeyConfig>,
}

/// A sharding strategy: the column it reads and the algorithm it applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrategyConfig {
    pub column: String,
    pub algorithm: AlgorithmConfig,
}

/// The algorithm of a strategy. For `Mod` and `Crc32Mod` the result `i`
/// picks the i-th target of the dimension, in node order: the i-th data
/// source for `database`, the i-th distinct table name for `table`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlgorithmConfig {
    Mod {
        count: NonZeroU32,
    },
    Crc32Mod {
        count: NonZeroU32,
    },
    /// Table (or data source) suffix `%Y%m` of a date value.
    Month,
    /// The target's name, rendered from arithmetic over the column.
    Expression(NameTemplate),
}

/// A column whose value the proxy generates when an INSERT omits it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    pub column: String,
    pub generator: KeyGenerator,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyGenerator {
    Snowflake,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTableConfig {
    nodes: String,
    database: Option<RawStrategy>,
    table: Option<RawStrategy>,
    key: Option<KeyConfig>,
}

/// Every field optional, so that a missing one is reported with its key
/// path by [`RawStrategy::into_strategy`] rather than by serde.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStrategy {
    column: Option<String>,
    algorithm: Option<String>,
    count: Option<i64>,
    format: Option<String>,
    expression: Option<String>,
}

impl RawTableConfig {
    /// `key`: where the table stands in the file (`tables.users`).
    pub(super) fn into_table(self, key: &str) -> Result<TableConfig, ConfigError> {
        let strategy = |raw: Option<RawStrategy>, dimension: &str| {
            raw.map(|raw| raw.into_strategy(&format!("{key}.{dimension}")))
                .transpose()
        };
        Ok(TableConfig {
            nodes: self.nodes,
            database: strategy(self.database, "database")?,
            table: strategy(self.table, "table")?,
            key: self.key,
        })
    }
}

impl RawStrategy {
    fn into_strategy(self, key: &str) -> Result<StrategyConfig, ConfigError> {
        let invalid = |problem| ConfigError::invalid(key, problem);
        let column = self
            .column
            .filter(|column| !column.is_empty())
            .ok_or_else(|| invalid(Problem::Missing("column")))?;
        let algorithm = match (self.algorithm.as_deref(), self.expression) {
            (Some(_), Some(_)) => return Err(invalid(Problem::AlgorithmAndExpression)),
            (None, None) => return Err(invalid(Problem::Missing("algorithm"))),
            (None, Some(expression)) => {
                reject_field("count", self.count.is_some(), "expression").map_err(invalid)?;
                reject_field("format", self.format.is_some(), "expression").map_err(invalid)?;
                let template = NameTemplate::parse(&expression, &column).map_err(|error| {
                    ConfigError::invalid(format!("{key}.expression"), error.into())
                })?;
                AlgorithmConfig::Expression(template)
            }
            (Some(name @ ("mod" | "crc32_mod")), None) => {
                reject_field("format", self.format.is_some(), "mod algorithms").map_err(invalid)?;
                let count = self
                    .count
                    .ok_or_else(|| invalid(Problem::Missing("count")))?;
                let count = u32::try_from(count)
                    .ok()
                    .and_then(NonZeroU32::new)
                    .ok_or_else(|| {
                        ConfigError::invalid(
                            format!("{key}.count"),
                            Problem::OutOfRange {
                                value: count,
                                range: "1..=4294967295",
                            },
                        )
                    })?;
                if name == "mod" {
                    AlgorithmConfig::Mod { count }
                } else {
                    AlgorithmConfig::Crc32Mod { count }
                }
            }
            (Some("month"), None) => {
                reject_field("count", self.count.is_some(), "the month algorithm")
                    .map_err(invalid)?;
                match self.format.as_deref() {
                    None | Some("%Y%m") => AlgorithmConfig::Month,
                    Some(other) => {
                        return Err(ConfigError::invalid(
                            format!("{key}.format"),
                            Problem::UnsupportedMonthFormat(other.to_string()),
                        ))
                    }
                }
            }
            (Some(other), None) => {
                return Err(invalid(Problem::UnknownAlgorithm(other.to_string())))
            }
        };
        Ok(StrategyConfig { column, algorithm })
    }
}

fn reject_field(
    field: &'static str,
    present: bool,
    applies_to: &'static str,
) -> Result<(), Problem> {
    if present {
        Err(Problem::NotApplicable { field, applies_to })
    } else {
        Ok(())
    }
}
