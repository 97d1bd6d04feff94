//! `jobmesh predict eval`: the predictors against their baselines on a trace.

use std::io::BufReader;

use anyhow::Context;
use jobmesh::predict::eval::{self, EvalOptions, plot};
use jobmesh::predict::trace;

use crate::args::PredictVerb;
use crate::output::{self, outln};

/// Runs the verb.
pub fn run(verb: PredictVerb, json: bool) -> anyhow::Result<()> {
    match verb {
        PredictVerb::Eval {
            trace: path,
            split,
            slo,
            plot: plot_path,
        } => {
            let file = std::fs::File::open(&path)
                .with_context(|| format!("opening the trace {}", path.display()))?;
            let records = trace::read(BufReader::new(file))
                .with_context(|| format!("reading {}", path.display()))?;
            let report = eval::evaluate(
                &records,
                EvalOptions {
                    split,
                    slo_ms: slo.as_secs_f64() * 1000.0,
                    ..EvalOptions::default()
                },
            )?;
            if let Some(p) = &plot_path {
                std::fs::write(p, plot::svg(&report.panels))
                    .with_context(|| format!("writing the plot {}", p.display()))?;
            }
            if json {
                return output::json(&report);
            }
            outln!(
                "{} attempts, models learn from all of them in time order; scored after {:.0}% of the span\n",
                report.records,
                split * 100.0
            )?;
            for t in &report.tables {
                outln!("{}", t.render())?;
            }
            Ok(())
        }
    }
}
