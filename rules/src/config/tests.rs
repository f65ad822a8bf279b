//! Loading the example file, defaults, and one test per validation message.

use super::*;

const EXAMPLE: &str = include_str!("../../../examples/wework.toml");

const MINIMAL: &str = r#"
[server]
database = "wework"
[[server.users]]
name = "root"
[data_sources.ds0]
url = "mysql://root@127.0.0.1:13306/ds0"
[data_sources.ds1]
url = "mysql://root@127.0.0.1:13307/ds1"
"#;

fn error_of(extra: &str) -> String {
    match Config::from_toml_str(&format!("{MINIMAL}{extra}")) {
        Ok(_) => panic!("expected an error for:\n{extra}"),
        Err(error) => error.to_string(),
    }
}

/// The README's worked expansion: users over eight primaries, the rest as
/// in the example file.
#[test]
fn the_expansion_target_loads_and_moves_users_only() {
    let target =
        Config::from_toml_str(include_str!("../../../examples/wework-8-primaries.toml")).unwrap();
    let example = Config::from_toml_str(EXAMPLE).unwrap();
    assert_eq!(target.data_sources.len(), 8);
    assert_eq!(target.data_sources["ds7"].url.port, 13313);
    assert_eq!(target.data_sources["ds7"].replicas.len(), 2);
    assert_ne!(target.tables["users"], example.tables["users"]);
    for (name, table) in &example.tables {
        if name != "users" {
            assert_eq!(&target.tables[name], table, "{name}");
        }
    }
    let rules = crate::ShardingRules::new(&target).unwrap();
    assert_eq!(rules.nodes("users").len(), 128);
}

#[test]
fn the_example_file_loads() {
    let config = Config::from_toml_str(EXAMPLE).unwrap();
    assert_eq!(config.server.database, "wework");
    assert_eq!(config.data_sources.len(), 4);
    assert_eq!(config.data_sources["ds2"].replicas.len(), 2);
    assert_eq!(config.data_sources["ds3"].url.port, 13309);
    assert_eq!(
        config.tables["users"].key.as_ref().map(|key| key.generator),
        Some(KeyGenerator::Snowflake)
    );
    let month = config.tables["message_records"]
        .table
        .as_ref()
        .map(|strategy| &strategy.algorithm);
    assert_eq!(month, Some(&AlgorithmConfig::Month));
    assert_eq!(
        config.broadcast.tables,
        ["sys_configs", "sys_dictionaries", "sys_permissions"]
    );
}

#[test]
fn defaults_fill_what_is_left_out() {
    let config = Config::from_toml_str(MINIMAL).unwrap();
    assert_eq!(config.server.mysql_listen, "127.0.0.1:3307");
    assert_eq!(config.server.admin_listen, "127.0.0.1:9797");
    assert_eq!(config.server.default_data_source, "ds0");
    assert_eq!(config.server.max_allowed_packet, 64 * 1024 * 1024);
    assert_eq!(config.server.users[0].password, "");
    assert_eq!(
        config.data_sources["ds0"].pool,
        PoolConfig {
            max_size: 20,
            min_idle: None,
            acquire_timeout_ms: 5_000,
            adaptive: true,
            min_size: 10,
            max_bound: 100,
            resize_interval_ms: 300_000,
            validate_idle_ms: 30_000,
            validation_timeout_ms: 5_000,
            health_check_interval_ms: 2_000,
            connect_timeout_ms: 5_000,
            query_timeout_ms: 0,
        }
    );
    assert_eq!(config.data_sources["ds0"].pool.min_idle(), 5);
    assert_eq!(config.alerts, AlertConfig::default());
    assert!(config.data_sources["ds0"].replicas.is_empty());
    assert_eq!(config.snowflake, SnowflakeConfig::default());
    assert_eq!(config.snowflake.epoch.unix_millis(), 1_704_067_200_000);
}

#[test]
fn snowflake_section_is_read() {
    let extra = "[snowflake]\nepoch = \"2020-01-01T00:00:00Z\"\nworker_id = 1023\nmax_clock_backward_ms = 3\n";
    let config = Config::from_toml_str(&format!("{MINIMAL}{extra}")).unwrap();
    assert_eq!(config.snowflake.epoch.unix_millis(), 1_577_836_800_000);
    assert_eq!(config.snowflake.worker_id.get(), 1023);
    assert_eq!(config.snowflake.max_clock_backward_ms, 3);
}

