//! Keep-alive plans through the real binary and the official SDKs: no
//! replay where the provider keeps the prefix itself (OpenAI's 24-hour
//! retention, Anthropic's 1-hour cache), and the longer retention asked for
//! by the proxy where it costs less than replays (`--upgrade-cache auto`).
//! The stand-in keeps a prefix 2 s, or 60 s when a request asks for the
//! longer retention: the gaps here outlive the first and not the second.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use warming_testkit::{Standin, StandinOptions};

use crate::support::Service;

const KEY: &str = "sk-keep-alive-test";

fn python() -> Option<PathBuf> {
    crate::support::python_with(
        "anthropic, openai",
        "WARMING_REQUIRE_PYTHON_SDKS",
        "see .ci/run",
    )
}

/// One turn of `conversation` through the proxy with the official SDK:
/// the usage it reported.
fn turn(
    python: &PathBuf,
    provider: &str,
    base: &str,
    conversation: &str,
    index: usize,
    retention: Option<&str>,
) -> Value {
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/e2e/retention_client.py");
    let headers = json!({"x-warming": "on", "x-warming-interval": "0.5"});
    let mut command = Command::new(python);
    command.env("SDK_EXTRA_HEADERS", headers.to_string());
    command
        .arg(script)
        .args([provider, base, KEY, conversation, &index.to_string()]);
    if let Some(retention) = retention {
        command.arg(retention);
    }
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{provider} turn {index}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice::<Value>(&output.stdout).unwrap()["usage"].clone()
}

async fn standin() -> Standin {
    Standin::start(StandinOptions {
        ttl: Duration::from_secs(2),
        long_ttl: Duration::from_secs(60),
        ..StandinOptions::default()
    })
    .await
    .unwrap()
}

