//! Retry: when to try a failed job again, or whether to stop.
//!
//! The model keeps, per (kind, error class), a Beta-Bernoulli posterior of "the next
//! attempt succeeds" for each bucket of (attempt number, time since the job's first
//! failure). A dependency that is down for ten minutes shows as failures in the early
//! time buckets and successes in the late ones, so the model waits into the late ones;
//! an error class no retry ever cured shows as failures in every bucket, so the model
//! gives up. A retry budget per kind (retries at most a share of first attempts over a
//! window, plus a small floor) keeps a failing dependency from being hammered whatever
//! the posteriors say. The baseline is the policy shipped today: `attempt^4` seconds
//! with jitter, up to 25 attempts. A node's model adds the other nodes' counts to its
//! own when asked ([`PosteriorRetry::adopt_peers`]).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::job::RetryPolicy;

mod peers;

/// Upper bounds (exclusive, ms) of the time-since-first-failure buckets; the last
/// bucket is open.
const TIME_BUCKETS_MS: [i64; 8] = [
    10_000, 30_000, 60_000, 120_000, 300_000, 600_000, 1_200_000, 2_400_000,
];
const N_TIME: usize = TIME_BUCKETS_MS.len() + 1;
/// Attempt buckets (of the attempt about to run): 2, 3, 4-5, 6-9, 10+.
const N_ATTEMPT: usize = 5;

/// The delays the model chooses from, in ms.
const CANDIDATE_DELAYS_MS: [i64; 12] = [
    1_000, 5_000, 15_000, 30_000, 60_000, 120_000, 300_000, 600_000, 900_000, 1_200_000, 2_400_000,
    3_600_000,
];

fn time_bucket(since_first_failure_ms: i64) -> usize {
    TIME_BUCKETS_MS
        .iter()
        .position(|b| since_first_failure_ms < *b)
        .unwrap_or(N_TIME - 1)
}

fn attempt_bucket(attempt: u32) -> usize {
    match attempt {
        0..=2 => 0,
        3 => 1,
        4..=5 => 2,
        6..=9 => 3,
        _ => 4,
    }
}

/// A failed attempt awaiting a decision.
#[derive(Debug, Clone, Copy)]
pub struct FailedAttempt<'a> {
    /// Job kind.
    pub kind: &'a str,
    /// Class of its error.
    pub error_class: &'a str,
    /// The attempt that failed (1 for the first).
    pub attempt: u32,
    /// Attempts the job may make.
    pub max_attempts: u32,
    /// When the job first failed.
    pub first_failure_ms: i64,
    /// Now (when the attempt failed).
    pub now_ms: i64,
}

/// What to do with a failed job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Run it again after this many milliseconds.
    Retry {
        /// Delay before the next attempt.
        delay_ms: i64,
    },
    /// Stop: dead-letter it now (out of attempts, or no retry is expected to succeed).
    GiveUp,
}

/// The state of one kind's retry budget over its window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BudgetUse {
    /// First attempts in the window.
    pub firsts: f64,
    /// Retries in the window.
    pub retries: f64,
    /// Retries the budget allows in the window.
    pub allowed: f64,
}

/// A retry policy that may learn: the model and its baseline alike.
pub trait RetryPredictor {
    /// A short name for tables.
    fn name(&self) -> &'static str;
    /// A job of `kind` made its first attempt at `at_ms` (feeds the retry budget).
    fn observe_first(&mut self, kind: &str, at_ms: i64);
    /// A retry (attempt >= 2) of a job whose previous attempt failed with `error_class`
    /// started `since_first_failure_ms` after the job's first failure, and succeeded or
    /// not.
    fn observe_retry(
        &mut self,
        kind: &str,
        error_class: &str,
        attempt: u32,
        since_first_failure_ms: i64,
        succeeded: bool,
        at_ms: i64,
    );
    /// Decides what becomes of a failed attempt; `jitter` is uniform in `0..1`.
    fn decide(&mut self, failed: FailedAttempt<'_>, jitter: f64) -> RetryDecision;
}

/// Baseline: the shipped policy, `unit * attempt^exponent` plus up to `jitter` of it,
/// until `max_attempts`.
#[derive(Debug, Clone, Default)]
pub struct FixedBackoff {
    policy: RetryPolicy,
}

impl RetryPredictor for FixedBackoff {
    fn name(&self) -> &'static str {
        "attempt^4 backoff"
    }

