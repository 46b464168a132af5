//! Templates as content-addressed blocks, so a store keeps each system
//! prompt, tool list and message once however many conversations and turns
//! repeat it.
//!
//! A template's request is cut at its natural boundaries: the values of
//! `system` and `tools` and each element of `messages` are *parts*; what is
//! left (model, `max_tokens`, ...) is the *envelope*, with a hole where each
//! part was. A part longer than [`CHUNK_BYTES`] is cut into chunks. Each
//! part or chunk is a [`Block`] named by the hash of its bytes. Cutting
//! works on the request's text, never on a parsed tree, so putting the
//! blocks back into the envelope gives the stored text byte for byte.
//!
//! ```
//! use warming_core::Template;
//! use warming_storage_shared::blocks::Layout;
//!
//! let template = Template::new(serde_json::json!({"model": "m", "system": "a long system prompt",
//!     "messages": [{"role": "user", "content": "hi"}]}), None, None);
//! let (layout, blocks) = Layout::split(template.request_json().unwrap());
//! assert_eq!(blocks.len(), 2);
//! let text = layout.assemble(|hash| blocks.iter().find(|b| &b.hash == hash).map(|b| b.text.clone()));
//! assert_eq!(text.as_deref(), template.request_json());
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use warming_core::{PromptParts, Template};

/// Longest block, bytes: longer parts are cut into chunks of this size, so
/// one huge tool result does not make one huge block to cache and read.
pub const CHUNK_BYTES: usize = 64 * 1024;

/// The name of a block: the first 16 bytes of the BLAKE3 hash of its text
/// (collision-resistant: a block cannot be made to stand for another).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockHash(pub [u8; 16]);

impl BlockHash {
    /// The hash of `text`.
    #[must_use]
    pub fn of(text: &str) -> Self {
        let full = blake3::hash(text.as_bytes());
        let mut out = [0u8; 16];
        out.copy_from_slice(&full.as_bytes()[..16]);
        Self(out)
    }

    /// 32 lowercase hex digits.
    #[must_use]
    pub fn to_hex(&self) -> String {
        use std::fmt::Write;
        self.0.iter().fold(String::with_capacity(32), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    }

    /// Parses [`to_hex`](Self::to_hex)'s output.
    #[must_use]
    pub fn from_hex(hex: &str) -> Option<Self> {
        if hex.len() != 32 || !hex.is_ascii() {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Self(out))
    }
}

impl std::fmt::Debug for BlockHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BlockHash({})", self.to_hex())
    }
}

impl Serialize for BlockHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for BlockHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let hex = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::from_hex(&hex).ok_or_else(|| serde::de::Error::custom("not a block hash"))
    }
}

/// A block: a part of a request, or a chunk of a long one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// Its name.
    pub hash: BlockHash,
    /// Its bytes.
    pub text: Arc<str>,
}

/// Hot blocks for building warms, bounded by their bytes
/// (`--template-cache-mb`): a system prompt many conversations share is
/// read from the store once. Shared by every store adapter.
#[derive(Clone)]
pub struct BlockCache(Arc<quick_cache::sync::Cache<BlockHash, Arc<str>, ByBytes>>);

/// Weighs a cached block by its bytes.
#[derive(Debug, Clone, Copy)]
struct ByBytes;

impl quick_cache::Weighter<BlockHash, Arc<str>> for ByBytes {
    fn weight(&self, _key: &BlockHash, text: &Arc<str>) -> u64 {
        text.len() as u64 + 32
    }
}

impl BlockCache {
    /// A cache of at most `bytes` of blocks.
    #[must_use]
    pub fn with_bytes(bytes: u64) -> Self {
        // quick_cache sizes its table by an item estimate: assume 8 KiB blocks.
        let items = usize::try_from(bytes / 8_192).unwrap_or(usize::MAX).max(16);
        Self(Arc::new(quick_cache::sync::Cache::with_weighter(
            items,
            bytes.max(1),
            ByBytes,
        )))
    }

    /// The block, if cached.
    #[must_use]
    pub fn get(&self, hash: &BlockHash) -> Option<Arc<str>> {
        self.0.get(hash)
    }

    /// Caches a block read from the store.
    pub fn insert(&self, hash: BlockHash, text: Arc<str>) {
        self.0.insert(hash, text);
    }
}

impl std::fmt::Debug for BlockCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockCache")
            .field("blocks", &self.0.len())
            .field("bytes", &self.0.weight())
            .finish()
    }
}

