//! Per-connection policies: operators' overrides of a listener's session settings, matched on the
//! listen port, the user (the worker name's part before the first dot), the whole worker name or
//! a user-agent prefix. This module is the matching and the overrides; where policies are kept
//! and how they reach the engine (the Redis plane's poller) is not its business.
//!
//! A connection takes the most specific policy that matches it (the most match fields given; ties
//! go to the first name in order) when its first worker authorizes (the session asks its
//! [`PolicyLookup`] before answering), and again whenever the policies change (the I/O layer calls
//! [`Session::apply_config`](super::Session::apply_config)).

use std::sync::Arc;

use super::SessionConfig;
use sluice_core::units::{Difficulty, VersionMask};

/// What a session asks at its first worker's authorize: the configuration that worker runs on.
/// The session keeps its own when the answer is the same `Arc`.
pub trait PolicyLookup {
    fn config_for(&self, worker: &str, user_agent: Option<&str>) -> Arc<SessionConfig>;
}

/// A [`PolicySet`] as seen from one listener: its configuration and the port miners reached.
#[derive(Clone, Copy)]
pub struct PolicyScope<'a> {
    pub set: &'a PolicySet,
    pub base: &'a Arc<SessionConfig>,
    pub port: u16,
}

impl PolicyLookup for PolicyScope<'_> {
    fn config_for(&self, worker: &str, user_agent: Option<&str>) -> Arc<SessionConfig> {
        self.set
            .config_for(self.base, self.port, Some(worker), user_agent)
    }
}

// One policy as stored (JSON), its schema and its check: `sluice_layout::policy`'s, shared with
// sluicectl. This module adds only how a policy matches and applies.
pub use sluice_layout::policy::{Policy, PolicyError};

/// How a policy matches a connection and what it makes of the listener's configuration.
trait Rules {
    fn matches(&self, port: u16, worker: Option<&str>, agent: Option<&str>) -> bool;
    fn specificity(&self) -> usize;
    fn apply(&self, base: &SessionConfig) -> SessionConfig;
}

impl Rules for Policy {
    fn matches(&self, port: u16, worker: Option<&str>, agent: Option<&str>) -> bool {
        let user = worker.map(|w| w.split('.').next().unwrap_or(w));
        self.port.is_none_or(|p| p == port)
            && self.user.as_deref().is_none_or(|u| Some(u) == user)
            && self.worker.as_deref().is_none_or(|w| Some(w) == worker)
            && self
                .agent
                .as_deref()
                .is_none_or(|a| agent.is_some_and(|g| g.starts_with(a)))
    }

    fn specificity(&self) -> usize {
        usize::from(self.port.is_some())
            + usize::from(self.user.is_some())
            + usize::from(self.worker.is_some())
            + usize::from(self.agent.is_some())
    }

    /// The listener's configuration with this policy's overrides.
    fn apply(&self, base: &SessionConfig) -> SessionConfig {
        let mut c = base.clone();
        let d = |v: Option<f64>, default: Difficulty| {
            v.and_then(|v| Difficulty::new(v).ok()).unwrap_or(default)
        };
        c.min_difficulty = d(self.min_difficulty, base.min_difficulty);
        c.max_difficulty = d(self.max_difficulty, base.max_difficulty);
        c.start_difficulty = d(self.start_difficulty, base.start_difficulty);
        if let Some(vd) = &mut c.vardiff {
            if let Some(t) = self.vardiff_target_shares_per_minute {
                vd.target_shares_per_minute = t;
            }
        }
        if let Some(m) = self.version_mask_bits() {
            // A policy narrows the pool's mask, never widens it past `pool.version_mask`.
            c.version_mask = VersionMask(m).within(base.version_mask);
        }
        c
    }
}

/// The policies in force, numbered so cores notice a change.
#[derive(Debug, Default)]
pub struct PolicySet {
    pub generation: u64,
    /// Sorted by name.
    pub policies: Vec<(String, Policy)>,
}

impl PolicySet {
    /// The configuration a connection runs on: the most specific matching policy over the
    /// listener's, or the listener's own.
    pub fn config_for(
        &self,
        base: &Arc<SessionConfig>,
        port: u16,
        worker: Option<&str>,
        agent: Option<&str>,
    ) -> Arc<SessionConfig> {
        let mut best: Option<&Policy> = None;
        for (_, p) in &self.policies {
            if p.matches(port, worker, agent)
                && best.is_none_or(|b| p.specificity() > b.specificity())
            {
                best = Some(p);
            }
        }
        match best {
            Some(p) => Arc::new(p.apply(base)),
            None => Arc::clone(base),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(policies: &[(&str, &str)]) -> PolicySet {
        PolicySet {
            generation: 1,
            policies: policies
                .iter()
                .map(|(n, j)| (n.to_string(), Policy::parse(j).unwrap()))
                .collect(),
        }
    }

    #[test]
    fn the_most_specific_matching_policy_wins() {
        let base = Arc::new(SessionConfig::new(bitcoin::Network::Regtest));
        let s = set(&[
            ("a-port", r#"{"port":3333,"min_difficulty":2}"#),
            (
                "b-user",
                r#"{"port":3333,"user":"alice","min_difficulty":3}"#,
            ),
            (
                "c-agent",
                r#"{"agent":"cgminer","start_difficulty":5,"version_mask":"00ffe000"}"#,
            ),
        ]);
        let min = |port, worker, agent| {
            s.config_for(&base, port, worker, agent)
                .min_difficulty
                .get()
        };
        assert_eq!(min(3333, Some("alice.rig1"), None), 3.0);
        assert_eq!(min(3333, Some("bob.rig1"), None), 2.0);
        assert_eq!(
            min(4444, Some("alice.rig1"), None),
            base.min_difficulty.get()
        );
        let c = s.config_for(&base, 4444, Some("bob"), Some("cgminer/4.11"));
        assert_eq!(
            (c.start_difficulty.get(), c.version_mask),
            (5.0, VersionMask(0x00ff_e000))
        );
        let wide = set(&[("wide", r#"{"version_mask":"ffffffff"}"#)]);
        assert_eq!(
            wide.config_for(&base, 1, None, None).version_mask,
            base.version_mask,
            "a policy's mask is intersected with the pool's"
        );
        assert!(Arc::ptr_eq(
            &s.config_for(&base, 1, None, Some("bfg")),
            &base
        ));
    }

    #[test]
    fn bad_policies_say_what_to_fix() {
        assert!(Policy::parse(r#"{"min_difficulty":0}"#)
            .unwrap_err()
            .to_string()
            .contains("min_difficulty"));
        assert!(Policy::parse(r#"{"min_difficulty":5,"max_difficulty":1}"#)
            .unwrap_err()
            .to_string()
            .contains("must not exceed"));
        assert!(Policy::parse(r#"{"version_mask":"xyz"}"#)
            .unwrap_err()
            .to_string()
            .contains("hex"));
        assert!(Policy::parse(r#"{"prot":1}"#)
            .unwrap_err()
            .to_string()
            .contains("prot"));
    }
}
