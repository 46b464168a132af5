//! Opt-in means warm: at the server's defaults (no `--policy`), a
//! conversation someone enabled is warmed at its interval until a turn, a
//! close, a disable or the idle cap, and every stop or change says why.

use std::time::Duration;

use serde_json::{json, Value};
use warming_testkit::{Standin, StandinOptions};

use crate::support::{anthropic_request, eventually, now_ms, Service};

#[tokio::test]
async fn the_idle_cap_stops_warming_visibly_and_a_manual_warm_restarts_it() {
    let standin = Standin::start(StandinOptions {
        ttl: Duration::from_secs(1),
        ..StandinOptions::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), &standin.url(), &["--max-idle", "2s"]).await;
    let mut surface = service.surface().await;
    surface.subscribe("capped").await;
    service
        .turn_settled("capped", &anthropic_request("capped"))
        .await;
    let enabled = service.enable("capped", 400).await;
    assert_eq!(enabled["policy"], "fixed");

    let stopped = surface
        .until(10, |m| m["state"]["stoppedReason"].is_string())
        .await;
    let state = &stopped["state"];
    let reason = state["stoppedReason"].as_str().unwrap();
    assert!(reason.contains("idle for 2s"), "{reason}");
    assert!(reason.contains("--max-idle"), "{reason}");
    assert!(reason.contains("a manual warm"), "{reason}");
    // The same stop, for programs: a code and its figures.
    assert_eq!(state["stop"], json!({"code": "idleCap", "maxIdleMs": 2000}));
    assert_eq!(state["nextWarmAt"], Value::Null);
    // Warmed while under the cap: every 400 ms for 2 s.
    let warms = state["warmCount"].as_u64().unwrap();
    assert!((3..=5).contains(&warms), "{warms} warms");
    // History says when and why, too.
    let (_, history) = service
        .call("GET", "/v1/conversations/capped/history?limit=1", None)
        .await;
    assert_eq!(history["history"][0]["outcome"], "stopped");

    // The CLI shows it.
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_warming"))
        .args(["status", "capped"])
        .env("WARMING_SERVER", format!("http://{}", service.addr))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&status.stdout);
    assert!(out.contains("stopped       idle for 2s"), "{out}");

    // A manual warm restarts warming, with a future countdown.
    let (status, _) = service
        .call("POST", "/v1/conversations/capped/warm", None)
        .await;
    assert_eq!(status, 200);
    let state = service.state("capped").await;
    assert_eq!(state["stoppedReason"], Value::Null);
    assert_eq!(state["stop"], Value::Null);
    assert!(state["nextWarmAt"].as_u64().unwrap() > now_ms());
}

#[tokio::test]
async fn a_settings_answer_says_what_was_clamped() {
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), &standin.url(), &["--max-interval-ms", "60000"]).await;
    for (asked, applied, note, bound) in [
        (
            json!(5),
            200,
            "intervalMs clamped to 200 (server minimum)",
            "minimum",
        ),
        (
            json!(7_200_000),
            60_000,
            "intervalMs clamped to 60000 (server maximum)",
            "maximum",
        ),
    ] {
        let (status, answer) = service
            .call(
                "PUT",
                "/v1/conversations/c/settings",
                Some(json!({"intervalMs": asked})),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["intervalMs"], applied);
        assert_eq!(answer["notes"], json!([note]));
        // The same for programs, as data.
        assert_eq!(
            answer["clamped"],
            json!({"requestedMs": asked, "appliedMs": applied, "bound": bound})
        );
    }
    let (_, answer) = service
        .call(
            "PUT",
            "/v1/conversations/c/settings",
            Some(json!({"intervalMs": 30_000})),
        )
        .await;
    assert_eq!(answer.get("notes"), None, "{answer}");
    assert_eq!(answer.get("clamped"), None, "{answer}");
}

