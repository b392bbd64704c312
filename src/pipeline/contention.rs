//! Batching under contention. Members of one consumer group write the same Delta tables; a
//! commit that loses a race with another member's is planned and written again on the new
//! version, so racing members spend their CPU on work that is thrown away. While commits
//! keep losing, a member writes less often and in larger batches: races get rarer and each
//! commit carries more records. It steps back once its commits stop losing.

use std::time::Duration;

/// Doublings of the batch interval at most: up to 8x (4 s with the default 500 ms).
const MAX_LEVEL: u32 = 3;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Contention {
    level: u32,
}

impl Contention {
    /// One step up after a batch with a lost race, one step down after a batch without.
    pub fn after_batch(self, lost_races: usize) -> Contention {
        let level = match lost_races {
            0 => self.level.saturating_sub(1),
            _ => (self.level + 1).min(MAX_LEVEL),
        };
        Contention { level }
    }

    pub fn batch_interval(self, configured: Duration) -> Duration {
        configured * 2u32.pow(self.level)
    }

    /// Whether batches grow up to `max_batch_size`, as when the source is ahead.
    pub fn is_contended(self) -> bool {
        self.level > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_races_stretch_the_interval_up_to_eight_times_and_clean_batches_shrink_it() {
        let base = Duration::from_millis(500);
        let mut contention = Contention::default();
        assert_eq!(contention.batch_interval(base), base);
        assert!(!contention.is_contended());
        for expected in [2, 4, 8, 8] {
            contention = contention.after_batch(2);
            assert_eq!(contention.batch_interval(base), base * expected);
        }
        assert!(contention.is_contended());
        contention = contention.after_batch(0);
        assert_eq!(contention.batch_interval(base), base * 4);
        for _ in 0..3 {
            contention = contention.after_batch(0);
        }
        assert_eq!(contention, Contention::default());
    }
}
