//! Tests of the HDF5 / EMD reader on files built in memory with `hdf5-writer` (a separate,
//! write-only crate, so the reader is not checked against itself).

use super::*;
use crate::hypercube::SignalKind;
use crate::io::Components;
use crate::io::emd::{EdsStreamOptions, read_bytes_with_eds};
use crate::io::{Format, OpenOptions, open, open_with, read_bytes};
use hdf5_writer::{
    AttributeBuilder, DatasetBuilder, FILTER_DEFLATE, FilterDescription, Hdf5Builder, Hdf5Writer,
    WriteOptions,
};
use std::io::Cursor;

fn encode(b: Hdf5Builder) -> Vec<u8> {
    let plan = b.into_plan().unwrap();
    Hdf5Writer::new(Cursor::new(Vec::new()), WriteOptions::default())
        .finish(plan)
        .unwrap()
        .into_inner()
}

fn deflate() -> FilterDescription {
    FilterDescription {
        id: FILTER_DEFLATE,
        name: None,
        client_data: vec![4],
    }
}

/// A Berkeley EMD 4D-STEM file: data[sy, sx, ky, kx] = 1000 sy + 100 sx + 10 ky + kx, stored
/// in deflate-compressed (1, 1, ky, kx) chunks, with dim1..dim4 coordinates.
fn berkeley_4d() -> Vec<u8> {
    let shape = [4usize, 5, 6, 7];
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n)
        .map(|i| {
            let (kx, r) = (i % 7, i / 7);
            let (ky, r) = (r % 6, r / 6);
            let (sx, sy) = (r % 5, r / 5);
            (1000 * sy + 100 * sx + 10 * ky + kx) as f32
        })
        .collect();
    let dims: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let mut b = Hdf5Builder::new()
        .attribute(AttributeBuilder::fixed_string("version_major", "0"))
        .attribute(AttributeBuilder::fixed_string("version_minor", "2"))
        .dataset(
            DatasetBuilder::typed_data("experiment/cube/data", dims, &data)
                .unwrap()
                .chunked(vec![1, 1, 6, 7])
                .filter(deflate()),
        )
        .group_attribute(
            "experiment/cube",
            AttributeBuilder::scalar("emd_group_type", 1i32).unwrap(),
        );
    let cal = [
        ("R_y", "[n_m]", 0.25, 1.0),
        ("R_x", "[n_m]", 0.25, 2.0),
        ("Q_y", "[n_m^-1]", 0.5, -1.5),
        ("Q_x", "[n_m^-1]", 0.5, -1.5),
    ];
    for (i, (name, units, step, start)) in cal.into_iter().enumerate() {
        let v: Vec<f64> = (0..shape[i]).map(|k| start + step * k as f64).collect();
        b = b.dataset(
            DatasetBuilder::typed_data(
                format!("experiment/cube/dim{}", i + 1),
                vec![v.len() as u64],
                &v,
            )
            .unwrap()
            .attribute(AttributeBuilder::fixed_string("name", name))
            .attribute(AttributeBuilder::fixed_string("units", units)),
        );
    }
    encode(b)
}

/// A Velox file with one 2-frame u16 image series stored [y, x, frame] = [3, 4, 2]:
/// value = 100 frame + 10 y + x.
fn velox_series() -> Vec<u8> {
    let (h, w, n) = (3usize, 4usize, 2usize);
    let mut data = vec![0u16; h * w * n];
    for y in 0..h {
        for x in 0..w {
            for f in 0..n {
                data[(y * w + x) * n + f] = (100 * f + 10 * y + x) as u16;
            }
        }
    }
    let json = r#"{"BinaryResult": {"Detector": "HAADF", "PixelSize": {"width": "2e-10", "height": "3e-10"},
        "PixelUnitX": "m", "PixelUnitY": "m", "Offset": {"x": "1e-9", "y": "-2e-9"}},
        "Optics": {"AccelerationVoltage": "300000", "BeamConvergence": "0.0215", "CameraLength": "0.091"},
        "Scan": {"DwellTime": "2e-6"},
        "CustomProperties": {"StemMagnification": {"type": "double", "value": "2550000"}},
        "Acquisition": {"AcquisitionStartDatetime": {"DateTime": "1500000000"}},
        "Instrument": {"Manufacturer": "FEI Company", "InstrumentClass": "Titan"}}"#;
    let len = 4096usize;
    let mut meta = vec![0u8; len * n];
    for (i, &b) in json.as_bytes().iter().enumerate() {
        for f in 0..n {
            meta[i * n + f] = b;
        }
    }
    encode(
        Hdf5Builder::new()
            .dataset(
                DatasetBuilder::typed_data(
                    "Data/Image/abc123/Data",
                    vec![h as u64, w as u64, n as u64],
                    &data,
                )
                .unwrap()
                .chunked(vec![h as u64, w as u64, 1])
                .filter(deflate()),
            )
            .dataset(
                DatasetBuilder::typed_data(
                    "Data/Image/abc123/Metadata",
                    vec![len as u64, n as u64],
                    &meta,
                )
                .unwrap(),
            )
            .dataset(
                DatasetBuilder::fixed_string_data(
                    "Version",
                    vec![1],
                    &[r#"{"version": "4", "format": "Velox"}"#],
                )
                .unwrap(),
            ),
    )
}

