//! Hostile workflows for the graph check (`dag::plan`): duplicate and unknown names,
//! self loops, cycles of any length, huge step counts and deep `after` chains. Every
//! graph is either planned parents-first or refused with an error that is true of the
//! graph, in time roughly linear in its size and without recursion. (The workflow file
//! parser itself is driven through the binary in `cli/tests/hostile_workflow.rs`.)
//!
//! The case budget is fixed and small so the suite costs seconds in CI.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use jobmesh::dag::{DagError, WorkflowStep, plan};
use jobmesh::job::NewJob;
use proptest::prelude::*;
use serde_json::json;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    }
}

fn step(name: impl Into<String>, after: Vec<String>) -> WorkflowStep {
    WorkflowStep {
        name: name.into(),
        after,
        job: NewJob::new("noop", json!({})),
    }
}

/// Steps named from a small pool (so duplicates happen) with `after` lists drawn from a
/// slightly larger pool (so unknown names and self loops happen).
fn graph() -> impl Strategy<Value = Vec<WorkflowStep>> {
    let name = (0u8..14).prop_map(|i| format!("s{i}"));
    let parent = (0u8..16).prop_map(|i| format!("s{i}"));
    proptest::collection::vec((name, proptest::collection::vec(parent, 0..4)), 0..14)
        .prop_map(|steps| steps.into_iter().map(|(n, a)| step(n, a)).collect())
}

/// Unique names, known parents, and a bias towards forward edges, so most graphs get
/// past the name checks and only some have cycles.
fn named_graph() -> impl Strategy<Value = Vec<WorkflowStep>> {
    (1usize..40)
        .prop_flat_map(|n| {
            (
                Just(n),
                proptest::collection::vec((0..n, 0..n, 0u8..10), 0..3 * n),
            )
        })
        .prop_map(|(n, edges)| {
            let mut after: Vec<Vec<String>> = vec![Vec::new(); n];
            for (a, b, backwards) in edges {
                // Mostly lower -> higher (acyclic); sometimes any direction.
                let (parent, child) = if backwards == 0 || a < b {
                    (a, b)
                } else {
                    (b, a)
                };
                after[child].push(format!("s{parent}"));
            }
            after
                .into_iter()
                .enumerate()
                .map(|(i, a)| step(format!("s{i}"), a))
                .collect()
        })
}

