//! TLS for clients, on the shipped config (replicas on) with `server.tls`
//! and `require_secure_transport`: real drivers log in over TLS, verifying
//! the proxy's certificate and name, and get the answers the server gives
//! them directly; a client in the clear is refused as MariaDB refuses it;
//! the binary serves a renewed certificate after SIGHUP. The admin API
//! over HTTPS (`server.admin_tls`), verified by curl, its certificate
//! renewed by a reload.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use shardgate_integration_tests::binary::{shardgate_binary, ProxyProcess};
use shardgate_integration_tests::certs::{self, TestCerts};
use shardgate_integration_tests::{
    assert_same_transcript, direct_endpoint, mariadb_select_one, proxy_endpoint, sandbox,
    sandbox_ready, seed_config_text, start_proxy, test_config, Driver, Endpoint,
};
use shardgate_rules::config::TlsFiles;
use shardgate_rules::Config;

use crate::protocol::failed_logins;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("shardgate-tls-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch folder");
    dir
}

fn tls_files(certs: &TestCerts) -> TlsFiles {
    TlsFiles {
        cert: certs.cert.clone(),
        key: certs.key.clone(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drivers_over_tls_get_the_answers_the_server_gives() {
    let _sandbox = sandbox::shared().await;
    let issued = certs::issue(&scratch("drivers"), "drivers");
    let mut cfg = test_config();
    cfg.server.tls = Some(tls_files(&issued));
    cfg.server.require_secure_transport = true;
    if !sandbox_ready(&cfg, "client_tls") {
        return;
    }
    let direct = direct_endpoint(&cfg);
    let proxy = start_proxy(cfg).await;
    let ca = issued.ca.to_string_lossy().into_owned();
    // Each scenario in the clear straight at ds0, then over TLS through the
    // proxy, which refuses the clear: a transcript at all proves TLS.
    for driver in [Driver::Cli, Driver::PyMySql, Driver::Jdbc, Driver::Node] {
        let name = driver.name();
        let direct_t = driver
            .run(&direct)
            .await
            .unwrap_or_else(|e| panic!("{name} against ds0 directly: {e}"));
        let proxied_t = driver
            .run_env(&proxy.endpoint(), &[("SG_TLS_CA", &ca)])
            .await
            .unwrap_or_else(|e| panic!("{name} over TLS through shardgate: {e}"));
        assert_same_transcript(&format!("{name} over TLS"), &direct_t, &proxied_t);
    }

    let refused = proxy.endpoint().connect().await.expect_err("refused");
    let db = refused.as_database_error().expect("a server error");
    assert_eq!(db.code().as_deref(), Some("28000"), "{db}");
    assert_eq!(
        db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
            .map(|e| e.number()),
        Some(1045)
    );
    assert!(
        db.message()
            .contains("connections must use TLS (server.require_secure_transport)"),
        "{db}"
    );
    assert_eq!(failed_logins(&proxy, "insecure_transport").await, 1);
    assert_eq!(failed_logins(&proxy, "access_denied").await, 0);
}

/// Two certificate pairs of their own CAs, and the files a config names
/// (`served`), which hold the first pair until [`Renewable::renew`].
struct Renewable {
    first: TestCerts,
    renewed: TestCerts,
    served: TestCerts,
}

impl Renewable {
    /// Issued into `dir`, their names starting with `prefix`.
    fn issue(dir: &std::path::Path, prefix: &str) -> Renewable {
        let first = certs::issue(dir, &format!("{prefix}first"));
        let renewed = certs::issue(dir, &format!("{prefix}renewed"));
        let served = TestCerts {
            ca: first.ca.clone(),
            cert: dir.join(format!("{prefix}served-cert.pem")),
            key: dir.join(format!("{prefix}served-key.pem")),
        };
        let pairs = Renewable {
            first,
            renewed,
            served,
        };
        pairs.install(&pairs.first);
        pairs
    }

    /// The renewed pair into the served files.
    fn renew(&self) {
        self.install(&self.renewed);
    }

    fn install(&self, from: &TestCerts) {
        std::fs::copy(&from.cert, &self.served.cert).expect("copy the certificate");
        std::fs::copy(&from.key, &self.served.key).expect("copy the key");
    }
}

/// `mariadb -e "SELECT 1"` over TLS, trusting only `ca`: Ok when the
/// proxy's certificate verifies (chain and name), else the client's error.
async fn select_over_tls(ep: &Endpoint, ca: &std::path::Path) -> Result<String, String> {
    mariadb_select_one(ep, Some(ca)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_serves_a_renewed_certificate_and_keeps_the_old_when_the_new_is_broken() {
    let _sandbox = sandbox::shared().await;
    let cfg = test_config();
    if !sandbox_ready(&cfg, "client_tls") {
        return;
    }
    let dir = scratch("sighup");
    let pairs = Renewable::issue(&dir, "");
    let (first, renewed, served) = (&pairs.first, &pairs.renewed, &pairs.served);
    let text = format!(
        "{}\n{}",
        seed_config_text().replace("[server]\n", "[server]\nrequire_secure_transport = true\n"),
        served.server_toml()
    );
    let loaded = Config::from_toml_str(&text).expect("the TLS config loads");
    let config = dir.join("shardgate.toml");
    std::fs::write(&config, &text).expect("write the config");
    let mut proxy = ProxyProcess::start(&shardgate_binary(), &config, &dir);
    let ep = proxy_endpoint(&loaded, proxy.addr);

    assert_eq!(select_over_tls(&ep, &first.ca).await.as_deref(), Ok("1"));
    let refused = select_over_tls(&ep, &renewed.ca).await;
    assert!(refused.is_err(), "a CA that did not sign it: {refused:?}");

    pairs.renew();
    proxy.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while select_over_tls(&ep, &renewed.ca).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the renewed certificate is not served 10 s after SIGHUP:\n{}",
            proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(select_over_tls(&ep, &first.ca).await.is_err());

    // A key that does not go with the certificate: the reload is refused,
    // logged, and the renewed pair goes on serving.
    std::fs::copy(&first.key, &served.key).expect("copy a key of another pair");
    proxy.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !proxy.log().contains("server.tls") {
        assert!(
            Instant::now() < deadline,
            "no reload error logged:\n{}",
            proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(select_over_tls(&ep, &renewed.ca).await.as_deref(), Ok("1"));
    let log = proxy.stop();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!log.contains("panicked"), "{log}");
}

/// `curl` at the admin listener over HTTPS, trusting only `ca`: the
/// status and body, or curl's error (a certificate that does not verify,
/// no TLS answer).
fn admin_over_https(
    admin: std::net::SocketAddr,
    method: &str,
    path: &str,
    ca: &std::path::Path,
) -> Result<(u16, String), String> {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", "-X", method, "--cacert"])
        .arg(ca)
        .args(["-w", "\n%{http_code}"])
        .arg(format!("https://localhost:{}{path}", admin.port()))
        .output()
        .map_err(|e| format!("cannot run curl: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    Ok((code.parse().map_err(|_| text.clone())?, body.to_owned()))
}

/// `server.admin_tls` on the shipped config: curl, verifying the chain and
/// the name, gets the API's JSON and the metrics over HTTPS; a client in the
/// clear gets no HTTP answer; after `POST /api/reload` (over HTTPS) new
/// connections get the renewed certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_is_served_over_https_and_its_certificate_reloads() {
    let _sandbox = sandbox::shared().await;
    if !sandbox_ready(&test_config(), "client_tls") {
        return;
    }
    let dir = scratch("admin");
    let pairs = Renewable::issue(&dir, "admin-");
    let (first, renewed, served) = (&pairs.first, &pairs.renewed, &pairs.served);
    let text = format!(
        "{}\n[server.admin_tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        seed_config_text(),
        served.cert.display(),
        served.key.display()
    );
    let config = dir.join("shardgate.toml");
    std::fs::write(&config, &text).expect("write the config");
    let proxy = shardgate_integration_tests::start_proxy_from_file(&config).await;
    let admin = proxy.admin_addr;

    let (status, body) =
        admin_over_https(admin, "GET", "/api/stats", &first.ca).expect("HTTPS with the CA");
    assert_eq!(status, 200, "{body}");
    let stats: serde_json::Value = serde_json::from_str(&body).expect("JSON stats");
    assert!(stats.is_object(), "{stats}");
    let (status, metrics) =
        admin_over_https(admin, "GET", "/metrics", &first.ca).expect("metrics over HTTPS");
    assert_eq!(status, 200);
    assert!(metrics.contains("shardgate_"), "{metrics:.200}");
    let refused = admin_over_https(admin, "GET", "/api/stats", &renewed.ca);
    assert!(refused.is_err(), "a CA that did not sign it: {refused:?}");
    let clear = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .arg(format!("http://127.0.0.1:{}/api/stats", admin.port()))
        .output()
        .expect("curl");
    assert!(
        !clear.status.success() && clear.stdout.is_empty(),
        "an answer in the clear: {}",
        String::from_utf8_lossy(&clear.stdout)
    );

    pairs.renew();
    let (status, body) =
        admin_over_https(admin, "POST", "/api/reload", &first.ca).expect("reload over HTTPS");
    assert_eq!(status, 200, "{body}");
    let (status, _) =
        admin_over_https(admin, "GET", "/api/stats", &renewed.ca).expect("the renewed one");
    assert_eq!(status, 200);
    assert!(admin_over_https(admin, "GET", "/api/stats", &first.ca).is_err());
    drop(proxy);
    let _ = std::fs::remove_dir_all(&dir);
}
