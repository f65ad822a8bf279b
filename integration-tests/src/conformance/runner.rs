//! Loads a scenario into the sandbox (sharded side and unsharded reference),
//! starts ShardGate on the translated rules, runs the applicable cases
//! through both and classifies each.

use super::suite::{self, Case, Command, Param, TableData};
use super::translate::{translate, Physical, Translation};
use crate::sqlx_scenario::render_value;
use crate::{db_error, start_proxy, Config, Endpoint};
use futures_util::TryStreamExt;
use shardgate_rules::{ShardValue, ShardingRules};
use sqlx::mysql::{MySqlConnection, MySqlRow};
use sqlx::{Column, Either, Row, TypeInfo};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

const ER_NOT_SUPPORTED_YET: u16 = 1235;
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(20);

/// What one statement produced.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Done {
        /// `label:TYPE` per column (known only when a row came back).
        columns: Vec<String>,
        rows: Vec<Vec<String>>,
        affected: u64,
    },
    Error {
        code: u16,
        message: String,
    },
    /// I/O, protocol, decoding or timeout.
    Failure(String),
}

impl Outcome {
    fn brief(&self) -> String {
        match self {
            Outcome::Done {
                columns,
                rows,
                affected,
            } => format!(
                "{} row(s), affected {affected}, columns {columns:?}{}",
                rows.len(),
                rows.first()
                    .map(|r| format!(", first row {}", r.join(", ")))
                    .unwrap_or_default()
            ),
            Outcome::Error { code, message } => format!("error {code}: {message}"),
            Outcome::Failure(e) => format!("failure: {e}"),
        }
    }
}

/// Runs one statement: text protocol when `params` is `None`, else prepared
/// with the parameters bound with their declared types.
pub async fn exec(conn: &mut MySqlConnection, sql: &str, params: Option<&[Param]>) -> Outcome {
    let run = async {
        let stream = match params {
            None => sqlx::raw_sql(sql).fetch_many(&mut *conn),
            Some(params) => {
                let mut q = sqlx::query::<sqlx::MySql>(sql);
                for p in params {
                    q = match p {
                        Param::Int(v) => q.bind(*v),
                        Param::Long(v) => q.bind(*v),
                        Param::Double(v) => q.bind(*v),
                        Param::Text(s) => q.bind(s.clone()),
                        Param::Null => q.bind(None::<String>),
                    };
                }
                #[allow(deprecated)]
                q.fetch_many(&mut *conn)
            }
        };
        let items: Result<Vec<Either<sqlx::mysql::MySqlQueryResult, MySqlRow>>, sqlx::Error> =
            stream.try_collect().await;
        items
    };
    match tokio::time::timeout(STATEMENT_TIMEOUT, run).await {
        Err(_) => Outcome::Failure(format!("timeout after {STATEMENT_TIMEOUT:?}")),
        Ok(Err(e)) => match db_error(&e) {
            Some((code, _, message)) => Outcome::Error { code, message },
            None => Outcome::Failure(e.to_string()),
        },
        Ok(Ok(items)) => {
            let mut columns = Vec::new();
            let mut rows = Vec::new();
            let mut affected = 0;
            for item in items {
                match item {
                    Either::Left(done) => affected += done.rows_affected(),
                    Either::Right(row) => {
                        if columns.is_empty() {
                            columns = row
                                .columns()
                                .iter()
                                .map(|c| format!("{}:{}", c.name(), c.type_info().name()))
                                .collect();
                        }
                        rows.push(
                            (0..row.len())
                                .map(|i| render_value(&row, i).to_string())
                                .collect(),
                        );
                    }
                }
            }
            Outcome::Done {
                columns,
                rows,
                affected,
            }
        }
    }
}

