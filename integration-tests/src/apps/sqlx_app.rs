//! The Rust application scenario: a small wallet service on a sqlx
//! `MySqlPool` with sqlx's defaults (`MySqlPool::connect_with`: up to 10
//! connections, each checked with a ping before it is handed out; every
//! `sqlx::query` is a prepared statement). Transactions with `pool.begin()`,
//! `tx.commit()`, `tx.rollback()` and a transaction dropped without either
//! (sqlx rolls it back when the connection goes back to the pool); reads
//! with `query_as` (a `FromRow` struct and tuples), `query_scalar`,
//! `fetch_one` / `fetch_optional` / `fetch_all`; writes with `execute`,
//! `rows_affected()` and `last_insert_id()`.
//!
//! Its rows: `users.user_id` in `[base, base + 99_999]` or generated, tenants
//! starting with the prefix; see [`super`] for the key normalisation.

use super::AppScenario;
use crate::db_error;
use crate::Endpoint;
use chrono::{NaiveDate, NaiveDateTime};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use sqlx::mysql::{MySqlPool, MySqlRow};
use sqlx::{FromRow, MySql, Row, Transaction};
use std::collections::HashMap;
use std::str::FromStr;

pub const SQLX_APP: AppScenario = AppScenario {
    name: "sqlx",
    base: 9_400_000_000,
    prefix: "app-sqlx",
};

/// A row of `users`, as an application maps it.
#[derive(Debug)]
struct User {
    user_id: i64,
    tenant_id: Option<String>,
    name: Option<String>,
    email: Option<String>,
    balance: Option<Decimal>,
    created_at: Option<NaiveDateTime>,
    status: Option<i8>,
}

impl<'r> FromRow<'r, MySqlRow> for User {
    fn from_row(row: &'r MySqlRow) -> Result<Self, sqlx::Error> {
        Ok(User {
            user_id: row.try_get("user_id")?,
            tenant_id: row.try_get("tenant_id")?,
            name: row.try_get("name")?,
            email: row.try_get("email")?,
            balance: row.try_get("balance")?,
            created_at: row.try_get("created_at")?,
            status: row.try_get("status")?,
        })
    }
}

/// A row of `apps_audit`: id, actor, action, detail, amount.
type AuditRow = (i64, String, String, Option<String>, Option<Decimal>);

/// A message as the history page shows it: id, created_at, sender, body.
type MessageRow = (i64, NaiveDateTime, Option<i64>, String);

const USER_SELECT: &str =
    "SELECT user_id, tenant_id, name, email, balance, created_at, status FROM users";

/// Generated keys print as `gen#N` (see [`super`]).
struct Keys {
    base: i64,
    top: i64,
    labels: HashMap<i64, usize>,
}

impl Keys {
    fn show(&mut self, id: i64) -> Value {
        if id == 0 || (self.base..=self.top).contains(&id) {
            return json!(id);
        }
        let next = self.labels.len() + 1;
        let n = *self.labels.entry(id).or_insert(next);
        json!(format!("gen#{n}"))
    }
}

struct App {
    pool: MySqlPool,
    keys: Keys,
    out: Vec<String>,
    s: AppScenario,
}

fn error(e: &sqlx::Error) -> Value {
    match db_error(e) {
        Some((code, sqlstate, _)) => json!({"code": code, "sqlstate": sqlstate}),
        None => json!({"client_error": e.to_string()}),
    }
}

fn dt(s: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").expect("a datetime")
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).expect("a decimal")
}

impl App {
    /// A transcript line: `step` (or `finding`) first, for readability.
    fn emit(&mut self, mut rec: Value) {
        let first = if rec.get("finding").is_some() {
            "finding"
        } else {
            "step"
        };
        let name = rec
            .as_object_mut()
            .and_then(|m| m.remove(first))
            .unwrap_or(Value::Null);
        let mut line = format!("{{\"{first}\":{name}");
        if let Value::Object(m) = rec {
            for (k, v) in m {
                line.push_str(&format!(",{}:{v}", Value::String(k)));
            }
        }
        line.push('}');
        self.out.push(line);
    }

