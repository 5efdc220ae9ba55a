//! sluicectl, the operators' CLI for a Sluice fleet: what runs, who leads, which blocks were found,
//! the shares as they come, per-worker rates and the miners' sessions, all read from the fleet's
//! Redis (the layout written once in the `sluice-layout` crate, shared with the engine). Some commands act: `engine drain|undrain` and
//! `session kick` send a command to one engine through its stream `P:cmd:ENGINE` and wait for the
//! engine's acknowledgement; `policy set|rm` write the per-connection policies `P:policies`;
//! `jobmanager pause|resume|promote` steer the lease through `P:jm:control` and wait for the lease
//! to follow. Nothing else changes the fleet.
//!
//! Exit codes: 0 ok; 1 usage, not found, no fleet under the prefix, or refused by the engine;
//! 2 Redis unreachable; 3 the fleet speaks another layout version; 4 the engine did not
//! acknowledge, or the lease did not follow, within `--timeout`.

mod cmd;
mod connect;
mod error;
mod format;
mod output;
mod stream;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand};

use cmd::control::Timeout;
use cmd::services::Role;
use cmd::shares::{Filter, Verdict};
use cmd::Ctx;
use connect::Redis;
use error::{CtlError, Result};
use sluice_layout::Keys;

#[derive(Parser)]
#[command(
    name = "sluicectl",
    version,
    about = "Look into a Sluice fleet through its Redis control plane",
    after_help = "Exit codes: 0 ok, 1 usage, not found or refused, 2 Redis unreachable, 3 layout version mismatch, 4 no acknowledgement from the engine (or the lease did not follow) within --timeout."
)]
struct Cli {
    /// The fleet's Redis, e.g. redis://127.0.0.1:6379
    // The URL may carry a password: help must not print it.
    #[arg(
        long,
        env = "SLUICE_REDIS",
        hide_env_values = true,
        value_name = "URL",
        global = true
    )]
    redis: Option<String>,
    /// For rediss://: the PEM of the CA that signs Redis' certificate (unset: public roots)
    #[arg(long, env = "SLUICE_REDIS_CA_FILE", value_name = "PEM", global = true)]
    redis_ca_file: Option<PathBuf>,
    /// For rediss:// to a Redis that asks for one: the client certificate (PEM)
    #[arg(
        long,
        env = "SLUICE_REDIS_CERT_FILE",
        value_name = "PEM",
        global = true
    )]
    redis_cert_file: Option<PathBuf>,
    /// The private key (PEM) of --redis-cert-file
    #[arg(long, env = "SLUICE_REDIS_KEY_FILE", value_name = "PEM", global = true)]
    redis_key_file: Option<PathBuf>,
    /// A sentinel to ask for the master (repeatable, asked in order; with --master-name).
    /// --redis then gives only the scheme, user, password and database
    #[arg(
        long = "sentinel",
        env = "SLUICE_REDIS_SENTINELS",
        value_delimiter = ',',
        value_name = "HOST:PORT",
        global = true
    )]
    sentinels: Vec<String>,
    /// The master's name the sentinels monitor (redis.master_name in the fleet's configuration)
    #[arg(
        long,
        env = "SLUICE_REDIS_MASTER_NAME",
        value_name = "NAME",
        global = true
    )]
    master_name: Option<String>,
    /// The ACL user the sentinels ask for, if any
    #[arg(
        long,
        env = "SLUICE_REDIS_SENTINEL_USER",
        value_name = "USER",
        global = true
    )]
    sentinel_user: Option<String>,
    /// The sentinels' password, if any
    #[arg(
        long,
        env = "SLUICE_REDIS_SENTINEL_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD",
        global = true
    )]
    sentinel_password: Option<String>,
    /// Key prefix of the fleet (redis.prefix in its configuration)
    #[arg(
        long,
        env = "SLUICE_PREFIX",
        default_value = "sluice",
        value_name = "P",
        global = true
    )]
    prefix: String,
    /// Print one JSON document on stdout instead of tables (one object per line with --follow)
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Every live process of the fleet
    Services {
        #[command(subcommand)]
        command: ServicesCommand,
    },
    /// The jobmanagers and which one holds the lease; pause, resume or promote one
    Jobmanager {
        #[command(subcommand)]
        command: JobmanagerCommand,
    },
    /// Per-connection policies: difficulty, vardiff target and version mask by port, user, worker
    /// or agent
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// The stratum engines; drain or undrain one
    Engine {
        #[command(subcommand)]
        command: EngineCommand,
    },
    /// The miners' saved sessions; kick one
    Session {
        #[command(subcommand)]
        command: SessionCommand,
    },
    /// Blocks the fleet found and what each node answered
    Blocks {
        #[command(subcommand)]
        command: BlocksCommand,
    },
    /// Share verdicts from the share log
    Shares {
        #[command(subcommand)]
        command: SharesCommand,
    },
    /// Per-worker shares and hash rate over the last minutes
    Stats {
        /// The window, in minutes (including the one under way)
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=cmd::stats::MAX_MINUTES))]
        minutes: u64,
    },
    /// Print a shell completion script (needs no Redis)
    Completions {
        #[arg(value_enum)]
        shell: Shell,
    },
}

