//! Control plane (placeholder until its issue lands).
fn main() {}
