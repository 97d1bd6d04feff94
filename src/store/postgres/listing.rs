//! `list_jobs` on Postgres: one statement for most filters, and for a payload match a
//! probe, then the GIN index only where the probe shows the match is rare.
//!
//! Why a probe: how many rows match `payload @> $1` is unknown to the planner (the
//! statistics of a jsonb column say nothing about one path's values), and the two good
//! plans are far apart. A common value (half the jobs, or one in a hundred) is found
//! fastest by walking the listing's own order and filtering, which stops at the page's
//! last match; a rare value (one job in ten thousand, or none) makes that walk read the
//! whole table, and is found fastest from the GIN index `jobs_payload` (created by
//! operators who search payloads: see migration 0014), which reads the matching rows
//! only but must sort them, so it costs as much as there are matches past the cursor.
//!
//! The probe, a plain state machine ([`Step`]) applied by [`PostgresStore::by_payload`]:
//! 1. a sample: a walk of [`sample_rows`] rows in order, which stops at a full page;
//! 2. when the sample found so few matches that the whole window would not fill a
//!    quarter of a page, the value is rare here: straight to the count (4), skipping the
//!    window's walk, which for a rare value only cost time (issue 16: 26 of the 60 ms
//!    of a rare value within a finished range). Otherwise, for a walk by a queue or a
//!    kind, the tally (3); else the walk of the whole window ([`probe_rows`]), which
//!    stops at a full page;
//! 3. the tally, for a walk by a queue or a kind only: such a walk reads one heap page
//!    per row (the queue's rows are spread over the table), about twice what a bitmap
//!    read of the index pays per match, so where the value has few matches in the
//!    whole table (a customer's jobs, which all sit in one queue) the index is the
//!    cheaper way even at a density that would fill the page within the window. The
//!    tally counts the value's matches through the index, up to a quarter of the rows
//!    the walk would read ([`tally_cap`]); fewer: the index (5), else the window's walk
//!    (issue 16: a value of one in a hundred jobs of a queue, 115 ms at p95 by the
//!    walk, reads its 1000 matches twice in a few ms);
//! 4. when a walk found fewer than a page, a count of the rows it could walk (without
//!    the payload, so often from an index alone) tells whether it ran out of rows (the
//!    page is complete) or out of window;
//! 5. only then, the density near the cursor being known to be low, the page is read
//!    through the index, with ordered index scans and sequential scans turned off for
//!    that one transaction so that the planner cannot walk the table instead (its
//!    estimate for `@>` is a constant, blind to the value).
//!
//! Every statement of the probe is planned for its values (`plan_cache_mode =
//! force_custom_plan` for the transaction): a prepared statement run a sixth time may
//! get Postgres's generic plan, made without the values, and for the index read that
//! plan combined the GIN bitmap with one of every row past the cursor in the finished
//! range (200,000 entries, 54 ms, where the plan for the values reads the value's 1000
//! matches: issue 16, a payload match within a finished range at 95-118 ms p95).
//!
//! A walk with one queue (or else one kind) and no finished range goes by that
//! column's `(queue, id)` index (see [`WalkBy`]): its window counts rows of the
//! queue, so walking the primary key and filtering the queue read ten rows per row of
//! a queue of a tenth of the jobs.

use sqlx::postgres::PgRow;
use sqlx::{Postgres, QueryBuilder, Transaction};

use super::PostgresStore;
use super::filter::{order_by, push_conditions, push_keyset, push_page};
use super::rows::{self, job_columns};
use crate::job::Job;
use crate::store::filter::{JobFilter, Order, PayloadMatch, SortKey};
use crate::store::{StoreError, skip_undecodable};

/// Most rows a probe walks.
const MAX_PROBE_ROWS: i64 = 20_000;
/// Rows a probe walks per job asked for.
const PROBE_ROWS_PER_JOB: i64 = 100;
/// Rows a sample walks per job asked for.
const SAMPLE_ROWS_PER_JOB: i64 = 10;
/// Fewest rows a sample walks (unless the window is smaller).
const MIN_SAMPLE_ROWS: i64 = 1000;
/// Rows a walk by a queue or kind would read per match the tally may count: the index
/// way reads each match twice (the tally, then the page) at about half the cost of a
/// walked row, so a tally of a quarter of the walk's rows keeps it the cheaper way with
/// a margin, and a tally that runs out costs a small part of the walk after it.
const WALKED_ROWS_PER_TALLIED: i64 = 4;

