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
/// warming), every scenario at every λ: the frontier pings:N and fixed trace
/// out, and where adaptive lands.
#[must_use]
pub fn frontier(report: &Report) -> String {
    let (w, h, left, top, plot_w, plot_h) = (640.0, 420.0, 60.0, 40.0, 540.0, 330.0);
    let mut body = String::new();
    let max_ratio = report
        .rows
        .iter()
        .flat_map(|r| {
            let none = r
                .get("none")
                .map_or(1.0, |o| o.total_cost)
                .max(f64::MIN_POSITIVE);
            r.outcomes.iter().map(move |o| o.total_cost / none)
        })
        .fold(1.0, f64::max);
    let _ = writeln!(body, "<rect x=\"{left}\" y=\"{top}\" width=\"{plot_w}\" height=\"{plot_h}\" fill=\"none\" stroke=\"#ccc\"/>");
    let _ = writeln!(
        body,
        "<text x=\"{}\" y=\"{}\">hit rate of returning turns →</text>",
        left + plot_w / 2.0 - 80.0,
        top + plot_h + 30.0
    );
    let _ = writeln!(
        body,
        "<text x=\"12\" y=\"{}\" transform=\"rotate(-90 12 {})\">total cost / no warming →</text>",
        top + plot_h / 2.0 + 60.0,
        top + plot_h / 2.0 + 60.0
    );
    for (k, row) in report.rows.iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        let none = row
            .get("none")
            .map_or(1.0, |o| o.total_cost)
            .max(f64::MIN_POSITIVE);
        let point = |hit: f64, ratio: f64| {
            (
                left + hit * plot_w,
                top + plot_h - ratio / max_ratio * plot_h,
            )
        };
        let pings: Vec<(f64, f64)> = row
            .outcomes
            .iter()
            .filter(|o| {
                o.scenario.starts_with("pings:") || o.scenario == "fixed" || o.scenario == "none"
            })
            .map(|o| point(o.hit_rate(), o.total_cost / none))
            .collect();
        let mut sorted = pings.clone();
        sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
        let line: Vec<String> = sorted
            .iter()
            .map(|(x, y)| format!("{x:.1},{y:.1}"))
            .collect();
        let _ = writeln!(
            body,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-opacity=\"0.5\"/>",
            line.join(" ")
        );
        for o in &row.outcomes {
            let (x, y) = point(o.hit_rate(), o.total_cost / none);
            let (shape, label) = match o.scenario.as_str() {
                "adaptive" => (format!("<rect x=\"{:.1}\" y=\"{:.1}\" width=\"8\" height=\"8\" fill=\"{color}\"/>", x - 4.0, y - 4.0), "adaptive"),
                "oracle" => (format!("<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"4\" fill=\"none\" stroke=\"{color}\"/>"), "oracle"),
                _ => (format!("<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"2.5\" fill=\"{color}\"/>"), ""),
            };
            let _ = writeln!(
                body,
                "{shape}<title>{} λ=${:.4}/s: hit {:.1}%, cost {:.3}x</title>",
                escape(&o.scenario),
                row.lambda,
                o.hit_rate() * 100.0,
                o.total_cost / none
            );
            if !label.is_empty() {
                let _ = writeln!(
                    body,
                    "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"{color}\">{label}</text>",
                    x + 6.0,
                    y - 4.0
                );
            }
        }
        let _ = writeln!(
            body,
            "<text x=\"{}\" y=\"{}\" fill=\"{color}\">λ = ${:.0}/h</text>",
            left + plot_w - 90.0,
            top + 14.0 + 14.0 * k as f64,
            row.lambda * 3600.0
        );
    }
    document(
        w as u32,
        h as u32,
        &format!(
            "{}: cost vs hit rate (lines: none, pings:N, fixed)",
            report.trace
        ),
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
