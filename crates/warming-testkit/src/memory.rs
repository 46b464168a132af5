//! An in-memory [`Store`] and a scripted [`Provider`]: the service's ports
//! without files or sockets, so the driver can be tested on tokio's paused
//! clock.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use warming_core::{
    ConversationId, IntervalLimits, Restored, Template, Usage, WarmFailure, WarmRecord,
    WarmRequest, WarmStats,
};
use warming_service::{
    Ack, BoxFuture, Credentials, Provider, Store, StoreError, WarmAnswer, Write,
};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Debug, Default)]
struct Stored {
    /// Every committed write, in order.
    writes: Vec<Write>,
    /// History by conversation, oldest first.
    history: HashMap<ConversationId, Vec<WarmRecord>>,
    /// Writes still to refuse.
    failing: usize,
}

/// A store that commits at once, in memory; it can be told to refuse the
/// next writes, as a full disk would, and to hold its reads, as a slow
/// database would.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    inner: Arc<Mutex<Stored>>,
    /// While true, [`Store::load`] waits.
    reads_held: Arc<(Mutex<bool>, std::sync::Condvar)>,
}

impl MemoryStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every [`Store::load`] wait until [`release_reads`](Self::release_reads).
    pub fn hold_reads(&self) {
        *lock(&self.reads_held.0) = true;
    }

    /// Lets held and later reads through.
    pub fn release_reads(&self) {
        *lock(&self.reads_held.0) = false;
        self.reads_held.1.notify_all();
    }

    /// Refuses the next `count` writes.
    pub fn fail_next(&self, count: usize) {
        lock(&self.inner).failing = count;
    }

    /// Drops every stored template, as a damaged database would.
    pub fn forget_templates(&self) {
        lock(&self.inner)
            .writes
            .retain(|w| !matches!(w, Write::Template { .. }));
    }

    /// Every write committed so far, in order.
    #[must_use]
    pub fn writes(&self) -> Vec<Write> {
        lock(&self.inner).writes.clone()
    }

    fn apply(&self, write: Write) -> Result<(), StoreError> {
        let mut stored = lock(&self.inner);
        if stored.failing > 0 {
            stored.failing -= 1;
            return Err(StoreError::Failed("injected: disk full".into()));
        }
        match &write {
            Write::Warm(record) => stored
                .history
                .entry(record.conversation_id.clone())
                .or_default()
                .push(record.clone()),
            Write::Delete { conversation } => {
                stored.history.remove(conversation);
            }
            _ => {}
        }
        stored.writes.push(write);
        Ok(())
    }
}

impl Store for MemoryStore {
    fn submit(&self, write: Write) -> Ack {
        let result = self.apply(write);
        Box::pin(async move { result })
    }

    fn submit_behind(&self, write: Write) {
        let _ = self.apply(write);
    }

    fn flush(&self) -> Ack {
        Box::pin(async { Ok(()) })
    }

    fn history(
        &self,
        conversation: &ConversationId,
        limit: usize,
    ) -> Result<Vec<WarmRecord>, StoreError> {
        let stored = lock(&self.inner);
        let all = stored
            .history
            .get(conversation)
            .cloned()
            .unwrap_or_default();
        Ok(all.into_iter().rev().take(limit).collect())
    }

