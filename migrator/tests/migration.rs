//! The migrator against the sandbox: plans of the three supported
//! expansions, copies verified clean with every row placed right, a copy
//! killed and resumed, verification naming rows tampered with behind the
//! migrator's back, captured changes applied at their new places, cancel.

mod common;

use common::*;
use mysql_async::prelude::Queryable;
use mysql_async::Value;
use shardgate_cdc::{Change, Row, TableChange, Transaction};
use shardgate_migrator::apply::{AppliedColumns, Applier};
use shardgate_migrator::job::JobContext;
use shardgate_migrator::layout::Mode;
use shardgate_migrator::state::{Direction, StateStore};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread")]
async fn users_16_to_32_tables_copies_verifies_clean_and_cancels() {
    if !sandbox_ready("users_16_to_32_tables", 4) {
        return;
    }
    let fx = Fixture::new("migrator_t32", 4).await;
    let (from, to) = fx.users_expansion(6000, 4, 32).await;

    let plan = fx.migrator(&["plan", "--from", &from, "--to", &to, "--json"]);
    assert!(plan.status.success());
    let plan = &json(&plan)["plans"][0];
    assert_eq!(plan["mode"], "rebuild");
    assert_eq!(plan["rows_total"], 6000);
    let moving = plan["rows_moving"].as_u64().unwrap();
    assert!(
        moving > 2000 && moving < 4000,
        "about half change table: {moving}"
    );
    assert_eq!(plan["create"]["ds0"].as_array().unwrap().len(), 32);

    let start = fx.migrator(&[
        "start",
        "--from",
        &from,
        "--to",
        &to,
        "--table",
        "users",
        "--batch-size",
        "250",
    ]);
    assert!(start.status.success());
    let out = stdout(&start);
    assert!(out.contains("100.0% migrated 6000 / 6000 rows"), "{out}");
    let job = fx.job();
    assert!(job.starts_with("migration_users_"), "{job}");
    let state = fx.state(&job);
    assert_eq!(state["phase"], "ready");
    for primary in state["primaries"].as_array().unwrap() {
        assert!(primary["start"]["file"]
            .as_str()
            .unwrap()
            .starts_with("mariadb-bin."));
    }

    // Every row copied once: 16 shadows + 16 new tables per data source.
    let mut copied = 0;
    for s in 0..4 {
        let shadows = table_counts(&fx, s, "users\\_%\\_\\_sgnew").await;
        assert_eq!(shadows.len(), 16);
        let all = table_counts(&fx, s, "users\\_%").await;
        let new: u64 = all
            .iter()
            .filter(|(t, _)| {
                t.trim_start_matches("users_")
                    .parse::<u32>()
                    .is_ok_and(|n| n >= 16)
            })
            .map(|(_, n)| n)
            .sum();
        copied += shadows.values().sum::<u64>() + new;
    }
    assert_eq!(copied, 6000);
    // The counter of the source's definition is not copied.
    let mut conn = fx.conn(0).await;
    let (_, create): (String, String) = conn
        .query_first("SHOW CREATE TABLE users_20")
        .await
        .unwrap()
        .unwrap();
    assert!(!create.contains("AUTO_INCREMENT="), "{create}");
    conn.disconnect().await.unwrap();

    let verify = fx.migrator(&["verify", &job, "--chunk-rows", "500", "--json"]);
    assert!(verify.status.success());
    let report = json(&verify);
    assert_eq!(report["source_rows"], 6000);
    assert_eq!(report["target_rows"], 6000);
    assert_eq!(report["chunks"], 12);
    assert_eq!(report["mismatched_chunks"], 0);
    assert_eq!(report["misplaced"].as_array().unwrap().len(), 0);

    let status = fx.migrator(&["status", &job]);
    let text = stdout(&status);
    assert!(text.contains("phase ready"), "{text}");
    assert!(text.contains("100.0% migrated 6000 / 6000 rows"), "{text}");
    assert!(
        text.contains("change streams caught up: clean — source 6000 rows, target 6000 rows"),
        "{text}"
    );
    assert!(text.contains("phases: planned"), "{text}");
    assert!(text.contains("catch-up ds3: from mariadb-bin."), "{text}");

    let cancel = fx.migrator(&["cancel", &job]);
    assert!(cancel.status.success());
    assert_eq!(fx.state(&job)["phase"], "cancelled");
    for s in 0..4 {
        let left = table_counts(&fx, s, "users\\_%").await;
        assert_eq!(left.len(), 16, "only the old layout is left: {left:?}");
    }
    fx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_names_rows_changed_behind_the_migrators_back() {
    if !sandbox_ready("verify_names_rows", 4) {
        return;
    }
    let fx = Fixture::new("migrator_tamper", 4).await;
    let (from, to) = fx.users_expansion(2000, 4, 32).await;
    assert!(fx
        .migrator(&["start", "--from", &from, "--to", &to, "--table", "users"])
        .status
        .success());
    let job = fx.job();

    // Where the new rules put a key (the shadow where the name is in use).
    let (corrupted, deleted, misplaced) = (user_key(10), user_key(11), user_key(12));
    let locate = |key: i64| {
        let ds = key.rem_euclid(4);
        let table = (key / 4).rem_euclid(32);
        let name = if table < 16 {
            format!("users_{table}__sgnew")
        } else {
            format!("users_{table}")
        };
        (ds as u32, name)
    };
    let (ds, table) = locate(corrupted);
    let mut conn = fx.conn(ds).await;
    conn.exec_drop(
        format!("UPDATE {table} SET name = 'changed' WHERE user_id = ?"),
        (corrupted,),
    )
    .await
    .unwrap();
    let (ds, table) = locate(deleted);
    let mut conn = fx.conn(ds).await;
    conn.exec_drop(format!("DELETE FROM {table} WHERE user_id = ?"), (deleted,))
        .await
        .unwrap();
    let added = 4 * 17 + 1; // ds1, users_17: in the right place, but never a source row
    conn = fx.conn(1).await;
    conn.exec_drop(
        format!(
            "INSERT INTO users_17 ({USER_COLUMNS}) VALUES (?, 't', 'added', NULL, NULL, NULL, 1)"
        ),
        (added,),
    )
    .await
    .unwrap();
    // A row moved to another table of its data source.
    let (ds, table) = locate(misplaced);
    let wrong = if table == "users_31" {
        "users_30"
    } else {
        "users_31"
    };
    let mut conn = fx.conn(ds).await;
    conn.query_drop(format!(
        "INSERT INTO {wrong} SELECT * FROM {table} WHERE user_id = {misplaced}; \
         DELETE FROM {table} WHERE user_id = {misplaced}"
    ))
    .await
    .unwrap();
    conn.disconnect().await.unwrap();

    let verify = fx.migrator(&["verify", &job, "--rechecks", "1", "--json"]);
    assert_eq!(verify.status.code(), Some(2));
    let report = json(&verify);
    let keys = |field: &str| -> Vec<String> {
        report[field]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(keys("different"), vec![corrupted.to_string()]);
    assert_eq!(keys("missing"), vec![deleted.to_string()]);
    assert_eq!(keys("extra"), vec![added.to_string()]);
    // The moved row is still there once, unchanged: only placement sees it.
    let misplaced_rows = report["misplaced"].as_array().unwrap();
    assert_eq!(misplaced_rows.len(), 1, "{misplaced_rows:?}");
    assert_eq!(misplaced_rows[0]["key"], misplaced.to_string());
    assert_eq!(misplaced_rows[0]["found"], format!("ds{ds}.{wrong}"));
    assert_eq!(misplaced_rows[0]["expected"], format!("ds{ds}.{table}"));

    let text = stdout(&fx.migrator(&["verify", &job, "--rechecks", "0"]));
    assert!(
        text.contains(&format!("different (1): {corrupted}")),
        "{text}"
    );
    assert!(text.contains("DIFFERENCES FOUND"), "{text}");
    let status = stdout(&fx.migrator(&["status", &job]));
    assert!(status.contains("caught up: DIFFERENCES"), "{status}");
    fx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_copy_killed_midway_resumes_to_a_clean_verify() {
    if !sandbox_ready("a_copy_killed_midway", 4) {
        return;
    }
    let fx = Fixture::new("migrator_kill", 4).await;
    let (from, to) = fx.users_expansion(4000, 4, 32).await;
    let mut child = fx
        .command(&[
            "start",
            "--from",
            &from,
            "--to",
            &to,
            "--table",
            "users",
            "--batch-size",
            "20",
            "--parallelism",
            "2",
            "--pause-ms",
            "20",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "the copy never got going");
        std::thread::sleep(Duration::from_millis(100));
        if try_state(&fx).is_some_and(|state| sum_of(&state, "rows_copied") >= 600) {
            break;
        }
    }
    let job = fx.job();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let state = fx.state(&job);
    assert_eq!(state["phase"], "copying");
    let copied = sum_of(&state, "rows_copied");
    assert!(copied < 4000, "killed before the end: {copied}");
    let starts = |state: &serde_json::Value| -> Vec<serde_json::Value> {
        state["primaries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["start"].clone())
            .collect()
    };
    let positions = starts(&state);

    let resume = fx.migrator(&["resume", &job]);
    assert!(resume.status.success());
    let state = fx.state(&job);
    assert_eq!(state["phase"], "ready");
    assert_eq!(
        starts(&state),
        positions,
        "catch-up still starts before the first batch"
    );
    assert_eq!(sum_of(&state, "rows_copied"), 4000);
    let verify = fx.migrator(&["verify", &job]);
    assert!(verify.status.success(), "{}", stdout(&verify));
    assert!(stdout(&verify).contains("no differences"));
    fx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn users_onto_eight_data_sources() {
    if !sandbox_ready("users_onto_eight_data_sources", 8) {
        return;
    }
    let fx = Fixture::new("migrator_ds8", 8).await;
    let (from, to) = fx.users_expansion(3000, 8, 16).await;
    let plan = fx.migrator(&["plan", "--from", &from, "--to", &to, "--table", "users"]);
    assert!(plan.status.success());
    let text = stdout(&plan);
    assert!(text.contains("mode: rebuild"), "{text}");
    assert!(
        text.contains("ds0: shadow users_0__sgnew .. users_15__sgnew (16)"),
        "{text}"
    );
    assert!(text.contains("ds7: new users_0 .. users_15 (16)"), "{text}");
    assert!(fx
        .migrator(&[
            "start",
            "--from",
            &from,
            "--to",
            &to,
            "--table",
            "users",
            "--parallelism",
            "3"
        ])
        .status
        .success());
    let job = fx.job();
    let verify = fx.migrator(&["verify", &job, "--json"]);
    assert!(verify.status.success());
    assert_eq!(json(&verify)["target_rows"], 3000);
    // Half the rows now live on ds4..ds7.
    let mut on_new = 0;
    for s in 4..8 {
        on_new += table_counts(&fx, s, "users\\_%")
            .await
            .values()
            .sum::<u64>();
    }
    assert!(on_new > 1200 && on_new < 1800, "{on_new}");
    fx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn message_records_gaining_2025_months_is_an_extend() {
    if !sandbox_ready("message_records_gaining_2025", 4) {
        return;
    }
    let fx = Fixture::new("migrator_months", 4).await;
    for s in 0..4 {
        let mut conn = fx.conn(s).await;
        create_2024_months(&mut conn).await;
        // tenant_0 .. tenant_3 spread over the data sources by CRC32.
        for (i, tenant) in ["acme", "globex", "initech", "umbrella", "hooli"]
            .iter()
            .enumerate()
        {
            let ds = crc32(tenant) % 4;
            if ds == s {
                for m in 1..=12 {
                    conn.query_drop(format!(
                        "INSERT INTO message_records_2024{m:02} VALUES ({i}{m}, '{tenant}', '2024-{m:02}-0{} 10:00:00', 1, 'hi')",
                        m % 9 + 1
                    ))
                    .await
                    .unwrap();
                }
            }
        }
        conn.disconnect().await.unwrap();
    }
    let from = fx.write("from.toml", &fx.config(4, &messages_rules(2024)));
    let to = fx.write("to.toml", &fx.config(4, &messages_rules(2025)));
    let plan = fx.migrator(&["plan", "--from", &from, "--to", &to, "--json"]);
    assert!(plan.status.success(), "{}", stdout(&plan));
    let plan = &json(&plan)["plans"][0];
    assert_eq!(plan["mode"], "extend");
    assert_eq!(plan["rows_total"], 60);
    assert_eq!(plan["rows_moving"], 0);
    assert_eq!(plan["rows_to_copy"], 0);
    assert_eq!(plan["create"]["ds2"][0], "message_records_202501");
    assert_eq!(plan["create"]["ds2"].as_array().unwrap().len(), 12);

    assert!(fx
        .migrator(&[
            "start",
            "--from",
            &from,
            "--to",
            &to,
            "--table",
            "message_records"
        ])
        .status
        .success());
    let job = fx.job();
    assert_eq!(fx.state(&job)["phase"], "ready");
    assert_eq!(
        table_counts(&fx, 3, "message\\_records\\_2025%")
            .await
            .len(),
        12
    );
    let verify = fx.migrator(&["verify", &job, "--json"]);
    assert!(verify.status.success(), "{}", stdout(&verify));
    assert_eq!(json(&verify)["target_rows"], 60);
    fx.cleanup().await;
}

fn crc32(text: &str) -> u32 {
    // The IEEE CRC-32 MySQL's CRC32() computes, bit by bit.
    let mut crc = !0u32;
    for byte in text.bytes() {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[tokio::test(flavor = "multi_thread")]
async fn plans_refuse_what_they_cannot_do() {
    if !sandbox_ready("plans_refuse", 4) {
        return;
    }
    let fx = Fixture::new("migrator_refuse", 4).await;
    let from_text = fx.config(4, &users_rules(4, 16));
    seed_users(&fx, &from_text, 4, 16, 50).await;
    // A leftover table where the new layout wants one.
    let mut conn = fx.conn(2).await;
    conn.query_drop("CREATE TABLE users_3__sgnew (x INT); CREATE TABLE users_20 (user_id BIGINT PRIMARY KEY); INSERT INTO users_20 VALUES (1)")
        .await
        .unwrap();
    conn.disconnect().await.unwrap();
    let from = fx.write("from.toml", &from_text);
    let to = fx.write("to.toml", &fx.config(4, &users_rules(4, 32)));
    let plan = fx.migrator(&["plan", "--from", &from, "--to", &to]);
    assert_eq!(plan.status.code(), Some(2));
    let text = stdout(&plan);
    assert!(text.contains("REFUSED"), "{text}");
    assert!(
        text.contains("ds2.users_3__sgnew already exists (0 rows)"),
        "{text}"
    );
    assert!(
        text.contains("ds2.users_20 already exists (1 rows)"),
        "{text}"
    );
    let start = fx.migrator(&["start", "--from", &from, "--to", &to, "--table", "users"]);
    assert_eq!(start.status.code(), Some(2));
    let jobs = std::fs::read_dir(fx.state_dir()).map_or(0, |d| d.count());
    assert_eq!(jobs, 0, "a refused start creates no job");

    // Another sharding column.
    let other = users_rules(4, 32).replace(
        "table = { column = \"user_id\", expression = \"users_${(user_id / 4) % 32}\" }",
        "table = { column = \"status\", expression = \"users_${status % 32}\" }",
    );
    let to = fx.write("other.toml", &fx.config(4, &other));
    let text = stdout(&fx.migrator(&["plan", "--from", &from, "--to", &to]));
    assert!(
        text.contains("sharding columns change from (user_id) to (status, user_id)"),
        "{text}"
    );
    // A source table whose columns differ from the others'.
    let mut conn = fx.conn(1).await;
    conn.query_drop("ALTER TABLE users_7 MODIFY status INT")
        .await
        .unwrap();
    conn.disconnect().await.unwrap();
    let to = fx.write("to.toml", &fx.config(4, &users_rules(4, 32)));
    let text = stdout(&fx.migrator(&["plan", "--from", &from, "--to", &to, "--table", "users"]));
    assert!(
        text.contains("the columns of ds1.users_7 differ from those of ds0.users_0"),
        "{text}"
    );
    fx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn captured_changes_land_at_their_new_places() {
    if !sandbox_ready("captured_changes", 4) {
        return;
    }
    let fx = Fixture::new("migrator_apply", 4).await;
    let from_text = fx.config(4, &users_rules(4, 16));
    seed_users(&fx, &from_text, 4, 16, 500).await;
    let to_text = fx.config(4, &users_rules(4, 32));
    let from = fx.write("from.toml", &from_text);
    let to = fx.write("to.toml", &to_text);
    assert!(fx
        .migrator(&["start", "--from", &from, "--to", &to, "--table", "users"])
        .status
        .success());
    let job = fx.job();

    // What the application does on the old layout after the copy, and the
    // row events the binlog reader would hand over for it.
    let columns: Arc<[String]> = USER_COLUMNS
        .split(", ")
        .map(str::to_string)
        .collect::<Vec<_>>()
        .into();
    let image = |key: i64, name: &str| Row {
        columns: columns.clone(),
        values: vec![
            Value::Int(key),
            Value::Bytes(b"t".to_vec()),
            Value::Bytes(name.as_bytes().to_vec()),
            Value::NULL,
            Value::NULL,
            Value::NULL,
            Value::Int(1),
        ],
    };
    let insert_sql =
        format!("INSERT INTO users_4 ({USER_COLUMNS}) VALUES (?, 't', ?, NULL, NULL, NULL, 1)");
    let mut ds1 = fx.conn(1).await;
    // 81 (ds1.users_4 -> users_20) inserted, then moved to key 17 (-> users_4__sgnew);
    // 145 (ds1.users_4 -> users_4__sgnew) inserted then deleted; 209 inserted and updated.
    ds1.exec_drop(&insert_sql, (81, "a")).await.unwrap();
    ds1.exec_drop(&insert_sql, (145, "b")).await.unwrap();
    ds1.exec_drop(&insert_sql, (209, "c")).await.unwrap();
    ds1.query_drop("UPDATE users_4 SET user_id = 17 WHERE user_id = 81")
        .await
        .unwrap();
    ds1.query_drop("DELETE FROM users_4 WHERE user_id = 145")
        .await
        .unwrap();
    ds1.query_drop("UPDATE users_4 SET name = 'c2' WHERE user_id = 209")
        .await
        .unwrap();
    let database = fx.database(1);
    let change = |change| TableChange {
        schema: database.clone(),
        table: "users_4".into(),
        change,
    };
    let transaction = Transaction {
        gtid: None,
        changes: vec![
            change(Change::Insert {
                after: image(81, "a"),
            }),
            change(Change::Insert {
                after: image(145, "b"),
            }),
            change(Change::Insert {
                after: image(209, "c"),
            }),
            change(Change::Update {
                before: image(81, "a"),
                after: image(17, "a"),
            }),
            change(Change::Delete {
                before: image(145, "b"),
            }),
            change(Change::Update {
                before: image(209, "c"),
                after: image(209, "c2"),
            }),
            // The migrator's own write to a new table: ignored.
            TableChange {
                schema: database.clone(),
                table: "users_20".into(),
                change: Change::Insert {
                    after: image(81, "loop"),
                },
            },
        ],
        // Where ds1's binlog is now: `verify` below runs the streams from
        // the recorded position.
        end: {
            let (file, pos): (String, u64) = ds1
                .query_first("SHOW MASTER STATUS")
                .await
                .unwrap()
                .map(|row: mysql_async::Row| {
                    (
                        row.get::<String, _>(0).unwrap(),
                        row.get::<u64, _>(1).unwrap(),
                    )
                })
                .unwrap();
            shardgate_cdc::BinlogPosition { file, pos }
        },
    };
    let store = StateStore::open(fx.state_dir()).unwrap();
    let state = store.load(&job).unwrap();
    let context = JobContext::of(&state).unwrap();
    let backends = context.backends(&state.options);
    let columns = AppliedColumns {
        key: "user_id".into(),
        kinds: Default::default(),
    };
    let applier = Applier::forward(&context, Mode::Rebuild, &columns);
    // Twice: a replayed suffix changes nothing.
    for _ in 0..2 {
        let writes = applier
            .apply_transaction(&backends, "ds1", &transaction)
            .await
            .unwrap();
        assert_eq!(
            writes, 7,
            "4 upserts, 1 delete for the move, 1 delete, 1 update"
        );
    }
    shardgate_migrator::apply::record_applied(
        &store,
        &job,
        Direction::Forward,
        "ds1",
        transaction.end.clone(),
    )
    .unwrap();
    backends.disconnect().await;
    assert_eq!(
        store.load(&job).unwrap().primaries[1].applied,
        Some(transaction.end.clone())
    );

    let names: Vec<(i64, String)> = ds1
        .query("SELECT user_id, name FROM users_4__sgnew WHERE user_id IN (17, 145, 209) ORDER BY user_id")
        .await
        .unwrap();
    assert_eq!(names, vec![(17, "a".to_string())]);
    let moved: Vec<(i64, String)> = ds1
        .query("SELECT user_id, name FROM users_20 WHERE user_id IN (81, 209) ORDER BY user_id")
        .await
        .unwrap();
    assert_eq!(moved, vec![(209, "c2".to_string())]);
    ds1.disconnect().await.unwrap();
    let verify = fx.migrator(&["verify", &job]);
    assert!(verify.status.success(), "{}", stdout(&verify));
    fx.cleanup().await;
}
