//! The egress proxy of a sandbox whose function has `allowed_hosts`.
//!
//! Such a sandbox still has its own network namespace with only loopback in it: nothing it
//! opens reaches the host or beyond. The host serves an HTTP proxy on `127.0.0.1:3128` inside
//! that namespace (the sandbox sees it as `HTTP_PROXY`/`HTTPS_PROXY`), which connects out from
//! the host only where the function's policy allows ([`nimbus_core::egress`]): a listed host
//! and port, a listed name only to its public addresses (connecting to the address it checked,
//! so the name cannot be re-resolved elsewhere in between), a listed address as it is.
//!
//! `CONNECT host:port` (HTTPS, and any TCP protocol a client tunnels) and absolute-form HTTP
//! requests (`GET http://host/path`) are served; the answer to anything refused is a `403`
//! saying why.
//!
//! Loopback addresses the function lists (`127.0.0.1:5432`) are also forwarded as they are:
//! the host listens at that address in the sandbox's namespace and connects to the same
//! address on the host, so any TCP client reaches a local service without a proxy (and
//! `NO_PROXY` can keep loopback direct, as the Runtime API needs).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use nimbus_core::egress::{Decision, EgressPolicy, is_public};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// Port of the egress proxy inside a sandbox.
pub const PROXY_PORT: u16 = 3128;
/// Largest request head the proxy reads.
const MAX_HEAD: usize = 16 * 1024;
/// Most connections out one sandbox holds open at once (proxied and forwarded together): each
/// is a socket pair of the host's, so a function cannot spend the node's descriptors.
pub const MAX_CONNECTIONS: usize = 256;
/// How long a client may take to send its request head, and a connection out to open.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a request is not forwarded: said to the client as a 403 (or 400, 502).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status the client hears.
    pub status: u16,
    /// Why, in words.
    pub reason: String,
}

fn refuse(status: u16, reason: impl Into<String>) -> Refusal {
    Refusal {
        status,
        reason: reason.into(),
    }
}

/// What a request head asks for.
#[derive(Debug, PartialEq, Eq)]
pub struct Ask {
    /// `CONNECT`: a tunnel.
    pub tunnel: bool,
    /// The destination host (a name or an address, IPv6 without brackets).
    pub host: String,
    /// The destination port.
    pub port: u16,
    /// For a forwarded request: the head to send upstream (origin-form, `Connection: close`).
    pub head: Vec<u8>,
}

/// Parses a proxy request head (up to and including its empty line).
pub fn parse_head(head: &[u8]) -> Result<Ask, Refusal> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(refuse(400, "not an HTTP proxy request")),
    }
    let (method, target) = (req.method.unwrap_or(""), req.path.unwrap_or(""));
    if method == "CONNECT" {
        let (host, port) = target
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
            .ok_or_else(|| refuse(400, format!("CONNECT needs host:port, not `{target}`")))?;
        return Ok(Ask {
            tunnel: true,
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port,
            head: Vec::new(),
        });
    }
    let uri: http::Uri = target
        .parse()
        .map_err(|_| refuse(400, format!("`{target}` is not a URL")))?;
    if uri.scheme_str() != Some("http") {
        return Err(refuse(
            400,
            "send http:// URLs as proxy requests, and https:// through CONNECT",
        ));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| refuse(400, "the URL has no host"))?;
    let mut out = format!(
        "{method} {} HTTP/1.1\r\n",
        uri.path_and_query().map_or("/", |p| p.as_str())
    )
    .into_bytes();
    for h in req.headers.iter() {
        let name = h.name.to_ascii_lowercase();
        if name.starts_with("proxy-") || name == "connection" || name == "keep-alive" {
            continue;
        }
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    Ok(Ask {
        tunnel: false,
        host: authority.host().to_string(),
        port: authority.port_u16().unwrap_or(80),
        head: out,
    })
}

/// The address to connect to for `host:port`, if the policy allows it.
async fn destination(policy: &EgressPolicy, host: &str, port: u16) -> Result<SocketAddr, Refusal> {
    match policy.decide(host, port) {
        Decision::Denied => Err(refuse(
            403,
            format!("{host}:{port} is not in the function's allowed_hosts"),
        )),
        Decision::Address(ip) => Ok(SocketAddr::new(ip, port)),
        Decision::Name => {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
                .await
                .map_err(|e| refuse(502, format!("{host} does not resolve: {e}")))?
                .collect();
            let private: Vec<IpAddr> = addrs
                .iter()
                .map(|a| a.ip())
                .filter(|ip| !is_public(*ip))
                .collect();
            if let Some(ip) = private.first() {
                return Err(refuse(
                    403,
                    format!(
                        "{host} resolves to {ip}, which is not public; list the address itself to allow it"
                    ),
                ));
            }
            addrs
                .first()
                .copied()
                .ok_or_else(|| refuse(502, format!("{host} has no address")))
        }
    }
}

