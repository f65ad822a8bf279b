//! Differential conformance against the ShardingSphere SQL e2e suite
//! (`../shared/conformance/shardingsphere-e2e/`, scenarios `db`, `tbl`,
//! `dbtbl_with_readwrite_splitting`): each scenario's rules are translated
//! into a ShardGate config, its data loaded into the sandbox (sharded
//! databases `ss_<scenario>_*` spread over the four primaries, the unsharded
//! reference `ssref_<scenario>` on the first), and every applicable DQL and
//! DML case runs through ShardGate and against the reference, prepared and
//! as text. See `src/conformance/`.
//!
//! PASS: equal answers; REFUSED: ShardGate answered 1235, or the rules of a
//! table the case uses cannot be expressed in ShardGate's config; WRONG: any
//! other difference. The test fails on any WRONG case. The report is printed
//! and written to `integration-tests/artifacts/conformance-report.txt`.
//!
//! `SHARDGATE_CONFORMANCE_SCENARIOS=db,tbl` limits the scenarios. Skipped
//! (with a `SKIPPED` line) when the sandbox is not running or the suite is
//! missing, unless `SHARDGATE_REQUIRE_SANDBOX=1`.

use shardgate_integration_tests::conformance::{self, render_report, suite, Verdict};
use shardgate_integration_tests::{crate_dir, sandbox, sandbox_ready, say, skip, test_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shardingsphere_e2e_conformance() {
    let _sandbox = sandbox::shared().await;
    let seed = test_config();
    if !sandbox_ready(&seed, "shardingsphere_e2e_conformance") {
        return;
    }
    let dir = suite::suite_dir();
    if !dir.join("cases-index.tsv").exists() {
        let reason = format!(
            "peer suite not found at {} (set SHARDGATE_SS_E2E_DIR)",
            dir.display()
        );
        skip("shardingsphere_e2e_conformance", &reason);
        return;
    }
    let only = std::env::var("SHARDGATE_CONFORMANCE_SCENARIOS").unwrap_or_default();
    let only: Vec<&str> = only
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let reports = conformance::run(&seed, &only)
        .await
        .expect("the conformance run sets up");
    let text = render_report(&reports);
    let artifacts = crate_dir().join("artifacts");
    let _ = std::fs::create_dir_all(&artifacts);
    let path = artifacts.join("conformance-report.txt");
    std::fs::write(&path, &text).expect("the report is written");
    say(&text);
    say(&format!("report written to {}", path.display()));
    let wrong: Vec<String> = reports
        .iter()
        .flat_map(|r| r.results.iter())
        .filter(|c| c.verdict == Verdict::Wrong)
        .map(|c| format!("{} {}", c.scenario, c.id))
        .collect();
    assert!(
        wrong.is_empty(),
        "{} WRONG answer(s) (see {}): {}",
        wrong.len(),
        path.display(),
        wrong.join(", ")
    );
}
