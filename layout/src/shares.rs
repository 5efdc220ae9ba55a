//! The share log's records: one `P:shares` stream entry per share verdict, and the names the
//! per-minute rollups `P:roll:MINUTE` reserve. The engine's share-log writer builds a
//! [`ShareEntry`] per verdict and writes its [`ShareEntry::into_values`]; sluicectl reads the
//! fields by [`FIELDS`].

use serde::{Deserialize, Serialize};

/// The stream entry's fields, in the order records carry their values. The engine's rollups read
/// `ts`, `verdict`, `worker` and `assigned` at offsets 0, 3, 5 and 6.
pub const FIELDS: [&str; 15] = [
    "ts", "engine", "batch", "verdict", "reason", "worker", "assigned", "actual", "job", "height",
    "session", "client", "agent", "block", "hash",
];

/// The rollup name under which a minute's workers past `share_log.max_rollup_workers` are summed.
/// It holds a space, which no worker name can (the engine's worker names are printable ASCII
/// without spaces), so no miner can authorize it.
pub const OTHER_WORKERS: &str = "~ other";

/// The field of a rollup hash counting its named workers. It has no `|`, so readers of the
/// `WORKER|counter` fields skip it.
pub const ROLLUP_WORKER_COUNT: &str = "~workers";

/// A share's verdict, as the `verdict` field spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Accepted,
    Rejected,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Accepted => "accepted",
            Verdict::Rejected => "rejected",
        }
    }
}

/// One share entry. Optional fields are stored as empty strings; serialized (sluicectl's
/// `--json`), they are null.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShareEntry {
    /// When the engine took the verdict (unix ms).
    pub ts: u64,
    pub engine: String,
    /// `EPOCH:SEQ` of the batch that carried it.
    pub batch: String,
    pub verdict: Verdict,
    /// Why a share was rejected.
    pub reason: Option<String>,
    pub worker: String,
    /// The difficulty the share was asked for.
    pub assigned: f64,
    /// The difficulty its hash reached.
    pub actual: f64,
    pub job: Option<String>,
    pub height: Option<u64>,
    /// The connection's extranonce1 in hex.
    pub session: String,
    pub client: String,
    pub agent: Option<String>,
    pub block: bool,
    pub hash: Option<String>,
}

impl ShareEntry {
    /// The values in the order of [`FIELDS`], as they are stored.
    pub fn into_values(self) -> Vec<String> {
        let text = |v: Option<String>| v.unwrap_or_default();
        vec![
            self.ts.to_string(),
            self.engine,
            self.batch,
            self.verdict.as_str().to_owned(),
            text(self.reason),
            self.worker,
            self.assigned.to_string(),
            self.actual.to_string(),
            text(self.job),
            self.height.map_or(String::new(), |h| h.to_string()),
            self.session,
            self.client,
            text(self.agent),
            u8::from(self.block).to_string(),
            text(self.hash),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_stored_in_field_order_with_empty_optionals() {
        let e = ShareEntry {
            ts: 1_700_000_000_123,
            engine: "e-1".into(),
            batch: "1:2".into(),
            verdict: Verdict::Rejected,
            reason: Some("low-difficulty".into()),
            worker: "w.1".into(),
            assigned: 0.5,
            actual: 1e-9,
            job: None,
            height: Some(840_000),
            session: "0a0b0c0d".into(),
            client: "10.0.0.7".into(),
            agent: None,
            block: false,
            hash: None,
        };
        assert_eq!(
            e.into_values(),
            [
                "1700000000123",
                "e-1",
                "1:2",
                "rejected",
                "low-difficulty",
                "w.1",
                "0.5",
                "0.000000001",
                "",
                "840000",
                "0a0b0c0d",
                "10.0.0.7",
                "",
                "0",
                ""
            ]
        );
        assert_eq!(
            [FIELDS[0], FIELDS[3], FIELDS[5], FIELDS[6]],
            ["ts", "verdict", "worker", "assigned"]
        );
    }
}
