//! Storage benchmark (in progress).

fn main() {}
