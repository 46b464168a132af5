//! A log that cannot be written never stops the service: stderr on a full
//! filesystem (`/dev/full`) or a pipe its reader closed (`serve 2>&1 | head
//! -c 400`). The service keeps warming, `/healthz` stays honest, the lines
//! it could not write are counted in `/metrics`, and SIGTERM still stops it.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use warming_testkit::{Standin, StandinOptions};

use crate::support::{anthropic_request, eventually};

/// A free port on 127.0.0.1 (the service cannot say which it took when its
/// log goes nowhere).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Running {
    child: Child,
    base: String,
    http: reqwest::Client,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

/// Starts `warming serve` with its stderr going to `stderr`, logging every
/// request (trace), and waits for `/healthz`.
async fn start(upstream: &str, dir: &std::path::Path, stderr: Stdio) -> Running {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_warming"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--upstream", upstream, "--min-interval-ms", "200"])
        .arg("--db")
        .arg(dir.join("warming.db"))
        .env("ANTHROPIC_API_KEY", crate::support::TEST_KEY)
        .env("RUST_LOG", "trace")
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let running = Running {
        child,
        base: format!("http://127.0.0.1:{port}"),
        http: reqwest::Client::new(),
    };
    eventually(10, "the service to listen", || async {
        let response = running
            .http
            .get(format!("{}/healthz", running.base))
            .send()
            .await
            .ok()?;
        (response.status() == 200).then_some(())
    })
    .await;
    running
}

/// Warms keep going while every log line fails, failed warms included
/// (each logs a warning); then SIGTERM stops the process.
async fn keeps_warming_and_stops_on_sigterm(mut running: Running, standin: &Standin) {
    let settle = json!({"request": anthropic_request("logless")});
    let (status, _) = running
        .call("POST", "/v1/conversations/l/turn-settled", Some(settle))
        .await;
    assert_eq!(status, 200);
    // Failures log warnings: the moment a failed write used to panic.
    standin.fail_next(2, 529, None);
    let (status, _) = running
        .call(
            "PUT",
            "/v1/conversations/l/settings",
            Some(json!({"enabled": true, "intervalMs": 200})),
        )
        .await;
    assert_eq!(status, 200);
    eventually(10, "warms after the failed ones", || async {
        let (_, state) = running.call("GET", "/v1/conversations/l", None).await;
        (state["warmCount"].as_u64() >= Some(3)).then_some(())
    })
    .await;
    let (status, health) = running.call("GET", "/healthz", None).await;
    assert_eq!((status, &health["status"]), (200, &json!("ok")));
    let metrics = running
        .http
        .get(format!("{}/metrics", running.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let dropped: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("warming_log_lines_dropped_total "))
        .expect("the dropped lines are counted")
        .parse()
        .unwrap();
    assert!(dropped > 0.0, "{dropped}");
    let pid = running.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let mut exited = None;
    for _ in 0..200 {
        if let Some(status) = running.child.try_wait().unwrap() {
            exited = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = exited.expect("SIGTERM stopped the service within 10 s");
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_under_the_log_stops_nothing() {
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    let running = start(&standin.url(), dir.path(), Stdio::from(full)).await;
    keeps_warming_and_stops_on_sigterm(running, &standin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_log_pipe_stops_nothing() {
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut running = start(&standin.url(), dir.path(), Stdio::piped()).await;
    // `| head -c 400`: the reader takes what is there (the start-up lines),
    // then goes away.
    let mut pipe = running.child.stderr.take().unwrap();
    let mut head = [0_u8; 400];
    let read = std::io::Read::read(&mut pipe, &mut head).unwrap();
    assert!(read > 0, "the service logged its start");
    drop(pipe);
    keeps_warming_and_stops_on_sigterm(running, &standin).await;
}
