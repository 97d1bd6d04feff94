//! `[[periodic]]`: schedules declared in the config, typed as they are read (the
//! schedule parsed, the time zone looked up) and checked at load like a `jobmesh
//! submit` (kind known, payload within the kind's rules), every problem named by its
//! key (`periodic[2].schedule: ...`).
//!
//! ```toml
//! [[periodic]]
//! name = "cleanup"
//! schedule = "*/5 * * * *"        # or "every 30s"
//! timezone = "Europe/Berlin"      # default UTC
//! kind = "exec"
//! payload = { command = "cleanup" }
//! queue = "maintenance"           # default "default"
//! priority = 0
//! policy = "catch_up"             # or "skip" (default)
//! backfill = "1h"                 # catch_up only; default 1h
//! ```

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::Millis;
use crate::handler::{Registry, SubmitError};
use crate::job::{DEFAULT_MAX_ATTEMPTS, DEFAULT_QUEUE, NewJob, Priority};
use crate::periodic::{MAX_SCHEDULES, MissedTicks, PeriodicJob, Schedule, Tz, tz_name};

/// The backfill of `policy = "catch_up"` when none is given.
pub const DEFAULT_BACKFILL: Duration = Duration::from_secs(3600);

/// One `[[periodic]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeriodicEntry {
    /// Unique name across the cluster (the store keeps its ticks by it).
    pub name: String,
    /// A cron expression (`*/5 * * * *`, seconds optional as a sixth field first) or
    /// `every <duration>`.
    pub schedule: Schedule,
    /// The zone a cron expression is read in (IANA name); default UTC.
    #[serde(default = "utc", with = "tz_name")]
    pub timezone: Tz,
    /// The job's kind.
    pub kind: String,
    /// The job's payload; default `{}`.
    #[serde(default = "empty_object")]
    pub payload: serde_json::Value,
    /// The job's queue.
    #[serde(default = "default_queue")]
    pub queue: String,
    /// The job's priority.
    #[serde(default)]
    pub priority: Priority,
    /// Attempts before the job is dead-lettered.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// Per-attempt timeout; default the node's.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// Missed ticks: `skip` (default) or `catch_up`.
    #[serde(default)]
    pub policy: PolicyName,
    /// With `catch_up`: how far back missed ticks still run (default 1h, at most 7 days).
    #[serde(default, with = "humantime_serde")]
    pub backfill: Option<Duration>,
}

/// `policy` as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PolicyName {
    /// Only the latest missed tick runs.
    #[default]
    Skip,
    /// Missed ticks within `backfill` run.
    CatchUp,
}

fn utc() -> Tz {
    Tz::UTC
}

fn empty_object() -> serde_json::Value {
    serde_json::json!({})
}

fn default_queue() -> String {
    DEFAULT_QUEUE.to_string()
}

fn default_attempts() -> u32 {
    DEFAULT_MAX_ATTEMPTS
}

impl PeriodicEntry {
    /// The periodic job this entry declares.
    pub fn to_job(&self) -> PeriodicJob {
        let mut job = NewJob::new(self.kind.clone(), self.payload.clone());
        job.queue = self.queue.clone();
        job.priority = self.priority;
        job.max_attempts = self.max_attempts;
        job.timeout = self.timeout;
        PeriodicJob {
            name: self.name.clone(),
            schedule: self.schedule.clone(),
            timezone: self.timezone,
            policy: match self.policy {
                PolicyName::Skip => MissedTicks::Skip,
                PolicyName::CatchUp => MissedTicks::CatchUp {
                    backfill: self.backfill.unwrap_or(DEFAULT_BACKFILL),
                },
            },
            job,
        }
    }
}