/// MINIMAL with a second user, `app`, whose fields are `fields`.
fn with_user(fields: &str) -> Result<Config, String> {
    let text = MINIMAL.replace(
        "[data_sources.ds0]",
        &format!("[[server.users]]\nname = \"app\"\n{fields}\n[data_sources.ds0]"),
    );
    Config::from_toml_str(&text).map_err(|e| e.to_string())
}

fn app(config: &Config) -> &UserConfig {
    &config.server.users[1]
}

#[test]
fn user_passwords_stay_out_of_debug_output() {
    let config = with_user("password = \"secret\"").unwrap();
    assert_eq!(
        app(&config).credential,
        Credential::Password("secret".into())
    );
    assert!(!format!("{config:?}").contains("secret"));
    let config =
        with_user("password_hash = \"*14E65567ABDB5135D0CFD9A70B3032C179A49EE7\"").unwrap();
    assert!(!format!("{config:?}").contains("14E6"));
}

#[test]
fn passwords_come_from_a_file_or_the_environment() {
    let path = std::env::temp_dir().join(format!("sg-password-{}", std::process::id()));
    std::fs::write(&path, "from a file\r\n").unwrap();
    let config = with_user(&format!("password_file = \"{}\"", path.display())).unwrap();
    assert_eq!(
        app(&config).credential,
        Credential::Password("from a file".into())
    );
    std::fs::remove_file(&path).unwrap();
    let missing = with_user(&format!("password_file = \"{}\"", path.display())).unwrap_err();
    assert!(
        missing.starts_with("server.users.app.password_file: "),
        "{missing}"
    );

    // A name no other test sets: the environment is the process's.
    std::env::set_var("SG_RULES_TEST_PASSWORD", "from the environment");
    let config = with_user("password_env = \"SG_RULES_TEST_PASSWORD\"").unwrap();
    assert_eq!(
        app(&config).credential,
        Credential::Password("from the environment".into())
    );
    let unset = with_user("password_env = \"SG_RULES_TEST_UNSET\"").unwrap_err();
    assert!(
        unset.starts_with("server.users.app.password_env: 'SG_RULES_TEST_UNSET' is not valid"),
        "{unset}"
    );
}

#[test]
fn one_secret_per_user_and_a_plugin_that_can_check_it() {
    let both = with_user("password = \"x\"\npassword_env = \"HOME\"").unwrap_err();
    assert!(
        both.contains("not both password and password_env"),
        "{both}"
    );
    let bad = with_user("password_hash = \"not a hash\"").unwrap_err();
    assert!(
        bad.starts_with("server.users.app.password_hash: '***' is not valid"),
        "{bad}"
    );

    let ed = "password_hash = \"ZIgUREUg5PVgQ6LskhXmO+eZLS0nC8be6HPjYWR4YJY\"";
    assert_eq!(app(&with_user(ed).unwrap()).plugin(), AuthPlugin::Ed25519);
    let err = with_user(&format!("{ed}\nauth_plugin = \"caching_sha2_password\"")).unwrap_err();
    assert!(err.starts_with("server.users.app.auth_plugin: "), "{err}");
    let native = "password_hash = \"*14E65567ABDB5135D0CFD9A70B3032C179A49EE7\"";
    let config = with_user(&format!(
        "{native}\nauth_plugin = \"caching_sha2_password\""
    ))
    .unwrap();
    assert_eq!(app(&config).plugin(), AuthPlugin::CachingSha2Password);
    assert!(with_user(&format!("{native}\nauth_plugin = \"ed25519\"")).is_err());
    let plain = with_user("password = \"x\"").unwrap();
    assert_eq!(app(&plain).plugin(), AuthPlugin::MysqlNativePassword);
}

#[test]
fn unknown_data_source_in_nodes() {
    let message = error_of("[tables.users]\nnodes = \"ds${0..2}.users_0\"\ndatabase = { column = \"user_id\", algorithm = \"mod\", count = 3 }\n");
    assert_eq!(
        message,
        "tables.users.nodes: unknown data source 'ds2' (declared: ds0, ds1)"
    );
}

#[test]
fn reversed_range_in_nodes() {
    let message = error_of("[tables.x]\nnodes = \"ds0.x_${5..3}\"\n");
    assert_eq!(
        message,
        "tables.x.nodes: range ${5..3} has lower bound greater than upper"
    );
}

