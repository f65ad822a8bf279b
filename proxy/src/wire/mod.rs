//! The MySQL client/server protocol as the proxy needs it: framing, the
//! connection phase, command bytes, OK/ERR/EOF, response boundaries and
//! prepared-statement packets. One message family per file.

pub mod command;
pub mod handshake;
pub mod ok_err;
pub mod packet;
pub mod response;
pub mod stmt;
