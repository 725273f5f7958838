//! Colours for attributions, one scale for the report and the page: blue for what speaks for
//! the explained class, red for what speaks against it, intensity relative to the row's
//! largest magnitude over real tokens ([CLS]/[SEP] are not compared, so they do not set it).

/// Background colour of a unit with attribution `score` in a row whose largest |score| is
/// `scale`: transparent at 0, full colour at ±scale.
pub fn colour(score: f32, scale: f32) -> String {
    let strength = if scale > 0.0 && score.is_finite() {
        (score.abs() / scale).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let (r, g, b) = if score >= 0.0 { (37, 99, 235) } else { (220, 38, 38) };
    format!("rgba({r}, {g}, {b}, {:.3})", strength * 0.85)
}

/// The largest |score| among the non-special units (what 100% colour means in a row).
pub fn row_scale(scores: impl IntoIterator<Item = (f32, bool)>) -> f32 {
    scores
        .into_iter()
        .filter(|&(s, special)| !special && s.is_finite())
        .fold(0.0, |m, (s, _)| m.max(s.abs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_picks_the_hue_and_magnitude_the_strength() {
        assert_eq!(colour(1.0, 2.0), "rgba(37, 99, 235, 0.425)");
        assert_eq!(colour(-2.0, 2.0), "rgba(220, 38, 38, 0.850)");
        assert_eq!(colour(-5.0, 2.0), "rgba(220, 38, 38, 0.850)");
        assert_eq!(colour(0.3, 0.0), "rgba(37, 99, 235, 0.000)");
        assert_eq!(colour(f32::NAN, 1.0), "rgba(220, 38, 38, 0.000)");
        assert_eq!(row_scale([(0.5, false), (-3.0, false), (100.0, true)]), 3.0);
    }
}
