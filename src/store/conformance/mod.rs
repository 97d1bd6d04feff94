//! A backend-agnostic conformance suite for [`Store`]: every backend runs the same
//! cases (see [`crate::store_conformance_tests`]). Each case takes a fresh, empty store
//! and panics with a message naming the broken rule.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::{CancelOutcome, EnqueueOutcome, JobFilter, Redrive, Store};
use crate::clock::Millis;
use crate::event::{EventKind, LifecycleEvent};
use crate::job::{
    ClaimRequest, ClaimedJob, Completion, CompletionResult, JobId, JobState, NewJob, NodeId,
    Outcome, ParentFailurePolicy, WorkerId,
};

/// The time every case starts at.
pub const T0: Millis = Millis(1_700_000_000_000);

mod admin;
mod audit;
mod bulk;
mod claim;
mod complete;
mod enqueue;
mod history;
mod hostile;
mod insights;
mod limits;
mod models;
mod pages;
mod periodic;
mod presence;
mod queues;
mod running;
mod schedules;
mod tokens;
mod trace;

pub use admin::*;
pub use audit::*;
pub use bulk::*;
pub use claim::*;
pub use complete::*;
pub use enqueue::*;
pub use history::*;
pub use hostile::*;
pub use insights::*;
pub use limits::*;
pub use models::*;
pub use pages::*;
pub use periodic::*;
pub use presence::*;
pub use queues::*;
pub use running::*;
pub use schedules::*;
pub use tokens::*;
pub use trace::*;

/// The node itself as the actor of a change, for cases not about the audit log.
pub fn sys() -> crate::store::AuditContext {
    crate::store::AuditContext::system()
}

const LEASE: Duration = Duration::from_secs(30);

fn job(kind: &str) -> NewJob {
    NewJob::new(kind, json!({"k": kind}))
}

/// A claim by node `node` (worker `<node>/w0`) of up to `limit` jobs of the `default`
/// queue, with 30 s leases. Shared with the backends' own suites.
pub fn request(node: &str, limit: u32, now: Millis) -> ClaimRequest {
    ClaimRequest {
        queues: vec!["default".into()],
        worker: WorkerId(format!("{node}/w0")),
        node: NodeId(node.into()),
        limit,
        lease_for: LEASE,
        now,
    }
}

async fn claim(s: &dyn Store, limit: u32, now: Millis) -> Vec<ClaimedJob> {
    s.claim(&request("n1", limit, now)).await.expect("claim")
}

/// The attempt of claim `c`, started and finished at `at`, ending with `outcome`.
pub fn done(c: &ClaimedJob, outcome: Outcome, at: Millis) -> Completion {
    Completion {
        lease: c.lease.clone(),
        outcome,
        started_at: at,
        finished_at: at,
    }
}

/// The attempt of claim `c`, succeeded at `at` (output `{"ok": true}`).
pub fn ok(c: &ClaimedJob, at: Millis) -> Completion {
    done(
        c,
        Outcome::Succeeded {
            output: Some(json!({"ok": true})),
        },
        at,
    )
}

async fn ids(s: &dyn Store, jobs: Vec<NewJob>, now: Millis) -> Vec<JobId> {
    s.enqueue(jobs, now)
        .await
        .expect("enqueue")
        .into_iter()
        .map(|o| o.id())
        .collect()
}

async fn state(s: &dyn Store, id: JobId) -> JobState {
    s.get_job(id)
        .await
        .expect("get_job")
        .unwrap_or_else(|| panic!("job {id} vanished"))
        .state
}

async fn event_kinds(s: &dyn Store, id: JobId) -> Vec<EventKind> {
    s.events_after(0, 100_000)
        .await
        .expect("events")
        .into_iter()
        .filter(|e| e.event.job == Some(id))
        .map(|e| e.event.kind)
        .collect()
}

