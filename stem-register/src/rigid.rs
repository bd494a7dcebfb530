//! Rigid (translation) registration: cross-correlation of Gaussian-smoothed images with the
//! upsampled-DFT sub-pixel refinement of Guizar-Sicairos, Thurman & Fienup, Opt. Lett. 33(2)
//! 156 (2008), and series alignment against an evolving (leave-one-out) reference.
//!
//! Shift convention (ARCHITECTURE.md): a [`Shift`] is how far the **moving** image must move to
//! land on the reference, `[dy, dx]` in pixels: if `moving(p) = reference(p + Δ)` the result is
//! `+Δ`, and `moving` shifted by `Δ` (`out(p) = moving(p − Δ)`) equals `reference`.
//!
//! Method. Both images have their mean removed and are Fourier transformed; the spectra are
//! multiplied by the transfer function of a Gaussian of σ = `smoothing_sigma_px`,
//! `G(f) = exp(−2π²σ²|f|²)` (f in cycles/px). The cross-power spectrum
//! `C(k) = F_ref(k)·conj(F_mov(k))` (optionally normalised to unit modulus, "phase
//! correlation") is inverse transformed; its largest value (within `max_shift_px` when given)
//! is the integer shift. The correlation is then evaluated on a grid of `⌈1.5κ⌉²` points with
//! spacing `1/κ` px around that peak by two small matrix products (the band-limited
//! interpolation of the correlation, computed only where `G` is not negligible), and a
//! 3-point parabola through the grid maximum in y and in x gives the final sub-sample position.
//!
//! Defaults encode the cures for the peers' traps (peer-benchmarks.md §4): plain (not phase)
//! normalisation, which stays accurate at 10 counts/px where phase normalisation is 8× worse
//! and breaks with smoothing; Gaussian pre-smoothing σ = 2 px (about the atom-column σ), which
//! removes the white Poisson noise that makes unsmoothed correlation lock onto a wrong lattice
//! translate; upsampling 20; and, for series, frame-to-first alignment (optionally followed by
//! passes against a leave-one-out evolving reference searched only near the previous
//! estimate), instead of aligning to a blurred initial mean.
//!
//! ```
//! use ndarray::Array2;
//! use stem_register::rigid::{PhaseCorrelation, PhaseCorrelationConfig};
//! use stem_core::ImageView;
//!
//! // A smooth blob pattern and a copy moved by (+2.3, −1.6) px.
//! let f = |y: f64, x: f64| ((y * 0.31).sin() + (x * 0.23).cos() + (0.11 * (x + y)).sin()) as f32;
//! let reference = Array2::from_shape_fn((64, 64), |(i, j)| f(i as f64, j as f64));
//! let moving = Array2::from_shape_fn((64, 64), |(i, j)| f(i as f64 - 2.3, j as f64 + 1.6));
//! let pc = PhaseCorrelation::new(PhaseCorrelationConfig::default(), [64, 64]).unwrap();
//! let s = pc.run(ImageView::from(&reference), ImageView::from(&moving)).unwrap();
//! // moving must move by (−2.3, +1.6) to land on the reference (edges wrap, so not exact).
//! assert!((s.shift[0] + 2.3).abs() < 0.15 && (s.shift[1] - 1.6).abs() < 0.15);
//! ```

use crate::error::{Error, Result, check_cancel, check_finite};
use ndarray::{Array2, ArrayView3, Axis};
use num_complex::Complex;
use rayon::prelude::*;
use stem_core::fft::{Fft2, fftfreq};
use stem_core::{ImageView, Parallelism, Progress};

/// How the cross-power spectrum is normalised.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Normalization {
    /// Plain cross-correlation `F_ref·conj(F_mov)` (default; robust at low dose).
    #[default]
    None,
    /// Phase correlation `C/|C|` (scikit-image's default). Sharp peak, but amplifies noise:
    /// 8× worse than `None` on 10 counts/px frames, and it fails with pre-smoothing.
    Phase,
}

