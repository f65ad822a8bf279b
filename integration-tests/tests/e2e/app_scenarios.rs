//! Application scenarios, differentially (see `src/apps.rs`): each runs
//! against the plain reference database `apps_ref` on ds0's server, then
//! through ShardGate on `examples/wework.toml` as shipped (replicas and
//! read/write splitting on, read-your-writes per session), and the two
//! transcripts must be equal.
//!
//! - `drivers/java/AppScenario.java`: Connector/J as a Spring application
//!   uses it (a Hikari-like pool, `JdbcTemplate`'s statements,
//!   `@Transactional` by `setAutoCommit(false)` / `commit` / `rollback`),
//!   once with Connector/J's defaults (client-side prepared statements) and
//!   once with `useServerPrepStmts=true`;
//! - `drivers/node/app.js`: a mysql2 pool (`createPool` with defaults),
//!   `getConnection`, `beginTransaction`, `query` and `execute`,
//!   `commit` / `rollback`, `release`, concurrent transactions, `pool.query`
//!   reads after writes;
//! - `src/apps/sqlx_app.rs`: a sqlx `MySqlPool`, `begin` / `commit` /
//!   `rollback` / drop, `query_as`, `fetch_all`, `execute`.
//!
//! Lines `{"finding": ...}` of a transcript are timing-dependent
//! measurements (reads on one pooled connection right after another one
//! wrote: with `read_consistency = "session"` a replica may not have the
//! write yet); they are printed as `FINDING` lines, not compared.
//!
//! Transcripts: `artifacts/app_<name>.{reference,proxy}.txt`. The scenarios
//! have the sandbox to themselves (they share `apps_ref` and `apps_audit`,
//! and write in the seed's physical tables). Skipped (with a `SKIPPED`
//! line) when the sandbox is not running, unless
//! `SHARDGATE_REQUIRE_SANDBOX=1`.

use shardgate_integration_tests::apps::sqlx_app::{self, SQLX_APP};
use shardgate_integration_tests::apps::{
    apps_config, clean_sharded, differing_steps, misplaced, reference_endpoint, reset_reference,
    reset_sharded, save_transcripts, split_findings, step_count, transcript_difference,
    AppScenario, APPS_REF_DB,
};
use shardgate_integration_tests::http::get;
use shardgate_integration_tests::{
    sandbox, sandbox_ready, say, start_proxy, Config, Driver, Endpoint, RunningProxy,
};
use std::time::{Duration, Instant};

const DONE: &str = "{\"step\":\"done\"}";

/// How long the in-process sqlx scenario may take.
const SQLX_TIMEOUT: Duration = Duration::from_secs(120);

/// How a scenario is run.
#[derive(Clone, Copy)]
enum Runner {
    /// An external program of `Driver`, `file` in its folder, given the
    /// scenario's id range and tenant prefix (`SG_APP_BASE`,
    /// `SG_APP_PREFIX`) and `env`.
    External {
        driver: Driver,
        file: &'static str,
        env: &'static [(&'static str, &'static str)],
    },
    /// The sqlx scenario, in this process.
    Sqlx,
}

impl Runner {
    async fn run(self, s: &AppScenario, ep: &Endpoint) -> Result<String, String> {
        match self {
            Runner::External { driver, file, env } => {
                let base = s.base.to_string();
                let mut all: Vec<(&str, &str)> =
                    vec![("SG_APP_BASE", base.as_str()), ("SG_APP_PREFIX", s.prefix)];
                all.extend_from_slice(env);
                driver.run_file_env(file, ep, &all).await
            }
            // (the external programs are bounded by the library's driver timeout)
            Runner::Sqlx => tokio::time::timeout(SQLX_TIMEOUT, sqlx_app::run(ep))
                .await
                .unwrap_or_else(|_| Err(format!("the sqlx app timed out after {SQLX_TIMEOUT:?}"))),
        }
    }
}

struct Case {
    scenario: AppScenario,
    runner: Runner,
    /// Fewer steps than this: the scenario stopped early.
    min_steps: usize,
}

