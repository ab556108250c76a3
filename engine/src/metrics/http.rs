//! The metrics endpoint: a GET-only HTTP/1.1 responder on a tokio `TcpListener`, one
//! request per connection (`Connection: close`). Its whole job is three paths, so it is
//! written out here rather than taken from an HTTP framework:
//!
//! - `GET /metrics`: asks the control task for a [`Snapshot`] and renders it;
//! - `GET /healthz`: 200 "ok" when the control task answers within
//!   [`HEALTH_TIMEOUT`], else 503 (a stuck control task is what a probe must notice);
//! - anything else: 404 (405 for another method, 400 for a malformed request).
//!
//! Robustness: the request head is read with a size bound ([`MAX_HEAD`]) and a time
//! bound ([`READ_TIMEOUT`]), and at most [`MAX_CONNECTIONS`] connections are served at
//! once; further ones wait in the listen backlog.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::{render, Snapshot, CONTENT_TYPE};

/// Largest request head (request line and headers) read.
pub(crate) const MAX_HEAD: usize = 8 * 1024;
/// How long a client has to send its request head.
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `/metrics` waits for the control task's snapshot (which itself waits up to
/// 2 s for each dataplane thread).
pub(crate) const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(6);
/// How long `/healthz` waits for the control task to answer.
pub(crate) const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
/// Connections served at once.
pub(crate) const MAX_CONNECTIONS: usize = 16;

/// What the endpoint asks the control task.
#[derive(Debug)]
pub(crate) enum Ask {
    /// Gather a snapshot of every figure.
    Snapshot(oneshot::Sender<Snapshot>),
    /// Answer at once: the control task is alive.
    Alive(oneshot::Sender<()>),
}

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    Metrics,
    Healthz,
    NotFound,
    MethodNotAllowed,
    BadRequest,
}

/// Reads the route from a request head: the request line `METHOD TARGET HTTP/1.x`,
/// the query string ignored.
pub(crate) fn route(head: &[u8]) -> Route {
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let Ok(line) = std::str::from_utf8(line) else {
        return Route::BadRequest;
    };
    let mut parts = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Route::BadRequest;
    };
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return Route::BadRequest;
    }
    if method != "GET" {
        return Route::MethodNotAllowed;
    }
    match target.split('?').next().unwrap_or_default() {
        "/metrics" => Route::Metrics,
        "/healthz" => Route::Healthz,
        _ => Route::NotFound,
    }
}

/// A complete response with `Connection: close`.
pub(crate) fn response(status: &str, content_type: &str, body: &str) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n",
        body.len()
    );
    if status.starts_with("405") {
        out.push_str("Allow: GET\r\n");
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

/// Serves the listener on the current tokio runtime until the runtime stops.
pub(crate) fn spawn(listener: TcpListener, ask: mpsc::Sender<Ask>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(async move {
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let ask = ask.clone();
            tokio::spawn(async move {
                serve(stream, ask).await;
                drop(permit);
            });
        }
    });
}

/// Reads the request head until its blank line, EOF, [`MAX_HEAD`] bytes or
/// [`READ_TIMEOUT`]; `None` when nothing usable arrived.
async fn read_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::with_capacity(512);
    let read = async {
        let mut buf = [0u8; 1024];
        loop {
            let n = stream.read(&mut buf).await.ok()?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
            if head.windows(4).any(|w| w == b"\r\n\r\n")
                || head.windows(2).any(|w| w == b"\n\n")
                || head.len() >= MAX_HEAD
            {
                break;
            }
        }
        Some(())
    };
    tokio::time::timeout(READ_TIMEOUT, read).await.ok()??;
    (!head.is_empty()).then_some(head)
}

/// Asks the control task and waits at most `bound` for the answer.
async fn ask_control<T>(
    ask: &mpsc::Sender<Ask>,
    make: impl FnOnce(oneshot::Sender<T>) -> Ask,
    bound: Duration,
) -> Option<T> {
    let (tx, rx) = oneshot::channel();
    let asked = async {
        ask.send(make(tx)).await.ok()?;
        rx.await.ok()
    };
    tokio::time::timeout(bound, asked).await.ok().flatten()
}

