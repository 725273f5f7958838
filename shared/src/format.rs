//! Numbers as the report, the command line and the page show them: one way everywhere.

/// "—" for a missing value, else the value with `digits` decimals.
pub fn optional(value: Option<f64>, digits: usize) -> String {
    value.map_or("—".into(), |v| format!("{v:.digits$}"))
}

/// A parameter count: "35k" below a million, "1.5M" from there.
pub fn params(count: u64) -> String {
    if count < 1_000_000 {
        format!("{:.0}k", count as f64 / 1e3)
    } else {
        format!("{:.1}M", count as f64 / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_missing_values() {
        assert_eq!(params(204_578), "205k");
        assert_eq!(params(109_483_778), "109.5M");
        assert_eq!(params(999_999), "1000k");
        assert_eq!(optional(None, 3), "—");
        assert_eq!(optional(Some(0.12345), 3), "0.123");
    }
}
