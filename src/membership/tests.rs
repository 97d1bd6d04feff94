//! Unit tests of the state machine driven by hand (no router): one node, crafted inputs.

use super::*;

fn key(i: u8) -> Keypair {
    Keypair::ed25519_from_bytes([i.wrapping_add(1); 32]).unwrap()
}

fn id(i: u8) -> PeerId {
    key(i).public().to_peer_id()
}

fn config(n: u8, f: usize) -> MembershipConfig {
    MembershipConfig::new((0..n).map(id), f)
}

fn node(i: u8, n: u8, f: usize, now: Millis) -> Membership {
    Membership::new(config(n, f), key(i), None, 7, now).unwrap()
}

fn heartbeat(i: u8, incarnation: u64, seq: u64, epoch: u64) -> Vec<u8> {
    let hb = Heartbeat {
        member: id(i),
        incarnation,
        seq,
        epoch,
        join: None,
    };
    encode(&Message::Heartbeat(
        SignedHeartbeat::sign(hb, &key(i)).unwrap(),
    ))
}

fn vote(observer: u8, subject: PeerId, incarnation: u64, verdict: Verdict, seq: u64) -> SignedVote {
    SignedVote::sign(
        Vote {
            subject,
            epoch: 0,
            // An unknown member set: receivers treat the vote as from another view.
            view: 0,
            observer: id(observer),
            incarnation,
            verdict,
            seq,
        },
        &key(observer),
    )
    .unwrap()
}

fn vote_bytes(sv: &SignedVote) -> Vec<u8> {
    encode(&Message::Vote(sv.clone()))
}

fn events(m: &mut Membership) -> Vec<MembershipEvent> {
    m.drain_outputs()
        .into_iter()
        .filter_map(|o| match o {
            Output::Event(e) => Some(e),
            _ => None,
        })
        .collect()
}

#[test]
fn rejects_small_clusters_and_strangers() {
    assert!(matches!(
        Membership::new(config(3, 1), key(0), None, 1, Millis(0)),
        Err(ConfigError::TooFewMembers { .. })
    ));
    assert_eq!(
        Membership::new(config(4, 1), key(9), None, 1, Millis(0)).err(),
        Some(ConfigError::NotAdmitted)
    );
}

#[test]
fn first_tick_heartbeats_and_sets_timer() {
    let mut m = node(0, 4, 1, Millis(1000));
    let out = m.drain_outputs();
    assert!(matches!(out.as_slice(), [Output::SetTimer(_)]));
    m.handle_tick(Millis(1000));
    let out = m.drain_outputs();
    assert!(out.iter().any(|o| matches!(o, Output::Broadcast(_))));
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::SetTimer(t) if *t > Millis(1000)))
    );
}

#[test]
fn heartbeat_replay_and_forgery() {
    let mut m = node(0, 4, 1, Millis(0));
    let hb = heartbeat(1, 5, 1, 0);
    assert_eq!(m.handle_message(id(1), &hb, Millis(10)), Acceptance::Accept);
    assert_eq!(
        m.handle_message(id(1), &hb, Millis(20)),
        Acceptance::Ignore(IgnoreReason::Replay)
    );
    // Relayed under another source: the transport source must be the signer.
    assert!(matches!(
        m.handle_message(id(2), &heartbeat(1, 5, 2, 0), Millis(20)),
        Acceptance::Reject(RejectReason::SignerMismatch { .. })
    ));
    // Signed by the wrong key.
    let forged = Heartbeat {
        member: id(1),
        incarnation: 6,
        seq: 1,
        epoch: 0,
        join: None,
    };
    let forged = SignedHeartbeat::sign(forged, &key(2)).unwrap();
    assert_eq!(
        m.handle_message(id(1), &encode(&Message::Heartbeat(forged)), Millis(30)),
        Acceptance::Reject(RejectReason::BadSignature)
    );
    // A stranger's heartbeat is ignored, not admitted.
    assert_eq!(
        m.handle_message(id(9), &heartbeat(9, 1, 1, 0), Millis(30)),
        Acceptance::Ignore(IgnoreReason::NotMember)
    );
    assert!(!m.is_member(&id(9)));
}

