//! `mysql_native_password`: the client answers the 20-byte challenge with
//! SHA1(password) XOR SHA1(challenge + SHA1(SHA1(password))), so the server
//! needs only the stored hash SHA1(SHA1(password)) to check it.

use sha1::{Digest, Sha1};

pub const NAME: &str = "mysql_native_password";

/// SHA1(SHA1(password)): what a server stores (`*` and its hex digits).
pub fn stored_hash(password: &[u8]) -> [u8; 20] {
    Sha1::digest(Sha1::digest(password)).into()
}

/// Whether `answer` is the scramble of `challenge` by the password whose
/// stored hash is `stored`.
pub fn verify(challenge: &[u8; 20], stored: &[u8; 20], answer: &[u8]) -> bool {
    let Ok(answer) = <&[u8; 20]>::try_from(answer) else {
        return false;
    };
    let mut hasher = Sha1::new();
    hasher.update(challenge);
    hasher.update(stored);
    let key: [u8; 20] = hasher.finalize().into();
    // answer XOR key is SHA1(password), whose SHA1 is the stored hash.
    let mut password_sha1 = [0u8; 20];
    for (out, (a, k)) in password_sha1.iter_mut().zip(answer.iter().zip(key)) {
        *out = a ^ k;
    }
    let candidate: [u8; 20] = Sha1::digest(password_sha1).into();
    super::constant_time_eq(&candidate, stored)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mysql_common::auth::plugins::mysql_native_password::scramble_native;

    #[test]
    fn the_stored_hash_is_what_mariadb_stores() {
        // SELECT PASSWORD('secret') on MariaDB 10.11.
        let hash = stored_hash(b"secret");
        let hex: String = hash.iter().map(|b| format!("{b:02X}")).collect();
        assert_eq!(hex, "14E65567ABDB5135D0CFD9A70B3032C179A49EE7");
    }

    #[test]
    fn a_client_scramble_verifies_against_the_stored_hash() {
        let challenge = *b"0123456789abcdefghij";
        let answer = scramble_native(&challenge, b"secret").unwrap();
        assert!(verify(&challenge, &stored_hash(b"secret"), &answer));
        assert!(!verify(&challenge, &stored_hash(b"other"), &answer));
        assert!(!verify(
            b"jihgfedcba9876543210",
            &stored_hash(b"secret"),
            &answer
        ));
        assert!(!verify(&challenge, &stored_hash(b"secret"), &answer[..19]));
    }
}
