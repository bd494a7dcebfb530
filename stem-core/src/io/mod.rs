//! File input and output: NumPy `.npy` arrays and 8-bit PNG export.
//!
//! * [`npy`]: read any numeric `.npy` file into an [`NpyArray`](npy::NpyArray) in its stored
//!   element type, or straight to `f32` / `f64`; write any array. Fortran-order files come back
//!   in numpy's logical order. Corrupted or truncated files are [`Error::InvalidFile`].
//! * [`png`]: percentile contrast stretch (optionally logarithmic, for diffraction patterns),
//!   grayscale and RGB PNG files, and `+` markers to show detected atom columns.
//!
//! Raw binary detector files are read through
//! [`RawFileSource`](crate::frame_source::RawFileSource). Microscope formats (DM3/DM4, EMD,
//! MIB, ...) are not handled here.
//!
//! Write an array to a temporary file and read it back:
//!
//! ```
//! use ndarray::{Array3, ArrayD};
//! use stem_core::io::npy::{read_npy, read_npy_f32, write_npy, NpyArray};
//!
//! let path = std::env::temp_dir().join(format!("stem_io_doc_{}.npy", std::process::id()));
//! // An image series [frame, y, x].
//! let series = Array3::from_shape_fn((2, 3, 4), |(f, y, x)| (f * 100 + y * 10 + x) as f64);
//! write_npy(&path, &series)?;
//!
//! let back = read_npy(&path)?;
//! assert_eq!(back.dtype(), "float64");
//! assert_eq!(back.shape(), &[2, 3, 4]);
//! let NpyArray::F64(exact) = back else { unreachable!() };
//! assert_eq!(exact, series.into_dyn());
//!
//! let as_f32: ArrayD<f32> = read_npy_f32(&path)?;
//! assert_eq!(as_f32[[1, 2, 3]], 123.0);
//! std::fs::remove_file(&path).ok();
//! # Ok::<(), stem_core::Error>(())
//! ```
//!
//! [`Error::InvalidFile`]: crate::Error::InvalidFile

pub mod npy;
pub mod png;
