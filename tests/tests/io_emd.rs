//! Real EMD (HDF5) files, Thermo Fisher Velox and Berkeley EMD v0.2 / Prismatic, read by
//! `stem_core::io::open`, compared with the values RosettaSciIO 0.15.0 reads from the same files
//! (hyperspy 1.7.6 wheel, `hyperspy/tests/io/emd_files/`, the Velox zip unpacked by
//! `scripts/fetch-test-data.sh`). Reference values were printed by:
//!
//! ```python
//! from rsciio.emd import file_reader
//! for s in file_reader(path, lazy=False):
//!     d = np.asarray(s["data"])
//!     print(s["metadata"]["General"]["title"], d.shape, d.astype(np.float64).sum(), d.flat[0])
//!     for a in s["axes"]: print(a.get("name"), a.get("size"), a.get("scale"), a.get("offset"), a.get("units"))
//! ```
//!
//! Differences by design: lengths are in nm (RosettaSciIO picks pm / nm / µm), Velox image
//! stacks keep every frame (RosettaSciIO sums the frames of spectrum-image files), each
//! Berkeley/Prismatic data group is one signal (RosettaSciIO stacks the `_depthNNNN` groups),
//! Velox titles are the detector names (RosettaSciIO uses the display labels).
//!
//! Sums compare to 1e-9 relative (both sum the same integers / f32 values in f64); scales and
//! offsets to 1e-12 relative (the same f64 numbers, ×1e9 for m → nm).

use std::path::PathBuf;
use stem_core::hypercube::SignalKind;
use stem_core::io::{Dataset, Format, OpenOptions, open, open_with, read_bytes};

fn data_dir() -> Option<PathBuf> {
    let fei = stem_tests::test_data::real_files(
        "hyperspy/tests/io/emd_files/fei_emd_files",
        "EMD test data",
    )?;
    fei.parent().map(PathBuf::from)
}