#[test]
fn unclosed_placeholder_and_empty_list_in_nodes() {
    assert_eq!(
        error_of("[tables.x]\nnodes = \"ds0.x_${0..3\"\n"),
        "tables.x.nodes: unclosed '${' in 'ds0.x_${0..3'"
    );
    assert_eq!(
        error_of("[tables.x]\nnodes = \"ds0.x_${[]}\"\n"),
        "tables.x.nodes: empty list in '${[]}'"
    );
}

#[test]
fn node_listed_twice() {
    let message = error_of("[tables.x]\nnodes = \"ds0.x_0, ds0.x_0\"\n");
    assert_eq!(message, "tables.x.nodes: node ds0.x_0 is listed twice");
}

#[test]
fn strategy_without_column() {
    let message = error_of("[tables.users]\nnodes = \"ds${0..1}.users\"\ndatabase = { algorithm = \"mod\", count = 2 }\n");
    assert_eq!(message, "tables.users.database: missing 'column'");
}

#[test]
fn strategy_shape_errors() {
    let nodes = "[tables.t]\nnodes = \"ds${0..1}.t\"\n";
    let cases = [
        ("database = { column = \"id\" }", "tables.t.database: missing 'algorithm'"),
        ("database = { column = \"id\", algorithm = \"mod\" }", "tables.t.database: missing 'count'"),
        ("database = { column = \"id\", algorithm = \"mod\", count = 0 }", "tables.t.database.count: 0 is out of range 1..=4294967295"),
        (
            "database = { column = \"id\", algorithm = \"hash\", count = 2 }",
            "tables.t.database: unknown algorithm 'hash' (expected mod, crc32_mod or month, or an 'expression')",
        ),
        (
            "database = { column = \"id\", algorithm = \"mod\", count = 2, expression = \"ds${id % 2}\" }",
            "tables.t.database: give either 'algorithm' or 'expression', not both",
        ),
        (
            "database = { column = \"id\", algorithm = \"mod\", count = 2, format = \"%Y%m\" }",
            "tables.t.database: 'format' does not apply to mod algorithms",
        ),
        (
            "database = { column = \"id\", algorithm = \"month\", format = \"%Y-%m\" }",
            "tables.t.database.format: unsupported month format '%Y-%m' (only \"%Y%m\" is supported)",
        ),
        (
            "database = { column = \"id\", expression = \"ds${other % 2}\" }",
            "tables.t.database.expression: 'other' is not the sharding column 'id'",
        ),
        (
            "database = { column = \"id\", algorithm = \"mod\", count = 3 }",
            "tables.t.database.count: count 3 does not match the 2 data sources of the nodes",
        ),
        ("database = { column = \"id\", algorithm = \"month\" }", "tables.t.database: 'ds0' does not end with a YYYYMM month suffix"),
    ];
    for (strategy, expected) in cases {
        assert_eq!(
            error_of(&format!("{nodes}{strategy}\n")),
            expected,
            "{strategy}"
        );
    }
}

#[test]
fn a_missing_strategy_is_refused_when_rows_would_have_two_homes() {
    let message = error_of("[tables.t]\nnodes = \"ds${0..1}.t\"\n");
    assert_eq!(message, "tables.t.database: missing, but there are several nodes: a strategy must choose between them");
    let message = error_of(
        "[tables.t]\nnodes = \"ds${0..1}.t_${0..1}\"\ndatabase = { column = \"id\", algorithm = \"mod\", count = 2 }\n",
    );
    assert_eq!(
        message,
        "tables.t.table: missing, but a data source holds several of the nodes: a strategy must choose between them"
    );
}

#[test]
fn duplicate_tables() {
    let sharded = "[tables.users]\nnodes = \"ds0.users\"\n";
    assert_eq!(
        error_of(&format!("{sharded}[broadcast]\ntables = [\"users\"]\n")),
        "broadcast.tables: table 'users' is both sharded ([tables]) and broadcast"
    );
    assert_eq!(
        error_of("[broadcast]\ntables = [\"a\", \"A\"]\n"),
        "broadcast.tables: table 'A' is declared more than once"
    );
    assert_eq!(
        error_of("[tables.t]\nnodes = \"ds0.t\"\n[tables.T]\nnodes = \"ds1.t\"\n"),
        "tables.t: table 't' is declared more than once"
    );
}

