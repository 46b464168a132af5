//! The `warming` binary.

fn main() {}
