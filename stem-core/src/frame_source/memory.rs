//! An in-memory hypercube as a [`FrameSource`].

use super::{FrameSource, check_read};
use crate::axis::Axis;
use crate::error::{Error, Result};
use crate::hypercube::HypercubeView;

/// A [`HypercubeView`] as a [`FrameSource`].
///
/// Reads from a view in standard (row-major, contiguous) layout, which every [`Hypercube`]
/// has, are one `copy_from_slice` from the view's memory. Views with other strides are read
/// element by element in logical order (correct, but slower).
///
/// [`Hypercube`]: crate::Hypercube
///
/// ```
/// use ndarray::{ArrayD, IxDyn};
/// use stem_core::frame_source::{FrameSource, InMemorySource};
/// use stem_core::Hypercube;
///
/// // An image series [frame, y, x] = [3, 2, 2].
/// let cube = Hypercube::new(ArrayD::from_shape_fn(IxDyn(&[3, 2, 2]), |ix| ix[0] as f32), 1)?;
/// let source = InMemorySource::new(cube.view());
/// let mut two = vec![0.0f32; 2 * source.frame_len()];
/// source.read_frames(1, &mut two)?;
/// assert_eq!(two, [1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0]);
/// assert_eq!(source.axes().map(|a| a.len()), Some(3));
/// # Ok::<(), stem_core::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct InMemorySource<'a> {
    view: HypercubeView<'a, f32>,
    /// The data as one row-major slice, when the view is contiguous in standard layout.
    contiguous: Option<&'a [f32]>,
}

impl<'a> InMemorySource<'a> {
    /// A source over `view` (zero copy).
    pub fn new(view: HypercubeView<'a, f32>) -> Self {
        let contiguous = view.data().to_slice();
        InMemorySource { view, contiguous }
    }

    /// The underlying view.
    pub fn view(&self) -> &HypercubeView<'a, f32> {
        &self.view
    }
}

impl FrameSource for InMemorySource<'_> {
    fn nav_shape(&self) -> &[usize] {
        self.view.nav_shape()
    }

    fn sig_shape(&self) -> &[usize] {
        self.view.sig_shape()
    }

    fn read_frames(&self, start: usize, out: &mut [f32]) -> Result<()> {
        check_read(self, start, out.len())?;
        // In range: start * frame_len + out.len() <= n_frames * frame_len = number of elements.
        let begin = start * self.frame_len();
        match self.contiguous {
            Some(all) => {
                let src = all.get(begin..begin + out.len()).ok_or(Error::OutOfRange {
                    what: "frame",
                    index: start,
                    len: self.n_frames(),
                })?;
                out.copy_from_slice(src);
            }
            None => {
                let data = self.view.data();
                for (o, &v) in out.iter_mut().zip(data.iter().skip(begin)) {
                    *o = v;
                }
            }
        }
        Ok(())
    }

    fn axes(&self) -> Option<&[Axis]> {
        Some(self.view.axes())
    }
}