fn temp_file(bytes: &[u8], ext: &str) -> tempfile::TempPath {
    let f = tempfile::Builder::new().suffix(ext).tempfile().unwrap();
    std::fs::write(f.path(), bytes).unwrap();
    f.into_temp_path()
}

#[test]
fn sniff_finds_the_signature_at_user_block_offsets() {
    let mut b = vec![0u8; 4096];
    assert!(!sniff(&b));
    b[..8].copy_from_slice(HDF5_MAGIC);
    assert!(sniff(&b));
    let mut c = vec![0u8; 4096];
    c[1024..1032].copy_from_slice(HDF5_MAGIC);
    assert!(sniff(&c));
    let mut d = vec![0u8; 4096];
    d[100..108].copy_from_slice(HDF5_MAGIC);
    assert!(
        !sniff(&d),
        "only 0, 512, 1024, ... are valid superblock offsets"
    );
}

#[test]
fn unix_seconds_to_iso8601() {
    assert_eq!(unix_to_iso8601(0), "1970-01-01T00:00:00Z");
    assert_eq!(unix_to_iso8601(-1), "1969-12-31T23:59:59Z");
    assert_eq!(unix_to_iso8601(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(unix_to_iso8601(1_488_794_201), "2017-03-06T09:56:41Z");
    assert_eq!(unix_to_iso8601(4_107_542_400), "2100-03-01T00:00:00Z");
}

#[test]
fn emd_units_text() {
    assert_eq!(emd_units("[n_m]"), "nm");
    assert_eq!(emd_units("[n_m^-1]"), "1/nm");
    assert_eq!(emd_units("[]"), "");
    assert_eq!(emd_units("test_units"), "test_units");
}

#[test]
fn berkeley_4d_chunked_deflate_loaded_and_lazy() {
    let bytes = berkeley_4d();
    let path = temp_file(&bytes, ".emd");
    let ds = open(&path).unwrap();
    assert_eq!(ds.format, Format::Emd);
    let s = ds.first().unwrap();
    assert_eq!(s.shape(), vec![4, 5, 6, 7]);
    assert_eq!(s.kind(), SignalKind::FourDStem);
    assert_eq!(s.title, "cube");
    assert!(!s.is_lazy());
    let names: Vec<&str> = s.axes.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["R_y", "R_x", "Q_y", "Q_x"]);
    assert_eq!(
        (s.axes[1].scale, s.axes[1].offset, s.axes[1].units.as_str()),
        (0.25, 2.0, "nm")
    );
    assert_eq!(
        (s.axes[3].scale, s.axes[3].offset, s.axes[3].units.as_str()),
        (0.5, -1.5, "1/nm")
    );
    let cube = s.to_hypercube().unwrap();
    assert_eq!(cube.data()[[3, 4, 5, 6]], 3456.0);
    assert_eq!(cube.data()[[1, 2, 0, 3]], 1203.0);

    let lazy = open_with(
        &path,
        &OpenOptions {
            lazy_threshold_bytes: 0,
        },
    )
    .unwrap();
    let l = lazy.first().unwrap();
    assert!(l.is_lazy());
    let src = l.frame_source();
    assert_eq!(src.nav_shape(), &[4, 5]);
    assert_eq!(src.sig_shape(), &[6, 7]);
    // Frames 6..9 = scan (1, 1), (1, 2), (1, 3).
    let mut buf = vec![0.0f32; 3 * 42];
    src.read_frames(6, &mut buf).unwrap();
    assert_eq!(buf[0], 1100.0);
    assert_eq!(buf[42 + 41], 1200.0 + 56.0);
    assert_eq!(buf[84], 1300.0);
    assert_eq!(l.to_hypercube().unwrap().data(), cube.data());
    // Out-of-range reads are errors.
    assert!(src.read_frames(19, &mut buf).is_err());
}

#[test]
fn velox_series_is_frame_y_x_with_metadata() {
    let bytes = velox_series();
    for (lazy, threshold) in [(false, u64::MAX), (true, 0)] {
        let path = temp_file(&bytes, ".emd");
        let ds = open_with(
            &path,
            &OpenOptions {
                lazy_threshold_bytes: threshold,
            },
        )
        .unwrap();
        let s = ds.first().unwrap();
        assert_eq!(s.is_lazy(), lazy);
        assert_eq!(s.shape(), vec![2, 3, 4]);
        assert_eq!(s.kind(), SignalKind::ImageSeries);
        assert_eq!(s.title, "HAADF");
        let cube = s.to_hypercube().unwrap();
        for f in 0..2 {
            for y in 0..3 {
                for x in 0..4 {
                    assert_eq!(cube.data()[[f, y, x]], (100 * f + 10 * y + x) as f32);
                }
            }
        }
        // m → nm: 2e-10 m = 0.2 nm; 1e-9 m = 1 nm (f64 products, 1e-12 relative).
        let (y, x) = (&s.axes[1], &s.axes[2]);
        assert!((x.scale - 0.2).abs() < 1e-12 && (x.offset - 1.0).abs() < 1e-12);
        assert!((y.scale - 0.3).abs() < 1e-12 && (y.offset + 2.0).abs() < 1e-12);
        assert_eq!(x.units, "nm");
        let m = &s.metadata;
        assert_eq!(m.beam_energy_kev, Some(300.0));
        assert!((m.convergence_semiangle_mrad.unwrap() - 21.5).abs() < 1e-9);
        assert!((m.camera_length_mm.unwrap() - 91.0).abs() < 1e-9);
        assert!((m.dwell_time_us.unwrap() - 2.0).abs() < 1e-9);
        assert_eq!(m.magnification, Some(2_550_000.0));
        assert_eq!(m.acquisition_date.as_deref(), Some("2017-07-14T02:40:00Z"));
        assert_eq!(m.microscope.as_deref(), Some("FEI Company Titan"));
    }
}

#[test]
fn generic_hdf5_array() {
    let data: Vec<i32> = (0..24).collect();
    let bytes = encode(
        Hdf5Builder::new()
            .dataset(DatasetBuilder::typed_data("results/stack", vec![2, 3, 4], &data).unwrap()),
    );
    let path = temp_file(&bytes, ".h5");
    let ds = open(&path).unwrap();
    assert_eq!(ds.format, Format::Hdf5);
    let s = ds.first().unwrap();
    assert_eq!(s.shape(), vec![2, 3, 4]);
    assert_eq!(s.title, "stack");
    assert_eq!(s.to_hypercube().unwrap().data()[[1, 2, 3]], 23.0);
    // The tag tree holds short arrays inline (at most MAX_INLINE_ARRAY values).
    match ds.tags.get_path("results/stack") {
        Some(TagValue::Numbers(v)) => assert_eq!((v.len(), v[23]), (24, 23.0)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn not_hdf5_or_garbage_is_an_error() {
    assert!(matches!(
        read_bytes(b"not an hdf5 file at all", Format::Emd),
        Err(Error::InvalidFile { .. })
    ));
    let mut b = HDF5_MAGIC.to_vec();
    b.extend(std::iter::repeat_n(0xAB, 200));
    assert!(matches!(
        read_bytes(&b, Format::Emd),
        Err(Error::InvalidFile { .. })
    ));
}

#[test]
fn every_prefix_of_the_synthetic_files_is_an_error_or_a_dataset() {
    for bytes in [berkeley_4d(), velox_series()] {
        for cut in (0..bytes.len()).step_by(7) {
            let r = read_bytes(&bytes[..cut], Format::Emd);
            if let Ok(ds) = r {
                // A prefix that still parses must hold consistent signals.
                for s in &ds.signals {
                    assert!(s.to_hypercube().is_ok());
                }
            }
        }
        assert!(read_bytes(&bytes, Format::Emd).is_ok());
    }
}

// ---------------------------------------------------------------------------------------------
// Velox EDS spectrum streams

/// Metadata JSON of a synthetic EDS stream: a `width × height` raster restricted to the left
/// half and the top two thirds by `ScanArea` (so the scan is `width/2 × 2 height/3`), 10 eV
/// per channel from −0.5 keV, pixel size 0.5 nm.
fn stream_meta(width: usize, height: usize, detector: &str) -> String {
    format!(
        r#"{{"BinaryResult": {{"Detector": "{detector}", "PixelSize": {{"width": "5e-10", "height": "5e-10"}},
        "PixelUnitX": "m", "PixelUnitY": "m", "Offset": {{"x": "1e-9", "y": "2e-9"}}}},
        "Optics": {{"AccelerationVoltage": "200000"}},
        "Scan": {{"ScanSize": {{"width": "{width}", "height": "{height}"}},
                  "ScanArea": {{"left": "0", "right": "0.5", "top": "0", "bottom": "0.6666666666666666"}}}},
        "Detectors": {{"Detector-0": {{"DetectorName": "HAADF"}},
                       "Detector-1": {{"DetectorName": "{detector}1", "Dispersion": "10", "OffsetEnergy": "-500"}}}}}}"#
    )
}

