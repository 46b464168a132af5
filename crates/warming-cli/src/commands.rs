//! The commands that talk to a running server, and how their answers print.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use crate::client::{format_duration, parse_duration, Client, ClientError};
use serde_json::{json, Value};

/// A command for a running server.
#[derive(Debug, clap::Subcommand)]
pub enum RemoteCommand {
    /// List every known conversation, with WHY one that is on is not
    /// warming.
    ///
    /// Example: warming list --stopped
    List {
        /// Only the conversations that are on and not warming, and why.
        #[arg(long)]
        stopped: bool,
    },
    /// Show one conversation.
    ///
    /// Example: warming status chat-42
    Status {
        /// Conversation id.
        id: String,
    },
    /// Turn warming on.
    ///
    /// Example: warming enable chat-42
    Enable {
        /// Conversation id.
        id: String,
    },
    /// Turn warming off.
    ///
    /// Example: warming disable chat-42
    Disable {
        /// Conversation id.
        id: String,
    },
    /// Set the time between warms.
    ///
    /// Example: warming interval chat-42 4m30s
    Interval {
        /// Conversation id.
        id: String,
        /// A duration: 4m30s, 90s, 1h, 1500ms, or plain seconds.
        duration: String,
    },
    /// Choose when warming stops for one conversation.
    ///
    /// Example: warming policy chat-42 pings:3   (or: fixed, breakeven, adaptive, server)
    Policy {
        /// Conversation id.
        id: String,
        /// fixed, pings:N, breakeven, adaptive, or server (the server's --policy).
        policy: String,
    },
    /// Warm now and show the result.
    ///
    /// Example: warming warm chat-42
    Warm {
        /// Conversation id.
        id: String,
    },
    /// Close the conversation: warming off, generation aborted.
    ///
    /// Example: warming close chat-42
    Close {
        /// Conversation id.
        id: String,
    },
    /// Delete the conversation and its history, in memory and on disk.
    ///
    /// Example: warming delete chat-42
    Delete {
        /// Conversation id.
        id: String,
    },
    /// Show past warms, newest first.
    ///
    /// Example: warming history chat-42 --limit 20
    History {
        /// Conversation id.
        id: String,
        /// How many warms.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Follow a conversation live: countdown to the next warm, each warm's hit %.
    ///
    /// Example: warming watch chat-42
    Watch {
        /// Conversation id.
        id: String,
    },
}

/// Prints a line; a closed pipe (`warming list | head`) is not an error.
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

fn now_ms() -> u64 {
    warming_service::Clock::now(&warming_service::SystemClock).as_millis()
}

fn pct(v: &Value) -> String {
    v.as_f64().map_or("-".into(), |p| format!("{p:.1}%"))
}

fn ago(v: &Value) -> String {
    v.as_u64()
        .map_or("-".into(), |t| match now_ms().saturating_sub(t) / 1000 {
            0 => "just now".into(),
            seconds => format!("{} ago", format_duration(seconds * 1000)),
        })
}

fn countdown(v: &Value) -> String {
    match v.as_u64() {
        Some(t) if t > now_ms() => format!(
            "in {}",
            format_duration((t - now_ms()).div_ceil(1000) * 1000)
        ),
        Some(_) => "due now".into(),
        None => "-".into(),
    }
}

/// How the returning turns found the cache: "3/4 hit" (hits of returning
/// turns), or "-" before the first.
fn turns_text(state: &Value) -> String {
    let turns = &state["turns"];
    match turns["returning"].as_u64() {
        Some(returning) if returning > 0 => {
            format!("{}/{returning} hit", turns["hits"].as_u64().unwrap_or(0))
        }
        _ => "-".into(),
    }
}

fn on_off(state: &Value) -> &'static str {
    if state["enabled"] == true {
        "on"
    } else {
        "off"
    }
}

/// One conversation as a block of lines.
/// The keep-alive plan: `replay ($0.0450 an idle hour): why`.
fn keep_alive_text(plan: &Value) -> String {
    let name = plan["plan"].as_str().unwrap_or("replay");
    let cost = plan["costPerIdleHour"].as_f64().unwrap_or(0.0);
    let why = plan["why"].as_str().unwrap_or_default();
    let upgraded = if plan["upgradedAt"].is_u64() {
        format!(" (asked {})", ago(&plan["upgradedAt"]))
    } else {
        String::new()
    };
    format!("{name}{upgraded}, ${cost:.4} an idle hour: {why}")
}

