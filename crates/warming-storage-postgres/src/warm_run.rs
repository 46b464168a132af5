//! Warms, schedules and ledgers, the bulk of what a busy instance writes,
//! applied a run at a time: a run is the consecutive such writes of
//! one batch, and it costs a handful of set-based statements (arrays sent
//! as parameters and `unnest`ed), not five round trips per warm.
//!
//! Applying a run at once gives the same rows as applying its writes one
//! by one: history rows are inserted in arrival order (their `seq` follows
//! it), each conversation's stats fold its records in order (the last one
//! decides `last_error`), and the last schedule and the last ledger of a
//! conversation win.
//! Writes of other kinds end a run, so nothing is reordered across them.

use std::collections::HashMap;

use postgres::types::ToSql;
use postgres::{Client, Statement, Transaction};
use warming_core::{ConversationId, Timestamp, WarmOutcome, WarmRecord, WarmTrigger};
use warming_service::Write;

/// Conversations whose appended-rows count is remembered before the memory
/// is cleared: a bound, not a policy (a forgotten count only delays a trim).
const TRIM_COUNTS_KEPT: usize = 1_000_000;

/// The statements a run needs, prepared once per connection.
pub(crate) struct RunStatements {
    touch: Statement,
    history: Statement,
    stats: Statement,
    schedules: Statement,
    ledgers: Statement,
    trims: Statement,
}

impl RunStatements {
    pub(crate) fn prepare(client: &mut Client) -> Result<Self, postgres::Error> {
        Ok(Self {
            touch: client.prepare(
                "INSERT INTO conversations (id) SELECT unnest($1::text[])
                 ON CONFLICT (id) DO NOTHING",
            )?,
            history: client.prepare(
                "INSERT INTO warm_history (conversation, started_at, finished_at, trigger, outcome,
                   expired, input_tokens, cache_read_tokens, cache_write_tokens, pct, expected_pct,
                   backend, error, due_at, kind, output_tokens)
                 SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[],
                   $5::text[], $6::bool[], $7::bigint[], $8::bigint[], $9::bigint[],
                   $10::float8[], $11::float8[], $12::text[], $13::text[], $14::bigint[],
                   $15::text[], $16::bigint[])",
            )?,
            stats: client.prepare(
                "UPDATE conversations c SET
                   warm_count = c.warm_count + u.warms,
                   last_pct = CASE WHEN u.warms > 0 THEN u.pct ELSE c.last_pct END,
                   last_expected_pct =
                     CASE WHEN u.warms > 0 THEN u.expected ELSE c.last_expected_pct END,
                   last_warm_at = CASE WHEN u.warms > 0 THEN u.at ELSE c.last_warm_at END,
                   last_error = u.error
                 FROM unnest($1::text[], $2::bigint[], $3::float8[], $4::float8[], $5::bigint[],
                   $6::text[]) AS u(id, warms, pct, expected, at, error)
                 WHERE c.id = u.id",
            )?,
            schedules: client.prepare(
                "INSERT INTO conversations (id, next_warm_at)
                 SELECT * FROM unnest($1::text[], $2::bigint[])
                 ON CONFLICT (id) DO UPDATE SET next_warm_at = EXCLUDED.next_warm_at",
            )?,
            // An update, not an upsert: a deleted conversation stays gone.
            ledgers: client.prepare(
                "UPDATE conversations c SET ledger = u.ledger
                 FROM unnest($1::text[], $2::text[]) AS u(id, ledger) WHERE c.id = u.id",
            )?,
            trims: client.prepare(
                "DELETE FROM warm_history h USING (
                   SELECT c.id, (SELECT seq FROM warm_history WHERE conversation = c.id
                                 ORDER BY seq DESC LIMIT 1 OFFSET $2) AS floor
                   FROM unnest($1::text[]) AS c(id)) t
                 WHERE h.conversation = t.id AND h.seq <= t.floor",
            )?,
        })
    }
}

/// When each conversation's history is next trimmed: every `every` rows
/// appended, so a trim (a walk of `history_cap` index entries) is paid once
/// per `every` warms, not per warm. Between trims a conversation may hold
/// up to `every - 1` rows past the cap; reads never return more than the
/// cap.
pub(crate) struct TrimClock {
    every: u32,
    appended: HashMap<ConversationId, u32>,
}

