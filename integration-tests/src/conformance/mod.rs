//! Differential runner for the ShardingSphere SQL e2e suite kept in
//! `shared/conformance/shardingsphere-e2e/` (scenarios `db`, `tbl`,
//! `dbtbl_with_readwrite_splitting`): each scenario's rules are translated
//! into a ShardGate config ([`translate`]), its physical databases and the
//! unsharded reference are loaded into the sandbox, and every applicable DQL
//! and DML case is run through ShardGate and against the reference, in
//! prepared and text mode, then classified PASS / REFUSED / WRONG
//! ([`runner`]).

pub mod runner;
pub mod suite;
pub mod translate;

pub use runner::{render_report, run_scenario, CaseResult, ScenarioReport, Verdict};

use crate::Config;

/// Runs every scenario named in `scenarios` (all three when empty). `Err`
/// when the suite or the sandbox cannot be set up.
pub async fn run(seed: &Config, scenarios: &[&str]) -> Result<Vec<ScenarioReport>, String> {
    let dir = suite::suite_dir();
    let cases = suite::load_cases(&dir)?;
    let mut reports = Vec::new();
    for scenario in suite::SCENARIOS {
        if !scenarios.is_empty() && !scenarios.contains(&scenario) {
            continue;
        }
        let report = run_scenario(&dir, scenario, &cases, seed)
            .await
            .map_err(|e| format!("scenario {scenario}: {e}"))?;
        reports.push(report);
    }
    Ok(reports)
}
