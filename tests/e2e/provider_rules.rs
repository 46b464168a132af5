//! Warms the real providers accept: against a stand-in that refuses what
//! they refuse (`warming_testkit::rules`), each kind of template is warmed
//! with a request it accepts, and the next turn reads the cache.

use serde_json::{json, Value};
use warming_testkit::{Standin, StandinOptions};

use crate::support::{anthropic_request, provider_turn, Service};

/// A thinking conversation: `messages` decides whether keeping the
/// thinking parameters is worth their output.
fn thinking_request(tag: &str, history: &str) -> Value {
    let mut request = anthropic_request(tag);
    request["max_tokens"] = json!(4_096);
    request["thinking"] = json!({"type": "enabled", "budget_tokens": 1_024});
    request["messages"] = json!([
        {"role": "user", "content": history},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": [{"type": "text", "text": "Go on.", "cache_control": {"type": "ephemeral"}}]}
    ]);
    request
}

async fn last_warm(service: &Service, id: &str) -> Value {
    let (status, record) = service
        .call("POST", &format!("/v1/conversations/{id}/warm"), None)
        .await;
    assert_eq!(status, 200, "{record}");
    record
}

#[tokio::test]
async fn a_thinking_conversation_is_warmed_as_the_provider_allows() {
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), &standin.url(), &[]).await;

    // Short messages: only tools and system are worth keeping.
    let short = thinking_request("short", "A short question.");
    provider_turn(&standin.url(), &short).await;
    service.turn_settled("short", &short).await;
    let record = last_warm(&service, "short").await;
    assert_eq!(record["kind"], "prefix-only", "{record}");
    assert_eq!(record["refreshes"], "system-and-tools", "{record}");
    assert_eq!(standin.warms().last().unwrap().max_tokens, Some(0));
    // A second warm claims no more than the next turn will read: it wrote
    // no message entry of its own (keyed without thinking) to read back.
    let again = last_warm(&service, "short").await;
    // The next turn, thinking on, reads the system prompt the warm kept.
    let next = provider_turn(&standin.url(), &short).await;
    let turn_read = next["cache_read_input_tokens"].as_u64().unwrap();
    assert!(turn_read > 0, "{next}");
    assert!(
        again["usage"]["cacheReadTokens"].as_u64().unwrap() <= turn_read,
        "the warm read {again} but the turn only {next}"
    );

    // Long messages: the thinking parameters are kept, the output bounded
    // just above the budget, and that output is counted.
    let long = thinking_request("long", &"Here is the whole design document. ".repeat(800));
    provider_turn(&standin.url(), &long).await;
    service.turn_settled("long", &long).await;
    let record = last_warm(&service, "long").await;
    assert_eq!(record["kind"], "thinking-kept", "{record}");
    assert_eq!(standin.warms().last().unwrap().max_tokens, Some(1_025));
    assert!(
        record["usage"]["outputTokens"].as_u64().unwrap() > 0,
        "{record}"
    );
    assert_eq!(record["outcome"], "hit");
    let next = provider_turn(&standin.url(), &long).await;
    assert_eq!(next["cache_creation_input_tokens"], 0, "{next}");
}

#[tokio::test]
async fn structured_outputs_and_reasoning_models_get_one_token() {
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), &standin.url(), &[]).await;
    let mut shaped = anthropic_request("shaped");
    shaped["output_format"] = json!({"type": "json_schema", "schema": {"type": "object"}});
    service.turn_settled("shaped", &shaped).await;
    let record = last_warm(&service, "shaped").await;
    assert_eq!(record["kind"], "one-token");

    let openai_dir = tempfile::tempdir().unwrap();
    let service =
        Service::start(openai_dir.path(), &standin.url(), &["--provider", "openai"]).await;
    let reasoning = json!({"model": "o4-mini", "max_tokens": 2_000, "messages": [
        {"role": "system", "content": "You plan carefully. ".repeat(300)},
        {"role": "user", "content": "Plan the migration."}]});
    service.turn_settled("reason", &reasoning).await;
    let record = last_warm(&service, "reason").await;
    assert_eq!(record["kind"], "one-token", "{record}");
    assert_eq!(standin.warms().last().unwrap().max_tokens, Some(1));
}

