//! `jobmesh plot`: turns the JSON lines of `jobmesh bench --out` (or any JSON lines)
//! into an SVG of curves: one panel per `--y` field against `--x`, one series per value
//! of `--series`. A field may go through an array (`windows[].rss_mb`): each line then
//! gives a series of its own, its points taken from the array's elements.

use std::collections::BTreeMap;

use anyhow::Context;
use jobmesh::plot::{Panel, Series, svg};
use serde_json::Value;

use crate::args::PlotArgs;

/// Largest input file read (the bench writes one short line per run).
const MAX_INPUT: u64 = 64 * 1024 * 1024;

/// Runs the verb.
pub fn run(args: PlotArgs) -> anyhow::Result<()> {
    let mut lines = Vec::new();
    for path in &args.files {
        let size = std::fs::metadata(path)
            .with_context(|| format!("reading {}", path.display()))?
            .len();
        anyhow::ensure!(
            size <= MAX_INPUT,
            "{} is {size} bytes; plot reads files up to {MAX_INPUT} bytes",
            path.display()
        );
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let v: Value = serde_json::from_str(line)
                .with_context(|| format!("{}:{}: not a JSON line", path.display(), n + 1))?;
            lines.push(v);
        }
    }
    anyhow::ensure!(!lines.is_empty(), "no JSON lines in the input files");
    let panels: Vec<Panel> = args
        .y
        .iter()
        .map(|y| {
            panel(
                &lines,
                &args.x,
                y,
                args.series.as_deref(),
                args.title.as_deref(),
            )
        })
        .collect::<anyhow::Result<_>>()?;
    std::fs::write(&args.out, svg(&panels))
        .with_context(|| format!("writing {}", args.out.display()))?;
    Ok(())
}

/// One panel: `y` against `x` over every line.
fn panel(
    lines: &[Value],
    x: &str,
    y: &str,
    series: Option<&str>,
    title: Option<&str>,
) -> anyhow::Result<Panel> {
    let title = match title {
        Some(t) => format!("{t}: {y}"),
        None => y.to_owned(),
    };
    let mut panel = Panel::new(&title, x);
    let mut by_name: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for (i, line) in lines.iter().enumerate() {
        let name = match series {
            Some(field) => lookup(line, field)
                .map(label)
                .unwrap_or_else(|| "(none)".into()),
            None => y.to_owned(),
        };
        match (array_field(x), array_field(y)) {
            (Some((xa, xf)), Some((ya, yf))) => {
                anyhow::ensure!(xa == ya, "--x {x} and --y {y} go through different arrays");
                let Some(Value::Array(items)) = lookup(line, xa) else {
                    continue;
                };
                let name = format!("{name} #{}", i + 1);
                let points = items
                    .iter()
                    .filter_map(|it| Some((number(lookup(it, xf)?)?, number(lookup(it, yf)?)?)))
                    .collect();
                by_name.insert(name, points);
            }
            (None, None) => {
                if let (Some(xv), Some(yv)) = (
                    lookup(line, x).and_then(number),
                    lookup(line, y).and_then(number),
                ) {
                    by_name.entry(name).or_default().push((xv, yv));
                }
            }
            _ => anyhow::bail!("--x {x} and --y {y}: both or neither go through an array"),
        }
    }
    anyhow::ensure!(
        by_name.values().any(|p| !p.is_empty()),
        "no line has numbers at both --x {x} and --y {y}"
    );
    for (name, mut points) in by_name {
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut s = Series::line(&name);
        s.points = points;
        panel.series.push(s);
    }
    Ok(panel)
}

/// `"windows[].t_s"` as `("windows", "t_s")`.
fn array_field(path: &str) -> Option<(&str, &str)> {
    path.split_once("[].")
}

/// The value at a dotted path (`pickup_ms.p99`).
fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, key| v.get(key))
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        _ => None,
    }
}

fn label(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn one_series_per_value_sorted_by_x() {
        let lines = vec![
            json!({"system": "a", "backlog": 10, "drain": {"rate": 5}}),
            json!({"system": "a", "backlog": 0, "drain": {"rate": 7}}),
            json!({"system": "b", "backlog": 0, "drain": {"rate": 3}}),
        ];
        let p = panel(&lines, "backlog", "drain.rate", Some("system"), None).unwrap();
        assert_eq!(p.series.len(), 2);
        assert_eq!(p.series[0].name, "a");
        assert_eq!(p.series[0].points, vec![(0.0, 7.0), (10.0, 5.0)]);
        assert_eq!(p.series[1].points, vec![(0.0, 3.0)]);
    }

    #[test]
    fn arrays_give_each_line_its_own_series() {
        let lines = vec![json!({"windows": [{"t": 1, "rss": 10}, {"t": 2, "rss": 11}]})];
        let p = panel(&lines, "windows[].t", "windows[].rss", None, None).unwrap();
        assert_eq!(p.series[0].points, vec![(1.0, 10.0), (2.0, 11.0)]);
        assert!(panel(&lines, "windows[].t", "rss", None, None).is_err());
    }

    #[test]
    fn a_field_no_line_has_is_an_error() {
        let lines = vec![json!({"x": 1})];
        let e = panel(&lines, "x", "nope", None, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope"), "{e}");
    }
}