#[test]
fn votes_replayed_forged_and_from_non_members() {
    let mut m = node(0, 4, 1, Millis(0));
    let subject = id(3);
    let v = vote(1, subject, 0, Verdict::Down, 1);
    assert_eq!(
        m.handle_message(id(1), &vote_bytes(&v), Millis(1)),
        Acceptance::Accept
    );
    assert_eq!(
        m.handle_message(id(1), &vote_bytes(&v), Millis(2)),
        Acceptance::Ignore(IgnoreReason::Replay)
    );
    let mut tampered = vote(2, subject, 0, Verdict::Down, 1);
    tampered.signature[0] ^= 0x40;
    assert_eq!(
        m.handle_message(id(2), &vote_bytes(&tampered), Millis(3)),
        Acceptance::Reject(RejectReason::BadSignature)
    );
    let stranger = vote(9, subject, 0, Verdict::Down, 1);
    assert!(matches!(
        m.handle_message(id(9), &vote_bytes(&stranger), Millis(3)),
        Acceptance::Reject(RejectReason::NonMemberVoter(_))
    ));
    let selfvote = vote(3, subject, 0, Verdict::Down, 1);
    assert_eq!(
        m.handle_message(id(3), &vote_bytes(&selfvote), Millis(3)),
        Acceptance::Reject(RejectReason::SelfVote)
    );
    assert!(m.is_member(&subject), "one Down vote evicts nobody");
}

#[test]
fn certificate_from_votes_evicts_and_is_gossiped() {
    let mut m = node(0, 4, 1, Millis(0));
    m.drain_outputs();
    let subject = id(3);
    for obs in [1, 2] {
        let v = vote(obs, subject, 0, Verdict::Down, 1);
        assert_eq!(
            m.handle_message(id(obs), &vote_bytes(&v), Millis(1)),
            Acceptance::Accept
        );
    }
    assert!(m.is_member(&subject), "2f votes are not enough");
    // A withdrawn vote does not count: observer 2 withdraws, then a third Down arrives.
    let up = vote(2, subject, 0, Verdict::Up, 2);
    assert_eq!(
        m.handle_message(id(2), &vote_bytes(&up), Millis(2)),
        Acceptance::Accept
    );
    // Replaying observer 2's older Down after its Up is ignored.
    let old = vote(2, subject, 0, Verdict::Down, 1);
    assert_eq!(
        m.handle_message(id(2), &vote_bytes(&old), Millis(3)),
        Acceptance::Ignore(IgnoreReason::Replay)
    );
    // Node 0 cannot vote here (it has not probed), so a certificate needs all three of
    // 1, 2 and another: 2 votes Down again with a newer seq.
    let again = vote(2, subject, 0, Verdict::Down, 3);
    assert_eq!(
        m.handle_message(id(2), &vote_bytes(&again), Millis(4)),
        Acceptance::Accept
    );
    assert!(m.is_member(&subject), "still 2 of 3");
    m.drain_outputs();
    // A certificate padded with a non-member's vote does not verify.
    let cert = Certificate {
        subject,
        incarnation: 0,
        epoch: 0,
        votes: vec![
            vote(1, subject, 0, Verdict::Down, 1),
            vote(2, subject, 0, Verdict::Down, 3),
            vote(9, subject, 0, Verdict::Down, 1),
        ],
    };
    assert!(matches!(
        m.handle_message(id(1), &encode(&Message::Certificate(cert)), Millis(5)),
        Acceptance::Reject(RejectReason::BadCertificate(CertificateError::NonMember(_)))
    ));
    // A valid certificate by the three other members (including 0, whose own Down
    // is not in its tally) evicts without node 0 having voted.
    let cert = Certificate {
        subject,
        incarnation: 0,
        epoch: 0,
        votes: vec![
            vote(0, subject, 0, Verdict::Down, 10),
            vote(1, subject, 0, Verdict::Down, 10),
            vote(2, subject, 0, Verdict::Down, 10),
        ],
    };
    assert_eq!(
        m.handle_message(
            id(2),
            &encode(&Message::Certificate(cert.clone())),
            Millis(6)
        ),
        Acceptance::Accept
    );
    assert!(!m.is_member(&subject));
    assert_eq!(m.epoch(), 1);
    let evs = events(&mut m);
    assert!(
        evs.iter()
            .any(|e| matches!(e, MembershipEvent::Evicted { subject: s, .. } if *s == subject))
    );
    // Applying twice changes nothing.
    assert_eq!(
        m.handle_message(id(2), &encode(&Message::Certificate(cert)), Millis(7)),
        Acceptance::Ignore(IgnoreReason::AlreadyApplied)
    );
}

