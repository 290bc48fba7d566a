//! Unix seconds → readable UTC, and "in 4 minutes".

use std::fmt::Write;
use std::time::{Duration, UNIX_EPOCH};

/// `2026-11-22 13:05:09 UTC` (humantime's RFC 3339, spaced for people). Instants it cannot
/// show (past the year 9999) are given in seconds.
pub fn utc(unix: u64) -> String {
    let mut out = String::new();
    match UNIX_EPOCH.checked_add(Duration::from_secs(unix)) {
        Some(t) if write!(out, "{}", humantime::format_rfc3339_seconds(t)).is_ok() => {
            out.replace('T', " ").replace('Z', " UTC")
        }
        _ => format!("{unix} seconds after 1970-01-01 UTC"),
    }
}

/// A wait in words: "45 seconds", "4 minutes", "2 hours", "3 days".
pub fn wait(seconds: u64) -> String {
    fn plural(n: u64, unit: &str) -> String {
        if n == 1 {
            format!("1 {unit}")
        } else {
            format!("{n} {unit}s")
        }
    }
    match seconds {
        0..=59 => plural(seconds.max(1), "second"),
        60..=3599 => plural(seconds.div_ceil(60), "minute"),
        3600..=172_799 => plural(seconds.div_ceil(3600), "hour"),
        _ => plural(seconds.div_ceil(86_400), "day"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_known_instants() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(super::utc(1_795_352_709), "2026-11-22 13:05:09 UTC");
        assert_eq!(super::utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(
            super::utc(u64::MAX),
            "18446744073709551615 seconds after 1970-01-01 UTC"
        );
        assert_eq!(
            super::utc(253_402_300_800),
            "253402300800 seconds after 1970-01-01 UTC"
        );
    }

    #[test]
    fn waits_round_up() {
        assert_eq!(super::wait(0), "1 second");
        assert_eq!(super::wait(30), "30 seconds");
        assert_eq!(super::wait(61), "2 minutes");
        assert_eq!(super::wait(3600), "1 hour");
        assert_eq!(super::wait(7201), "3 hours");
    }
}
