//! Same seed, same trace; different seed, different trace.

use std::time::Duration;

use jobmesh_sim::sim::{Behaviour, Op, Scenario, SimConfig, World};

fn run(seed: u64) -> (String, u64) {
    let mut config = SimConfig::new(7, seed);
    config.network.loss = 0.02;
    let mut world = World::new(config).expect("valid config");
    let s = Duration::from_secs;
    let scenario = Scenario::new("determinism", s(14))
        .at(s(1), Op::liar_against(0, Behaviour::FalseDown, 1))
        .at(s(1), Op::liar(2, Behaviour::Junk))
        .at(s(3), Op::Crash(6))
        .at(s(9), Op::Restart(6));
    let report = world.run(&scenario).expect("runs");
    (report.trace_hash, report.outputs)
}

#[test]
fn same_seed_same_trace_hash() {
    let (a, outputs) = run(42);
    assert!(outputs > 1000, "the run did something: {outputs} outputs");
    assert_eq!(run(42), (a.clone(), outputs));
    assert_ne!(run(43).0, a, "a different seed gives a different trace");
}

#[test]
fn builtin_scenarios_replay() {
    use jobmesh_sim::sim::{BUILTINS, Timing};
    let timing = Timing {
        warmup: Duration::from_secs(4),
        window_start: Duration::from_secs(1),
        crashes: 2,
        crash_gap: Duration::from_secs(2),
        settle: Duration::from_secs(5),
    };
    for (name, _) in BUILTINS {
        let hash = |seed| {
            let mut world = World::new(SimConfig::new(5, seed)).expect("valid");
            let scenario = Scenario::builtin(name, &world, timing).expect("builtin");
            world.run(&scenario).expect("runs").trace_hash
        };
        assert_eq!(hash(5), hash(5), "scenario {name} replays");
    }
}
