//! llama.cpp's server as the deployment's own engine (`--engine llama.cpp`):
//! the [`Engine`] port over its slot API.
//!
//! What it exposes, and so what this adapter knows:
//! - `GET /props` says `is_sleeping` without waking the server; a sleeping
//!   server (`--sleep-idle-seconds`) has unloaded the model and every slot.
//! - `GET /slots` (`--slots`) lists each slot's last task (`id_task`) and
//!   the tokens it holds (`n_prompt_tokens`: the prompt and all but the last
//!   generated token), not the prompt itself. So after a request of a
//!   conversation finished, the one slot holding that many tokens holds it; while that slot runs no other task, the
//!   prefix is still there. Two slots of the same length: unknown (a warm
//!   replays). Asking counts as activity for the server's idle timer, as a
//!   replay would.
//! - `POST /slots/{id}?action=save|restore` with `{"filename"}`
//!   (`--slot-save-path`) writes a slot's KV cache to a file and reads it
//!   back; a request with `"id_slot"` is served by that slot. The files
//!   are in the directory the server was given, which warming must see too
//!   (`--engine-save-dir`, the same directory) to bound and remove them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value};
use warming_core::{ConversationId, EngineSupport, Usage};
use warming_service::{BoxFuture, Engine, EngineError, RequestPin, Residency};

/// Conversations whose slot is remembered; the oldest is forgotten past it.
const MAX_MARKS: usize = 65_536;
/// Saved files are named `{FILE_PREFIX}{n}.bin`: warming's own, removed at
/// start (their conversations' mapping was in the last run's memory).
const FILE_PREFIX: &str = "warming-";

/// How the adapter is set up.
#[derive(Debug, Clone)]
pub struct LlamaCppOptions {
    /// The server's base URL (the OpenAI upstream).
    pub base: String,
    /// The server's `--slot-save-path`, as warming sees it: where saved
    /// prefixes go. `None`: no saving, residency checks only.
    pub save_dir: Option<PathBuf>,
    /// The most the saved files may take together, bytes: the least
    /// recently used go first.
    pub save_budget_bytes: u64,
    /// Longest one call to the server may take.
    pub timeout: Duration,
}

/// llama.cpp's server, as an [`Engine`].
#[derive(Debug)]
pub struct LlamaCpp {
    http: reqwest::Client,
    base: String,
    save_dir: Option<PathBuf>,
    save_budget_bytes: u64,
    /// `/slots` answers (the server was started with `--slots`): without
    /// it nothing can be told, and warms replay.
    slots_on: AtomicBool,
    /// Saving works (the start's probe saved, and the file appeared in
    /// `save_dir`).
    can_save: AtomicBool,
    known: Mutex<Known>,
    /// One save or restore at a time: two restores must not pick the same
    /// free slot.
    slot_actions: tokio::sync::Mutex<()>,
}

/// What the adapter learned, bounded.
#[derive(Debug, Default)]
struct Known {
    marks: HashMap<ConversationId, Mark>,
    saved: HashMap<ConversationId, SavedFile>,
    saved_bytes: u64,
    /// Orders marks and files by use; names files.
    seq: u64,
}

impl Known {
    /// The next number of the use order (marks, files, their names).
    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }
}

/// Where a conversation's prefix was left: its last request's prompt and
/// output lengths, and the slot and task that served it once located.
#[derive(Debug, Clone, Copy)]
struct Mark {
    tokens: u64,
    output: u64,
    at: Option<(u64, i64)>,
    seq: u64,
}

/// A prefix saved to disk.
#[derive(Debug, Clone)]
struct SavedFile {
    name: String,
    bytes: u64,
    used: u64,
}

/// One slot as `GET /slots` shows it.
#[derive(Debug, Clone, Copy)]
struct Slot {
    id: u64,
    task: Option<i64>,
    prompt_tokens: Option<u64>,
    busy: bool,
}

