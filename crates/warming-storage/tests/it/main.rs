//! Integration tests of the SQLite adapter, on real files in temp dirs.

mod blocks;
mod crash;
mod failure;
mod open;
mod roundtrip;

use std::path::PathBuf;

use warming_core::ConversationId;

/// A fresh temp dir and a database path inside it.
pub fn temp_db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warming.db");
    (dir, path)
}

/// A valid conversation id.
pub fn id(raw: &str) -> ConversationId {
    ConversationId::new(raw).unwrap()
}
