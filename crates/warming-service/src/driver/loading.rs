//! Reading conversations back from the store without blocking the driver:
//! an evicted conversation, or (in a cluster) one this instance has not got
//! in memory, is read on a blocking thread; commands for it wait, in their
//! order, while commands for every other conversation go on.

use warming_core::ConversationId;

use super::handle::Command;
use super::reads::Loaded;
use super::Driver;

impl Driver {
    /// Handles `command` now, or parks it until the conversations it names
    /// are read back (starting those reads).
    pub(super) fn handle(&mut self, command: Command) {
        let waits = self.must_wait(&command);
        if waits.is_empty() {
            self.handle_now(command);
        } else {
            self.loading.parked.push_back((waits, command));
        }
    }

    /// The conversations `command` must wait for: those being read, and
    /// those to read now (evicted, or unknown here in a cluster).
    fn must_wait(&mut self, command: &Command) -> Vec<ConversationId> {
        if self.evicted.is_empty() && !self.options.clustered && self.loading.reading.is_empty() {
            return Vec::new();
        }
        let mut waits = Vec::new();
        for id in command.conversations() {
            if self.loading.reading.contains(id) {
                waits.push(id.clone());
                continue;
            }
            let unknown = self.options.clustered && !self.warmer.knows(id);
            if self.evicted.contains(id) || unknown {
                self.start_reading(id.clone());
                waits.push(id.clone());
            }
        }
        waits
    }

    fn start_reading(&mut self, id: ConversationId) {
        self.loading.reading.insert(id.clone());
        let (store, limits, done) = (
            self.storage.clone(),
            self.options.limits,
            self.loaded.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let read = store.load(&id, &limits);
            let _ = done.send((id, read));
        });
    }

    /// A read finished: the conversation is restored (unless it became
    /// known meanwhile), and the commands that waited only for it run, in
    /// their order.
    pub(super) fn loaded(&mut self, (id, read): Loaded) {
        self.loading.reading.remove(&id);
        self.evicted.remove(&id);
        match read {
            Ok(Some(restored)) if !self.warmer.knows(&id) => {
                self.warmer.restore(self.clock.now(), [restored]);
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(conversation = %id, error = %e, "cannot read a conversation back from the store");
            }
        }
        for (mut waits, command) in std::mem::take(&mut self.loading.parked) {
            waits.retain(|w| *w != id);
            if waits.is_empty() {
                // Every conversation it names is resolved: it runs without
                // asking again (one the store did not have is new).
                self.handle_now(command);
            } else {
                self.loading.parked.push_back((waits, command));
            }
        }
    }
}