    /// The conversation as its committed writes left it (settings,
    /// template and schedule; enough to bring an evicted or adopted
    /// conversation back).
    fn load(
        &self,
        conversation: &ConversationId,
        _limits: &IntervalLimits,
    ) -> Result<Option<Restored>, StoreError> {
        {
            let (held, released) = &*self.reads_held;
            let mut held = lock(held);
            while *held {
                held = released.wait(held).unwrap_or_else(|e| e.into_inner());
            }
        }
        let stored = lock(&self.inner);
        let mut found: Option<Restored> = None;
        let empty = || Restored {
            conversation: conversation.clone(),
            settings: None,
            template: None,
            next_warm_at: None,
            backend: None,
            stats: WarmStats::default(),
            depth: 0,
            gaps: Vec::new(),
            idle_since: None,
        };
        for write in &stored.writes {
            match write {
                Write::Settings {
                    conversation: c,
                    settings,
                } if c == conversation => {
                    found.get_or_insert_with(empty).settings = Some(*settings);
                }
                Write::Template {
                    conversation: c,
                    template,
                } if c == conversation => {
                    found.get_or_insert_with(empty).template = Some((**template).clone());
                }
                Write::Schedule {
                    conversation: c,
                    next_warm_at,
                } if c == conversation => {
                    found.get_or_insert_with(empty).next_warm_at = *next_warm_at;
                }
                Write::Delete { conversation: c } if c == conversation => found = None,
                _ => {}
            }
        }
        Ok(found)
    }

    fn load_all(&self, limits: &IntervalLimits) -> Result<Vec<Restored>, StoreError> {
        let ids: Vec<ConversationId> = {
            let stored = lock(&self.inner);
            let mut ids: Vec<ConversationId> = Vec::new();
            for write in &stored.writes {
                if let Write::Settings { conversation, .. } | Write::Template { conversation, .. } =
                    write
                {
                    if !ids.contains(conversation) {
                        ids.push(conversation.clone());
                    }
                }
            }
            ids
        };
        let mut all = Vec::new();
        for id in ids {
            all.extend(self.load(&id, limits)?);
        }
        Ok(all)
    }

    fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        let stored = lock(&self.inner);
        Ok(stored.writes.iter().rev().find_map(|w| match w {
            Write::Meta { key: k, value } if *k == key => Some(value.clone()),
            _ => None,
        }))
    }

    fn close(&self) {}

    fn template(&self, conversation: &ConversationId) -> Result<Option<Template>, StoreError> {
        Ok(self
            .load(conversation, &IntervalLimits::default())?
            .and_then(|restored| restored.template))
    }
}

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Scripted {
    /// Answer with this usage.
    Answer(Usage),
    /// Fail with this.
    Fail(WarmFailure),
    /// Never answer (until the warm is aborted).
    Hang,
}

/// A provider that answers warms from a script, then with cache hits of
/// `default_prefix` tokens; it records every warm it was sent.
#[derive(Debug, Clone)]
pub struct ScriptedProvider {
    script: Arc<Mutex<VecDeque<Scripted>>>,
    sent: Arc<Mutex<Vec<WarmRequest>>>,
    default_prefix: u64,
}

impl ScriptedProvider {
    /// Answers every warm with a full cache hit of `prefix` tokens unless
    /// scripted otherwise.
    #[must_use]
    pub fn hits(prefix: u64) -> Self {
        Self {
            script: Arc::default(),
            sent: Arc::default(),
            default_prefix: prefix,
        }
    }

    /// Queues the next answers.
    pub fn then(&self, answers: impl IntoIterator<Item = Scripted>) {
        lock(&self.script).extend(answers);
    }

    /// The warms sent so far.
    #[must_use]
    pub fn sent(&self) -> Vec<WarmRequest> {
        lock(&self.sent).clone()
    }
}

impl Provider for ScriptedProvider {
    fn warm<'a>(
        &'a self,
        warm: &'a WarmRequest,
        _credentials: Option<&'a Credentials>,
    ) -> BoxFuture<'a, Result<WarmAnswer, WarmFailure>> {
        lock(&self.sent).push(warm.clone());
        let next = lock(&self.script)
            .pop_front()
            .unwrap_or(Scripted::Answer(Usage::anthropic(
                3,
                self.default_prefix,
                0,
            )));
        Box::pin(async move {
            match next {
                Scripted::Answer(usage) => Ok(WarmAnswer {
                    usage,
                    backend: None,
                    kind: None,
                }),
                Scripted::Fail(failure) => Err(failure),
                Scripted::Hang => std::future::pending().await,
            }
        })
    }
}
