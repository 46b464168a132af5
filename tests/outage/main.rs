//! The database goes away under a running instance, as a managed
//! PostgreSQL's upgrade or failover makes it: every connection dropped, the
//! server down for seconds (`scripts/postgres.sh restart`). The instance
//! rides through: writes are refused with a retryable 503 while it is away
//! (never a 500, never a 2xx for a write that was not stored), it keeps
//! running, and once the database is back its writes and warms go on.
//!
//! A test binary of its own, its tests one at a time: the restart drops
//! every test's connections, and the socket flood (`floods`) holds the
//! machine's ports and cores.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use warming_testkit::postgres::TestDatabase;
use warming_testkit::{Standin, StandinOptions};

#[path = "../e2e/support/mod.rs"]
mod support;

use support::{anthropic_request, eventually, Service, TEST_KEY};

mod floods;

/// How long the database is down.
const OUTAGE: Duration = Duration::from_secs(3);

/// Held by each test for its whole run: each restarts the one database
/// server, which would cut the other's connections mid-test.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_rides_through_a_database_restart() {
    let _alone = ONE_AT_A_TIME.lock().await;
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

/// Conversations across the three instances of the cluster test below.
const CLUSTER_CONVERSATIONS: usize = 60;
/// Their interval: short, so the outage spans many due warms.
const CLUSTER_INTERVAL_MS: u64 = 2_000;
/// The instances' lease: a tenth of the outage, so every lease lapses.
const CLUSTER_LEASE_MS: u64 = 3_000;
/// How long the database is down under the cluster.
const LONG_OUTAGE: Duration = Duration::from_secs(30);

