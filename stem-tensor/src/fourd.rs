//! 4D-STEM analysis chunked over a [`FrameSource`]: virtual detectors, PACBED, centre of mass
//! (DPC) and symmetry STEM maps.
//!
//! Frames are diffraction patterns `[k_y, k_x]` (detector pixels); maps have the navigation
//! shape `[scan_y, scan_x]` (2 navigation axes required). Every function runs a chunk kernel
//! through [`map_reduce_chunks`] (parallel, deterministic), so data larger than memory are
//! processed from disk with one chunk buffer per thread.
//!
//! **Symmetry maps** (after Krajnak & Etheridge, PNAS 117, 27805, 2020): for each pattern `I`
//! and order `n`, the Pearson correlation between `I` and `I` rotated by `2π/n` about the
//! pattern centre, over the pixels within `radius_px` of the centre; the mirror map is the
//! largest correlation between `I` and its reflection across a line through the centre, over
//! `mirror_angles` equally spaced axis angles in `[0, π)`. Rotations and reflections use
//! bilinear interpolation from tables computed once.

use crate::error::{Error, Result};
use ndarray::{Array2, ArrayView2};
use stem_core::frame_source::{FrameSource, map_reduce_chunks};
use stem_core::{Parallelism, Progress};

/// Frames per chunk of the chunk kernels.
const CHUNK: usize = 256;

fn nav2(source: &dyn FrameSource) -> Result<[usize; 2]> {
    match source.nav_shape() {
        [a, b] => Ok([*a, *b]),
        s => Err(Error::invalid(
            "nav_shape",
            format!("4D-STEM maps need 2 navigation axes, got {s:?}"),
        )),
    }
}

fn sig2(source: &dyn FrameSource) -> Result<[usize; 2]> {
    match source.sig_shape() {
        [a, b] => Ok([*a, *b]),
        s => Err(Error::invalid(
            "sig_shape",
            format!("diffraction patterns must be 2-D, got {s:?}"),
        )),
    }
}

/// Per-frame scalars → a `[scan_y, scan_x]` map, chunked.
fn per_frame_map(
    source: &dyn FrameSource,
    parallelism: Parallelism,
    progress: &dyn Progress,
    width: usize,
    f: impl Fn(&[f32], &mut [f64]) + Sync,
) -> Result<Vec<Array2<f64>>> {
    let [ny, nx] = nav2(source)?;
    let frame_len = source.frame_len();
    let parts = map_reduce_chunks(
        source,
        CHUNK,
        parallelism,
        progress,
        |chunk, frames| {
            let mut out = vec![0.0f64; chunk.count * width];
            for (frame, o) in frames
                .chunks_exact(frame_len)
                .zip(out.chunks_exact_mut(width))
            {
                f(frame, o);
            }
            Ok(vec![(chunk.start, out)])
        },
        |mut a, mut b| {
            a.append(&mut b);
            a
        },
    )?
    .unwrap_or_default();
    let mut maps = vec![Array2::<f64>::zeros((ny, nx)); width];
    for (start, vals) in parts {
        for (i, v) in vals.chunks_exact(width).enumerate() {
            let idx = start + i;
            for (m, &x) in maps.iter_mut().zip(v) {
                m[[idx / nx, idx % nx]] = x;
            }
        }
    }
    Ok(maps)
}

/// A detector mask `[k_y, k_x]` with values in `[0, 1]` (weights).
pub mod mask {
    use ndarray::Array2;
    /// A disk of `radius_px` around `centre = [k_y, k_x]` (px): a bright-field detector.
    pub fn disk(shape: [usize; 2], centre: [f64; 2], radius_px: f64) -> Array2<f32> {
        annulus(shape, centre, 0.0, radius_px)
    }
    /// An annulus `inner_px ≤ r ≤ outer_px` around `centre` (px): an (A)ADF detector.
    pub fn annulus(
        shape: [usize; 2],
        centre: [f64; 2],
        inner_px: f64,
        outer_px: f64,
    ) -> Array2<f32> {
        Array2::from_shape_fn((shape[0], shape[1]), |(y, x)| {
            let r = ((y as f64 - centre[0]).powi(2) + (x as f64 - centre[1]).powi(2)).sqrt();
            if r >= inner_px && r <= outer_px {
                1.0
            } else {
                0.0
            }
        })
    }
}