/// Where a part goes back into the envelope, and the blocks it is made of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Hole {
    /// Byte offset in the envelope.
    at: usize,
    /// Its blocks, in order.
    blocks: Vec<BlockHash>,
}

/// A template's request as an envelope and the blocks that fill it: what a
/// store keeps per conversation instead of the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    /// The request's text with every part cut out.
    envelope: String,
    /// The holes, in order of their offsets.
    holes: Vec<Hole>,
}

impl Layout {
    /// Cuts a request's text into its envelope and blocks. Text that is not
    /// a JSON object is one part (still byte-exact).
    #[must_use]
    pub fn split(text: &str) -> (Self, Vec<Block>) {
        let (layout, blocks) = Self::cut(text);
        let blocks = blocks
            .into_iter()
            .map(|(hash, text)| Block {
                hash,
                text: Arc::from(text),
            })
            .collect();
        (layout, blocks)
    }

    /// [`split`](Self::split) with the blocks borrowed from `text`: a store
    /// copies only those it does not hold yet.
    fn cut(text: &str) -> (Self, Vec<(BlockHash, &str)>) {
        Self::cut_at(text, PromptParts::of(text))
    }

    /// [`cut`](Self::cut) at parts already found in `text`.
    fn cut_at<'a>(
        text: &'a str,
        parts: Option<PromptParts<'a>>,
    ) -> (Self, Vec<(BlockHash, &'a str)>) {
        let mut spans = parts
            .map(|parts| part_spans(text, parts))
            .unwrap_or_else(|| vec![(0, text.len())]);
        spans.sort_unstable();
        let mut envelope = String::with_capacity(text.len().min(4096));
        let mut holes = Vec::with_capacity(spans.len());
        let mut blocks = Vec::with_capacity(spans.len());
        let mut seen = std::collections::HashSet::with_capacity(spans.len());
        let mut copied = 0;
        for (start, end) in spans {
            envelope.push_str(&text[copied..start]);
            let mut hole = Hole {
                at: envelope.len(),
                blocks: Vec::new(),
            };
            for chunk in chunks(&text[start..end]) {
                let hash = recent::hash_of(chunk);
                hole.blocks.push(hash);
                if seen.insert(hash) {
                    blocks.push((hash, chunk));
                }
            }
            holes.push(hole);
            copied = end;
        }
        envelope.push_str(&text[copied..]);
        (Self { envelope, holes }, blocks)
    }

    /// Every block it names, each once, in order of first use.
    #[must_use]
    pub fn block_hashes(&self) -> Vec<BlockHash> {
        let mut seen = std::collections::HashSet::new();
        self.holes
            .iter()
            .flat_map(|h| &h.blocks)
            .filter(|h| seen.insert(**h))
            .copied()
            .collect()
    }

    /// The request's text again, byte for byte, reading each block with
    /// `block`; `None` if one is missing.
    pub fn assemble(
        &self,
        mut block: impl FnMut(&BlockHash) -> Option<Arc<str>>,
    ) -> Option<String> {
        let mut fetched: HashMap<BlockHash, Arc<str>> = HashMap::new();
        let mut size = self.envelope.len();
        for hash in self.holes.iter().flat_map(|h| &h.blocks) {
            if !fetched.contains_key(hash) {
                let text = block(hash)?;
                fetched.insert(*hash, text);
            }
            size += fetched[hash].len();
        }
        let mut out = String::with_capacity(size);
        let mut copied = 0;
        for hole in &self.holes {
            out.push_str(self.envelope.get(copied..hole.at)?);
            for hash in &hole.blocks {
                out.push_str(&fetched[hash]);
            }
            copied = hole.at;
        }
        out.push_str(self.envelope.get(copied..)?);
        Some(out)
    }

    /// The layout as compact JSON, for a store's text column.
    #[must_use]
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A layout from [`to_json`](Self::to_json); `None` if damaged.
    #[must_use]
    pub fn from_json(text: &str) -> Option<Self> {
        let layout: Self = serde_json::from_str(text).ok()?;
        let ordered = layout.holes.windows(2).all(|w| w[0].at <= w[1].at);
        let inside = layout.holes.iter().all(|h| h.at <= layout.envelope.len());
        (ordered && inside).then_some(layout)
    }
}

