//! The `shardgate` binary's logs (issue 15, "Hardening"): with
//! `--log-format json` every line on standard output is one JSON object for
//! log shippers, and neither a client's password nor the admin token
//! appears in the logs, even at `debug`, or in the admin API's answers;
//! failed logins are logged at WARN, a line per period, not per login;
//! text logs have ANSI colours on a terminal and none in a pipe.
//!
//! Runs the binary as a child process (built as `memory` builds it, or
//! `SHARDGATE_BIN`); skipped when the sandbox is not running, unless
//! `SHARDGATE_REQUIRE_SANDBOX=1`.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use shardgate_integration_tests::binary::shardgate_binary;
use shardgate_integration_tests::{
    http, sandbox, sandbox_ready, seed_config_with_secrets, test_config, write_config_file,
    Endpoint,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

const TOKEN: &str = "log-admin-token-5d1e";
const USER_PASSWORD: &str = "log-user-password-c84a";
/// Wrong passwords tried in a row: logged at WARN, rate-limited.
const WRONG_LOGINS: usize = 10;

#[tokio::test]
async fn json_logs_parse_and_hold_no_secret() {
    const TEST: &str = "json_logs_parse_and_hold_no_secret";
    let _sandbox = sandbox::shared().await;
    if !sandbox_ready(&test_config(), TEST) {
        return;
    }
    let text = seed_config_with_secrets(TOKEN, USER_PASSWORD);
    let path = write_config_file("json_logs", &text);
    let mut child = Command::new(shardgate_binary())
        .arg("--config")
        .arg(&path)
        .args(["--log-format", "json"])
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start shardgate");
    let (lines, reader) = collect_lines(&mut child);
    let (mysql, admin) = addresses(&lines).await;

    let login = |password: &str| Endpoint {
        host: mysql.ip().to_string(),
        port: mysql.port(),
        user: "root".into(),
        password: password.into(),
        database: "wework".into(),
    };
    for _ in 0..WRONG_LOGINS {
        let denied = login("not-the-password").connect().await;
        assert!(denied.is_err(), "a wrong password is refused");
    }
    let mut conn = login(USER_PASSWORD)
        .connect()
        .await
        .expect("the right password logs in");
    sqlx::raw_sql("SELECT 1")
        .execute(&mut conn)
        .await
        .expect("SELECT 1");
    drop(conn);

    let auth = format!("Bearer {TOKEN}");
    let bearer = [("Authorization", auth.as_str())];
    for (method, target) in [("GET", "/api/rules"), ("POST", "/api/reload")] {
        let answer = http::request(admin, method, target, &bearer, None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let body = answer.text();
        assert_eq!(answer.status, 200, "{method} {target}: {body}");
        for secret in [TOKEN, USER_PASSWORD] {
            assert!(
                !body.contains(secret),
                "{method} {target} shows {secret}: {body}"
            );
        }
    }

    // SIGTERM: the proxy stops as it does for an operator.
    let pid = child.id().expect("shardgate runs").to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("run kill");
    assert!(status.success(), "kill -TERM {pid}");
    let exit = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("shardgate stops within 10 s of SIGTERM")
        .expect("wait for shardgate");
    let mut stderr = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut stderr).await;
    }
    assert!(exit.success(), "shardgate exited with {exit}: {stderr}");
    tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .expect("stdout ends with the process")
        .expect("the stdout reader");

    let lines = lines.lock().expect("log lines").clone();
    let events: Vec<Value> = lines
        .iter()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("a stdout line that is not JSON ({e}): {line}"))
        })
        .collect();
    for (line, event) in lines.iter().zip(&events) {
        assert!(
            event["level"].is_string() && event["fields"].is_object(),
            "a log event has a level and fields: {line}"
        );
    }
    // At WARN, but not a line each: one per 10 s, with the count held back.
    let warned = events
        .iter()
        .filter(|e| {
            e["level"] == "WARN"
                && e["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("login failed"))
        })
        .count();
    assert!(
        (1..WRONG_LOGINS).contains(&warned),
        "{WRONG_LOGINS} wrong passwords logged at WARN in {warned} lines:\n{}",
        lines.join("\n")
    );
    for line in lines.iter().map(String::as_str).chain(stderr.lines()) {
        for secret in [TOKEN, USER_PASSWORD] {
            assert!(!line.contains(secret), "a log line shows {secret}: {line}");
        }
    }
}

