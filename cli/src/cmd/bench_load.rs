//! Open-loop load for `jobmesh bench --rate R --duration D`: jobs are offered at a fixed
//! rate whatever the nodes manage, and every job's pickup latency is measured, so the
//! numbers say what a user sees at that load (a closed loop hides a slow system behind
//! fewer requests). Results come per window (pickup p50/p99, jobs done, resident memory)
//! so a long run shows whether anything grows.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jobmesh::clock::{Clock, SystemClock};
use jobmesh::store::SharedStore;
use serde_json::{Value, json};

use super::bench::{bench_job, now_us, round3};

/// Pickups kept for the whole run's percentiles (a uniform sample beyond this).
const RESERVOIR: usize = 100_000;

/// How long a run waits, after its last offer, for the jobs still waiting to finish.
const DRAIN_GRACE: Duration = Duration::from_secs(60);

/// Enqueue ticks per second of the producer.
const TICKS_PER_S: u64 = 100;

/// Pickup latencies as the handlers report them.
#[derive(Debug, Default)]
pub struct Pickups {
    window: Vec<f32>,
    reservoir: Vec<f32>,
    seen: u64,
    rng: u64,
}

impl Pickups {
    /// Records one pickup (ms).
    pub fn record(&mut self, ms: f32) {
        self.window.push(ms);
        self.seen += 1;
        if self.reservoir.len() < RESERVOIR {
            self.reservoir.push(ms);
        } else {
            // xorshift: a uniform sample needs no cryptographic randomness.
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            let slot = self.rng % self.seen;
            if (slot as usize) < RESERVOIR {
                self.reservoir[slot as usize] = ms;
            }
        }
    }

    fn take_window(&mut self) -> Vec<f32> {
        std::mem::take(&mut self.window)
    }
}

/// The handlers' shared recorder.
pub type SharedPickups = Arc<Mutex<Pickups>>;

/// A new recorder.
pub fn pickups() -> SharedPickups {
    Arc::new(Mutex::new(Pickups {
        rng: 0x9E37_79B9_7F4A_7C15,
        ..Pickups::default()
    }))
}

/// What to offer.
pub struct Load<'a> {
    /// Jobs per second offered.
    pub rate: u32,
    /// How long.
    pub duration: Duration,
    /// Length of a reported window.
    pub window: Duration,
    /// Kind of the offered jobs (its handler records the pickup).
    pub kind: &'a str,
    /// Queues the jobs are spread over, in turn.
    pub queues: &'a [String],
    /// Payload fields besides the send time.
    pub payload: &'a Value,
}

/// Offers the load, then waits until the offered jobs are done (at most the run's length
/// again, at least a minute); returns the report's fields. `done` counts the offered
/// jobs finished so far (the caller's event counter).
pub async fn offer(
    store: &SharedStore,
    load: &Load<'_>,
    recorder: &SharedPickups,
    done: impl Fn() -> u64,
) -> anyhow::Result<Value> {
    let started = Instant::now();
    let mut windows = Windows::new(started, load.window);
    let mut sent = 0u64;
    let mut turn = 0usize;
    let total = (load.duration.as_secs_f64() * f64::from(load.rate)) as u64;
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / TICKS_PER_S));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while sent < total {
        tick.tick().await;
        // What is due by now; the last tick sends the rest, so a run offers exactly
        // `rate * duration` jobs however the ticks fall.
        let due = if started.elapsed() >= load.duration {
            total
        } else {
            ((started.elapsed().as_secs_f64() * f64::from(load.rate)) as u64).min(total)
        };
        while due > sent {
            // At most a thousand per call, like every other bench enqueue.
            let upto = due.min(sent + 1000);
            let jobs = (sent..upto)
                .map(|_| {
                    let queue = &load.queues[turn % load.queues.len()];
                    turn += 1;
                    let mut payload = load.payload.clone();
                    payload["t_us"] = json!(now_us());
                    bench_job(load.kind, payload, queue)
                })
                .collect();
            store.enqueue(jobs, SystemClock.now()).await?;
            sent = upto;
        }
        windows.report_if_due(started, recorder, &done);
    }
    let offered_s = started.elapsed().as_secs_f64();
    // A run that fell behind reports how far (`kept_up`, `done`) after a minute's grace
    // instead of draining its backlog for as long again.
    let drain_deadline = Instant::now() + DRAIN_GRACE;
    let mut poll = tokio::time::interval(Duration::from_millis(100));
    while done() < sent && Instant::now() < drain_deadline {
        poll.tick().await;
        windows.report_if_due(started, recorder, &done);
    }
    let total_s = started.elapsed().as_secs_f64();
    let finished = done();
    let mut sample = recorder
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .reservoir
        .clone();
    sample.sort_by(f32::total_cmp);
    Ok(json!({
        "rate_offered": load.rate,
        "duration_s": load.duration.as_secs_f64(),
        "sent": sent,
        "enqueue_per_s": (sent as f64 / offered_s).round(),
        "done": finished,
        "kept_up": finished >= sent,
        "drain_tail_s": round3(total_s - offered_s),
        "done_per_s": (finished as f64 / total_s).round(),
        "pickup_ms": {
            "p50": round3(percentile(&sample, 0.50)),
            "p99": round3(percentile(&sample, 0.99)),
            "max": round3(sample.last().copied().unwrap_or(0.0).into()),
            "n": finished,
        },
        "windows": windows.reports,
    }))
}

