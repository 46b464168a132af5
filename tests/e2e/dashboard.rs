//! The dashboard page in headless Chromium, driven over the DevTools protocol:
//! open it, enable a conversation, see the countdown run and a warm appear in
//! the chart, and save a screenshot (`$CARGO_TARGET_TMPDIR/dashboard.png`).
//!
//! Needs Debian's `chromium`; `.ci/run` installs it and sets
//! `WARMING_REQUIRE_CHROMIUM=1`, so CI fails rather than skips without it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64_decode::decode;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use warming_testkit::{Standin, StandinOptions};

use crate::support::{anthropic_request, eventually, Service};

mod base64_decode {
    /// Standard base64 (what `Page.captureScreenshot` returns).
    pub fn decode(text: &str) -> Vec<u8> {
        let value = |c: u8| match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            _ => 63,
        };
        let clean: Vec<u8> = text
            .bytes()
            .filter(|c| *c != b'=' && !c.is_ascii_whitespace())
            .collect();
        let mut out = Vec::with_capacity(clean.len() * 3 / 4);
        for chunk in clean.chunks(4) {
            let v: Vec<u32> = chunk.iter().map(|&c| u32::from(value(c))).collect();
            let n = v
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, x)| acc | (x << (18 - 6 * i)));
            out.push((n >> 16) as u8);
            if v.len() > 2 {
                out.push((n >> 8) as u8);
            }
            if v.len() > 3 {
                out.push(n as u8);
            }
        }
        out
    }
}

struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts headless Chromium; returns it and its DevTools WebSocket URL.
fn launch() -> Option<(Browser, String)> {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--remote-debugging-port=0",
            "--window-size=1200,600",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    let stderr = child.stderr.take().unwrap();
    let url = BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
        .find_map(|line| {
            line.split("DevTools listening on ")
                .nth(1)
                .map(str::to_owned)
        })?;
    Some((
        Browser {
            child,
            _profile: profile,
        },
        url,
    ))
}

/// A DevTools session on one page.
struct Page {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    session: Option<String>,
    next_id: u64,
}

