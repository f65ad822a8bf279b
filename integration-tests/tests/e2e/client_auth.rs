//! Logging in with each plugin and each way of giving a user's secret, on
//! the shipped config (replicas on) with TLS offered: sqlx, PyMySQL, the
//! mariadb CLI and mysql2 log in, or are refused with MariaDB's 1045 and a
//! message that says what to change; COM_CHANGE_USER (mysql2's changeUser)
//! goes on as another user with the session reset and the new user's
//! access (its databases, read-only).

use std::path::PathBuf;

use shardgate_integration_tests::certs::{self, TestCerts};
use shardgate_integration_tests::{
    mariadb_select_one, python, sandbox, sandbox_ready, seed_config_text, start_proxy, test_config,
    Driver, Endpoint, RunningProxy,
};
use shardgate_rules::Config;

use crate::protocol::failed_logins;

/// PASSWORD('secret') and the ed25519 key of 'secret', as MariaDB stores them.
const NATIVE_HASH: &str = "*14E65567ABDB5135D0CFD9A70B3032C179A49EE7";
const ED25519_KEY: &str = "ZIgUREUg5PVgQ6LskhXmO+eZLS0nC8be6HPjYWR4YJY";

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("shardgate-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch folder");
    dir
}

/// The seed config with TLS and one user per plugin and secret form.
fn auth_config(certs: &TestCerts, password_file: &std::path::Path) -> Config {
    let users = format!(
        r#"
[[server.users]]
name = "native_hash"
password_hash = "{NATIVE_HASH}"

[[server.users]]
name = "from_file"
password_file = "{file}"

[[server.users]]
name = "from_env"
password_env = "SG_AUTH_TEST_PASSWORD"

[[server.users]]
name = "sha2_plain"
password = "secret2"
auth_plugin = "caching_sha2_password"

[[server.users]]
name = "sha2_hash"
password_hash = "{NATIVE_HASH}"
auth_plugin = "caching_sha2_password"

[[server.users]]
name = "ed_key"
password_hash = "{ED25519_KEY}"

[[server.users]]
name = "ed_plain"
password = "secret3"
auth_plugin = "ed25519"

[[server.users]]
name = "reader"
password = "secret4"
databases = ["wework"]
read_only = true
"#,
        file = password_file.display()
    );
    let text = format!("{}\n{}\n{users}", seed_config_text(), certs.server_toml());
    Config::from_toml_str(&text).expect("the auth test config loads")
}

/// A login with sqlx (in the clear): Ok, or the server's code and message.
async fn sqlx_login(ep: &Endpoint, user: &str, password: &str) -> Result<(), (String, String)> {
    match ep.with_user(user).with_password(password).connect().await {
        Ok(conn) => {
            let _ = sqlx::Connection::close(conn).await;
            Ok(())
        }
        Err(e) => {
            let db = e.as_database_error();
            Err((
                db.and_then(|d| d.code().map(|c| c.into_owned()))
                    .unwrap_or_default(),
                db.map_or_else(|| e.to_string(), |d| d.message().to_string()),
            ))
        }
    }
}

