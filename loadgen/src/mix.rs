//! The share mix: which kinds of submit to send, in what proportions.

use std::fmt;
use std::str::FromStr;

/// A kind of submit, and the answer a correct server gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Meets the share target: accepted (`true`).
    Valid,
    /// Well formed but misses the share target: error 23.
    Invalid,
    /// A share this connection already had accepted: error 22.
    Duplicate,
    /// On a job from before the last clean notify, or on a job never sent: error 21.
    Stale,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Valid, Kind::Invalid, Kind::Duplicate, Kind::Stale];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Valid => "valid",
            Kind::Invalid => "invalid",
            Kind::Duplicate => "duplicate",
            Kind::Stale => "stale",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// The answer a correct server gives: `None` for `true`, else the error code.
    pub fn expected(self) -> Outcome {
        match self {
            Kind::Valid => Outcome::Accepted,
            Kind::Invalid => Outcome::Error(23),
            Kind::Duplicate => Outcome::Error(22),
            Kind::Stale => Outcome::Error(21),
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a server answered a submit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// `"result": true`.
    Accepted,
    /// `"result": false` (or null) without an error code.
    False,
    /// An error with this code (20–25 in Stratum V1; others are kept as they come).
    Error(i64),
}

impl Outcome {
    /// The key used in reports: `"true"`, `"false"` or the code.
    pub fn key(self) -> String {
        match self {
            Outcome::Accepted => "true".into(),
            Outcome::False => "false".into(),
            Outcome::Error(c) => c.to_string(),
        }
    }
}

/// Weights of each kind; a submit's kind is drawn with probability weight / total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mix {
    weights: [u32; 4],
    total: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MixError(pub String);

impl fmt::Display for MixError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MixError {}

impl Mix {
    pub fn weight(&self, kind: Kind) -> u32 {
        self.weights[kind.index()]
    }

    pub fn total(&self) -> u32 {
        self.total
    }

    /// The kind for a number drawn uniformly from `0..total()` (any `u32` is reduced modulo total).
    pub fn pick(&self, draw: u32) -> Kind {
        let mut r = draw % self.total;
        for kind in Kind::ALL {
            let w = self.weights[kind.index()];
            if r < w {
                return kind;
            }
            r -= w;
        }
        unreachable!("weights sum to total")
    }
}

impl Default for Mix {
    fn default() -> Self {
        "valid=70,invalid=20,duplicate=5,stale=5"
            .parse()
            .expect("default mix parses")
    }
}

impl FromStr for Mix {
    type Err = MixError;

    /// `valid=70,invalid=20,duplicate=5,stale=5`: each kind at most once, non-negative integer
    /// weights (they need not sum to 100), kinds left out weigh 0, at least one weight above 0.
    fn from_str(s: &str) -> Result<Mix, MixError> {
        let mut weights = [0u32; 4];
        let mut seen = [false; 4];
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| MixError(format!("`{part}`: expected KIND=WEIGHT")))?;
            let kind = Kind::ALL
                .into_iter()
                .find(|k| k.name() == name.trim())
                .ok_or_else(|| {
                    MixError(format!(
                        "unknown kind `{}` (valid, invalid, duplicate, stale)",
                        name.trim()
                    ))
                })?;
            if seen[kind.index()] {
                return Err(MixError(format!("`{kind}` given twice")));
            }
            seen[kind.index()] = true;
            weights[kind.index()] = value
                .trim()
                .parse()
                .map_err(|_| MixError(format!("`{part}`: weight must be a whole number")))?;
        }
        let total = weights
            .iter()
            .try_fold(0u32, |acc, &w| acc.checked_add(w))
            .ok_or_else(|| MixError("weights too large".into()))?;
        if total == 0 {
            return Err(MixError("the mix needs at least one weight above 0".into()));
        }
        Ok(Mix { weights, total })
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = Kind::ALL
            .iter()
            .map(|k| format!("{}={}", k.name(), self.weights[k.index()]))
            .collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_mix() {
        let m: Mix = "valid=70,invalid=20,duplicate=5,stale=5".parse().unwrap();
        assert_eq!(m.weight(Kind::Valid), 70);
        assert_eq!(m.weight(Kind::Invalid), 20);
        assert_eq!(m.weight(Kind::Duplicate), 5);
        assert_eq!(m.weight(Kind::Stale), 5);
        assert_eq!(m.total(), 100);
        assert_eq!(m.to_string(), "valid=70,invalid=20,duplicate=5,stale=5");
    }

    #[test]
    fn missing_kinds_weigh_nothing_and_order_is_free() {
        let m: Mix = " stale = 1 , valid=3".parse().unwrap();
        assert_eq!(m.weight(Kind::Invalid), 0);
        assert_eq!(m.weight(Kind::Duplicate), 0);
        assert_eq!(m.total(), 4);
        let picks: Vec<Kind> = (0..4).map(|d| m.pick(d)).collect();
        assert_eq!(
            picks,
            vec![Kind::Valid, Kind::Valid, Kind::Valid, Kind::Stale]
        );
        assert_eq!(m.pick(4), Kind::Valid, "draws wrap modulo the total");
    }

    #[test]
    fn pick_follows_the_weights_exactly_over_one_cycle() {
        let m: Mix = "valid=70,invalid=10,duplicate=10,stale=10".parse().unwrap();
        let mut counts = [0u32; 4];
        for d in 0..m.total() {
            counts[m.pick(d).index()] += 1;
        }
        assert_eq!(counts, [70, 10, 10, 10]);
    }

    #[test]
    fn refuses_bad_mixes() {
        for bad in [
            "",
            "valid=0",
            "valid",
            "valid=x",
            "valid=-1",
            "valid=1,valid=2",
            "bogus=3",
            "valid=4294967295,stale=1",
        ] {
            assert!(bad.parse::<Mix>().is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn expected_answers() {
        assert_eq!(Kind::Valid.expected(), Outcome::Accepted);
        assert_eq!(Kind::Invalid.expected(), Outcome::Error(23));
        assert_eq!(Kind::Duplicate.expected(), Outcome::Error(22));
        assert_eq!(Kind::Stale.expected(), Outcome::Error(21));
        assert_eq!(Outcome::Error(23).key(), "23");
        assert_eq!(Outcome::Accepted.key(), "true");
    }
}
