//! The service's log: never a reason for it to stop or wait.
//!
//! Lines go through a bounded queue to a writer thread
//! (`tracing_appender::non_blocking`, lossy): when stderr is slow the queue
//! drops lines instead of blocking a request. The writer thread writes to
//! [`Stderr`], which drops a line it cannot write (a full filesystem, a
//! closed pipe) instead of failing. Both kinds of loss are counted for
//! `/metrics` (`warming_log_lines_dropped_total`).

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, NonBlockingBuilder, WorkerGuard};

/// Lines lost so far, both kinds; set once the log is installed.
static DROPPED: OnceLock<Dropped> = OnceLock::new();

/// The two counts of lost lines.
#[derive(Clone)]
struct Dropped {
    queue_full: ErrorCounter,
    unwritable: Arc<AtomicU64>,
}

/// Lines lost since the start: dropped because the queue was full or
/// because stderr refused them.
pub fn dropped_lines() -> u64 {
    DROPPED.get().map_or(0, |d| {
        d.queue_full.dropped_lines() as u64 + d.unwritable.load(Ordering::Relaxed)
    })
}

/// Stderr that loses a line it cannot write, and counts it.
struct Stderr {
    unwritable: Arc<AtomicU64>,
}

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if std::io::stderr().write_all(buf).is_err() {
            self.unwritable.fetch_add(1, Ordering::Relaxed);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

/// The writer the log subscriber uses, and the guard that flushes it at
/// exit.
pub fn writer() -> (NonBlocking, WorkerGuard) {
    let unwritable = Arc::new(AtomicU64::new(0));
    let (writer, guard) = NonBlockingBuilder::default().lossy(true).finish(Stderr {
        unwritable: unwritable.clone(),
    });
    let _ = DROPPED.set(Dropped {
        queue_full: writer.error_counter(),
        unwritable,
    });
    (writer, guard)
}
