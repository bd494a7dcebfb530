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
use stem_core::io::emd::{EdsStreamOptions, open_with_eds};
use stem_core::io::{Components, Dataset, Format, OpenOptions, open, open_with, read_bytes};

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
fn velox_dpc_real_and_complex_signals() {
    let Some(ds) = open_rel("fei_example_dpc_titles.emd") else {
        return;
    };
    // RosettaSciIO's real-valued signals.
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
    let mut got: Vec<f64> = (0..ds.signals.len())
        .filter(|&i| ds.signals[i].components == Components::Scalar)
        .map(|i| sum_first(&ds, i).0)
        .collect();
    want.sort_by(f64::total_cmp);
    got.sort_by(f64::total_cmp);
    assert_eq!(got, want);
    for s in &ds.signals {
        assert_eq!(&s.shape()[..2], &[2, 2]);
        assert!(close(s.axes[0].scale, 0.09961991555830654, 1e-12));
    }
    // The complex "DPC" image (compound {realFloat, imagFloat}). RosettaSciIO: (2, 2)
    // complex64, real sum -567.2834320068359, imaginary sum -4135.082183837891, first
    // (-32.846664-214.79666j), last (666.9429-1145.4937j); y/x 99.61991555830654 pm.
    let c: Vec<_> = ds
        .signals
        .iter()
        .filter(|s| s.components == Components::Complex)
        .collect();
    assert_eq!(c.len(), 1);
    check_complex(c[0], [2, 2], (-567.2834320068359, -4135.082183837891));
    let d = c[0].to_hypercube().unwrap();
    assert_eq!(
        (d.data()[[0, 0, 0]], d.data()[[0, 0, 1]]),
        (-32.846664, -214.79666)
    );
    assert_eq!(
        (d.data()[[1, 1, 0]], d.data()[[1, 1, 1]]),
        (666.9429, -1145.4937)
    );
    assert!(ds.tags.get("skipped").is_none());
}

/// Shape, kind, component axis and real / imaginary sums of a complex signal (the sums of the
/// same f32 values in f64: 1e-9 relative).
fn check_complex(s: &stem_core::io::Signal, yx: [usize; 2], (re, im): (f64, f64)) {
    assert_eq!(s.shape(), vec![yx[0], yx[1], 2]);
    assert_eq!(s.kind(), SignalKind::Image);
    assert_eq!(s.axes[2].name, "component");
    assert_eq!(s.original_dtype, stem_core::frame_source::DType::F32);
    let d = s.to_hypercube().unwrap();
    let part = |k: usize| -> f64 {
        d.data()
            .index_axis(ndarray::Axis(2), k)
            .iter()
            .map(|&v| f64::from(v))
            .sum()
    };
    assert!(close(part(0), re, 1e-9), "{} vs {re}", part(0));
    assert!(close(part(1), im, 1e-9), "{} vs {im}", part(1));
}

/// A Velox FFT image: compound {realFloatHalfEven, imagFloatHalfEven}. RosettaSciIO 0.15.0:
/// "Half FFT" (3, 4) complex64, real sum 1074452091.3125, imaginary sum -1505776.68359375,
/// first (1.0759727e+09-2j), last (-535030.6+12459.504j); y and x 98.01582906303135 1/µm,
/// offset -49.007914531515674 1/µm (×1e-3 for 1/nm here: 1e-12 relative).
#[test]
fn velox_complex_fft_is_a_complex_image() {
    let Some(ds) = open_rel("fei_example_complex_fft.emd") else {
        return;
    };
    assert_eq!(ds.signals.len(), 1);
    let s = &ds.signals[0];
    assert_eq!(s.components, Components::Complex);
    check_complex(s, [3, 4], (1074452091.3125, -1505776.68359375));
    let d = s.to_hypercube().unwrap();
    assert_eq!(
        (d.data()[[0, 0, 0]], d.data()[[0, 0, 1]]),
        (1.0759727e9, -2.0)
    );
    assert_eq!(
        (d.data()[[2, 3, 0]], d.data()[[2, 3, 1]]),
        (-535030.6, 12459.504)
    );
    check_axis(
        &ds,
        0,
        0,
        0.09801582906303135,
        -0.049_007_914_531_515_67,
        "1/nm",
    );
    check_axis(
        &ds,
        0,
        1,
        0.09801582906303135,
        -0.049_007_914_531_515_67,
        "1/nm",
    );
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
    // The compressed `Data/SpectrumImage` copy is listed as skipped (the streams are decoded).
    let skipped = ds.tags.get("skipped").unwrap();
    assert_eq!(skipped.entries().len(), 1);
    assert!(skipped.entries()[0].0.starts_with("Data/SpectrumImage/"));
}

