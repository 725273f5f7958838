//! The time of day as a name for run directories and lock files (UTC, no time-zone data).

/// `YYYY-MM-DDTHH-MM-SS` in UTC, safe in a file name.
pub fn timestamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format_utc(secs)
}

/// Civil date and time of `secs` since 1970-01-01 UTC (Howard Hinnant's algorithm).
fn format_utc(secs: u64) -> String {
    let (days, rem) = (secs / 86400, secs % 86400);
    let z = days as i64 + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}-{:02}-{:02}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_match_known_instants() {
        assert_eq!(super::format_utc(0), "1970-01-01T00-00-00");
        // 2024-02-29T12:34:56Z (a leap day), from `date -u -d @1709210096`.
        assert_eq!(super::format_utc(1_709_210_096), "2024-02-29T12-34-56");
    }
}
