use super::*;
use crate::error::Error;
use crate::hypercube::{Hypercube, HypercubeView};
use crate::parallel::Parallelism;
use crate::progress::{CancelFlag, NoProgress};
use ndarray::{ArrayD, IxDyn};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::io::Write;

const ALL_DTYPES: [DType; 10] = [
    DType::U8,
    DType::U16,
    DType::U32,
    DType::U64,
    DType::I8,
    DType::I16,
    DType::I32,
    DType::I64,
    DType::F32,
    DType::F64,
];

/// Random values of `dtype`, encoded independently of the library, and their f32 conversion.
fn encode(dtype: DType, endianness: Endianness, n: usize, seed: u64) -> (Vec<u8>, Vec<f32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut bytes = Vec::new();
    let mut values = Vec::new();
    macro_rules! gen_values {
        ($t:ty, $draw:expr) => {
            for _ in 0..n {
                let v: $t = $draw(&mut rng);
                match endianness {
                    Endianness::Little => bytes.extend_from_slice(&v.to_le_bytes()),
                    Endianness::Big => bytes.extend_from_slice(&v.to_be_bytes()),
                }
                values.push(v as f32);
            }
        };
    }
    match dtype {
        DType::U8 => gen_values!(u8, |r: &mut ChaCha8Rng| r.random()),
        DType::U16 => gen_values!(u16, |r: &mut ChaCha8Rng| r.random()),
        DType::U32 => gen_values!(u32, |r: &mut ChaCha8Rng| r.random()),
        DType::U64 => gen_values!(u64, |r: &mut ChaCha8Rng| r.random()),
        DType::I8 => gen_values!(i8, |r: &mut ChaCha8Rng| r.random()),
        DType::I16 => gen_values!(i16, |r: &mut ChaCha8Rng| r.random()),
        DType::I32 => gen_values!(i32, |r: &mut ChaCha8Rng| r.random()),
        DType::I64 => gen_values!(i64, |r: &mut ChaCha8Rng| r.random()),
        DType::F32 => gen_values!(f32, |r: &mut ChaCha8Rng| r.random::<f32>() * 2000.0
            - 1000.0),
        DType::F64 => gen_values!(f64, |r: &mut ChaCha8Rng| r.random::<f64>() * 2e6 - 1e6),
    }
    (bytes, values)
}

/// Writes a raw file: file header, then per frame a frame header and the frame's bytes, then
/// an optional trailer. Header bytes are 0xEE so that reading them as data would show.
fn write_raw(
    bytes: &[u8],
    frame_bytes: usize,
    header: usize,
    frame_header: usize,
    trailer: usize,
) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    let mut all = vec![0xEE; header];
    for frame in bytes.chunks(frame_bytes) {
        all.extend(std::iter::repeat_n(0xEE, frame_header));
        all.extend_from_slice(frame);
    }
    all.extend(std::iter::repeat_n(0xEE, trailer));
    file.write_all(&all).unwrap();
    file.flush().unwrap();
    file
}

fn read_all(source: &dyn FrameSource) -> Vec<f32> {
    let mut out = vec![f32::NAN; source.n_frames() * source.frame_len()];
    source.read_frames(0, &mut out).unwrap();
    out
}

