//! Who may use the sandbox at the same time.
//!
//! libtest runs the tests of one binary side by side (up to
//! `--test-threads` at once), and every test of this crate uses the one
//! sandbox. Most only touch what is theirs — their own tables, databases
//! and in-process proxies (a proxy's pools, metrics and alerts are its
//! own) — and run beside anything. Some do not: they stop, kill or freeze
//! servers, stop replication, change a server's global settings, drop
//! tables other tests use, or assert what only holds on quiet servers
//! (timings of a few hundred milliseconds, replicas caught up within
//! seconds, the servers' own counters). Those run alone.
//!
//! So every test takes one guard, before it touches the sandbox or starts
//! a proxy, and keeps it to its end:
//!
//! - [`shared`]: any number of shared tests run together;
//! - [`exclusive`]: nothing else runs meanwhile.
//!
//! The exclusive tests, and why:
//!
//! - `replicas`: stop replication threads, delay a replica, kill and
//!   restart replicas and primaries, make a replica writable, count reads
//!   with the servers' `Com_select`, and time how fast a replica leaves and
//!   rejoins the rotation;
//! - `pools`: freeze a replica (SIGSTOP), and measure tiny pools under load
//!   (no acquire timeout, deadlocks detected within 5 s, an exhaustion
//!   after 300 ms, adaptive sizing within 10 s, alerts after 1.5 s);
//! - `cutover_api`: statements held and woken within 400 / 500 ms, a lease
//!   lifted between 0.7 and 3 s;
//! - `transactions`: DDL that must not wait 900 ms for a metadata lock,
//!   new sessions that must see a write within 10 s of replication, the
//!   pools' connections in use;
//! - `app_scenarios`: write in the seed's physical tables (`users`,
//!   `message_records`, `sys_dictionaries`), which they may replace when
//!   another test left them in another shape, and recreate `apps_audit`;
//! - `peer_django`: drops and recreates the seed's physical `users` and
//!   `message_records` tables;
//! - `memory`: a million rows through a proxy whose peak memory it measures;
//! - `protocol::packets_over_16_mib_both_ways`: raises the server's
//!   `max_allowed_packet` when it is low, and sends 40 MiB statements.
//! - `data_source_tls::every_backend_session_is_encrypted_and_verified`:
//!   counts the servers' TLS handshakes (`Ssl_finished_accepts`), which
//!   any other client (the mariadb CLI asks for TLS by default) moves too.
//!
//! A test takes its guard once, and before any other lock it takes (the
//! sharding harness's [`STATE`](crate::sharding::STATE)), so that no two
//! tests wait for each other in a cycle. The lock is fair: a waiting
//! exclusive test holds back the shared tests that come after it (and so a
//! second shared guard, taken by a test that has one, could wait for ever).
//!
//! [`epoch`] counts the exclusive runs: the sharding harness starts its
//! proxy and loads its data anew when it changed, since an exclusive test
//! may have restarted servers behind its pooled connections or dropped its
//! tables.

use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

static SANDBOX: RwLock<()> = RwLock::const_new(());

static EPOCH: AtomicU64 = AtomicU64::new(0);

/// For a test that runs beside others.
pub async fn shared() -> RwLockReadGuard<'static, ()> {
    SANDBOX.read().await
}

/// For a test that runs alone.
pub async fn exclusive() -> RwLockWriteGuard<'static, ()> {
    let guard = SANDBOX.write().await;
    EPOCH.fetch_add(1, Ordering::SeqCst);
    guard
}

/// The number of exclusive runs begun so far.
pub fn epoch() -> u64 {
    EPOCH.load(Ordering::SeqCst)
}
