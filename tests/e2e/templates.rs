//! Templates kept as blocks: a database written by the previous release
//! (schema 6, whole requests in rows) is migrated at start and warmed from,
//! and the warm is byte for byte the one a fresh settle of the same request
//! sends.

use serde_json::{json, Value};
use warming_testkit::{Standin, StandinOptions};

use crate::support::{eventually, Service};

/// The request the fixture's conversation `fixture-alice` settled, as the
/// release that wrote `tests/fixtures/schema6.db` received it.
fn fixture_request(user: &str) -> Value {
    json!({"model": "claude-sonnet-4-5", "max_tokens": 1024,
        "system": [{"type": "text", "text": "You are the release-6 fixture's agent. ".repeat(200),
            "cache_control": {"type": "ephemeral"}}],
        "tools": [{"name": "bash", "description": "runs a command", "input_schema": {"type": "object"}}],
        "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": "On it."},
            {"role": "user", "content": format!("{user}, please")}]})
}

#[tokio::test]
async fn a_database_of_the_previous_release_is_migrated_and_warmed_from_byte_for_byte() {
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("warming.db");
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/schema6.db"
    );
    std::fs::copy(fixture, &db).unwrap();
    // The fixture's conversations went idle when it was written, more than
    // the idle cap (`--max-idle`, 1 h) ago by now: without the cap they warm.
    let service = Service::start_with(
        dir.path(),
        &db,
        &standin.url(),
        &["--max-idle", "0"],
        Some(crate::support::TEST_KEY),
    )
    .await;
    // Both stored conversations were armed; their warms were due while the
    // service was down, so each fires once, right after the start.
    let restored = eventually(10, "the restored warms", || async {
        let warms = standin.warms();
        (warms.len() >= 2).then_some(warms)
    })
    .await;
    let alice = restored
        .iter()
        .find(|w| w.body.contains("fix the build"))
        .expect("fixture-alice warmed")
        .body
        .clone();
    let state = service.state("fixture-alice").await;
    assert_eq!(state["enabled"], true);
    assert_eq!(state["intervalMs"], 60_000);

    // The same request settled now, and warmed at once: the same bytes.
    service
        .turn_settled("fresh-alice", &fixture_request("fix the build"))
        .await;
    let (status, _) = service
        .call("POST", "/v1/conversations/fresh-alice/warm", None)
        .await;
    assert_eq!(status, 200);
    let fresh = standin.warms().last().unwrap().body.clone();
    assert_eq!(fresh, alice);
    let sent: Value = serde_json::from_str(&alice).unwrap();
    assert_eq!(sent["system"], fixture_request("fix the build")["system"]);

    // The database now keeps the shared system prompt once.
    drop(service);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let (rows_with_request, system_blocks): (i64, i64) = conn
        .query_row(
            "SELECT (SELECT COUNT(*) FROM conversations WHERE request IS NOT NULL),
                    (SELECT COUNT(*) FROM template_blocks WHERE body LIKE '%release-6 fixture%')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(rows_with_request, 0);
    assert_eq!(system_blocks, 1, "three conversations, one system prompt");
}
