//! ShardGate's end-to-end tests against the local MariaDB sandbox, in one
//! test binary: one module per area, whose tests a filter selects, e.g.
//! `cargo test -p shardgate-integration-tests --test e2e replicas::`.
//!
//! The tests run side by side, each holding a guard on the sandbox for its
//! whole run: shared, or exclusive for those that disturb everybody or need
//! quiet servers (see `shardgate_integration_tests::sandbox`).

mod access;
mod admin_api;
mod app_scenarios;
mod client_auth;
mod client_tls;
mod commit_failure;
mod conformance;
mod cutover_api;
mod dashboard;
mod data_source_tls;
mod drivers;
mod fidelity;
mod hostile;
mod live_load;
mod logs;
mod memory;
mod peer_django;
mod peer_sqlalchemy;
mod pools;
mod protocol;
mod reload;
mod replicas;
mod sharded_drivers;
mod sharding;
mod sql_admin;
mod transactions;
mod wire;