/// Bytes of a Velox file holding the given EDS streams `(detector, events)` with `bincount`
/// channels on a 4 × 3 raster (scan 2 wide × 2 high after the ScanArea), plus an optional
/// FrameLocationTable for the first stream.
fn velox_streams(streams: &[(&str, Vec<u16>)], bincount: usize, flt: Option<Vec<u64>>) -> Vec<u8> {
    velox_streams_raster(streams, bincount, flt, (4, 3))
}

/// [`velox_streams`] on a `width × height` raster.
fn velox_streams_raster(
    streams: &[(&str, Vec<u16>)],
    bincount: usize,
    flt: Option<Vec<u64>>,
    (width, height): (usize, usize),
) -> Vec<u8> {
    let mut b = Hdf5Builder::new().dataset(
        DatasetBuilder::fixed_string_data(
            "Version",
            vec![1],
            &[r#"{"version": "4", "format": "Velox"}"#],
        )
        .unwrap(),
    );
    for (i, (det, events)) in streams.iter().enumerate() {
        let g = format!("Data/SpectrumStream/s{i}");
        let json = stream_meta(width, height, det);
        let mut meta = json.into_bytes();
        meta.resize(2048, 0);
        let acq = format!(
            r#"{{"encoding": "uint16", "bincount": "{bincount}", "StreamEncoding": "uint16",
               "RasterScanDefinition": {{"Width": "{width}", "Height": "{height}"}}}}"#
        );
        b = b
            .dataset(
                DatasetBuilder::typed_data(
                    format!("{g}/Data"),
                    vec![events.len() as u64, 1],
                    events,
                )
                .unwrap(),
            )
            .dataset(
                DatasetBuilder::typed_data(format!("{g}/Metadata"), vec![2048, 1], &meta).unwrap(),
            )
            .dataset(
                DatasetBuilder::vlen_string_data(
                    format!("{g}/AcquisitionSettings"),
                    vec![1],
                    &[acq],
                )
                .unwrap(),
            );
        if i == 0
            && let Some(t) = &flt
        {
            b = b.dataset(
                DatasetBuilder::typed_data(
                    format!("{g}/FrameLocationTable"),
                    vec![t.len() as u64, 1],
                    t,
                )
                .unwrap(),
            );
        }
    }
    encode(b)
}

