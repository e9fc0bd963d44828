//! Who is on the other end of a loopback TCP connection, for sandboxes that share the host's
//! network namespace (functions with `allowed_hosts`). Their Runtime API listener is reachable
//! from the whole machine, so it only serves connections whose socket belongs to the sandbox's
//! own uid — every such sandbox runs as a uid of its own.

use std::net::SocketAddr;

/// The owner uid of the IPv4 TCP socket bound to `local` that is connected to `remote`, from
/// the text of `/proc/net/tcp`.
pub fn socket_uid(proc_net_tcp: &str, local: SocketAddr, remote: SocketAddr) -> Option<u32> {
    let key = |a: SocketAddr| match a {
        SocketAddr::V4(v4) => Some(format!(
            "{:08X}:{:04X}",
            u32::from_le_bytes(v4.ip().octets()),
            v4.port()
        )),
        SocketAddr::V6(_) => None,
    };
    let (local, remote) = (key(local)?, key(remote)?);
    proc_net_tcp.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.get(1) == Some(&local.as_str()) && f.get(2) == Some(&remote.as_str()))
            .then(|| f.get(7)?.parse().ok())
            .flatten()
    })
}

/// A listener that accepts only connections from sockets owned by `uid`.
pub struct UidListener {
    /// The listener.
    pub inner: tokio::net::TcpListener,
    /// The only uid served.
    pub uid: u32,
}

impl axum::serve::Listener for UidListener {
    type Io = tokio::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, peer)) = self.inner.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                continue;
            };
            let Ok(local) = stream.local_addr() else {
                continue;
            };
            let table = tokio::fs::read_to_string("/proc/net/tcp")
                .await
                .unwrap_or_default();
            if socket_uid(&table, peer, local) == Some(self.uid) {
                let _ = stream.set_nodelay(true);
                return (stream, peer);
            }
            tracing::warn!(%peer, "refused a Runtime API connection from another user");
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_owner_of_a_loopback_connection() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
            0: 0100007F:2329 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1\n\
            1: 0100007F:D431 0100007F:2329 01 00000000:00000000 00:00000000 00000000 200007        0 2 1\n\
            2: 0100007F:2329 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 3 1\n";
        let server: SocketAddr = "127.0.0.1:9001".parse().unwrap();
        let client: SocketAddr = "127.0.0.1:54321".parse().unwrap();
        assert_eq!(socket_uid(table, client, server), Some(200_007));
        assert_eq!(socket_uid(table, server, client), Some(0));
        let other: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(socket_uid(table, other, server), None);
    }
}
