//! A write that SQLite refuses reaches the caller as an error, and the core
//! keeps its old state. The failure is real: a trigger installed from a second
//! connection makes SQLite abort the writer's statements.

use rusqlite::Connection;
use warming_core::{IntervalLimits, Settings, SettingsChange, Timestamp, Warmer};
use warming_storage::{Storage, StorageOptions, Write, WriteError};

use crate::{id, temp_db};

fn break_writes(path: &std::path::Path) {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(
        "CREATE TRIGGER refuse_insert BEFORE INSERT ON conversations
           BEGIN SELECT RAISE(ABORT, 'injected failure'); END;
         CREATE TRIGGER refuse_update BEFORE UPDATE ON conversations
           BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
    )
    .unwrap();
}

fn repair_writes(path: &std::path::Path) {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch("DROP TRIGGER refuse_insert; DROP TRIGGER refuse_update;")
        .unwrap();
}

/// Carries out the engine's persist effects against storage, reporting each
/// result back, as the service's driver does.
fn drive(warmer: &mut Warmer, storage: &Storage, now: Timestamp) -> Vec<Result<(), WriteError>> {
    let mut results = Vec::new();
    while let Some(write) = warmer.poll_write() {
        let Some(ack) = write.ack() else {
            continue;
        };
        let Some(write) = Write::from_core(write) else {
            continue;
        };
        let result = storage.write_blocking(write);
        warmer.persisted(now, ack, result.is_ok());
        results.push(result);
    }
    results
}

#[test]
fn a_refused_write_is_an_error_and_commits_nothing() {
    let (_dir, path) = temp_db();
    let storage = Storage::open(&path, StorageOptions::default()).unwrap();
    let on = Settings {
        enabled: true,
        interval_ms: 60_000,
        policy: None,
        interval_chosen: true,
        enrolled: false,
    };
    storage
        .write_blocking(Write::Settings {
            conversation: id("c"),
            settings: on,
        })
        .unwrap();
    break_writes(&path);
    let off = Settings {
        enabled: false,
        interval_ms: 20_000,
        policy: None,
        interval_chosen: true,
        enrolled: false,
    };
    let err = storage
        .write_blocking(Write::Settings {
            conversation: id("c"),
            settings: off,
        })
        .unwrap_err();
    assert!(err.to_string().contains("injected failure"), "{err}");
    let all = storage.load_all(&IntervalLimits::default()).unwrap();
    assert_eq!(all[0].settings, Some(on));
}

#[test]
fn one_refused_write_does_not_fail_its_batch_neighbours() {
    let (_dir, path) = temp_db();
    let storage = Storage::open(&path, StorageOptions::default()).unwrap();
    // Refuse only the conversation "bad".
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TRIGGER refuse_bad BEFORE INSERT ON conversations WHEN NEW.id = 'bad'
           BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
    )
    .unwrap();
    let settings = Settings {
        enabled: true,
        interval_ms: 60_000,
        policy: None,
        interval_chosen: true,
        enrolled: false,
    };
    let pending: Vec<_> = ["a", "bad", "b"]
        .into_iter()
        .map(|c| {
            storage.submit(Write::Settings {
                conversation: id(c),
                settings,
            })
        })
        .collect();
    let results: Vec<_> = pending
        .into_iter()
        .map(|p| p.blocking_recv().unwrap())
        .collect();
    assert!(
        results[0].is_ok() && results[1].is_err() && results[2].is_ok(),
        "{results:?}"
    );
    assert_eq!(
        storage.load_all(&IntervalLimits::default()).unwrap().len(),
        2
    );
}

#[test]
fn the_core_keeps_its_settings_and_backend_when_storage_refuses() {
    let (_dir, path) = temp_db();
    let storage = Storage::open(&path, StorageOptions::default()).unwrap();
    let mut warmer = Warmer::new(Default::default());
    let now = Timestamp::from_millis(1_700_000_000_000);
    let c = id("c");

    let _ = warmer.update_settings(
        now,
        &c,
        SettingsChange {
            enabled: Some(true),
            ..Default::default()
        },
    );
    let _ = warmer.backend_resolved(now, &c, "replica-1");
    assert!(drive(&mut warmer, &storage, now).iter().all(Result::is_ok));
    let before = warmer.state(&c);
    assert!(before.enabled);

    break_writes(&path);
    let _ = warmer.update_settings(
        now,
        &c,
        SettingsChange {
            enabled: Some(false),
            interval_ms: Some(20_000.0),
            ..Default::default()
        },
    );
    let _ = warmer.backend_resolved(now, &c, "replica-2");
    let results = drive(&mut warmer, &storage, now);
    assert_eq!(results.len(), 2);
    assert!(results.iter().all(Result::is_err));
    assert_eq!(warmer.state(&c), before);

    // Once storage works again, the same backend report is retried and lands.
    repair_writes(&path);
    let _ = warmer.backend_resolved(now, &c, "replica-2");
    assert!(drive(&mut warmer, &storage, now).iter().all(Result::is_ok));
    assert_eq!(warmer.state(&c).backend.as_deref(), Some("replica-2"));
    let stored = storage.load_all(&IntervalLimits::default()).unwrap();
    assert_eq!(stored[0].backend.as_deref(), Some("replica-2"));
    assert!(stored[0].settings.unwrap().enabled);
}
