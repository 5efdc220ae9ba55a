//! Numbers as people read them in a table: durations, hash rates, difficulties and UTC times. JSON
//! output never goes through here; it carries the raw numbers.

/// `3d04h`, `2h05m`, `5m02s`, `12.3s`, `850ms`: two units at most, enough to compare rows.
pub fn duration_ms(ms: u64) -> String {
    let s = ms / 1000;
    let (d, h, m) = (s / 86_400, s / 3600 % 24, s / 60 % 60);
    if d > 0 {
        format!("{d}d{h:02}h")
    } else if h > 0 {
        format!("{h}h{m:02}m")
    } else if m > 0 {
        format!("{m}m{:02}s", s % 60)
    } else if ms >= 1000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{ms}ms")
    }
}

/// A value with an SI prefix and a unit: `1.23 TH/s`.
fn si(value: f64, unit: &str) -> String {
    const PREFIXES: [&str; 7] = ["", "k", "M", "G", "T", "P", "E"];
    if !value.is_finite() || value <= 0.0 {
        return format!("0 {unit}");
    }
    let mut v = value;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < PREFIXES.len() {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{v:.0} {unit}")
    } else {
        format!("{v:.2} {}{unit}", PREFIXES[i])
    }
}

pub fn hashrate(hs: f64) -> String {
    si(hs, "H/s")
}

/// Difficulties run from 1e-6 (test miners) to 1e14 (the network): short and exact enough.
pub fn difficulty(d: f64) -> String {
    if d == 0.0 {
        "0".to_owned()
    } else if (0.001..1e7).contains(&d.abs()) {
        let s = format!("{d:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        format!("{d:.3e}")
    }
}

/// `2024-05-01 12:00:03Z`. Civil date from days since the epoch (Howard Hinnant's algorithm), so
/// that a CLI need not pull in a date library for one column.
pub fn utc_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// `2024-05-01 12:00:03.123Z`, for shares that come many to a second.
pub fn utc_ms_precise(ms: u64) -> String {
    let seconds = utc_ms(ms);
    format!("{}.{:03}Z", seconds.trim_end_matches('Z'), ms % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration_ms(850), "850ms");
        assert_eq!(duration_ms(12_345), "12.3s");
        assert_eq!(duration_ms(302_000), "5m02s");
        assert_eq!(duration_ms(7_500_000), "2h05m");
        assert_eq!(duration_ms(273_600_000), "3d04h");
    }

    #[test]
    fn hashrates_and_difficulties() {
        assert_eq!(hashrate(0.0), "0 H/s");
        assert_eq!(hashrate(999.0), "999 H/s");
        assert_eq!(hashrate(1.234e12), "1.23 TH/s");
        assert_eq!(difficulty(0.000001), "1.000e-6");
        assert_eq!(difficulty(512.0), "512");
        assert_eq!(difficulty(0.125), "0.125");
        assert_eq!(difficulty(8.3e13), "8.300e13");
    }

    #[test]
    fn utc_times() {
        assert_eq!(utc_ms(0), "1970-01-01 00:00:00Z");
        assert_eq!(utc_ms(951_782_400_000), "2000-02-29 00:00:00Z");
        assert_eq!(utc_ms(1_714_564_803_000), "2024-05-01 12:00:03Z");
        assert_eq!(
            utc_ms_precise(1_714_564_803_042),
            "2024-05-01 12:00:03.042Z"
        );
    }
}
