//! Job states and which transitions between them are legal.

use serde::{Deserialize, Serialize};

/// Where a job is in its life.
///
/// ```text
/// waiting ──parents succeeded──▶ available
/// scheduled ──run_at reached──▶ available ──claim──▶ running
/// running ──ok──▶ succeeded
/// running ──error, attempts left──▶ retryable ──run_at──▶ available
/// running ──error, no attempts left──▶ discarded (dead-letter) ──redrive──▶ available
/// any unfinished ──cancel──▶ cancelled
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for its parents to succeed.
    Waiting,
    /// Due in the future (delayed).
    Scheduled,
    /// Ready to be claimed.
    Available,
    /// Leased to a worker.
    Running,
    /// Failed an attempt, will run again at `run_at`.
    Retryable,
    /// Finished successfully.
    Succeeded,
    /// Out of attempts or discarded: in the dead-letter queue.
    Discarded,
    /// Cancelled by a user.
    Cancelled,
}

impl JobState {
    /// All states, in display order.
    pub const ALL: [JobState; 8] = [
        JobState::Waiting,
        JobState::Scheduled,
        JobState::Available,
        JobState::Running,
        JobState::Retryable,
        JobState::Succeeded,
        JobState::Discarded,
        JobState::Cancelled,
    ];

    /// The lowercase name used in storage, the CLI and events.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Waiting => "waiting",
            JobState::Scheduled => "scheduled",
            JobState::Available => "available",
            JobState::Running => "running",
            JobState::Retryable => "retryable",
            JobState::Succeeded => "succeeded",
            JobState::Discarded => "discarded",
            JobState::Cancelled => "cancelled",
        }
    }

    /// A job in a final state never runs again (a discarded one only by redrive).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Discarded | JobState::Cancelled
        )
    }

    /// Whether `self -> to` is a legal transition.
    pub fn can_become(self, to: JobState) -> bool {
        use JobState::*;
        matches!(
            (self, to),
            (Waiting, Available | Discarded | Cancelled)
                | (Scheduled, Available | Cancelled)
                | (Available, Running | Cancelled)
                | (
                    Running,
                    Succeeded | Retryable | Discarded | Cancelled | Available
                )
                | (Retryable, Available | Cancelled)
                | (Discarded, Available)
        )
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for JobState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<_> = JobState::ALL.iter().map(|s| s.as_str()).collect();
                format!(
                    "unknown job state `{s}`; expected one of {}",
                    names.join(", ")
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_states_only_leave_by_redrive() {
        for from in JobState::ALL.into_iter().filter(|s| s.is_final()) {
            for to in JobState::ALL {
                let allowed = from == JobState::Discarded && to == JobState::Available;
                assert_eq!(from.can_become(to), allowed, "{from} -> {to}");
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for s in JobState::ALL {
            assert_eq!(s.as_str().parse::<JobState>().unwrap(), s);
        }
        let err = "runing".parse::<JobState>().unwrap_err();
        assert!(err.contains("unknown job state `runing`"), "{err}");
    }
}
