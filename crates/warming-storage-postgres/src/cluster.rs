//! Several instances on one database: which instance holds which
//! conversation, and leases that move a dead instance's conversations to
//! the living (the [`Cluster`] port).
//!
//! Two tables: `instances` (an id, the URL peers reach it at, and a lease
//! measured on the database's clock, so instances' clocks never disagree)
//! and `owners` (the instance holding each conversation). A conversation
//! is claimed by the first instance a call for it reaches; it stays there
//! while that instance renews its lease. Claims are compare-and-set
//! updates and adoption takes rows with `FOR UPDATE SKIP LOCKED`, so two
//! instances never both win one conversation.

use std::collections::{HashMap, HashSet};
use std::sync::mpsc;
use std::sync::Mutex;

use postgres::Client;
use warming_core::{ConversationId, IntervalLimits, ListFilter, Restored, ReturnPrior};
use warming_service::{Cluster, Route, StoreError, PRIOR_KEY};

use crate::read::{restored, RESTORED_COLUMNS};
use crate::PgOpenError;

/// Peers remembered per instance before the memory is cleared: a bound,
/// not a cache policy (a forgotten peer costs one indexed read).
const PEERS_REMEMBERED: usize = 100_000;

/// Threads (each with a connection) answering the cluster's calls.
const CLUSTER_THREADS: usize = 4;

/// A job for a cluster thread.
type Job = Box<dyn FnOnce(&mut Client) + Send>;

/// This instance's membership of the cluster on a PostgreSQL database.
pub struct PgCluster {
    jobs: Mutex<mpsc::Sender<Job>>,
    me: String,
    /// The URL peers reach this instance at.
    advertise: String,
    lease_ms: i64,
    /// Conversations this instance holds: nobody takes them while its
    /// lease lives, so they need no database read.
    mine: Mutex<HashSet<ConversationId>>,
    /// Holders seen for others' conversations, by URL.
    peers: Mutex<HashMap<ConversationId, String>>,
    /// Conversations changed, as the listening thread hears of them.
    changes: Mutex<mpsc::Receiver<ConversationId>>,
    /// Tells the listening thread to stop.
    left: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// What instances present to each other when one forwards a call.
    secret: String,
}

impl std::fmt::Debug for PgCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgCluster").field("me", &self.me).finish()
    }
}

impl PgCluster {
    /// Joins the cluster on the database at `url` as the instance peers
    /// reach at `advertise` (a base URL), holding a lease of `lease_ms`.
    /// An earlier instance registered at the same URL is gone (this one
    /// holds its address): its conversations are free at once.
    ///
    /// # Errors
    /// [`PgOpenError`] when the database cannot be reached or the schema is
    /// not this build's (open the store first: it migrates).
    pub fn join(url: &str, advertise: &str, lease_ms: u64) -> Result<Self, PgOpenError> {
        let mut client = crate::connect(url, false)?;
        let me = format!(
            "{}-{:x}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        );
        let lease_ms = i64::try_from(lease_ms).unwrap_or(i64::MAX);
        let sql = |e: postgres::Error| PgOpenError::Schema(format!("cannot join: {e}"));
        let mut tx = client.transaction().map_err(sql)?;
        let secret = cluster_secret(&mut tx).map_err(sql)?;
        tx.execute("DELETE FROM instances WHERE url = $1", &[&advertise])
            .map_err(sql)?;
        tx.execute(
            "INSERT INTO instances (id, url, lease_until)
             VALUES ($1, $2, now() + $3 * interval '1 millisecond')",
            &[&me, &advertise, &(lease_ms as f64)],
        )
        .map_err(sql)?;
        tx.commit().map_err(sql)?;
        let (jobs, queue) = mpsc::channel::<Job>();
        // A few threads, each with its connection, take the jobs: one call
        // stuck on a lock (a claim another session holds up) leaves the
        // others, and the lease's renewal, free to go on.
        let queue = std::sync::Arc::new(Mutex::new(queue));
        let mut clients = vec![client];
        for _ in 1..CLUSTER_THREADS {
            clients.push(crate::connect(url, false)?);
        }
        for client in clients {
            let mut connection = crate::Connection::new(url, client);
            let queue = queue.clone();
            std::thread::Builder::new()
                .name("warming-pg-cluster".into())
                .spawn(move || loop {
                    let next = queue.lock().map(|q| q.recv());
                    let Ok(Ok(job)) = next else { return };
                    // Connected again if the database dropped the last
                    // connection; if it is still away, the job's own call
                    // fails on the closed client and says so.
                    if let Err(e) = connection.get() {
                        tracing::warn!(error = %e, "the cluster's connection is down; retrying");
                    }
                    job(connection.client());
                })?;
        }
        let (heard, changes) = mpsc::channel();
        let left = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (url, stop) = (url.to_owned(), left.clone());
        std::thread::Builder::new()
            .name("warming-pg-listen".into())
            .spawn(move || listen(&url, &heard, &stop))?;
        Ok(Self {
            secret,
            jobs: Mutex::new(jobs),
            me,
            advertise: advertise.to_owned(),
            lease_ms,
            mine: Mutex::new(HashSet::new()),
            peers: Mutex::new(HashMap::new()),
            changes: Mutex::new(changes),
            left,
        })
    }

    /// This instance's id in `instances`.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.me
    }

