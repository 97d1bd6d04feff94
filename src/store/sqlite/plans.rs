//! The plans SQLite chooses for the statements whose cost must not grow with the
//! backlog (see the module notes on indexes named in statements): each reads its
//! partial index, never every job of a state through `jobs_state_id`, and the claim's
//! pick reads each queue's first jobs in index order instead of sorting them all.

use super::SqliteStore;
use super::{claim, history, rescue, retention, schedule};

/// The `detail` lines of `EXPLAIN QUERY PLAN` for `sql` on a new store (no
/// statistics, as on every store nobody ran `ANALYZE` on).
async fn plan(store: &SqliteStore, sql: &str) -> Vec<String> {
    let rows: Vec<(i64, i64, i64, String)> =
        sqlx::query_as(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
            .fetch_all(&store.write)
            .await
            .unwrap_or_else(|e| panic!("cannot plan {sql}: {e}"));
    rows.into_iter().map(|(_, _, _, detail)| detail).collect()
}

async fn new_store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("plans.db"))
        .await
        .unwrap();
    (dir, store)
}

#[tokio::test]
async fn the_claim_pick_reads_each_queue_in_index_order() {
    let (_dir, store) = new_store().await;
    let lines = plan(&store, claim::PICK).await;
    let text = lines.join("\n");
    // Per queue, a correlated read of jobs_claim by queue that stops at the limit...
    let per_queue = lines
        .iter()
        .position(|l| l.starts_with("CORRELATED LIST SUBQUERY"))
        .unwrap_or_else(|| panic!("no per-queue subquery in the plan:\n{text}"));
    let read = lines.get(per_queue + 1).map_or("", String::as_str);
    assert!(
        read.starts_with("SEARCH jobs USING") && read.ends_with("INDEX jobs_claim (queue=?)"),
        "{text}"
    );
    // ...and one sort, of at most the limit per queue (the subquery sorts nothing).
    let sorts = lines
        .iter()
        .filter(|l| l.contains("TEMP B-TREE FOR ORDER BY"));
    assert_eq!(sorts.count(), 1, "{text}");
    assert!(!text.contains("jobs_state_id"), "{text}");
}

#[tokio::test]
async fn due_jobs_leases_and_finished_jobs_are_found_through_their_partial_indexes() {
    let (_dir, store) = new_store().await;
    let cases = [
        (schedule::PROMOTE_DUE, "jobs_due"),
        (schedule::EARLIEST_DUE, "jobs_due"),
        (rescue::TAKE_BACK_EXPIRED, "jobs_lease_expiry"),
        (rescue::TAKE_BACK_REVOKED, "jobs_lease_node"),
        (retention::DUE_FINISHED, "jobs_finished"),
        (retention::DUE_DEAD, "jobs_dead"),
        (history::FINISHED_SLICES, "jobs_finished"),
        (history::FINISHED_SLICES, "jobs_dead"),
    ];
    for (sql, index) in cases {
        let lines = plan(&store, sql).await;
        let text = lines.join("\n");
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("SEARCH jobs USING") && l.contains(index)),
            "{index} not read by:\n{sql}\nplan:\n{text}"
        );
        assert!(!text.contains("jobs_state_id"), "{sql}\n{text}");
        assert!(!text.contains("SCAN jobs"), "{sql}\n{text}");
    }
}