#[test]
fn raw_matches_in_memory_for_all_dtypes_endiannesses_and_headers() {
    let (nav, sig) = (vec![3, 2], vec![4, 5]);
    let n = 6 * 20;
    for (seed, dtype) in ALL_DTYPES.into_iter().enumerate() {
        for endianness in [Endianness::Little, Endianness::Big] {
            let (bytes, values) = encode(dtype, endianness, n, seed as u64);
            let cube = Hypercube::new(
                ArrayD::from_shape_vec(IxDyn(&[3, 2, 4, 5]), values).unwrap(),
                2,
            )
            .unwrap();
            let memory = InMemorySource::new(cube.view());
            for (header, frame_header, trailer) in [(0, 0, 0), (7, 3, 0), (5, 0, 11), (0, 256, 1)] {
                let file = write_raw(
                    &bytes,
                    20 * dtype.size_bytes(),
                    header,
                    frame_header,
                    trailer,
                );
                let mut layout = RawLayout::new(dtype, endianness, nav.clone(), sig.clone());
                layout.header_offset_bytes = header as u64;
                layout.frame_header_bytes = frame_header as u64;
                let raw = RawFileSource::open(file.path(), layout).unwrap();
                let case =
                    format!("{dtype:?} {endianness:?} header {header} frame header {frame_header}");
                assert_eq!(raw.n_frames(), 6, "{case}");
                assert_eq!(raw.frame_len(), 20, "{case}");
                assert_eq!(read_all(&raw), read_all(&memory), "{case}");
                // Single frames and runs starting in the middle.
                let (mut a, mut b) = (vec![0.0; 20], vec![0.0; 20]);
                for i in 0..6 {
                    raw.read_frame(i, &mut a).unwrap();
                    memory.read_frame(i, &mut b).unwrap();
                    assert_eq!(a, b, "{case} frame {i}");
                }
                let (mut a, mut b) = (vec![0.0; 60], vec![0.0; 60]);
                raw.read_frames(2, &mut a).unwrap();
                memory.read_frames(2, &mut b).unwrap();
                assert_eq!(a, b, "{case} frames 2..5");
            }
        }
    }
}

#[test]
fn known_big_endian_values_decode() {
    // 0x0102 = 258 big-endian; -2 as i16 big-endian is FF FE; 1.5f32 big-endian 3F C0 00 00.
    let cases: [(DType, Vec<u8>, f32); 3] = [
        (DType::U16, vec![0x01, 0x02], 258.0),
        (DType::I16, vec![0xFF, 0xFE], -2.0),
        (DType::F32, vec![0x3F, 0xC0, 0x00, 0x00], 1.5),
    ];
    for (dtype, bytes, expected) in cases {
        let file = write_raw(&bytes, bytes.len(), 0, 0, 0);
        let layout = RawLayout::new(dtype, Endianness::Big, vec![], vec![1]);
        let raw = RawFileSource::open(file.path(), layout).unwrap();
        assert_eq!(raw.n_frames(), 1);
        let mut out = [0.0f32];
        raw.read_frame(0, &mut out).unwrap();
        assert_eq!(out[0], expected, "{dtype:?}");
    }
}

#[test]
fn truncated_file_is_a_typed_error_naming_sizes() {
    let file = write_raw(&[0u8; 99], 99, 0, 0, 0);
    let layout = RawLayout::new(DType::U16, Endianness::Little, vec![5], vec![10]);
    match RawFileSource::open(file.path(), layout) {
        Err(Error::InvalidFile { reason, .. }) => {
            assert!(reason.contains("99 bytes"), "{reason}");
            assert!(reason.contains("100 bytes"), "{reason}");
        }
        other => panic!("expected InvalidFile, got {other:?}"),
    }
    // Per-frame headers count towards the needed size.
    let file = write_raw(&[0u8; 100], 100, 0, 0, 0);
    let mut layout = RawLayout::new(DType::U16, Endianness::Little, vec![5], vec![10]);
    layout.frame_header_bytes = 1;
    assert!(matches!(
        RawFileSource::open(file.path(), layout),
        Err(Error::InvalidFile { .. })
    ));
}

#[test]
fn missing_file_is_io_error_with_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.raw");
    let layout = RawLayout::new(DType::U8, Endianness::Little, vec![1], vec![1]);
    match RawFileSource::open(&path, layout) {
        Err(Error::Io { path: p, .. }) => assert_eq!(p, path),
        other => panic!("expected Io, got {other:?}"),
    }
}

