//! Circular windows of pixels around a sub-pixel centre, clipped to the image.

use ndarray::ArrayView2;

/// One pixel of a window: offset from the window centre (px) and value (image units).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Pixel {
    /// `y − centre_y` (px).
    pub dy: f64,
    /// `x − centre_x` (px).
    pub dx: f64,
    /// Pixel value.
    pub v: f64,
    /// Least-squares weight (1 unless a fit sets it).
    pub w: f64,
}

/// Collects into `out` (cleared first) the pixels `(i, j)` of the image with
/// `(i − cy)² + (j − cx)² ≤ radius²`, row-major. Pixels outside the image are skipped; a
/// non-finite centre gives an empty window.
pub(crate) fn gather(
    data: ArrayView2<'_, f32>,
    centre: [f64; 2],
    radius: f64,
    out: &mut Vec<Pixel>,
) {
    out.clear();
    let (ny, nx) = data.dim();
    let [cy, cx] = centre;
    if !(cy.is_finite() && cx.is_finite() && radius.is_finite()) || ny == 0 || nx == 0 {
        return;
    }
    let r2 = radius * radius;
    let Some((i0, i1)) = clip_range(cy, radius, ny) else {
        return;
    };
    let Some((j0, j1)) = clip_range(cx, radius, nx) else {
        return;
    };
    for i in i0..=i1 {
        let dy = i as f64 - cy;
        let row = data.row(i);
        for j in j0..=j1 {
            let dx = j as f64 - cx;
            if dy * dy + dx * dx <= r2 {
                out.push(Pixel {
                    dy,
                    dx,
                    v: f64::from(row[j]),
                    w: 1.0,
                });
            }
        }
    }
}

/// Integer indices in `[c − r, c + r] ∩ [0, n − 1]`, or `None` when empty.
fn clip_range(c: f64, r: f64, n: usize) -> Option<(usize, usize)> {
    let lo = (c - r).ceil().max(0.0);
    let hi = (c + r).floor().min((n - 1) as f64);
    if lo > hi {
        return None;
    }
    // Both are integral, finite and inside [0, n − 1] here.
    Some((lo as usize, hi as usize))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn window_matches_brute_force_and_clips() {
        let img = Array2::from_shape_fn((9, 7), |(i, j)| (i * 7 + j) as f32);
        let mut out = Vec::new();
        for &(c, r) in &[
            ([4.3, 3.1], 2.5),
            ([0.0, 0.0], 3.0),
            ([8.9, 6.8], 1.0),
            ([-2.0, 3.0], 2.5),
            ([-3.0, 3.0], 2.5),
            ([4.0, 100.0], 2.0),
        ] {
            gather(img.view(), c, r, &mut out);
            let mut brute = Vec::new();
            for i in 0..9 {
                for j in 0..7 {
                    let (dy, dx) = (i as f64 - c[0], j as f64 - c[1]);
                    if dy * dy + dx * dx <= r * r {
                        brute.push(Pixel {
                            dy,
                            dx,
                            v: (i * 7 + j) as f64,
                            w: 1.0,
                        });
                    }
                }
            }
            assert_eq!(out, brute, "centre {c:?} radius {r}");
        }
        gather(img.view(), [f64::NAN, 1.0], 2.0, &mut out);
        assert!(out.is_empty());
    }
}