fn open_rel(rel: &str) -> Option<Dataset> {
    let dir = data_dir()?;
    Some(open(dir.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}")))
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs().max(1e-30)
}

fn sum_first(ds: &Dataset, i: usize) -> (f64, f32) {
    let cube = ds.signals[i].to_hypercube().unwrap();
    let sum = cube.data().iter().map(|&v| f64::from(v)).sum();
    (sum, *cube.data().iter().next().unwrap())
}

fn check_axis(ds: &Dataset, sig: usize, ax: usize, scale: f64, offset: f64, units: &str) {
    let a = &ds.signals[sig].axes[ax];
    assert!(
        close(a.scale, scale, 1e-12),
        "axis {ax}: scale {} vs {scale}",
        a.scale
    );
    assert!(
        close(a.offset, offset, 1e-12),
        "axis {ax}: offset {} vs {offset}",
        a.offset
    );
    assert_eq!(a.units, units, "axis {ax} units");
}

#[test]
fn velox_stem_image_with_metadata() {
    let Some(ds) = open_rel("fei_emd_files/fei_emd_image.emd") else {
        return;
    };
    assert_eq!(ds.format, Format::Emd);
    assert_eq!(ds.signals.len(), 1);
    let s = &ds.signals[0];
    assert_eq!(s.shape(), vec![512, 512]);
    assert_eq!(s.kind(), SignalKind::Image);
    assert_eq!(s.title, "HAADF");
    assert_eq!(sum_first(&ds, 0), (2431912854.0, 9240.0));
    // RosettaSciIO: 0.0053024148379916015 µm, offset -1.35741819852585 µm.
    check_axis(&ds, 0, 0, 5.302_414_837_991_601, -1357.41819852585, "nm");
    check_axis(&ds, 0, 1, 5.302_414_837_991_601, -1357.41819852585, "nm");
    let m = &s.metadata;
    assert_eq!(m.beam_energy_kev, Some(200.0));
    assert_eq!(m.magnification, Some(40000.0));
    assert!(close(m.camera_length_mm.unwrap(), 98.0, 1e-12));
    assert!(close(m.dwell_time_us.unwrap(), 20.0, 1e-12));
    // 1488794201 s; the file's own log says "2017-03-06 09:56:41 Started acquisition".
    assert_eq!(m.acquisition_date.as_deref(), Some("2017-03-06T09:56:41Z"));
    assert_eq!(m.microscope.as_deref(), Some("FEI Company Talos"));
    // The JSON metadata is the signal's tag tree; the file's JSON documents are in the file's.
    assert_eq!(
        s.tags
            .get_path("Optics/AccelerationVoltage")
            .and_then(|t| t.as_f64()),
        Some(200000.0)
    );
    assert_eq!(
        ds.tags.get_path("Version/format").and_then(|t| t.as_str()),
        Some("Velox")
    );
}

#[test]
fn velox_camera_images_chunked() {
    // Data stored in (10, 10, 1) chunks; RosettaSciIO: (64, 64) int16, sum 0.
    for (rel, scale, offset) in [
        (
            "fei_emd_files/1532 Camera Ceta.emd",
            0.21557341700960705,
            -220.74717901783762,
        ),
        (
            "fei_emd_files/1854 Camera Ceta.emd",
            1.6940589666697667,
            -3469.4327637396823,
        ),
    ] {
        let Some(ds) = open_rel(rel) else { return };
        assert_eq!(ds.signals[0].shape(), vec![64, 64], "{rel}");
        assert_eq!(
            ds.signals[0].original_dtype,
            stem_core::frame_source::DType::I16
        );
        assert_eq!(sum_first(&ds, 0), (0.0, 0.0));
        check_axis(&ds, 0, 0, scale, offset, "nm");
        check_axis(&ds, 0, 1, scale, offset, "nm");
    }
}

#[test]
fn velox_tem_stack_is_an_image_series() {
    let Some(ds) = open_rel("fei_example_tem_stack.emd") else {
        return;
    };
    let s = &ds.signals[0];
    assert_eq!(s.shape(), vec![2, 3, 3]);
    assert_eq!(s.kind(), SignalKind::ImageSeries);
    assert_eq!(sum_first(&ds, 0), (153.0, 0.0));
    // RosettaSciIO: 8.172883192297851 pm, offset -16738.064777826 pm.
    check_axis(&ds, 0, 1, 0.008172883192297851, -16.738064777826, "nm");
    assert_eq!(ds.signals[0].metadata.beam_energy_kev, Some(300.0));
}

#[test]
fn velox_dpc_real_signals_and_complex_ones_skipped() {
    let Some(ds) = open_rel("fei_example_dpc_titles.emd") else {
        return;
    };
    // RosettaSciIO's real-valued signals (the complex "DPC" one is skipped here).
    let mut want = [
        -6488.0,
        748258.671875,
        120936.0,
        118239.0,
        120005.0,
        -931.0,
        124727.0,
        41140.890625,
    ];
    let mut got: Vec<f64> = (0..ds.signals.len()).map(|i| sum_first(&ds, i).0).collect();
    want.sort_by(f64::total_cmp);
    got.sort_by(f64::total_cmp);
    assert_eq!(got, want);
    for s in &ds.signals {
        assert_eq!(s.shape(), vec![2, 2]);
        assert!(close(s.axes[0].scale, 0.09961991555830654, 1e-12));
    }
    assert_eq!(ds.tags.get("skipped").map(|t| t.entries().len()), Some(1));
}

#[test]
fn velox_complex_fft_only_is_unsupported() {
    let Some(dir) = data_dir() else { return };
    let err = open(dir.join("fei_example_complex_fft.emd")).unwrap_err();
    assert!(matches!(err, stem_core::Error::Unsupported { .. }), "{err}");
}

#[test]
fn velox_spectra_energy_axis() {
    let Some(ds) = open_rel("fei_emd_files/fei_emd_spectrum.emd") else {
        return;
    };
    assert_eq!(ds.signals[0].shape(), vec![4096]);
    assert_eq!(ds.signals[0].kind(), SignalKind::Spectrum);
    assert_eq!(sum_first(&ds, 0), (1168845.0, 0.0));
    check_axis(&ds, 0, 0, 0.01, -1.0, "keV");

    let Some(ds) = open_rel("fei_emd_files/fei_SI_EDS-HAADF-4detectors_2frames.emd") else {
        return;
    };
    let mut sums: Vec<f64> = ds
        .signals
        .iter()
        .enumerate()
        .filter(|(_, s)| s.shape() == vec![4096])
        .map(|(i, s)| {
            assert!(close(s.axes[0].scale, 0.005, 1e-12));
            assert!(close(s.axes[0].offset, -1.0, 1e-12));
            sum_first(&ds, i).0
        })
        .collect();
    sums.sort_by(f64::total_cmp);
    assert_eq!(sums, [865236.0, 867647.0, 913682.0, 916174.0]);
    // The EDS spectrum stream is listed as skipped.
    assert!(ds.tags.get("skipped").is_some());
}

#[test]
fn velox_spectrum_image_file_keeps_haadf_frames() {
    let Some(ds) = open_rel("fei_emd_files/fei_emd_si.emd") else {
        return;
    };
    assert_eq!(ds.signals.len(), 1);
    let s = &ds.signals[0];
    assert_eq!(s.shape(), vec![5, 16, 16]);
    check_axis(&ds, 0, 1, 5.302414837991601, -10.604829675983202, "nm");
    check_axis(&ds, 0, 2, 5.302414837991601, -47.72173354192441, "nm");
    // RosettaSciIO gives frame 0 only: sum 3389230, first pixel 9272.
    let cube = s.to_hypercube().unwrap();
    let frame0 = cube.data().index_axis(ndarray::Axis(0), 0);
    assert_eq!(frame0.iter().map(|&v| f64::from(v)).sum::<f64>(), 3389230.0);
    assert_eq!(frame0[[0, 0]], 9272.0);
    assert_eq!(sum_first(&ds, 0).0, 16967276.0, "all five frames (h5py)");
}

#[test]
fn berkeley_examples() {
    let cases: [(&str, &[usize], f64, SignalKind); 5] = [
        ("example_image.emd", &[3, 3], 36.0, SignalKind::Image),
        (
            "example_signal.emd",
            &[3, 3, 3],
            351.0,
            SignalKind::ImageSeries,
        ),
        ("example_spectrum.emd", &[3], 3.0, SignalKind::Spectrum),
        (
            "example_bytes_string_metadata.emd",
            &[10],
            45.0,
            SignalKind::Spectrum,
        ),
        (
            "example_axis_len_1.emd",
            &[5, 1, 5],
            0.0,
            SignalKind::ImageSeries,
        ),
    ];
    for (rel, shape, sum, kind) in cases {
        let Some(ds) = open_rel(rel) else { return };
        assert_eq!(ds.format, Format::Emd, "{rel}");
        assert_eq!(ds.signals[0].shape(), shape, "{rel}");
        assert_eq!(ds.signals[0].kind(), kind, "{rel}");
        assert_eq!(sum_first(&ds, 0), (sum, 0.0), "{rel}");
    }
    let ds = open_rel("example_bytes_string_metadata.emd").unwrap();
    assert_eq!(ds.signals[0].axes[0].name, "test_name");
    assert_eq!(ds.signals[0].axes[0].units, "test_units");
    let ds = open_rel("example_metadata.emd").unwrap();
    assert_eq!(ds.signals[0].title, "This is a test!");
    let ds = open_rel("example_image.emd").unwrap();
    assert_eq!(ds.signals[0].title, "__unnamed__");
    // Object (string) data: not numeric.
    let Some(dir) = data_dir() else { return };
    let err = open(dir.join("example_object_dtype_data.emd")).unwrap_err();
    assert!(matches!(err, stem_core::Error::Unsupported { .. }), "{err}");
}

#[test]
fn prismatic_4d_stem() {
    let Some(ds) = open_rel("Si100_4D.emd") else {
        return;
    };
    assert_eq!(ds.signals.len(), 2);
    let mut total = 0.0;
    for (i, s) in ds.signals.iter().enumerate() {
        assert_eq!(s.shape(), vec![11, 11, 8, 8]);
        assert_eq!(s.kind(), SignalKind::FourDStem);
        assert_eq!(s.axes[0].name, "R_x");
        check_axis(&ds, i, 0, 0.5, 0.0, "nm");
        // The coordinates are f32: RosettaSciIO's spacing and our mean step differ by f32
        // rounding (7e-8 relative), hence 1e-6 here.
        let q = &s.axes[2];
        assert!(close(q.scale, 0.18416205048561096, 1e-6), "{}", q.scale);
        assert!(close(q.offset, -0.7366482615470886, 1e-7), "{}", q.offset);
        assert_eq!(q.units, "1/nm");
        total += sum_first(&ds, i).0;
    }
    // RosettaSciIO stacks both depths: sum 221.2757043148673 (f32 data summed in f64).
    assert!(close(total, 221.2757043148673, 1e-9), "{total}");
}

#[test]
fn lazy_hyperslab_reads_match_loaded() {
    let Some(dir) = data_dir() else { return };
    let lazy = OpenOptions {
        lazy_threshold_bytes: 0,
    };
    for rel in [
        "Si100_4D.emd",
        "fei_emd_files/1532 Camera Ceta.emd",
        "fei_emd_files/fei_emd_si.emd",
        "fei_example_tem_stack.emd",
        "fei_emd_files/fei_SI_EDS-HAADF-4detectors_2frames.emd",
    ] {
        let loaded = open(dir.join(rel)).unwrap();
        let l = open_with(dir.join(rel), &lazy).unwrap();
        assert_eq!(loaded.signals.len(), l.signals.len(), "{rel}");
        for (a, b) in loaded.signals.iter().zip(&l.signals) {
            assert!(!a.is_lazy());
            assert!(b.is_lazy(), "{rel}: {}", b.title);
            assert_eq!(a.shape(), b.shape());
            assert_eq!(a.axes, b.axes);
            assert_eq!(
                a.to_hypercube().unwrap().data(),
                b.to_hypercube().unwrap().data(),
                "{rel}: {}",
                a.title
            );
        }
    }
}

/// Every prefix of every EMD file (40 lengths each) reads as an error or a data set, never a
/// panic.
#[test]
fn truncated_emd_files_never_panic() {
    let Some(dir) = data_dir() else { return };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .chain(std::fs::read_dir(dir.join("fei_emd_files")).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "emd"))
        .collect();
    files.sort();
    assert!(files.len() >= 20, "{} EMD files", files.len());
    let mut errors = 0;
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        let n = bytes.len();
        for k in 0..40 {
            let cut = n * k / 40;
            if read_bytes(&bytes[..cut], Format::Emd).is_err() {
                errors += 1;
            }
        }
    }
    // Most prefixes lose the object headers or data: they must be errors.
    assert!(errors > files.len() * 30, "{errors} errors");
}

