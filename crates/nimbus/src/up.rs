//! `nimbus up`: the composition root of a single node with embedded state.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use nimbus_core::Store;
use nimbus_core::api::DeployRequest;
use nimbus_gateway::GatewayConfig;
use nimbus_invoker::executor::process::ProcessExecutor;
use nimbus_invoker::executor::wasm::WasmExecutor;
use nimbus_invoker::{Executors, Invoker, InvokerConfig, InvokerParts, Node, PurgeConfig};
use nimbus_process::{ProcessOptions, ProcessRuntime};
use nimbus_store::{ArtifactStore, RecordSink, SqliteStore};
use nimbus_wasm::{WasmConfig, WasmRuntime};

/// Options of `nimbus up`.
#[derive(clap::Args)]
pub struct UpArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8790")]
    listen: SocketAddr,
    /// Deploy the app in this directory at start (repeatable).
    #[arg(long)]
    deploy: Vec<PathBuf>,
    /// Largest request body passed to a function, bytes (larger gets 413).
    #[arg(long, default_value_t = 6 * 1024 * 1024)]
    max_body_bytes: usize,
    /// How long to wait for in-flight requests on shutdown, seconds.
    #[arg(long, default_value_t = 30)]
    drain_seconds: u64,
    /// Log as JSON lines.
    #[arg(long)]
    log_json: bool,
    /// The keep-alive: an idle instance (a process sandbox, a loaded wasm component) stops
    /// after this long (e.g. 10m, 30s); the function then scales to zero.
    #[arg(long, alias = "sandbox-idle", default_value = "10m", value_parser = humantime::parse_duration)]
    keep_alive: Duration,
    /// `adaptive`: learn each process function's keep-alive from its idle times (hybrid
    /// histogram policy: unload early and pre-warm before the predicted next call), falling
    /// back to --keep-alive while the pattern is unclear. `fixed`: always --keep-alive.
    #[arg(long, default_value = "fixed", value_parser = ["fixed", "adaptive"])]
    keep_alive_policy: String,
    /// Instances the node may start per second, all functions together (the burst rate),
    /// after a burst of --start-burst; further cold starts wait their turn.
    #[arg(long, default_value_t = 50.0)]
    start_rate: f64,
    /// Instances the node may start at once before --start-rate applies.
    #[arg(long, default_value_t = 100)]
    start_burst: u32,
    /// Region reported to functions (`AWS_REGION`) and used in ARNs.
    #[arg(long, env = "NIMBUS_REGION", default_value = "us-east-1")]
    region: String,
    /// First backoff before retrying a failed async invocation or webhook delivery (doubles
    /// per retry, with jitter).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    retry_base: Duration,
    /// Price sheet for `nimbus usage` (TOML: currency, per_gb_second, per_million_requests,
    /// free_gb_seconds_per_month, free_requests_per_month; default: AWS Lambda's list prices).
    #[arg(long)]
    prices: Option<PathBuf>,
    /// How long an invocation waits for a slot of a function at its max_concurrency (capped at
    /// the function's timeout) before 429 Function.Throttled.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    throttle_wait: Duration,
    /// Most invocations running at once across all functions (the tenant's share of the node);
    /// beyond it calls wait up to --throttle-wait, then get 429. Default: unlimited.
    #[arg(long)]
    tenant_concurrency: Option<usize>,
    /// The secrets key file: 32 random bytes in base64, made (mode 0600) at first start.
    /// Default: DATA_DIR/secrets.key; keep it out of backups of the data dir, or give the key
    /// itself in NIMBUS_SECRETS_KEY (which takes precedence).
    #[arg(long, env = "NIMBUS_SECRETS_KEY_FILE")]
    secrets_key_file: Option<PathBuf>,
    /// During a key rotation, the previous secrets key file: secrets sealed with it still open,
    /// and are sealed again with the current key at start (the previous key can go after).
    #[arg(long)]
    secrets_previous_key_file: Option<PathBuf>,
    /// Monthly request quota: past it, invocations get 429 QuotaExceeded.
    #[arg(long)]
    quota_requests: Option<u64>,
    /// Monthly GB-seconds quota: past it, invocations get 429 QuotaExceeded.
    #[arg(long)]
    quota_gb_seconds: Option<f64>,
    /// How long invocation records (and their logs) are kept; older ones are deleted hourly.
    /// Usage (`nimbus usage`) is computed from records, so it covers this period at most.
    #[arg(long, default_value = "30d", value_parser = humantime::parse_duration)]
    record_retention: Duration,
    /// Export one OpenTelemetry trace per invocation (with its cold-start phases as child
    /// spans) over OTLP/HTTP to this collector, e.g. http://127.0.0.1:4318.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
    /// What all functions' memory on this node may add up to (`16GiB`, `512MiB`, or MiB):
    /// wasm memories as they grow, and every process sandbox's memory_mb while it lives.
    /// Past it, idle sandboxes are stopped to make room, then invocations get 429. Default:
    /// three quarters of the machine's memory.
    #[arg(long, value_parser = parse_budget)]
    memory_budget: Option<u64>,
    /// Disk the message log keeps in reserve (a ballast file it gives up when the disk runs
    /// low, so receives and acks still work while new messages get 507).
    #[arg(long, default_value = "64MiB", value_parser = parse_budget)]
    disk_reserve: u64,
    /// WebAssembly instances the node runs at once (its pool; a quarter of it is each wasm
    /// function's default concurrency). Past it, invocations get 429 with Retry-After.
    #[arg(long, default_value_t = 1000)]
    wasm_instances: u32,
    /// Connections served at once; one more gets 503 with Retry-After and is closed.
    #[arg(long, default_value_t = 4096)]
    max_connections: usize,
    /// Longest a connection may take to send a request's headers (an idle keep-alive
    /// connection included) before it is closed.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    header_read_timeout: Duration,
    /// Longest a request body may pause between chunks before the request fails.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    body_read_timeout: Duration,
    /// How long finished async invocations stay in the ledger (`nimbus invocation ID`).
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    ledger_retention: Duration,
}

