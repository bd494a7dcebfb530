//! N-dimensional calibrated data with navigation and signal axes.

use crate::axis::Axis;
use crate::error::{Error, Result};
use ndarray::{ArrayD, ArrayViewD, Axis as NdAxis, IxDyn};
use serde::{Deserialize, Serialize};

/// What kind of signal a hypercube holds, from its navigation/signal dimensionality.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum SignalKind {
    /// One 2-D image (nav 0 + sig 2).
    Image,
    /// One spectrum (nav 0 + sig 1).
    Spectrum,
    /// A series of images, e.g. frames in time (nav 1 + sig 2).
    ImageSeries,
    /// A line scan or series of spectra (nav 1 + sig 1).
    SpectrumSeries,
    /// A spectrum image, e.g. EELS or EDS (nav 2 + sig 1).
    SpectrumImage,
    /// 4D-STEM: a diffraction pattern per scan position (nav 2 + sig 2).
    FourDStem,
    /// Anything else.
    Other,
}

/// N-d data split into navigation axes (scan positions, frames) followed by signal axes
/// (detector pixels, energy channels), HyperSpy's idea.
///
/// The array axis order is numpy's, navigation first: 4D-STEM is `[scan_y, scan_x, k_y, k_x]`,
/// an EELS spectrum image `[scan_y, scan_x, energy]`, an image series `[frame, y, x]`.
/// The data is kept in standard (row-major, contiguous) layout so that each frame is a
/// contiguous slice.
#[derive(Clone, Debug, PartialEq)]
pub struct Hypercube<T = f32> {
    data: ArrayD<T>,
    axes: Vec<Axis>,
    nav_dims: usize,
}

/// A borrowed view of a [`Hypercube`] (zero copy).
#[derive(Debug)]
pub struct HypercubeView<'a, T = f32> {
    data: ArrayViewD<'a, T>,
    axes: &'a [Axis],
    nav_dims: usize,
}

impl<T> Clone for HypercubeView<'_, T> {
    fn clone(&self) -> Self {
        HypercubeView {
            data: self.data.clone(),
            axes: self.axes,
            nav_dims: self.nav_dims,
        }
    }
}

fn check_axes(shape: &[usize], axes: &[Axis], nav_dims: usize) -> Result<()> {
    if nav_dims > shape.len() {
        return Err(Error::invalid(
            "nav_dims",
            format!("{nav_dims} navigation axes for {} dimensions", shape.len()),
        ));
    }
    let declared: Vec<usize> = axes.iter().map(|a| a.size).collect();
    if declared != shape {
        return Err(Error::ShapeMismatch {
            expected: declared,
            found: shape.to_vec(),
        });
    }
    Ok(())
}

fn kind_of(nav: usize, sig: usize) -> SignalKind {
    match (nav, sig) {
        (0, 2) => SignalKind::Image,
        (0, 1) => SignalKind::Spectrum,
        (1, 2) => SignalKind::ImageSeries,
        (1, 1) => SignalKind::SpectrumSeries,
        (2, 1) => SignalKind::SpectrumImage,
        (2, 2) => SignalKind::FourDStem,
        _ => SignalKind::Other,
    }
}

impl<T: Clone> Hypercube<T> {
    /// A hypercube with uncalibrated axes. The first `nav_dims` axes are navigation axes
    /// (named `nav0`, `nav1`, ...), the rest signal axes (`sig0`, ...). Data in non-standard
    /// layout are copied into standard layout.
    pub fn new(data: ArrayD<T>, nav_dims: usize) -> Result<Self> {
        let axes = data
            .shape()
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                if i < nav_dims {
                    Axis::pixels(format!("nav{i}"), n)
                } else {
                    Axis::pixels(format!("sig{}", i - nav_dims), n)
                }
            })
            .collect();
        Self::with_axes(data, axes, nav_dims)
    }

    /// A hypercube with explicit axes (one per dimension, sizes matching the data).
    pub fn with_axes(data: ArrayD<T>, axes: Vec<Axis>, nav_dims: usize) -> Result<Self> {
        check_axes(data.shape(), &axes, nav_dims)?;
        let data = if data.is_standard_layout() {
            data
        } else {
            data.as_standard_layout().into_owned()
        };
        Ok(Hypercube {
            data,
            axes,
            nav_dims,
        })
    }
}

impl<T> Hypercube<T> {
    /// A borrowed view.
    pub fn view(&self) -> HypercubeView<'_, T> {
        HypercubeView {
            data: self.data.view(),
            axes: &self.axes,
            nav_dims: self.nav_dims,
        }
    }

    /// The data (standard layout, navigation axes first).
    pub fn data(&self) -> &ArrayD<T> {
        &self.data
    }

    /// All axes, navigation first.
    pub fn axes(&self) -> &[Axis] {
        &self.axes
    }

    /// Mutable access to the axes' calibrations (sizes must not be changed).
    pub fn axes_mut(&mut self) -> &mut [Axis] {
        &mut self.axes
    }

    /// Number of navigation axes.
    pub fn nav_dims(&self) -> usize {
        self.nav_dims
    }

    /// Consumes the cube, returning data and axes.
    pub fn into_parts(self) -> (ArrayD<T>, Vec<Axis>, usize) {
        (self.data, self.axes, self.nav_dims)
    }
}

