//! What the engine's cores share ([`Shared`]) and what the role starting the engine hands it
//! ([`Hooks`]): below the cores and their connections, which both read it, so neither `mod.rs`
//! nor they import each other for it.

use std::sync::Arc;

use crate::config::Settings;
use crate::feed::JobFeed;
use crate::metrics::Metrics;
use crate::server::limits::ConnectionLimits;
use crate::session::BlockFound;

/// What every core shares: the engine's settings and counters, its connection limits, what the
/// role handed in, and the listeners' session settings a reload replaces.
pub struct Shared {
    pub settings: Arc<Settings>,
    pub metrics: Arc<Metrics>,
    pub limits: Arc<ConnectionLimits>,
    /// The feed, the found-block sender and the fleet's services, as the role gave them.
    pub hooks: Hooks,
    /// Each listener's session settings, by `Listener::index`; a reload swaps them.
    pub listener_sessions: Vec<arc_swap::ArcSwap<crate::session::SessionConfig>>,
}

impl Shared {
    /// The connection limits and the listeners' session settings from `settings`, beside what
    /// the role handed in.
    pub fn new(settings: Arc<Settings>, metrics: Arc<Metrics>, hooks: Hooks) -> Shared {
        Shared {
            limits: ConnectionLimits::new(
                settings.max_connections,
                settings.max_connections_per_ip,
            ),
            listener_sessions: settings
                .listeners
                .iter()
                .map(|l| arc_swap::ArcSwap::new(Arc::clone(&l.session)))
                .collect(),
            settings,
            metrics,
            hooks,
        }
    }

    /// The current session settings of a listener.
    pub fn listener_session(&self, index: usize) -> Arc<crate::session::SessionConfig> {
        self.listener_sessions[index].load_full()
    }

    /// Applies what a configuration reload can change while the engine runs: connection limits
    /// and the listeners' session settings (new connections at once; live ones on the cores' next
    /// tick). Returns the keys whose change needs a restart.
    pub fn reload(&self, new: &Settings) -> Vec<&'static str> {
        let mut restart = Vec::new();
        let old = &self.settings;
        if new.listeners.len() != old.listeners.len()
            || new.listeners.iter().zip(&old.listeners).any(|(n, o)| {
                n.proxy_protocol != o.proxy_protocol
                    || n.address != o.address
                    || n.trusted_proxies != o.trusted_proxies
            })
        {
            restart.push("listeners (addresses, proxy_protocol, trusted_proxies)");
        }
        if new.threads != old.threads {
            restart.push("engine.threads");
        }
        if new.coinbase.extranonce != old.coinbase.extranonce || new.network != old.network {
            restart.push("pool (network, extranonce sizes)");
        }
        self.limits
            .set(new.max_connections, new.max_connections_per_ip);
        for (slot, listener) in self.listener_sessions.iter().zip(&new.listeners) {
            if listener.session.extranonce == slot.load().extranonce {
                slot.store(Arc::clone(&listener.session));
            }
        }
        self.hooks
            .control
            .reloads
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        restart
    }
}

/// What the role starting an engine hands it: where its jobs come from and its found blocks go,
/// and the fleet's services (idle or absent without a plane).
pub struct Hooks {
    /// Filled by the role's job source or the plane's subscriber, before the cores start.
    pub feed: Arc<JobFeed>,
    /// Found blocks leave the cores here; the receiver ends when the engine stops.
    pub blocks: crossbeam_channel::Sender<Box<BlockFound>>,
    /// The share log writer's queue (the stratum role only).
    pub share_log: Option<crate::plane::sharelog::ShareQueue>,
    /// The fleet's session store (the stratum role only).
    pub sessions: Option<Arc<crate::plane::sessions::SessionStore>>,
    /// This engine's slot in the fleet: the first byte of every extranonce1 (the stratum role).
    pub slot: Option<Arc<crate::plane::sessions::SlotLease>>,
    /// Drain state and kicks from sluicectl (the stratum role; idle otherwise).
    pub control: Arc<crate::plane::commands::Control>,
    /// Per-connection policies from Redis (the stratum role; empty otherwise).
    pub policies: Arc<arc_swap::ArcSwap<crate::plane::policies::PolicySet>>,
}

impl Hooks {
    /// Hooks with no fleet services: jobs through `feed`, found blocks to `blocks`.
    pub fn local(feed: Arc<JobFeed>, blocks: crossbeam_channel::Sender<Box<BlockFound>>) -> Hooks {
        Hooks {
            feed,
            blocks,
            share_log: None,
            sessions: None,
            slot: None,
            control: Arc::new(crate::plane::commands::Control::default()),
            policies: Arc::new(arc_swap::ArcSwap::from_pointee(
                crate::plane::policies::PolicySet::default(),
            )),
        }
    }
}
