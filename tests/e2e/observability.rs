//! `/metrics` and the OpenAPI document.

use serde_json::json;
use warming_testkit::{Standin, StandinOptions};

use crate::support::{anthropic_request, eventually, provider_turn, Service};

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn metrics_count_warms_tokens_subscribers_and_cost_at_list_prices() {
    let standin = Standin::start(StandinOptions {
        ttl: std::time::Duration::from_millis(600),
        ..StandinOptions::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Only the TTL is set, so a return comes within the test's time; prices
    // are the built-in list's.
    let service = Service::start(dir.path(), &standin.url(), &["--cache-ttl-ms", "600"]).await;
    let mut surface = service.surface().await;
    surface.subscribe("m").await;

    // Sonnet 4.5 with a prefix above its 1,024-token minimum.
    let mut request = anthropic_request("metrics");
    request["model"] = json!("claude-sonnet-4-5-20250929");
    let system = request["system"][0]["text"].as_str().unwrap().repeat(4);
    request["system"][0]["text"] = json!(system);
    provider_turn(&standin.url(), &request).await;
    service.turn_settled("m", &request).await;
    service.enable("m", 250).await;
    eventually(5, "three warms", || async {
        (service.state("m").await["warmCount"].as_u64() >= Some(3)).then_some(())
    })
    .await;
    // The user comes back after more than the TTL: the turn found the cache.
    service.turn_started("m").await;

    let text = service.metrics().await;
    assert!(
        metric(&text, "warming_warms_total{outcome=\"hit\"}").unwrap() >= 3.0,
        "{text}"
    );
    assert!(metric(&text, "warming_cache_read_tokens_total").unwrap() > 0.0);
    assert_eq!(metric(&text, "warming_surface_subscribers"), Some(1.0));
    assert!(metric(&text, "warming_warm_latency_seconds_count").unwrap() >= 3.0);
    assert!(metric(&text, "warming_storage_write_seconds_count").unwrap() >= 1.0);
    // What the warms cost, at Sonnet's list prices ($3 input, $3.75 write,
    // $0.30 read, $15 output per million), is what their usage says.
    let (_, history) = service
        .call("GET", "/v1/conversations/m/history?limit=100", None)
        .await;
    let mut spent = 0.0;
    let mut last_read = 0.0;
    for entry in history["history"].as_array().unwrap() {
        let u = &entry["usage"];
        if entry["trigger"] != "scheduled" || u.is_null() {
            continue;
        }
        let tokens = |k: &str| u[k].as_f64().unwrap();
        spent += (3.0 * tokens("inputTokens")
            + 3.75 * tokens("cacheWriteTokens")
            + 0.30 * tokens("cacheReadTokens")
            + 15.0 * tokens("outputTokens"))
            / 1e6;
        last_read = tokens("cacheReadTokens");
    }
    let warm_cost = metric(
        &text,
        "warming_estimated_warm_cost_dollars_total{price=\"list\"}",
    )
    .unwrap_or_else(|| panic!("no list-priced warm cost in {text}"));
    assert!(
        (warm_cost - spent).abs() < 1e-9,
        "{warm_cost} vs {spent}: {text}"
    );
    // The returning turn read what the last warm read instead of re-writing
    // it: $3.75 - $0.30 per million tokens saved.
    let avoided = metric(
        &text,
        "warming_estimated_miss_cost_avoided_dollars_total{price=\"list\"}",
    )
    .unwrap();
    assert!(last_read > 0.0);
    assert!((avoided - 3.45 * last_read / 1e6).abs() < 1e-9, "{text}");
    assert!(!text.contains("price=\"estimate\""), "{text}");
    // Active now: nothing armed.
    assert_eq!(metric(&text, "warming_armed_conversations"), Some(0.0));

    // The same facts for the conversation, in its state: what its warms
    // spent, the miss its return avoided, and the net a UI shows.
    let state = service.state("m").await;
    let ledger = &state["ledger"];
    // The figures of this short demo, for the README.
    eprintln!("demo ledger: {ledger} net {}", state["netDollars"]);
    let figure = |key: &str| ledger[key].as_f64().unwrap();
    assert!((figure("spentDollars") - spent).abs() < 1e-9, "{state}");
    assert!((figure("savedDollars") - avoided).abs() < 1e-9, "{state}");
    assert_eq!(ledger["missesAvoided"], 1, "{state}");
    // The read prefix at the default 5 000 tokens/s of prefill.
    assert!((figure("savedPrefillSeconds") - last_read / 5_000.0).abs() < 1e-9);
    assert!(figure("warmSeconds") > 0.0, "{state}");
    let net = state["netDollars"].as_f64().unwrap();
    assert!((net - (avoided - spent)).abs() < 1e-9, "{state}");
    // Today's figures (what the dashboard's strip shows) are the same: all
    // of it happened today.
    eventually(5, "today's figures in /metrics", || async {
        let text = service.metrics().await;
        let today = |name| metric(&text, name).unwrap_or(0.0);
        ((today("warming_spent_today_dollars") - spent).abs() < 1e-9
            && (today("warming_saved_today_dollars") - avoided).abs() < 1e-9)
            .then_some(())
    })
    .await;
    assert!(net > 0.0, "warming paid for itself here: {state}");
    // `warming list` shows the net, and a restart keeps every figure.
    let list = std::process::Command::new(env!("CARGO_BIN_EXE_warming"))
        .args(["list"])
        .env("WARMING_SERVER", format!("http://{}", service.addr))
        .env_remove("WARMING_TOKEN")
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout).into_owned();
    assert!(list.contains("$ NET"), "{list}");
    assert!(list.contains(&format!("+${net:.4}")), "{list}");
    service.terminate();
    let service = Service::start(dir.path(), &standin.url(), &["--cache-ttl-ms", "600"]).await;
    let restored = service.state("m").await;
    assert_eq!(restored["ledger"], state["ledger"], "{restored}");
    assert_eq!(restored["netDollars"], state["netDollars"]);
}

#[tokio::test]
async fn the_openapi_document_matches_the_routes() {
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), &standin.url(), &[]).await;
    let (status, doc) = service.call("GET", "/v1/openapi.json", None).await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    let mut operations = 0;
    for (path, methods) in paths {
        for (method, operation) in methods.as_object().unwrap() {
            operations += 1;
            assert!(operation["summary"].is_string());
            // Every documented operation exists: the server answers something
            // other than "no such route" or "wrong method".
            let concrete = path.replace("{id}", "openapi-check");
            let (status, body) = service.call(&method.to_uppercase(), &concrete, None).await;
            let unknown = status == 405 || body["error"]["message"] == "no such route";
            assert!(
                !unknown,
                "{method} {path} is documented but not served: {status} {body}"
            );
        }
    }
    // Every served route is documented: the routes of docs/API.md.
    for route in [
        "/",
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/conversations",
        "/v1/conversations/{id}",
        "/v1/conversations/{id}/history",
        "/v1/conversations/{id}/turn-started",
        "/v1/conversations/{id}/turn-settled",
        "/v1/conversations/{id}/warm",
        "/v1/conversations/{id}/close",
        "/v1/conversations/{id}/settings",
        "/v1/events",
        "/v1/surface",
        "/v1/openapi.json",
    ] {
        assert!(
            paths.contains_key(route),
            "{route} is served but not documented"
        );
    }
    assert_eq!(operations, 19);
}

