//! Proxy mode: real SDKs point their base URL at the daemon.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};
use warming_testkit::{Standin, StandinOptions};

use crate::support::{eventually, post_sized, Service, TEST_KEY};

/// The key the SDK clients send; the daemon must keep it in memory only.
const PROXY_KEY: &str = "sk-proxy-client-KEY-must-stay-in-memory";

/// The Python with the `anthropic` and `openai` SDKs.
fn python() -> Option<PathBuf> {
    crate::support::python_with(
        "anthropic, openai",
        "WARMING_REQUIRE_PYTHON_SDKS",
        "see .ci/run",
    )
}

fn sdk(
    python: &PathBuf,
    provider: &str,
    mode: &str,
    base: &str,
    conversation: Option<&str>,
) -> Value {
    sdk_with_headers(python, provider, mode, base, conversation, &json!({}))
}

/// One SDK call with extra request headers (`default_headers`).
fn sdk_with_headers(
    python: &PathBuf,
    provider: &str,
    mode: &str,
    base: &str,
    conversation: Option<&str>,
    headers: &Value,
) -> Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/e2e/sdk_client.py");
    let mut command = Command::new(python);
    command.env("SDK_EXTRA_HEADERS", headers.to_string());
    command.arg(script).args([provider, mode, base, PROXY_KEY]);
    if let Some(id) = conversation {
        command.arg(id);
    }
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{provider} {mode} via {base}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

async fn two_standins() -> (Standin, Standin) {
    // A TTL the SDK round trips, the settle and the manual warm fit in
    // even on a busy machine: the warm must find the turn's prefix.
    let options = StandinOptions {
        backend_id: "replica-3".into(),
        ttl: Duration::from_secs(30),
        ..StandinOptions::default()
    };
    (
        Standin::start(options.clone()).await.unwrap(),
        Standin::start(options).await.unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_results_through_the_proxy_equal_direct_ones() {
    let Some(python) = python() else { return };
    for (provider, base_suffix) in [
        ("anthropic", "/proxy/anthropic"),
        ("openai", "/proxy/openai/v1"),
    ] {
        for mode in ["plain", "stream"] {
            // Two stand-ins in the same fresh state: one called directly,
            // one behind the proxy.
            let (direct, behind) = two_standins().await;
            let dir = tempfile::tempdir().unwrap();
            let upstream_flags = [
                "--anthropic-upstream",
                &behind.url(),
                "--openai-upstream",
                &behind.url(),
            ];
            let service = Service::start(dir.path(), &behind.url(), &upstream_flags).await;
            let direct_base = if provider == "openai" {
                format!("{}/v1", direct.url())
            } else {
                direct.url()
            };
            let conversation = format!("sdk-{provider}-{mode}");

            let want = tokio::task::spawn_blocking({
                let python = python.clone();
                move || sdk(&python, provider, mode, &direct_base, None)
            });
            let got = tokio::task::spawn_blocking({
                let (python, base, id) = (
                    python.clone(),
                    service.url(base_suffix),
                    conversation.clone(),
                );
                move || sdk(&python, provider, mode, &base, Some(&id))
            });
            let (want, got) = (want.await.unwrap(), got.await.unwrap());
            assert_eq!(got, want, "{provider} {mode}");
            assert!(!got["text"].as_str().unwrap().is_empty());

            // The conversation now has a template, the turn's usage, the
            // backend, and a warm scheduled once enabled.
            let state = eventually(5, "the proxied turn to settle", || async {
                let s = service.state(&conversation).await;
                (s["active"] == false && s["backend"] == "replica-3").then_some(s)
            })
            .await;
            assert_eq!(state["enabled"], false);
            let (_, history) = service
                .call(
                    "GET",
                    &format!("/v1/conversations/{conversation}/history"),
                    None,
                )
                .await;
            let turn = &history["history"][0];
            assert_eq!(turn["trigger"], "turn", "{history}");
            assert!(
                turn["usage"]["cacheWriteTokens"].as_u64().unwrap() > 0,
                "{turn}"
            );
            let enabled = service.enable(&conversation, 60_000).await;
            assert!(enabled["nextWarmAt"].is_number());
            let (status, warm) = service
                .call(
                    "POST",
                    &format!("/v1/conversations/{conversation}/warm"),
                    None,
                )
                .await;
            assert_eq!(status, 200, "{warm}");
            assert_eq!(warm["outcome"], "hit", "{provider} {mode}: {warm}");
            // The warm used the client's own key and API, not the daemon's.
            let last = behind.warms().pop().unwrap();
            assert_eq!(
                last.path,
                if provider == "openai" {
                    "/v1/chat/completions"
                } else {
                    "/v1/messages"
                }
            );
            let credential = last.credential.unwrap();
            assert!(credential.contains(PROXY_KEY), "{credential}");
            assert!(!credential.contains(TEST_KEY));
        }
    }
}

#[tokio::test]
async fn the_derived_conversation_id_is_stable_across_turns() {
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), &standin.url(), &[]).await;
    let client = reqwest::Client::new();
    let turn = |messages: Value| json!({"model": "claude-test", "max_tokens": 5, "system": "Be brief.", "messages": messages});
    for messages in [
        json!([{"role": "user", "content": "first"}]),
        json!([{"role": "user", "content": "first"}, {"role": "assistant", "content": "ok"}, {"role": "user", "content": "second"}]),
    ] {
        let response = client
            .post(service.url("/proxy/anthropic/v1/messages"))
            .json(&turn(messages))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        let _ = response.bytes().await.unwrap();
    }
    let ids = conversation_ids(&service).await;
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert!(ids[0].starts_with("px-"));
}

