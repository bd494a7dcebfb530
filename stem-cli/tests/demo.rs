//! Runs the `stem` binary as a user would.

use std::process::Command;

fn stem() -> Command {
    Command::new(env!("CARGO_BIN_EXE_stem"))
}

#[test]
fn demo_writes_outputs_and_reports_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let out = stem()
        .args(["demo", "--quiet", "--size", "160", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("ID-recall"), "{stdout}");
    for f in [
        "clean.png",
        "noisy.png",
        "detected.png",
        "clean.npy",
        "noisy.npy",
        "columns.csv",
        "summary.json",
    ] {
        let meta = std::fs::metadata(dir.path().join(f)).unwrap();
        assert!(meta.len() > 0, "{f} is empty");
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("summary.json")).unwrap())
            .unwrap();
    // At the default dose every visible column of the small field is found.
    assert_eq!(summary["refined"]["recall"].as_f64(), Some(1.0));
    assert_eq!(summary["refined"]["precision"].as_f64(), Some(1.0));
}

#[test]
fn bad_arguments_fail_with_a_message() {
    let out = stem().args(["demo", "--dose", "0"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--dose"));
}