#[test]
fn velox_spectrum_image_file_keeps_haadf_frames() {
    let Some(ds) = open_rel("fei_emd_files/fei_emd_si.emd") else {
        return;
    };
    // The HAADF series and the EDS spectrum image decoded from the stream.
    assert_eq!(ds.signals.len(), 2);
    assert_eq!(ds.signals[0].kind(), SignalKind::ImageSeries);
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

/// The EDS spectrum image of a Velox file (the one signal of kind `SpectrumImage`).
fn eds_si(ds: &Dataset) -> &stem_core::io::Signal {
    let mut it = ds
        .signals
        .iter()
        .filter(|s| s.kind() == SignalKind::SpectrumImage || s.nav_dims == 3);
    let s = it.next().expect("an EDS spectrum image");
    assert!(it.next().is_none(), "one EDS spectrum image");
    s
}

/// Sum of one pixel's spectrum of a `[y, x, channel]` cube.
fn pixel_sum(cube: &stem_core::Hypercube<f32>, y: usize, x: usize) -> f64 {
    (0..cube.data().shape()[2])
        .map(|c| f64::from(cube.data()[[y, x, c]]))
        .sum()
}

/// Velox EDS spectrum streams (`Data/SpectrumStream`) decoded into spectrum images, against
/// RosettaSciIO 0.15.0 (+ `sparse`), which decodes the same streams (frames and detectors
/// summed by default). Reference values were printed by:
///
/// ```python
/// from rsciio.emd import file_reader
/// si = [s for s in file_reader(path) if s["data"].ndim == 3][0]
/// d = np.asarray(si["data"]); h, w = d.shape[:2]
/// print(d.shape, int(d.sum()), [int(d[y, x].sum()) for (y, x) in [(0, 0), (h-1, w-1), (h//2, 1)]],
///       int(d[3, 2].argmax()), int(d[3, 2].max()))
/// for a in si["axes"]: print(a["name"], a["size"], a["scale"], a["offset"], a["units"])
/// f = np.asarray([s for s in file_reader(path, sum_frames=False) if s["data"].ndim == 4][0]["data"])
/// print(f.shape, [int(x) for x in f.reshape(f.shape[0], -1).sum(1)])
/// print([int(np.asarray(s["data"]).sum()) for s in file_reader(path, sum_EDS_detectors=False)
///        if s["data"].ndim == 3])
/// ```
///
/// Besides these numbers, the whole arrays (summed and per frame) were compared equal with a
/// NumPy decoder of the same rules during development. Counts are small integers (exact in
/// f32 and their f64 sums), so every comparison is exact; axis calibrations to 1e-12 relative
/// (the same f64 numbers ×1e9 for m → nm).
#[test]
fn velox_eds_spectrum_streams_are_spectrum_images() {
    struct Case {
        rel: &'static str,
        shape: [usize; 3],
        total: f64,
        pixels: [f64; 3],
        argmax_3_2: (usize, f32),
        frames: &'static [f64],
        // y scale, y offset, x offset (nm); energy scale (keV).
        cal: (f64, f64, f64, f64),
    }
    let cases = [
        Case {
            rel: "fei_emd_files/fei_SI_EDS-HAADF-4detectors_2frames.emd",
            shape: [16, 16, 4096],
            total: 3562739.0,
            pixels: [14035.0, 14230.0, 13747.0],
            argmax_3_2: (203, 1466.0),
            frames: &[1782337.0, 1780402.0],
            cal: (
                1.2340096287454225,
                -28.38222146114472,
                -9.87207702996338,
                0.005,
            ),
        },
        // Scan 10 × 50 inside a 128 × 128 raster (ScanArea); 72 events after the tenth frame's
        // last marker are dropped (RosettaSciIO drops them too: 764077 events in the stream).
        Case {
            rel: "fei_emd_files/fei_SI_SuperX-HAADF_10frames_10x50.emd",
            shape: [50, 10, 4096],
            total: 764005.0,
            pixels: [1476.0, 1526.0, 1480.0],
            argmax_3_2: (201, 161.0),
            frames: &[
                76184.0, 76198.0, 76328.0, 76356.0, 76287.0, 76669.0, 76760.0, 76397.0, 76603.0,
                76223.0,
            ],
            cal: (
                1.2340096287454219,
                -7.404057772472531,
                22.212173317417594,
                0.005,
            ),
        },
        // The stream stops inside frame 5 (1273 of 1280 markers): the rest is empty.
        Case {
            rel: "fei_emd_files/fei_emd_si.emd",
            shape: [16, 16, 4096],
            total: 6564.0,
            pixels: [18.0, 27.0, 30.0],
            argmax_3_2: (100, 8.0),
            frames: &[1353.0, 1298.0, 1327.0, 1295.0, 1291.0],
            cal: (
                5.302414837991601,
                -10.604829675983202,
                -47.72173354192441,
                0.01,
            ),
        },
        Case {
            rel: "fei_emd_files/fei_SI_SuperX-HAADF_20frames_10x50_2ev.emd",
            shape: [50, 10, 4096],
            total: 1437219.0,
            pixels: [2834.0, 2770.0, 2950.0],
            argmax_3_2: (502, 166.0),
            frames: &[
                71995.0, 71832.0, 71893.0, 71557.0, 71970.0, 72339.0, 71651.0, 71645.0, 71987.0,
                71807.0, 71810.0, 72074.0, 71628.0, 71802.0, 71491.0, 71964.0, 72517.0, 71750.0,
                71606.0, 71901.0,
            ],
            cal: (
                1.2340096287454219,
                -7.404057772472531,
                22.212173317417594,
                0.002,
            ),
        },
    ];
    for c in &cases {
        let Some(ds) = open_rel(c.rel) else { return };
        let s = eds_si(&ds);
        assert_eq!(s.shape(), c.shape, "{}", c.rel);
        assert_eq!(s.kind(), SignalKind::SpectrumImage);
        assert_eq!(s.nav_dims, 2);
        let names: Vec<&str> = s.axes.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["y", "x", "energy"]);
        let (ys, yo, xo, es) = c.cal;
        let (y, x, e) = (&s.axes[0], &s.axes[1], &s.axes[2]);
        assert!(
            close(y.scale, ys, 1e-12) && close(x.scale, ys, 1e-12),
            "{}",
            c.rel
        );
        assert!(
            close(y.offset, yo, 1e-12) && close(x.offset, xo, 1e-12),
            "{}",
            c.rel
        );
        assert_eq!((y.units.as_str(), e.units.as_str()), ("nm", "keV"));
        assert!(close(e.scale, es, 1e-12) && close(e.offset, -1.0, 1e-12));
        assert_eq!(s.metadata.beam_energy_kev, Some(200.0));
        let cube = s.to_hypercube().unwrap();
        let total: f64 = cube.data().iter().map(|&v| f64::from(v)).sum();
        assert_eq!(total, c.total, "{}", c.rel);
        let (h, w) = (c.shape[0], c.shape[1]);
        let px = [
            pixel_sum(&cube, 0, 0),
            pixel_sum(&cube, h - 1, w - 1),
            pixel_sum(&cube, h / 2, 1),
        ];
        assert_eq!(px, c.pixels, "{}", c.rel);
        let spec: Vec<f32> = (0..4096).map(|k| cube.data()[[3, 2, k]]).collect();
        let max = spec.iter().copied().fold(0.0f32, f32::max);
        let argmax = spec.iter().position(|&v| v == max).unwrap();
        assert_eq!((argmax, max), c.argmax_3_2, "{}", c.rel);
        assert_eq!(
            s.tags
                .get_path("SpectrumStream/frames")
                .and_then(|t| t.as_f64()),
            Some(c.frames.len() as f64)
        );

        // Frames kept: [frame, y, x, channel], each frame's total as RosettaSciIO's.
        let keep = EdsStreamOptions {
            sum_frames: false,
            ..Default::default()
        };
        let fr = open_with_eds(
            data_dir().unwrap().join(c.rel),
            &OpenOptions::default(),
            &keep,
        )
        .unwrap();
        let f = eds_si(&fr);
        assert_eq!(f.nav_dims, 3);
        assert_eq!(f.shape()[0], c.frames.len());
        assert_eq!(f.axes[0].name, "frame");
        let fc = f.to_hypercube().unwrap();
        let per: Vec<f64> = fc
            .data()
            .outer_iter()
            .map(|fr| fr.iter().map(|&v| f64::from(v)).sum())
            .collect();
        assert_eq!(per, c.frames, "{}", c.rel);
    }
    let Some(ds) = open_rel(cases[1].rel) else {
        return;
    };
    let s = eds_si(&ds);
    assert_eq!(s.title, "SuperXG2");
    assert_eq!(
        s.tags
            .get_path("SpectrumStream/dropped_events")
            .and_then(|t| t.as_f64()),
        Some(72.0)
    );
}

