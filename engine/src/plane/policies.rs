//! The policies' poller: per-connection policies are kept in the hash `P:policies` (name → JSON),
//! at most [`MAX_POLICIES`]; engines read the hash every second and publish each change, and each
//! core re-applies policies to its live connections on its next tick. What a policy is (its schema
//! and check) is `sluice_layout::policy`'s, shared with sluicectl; which one applies to a connection
//! (the matching) lives beside the session, in `sluice_stratum::session::policy`.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::plane::{spawn_loop, Backoff, Keys, PlaneSettings, StepError, Steps};
pub use crate::session::policy::{Policy, PolicyError, PolicySet};
pub use sluice_layout::policy::MAX_POLICIES;

/// How often engines read `P:policies`.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Reads `P:policies` every second on a thread of its own and publishes each change.
pub fn spawn(
    settings: PlaneSettings,
    set: Arc<ArcSwap<PolicySet>>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    let keys = Keys::new(&settings.prefix);
    let mut last: Option<Vec<(String, String)>> = None;
    let step = move |c: &mut redis::Connection, _: &AtomicBool| -> Result<Duration, StepError> {
        let mut raw = redis::cmd("HGETALL")
            .arg(keys.policies())
            .query::<Vec<(String, String)>>(c)?;
        raw.sort();
        if last.as_ref() != Some(&raw) {
            if raw.len() > MAX_POLICIES {
                tracing::error!(
                    count = raw.len(),
                    "more than {MAX_POLICIES} policies: the rest are ignored"
                );
            }
            let policies = raw
                .iter()
                .take(MAX_POLICIES)
                .filter_map(|(name, json)| match Policy::parse(json) {
                    Ok(p) => Some((name.clone(), p)),
                    Err(e) => {
                        tracing::error!(policy = %name, error = %e, "invalid policy ignored");
                        None
                    }
                })
                .collect();
            let generation = set.load().generation + 1;
            tracing::info!(count = raw.len(), generation, "policies changed");
            set.store(Arc::new(PolicySet {
                generation,
                policies,
            }));
            last = Some(raw);
        }
        Ok(POLL_INTERVAL)
    };
    spawn_loop(
        "sluice-policies",
        settings.url,
        Backoff::fixed(POLL_INTERVAL),
        stop,
        Steps(step),
    )
}
