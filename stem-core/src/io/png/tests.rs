use super::*;
use ndarray::{Array, array};

fn ramp(n: usize) -> Array2<f32> {
    Array::from_shape_fn((1, n), |(_, x)| x as f32)
}

fn opts(low: f64, high: f64, log_scale: bool) -> PngOptions {
    PngOptions {
        low_percentile: low,
        high_percentile: high,
        log_scale,
    }
}

#[test]
fn defaults_are_documented_values() {
    assert_eq!(opts(0.5, 99.5, false), PngOptions::default());
}

#[test]
fn percentile_matches_numpy_linear_interpolation() {
    // np.percentile([0, 10, 20, 30, 40], [0, 12.5, 25, 62.5, 100]) = [0, 5, 10, 25, 40].
    for (p, expected) in [
        (0.0, 0.0),
        (12.5, 5.0),
        (25.0, 10.0),
        (62.5, 25.0),
        (100.0, 40.0),
    ] {
        let mut v = vec![30.0f32, 0.0, 40.0, 10.0, 20.0];
        assert_eq!(percentile(&mut v, p), expected, "p = {p}");
    }
    assert_eq!(percentile(&mut [7.0], 99.5), 7.0);
}

#[test]
fn percentile_stretch_on_a_ramp() {
    // Values 0..=100: the 10th and 90th percentiles are 10 and 90, so v -> (v - 10) * 255 / 80.
    let out = stretch_to_u8(ramp(101).view(), &opts(10.0, 90.0, false)).unwrap();
    for (v, expected) in [
        (0, 0),
        (5, 0),
        (10, 0),
        (30, 64),
        (50, 128),
        (89, 252),
        (90, 255),
        (100, 255),
    ] {
        assert_eq!(out[[0, v]], expected, "v = {v}");
    }
    // Full range: 0 -> 0, 100 -> 255, 40 -> 102.
    let out = stretch_to_u8(ramp(101).view(), &opts(0.0, 100.0, false)).unwrap();
    assert_eq!([out[[0, 0]], out[[0, 40]], out[[0, 100]]], [0, 102, 255]);
}

#[test]
fn non_finite_pixels_are_zero_and_ignored() {
    let mut values: Vec<f32> = (0..=100).map(|v| v as f32).collect();
    values.extend([f32::NAN, f32::INFINITY, f32::NEG_INFINITY]);
    let image = Array2::from_shape_vec((1, 104), values).unwrap();
    let out = stretch_to_u8(image.view(), &opts(10.0, 90.0, false)).unwrap();
    assert_eq!(
        out.slice(ndarray::s![0, ..101]),
        stretch_to_u8(ramp(101).view(), &opts(10.0, 90.0, false))
            .unwrap()
            .row(0)
    );
    assert_eq!(out.slice(ndarray::s![0, 101..]).to_vec(), vec![0, 0, 0]);
    let all_nan = Array2::from_elem((2, 2), f32::NAN);
    assert_eq!(
        stretch_to_u8(all_nan.view(), &PngOptions::default()).unwrap(),
        Array2::<u8>::zeros((2, 2))
    );
}

#[test]
fn log_scale_compresses_before_the_stretch() {
    // With min -5, log1p(v + 5) is 0, 1, 3, 4 for these values: 0, 63.75, 191.25, 255.
    let e = std::f32::consts::E;
    let image = array![[
        -5.0,
        e - 1.0 - 5.0,
        e.powi(3) - 1.0 - 5.0,
        e.powi(4) - 1.0 - 5.0
    ]];
    let out = stretch_to_u8(image.view(), &opts(0.0, 100.0, true)).unwrap();
    assert_eq!(out, array![[0u8, 64, 191, 255]]);
    // The linear stretch of the same image differs.
    let linear = stretch_to_u8(image.view(), &opts(0.0, 100.0, false)).unwrap();
    assert_eq!(linear[[0, 1]], 8); // (e - 1) / (e^4 - 1) * 255 = 8.15
}

#[test]
fn constant_and_collapsed_windows() {
    let flat = Array2::from_elem((3, 4), 7.0f32);
    assert_eq!(
        stretch_to_u8(flat.view(), &PngOptions::default()).unwrap(),
        Array2::<u8>::zeros((3, 4))
    );
    // Mostly zero with one spike: the 0-99.5 window of 1000 values is [0, 0]; the spike is white.
    let mut sparse = Array2::zeros((10, 100));
    sparse[[3, 3]] = 50.0f32;
    let out = stretch_to_u8(sparse.view(), &PngOptions::default()).unwrap();
    assert_eq!(out[[3, 3]], 255);
    assert_eq!(out.iter().filter(|&&v| v != 0).count(), 1);
}

#[test]
fn invalid_options_and_empty_images_are_errors() {
    let image = ramp(10);
    for (low, high) in [
        (50.0, 50.0),
        (60.0, 40.0),
        (-1.0, 50.0),
        (0.0, 100.5),
        (f64::NAN, 50.0),
    ] {
        assert!(
            matches!(
                stretch_to_u8(image.view(), &opts(low, high, false)),
                Err(Error::InvalidParameter { .. })
            ),
            "{low} {high}"
        );
    }
    let empty = Array2::<f32>::zeros((0, 5));
    assert!(matches!(
        stretch_to_u8(empty.view(), &PngOptions::default()),
        Err(Error::EmptyInput { .. })
    ));
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("e.png");
    assert!(matches!(
        save_gray_png(&p, &Array2::zeros((0, 3))),
        Err(Error::EmptyInput { .. })
    ));
    assert!(matches!(
        save_rgb_png(&p, &Array3::zeros((2, 2, 4))),
        Err(Error::ShapeMismatch { .. })
    ));
    let bad = dir.path().join("missing_dir").join("x.png");
    assert!(
        matches!(save_gray_png(&bad, &Array2::<u8>::zeros((2, 2))), Err(Error::Io { path, .. }) if path == bad)
    );
}

