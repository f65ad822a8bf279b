//! ShardingSphere proxy rules (`database-*.yaml`) → a ShardGate config.
//!
//! What translates: data sources (read/write-splitting groups become their
//! write data source), sharding tables with `standard` strategies whose
//! algorithm is `INLINE` (one `${...}` over the column), `MOD`, or the e2e
//! fixture (`E2E.SHARDING.STANDARD.FIXTURE`: target = the one whose name ends
//! with `value % 10`, i.e. `prefix${col % 10}`), `SNOWFLAKE` key generators
//! and broadcast tables. What does not is recorded per table with the reason.

use serde_yaml::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::suite::expand_nodes;
use crate::Config;

/// Where one physical database of the peer suite lives in the sandbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Physical {
    pub host: String,
    pub port: u16,
    /// The database name in the sandbox (`ss_db_db_0`).
    pub name: String,
}

#[derive(Clone, Debug)]
pub struct Translation {
    pub config: Config,
    pub toml: String,
    /// Suite database name (`db_0`, `write_ds_3`) → where it lives.
    pub physical: BTreeMap<String, Physical>,
    /// ShardGate data source → suite database name.
    pub data_source_db: BTreeMap<String, String>,
    /// The suite database of the default data source (single tables' home).
    pub home_db: String,
    /// Sharded tables ShardGate was configured with.
    pub sharded: BTreeSet<String>,
    pub broadcast: BTreeSet<String>,
    /// Physical table names named by any sharding rule (expressible or not).
    pub rule_tables: BTreeSet<String>,
    /// Logical tables whose rules ShardGate cannot express, with the reason.
    pub not_expressible: BTreeMap<String, String>,
    /// Table → (key column, reason): a generator ShardGate cannot express.
    pub key_not_expressible: BTreeMap<String, (String, String)>,
    /// Other translation notes (binding groups, ignored rules, relocations).
    pub notes: Vec<String>,
}

fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_mapping()
        .and_then(|m| m.get(Value::String(key.to_string())))
}