/// Whether the named graph has a cycle: repeatedly remove steps with no remaining
/// parents; a cycle is what is left.
fn has_cycle(steps: &[WorkflowStep]) -> bool {
    let mut parents: BTreeMap<&str, BTreeSet<&str>> = steps
        .iter()
        .map(|s| {
            (
                s.name.as_str(),
                s.after.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    loop {
        let free: Vec<&str> = parents
            .iter()
            .filter(|(_, ps)| ps.is_empty())
            .map(|(n, _)| *n)
            .collect();
        if free.is_empty() {
            return !parents.is_empty();
        }
        for n in free {
            parents.remove(n);
            for ps in parents.values_mut() {
                ps.remove(n);
            }
        }
    }
}

/// Checks `plan`'s answer against the graph it was given.
fn check(steps: Vec<WorkflowStep>) {
    let given = steps.clone();
    let after: HashMap<&str, &Vec<String>> =
        given.iter().map(|s| (s.name.as_str(), &s.after)).collect();
    let mut seen = BTreeSet::new();
    let duplicate = given.iter().find(|s| !seen.insert(s.name.as_str()));
    let unknown = given
        .iter()
        .flat_map(|s| s.after.iter().map(move |p| (s, p)))
        .find(|(_, p)| !after.contains_key(p.as_str()));
    match plan(steps) {
        Ok(planned) => {
            assert!(duplicate.is_none() && unknown.is_none());
            assert!(!has_cycle(&given), "a cyclic graph was planned");
            assert_eq!(planned.len(), given.len());
            let position: HashMap<&str, usize> = planned
                .iter()
                .enumerate()
                .map(|(i, (n, _))| (n.as_str(), i))
                .collect();
            for (pos, (name, job)) in planned.iter().enumerate() {
                let want: BTreeSet<usize> = after[name.as_str()]
                    .iter()
                    .map(|p| position[p.as_str()])
                    .collect();
                let got: BTreeSet<usize> = job.depends_on_index.iter().copied().collect();
                assert_eq!(got, want, "{name}'s links");
                assert!(got.iter().all(|&p| p < pos), "{name} runs before a parent");
            }
        }
        Err(DagError::DuplicateName(n)) => {
            assert_eq!(duplicate.map(|s| s.name.as_str()), Some(n.as_str()));
        }
        Err(DagError::UnknownParent { step, missing }) => {
            assert!(duplicate.is_none());
            assert!(!after.contains_key(missing.as_str()), "{missing} exists");
            assert!(after[step.as_str()].contains(&missing));
        }
        Err(e @ DagError::Cycle(_)) => {
            let DagError::Cycle(path) = &e else {
                unreachable!()
            };
            assert!(duplicate.is_none() && unknown.is_none());
            assert!(path.len() >= 2 && path.first() == path.last(), "{path:?}");
            // Each name runs after the one before it in the message.
            for pair in path.windows(2) {
                assert!(after[pair[1].as_str()].contains(&pair[0]), "{e}");
            }
            assert!(
                e.to_string()
                    .starts_with("workflow has a dependency cycle: ")
            );
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_graph_is_planned_or_refused_truthfully(steps in graph()) {
        check(steps);
    }

    #[test]
    fn named_graphs_are_planned_iff_acyclic(steps in named_graph()) {
        check(steps);
    }
}

fn chain(n: usize) -> Vec<WorkflowStep> {
    (0..n)
        .map(|i| {
            let after = if i == 0 {
                vec![]
            } else {
                vec![format!("s{}", i - 1)]
            };
            step(format!("s{i}"), after)
        })
        .collect()
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let started = Instant::now();
    let out = f();
    (out, started.elapsed())
}

/// Generous for a debug build on a loaded 2-core machine; quadratic work on these
/// sizes would take minutes.
const BOUND: Duration = Duration::from_secs(30);

#[test]
fn a_hundred_thousand_step_chain_is_planned_without_recursion() {
    let n = 100_000;
    let mut steps = chain(n);
    steps.reverse(); // the deepest step first: the order has to be worked out
    let (planned, took) = timed(|| plan(steps).unwrap());
    assert!(took < BOUND, "took {took:?}");
    assert_eq!(planned.first().map(|(n, _)| n.as_str()), Some("s0"));
    assert_eq!(planned[n - 1].1.depends_on_index, vec![n - 2]);
}

#[test]
fn a_hundred_thousand_step_cycle_is_named_whole() {
    let n = 100_000;
    let mut steps = chain(n);
    steps[0].after.push(format!("s{}", n - 1));
    let (result, took) = timed(|| plan(steps));
    assert!(took < BOUND, "took {took:?}");
    let Err(DagError::Cycle(path)) = result else {
        panic!("expected a cycle")
    };
    assert_eq!(path.len(), n + 1);
    assert_eq!(path.first(), path.last());
}

#[test]
fn a_step_after_a_hundred_thousand_parents_or_one_parent_repeated() {
    let n = 100_000;
    let mut steps: Vec<_> = (0..n).map(|i| step(format!("s{i}"), vec![])).collect();
    steps.push(step("last", (0..n).map(|i| format!("s{i}")).collect()));
    steps.push(step("again", vec!["s0".to_string(); n]));
    let (planned, took) = timed(|| plan(steps).unwrap());
    assert!(took < BOUND, "took {took:?}");
    let last = planned.iter().find(|(name, _)| name == "last").unwrap();
    assert_eq!(last.1.depends_on_index.len(), n);
    let again = planned.iter().find(|(name, _)| name == "again").unwrap();
    assert_eq!(again.1.depends_on_index, vec![0]);
}