    fn observe_first(&mut self, _kind: &str, _at_ms: i64) {}

    fn observe_retry(&mut self, _: &str, _: &str, _: u32, _: i64, _: bool, _: i64) {}

    fn decide(&mut self, f: FailedAttempt<'_>, jitter: f64) -> RetryDecision {
        if f.attempt >= f.max_attempts {
            return RetryDecision::GiveUp;
        }
        let base = self.policy.base_delay(f.attempt).as_millis() as f64;
        let j = self.policy.jitter.clamp(0.0, 1.0) * jitter.clamp(0.0, 1.0);
        RetryDecision::Retry {
            delay_ms: (base * (1.0 + j)) as i64,
        }
    }
}

/// A decaying success/failure count.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct Beta {
    ok: f64,
    fail: f64,
    at_ms: i64,
}

impl Beta {
    fn decay_to(&mut self, now_ms: i64, half_life_ms: f64) {
        if now_ms > self.at_ms && half_life_ms > 0.0 {
            let f = (-(now_ms - self.at_ms) as f64 / half_life_ms).exp2();
            self.ok *= f;
            self.fail *= f;
        }
        self.at_ms = self.at_ms.max(now_ms);
    }

    fn n(&self) -> f64 {
        self.ok + self.fail
    }

    /// Posterior mean under a Beta(1, 1) prior: untried buckets are worth a try.
    fn mean(&self) -> f64 {
        (self.ok + 1.0) / (self.n() + 2.0)
    }
}

/// Retry counts of one kind over a sliding window of slots.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Budget {
    /// (slot start ms, first attempts, retries), oldest first.
    slots: std::collections::VecDeque<(i64, f64, f64)>,
}

/// Settings of [`PosteriorRetry`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct PosteriorSettings {
    /// One more attempt costs as much as this much waiting (ms): the model picks the
    /// delay minimising `delay + attempt_cost / p(success)`.
    pub attempt_cost_ms: f64,
    /// Give up when every reachable bucket has at least `give_up_min_obs` observations
    /// and a success share below `give_up_below`.
    pub give_up_below: f64,
    /// See `give_up_below`.
    pub give_up_min_obs: f64,
    /// Half-life of the counts.
    pub half_life_ms: f64,
    /// Retry budget: retries allowed per first attempt over the window.
    pub budget_ratio: f64,
    /// Retries always allowed per window.
    pub budget_floor: f64,
    /// Window of the budget.
    pub budget_window_ms: i64,
    /// Jitter added to a chosen delay, as a share of it.
    pub jitter: f64,
}

impl Default for PosteriorSettings {
    fn default() -> Self {
        Self {
            attempt_cost_ms: 60_000.0,
            give_up_below: 0.03,
            give_up_min_obs: 4.0,
            half_life_ms: 3.0 * 3_600_000.0,
            budget_ratio: 0.2,
            budget_floor: 10.0,
            budget_window_ms: 60_000,
            jitter: 0.1,
        }
    }
}

/// The model: Beta posteriors per (kind, error class, attempt bucket, time bucket) and
/// a retry budget per kind.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PosteriorRetry {
    s: PosteriorSettings,
    posteriors: HashMap<String, HashMap<String, [[Beta; N_TIME]; N_ATTEMPT]>>,
    budgets: HashMap<String, Budget>,
    /// The other nodes' counts (see [`peers`]); never saved.
    #[serde(skip)]
    peers: peers::PeerCounts,
}

impl PosteriorRetry {
    /// A model with these settings.
    pub fn new(s: PosteriorSettings) -> Self {
        Self {
            s,
            posteriors: HashMap::new(),
            budgets: HashMap::new(),
            peers: peers::PeerCounts::default(),
        }
    }

    /// Sets the retry budget (the node's `[retry]` settings win over those a resumed
    /// model was saved with): `ratio` retries per first attempt plus `floor` over
    /// `window_ms`.
    pub fn set_budget(&mut self, ratio: f64, floor: f64, window_ms: i64) {
        self.s.budget_ratio = ratio;
        self.s.budget_floor = floor;
        self.s.budget_window_ms = window_ms.max(1);
    }

