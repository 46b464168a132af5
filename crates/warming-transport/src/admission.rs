//! Which connections the server keeps when more arrive than it may hold.
//!
//! hyper bounds what one connection may do (header and body timeouts) but
//! not how many a client may open, nor who goes first when the total is
//! reached; a semaphore in front of `accept` (what we had) leaves every new
//! client, the health probe included, waiting in the kernel's backlog
//! behind a flood of sockets that send nothing. So every connection is
//! accepted at once and admitted here:
//!
//! - Below the total (`max_connections`) and the client address's share
//!   (`max_per_client`), it is admitted.
//! - Otherwise an idle connection (no request in flight) makes room: one
//!   of the same client's when its share is full, else one of the client
//!   holding the most places; of those, first the one silent longest (it
//!   never sent a byte), then the one idle longest (still sending its
//!   headers, or waiting between requests). A connection serving a request
//!   is never cut for another; a client holding few places is not cut for
//!   one holding many; one that spoke at once (as every real client does)
//!   outlasts silent ones.
//! - When nothing is idle, a small reserve (`reserved`) admits it on trust
//!   it must earn on its first request: only probes (`/healthz`, `/readyz`)
//!   and callers with the token are served there; anyone else gets a 503.
//! - Past the reserve, it is closed at once.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio_util::sync::CancellationToken;

/// The bounds admission keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionLimits {
    /// Most connections open at once, the reserve aside.
    pub max_connections: usize,
    /// Most connections one client address may hold.
    pub max_per_client: usize,
    /// Connections beyond both, for probes and token holders only.
    pub reserved: usize,
}

/// How a connection was admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admitted {
    /// Within the limits: serves anything.
    General,
    /// On the reserve: serves probes and token holders only.
    Reserved,
}

/// One admitted connection.
#[derive(Debug)]
struct Entry {
    client: IpAddr,
    reserved: bool,
    /// Requests in flight (a response's body counts until it is sent).
    busy: usize,
    /// Since when nothing was in flight (or since accepted).
    idle_since: Instant,
    /// It has sent at least one byte.
    spoke: bool,
    /// Cancelled to cut the connection.
    cut: CancellationToken,
}

#[derive(Debug, Default)]
struct Table {
    next_id: u64,
    entries: HashMap<u64, Entry>,
    per_client: HashMap<IpAddr, usize>,
    general: usize,
    reserved: usize,
}

/// The connections held, shared by the accept loop and the connections.
#[derive(Debug)]
pub struct Admission {
    limits: AdmissionLimits,
    table: Mutex<Table>,
}

/// A connection's place: dropping it frees the place.
#[derive(Debug)]
pub struct Place {
    admission: Arc<Admission>,
    id: u64,
    /// How it was admitted.
    pub admitted: Admitted,
    /// Cancelled when the connection is cut to make room.
    pub cut: CancellationToken,
}

/// A request in flight on a connection: while it lives, the connection is
/// not cut to make room.
#[derive(Debug)]
pub struct Busy {
    admission: Arc<Admission>,
    id: u64,
}

impl Admission {
    /// Nothing held yet.
    #[must_use]
    pub fn new(limits: AdmissionLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            table: Mutex::new(Table::default()),
        })
    }

    /// Admits a connection from `client` (which `spoke` already, or not
    /// yet), cutting an idle one to make room if need be; `None` when it
    /// must be closed at once.
    pub fn admit(self: &Arc<Self>, client: IpAddr, spoke: bool) -> Option<Place> {
        let mut table = self.table.lock().ok()?;
        let held = table.per_client.get(&client).copied().unwrap_or(0);
        let mut admitted = None;
        if held >= self.limits.max_per_client.max(1) {
            if table.cut_idlest(Some(client), false) {
                admitted = Some(Admitted::General);
            }
        } else if table.general < self.limits.max_connections.max(1)
            || table.cut_idlest(None, false)
        {
            admitted = Some(Admitted::General);
        }
        if admitted.is_none()
            && (table.reserved < self.limits.reserved || table.cut_idlest(None, true))
        {
            admitted = Some(Admitted::Reserved);
        }
        let admitted = admitted?;
        let id = table.next_id;
        table.next_id += 1;
        let cut = CancellationToken::new();
        let reserved = admitted == Admitted::Reserved;
        if reserved {
            table.reserved += 1;
        } else {
            table.general += 1;
        }
        *table.per_client.entry(client).or_default() += 1;
        table.entries.insert(
            id,
            Entry {
                client,
                reserved,
                busy: 0,
                idle_since: Instant::now(),
                spoke,
                cut: cut.clone(),
            },
        );
        Some(Place {
            admission: self.clone(),
            id,
            admitted,
            cut,
        })
    }

    /// How many connections are held: (general, reserved).
    #[must_use]
    pub fn held(&self) -> (usize, usize) {
        self.table
            .lock()
            .map(|t| (t.general, t.reserved))
            .unwrap_or_default()
    }

    fn release(&self, id: u64) {
        if let Ok(mut table) = self.table.lock() {
            table.remove(id);
        }
    }
}

