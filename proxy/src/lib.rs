//! ShardGate's proxy: a MySQL-protocol front end that serves clients from
//! pooled backend connections.
//!
//! A statement flows: `session` (command loop, session state) →
//! `shardgate_sql` (classification, analysis, routing plan, rewrite) →
//! `backend` (`shardgate_core`'s pools over `shardgate_mysql`'s
//! connections) → `shardgate_mysql` (framing, forwarding of replies, row
//! codecs) → `shardgate_merge` when several nodes answer. The proxy's
//! state, pools, replicas, pause/reload, metrics, alerts and the admin API
//! are `shardgate_core`'s, instantiated here with MariaDB.

pub mod backend;
pub mod server;
pub mod session;

pub use server::{
    read_config_file, start, start_from_file, start_from_read_file, Proxy, RunningProxy, StartError,
};