const M: u16 = eds::PIXEL_MARKER;

/// Two frames of a 2 × 2 scan (4 markers each), then two events of a third frame that never
/// ends (dropped).
fn two_frame_stream() -> Vec<u16> {
    vec![
        1, 1, 3, M, /* (0,0) */ M, /* (0,1) empty */ 7, M, /* (1,0) */ 0, 2,
        M, // (1,1)
        // frame 1
        1, M, 5, 5, M, M, 6, M, // frame 2, unfinished
        4, 4,
    ]
}

/// Every prefix (step 5 bytes) and 300 seeded byte corruptions of the synthetic stream and
/// complex files: an error or a consistent data set, never a panic.
#[test]
fn truncated_or_corrupted_stream_and_complex_files_never_panic() {
    let files = [
        velox_streams(&[("D", two_frame_stream())], 8, Some(vec![0, 10])),
        velox_complex(4),
    ];
    let keep = EdsStreamOptions {
        sum_frames: false,
        sum_detectors: false,
        energy_bin: 3,
    };
    for bytes in &files {
        for cut in (0..bytes.len()).step_by(5) {
            for opts in [EdsStreamOptions::default(), keep.clone()] {
                if let Ok(ds) = read_bytes_with_eds(&bytes[..cut], &opts) {
                    for s in &ds.signals {
                        assert!(s.to_hypercube().is_ok());
                    }
                }
            }
        }
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..300 {
            let mut b = bytes.clone();
            for _ in 0..4 {
                // xorshift64: deterministic positions and values.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let pos = (state % b.len() as u64) as usize;
                b[pos] = (state >> 32) as u8;
            }
            if let Ok(ds) = read_bytes_with_eds(&b, &keep) {
                for s in &ds.signals {
                    let _ = s.to_hypercube();
                }
            }
        }
    }
}