/// Every problem of the `[[periodic]]` entries, as (key, message). `registry` checks
/// kinds and payloads as a submit would; `None` (the `[kinds]` rules themselves are
/// refused, reported on their own) leaves that out. `now` is when the schedules must
/// still tick after.
pub(super) fn problems(
    entries: &[PeriodicEntry],
    registry: Option<&Registry>,
    now: Millis,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if entries.len() > MAX_SCHEDULES {
        out.push((
            "periodic".to_string(),
            format!(
                "{} schedules; at most {MAX_SCHEDULES} are allowed",
                entries.len()
            ),
        ));
        return out;
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, e) in entries.iter().enumerate() {
        let key = format!("periodic[{i}]");
        if let Some(first) = seen.insert(&e.name, i) {
            out.push((
                format!("{key}.name"),
                format!("`{}` is also the name of periodic[{first}]", e.name),
            ));
        }
        if e.backfill.is_some() && e.policy == PolicyName::Skip {
            out.push((
                format!("{key}.backfill"),
                "only applies with policy = \"catch_up\"".to_string(),
            ));
        }
        let job = e.to_job();
        if let Err(p) = job.check(now) {
            out.push((format!("{key}.{}", p.field), p.message));
            continue;
        }
        let Some(registry) = registry else { continue };
        match registry.validate(&job.job) {
            Ok(()) => {}
            Err(err @ SubmitError::UnknownKind { .. }) => {
                out.push((format!("{key}.kind"), err.to_string()))
            }
            Err(SubmitError::Payload { error, .. }) => {
                out.push((format!("{key}.payload"), error.to_string()))
            }
            // The message names the option (`priority must be within ...`).
            Err(SubmitError::Options(m)) => out.push((key.clone(), m)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use std::io::Write;

    fn load(text: &str) -> Result<Config, String> {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        Config::load(Some(f.path()), []).map_err(|e| e.to_string())
    }

    fn entry(fields: &str) -> String {
        format!("[[periodic]]\nname = \"p\"\nschedule = \"every 30s\"\nkind = \"noop\"\n{fields}\n")
    }

    #[test]
    fn a_periodic_entry_is_typed_at_load() {
        let c = load(
            "[[periodic]]\nname = \"cleanup\"\nschedule = \"*/5 * * * *\"\ntimezone = \"Europe/Berlin\"\n\
             kind = \"noop\"\npayload = { a = 1 }\nqueue = \"maint\"\npriority = 3\n\
             policy = \"catch_up\"\nbackfill = \"2h\"\n\
             [[periodic]]\nname = \"tick\"\nschedule = \"every 1s\"\nkind = \"noop\"\n",
        )
        .unwrap();
        let jobs = c.periodic_jobs();
        assert_eq!(jobs.len(), 2);
        let p = &jobs[0];
        assert_eq!(p.name, "cleanup");
        assert_eq!(p.schedule.as_str(), "*/5 * * * *");
        assert_eq!(p.timezone, crate::periodic::Tz::Europe__Berlin);
        assert_eq!(
            p.policy,
            crate::periodic::MissedTicks::CatchUp {
                backfill: std::time::Duration::from_secs(7200)
            }
        );
        assert_eq!(p.job.payload, serde_json::json!({"a": 1}));
        assert_eq!((p.job.queue.as_str(), p.job.priority), ("maint", 3));
        let t = &jobs[1];
        assert_eq!(t.policy, crate::periodic::MissedTicks::Skip);
        assert_eq!(t.timezone, crate::periodic::Tz::UTC);
        assert_eq!(t.job.queue, "default");
    }

    /// Hostile and mistaken entries: each refused with the key that is wrong.
    #[test]
    fn bad_entries_are_refused_naming_the_key() {
        for (text, key, says) in [
            (
                entry("").replace("every 30s", "every never"),
                "periodic[0].schedule",
                "duration",
            ),
            (
                entry("").replace("every 30s", "99 * * * *"),
                "periodic[0].schedule",
                "cron",
            ),
            (
                entry("").replace("every 30s", "0 0 30 2 *"),
                "periodic[0].schedule",
                "never ticks",
            ),
            (
                entry("timezone = \"Mars/Olympus\""),
                "periodic[0].timezone",
                "IANA",
            ),
            (
                entry("timezone = \"Europe/Berlin\\nx\""),
                "periodic[0].timezone",
                "IANA",
            ),
            (
                entry("policy = \"sometimes\""),
                "periodic[0].policy",
                "unknown variant",
            ),
            (
                entry("backfill = \"1h\""),
                "periodic[0].backfill",
                "catch_up",
            ),
            (
                entry("policy = \"catch_up\"\nbackfill = \"30d\""),
                "periodic[0].backfill",
                "7 days",
            ),
            (
                entry("priority = 500"),
                "periodic[0]",
                "priority must be within",
            ),
            (entry("priority = 100000"), "periodic[0].priority", ""),
            (entry("queue = \"a b\""), "periodic[0]", "queue name"),
            (entry("max_attempts = 0"), "periodic[0]", "max_attempts"),
            (entry("surprise = 1"), "periodic[0]", "unknown field"),
            (
                entry("").replace("\"noop\"", "\"nope\""),
                "periodic[0].kind",
                "unknown job kind",
            ),
            (
                entry("").replace("\"p\"", "\"has space\""),
                "periodic[0].name",
                "letters, digits",
            ),
            (
                entry("").replace("\"p\"", &format!("\"{}\"", "n".repeat(101))),
                "periodic[0].name",
                "1-100",
            ),
            (
                format!("{}{}", entry(""), entry("")),
                "periodic[1].name",
                "also the name of periodic[0]",
            ),
            // `exec` refuses commands outside its allowlist, as a submit would.
            (
                entry("payload = { command = \"rm\", args = [\"-rf\", \"/\"] }")
                    .replace("\"noop\"", "\"exec\""),
                "periodic[0].payload",
                "",
            ),
            (
                "[[periodic]]\nname = \"p\"\nkind = \"noop\"\n".to_string(),
                "periodic[0]",
                "schedule",
            ),
        ] {
            let e = load(&text).expect_err(&text);
            assert!(e.contains(key) && e.contains(says), "{text}\n-> {e}");
        }
        // Too many schedules.
        let many: String = (0..=crate::periodic::MAX_SCHEDULES)
            .map(|i| entry("").replace("\"p\"", &format!("\"p{i}\"")))
            .collect();
        let e = load(&many).unwrap_err();
        assert!(
            e.contains("periodic: ") && e.contains("at most 1000"),
            "{e}"
        );
    }
}
