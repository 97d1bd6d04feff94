//! The plans: seeded and replayable, healed at the end, valid for every scenario.

use super::*;

fn get(name: &str) -> &'static Scenario {
    find(name).unwrap()
}

#[test]
fn same_seed_same_plan_other_seed_other_plan() {
    let d = Duration::from_secs(20);
    let a = plan(get("kill-restart"), 5, 0, d, 7).unwrap();
    assert_eq!(a, plan(get("kill-restart"), 5, 0, d, 7).unwrap());
    let differs = (8..20).any(|s| plan(get("kill-restart"), 5, 0, d, s).unwrap() != a);
    assert!(differs, "seeds should change the schedule");
}

#[test]
fn every_available_plan_ends_healed_and_keeps_kills_paired() {
    for s in SCENARIOS
        .iter()
        .filter(|s| s.availability != Availability::NotYet)
    {
        for (seed, secs) in (0..40).zip([8, 15].into_iter().cycle()) {
            let liars = usize::from(s.byzantine);
            let p = plan(s, 4, liars, Duration::from_secs(secs), seed).unwrap();
            assert_eq!(p.steps.last().unwrap().fault, Fault::HealAll, "{}", s.name);
            assert!(p.steps.windows(2).all(|w| w[0].at <= w[1].at));
            // Never more than one node down at a time (n = 4 tolerates one).
            let mut down = 0i32;
            for st in &p.steps {
                match st.fault {
                    Fault::Kill { .. } | Fault::Pause { .. } => down += 1,
                    Fault::Restart { .. } | Fault::Resume { .. } => down -= 1,
                    _ => {}
                }
                assert!((0..=1).contains(&down), "{} seed {seed}", s.name);
            }
            assert_eq!(p.liars.len(), liars);
        }
    }
}

#[test]
fn bad_options_are_refused_with_the_reason() {
    let d = Duration::from_secs(20);
    let err = |r: Result<Plan, ChaosError>| r.unwrap_err().to_string();
    assert!(err(plan(get("byzantine-mixed"), 4, 0, d, 1)).contains("--byzantine"));
    assert!(err(plan(get("pause"), 2, 0, d, 1)).contains("at least 3"));
    assert!(
        find("kil-restart")
            .unwrap_err()
            .to_string()
            .contains("kill-restart")
    );
}

/// The store scenarios: redis_postgres, only store faults, each outage or slow
/// window closed before the heal, at most two of them, and every one in the fault
/// phase.
#[test]
fn store_plans_pair_their_faults_inside_the_fault_phase() {
    for name in [
        "postgres-outage",
        "redis-outage",
        "redis-flush",
        "store-slowness",
    ] {
        let s = get(name);
        assert!(s.production && !s.byzantine, "{name}");
        for seed in 0..50 {
            for secs in [8, 20] {
                let d = Duration::from_secs(secs);
                let p = plan(s, 3, 0, d, seed).unwrap();
                assert!(p.needs_stores() && !p.needs_control(), "{name}");
                assert_eq!(p.needs_proxy(), name == "store-slowness");
                assert_eq!(p.heal_at(), d * 3 / 4, "{name}");
                let faults: Vec<&Fault> = p.steps.iter().map(|s| &s.fault).collect();
                let (body, last) = faults.split_at(faults.len() - 1);
                assert_eq!(last, [&Fault::HealAll]);
                assert!(body.iter().all(|f| f.is_store()), "{name} {faults:?}");
                assert!(
                    p.steps[..body.len()].iter().all(|s| s.at < d * 7 / 10),
                    "{name} seed {seed}"
                );
                // Down/up (or slow/fast) alternate, starting down and ending up.
                let mut down = false;
                let mut windows = 0;
                for f in body {
                    match f {
                        Fault::PostgresStop | Fault::RedisKill | Fault::SlowStores { .. } => {
                            assert!(!down, "{name} seed {seed}: {faults:?}");
                            down = true;
                            windows += 1;
                        }
                        Fault::PostgresStart | Fault::RedisRestart | Fault::FastStores => {
                            assert!(down, "{name} seed {seed}: {faults:?}");
                            down = false;
                        }
                        Fault::RedisFlush => windows += 1,
                        other => panic!("{name}: unexpected {other:?}"),
                    }
                }
                assert!(!down && (1..=2).contains(&windows), "{name} {faults:?}");
            }
        }
    }
}

#[test]
fn store_plans_vary_with_the_seed_and_slow_at_least_one_link() {
    let d = Duration::from_secs(20);
    let flushes = |seed| {
        plan(get("redis-flush"), 4, 0, d, seed)
            .unwrap()
            .steps
            .iter()
            .filter(|s| s.fault == Fault::RedisFlush)
            .count()
    };
    let counts: Vec<usize> = (0..20).map(flushes).collect();
    assert!(counts.contains(&1) && counts.contains(&2), "{counts:?}");
    for seed in 0..50 {
        for st in plan(get("store-slowness"), 4, 0, d, seed).unwrap().steps {
            if let Fault::SlowStores {
                postgres_ms,
                redis_ms,
            } = st.fault
            {
                assert!(postgres_ms + redis_ms > 0);
                assert!(postgres_ms <= 200 && redis_ms <= 200);
            }
        }
    }
    let a = plan(get("postgres-outage"), 4, 0, d, 1).unwrap();
    assert!((2..30).any(|s| plan(get("postgres-outage"), 4, 0, d, s).unwrap() != a));
}
