//! [`Tenancy`]: the tenants of a node, one [`Invoker`] each.
//!
//! Every tenant has its own invoker: its own store scope, artifacts, event log and engine,
//! records, admission (its concurrency and quotas) and credentials, so no name, queue,
//! subscription, grant or key of one tenant reaches another. The runtimes (and their caches
//! and the node's memory budget) are shared. The default tenant's invoker is made by the
//! composition root; the others are opened through a [`TenantOpener`] it provides, at start
//! for the stored tenants and when the operator creates one.
//!
//! Lookups ([`Tenancy::get`], [`Tenancy::resolve`], [`Tenancy::by_key`]) read one lock-free
//! snapshot; creations and removals are serialised and swap it whole.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use nimbus_core::DEFAULT_TENANT;
use nimbus_core::store::StoreError;
use nimbus_core::tenant::{Tenant, TenantDirectory, TenantError, TenantTarget};
use nimbus_store::group_commit::RecordWriter;

use crate::executor::BoxFuture;
use crate::invoker::Invoker;
use crate::live::Removal;

/// A tenant's invoker, opened and running (its event engine started).
pub struct OpenedTenant {
    /// The tenant's invoker.
    pub invoker: Arc<Invoker>,
    /// Its record writer, finished when the tenant or the node stops.
    pub records: RecordWriter,
}

/// Makes the invokers of tenants; implemented by the composition root, which owns the
/// runtimes and the data directory.
pub trait TenantOpener: Send + Sync + 'static {
    /// Builds `tenant`'s invoker and starts its event engine.
    fn open<'a>(&'a self, tenant: &'a Tenant) -> BoxFuture<'a, Result<OpenedTenant, OpenError>>;

    /// Deletes what tenant `name` keeps outside the store (artifacts, event log), after its
    /// invoker has stopped.
    fn delete_files(&self, name: &str) -> std::io::Result<()>;
}

/// Why a tenant's invoker could not be built.
pub type OpenError = Box<dyn std::error::Error + Send + Sync>;

