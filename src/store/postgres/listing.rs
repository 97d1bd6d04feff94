//! `list_jobs` on Postgres: one statement for most filters, and for a payload match a
//! probe, then the GIN index only where the probe shows the match is rare.
//!
//! Why two steps: how many rows match `payload @> $1` is unknown to the planner (the
//! statistics of a jsonb column say nothing about one path's values), and the two good
//! plans are far apart. A common value (half the jobs, or one in a hundred) is found
//! fastest by walking the listing's own order and filtering, which stops at the page's
//! last match; a rare value (one job in ten thousand, or none) makes that walk read the
//! whole table, and is found fastest from the GIN index `jobs_payload` (created by
//! operators who search payloads: see migration 0014), which reads the matching rows
//! only but must sort them, so it costs as much as
//! there are matches past the cursor. The probe walks at most [`probe_rows`] rows in
//! order and stops at a full page: the common case costs that walk. When it found fewer
//! than a page, a count of the rows it could walk (without the payload, so often from
//! an index alone) tells whether it ran out of rows (the page is complete) or out of
//! window; only then, the density near the cursor being known to be low, is the page
//! read through the index, with ordered index scans and sequential scans turned off for
//! that one transaction so that the planner cannot walk the table instead (its
//! estimate for `@>` is a constant, blind to the value).

use sqlx::postgres::PgRow;
use sqlx::{Postgres, QueryBuilder};

use super::PostgresStore;
use super::filter::{order_by, push_conditions, push_keyset, push_page};
use super::rows::{self, job_columns};
use crate::job::Job;
use crate::store::filter::{JobFilter, PayloadMatch};
use crate::store::{StoreError, skip_undecodable};

/// Most rows a probe walks.
const MAX_PROBE_ROWS: i64 = 20_000;
/// Rows a probe walks per job asked for.
const PROBE_ROWS_PER_JOB: i64 = 100;

/// How many rows, in the listing's order, a probe for a page of `limit` walks before
/// the index is asked instead: 100 per job asked (a page of 100: 10,000 rows), at most
/// 20,000. Measured at a million jobs, a walked row costs about a quarter of a match
/// read through the index (a heap page visited out of order), so the walk is the
/// cheaper way down to about one match in a hundred rows, and the index below.
pub(super) fn probe_rows(limit: u32) -> i64 {
    (i64::from(limit) * PROBE_ROWS_PER_JOB).min(MAX_PROBE_ROWS)
}

/// What a probe tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Probe {
    /// Its matches are the page: it found a full page, or walked every row left.
    Answers,
    /// It walked its whole window and found fewer than a page: read the index.
    Sparse,
}

impl Probe {
    /// The verdict on a walk that found `found` matches for a page of `limit`, and had
    /// a whole window of rows to walk (`window_walked`) or fewer.
    pub(super) fn of(found: usize, limit: u32, window_walked: bool) -> Probe {
        if found >= limit as usize || !window_walked {
            Probe::Answers
        } else {
            Probe::Sparse
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

    /// A page of a payload match: the walk, then (when it found less than a page) how
    /// far it got, then (when it got to the end of its window) the index. One read-only
    /// transaction at `REPEATABLE READ`, so that every step reads one snapshot: a walk
    /// and a count that disagreed could end a listing early.
    async fn by_payload(
        &self,
        filter: &JobFilter,
        m: &PayloadMatch,
    ) -> Result<Vec<PgRow>, StoreError> {
        let window = probe_rows(filter.limit);
        let others = JobFilter {
            payload: None,
            ..filter.clone()
        };
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await?;

        // The walk: lazy, so it stops at the page's last match, and narrow (the key and
        // whether the payload matches; the page's jobs are read by id after it).
        let mut b = select_jobs();
        b.push(" AND id IN (SELECT id FROM (SELECT id, finished_at, payload @> ");
        b.push_bind(m.containment());
        b.push("::jsonb AS hit FROM jobs WHERE true");
        push_conditions(&mut b, &others, &filter.state_names());
        push_keyset(&mut b, filter);
        b.push(order_by(filter));
        b.push(" LIMIT ");
        b.push_bind(window);
        b.push(") AS walk WHERE hit");
        b.push(order_by(filter));
        b.push(" LIMIT ");
        b.push_bind(i64::from(filter.limit));
        b.push(")");
        b.push(order_by(filter));
        let found = b.build().fetch_all(&mut *tx).await?;

        let walked = if found.len() >= filter.limit as usize {
            window
        } else {
            // How many rows the walk had: fewer than its window, and it saw them all.
            // Only the other conditions, so an index of (state, id) and the like can
            // answer it without the table.
            let mut b = QueryBuilder::<Postgres>::new(
                "SELECT count(*) FROM (SELECT 1 FROM jobs WHERE true",
            );
            push_conditions(&mut b, &others, &filter.state_names());
            push_keyset(&mut b, filter);
            b.push(order_by(filter));
            b.push(" LIMIT ");
            b.push_bind(window);
            b.push(") AS walk");
            b.build_query_scalar::<i64>().fetch_one(&mut *tx).await?
        };
        let rows = match Probe::of(found.len(), filter.limit, walked >= window) {
            Probe::Answers => found,
            Probe::Sparse => {
                // Bitmap scans only (the GIN index on payload, alone or combined with
                // another), never a walk in order: for this transaction only. Without
                // the index (it is opt-in, see migration 0014) the walk goes on instead.
                sqlx::query(
                    "SELECT set_config('enable_indexscan', s, true), \
                            set_config('enable_seqscan', s, true) \
                     FROM (SELECT CASE WHEN to_regclass('jobs_payload') IS NULL \
                                       THEN 'on' ELSE 'off' END AS s) AS indexed",
                )
                .execute(&mut *tx)
                .await?;
                let mut b = select_jobs();
                push_conditions(&mut b, filter, &filter.state_names());
                push_page(&mut b, filter);
                b.build().fetch_all(&mut *tx).await?
            }
        };
        tx.commit().await?;
        Ok(rows)
    }
}

/// `SELECT <the job columns> FROM jobs WHERE true`, for conditions to follow.
fn select_jobs() -> QueryBuilder<Postgres> {
    QueryBuilder::new(concat!("SELECT ", job_columns!(), " FROM jobs WHERE true"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_answers_when_full_or_exhausted() {
        assert_eq!(probe_rows(100), 10_000);
        assert_eq!(probe_rows(1), 100);
        assert_eq!(probe_rows(1000), MAX_PROBE_ROWS);
        // A full page, wherever the walk stopped.
        assert_eq!(Probe::of(100, 100, true), Probe::Answers);
        assert_eq!(Probe::of(100, 100, false), Probe::Answers);
        // Fewer than a page, but the rows ran out before the window.
        assert_eq!(Probe::of(3, 100, false), Probe::Answers);
        assert_eq!(Probe::of(0, 100, false), Probe::Answers);
        // Fewer than a page in a whole window: the rest may hold more.
        assert_eq!(Probe::of(99, 100, true), Probe::Sparse);
        assert_eq!(Probe::of(0, 100, true), Probe::Sparse);
    }
}
