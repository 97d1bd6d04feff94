//! The run's report: a readable table, a JSON document, an SVG timeline (throughput,
//! membership, faults and evictions) drawn by hand, and the progress line shown while
//! the run goes.

use std::fmt::Write as _;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::checker::{Verdict, quantile};
use super::history::{AppliedFault, NodeInfo};
use super::plan::{Fault, Plan};
use super::windows::FaultWindow;

/// Everything a run produced, as written to `report.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Nodes in the cluster.
    pub nodes: usize,
    /// Byzantine members.
    pub byzantine: usize,
    /// Byzantine members the mesh tolerates.
    pub f: usize,
    /// Jobs the steady workload submitted (the liveness burst comes on top).
    pub jobs: u64,
    /// The seed.
    pub seed: u64,
    /// Length of the fault phase, ms.
    pub duration_ms: u64,
    /// The nodes' store: `sqlite` (one shared file) or `redis_postgres` (the run's own
    /// Postgres and Redis; the history was read from Postgres).
    #[serde(default)]
    pub store: String,
    /// The command that replays this run.
    pub replay: String,
    /// The schedule.
    pub plan: Plan,
    /// The nodes.
    pub cluster: Vec<NodeInfo>,
    /// The faults as applied, ms since the start of the workload.
    pub applied: Vec<AppliedFault>,
    /// Fault windows, ms since the start of the workload.
    pub windows: Vec<FaultWindow>,
    /// Heal, ms since the start.
    pub heal_ms: i64,
    /// End of the run, ms since the start.
    pub end_ms: i64,
    /// The checker's verdict (evictions in it are in ms since the Unix epoch).
    pub verdict: Verdict,
    /// Start of the workload, ms since the Unix epoch.
    pub start_ms: i64,
    /// Whether every invariant held.
    pub passed: bool,
}

fn check(ok: bool) -> &'static str {
    if ok { "ok" } else { "VIOLATED" }
}

/// The readable table.
pub fn table(r: &Report) -> String {
    let v = &r.verdict;
    let c = &v.counts;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "scenario {}  nodes {}  byzantine {} (f = {})  jobs {}  seed {}  duration {:?}  store {}",
        r.scenario,
        r.nodes,
        r.byzantine,
        r.f,
        r.jobs,
        r.seed,
        Duration::from_millis(r.duration_ms),
        r.store
    );
    let faults: Vec<String> = r
        .applied
        .iter()
        .map(|a| format!("+{:.1}s {}", a.at_ms as f64 / 1000.0, a.fault.label()))
        .collect();
    let _ = writeln!(s, "faults: {}", faults.join(", "));
    let _ = writeln!(s, "{:<26} {:>9}  invariant", "measure", "value");
    let mut row = |name: &str, value: String, inv: &str| {
        let _ = writeln!(s, "{name:<26} {value:>9}  {inv}");
    };
    row("attempted", c.attempted.to_string(), "");
    row("acknowledged", c.acknowledged.to_string(), "");
    row("completed", c.completed.to_string(), "");
    row("  succeeded", c.succeeded.to_string(), "");
    row("  dead-lettered", c.dead_lettered.to_string(), "");
    row(
        "lost",
        c.lost.to_string(),
        &format!("must be 0: {}", check(c.lost == 0)),
    );
    row(
        "unexpected",
        c.unexpected.to_string(),
        &format!("must be 0: {}", check(c.unexpected == 0)),
    );
    row("recovered (ack lost)", c.recovered.to_string(), "");
    row(
        "duplicated executions",
        c.duplicated_executions.to_string(),
        "reported (at-least-once)",
    );
    row("unrecorded attempts", c.unrecorded_attempts.to_string(), "");
    row(
        "duplicated completions",
        c.duplicated_completions.to_string(),
        &format!("must be 0: {}", check(c.duplicated_completions == 0)),
    );
    row(
        "inconsistent rows/events",
        c.inconsistent.to_string(),
        &format!("must be 0: {}", check(c.inconsistent == 0)),
    );
    row(
        "limit exceeded (samples)",
        format!("{} of {}", c.limit_exceeded, c.limit_samples),
        &format!("must be 0: {}", check(c.limit_exceeded == 0)),
    );
    row("rescued", c.rescued.to_string(), "");
    row("worker crashes", c.worker_crashes.to_string(), "");
    row("evictions", c.evictions.to_string(), "");
    let inv = if v.false_evictions_enforced {
        format!("must be 0: {}", check(c.false_evictions == 0))
    } else {
        format!("reported ({} liars > f = {})", r.byzantine, r.f)
    };
    row("false evictions", c.false_evictions.to_string(), &inv);
    let q = |p| quantile(&v.detection_ms, p).map_or("-".to_string(), |ms| format!("{ms} ms"));
    row(
        "detection p50",
        q(0.5),
        "kill, pause or cut-off to eviction",
    );
    row("detection p99", q(0.99), "");
    let live = v
        .liveness
        .iter()
        .filter(|l| l.claims_after_heal > 0)
        .count();
    let per_node: Vec<String> = v
        .liveness
        .iter()
        .map(|l| format!("{}:{}", l.node, l.claims_after_heal))
        .collect();
    row(
        "liveness after heal",
        format!("{live}/{}", v.liveness.len()),
        &format!(
            "all must work: {} (claims {})",
            check(live == v.liveness.len()),
            per_node.join(" ")
        ),
    );
    let _ = writeln!(s, "result: {}", if r.passed { "PASS" } else { "FAIL" });
    for m in &v.violations {
        let _ = writeln!(s, "  violated: {m}");
    }
    s
}

