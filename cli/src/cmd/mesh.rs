//! `jobmesh mesh id|peers|cluster-key|issue-join`.

use anyhow::Context;
use jobmesh::clock::{Clock, SystemClock};
use jobmesh::config::Config;
use jobmesh::membership::JoinCertificate;
use jobmesh_actors::MeshStatus;
use jobmesh_actors::mesh::{PeerId, load_or_create_keypair};

use crate::args::MeshVerb;
use crate::output::{self, outln};

/// The mesh view as the HTTP API serves it (`GET /api/v1/mesh`): the fields `mesh
/// peers --json` prints, in the API's own schema.
pub fn api_view(s: MeshStatus) -> jobmesh_api::views::MeshView {
    jobmesh_api::views::MeshView {
        me: s.me,
        incarnation: s.incarnation,
        epoch: s.epoch,
        quorum: s.quorum,
        members: s
            .members
            .into_iter()
            .map(|m| jobmesh_api::views::MeshMember {
                peer: m.peer,
                state: m.state,
                incarnation: m.incarnation,
                phi: m.phi,
                rtt_ms: m.rtt_ms,
                heard: m.heard,
                down_votes: m.down_votes,
                evicted_by: m.evicted_by,
                down_voters: m.down_voters,
                observers: m.observers,
                observer_count: m.observer_count,
                bytes_in: m.bytes_in,
                bytes_out: m.bytes_out,
            })
            .collect(),
        bytes_in: s.bytes_in,
        bytes_out: s.bytes_out,
        outsider_bytes_in: s.outsider_bytes_in,
        outsider_bytes_out: s.outsider_bytes_out,
        refused_inputs: s.refused_inputs,
        bans: s.bans,
        outsider_connections: s.outsider_connections,
        at: s.at_ms,
    }
}

/// Runs the verb.
pub async fn run(config: Config, verb: MeshVerb, json: bool) -> anyhow::Result<()> {
    match verb {
        MeshVerb::Id => {
            let path = config.key_path();
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            let key = load_or_create_keypair(&path)
                .with_context(|| format!("node key {}", path.display()))?;
            let id = key.public().to_peer_id();
            if json {
                return output::json(&serde_json::json!({"peer_id": id.to_string()}));
            }
            outln!("{id}")?;
        }
        MeshVerb::ClusterKey { out } => {
            anyhow::ensure!(
                !out.exists(),
                "{} exists: refusing to overwrite a cluster key",
                out.display()
            );
            let key = load_or_create_keypair(&out)
                .with_context(|| format!("cluster key {}", out.display()))?;
            let id = key.public().to_peer_id();
            if json {
                output::json(&serde_json::json!({"peer_id": id.to_string(), "path": out}))?;
            } else {
                outln!("{id}")?;
            }
            eprintln!(
                "set mesh.cluster_key = \"{}\" on every member; keep {} secret",
                key.public().to_peer_id(),
                out.display()
            );
        }
        MeshVerb::IssueJoin {
            cluster_key_file,
            peer,
            valid_for,
            out,
        } => {
            anyhow::ensure!(
                cluster_key_file.exists(),
                "no cluster key at {}: create one with `jobmesh mesh cluster-key --out ...`",
                cluster_key_file.display()
            );
            let cluster = load_or_create_keypair(&cluster_key_file)
                .with_context(|| format!("cluster key {}", cluster_key_file.display()))?;
            let peer: PeerId = peer
                .parse()
                .map_err(|e| anyhow::anyhow!("--peer `{peer}` is not a peer id: {e}"))?;
            let expires = SystemClock.now().plus(valid_for);
            let cert = JoinCertificate::issue(&cluster, peer, expires)
                .context("signing the join certificate")?;
            std::fs::write(&out, serde_json::to_vec_pretty(&cert)?)
                .with_context(|| format!("writing {}", out.display()))?;
            if json {
                return output::json(&serde_json::json!({
                    "path": out,
                    "peer": cert.peer.to_string(),
                    "expires_at": expires,
                }));
            }
            outln!("{}", out.display())?;
        }
        MeshVerb::Peers => {
            let path = config.mesh_status_path();
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "no mesh status at {}: is a node running with --listen/--join (or mesh.enabled) and this config?",
                    path.display()
                )
            })?;
            let status: MeshStatus = serde_json::from_str(&text)
                .with_context(|| format!("unreadable mesh status {}", path.display()))?;
            if json {
                return output::json(&status);
            }
            outln!(
                "me {} incarnation {} epoch {} quorum {} traffic in {} B out {} B",
                status.me,
                status.incarnation,
                status.epoch,
                status.quorum,
                status.bytes_in,
                status.bytes_out
            )?;
            outln!(
                "{:<54} {:<10} {:>15} {:>7} {:>8} {:>5} {:>10} {:>10}  down voters / evicted by",
                "peer",
                "state",
                "incarnation",
                "phi",
                "rtt ms",
                "downs",
                "in B",
                "out B"
            )?;
            for m in &status.members {
                let phi = m.phi.map_or("-".into(), |p| format!("{p:.2}"));
                let rtt = m.rtt_ms.map_or("-".into(), |r| format!("{r:.2}"));
                outln!(
                    "{:<54} {:<10} {:>15} {:>7} {:>8} {:>5} {:>10} {:>10}  {}",
                    m.peer,
                    m.state,
                    m.incarnation,
                    phi,
                    rtt,
                    m.down_votes,
                    m.bytes_in,
                    m.bytes_out,
                    if m.evicted_by.is_empty() {
                        m.down_voters.join(",")
                    } else {
                        m.evicted_by.join(",")
                    }
                )?;
            }
        }
    }
    Ok(())
}
