//! Alerts: one WARN log line, a metric, a place in the recent-alerts list
//! (admin API, dashboard) and, when `alerts.webhook` is configured, a JSON
//! POST sent in the background — retried briefly, dropped rather than ever
//! blocking a query.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
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
    while let Some(alert) = rx.recv().await {
        let body = match serde_json::to_vec(&alert) {
            Ok(body) => body,
            Err(e) => {
                warn!("cannot encode alert: {e}");
                continue;
            }
        };
        for attempt in 1..=ATTEMPTS {
            match tokio::time::timeout(ATTEMPT_TIMEOUT, post_json(&url, &body)).await {
                Ok(Ok(())) => {
                    debug!(%url, "alert posted");
                    break;
                }
                Ok(Err(e)) => warn!(%url, attempt, "alert webhook failed: {e}"),
                Err(_) => warn!(%url, attempt, "alert webhook timed out"),
            }
            if attempt < ATTEMPTS {
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
            }
        }
    }
}

/// An HTTP/1.1 POST of a JSON body to an `http://host:port/path` URL;
/// success is a 2xx status.
async fn post_json(url: &str, body: &[u8]) -> std::io::Result<()> {
    let invalid =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, what.to_owned());
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| invalid("webhook URL must start with http://"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let address = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let mut stream = TcpStream::connect(&address).await?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\nUser-Agent: shardgate\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 512];
    while !reply.windows(2).any(|w| w == b"\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&buf[..n]);
    }
    let status_line = String::from_utf8_lossy(&reply);
    let code = status_line.split_whitespace().nth(1).unwrap_or("");
    if code.starts_with('2') {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "webhook answered {}",
            status_line.lines().next().unwrap_or("nothing")
        )))
    }
}
