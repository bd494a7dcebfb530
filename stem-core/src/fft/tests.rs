use super::*;
use crate::Parallelism;
use ndarray::{ShapeBuilder, s};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::f64::consts::PI;

fn random_complex(shape: (usize, usize), seed: u64) -> Array2<Complex<f64>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Array2::from_shape_simple_fn(shape, || {
        Complex::new(rng.random_range(-1.0..1.0), rng.random_range(-1.0..1.0))
    })
}

/// Direct O(N²) 2-D DFT in f64; `sign` = −1 forward, +1 inverse (unscaled).
fn direct_dft(a: &Array2<Complex<f64>>, sign: f64) -> Array2<Complex<f64>> {
    let (ny, nx) = a.dim();
    Array2::from_shape_fn((ny, nx), |(ky, kx)| {
        let mut acc = Complex::new(0.0, 0.0);
        for ((y, x), v) in a.indexed_iter() {
            // Reduce the phase index modulo n first for accuracy.
            let p = ((ky * y) % ny) as f64 / ny as f64 + ((kx * x) % nx) as f64 / nx as f64;
            acc += v * Complex::from_polar(1.0, sign * 2.0 * PI * p);
        }
        acc
    })
}

fn max_abs_diff(a: &Array2<Complex<f64>>, b: &Array2<Complex<f64>>) -> f64 {
    a.iter()
        .zip(b.iter())
        .map(|(x, y)| (x - y).norm())
        .fold(0.0, f64::max)
}

const SHAPES: [[usize; 2]; 6] = [[1, 1], [3, 5], [7, 16], [12, 9], [13, 11], [1, 17]];

#[test]
fn forward_and_inverse_match_direct_dft_f64() {
    // Measured max abs error on these inputs (|x| < √2, N <= 143): forward 2.0e-14 (13x11; the
    // oracle's own rounding is of that order), inverse 2.4e-16.
    for (i, shape) in SHAPES.iter().enumerate() {
        let x = random_complex((shape[0], shape[1]), 10 + i as u64);
        let plan = Fft2::<f64>::new(*shape).unwrap();
        let mut f = x.clone();
        plan.forward(&mut f).unwrap();
        let err = max_abs_diff(&f, &direct_dft(&x, -1.0));
        assert!(err < 1e-12, "forward {shape:?}: max error {err:e}");
        let n = (shape[0] * shape[1]) as f64;
        let mut g = x.clone();
        plan.inverse(&mut g).unwrap();
        let expected = direct_dft(&x, 1.0).mapv(|v| v / n);
        let err = max_abs_diff(&g, &expected);
        assert!(err < 1e-12, "inverse {shape:?}: max error {err:e}");
    }
}

#[test]
fn forward_matches_direct_dft_f32() {
    // f32 has eps 1.2e-7; with |x| < √2 and N <= 143 the largest output is ~20, and the
    // measured max abs error is 2.6e-6 (12x9); round trip 2.4e-7.
    for (i, shape) in SHAPES.iter().enumerate() {
        let x = random_complex((shape[0], shape[1]), 20 + i as u64);
        let x32 = x.mapv(|v| Complex::new(v.re as f32, v.im as f32));
        let x64 = x32.mapv(|v| Complex::new(v.re as f64, v.im as f64));
        let plan = Fft2::<f32>::new(*shape).unwrap();
        let mut f = x32.clone();
        plan.forward(&mut f).unwrap();
        let f64v = f.mapv(|v| Complex::new(v.re as f64, v.im as f64));
        let err = max_abs_diff(&f64v, &direct_dft(&x64, -1.0));
        assert!(err < 2e-5, "f32 forward {shape:?}: max error {err:e}");
        plan.inverse(&mut f).unwrap();
        let back = f.mapv(|v| Complex::new(v.re as f64, v.im as f64));
        let err = max_abs_diff(&back, &x64);
        assert!(err < 2e-6, "f32 round trip {shape:?}: max error {err:e}");
    }
}