#[test]
fn gray_and_rgb_png_read_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let gray = Array2::from_shape_fn((5, 7), |(y, x)| (y * 40 + x * 3) as u8);
    let p = dir.path().join("g.png");
    save_gray_png(&p, &gray).unwrap();
    let back = image::open(&p).unwrap();
    assert_eq!(back.color(), image::ColorType::L8);
    let back = back.to_luma8();
    assert_eq!((back.width(), back.height()), (7, 5));
    for (x, y, px) in back.enumerate_pixels() {
        assert_eq!(px.0[0], gray[[y as usize, x as usize]]);
    }

    let rgb = Array3::from_shape_fn((4, 6, 3), |(y, x, c)| (y * 50 + x * 7 + c * 80) as u8);
    let p = dir.path().join("c.png");
    save_rgb_png(&p, &rgb).unwrap();
    let back = image::open(&p).unwrap().to_rgb8();
    assert_eq!((back.width(), back.height()), (6, 4));
    for (x, y, px) in back.enumerate_pixels() {
        for c in 0..3 {
            assert_eq!(px.0[c], rgb[[y as usize, x as usize, c]]);
        }
    }

    // save_png writes the stretched image.
    let image = Array2::from_shape_fn((3, 4), |(y, x)| (y * 4 + x) as f32 * 1e-3);
    let options = opts(0.0, 100.0, false);
    let p = dir.path().join("s.png");
    save_png(&p, image.view(), &options).unwrap();
    let back = image::open(&p).unwrap().to_luma8();
    let expected = stretch_to_u8(image.view(), &options).unwrap();
    assert_eq!(
        back.into_raw(),
        expected.iter().copied().collect::<Vec<_>>()
    );
    assert_eq!(expected[[2, 3]], 255);
}

/// Pixels of `rgb` equal to `color`, as sorted (y, x).
fn painted(rgb: &Array3<u8>, color: [u8; 3]) -> Vec<(usize, usize)> {
    let (h, w, _) = rgb.dim();
    let mut out = Vec::new();
    for y in 0..h {
        for x in 0..w {
            if [rgb[[y, x, 0]], rgb[[y, x, 1]], rgb[[y, x, 2]]] == color {
                out.push((y, x));
            }
        }
    }
    out
}

#[test]
fn markers_land_on_the_right_pixels() {
    let gray = Array2::from_elem((11, 11), 9u8);
    let red = [255, 0, 0];
    let rgb = overlay_markers(&gray, &[[5.2, 4.6]], red, 2);
    let mut expected: Vec<(usize, usize)> = (3..=7)
        .map(|y| (y, 5))
        .chain((3..=7).map(|x| (5, x)))
        .collect();
    expected.sort();
    expected.dedup();
    assert_eq!(painted(&rgb, red), expected);
    assert_eq!(painted(&rgb, [9, 9, 9]).len(), 121 - 9);
    // Radius 0 is a single pixel.
    assert_eq!(
        painted(&overlay_markers(&gray, &[[0.0, 10.0]], red, 0), red),
        vec![(0, 10)]
    );
}

#[test]
fn markers_are_clipped_at_edges() {
    let gray = Array2::zeros((11, 11));
    let red = [255, 0, 0];
    // Corner: arms run off the top and the right.
    let rgb = overlay_markers(&gray, &[[0.0, 10.4]], red, 3);
    let mut expected: Vec<(usize, usize)> = (0..=3)
        .map(|y| (y, 10))
        .chain((7..=10).map(|x| (0, x)))
        .collect();
    expected.sort();
    expected.dedup();
    assert_eq!(painted(&rgb, red), expected);
    // Centre above the image: only the lower end of the vertical arm shows.
    let rgb = overlay_markers(&gray, &[[-2.0, 5.0]], red, 3);
    assert_eq!(painted(&rgb, red), vec![(0, 5), (1, 5)]);
    // Far away, huge radius and non-finite points: nothing drawn, no panic.
    let rgb = overlay_markers(
        &gray,
        &[[1e300, -1e300], [f64::NAN, 3.0], [3.0, f64::INFINITY]],
        red,
        usize::MAX,
    );
    assert!(painted(&rgb, red).is_empty());
    // A huge radius on an inside point paints the full row and column.
    let rgb = overlay_markers(&gray, &[[4.0, 6.0]], red, usize::MAX);
    assert_eq!(painted(&rgb, red).len(), 21);
}

#[test]
fn two_marker_sets_compose() {
    let gray = Array2::zeros((8, 8));
    let mut rgb = gray_to_rgb(&gray);
    draw_markers(&mut rgb, &[[2.0, 2.0]], [255, 0, 0], 1).unwrap();
    draw_markers(&mut rgb, &[[5.0, 5.0]], [0, 255, 0], 1).unwrap();
    assert_eq!(painted(&rgb, [255, 0, 0]).len(), 5);
    assert_eq!(painted(&rgb, [0, 255, 0]).len(), 5);
    assert_eq!(painted(&rgb, [0, 0, 0]).len(), 64 - 10);
    let mut wrong = Array3::zeros((4, 4, 2));
    assert!(matches!(
        draw_markers(&mut wrong, &[[1.0, 1.0]], [1, 2, 3], 1),
        Err(Error::ShapeMismatch { .. })
    ));
}
