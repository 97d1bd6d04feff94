//! The named chaos scenarios and their plans: each plan is a seeded schedule of fault
//! steps, a plain list of `(at, Fault)` that the runner replays against a real cluster.
//!
//! A schedule is a pure function of (scenario, nodes, liars, duration, seed), so the
//! same command line replays the same faults at the same offsets (the cluster's own
//! timing still varies from run to run: processes are real).

use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use jobmesh::membership::adversary::Behaviour;

use super::ChaosError;

/// A node of the cluster, by index (`n1` is index 0).
pub type NodeIx = usize;

/// One fault (or the end of one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "fault", rename_all = "kebab-case")]
pub enum Fault {
    /// SIGKILL the node's process: no shutdown, leases left behind.
    Kill {
        /// Which node.
        node: NodeIx,
    },
    /// Start a killed node again with the same identity, port and data directory.
    Restart {
        /// Which node.
        node: NodeIx,
    },
    /// SIGSTOP: the process is frozen, its sockets stay open.
    Pause {
        /// Which node.
        node: NodeIx,
    },
    /// SIGCONT after a pause.
    Resume {
        /// Which node.
        node: NodeIx,
    },
    /// Cut the mesh in two: `minority` and everyone else drop each other's traffic.
    Partition {
        /// The smaller side.
        minority: Vec<NodeIx>,
    },
    /// Membership traffic from `from` to `to` is lost (`to` drops it); the reverse works.
    OneWay {
        /// Sender whose traffic is lost.
        from: NodeIx,
        /// Receiver that does not hear it.
        to: NodeIx,
    },
    /// Every node's incoming membership traffic is delayed and randomly dropped.
    Lossy {
        /// Added delay.
        delay_ms: u64,
        /// Share of messages dropped, 0..1.
        loss: f64,
    },
    /// The node turns Byzantine.
    Byzantine {
        /// Which node.
        node: NodeIx,
        /// What it does (the protocol core's adversary model, as the simulator's liars).
        mode: Behaviour,
    },
    /// The cluster's Postgres is stopped (`pg_ctl stop -m fast`: connections closed,
    /// new ones refused).
    PostgresStop,
    /// The cluster's Postgres is started again (same data, same port).
    PostgresStart,
    /// The cluster's redis-server is killed (SIGKILL; no persistence: it loses
    /// everything).
    RedisKill,
    /// redis-server is started again on the same port, empty.
    RedisRestart,
    /// `FLUSHALL` on the cluster's Redis.
    RedisFlush,
    /// The nodes' links to the stores turn slow: every chunk of their Postgres and Redis
    /// traffic is held this long (each way) by the runner's proxy.
    SlowStores {
        /// Added delay on the Postgres link (0: none).
        postgres_ms: u64,
        /// Added delay on the Redis link (0: none).
        redis_ms: u64,
    },
    /// The store links are fast again.
    FastStores,
    /// Every network fault and Byzantine behaviour ends; paused nodes resume and killed
    /// nodes restart; stopped or killed stores start again and slow links turn fast.
    /// Each schedule ends with one: liveness is judged after it.
    HealAll,
}

impl Fault {
    /// Whether applying it needs the node's `--chaos-control` file.
    pub fn needs_control(&self) -> bool {
        matches!(
            self,
            Fault::Partition { .. }
                | Fault::OneWay { .. }
                | Fault::Lossy { .. }
                | Fault::Byzantine { .. }
        )
    }

    /// Whether it acts on the stores (the production-mode servers) rather than on nodes.
    pub fn is_store(&self) -> bool {
        matches!(
            self,
            Fault::PostgresStop
                | Fault::PostgresStart
                | Fault::RedisKill
                | Fault::RedisRestart
                | Fault::RedisFlush
                | Fault::SlowStores { .. }
                | Fault::FastStores
        )
    }

