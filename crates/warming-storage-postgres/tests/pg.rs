//! The PostgreSQL adapter against a real server: `scripts/postgres.sh`
//! starts one and exports `WARMING_POSTGRES_URL`. Without it these tests
//! skip with a message, unless `WARMING_REQUIRE_POSTGRES=1` (CI) makes that
//! a failure. Each test works in a database of its own.

use std::sync::Arc;

use serde_json::json;
use warming_core::{
    ConversationId, IntervalLimits, Ledger, ReturnPrior, Settings, Template, Timestamp, Usage,
    WarmOutcome, WarmRecord, WarmTrigger,
};
use warming_service::{Cluster, Route, Store, Write};
use warming_storage_postgres::{PgCluster, PgOptions, PgStorage, SCHEMA_VERSION};
use warming_testkit::postgres::TestDatabase;

/// Opens the adapter on the test database.
fn open(db: &TestDatabase) -> PgStorage {
    PgStorage::open(&db.url, PgOptions::default()).unwrap()
}

fn id(raw: &str) -> ConversationId {
    ConversationId::new(raw).unwrap()
}

fn agent(user: &str) -> Arc<Template> {
    Arc::new(Template::new(
        json!({"model": "claude-sonnet-4-5", "max_tokens": 1024,
            "system": [{"type": "text", "text": "A shared system prompt. ".repeat(400),
                "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": user}]}),
        None,
        Some("/w".into()),
    ))
}

fn write(store: &PgStorage, write: Write) {
    futures_lite(store.submit(write)).unwrap();
}

/// Runs a store acknowledgement to completion on this thread.
fn futures_lite<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(future)
}

fn ledger() -> Ledger {
    Ledger {
        spent_dollars: 0.0042,
        warm_seconds: 0.84,
        misses_avoided: 1,
        saved_dollars: 0.024_15,
        saved_prefill_seconds: 1.4,
        spent_today_dollars: 0.0021,
        saved_today_dollars: 0.024_15,
        day: 20_428,
        replays_avoided: 3,
        retention_premium_dollars: 0.0001,
        engine_seconds_saved: 2.5,
        unrepaid_warms: 4,
    }
}

#[test]
fn what_was_acknowledged_is_restored_and_templates_read_back_byte_for_byte() {
    let Some(db) = TestDatabase::create("pg") else {
        return;
    };
    let alice = agent("alice");
    {
        let store = open(&db);
        let settings = Settings {
            enabled: true,
            interval_ms: 60_000,
            interval_chosen: true,
            policy: None,
            enrolled: false,
        };
        write(
            &store,
            Write::Settings {
                conversation: id("a"),
                settings,
            },
        );
        write(
            &store,
            Write::Template {
                conversation: id("a"),
                template: alice.clone(),
            },
        );
        write(
            &store,
            Write::Schedule {
                conversation: id("a"),
                next_warm_at: Some(Timestamp::from_millis(5_000)),
            },
        );
        write(
            &store,
            Write::Backend {
                conversation: id("a"),
                backend: "replica-2".into(),
            },
        );
        write(
            &store,
            Write::Rhythm {
                conversation: id("a"),
                depth: 3,
                gaps: vec![1_000, 2_000],
                idle_since: Timestamp::from_millis(4_000),
            },
        );
        write(
            &store,
            Write::Meta {
                key: "prior",
                value: "{}".into(),
            },
        );
        write(
            &store,
            Write::Ledger {
                conversation: id("a"),
                ledger: ledger(),
            },
        );
        store.close();
    }
    let store = open(&db);
    let restored = store.load_all(&IntervalLimits::default()).unwrap();
    assert_eq!(restored.len(), 1);
    let r = &restored[0];
    assert!(r.settings.unwrap().enabled);
    assert_eq!(r.next_warm_at, Some(Timestamp::from_millis(5_000)));
    assert_eq!(r.backend.as_deref(), Some("replica-2"));
    assert_eq!((r.depth, r.gaps.clone()), (3, vec![1_000, 2_000]));
    assert_eq!(r.stats.ledger, ledger());
    let t = r.template.as_ref().unwrap();
    assert!(t.is_detached());
    assert_eq!(
        t.cacheable_tokens_estimate(),
        alice.cacheable_tokens_estimate()
    );
    assert_eq!(
        store.template(&id("a")).unwrap().unwrap().request_json(),
        alice.request_json()
    );
    assert_eq!(store.meta("prior").unwrap().as_deref(), Some("{}"));
    assert!(store
        .load(&id("a"), &IntervalLimits::default())
        .unwrap()
        .is_some());
    assert!(store
        .load(&id("nobody"), &IntervalLimits::default())
        .unwrap()
        .is_none());
}