/// The ids of the conversations the service knows.
async fn conversation_ids(service: &Service) -> Vec<String> {
    let (_, list) = service.call("GET", "/v1/conversations", None).await;
    let mut ids: Vec<String> = list["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["conversationId"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn gateway_session_headers_name_the_conversation() {
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let client = reqwest::Client::new();
    let body = json!({"model": "claude-test", "max_tokens": 5, "system": "Be brief.",
                      "messages": [{"role": "user", "content": "hi"}]});
    let turn = |service: &Service, headers: &[(&str, &str)]| {
        let mut request = client
            .post(service.url("/proxy/anthropic/v1/messages"))
            .json(&body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };

    // At the defaults, `x-session-id` names it; `x-conversation-id` wins
    // over it.
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), &standin.url(), &[]).await;
    assert_eq!(turn(&service, &[("x-session-id", "sess-1")]).await.0, 200);
    let both = [("x-session-id", "sess-2"), ("x-conversation-id", "conv-2")];
    assert_eq!(turn(&service, &both).await.0, 200);
    assert_eq!(conversation_ids(&service).await, ["conv-2", "sess-1"]);
    // A bad id is refused, naming the header it came from.
    let (status, answer) = turn(&service, &[("x-session-id", "has spaces")]).await;
    assert_eq!(status, 400);
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("x-session-id"), "{message}");
    drop(service);

    // A gateway's own header, configured: the default one no longer counts.
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(
        dir.path(),
        &standin.url(),
        &["--session-headers", "helicone-session-id"],
    )
    .await;
    assert_eq!(
        turn(&service, &[("Helicone-Session-Id", "h-1")]).await.0,
        200
    );
    assert_eq!(turn(&service, &[("x-session-id", "ignored")]).await.0, 200);
    let ids = conversation_ids(&service).await;
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert_eq!(ids[0], "h-1");
    assert!(ids[1].starts_with("px-"), "{ids:?}");
}

