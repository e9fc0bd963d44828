//! Per-invocation host state: WASI context, HTTP context, memory limiter, outbound policy.

use std::sync::Arc;
use std::time::Duration;

use nimbus_core::FunctionConfig;
use nimbus_core::egress::{Decision, EgressPolicy, is_public};
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

/// Limits and capabilities of one function, applied to each of its invocations.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Linear-memory cap per instance (all memories together), bytes.
    pub memory_bytes: u64,
    /// Wall-clock limit of one invocation.
    pub timeout: Duration,
    /// The complete environment the function sees.
    pub env: Arc<[(String, String)]>,
    /// Where outbound HTTP may go (`allowed_hosts`; see [`nimbus_core::egress`]).
    pub egress: Arc<EgressPolicy>,
    /// The budget its memory is charged to (a tenant's share), if not the runtime's own.
    pub budget: Option<Arc<nimbus_core::budget::MemoryBudget>>,
}

impl From<&FunctionConfig> for Limits {
    fn from(c: &FunctionConfig) -> Self {
        Self {
            memory_bytes: c.memory_bytes(),
            timeout: Duration::from_millis(c.timeout_ms),
            env: c.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            // The manifest was validated: an unparsable list allows nothing.
            egress: Arc::new(EgressPolicy::parse(&c.allowed_hosts).unwrap_or_default()),
            budget: None,
        }
    }
}

/// Caps linear memory at the function's limit and the node's budget, and remembers which cap
/// was hit and the peak reached.
pub(crate) struct MemoryLimiter {
    limit: usize,
    used: usize,
    pub(crate) peak: usize,
    pub(crate) denied: bool,
    /// What this store holds of the node's memory budget (given back when the store drops).
    charge: Option<nimbus_core::budget::Charge>,
    /// The node's budget, not the function's limit, refused a growth.
    pub(crate) denied_by_node: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let after = self.used - current.min(self.used) + desired;
        if after > self.limit {
            self.denied = true;
            return Ok(false);
        }
        let growth = after.saturating_sub(self.used) as u64;
        if growth > 0 && !self.charge.as_mut().is_some_and(|c| c.grow(growth)) {
            self.denied_by_node = true;
            return Ok(false);
        }
        self.used = after;
        self.peak = self.peak.max(after);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// Outbound HTTP: allowed only to the function's `allowed_hosts`, and a listed name only to
/// its public addresses.
pub(crate) struct OutboundPolicy {
    egress: Arc<EgressPolicy>,
}

/// Why an outbound request is not sent.
fn denied(uri: &http::Uri, why: &str) -> wasmtime_wasi_http::Error {
    tracing::debug!(%uri, why, "outbound request denied");
    wasmtime_wasi_http::Error::HttpRequestDenied
}

impl OutboundPolicy {
    /// Checks a request's destination: listed, on a listed port, and (for a name) resolving
    /// only to public addresses. The connection that follows resolves the name again; a name
    /// that changes its answers in between (DNS rebinding) is the residual risk
    /// `docs/SECURITY.md` describes.
    async fn check(egress: Arc<EgressPolicy>, uri: http::Uri) -> wasmtime_wasi_http::Result<()> {
        let Some(authority) = uri.authority() else {
            return Err(denied(&uri, "no host"));
        };
        let https = uri.scheme_str() == Some("https");
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        match egress.decide(authority.host(), port) {
            Decision::Denied => Err(denied(&uri, "not in allowed_hosts")),
            Decision::Address(_) => Ok(()),
            Decision::Name => {
                let addrs: Vec<std::net::SocketAddr> =
                    tokio::net::lookup_host((authority.host(), port))
                        .await
                        .map_err(|_| denied(&uri, "the name does not resolve"))?
                        .collect();
                if addrs.is_empty() || !addrs.iter().all(|a| is_public(a.ip())) {
                    return Err(denied(&uri, "the name resolves to a non-public address"));
                }
                Ok(())
            }
        }
    }
}

impl WasiHttpHooks for OutboundPolicy {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> Box<
        dyn Future<
                Output = wasmtime_wasi_http::Result<(
                    http::Response<wasmtime_wasi_http::WasiBody>,
                    Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
                )>,
            > + Send,
    > {
        let (egress, uri) = (self.egress.clone(), request.uri().clone());
        Box::new(async move {
            Self::check(egress, uri).await?;
            let mut default = [(); 0];
            Box::into_pin(default.send_request(request, options, fut)).await
        })
    }
}

/// The `T` of every `Store<T>`.
pub(crate) struct Host {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    outbound: OutboundPolicy,
}

impl Host {
    pub(crate) fn new(
        limits: &Limits,
        logs: &MemoryOutputPipe,
        budget: &std::sync::Arc<nimbus_core::budget::MemoryBudget>,
    ) -> Self {
        let mut wasi = WasiCtx::builder();
        // No preopened directories, no sockets (the builder's default address check denies all),
        // no inherited environment or stdio: only what the function was configured with.
        wasi.stdout(logs.clone())
            .stderr(logs.clone())
            .envs(&limits.env)
            .allow_ip_name_lookup(false);
        Self {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                limit: usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX),
                used: 0,
                peak: 0,
                denied: false,
                charge: budget.charge(0),
                denied_by_node: false,
            },
            outbound: OutboundPolicy {
                egress: limits.egress.clone(),
            },
        }
    }
}