/// Settings of [`PhaseCorrelation`].
#[derive(Clone, Debug, PartialEq)]
pub struct PhaseCorrelationConfig {
    /// Upsampling factor κ of the sub-pixel search (grid spacing `1/κ` px before the final
    /// parabola). ≥ 1; 1 returns the integer peak. Default 20.
    pub upsample: usize,
    /// σ (px) of the Gaussian pre-smoothing applied to both images in Fourier space; 0 turns it
    /// off. Finite and ≥ 0. Default 2 (about the σ of an atom column).
    pub smoothing_sigma_px: f64,
    /// Normalisation of the cross-power spectrum. Default [`Normalization::None`].
    pub normalization: Normalization,
    /// Largest accepted |dy| and |dx| (px) of the integer peak search, e.g. below half a lattice
    /// constant for a perfect lattice; `None` searches all circular shifts. Finite, > 0.
    /// Default `None`.
    pub max_shift_px: Option<f64>,
    /// Lattice-translate check: how many of the largest local maxima of the circular
    /// correlation (those ≥ half the largest) are re-scored by the normalised cross-correlation
    /// of the smoothed images over their **overlap** only (no wrap-around), the integer shift
    /// being the best re-scored one. 0 or 1 turns the check off (the largest circular value
    /// wins). Default 16.
    ///
    /// Why: on a periodic lattice every lattice translate of the true shift is a correlation
    /// peak, and the circular correlation weights each by how much of the frame matches without
    /// wrapping, about `(1 − |Δy|/ny)(1 − |Δx|/nx)`; for a large true shift, a translate closer
    /// to zero can outscore it when the aperiodic features that identify the shift (a defect,
    /// an amorphous region) cover only a few % of the frame. The overlap NCC has no such
    /// weighting, so those features decide: the best-scoring translate replaces the circular
    /// maximum only if it is an outlier, above every other candidate by more than
    /// [`OVERLAP_NCC_MARGIN`]. On a perfect lattice all translates score alike (the shift is
    /// not identifiable) and the circular maximum, the smallest drift, stays.
    pub overlap_candidates: usize,
}

/// Overlap-NCC margin of [`PhaseCorrelationConfig::overlap_candidates`]: the best lattice
/// translate must beat every other candidate's overlap NCC by more than this. Measured on the
/// registration series (`tests/src/series.rs`, 10 counts/px, 128²–512², σ = 2 px): on perfect
/// lattices (no identifiable shift) the best two translates differ by 0.0005–0.014 (row jitter
/// makes some translates match slightly better); with the amorphous disc (4 % of the frame)
/// the true shift leads by 0.051–0.10. 0.03 lies between the two.
pub const OVERLAP_NCC_MARGIN: f64 = 0.03;

impl Default for PhaseCorrelationConfig {
    fn default() -> Self {
        PhaseCorrelationConfig {
            upsample: 20,
            smoothing_sigma_px: 2.0,
            normalization: Normalization::None,
            max_shift_px: None,
            overlap_candidates: 16,
        }
    }
}

impl PhaseCorrelationConfig {
    fn validate(&self) -> Result<()> {
        if self.upsample == 0 {
            return Err(Error::invalid("upsample", "must be >= 1, got 0"));
        }
        if self.upsample > 10_000 {
            return Err(Error::invalid(
                "upsample",
                format!("must be <= 10000, got {}", self.upsample),
            ));
        }
        if !(self.smoothing_sigma_px.is_finite() && self.smoothing_sigma_px >= 0.0) {
            return Err(Error::invalid(
                "smoothing_sigma_px",
                format!("must be finite and >= 0, got {}", self.smoothing_sigma_px),
            ));
        }
        if let Some(m) = self.max_shift_px
            && !(m.is_finite() && m > 0.0)
        {
            return Err(Error::invalid(
                "max_shift_px",
                format!("must be finite and > 0, got {m}"),
            ));
        }
        Ok(())
    }
}

/// The result of one registration.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Shift {
    /// `[dy, dx]` (px): how far the moving image must move to land on the reference.
    pub shift: [f64; 2],
    /// Circular normalised cross-correlation of the (smoothed, mean-free) images at `shift`,
    /// in [−1, 1] for [`Normalization::None`]; for [`Normalization::Phase`] the peak height of
    /// the phase correlation (1 for identical images).
    pub peak: f64,
}

/// The smoothed, mean-free spectrum of one image, ready for [`PhaseCorrelation::register_spectra`].
#[derive(Clone, Debug)]
pub struct Spectrum {
    data: Array2<Complex<f32>>,
    energy: f64,
    /// The smoothed, mean-free image (real space) for the lattice-translate check; `None` when
    /// the check is off or for references built in Fourier space.
    smoothed: Option<Array2<f32>>,
}

impl Spectrum {
    /// The spectrum `[ky, kx]` (unshifted, numpy order), after smoothing.
    pub fn data(&self) -> &Array2<Complex<f32>> {
        &self.data
    }
}

/// A validated [`PhaseCorrelationConfig`] with the FFT plan and smoothing filter for one image
/// shape; reusable and `Sync` (one instance can serve many threads).
#[derive(Clone, Debug)]
pub struct PhaseCorrelation {
    config: PhaseCorrelationConfig,
    shape: [usize; 2],
    fft: Fft2<f32>,
    freq: [Vec<f64>; 2],
    filter: [Vec<f32>; 2],
    band: [Vec<usize>; 2],
}

