//! `verify`: does the new layout hold exactly the old layout's rows, each
//! where the new rules place it?
//!
//! Rows are compared in primary-key chunks across all source tables and all
//! target tables at once: chunk boundaries are every N-th key of the sorted
//! source keys (keys may be sparse 64-bit snowflake ids, so value ranges
//! would give empty and huge chunks), each table reports per chunk its
//! `COUNT(*)` and `BIT_XOR(CRC32(CONCAT_WS(every column, NULL markers)))` in
//! one grouped scan, and chunks whose sums differ are compared row by row.
//! Keys found different are compared again at a consistent point: their
//! source rows (and the gaps of missing ones) locked in share mode, so no
//! change of them can commit meanwhile, the change streams let apply
//! everything the primaries logged before, then the targets read, and the
//! locks released — a bounded pause of those rows only, so rows the
//! application changes while the streams lag are never reported. Separately,
//! every target row's sharding values are routed with the new rules: a row
//! in another table than the one they name is misplaced.

use crate::backend::Backends;
use crate::catchup::{positions_now, Control};
use crate::error::{DbContext, MigrateError};
use crate::job::{integer_key_of, JobContext};
use crate::layout::{Mode, RowRouter};
use crate::retry::retried;
use crate::schema::TableSchema;
use crate::state::{now_ms, JobState, Verification};
use crate::values::{display_key, ident, ident_list, key_list, key_of, key_param, Key};
use futures_util::StreamExt;
use mysql_async::prelude::Queryable;
use mysql_async::{TxOpts, Value};
use serde::Serialize;
use shardgate_rules::{DataNode, ShardingRules};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

/// Tables scanned at once: each scan is one query on its server, so
/// several keep every server (and core) busy.
const SCANS_AT_ONCE: usize = 8;

/// Keys compared again at once (locked together while the streams settle).
const RECHECK_BATCH: usize = 1000;

/// How long rechecked rows may stay locked while the streams apply what the
/// primaries logged before: the application's writes of those rows wait
/// that long at most.
const SETTLE_LIMIT: Duration = Duration::from_secs(30);

/// How long a share lock on a rechecked row is waited for (seconds).
const LOCK_WAIT_SECS: u32 = 5;

#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Source rows per chunk.
    pub chunk_rows: usize,
    /// How many times differing keys are compared again, at a consistent
    /// point, before they count (0: what the scan found counts).
    pub rechecks: u32,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            chunk_rows: 1000,
            rechecks: 1,
        }
    }
}

/// A target row in another table than the new rules name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Misplaced {
    pub key: String,
    pub found: String,
    pub expected: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// The old layout's tables compared against the new, live ones (after
    /// the cutover): sources are the new layout's, targets the old's.
    pub after_cutover: bool,
    pub chunks: usize,
    pub mismatched_chunks: usize,
    pub source_rows: u64,
    pub target_rows: u64,
    /// Keys in the old layout, not in the new.
    pub missing: Vec<String>,
    /// Keys in the new layout, not in the old (or there twice).
    pub extra: Vec<String>,
    /// Keys whose row differs.
    pub different: Vec<String>,
    pub misplaced: Vec<Misplaced>,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty()
            && self.extra.is_empty()
            && self.different.is_empty()
            && self.misplaced.is_empty()
    }

    pub fn summary(&self) -> Verification {
        Verification {
            at_ms: now_ms(),
            after_cutover: self.after_cutover,
            chunks: self.chunks,
            source_rows: self.source_rows,
            target_rows: self.target_rows,
            missing: self.missing.len(),
            extra: self.extra.len(),
            different: self.different.len(),
            misplaced: self.misplaced.len(),
        }
    }
}

/// Chunk starts: every `chunk_rows`-th of the sorted keys, from the
/// `chunk_rows`-th on (chunk 0 holds everything below the first start).
pub fn chunk_starts(mut keys: Vec<Key>, chunk_rows: usize) -> Vec<Key> {
    keys.sort_unstable();
    keys.dedup();
    keys.into_iter()
        .skip(chunk_rows.max(1))
        .step_by(chunk_rows.max(1))
        .collect()
}

