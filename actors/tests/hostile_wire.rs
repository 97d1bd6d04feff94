//! Hostile input for the mesh's own wire codecs: the 18-byte probe frame and the
//! peer-exchange answer, both as pure decoders and through the request-response codecs
//! that read them from a stream. Whatever a peer sends: no panic, a bounded read, and
//! an error that says what was wrong. (The direct-link framing is tested beside its
//! reader in `mesh/direct.rs`; the membership messages in the core crate's
//! `tests/hostile_wire.rs`.)
//!
//! The case budget is fixed and small so the suite costs seconds in CI.

use futures::executor::block_on;
use futures::io::Cursor;
use jobmesh_actors::mesh::peer_exchange::{
    self, MAX_ADDRS_PER_PEER, MAX_PEERS, MAX_RESPONSE_LEN, PeerExchangeCodec, PeerRecord,
    decode_response, encode_response,
};
use jobmesh_actors::mesh::probe::{
    self, FRAME_LEN, MAX_FRAME_LEN, ProbeCodec, ProbeDecodeError, ProbeFrame, ProbeRequest,
    ProbeResponse,
};
use libp2p::request_response::Codec;
use libp2p::{Multiaddr, PeerId, identity::Keypair};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    }
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

fn addr() -> impl Strategy<Value = Multiaddr> {
    (any::<[u8; 4]>(), any::<u16>(), 0u8..3, "[a-z0-9.-]{1,40}").prop_map(
        |(ip, port, form, host)| {
            let text = match form {
                0 => format!("/ip4/{}.{}.{}.{}/tcp/{port}", ip[0], ip[1], ip[2], ip[3]),
                1 => format!(
                    "/ip6/::{:x}/udp/{port}/quic-v1",
                    u16::from_be_bytes([ip[0], ip[1]])
                ),
                _ => format!("/dns/{host}/tcp/{port}"),
            };
            text.parse().expect("a well-formed multiaddr")
        },
    )
}

fn records(max_peers: usize) -> impl Strategy<Value = Vec<PeerRecord>> {
    proptest::collection::vec(
        (
            any::<bool>(),
            proptest::collection::vec(addr(), 0..MAX_ADDRS_PER_PEER + 2),
        ),
        0..max_peers,
    )
    .prop_map(|peers| {
        peers
            .into_iter()
            .map(|(ed25519, addrs)| PeerRecord {
                // Both peer-id forms: identity-hashed ed25519 keys and sha256 hashes.
                peer: if ed25519 {
                    Keypair::generate_ed25519().public().to_peer_id()
                } else {
                    PeerId::random()
                },
                addrs,
            })
            .collect()
    })
}

/// A peer-exchange rejection names a problem in words.
fn assert_clear_px(err: &str) {
    assert!(!err.trim().is_empty(), "empty peer exchange error");
}

fn check_probe_decode(bytes: &[u8]) {
    match ProbeFrame::decode(bytes) {
        // Only exact, well-formed frames decode, and they re-encode to themselves.
        Ok(frame) => assert_eq!(frame.encode().as_slice(), bytes),
        Err(e) => {
            assert!(!e.to_string().is_empty());
            match e {
                ProbeDecodeError::Empty => assert!(bytes.is_empty()),
                ProbeDecodeError::UnsupportedVersion(v) => {
                    assert_eq!(Some(&v), bytes.first());
                    assert_ne!(v, probe::VERSION);
                }
                ProbeDecodeError::BadLength(n) => {
                    assert_eq!(n, bytes.len());
                    assert_ne!(n, FRAME_LEN);
                }
                ProbeDecodeError::UnknownKind(k) => assert_eq!(Some(&k), bytes.get(1)),
                other => panic!("decode returned a stream-level error {other:?}"),
            }
        }
    }
}

