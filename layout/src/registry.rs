//! The registry entry: the hash `P:svc:ID` every Sluice process keeps alive under a TTL, indexed
//! by expiry in `P:services`. The engine's heartbeat writes a [`ServiceEntry`] field by field
//! ([`ServiceEntry::fields`]); sluicectl reads the fields by the names in [`field`].

/// The role a stratum engine registers with.
pub const ROLE_STRATUM: &str = "stratum";
/// The role a jobmanager registers with.
pub const ROLE_JOBMANAGER: &str = "jobmanager";

/// The hash's field names.
pub mod field {
    pub const ID: &str = "id";
    pub const ROLE: &str = "role";
    pub const ADDRESS: &str = "address";
    pub const VERSION: &str = "version";
    pub const STARTED_MS: &str = "started_ms";
    pub const HEARTBEAT_MS: &str = "heartbeat_ms";
    pub const CONNECTIONS: &str = "connections";
    pub const HASHRATE: &str = "hashrate";
    pub const SHARES_PER_SECOND: &str = "shares_per_second";
    pub const STATE: &str = "state";
    pub const SHARES_DROPPED: &str = "shares_dropped";
}

/// Every field, in the order a heartbeat writes them.
pub const FIELDS: [&str; 11] = [
    field::ID,
    field::ROLE,
    field::ADDRESS,
    field::VERSION,
    field::STARTED_MS,
    field::HEARTBEAT_MS,
    field::CONNECTIONS,
    field::HASHRATE,
    field::SHARES_PER_SECOND,
    field::STATE,
    field::SHARES_DROPPED,
];

/// One field's value, typed, so the writer's Redis client encodes numbers as it always has.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Text(&'a str),
    Int(u64),
    Float(f64),
}

/// What one heartbeat says about a process.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceEntry<'a> {
    pub id: &'a str,
    /// [`ROLE_STRATUM`] or [`ROLE_JOBMANAGER`].
    pub role: &'a str,
    /// Where it serves (the stratum listeners, or empty for a jobmanager).
    pub address: &'a str,
    pub version: &'a str,
    pub started_ms: u64,
    pub heartbeat_ms: u64,
    pub connections: u64,
    pub hashrate: f64,
    pub shares_per_second: f64,
    /// Role-specific state, e.g. `leader` or `standby`.
    pub state: &'a str,
    /// Accepted shares the share log lost since the process started; 0 for a jobmanager.
    pub shares_dropped: u64,
}

impl ServiceEntry<'_> {
    /// The fields with their values, in the order of [`FIELDS`].
    pub fn fields(&self) -> [(&'static str, Value<'_>); 11] {
        use Value::{Float, Int, Text};
        [
            (field::ID, Text(self.id)),
            (field::ROLE, Text(self.role)),
            (field::ADDRESS, Text(self.address)),
            (field::VERSION, Text(self.version)),
            (field::STARTED_MS, Int(self.started_ms)),
            (field::HEARTBEAT_MS, Int(self.heartbeat_ms)),
            (field::CONNECTIONS, Int(self.connections)),
            (field::HASHRATE, Float(self.hashrate)),
            (field::SHARES_PER_SECOND, Float(self.shares_per_second)),
            (field::STATE, Text(self.state)),
            (field::SHARES_DROPPED, Int(self.shares_dropped)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_come_in_the_documented_order() {
        let e = ServiceEntry {
            id: "e-1",
            role: ROLE_STRATUM,
            address: "127.0.0.1:3333",
            version: "0.1.0",
            started_ms: 1,
            heartbeat_ms: 2,
            connections: 3,
            hashrate: 4.5,
            shares_per_second: 6.5,
            state: "serving",
            shares_dropped: 7,
        };
        let names: Vec<&str> = e.fields().iter().map(|(n, _)| *n).collect();
        assert_eq!(names, FIELDS);
        assert_eq!(
            FIELDS,
            [
                "id",
                "role",
                "address",
                "version",
                "started_ms",
                "heartbeat_ms",
                "connections",
                "hashrate",
                "shares_per_second",
                "state",
                "shares_dropped"
            ]
        );
    }
}