    fn user(&mut self, u: &User) -> Value {
        json!([
            self.keys.show(u.user_id),
            u.tenant_id,
            u.name,
            u.email,
            u.balance.map(|b| b.to_string()),
            u.created_at.map(|d| d.to_string()),
            u.status
        ])
    }

    fn users(&mut self, users: &[User]) -> Value {
        Value::Array(users.iter().map(|u| self.user(u)).collect())
    }

    fn tenant(&self, t: &str) -> String {
        format!("{}-{t}", self.s.prefix)
    }

    /// The scenario's users, ordered by key (a read on the pool).
    async fn list_users(&mut self, step: &str) {
        let r = sqlx::query_as::<_, User>(&format!(
            "{USER_SELECT} WHERE tenant_id LIKE ? ORDER BY user_id"
        ))
        .bind(format!("{}%", self.s.prefix))
        .fetch_all(&self.pool)
        .await;
        let rec = match r {
            Ok(users) => json!({"step": step, "rows": self.users(&users)}),
            Err(e) => json!({"step": step, "error": error(&e)}),
        };
        self.emit(rec);
    }

    async fn balances(&mut self, step: &str, ids: &[i64]) {
        let mut rows = Vec::new();
        for id in ids {
            let r: Result<Option<(i64, Option<Decimal>)>, _> =
                sqlx::query_as("SELECT user_id, balance FROM users WHERE user_id = ?")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await;
            rows.push(match r {
                Ok(Some((k, b))) => json!([self.keys.show(k), b.map(|b| b.to_string())]),
                Ok(None) => json!([self.keys.show(*id), "missing"]),
                Err(e) => json!({"error": error(&e)}),
            });
        }
        self.emit(json!({"step": step, "rows": rows}));
    }

    async fn audit(&mut self, step: &str) {
        let r: Result<Vec<AuditRow>, _> =
            sqlx::query_as("SELECT id, actor, action, detail, amount FROM apps_audit ORDER BY id")
                .fetch_all(&self.pool)
                .await;
        let rec = match r {
            Ok(rows) => {
                // the ids of the two concurrent transfers depend on which came
                // first: the ids, then the rows without them, sorted
                let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
                let mut rows: Vec<String> = rows
                    .into_iter()
                    .map(|(_, actor, action, detail, amount)| {
                        json!([actor, action, detail, amount.map(|a| a.to_string())]).to_string()
                    })
                    .collect();
                rows.sort();
                let rows: Vec<Value> = rows
                    .iter()
                    .map(|r| serde_json::from_str(r).expect("rendered JSON"))
                    .collect();
                json!({"step": step, "ids": ids, "rows": rows})
            }
            Err(e) => json!({"step": step, "error": error(&e)}),
        };
        self.emit(rec);
    }
}