/// The JSON objects of docs/API.md's ```json blocks that parse as one value.
fn api_doc_examples() -> Vec<serde_json::Value> {
    include_str!("../../docs/API.md")
        .split("```json\n")
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .filter_map(|block| serde_json::from_str(block).ok())
        .collect()
}

fn keys(value: &serde_json::Value) -> Vec<String> {
    let mut keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

#[tokio::test]
async fn the_api_docs_examples_have_the_live_fields() {
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), &standin.url(), &[]).await;
    let examples = api_doc_examples();
    let state_doc = examples
        .iter()
        .find(|e| e.get("warmCount").is_some())
        .expect("docs/API.md shows a state");
    assert_eq!(keys(state_doc), keys(&service.state("c1").await));
    service.turn_settled("c1", &anthropic_request("c1")).await;
    let (_, live) = service
        .call("POST", "/v1/conversations/c1/warm", None)
        .await;
    let entry_doc = examples
        .iter()
        .find(|e| e.get("latencyMs").is_some())
        .expect("docs/API.md shows a history entry");
    assert_eq!(keys(entry_doc), keys(&live));
    assert_eq!(keys(&entry_doc["usage"]), keys(&live["usage"]));
}

#[tokio::test]
async fn a_self_hosted_engines_money_is_shown_in_engine_seconds() {
    let standin = Standin::start(StandinOptions {
        ttl: std::time::Duration::from_millis(600),
        ..StandinOptions::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(
        dir.path(),
        &standin.url(),
        &["--cache-ttl-ms", "600", "--self-hosted"],
    )
    .await;
    let mut request = anthropic_request("engine");
    let system = request["system"][0]["text"].as_str().unwrap().repeat(4);
    request["system"][0]["text"] = json!(system);
    provider_turn(&standin.url(), &request).await;
    service.turn_settled("e", &request).await;
    service.enable("e", 250).await;
    eventually(5, "three warms", || async {
        (service.state("e").await["warmCount"].as_u64() >= Some(3)).then_some(())
    })
    .await;
    service.turn_started("e").await;
    let state = service.state("e").await;
    assert_eq!(state["priced"], "engine", "{state}");
    let ledger = &state["ledger"];
    assert_eq!(ledger["missesAvoided"], 1, "{state}");
    let net =
        ledger["savedPrefillSeconds"].as_f64().unwrap() - ledger["warmSeconds"].as_f64().unwrap();
    // `warming list` and `status` speak in seconds of engine time.
    let cli = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_warming"))
            .args(args)
            .env("WARMING_SERVER", format!("http://{}", service.addr))
            .env_remove("WARMING_TOKEN")
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let list = cli(&["list"]);
    let shown = format!("{}{:.1}s", if net < 0.0 { "-" } else { "+" }, net.abs());
    assert!(list.contains(&shown), "{shown} in {list}");
    let status = cli(&["status", "e"]);
    assert!(status.contains("of engine time"), "{status}");
    // `/metrics` labels the figures as an engine's and counts the prefill saved.
    let text = service.metrics().await;
    assert!(text.contains("price=\"engine\""), "{text}");
    assert!(metric(&text, "warming_prefill_seconds_avoided_total").unwrap() > 0.0);
}

/// The missing-key warning is said where it is true: a local upstream (the
/// stand-in, an engine) takes no key and gets no warning at start; the
/// provider's public API without a key does.
#[tokio::test]
async fn the_missing_key_warning_is_given_only_for_the_public_api() {
    let dir = tempfile::tempdir().unwrap();
    let standin = warming_testkit::Standin::start(warming_testkit::StandinOptions::default())
        .await
        .unwrap();
    let local = Service::start_with(
        dir.path(),
        &dir.path().join("local.db"),
        &standin.url(),
        &[],
        None,
    )
    .await;
    let text = std::fs::read_to_string(&local.log).unwrap();
    assert!(!text.contains("is not set"), "{text}");
    drop(local);
    let public = Service::start_with(
        dir.path(),
        &dir.path().join("public.db"),
        "https://api.anthropic.com",
        &[],
        None,
    )
    .await;
    let text = std::fs::read_to_string(&public.log).unwrap();
    assert!(text.contains("ANTHROPIC_API_KEY is not set"), "{text}");
}