    const SLOTS: i64 = 6;

    fn budget(&mut self, kind: &str, now_ms: i64) -> &mut Budget {
        if !self.budgets.contains_key(kind) {
            self.budgets.insert(kind.to_owned(), Budget::default());
        }
        let slot = (self.s.budget_window_ms / Self::SLOTS).max(1);
        let start = now_ms - now_ms.rem_euclid(slot);
        let window = self.s.budget_window_ms;
        let b = self.budgets.get_mut(kind).expect("inserted above");
        while b.slots.front().is_some_and(|s| s.0 <= now_ms - window) {
            b.slots.pop_front();
        }
        if b.slots.back().is_none_or(|s| s.0 < start) {
            b.slots.push_back((start, 0.0, 0.0));
        }
        b
    }

    /// Whether the budget of `kind` allows one more retry at `now_ms` (and counts it),
    /// counting the other nodes' first attempts and retries too.
    fn spend(&mut self, kind: &str, now_ms: i64) -> bool {
        let (ratio, floor) = (self.s.budget_ratio, self.s.budget_floor);
        let (peer_firsts, peer_retries) = self.peer_budget(kind);
        let b = self.budget(kind, now_ms);
        let (firsts, retries) = b
            .slots
            .iter()
            .fold((peer_firsts, peer_retries), |(f, r), s| (f + s.1, r + s.2));
        if retries + 1.0 > ratio * firsts + floor {
            return false;
        }
        if let Some(last) = b.slots.back_mut() {
            last.2 += 1.0;
        }
        true
    }

    /// The (kind, error class) pairs this node learned so far (a snapshot accessor for
    /// operators' views).
    pub fn keys(&self) -> impl Iterator<Item = (&str, &str)> {
        self.posteriors.iter().flat_map(|(kind, classes)| {
            classes
                .keys()
                .map(move |class| (kind.as_str(), class.as_str()))
        })
    }

    /// The kinds with a retry budget.
    pub fn budget_kinds(&self) -> impl Iterator<Item = &str> {
        self.budgets.keys().map(String::as_str)
    }

    /// The retry budget of `kind` at `now_ms` without spending from it: first attempts
    /// and retries in the window (this node's and the other nodes' it holds), and the
    /// retries it allows (a snapshot accessor).
    pub fn budget_use(&self, kind: &str, now_ms: i64) -> Option<BudgetUse> {
        let own = self.budget_use_own(kind, now_ms);
        let (firsts, retries) = self.peer_budget(kind);
        if own.is_none() && firsts + retries <= 0.0 {
            return None;
        }
        let own = own.unwrap_or(BudgetUse {
            firsts: 0.0,
            retries: 0.0,
            allowed: self.s.budget_floor,
        });
        Some(BudgetUse {
            firsts: own.firsts + firsts,
            retries: own.retries + retries,
            allowed: own.allowed + self.s.budget_ratio * firsts,
        })
    }

    /// [`Self::budget_use`] of this node's own counts alone.
    fn budget_use_own(&self, kind: &str, now_ms: i64) -> Option<BudgetUse> {
        let b = self.budgets.get(kind)?;
        let window = self.s.budget_window_ms;
        let (firsts, retries) = b
            .slots
            .iter()
            .filter(|s| s.0 > now_ms - window)
            .fold((0.0, 0.0), |(f, r), s| (f + s.1, r + s.2));
        Some(BudgetUse {
            firsts,
            retries,
            allowed: self.s.budget_ratio * firsts + self.s.budget_floor,
        })
    }

    /// The posterior success probability of attempt `attempt` started
    /// `since_first_failure_ms` after the first failure, and how many observations
    /// back it; `None` for a key never seen.
    pub fn success_probability(
        &self,
        kind: &str,
        error_class: &str,
        attempt: u32,
        since_first_failure_ms: i64,
    ) -> Option<(f64, f64)> {
        let b = self.buckets(kind, error_class)?[attempt_bucket(attempt)]
            [time_bucket(since_first_failure_ms)];
        Some((b.mean(), b.n()))
    }
}

