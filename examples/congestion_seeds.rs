//! The congestion model's wait MAE against the last wait seen, and the breach alarms' F1
//! of the model and the queue-length threshold at each horizon, seed by seed, on
//! generated traces of 3 h with a 1 h cycle (the tuning seeds are 1-10, the held-out
//! ones 100-109):
//!
//! `cargo run -p jobmesh --example congestion_seeds -- FIRST LAST [--correction] [--no-season]`
//!
//! `--correction` turns on the model's learned correction of the wait estimate (off by
//! default, see `FluidSettings::correction`); `--no-season` leaves the season off, as a
//! live node and `predict eval` without `--season` do.
//!
//! Runs only the congestion replay of `jobmesh predict eval` (default options, the
//! model told the traces' 1 h cycle as `--season 1h` would), so a range of seeds takes
//! seconds. Prints one line per seed and the mean.

use jobmesh::predict::congestion::{FluidQueue, FluidSettings};
use jobmesh::predict::eval::{self, EvalOptions};
use jobmesh::predict::trace::generate::{GenConfig, generate};

/// The generated traces' cycle.
const CYCLE_HOURS: f64 = 1.0;

fn main() -> Result<(), String> {
    let correction = std::env::args().any(|a| a == "--correction");
    let no_season = std::env::args().any(|a| a == "--no-season");
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter(|a| a != "--correction" && a != "--no-season")
        .map(|a| a.parse().map_err(|e| format!("seed {a:?}: {e}")))
        .collect::<Result<_, _>>()?;
    let [first, last] = args[..] else {
        return Err("usage: congestion_seeds FIRST LAST [--correction] [--no-season]".into());
    };
    let opts = if no_season {
        EvalOptions::default()
    } else {
        EvalOptions {
            season_ms: Some((CYCLE_HOURS * 3_600_000.0) as i64),
            ..EvalOptions::default()
        }
    };
    let (mut model_sum, mut last_sum, mut wins, mut n) = (0.0, 0.0, 0, 0);
    // F1 at 1, 5, 15 min: model, then threshold.
    let mut f1_sum = [[0.0; 3]; 2];
    println!(
        "seed  model MAE (s)  last wait MAE (s)  model wins  model F1@1m/5m/15m  threshold F1@1m/5m/15m"
    );
    for seed in first..=last {
        let records = generate(GenConfig {
            seed,
            hours: 3.0,
            cycle_hours: CYCLE_HOURS,
            nodes: 6,
        })
        .0;
        let at = eval::split_at(&records, opts.split);
        let mut lineup = eval::congestion::lineup_for(opts);
        if correction {
            lineup[0].0 = Box::new(FluidQueue::new(FluidSettings {
                correction: true,
                ..eval::congestion::model_settings(opts)
            }));
        }
        let (t, _) = eval::congestion::run(&records, at, opts, lineup);
        let row = |name: &str| t.rows.iter().find(|r| r.name == name);
        let mae = |name: &str| row(name).and_then(|r| r.values[t.main]).unwrap_or(f64::NAN);
        let f1 = |name: &str| -> [f64; 3] {
            let mut out = [f64::NAN; 3];
            if let Some(r) = row(name) {
                for (h, o) in out.iter_mut().enumerate() {
                    let col = t
                        .metrics
                        .iter()
                        .position(|m| m.name == ["F1@1m", "F1@5m", "F1@15m"][h]);
                    *o = col.and_then(|c| r.values[c]).unwrap_or(0.0);
                }
            }
            out
        };
        let (model, last) = (mae(&t.rows[0].name), mae("last wait"));
        let fm = f1(&t.rows[0].name);
        let ft = f1("queue-length threshold");
        println!(
            "{seed:>4}  {model:>13.3}  {last:>17.3}  {:>10}  {:>18}  {:>22}",
            if t.model_wins() { "yes" } else { "no" },
            horizons(fm),
            horizons(ft),
        );
        model_sum += model;
        last_sum += last;
        for h in 0..3 {
            f1_sum[0][h] += fm[h];
            f1_sum[1][h] += ft[h];
        }
        wins += usize::from(t.model_wins());
        n += 1;
    }
    let n_f = f64::from(n.max(1));
    let m = |k: usize| horizons(f1_sum[k].map(|f| f / n_f));
    println!(
        "mean  {:>13.3}  {:>17.3}  {:>10}  {:>18}  {:>22}",
        model_sum / n_f,
        last_sum / n_f,
        format!("{wins} of {n}"),
        m(0),
        m(1)
    );
    Ok(())
}

/// One figure per horizon (1, 5, 15 min), as `a/b/c`.
fn horizons(f: [f64; 3]) -> String {
    format!("{:.3}/{:.3}/{:.3}", f[0], f[1], f[2])
}
