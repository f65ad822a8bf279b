//! The admin listener's accept loop: at most [`MAX_CONNECTIONS`] at a time,
//! each one's TLS handshake done first when `server.admin_tls` is set, its
//! head read and checked ([`super::head`]), then its one request served by
//! hyper, its body read whole within a deadline ([`super::body`]) before
//! the router sees it, and the whole of it, answer written, within
//! [`ANSWER_TIMEOUT`].

use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

use super::body::Bounded;
use super::head::{self, Head};
use super::prefixed::Prefixed;
use crate::log_limit::LogLimit;

/// Admin connections open at once. At the cap the listener stops
/// accepting until one ends, rather than refusing: further clients wait in
/// the kernel's backlog and are served as slots free, and a slot held by a
/// client that sends nothing frees within [`head::HEAD_TIMEOUT`] (one that
/// stalls in its body, within [`super::body::BODY_TIMEOUT`] more).
/// Operators, probes, scrapers and the migrator need a handful.
pub(super) const MAX_CONNECTIONS: usize = 256;

/// hyper's read buffer: above the largest head [`head`] lets through, so
/// hyper never refuses one of those by itself (with an empty 431), and
/// below hyper's default of 408 KiB, which a connection does not need.
const HYPER_BUFFER: usize = head::MAX_HEAD + 16 * 1024;

/// How long a connection may take from its head read to its answer
/// written: its body ([`super::body::BODY_TIMEOUT`]), the route's work
/// (reading state, staging rules: well under a second) and the answer's
/// writing. A client that asks and then does not read (a large `/metrics`
/// or dashboard answer fills the socket's buffers, and the write waits)
/// would otherwise hold its slot, of [`MAX_CONNECTIONS`], for good; its
/// connection is closed.
pub(super) const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a connection's parts may take: see [`super::body::BODY_TIMEOUT`]
/// and [`ANSWER_TIMEOUT`] (shorter in tests).
#[derive(Debug, Clone, Copy)]
pub(super) struct Deadlines {
    pub body: Duration,
    pub answer: Duration,
}

impl Deadlines {
    pub(super) const SERVED: Deadlines = Deadlines {
        body: super::body::BODY_TIMEOUT,
        answer: ANSWER_TIMEOUT,
    };
}

/// "Connections at the cap" comes at most this often.
static AT_CAP_LOG: LogLimit = LogLimit::new(Duration::from_secs(10));

