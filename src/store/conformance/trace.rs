//! `jobmesh trace export` reads every backend the same way: a retried job, a job whose
//! lease was lost and a job that never ran become the same trace records everywhere.

use super::*;
use crate::predict::trace::TraceOutcome;
use crate::predict::trace::export::{ExportOptions, export};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// One record per attempt, a lost lease as a `lost` attempt, each attempt available
/// from when the record says (creation, the retry's `run_at`, the rescue), sorted by
/// finish time; a job that never ran has no record, and `since` leaves old jobs out.
pub async fn trace_export_covers_every_attempt(s: &dyn Store) {
    let never = NewJob {
        queue: "elsewhere".into(),
        ..job("never")
    };
    let ids = ids(s, vec![job("a"), job("b"), never], T0).await;
    let (a, b) = (ids[0], ids[1]);
    let first = claim(s, 2, T0.plus(secs(1))).await;
    assert_eq!(first.len(), 2);
    let ca = first.iter().find(|c| c.job.id == a).unwrap();
    let retry_at = T0.plus(secs(5));
    let failed = done(
        ca,
        Outcome::Retry {
            error: "connection refused: 10.0.0.7:25".into(),
            run_at: retry_at,
        },
        T0.plus(secs(2)),
    );
    s.complete(vec![failed]).await.unwrap();
    s.promote_due(retry_at).await.unwrap();
    let again = claim(s, 1, T0.plus(secs(6))).await;
    assert_eq!(again[0].job.id, a);
    s.complete(vec![ok(&again[0], T0.plus(secs(7)))])
        .await
        .unwrap();
    // b's lease (30 s from T0 + 1 s) lapses; the rescue takes it back.
    let rescued = s.rescue_expired(T0.plus(secs(32))).await.unwrap();
    assert_eq!(rescued.len(), 1);
    let last = claim(s, 2, T0.plus(secs(40))).await;
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].job.id, b);
    s.complete(vec![ok(&last[0], T0.plus(secs(41)))])
        .await
        .unwrap();

    let recs = export(s, ExportOptions::default()).await.unwrap();
    let got: Vec<(i64, u32, TraceOutcome, i64, i64)> = recs
        .iter()
        .map(|r| (r.job, r.attempt, r.outcome, r.enqueued_at, r.finished_at))
        .collect();
    let ms = |d| T0.plus(secs(d)).0;
    assert_eq!(
        got,
        vec![
            (a.0, 1, TraceOutcome::Failed, T0.0, ms(2)),
            (a.0, 2, TraceOutcome::Succeeded, ms(5), ms(7)),
            (b.0, 1, TraceOutcome::Lost, T0.0, ms(32)),
            (b.0, 2, TraceOutcome::Succeeded, ms(32), ms(41)),
        ],
        "{recs:#?}"
    );
    assert_eq!(recs[0].error_class.as_deref(), Some("connection_refused"));
    assert!(recs.iter().all(|r| r.node == "n1" && r.queue == "default"));
    assert_eq!(
        recs[2].started_at,
        ms(1),
        "a lost attempt started at its claim"
    );
    assert_eq!(recs[0].kind, "a");
    assert!(recs[0].payload_bytes > 0);
    for r in &recs {
        r.check().unwrap();
    }
    let none = export(
        s,
        ExportOptions {
            since: Some(T0.plus(secs(1))),
            max_jobs: 10,
        },
    )
    .await
    .unwrap();
    assert!(none.is_empty(), "{none:?}");
    let one = export(
        s,
        ExportOptions {
            since: None,
            max_jobs: 1,
        },
    )
    .await
    .unwrap();
    assert_eq!(one.len(), 2, "only the first job's attempts");
}
