//! The stand-in's prefix cache: what a provider really has cached, with a TTL
//! that restarts on every read.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

/// One prompt cut into cacheable segments (tools, system, each message).
#[derive(Debug)]
pub struct Prompt {
    /// Hash of the prefix ending with each segment.
    prefix_hashes: Vec<u64>,
    /// Tokens of the prefix ending with each segment.
    prefix_tokens: Vec<u64>,
    /// Number of segments a cache may store (up to the last breakpoint for
    /// Anthropic, everything for OpenAI).
    cacheable: usize,
}

/// Rough token count of a JSON fragment: 4 bytes a token.
fn tokens(v: &Value) -> u64 {
    (v.to_string().len() as u64).div_ceil(4).max(1)
}

impl Prompt {
    /// Cuts a prompt; `keyed_from` is the first segment whose cache entry
    /// (and every later one) is also keyed by `key`.
    fn from_segments(
        model: &str,
        segments: &[Value],
        cacheable: usize,
        (keyed_from, key): (usize, &str),
    ) -> Self {
        let mut hasher = DefaultHasher::new();
        model.hash(&mut hasher);
        let mut total = 0;
        let mut prefix_hashes = Vec::with_capacity(segments.len());
        let mut prefix_tokens = Vec::with_capacity(segments.len());
        for (i, segment) in segments.iter().enumerate() {
            if i == keyed_from {
                key.hash(&mut hasher);
            }
            segment.to_string().hash(&mut hasher);
            total += tokens(segment);
            prefix_hashes.push(hasher.finish());
            prefix_tokens.push(total);
        }
        Self {
            prefix_hashes,
            prefix_tokens,
            cacheable,
        }
    }

    /// An Anthropic Messages body: cacheable up to its last `cache_control`;
    /// the entries of messages are keyed by the thinking parameters too.
    #[must_use]
    pub fn anthropic(body: &Value) -> Self {
        let model = body.get("model").and_then(Value::as_str).unwrap_or("");
        let mut segments = Vec::new();
        for key in ["tools", "system"] {
            if let Some(v) = body.get(key) {
                segments.push(v.clone());
            }
        }
        let first_message = segments.len();
        if let Some(Value::Array(messages)) = body.get("messages") {
            segments.extend(messages.iter().cloned());
        }
        let cacheable = segments
            .iter()
            .rposition(|s| s.to_string().contains("\"cache_control\""))
            .map_or(0, |i| i + 1);
        let thinking = crate::rules::thinking_key(body);
        Self::from_segments(model, &segments, cacheable, (first_message, &thinking))
    }

    /// An OpenAI Chat body: every prefix is cached automatically.
    #[must_use]
    pub fn openai(body: &Value) -> Self {
        let model = body.get("model").and_then(Value::as_str).unwrap_or("");
        let mut segments = Vec::new();
        if let Some(v) = body.get("tools") {
            segments.push(v.clone());
        }
        if let Some(Value::Array(messages)) = body.get("messages") {
            segments.extend(messages.iter().cloned());
        }
        let cacheable = segments.len();
        Self::from_segments(model, &segments, cacheable, (usize::MAX, ""))
    }

    /// An OpenAI Responses body: `tools`, `instructions`, then each item
    /// of `input` (one string is one item), every prefix cached.
    #[must_use]
    pub fn responses(body: &Value) -> Self {
        let model = body.get("model").and_then(Value::as_str).unwrap_or("");
        let mut segments = Vec::new();
        for key in ["tools", "instructions"] {
            if let Some(v) = body.get(key) {
                segments.push(v.clone());
            }
        }
        match body.get("input") {
            Some(Value::Array(items)) => segments.extend(items.iter().cloned()),
            Some(text @ Value::String(_)) => segments.push(text.clone()),
            _ => {}
        }
        let cacheable = segments.len();
        Self::from_segments(model, &segments, cacheable, (usize::MAX, ""))
    }

    /// The same prompt, cached only if its cacheable prefix reaches
    /// `minimum` tokens (the providers' minimum cacheable length: shorter
    /// prefixes are answered but never cached).
    #[must_use]
    pub fn with_minimum(mut self, minimum: u64) -> Self {
        let cacheable_tokens = self
            .cacheable
            .checked_sub(1)
            .map_or(0, |i| self.prefix_tokens[i]);
        if cacheable_tokens < minimum {
            self.cacheable = 0;
        }
        self
    }

    /// All prompt tokens.
    #[must_use]
    pub fn total_tokens(&self) -> u64 {
        self.prefix_tokens.last().copied().unwrap_or(0)
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

/// Prefix hash to expiry.
#[derive(Debug)]
pub struct PrefixCache {
    ttl: Duration,
    entries: HashMap<u64, Instant>,
}

impl PrefixCache {
    /// An empty cache whose entries live `ttl` after their last use.
    #[must_use]
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: HashMap::new(),
        }
    }

    /// Serves one request at `now`: reads the longest live cached prefix,
    /// refreshes what it read, writes the rest of the cacheable part.
    pub fn serve(&mut self, prompt: &Prompt, now: Instant) -> CacheOutcome {
        self.entries.retain(|_, expiry| *expiry > now);
        let hit = (0..prompt.cacheable)
            .rev()
            .find(|&i| self.entries.contains_key(&prompt.prefix_hashes[i]));
        let read = hit.map_or(0, |i| prompt.prefix_tokens[i]);
        let cacheable_tokens = prompt
            .cacheable
            .checked_sub(1)
            .map_or(0, |i| prompt.prefix_tokens[i]);
        let expiry = now + self.ttl;
        for hash in &prompt.prefix_hashes[..prompt.cacheable] {
            self.entries.insert(*hash, expiry);
        }
        CacheOutcome {
            read,
            written: cacheable_tokens - read,
            uncached: prompt.total_tokens() - cacheable_tokens,
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

    #[test]
    fn hits_within_the_ttl_and_misses_after() {
        let mut cache = PrefixCache::new(Duration::from_secs(2));
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
    fn a_longer_conversation_reads_its_cached_prefix() {
        let mut cache = PrefixCache::new(Duration::from_secs(60));
        let now = Instant::now();
        let short = Prompt::anthropic(&body(3));
        cache.serve(&short, now);
        let mut longer = body(3);
        longer["messages"]
            .as_array_mut()
            .unwrap()
            .push(json!({"role": "assistant", "content": "x"}));
        longer["messages"].as_array_mut().unwrap().push(json!({"role": "user", "content": [{"type": "text", "text": "y", "cache_control": {"type": "ephemeral"}}]}));
        let outcome = cache.serve(&Prompt::anthropic(&longer), now);
        assert_eq!(outcome.read, short.total_tokens());
        assert!(outcome.written > 0);
    }

    #[test]
    fn without_a_breakpoint_nothing_is_cached() {
        let mut cache = PrefixCache::new(Duration::from_secs(60));
        let plain = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        let prompt = Prompt::anthropic(&plain);
        let now = Instant::now();
        cache.serve(&prompt, now);
        let again = cache.serve(&prompt, now);
        assert_eq!((again.read, again.written), (0, 0));
        assert_eq!(again.uncached, prompt.total_tokens());
    }
}