impl PhaseCorrelation {
    /// Validates `config` and plans transforms for images of shape `[ny, nx]` (any sizes).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for an invalid field; [`Error::TooSmall`] if a side is < 4.
    pub fn new(config: PhaseCorrelationConfig, shape: [usize; 2]) -> Result<Self> {
        config.validate()?;
        if shape[0] < 4 || shape[1] < 4 {
            return Err(Error::TooSmall {
                shape,
                reason: "phase correlation needs at least 4 px per side".into(),
            });
        }
        let fft = Fft2::new(shape)?;
        let sigma = config.smoothing_sigma_px;
        let freq = [fftfreq(shape[0], 1.0), fftfreq(shape[1], 1.0)];
        let filter = freq.clone().map(|f| {
            f.iter()
                .map(|&v| {
                    (-2.0 * std::f64::consts::PI.powi(2) * sigma * sigma * v * v).exp() as f32
                })
                .collect::<Vec<f32>>()
        });
        // Frequencies where the squared filter (the cross-power spectrum scales with G²) is
        // above 1e-5 of its peak: outside this band the correlation has no content.
        let band = filter.clone().map(|g| {
            g.iter()
                .enumerate()
                .filter(|(_, v)| f64::from(**v).powi(2) >= 1e-5)
                .map(|(i, _)| i)
                .collect::<Vec<usize>>()
        });
        Ok(PhaseCorrelation {
            config,
            shape,
            fft,
            freq,
            filter,
            band,
        })
    }

    /// The validated configuration.
    pub fn config(&self) -> &PhaseCorrelationConfig {
        &self.config
    }

    /// The image shape `[ny, nx]` this instance was planned for.
    pub fn shape(&self) -> [usize; 2] {
        self.shape
    }

    /// The mean-free, smoothed spectrum of `image` (compute once per frame and reuse).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] for a wrong shape, [`Error::NonFinite`] for NaN/∞ pixels.
    pub fn spectrum(&self, image: ImageView<'_, f32>) -> Result<Spectrum> {
        let data = image.data();
        if image.shape() != self.shape {
            return Err(Error::ShapeMismatch {
                expected: self.shape.to_vec(),
                found: image.shape().to_vec(),
            });
        }
        check_finite("image", data.iter())?;
        let mean = data.iter().map(|&v| f64::from(v)).sum::<f64>() / data.len() as f64;
        let mut spec = data.mapv(|v| Complex::new((f64::from(v) - mean) as f32, 0.0));
        self.fft.forward(&mut spec)?;
        let mut energy = 0.0;
        for ((i, j), v) in spec.indexed_iter_mut() {
            *v *= self.filter[0][i] * self.filter[1][j];
            energy += f64::from(v.norm_sqr());
        }
        let smoothed = if self.check_translates() {
            let mut z = spec.clone();
            self.fft.inverse(&mut z)?;
            Some(z.mapv(|v| v.re))
        } else {
            None
        };
        Ok(Spectrum {
            data: spec,
            energy,
            smoothed,
        })
    }