/// Virtual detector image: `Σ_k mask(k) · I(k)` per scan position (counts).
///
/// ```
/// use ndarray::{ArrayD, IxDyn};
/// use stem_core::{Hypercube, NoProgress, Parallelism};
/// use stem_core::frame_source::InMemorySource;
/// use stem_tensor::fourd::{mask, virtual_image};
/// let cube = Hypercube::new(ArrayD::from_elem(IxDyn(&[2, 3, 8, 8]), 1.0f32), 2)?;
/// let src = InMemorySource::new(cube.view());
/// let bf = virtual_image(&src, mask::disk([8, 8], [4.0, 4.0], 1.0).view(), Parallelism::Auto, &NoProgress)?;
/// assert_eq!(bf.dim(), (2, 3));
/// assert_eq!(bf[[1, 2]], 5.0); // centre + 4 neighbours
/// # Ok::<(), stem_tensor::Error>(())
/// ```
///
/// # Errors
/// [`Error::InvalidParameter`] for a non-2-D navigation or signal shape; [`Error::ShapeMismatch`]
/// if the mask is not the detector shape; source errors; `Cancelled`.
pub fn virtual_image(
    source: &dyn FrameSource,
    mask: ArrayView2<'_, f32>,
    parallelism: Parallelism,
    progress: &dyn Progress,
) -> Result<Array2<f64>> {
    let sig = sig2(source)?;
    if mask.dim() != (sig[0], sig[1]) {
        return Err(Error::ShapeMismatch {
            expected: sig.to_vec(),
            found: vec![mask.nrows(), mask.ncols()],
        });
    }
    let m: Vec<(usize, f64)> = mask
        .iter()
        .enumerate()
        .filter(|(_, w)| **w != 0.0)
        .map(|(i, &w)| (i, f64::from(w)))
        .collect();
    let mut maps = per_frame_map(source, parallelism, progress, 1, |f, o| {
        o[0] = m.iter().map(|&(i, w)| w * f64::from(f[i])).sum();
    })?;
    Ok(maps.remove(0))
}

/// Position-averaged CBED (PACBED): the mean pattern over all scan positions, `[k_y, k_x]`.
///
/// # Errors
/// As [`virtual_image`].
pub fn pacbed(
    source: &dyn FrameSource,
    parallelism: Parallelism,
    progress: &dyn Progress,
) -> Result<Array2<f64>> {
    let sig = sig2(source)?;
    let n = source.n_frames();
    let len = source.frame_len();
    let sum = map_reduce_chunks(
        source,
        CHUNK,
        parallelism,
        progress,
        |_, frames| {
            let mut s = vec![0.0f64; len];
            for f in frames.chunks_exact(len) {
                for (a, &b) in s.iter_mut().zip(f) {
                    *a += f64::from(b);
                }
            }
            Ok(s)
        },
        |mut a, b| {
            for (x, y) in a.iter_mut().zip(&b) {
                *x += y;
            }
            a
        },
    )?
    .unwrap_or_else(|| vec![0.0; len]);
    let scale = 1.0 / n.max(1) as f64;
    Array2::from_shape_vec(
        (sig[0], sig[1]),
        sum.into_iter().map(|v| v * scale).collect(),
    )
    .map_err(|e| Error::invalid("pacbed", e.to_string()))
}

/// Centre-of-mass maps (DPC): `[k_y, k_x]` centre of mass of each pattern minus `origin`
/// (px on the detector). An empty pattern gives 0.
#[derive(Clone, Debug)]
pub struct CentreOfMass {
    /// `k_y` shift (px), `[scan_y, scan_x]`.
    pub com_y_px: Array2<f64>,
    /// `k_x` shift (px), `[scan_y, scan_x]`.
    pub com_x_px: Array2<f64>,
    /// Total counts per pattern, `[scan_y, scan_x]`.
    pub total: Array2<f64>,
}

