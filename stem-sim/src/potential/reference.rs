//! Test-only access to the abTEM 1.0.11 reference arrays in `shared/reference/abtem/` (generated
//! by the scripts in that folder's README). The folder sits beside the repository root; set
//! `STEM_REFERENCE_DIR` to point elsewhere. A missing folder fails the test loudly.

use std::io::Read;
use std::path::PathBuf;

use ndarray::{Array3, ArrayD, Ix3};

/// The reference folder.
pub(crate) fn dir() -> PathBuf {
    if let Ok(d) = std::env::var("STEM_REFERENCE_DIR") {
        return PathBuf::from(d);
    }
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/reference/abtem");
    assert!(
        d.is_dir(),
        "reference folder {} not found (set STEM_REFERENCE_DIR)",
        d.display()
    );
    d
}

/// A real `.npy` file of the folder as f64.
pub(crate) fn npy_f64(name: &str) -> ArrayD<f64> {
    stem_core::io::npy::read_npy_f64(dir().join(name)).unwrap()
}

/// A `(slice, x, y)` abTEM stack transposed to our `[slice, y, x]` order.
pub(crate) fn stack_yx(name: &str) -> Array3<f64> {
    let a = npy_f64(name).into_dimensionality::<Ix3>().unwrap();
    a.permuted_axes([0, 2, 1]).as_standard_layout().to_owned()
}

/// One array of an uncompressed (stored) `.npz` archive, as f64. Walks the zip local headers;
/// the reference archives are written by `numpy.savez` without compression.
pub(crate) fn npz_f64(name: &str, key: &str) -> Vec<f64> {
    let mut bytes = Vec::new();
    std::fs::File::open(dir().join(name))
        .unwrap()
        .read_to_end(&mut bytes)
        .unwrap();
    let u16_at = |i: usize| u16::from_le_bytes([bytes[i], bytes[i + 1]]) as usize;
    let u32_at = |i: usize| {
        u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]) as usize
    };
    let mut pos = 0;
    let wanted = format!("{key}.npy");
    while pos + 30 <= bytes.len() && u32_at(pos) == 0x0403_4b50 {
        let method = u16_at(pos + 8);
        let mut size = u32_at(pos + 18);
        let name_len = u16_at(pos + 26);
        let extra_len = u16_at(pos + 28);
        let fname = std::str::from_utf8(&bytes[pos + 30..pos + 30 + name_len]).unwrap();
        let start = pos + 30 + name_len + extra_len;
        if size == 0xFFFF_FFFF {
            // ZIP64 (numpy writes it): extra field 0x0001 holds the 8-byte uncompressed and
            // compressed sizes.
            let mut e = pos + 30 + name_len;
            while e + 4 <= start {
                let (id, len) = (u16_at(e), u16_at(e + 2));
                if id == 1 {
                    let v = &bytes[e + 12..e + 20];
                    size = u64::from_le_bytes(v.try_into().unwrap()) as usize;
                }
                e += 4 + len;
            }
        }
        if fname == wanted {
            assert_eq!(method, 0, "{key} is compressed");
            let tmp = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(tmp.path(), &bytes[start..start + size]).unwrap();
            let a = stem_core::io::npy::read_npy_f64(tmp.path()).unwrap();
            return a.iter().copied().collect();
        }
        pos = start + size;
    }
    panic!("{key} not found in {name}");
}

/// ‖a − b‖₂ / ‖b‖₂.
pub(crate) fn rel_l2<'a>(
    a: impl IntoIterator<Item = &'a f64>,
    b: impl IntoIterator<Item = &'a f64>,
) -> f64 {
    let (mut num, mut den) = (0.0, 0.0);
    for (x, y) in a.into_iter().zip(b) {
        num += (x - y) * (x - y);
        den += y * y;
    }
    (num / den).sqrt()
}
