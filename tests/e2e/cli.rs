//! The command line against a running server.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use warming_testkit::{Standin, StandinOptions};

use crate::support::{anthropic_request, Service};

fn warming(server: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_warming"))
        .args(args)
        .env("WARMING_SERVER", server)
        .env_remove("WARMING_TOKEN")
        .output()
        .unwrap()
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_drive_a_running_server() {
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), &standin.url(), &[]).await;
    service
        .turn_settled("cli-1", &anthropic_request("cli"))
        .await;
    let server = format!("http://{}", service.addr);

    let (out, _) = text(&warming(&server, &["list"]));
    assert!(out.contains("cli-1") && out.contains("off"), "{out}");

    let enabled = warming(&server, &["enable", "cli-1"]);
    assert!(enabled.status.success());
    // One that is on but has no turn to replay says why it is not warming;
    // `list --stopped` shows it and not the one that warms.
    assert!(warming(&server, &["enable", "cli-bare"]).status.success());
    let (out, _) = text(&warming(&server, &["list"]));
    assert!(out.contains("WHY"), "{out}");
    let bare = out.lines().find(|l| l.starts_with("cli-bare")).unwrap();
    assert!(bare.contains("no turn yet"), "{out}");
    let (stopped, _) = text(&warming(&server, &["list", "--stopped"]));
    assert!(stopped.contains("cli-bare"), "{stopped}");
    assert!(!stopped.contains("cli-1 "), "{stopped}");
    assert!(
        text(&enabled).0.contains("warming       on"),
        "{}",
        text(&enabled).0
    );

    let interval = warming(&server, &["interval", "cli-1", "4m30s", "--json"]);
    let state: Value = serde_json::from_slice(&interval.stdout).unwrap();
    assert_eq!(state["intervalMs"], 270_000);

    let policy = warming(&server, &["policy", "cli-1", "pings:3"]);
    assert!(
        text(&policy).0.contains("policy        pings:3"),
        "{}",
        text(&policy).0
    );
    let bad = warming(&server, &["policy", "cli-1", "sometimes"]);
    assert!(!bad.status.success());
    assert!(text(&bad).1.contains("unknown policy"), "{}", text(&bad).1);
    let back = warming(&server, &["policy", "cli-1", "server", "--json"]);
    let state: Value = serde_json::from_slice(&back.stdout).unwrap();
    assert_eq!(state["policy"], "fixed");

    let warm = warming(&server, &["warm", "cli-1"]);
    let (out, err) = text(&warm);
    assert!(warm.status.success(), "{err}");
    // Its first cache write (settled over HTTP): cold, nothing lost.
    assert!(out.starts_with("warmed cli-1: cold"), "{out}");

    let history = warming(&server, &["history", "cli-1", "--limit", "5", "--json"]);
    let history: Value = serde_json::from_slice(&history.stdout).unwrap();
    assert_eq!(history["history"].as_array().unwrap().len(), 1);

    let closed = warming(&server, &["close", "cli-1", "--json"]);
    let state: Value = serde_json::from_slice(&closed.stdout).unwrap();
    assert_eq!(state["enabled"], false);
    let status: Value =
        serde_json::from_slice(&warming(&server, &["status", "cli-1", "--json"]).stdout).unwrap();
    assert_eq!(status["enabled"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mistakes_are_one_line_and_a_non_zero_exit() {
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), &standin.url(), &[]).await;
    let server = format!("http://{}", service.addr);
    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    for (server, args, needle) in [
        (&server, vec!["status", "bad id"], "conversation id"),
        (&server, vec!["interval", "c", "soon"], "not a duration"),
        (&server, vec!["warm", "never-settled"], "nothing to warm"),
        (&server, vec!["history", "c", "--limit", "0"], "--limit"),
        (&down, vec!["list"], "no warming server at"),
        (&down, vec!["list"], "start one with `warming serve`"),
        (&server, vec!["status", "nope"], "not seen yet"),
    ] {
        let output = warming(server, &args);
        let (out, err) = text(&output);
        assert!(!output.status.success(), "{args:?}");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.contains(needle) && !err.contains("panicked"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn every_command_has_an_example_in_its_help() {
    for command in [
        "policy",
        "simulate",
        "serve",
        "list",
        "status",
        "enable",
        "disable",
        "interval",
        "warm",
        "close",
        "delete",
        "history",
        "watch",
        "completions",
    ] {
        let output = warming("http://127.0.0.1:1", &[command, "--help"]);
        let (out, _) = text(&output);
        assert!(output.status.success());
        assert!(
            out.contains("Example: warming ") || out.contains("warming serve"),
            "{command}: {out}"
        );
    }
    let completion = warming("http://127.0.0.1:1", &["completions", "bash"]);
    assert!(text(&completion).0.contains("_warming()"));
    // The server's help lists the server's options, not the client's.
    let (serve_help, _) = text(&warming("http://127.0.0.1:1", &["serve", "--help"]));
    for client_only in ["--server", "--json", "WARMING_SERVER"] {
        assert!(
            !serve_help.contains(client_only),
            "{client_only}: {serve_help}"
        );
    }
    assert!(serve_help.contains("--max-idle") && serve_help.contains("--token"));
    // Neither do the commands that talk to no server.
    let (simulate_help, _) = text(&warming("http://127.0.0.1:1", &["simulate", "--help"]));
    for client_only in ["--server", "--token", "WARMING_SERVER"] {
        assert!(
            !simulate_help.contains(client_only),
            "{client_only}: {simulate_help}"
        );
    }
    assert!(simulate_help.contains("--json") && simulate_help.contains("the report"));
    let (completions_help, _) = text(&warming("http://127.0.0.1:1", &["completions", "--help"]));
    for client_only in ["--server", "--token", "--json"] {
        assert!(
            !completions_help.contains(client_only),
            "{client_only}: {completions_help}"
        );
    }
    // The client's commands keep them.
    let (list_help, _) = text(&warming("http://127.0.0.1:1", &["list", "--help"]));
    assert!(list_help.contains("--server") && list_help.contains("--token"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_says_what_changed_and_what_to_do() {
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service =
        Service::start(dir.path(), &standin.url(), &["--token", "open-sesame-2026"]).await;
    // No scheme: taken as http://.
    let bare = service.addr.to_string();

    let refused = warming(&bare, &["list"]);
    let (_, err) = text(&refused);
    assert!(!refused.status.success());
    assert!(err.contains("set WARMING_TOKEN"), "{err}");
    // A wrong token is told apart from none.
    let wrong = warming(&bare, &["--token", "open-sesame-1999", "list"]);
    let (_, err) = text(&wrong);
    assert!(!wrong.status.success());
    assert!(err.contains("refused the token given"), "{err}");

    let with_token = |args: &[&str]| {
        let mut all = vec!["--token", "open-sesame-2026"];
        all.extend_from_slice(args);
        warming(&bare, &all)
    };
    // A typo creates a conversation...
    assert!(with_token(&["enable", "typo"]).status.success());
    assert!(text(&with_token(&["list"])).0.contains("typo"));
    // ...which delete removes, from the list and the server.
    let deleted = with_token(&["delete", "typo"]);
    assert!(deleted.status.success(), "{}", text(&deleted).1);
    assert!(text(&deleted).0.contains("deleted typo"));
    assert!(!text(&with_token(&["list"])).0.contains("typo"));
    let (_, err) = text(&with_token(&["status", "typo"]));
    assert!(err.contains("not seen yet"), "{err}");

    // An interval the server clamps says so, in the CLI's words.
    let clamped = with_token(&["interval", "c", "1ms"]);
    let (out, err) = text(&clamped);
    assert!(clamped.status.success(), "{err}");
    assert!(
        out.contains("interval clamped to 200ms (server minimum)"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_follows_updates_live() {
    let standin = Standin::start(StandinOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), &standin.url(), &[]).await;
    service.turn_settled("w", &anthropic_request("w")).await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_warming"))
        .args(["watch", "w", "--json"])
        .env("WARMING_SERVER", format!("http://{}", service.addr))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(
        (first["type"].as_str(), first["conversationId"].as_str()),
        (Some("surface"), Some("w"))
    );
    let (status, _) = service.call("POST", "/v1/conversations/w/warm", None).await;
    assert_eq!(status, 200);
    let update = tokio::task::spawn_blocking(move || {
        lines
            .map(|l| serde_json::from_str::<Value>(&l.unwrap()).unwrap())
            .find(|m| m["state"]["warmCount"] == 1)
    })
    .await
    .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(update.unwrap()["type"], "update");
}

#[test]
fn simulate_reports_every_policy_with_plots() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("tiny.jsonl");
    let mut lines = String::new();
    for c in 0..20 {
        lines.push_str(&format!(
            "{{\"conversation\": {c}, \"at_ms\": {}, \"prompt_tokens\": 8000}}\n",
            c * 1000
        ));
        if c % 2 == 0 {
            lines.push_str(&format!(
                "{{\"conversation\": {c}, \"at_ms\": {}, \"prompt_tokens\": 9000}}\n",
                c * 1000 + 420_000
            ));
        }
    }
    std::fs::write(&trace, lines).unwrap();
    let out = dir.path().join("report");
    let output = warming(
        "http://127.0.0.1:1",
        &[
            "simulate",
            trace.to_str().unwrap(),
            "--lambda",
            "0,0.01",
            "--out",
            out.to_str().unwrap(),
            "--json",
        ],
    );
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    let reports: Value = serde_json::from_str(&stdout).unwrap();
    let rows = reports[0]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    // The first 10% of a trace teaches the prior and is not counted.
    assert_eq!(reports[0]["warmUp"], 0.1);
    let names: Vec<&str> = rows[0]["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["scenario"].as_str().unwrap())
        .collect();
    for want in [
        "none",
        "1h-cache",
        "fixed",
        "pings:1",
        "breakeven",
        "adaptive",
        "oracle",
    ] {
        assert!(names.contains(&want), "{names:?}");
    }
    for plot in ["tiny-cost.svg", "tiny-frontier.svg", "tiny-gaps.svg"] {
        let svg = std::fs::read_to_string(out.join(plot)).unwrap();
        assert!(svg.starts_with("<svg"), "{plot}");
    }
    let bad = warming("http://127.0.0.1:1", &["simulate", "/nonexistent.jsonl"]);
    assert!(!bad.status.success());
    assert_eq!(text(&bad).1.lines().count(), 1);
    let whole = warming(
        "http://127.0.0.1:1",
        &["simulate", trace.to_str().unwrap(), "--warm-up", "1"],
    );
    assert!(!whole.status.success());
    assert!(text(&whole).1.contains("--warm-up"), "{}", text(&whole).1);
}