#[test]
fn round_trip_and_parseval() {
    for (i, shape) in SHAPES.iter().enumerate() {
        let x = random_complex((shape[0], shape[1]), 30 + i as u64);
        let plan = Fft2::<f64>::new(*shape).unwrap();
        let mut f = x.clone();
        plan.forward(&mut f).unwrap();
        let n = (shape[0] * shape[1]) as f64;
        let e_x: f64 = x.iter().map(|v| v.norm_sqr()).sum();
        let e_f: f64 = f.iter().map(|v| v.norm_sqr()).sum::<f64>() / n;
        assert!(
            (e_x - e_f).abs() < 1e-12 * e_x,
            "Parseval {shape:?}: {e_x} vs {e_f}"
        );
        plan.inverse(&mut f).unwrap();
        assert!(max_abs_diff(&f, &x) < 1e-14, "round trip {shape:?}");
    }
}

#[test]
fn known_transforms() {
    // Constant c -> N·c at the origin, 0 elsewhere; a plane wave -> a single peak.
    let (ny, nx) = (6, 8);
    let plan = Fft2::<f64>::new([ny, nx]).unwrap();
    let mut a = Array2::from_elem((ny, nx), Complex::new(2.0, 0.0));
    plan.forward(&mut a).unwrap();
    assert!((a[[0, 0]] - Complex::new(96.0, 0.0)).norm() < 1e-12);
    assert!(a.iter().skip(1).all(|v| v.norm() < 1e-12));
    // exp(+2πi (1·y/6 + 3·x/8)) has its only component at [1, 3].
    let mut w = Array2::from_shape_fn((ny, nx), |(y, x)| {
        Complex::from_polar(1.0, 2.0 * PI * (y as f64 / 6.0 + 3.0 * x as f64 / 8.0))
    });
    plan.forward(&mut w).unwrap();
    for ((y, x), v) in w.indexed_iter() {
        let expected = if (y, x) == (1, 3) { 48.0 } else { 0.0 };
        assert!(
            (v - Complex::new(expected, 0.0)).norm() < 1e-11,
            "[{y}, {x}] = {v}"
        );
    }
}

#[test]
fn forward_real_equals_complex_forward() {
    let x = random_complex((5, 7), 40).mapv(|v| v.re);
    let plan = Fft2::<f64>::new([5, 7]).unwrap();
    let f = plan.forward_real(x.view()).unwrap();
    let mut g = x.mapv(|v| Complex::new(v, 0.0));
    plan.forward(&mut g).unwrap();
    assert_eq!(f, g);
    // Hermitian symmetry of a real input's spectrum.
    assert!((f[[1, 2]] - f[[4, 5]].conj()).norm() < 1e-12);
    assert!(matches!(
        plan.forward_real(Array2::<f64>::zeros((7, 5)).view()),
        Err(Error::ShapeMismatch { .. })
    ));
}

#[test]
fn shape_mismatch_is_an_error() {
    let plan = Fft2::<f32>::new([4, 6]).unwrap();
    let mut a = Array2::<Complex<f32>>::zeros((6, 4));
    let err = plan.forward(&mut a).unwrap_err();
    match err {
        Error::ShapeMismatch { expected, found } => {
            assert_eq!((expected, found), (vec![4, 6], vec![6, 4]));
        }
        other => panic!("unexpected error {other}"),
    }
    assert!(matches!(
        plan.inverse(&mut a),
        Err(Error::ShapeMismatch { .. })
    ));
}

#[test]
fn zero_dimension_is_an_error() {
    assert!(matches!(
        Fft2::<f64>::new([0, 4]),
        Err(Error::InvalidParameter { name: "shape", .. })
    ));
    assert!(Fft2::<f64>::new([3, 0]).is_err());
}

