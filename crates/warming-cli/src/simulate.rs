//! `warming simulate`: every policy on real traces, as a table, JSON and SVG.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use crate::client::parse_duration;
use warming_sim::{svg, sweep, SimConfig, Trace};

/// Flags of `warming simulate`.
#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// Trace files (Mooncake JSONL, RAGPulse JSONL, or plain
    /// `{conversation, at_ms, prompt_tokens}` JSONL).
    #[arg(required = true)]
    pub traces: Vec<PathBuf>,
    /// Dollars per second of a user's waiting, comma-separated to sweep.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0,0.0005,0.002,0.01,0.03"
    )]
    pub lambda: Vec<f64>,
    /// Time between warms.
    #[arg(long, default_value = "4m")]
    pub interval: String,
    /// How long the provider keeps a prefix after its last use (its
    /// 5-minute cache).
    #[arg(long, default_value = "5m")]
    pub cache_ttl: String,
    /// Share of each trace, from its start, played but not counted (the
    /// server learns its prior there, as a running server already has); 0
    /// measures a cold start.
    #[arg(long, default_value_t = 0.1)]
    pub warm_up: f64,
    /// Where the SVG plots go.
    #[arg(long, default_value = "simulate-report")]
    pub out: PathBuf,
}

/// Runs the simulation; `Err` is the one line to print.
pub fn run(args: SimulateArgs, json: bool) -> Result<(), String> {
    if args.lambda.iter().any(|l| !l.is_finite() || *l < 0.0) {
        return Err("--lambda takes numbers >= 0 (dollars per second)".into());
    }
    if !(0.0..1.0).contains(&args.warm_up) {
        return Err("--warm-up takes a share of the trace in [0, 1)".into());
    }
    let mut config = SimConfig {
        interval_ms: parse_duration(&args.interval)?,
        warm_up: args.warm_up,
        ..SimConfig::default()
    };
    config.economics.lambda_per_sec = args.lambda[0];
    config.economics.ttl_ms = parse_duration(&args.cache_ttl)?.max(1);
    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("cannot create {}: {e}", args.out.display()))?;
    let live = std::io::stderr().is_terminal();
    let mut reports = Vec::new();
    for path in &args.traces {
        let file = std::fs::File::open(path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let trace = Trace::read(std::io::BufReader::new(file))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let name = path
            .file_stem()
            .map_or("trace".into(), |s| s.to_string_lossy().into_owned());
        let mut progress = |done: usize, total: usize| {
            if live {
                let filled = done * 30 / total.max(1);
                let _ = write!(
                    std::io::stderr(),
                    "\r{name} [{}{}] {done}/{total}",
                    "#".repeat(filled),
                    " ".repeat(30 - filled)
                );
                if done == total {
                    let _ = writeln!(std::io::stderr());
                }
            }
        };
        let report = sweep(&trace, &name, &args.lambda, &config, &mut progress);
        for (file, content) in [
            (format!("{name}-cost.svg"), svg::cost_per_policy(&report)),
            (format!("{name}-frontier.svg"), svg::frontier(&report)),
            (
                format!("{name}-gaps.svg"),
                svg::gap_distribution(&trace, &name),
            ),
        ] {
            let path = args.out.join(file);
            std::fs::write(&path, content)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
        if !json {
            println!("{}", report.table());
        }
        reports.push(report);
    }
    if json {
        let text = serde_json::to_string_pretty(&reports).map_err(|e| e.to_string())?;
        println!("{text}");
    } else {
        eprintln!("plots written to {}", args.out.display());
    }
    Ok(())
}
