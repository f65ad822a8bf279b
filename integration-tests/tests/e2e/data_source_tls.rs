//! TLS from ShardGate to its data sources (issue 15): the shipped config,
//! replicas on, with every data-source URL at
//! `ssl-mode=VERIFY_IDENTITY&ssl-ca=<the sandbox's CA>`. Every backend
//! session is encrypted (the servers say so), sharded and prepared
//! statements answer as the reference database does, and a certificate
//! that fails the check, or a server that offers no TLS, is an error naming
//! the data source.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use shardgate_integration_tests::sharding::{self, Arg, Ctx, Shared};
use shardgate_integration_tests::tls::{sandbox_tls, with_tls};
use shardgate_integration_tests::{
    db_error, sandbox, sandbox_ready, start_proxy, test_config, Config, Endpoint,
};
use shardgate_rules::config::{BackendUrl, SslMode};
use shardgate_rules::ShardingRules;
use sqlx::Row;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// The sandbox's servers, primaries and replicas, by pool name.
fn servers(cfg: &Config) -> Vec<(String, Endpoint)> {
    let endpoint = |url: &BackendUrl| Endpoint {
        host: url.host.clone(),
        port: url.port,
        user: url.user.clone(),
        password: url.password.clone(),
        database: url.database.clone(),
    };
    let mut all = Vec::new();
    for (name, ds) in &cfg.data_sources {
        all.push((name.clone(), endpoint(&ds.url)));
        for (i, replica) in ds.replicas.iter().enumerate() {
            all.push((format!("{name}.replica{i}"), endpoint(replica)));
        }
    }
    all
}

/// A server's count of TLS handshakes it completed.
async fn tls_accepts(server: &Endpoint) -> u64 {
    let mut conn = server.connect().await.expect("connect to a sandbox server");
    let row = sqlx::query("SHOW GLOBAL STATUS LIKE 'Ssl_finished_accepts'")
        .fetch_one(&mut conn)
        .await
        .expect("Ssl_finished_accepts");
    let value: String = row.get(1);
    value.parse().expect("a count")
}

/// The cipher of the backend session a statement through the proxy runs on.
const SESSION_CIPHER: &str =
    "SELECT variable_value FROM information_schema.session_status WHERE variable_name = 'Ssl_cipher'";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_backend_session_is_encrypted_and_verified() {
    // Alone: the servers' handshake counters must move for the proxy only.
    let _sandbox = sandbox::exclusive().await;
    let cfg = test_config();
    if !sandbox_ready(&cfg, "every_backend_session_is_encrypted_and_verified") {
        return;
    }
    let tls = sandbox_tls(&cfg).await;
    let servers = servers(&cfg);
    let mut before = Vec::new();
    for (_, server) in &servers {
        before.push(tls_accepts(server).await);
    }
    let proxy = start_proxy(with_tls(cfg, SslMode::VerifyIdentity, Some(tls.ca))).await;
    let mut conn = proxy
        .endpoint()
        .connect()
        .await
        .expect("connect to shardgate");

    // A passthrough statement runs on a backend session: it says TLS.
    let cipher: String = sqlx::query_scalar(SESSION_CIPHER)
        .fetch_one(&mut conn)
        .await
        .expect("the backend session's cipher");
    assert!(!cipher.is_empty(), "the backend session is not encrypted");
    let version: (String, String) = sqlx::query_as("SHOW SESSION STATUS LIKE 'Ssl_version'")
        .fetch_one(&mut conn)
        .await
        .expect("the backend session's TLS version");
    assert!(version.1.starts_with("TLSv1."), "{version:?}");

    // Every server, primaries and replicas, gets its connections from the
    // proxy (sessions, health checks, the replica monitor) over TLS: DDL
    // goes to every primary (the seed's `users`, as the sharding suite
    // makes it, when no test made it yet), reads to the replicas.
    let ddl = sharding::USERS_DDL.replacen("CREATE TABLE", "CREATE TABLE IF NOT EXISTS", 1);
    sqlx::raw_sql(&ddl)
        .execute(&mut conn)
        .await
        .expect("the seed's users table on every primary");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        for _ in 0..8 {
            sqlx::query("SELECT COUNT(*) FROM users")
                .fetch_one(&mut conn)
                .await
                .expect("a scatter read");
        }
        let mut untouched = Vec::new();
        for ((name, server), before) in servers.iter().zip(&before) {
            // Our own check connects in the clear (sqlx, ssl-mode disabled).
            if tls_accepts(server).await == *before {
                untouched.push(name.clone());
            }
        }
        if untouched.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no TLS handshake from the proxy on {untouched:?} within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// A few of the sharding suite's differential checks, through a proxy
/// whose data sources are all reached over verified TLS: the same rows as
/// the reference database, text and prepared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_and_prepared_statements_answer_alike_over_tls() {
    let name = "sharded_and_prepared_statements_answer_alike_over_tls";
    let Some((plain, _held)) = sharding::reader(name).await else {
        return;
    };
    let tls = sandbox_tls(&plain.shared.cfg).await;
    let cfg = with_tls(
        plain.shared.cfg.clone(),
        SslMode::VerifyIdentity,
        Some(tls.ca),
    );
    let proxy = start_proxy(cfg.clone()).await;
    let shared: &'static Shared = Box::leak(Box::new(Shared {
        cfg,
        rules: ShardingRules::new(&plain.shared.cfg).expect("the rules build"),
        proxy_addr: proxy.addr,
    }));
    let mut c = Ctx::new(name, shared).await;
    for sql in [
        "SELECT * FROM users WHERE user_id BETWEEN 100 AND 400",
        "SELECT COUNT(*), SUM(balance), MIN(created_at), MAX(name) FROM users",
        "SELECT status, COUNT(*) FROM users GROUP BY status",
        "SELECT tenant_id, COUNT(*) FROM message_records WHERE created_at >= '2024-06-01 00:00:00' GROUP BY tenant_id",
        "SELECT * FROM sys_configs",
    ] {
        c.same(sql).await;
    }
    c.same_ordered("SELECT user_id, name FROM users ORDER BY user_id LIMIT 25 OFFSET 10")
        .await;
    c.same_prep(
        "SELECT * FROM users WHERE user_id BETWEEN ? AND ?",
        vec![Arg::I64(100), Arg::I64(400)],
    )
    .await;
    c.same_prep_ordered(
        "SELECT user_id, email FROM users WHERE status = ? ORDER BY user_id LIMIT 30",
        vec![Arg::I64(1)],
    )
    .await;
    c.finish();
}

