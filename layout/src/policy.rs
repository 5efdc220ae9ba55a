//! Per-connection policies: the JSON documents in the hash `P:policies` (name → JSON) that
//! sluicectl writes and every engine reads each second, and the one check both apply, so the
//! engines never ignore a policy that sluicectl accepted. How an engine matches and applies them
//! stays with the engine.

use serde::{Deserialize, Serialize};

/// Policies the engines read, at most (the rest are ignored, with an error in the log).
pub const MAX_POLICIES: usize = 1_000;

/// One policy as stored; every field optional, absent fields left out of the JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Matches connections to this listen port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Matches workers of this user (the worker name before its first dot).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Matches this worker name, whole.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    /// Matches user agents that start with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_difficulty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_difficulty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_difficulty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vardiff_target_shares_per_minute: Option<f64>,
    /// Hex, one to eight digits, e.g. `1fffe000`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_mask: Option<String>,
}

/// Why a stored policy is refused. Each message names the field to fix (sluicectl turns the field
/// names into its flags).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Not a JSON object of the policy's fields (serde's own words: the field, the type wanted).
    #[error("{0}")]
    Json(String),
    #[error("{field} must be a number above 0")]
    NotPositive { field: &'static str },
    #[error("min_difficulty must not exceed max_difficulty")]
    MinAboveMax,
    #[error("version_mask must be up to 8 hex digits")]
    VersionMask,
}

impl Policy {
    /// Parses and checks a stored policy.
    pub fn parse(json: &str) -> Result<Policy, PolicyError> {
        let p: Policy = serde_json::from_str(json).map_err(|e| PolicyError::Json(e.to_string()))?;
        p.check()?;
        Ok(p)
    }

    /// Difficulties and the vardiff target finite and above 0, the minimum not above the maximum,
    /// the mask one to eight hex digits.
    pub fn check(&self) -> Result<(), PolicyError> {
        for (field, v) in [
            ("start_difficulty", self.start_difficulty),
            ("min_difficulty", self.min_difficulty),
            ("max_difficulty", self.max_difficulty),
            (
                "vardiff_target_shares_per_minute",
                self.vardiff_target_shares_per_minute,
            ),
        ] {
            if let Some(v) = v {
                if !(v.is_finite() && v > 0.0) {
                    return Err(PolicyError::NotPositive { field });
                }
            }
        }
        if let (Some(min), Some(max)) = (self.min_difficulty, self.max_difficulty) {
            if min > max {
                return Err(PolicyError::MinAboveMax);
            }
        }
        if let Some(m) = &self.version_mask {
            mask_bits(m)?;
        }
        Ok(())
    }

    /// The version mask's bits, when the policy sets a valid one.
    pub fn version_mask_bits(&self) -> Option<u32> {
        self.version_mask.as_deref().and_then(|m| mask_bits(m).ok())
    }

    /// Whether it overrides anything (a policy of match fields alone changes nothing).
    pub fn has_override(&self) -> bool {
        self.start_difficulty.is_some()
            || self.min_difficulty.is_some()
            || self.max_difficulty.is_some()
            || self.vardiff_target_shares_per_minute.is_some()
            || self.version_mask.is_some()
    }
}

/// One to eight hex digits, either case (some miners and operators leave out leading zeros).
fn mask_bits(m: &str) -> Result<u32, PolicyError> {
    // from_str_radix alone would take a leading `+`.
    if m.is_empty() || m.len() > 8 || !m.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(PolicyError::VersionMask);
    }
    u32::from_str_radix(m, 16).map_err(|_| PolicyError::VersionMask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_policies_say_what_to_fix() {
        let err = |j: &str| Policy::parse(j).unwrap_err().to_string();
        assert_eq!(
            err(r#"{"min_difficulty":0}"#),
            "min_difficulty must be a number above 0"
        );
        assert_eq!(
            err(r#"{"vardiff_target_shares_per_minute":-1}"#),
            "vardiff_target_shares_per_minute must be a number above 0"
        );
        assert!(err(r#"{"min_difficulty":5,"max_difficulty":1}"#).contains("must not exceed"));
        for m in ["xyz", "", "123456789", "+fff"] {
            assert_eq!(
                err(&format!(r#"{{"version_mask":"{m}"}}"#)),
                "version_mask must be up to 8 hex digits"
            );
        }
        assert!(err(r#"{"prot":1}"#).contains("prot"));
        assert!(Policy::parse(r#"{"port":70000}"#).is_err());
        assert!(Policy::parse(r#"{"port":"3333"}"#).is_err());
        assert!(Policy::parse("[1]").is_err());
    }

    #[test]
    fn stored_json_leaves_absent_fields_out() {
        let p = Policy::parse(
            r#"{"version_mask":"1FFFE000","min_difficulty":null,"port":3333,"start_difficulty":0.5}"#,
        )
        .unwrap();
        assert_eq!(p.version_mask_bits(), Some(0x1fff_e000));
        assert!(p.has_override());
        assert_eq!(
            serde_json::to_value(&p).unwrap().to_string(),
            r#"{"port":3333,"start_difficulty":0.5,"version_mask":"1FFFE000"}"#
        );
        assert_eq!(
            Policy::parse(&serde_json::to_string(&p).unwrap()).unwrap(),
            p
        );
    }
}
