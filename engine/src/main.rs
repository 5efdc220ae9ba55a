//! The `sluice` binary: `sluice run` (engine and embedded simulated chain in one process),
//! `sluice config check`, and the roles that arrive with the Redis plane.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use sluice::admin::Pages;
use sluice::config::{FileConfig, ListenerSection, NodeSection};
use sluice::plane::commands::ReloadError;
use sluice::source::SourceStatus;

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "A thread-per-core Bitcoin Stratum V1 mining-pool engine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pool in one process: the engine and, as its job source, the embedded simulated chain.
    Run(Box<RunArgs>),
    /// Check or print configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// The share-validating engine of a fleet: jobs from Redis, found blocks to Redis.
    Stratum(Box<StratumArgs>),
    /// The fleet's job source (nodes, or the simulated chain): publishes jobs through Redis while
    /// it holds the lease, submits the fleet's found blocks.
    Jobmanager(Box<JobmanagerArgs>),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Check a configuration file; exits 1 naming the bad key.
    Check { file: PathBuf },
    /// Print the documented example configuration.
    Example,
}

// Each role's flags are the groups it reads, so its `--help` lists nothing it would ignore.

/// `sluice run`: an engine and its job source.
#[derive(clap::Args)]
#[command(args_override_self = true)]
struct RunArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    engine: EngineArgs,
    #[command(flatten)]
    source: SourceArgs,
}

/// `sluice stratum`: an engine on the plane.
#[derive(clap::Args)]
#[command(args_override_self = true)]
struct StratumArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    engine: EngineArgs,
    #[command(flatten)]
    plane: PlaneArgs,
}

/// `sluice jobmanager`: a job source on the plane.
#[derive(clap::Args)]
#[command(args_override_self = true)]
struct JobmanagerArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    source: SourceArgs,
    #[command(flatten)]
    plane: PlaneArgs,
}

/// Flags every role reads.
#[derive(clap::Args, Clone)]
struct CommonArgs {
    /// Configuration file (TOML); flags override it.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Where block rewards go.
    #[arg(long)]
    payout_address: Option<String>,
    /// A bitcoind-compatible node to mine on instead of the simulated chain:
    /// `http://user:password@host:port`; repeat for several, best first (replaces the file's nodes).
    #[arg(long = "node", value_name = "URL")]
    nodes: Vec<String>,
    /// The ZMQ `hashblock` publisher of the --node at the same position (`tcp://host:port`);
    /// without it that node is polled with getbestblockhash.
    #[arg(long = "zmq", value_name = "ENDPOINT")]
    zmq: Vec<String>,
    /// Admin HTTP listener for /metrics and /status (or admin.listen in the file).
    #[arg(long)]
    admin: Option<String>,
}

/// Flags of the roles that serve miners (`run`, `stratum`).
#[derive(clap::Args, Clone)]
struct EngineArgs {
    /// Miner-facing listener address; repeat for several (replaces the file's listeners).
    #[arg(long)]
    listen: Vec<String>,
    /// Expect a PROXY protocol header on the --listen listeners.
    #[arg(long)]
    proxy_protocol: bool,
    /// Engine threads (0 = one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Do not pin engine threads to cores.
    #[arg(long)]
    no_pin: bool,
    /// Starting share difficulty on the --listen listeners.
    #[arg(long)]
    start_difficulty: Option<f64>,
    /// Lowest share difficulty on the --listen listeners.
    #[arg(long)]
    min_difficulty: Option<f64>,
    /// Turn vardiff off.
    #[arg(long)]
    no_vardiff: bool,
}

/// Flags of the roles that make jobs (`run`, `jobmanager`).
#[derive(clap::Args, Clone)]
struct SourceArgs {
    /// Simulated chain: the network difficulty (a share this hard is a block).
    #[arg(long)]
    network_difficulty: Option<f64>,
    /// Simulated chain: seconds between blocks found by the rest of the network (0 = never).
    #[arg(long)]
    block_interval: Option<u64>,
    /// Seconds between refreshed jobs on the same block.
    #[arg(long)]
    refresh_interval: Option<f64>,
}

