//! The `remit` command line.

fn main() {}
