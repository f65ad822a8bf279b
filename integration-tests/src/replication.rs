//! Helpers of the read/write splitting tests (`tests/e2e/replicas.rs`): configs
//! with splitting on, reads that name the server that answered them, the
//! servers' own counters, waiting for replication and for the proxy's
//! replica monitor, and control of sandbox servers — stopping replication,
//! killing and restarting a server — with guards that undo it all even when
//! a test fails.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlRow, MySqlSslMode};
use sqlx::{ConnectOptions, Connection, Executor, Row};

use crate::fixtures::{connect, pool, table_section};
use crate::{mariadb_client, seed_config_text, Config, RunningProxy};

// ------------------------------------------------------------- configs ----

/// The seed topology with read/write splitting on, `server` lines added to
/// `[server]`, a table `table` sharded by `id` over ds0..ds3
/// ([`table_section`]), and `extra` sections at the end.
pub fn config_text(table: &str, server: &str, extra: &str) -> String {
    let seed = seed_config_text().replacen(
        "[server]\n",
        &format!("[server]\nread_write_splitting = true\n{server}"),
        1,
    );
    format!("{seed}{}{extra}", table_section(table, table))
}

/// A `[data_sources.<ds>.read]` section.
pub fn read_section(ds: &str, body: &str) -> String {
    format!("\n[data_sources.{ds}.read]\n{body}\n")
}

/// `text` with `key = value` in section `[section]` instead of what it had.
pub fn set_key(text: &str, section: &str, key: &str, value: &str) -> String {
    let mut current = String::new();
    let mut out = String::new();
    let mut done = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            current = trimmed.trim_matches(|c| c == '[' || c == ']').to_owned();
        }
        if !done && current == section && trimmed.split('=').next().map(str::trim) == Some(key) {
            out.push_str(&format!("{key} = {value}\n"));
            done = true;
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    assert!(done, "no {key} in [{section}]");
    out
}

/// The ports of data source `ds`: its primary, and its replicas in order.
pub fn servers(cfg: &Config, ds: &str) -> (u16, Vec<u16>) {
    let source = &cfg.data_sources[ds];
    (
        source.url.port,
        source.replicas.iter().map(|r| r.port).collect(),
    )
}

/// Creates table `name` (`id BIGINT PRIMARY KEY, v INT`, rows id = v =
/// 0..40) through the proxy, as `fixtures::start_with_table` does.
pub async fn create_table(proxy: &RunningProxy, name: &str) {
    let mut conn = connect(proxy).await;
    let rows: Vec<String> = (0..40).map(|i| format!("({i}, {i})")).collect();
    for sql in [
        format!("DROP TABLE IF EXISTS {name}"),
        format!("CREATE TABLE {name} (id BIGINT PRIMARY KEY, v INT)"),
        format!("INSERT INTO {name} VALUES {}", rows.join(", ")),
    ] {
        conn.execute(sql.as_str()).await.expect(&sql);
    }
}

// ---------------------------------------------------------- statements ----

/// Column `i` of `row` as an integer, whatever integer (or text) type the
/// server gave it.
pub fn int(row: &MySqlRow, i: usize) -> i64 {
    row.try_get::<i64, _>(i)
        .or_else(|_| row.try_get::<u64, _>(i).map(|v| v as i64))
        .or_else(|_| row.try_get::<i32, _>(i).map(i64::from))
        .or_else(|_| row.try_get::<u32, _>(i).map(i64::from))
        .or_else(|_| row.try_get::<String, _>(i).map(|s| s.parse().unwrap_or(-1)))
        .unwrap_or_else(|e| panic!("column {i} is not an integer: {e}"))
}

/// Column `i` of `row` as text.
fn cell(row: &MySqlRow, i: usize) -> String {
    row.try_get::<Option<String>, _>(i)
        .map(Option::unwrap_or_default)
        .or_else(|_| {
            row.try_get::<Option<Vec<u8>>, _>(i)
                .map(|b| String::from_utf8_lossy(&b.unwrap_or_default()).into_owned())
        })
        .unwrap_or_else(|_| int(row, i).to_string())
}