#[test]
fn suspicion_probe_vote_and_refutation() {
    let mut m = node(0, 4, 1, Millis(0));
    let target = id(3);
    // Everyone heartbeats regularly for a while.
    let mut t = 0;
    for round in 1..=10u64 {
        t = round as i64 * 500;
        for p in 1..=3u8 {
            m.handle_message(id(p), &heartbeat(p, 1, round, 0), Millis(t));
        }
        m.handle_tick(Millis(t));
    }
    m.drain_outputs();
    // Target falls silent; the others keep going.
    let mut voted = false;
    let mut round = 10;
    while !voted && t < 20_000 {
        t += 100;
        if t % 500 == 0 {
            round += 1;
            for p in 1..=2u8 {
                m.handle_message(id(p), &heartbeat(p, 1, round, 0), Millis(t));
            }
        }
        m.handle_tick(Millis(t));
        for o in m.drain_outputs() {
            if let Output::Event(MembershipEvent::VoteCast {
                subject, verdict, ..
            }) = o
            {
                assert_eq!(subject, target);
                assert_eq!(verdict, Verdict::Down);
                voted = true;
            }
        }
    }
    assert!(voted, "a silent member is voted Down");
    assert!(m.is_suspected(&target));
    assert!(
        t - 5000 < 3000,
        "vote {} ms after the last heartbeat",
        t - 5000
    );
    // Target refutes with a higher incarnation: suspicion cancelled.
    let acc = m.handle_message(target, &heartbeat(3, 2, 1, 0), Millis(t + 10));
    assert_eq!(acc, Acceptance::Accept);
    assert!(!m.is_suspected(&target));
    assert!(events(&mut m).contains(&MembershipEvent::Refuted {
        peer: target,
        incarnation: 2
    }));
    // Votes about the old incarnation are now stale.
    let stale = vote(1, target, 1, Verdict::Down, 99);
    assert_eq!(
        m.handle_message(id(1), &vote_bytes(&stale), Millis(t + 20)),
        Acceptance::Ignore(IgnoreReason::StaleIncarnation)
    );
}

#[test]
fn down_vote_about_self_bumps_incarnation() {
    let mut m = node(0, 4, 1, Millis(100));
    m.drain_outputs();
    let before = m.incarnation();
    let v = vote(1, m.me(), before, Verdict::Down, 1);
    assert_eq!(
        m.handle_message(id(1), &vote_bytes(&v), Millis(200)),
        Acceptance::Accept
    );
    assert!(m.incarnation() > before);
    let out = m.drain_outputs();
    assert!(out.iter().any(|o| matches!(o, Output::Broadcast(_))));
    assert!(out.contains(&Output::Event(MembershipEvent::SelfRefuted {
        incarnation: m.incarnation()
    })));
    // The same vote again is stale now.
    let v2 = vote(1, m.me(), before, Verdict::Down, 2);
    assert_eq!(
        m.handle_message(id(1), &vote_bytes(&v2), Millis(300)),
        Acceptance::Ignore(IgnoreReason::StaleIncarnation)
    );
}

