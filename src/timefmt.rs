//! Unix seconds → readable UTC, and "in 4 minutes", without a date crate.

/// `2026-11-22 13:05:09 UTC`
pub fn utc(unix: u64) -> String {
    let days = i64::try_from(unix / 86_400).unwrap_or(i64::MAX / 2);
    let secs = unix % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
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
