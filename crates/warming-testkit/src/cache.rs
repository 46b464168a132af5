//! The stand-in's prefix cache: what a provider really has cached, with a TTL
//! that restarts on every read.
//!
//! A prompt is cut into blocks, and a cache entry is the hash of every block
//! up to one of them. Which entries a request writes and where it looks for
//! them follow each provider's documentation:
//! - Anthropic "Prompt caching": the prefix is `tools`, `system`, then
//!   `messages`, in that order; an entry is written at each `cache_control`
//!   breakpoint (or at the last block, for a request-level `cache_control`);
//!   a lookup at a breakpoint also checks the block boundaries before it, up
//!   to 20 blocks back, and the longest match is read; every use refreshes
//!   the entry's TTL. Changing the thinking parameters invalidates the
//!   entries of messages, while tools and system stay cached ("Prompt
//!   caching", what invalidates the cache), so message entries are keyed by
//!   them. The cache sees the prompt, not the JSON: a string `content` is
//!   one text block, and `cache_control` marks where to write without being
//!   part of what is written.
//! - OpenAI "Prompt caching": every prefix is cached automatically, so every
//!   block boundary is an entry.
//! - The longer retention: Anthropic "Prompt caching" (1-hour cache
//!   duration: `cache_control: {"type": "ephemeral", "ttl": "1h"}` keeps an
//!   entry an hour after its last use, refreshed at no cost when read) and
//!   OpenAI "Prompt caching" (prompt cache retention: `"24h"` keeps cached
//!   prefixes up to 24 hours). An entry keeps the longest TTL it was
//!   written or read with. A request marking some breakpoints `1h` and
//!   others not is treated as asking the longer TTL for every entry it
//!   writes (Anthropic requires the longer ones to come first; warming's
//!   rewrite marks them all).

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;

/// How many blocks before a breakpoint Anthropic's lookup checks.
pub const ANTHROPIC_LOOKBACK_BLOCKS: usize = 20;

/// One prompt cut into cacheable blocks.
#[derive(Debug)]
pub struct Prompt {
    /// Hash of the prefix ending with each block.
    prefix_hashes: Vec<u64>,
    /// Tokens of the prefix ending with each block.
    prefix_tokens: Vec<u64>,
    /// The blocks where the request writes an entry, ascending.
    breakpoints: Vec<usize>,
    /// How many blocks before a breakpoint a lookup also checks.
    lookback: usize,
    /// The request asks for the longer retention.
    long: bool,
}

/// Rough token count of a JSON fragment: 4 bytes a token.
fn tokens(v: &Value) -> u64 {
    (v.to_string().len() as u64).div_ceil(4).max(1)
}

/// One block as the model sees it: `cache_control` removed, a string as
/// one text block.
fn normalized(block: &Value) -> Value {
    match block {
        Value::String(text) => json!({"type": "text", "text": text}),
        Value::Object(map) => {
            let mut map = map.clone();
            map.remove("cache_control");
            Value::Object(map)
        }
        other => other.clone(),
    }
}

/// The blocks of a `system` or `content` value: a string is one block.
fn blocks(value: &Value) -> Vec<&Value> {
    match value {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    }
}

fn marked(block: &Value) -> bool {
    block.get("cache_control").is_some()
}

/// Blocks cut from a prompt, before hashing.
#[derive(Default)]
struct Cutter {
    hasher: Option<DefaultHasher>,
    hashes: Vec<u64>,
    tokens: Vec<u64>,
    total: u64,
    breakpoints: Vec<usize>,
}

impl Cutter {
    fn new(model: &str) -> Self {
        let mut hasher = DefaultHasher::new();
        model.hash(&mut hasher);
        Self {
            hasher: Some(hasher),
            ..Self::default()
        }
    }

    /// Mixes something into every later prefix without adding a block (a
    /// role boundary, the thinking parameters).
    fn key(&mut self, key: &str) {
        if let Some(h) = self.hasher.as_mut() {
            key.hash(h);
        }
    }

    fn push(&mut self, block: &Value, breakpoint: bool) {
        let block = normalized(block);
        if let Some(h) = self.hasher.as_mut() {
            block.to_string().hash(h);
            self.hashes.push(h.finish());
        }
        self.total += tokens(&block);
        self.tokens.push(self.total);
        if breakpoint {
            self.breakpoints.push(self.hashes.len() - 1);
        }
    }

    fn finish(self, lookback: usize) -> Prompt {
        Prompt {
            prefix_hashes: self.hashes,
            prefix_tokens: self.tokens,
            breakpoints: self.breakpoints,
            lookback,
            long: false,
        }
    }
}