/// Flags of the fleet roles (`stratum`, `jobmanager`).
#[derive(clap::Args)]
struct PlaneArgs {
    /// The Redis control plane, e.g. redis://127.0.0.1:6379 (or redis.url in the file).
    // The URL may hold a password: `--help` must not print the environment's value.
    #[arg(long, env = "SLUICE_REDIS", hide_env_values = true)]
    redis: Option<String>,
    /// Key prefix in Redis (or redis.prefix); keys are `{PREFIX}:name`, so no braces or whitespace.
    #[arg(long)]
    prefix: Option<String>,
    /// This process's id in the fleet (or redis.id; default ROLE-HOST-PID).
    #[arg(long)]
    id: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Config(ConfigCommand::Check { file }) => {
            match FileConfig::load(&file).and_then(|c| c.settings()) {
                Ok(s) => {
                    let source = if s.nodes.is_empty() {
                        "the simulated chain".to_owned()
                    } else {
                        format!("{} node(s), not contacted by this check", s.nodes.len())
                    };
                    println!(
                        "{}: ok ({} listener(s), network {}, {} engine thread(s), jobs from {source})",
                        file.display(),
                        s.listeners.len(),
                        s.network,
                        s.threads
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{}: {e}", file.display());
                    ExitCode::FAILURE
                }
            }
        }
        Command::Config(ConfigCommand::Example) => {
            print!("{}", include_str!("../../sluice.example.toml"));
            ExitCode::SUCCESS
        }
        Command::Run(args) => run(*args),
        Command::Stratum(args) => {
            let StratumArgs {
                common,
                engine,
                plane,
            } = *args;
            role("stratum", common, Flags::Engine(engine), plane)
        }
        Command::Jobmanager(args) => {
            let JobmanagerArgs {
                common,
                source,
                plane,
            } = *args;
            role("jobmanager", common, Flags::Source(source), plane)
        }
    }
}

/// The role-specific flags a role has, beside the common ones.
#[derive(Clone)]
enum Flags {
    Engine(EngineArgs),
    Source(SourceArgs),
    Both(EngineArgs, SourceArgs),
}

impl Flags {
    fn engine(&self) -> Option<&EngineArgs> {
        match self {
            Flags::Engine(e) | Flags::Both(e, _) => Some(e),
            Flags::Source(_) => None,
        }
    }

    fn source(&self) -> Option<&SourceArgs> {
        match self {
            Flags::Source(s) | Flags::Both(_, s) => Some(s),
            Flags::Engine(_) => None,
        }
    }
}

fn apply_flags(config: &mut FileConfig, common: &CommonArgs, flags: &Flags) {
    if let Some(args) = flags.engine() {
        apply_engine_flags(config, args);
    }
    if let Some(a) = &common.admin {
        config.admin.listen = Some(a.clone());
    }
    if let Some(a) = &common.payout_address {
        config.pool.payout_address = Some(a.clone());
        config.pool.payouts.clear();
    }
    if let Some(args) = flags.source() {
        if let Some(d) = args.network_difficulty {
            config.simulated_chain.network_difficulty = d;
        }
        if let Some(b) = args.block_interval {
            config.simulated_chain.block_interval_secs = b;
        }
        if let Some(r) = args.refresh_interval {
            config.jobs.refresh_interval_secs = r;
        }
    }
    if !common.nodes.is_empty() {
        config.nodes = common
            .nodes
            .iter()
            .enumerate()
            .map(|(i, url)| NodeSection {
                url: url.clone(),
                zmq_hashblock: common.zmq.get(i).cloned(),
                priority: i as u32,
                ..NodeSection::default()
            })
            .collect();
    }
}

