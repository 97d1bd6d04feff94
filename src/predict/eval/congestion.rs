//! Congestion replay: every attempt's availability, start and finish are fed to the
//! predictors in time order; each attempt's wait is predicted just before it becomes
//! available, and every ten seconds each predictor says, per queue and horizon (1, 5,
//! 15 min), whether a job enqueued then will wait longer than the SLO. The truth of an
//! alarm at `t` for horizon `h`: some job enqueued on the queue within ten seconds of
//! `t + h` waited longer than the SLO.
//!
//! The queue-length threshold baseline gets, per queue and horizon, the threshold that
//! maximised F1 on the ticks before the split (so it is the best such rule for the
//! trace, fitted on its past).

use std::collections::{BTreeMap, HashMap};

use super::plot::{Panel, Series};
use super::{Better, EvalOptions, Metric, Row, Table};
use crate::predict::congestion::{
    CongestionPredictor, FluidQueue, FluidSettings, LastWait, QueueLengthThreshold,
};
use crate::predict::trace::{TraceOutcome, TraceRecord};

const TICK_MS: i64 = 10_000;
const HORIZONS_MS: [i64; 3] = [60_000, 300_000, 900_000];

/// The queue the plot follows: the one with the most jobs waiting past the SLO.
fn plot_queue(records: &[TraceRecord], slo_ms: f64) -> Option<String> {
    let mut n: HashMap<&str, usize> = HashMap::new();
    for r in records {
        if r.wait_ms() > slo_ms {
            *n.entry(&r.queue).or_default() += 1;
        }
    }
    n.into_iter()
        .max_by_key(|(q, c)| (*c, *q))
        .map(|(q, _)| q.to_owned())
}

/// The model (no season, as on a live node) and the baselines (the threshold one is
/// fitted inside [`run`]).
pub fn lineup() -> Vec<(Box<dyn CongestionPredictor>, &'static str)> {
    lineup_for(EvalOptions::default())
}

/// The model's settings for `opts`: the defaults, learning the cycle of
/// `opts.season_ms` if given.
pub fn model_settings(opts: EvalOptions) -> FluidSettings {
    let d = FluidSettings::default();
    FluidSettings {
        season_ms: opts.season_ms.unwrap_or(d.season_ms),
        seasonal: opts.season_ms.is_some(),
        ..d
    }
}

/// The lineup with the model of [`model_settings`].
pub fn lineup_for(opts: EvalOptions) -> Vec<(Box<dyn CongestionPredictor>, &'static str)> {
    vec![
        (Box::new(FluidQueue::new(model_settings(opts))), "model"),
        (Box::new(LastWait::default()), "baseline"),
        (Box::new(QueueLengthThreshold::default()), "baseline"),
    ]
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Finish,
    Enqueue,
    Start,
    Tick,
}