#[tokio::test]
async fn a_one_hour_cache_conversation_gets_a_just_under_an_hour_interval() {
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), &standin.url(), &[]).await;
    let mut request = anthropic_request("hour");
    request["system"][0]["cache_control"]["ttl"] = json!("1h");
    service.turn_settled("hour", &request).await;
    let (_, state) = service
        .call(
            "PUT",
            "/v1/conversations/hour/settings",
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(state["intervalMs"], 3_300_000);
    let next = state["nextWarmAt"].as_u64().unwrap();
    assert!(next > now_ms() + 3_000_000, "{state}");
    // The same conversation on the 5-minute cache keeps the 4-minute default.
    service
        .turn_settled("hour", &anthropic_request("hour"))
        .await;
    assert_eq!(service.state("hour").await["intervalMs"], 240_000);
}

#[tokio::test]
async fn the_anthropic_upstream_flag_is_where_every_anthropic_warm_goes() {
    let (default, anthropic) = (
        Standin::start(StandinOptions::default()).await.unwrap(),
        Standin::start(StandinOptions::default()).await.unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(
        dir.path(),
        &default.url(),
        &["--anthropic-upstream", &anthropic.url()],
    )
    .await;
    service.turn_settled("u", &anthropic_request("u")).await;
    let (status, _) = service.call("POST", "/v1/conversations/u/warm", None).await;
    assert_eq!(status, 200);
    assert_eq!(anthropic.warms().len(), 1);
    assert!(default.requests().is_empty());
}

#[tokio::test]
async fn without_a_key_the_error_says_which_variable_to_set() {
    let standin = Standin::start(StandinOptions {
        require_key: true,
        ..StandinOptions::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("warming.db");
    let service = Service::start_with(dir.path(), &db, &standin.url(), &[], None).await;
    // A local upstream may take no key: no warning at start
    // (observability.rs shows the one for the public API); the refusal
    // itself names the variable.
    let log = std::fs::read_to_string(&service.log).unwrap();
    assert!(!log.contains("ANTHROPIC_API_KEY"), "{log}");

    service.turn_settled("k", &anthropic_request("k")).await;
    let (status, answer) = service.call("POST", "/v1/conversations/k/warm", None).await;
    assert_eq!(status, 502, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("upstream 401: set ANTHROPIC_API_KEY"),
        "{message}"
    );
    assert_eq!(service.state("k").await["lastError"], json!(message));
}

#[tokio::test]
async fn a_database_in_a_new_folder_is_created() {
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("new/deeper/warming.db");
    let service = Service::start_with(dir.path(), &db, &standin.url(), &[], Some("k")).await;
    service.enable("c", 60_000).await;
    assert!(db.is_file());
}

#[tokio::test]
async fn history_names_the_backend_that_answered() {
    let standin = Standin::start(StandinOptions {
        backend_id: "replica-9".into(),
        ..StandinOptions::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), &standin.url(), &[]).await;
    service.turn_settled("b", &anthropic_request("b")).await;
    // The very first warm: no backend was known before it answered.
    let (status, record) = service.call("POST", "/v1/conversations/b/warm", None).await;
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["backend"], "replica-9");
    let (_, history) = service
        .call("GET", "/v1/conversations/b/history", None)
        .await;
    assert_eq!(history["history"][0]["backend"], "replica-9");
}

#[tokio::test]
async fn a_deleted_conversation_is_gone_from_memory_list_and_disk() {
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), &standin.url(), &[]).await;
    for id in ["gone", "kept"] {
        service.turn_settled(id, &anthropic_request(id)).await;
        service.enable(id, 60_000).await;
        let (status, _) = service
            .call("POST", &format!("/v1/conversations/{id}/warm"), None)
            .await;
        assert_eq!(status, 200);
    }
    let mut surface = service.surface().await;
    surface.subscribe("gone").await;
    let (status, answer) = service.call("DELETE", "/v1/conversations/gone", None).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["known"], false);
    assert_eq!(answer["nextWarmAt"], Value::Null);
    let pushed = surface.until(5, |m| m["type"] == "update").await;
    assert_eq!(pushed["state"]["known"], false);

    let ids = |list: Value| -> Vec<String> {
        list["conversations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["conversationId"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        ids(service.call("GET", "/v1/conversations", None).await.1),
        ["kept"]
    );
    let (_, history) = service
        .call("GET", "/v1/conversations/gone/history", None)
        .await;
    assert_eq!(history["history"], json!([]));

    // Gone from disk too: a restart does not bring it back.
    assert!(service.terminate().success());
    let service = Service::start(dir.path(), &standin.url(), &[]).await;
    assert_eq!(
        ids(service.call("GET", "/v1/conversations", None).await.1),
        ["kept"]
    );
    assert_eq!(service.state("gone").await["known"], false);
}

