//! Peak memory of a client that piles up long data (issue 15's first
//! probe: 64 × 8 MiB of COM_STMT_SEND_LONG_DATA over 64 prepared
//! statements, never executed, took the proxy from 32 MB to 558 MB).
//!
//! The proxy keeps long data until the statement executes, bounded by
//! `server.max_long_data_per_session` (128 MiB by default): the peak RSS
//! may grow by that bound and the packets in flight (one 8 MiB packet read,
//! and kept), [`SLACK_MIB`], and the statements past the bound answer their
//! execution with 1105. The proxy runs as a child process, as in the deep
//! page test.

use super::{ProcessMemory, ProxyRun};
use crate::wire::login_native;
use shardgate_integration_tests::{proxy_endpoint, sandbox, sandbox_ready, test_config};

const STATEMENTS: u32 = 64;
const CHUNK_MIB: usize = 8;
/// `server.max_long_data_per_session`'s default.
const SESSION_BOUND_MIB: u64 = 128;
/// A packet being read, its copy being kept, and the allocator's slack.
const SLACK_MIB: u64 = 48;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_data_piled_up_by_a_client_keeps_proxy_memory_bounded() {
    let _sandbox = sandbox::exclusive().await;
    const TEST: &str = "long_data_piled_up_by_a_client_keeps_proxy_memory_bounded";
    if !sandbox_ready(&test_config(), TEST) {
        return;
    }
    let mut run = ProxyRun::start();
    let (proxy, cfg) = (&mut run.proxy, &run.cfg);
    let ep = proxy_endpoint(cfg, proxy.addr);
    let mut wire = login_native(proxy.addr, &ep.user, &ep.password, &ep.database).await;
    let before = proxy.memory().expect("the proxy's memory");
    let chunk = vec![b'x'; CHUNK_MIB * 1024 * 1024];
    let mut ids = Vec::new();
    for _ in 0..STATEMENTS {
        let id = wire.prepare("SELECT LENGTH(?)").await.expect("prepare");
        wire.long_data(id, 0, &chunk).await;
        ids.push(id);
    }
    // A round trip: every packet before it has been read.
    let last = *ids.last().expect("statements");
    let refused = wire.execute_long_data(last, 1).await;
    let kept = wire.execute_long_data(ids[0], 1).await;
    let after = proxy.memory().expect("the proxy's memory");
    let log = run.end();
    let growth_mib = after.hwm_kib.saturating_sub(before.hwm_kib) / 1024;
    eprintln!(
        "{STATEMENTS} x {CHUNK_MIB} MiB of long data: peak RSS {} -> {} MiB (+{growth_mib} MiB)",
        before.hwm_kib / 1024,
        after.hwm_kib / 1024
    );
    assert!(
        refused.starts_with("ERR 1105 HY000 ") && refused.contains("max_long_data_per_session"),
        "the statement past the session's bound: {refused}\n{log}"
    );
    let eight_mib = ((CHUNK_MIB * 1024 * 1024) as u32).to_le_bytes();
    assert_eq!(
        kept,
        format!("ROW {eight_mib:?}"),
        "a statement within the bound"
    );
    assert!(
        growth_mib < SESSION_BOUND_MIB + SLACK_MIB,
        "the proxy's peak RSS grew by {growth_mib} MiB for {STATEMENTS} x {CHUNK_MIB} MiB of long data \
         (bound {SESSION_BOUND_MIB} + {SLACK_MIB} MiB)"
    );
}
