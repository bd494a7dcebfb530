//! Safetensors I/O for f32 tensors plus string metadata, through the `safetensors` crate (the
//! same version candle uses).
//!
//! Layout (<https://github.com/huggingface/safetensors>): an 8-byte little-endian header length
//! `N`, `N` bytes of JSON (`{"__metadata__": {..}, "<name>": {"dtype": "F32", "shape": [..],
//! "data_offsets": [begin, end]}, ..}`), then the data. The crate orders tensors by name (all are
//! F32), so equal inputs give byte-identical files; it writes its metadata map in hash order, so
//! [`to_bytes`] accepts at most one metadata entry to keep files byte-reproducible. The reader
//! (the crate's validating parser: header bounds, dtype/shape/offset consistency, contiguous data
//! covering the whole buffer) returns [`Error::InvalidBundle`] for a truncated or corrupted file
//! instead of panicking.

use crate::error::{Error, Result};
use candle_core::{DType, Device, Tensor};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::{BTreeMap, HashMap};

/// Serialises f32 tensors (converted if needed) and at most one metadata entry to safetensors
/// bytes.
///
/// # Errors
/// [`Error::InvalidParameter`] for more than one metadata entry; [`Error::Candle`] when a
/// tensor cannot be read; [`Error::InvalidBundle`] when the crate rejects the data.
pub fn to_bytes(
    tensors: &BTreeMap<String, Tensor>,
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<u8>> {
    if metadata.len() > 1 {
        return Err(Error::param(
            "metadata",
            format!(
                "{} entries; at most one keeps the file byte-reproducible",
                metadata.len()
            ),
        ));
    }
    let mut raw: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let v: Vec<f32> = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        raw.push((name.clone(), t.dims().to_vec(), bytes));
    }
    let bad = |e: safetensors::SafeTensorError| Error::InvalidBundle {
        path: "<memory>".into(),
        reason: format!("safetensors serialisation: {e}"),
    };
    let views = raw
        .iter()
        .map(|(name, shape, bytes)| {
            TensorView::new(Dtype::F32, shape.clone(), bytes).map(|v| (name.as_str(), v))
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(bad)?;
    let info: Option<HashMap<String, String>> = if metadata.is_empty() {
        None
    } else {
        Some(
            metadata
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )
    };
    safetensors::serialize(views, info).map_err(bad)
}

/// Tensors and metadata read from safetensors bytes.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// f32 tensors by name.
    pub tensors: BTreeMap<String, Tensor>,
    /// The `__metadata__` strings.
    pub metadata: BTreeMap<String, String>,
    /// The raw data section (for checksums).
    pub data_len: usize,
}

/// Parses safetensors bytes (F32 tensors only). `path` names the source in errors.
///
/// # Errors
/// [`Error::InvalidBundle`] for anything the crate's validation rejects and for non-F32 tensors.
pub fn from_bytes(bytes: &[u8], path: &str) -> Result<Loaded> {
    let bad = |reason: String| Error::InvalidBundle {
        path: path.to_string(),
        reason,
    };
    let (header_len, meta) =
        SafeTensors::read_metadata(bytes).map_err(|e| bad(format!("safetensors header: {e}")))?;
    let st = SafeTensors::deserialize(bytes).map_err(|e| bad(format!("safetensors: {e}")))?;
    let metadata: BTreeMap<String, String> = meta
        .metadata()
        .as_ref()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let mut tensors = BTreeMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(bad(format!(
                "tensor {name}: dtype {:?}, only F32 is supported",
                view.dtype()
            )));
        }
        let v: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let t = Tensor::from_vec(v, view.shape().to_vec(), &Device::Cpu)?;
        tensors.insert(name, t);
    }
    Ok(Loaded {
        tensors,
        metadata,
        data_len: bytes.len() - 8 - header_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (BTreeMap<String, Tensor>, BTreeMap<String, String>) {
        let mut t = BTreeMap::new();
        t.insert(
            "b".to_string(),
            Tensor::new(&[1f32, 2., 3.], &Device::Cpu).unwrap(),
        );
        t.insert(
            "a".to_string(),
            Tensor::new(&[[4f32, 5.], [6., 7.]], &Device::Cpu).unwrap(),
        );
        let mut m = BTreeMap::new();
        m.insert("card".to_string(), "{\"x\":1}".to_string());
        (t, m)
    }

    #[test]
    fn round_trip_is_exact_and_deterministic() {
        let (t, m) = sample();
        let bytes = to_bytes(&t, &m).unwrap();
        assert_eq!(bytes, to_bytes(&t, &m).unwrap());
        let l = from_bytes(&bytes, "x").unwrap();
        assert_eq!(l.metadata, m);
        assert_eq!(
            l.tensors["a"].to_vec2::<f32>().unwrap(),
            vec![vec![4., 5.], vec![6., 7.]]
        );
        assert_eq!(l.tensors["b"].to_vec1::<f32>().unwrap(), vec![1., 2., 3.]);
        assert_eq!((u64::from_le_bytes(bytes[..8].try_into().unwrap()) % 8), 0);
        let mut two = m.clone();
        two.insert("other".into(), "y".into());
        assert!(matches!(
            to_bytes(&t, &two),
            Err(Error::InvalidParameter { .. })
        ));
    }

    #[test]
    fn truncated_and_corrupted_inputs_are_typed_errors() {
        let (t, m) = sample();
        let bytes = to_bytes(&t, &m).unwrap();
        for cut in [0, 4, 8, 20, bytes.len() - 1] {
            assert!(
                matches!(
                    from_bytes(&bytes[..cut], "x"),
                    Err(Error::InvalidBundle { .. })
                ),
                "cut {cut}"
            );
        }
        let mut big = bytes.clone();
        big[0..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            from_bytes(&big, "x"),
            Err(Error::InvalidBundle { .. })
        ));
        let mut junk = bytes.clone();
        junk[10] = b'#';
        assert!(matches!(
            from_bytes(&junk, "x"),
            Err(Error::InvalidBundle { .. })
        ));
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(matches!(
            from_bytes(&extra, "x"),
            Err(Error::InvalidBundle { .. })
        ));
    }
}