fn status_text(state: &Value) -> String {
    let interval = state["intervalMs"]
        .as_u64()
        .map_or("-".into(), format_duration);
    let mut lines = vec![
        format!(
            "conversation  {}",
            state["conversationId"].as_str().unwrap_or("?")
        ),
        format!("warming       {} (every {interval})", on_off(state)),
        format!(
            "turn          {}",
            if state["active"] == true {
                "generating"
            } else {
                "idle"
            }
        ),
        format!("next warm     {}", countdown(&state["nextWarmAt"])),
        format!("last warm     {}", ago(&state["lastWarmAt"])),
        format!(
            "last hit      {} (retention {})",
            pct(&state["lastPct"]),
            pct(&state["lastExpectedPct"])
        ),
        format!("warms         {}", state["warmCount"]),
        format!(
            "turns         {} (last returning turn read {})",
            turns_text(state),
            pct(&state["turns"]["lastPct"])
        ),
        format!("money         {}", money_text(state)),
        format!("policy        {}", state["policy"].as_str().unwrap_or("-")),
        format!("keep-alive    {}", keep_alive_text(&state["keepAlive"])),
    ];
    if let Some(reason) = state["stoppedReason"].as_str() {
        lines.push(format!("stopped       {reason}"));
    }
    match clamped_text(&state["clamped"]) {
        Some(text) => lines.push(format!("note          {text}")),
        None => {
            for note in state["notes"].as_array().into_iter().flatten() {
                lines.push(format!(
                    "note          {}",
                    note.as_str().unwrap_or_default()
                ));
            }
        }
    }
    if let Some(backend) = state["backend"].as_str() {
        lines.push(format!("backend       {backend}"));
    }
    if let Some(error) = state["lastError"].as_str() {
        lines.push(format!("last error    {error}"));
    }
    lines.join("\n")
}

/// A clamped interval in the CLI's words, from the answer's `clamped`
/// (data, not the note's prose): "interval clamped to 10s (server minimum)".
fn clamped_text(clamped: &Value) -> Option<String> {
    let applied = clamped["appliedMs"].as_u64()?;
    let bound = match clamped["bound"].as_str()? {
        "minimum" => "server minimum",
        "maximum" => "server maximum",
        _ => "not a positive number: the server minimum",
    };
    Some(format!(
        "interval clamped to {} ({bound})",
        format_duration(applied)
    ))
}

/// Dollars with a sign, to the hundredth of a cent: warms cost fractions
/// of a cent each.
fn signed_dollars(dollars: f64) -> String {
    let sign = if dollars < 0.0 { "-" } else { "+" };
    format!("{sign}${:.4}", dollars.abs())
}

/// Whether the conversation's money is an engine's time (`--self-hosted`).
fn engine_priced(state: &Value) -> bool {
    state["priced"] == "engine"
}

/// Seconds of engine time saved (prefill of misses avoided, replays the
/// engine made needless) minus spent, with a sign.
fn engine_net(state: &Value) -> f64 {
    let ledger = &state["ledger"];
    let figure = |key: &str| ledger[key].as_f64().unwrap_or(0.0);
    figure("savedPrefillSeconds") + figure("engineSecondsSaved") - figure("warmSeconds")
}

/// Seconds with a sign, to the tenth.
fn signed_seconds(seconds: f64) -> String {
    let sign = if seconds < 0.0 { "-" } else { "+" };
    format!("{sign}{:.1}s", seconds.abs())
}

/// The net a row shows: dollars, or an engine's seconds.
fn net_text(state: &Value) -> String {
    if engine_priced(state) {
        signed_seconds(engine_net(state))
    } else {
        signed_dollars(state["netDollars"].as_f64().unwrap_or(0.0))
    }
}

/// What warming spent and saved on a conversation, in one line.
fn money_text(state: &Value) -> String {
    let ledger = &state["ledger"];
    let figure = |key: &str| ledger[key].as_f64().unwrap_or(0.0);
    let avoided = ledger["missesAvoided"].as_u64().unwrap_or(0);
    if engine_priced(state) {
        let not_sent = ledger["replaysAvoided"].as_u64().unwrap_or(0);
        return format!(
            "net {} of engine time (warms took {:.1}s; {avoided} miss{} avoided saved {:.1}s \
             of prefill; {not_sent} replay{} not sent saved {:.1}s)",
            signed_seconds(engine_net(state)),
            figure("warmSeconds"),
            if avoided == 1 { "" } else { "es" },
            figure("savedPrefillSeconds"),
            if not_sent == 1 { "" } else { "s" },
            figure("engineSecondsSaved"),
        );
    }
    let unrepaid = ledger["unrepaidWarms"].as_u64().unwrap_or(0);
    format!(
        "net {} (spent ${:.4}, {:.1}s of upstream time; saved ${:.4} and {:.1}s of prefill \
         on {avoided} miss{} avoided; {unrepaid} warm{} no return repaid)",
        signed_dollars(state["netDollars"].as_f64().unwrap_or(0.0)),
        figure("spentDollars"),
        figure("warmSeconds"),
        figure("savedDollars"),
        figure("savedPrefillSeconds"),
        if avoided == 1 { "" } else { "es" },
        if unrepaid == 1 { "" } else { "s" },
    )
}