/// How many rows, in the listing's order, a probe for a page of `limit` walks before
/// the index is asked instead: 100 per job asked (a page of 100: 10,000 rows), at most
/// 20,000. Measured at a million jobs, a walked row costs about a quarter of a match
/// read through the index (a heap page visited out of order), so the walk is the
/// cheaper way down to about one match in a hundred rows, and the index below.
pub(super) fn probe_rows(limit: u32) -> i64 {
    (i64::from(limit) * PROBE_ROWS_PER_JOB).min(MAX_PROBE_ROWS)
}

/// How many rows the sample walks first: 10 per job asked, at least 1000 (so that a
/// value as common as the window's threshold, one in a hundred, shows about ten
/// matches, and fewer than three about once in 400 samples), at most the window.
pub(super) fn sample_rows(limit: u32) -> i64 {
    (i64::from(limit) * SAMPLE_ROWS_PER_JOB)
        .max(MIN_SAMPLE_ROWS)
        .min(probe_rows(limit))
}

/// Most matches the tally counts before the walk is chosen, after a sample of `window`
/// rows (for a page of `limit`) that found `found` (at least one): a quarter of the
/// rows a walk would read at the sample's density to fill the page, at most the window.
pub(super) fn tally_cap(window: i64, found: usize, limit: u32) -> i64 {
    let found = (found as i64).max(1);
    let walk = (i64::from(limit) * window / found).min(probe_rows(limit));
    (walk / WALKED_ROWS_PER_TALLIED).max(1)
}

/// The next step of a payload page, from what the steps before it found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Walk this many rows in order.
    Walk(i64),
    /// Count the value's matches through the index, up to this many.
    Tally(i64),
    /// Count the rows a walk of this many could read: did it run out of rows?
    Count(i64),
    /// Read the page through the index.
    Index,
    /// The matches found are the page.
    Done,
}

impl Step {
    /// After a walk of `window` rows (for a page of `limit`) that found `found`;
    /// `scattered`: the walk goes by a queue or a kind (one heap page per row).
    pub(super) fn after_walk(window: i64, found: usize, limit: u32, scattered: bool) -> Step {
        let full = probe_rows(limit);
        if found >= limit as usize {
            Step::Done
        } else if window >= full {
            Step::Count(window)
        } else if (found as i64) * full * 4 < i64::from(limit) * window {
            // At the sample's density the window would not fill a quarter of a page.
            Step::Count(window)
        } else if scattered {
            Step::Tally(tally_cap(window, found, limit))
        } else {
            Step::Walk(full)
        }
    }

    /// After a tally of up to `cap` that counted `seen` matches in the index (`None`:
    /// there is no index), for a page of `limit`.
    pub(super) fn after_tally(seen: Option<i64>, cap: i64, limit: u32) -> Step {
        match seen {
            Some(seen) if seen < cap => Step::Index,
            _ => Step::Walk(probe_rows(limit)),
        }
    }

    /// After a count that found `walked` of the `window` rows a walk could read.
    pub(super) fn after_count(window: i64, walked: i64) -> Step {
        if walked < window {
            Step::Done
        } else {
            Step::Index
        }
    }
}

/// The column a walk by id goes by, other than the primary key: the filter's one
/// queue, or else its one kind, whose `(column, id)` index (migration 0008) yields only
/// the rows the window counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WalkBy {
    /// `(queue, id)`.
    Queue,
    /// `(kind, id)`.
    Kind,
}

impl WalkBy {
    /// The column and its one value, for a walk by id of `filter`; `None`: the primary
    /// key (or, by finish time, `jobs_finished_id`).
    fn of(filter: &JobFilter) -> Option<(WalkBy, String)> {
        if filter.sort_key() != SortKey::Id {
            return None;
        }
        match (&filter.queues[..], &filter.kind) {
            ([queue], _) => Some((WalkBy::Queue, queue.clone())),
            (_, Some(kind)) => Some((WalkBy::Kind, kind.clone())),
            _ => None,
        }
    }