    /// The spectra of two images from one complex FFT (`z = a + i·b`;
    /// `A(k) = (Z(k) + Z*(−k))/2`, `B(k) = (Z(k) − Z*(−k))/2i`): half the cost of two calls to
    /// [`spectrum`](Self::spectrum), same result up to rounding.
    ///
    /// # Errors
    /// As [`spectrum`](Self::spectrum).
    pub fn spectrum_pair(
        &self,
        a: ImageView<'_, f32>,
        b: ImageView<'_, f32>,
    ) -> Result<(Spectrum, Spectrum)> {
        for shape in [a.shape(), b.shape()] {
            if shape != self.shape {
                return Err(Error::ShapeMismatch {
                    expected: self.shape.to_vec(),
                    found: shape.to_vec(),
                });
            }
        }
        check_finite("image", a.data().iter())?;
        check_finite("image", b.data().iter())?;
        let mean = |d: &ndarray::ArrayView2<'_, f32>| {
            d.iter().map(|&v| f64::from(v)).sum::<f64>() / d.len() as f64
        };
        let (da, db) = (a.data(), b.data());
        let (ma, mb) = (mean(&da), mean(&db));
        let mut z = ndarray::Zip::from(&da).and(&db).map_collect(|&x, &y| {
            Complex::new((f64::from(x) - ma) as f32, (f64::from(y) - mb) as f32)
        });
        self.fft.forward(&mut z)?;
        let [ny, nx] = self.shape;
        let mut sa = Array2::<Complex<f32>>::zeros((ny, nx));
        let mut sb = Array2::<Complex<f32>>::zeros((ny, nx));
        let (mut ea, mut eb) = (0.0, 0.0);
        for i in 0..ny {
            let ni = (ny - i) % ny;
            for j in 0..nx {
                let nj = (nx - j) % nx;
                let zk = z[[i, j]];
                let zc = z[[ni, nj]].conj();
                let g = self.filter[0][i] * self.filter[1][j];
                let va = (zk + zc) * (0.5 * g);
                let d = zk - zc;
                // (d)/(2i) = (d.im − i·d.re)/2
                let vb = Complex::new(d.im, -d.re) * (0.5 * g);
                ea += f64::from(va.norm_sqr());
                eb += f64::from(vb.norm_sqr());
                sa[[i, j]] = va;
                sb[[i, j]] = vb;
            }
        }
        // both smoothed images from one inverse FFT of the filtered z (G is real and even)
        let (sma, smb) = if self.check_translates() {
            for ((i, j), v) in z.indexed_iter_mut() {
                *v *= self.filter[0][i] * self.filter[1][j];
            }
            self.fft.inverse(&mut z)?;
            (Some(z.mapv(|v| v.re)), Some(z.mapv(|v| v.im)))
        } else {
            (None, None)
        };
        Ok((
            Spectrum {
                data: sa,
                energy: ea,
                smoothed: sma,
            },
            Spectrum {
                data: sb,
                energy: eb,
                smoothed: smb,
            },
        ))
    }

    /// Registers two moving spectra onto one reference with one complex inverse FFT (both
    /// correlations are real: `IFFT(C₁ + i·C₂) = cc₁ + i·cc₂`), then refines each.
    ///
    /// # Errors
    /// Only from the FFT plan (shape mismatch cannot happen with spectra from this instance).
    pub fn register_spectra_pair(
        &self,
        reference: &Spectrum,
        moving1: &Spectrum,
        moving2: &Spectrum,
    ) -> Result<(Shift, Shift)> {
        let c1 = self.cross_power(reference, moving1);
        let c2 = self.cross_power(reference, moving2);
        let mut cc = ndarray::Zip::from(&c1)
            .and(&c2)
            .map_collect(|&a, &b| a + Complex::new(-b.im, b.re));
        self.fft.inverse(&mut cc)?;
        let p1 = self.integer_peak(&cc.mapv(|v| v.re), reference, moving1);
        let p2 = self.integer_peak(&cc.mapv(|v| v.im), reference, moving2);
        Ok((
            self.refine(&c1, p1, reference, moving1),
            self.refine(&c2, p2, reference, moving2),
        ))
    }

    /// Whether the lattice-translate check runs (and spectra keep their smoothed images).
    fn check_translates(&self) -> bool {
        self.config.overlap_candidates > 1
    }

    /// The integer shift of the circular correlation `cc[y, x]` (numpy order): its largest
    /// value within `max_shift_px`, or, with the lattice-translate check, the best of the
    /// largest local maxima by overlap NCC (see
    /// [`PhaseCorrelationConfig::overlap_candidates`]).
    fn integer_peak(&self, cc: &Array2<f32>, reference: &Spectrum, moving: &Spectrum) -> [f64; 2] {
        let [ny, nx] = self.shape;
        let limit = self.config.max_shift_px.unwrap_or(f64::INFINITY);
        let inside =
            |i: usize, j: usize| signed(i, ny).abs() <= limit && signed(j, nx).abs() <= limit;
        let mut best = (f32::NEG_INFINITY, (0usize, 0usize));
        for ((i, j), &v) in cc.indexed_iter() {
            if inside(i, j) && v > best.0 {
                best = (v, (i, j));
            }
        }
        let at = |(i, j): (usize, usize)| [signed(i, ny), signed(j, nx)];
        let (Some(r), Some(m)) = (&reference.smoothed, &moving.smoothed) else {
            return at(best.1);
        };
        if !self.check_translates() || best.0.is_nan() || best.0 <= 0.0 {
            return at(best.1);
        }
        // overlap NCC of the candidates: the best replaces the circular maximum only if it is
        // an outlier, above every other translate by more than the margin (on a perfect
        // lattice all translates score alike and the smallest drift stays)
        let mut scored: Vec<(f64, (usize, usize))> =
            local_maxima(cc, 0.5 * best.0, self.config.overlap_candidates, inside)
                .into_iter()
                .map(|c| (overlap_ncc(r, m, at(c)), c))
                .collect();
        if scored.len() < 2 {
            return at(best.1);
        }
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        if scored[0].0 > scored[1].0 + OVERLAP_NCC_MARGIN {
            at(scored[0].1)
        } else {
            at(best.1)
        }
    }

    /// Registers `moving` onto `reference`.
    ///
    /// # Errors
    /// Those of [`spectrum`](Self::spectrum).
    pub fn run(&self, reference: ImageView<'_, f32>, moving: ImageView<'_, f32>) -> Result<Shift> {
        let r = self.spectrum(reference)?;
        let m = self.spectrum(moving)?;
        self.register_spectra(&r, &m)
    }

    /// Registers two precomputed spectra: integer peak of the full inverse transform (within
    /// `max_shift_px`), then the upsampled-DFT refinement.
    pub fn register_spectra(&self, reference: &Spectrum, moving: &Spectrum) -> Result<Shift> {
        let cross = self.cross_power(reference, moving);
        let mut cc = cross.clone();
        self.fft.inverse(&mut cc)?;
        let peak = self.integer_peak(&cc.mapv(|v| v.re), reference, moving);
        Ok(self.refine(&cross, peak, reference, moving))
    }

    /// Registers two spectra searching only the integer shifts within `radius_px` of `guess`
    /// (evaluated by a direct DFT, no full inverse transform), then refines. Used against an
    /// evolving reference, where the previous estimate is known to be close.
    pub fn register_spectra_near(
        &self,
        reference: &Spectrum,
        moving: &Spectrum,
        guess: [f64; 2],
        radius_px: usize,
    ) -> Shift {
        let cross = self.cross_power(reference, moving);
        let r = radius_px as f64;
        let grid = |g: f64| -> Vec<f64> {
            (0..=2 * radius_px)
                .map(|k| g.round() - r + k as f64)
                .collect()
        };
        let (ys, xs) = (grid(guess[0]), grid(guess[1]));
        let vals = self.dft_grid(&cross, &ys, &xs);
        let (bi, bj) = argmax(&vals);
        self.refine(&cross, [ys[bi], xs[bj]], reference, moving)
    }

    fn cross_power(&self, reference: &Spectrum, moving: &Spectrum) -> Array2<Complex<f32>> {
        let mut c = &reference.data * &moving.data.mapv(|v| v.conj());
        if self.config.normalization == Normalization::Phase {
            let max = c.iter().map(|v| v.norm()).fold(0.0f32, f32::max);
            let eps = (max * 1e-12).max(f32::MIN_POSITIVE);
            c.mapv_inplace(|v| v / v.norm().max(eps));
        }
        c
    }

    /// Upsampled-DFT refinement around `centre` plus a final parabola; returns the shift and
    /// the normalised peak.
    fn refine(
        &self,
        cross: &Array2<Complex<f32>>,
        centre: [f64; 2],
        reference: &Spectrum,
        moving: &Spectrum,
    ) -> Shift {
        let k = self.config.upsample;
        let (shift, value) = if k == 1 {
            let v = self.dft_grid(cross, &[centre[0]], &[centre[1]]);
            (centre, v[[0, 0]])
        } else {
            // Stage 1: a 1/4-px grid over ±0.75 px (skipped when κ ≤ 4); stage 2: the 1/κ grid
            // over ±1 coarse step around the stage-1 maximum; then a parabola. Equivalent to
            // one ⌈1.5κ⌉² grid whose maximum lies within the stage-1 window, at ~half the cost.
            let mut c = centre;
            let mut half_width = 0.75;
            if k > 4 {
                let g: Vec<f64> = (-3..=3).map(|i| f64::from(i) * 0.25).collect();
                let ys: Vec<f64> = g.iter().map(|d| c[0] + d).collect();
                let xs: Vec<f64> = g.iter().map(|d| c[1] + d).collect();
                let vals = self.dft_grid(cross, &ys, &xs);
                let (bi, bj) = argmax(&vals);
                c = [ys[bi], xs[bj]];
                half_width = 0.25;
            }
            let step = 1.0 / k as f64;
            let m = (half_width / step).ceil() as i64;
            let g: Vec<f64> = (-m..=m).map(|i| i as f64 * step).collect();
            let ys: Vec<f64> = g.iter().map(|d| c[0] + d).collect();
            let xs: Vec<f64> = g.iter().map(|d| c[1] + d).collect();
            let vals = self.dft_grid(cross, &ys, &xs);
            let (bi, bj) = argmax(&vals);
            let oy = parabola_offset(&vals, bi, bj, true);
            let ox = parabola_offset(&vals, bi, bj, false);
            ([ys[bi] + oy * step, xs[bj] + ox * step], vals[[bi, bj]])
        };
        let n = (self.shape[0] * self.shape[1]) as f64;
        let peak = match self.config.normalization {
            Normalization::None => {
                let denom = (reference.energy * moving.energy).sqrt();
                if denom > 0.0 { value * n / denom } else { 0.0 }
            }
            Normalization::Phase => value,
        };
        Shift { shift, peak }
    }

    /// Real part of the inverse DFT of `cross` at the (fractional) shifts `ys × xs`:
    /// `cc(y, x) = (1/N) Σ_k C(k) exp(2πi (f_y·y + f_x·x))`, summed over the filter band only,
    /// as two small matrix products (Guizar-Sicairos et al. 2008).
    fn dft_grid(&self, cross: &Array2<Complex<f32>>, ys: &[f64], xs: &[f64]) -> Array2<f64> {
        use std::f64::consts::PI;
        let (by, bx) = (&self.band[0], &self.band[1]);
        let (nbx, nxs) = (bx.len(), xs.len());
        // ex[j][b] = e^{2πi fx_b x_j}, split into re/im for vectorisable loops
        let mut ex_re = vec![0.0f64; nxs * nbx];
        let mut ex_im = vec![0.0f64; nxs * nbx];
        for (j, &x) in xs.iter().enumerate() {
            for (b, &kx) in bx.iter().enumerate() {
                let (sn, cs) = (2.0 * PI * self.freq[1][kx] * x).sin_cos();
                ex_re[j * nbx + b] = cs;
                ex_im[j * nbx + b] = sn;
            }
        }
        let mut c_re = vec![0.0f64; nbx];
        let mut c_im = vec![0.0f64; nbx];
        // t[a][j] = Σ_kx C[ky_a, kx] e^{2πi fx x_j}
        let mut t = vec![Complex::new(0.0f64, 0.0); by.len() * nxs];
        for (a, &ky) in by.iter().enumerate() {
            let row = cross.index_axis(Axis(0), ky);
            for (b, &kx) in bx.iter().enumerate() {
                c_re[b] = f64::from(row[kx].re);
                c_im[b] = f64::from(row[kx].im);
            }
            for j in 0..nxs {
                let er = &ex_re[j * nbx..(j + 1) * nbx];
                let ei = &ex_im[j * nbx..(j + 1) * nbx];
                let (mut re, mut im) = (0.0, 0.0);
                for b in 0..nbx {
                    re += c_re[b] * er[b] - c_im[b] * ei[b];
                    im += c_re[b] * ei[b] + c_im[b] * er[b];
                }
                t[a * nxs + j] = Complex::new(re, im);
            }
        }
        let n = (self.shape[0] * self.shape[1]) as f64;
        let mut out = Array2::<f64>::zeros((ys.len(), nxs));
        for (i, &y) in ys.iter().enumerate() {
            for (a, &ky) in by.iter().enumerate() {
                let (sn, cs) = (2.0 * PI * self.freq[0][ky] * y).sin_cos();
                for j in 0..nxs {
                    let v = t[a * nxs + j];
                    out[[i, j]] += cs * v.re - sn * v.im;
                }
            }
        }
        out.mapv_inplace(|v| v / n);
        out
    }
}

