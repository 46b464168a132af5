//! The coding agents people run, unmodified, through `warming serve`'s
//! proxy: Claude Code (`claude -p`) and Codex CLI (`codex exec`), installed
//! from npm by `scripts/agents.sh`, pointed at the proxy by their own
//! configuration only (a base URL and extra headers, as the README says).
//!
//! Each test drives two turns of one session with an idle gap longer than
//! the stand-in's TTL between them, at the server's defaults (the support's
//! short minimum interval aside; the interval comes from the agent's
//! `x-warming-interval` header). The stand-in keys Anthropic's message
//! entries by the thinking parameters, as Anthropic does, so a warm that
//! drops them keeps only system and tools and the turn after the gap reads
//! about a third of its prefix: these tests fail then. With warming off the
//! same turn misses.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use warming_testkit::{Standin, StandinOptions};

use crate::support::Service;

/// The stand-in's cache TTL: the idle gap between the turns outlives it.
const TTL: Duration = Duration::from_secs(3);

/// A document the user pastes: the session's messages outweigh Claude
/// Code's and Codex's system prompts and tools (~40 KB each).
fn document() -> String {
    "The quarterly report covers revenue, costs and the plan for next year. ".repeat(1_600)
}

/// The agents' bin directory (`WARMING_AGENTS_BIN`, else the workspace's
/// `tests/agents/node_modules/.bin`, which `scripts/agents.sh` fills); a
/// skip, or a failure when `WARMING_REQUIRE_AGENTS` is set.
fn agents_bin() -> Option<PathBuf> {
    let bin = std::env::var_os("WARMING_AGENTS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/agents/node_modules/.bin")
        });
    let ok = ["claude", "codex"].iter().all(|b| bin.join(b).exists());
    if !ok {
        assert!(
            std::env::var_os("WARMING_REQUIRE_AGENTS").is_none(),
            "WARMING_REQUIRE_AGENTS is set but {} lacks claude and codex (scripts/agents.sh)",
            bin.display()
        );
        eprintln!("skipped: no coding agents (run scripts/agents.sh)");
        return None;
    }
    Some(bin)
}

/// Runs an agent to completion with `stdin` piped in; panics with its output
/// if it fails.
async fn run(mut command: Command, stdin: String) -> String {
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the agent starts");
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.as_bytes()).unwrap();
        drop(input);
        let output = child.wait_with_output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        // The tail says why; the head is the pasted document.
        let from = (text.len().saturating_sub(4_000)..text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(0);
        let tail = &text[from..];
        assert!(output.status.success(), "the agent failed: ...{tail}");
        text
    })
    .await
    .unwrap()
}

/// What the turn after the gap found, and what warming did meanwhile.
struct Session {
    /// The returning turn's cache-read share of its prompt, percent.
    returning_pct: f64,
    /// Every conversation the service knows.
    conversations: Vec<String>,
    /// The conversation's timed warms, from its history.
    warms: Vec<Value>,
    /// The conversation's state after the second turn.
    state: Value,
}

/// Waits out an idle gap longer than the TTL after the first turn, the way
/// a person reading a diff does.
async fn idle_past_the_ttl(turn_ended: Instant) {
    let gap = TTL + Duration::from_millis(1_500);
    tokio::time::sleep(gap.saturating_sub(turn_ended.elapsed())).await;
}

