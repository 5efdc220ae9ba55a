//! Worker names: `address.worker` with the address checked for the pool's network, or free names
//! when the pool allows them; and the parameters miners put in the password (`d=1024`).

use std::sync::Arc;

use bitcoin::address::NetworkUnchecked;
use bitcoin::{Address, Network};

/// The longest worker name accepted, in bytes.
pub const MAX_WORKER_NAME_LENGTH: usize = 128;

/// An authorized worker on a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Worker {
    /// The whole name as the miner gave it (`address.rig1`); shared with every share record.
    pub name: Arc<str>,
    /// The payout address part, when the name starts with one.
    pub address: Option<Arc<str>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WorkerError {
    #[error("worker name is empty")]
    Empty,
    #[error("worker name is longer than {MAX_WORKER_NAME_LENGTH} bytes")]
    TooLong,
    #[error("worker name has characters outside printable ASCII")]
    BadCharacters,
    #[error("worker name must start with an address for this pool's network")]
    NotAnAddress,
}

impl WorkerError {
    /// The Stratum message for the error (static, for `write_error`).
    pub fn message(self) -> &'static str {
        match self {
            WorkerError::Empty => "Unauthorized worker: empty name",
            WorkerError::TooLong => "Unauthorized worker: name too long",
            WorkerError::BadCharacters => "Unauthorized worker: name must be printable ASCII",
            WorkerError::NotAnAddress => {
                "Unauthorized worker: user must be a payout address for this pool's network (address.worker)"
            }
        }
    }
}

/// Checks a worker name. With `allow_free_names` any printable name passes (and an address prefix is
/// still recognised); without it the part before the first `.` must be an address on `network`.
pub fn parse_worker(
    name: &str,
    network: Network,
    allow_free_names: bool,
) -> Result<Worker, WorkerError> {
    if name.is_empty() {
        return Err(WorkerError::Empty);
    }
    if name.len() > MAX_WORKER_NAME_LENGTH {
        return Err(WorkerError::TooLong);
    }
    if !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(WorkerError::BadCharacters);
    }
    let user = name.split('.').next().unwrap_or(name);
    let address = user
        .parse::<Address<NetworkUnchecked>>()
        .ok()
        .filter(|a| a.is_valid_for_network(network))
        .map(|_| Arc::<str>::from(user));
    if address.is_none() && !allow_free_names {
        return Err(WorkerError::NotAnAddress);
    }
    Ok(Worker {
        name: Arc::from(name),
        address,
    })
}

/// The difficulty a miner asks for in its password: `d=1024`, `diff=1024`, or either among other
/// comma- or semicolon-separated parameters.
pub fn password_difficulty(password: &str) -> Option<f64> {
    password
        .split([',', ';', ' '])
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| matches!(k.trim(), "d" | "diff" | "difficulty"))
        .and_then(|(_, v)| v.trim().parse::<f64>().ok())
        .filter(|d| d.is_finite() && *d > 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGTEST: &str = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";
    const MAINNET: &str = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4";

    #[test]
    fn addresses_are_checked_for_the_network() {
        let w = parse_worker(&format!("{REGTEST}.rig1"), Network::Regtest, false).unwrap();
        assert_eq!(w.address.as_deref(), Some(REGTEST));
        assert_eq!(
            parse_worker(&format!("{MAINNET}.rig1"), Network::Regtest, false),
            Err(WorkerError::NotAnAddress)
        );
        assert_eq!(
            parse_worker("alice.rig1", Network::Regtest, false),
            Err(WorkerError::NotAnAddress)
        );
        let free = parse_worker("alice.rig1", Network::Regtest, true).unwrap();
        assert_eq!(free.address, None);
    }

    #[test]
    fn names_are_bounded_and_printable() {
        let at_limit = "a".repeat(MAX_WORKER_NAME_LENGTH);
        assert!(parse_worker(&at_limit, Network::Regtest, true).is_ok());
        assert_eq!(
            parse_worker(&format!("{at_limit}a"), Network::Regtest, true),
            Err(WorkerError::TooLong)
        );
        assert_eq!(
            parse_worker("", Network::Regtest, true),
            Err(WorkerError::Empty)
        );
        assert_eq!(
            parse_worker("a b", Network::Regtest, true),
            Err(WorkerError::BadCharacters)
        );
        assert_eq!(
            parse_worker("a\u{e9}", Network::Regtest, true),
            Err(WorkerError::BadCharacters)
        );
    }

    #[test]
    fn password_parameters() {
        assert_eq!(password_difficulty("d=1024"), Some(1024.0));
        assert_eq!(password_difficulty("x, diff=0.5"), Some(0.5));
        assert_eq!(password_difficulty("foo;d=64;bar=1"), Some(64.0));
        assert_eq!(password_difficulty("x"), None);
        assert_eq!(password_difficulty("d=-1"), None);
        assert_eq!(password_difficulty("d=inf"), None);
    }
}
