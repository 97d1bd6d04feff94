//! Current job-state hashes: the state of each job as last reported, for dashboards and
//! the CLI, expiring `state_ttl` after the last update (Postgres keeps the history).

use super::{RedisDispatch, duration_ms};
use crate::job::{JobId, JobState};
use crate::store::StoreError;

impl RedisDispatch {
    /// Sets the current state of jobs (one pipeline); each hash expires `state_ttl`
    /// after this update.
    pub async fn set_state(&self, states: &[(JobId, JobState)]) -> Result<(), StoreError> {
        if states.is_empty() {
            return Ok(());
        }
        let ttl = duration_ms(self.config.state_ttl);
        let mut pipe = redis::pipe();
        for (id, state) in states {
            let key = self.keys.state(*id);
            pipe.cmd("HSET")
                .arg(&key)
                .arg("state")
                .arg(state.as_str())
                .ignore()
                .cmd("PEXPIRE")
                .arg(&key)
                .arg(ttl)
                .ignore();
        }
        pipe.query_async::<()>(&mut self.conn()).await?;
        Ok(())
    }

    /// The last state set for a job, `None` if none is known (never set, or expired).
    pub async fn get_state(&self, id: JobId) -> Result<Option<JobState>, StoreError> {
        let s: Option<String> = redis::cmd("HGET")
            .arg(self.keys.state(id))
            .arg("state")
            .query_async(&mut self.conn())
            .await?;
        s.map(|s| {
            s.parse()
                .map_err(|e| StoreError::Corrupt(format!("job {id} state: {e}")))
        })
        .transpose()
    }
}
