//! `fftfreq`, `fftshift`, `ifftshift` with numpy's semantics.

use ndarray::{Array2, ArrayView2};

/// Sample frequencies of an `n`-point DFT with sample spacing `d`, in cycles per unit of `d`
/// (no 2π), in the unshifted FFT order, as `numpy.fft.fftfreq(n, d)`:
/// `[0, 1, …, (n−1)/2, −n/2, …, −1] / (n·d)` (integer divisions).
///
/// For an image axis with spacing `d` in Å the result is in 1/Å. `n = 0` gives an empty
/// vector; `d` must be non-zero and finite (`d = 0` gives non-finite values, as numpy's
/// division by zero would).
///
/// ```
/// use stem_core::fft::fftfreq;
/// assert_eq!(fftfreq(5, 1.0), vec![0.0, 0.2, 0.4, -0.4, -0.2]);
/// ```
pub fn fftfreq(n: usize, d: f64) -> Vec<f64> {
    // Same arithmetic as numpy: integer index times 1/(n*d).
    let val = 1.0 / (n as f64 * d);
    let n_pos = n.div_ceil(2); // (n - 1) / 2 + 1 non-negative frequencies
    (0..n)
        .map(|i| {
            let k = if i < n_pos {
                i as f64
            } else {
                i as f64 - n as f64
            };
            k * val
        })
        .collect()
}

/// Index map of a roll by `shift` (to the right): `out[j] = a[map[j]]`.
fn roll_map(n: usize, shift: usize) -> Vec<usize> {
    (0..n).map(|j| (j + n - shift) % n).collect()
}

fn roll_1d<T: Clone>(a: &[T], shift: usize) -> Vec<T> {
    roll_map(a.len(), shift)
        .into_iter()
        .map(|i| a[i].clone())
        .collect()
}

fn roll_2d<T: Clone>(a: ArrayView2<'_, T>, shift: [usize; 2]) -> Array2<T> {
    let (ny, nx) = a.dim();
    let my = roll_map(ny, shift[0]);
    let mx = roll_map(nx, shift[1]);
    Array2::from_shape_fn((ny, nx), |(y, x)| a[[my[y], mx[x]]].clone())
}

/// Moves the zero-frequency element of an unshifted spectrum (axis order `[y, x]`) to the
/// centre, as `numpy.fft.fftshift`: each axis of length `n` is rolled by `n/2` (integer
/// division), so index 0 lands at `n/2`. For display and diffraction outputs only.
///
/// ```
/// use ndarray::array;
/// use stem_core::fft::fftshift;
/// let a = array![[0, 1, 2], [3, 4, 5]];
/// assert_eq!(fftshift(a.view()), array![[5, 3, 4], [2, 0, 1]]);
/// ```
pub fn fftshift<T: Clone>(a: ArrayView2<'_, T>) -> Array2<T> {
    let (ny, nx) = a.dim();
    roll_2d(a, [ny / 2, nx / 2])
}

/// Inverse of [`fftshift`] (differs from it for odd sizes), as `numpy.fft.ifftshift`: each
/// axis of length `n` is rolled by `−(n/2)`, so the centre element `n/2` lands at index 0.
pub fn ifftshift<T: Clone>(a: ArrayView2<'_, T>) -> Array2<T> {
    let (ny, nx) = a.dim();
    roll_2d(a, [ny - ny / 2, nx - nx / 2])
}

/// 1-D [`fftshift`]: `numpy.fft.fftshift` of a vector.
///
/// ```
/// use stem_core::fft::{fftfreq, fftshift_1d};
/// assert_eq!(fftshift_1d(&fftfreq(4, 1.0)), vec![-0.5, -0.25, 0.0, 0.25]);
/// ```
pub fn fftshift_1d<T: Clone>(a: &[T]) -> Vec<T> {
    roll_1d(a, a.len() / 2)
}

