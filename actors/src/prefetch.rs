//! How far ahead of its workers a node claims (its prefetch), as a plain policy.
//!
//! Every claim is a store transaction, so a node draining tiny jobs must claim in big
//! batches, ahead of its workers, or it spends its time on round trips. But a job
//! claimed and not started is one that no other node can start: a node that claimed
//! ahead while running long jobs holds work behind busy workers while other nodes' workers
//! sit idle (and when it dies, all of it is rescued at once). So the prefetch is what the
//! workers are expected to take within [`PREFETCH_SPAN`]: `workers × span / run time`,
//! with the run time a moving average of the attempts that finished here, raised to the
//! mean age of the attempts still running (so a switch from short to long jobs shows
//! before the long ones finish). A job of 50 µs may wait in the prefetch for a few
//! milliseconds; a job of 5 s is never prefetched (16 workers × 20 ms / 5 s rounds to
//! 0). Before any attempt has finished here, nothing is prefetched.

use std::time::Duration;

/// How long, at the expected rate, a prefetched job waits for a worker: far below any
/// lease (at least 100 ms), and short enough that holding it costs no other node much.
pub(crate) const PREFETCH_SPAN: Duration = Duration::from_millis(20);

/// Weight of the newest run time in the moving average: about the last 8 attempts count.
const NEWEST_WEIGHT: f64 = 1.0 / 8.0;

/// The measured run time of attempts on this node.
#[derive(Debug, Default)]
pub(crate) struct Prefetch {
    /// Moving average of run times, in microseconds; `None` until one finished.
    mean_us: Option<f64>,
}

impl Prefetch {
    /// Records an attempt that took `took` from hand-out to its worker being free again.
    pub(crate) fn finished(&mut self, took: Duration) {
        let us = took.as_secs_f64() * 1e6;
        self.mean_us = Some(match self.mean_us {
            None => us,
            Some(m) => m + NEWEST_WEIGHT * (us - m),
        });
    }

    /// How many claimed jobs to hold beyond the idle workers: what `workers` take
    /// within [`PREFETCH_SPAN`] at the expected run time, at most `cap`.
    /// `running_age` is the mean age of the attempts running now, if any.
    pub(crate) fn allowance(
        &self,
        workers: usize,
        running_age: Option<Duration>,
        cap: usize,
    ) -> usize {
        let Some(mean_us) = self.mean_us else {
            return 0;
        };
        let age_us = running_age.map_or(0.0, |a| a.as_secs_f64() * 1e6);
        let run_us = mean_us.max(age_us);
        if run_us <= 0.0 {
            return cap;
        }
        let span_us = PREFETCH_SPAN.as_secs_f64() * 1e6;
        let n = (workers as f64 * span_us / run_us).floor();
        // `as` saturates: an estimate beyond usize is just "as many as allowed".
        (n as usize).min(cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(took: Duration, times: usize) -> Prefetch {
        let mut p = Prefetch::default();
        for _ in 0..times {
            p.finished(took);
        }
        p
    }

    #[test]
    fn nothing_is_prefetched_before_a_run_time_is_known() {
        assert_eq!(Prefetch::default().allowance(16, None, 256), 0);
        assert_eq!(
            Prefetch::default().allowance(16, Some(Duration::ZERO), 256),
            0
        );
    }

    #[test]
    fn long_jobs_are_never_prefetched() {
        let p = measured(Duration::from_secs(5), 3);
        assert_eq!(p.allowance(16, None, 256), 0);
        // 1000 workers × 20 ms / 5 s = 4: a job waits about 20 ms at most.
        assert_eq!(p.allowance(1000, None, 256), 4);
        let p = measured(Duration::from_millis(100), 3);
        assert_eq!(p.allowance(16, None, 256), 3);
    }

    #[test]
    fn tiny_jobs_are_claimed_in_full_batches() {
        let p = measured(Duration::from_micros(50), 3);
        assert_eq!(p.allowance(10, Some(Duration::from_micros(30)), 256), 256);
        assert_eq!(p.allowance(10, None, 1000), 1000);
        let p = measured(Duration::ZERO, 1);
        assert_eq!(p.allowance(10, None, 256), 256);
    }

    /// Short jobs measured, then long ones start: their age stops the prefetch long
    /// before the first of them finishes and updates the average.
    #[test]
    fn long_running_attempts_stop_the_prefetch_before_they_finish() {
        let p = measured(Duration::from_micros(50), 100);
        assert_eq!(p.allowance(16, Some(Duration::from_millis(400)), 256), 0);
        assert_eq!(p.allowance(16, Some(Duration::from_millis(10)), 256), 32);
    }

    #[test]
    fn the_average_follows_a_change_of_run_time() {
        let mut p = measured(Duration::from_micros(50), 100);
        assert_eq!(p.allowance(16, None, 256), 256);
        for _ in 0..40 {
            p.finished(Duration::from_secs(2));
        }
        assert_eq!(p.allowance(16, None, 256), 0);
    }
}
