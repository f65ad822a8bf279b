//! Small fixtures for tests that need their own sharded table and the admin
//! API: a config with a table sharded by `id` over ds0..ds3, the table
//! created (and dropped) through the proxy, admin API requests and the
//! pools as the admin API shows them.

use sqlx::mysql::MySqlConnection;
use sqlx::Executor;

use crate::{start_proxy, Config, RunningProxy, SEED_CONFIG};

/// A `[tables.<table>]` section: sharded by `id` over ds0..ds3, two
/// physical tables each (`<physical>_0`, `<physical>_1`; data source = id %
/// 4, table = id / 4 % 2).
pub fn table_section(table: &str, physical: &str) -> String {
    format!(
        "\n[tables.{table}]\nnodes = \"ds${{0..3}}.{physical}_${{0..1}}\"\n\
         database = {{ column = \"id\", algorithm = \"mod\", count = 4 }}\n\
         table = {{ column = \"id\", expression = \"{physical}_${{(id / 4) % 2}}\" }}\n"
    )
}

/// The seed config plus a table `name` sharded by `id` over ds0..ds3
/// ([`table_section`]), listening on ephemeral loopback ports, with every
/// pool adjusted by `pool`.
pub fn config_with_table(
    name: &str,
    pool: impl Fn(&mut shardgate_rules::config::PoolConfig),
) -> Config {
    let text = format!("{SEED_CONFIG}{}", table_section(name, name));
    let mut cfg = Config::from_toml_str(&text).expect("test config loads");
    cfg.server.mysql_listen = "127.0.0.1:0".into();
    cfg.server.admin_listen = "127.0.0.1:0".into();
    cfg.server.read_write_splitting = false;
    for ds in cfg.data_sources.values_mut() {
        pool(&mut ds.pool);
    }
    cfg
}

/// Starts the proxy and (re)creates table `name` (`id BIGINT PRIMARY KEY,
/// v INT`) with rows id = v = 0..40.
pub async fn start_with_table(cfg: Config, name: &str) -> RunningProxy {
    let proxy = start_proxy(cfg).await;
    let mut conn = connect(&proxy).await;
    for sql in [
        format!("DROP TABLE IF EXISTS {name}"),
        format!("CREATE TABLE {name} (id BIGINT PRIMARY KEY, v INT)"),
        format!(
            "INSERT INTO {name} VALUES {}",
            (0..40)
                .map(|i| format!("({i}, {i})"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    ] {
        conn.execute(sql.as_str()).await.expect(&sql);
    }
    proxy
}

pub async fn drop_table(proxy: &RunningProxy, name: &str) {
    let mut conn = connect(proxy).await;
    let _ = conn
        .execute(format!("DROP TABLE IF EXISTS {name}").as_str())
        .await;
}

/// A sqlx connection to the proxy.
pub async fn connect(proxy: &RunningProxy) -> MySqlConnection {
    proxy.endpoint().connect().await.expect("connect to proxy")
}

/// The `/api/pools` entry of pool `name`.
pub async fn pool(proxy: &RunningProxy, name: &str) -> serde_json::Value {
    let (status, body) = admin_request(proxy, "GET", "/api/pools", "").await;
    assert_eq!(status, 200, "{body}");
    let pools: serde_json::Value = serde_json::from_str(&body).expect("json");
    pools["pools"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == name).cloned())
        .unwrap_or_else(|| panic!("no pool {name} in {body}"))
}

/// One request to the proxy's admin API (a JSON body, if any): (status,
/// body).
pub async fn admin_request(
    proxy: &RunningProxy,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, String) {
    let headers: &[(&str, &str)] = if body.is_empty() {
        &[]
    } else {
        &[("Content-Type", "application/json")]
    };
    let body = (!body.is_empty()).then_some(body.as_bytes());
    let response = crate::http::request(proxy.admin_addr, method, path, headers, body)
        .await
        .unwrap_or_else(|e| panic!("admin API: {e}"));
    (response.status, response.text())
}
