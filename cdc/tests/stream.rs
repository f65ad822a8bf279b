//! The change stream against a real MariaDB primary (the sandbox's ds1):
//! order, images, positions, resumption, filtering, the end-of-stream
//! signal and schema changes.

mod common;

use std::time::{Duration, Instant};

use common::{item_position, next_item, next_transaction, primary, TestDb};
use mysql_async::prelude::Queryable;
use mysql_async::Value;
use shardgate_cdc::{BinlogPosition, CdcError, Change, ChangeStream, StreamItem, Transaction};

fn int(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        other => panic!("not an Int: {other:?}"),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::Bytes(b) => String::from_utf8(b.clone()).unwrap(),
        other => panic!("not Bytes: {other:?}"),
    }
}

/// (kind, id, name before, name after) of a change to table `t`.
fn describe(tx: &Transaction) -> Vec<(&'static str, i64, Option<String>, Option<String>)> {
    tx.changes
        .iter()
        .map(|c| match &c.change {
            Change::Insert { after } => (
                "insert",
                int(after.get("id").unwrap()),
                None,
                Some(text(after.get("NAME").unwrap())),
            ),
            Change::Update { before, after } => (
                "update",
                int(after.get("id").unwrap()),
                Some(text(before.get("name").unwrap())),
                Some(text(after.get("name").unwrap())),
            ),
            Change::Delete { before } => (
                "delete",
                int(before.get("id").unwrap()),
                Some(text(before.get("name").unwrap())),
                None,
            ),
        })
        .collect()
}

