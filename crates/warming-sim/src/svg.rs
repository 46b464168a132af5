//! The report's plots as standalone SVG.

use std::fmt::Write;

use crate::report::Report;
use crate::trace::Trace;

const COLORS: [&str; 6] = [
    "#2f6fde", "#1e8e5a", "#c0392b", "#8e44ad", "#d68910", "#17a589",
];

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn document(width: u32, height: u32, title: &str, body: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"10\" y=\"18\" font-size=\"14\">{}</text>\n{body}</svg>\n",
        escape(title)
    )
}

/// Total cost of each scenario relative to not warming, one panel per λ.
#[must_use]
pub fn cost_per_policy(report: &Report) -> String {
    let scenarios: Vec<String> = report.rows.first().map_or(Vec::new(), |r| {
        r.outcomes.iter().map(|o| o.scenario.clone()).collect()
    });
    let panel_h = 20 + 16 * scenarios.len() as u32;
    let height = 40 + panel_h * report.rows.len() as u32;
    let mut body = String::new();
    for (p, row) in report.rows.iter().enumerate() {
        let top = 40 + panel_h * p as u32;
        let none = row
            .get("none")
            .map_or(1.0, |o| o.total_cost)
            .max(f64::MIN_POSITIVE);
        let max = row
            .outcomes
            .iter()
            .map(|o| o.total_cost / none)
            .fold(1.0, f64::max);
        let _ = writeln!(body, "<text x=\"10\" y=\"{}\" font-weight=\"bold\">λ = ${:.4}/s (${:.0}/h): total cost / no warming</text>", top + 12, row.lambda, row.lambda * 3600.0);
        for (i, o) in row.outcomes.iter().enumerate() {
            let y = top + 18 + 16 * i as u32;
            let ratio = o.total_cost / none;
            let w = (ratio / max * 420.0).max(1.0);
            let color = if o.scenario == "adaptive" {
                COLORS[1]
            } else if o.scenario == "oracle" {
                "#999"
            } else {
                COLORS[0]
            };
            let _ = writeln!(body, "<text x=\"10\" y=\"{}\">{}</text><rect x=\"100\" y=\"{}\" width=\"{w:.1}\" height=\"12\" fill=\"{color}\"/><text x=\"{:.1}\" y=\"{}\">{ratio:.3}</text>", y + 10, escape(&o.scenario), y, 104.0 + w, y + 10);
        }
    }
    document(
        600,
        height,
        &format!("{}: cost per policy", report.trace),
        &body,
    )
}

