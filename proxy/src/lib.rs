//! ShardGate's proxy: a MySQL-protocol front end that serves clients from
//! pooled backend connections.
//!
//! A statement flows: `session` (command loop, session state) →
//! `shardgate_sql` (classification, analysis, routing plan, rewrite) →
//! `backend` (`shardgate_core`'s pools over `shardgate_mysql`'s
//! connections) → `shardgate_mysql` (framing, forwarding of replies, row
//! codecs) → `shardgate_merge` when several nodes answer. Metrics, alerts
//! and the backend layer's errors are `shardgate_core`'s.

pub mod admin;
pub mod backend;
pub mod databases;
pub mod pause;
pub mod reload;
pub mod server;
pub mod session;
pub mod sessions;
pub mod staging;

pub use server::{
    read_config_file, start, start_from_file, start_from_read_file, Proxy, RunningProxy, StartError,
};
