//! Dense non-rigid registration in the manner of match-series (Berkels et al., Ultramicroscopy
//! 138 (2014) 46; reference note `denoise-register-tensor.md` §3), written from the description.
//!
//! For a reference `R` and a moving frame `T` (same shape `[ny, nx]`) it finds a displacement
//! field `d = (d_y, d_x)` (px, on the reference grid, the crate's convention
//! `warped(p) = T(p − d(p))`) that minimises
//!
//! `E[d] = −NCC(R, T∘(id − d)) + (λ/2)·h²·Σ_p |∇d(p)|²`,
//!
//! * NCC: the normalised cross-correlation over the pixels whose sample lies inside the frame
//!   (a mask fixed per level from the starting field, 1 px inside the edge), invariant to gain
//!   and offset changes between frames; `T` is sampled with Keys' cubic kernel, which has a
//!   continuous gradient.
//! * The regulariser is the Dirichlet energy with forward differences and free (Neumann)
//!   boundaries, `h = 1 / max(ny, nx)`: this is match-series' `λ/2 ∫|∇u|²` on Ω = [0, 1]²
//!   written in pixels, so λ has match-series' meaning and the same value works on every
//!   pyramid level and image size.
//!
//! **Optimiser.** Gradient descent preconditioned with the H¹ metric: each step solves
//! `D̄·(I − σΔ)p = g` ([`H1Metric`], exact, by an FFT of the mirror-extended field, which
//! diagonalises the Neumann Laplacian for any size), with `D̄` the mean Gauss–Newton data
//! curvature per pixel and `σ = s·λh²/D̄` (`s` = [`NonRigidConfig::preconditioner_scale`]), so
//! that a unit step is close to a Gauss–Newton step of the quadratic model. Directions are
//! combined by the Polak–Ribière+ nonlinear conjugate-gradient rule; step sizes by Armijo
//! backtracking (sufficient decrease 1e-4, halving) with steps capped at
//! [`NonRigidConfig::max_step_px`]; a level stops when the relative energy decrease of an
//! iteration falls below [`NonRigidConfig::stop_epsilon`], when the largest displacement
//! change falls below 1e-3 px, or after [`NonRigidConfig::max_iterations`].
//!
//! **Multilevel.** A pyramid of any size (not only powers of two): each coarser level has
//! `⌈n/2⌉` pixels per axis, made by a Gaussian blur (σ 0.7 px) and bilinear resampling at the
//! coarse pixel centres `y_f = (y_c + ½)·n/n_c − ½`. The field is solved coarse to fine and
//! prolongated bilinearly (components scaled by `n/n_c`).
//!
//! ```
//! use ndarray::Array2;
//! use stem_core::ImageView;
//! use stem_register::nonrigid::{register_pair, NonRigidConfig, Regularizer};
//!
//! let f = |y: f64, x: f64| ((y * 0.45).sin() * (x * 0.4).cos() * 10.0 + 20.0) as f32;
//! // a smooth 2-D displacement: the moving frame shows the pattern at p + u(p)
//! let u = |y: f64, x: f64| [0.6 * (x / 15.0).sin(), 0.5 * (y / 20.0).cos()];
//! let (ny, nx) = (70, 60); // any size
//! let reference = Array2::from_shape_fn((ny, nx), |(i, j)| f(i as f64, j as f64));
//! let moving = Array2::from_shape_fn((ny, nx), |(i, j)| {
//!     let d = u(i as f64, j as f64);
//!     f(i as f64 + d[0], j as f64 + d[1])
//! });
//! let cfg = NonRigidConfig { lambda: 2.0, regularizer: Regularizer::Dirichlet, ..Default::default() };
//! let reg = register_pair(ImageView::from(&reference), ImageView::from(&moving), None, &cfg)
//!     .unwrap();
//! assert!(reg.ncc > 0.999);
//! // warped(p) = moving(p − d(p)) = reference(p)  ⇒  d(p) ≈ u(p) (to first order)
//! let (i, j) = (35, 30);
//! let d = u(i as f64, j as f64);
//! assert!((f64::from(reg.field.dy[[i, j]]) - d[0]).abs() < 0.1);
//! assert!((f64::from(reg.field.dx[[i, j]]) - d[1]).abs() < 0.1);
//! ```

use crate::error::{Error, Result, check_finite};
use crate::interp::{clamp_index, keys};
use crate::warp::DisplacementField;
use ndarray::{Array2, ArrayView2, Zip};
use num_complex::Complex;
use stem_core::ImageView;
use stem_core::fft::Fft2;

/// The smoothness prior on the displacement field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Regularizer {
    /// Dirichlet energy `(λ/2)·h²·Σ|∇d|²` (match-series' default). Its filter on a mode of
    /// wavenumber k is `1/(1 + σk²)`: suppressing noise attenuates smooth distortions too.
    Dirichlet,
    /// Bending (Laplacian) energy `(λ/2)·h²·(n_0/n_l)²·Σ|Δd|²` (match-series' "Laplace"
    /// option; `n_0/n_l` keeps it level-invariant). Filter `1/(1 + σ²k⁴)`: the same noise
    /// suppression with far less attenuation of smooth distortions (default).
    #[default]
    Bending,
}