#[test]
fn server_level_errors() {
    let no_users = MINIMAL.replace("[[server.users]]\nname = \"root\"\n", "");
    let message = Config::from_toml_str(&no_users).unwrap_err().to_string();
    assert_eq!(message, "server.users: at least one user is required");

    let bad_default = MINIMAL.replace(
        "database = \"wework\"",
        "database = \"wework\"\ndefault_data_source = \"ds7\"",
    );
    let message = Config::from_toml_str(&bad_default).unwrap_err().to_string();
    assert_eq!(
        message,
        "server.default_data_source: unknown data source 'ds7' (declared: ds0, ds1)"
    );

    let message =
        error_of("[data_sources.ds2]\nurl = \"mysql://r@h/d\"\npool = { max_size = 0 }\n");
    assert_eq!(
        message,
        "data_sources.ds2.pool.max_size: 0 is out of range 1.."
    );
}

#[test]
fn snowflake_errors() {
    assert_eq!(
        error_of("[snowflake]\nworker_id = 1024\n"),
        "snowflake.worker_id: 1024 is out of range 0..=1023"
    );
    let message = error_of("[snowflake]\nepoch = \"2024-01-01\"\n");
    assert!(
        message.starts_with("snowflake.epoch: '2024-01-01' is not valid"),
        "{message}"
    );
}

#[test]
fn serde_errors_keep_toml_locations() {
    let unknown_field = error_of("[tables.t]\nnodes = \"ds0.t\"\nshards = 4\n");
    assert!(
        unknown_field.contains("unknown field `shards`"),
        "{unknown_field}"
    );
    assert!(unknown_field.contains("line"), "{unknown_field}");
    let wrong_type =
        error_of("[data_sources.ds2]\nurl = \"mysql://r@h/d\"\npool = { max_size = \"big\" }\n");
    assert!(wrong_type.contains("max_size"), "{wrong_type}");
    let bad_url = error_of("[data_sources.ds2]\nurl = \"postgres://r@h/d\"\n");
    assert!(
        bad_url.contains("backend URL must start with 'mysql://'"),
        "{bad_url}"
    );
    let missing_database = Config::from_toml_str("[server]\n").unwrap_err().to_string();
    assert!(
        missing_database.contains("missing field `database`"),
        "{missing_database}"
    );
}

#[test]
fn pool_bounds_and_alert_settings_are_checked() {
    let bad_bounds = MINIMAL.replace(
        "[data_sources.ds0]\n",
        "[data_sources.ds0]\npool = { min_size = 50, max_bound = 40 }\n",
    );
    let err = Config::from_toml_str(&bad_bounds).unwrap_err().to_string();
    assert!(err.contains("data_sources.ds0.pool.min_size"), "{err}");
    let bad_ratio = format!("{MINIMAL}[alerts]\npool_usage_ratio = 1.5\n");
    let err = Config::from_toml_str(&bad_ratio).unwrap_err().to_string();
    assert!(err.contains("alerts.pool_usage_ratio"), "{err}");
    let bad_hook = format!("{MINIMAL}[alerts]\nwebhook = \"ftp://example.com\"\n");
    let err = Config::from_toml_str(&bad_hook).unwrap_err().to_string();
    assert!(err.contains("alerts.webhook"), "{err}");
    let tls_hook = format!("{MINIMAL}[alerts]\nwebhook = \"https://example.com/hook\"\n");
    assert!(Config::from_toml_str(&tls_hook).is_ok());
}

#[test]
fn further_logical_databases_have_rules_of_their_own() {
    let config = Config::from_toml_str(&format!(
        r#"{MINIMAL}
[data_sources.ts0]
url = "mysql://root@127.0.0.1:13306/test_schema"
[databases.test_schema]
default_data_source = "ts0"
[databases.test_schema.broadcast]
tables = ["codes"]
[databases.test_schema.tables.events]
nodes = "ts0.events_${{0..1}}"
table = {{ column = "id", algorithm = "mod", count = 2 }}
"#
    ))
    .unwrap();
    let names: Vec<&str> = config.logical_databases().iter().map(|d| d.name).collect();
    assert_eq!(names, ["wework", "test_schema"]);
    let dbs = config.logical_databases();
    assert_eq!(config.database_data_sources(&dbs[0]), ["ds0", "ds1"]);
    assert_eq!(config.database_data_sources(&dbs[1]), ["ts0"]);
    let rules = ShardingRules::for_database(&config, &dbs[1]).unwrap();
    assert_eq!(rules.table_kind("events"), crate::TableKind::Sharded);
    assert_eq!(rules.nodes("codes").len(), 1);
    assert_eq!(rules.nodes("plain")[0].data_source, "ts0");
    let first = ShardingRules::new(&config).unwrap();
    assert_eq!(first.table_kind("events"), crate::TableKind::Single);
}