impl Table {
    /// Cuts an idle connection (of `client`, if given, else of the client
    /// holding the most places; on the reserve or not, as `reserved` says):
    /// the one silent longest, else the one idle longest. Frees its place;
    /// whether one was found.
    fn cut_idlest(&mut self, client: Option<IpAddr>, reserved: bool) -> bool {
        let per_client = &self.per_client;
        let idlest = self
            .entries
            .iter()
            .filter(|(_, e)| e.busy == 0 && e.reserved == reserved)
            .filter(|(_, e)| client.is_none_or(|c| e.client == c))
            .min_by_key(|(_, e)| {
                let held = per_client.get(&e.client).copied().unwrap_or(0);
                (std::cmp::Reverse(held), e.spoke, e.idle_since)
            })
            .map(|(id, _)| *id);
        let Some(id) = idlest else {
            return false;
        };
        if let Some(entry) = self.entries.get(&id) {
            entry.cut.cancel();
        }
        self.remove(id);
        true
    }

    fn remove(&mut self, id: u64) {
        let Some(entry) = self.entries.remove(&id) else {
            return;
        };
        if entry.reserved {
            self.reserved -= 1;
        } else {
            self.general -= 1;
        }
        if let Some(n) = self.per_client.get_mut(&entry.client) {
            *n -= 1;
            if *n == 0 {
                self.per_client.remove(&entry.client);
            }
        }
    }
}

impl Place {
    /// The connection sent its first byte.
    pub fn spoke(&self) {
        if let Ok(mut table) = self.admission.table.lock() {
            if let Some(entry) = table.entries.get_mut(&self.id) {
                entry.spoke = true;
            }
        }
    }

    /// A request starts on this connection.
    #[must_use]
    pub fn busy(&self) -> Busy {
        if let Ok(mut table) = self.admission.table.lock() {
            if let Some(entry) = table.entries.get_mut(&self.id) {
                entry.busy += 1;
            }
        }
        Busy {
            admission: self.admission.clone(),
            id: self.id,
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.admission.release(self.id);
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if let Ok(mut table) = self.admission.table.lock() {
            if let Some(entry) = table.entries.get_mut(&self.id) {
                entry.busy = entry.busy.saturating_sub(1);
                if entry.busy == 0 {
                    entry.idle_since = Instant::now();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> AdmissionLimits {
        AdmissionLimits {
            max_connections: 4,
            max_per_client: 3,
            reserved: 1,
        }
    }

    impl Admission {
        fn admit_silent(self: &Arc<Self>, client: IpAddr) -> Option<Place> {
            self.admit(client, false)
        }
    }

    #[test]
    fn a_client_holding_few_places_is_not_cut_for_one_holding_many() {
        let admission = Admission::new(AdmissionLimits {
            max_connections: 4,
            max_per_client: 4,
            reserved: 0,
        });
        let light = admission.admit_silent(ip(1)).unwrap();
        let heavy: Vec<Place> = (0..3)
            .map(|_| admission.admit_silent(ip(2)).unwrap())
            .collect();
        let newcomer = admission.admit_silent(ip(3)).unwrap();
        assert!(
            !light.cut.is_cancelled(),
            "the oldest, but its client holds one"
        );
        assert!(heavy[0].cut.is_cancelled());
        assert!(!newcomer.cut.is_cancelled());
    }

    #[test]
    fn a_connection_that_spoke_outlasts_silent_ones() {
        let admission = Admission::new(limits());
        let speaker = admission.admit(ip(1), true).unwrap();
        let silent: Vec<Place> = (2..=4)
            .map(|n| admission.admit_silent(ip(n)).unwrap())
            .collect();
        let newer: Vec<Place> = (5..=7)
            .map(|n| admission.admit_silent(ip(n)).unwrap())
            .collect();
        assert!(newer.iter().all(|p| !p.cut.is_cancelled()));
        assert!(silent.iter().all(|p| p.cut.is_cancelled()));
        assert!(!speaker.cut.is_cancelled());
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn a_client_past_its_share_cuts_its_own_idlest_connection_not_anothers() {
        let admission = Admission::new(limits());
        let other = admission.admit_silent(ip(2)).unwrap();
        let first = admission.admit_silent(ip(1)).unwrap();
        let _second = admission.admit_silent(ip(1)).unwrap();
        let _third = admission.admit_silent(ip(1)).unwrap();
        let fourth = admission.admit_silent(ip(1)).unwrap();
        assert_eq!(fourth.admitted, Admitted::General);
        assert!(first.cut.is_cancelled(), "its own oldest idle one goes");
        assert!(!other.cut.is_cancelled());
    }

    #[test]
    fn busy_connections_are_never_cut_and_the_reserve_takes_the_next() {
        let admission = Admission::new(limits());
        let places: Vec<Place> = (1..=4)
            .map(|n| admission.admit_silent(ip(n)).unwrap())
            .collect();
        let busy: Vec<Busy> = places.iter().map(Place::busy).collect();
        let reserve = admission.admit_silent(ip(9)).unwrap();
        assert_eq!(reserve.admitted, Admitted::Reserved);
        assert!(places.iter().all(|p| !p.cut.is_cancelled()));
        // The reserve's idle connection makes room for the next; past
        // that, nothing is idle and the connection is refused.
        let next = admission.admit_silent(ip(9)).unwrap();
        assert!(reserve.cut.is_cancelled());
        let _busy_reserve = next.busy();
        assert!(admission.admit_silent(ip(9)).is_none());
        drop(busy);
        assert!(
            admission.admit_silent(ip(9)).is_some(),
            "idle again: room is made"
        );
    }

    #[test]
    fn a_dropped_place_frees_its_counts() {
        let admission = Admission::new(limits());
        let places: Vec<Place> = (1..=4)
            .map(|n| admission.admit_silent(ip(n)).unwrap())
            .collect();
        assert_eq!(admission.held(), (4, 0));
        drop(places);
        assert_eq!(admission.held(), (0, 0));
    }
}