impl LlamaCpp {
    /// Connects: asks the server what it offers (`/props`, a probe save
    /// when `save_dir` is set) and removes warming's files left from an
    /// earlier run. A server that does not answer yet is assumed to offer
    /// its slots; saving is then off. A server whose slot endpoint is off
    /// supports nothing ([`EngineSupport::None`]: warms replay), and the
    /// log says why.
    ///
    /// # Errors
    /// A message when the HTTP client cannot be built.
    pub async fn connect(options: LlamaCppOptions) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(options.timeout)
            .build()
            .map_err(|e| format!("cannot build the engine's HTTP client: {e}"))?;
        let engine = Self {
            http,
            base: options.base.trim_end_matches('/').to_owned(),
            save_dir: options.save_dir,
            save_budget_bytes: options.save_budget_bytes,
            slots_on: AtomicBool::new(true),
            can_save: AtomicBool::new(false),
            known: Mutex::new(Known::default()),
            slot_actions: tokio::sync::Mutex::new(()),
        };
        match engine.get("props").await {
            Ok(props) if props["endpoint_slots"] == json!(false) => {
                tracing::warn!(
                    upstream = %engine.base,
                    "the llama.cpp server has its slot endpoint off (start it with --slots): \
                     warms replay, nothing is checked or saved"
                );
                engine.slots_on.store(false, Ordering::Relaxed);
                return Ok(engine);
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "the engine does not answer yet; assuming it offers /slots")
            }
        }
        if let Some(dir) = &engine.save_dir {
            remove_our_files(dir);
            match engine.probe_save(dir).await {
                Ok(()) => engine.can_save.store(true, Ordering::Relaxed),
                Err(e) => {
                    tracing::warn!(error = %e, "saving prefixes is off: residency checks only");
                }
            }
        }
        Ok(engine)
    }

    /// Saves an empty slot under a probe name and looks for the file where
    /// warming expects it.
    async fn probe_save(&self, dir: &std::path::Path) -> Result<(), String> {
        let name = format!("{FILE_PREFIX}probe.bin");
        self.post("slots/0?action=save", &json!({ "filename": name }))
            .await
            .map_err(|e| {
                format!("the engine refused a save ({e}); start it with --slot-save-path")
            })?;
        let path = dir.join(&name);
        let found = path.exists();
        let _ = std::fs::remove_file(&path);
        // llama.cpp joins its --slot-save-path and the name as strings.
        let beside = PathBuf::from(format!("{}{name}", dir.display()));
        if found {
            Ok(())
        } else if beside.exists() {
            let _ = std::fs::remove_file(&beside);
            Err(format!(
                "the engine saved to {}: give its --slot-save-path a trailing slash",
                beside.display()
            ))
        } else {
            Err(format!(
                "the engine saved, but not into {} (--engine-save-dir must be its --slot-save-path)",
                dir.display()
            ))
        }
    }

    async fn get(&self, path: &str) -> Result<Value, String> {
        let answer = self
            .http
            .get(format!("{}/{path}", self.base))
            .send()
            .await
            .map_err(|e| warming_service::root_cause(&e))?;
        read(answer).await
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Value, String> {
        let answer = self
            .http
            .post(format!("{}/{path}", self.base))
            .json(body)
            .send()
            .await
            .map_err(|e| warming_service::root_cause(&e))?;
        read(answer).await
    }

    async fn slots(&self) -> Result<Vec<Slot>, String> {
        let answer = self.get("slots").await?;
        let slots = answer.as_array().ok_or("/slots did not answer a list")?;
        Ok(slots
            .iter()
            .filter_map(|s| {
                Some(Slot {
                    id: s["id"].as_u64()?,
                    task: s["id_task"].as_i64(),
                    prompt_tokens: s["n_prompt_tokens"].as_u64(),
                    busy: s["is_processing"].as_bool().unwrap_or(false),
                })
            })
            .collect())
    }

    /// Whether the server sleeps (model unloaded): asked without waking it.
    async fn sleeping(&self) -> Result<bool, String> {
        Ok(self.get("props").await?["is_sleeping"] == json!(true))
    }

    fn known(&self) -> std::sync::MutexGuard<'_, Known> {
        self.known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn mark(&self, conversation: &ConversationId) -> Option<Mark> {
        self.known().marks.get(conversation).copied()
    }

    fn unmark(&self, conversation: &ConversationId) {
        self.known().marks.remove(conversation);
    }

    async fn residency_of(&self, conversation: &ConversationId) -> Residency {
        if !self.slots_on.load(Ordering::Relaxed) {
            return Residency::Unknown;
        }
        let Some(mut mark) = self.mark(conversation) else {
            return Residency::Unknown;
        };
        match self.sleeping().await {
            Ok(true) => {
                self.unmark(conversation);
                return Residency::Evicted;
            }
            Ok(false) => {}
            Err(_) => return Residency::Unknown,
        }
        if mark.at.is_none() {
            // Finished, not located yet: where a prompt of its length is.
            self.note(conversation, mark.tokens, mark.output).await;
            match self.mark(conversation) {
                Some(located) if located.at.is_some() => mark = located,
                _ => return Residency::Unknown,
            }
        }
        let Ok(slots) = self.slots().await else {
            return Residency::Unknown;
        };
        let held = slots
            .iter()
            .any(|s| Some((s.id, s.task.unwrap_or(-1))) == mark.at && s.task.is_some());
        if held {
            Residency::Resident {
                tokens: mark.tokens,
            }
        } else {
            self.unmark(conversation);
            Residency::Evicted
        }
    }

    /// Notes that `conversation`'s last request had `tokens` of prompt and
    /// `output` generated, its slot not located yet.
    fn expect_tokens(&self, conversation: &ConversationId, tokens: u64, output: u64) {
        self.set_mark(conversation, (tokens, output), None);
    }

    /// Notes which slot holds that request now: the only one holding its
    /// prompt and up to its output, else none (the conversation's
    /// residency is then unknown).
    async fn note(&self, conversation: &ConversationId, tokens: u64, output: u64) {
        let slots = self.slots().await.unwrap_or_default();
        let held = tokens..=tokens + output;
        let mut holding = slots
            .iter()
            .filter(|s| s.task.is_some() && s.prompt_tokens.is_some_and(|n| held.contains(&n)));
        let (Some(slot), None) = (holding.next(), holding.next()) else {
            tracing::debug!(conversation = %conversation, tokens, ?slots, "no one slot holds a prompt of its length");
            self.unmark(conversation);
            return;
        };
        let at = Some((slot.id, slot.task.unwrap_or(-1)));
        self.set_mark(conversation, (tokens, output), at);
    }

    fn set_mark(
        &self,
        conversation: &ConversationId,
        (tokens, output): (u64, u64),
        at: Option<(u64, i64)>,
    ) {
        let mut known = self.known();
        let mark = Mark {
            tokens,
            output,
            at,
            seq: known.next_seq(),
        };
        known.marks.insert(conversation.clone(), mark);
        if known.marks.len() > MAX_MARKS {
            if let Some(oldest) = known
                .marks
                .iter()
                .min_by_key(|(_, m)| m.seq)
                .map(|(id, _)| id.clone())
            {
                known.marks.remove(&oldest);
            }
        }
    }

    async fn save_resident(&self, conversation: &ConversationId) -> Result<(), EngineError> {
        let Some(dir) = self.save_dir.as_ref().filter(|_| self.can_save()) else {
            return Err(EngineError("saving is off (--engine-save-dir)".into()));
        };
        let _one_at_a_time = self.slot_actions.lock().await;
        let Residency::Resident { tokens } = self.residency_of(conversation).await else {
            return Err(EngineError("the prefix is no longer resident".into()));
        };
        let Some((Some((slot, _)), mark_output)) =
            self.mark(conversation).map(|m| (m.at, m.output))
        else {
            return Err(EngineError("the prefix is no longer resident".into()));
        };
        let name = {
            let mut known = self.known();
            format!("{FILE_PREFIX}{}.bin", known.next_seq())
        };
        let path = format!("slots/{slot}?action=save");
        self.post(&path, &json!({ "filename": name }))
            .await
            .map_err(|e| EngineError(format!("the engine did not save the slot: {e}")))?;
        let bytes = std::fs::metadata(dir.join(&name)).map_or(0, |m| m.len());
        if bytes > self.save_budget_bytes {
            let _ = std::fs::remove_file(dir.join(&name));
            return Err(EngineError(format!(
                "the saved prefix ({} MB) is larger than --engine-save-mb",
                bytes / 1_000_000
            )));
        }
        let dropped = {
            let mut known = self.known();
            let used = known.seq;
            let old = known.saved.insert(
                conversation.clone(),
                SavedFile {
                    name: name.clone(),
                    bytes,
                    used,
                },
            );
            known.saved_bytes += bytes;
            let mut dropped: Vec<String> = Vec::new();
            if let Some(old) = old {
                known.saved_bytes -= old.bytes;
                dropped.push(old.name);
            }
            dropped.extend(over_budget(&mut known, self.save_budget_bytes));
            dropped
        };
        for name in dropped {
            let _ = std::fs::remove_file(dir.join(name));
        }
        tracing::debug!(conversation = %conversation, tokens, bytes, "prefix saved");
        // A save may count as a task of the slot: note it again.
        self.note(conversation, tokens, mark_output).await;
        Ok(())
    }

    fn can_save(&self) -> bool {
        self.can_save.load(Ordering::Relaxed)
    }

    async fn restore_saved(
        &self,
        conversation: &ConversationId,
    ) -> Result<Option<RequestPin>, EngineError> {
        let Some(name) = self.known().saved.get(conversation).map(|f| f.name.clone()) else {
            return Ok(None);
        };
        let _one_at_a_time = self.slot_actions.lock().await;
        if let Residency::Resident { .. } = self.residency_of(conversation).await {
            return Ok(None);
        }
        let slots = self
            .slots()
            .await
            .map_err(|e| EngineError(format!("cannot list the engine's slots: {e}")))?;
        // A free slot: an empty one, else the one whose last task is the
        // oldest (least recently used).
        let slot = slots
            .iter()
            .filter(|s| !s.busy)
            .min_by_key(|s| s.task.unwrap_or(i64::MIN))
            .ok_or_else(|| EngineError("every slot of the engine is busy".into()))?;
        let path = format!("slots/{}?action=restore", slot.id);
        self.post(&path, &json!({ "filename": name }))
            .await
            .map_err(|e| EngineError(format!("the engine did not restore the prefix: {e}")))?;
        {
            let mut known = self.known();
            let used = known.next_seq();
            if let Some(file) = known.saved.get_mut(conversation) {
                file.used = used;
            }
        }
        let mut pin = RequestPin::new();
        pin.insert("id_slot".into(), json!(slot.id));
        Ok(Some(pin))
    }

    fn forget_now(&self, conversation: &ConversationId) {
        let file = {
            let mut known = self.known();
            known.marks.remove(conversation);
            let file = known.saved.remove(conversation);
            if let Some(file) = &file {
                known.saved_bytes -= file.bytes;
            }
            file
        };
        if let (Some(file), Some(dir)) = (file, &self.save_dir) {
            let _ = std::fs::remove_file(dir.join(file.name));
        }
    }
}