#[test]
fn own_certificate_makes_node_rejoin_higher() {
    let mut m = node(3, 4, 1, Millis(100));
    let inc = m.incarnation();
    let me = m.me();
    let cert = Certificate {
        subject: me,
        incarnation: inc,
        epoch: 0,
        votes: (0..3).map(|o| vote(o, me, inc, Verdict::Down, 1)).collect(),
    };
    m.drain_outputs();
    assert_eq!(
        m.handle_message(
            id(0),
            &encode(&Message::Certificate(cert.clone())),
            Millis(200)
        ),
        Acceptance::Accept
    );
    assert!(m.incarnation() > inc);
    let evs = events(&mut m);
    assert!(
        evs.iter()
            .any(|e| matches!(e, MembershipEvent::SelfEvicted { .. }))
    );

    // A peer that evicted it readmits it only with the higher incarnation.
    let mut peer = node(0, 4, 1, Millis(0));
    assert_eq!(
        peer.handle_message(id(1), &encode(&Message::Certificate(cert)), Millis(300)),
        Acceptance::Accept
    );
    assert!(!peer.is_member(&me));
    assert_eq!(
        peer.handle_message(me, &heartbeat(3, inc, 5, 1), Millis(310)),
        Acceptance::Ignore(IgnoreReason::StaleIncarnation)
    );
    // It shows the stale node its certificate, point to point (gossip would drop a
    // republished message id as a duplicate).
    let shown = peer
        .drain_outputs()
        .into_iter()
        .find_map(|o| match o {
            Output::Send { to, bytes } if to == me => Some(bytes),
            _ => None,
        })
        .expect("certificate sent to the evicted node");
    assert!(matches!(decode_direct(&shown), Ok(Direct::Certificate(_))));
    // A stale liveness frame gets the same answer, at most once per revote interval.
    assert_eq!(
        peer.handle_direct(me, &liveness(inc, 9), Millis(315)),
        Acceptance::Ignore(IgnoreReason::StaleIncarnation)
    );
    assert!(sends(&peer.drain_outputs()).is_empty());
    assert_eq!(
        peer.handle_message(me, &heartbeat(3, m.incarnation(), 1, 1), Millis(320)),
        Acceptance::Accept
    );
    assert!(peer.is_member(&me));
}

#[test]
fn join_certificate_admits_non_allowlisted() {
    let cluster = Keypair::ed25519_from_bytes([77; 32]).unwrap();
    let mut cfg = config(4, 1);
    cfg.cluster_key = Some(cluster.public());
    let newcomer = key(8);
    let jc = JoinCertificate::issue(&cluster, id(8), Millis(10_000)).unwrap();
    let mut joiner =
        Membership::new(cfg.clone(), newcomer, Some(jc.clone()), 1, Millis(0)).unwrap();
    joiner.handle_tick(Millis(0));
    let hb = joiner
        .drain_outputs()
        .into_iter()
        .find_map(|o| match o {
            Output::Broadcast(b) => Some(b),
            _ => None,
        })
        .unwrap();
    let mut m = Membership::new(cfg.clone(), key(0), None, 1, Millis(0)).unwrap();
    assert_eq!(m.handle_message(id(8), &hb, Millis(5)), Acceptance::Accept);
    assert!(m.is_member(&id(8)));
    // Expired certificates admit nobody.
    let mut late = Membership::new(cfg, key(1), None, 1, Millis(0)).unwrap();
    assert_eq!(
        late.handle_message(id(8), &hb, Millis(20_000)),
        Acceptance::Reject(RejectReason::BadJoinCertificate)
    );
}

#[test]
fn overloaded_observer_abstains() {
    let mut m = node(0, 4, 1, Millis(0));
    m.local_health(10);
    let mut t = 0;
    for round in 1..=40u64 {
        t = round as i64 * 500;
        for p in 1..=2u8 {
            m.handle_message(id(p), &heartbeat(p, 1, round, 0), Millis(t));
        }
        m.handle_tick(Millis(t));
    }
    let _ = t;
    assert!(m.is_suspected(&id(3)));
    assert!(
        !m.drain_outputs()
            .iter()
            .any(|o| matches!(o, Output::Event(MembershipEvent::VoteCast { .. })))
    );
}

#[test]
fn old_and_future_epochs_are_ignored() {
    let mut m = node(0, 4, 1, Millis(0));
    let subject = id(3);
    let mut future = vote(1, subject, 0, Verdict::Down, 1);
    future.vote.epoch = 50;
    let future = SignedVote::sign(future.vote, &key(1)).unwrap();
    assert_eq!(
        m.handle_message(id(1), &vote_bytes(&future), Millis(1)),
        Acceptance::Ignore(IgnoreReason::StaleEpoch)
    );
    // One member reporting epoch 10 does not move us (f = 1); two do.
    m.handle_message(id(1), &heartbeat(1, 1, 1, 10), Millis(2));
    assert_eq!(m.epoch(), 0);
    m.handle_message(id(2), &heartbeat(2, 1, 1, 10), Millis(3));
    assert_eq!(m.epoch(), 10);
    let old = vote(2, subject, 0, Verdict::Down, 5);
    assert_eq!(
        m.handle_message(id(2), &vote_bytes(&old), Millis(4)),
        Acceptance::Ignore(IgnoreReason::StaleEpoch)
    );
}

