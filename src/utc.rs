//! UTC timestamps in RFC 3339 (`2026-12-07T21:19:23Z`), for log lines and the status file,
//! formatted here from Unix time: the daemon's one place that turns seconds into a civil date
//! (the simulator, which stands in for UFM and shares no code with the daemon, has its own).

use std::time::{SystemTime, UNIX_EPOCH};

/// A Unix time as UTC, `2025-01-31T12:00:00Z` (fractions of a second dropped).
pub(crate) fn utc(seconds: f64) -> String {
    let secs = seconds.floor() as i64;
    let days = secs.div_euclid(86_400);
    let rest = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
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
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The current Unix time in whole seconds.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The current time as UTC.
pub(crate) fn now() -> String {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    utc(seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formats_unix_time() {
        assert_eq!(utc(0.0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400.5), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_700_000_000.0), "2023-11-14T22:13:20Z");
        assert_eq!(utc(1_796_678_363.0), "2026-12-07T21:19:23Z");
    }
}