/// Writes `content` to a new file only the owner can read.
fn write_private(path: &Path, content: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(content.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

/// The node's master secret (webhook signing secrets derive from it), created on first start.
fn ensure_master_secret(data_dir: &Path) -> anyhow::Result<Vec<u8>> {
    let path = data_dir.join("events.key");
    if !path.exists() {
        write_private(
            &path,
            &format!("{}\n", hex::encode(rand::random::<[u8; 32]>())),
        )?;
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    hex::decode(text.trim()).with_context(|| format!("{} is not a hex secret", path.display()))
}

/// Files only the server's user may read: keys, secrets and the databases (which hold
/// functions' environment values).
const PRIVATE_FILES: [&str; 7] = [
    "nimbus.db",
    "nimbus.db-wal",
    "nimbus.db-shm",
    "events.db",
    "events.db-wal",
    "events.db-shm",
    "admin.key",
];

/// Makes the data directory private (0700; its databases 0600, created so before SQLite opens
/// them, whose WAL files copy their mode) and takes its lock: a second node on the same
/// directory would steal this one's leases, so it refuses to start instead. The lock holds as
/// long as the returned file is open.
fn claim_data_dir(dir: &Path) -> anyhow::Result<nix::fcntl::Flock<std::fs::File>> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create data dir {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot make {} private", dir.display()))?;
    let lock_path = dir.join("nimbus.lock");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock_path)
        .with_context(|| format!("cannot open {}", lock_path.display()))?;
    let mut lock = match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
    {
        Ok(lock) => lock,
        Err((file, _)) => {
            let holder = std::fs::read_to_string(&lock_path).unwrap_or_default();
            drop(file);
            anyhow::bail!(
                "the data dir {} is in use by another nimbus (pid {}); stop it, or start this one with another --data-dir",
                dir.display(),
                holder.trim()
            );
        }
    };
    lock.set_len(0)?;
    lock.write_all(std::process::id().to_string().as_bytes())?;
    for name in PRIVATE_FILES {
        let path = dir.join(name);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(!name.ends_with("-wal") && !name.ends_with("-shm") && name.ends_with(".db"))
            .truncate(false)
            .mode(0o600)
            .open(&path);
        if file.is_ok() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("cannot make {} private", path.display()))?;
        }
    }
    Ok(lock)
}

/// A size argument (`16GiB`, `512MiB`, or MiB).
pub(crate) fn parse_budget(text: &str) -> Result<u64, String> {
    nimbus_core::budget::parse_size(text)
        .ok_or_else(|| format!("`{text}` is not a size: write e.g. 16GiB, 512MiB or 2048"))
}