    /// The two halves of the condition on the column: `>= $1`, `<= $1`.
    fn range(self) -> [&'static str; 2] {
        match self {
            WalkBy::Queue => [" AND queue >= ", " AND queue <= "],
            WalkBy::Kind => [" AND kind >= ", " AND kind <= "],
        }
    }

    /// The walk's order: the column, then id.
    fn order_by(self, order: Order) -> &'static str {
        match (self, order) {
            (WalkBy::Queue, Order::Asc) => " ORDER BY queue, id",
            (WalkBy::Queue, Order::Desc) => " ORDER BY queue DESC, id DESC",
            (WalkBy::Kind, Order::Asc) => " ORDER BY kind, id",
            (WalkBy::Kind, Order::Desc) => " ORDER BY kind DESC, id DESC",
        }
    }

    /// `filter` without its condition on the column (the range replaces it).
    fn without(self, filter: &mut JobFilter) {
        match self {
            WalkBy::Queue => filter.queues.clear(),
            WalkBy::Kind => filter.kind = None,
        }
    }
}

impl PostgresStore {
    /// The jobs `filter` lists, a page in its order.
    pub(super) async fn list_page(&self, filter: &JobFilter) -> Result<Vec<Job>, StoreError> {
        let rows = match &filter.payload {
            None => self.plain(filter).await?,
            Some(m) => self.by_payload(filter, m).await?,
        };
        let mut jobs = skip_undecodable("jobs", rows.iter().map(rows::job_named));
        self.fill_parents(jobs.iter_mut().collect()).await?;
        Ok(jobs)
    }

    /// Every condition in one statement.
    async fn plain(&self, filter: &JobFilter) -> Result<Vec<PgRow>, StoreError> {
        let mut b = select_jobs();
        push_conditions(&mut b, filter, &filter.state_names());
        push_page(&mut b, filter);
        Ok(b.build().fetch_all(&self.pool).await?)
    }

    /// A page of a payload match, by the steps of [`Step`]. One read-only transaction
    /// at `REPEATABLE READ`, so that every step reads one snapshot: a walk and a count
    /// that disagreed could end a listing early. Each statement is planned for its
    /// values (see the module's documentation), in the same round trip as the `BEGIN`.
    async fn by_payload(
        &self,
        filter: &JobFilter,
        m: &PayloadMatch,
    ) -> Result<Vec<PgRow>, StoreError> {
        let mut tx = self
            .pool
            .begin_with(
                "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; \
                 SET LOCAL plan_cache_mode = force_custom_plan",
            )
            .await?;
        let scattered = WalkBy::of(filter).is_some();
        let mut found = Vec::new();
        let mut step = Step::Walk(sample_rows(filter.limit));
        let rows = loop {
            step = match step {
                Step::Walk(window) => {
                    found = walk(&mut tx, filter, m, window).await?;
                    Step::after_walk(window, found.len(), filter.limit, scattered)
                }
                Step::Tally(cap) => {
                    Step::after_tally(tally(&mut tx, m, cap).await?, cap, filter.limit)
                }
                Step::Count(window) => {
                    Step::after_count(window, count(&mut tx, filter, window).await?)
                }
                Step::Index => break by_index(&mut tx, filter).await?,
                Step::Done => break found,
            };
        };
        tx.commit().await?;
        Ok(rows)
    }
}

