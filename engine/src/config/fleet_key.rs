//! The fleet key, as `redis.fleet_key_file` or `redis.fleet_key` gives it: checked with the
//! configuration, used by the plane (`plane/wire.rs`) to sign and check job messages. Here, below
//! the plane, so that the configuration imports nothing of the layers it configures.

/// The shortest fleet key accepted: 256 bits, HMAC-SHA256's full strength.
pub const MIN_FLEET_KEY_BYTES: usize = 32;

/// The fleet's shared secret, which signs and checks job messages. It never prints: `Debug` shows
/// `FleetKey(..)`, and there is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct FleetKey(Vec<u8>);

/// Why a secret cannot be a fleet key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FleetKeyError {
    #[error("the fleet key is {len} bytes, it must be at least {MIN_FLEET_KEY_BYTES}")]
    TooShort { len: usize },
}

impl FleetKey {
    /// The key from its secret bytes, as given (callers trim text first).
    pub fn new(secret: impl Into<Vec<u8>>) -> Result<FleetKey, FleetKeyError> {
        let secret = secret.into();
        if secret.len() < MIN_FLEET_KEY_BYTES {
            return Err(FleetKeyError::TooShort { len: secret.len() });
        }
        Ok(FleetKey(secret))
    }

    /// The secret bytes, for the plane's HMAC (`plane/wire.rs`) and nothing else.
    pub(crate) fn secret(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for FleetKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FleetKey(..)")
    }
}