    /// A short label for tables and the plot.
    pub fn label(&self) -> String {
        let n = |i: &NodeIx| format!("n{}", i + 1);
        match self {
            Fault::Kill { node } => format!("kill -9 {}", n(node)),
            Fault::Restart { node } => format!("restart {}", n(node)),
            Fault::Pause { node } => format!("pause {}", n(node)),
            Fault::Resume { node } => format!("resume {}", n(node)),
            Fault::Partition { minority } => format!(
                "partition {{{}}}|rest",
                minority.iter().map(n).collect::<Vec<_>>().join(",")
            ),
            Fault::OneWay { from, to } => format!("drop {}->{}", n(from), n(to)),
            Fault::Lossy { delay_ms, loss } => format!("lossy {delay_ms}ms {:.0}%", loss * 100.0),
            Fault::Byzantine { node, mode } => format!("{} {mode}", n(node)),
            Fault::PostgresStop => "postgres stop".to_string(),
            Fault::PostgresStart => "postgres start".to_string(),
            Fault::RedisKill => "kill -9 redis".to_string(),
            Fault::RedisRestart => "restart redis".to_string(),
            Fault::RedisFlush => "redis FLUSHALL".to_string(),
            Fault::SlowStores {
                postgres_ms,
                redis_ms,
            } => format!("slow stores pg +{postgres_ms}ms redis +{redis_ms}ms"),
            Fault::FastStores => "stores fast".to_string(),
            Fault::HealAll => "heal".to_string(),
        }
    }
}

/// A fault at an offset from the start of the workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Offset from the start.
    #[serde(with = "millis")]
    pub at: Duration,
    /// What happens.
    #[serde(flatten)]
    pub fault: Fault,
}

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// A scenario's schedule and workload mix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The faults, ordered by `at`; the last one is [`Fault::HealAll`].
    pub steps: Vec<Step>,
    /// Share of jobs that panic their worker on the first attempt (`panic {"times": 1}`).
    pub panic_share: f64,
    /// The Byzantine members (indices), for the false-eviction invariant.
    pub liars: Vec<NodeIx>,
}

impl Plan {
    /// When the final heal happens.
    pub fn heal_at(&self) -> Duration {
        self.steps.last().map_or(Duration::ZERO, |s| s.at)
    }

    /// Whether any step acts on the stores: the run needs its own Postgres and Redis.
    pub fn needs_stores(&self) -> bool {
        self.steps.iter().any(|s| s.fault.is_store())
    }

    /// Whether the nodes' store links must pass through the runner's slowing proxy.
    pub fn needs_proxy(&self) -> bool {
        self.steps
            .iter()
            .any(|s| matches!(s.fault, Fault::SlowStores { .. }))
    }

    /// Whether any step needs the nodes' `--chaos-control` file.
    pub fn needs_control(&self) -> bool {
        self.steps.iter().any(|s| s.fault.needs_control())
    }
}

/// Whether a scenario can run in this build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Availability {
    /// Runs with processes alone (kill, pause, panics).
    Ready,
    /// Needs nodes that understand `--chaos-control` (checked at run time).
    NeedsControl,
    /// Not implemented yet; the reason is in the description.
    NotYet,
}

/// A named scenario.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Scenario {
    /// Name for `--scenario`.
    pub name: &'static str,
    /// What it does.
    pub about: &'static str,
    /// Whether it can run.
    pub availability: Availability,
    /// Whether it needs Byzantine members (`--byzantine` >= 1).
    pub byzantine: bool,
    /// Whether it runs on redis_postgres (`redis_postgres`) with a Postgres and a
    /// redis-server of its own, started from the system binaries; else on one SQLite
    /// file.
    pub production: bool,
}