/// A tenant operation that failed; nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum TenancyError {
    /// The definition is not acceptable.
    #[error(transparent)]
    Invalid(#[from] TenantError),
    /// A tenant of that name exists.
    #[error("tenant `{0}` exists")]
    Exists(String),
    /// No tenant of that name.
    #[error("tenant `{0}` does not exist")]
    NotFound(String),
    /// Another tenant serves that domain.
    #[error("domain `{domain}` is tenant `{owner}`'s")]
    DomainTaken {
        /// The domain.
        domain: String,
        /// The tenant that has it.
        owner: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The tenant's invoker could not be built.
    #[error("opening tenant `{name}`: {source}")]
    Open {
        /// The tenant.
        name: String,
        /// Why.
        source: OpenError,
    },
    /// Its files could not be deleted (its state is gone from the store).
    #[error("deleting the files of tenant `{name}`: {source}")]
    Files {
        /// The tenant.
        name: String,
        /// Why.
        source: std::io::Error,
    },
}

struct Entry {
    tenant: Tenant,
    invoker: Arc<Invoker>,
    records: Mutex<Option<RecordWriter>>,
}

#[derive(Default)]
struct Snapshot {
    entries: HashMap<String, Arc<Entry>>,
    directory: TenantDirectory,
}

impl Snapshot {
    fn with(entries: HashMap<String, Arc<Entry>>) -> Self {
        let directory = TenantDirectory::new(entries.values().map(|e| &e.tenant));
        Self { entries, directory }
    }
}

/// The tenants of a node. See the module documentation.
pub struct Tenancy {
    default: Arc<Invoker>,
    opener: Box<dyn TenantOpener>,
    snapshot: ArcSwap<Snapshot>,
    changes: tokio::sync::Mutex<()>,
}

impl Tenancy {
    /// The node's tenants: the default one's invoker, and every stored tenant opened with
    /// `opener`.
    pub async fn open(
        default: Arc<Invoker>,
        opener: Box<dyn TenantOpener>,
    ) -> Result<Arc<Self>, TenancyError> {
        let store = default.store().clone();
        let stored = blocking(move || store.tenants()).await?;
        let mut entries = HashMap::new();
        for tenant in stored {
            let opened = opener
                .open(&tenant)
                .await
                .map_err(|source| TenancyError::Open {
                    name: tenant.name.clone(),
                    source,
                })?;
            entries.insert(tenant.name.clone(), Arc::new(entry(tenant, opened)));
        }
        Ok(Arc::new(Self {
            default,
            opener,
            snapshot: ArcSwap::from_pointee(Snapshot::with(entries)),
            changes: tokio::sync::Mutex::new(()),
        }))
    }

    /// The default tenant's invoker (the operator's).
    pub fn default_invoker(&self) -> &Arc<Invoker> {
        &self.default
    }

    /// The invoker of tenant `name` (`default` included).
    pub fn get(&self, name: &str) -> Option<Arc<Invoker>> {
        if name == DEFAULT_TENANT {
            return Some(self.default.clone());
        }
        self.snapshot
            .load()
            .entries
            .get(name)
            .map(|e| e.invoker.clone())
    }

    /// Whether the node has tenants besides the default one.
    pub fn is_multi_tenant(&self) -> bool {
        !self.snapshot.load().entries.is_empty()
    }

    /// The tenant a request to `host` and `path` names (see
    /// [`TenantDirectory::resolve`]).
    pub fn resolve<'a>(&self, host: Option<&str>, path: &'a str) -> TenantTarget<'a> {
        self.snapshot.load().directory.resolve(host, path)
    }

    /// The tenants besides the default one, by name.
    pub fn list(&self) -> Vec<Tenant> {
        let mut all: Vec<Tenant> = self
            .snapshot
            .load()
            .entries
            .values()
            .map(|e| e.tenant.clone())
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Every tenant's invoker, the default one first.
    pub fn invokers(&self) -> Vec<Arc<Invoker>> {
        let snapshot = self.snapshot.load();
        let mut names: Vec<&String> = snapshot.entries.keys().collect();
        names.sort();
        std::iter::once(self.default.clone())
            .chain(
                names
                    .into_iter()
                    .map(|n| snapshot.entries[n].invoker.clone()),
            )
            .collect()
    }

    /// The invoker of the tenant whose API key `key` is, if a tenant other than the default
    /// one has it (expired keys included: that tenant then says so). One hash, whatever the
    /// number of tenants.
    pub fn by_key(&self, key: &str) -> Option<Arc<Invoker>> {
        let hash = nimbus_core::sha256_hex(key.as_bytes());
        self.snapshot
            .load()
            .entries
            .values()
            .find(|e| e.invoker.access().knows_hash(&hash))
            .map(|e| e.invoker.clone())
    }

    /// The invoker of the tenant that issued AWS access key id `id`, if a tenant other than
    /// the default one did.
    pub fn by_access_key_id(&self, id: &str) -> Option<Arc<Invoker>> {
        self.snapshot
            .load()
            .entries
            .values()
            .find(|e| e.invoker.access().aws_secret(id).is_some())
            .map(|e| e.invoker.clone())
    }

    /// Creates a tenant: stored, then its invoker opened; on failure nothing remains.
    pub async fn create(&self, tenant: Tenant) -> Result<Tenant, TenancyError> {
        let _changes = self.changes.lock().await;
        let current = self.snapshot.load_full();
        if current.entries.contains_key(&tenant.name) {
            return Err(TenancyError::Exists(tenant.name));
        }
        for d in &tenant.domains {
            if let Some(owner) = current.directory.owner_of(d) {
                return Err(TenancyError::DomainTaken {
                    domain: d.clone(),
                    owner: owner.to_string(),
                });
            }
        }
        // A tenant starts empty, whatever an earlier tenant of that name left.
        self.opener
            .delete_files(&tenant.name)
            .map_err(|source| TenancyError::Files {
                name: tenant.name.clone(),
                source,
            })?;
        let store = self.default.store().clone();
        let stored = tenant.clone();
        if !blocking(move || store.insert_tenant(&stored)).await? {
            return Err(TenancyError::Exists(tenant.name));
        }
        let opened = match self.opener.open(&tenant).await {
            Ok(opened) => opened,
            Err(source) => {
                let (store, name) = (self.default.store().clone(), tenant.name.clone());
                if let Err(e) = blocking(move || store.delete_tenant(&name)).await {
                    tracing::error!(tenant = %tenant.name, error = %e, "undoing a failed tenant creation");
                }
                return Err(TenancyError::Open {
                    name: tenant.name,
                    source,
                });
            }
        };
        let mut entries = current.entries.clone();
        entries.insert(tenant.name.clone(), Arc::new(entry(tenant.clone(), opened)));
        self.snapshot.store(Arc::new(Snapshot::with(entries)));
        tracing::info!(tenant = %tenant.name, "tenant created");
        Ok(tenant)
    }

    /// Removes a tenant and everything it owns: its routes stop answering at once, its
    /// functions' instances stop, its consumers settle (within `grace`), then its state and
    /// files are deleted.
    pub async fn remove(&self, name: &str, grace: Duration) -> Result<(), TenancyError> {
        let _changes = self.changes.lock().await;
        let current = self.snapshot.load_full();
        let Some(gone) = current.entries.get(name).cloned() else {
            return Err(TenancyError::NotFound(name.to_string()));
        };
        let mut entries = current.entries.clone();
        entries.remove(name);
        self.snapshot.store(Arc::new(Snapshot::with(entries)));
        stop(&gone, grace, true).await;
        let store = self.default.store().clone();
        let owned = name.to_string();
        blocking(move || store.delete_tenant(&owned)).await?;
        self.opener
            .delete_files(name)
            .map_err(|source| TenancyError::Files {
                name: name.to_string(),
                source,
            })?;
        tracing::info!(tenant = %name, "tenant removed");
        Ok(())
    }

    /// Stops every tenant but the default one (whose node stops it): their event engines,
    /// then their record writers. At node shutdown.
    pub async fn shutdown_tenants(&self, grace: Duration) {
        let snapshot = self.snapshot.load_full();
        for e in snapshot.entries.values() {
            stop(e, grace, false).await;
        }
    }
}