#[test]
fn logical_database_errors_name_their_key() {
    assert_eq!(
        error_of("[databases.other]\ndefault_data_source = \"ds0\"\n"),
        "databases.other.default_data_source: 'ds0' is not valid: logical database 'wework' keeps its tables there too: give each logical database a data source of its own (a URL with its own physical database)"
    );
    assert_eq!(
        error_of("[databases.other]\ndefault_data_source = \"ds9\"\n"),
        "databases.other.default_data_source: unknown data source 'ds9' (declared: ds0, ds1)"
    );
    assert_eq!(
        error_of(
            "[databases.other]\ndefault_data_source = \"ds1\"\n[databases.other.tables.t]\nnodes = \"ds1.t_${0..1}\"\n"
        ),
        "databases.other.tables.t.database: missing, but there are several nodes: a strategy must choose between them"
    );
}

#[test]
fn worker_threads_are_one_per_cpu_unless_bounded_otherwise() {
    assert_eq!(
        Config::from_toml_str(MINIMAL)
            .unwrap()
            .server
            .worker_threads,
        None
    );
    let one = MINIMAL.replace("[server]\n", "[server]\nworker_threads = 1\n");
    assert_eq!(
        Config::from_toml_str(&one).unwrap().server.worker_threads,
        Some(1)
    );
    for bad in ["0", "5000"] {
        let text = MINIMAL.replace("[server]\n", &format!("[server]\nworker_threads = {bad}\n"));
        let err = Config::from_toml_str(&text).unwrap_err().to_string();
        assert!(
            err.contains("server.worker_threads") && err.contains("1..=1024"),
            "{err}"
        );
    }
}

#[test]
fn max_allowed_packet_is_bounded_as_mariadb_bounds_it() {
    for good in ["1024", "1073741824"] {
        let text = MINIMAL.replace(
            "[server]\n",
            &format!("[server]\nmax_allowed_packet = {good}\n"),
        );
        assert!(Config::from_toml_str(&text).is_ok(), "{good}");
    }
    for bad in ["1023", "1073741825"] {
        let err = server_setting_error(&format!("max_allowed_packet = {bad}"));
        assert!(
            err.contains("server.max_allowed_packet") && err.contains("1024..=1073741824"),
            "{err}"
        );
    }
}

/// Why the minimal config with `line` in `[server]` does not load.
fn server_setting_error(line: &str) -> String {
    let text = MINIMAL.replace("[server]\n", &format!("[server]\n{line}\n"));
    Config::from_toml_str(&text).unwrap_err().to_string()
}

#[test]
fn client_connections_are_bounded_and_must_log_in_in_time() {
    let server = Config::from_toml_str(MINIMAL).unwrap().server;
    assert_eq!(
        (server.max_connections, server.connect_timeout_ms),
        (4096, 10_000)
    );
    let set = MINIMAL.replace(
        "[server]\n",
        "[server]\nmax_connections = 3\nconnect_timeout_ms = 500\n",
    );
    let server = Config::from_toml_str(&set).unwrap().server;
    assert_eq!(
        (server.max_connections, server.connect_timeout_ms),
        (3, 500)
    );
    let err = server_setting_error("max_connections = 0");
    assert!(err.contains("server.max_connections"), "{err}");
}

#[test]
fn prepared_statements_and_their_long_data_are_bounded_per_session() {
    let server = Config::from_toml_str(MINIMAL).unwrap().server;
    assert_eq!(
        (
            server.max_prepared_statements,
            server.max_long_data_per_session
        ),
        (16_382, 128 * 1024 * 1024)
    );
    let err = server_setting_error("max_prepared_statements = 0");
    assert!(err.contains("server.max_prepared_statements"), "{err}");
}

#[test]
fn idle_sessions_are_closed_after_the_wait_timeout() {
    let server = Config::from_toml_str(MINIMAL).unwrap().server;
    assert_eq!(server.wait_timeout_ms, 28_800_000);
    let err = server_setting_error("wait_timeout_ms = 0");
    assert!(err.contains("server.wait_timeout_ms"), "{err}");
}

