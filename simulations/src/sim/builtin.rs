//! The named built-in scenarios the binary runs, placed for a given world (its size, `f`
//! and monitoring decide who lies and who is cut off).

use std::time::Duration;

use jobmesh::membership::Monitoring;
use jobmesh::membership::adversary::Behaviour;

use super::SimError;
use super::network::Latency;
use super::script::{Op, Scenario};
use super::world::World;

/// Names of the built-in scenarios.
pub const BUILTINS: &[(&str, &str)] = &[
    ("steady", "no faults: steady-state traffic"),
    ("crash", "crash c nodes a few seconds apart after warm-up"),
    (
        "liars",
        "f liars (observers of the target) accuse a healthy node and forge certificates; one crash",
    ),
    (
        "withhold",
        "f observers of a node withhold their votes; that node crashes",
    ),
    (
        "byzantine",
        "f liars equivocate, flood junk and replay old gossip; one crash",
    ),
    (
        "partition",
        "a minority side is cut off for 15 s, then the partition heals",
    ),
    ("lossy", "5% loss and a long-tailed latency; one crash"),
    (
        "oneway",
        "f one-way link cuts towards observers of one node; another node crashes",
    ),
    ("churn", "a node crashes, is evicted, restarts and rejoins"),
];

/// Knobs of the built-in scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Time before the first fault (the traffic window ends here).
    pub warmup: Duration,
    /// When the traffic window starts (after the start-up announcements).
    pub window_start: Duration,
    /// Crashes in the `crash` scenario.
    pub crashes: usize,
    /// Time between those crashes.
    pub crash_gap: Duration,
    /// Time after the last fault for things to settle.
    pub settle: Duration,
}

impl Default for Timing {
    /// 25 s warm-up with a 20 s window (exactly one periodic announcement per node),
    /// three crashes 4 s apart, 10 s to settle.
    fn default() -> Self {
        Self {
            warmup: Duration::from_secs(25),
            window_start: Duration::from_secs(5),
            crashes: 3,
            crash_gap: Duration::from_secs(4),
            settle: Duration::from_secs(10),
        }
    }
}

impl Scenario {
    /// The built-in scenario `name` for `world` (its size, `f` and monitoring decide
    /// who lies and who is cut off).
    pub fn builtin(name: &str, world: &World, t: Timing) -> Result<Self, SimError> {
        let n = world.len();
        let f = world.membership.f;
        let w = t.warmup;
        let secs = Duration::from_secs;
        let base = |d: Duration| Scenario::new(name, d).window(t.window_start, w);
        // The node faults happen to; the crashed "other" node for Byzantine cases.
        let victim = n - 1;
        let other = n / 2;
        let scenario = match name {
            "steady" => base(w),
            "crash" => {
                let c = t.crashes.clamp(1, n.saturating_sub(2 * f + 2).max(1));
                let gap = t.crash_gap;
                let mut s = base(w + gap * (c as u32 - 1) + t.settle);
                for j in 0..c {
                    s = s.at(w + gap * j as u32, Op::Crash(n - 1 - j * (n / c).max(1)));
                }
                s
            }
            "liars" => {
                let liars = observers_of(world, victim, f, &[other]);
                let mut s = base(w + t.settle).at(w, Op::Crash(other));
                for l in liars {
                    s = s.at(secs(1), Op::liar_against(l, Behaviour::FalseDown, victim));
                }
                s
            }
            "withhold" => {
                let liars = observers_of(world, victim, f, &[]);
                let mut s = base(w + t.settle).at(w, Op::Crash(victim));
                for l in liars {
                    s = s.at(secs(1), Op::liar(l, Behaviour::Withhold));
                }
                s
            }
            "byzantine" => {
                let liars = observers_of(world, victim, f, &[other]);
                let kinds = [Behaviour::Equivocate, Behaviour::Junk, Behaviour::Replay];
                let mut s = base(w + t.settle).at(w, Op::Crash(other));
                for (j, l) in liars.into_iter().enumerate() {
                    s = s.at(secs(1), Op::liar_against(l, kinds[j % kinds.len()], victim));
                }
                s
            }
            "partition" => {
                // A side of under a third: the rest keeps a quorum (> n/2 and >= 2f+1).
                let m = ((n - 1) / 3).clamp(1, 10.max(n / 100));
                let minority: Vec<usize> = (0..m).collect();
                base(w + secs(15) + t.settle * 2)
                    .at(w, Op::Partition(vec![minority]))
                    .at(w + secs(15), Op::Heal)
            }
            "lossy" => base(w + t.settle)
                .at(Duration::ZERO, Op::SetLoss(0.05))
                .at(
                    Duration::ZERO,
                    Op::SetLatency(Latency::Exponential {
                        base_ms: 5,
                        mean_ms: 30.0,
                        cap_ms: 400,
                    }),
                )
                .at(w, Op::Crash(victim)),
            "oneway" => {
                let cut = observers_of(world, victim, f, &[other]);
                let mut s = base(w + t.settle).at(w, Op::Crash(other));
                for o in cut {
                    s = s.at(
                        secs(1),
                        Op::CutLink {
                            from: victim,
                            to: o,
                        },
                    );
                }
                s
            }
            "churn" => base(w + secs(10) + t.settle)
                .at(w, Op::Crash(victim))
                .at(w + secs(10), Op::Restart(victim)),
            other => return Err(SimError::UnknownScenario(other.to_string())),
        };
        Ok(scenario)
    }
}

/// Up to `count` nodes that observe `subject` at epoch 0 (any other nodes under
/// all-to-all monitoring), skipping `exclude`: liars placed where their votes count.
fn observers_of(world: &World, subject: usize, count: usize, exclude: &[usize]) -> Vec<usize> {
    let Some(core) = world.core(subject) else {
        return Vec::new();
    };
    let monitoring = world.membership.monitoring;
    let ids: Vec<usize> = match monitoring {
        Monitoring::AllToAll => (0..world.len()).filter(|j| *j != subject).collect(),
        Monitoring::Observers { .. } => core
            .view()
            .observers_of(&world.id(subject), 0, monitoring)
            .iter()
            .filter_map(|p| world.index_of(p))
            .collect(),
    };
    ids.into_iter()
        .filter(|j| !exclude.contains(j))
        .take(count)
        .collect()
}
