//! The congestion model's wait MAE against the last wait seen, seed by seed, on
//! generated traces of 3 h with a 1 h cycle (the tuning seeds are 1-10, the held-out
//! ones 100-109):
//!
//! `cargo run -p jobmesh --example congestion_seeds -- FIRST LAST`
//!
//! Runs only the congestion replay of `jobmesh predict eval` (default options), so a
//! range of seeds takes seconds. Prints one line per seed and the mean.

use jobmesh::predict::eval::{self, EvalOptions};
use jobmesh::predict::trace::generate::{GenConfig, generate};

fn main() -> Result<(), String> {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().map_err(|e| format!("seed {a:?}: {e}")))
        .collect::<Result<_, _>>()?;
    let [first, last] = args[..] else {
        return Err("usage: congestion_seeds FIRST LAST".into());
    };
    let opts = EvalOptions::default();
    let (mut model_sum, mut last_sum, mut wins, mut n) = (0.0, 0.0, 0, 0);
    println!("seed  model MAE (s)  last wait MAE (s)  model wins");
    for seed in first..=last {
        let records = generate(GenConfig {
            seed,
            hours: 3.0,
            cycle_hours: 1.0,
            nodes: 6,
        })
        .0;
        let at = eval::split_at(&records, opts.split);
        let (t, _) = eval::congestion::run(&records, at, opts, eval::congestion::lineup());
        let mae = |name: &str| {
            t.rows
                .iter()
                .find(|r| r.name == name)
                .and_then(|r| r.values[t.main])
                .unwrap_or(f64::NAN)
        };
        let (model, last) = (mae(&t.rows[0].name), mae("last wait"));
        println!(
            "{seed:>4}  {model:>13.3}  {last:>17.3}  {}",
            if t.model_wins() { "yes" } else { "no" }
        );
        model_sum += model;
        last_sum += last;
        wins += usize::from(t.model_wins());
        n += 1;
    }
    let n_f = f64::from(n.max(1));
    println!(
        "mean  {:>13.3}  {:>17.3}  {wins} of {n}",
        model_sum / n_f,
        last_sum / n_f
    );
    Ok(())
}