/// SQL giving a row's chunk number from its key: `INTERVAL(key, s1, s2, ...)`
/// is 0 below s1, 1 from s1 below s2, and so on.
pub fn chunk_expression(key_column: &str, starts: &[Key]) -> String {
    if starts.is_empty() {
        return "0".into();
    }
    let list: Vec<String> = starts.iter().map(Key::to_string).collect();
    format!("INTERVAL({}, {})", ident(key_column), list.join(", "))
}

/// SQL of a row's checksum: CRC32 over every column and whether it is NULL
/// (CONCAT_WS skips NULLs, so `NULL` and `''` would otherwise agree).
pub fn row_checksum_expression(columns: &[String]) -> String {
    let parts: Vec<String> = columns
        .iter()
        .map(|c| format!("{0}, ISNULL({0})", ident(c)))
        .collect();
    format!("CRC32(CONCAT_WS(CHAR(31), {}))", parts.join(", "))
}

/// Rows by key, each with the table it was read from.
type RowsByKey = HashMap<Key, Vec<(DataNode, Vec<Value>)>>;

/// The keys missing from, extra in, or different in the target.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Differences {
    pub missing: BTreeSet<Key>,
    pub extra: BTreeSet<Key>,
    pub different: BTreeSet<Key>,
}

impl Differences {
    fn keys(&self) -> Vec<Key> {
        self.missing
            .iter()
            .chain(&self.extra)
            .chain(&self.different)
            .copied()
            .collect()
    }
}

/// Compares rows read from both sides (for the same keys).
pub fn classify(source: &RowsByKey, target: &RowsByKey) -> Differences {
    let mut found = Differences::default();
    for (key, rows) in source {
        match target.get(key) {
            None => {
                found.missing.insert(*key);
            }
            Some(copies) => {
                if copies.iter().any(|(_, values)| *values != rows[0].1) {
                    found.different.insert(*key);
                }
                if copies.len() > 1 {
                    found.extra.insert(*key);
                }
            }
        }
    }
    for key in target.keys() {
        if !source.contains_key(key) {
            found.extra.insert(*key);
        }
    }
    found
}

struct Sides<'a> {
    backends: &'a Backends,
    schema: TableSchema,
    columns: Vec<String>,
    key_column: String,
    key_index: usize,
    sources: Vec<DataNode>,
    targets: Vec<DataNode>,
}

/// The running change streams that keep the compared side current, and the
/// primaries they read.
#[derive(Clone, Copy)]
pub struct Streams<'a> {
    pub control: &'a Control,
    pub sources: &'a [String],
}