/// Reads a request head (up to the blank line); returns it and whatever followed it.
async fn read_head(client: &mut TcpStream) -> Result<(Vec<u8>, Vec<u8>), Refusal> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return Ok((buf, rest));
        }
        if buf.len() > MAX_HEAD {
            return Err(refuse(400, "the request head is too large"));
        }
        let n = client
            .read(&mut chunk)
            .await
            .map_err(|e| refuse(400, e.to_string()))?;
        if n == 0 {
            return Err(refuse(400, "the connection closed before a request"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Serves one client connection.
async fn handle(mut client: TcpStream, policy: Arc<EgressPolicy>) {
    let served = async {
        let (head, rest) = tokio::time::timeout(STEP_TIMEOUT, read_head(&mut client))
            .await
            .map_err(|_| refuse(408, "the request head took too long"))??;
        let ask = parse_head(&head)?;
        let to = destination(&policy, &ask.host, ask.port).await?;
        let mut upstream = tokio::time::timeout(STEP_TIMEOUT, TcpStream::connect(to))
            .await
            .map_err(|_| refuse(504, format!("connecting to {to} timed out")))?
            .map_err(|e| refuse(502, format!("connecting to {to}: {e}")))?;
        if ask.tunnel {
            client
                .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                .await
                .map_err(|e| refuse(400, e.to_string()))?;
        } else {
            upstream
                .write_all(&ask.head)
                .await
                .map_err(|e| refuse(502, e.to_string()))?;
        }
        upstream
            .write_all(&rest)
            .await
            .map_err(|e| refuse(502, e.to_string()))?;
        Ok::<_, Refusal>(upstream)
    }
    .await;
    match served {
        Ok(mut upstream) => {
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        }
        Err(r) => {
            tracing::debug!(status = r.status, reason = %r.reason, "egress refused");
            let body = format!("nimbus egress: {}\n", r.reason);
            let answer = format!(
                "HTTP/1.1 {} {}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                r.status,
                match r.status {
                    403 => "Forbidden",
                    408 => "Request Timeout",
                    502 => "Bad Gateway",
                    504 => "Gateway Timeout",
                    _ => "Bad Request",
                },
                body.len()
            );
            let _ = client.write_all(answer.as_bytes()).await;
        }
    }
}

/// Forwards every connection accepted on `listener` (bound inside the sandbox's namespace at
/// a loopback address the function lists) to the same address on the host, until the task is
/// dropped.
pub(crate) async fn forward(listener: TcpListener, to: SocketAddr, open: Arc<Semaphore>) {
    loop {
        match listener.accept().await {
            Ok((mut client, _)) => {
                // Past the cap the connection is closed at once.
                let Ok(permit) = open.clone().try_acquire_owned() else {
                    continue;
                };
                tokio::spawn(async move {
                    let _permit = permit;
                    let connect = tokio::time::timeout(STEP_TIMEOUT, TcpStream::connect(to));
                    if let Ok(Ok(mut upstream)) = connect.await {
                        let _ = client.set_nodelay(true);
                        let _ = upstream.set_nodelay(true);
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    }
                });
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Serves the proxy on `listener` (bound inside the sandbox's network namespace) until the
/// task is dropped.
pub(crate) async fn serve(listener: TcpListener, policy: Arc<EgressPolicy>, open: Arc<Semaphore>) {
    loop {
        match listener.accept().await {
            Ok((client, _)) => {
                let Ok(permit) = open.clone().try_acquire_owned() else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let policy = policy.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    handle(client, policy).await;
                });
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_and_absolute_requests_are_understood() {
        let c = parse_head(b"CONNECT api.example.com:443 HTTP/1.1\r\nHost: x\r\n\r\n").expect("ok");
        assert!(c.tunnel && c.host == "api.example.com" && c.port == 443);
        let v6 = parse_head(b"CONNECT [::1]:8443 HTTP/1.1\r\n\r\n").expect("ok");
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 8443));
        let g = parse_head(
            b"GET http://example.com:8080/a?b=1 HTTP/1.1\r\nHost: example.com\r\nProxy-Connection: keep-alive\r\nConnection: keep-alive\r\nX-A: 1\r\n\r\n",
        )
        .expect("ok");
        assert!(!g.tunnel && g.host == "example.com" && g.port == 8080);
        let head = String::from_utf8(g.head).expect("text");
        assert!(head.starts_with("GET /a?b=1 HTTP/1.1\r\n"), "{head}");
        assert!(head.contains("X-A: 1\r\n") && head.ends_with("Connection: close\r\n\r\n"));
        assert!(!head.to_ascii_lowercase().contains("proxy-connection"));
        for bad in [
            &b"GET /relative HTTP/1.1\r\n\r\n"[..],
            b"GET https://x.com/ HTTP/1.1\r\n\r\n",
            b"CONNECT nohost HTTP/1.1\r\n\r\n",
            b"garbage\r\n\r\n",
        ] {
            assert!(parse_head(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[tokio::test]
    async fn only_listed_destinations_resolve_and_names_only_to_public_addresses() {
        let policy = EgressPolicy::parse(&["127.0.0.2:8080".into(), "localhost:8080".into()])
            .expect("valid");
        assert_eq!(
            destination(&policy, "127.0.0.2", 8080).await,
            Ok("127.0.0.2:8080".parse().expect("addr"))
        );
        assert_eq!(
            destination(&policy, "127.0.0.2", 8081)
                .await
                .map_err(|r| r.status),
            Err(403)
        );
        assert_eq!(
            destination(&policy, "localhost", 8080)
                .await
                .map_err(|r| r.status),
            Err(403)
        );
    }
}