/// The error a session on a proxy on `cfg` gets: at login (the proxy
/// reads its session settings from the default data source) or at its
/// first statement.
async fn first_error(cfg: Config, test: &str) -> (u16, String) {
    let proxy = start_proxy(cfg).await;
    let err = match proxy.endpoint().connect().await {
        Err(err) => err,
        Ok(mut conn) => sqlx::query_scalar::<_, String>(SESSION_CIPHER)
            .fetch_one(&mut conn)
            .await
            .expect_err(test),
    };
    let (code, _, message) = db_error(&err).unwrap_or_else(|| panic!("{test}: {err}"));
    (code, message)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_is_refused_naming_the_data_source() {
    let _sandbox = sandbox::shared().await;
    let test = "a_certificate_from_another_ca_is_refused_naming_the_data_source";
    let cfg = test_config();
    if !sandbox_ready(&cfg, test) {
        return;
    }
    // The servers' own certificate is no CA of theirs: nothing chains to it.
    let wrong: PathBuf = sandbox_tls(&cfg).await.server_cert;
    let (code, message) = first_error(with_tls(cfg, SslMode::VerifyCa, Some(wrong)), test).await;
    assert_eq!(code, 1429, "{message}");
    assert!(message.contains("TLS to data source ds0"), "{message}");
    assert!(message.contains("UnknownIssuer"), "{message}");
}

/// A server that greets without CLIENT_SSL, then holds the connection.
async fn server_without_tls() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = socket.write_all(&greeting_without_tls()).await;
                tokio::time::sleep(Duration::from_secs(10)).await;
            });
        }
    });
    port
}

/// A MariaDB 10.11 greeting (sequence 0) whose capabilities lack CLIENT_SSL.
fn greeting_without_tls() -> Vec<u8> {
    use mysql_common::constants::{CapabilityFlags, StatusFlags};
    use mysql_common::packets::HandshakePacket;
    use mysql_common::proto::MySerialize;
    let caps = CapabilityFlags::CLIENT_PROTOCOL_41
        | CapabilityFlags::CLIENT_SECURE_CONNECTION
        | CapabilityFlags::CLIENT_PLUGIN_AUTH
        | CapabilityFlags::CLIENT_CONNECT_WITH_DB;
    let packet = HandshakePacket::new(
        10,
        &b"5.5.5-10.11.0-MariaDB"[..],
        1,
        *b"abcdefgh",
        Some(&b"ijklmnopqrst"[..]),
        caps,
        45,
        StatusFlags::SERVER_STATUS_AUTOCOMMIT,
        Some(&b"mysql_native_password"[..]),
    );
    let mut payload = Vec::new();
    packet.serialize(&mut payload);
    let len = u32::try_from(payload.len())
        .expect("a small packet")
        .to_le_bytes();
    let mut framed = vec![len[0], len[1], len[2], 0];
    framed.extend_from_slice(&payload);
    framed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_tls_is_refused_when_tls_is_required() {
    let _sandbox = sandbox::shared().await;
    let test = "a_server_without_tls_is_refused_when_tls_is_required";
    let mut cfg = test_config();
    if !sandbox_ready(&cfg, test) {
        return;
    }
    // ds0 is a server that offers no TLS, and has no replicas to read.
    let port = server_without_tls().await;
    let ds0 = cfg.data_sources.get_mut("ds0").expect("ds0");
    ds0.url.port = port;
    ds0.replicas.clear();
    let (code, message) = first_error(with_tls(cfg, SslMode::Required, None), test).await;
    assert_eq!(code, 1429, "{message}");
    assert!(message.contains("TLS to data source ds0"), "{message}");
    assert!(message.contains("does not offer TLS"), "{message}");
    assert!(message.contains("ssl-mode=REQUIRED"), "{message}");
}