#[test]
fn sampled_monitoring_counts_only_assigned_observers() {
    let mut cfg = config(10, 1);
    cfg.monitoring = Monitoring::Observers { k: 4 };
    let mut m = Membership::new(cfg, key(0), None, 1, Millis(0)).unwrap();
    assert!(m.monitored().len() < 9, "observes a sample, not everyone");
    let subject = id(5);
    let observers = m
        .view()
        .observers_of(&subject, 0, Monitoring::Observers { k: 4 });
    assert_eq!(observers.len(), 4);
    assert_eq!(
        m.observers_of(&subject),
        observers,
        "the core shows the same rings"
    );
    let outsider = (1..10u8)
        .find(|i| *i != 5 && !observers.contains(&id(*i)))
        .unwrap();
    let insider = (1..10u8).find(|i| observers.contains(&id(*i))).unwrap();
    // Ignored, not penalised: the sender's view may differ at the same epoch number.
    let v = vote(outsider, subject, 0, Verdict::Down, 1);
    assert_eq!(
        m.handle_message(id(outsider), &vote_bytes(&v), Millis(1)),
        Acceptance::Ignore(IgnoreReason::ViewMismatch)
    );
    assert_eq!(m.down_votes(&subject), 0);
    // A vote naming our epoch and member set: the voter knew it was not assigned.
    let digest = m.view().digest();
    let same_view = |observer: u8, seq: u64| {
        let mut v = vote(observer, subject, 0, Verdict::Down, seq).vote;
        v.view = digest;
        SignedVote::sign(v, &key(observer)).unwrap()
    };
    let forged = same_view(outsider, 2);
    assert!(matches!(
        m.handle_message(id(outsider), &vote_bytes(&forged), Millis(1)),
        Acceptance::Reject(RejectReason::NotAssignedObserver(_))
    ));
    // So is a certificate assembled under our view from non-assigned observers.
    let outsiders: Vec<u8> = (1..10u8)
        .filter(|i| *i != 5 && !observers.contains(&id(*i)))
        .take(3)
        .collect();
    let cert = |votes: Vec<SignedVote>| Certificate {
        subject,
        incarnation: 0,
        epoch: 0,
        votes,
    };
    let bad = cert(outsiders.iter().map(|o| same_view(*o, 3)).collect());
    assert!(matches!(
        m.handle_message(id(outsider), &encode(&Message::Certificate(bad)), Millis(1)),
        Acceptance::Reject(RejectReason::BadCertificate(_))
    ));
    // Under another view it may be honest: ignored.
    let other = cert(
        outsiders
            .iter()
            .map(|o| vote(*o, subject, 0, Verdict::Down, 4))
            .collect(),
    );
    assert_eq!(
        m.handle_message(
            id(outsider),
            &encode(&Message::Certificate(other)),
            Millis(1)
        ),
        Acceptance::Ignore(IgnoreReason::ViewMismatch)
    );
    assert!(m.view().is_member(&subject));
    let v = vote(insider, subject, 0, Verdict::Down, 1);
    assert_eq!(
        m.handle_message(id(insider), &vote_bytes(&v), Millis(1)),
        Acceptance::Accept
    );
    assert_eq!(m.down_votes(&subject), 1);
    assert_eq!(m.down_voters(&subject), vec![id(insider)]);
}

#[test]
fn all_to_all_observers_are_every_other_member() {
    let m = node(0, 4, 1, Millis(0));
    let mut seen = m.observers_of(&id(2));
    seen.sort();
    let mut expected = vec![id(0), id(1), id(3)];
    expected.sort();
    assert_eq!(seen, expected);
    assert!(
        m.observers_of(&id(9)).is_empty(),
        "a stranger has no observers"
    );
    assert!(m.down_voters(&id(2)).is_empty());
}

#[test]
fn paused_node_does_not_accuse() {
    let mut m = node(0, 4, 1, Millis(0));
    for round in 1..=10u64 {
        let t = round as i64 * 500;
        for p in 1..=3u8 {
            m.handle_message(id(p), &heartbeat(p, 1, round, 0), Millis(t));
        }
        m.handle_tick(Millis(t));
    }
    m.drain_outputs();
    // Ten seconds without a tick (SIGSTOP): nobody is suspected on resume.
    m.handle_tick(Millis(15_000));
    for p in 1..=3u8 {
        assert!(!m.is_suspected(&id(p)));
    }
}