/// The per-window reports of a run, each taken once its window has passed.
struct Windows {
    length: Duration,
    next: Instant,
    done_before: u64,
    reports: Vec<Value>,
}

impl Windows {
    fn new(started: Instant, length: Duration) -> Self {
        Self {
            length,
            next: started + length,
            done_before: 0,
            reports: Vec::new(),
        }
    }

    /// Reports the window that has passed, if one has: pickups, throughput, memory.
    fn report_if_due(
        &mut self,
        started: Instant,
        recorder: &SharedPickups,
        done: &impl Fn() -> u64,
    ) {
        if Instant::now() < self.next {
            return;
        }
        self.next += self.length;
        let mut w = recorder
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take_window();
        w.sort_by(f32::total_cmp);
        let now_done = done();
        let in_window = now_done.saturating_sub(self.done_before);
        self.done_before = now_done;
        self.reports.push(json!({
            "t_s": round3(started.elapsed().as_secs_f64()),
            "done_per_s": (in_window as f64 / self.length.as_secs_f64()).round(),
            "pickup_p50_ms": round3(percentile(&w, 0.50)),
            "pickup_p99_ms": round3(percentile(&w, 0.99)),
            "rss_mb": rss_mb().map(round3),
        }));
    }
}

/// The `p` quantile of sorted values (0 when empty).
fn percentile(sorted: &[f32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    f64::from(sorted[i.min(sorted.len() - 1)])
}

/// This process's resident memory in MiB (Linux; `None` elsewhere).
pub fn rss_mb() -> Option<f64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: f64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096.0 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reservoir_stays_bounded_and_the_window_empties() {
        let rec = pickups();
        let mut p = rec.lock().unwrap();
        for i in 0..(RESERVOIR as u32 * 3) {
            p.record(i as f32);
        }
        assert_eq!(p.reservoir.len(), RESERVOIR);
        // A uniform sample of 0..3R has a median near 1.5R, not near R/2 (the first R).
        let mut s = p.reservoir.clone();
        s.sort_by(f32::total_cmp);
        let median = percentile(&s, 0.5);
        assert!(
            (median - 1.5 * RESERVOIR as f64).abs() < 0.1 * RESERVOIR as f64,
            "{median}"
        );
        assert_eq!(p.take_window().len(), RESERVOIR * 3);
        assert!(p.take_window().is_empty());
    }

    #[test]
    fn percentiles_of_sorted_values() {
        let v: Vec<f32> = (1..=100).map(|x| x as f32).collect();
        assert_eq!(percentile(&v, 0.5), 51.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&[], 0.99), 0.0);
    }
}
