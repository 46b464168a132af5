use std::sync::Arc;

use serde_json::json;
use warming_core::{
    IntervalLimits, Ledger, Settings, Template, Timestamp, Usage, WarmOutcome, WarmRecord,
    WarmTrigger,
};
use warming_storage::{Storage, StorageOptions, Write};

use crate::{id, temp_db};

fn record(conv: &str, at: u64, usage: Option<Usage>, error: Option<&str>) -> WarmRecord {
    WarmRecord {
        conversation_id: id(conv),
        due_at: Timestamp::from_millis(at.saturating_sub(3)),
        started_at: Timestamp::from_millis(at),
        finished_at: Timestamp::from_millis(at + 420),
        trigger: WarmTrigger::Scheduled,
        outcome: match (usage, error) {
            (_, Some(_)) => WarmOutcome::Failed,
            (Some(u), None) if u.cache_had_expired() => WarmOutcome::Expired,
            _ => WarmOutcome::Hit,
        },
        expired: usage.is_some_and(|u| u.cache_had_expired()),
        usage,
        pct: usage.and_then(|u| u.cache_pct()),
        expected_pct: usage.and_then(|u| u.retention_pct()),
        backend: Some(Arc::from("replica-2")),
        error: error.map(Arc::from),
        kind: None,
        refreshes: None,
    }
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
fn every_record_survives_a_reopen() {
    let (_dir, path) = temp_db();
    let limits = IntervalLimits::default();
    let template = Arc::new(Template::new(
        json!({"model": "claude", "system": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
               "messages": [{"role": "user", "content": "hi"}], "max_tokens": 512}),
        Some("claude".into()),
        Some("/work".into()),
    ));
    let hit = record("c1", 1_000, Some(Usage::anthropic(3, 4_000, 0)), None);
    let failed = record("c1", 2_000, None, Some("upstream 529: overloaded"));
    {
        let storage = Storage::open(&path, StorageOptions::default()).unwrap();
        let settings = Settings {
            enabled: true,
            interval_ms: 30_000,
            policy: None,
            interval_chosen: true,
            enrolled: false,
        };
        for write in [
            Write::Settings {
                conversation: id("c1"),
                settings,
            },
            Write::Template {
                conversation: id("c1"),
                template: template.clone(),
            },
            Write::Schedule {
                conversation: id("c1"),
                next_warm_at: Some(Timestamp::from_millis(99_000)),
            },
            Write::Backend {
                conversation: id("c1"),
                backend: Arc::from("replica-2"),
            },
            Write::Warm(hit.clone()),
            Write::Rhythm {
                conversation: id("c1"),
                depth: 3,
                gaps: vec![120_000, 450_000],
                idle_since: Timestamp::from_millis(98_000),
            },
            Write::Warm(failed.clone()),
            Write::Ledger {
                conversation: id("c1"),
                ledger: ledger(),
            },
            // A deleted conversation's late ledger does not bring it back.
            Write::Ledger {
                conversation: id("gone"),
                ledger: ledger(),
            },
            Write::Settings {
                conversation: id("c2"),
                settings: Settings {
                    enabled: false,
                    interval_ms: 240_000,
                    policy: None,
                    interval_chosen: true,
                    enrolled: false,
                },
            },
        ] {
            storage.write_blocking(write).unwrap();
        }
    }
    let storage = Storage::open(&path, StorageOptions::default()).unwrap();
    let mut all = storage.load_all(&limits).unwrap();
    all.sort_by(|a, b| a.conversation.cmp(&b.conversation));
    assert_eq!(all.len(), 2);
    let c1 = &all[0];
    assert_eq!(
        c1.settings,
        Some(Settings {
            enabled: true,
            interval_ms: 30_000,
            policy: None,
            interval_chosen: true,
            enrolled: false,
        })
    );
    assert_eq!(c1.idle_since, Some(Timestamp::from_millis(98_000)));
    assert_eq!(c1.template.as_ref(), Some(&*template));
    assert_eq!(c1.next_warm_at, Some(Timestamp::from_millis(99_000)));
    assert_eq!(c1.backend.as_deref(), Some("replica-2"));
    assert_eq!(c1.stats.warm_count, 1);
    assert_eq!(c1.stats.last_pct, hit.pct);
    assert_eq!(c1.stats.last_warm_at, Some(hit.finished_at));
    assert_eq!(
        c1.stats.last_error.as_deref(),
        Some("upstream 529: overloaded")
    );
    assert_eq!((c1.depth, c1.gaps.clone()), (3, vec![120_000, 450_000]));
    assert_eq!(c1.stats.ledger, ledger());
    assert_eq!(all[1].stats.ledger, Ledger::default());
    assert!(all[1].template.is_none());
    assert_eq!((all[1].depth, all[1].gaps.clone()), (0, vec![]));

    let history = storage.history(&id("c1"), 10).unwrap();
    assert_eq!(history, vec![failed, hit]);
    assert_eq!(history[1].latency_ms(), 420);
}

#[test]
fn clearing_a_schedule_stores_null() {
    let (_dir, path) = temp_db();
    let storage = Storage::open(&path, StorageOptions::default()).unwrap();
    storage
        .write_blocking(Write::Schedule {
            conversation: id("c"),
            next_warm_at: Some(Timestamp::from_millis(5)),
        })
        .unwrap();
    storage
        .write_blocking(Write::Schedule {
            conversation: id("c"),
            next_warm_at: None,
        })
        .unwrap();
    let all = storage.load_all(&IntervalLimits::default()).unwrap();
    assert_eq!(all[0].next_warm_at, None);
}

#[test]
fn history_is_capped_per_conversation_newest_kept() {
    let (_dir, path) = temp_db();
    let options = StorageOptions {
        history_cap: 5,
        ..StorageOptions::default()
    };
    let storage = Storage::open(&path, options).unwrap();
    for i in 0..12 {
        storage
            .write_blocking(Write::Warm(record(
                "a",
                i * 1_000,
                Some(Usage::anthropic(1, 10, 0)),
                None,
            )))
            .unwrap();
    }
    storage
        .write_blocking(Write::Warm(record(
            "b",
            0,
            Some(Usage::anthropic(1, 10, 0)),
            None,
        )))
        .unwrap();
    let a = storage.history(&id("a"), 100).unwrap();
    let starts: Vec<u64> = a.iter().map(|r| r.started_at.as_millis()).collect();
    assert_eq!(starts, [11_000, 10_000, 9_000, 8_000, 7_000]);
    assert_eq!(storage.history(&id("b"), 100).unwrap().len(), 1);
    assert_eq!(storage.history(&id("a"), 2).unwrap().len(), 2);
    // The stats still count every warm, not just the kept rows.
    let all = storage.load_all(&IntervalLimits::default()).unwrap();
    let a = all.iter().find(|r| r.conversation.as_str() == "a").unwrap();
    assert_eq!(a.stats.warm_count, 12);
}

#[test]
fn no_credential_reaches_the_file() {
    let (_dir, path) = temp_db();
    let secret = "sk-ant-api03-SECRET-do-not-store";
    {
        let storage = Storage::open(&path, StorageOptions::default()).unwrap();
        let template = Arc::new(Template::new(
            json!({"model": "m", "api_key": secret, "metadata": {"authorization": format!("Bearer {secret}")}}),
            None,
            None,
        ));
        storage
            .write_blocking(Write::Template {
                conversation: id("c"),
                template,
            })
            .unwrap();
    }
    for file in std::fs::read_dir(path.parent().unwrap()).unwrap() {
        let bytes = std::fs::read(file.unwrap().path()).unwrap();
        assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()));
    }
}

