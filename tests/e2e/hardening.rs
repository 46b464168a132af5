//! The edge holds: every route honours the token, a 2xx is a committed
//! write (across kill -9 and storage failures), shutdown is bounded, and
//! answers, paths and bodies stay within their limits.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use warming_testkit::{Standin, StandinOptions};

use crate::support::{anthropic_request, eventually, run_to_exit, Service, TEST_KEY};

const TOKEN: &str = "a-long-random-test-token";

/// One raw HTTP/1.1 exchange, so the path goes out exactly as written
/// (HTTP clients normalise `..`); answers the status and the body.
async fn raw_http(addr: SocketAddr, head: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_honours_the_token_and_the_proxy_never_forwards_it() {
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), &standin.url(), &["--token", TOKEN]).await;
    let client = reqwest::Client::new();

    // Every documented operation but the probes refuses a call without it.
    let document: Value = client
        .get(service.url("/v1/openapi.json"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut checked = 0;
    for (path, operations) in document["paths"].as_object().unwrap() {
        for method in operations.as_object().unwrap().keys() {
            let url = service.url(&path.replace("{id}", "guarded"));
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let response = client
                .request(method.clone(), &url)
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            if path == "/healthz" || path == "/readyz" {
                assert_eq!(status, 200, "{path}");
                continue;
            }
            if path == "/" {
                // A browser is told how to get in, in a page.
                assert_eq!(status, 401, "{method} {path}");
                let page = response.text().await.unwrap();
                assert!(page.contains("/?token="), "{page}");
                checked += 1;
                continue;
            }
            let body: Value = response.json().await.unwrap_or(Value::Null);
            assert_eq!(
                (status, body["error"]["code"].as_str()),
                (401, Some("unauthorized")),
                "{method} {path}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 16, "{checked}");
    // Nothing reached the provider, and no conversation was touched.
    assert!(standin.requests().is_empty());
    let (status, state) = {
        let r = client
            .get(service.url("/v1/conversations/guarded"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    assert_eq!((status, &state["known"]), (200, &json!(false)));

    // The proxy takes it in x-warming-token, never forwarded; warming's
    // token sent as the provider key is not forwarded either.
    let body = json!({"model": "claude-test", "max_tokens": 5,
        "messages": [{"role": "user", "content": "x"}]});
    let as_bearer = client
        .post(service.url("/proxy/anthropic/v1/messages"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(as_bearer.status().as_u16(), 401);
    assert!(standin.requests().is_empty());
    let ok = client
        .post(service.url("/proxy/anthropic/v1/messages"))
        .header("x-warming-token", TOKEN)
        .header("x-api-key", "provider-key")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    let leaked = client
        .post(service.url("/proxy/anthropic/v1/messages"))
        .header("x-warming-token", TOKEN)
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(leaked.status().as_u16(), 200);
    // As the provider key, or in the query (where a browser puts it).
    let as_key = client
        .post(service.url("/proxy/anthropic/v1/messages?token=") + TOKEN)
        .header("x-warming-token", TOKEN)
        .header("x-api-key", TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(as_key.status().as_u16(), 200);
    let seen = standin.requests();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].credential.as_deref(), Some("provider-key"));
    for request in &seen[1..] {
        assert_eq!(
            request.credential, None,
            "warming's token reached the provider"
        );
        assert!(!request.body.contains(TOKEN));
        assert!(
            !request.query.as_deref().unwrap_or("").contains(TOKEN),
            "{request:?}"
        );
    }
    for request in &seen {
        assert!(!request.header_names.iter().any(|h| h == "x-warming-token"));
    }

    // The dashboard opens with ?token=.
    let page = client
        .get(service.url(&format!("/?token={TOKEN}")))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
}

#[tokio::test]
async fn public_metrics_opens_metrics_and_the_dashboard_only() {
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(
        dir.path(),
        &standin.url(),
        &["--token", TOKEN, "--public-metrics"],
    )
    .await;
    for path in ["/metrics", "/"] {
        assert_eq!(service.call("GET", path, None).await.0, 200, "{path}");
    }
    assert_eq!(service.call("GET", "/v1/conversations", None).await.0, 401);
}

#[tokio::test]
async fn proxy_paths_stay_below_the_upstream_base() {
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let base = format!("{}/gw/anthropic", standin.url());
    let service =
        Service::start(dir.path(), &standin.url(), &["--anthropic-upstream", &base]).await;
    for path in [
        "/proxy/anthropic/v1/../../../admin",
        "/proxy/anthropic/%2e%2e/%2e%2e/admin",
        "/proxy/anthropic/..%2f..%2fadmin",
        "/proxy/anthropic/v1/%2E%2e/admin",
    ] {
        let head = format!(
            "GET {path} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n\r\n",
            service.addr
        );
        let (status, body) = raw_http(service.addr, &head).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body.contains("only paths below"), "{path}: {body}");
    }
    assert!(
        standin.requests().is_empty(),
        "an escape reached the upstream"
    );
}

#[tokio::test]
async fn a_declared_oversized_body_is_refused_before_100_continue() {
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), &standin.url(), &[]).await;
    let head = format!(
        "POST /v1/conversations/c/turn-settled HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nexpect: 100-continue\r\nconnection: close\r\n\r\n",
        service.addr,
        5 * 1024 * 1024
    );
    let (status, body) = raw_http(service.addr, &head).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("payload_too_large"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_bounded_while_a_proxied_call_hangs_upstream() {
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut service =
        Service::start(dir.path(), &standin.url(), &["--shutdown-grace-ms", "300"]).await;
    standin.hang_next(1);
    let url = service.url("/proxy/anthropic/v1/messages");
    let stuck = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .header("x-conversation-id", "stuck")
            .json(&json!({"model": "claude-test", "max_tokens": 5,
                "messages": [{"role": "user", "content": "x"}]}))
            .send()
            .await
    });
    eventually(5, "the call to reach the upstream", || async {
        (!standin.requests().is_empty()).then_some(())
    })
    .await;
    let asked = Instant::now();
    service.signal_term();
    let status = tokio::task::spawn_blocking(move || service.wait(20))
        .await
        .unwrap()
        .expect("warming kept running after SIGTERM with a call stuck upstream");
    assert!(status.success(), "{status}");
    // Bounded by the grace period (plus the flush), not by the upstream.
    assert!(asked.elapsed() < Duration::from_secs(15));
    let _ = stuck.await;
}

#[tokio::test]
async fn a_hanging_upstream_gets_a_json_504_from_the_proxy() {
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(
        dir.path(),
        &standin.url(),
        &["--proxy-first-byte-timeout-ms", "300"],
    )
    .await;
    standin.hang_next(1);
    let response = reqwest::Client::new()
        .post(service.url("/proxy/anthropic/v1/messages"))
        .header("x-conversation-id", "slow")
        .json(&json!({"model": "claude-test", "max_tokens": 5,
            "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 504);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upstream");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("--proxy-first-byte-timeout-ms"));
    // The turn ended: the conversation is not left generating.
    assert_eq!(service.state("slow").await["active"], false);
}

/// An upstream that answers every request with a 200 and `size` bytes.
async fn huge_upstream(size: usize) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 65536];
                let _ = socket.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {size}\r\n\r\n"
                );
                let _ = socket.write_all(head.as_bytes()).await;
                let chunk = vec![b' '; 64 * 1024];
                let mut sent = 0;
                while sent < size {
                    if socket.write_all(&chunk).await.is_err() {
                        return;
                    }
                    sent += chunk.len();
                }
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_huge_warm_answer_is_dropped_not_held() {
    let upstream = huge_upstream(64 * 1024 * 1024).await;
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), &upstream, &[]).await;
    service.turn_settled("big", &anthropic_request("big")).await;
    let (status, answer) = service
        .call("POST", "/v1/conversations/big/warm", None)
        .await;
    assert_eq!(status, 502, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("more than 1024 KiB"), "{message}");
}

#[test]
fn settings_that_cannot_work_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    for (flags, needle) in [
        (&["--warm-timeout-ms", "0"][..], "warm-timeout-ms"),
        (&["--token", "   "][..], "token"),
        (&["--token", "x"][..], "at least 12"),
        (&["--listen", "nowhere-at-all"][..], "listen"),
    ] {
        let log = dir.path().join("refused.log");
        let db = dir.path().join("refused.db");
        let mut args = vec!["serve", "--db", db.to_str().unwrap()];
        args.extend_from_slice(flags);
        let status = run_to_exit(&args, &log).expect("it kept running");
        assert!(!status.success(), "{flags:?}");
        let message = std::fs::read_to_string(&log).unwrap();
        assert!(message.contains(needle), "{flags:?}: {message}");
    }
}

/// Makes every write to the conversations table fail, as a full disk
/// would, from a second connection to the same file.
fn break_writes(db: &std::path::Path) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn.execute_batch(
        "CREATE TRIGGER refuse_insert BEFORE INSERT ON conversations
           BEGIN SELECT RAISE(ABORT, 'injected: disk full'); END;
         CREATE TRIGGER refuse_update BEFORE UPDATE ON conversations
           BEGIN SELECT RAISE(ABORT, 'injected: disk full'); END;",
    )
    .unwrap();
}