/// What the progress line shows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Time since the workload started.
    pub elapsed: Duration,
    /// Length of the fault phase.
    pub total: Duration,
    /// Jobs submitted so far.
    pub submitted: u64,
    /// Jobs the steady workload submits.
    pub jobs: u64,
    /// Jobs finished so far.
    pub finished: u64,
    /// Nodes running.
    pub up: usize,
    /// Nodes in the cluster.
    pub nodes: usize,
    /// Faults applied so far.
    pub faults: usize,
}

impl Progress {
    /// One line: elapsed time as a bar, jobs submitted and finished, nodes up.
    pub fn line(&self) -> String {
        const WIDTH: usize = 30;
        let frac = if self.total.is_zero() {
            1.0
        } else {
            (self.elapsed.as_secs_f64() / self.total.as_secs_f64()).min(1.0)
        };
        let filled = (frac * WIDTH as f64).round() as usize;
        format!(
            "[{}{}] {:>5.1}s/{:.0}s  submitted {}/{}  finished {}  nodes up {}/{}  faults {}",
            "#".repeat(filled),
            ".".repeat(WIDTH - filled),
            self.elapsed.as_secs_f64(),
            self.total.as_secs_f64(),
            self.submitted,
            self.jobs,
            self.finished,
            self.up,
            self.nodes,
            self.faults
        )
    }
}