async fn differential(case: Case) {
    let _sandbox = sandbox::exclusive().await;
    let s = case.scenario;
    let cfg: Config = apps_config();
    if !sandbox_ready(&cfg, s.name) {
        return;
    }
    let started = Instant::now();

    reset_reference(&cfg)
        .await
        .unwrap_or_else(|e| panic!("{}: {APPS_REF_DB}: {e}", s.name));
    reset_sharded(&cfg, &s)
        .await
        .unwrap_or_else(|e| panic!("{}: preparing the physical tables: {e}", s.name));

    let t = Instant::now();
    let reference = case
        .runner
        .run(&s, &reference_endpoint(&cfg))
        .await
        .unwrap_or_else(|e| panic!("{}: against {APPS_REF_DB}: {e}", s.name));
    let reference_time = t.elapsed();

    let proxy = start_proxy(cfg.clone()).await;
    let t = Instant::now();
    let proxied = case.runner.run(&s, &proxy.endpoint()).await;
    let proxy_time = t.elapsed();
    let served = served_by_role(&proxy).await;
    drop(proxy);

    let (rows, placement) = misplaced(&cfg, &s).await;
    let cleaned = clean_sharded(&cfg, &s).await;
    let dir = save_transcripts(
        s.name,
        &reference,
        proxied.as_deref().unwrap_or_else(|e| e.as_str()),
    );
    say(&format!(
        "app scenario {}: reference {:.1}s, through shardgate {:.1}s, {:.1}s in all; {} rows of its own checked for placement; \
         backend connections taken through shardgate: {served}",
        s.name,
        secs(reference_time),
        secs(proxy_time),
        secs(started.elapsed()),
        rows
    ));

    assert!(
        step_count(&reference) >= case.min_steps && reference.lines().last() == Some(DONE),
        "{}: incomplete transcript against {APPS_REF_DB}: {} steps (want >= {}) or no done marker",
        s.name,
        step_count(&reference),
        case.min_steps
    );
    let proxied = proxied.unwrap_or_else(|e| panic!("{}: through shardgate: {e}", s.name));
    // timing-dependent measurements: reported, not compared
    let (reference, reference_findings) = split_findings(&reference);
    let (proxied, proxied_findings) = split_findings(&proxied);
    for (side, findings) in [
        (APPS_REF_DB, &reference_findings),
        ("shardgate", &proxied_findings),
    ] {
        for f in findings {
            say(&format!("app scenario {}: FINDING ({side}): {f}", s.name));
        }
    }
    let mut failures = Vec::new();
    // With read_consistency = "proxy" (the default) a pool's read on any
    // connection sees the app's writes: no stale read is a timing matter.
    for f in &proxied_findings {
        let v: serde_json::Value = serde_json::from_str(f).unwrap_or_default();
        for field in ["stale_rounds", "missed"] {
            if v[field].as_array().is_some_and(|a| !a.is_empty()) {
                failures.push(format!("a pool read missed the app's own write: {f}"));
            }
        }
    }
    if reference != proxied {
        failures.push(format!(
            "the transcript through ShardGate differs from {APPS_REF_DB} in step(s) {:?} \
             (full transcripts in {}/app_{}.{{reference,proxy}}.txt)\n{}",
            differing_steps(&reference, &proxied),
            dir.display(),
            s.name,
            transcript_difference(&reference, &proxied)
        ));
    }
    if !placement.is_empty() {
        failures.push(format!("placement:\n{}", placement.join("\n")));
    }
    if let Err(e) = cleaned {
        failures.push(format!("clean-up: {e}"));
    }
    assert!(failures.is_empty(), "{}: {}", s.name, failures.join("\n"));
}

/// How many backend connections ShardGate's pools handed out, primaries vs
/// replicas (`GET /api/pools`): shows that reads went to replicas.
async fn served_by_role(proxy: &RunningProxy) -> String {
    let pools = get(proxy.admin_addr, "/api/pools").await.json();
    let (mut primary, mut replica) = (0, 0);
    for pool in pools["pools"].as_array().into_iter().flatten() {
        let n = pool["acquired"].as_u64().unwrap_or(0);
        match pool["role"].as_str() {
            Some("replica") => replica += n,
            _ => primary += n,
        }
    }
    format!("{primary} from primaries, {replica} from replicas")
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlx_pool_app_matches_reference() {
    differential(Case {
        scenario: SQLX_APP,
        runner: Runner::Sqlx,
        min_steps: 30,
    })
    .await;
}

/// Connector/J's defaults: client-side prepared statements (COM_QUERY with
/// the parameters spliced in by the driver).
const JDBC_CLIENT: AppScenario = AppScenario {
    name: "jdbc_client_prepared",
    base: 9_200_000_000,
    prefix: "app-jc",
};

/// `useServerPrepStmts=true`: COM_STMT_PREPARE / COM_STMT_EXECUTE.
const JDBC_SERVER: AppScenario = AppScenario {
    name: "jdbc_server_prepared",
    base: 9_210_000_000,
    prefix: "app-js",
};

const NODE: AppScenario = AppScenario {
    name: "node_pool",
    base: 9_300_000_000,
    prefix: "app-node",
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jdbc_spring_style_app_matches_reference() {
    differential(Case {
        scenario: JDBC_CLIENT,
        runner: Runner::External {
            driver: Driver::Jdbc,
            file: "AppScenario.java",
            env: &[],
        },
        min_steps: 25,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jdbc_spring_style_app_server_prepared_matches_reference() {
    differential(Case {
        scenario: JDBC_SERVER,
        runner: Runner::External {
            driver: Driver::Jdbc,
            file: "AppScenario.java",
            env: &[("SG_JDBC_URL_OPTIONS", "useServerPrepStmts=true")],
        },
        min_steps: 25,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_mysql2_pool_app_matches_reference() {
    differential(Case {
        scenario: NODE,
        runner: Runner::External {
            driver: Driver::Node,
            file: "app.js",
            env: &[],
        },
        min_steps: 30,
    })
    .await;
}
