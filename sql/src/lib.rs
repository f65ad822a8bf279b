//! SQL text handling: lexing, statement classification and the SQL admin
//! statements ShardGate answers itself.

pub mod admin;
pub mod classify;
pub mod dialect;
pub mod label;
pub mod lex;
mod mariadb_set;
pub mod reads;
pub mod shard;
pub mod statements;
pub mod text;