/// A transfer between two accounts in one transaction: both balances read
/// with `FOR UPDATE`, both updated, an audit row (unsharded, AUTO_INCREMENT).
/// Returns the audit row's id, or the reason it was given up (after which the
/// transaction is left to the caller).
async fn transfer(
    tx: &mut Transaction<'static, MySql>,
    from: i64,
    to: i64,
    amount: Decimal,
) -> Result<Result<u64, String>, sqlx::Error> {
    let from_balance: Option<Decimal> =
        sqlx::query_scalar("SELECT balance FROM users WHERE user_id = ? FOR UPDATE")
            .bind(from)
            .fetch_one(&mut **tx)
            .await?;
    let to_balance: Option<Decimal> =
        sqlx::query_scalar("SELECT balance FROM users WHERE user_id = ? FOR UPDATE")
            .bind(to)
            .fetch_one(&mut **tx)
            .await?;
    let (Some(from_balance), Some(_)) = (from_balance, to_balance) else {
        return Ok(Err("no balance".into()));
    };
    if from_balance < amount {
        return Ok(Err(format!(
            "insufficient funds: {from_balance} < {amount}"
        )));
    }
    for (id, delta) in [(from, -amount), (to, amount)] {
        let done = sqlx::query("UPDATE users SET balance = balance + ? WHERE user_id = ?")
            .bind(delta)
            .bind(id)
            .execute(&mut **tx)
            .await?;
        if done.rows_affected() != 1 {
            return Ok(Err(format!(
                "{} rows updated for one account",
                done.rows_affected()
            )));
        }
    }
    let audit = sqlx::query(
        "INSERT INTO apps_audit (actor, action, detail, amount) VALUES (?, 'transfer', ?, ?)",
    )
    .bind("wallet")
    .bind(format!("{from} -> {to}"))
    .bind(amount)
    .execute(&mut **tx)
    .await?;
    Ok(Ok(audit.last_insert_id()))
}

const PROBE_ROUNDS: i64 = 20;

/// Writes `users.status` of `id` on one pooled connection (autocommit, or a
/// committed transaction, alternately) and reads it at once on the pool
/// while that connection is still held; returns the rounds whose read did
/// not see the write.
async fn reads_after_writes_of_another_connection(
    pool: &MySqlPool,
    id: i64,
) -> Result<Vec<i64>, sqlx::Error> {
    let mut writer = pool.acquire().await?;
    let mut stale = Vec::new();
    for round in 0..PROBE_ROUNDS {
        let status = 10 + round as i8;
        let update = sqlx::query("UPDATE users SET status = ? WHERE user_id = ?")
            .bind(status)
            .bind(id);
        if round % 2 == 0 {
            update.execute(&mut *writer).await?;
        } else {
            let mut tx = sqlx::Connection::begin(&mut *writer).await?;
            update.execute(&mut *tx).await?;
            tx.commit().await?;
        }
        let seen: Option<i8> = sqlx::query_scalar("SELECT status FROM users WHERE user_id = ?")
            .bind(id)
            .fetch_one(pool)
            .await?;
        if seen != Some(status) {
            stale.push(round);
        }
    }
    Ok(stale)
}

/// Runs the scenario against `ep` and returns its transcript (JSON lines).
pub async fn run(ep: &Endpoint) -> Result<String, String> {
    let s = SQLX_APP;
    let pool = MySqlPool::connect_with(ep.sqlx_options())
        .await
        .map_err(|e| format!("sqlx pool on {}: {e}", ep.addr()))?;
    let mut app = App {
        pool,
        keys: Keys {
            base: s.base,
            top: s.top(),
            labels: HashMap::new(),
        },
        out: Vec::new(),
        s,
    };
    let r = scenario(&mut app).await;
    app.pool.close().await;
    r.map_err(|e| {
        format!(
            "the sqlx app stopped: {e}\n--- transcript so far ---\n{}",
            app.out.join("\n")
        )
    })?;
    let mut text = app.out.join("\n");
    text.push('\n');
    Ok(text)
}