/// The port of the server that answered `sql` (text protocol), whose first
/// column is `@@port`.
pub async fn port(conn: &mut MySqlConnection, sql: &str) -> u16 {
    let row = conn
        .fetch_one(sqlx::raw_sql(sql))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    int(&row, 0) as u16
}

/// As [`port`], prepared, with `id` bound to its one parameter.
pub async fn port_prepared(conn: &mut MySqlConnection, sql: &str, id: i64) -> u16 {
    let row = conn
        .fetch_one(sqlx::query(sql).bind(id))
        .await
        .unwrap_or_else(|e| panic!("{sql} [{id}]: {e}"));
    int(&row, 0) as u16
}

/// A connection straight to the sandbox server on `port`.
pub async fn direct(port: u16) -> MySqlConnection {
    MySqlConnectOptions::new()
        .host("127.0.0.1")
        .port(port)
        .username("root")
        .ssl_mode(MySqlSslMode::Disabled)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}"))
}

/// The first column of the first row of `sql`, as text.
pub async fn scalar(conn: &mut MySqlConnection, sql: &str) -> String {
    let row = conn
        .fetch_one(sqlx::raw_sql(sql))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    cell(&row, 0)
}

/// `Com_select` of the server on `port`: SELECTs it ran, whoever sent them.
pub async fn com_select(port: u16) -> u64 {
    let mut conn = direct(port).await;
    let row = conn
        .fetch_one(sqlx::raw_sql("SHOW GLOBAL STATUS LIKE 'Com_select'"))
        .await
        .expect("Com_select");
    let value = cell(&row, 1).parse().expect("a number");
    conn.close().await.ok();
    value
}

/// Waits until every replica of the data sources `dss` has applied all
/// that its primary committed so far.
pub async fn caught_up(cfg: &Config, dss: &[&str]) {
    for ds in dss {
        let (primary, replicas) = servers(cfg, ds);
        let mut conn = direct(primary).await;
        let pos = scalar(&mut conn, "SELECT @@gtid_binlog_pos").await;
        conn.close().await.ok();
        for replica in replicas {
            let mut conn = direct(replica).await;
            let waited = scalar(&mut conn, &format!("SELECT MASTER_GTID_WAIT('{pos}', 30)")).await;
            assert_eq!(
                waited, "0",
                "{ds}'s replica on {replica} did not reach {pos}"
            );
            conn.close().await.ok();
        }
    }
}

// --------------------------------------------------------------- proxy ----

/// Whether the proxy's monitor has replica `name` in the read rotation
/// (None: not checked yet).
pub async fn usable(proxy: &RunningProxy, name: &str) -> Option<bool> {
    pool(proxy, name).await["replication"]["usable"].as_bool()
}

pub async fn usable_is(proxy: &RunningProxy, name: &str, want: bool) -> bool {
    usable(proxy, name).await == Some(want)
}

/// How the proxy's monitor sees each replica of the data sources `dss`
/// (in the rotation or not, and why): what an assertion about where a read
/// went prints, so that a replica that left the rotation shows as such.
pub async fn rotation(proxy: &RunningProxy, dss: &[&str]) -> String {
    let mut out = Vec::new();
    for ds in dss {
        for i in 1..=proxy.cfg.data_sources[*ds].replicas.len() {
            let name = format!("{ds}.replica{i}");
            let state = &pool(proxy, &name).await["replication"];
            out.push(format!(
                "{name}: usable {}, lag {}, {}",
                state["usable"], state["lag_seconds"], state["reason"]
            ));
        }
    }
    out.join("; ")
}

/// Waits until every replica of the data sources `dss` is in the proxy's
/// read rotation.
pub async fn in_rotation(proxy: &RunningProxy, dss: &[&str]) {
    for ds in dss {
        for i in 1..=proxy.cfg.data_sources[*ds].replicas.len() {
            let name = format!("{ds}.replica{i}");
            wait_for(&format!("{name} in the rotation"), 10, || {
                usable_is(proxy, &name, true)
            })
            .await;
        }
    }
}

