//! A bounded, stable-toolchain stand-in for the cargo-fuzz targets in `stem-core/fuzz/`
//! (which need nightly): seeded random byte mutations and truncations of the real test files
//! (`scripts/fetch-test-data.sh`), each parsed with `stem_core::io::read_bytes`. Every result
//! must be `Ok` or a typed error; a panic fails the test.
//!
//! Run: `cargo test --release -p stem-tests --test io_fuzz_smoke -- --ignored --nocapture`
//! (`STEM_FUZZ_ROUNDS` mutations per file, default 300).

use std::path::PathBuf;
use stem_core::io::{Format, detect, read_bytes};

/// xorshift64*: a tiny seeded generator (the package has no rand dependency).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn files() -> Vec<(PathBuf, Format)> {
    let dir = std::env::var_os("STEM_TEST_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-data"));
    let mut out = Vec::new();
    let mut stack = vec![dir];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if std::fs::metadata(&p)
                .map(|m| m.len() < 2_000_000)
                .unwrap_or(false)
            {
                let head = std::fs::read(&p).unwrap_or_default();
                if let Some(f) = detect(&head[..head.len().min(1024)], &p) {
                    out.push((p, f));
                }
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
#[ignore = "slow mutation smoke fuzzing over the real test files; run by hand / benchmark script"]
fn mutated_real_files_never_panic() {
    let rounds: usize = std::env::var("STEM_FUZZ_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let files = files();
    if files.is_empty() {
        eprintln!("SKIPPED: no test data (run scripts/fetch-test-data.sh)");
        return;
    }
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let mut outcomes = [0usize; 2];
    for (path, format) in &files {
        let bytes = std::fs::read(path).unwrap();
        for r in 0..rounds {
            let mut b = bytes.clone();
            if r % 10 == 0 {
                b.truncate(rng.below(b.len().max(1)));
            } else {
                for _ in 0..1 + rng.below(16) {
                    if b.is_empty() {
                        break;
                    }
                    let i = rng.below(b.len());
                    b[i] = match rng.below(4) {
                        0 => 0xFF,
                        1 => 0,
                        2 => b[i].wrapping_add(1),
                        _ => rng.next() as u8,
                    };
                }
            }
            let result = std::panic::catch_unwind(|| read_bytes(&b, *format).is_ok());
            match result {
                Ok(ok) => outcomes[usize::from(ok)] += 1,
                Err(_) => panic!(
                    "{} ({format:?}) mutation round {r} panicked",
                    path.display()
                ),
            }
        }
    }
    eprintln!(
        "{} files x {rounds} mutations: {} parsed, {} typed errors, 0 panics",
        files.len(),
        outcomes[1],
        outcomes[0]
    );
}