impl<'a, T> HypercubeView<'a, T> {
    /// A view of an ndarray view with uncalibrated-axis slice given by the caller.
    pub fn with_axes(data: ArrayViewD<'a, T>, axes: &'a [Axis], nav_dims: usize) -> Result<Self> {
        check_axes(data.shape(), axes, nav_dims)?;
        Ok(HypercubeView {
            data,
            axes,
            nav_dims,
        })
    }

    /// The data view (zero copy).
    pub fn data(&self) -> ArrayViewD<'a, T> {
        self.data.clone()
    }

    /// All axes, navigation first.
    pub fn axes(&self) -> &'a [Axis] {
        self.axes
    }

    /// Navigation axes.
    pub fn nav_axes(&self) -> &'a [Axis] {
        &self.axes[..self.nav_dims]
    }

    /// Signal axes.
    pub fn sig_axes(&self) -> &'a [Axis] {
        &self.axes[self.nav_dims..]
    }

    /// Number of navigation axes.
    pub fn nav_dims(&self) -> usize {
        self.nav_dims
    }

    /// Navigation shape (e.g. `[scan_y, scan_x]`).
    pub fn nav_shape(&self) -> &[usize] {
        &self.data.shape()[..self.nav_dims]
    }

    /// Signal shape (e.g. `[k_y, k_x]`).
    pub fn sig_shape(&self) -> &[usize] {
        &self.data.shape()[self.nav_dims..]
    }

    /// Number of frames (product of the navigation shape; 1 with no navigation axes).
    pub fn n_frames(&self) -> usize {
        self.nav_shape().iter().product()
    }

    /// Number of elements in one frame (product of the signal shape).
    pub fn frame_len(&self) -> usize {
        self.sig_shape().iter().product()
    }

    /// The kind of signal, from the navigation/signal dimensionality.
    pub fn kind(&self) -> SignalKind {
        kind_of(self.nav_dims, self.data.ndim() - self.nav_dims)
    }

    /// Frame `index` (flat, row-major over the navigation shape) as a signal-shaped view.
    pub fn frame(&self, index: usize) -> Result<ArrayViewD<'a, T>> {
        let n = self.n_frames();
        if index >= n {
            return Err(Error::OutOfRange {
                what: "frame",
                index,
                len: n,
            });
        }
        let sig = self.sig_shape().to_vec();
        let flat = self
            .data
            .clone()
            .into_shape_with_order(IxDyn(&[n, self.frame_len()]))
            .map_err(|e| Error::Unsupported {
                what: format!("non-contiguous hypercube view: {e}"),
            })?;
        let row = flat.index_axis_move(NdAxis(0), index);
        row.into_shape_with_order(IxDyn(&sig))
            .map_err(|e| Error::Unsupported {
                what: format!("frame reshape: {e}"),
            })
    }
}

impl<T> Hypercube<T> {
    /// Navigation shape.
    pub fn nav_shape(&self) -> &[usize] {
        &self.data.shape()[..self.nav_dims]
    }
    /// Signal shape.
    pub fn sig_shape(&self) -> &[usize] {
        &self.data.shape()[self.nav_dims..]
    }
    /// The kind of signal.
    pub fn kind(&self) -> SignalKind {
        kind_of(self.nav_dims, self.data.ndim() - self.nav_dims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array;

    #[test]
    fn four_d_stem_frames() {
        let data = Array::from_shape_fn(IxDyn(&[2, 3, 4, 5]), |ix| {
            (ix[0] * 1000 + ix[1] * 100 + ix[2] * 10 + ix[3]) as f32
        });
        let cube = Hypercube::new(data, 2).unwrap();
        let v = cube.view();
        assert_eq!(v.kind(), SignalKind::FourDStem);
        assert_eq!(v.n_frames(), 6);
        assert_eq!(v.frame_len(), 20);
        let f = v.frame(4).unwrap(); // scan (1, 1)
        assert_eq!(f.shape(), &[4, 5]);
        assert_eq!(f[[2, 3]], 1123.0);
        assert!(matches!(v.frame(6), Err(Error::OutOfRange { .. })));
    }

    #[test]
    fn non_standard_layout_is_made_contiguous() {
        let data = Array::from_shape_fn(IxDyn(&[3, 4]), |ix| (ix[0] * 4 + ix[1]) as f64);
        let t = data.reversed_axes();
        let cube = Hypercube::new(t.clone(), 1).unwrap();
        assert!(cube.data().is_standard_layout());
        assert_eq!(cube.data(), &t);
        assert_eq!(cube.kind(), SignalKind::SpectrumSeries);
    }

    #[test]
    fn axis_count_and_sizes_validated() {
        let data = ArrayD::<f32>::zeros(IxDyn(&[2, 2, 3]));
        assert!(Hypercube::new(data.clone(), 4).is_err());
        let axes = vec![Axis::pixels("a", 2), Axis::pixels("b", 2)];
        assert!(matches!(
            Hypercube::with_axes(data, axes, 1),
            Err(Error::ShapeMismatch { .. })
        ));
    }
}