impl Sides<'_> {
    /// Every source key.
    async fn source_keys(&self) -> Result<Vec<Key>, MigrateError> {
        let per_table = futures_util::stream::iter(&self.sources)
            .map(|node| async move {
                let mut conn = self.backends.conn(&node.data_source).await?;
                let sql = format!(
                    "SELECT {} FROM {}",
                    ident(&self.key_column),
                    ident(&node.table)
                );
                let values: Vec<Value> = conn
                    .exec(sql, ())
                    .await
                    .context(|| format!("reading the keys of {node}"))?;
                Ok::<_, MigrateError>(values.iter().filter_map(key_of).collect::<Vec<Key>>())
            })
            .buffer_unordered(SCANS_AT_ONCE)
            .collect::<Vec<_>>()
            .await;
        let mut keys = Vec::new();
        for table_keys in per_table {
            keys.extend(table_keys?);
        }
        Ok(keys)
    }

    /// (count, checksum) per chunk over `tables`.
    async fn chunk_sums(
        &self,
        tables: &[DataNode],
        chunk_sql: &str,
        chunks: usize,
    ) -> Result<Vec<(u64, u64)>, MigrateError> {
        let mut sums = vec![(0u64, 0u64); chunks];
        let checksum = row_checksum_expression(&self.columns);
        let checksum = checksum.as_str();
        let per_table = futures_util::stream::iter(tables)
            .map(|node| async move {
                let mut conn = self.backends.conn(&node.data_source).await?;
                let sql = format!(
                    "SELECT {chunk_sql} AS sg_chunk, COUNT(*), BIT_XOR({checksum}) FROM {} GROUP BY sg_chunk",
                    ident(&node.table)
                );
                let rows: Vec<(u64, u64, u64)> = conn
                    .query(sql)
                    .await
                    .context(|| format!("checksumming {node}"))?;
                Ok::<_, MigrateError>(rows)
            })
            .buffer_unordered(SCANS_AT_ONCE)
            .collect::<Vec<_>>()
            .await;
        for rows in per_table {
            for (chunk, count, xor) in rows? {
                if let Some(sum) = usize::try_from(chunk).ok().and_then(|c| sums.get_mut(c)) {
                    sum.0 += count;
                    sum.1 ^= xor;
                }
            }
        }
        Ok(sums)
    }

    /// Rows of `tables` matching `condition` (with `params`), by key.
    async fn read(
        &self,
        tables: &[DataNode],
        condition: &str,
        params: Vec<Value>,
    ) -> Result<RowsByKey, MigrateError> {
        let mut rows: RowsByKey = HashMap::new();
        for node in tables {
            let mut conn = self.backends.conn(&node.data_source).await?;
            let sql = format!(
                "SELECT {} FROM {} WHERE {condition}",
                ident_list(&self.columns),
                ident(&node.table)
            );
            let found: Vec<mysql_async::Row> = conn
                .exec(sql, params.clone())
                .await
                .context(|| format!("reading rows of {node}"))?;
            self.collect(&mut rows, node, found);
        }
        Ok(rows)
    }

    /// Files rows read from `node` under their keys.
    fn collect(&self, into: &mut RowsByKey, node: &DataNode, rows: Vec<mysql_async::Row>) {
        for row in rows {
            let values = row.unwrap();
            if let Some(key) = values.get(self.key_index).and_then(key_of) {
                into.entry(key).or_default().push((node.clone(), values));
            }
        }
    }

    /// Row-by-row comparison of chunk `chunk` (between `starts`).
    async fn compare_chunk(
        &self,
        starts: &[Key],
        chunk: usize,
    ) -> Result<Differences, MigrateError> {
        let key = ident(&self.key_column);
        let mut conditions = Vec::new();
        let mut params = Vec::new();
        if let Some(low) = chunk.checked_sub(1).and_then(|i| starts.get(i)) {
            conditions.push(format!("{key} >= ?"));
            params.push(key_param(*low));
        }
        if let Some(high) = starts.get(chunk) {
            conditions.push(format!("{key} < ?"));
            params.push(key_param(*high));
        }
        if conditions.is_empty() {
            conditions.push("1".into());
        }
        let condition = conditions.join(" AND ");
        let source = self.read(&self.sources, &condition, params.clone()).await?;
        let target = self.read(&self.targets, &condition, params).await?;
        Ok(classify(&source, &target))
    }

    /// Compares `keys` again on both sides at a consistent point (see the
    /// module's doc), a batch at a time.
    async fn recheck(
        &self,
        keys: &[Key],
        streams: Streams<'_>,
    ) -> Result<Differences, MigrateError> {
        let mut found = Differences::default();
        for batch in keys.chunks(RECHECK_BATCH) {
            // A deadlock with an application transaction, or a lock it
            // holds too long, only means trying the batch again.
            let more = retried(|| self.recheck_settled(batch, streams)).await?;
            found.missing.extend(more.missing);
            found.extra.extend(more.extra);
            found.different.extend(more.different);
        }
        Ok(found)
    }

    async fn recheck_settled(
        &self,
        keys: &[Key],
        streams: Streams<'_>,
    ) -> Result<Differences, MigrateError> {
        // Most rows differed only while the streams lagged: once they
        // applied what was logged by now, rows read equal are equal, and
        // only those still differing are locked (the application's writes
        // of them wait while the streams catch up again).
        let logged = positions_now(self.backends, streams.sources).await?;
        streams.control.wait_until(&logged, SETTLE_LIMIT).await?;
        let condition = format!("{} IN ({})", ident(&self.key_column), key_list(keys));
        let source = self.read(&self.sources, &condition, vec![]).await?;
        let target = self.read(&self.targets, &condition, vec![]).await?;
        let differing = classify(&source, &target).keys();
        if differing.is_empty() {
            return Ok(Differences::default());
        }
        self.compare_locked(&differing, streams).await
    }

    /// Compares `keys` with their source rows locked (see the module's doc).
    async fn compare_locked(
        &self,
        keys: &[Key],
        streams: Streams<'_>,
    ) -> Result<Differences, MigrateError> {
        let condition = format!("{} IN ({})", ident(&self.key_column), key_list(keys));
        let mut by_source: BTreeMap<&str, Vec<&DataNode>> = BTreeMap::new();
        for node in &self.sources {
            by_source.entry(&node.data_source).or_default().push(node);
        }
        let mut conns = Vec::with_capacity(by_source.len());
        for data_source in by_source.keys() {
            conns.push(self.backends.conn(data_source).await?);
        }
        let mut source: RowsByKey = HashMap::new();
        let mut locks = Vec::with_capacity(conns.len());
        let mut repeatable_read = TxOpts::default();
        repeatable_read.with_isolation_level(mysql_async::IsolationLevel::RepeatableRead);
        for (conn, tables) in conns.iter_mut().zip(by_source.values()) {
            let mut tx = conn
                .start_transaction(repeatable_read.clone())
                .await
                .context(|| "locking the rows to compare again".to_string())?;
            for node in tables {
                // In REPEATABLE READ a share-mode read of a missing key
                // locks its gap: the row cannot appear meanwhile either.
                let sql = format!(
                    "SET STATEMENT innodb_lock_wait_timeout = {LOCK_WAIT_SECS} FOR \
                     SELECT {} FROM {} WHERE {condition} LOCK IN SHARE MODE",
                    ident_list(&self.columns),
                    ident(&node.table)
                );
                // Binary protocol, as `read` uses: values compare alike.
                let rows: Vec<mysql_async::Row> = tx
                    .exec(sql, ())
                    .await
                    .context(|| format!("locking rows of {node} to compare them again"))?;
                self.collect(&mut source, node, rows);
            }
            locks.push(tx);
        }
        // Every committed change of the locked rows is logged before this
        // position; none can follow until the locks go.
        let logged = positions_now(self.backends, streams.sources).await?;
        streams.control.wait_until(&logged, SETTLE_LIMIT).await?;
        let target = self.read(&self.targets, &condition, vec![]).await?;
        for tx in locks {
            tx.commit()
                .await
                .context(|| "releasing the rows compared again".to_string())?;
        }
        Ok(classify(&source, &target))
    }

    /// Every target row in the table `rules` name (`table_of` gives the
    /// physical table a node of theirs lives under now)?
    async fn placement(
        &self,
        context: &JobContext,
        rules: &ShardingRules,
        table_of: impl Fn(&DataNode) -> DataNode + Sync,
    ) -> Result<(u64, Vec<Misplaced>), MigrateError> {
        let sharding = rules.sharding_columns(&context.layout.table);
        let mut columns = self.schema.primary_key.clone();
        columns.extend(sharding.iter().map(|c| c.to_string()));
        let kinds = self.schema.kinds_of(&sharding);
        let router = RowRouter::new(&context.layout.table, &sharding, &columns, &kinds)
            .map_err(|source| MigrateError::route(context.layout.table.clone(), "-", source))?;
        let key_columns = self.schema.primary_key.len();
        let (router, columns, table_of) = (&router, &columns, &table_of);
        let per_table = futures_util::stream::iter(&self.targets)
            .map(|node| async move {
                let mut conn = self.backends.conn(&node.data_source).await?;
                let context_text = || format!("reading the sharding columns of {node}");
                let sql = format!("SELECT {} FROM {}", ident_list(columns), ident(&node.table));
                let mut rows = 0u64;
                let mut misplaced = Vec::new();
                let mut result = conn.query_iter(sql).await.context(context_text)?;
                if let Some(mut stream) = result
                    .stream::<mysql_async::Row>()
                    .await
                    .context(context_text)?
                {
                    while let Some(row) = stream.next().await {
                        let values = row.context(context_text)?.unwrap();
                        rows += 1;
                        let expected = match router.route(rules, &values) {
                            Ok(to) => table_of(&to).to_string(),
                            Err(error) => format!("nowhere ({error})"),
                        };
                        if expected != node.to_string() {
                            misplaced.push(Misplaced {
                                key: display_key(&values, key_columns),
                                found: node.to_string(),
                                expected,
                            });
                        }
                    }
                }
                Ok::<_, MigrateError>((rows, misplaced))
            })
            .buffer_unordered(SCANS_AT_ONCE)
            .collect::<Vec<_>>()
            .await;
        let mut rows = 0;
        let mut misplaced = Vec::new();
        for table in per_table {
            let (table_rows, table_misplaced) = table?;
            rows += table_rows;
            misplaced.extend(table_misplaced);
        }
        // Tables finish in any order: report in a stable one.
        misplaced.sort_by(|a, b| (&a.found, &a.key).cmp(&(&b.found, &b.key)));
        Ok((rows, misplaced))
    }
}