/// Index `i` of an FFT axis of length `n` as a signed shift (`i > n/2` → `i − n`).
fn signed(i: usize, n: usize) -> f64 {
    if i > n / 2 {
        i as f64 - n as f64
    } else {
        i as f64
    }
}

/// The `k` largest circular local maxima (≥ their 8 neighbours, wrapping) of `cc` that are
/// ≥ `floor` and `inside`, largest first.
fn local_maxima(
    cc: &Array2<f32>,
    floor: f32,
    k: usize,
    inside: impl Fn(usize, usize) -> bool,
) -> Vec<(usize, usize)> {
    let (ny, nx) = cc.dim();
    let mut out: Vec<(f32, (usize, usize))> = Vec::new();
    for ((i, j), &v) in cc.indexed_iter() {
        if v < floor || !inside(i, j) {
            continue;
        }
        let mut is_max = true;
        'n: for di in [ny - 1, 0, 1] {
            for dj in [nx - 1, 0, 1] {
                if (di, dj) != (0, 0) && cc[[(i + di) % ny, (j + dj) % nx]] > v {
                    is_max = false;
                    break 'n;
                }
            }
        }
        if is_max {
            out.push((v, (i, j)));
        }
    }
    out.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    out.truncate(k);
    out.into_iter().map(|(_, p)| p).collect()
}