/// The four Super-X detectors' streams: summed by default (title "EDS"), one signal each on
/// request; each detector's stream total equals its `Data/Spectrum` sum (RosettaSciIO
/// `sum_EDS_detectors=False`: 916174, 867647, 913682, 865236). Energy binning by 2 (the peer's
/// `rebin_energy=2`: shape (16, 16, 2048), scale 0.01 keV, offset -1 keV, same total).
#[test]
fn velox_eds_detectors_separate_and_energy_binning() {
    let Some(dir) = data_dir() else { return };
    let path = dir.join("fei_emd_files/fei_SI_EDS-HAADF-4detectors_2frames.emd");
    let ds = open(&path).unwrap();
    let s = eds_si(&ds);
    assert_eq!(s.title, "EDS");
    assert_eq!(
        s.tags
            .get_path("SpectrumStream/detectors")
            .map(|t| t.entries().len()),
        Some(4)
    );
    let sep = EdsStreamOptions {
        sum_detectors: false,
        ..Default::default()
    };
    let ds = open_with_eds(&path, &OpenOptions::default(), &sep).unwrap();
    let mut sums: Vec<(String, f64)> = ds
        .signals
        .iter()
        .filter(|s| s.kind() == SignalKind::SpectrumImage)
        .map(|s| (s.title.clone(), sum_of(s)))
        .collect();
    sums.sort_by(|a, b| a.0.cmp(&b.0));
    let titles: Vec<&str> = sums.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(titles, ["SuperXG21", "SuperXG22", "SuperXG23", "SuperXG24"]);
    // Each stream's total is its detector's spectrum total (Data/Spectrum, by title).
    for (title, sum) in &sums {
        let spectrum = ds
            .signals
            .iter()
            .find(|s| s.kind() == SignalKind::Spectrum && &s.title == title)
            .unwrap();
        assert_eq!(*sum, sum_of(spectrum), "{title}");
    }
    let mut v: Vec<f64> = sums.iter().map(|x| x.1).collect();
    v.sort_by(f64::total_cmp);
    assert_eq!(v, [865236.0, 867647.0, 913682.0, 916174.0]);

    let binned = EdsStreamOptions {
        energy_bin: 2,
        ..Default::default()
    };
    let ds = open_with_eds(&path, &OpenOptions::default(), &binned).unwrap();
    let b = eds_si(&ds);
    assert_eq!(b.shape(), vec![16, 16, 2048]);
    assert!(close(b.axes[2].scale, 0.01, 1e-12) && close(b.axes[2].offset, -1.0, 1e-12));
    assert_eq!(sum_of(b), 3562739.0);
    let bad = EdsStreamOptions {
        energy_bin: 0,
        ..Default::default()
    };
    assert!(matches!(
        open_with_eds(&path, &OpenOptions::default(), &bad),
        Err(stem_core::Error::InvalidParameter { .. })
    ));
}

/// The point-spectrum stream of `fei_emd_spectrum.emd` (scan 0 × 0) is not a spectrum image:
/// it is listed as skipped beside the Data/Spectrum signal that holds its sum.
#[test]
fn velox_point_spectrum_stream_is_skipped() {
    let Some(ds) = open_rel("fei_emd_files/fei_emd_spectrum.emd") else {
        return;
    };
    assert_eq!(ds.signals.len(), 1);
    let skipped = ds.tags.get("skipped").unwrap();
    assert!(skipped.entries()[0].0.starts_with("Data/SpectrumStream/"));
    assert!(
        skipped.entries()[0]
            .1
            .as_str()
            .unwrap()
            .contains("point acquisition")
    );
}

fn sum_of(s: &stem_core::io::Signal) -> f64 {
    s.to_hypercube()
        .unwrap()
        .data()
        .iter()
        .map(|&v| f64::from(v))
        .sum()
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
