//! Tests of the HDF5 / EMD reader on files built in memory with `hdf5-writer` (a separate,
//! write-only crate, so the reader is not checked against itself).

use super::*;
use crate::hypercube::SignalKind;
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
