//! Decisions from the congestion model: warnings that a queue's wait SLO will be
//! breached (with the workers that would hold it), and admission control of
//! low-priority enqueues while a breach is certain.
//!
//! `[queues.NAME] wait_slo = "30s"` sets a queue's SLO. A breach is *predicted* when a
//! job enqueued now, or in 1, 5 or 15 minutes, is predicted to wait longer than the SLO, and
//! *certain* when a job enqueued now already would and one enqueued in a minute would
//! too (the backlog is not draining in time). Admission (`admission = "defer"` or
//! `"reject"`, off by default) applies only to jobs below `low_priority` while the
//! breach is certain: deferred jobs are stored to run once the predicted backlog has
//! drained (nothing is lost), rejected ones are refused with the reason.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::Millis;
use crate::job::Priority;
use crate::predict::congestion::{CongestionPredictor, FluidQueue};

/// The horizons a breach is predicted at: now, 1, 5 and 15 minutes.
pub const HORIZONS_MS: [i64; 4] = [0, 60_000, 300_000, 900_000];
/// At most one warning per queue per this.
pub const WARN_EVERY_MS: i64 = 60_000;
/// Longest deferral: a deferred job runs at most this long after its enqueue.
pub const MAX_DEFER: Duration = Duration::from_secs(15 * 60);

/// What happens to low-priority enqueues while a queue's breach is certain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Admission {
    /// Accept every enqueue.
    #[default]
    Off,
    /// Store them to run once the predicted backlog has drained.
    Defer,
    /// Refuse them with the reason.
    Reject,
}

/// `[queues.NAME]`: a queue's service level and what is done to hold it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueuePolicy {
    /// Longest acceptable wait of a job before a worker takes it.
    #[serde(with = "humantime_serde")]
    pub wait_slo: Option<Duration>,
    /// Admission control while a breach is certain (needs `wait_slo`).
    pub admission: Admission,
    /// Jobs with a priority below this are the low-priority ones admission acts on.
    pub low_priority: Priority,
}

impl Default for QueuePolicy {
    fn default() -> Self {
        Self {
            wait_slo: None,
            admission: Admission::Off,
            low_priority: 0,
        }
    }
}

/// Longest `wait_slo` (a day: a longer one is no service level a queue model can
/// predict a breach of from minutes of data).
pub const MAX_WAIT_SLO: Duration = Duration::from_secs(86_400);

impl QueuePolicy {
    /// Checks the policy of queue `name`, naming the key that is wrong.
    pub fn validate(&self, name: &str) -> Result<(), String> {
        let key = format!("queues.{name}");
        crate::job::check_queue_name(name).map_err(|e| format!("{key}: {e}"))?;
        match self.wait_slo {
            Some(slo) if slo < Duration::from_millis(1) || slo > MAX_WAIT_SLO => {
                return Err(format!(
                    "{key}.wait_slo must be between 1ms and 1day, got {} ms",
                    slo.as_millis()
                ));
            }
            None if self.admission != Admission::Off => {
                return Err(format!(
                    "{key}.admission needs {key}.wait_slo (admission acts when the SLO's breach is certain)"
                ));
            }
            _ => {}
        }
        if !(crate::job::MIN_PRIORITY..=crate::job::MAX_PRIORITY + 1).contains(&self.low_priority) {
            return Err(format!(
                "{key}.low_priority must be within {}..={}, got {}",
                crate::job::MIN_PRIORITY,
                crate::job::MAX_PRIORITY + 1,
                self.low_priority
            ));
        }
        Ok(())
    }
}

/// A predicted breach of a queue's wait SLO.
#[derive(Debug, Clone, PartialEq)]
pub struct BreachWarning {
    /// The queue.
    pub queue: String,
    /// Its SLO (ms).
    pub slo_ms: f64,
    /// The soonest horizon (ms from now) at which a job enqueued is predicted to wait
    /// longer than the SLO.
    pub horizon_ms: i64,
    /// The predicted wait (ms) of a job enqueued at that horizon.
    pub predicted_wait_ms: f64,
    /// Workers the queue has now (the most seen running at once lately).
    pub workers: u32,
    /// More workers that would hold the SLO at that horizon.
    pub more_workers: u32,
}

