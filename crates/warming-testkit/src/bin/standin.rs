//! `warming-standin`: the provider stand-in as a process, for trying warming
//! without a provider key, for the Python SDK tests and the benchmarks.
//!
//! Usage: see [`USAGE`]. Prints `listening on URL`.

use std::time::Duration;

use warming_testkit::{Standin, StandinOptions};

/// What `--help` prints.
const USAGE: &str = "\
warming-standin: a stand-in for the Anthropic Messages and OpenAI Chat APIs with a real
prefix cache: a prefix is forgotten a TTL after its last use, and every answer reports the
usage the provider would (cache reads, cache writes). No key needed.

Usage: warming-standin [--listen ADDR] [--ttl-ms N] [--long-ttl-ms N] [--backend-id ID]
                       [--chunk-delay-ms N] [--reject-zero-max-tokens] [--require-key]
                       [--min-cacheable-tokens N]

  --listen ADDR              where to listen [default: 127.0.0.1:8518]
  --ttl-ms N                 how long a prefix stays cached after its last use [default: 2000]
  --long-ttl-ms N            the same for a request asking the longer retention (Anthropic
                             ttl 1h, OpenAI prompt_cache_retention 24h) [default: 60000]
  --backend-id ID            sent as x-backend-id on every answer
  --chunk-delay-ms N         delay between streamed chunks [default: 0]
  --reject-zero-max-tokens   refuse max_tokens: 0 as some models do
  --require-key              answer 401 to requests without a key, as the providers do
  --min-cacheable-tokens N   the shortest prefix cached [default: each model's own]

Try warming against it:
  warming-standin --ttl-ms 300000 &
  warming serve --upstream http://127.0.0.1:8518
";

fn main() -> std::process::ExitCode {
    let mut options = StandinOptions::default();
    let mut listen = "127.0.0.1:8518".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_default();
        match arg.as_str() {
            "--listen" => listen = value(),
            "--ttl-ms" => options.ttl = Duration::from_millis(value().parse().unwrap_or(2_000)),
            "--long-ttl-ms" => {
                options.long_ttl = Duration::from_millis(value().parse().unwrap_or(60_000));
            }
            "--backend-id" => options.backend_id = value(),
            "--chunk-delay-ms" => {
                options.chunk_delay = Duration::from_millis(value().parse().unwrap_or(0));
            }
            "--reject-zero-max-tokens" => options.reject_zero_max_tokens = true,
            "--require-key" => options.require_key = true,
            "--min-cacheable-tokens" => options.min_cacheable_tokens = value().parse().ok(),
            "--help" | "-h" => {
                print!("{USAGE}");
                return std::process::ExitCode::SUCCESS;
            }
            other => {
                eprintln!("warming-standin: unknown argument {other:?}");
                return std::process::ExitCode::from(2);
            }
        }
    }
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(&listen).await {
            Ok(listener) => listener,
            Err(e) => {
                eprintln!("warming-standin: cannot listen on {listen}: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        let standin = Standin::serve(listener, options).expect("serve");
        println!("listening on {}", standin.url());
        let _ = tokio::signal::ctrl_c().await;
        std::process::ExitCode::SUCCESS
    })
}