/// Settings of the pairwise non-rigid registration ([`register_pair`]) and of its use in the
/// series pipeline ([`crate::series::NonRigidModel::Dense`]).
#[derive(Clone, Debug, PartialEq)]
pub struct NonRigidConfig {
    /// Weight λ of the regulariser (see [`Regularizer`]; for the Dirichlet energy in
    /// match-series' units, module docs). Finite, > 0. Default 300, for the default bending
    /// prior: on generated 10 counts/px lattice series (256², 2-D distortions, peer-benchmarks.md
    /// §1.6 physics) λ = 300 gave the smallest residual of 300 / 600 (0.091 / 0.096 px).
    /// With the Dirichlet prior the best λ there was ≈ 3 (0.12 px); match-series' default 200
    /// attenuates such distortions strongly (0.48 px; both measured before the series passes
    /// used leave-one-out references).
    pub lambda: f64,
    /// Pyramid levels (1 = full resolution only). ≥ 1. Default 3. Fewer are used when a level
    /// would be smaller than `min_level_px`.
    pub levels: usize,
    /// Smallest side (px) of a pyramid level. ≥ 8. Default 32.
    pub min_level_px: usize,
    /// Iterations per level. ≥ 1. Default 40.
    pub max_iterations: usize,
    /// Stop a level when an iteration lowers the energy by less than this fraction of |E|.
    /// Finite, ≥ 0. Default 1e-6 (match-series' `stopEpsilon`).
    pub stop_epsilon: f64,
    /// Factor `s` of the H¹ metric width `σ = s·λh²/D̄` (module docs). Finite, > 0. Default 1.
    pub preconditioner_scale: f64,
    /// Largest change of the field per iteration (px of the level). Finite, > 0. Default 1.
    pub max_step_px: f64,
    /// The smoothness prior. Default [`Regularizer::Bending`].
    pub regularizer: Regularizer,
    /// Series pipeline: fit the scan-line model ([`crate::scanline`], with these settings and
    /// the series' `reference_passes`) first and start the dense passes from its fields, so
    /// that the dense field only has to capture what is not row-wise. Default `None`.
    pub scanline_first: Option<crate::scanline::ScanLineConfig>,
    /// Series pipeline: λ is multiplied by this on the passes after the first (match-series'
    /// `extraStagesLambdaFactor`, 0.1 there). Finite, > 0. Default 1: our later references are
    /// means of the warped frames, as noisy as the first one.
    pub extra_pass_lambda_factor: f64,
    /// Series pipeline: use the median instead of the mean of the warped frames as the
    /// reference of the later passes (match-series' `useMedianAsNewTarget`). Default `false`:
    /// for Poisson counts the mean is the less noisy reference.
    pub median_reference: bool,
}

impl Default for NonRigidConfig {
    fn default() -> Self {
        NonRigidConfig {
            lambda: 300.0,
            levels: 3,
            min_level_px: 32,
            max_iterations: 40,
            stop_epsilon: 1e-6,
            preconditioner_scale: 1.0,
            max_step_px: 1.0,
            regularizer: Regularizer::Bending,
            scanline_first: None,
            extra_pass_lambda_factor: 1.0,
            median_reference: false,
        }
    }
}

impl NonRigidConfig {
    /// Checks every field against its documented range.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] naming the first offending field.
    pub fn validate(&self) -> Result<()> {
        let pos = |name: &'static str, v: f64| -> Result<()> {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(Error::invalid(
                    name,
                    format!("must be finite and > 0, got {v}"),
                ))
            }
        };
        pos("lambda", self.lambda)?;
        pos("preconditioner_scale", self.preconditioner_scale)?;
        pos("max_step_px", self.max_step_px)?;
        pos("extra_pass_lambda_factor", self.extra_pass_lambda_factor)?;
        if !(self.stop_epsilon.is_finite() && self.stop_epsilon >= 0.0) {
            return Err(Error::invalid(
                "stop_epsilon",
                format!("must be finite and >= 0, got {}", self.stop_epsilon),
            ));
        }
        if self.levels == 0 {
            return Err(Error::invalid("levels", "must be >= 1, got 0"));
        }
        if self.max_iterations == 0 {
            return Err(Error::invalid("max_iterations", "must be >= 1, got 0"));
        }
        if self.min_level_px < 8 {
            return Err(Error::invalid(
                "min_level_px",
                format!("must be >= 8, got {}", self.min_level_px),
            ));
        }
        Ok(())
    }

    /// The pyramid shapes for an image of `shape`, finest first.
    pub fn level_shapes(&self, shape: [usize; 2]) -> Vec<[usize; 2]> {
        let mut out = vec![shape];
        while out.len() < self.levels {
            let [ny, nx] = out[out.len() - 1];
            let next = [ny.div_ceil(2), nx.div_ceil(2)];
            if next[0] < self.min_level_px || next[1] < self.min_level_px {
                break;
            }
            out.push(next);
        }
        out
    }
}