impl Prompt {
    /// An Anthropic Messages body (see the module's rules).
    #[must_use]
    pub fn anthropic(body: &Value) -> Self {
        let model = body.get("model").and_then(Value::as_str).unwrap_or("");
        let mut cut = Cutter::new(model);
        if let Some(Value::Array(tools)) = body.get("tools") {
            for tool in tools {
                cut.push(tool, marked(tool));
            }
        }
        if let Some(system) = body.get("system") {
            cut.key("system");
            for block in blocks(system) {
                cut.push(block, marked(block));
            }
        }
        cut.key(&crate::rules::thinking_key(body));
        if let Some(Value::Array(messages)) = body.get("messages") {
            for message in messages {
                cut.key(message.get("role").and_then(Value::as_str).unwrap_or(""));
                if let Some(content) = message.get("content") {
                    for block in blocks(content) {
                        cut.push(block, marked(block));
                    }
                }
            }
        }
        // A request-level `cache_control` writes at the last block.
        if body.get("cache_control").is_some() && !cut.hashes.is_empty() {
            let last = cut.hashes.len() - 1;
            if cut.breakpoints.last() != Some(&last) {
                cut.breakpoints.push(last);
            }
        }
        cut.finish(ANTHROPIC_LOOKBACK_BLOCKS)
    }

    /// Every block of `items` a cached prefix (OpenAI).
    fn every_prefix(model: &str, items: &[&Value]) -> Self {
        let mut cut = Cutter::new(model);
        for item in items {
            cut.push(item, true);
        }
        cut.finish(0)
    }

    /// An OpenAI Chat body: `tools`, then each message; every prefix is
    /// cached automatically.
    #[must_use]
    pub fn openai(body: &Value) -> Self {
        let model = body.get("model").and_then(Value::as_str).unwrap_or("");
        let mut items: Vec<&Value> = body.get("tools").into_iter().collect();
        if let Some(Value::Array(messages)) = body.get("messages") {
            items.extend(messages);
        }
        Self::every_prefix(model, &items)
    }

    /// A Gemini `generateContent` body: `tools`, `systemInstruction`, then
    /// each of `contents`, every prefix cached (implicit caching).
    #[must_use]
    pub fn gemini(model: &str, body: &Value) -> Self {
        let mut items: Vec<&Value> = ["tools", "systemInstruction"]
            .iter()
            .filter_map(|k| body.get(*k))
            .collect();
        if let Some(Value::Array(contents)) = body.get("contents") {
            items.extend(contents);
        }
        Self::every_prefix(model, &items)
    }

    /// An OpenAI Responses body: `tools`, `instructions`, then each item of
    /// `input` (one string is one item), every prefix cached.
    #[must_use]
    pub fn responses(body: &Value) -> Self {
        let model = body.get("model").and_then(Value::as_str).unwrap_or("");
        let mut items: Vec<&Value> = ["tools", "instructions"]
            .iter()
            .filter_map(|k| body.get(*k))
            .collect();
        match body.get("input") {
            Some(Value::Array(input)) => items.extend(input),
            Some(text @ Value::String(_)) => items.push(text),
            _ => {}
        }
        Self::every_prefix(model, &items)
    }

    /// The same prompt, asking (`long`) for the longer retention or not.
    #[must_use]
    pub fn with_long_retention(mut self, long: bool) -> Self {
        self.long = long;
        self
    }

    /// The same prompt with no entry shorter than `minimum` tokens (the
    /// providers' minimum cacheable length: shorter prefixes are answered
    /// but never cached).
    #[must_use]
    pub fn with_minimum(mut self, minimum: u64) -> Self {
        let tokens = &self.prefix_tokens;
        self.breakpoints.retain(|&b| tokens[b] >= minimum);
        self
    }

    /// All prompt tokens.
    #[must_use]
    pub fn total_tokens(&self) -> u64 {
        self.prefix_tokens.last().copied().unwrap_or(0)
    }

    /// Tokens up to the last entry the request writes.
    fn cacheable_tokens(&self) -> u64 {
        self.breakpoints
            .last()
            .map_or(0, |&b| self.prefix_tokens[b])
    }
}

/// What one request found in and did to the cache, in tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheOutcome {
    /// Read from the cache.
    pub read: u64,
    /// Written to the cache.
    pub written: u64,
    /// Neither.
    pub uncached: u64,
}

/// Prefix hash to expiry and the entry's TTL.
#[derive(Debug)]
pub struct PrefixCache {
    ttl: Duration,
    long_ttl: Duration,
    entries: HashMap<u64, (Instant, Duration)>,
    /// Requests served since expired entries were last dropped.
    since_purge: usize,
}

