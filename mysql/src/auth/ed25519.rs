//! MariaDB's `ed25519` (client side `client_ed25519`): the client signs a
//! 32-byte challenge with an Ed25519 key whose secret scalar comes from
//! SHA512(password) — the whole password, where standard Ed25519 hashes a
//! 32-byte seed — so the signature checks with the standard verification
//! against the public key MariaDB stores.

use curve25519_dalek::edwards::EdwardsPoint;
use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha512};

/// The client plugin's name, as the auth switch request names it.
pub const NAME: &str = "client_ed25519";

/// The public key of a password: the clamped first half of its SHA-512
/// times the base point (what MariaDB stores, base64).
pub fn public_key(password: &[u8]) -> [u8; 32] {
    let hash = Sha512::digest(password);
    let mut secret = [0u8; 32];
    secret.copy_from_slice(&hash[..32]);
    EdwardsPoint::mul_base_clamped(secret).compress().to_bytes()
}

/// Whether `answer` is a signature of `challenge` by `key`'s owner.
pub fn verify(key: &[u8; 32], challenge: &[u8; 32], answer: &[u8]) -> bool {
    let (Ok(key), Ok(signature)) = (VerifyingKey::from_bytes(key), Signature::from_slice(answer))
    else {
        return false;
    };
    key.verify_strict(challenge, &signature).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek::scalar::{clamp_integer, Scalar};

    /// A client's signature as MariaDB's client_ed25519 makes it (its
    /// ref10 `crypto_sign` with SHA512(password) as the expanded key).
    fn sign(password: &[u8], message: &[u8]) -> [u8; 64] {
        let hash = Sha512::digest(password);
        let mut low = [0u8; 32];
        low.copy_from_slice(&hash[..32]);
        let a = Scalar::from_bytes_mod_order(clamp_integer(low));
        let public = public_key(password);
        let r = Scalar::from_hash(
            Sha512::new()
                .chain_update(&hash[32..])
                .chain_update(message),
        );
        let big_r = EdwardsPoint::mul_base(&r).compress();
        let k = Scalar::from_hash(
            Sha512::new()
                .chain_update(big_r.as_bytes())
                .chain_update(public)
                .chain_update(message),
        );
        let s = r + k * a;
        let mut signature = [0u8; 64];
        signature[..32].copy_from_slice(big_r.as_bytes());
        signature[32..].copy_from_slice(s.as_bytes());
        signature
    }

    #[test]
    fn the_public_key_is_what_mariadb_stores() {
        // The authentication_string of a user IDENTIFIED VIA ed25519 USING
        // PASSWORD('secret') on MariaDB 10.11: ZIgUREUg5PVgQ6LskhXmO+eZLS0nC8be6HPjYWR4YJY
        let stored = [
            0x64, 0x88, 0x14, 0x44, 0x45, 0x20, 0xe4, 0xf5, 0x60, 0x43, 0xa2, 0xec, 0x92, 0x15,
            0xe6, 0x3b, 0xe7, 0x99, 0x2d, 0x2d, 0x27, 0x0b, 0xc6, 0xde, 0xe8, 0x73, 0xe3, 0x61,
            0x64, 0x78, 0x60, 0x96,
        ];
        assert_eq!(public_key(b"secret"), stored);
    }

    #[test]
    fn a_client_signature_verifies_against_the_public_key() {
        let challenge = [7u8; 32];
        let answer = sign(b"secret", &challenge);
        assert!(verify(&public_key(b"secret"), &challenge, &answer));
        assert!(!verify(&public_key(b"other"), &challenge, &answer));
        assert!(!verify(&public_key(b"secret"), &[8u8; 32], &answer));
        assert!(!verify(&public_key(b"secret"), &challenge, &answer[..63]));
    }
}