#[test]
fn certificate_with_withdrawn_vote_is_not_applied() {
    let mut m = node(0, 4, 1, Millis(0));
    let subject = id(3);
    let up = vote(1, subject, 0, Verdict::Up, 5);
    assert_eq!(
        m.handle_message(id(1), &vote_bytes(&up), Millis(1)),
        Acceptance::Accept
    );
    let cert = Certificate {
        subject,
        incarnation: 0,
        epoch: 0,
        votes: vec![
            vote(0, subject, 0, Verdict::Down, 1),
            vote(1, subject, 0, Verdict::Down, 1),
            vote(2, subject, 0, Verdict::Down, 1),
        ],
    };
    assert_eq!(
        m.handle_message(id(2), &encode(&Message::Certificate(cert)), Millis(2)),
        Acceptance::Ignore(IgnoreReason::Withdrawn)
    );
    assert!(m.is_member(&subject));
}

#[test]
fn a_member_never_heard_is_not_suspected_during_join_grace() {
    let mut m = node(0, 4, 1, Millis(0));
    let silent = id(3);
    let grace = m.config.join_grace.as_millis() as i64;
    let mut t = 0;
    let mut round = 0u64;
    let mut suspected_at = None;
    while t < grace + 5_000 && suspected_at.is_none() {
        t += 100;
        if t % 500 == 0 {
            round += 1;
            for p in 1..=2u8 {
                m.handle_message(id(p), &heartbeat(p, 1, round, 0), Millis(t));
            }
        }
        m.handle_tick(Millis(t));
        let suspected = events(&mut m)
            .into_iter()
            .any(|e| matches!(e, MembershipEvent::Suspected { peer, .. } if peer == silent));
        if suspected {
            suspected_at = Some(t);
        }
    }
    let at = suspected_at.expect("suspected once the grace is over");
    assert!(
        at >= grace,
        "suspected at {at} ms, before the {grace} ms grace"
    );
    assert!(!m.heard(&silent));
    assert!(m.heard(&id(1)));
}

fn liveness(incarnation: u64, seq: u64) -> Vec<u8> {
    encode_direct(&Direct::Liveness(Liveness {
        incarnation,
        seq,
        epoch: 0,
    }))
}

fn sends(out: &[Output]) -> Vec<PeerId> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send { to, .. } => Some(*to),
            _ => None,
        })
        .collect()
}

#[test]
fn liveness_goes_direct_to_observers_and_announcements_are_slow() {
    let mut m = node(0, 4, 1, Millis(0));
    m.handle_tick(Millis(0));
    let out = m.drain_outputs();
    let mut to = sends(&out);
    to.sort();
    let mut others: Vec<PeerId> = (1..4).map(id).collect();
    others.sort();
    assert_eq!(to, others, "all-to-all: every other member observes us");
    assert!(out.iter().any(|o| matches!(o, Output::Broadcast(_))));
    // Later ticks send liveness frames; the signed announcement comes once per
    // interval (the first after a random phase), so twice in 40 s.
    let mut broadcasts = 0;
    let mut frames = 0;
    for t in (100..=40_000).step_by(100) {
        m.handle_tick(Millis(t));
        let out = m.drain_outputs();
        frames += sends(&out).len();
        broadcasts += out
            .iter()
            .filter(|o| matches!(o, Output::Broadcast(_)))
            .count();
    }
    assert_eq!(broadcasts, 2, "gossip only at announcements");
    assert!(
        frames >= 3 * 70,
        "about one frame per observer per 500 ms (ticks every 100 ms), got {frames}"
    );
    // A peer subscribing triggers an announcement.
    m.announce(Millis(40_000));
    assert!(
        m.drain_outputs()
            .iter()
            .any(|o| matches!(o, Output::Broadcast(_)))
    );
}

#[test]
fn sampled_monitoring_sends_liveness_only_to_assigned_observers() {
    let mut c = config(20, 1);
    c.monitoring = Monitoring::Observers { k: 4 };
    let mut m = Membership::new(c, key(0), None, 7, Millis(0)).unwrap();
    m.handle_tick(Millis(0));
    let to = sends(&m.drain_outputs());
    let expected = m
        .view()
        .observers_of(&id(0), 0, Monitoring::Observers { k: 4 });
    assert_eq!(to.len(), 4);
    assert!(to.iter().all(|p| expected.contains(p)));
}

