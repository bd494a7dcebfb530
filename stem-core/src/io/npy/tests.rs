use super::*;
use ndarray::{Array, Array2, Array3, array, s};
use proptest::prelude::*;

/// Builds a `.npy` file by hand (independently of ndarray-npy): magic, version, little-endian
/// header length, the dict padded with spaces to a multiple of 64 bytes, a newline, then data.
fn npy_bytes(version: u8, dict: &str, data: &[u8]) -> Vec<u8> {
    let len_bytes = if version == 1 { 2 } else { 4 };
    let unpadded = 8 + len_bytes + dict.len() + 1;
    let pad = (64 - unpadded % 64) % 64;
    let header_len = dict.len() + pad + 1;
    let mut out = b"\x93NUMPY".to_vec();
    out.extend_from_slice(&[version, 0]);
    if version == 1 {
        out.extend_from_slice(&(header_len as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(header_len as u32).to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    out.extend(std::iter::repeat_n(b' ', pad));
    out.push(b'\n');
    out.extend_from_slice(data);
    out
}

fn write_bytes(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn round_trip_every_element_type() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.npy");
    let base = Array::from_shape_fn((2, 3, 4), |(i, j, k)| (i * 12 + j * 4 + k) as i64 - 7);

    write_npy(&p, &base.mapv(|v| v as f32 * 0.25)).unwrap();
    assert_eq!(
        read_npy(&p).unwrap(),
        NpyArray::F32(base.mapv(|v| v as f32 * 0.25).into_dyn())
    );
    write_npy(&p, &base.mapv(|v| v as f64 / 3.0)).unwrap();
    assert_eq!(
        read_npy(&p).unwrap(),
        NpyArray::F64(base.mapv(|v| v as f64 / 3.0).into_dyn())
    );
    macro_rules! int_case {
        ($t:ty, $variant:ident, $name:literal) => {
            let a = base.mapv(|v| (v * 1_000_003) as $t);
            write_npy(&p, &a).unwrap();
            let back = read_npy(&p).unwrap();
            assert_eq!(back.dtype(), $name);
            assert_eq!(back, NpyArray::$variant(a.into_dyn()));
        };
    }
    int_case!(u8, U8, "uint8");
    int_case!(u16, U16, "uint16");
    int_case!(u32, U32, "uint32");
    int_case!(u64, U64, "uint64");
    int_case!(i8, I8, "int8");
    int_case!(i16, I16, "int16");
    int_case!(i32, I32, "int32");
    int_case!(i64, I64, "int64");
    let c = base.mapv(|v| Complex::new(v as f32, -0.5 * v as f32));
    write_npy(&p, &c).unwrap();
    assert_eq!(read_npy(&p).unwrap(), NpyArray::C64(c.into_dyn()));
    let c = base.mapv(|v| Complex::new(v as f64 / 7.0, 1.0));
    write_npy(&p, &c).unwrap();
    assert_eq!(read_npy(&p).unwrap(), NpyArray::C128(c.into_dyn()));
    let b = base.mapv(|v| v % 3 == 0);
    write_npy(&p, &b).unwrap();
    assert_eq!(read_npy(&p).unwrap(), NpyArray::Bool(b.into_dyn()));
}

#[test]
fn scalar_and_zero_size_arrays_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.npy");
    let scalar = ndarray::arr0(2.5f32);
    write_npy(&p, &scalar).unwrap();
    let back = read_npy_f32(&p).unwrap();
    assert_eq!(back.shape(), &[] as &[usize]);
    assert_eq!(back.into_raw_vec_and_offset().0, vec![2.5]);
    write_npy(&p, &Array2::<f64>::zeros((0, 3))).unwrap();
    assert_eq!(read_npy_f64(&p).unwrap().shape(), &[0, 3]);
}

#[test]
fn fortran_order_file_comes_back_in_logical_order() {
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0i32..6).flat_map(|v| v.to_le_bytes()).collect();
    let dict = "{'descr': '<i4', 'fortran_order': True, 'shape': (2, 3), }";
    let p = write_bytes(&dir, "f.npy", &npy_bytes(1, dict, &data));
    let NpyArray::I32(a) = read_npy(&p).unwrap() else {
        panic!("expected int32")
    };
    assert_eq!(a, array![[0, 2, 4], [1, 3, 5]].into_dyn());
    assert!(a.is_standard_layout());
    // Writing a transposed (Fortran-layout) and a strided view keeps the logical order.
    let m = Array2::from_shape_fn((3, 5), |(y, x)| (y * 5 + x) as f32);
    let p = dir.path().join("t.npy");
    write_npy(&p, &m.t()).unwrap();
    assert_eq!(read_npy_f32(&p).unwrap(), m.t().into_dyn());
    write_npy(&p, &m.slice(s![..;2, 1..;2])).unwrap();
    assert_eq!(
        read_npy_f32(&p).unwrap(),
        m.slice(s![..;2, 1..;2]).into_dyn()
    );
}

#[test]
fn big_endian_and_version_2_files_decode() {
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = [1.5f64, -2.0, 1e10]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect();
    let p = write_bytes(
        &dir,
        "be.npy",
        &npy_bytes(
            1,
            "{'descr': '>f8', 'fortran_order': False, 'shape': (3,), }",
            &data,
        ),
    );
    assert_eq!(
        read_npy_f64(&p).unwrap().into_raw_vec_and_offset().0,
        vec![1.5, -2.0, 1e10]
    );
    let data: Vec<u8> = [258u16, 65535]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect();
    let p = write_bytes(
        &dir,
        "v2.npy",
        &npy_bytes(
            2,
            "{'descr': '>u2', 'fortran_order': False, 'shape': (1, 2), }",
            &data,
        ),
    );
    assert_eq!(
        read_npy(&p).unwrap(),
        NpyArray::U16(array![[258u16, 65535]].into_dyn())
    );
}

#[test]
fn conversions_to_float() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.npy");
    write_npy(&p, &array![[-3i16, 7], [300, -32768]]).unwrap();
    assert_eq!(
        read_npy_f32(&p).unwrap(),
        array![[-3.0f32, 7.0], [300.0, -32768.0]].into_dyn()
    );
    assert_eq!(
        read_npy_f64(&p).unwrap(),
        array![[-3.0f64, 7.0], [300.0, -32768.0]].into_dyn()
    );
    write_npy(&p, &array![true, false, true]).unwrap();
    assert_eq!(
        read_npy_f32(&p).unwrap(),
        array![1.0f32, 0.0, 1.0].into_dyn()
    );
    write_npy(&p, &array![0.1f64, 1e40]).unwrap();
    assert_eq!(
        read_npy_f32(&p).unwrap(),
        array![0.1f32, f32::INFINITY].into_dyn()
    );
    write_npy(&p, &array![Complex::new(1.0f32, 2.0)]).unwrap();
    assert!(matches!(read_npy_f32(&p), Err(Error::Unsupported { .. })));
    assert!(matches!(read_npy_f64(&p), Err(Error::Unsupported { .. })));
}

