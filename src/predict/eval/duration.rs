//! Duration replay: every succeeded attempt is predicted when it starts (from what
//! finished before) and learned when it finishes.

use std::collections::HashMap;

use super::plot::{Panel, Series};
use super::{Better, Metric, Row, Table};
use crate::predict::duration::{
    DurationKey, DurationPredictor, LastTwo, MeanPerKind, SketchDuration, SketchSettings,
};
use crate::predict::trace::{TraceOutcome, TraceRecord};

/// The kind the plot follows (the generated traces' drifting durations), if the trace
/// has succeeded attempts of it.
const PLOT_KIND: &str = "etl.load";

/// The kind the plot follows: [`PLOT_KIND`] when the trace has succeeded attempts of
/// it, else the kind with the most (ties to the first name), so an exported trace of
/// other kinds still gets a plot.
fn plot_kind(records: &[TraceRecord]) -> Option<&str> {
    let mut n: HashMap<&str, usize> = HashMap::new();
    for r in records
        .iter()
        .filter(|r| r.outcome == TraceOutcome::Succeeded)
    {
        *n.entry(&r.kind).or_default() += 1;
    }
    if n.contains_key(PLOT_KIND) {
        return Some(PLOT_KIND);
    }
    n.into_iter()
        .max_by(|(a, x), (b, y)| x.cmp(y).then(b.cmp(a)))
        .map(|(kind, _)| kind)
}

/// The model (with payload-size classes), the model without them, and the baselines.
pub fn lineup() -> Vec<(Box<dyn DurationPredictor>, &'static str)> {
    vec![
        (
            Box::new(SketchDuration::new(SketchSettings::default())),
            "model",
        ),
        (
            Box::new(SketchDuration::new(SketchSettings {
                by_payload_size: false,
                ..SketchSettings::default()
            })),
            "variant",
        ),
        (Box::new(MeanPerKind::default()), "baseline"),
        (Box::new(LastTwo::default()), "baseline"),
    ]
}

/// Pinball (quantile) loss of predicting `q` for `actual` at quantile level `tau`.
pub fn pinball(tau: f64, q: f64, actual: f64) -> f64 {
    if actual >= q {
        tau * (actual - q)
    } else {
        (1.0 - tau) * (q - actual)
    }
}

/// Replays the trace's succeeded attempts through `lineup`; scores attempts starting at
/// or after `split_at` that every predictor could predict.
pub fn run(
    records: &[TraceRecord],
    split_at: i64,
    mut lineup: Vec<(Box<dyn DurationPredictor>, &'static str)>,
) -> (Table, Panel) {
    // (time, 0 = predict / 1 = learn, record)
    let mut steps: Vec<(i64, u8, &TraceRecord)> = records
        .iter()
        .filter(|r| r.outcome == TraceOutcome::Succeeded)
        .flat_map(|r| [(r.started_at, 0, r), (r.finished_at, 1, r)])
        .collect();
    steps.sort_by_key(|s| (s.0, s.1));
    let n = lineup.len();
    // Per predictor: pinball p50, pinball p90, covered by p90, off by 2x.
    let mut sums = vec![[0.0f64; 4]; n];
    let mut scored = 0u64;
    let plotted = plot_kind(records).unwrap_or(PLOT_KIND);
    let mut panel = Panel::new(
        &format!("{plotted}: duration (s), actual and predicted p90"),
        "time (min)",
    );
    let mut actual = Series::dots("actual");
    let mut predicted: Vec<Series> = lineup
        .iter()
        .map(|(p, _)| Series::line(&format!("{} p90", p.name())))
        .collect();
    let t0 = records.iter().map(|r| r.enqueued_at).min().unwrap_or(0);
    for (t, what, r) in steps {
        let key = DurationKey {
            kind: &r.kind,
            queue: &r.queue,
            payload_bytes: r.payload_bytes,
        };
        let d = r.run_ms();
        if what == 1 {
            for (p, _) in &mut lineup {
                p.observe(key, t, d);
            }
            continue;
        }
        if t < split_at {
            continue;
        }
        let preds: Vec<_> = lineup.iter().map(|(p, _)| p.predict(key, t)).collect();
        if preds.iter().any(Option::is_none) {
            continue;
        }
        scored += 1;
        let x = (t - t0) as f64 / 60_000.0;
        if r.kind == plotted {
            actual.points.push((x, d / 1000.0));
        }
        for (i, q) in preds.into_iter().flatten().enumerate() {
            sums[i][0] += pinball(0.5, q.p50, d) / 1000.0;
            sums[i][1] += pinball(0.9, q.p90, d) / 1000.0;
            sums[i][2] += f64::from(u8::from(d <= q.p90));
            let ratio = (q.p50.max(1.0) / d.max(1.0)).max(d.max(1.0) / q.p50.max(1.0));
            sums[i][3] += f64::from(u8::from(ratio >= 2.0));
            if r.kind == plotted {
                predicted[i].points.push((x, q.p90 / 1000.0));
            }
        }
    }
    let rows = lineup
        .iter()
        .zip(&sums)
        .map(|((p, role), s)| Row {
            name: p.name().to_string(),
            role,
            values: s
                .iter()
                .map(|v| (scored > 0).then(|| v / scored as f64))
                .collect(),
        })
        .collect();
    panel.series.push(actual);
    panel.series.extend(predicted);
    (
        Table {
            title: "duration",
            samples: (scored, "attempts predicted"),
            metrics: vec![
                Metric {
                    name: "pinball p50 (s)",
                    better: Better::Lower,
                },
                Metric {
                    name: "pinball p90 (s)",
                    better: Better::Lower,
                },
                Metric {
                    name: "p90 coverage",
                    better: Better::Near(900),
                },
                Metric {
                    name: "off by 2x",
                    better: Better::Lower,
                },
            ],
            rows,
            main: 1,
            guard: None,
        },
        panel,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A succeeded attempt of `kind` starting at `at` (s) and running 100 ms.
    fn ran(kind: &str, at: i64) -> TraceRecord {
        TraceRecord {
            job: at,
            kind: kind.into(),
            queue: "q".into(),
            payload_bytes: 10,
            attempt: 1,
            enqueued_at: at * 1_000,
            started_at: at * 1_000,
            finished_at: at * 1_000 + 100,
            outcome: TraceOutcome::Succeeded,
            error_class: None,
            node: "n1".into(),
            renew_ms: None,
        }
    }

    #[test]
    fn the_plot_follows_the_drifting_kind_or_else_the_most_common_one() {
        let mut records: Vec<TraceRecord> = (0..50).map(|i| ran("sleep", i)).collect();
        records.extend((50..60).map(|i| ran("noop", i)));
        let (_, panel) = run(&records, 0, lineup());
        assert!(panel.title.starts_with("sleep: "), "{}", panel.title);
        assert!(
            panel.series.iter().all(|s| !s.points.is_empty()),
            "every series has points"
        );
        records.extend((60..65).map(|i| ran(PLOT_KIND, i)));
        let (_, panel) = run(&records, 0, lineup());
        assert!(panel.title.starts_with("etl.load: "), "{}", panel.title);
        assert_eq!(plot_kind(&[]), None);
    }
}
