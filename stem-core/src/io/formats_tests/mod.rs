//! Tests of the format readers on hand-made files with known contents, and on hostile files
//! (truncated, corrupted, lying headers): every bad file must give a typed error, never a
//! panic or a large allocation.

mod builders;

use super::*;
use crate::frame_source::DType;
use crate::hypercube::SignalKind;
use builders::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::PathBuf;

fn temp(name: &str, bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    (dir, path)
}

/// Every strict prefix of `bytes` is rejected with a typed error (no panic).
fn assert_prefixes_fail(bytes: &[u8], format: Format) {
    for len in 0..bytes.len() {
        let r = read_bytes(&bytes[..len], format);
        assert!(
            matches!(
                r,
                Err(Error::InvalidFile { .. }) | Err(Error::Unsupported { .. })
            ),
            "{format:?} prefix of {len}/{} bytes: {r:?}",
            bytes.len()
        );
    }
}

/// Seeded random byte mutations never panic (the result may be Ok or a typed error).
fn mutation_smoke(bytes: &[u8], format: Format, rounds: usize, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for _ in 0..rounds {
        let mut b = bytes.to_vec();
        let n = rng.random_range(1..=8);
        for _ in 0..n {
            let i = rng.random_range(0..b.len());
            b[i] = match rng.random_range(0..4) {
                0 => 0xFF,
                1 => 0,
                2 => b[i].wrapping_add(1),
                _ => rng.random(),
            };
        }
        let _ = read_bytes(&b, format);
    }
}

fn pixels(ds: &Dataset, i: usize) -> Vec<f32> {
    ds.signals[i]
        .to_hypercube()
        .unwrap()
        .data()
        .iter()
        .copied()
        .collect()
}

// ---------------------------------------------------------------- DM3 / DM4

#[test]
fn dm_image_all_versions_and_byte_orders() {
    for dm4 in [false, true] {
        for le in [true, false] {
            let values: Vec<u16> = (0..12).map(|v| v * 7 + 1).collect();
            let bytes = dm_image(dm4, le, &[4, 3], DmPixels::U16(values.clone()), "");
            let ds = read_bytes(&bytes, Format::Dm3).unwrap();
            assert_eq!(ds.format, if dm4 { Format::Dm4 } else { Format::Dm3 });
            assert_eq!(ds.signals.len(), 1);
            let s = &ds.signals[0];
            assert_eq!(s.shape(), vec![3, 4], "DM dims (x=4, y=3) → [y, x]");
            assert_eq!(s.kind(), SignalKind::Image);
            assert_eq!(s.original_dtype, DType::U16);
            let expected: Vec<f32> = values.iter().map(|&v| f32::from(v)).collect();
            assert_eq!(pixels(&ds, 0), expected);
            // Calibration of x: scale 0.5 nm, origin 2 px → offset -1 nm.
            assert_eq!(s.axes[1].units, "nm");
            assert!((s.axes[1].scale - 0.5).abs() < 1e-12);
            assert!((s.axes[1].offset + 1.0).abs() < 1e-12);
            assert_eq!(s.axes[0].scale, 0.25);
            assert_eq!(s.metadata.beam_energy_kev, Some(300.0));
            assert_eq!(s.title, "img");
            assert_eq!(
                ds.tags
                    .get_path("ImageList/0/ImageTags/Microscope Info/Voltage")
                    .and_then(TagValue::as_f64),
                Some(300_000.0)
            );
        }
    }
}

#[test]
fn dm_all_element_types() {
    let cases: Vec<(DmPixels, DType)> = vec![
        (DmPixels::I8(vec![-1, 2, -3, 4]), DType::I8),
        (DmPixels::U8(vec![1, 2, 3, 250]), DType::U8),
        (DmPixels::I16(vec![-1, 2, -3, 4]), DType::I16),
        (DmPixels::U32(vec![1, 2, 3, 1 << 20]), DType::U32),
        (DmPixels::I32(vec![-1, 2, -3, 1 << 20]), DType::I32),
        (DmPixels::F32(vec![-1.5, 2.0, 3.25, 4.0]), DType::F32),
        (DmPixels::F64(vec![-1.5, 2.0, 3.25, 4.0]), DType::F64),
        (DmPixels::I64(vec![-1, 2, -3, 4]), DType::I64),
        (DmPixels::U64(vec![1, 2, 3, 4]), DType::U64),
    ];
    for (px, dtype) in cases {
        let expected = px.as_f32();
        for dm4 in [false, true] {
            for le in [true, false] {
                let bytes = dm_image(dm4, le, &[2, 2], px.clone(), "");
                let ds = read_bytes(&bytes, Format::Dm4).unwrap();
                assert_eq!(ds.signals[0].original_dtype, dtype);
                assert_eq!(pixels(&ds, 0), expected, "{dtype:?} dm4={dm4} le={le}");
            }
        }
    }
}