#[test]
fn missing_file_is_io_error_with_path() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("absent.npy");
    match read_npy(&p) {
        Err(Error::Io { path, .. }) => assert_eq!(path, p),
        other => panic!("expected Io, got {other:?}"),
    }
    let p = dir.path().join("no_such_dir").join("x.npy");
    assert!(matches!(write_npy(&p, &array![1.0f32]), Err(Error::Io { path, .. }) if path == p));
}

fn assert_invalid_file(dir: &tempfile::TempDir, bytes: &[u8], needle: &str) {
    let p = write_bytes(dir, "bad.npy", bytes);
    match read_npy(&p) {
        Err(Error::InvalidFile { reason, path }) => {
            assert_eq!(path, p);
            assert!(reason.contains(needle), "`{reason}` lacks `{needle}`");
        }
        other => panic!("expected InvalidFile ({needle}), got {other:?}"),
    }
}

#[test]
fn garbage_and_truncated_files_are_invalid_file_errors() {
    let dir = tempfile::tempdir().unwrap();
    let good = npy_bytes(
        1,
        "{'descr': '<f4', 'fortran_order': False, 'shape': (4, 4), }",
        &[0u8; 64],
    );
    assert_invalid_file(&dir, b"", "truncated");
    assert_invalid_file(&dir, b"PK\x03\x04 this is a zip, not npy", "magic");
    assert_invalid_file(&dir, &good[..7], "truncated");
    assert_invalid_file(&dir, &good[..40], "truncated"); // inside the header
    assert_invalid_file(&dir, &good[..good.len() - 3], "61"); // data 3 bytes short
    let mut long = good.clone();
    long.push(0);
    assert_invalid_file(&dir, &long, "65");
    let mut version = good.clone();
    version[6] = 9;
    assert_invalid_file(&dir, &version, "version");
    // A v2 header announcing 4 GiB of header in a tiny file.
    let mut huge = b"\x93NUMPY\x02\x00".to_vec();
    huge.extend_from_slice(&u32::MAX.to_le_bytes());
    huge.extend_from_slice(b"{}\n");
    assert_invalid_file(&dir, &huge, "header");
    let bad_dict = npy_bytes(
        1,
        "{'descr': '<f4', 'fortran_order': maybe, 'shape': (4,), }",
        &[0; 16],
    );
    assert_invalid_file(&dir, &bad_dict, "malformed");
    let no_shape = npy_bytes(1, "{'descr': '<f4', 'fortran_order': False, }", &[0; 16]);
    assert_invalid_file(&dir, &no_shape, "malformed");
    let deep = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': {}4{}, }}",
        "(".repeat(5000),
        ",)".repeat(5000)
    );
    assert_invalid_file(&dir, &npy_bytes(1, &deep, &[0; 4]), "nesting");
    // Shapes whose size overflows, or is huge but absent from the file: no allocation.
    let overflow = "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296), }";
    assert_invalid_file(&dir, &npy_bytes(1, overflow, &[0; 8]), "overflows");
    let huge_shape = "{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000, 1000), }";
    assert_invalid_file(&dir, &npy_bytes(1, huge_shape, &[0; 8]), "8000000000000");
    // Invalid bool bytes.
    let bools = npy_bytes(
        1,
        "{'descr': '|b1', 'fortran_order': False, 'shape': (2,), }",
        &[1, 7],
    );
    assert_invalid_file(&dir, &bools, "data");
}

