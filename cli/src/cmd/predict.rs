//! `jobmesh predict eval`: the predictors against their baselines on a trace.
//! `jobmesh predict show`: the live predictions the nodes saved in the store.

use std::io::BufReader;

use anyhow::Context;
use jobmesh::clock::{Clock, SystemClock};
use jobmesh::config::Config;
use jobmesh::predict::eval::{self, EvalOptions, plot};
use jobmesh::predict::live::Predictions;
use jobmesh::predict::live::view::{HORIZONS_MIN, RETRY_AFTER_MS};
use jobmesh::predict::trace;

use crate::args::PredictVerb;
use crate::output::{self, outln};
use crate::setup;

/// Runs the verb.
pub async fn run(config: Config, verb: PredictVerb, json: bool) -> anyhow::Result<()> {
    match verb {
        PredictVerb::Show { slo } => {
            anyhow::ensure!(!slo.is_zero(), "--slo must be longer than zero");
            let store = setup::open_store(&config).await?;
            let saved = store
                .load_models()
                .await
                .context("reading the saved models")?;
            let p = Predictions::from_saved(
                &saved,
                SystemClock.now().0,
                slo.as_secs_f64() * 1000.0,
                config.predict.peer_max_age_ms(),
            );
            if json {
                return output::json(&p);
            }
            show(&p)
        }
        PredictVerb::Eval {
            trace: path,
            split,
            slo,
            season,
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
                    season_ms: season
                        .map(|s| i64::try_from(s.as_millis()).unwrap_or(i64::MAX).max(1)),
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

/// A duration in ms as text for people.
fn ms(v: f64) -> String {
    if !v.is_finite() {
        "-".into()
    } else if v < 1_000.0 {
        format!("{v:.0}ms")
    } else if v < 120_000.0 {
        format!("{:.1}s", v / 1000.0)
    } else {
        format!("{:.1}m", v / 60_000.0)
    }
}

/// Prints the predictions as tables.
fn show(p: &Predictions) -> anyhow::Result<()> {
    if p.nodes.is_empty() {
        outln!("no saved models: a node saves them every minute and when it stops")?;
        return Ok(());
    }
    outln!("NODES (failure score: higher is worse; a node drains above 1.6)")?;
    outln!("{:<40} {:>8}  SAVED", "NODE", "SCORE")?;
    for n in &p.nodes {
        let saved = output::time(jobmesh::clock::Millis(n.saved_at_ms));
        match &n.unreadable {
            Some(why) => outln!("{:<40} {:>8}  {saved}  unreadable: {why}", n.node, "-")?,
            None => outln!("{:<40} {:>8.2}  {saved}", n.node, n.failure_score)?,
        }
    }
    outln!("\nDURATIONS (all nodes merged)")?;
    outln!(
        "{:<24} {:<16} {:>8} {:>9} {:>9} {:>9}",
        "KIND",
        "QUEUE",
        "RUNS",
        "P50",
        "P90",
        "P99"
    )?;
    for d in &p.durations {
        outln!(
            "{:<24} {:<16} {:>8} {:>9} {:>9} {:>9}",
            d.kind,
            d.queue,
            d.runs,
            ms(d.p50_ms),
            ms(d.p90_ms),
            ms(d.p99_ms)
        )?;
    }
    let after: Vec<String> = RETRY_AFTER_MS
        .iter()
        .map(|a| format!("+{}", ms(*a as f64)))
        .collect();
    outln!(
        "\nRETRIES (success of the 2nd attempt started this long after the first failure; n = observations)"
    )?;
    outln!(
        "{:<24} {:<24} {:<16} {}",
        "KIND",
        "ERROR CLASS",
        "NODE",
        after.iter().map(|a| format!("{a:>12}")).collect::<String>()
    )?;
    for r in &p.retries {
        let cells: String = r
            .p_success
            .iter()
            .zip(&r.observations)
            .map(|(p, n)| {
                let cell = format!("{p:.2} n={n:.0}");
                format!("{cell:>12}")
            })
            .collect();
        outln!(
            "{:<24} {:<24} {:<16} {cells}",
            r.kind,
            r.error_class,
            r.node
        )?;
    }
    outln!("\nRETRY BUDGETS (over the last minute)")?;
    outln!(
        "{:<24} {:<16} {:>8} {:>8} {:>8}",
        "KIND",
        "NODE",
        "FIRSTS",
        "RETRIES",
        "ALLOWED"
    )?;
    for b in &p.budgets {
        outln!(
            "{:<24} {:<16} {:>8.0} {:>8.0} {:>8.0}",
            b.kind,
            b.node,
            b.first_attempts,
            b.retries,
            b.allowed
        )?;
    }
    let horizons: String = HORIZONS_MIN
        .iter()
        .map(|m| {
            let h = if *m == 0 {
                "now".to_string()
            } else {
                format!("+{m}m")
            };
            format!("{h:>14}")
        })
        .collect();
    outln!(
        "\nQUEUES (predicted wait, and probability of waiting over the {} SLO)",
        ms(p.slo_ms)
    )?;
    outln!("{:<16} {:<16}{horizons}", "QUEUE", "NODE")?;
    for q in &p.queues {
        let cells: String = q
            .wait_ms
            .iter()
            .zip(&q.breach_probability)
            .map(|(w, b)| {
                let cell = format!("{} {:.0}%", ms(*w), b * 100.0);
                format!("{cell:>14}")
            })
            .collect();
        outln!("{:<16} {:<16}{cells}", q.queue, q.node)?;
    }
    Ok(())
}