/// Overwrites the value of the (i32) `DataType` tag of a builder DM file.
fn set_dm_data_type(bytes: &mut [u8], dm4: bool, le: bool, value: i32) {
    let at = bytes
        .windows(8)
        .position(|w| w == b"DataType")
        .expect("DataType tag");
    // label, [u64 tag size], "%%%%", n_info = 1, type word, value.
    let word = if dm4 { 8 } else { 4 };
    let v = at + 8 + if dm4 { 8 } else { 0 } + 4 + 2 * word;
    let b = if le {
        value.to_le_bytes()
    } else {
        value.to_be_bytes()
    };
    bytes[v..v + 4].copy_from_slice(&b);
}

#[test]
fn dm_complex_images_have_a_real_imaginary_axis() {
    // DM dims (x=3, y=2): pixel (y, x) = file element y * 3 + x; values distinct in re and im.
    let c64: Vec<(f32, f32)> = (0..6)
        .map(|k| (k as f32 + 0.5, -(k as f32) * 2.0))
        .collect();
    let c128: Vec<(f64, f64)> = (0..6).map(|k| (1e-3 * k as f64, 7.0 + k as f64)).collect();
    for (px, dtype) in [
        (DmPixels::C64(c64), DType::F32),
        (DmPixels::C128(c128), DType::F64),
    ] {
        let expected = px.as_f32();
        for dm4 in [false, true] {
            for le in [true, false] {
                let bytes = dm_image(dm4, le, &[3, 2], px.clone(), "");
                let ds = read_bytes(&bytes, Format::Dm3).unwrap();
                let s = &ds.signals[0];
                assert_eq!(s.components, Components::Complex);
                assert_eq!(s.shape(), vec![2, 3, 2], "[y, x, (re, im)]");
                assert_eq!(s.kind(), SignalKind::Image, "component axis not counted");
                assert_eq!(s.original_dtype, dtype);
                assert_eq!(s.axes[2].name, "component");
                assert_eq!(s.axes[1].scale, 0.5, "x keeps its calibration");
                assert_eq!(pixels(&ds, 0), expected, "{dtype:?} dm4={dm4} le={le}");
                let cube = s.to_hypercube().unwrap();
                // Element (y=1, x=2) = file element 5: re 5.5 / 0.005, im -10 / 12.
                assert_eq!(cube.data()[[1, 2, 0]], expected[10]);
                assert_eq!(cube.data()[[1, 2, 1]], expected[11]);
            }
        }
    }
}

#[test]
fn dm_complex_spectrum_image_keeps_the_component_axis_last() {
    // DM dims (x=2, y=3, E=4), energy slowest: element (e, y, x) = (e * 3 + y) * 2 + x,
    // value (k, -k).
    let values: Vec<(f32, f32)> = (0..24).map(|k| (k as f32, -(k as f32))).collect();
    let bytes = dm_image(
        false,
        true,
        &[2, 3, 4],
        DmPixels::C64(values),
        "Spectrum image",
    );
    let ds = read_bytes(&bytes, Format::Dm3).unwrap();
    let s = &ds.signals[0];
    assert_eq!(s.shape(), vec![3, 2, 4, 2]);
    assert_eq!(s.kind(), SignalKind::SpectrumImage);
    let cube = s.to_hypercube().unwrap();
    for y in 0..3 {
        for x in 0..2 {
            for e in 0..4 {
                let k = ((e * 3 + y) * 2 + x) as f32;
                assert_eq!(cube.data()[[y, x, e, 0]], k);
                assert_eq!(cube.data()[[y, x, e, 1]], -k);
            }
        }
    }
}