/// Three quarters of the machine's memory (`MemTotal`), or 4 GiB when it cannot be read.
fn default_memory_budget() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let line = m.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024 / 4 * 3)
        })
        .unwrap_or(4 << 30)
}

/// Raises the soft limit on open files to the hard limit: connections, sandboxes' pipes and
/// listeners and the databases all take descriptors.
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!(error = %e, soft, hard, "cannot raise the open-file limit");
            }
        }
        _ => {}
    }
}

/// Connections the kernel queues for `accept` before dropping SYNs (capped by
/// `net.core.somaxconn`). A burst of new clients — the scale-from-zero case — must not pay a
/// 1 s SYN retransmit because the queue was short.
const LISTEN_BACKLOG: u32 = 4096;

fn listen(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The per-user default data directory.
pub fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(d).join("nimbus");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".local/share/nimbus"),
        None => PathBuf::from(".nimbus"),
    }
}

fn ensure_admin_key(store: &dyn Store, data_dir: &Path) -> anyhow::Result<()> {
    if !store.api_key_hashes()?.is_empty() {
        return Ok(());
    }
    let key = format!("nmb_{}", hex::encode(rand::random::<[u8; 24]>()));
    let path = data_dir.join("admin.key");
    write_private(&path, &format!("{key}\n"))?;
    store.insert_api_key(&nimbus_core::sha256_hex(key.as_bytes()))?;
    println!(
        "Created the admin API key (shown once; also saved to {}):",
        path.display()
    );
    println!("  {key}");
    Ok(())
}

/// The secrets key (NIMBUS_SECRETS_KEY, or the key file, made at first start) and, during a
/// rotation, the previous one.
fn secrets_sealer(args: &UpArgs, data_dir: &Path) -> anyhow::Result<nimbus_secrets::Sealer> {
    use nimbus_secrets::SecretKey;
    let current = match std::env::var("NIMBUS_SECRETS_KEY") {
        Ok(text) => SecretKey::from_base64(&text).context("NIMBUS_SECRETS_KEY")?,
        Err(_) => {
            let path = args
                .secrets_key_file
                .clone()
                .unwrap_or_else(|| data_dir.join("secrets.key"));
            SecretKey::load_or_create(&path)?
        }
    };
    let previous = match &args.secrets_previous_key_file {
        Some(path) => Some(SecretKey::load_or_create(path)?),
        None => None,
    };
    tracing::info!(key = %current.id(), "secrets key");
    Ok(nimbus_secrets::Sealer::new(current, previous))
}

/// Loads the AWS-style credentials Nimbus issued (for SigV4-signed Lambda API calls), creating
/// a pair on first start in `DIR/aws-credentials` (an AWS shared-credentials file, mode 0600:
/// point `AWS_SHARED_CREDENTIALS_FILE` at it). SigV4 needs the secret itself, so the file holds it.
fn ensure_aws_credentials(data_dir: &Path) -> anyhow::Result<HashMap<String, String>> {
    let path = data_dir.join("aws-credentials");
    if !path.exists() {
        let id = format!("AKNB{}", hex::encode_upper(rand::random::<[u8; 8]>()));
        let secret = hex::encode(rand::random::<[u8; 20]>());
        write_private(
            &path,
            &format!("[default]\naws_access_key_id = {id}\naws_secret_access_key = {secret}\n"),
        )?;
        println!(
            "Created AWS-style credentials for the Lambda API in {}",
            path.display()
        );
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut credentials = HashMap::new();
    let mut id = None;
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        match k.trim() {
            "aws_access_key_id" => id = Some(v.trim().to_string()),
            "aws_secret_access_key" => {
                if let Some(id) = id.take() {
                    credentials.insert(id, v.trim().to_string());
                }
            }
            _ => {}
        }
    }
    Ok(credentials)
}

