//! `jobmesh mesh id|peers`.

use anyhow::Context;
use jobmesh::config::Config;
use jobmesh_actors::MeshStatus;
use jobmesh_actors::mesh::load_or_create_keypair;

use crate::args::MeshVerb;

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
            println!("{}", key.public().to_peer_id());
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
                println!("{}", serde_json::to_string_pretty(&status)?);
                return Ok(());
            }
            println!(
                "me {} incarnation {} epoch {} quorum {} traffic in {} B out {} B",
                status.me,
                status.incarnation,
                status.epoch,
                status.quorum,
                status.bytes_in,
                status.bytes_out
            );
            println!(
                "{:<54} {:<10} {:>15} {:>7} {:>8} {:>5}  evicted by",
                "peer", "state", "incarnation", "phi", "rtt ms", "downs"
            );
            for m in &status.members {
                let phi = m.phi.map_or("-".into(), |p| format!("{p:.2}"));
                let rtt = m.rtt_ms.map_or("-".into(), |r| format!("{r:.2}"));
                println!(
                    "{:<54} {:<10} {:>15} {:>7} {:>8} {:>5}  {}",
                    m.peer,
                    m.state,
                    m.incarnation,
                    phi,
                    rtt,
                    m.down_votes,
                    m.evicted_by.join(",")
                );
            }
        }
    }
    Ok(())
}