/// Outlives the stand-in's 2-second cache, not its 60-second one.
async fn idle() {
    tokio::time::sleep(Duration::from_secs(4)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_openai_conversation_asking_for_24_hours_is_never_replayed_and_reads_the_cache_later() {
    let Some(python) = python() else { return };
    let standin = standin().await;
    let dir = tempfile::tempdir().unwrap();
    // The server's defaults: only where OpenAI is.
    let flags = ["--openai-upstream", &standin.url()];
    let service = Service::start(dir.path(), &standin.url(), &flags).await;
    let base = service.url("/proxy/openai/v1");

    turn(&python, "openai", &base, "kept", 0, Some("24h"));
    // Its settle follows the answer the SDK read.
    let state = service.settled_on_plan("kept", "none").await;
    let plan = &state["keepAlive"];
    assert!(plan["why"].as_str().unwrap().contains("24 h"), "{plan}");
    assert_eq!(state["nextWarmAt"], Value::Null, "{state}");
    // `warming status` says it as well.
    let status = Command::new(env!("CARGO_BIN_EXE_warming"))
        .args(["status", "kept"])
        .env("WARMING_SERVER", service.url(""))
        .env_remove("WARMING_TOKEN")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("keep-alive    none, $0.0000 an idle hour: its requests ask"),
        "{text}"
    );
    idle().await;
    assert!(standin.warms().is_empty(), "{:?}", standin.warms());
    let usage = turn(&python, "openai", &base, "kept", 1, Some("24h"));
    let cached = usage["prompt_tokens_details"]["cached_tokens"].as_u64();
    assert!(
        cached > Some(1_000),
        "the next turn read the prefix: {usage}"
    );
    let state = service.state("kept").await;
    assert!(
        state["ledger"]["replaysAvoided"].as_u64() >= Some(6),
        "{state}"
    );

    // The same conversation without it: replayed, and the plan says the
    // retention would do it for less if the operator allowed asking.
    turn(&python, "openai", &base, "replayed", 0, None);
    let state = service.settled_on_plan("replayed", "replay").await;
    let why = state["keepAlive"]["why"].as_str().unwrap();
    assert!(why.contains("--upgrade-cache auto"), "{why}");
    crate::support::eventually(5, "a replay", || async {
        (!standin.warms().is_empty()).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_upgrade_auto_an_openai_conversation_is_asked_24_hours_and_replays_stop() {
    let Some(python) = python() else { return };
    let standin = standin().await;
    let dir = tempfile::tempdir().unwrap();
    let flags = [
        "--openai-upstream",
        &standin.url(),
        "--upgrade-cache",
        "auto",
    ];
    let service = Service::start(dir.path(), &standin.url(), &flags).await;
    let base = service.url("/proxy/openai/v1");

    // The first request was sent before anything was known of it; the
    // plan then says to ask (the retention costs OpenAI users nothing more).
    turn(&python, "openai", &base, "up", 0, None);
    service.settled_on_plan("up", "upgrade").await;
    // Its next request asks for 24 hours: replays stop.
    turn(&python, "openai", &base, "up", 1, None);
    let state = service.settled_on_plan("up", "none").await;
    assert!(state["keepAlive"]["upgradedAt"].is_u64(), "{state}");
    let upgraded: Vec<Value> = service
        .history("up")
        .await
        .into_iter()
        .filter(|e| e["outcome"] == "upgraded")
        .collect();
    assert_eq!(upgraded.len(), 1, "history says when: {upgraded:?}");
    assert!(upgraded[0]["error"]
        .as_str()
        .unwrap()
        .contains("longer retention"));
    let before = standin.warms().len();
    idle().await;
    assert_eq!(standin.warms().len(), before, "no replay after the upgrade");
    let usage = turn(&python, "openai", &base, "up", 2, None);
    let cached = usage["prompt_tokens_details"]["cached_tokens"].as_u64();
    assert!(cached > Some(1_000), "the prefix outlived the gap: {usage}");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_upgrade_auto_a_claude_conversation_with_long_gaps_moves_to_the_one_hour_cache() {
    let Some(python) = python() else { return };
    let standin = standin().await;
    let dir = tempfile::tempdir().unwrap();
    // The server told the 5-minute cache lasts what the stand-in's does.
    let flags = [
        "--anthropic-upstream",
        &standin.url(),
        "--cache-ttl-ms",
        "2000",
        "--upgrade-cache",
        "auto",
    ];
    let service = Service::start(dir.path(), &standin.url(), &flags).await;
    let base = service.url("/proxy/anthropic");

    // Turns 4 s apart, replayed every 0.5 s meanwhile: each gap costs the
    // replays of the prefix; once its own gaps say the 1-hour cache costs
    // less, the next request asks for it.
    let mut moved_at = None;
    for index in 0..10 {
        if index > 0 {
            idle().await;
        }
        turn(&python, "anthropic", &base, "claude", index, None);
        let state = service.state("claude").await;
        if state["keepAlive"]["upgradedAt"].is_u64() {
            moved_at = Some(index);
            break;
        }
        let plan = &state["keepAlive"];
        if index < 2 {
            assert_eq!(plan["reason"]["code"], "tooFewGaps", "{plan}");
        }
    }
    let moved_at = moved_at.expect("the conversation moved to the 1-hour cache");
    assert!(moved_at >= 2, "judged on two gaps at least: {moved_at}");
    // Then the provider keeps it.
    let state = service.settled_on_plan("claude", "none").await;
    assert_eq!(state["nextWarmAt"], Value::Null, "{state}");
    let before = standin.warms().len();
    idle().await;
    assert_eq!(
        standin.warms().len(),
        before,
        "no replay on the 1-hour cache"
    );
    let usage = turn(&python, "anthropic", &base, "claude", moved_at + 1, None);
    assert!(
        usage["cache_read_input_tokens"].as_u64() > Some(1_000),
        "the next turn read the 1-hour cache: {usage}"
    );
    // The move's premium on its writes is in what warming spent.
    let state = service.state("claude").await;
    let premium = state["ledger"]["retentionPremiumDollars"].as_f64().unwrap();
    assert!(premium > 0.0, "{state}");

    // The same trace through `warming simulate` (adaptive+1h) moves it at
    // the same turn: one rule, the core's plan, in both.
    let simulated = simulate_live_trace(&service, dir.path()).await;
    assert!(
        simulated.is_some_and(|turn| turn.abs_diff(moved_at) <= 1),
        "live moved at turn {moved_at}, the simulator at {simulated:?}"
    );
}

/// Writes the conversation's turns as the service recorded them as a
/// plain trace (each gap as the service measured it, from a turn's answer
/// to the next request) and runs `warming simulate` on it with the live
/// settings: the turn `adaptive+1h` moved it at.
async fn simulate_live_trace(service: &Service, dir: &std::path::Path) -> Option<usize> {
    let mut turns: Vec<Value> = service
        .history("claude")
        .await
        .into_iter()
        // The turns' own records (an `upgraded` one says when, not what).
        .filter(|e| e["trigger"] == "turn" && e["usage"].is_object())
        .collect();
    turns.sort_by_key(|e| e["startedAt"].as_u64());
    let mut lines = String::new();
    let mut at = 0;
    for (k, entry) in turns.iter().enumerate() {
        if k > 0 {
            let previous = &turns[k - 1];
            at += entry["startedAt"].as_u64().unwrap() - previous["finishedAt"].as_u64().unwrap();
        }
        let usage = &entry["usage"];
        let prompt: u64 = ["inputTokens", "cacheReadTokens", "cacheWriteTokens"]
            .iter()
            .map(|k| usage[k].as_u64().unwrap_or(0))
            .sum();
        lines.push_str(
            &json!({"conversation": "claude", "at_ms": at, "prompt_tokens": prompt}).to_string(),
        );
        lines.push('\n');
    }
    let trace = dir.join("live.jsonl");
    std::fs::write(&trace, lines).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_warming"))
        .arg("simulate")
        .arg(&trace)
        .args([
            "--interval",
            "500ms",
            "--cache-ttl",
            "2s",
            "--lambda",
            "0.01",
        ])
        .args(["--warm-up", "0", "--json", "--out"])
        .arg(dir.join("report"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let reports: Value = serde_json::from_slice(&output.stdout).unwrap();
    let outcome = reports[0]["rows"][0]["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["scenario"] == "adaptive+1h")
        .cloned()
        .unwrap();
    outcome["movedAtTurns"][0].as_u64().map(|t| t as usize)
}