#[test]
fn shared_blocks_are_stored_once_and_a_delete_frees_what_only_it_used() {
    let Some(db) = TestDatabase::create("pg") else {
        return;
    };
    let store = open(&db);
    write(
        &store,
        Write::Template {
            conversation: id("a"),
            template: agent("alice"),
        },
    );
    write(
        &store,
        Write::Template {
            conversation: id("b"),
            template: agent("bob"),
        },
    );
    assert_eq!(db.query_i64("SELECT COUNT(*) FROM template_blocks"), 3);
    write(
        &store,
        Write::Delete {
            conversation: id("a"),
        },
    );
    assert_eq!(db.query_i64("SELECT COUNT(*) FROM template_blocks"), 2);
    write(
        &store,
        Write::Delete {
            conversation: id("b"),
        },
    );
    assert_eq!(db.query_i64("SELECT COUNT(*) FROM template_blocks"), 0);
    assert_eq!(db.query_i64("SELECT COUNT(*) FROM conversations"), 0);
}

#[test]
fn history_is_capped_newest_first_and_goes_with_its_conversation() {
    let Some(db) = TestDatabase::create("pg") else {
        return;
    };
    let store = PgStorage::open(
        &db.url,
        PgOptions {
            history_cap: 3,
            ..PgOptions::default()
        },
    )
    .unwrap();
    for i in 0..5u64 {
        let record = WarmRecord {
            conversation_id: id("h"),
            due_at: Timestamp::from_millis(1_000 * i),
            started_at: Timestamp::from_millis(1_000 * i + 1),
            finished_at: Timestamp::from_millis(1_000 * i + 9),
            trigger: WarmTrigger::Scheduled,
            outcome: WarmOutcome::Hit,
            expired: false,
            usage: Some(Usage::anthropic(3, 5_000 + i, 0)),
            pct: Some(99.9),
            expected_pct: Some(100.0),
            backend: Some(Arc::from("b")),
            error: None,
            kind: None,
            refreshes: None,
        };
        store.submit_behind(Write::Warm(record));
    }
    futures_lite(store.flush()).unwrap();
    let history = store.history(&id("h"), 10).unwrap();
    assert_eq!(history.len(), 3);
    assert_eq!(history[0].usage.unwrap().cache_read_tokens, 5_004);
    assert_eq!(history[0].due_at, Timestamp::from_millis(4_000));
    let restored = store
        .load(&id("h"), &IntervalLimits::default())
        .unwrap()
        .unwrap();
    assert_eq!(restored.stats.warm_count, 5);
    write(
        &store,
        Write::Delete {
            conversation: id("h"),
        },
    );
    assert!(store.history(&id("h"), 10).unwrap().is_empty());
}

/// A record of `trigger`/`outcome` for `conversation` at second `at`.
fn record(conversation: &str, at: u64, trigger: WarmTrigger, outcome: WarmOutcome) -> WarmRecord {
    let t = |ms: u64| Timestamp::from_millis(1_000 * at + ms);
    let failed = outcome == WarmOutcome::Failed;
    let usage = (!failed).then(|| Usage::anthropic(3, 4_000 + at, 0));
    WarmRecord {
        conversation_id: id(conversation),
        due_at: t(0),
        started_at: t(1),
        finished_at: t(9),
        trigger,
        outcome,
        expired: false,
        usage,
        pct: usage.and_then(|u| u.cache_pct()),
        expected_pct: usage.and_then(|u| u.retention_pct()),
        backend: Some(Arc::from("b")),
        error: failed.then(|| Arc::from(format!("failure at {at}").as_str())),
        kind: None,
        refreshes: None,
    }
}

