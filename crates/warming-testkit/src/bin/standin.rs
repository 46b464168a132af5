//! `warming-standin`: the provider stand-in as a process, for the Python SDK
//! tests and the benchmarks.
//!
//! Usage: `warming-standin [--listen ADDR] [--ttl-ms N] [--backend-id ID]
//! [--chunk-delay-ms N] [--reject-zero-max-tokens]`. Prints `listening on ADDR`.

use std::time::Duration;

use warming_testkit::{Standin, StandinOptions};

fn main() -> std::process::ExitCode {
    let mut options = StandinOptions::default();
    let mut listen = "127.0.0.1:0".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_default();
        match arg.as_str() {
            "--listen" => listen = value(),
            "--ttl-ms" => options.ttl = Duration::from_millis(value().parse().unwrap_or(2_000)),
            "--backend-id" => options.backend_id = value(),
            "--chunk-delay-ms" => {
                options.chunk_delay = Duration::from_millis(value().parse().unwrap_or(0));
            }
            "--reject-zero-max-tokens" => options.reject_zero_max_tokens = true,
            other => {
                eprintln!("warming-standin: unknown argument {other:?}");
                return std::process::ExitCode::from(2);
            }
        }
    }
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&listen).await.expect("bind");
        let standin = Standin::serve(listener, options).expect("serve");
        println!("listening on {}", standin.url());
        let _ = tokio::signal::ctrl_c().await;
    });
    std::process::ExitCode::SUCCESS
}
