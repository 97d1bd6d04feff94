//! The other nodes' workers in a node's congestion model.
//!
//! A backlog read from the store is every node's ([`super::fed`]), while the service a
//! node measures is its own workers'. Left alone, a node of a mesh of N equal ones
//! would predict waits N times too long. So each node holds the other nodes' workers
//! per queue (the most jobs each saw running at once lately, as it saved them) and
//! counts only its share of the jobs ahead, `own / (own + theirs)`: the jobs ahead over
//! the throughput of every worker, if the others' run at its pace. The arrival rate
//! needs no such share: a node reading the store counts the arrivals less the other
//! nodes' takes, so the backlog's growth `arrivals - capacity` comes out right (see
//! [`super::fed`]). Nothing of it is saved.

use super::FluidQueue;

impl FluidQueue {
    /// Replaces the other nodes' workers with those of `peers`' own models, each with
    /// the time its node saved it (the caller passes only recent rows): the workers
    /// each saw on a queue within the servers' memory before its save. Only queues this
    /// model has a state for take them. Returns how many peers were given.
    pub fn adopt_peers<'a>(
        &mut self,
        peers: impl IntoIterator<Item = (i64, &'a FluidQueue)>,
    ) -> usize {
        for q in self.queues.values_mut() {
            q.peer_servers = 0.0;
        }
        let mut n = 0;
        for (saved_at_ms, peer) in peers {
            n += 1;
            for (queue, theirs) in &peer.queues {
                let (workers, seen_at) = theirs.servers;
                let recent = saved_at_ms - seen_at <= peer.s.servers_memory_ms;
                if let Some(q) = self.queues.get_mut(queue)
                    && recent
                    && workers.is_finite()
                    && workers > 0.0
                {
                    q.peer_servers += workers;
                }
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::predict::congestion::CongestionPredictor;

    /// Two workers on 500 ms jobs for a minute until `until`.
    fn busy(until: i64) -> FluidQueue {
        let mut m = FluidQueue::default();
        super::super::fed::tests::steady(&mut m, until);
        m
    }

    #[test]
    fn a_backlog_is_shared_with_the_other_nodes_workers() {
        let now = 1_000_000;
        let mut me = busy(now);
        me.set_backlog("q", 400, None, now);
        let alone = me.predict_wait("q", now, 0).unwrap();
        let alone_later = me.predict_wait("q", now, 60_000).unwrap();
        // Two more nodes like it: a third of the jobs ahead are this node's to run.
        let peer = busy(now);
        assert_eq!(me.adopt_peers([(now, &peer), (now, &peer)]), 2);
        assert_eq!(me.servers("q"), Some(6.0));
        let shared = me.predict_wait("q", now, 0).unwrap();
        assert!((shared - alone / 3.0).abs() < 1.0, "{shared} vs {alone}");
        let shared_later = me.predict_wait("q", now, 60_000).unwrap();
        assert!(
            shared_later < alone_later / 2.0,
            "{shared_later} vs {alone_later}"
        );
        // A peer whose workers on the queue are long gone does not count.
        let gone = busy(now - 3_600_000);
        me.adopt_peers([(now, &gone)]);
        assert_eq!(me.servers("q"), Some(2.0));
        assert_eq!(me.predict_wait("q", now, 0).unwrap(), alone);
        // Never saved.
        me.adopt_peers([(now, &peer)]);
        let bytes = bincode::serde::encode_to_vec(&me, bincode::config::standard()).unwrap();
        let (saved, _): (FluidQueue, usize) =
            bincode::serde::decode_from_slice(&bytes, bincode::config::standard()).unwrap();
        assert_eq!(saved.servers("q"), Some(2.0));
    }
}
