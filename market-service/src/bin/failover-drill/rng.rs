//! A small seeded generator (SplitMix64) for the moment of each fault: a run is reproduced by
//! passing the seed it printed to `--seed`.

use std::time::Duration;

/// SplitMix64: tiny, fast and good enough to spread faults over a renew interval.
#[derive(Debug, Clone)]
pub(crate) struct Rng {
    state: u64,
}

impl Rng {
    /// A generator from `seed`.
    pub(crate) fn new(seed: u64) -> Rng {
        Rng { state: seed }
    }

    /// A seed from the clock, for runs without `--seed`.
    pub(crate) fn seed_from_time() -> u64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        // Mixed once so that seeds of runs started close together differ in every digit.
        Rng::new(now.as_nanos() as u64 ^ u64::from(std::process::id())).next_u64() >> 16
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A duration in `[0, bound)`, to the microsecond; zero when `bound` is zero.
    pub(crate) fn duration_below(&mut self, bound: Duration) -> Duration {
        let micros = bound.as_micros() as u64;
        if micros == 0 {
            return Duration::ZERO;
        }
        Duration::from_micros(self.next_u64() % micros)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_delays_within_the_bound() {
        let bound = Duration::from_millis(100);
        let first: Vec<Duration> = {
            let mut rng = Rng::new(42);
            (0..100).map(|_| rng.duration_below(bound)).collect()
        };
        let mut rng = Rng::new(42);
        let again: Vec<Duration> = (0..100).map(|_| rng.duration_below(bound)).collect();
        assert_eq!(first, again);
        assert!(first.iter().all(|d| *d < bound));
        // Spread over the interval, not stuck in one corner.
        assert!(first.iter().any(|d| *d < bound / 4));
        assert!(first.iter().any(|d| *d > bound * 3 / 4));
        assert_eq!(rng.duration_below(Duration::ZERO), Duration::ZERO);
    }
}
