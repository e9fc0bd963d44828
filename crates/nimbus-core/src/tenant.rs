//! Tenants: who owns what on a node, and which tenant an HTTP request is for.
//!
//! A tenant owns its apps, functions, event resources, keys, secrets, records and usage; its
//! names are its own. The `default` tenant is the single-user one: its routes are served at
//! the root and its admin keys are the node's operator keys (they manage the other tenants).
//!
//! A request reaches another tenant's routes in one of two ways, decided by [`TenantDirectory`]:
//! - the path prefix `/tenants/{name}/…` (always; the prefix is removed before routing), or
//! - a custom domain the tenant claims (`Host: api.acme.example` → tenant `acme`, paths as is).
//!
//! Control-plane calls (`/v1`, the Lambda API, `/metrics`) go to the tenant of the caller's
//! credential instead; that lookup is the gateway's, since it needs the keys.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::DEFAULT_TENANT;

/// The path prefix under which every tenant's routes are served.
pub const TENANT_PATH_PREFIX: &str = "/tenants";

/// Longest tenant name.
pub const MAX_TENANT_NAME: usize = 40;

/// A tenant's limits on this node. `None` is unlimited (within the node's own limits).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantLimits {
    /// Invocations running at once across all its functions; more wait, then get 429.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    /// Invocations per calendar month; past it, 429 QuotaExceeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly_requests: Option<u64>,
    /// GB-seconds per calendar month; past it, 429 QuotaExceeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly_gb_seconds: Option<f64>,
    /// Its share of the node's memory budget, bytes: what its wasm memories and process
    /// sandboxes may hold at once (past it, its own idle sandboxes stop, then 429).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// Bytes of uploaded code (function artifacts) it may keep; past it, uploads get 400
    /// `CodeStorageExceeded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_bytes: Option<u64>,
}

/// A tenant, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tenant {
    /// Its name: lower-case letters, digits and `-`.
    pub name: String,
    /// Custom domains whose requests are this tenant's routes (lower case, no port).
    #[serde(default)]
    pub domains: Vec<String>,
    /// Its limits.
    #[serde(default)]
    pub limits: TenantLimits,
    /// When it was made, unix ms.
    #[serde(default)]
    pub created_ms: i64,
}

/// A tenant definition that cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TenantError(pub String);

/// Checks a tenant name: 1–40 of `a-z 0-9 -`, starting with a letter, not ending with `-`.
pub fn validate_name(name: &str) -> Result<(), TenantError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_TENANT_NAME
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(TenantError(format!(
            "tenant name `{name}`: use 1-{MAX_TENANT_NAME} lower-case letters, digits and `-`, starting with a letter"
        )))
    }
}

/// Normalises a custom domain (lower case, no trailing dot) and checks it is a host name.
pub fn normalise_domain(domain: &str) -> Result<String, TenantError> {
    let d = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if d.len() <= 253 && d.contains('.') && d.split('.').all(label_ok) {
        Ok(d)
    } else {
        Err(TenantError(format!(
            "domain `{domain}` is not a host name (e.g. api.example.com; no scheme, port or path)"
        )))
    }
}

impl Tenant {
    /// A new tenant, its name and domains checked and normalised.
    pub fn new(
        name: &str,
        domains: &[String],
        limits: TenantLimits,
        now_ms: i64,
    ) -> Result<Self, TenantError> {
        validate_name(name)?;
        if name == DEFAULT_TENANT {
            return Err(TenantError(format!(
                "`{DEFAULT_TENANT}` is the node's own tenant; it always exists"
            )));
        }
        let mut normal = Vec::new();
        for d in domains {
            let d = normalise_domain(d)?;
            if !normal.contains(&d) {
                normal.push(d);
            }
        }
        if limits.concurrency == Some(0) {
            return Err(TenantError("concurrency must be at least 1".into()));
        }
        if limits.memory_bytes.is_some_and(|m| m < 1 << 20) {
            return Err(TenantError(
                "the memory share must be at least 1 MiB".into(),
            ));
        }
        if limits
            .monthly_gb_seconds
            .is_some_and(|g| !g.is_finite() || g < 0.0)
        {
            return Err(TenantError(
                "monthly_gb_seconds must be a non-negative number".into(),
            ));
        }
        Ok(Self {
            name: name.to_string(),
            domains: normal,
            limits,
            created_ms: now_ms,
        })
    }
}

/// Where tenant `name`'s routes are served on any host: `/tenants/NAME`, or `""` (the root) for
/// the default tenant.
pub fn route_prefix(name: &str) -> String {
    if name == DEFAULT_TENANT {
        String::new()
    } else {
        format!("{TENANT_PATH_PREFIX}/{name}")
    }
}

/// Where a request goes: a tenant, and the path its routes see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantTarget<'a> {
    /// The tenant (`None`: decided by the caller's credential, else the default tenant).
    pub tenant: Option<String>,
    /// The path with the tenant prefix removed (as given when there was none).
    pub path: &'a str,
}

/// Which tenant serves which host: the custom domains of every tenant, as one lookup.
#[derive(Debug, Clone, Default)]
pub struct TenantDirectory {
    domains: HashMap<String, String>,
}

