//! What the SQL backends (SQLite, Postgres) share beyond their SQL: the stored names of
//! states and parent-failure policies, and folding the rows they read into the model
//! (counts by queue and state, parents by child, the job named in a decode error). The
//! SQL that reads the rows stays in each backend; what the rows mean is decided here.

use std::collections::{BTreeMap, HashMap};

use super::{Counts, RescuedJob, StoreError, Undecodable};
use crate::job::{Job, JobId, JobState, ParentFailurePolicy};

/// The progress columns of a row (`progress`, `progress_message`, `progress_at`): a
/// report when the fraction and its time are there (a message alone means nothing).
pub(crate) fn progress(
    fraction: Option<f64>,
    message: Option<String>,
    at: Option<i64>,
) -> Option<crate::job::Progress> {
    Some(crate::job::Progress {
        fraction: fraction?,
        message: message.unwrap_or_default(),
        at: crate::clock::Millis(at?),
    })
}

/// A stored snooze count (never negative; a negative one reads as 0).
pub(crate) fn snoozes(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

/// Parses a stored state name.
pub(crate) fn state(text: &str) -> Result<JobState, StoreError> {
    text.parse()
        .map_err(|e: String| StoreError::Corrupt(format!("jobs.state: {e}")))
}

/// The stored name of a parent-failure policy.
pub(crate) fn policy_name(p: ParentFailurePolicy) -> &'static str {
    match p {
        ParentFailurePolicy::Discard => "discard",
        ParentFailurePolicy::Hold => "hold",
    }
}

/// Parses a stored parent-failure policy name.
pub(crate) fn policy(name: &str) -> Result<ParentFailurePolicy, StoreError> {
    match name {
        "hold" => Ok(ParentFailurePolicy::Hold),
        "discard" => Ok(ParentFailurePolicy::Discard),
        other => Err(StoreError::Corrupt(format!(
            "jobs.on_parent_failure: unknown policy `{other}`"
        ))),
    }
}

/// A decode error of job `id`'s row, with the job named (listings log it when they
/// leave the row out; `get_job` returns it).
pub(crate) fn job_named(id: i64, e: &StoreError) -> StoreError {
    StoreError::Corrupt(format!("job {id}: {}", Undecodable::reason_of(e)))
}

/// [`Counts`] from `(queue, state, count)` rows; a row whose state this version does
/// not know is left out with a warning rather than failing the counts.
pub(crate) fn counts(rows: impl IntoIterator<Item = (String, String, i64)>) -> Counts {
    let rows = rows
        .into_iter()
        .map(|(queue, s, n)| Ok((queue, state(&s)?, n)));
    let mut counts: Counts = BTreeMap::new();
    for (queue, state, n) in super::skip_undecodable("counts", rows) {
        counts
            .entry(queue)
            .or_default()
            .insert(state, n.max(0) as u64);
    }
    counts
}

/// Sets each job's `depends_on` from `(child, parent)` rows ordered by child, then
/// parent (a job without rows has no parents).
pub(crate) fn attach_parents(jobs: &mut [&mut Job], links: Vec<(i64, i64)>) {
    let mut by_child: HashMap<i64, Vec<JobId>> = HashMap::new();
    for (child, parent) in links {
        by_child.entry(child).or_default().push(JobId(parent));
    }
    for j in jobs {
        j.depends_on = by_child.remove(&j.id.0).unwrap_or_default();
    }
}

/// A job taken back from a lost lease, from the `(id, attempt, state)` the take-back
/// statement returned.
pub(crate) fn rescued(id: i64, attempt: i64, s: &str) -> Result<RescuedJob, StoreError> {
    Ok(RescuedJob {
        id: JobId(id),
        attempt: u32::try_from(attempt.max(0)).unwrap_or(u32::MAX),
        state: state(s)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_ones_are_corrupt() {
        for p in [ParentFailurePolicy::Hold, ParentFailurePolicy::Discard] {
            assert_eq!(policy(policy_name(p)).unwrap(), p);
        }
        assert!(matches!(policy("later"), Err(StoreError::Corrupt(m)) if m.contains("`later`")));
        assert_eq!(state("running").unwrap(), JobState::Running);
        assert!(matches!(state("odd"), Err(StoreError::Corrupt(m)) if m.contains("jobs.state")));
    }

    #[test]
    fn counts_leave_out_unknown_states() {
        let c = counts([
            ("q".to_string(), "available".to_string(), 3),
            ("q".to_string(), "bogus".to_string(), 9),
        ]);
        assert_eq!(c["q"].get(&JobState::Available), Some(&3));
        assert_eq!(c["q"].len(), 1);
    }
}