/// Verifies a job's new layout against its old one: before cutover, the
/// new layout's tables (staging names) against the old, live ones, placed
/// by the new rules; after a rebuild's cutover (`after_cutover`), the old
/// layout's tables (retired names), which the reverse stream keeps, against
/// the new, live ones, placed by the old rules. `streams`: the running
/// streams that keep the compared side current (differing rows are
/// compared again once they applied what came before); an extend has none,
/// its rows stay in place and only their placement is checked.
pub async fn verify(
    state: &JobState,
    context: &JobContext,
    backends: &Backends,
    options: &VerifyOptions,
    after_cutover: bool,
    streams: Option<Streams<'_>>,
) -> Result<VerifyReport, MigrateError> {
    let Some((model, schema)) = context.model_schema(backends).await? else {
        return Ok(VerifyReport::default());
    };
    let layout = &context.layout;
    let after_cutover = after_cutover && state.mode == Mode::Rebuild;
    let (sources, targets) = match state.mode {
        Mode::Rebuild if after_cutover => (
            layout.new.clone(),
            layout.old.iter().map(|n| layout.retired(n)).collect(),
        ),
        Mode::Rebuild => (layout.old.clone(), layout.tables_to_create(Mode::Rebuild)),
        // Rows stay in place: the old tables (and the new, empty ones) are
        // the new layout.
        Mode::Extend => (layout.old.clone(), layout.new.clone()),
    };
    let mut sides = Sides {
        backends,
        columns: schema.column_names(),
        key_column: String::new(),
        key_index: 0,
        schema,
        sources,
        targets,
    };
    let mut report = VerifyReport {
        after_cutover,
        ..VerifyReport::default()
    };
    let (target_rows, misplaced) = if after_cutover {
        sides
            .placement(context, &context.old_rules, |n| layout.retired(n))
            .await?
    } else {
        sides
            .placement(context, &context.new_rules, |n| {
                layout.staging(n, state.mode)
            })
            .await?
    };
    report.target_rows = target_rows;
    report.misplaced = misplaced;
    if state.mode == Mode::Extend {
        // Same tables on both sides: only placement can be wrong.
        report.source_rows = target_rows;
        return Ok(report);
    }
    let Some(streams) = streams else {
        return Err(MigrateError::CatchUp(
            "a rebuild is verified beside its running change streams".into(),
        ));
    };
    sides.key_index = integer_key_of(model, &sides.schema)?;
    sides.key_column = sides.columns[sides.key_index].clone();

    let keys = sides.source_keys().await?;
    let starts = chunk_starts(keys, options.chunk_rows);
    let chunks = starts.len() + 1;
    let chunk_sql = chunk_expression(&sides.key_column, &starts);
    let (source_sums, target_sums) = futures_util::future::join(
        sides.chunk_sums(&sides.sources, &chunk_sql, chunks),
        sides.chunk_sums(&sides.targets, &chunk_sql, chunks),
    )
    .await;
    let (source_sums, target_sums) = (source_sums?, target_sums?);
    report.chunks = chunks;
    report.source_rows = source_sums.iter().map(|s| s.0).sum();
    let mut found = Differences::default();
    for chunk in 0..chunks {
        if source_sums[chunk] != target_sums[chunk] {
            report.mismatched_chunks += 1;
            let more = sides.compare_chunk(&starts, chunk).await?;
            found.missing.extend(more.missing);
            found.extra.extend(more.extra);
            found.different.extend(more.different);
        }
    }
    for _ in 0..options.rechecks {
        let keys = found.keys();
        if keys.is_empty() {
            break;
        }
        found = sides.recheck(&keys, streams).await?;
    }
    let text = |keys: BTreeSet<Key>| keys.into_iter().map(|k| k.to_string()).collect();
    report.missing = text(found.missing);
    report.extra = text(found.extra);
    report.different = text(found.different);
    Ok(report)
}

