//! The `nimbus` binary: `nimbus up` composes and runs a node; every other verb is a client of a
//! running node's `/v1` API (through `nimbus-client`).

mod app_dir;
mod cli;
mod durable_cli;
mod events_cli;
mod hints;
mod up;
mod workflows_cli;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Nimbus: a self-hosted serverless platform.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// URL of a running Nimbus (for every verb but `up`).
    #[arg(
        long,
        global = true,
        env = "NIMBUS_URL",
        default_value = "http://127.0.0.1:8790"
    )]
    url: String,
    /// Admin API key (default: DATA_DIR/admin.key, if readable).
    #[arg(long, global = true, env = "NIMBUS_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// The node's data dir: where `up` keeps state, and where other verbs find the admin key
    /// (default: $XDG_DATA_HOME/nimbus, else ~/.local/share/nimbus).
    #[arg(long, global = true, env = "NIMBUS_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum AliasCommand {
    /// Create or move an alias: `nimbus alias set F live 3 --additional 4=0.1`.
    Set {
        /// Function name.
        function: String,
        /// Alias name.
        name: String,
        /// The published version it points at.
        version: u32,
        /// `VERSION=WEIGHT`: send this share (0 < w < 1) of invocations to a second version.
        #[arg(long)]
        additional: Option<String>,
        /// Description.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List a function's aliases.
    Ls {
        /// Function name.
        function: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete an alias.
    Rm {
        /// Function name.
        function: String,
        /// Alias name.
        name: String,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Make an API key and print it once, with its AWS-style credentials:
    /// `nimbus key create --role invoker --function checkout --expires 30d`.
    Create {
        /// admin (everything, keys and secrets too), deployer (deploy, remove, read), invoker
        /// (invoke its functions, send to its queues and topics), reader (records, logs,
        /// metrics).
        #[arg(long)]
        role: String,
        /// Invoker keys: a function it may invoke (repeatable; `*` for all).
        #[arg(long = "function")]
        functions: Vec<String>,
        /// Invoker keys: a queue it may send to (repeatable; `*` for all).
        #[arg(long = "queue")]
        queues: Vec<String>,
        /// Invoker keys: a topic it may publish to (repeatable; `*` for all).
        #[arg(long = "topic")]
        topics: Vec<String>,
        /// How long it works (`30d`, `12h`); default: until revoked.
        #[arg(long, value_parser = humantime::parse_duration)]
        expires: Option<std::time::Duration>,
        /// Usage plan on routes with `auth = "api_key"`: requests per second.
        #[arg(long)]
        rate: Option<u32>,
        /// Usage plan: requests at once above the rate (default: one second's worth).
        #[arg(long)]
        burst: Option<u32>,
        /// Usage plan: `N/day`, `N/week` or `N/month`.
        #[arg(long)]
        quota: Option<String>,
        /// What it is for.
        #[arg(long, default_value = "")]
        description: String,
        /// Make it for this tenant (an operator call; default: the caller's own tenant).
        #[arg(long)]
        tenant: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List keys (never the keys themselves).
    Ls {
        /// A tenant's keys (an operator call; default: the caller's own tenant).
        #[arg(long)]
        tenant: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by id: its next call is refused.
    Revoke {
        /// The key's id (`key_…`).
        id: String,
        /// A tenant's key (an operator call; default: the caller's own tenant).
        #[arg(long)]
        tenant: Option<String>,
    },
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Make a tenant (operator key): `nimbus tenant create acme --domain api.acme.example
    /// --concurrency 50`. Its routes are served under /tenants/NAME and on its domains; give
    /// it an admin key with `nimbus key create --tenant NAME --role admin`.
    Create {
        /// Tenant name (lower-case letters, digits, `-`).
        name: String,
        /// A custom domain whose requests are this tenant's routes (repeatable).
        #[arg(long = "domain")]
        domains: Vec<String>,
        /// Invocations running at once across all its functions.
        #[arg(long)]
        concurrency: Option<usize>,
        /// Invocations per month.
        #[arg(long)]
        quota_requests: Option<u64>,
        /// GB-seconds per month.
        #[arg(long)]
        quota_gb_seconds: Option<f64>,
        /// Its share of the node's memory budget (`2GiB`, `512MiB`): what its functions' memory
        /// may add up to.
        #[arg(long, value_parser = up::parse_budget)]
        memory: Option<u64>,
        /// Uploaded code it may keep (`1GiB`, `200MiB`).
        #[arg(long, value_parser = up::parse_budget)]
        storage: Option<u64>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List tenants.
    Ls {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a tenant and everything it owns (apps, event resources, keys, secrets, records).
    Rm {
        /// Tenant name.
        name: String,
    },
}

#[derive(Subcommand)]
enum SecretCommand {
    /// Set a secret from standard input (one trailing newline dropped), or from a file:
    /// `printf %s "$PW" | nimbus secret set db`. Functions that use it restart with it.
    Set {
        /// Secret name (letters, digits, `-`, `_`, `.`).
        name: String,
        /// Read the value from this file instead of standard input.
        #[arg(long)]
        from_file: Option<PathBuf>,
    },
    /// List secrets: names, when set, and the functions using each (never values).
    Ls {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a secret (refused while a function's env names it).
    Rm {
        /// Secret name.
        name: String,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Run the platform on this machine (embedded state in DATA_DIR).
    Up(Box<up::UpArgs>),
    /// Print shell exports that point AWS SDKs and the AWS CLI at this node:
    /// `eval "$(nimbus env)"`.
    Env,
    /// Deploy the app in DIR (reads DIR/nimbus.toml).
    Deploy {
        /// App directory.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List deployed functions.
    Ls {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one function.
    Show {
        /// Function name.
        function: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a function, or a whole app with --app.
    Rm {
        /// Function name.
        #[arg(required_unless_present = "app", conflicts_with = "app")]
        function: Option<String>,
        /// Remove this app and all its functions.
        #[arg(long)]
        app: Option<String>,
    },
    /// Invoke an event function synchronously and print its result.
    Invoke {
        /// Function name.
        function: String,
        /// Event data (JSON text).
        #[arg(long, default_value = "{}")]
        data: String,
        /// CloudEvents `type` of the event.
        #[arg(long = "type")]
        event_type: Option<String>,
        /// Queue the event and return at once with its invocation id (see `nimbus invocation`).
        #[arg(long = "async")]
        asynchronous: bool,
        /// With --async: the same key within 5 minutes is accepted once.
        #[arg(long, requires = "asynchronous")]
        idempotency_key: Option<String>,
        /// A published version (`3`) or an alias (`live`); default `$LATEST`.
        #[arg(long)]
        qualifier: Option<String>,
    },
    /// Publish a function's deployed code and configuration as its next immutable version.
    Publish {
        /// Function name.
        function: String,
        /// Description of the version.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List a function's published versions.
    Versions {
        /// Function name.
        function: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Aliases: names for published versions, with optional traffic shifting.
    #[command(subcommand)]
    Alias(AliasCommand),
    /// API keys: roles, scopes, expiry, revocation.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Tenants (operator key): teams or customers sharing the node, each with its own apps,
    /// events, keys, secrets, records and limits.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// The audit log: control-plane changes and refused calls, with the key of each.
    Audit {
        /// How many entries (newest; default 50).
        #[arg(long, short = 'n', default_value_t = 50)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Secrets: values functions reference in `env` (`DB = { secret = "db" }`), encrypted at
    /// rest and never shown again.
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Print a function's captured stdout/stderr, newest last, with timestamps.
    Logs {
        /// Function name.
        function: String,
        /// Keep printing new output. Alone, it starts from now.
        #[arg(long, short)]
        follow: bool,
        /// How many invocations' output to show (default 20; with -f alone, 0).
        #[arg(long, short = 'n')]
        tail: Option<usize>,
        /// Only invocations started within this long ago (`10m`, `2h`, `1d`).
        #[arg(long, value_parser = humantime::parse_duration)]
        since: Option<std::time::Duration>,
    },
    /// List a function's recent invocation records.
    Invocations {
        /// Function name.
        function: String,
        /// How many, newest first.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one invocation: an async invocation's status, attempts and result, or a record.
    Invocation {
        /// Invocation id.
        id: String,
    },
    /// Usage (requests, billed time, GB-s, cold starts) and its cost under the price sheet.
    Usage {
        /// Only this function.
        #[arg(long)]
        function: Option<String>,
        /// From (unix ms, 2026-11-01 or RFC 3339; default: the start of this month).
        #[arg(long)]
        from: Option<String>,
        /// To, exclusive (default: now).
        #[arg(long)]
        to: Option<String>,
        /// Buckets: hour, day or total.
        #[arg(long, default_value = "day")]
        by: String,
        /// A tenant's usage (an operator call; default: the caller's own tenant).
        #[arg(long)]
        tenant: Option<String>,
        /// Print JSON.
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        /// Print CSV.
        #[arg(long)]
        csv: bool,
    },
    /// List a durable function's executions, newest first.
    Executions {
        /// `ls`.
        #[arg(value_parser = ["ls"])]
        verb: String,
        /// Function name.
        function: String,
        /// Only these: running, succeeded, failed, timed_out, stopped.
        #[arg(long)]
        status: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Durable executions: start, show, history, stop.
    #[command(subcommand)]
    Execution(durable_cli::ExecutionCommand),
    /// Answer a durable execution's callback: succeed, fail, heartbeat.
    #[command(subcommand)]
    Callback(durable_cli::CallbackCommand),
    /// Queues: create, send, receive, redrive.
    #[command(subcommand)]
    Queue(events_cli::QueueCommand),
    /// Topics: create, subscribe, publish.
    #[command(subcommand)]
    Topic(events_cli::TopicCommand),
    /// Schedules: list, enable, disable.
    #[command(subcommand)]
    Schedule(events_cli::ScheduleCommand),
    /// Dead-letter queues.
    #[command(subcommand)]
    Dlq(events_cli::DlqCommand),
    /// Workflows (Step Functions state machines): ls, executions, start, describe, history,
    /// stop.
    #[command(subcommand)]
    Workflows(workflows_cli::WorkflowsCommand),
}

/// The sandbox child (`init __sandbox`, its spec the first line of stdin) and the isolation
/// probe (`nimbus __sandbox-probe UID GID`): internal, single-threaded, run before any async
/// runtime exists.
fn sandbox_stage(argv: &[String]) -> Option<i32> {
    use nimbus_process::{child, spec::SandboxSpec};
    let stage = argv.get(1)?.as_str();
    if !stage.starts_with("__sandbox") {
        return None;
    }
    let arg = |i: usize| argv.get(i).map(String::as_str).unwrap_or_default();
    Some(match stage {
        "__sandbox" => {
            let mut line = String::new();
            let read = std::io::stdin().read_line(&mut line);
            match read
                .map_err(|e| e.to_string())
                .and_then(|_| serde_json::from_str::<SandboxSpec>(&line).map_err(|e| e.to_string()))
            {
                Ok(spec) => child::stage1(&spec),
                Err(e) => {
                    eprintln!("nimbus sandbox: bad spec: {e}");
                    child::SETUP_FAILED
                }
            }
        }
        "__sandbox-probe" => child::probe(
            arg(2).parse().unwrap_or(65534),
            arg(3).parse().unwrap_or(65534),
        ),
        _ => child::SETUP_FAILED,
    })
}

fn main() -> std::process::ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    if let Some(code) = sandbox_stage(&argv) {
        std::process::exit(code);
    }
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let data_dir = args.data_dir.clone().unwrap_or_else(up::default_data_dir);
    let result = runtime.block_on(async move {
        match args.command {
            Command::Up(up) => up::run(*up, data_dir).await,
            other => cli::run(&args.url, args.api_key, &data_dir, other).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