#[test]
fn dm_complex_data_opens_lazily_like_loaded() {
    let values: Vec<(f32, f32)> = (0..24).map(|k| (k as f32, 100.0 + k as f32)).collect();
    let bytes = dm_image(true, true, &[4, 3, 2], DmPixels::C64(values), "");
    let (_dir, path) = temp("complex.dm4", &bytes);
    let lazy = open_with(
        &path,
        &OpenOptions {
            lazy_threshold_bytes: 0,
        },
    )
    .unwrap();
    assert!(lazy.signals[0].is_lazy());
    assert_eq!(lazy.signals[0].components, Components::Complex);
    assert_eq!(lazy.signals[0].shape(), vec![2, 3, 4, 2]);
    let loaded = open(&path).unwrap();
    assert!(!loaded.signals[0].is_lazy());
    assert_eq!(pixels(&lazy, 0), pixels(&loaded, 0));
}

#[test]
fn dm_rgb_images_are_r_g_b_in_both_byte_orders() {
    // Distinct channels so that a swapped R / B or a read pad byte fails.
    let rgb: Vec<(u8, u8, u8)> = (0..6u8).map(|k| (10 + k, 100 + k, 200 + k)).collect();
    for dm4 in [false, true] {
        for le in [true, false] {
            let bytes = dm_image(dm4, le, &[3, 2], DmPixels::Rgb(rgb.clone()), "");
            let ds = read_bytes(&bytes, Format::Dm3).unwrap();
            let s = &ds.signals[0];
            assert_eq!(s.components, Components::Rgb);
            assert_eq!(s.shape(), vec![2, 3, 3], "[y, x, (R, G, B)]");
            assert_eq!(s.kind(), SignalKind::Image);
            assert_eq!(s.original_dtype, DType::U8);
            assert_eq!(s.axes[2].name, "channel");
            let cube = s.to_hypercube().unwrap();
            assert_eq!(cube.data()[[1, 2, 0]], 15.0, "R of element 5");
            assert_eq!(cube.data()[[1, 2, 1]], 105.0, "G of element 5");
            assert_eq!(cube.data()[[1, 2, 2]], 205.0, "B of element 5");
            assert_eq!(pixels(&ds, 0), DmPixels::Rgb(rgb.clone()).as_f32());
        }
    }
}

#[test]
fn dm_rgb_in_other_element_types_and_packed_complex_are_unsupported() {
    for dm4 in [false, true] {
        for le in [true, false] {
            let mut bytes = dm_image(dm4, le, &[2, 2], DmPixels::U16(vec![1; 4]), "");
            set_dm_data_type(&mut bytes, dm4, le, 23);
            let r = read_bytes(&bytes, Format::Dm3);
            assert!(
                matches!(&r, Err(Error::Unsupported { what }) if what.contains("RGB")),
                "{r:?}"
            );
            let c = (0..4).map(|k| (k as f32, 0.0)).collect();
            let mut bytes = dm_image(dm4, le, &[2, 2], DmPixels::C64(c), "");
            set_dm_data_type(&mut bytes, dm4, le, 5);
            let r = read_bytes(&bytes, Format::Dm3);
            assert!(
                matches!(&r, Err(Error::Unsupported { what }) if what.contains("packed")),
                "{r:?}"
            );
        }
    }
}

#[test]
fn dm_complex_and_rgb_hostile_copies_never_panic() {
    let c = (0..12).map(|k| (k as f32, 1.0)).collect();
    let complex = dm_image(true, true, &[4, 3], DmPixels::C64(c), "");
    assert_prefixes_fail(&complex[..complex.len() - 8], Format::Dm4);
    mutation_smoke(&complex, Format::Dm4, 400, 31);
    let rgb = dm_image(
        false,
        false,
        &[4, 3],
        DmPixels::Rgb(vec![(1, 2, 3); 12]),
        "",
    );
    assert_prefixes_fail(&rgb[..rgb.len() - 8], Format::Dm3);
    mutation_smoke(&rgb, Format::Dm3, 400, 32);
}

#[test]
fn dm_spectrum_image_is_transposed_to_y_x_energy() {
    // DM dims (x=2, y=3, E=4), energy slowest: file index = (e * 3 + y) * 2 + x.
    let values: Vec<f32> = (0..24).map(|v| v as f32).collect();
    let bytes = dm_image(
        true,
        true,
        &[2, 3, 4],
        DmPixels::F32(values),
        "Spectrum image",
    );
    let ds = read_bytes(&bytes, Format::Dm4).unwrap();
    let s = &ds.signals[0];
    assert_eq!(s.shape(), vec![3, 2, 4]);
    assert_eq!(s.kind(), SignalKind::SpectrumImage);
    assert_eq!(s.axes[2].name, "energy");
    let cube = s.to_hypercube().unwrap();
    for y in 0..3 {
        for x in 0..2 {
            for e in 0..4 {
                assert_eq!(cube.data()[[y, x, e]], ((e * 3 + y) * 2 + x) as f32);
            }
        }
    }
}

