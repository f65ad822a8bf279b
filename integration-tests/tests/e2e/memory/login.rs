//! Peak memory of clients that announce huge login packets (issue 15's
//! fourth probe: 20 connections that each sent a 16 MiB packet header and
//! then 8 MiB before logging in grew the proxy by 164 MB, the login's size
//! limit checked after the bytes were buffered).
//!
//! The limit is checked on the header, before a byte of the payload is
//! read: each such connection is closed at once, the proxy's peak RSS
//! grows by little more than its connections' buffers ([`BOUND_MIB`]),
//! and a well-behaved client logs in afterwards.

use std::time::Duration;

use super::{ProcessMemory, ProxyRun};
use shardgate_integration_tests::{proxy_endpoint, sandbox, sandbox_ready, test_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CLIENTS: usize = 20;
/// What each client sends after its header, in MiB.
const SENT_MIB: usize = 8;
/// The peak RSS growth allowed: 20 connections' buffers and the
/// allocator's slack; buffering what they sent would be 160 MiB.
const BOUND_MIB: u64 = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_login_packets_are_refused_before_they_are_read() {
    let _sandbox = sandbox::exclusive().await;
    const TEST: &str = "oversized_login_packets_are_refused_before_they_are_read";
    if !sandbox_ready(&test_config(), TEST) {
        return;
    }
    let mut run = ProxyRun::start();
    let (proxy, cfg) = (&mut run.proxy, &run.cfg);
    let addr = proxy.addr;
    let before = proxy.memory().expect("the proxy's memory");
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| tokio::spawn(announce_a_huge_login(addr)))
        .collect();
    let mut outcomes = Vec::new();
    for client in clients {
        outcomes.push(client.await.expect("a client"));
    }
    let after = proxy.memory().expect("the proxy's memory");
    let served = match proxy_endpoint(cfg, addr).connect().await {
        Ok(mut conn) => sqlx::query_scalar::<_, i64>("SELECT 1")
            .fetch_one(&mut conn)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let log = run.end();
    let growth_mib = after.hwm_kib.saturating_sub(before.hwm_kib) / 1024;
    eprintln!(
        "{CLIENTS} clients announcing a 16 MiB login packet and sending {SENT_MIB} MiB: peak RSS {} -> {} MiB (+{growth_mib} MiB); {outcomes:?}",
        before.hwm_kib / 1024,
        after.hwm_kib / 1024
    );
    let kept: Vec<&String> = outcomes
        .iter()
        .filter(|o| !o.starts_with("closed"))
        .collect();
    assert!(
        kept.is_empty(),
        "connections the proxy did not close: {kept:?}\n{log}"
    );
    assert!(
        growth_mib < BOUND_MIB,
        "the proxy's peak RSS grew by {growth_mib} MiB (bound {BOUND_MIB} MiB)\n{log}"
    );
    assert_eq!(served, Ok(1), "a login after them\n{log}");
}

/// Reads the greeting, announces a login packet of 16 MiB - 1 and sends
/// [`SENT_MIB`] of it: how the connection ended ("closed ..." when the
/// proxy closed it, with the bytes it answered).
async fn announce_a_huge_login(addr: std::net::SocketAddr) -> String {
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        return "no connection".into();
    };
    let mut header = [0u8; 4];
    if stream.read_exact(&mut header).await.is_err() {
        return "no greeting".into();
    }
    let len = usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
    let mut greeting = vec![0u8; len];
    if stream.read_exact(&mut greeting).await.is_err() {
        return "no greeting".into();
    }
    // The proxy may close before all of it is sent: a write error then.
    let _ = stream.write_all(&[0xff, 0xff, 0xff, 1]).await;
    let _ = stream.write_all(&vec![b'x'; SENT_MIB << 20]).await;
    let mut answer = Vec::new();
    match tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await {
        Err(_) => format!("open after 10 s, {} bytes answered", answer.len()),
        Ok(Ok(_)) => format!("closed, {} bytes answered", answer.len()),
        Ok(Err(e)) => format!("closed ({}), {} bytes answered", e.kind(), answer.len()),
    }
}
