//! Shared helpers of ShardGate's end-to-end tests: the sandbox check, the
//! in-process proxy, the driver scenarios (external programs under
//! `drivers/`, plus the sqlx one in [`sqlx_scenario`]), the transcript
//! comparison, an HTTP client for the admin API ([`http`]), a live
//! write/read load with its checker for the migration tests ([`live_load`]),
//! the `shardgate` binary for the tests that run it as a child process
//! ([`binary`]), a raw protocol client for malformed packets ([`raw_mysql`]),
//! and the guard every test holds on the sandbox ([`sandbox`]).
//!
//! Every differential test runs a scenario twice — against the default data
//! source's primary directly (`ds0`, database `ds0`) and through ShardGate
//! (database `wework`) — and asserts that the two transcripts are identical.

pub mod apps;
pub mod binary;
pub mod certs;
pub mod conformance;
pub mod fault_link;
pub mod fixtures;
pub mod http;
pub mod live_load;
pub mod raw_mysql;
pub mod replication;
pub mod sandbox;
pub mod sharding;
pub mod sqlx_scenario;
pub mod tls;

use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlDatabaseError, MySqlSslMode};
use sqlx::ConnectOptions;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use shardgate_rules::config::Credential;
pub use shardgate_rules::Config;

/// The seed's topology, as `docker/sandbox.sh up` starts it.
pub const SEED_CONFIG: &str = include_str!("../../examples/wework.toml");

/// How long one driver scenario may take before the test fails.
const DRIVER_TIMEOUT: Duration = Duration::from_secs(300);

/// The SHA-256 of the ~100 KB blob every scenario inserts: (i*31+7) mod 256.
pub const BIG_BLOB_SHA256: &str =
    "731620161155f68e1209f22bc34a726bf5a583f40acf23ae55684b674fdbebf2";

/// Where to connect, as whom, to which database.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub database: String,
}

impl Endpoint {
    /// `HOST PORT USER PASSWORD DATABASE`, the argument list of every driver scenario.
    pub fn args(&self) -> Vec<String> {
        vec![
            self.host.clone(),
            self.port.to_string(),
            self.user.clone(),
            self.password.clone(),
            self.database.clone(),
        ]
    }

    pub fn with_database(&self, database: &str) -> Endpoint {
        Endpoint {
            database: database.to_string(),
            ..self.clone()
        }
    }

    pub fn with_password(&self, password: &str) -> Endpoint {
        Endpoint {
            password: password.to_string(),
            ..self.clone()
        }
    }

    pub fn with_user(&self, user: &str) -> Endpoint {
        Endpoint {
            user: user.to_string(),
            ..self.clone()
        }
    }

    pub fn sqlx_options(&self) -> MySqlConnectOptions {
        let opts = MySqlConnectOptions::new()
            .host(&self.host)
            .port(self.port)
            .username(&self.user)
            .database(&self.database)
            .ssl_mode(MySqlSslMode::Disabled);
        // sqlx scrambles even an empty password, which servers refuse
        if self.password.is_empty() {
            opts
        } else {
            opts.password(&self.password)
        }
    }

