//! Writers of small synthetic files in each format, following the same public format
//! descriptions as the readers, for ground-truth and hostile-input tests.

/// Pixel values of a DM test image with their DM element type.
#[derive(Clone, Debug)]
pub(super) enum DmPixels {
    I8(Vec<i8>),
    U8(Vec<u8>),
    I16(Vec<i16>),
    U16(Vec<u16>),
    I32(Vec<i32>),
    U32(Vec<u32>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    I64(Vec<i64>),
    U64(Vec<u64>),
    /// complex64 (DataType 3): (re, im) pairs, a struct array of two f32.
    C64(Vec<(f32, f32)>),
    /// complex128 (DataType 13): (re, im) pairs, a struct array of two f64.
    C128(Vec<(f64, f64)>),
    /// RGB (DataType 23): (r, g, b) written as u32 words `b | g << 8 | r << 16`.
    Rgb(Vec<(u8, u8, u8)>),
}

macro_rules! enc {
    ($v:expr, $le:expr) => {
        $v.iter()
            .flat_map(|x| {
                if $le {
                    x.to_le_bytes().to_vec()
                } else {
                    x.to_be_bytes().to_vec()
                }
            })
            .collect::<Vec<u8>>()
    };
}

impl DmPixels {
    pub(super) fn as_f32(&self) -> Vec<f32> {
        match self {
            DmPixels::I8(v) => v.iter().map(|&x| f32::from(x)).collect(),
            DmPixels::U8(v) => v.iter().map(|&x| f32::from(x)).collect(),
            DmPixels::I16(v) => v.iter().map(|&x| f32::from(x)).collect(),
            DmPixels::U16(v) => v.iter().map(|&x| f32::from(x)).collect(),
            DmPixels::I32(v) => v.iter().map(|&x| x as f32).collect(),
            DmPixels::U32(v) => v.iter().map(|&x| x as f32).collect(),
            DmPixels::F32(v) => v.clone(),
            DmPixels::F64(v) => v.iter().map(|&x| x as f32).collect(),
            DmPixels::I64(v) => v.iter().map(|&x| x as f32).collect(),
            DmPixels::U64(v) => v.iter().map(|&x| x as f32).collect(),
            DmPixels::C64(v) => v.iter().flat_map(|&(r, i)| [r, i]).collect(),
            DmPixels::C128(v) => v.iter().flat_map(|&(r, i)| [r as f32, i as f32]).collect(),
            DmPixels::Rgb(v) => v
                .iter()
                .flat_map(|&(r, g, b)| [f32::from(r), f32::from(g), f32::from(b)])
                .collect(),
        }
    }