fn repair_writes(db: &std::path::Path) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn.execute_batch("DROP TRIGGER refuse_insert; DROP TRIGGER refuse_update;")
        .unwrap();
}

#[tokio::test]
async fn a_write_storage_refuses_is_a_storage_error_not_a_2xx() {
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), &standin.url(), &[]).await;
    service.enable("full", 60_000).await;
    service
        .turn_settled("full", &anthropic_request("full"))
        .await;
    break_writes(&service.db);
    for (method, path, body) in [
        (
            "POST",
            "/v1/conversations/full/turn-settled",
            Some(json!({"request": anthropic_request("full")})),
        ),
        (
            "PUT",
            "/v1/conversations/full/settings",
            Some(json!({"intervalMs": 30_000})),
        ),
        ("POST", "/v1/conversations/full/turn-started", None),
    ] {
        let (status, answer) = service.call(method, path, body).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (500, Some("storage")),
            "{method} {path}: {answer}"
        );
    }
    // Settings are written first: the refused change did not happen.
    assert_eq!(service.state("full").await["intervalMs"], 60_000);
    repair_writes(&service.db);
    let settled = service
        .turn_settled("full", &anthropic_request("full"))
        .await;
    assert!(settled["nextWarmAt"].is_u64());
}

/// Rounds of kill -9 during a stream of acknowledged settles and settings
/// changes; `WARMING_CRASH_ROUNDS` for more than the default 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_write_is_lost_to_kill_9() {
    let rounds: usize = std::env::var("WARMING_CRASH_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3);
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let conversations = 40;
    // The last acknowledged settle of each conversation, and its interval.
    let mut acked: Vec<Option<(usize, u64)>> = vec![None; conversations];
    for round in 0..rounds {
        let service = Service::start(dir.path(), &standin.url(), &[]).await;
        let client = reqwest::Client::new();
        let mut tasks = tokio::task::JoinSet::new();
        for c in 0..conversations {
            let (client, base) = (client.clone(), service.url(""));
            tasks.spawn(async move {
                // Each acknowledgement counts on its own: a settle answered
                // 2xx must be on disk even if nothing after it was.
                let (mut settled, mut interval_set) = (None, None);
                for seq in 0.. {
                    let mut request = anthropic_request(&format!("c{c}"));
                    request["metadata"] = json!({"user_id": format!("R{round}-S{seq}")});
                    let settle = client
                        .post(format!("{base}/v1/conversations/c{c}/turn-settled"))
                        .json(&json!({"request": request}))
                        .send()
                        .await;
                    match settle {
                        Ok(r) if r.status().is_success() => settled = Some(seq),
                        _ => break,
                    }
                    let interval = 10_000 + (round * 1_000 + seq) as u64;
                    let settings = client
                        .put(format!("{base}/v1/conversations/c{c}/settings"))
                        .json(&json!({"enabled": true, "intervalMs": interval}))
                        .send()
                        .await;
                    match settings {
                        Ok(r) if r.status().is_success() => interval_set = Some(interval),
                        _ => break,
                    }
                }
                (c, settled, interval_set)
            });
        }
        // Let them run, then kill without warning at a varying moment.
        tokio::time::sleep(Duration::from_millis(150 + 100 * round as u64)).await;
        service.kill();
        while let Some(result) = tasks.join_next().await {
            let (c, settled, interval) = result.unwrap();
            if let Some(seq) = settled {
                let interval = interval.or(acked[c].map(|(_, i)| i)).unwrap_or(0);
                acked[c] = Some((round * 1_000_000 + seq, interval));
            }
        }
        let storage = warming_storage::Storage::open(
            &dir.path().join("warming.db"),
            warming_storage::StorageOptions::default(),
        )
        .unwrap();
        let stored = storage
            .load_all(&warming_core::IntervalLimits::new(1, u64::MAX))
            .unwrap();
        for (c, want) in acked.iter().enumerate() {
            let Some((mark, interval)) = want else {
                continue;
            };
            let id = format!("c{c}");
            let row = stored
                .iter()
                .find(|r| r.conversation.as_str() == id)
                .unwrap_or_else(|| panic!("round {round}: {id} lost"));
            assert!(
                row.template.is_some(),
                "round {round}: {id} lost its template"
            );
            let template = storage
                .template(&row.conversation)
                .unwrap()
                .expect("template");
            let template = template.request_json().expect("a body");
            let (round_of, seq) = (mark / 1_000_000, mark % 1_000_000);
            let stored_seq = template
                .split(&format!("R{round_of}-S"))
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .and_then(|n| n.parse::<usize>().ok());
            if round_of == round {
                assert!(
                    stored_seq.is_some_and(|s| s >= seq),
                    "round {round}: {id} acknowledged S{seq}, disk has S{stored_seq:?}"
                );
                // Killed before its first settings were acknowledged: no
                // interval to find.
                if *interval > 0 {
                    let stored_interval = row.settings.map_or(0, |s| s.interval_ms);
                    assert!(
                        stored_interval >= *interval,
                        "round {round}: {id} acknowledged interval {interval}, disk has \
                         {stored_interval}"
                    );
                }
            }
        }
        drop(storage);
    }
    assert!(
        acked.iter().any(Option::is_some),
        "no write was acknowledged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_never_finish_their_headers_cannot_starve_the_server() {
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(
        dir.path(),
        &standin.url(),
        &["--max-connections", "8", "--header-read-timeout-ms", "300"],
    )
    .await;
    // Three times the cap of connections that send half a request line,
    // and as many that send nothing at all.
    let mut slow = Vec::new();
    for _ in 0..24 {
        let mut stream = TcpStream::connect(service.addr).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
            .await
            .unwrap();
        slow.push(stream);
    }
    for _ in 0..24 {
        slow.push(TcpStream::connect(service.addr).await.unwrap());
    }
    // Each is dropped at the header timeout, so a real client gets in.
    let response = reqwest::Client::new()
        .get(service.url("/healthz"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("healthz answered while slow clients held connections");
    assert_eq!(response.status().as_u16(), 200);
    // The server closed the slow ones.
    let mut buf = [0u8; 64];
    for (which, stream) in [("half a head", 0), ("nothing", 47)] {
        let closed =
            tokio::time::timeout(Duration::from_secs(5), slow[stream].read(&mut buf)).await;
        assert!(
            matches!(closed, Ok(Ok(_) | Err(_))),
            "a client that sent {which} was never dropped"
        );
    }
}

#[tokio::test]
async fn a_body_trickled_past_its_deadline_is_cut() {
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(
        dir.path(),
        &standin.url(),
        &["--body-read-timeout-ms", "1000"],
    )
    .await;
    let stream = TcpStream::connect(service.addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    writer
        .write_all(
            b"POST /v1/conversations/t/turn-settled HTTP/1.1\r\nhost: x\r\n\
              content-type: application/json\r\ncontent-length: 100\r\n\r\n",
        )
        .await
        .unwrap();
    // A byte every 300 ms: each well within any per-chunk timeout, the
    // whole far past the 1 s deadline.
    let trickle = tokio::spawn(async move {
        for _ in 0..100 {
            if writer.write_all(b" ").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        while !String::from_utf8_lossy(&answer).contains("did not arrive") {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    trickle.abort();
    assert!(read.is_ok(), "the trickled body was not cut within 5 s");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("did not arrive within 1000 ms"), "{text}");
    assert_eq!(service.state("t").await["known"], false, "nothing changed");
}

#[test]
fn a_bad_value_in_the_environment_is_refused_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_warming"))
        .args(["serve", "--listen", "127.0.0.1:0", "--db"])
        .arg(dir.path().join("w.db"))
        .env("WARMING_CACHE_TTL_MS", "abc")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("cache-ttl-ms") && err.contains("abc"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_file_descriptors_does_not_stop_accepting() {
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serve.log");
    // A process allowed 64 open files: a few dozen idle clients exhaust them.
    let script = format!(
        "ulimit -n 64 && exec {} serve --listen 127.0.0.1:0 --db {} --upstream {}",
        env!("CARGO_BIN_EXE_warming"),
        dir.path().join("w.db").display(),
        standin.url()
    );
    let mut child = std::process::Command::new("sh")
        .args(["-c", &script])
        .env("RUST_LOG", "info")
        .env_remove("WARMING_TOKEN")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let addr: SocketAddr = eventually(10, "the server to listen", || async {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.split("serving listen=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..100 {
        if let Ok(stream) = TcpStream::connect(addr).await {
            idle.push(stream);
        }
    }
    eventually(10, "an accept to fail for want of descriptors", || async {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.contains("accepting a connection failed").then_some(())
    })
    .await;
    drop(idle);
    // Once the idle clients are gone, it serves again.
    eventually(10, "healthz to answer again", || async {
        let response = reqwest::Client::new()
            .get(format!("http://{addr}/healthz"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        (response.status().as_u16() == 200).then_some(())
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
}

/// Where the full-disk test keeps its database, and how it fills it.
enum Disk {
    /// A small filesystem of its own (`scripts/small_disk.sh`): filled to
    /// the last byte, so every commit meets a real ENOSPC.
    Small { dir: std::path::PathBuf },
    /// Anywhere else: every statement of every table refused by triggers
    /// (commits still succeed, so this proves less).
    Triggers,
}

impl Disk {
    /// The small disk when `WARMING_SMALL_DISK` names one (required when
    /// `WARMING_REQUIRE_SMALL_DISK` is set), else triggers.
    fn pick(test: &str) -> Self {
        match std::env::var_os("WARMING_SMALL_DISK") {
            Some(root) => {
                // Filling a real disk would fail every other test on the
                // machine: only a filesystem of at most 64 MiB is filled.
                let size = std::process::Command::new("df")
                    .args(["--output=size", "-B1"])
                    .arg(&root)
                    .output()
                    .ok()
                    .and_then(|out| {
                        String::from_utf8_lossy(&out.stdout)
                            .lines()
                            .nth(1)
                            .and_then(|l| l.trim().parse::<u64>().ok())
                    });
                assert!(
                    size.is_some_and(|bytes| bytes <= 64 << 20),
                    "WARMING_SMALL_DISK ({}) is not a small filesystem ({size:?} bytes): refusing \
                     to fill it; run `eval \"$(scripts/small_disk.sh start)\"`",
                    std::path::Path::new(&root).display()
                );
                let dir =
                    std::path::Path::new(&root).join(format!("{test}-{}", std::process::id()));
                std::fs::create_dir_all(&dir).unwrap();
                Self::Small { dir }
            }
            None if std::env::var_os("WARMING_REQUIRE_SMALL_DISK").is_some() => {
                panic!(
                    "WARMING_SMALL_DISK is not set: run `eval \"$(scripts/small_disk.sh start)\"`"
                )
            }
            None => Self::Triggers,
        }
    }

    fn db(&self, fallback: &std::path::Path) -> std::path::PathBuf {
        match self {
            Self::Small { dir } => dir.join("warming.db"),
            Self::Triggers => fallback.join("warming.db"),
        }
    }

    /// Leaves no room for any write.
    fn fill(&self, db: &std::path::Path) {
        match self {
            Self::Small { dir } => {
                use std::io::Write;
                let mut filler = std::fs::File::create(dir.join("filler")).unwrap();
                let chunk = vec![0u8; 64 * 1024];
                while filler.write_all(&chunk).is_ok() {}
                while filler.write_all(&chunk[..512]).is_ok() {}
                let _ = filler.sync_all();
            }
            Self::Triggers => {
                let conn = rusqlite::Connection::open(db).unwrap();
                conn.busy_timeout(Duration::from_secs(5)).unwrap();
                let tables: Vec<String> = conn
                    .prepare(
                        "SELECT name FROM sqlite_master
                         WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
                    )
                    .unwrap()
                    .query_map([], |row| row.get(0))
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap();
                for table in tables {
                    for op in ["INSERT", "UPDATE", "DELETE"] {
                        conn.execute_batch(&format!(
                            "CREATE TRIGGER full_{op}_{table} BEFORE {op} ON {table}
                               BEGIN SELECT RAISE(ABORT, 'injected: disk full'); END;"
                        ))
                        .unwrap();
                    }
                }
            }
        }
    }

    /// Makes room again.
    fn free(&self, db: &std::path::Path) {
        match self {
            Self::Small { dir } => std::fs::remove_file(dir.join("filler")).unwrap(),
            Self::Triggers => {
                let conn = rusqlite::Connection::open(db).unwrap();
                conn.busy_timeout(Duration::from_secs(5)).unwrap();
                let triggers: Vec<String> = conn
                    .prepare(
                        "SELECT name FROM sqlite_master
                         WHERE type = 'trigger' AND name LIKE 'full_%'",
                    )
                    .unwrap()
                    .query_map([], |row| row.get(0))
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap();
                for trigger in triggers {
                    conn.execute_batch(&format!("DROP TRIGGER {trigger}"))
                        .unwrap();
                }
            }
        }
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        if let Self::Small { dir } = self {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_keeps_warming_and_a_close_it_refuses_still_stops_warms() {
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let disk = Disk::pick("full-disk");
    let db = disk.db(dir.path());
    let upstream = standin.url();
    let start = || Service::start_with(dir.path(), &db, &upstream, &[], Some(TEST_KEY));
    let service = start().await;
    // Many conversations, so that warm records and the flushes before
    // warms share the writer's batches (and its failures).
    let ids: Vec<String> = (0..12).map(|n| format!("disk-{n}")).collect();
    for id in &ids {
        service.turn_settled(id, &anthropic_request(id)).await;
        service.enable(id, 300).await;
    }
    disk.fill(&db);
    let sent = |standin: &Standin, id: &str| {
        let tag = format!("[{id}]");
        standin
            .warms()
            .iter()
            .filter(|w| w.body.contains(&tag))
            .count()
    };

    // Warms read the template the store holds, though nothing can be
    // written: the history of these warms is lost, the warms are not.
    let before: Vec<usize> = ids.iter().map(|id| sent(&standin, id)).collect();
    eventually(10, "warms while the disk is full", || async {
        ids.iter()
            .zip(&before)
            .all(|(id, n)| sent(&standin, id) >= n + 4)
            .then_some(())
    })
    .await;
    for id in &ids {
        let state = service.state(id).await;
        assert_eq!(state["lastError"], json!(null), "{state}");
    }
    let sent = |standin: &Standin| sent(standin, "disk-0");

    // A close the store refuses: not acknowledged as stored, but warming
    // stops all the same, and the state says so.
    let (status, answer) = service
        .call("POST", "/v1/conversations/disk-0/close", None)
        .await;
    assert_eq!(status, 500, "{answer}");
    assert_eq!(answer["error"]["code"], "storage", "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("close could not be stored"), "{message}");
    let state = service.state("disk-0").await;
    assert_eq!(
        state["enabled"], true,
        "memory says what the disk says: {state}"
    );
    assert_eq!(state["nextWarmAt"], json!(null), "{state}");
    assert_eq!(state["stop"]["code"], "closeNotStored", "{state}");
    let stopped_at = sent(&standin);
    // Three intervals of nothing: a timed warm would have gone out.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(sent(&standin), stopped_at, "a warm after the refused close");

    // Space again: the close is stored, and a restart keeps it.
    disk.free(&db);
    let (status, closed) = service
        .call("POST", "/v1/conversations/disk-0/close", None)
        .await;
    assert_eq!(status, 200, "{closed}");
    assert_eq!(closed["enabled"], false);
    service.kill();
    let restarted = start().await;
    let state = restarted.state("disk-0").await;
    assert_eq!(state["enabled"], false, "{state}");
    assert_eq!(state["nextWarmAt"], json!(null), "{state}");
}

#[tokio::test]
async fn a_new_conversations_turn_start_survives_kill_9_once_answered() {
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), &standin.url(), &[]).await;
    for n in 0..20 {
        let state = service.turn_started(&format!("born-{n}")).await;
        assert_eq!(state["known"], true, "{state}");
    }
    service.kill();
    let restarted = Service::start(dir.path(), &standin.url(), &[]).await;
    for n in 0..20 {
        let state = restarted.state(&format!("born-{n}")).await;
        assert_eq!(state["known"], true, "born-{n} was lost: {state}");
    }
}

#[tokio::test]
async fn past_its_places_the_server_serves_probes_and_token_holders_only() {
    const TOKEN: &str = "reserve-test-token-0123";
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(
        dir.path(),
        &standin.url(),
        &[
            "--token",
            TOKEN,
            "--max-connections",
            "1",
            "--max-connections-per-client",
            "1",
        ],
    )
    .await;
    // The one place, busy: an authenticated request whose body is still
    // coming.
    let mut busy = TcpStream::connect(service.addr).await.unwrap();
    let head = format!(
        "POST /v1/conversations/held/turn-settled HTTP/1.1\r\nhost: x\r\n\
         authorization: Bearer {TOKEN}\r\ncontent-type: application/json\r\n\
         content-length: 1000\r\n\r\n{{"
    );
    busy.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let anonymous = http
        .get(service.url("/v1/conversations"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 503);
    let body: Value = anonymous.json().await.unwrap();
    assert_eq!(body["error"]["code"], "busy", "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("--max-connections"));
    let probe = http.get(service.url("/healthz")).send().await.unwrap();
    assert_eq!(probe.status().as_u16(), 200);
    let holder = http
        .get(service.url("/v1/conversations"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(holder.status().as_u16(), 200);
    drop(busy);
}
