//! The seam between the voter and the mesh, in the manner of chitchat's `Transport`:
//! everything the voter hears passes [`Interceptor::incoming`], everything its protocol
//! core asks to send passes [`Interceptor::outgoing`]. A production node uses
//! [`Untouched`], which passes both as they are; a chaos build (cargo feature `chaos`)
//! wraps it in a fault injector (`crate::chaos`), so faults live there and nowhere on
//! the production path.

use jobmesh::clock::Millis;
use jobmesh::membership::{Membership, Output};
use tokio::sync::mpsc;

use crate::mesh::MeshEvent;

/// Where the voter's traffic passes on its way in and out.
pub(crate) trait Interceptor: Send + Sync + 'static {
    /// The mesh's events as the voter is to hear them. Called once per voter wiring
    /// (not per restart): the returned channel outlives voter restarts.
    fn incoming(&self, events: mpsc::Receiver<MeshEvent>) -> mpsc::Receiver<MeshEvent>;

    /// What the core asked for (`outputs`), before the voter carries it out, with a look
    /// at the core (a Byzantine member's own process sees its own state, and signs with
    /// its own key).
    fn outgoing(&self, outputs: Vec<Output>, core: &Membership, now: Millis) -> Vec<Output>;
}

/// The production interceptor: nothing is changed on the way in or out.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Untouched;

impl Interceptor for Untouched {
    fn incoming(&self, events: mpsc::Receiver<MeshEvent>) -> mpsc::Receiver<MeshEvent> {
        events
    }

    fn outgoing(&self, outputs: Vec<Output>, _core: &Membership, _now: Millis) -> Vec<Output> {
        outputs
    }
}
