//! Variable difficulty: keep each connection near a target share rate by estimating its hashrate
//! from a time-decayed sum of the difficulty of its accepted shares.
//!
//! The estimate is `A / (τ · (1 − e^(−age/τ)))` where `A` decays with time constant `τ` and grows by
//! each share's difficulty; the divisor corrects for a young connection that has not yet filled a
//! window. A retarget happens after `retarget_shares` shares or `retarget_interval_ms`, whichever
//! comes first; a change within `tolerance` of the current difficulty is skipped so the miner is not
//! sent noise, and one retarget moves by at most `max_step` either way.

use crate::units::Difficulty;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VardiffConfig {
    /// Accepted shares per minute to aim for.
    pub target_shares_per_minute: f64,
    pub retarget_shares: u32,
    pub retarget_interval_ms: u64,
    /// Relative change below which the difficulty is left alone.
    pub tolerance: f64,
    /// The largest factor one retarget may move the difficulty by.
    pub max_step: f64,
    /// The decay time constant of the rate estimate.
    pub decay_ms: u64,
}

impl Default for VardiffConfig {
    fn default() -> Self {
        VardiffConfig {
            target_shares_per_minute: 18.0,
            retarget_shares: 24,
            retarget_interval_ms: 60_000,
            tolerance: 0.25,
            max_step: 16.0,
            decay_ms: 300_000,
        }
    }
}

/// One connection's vardiff state (serde: it travels in a session's exported state).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Vardiff {
    /// Decayed sum of accepted difficulty.
    accumulated: f64,
    /// When `accumulated` was last decayed.
    updated_ms: u64,
    started_ms: u64,
    last_retarget_ms: u64,
    shares_since_retarget: u32,
}

impl Vardiff {
    pub fn new(now_ms: u64) -> Vardiff {
        Vardiff {
            accumulated: 0.0,
            updated_ms: now_ms,
            started_ms: now_ms,
            last_retarget_ms: now_ms,
            shares_since_retarget: 0,
        }
    }

    fn decay_to(&mut self, now_ms: u64, config: &VardiffConfig) {
        let dt = now_ms.saturating_sub(self.updated_ms) as f64;
        self.accumulated *= (-dt / config.decay_ms as f64).exp();
        self.updated_ms = self.updated_ms.max(now_ms);
    }

    /// Difficulty-1 shares per second, as estimated now.
    pub fn rate(&mut self, now_ms: u64, config: &VardiffConfig) -> f64 {
        self.decay_to(now_ms, config);
        let tau = config.decay_ms as f64 / 1000.0;
        let age = (now_ms.saturating_sub(self.started_ms) as f64 / 1000.0).max(0.001);
        self.accumulated / (tau * (1.0 - (-age / tau).exp()))
    }

    /// Records an accepted share credited at `difficulty`.
    pub fn record(&mut self, difficulty: f64, now_ms: u64, config: &VardiffConfig) {
        self.decay_to(now_ms, config);
        self.accumulated += difficulty;
        self.shares_since_retarget = self.shares_since_retarget.saturating_add(1);
    }

    /// Starts measuring afresh (after the miner's difficulty was set from outside, e.g. `d=`).
    pub fn reset(&mut self, now_ms: u64) {
        *self = Vardiff::new(now_ms);
    }

    /// The new difficulty, when a retarget is due and the change is worth sending.
    pub fn retarget(
        &mut self,
        current: Difficulty,
        floor: Difficulty,
        ceiling: Difficulty,
        now_ms: u64,
        config: &VardiffConfig,
    ) -> Option<Difficulty> {
        let due = self.shares_since_retarget >= config.retarget_shares
            || now_ms.saturating_sub(self.last_retarget_ms) >= config.retarget_interval_ms;
        if !due {
            return None;
        }
        self.last_retarget_ms = now_ms;
        self.shares_since_retarget = 0;
        let ideal = self.rate(now_ms, config) * 60.0 / config.target_shares_per_minute;
        let cur = current.get();
        let stepped = ideal.clamp(cur / config.max_step, cur * config.max_step);
        let bounded = stepped.clamp(floor.get(), ceiling.get().max(floor.get()));
        if (bounded / cur - 1.0).abs() <= config.tolerance {
            return None;
        }
        Difficulty::new(bounded).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A miner finding difficulty-1 shares at `hashrate` per second, submitting at whatever difficulty
    /// it is given, with shares evenly spaced. Returns the difficulty after `minutes`.
    fn converge(start: f64, hashrate: f64, minutes: u64) -> f64 {
        let config = VardiffConfig::default();
        let floor = Difficulty::new(1e-6).unwrap();
        let ceiling = Difficulty::new(1e12).unwrap();
        let mut vd = Vardiff::new(0);
        let mut diff = Difficulty::new(start).unwrap();
        let mut now = 0u64;
        let mut next_share = diff.get() / hashrate * 1000.0;
        while now < minutes * 60_000 {
            now += 100;
            while next_share <= now as f64 {
                vd.record(diff.get(), next_share as u64, &config);
                next_share += diff.get() / hashrate * 1000.0;
            }
            if let Some(d) = vd.retarget(diff, floor, ceiling, now, &config) {
                diff = d;
                next_share = now as f64 + diff.get() / hashrate * 1000.0;
            }
        }
        diff.get()
    }

    #[test]
    fn converges_from_too_low_and_too_high() {
        // 1000 diff-1 shares/s at 18 shares/min wants difficulty 1000 * 60 / 18 = 3333.
        let ideal = 1000.0 * 60.0 / 18.0;
        for start in [1.0, 1e7] {
            let d = converge(start, 1000.0, 30);
            assert!(
                (d / ideal - 1.0).abs() < 0.3,
                "start {start}: ended at {d}, ideal {ideal}"
            );
        }
    }

    #[test]
    fn clamped_by_floor_and_ceiling() {
        let config = VardiffConfig::default();
        let mut vd = Vardiff::new(0);
        for i in 0..24 {
            vd.record(1.0, i, &config);
        }
        let floor = Difficulty::new(1.0).unwrap();
        let ceiling = Difficulty::new(4.0).unwrap();
        let d = vd.retarget(Difficulty::new(1.0).unwrap(), floor, ceiling, 24, &config);
        assert_eq!(d, Some(ceiling), "a flood of shares is held at the ceiling");
        let mut idle = Vardiff::new(0);
        let d = idle.retarget(
            Difficulty::new(8.0).unwrap(),
            floor,
            ceiling,
            60_000,
            &config,
        );
        assert_eq!(d, Some(floor), "silence is held at the floor");
    }

    #[test]
    fn small_changes_are_skipped() {
        let config = VardiffConfig::default();
        let mut vd = Vardiff::new(0);
        // 18 shares a minute at difficulty 10 for ten minutes: already on target.
        let mut t = 0;
        while t < 600_000 {
            t += 3_333;
            vd.record(10.0, t, &config);
            let d = vd.retarget(
                Difficulty::new(10.0).unwrap(),
                Difficulty::new(1.0).unwrap(),
                Difficulty::new(1e9).unwrap(),
                t,
                &config,
            );
            if t > 120_000 {
                assert_eq!(d, None, "at {t} ms");
            }
        }
    }
}