#[test]
fn non_standard_layouts_give_the_same_result() {
    let x = random_complex((12, 9), 50);
    let plan = Fft2::<f64>::new([12, 9]).unwrap();
    let mut reference = x.clone();
    plan.forward(&mut reference).unwrap();
    let check = |got: ArrayView2<'_, Complex<f64>>, what: &str| {
        let err = max_abs_diff(&got.to_owned(), &reference);
        assert!(err < 1e-12, "{what}: max error {err:e}");
    };
    // Fortran (column-major) layout.
    let mut f = Array2::zeros((12, 9).f());
    f.assign(&x);
    plan.forward_view(f.view_mut()).unwrap();
    check(f.view(), "fortran");
    // Transposed view of a 9x12 array.
    let mut t = x.t().to_owned(); // 9x12 standard
    plan.forward_view(t.view_mut().reversed_axes()).unwrap();
    check(t.t(), "transposed");
    // Stepped slice of a bigger array (both strides > 1) and a column slice (rows stride 1).
    let mut big = Array2::<Complex<f64>>::zeros((24, 20));
    big.slice_mut(s![..;2, 1..19;2]).assign(&x);
    plan.forward_view(big.slice_mut(s![..;2, 1..19;2])).unwrap();
    check(big.slice(s![..;2, 1..19;2]), "stepped");
    assert_eq!(
        big[[0, 0]],
        Complex::new(0.0, 0.0),
        "outside the view untouched"
    );
    let mut wide = Array2::<Complex<f64>>::zeros((12, 15));
    wide.slice_mut(s![.., 3..12]).assign(&x);
    plan.forward_view(wide.slice_mut(s![.., 3..12])).unwrap();
    check(wide.slice(s![.., 3..12]), "column slice");
    // Negative strides on both axes.
    let mut r = Array2::<Complex<f64>>::zeros((12, 9));
    r.slice_mut(s![..;-1, ..;-1]).assign(&x);
    plan.forward_view(r.slice_mut(s![..;-1, ..;-1])).unwrap();
    check(r.slice(s![..;-1, ..;-1]), "reversed");
    // Inverse on a non-standard layout returns the input.
    plan.inverse_view(f.view_mut()).unwrap();
    assert!(max_abs_diff(&f.to_owned(), &x) < 1e-14);
}

#[test]
fn parallel_is_bit_identical_to_sequential() {
    // 70 x 50: several lane blocks on both axes, including a partial block.
    let x = random_complex((70, 50), 60).mapv(|v| Complex::new(v.re as f32, v.im as f32));
    let seq = Fft2::<f32>::new([70, 50]).unwrap();
    assert!(!seq.is_parallel());
    let par = seq.clone().with_parallel(true);
    let mut a = x.clone();
    seq.forward(&mut a).unwrap();
    for threads in [1, 2] {
        let mut b = x.clone();
        Parallelism::Threads(threads)
            .install(|| par.forward(&mut b))
            .unwrap()
            .unwrap();
        assert_eq!(a, b, "{threads} threads");
        // Also for a transposed (gathered) layout and the inverse.
        let mut c = x.t().to_owned();
        let mut d = c.clone();
        seq.inverse_view(c.view_mut().reversed_axes()).unwrap();
        Parallelism::Threads(threads)
            .install(|| par.inverse_view(d.view_mut().reversed_axes()))
            .unwrap()
            .unwrap();
        assert_eq!(c, d, "{threads} threads, transposed inverse");
    }
}

#[test]
fn plan_is_send_sync_and_shared_across_threads() {
    fn assert_send_sync<S: Send + Sync>() {}
    assert_send_sync::<Fft2<f32>>();
    assert_send_sync::<Fft2<f64>>();
    let plan = Fft2::<f64>::new([8, 8]).unwrap();
    let x = random_complex((8, 8), 70);
    let mut expected = x.clone();
    plan.forward(&mut expected).unwrap();
    std::thread::scope(|sc| {
        for _ in 0..4 {
            sc.spawn(|| {
                let mut y = x.clone();
                plan.forward(&mut y).unwrap();
                assert_eq!(y, expected);
            });
        }
    });
    assert_eq!(plan.shape(), [8, 8]);
}

proptest! {
    #[test]
    fn inverse_of_forward_is_identity(ny in 1usize..20, nx in 1usize..20, seed in 0u64..1000) {
        let x = random_complex((ny, nx), seed);
        let plan = Fft2::<f64>::new([ny, nx]).unwrap();
        let mut f = x.clone();
        plan.forward(&mut f).unwrap();
        plan.inverse(&mut f).unwrap();
        prop_assert!(max_abs_diff(&f, &x) < 1e-13);
    }
}