async fn admin(conn: &mut MySqlConnection, sql: &str) -> Result<(), String> {
    match exec(conn, sql, None).await {
        Outcome::Done { .. } => Ok(()),
        other => Err(format!("{}: {}", clip(sql, 200), other.brief())),
    }
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

/// Replaces every whole-word occurrence of `from` (an identifier) by `to`.
fn replace_word(sql: &str, from: &str, to: &str) -> String {
    let is_id = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '$';
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    let mut prev: Option<char> = None;
    while let Some(pos) = rest.find(from) {
        let before = rest[..pos].chars().last().or(prev);
        let after = rest[pos + from.len()..].chars().next();
        out.push_str(&rest[..pos]);
        if before.is_some_and(is_id) || after.is_some_and(is_id) {
            out.push_str(from);
        } else {
            out.push_str(to);
        }
        prev = from.chars().last();
        rest = &rest[pos + from.len()..];
    }
    out.push_str(rest);
    out
}

fn insert_sql(db: &str, table: &str, data: &TableData) -> Option<String> {
    if data.rows.is_empty() {
        return None;
    }
    let cols: Vec<String> = data.columns.iter().map(|c| format!("`{c}`")).collect();
    let rows: Vec<String> = data
        .rows
        .iter()
        .map(|r| {
            let vals: Vec<String> = r
                .iter()
                .map(|v| match v {
                    None => "NULL".into(),
                    Some(v) => Param::Text(v.clone()).literal(),
                })
                .collect();
            format!("({})", vals.join(", "))
        })
        .collect();
    Some(format!(
        "INSERT INTO `{db}`.`{table}` ({}) VALUES {}",
        cols.join(", "),
        rows.join(", ")
    ))
}

/// One sandbox server with an administrative connection.
struct Server {
    host: String,
    port: u16,
    conn: MySqlConnection,
}

async fn connect(host: &str, port: u16, database: &str) -> Result<MySqlConnection, String> {
    let ep = Endpoint {
        host: host.into(),
        port,
        user: "root".into(),
        password: String::new(),
        database: database.into(),
    };
    ep.connect()
        .await
        .map_err(|e| format!("connect {host}:{port}/{database}: {e}"))
}

/// A loaded scenario: where everything is, and the data to reset tables to.
struct Loaded {
    tr: Translation,
    rules: ShardingRules,
    servers: Vec<Server>,
    /// (suite database after relocation, table) → rows.
    actual: BTreeMap<(String, String), TableData>,
    /// Reference database name and its tables' rows.
    ref_host: (String, u16),
    ref_db: String,
    expected: BTreeMap<String, TableData>,
    /// Every logical table name the scenario knows.
    logical_tables: BTreeSet<String>,
}

impl Loaded {
    fn server(&mut self, p: &Physical) -> &mut MySqlConnection {
        let s = self
            .servers
            .iter_mut()
            .find(|s| s.host == p.host && s.port == p.port)
            .expect("a server of the sandbox");
        &mut s.conn
    }

    /// The physical nodes (suite database, table) of a logical table.
    fn nodes_of(&self, table: &str) -> Vec<(String, String)> {
        if self.tr.sharded.contains(table) {
            self.rules
                .nodes(table)
                .into_iter()
                .map(|n| (self.tr.data_source_db[&n.data_source].clone(), n.table))
                .collect()
        } else if self.tr.broadcast.contains(table) {
            self.tr
                .data_source_db
                .values()
                .map(|db| (db.clone(), table.to_string()))
                .collect()
        } else {
            vec![(self.tr.home_db.clone(), table.to_string())]
        }
    }

    /// Restores a logical table on both sides to the data sets' rows.
    async fn reset(&mut self, table: &str) -> Result<(), String> {
        let mut per_db: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (db, phys) in self.nodes_of(table) {
            let Some(p) = self.tr.physical.get(&db) else {
                continue;
            };
            let stmts = per_db.entry(db.clone()).or_default();
            stmts.push(format!("DELETE FROM `{}`.`{phys}`", p.name));
            if let Some(data) = self.actual.get(&(db.clone(), phys.clone())) {
                stmts.extend(insert_sql(&p.name, &phys, data));
            }
        }
        for (db, stmts) in per_db {
            let p = self.tr.physical[&db].clone();
            admin(self.server(&p), &stmts.join(";\n")).await?;
        }
        let mut stmts = vec![format!("DELETE FROM `{}`.`{table}`", self.ref_db)];
        if let Some(data) = self.expected.get(table) {
            stmts.extend(insert_sql(&self.ref_db, table, data));
        }
        let (host, port) = self.ref_host.clone();
        let p = Physical {
            host,
            port,
            name: String::new(),
        };
        admin(self.server(&p), &stmts.join(";\n")).await
    }

    /// Rows stored where the rules do not place them (sharded tables).
    async fn misplaced(&mut self, table: &str) -> Vec<String> {
        let mut out = Vec::new();
        if !self.tr.sharded.contains(table) {
            return out;
        }
        let columns: Vec<String> = self
            .rules
            .sharding_columns(table)
            .into_iter()
            .map(str::to_string)
            .collect();
        for (ds_node, (db, phys)) in self
            .rules
            .nodes(table)
            .into_iter()
            .zip(self.nodes_of(table))
        {
            let p = self.tr.physical[&db].clone();
            let sql = format!(
                "SELECT {} FROM `{}`.`{phys}`",
                columns
                    .iter()
                    .map(|c| format!("`{c}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                p.name
            );
            let rows = match exec(self.server(&p), &sql, None).await {
                Outcome::Done { rows, .. } => rows,
                other => {
                    out.push(format!("{db}.{phys}: {}", other.brief()));
                    continue;
                }
            };
            for row in rows {
                let values: Vec<ShardValue> = row
                    .iter()
                    .map(|v| {
                        let v = v.trim_matches('"');
                        match v.strip_prefix("i64:").and_then(|n| n.parse().ok()) {
                            Some(n) => ShardValue::Int(n),
                            None if v == "null" => ShardValue::Null,
                            None => ShardValue::Text(v.to_string()),
                        }
                    })
                    .collect();
                let pairs: Vec<(&str, ShardValue)> =
                    columns.iter().map(String::as_str).zip(values).collect();
                match self.rules.route_row(table, &pairs) {
                    Ok(home) if home == ds_node => {}
                    Ok(home) => out.push(format!(
                        "row {row:?} is in {db}.{phys} but belongs in {}.{}",
                        home.data_source, home.table
                    )),
                    Err(e) => out.push(format!("row {row:?} in {db}.{phys} has no home: {e}")),
                }
            }
        }
        out
    }
}

/// The primaries of the sandbox, from the seed config, in data source order.
fn sandbox_servers(seed: &Config) -> Vec<(String, u16)> {
    let mut out: Vec<(String, u16)> = Vec::new();
    for ds in seed.data_sources.values() {
        let s = (ds.url.host.clone(), ds.url.port);
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

fn with_prelude(prelude: &[String], stmt: &str) -> String {
    let mut all: Vec<&str> = prelude.iter().map(String::as_str).collect();
    all.push(stmt);
    all.join(";\n")
}

fn short_name(scenario: &str) -> &'static str {
    match scenario {
        "db" => "db",
        "tbl" => "tbl",
        _ => "rw",
    }
}

async fn load(suite_dir: &Path, scenario: &str, seed: &Config) -> Result<Loaded, String> {
    let dir = suite::scenario_dir(suite_dir, scenario);
    let short = short_name(scenario);
    let conf_dir = dir.join("proxy/conf/mysql");
    let yaml_path = std::fs::read_dir(&conf_dir)
        .map_err(|e| format!("{}: {e}", conf_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("database-") && n.ends_with(".yaml"))
        })
        .ok_or_else(|| format!("no database-*.yaml in {}", conf_dir.display()))?;
    let yaml = std::fs::read_to_string(&yaml_path).map_err(|e| e.to_string())?;
    let hosts = sandbox_servers(seed);
    let tr = translate(scenario, short, &yaml, &hosts)?;
    let rules = ShardingRules::new(&tr.config).map_err(|e| e.to_string())?;

    let mut servers = Vec::new();
    for (host, port) in &hosts {
        servers.push(Server {
            host: host.clone(),
            port: *port,
            conn: connect(host, *port, "mysql").await?,
        });
    }

    let actual_dbs: BTreeSet<String> =
        suite::load_databases(&dir.join("data/actual/databases.xml"))?
            .into_iter()
            .collect();
    let actual_raw = suite::load_dataset(&dir.join("data/actual/dataset.xml"))?;
    let init = suite::load_init_sql(&dir.join("data/actual/init-sql/mysql"))?;
    // tables the init SQL creates or the data set fills, named by no rule
    let mut created: BTreeSet<String> = actual_raw.keys().map(|(_, t)| t.clone()).collect();
    for stmt in &init {
        let w = suite::words(stmt);
        if w.len() > 3 && w[0] == "create" && w[1] == "table" && actual_dbs.contains(&w[2]) {
            created.insert(w[3].clone());
        }
    }
    let single_tables: BTreeSet<String> = created
        .into_iter()
        .filter(|t| !tr.rule_tables.contains(t) && !tr.broadcast.contains(t))
        .collect();
    let relocate = |db: &str, table: &str| -> String {
        if single_tables.contains(table) {
            tr.home_db.clone()
        } else {
            db.to_string()
        }
    };

    let mut loaded = Loaded {
        rules,
        servers,
        actual: BTreeMap::new(),
        ref_host: hosts[0].clone(),
        ref_db: format!("ssref_{short}"),
        expected: BTreeMap::new(),
        logical_tables: BTreeSet::new(),
        tr: tr.clone(),
    };

    // sharded side: the actual init SQL, database names rewritten
    let mut set_stmts = Vec::new();
    let mut single_ddl: BTreeMap<String, String> = BTreeMap::new();
    for stmt in &init {
        let words = suite::words(stmt);
        let Some(pos) = words.iter().position(|w| actual_dbs.contains(w)) else {
            set_stmts.push(stmt.clone());
            continue;
        };
        let db = &words[pos];
        let Some(_) = tr.physical.get(db) else {
            continue; // a database ShardGate does not use (replicas)
        };
        let is_create_db = words.iter().take(pos).any(|w| w == "database");
        let table = words.get(pos + 1).cloned().unwrap_or_default();
        let target = if is_create_db {
            db.clone()
        } else {
            relocate(db, &table)
        };
        if !is_create_db && single_tables.contains(&table) && target != *db {
            loaded.tr.notes.push(format!(
                "single table {table} relocated from {db} to {target} (the default data source)"
            ));
        }
        let p = tr.physical[&target].clone();
        let rewritten = replace_word(stmt, db, &p.name);
        if !is_create_db
            && single_tables.contains(&table)
            && stmt.to_lowercase().starts_with("create table")
        {
            single_ddl.insert(table.clone(), replace_word(stmt, db, "__REF__"));
        }
        let sql = with_prelude(&set_stmts, &rewritten);
        admin(loaded.server(&p), &sql).await?;
    }
    let mut batches: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for ((db, table), data) in actual_raw {
        if !tr.physical.contains_key(&db) {
            continue;
        }
        let target = relocate(&db, &table);
        loaded.logical_tables.insert(table.clone());
        let p = &tr.physical[&target];
        batches
            .entry(target.clone())
            .or_default()
            .extend(insert_sql(&p.name, &table, &data));
        loaded.actual.insert((target, table), data);
    }
    for (db, stmts) in batches {
        if stmts.is_empty() {
            continue;
        }
        let p = tr.physical[&db].clone();
        admin(loaded.server(&p), &stmts.join(";\n")).await?;
    }

    // reference side: the first expected database
    let expected_dbs = suite::load_databases(&dir.join("data/expected/databases.xml"))?;
    let ref_source = expected_dbs
        .first()
        .cloned()
        .ok_or("no expected database")?;
    if expected_dbs.len() > 1 {
        loaded.tr.notes.push(format!(
            "reference: {ref_source} only (reads go to primaries); {:?} not used",
            &expected_dbs[1..]
        ));
    }
    let ref_p = Physical {
        host: hosts[0].0.clone(),
        port: hosts[0].1,
        name: loaded.ref_db.clone(),
    };
    for stmt in suite::load_init_sql(&dir.join("data/expected/init-sql/mysql"))? {
        let words = suite::words(&stmt);
        let Some(db) = words.iter().find(|w| expected_dbs.contains(w)) else {
            continue;
        };
        if *db != ref_source {
            continue;
        }
        let sql = with_prelude(&set_stmts, &replace_word(&stmt, db, &ref_p.name));
        admin(loaded.server(&ref_p), &sql).await?;
    }
    let expected_raw = suite::load_dataset(&dir.join("data/expected/dataset.xml"))?;
    let mut stmts = Vec::new();
    for ((db, table), data) in expected_raw {
        if db != ref_source {
            continue;
        }
        loaded.logical_tables.insert(table.clone());
        stmts.extend(insert_sql(&ref_p.name, &table, &data));
        loaded.expected.insert(table, data);
    }
    // single tables the reference lacks (db: t_single): same DDL, empty
    for (table, ddl) in &single_ddl {
        if !loaded.expected.contains_key(table) {
            admin(
                loaded.server(&ref_p),
                &replace_word(ddl, "__REF__", &ref_p.name),
            )
            .await?;
            loaded.tr.notes.push(format!(
                "reference lacks single table {table}: created there empty with the actual DDL"
            ));
            loaded.logical_tables.insert(table.clone());
        }
    }
    if !stmts.is_empty() {
        admin(loaded.server(&ref_p), &stmts.join(";\n")).await?;
    }
    for t in &tr.rule_tables {
        if tr.sharded.contains(t) || tr.not_expressible.contains_key(t) {
            loaded.logical_tables.insert(t.clone());
        }
    }
    loaded.tr.notes.sort();
    loaded.tr.notes.dedup();
    Ok(loaded)
}

// ------------------------------------------------------------ comparison

/// The text after the outermost `ORDER BY` (up to LIMIT / FOR / end), split
/// into its items, each lowercased, without backticks, spaces and ASC/DESC.
fn outer_order_items(sql: &str) -> Option<Vec<String>> {
    let lower = sql.to_lowercase();
    let b = lower.as_bytes();
    let (mut depth, mut i, mut found) = (0i32, 0usize, None);
    while i < b.len() {
        match b[i] {
            b'\'' | b'"' => {
                let q = b[i];
                i += 1;
                while i < b.len() && b[i] != q {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'(' => depth += 1,
            b')' => depth -= 1,
            b'o' if depth == 0 && lower[i..].starts_with("order") => {
                let rest = lower[i + 5..].trim_start();
                if rest.starts_with("by") && (i == 0 || !b[i - 1].is_ascii_alphanumeric()) {
                    found = Some(lower.len() - rest.len() + 2);
                }
            }
            _ => {}
        }
        i += 1;
    }
    let start = found?;
    let mut tail = &lower[start..];
    for stop in [" limit ", " for update", " lock in"] {
        if let Some(p) = tail.find(stop) {
            tail = &tail[..p];
        }
    }
    let mut items = Vec::new();
    let (mut depth, mut cur) = (0, String::new());
    for c in tail.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                items.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    items.push(cur);
    Some(
        items
            .into_iter()
            .map(|it| {
                let it = it.trim();
                let it = it
                    .strip_suffix(" desc")
                    .or_else(|| it.strip_suffix(" asc"))
                    .unwrap_or(it);
                it.replace(['`', ' '], "")
            })
            .collect(),
    )
}

/// The output column each ORDER BY item sorts by, when all can be found.
fn sort_key_columns(sql: &str, labels: &[String]) -> Option<Vec<usize>> {
    let items = outer_order_items(sql)?;
    let labels: Vec<String> = labels
        .iter()
        .map(|l| {
            l.rsplit_once(':')
                .map(|(n, _)| n)
                .unwrap_or(l)
                .to_lowercase()
        })
        .collect();
    // select-list expressions, when the list has no `*`
    let lower = sql.to_lowercase();
    let select_exprs: Vec<String> = lower
        .find("select")
        .and_then(|s| {
            lower[s + 6..]
                .find(" from ")
                .map(|f| &lower[s + 6..s + 6 + f])
        })
        .filter(|list| !list.contains('*'))
        .map(|list| {
            let list = list.trim().trim_start_matches("distinct").trim();
            let (mut depth, mut cur, mut out) = (0, String::new(), Vec::new());
            for c in list.chars() {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    ',' if depth == 0 => {
                        out.push(std::mem::take(&mut cur));
                        continue;
                    }
                    _ => {}
                }
                cur.push(c);
            }
            out.push(cur);
            out.into_iter()
                .map(|e| {
                    let e = e.trim();
                    let e = e.split(" as ").next().unwrap_or(e);
                    e.replace(['`', ' '], "")
                })
                .collect()
        })
        .unwrap_or_default();
    items
        .iter()
        .map(|item| {
            if let Ok(n) = item.parse::<usize>() {
                return (n >= 1 && n <= labels.len()).then(|| n - 1);
            }
            if let Some(i) = select_exprs.iter().position(|e| e == item) {
                if i < labels.len() {
                    return Some(i);
                }
            }
            let bare = item.rsplit('.').next().unwrap_or(item);
            labels.iter().position(|l| l == bare || l == item)
        })
        .collect()
}

fn multiset(rows: &[Vec<String>]) -> BTreeMap<&Vec<String>, usize> {
    let mut m = BTreeMap::new();
    for r in rows {
        *m.entry(r).or_insert(0) += 1;
    }
    m
}

fn rows_diff(reference: &[Vec<String>], proxied: &[Vec<String>]) -> String {
    let (a, b) = (multiset(reference), multiset(proxied));
    let mut out = String::new();
    let _ = writeln!(
        out,
        "    rows: reference {}, shardgate {}",
        reference.len(),
        proxied.len()
    );
    let mut shown = 0;
    for (row, n) in &a {
        let m = b.get(row).copied().unwrap_or(0);
        if m < *n && shown < 8 {
            let _ = writeln!(
                out,
                "    only in reference (x{}): {}",
                n - m,
                row.join(", ")
            );
            shown += 1;
        }
    }
    for (row, n) in &b {
        let m = a.get(row).copied().unwrap_or(0);
        if m < *n && shown < 16 {
            let _ = writeln!(
                out,
                "    only in shardgate (x{}): {}",
                n - m,
                row.join(", ")
            );
            shown += 1;
        }
    }
    out
}

fn has_word(sql: &str, word: &str) -> bool {
    suite::words(sql).iter().any(|w| w == word)
}

/// `None` when the answers agree.
fn compare_results(
    sql: &str,
    order_by_top: bool,
    reference: &Outcome,
    proxied: &Outcome,
) -> Option<String> {
    let (
        Outcome::Done {
            columns: c1,
            rows: r1,
            affected: a1,
        },
        Outcome::Done {
            columns: c2,
            rows: r2,
            affected: a2,
        },
    ) = (reference, proxied)
    else {
        return match (reference, proxied) {
            (Outcome::Error { code: x, .. }, Outcome::Error { code: y, .. }) if x == y => None,
            _ => Some(format!(
                "    reference: {}\n    shardgate: {}\n",
                reference.brief(),
                proxied.brief()
            )),
        };
    };
    let mut out = String::new();
    if !c1.is_empty() && !c2.is_empty() && c1 != c2 {
        let _ = writeln!(
            out,
            "    columns: reference {c1:?}\n             shardgate {c2:?}"
        );
    }
    if a1 != a2 {
        let _ = writeln!(out, "    affected rows: reference {a1}, shardgate {a2}");
    }
    let limited = has_word(sql, "limit");
    if order_by_top {
        if r1 != r2 {
            // rows tying on every sort key may come in any order
            match sort_key_columns(sql, c1) {
                Some(keys) => {
                    let key = |r: &Vec<String>| {
                        keys.iter()
                            .map(|k| r.get(*k).cloned().unwrap_or_default())
                            .collect::<Vec<_>>()
                    };
                    let k1: Vec<_> = r1.iter().map(key).collect();
                    let k2: Vec<_> = r2.iter().map(key).collect();
                    if k1 != k2 {
                        let _ =
                            writeln!(out, "    order differs on the sort keys (columns {keys:?})");
                        out.push_str(&rows_diff(r1, r2));
                        let first = k1
                            .iter()
                            .zip(&k2)
                            .position(|(a, b)| a != b)
                            .unwrap_or(k1.len().min(k2.len()));
                        let _ = writeln!(
                            out,
                            "    first difference at row {first}: reference {:?}, shardgate {:?}",
                            r1.get(first).map(|r| r.join(", ")),
                            r2.get(first).map(|r| r.join(", "))
                        );
                    } else if !limited && multiset(r1) != multiset(r2) {
                        out.push_str(&rows_diff(r1, r2));
                    }
                }
                None => {
                    let _ = writeln!(
                        out,
                        "    ordered rows differ (sort keys not found among the columns)"
                    );
                    out.push_str(&rows_diff(r1, r2));
                }
            }
        }
    } else if limited {
        // LIMIT without ORDER BY: which rows is up to the server
        if r1.len() != r2.len() {
            let _ = writeln!(
                out,
                "    LIMIT without ORDER BY: reference {} rows, shardgate {}",
                r1.len(),
                r2.len()
            );
        }
    } else if multiset(r1) != multiset(r2) {
        out.push_str(&rows_diff(r1, r2));
    }
    (!out.is_empty()).then_some(out)
}

// ------------------------------------------------------------ classification

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    Pass,
    Refused,
    Wrong,
    /// Never executed: the case has no assertion.
    Skipped,
}

#[derive(Clone, Debug)]
pub struct CaseResult {
    pub scenario: String,
    pub id: String,
    pub command: Command,
    pub sql: String,
    pub verdict: Verdict,
    /// Why refused (grouping key), or empty.
    pub reason: String,
    /// Every failing run, for WRONG.
    pub details: String,
}

#[derive(Clone, Debug, Default)]
pub struct ScenarioReport {
    pub scenario: String,
    pub toml: String,
    pub notes: Vec<String>,
    pub not_expressible: BTreeMap<String, String>,
    pub results: Vec<CaseResult>,
    pub seconds: f64,
}

impl ScenarioReport {
    pub fn count(&self, v: Verdict) -> usize {
        self.results.iter().filter(|r| r.verdict == v).count()
    }
}

/// The parameters of one assertion; `None` when the string is malformed.
fn assertion_params(raw: &Option<String>) -> Result<Vec<Param>, String> {
    match raw {
        None => Ok(Vec::new()),
        Some(s) => suite::parse_params(s),
    }
}

/// The tables the SQL names, among the scenario's logical tables.
fn tables_in(sql: &str, known: &BTreeSet<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for w in suite::words(sql) {
        if known.contains(&w) && !out.contains(&w) {
            out.push(w);
        }
    }
    out
}

/// True when an INSERT into `table` omits `column` (so a generator must fill it).
fn insert_omits(sql: &str, table: &str, column: &str, column_count: usize) -> bool {
    let words = suite::words(sql);
    if words.first().map(String::as_str) != Some("insert") || !words.iter().any(|w| w == table) {
        return false;
    }
    let lower = sql.to_lowercase();
    let after = match lower.find(table) {
        Some(p) => lower[p + table.len()..].trim_start(),
        None => return false,
    };
    if after.starts_with("set") {
        return !words.iter().any(|w| w == column);
    }
    if let Some(list) = after.strip_prefix('(') {
        let list = list.split(')').next().unwrap_or("");
        return !suite::words(list).iter().any(|w| w == column);
    }
    // VALUES without a column list: fewer values than columns
    if let Some(v) = after.find('(') {
        let tuple = after[v + 1..].split(')').next().unwrap_or("");
        let mut depth = 0;
        let commas = tuple
            .chars()
            .filter(|c| {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                *c == ',' && depth == 0
            })
            .count();
        return commas + 1 < column_count;
    }
    false
}

/// Splits the SQL into statements and hands each its share of the parameters.
fn statements_with_params(sql: &str, params: &[Param]) -> Vec<(String, Vec<Param>)> {
    let stmts = suite::split_statements(sql);
    let mut out = Vec::new();
    let mut used = 0;
    for s in stmts {
        let n = suite::placeholder_count(&s);
        let end = (used + n).min(params.len());
        out.push((s, params[used..end].to_vec()));
        used = end;
    }
    out
}

struct Sides {
    proxy: MySqlConnection,
    reference: MySqlConnection,
    proxy_ep: Endpoint,
}

impl Sides {
    /// Reconnects to the proxy after a failure that may have broken the session.
    async fn heal(&mut self, outcome: &Outcome) {
        if matches!(outcome, Outcome::Failure(_)) {
            if let Ok(c) = self.proxy_ep.connect().await {
                self.proxy = c;
            }
        }
    }
}

enum RunVerdict {
    Pass,
    Refused(String),
    Wrong(String),
}

async fn run_dql(
    sides: &mut Sides,
    sql: &str,
    params: &[Param],
    prepared: bool,
    top: bool,
) -> RunVerdict {
    let (stmt, binds) = if prepared {
        (sql.to_string(), Some(params))
    } else {
        match suite::substitute(sql, params) {
            Ok(s) => (s, None),
            Err(e) => return RunVerdict::Wrong(format!("    cannot substitute: {e}\n")),
        }
    };
    let reference = exec(&mut sides.reference, &stmt, binds).await;
    let proxied = exec(&mut sides.proxy, &stmt, binds).await;
    sides.heal(&proxied).await;
    if let Outcome::Error {
        code: ER_NOT_SUPPORTED_YET,
        message,
    } = &proxied
    {
        return RunVerdict::Refused(message.clone());
    }
    match compare_results(&stmt, top, &reference, &proxied) {
        None => RunVerdict::Pass,
        Some(d) => RunVerdict::Wrong(d),
    }
}

async fn run_dml(
    sides: &mut Sides,
    loaded: &mut Loaded,
    case: &Case,
    table: &str,
    params: &[Param],
    prepared: bool,
) -> Result<RunVerdict, String> {
    loaded.reset(table).await?;
    let mut diff = String::new();
    for (stmt, ps) in statements_with_params(&case.sql, params) {
        let (text, binds) = if prepared {
            (stmt.clone(), Some(ps.as_slice()))
        } else {
            match suite::substitute(&stmt, &ps) {
                Ok(s) => (s, None),
                Err(e) => return Ok(RunVerdict::Wrong(format!("    cannot substitute: {e}\n"))),
            }
        };
        let reference = exec(&mut sides.reference, &text, binds).await;
        let proxied = exec(&mut sides.proxy, &text, binds).await;
        sides.heal(&proxied).await;
        if let Outcome::Error {
            code: ER_NOT_SUPPORTED_YET,
            message,
        } = &proxied
        {
            // a refusal must leave the table as it was
            for d in &case.destroy_sql {
                let _ = exec(&mut sides.reference, d, None).await;
                let _ = exec(&mut sides.proxy, d, None).await;
            }
            return Ok(RunVerdict::Refused(message.clone()));
        }
        if let Some(d) = compare_results(&text, false, &reference, &proxied) {
            let _ = write!(diff, "    statement {}:\n{d}", clip(&text, 200));
        }
    }
    // the table's contents afterwards, read through ShardGate vs the reference
    let read = format!("SELECT * FROM {table}");
    let reference = exec(&mut sides.reference, &read, None).await;
    let proxied = exec(&mut sides.proxy, &read, None).await;
    sides.heal(&proxied).await;
    if let Some(d) = compare_results(&read, false, &reference, &proxied) {
        let _ = write!(diff, "    table {table} afterwards ({read}):\n{d}");
    }
    let misplaced = loaded.misplaced(table).await;
    if !misplaced.is_empty() {
        let _ = writeln!(diff, "    misplaced rows:");
        for m in misplaced.iter().take(10) {
            let _ = writeln!(diff, "      {m}");
        }
    }
    for d in &case.destroy_sql {
        let _ = exec(&mut sides.reference, d, None).await;
        let _ = exec(&mut sides.proxy, d, None).await;
    }
    Ok(if diff.is_empty() {
        RunVerdict::Pass
    } else {
        RunVerdict::Wrong(diff)
    })
}

/// Loads, runs and classifies every applicable case of one scenario.
pub async fn run_scenario(
    suite_dir: &Path,
    scenario: &str,
    cases: &[Case],
    seed: &Config,
) -> Result<ScenarioReport, String> {
    let started = Instant::now();
    let mut loaded = load(suite_dir, scenario, seed).await?;
    let proxy = start_proxy(loaded.tr.config.clone()).await;
    let proxy_ep = proxy.endpoint();
    let (rh, rp) = loaded.ref_host.clone();
    let mut sides = Sides {
        proxy: proxy_ep
            .connect()
            .await
            .map_err(|e| format!("connect to ShardGate: {e}"))?,
        reference: connect(&rh, rp, &loaded.ref_db).await?,
        proxy_ep,
    };
    let mut report = ScenarioReport {
        scenario: scenario.to_string(),
        toml: loaded.tr.toml.clone(),
        notes: loaded.tr.notes.clone(),
        not_expressible: loaded.tr.not_expressible.clone(),
        ..Default::default()
    };
    for case in cases
        .iter()
        .filter(|c| c.applicable.iter().any(|s| s == scenario))
    {
        let mut result = CaseResult {
            scenario: scenario.to_string(),
            id: case.id(),
            command: case.command,
            sql: case.sql.clone(),
            verdict: Verdict::Pass,
            reason: String::new(),
            details: String::new(),
        };
        let tables = tables_in(&case.sql, &loaded.logical_tables);
        if case.parameters.is_empty() {
            result.verdict = Verdict::Skipped;
            result.reason = "no assertion (never run by the original suite)".into();
            report.results.push(result);
            continue;
        }
        if let Some(t) = tables
            .iter()
            .find(|t| loaded.tr.not_expressible.contains_key(*t))
        {
            result.verdict = Verdict::Refused;
            result.reason = format!(
                "config: table {t} not expressible: {}",
                loaded.tr.not_expressible[t]
            );
            report.results.push(result);
            continue;
        }
        if case.command == Command::Dml {
            let key_gap = loaded.tr.key_not_expressible.iter().find(|(t, (col, _))| {
                let n = loaded
                    .expected
                    .get(*t)
                    .map(|d| d.columns.len())
                    .unwrap_or(usize::MAX);
                insert_omits(&case.sql, t, col, n)
            });
            if let Some((_, (_, reason))) = key_gap {
                result.verdict = Verdict::Refused;
                result.reason = format!("config: {reason}");
                report.results.push(result);
                continue;
            }
        }
        let mut refusals = Vec::new();
        for (i, raw) in case.parameters.iter().enumerate() {
            let params = match assertion_params(raw) {
                Ok(p) => p,
                Err(e) => {
                    result.verdict = Verdict::Wrong;
                    let _ = writeln!(result.details, "  assertion {}: bad parameters: {e}", i + 1);
                    continue;
                }
            };
            for prepared in [true, false] {
                let mode = if prepared { "prepared" } else { "text" };
                let verdict = match case.command {
                    Command::Dql => {
                        run_dql(
                            &mut sides,
                            &case.sql,
                            &params,
                            prepared,
                            case.order_by == "top",
                        )
                        .await
                    }
                    Command::Dml => {
                        let Some(table) = tables.first().cloned() else {
                            result.verdict = Verdict::Wrong;
                            let _ = writeln!(result.details, "  no known table in the DML");
                            break;
                        };
                        run_dml(&mut sides, &mut loaded, case, &table, &params, prepared).await?
                    }
                };
                match verdict {
                    RunVerdict::Pass => {}
                    RunVerdict::Refused(m) => refusals.push(m),
                    RunVerdict::Wrong(d) => {
                        result.verdict = Verdict::Wrong;
                        let _ = write!(
                            result.details,
                            "  assertion {} [{mode}] params {:?}:\n{d}",
                            i + 1,
                            raw.as_deref().unwrap_or("")
                        );
                    }
                }
            }
        }
        if result.verdict != Verdict::Wrong && !refusals.is_empty() {
            result.verdict = Verdict::Refused;
            refusals.sort();
            refusals.dedup();
            result.reason = format!("1235: {}", refusals.join(" | "));
        }
        report.results.push(result);
    }
    // leave the DML tables as loaded
    for table in ["t_order", "t_order_item", "t_single"] {
        if loaded.logical_tables.contains(table) && !loaded.tr.not_expressible.contains_key(table) {
            let _ = loaded.reset(table).await;
        }
    }
    drop(proxy);
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The text report of all scenarios.
pub fn render_report(reports: &[ScenarioReport]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "ShardingSphere e2e conformance (scenarios db, tbl, dbtbl_with_readwrite_splitting)"
    );
    let _ = writeln!(out, "PASS: equal answers; REFUSED: ShardGate error 1235 or rules not expressible; WRONG: any other difference\n");
    let _ = writeln!(
        out,
        "{:<34} {:>5} {:>8} {:>6} {:>8} {:>6}",
        "scenario", "PASS", "REFUSED", "WRONG", "SKIPPED", "secs"
    );
    for r in reports {
        let _ = writeln!(
            out,
            "{:<34} {:>5} {:>8} {:>6} {:>8} {:>6.1}",
            r.scenario,
            r.count(Verdict::Pass),
            r.count(Verdict::Refused),
            r.count(Verdict::Wrong),
            r.count(Verdict::Skipped),
            r.seconds
        );
    }
    for r in reports {
        let _ = writeln!(out, "\n=== {} ===", r.scenario);
        for n in &r.notes {
            let _ = writeln!(out, "note: {n}");
        }
        for (t, why) in &r.not_expressible {
            let _ = writeln!(out, "not expressible: {t}: {why}");
        }
        let mut grouped: BTreeMap<&str, Vec<&CaseResult>> = BTreeMap::new();
        for c in r.results.iter().filter(|c| c.verdict == Verdict::Refused) {
            grouped.entry(c.reason.as_str()).or_default().push(c);
        }
        let _ = writeln!(
            out,
            "\n-- REFUSED ({}), grouped by reason",
            r.count(Verdict::Refused)
        );
        for (reason, cs) in &grouped {
            let _ = writeln!(out, "[{}] {reason}", cs.len());
            for c in cs {
                let _ = writeln!(
                    out,
                    "    {}  {}",
                    c.id,
                    clip(&c.sql.replace(['\n', '\r'], " "), 160)
                );
            }
        }
        let _ = writeln!(out, "\n-- WRONG ({})", r.count(Verdict::Wrong));
        for c in r.results.iter().filter(|c| c.verdict == Verdict::Wrong) {
            let _ = writeln!(
                out,
                "{}  {}\n{}",
                c.id,
                c.sql.replace(['\n', '\r'], " "),
                c.details
            );
        }
        let skipped: Vec<&str> = r
            .results
            .iter()
            .filter(|c| c.verdict == Verdict::Skipped)
            .map(|c| c.id.as_str())
            .collect();
        if !skipped.is_empty() {
            let _ = writeln!(out, "\n-- SKIPPED (no assertion): {}", skipped.join(", "));
        }
        let _ = writeln!(out, "\n-- translated config\n{}", r.toml);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_items_and_keys() {
        let sql = "SELECT DATE(i.creation_date) AS creation_date FROM `t_order_item` AS i ORDER BY DATE(i.creation_date) DESC";
        assert_eq!(outer_order_items(sql).unwrap(), ["date(i.creation_date)"]);
        assert_eq!(
            sort_key_columns(sql, &["creation_date:DATE".into()]),
            Some(vec![0])
        );
        let sql = "SELECT * FROM t_order o ORDER BY o.order_id, 2 DESC LIMIT 3";
        let labels: Vec<String> = ["order_id:BIGINT", "user_id:INT"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(sort_key_columns(sql, &labels), Some(vec![0, 1]));
        assert_eq!(
            replace_word(
                "CREATE TABLE db_1.t (x); DROP DATABASE db_1",
                "db_1",
                "ss_db_1"
            ),
            "CREATE TABLE ss_db_1.t (x); DROP DATABASE ss_db_1"
        );
        assert_eq!(replace_word("db_10.t", "db_1", "x"), "db_10.t");
    }

    fn done(columns: &[&str], rows: &[&[&str]]) -> Outcome {
        Outcome::Done {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: rows
                .iter()
                .map(|r| r.iter().map(|v| v.to_string()).collect())
                .collect(),
            affected: 0,
        }
    }

    #[test]
    fn comparisons() {
        let cols = ["order_id:BIGINT", "user_id:INT"];
        let a = done(&cols, &[&["1", "10"], &["2", "10"], &["3", "11"]]);
        let tie = done(&cols, &[&["2", "10"], &["1", "10"], &["3", "11"]]);
        let sql = "SELECT * FROM t ORDER BY user_id";
        // ties on the sort key may come in any order
        assert_eq!(compare_results(sql, true, &a, &tie), None);
        // but not rows out of order
        let bad = done(&cols, &[&["3", "11"], &["1", "10"], &["2", "10"]]);
        assert!(compare_results(sql, true, &a, &bad).is_some());
        // a missing row, a changed value, other labels: wrong
        let missing = done(&cols, &[&["1", "10"], &["2", "10"]]);
        assert!(compare_results("SELECT * FROM t", false, &a, &missing).is_some());
        let changed = done(&cols, &[&["1", "10"], &["2", "10"], &["3", "12"]]);
        assert!(compare_results("SELECT * FROM t", false, &a, &changed).is_some());
        let relabeled = done(
            &["id:BIGINT", "user_id:INT"],
            &[&["1", "10"], &["2", "10"], &["3", "11"]],
        );
        assert!(compare_results("SELECT * FROM t", false, &a, &relabeled).is_some());
        // multiset without ORDER BY
        let shuffled = done(&cols, &[&["3", "11"], &["1", "10"], &["2", "10"]]);
        assert_eq!(
            compare_results("SELECT * FROM t", false, &a, &shuffled),
            None
        );
        // an error where the reference answers
        let err = Outcome::Error {
            code: 1146,
            message: "no table".into(),
        };
        assert!(compare_results("SELECT * FROM t", false, &a, &err).is_some());
    }

    #[test]
    fn omitted_keys() {
        assert!(insert_omits(
            "INSERT INTO t_order_item (order_id, user_id) VALUES (?, ?)",
            "t_order_item",
            "item_id",
            6
        ));
        assert!(!insert_omits(
            "INSERT INTO t_order_item(item_id, order_id) values (?, ?)",
            "t_order_item",
            "item_id",
            6
        ));
        assert!(insert_omits(
            "INSERT INTO t_order_item VALUES (?, ?, 1, 1, '2017-08-08')",
            "t_order_item",
            "item_id",
            6
        ));
        assert!(!insert_omits(
            "INSERT INTO t_order_item values(?, ?, ?, 1, 1, '2017-08-08')",
            "t_order_item",
            "item_id",
            6
        ));
        assert!(insert_omits(
            "INSERT INTO t_order_item SET order_id = ?, user_id = ?",
            "t_order_item",
            "item_id",
            6
        ));
        assert!(!insert_omits(
            "INSERT INTO t_order (order_id) VALUES (1)",
            "t_order_item",
            "item_id",
            6
        ));
    }
}