#[test]
fn a_busy_writers_warms_leave_the_same_rows_as_one_write_at_a_time() {
    let Some(db) = TestDatabase::create("pg") else {
        return;
    };
    let store = open(&db);
    let (hit, failed) = (WarmOutcome::Hit, WarmOutcome::Failed);
    let (scheduled, turn) = (WarmTrigger::Scheduled, WarmTrigger::Turn);
    // Two conversations' warms, failures, turns and schedules interleaved,
    // with a settings write in the middle (which ends a run).
    let writes = |p: &str| {
        let (a, b) = (format!("{p}a"), format!("{p}b"));
        let at = |c: &str, s: u64| Write::Schedule {
            conversation: id(c),
            next_warm_at: Some(Timestamp::from_millis(s)),
        };
        vec![
            Write::Warm(record(&a, 1, scheduled, hit)),
            at(&a, 10),
            Write::Warm(record(&b, 2, scheduled, hit)),
            at(&b, 20),
            Write::Settings {
                conversation: id(&b),
                settings: Settings {
                    enabled: true,
                    interval_ms: 60_000,
                    interval_chosen: true,
                    policy: None,
                    enrolled: false,
                },
            },
            Write::Warm(record(&a, 3, scheduled, failed)),
            Write::Warm(record(&b, 4, scheduled, failed)),
            Write::Warm(record(&a, 5, turn, hit)),
            Write::Warm(record(&a, 6, scheduled, hit)),
            Write::Ledger {
                conversation: id(&a),
                ledger: Ledger {
                    misses_avoided: 1,
                    ..Ledger::default()
                },
            },
            at(&a, 30),
            Write::Ledger {
                conversation: id(&a),
                ledger: Ledger {
                    misses_avoided: 2,
                    ..Ledger::default()
                },
            },
            Write::Warm(record(&b, 7, turn, hit)),
        ]
    };
    for w in writes("one-") {
        write(&store, w);
    }
    for w in writes("run-") {
        store.submit_behind(w);
    }
    futures_lite(store.flush()).unwrap();

    let limits = IntervalLimits::default();
    let stats = |c: &str| store.load(&id(c), &limits).unwrap().unwrap();
    let history = |c: &str| store.history(&id(c), 10).unwrap();
    let a = stats("run-a");
    assert_eq!(
        a.stats.warm_count, 2,
        "two warms answered; a turn is not a warm"
    );
    assert_eq!(a.stats.last_warm_at, Some(Timestamp::from_millis(6_009)));
    assert_eq!(
        a.stats.last_error, None,
        "a warm after the failure clears it"
    );
    assert_eq!(a.next_warm_at, Some(Timestamp::from_millis(30)));
    assert_eq!(a.stats.ledger.misses_avoided, 2, "the last ledger wins");
    let b = stats("run-b");
    assert_eq!(b.stats.warm_count, 1);
    assert_eq!(b.stats.last_error.as_deref(), Some("failure at 4"));
    assert_eq!(b.next_warm_at, Some(Timestamp::from_millis(20)));
    let seconds = |h: Vec<WarmRecord>| {
        h.iter()
            .map(|r| r.due_at.as_millis() / 1_000)
            .collect::<Vec<_>>()
    };
    assert_eq!(seconds(history("run-a")), [6, 5, 3, 1], "newest first");
    assert_eq!(seconds(history("run-b")), [7, 4, 2]);
    for c in ["a", "b"] {
        let (one, run) = (stats(&format!("one-{c}")), stats(&format!("run-{c}")));
        assert_eq!(one.stats, run.stats, "{c}'s stats");
        assert_eq!(one.next_warm_at, run.next_warm_at, "{c}'s schedule");
        assert_eq!(one.settings, run.settings, "{c}'s settings");
        let strip = |h: Vec<WarmRecord>| {
            h.into_iter()
                .map(|r| (r.due_at, r.trigger, r.outcome, r.usage, r.pct, r.error))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            strip(history(&format!("one-{c}"))),
            strip(history(&format!("run-{c}"))),
            "{c}'s history"
        );
    }
}

#[test]
fn history_past_the_cap_is_trimmed_as_it_grows_and_never_read() {
    let Some(db) = TestDatabase::create("pg") else {
        return;
    };
    let store = PgStorage::open(
        &db.url,
        PgOptions {
            history_cap: 40,
            ..PgOptions::default()
        },
    )
    .unwrap();
    for at in 0..200 {
        store.submit_behind(Write::Warm(record(
            "h",
            at,
            WarmTrigger::Scheduled,
            WarmOutcome::Hit,
        )));
    }
    futures_lite(store.flush()).unwrap();
    let history = store.history(&id("h"), 1_000).unwrap();
    assert_eq!(history.len(), 40, "a read returns the cap at most");
    assert_eq!(history[0].due_at, Timestamp::from_millis(199_000));
    let stored = db.query_i64("SELECT COUNT(*) FROM warm_history");
    assert!(
        (40..45).contains(&stored),
        "trimmed every 5 rows (cap / 8), so at most 4 past the cap: {stored} rows"
    );
}

