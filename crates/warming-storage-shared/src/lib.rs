//! What the SQLite and PostgreSQL stores both do, written once: templates
//! as content-addressed blocks ([`blocks`]) and the writer thread's group
//! commit ([`jobs`]: batching queued writes, answering each once its
//! transaction is over).

pub mod blocks;
pub mod jobs;