/// Every scenario, in the order `jobmesh chaos list` shows them.
pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "kill-restart",
        about: "kill -9 one node at a time and restart it 2-3.5 s later",
        availability: Availability::Ready,
        byzantine: false,
        production: false,
    },
    Scenario {
        name: "pause",
        about: "SIGSTOP one node at a time for 2.5-4.5 s, then SIGCONT",
        availability: Availability::Ready,
        byzantine: false,
        production: false,
    },
    Scenario {
        name: "worker-panic",
        about: "a quarter of the jobs panic their worker on the first attempt; one kill -9 on top",
        availability: Availability::Ready,
        byzantine: false,
        production: false,
    },
    Scenario {
        name: "partition",
        about: "a minority (< n/2) is cut off from the majority for 4-6 s, twice",
        availability: Availability::NeedsControl,
        byzantine: false,
        production: false,
    },
    Scenario {
        name: "one-way",
        about: "one-way link losses between seeded pairs of nodes",
        availability: Availability::NeedsControl,
        byzantine: false,
        production: false,
    },
    Scenario {
        name: "lossy",
        about: "every node's membership traffic delayed 20-80 ms and 10-30% of it dropped",
        availability: Availability::NeedsControl,
        byzantine: false,
        production: false,
    },
    Scenario {
        name: "byzantine-false-down",
        about: "F liars vote Down on healthy members; one honest node is killed meanwhile",
        availability: Availability::NeedsControl,
        byzantine: true,
        production: false,
    },
    Scenario {
        name: "byzantine-mixed",
        about: "F liars, each false-down, withhold, equivocate or replay (switching), plus a pause",
        availability: Availability::NeedsControl,
        byzantine: true,
        production: false,
    },
    Scenario {
        name: "junk-flood",
        about: "F members flood malformed messages on the membership topic",
        availability: Availability::NeedsControl,
        byzantine: true,
        production: false,
    },
    Scenario {
        name: "postgres-outage",
        about: "redis_postgres: the cluster's Postgres stopped (fast) for 2-3.5 s, up to twice",
        availability: Availability::Ready,
        byzantine: false,
        production: true,
    },
    Scenario {
        name: "redis-outage",
        about: "redis_postgres: redis-server killed (SIGKILL) for 2-3.5 s, restarted empty on its port, up to twice",
        availability: Availability::Ready,
        byzantine: false,
        production: true,
    },
    Scenario {
        name: "redis-flush",
        about: "redis_postgres: FLUSHALL on the cluster's Redis mid-run, once or twice",
        availability: Availability::Ready,
        byzantine: false,
        production: true,
    },
    Scenario {
        name: "store-slowness",
        about: "redis_postgres: the nodes' Postgres and/or Redis links delayed 50-200 ms per chunk for 2-3.5 s, up to twice",
        availability: Availability::Ready,
        byzantine: false,
        production: true,
    },
];

