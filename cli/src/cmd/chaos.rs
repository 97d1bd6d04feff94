//! The binary's chaos support, built only with the cargo feature `chaos` (which turns
//! on `jobmesh-actors/chaos` and brings in the chaos engine, `jobmesh_sim::chaos`):
//! - `jobmesh chaos`: a thin front to the chaos engine;
//! - `jobmesh node --chaos-control FILE`: the node injects the faults the file names
//!   into its voter's traffic (`jobmesh_actors::chaos`).
//!
//! A binary built without the feature knows both options and refuses them, saying how
//! to get a build that has them: production nodes carry no fault code.

use std::path::PathBuf;

use jobmesh_actors::{MeshOptions, Node, NodeError, NodeOptions};

use crate::args::ChaosArgs;

/// How to get a binary with chaos support, for the refusal of a build without it.
const HOW_TO_BUILD: &str = "cargo run -p jobmesh-cli --features chaos --";

/// Runs `jobmesh chaos`. A run whose invariants do not all hold is an error (non-zero
/// exit), after the report was printed and written.
pub async fn run(args: ChaosArgs, json: bool) -> anyhow::Result<()> {
    #[cfg(feature = "chaos")]
    {
        runner::run(args, json).await
    }
    #[cfg(not(feature = "chaos"))]
    {
        let _ = (args, json);
        Err(without_chaos(
            "jobmesh chaos",
            "chaos --scenario kill-restart --nodes 4",
        ))
    }
}

/// What `jobmesh node --chaos-control` asks for, checked before the node starts.
pub struct NodeControl {
    #[cfg_attr(not(feature = "chaos"), allow(dead_code))]
    file: Option<PathBuf>,
}

/// Checks `--chaos-control`: refused, with how to get a build that has it, by a binary
/// built without chaos support.
pub fn node_control(file: Option<PathBuf>) -> anyhow::Result<NodeControl> {
    if cfg!(not(feature = "chaos")) && file.is_some() {
        return Err(without_chaos(
            "--chaos-control",
            "node --listen /ip4/127.0.0.1/tcp/4101 --chaos-control faults.json",
        ));
    }
    Ok(NodeControl { file })
}

impl NodeControl {
    /// Starts the meshed node, with the control file's faults injected when one was
    /// given.
    pub async fn start_meshed(
        self,
        opts: NodeOptions,
        mesh: MeshOptions,
    ) -> Result<Node, NodeError> {
        #[cfg(feature = "chaos")]
        if let Some(file) = self.file {
            let faults = jobmesh_actors::chaos::watch_file(file);
            return jobmesh_actors::chaos::start_meshed(opts, mesh, faults).await;
        }
        Node::start_meshed(opts, mesh).await
    }
}

/// The refusal of `what` by a build without chaos support; `example` is a command line
/// (after the binary) that uses it.
fn without_chaos(what: &str, example: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{what}: this jobmesh binary was built without chaos support (the `chaos` cargo \
         feature, left out of production builds so that nodes carry no fault injection); \
         run a build with it, e.g. `{HOW_TO_BUILD} {example}`"
    )
}

#[cfg(feature = "chaos")]
mod runner {
    use std::path::PathBuf;

    use anyhow::Context;
    use jobmesh_sim::chaos::plan::{Availability, SCENARIOS};
    use jobmesh_sim::chaos::{Options, report};

    use crate::args::{ChaosArgs, ChaosRunArgs, ChaosVerb};
    use crate::output::outln;

    /// Runs the verb.
    pub async fn run(args: ChaosArgs, json: bool) -> anyhow::Result<()> {
        match args.verb {
            Some(ChaosVerb::List) => list(json),
            Some(ChaosVerb::Run(a)) => run_one(a, json).await,
            None if args.list => list(json),
            None => run_one(args.run, json).await,
        }
    }

