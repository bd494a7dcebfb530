//! Where the real microscope files fetched by `scripts/fetch-test-data.sh` live, and the rule
//! for tests that need them: skip with a message when they are absent, fail instead when
//! `STEM_REQUIRE_REFERENCE` is set (as in CI).

use std::path::PathBuf;

/// `sub` inside the test-data cache (`$STEM_TEST_DATA`, default `<workspace>/target/test-data`)
/// when the fetch completed (`.complete`) and `sub` exists; otherwise `None` after printing
/// `SKIPPED: ...`, or a panic when `STEM_REQUIRE_REFERENCE` is set. `what` names the data in the
/// message (e.g. `"real-file test data"`).
pub fn real_files(sub: &str, what: &str) -> Option<PathBuf> {
    let root = std::env::var_os("STEM_TEST_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-data"));
    let dir = if sub.is_empty() {
        root.clone()
    } else {
        root.join(sub)
    };
    if root.join(".complete").exists() && dir.exists() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("STEM_REQUIRE_REFERENCE").is_none(),
        "{what} not found in {} and STEM_REQUIRE_REFERENCE is set",
        dir.display()
    );
    eprintln!(
        "SKIPPED: {what} not found in {} (run scripts/fetch-test-data.sh)",
        dir.display()
    );
    None
}