    /// One sqlx connection (sqlx prepares every statement it is given
    /// through `sqlx::query`; `sqlx::raw_sql` uses the text protocol).
    pub async fn connect(&self) -> Result<MySqlConnection, sqlx::Error> {
        self.sqlx_options().connect().await
    }

    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// The test configuration: `examples/wework.toml` as shipped — replicas
/// on, read-your-writes per session — (or the file named by
/// `SHARDGATE_IT_CONFIG`), listening on ephemeral loopback ports.
pub fn test_config() -> Config {
    let text = match std::env::var("SHARDGATE_IT_CONFIG") {
        Ok(path) if !path.is_empty() => std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read SHARDGATE_IT_CONFIG={path}: {e}")),
        _ => SEED_CONFIG.to_string(),
    };
    let mut cfg = Config::from_toml_str(&text).expect("the test config loads");
    cfg.server.mysql_listen = "127.0.0.1:0".into();
    cfg.server.admin_listen = "127.0.0.1:0".into();
    cfg
}

/// The default data source's primary (`ds0`), straight, with its physical database.
pub fn direct_endpoint(cfg: &Config) -> Endpoint {
    data_source_endpoint(cfg, &cfg.server.default_data_source)
        .expect("the default data source is configured")
}

/// A data source's primary, straight, with its physical database (None when
/// `cfg` has no data source `name`).
pub fn data_source_endpoint(cfg: &Config, name: &str) -> Option<Endpoint> {
    let url = &cfg.data_sources.get(name)?.url;
    Some(Endpoint {
        host: url.host.clone(),
        port: url.port,
        user: url.user.clone(),
        password: url.password.clone(),
        database: url.database.clone(),
    })
}

/// ShardGate at `addr`, as the config's first user (whose password the
/// config gives), with the logical database.
pub fn proxy_endpoint(cfg: &Config, addr: SocketAddr) -> Endpoint {
    let user = cfg.server.users.first().expect("the config has a user");
    let Credential::Password(password) = &user.credential else {
        panic!("the config's first user has a hash, not a password to log in with");
    };
    Endpoint {
        host: addr.ip().to_string(),
        port: addr.port(),
        user: user.name.clone(),
        password: password.clone(),
        database: cfg.server.database.clone(),
    }
}

/// Writes past libtest's output capture, so that a skip is always visible.
pub fn say(msg: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{msg}");
}

/// What a test needs is missing (`reason`: the sandbox, or a tool): under
/// `SHARDGATE_REQUIRE_SANDBOX=1` (CI) the test fails; otherwise this prints
/// `SKIPPED: ...` and the test returns.
pub fn skip(test: &str, reason: &str) {
    if std::env::var("SHARDGATE_REQUIRE_SANDBOX").as_deref() == Ok("1") {
        panic!("{test}: {reason}, and SHARDGATE_REQUIRE_SANDBOX=1");
    }
    say(&format!("SKIPPED: {reason} ({test})"));
}

/// True when the sandbox's `ds0` primary accepts connections; when it does
/// not, the test is skipped or fails ([`skip`]).
pub fn sandbox_ready(cfg: &Config, test: &str) -> bool {
    let ep = direct_endpoint(cfg);
    let reachable = (ep.host.as_str(), ep.port)
        .to_socket_addrs()
        .ok()
        .into_iter()
        .flatten()
        .any(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok());
    if !reachable {
        let reason = format!(
            "sandbox not running on {} (start it with `docker/sandbox.sh up`)",
            ep.addr()
        );
        skip(test, &reason);
    }
    reachable
}

/// ShardGate running inside the test process.
pub struct RunningProxy {
    pub addr: SocketAddr,
    /// The admin HTTP listener.
    pub admin_addr: SocketAddr,
    pub cfg: Config,
    _handle: Box<dyn std::any::Any + Send + Sync>,
}

impl RunningProxy {
    pub fn endpoint(&self) -> Endpoint {
        proxy_endpoint(&self.cfg, self.addr)
    }
}

/// Starts ShardGate in-process on `cfg` (whose `mysql_listen` should be
/// `127.0.0.1:0`); it stops when the returned value is dropped or the test's
/// runtime ends.
pub async fn start_proxy(cfg: Config) -> RunningProxy {
    let proxy = shardgate_proxy::start(cfg.clone())
        .await
        .expect("shardgate starts");
    let addr = proxy.mysql_addr();
    RunningProxy {
        addr,
        admin_addr: proxy.admin_addr(),
        cfg,
        _handle: Box::new(proxy),
    }
}

/// Starts ShardGate in-process from a configuration file (which `POST
/// /api/reload` then re-reads).
pub async fn start_proxy_from_file(path: &Path) -> RunningProxy {
    let cfg = Config::from_toml_str(&std::fs::read_to_string(path).expect("config file"))
        .expect("the config file loads");
    let proxy = shardgate_proxy::start_from_file(path)
        .await
        .expect("shardgate starts");
    RunningProxy {
        addr: proxy.mysql_addr(),
        admin_addr: proxy.admin_addr(),
        cfg,
        _handle: Box::new(proxy),
    }
}

/// The seed config's text listening on ephemeral loopback ports (as
/// [`test_config`]).
pub fn seed_config_text() -> String {
    SEED_CONFIG
        .replace("127.0.0.1:3307", "127.0.0.1:0")
        .replace("127.0.0.1:9797", "127.0.0.1:0")
}

/// [`seed_config_text`] with secrets to keep out of logs and answers: an
/// admin token, and a password for the seed's user.
pub fn seed_config_with_secrets(admin_token: &str, password: &str) -> String {
    seed_config_text()
        .replace(
            "[server]\n",
            &format!("[server]\nadmin_token = \"{admin_token}\"\n"),
        )
        .replace("password = \"\"", &format!("password = \"{password}\""))
}

/// Writes a config file for one test (under the system's temp folder, one
/// subfolder per test process).
pub fn write_config_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("shardgate-it-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch folder");
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("write config");
    path
}

