//! `mysql://user[:password]@host[:port]/database` URLs of backend servers,
//! with a `Display` and `Debug` that never show the password.

use std::fmt;
use thiserror::Error;

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
    #[error("backend URL options ('?...') are not supported")]
    Options,
}

impl BackendUrl {
    pub fn parse(url: &str) -> Result<BackendUrl, BackendUrlError> {
        let rest = url
            .strip_prefix("mysql://")
            .ok_or(BackendUrlError::Scheme)?;
        if rest.contains('?') {
            return Err(BackendUrlError::Options);
        }
        // The last '@' ends the credentials: a raw '@' in a password is common.
        let (credentials, location) = rest.rsplit_once('@').ok_or(BackendUrlError::MissingUser)?;
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
        )
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
            ("mysql://u@h/d?ssl=1", BackendUrlError::Options),
        ];
        for (url, expected) in cases {
            assert_eq!(BackendUrl::parse(url), Err(expected), "{url}");
        }
    }
}