/// The result of [`register_pair`].
#[derive(Clone, Debug, PartialEq)]
pub struct PairRegistration {
    /// The displacement field on the reference grid (px, `warped(p) = moving(p − d(p))`).
    pub field: DisplacementField,
    /// NCC of the reference and the warped frame over the final level's mask, in [−1, 1].
    pub ncc: f64,
    /// The final energy `−NCC + (λ/2)h²Σ|∇d|²` on the finest level.
    pub energy: f64,
    /// Iterations summed over the levels.
    pub iterations: usize,
}

/// Registers `moving` onto `reference` non-rigidly (module docs), starting from `initial`
/// (e.g. a rigid shift as [`DisplacementField::constant`]; zero when `None`).
///
/// Runs on the calling thread (the series pipeline parallelises over frames).
///
/// # Errors
/// [`Error::InvalidParameter`] for an invalid config or a constant reference;
/// [`Error::ShapeMismatch`] when the shapes of the images or the initial field differ;
/// [`Error::TooSmall`] for images smaller than 8 px per side; [`Error::NonFinite`].
pub fn register_pair(
    reference: ImageView<'_, f32>,
    moving: ImageView<'_, f32>,
    initial: Option<&DisplacementField>,
    config: &NonRigidConfig,
) -> Result<PairRegistration> {
    config.validate()?;
    let shape = reference.shape();
    if moving.shape() != shape {
        return Err(Error::ShapeMismatch {
            expected: shape.to_vec(),
            found: moving.shape().to_vec(),
        });
    }
    check_size(shape)?;
    check_finite("reference", reference.data().iter())?;
    check_finite("moving", moving.data().iter())?;
    let init = match initial {
        Some(f) => {
            if f.shape() != shape {
                return Err(Error::ShapeMismatch {
                    expected: shape.to_vec(),
                    found: f.shape().to_vec(),
                });
            }
            check_finite("initial field dy", f.dy.iter())?;
            check_finite("initial field dx", f.dx.iter())?;
            f.clone()
        }
        None => DisplacementField::constant(shape, [0.0, 0.0]),
    };
    let shapes = config.level_shapes(shape);
    let plans = Plans::new(&shapes)?;
    let refs = pyramid(reference.data(), &shapes)?;
    register_prepared(
        &refs,
        moving.data(),
        &init,
        config,
        config.lambda,
        &plans,
        0,
    )
}

pub(crate) fn check_size(shape: [usize; 2]) -> Result<()> {
    if shape[0] < 8 || shape[1] < 8 {
        return Err(Error::TooSmall {
            shape,
            reason: "non-rigid registration needs at least 8 rows and columns".into(),
        });
    }
    Ok(())
}

/// FFT plans of the H¹ metric per pyramid level (shared by all frames).
pub(crate) struct Plans {
    ffts: Vec<Fft2<f32>>,
}

impl Plans {
    pub(crate) fn new(shapes: &[[usize; 2]]) -> Result<Self> {
        Ok(Plans {
            ffts: shapes
                .iter()
                .map(|s| Fft2::new([2 * s[0], 2 * s[1]]))
                .collect::<stem_core::Result<_>>()?,
        })
    }
}

/// Image pyramid for the given level shapes (finest first; level 0 is a copy of `img`).
pub(crate) fn pyramid(img: ArrayView2<'_, f32>, shapes: &[[usize; 2]]) -> Result<Vec<Array2<f32>>> {
    let mut out: Vec<Array2<f32>> = vec![img.to_owned()];
    for s in &shapes[1..] {
        let prev = &out[out.len() - 1];
        let blurred = stem_core::filters::gaussian_blur(prev.view(), 0.7, 4.0)?;
        out.push(resample(blurred.view(), *s));
    }
    Ok(out)
}

/// Bilinear resampling at the coarse pixel centres `y_f = (y_c + ½)·n_f/n_c − ½` (clamped).
fn resample(img: ArrayView2<'_, f32>, shape: [usize; 2]) -> Array2<f32> {
    let (ny, nx) = img.dim();
    let (sy, sx) = (ny as f64 / shape[0] as f64, nx as f64 / shape[1] as f64);
    Array2::from_shape_fn(shape, |(i, j)| {
        let y = ((i as f64 + 0.5) * sy - 0.5).clamp(0.0, (ny - 1) as f64);
        let x = ((j as f64 + 0.5) * sx - 0.5).clamp(0.0, (nx - 1) as f64);
        bilinear_f32(&img, y, x) as f32
    })
}

#[inline]
fn bilinear_f32(img: &ArrayView2<'_, f32>, y: f64, x: f64) -> f64 {
    let (ny, nx) = img.dim();
    let (y0, x0) = (y.floor(), x.floor());
    let (fy, fx) = (y - y0, x - x0);
    let (y0, x0) = (y0 as isize, x0 as isize);
    let g = |i: isize, j: isize| f64::from(img[[clamp_index(i, ny), clamp_index(j, nx)]]);
    (1.0 - fy) * ((1.0 - fx) * g(y0, x0) + fx * g(y0, x0 + 1))
        + fy * ((1.0 - fx) * g(y0 + 1, x0) + fx * g(y0 + 1, x0 + 1))
}