impl Page {
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let mut message = json!({"id": self.next_id, "method": method, "params": params});
        if let Some(session) = &self.session {
            message["sessionId"] = json!(session);
        }
        self.socket
            .send(Message::Text(message.to_string().into()))
            .await
            .unwrap();
        loop {
            let Message::Text(text) = self.socket.next().await.unwrap().unwrap() else {
                continue;
            };
            let answer: Value = serde_json::from_str(text.as_str()).unwrap();
            if answer["id"] == self.next_id {
                assert!(answer["error"].is_null(), "{method}: {answer}");
                return answer["result"].clone();
            }
        }
    }

    async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true}),
            )
            .await;
        result["result"]["value"].clone()
    }

    /// Evaluates `expression` every 50 ms until it is truthy.
    async fn wait_for(&mut self, what: &str, expression: &str) -> Value {
        for _ in 0..200 {
            let value = self.eval(expression).await;
            let falsy = value.is_null() || value == false || value == "" || value == 0;
            if !falsy {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the dashboard never showed {what}");
    }
}

/// Whether Chromium is here; without it the test skips, unless CI requires it.
fn chromium_missing() -> bool {
    if Command::new("chromium").arg("--version").output().is_ok() {
        return false;
    }
    assert!(
        std::env::var_os("WARMING_REQUIRE_CHROMIUM").is_none(),
        "chromium is required here but not installed"
    );
    eprintln!("skipping: chromium is not installed (apt-get install chromium)");
    true
}

/// Headless Chromium with the service's dashboard open.
async fn open_dashboard(service: &Service) -> (Browser, Page) {
    let (browser, devtools) = tokio::task::spawn_blocking(launch)
        .await
        .unwrap()
        .expect("chromium started");
    let (socket, _) = tokio_tungstenite::connect_async(devtools.as_str())
        .await
        .unwrap();
    let mut page = Page {
        socket,
        session: None,
        next_id: 0,
    };
    let target = page
        .call("Target.createTarget", json!({"url": service.url("/")}))
        .await;
    let attached = page
        .call(
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
        )
        .await;
    page.session = attached["sessionId"].as_str().map(str::to_owned);
    (browser, page)
}

/// A PNG of the page as it is now.
async fn screenshot(page: &mut Page) -> Vec<u8> {
    let shot = page
        .call("Page.captureScreenshot", json!({"format": "png"}))
        .await;
    let png = decode(shot["data"].as_str().unwrap());
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    png
}

#[tokio::test]
async fn the_dashboard_enables_a_conversation_and_shows_its_warms() {
    if chromium_missing() {
        return;
    }
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), &standin.url(), &[]).await;
    service
        .turn_settled("dash", &anthropic_request("dash"))
        .await;

    let (_browser, mut page) = open_dashboard(&service).await;

    let row = r#"document.querySelector('tr[data-id="dash"]')"#;
    page.wait_for("the conversation", &format!("{row} !== null"))
        .await;
    // Off says so in words, not a dash.
    assert_eq!(
        page.eval(&format!("{row}.querySelector('.countdown').textContent"))
            .await,
        "off"
    );
    assert_eq!(
        page.eval(&format!("{row}.querySelector('.toggle').checked"))
            .await,
        false
    );

    // Half a second between warms, then switch warming on, as a user would.
    page.eval(&format!(
        "(() => {{ const i = {row}.querySelector('.interval'); i.value = '0.5'; i.dispatchEvent(new Event('change')); }})()"
    ))
    .await;
    page.wait_for(
        "the new interval",
        &format!("{row}.querySelector('.interval').value === '0.5'"),
    )
    .await;
    page.eval(&format!("{row}.querySelector('.toggle').click()"))
        .await;

    let countdown = page
        .wait_for(
            "a running countdown",
            &format!(
                "(t => t.startsWith('in ') && t)({row}.querySelector('.countdown').textContent)"
            ),
        )
        .await;
    // The countdown is the server's: its seconds never exceed the interval.
    let secs: f64 = countdown.as_str().unwrap()["in ".len()..]
        .trim_end_matches('s')
        .parse()
        .unwrap_or_else(|_| panic!("{countdown}"));
    assert!(secs <= 1.0, "{countdown} for a 0.5 s interval");
    page.wait_for(
        "two warms in the chart",
        &format!("(n => n >= 2 && n)({row}.querySelectorAll('svg.chart circle').length)"),
    )
    .await;
    // Each dot names its warm's hit % and outcome, from the history.
    let title = page
        .eval(&format!(
            "{row}.querySelector('svg.chart circle title').textContent"
        ))
        .await;
    let title = title.as_str().unwrap();
    assert!(
        ["(hit)", "(expired)", "(cold)", "(uncached)"]
            .iter()
            .any(|o| title.ends_with(o)),
        "{title}"
    );
    assert!(title.contains(" % ("), "{title}");
    let state = service.state("dash").await;
    assert_eq!(state["enabled"], true);
    assert_eq!(state["intervalMs"], 500);
    assert!(state["warmCount"].as_u64().unwrap() >= 1);
    // The toggle's label follows its state, and hits are drawn as hits.
    assert_eq!(
        page.eval(&format!("{row}.querySelector('.toggle-label').textContent"))
            .await,
        "on"
    );
    page.wait_for(
        "hits drawn as hits",
        &format!("{row}.querySelectorAll('svg.chart circle.hit').length >= 2"),
    )
    .await;

    // The money strip shows what the warms cost, from the server's figures;
    // this test's model is in no price list, so it says the price is an
    // estimate.
    let strip = "document.getElementById('summary')";
    page.wait_for(
        "warms counted in the strip",
        &format!("Number({strip}.querySelector('.warms b').textContent) >= 2"),
    )
    .await;
    let spent = page
        .wait_for(
            "a cost in the strip",
            &format!("(t => /^\\$0\\.0*[1-9]/.test(t) && t)({strip}.querySelector('.spent b').textContent)"),
        )
        .await;
    assert!(spent.as_str().unwrap().starts_with('$'), "{spent}");
    let note = page
        .eval("document.getElementById('price-note').textContent")
        .await;
    assert!(note.as_str().unwrap().contains("estimate"), "{note}");
    // The sticky backend that served its warms is on the row.
    let backend = service.state("dash").await["backend"].clone();
    assert!(backend.is_string(), "the stand-in names its backend");
    page.wait_for(
        "the sticky backend",
        &format!("{row}.querySelector('.backend').textContent === 'backend ' + {backend}"),
    )
    .await;

    // An interval below the server's minimum shows the applied value and says so.
    page.eval(&format!(
        "(() => {{ const i = {row}.querySelector('.interval'); i.value = '0.01'; i.dispatchEvent(new Event('change')); }})()"
    ))
    .await;
    let note = page
        .wait_for(
            "the clamp note",
            &format!("{row}.querySelector('.note').textContent"),
        )
        .await;
    assert_eq!(note, "clamped to 0.2s (server minimum)");
    assert_eq!(
        page.eval(&format!("{row}.querySelector('.interval').value"))
            .await,
        "0.2"
    );

    // A failed manual warm shows its error on the row; the next one clears it.
    // A long interval first, so no timed warm takes the injected failure.
    page.eval(&format!(
        "(() => {{ const i = {row}.querySelector('.interval'); i.value = '600'; i.dispatchEvent(new Event('change')); }})()"
    ))
    .await;
    // Applied by the server, with no timed warm in flight: the next one
    // is ten minutes away (nextWarmAt is null while a warm is in flight).
    eventually(10, "the long interval applied", || async {
        let s = service.state("dash").await;
        let armed_far = s["nextWarmAt"]
            .as_u64()
            .is_some_and(|t| t > crate::support::now_ms() + 500_000);
        (s["intervalMs"] == 600_000 && armed_far).then_some(())
    })
    .await;
    let sent_before = standin.warms().len();
    standin.fail_next(1, 500, None);
    page.eval(&format!("{row}.querySelector('.warm').click()"))
        .await;
    let error = page
        .wait_for(
            "the warm's error",
            &format!("{row}.querySelector('.error').textContent"),
        )
        .await;
    assert!(error.as_str().unwrap().contains("upstream 500"), "{error}");
    // It was the manual warm that failed, the only warm sent meanwhile.
    assert_eq!(standin.warms().len(), sent_before + 1);
    let (_, history) = service
        .call("GET", "/v1/conversations/dash/history?limit=1", None)
        .await;
    let newest = &history["history"][0];
    assert_eq!(
        (&newest["trigger"], &newest["outcome"]),
        (&json!("manual"), &json!("failed")),
        "{newest}"
    );
    page.eval(&format!("{row}.querySelector('.warm').click()"))
        .await;
    page.wait_for(
        "the error to clear",
        &format!("{row}.querySelector('.error').textContent === ''"),
    )
    .await;
    page.eval(&format!(
        "(() => {{ const i = {row}.querySelector('.interval'); i.value = '0.2'; i.dispatchEvent(new Event('change')); }})()"
    ))
    .await;
    page.wait_for(
        "the short interval again",
        &format!("{row}.querySelector('.interval').value === '0.2'"),
    )
    .await;

    // The policy is visible and changeable; its stop reason is shown.
    assert_eq!(
        page.eval(&format!("{row}.querySelector('.policy').value"))
            .await,
        "fixed"
    );
    page.eval(&format!(
        "(() => {{ const p = {row}.querySelector('.policy'); p.value = 'pings:1'; p.dispatchEvent(new Event('change')); }})()"
    ))
    .await;
    let stopped = page
        .wait_for(
            "the stop reason",
            &format!("{row}.querySelector('.stopped').textContent"),
        )
        .await;
    assert!(stopped.as_str().unwrap().contains("pings:1"), "{stopped}");
    assert_eq!(service.state("dash").await["policy"], "pings:1");

    // A closed conversation leaves the "warming on" view at once.
    page.eval(&format!("{row}.querySelector('.close').click()"))
        .await;
    page.wait_for(
        "the toggle to read off",
        &format!("{row}.querySelector('.toggle-label').textContent === 'off'"),
    )
    .await;
    let filter = |value: &str| {
        format!("(() => {{ const f = document.getElementById('filter'); f.value = '{value}'; f.dispatchEvent(new Event('change')); }})()")
    };
    page.eval(&filter("on")).await;
    page.wait_for(
        "the closed row to leave",
        &format!("{row} === null || {row}.hidden"),
    )
    .await;
    page.eval(&filter("")).await;
    page.wait_for("the row back", &format!("{row} && !{row}.hidden"))
        .await;

    let png = screenshot(&mut page).await;
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    std::fs::write(&path, png).unwrap();
    eprintln!("screenshot: {}", path.display());

    // Delete takes two clicks, then the row and the conversation are gone.
    page.eval(&format!("{row}.querySelector('.delete').click()"))
        .await;
    assert_eq!(service.state("dash").await["known"], true);
    page.eval(&format!("{row}.querySelector('.delete').click()"))
        .await;
    page.wait_for("the row to go", &format!("{row} === null"))
        .await;
    assert_eq!(service.state("dash").await["known"], false);
}

