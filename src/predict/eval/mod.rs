//! `jobmesh predict eval`: replays a trace in time order, each model learning only from
//! what happened before the moment it predicts, and scores the models and their
//! baselines on the part of the trace after the split (`split` = share of the trace's
//! time span used only for learning).
//!
//! Each predictor family has its own replay (`duration`, `failure`, `retry`,
//! `congestion`), taking a lineup of predictors behind the family's trait: the model
//! first, then its baselines. A test can put a baseline in the model's place and check
//! that it then does not win.

use serde::Serialize;

use super::trace::TraceRecord;

pub mod congestion;
pub mod duration;
pub mod failure;
pub use crate::plot;
pub mod retry;

/// Options of an evaluation.
#[derive(Debug, Clone, Copy)]
pub struct EvalOptions {
    /// Share of the trace's time span used for learning only (0..1).
    pub split: f64,
    /// The wait SLO of every queue (ms).
    pub slo_ms: f64,
    /// The baseline's heartbeat timeout (ms).
    pub heartbeat_timeout_ms: i64,
    /// Seed of the retry replay's draws.
    pub seed: u64,
    /// Length of the arrivals' cycle the congestion model learns (ms), if it learns one
    /// (`--season`: a day for a real store's export, the `--cycle` of a generated trace,
    /// which its file does not say); none by default, as on a live node.
    pub season_ms: Option<i64>,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            split: 0.7,
            slo_ms: 30_000.0,
            heartbeat_timeout_ms: 10_000,
            seed: 1,
            season_ms: None,
        }
    }
}

/// Whether lower or higher values of a metric are better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    /// Lower is better.
    Lower,
    /// Higher is better.
    Higher,
    /// Closer to the target is better.
    Near(
        /// The target, in thousandths.
        i64,
    ),
}

impl Better {
    fn key(self, v: f64) -> f64 {
        match self {
            Better::Lower => v,
            Better::Higher => -v,
            Better::Near(t) => (v - t as f64 / 1000.0).abs(),
        }
    }
}

/// One metric column.
#[derive(Debug, Clone, Serialize)]
pub struct Metric {
    /// Its name.
    pub name: &'static str,
    /// Which way is better.
    pub better: Better,
}

/// One predictor's row.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The predictor.
    pub name: String,
    /// `model`, `variant` or `baseline`.
    pub role: &'static str,
    /// One value per metric (`None`: not defined for it, e.g. precision without alarms).
    pub values: Vec<Option<f64>>,
}

/// A predictor family's table.
#[derive(Debug, Clone, Serialize)]
pub struct Table {
    /// Which predictor.
    pub title: &'static str,
    /// Scored samples (predictions, failures, jobs ...) and what they are.
    pub samples: (u64, &'static str),
    /// The columns.
    pub metrics: Vec<Metric>,
    /// The rows: model first, baselines last.
    pub rows: Vec<Row>,
    /// Index of the main metric.
    pub main: usize,
    /// A metric the model must not lose by more than this much while winning the main
    /// one (e.g. success share while saving attempts).
    pub guard: Option<(usize, f64)>,
}

impl Table {
    /// The best row's name for metric `m` (`None` when no row has a value, or on a tie).
    pub fn winner(&self, m: usize) -> Option<&str> {
        let better = self.metrics[m].better;
        let mut best: Option<(f64, &str)> = None;
        let mut tie = false;
        for r in &self.rows {
            let Some(v) = r.values[m] else { continue };
            let k = better.key(v);
            match best {
                Some((b, _)) if (k - b).abs() <= 1e-12 * b.abs().max(1.0) => tie = true,
                Some((b, _)) if k > b => {}
                _ => {
                    best = Some((k, &r.name));
                    tie = false;
                }
            }
        }
        if tie { None } else { best.map(|b| b.1) }
    }

    /// Whether the model (first row) beats every baseline on the main metric, without
    /// losing the guard metric by more than its tolerance.
    pub fn model_wins(&self) -> bool {
        let better = self.metrics[self.main].better;
        let Some(model) = self.rows[0].values[self.main] else {
            return false;
        };
        let baselines = self.rows.iter().filter(|r| r.role == "baseline");
        let beats_main = baselines
            .clone()
            .all(|b| b.values[self.main].is_none_or(|v| better.key(model) < better.key(v) - 1e-12));
        let guard_ok = self.guard.is_none_or(|(g, tol)| {
            let better = self.metrics[g].better;
            let m = self.rows[0].values[g].map_or(f64::INFINITY, |v| better.key(v));
            baselines
                .clone()
                .all(|b| b.values[g].is_none_or(|v| m <= better.key(v) + tol))
        });
        beats_main && guard_ok
    }