#[inline]
fn bilinear_f64(a: &Array2<f64>, y: f64, x: f64) -> f64 {
    let (ny, nx) = a.dim();
    let y = y.clamp(0.0, (ny - 1) as f64);
    let x = x.clamp(0.0, (nx - 1) as f64);
    let (y0, x0) = (y.floor(), x.floor());
    let (fy, fx) = (y - y0, x - x0);
    let (y0, x0) = (y0 as usize, x0 as usize);
    let (y1, x1) = ((y0 + 1).min(ny - 1), (x0 + 1).min(nx - 1));
    (1.0 - fy) * ((1.0 - fx) * a[[y0, x0]] + fx * a[[y0, x1]])
        + fy * ((1.0 - fx) * a[[y1, x0]] + fx * a[[y1, x1]])
}

/// Resamples a field (components in px of its grid) onto a grid of `shape`, scaling the
/// components by the ratio of the grid sizes (prolongation or restriction).
fn resample_field(dy: &Array2<f64>, dx: &Array2<f64>, shape: [usize; 2]) -> [Array2<f64>; 2] {
    let (ny, nx) = dy.dim();
    if [ny, nx] == shape {
        return [dy.clone(), dx.clone()];
    }
    let (sy, sx) = (shape[0] as f64 / ny as f64, shape[1] as f64 / nx as f64);
    let pos = |i: usize, j: usize| ((i as f64 + 0.5) / sy - 0.5, (j as f64 + 0.5) / sx - 0.5);
    [
        Array2::from_shape_fn(shape, |(i, j)| {
            let (y, x) = pos(i, j);
            bilinear_f64(dy, y, x) * sy
        }),
        Array2::from_shape_fn(shape, |(i, j)| {
            let (y, x) = pos(i, j);
            bilinear_f64(dx, y, x) * sx
        }),
    ]
}

/// Registration with a precomputed reference pyramid (`refs[l]` has the l-th shape of
/// `config.level_shapes`) and plans, from level `refs.len() − 1 − skip_coarse` down to 0.
pub(crate) fn register_prepared(
    refs: &[Array2<f32>],
    moving: ArrayView2<'_, f32>,
    init: &DisplacementField,
    config: &NonRigidConfig,
    lambda: f64,
    plans: &Plans,
    skip_coarse: usize,
) -> Result<PairRegistration> {
    let shapes: Vec<[usize; 2]> = refs.iter().map(|r| [r.nrows(), r.ncols()]).collect();
    let top = shapes.len().saturating_sub(1 + skip_coarse);
    let movs = pyramid(moving, &shapes[..=top])?;
    let d0y = init.dy.mapv(f64::from);
    let d0x = init.dx.mapv(f64::from);
    let [mut dy, mut dx] = resample_field(&d0y, &d0x, shapes[top]);
    let mut iterations = 0;
    let mut last = (0.0, 0.0);
    let mut level = top + 1;
    while level > 0 {
        level -= 1;
        if [dy.nrows(), dy.ncols()] != shapes[level] {
            [dy, dx] = resample_field(&dy, &dx, shapes[level]);
        }
        let lv = LevelProblem::new(
            refs[level].view(),
            movs[level].view(),
            &dy,
            &dx,
            lambda,
            config.regularizer,
            shapes[0][0],
        )?;
        let (e, ncc, it) = lv.minimise(&mut dy, &mut dx, config, &plans.ffts[level])?;
        iterations += it;
        last = (e, ncc);
    }
    Ok(PairRegistration {
        field: DisplacementField {
            dy: dy.mapv(|v| v as f32),
            dx: dx.mapv(|v| v as f32),
        },
        ncc: last.1,
        energy: last.0,
        iterations,
    })
}

/// The energy of one level: fixed mask, normalised reference, λh².
pub(crate) struct LevelProblem<'a> {
    t: ArrayView2<'a, f32>,
    /// `(R − mean)/‖R − mean‖` over the mask, 0 outside.
    r_hat: Array2<f64>,
    mask: Array2<bool>,
    lam_h2: f64,
    bending: bool,
}

/// Per-pixel samples of the warped template: value and gradient.
pub(crate) struct Samples {
    t: Array2<f64>,
    gy: Array2<f64>,
    gx: Array2<f64>,
}

