//! Fidelity on the shipped config (examples/wework.toml: replicas on,
//! read-your-writes per session), differentially against one plain
//! MariaDB database (see `src/sharding.rs`): what one server does with
//! multi-statement strings, user variables assigned by reads, RETURNING,
//! sharding values of another type, client character sets and implicit
//! transactions, ShardGate does too.

use futures_util::TryStreamExt;
use shardgate_integration_tests::sharding::{
    delete_directly, users, users_insert, writer, Arg, Ctx,
};
use shardgate_integration_tests::{db_error, sandbox, Driver};
use sqlx::{ConnectOptions, Connection, Either, Executor, Row};

/// Ids of rows a test adds: far from the seed's and from `sharding.rs`'s.
fn range(test_no: i64) -> (i64, i64) {
    let lo = 970_000_000 + test_no * 100_000;
    (lo, lo + 99_999)
}

async fn clean_users(c: &Ctx, lo: i64, hi: i64) {
    if let Err(e) =
        delete_directly(c.shared, "users", &format!("user_id BETWEEN {lo} AND {hi}")).await
    {
        panic!("{}: clean-up: {e}", c.name);
    }
}

async fn clean_messages(c: &Ctx, lo: i64, hi: i64) {
    let filter = format!("id BETWEEN {lo} AND {hi}");
    if let Err(e) = delete_directly(c.shared, "message_records", &filter).await {
        panic!("{}: clean-up: {e}", c.name);
    }
}