/// Pearson correlation of `reference(p + Δ)` and `moving(p)` over the pixels where both exist
/// (no wrap-around), `Δ = [dy, dx]` integer, on every second row and column (the images are
/// smoothed over ≥ 1 px, so the subsample loses little); −1 for an overlap below 2×2 samples.
fn overlap_ncc(reference: &Array2<f32>, moving: &Array2<f32>, d: [f64; 2]) -> f64 {
    let (ny, nx) = reference.dim();
    let (dy, dx) = (d[0] as i64, d[1] as i64);
    let (y0, y1) = ((-dy).max(0), (ny as i64 - dy).min(ny as i64));
    let (x0, x1) = ((-dx).max(0), (nx as i64 - dx).min(nx as i64));
    if y1 - y0 < 4 || x1 - x0 < 4 {
        return -1.0;
    }
    let (mut sr, mut sm, mut srr, mut smm, mut srm, mut n) = (0.0f64, 0.0, 0.0, 0.0, 0.0, 0.0);
    for y in (y0..y1).step_by(2) {
        let rr = reference.row((y + dy) as usize);
        let mr = moving.row(y as usize);
        let (mut a, mut b, mut aa, mut bb, mut ab) = (0.0f64, 0.0, 0.0, 0.0, 0.0);
        for x in (x0..x1).step_by(2) {
            let r = f64::from(rr[(x + dx) as usize]);
            let m = f64::from(mr[x as usize]);
            a += r;
            b += m;
            aa += r * r;
            bb += m * m;
            ab += r * m;
        }
        sr += a;
        sm += b;
        srr += aa;
        smm += bb;
        srm += ab;
        n += ((x1 - x0 + 1) / 2) as f64;
    }
    let cov = srm - sr * sm / n;
    let var = (srr - sr * sr / n) * (smm - sm * sm / n);
    if var > 0.0 { cov / var.sqrt() } else { -1.0 }
}

fn argmax(vals: &Array2<f64>) -> (usize, usize) {
    let mut best = (f64::NEG_INFINITY, (0, 0));
    for ((i, j), &v) in vals.indexed_iter() {
        if v > best.0 {
            best = (v, (i, j));
        }
    }
    best.1
}

