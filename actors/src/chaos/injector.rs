//! The fault injector: an [`Interceptor`] that wraps another (the production one,
//! which passes everything) and applies the faults in force. On the way in it drops,
//! loses and delays the mesh's events; on the way out it drops probes of peers whose
//! traffic is dropped (the core then counts them failed at its probe timeout), keeps a
//! withholder's votes back, and adds a Byzantine member's lies, as the protocol core's
//! adversary model ([`Adversary`]) makes them, about once per [`LIE_EVERY`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jobmesh::clock::{Clock, Millis, SystemClock};
use jobmesh::membership::adversary::{Adversary, Lie};
use jobmesh::membership::{Membership, Message, Output, encode};
use libp2p::identity::Keypair;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{mpsc, watch};

use super::ActiveFaults;
use crate::mesh::{Client, MeshEvent, Validation};
use crate::voter::Interceptor;

/// Interval between a Byzantine member's rounds of lies (the voter flushes at least
/// every heartbeat interval, which paces them).
pub const LIE_EVERY: Duration = Duration::from_millis(500);

/// Wraps `inner` with the faults a watch channel carries.
pub(crate) struct FaultInjector<I> {
    inner: I,
    client: Client,
    /// The node key: a Byzantine member signs its lies with it.
    keypair: Keypair,
    faults: watch::Receiver<ActiveFaults>,
    /// Shared by the incoming filter task and the outgoing hook.
    state: Arc<Mutex<Injected>>,
}

/// What the injector keeps between messages.
struct Injected {
    /// The faults in force.
    faults: ActiveFaults,
    /// The liar, while `faults.byzantine` names a behaviour.
    adversary: Option<Adversary>,
    /// Randomness of injected loss and of lies.
    rng: StdRng,
    /// When the next round of lies is due.
    next_lie: Millis,
    /// `voter_panics` already acted on.
    panics_seen: u64,
}

impl Injected {
    /// Takes up a changed faults document.
    fn refresh(&mut self, faults: &watch::Receiver<ActiveFaults>) {
        let current = faults.borrow();
        if *current == self.faults {
            return;
        }
        if current.byzantine != self.faults.byzantine {
            self.adversary = current.byzantine.map(Adversary::new);
        }
        self.faults = current.clone();
        tracing::warn!(faults = ?self.faults, "chaos: injected faults changed");
    }
}

impl<I: Interceptor> FaultInjector<I> {
    /// An injector applying what `faults` carries, now and as it changes.
    pub(crate) fn new(
        inner: I,
        client: Client,
        keypair: Keypair,
        faults: watch::Receiver<ActiveFaults>,
    ) -> Self {
        // Panics asked for before this node started are not this voter's to act on.
        let panics_seen = faults.borrow().voter_panics;
        let state = Injected {
            faults: ActiveFaults::default(),
            adversary: None,
            rng: StdRng::from_rng(&mut rand::rng()),
            next_lie: Millis(i64::MIN),
            panics_seen,
        };
        Self {
            inner,
            client,
            keypair,
            faults,
            state: Arc::new(Mutex::new(state)),
        }
    }
}

/// What happens to one incoming event.
enum Fate {
    Deliver,
    Drop,
    Delay(Duration),
}

impl<I: Interceptor> Interceptor for FaultInjector<I> {
    fn incoming(&self, events: mpsc::Receiver<MeshEvent>) -> mpsc::Receiver<MeshEvent> {
        let mut events = self.inner.incoming(events);
        let (tx, rx) = mpsc::channel(events.max_capacity());
        let (state, faults, client) =
            (self.state.clone(), self.faults.clone(), self.client.clone());
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                let fate = {
                    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
                    s.refresh(&faults);
                    fate(&mut s, &event)
                };
                match fate {
                    Fate::Deliver => {
                        if tx.send(event).await.is_err() {
                            return;
                        }
                    }
                    Fate::Drop => {
                        // Nobody will judge it: free gossipsub's cache slot, forward
                        // nothing, blame no one.
                        if let MeshEvent::Message {
                            message_id,
                            propagation_source,
                            ..
                        } = event
                        {
                            let _ = client
                                .report_validation(
                                    message_id,
                                    propagation_source,
                                    Validation::Ignore,
                                )
                                .await;
                        }
                    }
                    Fate::Delay(d) => {
                        let tx = tx.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(d).await;
                            let _ = tx.send(event).await;
                        });
                    }
                }
            }
        });
        rx
    }

    fn outgoing(&self, outputs: Vec<Output>, core: &Membership, now: Millis) -> Vec<Output> {
        let outputs = self.inner.outgoing(outputs, core, now);
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        guard.refresh(&self.faults);
        if guard.faults.voter_panics > guard.panics_seen {
            guard.panics_seen = guard.faults.voter_panics;
            // Not while holding the lock: the incoming filter goes on after the panic.
            drop(guard);
            panic!("chaos: voter panic injected (voter_panics)");
        }
        let s = &mut *guard;
        let mut out: Vec<Output> = outputs
            .into_iter()
            .filter(|o| !matches!(o, Output::Probe(p) if s.faults.drop_from.contains(p)))
            .filter(|o| !s.adversary.as_ref().is_some_and(|a| a.withholds(o)))
            .collect();
        if let Some(adversary) = s.adversary.as_mut()
            && now >= s.next_lie
        {
            s.next_lie = now.plus(LIE_EVERY);
            for lie in adversary.act(core, &self.keypair, now, &mut s.rng) {
                let output = match lie {
                    Lie::Accuse(vote) => Output::Broadcast(encode(&Message::Vote(vote))),
                    // Gossipsub cannot address one member, nor publish as someone else:
                    // both are published as this node's own (a repeat of the same bytes
                    // is dropped below).
                    Lie::GossipTo { bytes, .. }
                    | Lie::Replay { bytes, .. }
                    | Lie::Broadcast(bytes) => Output::Broadcast(bytes),
                    Lie::Direct { to, bytes } => Output::Send { to, bytes },
                };
                if !out.contains(&output) {
                    out.push(output);
                }
            }
        }
        out
    }
}

/// Decides an incoming event's fate under the faults in force (and lets a replayer
/// remember gossip).
fn fate(s: &mut Injected, event: &MeshEvent) -> Fate {
    let sender = match event {
        MeshEvent::Message {
            propagation_source,
            author,
            data,
            ..
        } => {
            if let Some(a) = s.adversary.as_mut() {
                // Drivers hand the core the author; so does the capture.
                a.observe(
                    author.unwrap_or(*propagation_source),
                    data,
                    SystemClock.now(),
                );
            }
            *propagation_source
        }
        MeshEvent::Direct { peer, .. } => *peer,
        _ => return Fate::Deliver,
    };
    let f = &s.faults;
    if f.drop_from.contains(&sender) || (f.loss > 0.0 && s.rng.random_bool(f.loss)) {
        return Fate::Drop;
    }
    if !f.delay.is_zero() {
        return Fate::Delay(f.delay);
    }
    Fate::Deliver
}