async fn session_summary(service: &Service, standin: &Standin, id: &str) -> Session {
    let entries = service.history(id).await;
    let returning_pct = entries
        .iter()
        .find(|e| e["trigger"] == "turn")
        .and_then(|e| e["pct"].as_f64())
        .unwrap_or_else(|| panic!("no turn in the history: {entries:?}"));
    let warms = entries
        .into_iter()
        .filter(|e| e["trigger"] == "scheduled")
        .collect();
    let (_, list) = service.call("GET", "/v1/conversations", None).await;
    let conversations = list["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["conversationId"].as_str().unwrap().to_owned())
        .collect();
    // Every warm the stand-in saw was served, none refused.
    for warm in standin.warms() {
        assert!(warm.cache_read.is_some(), "a warm was refused: {warm:?}");
    }
    Session {
        returning_pct,
        conversations,
        warms,
        state: service.state(id).await,
    }
}

/// Claude Code's session id, fixed so the test names it.
const CLAUDE_SESSION: &str = "5f0c2a1e-7d43-4b8e-9a61-2c3d4e5f6a7b";

fn claude(bin: &Path, home: &Path, service: &Service, headers: &str, args: &[&str]) -> Command {
    let mut command = Command::new(bin.join("claude"));
    command
        .args(["-p", "--model", "claude-sonnet-4-6"])
        .args(args)
        .current_dir(home)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("ANTHROPIC_BASE_URL", service.url("/proxy/anthropic"))
        .env("ANTHROPIC_API_KEY", "sk-ant-agent-test-key")
        .env("ANTHROPIC_CUSTOM_HEADERS", headers)
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_AUTOUPDATER", "1");
    command
}

/// Two Claude Code turns of one session with an idle gap between them.
async fn claude_code_session(warming: &str) -> Option<Session> {
    let bin = agents_bin()?;
    let standin = Standin::start(StandinOptions {
        ttl: TTL,
        ..StandinOptions::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), &standin.url(), &[]).await;
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    // The README's block: warming on (or off), a 1 s interval.
    let headers = format!("x-warming: {warming}\nx-warming-interval: 1");
    let first = claude(
        &bin,
        &home,
        &service,
        &headers,
        &[
            "--session-id",
            CLAUDE_SESSION,
            "Summarise the document above.",
        ],
    );
    run(first, document()).await;
    let ended = Instant::now();
    idle_past_the_ttl(ended).await;
    let second = claude(
        &bin,
        &home,
        &service,
        &headers,
        &[
            "--resume",
            CLAUDE_SESSION,
            "And what is the plan for next year?",
        ],
    );
    run(second, String::new()).await;
    Some(session_summary(&service, &standin, CLAUDE_SESSION).await)
}

#[tokio::test]
async fn claude_code_with_warming_on_reads_its_whole_prefix_after_an_idle_gap() {
    let Some(session) = claude_code_session("on").await else {
        return;
    };
    assert_eq!(
        session.conversations,
        [CLAUDE_SESSION],
        "one session, one conversation"
    );
    assert!(
        session.returning_pct >= 90.0,
        "the turn after the gap read {}% of its prefix; warms: {:?}",
        session.returning_pct,
        session.warms
    );
    assert!(session.warms.len() >= 2, "{:?}", session.warms);
    for warm in &session.warms {
        // Adaptive thinking kept, the output bounded: the entries the
        // next turn reads.
        assert_eq!(warm["kind"], "thinking-kept", "{warm}");
        assert_eq!(warm["refreshes"], "whole-prefix", "{warm}");
        assert_eq!(warm["outcome"], "hit", "{warm}");
    }
    assert_eq!(session.state["turns"]["returning"], 1, "{}", session.state);
    assert_eq!(session.state["turns"]["hits"], 1, "{}", session.state);
}

#[tokio::test]
async fn claude_code_with_warming_off_misses_after_the_same_gap() {
    let Some(session) = claude_code_session("off").await else {
        return;
    };
    assert_eq!(session.conversations, [CLAUDE_SESSION]);
    // Four intervals went by: a warm would have been sent by now.
    assert!(session.warms.is_empty(), "{:?}", session.warms);
    assert!(
        session.returning_pct < 10.0,
        "read {}% with no warming",
        session.returning_pct
    );
}

/// Two Codex CLI turns of one session with an idle gap between them.
async fn codex_session(warming: &str) -> Option<(Session, String)> {
    let bin = agents_bin()?;
    let standin = Standin::start(StandinOptions {
        ttl: TTL,
        ..StandinOptions::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let upstream = standin.url();
    let service = Service::start(dir.path(), &upstream, &["--openai-upstream", &upstream]).await;
    let home = dir.path().join("codex");
    let work = dir.path().join("work");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    // The README's block: a provider entry whose base URL is the proxy.
    let config = format!(
        r#"model = "gpt-5.1-codex"
model_provider = "warming"

[model_providers.warming]
name = "warming"
base_url = "{}"
wire_api = "responses"
env_key = "OPENAI_API_KEY"
http_headers = {{ "x-warming" = "{warming}", "x-warming-interval" = "1" }}
"#,
        service.url("/proxy/openai/v1")
    );
    std::fs::write(home.join("config.toml"), config).unwrap();
    let codex = |args: &[&str]| {
        let mut command = Command::new(bin.join("codex"));
        command
            .args(["exec", "--skip-git-repo-check"])
            .args(args)
            .current_dir(&work)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", dir.path())
            .env("CODEX_HOME", &home)
            .env("OPENAI_API_KEY", "sk-openai-agent-test-key");
        command
    };
    let out = run(codex(&["-"]), document()).await;
    let ended = Instant::now();
    let session_id = out
        .lines()
        .find_map(|l| l.strip_prefix("session id: "))
        .unwrap_or_else(|| panic!("no session id in: {out}"))
        .trim()
        .to_owned();
    idle_past_the_ttl(ended).await;
    run(
        codex(&["resume", "--last", "And what is the plan for next year?"]),
        String::new(),
    )
    .await;
    Some((
        session_summary(&service, &standin, &session_id).await,
        session_id,
    ))
}

#[tokio::test]
async fn codex_with_warming_on_reads_its_whole_prefix_after_an_idle_gap() {
    let Some((session, id)) = codex_session("on").await else {
        return;
    };
    assert_eq!(session.conversations, [id], "one session, one conversation");
    assert!(
        session.returning_pct >= 90.0,
        "the turn after the gap read {}% of its prefix; warms: {:?}",
        session.returning_pct,
        session.warms
    );
    assert!(session.warms.len() >= 2, "{:?}", session.warms);
    for warm in &session.warms {
        assert_eq!(warm["kind"], "minimum-output", "{warm}");
        assert_eq!(warm["outcome"], "hit", "{warm}");
    }
}

#[tokio::test]
async fn codex_with_warming_off_misses_after_the_same_gap() {
    let Some((session, id)) = codex_session("off").await else {
        return;
    };
    assert_eq!(session.conversations, [id]);
    assert!(session.warms.is_empty(), "{:?}", session.warms);
    assert!(
        session.returning_pct < 10.0,
        "read {}% with no warming",
        session.returning_pct
    );
}