/// Vertex offset (in grid steps, clipped to ±0.5) of the parabola through the maximum and its
/// two neighbours along one axis; 0 at the grid edge or without negative curvature.
fn parabola_offset(vals: &Array2<f64>, i: usize, j: usize, along_y: bool) -> f64 {
    let (n, idx) = if along_y {
        (vals.nrows(), i)
    } else {
        (vals.ncols(), j)
    };
    if idx == 0 || idx + 1 >= n {
        return 0.0;
    }
    let get = |d: isize| {
        let k = (idx as isize + d) as usize;
        if along_y { vals[[k, j]] } else { vals[[i, k]] }
    };
    let (a, b, c) = (get(-1), get(0), get(1));
    let curv = a - 2.0 * b + c;
    if curv >= 0.0 {
        return 0.0;
    }
    (0.5 * (a - c) / curv).clamp(-0.5, 0.5)
}

/// Settings of [`align_series_rigid`].
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesRigidConfig {
    /// The pairwise registration. Default [`PhaseCorrelationConfig::default`].
    pub correlation: PhaseCorrelationConfig,
    /// Passes against the evolving reference after the frame-to-first pass: each frame is
    /// registered to the mean of all *other* frames as currently aligned (built in Fourier space,
    /// exact circular shifts). 0 keeps the frame-to-first shifts. Default 0: on the reference
    /// series (peer-benchmarks.md §1.6) the passes did not help at 1, 3 or 10 counts/px
    /// (RMS error 0.056 → 0.058, 0.047 → 0.051, 0.046 → 0.049 px with one pass), because the
    /// remaining error comes from the frames' non-rigid distortion, not from noise in frame 0;
    /// they help when the first frame is much noisier or more distorted than the others.
    pub reference_iterations: usize,
    /// Integer search radius (px) around the previous estimate in the evolving-reference passes.
    /// Small, so that a pass cannot jump to another lattice translate. ≥ 1. Default 2.
    pub search_radius_px: usize,
    /// Threads (over frames). Results do not depend on it. Default [`Parallelism::Auto`].
    pub parallelism: Parallelism,
}

impl Default for SeriesRigidConfig {
    fn default() -> Self {
        SeriesRigidConfig {
            correlation: PhaseCorrelationConfig::default(),
            reference_iterations: 0,
            search_radius_px: 2,
            parallelism: Parallelism::Auto,
        }
    }
}

/// Rigid shifts of a series.
#[derive(Clone, Debug, PartialEq)]
pub struct RigidSeries {
    /// Per frame, `[dy, dx]` (px): how far frame k must move to land on frame 0's coordinates
    /// (`shifts[0] = [0, 0]`).
    pub shifts: Vec<[f64; 2]>,
    /// Per frame, the normalised correlation peak of the last pass (frame 0: against the mean of
    /// the others; 1 when there are no passes, for frame 0).
    pub peaks: Vec<f64>,
}

