//! Column values captured from the binlog write back the same stored values:
//! rows written by plain INSERTs are captured, REPLACEd into a copy table
//! through a prepared statement, and the two tables must then read the
//! same. The captured values are also compared with a prepared SELECT of
//! the same rows, as the `values` module documents.

mod common;

use common::{next_transaction, primary, TestDb};
use mysql_async::prelude::Queryable;
use mysql_async::{Row, Value};
use shardgate_cdc::{Change, WRITE_TIME_ZONE};

const COLUMNS: &str = "id INT PRIMARY KEY,
    i INT, iu INT UNSIGNED, b BIGINT, bu BIGINT UNSIGNED, ti TINYINT, mi MEDIUMINT UNSIGNED,
    v VARCHAR(100) CHARACTER SET utf8mb4, c CHAR(10) CHARACTER SET utf8mb4,
    d DECIMAL(15,3), dt DATETIME(3), da DATE, tm TIME(3), ts TIMESTAMP(3) NULL DEFAULT NULL,
    y YEAR, f DOUBLE, fl FLOAT, bl BLOB, bin BINARY(4), j JSON,
    e ENUM('a','b','c'), s SET('x','y','z'), bt BIT(10)";

const ROWS: [&str; 3] = [
    "(1, -2147483648, 4294967295, -9223372036854775808, 18446744073709551615, -128, 16777215,
      '漢字かな🙂 ünï \\' \"', '中文 ', -123456789012.125, '2024-02-29 23:59:59.123', '1000-01-01',
      '-12:34:56.789', '2038-01-19 03:14:07.999', 2155, 1.5e300, 3.25, x'00ff10', x'01020000',
      '{\"k\": [1, \"🙂\"], \"n\": null}', 'c', 'x,z', b'1000000001')",
    "(2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
      NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
    "(3, 0, 0, 0, 0, 0, 0, '', '', 0, '1970-01-01 00:00:00', '9999-12-31', '00:00:00',
      '1970-01-01 00:00:01', 0, -0.5, 0, '', x'00000000', '[]', 'a', '', b'0')",
];

/// Columns whose captured value equals a prepared SELECT's (module doc).
const SAME_AS_PREPARED_SELECT: [&str; 18] = [
    "id", "i", "iu", "b", "bu", "ti", "mi", "v", "c", "d", "dt", "da", "tm", "ts", "f", "fl", "bl",
    "j",
];

#[tokio::test]
async fn captured_values_round_trip_through_a_prepared_replace() {
    let Some(opts) = primary("captured_values_round_trip") else {
        return;
    };
    let db = TestDb::create(&opts, "values").await;
    let mut conn = db.conn().await;
    conn.query_drop(format!("SET time_zone = '{WRITE_TIME_ZONE}'"))
        .await
        .unwrap();
    conn.query_drop(format!(
        "CREATE TABLE src ({COLUMNS}) DEFAULT CHARSET=utf8mb4"
    ))
    .await
    .unwrap();
    conn.query_drop("CREATE TABLE copy LIKE src").await.unwrap();
    let start = db.position().await;
    for row in ROWS {
        conn.query_drop(format!("INSERT INTO src VALUES {row}"))
            .await
            .unwrap();
    }
    // An update's after image goes the same way.
    conn.query_drop("UPDATE src SET v = 'ändert 🚀', d = 0.001 WHERE id = 3")
        .await
        .unwrap();

    let mut stream = db.stream(start, &["src"]).await;
    let mut images = Vec::new();
    while images.len() < ROWS.len() + 1 {
        for change in next_transaction(&mut stream).await.changes {
            match change.change {
                Change::Insert { after } | Change::Update { after, .. } => images.push(after),
                Change::Delete { .. } => panic!("no row was deleted"),
            }
        }
    }

    for image in &images {
        let names = image.columns.join(", ");
        let marks = vec!["?"; image.columns.len()].join(", ");
        conn.exec_drop(
            format!("REPLACE INTO copy ({names}) VALUES ({marks})"),
            image.values.clone(),
        )
        .await
        .unwrap();
    }

    // Text protocol: every value as the server prints it.
    let read = |table: &'static str| format!("SELECT * FROM {table} ORDER BY id");
    let source: Vec<Row> = conn.query(read("src")).await.unwrap();
    let copied: Vec<Row> = conn.query(read("copy")).await.unwrap();
    assert_eq!(source.len(), ROWS.len());
    for (s, c) in source.iter().zip(&copied) {
        for (k, column) in s.columns_ref().iter().enumerate() {
            assert_eq!(
                s.as_ref(k),
                c.as_ref(k),
                "column {} of row {:?}",
                column.name_str(),
                s.as_ref(0)
            );
        }
    }
    assert_eq!(copied.len(), source.len());

    // Binary protocol: the captured values themselves, for the types the
    // module doc lists as equal. The last image of each id is its row now.
    let prepared: Vec<Row> = conn.exec(read("src"), ()).await.unwrap();
    for row in &prepared {
        let id = row.as_ref(0).unwrap();
        let image = images
            .iter()
            .rev()
            .find(|image| image.get("id") == Some(id))
            .unwrap();
        for name in SAME_AS_PREPARED_SELECT {
            let k = row
                .columns_ref()
                .iter()
                .position(|c| c.name_str() == name)
                .unwrap();
            assert_eq!(
                image.get(name),
                row.as_ref(k),
                "column {name} of row {id:?}"
            );
        }
        // The documented differences.
        let numeric: Row = conn
            .exec_first(
                "SELECT y+0, e+0, s+0, bt+0 FROM src WHERE id = ?",
                (id.clone(),),
            )
            .await
            .unwrap()
            .unwrap();
        for (k, name) in ["y", "e", "s", "bt"].into_iter().enumerate() {
            let expected = numeric.as_ref(k).unwrap();
            let captured = image.get(name).unwrap();
            let as_u64 = |v: &Value| match v {
                Value::Int(i) => Some(*i as u64),
                Value::UInt(u) => Some(*u),
                Value::NULL => None,
                other => panic!("{name}: not a number: {other:?}"),
            };
            assert_eq!(
                as_u64(captured),
                as_u64(expected),
                "column {name} of row {id:?}"
            );
        }
    }

    conn.disconnect().await.unwrap();
    db.drop().await;
}

#[tokio::test]
async fn time_columns_the_decoder_gets_wrong_are_refused() {
    let Some(opts) = primary("time_columns_the_decoder_gets_wrong") else {
        return;
    };
    let db = TestDb::create(&opts, "time2").await;
    db.exec(&["CREATE TABLE t (id INT PRIMARY KEY, tm TIME(2))"])
        .await;
    let start = db.position().await;
    db.exec(&["INSERT INTO t VALUES (1, '-00:00:01.50')"]).await;
    let mut stream = db.stream(start, &["t"]).await;
    let err = loop {
        match stream.next().await {
            Ok(shardgate_cdc::StreamItem::Progress(_)) => continue,
            Ok(item) => panic!("unexpected {item:?}"),
            Err(err) => break err,
        }
    };
    assert!(
        matches!(&err, shardgate_cdc::CdcError::UnsupportedColumn { column, .. } if column == "tm"),
        "{err}"
    );
    db.drop().await;
}