/// Expands to one `#[tokio::test]` per conformance case, each with a fresh store from
/// `$make` (an async fn returning `SharedStore`). With a second argument (an async fn
/// returning a fresh `SharedStore` and a [`conformance::Spoil`](crate::store::conformance::Spoil)
/// for it), also the cases that need rows planted by raw SQL.
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:path, $spoilable:path) => {
        $crate::store_conformance_tests!($make);
        #[tokio::test]
        async fn undecodable_row_fails_only_its_job() {
            let (store, spoil) = $spoilable().await;
            $crate::store::conformance::undecodable_row_fails_only_its_job(&*store, &spoil).await;
        }
        #[tokio::test]
        async fn undecodable_event_does_not_end_a_page() {
            let (store, spoil) = $spoilable().await;
            $crate::store::conformance::undecodable_event_does_not_end_a_page(&*store, &spoil)
                .await;
        }
    };
    ($make:path) => {
        $crate::store_conformance_tests!(@cases $make;
            claim_order, claim_sets_lease, delayed_jobs, success_and_exactly_once, first_report_of_a_lease_wins,
            stale_lease_is_refused_after_rescue, retry_cycle, dead_letter_and_redrive, cancel, unique_keys,
            dependencies_release_on_success, dependencies_by_batch_index, unknown_parent_stores_nothing,
            dependencies_parent_failure, revoke_node_and_expiry, extend_leases, release_unstarted,
            retention_and_leader_lease, listing_and_events, hostile_input_is_refused,
            nul_in_results_is_scrubbed, api_tokens, idempotent_answers, paused_queue_is_not_claimed,
            pause_is_per_queue, attempts_and_timeline, queue_activity,
            finished_window_matches_a_recount,
            member_events_are_the_newest_window,
            periodic_tick_enqueues_once, periodic_marks_are_per_schedule,
            periodic_hostile_input_stores_nothing,
            schedules_create_pause_resume_delete, trigger_enqueues_one_job_outside_the_ticks,
            config_sync_replaces_the_config_set, schedule_hostile_input_stores_nothing,
            schedule_count_is_bounded,
            audit_log_lists_newest_first_with_filters,
            audit_rows_are_purged_after_their_retention, operator_actions_write_audit_rows,
            refused_input_writes_no_audit_row,
            filters_narrow_listings,
            finish_timings_are_the_last_attempts, workflow_links_from_either_end,
            dead_letters_group_by_reason_shape, counts_stop_past_the_cap,
            throughput_counts_by_enqueue_and_finish_time, counts_follow_every_change,
            incidents_count_rescues_crashes_restarts_and_evictions,
            keyset_pages_cover_every_job_once, bulk_actions_by_ids_and_filter,
            bulk_by_filter_covers_every_match_in_batches,
            progress_is_recorded_under_the_lease, stale_progress_is_refused,
            snooze_gives_the_attempt_back, finished_pages_go_by_finish_time,
            payload_pages_at_every_density,
            limits_are_stored_and_bad_sets_refused, max_running_holds_per_queue,
            max_running_per_key, kind_limit_spans_queues,
            slots_come_back_with_every_way_out_of_running, rate_limits_claims_per_key,
            one_key_does_not_starve_the_others,
            trace_export_covers_every_attempt,
            models_are_saved_per_node, models_hostile_input_stores_nothing,
            saved_models_are_purged_after_their_retention,
            presence_serves_queues_and_lapses);
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn concurrent_claimers() {
            $crate::store::conformance::concurrent_claimers($make().await).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn concurrent_claimers_of_several_queues() {
            $crate::store::conformance::concurrent_claimers_of_several_queues($make().await)
                .await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn concurrent_claimers_never_exceed_a_limit() {
            $crate::store::conformance::concurrent_claimers_never_exceed_a_limit($make().await)
                .await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn concurrent_tick_enqueues() {
            $crate::store::conformance::concurrent_tick_enqueues($make().await).await;
        }
    };
    (@cases $make:path; $($case:ident),*) => {
        $(
            #[tokio::test]
            async fn $case() {
                let store = $make().await;
                $crate::store::conformance::$case(&*store).await;
            }
        )*
    };
}