/// Expired entries are dropped once per this many requests: a lookup
/// ignores them anyway, and dropping them on every request would cost the
/// whole map each time (a benchmark's 100 000 conversations made the
/// stand-in, not warming, the slow part).
const PURGE_EVERY: usize = 4_096;

impl PrefixCache {
    /// An empty cache whose entries live `ttl` after their last use, or
    /// `long_ttl` when written or read by a request asking for the longer
    /// retention.
    #[must_use]
    pub fn new(ttl: Duration, long_ttl: Duration) -> Self {
        Self {
            ttl,
            long_ttl,
            entries: HashMap::new(),
            since_purge: 0,
        }
    }

    /// Serves one request at `now`: reads the longest live entry any of its
    /// lookups finds, refreshes it, and writes an entry at each breakpoint.
    pub fn serve(&mut self, prompt: &Prompt, now: Instant) -> CacheOutcome {
        self.since_purge += 1;
        if self.since_purge >= PURGE_EVERY {
            self.since_purge = 0;
            self.entries.retain(|_, (expiry, _)| *expiry > now);
        }
        let live = |entries: &HashMap<u64, (Instant, Duration)>, hash: &u64| {
            entries.get(hash).is_some_and(|(expiry, _)| *expiry > now)
        };
        let hit = prompt
            .breakpoints
            .iter()
            .filter_map(|&b| {
                (b.saturating_sub(prompt.lookback)..=b)
                    .rev()
                    .find(|&i| live(&self.entries, &prompt.prefix_hashes[i]))
            })
            .max();
        let read = hit.map_or(0, |i| prompt.prefix_tokens[i]);
        let asked = if prompt.long { self.long_ttl } else { self.ttl };
        let written_at = prompt.breakpoints.iter().copied();
        for i in hit.into_iter().chain(written_at) {
            let hash = prompt.prefix_hashes[i];
            let kept = self
                .entries
                .get(&hash)
                .filter(|(expiry, _)| *expiry > now)
                .map_or(asked, |&(_, ttl)| ttl.max(asked));
            self.entries.insert(hash, (now + kept, kept));
        }
        let cacheable = prompt.cacheable_tokens().max(read);
        CacheOutcome {
            read,
            written: cacheable - read,
            uncached: prompt.total_tokens() - cacheable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(turns: usize) -> Value {
        let mut messages: Vec<Value> = (0..turns)
            .map(|i| json!({"role": if i % 2 == 0 {"user"} else {"assistant"}, "content": format!("turn {i} with some words")}))
            .collect();
        if let Some(last) = messages.last_mut() {
            last["content"] =
                json!([{"type": "text", "text": "last", "cache_control": {"type": "ephemeral"}}]);
        }
        json!({"model": "m", "system": "You are terse.", "messages": messages})
    }

    fn next_turn(mut body: Value) -> Value {
        let messages = body["messages"].as_array_mut().unwrap();
        // The client moves its breakpoint to the new last message.
        let last = messages.last_mut().unwrap();
        last["content"] = json!("last");
        messages.push(json!({"role": "assistant", "content": "x"}));
        messages.push(json!({"role": "user", "content": [{"type": "text", "text": "y", "cache_control": {"type": "ephemeral"}}]}));
        body
    }

    #[test]
    fn a_request_asking_the_longer_retention_keeps_its_entries_that_long() {
        let mut cache = PrefixCache::new(Duration::from_secs(2), Duration::from_secs(60));
        let t0 = Instant::now();
        let short = Prompt::anthropic(&body(4));
        let long = Prompt::anthropic(&body(4)).with_long_retention(true);
        cache.serve(&long, t0);
        // Past the short TTL, within the long one: still read.
        assert!(cache.serve(&short, t0 + Duration::from_secs(30)).read > 0);
        // Read by a request that did not ask, it keeps its own TTL.
        assert!(cache.serve(&short, t0 + Duration::from_secs(80)).read > 0);
        assert_eq!(cache.serve(&short, t0 + Duration::from_secs(200)).read, 0);
    }

    #[test]
    fn hits_within_the_ttl_and_misses_after() {
        let mut cache = PrefixCache::new(Duration::from_secs(2), Duration::from_secs(3_600));
        let prompt = Prompt::anthropic(&body(3));
        let t0 = Instant::now();
        let first = cache.serve(&prompt, t0);
        assert_eq!((first.read, first.uncached), (0, 0));
        assert_eq!(first.written, prompt.total_tokens());
        let hit = cache.serve(&prompt, t0 + Duration::from_millis(1_900));
        assert_eq!(hit.read, prompt.total_tokens());
        // The read refreshed the TTL: still alive 3.8 s after the first write.
        let still = cache.serve(&prompt, t0 + Duration::from_millis(3_800));
        assert_eq!(still.read, prompt.total_tokens());
        let miss = cache.serve(&prompt, t0 + Duration::from_millis(6_000));
        assert_eq!(miss.read, 0);
    }

    #[test]
    fn the_next_turn_reads_the_entry_written_at_the_moved_breakpoint() {
        // Anthropic "Prompt caching": the lookup at the new breakpoint
        // checks earlier block boundaries; `cache_control` moving off a
        // block and a string standing for one text block change nothing.
        let mut cache = PrefixCache::new(Duration::from_secs(60), Duration::from_secs(3_600));
        let now = Instant::now();
        let short = Prompt::anthropic(&body(3));
        cache.serve(&short, now);
        let outcome = cache.serve(&Prompt::anthropic(&next_turn(body(3))), now);
        assert_eq!(outcome.read, short.total_tokens());
        assert!(outcome.written > 0);
    }

    #[test]
    fn a_lookup_reaches_back_twenty_blocks_and_no_further() {
        let mut cache = PrefixCache::new(Duration::from_secs(60), Duration::from_secs(3_600));
        let now = Instant::now();
        let first = body(1);
        cache.serve(&Prompt::anthropic(&first), now);
        let grown = |extra: usize| {
            let mut b = first.clone();
            b["messages"][0]["content"] = json!("last");
            let content: Vec<Value> = (0..extra)
                .map(|i| json!({"type": "text", "text": format!("block {i}")}))
                .chain([
                    json!({"type": "text", "text": "end", "cache_control": {"type": "ephemeral"}}),
                ])
                .collect();
            b["messages"]
                .as_array_mut()
                .unwrap()
                .push(json!({"role": "assistant", "content": content}));
            b
        };
        // The old entry is 20 blocks before the new breakpoint: found.
        assert!(cache.serve(&Prompt::anthropic(&grown(19)), now).read > 0);
        // 21 blocks before it: not found.
        assert_eq!(cache.serve(&Prompt::anthropic(&grown(20)), now).read, 0);
    }

    #[test]
    fn message_entries_are_keyed_by_the_thinking_parameters() {
        let mut cache = PrefixCache::new(Duration::from_secs(60), Duration::from_secs(3_600));
        let now = Instant::now();
        let mut thinking = body(3);
        thinking["system"] = json!([{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}]);
        thinking["thinking"] = json!({"type": "adaptive"});
        let system_only = Prompt::anthropic(&thinking).prefix_tokens[0];
        cache.serve(&Prompt::anthropic(&thinking), now);
        let mut plain = thinking.clone();
        plain.as_object_mut().unwrap().remove("thinking");
        let other = cache.serve(&Prompt::anthropic(&plain), now);
        assert_eq!(other.read, system_only, "only the system entry is shared");
        let same = cache.serve(&Prompt::anthropic(&thinking), now);
        assert_eq!(same.read, Prompt::anthropic(&thinking).total_tokens());
    }

    #[test]
    fn without_a_breakpoint_nothing_is_cached() {
        let mut cache = PrefixCache::new(Duration::from_secs(60), Duration::from_secs(3_600));
        let plain = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        let prompt = Prompt::anthropic(&plain);
        let now = Instant::now();
        cache.serve(&prompt, now);
        let again = cache.serve(&prompt, now);
        assert_eq!((again.read, again.written), (0, 0));
        assert_eq!(again.uncached, prompt.total_tokens());
        // A request-level `cache_control` caches the whole prompt.
        let mut auto = plain.clone();
        auto["cache_control"] = json!({"type": "ephemeral"});
        cache.serve(&Prompt::anthropic(&auto), now);
        let hit = cache.serve(&Prompt::anthropic(&auto), now);
        assert_eq!(hit.read, prompt.total_tokens());
    }

    #[test]
    fn openai_reads_the_longest_shared_prefix() {
        let mut cache = PrefixCache::new(Duration::from_secs(60), Duration::from_secs(3_600));
        let now = Instant::now();
        let a = json!({"model": "g", "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "a"}]});
        let b = json!({"model": "g", "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "b"}]});
        cache.serve(&Prompt::openai(&a), now);
        let outcome = cache.serve(&Prompt::openai(&b), now);
        assert_eq!(outcome.read, Prompt::openai(&a).prefix_tokens[0]);
    }
}
