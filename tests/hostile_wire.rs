//! Hostile input for the membership wire decoders: every [`Message`] and [`Direct`]
//! frame a peer can send is one version byte and a bincode body. Whatever the bytes,
//! decoding must return a value or a `RejectReason` that says what was wrong, never
//! panic, and never allocate in proportion to a length the input merely claims.
//!
//! The case budget is fixed (and small) so the suite costs seconds in CI.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use jobmesh::clock::Millis;
use jobmesh::membership::{
    Certificate, Direct, Heartbeat, JoinCertificate, Liveness, MAX_DIRECT_BYTES, MAX_MESSAGE_BYTES,
    Message, RejectReason, SignedHeartbeat, SignedVote, Verdict, Vote, WIRE_VERSION, decode,
    decode_direct, encode, encode_direct,
};
use libp2p::identity::Keypair;
use proptest::prelude::*;

/// Counts the largest single allocation made by the current thread while armed, so a
/// test can show that a decoder did not trust a claimed length. Thread-local, because
/// the test harness runs other tests on other threads meanwhile.
struct Tracking;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn note(size: usize) {
    // `try_with`: the thread-locals may already be gone while a thread exits.
    let _ = ARMED.try_with(|armed| {
        if armed.get() {
            let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
        }
    });
}

#[global_allocator]
static ALLOC: Tracking = Tracking;

/// Runs `f` and returns its result with the largest single allocation it made.
fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|l| l.set(0));
    ARMED.with(|a| a.set(true));
    let out = f();
    ARMED.with(|a| a.set(false));
    (out, LARGEST.with(Cell::get))
}

const CASES: u32 = 256;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        // Shrinking a wire input is cheap; keep the default bound on it.
        ..ProptestConfig::default()
    }
}

fn vote(observer: &Keypair, subject: &Keypair, seq: u64) -> SignedVote {
    SignedVote::sign(
        Vote {
            subject: subject.public().to_peer_id(),
            epoch: 4,
            view: 0xdead_beef,
            observer: observer.public().to_peer_id(),
            incarnation: 9,
            verdict: if seq.is_multiple_of(2) {
                Verdict::Down
            } else {
                Verdict::Up
            },
            seq,
        },
        observer,
    )
    .expect("signing a vote")
}

/// One valid encoding of every `Message` and `Direct` variant, to mutate.
fn valid_encodings() -> Vec<Vec<u8>> {
    let a = Keypair::generate_ed25519();
    let b = Keypair::generate_ed25519();
    let cluster = Keypair::generate_ed25519();
    let join = JoinCertificate::issue(&cluster, a.public().to_peer_id(), Millis(1_764_000_000_000))
        .expect("signing a join certificate");
    let hb = |join| {
        Message::Heartbeat(
            SignedHeartbeat::sign(
                Heartbeat {
                    member: a.public().to_peer_id(),
                    incarnation: 1,
                    seq: u64::MAX,
                    epoch: 2,
                    join,
                },
                &a,
            )
            .expect("signing a heartbeat"),
        )
    };
    let cert = Certificate {
        subject: b.public().to_peer_id(),
        incarnation: 9,
        epoch: 4,
        votes: (0..3).map(|i| vote(&a, &b, i * 2)).collect(),
    };
    vec![
        encode(&hb(None)),
        encode(&hb(Some(join))),
        encode(&Message::Vote(vote(&a, &b, 1))),
        encode(&Message::Certificate(cert.clone())),
        encode_direct(&Direct::Liveness(Liveness {
            incarnation: 1,
            seq: 2,
            epoch: 3,
        })),
        encode_direct(&Direct::Certificate(cert)),
    ]
}

/// A rejection must say what was wrong: a known reason, with text for `Undecodable`.
fn assert_clear(err: &RejectReason) {
    match err {
        RejectReason::Undecodable(why) => assert!(!why.trim().is_empty(), "{err:?}"),
        RejectReason::Empty | RejectReason::WrongVersion(_) => {}
        other => panic!("a decoder returned a non-decoding reason: {other:?}"),
    }
    assert!(!err.to_string().is_empty());
}