fn list_text(list: &Value) -> String {
    let rows = list["conversations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if rows.is_empty() {
        return "no conversations yet".into();
    }
    let mut out = format!(
        "{:<32} {:<4} {:>8} {:>12} {:>9} {:>6} {:>9} {:>10}  {:<16} {}\n",
        "CONVERSATION",
        "WARM",
        "INTERVAL",
        "NEXT",
        "LAST HIT",
        "WARMS",
        "TURNS",
        "$ NET",
        "WHY",
        "ERROR"
    );
    for s in rows {
        out.push_str(&format!(
            "{:<32} {:<4} {:>8} {:>12} {:>9} {:>6} {:>9} {:>10}  {:<16} {}\n",
            s["conversationId"].as_str().unwrap_or("?"),
            on_off(&s),
            s["intervalMs"].as_u64().map_or("-".into(), format_duration),
            countdown(&s["nextWarmAt"]),
            pct(&s["lastPct"]),
            s["warmCount"],
            turns_text(&s),
            net_text(&s),
            why_text(&s),
            s["lastError"].as_str().unwrap_or(""),
        ));
    }
    out.trim_end().to_owned()
}

/// Why a conversation that is on is not warming, in a word or two (the
/// state's `stoppedReason` says it in full); empty when it is warming, or
/// off.
fn why_text(s: &Value) -> &'static str {
    if s["enabled"] != true {
        return "";
    }
    if let Some(code) = s["stop"]["code"].as_str() {
        return match code {
            "spendCap" | "conversationSpendCap" => "spend cap",
            "idleCap" => "idle cap",
            "belowMinimum" => "below minimum",
            "smallSaving" => "small saving",
            "refused" => "refused",
            "nothingCached" => "nothing cached",
            "closeNotStored" => "close not stored",
            "savedOnEngine" => "saved on engine",
            _ => "policy",
        };
    }
    if s["active"] == true {
        return "turn running";
    }
    if s["keepAlive"]["plan"] == "none" {
        return "kept by provider";
    }
    if s["nextWarmAt"].is_null() && s["warmCount"] == 0 && s["lastError"].is_null() {
        return "no turn yet";
    }
    ""
}

fn history_text(history: &Value) -> String {
    let rows = history["history"].as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        return "no warms yet".into();
    }
    let mut out = format!(
        "{:>12} {:<9} {:<8} {:>9} {:<16} {:>8}  {}\n",
        "WHEN", "TRIGGER", "OUTCOME", "HIT", "REFRESHES", "LATENCY", "ERROR"
    );
    for h in rows {
        out.push_str(&format!(
            "{:>12} {:<9} {:<8} {:>9} {:<16} {:>8}  {}\n",
            ago(&h["finishedAt"]),
            h["trigger"].as_str().unwrap_or("?"),
            h["outcome"].as_str().unwrap_or("?"),
            pct(&h["pct"]),
            h["refreshes"].as_str().unwrap_or("-"),
            h["latencyMs"]
                .as_u64()
                .map_or("-".into(), |ms| format!("{ms}ms")),
            h["error"].as_str().unwrap_or(""),
        ));
    }
    out.trim_end().to_owned()
}

fn warm_text(record: &Value) -> String {
    format!(
        "warmed {}: {} {} (retention {}) in {}ms",
        record["conversationId"].as_str().unwrap_or("?"),
        record["outcome"].as_str().unwrap_or("?"),
        pct(&record["pct"]),
        pct(&record["expectedPct"]),
        record["latencyMs"]
    )
}

/// One line for `watch`.
fn watch_line(state: &Value) -> String {
    format!(
        "{}  warming {}  next warm {}  last hit {}  warms {}{}{}",
        state["conversationId"].as_str().unwrap_or("?"),
        on_off(state),
        countdown(&state["nextWarmAt"]),
        pct(&state["lastPct"]),
        state["warmCount"],
        state["stoppedReason"]
            .as_str()
            .map(|r| format!("  stopped: {r}"))
            .unwrap_or_default(),
        state["lastError"]
            .as_str()
            .map(|e| format!("  error: {e}"))
            .unwrap_or_default()
    )
}

/// A typed answer as the server's JSON, for printing.
/// A state as the server serves it.
fn state_json(state: &warming_core::ConversationState) -> Value {
    to_json(&warming_transport::state_json::StateJson::from(state))
}