/// The walk: the first `limit` matches among the next `window` rows past the cursor
/// that meet the other conditions, in order. Lazy, so it stops at the page's last
/// match, and narrow (the key and whether the payload matches; the page's jobs are
/// read by id after it).
async fn walk(
    tx: &mut Transaction<'_, Postgres>,
    filter: &JobFilter,
    m: &PayloadMatch,
    window: i64,
) -> Result<Vec<PgRow>, StoreError> {
    let mut others = JobFilter {
        payload: None,
        ..filter.clone()
    };
    let mut b = select_jobs();
    b.push(" AND id IN (SELECT id FROM (SELECT id, queue, kind, finished_at, payload @> ");
    b.push_bind(m.containment());
    b.push("::jsonb AS hit FROM jobs WHERE true");
    // A walk by a queue (or kind) names the column first in its order, which only the
    // column's index yields without a sort: Postgres (15) would otherwise walk the
    // primary key and filter the queue, as its estimate of a queue's rows scattered
    // over the table makes the `(queue, id)` index look dearer than it is (issue 16: 65
    // ms at p95 for a queue of a tenth of the jobs). The value is written as a range of
    // one value (`>= $1 AND <= $1`, the same rows as `= $1` under the column's
    // deterministic collation), so that the planner cannot drop the column from the
    // order as a constant and take the primary key again.
    let walk_order = match WalkBy::of(filter) {
        None => order_by(filter),
        Some((by, value)) => {
            let [from, to] = by.range();
            b.push(from);
            b.push_bind(value.clone());
            b.push(to);
            b.push_bind(value);
            by.without(&mut others);
            by.order_by(filter.order)
        }
    };
    push_conditions(&mut b, &others, &filter.state_names());
    push_keyset(&mut b, filter);
    b.push(walk_order);
    b.push(" LIMIT ");
    b.push_bind(window);
    b.push(") AS walk WHERE hit");
    b.push(walk_order);
    b.push(" LIMIT ");
    b.push_bind(i64::from(filter.limit));
    b.push(")");
    b.push(order_by(filter));
    Ok(b.build().fetch_all(&mut **tx).await?)
}

/// How many of the next `window` rows past the cursor meet the other conditions: fewer
/// than `window`, and a walk of `window` saw them all. Only the other conditions, so
/// an index of (queue, id) and the like can answer it without the table.
async fn count(
    tx: &mut Transaction<'_, Postgres>,
    filter: &JobFilter,
    window: i64,
) -> Result<i64, StoreError> {
    let others = JobFilter {
        payload: None,
        ..filter.clone()
    };
    let mut b =
        QueryBuilder::<Postgres>::new("SELECT count(*) FROM (SELECT 1 FROM jobs WHERE true");
    push_conditions(&mut b, &others, &filter.state_names());
    push_keyset(&mut b, filter);
    b.push(order_by(filter));
    b.push(" LIMIT ");
    b.push_bind(window);
    b.push(") AS walk");
    Ok(b.build_query_scalar::<i64>().fetch_one(&mut **tx).await?)
}

/// How many jobs match `m` through the GIN index, counting up to `cap` (each a heap
/// page read in the table's order); `None` when there is no index (it is opt-in), and
/// then nothing is read: the sub-select is evaluated only in its branch.
async fn tally(
    tx: &mut Transaction<'_, Postgres>,
    m: &PayloadMatch,
    cap: i64,
) -> Result<Option<i64>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT CASE WHEN to_regclass('jobs_payload') IS NULL THEN NULL \
                ELSE (SELECT count(*) FROM (SELECT 1 FROM jobs WHERE payload @> $1::jsonb \
                                            LIMIT $2) AS matches) END",
    )
    .bind(m.containment())
    .bind(cap)
    .fetch_one(&mut **tx)
    .await?)
}

/// The page through the GIN index: bitmap scans only (the index on payload, alone or
/// combined with another), never a walk in order, for this transaction only. Without
/// the index (it is opt-in, see migration 0014) the planner's own choice, which walks on.
async fn by_index(
    tx: &mut Transaction<'_, Postgres>,
    filter: &JobFilter,
) -> Result<Vec<PgRow>, StoreError> {
    sqlx::query(
        "SELECT set_config('enable_indexscan', s, true), \
                set_config('enable_seqscan', s, true) \
         FROM (SELECT CASE WHEN to_regclass('jobs_payload') IS NULL \
                           THEN 'on' ELSE 'off' END AS s) AS indexed",
    )
    .execute(&mut **tx)
    .await?;
    let mut b = select_jobs();
    push_conditions(&mut b, filter, &filter.state_names());
    push_page(&mut b, filter);
    Ok(b.build().fetch_all(&mut **tx).await?)
}