/// A request naming its conversation, so each warm says whose it is.
fn tagged_request(id: &str) -> serde_json::Value {
    json!({"model": "claude-test", "max_tokens": 16, "system": [{"type": "text",
        "text": format!("conv={id}; be brief"), "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "hi"}]})
}

/// Warm arrival times (epoch ms) by conversation, from the stand-in.
fn warms_by_conversation(standin: &Standin) -> std::collections::HashMap<String, Vec<u64>> {
    let mut by: std::collections::HashMap<String, Vec<u64>> = std::collections::HashMap::new();
    for warm in standin.warms() {
        if let Some(rest) = warm.body.split("conv=").nth(1) {
            let id = rest.split(';').next().unwrap_or_default().to_owned();
            by.entry(id).or_default().push(warm.received_at_ms);
        }
    }
    for times in by.values_mut() {
        times.sort_unstable();
    }
    by
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_ride_through_a_30_s_database_outage() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let Some(db) = TestDatabase::create("outage_cluster") else {
        return;
    };
    let standin = Standin::start(StandinOptions {
        ttl: Duration::from_secs(600),
        ..StandinOptions::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lease = CLUSTER_LEASE_MS.to_string();
    let flags = ["--lease-ms", lease.as_str(), "--max-idle", "0"];
    let mut services = Vec::new();
    for _ in 0..3 {
        let db = Path::new(&db.url);
        services.push(
            Service::start_with(dir.path(), db, &standin.url(), &flags, Some(TEST_KEY)).await,
        );
    }
    let ids: Vec<String> = (0..CLUSTER_CONVERSATIONS)
        .map(|i| format!("out-{i}"))
        .collect();
    for (i, id) in ids.iter().enumerate() {
        let service = &services[i % 3];
        let path = format!("/v1/conversations/{id}/turn-settled");
        let (status, body) = service
            .call("POST", &path, Some(json!({"request": tagged_request(id)})))
            .await;
        assert_eq!(status, 200, "{body}");
        service.enable(id, CLUSTER_INTERVAL_MS).await;
    }
    eventually(
        15,
        "every conversation warmed before the outage",
        || async {
            let by = warms_by_conversation(&standin);
            ids.iter().all(|id| by.contains_key(id)).then_some(())
        },
    )
    .await;

    // The database goes away for LONG_OUTAGE while a client keeps changing
    // every conversation's interval through all three instances, each
    // value higher than the last, so the store can only hold the last one
    // acknowledged or a later one.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/postgres.sh");
    let outage = tokio::task::spawn_blocking(move || {
        let status = std::process::Command::new(script)
            .args(["restart", &LONG_OUTAGE.as_secs().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "the database restarted");
    });
    let started = Instant::now();
    let mut acknowledged: Vec<Option<u64>> = vec![None; ids.len()];
    let mut next_value = vec![CLUSTER_INTERVAL_MS; ids.len()];
    let (mut acked, mut refused, mut degraded) = (0, 0, false);
    let mut round = 0;
    // Writes go on for a few seconds after the database is back, so some
    // are acknowledged on each side of the outage.
    let mut back_at: Option<(u64, Instant)> = None;
    while back_at.is_none_or(|(_, at)| at.elapsed() < Duration::from_secs(5)) {
        if back_at.is_none() && outage.is_finished() && started.elapsed() >= LONG_OUTAGE {
            back_at = Some((support::now_ms(), Instant::now()));
        }
        round += 1;
        for (i, id) in ids.iter().enumerate().filter(|(i, _)| i % 10 == round % 10) {
            next_value[i] += 1;
            let service = &services[(i + round) % 3];
            let (status, answer) = service
                .call(
                    "PUT",
                    &format!("/v1/conversations/{id}/settings"),
                    Some(json!({"intervalMs": next_value[i]})),
                )
                .await;
            match status {
                200 => {
                    acknowledged[i] = Some(next_value[i]);
                    acked += 1;
                }
                503 => refused += 1,
                other => panic!(
                    "a write during the outage answered {other} after {:?}: {answer}",
                    started.elapsed()
                ),
            }
        }
        if !degraded {
            let (_, health) = services[round % 3].call("GET", "/healthz", None).await;
            let (ready, _) = services[round % 3].call("GET", "/readyz", None).await;
            degraded = health["status"] == "degraded"
                && health["database"]
                    .as_str()
                    .is_some_and(|d| d.starts_with("unreachable since"))
                && ready == 503;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    outage.await.unwrap();
    let back_at = back_at.unwrap().0;
    assert!(
        refused > 0,
        "no write was refused: the database never went away"
    );
    assert!(
        degraded,
        "/healthz never said the database was away, or /readyz never answered 503"
    );
    for service in &mut services {
        assert!(
            service.wait(0).is_none(),
            "an instance exited during the outage"
        );
    }

    // Back: every instance ready again, and every conversation warmed
    // within a lease (and an interval) of the database's return.
    for service in &services {
        eventually(
            CLUSTER_LEASE_MS / 1000 + 10,
            "ready after the outage",
            || async {
                let (status, body) = service.call("GET", "/readyz", None).await;
                (status == 200).then_some(body)
            },
        )
        .await;
    }
    let resumed = eventually(20, "every conversation warmed after the outage", || async {
        let by = warms_by_conversation(&standin);
        let firsts: Option<Vec<u64>> = ids
            .iter()
            .map(|id| by.get(id)?.iter().copied().find(|&t| t >= back_at))
            .collect();
        firsts
    })
    .await;
    let slowest = resumed.iter().map(|t| t - back_at).max().unwrap();
    if std::env::var_os("WARMING_SHOW_RESUME").is_some() {
        let mut offsets: Vec<u64> = resumed.iter().map(|t| t - back_at).collect();
        offsets.sort_unstable();
        eprintln!("resumed after (ms): {offsets:?}");
    }
    let bound = CLUSTER_LEASE_MS + 2 * CLUSTER_INTERVAL_MS + 2_000;
    assert!(
        slowest <= bound,
        "a conversation's first warm came {slowest} ms after the database was back (bound {bound})"
    );
    // No conversation warmed by two instances: no two warms of one
    // conversation closer than half an interval.
    tokio::time::sleep(Duration::from_millis(3 * CLUSTER_INTERVAL_MS)).await;
    let by = warms_by_conversation(&standin);
    let closest = by
        .iter()
        .flat_map(|(id, t)| t.windows(2).map(move |w| (w[1] - w[0], id.clone())))
        .min()
        .unwrap();
    assert!(
        closest.0 >= CLUSTER_INTERVAL_MS / 2,
        "{} was warmed twice {} ms apart; its warms, ms from the database's return: {:?}",
        closest.1,
        closest.0,
        by[&closest.1]
            .iter()
            .map(|&t| i64::try_from(t).unwrap() - i64::try_from(back_at).unwrap())
            .collect::<Vec<_>>()
    );

    // Nothing acknowledged was lost: after every instance stopped, a new
    // one reads, for each conversation, the last value acknowledged or a
    // later one.
    for service in services {
        service.terminate();
    }
    let db_path = Path::new(&db.url);
    let after =
        Service::start_with(dir.path(), db_path, &standin.url(), &flags, Some(TEST_KEY)).await;
    for (i, id) in ids.iter().enumerate() {
        let stored = after.state(id).await["intervalMs"].as_u64().unwrap();
        if let Some(acked) = acknowledged[i] {
            assert!(
                stored >= acked,
                "{id}: acknowledged {acked}, stored {stored}"
            );
        }
    }
    eprintln!(
        "outage of {} s under 3 instances: {acked} writes acknowledged, {refused} refused (503), \
         0 lost; every conversation warmed again within {slowest} ms of the database's return",
        LONG_OUTAGE.as_secs()
    );
}
