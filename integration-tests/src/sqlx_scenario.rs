//! The sqlx driver scenario. `sqlx::query` prepares every statement
//! (COM_STMT_PREPARE, then COM_STMT_EXECUTE with binary parameters and rows,
//! statements cached per connection); `sqlx::raw_sql` uses COM_QUERY.
//!
//! Like the external drivers, it returns a canonical transcript (JSON lines)
//! that must be identical against ds0 directly and through ShardGate.

use crate::Endpoint;
use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sqlx::mysql::{MySqlConnection, MySqlQueryResult, MySqlRow};
use sqlx::{Column, Connection, Row, TypeInfo, ValueRef};
use std::str::FromStr;

pub const TABLE: &str = "it_sqlx";
const SMALL_BLOB: &[u8] = &[0x00, 0xFF, 0x01, 0x7F, 0x80, 0x00, 0x27, 0x5C, 0x22, 0x0A];
const UNICODE_TEXT: &str = "🦀 crab 漢字 ünïcödé 'quoted' \\ backslash";

/// The ~100 KB blob every scenario inserts: byte i is (i*31+7) mod 256.
pub fn big_blob() -> Vec<u8> {
    (0..100_000u32)
        .map(|i| ((i * 31 + 7) % 256) as u8)
        .collect()
}

pub fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// Short byte strings as hex, long ones as length and SHA-256.
pub fn render_bytes(b: &[u8]) -> String {
    if b.len() <= 64 {
        format!(
            "hex:{}",
            b.iter().map(|x| format!("{x:02x}")).collect::<String>()
        )
    } else {
        format!("bytes:len={},sha256={}", b.len(), sha256_hex(b))
    }
}

fn decoded<T, E: std::fmt::Display>(r: Result<T, E>, f: impl FnOnce(T) -> String) -> Value {
    match r {
        Ok(v) => Value::String(f(v)),
        Err(e) => Value::String(format!("decode-error:{e}")),
    }
}

/// A column value rendered canonically, by the column's type.
pub fn render_value(row: &MySqlRow, i: usize) -> Value {
    let raw = match row.try_get_raw(i) {
        Ok(raw) => raw,
        Err(e) => return Value::String(format!("decode-error:{e}")),
    };
    if raw.is_null() {
        return Value::Null;
    }
    let ty = raw.type_info().name().to_string();
    match ty.as_str() {
        "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" | "BOOLEAN" | "YEAR" => {
            decoded(row.try_get_unchecked::<i64, _>(i), |v| format!("i64:{v}"))
        }
        t if t.ends_with("UNSIGNED") => {
            decoded(row.try_get_unchecked::<u64, _>(i), |v| format!("u64:{v}"))
        }
        "DOUBLE" => decoded(row.try_get_unchecked::<f64, _>(i), |v| format!("f64:{v:?}")),
        "FLOAT" => decoded(row.try_get_unchecked::<f32, _>(i), |v| format!("f32:{v:?}")),
        "DECIMAL" => decoded(row.try_get_unchecked::<Decimal, _>(i), |v| {
            format!("decimal:{v}")
        }),
        "DATETIME" | "TIMESTAMP" => decoded(row.try_get_unchecked::<NaiveDateTime, _>(i), |v| {
            format!("datetime:{}", v.format("%Y-%m-%d %H:%M:%S%.f"))
        }),
        "DATE" => decoded(row.try_get_unchecked::<NaiveDate, _>(i), |v| {
            format!("date:{v}")
        }),
        "TIME" => decoded(row.try_get_unchecked::<NaiveTime, _>(i), |v| {
            format!("time:{v}")
        }),
        _ => match row.try_get_unchecked::<Vec<u8>, _>(i) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(s) if s.len() <= 4096 => Value::String(s),
                Ok(s) => Value::String(render_bytes(s.as_bytes())),
                Err(e) => Value::String(render_bytes(e.as_bytes())),
            },
            Err(e) => Value::String(format!("decode-error:{e}")),
        },
    }
}