/// Centre of mass of every pattern relative to `origin = [k_y, k_x]` (px).
///
/// # Errors
/// As [`virtual_image`].
pub fn centre_of_mass(
    source: &dyn FrameSource,
    origin: [f64; 2],
    parallelism: Parallelism,
    progress: &dyn Progress,
) -> Result<CentreOfMass> {
    let [_, kx] = sig2(source)?;
    let mut maps = per_frame_map(source, parallelism, progress, 3, |f, o| {
        let (mut s, mut sy, mut sx) = (0.0f64, 0.0f64, 0.0f64);
        for (i, &v) in f.iter().enumerate() {
            let v = f64::from(v);
            s += v;
            sy += v * (i / kx) as f64;
            sx += v * (i % kx) as f64;
        }
        if s != 0.0 {
            o[0] = sy / s - origin[0];
            o[1] = sx / s - origin[1];
        }
        o[2] = s;
    })?;
    let total = maps.remove(2);
    let com_x_px = maps.remove(1);
    let com_y_px = maps.remove(0);
    Ok(CentreOfMass {
        com_y_px,
        com_x_px,
        total,
    })
}

/// Settings of [`symmetry_maps`].
#[derive(Clone, Debug, PartialEq)]
pub struct SymmetryConfig {
    /// Rotation orders `n` (rotation by `2π/n`). Default `[2, 3, 4, 6]`.
    pub orders: Vec<usize>,
    /// Rotation centre `[k_y, k_x]` (px); `None` = the detector centre `((k−1)/2)`.
    pub centre: Option<[f64; 2]>,
    /// Radius of the correlation disk (px); `None` = half the smaller detector side minus 1.
    pub radius_px: Option<f64>,
    /// Number of mirror-axis angles in `[0, π)`. Default 36 (5° steps). 0 = no mirror map.
    pub mirror_angles: usize,
    /// Threads.
    pub parallelism: Parallelism,
}

impl Default for SymmetryConfig {
    fn default() -> Self {
        SymmetryConfig {
            orders: vec![2, 3, 4, 6],
            centre: None,
            radius_px: None,
            mirror_angles: 36,
            parallelism: Parallelism::Auto,
        }
    }
}

/// Symmetry STEM maps, `[scan_y, scan_x]` each, values in `[−1, 1]`.
#[derive(Clone, Debug)]
pub struct SymmetryMaps {
    /// `(n, map)` for every rotation order.
    pub rotational: Vec<(usize, Array2<f64>)>,
    /// Best mirror correlation over the axis angles (`None` when `mirror_angles == 0`).
    pub mirror: Option<Array2<f64>>,
}

/// Bilinear sampling table of a transform: for each pixel in the disk, its index and the four
/// source indices with weights.
struct Table {
    dst: Vec<usize>,
    src: Vec<[(usize, f64); 4]>,
}

fn table(
    shape: [usize; 2],
    centre: [f64; 2],
    radius: f64,
    map: impl Fn(f64, f64) -> (f64, f64),
) -> Table {
    let mut dst = Vec::new();
    let mut src = Vec::new();
    for y in 0..shape[0] {
        for x in 0..shape[1] {
            let (dy, dx) = (y as f64 - centre[0], x as f64 - centre[1]);
            if dy * dy + dx * dx > radius * radius {
                continue;
            }
            let (ty, tx) = map(dy, dx);
            let (sy, sx) = (ty + centre[0], tx + centre[1]);
            if sy < 0.0 || sx < 0.0 || sy > (shape[0] - 1) as f64 || sx > (shape[1] - 1) as f64 {
                continue;
            }
            let (y0, x0) = (sy.floor() as usize, sx.floor() as usize);
            let (y1, x1) = ((y0 + 1).min(shape[0] - 1), (x0 + 1).min(shape[1] - 1));
            let (fy, fx) = (sy - y0 as f64, sx - x0 as f64);
            dst.push(y * shape[1] + x);
            src.push([
                (y0 * shape[1] + x0, (1.0 - fy) * (1.0 - fx)),
                (y0 * shape[1] + x1, (1.0 - fy) * fx),
                (y1 * shape[1] + x0, fy * (1.0 - fx)),
                (y1 * shape[1] + x1, fy * fx),
            ]);
        }
    }
    Table { dst, src }
}

fn pearson(frame: &[f32], t: &Table) -> f64 {
    let n = t.dst.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let (mut sa, mut sb, mut saa, mut sbb, mut sab) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for (&d, s) in t.dst.iter().zip(&t.src) {
        let a = f64::from(frame[d]);
        let b: f64 = s.iter().map(|&(i, w)| w * f64::from(frame[i])).sum();
        sa += a;
        sb += b;
        saa += a * a;
        sbb += b * b;
        sab += a * b;
    }
    let cov = sab - sa * sb / n;
    let va = saa - sa * sa / n;
    let vb = sbb - sb * sb / n;
    if va <= 0.0 || vb <= 0.0 {
        0.0
    } else {
        cov / (va * vb).sqrt()
    }
}