fn to_json<T: serde::Serialize>(typed: &T) -> Value {
    serde_json::to_value(typed).unwrap_or(Value::Null)
}

/// Runs a command; `Err` is the one line to print.
pub async fn run(client: &Client, json: bool, command: RemoteCommand) -> Result<(), String> {
    // The texts read the answers as the server's JSON (typed answers
    // serialize back to it); --json prints that JSON.
    let show = |value: Value, text: fn(&Value) -> String| {
        if json {
            say!("{value}");
        } else {
            say!("{}", text(&value));
        }
    };

    let err = |e: ClientError| e.to_string();
    match command {
        RemoteCommand::List { stopped } => {
            let conversations = client.list().await.map_err(err)?;
            let conversations: Vec<Value> = conversations
                .iter()
                .map(state_json)
                .filter(|s| !stopped || !why_text(s).is_empty())
                .collect();
            show(json!({ "conversations": conversations }), list_text);
        }
        RemoteCommand::Status { id } => {
            let state = state_json(&client.status(&id).await.map_err(err)?);
            if state["known"] == false {
                if json {
                    say!("{state}");
                }
                return Err(format!(
                    "{id}: not seen yet (no turn, event or setting reported for it)"
                ));
            }
            show(state, status_text);
        }
        RemoteCommand::Delete { id } => {
            let state = state_json(&client.delete(&id).await.map_err(err)?);
            if json {
                say!("{state}");
            } else {
                say!("deleted {id} and its history");
            }
        }
        RemoteCommand::Enable { id } => {
            show(
                to_json(&client.settings(&id, Some(true), None).await.map_err(err)?),
                status_text,
            );
        }
        RemoteCommand::Disable { id } => {
            show(
                to_json(&client.settings(&id, Some(false), None).await.map_err(err)?),
                status_text,
            );
        }
        RemoteCommand::Interval { id, duration } => {
            let ms = parse_duration(&duration)?;
            show(
                to_json(&client.settings(&id, None, Some(ms)).await.map_err(err)?),
                status_text,
            );
        }
        RemoteCommand::Policy { id, policy } => {
            let choice = (policy != "server").then_some(policy.as_str());
            show(
                to_json(&client.policy(&id, choice).await.map_err(err)?),
                status_text,
            );
        }
        RemoteCommand::Warm { id } => {
            show(to_json(&client.warm(&id).await.map_err(err)?), warm_text)
        }
        RemoteCommand::Close { id } => {
            show(
                state_json(&client.close(&id).await.map_err(err)?),
                status_text,
            );
        }
        RemoteCommand::History { id, limit } => {
            if !(1..=1000).contains(&limit) {
                return Err(format!("--limit must be from 1 to 1000, got {limit}"));
            }
            let history = client.history(&id, limit).await.map_err(err)?;
            show(
                json!({ "conversationId": id, "history": history }),
                history_text,
            );
        }
        RemoteCommand::Watch { id } => watch(client, json, &id).await?,
    }
    Ok(())
}

/// Prints every update; on a terminal, also redraws the countdown each second.
async fn watch(client: &Client, json: bool, id: &str) -> Result<(), String> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let client = client.clone();
    let id = id.to_owned();
    let mut socket =
        tokio::spawn(async move { client.watch(&id, |m| drop(tx.send(m.clone()))).await });
    let live = std::io::stdout().is_terminal() && !json;
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let mut current: Option<Value> = None;
    let mut last_count = None;
    loop {
        tokio::select! {
            message = rx.recv() => {
                let Some(message) = message else { break };
                if json {
                    say!("{message}");
                    continue;
                }
                let state = message["state"].clone();
                if last_count.is_some() && state["warmCount"] != last_count.clone().unwrap_or(Value::Null) {
                    let line = format!("warm #{}: hit {} (retention {})", state["warmCount"], pct(&state["lastPct"]), pct(&state["lastExpectedPct"]));
                    if live { let _ = write!(std::io::stdout(), "\r\x1b[K"); }
                    say!("{line}");
                }
                last_count = Some(state["warmCount"].clone());
                if live {
                    let _ = write!(std::io::stdout(), "\r\x1b[K{}", watch_line(&state));
                } else {
                    say!("{}", watch_line(&state));
                }
                current = Some(state);
            }
            _ = ticker.tick(), if live => {
                if let Some(state) = &current {
                    let _ = write!(std::io::stdout(), "\r\x1b[K{}", watch_line(state));
                }
            }
            result = &mut socket => {
                return match result {
                    Ok(Ok(())) => Err("the server closed the connection".into()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
            }
        }
        let _ = std::io::stdout().flush();
    }
    Ok(())
}
