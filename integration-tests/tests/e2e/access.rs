//! Per-user access (issue 15): `users[].databases` and `users[].read_only`
//! on the shipped config (replicas and read/write splitting on) with a
//! second logical database, `ops`, through sqlx, PyMySQL and the mariadb
//! CLI. Each refusal is checked for MariaDB's code, SQLSTATE and message
//! (as MariaDB 10.11 answers a user without grants, or a server in
//! `read_only`), and the primaries are read directly to see that nothing
//! refused reached them.
//!
//! Skipped (with a `SKIPPED` line) when the sandbox is not running, unless
//! `SHARDGATE_REQUIRE_SANDBOX=1`.

use shardgate_integration_tests::fixtures::admin_request;
use shardgate_integration_tests::replication::{caught_up, cli};
use shardgate_integration_tests::{
    db_error, mariadb_cli, run_command, sandbox, sandbox_ready, seed_config_text,
    start_proxy_from_file, test_config, write_config_file, Endpoint, RunningProxy,
};
use sqlx::{Executor, MySqlConnection, Row};

/// ds0's primary, which holds `wework`'s unsharded tables (database `ds0`)
/// and `ops` (database `it_access_ops`).
const DS0: u16 = 13306;

/// The other primaries of the shipped config.
const OTHER_PRIMARIES: [u16; 3] = [13307, 13308, 13309];

/// The logical database `ops` on ds0's server, with ds0's replicas, and
/// three users: one for each logical database and a read-only one. The
/// seed's `root` may use everything.
fn config_text(ops_only_databases: &str) -> String {
    format!(
        r#"{}
[data_sources.ops0]
url = "mysql://root@127.0.0.1:13306/it_access_ops"
replicas = ["mysql://root@127.0.0.1:13316/it_access_ops", "mysql://root@127.0.0.1:13326/it_access_ops"]

[databases.ops]
default_data_source = "ops0"

[[server.users]]
name = "wework_only"
password = "pw-wework"
databases = ["wework"]

[[server.users]]
name = "ops_only"
password = "pw-ops"
databases = {ops_only_databases}

[[server.users]]
name = "report"
password = "pw-report"
read_only = true
"#,
        seed_config_text()
    )
}

