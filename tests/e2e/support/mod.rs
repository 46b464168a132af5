//! Starting the real `warming` binary, and talking to it over real sockets.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The provider key the service gets; it must never reach the DB or logs.
pub const TEST_KEY: &str = "sk-ant-test-0123456789-SECRET-never-stored";

/// Shortest interval the service under test accepts, in ms.
pub const MIN_INTERVAL_MS: u64 = 200;

/// A running `warming serve`.
pub struct Service {
    child: Child,
    pub addr: SocketAddr,
    pub db: PathBuf,
    pub log: PathBuf,
    http: reqwest::Client,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary with `args` after `serve`; returns its exit status if
/// it ends within 10 s (for refusals at start).
pub fn run_to_exit(args: &[&str], log: &Path) -> Option<ExitStatus> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_warming"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    None
}

impl Service {
    /// Starts `warming serve` on a free port against `upstream`, storing in
    /// `dir/warming.db`, with `extra` flags and `ANTHROPIC_API_KEY` set.
    pub async fn start(dir: &Path, upstream: &str, extra: &[&str]) -> Self {
        Self::start_with(
            dir,
            &dir.join("warming.db"),
            upstream,
            extra,
            Some(TEST_KEY),
        )
        .await
    }

    /// As [`start`](Self::start), storing in `db`, with `key` (or none) as
    /// `ANTHROPIC_API_KEY`.
    pub async fn start_with(
        dir: &Path,
        db: &Path,
        upstream: &str,
        extra: &[&str],
        key: Option<&str>,
    ) -> Self {
        let db = db.to_path_buf();
        let log = dir.join(format!(
            "serve-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let min = MIN_INTERVAL_MS.to_string();
        let mut command = Command::new(env!("CARGO_BIN_EXE_warming"));
        match key {
            Some(key) => command.env("ANTHROPIC_API_KEY", key),
            None => command.env_remove("ANTHROPIC_API_KEY"),
        };
        let child = command
            .args(["serve", "--listen", "127.0.0.1:0", "--upstream", upstream])
            .args(["--min-interval-ms", &min])
            .args(if extra.contains(&"--warm-timeout-ms") {
                &[][..]
            } else {
                &["--warm-timeout-ms", "3000"][..]
            })
            .arg("--db")
            .arg(&db)
            .args(extra)
            .env_remove("OPENAI_API_KEY")
            .env("RUST_LOG", "trace")
            .env_remove("WARMING_TOKEN")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut service = Self {
            child,
            addr: "127.0.0.1:0".parse().unwrap(),
            db,
            log,
            // Below the server's header-read timeout (10 s), which also
            // closes a keep-alive connection left idle that long: reusing
            // one just as it closes fails the call (`IncompleteMessage`).
            http: reqwest::Client::builder()
                .pool_idle_timeout(Duration::from_secs(5))
                .build()
                .unwrap(),
        };
        service.addr = service.wait_for_listen().await;
        service
    }

    async fn wait_for_listen(&mut self) -> SocketAddr {
        for _ in 0..400 {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            if let Some(rest) = text.split("serving listen=").nth(1) {
                return rest.split_whitespace().next().unwrap().parse().unwrap();
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("warming exited with {status}: {text}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("warming did not start listening");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Kills the process with SIGKILL (no chance to flush) and waits.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and returns at once; `wait` collects the exit.
    pub fn signal_term(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits up to `secs` for the process to exit.
    pub fn wait(&mut self, secs: u64) -> Option<ExitStatus> {
        for _ in 0..secs * 20 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        self.child.wait().unwrap()
    }

    /// The `/metrics` exposition, as Prometheus reads it.
    pub async fn metrics(&self) -> String {
        let response = self.http.get(self.url("/metrics")).send().await.unwrap();
        response.text().await.unwrap()
    }

    /// Any request; answers the status and the JSON body (Null if none).
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.http.request(method, self.url(path));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn state(&self, id: &str) -> Value {
        let (status, body) = self
            .call("GET", &format!("/v1/conversations/{id}"), None)
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// The conversation's history, newest first (up to 1 000 entries).
    pub async fn history(&self, id: &str) -> Vec<Value> {
        let (_, page) = self
            .call(
                "GET",
                &format!("/v1/conversations/{id}/history?limit=1000"),
                None,
            )
            .await;
        page["history"].as_array().cloned().unwrap_or_default()
    }

    /// The state of `id` once its keep-alive plan is `plan` and no turn is
    /// active: a proxied turn is settled after the answer the client read,
    /// so a moment later.
    pub async fn settled_on_plan(&self, id: &str, plan: &str) -> Value {
        eventually(5, &format!("{id}'s plan to become {plan}"), || async {
            let s = self.state(id).await;
            (s["keepAlive"]["plan"] == plan && s["active"] == false).then_some(s)
        })
        .await
    }

    pub async fn enable(&self, id: &str, interval_ms: u64) -> Value {
        let (status, body) = self
            .call(
                "PUT",
                &format!("/v1/conversations/{id}/settings"),
                Some(json!({"enabled": true, "intervalMs": interval_ms})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Turns warming off with a short interval, so a check that nothing is
    /// warmed can wait past the moment a warm would be due.
    pub async fn disable_with_interval(&self, id: &str, interval_ms: u64) -> Value {
        let (status, body) = self
            .call(
                "PUT",
                &format!("/v1/conversations/{id}/settings"),
                Some(json!({"enabled": false, "intervalMs": interval_ms})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    pub async fn turn_started(&self, id: &str) -> Value {
        let (status, body) = self
            .call(
                "POST",
                &format!("/v1/conversations/{id}/turn-started"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    pub async fn turn_settled(&self, id: &str, request: &Value) -> Value {
        let (status, body) = self
            .call(
                "POST",
                &format!("/v1/conversations/{id}/turn-settled"),
                Some(json!({"request": request})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    pub async fn surface(&self) -> Surface {
        let (socket, _) =
            tokio_tungstenite::connect_async(format!("ws://{}/v1/surface", self.addr))
                .await
                .unwrap();
        Surface { socket }
    }
}

/// An Anthropic request with a cache breakpoint, distinct per `tag`.
pub fn anthropic_request(tag: &str) -> Value {
    json!({
        "model": "claude-test",
        "max_tokens": 64,
        "system": [{
            "type": "text",
            "text": format!("[{tag}] You are a meticulous assistant. Answer with care, cite what you rely on, and keep a steady tone. ").repeat(20),
            "cache_control": {"type": "ephemeral"}
        }],
        "messages": [{"role": "user", "content": "Summarise the plan."}]
    })
}

/// What the app itself does for a turn: call the provider (here the
/// stand-in) directly. Returns the usage the provider reported.
pub async fn provider_turn(upstream: &str, request: &Value) -> Value {
    let response = reqwest::Client::new()
        .post(format!("{upstream}/v1/messages"))
        .json(request)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    response.json::<Value>().await.unwrap()["usage"].clone()
}

/// Polls `check` every 20 ms until it returns `Some`, or panics after `secs`.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A WebSocket client of the surface.
pub struct Surface {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Surface {
    pub async fn send(&mut self, message: Value) {
        self.socket
            .send(Message::Text(message.to_string().into()))
            .await
            .unwrap();
    }

    pub async fn send_raw(&mut self, text: &str) {
        self.socket
            .send(Message::Text(text.to_owned().into()))
            .await
            .unwrap();
    }

    /// The next JSON message, or panics after `secs`.
    pub async fn next(&mut self, secs: u64) -> Value {
        let message = tokio::time::timeout(Duration::from_secs(secs), self.socket.next())
            .await
            .expect("no surface message in time")
            .expect("socket closed")
            .unwrap();
        match message {
            Message::Text(text) => serde_json::from_str(text.as_str()).unwrap(),
            other => panic!("unexpected message {other:?}"),
        }
    }

    /// Skips messages until one satisfies `pred`.
    pub async fn until(&mut self, secs: u64, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let left = deadline
                .saturating_duration_since(tokio::time::Instant::now())
                .as_secs()
                .max(1);
            let message = self.next(left).await;
            if pred(&message) {
                return message;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no matching surface message"
            );
        }
    }

    pub async fn subscribe(&mut self, id: &str) -> Value {
        self.send(json!({"type": "subscribe", "surfaceId": "cache-warming", "conversationId": id}))
            .await;
        self.until(5, |m| m["type"] == "surface" && m["conversationId"] == id)
            .await
    }
}

/// The timer payload of a surface or update message.
pub fn timer(message: &Value) -> &Value {
    &message["spec"]["fields"][5]["payload"]
}

/// POSTs a body over 4 MiB over a raw socket and returns the status line's
/// code. A server may answer 413 before the body is sent and close; an HTTP
/// client library then reports a broken connection instead of the answer, so
/// this writes and reads at the same time, as a careful client does.
pub async fn post_oversized(addr: SocketAddr, path: &str) -> u16 {
    post_sized(addr, path, 5 * 1024 * 1024).await
}

/// Posts `size` bytes to `path` by hand and answers the status line's code.
pub async fn post_sized(addr: SocketAddr, path: &str, size: usize) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {size}\r\n\r\n"
    );
    let send = tokio::spawn(async move {
        let _ = writer.write_all(head.as_bytes()).await;
        let _ = writer.write_all(&vec![b' '; size]).await;
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    send.abort();
    let text = String::from_utf8_lossy(&answer);
    text.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// The test Python (`WARMING_PYTHON`, else the workspace's `.venv`, which
/// `.ci/run` creates) if it imports `modules` (comma-separated); else
/// `None`, skipping with `hint`, or a failure when `require_var` is set.
pub fn python_with(modules: &str, require_var: &str, hint: &str) -> Option<PathBuf> {
    let candidate = std::env::var_os("WARMING_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python")
        });
    let ok = Command::new(&candidate)
        .args(["-c", &format!("import {modules}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os(require_var).is_none(),
            "{require_var} is set but {} cannot import {modules} ({hint})",
            candidate.display()
        );
        eprintln!("skipped: no Python importing {modules} ({hint})");
        return None;
    }
    Some(candidate)
}
