//! The record a live load leaves and the checks against it: a read's
//! answer against the last write, and the table's content — through the
//! proxy or straight from the physical tables of a rules config, placement
//! included — against every row the load kept, deleted or left uncertain.

use super::worker::WorkerRecord;
use super::{LoadConfig, LoadRow, WriteTiming};
use crate::sharding::{misplaced_rows, read_physical_tables};
use crate::Config;
use shardgate_rules::ShardingRules;
use sqlx::mysql::{MySqlConnection, MySqlRow};
use sqlx::{Executor, Row};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// The marker and value columns of a row.
pub(super) fn load_row(row: &MySqlRow, marker: &str, value: &str) -> Result<LoadRow, String> {
    let marker_value: Option<String> = row
        .try_get(marker)
        .map_err(|e| format!("column {marker}: {e}"))?;
    let value: Option<String> = row
        .try_get(value)
        .map_err(|e| format!("column {value}: {e}"))?;
    Ok(LoadRow {
        marker: marker_value.unwrap_or_default(),
        value,
    })
}

/// `None` when a read of `key` returned what the last write left: the row
/// (`expected`) or, after its delete, nothing.
pub fn compare_read(key: i64, expected: Option<&LoadRow>, got: &[LoadRow]) -> Option<String> {
    match (expected, got) {
        (Some(want), [row]) if row == want => None,
        (None, []) => None,
        (Some(want), []) => Some(format!("key {key}: expected {want}, got no row")),
        (None, rows) => Some(format!(
            "key {key}: deleted, got {}",
            rows.iter()
                .map(LoadRow::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )),
        (Some(want), rows) => Some(format!(
            "key {key}: expected {want}, got {}",
            rows.iter()
                .map(LoadRow::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// A load row found in the table, and where.
#[derive(Clone, Debug)]
pub struct FoundRow {
    pub key: i64,
    pub row: LoadRow,
    /// `shardgate`, or `ds1.users_5` for a physical table.
    pub place: String,
}

/// What the load did, and the record to check the table against.
#[derive(Debug)]
pub struct LoadReport {
    pub table: String,
    pub key_column: String,
    pub marker_column: String,
    pub value_column: String,
    /// Every row the load inserted has a marker starting with this.
    pub marker_prefix: String,
    pub started: Instant,
    pub elapsed: Duration,
    pub inserted: u64,
    pub updated: u64,
    pub deleted: u64,
    pub reads: u64,
    /// Statements refused with an error reply (they changed nothing).
    pub refused: u64,
    pub reconnects: u64,
    pub text_statements: u64,
    pub prepared_statements: u64,
    /// Reads that disagreed with the last write, and writes whose reply
    /// contradicts the record (a row missing, a key generated twice).
    pub wrong_answers: Vec<String>,
    /// Failed statements and reconnects (the first hundred per worker).
    pub failures: Vec<String>,
    pub failure_count: u64,
    /// Keys whose last write has an unknown outcome: not checked exactly.
    pub uncertain_keys: BTreeSet<i64>,
    /// Markers of inserts with an unknown outcome: such a row may or may
    /// not exist, once.
    pub uncertain_inserts: BTreeSet<String>,
    /// Every live row of the load, by key.
    pub expected: BTreeMap<i64, LoadRow>,
    /// Keys the load deleted: they must be gone.
    pub deleted_keys: BTreeSet<i64>,
    /// Every write, in the order they were sent.
    pub writes: Vec<WriteTiming>,
}

impl LoadReport {
    pub(super) fn merge(
        config: &LoadConfig,
        marker_prefix: String,
        started: Instant,
        records: Vec<WorkerRecord>,
        failures: Vec<String>,
    ) -> LoadReport {
        let mut report = LoadReport {
            table: config.table.clone(),
            key_column: config.key_column.clone(),
            marker_column: config.marker_column.clone(),
            value_column: config.value_column.clone(),
            marker_prefix,
            started,
            elapsed: started.elapsed(),
            inserted: 0,
            updated: 0,
            deleted: 0,
            reads: 0,
            refused: 0,
            reconnects: 0,
            text_statements: 0,
            prepared_statements: 0,
            wrong_answers: Vec::new(),
            failure_count: failures.len() as u64,
            failures,
            uncertain_keys: BTreeSet::new(),
            uncertain_inserts: BTreeSet::new(),
            expected: BTreeMap::new(),
            deleted_keys: BTreeSet::new(),
            writes: Vec::new(),
        };
        for record in records {
            report.inserted += record.inserted;
            report.updated += record.updated;
            report.deleted += record.deleted_count;
            report.reads += record.reads;
            report.refused += record.refused;
            report.reconnects += record.reconnects;
            report.text_statements += record.text_statements;
            report.prepared_statements += record.prepared_statements;
            report.wrong_answers.extend(record.wrong_answers);
            report.failures.extend(record.failures);
            report.failure_count += record.failure_count;
            report.uncertain_inserts.extend(record.uncertain_inserts);
            report.writes.extend(record.writes);
            // Workers own their keys; a key in two workers' records was
            // generated twice, and its state is then unknown.
            let mut keys: Vec<i64> = record.rows.keys().copied().collect();
            keys.extend(&record.deleted);
            keys.extend(&record.uncertain_keys);
            for key in keys {
                if report.expected.contains_key(&key)
                    || report.deleted_keys.contains(&key)
                    || report.uncertain_keys.contains(&key)
                {
                    report.wrong_answers.push(format!(
                        "key {key} was generated for inserts of two workers"
                    ));
                    report.expected.remove(&key);
                    report.deleted_keys.remove(&key);
                    report.uncertain_keys.insert(key);
                }
            }
            for (key, row) in record.rows {
                if !report.uncertain_keys.contains(&key) {
                    report.expected.insert(key, row);
                }
            }
            for key in record.deleted {
                if !report.uncertain_keys.contains(&key) {
                    report.deleted_keys.insert(key);
                }
            }
            report.uncertain_keys.extend(record.uncertain_keys);
        }
        report.writes.sort_by_key(|w| w.started);
        report
    }

    /// The slowest write of the run.
    pub fn longest_write(&self) -> Option<&WriteTiming> {
        self.writes.iter().max_by_key(|w| w.latency)
    }

    /// The slowest write among those in flight at some moment between
    /// `from` and `to` (e.g. a cutover's start and end).
    pub fn longest_write_overlapping(&self, from: Instant, to: Instant) -> Option<&WriteTiming> {
        self.writes
            .iter()
            .filter(|w| w.started <= to && w.ended() >= from)
            .max_by_key(|w| w.latency)
    }

    /// The writes in flight at some moment between `from` and `to`.
    pub fn writes_overlapping(&self, from: Instant, to: Instant) -> usize {
        self.writes
            .iter()
            .filter(|w| w.started <= to && w.ended() >= from)
            .count()
    }

    /// One paragraph for a test's output.
    pub fn summary(&self) -> String {
        format!(
            "live load on {} for {:.1?}: {} inserted, {} updated, {} deleted, {} reads \
             ({} text, {} prepared statements); {} live rows, {} deleted; {} wrong answers, \
             {} failures ({} refused), {} reconnects, {} uncertain keys, {} uncertain inserts; \
             longest write: {}",
            self.table,
            self.elapsed,
            self.inserted,
            self.updated,
            self.deleted,
            self.reads,
            self.text_statements,
            self.prepared_statements,
            self.expected.len(),
            self.deleted_keys.len(),
            self.wrong_answers.len(),
            self.failure_count,
            self.refused,
            self.reconnects,
            self.uncertain_keys.len(),
            self.uncertain_inserts.len(),
            self.longest_write()
                .map_or_else(|| "none".to_string(), |w| w.to_string())
        )
    }

    /// Compares the table as ShardGate serves it with the record: every
    /// load row (a scan for the marker prefix) and a point read of every
    /// live key. Returns the differences, each naming its key.
    pub async fn check_content(&self, proxy: &mut MySqlConnection) -> Vec<String> {
        let scan = format!(
            "SELECT `{key}`, `{marker}`, `{value}` FROM `{table}` WHERE `{marker}` LIKE '{prefix}%'",
            key = self.key_column,
            marker = self.marker_column,
            value = self.value_column,
            table = self.table,
            prefix = self.marker_prefix
        );
        let mut problems = match proxy.fetch_all(scan.as_str()).await {
            Ok(rows) => {
                let mut found = Vec::with_capacity(rows.len());
                let mut problems = Vec::new();
                for row in &rows {
                    match self.found_row(row, "shardgate") {
                        Ok(Some(f)) => found.push(f),
                        Ok(None) => {}
                        Err(e) => problems.push(format!("scan through shardgate: {e}")),
                    }
                }
                problems.extend(self.diff_content(&found));
                problems
            }
            Err(e) => vec![format!("scan through shardgate failed: {scan}: {e}")],
        };
        let point = format!(
            "SELECT `{}`, `{}` FROM `{}` WHERE `{}` = ?",
            self.marker_column, self.value_column, self.table, self.key_column
        );
        for (key, want) in &self.expected {
            match sqlx::query(&point).bind(*key).fetch_all(&mut *proxy).await {
                Ok(rows) => {
                    let got: Result<Vec<LoadRow>, String> = rows
                        .iter()
                        .map(|row| load_row(row, &self.marker_column, &self.value_column))
                        .collect();
                    match got {
                        Ok(got) => {
                            if let Some(wrong) = compare_read(*key, Some(want), &got) {
                                problems.push(format!("POINT READ through shardgate: {wrong}"));
                            }
                        }
                        Err(e) => problems.push(format!("POINT READ of key {key}: {e}")),
                    }
                }
                Err(e) => problems.push(format!("POINT READ of key {key} failed: {e}")),
            }
        }
        problems
    }

    /// Reads the physical tables that `cfg`'s rules name for the table,
    /// directly: every row must sit where the rules say, and the load's
    /// rows must equal the record. Returns the problems, naming keys.
    pub async fn check_backends(&self, cfg: &Config) -> Vec<String> {
        let rules = match ShardingRules::new(cfg) {
            Ok(rules) => rules,
            Err(e) => return vec![format!("the rules do not build: {e}")],
        };
        let (tables, mut problems) = read_physical_tables(cfg, &rules, &self.table).await;
        problems.extend(misplaced_rows(&rules, &self.table, &tables));
        let mut found = Vec::new();
        for physical in &tables {
            let place = format!("{}.{}", physical.node.data_source, physical.node.table);
            for row in &physical.rows {
                match self.found_row(row, &place) {
                    Ok(Some(f)) => found.push(f),
                    Ok(None) => {}
                    Err(e) => problems.push(format!("reading {place}: {e}")),
                }
            }
        }
        problems.extend(self.diff_content(&found));
        problems
    }

    /// A row as a load row, if it is one (its marker has this run's prefix).
    fn found_row(&self, row: &MySqlRow, place: &str) -> Result<Option<FoundRow>, String> {
        let key: i64 = row
            .try_get(self.key_column.as_str())
            .map_err(|e| format!("column {}: {e}", self.key_column))?;
        let loaded = load_row(row, &self.marker_column, &self.value_column)?;
        Ok(loaded
            .marker
            .starts_with(&self.marker_prefix)
            .then(|| FoundRow {
                key,
                row: loaded,
                place: place.to_string(),
            }))
    }

    /// The differences between the load rows found and the record: keys
    /// MISSING, STALE (other values), DUPLICATED (found more than once),
    /// ZOMBIE (deleted, yet there) or EXTRA (never written by the load as
    /// found), and markers found under more than one key.
    pub fn diff_content(&self, found: &[FoundRow]) -> Vec<String> {
        let mut by_key: BTreeMap<i64, Vec<&FoundRow>> = BTreeMap::new();
        let mut by_marker: BTreeMap<&str, BTreeSet<i64>> = BTreeMap::new();
        for f in found {
            by_key.entry(f.key).or_default().push(f);
            by_marker.entry(&f.row.marker).or_default().insert(f.key);
        }
        let mut problems = Vec::new();
        for (key, want) in &self.expected {
            match by_key.get(key).map(Vec::as_slice) {
                None | Some([]) => problems.push(format!("MISSING key {key}: expected {want}")),
                Some([one]) if one.row == *want => {}
                Some([one]) => problems.push(format!(
                    "STALE key {key}: expected {want}, found {} on {}",
                    one.row, one.place
                )),
                Some(_) => {}
            }
        }
        for (key, rows) in &by_key {
            if rows.len() > 1 {
                problems.push(format!(
                    "DUPLICATED key {key}: {} copies: {}",
                    rows.len(),
                    rows.iter()
                        .map(|f| format!("{} on {}", f.row, f.place))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            if self.expected.contains_key(key) || self.uncertain_keys.contains(key) {
                continue;
            }
            let first = &rows[0];
            if self.deleted_keys.contains(key) {
                problems.push(format!(
                    "ZOMBIE key {key}: deleted by the load, found {} on {}",
                    first.row, first.place
                ));
            } else if !self.uncertain_inserts.contains(&first.row.marker) {
                problems.push(format!(
                    "EXTRA key {key}: never written by the load, found {} on {}",
                    first.row, first.place
                ));
            }
        }
        for (marker, keys) in by_marker {
            if keys.len() > 1 {
                problems.push(format!(
                    "DUPLICATED insert {marker:?} under keys {}",
                    keys.iter()
                        .map(i64::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live_load::{WriteOp, WriteOutcome};

    fn row(marker: &str, value: Option<&str>) -> LoadRow {
        LoadRow {
            marker: marker.into(),
            value: value.map(str::to_string),
        }
    }

    fn found(key: i64, marker: &str, value: Option<&str>, place: &str) -> FoundRow {
        FoundRow {
            key,
            row: row(marker, value),
            place: place.into(),
        }
    }

    fn config() -> LoadConfig {
        let nowhere = crate::Endpoint {
            host: "127.0.0.1".into(),
            port: 1,
            user: "root".into(),
            password: String::new(),
            database: "wework".into(),
        };
        LoadConfig::new(nowhere, "users", "user_id")
    }

    fn report() -> LoadReport {
        let config = config();
        let mut record = WorkerRecord::default();
        record.rows.insert(1, row("p-w0-i1", Some("a")));
        record.rows.insert(2, row("p-w0-i2", None));
        record.rows.insert(3, row("p-w0-i3", Some("c")));
        record.deleted.insert(4);
        record.uncertain_keys.insert(5);
        record.uncertain_inserts.insert("p-w0-i6".into());
        LoadReport::merge(&config, "p-".into(), Instant::now(), vec![record], vec![])
    }

    #[test]
    fn a_read_must_return_the_last_write_or_nothing_after_a_delete() {
        let want = row("m", Some("v2"));
        assert_eq!(
            compare_read(7, Some(&want), std::slice::from_ref(&want)),
            None
        );
        assert_eq!(compare_read(7, None, &[]), None);
        let stale = compare_read(7, Some(&want), &[row("m", Some("v1"))]).unwrap();
        assert!(stale.contains("key 7") && stale.contains("v1") && stale.contains("v2"));
        let null = compare_read(7, Some(&want), &[row("m", None)]).unwrap();
        assert!(null.contains("NULL"), "{null}");
        assert!(compare_read(7, Some(&want), &[])
            .unwrap()
            .contains("no row"));
        assert!(compare_read(7, None, std::slice::from_ref(&want))
            .unwrap()
            .contains("deleted"));
        assert!(compare_read(7, Some(&want), &[want.clone(), want.clone()]).is_some());
    }

    #[test]
    fn the_content_diff_names_every_wrong_key() {
        let report = report();
        let exact = [
            found(1, "p-w0-i1", Some("a"), "shardgate"),
            found(2, "p-w0-i2", None, "shardgate"),
            found(3, "p-w0-i3", Some("c"), "shardgate"),
            // uncertain: either way is fine
            found(5, "p-w0-i5", Some("x"), "shardgate"),
            found(9, "p-w0-i6", None, "shardgate"),
        ];
        assert!(report.diff_content(&exact).is_empty());

        let wrong = [
            found(1, "p-w0-i1", Some("old"), "ds1.users_0"),
            found(3, "p-w0-i3", Some("c"), "ds0.users_0"),
            found(3, "p-w0-i3", Some("c"), "ds3.users_1"),
            found(4, "p-w0-i4", Some("d"), "ds0.users_1"),
            found(8, "p-w0-i8", Some("e"), "ds0.users_1"),
            found(10, "p-w0-i3", None, "ds2.users_0"),
        ];
        let problems = report.diff_content(&wrong);
        let has = |what: &str| problems.iter().any(|p| p.starts_with(what));
        assert!(has("STALE key 1:"), "{problems:#?}");
        assert!(has("MISSING key 2:"), "{problems:#?}");
        assert!(has("DUPLICATED key 3:"), "{problems:#?}");
        assert!(has("ZOMBIE key 4:"), "{problems:#?}");
        assert!(has("EXTRA key 8:"), "{problems:#?}");
        assert!(has("EXTRA key 10:"), "{problems:#?}");
        assert!(
            has("DUPLICATED insert \"p-w0-i3\" under keys 3, 10"),
            "{problems:#?}"
        );
        assert_eq!(problems.len(), 7, "{problems:#?}");
    }

    #[test]
    fn a_key_in_two_workers_records_is_a_wrong_answer_and_uncertain() {
        let mut a = WorkerRecord::default();
        a.rows.insert(1, row("p-w0-i1", Some("a")));
        let mut b = WorkerRecord::default();
        b.deleted.insert(1);
        b.rows.insert(2, row("p-w1-i1", None));
        let merged = LoadReport::merge(&config(), "p-".into(), Instant::now(), vec![a, b], vec![]);
        assert_eq!(merged.wrong_answers.len(), 1, "{:?}", merged.wrong_answers);
        assert!(merged.uncertain_keys.contains(&1));
        assert!(!merged.expected.contains_key(&1) && !merged.deleted_keys.contains(&1));
        assert!(merged.expected.contains_key(&2));
    }

    #[test]
    fn the_longest_write_of_a_window_is_one_in_flight_during_it() {
        let mut report = report();
        let t0 = report.started;
        let ms = Duration::from_millis;
        let write = |start: u64, latency: u64| WriteTiming {
            started: t0 + ms(start),
            latency: ms(latency),
            op: WriteOp::Update,
            worker: 0,
            key: Some(1),
            outcome: WriteOutcome::Done,
        };
        // a long write long before, one queued across the window's start,
        // one inside, one after
        report.writes = vec![
            write(0, 900),
            write(1000, 300),
            write(1200, 5),
            write(2000, 50),
        ];
        assert_eq!(report.longest_write().map(|w| w.latency), Some(ms(900)));
        let (from, to) = (t0 + ms(1100), t0 + ms(1500));
        let longest = report.longest_write_overlapping(from, to).expect("one");
        assert_eq!(longest.latency, ms(300));
        assert_eq!(report.writes_overlapping(from, to), 2);
    }
}
