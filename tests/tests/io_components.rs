//! Complex and colour pixels in real files (not written by us): the DM test files of hyperspy
//! (`test-3/5/27` complex64, `test-13/28` complex128, `test-8/23` RGB, in 1-D, 2-D and 3-D) and
//! the two Zeiss AxioVision TIFFs (RGB and palette), compared with what RosettaSciIO 0.15 and
//! tifffile read from the same files:
//!
//! ```python
//! from rsciio import digitalmicrograph as dm, tiff
//! d = dm.file_reader('dm3_2D_data/test-3.dm3')[0]['data']     # (2, 2) complex64
//! print(d.ravel())                                             # [1.+0.j 2.+0.j 3.+0.j 4.+0.j]
//! d = dm.file_reader('dm3_2D_data/test-23.dm3')[0]['data']    # (2, 2) R, G, B, A u1
//! print(d.ravel())                     # [(1, 1, 1, 0) (2, 2, 2, 0) (3, 3, 3, 0) (4, 4, 4, 0)]
//! # the 2-D (3-D) files hold 1..4 (1..8) in C order; the imaginary parts and A are 0.
//! d = tiff.file_reader('optical_Zeiss_AxioVision_RGB.tif')[0]['data']  # (10, 13) R, G, B u1
//! print([d[c].sum() for c in 'RGB'], d.ravel()[:2])    # [2724, 1971, 1307] [(25, 8, 16) (27, 14, 11)]
//! d = tiff.file_reader('optical_Zeiss_AxioVision_BW.tif')[0]['data']   # (10, 13) u1 indices
//! print(d.sum(), d.ravel()[:4], d.max())                     # 2574 [11 19 19 19] 27
//! cm = tifffile.TiffFile('optical_Zeiss_AxioVision_BW.tif').pages[0].colormap  # (3, 256) u2
//! print(cm[:, :3], cm[:, d].reshape(3, -1).sum(1))  # [[0 256 512] x3] [658944 658944 658944]
//! ```
//!
//! The files come from `scripts/fetch-test-data.sh` (`$STEM_TEST_DATA`, default
//! `target/test-data`); each test skips with a message when they are absent.

use std::path::PathBuf;
use stem_core::hypercube::SignalKind;
use stem_core::io::{Components, TagValue, open, tiff::palette_to_rgb};

const IO: &str = "hyperspy/tests/io/";

fn data_dir() -> Option<PathBuf> {
    stem_tests::test_data::real_files("", "real-file test data")
}