#[test]
fn sessions_per_user_and_failed_logins_per_host_are_bounded() {
    let config = Config::from_toml_str(MINIMAL).unwrap();
    let server = &config.server;
    assert_eq!(
        (
            server.max_user_connections,
            server.max_connect_errors,
            server.host_block_ms
        ),
        (0, 100, 300_000)
    );
    assert_eq!(
        server.users[0].session_limit(server),
        None,
        "no limit by default"
    );
    let set = MINIMAL.replace("[server]\n", "[server]\nmax_user_connections = 5\n");
    let config = Config::from_toml_str(&set).unwrap();
    assert_eq!(
        config.server.users[0].session_limit(&config.server),
        Some(5)
    );
    let mut own = config.server.users[0].clone();
    own.max_connections = Some(0);
    assert_eq!(
        own.session_limit(&config.server),
        None,
        "the user's own 0: no limit"
    );
    own.max_connections = Some(2);
    assert_eq!(own.session_limit(&config.server), Some(2));
    let err = server_setting_error("max_connect_errors = 0");
    assert!(err.contains("server.max_connect_errors"), "{err}");
}

/// The seed's `MINIMAL` with a second logical database (`ops`) and the
/// user lines `user` appended to its only user.
fn with_user_keys(user: &str) -> String {
    MINIMAL.replace("name = \"root\"\n", &format!("name = \"root\"\n{user}\n"))
        + "[data_sources.ops0]\nurl = \"mysql://root@127.0.0.1:13306/ops\"\n[databases.ops]\ndefault_data_source = \"ops0\"\n"
}

#[test]
fn users_may_be_given_databases_and_a_read_only_role() {
    let config = Config::from_toml_str(&with_user_keys("")).unwrap();
    let user = &config.server.users[0];
    assert_eq!((&user.databases, user.read_only), (&None, false));
    let config =
        Config::from_toml_str(&with_user_keys("databases = [\"ops\"]\nread_only = true")).unwrap();
    let user = &config.server.users[0];
    assert_eq!(user.databases.as_deref(), Some(&["ops".to_owned()][..]));
    assert!(user.read_only);
}

#[test]
fn user_databases_must_be_logical_databases() {
    let err = Config::from_toml_str(&with_user_keys("databases = [\"ops\", \"ds1\"]"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "server.users[0].databases: 'ds1' is not valid: user 'root' may only be given logical databases (declared: wework, ops)"
    );
    let err = Config::from_toml_str(&with_user_keys("databases = []"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "server.users[0].databases: at least one logical database is required"
    );
    let err = Config::from_toml_str(&with_user_keys("read_only = \"yes\""))
        .unwrap_err()
        .to_string();
    assert!(err.contains("read_only"), "{err}");
}

#[test]
fn admin_tls_names_a_certificate_and_key() {
    let with = |table: &str| MINIMAL.replacen("[server]\n", &format!("[server]\n{table}\n"), 1);
    let cfg = Config::from_toml_str(&with(
        r#"admin_tls = { cert = "admin.pem", key = "admin-key.pem" }"#,
    ))
    .unwrap();
    let files = cfg.server.admin_tls.expect("admin_tls");
    assert_eq!(files.cert, std::path::PathBuf::from("admin.pem"));
    assert_eq!(files.key, std::path::PathBuf::from("admin-key.pem"));
    assert!(Config::from_toml_str(MINIMAL)
        .unwrap()
        .server
        .admin_tls
        .is_none());
    assert!(Config::from_toml_str(&with(r#"admin_tls = { cert = "admin.pem" }"#)).is_err());
}

#[test]
fn a_data_source_url_with_a_bad_tls_option_names_it() {
    let text = MINIMAL.replace(
        "root@127.0.0.1:13307/ds1\"",
        "root:s3cret@127.0.0.1:13307/ds1?ssl-mode=VERIFY_IDENTITY&sslca=/ca.pem\"",
    );
    let err = Config::from_toml_str(&text).unwrap_err().to_string();
    assert!(
        err.contains("backend URL option 'sslca' is unknown"),
        "{err}"
    );
    // toml quotes the line: with the password masked.
    assert!(err.contains("root:***@127.0.0.1:13307"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
}