/// Looks a scenario up by name.
pub fn find(name: &str) -> Result<&'static Scenario, ChaosError> {
    SCENARIOS
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| ChaosError::Options {
            message: format!(
                "unknown scenario `{name}`; known: {}",
                SCENARIOS
                    .iter()
                    .map(|s| s.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
}

/// The most Byzantine members `nodes` tolerate: f with n >= 3f + 1.
pub fn tolerated(nodes: usize) -> usize {
    nodes.saturating_sub(1) / 3
}

/// Builds the seeded plan of a scenario. Faults fall in the first 70% of `duration`
/// and everything heals at 75%, so the rest of the run shows the cluster recovering.
pub fn plan(
    scenario: &Scenario,
    nodes: usize,
    liars: usize,
    duration: Duration,
    seed: u64,
) -> Result<Plan, ChaosError> {
    let bad = |message: String| Err(ChaosError::Options { message });
    if scenario.availability == Availability::NotYet {
        return bad(format!(
            "scenario `{}` is not available yet: {}",
            scenario.name, scenario.about
        ));
    }
    if nodes < 3 {
        return bad(format!("--nodes must be at least 3, got {nodes}"));
    }
    if scenario.byzantine && liars == 0 {
        return bad(format!(
            "scenario `{}` needs Byzantine members: give --byzantine 1..={}",
            scenario.name,
            nodes - 1
        ));
    }
    if liars >= nodes {
        return bad(format!(
            "--byzantine {liars} leaves no honest node among {nodes}"
        ));
    }
    if duration < Duration::from_secs(6) {
        return bad(format!(
            "--duration must be at least 6s to fit a fault and its recovery, got {duration:?}"
        ));
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut order: Vec<NodeIx> = (0..nodes).collect();
    order.shuffle(&mut rng);
    let liar_set: Vec<NodeIx> = order[..liars].to_vec();
    let honest: Vec<NodeIx> = order[liars..].to_vec();
    let ms = |f: f64| Duration::from_millis((duration.as_millis() as f64 * f) as u64);
    let (start, end, heal) = (ms(0.1), ms(0.7), ms(0.75));
    let mut steps = Vec::new();
    let mut panic_share = 0.0;
    // Fault windows of `len` placed one after another in [start, end).
    let windows = |rng: &mut StdRng, min_ms: u64, max_ms: u64| -> Vec<(Duration, Duration)> {
        let mut out = Vec::new();
        let mut t = start;
        loop {
            let len = Duration::from_millis(rng.random_range(min_ms..=max_ms));
            let gap = Duration::from_millis(rng.random_range(300..=1500));
            if t + len > end {
                break;
            }
            out.push((t, t + len));
            t += len + gap;
        }
        if out.is_empty() {
            // A short run still gets one fault, as long as the fault phase allows.
            out.push((start, end));
        }
        out
    };
    match scenario.name {
        "kill-restart" => {
            // Long enough for the mesh to evict (about 1.5 s) most of the time.
            for (a, b) in windows(&mut rng, 2000, 3500) {
                let node = *order.choose(&mut rng).expect("nodes >= 3");
                steps.push(step(a, Fault::Kill { node }));
                steps.push(step(b, Fault::Restart { node }));
            }
        }
        "pause" => {
            for (a, b) in windows(&mut rng, 2500, 4500) {
                let node = *order.choose(&mut rng).expect("nodes >= 3");
                steps.push(step(a, Fault::Pause { node }));
                steps.push(step(b, Fault::Resume { node }));
            }
        }
        "worker-panic" => {
            panic_share = 0.25;
            let node = *order.choose(&mut rng).expect("nodes >= 3");
            let a = start + (end - start) / 3;
            steps.push(step(a, Fault::Kill { node }));
            steps.push(step(a + Duration::from_secs(3), Fault::Restart { node }));
        }
        "partition" => {
            for (a, b) in windows(&mut rng, 4000, 6000).into_iter().take(2) {
                let size = rng.random_range(1..=(nodes - 1) / 2);
                let mut minority = order.clone();
                minority.shuffle(&mut rng);
                minority.truncate(size);
                minority.sort_unstable();
                steps.push(step(a, Fault::Partition { minority }));
                steps.push(step(b, Fault::HealAll));
            }
        }
        "one-way" => {
            for (a, b) in windows(&mut rng, 2000, 4000) {
                let pair: Vec<NodeIx> = order.choose_multiple(&mut rng, 2).copied().collect();
                steps.push(step(
                    a,
                    Fault::OneWay {
                        from: pair[0],
                        to: pair[1],
                    },
                ));
                steps.push(step(b, Fault::HealAll));
            }
        }
        "lossy" => {
            let delay_ms = rng.random_range(20..=80);
            let loss = f64::from(rng.random_range(10..=30u32)) / 100.0;
            steps.push(step(start, Fault::Lossy { delay_ms, loss }));
        }
        "byzantine-false-down" => {
            for &node in &liar_set {
                steps.push(step(
                    Duration::ZERO,
                    Fault::Byzantine {
                        node,
                        mode: Behaviour::FalseDown,
                    },
                ));
            }
            let victim = *honest.choose(&mut rng).expect("an honest node");
            let a = start + (end - start) / 2;
            steps.push(step(a, Fault::Kill { node: victim }));
            steps.push(step(
                a + Duration::from_secs(3),
                Fault::Restart { node: victim },
            ));
        }
        "byzantine-mixed" => {
            const MODES: [Behaviour; 4] = [
                Behaviour::FalseDown,
                Behaviour::Withhold,
                Behaviour::Equivocate,
                Behaviour::Replay,
            ];
            // Each liar switches to another behaviour every few seconds; the first
            // switch is at once.
            let mut current: Vec<Option<Behaviour>> = vec![None; liar_set.len()];
            let mut t = Duration::ZERO;
            while t < end {
                for (k, &node) in liar_set.iter().enumerate() {
                    let others: Vec<Behaviour> = MODES
                        .into_iter()
                        .filter(|m| Some(*m) != current[k])
                        .collect();
                    let mode = *others.choose(&mut rng).expect("modes");
                    current[k] = Some(mode);
                    steps.push(step(t, Fault::Byzantine { node, mode }));
                }
                t += Duration::from_millis(rng.random_range(2000..=4000));
            }
            let victim = *honest.choose(&mut rng).expect("an honest node");
            let a = start + (end - start) / 2;
            steps.push(step(a, Fault::Pause { node: victim }));
            steps.push(step(
                a + Duration::from_secs(3),
                Fault::Resume { node: victim },
            ));
        }
        "junk-flood" => {
            for &node in &liar_set {
                steps.push(step(
                    start,
                    Fault::Byzantine {
                        node,
                        mode: Behaviour::Junk,
                    },
                ));
            }
        }
        "postgres-outage" => {
            for (a, b) in windows(&mut rng, 2000, 3500).into_iter().take(2) {
                steps.push(step(a, Fault::PostgresStop));
                steps.push(step(b, Fault::PostgresStart));
            }
        }
        "redis-outage" => {
            for (a, b) in windows(&mut rng, 2000, 3500).into_iter().take(2) {
                steps.push(step(a, Fault::RedisKill));
                steps.push(step(b, Fault::RedisRestart));
            }
        }
        "redis-flush" => {
            // The first flush in the first half of the fault phase, a second one (every
            // other seed, roughly) in the second half.
            let mid = start + (end - start) / 2;
            let at = |rng: &mut StdRng, from: Duration, to: Duration| {
                from + Duration::from_millis(rng.random_range(0..=(to - from).as_millis() as u64))
            };
            steps.push(step(at(&mut rng, start, mid), Fault::RedisFlush));
            if rng.random_bool(0.5) {
                steps.push(step(at(&mut rng, mid, end), Fault::RedisFlush));
            }
        }
        "store-slowness" => {
            for (a, b) in windows(&mut rng, 2000, 3500).into_iter().take(2) {
                // Postgres, Redis or both; never neither.
                let (postgres_ms, redis_ms) = match rng.random_range(0..3) {
                    0 => (rng.random_range(50..=200), 0),
                    1 => (0, rng.random_range(50..=200)),
                    _ => (rng.random_range(50..=200), rng.random_range(50..=200)),
                };
                steps.push(step(
                    a,
                    Fault::SlowStores {
                        postgres_ms,
                        redis_ms,
                    },
                ));
                steps.push(step(b, Fault::FastStores));
            }
        }
        other => return bad(format!("scenario `{other}` has no schedule")),
    }
    // In a short run a recovery may fall after the heal: the heal does it anyway.
    for s in &mut steps {
        s.at = s.at.min(heal);
    }
    steps.sort_by_key(|s| s.at);
    steps.push(step(heal, Fault::HealAll));
    Ok(Plan {
        steps,
        panic_share,
        liars: liar_set,
    })
}

fn step(at: Duration, fault: Fault) -> Step {
    Step { at, fault }
}

#[cfg(test)]
mod tests;