pub fn render_rows(rows: &[MySqlRow]) -> (Value, Value) {
    let columns = rows
        .first()
        .map(|r| {
            r.columns()
                .iter()
                .map(|c| json!([c.name(), c.type_info().name()]))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let rows = rows
        .iter()
        .map(|r| Value::Array((0..r.len()).map(|i| render_value(r, i)).collect()))
        .collect::<Vec<_>>();
    (Value::Array(columns), Value::Array(rows))
}

/// The transcript being written; server errors are recorded, anything else
/// (I/O, protocol) aborts the scenario.
#[derive(Default)]
pub struct Transcript {
    lines: Vec<String>,
}

impl Transcript {
    pub fn emit(&mut self, v: Value) {
        self.lines.push(v.to_string());
    }

    fn error(&mut self, step: &str, e: sqlx::Error) -> Result<(), sqlx::Error> {
        match crate::db_error(&e) {
            Some((code, sqlstate, message)) => {
                self.emit(json!({"step": step, "error": {"code": code, "sqlstate": sqlstate, "message": message}}));
                Ok(())
            }
            None => Err(e),
        }
    }

    pub fn exec(
        &mut self,
        step: &str,
        r: Result<MySqlQueryResult, sqlx::Error>,
    ) -> Result<(), sqlx::Error> {
        match r {
            Ok(done) => {
                self.emit(json!({"step": step, "affected": done.rows_affected(), "insert_id": done.last_insert_id()}));
                Ok(())
            }
            Err(e) => self.error(step, e),
        }
    }

    pub fn rows(
        &mut self,
        step: &str,
        r: Result<Vec<MySqlRow>, sqlx::Error>,
    ) -> Result<(), sqlx::Error> {
        match r {
            Ok(rows) => {
                let (columns, rows) = render_rows(&rows);
                self.emit(json!({"step": step, "columns": columns, "rows": rows}));
                Ok(())
            }
            Err(e) => self.error(step, e),
        }
    }

    pub fn ok(&mut self, step: &str, r: Result<(), sqlx::Error>) -> Result<(), sqlx::Error> {
        match r {
            Ok(()) => {
                self.emit(json!({"step": step, "ok": true}));
                Ok(())
            }
            Err(e) => self.error(step, e),
        }
    }

    pub fn into_string(self) -> String {
        let mut s = self.lines.join("\n");
        s.push('\n');
        s
    }
}

/// Runs the scenario against `ep`; the transcript, or the error that stopped it.
pub async fn run(ep: &Endpoint) -> Result<String, sqlx::Error> {
    let mut conn = ep.connect().await?;
    let mut t = Transcript::default();
    scenario(&mut conn, &mut t).await?;
    conn.close().await?;
    Ok(t.into_string())
}

async fn scenario(conn: &mut MySqlConnection, t: &mut Transcript) -> Result<(), sqlx::Error> {
    let tbl = TABLE;
    let cols = "id, name, qty, price, ratio, day, created, created6, data, note";

    sqlx::raw_sql(&format!("DROP TABLE IF EXISTS {tbl}"))
        .execute(&mut *conn)
        .await?; // leftovers; not in the transcript
    t.exec(
        "drop_table",
        sqlx::query(&format!("DROP TABLE IF EXISTS {tbl}"))
            .execute(&mut *conn)
            .await,
    )?;
    let create = format!(
        "CREATE TABLE {tbl} (\
         id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,\
         name VARCHAR(64) NOT NULL,\
         qty INT NULL,\
         price DECIMAL(20,6) NULL,\
         ratio DOUBLE NULL,\
         day DATE NULL,\
         created DATETIME NULL,\
         created6 DATETIME(6) NULL,\
         data MEDIUMBLOB NULL,\
         note TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,\
         UNIQUE KEY uk_name (name)\
         ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
    );
    t.exec(
        "create_table",
        sqlx::query(&create).execute(&mut *conn).await,
    )?;
    t.ok("ping", conn.ping().await)?;
    t.exec(
        "insert_literal",
        sqlx::query(&format!(
            "INSERT INTO {tbl} (name, qty, price, ratio, day, created, created6, data, note) VALUES \
             ('alpha', 1, 12.5, 0.25, '2024-01-02', '2024-01-02 03:04:05', '2024-01-02 03:04:05.123456', X'00FF01', 'plain ascii')"
        ))
        .execute(&mut *conn)
        .await,
    )?;
    t.exec(
        "insert_multi",
        sqlx::query(&format!(
            "INSERT INTO {tbl} (name, qty, price, ratio) VALUES ('beta', 2, -0.000001, -1.5), ('gamma', 3, 0, 1e100)"
        ))
        .execute(&mut *conn)
        .await,
    )?;
    let select_all = format!("SELECT {cols} FROM {tbl} ORDER BY id");
    t.rows(
        "select_all",
        sqlx::query(&select_all).fetch_all(&mut *conn).await,
    )?;
    t.rows(
        "select_all_text",
        sqlx::raw_sql(&select_all).fetch_all(&mut *conn).await,
    )?;
    t.exec(
        "update",
        sqlx::query(&format!("UPDATE {tbl} SET qty = qty + ? WHERE id <= ?"))
            .bind(10i32)
            .bind(2i64)
            .execute(&mut *conn)
            .await,
    )?;
    t.exec(
        "update_nochange",
        sqlx::query(&format!("UPDATE {tbl} SET qty = qty WHERE id = ?"))
            .bind(1i64)
            .execute(&mut *conn)
            .await,
    )?;

    let ins = format!(
        "INSERT INTO {tbl} (name, qty, price, ratio, day, created, created6, data, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    );
    let day = NaiveDate::from_ymd_opt(2024, 12, 31).unwrap();
    let created = NaiveDate::from_ymd_opt(2024, 2, 29)
        .unwrap()
        .and_hms_opt(23, 59, 59)
        .unwrap();
    let created6 = NaiveDate::from_ymd_opt(2024, 2, 29)
        .unwrap()
        .and_hms_micro_opt(23, 59, 59, 654_321)
        .unwrap();
    t.exec(
        "prepared_insert_types",
        sqlx::query(&ins)
            .bind("prep-types")
            .bind(42i32)
            .bind(Decimal::from_str("12345678901234.123456").unwrap())
            .bind(3.25f64)
            .bind(day)
            .bind(created)
            .bind(created6)
            .bind(SMALL_BLOB)
            .bind(UNICODE_TEXT)
            .execute(&mut *conn)
            .await,
    )?;
    t.exec(
        "prepared_insert_nulls",
        sqlx::query(&ins)
            .bind("prep-nulls")
            .bind(None::<i32>)
            .bind(None::<Decimal>)
            .bind(None::<f64>)
            .bind(None::<NaiveDate>)
            .bind(None::<NaiveDateTime>)
            .bind(None::<NaiveDateTime>)
            .bind(None::<Vec<u8>>)
            .bind(None::<String>)
            .execute(&mut *conn)
            .await,
    )?;
    t.exec(
        "prepared_insert_bigblob",
        sqlx::query(&ins)
            .bind("prep-bigblob")
            .bind(7i64)
            .bind(Decimal::from_str("-99999999999999.999999").unwrap())
            .bind(0.5f64)
            .bind(None::<NaiveDate>)
            .bind(None::<NaiveDateTime>)
            .bind(None::<NaiveDateTime>)
            .bind(big_blob())
            .bind("big")
            .execute(&mut *conn)
            .await,
    )?;
    let sel =
        format!("SELECT id, name, qty, note FROM {tbl} WHERE id >= ? AND name <> ? ORDER BY id");
    t.rows(
        "prepared_select",
        sqlx::query(&sel)
            .bind(2i64)
            .bind("gamma")
            .fetch_all(&mut *conn)
            .await,
    )?;
    // the same statement again: sqlx executes its cached statement id
    t.rows(
        "prepared_select_cached",
        sqlx::query(&sel)
            .bind(3i64)
            .bind("alpha")
            .fetch_all(&mut *conn)
            .await,
    )?;
    t.rows(
        "prepared_select_null",
        sqlx::query(&format!(
            "SELECT id, name FROM {tbl} WHERE qty <=> ? ORDER BY id"
        ))
        .bind(None::<i32>)
        .fetch_all(&mut *conn)
        .await,
    )?;
    t.rows(
        "prepared_select_unicode",
        sqlx::query(&format!(
            "SELECT id, note, CHAR_LENGTH(note), LENGTH(note), HEX(note) FROM {tbl} WHERE note = ?"
        ))
        .bind(UNICODE_TEXT)
        .fetch_all(&mut *conn)
        .await,
    )?;
    t.rows(
        "prepared_select_blob",
        sqlx::query(&format!(
            "SELECT id, data, HEX(data) FROM {tbl} WHERE data = ?"
        ))
        .bind(SMALL_BLOB)
        .fetch_all(&mut *conn)
        .await,
    )?;
    t.rows(
        "select_bigblob",
        sqlx::query(&format!(
            "SELECT id, LENGTH(data), SHA2(data, 256), data FROM {tbl} WHERE name = ?"
        ))
        .bind("prep-bigblob")
        .fetch_all(&mut *conn)
        .await,
    )?;
    t.rows(
        "select_typed",
        sqlx::query(&format!(
            "SELECT price, created6, CAST(created6 AS CHAR), price * 2, DATE_FORMAT(created, '%Y/%m/%d') FROM {tbl} WHERE name = ?"
        ))
        .bind("prep-types")
        .fetch_all(&mut *conn)
        .await,
    )?;
    // typed decoding into Rust values
    let row = sqlx::query(&format!(
        "SELECT price, created, created6, day, data, note, qty FROM {tbl} WHERE name = ?"
    ))
    .bind("prep-types")
    .fetch_one(&mut *conn)
    .await?;
    let price: Decimal = row.try_get(0)?;
    let created_back: NaiveDateTime = row.try_get(1)?;
    let created6_back: NaiveDateTime = row.try_get(2)?;
    let day_back: NaiveDate = row.try_get(3)?;
    let data: Vec<u8> = row.try_get(4)?;
    // a utf8mb4_bin column carries the BINARY flag: sqlx calls it BLOB
    let note: String = row.try_get_unchecked(5)?;
    let qty: Option<i32> = row.try_get(6)?;
    t.emit(json!({
        "step": "typed_decode",
        "price": price.to_string(),
        "price_matches": price == Decimal::from_str("12345678901234.123456").unwrap(),
        "created_matches": created_back == created,
        "created6": created6_back.format("%Y-%m-%d %H:%M:%S%.6f").to_string(),
        "created6_matches": created6_back == created6,
        "day_matches": day_back == day,
        "data": render_bytes(&data),
        "data_matches": data == SMALL_BLOB,
        "note": note,
        "note_matches": note == UNICODE_TEXT,
        "qty": qty,
    }));
    let big: Vec<u8> = sqlx::query_scalar(&format!("SELECT data FROM {tbl} WHERE name = ?"))
        .bind("prep-bigblob")
        .fetch_one(&mut *conn)
        .await?;
    t.emit(
        json!({"step": "typed_bigblob", "data": render_bytes(&big), "matches": big == big_blob()}),
    );

    // transaction rolled back: the row is gone
    {
        let mut tx = conn.begin().await?;
        t.emit(json!({"step": "txn_rollback_begin", "ok": true}));
        t.exec(
            "txn_rollback_insert",
            sqlx::query(&format!("INSERT INTO {tbl} (name, qty) VALUES (?, ?)"))
                .bind("txn-rollback")
                .bind(1i32)
                .execute(&mut *tx)
                .await,
        )?;
        t.rows(
            "txn_rollback_visible_inside",
            sqlx::query(&format!("SELECT COUNT(*) FROM {tbl} WHERE name = ?"))
                .bind("txn-rollback")
                .fetch_all(&mut *tx)
                .await,
        )?;
        t.ok("txn_rollback", tx.rollback().await)?;
    }
    t.rows(
        "txn_rollback_gone",
        sqlx::query(&format!("SELECT COUNT(*) FROM {tbl} WHERE name = ?"))
            .bind("txn-rollback")
            .fetch_all(&mut *conn)
            .await,
    )?;
    // transaction committed: the row is there
    {
        let mut tx = conn.begin().await?;
        t.emit(json!({"step": "txn_commit_begin", "ok": true}));
        t.exec(
            "txn_commit_insert",
            sqlx::query(&format!("INSERT INTO {tbl} (name, qty) VALUES (?, ?)"))
                .bind("txn-commit")
                .bind(2i32)
                .execute(&mut *tx)
                .await,
        )?;
        t.ok("txn_commit", tx.commit().await)?;
    }
    t.rows(
        "txn_commit_there",
        sqlx::query(&format!("SELECT id, name, qty FROM {tbl} WHERE name = ?"))
            .bind("txn-commit")
            .fetch_all(&mut *conn)
            .await,
    )?;

    // errors must not break the session
    t.rows(
        "error_syntax",
        sqlx::query("SELEC 1").fetch_all(&mut *conn).await,
    )?;
    t.rows(
        "after_syntax_error",
        sqlx::query("SELECT 1 AS ok").fetch_all(&mut *conn).await,
    )?;
    t.rows(
        "error_syntax_text",
        sqlx::raw_sql("SELEC 2").fetch_all(&mut *conn).await,
    )?;
    t.rows(
        "after_syntax_error_text",
        sqlx::raw_sql("SELECT 2 AS ok").fetch_all(&mut *conn).await,
    )?;
    t.exec(
        "error_duplicate",
        sqlx::query(&format!("INSERT INTO {tbl} (name) VALUES (?)"))
            .bind("alpha")
            .execute(&mut *conn)
            .await,
    )?;
    t.rows(
        "after_duplicate",
        sqlx::query(&format!("SELECT COUNT(*) AS n FROM {tbl}"))
            .fetch_all(&mut *conn)
            .await,
    )?;
    t.rows(
        "error_unknown_column",
        sqlx::query(&format!("SELECT no_such_column FROM {tbl}"))
            .fetch_all(&mut *conn)
            .await,
    )?;
    t.rows(
        "after_unknown_column",
        sqlx::query("SELECT ? AS ok")
            .bind(3i32)
            .fetch_all(&mut *conn)
            .await,
    )?;

    t.rows(
        "select_final",
        sqlx::query(&select_all).fetch_all(&mut *conn).await,
    )?;
    t.emit(json!({"step": "done"}));
    Ok(())
}
