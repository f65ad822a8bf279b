//! `mysql://user[:password]@host[:port]/database[?options]` URLs of
//! backend servers, with a `Display` and `Debug` that never show the
//! password. The options are TLS's ([`BackendTls`]).

use std::fmt;
use thiserror::Error;

use super::backend_tls::{BackendTls, TlsOptionError};

const DEFAULT_PORT: u16 = 3306;

/// Where and as whom to connect to one backend MySQL server.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct BackendUrl {
    pub user: String,
    pub password: String,
    pub host: String,
    pub port: u16,
    pub database: String,
    /// How the connection is encrypted (`?ssl-mode=...`; none by default).
    pub tls: BackendTls,
}

/// Messages deliberately omit the URL: it may hold a password.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BackendUrlError {
    #[error("backend URL must start with 'mysql://'")]
    Scheme,
    #[error("backend URL has no user (expected mysql://user[:password]@host[:port]/database)")]
    MissingUser,
    #[error("backend URL has no host")]
    MissingHost,
    #[error("backend URL has an invalid port '{0}'")]
    BadPort(String),
    #[error("backend URL has no database (expected .../database)")]
    MissingDatabase,
    #[error("backend URL has a bad percent-encoding")]
    BadPercentEncoding,
    #[error(transparent)]
    Tls(#[from] TlsOptionError),
}

impl BackendUrl {
    pub fn parse(url: &str) -> Result<BackendUrl, BackendUrlError> {
        let rest = url
            .strip_prefix("mysql://")
            .ok_or(BackendUrlError::Scheme)?;
        // The last '@' ends the credentials: a raw '@' in a password is
        // common (so an '@' in an option's value must be written %40).
        let (credentials, location) = rest.rsplit_once('@').ok_or(BackendUrlError::MissingUser)?;
        let (location, query) = location.split_once('?').unwrap_or((location, ""));
        let (user, password) = credentials.split_once(':').unwrap_or((credentials, ""));
        if user.is_empty() {
            return Err(BackendUrlError::MissingUser);
        }
        let (address, database) = location
            .split_once('/')
            .ok_or(BackendUrlError::MissingDatabase)?;
        if database.is_empty() || database.contains('/') {
            return Err(BackendUrlError::MissingDatabase);
        }
        let (host, port) = split_host_port(address)?;
        Ok(BackendUrl {
            user: percent_decode(user)?,
            password: percent_decode(password)?,
            host,
            port,
            database: percent_decode(database)?,
            tls: BackendTls::from_options(query.split('&'), percent_decode)?,
        })
    }
}

impl TryFrom<String> for BackendUrl {
    type Error = BackendUrlError;

    fn try_from(url: String) -> Result<Self, Self::Error> {
        BackendUrl::parse(&url)
    }
}

impl fmt::Display for BackendUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let password = if self.password.is_empty() { "" } else { ":***" };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        write!(
            f,
            "mysql://{}{password}@{host}:{}/{}",
            self.user, self.port, self.database
        )?;
        let tls = &self.tls;
        if tls.mode != Default::default() {
            write!(f, "?ssl-mode={}", tls.mode)?;
        }
        if let Some(ca) = &tls.ca {
            write!(f, "&ssl-ca={}", ca.display())?;
        }
        if let Some(client) = &tls.client_cert {
            write!(
                f,
                "&ssl-cert={}&ssl-key={}",
                client.cert.display(),
                client.key.display()
            )?;
        }
        Ok(())
    }
}

impl fmt::Debug for BackendUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BackendUrl({self})")
    }
}

/// Splits `host[:port]`, accepting `[ipv6]` and `[ipv6]:port`.
fn split_host_port(address: &str) -> Result<(String, u16), BackendUrlError> {
    let (host, port) = if let Some(bracketed) = address.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or(BackendUrlError::MissingHost)?;
        match after {
            "" => (host, None),
            _ => (
                host,
                Some(
                    after
                        .strip_prefix(':')
                        .ok_or_else(|| BackendUrlError::BadPort(after.to_string()))?,
                ),
            ),
        }
    } else {
        match address.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (address, None),
        }
    };
    if host.is_empty() {
        return Err(BackendUrlError::MissingHost);
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(port) => match port.parse::<u16>() {
            Ok(port) if port != 0 => port,
            _ => return Err(BackendUrlError::BadPort(port.to_string())),
        },
    };
    Ok((host.to_string(), port))
}