#[tokio::test]
async fn the_dashboard_finds_one_conversation_among_many_and_shows_its_cost_cap_and_history() {
    if chromium_missing() {
        return;
    }
    // A provider that keeps prefixes 10 minutes, as Anthropic's 5 do.
    let standin = Standin::start(StandinOptions {
        ttl: Duration::from_secs(600),
        ..StandinOptions::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // A cap the dear conversation's second warm would cross (its prompt is
    // ten times this test's usual one: about $0.002 a warm at the estimate).
    let service = Service::start(
        dir.path(),
        &standin.url(),
        &["--max-spend-per-conversation-day", "0.003"],
    )
    .await;
    for i in 0..120 {
        let id = format!("chat-{i:03}");
        service.turn_settled(&id, &anthropic_request(&id)).await;
    }
    let mut dear = anthropic_request("dear");
    let text = dear["system"][0]["text"].as_str().unwrap().repeat(10);
    dear["system"][0]["text"] = json!(text);
    crate::support::provider_turn(&standin.url(), &dear).await;
    service.turn_settled("dear", &dear).await;

    let (_browser, mut page) = open_dashboard(&service).await;
    let info = "document.getElementById('page-info').textContent";
    // 121 conversations, 50 a page: the first page, then the next ones.
    page.wait_for("the first page", &format!("{info} === '1–50'"))
        .await;
    assert_eq!(
        page.eval("document.querySelectorAll('#rows tr[data-id]').length")
            .await,
        50
    );
    page.eval("document.getElementById('next').click()").await;
    page.wait_for("the second page", &format!("{info} === '51–100'"))
        .await;
    page.eval("document.getElementById('next').click()").await;
    page.wait_for("the last page", &format!("{info} === '101–121'"))
        .await;
    assert_eq!(
        page.eval("document.getElementById('next').disabled").await,
        true
    );
    page.eval("document.getElementById('prev').click()").await;
    page.wait_for("back a page", &format!("{info} === '51–100'"))
        .await;

    // Search finds it wherever it is; switch it on, as a person would.
    page.eval("(() => { const s = document.getElementById('search'); s.value = 'dea'; s.dispatchEvent(new Event('input')); })()")
        .await;
    let row = r#"document.querySelector('tr[data-id="dear"]')"#;
    page.wait_for(
        "the search's one row",
        &format!("{row} && document.querySelectorAll('#rows tr[data-id]').length === 1"),
    )
    .await;
    page.eval(&format!(
        "(() => {{ const i = {row}.querySelector('.interval'); i.value = '0.25'; i.dispatchEvent(new Event('change')); }})()"
    ))
    .await;
    page.wait_for(
        "the interval applied",
        &format!("{row}.querySelector('.interval').value === '0.25'"),
    )
    .await;
    page.eval(&format!("{row}.querySelector('.toggle').click()"))
        .await;

    // Its second warm would cross the cap: the row's badge says which cap
    // stopped it and when it lifts, the whole stop on hover, and what
    // warming cost it so far.
    let stopped = page
        .wait_for(
            "the cap's stop",
            &format!("{row}.querySelector('.stopped').textContent"),
        )
        .await;
    let badge = stopped.as_str().unwrap();
    assert!(
        badge.starts_with("conversation spend cap · resumes 00:00 UTC, in "),
        "{badge}"
    );
    let full = page
        .eval(&format!("{row}.querySelector('.stopped').title"))
        .await;
    assert!(
        full.as_str()
            .unwrap()
            .contains("--max-spend-per-conversation-day"),
        "{full}"
    );
    // The strip shows the caps in force.
    let caps = page
        .wait_for(
            "the caps in the strip",
            "(t => t.includes('per conversation') && t)(document.querySelector('#summary .caps span').textContent)",
        )
        .await;
    assert!(
        caps.as_str().unwrap().contains("$0.0030 per conversation"),
        "{caps}"
    );
    let net = page
        .wait_for(
            "its net",
            &format!("(t => t !== '+$0.0000' && t)({row}.querySelector('.net').textContent)"),
        )
        .await;
    let state = service.state("dear").await;
    let spent = state["ledger"]["spentDollars"].as_f64().unwrap();
    assert!(spent > 0.0 && spent <= 0.003, "{state}");
    assert_eq!(net, format!("-${spent:.4}"), "the row's net is the state's");
    // The filter of stopped conversations finds it.
    page.eval("(() => { const s = document.getElementById('search'); s.value = ''; s.dispatchEvent(new Event('input')); const f = document.getElementById('filter'); f.value = 'stopped'; f.dispatchEvent(new Event('change')); })()")
        .await;
    page.wait_for(
        "only the stopped one",
        &format!("{row} && document.querySelectorAll('#rows tr[data-id]').length === 1"),
    )
    .await;
    // Its history, as a table: the warm that hit, then the cap's stop.
    page.eval(&format!("{row}.querySelector('button.id').click()"))
        .await;
    let outcomes = page
        .wait_for(
            "the history table",
            &format!(
                "(r => r.length >= 2 && r)([...{row}.nextElementSibling.querySelectorAll('table.history tbody tr')].map(tr => tr.cells[2].textContent))"
            ),
        )
        .await;
    let outcomes: Vec<&str> = outcomes
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_str().unwrap())
        .collect();
    assert_eq!(outcomes[0], "stopped", "{outcomes:?}");
    assert!(
        outcomes[1..].iter().any(|o| *o != "stopped"),
        "the warm that reached the cap: {outcomes:?}"
    );
    // The money strip counts the warm and charts what was spent.
    page.wait_for(
        "the warm in the strip",
        "Number(document.querySelector('#summary .warms b').textContent) >= 1",
    )
    .await;
    page.wait_for(
        "the money chart",
        "document.querySelectorAll('#money-chart polyline').length === 2",
    )
    .await;
    page.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 1200, "height": 760, "deviceScaleFactor": 1, "mobile": false}),
    )
    .await;
    let png = screenshot(&mut page).await;
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-cap.png");
    std::fs::write(&path, &png).unwrap();
    if std::env::var_os("WARMING_UPDATE_SCREENSHOT").is_some() {
        let docs = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/dashboard.png");
        std::fs::write(docs, &png).unwrap();
    }

    // Close, then delete: the row goes, and so does the conversation.
    page.eval(&format!("{row}.querySelector('.close').click()"))
        .await;
    page.wait_for(
        "the close",
        &format!("{row} === null || {row}.querySelector('.toggle-label').textContent === 'off'"),
    )
    .await;
    assert_eq!(service.state("dear").await["enabled"], false);
    // Every conversation again, searched for this one.
    page.eval("(() => { document.getElementById('search').value = 'dear'; const f = document.getElementById('filter'); f.value = ''; f.dispatchEvent(new Event('change')); })()")
        .await;
    page.wait_for(
        "the row again",
        &format!(
            "{row} && !{row}.hidden && document.querySelectorAll('#rows tr[data-id]').length === 1"
        ),
    )
    .await;
    for _ in 0..2 {
        page.eval(&format!("{row}.querySelector('.delete').click()"))
            .await;
    }
    page.wait_for("the row to go", &format!("{row} === null"))
        .await;
    crate::support::eventually(5, "the conversation deleted", || async {
        (service.state("dear").await["known"] == false).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_self_hosted_engines_dashboard_counts_seconds_not_dollars() {
    if chromium_missing() {
        return;
    }
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), &standin.url(), &["--self-hosted"]).await;
    let request = anthropic_request("eng");
    crate::support::provider_turn(&standin.url(), &request).await;
    service.turn_settled("eng", &request).await;
    service.enable("eng", 250).await;
    let (_browser, mut page) = open_dashboard(&service).await;
    let strip = "document.getElementById('summary')";
    let spent = page
        .wait_for(
            "engine time in the strip",
            &format!("(t => t.endsWith(' s') && t !== '0.0 s' && t)({strip}.querySelector('.spent b').textContent)"),
        )
        .await;
    assert!(spent.as_str().unwrap().ends_with(" s"), "{spent}");
    assert_eq!(
        page.eval(&format!("{strip}.querySelector('.spent span').textContent"))
            .await,
        "engine time on warms"
    );
    let note = page
        .eval("document.getElementById('price-note').textContent")
        .await;
    assert!(note.as_str().unwrap().contains("self-hosted"), "{note}");
    let row = r#"document.querySelector('tr[data-id="eng"]')"#;
    let net = page
        .wait_for(
            "the row's net in seconds",
            &format!("(t => t.endsWith(' s') && t)({row}.querySelector('.net').textContent)"),
        )
        .await;
    assert!(
        net.as_str().unwrap().starts_with('-'),
        "warms took time, nothing saved yet: {net}"
    );
}