impl RetryPredictor for PosteriorRetry {
    fn name(&self) -> &'static str {
        "posterior+budget"
    }

    fn observe_first(&mut self, kind: &str, at_ms: i64) {
        if let Some(last) = self.budget(kind, at_ms).slots.back_mut() {
            last.1 += 1.0;
        }
    }

    fn observe_retry(
        &mut self,
        kind: &str,
        error_class: &str,
        attempt: u32,
        since_first_failure_ms: i64,
        succeeded: bool,
        at_ms: i64,
    ) {
        let hl = self.s.half_life_ms;
        let by_class = match self.posteriors.get_mut(kind) {
            Some(m) => m,
            None => self.posteriors.entry(kind.to_owned()).or_default(),
        };
        let buckets = match by_class.get_mut(error_class) {
            Some(b) => b,
            None => by_class
                .entry(error_class.to_owned())
                .or_insert([[Beta::default(); N_TIME]; N_ATTEMPT]),
        };
        let b = &mut buckets[attempt_bucket(attempt)][time_bucket(since_first_failure_ms)];
        b.decay_to(at_ms, hl);
        if succeeded {
            b.ok += 1.0;
        } else {
            b.fail += 1.0;
        }
    }

    fn decide(&mut self, f: FailedAttempt<'_>, jitter: f64) -> RetryDecision {
        if f.attempt >= f.max_attempts {
            return RetryDecision::GiveUp;
        }
        match self.advise(f, jitter, true) {
            RetryAdvice::Retry { delay_ms, .. } => RetryDecision::Retry { delay_ms },
            RetryAdvice::Hopeless { .. } => RetryDecision::GiveUp,
        }
    }
}

/// What the model advises for a failed attempt that still has attempts left.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RetryAdvice {
    /// Run it again after `delay_ms`.
    Retry {
        /// Delay before the next attempt, jitter included.
        delay_ms: i64,
        /// The kind's retry budget was spent: the delay was stretched to wait out the
        /// budget's window instead of adding load now.
        budget_held: bool,
    },
    /// No retry of this (kind, error class) is expected to succeed: every bucket the
    /// next attempt could fall in has enough observations and almost no successes.
    Hopeless {
        /// The fewest retries (decayed) observed in any of those buckets.
        observations: f64,
    },
}

impl PosteriorRetry {
    /// Advises on a failed attempt: the delay minimising `delay + attempt_cost /
    /// p(success)`, stretched when the kind's retry budget is spent (a held retry is
    /// delayed, never dropped), or [`RetryAdvice::Hopeless`] when `may_give_up` and the
    /// posteriors say no retry succeeds. Spends the budget when it advises a retry.
    pub fn advise(&mut self, f: FailedAttempt<'_>, jitter: f64, may_give_up: bool) -> RetryAdvice {
        let since = (f.now_ms - f.first_failure_ms).max(0);
        let next = f.attempt.saturating_add(1);
        let s = self.s;
        let buckets = self.buckets(f.kind, f.error_class);
        let buckets = buckets.as_ref();
        let mut best = (f64::INFINITY, CANDIDATE_DELAYS_MS[0]);
        let mut hopeless = may_give_up && buckets.is_some() && f.attempt >= 2;
        let mut observations = f64::INFINITY;
        for d in CANDIDATE_DELAYS_MS {
            let (p, n) = match buckets {
                Some(b) => {
                    let mut beta = b[attempt_bucket(next)][time_bucket(since + d)];
                    beta.decay_to(f.now_ms, s.half_life_ms);
                    (beta.mean(), beta.n())
                }
                None => (0.5, 0.0),
            };
            if n < s.give_up_min_obs || beta_share(p, n) >= s.give_up_below {
                hopeless = false;
            }
            observations = observations.min(n);
            let cost = d as f64 + s.attempt_cost_ms / p;
            if cost < best.0 {
                best = (cost, d);
            }
        }
        if hopeless {
            return RetryAdvice::Hopeless { observations };
        }
        let mut delay = best.1;
        let budget_held = !self.spend(f.kind, f.now_ms + delay);
        if budget_held {
            // Over budget: wait out the window instead of adding load now.
            delay = delay.max(s.budget_window_ms) * 2;
        }
        let j = 1.0 + s.jitter.clamp(0.0, 1.0) * jitter.clamp(0.0, 1.0);
        RetryAdvice::Retry {
            delay_ms: (delay as f64 * j) as i64,
            budget_held,
        }
    }
}