impl BreachWarning {
    /// The advice, as an operator reads it.
    pub fn advice(&self) -> String {
        let when = match self.horizon_ms / 60_000 {
            0 => "now".to_string(),
            m => format!("in {m} min"),
        };
        format!(
            "queue `{}`: a job enqueued {when} is predicted to wait {:.1} s, over its wait_slo of {:.1} s; {} more workers would hold the SLO",
            self.queue,
            self.predicted_wait_ms / 1000.0,
            self.slo_ms / 1000.0,
            self.more_workers
        )
    }
}

/// The breach of `queue`'s `slo` predicted soonest, if any.
pub fn predict_breach(
    model: &FluidQueue,
    queue: &str,
    slo: Duration,
    now: Millis,
) -> Option<BreachWarning> {
    let slo_ms = slo.as_secs_f64() * 1000.0;
    HORIZONS_MS.into_iter().find_map(|h| {
        let wait = model.predict_wait(queue, now.0, h)?;
        if wait <= slo_ms {
            return None;
        }
        let workers = model.servers(queue).unwrap_or(0.0).max(1.0);
        let needed = model.servers_needed(queue, now.0, h, slo_ms)?;
        Some(BreachWarning {
            queue: queue.to_owned(),
            slo_ms,
            horizon_ms: h,
            predicted_wait_ms: wait,
            workers: workers as u32,
            more_workers: (needed - workers).max(0.0).ceil().min(1e6) as u32,
        })
    })
}

/// Warns of predicted breaches, at most once per queue per [`WARN_EVERY_MS`].
#[derive(Debug, Default)]
pub struct BreachWatch {
    last_warned: HashMap<String, i64>,
}

impl BreachWatch {
    /// The warnings due at `now` for the queues of `policies` that have a `wait_slo`.
    pub fn check(
        &mut self,
        model: &FluidQueue,
        policies: &BTreeMap<String, QueuePolicy>,
        now: Millis,
    ) -> Vec<BreachWarning> {
        let mut due = Vec::new();
        for (queue, policy) in policies {
            let Some(slo) = policy.wait_slo else { continue };
            if self
                .last_warned
                .get(queue)
                .is_some_and(|at| now.0 - at < WARN_EVERY_MS)
            {
                continue;
            }
            if let Some(w) = predict_breach(model, queue, slo, now) {
                self.last_warned.insert(queue.clone(), now.0);
                due.push(w);
            }
        }
        due
    }
}

/// What admission control does with one enqueue.
#[derive(Debug, Clone, PartialEq)]
pub enum Admit {
    /// Store it as asked.
    Accept,
    /// Store it to run at this time (after the predicted backlog drains).
    Defer {
        /// The earliest run time given to the job.
        run_at: Millis,
    },
    /// Refuse it.
    Reject {
        /// Why, naming the queue, its SLO and the predicted wait.
        reason: String,
    },
}

