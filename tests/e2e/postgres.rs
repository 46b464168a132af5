//! `warming serve --db postgres://...` against a real PostgreSQL server
//! (`scripts/postgres.sh`; skipped with a message without one unless
//! `WARMING_REQUIRE_POSTGRES=1`): what a person does has the same effect as
//! on SQLite, and survives a restart.

use std::path::Path;

use warming_testkit::postgres::TestDatabase;
use warming_testkit::{Standin, StandinOptions};

use crate::support::{anthropic_request, eventually, Service, TEST_KEY};

#[tokio::test]
async fn a_conversation_enabled_on_postgres_warms_and_keeps_warming_after_a_restart() {
    let Some(db) = TestDatabase::create("e2e_restart") else {
        return;
    };
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = Path::new(&db.url);
    let service = Service::start_with(dir.path(), url, &standin.url(), &[], Some(TEST_KEY)).await;
    service
        .turn_settled("pg-1", &anthropic_request("pg-1"))
        .await;
    service.enable("pg-1", 400).await;
    let first = eventually(10, "a warm", || async {
        let warms = standin.warms();
        (!warms.is_empty()).then_some(warms)
    })
    .await;
    assert_eq!(first[0].model.as_deref(), Some("claude-test"));
    // A graceful stop gives the instance's hold on its conversations back,
    // so the next one (on another port) takes them over at once.
    assert!(service.terminate().success());

    // Restarted on the same database: still enabled, still warming, with
    // its history, and the template read back from PostgreSQL's blocks.
    let before = standin.warms().len();
    let service = Service::start_with(dir.path(), url, &standin.url(), &[], Some(TEST_KEY)).await;
    let state = service.state("pg-1").await;
    assert_eq!(state["enabled"], true);
    assert_eq!(state["intervalMs"], 400);
    eventually(10, "warms after the restart", || async {
        (standin.warms().len() >= before + 2).then_some(())
    })
    .await;
    let (_, history) = service
        .call("GET", "/v1/conversations/pg-1/history?limit=5", None)
        .await;
    assert!(
        history["history"].as_array().unwrap().len() >= 2,
        "{history}"
    );
    // The log never repeats the URL (it may carry a password).
    let log = std::fs::read_to_string(&service.log).unwrap();
    assert!(!log.contains(&db.url), "the log repeats the database URL");
}