impl<'a> LevelProblem<'a> {
    /// The mask: pixels whose starting sample `p − d(p)` lies at least 1 px inside the frame.
    pub(crate) fn new(
        r: ArrayView2<'_, f32>,
        t: ArrayView2<'a, f32>,
        dy: &Array2<f64>,
        dx: &Array2<f64>,
        lambda: f64,
        regularizer: Regularizer,
        finest_ny: usize,
    ) -> Result<Self> {
        let (ny, nx) = r.dim();
        let mask = Zip::indexed(dy).and(dx).map_collect(|(i, j), &a, &b| {
            let y = i as f64 - a;
            let x = j as f64 - b;
            y >= 1.0 && x >= 1.0 && y <= (ny - 2) as f64 && x <= (nx - 2) as f64
        });
        let cnt = mask.iter().filter(|&&m| m).count();
        let mean = Zip::from(&r).and(&mask).fold(
            0.0,
            |acc, &v, &m| {
                if m { acc + f64::from(v) } else { acc }
            },
        ) / cnt.max(1) as f64;
        let mut r_hat = Zip::from(&r)
            .and(&mask)
            .map_collect(|&v, &m| if m { f64::from(v) - mean } else { 0.0 });
        let norm = r_hat.iter().map(|v| v * v).sum::<f64>().sqrt();
        if cnt < 16 || norm <= 0.0 {
            return Err(Error::invalid(
                "reference",
                format!(
                    "has no contrast over the overlap ({cnt} pixels, norm {norm}) at level shape [{ny}, {nx}]"
                ),
            ));
        }
        r_hat.mapv_inplace(|v| v / norm);
        let h = 1.0 / ny.max(nx) as f64;
        Ok(LevelProblem {
            t,
            r_hat,
            mask,
            lam_h2: match regularizer {
                Regularizer::Dirichlet => lambda * h * h,
                Regularizer::Bending => {
                    let f = finest_ny as f64 / ny as f64;
                    lambda * h * h * f * f
                }
            },
            bending: regularizer == Regularizer::Bending,
        })
    }

    fn sample_all(&self, dy: &Array2<f64>, dx: &Array2<f64>, s: &mut Samples, grad: bool) {
        let (ny, nx) = self.t.dim();
        let (ymax, xmax) = ((ny - 1) as f64, (nx - 1) as f64);
        for i in 0..ny {
            for j in 0..nx {
                if !self.mask[[i, j]] {
                    continue;
                }
                let y = i as f64 - dy[[i, j]];
                let x = j as f64 - dx[[i, j]];
                // clamped at the edge: the gradient across the edge is zero there
                let (yc, xc) = (y.clamp(0.0, ymax), x.clamp(0.0, xmax));
                let (v, gy, gx) = sample_cubic(&self.t, yc, xc, grad);
                s.t[[i, j]] = v;
                if grad {
                    s.gy[[i, j]] = if yc == y { gy } else { 0.0 };
                    s.gx[[i, j]] = if xc == x { gx } else { 0.0 };
                }
            }
        }
    }

    fn regulariser(&self, dy: &Array2<f64>, dx: &Array2<f64>) -> f64 {
        if self.bending {
            let mut acc = 0.0;
            for a in [dy, dx] {
                let mut l = Array2::<f64>::zeros(a.raw_dim());
                add_neg_laplacian(a, &mut l, 1.0);
                acc += l.iter().map(|v| v * v).sum::<f64>();
            }
            0.5 * self.lam_h2 * acc
        } else {
            0.5 * self.lam_h2 * (dirichlet(dy) + dirichlet(dx))
        }
    }

    /// Adds the regulariser's gradient to `(gy, gx)`.
    fn add_regulariser_gradient(
        &self,
        dy: &Array2<f64>,
        dx: &Array2<f64>,
        gy: &mut Array2<f64>,
        gx: &mut Array2<f64>,
    ) {
        for (a, g) in [(dy, gy), (dx, gx)] {
            if self.bending {
                let mut l = Array2::<f64>::zeros(a.raw_dim());
                add_neg_laplacian(a, &mut l, 1.0);
                add_neg_laplacian(&l, g, self.lam_h2);
            } else {
                add_neg_laplacian(a, g, self.lam_h2);
            }
        }
    }

    /// Energy, NCC and the mean data curvature per pixel (Gauss–Newton, `|∇T|²/2/‖a‖²`);
    /// with `g`, also the L² gradient `(R̂ − NCC·â)/‖a‖·∇T(p − d)` plus the regulariser's.
    ///
    /// Known bias (not corrected): the norm `‖a‖` of the interpolated template includes its
    /// noise, which the interpolation smooths more between pixel centres than at them, so on
    /// low-dose frames the energy slightly favours half-pixel displacements. Freezing the norm
    /// removes that bias but makes the data term reward moving bright template pixels onto the
    /// reference's bright pixels when the prior is weak, so it was not adopted.
    pub(crate) fn evaluate(
        &self,
        dy: &Array2<f64>,
        dx: &Array2<f64>,
        s: &mut Samples,
        g: Option<(&mut Array2<f64>, &mut Array2<f64>)>,
    ) -> (f64, f64, f64) {
        self.sample_all(dy, dx, s, g.is_some());
        let (mut st, mut stt, mut str_, mut cnt) = (0.0, 0.0, 0.0, 0.0);
        Zip::from(&s.t)
            .and(&self.r_hat)
            .and(&self.mask)
            .for_each(|&t, &r, &m| {
                if m {
                    st += t;
                    stt += t * t;
                    str_ += t * r;
                    cnt += 1.0;
                }
            });
        let mean = st / cnt;
        let norm = (stt - cnt * mean * mean).max(0.0).sqrt();
        let ncc = if norm > 0.0 { str_ / norm } else { 0.0 };
        let energy = -ncc + self.regulariser(dy, dx);
        let ninv = if norm > 0.0 { 1.0 / norm } else { 0.0 };
        let mut curvature = 0.0;
        if let Some((gy, gx)) = g {
            let mut csum = 0.0;
            Zip::indexed(&mut *gy)
                .and(&mut *gx)
                .for_each(|(i, j), oy, ox| {
                    if self.mask[[i, j]] {
                        let w = (self.r_hat[[i, j]] - ncc * (s.t[[i, j]] - mean) * ninv) * ninv;
                        let (ty, tx) = (s.gy[[i, j]], s.gx[[i, j]]);
                        *oy = w * ty;
                        *ox = w * tx;
                        csum += 0.5 * (ty * ty + tx * tx);
                    } else {
                        *oy = 0.0;
                        *ox = 0.0;
                    }
                });
            curvature = csum * ninv * ninv / (dy.len() as f64);
            self.add_regulariser_gradient(dy, dx, gy, gx);
        }
        (energy, ncc, curvature)
    }