async fn scenario(app: &mut App) -> Result<(), sqlx::Error> {
    let b = app.s.base;
    let acme = app.tenant("acme");
    let beta = app.tenant("beta");

    // ------------------------------------------------ sign-ups (generated keys)
    let mut generated = Vec::new();
    for (i, (tenant, name)) in [(&acme, "Ada 🦀"), (&acme, "Grace"), (&beta, "Линус")]
        .into_iter()
        .enumerate()
    {
        let r = sqlx::query(
            "INSERT INTO users (tenant_id, name, email, balance, created_at, status) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(tenant)
        .bind(name)
        .bind(format!("user{i}@example.com"))
        .bind(dec("50.0000"))
        .bind(dt(&format!("2024-0{}-15 09:30:00", i + 1)))
        .bind(1i8)
        .execute(&app.pool)
        .await;
        let rec = match r {
            Ok(done) => {
                generated.push(done.last_insert_id() as i64);
                json!({"step": "signup", "affected": done.rows_affected(),
                       "insert_id": app.keys.show(done.last_insert_id() as i64)})
            }
            Err(e) => json!({"step": "signup", "error": error(&e)}),
        };
        app.emit(rec);
    }
    for (i, key) in generated.clone().into_iter().enumerate() {
        let r = sqlx::query_as::<_, User>(&format!("{USER_SELECT} WHERE user_id = ?"))
            .bind(key)
            .fetch_optional(&app.pool)
            .await;
        let rec = match r {
            Ok(Some(u)) => json!({"step": format!("profile_{i}"), "user": app.user(&u)}),
            Ok(None) => json!({"step": format!("profile_{i}"), "user": null}),
            Err(e) => json!({"step": format!("profile_{i}"), "error": error(&e)}),
        };
        app.emit(rec);
    }

    // ---------------------------- an import in one transaction, every shard
    let mut tx = app.pool.begin().await?;
    let mut affected = Vec::new();
    for i in 0..8i64 {
        let r = sqlx::query(
            "INSERT INTO users (user_id, tenant_id, name, email, balance, created_at, status) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(b + i)
        .bind(if i % 2 == 0 { &acme } else { &beta })
        .bind(format!("imported {i} 漢字"))
        .bind(if i % 3 == 0 { None } else { Some(format!("imp{i}@example.com")) })
        .bind(dec("100.0000") + Decimal::from(i))
        .bind(dt(&format!("2024-{:02}-01 00:00:00", i + 1)))
        .bind(1i8)
        .execute(&mut *tx)
        .await?;
        affected.push(r.rows_affected());
    }
    // the transaction sees its own rows on every shard
    let inside: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE user_id BETWEEN ? AND ?")
            .bind(b)
            .bind(b + 99)
            .fetch_one(&mut *tx)
            .await?;
    tx.commit().await?;
    app.emit(json!({"step": "import_commit", "affected": affected, "count_inside": inside}));
    app.list_users("after_import").await;

    // --------------------------------------------------------- transfers
    let accounts = [b, b + 1, b + 2, b + 3, b + 4, b + 5];
    let mut tx = app.pool.begin().await?;
    let r = transfer(&mut tx, b, b + 1, dec("30.5000")).await;
    let rec = match r {
        Ok(Ok(audit_id)) => {
            tx.commit().await?;
            json!({"step": "transfer_commit", "audit_id": audit_id})
        }
        Ok(Err(why)) => {
            tx.rollback().await?;
            json!({"step": "transfer_commit", "refused": why})
        }
        Err(e) => {
            tx.rollback().await?;
            json!({"step": "transfer_commit", "error": error(&e)})
        }
    };
    app.emit(rec);
    app.balances("balances_after_transfer", &accounts[..2])
        .await;

    // insufficient funds: the service rolls back explicitly
    let mut tx = app.pool.begin().await?;
    let r = transfer(&mut tx, b + 1, b, dec("1000000")).await;
    let rec = match r {
        Ok(Ok(id)) => json!({"step": "transfer_insufficient", "audit_id": id}),
        Ok(Err(why)) => json!({"step": "transfer_insufficient", "refused": why}),
        Err(e) => json!({"step": "transfer_insufficient", "error": error(&e)}),
    };
    tx.rollback().await?;
    app.emit(rec);
    app.balances("balances_after_insufficient", &accounts[..2])
        .await;

    // an early return: the transaction is dropped with its writes done
    {
        let mut tx = app.pool.begin().await?;
        let r = transfer(&mut tx, b + 2, b + 3, dec("10.0000")).await;
        let rec = match r {
            Ok(Ok(_)) => json!({"step": "transfer_dropped", "done_then_dropped": true}),
            Ok(Err(why)) => json!({"step": "transfer_dropped", "refused": why}),
            Err(e) => json!({"step": "transfer_dropped", "error": error(&e)}),
        };
        app.emit(rec);
        drop(tx);
    }
    app.balances("balances_after_drop", &accounts[2..4]).await;
    app.audit("audit_after_drop").await;

    // two transfers at once, on two pooled connections
    let (pool_a, pool_b) = (app.pool.clone(), app.pool.clone());
    let one = async move {
        let mut tx = pool_a.begin().await?;
        let r = transfer(&mut tx, b + 2, b + 3, dec("5.2500")).await?;
        tx.commit().await?;
        Ok::<_, sqlx::Error>(r)
    };
    let two = async move {
        let mut tx = pool_b.begin().await?;
        let r = transfer(&mut tx, b + 4, b + 5, dec("7.7500")).await?;
        tx.commit().await?;
        Ok::<_, sqlx::Error>(r)
    };
    let (r1, r2) = tokio::join!(one, two);
    let show = |r: Result<Result<u64, String>, sqlx::Error>| match r {
        Ok(Ok(_)) => json!("committed"),
        Ok(Err(why)) => json!({ "refused": why }),
        Err(e) => json!({ "error": error(&e) }),
    };
    let rec = json!({"step": "concurrent_transfers", "one": show(r1), "two": show(r2)});
    app.emit(rec);
    app.balances("balances_after_concurrent", &accounts).await;
    // audit ids of concurrent transfers depend on who came first: only the count
    let n: Result<i64, _> =
        sqlx::query_scalar("SELECT COUNT(*) FROM apps_audit WHERE action = 'transfer'")
            .fetch_one(&app.pool)
            .await;
    let rec = match n {
        Ok(n) => json!({"step": "audit_count", "transfers": n}),
        Err(e) => json!({"step": "audit_count", "error": error(&e)}),
    };
    app.emit(rec);

    // Not compared (a `finding` line, reported by the test): reads on the pool
    // while another connection of it has just written. With
    // read_consistency = "session" a replica may serve such a read before it
    // has applied the write; a single database never shows that.
    let stale = reads_after_writes_of_another_connection(&app.pool, b + 6).await;
    let rec = match stale {
        Ok(stale) => json!({"finding": "reads_after_writes_of_another_connection",
                            "rounds": PROBE_ROUNDS, "stale_rounds": stale}),
        Err(e) => {
            json!({"finding": "reads_after_writes_of_another_connection", "error": error(&e)})
        }
    };
    app.emit(rec);

    // ---------------------------------------------- a key generated in a transaction
    let mut tx = app.pool.begin().await?;
    let done =
        sqlx::query("INSERT INTO users (tenant_id, name, balance, status) VALUES (?, ?, ?, ?)")
            .bind(&beta)
            .bind("in a transaction")
            .bind(dec("0.0000"))
            .bind(1i8)
            .execute(&mut *tx)
            .await?;
    let key = done.last_insert_id() as i64;
    let seen = sqlx::query_as::<_, User>(&format!("{USER_SELECT} WHERE user_id = ?"))
        .bind(key)
        .fetch_optional(&mut *tx)
        .await?;
    tx.commit().await?;
    let rec = json!({"step": "generated_in_transaction", "insert_id": app.keys.show(key),
                     "read_back": seen.map(|u| app.user(&u))});
    app.emit(rec);

    // ------------------------------------------------------------- messages
    let mut tx = app.pool.begin().await?;
    let mut affected = Vec::new();
    for (i, (tenant, at)) in [
        (&acme, "2024-01-31 23:59:59"),
        (&acme, "2024-02-01 00:00:00"),
        (&beta, "2024-02-14 12:00:00"),
        (&acme, "2024-06-30 08:00:00"),
        (&beta, "2024-12-31 23:59:59"),
        (&acme, "2024-12-01 00:00:00"),
    ]
    .into_iter()
    .enumerate()
    {
        let r = sqlx::query(
            "INSERT INTO message_records (id, tenant_id, created_at, sender, body) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(b + i as i64)
        .bind(tenant)
        .bind(dt(at))
        .bind(if i == 3 { None } else { Some(b + (i as i64 % 3)) })
        .bind(format!("message {i}: 你好 🦀"))
        .execute(&mut *tx)
        .await?;
        affected.push(r.rows_affected());
    }
    tx.commit().await?;
    app.emit(json!({"step": "messages_posted", "affected": affected}));
    for (step, tenant, from, to) in [
        (
            "history_acme_q1",
            &acme,
            "2024-01-01 00:00:00",
            "2024-04-01 00:00:00",
        ),
        (
            "history_beta_year",
            &beta,
            "2024-01-01 00:00:00",
            "2025-01-01 00:00:00",
        ),
    ] {
        let r: Result<Vec<MessageRow>, _> = sqlx::query_as(
            "SELECT id, created_at, sender, body FROM message_records \
             WHERE tenant_id = ? AND created_at >= ? AND created_at < ? ORDER BY created_at, id",
        )
        .bind(tenant)
        .bind(dt(from))
        .bind(dt(to))
        .fetch_all(&app.pool)
        .await;
        let rec = match r {
            Ok(rows) => {
                let rows: Vec<Value> = rows
                    .into_iter()
                    .map(|(id, at, sender, body)| json!([id, at.to_string(), sender, body]))
                    .collect();
                json!({"step": step, "rows": rows})
            }
            Err(e) => json!({"step": step, "error": error(&e)}),
        };
        app.emit(rec);
    }
    let r: Result<Vec<(String, i64)>, _> = sqlx::query_as(
        "SELECT DATE_FORMAT(created_at, '%Y-%m') AS month, COUNT(*) AS n FROM message_records \
         WHERE tenant_id = ? GROUP BY month ORDER BY month",
    )
    .bind(&acme)
    .fetch_all(&app.pool)
    .await;
    let rec = match r {
        Ok(rows) => json!({"step": "messages_per_month", "rows": rows}),
        Err(e) => json!({"step": "messages_per_month", "error": error(&e)}),
    };
    app.emit(rec);

    // ------------------------------------------- updates: affected-row counts
    for step in ["deactivate_beta", "deactivate_beta_again"] {
        let r = sqlx::query("UPDATE users SET status = 0 WHERE tenant_id = ?")
            .bind(&beta)
            .execute(&app.pool)
            .await;
        let rec = match r {
            Ok(done) => json!({"step": step, "affected": done.rows_affected()}),
            Err(e) => json!({"step": step, "error": error(&e)}),
        };
        app.emit(rec);
    }

    // a duplicate key inside a transaction: the service rolls back
    let mut tx = app.pool.begin().await?;
    let mut rec = json!({"step": "duplicate_in_transaction"});
    for (what, id) in [("new", b + 20), ("duplicate", b)] {
        let r =
            sqlx::query("INSERT INTO users (user_id, tenant_id, name, status) VALUES (?, ?, ?, ?)")
                .bind(id)
                .bind(&acme)
                .bind("dup test")
                .bind(1i8)
                .execute(&mut *tx)
                .await;
        rec[what] = match r {
            Ok(done) => json!({"affected": done.rows_affected()}),
            Err(e) => json!({"error": error(&e)}),
        };
    }
    tx.rollback().await?;
    app.emit(rec);
    let gone: Result<Option<i64>, _> =
        sqlx::query_scalar("SELECT user_id FROM users WHERE user_id = ?")
            .bind(b + 20)
            .fetch_optional(&app.pool)
            .await;
    let rec = match gone {
        Ok(v) => json!({"step": "duplicate_rolled_back", "found": v}),
        Err(e) => json!({"step": "duplicate_rolled_back", "error": error(&e)}),
    };
    app.emit(rec);

    // ------------------------------------------------ dictionary (broadcast)
    let dict_type = format!("{}-currency", app.s.prefix);
    let mut affected = Vec::new();
    for (i, (key, label)) in [("EUR", "Euro €"), ("JPY", "円"), ("USD", "US dollar")]
        .into_iter()
        .enumerate()
    {
        let r = sqlx::query(
            "INSERT INTO sys_dictionaries (dict_type, dict_key, label, sort_order) VALUES (?, ?, ?, ?)",
        )
        .bind(&dict_type)
        .bind(key)
        .bind(label)
        .bind(i as i32)
        .execute(&app.pool)
        .await;
        affected.push(match r {
            Ok(done) => json!(done.rows_affected()),
            Err(e) => error(&e),
        });
    }
    app.emit(json!({"step": "dictionary_saved", "affected": affected}));
    let r: Result<Vec<(String, Option<String>)>, _> = sqlx::query_as(
        "SELECT dict_key, label FROM sys_dictionaries WHERE dict_type = ? ORDER BY sort_order",
    )
    .bind(&dict_type)
    .fetch_all(&app.pool)
    .await;
    let rec = match r {
        Ok(rows) => json!({"step": "dictionary", "rows": rows}),
        Err(e) => json!({"step": "dictionary", "error": error(&e)}),
    };
    app.emit(rec);

    // --------------------------------------------------- delete, then counts
    let r = sqlx::query("DELETE FROM users WHERE user_id = ?")
        .bind(b + 7)
        .execute(&app.pool)
        .await;
    let rec = match r {
        Ok(done) => json!({"step": "delete_user", "affected": done.rows_affected()}),
        Err(e) => json!({"step": "delete_user", "error": error(&e)}),
    };
    app.emit(rec);
    let r = sqlx::query_as::<_, User>(&format!("{USER_SELECT} WHERE user_id = ?"))
        .bind(b + 7)
        .fetch_optional(&app.pool)
        .await;
    let rec = match r {
        Ok(u) => json!({"step": "deleted_user", "found": u.is_some()}),
        Err(e) => json!({"step": "deleted_user", "error": error(&e)}),
    };
    app.emit(rec);
    let r: Result<(i64, Option<Decimal>, Option<NaiveDateTime>), _> = sqlx::query_as(
        "SELECT COUNT(*), SUM(balance), MAX(created_at) FROM users WHERE tenant_id LIKE ?",
    )
    .bind(format!("{}%", app.s.prefix))
    .fetch_one(&app.pool)
    .await;
    let rec = match r {
        Ok((n, sum, max)) => json!({"step": "totals", "count": n,
            "sum": sum.map(|d| d.to_string()), "max_created": max.map(|d| d.to_string())}),
        Err(e) => json!({"step": "totals", "error": error(&e)}),
    };
    app.emit(rec);
    let since = NaiveDate::from_ymd_opt(2024, 3, 1)
        .expect("a date")
        .and_hms_opt(0, 0, 0)
        .expect("a time");
    let r: Result<Vec<(String, i64)>, _> = sqlx::query_as(
        "SELECT tenant_id, COUNT(*) FROM users WHERE tenant_id LIKE ? AND created_at >= ? \
         GROUP BY tenant_id ORDER BY tenant_id",
    )
    .bind(format!("{}%", app.s.prefix))
    .bind(since)
    .fetch_all(&app.pool)
    .await;
    let rec = match r {
        Ok(rows) => json!({"step": "per_tenant_since_march", "rows": rows}),
        Err(e) => json!({"step": "per_tenant_since_march", "error": error(&e)}),
    };
    app.emit(rec);

    app.audit("audit_final").await;
    app.list_users("final_users").await;
    app.emit(json!({"step": "done"}));
    Ok(())
}
