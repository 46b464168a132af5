//! The writer thread's queue: writes with whoever waits for their commit,
//! taken in batches (one transaction each) and answered in order.

use std::sync::mpsc::Receiver;

use tokio::sync::oneshot;
use warming_service::Write;

/// Whoever waits for a write's (or a flush's) result.
pub type Ack<E> = oneshot::Sender<Result<(), E>>;

/// A write waiting for the writer, with whoever waits for its commit.
pub enum Job<E> {
    /// Apply the write, then acknowledge (`None`: write-behind).
    Write(Write, Option<Ack<E>>),
    /// Acknowledge once everything before it is committed.
    Flush(Ack<E>),
    /// Finish what came before, then stop.
    Stop,
}

impl<E> std::fmt::Debug for Job<E> {
    /// The kind of job only: a template's body is no line for a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Write(_, Some(_)) => "Job::Write(acknowledged)",
            Self::Write(_, None) => "Job::Write(behind)",
            Self::Flush(_) => "Job::Flush",
            Self::Stop => "Job::Stop",
        })
    }
}

/// `first` and whatever else is queued already, up to `max_batch` jobs:
/// the writes one transaction commits together.
pub fn next_batch<E>(jobs: &Receiver<Job<E>>, first: Job<E>, max_batch: usize) -> Vec<Job<E>> {
    let mut batch = vec![first];
    while batch.len() < max_batch.max(1) {
        match jobs.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
    batch
}

/// The writes of a batch, in order.
pub fn writes<E>(batch: &[Job<E>]) -> impl Iterator<Item = &Write> {
    batch.iter().filter_map(|job| match job {
        Job::Write(write, _) => Some(write),
        Job::Flush(_) | Job::Stop => None,
    })
}

/// Answers each job of `batch` with its result (one per job, in order);
/// a write-behind that failed is logged, since nobody waits for it.
/// Returns whether the batch asked the writer to stop.
pub fn answer<E: std::fmt::Display>(batch: Vec<Job<E>>, results: Vec<Result<(), E>>) -> bool {
    let mut stop = false;
    for (job, result) in batch.into_iter().zip(results) {
        match job {
            Job::Write(_, Some(ack)) | Job::Flush(ack) => {
                let _ = ack.send(result);
            }
            Job::Write(_, None) => {
                if let Err(e) = result {
                    tracing::warn!(error = %e, "write-behind storage write failed");
                }
            }
            Job::Stop => stop = true,
        }
    }
    stop
}

/// Answers every job still queued with `error` (the writer cannot start,
/// or has stopped), until a `Stop` or the last sender is gone.
pub fn fail_all<E: Clone>(jobs: &Receiver<Job<E>>, error: &E) {
    while let Ok(job) = jobs.recv() {
        match job {
            Job::Write(_, Some(ack)) | Job::Flush(ack) => {
                let _ = ack.send(Err(error.clone()));
            }
            Job::Write(_, None) => {}
            Job::Stop => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_takes_what_is_queued_up_to_its_size_and_answers_in_order() {
        let (tx, rx) = std::sync::mpsc::channel::<Job<String>>();
        let (acks, mut waits): (Vec<_>, Vec<_>) = (0..3).map(|_| oneshot::channel()).unzip();
        for ack in acks {
            tx.send(Job::Flush(ack)).unwrap();
        }
        tx.send(Job::Stop).unwrap();
        let first = rx.recv().unwrap();
        let batch = next_batch(&rx, first, 2);
        assert_eq!(batch.len(), 2);
        assert!(!answer(batch, vec![Ok(()), Err("full".to_owned())]));
        assert_eq!(waits[0].try_recv().unwrap(), Ok(()));
        assert_eq!(waits[1].try_recv().unwrap(), Err("full".to_owned()));
        let first = rx.recv().unwrap();
        let batch = next_batch(&rx, first, 8);
        assert!(answer(batch, vec![Ok(()), Ok(())]));
    }
}