impl TrimClock {
    /// Trims every `history_cap / 8` rows (1 to 32).
    pub(crate) fn new(history_cap: i64) -> Self {
        let every = u32::try_from((history_cap / 8).clamp(1, 32)).unwrap_or(1);
        Self {
            every,
            appended: HashMap::new(),
        }
    }

    /// Counts a row appended for `id`; true when its history is due a trim.
    fn appended(&mut self, id: &ConversationId) -> bool {
        if self.every == 1 {
            return true;
        }
        if self.appended.len() >= TRIM_COUNTS_KEPT && !self.appended.contains_key(id) {
            self.appended.clear();
        }
        let count = self.appended.entry(id.clone()).or_insert(0);
        *count += 1;
        if *count >= self.every {
            *count = 0;
            true
        } else {
            false
        }
    }
}

/// One run being gathered.
#[derive(Default)]
pub(crate) struct WarmRun<'a> {
    records: Vec<&'a WarmRecord>,
    /// Each conversation's last schedule, in first-seen order.
    schedules: Vec<(&'a str, Option<i64>)>,
    scheduled: HashMap<&'a str, usize>,
    /// Each conversation's last ledger, as JSON.
    ledgers: HashMap<&'a str, String>,
}

/// A conversation's stats folded over the run's records.
struct Stats<'a> {
    id: &'a str,
    warms: i64,
    pct: Option<f64>,
    expected: Option<f64>,
    at: Option<i64>,
    error: Option<&'a str>,
    /// False when every record was history only (turns, stops): the
    /// conversation's stats stay as they were.
    counted: bool,
}

impl<'a> WarmRun<'a> {
    /// True when nothing was gathered.
    pub(crate) fn is_empty(&self) -> bool {
        self.records.is_empty() && self.schedules.is_empty() && self.ledgers.is_empty()
    }

    /// Adds a ledger; a later one for the same conversation replaces it.
    fn ledger(&mut self, id: &'a ConversationId, ledger: &warming_core::Ledger) {
        let json = serde_json::to_string(ledger).unwrap_or_default();
        self.ledgers.insert(id.as_str(), json);
    }

    /// Adds `write` if it is one a run takes (a warm, a schedule, a
    /// ledger); false for any other, which the caller applies itself.
    pub(crate) fn add(&mut self, write: &'a Write) -> bool {
        match write {
            Write::Warm(record) => self.warm(record),
            Write::Schedule {
                conversation,
                next_warm_at,
            } => self.schedule(conversation, *next_warm_at),
            Write::Ledger {
                conversation,
                ledger,
            } => self.ledger(conversation, ledger),
            _ => return false,
        }
        true
    }

    /// Adds a warm's record.
    fn warm(&mut self, record: &'a WarmRecord) {
        self.records.push(record);
    }

    /// Adds a schedule; a later one for the same conversation replaces it.
    fn schedule(&mut self, id: &'a ConversationId, at: Option<Timestamp>) {
        let at = at.map(|t| ms(t.as_millis()));
        match self.scheduled.get(id.as_str()) {
            Some(&i) => self.schedules[i].1 = at,
            None => {
                self.scheduled.insert(id.as_str(), self.schedules.len());
                self.schedules.push((id.as_str(), at));
            }
        }
    }

    /// Writes the run in `tx` and empties it.
    pub(crate) fn apply(
        &mut self,
        tx: &mut Transaction<'_>,
        s: &RunStatements,
        trims: &mut TrimClock,
        history_cap: i64,
    ) -> Result<(), postgres::Error> {
        if !self.records.is_empty() {
            let stats = self.stats();
            let ids: Vec<&str> = stats.iter().map(|s| s.id).collect();
            tx.execute(&s.touch, &[&ids])?;
            self.insert_history(tx, s)?;
            update_stats(tx, s, &stats)?;
            let due: Vec<&str> = self
                .records
                .iter()
                .filter(|r| trims.appended(&r.conversation_id))
                .map(|r| r.conversation_id.as_str())
                .collect();
            if !due.is_empty() {
                tx.execute(&s.trims, &[&due, &history_cap])?;
            }
        }
        if !self.schedules.is_empty() {
            let (ids, ats): (Vec<&str>, Vec<Option<i64>>) = self.schedules.iter().copied().unzip();
            tx.execute(&s.schedules, &[&ids, &ats])?;
        }
        if !self.ledgers.is_empty() {
            let (ids, ledgers): (Vec<&str>, Vec<String>) = self.ledgers.drain().unzip();
            tx.execute(&s.ledgers, &[&ids, &ledgers])?;
        }
        self.records.clear();
        self.schedules.clear();
        self.scheduled.clear();
        Ok(())
    }