/// Deterministic byte corruptions of the Velox and Berkeley files: errors, never panics.
#[test]
fn corrupted_emd_files_never_panic() {
    let Some(dir) = data_dir() else { return };
    for rel in [
        "example_image.emd",
        "Si100_4D.emd",
        "fei_example_tem_stack.emd",
        "fei_emd_files/1532 Camera Ceta.emd",
    ] {
        let bytes = std::fs::read(dir.join(rel)).unwrap();
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..150 {
            let mut b = bytes.clone();
            for _ in 0..8 {
                // xorshift64: deterministic positions and values.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let pos = (state % b.len() as u64) as usize;
                b[pos] = (state >> 32) as u8;
            }
            let _ = read_bytes(&b, Format::Emd);
        }
    }
}

/// pixstem's `fpd_file_test.hdf5`: real Merlin frames in a generic HDF5 file (big-endian u16,
/// gzip, (1, 1, 1, 64, 64) chunks). h5py: `fpd_expt/fpd_data/data` (2, 2, 1, 256, 256),
/// sum 3288875, first value 5.
#[test]
fn generic_hdf5_fpd_frames_and_hspy_axes() {
    let Some(emd) = data_dir() else { return };
    let root = emd.join("../../../..");
    let ds = open(root.join("pixstem/tests/test_data/fpd_file_test.hdf5")).unwrap();
    // fpd files mark their data groups with `emd_group_type = 1`: Berkeley EMD.
    assert_eq!(ds.format, Format::Emd);
    let i = ds
        .signals
        .iter()
        .position(|s| s.title == "fpd_data")
        .expect("fpd_data signal");
    assert_eq!(ds.signals[i].shape(), vec![2, 2, 1, 256, 256]);
    assert_eq!(ds.signals[i].nav_dims, 3);
    assert_eq!(sum_first(&ds, i), (3288875.0, 5.0));

    // HyperSpy 3.1 file: axis-i groups calibrate the array axes (h5py attributes).
    let ds = open(root.join("hyperspy/tests/io/hdf5_files/example2_v3.1.hspy")).unwrap();
    let i = ds
        .signals
        .iter()
        .position(|s| s.title == "test_diffraction_pattern")
        .expect("signal");
    let s = &ds.signals[i];
    assert_eq!(s.shape(), vec![16, 16]);
    assert_eq!(s.kind(), SignalKind::Image);
    assert_eq!(sum_first(&ds, i), (250910.0, 834.0));
    assert_eq!(s.axes[0].name, "y");
    assert!(close(s.axes[0].scale, 0.17443285882472992, 1e-12));
    assert!(close(s.axes[0].offset, 131.87124127149582, 1e-12));
}

