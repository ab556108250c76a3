//! ESP dataplane benchmarks (filled in with the esp crate).
fn main() {}
