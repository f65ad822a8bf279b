//! ShardGate's proxy, wiring only: the core's state over MariaDB data
//! sources (`shardgate_core` instantiated with `shardgate_mysql`'s
//! `MariaDb`), its admin API, and the MySQL front end's listener.
//!
//! A statement flows: `shardgate_mysql::session` (command loop, session
//! state) → `shardgate_sql` (classification, analysis, routing plan,
//! rewrite) → `shardgate_core`'s pools of `shardgate_mysql`'s connections
//! → `shardgate_mysql` (framing, forwarding of replies, row codecs) →
//! `shardgate_merge` when several nodes answer.

pub mod server;

pub use server::{
    read_config_file, start, start_from_file, start_from_read_file, Proxy, RunningProxy, StartError,
};