    /// Minimises the energy from `(dy, dx)` in place; returns (energy, NCC, iterations).
    fn minimise(
        &self,
        dy: &mut Array2<f64>,
        dx: &mut Array2<f64>,
        config: &NonRigidConfig,
        fft: &Fft2<f32>,
    ) -> Result<(f64, f64, usize)> {
        let shape = dy.raw_dim();
        let zeros = || Array2::<f64>::zeros(shape);
        let mut s = Samples {
            t: zeros(),
            gy: zeros(),
            gx: zeros(),
        };
        let (mut gy, mut gx) = (zeros(), zeros());
        let (mut e, mut ncc, curv) = self.evaluate(dy, dx, &mut s, Some((&mut gy, &mut gx)));
        if curv <= 0.0 {
            return Ok((e, ncc, 0));
        }
        let sigma = config.preconditioner_scale * self.lam_h2 / curv;
        let metric = H1Metric {
            fft,
            sigma: if self.bending { 0.0 } else { sigma },
            sigma2: if self.bending { sigma } else { 0.0 },
            shape: [shape[0], shape[1]],
        };
        let mut buf = Array2::<Complex<f32>>::zeros((2 * shape[0], 2 * shape[1]));
        let (mut py, mut px) = (gy.clone(), gx.clone());
        metric.solve_with(&mut py, &mut px, &mut buf)?;
        let scale = 1.0 / curv;
        py.mapv_inplace(|v| v * scale);
        px.mapv_inplace(|v| v * scale);
        let (mut diry, mut dirx) = (py.mapv(|v| -v), px.mapv(|v| -v));
        let mut gp_old = dot2(&gy, &gx, &py, &px);
        let (mut ty, mut tx) = (zeros(), zeros());
        let mut step = 1.0f64;
        let mut it = 0;
        while it < config.max_iterations {
            it += 1;
            let mut slope = dot2(&gy, &gx, &diry, &dirx);
            if slope >= 0.0 {
                // not a descent direction: restart with the preconditioned gradient
                diry.assign(&py.mapv(|v| -v));
                dirx.assign(&px.mapv(|v| -v));
                slope = -gp_old;
                if slope >= 0.0 {
                    break;
                }
            }
            let dmax = diry
                .iter()
                .chain(dirx.iter())
                .fold(0.0f64, |m, v| m.max(v.abs()));
            if dmax <= 0.0 {
                break;
            }
            let mut t = (step * 2.0).min(1.0).min(config.max_step_px / dmax);
            let mut accepted = None;
            for _ in 0..30 {
                Zip::from(&mut ty)
                    .and(&*dy)
                    .and(&diry)
                    .for_each(|o, &a, &b| *o = a + t * b);
                Zip::from(&mut tx)
                    .and(&*dx)
                    .and(&dirx)
                    .for_each(|o, &a, &b| *o = a + t * b);
                let (et, _, _) = self.evaluate(&ty, &tx, &mut s, None);
                if et <= e + 1e-4 * t * slope {
                    accepted = Some(et);
                    break;
                }
                t *= 0.5;
            }
            let Some(e_new) = accepted else {
                break;
            };
            step = t;
            std::mem::swap(dy, &mut ty);
            std::mem::swap(dx, &mut tx);
            let e_old = e;
            let (e2, ncc2, _) = self.evaluate(dy, dx, &mut s, Some((&mut gy, &mut gx)));
            debug_assert!((e2 - e_new).abs() <= 1e-9 * e_new.abs().max(1.0));
            e = e2;
            ncc = ncc2;
            let change = t * dmax;
            if e_old - e < config.stop_epsilon * e_old.abs() || change < 1e-3 {
                break;
            }
            // preconditioned gradient and Polak–Ribière+ direction
            let (py_old, px_old) = (py.clone(), px.clone());
            py.assign(&gy);
            px.assign(&gx);
            metric.solve_with(&mut py, &mut px, &mut buf)?;
            py.mapv_inplace(|v| v * scale);
            px.mapv_inplace(|v| v * scale);
            let gp = dot2(&gy, &gx, &py, &px);
            let cross = dot2(&gy, &gx, &py_old, &px_old);
            let beta = if gp_old > 0.0 {
                ((gp - cross) / gp_old).max(0.0)
            } else {
                0.0
            };
            gp_old = gp;
            Zip::from(&mut diry)
                .and(&py)
                .for_each(|d, &p| *d = -p + beta * *d);
            Zip::from(&mut dirx)
                .and(&px)
                .for_each(|d, &p| *d = -p + beta * *d);
        }
        Ok((e, ncc, it))
    }
}