/// `SELECT <the job columns> FROM jobs WHERE true`, for conditions to follow.
fn select_jobs() -> QueryBuilder<Postgres> {
    QueryBuilder::new(concat!("SELECT ", job_columns!(), " FROM jobs WHERE true"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_grow_with_the_page_within_bounds() {
        assert_eq!(probe_rows(100), 10_000);
        assert_eq!(probe_rows(1), 100);
        assert_eq!(probe_rows(1000), MAX_PROBE_ROWS);
        assert_eq!(sample_rows(100), 1000);
        assert_eq!(sample_rows(500), 5000);
        assert_eq!(sample_rows(1000), 10_000);
        // Never past the window: a page of 2 walks its 200 rows at once.
        assert_eq!(sample_rows(2), 200);
    }

    #[test]
    fn a_probe_walks_on_only_where_the_sample_leaves_it_unsure() {
        let (sample, full) = (sample_rows(100), probe_rows(100));
        for scattered in [false, true] {
            // A full page, wherever the walk stopped.
            assert_eq!(Step::after_walk(sample, 100, 100, scattered), Step::Done);
            assert_eq!(Step::after_walk(full, 100, 100, scattered), Step::Done);
            // Fewer than a quarter of a page in the window at the sample's density.
            assert_eq!(
                Step::after_walk(sample, 2, 100, scattered),
                Step::Count(sample)
            );
            assert_eq!(
                Step::after_walk(sample, 0, 100, scattered),
                Step::Count(sample)
            );
            // The whole window walked and fewer than a page: did the rows run out?
            assert_eq!(
                Step::after_walk(full, 99, 100, scattered),
                Step::Count(full)
            );
            assert_eq!(Step::after_walk(full, 0, 100, scattered), Step::Count(full));
            // A sample that is the window (small pages) is the walk.
            assert_eq!(Step::after_walk(200, 1, 2, scattered), Step::Count(200));
        }
        // A sample at one in a hundred (the window's threshold): walk the window by the
        // primary key or the finish time, whose rows lie together in the table.
        assert_eq!(Step::after_walk(sample, 10, 100, false), Step::Walk(full));
        assert_eq!(Step::after_walk(sample, 3, 100, false), Step::Walk(full));
        // The rows ran out: the matches are the page; else the index.
        assert_eq!(Step::after_count(full, 9_999), Step::Done);
        assert_eq!(Step::after_count(full, 0), Step::Done);
        assert_eq!(Step::after_count(full, full), Step::Index);
        assert_eq!(Step::after_count(sample, sample), Step::Index);
    }

    #[test]
    fn a_walk_by_a_queue_tallies_the_index_before_it_walks_on() {
        let (sample, full) = (sample_rows(100), probe_rows(100));
        // One match in a hundred rows of the queue: the walk would read 10,000 rows,
        // so the tally counts up to 2500 matches; one in 300: the window, 10,000.
        assert_eq!(Step::after_walk(sample, 10, 100, true), Step::Tally(2500));
        assert_eq!(Step::after_walk(sample, 3, 100, true), Step::Tally(2500));
        // One in 50: the walk would stop after about 5000 rows.
        assert_eq!(Step::after_walk(sample, 20, 100, true), Step::Tally(1250));
        assert_eq!(tally_cap(sample, 50, 100), 500);
        // Fewer matches in the whole index than the cap: read the page through it.
        assert_eq!(Step::after_tally(Some(1000), 2500, 100), Step::Index);
        assert_eq!(Step::after_tally(Some(0), 2500, 100), Step::Index);
        // The cap reached (the value is common elsewhere), or no index: walk on.
        assert_eq!(Step::after_tally(Some(2500), 2500, 100), Step::Walk(full));
        assert_eq!(Step::after_tally(None, 2500, 100), Step::Walk(full));
        // Small pages: the sample is the window, so no tally.
        assert_eq!(Step::after_walk(200, 1, 2, true), Step::Count(200));
    }
}