#[test]
fn invalid_and_overflowing_layouts_are_errors_not_panics() {
    let file = write_raw(&[0u8; 64], 64, 0, 0, 0);
    let base = RawLayout::new(DType::U16, Endianness::Little, vec![2], vec![4]);
    let mut cases = Vec::new();
    for (nav, sig) in [
        (vec![usize::MAX, 2], vec![4]),
        (vec![2], vec![usize::MAX / 2 + 1]), // frame bytes overflow (x 2 bytes)
        (vec![usize::MAX / 8, 3], vec![4]),
        (vec![2], vec![]),
        (vec![0, 2], vec![4]),
        (vec![2], vec![4, 0]),
    ] {
        cases.push(RawLayout {
            nav_shape: nav,
            sig_shape: sig,
            ..base.clone()
        });
    }
    cases.push(RawLayout {
        frame_header_bytes: u64::MAX,
        ..base.clone()
    });
    cases.push(RawLayout {
        header_offset_bytes: u64::MAX,
        ..base.clone()
    });
    cases.push(RawLayout {
        header_offset_bytes: u64::MAX - 4,
        frame_header_bytes: 1,
        ..base.clone()
    });
    for layout in cases {
        let result = RawFileSource::open(file.path(), layout.clone());
        assert!(
            matches!(
                result,
                Err(Error::InvalidParameter { .. }) | Err(Error::InvalidFile { .. })
            ),
            "{layout:?} gave {result:?}"
        );
    }
    // The valid base layout opens.
    assert!(RawFileSource::open(file.path(), base).is_ok());
}

