//! The `warming` binary: parses arguments and wires the crates together.

mod client;
mod commands;
mod config;
mod log;
mod serve;
mod simulate;
mod wire;

use std::process::ExitCode;

use crate::client::Client;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// The service allocates and frees a request's buffers on one worker thread
/// and its template on another; mimalloc's per-thread free lists do that at
/// a fraction of glibc's cost (bench/README.md, "turn-settled").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Keeps LLM prompt caches warm while users think.
#[derive(Debug, Parser)]
#[command(
    name = "warming",
    version,
    about = "Keeps LLM prompt caches warm while users think."
)]
struct Cli {
    /// Base URL of the server, for the commands that talk to one.
    #[arg(
        long,
        env = "WARMING_SERVER",
        default_value = "http://127.0.0.1:8517",
        global = true
    )]
    server: String,
    /// Print JSON instead of text: the server's answer (simulate: the
    /// report).
    #[arg(long, global = true)]
    json: bool,
    /// The server's token (its --token), for the commands that talk to one.
    #[arg(
        id = "client_token",
        long = "token",
        value_name = "TOKEN",
        env = "WARMING_TOKEN",
        hide_env_values = true,
        global = true
    )]
    token: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the service.
    ///
    /// Example: ANTHROPIC_API_KEY=sk-... warming serve --listen 127.0.0.1:8517
    Serve(Box<serve::ServeArgs>),
    #[command(flatten)]
    Remote(commands::RemoteCommand),
    /// Compare warming policies on conversation traces (cost, latency, hit rate).
    ///
    /// Example: warming simulate traces/mooncake.jsonl --lambda 0,0.01 --out report
    Simulate(simulate::SimulateArgs),
    /// Print a shell completion script.
    ///
    /// Example: warming completions bash > /etc/bash_completion.d/warming
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

/// The command line, with the client's options (`--server`, `--token`,
/// `--json`) hidden from the help of the commands they mean nothing to:
/// `serve`, `simulate` (which talks to no server, but prints JSON) and
/// `completions`.
fn command() -> clap::Command {
    const SERVER: (&str, &str) = ("server", "server");
    const JSON: (&str, &str) = ("json", "json");
    // `serve --token` is the server's own token, so the client's is
    // `client_token` inside and blocked under a name nobody types.
    const TOKEN: (&str, &str) = ("client_token", "client-token");
    [
        ("serve", &[SERVER, JSON, TOKEN][..]),
        ("simulate", &[SERVER, TOKEN][..]),
        ("completions", &[SERVER, JSON, TOKEN][..]),
    ]
    .into_iter()
    .fold(Cli::command(), |cli, (name, blocked)| {
        cli.mut_subcommand(name, |sub| block_globals(sub, blocked))
    })
}

/// `sub` with the globals `blocked` (id, a long name nobody types) kept
/// from it: a subcommand's own argument with a global's id stops that
/// global from being propagated to it; hidden, it does not show in its
/// help.
fn block_globals(sub: clap::Command, blocked: &[(&'static str, &'static str)]) -> clap::Command {
    blocked.iter().fold(sub, |sub, &(id, long)| {
        sub.arg(clap::Arg::new(id).long(long).hide(true).num_args(0..=1))
    })
}

fn main() -> ExitCode {
    let cli = match Cli::from_arg_matches(&command().get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match cli.command {
        Command::Serve(args) => run_serve(*args),
        Command::Simulate(args) => match simulate::run(args, cli.json) {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => fail(&message),
        },
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command(), "warming", &mut script);
            // A closed pipe (`| head`) is the reader's choice, not a failure.
            let _ = std::io::Write::write_all(&mut std::io::stdout(), &script);
            ExitCode::SUCCESS
        }
        Command::Remote(command) => {
            let token = cli.token.filter(|t| !t.is_empty());
            let client = Client::new(&cli.server, token);
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return fail(&format!("cannot start the runtime: {e}")),
            };
            match runtime.block_on(commands::run(&client, cli.json, command)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(message) => fail(&message),
            }
        }
    }
}

fn fail(message: &str) -> ExitCode {
    say(message);
    ExitCode::FAILURE
}

/// Prints `warming: message` to stderr; a closed or full stderr loses the
/// line instead of panicking (`eprintln!` would).
fn say(message: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "warming: {message}");
}

fn run_serve(args: serve::ServeArgs) -> ExitCode {
    // Logging never stops the service: lines go through a bounded queue to
    // a writer thread, and are dropped (and counted in /metrics) when
    // stderr is slow, full or closed; a failed write is not reported on
    // stderr again (which would panic on a closed one).
    let (writer, _flush_on_exit) = log::writer();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(writer)
        .log_internal_errors(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = match serve::resolve(args) {
        Ok(config) => config,
        Err(message) => {
            say(&message);
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    let result = runtime.block_on(async move {
        let listener = warming_transport::bind(config.listen)
            .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
        wire::serve(listener, config, shutdown_signal()).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => fail(&message),
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutting down");
}