    /// Runs `job` on the cluster thread and waits for its answer.
    fn call<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Client) -> Result<T, postgres::Error> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, answer) = mpsc::sync_channel(1);
        let sent = self
            .jobs
            .lock()
            .map_err(|_| StoreError::Closed)?
            .send(Box::new(move |client| {
                let _ = reply.send(job(client));
            }));
        if sent.is_err() {
            return Err(StoreError::Closed);
        }
        answer
            .recv()
            .map_err(|_| StoreError::Closed)?
            .map_err(crate::store_error)
    }

    fn remember_mine(&self, ids: impl IntoIterator<Item = ConversationId>) {
        if let Ok(mut mine) = self.mine.lock() {
            mine.extend(ids);
        }
    }
}

/// Listens for changed conversations (`writer::notify`) on a connection of
/// its own until `left`, reconnecting after a loss (what was notified
/// meanwhile is not replayed).
fn listen(url: &str, heard: &mpsc::Sender<ConversationId>, left: &std::sync::atomic::AtomicBool) {
    use std::sync::atomic::Ordering;
    let wait = std::time::Duration::from_millis(250);
    while !left.load(Ordering::Relaxed) {
        let mut client = match postgres::Client::connect(url, postgres::NoTls) {
            Ok(client) => client,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for changes; retrying");
                std::thread::sleep(wait * 4);
                continue;
            }
        };
        let listening = client.batch_execute(&format!("LISTEN {}", crate::writer::UPDATES_CHANNEL));
        if let Err(e) = listening {
            tracing::warn!(error = %e, "cannot listen for changes; retrying");
            continue;
        }
        loop {
            if left.load(Ordering::Relaxed) {
                return;
            }
            let lost = {
                let mut notifications = client.notifications();
                let mut heard_any = notifications.timeout_iter(wait);
                loop {
                    match postgres::fallible_iterator::FallibleIterator::next(&mut heard_any) {
                        Ok(Some(n)) => {
                            if let Ok(id) = ConversationId::new(n.payload()) {
                                if heard.send(id).is_err() {
                                    return;
                                }
                            }
                        }
                        Ok(None) => break false,
                        Err(e) => {
                            tracing::warn!(error = %e, "lost the connection listening for changes");
                            break true;
                        }
                    }
                }
            };
            if lost || client.is_closed() {
                break;
            }
        }
    }
}

/// What the database says of one conversation's holder.
enum Holder {
    Me,
    Live(String),
    /// Nobody, or an instance whose lease lapsed (its id).
    Free(Option<String>),
}

fn holder(client: &mut Client, me: &str, id: &str) -> Result<Holder, postgres::Error> {
    let row = client.query_opt(
        "SELECT o.owner, i.url, COALESCE(i.lease_until > now(), false)
         FROM owners o LEFT JOIN instances i ON i.id = o.owner
         WHERE o.conversation = $1",
        &[&id],
    )?;
    Ok(match row {
        None => Holder::Free(None),
        Some(row) => {
            let owner: String = row.get(0);
            if owner == me {
                Holder::Me
            } else if row.get::<_, bool>(2) {
                Holder::Live(row.get(1))
            } else {
                Holder::Free(Some(owner))
            }
        }
    })
}

/// Claims `id` for `me` unless someone live holds it; the route.
fn claim(client: &mut Client, me: &str, id: &str) -> Result<Route, postgres::Error> {
    // A lost race re-reads: whoever won holds it now.
    for _ in 0..3 {
        let claimed = match holder(client, me, id)? {
            Holder::Me => return Ok(Route::Here),
            Holder::Live(url) => return Ok(Route::Peer(url)),
            Holder::Free(None) => client.execute(
                "INSERT INTO owners (conversation, owner) VALUES ($1, $2)
                 ON CONFLICT (conversation) DO NOTHING",
                &[&id, &me],
            )?,
            Holder::Free(Some(lapsed)) => client.execute(
                "UPDATE owners SET owner = $2 WHERE conversation = $1 AND owner = $3",
                &[&id, &me, &lapsed],
            )?,
        };
        if claimed == 1 {
            return Ok(Route::Here);
        }
    }
    Ok(Route::Here)
}

