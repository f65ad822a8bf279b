//! Alerts: one WARN log line, a metric, a place in the recent-alerts list
//! (admin API, dashboard) and, when `alerts.webhook` is configured, a JSON
//! POST (http or https, verified against the system's trust store) sent in
//! the background — retried briefly, dropped rather than ever blocking a
//! query.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::metrics::Metrics;

/// Alerts kept for the admin API.
const RECENT: usize = 50;
/// Alerts queued for the webhook before new ones are dropped.
const QUEUE: usize = 256;
const ATTEMPTS: u32 = 3;
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

/// One alert as logged, listed and posted.
#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    /// `pool_saturated`, `health_check_failed`, ...
    pub alert: String,
    pub data_source: String,
    pub message: String,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// Where alerts go.
pub struct Alerts {
    metrics: Arc<Metrics>,
    recent: Mutex<VecDeque<Alert>>,
    webhook: Option<mpsc::Sender<Alert>>,
}

impl Alerts {
    /// Starts the webhook sender when `webhook` is set.
    pub fn new(metrics: Arc<Metrics>, webhook: Option<String>) -> Arc<Self> {
        let webhook = webhook.map(|url| {
            let (tx, rx) = mpsc::channel(QUEUE);
            tokio::spawn(post_alerts(url, rx));
            tx
        });
        Arc::new(Alerts {
            metrics,
            recent: Mutex::new(VecDeque::new()),
            webhook,
        })
    }

    /// Raises an alert.
    pub fn fire(&self, alert: &str, data_source: &str, message: String) {
        warn!(alert, data_source, "ALERT: {message}");
        self.metrics.alert(alert, data_source);
        let at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let alert = Alert {
            alert: alert.to_owned(),
            data_source: data_source.to_owned(),
            message,
            at_ms,
        };
        {
            let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            if recent.len() == RECENT {
                recent.pop_front();
            }
            recent.push_back(alert.clone());
        }
        if let Some(tx) = &self.webhook {
            if tx.try_send(alert).is_err() {
                warn!("alert webhook queue full; alert not posted");
            }
        }
    }

    /// The latest alerts, newest last.
    pub fn recent(&self) -> Vec<Alert> {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.iter().cloned().collect()
    }
}

async fn post_alerts(url: String, mut rx: mpsc::Receiver<Alert>) {
    crate::tls::install_crypto_provider();
    let client = match reqwest::Client::builder().timeout(ATTEMPT_TIMEOUT).build() {
        Ok(client) => client,
        Err(e) => {
            warn!(%url, "alert webhook disabled: cannot set up an HTTP client: {e}");
            return;
        }
    };
    while let Some(alert) = rx.recv().await {
        for attempt in 1..=ATTEMPTS {
            match post(&client, &url, &alert).await {
                Ok(()) => {
                    debug!(%url, "alert posted");
                    break;
                }
                Err(e) => warn!(%url, attempt, "alert webhook failed: {e}"),
            }
            if attempt < ATTEMPTS {
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
            }
        }
    }
}

/// Why posting an alert failed.
#[derive(Debug, thiserror::Error)]
enum PostError {
    /// The request did not get an answer (reqwest's message with its causes).
    #[error("{}", error_chain(.0))]
    Send(reqwest::Error),
    #[error("webhook answered {0}")]
    Status(reqwest::StatusCode),
}

/// Posts one alert; success is a 2xx status.
async fn post(client: &reqwest::Client, url: &str, alert: &Alert) -> Result<(), PostError> {
    let response = client
        .post(url)
        .json(alert)
        .send()
        .await
        .map_err(PostError::Send)?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(PostError::Status(status))
    }
}

/// An error with its causes (reqwest's own message names only the step).
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    std::iter::successors(Some(error), |e| e.source())
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// An HTTPS server on 127.0.0.1 with a fresh self-signed certificate for
    /// `localhost`, made trusted through `SSL_CERT_FILE` (the system trust
    /// store's override); returns its URL and the JSON bodies posted to it.
    async fn https_receiver() -> (String, mpsc::Receiver<serde_json::Value>) {
        crate::tls::install_crypto_provider();
        let issued = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let dir = std::env::temp_dir().join(format!("shardgate-webhook-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let trusted = dir.join("trusted.pem");
        std::fs::write(&trusted, issued.cert.pem()).unwrap();
        std::env::set_var("SSL_CERT_FILE", &trusted);
        let key =
            rustls::pki_types::PrivateKeyDer::Pkcs8(issued.signing_key.serialize_der().into());
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![issued.cert.der().clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    continue;
                };
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                let body = loop {
                    let n = tls.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        break None;
                    }
                    request.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&request).into_owned();
                    let Some((head, body)) = text.split_once("\r\n\r\n") else {
                        continue;
                    };
                    let length = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .and_then(|v| v.trim().parse::<usize>().ok())
                        })
                        .unwrap_or(0);
                    if body.len() >= length {
                        break Some(body.to_string());
                    }
                };
                let _ = tls
                    .write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
                    .await;
                let _ = tls.shutdown().await;
                if let Some(json) = body.and_then(|b| serde_json::from_str(&b).ok()) {
                    let _ = tx.send(json).await;
                }
            }
        });
        (format!("https://localhost:{port}/alerts"), rx)
    }

    #[tokio::test]
    async fn alerts_are_posted_to_an_https_webhook() {
        let (url, mut posts) = https_receiver().await;
        let alerts = Alerts::new(Arc::new(Metrics::new()), Some(url));
        alerts.fire("pool_saturated", "ds1", "ds1's pool is full".into());
        let posted = tokio::time::timeout(Duration::from_secs(10), posts.recv())
            .await
            .expect("posted within 10 s")
            .expect("receiver open");
        assert_eq!(posted["alert"], "pool_saturated", "{posted}");
        assert_eq!(posted["data_source"], "ds1", "{posted}");
        assert_eq!(posted["message"], "ds1's pool is full", "{posted}");
    }
}