/// Nodes up over time (ms since the start, count), from the applied faults.
pub fn membership(r: &Report) -> Vec<(i64, usize)> {
    let mut down = vec![false; r.nodes];
    let mut out = vec![(0, r.nodes)];
    for a in &r.applied {
        match &a.fault {
            Fault::Kill { node } | Fault::Pause { node } => down[*node] = true,
            Fault::Restart { node } | Fault::Resume { node } => down[*node] = false,
            Fault::HealAll => down.fill(false),
            _ => continue,
        }
        out.push((a.at_ms, down.iter().filter(|d| !**d).count()));
    }
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A span during which a store was down or slow, or the instant of a flush.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSpan {
    /// `postgres` or `redis`.
    pub store: &'static str,
    /// Start, ms since the start of the workload.
    pub from_ms: i64,
    /// End, ms since the start (equal to `from_ms` for a flush).
    pub to_ms: i64,
    /// `stopped`, `killed`, `slow +N ms` or `FLUSHALL`.
    pub what: String,
}

/// The store faults of a run as spans, from the applied faults (a span still open at
/// the end of the run ends there).
pub fn store_spans(r: &Report) -> Vec<StoreSpan> {
    let mut out = Vec::new();
    // Open spans: (index in `out`).
    let mut open: Vec<usize> = Vec::new();
    let start = |out: &mut Vec<StoreSpan>, store, at, what: String| {
        out.push(StoreSpan {
            store,
            from_ms: at,
            to_ms: at,
            what,
        });
        out.len() - 1
    };
    let close =
        |out: &mut Vec<StoreSpan>, open: &mut Vec<usize>, at, pick: &dyn Fn(&StoreSpan) -> bool| {
            open.retain(|&i| {
                if pick(&out[i]) {
                    out[i].to_ms = at;
                    false
                } else {
                    true
                }
            });
        };
    for a in &r.applied {
        let at = a.at_ms;
        match &a.fault {
            Fault::PostgresStop => open.push(start(&mut out, "postgres", at, "stopped".into())),
            Fault::RedisKill => open.push(start(&mut out, "redis", at, "killed".into())),
            Fault::RedisFlush => {
                start(&mut out, "redis", at, "FLUSHALL".into());
            }
            Fault::SlowStores {
                postgres_ms,
                redis_ms,
            } => {
                for (store, ms) in [("postgres", postgres_ms), ("redis", redis_ms)] {
                    if *ms > 0 {
                        open.push(start(&mut out, store, at, format!("slow +{ms} ms")));
                    }
                }
            }
            Fault::PostgresStart => close(&mut out, &mut open, at, &|s| s.what == "stopped"),
            Fault::RedisRestart => close(&mut out, &mut open, at, &|s| s.what == "killed"),
            Fault::FastStores => close(&mut out, &mut open, at, &|s| s.what.starts_with("slow")),
            Fault::HealAll => close(&mut out, &mut open, at, &|_| true),
            _ => {}
        }
    }
    close(&mut out, &mut open, r.end_ms, &|_| true);
    out
}

/// The SVG timeline: completions per second, nodes up, fault windows and evictions per
/// node, store outages, slow links and flushes (production scenarios), the heal.
pub fn svg(r: &Report) -> String {
    const L: f64 = 70.0;
    const W: f64 = 820.0;
    let spans = store_spans(r);
    let store_rows = if spans.is_empty() { 0 } else { 2 };
    let rows = (r.nodes + store_rows) as f64;
    let height = 300.0 + rows * 16.0 + 40.0;
    let end = r.end_ms.max(1) as f64;
    let x = |ms: f64| L + W * (ms / end).clamp(0.0, 1.0);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{height}" font-family="sans-serif" font-size="11">"#,
        L + W + 20.0
    );
    let _ = writeln!(
        s,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{L}" y="16" font-size="13">{} — nodes {}, byzantine {}, jobs {}, seed {}: {}</text>"#,
        esc(&r.scenario),
        r.nodes,
        r.byzantine,
        r.jobs,
        r.seed,
        if r.passed { "PASS" } else { "FAIL" }
    );
    // Throughput bars.
    let (top, h1) = (30.0, 120.0);
    let tp = &r.verdict.throughput;
    let max = tp.iter().copied().max().unwrap_or(0).max(1) as f64;
    let _ = writeln!(
        s,
        r#"<text x="4" y="{}">jobs/s</text><text x="{}" y="{}" text-anchor="end">{max}</text>"#,
        top + h1 / 2.0,
        L - 4.0,
        top + 10.0
    );
    for (i, n) in tp.iter().enumerate() {
        let (x0, x1) = (x(i as f64 * 1000.0), x((i + 1) as f64 * 1000.0));
        let bh = h1 * (*n as f64) / max;
        let _ = writeln!(
            s,
            r##"<rect x="{x0:.1}" y="{:.1}" width="{:.1}" height="{bh:.1}" fill="#4a90d9"/>"##,
            top + h1 - bh,
            (x1 - x0 - 1.0).max(0.5)
        );
    }
    // Nodes up.
    let (top2, h2) = (170.0, 80.0);
    let n = r.nodes.max(1) as f64;
    let y2 = |up: usize| top2 + h2 - h2 * up as f64 / n;
    let _ = writeln!(
        s,
        r#"<text x="4" y="{}">nodes up</text><text x="{}" y="{}" text-anchor="end">{}</text>"#,
        top2 + h2 / 2.0,
        L - 4.0,
        top2 + 10.0,
        r.nodes
    );
    let mut pts = Vec::new();
    let mut last = r.nodes;
    for (at, up) in membership(r) {
        pts.push(format!("{:.1},{:.1}", x(at as f64), y2(last)));
        pts.push(format!("{:.1},{:.1}", x(at as f64), y2(up)));
        last = up;
    }
    pts.push(format!("{:.1},{:.1}", x(end), y2(last)));
    let _ = writeln!(
        s,
        r##"<polyline points="{}" fill="none" stroke="#2a7f3f" stroke-width="2"/>"##,
        pts.join(" ")
    );
    // Per-node fault windows and evictions.
    let top3 = 280.0;
    let _ = writeln!(s, r#"<text x="4" y="{}">faults</text>"#, top3 - 8.0);
    for (i, node) in r.cluster.iter().enumerate() {
        let y = top3 + i as f64 * 16.0;
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{}" text-anchor="end">{}</text><line x1="{L}" y1="{}" x2="{}" y2="{}" stroke="#ddd"/>"##,
            L - 4.0,
            y + 10.0,
            esc(&node.name),
            y + 6.0,
            L + W,
            y + 6.0
        );
        for w in r.windows.iter().filter(|w| w.node == i) {
            let color = match w.why.as_str() {
                "killed" => "#d0021b",
                "paused" => "#f5a623",
                "partitioned" => "#9013fe",
                _ => "#7f7f7f",
            };
            let (a, b) = (x(w.from_ms as f64), x(w.to_ms.unwrap_or(r.end_ms) as f64));
            let _ = writeln!(
                s,
                r#"<rect x="{a:.1}" y="{y}" width="{:.1}" height="12" fill="{color}" opacity="0.7"><title>{}</title></rect>"#,
                (b - a).max(1.0),
                esc(&w.why)
            );
        }
        for e in r.verdict.evictions.iter().filter(|e| e.node == node.name) {
            let ex = x((e.at_ms - r.start_ms) as f64);
            let color = if e.false_eviction { "#d0021b" } else { "black" };
            let _ = writeln!(
                s,
                r#"<path d="M{ex:.1},{} l-5,-8 h10 z" fill="{color}"><title>evicted{}</title></path>"#,
                y + 12.0,
                if e.false_eviction { " (false)" } else { "" }
            );
        }
    }
    // Store rows under the nodes.
    for (k, store) in ["postgres", "redis"].iter().enumerate().take(store_rows) {
        let y = top3 + (r.nodes + k) as f64 * 16.0;
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{}" text-anchor="end">{store}</text><line x1="{L}" y1="{}" x2="{}" y2="{}" stroke="#ddd"/>"##,
            L - 4.0,
            y + 10.0,
            y + 6.0,
            L + W,
            y + 6.0
        );
        for sp in spans.iter().filter(|sp| sp.store == *store) {
            let (a, b) = (x(sp.from_ms as f64), x(sp.to_ms as f64));
            let color = match sp.what.as_str() {
                "FLUSHALL" => "black",
                w if w.starts_with("slow") => "#f5a623",
                _ => "#d0021b",
            };
            let _ = writeln!(
                s,
                r#"<rect x="{a:.1}" y="{y}" width="{:.1}" height="12" fill="{color}" opacity="0.7"><title>{}</title></rect>"#,
                (b - a).max(3.0),
                esc(&sp.what)
            );
        }
    }
    // Heal line and time axis.
    let bottom = top3 + rows * 16.0 + 4.0;
    let hx = x(r.heal_ms as f64);
    let _ = writeln!(
        s,
        r##"<line x1="{hx:.1}" y1="{top}" x2="{hx:.1}" y2="{bottom}" stroke="#2a7f3f" stroke-dasharray="4 3"/><text x="{:.1}" y="{}">heal</text>"##,
        hx + 3.0,
        top + 10.0
    );
    let secs = (end / 1000.0).ceil() as i64;
    let step = if secs > 60 { 10 } else { 5 };
    for t in (0..=secs).step_by(step) {
        let tx = x(t as f64 * 1000.0);
        let _ = writeln!(
            s,
            r##"<line x1="{tx:.1}" y1="{bottom}" x2="{tx:.1}" y2="{}" stroke="#333"/><text x="{tx:.1}" y="{}" text-anchor="middle">{t}s</text>"##,
            bottom + 4.0,
            bottom + 16.0
        );
    }
    let _ = writeln!(
        s,
        r##"<text x="{L}" y="{}" fill="#555">red: killed, orange: paused, purple: partitioned, grey: byzantine; triangles: evictions (red: false){}</text>"##,
        bottom + 32.0,
        if store_rows > 0 {
            "; stores: red down, orange slow, black FLUSHALL"
        } else {
            ""
        }
    );
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::checker::Eviction;

    fn report() -> Report {
        Report {
            scenario: "kill-restart".into(),
            nodes: 3,
            byzantine: 0,
            f: 0,
            jobs: 10,
            seed: 1,
            store: "sqlite".into(),
            duration_ms: 10_000,
            replay: "jobmesh chaos --scenario kill-restart".into(),
            plan: Plan {
                steps: vec![],
                panic_share: 0.0,
                liars: vec![],
            },
            cluster: (1..=3)
                .map(|i| NodeInfo {
                    name: format!("n{i}"),
                    peer_id: format!("p{i}"),
                })
                .collect(),
            applied: vec![
                AppliedFault {
                    at_ms: 1000,
                    fault: Fault::Kill { node: 1 },
                },
                AppliedFault {
                    at_ms: 3000,
                    fault: Fault::Restart { node: 1 },
                },
            ],
            windows: vec![FaultWindow {
                node: 1,
                why: "killed".into(),
                from_ms: 1000,
                to_ms: Some(3000),
            }],
            heal_ms: 7500,
            end_ms: 12_000,
            verdict: Verdict {
                throughput: vec![3, 4, 0, 2],
                evictions: vec![Eviction {
                    at_ms: 5_000_001_500,
                    node: "n2".into(),
                    incarnation: Some(1),
                    false_eviction: false,
                }],
                ..Verdict::default()
            },
            start_ms: 5_000_000_000,
            passed: true,
        }
    }

    #[test]
    fn membership_counts_nodes_up() {
        assert_eq!(membership(&report()), vec![(0, 3), (1000, 2), (3000, 3)]);
    }

    #[test]
    fn the_svg_is_one_document_with_every_part() {
        let svg = svg(&report());
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<svg").count(), 1);
        assert!(svg.contains("<title>killed</title>"));
        assert!(svg.contains("<title>evicted</title>"));
        assert!(svg.contains(">heal</text>"));
    }

    #[test]
    fn store_faults_become_spans_and_rows_of_the_svg() {
        let mut r = report();
        let f = |at_ms, fault| AppliedFault { at_ms, fault };
        r.applied = vec![
            f(1000, Fault::PostgresStop),
            f(2000, Fault::RedisFlush),
            f(3000, Fault::PostgresStart),
            f(
                4000,
                Fault::SlowStores {
                    postgres_ms: 0,
                    redis_ms: 80,
                },
            ),
            f(5000, Fault::FastStores),
            f(6000, Fault::RedisKill),
            f(7500, Fault::HealAll),
        ];
        let spans: Vec<(&str, i64, i64, String)> = store_spans(&r)
            .into_iter()
            .map(|s| (s.store, s.from_ms, s.to_ms, s.what))
            .collect();
        assert_eq!(
            spans,
            vec![
                ("postgres", 1000, 3000, "stopped".to_string()),
                ("redis", 2000, 2000, "FLUSHALL".to_string()),
                ("redis", 4000, 5000, "slow +80 ms".to_string()),
                ("redis", 6000, 7500, "killed".to_string()),
            ]
        );
        let doc = svg(&r);
        assert!(doc.contains(">postgres</text>") && doc.contains(">redis</text>"));
        assert!(doc.contains("<title>FLUSHALL</title>") && doc.contains("black FLUSHALL"));
        // A SQLite run has no store rows.
        assert!(store_spans(&report()).is_empty());
        assert!(!svg(&report()).contains(">redis</text>"));
    }

    #[test]
    fn the_table_names_every_invariant() {
        let t = table(&report());
        for what in [
            "lost",
            "unexpected",
            "duplicated completions",
            "false evictions",
            "liveness",
            "result: PASS",
        ] {
            assert!(t.contains(what), "{what} missing:\n{t}");
        }
    }

    #[test]
    fn the_progress_bar_fills_with_time() {
        let l = Progress {
            elapsed: Duration::from_secs(5),
            total: Duration::from_secs(10),
            submitted: 3,
            jobs: 9,
            finished: 2,
            up: 4,
            nodes: 4,
            faults: 1,
        }
        .line();
        assert!(l.starts_with("[###############..............."), "{l}");
        assert!(l.contains("submitted 3/9"));
    }
}
