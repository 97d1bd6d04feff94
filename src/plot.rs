//! A hand-written SVG of panels of series: predicted against actual for the
//! predictors, cost curves for the benchmarks. Panels are stacked, series drawn as lines
//! or dots. Text in the SVG is escaped: series names come from files anyone may write.

use std::fmt::Write as _;

/// Most points drawn per series (longer series are thinned evenly).
const MAX_POINTS: usize = 4000;

/// One series.
#[derive(Debug, Clone)]
pub struct Series {
    /// Its legend.
    pub name: String,
    /// (x, y) points.
    pub points: Vec<(f64, f64)>,
    /// Dots instead of a line.
    pub dots: bool,
}

impl Series {
    /// A series drawn as a line.
    pub fn line(name: &str) -> Self {
        Self {
            name: name.into(),
            points: Vec::new(),
            dots: false,
        }
    }

    /// A series drawn as dots.
    pub fn dots(name: &str) -> Self {
        Self {
            dots: true,
            ..Self::line(name)
        }
    }
}

/// One panel.
#[derive(Debug, Clone)]
pub struct Panel {
    /// Its title.
    pub title: String,
    /// The x axis' label.
    pub x_label: String,
    /// Its series.
    pub series: Vec<Series>,
    /// Vertical marks (x, label), e.g. node failures.
    pub marks: Vec<(f64, String)>,
}

impl Panel {
    /// An empty panel.
    pub fn new(title: &str, x_label: &str) -> Self {
        Self {
            title: title.into(),
            x_label: x_label.into(),
            series: Vec::new(),
            marks: Vec::new(),
        }
    }
}

const COLOURS: [&str; 6] = [
    "#888888", "#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e",
];

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The panels as one SVG document.
pub fn svg(panels: &[Panel]) -> String {
    let (w, ph) = (1000.0, 300.0);
    let (left, right, top, bottom) = (70.0, 20.0, 40.0, 40.0);
    let height = ph * panels.len().max(1) as f64;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    for (i, p) in panels.iter().enumerate() {
        let y0 = i as f64 * ph;
        let pts = p.series.iter().flat_map(|s| s.points.iter());
        let (mut xmin, mut xmax, mut ymin, mut ymax) = (f64::MAX, f64::MIN, 0.0f64, f64::MIN);
        for &(x, y) in pts.filter(|(x, y)| x.is_finite() && y.is_finite()) {
            xmin = xmin.min(x);
            xmax = xmax.max(x);
            ymin = ymin.min(y);
            ymax = ymax.max(y);
        }
        if xmin > xmax {
            (xmin, xmax, ymax) = (0.0, 1.0, 1.0);
        }
        if xmax <= xmin {
            xmax = xmin + 1.0;
        }
        if ymax <= ymin {
            ymax = ymin + 1.0;
        }
        let (pw, pht) = (w - left - right, ph - top - bottom);
        let sx = |x: f64| left + (x - xmin) / (xmax - xmin) * pw;
        let sy = |y: f64| y0 + top + pht - (y - ymin) / (ymax - ymin) * pht;
        let _ = writeln!(
            out,
            r#"<text x="{left}" y="{}" font-weight="bold">{}</text>"#,
            y0 + 20.0,
            escape(&p.title)
        );
        let _ = writeln!(
            out,
            r##"<rect x="{left}" y="{}" width="{pw}" height="{pht}" fill="none" stroke="#444"/>"##,
            y0 + top
        );
        for k in 0..=4 {
            let yv = ymin + (ymax - ymin) * k as f64 / 4.0;
            let xv = xmin + (xmax - xmin) * k as f64 / 4.0;
            let _ = writeln!(
                out,
                r#"<text x="{}" y="{}" text-anchor="end">{yv:.1}</text>"#,
                left - 5.0,
                sy(yv) + 4.0
            );
            let _ = writeln!(
                out,
                r#"<text x="{}" y="{}" text-anchor="middle">{xv:.0}</text>"#,
                sx(xv),
                y0 + top + pht + 15.0
            );
        }
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            left + pw / 2.0,
            y0 + ph - 5.0,
            escape(&p.x_label)
        );
        for (x, label) in &p.marks {
            if !x.is_finite() {
                continue;
            }
            let _ = writeln!(
                out,
                r#"<line x1="{0}" x2="{0}" y1="{1}" y2="{2}" stroke="black" stroke-dasharray="4 3"/><text x="{3}" y="{4}">{5}</text>"#,
                sx(*x),
                y0 + top,
                y0 + top + pht,
                sx(*x) + 3.0,
                y0 + top + 12.0,
                escape(label)
            );
        }
        for (k, s) in p.series.iter().enumerate() {
            let colour = COLOURS[k % COLOURS.len()];
            let step = s.points.len().div_ceil(MAX_POINTS).max(1);
            let pts: Vec<(f64, f64)> = s
                .points
                .iter()
                .step_by(step)
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .map(|&(x, y)| (sx(x), sy(y.min(ymax))))
                .collect();
            if s.dots {
                for (x, y) in pts {
                    let _ = writeln!(
                        out,
                        r#"<circle cx="{x:.1}" cy="{y:.1}" r="1.5" fill="{colour}" fill-opacity="0.5"/>"#
                    );
                }
            } else if !pts.is_empty() {
                let path: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
                let _ = writeln!(
                    out,
                    r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="1.2"/>"#,
                    path.join(" ")
                );
            }
            let _ = writeln!(
                out,
                r#"<text x="{}" y="{}" fill="{colour}">{}</text>"#,
                w - right - 200.0,
                y0 + top + 15.0 + 14.0 * k as f64,
                escape(&s.name)
            );
        }
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_svg_holds_every_panel_and_escapes_names() {
        let mut p = Panel::new("a <b>", "t");
        let mut s = Series::line("x&y");
        s.points = vec![(0.0, 1.0), (1.0, 2.0), (2.0, f64::NAN)];
        p.series.push(s);
        p.series.push(Series::dots("empty"));
        p.marks.push((1.0, "death".into()));
        let out = svg(&[p.clone(), p]);
        assert!(out.starts_with("<svg") && out.trim_end().ends_with("</svg>"));
        assert_eq!(out.matches("<polyline").count(), 2);
        assert!(out.contains("a &lt;b&gt;") && out.contains("x&amp;y"));
        assert!(!out.contains("NaN"));
    }
}