async fn last_gtid(conn: &mut mysql_async::Conn) -> String {
    conn.query_first("SELECT @@last_gtid")
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn changes_come_in_commit_order_with_images_gtids_and_ends() {
    let Some(opts) = primary("changes_come_in_commit_order") else {
        return;
    };
    let db = TestDb::create(&opts, "order").await;
    db.exec(&["CREATE TABLE t (id INT PRIMARY KEY, name VARCHAR(20), n BIGINT) ENGINE=InnoDB"])
        .await;
    let start = db.position().await;

    let mut a = db.conn().await;
    let mut b = db.conn().await;
    // a starts first but commits after b: the binlog (and the stream)
    // follow commit order.
    a.query_drop("BEGIN").await.unwrap();
    a.query_drop("INSERT INTO t VALUES (1, 'one', 1), (2, 'two', 2)")
        .await
        .unwrap();
    b.query_drop("INSERT INTO t VALUES (3, 'three', 3)")
        .await
        .unwrap();
    let gtid_b = last_gtid(&mut b).await;
    a.query_drop("COMMIT").await.unwrap();
    let gtid_a = last_gtid(&mut a).await;
    a.query_drop("UPDATE t SET name = 'uno' WHERE id = 1")
        .await
        .unwrap();
    a.query_drop("BEGIN").await.unwrap();
    a.query_drop("DELETE FROM t WHERE id = 2").await.unwrap();
    a.query_drop("UPDATE t SET name = 'tres' WHERE id = 3")
        .await
        .unwrap();
    a.query_drop("COMMIT").await.unwrap();
    let end = db.position().await;

    let mut stream = db.stream(start.clone(), &["t"]).await;
    let txs = [
        next_transaction(&mut stream).await,
        next_transaction(&mut stream).await,
        next_transaction(&mut stream).await,
        next_transaction(&mut stream).await,
    ];
    let s = |x: &str| Some(x.to_owned());
    assert_eq!(describe(&txs[0]), [("insert", 3, None, s("three"))]);
    assert_eq!(
        describe(&txs[1]),
        [("insert", 1, None, s("one")), ("insert", 2, None, s("two"))]
    );
    assert_eq!(describe(&txs[2]), [("update", 1, s("one"), s("uno"))]);
    assert_eq!(
        describe(&txs[3]),
        [
            ("delete", 2, s("two"), None),
            ("update", 3, s("three"), s("tres"))
        ]
    );
    assert_eq!(txs[0].gtid.as_deref(), Some(gtid_b.as_str()));
    assert_eq!(txs[1].gtid.as_deref(), Some(gtid_a.as_str()));
    // Whole rows, every column, in table order.
    let Change::Delete { before } = &txs[3].changes[0].change else {
        panic!("not a delete");
    };
    assert_eq!(&*before.columns, ["id", "name", "n"]);
    assert_eq!(before.values[2], Value::Int(2));
    assert_eq!(txs[3].changes[0].schema, db.name);
    assert_eq!(txs[3].changes[0].table, "t");

    let mut previous = start;
    for tx in &txs {
        assert!(tx.end > previous, "{} after {previous}", tx.end);
        previous = tx.end.clone();
    }
    assert!(previous <= end);
    stream.close().await.unwrap();
    db.drop().await;
}

#[tokio::test]
async fn resuming_from_a_transaction_end_yields_exactly_the_following_ones() {
    let Some(opts) = primary("resuming_from_a_transaction_end") else {
        return;
    };
    let db = TestDb::create(&opts, "resume").await;
    db.exec(&["CREATE TABLE t (id INT PRIMARY KEY, name VARCHAR(20))"])
        .await;
    let start = db.position().await;
    for i in 0..5 {
        db.exec(&[&format!("INSERT INTO t VALUES ({i}, 'n{i}')")])
            .await;
    }

    let mut stream = db.stream(start, &["t"]).await;
    let mut all = Vec::new();
    for _ in 0..5 {
        all.push(next_transaction(&mut stream).await);
    }
    drop(stream);
    let ids: Vec<i64> = all.iter().map(|tx| describe(tx)[0].1).collect();
    assert_eq!(ids, [0, 1, 2, 3, 4]);

    for k in 0..4 {
        let mut resumed = db.stream(all[k].end.clone(), &["t"]).await;
        for expected in &all[k + 1..] {
            assert_eq!(&next_transaction(&mut resumed).await, expected);
        }
    }
    // Nothing after the last one: the stream reaches the end of the binlog
    // (as the primary is now) with progress only.
    let end = db.position().await;
    let mut resumed = db.stream(all[4].end.clone(), &["t"]).await;
    loop {
        let item = next_item(&mut resumed).await;
        assert!(
            matches!(item, StreamItem::Progress(_)),
            "unexpected {item:?}"
        );
        if *item_position(&item) >= end {
            break;
        }
    }
    db.drop().await;
}

#[tokio::test]
async fn unwatched_tables_only_produce_progress_and_mixed_transactions_keep_watched_changes() {
    let Some(opts) = primary("unwatched_tables_only_produce_progress") else {
        return;
    };
    let db = TestDb::create(&opts, "filter").await;
    db.exec(&[
        "CREATE TABLE w (id INT PRIMARY KEY, name VARCHAR(20))",
        "CREATE TABLE u (id INT PRIMARY KEY, name VARCHAR(20))",
    ])
    .await;
    let start = db.position().await;
    db.exec(&[
        "INSERT INTO u VALUES (1, 'a')",
        "UPDATE u SET name = 'b' WHERE id = 1",
        "DELETE FROM u",
        "CREATE TABLE u2 (id INT PRIMARY KEY)",
        "ALTER TABLE u ADD COLUMN extra INT",
    ])
    .await;
    let unwatched_end = db.position().await;
    db.exec(&[
        "BEGIN",
        "INSERT INTO u VALUES (2, 'x', 0)",
        "INSERT INTO w VALUES (1, 'first')",
        "UPDATE u SET name = 'y'",
        "UPDATE w SET name = 'second' WHERE id = 1",
        "INSERT INTO u2 VALUES (5)",
        "COMMIT",
    ])
    .await;

    let mut stream = db.stream(start, &["w"]).await;
    loop {
        let item = next_item(&mut stream).await;
        let StreamItem::Progress(position) = item else {
            panic!("unwatched change came out as {item:?}");
        };
        if position >= unwatched_end {
            break;
        }
    }
    let tx = next_transaction(&mut stream).await;
    let s = |x: &str| Some(x.to_owned());
    assert_eq!(
        describe(&tx),
        [
            ("insert", 1, None, s("first")),
            ("update", 1, s("first"), s("second"))
        ]
    );
    assert!(tx.changes.iter().all(|c| c.table == "w"));
    db.drop().await;
}

#[tokio::test]
async fn a_final_position_is_observed_within_two_seconds_without_further_writes() {
    let Some(opts) = primary("a_final_position_is_observed") else {
        return;
    };
    let db = TestDb::create(&opts, "final").await;
    db.exec(&["CREATE TABLE w (id INT PRIMARY KEY)"]).await;
    let start = db.position().await;
    let mut stream = db.stream(start, &["w"]).await;

    // The stream is already at the end of the binlog when the writes stop:
    // only a heartbeat can tell it that nothing more is coming.
    let reached = |item: &StreamItem, target: &BinlogPosition| item_position(item) >= target;
    for last_write_watched in [true, false] {
        let table = if last_write_watched { "w" } else { "u" };
        db.exec(&[
            "CREATE TABLE IF NOT EXISTS u (id INT PRIMARY KEY)",
            &format!(
                "INSERT INTO {table} VALUES ({})",
                u8::from(last_write_watched)
            ),
        ])
        .await;
        let target = db.position().await;
        // Drain up to the writes, then wait for the idle signal.
        loop {
            if reached(&next_item(&mut stream).await, &target) {
                break;
            }
        }
        let idle_from = Instant::now();
        let item = next_item(&mut stream).await;
        let waited = idle_from.elapsed();
        assert!(
            matches!(item, StreamItem::Progress(_)),
            "unexpected {item:?}"
        );
        assert!(reached(&item, &target));
        assert!(waited < Duration::from_secs(2), "waited {waited:?}");
    }

    // A final position taken while the stream is behind is passed too.
    db.exec(&["INSERT INTO u VALUES (7)"]).await;
    let target = db.position().await;
    let taken = Instant::now();
    loop {
        if reached(&next_item(&mut stream).await, &target) {
            break;
        }
    }
    assert!(taken.elapsed() < Duration::from_secs(2));
    db.drop().await;
}

#[tokio::test]
async fn ddl_on_a_watched_table_stops_the_stream_naming_the_table() {
    let Some(opts) = primary("ddl_on_a_watched_table") else {
        return;
    };
    let db = TestDb::create(&opts, "ddl").await;
    db.exec(&[
        "CREATE TABLE w (id INT PRIMARY KEY)",
        "CREATE TABLE u (id INT PRIMARY KEY)",
    ])
    .await;
    for ddl in [
        "ALTER TABLE w ADD COLUMN extra INT",
        "TRUNCATE TABLE w",
        "RENAME TABLE w TO w_old",
        "DROP TABLE w",
    ] {
        db.exec(&["CREATE TABLE IF NOT EXISTS w (id INT PRIMARY KEY)"])
            .await;
        let start = db.position().await;
        db.exec(&[
            "ALTER TABLE u ADD COLUMN IF NOT EXISTS x INT",
            "INSERT INTO w VALUES (1)",
            ddl,
        ])
        .await;
        let mut stream = db.stream(start, &["w"]).await;
        let tx = next_transaction(&mut stream).await;
        assert_eq!(tx.changes.len(), 1);
        let err = loop {
            match stream.next().await {
                Ok(StreamItem::Progress(_)) => continue,
                Ok(item) => panic!("{ddl}: unexpected {item:?}"),
                Err(err) => break err,
            }
        };
        match &err {
            CdcError::SchemaChange {
                schema,
                table,
                statement,
                ..
            } => {
                assert_eq!((schema.as_str(), table.as_str()), (db.name.as_str(), "w"));
                // The server may rewrite the statement (DROP TABLE `w` /*
                // generated by server */), but not its verb.
                let verb = ddl.split(' ').next().unwrap();
                assert!(statement.starts_with(verb), "{statement}");
            }
            other => panic!("{ddl}: unexpected error {other}"),
        }
        assert!(err.to_string().contains(&format!("{}.w", db.name)));
        db.exec(&["DROP TABLE IF EXISTS w, w_old"]).await;
    }
    db.drop().await;
}

#[tokio::test]
async fn rolled_back_savepoints_drop_their_changes() {
    let Some(opts) = primary("rolled_back_savepoints") else {
        return;
    };
    let db = TestDb::create(&opts, "savepoint").await;
    // A non-transactional table in the transaction makes MariaDB log the
    // SAVEPOINT and ROLLBACK TO with the rows between them.
    db.exec(&[
        "CREATE TABLE w (id INT PRIMARY KEY, name VARCHAR(20)) ENGINE=InnoDB",
        "CREATE TABLE m (id INT PRIMARY KEY) ENGINE=MyISAM",
    ])
    .await;
    let start = db.position().await;
    db.exec(&[
        "BEGIN",
        "INSERT INTO w VALUES (1, 'kept')",
        "SAVEPOINT sp",
        "INSERT INTO w VALUES (2, 'undone')",
        "INSERT INTO m VALUES (1)",
        "ROLLBACK TO SAVEPOINT sp",
        "INSERT INTO w VALUES (3, 'kept too')",
        "COMMIT",
    ])
    .await;
    let mut stream = db.stream(start, &["w"]).await;
    let tx = next_transaction(&mut stream).await;
    let ids: Vec<i64> = describe(&tx).iter().map(|c| c.1).collect();
    assert_eq!(ids, [1, 3]);
    db.drop().await;
}

#[tokio::test]
async fn a_purged_binlog_file_is_reported_as_such() {
    let Some(opts) = primary("a_purged_binlog_file") else {
        return;
    };
    let db = TestDb::create(&opts, "purged").await;
    let current = db.position().await;
    let gone = BinlogPosition {
        file: current.file.replace(|c: char| c.is_ascii_digit(), "0"),
        pos: 4,
    };
    let err = ChangeStream::open(db.opts.clone(), gone.clone(), db.filter(&["t"]))
        .await
        .err()
        .expect("opened a stream on a file that does not exist");
    assert!(
        matches!(&err, CdcError::BinlogPurged { file, .. } if *file == gone.file),
        "{err}"
    );
    let past_end = BinlogPosition {
        pos: current.pos + 1_000_000_000,
        ..current
    };
    let err = ChangeStream::open(db.opts.clone(), past_end, db.filter(&["t"]))
        .await
        .err()
        .expect("opened a stream past the end of the binlog");
    assert!(matches!(err, CdcError::PositionPastEnd { .. }), "{err}");
    db.drop().await;
}

#[tokio::test]
async fn positions_follow_the_binlog_into_its_next_file() {
    let Some(opts) = primary("positions_follow_the_binlog_into_its_next_file") else {
        return;
    };
    let db = TestDb::create(&opts, "rotate").await;
    db.exec(&["CREATE TABLE t (id INT PRIMARY KEY, name VARCHAR(20))"])
        .await;
    let start = db.position().await;
    db.exec(&[
        "INSERT INTO t VALUES (1, 'before')",
        "FLUSH BINARY LOGS",
        "INSERT INTO t VALUES (2, 'after')",
    ])
    .await;
    let mut stream = db.stream(start.clone(), &["t"]).await;
    let first = next_transaction(&mut stream).await;
    let second = next_transaction(&mut stream).await;
    assert_eq!(first.end.file, start.file);
    assert_ne!(first.end.file, second.end.file);
    assert!(second.end > first.end);
    assert_eq!(describe(&second)[0].1, 2);

    // Resuming at the end of the old file crosses into the new one.
    let mut resumed = db.stream(first.end.clone(), &["t"]).await;
    assert_eq!(next_transaction(&mut resumed).await, second);
    // And an idle stream in the new file reports where it is.
    let target = db.position().await;
    loop {
        if *item_position(&next_item(&mut resumed).await) >= target {
            break;
        }
    }
    db.drop().await;
}

#[tokio::test]
async fn a_user_without_replication_rights_is_told_what_to_grant() {
    let Some(opts) = primary("a_user_without_replication_rights") else {
        return;
    };
    let db = TestDb::create(&opts, "privs").await;
    let user = format!("cdc_noprivs_{}", std::process::id());
    db.exec(&[
        &format!("DROP USER IF EXISTS '{user}'@'%'"),
        &format!("CREATE USER '{user}'@'%'"),
        &format!("GRANT SELECT ON `{}`.* TO '{user}'@'%'", db.name),
    ])
    .await;
    let start = db.position().await;
    let weak = mysql_async::OptsBuilder::from_opts(db.opts.clone()).user(Some(user.clone()));
    let result = ChangeStream::open(weak.into(), start, db.filter(&["t"])).await;
    db.exec(&[&format!("DROP USER '{user}'@'%'")]).await;
    let err = result
        .err()
        .expect("opened a stream without replication rights");
    assert!(matches!(err, CdcError::MissingPrivilege { .. }), "{err}");
    assert!(err.to_string().contains("REPLICATION SLAVE"), "{err}");
    db.drop().await;
}
