//! Reading the input arrays of the subcommands from any format [`stem_core::io::open`] reads.
//!
//! NPY files go through the NPY reader directly (every dtype converted to `f32`); any other
//! file (DM3/DM4, MRC, TIFF, MIB, SER, ... — see [`stem_core::io::Format`]) is opened with
//! [`stem_core::io::open`] and its first data set is loaded as a hypercube in the file's own
//! axis order (`[nav..., sig...]`, e.g. `[frame, y, x]` for a series, `[scan_y, scan_x, ky, kx]`
//! for 4D-STEM). Calibrations are printed by `stem info`; the array is what the algorithms need.

use crate::CliError;
use ndarray::ArrayD;
use std::path::Path;
use stem_core::io;

/// Reads the array stored in `path` as `f32`, whatever the format.
pub fn read_array(path: &Path) -> Result<ArrayD<f32>, CliError> {
    let is_npy = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("npy"));
    if is_npy {
        return Ok(io::npy::read_npy_f32(path)?);
    }
    let dataset = io::open(path)?;
    let cube = dataset.into_first_hypercube()?;
    Ok(cube.into_parts().0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn reads_npy_and_tiff_alike() {
        let dir = tempfile::tempdir().unwrap();
        let img = Array2::from_shape_fn((5, 7), |(y, x)| (y * 7 + x) as f32);
        let npy = dir.path().join("a.npy");
        io::npy::write_npy(&npy, &img).unwrap();
        let a = read_array(&npy).unwrap();
        assert_eq!(a.shape(), &[5, 7]);
        assert_eq!(a[[2, 3]], 17.0);
        let tif = dir.path().join("a.tif");
        let axes = [
            stem_core::axis::Axis::pixels("y", 5),
            stem_core::axis::Axis::pixels("x", 7),
        ];
        io::tiff::write_tiff(&tif, img.view(), &axes).unwrap();
        let b = read_array(&tif).unwrap();
        assert_eq!(b, a);
    }

    #[test]
    fn unknown_format_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.bin");
        std::fs::write(&p, b"not a microscope file").unwrap();
        assert!(read_array(&p).is_err());
    }
}