/// Decodes `bytes` both ways, checking the error (if any) is clear and that no single
/// allocation exceeded what the input could justify.
fn decode_both(bytes: &[u8]) {
    let (msg, largest) = largest_allocation(|| decode(bytes));
    if let Err(e) = &msg {
        assert_clear(e);
    }
    assert!(
        largest <= MAX_MESSAGE_BYTES.max(bytes.len()) * 2,
        "decoding {} bytes allocated {largest} bytes at once",
        bytes.len()
    );
    let (direct, largest) = largest_allocation(|| decode_direct(bytes));
    if let Err(e) = &direct {
        assert_clear(e);
    }
    assert!(
        largest <= MAX_DIRECT_BYTES.max(bytes.len()) * 2,
        "decoding {} bytes allocated {largest} bytes at once",
        bytes.len()
    );
    // What decodes re-encodes to the same bytes: the format has one encoding per value,
    // so a mutated frame can never pass as a different-looking copy of a valid one.
    if let Ok(m) = msg {
        assert_eq!(encode(&m), bytes);
    }
    if let Ok(d) = direct {
        assert_eq!(encode_direct(&d), bytes);
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        decode_both(&bytes);
    }

    #[test]
    fn arbitrary_bodies_behind_the_right_version_never_panic(
        body in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut bytes = vec![WIRE_VERSION];
        bytes.extend_from_slice(&body);
        decode_both(&bytes);
    }

    #[test]
    fn mutated_valid_frames_never_panic(
        which in 0usize..6,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut bytes = valid_encodings().swap_remove(which);
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len()));
        }
        decode_both(&bytes);
    }

    #[test]
    fn every_truncation_of_a_valid_frame_is_refused(which in 0usize..6) {
        let bytes = valid_encodings().swap_remove(which);
        for cut in 0..bytes.len() {
            let short = &bytes[..cut];
            let result = if which < 4 {
                decode(short).map(|_| ())
            } else {
                decode_direct(short).map(|_| ())
            };
            let err = result.expect_err("a truncated frame decoded");
            assert_clear(&err);
        }
    }
}

#[test]
fn valid_frames_decode() {
    for (i, bytes) in valid_encodings().iter().enumerate() {
        if i < 4 {
            assert_eq!(encode(&decode(bytes).unwrap()), *bytes);
        } else {
            assert_eq!(encode_direct(&decode_direct(bytes).unwrap()), *bytes);
        }
    }
}

/// A bincode varint: tag 253 then a little-endian u64.
fn varint_u64(n: u64) -> Vec<u8> {
    let mut out = vec![253];
    out.extend_from_slice(&n.to_le_bytes());
    out
}

#[test]
fn claimed_huge_lengths_fail_at_once_without_allocating_them() {
    for claim in [u64::MAX, 1 << 32, 4 * 1024 * 1024 * 1024, 1 << 20] {
        // Heartbeat variant, then the member's peer-id bytes claiming `claim` bytes.
        let mut hb = vec![WIRE_VERSION, 0];
        hb.extend(varint_u64(claim));
        hb.extend_from_slice(&[0; 10]);
        // Certificate variant: subject peer id, incarnation, epoch, then a vote list
        // claiming `claim` votes.
        let key = Keypair::generate_ed25519();
        let mut cert = encode(&Message::Certificate(Certificate {
            subject: key.public().to_peer_id(),
            incarnation: 1,
            epoch: 1,
            votes: vec![],
        }));
        assert_eq!(cert.pop(), Some(0), "the empty vote list is the last byte");
        cert.extend(varint_u64(claim));
        cert.extend_from_slice(&[0; 10]);
        let mut direct_cert = cert.clone();
        direct_cert[1] = 1; // Direct::Certificate
        // A vote (and a heartbeat) cut just before the signature, which then claims
        // `claim` bytes: serde would size a `Vec<u8>` from that claim.
        let signed = [
            encode(&Message::Vote(vote(&key, &key, 0))),
            valid_encodings().swap_remove(0),
        ]
        .map(|full| {
            let mut bytes = full[..full.len() - 65].to_vec();
            assert_eq!(
                full[full.len() - 65],
                64,
                "a 64-byte ed25519 signature ends it"
            );
            bytes.extend(varint_u64(claim));
            bytes.extend_from_slice(&[0; 10]);
            bytes
        });
        for bytes in [&hb, &cert, &signed[0], &signed[1]] {
            let (result, largest) = largest_allocation(|| decode(bytes));
            assert_clear(&result.expect_err("a frame claiming more than it holds decoded"));
            assert!(
                largest < 2 * MAX_MESSAGE_BYTES,
                "claim {claim}: one allocation of {largest} bytes"
            );
        }
        let (result, largest) = largest_allocation(|| decode_direct(&direct_cert));
        assert_clear(&result.expect_err("a frame claiming more than it holds decoded"));
        assert!(
            largest < 2 * MAX_MESSAGE_BYTES,
            "claim {claim}: one allocation of {largest} bytes"
        );
    }
}

#[test]
fn oversized_frames_are_refused_unread() {
    let mut big = vec![WIRE_VERSION];
    big.resize(MAX_MESSAGE_BYTES + 2, 0);
    assert_eq!(
        decode(&big),
        Err(RejectReason::Undecodable("message too large".into()))
    );
    big.truncate(MAX_DIRECT_BYTES + 2);
    assert_eq!(
        decode_direct(&big),
        Err(RejectReason::Undecodable("message too large".into()))
    );
}