#[test]
fn index_stream_finds_markers_and_rejects_values_past_the_channels() {
    assert_eq!(eds::index_stream(&[1, M, 2, 3, M], 4), Ok(vec![1, 4]));
    assert_eq!(eds::index_stream(&[], 4), Ok(vec![]));
    assert_eq!(
        eds::index_stream(&[1, M, 4], 4),
        Err(eds::BadEvent { index: 2, value: 4 })
    );
}

#[test]
fn eds_options_are_validated() {
    assert!(EdsStreamOptions::default().validate().is_ok());
    for bin in [0usize, 65536] {
        let o = EdsStreamOptions {
            energy_bin: bin,
            ..Default::default()
        };
        assert!(matches!(o.validate(), Err(Error::InvalidParameter { .. })));
        assert!(matches!(
            read_bytes_with_eds(&velox_streams(&[], 8, None), &o),
            Err(Error::InvalidParameter { .. })
        ));
    }
}

#[test]
fn synthetic_stream_summed_kept_binned_and_lazy() {
    let bytes = velox_streams(&[("SuperXG2", two_frame_stream())], 8, Some(vec![0, 10]));
    let ds = read_bytes(&bytes, Format::Emd).unwrap();
    assert_eq!(ds.signals.len(), 1);
    let s = &ds.signals[0];
    assert_eq!(s.title, "SuperXG2");
    assert_eq!(s.shape(), vec![2, 2, 8]);
    assert_eq!(s.kind(), SignalKind::SpectrumImage);
    // 0.5 nm pixels from (2 nm, 1 nm); 10 eV channels from -0.5 keV (exact binary ×1e9 / 1e3
    // products of the JSON numbers, 1e-12).
    let (y, x, e) = (&s.axes[0], &s.axes[1], &s.axes[2]);
    assert!((y.scale - 0.5).abs() < 1e-12 && (y.offset - 2.0).abs() < 1e-12);
    assert!((x.scale - 0.5).abs() < 1e-12 && (x.offset - 1.0).abs() < 1e-12);
    assert!((e.scale - 0.01).abs() < 1e-12 && (e.offset + 0.5).abs() < 1e-12);
    assert_eq!(e.units, "keV");
    let c = s.to_hypercube().unwrap();
    let spec = |y: usize, x: usize| -> Vec<f32> { (0..8).map(|k| c.data()[[y, x, k]]).collect() };
    // Pixel (0,0): frame 0 {1,1,3} + frame 1 {1}.
    assert_eq!(spec(0, 0), [0., 3., 0., 1., 0., 0., 0., 0.]);
    // (0,1): empty + {5,5}; (1,0): {7} + empty; (1,1): {0,2} + {6}.
    assert_eq!(spec(0, 1), [0., 0., 0., 0., 0., 2., 0., 0.]);
    assert_eq!(spec(1, 0), [0., 0., 0., 0., 0., 0., 0., 1.]);
    assert_eq!(spec(1, 1), [1., 0., 1., 0., 0., 0., 1., 0.]);
    let tag = |p: &str| s.tags.get_path(p).and_then(|t| t.as_f64());
    assert_eq!(tag("SpectrumStream/frames"), Some(2.0));
    assert_eq!(tag("SpectrumStream/events"), Some(10.0));
    assert_eq!(tag("SpectrumStream/dropped_events"), Some(2.0));
    assert_eq!(s.metadata.beam_energy_kev, Some(200.0));

    // Frames kept.
    let keep = EdsStreamOptions {
        sum_frames: false,
        ..Default::default()
    };
    let k = read_bytes_with_eds(&bytes, &keep).unwrap();
    let kc = k.signals[0].to_hypercube().unwrap();
    assert_eq!(kc.data().shape(), &[2, 2, 2, 8]);
    assert_eq!(k.signals[0].nav_dims, 3);
    assert_eq!(kc.data()[[0, 0, 0, 1]], 2.0);
    assert_eq!(kc.data()[[1, 0, 0, 1]], 1.0);
    assert_eq!(kc.data()[[1, 1, 1, 6]], 1.0);
    assert_eq!(kc.data()[[0, 1, 1, 6]], 0.0);

    // Energy bins of 3 channels: ceil(8/3) = 3 output channels, scale 30 eV.
    let binned = EdsStreamOptions {
        energy_bin: 3,
        ..Default::default()
    };
    let b = read_bytes_with_eds(&bytes, &binned).unwrap();
    let bc = b.signals[0].to_hypercube().unwrap();
    assert_eq!(bc.data().shape(), &[2, 2, 3]);
    assert!((b.signals[0].axes[2].scale - 0.03).abs() < 1e-12);
    assert_eq!(bc.data()[[1, 1, 0]], 2.0, "channels 0 and 2");
    assert_eq!(bc.data()[[1, 1, 2]], 1.0, "channel 6");

    // Lazy (histogrammed on demand) equals loaded.
    let path = temp_file(&bytes, ".emd");
    let lazy = open_with(
        &path,
        &OpenOptions {
            lazy_threshold_bytes: 0,
        },
    )
    .unwrap();
    assert!(lazy.signals[0].is_lazy());
    assert_eq!(lazy.signals[0].to_hypercube().unwrap().data(), c.data());
    let src = lazy.signals[0].frame_source();
    let mut one = vec![0.0f32; 8];
    src.read_frames(3, &mut one).unwrap();
    assert_eq!(one, spec(1, 1));
    assert!(src.read_frames(4, &mut one).is_err());
}

