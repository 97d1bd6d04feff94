//! Node presence: rows replace each other per node, lapse after three intervals, are
//! withdrawn only by the run that wrote them and forgotten after a week; running jobs
//! are read by node; and together they give the nodes view its slots, running counts,
//! lost nodes and workers' current jobs.

use std::time::Duration;

use super::*;
use crate::store::StoreError;
use crate::store::activity::{NodeRecord, NodeState};
use crate::store::presence::{FORGET_AFTER, Presence, SlotJob, served_by, with_presence};

fn row(node: &str, queues: &[&str], seen: Millis) -> Presence {
    Presence {
        node: NodeId(node.into()),
        queues: queues.iter().map(|q| q.to_string()).collect(),
        slots: 2,
        working: vec![None, None],
        started_at: T0,
        seen_at: seen,
        every: Duration::from_secs(1),
    }
}

/// A queue with jobs and no row serves nobody; a node's row makes it served while the
/// row is fresh, and says what the node's slots run; a lapsed row makes an up node lost;
/// a withdrawal by another run leaves the row, its own removes it.
pub async fn presence_serves_queues_and_lapses(s: &dyn Store) {
    let id = ids(s, vec![job("sleep")], T0).await[0];
    assert!(s.presences().await.unwrap().is_empty());
    assert!(served_by(&[], T0).is_empty());

    let mut n1 = row("n1", &["default", "other"], T0);
    s.announce(&n1).await.unwrap();
    let rows = s.presences().await.unwrap();
    assert_eq!(rows, [n1.clone()], "the row reads back as written");
    assert_eq!(served_by(&rows, T0)["default"], [NodeId("n1".into())]);

    let claimed = s.claim(&request("n1", 1, T0)).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let running = s.running_jobs(100).await.unwrap();
    assert_eq!(running.len(), 1, "{running:?}");
    assert_eq!(
        (
            running[0].id,
            running[0].kind.as_str(),
            running[0].queue.as_str()
        ),
        (id, "sleep", "default")
    );
    assert_eq!(running[0].node, Some(NodeId("n1".into())));

    // The next refresh replaces the row: one row per node.
    let t1 = T0.plus(Duration::from_secs(1));
    n1.seen_at = t1;
    n1.working = vec![None, Some(SlotJob { job: id, at: T0 })];
    s.announce(&n1).await.unwrap();
    let rows = s.presences().await.unwrap();
    assert_eq!(rows, [n1.clone()]);

    let mut member = NodeRecord::new(NodeId("n1".into()));
    member.state = NodeState::Up;
    let nodes = with_presence(vec![member.clone()], &rows, &running, t1);
    assert_eq!(nodes.len(), 1);
    let n = &nodes[0];
    assert_eq!(
        (n.state, n.running, n.slots, n.seen_at),
        (NodeState::Up, 1, Some(2), Some(t1))
    );
    assert_eq!(n.workers[0].worker, WorkerId("n1/w1".into()));
    assert_eq!(n.workers[0].current_job.as_ref().map(|j| j.id), Some(id));

    // Three intervals of silence: the row lapses.
    let late = t1.plus(Duration::from_millis(3001));
    assert!(
        served_by(&rows, late).is_empty(),
        "no live node serves default"
    );
    let nodes = with_presence(vec![member], &rows, &running, late);
    assert_eq!(nodes[0].state, NodeState::Lost);

    // The job finishes: nothing runs.
    let applied = s.complete(vec![ok(&claimed[0], t1)]).await.unwrap();
    assert_eq!(applied, [CompletionResult::Applied]);
    assert!(s.running_jobs(100).await.unwrap().is_empty());

    // Only the run that wrote the row withdraws it.
    let other_run = T0.plus(Duration::from_millis(1));
    assert!(!s.withdraw(&NodeId("n1".into()), other_run).await.unwrap());
    assert_eq!(s.presences().await.unwrap().len(), 1);
    assert!(s.withdraw(&NodeId("n1".into()), T0).await.unwrap());
    assert!(s.presences().await.unwrap().is_empty());

    // A row silent for longer than FORGET_AFTER goes with the next announcement.
    s.announce(&row("gone", &["default"], T0)).await.unwrap();
    let week = T0.plus(FORGET_AFTER + Duration::from_secs(1));
    s.announce(&row("n2", &["default"], week)).await.unwrap();
    let nodes: Vec<NodeId> = s
        .presences()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.node)
        .collect();
    assert_eq!(nodes, [NodeId("n2".into())]);

    // A row no node would write is refused, and nothing changes.
    let mut bad = row("n3", &["no spaces"], week);
    let e = s.announce(&bad).await.unwrap_err();
    assert!(matches!(e, StoreError::Invalid(_)), "{e:?}");
    bad.queues = vec!["q".into()];
    bad.slots = 0;
    assert!(matches!(
        s.announce(&bad).await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(s.presences().await.unwrap().len(), 1);
}