/// Hit rate of returning turns against total cost (relative to not
/// warming), every scenario at every λ: the frontier that none, pings:N and
/// fixed trace out (lines), where adaptive lands (squares) and the oracle
/// (open circles).
#[must_use]
pub fn frontier(report: &Report) -> String {
    let (w, h, left, top, plot_w, plot_h) = (660.0, 440.0, 70.0, 40.0, 540.0, 340.0);
    let points: Vec<(f64, f64)> = report
        .rows
        .iter()
        .flat_map(|r| {
            let none = r
                .get("none")
                .map_or(1.0, |o| o.total_cost)
                .max(f64::MIN_POSITIVE);
            r.outcomes
                .iter()
                .map(move |o| (o.hit_rate(), o.total_cost / none))
        })
        .collect();
    let x_min = points.iter().map(|p| p.0).fold(1.0, f64::min) - 0.01;
    let (y_min, y_max) = points.iter().fold((f64::MAX, f64::MIN), |(lo, hi), p| {
        (lo.min(p.1), hi.max(p.1))
    });
    // Costs above 2x of not warming are off the chart: the interesting part
    // is near 1x.
    let y_max = y_max.min(2.0).max(y_min + 0.05);
    let y_min = y_min - 0.02;
    let x = |hit: f64| left + (hit - x_min) / (1.0 - x_min) * plot_w;
    let y = |ratio: f64| top + plot_h - (ratio.min(y_max) - y_min) / (y_max - y_min) * plot_h;
    let mut body = String::new();
    let _ = writeln!(body, "<rect x=\"{left}\" y=\"{top}\" width=\"{plot_w}\" height=\"{plot_h}\" fill=\"none\" stroke=\"#ccc\"/>");
    for i in 0..=4 {
        let hit = x_min + (1.0 - x_min) * f64::from(i) / 4.0;
        let ratio = y_min + (y_max - y_min) * f64::from(i) / 4.0;
        let _ = writeln!(
            body,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{:.0}%</text>",
            x(hit),
            top + plot_h + 14.0,
            hit * 100.0
        );
        let _ = writeln!(
            body,
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{ratio:.2}x</text>",
            left - 4.0,
            y(ratio) + 4.0
        );
    }
    let _ = writeln!(
        body,
        "<text x=\"{}\" y=\"{}\">hit rate of returning turns</text>",
        left + plot_w / 2.0 - 70.0,
        top + plot_h + 32.0
    );
    let _ = writeln!(body, "<text x=\"14\" y=\"{0}\" transform=\"rotate(-90 14 {0})\">total cost / no warming (capped at 2x)</text>", top + plot_h - 40.0);
    for (k, row) in report.rows.iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        let none = row
            .get("none")
            .map_or(1.0, |o| o.total_cost)
            .max(f64::MIN_POSITIVE);
        let mut rule: Vec<(f64, f64)> = row
            .outcomes
            .iter()
            .filter(|o| {
                o.scenario.starts_with("pings:") || o.scenario == "fixed" || o.scenario == "none"
            })
            .map(|o| (x(o.hit_rate()), y(o.total_cost / none)))
            .collect();
        rule.sort_by(|a, b| a.0.total_cmp(&b.0));
        let line: Vec<String> = rule
            .iter()
            .map(|(px, py)| format!("{px:.1},{py:.1}"))
            .collect();
        let _ = writeln!(
            body,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-opacity=\"0.6\"/>",
            line.join(" ")
        );
        for o in &row.outcomes {
            let (px, py) = (x(o.hit_rate()), y(o.total_cost / none));
            let shape = match o.scenario.as_str() {
                "adaptive" => format!("<rect x=\"{:.1}\" y=\"{:.1}\" width=\"8\" height=\"8\" fill=\"{color}\"/>", px - 4.0, py - 4.0),
                "oracle" => format!("<circle cx=\"{px:.1}\" cy=\"{py:.1}\" r=\"4\" fill=\"none\" stroke=\"{color}\"/>"),
                _ => format!("<circle cx=\"{px:.1}\" cy=\"{py:.1}\" r=\"2.5\" fill=\"{color}\"/>"),
            };
            let _ = writeln!(
                body,
                "{shape}<title>{} λ=${:.4}/s: hit {:.1}%, cost {:.3}x</title>",
                escape(&o.scenario),
                row.lambda,
                o.hit_rate() * 100.0,
                o.total_cost / none
            );
        }
        let _ = writeln!(
            body,
            "<text x=\"{}\" y=\"{}\" fill=\"{color}\">λ = ${:.0}/h</text>",
            left + 8.0,
            top + 14.0 + 14.0 * k as f64,
            row.lambda * 3600.0
        );
    }
    let _ = writeln!(body, "<text x=\"{}\" y=\"{}\" fill=\"#555\">lines: none, pings:N, fixed · squares: adaptive · open circles: oracle</text>", left, h - 8.0);
    document(
        w as u32,
        h as u32,
        &format!("{}: cost vs hit rate", report.trace),
        &body,
    )
}

/// Histogram of arrival-to-arrival gaps, log-spaced bins.
#[must_use]
pub fn gap_distribution(trace: &Trace, name: &str) -> String {
    let gaps = trace.gaps();
    let edges: Vec<f64> = (0..=24).map(|i| 1_000.0 * 1.6f64.powi(i)).collect();
    let mut counts = vec![0u64; edges.len() - 1];
    for g in &gaps {
        if let Some(i) = (0..counts.len()).find(|&i| (*g as f64) < edges[i + 1]) {
            counts[i] += 1;
        }
    }
    let max = counts.iter().copied().max().unwrap_or(1).max(1) as f64;
    let (left, top, bar_w, plot_h) = (50.0, 40.0, 22.0, 260.0);
    let mut body = String::new();
    for (i, &c) in counts.iter().enumerate() {
        let h = c as f64 / max * plot_h;
        let x = left + i as f64 * bar_w;
        let _ = writeln!(body, "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{}\" height=\"{h:.1}\" fill=\"#2f6fde\"><title>{:.0}-{:.0} s: {c}</title></rect>", top + plot_h - h, bar_w - 2.0, edges[i] / 1000.0, edges[i + 1] / 1000.0);
        if i % 3 == 0 {
            let _ = writeln!(
                body,
                "<text x=\"{x:.1}\" y=\"{}\">{:.0}s</text>",
                top + plot_h + 14.0,
                edges[i] / 1000.0
            );
        }
    }
    let ttl_x = left + (300_000f64 / 1000.0).ln() / 1.6f64.ln() * bar_w;
    let _ = writeln!(body, "<line x1=\"{ttl_x:.1}\" x2=\"{ttl_x:.1}\" y1=\"{top}\" y2=\"{}\" stroke=\"#c0392b\" stroke-dasharray=\"4 3\"/><text x=\"{:.1}\" y=\"{}\" fill=\"#c0392b\">5 min TTL</text>", top + plot_h, ttl_x + 4.0, top + 12.0);
    document(
        (left + bar_w * counts.len() as f64 + 20.0) as u32,
        (top + plot_h + 30.0) as u32,
        &format!(
            "{name}: {} gaps between turns (arrival to arrival)",
            gaps.len()
        ),
        &body,
    )
}
