//! Periodic schedules through the library: the config's set, and create, pause,
//! resume, delete, trigger and list, all kept in the store (see
//! [`jobmesh::store::PeriodicSchedules`]), so a change made on one node reaches the
//! leader of the `periodic` lease wherever it runs: at once when this node leads (its
//! task is poked), else within one renewal period of the lease (see the `periodic`
//! task's doc). The HTTP API calls the same store methods.

use std::collections::HashSet;

use jobmesh::periodic::{MAX_SCHEDULES, PeriodicJob};
use jobmesh::store::{AuditContext, ConfigSync, EnqueueOutcome, ScheduleOutcome, StoredSchedule};

use super::Node;
use crate::dispatcher::DispatchMsg;
use crate::error::NodeError;

impl Node {
    /// Checks a schedule as [`Node::submit`] checks jobs (name, schedule, policy, and
    /// its job against the registry), naming it in the refusal.
    fn check_periodic(&self, p: &PeriodicJob) -> Result<(), NodeError> {
        let refused = |why: String| {
            let name: String = p.name.chars().take(100).collect();
            NodeError::Options(format!("periodic job `{}`: {why}", name.escape_debug()))
        };
        p.check(self.ctx.now())
            .map_err(|e| refused(e.to_string()))?;
        self.ctx
            .registry
            .validate(&p.job)
            .map_err(|e| refused(e.to_string()))?;
        p.job.check_storable().map_err(refused)
    }

    /// Replaces the config-declared schedules (origin `config`) with `jobs`, in the
    /// store, for the whole cluster: whichever node holds the `periodic` leader lease
    /// enqueues their ticks, one job per tick. A name the API had taken is taken over;
    /// config schedules not in `jobs` are removed; pauses are kept (see
    /// [`jobmesh::store::periodic_schedules`]). Each is checked first; one bad
    /// schedule refuses the whole set, naming it, and the stored set stays. Every node
    /// of a cluster should be given the same set: the last one started wins.
    pub async fn set_periodic(&self, jobs: Vec<PeriodicJob>) -> Result<ConfigSync, NodeError> {
        if jobs.len() > MAX_SCHEDULES {
            return Err(NodeError::Options(format!(
                "{} periodic jobs; at most {MAX_SCHEDULES} are allowed",
                jobs.len()
            )));
        }
        let mut names = HashSet::new();
        for p in &jobs {
            self.check_periodic(p)?;
            if !names.insert(p.name.as_str()) {
                let name: String = p.name.chars().take(100).collect();
                return Err(NodeError::Options(format!(
                    "periodic job `{}`: two periodic jobs have this name",
                    name.escape_debug()
                )));
            }
        }
        let sync = self
            .ctx
            .store
            .sync_config_schedules(&jobs, self.ctx.now())
            .await?;
        for name in &sync.taken_over {
            tracing::warn!(schedule = %name, "the config declares a schedule the API had created: the config's definition replaces it");
        }
        self.periodic.notify_one();
        Ok(sync)
    }

    /// Every schedule in the store (both origins), by name.
    pub async fn periodic(&self) -> Result<Vec<StoredSchedule>, NodeError> {
        Ok(self.ctx.store.schedules().await?)
    }

    /// Creates a schedule (origin `api`) on behalf of `ctx`, paused if `paused`; its
    /// first tick is the first after now. Refused if the name is taken.
    pub async fn create_periodic(
        &self,
        ctx: &AuditContext,
        job: PeriodicJob,
        paused: bool,
    ) -> Result<ScheduleOutcome<StoredSchedule>, NodeError> {
        self.check_periodic(&job)?;
        let out = self
            .ctx
            .store
            .create_schedule(ctx, &job, paused, self.ctx.now())
            .await?;
        self.periodic.notify_one();
        Ok(out)
    }

    /// Pauses a schedule: no job for its ticks until it is resumed. `Done(changed)`.
    pub async fn pause_periodic(
        &self,
        ctx: &AuditContext,
        name: &str,
    ) -> Result<ScheduleOutcome<bool>, NodeError> {
        self.set_paused(ctx, name, true).await
    }

    /// Resumes a schedule; the ticks of the pause are passed over.
    pub async fn resume_periodic(
        &self,
        ctx: &AuditContext,
        name: &str,
    ) -> Result<ScheduleOutcome<bool>, NodeError> {
        self.set_paused(ctx, name, false).await
    }

    async fn set_paused(
        &self,
        ctx: &AuditContext,
        name: &str,
        paused: bool,
    ) -> Result<ScheduleOutcome<bool>, NodeError> {
        let out = self
            .ctx
            .store
            .set_schedule_paused(ctx, name, paused, self.ctx.now())
            .await?;
        self.periodic.notify_one();
        Ok(out)
    }

    /// Deletes a schedule created through the API or the library (a config schedule
    /// is refused: remove it from the config). Its jobs stay.
    pub async fn delete_periodic(
        &self,
        ctx: &AuditContext,
        name: &str,
    ) -> Result<ScheduleOutcome<()>, NodeError> {
        let out = self
            .ctx
            .store
            .delete_schedule(ctx, name, false, self.ctx.now())
            .await?;
        self.periodic.notify_one();
        Ok(out)
    }

    /// Enqueues one job of the schedule now (paused or not; its ticks are untouched).
    pub async fn trigger_periodic(
        &self,
        ctx: &AuditContext,
        name: &str,
    ) -> Result<ScheduleOutcome<EnqueueOutcome>, NodeError> {
        let out = self
            .ctx
            .store
            .trigger_schedule(ctx, name, self.ctx.now())
            .await?;
        self.dispatcher.cast(DispatchMsg::Wake).ok();
        Ok(out)
    }
}
