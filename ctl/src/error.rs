//! What can go wrong, and the exit code each failure maps to. Scripts branch on the code, so each
//! kind of failure keeps its own: 1 for usage, things not found and commands an engine refused, 2
//! when Redis cannot be reached, 3 when Redis holds a layout this build cannot read, 4 when an
//! engine did not acknowledge a command in time or the jobmanagers' lease did not follow a pause
//! or promote.

use std::fmt;

use crate::connect::redact;
use sluice_layout::LAYOUT_VERSION;

#[derive(Debug)]
pub enum CtlError {
    /// Bad arguments, a missing setting, or something asked for that does not exist.
    Usage(String),
    /// The prefix holds no fleet at all.
    NoFleet { prefix: String },
    /// Redis did not answer (refused, timed out, dropped).
    Unreachable { url: String, error: String },
    /// The fleet speaks another layout version.
    Layout { prefix: String, found: String },
    /// Redis answered, but not as the layout says it should (a wrong type, a script error).
    Redis(String),
    /// Writing to stdout failed (other than a closed pipe, which is not an error).
    Output(std::io::Error),
    /// The engine acknowledged a command with `ok: false`.
    Refused {
        engine: String,
        cmd: String,
        error: String,
    },
    /// An acknowledgement that is not the documented JSON document.
    BadAck { key: String, problem: String },
    /// No acknowledgement within the timeout: the engine is down, or on another Redis or prefix.
    NoAck {
        engine: String,
        cmd: String,
        /// The timeout as given, in seconds.
        secs: f64,
    },
    /// A jobmanager pause or promote that the lease did not show within the timeout.
    NotInEffect(String),
    /// Redis's ACL does not let the user in `--redis` do this (`NOPERM`, or a script refused
    /// one of its calls for it).
    Denied(String),
}

impl CtlError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CtlError::Usage(_) | CtlError::NoFleet { .. } | CtlError::Redis(_) => 1,
            CtlError::Output(_) | CtlError::Refused { .. } | CtlError::BadAck { .. } => 1,
            CtlError::Unreachable { .. } => 2,
            CtlError::Layout { .. } => 3,
            CtlError::NoAck { .. } | CtlError::NotInEffect(_) => 4,
            CtlError::Denied(_) => 5,
        }
    }

    /// Classifies a failed command: a lost connection is "unreachable" (exit 2) wherever it
    /// happens, so a script need not care whether Redis went away before or during the command.
    pub fn from_redis(url: &str, e: redis::RedisError) -> CtlError {
        if e.is_io_error()
            || e.is_connection_refusal()
            || e.is_timeout()
            || e.is_connection_dropped()
        {
            CtlError::Unreachable {
                url: url.to_owned(),
                error: e.to_string(),
            }
        } else if is_acl_refusal(&e) {
            CtlError::Denied(e.to_string())
        } else {
            CtlError::Redis(e.to_string())
        }
    }
}

impl fmt::Display for CtlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CtlError::Usage(m) => write!(f, "{m}"),
            CtlError::NoFleet { prefix } => write!(
                f,
                "no Sluice fleet under prefix {prefix:?} ({{{prefix}}}:layout is missing); check --prefix or SLUICE_PREFIX"
            ),
            CtlError::Unreachable { url, error } => write!(
                f,
                "cannot reach Redis at {}: {error}; set --redis or SLUICE_REDIS",
                redact(url)
            ),
            CtlError::Layout { prefix, found } => write!(
                f,
                "Redis under prefix {prefix:?} holds layout version {found}, this sluicectl reads version {LAYOUT_VERSION}: the fleet and sluicectl must be upgraded together"
            ),
            CtlError::Redis(m) => write!(f, "Redis answered with an error: {m}"),
            CtlError::Denied(m) => write!(
                f,
                "Redis's ACL does not let this user do that ({m}); the commands that write (session kick, engine drain|undrain|reload, policy set|rm, jobmanager pause|resume|promote) need a user like sluicectl-operator in deploy/redis/users.acl: put it in --redis redis://USER:PASSWORD@HOST:PORT"
            ),
            CtlError::Output(e) => write!(f, "cannot write the output: {e}"),
            CtlError::Refused { engine, cmd, error } => {
                write!(f, "engine {engine} refused {cmd}: {error}")
            }
            CtlError::BadAck { key, problem } => {
                write!(f, "the acknowledgement {key} is not what an engine writes: {problem}")
            }
            CtlError::NoAck { engine, cmd, secs } => write!(
                f,
                "engine {engine} did not acknowledge {cmd} within {secs}s (is it running and connected to this Redis?)"
            ),
            CtlError::NotInEffect(m) => write!(f, "{m}"),
        }
    }
}

pub type Result<T> = std::result::Result<T, CtlError>;

/// Whether Redis refused a command for the user's ACL: `NOPERM` for a command sent as it is, and
/// the script error Redis gives when a script's call is refused (it names no code of its own).
fn is_acl_refusal(e: &redis::RedisError) -> bool {
    if e.code() == Some("NOPERM") {
        return true;
    }
    let m = e.to_string().to_lowercase();
    m.contains("noperm")
        || m.contains("no permissions to")
        || m.contains("the user executing the script can't")
}
