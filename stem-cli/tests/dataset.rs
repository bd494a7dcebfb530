//! Runs `stem dataset generate` as a user would.

use std::process::Command;

fn stem() -> Command {
    Command::new(env!("CARGO_BIN_EXE_stem"))
}

fn recipe(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../stem-sim/examples/recipes")
        .join(name)
}

#[test]
fn generate_writes_the_same_bytes_with_one_and_two_threads() {
    let dir = tempfile::tempdir().unwrap();
    for threads in ["1", "2"] {
        let out = stem()
            .args([
                "dataset",
                "generate",
                "--quiet",
                "--count",
                "2",
                "--threads",
                threads,
            ])
            .arg(recipe("domains_stripes.json"))
            .arg(dir.path().join(threads))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("2 samples"));
    }
    for f in [
        "manifest.json",
        "sample_000000.npy",
        "sample_000001_mask_domain.npy",
        "sample_000001_mask_boundary.npy",
    ] {
        let a = std::fs::read(dir.path().join("1").join(f)).unwrap();
        let b = std::fs::read(dir.path().join("2").join(f)).unwrap();
        assert!(!a.is_empty() && a == b, "{f}");
    }
}

#[test]
fn bad_recipes_fail_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"name": "x", "seed": 1, "count": 0,
        "generator": {"kind": "lattice", "cell": {"preset": "si110"}}}"#,
    )
    .unwrap();
    let out = stem()
        .args(["dataset", "generate", "--quiet"])
        .arg(&bad)
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("count"));
}
