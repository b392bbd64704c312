//! Batching under contention. Members of one consumer group write the same Delta tables; a
//! commit that loses a race with another member's is planned and written again on the new
//! version, so racing members spend their CPU on work that is thrown away. While commits
//! keep losing, a member writes less often and in larger batches: races get rarer and each
//! commit carries more records. It steps back once its commits stop losing.

use std::time::{Duration, Instant};

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

    /// When a batch started at `started` is written: `configured` later, stretched while
    /// contended, but no later than `configured` after the source last delivered something
    /// (`last_item`): a stretched batch is for a busy source, and a caught-up run ends once
    /// its last batch is written.
    pub fn flush_deadline(
        self,
        started: Instant,
        last_item: Instant,
        configured: Duration,
    ) -> Instant {
        (started + self.batch_interval(configured)).min(last_item + configured)
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
    fn a_stretched_batch_is_still_written_soon_after_the_source_goes_quiet() {
        let base = Duration::from_millis(500);
        let started = Instant::now();
        let contended = Contention::default().after_batch(1).after_batch(1);
        let busy = started + Duration::from_secs(1);
        assert_eq!(contended.flush_deadline(started, busy, base), busy + base);
        let quiet = started + Duration::from_millis(100);
        assert_eq!(contended.flush_deadline(started, quiet, base), quiet + base);
        let streaming = started + Duration::from_secs(10);
        assert_eq!(
            contended.flush_deadline(started, streaming, base),
            started + base * 4
        );
        let calm = Contention::default();
        assert_eq!(calm.flush_deadline(started, busy, base), started + base);
    }

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
