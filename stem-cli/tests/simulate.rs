//! Runs `stem simulate` as a user would.

use std::process::Command;

fn stem() -> Command {
    Command::new(env!("CARGO_BIN_EXE_stem"))
}

#[test]
fn cbed_on_a_sr_column_is_normalised_and_4mm_symmetric() {
    let dir = tempfile::tempdir().unwrap();
    let out = stem()
        .args([
            "simulate", "cbed", "--quiet", "--cells", "4", "--gpts", "128", "--out",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        std::fs::metadata(dir.path().join("cbed.png"))
            .unwrap()
            .len()
            > 0
    );
    let c = stem_core::io::npy::read_npy_f32(dir.path().join("cbed.npy"))
        .unwrap()
        .into_dimensionality::<ndarray::Ix2>()
        .unwrap();
    let (ny, nx) = c.dim();
    assert_eq!((ny, nx), (128, 128));
    // The pattern holds the electrons still inside the antialias aperture: at most all of them,
    // and at 15.6 Å thickness nearly all (absorption by scattering beyond ~68 mrad is small).
    let total: f64 = c.iter().map(|&v| f64::from(v)).sum();
    assert!(total > 0.9 && total <= 1.0 + 1e-5, "total {total}");
    // The probe sits on the Sr column at the cell origin: the pattern is symmetric under x <-> y
    // (a mirror of 4mm). A transposition error or an off-column probe breaks this.
    let (mut diff, mut norm) = (0.0f64, 0.0f64);
    for y in 0..ny {
        for x in 0..nx {
            let d = f64::from(c[[y, x]] - c[[x, y]]);
            diff += d * d;
            norm += f64::from(c[[y, x]]).powi(2);
        }
    }
    assert!(
        (diff / norm).sqrt() < 1e-4,
        "asymmetry {}",
        (diff / norm).sqrt()
    );
}

#[test]
fn bad_zone_axis_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = stem()
        .args(["simulate", "cbed", "--quiet", "--zone", "112", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("zone"), "{err}");
}
