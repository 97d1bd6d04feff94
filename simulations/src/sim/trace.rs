//! A compact trace of everything the protocol cores asked of the world, and a stable
//! hash of it: the determinism check compares hashes ("same seed, same trace").

use jobmesh::clock::Millis;
use jobmesh::membership::Output;
use libp2p::identity::PeerId;

/// FNV-1a, 64-bit. Written out rather than `std`'s hasher, whose output may change
/// between Rust releases: a recorded hash must stay comparable.
#[derive(Debug, Clone, Copy)]
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    fn eat(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn eat_u64(&mut self, v: u64) {
        self.eat(&v.to_le_bytes());
    }
}

/// One recorded output, for reading (kept only when asked for: a 1000-node run
/// produces millions).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TraceRecord {
    /// Simulated time in milliseconds since the start of the run.
    pub at_ms: i64,
    /// The node that produced the output.
    pub node: usize,
    /// The output, abbreviated: `bcast <len> <hash>`, `send <to> <len>`,
    /// `probe <peer>`, `timer <ms>`, `event <Debug>`.
    pub what: String,
}

/// The running trace: a hash over every output plus, optionally, the first records.
#[derive(Debug, Clone)]
pub struct Trace {
    hash: Fnv,
    outputs: u64,
    keep: usize,
    records: Vec<TraceRecord>,
    start: Millis,
}

impl Trace {
    /// A trace of a run starting at `start` that keeps up to `keep` readable records.
    pub fn new(start: Millis, keep: usize) -> Self {
        Self {
            hash: Fnv::new(),
            outputs: 0,
            keep,
            records: Vec::new(),
            start,
        }
    }

    /// Records one output of `node` at `now`; `index` maps peer ids to node indices.
    pub fn record(
        &mut self,
        now: Millis,
        node: usize,
        output: &Output,
        index: impl Fn(&PeerId) -> usize,
    ) {
        self.outputs += 1;
        let h = &mut self.hash;
        h.eat_u64(now.0 as u64);
        h.eat_u64(node as u64);
        let keep = self.records.len() < self.keep;
        let what = match output {
            Output::Broadcast(bytes) => {
                h.eat(&[1]);
                h.eat(bytes);
                keep.then(|| {
                    let mut b = Fnv::new();
                    b.eat(bytes);
                    format!("bcast {} {:016x}", bytes.len(), b.0)
                })
            }
            Output::Send { to, bytes } => {
                let to = index(to);
                h.eat(&[2]);
                h.eat_u64(to as u64);
                h.eat(bytes);
                keep.then(|| format!("send {to} {}", bytes.len()))
            }
            Output::Probe(peer) => {
                let peer = index(peer);
                h.eat(&[3]);
                h.eat_u64(peer as u64);
                keep.then(|| format!("probe {peer}"))
            }
            Output::SetTimer(t) => {
                h.eat(&[4]);
                h.eat_u64(t.0 as u64);
                keep.then(|| format!("timer {}", t.0 - self.start.0))
            }
            Output::Event(e) => {
                // Events are rare; their Debug form is deterministic (no maps with
                // random order inside).
                let text = format!("{e:?}");
                h.eat(&[5]);
                h.eat(text.as_bytes());
                keep.then(|| format!("event {text}"))
            }
        };
        if let Some(what) = what {
            self.records.push(TraceRecord {
                at_ms: now.0 - self.start.0,
                node,
                what,
            });
        }
    }

    /// Mixes a world-side happening (scenario operation, liar action) into the hash.
    pub fn note(&mut self, now: Millis, text: &str) {
        self.hash.eat_u64(now.0 as u64);
        self.hash.eat(text.as_bytes());
        if self.records.len() < self.keep {
            self.records.push(TraceRecord {
                at_ms: now.0 - self.start.0,
                node: usize::MAX,
                what: format!("world {text}"),
            });
        }
    }

    /// The hash of everything recorded so far.
    pub fn hash(&self) -> u64 {
        self.hash.0
    }

    /// Outputs recorded so far.
    pub fn outputs(&self) -> u64 {
        self.outputs
    }

    /// The readable records kept.
    pub fn records(&self) -> &[TraceRecord] {
        &self.records
    }
}