    /// Each conversation's stats, folded in arrival order, one entry per
    /// conversation in the run.
    fn stats(&self) -> Vec<Stats<'a>> {
        let mut stats: Vec<Stats<'a>> = Vec::new();
        let mut at: HashMap<&str, usize> = HashMap::new();
        for r in &self.records {
            let id = r.conversation_id.as_str();
            let i = *at.entry(id).or_insert_with(|| {
                stats.push(Stats {
                    id,
                    warms: 0,
                    pct: None,
                    expected: None,
                    at: None,
                    error: None,
                    counted: false,
                });
                stats.len() - 1
            });
            let entry = &mut stats[i];
            if r.trigger == WarmTrigger::Turn || r.outcome == WarmOutcome::Stopped {
                // A turn's usage, or a policy's stop, is history only.
                continue;
            }
            entry.counted = true;
            if r.outcome == WarmOutcome::Failed {
                entry.error = r.error.as_deref();
            } else {
                entry.warms += 1;
                entry.pct = r.pct;
                entry.expected = r.expected_pct;
                entry.at = Some(ms(r.finished_at.as_millis()));
                entry.error = None;
            }
        }
        stats
    }

    fn insert_history(
        &self,
        tx: &mut Transaction<'_>,
        s: &RunStatements,
    ) -> Result<(), postgres::Error> {
        let rs = &self.records;
        let column = |f: fn(&WarmRecord) -> i64| rs.iter().map(|r| f(r)).collect::<Vec<_>>();
        let tokens = |f: fn(&warming_core::Usage) -> u64| {
            rs.iter()
                .map(|r| r.usage.as_ref().map(|u| ms(f(u))))
                .collect::<Vec<_>>()
        };
        let ids: Vec<&str> = rs.iter().map(|r| r.conversation_id.as_str()).collect();
        let started = column(|r| ms(r.started_at.as_millis()));
        let finished = column(|r| ms(r.finished_at.as_millis()));
        let triggers: Vec<&str> = rs.iter().map(|r| r.trigger.as_str()).collect();
        let outcomes: Vec<&str> = rs.iter().map(|r| r.outcome.as_str()).collect();
        let expired: Vec<bool> = rs.iter().map(|r| r.expired).collect();
        let input = tokens(|u| u.input_tokens);
        let read = tokens(|u| u.cache_read_tokens);
        let write = tokens(|u| u.cache_write_tokens);
        let pct: Vec<Option<f64>> = rs.iter().map(|r| r.pct).collect();
        let expected: Vec<Option<f64>> = rs.iter().map(|r| r.expected_pct).collect();
        let backends: Vec<Option<&str>> = rs.iter().map(|r| r.backend.as_deref()).collect();
        let errors: Vec<Option<&str>> = rs.iter().map(|r| r.error.as_deref()).collect();
        let due = column(|r| ms(r.due_at.as_millis()));
        let kinds: Vec<Option<&str>> = rs
            .iter()
            .map(|r| r.kind.map(warming_core::WarmKind::as_str))
            .collect();
        let output = tokens(|u| u.output_tokens);
        let params: [&(dyn ToSql + Sync); 16] = [
            &ids, &started, &finished, &triggers, &outcomes, &expired, &input, &read, &write, &pct,
            &expected, &backends, &errors, &due, &kinds, &output,
        ];
        tx.execute(&s.history, &params)?;
        Ok(())
    }
}

fn update_stats(
    tx: &mut Transaction<'_>,
    s: &RunStatements,
    stats: &[Stats<'_>],
) -> Result<(), postgres::Error> {
    let stats: Vec<&Stats<'_>> = stats.iter().filter(|s| s.counted).collect();
    if stats.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = stats.iter().map(|s| s.id).collect();
    let warms: Vec<i64> = stats.iter().map(|s| s.warms).collect();
    let pct: Vec<Option<f64>> = stats.iter().map(|s| s.pct).collect();
    let expected: Vec<Option<f64>> = stats.iter().map(|s| s.expected).collect();
    let at: Vec<Option<i64>> = stats.iter().map(|s| s.at).collect();
    let errors: Vec<Option<&str>> = stats.iter().map(|s| s.error).collect();
    tx.execute(&s.stats, &[&ids, &warms, &pct, &expected, &at, &errors])?;
    Ok(())
}

/// Epoch milliseconds as PostgreSQL's BIGINT.
pub(crate) fn ms(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