#[test]
fn dm_stack_and_spectrum_kinds() {
    let bytes = dm_image(false, true, &[2, 2, 3], DmPixels::U8(vec![1; 12]), "");
    let ds = read_bytes(&bytes, Format::Dm3).unwrap();
    assert_eq!(ds.signals[0].kind(), SignalKind::ImageSeries);
    assert_eq!(ds.signals[0].shape(), vec![3, 2, 2]);
    let bytes = dm_image(false, true, &[5], DmPixels::U8(vec![1; 5]), "Spectrum");
    let ds = read_bytes(&bytes, Format::Dm3).unwrap();
    assert_eq!(ds.signals[0].kind(), SignalKind::Spectrum);
    let bytes = dm_image(false, true, &[2, 2, 3, 3], DmPixels::U8(vec![1; 36]), "");
    let ds = read_bytes(&bytes, Format::Dm3).unwrap();
    assert_eq!(ds.signals[0].kind(), SignalKind::FourDStem);
    assert_eq!(ds.signals[0].shape(), vec![3, 3, 2, 2]);
}

#[test]
fn dm_data_in_array_order_opens_lazily() {
    let values: Vec<u16> = (0..24).collect();
    let bytes = dm_image(true, false, &[4, 3, 2], DmPixels::U16(values), "");
    let (_dir, path) = temp("stack.dm4", &bytes);
    let lazy = open_with(
        &path,
        &OpenOptions {
            lazy_threshold_bytes: 0,
        },
    )
    .unwrap();
    let s = &lazy.signals[0];
    assert!(s.is_lazy());
    assert_eq!(s.frame_source().n_frames(), 2);
    let mut frame = vec![0.0; 12];
    s.frame_source().read_frame(1, &mut frame).unwrap();
    assert_eq!(frame, (12..24).map(|v| v as f32).collect::<Vec<_>>());
    let loaded = open(&path).unwrap();
    assert!(!loaded.signals[0].is_lazy());
    assert_eq!(pixels(&lazy, 0), pixels(&loaded, 0));
}

#[test]
fn dm_truncated_files_fail_cleanly() {
    for dm4 in [false, true] {
        let bytes = dm_image(dm4, true, &[4, 3], DmPixels::U16(vec![1; 12]), "");
        // The last 8 bytes are the end-of-file padding that the reader does not need.
        assert_prefixes_fail(&bytes[..bytes.len() - 8], Format::Dm4);
    }
}

#[test]
fn dm_deep_nesting_is_rejected() {
    let bytes = dm_nested(false, 200);
    let err = read_bytes(&bytes, Format::Dm3).unwrap_err();
    assert!(err.to_string().contains("deeper than 64"), "{err}");
}

#[test]
fn dm_lying_counts_are_rejected_without_allocation() {
    // A root group that claims 2^32 - 1 tags in a 20-byte file.
    let mut b = vec![0, 0, 0, 3, 0, 0, 0, 20, 0, 0, 0, 1, 0, 1];
    b.extend_from_slice(&u32::MAX.to_be_bytes());
    b.extend_from_slice(&[0; 6]);
    let err = read_bytes(&b, Format::Dm3).unwrap_err();
    assert!(err.to_string().contains("claims 4294967295 tags"), "{err}");
    // An image whose data array claims 2^40 elements.
    let patched = dm_build(
        true,
        true,
        &[4, 3],
        &[4, 3],
        DmPixels::U16(vec![1; 12]),
        "",
        Some(1 << 40),
    );
    let err = read_bytes(&patched, Format::Dm4).unwrap_err();
    assert!(matches!(err, Error::InvalidFile { .. }), "{err}");
}

#[test]
fn dm_dimensions_must_match_data_length() {
    let bytes = dm_build(
        false,
        true,
        &[4, 3],
        &[4, 4],
        DmPixels::U16(vec![1; 12]),
        "",
        None,
    );
    let err = read_bytes(&bytes, Format::Dm3).unwrap_err();
    assert!(err.to_string().contains("hold 16 values"), "{err}");
}