impl TenantDirectory {
    /// The directory of `tenants`. A domain claimed twice belongs to the first (callers refuse
    /// the second claim before it is stored; see [`TenantDirectory::owner_of`]).
    pub fn new<'a>(tenants: impl IntoIterator<Item = &'a Tenant>) -> Self {
        let mut domains = HashMap::new();
        for t in tenants {
            for d in &t.domains {
                domains.entry(d.clone()).or_insert_with(|| t.name.clone());
            }
        }
        Self { domains }
    }

    /// The tenant that claims `domain`, if one does.
    pub fn owner_of(&self, domain: &str) -> Option<&str> {
        self.domains.get(domain).map(String::as_str)
    }

    /// The tenant of a request to `host` (the `Host` header, port allowed) and `path`.
    /// A `/tenants/{name}` prefix wins over the host; a claimed host wins over the default.
    pub fn resolve<'a>(&self, host: Option<&str>, path: &'a str) -> TenantTarget<'a> {
        if let Some(rest) = path
            .strip_prefix(TENANT_PATH_PREFIX)
            .and_then(|r| r.strip_prefix('/'))
        {
            let (name, tail) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, "/"),
            };
            if !name.is_empty() {
                return TenantTarget {
                    tenant: Some(name.to_string()),
                    path: tail,
                };
            }
        }
        let tenant = host
            .map(strip_port)
            .map(|h| h.trim_end_matches('.').to_ascii_lowercase())
            .and_then(|h| self.domains.get(&h).cloned());
        TenantTarget { tenant, path }
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // An IPv6 literal is never a claimed domain.
        return host;
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(name: &str, domains: &[&str]) -> Tenant {
        let domains: Vec<String> = domains.iter().map(|d| d.to_string()).collect();
        Tenant::new(name, &domains, TenantLimits::default(), 0).unwrap()
    }

    #[test]
    fn names_are_checked() {
        for good in ["acme", "a", "team-7", &"a".repeat(40)] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Acme",
            "7up",
            "a_b",
            "a-",
            "a b",
            "a/b",
            "..",
            &"a".repeat(41),
        ] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
        let e = Tenant::new("default", &[], TenantLimits::default(), 0).unwrap_err();
        assert!(e.0.contains("always exists"), "{e}");
    }

    #[test]
    fn domains_are_normalised_and_checked() {
        let t = tenant("acme", &["API.Acme.Example.", "api.acme.example"]);
        assert_eq!(t.domains, ["api.acme.example"]);
        for bad in [
            "localhost",
            "http://a.b",
            "a.b:80",
            "a.b/x",
            "-a.b",
            "a..b",
            "",
        ] {
            assert!(normalise_domain(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn limits_are_checked() {
        let zero = TenantLimits {
            concurrency: Some(0),
            ..TenantLimits::default()
        };
        assert!(Tenant::new("a", &[], zero, 0).is_err());
        let nan = TenantLimits {
            monthly_gb_seconds: Some(f64::NAN),
            ..TenantLimits::default()
        };
        assert!(Tenant::new("a", &[], nan, 0).is_err());
        let tiny = TenantLimits {
            memory_bytes: Some(1000),
            ..TenantLimits::default()
        };
        assert!(Tenant::new("a", &[], tiny, 0).is_err());
    }

    #[test]
    fn the_path_prefix_names_the_tenant_and_is_removed() {
        let dir = TenantDirectory::default();
        let t = dir.resolve(None, "/tenants/acme/hello/x");
        assert_eq!((t.tenant.as_deref(), t.path), (Some("acme"), "/hello/x"));
        let t = dir.resolve(None, "/tenants/acme");
        assert_eq!((t.tenant.as_deref(), t.path), (Some("acme"), "/"));
        let t = dir.resolve(None, "/tenants/acme/");
        assert_eq!((t.tenant.as_deref(), t.path), (Some("acme"), "/"));
        // Not the prefix: the default tenant's own paths.
        for path in ["/tenants", "/tenants/", "/tenantsx/a", "/hello", "/"] {
            assert_eq!(dir.resolve(None, path).tenant, None, "{path}");
        }
    }

    #[test]
    fn a_claimed_host_names_the_tenant() {
        let acme = tenant("acme", &["api.acme.example"]);
        let other = tenant("other", &["api.acme.example", "x.example"]);
        let dir = TenantDirectory::new([&acme, &other]);
        assert_eq!(dir.owner_of("api.acme.example"), Some("acme"));
        for host in [
            "api.acme.example",
            "API.ACME.example:8790",
            "api.acme.example.",
        ] {
            let t = dir.resolve(Some(host), "/hello");
            assert_eq!((t.tenant.as_deref(), t.path), (Some("acme"), "/hello"));
        }
        assert_eq!(
            dir.resolve(Some("x.example"), "/").tenant.as_deref(),
            Some("other")
        );
        assert_eq!(dir.resolve(Some("127.0.0.1:8790"), "/hello").tenant, None);
        assert_eq!(dir.resolve(Some("[::1]:8790"), "/hello").tenant, None);
        assert_eq!(dir.resolve(None, "/hello").tenant, None);
        // The prefix wins over the host.
        let t = dir.resolve(Some("api.acme.example"), "/tenants/other/a");
        assert_eq!((t.tenant.as_deref(), t.path), (Some("other"), "/a"));
    }
}