/// Claims up to `limit` conversations nobody live holds; their ids.
fn adopt(client: &mut Client, me: &str, limit: i64) -> Result<Vec<String>, postgres::Error> {
    let mut tx = client.transaction()?;
    let mut ids: Vec<String> = tx
        .query(
            "WITH free AS (
               SELECT o.conversation FROM owners o
               LEFT JOIN instances i ON i.id = o.owner
               WHERE o.owner <> $1 AND (i.id IS NULL OR i.lease_until < now())
               LIMIT $2 FOR UPDATE OF o SKIP LOCKED)
             UPDATE owners SET owner = $1 FROM free
             WHERE owners.conversation = free.conversation
             RETURNING owners.conversation",
            &[&me, &limit],
        )?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let room = limit - i64::try_from(ids.len()).unwrap_or(limit);
    if room > 0 {
        // Stored before any instance held them (a database from before
        // scale-out, or one instance's rows whose claim was never kept).
        ids.extend(
            tx.query(
                "INSERT INTO owners (conversation, owner)
                 SELECT c.id, $1 FROM conversations c
                 WHERE NOT EXISTS (SELECT 1 FROM owners o WHERE o.conversation = c.id)
                 LIMIT $2
                 ON CONFLICT (conversation) DO NOTHING
                 RETURNING conversation",
                &[&me, &room],
            )?
            .iter()
            .map(|row| row.get::<_, String>(0)),
        );
    }
    tx.commit()?;
    Ok(ids)
}

/// The secret every instance of the cluster shares, made by the first to
/// join (PostgreSQL's `gen_random_uuid`, cryptographically random) and
/// read by the others; serialised with migrations by their lock.
fn cluster_secret(tx: &mut postgres::Transaction<'_>) -> Result<String, postgres::Error> {
    tx.execute(
        "SELECT pg_advisory_xact_lock($1)",
        &[&crate::schema::MIGRATION_LOCK],
    )?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS cluster_secret (
             one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
             secret TEXT NOT NULL);
         INSERT INTO cluster_secret (secret)
             VALUES (replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''))
             ON CONFLICT DO NOTHING",
    )?;
    Ok(tx
        .query_one("SELECT secret FROM cluster_secret", &[])?
        .get(0))
}

impl Cluster for PgCluster {
    fn peer_secret(&self) -> &str {
        &self.secret
    }

    fn route(&self, conversation: &ConversationId) -> Result<Route, StoreError> {
        if self.mine.lock().is_ok_and(|m| m.contains(conversation)) {
            return Ok(Route::Here);
        }
        if let Some(url) = self
            .peers
            .lock()
            .ok()
            .and_then(|p| p.get(conversation).cloned())
        {
            return Ok(Route::Peer(url));
        }
        let (me, id) = (self.me.clone(), conversation.as_str().to_owned());
        let route = self.call(move |client| claim(client, &me, &id))?;
        match &route {
            Route::Here => self.remember_mine([conversation.clone()]),
            Route::Peer(url) => {
                if let Ok(mut peers) = self.peers.lock() {
                    if peers.len() >= PEERS_REMEMBERED {
                        peers.clear();
                    }
                    peers.insert(conversation.clone(), url.clone());
                }
            }
        }
        Ok(route)
    }

    fn forget(&self, conversation: &ConversationId) {
        if let Ok(mut peers) = self.peers.lock() {
            peers.remove(conversation);
        }
    }

    fn renew(&self) -> Result<bool, StoreError> {
        let (me, lease) = (self.me.clone(), self.lease_ms as f64);
        self.call(move |client| {
            client.execute(
                "UPDATE instances SET lease_until = now() + $2 * interval '1 millisecond'
                 WHERE id = $1 AND lease_until > now()",
                &[&me, &lease],
            )
        })
        .map(|renewed| renewed == 1)
    }

    fn rejoin(&self) -> Result<Vec<ConversationId>, StoreError> {
        let (me, url, lease) = (
            self.me.clone(),
            self.advertise.clone(),
            self.lease_ms as f64,
        );
        let held: Vec<String> = self.call(move |client| {
            let mut tx = client.transaction()?;
            tx.execute(
                "INSERT INTO instances (id, url, lease_until)
                 VALUES ($1, $2, now() + $3 * interval '1 millisecond')
                 ON CONFLICT (id) DO UPDATE SET url = excluded.url, lease_until = excluded.lease_until",
                &[&me, &url, &lease],
            )?;
            // Locked, so an adoption of these rows still in flight (it
            // began while the old lease had lapsed) commits first and the
            // rows it took no longer match: they are the adopter's.
            let held = tx
                .query(
                    "SELECT conversation FROM owners WHERE owner = $1 FOR UPDATE",
                    &[&me],
                )?
                .iter()
                .map(|row| row.get(0))
                .collect();
            tx.commit()?;
            Ok(held)
        })?;
        let held: Vec<ConversationId> = held
            .iter()
            .filter_map(|id| ConversationId::new(id).ok())
            .collect();
        if let Ok(mut mine) = self.mine.lock() {
            *mine = held.iter().cloned().collect();
        }
        if let Ok(mut peers) = self.peers.lock() {
            peers.clear();
        }
        tracing::info!(
            still_held = held.len(),
            "took a new lease after the last one lapsed"
        );
        Ok(held)
    }