/// Replays the trace through `lineup` and scores it after `split_at`.
pub fn run(
    records: &[TraceRecord],
    split_at: i64,
    opts: EvalOptions,
    mut lineup: Vec<(Box<dyn CongestionPredictor>, &'static str)>,
) -> (Table, Panel) {
    let recs: Vec<&TraceRecord> = records
        .iter()
        .filter(|r| r.outcome != TraceOutcome::Cancelled)
        .collect();
    let mut steps: Vec<(i64, Ev, usize)> = Vec::with_capacity(recs.len() * 3);
    for (i, r) in recs.iter().enumerate() {
        steps.push((r.enqueued_at, Ev::Enqueue, i));
        steps.push((r.started_at, Ev::Start, i));
        steps.push((r.finished_at, Ev::Finish, i));
    }
    let (t0, t1) = super::span(records).unwrap_or((0, 0));
    let mut t = t0 - t0.rem_euclid(TICK_MS);
    while t <= t1 {
        steps.push((t, Ev::Tick, 0));
        t += TICK_MS;
    }
    steps.sort_unstable_by_key(|s| (s.0, s.1, s.2));
    let mut queues: Vec<&str> = recs.iter().map(|r| r.queue.as_str()).collect();
    queues.sort_unstable();
    queues.dedup();
    // Per queue: (enqueued_at, wait) sorted, for the truth of alarms.
    let mut waits: BTreeMap<&str, Vec<(i64, f64)>> = BTreeMap::new();
    for r in &recs {
        if r.outcome != TraceOutcome::Lost || r.started_at > r.enqueued_at {
            waits
                .entry(&r.queue)
                .or_default()
                .push((r.enqueued_at, r.wait_ms()));
        }
    }
    for v in waits.values_mut() {
        v.sort_by_key(|a| a.0);
    }
    let truth = |q: &str, at: i64| -> Option<bool> {
        let v = waits.get(q)?;
        let i = v.partition_point(|x| x.0 < at);
        let window: Vec<_> = v[i..].iter().take_while(|x| x.0 < at + TICK_MS).collect();
        (!window.is_empty()).then(|| window.iter().any(|x| x.1 > opts.slo_ms))
    };
    let slo = opts.slo_ms;
    let n = lineup.len();
    let mut abs_err = vec![(0.0f64, 0u64); n];
    // Per predictor per horizon: (tp, fp, fn), alarm onsets.
    let mut confusion = vec![[(0u64, 0u64, 0u64); 3]; n];
    let mut onsets = vec![0u64; n];
    let mut alarm_on: Vec<HashMap<&str, bool>> = vec![HashMap::new(); n];
    // Ticks before the split for fitting thresholds: (queue, horizon) -> (backlog, truth).
    let mut train: HashMap<(&str, usize), Vec<(f64, bool)>> = HashMap::new();
    let mut backlog = QueueLengthThreshold::default();
    let mut fitted = false;
    let focus = plot_queue(records, slo);
    let mut panel = Panel::new(
        &format!(
            "queue {}: wait (s) of jobs, actual and predicted",
            focus.as_deref().unwrap_or("-")
        ),
        "time (min)",
    );
    let mut actual = Series::dots("actual wait");
    let mut predicted: Vec<Series> = lineup
        .iter()
        .map(|(p, _)| Series::line(&format!("{} predicted", p.name())))
        .collect();
    for (t, ev, i) in steps {
        match ev {
            Ev::Enqueue => {
                let r = recs[i];
                if t >= split_at {
                    let wait = r.wait_ms();
                    let preds: Vec<_> = lineup
                        .iter()
                        .map(|(p, _)| p.predict_wait(&r.queue, t, 0))
                        .collect();
                    if preds[..2].iter().all(Option::is_some) {
                        for (k, p) in preds.iter().enumerate() {
                            if let Some(p) = p {
                                abs_err[k].0 += (p - wait).abs() / 1000.0;
                                abs_err[k].1 += 1;
                            }
                        }
                        if focus.as_deref() == Some(r.queue.as_str()) {
                            let x = (t - t0) as f64 / 60_000.0;
                            actual.points.push((x, wait / 1000.0));
                            for (k, p) in preds.iter().enumerate() {
                                if let Some(p) = p {
                                    predicted[k].points.push((x, p / 1000.0));
                                }
                            }
                        }
                    }
                }
                backlog.on_enqueue(&r.queue, t);
                for (p, _) in &mut lineup {
                    p.on_enqueue(&r.queue, t);
                }
            }
            Ev::Start => {
                let r = recs[i];
                backlog.on_start(&r.queue, t, r.wait_ms());
                for (p, _) in &mut lineup {
                    p.on_start(&r.queue, t, r.wait_ms());
                }
            }
            Ev::Finish => {
                let r = recs[i];
                for (p, _) in &mut lineup {
                    p.on_finish(&r.queue, t, r.run_ms());
                }
            }
            Ev::Tick => {
                if t < split_at {
                    for &q in &queues {
                        for (h, hz) in HORIZONS_MS.iter().enumerate() {
                            if let Some(y) = truth(q, t + hz) {
                                train
                                    .entry((q, h))
                                    .or_default()
                                    .push((backlog.backlog(q), y));
                            }
                        }
                    }
                    continue;
                }
                if !fitted {
                    fitted = true;
                    fit_thresholds(&mut lineup, &train);
                }
                for (k, (p, _)) in lineup.iter().enumerate() {
                    for &q in &queues {
                        let now = p.predict_breach(q, t, 0, slo);
                        let was = alarm_on[k].insert(q, now).unwrap_or(false);
                        if now && !was {
                            onsets[k] += 1;
                        }
                        for (h, hz) in HORIZONS_MS.iter().enumerate() {
                            let Some(y) = truth(q, t + hz) else { continue };
                            let yhat = p.predict_breach(q, t, *hz, slo);
                            let c = &mut confusion[k][h];
                            match (yhat, y) {
                                (true, true) => c.0 += 1,
                                (true, false) => c.1 += 1,
                                (false, true) => c.2 += 1,
                                _ => {}
                            }
                        }
                    }
                }
            }
        }
    }
    let mut rows = Vec::new();
    for (k, (p, role)) in lineup.iter().enumerate() {
        let mut values = vec![(abs_err[k].1 > 0).then(|| abs_err[k].0 / abs_err[k].1 as f64)];
        for &(tp, fp, fne) in &confusion[k] {
            let prec = (tp + fp > 0).then(|| tp as f64 / (tp + fp) as f64);
            let rec = (tp + fne > 0).then(|| tp as f64 / (tp + fne) as f64);
            values.push(prec);
            values.push(rec);
        }
        let f1 = |h: usize| {
            let (tp, fp, fne) = confusion[k][h];
            (tp + fp + fne > 0).then(|| 2.0 * tp as f64 / (2 * tp + fp + fne) as f64)
        };
        values.extend((0..HORIZONS_MS.len()).map(f1));
        values.push(Some(onsets[k] as f64));
        rows.push(Row {
            name: p.name().to_string(),
            role,
            values,
        });
    }
    panel.series.push(actual);
    panel
        .series
        .extend(predicted.into_iter().filter(|s| !s.points.is_empty()));
    let metric = |name, better| Metric { name, better };
    (
        Table {
            title: "congestion",
            samples: (abs_err[0].1, "waits predicted"),
            metrics: vec![
                metric("wait MAE (s)", Better::Lower),
                metric("precision@1m", Better::Higher),
                metric("recall@1m", Better::Higher),
                metric("precision@5m", Better::Higher),
                metric("recall@5m", Better::Higher),
                metric("precision@15m", Better::Higher),
                metric("recall@15m", Better::Higher),
                metric("F1@1m", Better::Higher),
                metric("F1@5m", Better::Higher),
                metric("F1@15m", Better::Higher),
                metric("alarms", Better::Lower),
            ],
            rows,
            main: 0,
            guard: None,
        },
        panel,
    )
}

/// Gives each [`QueueLengthThreshold`] of the lineup, per queue, the backlog threshold
/// with the best F1 on the training ticks (of the 5-minute horizon, the middle one).
fn fit_thresholds(
    lineup: &mut [(Box<dyn CongestionPredictor>, &'static str)],
    train: &HashMap<(&str, usize), Vec<(f64, bool)>>,
) {
    let mut thresholds = HashMap::new();
    for ((q, h), samples) in train {
        if *h != 1 {
            continue;
        }
        let mut candidates: Vec<f64> = samples.iter().map(|s| s.0).collect();
        candidates.sort_by(f64::total_cmp);
        candidates.dedup();
        let mut best = (0.0, f64::INFINITY);
        for c in candidates {
            let (mut tp, mut fp, mut fne) = (0.0, 0.0, 0.0);
            for (b, y) in samples {
                match (*b > c, *y) {
                    (true, true) => tp += 1.0,
                    (true, false) => fp += 1.0,
                    (false, true) => fne += 1.0,
                    _ => {}
                }
            }
            let f1 = if tp > 0.0 {
                2.0 * tp / (2.0 * tp + fp + fne)
            } else {
                0.0
            };
            if f1 > best.0 {
                best = (f1, c);
            }
        }
        thresholds.insert((*q).to_owned(), best.1);
    }
    for (p, _) in lineup.iter_mut() {
        p.set_thresholds(&thresholds);
    }
}
