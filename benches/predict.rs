//! Cost of one prediction and one update of each model, on warmed-up models with the
//! key counts of a real cluster: `cargo bench -p jobmesh --bench predict`. A plain
//! timing loop (no benchmark framework): each line is the mean over many calls.

use std::hint::black_box;
use std::time::Instant;

use jobmesh::clock::Millis;
use jobmesh::job::{Completion, Job, JobId, Lease, LeaseToken, NodeId, Outcome, WorkerId};

use jobmesh::predict::congestion::{CongestionPredictor, FluidQueue, FluidSettings};
use jobmesh::predict::duration::{DurationKey, DurationPredictor, SketchDuration, SketchSettings};
use jobmesh::predict::failure::{FailurePredictor, NodeScore, NodeSignal, ScoreSettings};
use jobmesh::predict::live::{FeedState, LiveFeed, LiveModels, SharedModels};
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
    // With vitals: every node's host sampled, and this node observing 50 members' phi.
    for (n, node) in nodes.iter().enumerate() {
        let host = NodeSignal::Host {
            load_per_core: Some(0.1 * n as f64),
            memory_used: Some(0.5),
        };
        f.observe(node, 0, host);
    }
    time("failure: observe a member's phi", |i| {
        let phi = NodeSignal::Phi {
            phi: f64::from(i % 7),
        };
        f.observe(&nodes[(i % 50) as usize], i64::from(i), phi);
    });
    time("failure: drain decision with vitals", |i| {
        black_box(f.should_drain(&nodes[(i % 50) as usize], 400_000 + i64::from(i)));
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

    // Plain, then with a season that completed (100 s cycles over the 1000 s fed): the
    // forecast then looks up the season's window, O(1) per lookup.
    let seasonal = FluidSettings {
        season_ms: 100_000,
        seasonal: true,
        ..FluidSettings::default()
    };
    for (name, settings) in [
        ("congestion: predicted wait", FluidSettings::default()),
        ("congestion: predicted wait, seasonal", seasonal),
    ] {
        let mut c = FluidQueue::new(settings);
        for i in 0..100_000i64 {
            let q = KINDS[(i % 8) as usize];
            c.on_enqueue(q, i * 10);
            c.on_start(q, i * 10 + 5, 5.0);
            c.on_finish(q, i * 10 + 9, 4.0);
        }
        time(name, |i| {
            black_box(c.predict_wait(KINDS[(i % 8) as usize], 1_000_000, 300_000));
        });
    }

    live();
}

/// The node's path: one attempt fed (handed out, then completed) through the shared
/// feed, locks included, and one prediction asked through `SharedModels::lock`.
fn live() {
    let models = LiveModels::default();
    let own = models.duration.clone();
    let feed = LiveFeed::new(SharedModels::new(models), FeedState::new("node-1", own));
    let job = |i: u32| -> Job {
        serde_json::from_value(serde_json::json!({
            "id": i, "queue": "q", "kind": KINDS[(i % 8) as usize],
            "payload": {"to": "someone@example.com", "n": i}, "priority": 0,
            "state": "running", "attempt": 1 + i % 3, "max_attempts": 25,
            "run_at": i64::from(i) * 10, "created_at": i64::from(i) * 10,
            "finished_at": null, "timeout": null, "unique_key": null, "lease_token": 1,
            "lease_owner": null, "lease_node": null, "lease_expires_at": null,
            "last_error": if i.is_multiple_of(3) { None } else { Some("smtp unavailable: 10.0.0.1") },
            "output": null, "depends_on": [], "on_parent_failure": "discard",
        }))
        .expect("a job")
    };
    let jobs: Vec<Job> = (0..1000).map(job).collect();
    let done = |i: u32| Completion {
        lease: Lease {
            job: JobId(i64::from(i % 1000)),
            token: LeaseToken(1),
            worker: WorkerId("node-1/w0".into()),
            node: NodeId("node-1".into()),
            attempt: 1 + i % 3,
            expires_at: Millis(i64::from(i) * 10 + 60_000),
        },
        outcome: if i.is_multiple_of(5) {
            Outcome::Retry {
                error: "smtp unavailable: 10.0.0.1".into(),
                run_at: Millis(0),
            }
        } else {
            Outcome::Succeeded { output: None }
        },
        started_at: Millis(i64::from(i) * 10 + 2),
        finished_at: Millis(i64::from(i) * 10 + 2 + i64::from(i % 977)),
    };
    time("live: feed one attempt (start + finish)", |i| {
        feed.started(&jobs[(i % 1000) as usize], i64::from(i) * 10 + 2);
        feed.finished(&done(i), true);
    });
    let shared = feed.models().clone();
    time("live: duration prediction (lock + p50/p90/p99)", |i| {
        let key = DurationKey {
            kind: KINDS[(i % 8) as usize],
            queue: "q",
            payload_bytes: 40,
        };
        black_box(shared.lock().duration.predict(key, 0));
    });
    time("live: predicted wait (lock + 5 min)", |i| {
        black_box(
            shared
                .lock()
                .congestion
                .predict_wait("q", i64::from(i) * 10, 300_000),
        );
    });
}