    /// (DM element type code, ImageData DataType, len, bytes).
    fn encode(&self, le: bool) -> (u64, i32, usize, Vec<u8>) {
        match self {
            DmPixels::I8(v) => (9, 9, v.len(), enc!(v, le)),
            DmPixels::U8(v) => (10, 6, v.len(), enc!(v, le)),
            DmPixels::I16(v) => (2, 1, v.len(), enc!(v, le)),
            DmPixels::U16(v) => (4, 10, v.len(), enc!(v, le)),
            DmPixels::I32(v) => (3, 7, v.len(), enc!(v, le)),
            DmPixels::U32(v) => (5, 11, v.len(), enc!(v, le)),
            DmPixels::F32(v) => (6, 2, v.len(), enc!(v, le)),
            DmPixels::F64(v) => (7, 12, v.len(), enc!(v, le)),
            DmPixels::I64(v) => (11, 0, v.len(), enc!(v, le)),
            DmPixels::U64(v) => (12, 0, v.len(), enc!(v, le)),
            DmPixels::C64(v) => {
                let flat: Vec<f32> = v.iter().flat_map(|&(r, i)| [r, i]).collect();
                (STRUCT_F32_PAIR, 3, v.len(), enc!(flat, le))
            }
            DmPixels::C128(v) => {
                let flat: Vec<f64> = v.iter().flat_map(|&(r, i)| [r, i]).collect();
                (STRUCT_F64_PAIR, 13, v.len(), enc!(flat, le))
            }
            DmPixels::Rgb(v) => {
                let words: Vec<u32> = v
                    .iter()
                    .map(|&(r, g, b)| u32::from(b) | u32::from(g) << 8 | u32::from(r) << 16)
                    .collect();
                (5, 23, v.len(), enc!(words, le))
            }
        }
    }
}

/// Pseudo element types of the builder: struct arrays of two f32 / two f64 fields.
const STRUCT_F32_PAIR: u64 = 1006;
const STRUCT_F64_PAIR: u64 = 1007;

/// A DM tag tree node for the builder.
enum N {
    G(Vec<(String, N)>),
    /// Simple value: type code and bytes (file byte order).
    S(u64, Vec<u8>),
    /// Array: element type, length written, bytes.
    A(u64, u64, Vec<u8>),
}

struct W {
    dm4: bool,
    out: Vec<u8>,
}

impl W {
    fn count(&mut self, n: u64) {
        if self.dm4 {
            self.out.extend_from_slice(&n.to_be_bytes());
        } else {
            self.out.extend_from_slice(&(n as u32).to_be_bytes());
        }
    }
    fn group(&mut self, entries: &[(String, N)]) {
        self.out.extend_from_slice(&[0, 1]);
        self.count(entries.len() as u64);
        for (label, n) in entries {
            let kind = if matches!(n, N::G(_)) { 20 } else { 21 };
            self.out.push(kind);
            self.out
                .extend_from_slice(&(label.len() as u16).to_be_bytes());
            self.out.extend_from_slice(label.as_bytes());
            if self.dm4 {
                self.out.extend_from_slice(&0u64.to_be_bytes());
            }
            match n {
                N::G(e) => self.group(e),
                N::S(t, b) => {
                    self.out.extend_from_slice(b"%%%%");
                    self.count(1);
                    self.count(*t);
                    self.out.extend_from_slice(b);
                }
                N::A(t @ (STRUCT_F32_PAIR | STRUCT_F64_PAIR), len, b) => {
                    // Array of struct {name_len 0, 2 fields: (0, f), (0, f)}.
                    let f = t - 1000;
                    self.out.extend_from_slice(b"%%%%");
                    self.count(9);
                    for word in [20, 15, 0, 2, 0, f, 0, f, *len] {
                        self.count(word);
                    }
                    self.out.extend_from_slice(b);
                }
                N::A(t, len, b) => {
                    self.out.extend_from_slice(b"%%%%");
                    self.count(3);
                    self.count(20);
                    self.count(*t);
                    self.count(*len);
                    self.out.extend_from_slice(b);
                }
            }
        }
    }
}

fn g(entries: Vec<(&str, N)>) -> N {
    N::G(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

fn text(s: &str, le: bool) -> N {
    let units: Vec<u16> = s.encode_utf16().collect();
    N::A(4, units.len() as u64, enc!(units, le))
}

/// A DM file with one image of DM dimensions `dims` (x first).
pub(super) fn dm_image(dm4: bool, le: bool, dims: &[usize], px: DmPixels, format: &str) -> Vec<u8> {
    dm_build(dm4, le, dims, dims, px, format, None)
}

/// A DM file with one image; `dims_written` goes into `Dimensions` (may lie), `len_override`
/// into the data array's length word (may lie).
pub(super) fn dm_build(
    dm4: bool,
    le: bool,
    dims: &[usize],
    dims_written: &[usize],
    px: DmPixels,
    format: &str,
    len_override: Option<u64>,
) -> Vec<u8> {
    let _ = dims;
    let f32v = |v: f32| enc!([v], le);
    let (t, data_type, len, bytes) = px.encode(le);
    let scales = [0.5f32, 0.25, 1.0, 1.0];
    let units = ["nm", "nm", "eV", "px"];
    let cal: Vec<(&str, N)> = dims_written
        .iter()
        .enumerate()
        .map(|(i, _)| {
            (
                "",
                g(vec![
                    ("Origin", N::S(6, f32v(if i == 0 { 2.0 } else { 0.0 }))),
                    ("Scale", N::S(6, f32v(scales[i % 4]))),
                    ("Units", text(units[i % 4], le)),
                ]),
            )
        })
        .collect();
    let dim_entries: Vec<(&str, N)> = dims_written
        .iter()
        .map(|&d| ("", N::S(5, enc!([d as u32], le))))
        .collect();
    let mut tags = vec![(
        "Microscope Info",
        g(vec![("Voltage", N::S(7, enc!([300_000.0f64], le)))]),
    )];
    if !format.is_empty() {
        tags.push(("Meta Data", g(vec![("Format", text(format, le))])));
    }
    let image = g(vec![
        (
            "ImageData",
            g(vec![
                ("Calibrations", g(vec![("Dimension", g(cal))])),
                ("Data", N::A(t, len_override.unwrap_or(len as u64), bytes)),
                ("DataType", N::S(3, enc!([data_type], le))),
                ("Dimensions", g(dim_entries)),
            ]),
        ),
        ("ImageTags", g(tags)),
        ("Name", text("img", le)),
    ]);
    let root = vec![("ImageList".to_string(), g(vec![("", image)]))];
    header(dm4, le, |w| w.group(&root))
}

fn header(dm4: bool, le: bool, body: impl FnOnce(&mut W)) -> Vec<u8> {
    let mut w = W {
        dm4,
        out: Vec::new(),
    };
    w.out
        .extend_from_slice(&(if dm4 { 4u32 } else { 3 }).to_be_bytes());
    w.count(0); // file size: not checked by readers
    w.out.extend_from_slice(&u32::from(le).to_be_bytes());
    body(&mut w);
    w.out.extend_from_slice(&[0; 8]);
    w.out
}

/// A DM file whose root holds groups nested `depth` deep.
pub(super) fn dm_nested(dm4: bool, depth: usize) -> Vec<u8> {
    let mut n = g(vec![]);
    for _ in 0..depth {
        n = g(vec![("a", n)]);
    }
    let root = vec![("x".to_string(), n)];
    header(dm4, true, |w| w.group(&root))
}

/// An MRC2014 file of `i16` (mode 1) or `f32` (mode 2) data with an `nsymbt`-byte FEI1
/// extended header; cella = 2 Å × n.
pub(super) fn mrc_file(big: bool, n: [i32; 3], mode: i32, nsymbt: i32, values: &[i16]) -> Vec<u8> {
    let mut h = vec![0u8; 1024];
    let put_i = |h: &mut Vec<u8>, word: usize, v: i32| {
        let b = if big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        h[word * 4..word * 4 + 4].copy_from_slice(&b);
    };
    let put_f = |h: &mut Vec<u8>, word: usize, v: f32| {
        let b = if big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        h[word * 4..word * 4 + 4].copy_from_slice(&b);
    };
    for (i, &ni) in n.iter().enumerate() {
        put_i(&mut h, i, ni);
        put_i(&mut h, 7 + i, ni);
        put_f(&mut h, 10 + i, 2.0 * ni as f32);
        put_f(&mut h, 13 + i, 90.0);
        put_i(&mut h, 16 + i, i as i32 + 1);
    }
    put_i(&mut h, 3, mode);
    put_i(&mut h, 23, nsymbt);
    h[104..108].copy_from_slice(b"FEI1");
    h[208..212].copy_from_slice(b"MAP ");
    h[212] = if big { 0x11 } else { 0x44 };
    h.extend(std::iter::repeat_n(0xEE, nsymbt as usize));
    for v in values {
        if mode == 2 {
            let f = f32::from(*v);
            h.extend_from_slice(&if big {
                f.to_be_bytes()
            } else {
                f.to_le_bytes()
            });
        } else {
            h.extend_from_slice(&if big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            });
        }
    }
    h
}

/// A MIB file of `frames` (`width` × `height`, big-endian u16; depth label as given) with
/// 384-byte headers, shutter time 1 ms.
pub(super) fn mib_file(frames: &[Vec<u16>], width: usize, height: usize, depth: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        let mut h = format!(
            "MQ1,{:06},00384,01,{width:04},{height:04},{depth},   1x1,01,2020-01-02 03:04:05.000000,0.001000,0,0,0,",
            i + 1
        )
        .into_bytes();
        h.resize(384, 0);
        out.extend_from_slice(&h);
        for v in f {
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
    out
}

/// A SER file (version 0x210) of 2-D `i16` images `nx` × `ny`, one navigation dimension,
/// pixel 2e-10 m with calibration offset -1e-9 m at element 0.
pub(super) fn ser_images(images: &[Vec<i16>], nx: u32, ny: u32) -> Vec<u8> {
    let n = images.len() as u32;
    let mut b = Vec::new();
    b.extend_from_slice(&0x4949u16.to_le_bytes());
    b.extend_from_slice(&0x0197u16.to_le_bytes());
    b.extend_from_slice(&0x0210u16.to_le_bytes());
    b.extend_from_slice(&0x4122u32.to_le_bytes());
    b.extend_from_slice(&0x4152u32.to_le_bytes());
    b.extend_from_slice(&n.to_le_bytes());
    b.extend_from_slice(&n.to_le_bytes());
    let offset_array_at = b.len();
    b.extend_from_slice(&0u32.to_le_bytes()); // patched below
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&n.to_le_bytes());
    b.extend_from_slice(&0f64.to_le_bytes());
    b.extend_from_slice(&1f64.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    for s in ["Number", ""] {
        b.extend_from_slice(&(s.len() as u32).to_le_bytes());
        b.extend_from_slice(s.as_bytes());
    }
    let mut offsets = Vec::new();
    for img in images {
        offsets.push(b.len() as u32);
        for _ in 0..2 {
            b.extend_from_slice(&(-1e-9f64).to_le_bytes());
            b.extend_from_slice(&2e-10f64.to_le_bytes());
            b.extend_from_slice(&0u32.to_le_bytes());
        }
        b.extend_from_slice(&5u16.to_le_bytes());
        b.extend_from_slice(&nx.to_le_bytes());
        b.extend_from_slice(&ny.to_le_bytes());
        for v in img {
            b.extend_from_slice(&v.to_le_bytes());
        }
    }
    let at = b.len() as u32;
    b[offset_array_at..offset_array_at + 4].copy_from_slice(&at.to_le_bytes());
    for o in &offsets {
        b.extend_from_slice(&o.to_le_bytes());
    }
    for _ in &offsets {
        b.extend_from_slice(&0u32.to_le_bytes()); // tag offsets (unused)
    }
    b
}

/// A little-endian, uncompressed, single-strip palette TIFF: `width` x `height` 8-bit colour
/// indices and a 256-entry colour map (`map[c][i]` = channel c of colour i).
pub(super) fn palette_tiff(
    width: u16,
    height: u16,
    indices: &[u8],
    map: &[[u16; 256]; 3],
) -> Vec<u8> {
    let n_entries = 9u16;
    let ifd_end = 8 + 2 + 12 * u32::from(n_entries) + 4;
    let strip = ifd_end;
    let cmap = strip + indices.len() as u32;
    let entries: [(u16, u16, u32, u32); 9] = [
        (256, 3, 1, u32::from(width)),
        (257, 3, 1, u32::from(height)),
        (258, 3, 1, 8),
        (259, 3, 1, 1),
        (262, 3, 1, 3),
        (273, 4, 1, strip),
        (278, 3, 1, u32::from(height)),
        (279, 4, 1, indices.len() as u32),
        (320, 3, 768, cmap),
    ];
    let mut f = Vec::new();
    f.extend_from_slice(b"II*\0");
    f.extend_from_slice(&8u32.to_le_bytes());
    f.extend_from_slice(&n_entries.to_le_bytes());
    for (tag, typ, count, value) in entries {
        f.extend_from_slice(&tag.to_le_bytes());
        f.extend_from_slice(&typ.to_le_bytes());
        f.extend_from_slice(&count.to_le_bytes());
        f.extend_from_slice(&value.to_le_bytes());
    }
    f.extend_from_slice(&0u32.to_le_bytes());
    f.extend_from_slice(indices);
    for channel in map {
        for v in channel {
            f.extend_from_slice(&v.to_le_bytes());
        }
    }
    f
}
