//! Traces: conversations as turn arrival times with their cacheable prefix.

use std::collections::HashMap;
use std::io::BufRead;

use serde_json::Value;

/// One turn: when its request arrived and how many prompt tokens a cache
/// could keep for the next turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Turn {
    /// Arrival, ms from the trace's start.
    pub at_ms: u64,
    /// Cacheable prompt tokens of this turn's request.
    pub prefix_tokens: u64,
}

/// A trace: conversations, each with its turns in arrival order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Trace {
    /// Every conversation's turns, sorted by arrival.
    pub conversations: Vec<Vec<Turn>>,
}

/// Why a trace could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// Reading failed.
    #[error("cannot read the trace: {0}")]
    Io(#[from] std::io::Error),
    /// A line is not what the format says.
    #[error("line {line}: {message}")]
    Format {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

impl Trace {
    /// Reads a JSONL trace, recognising the format from its first record:
    /// Mooncake (`hash_ids` as a list), RAGPulse (`session_id`), or plain
    /// `{conversation, at_ms, prompt_tokens}`.
    ///
    /// # Errors
    /// [`TraceError`] on unreadable input or a malformed line.
    pub fn read(reader: impl BufRead) -> Result<Self, TraceError> {
        let mut records = Vec::new();
        for (i, line) in reader.lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let value: Value = serde_json::from_str(&line).map_err(|e| TraceError::Format {
                line: i + 1,
                message: e.to_string(),
            })?;
            records.push((i + 1, value));
        }
        let Some((_, first)) = records.first() else {
            return Ok(Self::default());
        };
        if first.get("session_id").is_some() {
            ragpulse(&records)
        } else if first.get("hash_ids").is_some_and(Value::is_array) {
            mooncake(&records)
        } else {
            plain(&records)
        }
    }

    /// Turns in all conversations.
    #[must_use]
    pub fn turns(&self) -> usize {
        self.conversations.iter().map(Vec::len).sum()
    }

    /// Every gap between consecutive turns of a conversation, ms.
    #[must_use]
    pub fn gaps(&self) -> Vec<u64> {
        self.conversations
            .iter()
            .flat_map(|c| c.windows(2).map(|w| w[1].at_ms.saturating_sub(w[0].at_ms)))
            .collect()
    }

    fn from_groups(groups: Vec<Vec<Turn>>) -> Self {
        let mut conversations: Vec<Vec<Turn>> =
            groups.into_iter().filter(|g| !g.is_empty()).collect();
        for c in &mut conversations {
            c.sort_by_key(|t| t.at_ms);
        }
        Self { conversations }
    }
}

/// Turns grouped into conversations by a named key, in first-seen order.
#[derive(Default)]
struct Groups {
    index: HashMap<String, usize>,
    groups: Vec<Vec<Turn>>,
}

impl Groups {
    fn push(&mut self, key: String, turn: Turn) {
        let groups = &mut self.groups;
        let slot = *self.index.entry(key).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[slot].push(turn);
    }

    fn into_trace(self) -> Trace {
        Trace::from_groups(self.groups)
    }
}

fn field_u64(value: &Value, key: &str, line: usize) -> Result<u64, TraceError> {
    let v = value.get(key).ok_or_else(|| TraceError::Format {
        line,
        message: format!("missing {key}"),
    })?;
    v.as_u64()
        .or_else(|| v.as_f64().map(|f| f.max(0.0) as u64))
        .or_else(|| {
            v.as_str()
                .and_then(|s| s.trim().parse::<f64>().ok())
                .map(|f| f.max(0.0) as u64)
        })
        .ok_or_else(|| TraceError::Format {
            line,
            message: format!("{key} is not a number"),
        })
}

/// Plain JSONL: `{"conversation": str|int, "at_ms": int, "prompt_tokens": int}`.
fn plain(records: &[(usize, Value)]) -> Result<Trace, TraceError> {
    let mut groups = Groups::default();
    for (line, r) in records {
        let id = r
            .get("conversation")
            .map(Value::to_string)
            .ok_or_else(|| TraceError::Format {
                line: *line,
                message: "missing conversation".into(),
            })?;
        let turn = Turn {
            at_ms: field_u64(r, "at_ms", *line)?,
            prefix_tokens: field_u64(r, "prompt_tokens", *line)?,
        };
        groups.push(id, turn);
    }
    Ok(groups.into_trace())
}

/// RAGPulse: conversations by `session_id`, `timestamp` in seconds; the
/// cacheable prefix is the system prompt and history share of the input.
fn ragpulse(records: &[(usize, Value)]) -> Result<Trace, TraceError> {
    let mut groups = Groups::default();
    for (line, r) in records {
        let session = r
            .get("session_id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let seconds = field_u64(r, "timestamp", *line)?;
        let input = field_u64(r, "input_length", *line)?;
        let blocks = |key: &str| {
            r.pointer(&format!("/hash_ids/{key}"))
                .and_then(Value::as_array)
                .map_or(0, Vec::len) as u64
        };
        let kept = blocks("sys_prompt") + blocks("history");
        let total = kept + blocks("passages_ids") + blocks("web_search") + blocks("user_input");
        let prefix_tokens = (input * kept).checked_div(total).unwrap_or(0);
        groups.push(
            session,
            Turn {
                at_ms: seconds * 1000,
                prefix_tokens,
            },
        );
    }
    Ok(groups.into_trace())
}

/// Mooncake: no session ids; request B continues request A when A's full
/// blocks (`hash_ids[..len-1]`, at least 2) are a prefix of B's blocks,
/// taking the latest such A (the traces README's rule).
fn mooncake(records: &[(usize, Value)]) -> Result<Trace, TraceError> {
    let mut parsed = Vec::with_capacity(records.len());
    for (line, r) in records {
        let at_ms = field_u64(r, "timestamp", *line)?;
        let input = field_u64(r, "input_length", *line)?;
        let hashes: Vec<u64> = r
            .get("hash_ids")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default();
        parsed.push((at_ms, input, hashes));
    }
    let mut order: Vec<usize> = (0..parsed.len()).collect();
    order.sort_by_key(|&i| (parsed[i].0, i));
    // Full-block prefix -> (conversation, request) of the latest request
    // whose full blocks are exactly that prefix.
    let mut by_full_blocks: HashMap<Vec<u64>, usize> = HashMap::new();
    let mut conversation_of = vec![usize::MAX; parsed.len()];
    let mut groups: Vec<Vec<Turn>> = Vec::new();
    for &i in &order {
        let (at_ms, input, ref hashes) = parsed[i];
        let parent = (2..hashes.len())
            .rev()
            .find_map(|len| by_full_blocks.get(&hashes[..len]).copied());
        let conversation = match parent {
            Some(p) => conversation_of[p],
            None => {
                groups.push(Vec::new());
                groups.len() - 1
            }
        };
        conversation_of[i] = conversation;
        groups[conversation].push(Turn {
            at_ms,
            prefix_tokens: input,
        });
        if hashes.len() > 2 {
            by_full_blocks.insert(hashes[..hashes.len() - 1].to_vec(), i);
        }
    }
    Ok(Trace::from_groups(groups))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_groups_by_conversation_and_sorts() {
        let text = "{\"conversation\":\"a\",\"at_ms\":5000,\"prompt_tokens\":10}\n{\"conversation\":\"b\",\"at_ms\":0,\"prompt_tokens\":7}\n{\"conversation\":\"a\",\"at_ms\":0,\"prompt_tokens\":9}\n";
        let trace = Trace::read(text.as_bytes()).unwrap();
        assert_eq!(trace.conversations.len(), 2);
        assert_eq!(
            trace.conversations[0][0],
            Turn {
                at_ms: 0,
                prefix_tokens: 9
            }
        );
        assert_eq!(trace.gaps(), vec![5000]);
    }

    #[test]
    fn mooncake_links_by_full_block_prefixes() {
        let text = "\
{\"timestamp\": 0, \"input_length\": 1500, \"hash_ids\": [0, 1, 2]}
{\"timestamp\": 0, \"input_length\": 1200, \"hash_ids\": [0, 7, 8]}
{\"timestamp\": 3000, \"input_length\": 2600, \"hash_ids\": [0, 1, 9, 10, 11]}
{\"timestamp\": 9000, \"input_length\": 3100, \"hash_ids\": [0, 1, 9, 10, 12, 13]}
";
        let trace = Trace::read(text.as_bytes()).unwrap();
        assert_eq!(trace.conversations.len(), 2);
        let long: Vec<u64> = trace.conversations[0].iter().map(|t| t.at_ms).collect();
        assert_eq!(long, [0, 3000, 9000]);
    }

    #[test]
    fn ragpulse_keeps_system_and_history_as_the_prefix() {
        let text = "{\"timestamp\": \"82\", \"input_length\": 1000, \"hash_ids\": {\"sys_prompt\": [1, 2], \"passages_ids\": [3, 4], \"history\": [5], \"web_search\": [], \"user_input\": [6, 7, 8]}, \"session_id\": \"s1\"}\n";
        let trace = Trace::read(text.as_bytes()).unwrap();
        assert_eq!(
            trace.conversations[0][0],
            Turn {
                at_ms: 82_000,
                prefix_tokens: 375
            }
        );
    }

    #[test]
    fn a_bad_line_names_its_number() {
        let err = Trace::read(
            "{\"conversation\":1,\"at_ms\":0,\"prompt_tokens\":1}\nnot json\n".as_bytes(),
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("line 2"), "{err}");
    }
}