/// A login with PyMySQL over TLS (verifying the proxy's certificate).
async fn pymysql_tls_login(
    ep: &Endpoint,
    ca: &std::path::Path,
    user: &str,
    password: &str,
) -> Result<String, String> {
    let script = r#"
import sys, pymysql
host, port, user, password, db, ca = sys.argv[1:]
c = pymysql.connect(host=host, port=int(port), user=user, password=password, database=db,
                    ssl_ca=ca, ssl_verify_cert=True, ssl_verify_identity=True)
cur = c.cursor(); cur.execute("SELECT 1"); print(cur.fetchone()[0], c._sock.version())
"#;
    let out = tokio::process::Command::new(python())
        .args([
            "-c",
            script,
            &ep.host,
            &ep.port.to_string(),
            user,
            password,
            &ep.database,
        ])
        .arg(ca)
        .output()
        .await
        .map_err(|e| format!("cannot run python: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// A login with the mariadb CLI in the clear (it switches to client_ed25519
/// when asked).
async fn cli_login(ep: &Endpoint, user: &str, password: &str) -> Result<String, String> {
    mariadb_select_one(&ep.with_user(user).with_password(password), None).await
}

async fn start(dir: &std::path::Path) -> (RunningProxy, TestCerts) {
    let issued = certs::issue(dir, "auth");
    let file = dir.join("from_file.password");
    std::fs::write(&file, "file secret\n").expect("write the password file");
    // Only this test reads it; the proxy reads it when the config loads.
    std::env::set_var("SG_AUTH_TEST_PASSWORD", "env secret");
    let proxy = start_proxy(auth_config(&issued, &file)).await;
    (proxy, issued)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_plugin_and_form_of_secret_logs_in_and_wrong_ones_are_refused() {
    let _sandbox = sandbox::shared().await;
    let dir = scratch();
    if !sandbox_ready(&test_config(), "client_auth") {
        return;
    }
    let (proxy, issued) = start(&dir).await;
    let ep = proxy.endpoint();

    // mysql_native_password from a stored hash, a file, the environment.
    for (user, password) in [
        ("native_hash", "secret"),
        ("from_file", "file secret"),
        ("from_env", "env secret"),
    ] {
        assert_eq!(sqlx_login(&ep, user, password).await, Ok(()), "{user}");
        let (code, message) = sqlx_login(&ep, user, "wrong")
            .await
            .expect_err("a wrong password");
        assert_eq!(code, "28000", "{user}: {message}");
        assert!(
            message.starts_with(&format!(
                "Access denied for user '{user}'@'127.0.0.1' (using password: YES)"
            )),
            "{message}"
        );
    }

    // caching_sha2_password with the password known: the fast path, in the
    // clear (the mariadb CLI's plugin; sqlx 0.8 scrambles wrongly, so it
    // always takes the full path, which needs TLS here).
    assert_eq!(
        cli_login(&ep, "sha2_plain", "secret2").await.as_deref(),
        Ok("1")
    );
    let wrong = cli_login(&ep, "sha2_plain", "wrong").await;
    assert!(wrong.is_err(), "{wrong:?}");
    // With only the native hash: full authentication first, which needs TLS...
    let (code, message) = sqlx_login(&ep, "sha2_hash", "secret")
        .await
        .expect_err("needs TLS");
    assert_eq!(code, "28000", "{message}");
    assert!(
        message.contains("caching_sha2_password needs the password sent over TLS (server.tls)"),
        "{message}"
    );
    assert!(
        cli_login(&ep, "sha2_hash", "secret").await.is_err(),
        "no digest learnt yet"
    );
    // ...over TLS it logs in (a wrong password does not), and then the
    // fast path serves the clear.
    let wrong = pymysql_tls_login(&ep, &issued.ca, "sha2_hash", "wrong").await;
    assert!(
        wrong.as_ref().is_err_and(|e| e.contains("1045")),
        "{wrong:?}"
    );
    let tls = pymysql_tls_login(&ep, &issued.ca, "sha2_hash", "secret").await;
    assert!(
        tls.as_ref().is_ok_and(|out| out.starts_with("1 TLSv1.")),
        "{tls:?}"
    );
    assert_eq!(
        cli_login(&ep, "sha2_hash", "secret").await.as_deref(),
        Ok("1")
    );
    let plain_tls = pymysql_tls_login(&ep, &issued.ca, "sha2_plain", "secret2").await;
    assert!(plain_tls.is_ok(), "{plain_tls:?}");

    // MariaDB's ed25519, from its stored key and from the password.
    assert_eq!(cli_login(&ep, "ed_key", "secret").await.as_deref(), Ok("1"));
    assert_eq!(
        cli_login(&ep, "ed_plain", "secret3").await.as_deref(),
        Ok("1")
    );
    let wrong = cli_login(&ep, "ed_key", "wrong").await;
    assert!(
        wrong
            .as_ref()
            .is_err_and(|e| e.contains("ERROR 1045 (28000): Access denied for user 'ed_key'")),
        "{wrong:?}"
    );

    assert!(failed_logins(&proxy, "access_denied").await >= 7);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_user_goes_on_as_another_user_with_the_session_reset() {
    let _sandbox = sandbox::shared().await;
    let dir = scratch().join("change");
    if !sandbox_ready(&test_config(), "client_auth") {
        return;
    }
    let (proxy, _issued) = start(&dir).await;
    let users = r#"[{"user":"native_hash","password":"secret"},{"user":"sha2_plain","password":"secret2"},{"user":"from_env","password":"env secret"}]"#;
    let transcript = Driver::Node
        .run_file_env(
            "change_user.js",
            &proxy.endpoint(),
            &[
                ("SG_CHANGE_USERS", users),
                (
                    "SG_CHANGE_READER",
                    r#"{"user":"reader","password":"secret4","other":"ops"}"#,
                ),
            ],
        )
        .await
        .expect("the change_user scenario runs");
    let expected = [
        r#"{"step":"before","ok":42}"#,
        r#"{"step":"change","ok":true}"#,
        r#"{"step":"variable_after","ok":null}"#,
        r#"{"step":"uncommitted_after","ok":0}"#,
        r#"{"step":"wrong_password","errno":1045,"sqlState":"28000","message":"Access denied for user 'native_hash'@'127.0.0.1' (using password: YES)"}"#,
        r#"{"step":"after_refusal","ok":7}"#,
        r#"{"step":"unknown_database","errno":1049,"sqlState":"42000","message":"Unknown database 'no_such_db'"}"#,
        r#"{"step":"change_to_sha2_plain","ok":true}"#,
        r#"{"step":"select_as_sha2_plain","ok":1}"#,
        r#"{"step":"change_to_from_env","ok":true}"#,
        r#"{"step":"select_as_from_env","ok":1}"#,
        r#"{"step":"reader_other_database","errno":1044,"sqlState":"42000","message":"Access denied for user 'reader'@'%' to database 'ops'"}"#,
        r#"{"step":"reader","ok":true}"#,
        r#"{"step":"reader_writes","errno":1290,"sqlState":"HY000","message":"The ShardGate user 'reader' is read-only (users[].read_only), so it cannot execute this statement"}"#,
        r#"{"step":"reader_reads","ok":0}"#,
    ];
    assert_eq!(
        transcript.lines().collect::<Vec<_>>(),
        expected,
        "{transcript}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