#[test]
fn dm_mutations_never_panic() {
    for dm4 in [false, true] {
        let bytes = dm_image(
            dm4,
            dm4,
            &[2, 3, 4],
            DmPixels::F32(vec![1.0; 24]),
            "Spectrum image",
        );
        mutation_smoke(&bytes, Format::Dm3, 3000, 7 + u64::from(dm4));
    }
}

// ---------------------------------------------------------------- MRC

#[test]
fn mrc_stack_with_extended_header_both_byte_orders() {
    for big in [false, true] {
        let values: Vec<i16> = (0..24).map(|v| v - 12).collect();
        let bytes = mrc_file(big, [4, 3, 2], 1, 16, &values);
        let ds = read_bytes(&bytes, Format::Mrc).unwrap();
        let s = &ds.signals[0];
        assert_eq!(s.shape(), vec![2, 3, 4]);
        assert_eq!(s.kind(), SignalKind::ImageSeries);
        assert_eq!(s.original_dtype, DType::I16);
        let expected: Vec<f32> = values.iter().map(|&v| f32::from(v)).collect();
        assert_eq!(pixels(&ds, 0), expected);
        // cella = (8, 6, 4) Å over (4, 3, 2) samples → 2 Å pixels.
        for a in &s.axes {
            assert_eq!((a.scale, a.units.as_str()), (2.0, "Å"));
        }
        assert_eq!(
            ds.tags.get("EXTTYP").and_then(TagValue::as_str),
            Some("FEI1")
        );
        assert_eq!(ds.tags.get("nsymbt").and_then(TagValue::as_f64), Some(16.0));
    }
}

#[test]
fn mrc_rejects_bad_headers() {
    let ok = mrc_file(false, [4, 3, 1], 2, 0, &[0i16; 12]);
    // Complex mode 4.
    let mut b = ok.clone();
    b[12..16].copy_from_slice(&4i32.to_le_bytes());
    assert!(matches!(
        read_bytes(&b, Format::Mrc),
        Err(Error::Unsupported { .. })
    ));
    // Negative nx.
    let mut b = ok.clone();
    b[0..4].copy_from_slice(&(-4i32).to_le_bytes());
    assert!(matches!(
        read_bytes(&b, Format::Mrc),
        Err(Error::InvalidFile { .. })
    ));
    // Huge dimensions in a small file: no allocation, a truncation error.
    let mut b = ok.clone();
    for w in 0..3 {
        b[w * 4..w * 4 + 4].copy_from_slice(&(1i32 << 30).to_le_bytes());
    }
    let err = read_bytes(&b, Format::Mrc).unwrap_err();
    assert!(matches!(err, Error::InvalidFile { .. }), "{err}");
    assert_prefixes_fail(&ok, Format::Mrc);
    mutation_smoke(&ok, Format::Mrc, 2000, 11);
}

// ---------------------------------------------------------------- MIB

#[test]
fn mib_square_scan_and_hdr_layout() {
    let frames: Vec<Vec<u16>> = (0..4)
        .map(|f| (0..6).map(|p| f * 10 + p).collect())
        .collect();
    let bytes = mib_file(&frames, 3, 2, "U16");
    let ds = read_bytes(&bytes, Format::Mib).unwrap();
    let s = &ds.signals[0];
    assert_eq!(s.shape(), vec![2, 2, 2, 3], "4 frames → a 2 x 2 scan");
    assert_eq!(s.kind(), SignalKind::FourDStem);
    let expected: Vec<f32> = frames.iter().flatten().map(|&v| f32::from(v)).collect();
    assert_eq!(pixels(&ds, 0), expected);
    assert_eq!(s.metadata.dwell_time_us, Some(1000.0));

    // On disk, lazily, with a .hdr saying 2 frames per trigger and 6 frames.
    let frames: Vec<Vec<u16>> = (0..6).map(|f| vec![f; 6]).collect();
    let bytes = mib_file(&frames, 3, 2, "U16");
    let (dir, path) = temp("scan.mib", &bytes);
    std::fs::write(
        dir.path().join("scan.hdr"),
        "HDR,\nFrames in Acquisition (Number):\t6\nFrames per Trigger (Number):\t2\nEnd\t",
    )
    .unwrap();
    let ds = open_with(
        &path,
        &OpenOptions {
            lazy_threshold_bytes: 0,
        },
    )
    .unwrap();
    let s = &ds.signals[0];
    assert!(s.is_lazy());
    assert_eq!(s.shape(), vec![3, 2, 2, 3]);
    let src = s.frame_source();
    let mut frame = vec![0.0; 6];
    src.read_frame(5, &mut frame).unwrap();
    assert_eq!(frame, vec![5.0; 6]);
}

