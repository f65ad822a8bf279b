//! The MySQL client/server protocol as the proxy needs it: framing, the
//! connection phase, command bytes, OK/ERR/EOF, response boundaries and
//! prepared-statement packets, column definitions and the row codecs
//! (text and binary) between result rows and the merge's values. One
//! message family per file.

pub mod column;
pub mod command;
mod float_text;
pub mod handshake;
pub mod ok_err;
pub mod packet;
pub mod params;
pub mod response;
pub mod row;
pub mod stmt;
mod temporal;
