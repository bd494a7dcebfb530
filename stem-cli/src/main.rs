//! The `stem` command.
fn main() {}