/// What a store does to make a request a conversation's template, given
/// the layout it keeps now: every store follows the same plan, so each
/// block is used once per conversation that names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateWrite {
    /// The conversation's new layout.
    pub layout: Layout,
    /// Blocks to count one more use of (stored first if absent).
    pub add: Vec<Block>,
    /// Blocks to count one use fewer of (deleted when none is left).
    pub release: Vec<BlockHash>,
}

impl TemplateWrite {
    /// The plan for storing `template`'s request over `previous`: only
    /// blocks the previous template did not name are added, and only those
    /// it named and this one does not are released. `None` for a detached
    /// template (no body to store).
    #[must_use]
    pub fn plan(previous: Option<&Layout>, template: &Template) -> Option<Self> {
        let text = template.request_json()?;
        let (layout, blocks) = Layout::cut_at(text, template.parts());
        let old: std::collections::HashSet<BlockHash> = previous
            .map(Layout::block_hashes)
            .unwrap_or_default()
            .into_iter()
            .collect();
        let new: std::collections::HashSet<BlockHash> = blocks.iter().map(|(h, _)| *h).collect();
        Some(Self {
            add: blocks
                .into_iter()
                .filter(|(hash, _)| !old.contains(hash))
                .map(|(hash, text)| Block {
                    hash,
                    text: Arc::from(text),
                })
                .collect(),
            release: old.difference(&new).copied().collect(),
            layout,
        })
    }
}

/// Byte spans of the parts of a request object: the values of `system` and
/// `tools`, and each element of `messages` (the whole value when it is not
/// an array), which must be slices of `text`.
fn part_spans(text: &str, parts: PromptParts<'_>) -> Vec<(usize, usize)> {
    let base = text.as_ptr() as usize;
    // Each part is a slice of `text`: its offset is exact.
    let span = |part: &str| {
        let start = part.as_ptr() as usize - base;
        (start, start + part.len())
    };
    let mut spans: Vec<(usize, usize)> = [parts.tools, parts.system]
        .into_iter()
        .flatten()
        .map(span)
        .collect();
    match (parts.message_items, parts.messages) {
        (Some(items), _) => spans.extend(items.into_iter().map(span)),
        (None, Some(messages)) => spans.push(span(messages)),
        (None, None) => {}
    }
    spans
}

/// Hashes of the long blocks a thread cut last. Every settle of every
/// conversation repeats the same 50 KB system prompt; comparing it with the
/// one seen last costs a fraction of hashing it again. A hit is an exact
/// byte comparison, so the hash is the same as computed afresh.
mod recent {
    use super::BlockHash;
    use std::cell::RefCell;
    use std::sync::Arc;

    /// Shorter blocks are hashed: the comparison would save little.
    const MIN_BYTES: usize = 4096;
    /// Distinct long blocks remembered per thread (system prompts and tool
    /// lists in use at once).
    const SLOTS: usize = 8;

    /// A block remembered, with how often it was seen again lately.
    struct Seen {
        text: Arc<str>,
        hash: BlockHash,
        hits: u32,
    }

    thread_local! {
        static SEEN: RefCell<Vec<Seen>> = const { RefCell::new(Vec::new()) };
    }

    /// [`BlockHash::of`] `text`, from memory when this thread hashed the
    /// same bytes lately.
    pub(super) fn hash_of(text: &str) -> BlockHash {
        if text.len() < MIN_BYTES {
            return BlockHash::of(text);
        }
        SEEN.with_borrow_mut(|seen| {
            if let Some(entry) = seen.iter_mut().find(|e| *e.text == *text) {
                entry.hits = entry.hits.saturating_add(1);
                return entry.hash;
            }
            let hash = BlockHash::of(text);
            if seen.len() == SLOTS {
                // A conversation's own long messages come and go; the
                // blocks shared by many settles keep their place. Halving
                // lets a prompt no longer in use give way in time.
                if let Some(coldest) = (0..seen.len()).min_by_key(|&i| seen[i].hits) {
                    seen.swap_remove(coldest);
                }
                seen.iter_mut().for_each(|e| e.hits /= 2);
            }
            seen.push(Seen {
                text: Arc::from(text),
                hash,
                hits: 0,
            });
            hash
        })
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_remembered_hash_is_the_hash_of_the_same_bytes() {
            let shared = "s".repeat(MIN_BYTES * 2);
            for i in 0..3 * SLOTS {
                assert_eq!(hash_of(&shared), BlockHash::of(&shared));
                let own = format!("{i:>width$}", width = MIN_BYTES);
                assert_eq!(hash_of(&own), BlockHash::of(&own));
            }
            // Same length and prefix as a remembered block, one byte apart.
            let mut near = shared.clone();
            near.replace_range(MIN_BYTES..=MIN_BYTES, "t");
            assert_ne!(hash_of(&near), hash_of(&shared));
            assert_eq!(hash_of(&near), BlockHash::of(&near));
        }
    }
}