#[tokio::test]
async fn a_prefix_below_the_models_minimum_is_not_warmed_and_says_why() {
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), &standin.url(), &[]).await;
    // ~600 tokens of system prompt: below claude-sonnet-4-5's 1 024.
    let mut request = anthropic_request("short");
    request["model"] = json!("claude-sonnet-4-5");
    // The provider itself caches none of it.
    provider_turn(&standin.url(), &request).await;
    let again = provider_turn(&standin.url(), &request).await;
    assert_eq!(again["cache_read_input_tokens"], 0);

    service.turn_settled("short", &request).await;
    let (_, state) = service
        .call(
            "PUT",
            "/v1/conversations/short/settings",
            Some(json!({"enabled": true, "intervalMs": 200})),
        )
        .await;
    let stopped = crate::support::eventually(5, "the stop", || async {
        let s = service.state("short").await;
        s["stoppedReason"].is_string().then_some(s)
    })
    .await;
    let reason = stopped["stoppedReason"].as_str().unwrap();
    assert!(
        reason.contains("minimum cacheable length (1024)"),
        "{reason} {state}"
    );
    assert_eq!(stopped["stop"]["code"], "belowMinimum");
    assert_eq!(stopped["stop"]["minimum"], 1024);
    // Five intervals later: still nothing sent, nothing scheduled.
    tokio::time::sleep(std::time::Duration::from_millis(1_000)).await;
    assert!(
        standin.warms().is_empty(),
        "a warm was sent for an uncacheable prefix"
    );
    assert_eq!(service.state("short").await["nextWarmAt"], json!(null));
}

#[tokio::test]
async fn a_warm_the_provider_refuses_stops_with_a_reason_instead_of_retrying() {
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), &standin.url(), &[]).await;
    service.turn_settled("no", &anthropic_request("no")).await;
    service.enable("no", 60_000).await;
    standin.fail_next(1, 400, None);
    let (status, answer) = service
        .call("POST", "/v1/conversations/no/warm", None)
        .await;
    assert_eq!(status, 502);
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("refused the warm") && message.contains("warming stopped"),
        "{message}"
    );
    let state = service.state("no").await;
    assert_eq!(
        state["nextWarmAt"],
        Value::Null,
        "a refused warm is retried: {state}"
    );
    assert!(state["stoppedReason"].as_str().unwrap().contains("refused"));
    assert_eq!(state["lastError"], json!(message));
}

/// Production's rule tables against the stand-in's, which are written from
/// the providers' documentation on their own: a wrong entry in production
/// disagrees here, and the stand-in caches as the provider would.
#[test]
fn production_rule_tables_agree_with_the_documented_ones() {
    use warming_testkit::rules;
    let production = |model: &str| warming_core::minimum_cacheable_tokens(model, &[]);
    for (prefix, _) in rules::MINIMUM_CACHEABLE
        .iter()
        .chain(warming_core::MINIMUM_CACHEABLE_TOKENS)
    {
        for model in [prefix.to_string(), format!("{prefix}-20251001")] {
            assert_eq!(
                production(&model),
                rules::minimum_cacheable_tokens(&model),
                "minimum cacheable tokens of {model}"
            );
        }
    }
    let reasoning = warming_provider::is_reasoning_model;
    for prefix in rules::OPENAI_REASONING_MODELS {
        assert!(reasoning(&format!("{prefix}-mini")), "{prefix}");
    }
    for model in [
        "gpt-4o",
        "gpt-4.1-mini",
        "gpt-5.1-codex",
        "o4-mini",
        "claude-sonnet-4-6",
    ] {
        assert_eq!(
            reasoning(model),
            rules::is_openai_reasoning(model),
            "{model}"
        );
    }
}