#[test]
fn mib_rejects_bad_files() {
    let frames = vec![vec![1u16; 6]; 3];
    let ok = mib_file(&frames, 3, 2, "U16");
    let r64 = mib_file(&frames, 3, 2, "R64");
    assert!(matches!(
        read_bytes(&r64, Format::Mib),
        Err(Error::Unsupported { .. })
    ));
    // Shorter than one frame.
    let err = read_bytes(&ok[..100], Format::Mib).unwrap_err();
    assert!(matches!(err, Error::InvalidFile { .. }), "{err}");
    // A header size field larger than the file.
    let mut b = ok.clone();
    b[11..16].copy_from_slice(b"99999");
    assert!(matches!(
        read_bytes(&b, Format::Mib),
        Err(Error::InvalidFile { .. })
    ));
    mutation_smoke(&ok, Format::Mib, 2000, 13);
}

// ---------------------------------------------------------------- SER

#[test]
fn ser_images_are_flipped_and_calibrated() {
    // Three 2 x 3 (y, x) i16 images, stored bottom row first.
    let images: Vec<Vec<i16>> = (0..3)
        .map(|f| (0..6).map(|p| f * 10 + p).collect())
        .collect();
    let bytes = ser_images(&images, 3, 2);
    let ds = read_bytes(&bytes, Format::Ser).unwrap();
    let s = &ds.signals[0];
    assert_eq!(s.shape(), vec![3, 2, 3]);
    assert_eq!(s.kind(), SignalKind::ImageSeries);
    let cube = s.to_hypercube().unwrap();
    // Stored row 0 (values f*10 + 0..3) is the bottom row y = 1.
    assert_eq!(cube.data()[[2, 1, 0]], 20.0);
    assert_eq!(cube.data()[[2, 0, 0]], 23.0);
    // 2e-10 m pixels → 0.2 nm; offset -1e-9 m at element 0 → -1 nm.
    assert!((s.axes[2].scale - 0.2).abs() < 1e-12);
    assert!((s.axes[2].offset + 1.0).abs() < 1e-12);
    assert_eq!(s.axes[2].units, "nm");
    // The trailing tag-offset array (3 x u32) is not needed by the reader.
    assert_prefixes_fail(&bytes[..bytes.len() - 12], Format::Ser);
    mutation_smoke(&bytes, Format::Ser, 2000, 17);
}

#[test]
fn ser_lying_element_count_is_rejected() {
    let images: Vec<Vec<i16>> = vec![vec![0; 6]; 2];
    let mut bytes = ser_images(&images, 3, 2);
    // TotalNumberElements and ValidNumberElements = 2^31.
    bytes[14..18].copy_from_slice(&(1u32 << 31).to_le_bytes());
    bytes[18..22].copy_from_slice(&(1u32 << 31).to_le_bytes());
    let err = read_bytes(&bytes, Format::Ser).unwrap_err();
    assert!(matches!(err, Error::InvalidFile { .. }), "{err}");
}

// ---------------------------------------------------------------- NPY, TIFF, detection