#[derive(Subcommand)]
enum ServicesCommand {
    /// List the live services
    Ls {
        /// Only services of this role
        #[arg(long, value_enum)]
        role: Option<Role>,
    },
}

#[derive(Subcommand)]
enum JobmanagerCommand {
    /// List them
    Ls,
    /// Keep this jobmanager from leading (a leader hands the lease over)
    Pause {
        /// The jobmanager's id (see jobmanager ls)
        id: String,
        #[command(flatten)]
        wait: LeaseWait,
    },
    /// Let a paused jobmanager lead again (it does not take the lease back)
    Resume {
        /// The jobmanager's id (see jobmanager ls)
        id: String,
    },
    /// Make this jobmanager the leader (the others hand the lease over and stand by)
    Promote {
        /// The jobmanager's id (see jobmanager ls)
        id: String,
        #[command(flatten)]
        wait: LeaseWait,
    },
}

/// How long pause and promote wait for the lease to follow.
#[derive(Args)]
struct LeaseWait {
    /// Seconds to wait for the lease to follow (exit 4 if it does not)
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = cmd::control::parse_timeout)]
    timeout: f64,
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// List the policies
    Ls,
    /// Add or replace a policy (at least one override)
    Set {
        /// The policy's name (ties between equally specific policies go to the first name)
        name: String,
        #[command(flatten)]
        policy: cmd::policy::PolicyFlags,
    },
    /// Remove a policy
    Rm {
        /// The policy's name
        name: String,
    },
}

/// How long a command waits for the engine's acknowledgement.
#[derive(Args)]
struct Wait {
    /// Seconds to wait for the engine's acknowledgement (exit 4 without one)
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = cmd::control::parse_timeout)]
    timeout: f64,
}

impl Wait {
    fn timeout(&self) -> Timeout {
        Timeout { secs: self.timeout }
    }
}

#[derive(Subcommand)]
enum EngineCommand {
    /// List them
    Ls,
    /// Refuse new connections and move the engine's miners away (client.reconnect, in waves)
    Drain {
        /// The engine's id (see engine ls)
        id: String,
        #[command(flatten)]
        wait: Wait,
    },
    /// Serve new connections again
    Undrain {
        /// The engine's id (see engine ls)
        id: String,
        #[command(flatten)]
        wait: Wait,
    },
    /// Re-read the configuration file and apply what can change live (limits, listeners'
    /// difficulty, vardiff and version mask); says what needs a restart
    Reload {
        /// The engine's id (see engine ls)
        id: String,
        #[command(flatten)]
        wait: Wait,
    },
}

#[derive(Subcommand)]
enum SessionCommand {
    /// List the live sessions
    Ls {
        /// Only sessions last saved by this engine
        #[arg(long, value_name = "ID")]
        engine: Option<String>,
        /// Only sessions this worker authorized on (the full name)
        #[arg(long, value_name = "W")]
        worker: Option<String>,
    },
    /// Show one session
    Show {
        /// The session id (the subscription id mining.subscribe answered, in hex)
        id: String,
    },
    /// Close the session's connections on the engine that holds it
    Kick {
        /// The session id (the subscription id mining.subscribe answered, in hex)
        id: String,
        #[command(flatten)]
        wait: Wait,
    },
}

#[derive(Subcommand)]
enum BlocksCommand {
    /// List the newest blocks first
    Ls {
        /// How many blocks
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=10_000u64))]
        limit: u64,
    },
}

#[derive(Subcommand)]
enum SharesCommand {
    /// The newest shares, oldest first; or, with --follow, each new share as it is written
    Tail {
        /// Only this worker's shares (the full name, as the miner authorized)
        #[arg(long)]
        worker: Option<String>,
        /// Only accepted or only rejected shares
        #[arg(long, value_enum)]
        verdict: Option<Verdict>,
        /// Keep printing new shares until interrupted
        #[arg(long, short, conflicts_with = "count")]
        follow: bool,
        /// How many shares
        #[arg(long, short = 'n', default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=cmd::shares::SCAN_LIMIT as u64))]
        count: u64,
    },
}

/// The shells clap_complete writes scripts for that operators use.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Shell {
    Bash,
    Zsh,
    Fish,
}

fn completions(shell: Shell) -> Result<()> {
    let shell = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "sluicectl", &mut script);
    output::print_raw(&String::from_utf8_lossy(&script))
}

