use super::*;
use crate::parallel::Parallelism;
use ndarray::{Array2, s};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The formula-defined test images shared with the Python ground truth below.
fn images(ny: usize, nx: usize) -> (Array2<f64>, Array2<f64>) {
    let a = Array2::from_shape_fn((ny, nx), |(i, j)| {
        let (fi, fj) = (i as f64, j as f64);
        (0.3 * fi).sin() + (0.2 * fj).cos() + 0.1 * ((i * 7 + j * 13) % 5) as f64
    });
    let b = Array2::from_shape_fn((ny, nx), |(i, j)| {
        let (fi, fj) = (i as f64, j as f64);
        0.9 * a[[i, j]] + 0.2 * (0.5 * fi + 0.3 * fj).cos() + 0.03 * ((i * 3 + j * 5) % 7) as f64
    });
    (a, b)
}

fn assert_rel(got: f64, want: f64, tol: f64, what: &str) {
    let rel = ((got - want) / want).abs();
    assert!(
        rel <= tol,
        "{what}: got {got:.17}, want {want:.17}, rel err {rel:e}"
    );
}

// Ground truth from scikit-image 0.24.0 (numpy 2.4.6, scipy 1.17.1), float64:
//
// import numpy as np
// from skimage.metrics import structural_similarity, peak_signal_noise_ratio, mean_squared_error
// def imgs(ny, nx):
//     i, j = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
//     a = np.sin(0.3*i) + np.cos(0.2*j) + 0.1*((i*7 + j*13) % 5)
//     b = 0.9*a + 0.2*np.cos(0.5*i + 0.3*j) + 0.03*((i*3 + j*5) % 7)
//     return a, b
// a, b = imgs(32, 40); R = a.max() - a.min()      # and imgs(17, 23) with R = 4.0
// mse = mean_squared_error(a, b); rmse = np.sqrt(mse)
// psnr = peak_signal_noise_ratio(a, b, data_range=R)
// s, S = structural_similarity(a, b, data_range=R, gaussian_weights=True, sigma=1.5,
//                              use_sample_covariance=False, full=True)
// # f32 rows: the same on a.astype(np.float32).astype(np.float64) (and b likewise)
// # sigma=1.0 row: structural_similarity(a, b, data_range=3.0, gaussian_weights=True,
// #                                      sigma=1.0, use_sample_covariance=False) on 32x40
//
// (32, 40) R 4.36434919547568  mse 0.035444406097967465  rmse 0.18826684811184222
//   psnr 27.302912794264493  ssim 0.8682031482763057
//   S[0,0] 0.9513690516620441  S[31,39] 0.952183527221164  S[3,9] 0.9464899199729676
//   S[16,20] 0.8303308596065412
//   f32 ssim 0.8682031477119425  f32 psnr 27.302912755182376
// (17, 23) R 4.0  mse 0.042039914423215086  rmse 0.20503637341509698
//   psnr 25.8045815935213  ssim 0.8704081368947482
//   S[0,0] 0.950720930491778  S[16,22] 0.9052919899033094  S[3,9] 0.9460742791414434
//   S[8,11] 0.8888725417135135
//   f32 ssim 0.8704081374629865  f32 psnr 25.804581510446308
// sigma=1.0, R=3.0 on (32, 40): ssim 0.8447710056104508
//
// Both sides compute in f64 with the same formulas; only summation order and 1-ulp differences
// in sin/cos/exp differ, so agreement is far below the asserted 1e-6 relative (measured ~1e-15).
const TOL: f64 = 1e-6;

#[test]
fn ground_truth_32x40_matches_scikit_image() {
    let (a, b) = images(32, 40);
    let r = data_range_of(a.view());
    assert_rel(r, 4.36434919547568, 1e-14, "data range");
    assert_rel(
        mse(a.view(), b.view()).unwrap(),
        0.035444406097967465,
        TOL,
        "mse",
    );
    assert_rel(
        rmse(a.view(), b.view()).unwrap(),
        0.18826684811184222,
        TOL,
        "rmse",
    );
    assert_rel(
        psnr(a.view(), b.view(), r).unwrap(),
        27.302912794264493,
        TOL,
        "psnr",
    );
    let cfg = SsimConfig::new(r);
    assert_rel(
        ssim(a.view(), b.view(), &cfg).unwrap(),
        0.8682031482763057,
        TOL,
        "ssim",
    );
    let map = ssim_map(a.view(), b.view(), &cfg).unwrap();
    for (p, want) in [
        ([0, 0], 0.9513690516620441),
        ([31, 39], 0.952183527221164),
        ([3, 9], 0.9464899199729676),
        ([16, 20], 0.8303308596065412),
    ] {
        assert_rel(map[p], want, TOL, &format!("ssim map {p:?}"));
    }
    let cfg1 = SsimConfig {
        sigma: 1.0,
        ..SsimConfig::new(3.0)
    };
    assert_eq!(cfg1.win_size().unwrap(), 9); // floor(3.5·1.0 + 0.5) = 4
    assert_rel(
        ssim(a.view(), b.view(), &cfg1).unwrap(),
        0.8447710056104508,
        TOL,
        "ssim sigma 1",
    );
}

