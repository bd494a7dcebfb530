//! The detached physics weight of Biswas et al. (2023): min-max normalisation, bilateral filter,
//! Scharr edge magnitude.
//!
//! Written natively from the filter definitions (no scikit-image): the bilateral filter of
//! Tomasi & Manduchi (1998), the Scharr (2000) 3×3 derivative kernels.

use ndarray::{Array2, ArrayView2};

/// Bilateral filter of a `[y, x]` map:
/// `out(p) = Σ_q w(p,q)·v(q) / Σ_q w(p,q)`, `w = exp(−|p−q|²/(2σ_s²))·exp(−(v(p)−v(q))²/(2σ_c²))`
/// over the square window of side `max(5, 2⌈3σ_s⌉ + 1)` (px).
///
/// As scikit-image's `denoise_bilateral` defaults: `sigma_color = None` means the standard
/// deviation of the map; pixels outside the map count as 0 (`mode='constant', cval=0`). Unlike
/// scikit-image the colour weight is evaluated exactly (no 10 000-bin look-up table).
/// A map with zero spread (σ_c = 0) is returned unchanged.
///
/// ```
/// use ndarray::Array2;
/// use stem_learn::vae::bilateral;
/// // A step edge survives a bilateral filter with a small colour σ.
/// let m = Array2::from_shape_fn((12, 12), |(_, x)| if x < 6 { 0.0 } else { 1.0 });
/// let f = bilateral(m.view(), 2.0, Some(0.05));
/// assert!(f[[6, 3]] < 0.01 && f[[6, 8]] > 0.99);
/// ```
pub fn bilateral(
    map: ArrayView2<'_, f64>,
    sigma_spatial: f64,
    sigma_color: Option<f64>,
) -> Array2<f64> {
    let (h, w) = map.dim();
    let sc = sigma_color.unwrap_or_else(|| {
        let n = map.len().max(1) as f64;
        let mean = map.sum() / n;
        (map.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt()
    });
    if !(sc > 0.0 && sigma_spatial > 0.0) || map.is_empty() {
        return map.to_owned();
    }
    let win = 5usize.max(2 * (3.0 * sigma_spatial).ceil() as usize + 1);
    let r = (win / 2) as i64;
    let spatial: Vec<f64> = (-r..=r)
        .flat_map(|dy| (-r..=r).map(move |dx| (dy, dx)))
        .map(|(dy, dx)| {
            (-((dy * dy + dx * dx) as f64) / (2.0 * sigma_spatial * sigma_spatial)).exp()
        })
        .collect();
    let side = (2 * r + 1) as usize;
    Array2::from_shape_fn((h, w), |(i, j)| {
        let c = map[[i, j]];
        let (mut num, mut den) = (0.0, 0.0);
        for (a, dy) in (-r..=r).enumerate() {
            for (b, dx) in (-r..=r).enumerate() {
                let (y, x) = (i as i64 + dy, j as i64 + dx);
                let v = if y >= 0 && x >= 0 && (y as usize) < h && (x as usize) < w {
                    map[[y as usize, x as usize]]
                } else {
                    0.0
                };
                let wgt = spatial[a * side + b] * (-(v - c).powi(2) / (2.0 * sc * sc)).exp();
                num += wgt * v;
                den += wgt;
            }
        }
        num / den
    })
}

/// Scharr edge magnitude `√((G_y² + G_x²)/2)` of a `[y, x]` map, with the kernels
/// `[3, 10, 3]ᵀ/16 ⊗ [1, 0, −1]/2` (and transposed) and mirrored borders (`d c b a | a b c d`),
/// as scikit-image's `filters.scharr`.
///
/// ```
/// use ndarray::Array2;
/// use stem_learn::vae::scharr_magnitude;
/// // A unit ramp along x has G_x = 1 inside: magnitude 1/√2.
/// let m = Array2::from_shape_fn((5, 6), |(_, x)| x as f64);
/// assert!((scharr_magnitude(m.view())[[2, 2]] - 0.5f64.sqrt()).abs() < 1e-12);
/// ```
pub fn scharr_magnitude(map: ArrayView2<'_, f64>) -> Array2<f64> {
    let (h, w) = map.dim();
    if h == 0 || w == 0 {
        return Array2::zeros((h, w));
    }
    let at = |y: i64, x: i64| {
        let y = y.clamp(0, h as i64 - 1) as usize;
        let x = x.clamp(0, w as i64 - 1) as usize;
        map[[y, x]]
    };
    const S: [f64; 3] = [3.0 / 16.0, 10.0 / 16.0, 3.0 / 16.0];
    Array2::from_shape_fn((h, w), |(i, j)| {
        let (i, j) = (i as i64, j as i64);
        let mut gx = 0.0;
        let mut gy = 0.0;
        for (k, s) in S.iter().enumerate() {
            let o = k as i64 - 1;
            gx += s * (at(i + o, j + 1) - at(i + o, j - 1)) / 2.0;
            gy += s * (at(i + 1, j + o) - at(i - 1, j + o)) / 2.0;
        }
        ((gx * gx + gy * gy) / 2.0).sqrt()
    })
}

/// The physics weight `L_phys` of Biswas et al. (2023) for latent maps (`[t, t]` each): every
/// map is min-max normalised to [0, 1] (a constant map becomes 0), bilateral-filtered
/// (σ_s = `sigma_spatial`, σ_c = map std) and its Scharr edge magnitude summed; `L_phys` is the
/// mean of these sums over the maps. It is a total variation (sum of gradient magnitude) of the
/// smoothed maps, evaluated on detached values: it carries no gradient.
///
/// ```
/// use ndarray::Array2;
/// use stem_learn::vae::physics_weight;
/// let flat = Array2::<f64>::zeros((8, 8));
/// let step = Array2::from_shape_fn((8, 8), |(_, x)| (x >= 4) as u8 as f64);
/// assert_eq!(physics_weight(&[flat.clone()], 5.0), 0.0);
/// assert!(physics_weight(&[step], 5.0) > 1.0);
/// ```
pub fn physics_weight(maps: &[Array2<f64>], sigma_spatial: f64) -> f64 {
    if maps.is_empty() {
        return 0.0;
    }
    let mut total = 0.0;
    for m in maps {
        let lo = m.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = m.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let norm = if hi > lo {
            m.mapv(|v| (v - lo) / (hi - lo))
        } else {
            Array2::zeros(m.dim())
        };
        let f = bilateral(norm.view(), sigma_spatial, None);
        total += scharr_magnitude(f.view()).sum();
    }
    total / maps.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Slow, obvious Scharr: explicit 3×3 kernels on a mirrored-padded copy.
    fn scharr_reference(m: &Array2<f64>) -> Array2<f64> {
        let (h, w) = m.dim();
        let mut p = Array2::zeros((h + 2, w + 2));
        for y in 0..h + 2 {
            for x in 0..w + 2 {
                let yy = (y as i64 - 1).clamp(0, h as i64 - 1) as usize;
                let xx = (x as i64 - 1).clamp(0, w as i64 - 1) as usize;
                p[[y, x]] = m[[yy, xx]];
            }
        }
        let kx = [[3., 0., -3.], [10., 0., -10.], [3., 0., -3.]];
        Array2::from_shape_fn((h, w), |(i, j)| {
            let (mut gx, mut gy) = (0.0, 0.0);
            for a in 0..3 {
                for b in 0..3 {
                    // Correlation with the flipped kernel = convolution; sign irrelevant for |G|.
                    gx += kx[a][b] * p[[i + a, j + b]] / 32.0;
                    gy += kx[b][a] * p[[i + a, j + b]] / 32.0;
                }
            }
            ((gx * gx + gy * gy) / 2.0).sqrt()
        })
    }

    #[test]
    fn scharr_matches_reference() {
        let m = Array2::from_shape_fn((7, 9), |(y, x)| ((y * 7 + x * 3) % 5) as f64 * 0.3);
        let a = scharr_magnitude(m.view());
        let b = scharr_reference(&m);
        // Same sums in a different order: f64 rounding only.
        assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-12));
    }

    #[test]
    fn bilateral_reduces_to_gaussian_for_huge_colour_sigma() {
        let m = Array2::from_shape_fn((9, 9), |(y, x)| ((y * 5 + x) % 3) as f64);
        let f = bilateral(m.view(), 1.0, Some(1e9));
        // Centre pixel: plain normalised Gaussian over the 7×7 window (r = 3), all inside.
        let (mut num, mut den) = (0.0, 0.0);
        for dy in -3i64..=3 {
            for dx in -3i64..=3 {
                let g = (-((dy * dy + dx * dx) as f64) / 2.0).exp();
                num += g * m[[(4 + dy) as usize, (4 + dx) as usize]];
                den += g;
            }
        }
        // Colour weights are 1 − O(1e-18): rounding only.
        assert!((f[[4, 4]] - num / den).abs() < 1e-12);
        // Constant maps are unchanged.
        let c = Array2::from_elem((4, 4), 0.7);
        assert_eq!(bilateral(c.view(), 5.0, None), c);
    }

    #[test]
    fn physics_weight_grows_with_boundary_length() {
        let one = Array2::from_shape_fn((16, 16), |(_, x)| (x >= 8) as u8 as f64);
        let two = Array2::from_shape_fn((16, 16), |(_, x)| (5..11).contains(&x) as u8 as f64);
        let a = physics_weight(&[one], 5.0);
        let b = physics_weight(&[two], 5.0);
        assert!(b > 1.5 * a, "{a} {b}");
        // Min-max normalisation: scaling a map does not change the weight.
        let s = Array2::from_shape_fn((16, 16), |(_, x)| 7.0 * (x >= 8) as u8 as f64 - 3.0);
        let one = Array2::from_shape_fn((16, 16), |(_, x)| (x >= 8) as u8 as f64);
        assert!((physics_weight(&[s], 5.0) - physics_weight(&[one], 5.0)).abs() < 1e-9);
    }
}