fn entry(tenant: Tenant, opened: OpenedTenant) -> Entry {
    Entry {
        tenant,
        invoker: opened.invoker,
        records: Mutex::new(Some(opened.records)),
    }
}

/// Stops one tenant's invoker: its engine, its record writer; first, when the tenant goes
/// away (`remove_apps`), its apps, which stops their instances.
async fn stop(entry: &Entry, grace: Duration, remove_apps: bool) {
    let invoker = &entry.invoker;
    let store = invoker.store().clone();
    let apps = if remove_apps {
        blocking(move || store.apps()).await
    } else {
        Ok(Vec::new())
    };
    match apps {
        Ok(apps) => {
            for app in apps {
                if let Err(e) = invoker.remove(Removal::App(app.clone())).await {
                    tracing::warn!(tenant = %entry.tenant.name, app, error = %e, "stopping an app");
                }
            }
        }
        Err(e) => tracing::warn!(tenant = %entry.tenant.name, error = %e, "listing apps"),
    }
    if let Ok(engine) = invoker.engine() {
        engine.shutdown(grace).await;
    }
    let writer = entry
        .records
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    if let Some(writer) = writer {
        let _ =
            tokio::time::timeout(grace, tokio::task::spawn_blocking(move || writer.finish())).await;
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(StoreError::backend)?
}