#[test]
fn ground_truth_17x23_matches_scikit_image() {
    let (a, b) = images(17, 23);
    assert_rel(
        mse(a.view(), b.view()).unwrap(),
        0.042039914423215086,
        TOL,
        "mse",
    );
    assert_rel(
        rmse(a.view(), b.view()).unwrap(),
        0.20503637341509698,
        TOL,
        "rmse",
    );
    assert_rel(
        psnr(a.view(), b.view(), 4.0).unwrap(),
        25.8045815935213,
        TOL,
        "psnr",
    );
    let cfg = SsimConfig::new(4.0);
    assert_rel(
        ssim(a.view(), b.view(), &cfg).unwrap(),
        0.8704081368947482,
        TOL,
        "ssim",
    );
    let map = ssim_map(a.view(), b.view(), &cfg).unwrap();
    for (p, want) in [
        ([0, 0], 0.950720930491778),
        ([16, 22], 0.9052919899033094),
        ([3, 9], 0.9460742791414434),
        ([8, 11], 0.8888725417135135),
    ] {
        assert_rel(map[p], want, TOL, &format!("ssim map {p:?}"));
    }
}

#[test]
fn f32_inputs_match_scikit_image_on_rounded_data() {
    for ((ny, nx), r, want_ssim, want_psnr) in [
        (
            (32, 40),
            4.36434919547568,
            0.8682031477119425,
            27.302912755182376,
        ),
        ((17, 23), 4.0, 0.8704081374629865, 25.804581510446308),
    ] {
        let (a, b) = images(ny, nx);
        let (a, b) = (a.mapv(|v| v as f32), b.mapv(|v| v as f32));
        let s = ssim(a.view(), b.view(), &SsimConfig::new(r)).unwrap();
        assert_rel(s, want_ssim, TOL, "f32 ssim");
        assert_rel(
            psnr(a.view(), b.view(), r).unwrap(),
            want_psnr,
            TOL,
            "f32 psnr",
        );
    }
}

#[test]
fn psnr_of_constant_offset_is_analytic() {
    // Integer-valued image + 0.5: differences are exactly 0.5, MSE exactly 0.25.
    let a = Array2::from_shape_fn((20, 30), |(y, x)| ((y * 31 + x * 17) % 11) as f64);
    let b = a.mapv(|v| v + 0.5);
    let r = data_range_of(a.view());
    assert_eq!(r, 10.0);
    assert_eq!(mse(a.view(), b.view()).unwrap(), 0.25);
    assert_eq!(rmse(a.view(), b.view()).unwrap(), 0.5);
    let want = 20.0 * (10.0f64 / 0.5).log10();
    assert!((psnr(a.view(), b.view(), r).unwrap() - want).abs() < 1e-12);
    assert_eq!(psnr(a.view(), a.view(), r).unwrap(), f64::INFINITY);
}

#[test]
fn ssim_of_identical_images_is_one_and_ssim_is_symmetric() {
    let (a, b) = images(32, 40);
    let cfg = SsimConfig::new(data_range_of(a.view()));
    let s = ssim(a.view(), a.view(), &cfg).unwrap();
    assert!((s - 1.0).abs() < 1e-12, "ssim(x, x) = {s}");
    let constant = Array2::from_elem((15, 15), 3.0f32);
    assert!((ssim(constant.view(), constant.view(), &cfg).unwrap() - 1.0).abs() < 1e-12);
    let ab = ssim(a.view(), b.view(), &cfg).unwrap();
    let ba = ssim(b.view(), a.view(), &cfg).unwrap();
    assert_eq!(ab, ba);
    assert!(ab < 0.95);
}

