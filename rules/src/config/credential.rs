//! What a user logs in with: the password itself (written in the config,
//! or read from a file or the environment at each load, so secrets need
//! not sit in the file) or the hash a MariaDB server stores for it, and the
//! authentication plugin that checks it.

use std::fmt;

use base64::Engine;
use serde::Deserialize;

use super::error::{ConfigError, Problem};
use super::UserConfig;

/// A user's secret, as the login checks it.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// The password itself.
    Password(String),
    /// `mysql_native_password`'s stored hash, SHA1(SHA1(password)): MySQL's
    /// `*` and 40 hex digits (`SELECT PASSWORD('...')`).
    NativeHash([u8; 20]),
    /// MariaDB `ed25519`'s stored public key: 43 base64 characters (the
    /// `authentication_string` of an account `IDENTIFIED VIA ed25519`).
    Ed25519Key([u8; 32]),
}

impl Default for Credential {
    fn default() -> Self {
        Credential::Password(String::new())
    }
}

/// Never shows the secret.
impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Credential::Password(_) => "Password(***)",
            Credential::NativeHash(_) => "NativeHash(***)",
            Credential::Ed25519Key(_) => "Ed25519Key(***)",
        })
    }
}

/// The authentication plugins a user may log in with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthPlugin {
    MysqlNativePassword,
    CachingSha2Password,
    /// MariaDB's `ed25519` (its client side is `client_ed25519`).
    Ed25519,
}

impl AuthPlugin {
    /// As the config spells it.
    pub fn name(self) -> &'static str {
        match self {
            AuthPlugin::MysqlNativePassword => "mysql_native_password",
            AuthPlugin::CachingSha2Password => "caching_sha2_password",
            AuthPlugin::Ed25519 => "ed25519",
        }
    }

    /// Whether the plugin can check `credential`: an ed25519 key only
    /// checks ed25519 signatures, and a native hash cannot check them.
    fn checks(self, credential: &Credential) -> bool {
        match credential {
            Credential::Password(_) => true,
            Credential::NativeHash(_) => self != AuthPlugin::Ed25519,
            Credential::Ed25519Key(_) => self == AuthPlugin::Ed25519,
        }
    }
}

impl UserConfig {
    /// The plugin this user logs in with: `auth_plugin`, else ed25519 for
    /// an ed25519 key and `mysql_native_password` otherwise.
    pub fn plugin(&self) -> AuthPlugin {
        self.auth_plugin.unwrap_or(match self.credential {
            Credential::Ed25519Key(_) => AuthPlugin::Ed25519,
            _ => AuthPlugin::MysqlNativePassword,
        })
    }

    /// Reads the user's secret from where the config says it is.
    pub(super) fn resolve_credential(&mut self) -> Result<(), ConfigError> {
        let key = |field: &str| format!("server.users.{}.{field}", self.name);
        let given = [
            ("password", !self.password.is_empty()),
            ("password_hash", self.password_hash.is_some()),
            ("password_file", self.password_file.is_some()),
            ("password_env", self.password_env.is_some()),
        ];
        let mut set = given.iter().filter(|(_, set)| *set).map(|(name, _)| *name);
        if let (Some(first), Some(second)) = (set.next(), set.next()) {
            return Err(ConfigError::invalid(
                key(second),
                Problem::BadValue {
                    value: second.into(),
                    reason: format!("give one of password, password_hash, password_file, password_env, not both {first} and {second}"),
                },
            ));
        }
        self.credential = if let Some(hash) = &self.password_hash {
            parse_hash(hash).map_err(|reason| {
                // The value is a secret too: the message names the key only.
                ConfigError::invalid(
                    key("password_hash"),
                    Problem::BadValue {
                        value: "***".into(),
                        reason,
                    },
                )
            })?
        } else if let Some(path) = &self.password_file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError::invalid(
                    key("password_file"),
                    Problem::BadValue {
                        value: path.display().to_string(),
                        reason: e.to_string(),
                    },
                )
            })?;
            // One line ending, as `echo` and secret stores leave it.
            let password = text
                .strip_suffix('\n')
                .map(|t| t.strip_suffix('\r').unwrap_or(t))
                .unwrap_or(&text);
            Credential::Password(password.to_string())
        } else if let Some(name) = &self.password_env {
            let password = std::env::var(name).map_err(|e| {
                ConfigError::invalid(
                    key("password_env"),
                    Problem::BadValue {
                        value: name.clone(),
                        reason: e.to_string(),
                    },
                )
            })?;
            Credential::Password(password)
        } else {
            Credential::Password(self.password.clone())
        };
        let plugin = self.plugin();
        if !plugin.checks(&self.credential) {
            return Err(ConfigError::invalid(
                key("auth_plugin"),
                Problem::BadValue {
                    value: plugin.name().into(),
                    reason: format!(
                        "it cannot check a {:?}; give the password (or a hash of this plugin's)",
                        self.credential
                    ),
                },
            ));
        }
        Ok(())
    }
}

/// `*` + 40 hex digits, or 43 base64 characters (no padding).
fn parse_hash(text: &str) -> Result<Credential, String> {
    if let Some(hex) = text.strip_prefix('*') {
        let mut hash = [0u8; 20];
        return hex::decode_to_slice(hex, &mut hash)
            .map(|()| Credential::NativeHash(hash))
            .map_err(|_| "a mysql_native_password hash is '*' and 40 hex digits".into());
    }
    let key = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(text)
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .ok_or("expected '*' and 40 hex digits (mysql_native_password) or 43 base64 characters (ed25519)")?;
    Ok(Credential::Ed25519Key(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_parse_in_the_forms_mariadb_prints() {
        // PASSWORD('secret'), and the authentication_string of a user
        // IDENTIFIED VIA ed25519 USING PASSWORD('secret'), on MariaDB 10.11.
        let native = parse_hash("*14E65567ABDB5135D0CFD9A70B3032C179A49EE7").unwrap();
        assert!(matches!(native, Credential::NativeHash(h) if h[0] == 0x14 && h[19] == 0xE7));
        let ed = parse_hash("ZIgUREUg5PVgQ6LskhXmO+eZLS0nC8be6HPjYWR4YJY").unwrap();
        assert!(matches!(ed, Credential::Ed25519Key(k) if k[0] == 0x64));
        assert!(parse_hash("*14E6").is_err());
        assert!(parse_hash("secret").is_err());
        assert_eq!(format!("{native:?}"), "NativeHash(***)");
    }
}
