//! Cost of one prediction and one update of each model, on warmed-up models with the
//! key counts of a real cluster: `cargo bench -p jobmesh --bench predict`. A plain
//! timing loop (no benchmark framework): each line is the mean over many calls.

use std::hint::black_box;
use std::time::Instant;

use jobmesh::predict::congestion::{CongestionPredictor, FluidQueue};
use jobmesh::predict::duration::{DurationKey, DurationPredictor, SketchDuration, SketchSettings};
use jobmesh::predict::failure::{FailurePredictor, NodeScore, NodeSignal, ScoreSettings};
use jobmesh::predict::retry::{FailedAttempt, PosteriorRetry, PosteriorSettings, RetryPredictor};

const KINDS: [&str; 8] = ["a", "b", "c", "d", "e", "f", "g", "h"];
const CALLS: u32 = 200_000;

fn time(what: &str, mut f: impl FnMut(u32)) {
    for i in 0..CALLS / 10 {
        f(i);
    }
    let start = Instant::now();
    for i in 0..CALLS {
        f(i);
    }
    let ns = start.elapsed().as_nanos() as f64 / f64::from(CALLS);
    println!("{what:<40} {ns:>8.0} ns");
}

fn main() {
    let mut d = SketchDuration::new(SketchSettings::default());
    for i in 0..200_000u32 {
        let key = DurationKey {
            kind: KINDS[(i % 8) as usize],
            queue: "q",
            payload_bytes: u64::from(i % 5000) * 997,
        };
        d.observe(key, i64::from(i) * 10, f64::from(i % 9973) + 1.0);
    }
    time("duration: predict p50/p90/p99", |i| {
        let key = DurationKey {
            kind: KINDS[(i % 8) as usize],
            queue: "q",
            payload_bytes: u64::from(i % 5000) * 997,
        };
        black_box(d.predict(key, 0));
    });
    time("duration: observe", |i| {
        let key = DurationKey {
            kind: KINDS[(i % 8) as usize],
            queue: "q",
            payload_bytes: 1000,
        };
        d.observe(key, 2_000_000 + i64::from(i), f64::from(i % 977) + 1.0);
    });

    let mut f = NodeScore::new(ScoreSettings::default());
    let nodes: Vec<String> = (0..50).map(|i| format!("node-{i}")).collect();
    time("failure: observe an attempt", |i| {
        f.observe(
            &nodes[(i % 50) as usize],
            i64::from(i),
            NodeSignal::Attempt {
                kind: KINDS[(i % 8) as usize],
                failed: i % 17 == 0,
                timed_out: false,
                duration_ms: f64::from(i % 300),
                renew_ms: Some(15.0),
            },
        );
    });
    time("failure: drain decision", |i| {
        black_box(f.should_drain(&nodes[(i % 50) as usize], i64::from(i)));
    });

    let mut r = PosteriorRetry::new(PosteriorSettings::default());
    for i in 0..100_000u32 {
        r.observe_retry(
            KINDS[(i % 8) as usize],
            "err",
            2 + i % 6,
            i64::from(i % 3600) * 1000,
            i % 3 == 0,
            i64::from(i),
        );
    }
    time("retry: decide", |i| {
        black_box(r.decide(
            FailedAttempt {
                kind: KINDS[(i % 8) as usize],
                error_class: "err",
                attempt: 1 + i % 5,
                max_attempts: 25,
                first_failure_ms: 0,
                now_ms: i64::from(i),
            },
            0.5,
        ));
    });

    let mut c = FluidQueue::default();
    for i in 0..100_000i64 {
        let q = KINDS[(i % 8) as usize];
        c.on_enqueue(q, i * 10);
        c.on_start(q, i * 10 + 5, 5.0);
        c.on_finish(q, i * 10 + 9, 4.0);
    }
    time("congestion: predicted wait", |i| {
        black_box(c.predict_wait(KINDS[(i % 8) as usize], 1_000_000, 300_000));
    });
}
