//! A readable table of reports (markdown, so it pastes into the README as is).

use super::config::describe_monitoring;
use super::world::Report;

fn opt(v: Option<u64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// Renders reports as a markdown table, one row per run.
pub fn render(reports: &[Report]) -> String {
    let mut out = String::from(
        "| scenario | N | f | monitoring | seed | crashes | suspect p50/p99 ms | detect p50/p99 ms | per-node applied p50/p99 ms | converge p50/max ms | false evictions | evictions | honest rejects | msgs/node/s | bytes/node/s | sim s | setup+run wall s | trace hash |\n\
         |---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for r in reports {
        let m = &r.metrics;
        let undetected = if m.undetected + m.unconverged > 0 {
            format!(
                " ({} undetected, {} unconverged)",
                m.undetected, m.unconverged
            )
        } else {
            String::new()
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {}{} | {}/{} | {}/{} | {}/{} | {}/{} | {} | {} | {} | {:.1} | {:.0} | {:.0} | {:.0}+{:.0} | {} |\n",
            r.scenario,
            r.config.nodes,
            r.config.f,
            describe_monitoring(r.config.monitoring),
            r.config.seed,
            m.crashes,
            undetected,
            opt(m.suspicion.p50_ms),
            opt(m.suspicion.p99_ms),
            opt(m.detection.p50_ms),
            opt(m.detection.p99_ms),
            opt(m.propagation.p50_ms),
            opt(m.propagation.p99_ms),
            opt(m.convergence.p50_ms),
            opt(m.convergence.max_ms),
            m.false_evictions,
            m.evictions,
            m.honest_rejects,
            m.msgs_per_node_s,
            m.bytes_per_node_s,
            r.sim_secs,
            r.setup_secs,
            r.wall_secs,
            &r.trace_hash[..8],
        ));
    }
    out
}

/// The traffic breakdown of reports: gossip, direct liveness frames and probes.
pub fn render_traffic(reports: &[Report]) -> String {
    let mut out = String::from(
        "| scenario | N | window s | gossip msgs/node/s | gossip B/node/s | liveness msgs/node/s | liveness B/node/s | probes/node/s | view gaps at end | self-refuted | self-evicted |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in reports {
        let m = &r.metrics;
        out.push_str(&format!(
            "| {} | {} | {:.0} | {:.1} | {:.0} | {:.1} | {:.0} | {:.2} | {} | {} | {} |\n",
            r.scenario,
            r.config.nodes,
            m.window_secs,
            m.gossip_msgs_per_node_s,
            m.gossip_bytes_per_node_s,
            m.direct_msgs_per_node_s,
            m.direct_bytes_per_node_s,
            m.probe_msgs_per_node_s,
            r.view_gaps,
            m.self_refuted,
            m.self_evicted,
        ));
    }
    out
}
