//! The leaf hashes this process committed lately, so the checkpointer need not read them back.
//!
//! The checkpointer reads every new event's leaf hash once a second. On SQLite that was a
//! fresh read of tens of thousands of rows a second (about 1.6 µs per call at 64 clients,
//! most of it a cold page cache). The writer already holds those hashes when its commit
//! returns, so it keeps them here, by seq, and the store answers from them when they
//! cover the range asked for from its start. Anything else — events another process
//! appended, a range older than what is kept, a gap — is read from the store as before.
//! The checkpointer then signs what this process wrote; an event edited in the file since
//! is what `remit audit verify` finds against that checkpoint.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

/// Most leaves kept (32 bytes and a seq each: 10 MiB); the oldest go first.
const KEPT: usize = 256 * 1024;

/// Leaf hashes committed by this process, in commit (and so seq) order.
#[derive(Debug, Default)]
pub(crate) struct RecentLeaves {
    leaves: Mutex<VecDeque<(u64, [u8; 32])>>,
}

impl RecentLeaves {
    /// Keeps the leaves of a committed batch: `hashes` got the seqs from `first_seq` on.
    pub(crate) fn committed(&self, first_seq: u64, hashes: impl Iterator<Item = [u8; 32]>) {
        let mut leaves = self.leaves.lock().unwrap_or_else(PoisonError::into_inner);
        // a batch that comes before what is kept (it cannot, commits are in seq order) would
        // break the order the lookups rely on: start again from it
        if leaves.back().is_some_and(|&(last, _)| last >= first_seq) {
            leaves.clear();
        }
        leaves.extend((first_seq..).zip(hashes));
        let over = leaves.len().saturating_sub(KEPT);
        leaves.drain(..over);
    }

    /// The leaves with seq in `start..end` as kept, if the first of them is `start`: the run
    /// up to the first gap. Leaves before `start` are dropped (the checkpointer is past them).
    pub(crate) fn from(&self, start: u64, end: u64) -> Option<Vec<(u64, [u8; 32])>> {
        let mut leaves = self.leaves.lock().unwrap_or_else(PoisonError::into_inner);
        let before = leaves.partition_point(|&(seq, _)| seq < start);
        leaves.drain(..before);
        if leaves.front().map(|&(seq, _)| seq) != Some(start) {
            return None;
        }
        // Copied in one allocation of the right size: the writer waits for this lock, and a
        // second's leaves collected one by one (about 2 MB, grown by doubling onto fresh
        // pages) held it long enough to show in profiles.
        let most = usize::try_from(end.saturating_sub(start))
            .map_or(leaves.len(), |n| n.min(leaves.len()));
        let len = gapless(&leaves, start, most);
        let (front, back) = leaves.as_slices();
        let mut run = Vec::with_capacity(len);
        run.extend_from_slice(front.get(..len).unwrap_or(front));
        run.extend_from_slice(back.get(..len - run.len()).unwrap_or_default());
        Some(run)
    }
}

/// How many of the first `most` leaves have the seqs `start`, `start + 1`, … with no gap.
///
/// Seqs only grow ([`RecentLeaves::committed`] starts again on one that does not), so the
/// leaves without a gap are a prefix, found by halving.
fn gapless(leaves: &VecDeque<(u64, [u8; 32])>, start: u64, most: usize) -> usize {
    // every leaf before `lo` is in the run, none from `hi` on
    let (mut lo, mut hi) = (0, most);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if leaves
            .get(mid)
            .is_some_and(|&(seq, _)| Some(seq) == start.checked_add(mid as u64))
        {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(n: u8) -> [u8; 32] {
        [n; 32]
    }

    #[test]
    fn a_range_kept_from_its_start_is_answered_up_to_its_end_or_the_first_gap() {
        let recent = RecentLeaves::default();
        recent.committed(10, [h(10), h(11), h(12)].into_iter());
        // another process wrote 13 and 14
        recent.committed(15, [h(15)].into_iter());
        assert_eq!(recent.from(10, 12), Some(vec![(10, h(10)), (11, h(11))]));
        assert_eq!(recent.from(12, 100), Some(vec![(12, h(12))]));
        // 13 is not kept: the store answers
        assert_eq!(recent.from(13, 100), None);
        assert_eq!(recent.from(15, 100), Some(vec![(15, h(15))]));
    }

    #[test]
    fn a_run_that_wraps_around_the_ring_is_answered_whole_and_in_order() {
        let recent = RecentLeaves::default();
        recent.committed(0, (0..8).map(h));
        assert_eq!(recent.from(6, 100).map(|run| run.len()), Some(2));
        // the next leaves land at the ring's start, before the two kept
        recent.committed(8, (8..12).map(h));
        let want = |seqs: std::ops::Range<u8>| seqs.map(|n| (u64::from(n), h(n))).collect();
        assert_eq!(recent.from(6, 100), Some(want(6..12)));
        assert_eq!(recent.from(6, 9), Some(want(6..9)));
        // a gap in the second part ends the run there
        recent.committed(14, [h(14)].into_iter());
        assert_eq!(recent.from(6, 100), Some(want(6..12)));
    }

    #[test]
    fn a_range_starting_before_what_is_kept_is_left_to_the_store() {
        let recent = RecentLeaves::default();
        recent.committed(5, [h(5), h(6)].into_iter());
        assert_eq!(recent.from(0, 100), None);
        assert_eq!(recent.from(4, 100), None);
        assert_eq!(recent.from(5, 100), Some(vec![(5, h(5)), (6, h(6))]));
        // asking from further on drops what came before
        assert_eq!(recent.from(6, 100), Some(vec![(6, h(6))]));
        assert_eq!(recent.from(5, 100), None);
    }

    #[test]
    fn only_the_latest_leaves_are_kept() {
        let recent = RecentLeaves::default();
        let n = KEPT as u64 + 10;
        recent.committed(0, (0..n).map(|i| h((i % 251) as u8)));
        assert_eq!(recent.from(0, n), None, "the oldest were dropped");
        let tail = recent.from(10, n).unwrap();
        assert_eq!(tail.len(), KEPT);
        assert_eq!(tail.last(), Some(&(n - 1, h(((n - 1) % 251) as u8))));
    }

    #[test]
    fn a_batch_out_of_order_restarts_what_is_kept() {
        let recent = RecentLeaves::default();
        recent.committed(10, [h(10), h(11)].into_iter());
        recent.committed(11, [h(99)].into_iter());
        assert_eq!(recent.from(10, 100), None);
        assert_eq!(recent.from(11, 100), Some(vec![(11, h(99))]));
    }
}