#[tokio::test]
async fn close_aborts_a_long_stream_mid_way() {
    let standin = Standin::start(StandinOptions {
        chunk_delay: Duration::from_millis(50),
        // A long answer: 300 words.
        reply_words: 300,
        ..StandinOptions::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), &standin.url(), &[]).await;
    // 300 chunks 50 ms apart: 15 s if nobody stops it.
    let response = reqwest::Client::new()
        .post(service.url("/proxy/anthropic/v1/messages"))
        .header("x-conversation-id", "long")
        .json(
            &json!({"model": "claude-test", "max_tokens": 300, "stream": true,
                      "messages": [{"role": "user", "content": "talk"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let mut body = response.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(
        String::from_utf8_lossy(&first).contains("message_start"),
        "first byte not held back"
    );
    assert_eq!(service.state("long").await["active"], true);

    let (status, closed) = service
        .call("POST", "/v1/conversations/long/close", None)
        .await;
    assert_eq!(status, 200, "{closed}");
    let mut received = String::new();
    let mut cut = false;
    let ended = tokio::time::timeout(Duration::from_secs(3), async {
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(bytes) => received.push_str(&String::from_utf8_lossy(&bytes)),
                Err(_) => {
                    cut = true;
                    break;
                }
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the stream went on after close");
    // Ended as an error, as a dropped provider stream: the client cannot
    // take the cut answer for a whole one.
    assert!(cut, "the cut stream ended cleanly");
    assert!(
        !received.contains("message_stop"),
        "the whole answer was sent"
    );
    let state = service.state("long").await;
    assert_eq!(
        (state["enabled"].as_bool(), state["active"].as_bool()),
        (Some(false), Some(false))
    );
}

#[tokio::test]
async fn proxy_errors_are_clear_and_provider_errors_pass_through_unchanged() {
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let service = Service::start(dir.path(), &standin.url(), &["--openai-upstream", &down]).await;
    let client = reqwest::Client::new();
    let body =
        json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]});

    let unknown = client
        .post(service.url("/proxy/bedrock/v1/messages"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status().as_u16(), 404);
    assert_eq!(
        unknown.json::<Value>().await.unwrap()["error"]["code"],
        "not_found"
    );

    // Over Anthropic's documented 32 MB.
    assert_eq!(
        post_sized(
            service.addr,
            "/proxy/anthropic/v1/messages",
            33 * 1024 * 1024
        )
        .await,
        413
    );

    let bad_id = client
        .post(service.url("/proxy/anthropic/v1/messages"))
        .header("x-conversation-id", "no spaces please")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(bad_id.status().as_u16(), 400);

    let unreachable = client
        .post(service.url("/proxy/openai/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(unreachable.status().as_u16(), 502);
    let answer = unreachable.json::<Value>().await.unwrap();
    assert_eq!(answer["error"]["code"], "upstream");
    // It names the upstream and the flag that sets it.
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("(set by --openai-upstream)") && message.contains("http"),
        "{message}"
    );

    // The same overload, once straight from the provider, once proxied.
    standin.fail_next(2, 529, Some(3));
    let direct_body = {
        let r = client
            .post(format!("{}/v1/messages", standin.url()))
            .json(&body)
            .send()
            .await
            .unwrap();
        (
            r.status().as_u16(),
            r.headers().get("retry-after").cloned(),
            r.text().await.unwrap(),
        )
    };
    let proxied = client
        .post(service.url("/proxy/anthropic/v1/messages"))
        .header("x-conversation-id", "overloaded")
        .json(&body)
        .send()
        .await
        .unwrap();
    let proxied_body = (
        proxied.status().as_u16(),
        proxied.headers().get("retry-after").cloned(),
        proxied.text().await.unwrap(),
    );
    assert_eq!(proxied_body, direct_body);
    // A failed turn leaves no template behind: nothing to warm.
    let (status, _) = service
        .call("POST", "/v1/conversations/overloaded/warm", None)
        .await;
    assert_eq!(status, 409);
    let (status, _) = service.call("GET", "/healthz", None).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn proxied_credentials_stay_in_memory() {
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), &standin.url(), &[]).await;
    let response = reqwest::Client::new()
        .post(service.url("/proxy/anthropic/v1/messages"))
        .header("x-api-key", PROXY_KEY)
        .header("x-conversation-id", "creds")
        .json(&json!({"model": "claude-test", "max_tokens": 5, "system": [{"type": "text", "text": "s", "cache_control": {"type": "ephemeral"}}],
                      "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let _ = response.bytes().await;
    eventually(5, "the turn to settle", || async {
        (service.state("creds").await["active"] == false).then_some(())
    })
    .await;
    let (status, _) = service
        .call("POST", "/v1/conversations/creds/warm", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        standin.warms().pop().unwrap().credential.as_deref(),
        Some(PROXY_KEY)
    );
    // After close, the client's key is forgotten: warms fall back to the
    // daemon's own key.
    service
        .call("POST", "/v1/conversations/creds/close", None)
        .await;
    let (status, _) = service
        .call("POST", "/v1/conversations/creds/warm", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        standin.warms().pop().unwrap().credential.as_deref(),
        Some(TEST_KEY)
    );
    assert!(service.terminate().success());
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            !bytes
                .windows(PROXY_KEY.len())
                .any(|w| w == PROXY_KEY.as_bytes()),
            "the client's key leaked into {}",
            path.display()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxied_conversation_opted_in_is_warmed_with_the_key_it_was_proxied_with() {
    let Some(python) = python() else { return };
    let standin = Standin::start(StandinOptions {
        ttl: Duration::from_secs(1),
        require_key: true,
        ..StandinOptions::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The daemon has no key of its own: every warm must use the client's.
    let db = dir.path().join("warming.db");
    let openai_flags = ["--openai-upstream", &standin.url()];
    let service = Service::start_with(dir.path(), &db, &standin.url(), &openai_flags, None).await;
    let anthropic = service.url("/proxy/anthropic");

    // Opted in by the app with a header, at the defaults.
    let headers = json!({"x-warming": "on", "x-warming-interval": "0.3"});
    sdk_with_headers(
        &python,
        "anthropic",
        "plain",
        &anthropic,
        Some("hdr"),
        &headers,
    );
    let state = service.state("hdr").await;
    assert_eq!(state["enabled"], true, "{state}");
    assert_eq!(state["intervalMs"], 300);
    assert_eq!(state["policy"], "fixed");
    eventually(5, "two warms", || async {
        (service.state("hdr").await["warmCount"].as_u64() >= Some(2)).then_some(())
    })
    .await;
    let warms = standin.warms();
    assert!(
        warms
            .iter()
            // (`x-api-key: KEY` or `authorization: Bearer KEY`, as the SDK sent it)
            .all(|w| w
                .credential
                .as_deref()
                .is_some_and(|c| c.ends_with(PROXY_KEY))),
        "{warms:?}"
    );
    // Warming's own headers never reach the provider.
    for request in standin.requests() {
        for ours in ["x-warming", "x-warming-interval"] {
            assert!(
                !request.header_names.iter().any(|h| h == ours),
                "{ours} was forwarded"
            );
        }
    }
    // `x-warming: off` turns it off.
    let off = json!({"x-warming": "off"});
    sdk_with_headers(&python, "anthropic", "plain", &anthropic, Some("hdr"), &off);
    assert_eq!(service.state("hdr").await["enabled"], false);

    // Proxied without a header: off (opt-in) until someone enables it in
    // the settings; then warmed with the client's key.
    sdk(
        &python,
        "openai",
        "plain",
        &service.url("/proxy/openai/v1"),
        Some("later"),
    );
    assert_eq!(service.state("later").await["enabled"], false);
    let before = standin.warms().len();
    service.enable("later", 300).await;
    eventually(5, "a warm of the conversation enabled later", || async {
        (standin.warms().len() > before).then_some(())
    })
    .await;
    let warm = standin.warms().pop().unwrap();
    assert_eq!(warm.path, "/v1/chat/completions");
    assert_eq!(
        warm.credential.as_deref(),
        Some(format!("Bearer {PROXY_KEY}").as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_warming_on_enrols_proxied_conversations_under_adaptive_and_a_person_decides() {
    let Some(python) = python() else { return };
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--proxy-warming", "on", "--openai-upstream", &standin.url()];
    let service = Service::start(dir.path(), &standin.url(), &flags).await;
    let openai = service.url("/proxy/openai/v1");
    sdk(&python, "openai", "plain", &openai, Some("auto"));
    let state = service.state("auto").await;
    assert_eq!(state["enabled"], true, "{state}");
    assert_eq!(state["policy"], "adaptive");

    // A person turns it off: later traffic does not turn it back on.
    let (status, _) = service
        .call(
            "PUT",
            "/v1/conversations/auto/settings",
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(status, 200);
    sdk(&python, "openai", "plain", &openai, Some("auto"));
    assert_eq!(service.state("auto").await["enabled"], false);

    // A person who turns an enrolled conversation on owns it: fixed.
    sdk(&python, "openai", "plain", &openai, Some("mine"));
    assert_eq!(service.state("mine").await["policy"], "adaptive");
    let (_, state) = service
        .call(
            "PUT",
            "/v1/conversations/mine/settings",
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(state["policy"], "fixed");

    // A bad header is refused before anything is forwarded.
    let response = reqwest::Client::new()
        .post(service.url("/proxy/openai/v1/chat/completions"))
        .header("x-warming", "maybe")
        .json(&json!({"model": "gpt-test", "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let answer: Value = response.json().await.unwrap();
    assert!(answer["error"]["message"]
        .as_str()
        .unwrap()
        .contains("x-warming"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxied_thinking_conversation_is_warmed_and_its_next_turn_reads_the_cache() {
    let Some(python) = python() else { return };
    let standin = Standin::start(StandinOptions {
        ttl: Duration::from_millis(800),
        ..StandinOptions::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), &standin.url(), &[]).await;
    let base = service.url("/proxy/anthropic");
    let on = json!({"x-warming": "on", "x-warming-interval": "0.3"});
    sdk_with_headers(&python, "anthropic", "thinking", &base, Some("think"), &on);
    eventually(5, "two warms", || async {
        (service.state("think").await["warmCount"].as_u64() >= Some(2)).then_some(())
    })
    .await;
    let (_, history) = service
        .call("GET", "/v1/conversations/think/history?limit=5", None)
        .await;
    let warms: Vec<&Value> = history["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["trigger"] == "scheduled")
        .collect();
    assert!(warms.iter().all(|w| w["outcome"] == "hit"), "{history}");
    assert!(
        warms.iter().all(|w| w["kind"] == "prefix-only"),
        "{history}"
    );
    // Idle for twice the cache's TTL, then the next turn, thinking on.
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    let next = sdk_with_headers(&python, "anthropic", "thinking", &base, Some("think"), &on);
    assert!(
        next["usage"]["cache_read_input_tokens"].as_u64().unwrap() > 0,
        "{next}"
    );
}

#[tokio::test]
async fn a_tool_run_longer_than_the_ttl_inside_an_agent_turn_is_warmed() {
    // The provider forgets a prefix 1 s after its last use.
    let standin = Standin::start(StandinOptions {
        ttl: Duration::from_secs(1),
        ..StandinOptions::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), &standin.url(), &[]).await;
    let client = reqwest::Client::new();
    let call = |id: &str, request: Value, warming: bool| {
        let mut builder = client
            .post(service.url("/proxy/anthropic/v1/messages"))
            .header("x-conversation-id", id)
            .json(&request);
        // Off with the same interval: the tool run outlasts five of its
        // intervals, so a warm of it would show.
        builder = builder
            .header("x-warming", if warming { "on" } else { "off" })
            .header("x-warming-interval", "0.3");
        async move {
            let response = builder.send().await.unwrap();
            assert_eq!(response.status().as_u16(), 200);
            response.json::<Value>().await.unwrap()["usage"].clone()
        }
    };
    // One agent turn: the model asks for a tool, the tool runs, the model
    // gets its result. Same agent twice, warming on and off.
    let asks = |tag: &str| crate::support::anthropic_request(tag);
    let with_result = |tag: &str| {
        let mut request = asks(tag);
        request["messages"] = json!([
            {"role": "user", "content": "Summarise the plan."},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "t1", "name": "read_plan", "input": {}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": "step 1, step 2"}]}
        ]);
        request
    };
    call("agent-on", asks("agent-on"), true).await;
    call("agent-off", asks("agent-off"), false).await;
    // The tool runs for longer than the TTL (five warm intervals, 1.5 s).
    eventually(10, "five warms during the tool run", || async {
        (service.state("agent-on").await["warmCount"].as_u64() >= Some(5)).then_some(())
    })
    .await;
    let on = call("agent-on", with_result("agent-on"), true).await;
    let off = call("agent-off", with_result("agent-off"), false).await;
    // Warmed, the model call after the tool reads the prefix; unwarmed, the
    // prefix has expired and is written again.
    assert!(on["cache_read_input_tokens"].as_u64().unwrap() > 0, "{on}");
    assert_eq!(off["cache_read_input_tokens"].as_u64(), Some(0), "{off}");
    assert!(
        off["cache_creation_input_tokens"].as_u64().unwrap() > 0,
        "{off}"
    );
    let (_, history) = service
        .call("GET", "/v1/conversations/agent-on/history?limit=100", None)
        .await;
    let hits = history["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["trigger"] == "scheduled" && e["outcome"] == "hit")
        .count();
    assert!(hits >= 4, "{history}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openai_responses_conversation_is_warmed_and_its_next_turn_reads_the_cache() {
    let Some(python) = python() else { return };
    let standin = Standin::start(StandinOptions {
        ttl: Duration::from_millis(800),
        ..StandinOptions::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(
        dir.path(),
        &standin.url(),
        &["--openai-upstream", &standin.url()],
    )
    .await;
    let base = service.url("/proxy/openai/v1");
    let on = json!({"x-warming": "on", "x-warming-interval": "0.3"});
    let first = sdk_with_headers(&python, "openai", "responses", &base, Some("resp"), &on);
    // The model answered in full, under the SDK's 20-token bound.
    assert_eq!(first["stop"], "completed", "{first}");
    eventually(5, "two warms", || async {
        (service.state("resp").await["warmCount"].as_u64() >= Some(2)).then_some(())
    })
    .await;
    // Each warm is the Responses request itself, with the fewest output
    // tokens the API takes, not stored, on the same cache key.
    let warms = standin.warms();
    for warm in &warms {
        assert_eq!(warm.path, "/v1/responses");
        assert_eq!(warm.max_tokens, Some(16));
        let body: Value = serde_json::from_str(&warm.body).unwrap();
        assert_eq!(body["store"], false, "{body}");
        assert_eq!(body["prompt_cache_key"], "proxy-test/resp", "{body}");
        assert!(warm.cache_read.unwrap() > 0, "a warm missed the cache");
    }
    let (_, history) = service
        .call("GET", "/v1/conversations/resp/history?limit=5", None)
        .await;
    let scheduled: Vec<&Value> = history["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["trigger"] == "scheduled")
        .collect();
    assert!(
        scheduled
            .iter()
            .all(|w| w["kind"] == "minimum-output" && w["outcome"] == "hit"),
        "{history}"
    );
    // Idle for twice the cache's TTL, then the next turn, streamed: it
    // reads the prefix the warms kept.
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    let next = sdk_with_headers(
        &python,
        "openai",
        "responses-stream",
        &base,
        Some("resp"),
        &on,
    );
    assert!(
        next["usage"]["input_tokens_details"]["cached_tokens"].as_u64() > Some(0),
        "{next}"
    );
    // Counted as a returning turn that hit: the share the dashboard shows.
    let text = eventually(5, "the returning turn counted", || async {
        let text = service.metrics().await;
        text.contains("warming_returning_turns_total{outcome=\"hit\"} 1")
            .then_some(text)
    })
    .await;
    assert!(
        !text.contains("warming_returning_turns_total{outcome=\"miss\"}"),
        "{text}"
    );
    // The warms' output is paid for, and shows in what they spent.
    let state = service.state("resp").await;
    assert!(
        state["ledger"]["spentDollars"].as_f64() > Some(0.0),
        "{state}"
    );
}

/// Posts `mb` megabytes through the proxy with Python's `urllib`.
fn post_large(python: &PathBuf, url: &str, mb: f64, conversation: &str) -> Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/e2e/large_body.py");
    let output = Command::new(python)
        .arg(script)
        .args([url, &mb.to_string(), conversation])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "urllib: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

// Python blocks a worker while the stand-in answers on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_as_large_as_the_provider_takes_reach_it_and_larger_ones_get_a_readable_413() {
    let Some(python) = python() else { return };
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // At the defaults: Anthropic's documented 32 MB.
    let service = Service::start(dir.path(), &standin.url(), &[]).await;
    let url = service.url("/proxy/anthropic/v1/messages");
    let big = post_large(&python, &url, 20.0, "big");
    assert_eq!(big["status"], 200, "{big}");
    let seen = standin.requests();
    assert_eq!(seen.len(), 1);
    assert!(
        seen[0].body.len() > 20 * 1024 * 1024,
        "the whole body arrived"
    );
    // The turn's template is kept like any other.
    assert_eq!(service.state("big").await["known"], true);

    // Over a configured limit: a 413 the client reads (not a reset).
    let dir = tempfile::tempdir().unwrap();
    let small = Service::start(dir.path(), &standin.url(), &["--proxy-max-body-mb", "8"]).await;
    let refused = post_large(
        &python,
        &small.url("/proxy/anthropic/v1/messages"),
        20.0,
        "refused",
    );
    assert_eq!(refused["status"], 413, "{refused}");
    assert_eq!(refused["body"]["error"]["code"], "payload_too_large");
    let message = refused["body"]["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("8 MiB") && message.contains("--proxy-max-body-mb"),
        "{message}"
    );
    assert_eq!(
        standin.requests().len(),
        1,
        "nothing more reached the upstream"
    );
    assert_eq!(
        small.state("refused").await["known"],
        false,
        "nothing changed"
    );
}