#[test]
fn synthetic_detectors_summed_or_separate() {
    let a = two_frame_stream();
    let b: Vec<u16> = vec![2, M, 2, M, M, 2, M];
    let bytes = velox_streams(&[("SuperXG2", a), ("SuperXG2", b)], 8, None);
    let ds = read_bytes(&bytes, Format::Emd).unwrap();
    assert_eq!(ds.signals.len(), 1);
    assert_eq!(ds.signals[0].title, "EDS");
    let c = ds.signals[0].to_hypercube().unwrap();
    assert_eq!(c.data()[[0, 0, 2]], 1.0);
    assert_eq!(
        c.data()[[1, 1, 2]],
        2.0,
        "stream a {{0,2}} + stream b {{2}}"
    );
    let sep = EdsStreamOptions {
        sum_detectors: false,
        ..Default::default()
    };
    let ds = read_bytes_with_eds(&bytes, &sep).unwrap();
    assert_eq!(ds.signals.len(), 2);
    let total = |i: usize| -> f32 { ds.signals[i].to_hypercube().unwrap().data().sum() };
    assert_eq!((total(0), total(1)), (10.0, 3.0));
}

#[test]
fn stream_stopping_inside_the_first_frame_leaves_the_rest_empty() {
    // Only pixel (0,0) ended, pixel (0,1) begun: a 2 × 2 scan with 1 marker.
    let bytes = velox_streams(&[("D", vec![3, M, 4, 4])], 8, None);
    let ds = read_bytes(&bytes, Format::Emd).unwrap();
    let c = ds.signals[0].to_hypercube().unwrap();
    assert_eq!(c.data().shape(), &[2, 2, 8]);
    assert_eq!(c.data()[[0, 0, 3]], 1.0);
    assert_eq!(c.data()[[0, 1, 4]], 2.0);
    assert_eq!(c.data().sum(), 3.0);
}