/// Serves `router` on `listener` until the task running this is aborted,
/// which aborts the open connections too; over TLS with what `tls` gives
/// when a connection comes (the current configuration version's, so a
/// renewed certificate serves the next connection after a reload), each
/// within `deadlines`.
pub(super) async fn run(
    listener: TcpListener,
    router: Router,
    tls: impl Fn() -> Option<TlsAcceptor>,
    deadlines: Deadlines,
) {
    let service = Bounded::new(router, deadlines.body);
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        if connections.len() >= MAX_CONNECTIONS {
            if let Some(held_back) = AT_CAP_LOG.allow() {
                warn!(
                    held_back,
                    "{MAX_CONNECTIONS} admin connections are open; new ones wait until one ends"
                );
            }
            connections.join_next().await;
            continue;
        }
        match listener.accept().await {
            Ok((stream, _)) => {
                connections.spawn(serve(stream, service.clone(), tls(), deadlines.answer));
            }
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                warn!("admin accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// One connection, after its TLS handshake when there is an acceptor.
async fn serve(
    stream: TcpStream,
    service: Bounded,
    tls: Option<TlsAcceptor>,
    answer_timeout: Duration,
) {
    let Some(acceptor) = tls else {
        return serve_http(stream, service, answer_timeout).await;
    };
    // Bounded as a head is: a client stalling in the handshake holds its
    // slot no longer than one stalling in its head.
    match tokio::time::timeout(head::HEAD_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => serve_http(stream, service, answer_timeout).await,
        Ok(Err(e)) => debug!("admin TLS handshake failed: {e}"),
        Err(_) => debug!("admin TLS handshake timed out"),
    }
}

/// One request, or a JSON refusal of its head (or of its body, by
/// `service`); the connection is closed if the request is not answered
/// within `answer_timeout` of its head.
async fn serve_http<S>(mut stream: S, service: Bounded, answer_timeout: Duration)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    match head::read(&mut stream).await {
        Head::Read(bytes) => {
            let io = TokioIo::new(Prefixed::new(bytes, stream));
            let served = http1::Builder::new()
                // One request per connection: a next request's head would
                // reach hyper without the checks above.
                .keep_alive(false)
                .max_buf_size(HYPER_BUFFER)
                .serve_connection(io, service);
            match tokio::time::timeout(answer_timeout, served).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => debug!("admin connection ended: {e}"),
                Err(_) => debug!("admin answer not done within {answer_timeout:?}; closed"),
            }
        }
        Head::Refused(refusal) => refusal.answer(stream).await,
        Head::Gone => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::body::MAX_BODY;
    use axum::routing::{get, post};
    use axum::Json;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn start() -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let router = Router::new().route("/", get(|| async { "ok" }));
        start_with(router, Deadlines::SERVED).await
    }

    /// Serves `router` within `deadlines`.
    async fn start_with(
        router: Router,
        deadlines: Deadlines,
    ) -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        (
            addr,
            tokio::spawn(run(listener, router, || None, deadlines)),
        )
    }

    /// A POST route that reads its JSON body (as the cutover API's do) and
    /// one that takes none (as `POST /api/reload`).
    fn post_routes() -> Router {
        Router::new()
            .route(
                "/json",
                post(|Json(body): Json<serde_json::Value>| async move { body.to_string() }),
            )
            .route("/bodiless", post(|| async { "done" }))
    }

    /// Sends `request` whole, then reads the answer to its end.
    async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        String::from_utf8(answer).unwrap()
    }

    fn json_error(answer: &str, status: &str) {
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status} ")),
            "{answer}"
        );
        assert!(
            answer.contains("content-type: application/json"),
            "{answer}"
        );
        let body = answer.split("\r\n\r\n").nth(1).unwrap();
        let error: serde_json::Value = serde_json::from_str(body).unwrap();
        assert!(error["error"].is_string(), "{error}");
    }

    #[tokio::test]
    async fn over_long_heads_get_json_errors_and_the_listener_goes_on() {
        let (addr, listener) = start().await;
        let long_target = format!(
            "GET /?sql={} HTTP/1.1\r\nHost: x\r\n\r\n",
            "a".repeat(1 << 20)
        );
        json_error(&exchange(addr, long_target.as_bytes()).await, "414");
        let big_headers = format!(
            "GET / HTTP/1.1\r\nHost: x\r\n{}\r\n",
            "x-filler: fffffffffffffffffffffffffffffffffffffffffffffffff\r\n".repeat(2000)
        );
        json_error(&exchange(addr, big_headers.as_bytes()).await, "431");
        let ok = exchange(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 200 "), "{ok}");
        assert!(ok.ends_with("\r\n\r\nok"), "{ok}");
        listener.abort();
    }

    /// A client that sends the head of a POST announcing 1000 bytes of body
    /// and 10 of them, then stalls, gets a JSON 408 once the body's deadline
    /// is over and the connection is closed, whether the route reads a body
    /// or takes none; a whole body is served as before.
    #[tokio::test]
    async fn a_stalled_body_gets_a_json_408_and_the_connection_closes() {
        let deadline = Duration::from_millis(300);
        let deadlines = Deadlines {
            body: deadline,
            ..Deadlines::SERVED
        };
        let (addr, listener) = start_with(post_routes(), deadlines).await;
        for path in ["/json", "/bodiless"] {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            let request = format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                 Content-Length: 1000\r\n\r\n{{\"size\": 1"
            );
            stream.write_all(request.as_bytes()).await.unwrap();
            // The answer and the end of the connection, well within the
            // deadline and a margin; never, before the deadline existed.
            let mut answer = Vec::new();
            tokio::time::timeout(
                deadline + Duration::from_secs(10),
                stream.read_to_end(&mut answer),
            )
            .await
            .unwrap_or_else(|_| panic!("POST {path}: no answer to a stalled body"))
            .unwrap();
            let answer = String::from_utf8(answer).unwrap();
            json_error(&answer, "408");
            assert!(answer.contains("connection: close"), "{answer}");
        }
        let whole = exchange(
            addr,
            b"POST /json HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 11\r\n\r\n{\"size\": 1}",
        )
        .await;
        assert!(whole.starts_with("HTTP/1.1 200 "), "{whole}");
        assert!(whole.ends_with("\r\n\r\n{\"size\":1}"), "{whole}");
        listener.abort();
    }

    /// A body announced beyond the limit is a JSON 413 before any of it is
    /// read, on a route that reads bodies or not.
    #[tokio::test]
    async fn a_body_beyond_the_limit_is_json_413() {
        let (addr, listener) = start_with(post_routes(), Deadlines::SERVED).await;
        for path in ["/json", "/bodiless"] {
            let head = format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n",
                MAX_BODY + 1
            );
            let answer =
                tokio::time::timeout(Duration::from_secs(10), exchange(addr, head.as_bytes()))
                    .await
                    .unwrap_or_else(|_| {
                        panic!("POST {path}: no answer to a body beyond the limit")
                    });
            json_error(&answer, "413");
        }
        listener.abort();
    }

    /// A client that asks for a large answer and does not read it has its
    /// connection closed at the answer's deadline: reading afterwards, it
    /// gets no more than the socket buffers held. Without the deadline the
    /// write waits, and a late reader gets the whole answer.
    #[tokio::test]
    async fn an_answer_left_unread_is_cut_at_its_deadline() {
        const ANSWER: usize = 32 << 20;
        let router = Router::new().route("/big", get(|| async { "x".repeat(ANSWER) }));
        let deadlines = Deadlines {
            answer: Duration::from_millis(500),
            ..Deadlines::SERVED
        };
        let (addr, listener) = start_with(router, deadlines).await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut answer = Vec::new();
        // Closed by the server: an end, or a reset once buffers are dropped.
        let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
            .await
            .expect("the connection ends");
        assert!(answer.starts_with(b"HTTP/1.1 200 "));
        assert!(
            answer.len() < ANSWER,
            "{} bytes of {ANSWER} read after the deadline",
            answer.len()
        );
        listener.abort();
    }

    #[tokio::test]
    async fn at_the_cap_a_connection_waits_for_a_slot() {
        let (addr, listener) = start().await;
        let mut stalled = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream.write_all(b"GET / HT").await.unwrap();
            stalled.push(stream);
        }
        let waiting = tokio::spawn(exchange(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!waiting.is_finished(), "served beyond the cap");
        stalled.pop();
        let answer = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("served once a slot freed")
            .unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
        listener.abort();
    }

    #[tokio::test]
    async fn with_an_acceptor_the_api_is_served_over_https() {
        crate::tls::install_crypto_provider();
        let issued = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let key =
            rustls::pki_types::PrivateKeyDer::Pkcs8(issued.signing_key.serialize_der().into());
        let server = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![issued.cert.der().clone()], key)
            .unwrap();
        let acceptor = TlsAcceptor::from(std::sync::Arc::new(server));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new().route("/", get(|| async { "ok" }));
        let serving = tokio::spawn(run(
            listener,
            router,
            move || Some(acceptor.clone()),
            Deadlines::SERVED,
        ));

        let mut roots = rustls::RootCertStore::empty();
        roots.add(issued.cert.der().clone()).unwrap();
        let trusting = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(trusting)
            .resolve("localhost", addr)
            .build()
            .unwrap();
        let url = format!("https://localhost:{}/", addr.port());
        let answer = client.get(&url).send().await.expect("an HTTPS answer");
        assert_eq!(answer.status(), 200);
        assert_eq!(answer.text().await.unwrap(), "ok");
        // Plain HTTP gets a TLS alert, not the API.
        let plain = exchange(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(!plain.contains("HTTP/1.1"), "{plain}");
        serving.abort();
    }
}