fn apply_engine_flags(config: &mut FileConfig, args: &EngineArgs) {
    if !args.listen.is_empty() {
        let template = config.listeners.first().cloned().unwrap_or_default();
        config.listeners = args
            .listen
            .iter()
            .map(|a| ListenerSection {
                address: a.clone(),
                proxy_protocol: args.proxy_protocol || template.proxy_protocol,
                ..template.clone()
            })
            .collect();
    }
    for l in &mut config.listeners {
        if let Some(d) = args.start_difficulty {
            l.start_difficulty = Some(d);
        }
        if let Some(d) = args.min_difficulty {
            l.min_difficulty = Some(d);
        }
    }
    if let Some(t) = args.threads {
        config.engine.threads = t;
    }
    if args.no_pin {
        config.engine.pin_threads = false;
    }
    if args.no_vardiff {
        config.vardiff.enabled = false;
    }
}

/// Blocks SIGINT and SIGTERM in this thread and every thread it starts, so `wait_for_signal` can
/// take them synchronously.
fn block_signals() -> libc::sigset_t {
    // SAFETY: plain libc signal-set manipulation on a local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn wait_for_signal(set: &libc::sigset_t) -> i32 {
    let mut signal = 0;
    // SAFETY: `set` is initialised and blocked; sigwait writes the signal number.
    unsafe {
        libc::sigwait(set, &mut signal);
    }
    signal
}

fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// The configuration file (or the defaults) with the flags applied; the error is printed.
fn load_config(args: &CommonArgs, flags: &Flags) -> Result<FileConfig, ExitCode> {
    let mut config = match &args.config {
        Some(path) => match FileConfig::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{}: {e}", path.display());
                return Err(ExitCode::FAILURE);
            }
        },
        None => FileConfig::default(),
    };
    if args.zmq.len() > args.nodes.len() {
        eprintln!("sluice: each --zmq belongs to the --node at the same position: give a --node for every --zmq");
        return Err(ExitCode::FAILURE);
    }
    apply_flags(&mut config, args, flags);
    Ok(config)
}

fn settings_of(config: &FileConfig) -> Result<sluice::config::Settings, ExitCode> {
    config.settings().map_err(|e| {
        eprintln!("sluice: configuration: {e}");
        ExitCode::FAILURE
    })
}

/// What an engine's admin listener shows.
fn engine_pages(engine: &sluice::server::Engine, source: &Arc<SourceStatus>) -> Pages {
    Pages::Engine {
        metrics: engine.metrics.clone(),
        feed: engine.feed.clone(),
        source: source.clone(),
        control: engine.control.clone(),
    }
}