    /// The table as text, with a winner line per metric.
    pub fn render(&self) -> String {
        let mut cols: Vec<Vec<String>> = Vec::new();
        let mut header = vec!["predictor".to_string()];
        header.extend(self.metrics.iter().enumerate().map(|(i, m)| {
            if i == self.main {
                format!("{} *", m.name)
            } else {
                m.name.to_string()
            }
        }));
        cols.push(header);
        for r in &self.rows {
            let mut line = vec![format!("{} ({})", r.name, r.role)];
            line.extend(r.values.iter().map(|v| match v {
                None => "-".to_string(),
                Some(v) if v.abs() >= 100.0 => format!("{v:.0}"),
                Some(v) => format!("{v:.3}"),
            }));
            cols.push(line);
        }
        let mut winner = vec!["winner".to_string()];
        winner.extend((0..self.metrics.len()).map(|m| self.winner(m).unwrap_or("-").to_string()));
        cols.push(winner);
        let widths: Vec<usize> = (0..cols[0].len())
            .map(|c| cols.iter().map(|row| row[c].len()).max().unwrap_or(0))
            .collect();
        let mut out = format!(
            "{} ({} {}; * = main metric; model wins: {})\n",
            self.title,
            self.samples.0,
            self.samples.1,
            if self.model_wins() { "yes" } else { "no" }
        );
        for row in &cols {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(i, (c, w))| {
                    if i == 0 {
                        format!("{c:<w$}")
                    } else {
                        format!("{c:>w$}")
                    }
                })
                .collect();
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
        }
        out
    }
}

/// The four tables and the series to plot.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Records in the trace.
    pub records: usize,
    /// Where the split falls (ms since the epoch).
    pub split_at: i64,
    /// The tables: duration, failure, retry, congestion.
    pub tables: Vec<Table>,
    /// Predicted against actual, for the plot.
    #[serde(skip)]
    pub panels: Vec<plot::Panel>,
}

/// The time span of a trace: first `enqueued_at`, last `finished_at`.
pub fn span(records: &[TraceRecord]) -> Option<(i64, i64)> {
    let from = records.iter().map(|r| r.enqueued_at).min()?;
    let to = records.iter().map(|r| r.finished_at).max()?;
    Some((from, to))
}

/// The instant that splits the trace's span at `split`.
pub fn split_at(records: &[TraceRecord], split: f64) -> i64 {
    span(records).map_or(0, |(a, b)| {
        a + ((b - a) as f64 * split.clamp(0.0, 1.0)) as i64
    })
}

/// Why an evaluation cannot run.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// Nothing to replay.
    #[error("the trace is empty")]
    Empty,
    /// A bad option.
    #[error("{0}")]
    Option(String),
}

/// Runs every predictor family with its default lineup.
pub fn evaluate(records: &[TraceRecord], opts: EvalOptions) -> Result<Report, EvalError> {
    if records.is_empty() {
        return Err(EvalError::Empty);
    }
    if !(0.05..=0.95).contains(&opts.split) {
        return Err(EvalError::Option(format!(
            "--split must be within 0.05..=0.95, got {}",
            opts.split
        )));
    }
    if !(opts.slo_ms > 0.0 && opts.slo_ms.is_finite()) {
        return Err(EvalError::Option("--slo must be positive".into()));
    }
    if opts.season_ms.is_some_and(|c| c < 60_000) {
        // Shorter cycles would cut the season into buckets of about a second or less.
        return Err(EvalError::Option("--season must be at least 1m".into()));
    }
    let at = split_at(records, opts.split);
    let (d, dp) = duration::run(records, at, duration::lineup());
    let (f, fp) = failure::run(records, at, opts, failure::lineup(opts));
    let r = retry::run(records, at, opts, retry::lineup());
    let (c, cp) = congestion::run(records, at, opts, congestion::lineup_for(opts));
    Ok(Report {
        records: records.len(),
        split_at: at,
        tables: vec![d, f, r, c],
        panels: vec![dp, fp, cp],
    })
}
