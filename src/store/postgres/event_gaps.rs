//! Gaps in the event log's sequence, and when a reader may pass them.
//!
//! `lifecycle_events.seq` is drawn when a row is inserted, not when its transaction
//! commits, so at any moment the visible seqs can have gaps: numbers drawn by
//! transactions still in progress (they will appear), rolled back (they never will) or
//! purged. A reader that moved its cursor past a gap of the first kind would never see
//! that event. Since every writer holds its transaction id before it draws a seq
//! (migration 0018), the writer of a gap below a visible row is in progress in the
//! reader's snapshot; once every transaction in progress then has ended, the gap is
//! final. So a page is cut at its first gap unless no transaction was in progress, or
//! all of them end within [`WRITER_WAIT`] (then the page is read again up to the same
//! row). Transactions of the log are short (one claim, completion or batch), so the
//! wait is usually a millisecond or two; a long writing transaction holds readers at
//! the gap until it ends.

use std::time::Duration;

/// How long one page read waits for the writers in progress to end before it returns
/// the part of the page below the first gap.
pub(super) const WRITER_WAIT: Duration = Duration::from_millis(200);

/// The index of the first row that does not follow its predecessor (the first one
/// follows `after`), if any: the rows before it are gap-free.
pub(super) fn first_gap(after: i64, seqs: impl IntoIterator<Item = i64>) -> Option<usize> {
    let mut prev = after;
    for (i, seq) in seqs.into_iter().enumerate() {
        if seq != prev.saturating_add(1) {
            return Some(i);
        }
        prev = seq;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::first_gap;

    #[test]
    fn the_first_gap_is_found_after_the_cursor_and_between_rows() {
        assert_eq!(first_gap(0, [1, 2, 3]), None);
        assert_eq!(first_gap(0, []), None);
        assert_eq!(first_gap(0, [2, 3]), Some(0));
        assert_eq!(first_gap(4, [5, 6, 8, 9]), Some(2));
    }
}
