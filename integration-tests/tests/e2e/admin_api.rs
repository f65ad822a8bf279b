//! The admin HTTP API seen from a client: pools and resizing, the redacted
//! rules, route previews, Prometheus metrics, the bearer token, JSON errors
//! for bad input and over-long requests, stalled request heads and bodies,
//! and `docs/admin-api.yaml` checked against the running API by
//! schemathesis.
//!
//! Only the metrics test (it runs a statement through the proxy) and
//! schemathesis (`/ready` answers 503 while no data source answers) need
//! the sandbox; the others hold without it, the pools then failing their
//! health checks.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use shardgate_integration_tests::http::{self, encode, HttpResponse};
use shardgate_integration_tests::{
    crate_dir, sandbox, sandbox_ready, say, skip, start_proxy, test_config, which, Config,
};
use shardgate_proxy::StartError;
use shardgate_rules::config::Credential;

const TOKEN: &str = "it-admin-token-7f3a";
const USER_PASSWORD: &str = "it-user-password-91c2";

/// The seed topology with an admin token and a client password, so that
/// the tests can see both asked for and both redacted.
fn admin_config() -> Config {
    let mut cfg = test_config();
    cfg.server.admin_token = Some(TOKEN.into());
    let user = cfg
        .server
        .users
        .first_mut()
        .expect("the test config has a user");
    user.credential = Credential::Password(USER_PASSWORD.into());
    cfg
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

async fn post_resize(
    admin: std::net::SocketAddr,
    pool: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: &str,
) -> HttpResponse {
    let auth = token.map(bearer);
    let mut headers = Vec::new();
    if let Some(auth) = &auth {
        headers.push(("Authorization", auth.as_str()));
    }
    if let Some(content_type) = content_type {
        headers.push(("Content-Type", content_type));
    }
    http::request(
        admin,
        "POST",
        &format!("/api/pools/{pool}/resize"),
        &headers,
        Some(body.as_bytes()),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

/// The pool named `name` in an answer of `GET /api/pools`.
fn pool<'a>(pools: &'a Value, name: &str) -> &'a Value {
    pools["pools"]
        .as_array()
        .expect("pools is an array")
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no pool {name} in {pools}"))
}

#[tokio::test]
async fn pools_list_every_primary_and_replica() {
    let _sandbox = sandbox::shared().await;
    let cfg = admin_config();
    let proxy = start_proxy(cfg.clone()).await;
    let pools = http::get(proxy.admin_addr, "/api/pools")
        .await
        .expect_json(200, "GET /api/pools (reading is open on loopback)");

    let mut expected = BTreeSet::new();
    for (name, ds) in &cfg.data_sources {
        expected.insert(name.clone());
        let primary = pool(&pools, name);
        assert_eq!(primary["role"], "primary", "{primary}");
        assert_eq!(primary["data_source"], name.as_str());
        assert_eq!(
            primary["address"],
            format!("{}:{}", ds.url.host, ds.url.port)
        );
        assert!(!ds.replicas.is_empty(), "the seed has replicas");
        for (i, url) in ds.replicas.iter().enumerate() {
            let replica_name = format!("{name}.replica{}", i + 1);
            let replica = pool(&pools, &replica_name);
            assert_eq!(replica["role"], "replica", "{replica}");
            assert_eq!(replica["data_source"], name.as_str());
            assert_eq!(replica["address"], format!("{}:{}", url.host, url.port));
            expected.insert(replica_name);
        }
    }
    let listed: BTreeSet<String> = pools["pools"]
        .as_array()
        .expect("pools is an array")
        .iter()
        .map(|p| p["name"].as_str().expect("a pool has a name").to_string())
        .collect();
    assert_eq!(listed, expected);
    for name in ["ds0", "ds1", "ds2", "ds3", "ds0.replica1", "ds3.replica2"] {
        assert!(listed.contains(name), "{name} is listed: {listed:?}");
    }

    // Every figure the requirements name is there, with its type.
    let ds0 = pool(&pools, "ds0");
    for field in [
        "max", "size", "active", "idle", "waiting", "peak", "errors", "timeouts",
    ] {
        assert!(ds0[field].is_u64(), "{field} in {ds0}");
    }
    assert!(ds0["acquire_ms"]["p50"].is_number(), "{ds0}");
    assert!(ds0["acquire_ms"]["p99"].is_number(), "{ds0}");
    let health = &ds0["last_health_check"];
    assert!(
        health.is_null() || (health["ok"].is_boolean() && health["at_ms"].is_u64()),
        "{health}"
    );
    proxy_stays_up(&proxy).await;
}

#[tokio::test]
async fn resize_changes_max_and_refuses_bad_requests() {
    let _sandbox = sandbox::shared().await;
    let proxy = start_proxy(admin_config()).await;
    let admin = proxy.admin_addr;
    let json = Some("application/json");

    let resized = post_resize(admin, "ds1.replica2", Some(TOKEN), json, r#"{"size": 7}"#)
        .await
        .expect_json(200, "resize with the token");
    assert_eq!(resized["name"], "ds1.replica2");
    assert_eq!(resized["to"], 7);
    assert_eq!(resized["pool"]["max"], 7);
    assert!(resized["from"].is_u64(), "{resized}");
    let pools = http::get(admin, "/api/pools")
        .await
        .expect_json(200, "GET /api/pools");
    assert_eq!(pool(&pools, "ds1.replica2")["max"], 7, "the new size shows");
    let ds1_max = pool(&pools, "ds1")["max"].clone();
    assert_ne!(ds1_max, 7, "other pools keep their size");

    let cases: [(&str, Option<&str>, &str, u16); 8] = [
        ("ds1", json, r#"{"size": 0}"#, 422),
        ("ds1", json, r#"{"size": 1001}"#, 422),
        ("ds1", json, r#"{"size": -3}"#, 422),
        ("ds1", json, r#"{"size": "ten"}"#, 422),
        ("ds1", json, r#"{"size": 5, "extra": 1}"#, 422),
        ("ds1", json, r#"{"size": "#, 400),
        ("ds1", None, r#"{"size": 5}"#, 415),
        ("no_such_pool", json, r#"{"size": 5}"#, 404),
    ];
    for (name, content_type, body, status) in cases {
        let what = format!("resize {name} with {body} ({content_type:?})");
        let answer = post_resize(admin, name, Some(TOKEN), content_type, body).await;
        let error = answer.expect_json(status, &what);
        assert!(error["error"].is_string(), "{what}: {error}");
    }
    // A path that does not decode is the client's error too, in JSON.
    let bad_path = post_resize(admin, "%FF", Some(TOKEN), json, r#"{"size": 5}"#).await;
    bad_path.expect_json(400, "resize a pool named by invalid UTF-8");

    let pools = http::get(admin, "/api/pools")
        .await
        .expect_json(200, "GET /api/pools");
    assert_eq!(
        pool(&pools, "ds1")["max"],
        ds1_max,
        "no refused request changed the pool"
    );
    proxy_stays_up(&proxy).await;
}

#[tokio::test]
async fn mutating_needs_the_token_on_loopback() {
    let _sandbox = sandbox::shared().await;
    let proxy = start_proxy(admin_config()).await;
    let admin = proxy.admin_addr;
    let json = Some("application/json");
    let body = r#"{"size": 9}"#;

    for (token, what) in [(None, "without a token"), (Some("wrong"), "a wrong token")] {
        let answer = post_resize(admin, "ds2", token, json, body).await;
        let error = answer.expect_json(401, &format!("resize with {what}"));
        assert!(error["error"].is_string(), "{error}");
        assert_eq!(answer.header("www-authenticate"), Some("Bearer"));
    }
    let pools = http::get(admin, "/api/pools")
        .await
        .expect_json(200, "GET /api/pools");
    assert_ne!(
        pool(&pools, "ds2")["max"],
        9,
        "refused resizes changed nothing"
    );

    post_resize(admin, "ds2", Some(TOKEN), json, body)
        .await
        .expect_json(200, "resize with the token");
    // The scheme's name is case-insensitive.
    let auth = format!("bearer {TOKEN}");
    let lower = http::request(
        admin,
        "POST",
        "/api/pools/ds2/resize",
        &[
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
        ],
        Some(br#"{"size": 10}"#),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    lower.expect_json(200, "resize with `bearer` in lower case");
}

#[tokio::test]
async fn rules_redact_secrets_and_show_tables() {
    let _sandbox = sandbox::shared().await;
    let cfg = admin_config();
    let proxy = start_proxy(cfg.clone()).await;
    let answer = http::get(proxy.admin_addr, "/api/rules").await;
    let rules = answer.expect_json(200, "GET /api/rules");
    let text = answer.text();
    assert!(!text.contains(TOKEN), "the admin token leaked: {text}");
    assert!(
        !text.contains(USER_PASSWORD),
        "a user's password leaked: {text}"
    );
    assert_eq!(rules["server"]["admin_token"], "***");
    assert_eq!(rules["server"]["users"][0]["name"], "root");
    assert_eq!(rules["server"]["users"][0]["password"], "***");
    assert_eq!(rules["server"]["database"], cfg.server.database.as_str());

    let tables = rules["tables"].as_object().expect("tables is an object");
    let names: BTreeSet<&str> = tables.keys().map(String::as_str).collect();
    let expected: BTreeSet<&str> = cfg.tables.keys().map(String::as_str).collect();
    assert_eq!(names, expected);
    let users = &tables["users"];
    assert_eq!(users["nodes"], cfg.tables["users"].nodes.as_str());
    assert_eq!(users["database"]["column"], "user_id");
    assert_eq!(users["database"]["algorithm"]["type"], "mod");
    assert_eq!(users["database"]["algorithm"]["count"], 4);
    assert_eq!(users["key"]["generator"], "snowflake");
    let broadcast = rules["broadcast"]["tables"]
        .as_array()
        .expect("broadcast tables");
    assert_eq!(broadcast.len(), cfg.broadcast.tables.len());
    let sources = rules["data_sources"]
        .as_object()
        .expect("data_sources is an object");
    assert_eq!(sources.len(), cfg.data_sources.len());
    assert!(sources["ds0"]["url"]
        .as_str()
        .is_some_and(|u| u.contains("13306")));
}

#[tokio::test]
async fn route_previews_nodes_sql_and_merge() {
    let _sandbox = sandbox::shared().await;
    let proxy = start_proxy(admin_config()).await;
    let admin = proxy.admin_addr;
    let route = |sql: &str| format!("/api/route?sql={}", encode(sql));

    // user_id 5: data source 5 % 4 = 1, table (5 / 4) % 16 = 1.
    let one = http::get(admin, &route("SELECT * FROM users WHERE user_id = 5"))
        .await
        .expect_json(200, "preview of a point query");
    let preview = &one["preview"];
    assert_eq!(preview["route"], "single", "{one}");
    assert_eq!(preview["tables"], serde_json::json!(["users"]));
    let nodes = preview["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 1, "{one}");
    assert_eq!(nodes[0]["data_source"], "ds1");
    let sql = nodes[0]["sql"].as_str().expect("the node's SQL");
    assert!(sql.contains("`users_1`"), "{sql}");
    assert!(preview.get("merge").is_none(), "{one}");

    let scatter = http::get(
        admin,
        &route("SELECT user_id FROM users ORDER BY user_id DESC LIMIT 10"),
    )
    .await
    .expect_json(200, "preview of a scatter ORDER BY ... LIMIT");
    let preview = &scatter["preview"];
    assert_eq!(preview["route"], "merge", "{scatter}");
    let sources: Vec<&str> = preview["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| n["data_source"].as_str().expect("data_source"))
        .collect();
    assert_eq!(sources, ["ds0", "ds1", "ds2", "ds3"], "{scatter}");
    let merge = &preview["merge"];
    assert_eq!(merge["order_by_keys"], 1, "{merge}");
    assert_eq!(merge["limit"], 10, "{merge}");
    assert_eq!(merge["offset"], 0, "{merge}");

    // A table no rule names goes unchanged to the default data source.
    let plain = http::get(admin, &route("SELECT * FROM it_unsharded"))
        .await
        .expect_json(200, "preview of an unsharded statement");
    assert_eq!(plain["preview"]["route"], "unsharded");
    assert_eq!(plain["preview"]["nodes"][0]["data_source"], "ds0");

    for (target, what) in [
        ("/api/route".to_string(), "no sql"),
        (route("   "), "blank sql"),
        ("/api/route?sql=a&sql=b".to_string(), "sql twice"),
    ] {
        let error = http::get(admin, &target).await.expect_json(400, what);
        assert!(error["error"].is_string(), "{what}: {error}");
    }
}

#[tokio::test]
async fn metrics_count_statements_run_through_the_proxy() {
    let _sandbox = sandbox::shared().await;
    let cfg = admin_config();
    if !sandbox_ready(&cfg, "metrics_count_statements_run_through_the_proxy") {
        return;
    }
    let proxy = start_proxy(cfg).await;
    let mut conn = proxy
        .endpoint()
        .connect()
        .await
        .expect("connect through shardgate");
    sqlx::raw_sql("SELECT 1")
        .execute(&mut conn)
        .await
        .expect("SELECT 1 through shardgate");

    let metrics = http::get(proxy.admin_addr, "/metrics").await;
    assert_eq!(metrics.status, 200, "{}", metrics.text());
    let content_type = metrics.header("content-type").unwrap_or("");
    assert!(
        content_type.starts_with("text/plain") && content_type.contains("version=0.0.4"),
        "{content_type}"
    );
    let text = metrics.text();
    assert!(
        text.contains("# TYPE shardgate_statements_total counter"),
        "{text}"
    );
    let selects: f64 = text
        .lines()
        .filter(|l| l.starts_with("shardgate_statements_total{"))
        .filter(|l| l.contains(r#"kind="select""#) && l.contains(r#"outcome="ok""#))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(selects >= 1.0, "the SELECT is counted:\n{text}");
    assert!(text.contains("shardgate_pool_"), "pool gauges:\n{text}");
}

#[tokio::test]
async fn beyond_loopback_the_token_is_required() {
    let _sandbox = sandbox::shared().await;
    // Without a token the proxy refuses to start rather than expose the API.
    let mut open = test_config();
    open.server.admin_listen = "0.0.0.0:0".into();
    open.server.admin_token = None;
    match shardgate_proxy::start(open).await {
        Err(StartError::AdminTokenRequired(addr)) => {
            assert!(addr.ip().is_unspecified(), "{addr}");
            let message = StartError::AdminTokenRequired(addr).to_string();
            assert!(message.contains("server.admin_token"), "{message}");
        }
        Err(other) => panic!("expected AdminTokenRequired, got: {other}"),
        Ok(_) => panic!("the proxy started with an open admin API beyond loopback"),
    }

    let mut guarded = admin_config();
    guarded.server.admin_listen = "0.0.0.0:0".into();
    let proxy = start_proxy(guarded).await;
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], proxy.admin_addr.port()));
    for target in ["/api/pools", "/api/rules", "/metrics", "/"] {
        let answer = http::get(admin, target).await;
        answer.expect_json(401, &format!("GET {target} without the token"));
        assert_eq!(answer.header("www-authenticate"), Some("Bearer"));
    }
    let auth = bearer(TOKEN);
    let pools = http::request(
        admin,
        "GET",
        "/api/pools",
        &[("Authorization", auth.as_str())],
        None,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    pools.expect_json(200, "GET /api/pools with the token");
    // Orchestrators' probes carry no token.
    let health = http::get(admin, "/health").await;
    assert_eq!((health.status, health.text().as_str()), (200, "ok\n"));
    let ready = http::get(admin, "/ready").await;
    assert!(matches!(ready.status, 200 | 503), "{}", ready.text());
    assert!(ready.json()["ready"].is_boolean());
}

#[tokio::test]
async fn unknown_paths_and_methods_answer_json() {
    let _sandbox = sandbox::shared().await;
    let proxy = start_proxy(admin_config()).await;
    let admin = proxy.admin_addr;
    http::get(admin, "/api/nothing-here")
        .await
        .expect_json(404, "an unknown path");
    let answer = http::request(admin, "DELETE", "/api/pools", &[], None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    answer.expect_json(405, "DELETE /api/pools");
    assert!(
        answer.header("allow").is_some_and(|a| a.contains("GET")),
        "{:?}",
        answer.headers
    );
}

/// Issue 15's table: a 1 MiB statement in `/api/route?sql=` got hyper's 431
/// with an empty body. An over-long request line is a JSON 414, over-large
/// headers a JSON 431, and the listener goes on serving.
#[tokio::test]
async fn over_long_requests_answer_json_414_and_431() {
    let _sandbox = sandbox::shared().await;
    let proxy = start_proxy(admin_config()).await;
    let admin = proxy.admin_addr;
    let statement = format!("SELECT '{}'", "x".repeat(1 << 20));
    let long = http::request(
        admin,
        "GET",
        &format!("/api/route?sql={}", encode(&statement)),
        &[],
        None,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let error = long.expect_json(414, "GET /api/route with 1 MiB of SQL");
    assert!(error["error"].is_string(), "{error}");

    let filler = "f".repeat(2048);
    let headers: Vec<(String, &str)> = (0..50)
        .map(|i| (format!("X-Filler-{i}"), filler.as_str()))
        .collect();
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), *v)).collect();
    let large = http::request(admin, "GET", "/api/pools", &headers, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let error = large.expect_json(431, "GET /api/pools with 100 KiB of headers");
    assert!(error["error"].is_string(), "{error}");

    http::get(admin, &format!("/api/route?sql={}", encode("SELECT 1")))
        .await
        .expect_json(200, "a route preview after the refusals");
}

/// A client that sends half a request line and stalls (slowloris) is
/// disconnected once the 10 s it has to send its head are over.
#[tokio::test]
async fn a_stalled_request_head_is_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _sandbox = sandbox::shared().await;
    let proxy = start_proxy(admin_config()).await;
    let mut stream = tokio::net::TcpStream::connect(proxy.admin_addr)
        .await
        .expect("connect to the admin listener");
    stream.write_all(b"GET /api/po").await.expect("write");
    let start = std::time::Instant::now();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut rest))
        .await
        .expect("disconnected within 20 s");
    let waited = start.elapsed();
    assert!(
        read.is_err() || rest.is_empty(),
        "no answer to half a head: {:?}",
        String::from_utf8_lossy(&rest)
    );
    assert!(
        waited >= Duration::from_secs(9),
        "disconnected after {waited:?}, before the head's 10 s were over"
    );
    proxy_stays_up(&proxy).await;
}

/// A client that sends the head of a POST (or PUT) announcing
/// `Content-Length: 1000` and 10 bytes of the body, then stalls, held its
/// connection and the handler's task for ever. Now it gets a JSON 408 once
/// the body's 10 s are over, and the connection is closed: on the cutover
/// API's routes, which read a body, and on `/api/reload`, which takes none.
#[tokio::test]
async fn a_stalled_request_body_gets_a_json_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _sandbox = sandbox::shared().await;
    let proxy = start_proxy(admin_config()).await;
    let auth = bearer(TOKEN);
    let mut stalled = Vec::new();
    for (method, target) in [
        ("POST", "/api/pauses"),
        ("POST", "/api/rules/activate"),
        ("PUT", "/api/rules/staged"),
        ("POST", "/api/reload"),
    ] {
        let request = format!(
            "{method} {target} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n\
             Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"tables\":"
        );
        let admin = proxy.admin_addr;
        // All at once: the test waits for one deadline, not four.
        stalled.push(tokio::spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(admin)
                .await
                .expect("connect to the admin listener");
            stream.write_all(request.as_bytes()).await.expect("write");
            let mut raw = Vec::new();
            // The body's 10 s and a margin; the end of the connection
            // included.
            tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw))
                .await
                .unwrap_or_else(|_| panic!("{method} {target}: no answer to a stalled body"))
                .expect("read");
            let answer = http::parse(&raw).unwrap_or_else(|e| panic!("{method} {target}: {e}"));
            let what = format!("{method} {target} with a stalled body");
            let error = answer.expect_json(408, &what);
            assert!(error["error"].is_string(), "{what}: {error}");
            assert_eq!(answer.header("connection"), Some("close"), "{what}");
        }));
    }
    for request in stalled {
        request.await.expect("the stalled request's check");
    }
    proxy_stays_up(&proxy).await;
}

/// The bodies the proxy and the migrator exchange during a cutover are the
/// shared types of `shardgate-admin-api`; each has exactly the fields its
/// schema in the OpenAPI document lists, all required ones among them.
#[test]
fn openapi_schemas_match_the_shared_cutover_bodies() {
    use shardgate_admin_api::{
        ActivateRequest, Activated, Discarded, Pause, PauseRequest, ResumeRequest, Scope, Staged,
    };
    let file = std::fs::read_to_string(openapi_path()).expect("docs/admin-api.yaml");
    let doc: serde_yaml::Value = serde_yaml::from_str(&file).expect("the OpenAPI file is YAML");
    let request = |path: &str, method: &str| {
        doc["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"].clone()
    };
    let reply = |path: &str, method: &str| {
        doc["paths"][path][method]["responses"]["200"]["content"]["application/json"]["schema"]
            .clone()
    };
    let pause = Pause {
        table: "users".into(),
        scope: Scope::Writes,
        since_unix_ms: 1,
        max_queue_ms: 1,
        lease_remaining_ms: 1,
        queued: 0,
        in_flight_transactions: 0,
        refused: 0,
    };
    let bodies: Vec<(&str, serde_yaml::Value, Value)> = vec![
        (
            "Pause",
            doc["components"]["schemas"]["Pause"].clone(),
            serde_json::to_value(&pause).unwrap(),
        ),
        (
            "PauseRequest",
            request("/api/pauses", "post"),
            serde_json::to_value(PauseRequest {
                tables: vec!["users".into()],
                scope: Scope::All,
                max_queue_ms: 1,
                lease_ms: 1,
            })
            .unwrap(),
        ),
        (
            "ResumeRequest",
            request("/api/pauses/resume", "post"),
            serde_json::to_value(ResumeRequest { tables: vec![] }).unwrap(),
        ),
        (
            "ActivateRequest",
            request("/api/rules/activate", "post"),
            serde_json::to_value(ActivateRequest { version: 2 }).unwrap(),
        ),
        (
            "Staged",
            reply("/api/rules/staged", "put"),
            serde_json::to_value(Staged {
                staged_version: 2,
                changes: vec![],
            })
            .unwrap(),
        ),
        (
            "Discarded",
            reply("/api/rules/staged", "delete"),
            serde_json::to_value(Discarded {
                discarded_version: Some(2),
            })
            .unwrap(),
        ),
        (
            "Activated",
            reply("/api/rules/activate", "post"),
            serde_json::to_value(Activated {
                active_version: 2,
                sessions_on_older_versions: 0,
                previous_config_file: Some("wework.toml.v1".into()),
            })
            .unwrap(),
        ),
    ];
    for (name, schema, body) in bodies {
        let properties: BTreeSet<String> = schema["properties"]
            .as_mapping()
            .unwrap_or_else(|| panic!("{name}: no properties in its schema {schema:?}"))
            .keys()
            .filter_map(|k| k.as_str().map(str::to_string))
            .collect();
        let fields: BTreeSet<String> = body.as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            fields, properties,
            "{name}: the type's fields vs its schema's"
        );
        let required: BTreeSet<String> = schema["required"]
            .as_sequence()
            .map(|r| {
                r.iter()
                    .filter_map(|k| k.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        assert!(
            required.is_subset(&fields),
            "{name}: required {required:?} not all fields"
        );
    }
}

/// Every route the admin listener serves is described, and the listener
/// serves the file that is in the repository.
#[tokio::test]
async fn openapi_describes_every_endpoint() {
    let _sandbox = sandbox::shared().await;
    let file = std::fs::read_to_string(openapi_path()).expect("docs/admin-api.yaml");
    let doc: serde_yaml::Value = serde_yaml::from_str(&file).expect("the OpenAPI file is YAML");
    let paths = doc["paths"].as_mapping().expect("paths");
    let described = |path: &str, method: &str| {
        paths
            .get(path)
            .and_then(|p| p.get(method))
            .is_some_and(|op| op["responses"].is_mapping())
    };
    for (path, method) in [
        ("/", "get"),
        ("/health", "get"),
        ("/ready", "get"),
        ("/metrics", "get"),
        ("/openapi.yaml", "get"),
        ("/api/pools", "get"),
        ("/api/pools/{name}/resize", "post"),
        ("/api/rules", "get"),
        ("/api/route", "get"),
        ("/api/reload", "post"),
        ("/api/alerts", "get"),
        ("/api/stats", "get"),
        ("/api/pauses", "get"),
        ("/api/pauses", "post"),
        ("/api/pauses/resume", "post"),
        ("/api/rules/staged", "put"),
        ("/api/rules/staged", "delete"),
        ("/api/rules/activate", "post"),
        ("/api/sessions", "get"),
    ] {
        assert!(described(path, method), "{method} {path} is not described");
    }

    let proxy = start_proxy(admin_config()).await;
    let served = http::get(proxy.admin_addr, "/openapi.yaml").await;
    assert_eq!(served.status, 200);
    assert_eq!(
        served.text(),
        file,
        "/openapi.yaml serves docs/admin-api.yaml"
    );
}

fn repo_dir() -> PathBuf {
    crate_dir()
        .parent()
        .expect("integration-tests/ sits in the repository")
        .to_path_buf()
}

fn openapi_path() -> PathBuf {
    repo_dir().join("docs").join("admin-api.yaml")
}

/// The schemathesis CLI: `SHARDGATE_IT_SCHEMATHESIS`, else the repository's
/// `.venv` (where scripts/install-deps.sh puts it), else `PATH`.
fn schemathesis() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("SHARDGATE_IT_SCHEMATHESIS") {
        if !path.is_empty() {
            return Some(PathBuf::from(path));
        }
    }
    let venv = repo_dir().join(".venv").join("bin").join("schemathesis");
    if venv.is_file() {
        return Some(venv);
    }
    which("schemathesis")
}

/// schemathesis generates requests from docs/admin-api.yaml (as the proxy
/// serves it) and checks every answer: no 5xx, a documented status and
/// content type, a body and headers matching the schema, invalid input
/// refused and valid input accepted.
#[tokio::test]
async fn schemathesis_finds_no_problem() {
    let _sandbox = sandbox::shared().await;
    if !sandbox_ready(&admin_config(), "schemathesis_finds_no_problem") {
        return;
    }
    let Some(cli) = schemathesis() else {
        let reason = "schemathesis is missing (scripts/install-deps.sh installs it in .venv)";
        skip("schemathesis_finds_no_problem", reason);
        return;
    };
    // From a file, so that POST /api/reload has something to re-read.
    let text = shardgate_integration_tests::seed_config_with_secrets(TOKEN, USER_PASSWORD);
    let path = shardgate_integration_tests::write_config_file("schemathesis", &text);
    let proxy = shardgate_integration_tests::start_proxy_from_file(&path).await;
    let base = format!("http://{}", proxy.admin_addr);
    // Its own state (.hypothesis, .schemathesis) goes under target/, not
    // into the repository.
    let workdir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("schemathesis");
    std::fs::create_dir_all(&workdir).expect("a working folder for schemathesis");
    let auth = format!("Authorization: {}", bearer(TOKEN));
    let seed = std::env::var("SHARDGATE_IT_SCHEMATHESIS_SEED").unwrap_or_else(|_| "20261".into());
    let mut cmd = tokio::process::Command::new(&cli);
    cmd.current_dir(&workdir)
        .arg("--config-file")
        .arg(crate_dir().join("schemathesis.toml"))
        .arg("run")
        .arg(format!("{base}/openapi.yaml"))
        .args(["--url", &base])
        .args(["--header", &auth])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_headers_conformance,response_schema_conformance,\
             negative_data_rejection,positive_data_acceptance,ignored_auth,\
             unsupported_method",
        ])
        .args(["--max-examples", "50", "--seed", &seed])
        .args(["--request-timeout", "10", "--no-color"])
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let limit = Duration::from_secs(240);
    let out = match tokio::time::timeout(limit, cmd.output()).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => panic!("cannot run {}: {e}", cli.display()),
        Err(_) => panic!("schemathesis did not finish within {limit:?}"),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "schemathesis found problems ({}; seed {seed}):\n{stdout}\n{stderr}",
        out.status
    );
    let summary = stdout
        .lines()
        .rev()
        .find(|l| l.contains("generated"))
        .unwrap_or("");
    say(&format!("schemathesis: {}", summary.trim()));
}

/// The admin listener still answers (no request above took it down).
async fn proxy_stays_up(proxy: &shardgate_integration_tests::RunningProxy) {
    let health = http::get(proxy.admin_addr, "/health").await;
    assert_eq!(health.status, 200);
}