#[test]
fn a_newer_schema_is_refused_and_the_current_one_is_kept() {
    let Some(db) = TestDatabase::create("pg") else {
        return;
    };
    drop(open(&db));
    assert_eq!(
        db.query_i64("SELECT version::bigint FROM warming_schema"),
        i64::from(SCHEMA_VERSION)
    );
    // Opening again changes nothing.
    drop(open(&db));
    db.execute("UPDATE warming_schema SET version = version + 1");
    let refused = PgStorage::open(&db.url, PgOptions::default()).unwrap_err();
    assert!(refused.to_string().contains("newer"), "{refused}");
}

#[test]
fn a_wrong_password_says_so_without_repeating_the_url() {
    let Some(db) = TestDatabase::create("pg") else {
        return;
    };
    // The test server checks passwords over TCP (scripts/postgres.sh): the
    // right user with a wrong password is refused by the server itself.
    let (scheme_user, rest) = db.url.split_once('@').unwrap();
    let user = scheme_user
        .trim_start_matches("postgres://")
        .split(':')
        .next()
        .unwrap();
    let url = format!("postgres://{user}:hunter2@{rest}");
    let refused = PgStorage::open(&url, PgOptions::default()).unwrap_err();
    let message = refused.to_string();
    assert!(
        message.starts_with("cannot connect to PostgreSQL"),
        "{message}"
    );
    assert!(
        message.contains("password authentication failed"),
        "{message}"
    );
    assert!(!message.contains("hunter2"), "{message}");
    // The right password connects.
    assert!(PgStorage::open(&db.url, PgOptions::default()).is_ok());
}

#[test]
fn a_conversation_is_held_by_the_first_instance_asked_and_adopted_when_it_leaves() {
    let Some(db) = TestDatabase::create("pg") else {
        return;
    };
    let store = open(&db);
    let limits = IntervalLimits::default();
    let a = PgCluster::join(&db.url, "http://a.test", 60_000).unwrap();
    let b = PgCluster::join(&db.url, "http://b.test", 60_000).unwrap();
    let x = id("x");
    assert_eq!(a.route(&x).unwrap(), Route::Here);
    assert_eq!(b.route(&x).unwrap(), Route::Peer("http://a.test".into()));
    assert_eq!(a.route(&x).unwrap(), Route::Here);
    let settings = Settings {
        enabled: true,
        ..Settings::defaults(&limits)
    };
    write(
        &store,
        Write::Settings {
            conversation: x.clone(),
            settings,
        },
    );
    // A lives: nothing of it is B's to adopt.
    assert!(b.adopt(100, &limits).unwrap().is_empty());
    a.leave();
    assert!(!a.renew().unwrap(), "a lease given back cannot be renewed");
    let adopted = b.adopt(100, &limits).unwrap();
    assert_eq!(adopted.len(), 1);
    assert_eq!(adopted[0].conversation, x);
    assert!(adopted[0].settings.unwrap().enabled);
    b.forget(&x);
    assert_eq!(b.route(&x).unwrap(), Route::Here);
    assert!(b.renew().unwrap());
    // A restarted at the same address holds nothing of its predecessor's.
    let a2 = PgCluster::join(&db.url, "http://b.test", 60_000).unwrap();
    assert_eq!(
        a2.adopt(100, &limits).unwrap().len(),
        1,
        "b's row was replaced"
    );
}