/// Every result of a multi-statement string, in order: rows, affected rows
/// and last insert id per statement; an error ends the list.
async fn results(conn: &mut sqlx::MySqlConnection, sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rows: Vec<String> = Vec::new();
    let mut stream = sqlx::raw_sql(sql).fetch_many(&mut *conn);
    loop {
        match stream.try_next().await {
            Ok(Some(Either::Right(row))) => {
                rows.push(shardgate_integration_tests::sharding::render_row(&row))
            }
            Ok(Some(Either::Left(done))) => {
                out.push(format!(
                    "rows {rows:?}, affected {}, last id {}",
                    done.rows_affected(),
                    done.last_insert_id()
                ));
                rows.clear();
            }
            Ok(None) => break,
            Err(e) => {
                let code = db_error(&e).map(|(code, _, _)| code);
                out.push(format!("error {code:?}"));
                break;
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_statement_strings_run_statement_by_statement() {
    let Some((mut c, _g)) = writer("multi_statement_strings_run_statement_by_statement").await
    else {
        return;
    };
    let (lo, hi) = range(1);
    clean_users(&c, lo, hi).await;
    let rows = users(8, lo, 0xf1);
    let strings = [
        // The issue's shapes: a read then a write, on unsharded and sharded tables.
        "SELECT @@autocommit; UPDATE sys_configs SET v = v WHERE k = 'none'".to_owned(),
        format!("(SELECT 1); DELETE FROM users WHERE user_id = {lo}"),
        format!(
            "{}; SELECT user_id, name FROM users WHERE user_id BETWEEN {lo} AND {hi} ORDER BY user_id; UPDATE users SET status = 3 WHERE user_id BETWEEN {lo} AND {hi}; SELECT COUNT(*), SUM(status) FROM users WHERE user_id BETWEEN {lo} AND {hi}",
            users_insert(&rows)
        ),
        format!("SELECT 5 INTO @m; SELECT @m + 1, user_id FROM users WHERE user_id = {}", rows[1].user_id),
        // An error stops the rest, as on one server.
        format!("DELETE FROM users WHERE user_id = {}; SELEC 2; DELETE FROM users WHERE user_id = {}", rows[2].user_id, rows[3].user_id),
        format!("SELECT COUNT(*) FROM users WHERE user_id BETWEEN {lo} AND {hi}"),
        "SELECT 1; -- a comment alone is an empty statement".to_owned(),
        "SELECT 1;;SELECT 2".to_owned(),
        format!("START TRANSACTION; DELETE FROM users WHERE user_id BETWEEN {lo} AND {hi}; ROLLBACK; SELECT COUNT(*) FROM users WHERE user_id BETWEEN {lo} AND {hi}"),
    ];
    let mut wrong = Vec::new();
    for sql in &strings {
        let reference = results(&mut c.rf, sql).await;
        let proxied = results(&mut c.px, sql).await;
        if reference != proxied {
            wrong.push(format!(
                "{sql}\n  reference: {reference:?}\n  shardgate: {proxied:?}"
            ));
        }
    }
    clean_users(&c, lo, hi).await;
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    c.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_variables_assigned_anywhere_are_seen_later() {
    let Some((mut c, _g)) = writer("user_variables_assigned_anywhere_are_seen_later").await else {
        return;
    };
    let (lo, hi) = range(2);
    clean_users(&c, lo, hi).await;
    let rows = users(4, lo, 0xf2);
    c.same(&users_insert(&rows)).await;
    let id = rows[0].user_id;
    for sql in [
        "SELECT 5 INTO @y".to_owned(),
        "SELECT @y, @y + 1".to_owned(),
        "SELECT @w := 7".to_owned(),
        "SELECT @w".to_owned(),
        "SET @s = CONCAT('é', 'x'), @d = 0.1 + 0.2, @f = 1e0 / 3, @n = NULL, @i = 1 + 1".to_owned(),
        "SELECT @s, @d, @f, @n, @i, @s = 'ÉX'".to_owned(),
        format!("SELECT name, balance INTO @name, @balance FROM users WHERE user_id = {id}"),
        "SELECT @name, @balance".to_owned(),
        "SET @b = _binary 0x00ff".to_owned(),
        "SELECT HEX(@b), @b = _binary 0x00FF".to_owned(),
        "SELECT user_id FROM users WHERE user_id = @y OR name = @name ORDER BY user_id".to_owned(),
        format!("UPDATE users SET status = @i WHERE user_id = {id}"),
        format!("SELECT status FROM users WHERE user_id = {id}"),
    ] {
        c.same_ordered(&sql).await;
    }
    // Prepared: assigned by an execution, read by the next.
    c.same_prep("SELECT ? INTO @p", vec![Arg::I64(41)]).await;
    c.same_prep("SELECT @p + ?", vec![Arg::I64(1)]).await;
    c.same_prep("SET @q = ?", vec![Arg::Str("é".into())]).await;
    c.same("SELECT @q, CHARSET(@q)").await;
    // Several nodes would each assign their own value: refused, as the
    // answer would not be one server's.
    let refused =
        c.px.fetch_all(sqlx::raw_sql(&format!(
            "SELECT @many := user_id FROM users WHERE user_id BETWEEN {lo} AND {hi}"
        )))
        .await
        .expect_err("a multi-node assignment is refused");
    assert_eq!(db_error(&refused).map(|e| e.0), Some(1235), "{refused}");
    clean_users(&c, lo, hi).await;
    c.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn returning_answers_with_the_rows_one_server_returns() {
    let Some((mut c, _g)) = writer("returning_answers_with_the_rows_one_server_returns").await
    else {
        return;
    };
    let (lo, hi) = range(3);
    clean_users(&c, lo, hi).await;
    let ids: Vec<i64> = (0..8).map(|i| lo + i).collect();
    let values = |from: usize, to: usize| {
        ids[from..to]
            .iter()
            .map(|id| format!("({id}, 'n{id}', {})", id % 3))
            .collect::<Vec<_>>()
            .join(", ")
    };
    // Multi-node INSERT: rows in the order of VALUES (ids on all four data sources).
    c.same_ordered(&format!(
        "INSERT INTO users (user_id, name, status) VALUES {} RETURNING user_id, status, users.name",
        values(0, 5)
    ))
    .await;
    // One node, qualified.
    c.same_ordered(&format!(
        "INSERT INTO users (user_id, name, status) VALUES {} RETURNING users.user_id, name",
        values(5, 6)
    ))
    .await;
    c.same_ordered(&format!(
        "REPLACE INTO users (user_id, name, status) VALUES ({}, 'again', 1), ({}, 'again', 1) RETURNING *",
        ids[0], ids[1]
    ))
    .await;
    // Prepared, several nodes.
    c.check(
        shardgate_integration_tests::sharding::Stmt::prepared(
            "INSERT INTO users (user_id, name, status) VALUES (?, ?, 1), (?, ?, 2) RETURNING user_id, name, status",
            vec![
                Arg::I64(ids[6]),
                Arg::Str("p6".into()),
                Arg::I64(ids[7]),
                Arg::Str("p7".into()),
            ],
        ),
        shardgate_integration_tests::sharding::Mode::Ordered,
        true,
    )
    .await;
    // DELETE: every node's rows (a multiset), text and prepared, then inside
    // a transaction rolled back.
    c.same(&format!(
        "DELETE FROM users WHERE user_id IN ({}, {}, {}) RETURNING user_id, name",
        ids[0], ids[1], ids[2]
    ))
    .await;
    c.same_prep(
        "DELETE FROM users WHERE user_id BETWEEN ? AND ? AND status = 1 RETURNING users.user_id",
        vec![Arg::I64(lo), Arg::I64(hi)],
    )
    .await;
    for conn in [&mut c.px, &mut c.rf] {
        conn.execute("START TRANSACTION").await.unwrap();
    }
    c.same(&format!(
        "DELETE FROM users WHERE user_id BETWEEN {lo} AND {hi} RETURNING user_id"
    ))
    .await;
    for conn in [&mut c.px, &mut c.rf] {
        conn.execute("ROLLBACK").await.unwrap();
    }
    c.same_ordered(&format!(
        "SELECT user_id, name, status FROM users WHERE user_id BETWEEN {lo} AND {hi} ORDER BY user_id"
    ))
    .await;
    // Generated keys: the rows come back with the keys the proxy made, as
    // stored where the rules say.
    let generated = c
        .px
        .fetch_all(sqlx::raw_sql(
            "INSERT INTO users (name, status) VALUES ('g1', 1), ('g2', 1), ('g3', 1) RETURNING user_id, name",
        ))
        .await
        .expect("INSERT ... RETURNING with generated keys");
    let names: Vec<String> = generated.iter().map(|r| r.get::<String, _>(1)).collect();
    assert_eq!(names, ["g1", "g2", "g3"]);
    for row in &generated {
        let id: i64 = row.get(0);
        let stored: (String,) = sqlx::query_as("SELECT name FROM users WHERE user_id = ?")
            .bind(id)
            .fetch_one(&mut c.px)
            .await
            .expect("the returned key is the stored one");
        c.px.execute(format!("DELETE FROM users WHERE user_id = {id}").as_str())
            .await
            .unwrap();
        assert!(stored.0.starts_with('g'));
    }
    c.placement("users").await;
    clean_users(&c, lo, hi).await;
    c.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharding_values_of_another_type_compare_as_mariadb_does() {
    let Some((mut c, _g)) = writer("sharding_values_of_another_type_compare_as_mariadb_does").await
    else {
        return;
    };
    let (lo, hi) = range(4);
    clean_users(&c, lo, hi).await;
    let rows = users(6, lo, 0xf4);
    c.same(&users_insert(&rows)).await;
    let id = rows[2].user_id;
    for value in [
        format!("'{id}'"),
        format!("' {id}'"),
        format!("'{id}.0'"),
        format!("'{id}abc'"),
        format!("{id}.0"),
        format!("{id}.5"),
        format!("'{id}.5'"),
        "'abc'".to_owned(),
        "''".to_owned(),
        "99999999999999999999".to_owned(),
        "'99999999999999999999'".to_owned(),
        "X'07'".to_owned(),
        "-5".to_owned(),
    ] {
        c.same(&format!(
            "SELECT user_id, name FROM users WHERE user_id = {value}"
        ))
        .await;
        c.same(&format!(
            "SELECT COUNT(*) FROM users WHERE user_id IN ({value}, {})",
            rows[0].user_id
        ))
        .await;
    }
    c.same_prep(
        "SELECT name FROM users WHERE user_id = ?",
        vec![Arg::Str(format!("{id}"))],
    )
    .await;
    c.same_prep(
        "SELECT name FROM users WHERE user_id = ?",
        vec![Arg::Str("x".into())],
    )
    .await;
    // Writes: a text key is stored (and so placed) as the integer MariaDB makes.
    c.same(&format!(
        "UPDATE users SET status = 9 WHERE user_id = '{id}'"
    ))
    .await;
    c.same(&format!(
        "INSERT INTO users (user_id, name) VALUES ('{}.5', 'rounded')",
        lo + 50
    ))
    .await;
    c.same(&format!(
        "SELECT user_id, status FROM users WHERE user_id BETWEEN {lo} AND {hi}"
    ))
    .await;
    c.placement("users").await;
    clean_users(&c, lo, hi).await;
    c.finish();
}

/// `message_records` shards by `tenant_id VARCHAR` with `crc32_mod`, which
/// places the integer 7 and the text '7' apart: a number written for the
/// column is stored, and so placed, as its text, and a number compared
/// with it matches every row whose text reads as that number, on any node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_string_sharding_column_takes_numbers_as_mariadb_does() {
    let Some((mut c, _g)) = writer("a_string_sharding_column_takes_numbers_as_mariadb_does").await
    else {
        return;
    };
    let (lo, hi) = range(9);
    clean_messages(&c, lo, hi).await;
    let insert = |id: i64, tenant: &str| {
        format!(
            "INSERT INTO message_records (id, tenant_id, created_at, sender, body) \
             VALUES ({id}, {tenant}, '2024-03-05 10:00:00', 1, 'm{id}')"
        )
    };
    for (n, tenant) in ["7", "'7'", "' 7'", "'07'", "7.50", "'7.0'", "-0.0", "070"]
        .into_iter()
        .enumerate()
    {
        c.same(&insert(lo + n as i64, tenant)).await;
    }
    c.same_prep(
        "INSERT INTO message_records (id, tenant_id, created_at, sender, body) \
         VALUES (?, ?, '2024-03-05 10:00:00', 1, 'bound')",
        vec![Arg::I64(lo + 20), Arg::I64(7)],
    )
    .await;
    let of_range = format!("id BETWEEN {lo} AND {hi}");
    for value in [
        "7", "'7'", "' 7'", "'07'", "7.0", "7.5", "'7.50'", "0", "'0.0'", "70",
    ] {
        c.same(&format!(
            "SELECT id, tenant_id FROM message_records WHERE {of_range} AND tenant_id = {value}"
        ))
        .await;
        c.same(&format!(
            "SELECT COUNT(*) FROM message_records WHERE {of_range} AND tenant_id IN ({value}, 'x')"
        ))
        .await;
    }
    for arg in [Arg::I64(7), Arg::Str("7".into()), Arg::Str("07".into())] {
        c.same_prep(
            &format!("SELECT id FROM message_records WHERE {of_range} AND tenant_id = ?"),
            vec![arg],
        )
        .await;
    }
    c.same(&format!(
        "UPDATE message_records SET body = 'seven' WHERE {of_range} AND tenant_id = 7"
    ))
    .await;
    c.same(&format!(
        "SELECT id, body FROM message_records WHERE {of_range}"
    ))
    .await;
    c.placement("message_records").await;
    clean_messages(&c, lo, hi).await;
    c.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unaliased_expressions_are_labelled_as_written() {
    let Some((mut c, _g)) = writer("unaliased_expressions_are_labelled_as_written").await else {
        return;
    };
    let (lo, hi) = range(8);
    clean_users(&c, lo, hi).await;
    let rows = users(6, lo, 0x1a);
    c.same(&users_insert(&rows)).await;
    let id = rows[1].user_id;
    let within = format!("users.user_id BETWEEN {lo} AND {hi}");
    // Column labels are compared with the reference's (`same`): each of
    // these names a sharded table inside an unaliased expression.
    c.same(&format!(
        "SELECT COUNT(users.user_id), SUM( `users`.status ) FROM users WHERE {within}"
    ))
    .await;
    c.same(&format!("SELECT users.status + 1, users.name, CONCAT(users.name, '`') FROM users WHERE user_id = {id}"))
        .await;
    c.same(&format!(
        "SELECT DISTINCT users.status * 2 FROM users WHERE {within}"
    ))
    .await;
    c.same_ordered(&format!(
        "SELECT users.tenant_id, COUNT(users.user_id) FROM users WHERE {within} GROUP BY users.tenant_id ORDER BY COUNT(users.user_id) DESC, users.tenant_id"
    ))
    .await;
    c.same_prep(
        "SELECT UPPER(users.name) FROM users WHERE user_id = ?",
        vec![Arg::I64(id)],
    )
    .await;
    c.same_prep(
        &format!("SELECT MAX(users.user_id) FROM users WHERE {within} AND users.status >= ?"),
        vec![Arg::I64(0)],
    )
    .await;
    let more = users(2, lo + 50, 0x1b);
    c.same(&format!(
        "{} RETURNING users.user_id, CONCAT(users.name, '!')",
        users_insert(&more)
    ))
    .await;
    c.same(&format!(
        "DELETE FROM users WHERE {within} AND users.user_id > {} RETURNING users.user_id * 1, users.name",
        lo + 40
    ))
    .await;
    clean_users(&c, lo, hi).await;
    c.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_character_sets_keep_every_byte() {
    let Some((c, _g)) = writer("client_character_sets_keep_every_byte").await else {
        return;
    };
    let reference = Driver::PyMySql
        .run_file("charsets.py", &c.shared.reference())
        .await
        .unwrap_or_else(|e| panic!("charsets.py against the reference: {e}"));
    let proxied = Driver::PyMySql
        .run_file("charsets.py", &c.shared.proxy())
        .await
        .unwrap_or_else(|e| panic!("charsets.py through shardgate: {e}"));
    shardgate_integration_tests::assert_same_transcript("charsets", &reference, &proxied);
    assert!(proxied.contains("\"done\""), "{proxied}");
    // Prepared statements in a latin1 connection: parameters of several
    // nodes bound as text keep their character set.
    let mut out = Vec::new();
    for ep in [c.shared.reference(), c.shared.proxy()] {
        let mut conn = ep.sqlx_options().charset("latin1").connect().await.unwrap();
        conn.execute("DROP TABLE IF EXISTS it_orders")
            .await
            .unwrap();
        conn.execute("CREATE TABLE it_orders (order_id BIGINT PRIMARY KEY, name VARCHAR(20) CHARACTER SET latin1)")
            .await
            .unwrap();
        sqlx::query("INSERT INTO it_orders VALUES (?, ?), (?, ?), (?, ?)")
            .bind(1)
            .bind("été")
            .bind(2)
            .bind("ça")
            .bind(3)
            .bind("naïve")
            .execute(&mut conn)
            .await
            .unwrap();
        let rows: Vec<(i64, String)> =
            sqlx::query_as("SELECT order_id, HEX(name) FROM it_orders ORDER BY order_id")
                .fetch_all(&mut conn)
                .await
                .unwrap();
        let found: Vec<(i64,)> = sqlx::query_as("SELECT order_id FROM it_orders WHERE name = ?")
            .bind("ça")
            .fetch_all(&mut conn)
            .await
            .unwrap();
        conn.execute("DROP TABLE it_orders").await.unwrap();
        out.push((rows, found));
    }
    assert_eq!(out[0], out[1], "reference vs shardgate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autocommit_off_runs_on_the_primaries_and_reads_its_own_writes() {
    let Some((c, _g)) =
        writer("autocommit_off_runs_on_the_primaries_and_reads_its_own_writes").await
    else {
        return;
    };
    let (lo, hi) = range(5);
    clean_users(&c, lo, hi).await;
    let mut conn = c.shared.proxy().connect().await.unwrap();
    // The issue's report, on an unsharded table and a sharded one.
    let mut plain = results(
        &mut conn,
        "DROP TABLE IF EXISTS it_autocommit; CREATE TABLE it_autocommit (id INT PRIMARY KEY, v INT); INSERT INTO it_autocommit VALUES (1, 1)",
    )
    .await;
    plain.extend(
        results(
            &mut conn,
            "SET autocommit=0; SELECT * FROM it_autocommit; UPDATE it_autocommit SET v = v + 1 WHERE id = 1; SELECT v FROM it_autocommit; COMMIT",
        )
        .await,
    );
    assert!(!plain.iter().any(|r| r.starts_with("error")), "{plain:?}");
    let mut other = c.shared.proxy().connect().await.unwrap();
    let v: (i32,) = sqlx::query_as("SELECT /* shardgate:primary */ v FROM it_autocommit")
        .fetch_one(&mut other)
        .await
        .unwrap();
    assert_eq!(v.0, 2);
    // Writes and reads of a sharded table inside the implicit transaction,
    // then a count right after a multi-node DELETE in autocommit mode.
    let rows = users(400, lo, 0xf5);
    conn.execute(users_insert(&rows).as_str()).await.unwrap();
    let n: (i64,) = sqlx::query_as(&format!(
        "SELECT COUNT(*) FROM users WHERE user_id BETWEEN {lo} AND {hi}"
    ))
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(n.0, 400, "the transaction reads its own writes");
    conn.execute("COMMIT").await.unwrap();
    conn.execute("SET autocommit=1").await.unwrap();
    for round in 0..6 {
        conn.execute(
            format!("UPDATE users SET status = {round} WHERE user_id BETWEEN {lo} AND {hi}")
                .as_str(),
        )
        .await
        .unwrap();
        let s: (i64,) = sqlx::query_as(&format!(
            "SELECT COUNT(*) FROM users WHERE user_id BETWEEN {lo} AND {hi} AND status = {round}"
        ))
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert_eq!(
            s.0, 400,
            "round {round}: the session reads its own multi-node write"
        );
    }
    conn.execute(format!("DELETE FROM users WHERE user_id BETWEEN {lo} AND {hi}").as_str())
        .await
        .unwrap();
    let left: (i64,) = sqlx::query_as(&format!(
        "SELECT COUNT(*) FROM users WHERE user_id BETWEEN {lo} AND {hi}"
    ))
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(left.0, 0, "the session reads its own multi-node DELETE");
    conn.execute("DROP TABLE it_autocommit").await.unwrap();
    let _ = conn.close().await;
    let _ = other.close().await;
    clean_users(&c, lo, hi).await;
}

/// A second logical database beside `wework`: `archive`, on a physical
/// database of its own on ds0's server (with ds0's replicas), with a
/// sharded table of its own.
const ARCHIVE: &str = r#"
[data_sources.ar0]
url = "mysql://root@127.0.0.1:13306/it_archive"
replicas = ["mysql://root@127.0.0.1:13316/it_archive", "mysql://root@127.0.0.1:13326/it_archive"]

[databases.archive]
default_data_source = "ar0"

[databases.archive.tables.events]
nodes = "ar0.events_${0..1}"
table = { column = "id", algorithm = "mod", count = 2 }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_logical_databases_answer_each_for_itself() {
    let _sandbox = sandbox::shared().await;
    let cfg = shardgate_integration_tests::test_config();
    if !shardgate_integration_tests::sandbox_ready(&cfg, "several_logical_databases") {
        return;
    }
    let mut admin = shardgate_integration_tests::direct_endpoint(&cfg)
        .connect()
        .await
        .unwrap();
    admin
        .execute("DROP DATABASE IF EXISTS it_archive")
        .await
        .unwrap();
    admin.execute("CREATE DATABASE it_archive").await.unwrap();
    shardgate_integration_tests::replication::caught_up(&cfg, &["ds0"]).await;
    let text = format!(
        "{}\n{ARCHIVE}",
        shardgate_integration_tests::seed_config_text()
    );
    let path = shardgate_integration_tests::write_config_file("archive", &text);
    let proxy = shardgate_integration_tests::start_proxy_from_file(&path).await;
    let ep = proxy.endpoint();

    // The handshake's database, DDL of an unsharded and a sharded table.
    let mut arch = ep.with_database("archive").connect().await.unwrap();
    for sql in [
        "CREATE TABLE notes (id INT PRIMARY KEY, body VARCHAR(20))",
        "CREATE TABLE events (id BIGINT PRIMARY KEY, what VARCHAR(20))",
        "INSERT INTO notes VALUES (1, 'kept')",
        "INSERT INTO events VALUES (1, 'one'), (2, 'two'), (3, 'three')",
    ] {
        arch.execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let db: (Option<String>,) = sqlx::query_as("SELECT DATABASE()")
        .fetch_one(&mut arch)
        .await
        .unwrap();
    assert_eq!(db.0.as_deref(), Some("archive"));
    let events: Vec<(i64, String)> = sqlx::query_as("SELECT id, what FROM events ORDER BY id")
        .fetch_all(&mut arch)
        .await
        .unwrap();
    assert_eq!(events.len(), 3);
    // Its rules place the rows: events_1 holds the odd ids.
    let odd = shardgate_integration_tests::replication::cli(
        13306,
        "SELECT GROUP_CONCAT(id ORDER BY id) FROM it_archive.events_1",
    )
    .unwrap();
    assert_eq!(odd.trim(), "1,3");
    let tables: Vec<(String,)> = sqlx::query_as("SHOW TABLES")
        .fetch_all(&mut arch)
        .await
        .unwrap();
    let tables: Vec<&str> = tables.iter().map(|t| t.0.as_str()).collect();
    assert_eq!(tables, ["events", "notes"], "logical names");
    let schema: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema = 'archive' ORDER BY table_name",
    )
    .fetch_all(&mut arch)
    .await
    .unwrap();
    assert_eq!(
        schema,
        [
            ("archive".to_owned(), "events".to_owned()),
            ("archive".to_owned(), "notes".to_owned())
        ]
    );
    let rules: Vec<sqlx::mysql::MySqlRow> = arch
        .fetch_all(sqlx::raw_sql("SHOW SHARDING TABLE RULES"))
        .await
        .unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].get::<String, _>(0), "events");

    // From the first database: its name lists, qualified names reach it.
    let mut ww = ep.connect().await.unwrap();
    let dbs: Vec<(String,)> = sqlx::query_as("SHOW DATABASES")
        .fetch_all(&mut ww)
        .await
        .unwrap();
    let dbs: Vec<&str> = dbs.iter().map(|d| d.0.as_str()).collect();
    assert_eq!(dbs, ["archive", "information_schema", "wework"]);
    let like: Vec<(String,)> = sqlx::query_as("SHOW SCHEMAS LIKE 'arch%'")
        .fetch_all(&mut ww)
        .await
        .unwrap();
    assert_eq!(like, [("archive".to_owned(),)]);
    let note: (String,) = sqlx::query_as("SELECT body FROM archive.notes WHERE id = 1")
        .fetch_one(&mut ww)
        .await
        .unwrap();
    assert_eq!(note.0, "kept");
    // Its own tables are not the other's: `events` is unknown in wework.
    let err = ww
        .execute("SELECT * FROM events")
        .await
        .expect_err("wework has no events table");
    assert_eq!(db_error(&err).map(|e| e.0), Some(1146), "{err}");
    ww.execute("USE archive").await.unwrap();
    let n: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM events")
        .fetch_one(&mut ww)
        .await
        .unwrap();
    assert_eq!(n.0, 3);
    // COM_INIT_DB (the mariadb client's `use`), then DATABASE() beside a
    // sharded table: the logical name, as from the unsharded server.
    let via_init_db = shardgate_integration_tests::replication::cli(
        proxy.addr.port(),
        "use archive\nSELECT DATABASE(), COUNT(*) FROM events",
    )
    .unwrap();
    assert_eq!(via_init_db.trim(), "archive\t3");
    let unknown = shardgate_integration_tests::replication::cli(proxy.addr.port(), "use nope")
        .expect_err("COM_INIT_DB of an unknown database");
    assert!(unknown.contains("1049"), "{unknown}");
    // An undeclared name, as MariaDB answers it.
    let err = ww.execute("USE nope").await.expect_err("unknown database");
    assert_eq!(db_error(&err).map(|e| e.0), Some(1049), "{err}");
    let err = ep
        .with_database("nope")
        .connect()
        .await
        .expect_err("unknown database at login");
    assert_eq!(db_error(&err).map(|e| e.0), Some(1049), "{err}");
    let err = arch
        .execute("DROP TABLE events, notes")
        .await
        .expect_err("a sharded and an unsharded table in one DROP");
    assert_eq!(db_error(&err).map(|e| e.0), Some(1235), "{err}");
    arch.execute("DROP TABLE events").await.unwrap();
    arch.execute("DROP TABLE notes").await.unwrap();
    admin.execute("DROP DATABASE it_archive").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadlock_rolls_back_the_whole_transaction() {
    let Some((c, _g)) = writer("a_deadlock_rolls_back_the_whole_transaction").await else {
        return;
    };
    let (lo, hi) = range(6);
    clean_users(&c, lo, hi).await;
    // Rows on ds1 (id % 4 == 1) and one on ds2.
    let on_ds1: Vec<i64> = (lo..lo + 400).filter(|id| id % 4 == 1).take(2).collect();
    let on_ds2 = (lo..lo + 10).find(|id| id % 4 == 2).unwrap();
    let mut setup = c.shared.proxy().connect().await.unwrap();
    let mut values: Vec<String> = on_ds1.iter().map(|id| format!("({id}, 'd', 0)")).collect();
    values.push(format!("({on_ds2}, 'd', 0)"));
    setup
        .execute(
            format!(
                "INSERT INTO users (user_id, name, status) VALUES {}",
                values.join(", ")
            )
            .as_str(),
        )
        .await
        .unwrap();
    let (r1, r2) = (on_ds1[0], on_ds1[1]);
    let mut victim = c.shared.proxy().connect().await.unwrap();
    let mut heavy = c.shared.proxy().connect().await.unwrap();
    // The victim writes on ds2, then holds r2 on ds1.
    victim.execute("BEGIN").await.unwrap();
    victim
        .execute(format!("UPDATE users SET status = 7 WHERE user_id = {on_ds2}").as_str())
        .await
        .unwrap();
    victim
        .execute(format!("UPDATE users SET status = 7 WHERE user_id = {r2}").as_str())
        .await
        .unwrap();
    // The other writes many rows on ds1 (InnoDB spares the heavier
    // transaction), holds r1, then waits for r2.
    heavy.execute("BEGIN").await.unwrap();
    let extra: Vec<String> = (lo + 1000..lo + 1400)
        .filter(|id| id % 4 == 1)
        .take(50)
        .map(|id| format!("({id}, 'h', 8)"))
        .collect();
    heavy
        .execute(
            format!(
                "INSERT INTO users (user_id, name, status) VALUES {}",
                extra.join(", ")
            )
            .as_str(),
        )
        .await
        .unwrap();
    heavy
        .execute(format!("UPDATE users SET status = 8 WHERE user_id = {r1}").as_str())
        .await
        .unwrap();
    let waiting = tokio::spawn(async move {
        let r = heavy
            .execute(format!("UPDATE users SET status = 8 WHERE user_id = {r2}").as_str())
            .await;
        (heavy, r)
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let err = victim
        .execute(format!("UPDATE users SET status = 7 WHERE user_id = {r1}").as_str())
        .await
        .expect_err("a deadlock on ds1");
    assert_eq!(db_error(&err).map(|e| e.0), Some(1213), "{err}");
    // As on one server, the victim's whole transaction is gone: its COMMIT
    // makes nothing durable, its write on ds2 included.
    victim.execute("COMMIT").await.unwrap();
    let (mut heavy, waited) = waiting.await.unwrap();
    waited.expect("the other transaction goes on");
    heavy.execute("COMMIT").await.unwrap();
    let status: (i8,) = sqlx::query_as(&format!(
        "SELECT /* shardgate:primary */ status FROM users WHERE user_id = {on_ds2}"
    ))
    .fetch_one(&mut setup)
    .await
    .unwrap();
    assert_eq!(
        status.0, 0,
        "the deadlocked transaction's ds2 write was rolled back"
    );
    clean_users(&c, lo, hi).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_reads_its_writes_on_any_of_its_connections() {
    let Some((c, _g)) = writer("a_pool_reads_its_writes_on_any_of_its_connections").await else {
        return;
    };
    let (lo, hi) = range(7);
    clean_users(&c, lo, hi).await;
    let ids: Vec<i64> = (lo..lo + 8).collect();
    let mut writer_conn = c.shared.proxy().connect().await.unwrap();
    let mut reader_conn = c.shared.proxy().connect().await.unwrap();
    writer_conn
        .execute(
            format!(
                "INSERT INTO users (user_id, name, status) VALUES {}",
                ids.iter()
                    .map(|id| format!("({id}, 'p', 0)"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
            .as_str(),
        )
        .await
        .unwrap();
    // A write on one connection, then a read on another (a pool hands the
    // application whichever is free): the read must see the write, as it
    // would on one server.
    let mut stale = Vec::new();
    for round in 1..=120i64 {
        let id = ids[(round as usize) % ids.len()];
        writer_conn
            .execute(
                format!(
                    "UPDATE users SET status = {} WHERE user_id = {id}",
                    round % 100
                )
                .as_str(),
            )
            .await
            .unwrap();
        let seen: (i8,) = sqlx::query_as(&format!("SELECT status FROM users WHERE user_id = {id}"))
            .fetch_one(&mut reader_conn)
            .await
            .unwrap();
        if i64::from(seen.0) != round % 100 {
            stale.push(round);
        }
        // A multi-node read after a write on one node.
        let total: (rust_decimal::Decimal,) = sqlx::query_as(&format!(
            "SELECT SUM(status) FROM users WHERE user_id BETWEEN {lo} AND {hi}"
        ))
        .fetch_one(&mut reader_conn)
        .await
        .unwrap();
        let direct: (rust_decimal::Decimal,) = sqlx::query_as(&format!(
            "SELECT /* shardgate:primary */ SUM(status) FROM users WHERE user_id BETWEEN {lo} AND {hi}"
        ))
        .fetch_one(&mut writer_conn)
        .await
        .unwrap();
        if total.0 != direct.0 {
            stale.push(-round);
        }
    }
    assert!(
        stale.is_empty(),
        "stale reads on another connection in rounds {stale:?}"
    );
    clean_users(&c, lo, hi).await;
}