fn check_bad_requests(source: &dyn FrameSource) {
    let fl = source.frame_len();
    let n = source.n_frames();
    let mut buf = vec![0.0f32; 3 * fl];
    // Misaligned and empty buffers.
    assert!(matches!(
        source.read_frames(0, &mut buf[..fl + 1]),
        Err(Error::InvalidParameter { .. })
    ));
    assert!(matches!(
        source.read_frames(0, &mut buf[..0]),
        Err(Error::InvalidParameter { .. })
    ));
    // Out of range: past the end, straddling the end, and a start that would overflow.
    assert!(matches!(
        source.read_frames(n, &mut buf[..fl]),
        Err(Error::OutOfRange { .. })
    ));
    assert!(
        matches!(source.read_frames(n - 2, &mut buf), Err(Error::OutOfRange { index, len, .. }) if index == n + 1 && len == n)
    );
    assert!(matches!(
        source.read_frames(usize::MAX, &mut buf),
        Err(Error::OutOfRange { .. })
    ));
    // read_frame needs exactly one frame.
    assert!(matches!(
        source.read_frame(0, &mut buf[..2 * fl]),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(matches!(
        source.read_frame(n, &mut buf[..fl]),
        Err(Error::OutOfRange { .. })
    ));
    // The last frames are readable.
    assert!(source.read_frames(n - 3, &mut buf).is_ok());
}

#[test]
fn out_of_range_and_misaligned_buffers_are_errors() {
    let cube = Hypercube::new(ArrayD::<f32>::zeros(IxDyn(&[5, 2, 3])), 1).unwrap();
    check_bad_requests(&InMemorySource::new(cube.view()));
    let file = write_raw(&[0u8; 30], 30, 0, 0, 0);
    let layout = RawLayout::new(DType::U8, Endianness::Little, vec![5], vec![2, 3]);
    check_bad_requests(&RawFileSource::open(file.path(), layout).unwrap());
}

#[test]
fn non_contiguous_view_reads_in_logical_order() {
    let data = ArrayD::from_shape_fn(IxDyn(&[4, 3, 2]), |ix| {
        (ix[0] * 100 + ix[1] * 10 + ix[2]) as f32
    });
    let reversed = data.clone().reversed_axes(); // shape [2, 3, 4], Fortran strides
    let axes: Vec<crate::Axis> = [2, 3, 4]
        .iter()
        .map(|&n| crate::Axis::pixels("a", n))
        .collect();
    let view = HypercubeView::with_axes(reversed.view(), &axes, 1).unwrap();
    let strided = InMemorySource::new(view);
    let standard = Hypercube::new(reversed.as_standard_layout().into_owned(), 1).unwrap();
    let contiguous = InMemorySource::new(standard.view());
    assert_eq!(read_all(&strided), read_all(&contiguous));
    let mut frame = vec![0.0; 12];
    strided.read_frame(1, &mut frame).unwrap();
    // Frame 1 of the reversed array: element [y, x] = data[x, y, 1].
    assert_eq!(frame[..4], [1.0, 101.0, 201.0, 301.0]);
}

#[test]
fn axes_are_reported_and_validated() {
    let file = write_raw(&[0u8; 12], 12, 0, 0, 0);
    let layout = RawLayout::new(DType::U8, Endianness::Little, vec![2], vec![2, 3]);
    let plain = RawFileSource::open(file.path(), layout.clone()).unwrap();
    assert!(plain.axes().is_none());
    let axes = vec![
        crate::Axis::pixels("frame", 2),
        crate::Axis::new("y", 2, 0.5, 0.0, "Å"),
        crate::Axis::new("x", 3, 0.5, 0.0, "Å"),
    ];
    let calibrated =
        RawFileSource::open_with_axes(file.path(), layout.clone(), axes.clone()).unwrap();
    assert_eq!(calibrated.axes(), Some(&axes[..]));
    let wrong = axes[..2].to_vec();
    assert!(matches!(
        RawFileSource::open_with_axes(file.path(), layout, wrong),
        Err(Error::ShapeMismatch { .. })
    ));
}

/// A cube whose every element equals its frame index.
fn frame_index_cube(n_frames: usize, frame_len: usize) -> Hypercube {
    Hypercube::new(
        ArrayD::from_shape_fn(IxDyn(&[n_frames, frame_len]), |ix| ix[0] as f32),
        1,
    )
    .unwrap()
}

#[test]
fn for_each_chunk_visits_every_frame_once_with_partial_last_chunk() {
    let cube = frame_index_cube(10, 3);
    let source = InMemorySource::new(cube.view());
    let progress = CancelFlag::default();
    let mut seen = vec![0usize; 10];
    let mut chunks = Vec::new();
    for_each_chunk(&source, 4, &progress, |chunk, frames| {
        assert_eq!(frames.len(), chunk.count * 3);
        for (i, frame) in chunk.frames().zip(frames.chunks_exact(3)) {
            assert!(frame.iter().all(|&v| v == i as f32));
            seen[i] += 1;
        }
        chunks.push(chunk);
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, vec![1; 10]);
    let expected = [(0, 4), (4, 4), (8, 2)].map(|(start, count)| ChunkInfo { start, count });
    assert_eq!(chunks, expected);
    assert_eq!(progress.total(), 10);
    assert_eq!(progress.done(), 10);
}

#[test]
fn for_each_chunk_cancels_after_n_frames() {
    let cube = frame_index_cube(10, 2);
    let source = InMemorySource::new(cube.view());
    let progress = CancelFlag::cancel_after(5);
    let mut calls = 0;
    let result = for_each_chunk(&source, 2, &progress, |_, _| {
        calls += 1;
        Ok(())
    });
    assert!(matches!(result, Err(Error::Cancelled)));
    assert_eq!(calls, 3); // 2 + 2 + 2 frames reach 5, the 4th chunk is not started
}

#[test]
fn chunk_loops_validate_and_propagate_errors() {
    let cube = frame_index_cube(4, 2);
    let source = InMemorySource::new(cube.view());
    assert!(matches!(
        for_each_chunk(&source, 0, &NoProgress, |_, _| Ok(())),
        Err(Error::InvalidParameter {
            name: "frames_per_chunk",
            ..
        })
    ));
    let seq = Parallelism::Sequential;
    assert!(map_reduce_chunks(&source, 0, seq, &NoProgress, |_, _| Ok(()), |a, _| a).is_err());
    let failing = for_each_chunk(&source, 1, &NoProgress, |c, _| {
        if c.start == 2 {
            Err(Error::invalid("test", "boom"))
        } else {
            Ok(())
        }
    });
    assert!(matches!(
        failing,
        Err(Error::InvalidParameter { name: "test", .. })
    ));
    // A chunk larger than the source is one chunk.
    let mut chunks = Vec::new();
    for_each_chunk(&source, 1000, &NoProgress, |c, _| {
        chunks.push(c);
        Ok(())
    })
    .unwrap();
    assert_eq!(chunks, [ChunkInfo { start: 0, count: 4 }]);
    // No frames: nothing to do.
    let empty = Hypercube::new(ArrayD::<f32>::zeros(IxDyn(&[0, 3])), 1).unwrap();
    let empty = InMemorySource::new(empty.view());
    assert!(for_each_chunk(&empty, 2, &NoProgress, |_, _| panic!("no chunk expected")).is_ok());
    let none = map_reduce_chunks(&empty, 2, seq, &NoProgress, |_, _| Ok(1), |a, b| a + b).unwrap();
    assert_eq!(none, None);
}

#[test]
fn map_reduce_equals_direct_sum_and_is_thread_count_independent() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let data = ArrayD::from_shape_fn(IxDyn(&[37, 8, 8]), |_| rng.random::<f32>() * 100.0);
    let direct: f64 = data.iter().map(|&v| f64::from(v)).sum();
    let cube = Hypercube::new(data, 1).unwrap();
    let source = InMemorySource::new(cube.view());
    // f32 partial sums reduced in f32: the result depends on the reduction order, so bitwise
    // equality across thread counts shows the order is fixed.
    let run = |parallelism| {
        map_reduce_chunks(
            &source,
            5,
            parallelism,
            &NoProgress,
            |_, frames| Ok(frames.iter().sum::<f32>()),
            |a, b| a + b,
        )
        .unwrap()
        .unwrap()
    };
    let one = run(Parallelism::Threads(1));
    let two = run(Parallelism::Threads(2));
    assert_eq!(one.to_bits(), two.to_bits());
    assert_eq!(run(Parallelism::Auto).to_bits(), one.to_bits());
    let rel = (f64::from(one) - direct).abs() / direct;
    assert!(rel < 1e-6, "relative error {rel}");
    // Exact check of the order: concatenating chunk starts gives them in chunk order.
    for parallelism in [Parallelism::Threads(1), Parallelism::Threads(2)] {
        let starts = map_reduce_chunks(
            &source,
            5,
            parallelism,
            &NoProgress,
            |c, _| Ok(vec![c.start]),
            |mut a, b| {
                a.extend(b);
                a
            },
        )
        .unwrap()
        .unwrap();
        assert_eq!(starts, (0..37).step_by(5).collect::<Vec<_>>());
    }
}

#[test]
fn map_reduce_cancels() {
    let cube = frame_index_cube(40, 2);
    let source = InMemorySource::new(cube.view());
    let progress = CancelFlag::cancel_after(3);
    let result = map_reduce_chunks(
        &source,
        1,
        Parallelism::Threads(1),
        &progress,
        |_, _| Ok(()),
        |a, _| a,
    );
    assert!(matches!(result, Err(Error::Cancelled)));
    assert_eq!(progress.done(), 3);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn chunks_partition_the_frames(n_frames in 1usize..50, per_chunk in 1usize..60) {
        let cube = frame_index_cube(n_frames, 2);
        let source = InMemorySource::new(cube.view());
        let mut next = 0;
        for_each_chunk(&source, per_chunk, &NoProgress, |c, frames| {
            assert_eq!(c.start, next);
            assert!(c.count >= 1 && c.count <= per_chunk);
            assert_eq!(frames[0], c.start as f32);
            next += c.count;
            Ok(())
        }).unwrap();
        prop_assert_eq!(next, n_frames);
    }
}
