//! `list_jobs` on Postgres: one statement for most filters, and for a payload match a
//! probe, then the GIN index only where the probe shows the match is rare.
//!
//! Why two steps: how many rows match `payload @> $1` is unknown to the planner (the
//! statistics of a jsonb column say nothing about one path's values), and the two good
//! plans are far apart. A common value (half the jobs, or one in a hundred) is found
//! fastest by walking the listing's own order and filtering, which stops at the page's
//! last match; a rare value (one job in ten thousand, or none) makes that walk read the
//! whole table, and is found fastest from the GIN index `jobs_payload` (migration
//! 0014), which reads the matching rows only but must sort them, so it costs as much as
//! there are matches past the cursor. The probe walks at most [`probe_rows`] rows in
//! order and stops at a full page: the common case costs that walk. Only when it
//! walked all those rows and found fewer than a page, which bounds the density near the
//! cursor, is the page read through the index, with ordered index scans and sequential
//! scans turned off for that one transaction so that the planner cannot walk the table
//! instead (its estimate for `@>` is a constant, blind to the value).

use sqlx::postgres::PgRow;
use sqlx::{Postgres, QueryBuilder, Row};

use super::PostgresStore;
use super::filter::{order_by, push_conditions, push_keyset, push_page};
use super::rows::{self, job_columns};
use crate::job::Job;
use crate::store::filter::{JobFilter, PayloadMatch};
use crate::store::{StoreError, skip_undecodable};

/// Most rows a probe walks.
const MAX_PROBE_ROWS: i64 = 20_000;
/// Rows a probe walks per job asked for.
const PROBE_ROWS_PER_JOB: i64 = 200;

/// How many rows, in the listing's order, a probe for a page of `limit` walks before
/// the index is asked instead: 200 per job asked, at most 20,000 (a page of 100). A
/// match on one row in 100 then fills its page within the walk with a wide margin, and
/// a sparser one costs the walk plus the index.
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
    /// The verdict on a probe that found `found` matches for a page of `limit`, and
    /// reached the last row of its window (`window_walked`) or not.
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
            Some(m) => match self.probe(filter, m).await? {
                (Probe::Answers, rows) => rows,
                (Probe::Sparse, _) => self.through_index(filter).await?,
            },
        };
        let mut jobs = skip_undecodable("jobs", rows.iter().map(rows::job_named));
        self.fill_parents(jobs.iter_mut().collect()).await?;
        Ok(jobs)
    }

    /// Every condition in one statement.
    async fn plain(&self, filter: &JobFilter) -> Result<Vec<PgRow>, StoreError> {
        let mut b = QueryBuilder::<Postgres>::new(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE true"
        ));
        push_conditions(&mut b, filter, &filter.state_names());
        push_page(&mut b, filter);
        Ok(b.build().fetch_all(&self.pool).await?)
    }

    /// Walks at most [`probe_rows`] rows past the cursor that meet every other
    /// condition, in the listing's order, and returns the matching ones (at most a page)
    /// with the verdict. The walk is lazy, so it stops at the page's last match; it
    /// numbers the rows it walks, and the last row of its window comes back too (as a
    /// marker, dropped here), which tells a walk that ran out of window from one that ran
    /// out of rows. One statement, so the marker and the rows are of one snapshot.
    async fn probe(
        &self,
        filter: &JobFilter,
        m: &PayloadMatch,
    ) -> Result<(Probe, Vec<PgRow>), StoreError> {
        let window = probe_rows(filter.limit);
        let others = JobFilter {
            payload: None,
            ..filter.clone()
        };
        // Innermost, the walk (only the key and whether the payload matches, so that
        // the numbering copies little); then its rows numbered, kept if they match or
        // end the window, in order, a page at most (the order is the walk's, so every
        // step streams and the walk stops at the page's last match); then the jobs.
        let mut b = QueryBuilder::<Postgres>::new(concat!(
            "SELECT ",
            job_columns!(),
            ", hit, walked FROM (SELECT id, hit, walked FROM (SELECT id, finished_at, hit, \
             row_number() OVER ("
        ));
        b.push(order_by(filter));
        b.push(") AS walked FROM (SELECT id, finished_at, payload @> ");
        b.push_bind(m.containment());
        b.push("::jsonb AS hit FROM jobs WHERE true");
        push_conditions(&mut b, &others, &filter.state_names());
        push_keyset(&mut b, filter);
        b.push(order_by(filter));
        b.push(" LIMIT ");
        b.push_bind(window);
        b.push(") AS walk) AS numbered WHERE hit OR walked = ");
        b.push_bind(window);
        b.push(order_by(filter));
        b.push(" LIMIT ");
        b.push_bind(i64::from(filter.limit));
        b.push(") AS probe JOIN jobs USING (id)");
        b.push(order_by(filter));
        let rows = b.build().fetch_all(&self.pool).await?;
        let mut window_walked = false;
        let mut found = Vec::with_capacity(rows.len());
        for r in rows {
            window_walked |= r.try_get::<i64, _>("walked")? == window;
            if r.try_get::<Option<bool>, _>("hit")? == Some(true) {
                found.push(r);
            }
        }
        let verdict = Probe::of(found.len(), filter.limit, window_walked);
        Ok((verdict, found))
    }

    /// The page read through the indexes only (bitmap scans: the GIN index on payload,
    /// alone or combined with another), never by walking an index in order, for a match
    /// a probe found rare. Index and sequential scans are off for this transaction only.
    async fn through_index(&self, filter: &JobFilter) -> Result<Vec<PgRow>, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "SELECT set_config('enable_indexscan', 'off', true), \
                    set_config('enable_seqscan', 'off', true)",
        )
        .execute(&mut *tx)
        .await?;
        let mut b = QueryBuilder::<Postgres>::new(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE true"
        ));
        push_conditions(&mut b, filter, &filter.state_names());
        push_page(&mut b, filter);
        let rows = b.build().fetch_all(&mut *tx).await?;
        tx.commit().await?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_answers_when_full_or_exhausted() {
        assert_eq!(probe_rows(100), 20_000);
        assert_eq!(probe_rows(1), 200);
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