fn dot2(a: &Array2<f64>, b: &Array2<f64>, c: &Array2<f64>, d: &Array2<f64>) -> f64 {
    Zip::from(a).and(c).fold(0.0, |s, &x, &y| s + x * y)
        + Zip::from(b).and(d).fold(0.0, |s, &x, &y| s + x * y)
}

/// `Σ` of squared forward differences along both axes (free boundaries).
fn dirichlet(a: &Array2<f64>) -> f64 {
    let (ny, nx) = a.dim();
    let mut s = 0.0;
    for i in 0..ny {
        for j in 0..nx {
            let v = a[[i, j]];
            if i + 1 < ny {
                s += (a[[i + 1, j]] - v).powi(2);
            }
            if j + 1 < nx {
                s += (a[[i, j + 1]] - v).powi(2);
            }
        }
    }
    s
}

/// `out += c·(−Δ_N a)`: the gradient of `(c/2)·dirichlet(a)` (graph Laplacian, free ends).
fn add_neg_laplacian(a: &Array2<f64>, out: &mut Array2<f64>, c: f64) {
    let (ny, nx) = a.dim();
    for i in 0..ny {
        for j in 0..nx {
            let v = a[[i, j]];
            let mut acc = 0.0;
            if i > 0 {
                acc += v - a[[i - 1, j]];
            }
            if i + 1 < ny {
                acc += v - a[[i + 1, j]];
            }
            if j > 0 {
                acc += v - a[[i, j - 1]];
            }
            if j + 1 < nx {
                acc += v - a[[i, j + 1]];
            }
            out[[i, j]] += c * acc;
        }
    }
}

/// Keys cubic sample of `img` at `(y, x)` (inside `[0, n−1]`): value and, with `grad`, the
/// derivatives d/dy and d/dx. Taps outside the image replicate the edge.
#[inline]
fn sample_cubic(img: &ArrayView2<'_, f32>, y: f64, x: f64, grad: bool) -> (f64, f64, f64) {
    let (ny, nx) = img.dim();
    let (y0, x0) = (y.floor(), x.floor());
    let (wy, dwy) = keys(y - y0);
    let (wx, dwx) = keys(x - x0);
    let (y0, x0) = (y0 as isize, x0 as isize);
    let interior = y0 >= 1 && x0 >= 1 && y0 + 2 < ny as isize && x0 + 2 < nx as isize;
    let mut cols = [0usize; 4];
    for b in 0..4 {
        cols[b] = if interior {
            (x0 + b as isize - 1) as usize
        } else {
            clamp_index(x0 + b as isize - 1, nx)
        };
    }
    let (mut v, mut gy, mut gx) = (0.0, 0.0, 0.0);
    for a in 0..4 {
        let row = img.row(clamp_index(y0 + a as isize - 1, ny));
        let (mut r, mut rd) = (0.0, 0.0);
        for b in 0..4 {
            let p = f64::from(row[cols[b]]);
            r += wx[b] * p;
            if grad {
                rd += dwx[b] * p;
            }
        }
        v += wy[a] * r;
        if grad {
            gy += dwy[a] * r;
            gx += wy[a] * rd;
        }
    }
    (v, gy, gx)
}

/// The H¹ metric `(I − σΔ_N)` on a `[ny, nx]` grid with the 5-point Neumann (free-boundary)
/// Laplacian, inverted exactly: the mirror extension to `[2ny, 2nx]` is periodic, where the
/// Laplacian is diagonal in Fourier space with eigenvalues
/// `−(4 sin²(πk_y/2ny) + 4 sin²(πk_x/2nx))`. Both components of a field go through one complex
/// FFT (as real and imaginary parts).
pub struct H1Metric<'a> {
    fft: &'a Fft2<f32>,
    sigma: f64,
    sigma2: f64,
    shape: [usize; 2],
}

impl<'a> H1Metric<'a> {
    /// A metric of width `sigma` (px², ≥ 0) on grids of `shape`, using a plan `fft` of shape
    /// `[2ny, 2nx]`.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when the plan's shape is not `[2ny, 2nx]`;
    /// [`Error::InvalidParameter`] for a negative or non-finite `sigma`.
    pub fn new(fft: &'a Fft2<f32>, shape: [usize; 2], sigma: f64) -> Result<Self> {
        if fft.shape() != [2 * shape[0], 2 * shape[1]] {
            return Err(Error::ShapeMismatch {
                expected: vec![2 * shape[0], 2 * shape[1]],
                found: fft.shape().to_vec(),
            });
        }
        if !(sigma.is_finite() && sigma >= 0.0) {
            return Err(Error::invalid(
                "sigma",
                format!("must be finite and >= 0, got {sigma}"),
            ));
        }
        Ok(H1Metric {
            fft,
            sigma,
            sigma2: 0.0,
            shape,
        })
    }