#[test]
fn npy_opens_lazily_and_loaded_identically() {
    let a = ndarray::Array4::from_shape_fn((2, 3, 4, 5), |(a, b, c, d)| {
        (a * 1000 + b * 100 + c * 10 + d) as u16
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cube.npy");
    npy::write_npy(&path, &a).unwrap();
    let lazy = open_with(
        &path,
        &OpenOptions {
            lazy_threshold_bytes: 0,
        },
    )
    .unwrap();
    let loaded = open(&path).unwrap();
    assert!(lazy.signals[0].is_lazy() && !loaded.signals[0].is_lazy());
    assert_eq!(lazy.signals[0].kind(), SignalKind::FourDStem);
    assert_eq!(pixels(&lazy, 0), pixels(&loaded, 0));
    assert_eq!(
        pixels(&lazy, 0)[103],
        f32::from(a[[1, 2, 0, 3]]),
        "flat index 103 = 1*60 + 2*20 + 0*5 + 3"
    );
    // Fortran order comes back in logical order.
    let f = ndarray::Array2::from_shape_fn((3, 4), |(y, x)| (y * 4 + x) as f32);
    let ft = f.t().as_standard_layout().into_owned();
    let fpath = dir.path().join("f.npy");
    npy::write_npy(&fpath, &ft.t()).unwrap();
    let ds = open(&fpath).unwrap();
    assert_eq!(pixels(&ds, 0), f.iter().copied().collect::<Vec<_>>());
}

#[test]
fn tiff_palette_reads_indices_and_colour_map() {
    // 4 x 3 image, index = (y * 4 + x) * 20; colour i = (i, 2i, 65535 - i).
    let indices: Vec<u8> = (0..12u8).map(|k| k * 20).collect();
    let mut map = [[0u16; 256]; 3];
    for i in 0..256u16 {
        map[0][i as usize] = i;
        map[1][i as usize] = 2 * i;
        map[2][i as usize] = 65535 - i;
    }
    let bytes = palette_tiff(4, 3, &indices, &map);
    let ds = read_bytes(&bytes, Format::Tiff).unwrap();
    let s = &ds.signals[0];
    assert_eq!(s.components, Components::Scalar);
    assert_eq!(s.shape(), vec![3, 4]);
    assert_eq!(
        pixels(&ds, 0),
        indices.iter().map(|&i| f32::from(i)).collect::<Vec<_>>()
    );
    let green = s.tags.get_path("ColorMap/green").unwrap();
    assert_eq!(
        green,
        &TagValue::Numbers((0..256).map(|i| 2.0 * i as f64).collect())
    );
    let rgb = tiff::palette_to_rgb(s).unwrap();
    assert_eq!(rgb.components, Components::Rgb);
    assert_eq!(rgb.shape(), vec![3, 4, 3]);
    assert_eq!(rgb.kind(), SignalKind::Image);
    let cube = rgb.to_hypercube().unwrap();
    for (k, &i) in indices.iter().enumerate() {
        let (y, x) = (k / 4, k % 4);
        let i = f32::from(i);
        assert_eq!(cube.data()[[y, x, 0]], i);
        assert_eq!(cube.data()[[y, x, 1]], 2.0 * i);
        assert_eq!(cube.data()[[y, x, 2]], 65535.0 - i);
    }
    // Validation: no colour map, already RGB, an index outside a (shortened) map.
    let mut plain = read_bytes(&bytes, Format::Tiff).unwrap().signals.remove(0);
    assert!(matches!(
        tiff::palette_to_rgb(&rgb),
        Err(Error::InvalidParameter { .. })
    ));
    if let TagValue::Group(entries) = &mut plain.tags {
        for (name, v) in entries.iter_mut() {
            if name == "ColorMap" {
                *v = TagValue::Group(vec![
                    ("red".into(), TagValue::Numbers(vec![0.0; 100])),
                    ("green".into(), TagValue::Numbers(vec![0.0; 100])),
                    ("blue".into(), TagValue::Numbers(vec![0.0; 100])),
                ]);
            }
        }
    }
    let r = tiff::palette_to_rgb(&plain);
    assert!(
        matches!(&r, Err(Error::InvalidParameter { reason, .. }) if reason.contains("index 100 ")),
        "{r:?}"
    );
    plain.tags = TagValue::group();
    assert!(matches!(
        tiff::palette_to_rgb(&plain),
        Err(Error::InvalidParameter { .. })
    ));
}

#[test]
fn tiff_palette_with_a_broken_colour_map_is_an_error() {
    let indices = [0u8, 1, 2, 3];
    let map = [[7u16; 256]; 3];
    let good = palette_tiff(2, 2, &indices, &map);
    // ColorMap count 768 → 767 (entry 9 of the IFD: count field at 8 + 2 + 8 * 12 + 4).
    let mut short = good.clone();
    let at = 8 + 2 + 8 * 12 + 4;
    short[at..at + 4].copy_from_slice(&767u32.to_le_bytes());
    let r = read_bytes(&short, Format::Tiff);
    assert!(matches!(r, Err(Error::InvalidFile { .. })), "{r:?}");
    assert_prefixes_fail(&good, Format::Tiff);
    mutation_smoke(&good, Format::Tiff, 500, 41);
}

#[test]
fn tiff_rgb_images_have_a_channel_axis() {
    use ::tiff::encoder::{TiffEncoder, colortype};
    let (w, h) = (5u32, 3u32);
    let data: Vec<u8> = (0..w * h * 3).map(|k| (k * 7 % 251) as u8).collect();
    let mut buf = std::io::Cursor::new(Vec::new());
    TiffEncoder::new(&mut buf)
        .unwrap()
        .write_image::<colortype::RGB8>(w, h, &data)
        .unwrap();
    let ds = read_bytes(buf.get_ref(), Format::Tiff).unwrap();
    let s = &ds.signals[0];
    assert_eq!(s.components, Components::Rgb);
    assert_eq!(s.shape(), vec![3, 5, 3]);
    assert_eq!(s.kind(), SignalKind::Image);
    assert_eq!(s.original_dtype, DType::U8);
    assert_eq!(
        pixels(&ds, 0),
        data.iter().map(|&v| f32::from(v)).collect::<Vec<_>>()
    );
}

#[test]
fn tiff_roundtrip_and_hostile_prefixes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.tif");
    let image = ndarray::Array2::from_shape_fn((5, 7), |(y, x)| (y * 7 + x) as f32 - 3.5);
    let axes = [
        crate::Axis::new("y", 5, 0.125, 0.0, "µm"),
        crate::Axis::new("x", 7, 0.125, 0.0, "µm"),
    ];
    tiff::write_tiff(&path, image.view(), &axes).unwrap();
    let ds = open(&path).unwrap();
    assert_eq!(ds.format, Format::Tiff);
    let s = &ds.signals[0];
    assert_eq!(s.axes[0].units, "µm");
    // Rational with denominator 1e6: pixels per unit 8 exactly.
    assert_eq!(s.axes[0].scale, 0.125);
    assert_eq!(pixels(&ds, 0), image.iter().copied().collect::<Vec<_>>());
    let bytes = std::fs::read(&path).unwrap();
    for len in (0..bytes.len()).step_by(3) {
        let _ = read_bytes(&bytes[..len], Format::Tiff);
    }
    mutation_smoke(&bytes, Format::Tiff, 1000, 19);
    // Validation of the writer's arguments.
    let bad = [axes[0].clone(), crate::Axis::new("x", 6, 1.0, 0.0, "nm")];
    assert!(matches!(
        tiff::write_tiff(&path, image.view(), &bad),
        Err(Error::ShapeMismatch { .. })
    ));
    let zero = [axes[0].clone(), crate::Axis::new("x", 7, 0.0, 0.0, "nm")];
    assert!(matches!(
        tiff::write_tiff(&path, image.view(), &zero),
        Err(Error::InvalidParameter { .. })
    ));
}

#[test]
fn detection_unknown_and_empty_files() {
    let (_d, p) = temp("x.bin", b"hello world, not a microscope file");
    assert!(matches!(open(&p), Err(Error::Unsupported { .. })));
    let (_d2, p2) = temp("e.dm3", b"");
    assert!(matches!(open(&p2), Err(Error::InvalidFile { .. })));
    assert!(matches!(
        open("/nonexistent/file.dm3"),
        Err(Error::Io { .. })
    ));
    assert_eq!(detect(b"MQ1,000001", Path::new("a")), Some(Format::Mib));
    assert_eq!(detect(b"II*\0", Path::new("a")), Some(Format::Tiff));
    assert_eq!(
        detect(
            &[0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 1],
            Path::new("a")
        ),
        Some(Format::Dm4)
    );
    assert_eq!(detect(b"", Path::new("a.mrc")), Some(Format::Mrc));
}

#[test]
fn tag_tree_paths_and_serde() {
    let bytes = dm_image(false, true, &[2, 2], DmPixels::U8(vec![1; 4]), "");
    let ds = read_bytes(&bytes, Format::Dm3).unwrap();
    let by_index = ds
        .tags
        .get_path("ImageList/0/ImageData/Calibrations/Dimension/0/Scale");
    assert_eq!(by_index.and_then(TagValue::as_f64), Some(0.5));
    assert!(matches!(
        ds.tags.get_path("ImageList/0/ImageData/Data"),
        Some(TagValue::Data { len: 4, .. })
    ));
    fn serde_both<T: serde::Serialize + serde::de::DeserializeOwned>(_: &T) {}
    serde_both(&ds.tags);
    assert!(ds.tags.node_count() > 10);
}