/// The folder of this crate (`integration-tests/`).
pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn drivers_dir() -> PathBuf {
    crate_dir().join("drivers")
}

/// The external driver scenarios under `drivers/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    /// The `mariadb` command-line client (`drivers/cli/scenario.sh`).
    Cli,
    /// PyMySQL, text protocol (`drivers/python/scenario.py`).
    PyMySql,
    /// MariaDB Connector/J, server-side prepared statements (`drivers/java/Scenario.java`).
    Jdbc,
    /// node mysql2 with `execute()`, binary protocol (`drivers/node/scenario.js`).
    Node,
}

impl Driver {
    pub fn name(self) -> &'static str {
        match self {
            Driver::Cli => "cli",
            Driver::PyMySql => "pymysql",
            Driver::Jdbc => "jdbc",
            Driver::Node => "node",
        }
    }

    /// Checks that the driver is installed; the error says how to install it.
    fn prepare(self) -> Result<(), String> {
        match self {
            Driver::Cli => {
                if which("mariadb").is_none() && which("mysql").is_none() {
                    return Err(
                        "the mariadb client is missing: apt-get install -y mariadb-client".into(),
                    );
                }
            }
            Driver::PyMySql => {
                let ok = std::process::Command::new(python())
                    .args(["-c", "import pymysql"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false);
                if !ok {
                    return Err(format!(
                        "PyMySQL is missing for {}: pip install pymysql",
                        python()
                    ));
                }
            }
            Driver::Jdbc => {
                if which("java").is_none() {
                    return Err("java is missing: apt-get install -y default-jdk-headless".into());
                }
                if !Path::new(&mariadb_jar()).exists() {
                    return Err(format!(
                        "{} is missing: apt-get install -y libmariadb-java (or set SHARDGATE_IT_MARIADB_JAR)",
                        mariadb_jar()
                    ));
                }
            }
            Driver::Node => {
                if which("node").is_none() {
                    return Err("node is missing: apt-get install -y nodejs npm".into());
                }
                ensure_node_modules()?;
            }
        }
        Ok(())
    }

    /// The driver's folder under `drivers/` and its default scenario file.
    fn scenario_file(self) -> (&'static str, &'static str) {
        match self {
            Driver::Cli => ("cli", "scenario.sh"),
            Driver::PyMySql => ("python", "scenario.py"),
            Driver::Jdbc => ("java", "Scenario.java"),
            Driver::Node => ("node", "scenario.js"),
        }
    }

    /// The command running `file` (in the driver's folder) against `ep`.
    fn command(self, file: &str, ep: &Endpoint) -> tokio::process::Command {
        let dir = drivers_dir().join(self.scenario_file().0);
        let mut cmd = match self {
            Driver::Cli => {
                let mut c = tokio::process::Command::new("bash");
                c.arg(dir.join(file));
                c
            }
            Driver::PyMySql => {
                let mut c = tokio::process::Command::new(python());
                c.arg(dir.join(file));
                c
            }
            Driver::Jdbc => {
                let mut c = tokio::process::Command::new("java");
                c.arg("-cp").arg(mariadb_jar()).arg(dir.join(file));
                c
            }
            Driver::Node => {
                let mut c = tokio::process::Command::new("node");
                c.arg(dir.join(file)).current_dir(&dir);
                c
            }
        };
        cmd.args(ep.args());
        cmd
    }

    /// Runs the scenario against `ep` and returns its transcript (stdout).
    pub async fn run(self, ep: &Endpoint) -> Result<String, String> {
        let what = format!(
            "{} scenario against {}/{}",
            self.name(),
            ep.addr(),
            ep.database
        );
        self.run_with(self.scenario_file().1, ep, &what).await
    }

    /// As [`Driver::run`], with environment variables `env` for the
    /// scenario (e.g. `SG_TLS_CA`: connect over TLS, verifying the
    /// server's certificate and name).
    pub async fn run_env(self, ep: &Endpoint, env: &[(&str, &str)]) -> Result<String, String> {
        self.run_file_env(self.scenario_file().1, ep, env).await
    }

    /// Runs another scenario of this driver, `file` in its folder under
    /// `drivers/` (e.g. `sharded.js` for node), against `ep` and returns its
    /// transcript (stdout).
    pub async fn run_file(self, file: &str, ep: &Endpoint) -> Result<String, String> {
        self.run_file_env(file, ep, &[]).await
    }

    /// As [`Driver::run_file`], with environment variables `env` for the scenario.
    pub async fn run_file_env(
        self,
        file: &str,
        ep: &Endpoint,
        env: &[(&str, &str)],
    ) -> Result<String, String> {
        let what = format!(
            "{} scenario {file} against {}/{}",
            self.name(),
            ep.addr(),
            ep.database
        );
        self.prepare()?;
        let mut cmd = self.command(file, ep);
        cmd.envs(env.iter().copied());
        run_command(cmd, &what).await
    }

    async fn run_with(self, file: &str, ep: &Endpoint, what: &str) -> Result<String, String> {
        self.prepare()?;
        run_command(self.command(file, ep), what).await
    }
}