/// Every HDF5 file of the test data (HyperSpy `.hspy`/`.hdf5`, pixstem) opens or gives an
/// error; none panics.
#[test]
fn all_hdf5_test_files_open_or_error() {
    let Some(emd) = data_dir() else { return };
    let root = emd.join("../../../..");
    let mut n = 0;
    for dir in ["hyperspy/tests/io/hdf5_files", "pixstem/tests/test_data"] {
        for e in std::fs::read_dir(root.join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "hdf5" || x == "hspy") {
                n += 1;
                if let Err(err) = open(&p) {
                    assert!(
                        matches!(
                            err,
                            stem_core::Error::Unsupported { .. }
                                | stem_core::Error::InvalidFile { .. }
                        ),
                        "{}: {err}",
                        p.display()
                    );
                }
            }
        }
    }
    assert!(n >= 15, "{n} files");
}

/// A lazily read EMD 4D-STEM cube streamed into a Zarr v3 array (frame chunks, never the whole
/// cube) reads back identical, with its calibration.
#[test]
fn emd_to_zarr_round_trip() {
    let Some(dir) = data_dir() else { return };
    let lazy = OpenOptions {
        lazy_threshold_bytes: 0,
    };
    let ds = open_with(dir.join("Si100_4D.emd"), &lazy).unwrap();
    let s = &ds.signals[0];
    let out = std::env::temp_dir().join(format!("stem_io_emd_zarr_{}", std::process::id()));
    let cfg = stem_core::io::zarr::ZarrWriteConfig {
        frames_per_chunk: 4,
        overwrite: true,
    };
    let report =
        stem_core::io::zarr::write_zarr(&*s.frame_source(), &out, &cfg, &stem_core::NoProgress)
            .unwrap();
    assert_eq!(report.chunk_shape, vec![1, 4, 8, 8]);
    let back = open(&out).unwrap();
    let b = back.first().unwrap();
    assert_eq!(b.axes, s.axes);
    assert_eq!(b.nav_dims, 2);
    assert_eq!(
        b.to_hypercube().unwrap().data(),
        s.to_hypercube().unwrap().data()
    );
    std::fs::remove_dir_all(&out).ok();
}