#[test]
fn a_page_lists_every_instances_conversations_in_id_order_with_who_holds_them() {
    let Some(db) = TestDatabase::create("pg") else {
        return;
    };
    let store = open(&db);
    let limits = IntervalLimits::default();
    let a = PgCluster::join(&db.url, "http://a.test", 60_000).unwrap();
    let b = PgCluster::join(&db.url, "http://b.test", 60_000).unwrap();
    let on = Settings {
        enabled: true,
        ..Settings::defaults(&limits)
    };
    for (raw, holder, enabled, next) in [
        ("c", &a, true, Some(9_000)),
        ("a", &b, true, None),
        ("b", &a, false, None),
        ("d", &b, false, None),
    ] {
        assert_eq!(holder.route(&id(raw)).unwrap(), Route::Here);
        let settings = Settings { enabled, ..on };
        write(
            &store,
            Write::Settings {
                conversation: id(raw),
                settings,
            },
        );
        write(
            &store,
            Write::Schedule {
                conversation: id(raw),
                next_warm_at: next.map(Timestamp::from_millis),
            },
        );
    }
    let page = |after: Option<&str>, limit: usize, filter: warming_core::ListFilter| {
        a.page(after.map(id).as_ref(), limit, filter, &limits)
            .unwrap()
            .into_iter()
            .map(|(r, mine)| (r.conversation.as_str().to_owned(), mine))
            .collect::<Vec<_>>()
    };
    let all = warming_core::ListFilter::default();
    let owned = |pairs: &[(&str, bool)]| {
        pairs
            .iter()
            .map(|(c, m)| ((*c).to_owned(), *m))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        page(None, 3, all.clone()),
        owned(&[("a", false), ("b", true), ("c", true)])
    );
    assert_eq!(page(Some("c"), 3, all), owned(&[("d", false)]));
    let enabled = warming_core::ListFilter {
        enabled: Some(true),
        ..Default::default()
    };
    assert_eq!(page(None, 10, enabled), owned(&[("a", false), ("c", true)]));
    let armed = warming_core::ListFilter {
        armed: true,
        ..Default::default()
    };
    assert_eq!(page(None, 10, armed.clone()), owned(&[("c", true)]));
    // Why a warm stopped is the holder's to know: stopped reads "on,
    // nothing scheduled" here.
    let stopped = warming_core::ListFilter {
        stopped: true,
        ..Default::default()
    };
    assert_eq!(page(None, 10, stopped), owned(&[("a", false)]));
    let search = warming_core::ListFilter {
        id_contains: Some("d".into()),
        ..Default::default()
    };
    assert_eq!(page(None, 10, search), owned(&[("d", false)]));
    let stored = a.page(Some(&id("b")), 1, armed, &limits).unwrap();
    assert_eq!(
        stored[0].0.next_warm_at,
        Some(Timestamp::from_millis(9_000))
    );
}

#[test]
fn instances_claiming_the_same_conversations_at_once_each_win_different_ones() {
    let Some(db) = TestDatabase::create("pg") else {
        return;
    };
    drop(open(&db));
    let ids: Vec<ConversationId> = (0..300).map(|i| id(&format!("c{i}"))).collect();
    let claims: Vec<Vec<Route>> = std::thread::scope(|scope| {
        let handles: Vec<_> = ["http://one.test", "http://two.test", "http://three.test"]
            .into_iter()
            .map(|url| {
                let (ids, db_url) = (&ids, &db.url);
                scope.spawn(move || {
                    let me = PgCluster::join(db_url, url, 60_000).unwrap();
                    ids.iter().map(|x| me.route(x).unwrap()).collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, x) in ids.iter().enumerate() {
        let here = claims.iter().filter(|c| c[i] == Route::Here).count();
        assert_eq!(
            here,
            1,
            "{x}: {:?}",
            claims.iter().map(|c| &c[i]).collect::<Vec<_>>()
        );
    }
}

#[test]
fn what_each_instance_learns_of_returns_is_added_to_the_prior_they_share() {
    let Some(db) = TestDatabase::create("pg") else {
        return;
    };
    drop(open(&db));
    let a = PgCluster::join(&db.url, "http://a.test", 60_000).unwrap();
    let b = PgCluster::join(&db.url, "http://b.test", 60_000).unwrap();
    let mut learned = ReturnPrior::default();
    learned.observe_turn(1);
    learned.observe_return(1, 30_000);
    assert_eq!(a.merge_prior(&learned).unwrap().turns[0], 1);
    let mut more = ReturnPrior::default();
    more.observe_turn(1);
    more.observe_turn(2);
    let total = b.merge_prior(&more).unwrap();
    assert_eq!(
        (total.turns[0], total.turns[1], total.returns[0]),
        (2, 1, 1)
    );
    // A new instance starts from the total (what `warming serve` restores).
    let store = open(&db);
    let shared = ReturnPrior::from_json(&store.meta(warming_service::PRIOR_KEY).unwrap().unwrap());
    assert_eq!(shared, total);
}