/// Polls `done` every 20 ms until it holds (panics after `secs`): how
/// long it took.
pub async fn wait_for<F, Fut>(what: &str, secs: u64, mut done: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if done().await {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(secs),
            "timed out after {secs} s waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ------------------------------------------------------------- servers ----

/// Runs blocking work (the CLI, waiting for a server) off the runtime's
/// threads; a panic in it is the test's.
pub async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// Runs `sql` on the server on `port` with the mariadb CLI: its output
/// (tab-separated, no column names).
pub fn cli(port: u16, sql: &str) -> Result<String, String> {
    cli_with(port, sql, &["-N", "-B"])
}

fn cli_with(port: u16, sql: &str, format: &[&str]) -> Result<String, String> {
    let out = Command::new(mariadb_client())
        .args([
            "--no-defaults",
            "--protocol=TCP",
            "-h127.0.0.1",
            &format!("-P{port}"),
            "-uroot",
            "--connect-timeout=3",
        ])
        .args(format)
        .args(["-e", sql])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("mariadb client: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// Whether the replica on `port` runs both replication threads.
pub fn replicating(port: u16) -> bool {
    // Vertical, with the field names.
    let Ok(status) = cli_with(port, "SHOW SLAVE STATUS\\G", &[]) else {
        return false;
    };
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .map(|v| v.trim_start_matches(':').trim().to_owned())
    };
    field("Slave_IO_Running").as_deref() == Some("Yes")
        && field("Slave_SQL_Running").as_deref() == Some("Yes")
}

/// Waits (blocking) until the replica on `port` replicates again.
pub fn wait_replicating(port: u16, timeout: Duration) {
    let started = Instant::now();
    while !replicating(port) {
        assert!(
            started.elapsed() < timeout,
            "the replica on {port} does not replicate after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs a statement on a server now and its undoing when dropped (on
/// success or panic alike).
pub struct Undo {
    port: u16,
    /// The server's socket, for what root over TCP may not do.
    socket: Option<PathBuf>,
    undo: String,
}

impl Undo {
    pub fn run(port: u16, sql: &str, undo: &str) -> Undo {
        cli(port, sql).unwrap_or_else(|e| panic!("{sql} on {port}: {e}"));
        Undo {
            port,
            socket: None,
            undo: undo.to_owned(),
        }
    }

    /// As [`run`](Self::run), as root over the server's socket (on a
    /// replica root@127.0.0.1 lacks READ_ONLY ADMIN).
    pub fn admin(server: &Server, sql: &str, undo: &str) -> Undo {
        server
            .admin(sql)
            .unwrap_or_else(|e| panic!("{sql} on {}: {e}", server.name));
        Undo {
            port: server.port,
            socket: Some(server.socket()),
            undo: undo.to_owned(),
        }
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        let done = match &self.socket {
            Some(socket) => cli_socket(socket, &self.undo),
            None => cli(self.port, &self.undo),
        };
        if let Err(e) = done {
            eprintln!(
                "COULD NOT UNDO on port {}: {} ({e}); fix it by hand",
                self.port, self.undo
            );
        }
    }
}

fn cli_socket(socket: &Path, sql: &str) -> Result<String, String> {
    let out = Command::new(mariadb_client())
        .arg("--no-defaults")
        .arg("--protocol=SOCKET")
        .arg(format!("--socket={}", socket.display()))
        .args(["-uroot", "-N", "-B", "-e", sql])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("mariadb client: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// A sandbox server that a test may kill and start again, found from the
/// server itself (`@@datadir`), as `docker/sandbox.sh` lays them out.
#[derive(Debug, Clone)]
pub struct Server {
    /// `ds2-replica0`, its folder's name.
    pub name: String,
    pub port: u16,
    /// The folder with its `my.cnf` and pid file.
    pub dir: PathBuf,
    pub replica: bool,
}

impl Server {
    pub fn locate(port: u16) -> Server {
        let datadir = cli(port, "SELECT @@datadir").unwrap_or_else(|e| panic!("{port}: {e}"));
        let dir = Path::new(datadir.trim())
            .parent()
            .unwrap_or_else(|| panic!("datadir {datadir} has no parent"))
            .to_path_buf();
        assert!(
            dir.join("my.cnf").is_file(),
            "{} is not a sandbox server's folder",
            dir.display()
        );
        let replica = !cli(port, "SHOW SLAVE STATUS")
            .unwrap_or_default()
            .trim()
            .is_empty();
        Server {
            name: dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            port,
            dir,
            replica,
        }
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("mariadbd.sock")
    }

    /// Runs `sql` as root over the server's socket.
    pub fn admin(&self, sql: &str) -> Result<String, String> {
        cli_socket(&self.socket(), sql)
    }

    fn defaults_file(&self) -> String {
        format!("--defaults-file={}", self.dir.join("my.cnf").display())
    }

    /// Its mariadbd's pid, checked against the process's command line.
    pub fn pid(&self) -> Option<u32> {
        let pid: u32 = std::fs::read_to_string(self.dir.join("mariadbd.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        cmdline
            .contains(&format!("{} ", self.defaults_file()))
            .then_some(pid)
    }

    fn answers(&self) -> bool {
        cli(self.port, "SELECT 1").is_ok()
    }

    /// SIGKILL, and waits until it is gone. The guard starts it again when
    /// dropped, if nothing did before.
    pub fn kill(&self) -> Restart {
        let pid = self
            .pid()
            .unwrap_or_else(|| panic!("{} (port {}) is not running", self.name, self.port));
        let guard = Restart(self.clone());
        let status = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -KILL {pid}");
        let started = Instant::now();
        while Path::new(&format!("/proc/{pid}")).exists() || self.answers() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{} survives SIGKILL",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        guard
    }

    /// Starts it as `docker/sandbox.sh up` does unless it runs, waits until
    /// it answers and, for a replica, replicates (`skip-slave-start`: its
    /// replication is started here).
    pub fn start(&self) -> Result<(), String> {
        if !self.answers() {
            if self.pid().is_none() {
                for stale in ["mariadbd.pid", "mariadbd.sock"] {
                    let _ = std::fs::remove_file(self.dir.join(stale));
                }
                let log = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.dir.join("stdout.log"))
                    .map_err(|e| format!("stdout.log: {e}"))?;
                let log2 = log.try_clone().map_err(|e| e.to_string())?;
                let mariadbd =
                    std::env::var("MARIADBD").unwrap_or_else(|_| "/usr/sbin/mariadbd".into());
                // setsid -f: the server outlives the test process, in a
                // session of its own, as the sandbox script starts it.
                let status = Command::new("setsid")
                    .arg("-f")
                    .arg(&mariadbd)
                    .arg(self.defaults_file())
                    .env("MALLOC_ARENA_MAX", "2")
                    .env("MALLOC_MMAP_THRESHOLD_", "262144")
                    .env("MALLOC_TRIM_THRESHOLD_", "262144")
                    .stdin(Stdio::null())
                    .stdout(log)
                    .stderr(log2)
                    .status()
                    .map_err(|e| format!("setsid {mariadbd}: {e}"))?;
                if !status.success() {
                    return Err(format!("setsid {mariadbd} exited with {status}"));
                }
            }
            let started = Instant::now();
            while !self.answers() {
                if started.elapsed() > Duration::from_secs(60) {
                    return Err(format!("{} does not answer 60 s after start", self.name));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        if self.replica {
            cli(self.port, "START SLAVE")?;
            let started = Instant::now();
            while !replicating(self.port) {
                if started.elapsed() > Duration::from_secs(30) {
                    return Err(format!("{} does not replicate 30 s after start", self.name));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(())
    }
}

/// Starts a killed primary again (its guard is then done) and waits until
/// each of its `replicas` replicates again.
pub async fn restart_primary(server: &Server, restart: Restart, replicas: &[u16]) {
    blocking({
        let server = server.clone();
        move || server.start().expect("restart the primary")
    })
    .await;
    drop(restart);
    for &replica in replicas {
        blocking(move || wait_replicating(replica, Duration::from_secs(20))).await;
    }
}

/// Starts a killed server again when dropped (on success or panic alike).
pub struct Restart(Server);

impl Drop for Restart {
    fn drop(&mut self) {
        if let Err(e) = self.0.start() {
            eprintln!(
                "COULD NOT RESTART {} (port {}): {e}; run SANDBOX_DIR={} docker/sandbox.sh up",
                self.0.name,
                self.0.port,
                self.0
                    .dir
                    .parent()
                    .map(|d| d.display().to_string())
                    .unwrap_or_default()
            );
        }
    }
}