/// Text logs are coloured on a terminal (`script` runs the proxy on a
/// pseudo-terminal and copies what it writes) and plain in a pipe, where a
/// file or a log shipper reads them.
#[tokio::test]
async fn text_logs_are_coloured_only_on_a_terminal() {
    const TEST: &str = "text_logs_are_coloured_only_on_a_terminal";
    let _sandbox = sandbox::shared().await;
    if !sandbox_ready(&test_config(), TEST) {
        return;
    }
    let path = write_config_file("text_logs", &seed_config_with_secrets(TOKEN, USER_PASSWORD));
    let binary = shardgate_binary();
    let mut piped = Command::new(&binary);
    piped.arg("--config").arg(&path);
    let piped = lines_until_serving(piped).await;
    let mut on_terminal = Command::new("script");
    on_terminal.args([
        "-qfec",
        &format!("exec '{}' --config '{}'", binary.display(), path.display()),
        "/dev/null",
    ]);
    let on_terminal = lines_until_serving(on_terminal).await;
    let coloured = |lines: &[String]| lines.iter().any(|l| l.contains("\x1b["));
    assert!(
        !coloured(&piped),
        "colours in a pipe:\n{}",
        piped.join("\n")
    );
    assert!(
        coloured(&on_terminal),
        "no colours on a terminal:\n{}",
        on_terminal.join("\n")
    );
}

/// The lines `command` (the proxy, or `script` running it) writes until
/// the proxy says it is serving, at most 30 s; the proxy is then stopped
/// with SIGTERM (under `script` it is `script`'s child: a terminal's
/// hang-up would be a reload to it, not a stop).
async fn lines_until_serving(mut command: Command) -> Vec<String> {
    let mut child = command
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the proxy");
    let (lines, reader) = collect_lines(&mut child);
    let serving = || {
        lines
            .lock()
            .expect("log lines")
            .iter()
            .any(|l| l.contains("ShardGate is serving"))
    };
    for _ in 0..300 {
        if serving() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pid = child.id().expect("the child runs").to_string();
    let proxy = Command::new("pgrep")
        .args(["-P", &pid])
        .output()
        .await
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_default();
    for pid in [proxy.as_str(), pid.as_str()] {
        if !pid.is_empty() {
            let _ = Command::new("kill").args(["-TERM", pid]).status().await;
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
    let lines = lines.lock().expect("log lines").clone();
    assert!(
        serving(),
        "the proxy never said it was serving:\n{}",
        lines.join("\n")
    );
    lines
}

/// Every line the child writes to stdout, gathered as it comes by a task
/// that ends with the stream.
fn collect_lines(child: &mut Child) -> (Arc<Mutex<Vec<String>>>, JoinHandle<()>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let stdout = child.stdout.take().expect("piped stdout");
    let gathered = lines.clone();
    let reader = tokio::spawn(async move {
        let mut reader = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            gathered.lock().expect("log lines").push(line);
        }
    });
    (lines, reader)
}

/// The MySQL and admin addresses of the start's "ShardGate listening"
/// event.
async fn addresses(lines: &Mutex<Vec<String>>) -> (SocketAddr, SocketAddr) {
    let find = || {
        lines.lock().expect("log lines").iter().find_map(|line| {
            let event: Value = serde_json::from_str(line).ok()?;
            let fields = &event["fields"];
            let mysql = fields["mysql_addr"].as_str()?.parse().ok()?;
            let admin = fields["admin_addr"].as_str()?.parse().ok()?;
            Some((mysql, admin))
        })
    };
    for _ in 0..300 {
        if let Some(found) = find() {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "no \"ShardGate listening\" event within 30 s:\n{}",
        lines.lock().expect("log lines").join("\n")
    );
}
