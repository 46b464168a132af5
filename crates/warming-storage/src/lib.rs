//! SQLite storage for warming (in progress).
