//! The session hash `P:session:ID`: one miner session the engines' session store keeps for a
//! resume, and sluicectl lists (`session ls|show`). The engine's Lua scripts (claim, save) and
//! its Rust, and sluicectl, all name the fields through [`field`]; the engine's tests check that
//! its scripts name exactly [`FIELDS`].
//!
//! The session itself travels as one versioned value, the Stratum session's exported state
//! serialized as JSON in [`field::STATE`]; the other fields are the claim's bookkeeping (who holds
//! it) and plain copies of what sluicectl shows, so sluicectl does not parse the state.

/// The hash's field names.
pub mod field {
    /// `ID|RUN` of the engine process whose connection holds the session.
    pub const HOLDER: &str = "holder";
    /// The holder's engine slot (its slot key tells whether the holder still lives).
    pub const HOLDER_SLOT: &str = "holder_slot";
    /// The holding connection, within its process.
    pub const CONN: &str = "conn";
    /// [`RELEASED`](super::RELEASED) once its connection let it go: only then may it be resumed.
    pub const RELEASED: &str = "released";
    /// The `redis.id` of the engine that wrote it last.
    pub const ENGINE: &str = "engine";
    /// When it was written last (unix ms).
    pub const UPDATED_MS: &str = "updated_ms";
    /// Hex; its first byte is the engine slot it came from (kept alive while it may resume).
    pub const EXTRANONCE1: &str = "extranonce1";
    /// For sluicectl: the session's difficulty (a decimal number).
    pub const DIFFICULTY: &str = "difficulty";
    /// For sluicectl: the version mask, 8 hex digits.
    pub const VERSION_MASK: &str = "version_mask";
    /// For sluicectl: the authorized workers' names, a JSON array of strings.
    pub const WORKERS: &str = "workers";
    /// The session's exported state (JSON, versioned), what a resume reads. Written with
    /// the duplicate sets (by job fingerprint) only by the release; a claim removes it (the sets
    /// leave Redis with the claim) and the claimant's next save writes it again.
    pub const STATE: &str = "state";
}

/// Every field of the hash.
pub const FIELDS: [&str; 11] = [
    field::HOLDER,
    field::HOLDER_SLOT,
    field::CONN,
    field::RELEASED,
    field::ENGINE,
    field::UPDATED_MS,
    field::EXTRANONCE1,
    field::DIFFICULTY,
    field::VERSION_MASK,
    field::WORKERS,
    field::STATE,
];

/// The value of [`field::RELEASED`] once the session may be resumed (`0` while held).
pub const RELEASED: &str = "1";

#[cfg(test)]
mod tests {
    use super::*;

    /// What a fleet running today's build holds: a rename strands every record already written.
    #[test]
    fn field_names_are_todays() {
        assert_eq!(
            FIELDS,
            [
                "holder",
                "holder_slot",
                "conn",
                "released",
                "engine",
                "updated_ms",
                "extranonce1",
                "difficulty",
                "version_mask",
                "workers",
                "state"
            ]
        );
        assert_eq!(RELEASED, "1");
    }
}
