//! The predictors against their baselines on held-out generated traces (seeds 100-109;
//! the settings were tuned on seeds 1-10 only; the congestion model's throughput floor
//! came after a look at why an earlier version lost held-out seed 109, and was then set
//! on seeds 1-10, see README "Evaluation"), and the check that the tests can fail: with
//! a baseline in the model's place, the "model" no longer wins.

use jobmesh::predict::congestion::LastWait;
use jobmesh::predict::duration::{LastTwo, MeanPerKind};
use jobmesh::predict::eval::{self, EvalOptions, Table};
use jobmesh::predict::failure::HeartbeatTimeout;
use jobmesh::predict::retry::FixedBackoff;
use jobmesh::predict::trace::TraceRecord;
use jobmesh::predict::trace::generate::{GenConfig, generate};

const HELD_OUT: std::ops::Range<u64> = 100..110;

/// The generated traces' arrival cycle, which the congestion model is told (as
/// `jobmesh predict eval --season 1h` would).
const CYCLE_HOURS: f64 = 1.0;

fn trace(seed: u64) -> Vec<TraceRecord> {
    generate(GenConfig {
        seed,
        hours: 3.0,
        cycle_hours: CYCLE_HOURS,
        nodes: 6,
    })
    .0
}

/// The evaluation's default options, with the traces' cycle.
fn options() -> EvalOptions {
    EvalOptions {
        season_ms: Some((CYCLE_HOURS * 3_600_000.0) as i64),
        ..EvalOptions::default()
    }
}

fn show(seed: u64, t: &Table) -> String {
    format!("seed {seed}:\n{}", t.render())
}

/// The main metric of the row named `name`.
fn main_metric(t: &Table, name: &str) -> f64 {
    let row = t.rows.iter().find(|r| r.name == name).expect("row");
    row.values[t.main].expect("main metric")
}

#[test]
fn each_model_beats_its_baselines_on_held_out_seeds() {
    let opts = options();
    let (mut model_mae, mut last_mae) = (0.0, 0.0);
    for seed in HELD_OUT {
        let records = trace(seed);
        let report = eval::evaluate(&records, opts).unwrap();
        let [duration, failure, retry, congestion] = &report.tables[..] else {
            panic!("four tables");
        };
        for t in [duration, failure, retry, congestion] {
            assert!(t.model_wins(), "{}", show(seed, t));
        }
        model_mae += main_metric(congestion, &congestion.rows[0].name);
        last_mae += main_metric(congestion, "last wait");
    }
    // The mean over the seeds too: a model that wins narrowly on most seeds and loses
    // one badly (as an earlier version did, README "Evaluation") is no better.
    assert!(
        model_mae < last_mae,
        "congestion wait MAE summed over the held-out seeds: model {model_mae:.3} s, last wait {last_mae:.3} s"
    );
}

/// Seeds no version of the congestion model was run on before it was final (README
/// "Evaluation": the held-out seeds informed its throughput floor, so these are the
/// clean test of it): it beats the last wait on every one and on the mean.
const NEVER_LOOKED_AT: std::ops::Range<u64> = 300..320;

#[test]
fn the_congestion_model_wins_on_seeds_no_version_was_shaped_on() {
    let opts = options();
    let (mut model_mae, mut last_mae) = (0.0, 0.0);
    for seed in NEVER_LOOKED_AT {
        let records = trace(seed);
        let at = eval::split_at(&records, opts.split);
        let (t, _) = eval::congestion::run(&records, at, opts, eval::congestion::lineup_for(opts));
        assert!(t.model_wins(), "{}", show(seed, &t));
        model_mae += main_metric(&t, &t.rows[0].name);
        last_mae += main_metric(&t, "last wait");
    }
    assert!(
        model_mae < last_mae,
        "congestion wait MAE summed over seeds 300-319: model {model_mae:.3} s, last wait {last_mae:.3} s"
    );
}

#[test]
fn a_baseline_in_the_models_place_does_not_win() {
    let opts = options();
    let records = trace(HELD_OUT.start);
    let at = eval::split_at(&records, opts.split);

    let mut d = eval::duration::lineup();
    d[0] = (Box::new(MeanPerKind::default()), "model");
    let (t, _) = eval::duration::run(&records, at, d);
    assert!(!t.model_wins(), "{}", t.render());
    let mut d = eval::duration::lineup();
    d[0] = (Box::new(LastTwo::default()), "model");
    assert!(!eval::duration::run(&records, at, d).0.model_wins());

    let mut f = eval::failure::lineup(opts);
    f[0] = (
        Box::new(HeartbeatTimeout::new(opts.heartbeat_timeout_ms)),
        "model",
    );
    let (t, _) = eval::failure::run(&records, at, opts, f);
    assert!(!t.model_wins(), "{}", t.render());

    let mut r = eval::retry::lineup();
    r[0] = (Box::new(FixedBackoff::default()), "model");
    let t = eval::retry::run(&records, at, opts, r);
    assert!(!t.model_wins(), "{}", t.render());

    let mut c = eval::congestion::lineup_for(opts);
    c[0] = (Box::new(LastWait::default()), "model");
    let (t, _) = eval::congestion::run(&records, at, opts, c);
    assert!(!t.model_wins(), "{}", t.render());
}

#[test]
fn a_held_out_trace_is_generated_quickly_enough_for_tests() {
    // Not a timing assertion: the size that keeps the suite fast.
    let records = trace(HELD_OUT.start);
    assert!(
        (20_000..80_000).contains(&records.len()),
        "{}",
        records.len()
    );
}
