//! Tests of the Zarr v3 writer and reader.

use super::*;
use crate::frame_source::InMemorySource;
use crate::hypercube::{Hypercube, SignalKind};
use crate::io::{Format, open};
use crate::progress::{CancelFlag, NoProgress};
use ndarray::{ArrayD, Dimension, IxDyn};

fn cube(shape: &[usize], nav: usize) -> Hypercube<f32> {
    let data = ArrayD::from_shape_fn(IxDyn(shape), |ix| {
        ix.slice().iter().fold(0usize, |a, &i| a * 10 + i) as f32 + 0.5
    });
    Hypercube::new(data, nav).unwrap()
}

#[test]
fn round_trip_4d_with_edge_chunks_and_calibration() {
    let mut c = cube(&[3, 5, 4, 6], 2);
    let axes = vec![
        Axis::new("scan_y", 3, 0.2, 1.0, "nm"),
        Axis::new("scan_x", 5, 0.2, -1.0, "nm"),
        Axis::new("k_y", 4, 0.5, -1.0, "mrad"),
        Axis::new("k_x", 6, 0.5, -1.5, "mrad"),
    ];
    c = Hypercube::with_axes(c.data().to_owned(), axes.clone(), 2).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.zarr");
    let config = ZarrWriteConfig {
        frames_per_chunk: 2,
        ..ZarrWriteConfig::default()
    };
    let report = write_zarr(&InMemorySource::new(c.view()), &path, &config, &NoProgress).unwrap();
    // 3 rows × ceil(5 / 2) = 9 chunks of 2 × 4 × 6 f32 (edge chunks stored full size).
    assert_eq!(report.chunks_written, 9);
    assert_eq!(report.bytes_written, 9 * 2 * 4 * 6 * 4);
    assert_eq!(report.chunk_shape, vec![1, 2, 4, 6]);
    assert!(path.join("c/2/2/0/0").is_file());

    let ds = open(&path).unwrap();
    assert_eq!(ds.format, Format::Zarr);
    let s = ds.first().unwrap();
    assert_eq!(s.kind(), SignalKind::FourDStem);
    assert_eq!(s.axes, axes);
    assert!(s.is_lazy());
    assert_eq!(s.to_hypercube().unwrap().data(), c.data());
    // Opening zarr.json itself works too.
    let again = open(path.join("zarr.json")).unwrap();
    assert_eq!(again.first().unwrap().shape(), vec![3, 5, 4, 6]);
}

#[test]
fn single_image_and_series_round_trip() {
    for (shape, nav) in [(vec![7usize, 9], 0usize), (vec![4, 3, 2], 1)] {
        let c = cube(&shape, nav);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a");
        write_zarr(
            &InMemorySource::new(c.view()),
            &p,
            &ZarrWriteConfig::default(),
            &NoProgress,
        )
        .unwrap();
        let ds = open(&p).unwrap();
        let s = ds.first().unwrap();
        assert_eq!(s.nav_dims, nav);
        assert_eq!(s.to_hypercube().unwrap().data(), c.data());
    }
}

#[test]
fn validation_and_existing_array() {
    let c = cube(&[2, 3, 3], 1);
    let src = InMemorySource::new(c.view());
    let dir = tempfile::tempdir().unwrap();
    let bad = ZarrWriteConfig {
        frames_per_chunk: 0,
        ..ZarrWriteConfig::default()
    };
    assert!(matches!(
        write_zarr(&src, dir.path(), &bad, &NoProgress),
        Err(Error::InvalidParameter {
            name: "frames_per_chunk",
            ..
        })
    ));
    write_zarr(&src, dir.path(), &ZarrWriteConfig::default(), &NoProgress).unwrap();
    assert!(matches!(
        write_zarr(&src, dir.path(), &ZarrWriteConfig::default(), &NoProgress),
        Err(Error::InvalidFile { .. })
    ));
    let over = ZarrWriteConfig {
        overwrite: true,
        ..ZarrWriteConfig::default()
    };
    assert!(write_zarr(&src, dir.path(), &over, &NoProgress).is_ok());
}

#[test]
fn cancellation_stops_before_metadata() {
    let c = cube(&[4, 4, 2, 2], 2);
    let dir = tempfile::tempdir().unwrap();
    let cfg = ZarrWriteConfig {
        frames_per_chunk: 1,
        ..ZarrWriteConfig::default()
    };
    let flag = CancelFlag::cancel_after(3);
    let r = write_zarr(&InMemorySource::new(c.view()), dir.path(), &cfg, &flag);
    assert!(matches!(r, Err(Error::Cancelled)));
    assert!(!dir.path().join("zarr.json").exists());
}

/// Chunks written by another writer: big-endian u16, a 2-D chunk grid over the signal, a
/// missing chunk (fill value) and "." keys.
#[test]
fn reads_foreign_layouts_and_rejects_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let meta = r#"{"zarr_format": 3, "node_type": "array", "shape": [3, 5],
        "data_type": "uint16", "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [2, 2]}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "."}},
        "fill_value": 7, "codecs": [{"name": "bytes", "configuration": {"endian": "big"}}]}"#;
    std::fs::write(d.join("zarr.json"), meta).unwrap();
    // value(y, x) = 10 y + x; chunk (1, 1) is missing → fill 7.
    for cy in 0..2usize {
        for cx in 0..3usize {
            if (cy, cx) == (1, 1) {
                continue;
            }
            let mut b = Vec::new();
            for y in 0..2 {
                for x in 0..2 {
                    let v = (10 * (cy * 2 + y) + cx * 2 + x) as u16;
                    b.extend_from_slice(&v.to_be_bytes());
                }
            }
            std::fs::write(d.join(format!("c.{cy}.{cx}")), b).unwrap();
        }
    }
    let ds = open(d).unwrap();
    let img = ds.first().unwrap().to_hypercube().unwrap();
    assert_eq!(img.data()[[0, 4]], 4.0);
    assert_eq!(img.data()[[2, 1]], 21.0);
    assert_eq!(img.data()[[2, 2]], 7.0, "missing chunk reads as fill value");
    assert_eq!(img.data()[[1, 3]], 13.0);

    // Compressed codecs are not read; a short chunk is an invalid file.
    let gz = meta.replace(
        r#"[{"name": "bytes", "configuration": {"endian": "big"}}]"#,
        r#"[{"name": "bytes"}, {"name": "gzip", "configuration": {"level": 1}}]"#,
    );
    std::fs::write(d.join("zarr.json"), gz).unwrap();
    assert!(matches!(open(d), Err(Error::Unsupported { .. })));
    std::fs::write(d.join("zarr.json"), meta).unwrap();
    std::fs::write(d.join("c.0.0"), [1u8, 2, 3]).unwrap();
    let ds = open(d).unwrap();
    assert!(matches!(
        ds.first().unwrap().to_hypercube(),
        Err(Error::InvalidFile { .. })
    ));
    for broken in [
        "not json",
        r#"{"zarr_format": 2}"#,
        r#"{"zarr_format": 3, "node_type": "array", "shape": [3, 5]}"#,
        r#"{"zarr_format": 3, "node_type": "array", "shape": [3, 0], "data_type": "uint8",
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [1, 1]}},
            "codecs": [{"name": "bytes"}]}"#,
    ] {
        std::fs::write(d.join("zarr.json"), broken).unwrap();
        assert!(open(d).is_err(), "{broken}");
    }
}