fn untag(v: &Value) -> (Option<String>, &Value) {
    match v {
        Value::Tagged(t) => (
            Some(t.tag.to_string().trim_start_matches('!').to_string()),
            &t.value,
        ),
        other => (None, other),
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The database named by a JDBC URL: `jdbc:mysql://h:3306/db_0?x=y` → `db_0`.
fn jdbc_database(url: &str) -> Option<String> {
    let rest = url.split("://").nth(1)?;
    let path = rest.split_once('/')?.1;
    Some(path.split(['?', ';']).next()?.to_string())
}

struct Algorithm {
    kind: String,
    props: BTreeMap<String, String>,
}

/// `{ column = "...", expression = "..." }` or an error saying why not.
fn strategy_toml(
    dimension: &str,
    strategy: Option<&Value>,
    algorithms: &BTreeMap<String, Algorithm>,
    targets: &[String],
) -> Result<Option<String>, String> {
    let Some(strategy) = strategy else {
        return Ok(None);
    };
    let Some(map) = strategy.as_mapping() else {
        return Ok(None);
    };
    let (kind, body) = match map.iter().next() {
        Some((k, v)) => (text(k).unwrap_or_default(), v),
        None => return Ok(None),
    };
    match kind.as_str() {
        "none" => return Ok(None),
        "standard" => {}
        "hint" => {
            let alg = get(body, "shardingAlgorithmName")
                .and_then(text)
                .unwrap_or_default();
            let ty = algorithms
                .get(&alg)
                .map(|a| a.kind.clone())
                .unwrap_or_default();
            return Err(format!(
                "{dimension} strategy is a hint strategy ({ty}): ShardGate has no hint sharding"
            ));
        }
        "complex" => {
            let cols = get(body, "shardingColumns")
                .and_then(text)
                .unwrap_or_default();
            return Err(format!(
                "{dimension} strategy is complex over several columns ({cols}): ShardGate strategies read one column"
            ));
        }
        other => {
            return Err(format!(
                "{dimension} strategy type {other} is not supported"
            ))
        }
    }
    let column = get(body, "shardingColumn")
        .and_then(text)
        .ok_or_else(|| format!("{dimension} strategy without shardingColumn"))?;
    let alg_name = get(body, "shardingAlgorithmName")
        .and_then(text)
        .unwrap_or_default();
    let alg = algorithms
        .get(&alg_name)
        .ok_or_else(|| format!("{dimension} algorithm {alg_name} is not defined"))?;
    let value = match alg.kind.as_str() {
        "INLINE" => {
            let expr = alg
                .props
                .get("algorithm-expression")
                .ok_or("INLINE algorithm without algorithm-expression")?
                .replace("$->{", "${");
            format!("{{ column = {column:?}, expression = {expr:?} }}")
        }
        "MOD" => {
            let count = alg
                .props
                .get("sharding-count")
                .ok_or("MOD algorithm without sharding-count")?;
            format!("{{ column = {column:?}, algorithm = \"mod\", count = {count} }}")
        }
        "E2E.SHARDING.STANDARD.FIXTURE" | "IT.STANDARD.FIXTURE" => {
            // the target whose name ends with the digit value % 10
            let prefix = targets
                .first()
                .map(|t| t.trim_end_matches(|c: char| c.is_ascii_digit()).to_string())
                .unwrap_or_default();
            let expected: Vec<String> = (0..10).map(|i| format!("{prefix}{i}")).collect();
            let mut sorted = targets.to_vec();
            sorted.sort();
            if sorted != expected {
                return Err(format!(
                    "{} over targets {targets:?}: expressible only when the targets are prefix0..prefix9",
                    alg.kind
                ));
            }
            let expr = format!("{prefix}${{{column} % 10}}");
            format!("{{ column = {column:?}, expression = {expr:?} }}")
        }
        other => {
            return Err(format!(
                "{dimension} algorithm type {other} has no ShardGate equivalent"
            ))
        }
    };
    Ok(Some(value))
}

fn distinct(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    items.filter(|i| seen.insert(i.clone())).collect()
}

/// Translates one scenario's rules. `servers` are the sandbox primaries
/// (host, port); suite databases are spread over them round-robin, named
/// `ss_<short>_<database>`.
pub fn translate(
    scenario: &str,
    short: &str,
    yaml: &str,
    servers: &[(String, u16)],
) -> Result<Translation, String> {
    let doc: Value = serde_yaml::from_str(yaml).map_err(|e| format!("yaml: {e}"))?;
    let mut notes = Vec::new();

    // data sources: name → suite database
    let mut ds_db: BTreeMap<String, String> = BTreeMap::new();
    if let Some(m) = get(&doc, "dataSources").and_then(Value::as_mapping) {
        for (name, body) in m {
            let name = text(name).unwrap_or_default();
            let url = get(body, "url").and_then(text).unwrap_or_default();
            let db = jdbc_database(&url).ok_or_else(|| format!("data source {name}: url {url}"))?;
            ds_db.insert(name, db);
        }
    }

    let mut sharding: Option<&Value> = None;
    let mut broadcast: Vec<String> = Vec::new();
    let mut groups: BTreeMap<String, String> = BTreeMap::new();
    let mut read_sources: BTreeSet<String> = BTreeSet::new();
    for rule in get(&doc, "rules")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
    {
        let (tag, body) = untag(rule);
        match tag.as_deref() {
            Some("SHARDING") => sharding = Some(body),
            Some("BROADCAST") => broadcast.extend(
                get(body, "tables")
                    .and_then(Value::as_sequence)
                    .into_iter()
                    .flatten()
                    .filter_map(text),
            ),
            Some("READWRITE_SPLITTING") => {
                for (name, g) in get(body, "dataSourceGroups")
                    .or_else(|| get(body, "dataSources"))
                    .and_then(Value::as_mapping)
                    .into_iter()
                    .flatten()
                {
                    let write = get(g, "writeDataSourceName")
                        .and_then(text)
                        .unwrap_or_default();
                    groups.insert(text(name).unwrap_or_default(), write);
                    read_sources.extend(
                        get(g, "readDataSourceNames")
                            .and_then(Value::as_sequence)
                            .into_iter()
                            .flatten()
                            .filter_map(text),
                    );
                }
                notes.push(
                    "read/write splitting ignored: every group is its write data source (reads from primaries)"
                        .into(),
                );
            }
            Some("SINGLE") => {}
            Some(other) => notes.push(format!("rule !{other} ignored")),
            None => {}
        }
    }

    // ShardGate data sources: groups (as their write source) replace the
    // write sources; read sources are dropped
    let mut data_source_db: BTreeMap<String, String> = BTreeMap::new();
    let grouped: BTreeSet<&String> = groups.values().collect();
    for (name, db) in &ds_db {
        if !grouped.contains(name) && !read_sources.contains(name) {
            data_source_db.insert(name.clone(), db.clone());
        }
    }
    for (group, write) in &groups {
        let db = ds_db
            .get(write)
            .ok_or_else(|| format!("group {group}: unknown write data source {write}"))?;
        data_source_db.insert(group.clone(), db.clone());
    }
    if data_source_db.is_empty() {
        return Err("no data source".into());
    }

    // suite databases in data source order, spread over the servers
    let mut physical = BTreeMap::new();
    let mut ordered: Vec<&String> = data_source_db.values().collect();
    ordered.sort_by_key(|db| {
        // db_2 before db_10
        let digits: String = db
            .chars()
            .rev()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        let n: u64 = digits
            .chars()
            .rev()
            .collect::<String>()
            .parse()
            .unwrap_or(0);
        (
            db.trim_end_matches(|c: char| c.is_ascii_digit())
                .to_string(),
            n,
        )
    });
    for (i, db) in ordered.iter().enumerate() {
        let (host, port) = &servers[i % servers.len()];
        physical.insert(
            (*db).clone(),
            Physical {
                host: host.clone(),
                port: *port,
                name: format!("ss_{short}_{db}"),
            },
        );
    }
    let home_ds = data_source_db
        .iter()
        .find(|(_, db)| *db == ordered[0])
        .map(|(ds, _)| ds.clone())
        .unwrap();
    let home_db = ordered[0].clone();

    let mut out = String::new();
    let _ = writeln!(
        out,
        "[server]\nmysql_listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\ndatabase = {scenario:?}\ndefault_data_source = {home_ds:?}\n\n[[server.users]]\nname = \"root\"\npassword = \"\"\n"
    );
    for (ds, db) in &data_source_db {
        let p = &physical[db];
        let _ = writeln!(
            out,
            "[data_sources.{ds}]\nurl = \"mysql://root@{}:{}/{}\"\n",
            p.host, p.port, p.name
        );
    }
    let head = out.clone();

    let mut algorithms = BTreeMap::new();
    let mut key_generators: BTreeMap<String, String> = BTreeMap::new();
    let mut not_expressible = BTreeMap::new();
    let mut key_not_expressible = BTreeMap::new();
    let mut sharded = BTreeSet::new();
    let mut rule_tables = BTreeSet::new();
    let mut tables_toml = String::new();
    let mut binding_groups: Vec<Vec<String>> = Vec::new();
    if let Some(sh) = sharding {
        for (name, a) in get(sh, "shardingAlgorithms")
            .and_then(Value::as_mapping)
            .into_iter()
            .flatten()
        {
            let props = get(a, "props")
                .and_then(Value::as_mapping)
                .into_iter()
                .flatten()
                .map(|(k, v)| (text(k).unwrap_or_default(), text(v).unwrap_or_default()))
                .collect();
            algorithms.insert(
                text(name).unwrap_or_default(),
                Algorithm {
                    kind: get(a, "type")
                        .and_then(text)
                        .unwrap_or_default()
                        .to_uppercase(),
                    props,
                },
            );
        }
        for (name, g) in get(sh, "keyGenerators")
            .and_then(Value::as_mapping)
            .into_iter()
            .flatten()
        {
            key_generators.insert(
                text(name).unwrap_or_default(),
                get(g, "type").and_then(text).unwrap_or_default(),
            );
        }
        // key strategies: per table, or in keyGenerateStrategies
        let mut keys: BTreeMap<String, (String, String)> = BTreeMap::new();
        for (_, k) in get(sh, "keyGenerateStrategies")
            .and_then(Value::as_mapping)
            .into_iter()
            .flatten()
        {
            let table = get(k, "logicTable").and_then(text).unwrap_or_default();
            let column = get(k, "keyGenerateColumn")
                .and_then(text)
                .unwrap_or_default();
            let generator = get(k, "keyGeneratorName")
                .and_then(text)
                .unwrap_or_default();
            keys.insert(table, (column, generator));
        }
        for group in get(sh, "bindingTables")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
        {
            // `name:a,b,c` (a named group) or `a,b,c`.
            let group = text(group).unwrap_or_default();
            let list = group.split_once(':').map_or(group.as_str(), |(_, l)| l);
            let tables: Vec<String> = list
                .split(',')
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
                .collect();
            binding_groups.push(tables);
        }
        let default_db = get(sh, "defaultDatabaseStrategy");
        let default_tbl = get(sh, "defaultTableStrategy");
        for (name, t) in get(sh, "tables")
            .and_then(Value::as_mapping)
            .into_iter()
            .flatten()
        {
            let name = text(name).unwrap_or_default();
            if let Some(k) = get(t, "keyGenerateStrategy") {
                let column = get(k, "column").and_then(text).unwrap_or_default();
                let generator = get(k, "keyGeneratorName")
                    .and_then(text)
                    .unwrap_or_default();
                keys.insert(name.clone(), (column, generator));
            }
            let nodes_expr = get(t, "actualDataNodes").and_then(text).unwrap_or_default();
            let nodes = match expand_nodes(&nodes_expr.replace("$->{", "${")) {
                Ok(n) => n,
                Err(e) => {
                    not_expressible.insert(name, format!("actualDataNodes: {e}"));
                    continue;
                }
            };
            rule_tables.extend(nodes.iter().map(|(_, t)| t.clone()));
            rule_tables.insert(name.clone());
            let dbs = distinct(nodes.iter().map(|(d, _)| d.clone()));
            let tbls = distinct(nodes.iter().map(|(_, t)| t.clone()));
            let database = strategy_toml(
                "database",
                get(t, "databaseStrategy").or(default_db),
                &algorithms,
                &dbs,
            );
            let table = strategy_toml(
                "table",
                get(t, "tableStrategy").or(default_tbl),
                &algorithms,
                &tbls,
            );
            let (database, table) = match (database, table) {
                (Ok(d), Ok(t)) => (d, t),
                (Err(e), _) | (_, Err(e)) => {
                    not_expressible.insert(name, e);
                    continue;
                }
            };
            let mut entry = format!(
                "[tables.{name}]\nnodes = {:?}\n",
                nodes_expr.replace("$->{", "${")
            );
            if let Some(d) = database {
                let _ = writeln!(entry, "database = {d}");
            }
            if let Some(t) = table {
                let _ = writeln!(entry, "table = {t}");
            }
            if let Some((column, generator)) = keys.get(&name) {
                let kind = key_generators.get(generator).cloned().unwrap_or_default();
                if kind.eq_ignore_ascii_case("SNOWFLAKE") {
                    let _ = writeln!(
                        entry,
                        "key = {{ column = {column:?}, generator = \"snowflake\" }}"
                    );
                } else {
                    key_not_expressible.insert(
                        name.clone(),
                        (
                            column.clone(),
                            format!("key generator {kind} on {name}.{column}: ShardGate generates snowflake ids only"),
                        ),
                    );
                }
            }
            // each table must load on its own
            let alone = format!("{head}{entry}");
            match Config::from_toml_str(&alone) {
                Ok(_) => {
                    sharded.insert(name.clone());
                    tables_toml.push_str(&entry);
                    tables_toml.push('\n');
                }
                Err(e) => {
                    not_expressible.insert(name, format!("ShardGate rejects the translation: {e}"));
                }
            }
        }
    }
    out.push_str(&tables_toml);
    if !broadcast.is_empty() {
        let _ = writeln!(out, "[broadcast]\ntables = {broadcast:?}");
    }
    // Binding groups that ShardGate accepts (members sharded and laid out
    // alike); the others are noted and their joins left to the proxy.
    for group in binding_groups {
        let (group, left_out): (Vec<String>, Vec<String>) =
            group.into_iter().partition(|t| sharded.contains(t));
        if !left_out.is_empty() {
            notes.push(format!(
                "binding: {} not sharded here, left out",
                left_out.join(",")
            ));
        }
        if group.len() < 2 {
            continue;
        }
        let entry = format!("\n[[binding]]\ntables = {group:?}\n");
        match Config::from_toml_str(&format!("{out}{entry}")) {
            Ok(_) => out.push_str(&entry),
            Err(e) => notes.push(format!(
                "binding group {} not configured: {e}",
                group.join(",")
            )),
        }
    }
    let config =
        Config::from_toml_str(&out).map_err(|e| format!("translated config: {e}\n{out}"))?;
    Ok(Translation {
        config,
        toml: out,
        physical,
        data_source_db,
        home_db,
        sharded,
        broadcast: broadcast.into_iter().collect(),
        rule_tables,
        not_expressible,
        key_not_expressible,
        notes,
    })
}