#[test]
fn liveness_frames_keep_a_member_unsuspected_and_are_checked() {
    let mut m = node(0, 4, 1, Millis(0));
    assert_eq!(
        m.handle_message(id(1), &heartbeat(1, 5, 1, 0), Millis(0)),
        Acceptance::Accept
    );
    let mut seq = 0;
    for t in (500..20_000).step_by(500) {
        seq += 1;
        assert_eq!(
            m.handle_direct(id(1), &liveness(5, seq), Millis(t)),
            Acceptance::Accept
        );
        m.handle_tick(Millis(t));
        m.drain_outputs();
    }
    assert!(!m.is_suspected(&id(1)), "frames alone keep it alive");
    // Replays, older incarnations, strangers and junk are not evidence.
    assert_eq!(
        m.handle_direct(id(1), &liveness(5, seq), Millis(20_000)),
        Acceptance::Ignore(IgnoreReason::Replay)
    );
    assert_eq!(
        m.handle_direct(id(1), &liveness(4, seq + 1), Millis(20_000)),
        Acceptance::Ignore(IgnoreReason::StaleIncarnation)
    );
    assert_eq!(
        m.handle_direct(id(9), &liveness(1, 1), Millis(20_000)),
        Acceptance::Ignore(IgnoreReason::NotMember)
    );
    assert!(matches!(
        m.handle_direct(id(1), &[1, 0xff, 0xff], Millis(20_000)),
        Acceptance::Reject(_)
    ));
    // A higher incarnation, first-hand, refutes; the next signed announcement of that
    // incarnation (its counter restarted) is still accepted.
    assert_eq!(
        m.handle_direct(id(1), &liveness(6, 1), Millis(20_100)),
        Acceptance::Accept
    );
    assert_eq!(m.view().get(&id(1)).map(|i| i.incarnation), Some(6));
    assert_eq!(
        m.handle_message(id(1), &heartbeat(1, 6, 1, 0), Millis(20_200)),
        Acceptance::Accept
    );
}

#[test]
fn a_member_only_announcing_is_suspected_without_liveness() {
    let mut m = node(0, 4, 1, Millis(0));
    m.handle_message(id(1), &heartbeat(1, 5, 1, 0), Millis(0));
    for t in (100..5_000).step_by(100) {
        m.handle_tick(Millis(t));
        m.drain_outputs();
    }
    assert!(m.is_suspected(&id(1)));
}

/// Times (ms) at which `m` gossips its own signed heartbeat, ticking every 100 ms.
fn own_announcements(m: &mut Membership, from: i64, to: i64) -> Vec<i64> {
    let me = m.me();
    let mut at = Vec::new();
    for t in (from..to).step_by(100) {
        m.handle_tick(Millis(t));
        for o in m.drain_outputs() {
            if let Output::Broadcast(bytes) = o
                && let Ok(Message::Heartbeat(sh)) = decode(&bytes)
                && sh.heartbeat.member == me
            {
                at.push(t);
            }
        }
    }
    at
}

#[test]
fn periodic_announcements_stretch_with_the_view() {
    // At start, then after a random phase, then every interval.
    let gaps = |at: &[i64]| at.windows(2).map(|w| w[1] - w[0]).collect::<Vec<_>>();
    let mut small = node(0, 4, 1, Millis(0));
    let at = own_announcements(&mut small, 0, 80_000);
    assert_eq!(at[0], 0);
    assert!(at[1] <= 20_000, "random first phase, got {at:?}");
    assert!(at.len() >= 4, "{at:?}");
    assert!(gaps(&at[1..]).iter().all(|g| *g == 20_000), "{at:?}");
    // 250 members: 2.5 times the interval, so each node still receives about 100
    // periodic announcements per interval.
    let mut c = config(250, 3);
    c.monitoring = Monitoring::Observers { k: 10 };
    let mut big = Membership::new(c, key(0), None, 7, Millis(0)).unwrap();
    let at = own_announcements(&mut big, 0, 160_000);
    assert!(at[1] <= 50_000, "{at:?}");
    assert!(at.len() >= 3, "{at:?}");
    assert!(gaps(&at[1..]).iter().all(|g| *g == 50_000), "{at:?}");
}