/// The README's shell snippets that call the API run as written against a
/// server (here on a free port instead of 8517) and get 2xx answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_curl_examples_run_as_written() {
    let Ok(curl) = std::process::Command::new("curl").arg("--version").output() else {
        assert!(
            std::env::var_os("WARMING_REQUIRE_CURL").is_none(),
            "curl is required here but not installed"
        );
        eprintln!("skipping: no curl");
        return;
    };
    assert!(curl.status.success());
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), &standin.url(), &[]).await;
    let readme = include_str!("../../README.md");
    let blocks = readme_curl_blocks(readme);
    assert!(!blocks.is_empty(), "the README has no curl example");
    for block in blocks {
        let script = format!(
            "set -e\ncurl() {{ command curl --fail-with-body --silent --show-error \"$@\"; echo; }}\n{}",
            block.replace("localhost:8517", &service.addr.to_string())
        );
        let output = tokio::task::spawn_blocking(move || {
            std::process::Command::new("sh")
                .args(["-c", &script])
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        assert!(
            output.status.success(),
            "{block}\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // What they did: a settled turn with a template, warming on.
    let state = service.state("c1").await;
    assert_eq!(state["enabled"], true);
    assert!(state["nextWarmAt"].as_u64().unwrap() > now_ms());
    // And the template they stored is one a provider accepts.
    let (status, record) = service
        .call("POST", "/v1/conversations/c1/warm", None)
        .await;
    assert_eq!(status, 200, "{record}");
}

/// The README's `sh` blocks that are curl calls, as written.
fn readme_curl_blocks(readme: &str) -> Vec<&str> {
    readme
        .split("```sh\n")
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .filter(|block| block.contains("curl ") && block.contains("localhost:8517"))
        .collect()
}

#[tokio::test]
async fn warming_survives_a_restart_at_the_defaults_without_a_new_turn() {
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), &standin.url(), &[]).await;
    service.turn_settled("r", &anthropic_request("r")).await;
    service.enable("r", 300).await;
    eventually(5, "a first warm", || async {
        (service.state("r").await["warmCount"].as_u64() >= Some(1)).then_some(())
    })
    .await;
    assert!(service.terminate().success());
    let before = standin.warms().len();
    let service = Service::start(dir.path(), &standin.url(), &[]).await;
    eventually(5, "warms after the restart", || async {
        (standin.warms().len() >= before + 2).then_some(())
    })
    .await;
    let state = service.state("r").await;
    assert_eq!(state["policy"], "fixed");
    assert_eq!(state["stoppedReason"], Value::Null);
}

#[tokio::test]
async fn the_list_comes_a_page_at_a_time_with_filters() {
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), &standin.url(), &[]).await;
    for i in 0..7 {
        let id = format!("p{i}");
        service.turn_settled(&id, &anthropic_request(&id)).await;
        if i % 2 == 0 {
            service.enable(&id, 60_000).await;
        }
    }
    let mut seen = Vec::new();
    let mut path = "/v1/conversations?limit=3".to_owned();
    loop {
        let (status, page) = service.call("GET", &path, None).await;
        assert_eq!(status, 200, "{page}");
        let items = page["conversations"].as_array().unwrap();
        assert!(items.len() <= 3);
        seen.extend(items.iter().map(|c| c["conversationId"].clone()));
        match page["next"].as_str() {
            Some(next) => path = format!("/v1/conversations?limit=3&after={next}"),
            None => break,
        }
    }
    assert_eq!(
        seen,
        (0..7).map(|i| json!(format!("p{i}"))).collect::<Vec<_>>()
    );
    let (_, armed) = service
        .call("GET", "/v1/conversations?armed=true", None)
        .await;
    assert_eq!(armed["conversations"].as_array().unwrap().len(), 4);
    let (_, off) = service
        .call("GET", "/v1/conversations?enabled=false", None)
        .await;
    assert_eq!(off["conversations"].as_array().unwrap().len(), 3);
    let (status, _) = service.call("GET", "/v1/conversations?limit=0", None).await;
    assert_eq!(status, 400);
}