/// Symmetry STEM maps (see the module docs).
///
/// # Errors
/// [`Error::InvalidParameter`] for an order below 2, a non-positive radius, or non-2-D shapes;
/// source errors; `Cancelled`.
pub fn symmetry_maps(
    source: &dyn FrameSource,
    config: &SymmetryConfig,
    progress: &dyn Progress,
) -> Result<SymmetryMaps> {
    let sig = sig2(source)?;
    if let Some(&n) = config.orders.iter().find(|&&n| n < 2) {
        return Err(Error::invalid(
            "orders",
            format!("orders must be >= 2, got {n}"),
        ));
    }
    let centre = config
        .centre
        .unwrap_or([(sig[0] as f64 - 1.0) / 2.0, (sig[1] as f64 - 1.0) / 2.0]);
    let radius = config
        .radius_px
        .unwrap_or((sig[0].min(sig[1]) as f64 / 2.0 - 1.0).max(1.0));
    if !(radius.is_finite() && radius > 0.0) {
        return Err(Error::invalid(
            "radius_px",
            format!("must be > 0, got {radius}"),
        ));
    }
    let mut tables: Vec<Table> = config
        .orders
        .iter()
        .map(|&n| {
            let a = 2.0 * std::f64::consts::PI / n as f64;
            let (s, c) = a.sin_cos();
            table(sig, centre, radius, move |dy, dx| {
                (c * dy + s * dx, -s * dy + c * dx)
            })
        })
        .collect();
    for m in 0..config.mirror_angles {
        let t = std::f64::consts::PI * m as f64 / config.mirror_angles as f64;
        // Reflection across the axis of direction (sin t, cos t) in (y, x).
        let (s2, c2) = (2.0 * t).sin_cos();
        tables.push(table(sig, centre, radius, move |dy, dx| {
            (-c2 * dy + s2 * dx, s2 * dy + c2 * dx)
        }));
    }
    let n_rot = config.orders.len();
    let width = n_rot + usize::from(config.mirror_angles > 0);
    let mut maps = per_frame_map(source, config.parallelism, progress, width, |f, o| {
        for (k, t) in tables[..n_rot].iter().enumerate() {
            o[k] = pearson(f, t);
        }
        if config.mirror_angles > 0 {
            o[n_rot] = tables[n_rot..]
                .iter()
                .map(|t| pearson(f, t))
                .fold(f64::NEG_INFINITY, f64::max);
        }
    })?;
    let mirror = if config.mirror_angles > 0 {
        maps.pop()
    } else {
        None
    };
    Ok(SymmetryMaps {
        rotational: config.orders.iter().copied().zip(maps).collect(),
        mirror,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{ArrayD, IxDyn};
    use stem_core::frame_source::InMemorySource;
    use stem_core::{Hypercube, NoProgress};

    /// A pattern with Gaussian disks (σ 1.5 px) at `n` angles `phase + 2πm/n`, distance 10 px.
    fn spots(n: usize, phase: f64, chiral: bool) -> Array2<f32> {
        let c = 15.5;
        Array2::from_shape_fn((32, 32), |(y, x)| {
            let mut v = 0.0;
            for m in 0..n {
                let a = phase + 2.0 * std::f64::consts::PI * m as f64 / n as f64;
                let (cy, cx) = (c + 10.0 * a.sin(), c + 10.0 * a.cos());
                v += (-((y as f64 - cy).powi(2) + (x as f64 - cx).powi(2)) / 4.5).exp();
                if chiral {
                    // A satellite rotated by +25° at distance 6 breaks every mirror.
                    let b = a + 25f64.to_radians();
                    let (sy, sx) = (c + 6.0 * b.sin(), c + 6.0 * b.cos());
                    v += 0.7 * (-((y as f64 - sy).powi(2) + (x as f64 - sx).powi(2)) / 4.5).exp();
                }
            }
            v as f32
        })
    }

    fn cube_of(patterns: &[Array2<f32>]) -> Hypercube<f32> {
        let n = patterns.len();
        let data = ArrayD::from_shape_fn(IxDyn(&[1, n, 32, 32]), |i| patterns[i[1]][[i[2], i[3]]]);
        Hypercube::new(data, 2).unwrap()
    }

    /// Ground truth: 4-fold, 6-fold and 3-fold chiral patterns give high correlation exactly
    /// for the orders they have, and only achiral patterns are mirror-symmetric.
    #[test]
    fn symmetry_maps_ground_truth() {
        let cube = cube_of(&[
            spots(4, 0.3, false),
            spots(6, 0.1, false),
            spots(3, 0.2, true),
        ]);
        let src = InMemorySource::new(cube.view());
        let m = symmetry_maps(&src, &SymmetryConfig::default(), &NoProgress).unwrap();
        let get =
            |n: usize, i: usize| m.rotational.iter().find(|(k, _)| *k == n).unwrap().1[[0, i]];
        // Bilinear interpolation of σ = 1.5 px spots keeps exact-symmetry correlations > 0.9;
        // absent symmetries correlate below 0.3 (disjoint spots, small overlap tails).
        assert!(get(4, 0) > 0.9 && get(2, 0) > 0.9, "{}", get(4, 0));
        assert!(get(3, 0) < 0.3 && get(6, 0) < 0.3);
        assert!(get(6, 1) > 0.9 && get(3, 1) > 0.9 && get(2, 1) > 0.9);
        assert!(get(4, 1) < 0.3);
        assert!(get(3, 2) > 0.9 && get(2, 2) < 0.3);
        let mirror = m.mirror.unwrap();
        assert!(mirror[[0, 0]] > 0.9 && mirror[[0, 1]] > 0.9, "{mirror:?}");
        assert!(mirror[[0, 2]] < 0.75, "{mirror:?}");
    }

    #[test]
    fn symmetry_validation() {
        let cube = cube_of(&[spots(4, 0.0, false)]);
        let src = InMemorySource::new(cube.view());
        let c = SymmetryConfig {
            orders: vec![1],
            ..Default::default()
        };
        assert!(matches!(
            symmetry_maps(&src, &c, &NoProgress),
            Err(Error::InvalidParameter { name: "orders", .. })
        ));
        let bad = mask::disk([8, 8], [4.0, 4.0], 2.0);
        assert!(matches!(
            virtual_image(&src, bad.view(), Parallelism::Auto, &NoProgress),
            Err(Error::ShapeMismatch { .. })
        ));
    }

    /// Ground truth: a disk shifted by (dy, dx) has its centre of mass there; virtual BF/ADF
    /// and PACBED equal direct sums.
    #[test]
    fn com_virtual_and_pacbed() {
        let shifted = |dy: f64, dx: f64| mask::disk([32, 32], [15.5 + dy, 15.5 + dx], 4.0);
        let pats = [shifted(0.0, 0.0), shifted(2.0, -3.0), shifted(-1.0, 1.0)];
        let cube = cube_of(&pats);
        let src = InMemorySource::new(cube.view());
        let com = centre_of_mass(&src, [15.5, 15.5], Parallelism::Threads(2), &NoProgress).unwrap();
        // A pixelated disk of radius 4 is symmetric about its centre: exact to round-off.
        assert!(
            (com.com_y_px[[0, 1]] - 2.0).abs() < 1e-9 && (com.com_x_px[[0, 1]] + 3.0).abs() < 1e-9
        );
        assert!((com.com_y_px[[0, 2]] + 1.0).abs() < 1e-9);
        let adf = mask::annulus([32, 32], [15.5, 15.5], 3.0, 6.0);
        let v = virtual_image(&src, adf.view(), Parallelism::Auto, &NoProgress).unwrap();
        for (i, p) in pats.iter().enumerate() {
            let direct: f32 = p.iter().zip(adf.iter()).map(|(a, b)| a * b).sum();
            assert_eq!(v[[0, i]], f64::from(direct));
        }
        let pac = pacbed(&src, Parallelism::Auto, &NoProgress).unwrap();
        let direct = (&pats[0] + &pats[1] + &pats[2]).mapv(|v| f64::from(v) / 3.0);
        assert!((&pac - &direct).iter().all(|d| d.abs() < 1e-12));
    }
}