/// `sluice stratum` and `sluice jobmanager`.
fn role(name: &str, common: CommonArgs, flags: Flags, args: PlaneArgs) -> ExitCode {
    init_logging();
    let mut config = match load_config(&common, &flags) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Some(url) = args.redis {
        config.redis.url = Some(url);
    }
    if let Some(p) = args.prefix {
        config.redis.prefix = p;
    }
    if let Some(id) = args.id {
        config.redis.id = Some(id);
    }
    let settings = match settings_of(&config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let plane = match config.plane(name) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("sluice: configuration: {e}");
            return ExitCode::FAILURE;
        }
    };
    let signals = block_signals();
    let admin = settings.admin;
    if name == "jobmanager" {
        let jm = match sluice::roles::Jobmanager::start(settings, plane) {
            Ok(j) => j,
            Err(e) => {
                eprintln!("sluice: {e}");
                return ExitCode::FAILURE;
            }
        };
        let admin_addr = match admin {
            None => None,
            Some(a) => match sluice::admin::start(
                a,
                Pages::Jobmanager {
                    metrics: jm.metrics.clone(),
                    leadership: jm.leadership.clone(),
                    sink: jm.sink.clone(),
                    source: jm.status.clone(),
                },
            ) {
                Ok(bound) => Some(bound),
                Err(e) => {
                    eprintln!("sluice: cannot bind the admin listener {a}: {e}");
                    jm.shutdown();
                    return ExitCode::FAILURE;
                }
            },
        };
        println!(
            "sluice ready jobmanager id={} admin={}",
            jm.id,
            admin_addr.map_or("off".to_owned(), |a| a.to_string())
        );
        let signal = wait_for_signal(&signals);
        tracing::info!(signal, "shutting down: giving up the lease");
        jm.shutdown();
    } else {
        let share_log = match config.share_log() {
            Ok(l) => l,
            Err(e) => {
                eprintln!("sluice: configuration: {e}");
                return ExitCode::FAILURE;
            }
        };
        let reload = move || -> Result<sluice::config::Settings, ReloadError> {
            let mut config = match &common.config {
                Some(path) => FileConfig::load(path).map_err(|source| ReloadError::File {
                    path: path.display().to_string(),
                    source,
                })?,
                None => FileConfig::default(),
            };
            apply_flags(&mut config, &common, &flags);
            Ok(config.settings()?)
        };
        let stratum = match sluice::roles::Stratum::start(settings, plane, share_log, reload) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("sluice: {e}");
                return ExitCode::FAILURE;
            }
        };
        let admin_addr = match admin {
            None => None,
            Some(a) => {
                match sluice::admin::start(a, engine_pages(&stratum.engine, &stratum.status)) {
                    Ok(bound) => Some(bound),
                    Err(e) => {
                        eprintln!("sluice: cannot bind the admin listener {a}: {e}");
                        stratum.shutdown();
                        return ExitCode::FAILURE;
                    }
                }
            }
        };
        let addrs: Vec<String> = stratum
            .engine
            .addresses
            .iter()
            .map(|a| a.to_string())
            .collect();
        println!(
            "sluice ready stratum={} admin={} id={}",
            addrs.join(","),
            admin_addr.map_or("off".to_owned(), |a| a.to_string()),
            stratum.id
        );
        let signal = wait_for_signal(&signals);
        tracing::info!(
            signal,
            "shutting down: sending client.reconnect to every miner"
        );
        stratum.shutdown();
    }
    ExitCode::SUCCESS
}

fn run(args: RunArgs) -> ExitCode {
    init_logging();
    let flags = Flags::Both(args.engine, args.source);
    let config = match load_config(&args.common, &flags) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let settings = match settings_of(&config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let signals = block_signals();
    let admin = settings.admin;
    let statsd = settings.statsd.clone();
    let threads = settings.threads;
    let run = match sluice::roles::Run::start(settings) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sluice: {e}");
            return ExitCode::FAILURE;
        }
    };
    let admin_addr: Option<SocketAddr> = match admin {
        None => None,
        Some(a) => match sluice::admin::start(a, engine_pages(&run.engine, &run.status)) {
            Ok(bound) => Some(bound),
            Err(e) => {
                eprintln!("sluice: cannot bind the admin listener {a}: {e}");
                run.shutdown();
                return ExitCode::FAILURE;
            }
        },
    };
    if let Some(statsd) = statsd {
        if let Err(e) = sluice::admin::start_statsd(
            statsd.address,
            statsd.prefix,
            Duration::from_millis(statsd.interval_ms),
            run.engine.metrics.clone(),
        ) {
            tracing::warn!(error = %e, "statsd is off: cannot open its socket");
        }
    }
    let stratum: Vec<String> = run.engine.addresses.iter().map(|a| a.to_string()).collect();
    tracing::info!(stratum = %stratum.join(","), threads, "sluice is running; point miners at stratum+tcp://<this host>:<port>");
    // A machine-readable line for scripts and tests.
    println!(
        "sluice ready stratum={} admin={}",
        stratum.join(","),
        admin_addr.map_or("off".to_owned(), |a| a.to_string())
    );
    let signal = wait_for_signal(&signals);
    tracing::info!(
        signal,
        "shutting down: sending client.reconnect to every miner"
    );
    run.shutdown();
    ExitCode::SUCCESS
}
