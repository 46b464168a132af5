//! Crash safety: a child process acknowledges writes in a loop and is killed
//! with SIGKILL at a random moment; every acknowledged write must be there
//! after reopening, and the file must pass `PRAGMA integrity_check`.
//!
//! 3 rounds in CI; `WARMING_CRASH_ROUNDS=200` for many more.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write as _};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::Connection;
use warming_core::{IntervalLimits, Settings};
use warming_storage::{Storage, StorageOptions, Write};

use crate::{id, temp_db};

const CHILD_ENV: &str = "WARMING_CRASH_CHILD_DB";

/// Runs only inside the child process started by the test below.
#[test]
#[ignore = "helper: run by crash_safety_under_sigkill in a child process"]
fn crash_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let storage = Arc::new(Storage::open(path.as_ref(), StorageOptions::default()).unwrap());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let storage = storage.clone();
            std::thread::spawn(move || {
                for i in 0u64.. {
                    let conversation = id(&format!("t{t}-{i}"));
                    let settings = Settings {
                        enabled: i % 3 != 0,
                        interval_ms: 10_000 + i,
                        policy: None,
                        interval_chosen: true,
                        enrolled: false,
                    };
                    storage
                        .write_blocking(Write::Settings {
                            conversation,
                            settings,
                        })
                        .unwrap();
                    let mut out = std::io::stdout().lock();
                    writeln!(
                        out,
                        "ack t{t}-{i} {} {}",
                        settings.enabled, settings.interval_ms
                    )
                    .unwrap();
                    out.flush().unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
}

fn pseudo_random(round: u64) -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    (nanos ^ round.wrapping_mul(0x9E37_79B9_7F4A_7C15)) % 1_500 + 20
}

#[test]
fn crash_safety_under_sigkill() {
    let rounds: u64 = std::env::var("WARMING_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    for round in 0..rounds {
        let (_dir, path) = temp_db();
        let kill_after = pseudo_random(round);
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "crash::crash_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut acked = HashMap::new();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut killed = false;
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(rest) = line.strip_prefix("ack ") {
                let parts: Vec<&str> = rest.split(' ').collect();
                acked.insert(
                    parts[0].to_owned(),
                    (parts[1] == "true", parts[2].parse::<u64>().unwrap()),
                );
            }
            if !killed && acked.len() as u64 >= kill_after {
                child.kill().unwrap(); // SIGKILL
                killed = true;
            }
        }
        child.wait().unwrap();
        assert!(
            killed,
            "round {round}: the child ended before it was killed"
        );

        let conn = Connection::open(&path).unwrap();
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok", "round {round}");
        drop(conn);
        let storage = Storage::open(&path, StorageOptions::default()).unwrap();
        let stored: HashMap<String, Settings> = storage
            .load_all(&IntervalLimits::new(1, u64::MAX))
            .unwrap()
            .into_iter()
            .filter_map(|r| Some((r.conversation.to_string(), r.settings?)))
            .collect();
        for (conversation, (enabled, interval_ms)) in &acked {
            let settings = stored.get(conversation);
            assert_eq!(
                settings,
                Some(&Settings {
                    enabled: *enabled,
                    interval_ms: *interval_ms,
                    policy: None,
                    interval_chosen: true,
                    enrolled: false,
                }),
                "round {round}: acknowledged write of {conversation} lost ({} acked)",
                acked.len()
            );
        }
    }
}