#[test]
fn hyperspy_dm_complex_and_rgb_files_match_rosettasciio() {
    let Some(dir) = data_dir() else { return };
    let mut checked = 0;
    for (version, numbers) in [
        ("dm3", &[3, 5, 8, 13, 23][..]),
        ("dm4", &[3, 5, 8, 13, 23, 27, 28]),
    ] {
        for dims in 1..=3usize {
            for &n in numbers {
                let rel = format!("{IO}{version}_{dims}D_data/test-{n}.{version}");
                let ds = open(dir.join(&rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
                assert_eq!(ds.signals.len(), 1, "{rel}: the RGB thumbnail is skipped");
                let s = &ds.signals[0];
                let rgb = matches!(n, 8 | 23);
                let (components, c) = if rgb {
                    (Components::Rgb, 3)
                } else {
                    (Components::Complex, 2)
                };
                assert_eq!(s.components, components, "{rel}");
                let mut shape = vec![2; dims];
                shape.push(c);
                assert_eq!(s.shape(), shape, "{rel}");
                if dims == 2 {
                    assert_eq!(s.kind(), SignalKind::Image, "{rel}");
                }
                // Values 1..=2^dims in C order; imaginary parts 0; R = G = B.
                let cube = s.to_hypercube().unwrap();
                let expected: Vec<f32> = (1..=1usize << dims)
                    .flat_map(|k| {
                        let k = k as f32;
                        if rgb { vec![k, k, k] } else { vec![k, 0.0] }
                    })
                    .collect();
                let got: Vec<f32> = cube.data().iter().copied().collect();
                assert_eq!(got, expected, "{rel}");
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 36);
}

#[test]
fn dm_rgb_byte_order_matches_rosettasciio_on_an_edited_file() {
    // rsciio on test-23.dm3 with the first word's bytes set to 9, 7, 5, 200 (lowest first)
    // reads (R, G, B, A) = (5, 7, 9, 200): the bytes are B, G, R, pad.
    let Some(dir) = data_dir() else { return };
    let path = dir.join(format!("{IO}dm3_2D_data/test-23.dm3"));
    let ds = open(&path).unwrap();
    let Some(TagValue::Data { offset, len, .. }) = ds.tags.get_path("ImageList/1/ImageData/Data")
    else {
        panic!("no data array")
    };
    assert_eq!(*len, 4);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = *offset as usize;
    bytes[at..at + 4].copy_from_slice(&[9, 7, 5, 200]);
    let tmp = tempfile::tempdir().unwrap();
    let edited = tmp.path().join("rgb.dm3");
    std::fs::write(&edited, &bytes).unwrap();
    let cube = open(&edited).unwrap().into_first_hypercube().unwrap();
    let first: Vec<f32> = cube.data().iter().take(6).copied().collect();
    assert_eq!(first, [5.0, 7.0, 9.0, 2.0, 2.0, 2.0]);
}

#[test]
fn zeiss_rgb_tiff_matches_rosettasciio() {
    let Some(dir) = data_dir() else { return };
    let ds = open(dir.join(format!("{IO}tiff_files/optical_Zeiss_AxioVision_RGB.tif"))).unwrap();
    let s = &ds.signals[0];
    assert_eq!(s.components, Components::Rgb);
    assert_eq!(s.shape(), vec![10, 13, 3]);
    assert_eq!(s.kind(), SignalKind::Image);
    let cube = s.to_hypercube().unwrap();
    let mut sums = [0.0f64; 3];
    for (i, &v) in cube.data().iter().enumerate() {
        sums[i % 3] += f64::from(v);
    }
    assert_eq!(sums, [2724.0, 1971.0, 1307.0]);
    let first: Vec<f32> = cube.data().iter().take(6).copied().collect();
    assert_eq!(first, [25.0, 8.0, 16.0, 27.0, 14.0, 11.0]);
}

#[test]
fn zeiss_palette_tiff_matches_rosettasciio_and_tifffile() {
    let Some(dir) = data_dir() else { return };
    let ds = open(dir.join(format!("{IO}tiff_files/optical_Zeiss_AxioVision_BW.tif"))).unwrap();
    let s = &ds.signals[0];
    assert_eq!(s.components, Components::Scalar);
    assert_eq!(s.shape(), vec![10, 13]);
    let cube = s.to_hypercube().unwrap();
    let sum: f64 = cube.data().iter().map(|&v| f64::from(v)).sum();
    assert_eq!(sum, 2574.0);
    let first: Vec<f32> = cube.data().iter().take(4).copied().collect();
    assert_eq!(first, [11.0, 19.0, 19.0, 19.0]);
    assert_eq!(cube.data().iter().fold(0.0f32, |a, &b| a.max(b)), 27.0);
    let red = s.tags.get_path("ColorMap/red").unwrap();
    let TagValue::Numbers(red) = red else {
        panic!("colour map not inline: {red:?}")
    };
    assert_eq!(red.len(), 256);
    assert_eq!(&red[..3], &[0.0, 256.0, 512.0]);
    let rgb = palette_to_rgb(s).unwrap().into_hypercube().unwrap();
    let mut sums = [0.0f64; 3];
    for (i, &v) in rgb.data().iter().enumerate() {
        sums[i % 3] += f64::from(v);
    }
    assert_eq!(sums, [658944.0; 3]);
}
