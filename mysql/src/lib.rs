//! The MySQL client/server protocol as ShardGate needs it: framing, the
//! connection phase, command bytes, OK/ERR/EOF and the error codes the proxy
//! sends, response boundaries and prepared-statement packets, column
//! definitions and the row codecs (text and binary) between result rows and
//! the merge's protocol-neutral values. One message family per file; and
//! the client side of a data source ([`backend`]): login, commands, replies.
//!
//! It depends on the SQL and merge crates (for their neutral types), never
//! on the proxy: the layering is the crate graph's.

pub mod auth;
pub mod backend;
pub mod codes;
pub mod column;
pub mod command;
pub mod errors;
mod float_text;
pub mod gtid;
pub mod handshake;
pub mod listener;
pub mod ok_err;
pub mod packet;
pub mod params;
pub mod response;
pub mod row;
pub mod session;
pub mod stmt;
mod temporal;