    /// The bending metric `(I + σ₂Δ_N²)` instead (the preconditioner of
    /// [`Regularizer::Bending`]), σ₂ in px⁴, ≥ 0.
    ///
    /// # Errors
    /// As [`H1Metric::new`].
    pub fn bending(fft: &'a Fft2<f32>, shape: [usize; 2], sigma2: f64) -> Result<Self> {
        let mut m = Self::new(fft, shape, sigma2)?;
        m.sigma = 0.0;
        m.sigma2 = sigma2;
        Ok(m)
    }

    /// Solves `(I − σΔ_N) p = g` for both components in place (`gy`, `gx` of the metric's
    /// shape).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] for arrays of another shape.
    pub fn solve(&self, gy: &mut Array2<f64>, gx: &mut Array2<f64>) -> Result<()> {
        let mut buf = Array2::<Complex<f32>>::zeros((2 * self.shape[0], 2 * self.shape[1]));
        self.solve_with(gy, gx, &mut buf)
    }

    fn solve_with(
        &self,
        gy: &mut Array2<f64>,
        gx: &mut Array2<f64>,
        buf: &mut Array2<Complex<f32>>,
    ) -> Result<()> {
        let [ny, nx] = self.shape;
        for a in [&*gy, &*gx] {
            if a.dim() != (ny, nx) {
                return Err(Error::ShapeMismatch {
                    expected: vec![ny, nx],
                    found: a.shape().to_vec(),
                });
            }
        }
        let mirror = |k: usize, n: usize| if k < n { k } else { 2 * n - 1 - k };
        for ((i, j), v) in buf.indexed_iter_mut() {
            let (a, b) = (mirror(i, ny), mirror(j, nx));
            *v = Complex::new(gy[[a, b]] as f32, gx[[a, b]] as f32);
        }
        self.fft.forward(buf).map_err(crate::error::from_core)?;
        let eig = |n: usize| -> Vec<f64> {
            (0..2 * n)
                .map(|k| {
                    let s = (std::f64::consts::PI * k as f64 / (2 * n) as f64).sin();
                    4.0 * s * s
                })
                .collect()
        };
        let (ey, ex) = (eig(ny), eig(nx));
        for ((i, j), v) in buf.indexed_iter_mut() {
            let e = ey[i] + ex[j];
            *v *= (1.0 / (1.0 + self.sigma * e + self.sigma2 * e * e)) as f32;
        }
        self.fft.inverse(buf).map_err(crate::error::from_core)?;
        for i in 0..ny {
            for j in 0..nx {
                let v = buf[[i, j]];
                gy[[i, j]] = f64::from(v.re);
                gx[[i, j]] = f64::from(v.im);
            }
        }
        Ok(())
    }
}

/// Bias removal for dense fields: with `m(p)` the mean field over the frames and `m̄` its
/// spatial mean, every field becomes `d'_k(p) = d_k(p + c(p)) − c(p)`, `c = m − m̄` (two
/// fixed-point rounds). This moves the reference coordinates into the frames' mean geometry
/// (match-series' `reduceDeformations`, to second order in the displacements) and keeps the
/// constant gauge `m̄`.
///
/// # Errors
/// [`Error::ShapeMismatch`] when the fields differ in shape; [`Error::TooFewFrames`] for none.
pub fn remove_mean_field(fields: &mut [DisplacementField]) -> Result<()> {
    if fields.is_empty() {
        return Err(Error::TooFewFrames { min: 1, found: 0 });
    }
    let shape = fields[0].shape();
    for f in fields.iter() {
        if f.shape() != shape {
            return Err(Error::ShapeMismatch {
                expected: shape.to_vec(),
                found: f.shape().to_vec(),
            });
        }
    }
    let n = fields.len() as f64;
    for _ in 0..2 {
        let mut my = Array2::<f64>::zeros(shape);
        let mut mx = Array2::<f64>::zeros(shape);
        for f in fields.iter() {
            Zip::from(&mut my)
                .and(&f.dy)
                .for_each(|m, &v| *m += f64::from(v) / n);
            Zip::from(&mut mx)
                .and(&f.dx)
                .for_each(|m, &v| *m += f64::from(v) / n);
        }
        let (bar_y, bar_x) = (my.mean().unwrap_or(0.0), mx.mean().unwrap_or(0.0));
        my.mapv_inplace(|v| v - bar_y);
        mx.mapv_inplace(|v| v - bar_x);
        for f in fields.iter_mut() {
            let fy = f.dy.mapv(f64::from);
            let fx = f.dx.mapv(f64::from);
            Zip::indexed(&mut f.dy)
                .and(&mut f.dx)
                .for_each(|(i, j), oy, ox| {
                    let (cy, cx) = (my[[i, j]], mx[[i, j]]);
                    let (y, x) = (i as f64 + cy, j as f64 + cx);
                    *oy = (bilinear_f64(&fy, y, x) - cy) as f32;
                    *ox = (bilinear_f64(&fx, y, x) - cx) as f32;
                });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
