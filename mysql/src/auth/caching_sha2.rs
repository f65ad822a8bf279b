//! `caching_sha2_password` (MySQL 8's default). Its fast path answers the
//! 20-byte challenge with SHA256(password) XOR SHA256(SHA256(SHA256(password))
//! followed by the challenge), which the server checks with the digest
//! SHA256(SHA256(password)) when it has it. Otherwise it asks for full
//! authentication, where the client sends the password itself: over TLS
//! only here (the proxy has no RSA key pair to offer in the clear). The
//! digest learnt from a full authentication is kept for the fast path of
//! later logins, as the server's cache keeps it.

use std::collections::HashMap;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

pub const NAME: &str = "caching_sha2_password";

/// The server's "more data" answers after the fast path's scramble.
pub const FAST_AUTH_OK: u8 = 0x03;
pub const PERFORM_FULL_AUTHENTICATION: u8 = 0x04;
/// What a client in the clear sends to ask for the server's RSA public key.
pub const REQUEST_PUBLIC_KEY: u8 = 0x02;

/// SHA256(SHA256(password)): what the fast path is checked with.
pub fn digest(password: &[u8]) -> [u8; 32] {
    Sha256::digest(Sha256::digest(password)).into()
}

/// Whether `answer` is the fast-path scramble of `challenge` by the
/// password whose digest is `digest`.
pub fn verify(challenge: &[u8; 20], digest: &[u8; 32], answer: &[u8]) -> bool {
    let Ok(answer) = <&[u8; 32]>::try_from(answer) else {
        return false;
    };
    let mut hasher = Sha256::new();
    hasher.update(digest);
    hasher.update(challenge);
    let key: [u8; 32] = hasher.finalize().into();
    // answer XOR key is SHA256(password), whose SHA256 is the digest.
    let mut password_sha256 = [0u8; 32];
    for (out, (a, k)) in password_sha256.iter_mut().zip(answer.iter().zip(key)) {
        *out = a ^ k;
    }
    let candidate: [u8; 32] = Sha256::digest(password_sha256).into();
    super::constant_time_eq(&candidate, digest)
}

/// Digests learnt from full authentications, by user, each with the
/// stored hash it was checked against: a changed credential (a reload)
/// no longer matches, so its digest is not used. At most one entry per
/// configured user (only a successful full authentication adds one).
#[derive(Default)]
pub struct FastAuthCache(Mutex<HashMap<String, Learnt>>);

/// A digest, with the stored hash it was checked against.
struct Learnt {
    stored: [u8; 20],
    digest: [u8; 32],
}

impl FastAuthCache {
    /// The digest of `user`'s password, if learnt under `stored`.
    pub fn digest(&self, user: &str, stored: &[u8; 20]) -> Option<[u8; 32]> {
        let cache = self.0.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .get(user)
            .filter(|learnt| learnt.stored == *stored)
            .map(|learnt| learnt.digest)
    }

    pub fn learn(&self, user: &str, stored: [u8; 20], digest: [u8; 32]) {
        let mut cache = self.0.lock().unwrap_or_else(|e| e.into_inner());
        cache.insert(user.to_string(), Learnt { stored, digest });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mysql_common::auth::plugins::caching_sha2_password::scramble_sha256;

    #[test]
    fn a_client_scramble_verifies_against_the_digest() {
        let challenge = *b"0123456789abcdefghij";
        let answer = scramble_sha256(&challenge, b"secret").unwrap();
        assert!(verify(&challenge, &digest(b"secret"), &answer));
        assert!(!verify(&challenge, &digest(b"other"), &answer));
        assert!(!verify(
            b"jihgfedcba9876543210",
            &digest(b"secret"),
            &answer
        ));
        assert!(!verify(&challenge, &digest(b"secret"), &answer[..31]));
    }

    #[test]
    fn a_cached_digest_serves_only_the_credential_it_was_learnt_under() {
        let cache = FastAuthCache::default();
        let (old, new) = ([1u8; 20], [2u8; 20]);
        cache.learn("app", old, digest(b"secret"));
        assert_eq!(cache.digest("app", &old), Some(digest(b"secret")));
        assert_eq!(cache.digest("app", &new), None);
        assert_eq!(cache.digest("other", &old), None);
    }
}
