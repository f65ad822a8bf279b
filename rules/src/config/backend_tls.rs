//! The TLS options of a data source URL (`?ssl-mode=...&ssl-ca=...`),
//! named as the MySQL and MariaDB command-line clients name them, so that
//! a URL reads like the `mysql` command a DBA would type.

use std::fmt;
use std::path::PathBuf;

use thiserror::Error;

/// How the proxy uses TLS to a data source (MySQL's `--ssl-mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum SslMode {
    /// Never (the default).
    #[default]
    Disabled,
    /// When the server offers it (CLIENT_SSL in its greeting), without
    /// verifying its certificate; in clear otherwise.
    Preferred,
    /// Always, refusing a server that does not offer it; the certificate is
    /// not verified (MySQL's meaning: encryption against eavesdroppers, not
    /// against a man in the middle).
    Required,
    /// Always, with the server's certificate chain verified against
    /// `ssl-ca`, whatever host name it is issued for.
    VerifyCa,
    /// As `VerifyCa`, and the certificate must be issued for the URL's host.
    VerifyIdentity,
}

impl SslMode {
    const NAMES: [(&'static str, SslMode); 5] = [
        ("DISABLED", SslMode::Disabled),
        ("PREFERRED", SslMode::Preferred),
        ("REQUIRED", SslMode::Required),
        ("VERIFY_CA", SslMode::VerifyCa),
        ("VERIFY_IDENTITY", SslMode::VerifyIdentity),
    ];

    fn parse(value: &str) -> Option<SslMode> {
        Self::NAMES
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(value))
            .map(|&(_, mode)| mode)
    }

    pub fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|&&(_, mode)| mode == self)
            .map_or("DISABLED", |&(name, _)| name)
    }

    /// Whether the server's certificate is checked against a CA.
    pub fn verifies(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyIdentity)
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A data source's TLS settings, as its URL gives them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct BackendTls {
    pub mode: SslMode,
    /// PEM file of the CA certificates that verify the server (`ssl-ca`).
    pub ca: Option<PathBuf>,
    /// PEM files of a client certificate chain and its key, for servers
    /// that require one (`ssl-cert`, `ssl-key`).
    pub client_cert: Option<ClientCert>,
}

/// A client certificate chain and its private key (PEM files).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientCert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Why a URL's options were refused. The URL itself is never quoted: it
/// may hold a password.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TlsOptionError {
    #[error("backend URL option '{0}' is unknown (known: ssl-mode, ssl-ca, ssl-cert, ssl-key)")]
    Unknown(String),
    #[error("backend URL option '{0}' has no value (expected {0}=...)")]
    NoValue(String),
    #[error("backend URL option '{0}' is given twice")]
    Twice(String),
    #[error("backend URL option ssl-mode='{0}' is not one of DISABLED, PREFERRED, REQUIRED, VERIFY_CA, VERIFY_IDENTITY")]
    BadMode(String),
    #[error("backend URL option ssl-mode={0} needs ssl-ca (the CA certificates to verify the server with)")]
    NeedsCa(SslMode),
    #[error("backend URL option ssl-ca is only used with ssl-mode=VERIFY_CA or VERIFY_IDENTITY (ssl-mode is {0})")]
    CaUnused(SslMode),
    #[error("backend URL options ssl-cert and ssl-key go together")]
    CertWithoutKey,
    #[error("backend URL options ssl-cert and ssl-key need TLS (ssl-mode is DISABLED)")]
    CertUnused,
}

