//! The database goes away under a running instance, as a managed
//! PostgreSQL's upgrade or failover makes it: every connection dropped, the
//! server down for seconds (`scripts/postgres.sh restart`). The instance
//! rides through: writes are refused with a retryable 503 while it is away
//! (never a 500, never a 2xx for a write that was not stored), it keeps
//! running, and once the database is back its writes and warms go on.
//!
//! A test binary of its own: the restart drops every test's connections.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use warming_testkit::postgres::TestDatabase;
use warming_testkit::{Standin, StandinOptions};

#[path = "../e2e/support/mod.rs"]
mod support;

use support::{anthropic_request, eventually, Service, TEST_KEY};

/// How long the database is down.
const OUTAGE: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_rides_through_a_database_restart() {
    let Some(db) = TestDatabase::create("outage") else {
        return;
    };
    let standin = Standin::start(StandinOptions {
        ttl: Duration::from_secs(600),
        ..StandinOptions::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut service = Service::start_with(
        dir.path(),
        Path::new(&db.url),
        &standin.url(),
        &[],
        Some(TEST_KEY),
    )
    .await;
    service.turn_settled("o", &anthropic_request("o")).await;
    service.enable("o", 300).await;
    eventually(10, "warms before the outage", || async {
        (service.state("o").await["warmCount"].as_u64() >= Some(2)).then_some(())
    })
    .await;

    // Down for OUTAGE while a client keeps changing the interval.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/postgres.sh");
    let outage = tokio::task::spawn_blocking(move || {
        let status = std::process::Command::new(script)
            .args(["restart", &OUTAGE.as_secs().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "the database restarted");
    });
    let started = Instant::now();
    let (mut acknowledged, mut refused) = (None, 0);
    let mut interval = 400;
    while !outage.is_finished() || started.elapsed() < OUTAGE {
        interval += 1;
        let (status, answer) = service
            .call(
                "PUT",
                "/v1/conversations/o/settings",
                Some(json!({"intervalMs": interval})),
            )
            .await;
        match status {
            200 => acknowledged = Some(interval),
            503 => {
                assert_eq!(answer["error"]["code"], "storage_unavailable", "{answer}");
                refused += 1;
            }
            other => panic!("a write during the outage answered {other}: {answer}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    outage.await.unwrap();
    assert!(
        refused > 0,
        "no write was refused: the database never went away"
    );
    // A refused write changed nothing: memory holds the last one stored.
    assert_eq!(
        service.state("o").await["intervalMs"],
        json!(acknowledged.unwrap()),
        "an unstored write changed the state"
    );

    // Back: writes are stored again, within a few seconds.
    let back = eventually(15, "a write stored after the outage", || async {
        let (status, state) = service
            .call(
                "PUT",
                "/v1/conversations/o/settings",
                Some(json!({"intervalMs": 300})),
            )
            .await;
        (status == 200).then_some(state)
    })
    .await;
    assert_eq!(back["intervalMs"], 300);
    assert!(service.wait(0).is_none(), "the instance is still running");
    let (status, _) = service.call("GET", "/healthz", None).await;
    assert_eq!(status, 200);
    // Warming goes on: new warms after the database came back.
    let before = service.state("o").await["warmCount"].as_u64().unwrap();
    eventually(15, "warms after the outage", || async {
        (service.state("o").await["warmCount"].as_u64() >= Some(before + 2)).then_some(())
    })
    .await;
    // What was acknowledged is on disk: a restart reads the last one.
    service.terminate();
    let restarted = Service::start_with(
        dir.path(),
        Path::new(&db.url),
        &standin.url(),
        &[],
        Some(TEST_KEY),
    )
    .await;
    assert_eq!(restarted.state("o").await["intervalMs"], 300);
}
