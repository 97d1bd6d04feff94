//! [`Insights`] on SQLite: reads only, on the reader pool, each served by an index
//! (named at each statement).

use async_trait::async_trait;
use sqlx::{QueryBuilder, Sqlite};

use super::SqliteStore;
use super::rows::to_json;
use crate::clock::Millis;
use crate::job::{JobId, JobState};
use crate::store::incidents::{IncidentRow, incident_kinds_sql};
use crate::store::insights::{
    DeadLetterGroups, FinishTiming, GroupRow, Insights, JobBrief, Link, MAX_COUNT, MAX_GROUPS,
    MAX_LINKS, check_slices, groups_of,
};
use crate::store::throughput::{Counted, ThroughputRow, check_window, merge};
use crate::store::{JobFilter, StoreError, skip_undecodable};

fn ids_json(jobs: &[JobId]) -> String {
    to_json(&jobs.iter().map(|j| j.0).collect::<Vec<_>>())
}

#[async_trait]
impl Insights for SqliteStore {
    async fn finish_timings(
        &self,
        slices: &[(Millis, Millis)],
        per_slice: u32,
    ) -> Result<Vec<FinishTiming>, StoreError> {
        check_slices(slices, per_slice)?;
        if slices.is_empty() || per_slice == 0 {
            return Ok(Vec::new());
        }
        // Each slice: the first `per_slice` entries of jobs_finished_id (finished_at, id)
        // WHERE finished_at IS NOT NULL (migration 0013) in its range; then each job's
        // last execution by job_executions_job (job), whose entries carry the rowid.
        let mut b = QueryBuilder::<Sqlite>::new(
            "SELECT j.id, j.finished_at,
                    CASE WHEN e.attempt = j.attempt AND e.started_at >= j.run_at
                         THEN e.started_at - j.run_at END,
                    e.finished_at - e.started_at
             FROM (",
        );
        for (i, (from, to)) in slices.iter().enumerate() {
            if i > 0 {
                b.push(" UNION ALL ");
            }
            b.push(
                "SELECT * FROM (SELECT id AS sid FROM jobs
                 WHERE finished_at IS NOT NULL AND finished_at >= ",
            );
            b.push_bind(from.0);
            b.push(" AND finished_at < ");
            b.push_bind(to.0);
            b.push(" ORDER BY finished_at, id LIMIT ");
            b.push_bind(i64::from(per_slice));
            b.push(")");
        }
        b.push(
            ") s JOIN jobs j ON j.id = s.sid
             JOIN job_executions e ON e.id = (SELECT max(x.id) FROM job_executions x WHERE x.job = j.id)
             ORDER BY j.finished_at, j.id",
        );
        let rows: Vec<(i64, i64, Option<i64>, Option<i64>)> =
            b.build_query_as().fetch_all(&self.read).await?;
        Ok(rows
            .into_iter()
            .map(|(job, finished_at, wait_ms, run_ms)| FinishTiming {
                job: JobId(job),
                finished_at: Millis(finished_at),
                wait_ms,
                run_ms,
            })
            .collect())
    }

    async fn links_of(&self, jobs: &[JobId], limit: u32) -> Result<Vec<Link>, StoreError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        // The primary key (parent, child) for one side, job_dependencies_child (child,
        // parent) for the other.
        let rows: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT parent, child FROM job_dependencies WHERE parent IN (SELECT value FROM json_each(?1))
             UNION
             SELECT parent, child FROM job_dependencies WHERE child IN (SELECT value FROM json_each(?1))
             LIMIT ?2",
        )
        .bind(ids_json(jobs))
        .bind(i64::from(limit.min(MAX_LINKS)))
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(p, c)| Link {
                parent: JobId(p),
                child: JobId(c),
            })
            .collect())
    }

    async fn job_briefs(&self, jobs: &[JobId]) -> Result<Vec<JobBrief>, StoreError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<(i64, String, String, String)> = sqlx::query_as(
            "SELECT id, queue, kind, state FROM jobs
             WHERE id IN (SELECT value FROM json_each(?1)) ORDER BY id",
        )
        .bind(ids_json(jobs))
        .fetch_all(&self.read)
        .await?;
        Ok(skip_undecodable(
            "job briefs",
            rows.into_iter().map(|(id, queue, kind, state)| {
                Ok(JobBrief {
                    id: JobId(id),
                    queue,
                    kind,
                    state: state
                        .parse::<JobState>()
                        .map_err(|e| StoreError::Corrupt(format!("jobs.state: {e}")))?,
                })
            }),
        ))
    }

    async fn dead_letter_groups(&self, limit: u32) -> Result<DeadLetterGroups, StoreError> {
        // dead_letter_groups (queue, reason_shape, discarded_at) (migration 0015): the
        // grouping reads the index alone; the window functions count every group
        // before the limit cuts them.
        let rows: Vec<GroupRow> = sqlx::query_as(
            "SELECT queue, reason_shape, count(*) AS n, min(discarded_at), max(discarded_at), max(job),
                    count(*) OVER (), sum(count(*)) OVER ()
             FROM dead_letter_queue GROUP BY queue, reason_shape
             ORDER BY n DESC, queue, reason_shape LIMIT ?1",
        )
        .bind(i64::from(limit.min(MAX_GROUPS)))
        .fetch_all(&self.read)
        .await?;
        Ok(groups_of(rows))
    }

    async fn count_jobs(
        &self,
        filter: &JobFilter,
        states: &[&str],
        cap: u64,
    ) -> Result<u64, StoreError> {
        let most = cap.min(MAX_COUNT) + 1;
        if super::filter::names_only(filter) {
            // By queues, kind and states alone: the counts the triggers of migration
            // 0016 keep (`job_counts`, a row per queue, kind and state), exact and
            // without reading a job.
            let mut b =
                QueryBuilder::<Sqlite>::new("SELECT coalesce(sum(n), 0) FROM job_counts WHERE 1");
            super::filter::push_names(&mut b, filter, states);
            let n: i64 = b.build_query_scalar().fetch_one(&self.read).await?;
            return Ok((n.max(0) as u64).min(most));
        }
        let mut b = QueryBuilder::<Sqlite>::new("SELECT count(*) FROM (SELECT 1 FROM jobs WHERE 1");
        super::filter::push_conditions(&mut b, filter, states);
        b.push(" LIMIT ");
        b.push_bind(most as i64);
        b.push(")");
        let n: i64 = b.build_query_scalar().fetch_one(&self.read).await?;
        Ok(n.max(0) as u64)
    }

    async fn throughput(
        &self,
        from: Millis,
        to: Millis,
        interval_ms: i64,
    ) -> Result<Vec<ThroughputRow>, StoreError> {
        check_window(from, to, interval_ms)?;
        // Each part a grouped count from one index alone (migration 0016): jobs_created
        // (created_at, queue); jobs_finished (finished_at, state, queue) and jobs_dead
        // (finished_at, queue), whose partial predicates are repeated word for word.
        // INDEXED BY: the planner could otherwise prefer jobs_state_id for the state
        // terms and visit every succeeded job; with it, a missing index fails the
        // statement instead of walking the table.
        let rows: Vec<(i64, String, String, i64)> = sqlx::query_as(
            "SELECT (created_at - ?1) / ?3, queue, ?4, count(*) FROM jobs INDEXED BY jobs_created
             WHERE created_at >= ?1 AND created_at < ?2 GROUP BY 1, 2
             UNION ALL
             SELECT (finished_at - ?1) / ?3, queue, ?5, count(*) FROM jobs INDEXED BY jobs_finished
             WHERE state IN ('succeeded', 'cancelled') AND finished_at >= ?1 AND finished_at < ?2
                   AND state = 'succeeded' GROUP BY 1, 2
             UNION ALL
             SELECT (finished_at - ?1) / ?3, queue, ?6, count(*) FROM jobs INDEXED BY jobs_dead
             WHERE state = 'discarded' AND finished_at >= ?1 AND finished_at < ?2 GROUP BY 1, 2",
        )
        .bind(from.0)
        .bind(to.0)
        .bind(interval_ms)
        .bind(Counted::Enqueued.tag())
        .bind(Counted::Succeeded.tag())
        .bind(Counted::Failed.tag())
        .fetch_all(&self.read)
        .await?;
        Ok(merge(rows, from, interval_ms))
    }

    async fn incidents(
        &self,
        from: Millis,
        to: Millis,
        interval_ms: i64,
    ) -> Result<Vec<IncidentRow>, StoreError> {
        check_window(from, to, interval_ms)?;
        // One grouped count over the partial index of incident events (migration
        // 0020), whose predicate is repeated word for word.
        let rows: Vec<(i64, String, i64)> = sqlx::query_as(concat!(
            "SELECT (at - ?1) / ?3, kind, count(*) FROM lifecycle_events INDEXED BY lifecycle_events_incidents WHERE ",
            incident_kinds_sql!(),
            " AND at >= ?1 AND at < ?2 GROUP BY 1, 2"
        ))
        .bind(from.0)
        .bind(to.0)
        .bind(interval_ms)
        .fetch_all(&self.read)
        .await?;
        Ok(crate::store::incidents::merge(rows, from, interval_ms))
    }
}
