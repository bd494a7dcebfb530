//! Calibrated 2-D images.

use crate::axis::Axis;
use crate::error::{Error, Result};
use ndarray::{Array2, ArrayView2, ArrayViewMut2};

/// An owned 2-D image, axes `[y, x]` (numpy order), with one calibrated [`Axis`] per dimension.
///
/// Pixel data default to `f32`. Algorithms take [`ImageView`]s and return owned images.
#[derive(Clone, Debug, PartialEq)]
pub struct Image<T = f32> {
    data: Array2<T>,
    axes: [Axis; 2],
}

/// A borrowed, `Copy` view of an image: an ndarray view plus an optional calibration.
///
/// A view made from a bare ndarray view ([`ImageView::new`]) has no calibration; its
/// [`pixel_size`](ImageView::pixel_size) is 1 px.
#[derive(Debug)]
pub struct ImageView<'a, T = f32> {
    data: ArrayView2<'a, T>,
    axes: Option<&'a [Axis; 2]>,
}

impl<T> Clone for ImageView<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for ImageView<'_, T> {}

fn default_axes(shape: [usize; 2]) -> [Axis; 2] {
    [Axis::pixels("y", shape[0]), Axis::pixels("x", shape[1])]
}

impl<T> Image<T> {
    /// An uncalibrated image (axes `"y"`, `"x"` in pixels).
    pub fn new(data: Array2<T>) -> Self {
        let (ny, nx) = data.dim();
        Image {
            axes: default_axes([ny, nx]),
            data,
        }
    }

    /// An image with explicit axes; their sizes must match the data shape.
    pub fn with_axes(data: Array2<T>, axes: [Axis; 2]) -> Result<Self> {
        let (ny, nx) = data.dim();
        let declared = [axes[0].size, axes[1].size];
        if declared != [ny, nx] {
            return Err(Error::ShapeMismatch {
                expected: declared.to_vec(),
                found: vec![ny, nx],
            });
        }
        Ok(Image { data, axes })
    }

    /// Sets a square real-space sampling (Å per pixel) on both axes, offset 0.
    pub fn with_sampling_a(mut self, sampling_a: f64) -> Self {
        for a in &mut self.axes {
            a.scale = sampling_a;
            a.offset = 0.0;
            a.units = "Å".into();
        }
        self
    }

    /// Shape `[ny, nx]`.
    pub fn shape(&self) -> [usize; 2] {
        let (ny, nx) = self.data.dim();
        [ny, nx]
    }

    /// The axes `[y, x]`.
    pub fn axes(&self) -> &[Axis; 2] {
        &self.axes
    }

    /// Pixel size `[dy, dx]` in the axes' units.
    pub fn pixel_size(&self) -> [f64; 2] {
        [self.axes[0].scale, self.axes[1].scale]
    }

    /// The pixel data.
    pub fn data(&self) -> &Array2<T> {
        &self.data
    }

    /// Mutable access to the pixel data (shape cannot change).
    pub fn data_mut(&mut self) -> ArrayViewMut2<'_, T> {
        self.data.view_mut()
    }

    /// A borrowed view carrying the calibration.
    pub fn view(&self) -> ImageView<'_, T> {
        ImageView {
            data: self.data.view(),
            axes: Some(&self.axes),
        }
    }

    /// Consumes the image, returning the pixel array.
    pub fn into_array(self) -> Array2<T> {
        self.data
    }

    /// Consumes the image, returning pixel array and axes.
    pub fn into_parts(self) -> (Array2<T>, [Axis; 2]) {
        (self.data, self.axes)
    }

    /// Applies `f` to every pixel, keeping the calibration.
    pub fn map<U>(&self, f: impl FnMut(&T) -> U) -> Image<U> {
        Image {
            data: self.data.map(f),
            axes: self.axes.clone(),
        }
    }
}

impl<T> From<Array2<T>> for Image<T> {
    fn from(data: Array2<T>) -> Self {
        Image::new(data)
    }
}

impl<'a, T> ImageView<'a, T> {
    /// An uncalibrated view of an ndarray view (zero copy).
    pub fn new(data: ArrayView2<'a, T>) -> Self {
        ImageView { data, axes: None }
    }

    /// A view with a calibration; axis sizes must match the data.
    pub fn with_axes(data: ArrayView2<'a, T>, axes: &'a [Axis; 2]) -> Result<Self> {
        let (ny, nx) = data.dim();
        let declared = [axes[0].size, axes[1].size];
        if declared != [ny, nx] {
            return Err(Error::ShapeMismatch {
                expected: declared.to_vec(),
                found: vec![ny, nx],
            });
        }
        Ok(ImageView {
            data,
            axes: Some(axes),
        })
    }

    /// The pixel data as an ndarray view (zero copy).
    pub fn data(&self) -> ArrayView2<'a, T> {
        self.data
    }

    /// Shape `[ny, nx]`.
    pub fn shape(&self) -> [usize; 2] {
        let (ny, nx) = self.data.dim();
        [ny, nx]
    }

    /// The calibration, if the view carries one.
    pub fn axes(&self) -> Option<&'a [Axis; 2]> {
        self.axes
    }

    /// Pixel size `[dy, dx]` in the axes' units; `[1, 1]` without calibration.
    pub fn pixel_size(&self) -> [f64; 2] {
        self.axes
            .map(|a| [a[0].scale, a[1].scale])
            .unwrap_or([1.0, 1.0])
    }

    /// Whether the image has no pixels.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

impl<T: Clone> ImageView<'_, T> {
    /// Copies the view into an owned image, keeping its calibration.
    pub fn to_owned(&self) -> Image<T> {
        let data = self.data.to_owned();
        match self.axes {
            Some(a) => Image {
                data,
                axes: a.clone(),
            },
            None => Image::new(data),
        }
    }
}

impl<'a, T> From<ArrayView2<'a, T>> for ImageView<'a, T> {
    fn from(data: ArrayView2<'a, T>) -> Self {
        ImageView::new(data)
    }
}

impl<'a, T> From<&'a Image<T>> for ImageView<'a, T> {
    fn from(img: &'a Image<T>) -> Self {
        img.view()
    }
}

impl<'a, T> From<&'a Array2<T>> for ImageView<'a, T> {
    fn from(data: &'a Array2<T>) -> Self {
        ImageView::new(data.view())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_must_match_shape() {
        let data = Array2::<f32>::zeros((3, 4));
        let axes = [Axis::pixels("y", 3), Axis::pixels("x", 5)];
        assert!(matches!(
            Image::with_axes(data, axes),
            Err(Error::ShapeMismatch { .. })
        ));
    }

    #[test]
    fn view_is_zero_copy_and_keeps_calibration() {
        let img = Image::new(Array2::<f32>::ones((3, 4))).with_sampling_a(0.5);
        let v = img.view();
        assert_eq!(v.data().as_ptr(), img.data().as_ptr());
        assert_eq!(v.pixel_size(), [0.5, 0.5]);
        let w = v; // Copy
        assert_eq!(w.shape(), [3, 4]);
        assert_eq!(v.to_owned(), img);
    }

    #[test]
    fn bare_view_is_uncalibrated() {
        let a = Array2::<f64>::zeros((2, 2));
        let v = ImageView::from(&a);
        assert!(v.axes().is_none());
        assert_eq!(v.pixel_size(), [1.0, 1.0]);
    }
}