/// The raw success share behind a posterior mean `p` over `n` observations (the
/// Beta(1, 1) prior taken back out).
fn beta_share(p: f64, n: f64) -> f64 {
    if n <= 0.0 {
        return p;
    }
    ((p * (n + 2.0)) - 1.0).max(0.0) / n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(attempt: u32, first: i64, now: i64) -> FailedAttempt<'static> {
        FailedAttempt {
            kind: "mail",
            error_class: "smtp",
            attempt,
            max_attempts: 25,
            first_failure_ms: first,
            now_ms: now,
        }
    }

    #[test]
    fn the_baseline_is_the_shipped_policy() {
        let mut b = FixedBackoff::default();
        assert_eq!(
            b.decide(failed(2, 0, 0), 0.0),
            RetryDecision::Retry { delay_ms: 16_000 }
        );
        assert_eq!(
            b.decide(failed(3, 0, 0), 1.0),
            RetryDecision::Retry { delay_ms: 89_100 }
        );
        assert_eq!(b.decide(failed(25, 0, 0), 0.0), RetryDecision::GiveUp);
    }

    #[test]
    fn it_waits_until_success_is_likely() {
        let mut m = PosteriorRetry::new(PosteriorSettings {
            budget_floor: 1e9,
            ..Default::default()
        });
        // An outage: retries within ten minutes of the first failure fail, later ones
        // succeed.
        for i in 0..200 {
            for (since, ok) in [
                (2_000, false),
                (20_000, false),
                (45_000, false),
                (90_000, false),
                (200_000, false),
                (400_000, false),
                (700_000, true),
            ] {
                m.observe_retry("mail", "smtp", 2, since, ok, i);
            }
        }
        match m.decide(failed(1, 0, 0), 0.0) {
            RetryDecision::Retry { delay_ms } => {
                assert!((600_000..1_200_000).contains(&delay_ms), "{delay_ms}")
            }
            other => panic!("{other:?}"),
        }
        // A class it knows nothing about is retried soon.
        let d = m.decide(
            FailedAttempt {
                error_class: "new",
                ..failed(1, 0, 0)
            },
            0.0,
        );
        assert_eq!(d, RetryDecision::Retry { delay_ms: 1_000 });
    }

    #[test]
    fn it_gives_up_on_what_never_succeeds() {
        let mut m = PosteriorRetry::new(PosteriorSettings::default());
        for i in 0..20 {
            for since in [
                0, 20_000, 45_000, 90_000, 200_000, 400_000, 800_000, 1_500_000, 3_000_000,
            ] {
                for attempt in [2, 3, 4, 6, 10] {
                    m.observe_retry("mail", "gone", attempt, since, false, i);
                }
            }
        }
        let f = FailedAttempt {
            error_class: "gone",
            ..failed(2, 0, 1_000)
        };
        assert_eq!(m.decide(f, 0.0), RetryDecision::GiveUp);
        // The first failure still gets one retry (one data point is not a verdict).
        let f = FailedAttempt {
            error_class: "gone",
            ..failed(1, 0, 1_000)
        };
        assert!(matches!(m.decide(f, 0.0), RetryDecision::Retry { .. }));
    }

    #[test]
    fn the_budget_holds_back_a_storm() {
        let mut m = PosteriorRetry::new(PosteriorSettings::default());
        for i in 0..100 {
            m.observe_first("mail", i);
        }
        // 0.2 * 100 + 10 = 30 retries fit in the window, the rest wait.
        let quick = (0..100)
            .filter(|i| {
                matches!(
                    m.decide(failed(1, 0, 100 + i), 0.0),
                    RetryDecision::Retry { delay_ms } if delay_ms < 60_000
                )
            })
            .count();
        assert_eq!(quick, 30);
    }

    #[test]
    fn buckets_cover_every_input() {
        assert_eq!(time_bucket(0), 0);
        assert_eq!(time_bucket(i64::MAX), N_TIME - 1);
        assert_eq!(attempt_bucket(0), 0);
        assert_eq!(attempt_bucket(u32::MAX), N_ATTEMPT - 1);
    }
}
