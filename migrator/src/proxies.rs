//! The ShardGate proxies' admin API as the cutover drives it: stage and
//! activate a rules version, pause and resume statements on a logical
//! table, and read the pauses (queued statements, in-flight transactions).
//! Each request is bounded by a timeout, so that a proxy that does not
//! answer fails the step instead of stalling a pause; `https://` admin URLs
//! are verified against the system's trust store (`SSL_CERT_FILE` names
//! another). A bearer token for the admin API is read from
//! `SHARDGATE_ADMIN_TOKEN`.

use reqwest::header::CONTENT_TYPE;
use reqwest::Method;
use serde::Serialize;
use shardgate_admin_api::{ActivateRequest, Activated, PauseRequest, ResumeRequest, Staged};
use std::time::Duration;
use thiserror::Error;

/// The environment variable holding the admin API's bearer token, if the
/// proxies require one (kept out of the job's state file on purpose).
pub const TOKEN_VARIABLE: &str = "SHARDGATE_ADMIN_TOKEN";

#[derive(Debug, Error)]
pub enum ProxyError {
    #[error("`{0}` is not a proxy admin URL like http://127.0.0.1:9797")]
    BadUrl(String),
    #[error("cannot set up an HTTP client: {0}")]
    Client(String),
    #[error("{method} {url}: {problem}")]
    Request {
        method: &'static str,
        url: String,
        problem: String,
    },
    #[error("{method} {url}: HTTP {status}: {body}")]
    Status {
        method: &'static str,
        url: String,
        status: u16,
        body: String,
    },
    #[error("{method} {url}: unexpected answer {body}: {problem}")]
    Answer {
        method: &'static str,
        url: String,
        body: String,
        problem: String,
    },
}

pub use shardgate_admin_api::{Pause, Scope};

/// One proxy's admin API.
#[derive(Debug, Clone)]
pub struct ProxyAdmin {
    /// The admin URL, without a trailing slash; paths are appended.
    url: String,
    token: Option<String>,
    timeout: Duration,
    client: reqwest::Client,
}

