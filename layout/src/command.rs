//! Commands from sluicectl to one engine, and the engine's acknowledgements.
//!
//! sluicectl appends [`FIELDS`] (`id`, `cmd`, `arg`, `sent_ms`) to the stream `P:cmd:ENGINE`
//! (MAXLEN ~ [`COMMAND_STREAM_MAXLEN`]) and polls `P:ack:ID`; the engine answers with an [`Ack`]
//! stored for [`ACK_TTL_SECS`]. What each command does, and the shape of its result, is the
//! engine's `plane/commands.rs`.

use serde::{Deserialize, Serialize};

/// Entries kept in each engine's command stream.
pub const COMMAND_STREAM_MAXLEN: usize = 1_000;

/// Acknowledgements live an hour: waiting longer could never see one.
pub const ACK_TTL_SECS: u64 = 3_600;

/// The command stream entry's field names.
pub mod field {
    /// The command's id, which names its acknowledgement key.
    pub const ID: &str = "id";
    pub const CMD: &str = "cmd";
    /// The command's argument (a session id for `kick`; empty otherwise).
    pub const ARG: &str = "arg";
    /// When sluicectl sent it (unix ms, Redis's clock).
    pub const SENT_MS: &str = "sent_ms";
}

/// The command stream entry's fields, in the order sluicectl writes them.
pub const FIELDS: [&str; 4] = [field::ID, field::CMD, field::ARG, field::SENT_MS];

/// The commands an engine carries out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Drain,
    Undrain,
    /// `arg`: the session id.
    Kick,
    Reload,
}

impl Command {
    pub const ALL: [Command; 4] = [
        Command::Drain,
        Command::Undrain,
        Command::Kick,
        Command::Reload,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Command::Drain => "drain",
            Command::Undrain => "undrain",
            Command::Kick => "kick",
            Command::Reload => "reload",
        }
    }

    /// The command a stream entry names, if this build knows it.
    pub fn parse(s: &str) -> Option<Command> {
        Command::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// An engine's answer to one command, stored as JSON in `P:ack:ID`:
/// `{"cmd","engine","ok":true,"result":{…}}` or `{"cmd","engine","error":"…","ok":false}`.
/// The fields are declared in that (alphabetical) order, which is the order the engine has
/// always written them in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    /// The command as the entry spelled it (an unknown one too, so its refusal names it).
    pub cmd: String,
    pub engine: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
}

impl Ack {
    /// The answer to a command carried out or refused.
    pub fn new(engine: &str, cmd: &str, outcome: Result<serde_json::Value, String>) -> Ack {
        let (ok, result, error) = match outcome {
            Ok(r) => (true, Some(r), None),
            Err(e) => (false, None, Some(e)),
        };
        Ack {
            cmd: cmd.to_owned(),
            engine: engine.to_owned(),
            error,
            ok,
            result,
        }
    }

    /// The stored text.
    pub fn to_json(&self) -> String {
        // A struct of strings, a bool and a JSON value always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_acks_are_spelled_as_today() {
        let names: Vec<&str> = Command::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names, ["drain", "undrain", "kick", "reload"]);
        assert_eq!(Command::parse("kick"), Some(Command::Kick));
        assert_eq!(Command::parse("Kick"), None);
        assert_eq!(FIELDS, ["id", "cmd", "arg", "sent_ms"]);
        // What serde_json::json! wrote before (its maps sort their keys).
        let result = serde_json::json!({"draining": true, "connections": 3});
        assert_eq!(
            Ack::new("e-1", "drain", Ok(result.clone())).to_json(),
            serde_json::json!({"engine": "e-1", "cmd": "drain", "ok": true, "result": result})
                .to_string()
        );
        assert_eq!(
            Ack::new("e-1", "nope", Err("unknown".into())).to_json(),
            serde_json::json!({"engine": "e-1", "cmd": "nope", "ok": false, "error": "unknown"})
                .to_string()
        );
    }
}