/// Connects and checks the layout: every command but `completions` starts here.
fn context(cli: &Cli) -> Result<Ctx> {
    let url = cli.redis.as_deref().filter(|u| !u.is_empty());
    let tls = connect::TlsFiles {
        ca: cli.redis_ca_file.clone(),
        cert: cli.redis_cert_file.clone(),
        key: cli.redis_key_file.clone(),
    };
    let sentinels: Vec<String> = cli
        .sentinels
        .iter()
        .filter(|s| !s.trim().is_empty())
        .cloned()
        .collect();
    let mut redis = match (sentinels.is_empty(), &cli.master_name) {
        (true, None) => Redis::open(
            url.ok_or_else(|| {
                CtlError::Usage(
                    "no Redis given: pass --redis redis://HOST:PORT or set SLUICE_REDIS".to_owned(),
                )
            })?,
            &tls,
        )?,
        (false, Some(name)) => Redis::open_master(
            url,
            &connect::Sentinels {
                addrs: sentinels,
                master_name: name.clone(),
                username: cli.sentinel_user.clone(),
                password: cli.sentinel_password.clone(),
            },
            &tls,
        )?,
        (false, None) => {
            return Err(CtlError::Usage(
                "--sentinel needs --master-name NAME (or SLUICE_REDIS_MASTER_NAME): the name in sentinel.conf's `sentinel monitor NAME ...`".into(),
            ))
        }
        (true, Some(_)) => {
            return Err(CtlError::Usage(
                "--master-name needs --sentinel HOST:PORT (or SLUICE_REDIS_SENTINELS)".into(),
            ))
        }
    };
    let keys = Keys::new(&cli.prefix);
    connect::check_layout(&mut redis, &keys)?;
    Ok(Ctx {
        redis,
        keys,
        json: cli.json,
    })
}

fn run(cli: Cli) -> Result<()> {
    if let Command::Completions { shell } = cli.command {
        return completions(shell);
    }
    let mut ctx = context(&cli)?;
    match cli.command {
        Command::Services {
            command: ServicesCommand::Ls { role },
        } => cmd::services::ls(&mut ctx, role, "services"),
        Command::Engine { command } => match command {
            EngineCommand::Ls => cmd::services::ls(&mut ctx, Some(Role::Stratum), "engines"),
            EngineCommand::Drain { id, wait } => cmd::control::drain(&mut ctx, &id, wait.timeout()),
            EngineCommand::Undrain { id, wait } => {
                cmd::control::undrain(&mut ctx, &id, wait.timeout())
            }
            EngineCommand::Reload { id, wait } => {
                cmd::control::reload(&mut ctx, &id, wait.timeout())
            }
        },
        Command::Session { command } => match command {
            SessionCommand::Ls { engine, worker } => {
                cmd::session::ls(&mut ctx, engine.as_deref(), worker.as_deref())
            }
            SessionCommand::Show { id } => cmd::session::show(&mut ctx, &id),
            SessionCommand::Kick { id, wait } => cmd::session::kick(&mut ctx, &id, wait.timeout()),
        },
        Command::Jobmanager { command } => {
            use cmd::jobmanager::{steer, Action};
            let lease = |secs: f64| Timeout { secs };
            match command {
                JobmanagerCommand::Ls => cmd::jobmanager::ls(&mut ctx),
                JobmanagerCommand::Pause { id, wait } => {
                    steer(&mut ctx, &id, Action::Pause, lease(wait.timeout))
                }
                JobmanagerCommand::Resume { id } => {
                    steer(&mut ctx, &id, Action::Resume, lease(0.0))
                }
                JobmanagerCommand::Promote { id, wait } => {
                    steer(&mut ctx, &id, Action::Promote, lease(wait.timeout))
                }
            }
        }
        Command::Policy { command } => match command {
            PolicyCommand::Ls => cmd::policy::ls(&mut ctx),
            PolicyCommand::Set { name, policy } => cmd::policy::set(&mut ctx, &name, &policy),
            PolicyCommand::Rm { name } => cmd::policy::rm(&mut ctx, &name),
        },
        Command::Blocks {
            command: BlocksCommand::Ls { limit },
        } => cmd::blocks::ls(&mut ctx, limit as usize),
        Command::Shares {
            command:
                SharesCommand::Tail {
                    worker,
                    verdict,
                    follow,
                    count,
                },
        } => {
            let filter = Filter { worker, verdict };
            if follow {
                cmd::shares::follow(&mut ctx, &filter)
            } else {
                cmd::shares::tail(&mut ctx, &filter, count as usize)
            }
        }
        Command::Stats { minutes } => cmd::stats::show(&mut ctx, minutes),
        Command::Completions { .. } => unreachable!("handled before connecting"),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // clap exits 2 on a usage error; here 2 means "Redis unreachable", so usage is 1.
            return if e.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // Output cut short by a closed pipe (`| head`) is what the reader asked for.
        Err(CtlError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            // Errors quote what Redis held (acknowledgements, names): escaped like stdout.
            eprintln!("sluicectl: {}", output::sanitize(&e.to_string()));
            ExitCode::from(e.exit_code())
        }
    }
}