#[test]
fn corrupt_streams_are_typed_errors() {
    // A value that is neither a channel (< 8) nor the marker.
    let bytes = velox_streams(&[("D", vec![1, M, 9, M])], 8, None);
    match read_bytes(&bytes, Format::Emd) {
        Err(Error::InvalidFile { reason, .. }) => assert!(reason.contains("value 9"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // FrameLocationTable disagreeing with the markers (frame 1 starts at 10, not 9).
    let bytes = velox_streams(&[("D", two_frame_stream())], 8, Some(vec![0, 9]));
    match read_bytes(&bytes, Format::Emd) {
        Err(Error::InvalidFile { reason, .. }) => {
            assert!(reason.contains("FrameLocationTable"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // bincount out of range.
    let bytes = velox_streams(&[("D", vec![1, M])], 70000, None);
    assert!(matches!(
        read_bytes(&bytes, Format::Emd),
        Err(Error::InvalidFile { .. })
    ));
}

#[test]
fn forged_scan_size_cannot_force_a_huge_allocation() {
    // Raster 99999 × 99999 → scan 50000 × 66666 pixels: past MAX_SCAN_PIXELS, refused before
    // anything is allocated.
    let bytes = velox_streams_raster(&[("D", vec![1, M])], 65535, None, (99_999, 99_999));
    match read_bytes(&bytes, Format::Emd) {
        Err(Error::InvalidFile { reason, .. }) => assert!(reason.contains("exceeds"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // Raster 8000 × 8000 → 4000 × 5333 pixels × 65535 channels (5.6 TB as f32) from a ~10 kB
    // file: loading is refused (more than 1032 × the file size) ...
    let bytes = velox_streams_raster(&[("D", vec![1, M, 2])], 65535, None, (8000, 8000));
    match read_bytes(&bytes, Format::Emd) {
        Err(Error::InvalidFile { reason, .. }) => {
            assert!(reason.contains("more than the file justifies"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // ... and opening it lazily allocates nothing of that size: spectra are histogrammed on
    // demand.
    let path = temp_file(&bytes, ".emd");
    let ds = open(&path).unwrap();
    let s = &ds.signals[0];
    assert!(s.is_lazy());
    assert_eq!(s.shape(), vec![5333, 4000, 65535]);
    let mut spec = vec![0.0f32; 2 * 65535];
    s.frame_source().read_frames(0, &mut spec).unwrap();
    assert_eq!((spec[1], spec[65535 + 2]), (1.0, 1.0));
    assert_eq!(spec.iter().sum::<f32>(), 2.0);
}

proptest::proptest! {
    /// Oracle: the fast histogram (marker index + per-pixel slices) equals a direct walk of
    /// the stream that keeps a pixel counter, for random streams (summed frames).
    #[test]
    fn stream_histogram_matches_a_direct_walk(
        raw in proptest::collection::vec(0u16..10, 0..200),
    ) {
        // Values 8 and 9 become markers (≈ 20 % of the stream).
        let events: Vec<u16> = raw.iter().map(|&v| if v >= 8 { M } else { v }).collect();
        let bytes = velox_streams(&[("D", events.clone())], 8, None);
        let ds = read_bytes(&bytes, Format::Emd).unwrap();
        let c = ds.signals[0].to_hypercube().unwrap();
        let markers = events.iter().filter(|&&v| v == M).count();
        let frames = markers.div_ceil(4).max(1);
        let mut want = vec![0.0f32; 4 * 8];
        let mut p = 0usize;
        for &v in &events {
            if v == M {
                p += 1;
            } else if p < frames * 4 {
                want[(p % 4) * 8 + usize::from(v)] += 1.0;
            }
        }
        proptest::prop_assert_eq!(c.data().iter().copied().collect::<Vec<_>>(), want);
    }
}

// ---------------------------------------------------------------------------------------------
// Velox complex images

/// A Velox complex image series `[y, x, frame] = [2, 3, 2]` of compound `{imag, real}` (the
/// imaginary member first, to check that members are found by name) with `float` parts of
/// `fsize` bytes: real = 10 y + x + 100 frame, imaginary = −(real) / 2.
fn velox_complex(fsize: u8) -> Vec<u8> {
    use hdf5_writer::{ByteOrder, CompoundField, Datatype as Dt};
    let (h, w, n) = (2usize, 3usize, 2usize);
    let f = Dt::FloatingPoint {
        size: fsize,
        byte_order: ByteOrder::LittleEndian,
    };
    let dt = Dt::Compound {
        size: 2 * u32::from(fsize),
        fields: vec![
            CompoundField {
                name: "imagFloat".into(),
                byte_offset: 0,
                datatype: f.clone(),
            },
            CompoundField {
                name: "realFloat".into(),
                byte_offset: u32::from(fsize),
                datatype: f,
            },
        ],
    };
    let mut raw = Vec::new();
    for y in 0..h {
        for x in 0..w {
            for fr in 0..n {
                let re = (10 * y + x + 100 * fr) as f64;
                for v in [-re / 2.0, re] {
                    if fsize == 4 {
                        raw.extend_from_slice(&(v as f32).to_le_bytes());
                    } else {
                        raw.extend_from_slice(&v.to_le_bytes());
                    }
                }
            }
        }
    }
    encode(
        Hdf5Builder::new()
            .dataset(
                DatasetBuilder::new("Data/Image/c1/Data", dt, vec![h as u64, w as u64, n as u64])
                    .raw_data(raw),
            )
            .dataset(
                DatasetBuilder::fixed_string_data(
                    "Version",
                    vec![1],
                    &[r#"{"version": "4", "format": "Velox"}"#],
                )
                .unwrap(),
            ),
    )
}

#[test]
fn velox_complex_series_real_and_imaginary_parts() {
    for fsize in [4u8, 8] {
        let ds = read_bytes(&velox_complex(fsize), Format::Emd).unwrap();
        let s = &ds.signals[0];
        assert_eq!(s.components, Components::Complex);
        assert_eq!(s.shape(), vec![2, 2, 3, 2], "[frame, y, x, component]");
        assert_eq!(s.nav_dims, 1);
        assert_eq!(s.kind(), SignalKind::ImageSeries);
        assert_eq!(s.axes[3].name, "component");
        let c = s.to_hypercube().unwrap();
        for fr in 0..2 {
            for y in 0..2 {
                for x in 0..3 {
                    let re = (10 * y + x + 100 * fr) as f32;
                    assert_eq!(c.data()[[fr, y, x, 0]], re);
                    assert_eq!(c.data()[[fr, y, x, 1]], -re / 2.0);
                }
            }
        }
    }
}

#[test]
fn complex_layout_accepts_only_two_equal_float_members() {
    use hdf5_writer::{ByteOrder, CompoundField, Datatype as Dt};
    let f = |size| Dt::FloatingPoint {
        size,
        byte_order: ByteOrder::LittleEndian,
    };
    let field = |name: &str, off, dt| CompoundField {
        name: name.into(),
        byte_offset: off,
        datatype: dt,
    };
    let ok = Dt::Compound {
        size: 8,
        fields: vec![field("r", 0, f(4)), field("i", 4, f(4))],
    };
    assert_eq!(complex_layout(&ok), Some((8, 0, 4, 4)));
    let mixed = Dt::Compound {
        size: 12,
        fields: vec![field("r", 0, f(4)), field("i", 4, f(8))],
    };
    assert_eq!(complex_layout(&mixed), None);
    let outside = Dt::Compound {
        size: 8,
        fields: vec![field("r", 0, f(4)), field("i", 6, f(4))],
    };
    assert_eq!(complex_layout(&outside), None, "member past the element");
    let three = Dt::Compound {
        size: 12,
        fields: vec![
            field("a", 0, f(4)),
            field("b", 4, f(4)),
            field("c", 8, f(4)),
        ],
    };
    assert_eq!(complex_layout(&three), None);
    assert_eq!(complex_layout(&f(4)), None);
}

/// Writes small synthetic Velox files (EDS streams, complex images) into
/// `$STEM_FUZZ_SEED_DIR` as seeds for the `emd` fuzz target (`stem-core/fuzz/seed.sh`).
#[test]
#[ignore = "writes fuzz seeds; run by stem-core/fuzz/seed.sh"]
fn write_emd_fuzz_seeds() {
    let Ok(dir) = std::env::var("STEM_FUZZ_SEED_DIR") else {
        return;
    };
    std::fs::create_dir_all(&dir).unwrap();
    let files = [
        (
            "velox_stream_flt",
            velox_streams(&[("SuperXG2", two_frame_stream())], 8, Some(vec![0, 10])),
        ),
        (
            "velox_streams_2det",
            velox_streams(
                &[
                    ("SuperXG2", two_frame_stream()),
                    ("SuperXG2", vec![2, M, 2, M]),
                ],
                8,
                None,
            ),
        ),
        ("velox_complex_f32", velox_complex(4)),
        ("velox_complex_f64", velox_complex(8)),
    ];
    for (name, bytes) in files {
        assert!(read_bytes(&bytes, Format::Emd).is_ok(), "{name}");
        std::fs::write(
            std::path::Path::new(&dir).join(format!("{name}.emd")),
            bytes,
        )
        .unwrap();
    }
}