async fn deploy_dir(invoker: &Invoker, dir: &Path, base_url: &str) -> anyhow::Result<()> {
    let app = crate::app_dir::read(dir)?;
    let events = nimbus_core::manifest::AppSpec::parse(&app.manifest)
        .map(|spec| spec.events)
        .unwrap_or_default();
    let mut artifacts = BTreeMap::new();
    for (source, bytes) in app.sources {
        let sha = nimbus_core::sha256_hex(&bytes);
        invoker.put_artifact(sha.clone(), bytes.into()).await?;
        artifacts.insert(source, sha);
    }
    let report = invoker
        .deploy(DeployRequest {
            manifest: app.manifest,
            artifacts,
        })
        .await
        .with_context(|| dir.display().to_string())?;
    for line in crate::hints::lines(&report.functions, &events, base_url) {
        println!("{line}");
    }
    Ok(())
}

/// What every tenant's invoker is made of: the node's runtimes and settings, shared.
struct NodeParts {
    data_dir: PathBuf,
    wasm: Arc<WasmRuntime>,
    process: Arc<ProcessRuntime>,
    start_rate: Arc<nimbus_core::burst::StartRate>,
    memory_budget: Arc<nimbus_core::budget::MemoryBudget>,
    keep_alive: Duration,
    sealer: nimbus_secrets::Sealer,
    /// Every tenant's settings but its limits.
    config: InvokerConfig,
    /// Every tenant's engine settings but its master secret and observer.
    engine: nimbus_events::EngineConfig,
    /// The node's listener (durable functions call the durable execution API there).
    api: std::net::SocketAddr,
}

/// The disk reserve of a tenant's own event log (the default tenant's is `--disk-reserve`).
const TENANT_DISK_RESERVE: u64 = 8 << 20;

impl NodeParts {
    /// A secret for `purpose` of `tenant`, derived from the node's master secret.
    fn derived_secret(&self, purpose: &str, tenant: &str) -> anyhow::Result<Vec<u8>> {
        let mut material = self.engine.master_secret.clone();
        material.extend_from_slice(format!("\0{purpose}\0{tenant}").as_bytes());
        Ok(hex::decode(nimbus_core::sha256_hex(&material))?)
    }

    /// Where tenant `name` keeps its artifacts and event log.
    fn tenant_dir(&self, name: &str) -> PathBuf {
        self.data_dir.join("tenants").join(name)
    }

    /// Builds a tenant's invoker on `store` (its artifacts and event log in `dir`) and starts
    /// its event engine.
    async fn open_invoker(
        &self,
        sqlite: Arc<SqliteStore>,
        dir: &Path,
        limits: nimbus_core::tenant::TenantLimits,
        aws_credentials: HashMap<String, String>,
        disk_reserve: u64,
    ) -> anyhow::Result<(Arc<Invoker>, nimbus_store::group_commit::RecordWriter)> {
        let store: Arc<dyn Store> = sqlite.clone();
        let artifacts = ArtifactStore::open(dir.join("artifacts"))?;
        let (records, writer) = RecordSink::start(store.clone())?;
        // Webhook signing secrets derive from the master secret: each tenant gets its own.
        let master_secret = if store.tenant() == nimbus_core::DEFAULT_TENANT {
            self.engine.master_secret.clone()
        } else {
            self.derived_secret("tenant", store.tenant())?
        };
        // Durable tokens, callback ids and functions' credentials: a secret per tenant.
        let durable_secret = self.derived_secret("durable", store.tenant())?;
        // A tenant with a memory limit charges a share of the node's budget.
        let share = limits
            .memory_bytes
            .map(|bytes| nimbus_core::budget::MemoryBudget::share(&self.memory_budget, bytes));
        let invoker = Invoker::new(
            InvokerParts {
                store,
                artifacts: artifacts.clone(),
                records,
                executors: Executors {
                    wasm: Arc::new(
                        WasmExecutor::new(
                            self.wasm.clone(),
                            artifacts.clone(),
                            Some(self.start_rate.clone()),
                            self.keep_alive,
                        )
                        .with_budget(share.clone()),
                    ),
                    process: Arc::new(
                        ProcessExecutor::new(self.process.clone(), artifacts).with_budget(share),
                    ),
                },
                aws_credentials,
                sealer: Some(self.sealer.clone()),
            },
            InvokerConfig {
                quota: nimbus_invoker::Quota {
                    monthly_requests: limits.monthly_requests,
                    monthly_gb_seconds: limits.monthly_gb_seconds,
                },
                tenant_concurrency: limits.concurrency,
                storage_bytes: limits.storage_bytes,
                durable: Some(nimbus_invoker::DurableEndpoint {
                    api: self.api,
                    secret: durable_secret,
                }),
                ..self.config.clone()
            },
        )?;
        let log: Arc<dyn nimbus_log::MessageLog> = Arc::new(
            nimbus_log::SqliteLog::open_with_reserve(&dir.join("events.db"), disk_reserve)
                .context("opening the event log")?,
        );
        invoker
            .start_events(
                log.clone(),
                nimbus_events::EngineConfig {
                    master_secret,
                    observer: Some(invoker.metrics().clone()),
                    ..self.engine.clone()
                },
            )
            .await
            .context("starting the event engine")?;
        invoker
            .start_durable(sqlite.clone(), sqlite, log)
            .await
            .context("starting the durable execution engine")?;
        Ok((invoker, writer))
    }
}

