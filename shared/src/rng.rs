//! The one random number generator Astrid's own code draws from.

/// SplitMix64: a small, well-known generator whose output is fixed by its seed on every
/// platform and version, so a split (and the generated corpus) is reproducible forever.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

/// The step between SplitMix64's states.
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output function of a state.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GAMMA);
        mix(self.0)
    }

    /// The draw `i` places ahead (0: what `next_u64` gives next), without drawing: a draw is a
    /// function of its position, so many can be made at once, on several threads.
    pub fn peek(&self, i: u64) -> u64 {
        mix(self.0.wrapping_add(i.wrapping_add(1).wrapping_mul(GAMMA)))
    }

    /// Moves past `n` draws, as `n` calls of `next_u64` would.
    pub fn skip(&mut self, n: u64) {
        self.0 = self.0.wrapping_add(n.wrapping_mul(GAMMA));
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }

    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Peeking and skipping agree with drawing one by one; the first draws of seed 0 are the
    /// reference implementation's (Vigna's splitmix64.c).
    #[test]
    fn peeking_and_skipping_agree_with_drawing() {
        let mut drawn = SplitMix64::new(0);
        assert_eq!(drawn.clone().next_u64(), 0xE220_A839_7B1D_CDAF);
        let start = drawn.clone();
        let draws: Vec<u64> = (0..1000).map(|_| drawn.next_u64()).collect();
        for (i, &draw) in draws.iter().enumerate() {
            assert_eq!(start.peek(i as u64), draw, "draw {i}");
        }
        let mut skipped = start.clone();
        skipped.skip(1000);
        assert_eq!(skipped.next_u64(), drawn.next_u64());
    }
}