/// Aligns a series `frames[k, y, x]` rigidly: each frame to frame 0, then
/// `reference_iterations` passes against the leave-one-out mean of the aligned frames. The gauge
/// is frame 0 (its shift is 0).
///
/// Progress: stage "rigid", one unit per frame per pass; cancellable between frames.
///
/// # Errors
/// [`Error::TooFewFrames`] for fewer than 2 frames; [`Error::InvalidParameter`] for
/// `search_radius_px == 0`; those of [`PhaseCorrelation::new`] and
/// [`PhaseCorrelation::spectrum`]; [`Error::Cancelled`].
///
/// ```
/// use ndarray::Array3;
/// use stem_register::rigid::{align_series_rigid, SeriesRigidConfig};
/// use stem_core::NoProgress;
///
/// // three Gaussian blobs well inside the frame
/// let f = |y: f64, x: f64| {
///     [(20.0, 18.0), (30.0, 30.0), (15.0, 32.0)]
///         .iter()
///         .map(|(cy, cx)| (-((y - cy).powi(2) + (x - cx).powi(2)) / 18.0).exp())
///         .sum::<f64>() as f32
/// };
/// let shifts = [[0.0, 0.0], [1.25, -0.5], [-2.0, 3.75]];
/// let frames = Array3::from_shape_fn((3, 48, 48), |(k, i, j)| {
///     f(i as f64 + shifts[k][0], j as f64 + shifts[k][1])
/// });
/// let r = align_series_rigid(frames.view(), &SeriesRigidConfig::default(), &NoProgress).unwrap();
/// // frame k shows the pattern at p + s_k, so it must move by +s_k to land on frame 0
/// for k in 1..3 {
///     assert!((r.shifts[k][0] - shifts[k][0]).abs() < 0.05);
///     assert!((r.shifts[k][1] - shifts[k][1]).abs() < 0.05);
/// }
/// ```
pub fn align_series_rigid(
    frames: ArrayView3<'_, f32>,
    config: &SeriesRigidConfig,
    progress: &dyn Progress,
) -> Result<RigidSeries> {
    let n = frames.len_of(Axis(0));
    if n < 2 {
        return Err(Error::TooFewFrames { min: 2, found: n });
    }
    if config.search_radius_px == 0 {
        return Err(Error::invalid("search_radius_px", "must be >= 1, got 0"));
    }
    let shape = [frames.len_of(Axis(1)), frames.len_of(Axis(2))];
    let pc = PhaseCorrelation::new(config.correlation.clone(), shape)?;
    progress.start("rigid", (n * (2 + config.reference_iterations)) as u64);
    config.parallelism.install(|| -> Result<RigidSeries> {
        // spectra two at a time (one complex FFT per pair)
        let spectra: Vec<Spectrum> = (0..n.div_ceil(2))
            .into_par_iter()
            .map(|p| {
                check_cancel(progress)?;
                let a = ImageView::new(frames.index_axis(Axis(0), 2 * p));
                let out = if 2 * p + 1 < n {
                    let b = ImageView::new(frames.index_axis(Axis(0), 2 * p + 1));
                    let (sa, sb) = pc.spectrum_pair(a, b)?;
                    vec![sa, sb]
                } else {
                    vec![pc.spectrum(a)?]
                };
                progress.advance(out.len() as u64);
                Ok(out)
            })
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .flatten()
            .collect();
        // frame-to-first, two frames per inverse FFT
        let first: Vec<Shift> = (0..n / 2)
            .into_par_iter()
            .map(|p| {
                check_cancel(progress)?;
                let (k1, k2) = (2 * p + 1, 2 * p + 2);
                let out = if k2 < n {
                    let (a, b) =
                        pc.register_spectra_pair(&spectra[0], &spectra[k1], &spectra[k2])?;
                    vec![a, b]
                } else {
                    vec![pc.register_spectra(&spectra[0], &spectra[k1])?]
                };
                progress.advance(out.len() as u64);
                Ok(out)
            })
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .flatten()
            .collect();
        let first: Vec<Shift> = std::iter::once(Shift {
            shift: [0.0, 0.0],
            peak: 1.0,
        })
        .chain(first)
        .collect();
        let mut shifts: Vec<[f64; 2]> = first.iter().map(|s| s.shift).collect();
        let mut peaks: Vec<f64> = first.iter().map(|s| s.peak).collect();
        for _ in 0..config.reference_iterations {
            check_cancel(progress)?;
            // shifted_k(p) = frame_k(p − s_k)  ⇔  spectrum · exp(−2πi f·s_k)
            let shifted: Vec<Array2<Complex<f32>>> = (0..n)
                .into_par_iter()
                .map(|k| fourier_shift(&spectra[k].data, &pc.freq, shifts[k]))
                .collect();
            let mut sum = Array2::<Complex<f32>>::zeros(spectra[0].data.raw_dim());
            for s in &shifted {
                sum += s;
            }
            let results: Vec<Shift> = (0..n)
                .into_par_iter()
                .map(|k| {
                    check_cancel(progress)?;
                    let data = &sum - &shifted[k];
                    let energy = data.iter().map(|v| f64::from(v.norm_sqr())).sum();
                    let reference = Spectrum {
                        data,
                        energy,
                        smoothed: None,
                    };
                    // reference is in frame-0 coordinates; moving must move by s_k again
                    let s = pc.register_spectra_near(
                        &reference,
                        &spectra[k],
                        shifts[k],
                        config.search_radius_px,
                    );
                    progress.advance(1);
                    Ok(s)
                })
                .collect::<Result<_>>()?;
            let s0 = results[0].shift;
            for (k, r) in results.iter().enumerate() {
                shifts[k] = [r.shift[0] - s0[0], r.shift[1] - s0[1]];
                peaks[k] = r.peak;
            }
        }
        Ok(RigidSeries { shifts, peaks })
    })?
}

/// `spec · exp(−2πi (f_y·s_y + f_x·s_x))`: the spectrum of the image shifted by `s`
/// (`out(p) = in(p − s)`, circular).
pub(crate) fn fourier_shift(
    spec: &Array2<Complex<f32>>,
    freq: &[Vec<f64>; 2],
    s: [f64; 2],
) -> Array2<Complex<f32>> {
    use std::f64::consts::PI;
    let py: Vec<Complex<f64>> = freq[0]
        .iter()
        .map(|&f| Complex::from_polar(1.0, -2.0 * PI * f * s[0]))
        .collect();
    let px: Vec<Complex<f64>> = freq[1]
        .iter()
        .map(|&f| Complex::from_polar(1.0, -2.0 * PI * f * s[1]))
        .collect();
    Array2::from_shape_fn(spec.raw_dim(), |(i, j)| {
        let e = py[i] * px[j];
        let v = spec[[i, j]];
        let r = Complex::new(f64::from(v.re), f64::from(v.im)) * e;
        Complex::new(r.re as f32, r.im as f32)
    })
}

#[cfg(test)]
mod tests;
