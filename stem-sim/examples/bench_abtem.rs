//! stem-sim side of the abTEM benchmark (see `bench/sim/run.sh` and `bench/sim/peer.py`).
//!
//! `cargo run --release -p stem-sim --example bench_abtem -- OUT`: reads the per-cell SrTiO3
//! potentials `OUT/pot_{256,384}.npy` written by `peer.py gen` (abTEM (slice, x, y) order,
//! transposed here), runs the CBED, PACBED and HAADF cases, writes `OUT/ours_*.npy` and
//! `OUT/ours.json` with wall and process CPU times (the transmission functions are included).

use ndarray::{Array2, Array3, Axis, Ix3, stack};
use std::time::Instant;
use stem_core::{NoProgress, Parallelism};
use stem_sim::detector::{Detector, MaxAngle};
use stem_sim::grid::Grid;
use stem_sim::multislice::{Multislice, MultisliceConfig};
use stem_sim::potential::SlicedPotential;
use stem_sim::probe::{Probe, ProbeConfig};
use stem_sim::scan::{DetectorOutput, GridScan, scan};

const A: f64 = 3.905;

/// Process CPU time (user + system, all threads) in seconds, from /proc/self/stat (Linux).
fn cpu_s() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = s.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // fields 14 and 15 (1-based) are utime and stime; `rest` starts at field 3.
    (t(11) + t(12)) / 100.0
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::path::PathBuf::from(std::env::args().nth(1).unwrap_or("bench/sim/out".into()));
    let mut cases = Vec::new();
    let only: Option<usize> = std::env::args().nth(2).and_then(|s| s.parse().ok());
    for g in [256usize, 384] {
        let path = out.join(format!("pot_{g}.npy"));
        if !path.exists() || only.is_some_and(|o| o != g) {
            eprintln!("skipping {g}: {} missing or not selected", path.display());
            continue;
        }
        let mut v = stem_core::io::npy::read_npy_f32(&path)?;
        v.swap_axes(1, 2);
        let v: Array3<f32> = v
            .as_standard_layout()
            .into_owned()
            .into_dimensionality::<Ix3>()?;
        let cell = SlicedPotential::new(v, vec![A / 2.0; 2], [4.0 * A, 4.0 * A])?;
        let grid = Grid::of_potential(&cell);
        let probe = Probe::new(ProbeConfig::default(), grid)?;
        let cfg = MultisliceConfig::default();
        let hmax = if g >= 384 { 200.0 } else { 130.0 };

        let mut run = |name: &str,
                       work: usize,
                       f: &mut dyn FnMut() -> Result<
            ndarray::ArrayD<f64>,
            Box<dyn std::error::Error>,
        >|
         -> Result<(), Box<dyn std::error::Error>> {
            let (w0, c0) = (Instant::now(), cpu_s());
            let arr = f()?;
            let (w, c) = (w0.elapsed().as_secs_f64(), cpu_s() - c0);
            stem_core::io::npy::write_npy(out.join(format!("ours_{name}_{g}.npy")), &arr)?;
            println!("stem-sim {name} {g}: {w:.2} s wall, {c:.2} s CPU");
            cases.push(format!(
                "{{\"case\": \"{name}\", \"gpts\": {g}, \"wall_s\": {w}, \"cpu_s\": {c}, \"work\": {work}}}"
            ));
            Ok(())
        };

        run("cbed", 204 * g * g, &mut || {
            let ms = Multislice::<f32>::new(&cell.clone().with_repeats(102)?, &cfg)?;
            let c = ms.diffraction_patterns(&probe, [2.0 * A, 2.0 * A])?;
            Ok(c.index_axis(Axis(0), 0).mapv(f64::from).into_dyn())
        })?;
        run("pacbed", 64 * 102 * g * g, &mut || {
            let ms = Multislice::<f32>::new(&cell.clone().with_repeats(51)?, &cfg)?;
            let s = GridScan::new([0.0, 0.0], [A, A], [8, 8])?;
            let det = [Detector::Pacbed {
                max_angle: MaxAngle::Full,
            }];
            let r = scan(&ms, &probe, &s, &det, Parallelism::Auto, &NoProgress)?;
            let DetectorOutput::Pacbed(p) = &r.outputs[0] else {
                return Err("no pacbed".into());
            };
            Ok(p.index_axis(Axis(0), 0).to_owned().into_dyn())
        })?;
        run("haadf", 625 * 52 * g * g, &mut || {
            let ms = Multislice::<f32>::new(&cell.clone().with_repeats(26)?, &cfg)?;
            let s = GridScan::with_step([0.0, 0.0], [2.0 * A, 2.0 * A], 0.3134918)?;
            let det = [
                Detector::annular((70.0, hmax)),
                Detector::annular((0.0, 20.0)),
                Detector::annular((10.0, 20.0)),
                Detector::annular((30.0, 70.0)),
            ];
            let r = scan(&ms, &probe, &s, &det, Parallelism::Auto, &NoProgress)?;
            let imgs: Vec<Array2<f64>> = r
                .outputs
                .iter()
                .filter_map(|o| match o {
                    DetectorOutput::Annular(a) => Some(a.index_axis(Axis(0), 0).to_owned()),
                    _ => None,
                })
                .collect();
            let views: Vec<_> = imgs.iter().map(|a| a.view()).collect();
            Ok(stack(Axis(0), &views)?.into_dyn())
        })?;
    }
    std::fs::write(
        out.join(match only {
            Some(g) => format!("ours_{g}.json"),
            None => "ours.json".into(),
        }),
        format!("{{\"cases\": [{}]}}\n", cases.join(", ")),
    )?;
    Ok(())
}