    fn adopt(&self, limit: usize, limits: &IntervalLimits) -> Result<Vec<Restored>, StoreError> {
        let me = self.me.clone();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let limits = *limits;
        let (ids, restored) = self.call(move |client| {
            let ids = adopt(client, &me, limit)?;
            if ids.is_empty() {
                return Ok((ids, Vec::new()));
            }
            let sql = format!("SELECT {RESTORED_COLUMNS} FROM conversations WHERE id = ANY($1)");
            let rows = client.query(&sql, &[&ids])?;
            let restored: Vec<Restored> = rows
                .iter()
                .filter_map(|row| restored(row, &limits))
                .collect();
            Ok((ids, restored))
        })?;
        let adopted = ids.iter().filter_map(|id| ConversationId::new(id).ok());
        self.remember_mine(adopted);
        if !ids.is_empty() {
            tracing::info!(
                conversations = ids.len(),
                "adopted conversations whose instance's lease lapsed"
            );
        }
        Ok(restored)
    }

    fn merge_prior(&self, learned: &ReturnPrior) -> Result<ReturnPrior, StoreError> {
        let learned = learned.clone();
        self.call(move |client| {
            let mut tx = client.transaction()?;
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ($1, '{}') ON CONFLICT (key) DO NOTHING",
                &[&PRIOR_KEY],
            )?;
            let stored: String = tx
                .query_one(
                    "SELECT value FROM meta WHERE key = $1 FOR UPDATE",
                    &[&PRIOR_KEY],
                )?
                .get(0);
            let mut total = ReturnPrior::from_json(&stored);
            total.add(&learned);
            tx.execute(
                "UPDATE meta SET value = $2 WHERE key = $1",
                &[&PRIOR_KEY, &total.to_json()],
            )?;
            tx.commit()?;
            Ok(total)
        })
    }

    fn page(
        &self,
        after: Option<&ConversationId>,
        limit: usize,
        filter: ListFilter,
        limits: &IntervalLimits,
    ) -> Result<Vec<(Restored, bool)>, StoreError> {
        let me = self.me.clone();
        let after = after.map(|a| a.as_str().to_owned());
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let limits = *limits;
        self.call(move |client| {
            // Settings are stored as JSON; a conversation without any has
            // the defaults: warming off. Why a warm stopped is not stored:
            // `stopped` reads "on, nothing scheduled".
            let sql = format!(
                "SELECT {RESTORED_COLUMNS}, COALESCE(o.owner = $5, false)
                 FROM conversations c LEFT JOIN owners o ON o.conversation = c.id
                 WHERE ($1::text IS NULL OR c.id > $1)
                   AND ($2::bool IS NULL
                        OR COALESCE((c.settings::jsonb ->> 'enabled')::bool, false) = $2)
                   AND (NOT $3 OR (c.next_warm_at IS NOT NULL
                        AND COALESCE((c.settings::jsonb ->> 'enabled')::bool, false)))
                   AND (NOT $6 OR (c.next_warm_at IS NULL
                        AND COALESCE((c.settings::jsonb ->> 'enabled')::bool, false)))
                   AND ($7::text IS NULL OR strpos(c.id, $7) > 0)
                 ORDER BY c.id LIMIT $4"
            );
            let rows = client.query(
                &sql,
                &[
                    &after,
                    &filter.enabled,
                    &filter.armed,
                    &limit,
                    &me,
                    &filter.stopped,
                    &filter.id_contains,
                ],
            )?;
            Ok(rows
                .iter()
                .filter_map(|row| {
                    let mine: bool = row.get(row.len() - 1);
                    restored(row, &limits).map(|r| (r, mine))
                })
                .collect())
        })
    }

    fn next_change(&self) -> Option<ConversationId> {
        self.changes.lock().ok()?.recv().ok()
    }

    fn leave(&self) {
        self.left.store(true, std::sync::atomic::Ordering::Relaxed);
        let me = self.me.clone();
        let left = self.call(move |client| {
            client.execute(
                "UPDATE instances SET lease_until = now() - interval '1 millisecond' WHERE id = $1",
                &[&me],
            )
        });
        if let Err(e) = left {
            tracing::warn!(error = %e, "could not give the lease back; it lapses by itself");
        }
    }
}