impl BackendTls {
    /// Reads the `name=value` pairs of a URL's query (already split on
    /// '&', values percent-decoded by the caller's `decode`).
    pub(super) fn from_options<'a, E>(
        pairs: impl Iterator<Item = &'a str>,
        decode: impl Fn(&str) -> Result<String, E>,
    ) -> Result<BackendTls, E>
    where
        E: From<TlsOptionError>,
    {
        let mut mode = None;
        let (mut ca, mut cert, mut key) = (None, None, None);
        for pair in pairs.filter(|p| !p.is_empty()) {
            let (name, value) = pair
                .split_once('=')
                .ok_or_else(|| TlsOptionError::NoValue(pair.to_string()))?;
            if value.is_empty() {
                return Err(TlsOptionError::NoValue(name.to_string()).into());
            }
            let value = decode(value)?;
            let twice = || TlsOptionError::Twice(name.to_string());
            match name {
                "ssl-mode" => {
                    let parsed = SslMode::parse(&value).ok_or(TlsOptionError::BadMode(value))?;
                    if mode.replace(parsed).is_some() {
                        return Err(twice().into());
                    }
                }
                "ssl-ca" | "ssl-cert" | "ssl-key" => {
                    let slot = match name {
                        "ssl-ca" => &mut ca,
                        "ssl-cert" => &mut cert,
                        _ => &mut key,
                    };
                    if slot.replace(PathBuf::from(value)).is_some() {
                        return Err(twice().into());
                    }
                }
                _ => return Err(TlsOptionError::Unknown(name.to_string()).into()),
            }
        }
        Ok(BackendTls::checked(
            mode.unwrap_or_default(),
            ca,
            cert,
            key,
        )?)
    }

    /// Refuses settings that would be silently ignored: a CA that verifies
    /// nothing, half a client certificate, a certificate without TLS.
    fn checked(
        mode: SslMode,
        ca: Option<PathBuf>,
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
    ) -> Result<BackendTls, TlsOptionError> {
        match (&ca, mode.verifies()) {
            (None, true) => return Err(TlsOptionError::NeedsCa(mode)),
            (Some(_), false) => return Err(TlsOptionError::CaUnused(mode)),
            _ => {}
        }
        let client_cert = match (cert, key) {
            (None, None) => None,
            (Some(cert), Some(key)) if mode != SslMode::Disabled => Some(ClientCert { cert, key }),
            (Some(_), Some(_)) => return Err(TlsOptionError::CertUnused),
            _ => return Err(TlsOptionError::CertWithoutKey),
        };
        Ok(BackendTls {
            mode,
            ca,
            client_cert,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(query: &str) -> Result<BackendTls, TlsOptionError> {
        BackendTls::from_options(query.split('&'), |v| Ok(v.to_string()))
    }

    #[test]
    fn modes_are_read_in_any_case_and_default_to_disabled() {
        assert_eq!(parse("").unwrap(), BackendTls::default());
        assert_eq!(parse("ssl-mode=required").unwrap().mode, SslMode::Required);
        assert_eq!(
            parse("ssl-mode=Preferred").unwrap().mode,
            SslMode::Preferred
        );
        let verified = parse("ssl-mode=VERIFY_IDENTITY&ssl-ca=/etc/ca.pem").unwrap();
        assert_eq!(verified.mode, SslMode::VerifyIdentity);
        assert_eq!(verified.ca, Some(PathBuf::from("/etc/ca.pem")));
        let client = parse("ssl-mode=VERIFY_CA&ssl-ca=a&ssl-cert=c&ssl-key=k").unwrap();
        assert_eq!(
            client.client_cert,
            Some(ClientCert {
                cert: "c".into(),
                key: "k".into()
            })
        );
        for (name, mode) in SslMode::NAMES {
            assert_eq!(mode.to_string(), name);
        }
    }

    #[test]
    fn settings_that_would_be_ignored_are_refused() {
        let cases = [
            ("ssl=1", TlsOptionError::Unknown("ssl".into())),
            ("ssl-mode", TlsOptionError::NoValue("ssl-mode".into())),
            ("ssl-mode=", TlsOptionError::NoValue("ssl-mode".into())),
            ("ssl-mode=ON", TlsOptionError::BadMode("ON".into())),
            (
                "ssl-mode=REQUIRED&ssl-mode=DISABLED",
                TlsOptionError::Twice("ssl-mode".into()),
            ),
            (
                "ssl-mode=VERIFY_CA",
                TlsOptionError::NeedsCa(SslMode::VerifyCa),
            ),
            (
                "ssl-mode=REQUIRED&ssl-ca=/ca.pem",
                TlsOptionError::CaUnused(SslMode::Required),
            ),
            (
                "ssl-ca=/ca.pem",
                TlsOptionError::CaUnused(SslMode::Disabled),
            ),
            (
                "ssl-mode=REQUIRED&ssl-cert=c",
                TlsOptionError::CertWithoutKey,
            ),
            ("ssl-cert=c&ssl-key=k", TlsOptionError::CertUnused),
        ];
        for (query, expected) in cases {
            assert_eq!(parse(query), Err(expected), "{query}");
        }
    }
}
