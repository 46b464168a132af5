//! Gemini through the real binary and Google's official SDK (google-genai):
//! an implicitly cached conversation is warmed with one-token requests and
//! its next turn reads the prefix; one reading an explicit cache is kept
//! by `PATCH`ing the cache's TTL, never replayed, past the TTL it was
//! created with; with warming off both miss. The stand-in keeps an implicit
//! prefix 2 s; the explicit caches are created to live 10 s and the turn
//! after the gap comes 12 s after that; the idle gaps are at least 5 s,
//! warms 1 s apart.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use warming_testkit::{SeenRequest, Standin, StandinOptions};

use crate::support::Service;

const KEY: &str = "gemini-test-key";

fn python() -> Option<PathBuf> {
    crate::support::python_with("google.genai", "WARMING_REQUIRE_PYTHON_SDKS", "see .ci/run")
}

/// One call of `gemini_client.py` through the proxy at `base`: its JSON,
/// or the SDK's error text. A base ending in `/proxy/vertex` speaks
/// Vertex AI.
fn sdk(
    python: &PathBuf,
    base: &str,
    conversation: &str,
    warming: &str,
    args: &[&str],
) -> Result<Value, String> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/e2e/gemini_client.py");
    let headers = json!({"x-warming": warming, "x-warming-interval": "1"});
    let vertex = if base.ends_with("/proxy/vertex") {
        "1"
    } else {
        "0"
    };
    let output = Command::new(python)
        .env("SDK_EXTRA_HEADERS", headers.to_string())
        .env("GEMINI_VERTEX", vertex)
        .arg(script)
        .args([base, KEY, conversation])
        .args(args)
        .output()
        .unwrap();
    if output.status.success() {
        Ok(serde_json::from_slice(&output.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

async fn standin() -> Standin {
    Standin::start(StandinOptions {
        ttl: Duration::from_secs(2),
        require_key: true,
        ..StandinOptions::default()
    })
    .await
    .unwrap()
}

/// The server at its defaults, told only where Gemini and Vertex AI are.
async fn service(dir: &std::path::Path, standin: &Standin) -> Service {
    let url = standin.url();
    Service::start(
        dir,
        &url,
        &["--gemini-upstream", &url, "--vertex-upstream", &url],
    )
    .await
}

/// Outlives the stand-in's 2-second implicit cache.
async fn idle() {
    tokio::time::sleep(Duration::from_secs(5)).await;
}

/// How long the explicit caches are created to live, seconds.
const CACHE_TTL_SECS: u64 = 10;

/// Waits 5 s, and until the explicit cache created at `created` would have
/// expired by its own TTL, with 2 s to spare.
async fn idle_past_ttl(created: std::time::Instant) {
    idle().await;
    let past = created + Duration::from_secs(CACHE_TTL_SECS + 2);
    tokio::time::sleep(past.saturating_duration_since(std::time::Instant::now())).await;
}

fn cached_tokens(usage: &Value) -> u64 {
    usage["usage"]["cached_content_token_count"]
        .as_u64()
        .unwrap_or(0)
}

fn is_generate(r: &SeenRequest) -> bool {
    r.path.contains(":generateContent") || r.path.contains(":streamGenerateContent")
}

#[tokio::test(flavor = "multi_thread")]
async fn an_implicitly_cached_gemini_conversation_is_warmed_and_its_next_turn_reads_the_prefix() {
    let Some(python) = python() else { return };
    let standin = standin().await;
    let dir = tempfile::tempdir().unwrap();
    let service = service(dir.path(), &standin).await;
    let base = service.url("/proxy/gemini");

    let first = sdk(&python, &base, "gem-implicit", "on", &["turn", "0"]).unwrap();
    assert_eq!(cached_tokens(&first), 0, "{first}");
    let state = service.settled_on_plan("gem-implicit", "replay").await;
    assert_eq!(state["enabled"], true, "{state}");
    idle().await;

    // Warms went to generateContent with the client's key, one token each,
    // the prefix as the turn sent it, and read the cache.
    let warms = standin.warms();
    assert!(warms.len() >= 2, "{warms:?}");
    for warm in &warms {
        assert_eq!(warm.path, "/v1beta/models/gemini-2.5-flash:generateContent");
        assert_eq!(warm.credential.as_deref(), Some(KEY));
        let body: Value = serde_json::from_str(&warm.body).unwrap();
        assert_eq!(body["generationConfig"]["maxOutputTokens"], 1, "{body}");
        assert_eq!(body.get("model"), None, "{body}");
        assert!(body["systemInstruction"].is_object(), "{body}");
    }
    let records = service.history("gem-implicit").await;
    let warm = records
        .iter()
        .find(|r| r["trigger"] == "scheduled")
        .unwrap();
    assert_eq!(warm["kind"], "one-token", "{warm}");
    assert_eq!(warm["outcome"], "hit", "{warm}");

    // The next turn, streamed, reads what the warms kept.
    let second = sdk(&python, &base, "gem-implicit", "on", &["stream", "1"]).unwrap();
    assert!(cached_tokens(&second) >= 2_048, "{second}");
    drop(service);

    // With warming off, the same gap loses the prefix.
    let standin = self::standin().await;
    let dir = tempfile::tempdir().unwrap();
    let service = self::service(dir.path(), &standin).await;
    let base = service.url("/proxy/gemini");
    sdk(&python, &base, "gem-off", "off", &["turn", "0"]).unwrap();
    service.settled_on_plan("gem-off", "replay").await;
    idle().await;
    assert!(standin.warms().is_empty());
    let second = sdk(&python, &base, "gem-off", "off", &["stream", "1"]).unwrap();
    assert_eq!(cached_tokens(&second), 0, "{second}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_explicit_gemini_cache_is_extended_not_replayed_and_outlives_its_ttl() {
    let Some(python) = python() else { return };
    let standin = standin().await;
    let dir = tempfile::tempdir().unwrap();
    let service = service(dir.path(), &standin).await;
    let base = service.url("/proxy/gemini");

    let created = std::time::Instant::now();
    let cache = sdk(
        &python,
        &base,
        "gem-explicit",
        "on",
        &["create-cache", "10"],
    )
    .unwrap();
    let name = cache["name"].as_str().unwrap().to_owned();
    let first = sdk(
        &python,
        &base,
        "gem-explicit",
        "on",
        &["cached", "0", &name],
    )
    .unwrap();
    let size = cached_tokens(&first);
    assert!(size >= 2_048, "{first}");
    let state = service.settled_on_plan("gem-explicit", "extend").await;
    let plan = &state["keepAlive"];
    assert!(
        plan["why"].as_str().unwrap().contains("explicit cache"),
        "{plan}"
    );
    assert!(plan["costPerIdleHour"].as_f64().unwrap() > 0.0, "{plan}");
    let turns = standin.requests().iter().filter(|r| is_generate(r)).count();
    idle_past_ttl(created).await;

    // Only PATCHes of the cache's TTL while the user was away: no replay.
    let warms = standin.warms();
    assert!(warms.len() >= 2, "{warms:?}");
    for warm in &warms {
        assert_eq!(warm.method, "PATCH", "{warm:?}");
        assert_eq!(warm.path, format!("/v1beta/{name}"));
        assert_eq!(warm.query.as_deref(), Some("updateMask=ttl"));
        assert_eq!(warm.credential.as_deref(), Some(KEY));
    }
    let generated = standin.requests().iter().filter(|r| is_generate(r)).count();
    assert_eq!(generated, turns, "a generateContent was sent while idle");
    let records = service.history("gem-explicit").await;
    let warm = records
        .iter()
        .find(|r| r["trigger"] == "scheduled")
        .unwrap();
    assert_eq!(warm["kind"], "extended", "{warm}");
    assert_eq!(warm["pct"], 100.0, "{warm}");
    // Each extension is priced as the storage it bought, in the ledger.
    let spent = service.state("gem-explicit").await["ledger"]["spentDollars"].clone();
    assert!(spent.as_f64().is_some_and(|d| d > 0.0), "{spent}");

    // Past the TTL it was created with, the next turn still reads it.
    let second = sdk(
        &python,
        &base,
        "gem-explicit",
        "on",
        &["cached-stream", "1", &name],
    )
    .unwrap();
    assert_eq!(cached_tokens(&second), size, "{second}");

    // Closed, it is left to expire: no more extensions.
    let (status, _) = service
        .call("POST", "/v1/conversations/gem-explicit/close", None)
        .await;
    assert_eq!(status, 200);
    let extended = standin.warms().len();
    idle().await;
    assert_eq!(standin.warms().len(), extended);
    // Left to expire (the default), not deleted.
    assert!(standin.requests().iter().all(|r| r.method != "DELETE"));
    drop(service);

    // With warming off, the cache expires in the gap and the turn misses.
    let standin = self::standin().await;
    let dir = tempfile::tempdir().unwrap();
    let service = self::service(dir.path(), &standin).await;
    let base = service.url("/proxy/gemini");
    let created = std::time::Instant::now();
    let cache = sdk(&python, &base, "gem-gone", "off", &["create-cache", "10"]).unwrap();
    let name = cache["name"].as_str().unwrap().to_owned();
    sdk(&python, &base, "gem-gone", "off", &["cached", "0", &name]).unwrap();
    idle_past_ttl(created).await;
    let gone = sdk(&python, &base, "gem-gone", "off", &["cached", "1", &name]).unwrap_err();
    assert!(gone.contains("404") || gone.contains("NOT_FOUND"), "{gone}");
    assert!(standin.warms().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn vertex_ai_conversations_are_warmed_and_extended_like_gemini_ones() {
    let Some(python) = python() else { return };
    let standin = standin().await;
    let dir = tempfile::tempdir().unwrap();
    let service = service(dir.path(), &standin).await;
    let base = service.url("/proxy/vertex");
    let model = "projects/proj/locations/us-central1/publishers/google/models/gemini-2.5-flash";

    // Implicit caching: warmed by generateContent under the project, with
    // the client's bearer token; the next turn reads the prefix.
    sdk(&python, &base, "vx-implicit", "on", &["turn", "0"]).unwrap();
    service.settled_on_plan("vx-implicit", "replay").await;
    // An explicit cache in the same location: extended, not replayed.
    let created = std::time::Instant::now();
    let cache = sdk(&python, &base, "vx-explicit", "on", &["create-cache", "10"]).unwrap();
    let name = cache["name"].as_str().unwrap().to_owned();
    assert!(
        name.starts_with("projects/proj/locations/us-central1/cachedContents/"),
        "{name}"
    );
    let first = sdk(&python, &base, "vx-explicit", "on", &["cached", "0", &name]).unwrap();
    let size = cached_tokens(&first);
    service.settled_on_plan("vx-explicit", "extend").await;
    idle_past_ttl(created).await;

    let warms = standin.warms();
    let generated: Vec<_> = warms.iter().filter(|w| is_generate(w)).collect();
    let patched: Vec<_> = warms.iter().filter(|w| w.method == "PATCH").collect();
    assert!(generated.len() >= 2 && patched.len() >= 2, "{warms:?}");
    assert_eq!(generated.len() + patched.len(), warms.len(), "{warms:?}");
    let bearer = format!("Bearer {KEY}");
    for warm in &generated {
        assert_eq!(warm.path, format!("/v1/{model}:generateContent"));
        assert_eq!(warm.credential.as_deref(), Some(bearer.as_str()));
        let body: Value = serde_json::from_str(&warm.body).unwrap();
        assert_eq!(body["generationConfig"]["maxOutputTokens"], 1, "{body}");
    }
    for warm in &patched {
        assert_eq!(warm.path, format!("/v1/{name}"));
        assert_eq!(warm.credential.as_deref(), Some(bearer.as_str()));
    }
    let implicit = sdk(&python, &base, "vx-implicit", "on", &["stream", "1"]).unwrap();
    assert!(cached_tokens(&implicit) >= 2_048, "{implicit}");
    let explicit = sdk(&python, &base, "vx-explicit", "on", &["cached", "1", &name]).unwrap();
    assert_eq!(cached_tokens(&explicit), size, "{explicit}");
    // Priced by the model's last segment: Gemini 2.5 Flash's list prices.
    let state = service.state("vx-implicit").await;
    assert_eq!(state["priced"], "list", "{state}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_may_have_explicit_caches_deleted_when_warming_ends() {
    let Some(python) = python() else { return };
    let standin = standin().await;
    let dir = tempfile::tempdir().unwrap();
    let url = standin.url();
    let flags = ["--gemini-upstream", &url, "--explicit-caches", "delete"];
    let service = Service::start(dir.path(), &url, &flags).await;
    let base = service.url("/proxy/gemini");

    let cache = sdk(&python, &base, "gem-delete", "on", &["create-cache", "600"]).unwrap();
    let name = cache["name"].as_str().unwrap().to_owned();
    sdk(&python, &base, "gem-delete", "on", &["cached", "0", &name]).unwrap();
    service.settled_on_plan("gem-delete", "extend").await;
    let (status, _) = service
        .call("POST", "/v1/conversations/gem-delete/close", None)
        .await;
    assert_eq!(status, 200);

    // Closed: the cache is deleted with the client's key, and a turn
    // naming it is refused by the provider.
    let deleted = crate::support::eventually(10, "the cache's DELETE", || async {
        standin.warms().into_iter().find(|w| w.method == "DELETE")
    })
    .await;
    assert_eq!(deleted.path, format!("/v1beta/{name}"));
    assert_eq!(deleted.credential.as_deref(), Some(KEY));
    let gone = sdk(&python, &base, "gem-delete", "off", &["cached", "1", &name]).unwrap_err();
    assert!(gone.contains("404") || gone.contains("NOT_FOUND"), "{gone}");
}