impl WasiView for Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for Host {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(
        limit: usize,
        budget: &std::sync::Arc<nimbus_core::budget::MemoryBudget>,
    ) -> MemoryLimiter {
        MemoryLimiter {
            limit,
            used: 0,
            peak: 0,
            denied: false,
            charge: budget.charge(0),
            denied_by_node: false,
        }
    }

    #[test]
    fn limiter_counts_all_memories_and_remembers_denials() {
        let mut l = limiter(100, &nimbus_core::budget::MemoryBudget::unlimited());
        assert!(l.memory_growing(0, 60, None).unwrap());
        assert!(l.memory_growing(60, 90, None).unwrap());
        assert!(!l.denied);
        assert!(!l.memory_growing(90, 101, None).unwrap());
        assert!(l.denied);
        assert!(!l.denied_by_node);
        assert_eq!(l.peak, 90);
    }

    #[test]
    fn growth_past_the_node_budget_is_refused_and_given_back_with_the_store() {
        let budget = nimbus_core::budget::MemoryBudget::new(150);
        let mut a = limiter(100, &budget);
        let mut b = limiter(100, &budget);
        assert!(a.memory_growing(0, 100, None).unwrap());
        assert!(!b.memory_growing(0, 60, None).unwrap(), "100 + 60 > 150");
        assert!(b.denied_by_node && !b.denied);
        assert!(b.memory_growing(0, 50, None).unwrap());
        assert_eq!(budget.used(), 150);
        drop(a);
        assert_eq!(
            budget.used(),
            50,
            "a store gives its memory back when it drops"
        );
    }

    #[tokio::test]
    async fn outbound_checks_listing_ports_and_resolved_addresses() {
        let egress = Arc::new(
            EgressPolicy::parse(&["localhost:9000".into(), "127.0.0.1:9000".into()])
                .expect("valid"),
        );
        let check = |uri: &str| OutboundPolicy::check(egress.clone(), uri.parse().expect("uri"));
        assert!(
            check("http://127.0.0.1:9000/").await.is_ok(),
            "listed by address"
        );
        assert!(
            check("http://127.0.0.1:9001/").await.is_err(),
            "another port"
        );
        // Listed by name, but the name is loopback: refused.
        assert!(check("http://localhost:9000/").await.is_err());
        assert!(check("http://example.com/").await.is_err(), "not listed");
    }
}
