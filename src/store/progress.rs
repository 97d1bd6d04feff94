//! What every backend does the same way with progress reports
//! ([`super::JobQueue::record_progress`]): which reports of a batch it writes and what
//! each caller is answered.

use std::collections::{HashMap, HashSet};

use super::StoreError;
use crate::job::{JobId, LeaseToken, ProgressReport};

/// The reports of a batch a backend writes: each checked and cleaned
/// ([`crate::job::Progress::storable`]), the last one per (job, lease token) (a later
/// report of an attempt replaces an earlier one), in the order of their last
/// occurrence. A report with a bad fraction fails the batch with an error naming it.
pub(crate) fn storable_reports(
    reports: &[ProgressReport],
) -> Result<Vec<ProgressReport>, StoreError> {
    let mut last: HashMap<(JobId, LeaseToken), usize> = HashMap::with_capacity(reports.len());
    for (i, r) in reports.iter().enumerate() {
        r.progress.storable().map_err(|e| {
            StoreError::Invalid(format!("progress report {i} (job {}): {e}", r.lease.job))
        })?;
        last.insert((r.lease.job, r.lease.token), i);
    }
    let mut kept: Vec<usize> = last.into_values().collect();
    kept.sort_unstable();
    kept.into_iter()
        .map(|i| {
            let r = &reports[i];
            Ok(ProgressReport {
                lease: r.lease.clone(),
                progress: r
                    .progress
                    .storable()
                    .map_err(|e| StoreError::Invalid(e.to_string()))?,
            })
        })
        .collect()
}

/// The answer to each report of `reports`: whether its lease was current, given the
/// (job, token) pairs the backend wrote.
pub(crate) fn progress_results(
    reports: &[ProgressReport],
    applied: &HashSet<(JobId, LeaseToken)>,
) -> Vec<bool> {
    reports
        .iter()
        .map(|r| applied.contains(&(r.lease.job, r.lease.token)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Millis;
    use crate::job::{Lease, NodeId, Progress, WorkerId};

    fn report(job: i64, token: i64, fraction: f64) -> ProgressReport {
        ProgressReport {
            lease: Lease {
                job: JobId(job),
                token: LeaseToken(token),
                worker: WorkerId("w".into()),
                node: NodeId("n".into()),
                attempt: 1,
                expires_at: Millis(0),
            },
            progress: Progress {
                fraction,
                message: "a\nb".into(),
                at: Millis(0),
            },
        }
    }

    #[test]
    fn the_last_report_per_lease_is_kept_cleaned_and_bad_fractions_fail_the_batch() {
        let batch = [report(1, 1, 0.1), report(2, 1, 0.2), report(1, 1, 0.3)];
        let kept = storable_reports(&batch).unwrap();
        let got: Vec<(i64, f64)> = kept
            .iter()
            .map(|r| (r.lease.job.0, r.progress.fraction))
            .collect();
        assert_eq!(got, [(2, 0.2), (1, 0.3)]);
        assert_eq!(kept[0].progress.message, "a b");
        let e = storable_reports(&[report(1, 1, 0.5), report(7, 1, 2.0)]).unwrap_err();
        assert!(e.to_string().contains("progress report 1 (job 7)"), "{e}");
        let applied = HashSet::from([(JobId(1), LeaseToken(1))]);
        assert_eq!(progress_results(&batch, &applied), [true, false, true]);
    }
}