/// 1-D [`ifftshift`]: `numpy.fft.ifftshift` of a vector.
pub fn ifftshift_1d<T: Clone>(a: &[T]) -> Vec<T> {
    roll_1d(a, a.len() - a.len() / 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;
    use proptest::prelude::*;

    #[test]
    fn fftfreq_matches_numpy() {
        // numpy.fft.fftfreq(1) -> [0.]
        assert_eq!(fftfreq(1, 1.0), vec![0.0]);
        // numpy.fft.fftfreq(4) -> [ 0.  ,  0.25, -0.5 , -0.25]
        assert_eq!(fftfreq(4, 1.0), vec![0.0, 0.25, -0.5, -0.25]);
        // numpy.fft.fftfreq(5) -> [ 0. ,  0.2,  0.4, -0.4, -0.2]
        assert_eq!(fftfreq(5, 1.0), vec![0.0, 0.2, 0.4, -0.4, -0.2]);
        // numpy.fft.fftfreq(4, 0.5) -> [ 0. ,  0.5, -1. , -0.5]
        assert_eq!(fftfreq(4, 0.5), vec![0.0, 0.5, -1.0, -0.5]);
        // numpy.fft.fftfreq(5, 0.1) -> [ 0.,  2.,  4., -4., -2.]
        assert_eq!(fftfreq(5, 0.1), vec![0.0, 2.0, 4.0, -4.0, -2.0]);
        assert!(fftfreq(0, 1.0).is_empty());
    }

    #[test]
    fn shift_1d_matches_numpy() {
        // numpy.fft.fftshift([0,1,2,3,4]) -> [3,4,0,1,2]; ifftshift -> [2,3,4,0,1]
        assert_eq!(fftshift_1d(&[0, 1, 2, 3, 4]), vec![3, 4, 0, 1, 2]);
        assert_eq!(ifftshift_1d(&[0, 1, 2, 3, 4]), vec![2, 3, 4, 0, 1]);
        // even: numpy.fft.fftshift([0,1,2,3]) -> [2,3,0,1] (= ifftshift)
        assert_eq!(fftshift_1d(&[0, 1, 2, 3]), vec![2, 3, 0, 1]);
        assert_eq!(ifftshift_1d(&[0, 1, 2, 3]), vec![2, 3, 0, 1]);
        assert_eq!(fftshift_1d::<i32>(&[]), Vec::<i32>::new());
        assert_eq!(fftshift_1d(&[7]), vec![7]);
    }

    #[test]
    fn shift_2d_matches_numpy() {
        let a = array![[0, 1, 2], [3, 4, 5]];
        // numpy.fft.fftshift(np.arange(6).reshape(2, 3)) -> [[5,3,4],[2,0,1]]
        assert_eq!(fftshift(a.view()), array![[5, 3, 4], [2, 0, 1]]);
        // numpy.fft.ifftshift(np.arange(6).reshape(2, 3)) -> [[4,5,3],[1,2,0]]
        assert_eq!(ifftshift(a.view()), array![[4, 5, 3], [1, 2, 0]]);
        // The zero frequency of a 5x4 spectrum lands at [2, 2].
        let mut z = Array2::<i32>::zeros((5, 4));
        z[[0, 0]] = 1;
        assert_eq!(fftshift(z.view())[[2, 2]], 1);
        let e = Array2::<i32>::zeros((0, 3));
        assert_eq!(fftshift(e.view()).dim(), (0, 3));
    }

    #[test]
    fn shifted_fftfreq_is_sorted_and_centred() {
        for n in 1..12 {
            let f = fftshift_1d(&fftfreq(n, 0.7));
            assert!(f.windows(2).all(|w| w[0] < w[1]), "n = {n}: {f:?}");
            assert_eq!(f[n / 2], 0.0);
        }
    }

    proptest! {
        #[test]
        fn shift_round_trips(ny in 0usize..9, nx in 0usize..9) {
            let a = Array2::from_shape_fn((ny, nx), |(y, x)| y * 100 + x);
            prop_assert_eq!(ifftshift(fftshift(a.view()).view()), a.clone());
            prop_assert_eq!(fftshift(ifftshift(a.view()).view()), a.clone());
            let v: Vec<usize> = (0..nx).collect();
            prop_assert_eq!(ifftshift_1d(&fftshift_1d(&v)), v.clone());
            // The 2-D shift of a single row is the 1-D shift.
            let row = Array2::from_shape_vec((1, nx), v.clone()).unwrap();
            prop_assert_eq!(fftshift(row.view()).into_raw_vec_and_offset().0, fftshift_1d(&v));
        }
    }
}
