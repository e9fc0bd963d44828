//! The listener: accepts connections and serves the router on them, so that no caller can deny
//! service to others by holding connections.
//!
//! - At most `max_connections` at once. One more is answered `503` with `Retry-After` and
//!   closed at once: the node never runs out of file descriptors because of idle clients.
//! - A connection that takes longer than `header_read_timeout` to send a request's headers —
//!   a slow-header client, or a keep-alive connection idle that long — is closed.
//! - A request body that stops for `body_read_timeout` between chunks fails (the handler sees
//!   a read error; for a route, the function's request body ends in an error).
//! - Half-closed connections are served: the end of a client's bytes does not cancel the
//!   request it sent.
//! - `TCP_NODELAY` on every connection (hyper writes a streamed response's head and body
//!   separately; a client's delayed ACK would hold the second write ~40 ms).
//!
//! Shutdown stops accepting, then lets the connections finish what they are doing.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// Limits of the listener.
#[derive(Debug, Clone, Copy)]
pub struct ServeConfig {
    /// Connections served at once; more are refused with 503.
    pub max_connections: usize,
    /// Longest a connection may take to send a request's headers (idle keep-alive included).
    pub header_read_timeout: Duration,
    /// Longest a request body may pause between chunks.
    pub body_read_timeout: Duration,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            header_read_timeout: Duration::from_secs(20),
            body_read_timeout: Duration::from_secs(20),
        }
    }
}

/// What an over-the-limit connection hears before it is closed.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
retry-after: 1\r\nconnection: close\r\ncontent-length: 99\r\n\r\n\
{\"error\":{\"code\":\"TooManyConnections\",\"message\":\"the node is at its connection limit; retry\"}}";

/// Answers an over-the-limit connection and closes it, giving it at most a second.
async fn refuse(mut tcp: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = tcp.write_all(BUSY).await;
        let _ = tcp.shutdown().await;
    })
    .await;
}

/// Serves `app` on `listener` until `shutdown` completes, then waits for open connections to
/// finish (bound that wait with a timeout if it must end).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    config: ServeConfig,
    shutdown: impl Future<Output = ()>,
) {
    let app = app.layer(crate::body_timeout::layer(config.body_read_timeout));
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        // A client may shut its write side once its request is sent and wait for the answer
        // (HTTP/1.0 clients, `nc -N`, some proxies): it gets the answer, and a request that
        // was accepted runs to its end either way.
        .half_close(true);
    tokio::pin!(shutdown);
    loop {
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors (or a transient error): wait, never spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tokio::spawn(refuse(tcp));
            continue;
        };
        let service =
            app.clone()
                .map_request(move |mut request: http::Request<hyper::body::Incoming>| {
                    request
                        .extensions_mut()
                        .insert(ConnectInfo::<SocketAddr>(remote));
                    request
                });
        let connection =
            http.serve_connection(TokioIo::new(tcp), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _ = connection.await;
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
