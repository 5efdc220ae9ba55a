//! Commands from `sluicectl` to one engine, answered through Redis.
//!
//! `sluicectl` appends `{id, cmd, arg, sent_ms}` to the stream `P:cmd:ENGINE` (MAXLEN ~ 1,000); the
//! engine reads it from the moment it started (a command sent while it was down is stale and never
//! runs), carries the command out, and answers with `SET P:ack:ID <json> EX 3600`:
//! `{"cmd","engine","ok":true,"result":{…}}` or `{"cmd","engine","error":"…","ok":false}`.
//!
//! - `drain`: refuse new connections, and send `client.reconnect` to the connected miners in waves
//!   (a tenth of each core's connections per second, at least one), so a fleet behind a balancer
//!   moves them elsewhere without a thundering herd. Result `{"draining":true,"connections":N}`.
//! - `undrain`: serve new connections again. Result `{"draining":false}`.
//! - `kick SESSION`: close the connections of that session. Result `{"kicked":N}`.
//! - `reload`: re-read the configuration file (with the command line's flags over it) and apply
//!   what can change live: connection limits and the listeners' session settings (difficulty
//!   bounds, vardiff, version mask), for new connections at once and live ones on the next tick.
//!   Result `{"reloaded":true,"restart_needed":[keys]}`; an invalid file is refused with its error.
//!
//! The cores see commands through [`Control`], checked on their one-second tick and at accept.
//! The stream entry's fields, the command names and the acknowledgement are
//! `sluice_layout::command`'s, shared with sluicectl.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::config::ConfigError;
use crate::metrics::Metrics;
use crate::plane::{spawn_loop, Backoff, Keys, PlaneSettings, StepError, Steps};

use sluice_layout::command::field as fields;
pub use sluice_layout::command::{Ack, Command, ACK_TTL_SECS, COMMAND_STREAM_MAXLEN};

/// Kicks waiting for the cores' next tick, at most.
const MAX_PENDING_KICKS: usize = 1_024;

/// How long a kick waits for every core's tick (ticks are one second apart).
const KICK_WAIT: Duration = Duration::from_millis(1_300);

/// A kick waiting for the cores.
#[derive(Debug)]
pub struct Kick {
    pub session_id: String,
    pub kicked: Arc<AtomicU64>,
}

/// Re-reads the configuration and applies what can change live; the result for the ack.
pub type Reloader = Box<dyn Fn() -> Result<serde_json::Value, ReloadError> + Send + Sync>;

/// Why a `reload` changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The configuration file cannot be read or parsed.
    #[error("{path}: {source}")]
    File {
        path: String,
        #[source]
        source: ConfigError,
    },
    /// The file with the flags over it does not check (the error names the key).
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    #[error("the engine is stopping")]
    Stopping,
}

/// Why a command was refused; its text is the acknowledgement's `error`.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("{0:?} is not a session id (hex, as mining.subscribe gives it)")]
    NotASessionId(String),
    /// [`MAX_PENDING_KICKS`] wait for the cores' next tick already.
    #[error("too many kicks pending")]
    TooManyKicks,
    #[error("this engine was not started from a configuration it can re-read")]
    NotReloadable,
    #[error(transparent)]
    Reload(#[from] ReloadError),
    /// A thread panicked holding this engine's `what`: the command cannot run until a restart.
    #[error("{0} poisoned")]
    Poisoned(&'static str),
    #[error("unknown command {0:?}: this engine knows drain, undrain, kick and reload")]
    Unknown(String),
}

/// What the cores read on their tick: drain state and pending kicks.

#[derive(Default)]
pub struct Control {
    pub draining: AtomicBool,
    kicks: Mutex<Vec<Arc<Kick>>>,
    /// Bumped on every change, so a core scans only when something is new.
    pub generation: AtomicU64,
    /// Bumped by every configuration reload: cores re-apply settings to live connections.
    pub reloads: AtomicU64,
    /// Set by the stratum role, which knows the configuration file and flags.
    reloader: Mutex<Option<Reloader>>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control")
            .field("draining", &self.draining)
            .field("reloads", &self.reloads)
            .finish_non_exhaustive()
    }
}

impl Control {
    pub fn set_reloader(&self, reloader: Reloader) {
        if let Ok(mut r) = self.reloader.lock() {
            *r = Some(reloader);
        }
    }

    /// The kicks pending now (cheap when there are none).
    pub fn kicks(&self) -> Vec<Arc<Kick>> {
        self.kicks.lock().map(|k| k.clone()).unwrap_or_default()
    }

