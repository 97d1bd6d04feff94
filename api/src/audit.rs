//! The audit log from the API's side: refusals recorded as refusals.
//!
//! A mutating route runs its checks (scope, queue, that the job exists and is visible)
//! through [`checked`]: a 403 or 404 among them is written to the audit log with result
//! `refused` and the reason, naming the caller's token, and the request changes nothing.
//! When the checks pass, the caller's [`AuditContext`] goes into the store method, which
//! writes the row of the change in its own transaction (and the refusals it decides
//! itself, such as a job deleted since the check). Bad input (400) is answered without a
//! row: it names no target the log could show. A request without a valid token (401)
//! never reaches a route, so it writes nothing.

use jobmesh::clock::{Clock, SystemClock};
use jobmesh::store::AuditContext;
use jobmesh::store::audit::{AuditAction, AuditTarget};

use crate::auth::Caller;
use crate::problem::{Problem, ProblemKind};
use crate::state::AppState;

/// Whether a refusal is one the audit log keeps: the caller may not (403), or the
/// target does not exist (404).
fn is_recorded(p: &Problem) -> bool {
    matches!(p.status, 403 | 404)
}

/// Records `problem` as the refusal of `caller`'s `action` on `target`, if it is one
/// the log keeps and the caller has an identity; returns it for the answer. A failure
/// to record is logged, never turned into a success or another answer.
pub async fn refused(
    state: &AppState,
    caller: &Caller,
    action: AuditAction,
    target: &AuditTarget,
    problem: Problem,
) -> Problem {
    if !is_recorded(&problem) {
        return problem;
    }
    let Some(ctx) = caller.audit_context() else {
        return problem;
    };
    if let Err(e) = state
        .store
        .record_refusal(&ctx, action, target, &problem.detail, SystemClock.now())
        .await
    {
        tracing::warn!(error = %e, action = %action, "recording a refusal in the audit log failed");
    }
    problem
}

/// Runs the `checks` of `caller`'s `action` on `target`. A refusal among them is
/// recorded ([`refused`]); when they pass, the caller's context for the store call and
/// what the checks returned.
pub async fn checked<T>(
    state: &AppState,
    caller: &Caller,
    action: AuditAction,
    target: &AuditTarget,
    checks: impl Future<Output = Result<T, Problem>>,
) -> Result<(AuditContext, T), Problem> {
    match checks.await {
        Ok(t) => match caller.audit_context() {
            Some(ctx) => Ok((ctx, t)),
            // Only an anonymous reader has no context, and no mutating scope either.
            None => Err(Problem::new(
                ProblemKind::Forbidden,
                "changes need a token (anonymous access is read-only)",
            )),
        },
        Err(p) => Err(refused(state, caller, action, target, p).await),
    }
}
