//! The authentication plugins the proxy checks client logins with: what
//! each plugin computes from a password and a server challenge, checked
//! against the user's credential (see `rules::config::Credential`). The
//! exchanges themselves (auth switch, more data) are the login's, in
//! `session::auth`.

pub mod caching_sha2;
pub mod ed25519;
pub mod native;

/// Compares secrets in time that does not depend on where they differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