/// Direct (non-separable) evaluation of the local SSIM at one pixel, with explicit reflection.
fn naive_ssim_at(a: &Array2<f64>, b: &Array2<f64>, cfg: &SsimConfig, y: usize, x: usize) -> f64 {
    let (ny, nx) = a.dim();
    let r = (cfg.truncate * cfg.sigma + 0.5).floor() as isize;
    let refl = |i: isize, n: usize| -> usize {
        let n = n as isize;
        let mut i = i;
        while i < 0 || i >= n {
            i = if i < 0 { -i - 1 } else { 2 * n - 1 - i };
        }
        i as usize
    };
    let g = |d: isize| (-(d * d) as f64 / (2.0 * cfg.sigma * cfg.sigma)).exp();
    let norm: f64 = (-r..=r).map(g).sum::<f64>().powi(2);
    let (mut mx, mut my, mut mxx, mut myy, mut mxy) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for dy in -r..=r {
        for dx in -r..=r {
            let w = g(dy) * g(dx) / norm;
            let (yy, xx) = (refl(y as isize + dy, ny), refl(x as isize + dx, nx));
            let (p, q) = (a[[yy, xx]], b[[yy, xx]]);
            mx += w * p;
            my += w * q;
            mxx += w * p * p;
            myy += w * q * q;
            mxy += w * p * q;
        }
    }
    let (c1, c2) = (
        (cfg.k1 * cfg.data_range).powi(2),
        (cfg.k2 * cfg.data_range).powi(2),
    );
    let (vx, vy, vxy) = (mxx - mx * mx, myy - my * my, mxy - mx * my);
    ((2.0 * mx * my + c1) * (2.0 * vxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
}

#[test]
fn ssim_map_matches_naive_2d_window_and_mean_is_cropped_mean() {
    // 70 rows: several 32-row blocks and a partial one; sigma 2 exercises a 15-tap window.
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let a = Array2::from_shape_fn((70, 45), |_| rng.random::<f64>());
    let b = Array2::from_shape_fn((70, 45), |(y, x)| a[[y, x]] + 0.3 * rng.random::<f64>());
    for cfg in [
        SsimConfig::new(1.3),
        SsimConfig {
            sigma: 2.0,
            ..SsimConfig::new(1.3)
        },
    ] {
        let map = ssim_map(a.view(), b.view(), &cfg).unwrap();
        let mut max_err: f64 = 0.0;
        for ((y, x), &v) in map.indexed_iter() {
            max_err = max_err.max((v - naive_ssim_at(&a, &b, &cfg, y, x)).abs());
        }
        assert!(max_err < 1e-12, "max |fast − naive| = {max_err:e}");
        let p = (cfg.win_size().unwrap() - 1) / 2;
        let cropped = map.slice(s![p..70 - p, p..45 - p]);
        let want = cropped.sum() / cropped.len() as f64;
        let got = ssim(a.view(), b.view(), &cfg).unwrap();
        assert!((got - want).abs() < 1e-13, "{got} vs {want}");
    }
}

#[test]
fn results_do_not_depend_on_threads_or_layout() {
    let (a, b) = images(75, 33);
    let seq = SsimConfig {
        parallelism: Parallelism::Sequential,
        ..SsimConfig::new(4.0)
    };
    let par = SsimConfig {
        parallelism: Parallelism::Threads(2),
        ..SsimConfig::new(4.0)
    };
    assert_eq!(
        ssim(a.view(), b.view(), &seq).unwrap(),
        ssim(a.view(), b.view(), &par).unwrap()
    );
    assert_eq!(
        ssim_map(a.view(), b.view(), &seq).unwrap(),
        ssim_map(a.view(), b.view(), &par).unwrap()
    );
    // Transposed (non-standard-layout) views give the transposed result.
    let (at, bt) = (a.t().to_owned(), b.t().to_owned());
    let map_t = ssim_map(a.t(), b.t(), &seq).unwrap();
    assert_eq!(map_t, ssim_map(at.view(), bt.view(), &seq).unwrap());
    let strided = a.slice(s![..;2, ..]);
    let strided_b = b.slice(s![..;2, ..]);
    assert_eq!(
        mse(strided, strided_b).unwrap(),
        mse(strided.to_owned().view(), strided_b.to_owned().view()).unwrap()
    );
}

#[test]
fn shape_mismatch_is_rejected() {
    let a = Array2::<f64>::zeros((12, 12));
    let b = Array2::<f64>::zeros((12, 13));
    for e in [
        mse(a.view(), b.view()).unwrap_err(),
        psnr(a.view(), b.view(), 1.0).unwrap_err(),
        ssim(a.view(), b.view(), &SsimConfig::new(1.0)).unwrap_err(),
        ssim_map(a.view(), b.view(), &SsimConfig::new(1.0)).unwrap_err(),
    ] {
        assert!(
            matches!(e, Error::ShapeMismatch { ref expected, ref found }
            if expected == &[12, 12] && found == &[12, 13]),
            "{e}"
        );
    }
}

#[test]
fn empty_input_is_rejected() {
    let a = Array2::<f32>::zeros((0, 5));
    assert!(matches!(
        rmse(a.view(), a.view()),
        Err(Error::EmptyInput { .. })
    ));
    assert!(matches!(
        ssim(a.view(), a.view(), &SsimConfig::new(1.0)),
        Err(Error::EmptyInput { .. })
    ));
    assert!(data_range_of(a.view()).is_nan());
}

#[test]
fn non_finite_values_are_rejected_with_index() {
    let a = Array2::<f64>::zeros((12, 12));
    let mut b = a.clone();
    b[[2, 3]] = f64::NAN;
    assert!(matches!(
        mse(a.view(), b.view()),
        Err(Error::NonFinite {
            what: "test image",
            index: 27
        })
    ));
    assert!(matches!(
        mse(b.view(), a.view()),
        Err(Error::NonFinite {
            what: "reference image",
            index: 27
        })
    ));
    b[[2, 3]] = f64::INFINITY;
    assert!(matches!(
        ssim(a.view(), b.view(), &SsimConfig::new(1.0)),
        Err(Error::NonFinite { .. })
    ));
    assert!(data_range_of(b.view()).is_nan());
}

#[test]
fn invalid_data_range_is_rejected() {
    let (a, b) = images(12, 12);
    for r in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let e = psnr(a.view(), b.view(), r).unwrap_err();
        assert!(
            matches!(
                e,
                Error::InvalidParameter {
                    name: "data_range",
                    ..
                }
            ),
            "{e}"
        );
        let e = ssim(a.view(), b.view(), &SsimConfig::new(r)).unwrap_err();
        assert!(
            matches!(
                e,
                Error::InvalidParameter {
                    name: "data_range",
                    ..
                }
            ),
            "{e}"
        );
    }
    // A constant reference has data range 0, which PSNR rejects.
    let c = Array2::<f64>::ones((4, 4));
    assert_eq!(data_range_of(c.view()), 0.0);
    assert!(psnr(c.view(), c.view(), data_range_of(c.view())).is_err());
}

#[test]
fn invalid_ssim_parameters_are_rejected() {
    let (a, b) = images(12, 12);
    let base = SsimConfig::new(1.0);
    let cases: [(&str, SsimConfig); 8] = [
        (
            "sigma",
            SsimConfig {
                sigma: 0.0,
                ..base.clone()
            },
        ),
        (
            "sigma",
            SsimConfig {
                sigma: f64::NAN,
                ..base.clone()
            },
        ),
        (
            "k1",
            SsimConfig {
                k1: -0.01,
                ..base.clone()
            },
        ),
        (
            "k1",
            SsimConfig {
                k1: 0.0,
                ..base.clone()
            },
        ),
        (
            "k2",
            SsimConfig {
                k2: f64::INFINITY,
                ..base.clone()
            },
        ),
        (
            "truncate",
            SsimConfig {
                truncate: 0.0,
                ..base.clone()
            },
        ),
        (
            "truncate",
            SsimConfig {
                truncate: -3.5,
                ..base.clone()
            },
        ),
        (
            "truncate",
            SsimConfig {
                truncate: 1e300,
                ..base.clone()
            },
        ),
    ];
    for (name, cfg) in cases {
        let e = ssim(a.view(), b.view(), &cfg).unwrap_err();
        assert!(
            matches!(e, Error::InvalidParameter { name: n, .. } if n == name),
            "{name}: {e}"
        );
        assert!(ssim_map(a.view(), b.view(), &cfg).is_err());
    }
}

#[test]
fn image_smaller_than_window_is_rejected() {
    let (a, b) = images(10, 30);
    let e = ssim(a.view(), b.view(), &SsimConfig::new(1.0)).unwrap_err();
    assert!(
        matches!(e, Error::InvalidParameter { .. }) && e.to_string().contains("[10, 30]"),
        "{e}"
    );
    assert!(ssim_map(a.view(), b.view(), &SsimConfig::new(1.0)).is_err());
    // 11 × 11 is the smallest accepted size: one pixel survives the crop.
    let (a, b) = images(11, 11);
    let s = ssim(a.view(), b.view(), &SsimConfig::new(1.0)).unwrap();
    assert_eq!(
        s,
        ssim_map(a.view(), b.view(), &SsimConfig::new(1.0)).unwrap()[[5, 5]]
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]
    #[test]
    fn ssim_is_symmetric_and_at_most_one(seed in any::<u64>(), ny in 11usize..24, nx in 11usize..24) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let a = Array2::from_shape_fn((ny, nx), |_| rng.random::<f64>());
        let b = Array2::from_shape_fn((ny, nx), |_| rng.random::<f64>());
        let cfg = SsimConfig::new(1.0);
        let ab = ssim(a.view(), b.view(), &cfg).unwrap();
        prop_assert_eq!(ab, ssim(b.view(), a.view(), &cfg).unwrap());
        prop_assert!((-1.0 - 1e-12..=1.0 + 1e-12).contains(&ab));
        prop_assert!((ssim(a.view(), a.view(), &cfg).unwrap() - 1.0).abs() < 1e-12);
        prop_assert_eq!(mse(a.view(), b.view()).unwrap(), mse(b.view(), a.view()).unwrap());
    }
}