impl ProxyAdmin {
    /// `url`: `http://host:port` or `https://host:port`, with an optional
    /// path prefix.
    pub fn new(url: &str, timeout: Duration) -> Result<ProxyAdmin, ProxyError> {
        let bad = || ProxyError::BadUrl(url.to_string());
        let parsed = reqwest::Url::parse(url).map_err(|_| bad())?;
        let explicit_port = url
            .split_once("://")
            .map(|(_, rest)| rest.split('/').next().unwrap_or(""))
            .is_some_and(|authority| authority.rsplit_once(':').is_some());
        if !matches!(parsed.scheme(), "http" | "https")
            || parsed.host_str().is_none_or(str::is_empty)
            || !explicit_port
        {
            return Err(bad());
        }
        // ring as rustls' crypto; installed once per process, so a second
        // install (another client) is refused, harmlessly.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .build()
            .map_err(|error| ProxyError::Client(error.to_string()))?;
        Ok(ProxyAdmin {
            url: url.trim_end_matches('/').to_string(),
            token: std::env::var(TOKEN_VARIABLE).ok().filter(|t| !t.is_empty()),
            timeout,
            client,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The same proxy with another bound on each request.
    pub fn with_timeout(&self, timeout: Duration) -> ProxyAdmin {
        ProxyAdmin {
            timeout,
            ..self.clone()
        }
    }

    /// `PUT /api/rules/staged`: stages a whole configuration; returns the
    /// staged version.
    pub async fn stage(&self, config_text: &str) -> Result<u64, ProxyError> {
        let reply: Staged = self
            .call(
                Method::PUT,
                "/api/rules/staged",
                "text/plain",
                config_text.as_bytes().to_vec(),
            )
            .await?;
        Ok(reply.staged_version)
    }

    /// `DELETE /api/rules/staged`.
    pub async fn discard_staged(&self) -> Result<(), ProxyError> {
        self.call::<serde_json::Value>(Method::DELETE, "/api/rules/staged", "text/plain", vec![])
            .await
            .map(drop)
    }

    /// `POST /api/rules/activate`: returns the now active version.
    pub async fn activate(&self, version: u64) -> Result<u64, ProxyError> {
        let reply: Activated = self
            .post("/api/rules/activate", &ActivateRequest { version })
            .await?;
        Ok(reply.active_version)
    }

    /// `POST /api/pauses`: pauses (or renews the pause of) a table.
    pub async fn pause(
        &self,
        table: &str,
        scope: Scope,
        max_queue_ms: u64,
        lease_ms: u64,
    ) -> Result<Vec<Pause>, ProxyError> {
        let request = PauseRequest {
            tables: vec![table.to_string()],
            scope,
            max_queue_ms,
            lease_ms,
        };
        self.post("/api/pauses", &request).await
    }

    /// `POST /api/pauses/resume`.
    pub async fn resume(&self, table: &str) -> Result<Vec<Pause>, ProxyError> {
        let request = ResumeRequest {
            tables: vec![table.to_string()],
        };
        self.post("/api/pauses/resume", &request).await
    }

    /// `GET /api/pauses`.
    pub async fn pauses(&self) -> Result<Vec<Pause>, ProxyError> {
        self.call(Method::GET, "/api/pauses", "application/json", vec![])
            .await
    }

    async fn post<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, ProxyError> {
        let body = serde_json::to_vec(body).map_err(|error| ProxyError::Request {
            method: "POST",
            url: format!("{}{path}", self.url),
            problem: format!("cannot encode the request: {error}"),
        })?;
        self.call(Method::POST, path, "application/json", body)
            .await
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<T, ProxyError> {
        let method_name = method_name(&method);
        let url = format!("{}{path}", self.url);
        let request_error = |problem: String| ProxyError::Request {
            method: method_name,
            url: url.clone(),
            problem,
        };
        let mut request = self
            .client
            .request(method, &url)
            .timeout(self.timeout)
            .header(CONTENT_TYPE, content_type)
            .body(body);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let exchange = async {
            let response = request.send().await?;
            let status = response.status().as_u16();
            Ok::<_, reqwest::Error>((status, response.bytes().await?))
        };
        let (status, body) = exchange.await.map_err(|error| {
            request_error(if error.is_timeout() {
                format!("no answer within {:?}", self.timeout)
            } else if error.is_connect() {
                format!("cannot connect: {}", error_chain(&error))
            } else {
                error_chain(&error)
            })
        })?;
        let text = String::from_utf8_lossy(&body).into_owned();
        if !(200..300).contains(&status) {
            return Err(ProxyError::Status {
                method: method_name,
                url,
                status,
                body: text,
            });
        }
        serde_json::from_slice(&body).map_err(|error| ProxyError::Answer {
            method: method_name,
            url,
            body: text,
            problem: error.to_string(),
        })
    }
}

/// An error with its causes (reqwest's own message names only the step).
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    std::iter::successors(Some(error), |e| e.source())
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}

fn method_name(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::PUT => "PUT",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        _ => "request",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_urls_need_http_or_https_a_host_and_a_port() {
        let admin = ProxyAdmin::new("http://127.0.0.1:9797/", Duration::from_secs(1)).unwrap();
        assert_eq!(admin.url(), "http://127.0.0.1:9797");
        let prefixed = ProxyAdmin::new("http://proxy-a:80/admin/", Duration::from_secs(1)).unwrap();
        assert_eq!(prefixed.url(), "http://proxy-a:80/admin");
        let tls = ProxyAdmin::new("https://proxy-b:9443", Duration::from_secs(1)).unwrap();
        assert_eq!(tls.url(), "https://proxy-b:9443");
        for bad in [
            "127.0.0.1:9797",
            "ftp://x:1",
            "http://x",
            "http://:80",
            "http://x:port",
        ] {
            assert!(
                matches!(
                    ProxyAdmin::new(bad, Duration::from_secs(1)),
                    Err(ProxyError::BadUrl(_))
                ),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn a_proxy_that_does_not_listen_is_a_request_error() {
        // A port just released: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let admin =
            ProxyAdmin::new(&format!("http://127.0.0.1:{port}"), Duration::from_secs(2)).unwrap();
        let error = admin.pauses().await.unwrap_err();
        assert!(matches!(error, ProxyError::Request { .. }), "{error}");
        assert!(error.to_string().contains("cannot connect"), "{error}");
    }
}