/// Runs a prepared command with a timeout; a non-zero exit is an error
/// carrying both outputs.
pub async fn run_command(mut cmd: tokio::process::Command, what: &str) -> Result<String, String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd
        .spawn()
        .map_err(|e| format!("{what}: cannot start: {e}"))?;
    let out = match tokio::time::timeout(DRIVER_TIMEOUT, child.wait_with_output()).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => return Err(format!("{what}: {e}")),
        Err(_) => return Err(format!("{what}: timed out after {DRIVER_TIMEOUT:?}")),
    };
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        return Err(format!(
            "{what} failed ({}):\n--- stdout (last 40 lines) ---\n{}\n--- stderr ---\n{}",
            out.status,
            tail(&stdout, 40),
            tail(&stderr, 60)
        ));
    }
    Ok(stdout)
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    let from = lines.len().saturating_sub(n);
    lines[from..]
        .iter()
        .map(|l| clip(l, 0, 400))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `mariadb -e "SELECT 1"` against `ep`: in the clear, or over TLS trusting
/// only `tls_ca` and checking the server's name. Ok with what it printed,
/// else the client's error.
pub async fn mariadb_select_one(ep: &Endpoint, tls_ca: Option<&Path>) -> Result<String, String> {
    let mut cmd = tokio::process::Command::new("mariadb");
    cmd.args(["--no-defaults", "--batch", "--skip-column-names"])
        .args(["-h", &ep.host, "-P", &ep.port.to_string(), "-u", &ep.user])
        .args(["-D", &ep.database, "-e", "SELECT 1"])
        .env("MYSQL_PWD", &ep.password);
    match tls_ca {
        Some(ca) => cmd
            .arg("--ssl")
            .arg(format!("--ssl-ca={}", ca.display()))
            .arg("--ssl-verify-server-cert"),
        None => cmd.arg("--skip-ssl"),
    };
    let out = cmd
        .output()
        .await
        .map_err(|e| format!("cannot run mariadb: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// The python3 that has the Python drivers.
pub fn python() -> String {
    std::env::var("SHARDGATE_IT_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn mariadb_jar() -> String {
    std::env::var("SHARDGATE_IT_MARIADB_JAR")
        .unwrap_or_else(|_| "/usr/share/java/mariadb-java-client.jar".into())
}

/// The mariadb (or mysql) command-line client.
pub fn mariadb_client() -> PathBuf {
    which("mariadb")
        .or_else(|| which("mysql"))
        .expect("the mariadb client is installed (apt-get install -y mariadb-client)")
}

/// `program` in a folder of `PATH`.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// mysql2 must resolve from `drivers/node`; runs `npm install` there once if not.
fn ensure_node_modules() -> Result<(), String> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = drivers_dir().join("node");
    let resolves = || {
        std::process::Command::new("node")
            .args(["-e", "require.resolve('mysql2/promise')"])
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if resolves() {
        return Ok(());
    }
    if !dir.join("package.json").exists() {
        return Err(format!(
            "{} is missing (it lists mysql2); cannot install the node driver",
            dir.join("package.json").display()
        ));
    }
    say("integration-tests: installing the node driver (npm install in drivers/node)");
    let out = std::process::Command::new("npm")
        .args(["install", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .output()
        .map_err(|e| format!("npm install in {}: {e}", dir.display()))?;
    if !out.status.success() || !resolves() {
        return Err(format!(
            "npm install in {} failed:\n{}{}",
            dir.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// Saves both transcripts under `integration-tests/artifacts/` and fails with
/// a readable diff when they differ.
pub fn assert_same_transcript(name: &str, direct: &str, proxied: &str) {
    let dir = crate_dir().join("artifacts");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join(format!("{name}.direct.txt")), direct);
    let _ = std::fs::write(dir.join(format!("{name}.proxy.txt")), proxied);
    if direct == proxied {
        return;
    }
    panic!(
        "{name}: the transcript through ShardGate differs from ds0 direct \
         (full transcripts in {}/{name}.{{direct,proxy}}.txt)\n{}",
        dir.display(),
        transcript_diff(direct, proxied)
    );
}

/// A line diff of two transcripts; long lines are cut to a window around
/// their first difference.
pub fn transcript_diff(direct: &str, proxied: &str) -> String {
    use similar::{ChangeTag, TextDiff};
    let diff = TextDiff::from_lines(direct, proxied);
    let mut out = String::from("--- direct (ds0)\n+++ through shardgate\n");
    for group in diff.grouped_ops(1) {
        for op in group {
            let changes: Vec<_> = diff.iter_changes(&op).collect();
            let deleted: Vec<&str> = changes
                .iter()
                .filter(|c| c.tag() == ChangeTag::Delete)
                .map(|c| c.value().trim_end_matches('\n'))
                .collect();
            let inserted: Vec<&str> = changes
                .iter()
                .filter(|c| c.tag() == ChangeTag::Insert)
                .map(|c| c.value().trim_end_matches('\n'))
                .collect();
            for c in &changes {
                let line = c.value().trim_end_matches('\n');
                let (sign, other) = match c.tag() {
                    ChangeTag::Equal => (' ', None),
                    ChangeTag::Delete => ('-', inserted.first().copied()),
                    ChangeTag::Insert => ('+', deleted.first().copied()),
                };
                let at = other.map(|o| first_difference(line, o)).unwrap_or(0);
                let _ = writeln!(out, "{sign} {}", clip(line, at, 300));
            }
        }
        out.push_str("@@\n");
    }
    out
}

/// The byte offset where two texts first differ.
pub fn first_difference(a: &str, b: &str) -> usize {
    a.char_indices()
        .zip(b.chars())
        .find(|((_, x), y)| x != y)
        .map(|((i, _), _)| i)
        .unwrap_or(a.len().min(b.len()))
}

/// At most `width` characters of `line`, starting a little before byte `at`.
pub fn clip(line: &str, at: usize, width: usize) -> String {
    if line.chars().count() <= width {
        return line.to_string();
    }
    let start_char = line[..at.min(line.len())]
        .chars()
        .count()
        .saturating_sub(width / 3);
    let piece: String = line.chars().skip(start_char).take(width).collect();
    let head = if start_char > 0 { "…" } else { "" };
    let tail = if start_char + width < line.chars().count() {
        "…"
    } else {
        ""
    };
    format!("{head}{piece}{tail}")
}

/// Checks that a transcript is the whole scenario, not an early stop: at
/// least `min_steps` steps, the deliberate errors, the round-tripped
/// utf8mb4 text and the 100 KB blob, and the final marker.
pub fn assert_complete(name: &str, transcript: &str, min_steps: usize, done_marker: &str) {
    let steps = transcript
        .lines()
        .filter(|l| l.starts_with("{\"step\"") || l.starts_with("step ") || l.contains("\"step\":"))
        .count();
    let mut missing = Vec::new();
    for needle in [
        "1062",
        "1064",
        "23000",
        "42000",
        "🦀",
        "漢字",
        BIG_BLOB_SHA256,
        "txn-commit",
        done_marker,
    ] {
        if !transcript.contains(needle) {
            missing.push(needle);
        }
    }
    assert!(
        steps >= min_steps && missing.is_empty(),
        "{name}: incomplete transcript: {steps} steps (want >= {min_steps}), missing {missing:?}\n{}",
        tail(transcript, 30)
    );
}

/// The MySQL error number and message of a sqlx error, if the server sent one.
pub fn db_error(err: &sqlx::Error) -> Option<(u16, Option<String>, String)> {
    match err {
        sqlx::Error::Database(e) => e.try_downcast_ref::<MySqlDatabaseError>().map(|m| {
            (
                m.number(),
                m.code().map(str::to_string),
                m.message().to_string(),
            )
        }),
        _ => None,
    }
}

/// Runs SQL through the mariadb CLI (`--batch --raw --force`), returning
/// stdout and stderr interleaved.
pub async fn mariadb_cli(ep: &Endpoint, sql: &str, extra_args: &[&str]) -> Result<String, String> {
    use tokio::io::AsyncWriteExt;
    // through sh, so that errors (stderr) interleave with results (stdout)
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg("exec \"$@\" 2>&1")
        .arg("sh")
        .arg(mariadb_client());
    cmd.args([
        "--no-defaults",
        "--batch",
        "--raw",
        "--force",
        "--unbuffered",
        "--default-character-set=utf8mb4",
        "--connect-timeout=10",
    ])
    .args(extra_args)
    .arg("-h")
    .arg(&ep.host)
    .arg("-P")
    .arg(ep.port.to_string())
    .arg("-u")
    .arg(&ep.user)
    .arg("-D")
    .arg(&ep.database)
    .env("MYSQL_PWD", &ep.password)
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| format!("mariadb client: {e}"))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let sql = sql.to_string();
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(sql.as_bytes()).await;
        let _ = stdin.shutdown().await;
    });
    let out = tokio::time::timeout(DRIVER_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| "mariadb client timed out".to_string())?
        .map_err(|e| format!("mariadb client: {e}"))?;
    let _ = writer.await;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
