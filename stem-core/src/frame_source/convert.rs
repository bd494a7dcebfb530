//! Conversion of raw little/big-endian bytes to `f32`: one tight loop over `chunks_exact` per
//! element type, so that the compiler can vectorise it.

use super::raw::{DType, Endianness};

/// Converts `out.len()` elements of type `dtype` stored with `endianness` in `bytes` to `f32`.
///
/// `bytes.len()` must be `out.len() * dtype.size_bytes()` (the caller guarantees it; extra
/// bytes are ignored, missing ones leave the tail of `out` untouched). Integers and `f64`
/// are converted with `as f32` (round to nearest; values above 2^24 lose precision).
pub(crate) fn convert_to_f32(dtype: DType, endianness: Endianness, bytes: &[u8], out: &mut [f32]) {
    macro_rules! run {
        ($t:ty, $n:literal) => {{
            let chunks = bytes.chunks_exact($n);
            match endianness {
                Endianness::Little => {
                    for (o, c) in out.iter_mut().zip(chunks) {
                        *o = <$t>::from_le_bytes(c.try_into().unwrap_or([0; $n])) as f32;
                    }
                }
                Endianness::Big => {
                    for (o, c) in out.iter_mut().zip(chunks) {
                        *o = <$t>::from_be_bytes(c.try_into().unwrap_or([0; $n])) as f32;
                    }
                }
            }
        }};
    }
    match dtype {
        DType::U8 => {
            for (o, &b) in out.iter_mut().zip(bytes) {
                *o = f32::from(b);
            }
        }
        DType::I8 => {
            for (o, &b) in out.iter_mut().zip(bytes) {
                *o = f32::from(b as i8);
            }
        }
        DType::U16 => run!(u16, 2),
        DType::I16 => run!(i16, 2),
        DType::U32 => run!(u32, 4),
        DType::I32 => run!(i32, 4),
        DType::U64 => run!(u64, 8),
        DType::I64 => run!(i64, 8),
        DType::F32 => run!(f32, 4),
        DType::F64 => run!(f64, 8),
    }
}
