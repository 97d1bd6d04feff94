//! Workflows: jobs that depend on each other, submitted together.
//!
//! A workflow names its jobs and lists, for each, the names it runs after. Before
//! anything is stored the graph is checked: unknown names and cycles are refused with
//! the path that closes the cycle, and the jobs are put in an order where every parent
//! comes before its children, so the store can link them by batch index.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::job::NewJob;

/// One job of a workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowStep {
    /// Name unique within the workflow.
    pub name: String,
    /// Names of the steps that must succeed first.
    #[serde(default)]
    pub after: Vec<String>,
    /// The job itself (its `depends_on_index` is filled in by [`plan`]).
    pub job: NewJob,
}

/// Why a workflow was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DagError {
    /// Two steps share a name.
    #[error("workflow step name `{0}` is used twice")]
    DuplicateName(String),
    /// A step runs after a name that is not in the workflow.
    #[error("workflow step `{step}` runs after unknown step `{missing}`")]
    UnknownParent {
        /// The step.
        step: String,
        /// The name it refers to.
        missing: String,
    },
    /// The steps form a cycle; the names go round it.
    #[error("workflow has a dependency cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
}

/// Orders a workflow parents-first and links each job to its parents by batch index.
/// Returns the names in the returned order beside the jobs.
pub fn plan(steps: Vec<WorkflowStep>) -> Result<Vec<(String, NewJob)>, DagError> {
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(steps.len());
    for (i, s) in steps.iter().enumerate() {
        if index.insert(s.name.as_str(), i).is_some() {
            return Err(DagError::DuplicateName(s.name.clone()));
        }
    }
    let mut parents: Vec<Vec<usize>> = Vec::with_capacity(steps.len());
    for s in &steps {
        let mut ps = Vec::with_capacity(s.after.len());
        for p in &s.after {
            let &pi = index
                .get(p.as_str())
                .ok_or_else(|| DagError::UnknownParent {
                    step: s.name.clone(),
                    missing: p.clone(),
                })?;
            ps.push(pi);
        }
        ps.sort_unstable();
        ps.dedup();
        parents.push(ps);
    }
    let order = topological_order(&parents).map_err(|cycle| {
        DagError::Cycle(cycle.into_iter().map(|i| steps[i].name.clone()).collect())
    })?;
    let mut position = vec![0usize; steps.len()];
    for (pos, &i) in order.iter().enumerate() {
        position[i] = pos;
    }
    let mut slots: Vec<Option<WorkflowStep>> = steps.into_iter().map(Some).collect();
    let mut out = Vec::with_capacity(slots.len());
    for &i in &order {
        let mut step = slots[i].take().expect("each step is placed once");
        let mut linked: Vec<usize> = parents[i].iter().map(|&p| position[p]).collect();
        linked.sort_unstable();
        step.job.depends_on_index = linked;
        out.push((step.name, step.job));
    }
    Ok(out)
}

/// Kahn's algorithm over `parents[i]` (edges parent -> i). On a cycle, returns the
/// nodes of one cycle in order, the first repeated at the end.
fn topological_order(parents: &[Vec<usize>]) -> Result<Vec<usize>, Vec<usize>> {
    let n = parents.len();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut missing: Vec<usize> = vec![0; n];
    for (i, ps) in parents.iter().enumerate() {
        missing[i] = ps.len();
        for &p in ps {
            children[p].push(i);
        }
    }
    // A BTreeMap keeps the order stable: ready steps go in submission order.
    let mut ready: BTreeMap<usize, ()> = (0..n)
        .filter(|&i| missing[i] == 0)
        .map(|i| (i, ()))
        .collect();
    let mut order = Vec::with_capacity(n);
    while let Some((i, ())) = ready.pop_first() {
        order.push(i);
        for &c in &children[i] {
            missing[c] -= 1;
            if missing[c] == 0 {
                ready.insert(c, ());
            }
        }
    }
    if order.len() == n {
        return Ok(order);
    }
    Err(find_cycle(parents, &missing))
}

/// Walks parent links among the unplaced nodes until one repeats.
fn find_cycle(parents: &[Vec<usize>], missing: &[usize]) -> Vec<usize> {
    let start = (0..parents.len())
        .find(|&i| missing[i] > 0)
        .expect("a cycle leaves nodes unplaced");
    let mut seen: HashMap<usize, usize> = HashMap::new();
    let mut path = Vec::new();
    let mut at = start;
    loop {
        if let Some(&pos) = seen.get(&at) {
            let mut cycle: Vec<usize> = path[pos..].to_vec();
            cycle.reverse(); // parent -> child reading order
            cycle.push(cycle[0]);
            return cycle;
        }
        seen.insert(at, path.len());
        path.push(at);
        at = *parents[at]
            .iter()
            .find(|&&p| missing[p] > 0)
            .expect("an unplaced node has an unplaced parent");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn step(name: &str, after: &[&str]) -> WorkflowStep {
        WorkflowStep {
            name: name.into(),
            after: after.iter().map(|s| s.to_string()).collect(),
            job: NewJob::new("noop", json!({})),
        }
    }

    #[test]
    fn orders_parents_first_and_links_by_index() {
        let planned = plan(vec![
            step("report", &["fetch", "clean"]),
            step("clean", &["fetch"]),
            step("fetch", &[]),
        ])
        .unwrap();
        let names: Vec<_> = planned.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["fetch", "clean", "report"]);
        assert_eq!(planned[1].1.depends_on_index, vec![0]);
        assert_eq!(planned[2].1.depends_on_index, vec![0, 1]);
    }

    #[test]
    fn rejects_cycles_naming_them() {
        let err = plan(vec![
            step("a", &["c"]),
            step("b", &["a"]),
            step("c", &["b"]),
            step("d", &[]),
        ])
        .unwrap_err();
        match &err {
            DagError::Cycle(path) => {
                assert_eq!(path.first(), path.last());
                assert_eq!(path.len(), 4, "{path:?}");
            }
            other => panic!("expected a cycle, got {other:?}"),
        }
        assert!(
            err.to_string()
                .starts_with("workflow has a dependency cycle: ")
        );
    }

    #[test]
    fn rejects_self_loops_unknown_names_and_duplicates() {
        assert!(matches!(
            plan(vec![step("a", &["a"])]),
            Err(DagError::Cycle(_))
        ));
        assert_eq!(
            plan(vec![step("a", &["zz"])]).unwrap_err(),
            DagError::UnknownParent {
                step: "a".into(),
                missing: "zz".into()
            }
        );
        assert_eq!(
            plan(vec![step("a", &[]), step("a", &[])]).unwrap_err(),
            DagError::DuplicateName("a".into())
        );
    }

    proptest::proptest! {
        #[test]
        fn any_acyclic_graph_is_planned_parents_first(edges in proptest::collection::vec((0usize..12, 0usize..12), 0..40)) {
            // Only edges from lower to higher index: acyclic by construction.
            let mut steps: Vec<WorkflowStep> = (0..12).map(|i| step(&format!("s{i}"), &[])).collect();
            for (a, b) in edges {
                if a < b { steps[b].after.push(format!("s{a}")); }
            }
            steps.reverse();
            let planned = plan(steps).unwrap();
            for (pos, (_, job)) in planned.iter().enumerate() {
                for &p in &job.depends_on_index {
                    proptest::prop_assert!(p < pos);
                }
            }
        }
    }
}
