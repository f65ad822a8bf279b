//! An admin request's body, read whole within a deadline before routing.
//!
//! hyper bounds a body in neither time nor size, and [`super::head`] only
//! bounds the head: a client that sends the head of `POST /api/pauses`
//! with `Content-Length: 1000` and then trickles the body, or never sends
//! it, would hold its connection slot and the handler's task for as long
//! as it liked, the JSON extractor waiting for the rest. So the listener
//! reads every body whole, within [`BODY_TIMEOUT`] and [`MAX_BODY`], before
//! the router sees the request, and refuses it otherwise with the JSON
//! error the API promises (docs/admin-api.yaml): 408 past the deadline,
//! 413 beyond the size, 400 when the body cannot be read.

use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::response::Response;
use axum::Router;
use hyper::body::{Body as _, Incoming};
use hyper_util::service::TowerToHyperService;
use tracing::debug;

use super::api::error;

/// How long a client may take to send a request's body once its head is
/// read, as long as it has to send the head ([`super::head::HEAD_TIMEOUT`]):
/// the largest body ([`MAX_BODY`]) takes that at 200 KiB/s. A client still
/// sending then gets a JSON 408 and its connection is closed.
pub(super) const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest body, 413 beyond: axum's default body limit, which the
/// routes' extractors apply after this and which the API documents.
pub(super) const MAX_BODY: usize = 2 * 1024 * 1024;

/// Why a request's body was refused before routing.
#[derive(Debug, thiserror::Error)]
pub(super) enum BodyError {
    /// The whole body did not arrive within the deadline.
    #[error("the request body did not arrive within {0:?}; the connection is closed")]
    TimedOut(Duration),
    /// The body (its announced length, or what arrived) exceeds [`MAX_BODY`].
    #[error("the request body is larger than {MAX_BODY} bytes")]
    TooLarge,
    /// The client went away mid-body, or its chunked encoding is malformed.
    #[error("the request body could not be read: {0}")]
    Unreadable(#[source] hyper::Error),
}

impl BodyError {
    /// The status the API answers this refusal with.
    fn status(&self) -> StatusCode {
        match self {
            BodyError::TimedOut(_) => StatusCode::REQUEST_TIMEOUT,
            BodyError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Unreadable(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// The JSON error, with `Connection: close`: the connection ends after
    /// it (it carries one request anyway), whatever the client still sends.
    fn response(&self) -> Response {
        let mut response = error(self.status(), self.to_string());
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        response
    }
}

/// The admin router as hyper's service, behind the body's bounds: each
/// request reaches the router with its body read whole, or is refused.
#[derive(Clone)]
pub(super) struct Bounded {
    router: TowerToHyperService<Router>,
    /// [`BODY_TIMEOUT`], shorter in tests.
    timeout: Duration,
}

impl Bounded {
    /// `router` behind a body deadline of `timeout`.
    pub(super) fn new(router: Router, timeout: Duration) -> Self {
        Bounded {
            router: TowerToHyperService::new(router),
            timeout,
        }
    }
}

impl hyper::service::Service<Request<Incoming>> for Bounded {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let router = self.router.clone();
        let timeout = self.timeout;
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let read = match tokio::time::timeout(timeout, read(body)).await {
                Ok(read) => read,
                Err(_) => Err(BodyError::TimedOut(timeout)),
            };
            match read {
                Ok(bytes) => {
                    let request = Request::from_parts(parts, Body::from(bytes));
                    hyper::service::Service::call(&router, request).await
                }
                Err(refused) => {
                    debug!(method = %parts.method, path = %parts.uri.path(), "admin request refused: {refused}");
                    Ok(refused.response())
                }
            }
        })
    }
}

/// Reads `body` to its end, at most [`MAX_BODY`] bytes of it; one that
/// announces more is refused before any of it is read.
async fn read(mut body: Incoming) -> Result<Vec<u8>, BodyError> {
    let announced = body.size_hint().lower();
    if announced > MAX_BODY as u64 {
        return Err(BodyError::TooLarge);
    }
    // `announced` fits (it is at most MAX_BODY); a chunked body announces 0.
    let mut bytes = Vec::with_capacity(usize::try_from(announced).unwrap_or(0));
    while let Some(frame) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame = frame.map_err(BodyError::Unreadable)?;
        // Trailers (of a chunked body) are dropped, as axum's extractors do.
        if let Ok(data) = frame.into_data() {
            if bytes.len() + data.len() > MAX_BODY {
                return Err(BodyError::TooLarge);
            }
            bytes.extend_from_slice(&data);
        }
    }
    Ok(bytes)
}