/// Admission of a job of `priority` (wanting to run at `run_at`, `None`: now) on
/// `queue` under `policy`: see the module docs.
pub fn admit(
    model: &FluidQueue,
    queue: &str,
    policy: &QueuePolicy,
    priority: Priority,
    run_at: Option<Millis>,
    now: Millis,
) -> Admit {
    let Some(slo) = policy.wait_slo else {
        return Admit::Accept;
    };
    if policy.admission == Admission::Off
        || priority >= policy.low_priority
        || run_at.is_some_and(|at| at.0 > now.0)
    {
        return Admit::Accept;
    }
    let slo_ms = slo.as_secs_f64() * 1000.0;
    let (Some(wait_now), Some(wait_soon)) = (
        model.predict_wait(queue, now.0, 0),
        model.predict_wait(queue, now.0, HORIZONS_MS[1]),
    ) else {
        return Admit::Accept;
    };
    if wait_now <= slo_ms || wait_soon <= slo_ms {
        return Admit::Accept;
    }
    match policy.admission {
        Admission::Off => Admit::Accept,
        Admission::Defer => {
            let wait = Duration::from_secs_f64((wait_now / 1000.0).clamp(0.0, 1e9));
            Admit::Defer {
                run_at: now.plus(wait.min(MAX_DEFER)),
            }
        }
        Admission::Reject => Admit::Reject {
            reason: format!(
                "queue `{queue}` is overloaded: a job enqueued now is predicted to wait {:.1} s, \
                 over its wait_slo of {:.1} s; jobs below priority {} are refused until it \
                 drains (retry later or raise the priority)",
                wait_now / 1000.0,
                slo_ms / 1000.0,
                policy.low_priority
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: &str = "mail";

    /// A queue whose two workers took a minute of jobs of 500 ms as they came, then
    /// `backlog` jobs arriving in the last ten seconds.
    fn overloaded(backlog: usize, now: i64) -> FluidQueue {
        let mut m = FluidQueue::default();
        let mut t = now - 60_000;
        for _ in 0..60 {
            m.on_enqueue(Q, t);
            m.on_start(Q, t, 0.0);
            m.on_enqueue(Q, t);
            m.on_start(Q, t, 0.0);
            t += 500;
            m.on_finish(Q, t, 500.0);
            m.on_finish(Q, t, 500.0);
        }
        for i in 0..backlog {
            m.on_enqueue(
                Q,
                now - 10_000 + (i as i64 * 10_000 / backlog.max(1) as i64),
            );
        }
        m
    }

    fn slo(secs: u64, admission: Admission) -> QueuePolicy {
        QueuePolicy {
            wait_slo: Some(Duration::from_secs(secs)),
            admission,
            low_priority: 0,
        }
    }

    #[test]
    fn a_growing_backlog_is_warned_of_once_a_minute_with_advice() {
        let now = 10_000_000;
        let m = overloaded(400, now);
        let policies = BTreeMap::from([(Q.to_string(), slo(30, Admission::Off))]);
        let mut watch = BreachWatch::default();
        let w = watch.check(&m, &policies, Millis(now));
        assert_eq!(w.len(), 1, "{w:?}");
        let w = &w[0];
        assert_eq!(w.horizon_ms, 0);
        assert!(w.predicted_wait_ms > 30_000.0, "{w:?}");
        assert!(w.more_workers >= 1, "{w:?}");
        assert!(
            w.advice().contains("more workers would hold the SLO"),
            "{}",
            w.advice()
        );
        // Not again within the minute; again after it.
        assert!(watch.check(&m, &policies, Millis(now + 30_000)).is_empty());
        assert_eq!(watch.check(&m, &policies, Millis(now + 60_000)).len(), 1);
    }

    #[test]
    fn a_queue_keeping_up_is_not_warned_of() {
        let now = 10_000_000;
        let m = overloaded(0, now);
        let policies = BTreeMap::from([(Q.to_string(), slo(30, Admission::Off))]);
        assert!(
            BreachWatch::default()
                .check(&m, &policies, Millis(now))
                .is_empty()
        );
        // No SLO, no warning.
        let m = overloaded(400, now);
        let none = BTreeMap::from([(Q.to_string(), QueuePolicy::default())]);
        assert!(
            BreachWatch::default()
                .check(&m, &none, Millis(now))
                .is_empty()
        );
    }

    #[test]
    fn admission_acts_on_low_priority_only_when_the_breach_is_certain() {
        let now = Millis(10_000_000);
        let m = overloaded(400, now.0);
        let reject = slo(30, Admission::Reject);
        match admit(&m, Q, &reject, -1, None, now) {
            Admit::Reject { reason } => {
                assert!(reason.contains("queue `mail` is overloaded"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(admit(&m, Q, &reject, 0, None, now), Admit::Accept);
        let later = Some(Millis(now.0 + 3_600_000));
        assert_eq!(admit(&m, Q, &reject, -1, later, now), Admit::Accept);
        match admit(&m, Q, &slo(30, Admission::Defer), -1, None, now) {
            Admit::Defer { run_at } => {
                assert!(run_at.0 > now.0 + 30_000 && run_at <= now.plus(MAX_DEFER))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            admit(&m, Q, &slo(30, Admission::Off), -1, None, now),
            Admit::Accept
        );
        // A queue keeping up admits everything.
        let calm = overloaded(0, now.0);
        assert_eq!(admit(&calm, Q, &reject, -1, None, now), Admit::Accept);
    }

    #[test]
    fn bad_policies_are_named() {
        let p = QueuePolicy {
            admission: Admission::Reject,
            ..QueuePolicy::default()
        };
        assert!(
            p.validate("mail")
                .unwrap_err()
                .contains("queues.mail.admission needs")
        );
        let p = slo(0, Admission::Off);
        assert!(
            p.validate("mail")
                .unwrap_err()
                .contains("queues.mail.wait_slo")
        );
        assert!(
            slo(30, Admission::Off)
                .validate("a b")
                .unwrap_err()
                .contains("queues.a b")
        );
    }
}