impl Engine for LlamaCpp {
    fn name(&self) -> &'static str {
        "llama.cpp"
    }

    fn support(&self) -> EngineSupport {
        if !self.slots_on.load(Ordering::Relaxed) {
            EngineSupport::None
        } else if self.can_save() {
            EngineSupport::SaveRestore
        } else {
            EngineSupport::Residency
        }
    }

    fn expect(&self, conversation: &ConversationId, usage: Usage) {
        self.expect_tokens(conversation, usage.prompt_tokens(), usage.output_tokens);
    }

    fn observe<'a>(&'a self, conversation: &'a ConversationId, usage: Usage) -> BoxFuture<'a, ()> {
        Box::pin(self.note(conversation, usage.prompt_tokens(), usage.output_tokens))
    }

    fn residency<'a>(&'a self, conversation: &'a ConversationId) -> BoxFuture<'a, Residency> {
        Box::pin(self.residency_of(conversation))
    }

    fn save<'a>(
        &'a self,
        conversation: &'a ConversationId,
    ) -> BoxFuture<'a, Result<(), EngineError>> {
        Box::pin(self.save_resident(conversation))
    }

    fn restore<'a>(
        &'a self,
        conversation: &'a ConversationId,
    ) -> BoxFuture<'a, Result<Option<RequestPin>, EngineError>> {
        Box::pin(self.restore_saved(conversation))
    }

    fn forget<'a>(&'a self, conversation: &'a ConversationId) -> BoxFuture<'a, ()> {
        self.forget_now(conversation);
        Box::pin(async {})
    }
}

/// The least recently used files past the budget, taken out of `known`.
fn over_budget(known: &mut Known, budget: u64) -> Vec<String> {
    let mut dropped = Vec::new();
    while known.saved_bytes > budget {
        let Some(oldest) = known
            .saved
            .iter()
            .min_by_key(|(_, f)| f.used)
            .map(|(id, _)| id.clone())
        else {
            break;
        };
        if let Some(file) = known.saved.remove(&oldest) {
            known.saved_bytes -= file.bytes;
            dropped.push(file.name);
        }
    }
    dropped
}

/// Removes warming's saved files an earlier run left in `dir`.
fn remove_our_files(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(FILE_PREFIX) && name.ends_with(".bin") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// An answer's JSON, or what the server said went wrong.
async fn read(answer: reqwest::Response) -> Result<Value, String> {
    let status = answer.status();
    let body: Value = answer
        .json()
        .await
        .map_err(|e| format!("{status}: {}", warming_service::root_cause(&e)))?;
    if status.is_success() {
        Ok(body)
    } else {
        let message = body["error"]["message"]
            .as_str()
            .map_or_else(|| body.to_string(), str::to_owned);
        Err(format!("{status}: {message}"))
    }
}