    fn list(json: bool) -> anyhow::Result<()> {
        if json {
            outln!("{}", serde_json::to_string_pretty(SCENARIOS)?)?;
            return Ok(());
        }
        outln!(
            "{:<22} {:<14} {:<10} about",
            "scenario",
            "availability",
            "stores"
        )?;
        for s in SCENARIOS {
            let availability = match s.availability {
                Availability::Ready => "ready",
                Availability::NeedsControl => "needs-control",
                Availability::NotYet => "not yet",
            };
            let stores = if s.production { "pg+redis" } else { "sqlite" };
            outln!("{:<22} {availability:<14} {stores:<10} {}", s.name, s.about)?;
        }
        outln!(
            "\nneeds-control: network and Byzantine faults, through each node's --chaos-control file\n\
             pg+redis: redis_postgres on a Postgres and a redis-server of\n\
             the run's own, started from the system binaries (initdb/pg_ctl, redis-server) on free\n\
             ports; the machine's shared servers are not touched"
        )?;
        Ok(())
    }

    async fn run_one(a: ChaosRunArgs, json: bool) -> anyhow::Result<()> {
        let scenario = a.scenario.context(
            "give --scenario NAME (`jobmesh chaos list` shows them), e.g. \
             `jobmesh chaos --scenario kill-restart --nodes 4 --jobs 300`",
        )?;
        let seed = a.seed.unwrap_or_else(random_seed);
        let bin =
            std::env::current_exe().context("finding the jobmesh binary to run nodes with")?;
        let out = a.out.unwrap_or_else(|| {
            PathBuf::from("chaos-runs").join(format!("{scenario}-n{}-s{seed}", a.nodes))
        });
        let opts = Options {
            scenario,
            nodes: a.nodes,
            byzantine: a.byzantine,
            jobs: a.jobs,
            seed,
            duration: a.duration,
            out,
            bin,
            progress: !json,
            sabotage: a.sabotage_lose_job,
            http_receiver: a.http_receiver,
        };
        // The seed first, so that even a run that dies half-way can be replayed (on stderr
        // with --json, which keeps stdout for the report).
        if json {
            eprintln!("seed = {seed}");
        } else {
            outln!("seed = {seed}")?;
        }
        let replay = opts.replay();
        // On Ctrl-C the run is dropped, and with it the cluster, whose node processes are
        // killed on drop: nothing is left running.
        let result = tokio::select! {
            r = jobmesh_sim::chaos::run(&opts) => r.map_err(anyhow::Error::from),
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted; the cluster's nodes were stopped")),
        };
        let report = match result {
            Ok(r) => r,
            Err(e) => {
                eprintln!("seed = {seed}\nreplay: {replay}");
                return Err(e);
            }
        };
        if json {
            outln!("{}", serde_json::to_string_pretty(&report)?)?;
        } else {
            outln!("{}", report::table(&report).trim_end())?;
            outln!(
                "written: {0}/report.json, {0}/timeline.svg, {0}/history.json",
                opts.out.display()
            )?;
        }
        if !report.passed {
            eprintln!("seed = {seed}\nreplay: {replay}");
            anyhow::bail!(
                "{} invariant(s) violated: {}",
                report.verdict.violations.len(),
                report.verdict.violations.join("; ")
            );
        }
        Ok(())
    }

    fn random_seed() -> u64 {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        // Keep seeds short enough to type.
        (t ^ u64::from(std::process::id()).rotate_left(32)) % 1_000_000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_build_without_chaos_says_so_and_how_to_get_one() {
        let e = without_chaos("--chaos-control", "node --chaos-control f.json").to_string();
        assert!(e.starts_with("--chaos-control: "), "{e}");
        assert!(e.contains("built without chaos support"), "{e}");
        assert!(
            e.contains(
                "`cargo run -p jobmesh-cli --features chaos -- node --chaos-control f.json`"
            ),
            "{e}"
        );
    }

    #[test]
    fn node_control_is_refused_exactly_when_the_feature_is_off() {
        assert!(node_control(None).is_ok());
        let given = node_control(Some(PathBuf::from("faults.json")));
        assert_eq!(given.is_ok(), cfg!(feature = "chaos"));
    }
}