/// At most this many keys of each kind are printed.
const SHOWN: usize = 50;

/// The report for people.
pub fn render_text(job: &str, report: &VerifyReport) -> String {
    let what = if report.after_cutover {
        "rows of the new, live layout against the old layout's tables (kept by the reverse stream):"
    } else {
        "source rows against"
    };
    let mut out = format!(
        "{job}: verified {} {what} {} target rows in {} chunks ({} mismatched)\n",
        report.source_rows, report.target_rows, report.chunks, report.mismatched_chunks
    );
    let list = |name: &str, keys: &[String], out: &mut String| {
        if keys.is_empty() {
            return;
        }
        let shown: Vec<&str> = keys.iter().take(SHOWN).map(String::as_str).collect();
        let more = keys.len().saturating_sub(SHOWN);
        out.push_str(&format!("  {name} ({}): {}", keys.len(), shown.join(", ")));
        if more > 0 {
            out.push_str(&format!(" and {more} more"));
        }
        out.push('\n');
    };
    list("missing in the new layout", &report.missing, &mut out);
    list("extra in the new layout", &report.extra, &mut out);
    list("different", &report.different, &mut out);
    for m in report.misplaced.iter().take(SHOWN) {
        out.push_str(&format!(
            "  misplaced: key {} is in {}, the new rules place it in {}\n",
            m.key, m.found, m.expected
        ));
    }
    if report.misplaced.len() > SHOWN {
        out.push_str(&format!(
            "  and {} more misplaced\n",
            report.misplaced.len() - SHOWN
        ));
    }
    out.push_str(if report.is_clean() {
        "  result: no differences\n"
    } else {
        "  result: DIFFERENCES FOUND\n"
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_starts_follow_sorted_sparse_keys() {
        let keys = vec![900_000_000_000_000_009, 5, 7, 1 << 60, 3, 11];
        assert_eq!(
            chunk_starts(keys.clone(), 2),
            vec![7, 900_000_000_000_000_009]
        );
        assert_eq!(chunk_starts(keys.clone(), 6), Vec::<Key>::new());
        assert_eq!(
            chunk_starts(keys, 1),
            vec![5, 7, 11, 900_000_000_000_000_009, 1 << 60]
        );
        assert_eq!(chunk_expression("id", &[]), "0");
        assert_eq!(chunk_expression("id", &[7, 11]), "INTERVAL(`id`, 7, 11)");
    }

    #[test]
    fn checksums_mark_nulls() {
        assert_eq!(
            row_checksum_expression(&["a".into(), "b".into()]),
            "CRC32(CONCAT_WS(CHAR(31), `a`, ISNULL(`a`), `b`, ISNULL(`b`)))"
        );
    }

    #[test]
    fn rows_are_missing_extra_duplicated_or_different() {
        let node = |t: &str| DataNode::new("ds0", t);
        let row = |v: i64| vec![Value::Int(v)];
        let mut source: RowsByKey = HashMap::new();
        let mut target: RowsByKey = HashMap::new();
        for key in 1..=4 {
            source.insert(key, vec![(node("a"), row(key as i64))]);
        }
        target.insert(1, vec![(node("b"), row(1))]);
        target.insert(2, vec![(node("b"), row(20))]);
        target.insert(3, vec![(node("b"), row(3)), (node("c"), row(3))]);
        target.insert(5, vec![(node("b"), row(5))]);
        let found = classify(&source, &target);
        assert_eq!(found.missing, BTreeSet::from([4]));
        assert_eq!(found.different, BTreeSet::from([2]));
        assert_eq!(found.extra, BTreeSet::from([3, 5]));
    }
}