    fn add_kick(&self, kick: Arc<Kick>) -> Result<(), CommandError> {
        let mut kicks = self
            .kicks
            .lock()
            .map_err(|_| CommandError::Poisoned("kick list"))?;
        if kicks.len() >= MAX_PENDING_KICKS {
            return Err(CommandError::TooManyKicks);
        }
        kicks.push(kick);
        Ok(())
    }

    fn remove_kick(&self, kick: &Arc<Kick>) {
        if let Ok(mut kicks) = self.kicks.lock() {
            kicks.retain(|k| !Arc::ptr_eq(k, kick));
        }
    }
}

type StreamReply = Option<Vec<(String, Vec<(String, Vec<(String, String)>)>)>>;

fn run(
    cmd: &str,
    arg: &str,
    control: &Control,
    metrics: &Metrics,
) -> Result<serde_json::Value, CommandError> {
    match Command::parse(cmd) {
        Some(Command::Drain) => {
            control.draining.store(true, Ordering::Release);
            control.generation.fetch_add(1, Ordering::Release);
            tracing::warn!("draining: refusing new connections, moving miners away in waves");
            Ok(serde_json::json!({"draining": true, "connections": metrics.connections()}))
        }
        Some(Command::Undrain) => {
            control.draining.store(false, Ordering::Release);
            control.generation.fetch_add(1, Ordering::Release);
            tracing::info!("undrained: serving new connections");
            Ok(serde_json::json!({"draining": false}))
        }
        Some(Command::Kick) => {
            if arg.is_empty() || arg.len() > 16 || !arg.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(CommandError::NotASessionId(arg.to_owned()));
            }
            let kick = Arc::new(Kick {
                session_id: arg.to_ascii_lowercase(),
                kicked: Arc::new(AtomicU64::new(0)),
            });
            control.add_kick(Arc::clone(&kick))?;
            control.generation.fetch_add(1, Ordering::Release);
            std::thread::sleep(KICK_WAIT);
            control.remove_kick(&kick);
            Ok(serde_json::json!({"kicked": kick.kicked.load(Ordering::Acquire)}))
        }
        Some(Command::Reload) => {
            let reloader = control
                .reloader
                .lock()
                .map_err(|_| CommandError::Poisoned("reloader"))?;
            match reloader.as_ref() {
                Some(reload) => Ok(reload()?),
                None => Err(CommandError::NotReloadable),
            }
        }
        None => Err(CommandError::Unknown(cmd.to_owned())),
    }
}

/// Reads this engine's command stream on a thread of its own until `stop`.
pub fn spawn(
    settings: PlaneSettings,
    control: Arc<Control>,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    let keys = Keys::new(&settings.prefix);
    let stream = keys.commands(&settings.id);
    // Only commands sent from now on: the newest entry's id, or 0-0 for an empty stream.
    let mut last: Option<String> = None;
    let url = settings.url.clone();
    let step = move |c: &mut redis::Connection, _: &AtomicBool| -> Result<Duration, StepError> {
        if last.is_none() {
            let newest: Vec<(String, Vec<(String, String)>)> = redis::cmd("XREVRANGE")
                .arg(&stream)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1)
                .query(c)?;
            last = Some(
                newest
                    .first()
                    .map_or("0-0".to_owned(), |(id, _)| id.clone()),
            );
        }
        let from = last.clone().expect("set above");
        // Blocks up to 200 ms: the wait between steps.
        let reply: StreamReply = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(16)
            .arg("BLOCK")
            .arg(200)
            .arg("STREAMS")
            .arg(&stream)
            .arg(&from)
            .query(c)?;
        for (_, entries) in reply.unwrap_or_default() {
            for (entry, fields) in entries {
                last = Some(entry);
                let field = |name: &str| {
                    fields
                        .iter()
                        .find(|(k, _)| k == name)
                        .map_or("", |(_, v)| v.as_str())
                };
                let (id, cmd, arg) = (field(fields::ID), field(fields::CMD), field(fields::ARG));
                if id.is_empty() {
                    tracing::warn!("a command without an id: ignored");
                    continue;
                }
                tracing::info!(%id, %cmd, %arg, "command from sluicectl");
                let outcome = run(cmd, arg, &control, &metrics).map_err(|e| e.to_string());
                let ack = Ack::new(&settings.id, cmd, outcome);
                let stored: redis::RedisResult<()> = redis::cmd("SET")
                    .arg(keys.ack(id))
                    .arg(ack.to_json())
                    .arg("EX")
                    .arg(ACK_TTL_SECS)
                    .query(c);
                if let Err(e) = stored {
                    tracing::warn!(error = %e, %id, "cannot acknowledge a command");
                }
            }
        }
        Ok(Duration::ZERO)
    };
    spawn_loop(
        "sluice-commands",
        url,
        Backoff::fixed(Duration::from_millis(500)),
        stop,
        Steps(step),
    )
}
