//! Three `warming serve` processes on one PostgreSQL database
//! (`scripts/postgres.sh`; skipped with a message without one unless
//! `WARMING_REQUIRE_POSTGRES=1`) and one provider stand-in: each due warm
//! fires once, calls landing on any instance act on the one holding the
//! conversation, and a killed instance's conversations keep warming.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};
use warming_testkit::postgres::TestDatabase;
use warming_testkit::{Standin, StandinOptions};

// A test binary of its own: cargo runs test binaries one after another, so
// this load (three instances, 10 000 conversations) never slows the
// timing-sensitive end-to-end tests.
#[path = "../e2e/support/mod.rs"]
mod support;

use support::{now_ms, Service, TEST_KEY};

/// Enough conversations that the three instances share real work; few
/// enough that on CI's 2 cores (three instances, PostgreSQL and the stand-in
/// on them) arming does not outlast the interval many times over: at 10 000
/// the arming took ~280 s against a 30 s interval, and the warms it set off
/// starved lease renewals into the very takeovers this test counts.
const CONVERSATIONS: usize = 3_000;
const INTERVAL_MS: u64 = 30_000;
const LEASE_MS: u64 = 1_500;

/// A small request naming its conversation in the system prompt, so each
/// warm the stand-in sees says whose it is.
fn request(id: &str) -> Value {
    json!({"model": "claude-test", "max_tokens": 16, "system": [{"type": "text",
        "text": format!("conv={id}; be brief"), "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "hi"}]})
}

/// Warm arrival times by conversation, from the stand-in's log.
fn warms_by_conversation(standin: &Standin) -> HashMap<String, Vec<u64>> {
    let mut by: HashMap<String, Vec<u64>> = HashMap::new();
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

/// The closest two warms of any conversation, and whose they were: two
/// instances firing one warm would show as two warms far closer than the
/// interval.
fn closest_warms(by: &HashMap<String, Vec<u64>>) -> Option<(u64, String)> {
    by.iter()
        .flat_map(|(id, times)| times.windows(2).map(move |w| (w[1] - w[0], id.clone())))
        .min()
}

async fn call(
    http: &reqwest::Client,
    base: &str,
    method: &str,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    // A 503 `holder_unreachable` says to retry (docs/API.md): a client
    // does, a few times, before taking it as the answer.
    let mut attempts = 0;
    loop {
        let response = http
            .request(method.clone(), format!("{base}{path}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let answer = response.json().await.unwrap_or(Value::Null);
        attempts += 1;
        if status != 503 || attempts == 6 {
            return (status, answer);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_fire_each_warm_once_and_take_over_a_killed_ones_conversations() {
    let Some(db) = TestDatabase::create("e2e_cluster") else {
        return;
    };
    let standin = Standin::start(StandinOptions {
        ttl: Duration::from_secs(600),
        ..StandinOptions::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lease = LEASE_MS.to_string();
    let flags = ["--lease-ms", lease.as_str(), "--max-idle", "0"];
    let mut services = Vec::new();
    for _ in 0..3 {
        services.push(
            Service::start_with(
                dir.path(),
                Path::new(&db.url),
                &standin.url(),
                &flags,
                Some(TEST_KEY),
            )
            .await,
        );
    }
    let bases: Vec<String> = services.iter().map(|s| s.url("")).collect();
    let http = reqwest::Client::new();

    // Conversation i settles on instance i % 3 (which claims it) and is
    // enabled through the next one (which forwards the call to it).
    let ids: Vec<String> = (0..CONVERSATIONS).map(|i| format!("cl-{i}")).collect();
    let started_at = now_ms();
    let armed = stream::iter(ids.iter().enumerate())
        .map(|(i, id)| {
            let (http, bases) = (&http, &bases);
            async move {
                let path = format!("/v1/conversations/{id}");
                let (s, body) = call(
                    http,
                    &bases[i % 3],
                    "POST",
                    &format!("{path}/turn-settled"),
                    json!({"request": request(id)}),
                )
                .await;
                assert_eq!(s, 200, "{body}");
                let settings = json!({"enabled": true, "intervalMs": INTERVAL_MS});
                let (s, body) = call(
                    http,
                    &bases[(i + 1) % 3],
                    "PUT",
                    &format!("{path}/settings"),
                    settings,
                )
                .await;
                assert_eq!(s, 200, "{body}");
                assert_eq!(body["enabled"], true, "{body}");
                assert_eq!(body["conversationId"], id.as_str());
            }
        })
        .buffer_unordered(32)
        .count()
        .await;
    assert_eq!(armed, CONVERSATIONS);
    let armed_at = now_ms();
    eprintln!("armed {CONVERSATIONS} in {} ms", armed_at - started_at);

    // Two intervals and a half after the last was armed, however long
    // arming took: every conversation has been warmed at least twice, so
    // every one's spacing is checked, none warmed twice per interval.
    tokio::time::sleep(Duration::from_millis(INTERVAL_MS * 5 / 2)).await;
    let by = warms_by_conversation(&standin);
    let short: Vec<&String> = ids
        .iter()
        .filter(|id| {
            !by.get(*id)
                .is_some_and(|t| t.len() >= 2 && t.iter().any(|&at| at >= armed_at))
        })
        .collect();
    assert!(
        short.is_empty(),
        "{} conversations not warmed twice in two intervals and a half, e.g. {:?}",
        short.len(),
        &short[..short.len().min(5)]
    );
    let (gap, whose) = closest_warms(&by).expect("every conversation has two warms");
    assert!(
        gap >= INTERVAL_MS / 2,
        "{whose} was warmed twice {gap} ms apart"
    );

    // A subscriber on the first instance sees the warms the second and
    // third fire, and its toggle acts where the conversation is held.
    let mut surface = services[0].surface().await;
    let mut warmed_at = HashMap::new();
    for id in ["cl-1", "cl-2"] {
        let first = surface.subscribe(id).await;
        assert_eq!(first["state"]["enabled"], true, "{first}");
        warmed_at.insert(id, first["state"]["lastWarmAt"].as_u64().unwrap());
    }
    for _ in 0..2 {
        let update = surface
            .until(INTERVAL_MS / 1000 + 5, |m| {
                m["type"] == "update"
                    && warmed_at.iter().any(|(id, at)| {
                        m["conversationId"] == *id && m["state"]["lastWarmAt"].as_u64() > Some(*at)
                    })
            })
            .await;
        warmed_at.remove(update["conversationId"].as_str().unwrap());
    }
    assert!(warmed_at.is_empty(), "no update for {warmed_at:?}");
    surface
        .send(
            json!({"type": "invoke", "surfaceId": "cache-warming", "conversationId": "cl-5",
            "action": "set-interval", "payload": 40}),
        )
        .await;
    eventually_interval(&http, &bases[1], "cl-5", 40_000).await;

    // Runtime events naming conversations held by different instances,
    // sent to one: each reaches its holder.
    let started = json!([
        {"type": "turn.started", "threadId": "cl-2"},
        {"type": "turn.started", "threadId": "cl-3"},
    ]);
    let (s, answer) = call(&http, &bases[0], "POST", "/v1/events", started).await;
    assert_eq!((s, &answer["applied"]), (200, &json!(2)), "{answer}");
    for (base, id) in [(&bases[1], "cl-2"), (&bases[2], "cl-3")] {
        let (_, state) = call(
            &http,
            base,
            "GET",
            &format!("/v1/conversations/{id}"),
            Value::Null,
        )
        .await;
        assert_eq!(state["active"], true, "{state}");
    }
    let completed = json!([
        {"type": "turn.completed", "threadId": "cl-2"},
        {"type": "turn.completed", "threadId": "cl-3"},
    ]);
    let (s, answer) = call(&http, &bases[1], "POST", "/v1/events", completed).await;
    assert_eq!((s, &answer["applied"]), (200, &json!(2)), "{answer}");

    // A proxied turn of a conversation the third instance holds, sent to
    // the first: relayed by the holder (the first keeps no copy to warm,
    // which the once-per-interval checks below would catch).
    let proxied = http
        .post(format!("{}/proxy/anthropic/v1/messages", bases[0]))
        .header("x-conversation-id", "cl-8")
        .header("x-api-key", TEST_KEY)
        .json(&request("cl-8"))
        .send()
        .await
        .unwrap();
    assert_eq!(proxied.status(), 200);
    let answer: Value = proxied.json().await.unwrap();
    assert!(
        answer["usage"]["cache_read_input_tokens"].as_u64() > Some(0),
        "{answer}"
    );

    // The list through any instance is the whole cluster's, each
    // conversation once, in id order, paged.
    let listed = list_all(&http, &bases[2], "").await;
    let mut expected: Vec<&str> = ids.iter().map(String::as_str).collect();
    expected.sort_unstable();
    let listed_ids: Vec<&str> = listed
        .iter()
        .map(|c| c["conversationId"].as_str().unwrap())
        .collect();
    assert_eq!(listed_ids, expected, "the cluster-wide list");
    assert!(
        listed.iter().all(|c| c["enabled"] == true),
        "{:?}",
        listed.iter().find(|c| c["enabled"] != true)
    );
    assert!(list_all(&http, &bases[0], "&enabled=false")
        .await
        .is_empty());

    // A state read through any instance is the holder's.
    let (s, state) = call(
        &http,
        &bases[2],
        "GET",
        "/v1/conversations/cl-1",
        Value::Null,
    )
    .await;
    assert_eq!((s, &state["enabled"]), (200, &json!(true)), "{state}");

    // kill -9 the second instance: what it held is warmed by the others
    // within an interval and a lease (plus the restore delay).
    let killed = services.remove(1);
    killed.kill();
    let killed_at = now_ms();
    let bases = [services[0].url(""), services[1].url("")];
    // Meanwhile, closes through an instance that does not hold the
    // conversation stop its warms everywhere: one of each survivor's, and
    // (once the lease lapsed) two of the killed one's.
    let mut closed = Vec::new();
    for (n, id) in ["cl-0", "cl-2"].into_iter().enumerate() {
        closed.push((id, close(&http, &bases[(n + 1) % 2], id).await));
    }
    tokio::time::sleep(Duration::from_millis(LEASE_MS + 500)).await;
    for (n, id) in ["cl-1", "cl-4"].into_iter().enumerate() {
        closed.push((id, close(&http, &bases[n % 2], id).await));
    }
    tokio::time::sleep(Duration::from_millis(INTERVAL_MS + 3_000)).await;
    let by = warms_by_conversation(&standin);
    let unwarmed: Vec<&String> = ids
        .iter()
        .enumerate()
        .filter(|(i, id)| i % 3 == 1 && !closed.iter().any(|(c, _)| c == id))
        .map(|(_, id)| id)
        .filter(|id| {
            !by.get(*id)
                .is_some_and(|t| t.iter().any(|&at| at > killed_at))
        })
        .collect();
    assert!(
        unwarmed.is_empty(),
        "{} of the killed instance's conversations went unwarmed, e.g. {:?}",
        unwarmed.len(),
        &unwarmed[..unwarmed.len().min(5)]
    );
    // The survivors' conversations are still warmed once per interval. The
    // killed instance's may be warmed once more across the lease (its last
    // schedule may not have reached the database: at-least-once, as
    // documented), never more.
    let (survivors, adopted): (HashMap<_, _>, HashMap<_, _>) = by
        .into_iter()
        .partition(|(id, _)| id[3..].parse::<usize>().unwrap() % 3 != 1);
    let (gap, whose) = closest_warms(&survivors).unwrap();
    assert!(
        gap >= INTERVAL_MS / 2,
        "{whose} was warmed twice {gap} ms apart"
    );
    for (id, times) in &adopted {
        let close = times
            .windows(2)
            .filter(|w| w[1] - w[0] < INTERVAL_MS / 2)
            .count();
        assert!(
            close <= 1,
            "{id} was warmed twice per interval more than once: {times:?}"
        );
    }
    let by: HashMap<_, _> = survivors.into_iter().chain(adopted).collect();
    for (id, closed_at) in closed {
        let after: Vec<&u64> = by[id].iter().filter(|&&at| at > closed_at).collect();
        assert!(
            after.is_empty(),
            "{id} was warmed after its close: {after:?}"
        );
    }
}

/// Every conversation listed through the instance at `base` (with the
/// extra query `filter`), page by page.
async fn list_all(http: &reqwest::Client, base: &str, filter: &str) -> Vec<Value> {
    let mut listed = Vec::new();
    let mut path = format!("/v1/conversations?limit=1000{filter}");
    loop {
        let (s, page) = call(http, base, "GET", &path, Value::Null).await;
        assert_eq!(s, 200, "{page}");
        listed.extend(page["conversations"].as_array().unwrap().iter().cloned());
        match page["next"].as_str() {
            Some(next) => path = format!("/v1/conversations?limit=1000{filter}&after={next}"),
            None => return listed,
        }
    }
}

/// Waits until `id`'s interval, read through `base`, is `ms`.
async fn eventually_interval(http: &reqwest::Client, base: &str, id: &str, ms: u64) {
    support::eventually(10, "the interval set through the surface", || async {
        let (_, state) = call(
            http,
            base,
            "GET",
            &format!("/v1/conversations/{id}"),
            Value::Null,
        )
        .await;
        (state["intervalMs"] == ms).then_some(())
    })
    .await;
}

/// Closes `id` through the instance at `base`; when the close answered.
async fn close(http: &reqwest::Client, base: &str, id: &str) -> u64 {
    let path = format!("/v1/conversations/{id}/close");
    let (s, body) = call(http, base, "POST", &path, Value::Null).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["enabled"], false, "{body}");
    now_ms()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_forwarding_header_makes_no_second_holder() {
    let Some(db) = TestDatabase::create("e2e_forged") else {
        return;
    };
    let standin = Standin::start(StandinOptions {
        ttl: Duration::from_secs(600),
        ..StandinOptions::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--lease-ms", "3000", "--max-idle", "0"];
    let mut services = Vec::new();
    for _ in 0..2 {
        services.push(
            Service::start_with(
                dir.path(),
                Path::new(&db.url),
                &standin.url(),
                &flags,
                Some(TEST_KEY),
            )
            .await,
        );
    }
    let http = reqwest::Client::new();
    let (holder, other) = (services[0].url(""), services[1].url(""));
    let settle = json!({"request": request("forged")});
    let (s, _) = call(
        &http,
        &holder,
        "POST",
        "/v1/conversations/forged/turn-settled",
        settle.clone(),
    )
    .await;
    assert_eq!(s, 200);
    let on = json!({"enabled": true, "intervalMs": 1000});
    let (s, _) = call(
        &http,
        &holder,
        "PUT",
        "/v1/conversations/forged/settings",
        on,
    )
    .await;
    assert_eq!(s, 200);
    // A client claiming to be a peer, on the instance that does not hold
    // the conversation: the calls go to the holder all the same.
    let forged = |method: &str, path: &str, body: Value| {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        http.request(method, format!("{other}{path}"))
            .header("x-warming-forwarded", "1")
            .json(&body)
            .send()
    };
    let answer = forged("POST", "/v1/conversations/forged/turn-settled", settle)
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    // Four intervals: one holder warms once an interval, never in pairs.
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    let times = warms_by_conversation(&standin)
        .remove("forged")
        .unwrap_or_default();
    assert!(times.len() >= 3, "{times:?}");
    let closest = times.windows(2).map(|w| w[1] - w[0]).min().unwrap();
    assert!(
        closest >= 500,
        "two holders warmed it {closest} ms apart: {times:?}"
    );
    // Turned off through the forged header: nothing warms it any more.
    let answer = forged(
        "PUT",
        "/v1/conversations/forged/settings",
        json!({"enabled": false}),
    )
    .await
    .unwrap();
    assert_eq!(answer.status(), 200);
    let count = warms_by_conversation(&standin)
        .remove("forged")
        .map_or(0, |t| t.len());
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    let after = warms_by_conversation(&standin)
        .remove("forged")
        .map_or(0, |t| t.len());
    assert!(
        after <= count + 1,
        "still warmed after disable: {count} -> {after}"
    );
}