fn percent_decode(text: &str) -> Result<String, BackendUrlError> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut input = text.bytes();
    while let Some(byte) = input.next() {
        if byte == b'%' {
            let high = input
                .next()
                .and_then(hex_value)
                .ok_or(BackendUrlError::BadPercentEncoding)?;
            let low = input
                .next()
                .and_then(hex_value)
                .ok_or(BackendUrlError::BadPercentEncoding)?;
            bytes.push(high << 4 | low);
        } else {
            bytes.push(byte);
        }
    }
    String::from_utf8(bytes).map_err(|_| BackendUrlError::BadPercentEncoding)
}

fn hex_value(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|value| u8::try_from(value).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_parts_with_defaults() {
        let url = BackendUrl::parse("mysql://root@127.0.0.1:13306/ds0").unwrap();
        assert_eq!((url.user.as_str(), url.password.as_str()), ("root", ""));
        assert_eq!(
            (url.host.as_str(), url.port, url.database.as_str()),
            ("127.0.0.1", 13306, "ds0")
        );
        assert_eq!(BackendUrl::parse("mysql://app@db/x").unwrap().port, 3306);
        let ipv6 = BackendUrl::parse("mysql://app@[::1]:3310/x").unwrap();
        assert_eq!((ipv6.host.as_str(), ipv6.port), ("::1", 3310));
    }

    #[test]
    fn passwords_are_percent_decoded_and_redacted() {
        let url = BackendUrl::parse("mysql://app:p%40ss%3Aw0rd@db:3307/shop").unwrap();
        assert_eq!(url.password, "p@ss:w0rd");
        assert_eq!(url.to_string(), "mysql://app:***@db:3307/shop");
        assert!(!format!("{url:?}").contains("p@ss"));
        let raw_at = BackendUrl::parse("mysql://app:a@b@db/shop").unwrap();
        assert_eq!(raw_at.password, "a@b");
    }

    #[test]
    fn malformed_urls_are_refused() {
        let cases = [
            ("postgres://u@h/d", BackendUrlError::Scheme),
            ("mysql://h/d", BackendUrlError::MissingUser),
            ("mysql://:pw@h/d", BackendUrlError::MissingUser),
            ("mysql://u@/d", BackendUrlError::MissingHost),
            (
                "mysql://u@h:99999/d",
                BackendUrlError::BadPort("99999".into()),
            ),
            ("mysql://u@h:0/d", BackendUrlError::BadPort("0".into())),
            ("mysql://u@h", BackendUrlError::MissingDatabase),
            ("mysql://u@h/", BackendUrlError::MissingDatabase),
            ("mysql://u:%zz@h/d", BackendUrlError::BadPercentEncoding),
            (
                "mysql://u@h/d?ssl=1",
                TlsOptionError::Unknown("ssl".into()).into(),
            ),
            (
                "mysql://u:secret@h/d?ssl-mode=VERIFY_CA",
                TlsOptionError::NeedsCa(crate::config::SslMode::VerifyCa).into(),
            ),
        ];
        for (url, expected) in cases {
            let err = BackendUrl::parse(url).err();
            assert!(!err.iter().any(|e| e.to_string().contains("secret")));
            assert_eq!(err, Some(expected), "{url}");
        }
    }

    #[test]
    fn tls_options_follow_the_database() {
        use crate::config::SslMode;
        let url = BackendUrl::parse(
            "mysql://app:p?w@db:3307/shop?ssl-mode=verify_identity&ssl-ca=/etc/my%20ca.pem",
        )
        .unwrap();
        assert_eq!(
            (url.password.as_str(), url.database.as_str()),
            ("p?w", "shop")
        );
        assert_eq!(url.tls.mode, SslMode::VerifyIdentity);
        assert_eq!(
            url.tls.ca.as_deref(),
            Some(std::path::Path::new("/etc/my ca.pem"))
        );
        assert_eq!(
            url.to_string(),
            "mysql://app:***@db:3307/shop?ssl-mode=VERIFY_IDENTITY&ssl-ca=/etc/my ca.pem"
        );
        let plain = BackendUrl::parse("mysql://app@db/shop?").unwrap();
        assert_eq!(plain.tls.mode, SslMode::Disabled);
        assert_eq!(plain.to_string(), "mysql://app@db:3306/shop");
    }
}