async fn serve(mut stream: TcpStream, ask: mpsc::Sender<Ask>) {
    let Some(head) = read_head(&mut stream).await else {
        return;
    };
    let text = "text/plain; charset=utf-8";
    let out = if head.len() >= MAX_HEAD && !head.windows(2).any(|w| w == b"\r\n") {
        response("400 Bad Request", text, "request line too long\n")
    } else {
        match route(&head) {
            Route::Metrics => match ask_control(&ask, Ask::Snapshot, SNAPSHOT_TIMEOUT).await {
                // Rendering tens of thousands of child SAs takes a while: off the
                // runtime's thread, which is the control task's.
                Some(snap) => match tokio::task::spawn_blocking(move || render(snap)).await {
                    Ok(body) => response("200 OK", CONTENT_TYPE, &body),
                    Err(_) => response("500 Internal Server Error", text, "rendering failed\n"),
                },
                None => response(
                    "503 Service Unavailable",
                    text,
                    "the control task did not answer\n",
                ),
            },
            Route::Healthz => match ask_control(&ask, Ask::Alive, HEALTH_TIMEOUT).await {
                Some(()) => response("200 OK", text, "ok\n"),
                None => response(
                    "503 Service Unavailable",
                    text,
                    "the control task did not answer\n",
                ),
            },
            Route::NotFound => response("404 Not Found", text, "not found: try /metrics\n"),
            Route::MethodNotAllowed => response("405 Method Not Allowed", text, "GET only\n"),
            Route::BadRequest => response("400 Bad Request", text, "bad request\n"),
        }
    };
    let _ = tokio::time::timeout(READ_TIMEOUT, async {
        let _ = stream.write_all(&out).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let r = |s: &str| route(s.as_bytes());
        assert_eq!(
            r("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Route::Metrics
        );
        assert_eq!(r("GET /metrics?x=1 HTTP/1.0\r\n\r\n"), Route::Metrics);
        assert_eq!(r("GET /healthz HTTP/1.1\n\n"), Route::Healthz);
        assert_eq!(r("GET / HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(r("GET /metricsx HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(r("POST /metrics HTTP/1.1\r\n\r\n"), Route::MethodNotAllowed);
        assert_eq!(r("GET /metrics\r\n\r\n"), Route::BadRequest);
        assert_eq!(r("GET metrics HTTP/1.1\r\n\r\n"), Route::BadRequest);
        assert_eq!(r("GET /metrics SPDY/3\r\n\r\n"), Route::BadRequest);
        assert_eq!(r("\u{0}\u{1}"), Route::BadRequest);
        assert_eq!(route(b"GET /\xff HTTP/1.1\r\n\r\n"), Route::BadRequest);
        assert_eq!(r(""), Route::BadRequest);
    }

    #[test]
    fn responses_close_and_count_their_body() {
        let out = String::from_utf8(response("200 OK", "text/plain", "ok\n")).unwrap();
        assert_eq!(
            out,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\
             Connection: close\r\n\r\nok\n"
        );
        let out = String::from_utf8(response("405 Method Not Allowed", "text/plain", "")).unwrap();
        assert!(out.contains("\r\nAllow: GET\r\n"), "{out}");
    }

    /// Runs the endpoint on loopback with a fake control task; `alive` says whether
    /// the fake answers.
    async fn endpoint(alive: bool) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, mut rx) = mpsc::channel(4);
        spawn(listener, tx);
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Some(a) = rx.recv().await {
                match (alive, a) {
                    (true, Ask::Alive(r)) => {
                        let _ = r.send(());
                    }
                    (true, Ask::Snapshot(r)) => {
                        let _ = r.send(Snapshot {
                            connections: 3,
                            ..Default::default()
                        });
                    }
                    // A stuck control task: the question is never answered.
                    (false, a) => held.push(a),
                }
            }
        });
        addr
    }

    async fn get(addr: std::net::SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut out = String::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out))
            .await
            .expect("the endpoint answers within its bounds")
            .unwrap();
        out
    }

    #[tokio::test]
    async fn serves_metrics_health_and_404() {
        let addr = endpoint(true).await;
        let m = get(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(m.starts_with("HTTP/1.1 200 OK\r\n"), "{m}");
        assert!(
            m.contains(&format!("Content-Type: {CONTENT_TYPE}\r\n")),
            "{m}"
        );
        assert!(m.contains("\nesprit_connections 3\n"), "{m}");
        let h = get(addr, b"GET /healthz HTTP/1.1\r\n\r\n").await;
        assert!(
            h.starts_with("HTTP/1.1 200 OK\r\n") && h.ends_with("\r\n\r\nok\n"),
            "{h}"
        );
        let n = get(addr, b"GET /nothing HTTP/1.1\r\n\r\n").await;
        assert!(n.starts_with("HTTP/1.1 404 Not Found\r\n"), "{n}");
        let long = [b"GET /".as_slice(), &[b'a'; MAX_HEAD]].concat();
        let b = get(addr, &long).await;
        assert!(b.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{b}");
    }

    #[tokio::test]
    async fn a_stuck_control_task_is_unhealthy() {
        let addr = endpoint(false).await;
        let t0 = std::time::Instant::now();
        let h = get(addr, b"GET /healthz HTTP/1.1\r\n\r\n").await;
        assert!(h.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{h}");
        assert!(t0.elapsed() >= HEALTH_TIMEOUT);
    }

    #[tokio::test]
    async fn a_silent_client_is_let_go() {
        let addr = endpoint(true).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /metr").await.unwrap();
        // The endpoint gives up after READ_TIMEOUT and closes.
        let mut out = Vec::new();
        let n = tokio::time::timeout(READ_TIMEOUT * 2, s.read_to_end(&mut out))
            .await
            .expect("closed after the read bound")
            .unwrap();
        assert_eq!(n, 0, "no answer to an incomplete request");
    }
}