/// The tables the tests read and write, made on the primary directly:
/// `ops.notes` and `wework.access_notes` (unsharded, on ds0).
fn create_tables() {
    for sql in [
        "DROP DATABASE IF EXISTS it_access_ops",
        "CREATE DATABASE it_access_ops",
        "CREATE TABLE it_access_ops.notes (id INT PRIMARY KEY, body VARCHAR(20))",
        "INSERT INTO it_access_ops.notes VALUES (1, 'ops')",
        "DROP TABLE IF EXISTS ds0.access_notes, ds0.access_new",
        "CREATE TABLE ds0.access_notes (id INT PRIMARY KEY, body VARCHAR(20))",
        "INSERT INTO ds0.access_notes VALUES (1, 'one'), (2, 'two')",
    ] {
        cli(DS0, sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

/// The tests of this module make the same tables anew: one at a time.
static TABLES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A test's proxy on [`config_text`], with the tables made anew (and on
/// the replicas), and the guard on them; None when the sandbox is not
/// running.
struct Setup {
    proxy: RunningProxy,
    path: std::path::PathBuf,
    guard: tokio::sync::MutexGuard<'static, ()>,
}

async fn setup(test: &str) -> Option<Setup> {
    let cfg = test_config();
    if !sandbox_ready(&cfg, test) {
        return None;
    }
    let tables = TABLES.lock().await;
    create_tables();
    caught_up(&cfg, &["ds0"]).await;
    let path = write_config_file(test, &config_text(r#"["ops"]"#));
    Some(Setup {
        proxy: start_proxy_from_file(&path).await,
        path,
        guard: tables,
    })
}

fn as_user(proxy: &RunningProxy, user: &str, password: &str, database: &str) -> Endpoint {
    proxy
        .endpoint()
        .with_user(user)
        .with_password(password)
        .with_database(database)
}

/// The error (code, SQLSTATE, message) `sql` gets, sent as text.
async fn refusal(conn: &mut MySqlConnection, sql: &str) -> (u16, String, String) {
    let err = conn
        .fetch_all(sqlx::raw_sql(sql))
        .await
        .err()
        .unwrap_or_else(|| panic!("{sql}: succeeded"));
    let (code, state, message) = db_error(&err).unwrap_or_else(|| panic!("{sql}: {err}"));
    (code, state.unwrap_or_default(), message)
}

fn expected(code: u16, state: &str, message: &str) -> (u16, String, String) {
    (code, state.to_owned(), message.to_owned())
}

/// The rows of `table` on ds0's primary, as the CLI prints them.
fn on_primary(sql: &str) -> String {
    cli(DS0, sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Runs a PyMySQL script (its connection `c` opened on `ep` without a
/// database) and returns what it printed.
async fn pymysql(ep: &Endpoint, body: &str) -> String {
    let script = format!(
        "import pymysql\nc = pymysql.connect(host='{}', port={}, user='{}', password='{}', autocommit=True)\ncur = c.cursor()\ndef run(sql):\n    try:\n        cur.execute(sql)\n        print('ok', cur.fetchall())\n    except pymysql.err.MySQLError as e:\n        print(e.args[0], e.args[1])\n{body}",
        ep.host, ep.port, ep.user, ep.password
    );
    let python = std::env::var("SHARDGATE_IT_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut cmd = tokio::process::Command::new(python);
    cmd.args(["-c", &script]);
    run_command(cmd, "pymysql")
        .await
        .expect("the PyMySQL script runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_uses_only_its_logical_databases() {
    let _sandbox = sandbox::shared().await;
    let test = "a_user_uses_only_its_logical_databases";
    let Some(Setup {
        proxy,
        guard: _guard,
        ..
    }) = setup(test).await
    else {
        return;
    };
    let denied_wework = expected(
        1044,
        "42000",
        "Access denied for user 'ops_only'@'%' to database 'wework'",
    );

    // Logins naming another database, served or not, get MariaDB's 1044.
    for database in ["wework", "no_such_db"] {
        let err = as_user(&proxy, "ops_only", "pw-ops", database)
            .connect()
            .await
            .err()
            .unwrap_or_else(|| panic!("login to {database} succeeded"));
        let (code, state, message) = db_error(&err).expect("a server error");
        assert_eq!(
            (code, state.as_deref(), message.as_str()),
            (
                1044,
                Some("42000"),
                format!("Access denied for user 'ops_only'@'%' to database '{database}'").as_str()
            )
        );
    }
    let cli_login = mariadb_cli(
        &as_user(&proxy, "ops_only", "pw-ops", "wework"),
        "SELECT 1;\n",
        &[],
    )
    .await
    .unwrap_or_else(|e| e);
    assert!(
        cli_login.contains(
            "ERROR 1044 (42000): Access denied for user 'ops_only'@'%' to database 'wework'"
        ),
        "{cli_login}"
    );

    // Without a database it lands on the first it may use: ops.
    let mut ops = as_user(&proxy, "ops_only", "pw-ops", "")
        .connect()
        .await
        .expect("ops_only logs in without a database");
    let body: (String,) = sqlx::query_as("SELECT body FROM notes WHERE id = 1")
        .fetch_one(&mut ops)
        .await
        .expect("ops.notes");
    assert_eq!(body.0, "ops");
    assert_eq!(refusal(&mut ops, "USE wework").await, denied_wework);

    // Tables of another logical database, by its logical or physical name,
    // in text and prepared statements: 1142, and nothing reaches a server.
    let table_denied = |command: &str, db: &str| {
        expected(
            1142,
            "42000",
            &format!("{command} command denied to user 'ops_only'@'127.0.0.1' for table `{db}`.`access_notes`"),
        )
    };
    for (sql, command, db) in [
        ("SELECT * FROM wework.access_notes", "SELECT", "wework"),
        (
            "SELECT * FROM notes JOIN `wework`.`access_notes` USING (id)",
            "SELECT",
            "wework",
        ),
        (
            "INSERT INTO wework.access_notes VALUES (9, 'nine')",
            "INSERT",
            "wework",
        ),
        ("DELETE FROM ds0.access_notes", "DELETE", "ds0"),
        ("TRUNCATE ds0.access_notes", "DROP", "ds0"),
    ] {
        assert_eq!(
            refusal(&mut ops, sql).await,
            table_denied(command, db),
            "{sql}"
        );
    }
    let err = sqlx::query("UPDATE wework.access_notes SET body = ? WHERE id = 1")
        .bind("changed")
        .execute(&mut ops)
        .await
        .unwrap_err();
    assert_eq!(
        db_error(&err),
        Some((
            1142,
            Some("42000".into()),
            "UPDATE command denied to user 'ops_only'@'127.0.0.1' for table `wework`.`access_notes`".into()
        ))
    );
    for sql in [
        "SHOW TABLES FROM wework",
        "SHOW SHARDING TABLE RULES FROM wework",
    ] {
        assert_eq!(refusal(&mut ops, sql).await, denied_wework, "{sql}");
    }
    assert_eq!(
        on_primary("SELECT id, body FROM ds0.access_notes ORDER BY id"),
        "1\tone\n2\ttwo\n",
        "the refused writes never reached ds0's primary"
    );

    // SHOW DATABASES lists the databases each user may use.
    let databases = |rows: Vec<sqlx::mysql::MySqlRow>| -> Vec<String> {
        rows.iter().map(|r| r.get::<String, _>(0)).collect()
    };
    let rows = ops
        .fetch_all("SHOW DATABASES")
        .await
        .expect("SHOW DATABASES");
    assert_eq!(databases(rows), ["information_schema", "ops"]);
    let mut wework = as_user(&proxy, "wework_only", "pw-wework", "wework")
        .connect()
        .await
        .expect("wework_only logs in");
    let rows = wework
        .fetch_all("SHOW DATABASES")
        .await
        .expect("SHOW DATABASES");
    assert_eq!(databases(rows), ["information_schema", "wework"]);
    let mut root = proxy.endpoint().connect().await.expect("root logs in");
    let rows = root
        .fetch_all("SHOW DATABASES")
        .await
        .expect("SHOW DATABASES");
    assert_eq!(databases(rows), ["information_schema", "ops", "wework"]);

    // What a user may use works, writes included.
    wework
        .execute("INSERT INTO access_notes VALUES (3, 'three')")
        .await
        .expect("wework_only writes its own database");
    let read: (String,) = sqlx::query_as("SELECT body FROM wework.access_notes WHERE id = ?")
        .bind(3)
        .fetch_one(&mut wework)
        .await
        .expect("wework_only reads it back, qualified and prepared");
    assert_eq!(read.0, "three");
    assert_eq!(
        refusal(&mut wework, "SELECT * FROM ops.notes").await,
        expected(
            1142,
            "42000",
            "SELECT command denied to user 'wework_only'@'127.0.0.1' for table `ops`.`notes`"
        )
    );
    assert_eq!(
        on_primary("SELECT body FROM ds0.access_notes WHERE id = 3"),
        "three\n"
    );

    // COM_INIT_DB (PyMySQL's select_db) is refused alike, and the session
    // stays where it was.
    let out = pymysql(
        &as_user(&proxy, "ops_only", "pw-ops", ""),
        "try:\n    c.select_db('wework')\nexcept pymysql.err.MySQLError as e:\n    print(e.args[0], e.args[1])\nrun('SELECT body FROM notes')\n",
    )
    .await;
    assert_eq!(
        out,
        "1044 Access denied for user 'ops_only'@'%' to database 'wework'\nok (('ops',),)\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_user_reads_but_never_writes() {
    let _sandbox = sandbox::shared().await;
    let test = "a_read_only_user_reads_but_never_writes";
    let Some(Setup {
        proxy,
        guard: _guard,
        ..
    }) = setup(test).await
    else {
        return;
    };
    let read_only = expected(
        1290,
        "HY000",
        "The ShardGate user 'report' is read-only (users[].read_only), so it cannot execute this statement",
    );
    let ep = as_user(&proxy, "report", "pw-report", "wework");
    let mut report = ep.connect().await.expect("report logs in");

    // Every kind of write, and a multi-statement string with one, sent as text.
    for sql in [
        "INSERT INTO access_notes VALUES (9, 'nine')",
        "REPLACE INTO access_notes VALUES (1, 'replaced')",
        "UPDATE access_notes SET body = 'changed'",
        "DELETE FROM access_notes",
        "TRUNCATE access_notes",
        "CREATE TABLE access_new (id INT)",
        "CREATE TEMPORARY TABLE access_new (id INT)",
        "ALTER TABLE access_notes ADD COLUMN extra INT",
        "DROP TABLE access_notes",
        "RENAME TABLE access_notes TO access_new",
        "LOCK TABLES access_notes WRITE",
        "SELECT * FROM access_notes WHERE id = 1 FOR UPDATE",
        "INSERT INTO users (user_id, name) VALUES (424242, 'sharded')",
        "DELETE FROM sys_configs",
        "INSERT INTO ops.notes VALUES (9, 'other database')",
        "SELECT 1; DELETE FROM access_notes",
        "CALL some_procedure()",
        "SELECT * FROM access_notes INTO OUTFILE '/tmp/shardgate-access-outfile'",
        "SET @next = NEXTVAL(some_sequence)",
    ] {
        assert_eq!(refusal(&mut report, sql).await, read_only, "{sql}");
    }
    // Prepared: the write prepares and its execution is refused, as with
    // MariaDB's read_only.
    let insert = "INSERT INTO access_notes VALUES (?, ?)";
    report
        .prepare(insert)
        .await
        .expect("a write prepares, as on MariaDB");
    let err = sqlx::query(insert)
        .bind(10)
        .bind("ten")
        .execute(&mut report)
        .await
        .unwrap_err();
    assert_eq!(
        db_error(&err),
        Some((1290, Some("HY000".into()), read_only.2.clone()))
    );
    // LOAD DATA LOCAL and a delimiter-bound multi-statement through the CLI.
    let out = mariadb_cli(
        &ep,
        "LOAD DATA LOCAL INFILE '/dev/null' INTO TABLE access_notes;\nDELIMITER //\nSELECT 'first'; UPDATE access_notes SET body = 'x'//\n",
        &["--local-infile=1"],
    )
    .await
    .unwrap_or_else(|e| e);
    let line = format!("ERROR 1290 (HY000) at line 1: {}", read_only.2);
    assert!(out.contains(&line), "{out}");
    assert!(
        out.contains("first"),
        "the statement before the write ran: {out}"
    );
    assert_eq!(out.matches("ERROR 1290 (HY000)").count(), 2, "{out}");

    // Nothing of it reached a primary: the rows, the columns and the tables
    // are as they were.
    assert_eq!(
        on_primary("SELECT id, body FROM ds0.access_notes ORDER BY id"),
        "1\tone\n2\ttwo\n"
    );
    assert_eq!(
        on_primary("SELECT GROUP_CONCAT(column_name ORDER BY ordinal_position) FROM information_schema.columns WHERE table_schema = 'ds0' AND table_name = 'access_notes'"),
        "id,body\n"
    );
    assert_eq!(
        on_primary("SELECT COUNT(*) FROM it_access_ops.notes"),
        "1\n"
    );
    for port in std::iter::once(DS0).chain(OTHER_PRIMARIES) {
        let tables = cli(
            port,
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'access_new'",
        )
        .expect("information_schema");
        assert_eq!(tables, "0\n", "no table made on the primary on port {port}");
    }

    // Reads, session variables and transactions work.
    let rows = report
        .fetch_all("SELECT id, body FROM access_notes ORDER BY id")
        .await
        .expect("a read");
    assert_eq!(rows.len(), 2);
    let body: (String,) = sqlx::query_as("SELECT body FROM access_notes WHERE id = ?")
        .bind(2)
        .fetch_one(&mut report)
        .await
        .expect("a prepared read");
    assert_eq!(body.0, "two");
    for sql in [
        "SET @greeting = 'hello'",
        "SET SESSION sql_mode = 'ANSI_QUOTES'",
        "BEGIN",
        "SELECT id FROM access_notes LOCK IN SHARE MODE",
        "COMMIT",
        "START TRANSACTION READ ONLY",
        "SELECT COUNT(*) FROM access_notes",
        "ROLLBACK",
    ] {
        report
            .fetch_all(sqlx::raw_sql(sql))
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let vars: (String, String) = sqlx::query_as("SELECT @greeting, @@sql_mode")
        .fetch_one(&mut report)
        .await
        .expect("session state");
    assert_eq!(vars, ("hello".into(), "ANSI_QUOTES".into()));

    // PyMySQL gets the same answers.
    let out = pymysql(
        &ep,
        "c.select_db('wework')\nrun('UPDATE access_notes SET body = NULL')\nrun('SELECT COUNT(*) FROM access_notes')\n",
    )
    .await;
    assert_eq!(out, format!("1290 {}\nok ((2,),)\n", read_only.2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_applies_a_changed_list_to_new_logins() {
    let _sandbox = sandbox::shared().await;
    let test = "a_reload_applies_a_changed_list_to_new_logins";
    let Some(Setup {
        proxy,
        path,
        guard: _guard,
    }) = setup(test).await
    else {
        return;
    };
    let mut before = as_user(&proxy, "ops_only", "pw-ops", "ops")
        .connect()
        .await
        .expect("ops_only logs in");
    std::fs::write(&path, config_text(r#"["ops", "wework"]"#)).expect("write the config");
    let (status, body) = admin_request(&proxy, "POST", "/api/reload", "").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("users changed"), "{body}");

    let mut after = as_user(&proxy, "ops_only", "pw-ops", "wework")
        .connect()
        .await
        .expect("a new login may use wework");
    let rows = after
        .fetch_all("SELECT id FROM access_notes")
        .await
        .expect("a read of wework");
    assert_eq!(rows.len(), 2);
    // A session keeps the access it logged in with.
    assert_eq!(
        refusal(&mut before, "USE wework").await,
        expected(
            1044,
            "42000",
            "Access denied for user 'ops_only'@'%' to database 'wework'"
        )
    );
}
