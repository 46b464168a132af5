//! A realistic agent request for the benchmarks (included by path): a
//! ~50 KB system prompt and tool list every conversation shares, then each
//! conversation's own 2-20 KB of turns. Compact JSON with sorted keys, as
//! `warming_core::Template` keeps it.

/// The shared head of every request: system prompt and tools, ~45 KB.
pub fn shared_head() -> String {
    let system = "You are a careful coding agent working in a large repository. ".repeat(480);
    let tools: Vec<String> = (0..40)
        .map(|i| {
            format!(
                r#"{{"name":"tool_{i}","description":"{}","input_schema":{{"type":"object"}}}}"#,
                "does one thing well. ".repeat(20)
            )
        })
        .collect();
    format!(
        r#""system":[{{"type":"text","text":"{system}","cache_control":{{"type":"ephemeral"}}}}],"tools":[{}]"#,
        tools.join(",")
    )
}

/// Conversation `i`'s request: the shared head and 2-20 KB of its own turns.
pub fn request(head: &str, i: usize) -> String {
    let unique_kb = 2 + (i * 7_919) % 19;
    // Each turn its own text (~1 KB), as in a real conversation.
    let turn = |t: usize| format!("conversation {i} turn {t} says something specific. ").repeat(20);
    let turns = (unique_kb * 1_024 / turn(0).len()).max(1);
    let messages: Vec<String> = (0..turns)
        .map(|t| {
            let role = if t % 2 == 0 { "user" } else { "assistant" };
            format!(r#"{{"role":"{role}","content":"{}"}}"#, turn(t))
        })
        .collect();
    format!(
        r#"{{"max_tokens":1024,"messages":[{}],"model":"claude-sonnet-4-5",{head}}}"#,
        messages.join(",")
    )
}