#[tokio::test]
async fn concurrent_writers_are_all_acknowledged_and_stored() {
    let (_dir, path) = temp_db();
    let storage = Arc::new(Storage::open(&path, StorageOptions::default()).unwrap());
    let mut tasks = Vec::new();
    for i in 0..64u64 {
        let storage = storage.clone();
        tasks.push(tokio::spawn(async move {
            let conversation = id(&format!("c{i}"));
            let settings = Settings {
                enabled: i % 2 == 0,
                interval_ms: 10_000 + i,
                policy: None,
                interval_chosen: true,
                enrolled: false,
            };
            storage
                .write(Write::Settings {
                    conversation,
                    settings,
                })
                .await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let all = storage.load_all(&IntervalLimits::default()).unwrap();
    assert_eq!(all.len(), 64);
    for r in all {
        let i: u64 = r.conversation.as_str()[1..].parse().unwrap();
        assert_eq!(r.settings.unwrap().interval_ms, 10_000 + i);
    }
}

#[test]
fn a_deleted_conversation_and_its_history_are_gone_after_a_reopen() {
    let (_dir, path) = temp_db();
    let limits = IntervalLimits::default();
    {
        let storage = Storage::open(&path, StorageOptions::default()).unwrap();
        for conv in ["gone", "kept"] {
            storage
                .write_blocking(Write::Settings {
                    conversation: id(conv),
                    settings: Settings {
                        enabled: true,
                        ..Settings::defaults(&limits)
                    },
                })
                .unwrap();
            let usage = Some(Usage::anthropic(3, 900, 0));
            storage
                .write_blocking(Write::Warm(record(conv, 5_000, usage, None)))
                .unwrap();
        }
        storage
            .write_blocking(Write::Delete {
                conversation: id("gone"),
            })
            .unwrap();
    }
    let storage = Storage::open(&path, StorageOptions::default()).unwrap();
    let all = storage.load_all(&limits).unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].conversation, id("kept"));
    assert!(storage.history(&id("gone"), 10).unwrap().is_empty());
    assert_eq!(storage.history(&id("kept"), 10).unwrap().len(), 1);
}