#[test]
fn unsupported_dtypes_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    for dict in [
        "{'descr': '<f2', 'fortran_order': False, 'shape': (2,), }",
        "{'descr': '<U2', 'fortran_order': False, 'shape': (2,), }",
        "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }",
    ] {
        let p = write_bytes(&dir, "u.npy", &npy_bytes(1, dict, &[0; 4]));
        assert!(
            matches!(read_npy(&p), Err(Error::Unsupported { .. })),
            "{dict}"
        );
    }
}

#[test]
fn element_sizes() {
    assert_eq!(element_size("<f4"), Some(4));
    assert_eq!(element_size(">c16"), Some(16));
    assert_eq!(element_size("|b1"), Some(1));
    assert_eq!(element_size("B"), Some(1));
    assert_eq!(element_size("<U10"), None);
    assert_eq!(element_size("<M8[ns]"), None);
    assert_eq!(element_size(""), None);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    /// Arbitrary bytes after a valid magic and version never panic.
    #[test]
    fn random_bytes_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..300), v2 in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = b"\x93NUMPY".to_vec();
        bytes.extend_from_slice(if v2 { &[2, 0] } else { &[1, 0] });
        bytes.extend_from_slice(&tail);
        let p = write_bytes(&dir, "r.npy", &bytes);
        let _ = read_npy(&p);
    }

    /// Random small f32 arrays of any rank survive a round trip bit for bit.
    #[test]
    fn f32_round_trip(shape in proptest::collection::vec(1usize..5, 0..4), seed in any::<u32>()) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.npy");
        let a = ArrayD::from_shape_fn(IxDyn(&shape), |ix| {
            f32::from_bits(seed.wrapping_mul(2_654_435_761).wrapping_add(ix.slice().iter().sum::<usize>() as u32) & 0x7f7f_ffff)
        });
        write_npy(&p, &a).unwrap();
        let back = read_npy_f32(&p).unwrap();
        prop_assert_eq!(back.shape(), a.shape());
        prop_assert!(back.iter().zip(a.iter()).all(|(x, y)| x.to_bits() == y.to_bits()));
    }
}

#[test]
fn three_d_read_matches_written_values() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.npy");
    let cube = Array3::from_shape_fn((3, 4, 5), |(a, b, c)| (a * 100 + b * 10 + c) as u32);
    write_npy(&p, &cube).unwrap();
    let back = read_npy_f32(&p).unwrap();
    assert_eq!(back[IxDyn(&[2, 3, 4])], 234.0);
    assert_eq!(back[IxDyn(&[1, 0, 2])], 102.0);
}