fn check_px_decode(bytes: &[u8]) {
    match decode_response(bytes) {
        Ok(records) => {
            assert!(records.len() <= MAX_PEERS);
            assert!(records.iter().all(|r| r.addrs.len() <= MAX_ADDRS_PER_PEER));
        }
        Err(e) => assert_clear_px(&e),
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn probe_decode_never_panics(bytes in bytes(64)) {
        check_probe_decode(&bytes);
    }

    #[test]
    fn probe_mutations_never_panic(
        response in any::<bool>(),
        nonce in any::<u64>(),
        incarnation in any::<u64>(),
        at in 0usize..FRAME_LEN,
        value in any::<u8>(),
        cut in 0usize..=FRAME_LEN + 2,
    ) {
        let frame = if response {
            ProbeFrame::Response(ProbeResponse { nonce, incarnation })
        } else {
            ProbeFrame::Request(ProbeRequest { nonce, incarnation })
        };
        let mut bytes = frame.encode().to_vec();
        prop_assert_eq!(ProbeFrame::decode(&bytes), Ok(frame));
        bytes[at] = value;
        bytes.resize(cut, 0);
        check_probe_decode(&bytes);
    }

    #[test]
    fn probe_codec_reads_any_stream_boundedly(stream in bytes(200)) {
        let mut io = Cursor::new(stream.clone());
        let read = block_on(ProbeCodec.read_request(&probe::PROTOCOL, &mut io));
        // Junk from a peer is a value naming the fault, never an IO error.
        let read = read.expect("reading from memory cannot fail");
        prop_assert!(io.position() <= MAX_FRAME_LEN as u64 + 1);
        match read {
            Ok(req) => prop_assert_eq!(
                ProbeFrame::decode(&stream),
                Ok(ProbeFrame::Request(req))
            ),
            Err(ProbeDecodeError::TooLong) => prop_assert!(stream.len() > MAX_FRAME_LEN),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
        let mut io = Cursor::new(stream.clone());
        let read = block_on(ProbeCodec.read_response(&probe::PROTOCOL, &mut io));
        prop_assert!(io.position() <= MAX_FRAME_LEN as u64 + 1);
        if let Err(e) = read {
            prop_assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
            prop_assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn peer_exchange_decode_never_panics(bytes in bytes(600)) {
        check_px_decode(&bytes);
    }

    #[test]
    fn peer_exchange_decode_never_panics_behind_the_version(bytes in bytes(600)) {
        let mut framed = vec![peer_exchange::VERSION];
        framed.extend_from_slice(&bytes);
        check_px_decode(&framed);
    }

    #[test]
    fn peer_exchange_round_trips_within_bounds(records in records(MAX_PEERS + 3)) {
        let bytes = encode_response(&records);
        prop_assert!(bytes.len() <= MAX_RESPONSE_LEN);
        let back = decode_response(&bytes).expect("our own answer decodes");
        prop_assert_eq!(back.len(), records.len().min(MAX_PEERS));
        for (got, sent) in back.iter().zip(&records) {
            prop_assert_eq!(got.peer, sent.peer);
            let kept: Vec<_> = sent.addrs.iter().take(MAX_ADDRS_PER_PEER).cloned().collect();
            prop_assert_eq!(&got.addrs, &kept);
        }
    }

    #[test]
    fn peer_exchange_mutations_never_panic(
        records in records(4),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut bytes = encode_response(&records);
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len()));
        }
        check_px_decode(&bytes);
    }

    #[test]
    fn peer_exchange_codec_reads_any_stream_boundedly(stream in bytes(300)) {
        let mut io = Cursor::new(stream.clone());
        let read = block_on(PeerExchangeCodec.read_response(&peer_exchange::PROTOCOL, &mut io));
        if let Err(e) = read {
            prop_assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
            prop_assert!(!e.to_string().is_empty());
        }
        let mut io = Cursor::new(stream.clone());
        let read = block_on(PeerExchangeCodec.read_request(&peer_exchange::PROTOCOL, &mut io));
        prop_assert!(io.position() <= 2);
        prop_assert_eq!(read.is_ok(), stream == [peer_exchange::VERSION]);
    }
}

#[test]
fn every_truncation_of_a_peer_exchange_answer_is_refused() {
    let records: Vec<_> = (0..3)
        .map(|i| PeerRecord {
            peer: Keypair::generate_ed25519().public().to_peer_id(),
            addrs: vec![format!("/ip4/10.0.0.{i}/tcp/4001").parse().unwrap()],
        })
        .collect();
    let bytes = encode_response(&records);
    for cut in 0..bytes.len() {
        let err = decode_response(&bytes[..cut]).expect_err("a truncated answer decoded");
        assert_clear_px(&err);
    }
}

#[test]
fn oversized_streams_are_refused_after_reading_only_the_cap() {
    // A peer that sends far more than any valid answer: read one byte past the cap, stop.
    let mut io = Cursor::new(vec![1u8; 4 * MAX_RESPONSE_LEN]);
    let err = block_on(PeerExchangeCodec.read_response(&peer_exchange::PROTOCOL, &mut io))
        .expect_err("an oversized answer was accepted");
    assert!(err.to_string().contains("exceeds"), "{err}");
    assert_eq!(io.position(), MAX_RESPONSE_LEN as u64 + 1);

    let mut io = Cursor::new(vec![1u8; 1 << 20]);
    let read = block_on(ProbeCodec.read_request(&probe::PROTOCOL, &mut io)).unwrap();
    assert_eq!(read, Err(ProbeDecodeError::TooLong));
    assert_eq!(io.position(), MAX_FRAME_LEN as u64 + 1);
}

#[test]
fn peer_exchange_counts_beyond_the_bounds_are_refused_by_name() {
    let err = decode_response(&[peer_exchange::VERSION, 200]).unwrap_err();
    assert!(err.contains("200 peers exceeds"), "{err}");
    let peer = Keypair::generate_ed25519().public().to_peer_id().to_bytes();
    let mut bytes = vec![peer_exchange::VERSION, 1, peer.len() as u8];
    bytes.extend_from_slice(&peer);
    bytes.push(200);
    let err = decode_response(&bytes).unwrap_err();
    assert!(err.contains("200 addresses exceeds"), "{err}");
}