/// `part` in chunks of at most [`CHUNK_BYTES`], cut at character boundaries.
fn chunks(part: &str) -> impl Iterator<Item = &str> {
    let mut rest = part;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut end = rest.len().min(CHUNK_BYTES);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let (chunk, tail) = rest.split_at(end);
        rest = tail;
        Some(chunk)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn roundtrip(text: &str) -> String {
        let (layout, blocks) = Layout::split(text);
        let stored = Layout::from_json(&layout.to_json()).unwrap();
        stored
            .assemble(|h| blocks.iter().find(|b| &b.hash == h).map(|b| b.text.clone()))
            .unwrap()
    }

    #[test]
    fn conversations_and_turns_share_their_blocks() {
        let system = "s".repeat(50_000);
        let request = |user: &str, turns: usize| {
            let mut messages = vec![json!({"role": "user", "content": user})];
            for i in 0..turns {
                messages.push(json!({"role": "assistant", "content": format!("answer {i}")}));
                messages.push(json!({"role": "user", "content": format!("more {i}")}));
            }
            json!({"model": "m", "max_tokens": 64, "system": [{"type": "text", "text": system,
                "cache_control": {"type": "ephemeral"}}], "tools": [{"name": "t"}],
                "messages": messages})
            .to_string()
        };
        let (a1, a1_blocks) = Layout::split(&request("alice", 0));
        let (a2, _) = Layout::split(&request("alice", 1));
        let (b1, _) = Layout::split(&request("bob", 0));
        // system, tools, one message.
        assert_eq!(a1_blocks.len(), 3);
        let a1_hashes = a1.block_hashes();
        // The next turn repeats every block and adds its two messages.
        let a2_hashes = a2.block_hashes();
        assert!(a1_hashes.iter().all(|h| a2_hashes.contains(h)));
        assert_eq!(a2_hashes.len(), 5);
        // Another conversation shares the system prompt and tools.
        let b1_hashes = b1.block_hashes();
        let shared = b1_hashes.iter().filter(|h| a1_hashes.contains(h)).count();
        assert_eq!(shared, 2);
        // The envelope holds only the small rest.
        assert!(a1.to_json().len() < 300, "{}", a1.to_json());
    }

    #[test]
    fn long_parts_are_chunked_and_come_back_whole() {
        let long: String = (0..40_000).map(|i| format!("é{i}")).collect();
        let text =
            json!({"model": "m", "messages": [{"role": "user", "content": long}]}).to_string();
        let (layout, blocks) = Layout::split(&text);
        assert!(blocks.len() >= 4, "{} blocks", blocks.len());
        assert_eq!(layout.block_hashes().len(), blocks.len());
        assert!(blocks.iter().all(|b| b.text.len() <= CHUNK_BYTES));
        assert_eq!(roundtrip(&text), text);
        assert!(layout.assemble(|_| None).is_none());
    }

    #[test]
    fn odd_requests_come_back_byte_for_byte() {
        for text in [
            "[]",
            "\"x\"",
            "{}",
            r#"{"messages":"not an array","system":null}"#,
            r#"{"a":1,"messages":[],"tools":[]}"#,
            r#"{"system":"\u00e9\"quoted\"","messages":[1,2.5e10,{"k":[true]}]}"#,
        ] {
            assert_eq!(roundtrip(text), text);
        }
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            "[a-zé\"\\\\ ]{0,40}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(3, 40, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
                proptest::collection::hash_map("[a-z]{1,6}", inner, 0..6)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// The warm sent from a stored layout is the request it came from,
        /// byte for byte.
        #[test]
        fn every_request_comes_back_byte_for_byte(
            system in json_value(),
            tools in json_value(),
            messages in proptest::collection::vec(json_value(), 0..8),
            rest in json_value(),
        ) {
            let text = json!({"model": "m", "system": system, "tools": tools,
                "messages": messages, "metadata": rest}).to_string();
            prop_assert_eq!(roundtrip(&text), text);
        }
    }
}
