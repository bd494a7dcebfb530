//! A small, strict reader and writer of the safetensors format (f32 tensors + string metadata).
//!
//! Layout (<https://github.com/huggingface/safetensors>): an 8-byte little-endian header length
//! `N`, `N` bytes of JSON (`{"__metadata__": {..}, "<name>": {"dtype": "F32", "shape": [..],
//! "data_offsets": [begin, end]}, ..}`, padded with spaces to a multiple of 8), then the data.
//! Names are written in sorted order, so equal inputs give byte-identical files. The reader
//! checks every length and offset and returns [`Error::InvalidBundle`] for a truncated or
//! corrupted file instead of panicking.

use crate::error::{Error, Result};
use candle_core::{DType, Device, Tensor};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Serialises f32 tensors (converted if needed) and metadata to safetensors bytes.
pub fn to_bytes(
    tensors: &BTreeMap<String, Tensor>,
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<u8>> {
    let mut header = Map::new();
    if !metadata.is_empty() {
        let m: Map<String, Value> = metadata
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        header.insert("__metadata__".into(), Value::Object(m));
    }
    let mut data: Vec<u8> = Vec::new();
    for (name, t) in tensors {
        let v: Vec<f32> = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        let begin = data.len();
        for x in &v {
            data.extend_from_slice(&x.to_le_bytes());
        }
        let mut e = Map::new();
        e.insert("dtype".into(), Value::String("F32".into()));
        e.insert("shape".into(), Value::from(t.dims().to_vec()));
        e.insert("data_offsets".into(), Value::from(vec![begin, data.len()]));
        header.insert(name.clone(), Value::Object(e));
    }
    // serde_json's Map is a BTreeMap here (no preserve_order), so keys are sorted.
    let mut h = serde_json::to_vec(&Value::Object(header)).map_err(|e| Error::InvalidBundle {
        path: "<memory>".into(),
        reason: format!("header serialisation: {e}"),
    })?;
    while h.len() % 8 != 0 {
        h.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + h.len() + data.len());
    out.extend_from_slice(&(h.len() as u64).to_le_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(&data);
    Ok(out)
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
pub fn from_bytes(bytes: &[u8], path: &str) -> Result<Loaded> {
    let bad = |reason: String| Error::InvalidBundle {
        path: path.to_string(),
        reason,
    };
    if bytes.len() < 8 {
        return Err(bad(format!(
            "{} bytes, shorter than the 8-byte header length",
            bytes.len()
        )));
    }
    let mut n8 = [0u8; 8];
    n8.copy_from_slice(&bytes[..8]);
    let n = u64::from_le_bytes(n8);
    if n > (bytes.len() - 8) as u64 {
        return Err(bad(format!(
            "header length {n} exceeds the {} bytes after it",
            bytes.len() - 8
        )));
    }
    let n = n as usize;
    let header: Value =
        serde_json::from_slice(&bytes[8..8 + n]).map_err(|e| bad(format!("header JSON: {e}")))?;
    let Value::Object(header) = header else {
        return Err(bad("header is not a JSON object".into()));
    };
    let data = &bytes[8 + n..];
    let mut tensors = BTreeMap::new();
    let mut metadata = BTreeMap::new();
    let mut spans = Vec::new();
    for (name, e) in &header {
        if name == "__metadata__" {
            let Value::Object(m) = e else {
                return Err(bad("__metadata__ is not an object".into()));
            };
            for (k, v) in m {
                let Value::String(s) = v else {
                    return Err(bad(format!("metadata {k} is not a string")));
                };
                metadata.insert(k.clone(), s.clone());
            }
            continue;
        }
        let dtype = e.get("dtype").and_then(Value::as_str);
        if dtype != Some("F32") {
            return Err(bad(format!(
                "tensor {name}: dtype {dtype:?}, only F32 is supported"
            )));
        }
        let shape: Option<Vec<usize>> = e
            .get("shape")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().map(|v| v.as_u64().map(|u| u as usize)).collect());
        let offs: Option<Vec<usize>> = e
            .get("data_offsets")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().map(|v| v.as_u64().map(|u| u as usize)).collect());
        let (Some(shape), Some(offs)) = (shape, offs) else {
            return Err(bad(format!(
                "tensor {name}: missing or malformed shape/data_offsets"
            )));
        };
        if offs.len() != 2 || offs[0] > offs[1] || offs[1] > data.len() {
            return Err(bad(format!(
                "tensor {name}: data_offsets {offs:?} outside the {} data bytes",
                data.len()
            )));
        }
        let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if count.and_then(|c| c.checked_mul(4)) != Some(offs[1] - offs[0]) {
            return Err(bad(format!(
                "tensor {name}: shape {shape:?} does not match {} data bytes",
                offs[1] - offs[0]
            )));
        }
        let v: Vec<f32> = data[offs[0]..offs[1]]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        spans.push((offs[0], offs[1]));
        tensors.insert(name.clone(), Tensor::from_vec(v, shape, &Device::Cpu)?);
    }
    spans.sort_unstable();
    let mut end = 0;
    for (a, b) in spans {
        if a != end {
            return Err(bad(format!(
                "tensor data overlaps or leaves a gap at byte {a} (expected {end})"
            )));
        }
        end = b;
    }
    if end != data.len() {
        return Err(bad(format!(
            "{} trailing data bytes after the last tensor",
            data.len() - end
        )));
    }
    Ok(Loaded {
        tensors,
        metadata,
        data_len: data.len(),
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