impl nimbus_invoker::TenantOpener for NodeParts {
    fn open<'a>(
        &'a self,
        tenant: &'a nimbus_core::tenant::Tenant,
    ) -> nimbus_invoker::executor::BoxFuture<
        'a,
        Result<nimbus_invoker::OpenedTenant, nimbus_invoker::OpenError>,
    > {
        Box::pin(async move {
            let dir = self.tenant_dir(&tenant.name);
            std::fs::create_dir_all(&dir)?;
            let store = Arc::new(SqliteStore::open(
                &self.data_dir.join("nimbus.db"),
                &tenant.name,
            )?);
            let (invoker, records) = self
                .open_invoker(
                    store,
                    &dir,
                    tenant.limits.clone(),
                    HashMap::new(),
                    TENANT_DISK_RESERVE,
                )
                .await
                .map_err(|e| -> nimbus_invoker::OpenError { format!("{e:#}").into() })?;
            invoker.prestart_all().await?;
            Ok(nimbus_invoker::OpenedTenant { invoker, records })
        })
    }

    fn delete_files(&self, name: &str) -> std::io::Result<()> {
        match std::fs::remove_dir_all(self.tenant_dir(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return ctrl_c.await.unwrap_or_default(),
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await.unwrap_or_default();
}

/// Runs a node until SIGINT/SIGTERM, then drains and exits.
pub async fn run(args: UpArgs, data_dir: PathBuf) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("NIMBUS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if args.log_json {
        builder.json().init();
    } else {
        builder.init();
    }

    let _lock = claim_data_dir(&data_dir)?;
    raise_fd_limit();
    let store = Arc::new(
        SqliteStore::open(&data_dir.join("nimbus.db"), nimbus_core::DEFAULT_TENANT)
            .context("opening the database")?,
    );
    ensure_admin_key(store.as_ref(), &data_dir)?;
    anyhow::ensure!(
        args.wasm_instances > 0,
        "--wasm-instances must be at least 1"
    );
    let memory_budget = nimbus_core::budget::MemoryBudget::new(
        args.memory_budget.unwrap_or_else(default_memory_budget),
    );
    tracing::info!(
        memory_budget_mib = memory_budget.limit() >> 20,
        "the node's memory budget"
    );
    let wasm = Arc::new(WasmRuntime::new(WasmConfig {
        max_instances: args.wasm_instances,
        memory_budget: memory_budget.clone(),
        ..WasmConfig::new(data_dir.join("compiled"))
    })?);
    let aws_credentials = ensure_aws_credentials(&data_dir)?;
    let sealer = secrets_sealer(&args, &data_dir)?;
    anyhow::ensure!(
        args.start_rate > 0.0 && args.start_rate.is_finite(),
        "--start-rate must be a positive number of instances per second"
    );
    // The node's one burst bucket for instance starts, lent to both runtimes.
    let start_rate = Arc::new(nimbus_core::burst::StartRate::new(
        args.start_rate,
        args.start_burst,
    ));
    let mut process_options = ProcessOptions::new(
        &data_dir,
        std::env::current_exe().context("locating the nimbus executable")?,
    );
    process_options.idle_timeout = args.keep_alive;
    process_options.adaptive_keep_alive = args.keep_alive_policy == "adaptive";
    process_options.start_rate = Some(start_rate.clone());
    process_options.region = args.region.clone();
    process_options.memory_budget = memory_budget.clone();
    let process = ProcessRuntime::new(process_options).context("starting the process runtime")?;
    let isolation = process.isolation();
    if isolation.is_full() {
        tracing::info!(isolation = %isolation.describe(), "process sandboxes");
    } else {
        tracing::warn!("process sandboxes run with {}", isolation.describe());
    }
    let telemetry = match &args.otlp_endpoint {
        Some(endpoint) => {
            let t = nimbus_telemetry::Telemetry::otlp(endpoint)?;
            tracing::info!(endpoint, "exporting invocation traces over OTLP");
            t
        }
        None => nimbus_telemetry::Telemetry::disabled(),
    };
    // Bound before the tenants open: durable functions' sandboxes are told where it is.
    let listener =
        listen(args.listen).with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let base_url = format!("http://{addr}");
    let parts = NodeParts {
        api: addr,
        data_dir: data_dir.clone(),
        wasm,
        process,
        start_rate,
        memory_budget,
        keep_alive: args.keep_alive,
        sealer,
        config: InvokerConfig {
            quota: nimbus_invoker::Quota::default(),
            throttle_wait: args.throttle_wait,
            tenant_concurrency: None,
            storage_bytes: None,
            telemetry,
            region: args.region.clone(),
            durable: None,
        },
        engine: nimbus_events::EngineConfig {
            region: args.region.clone(),
            master_secret: ensure_master_secret(&data_dir)?,
            retry_base_ms: args.retry_base.as_millis() as u64,
            ledger_retention_ms: args.ledger_retention.as_millis() as i64,
            observer: None,
        },
    };
    let (invoker, writer) = parts
        .open_invoker(
            store,
            &data_dir,
            nimbus_core::tenant::TenantLimits {
                concurrency: args.tenant_concurrency,
                monthly_requests: args.quota_requests,
                monthly_gb_seconds: args.quota_gb_seconds,
                // The default tenant has the whole node's budget and disk.
                memory_bytes: None,
                storage_bytes: None,
            },
            aws_credentials,
            args.disk_reserve,
        )
        .await?;
    let prices = match &args.prices {
        None => nimbus_core::usage::PriceSheet::default(),
        Some(path) => toml::from_str(
            &std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?,
        )
        .with_context(|| format!("{} is not a price sheet", path.display()))?,
    };
    let tenancy = nimbus_invoker::Tenancy::open(invoker.clone(), Box::new(parts))
        .await
        .context("opening the tenants")?;
    let node = Node::start(
        tenancy.clone(),
        writer,
        PurgeConfig {
            retention: args.record_retention,
            every: Duration::from_secs(3600),
        },
    );

    match invoker.sweep_storage(Duration::from_secs(3600)).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(removed = n, "removed unused artifacts, code and leftovers"),
        Err(e) => tracing::warn!(error = %e, "cleaning the data dir"),
    }
    match invoker.reseal_secrets().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(secrets = n, "secrets sealed again with the current key"),
        Err(e) => return Err(e).context("sealing secrets with the new key"),
    }
    invoker
        .prestart_all()
        .await
        .context("starting min_instances instances")?;
    for dir in &args.deploy {
        deploy_dir(&invoker, dir, &base_url).await?;
    }
    println!(
        "Nimbus listening on {base_url} (data dir {})",
        data_dir.display()
    );
    std::io::stdout().flush()?;
    tracing::info!(%addr, "listening");

    let app = nimbus_gateway::node_router(
        tenancy,
        GatewayConfig {
            max_body_bytes: args.max_body_bytes,
            prices,
            ..GatewayConfig::default()
        },
    );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let drain = Duration::from_secs(args.drain_seconds);
    let serve_config = nimbus_gateway::ServeConfig {
        max_connections: args.max_connections,
        header_read_timeout: args.header_read_timeout,
        body_read_timeout: args.body_read_timeout,
    };
    let server = tokio::spawn(nimbus_gateway::serve(
        listener,
        app,
        serve_config,
        async move {
            let _ = stop_rx.await;
        },
    ));
    shutdown_signal().await;
    tracing::info!("shutting down: draining in-flight requests");
    let _ = stop_tx.send(());
    match tokio::time::timeout(drain, server).await {
        Ok(joined) => joined?,
        Err(_) => tracing::warn!("drain timed out after {drain:?}; exiting anyway"),
    }
    // Then the node: event consumers, background duties, sandboxes, records, traces.
    node.shutdown(drain).await;
    tracing::info!("stopped");
    Ok(())
}
