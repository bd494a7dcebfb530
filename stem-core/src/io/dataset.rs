//! The in-memory description of an opened file: [`Dataset`], [`Signal`], [`Metadata`] and the
//! original tag tree [`TagValue`].

use crate::axis::Axis;
use crate::error::{Error, Result};
use crate::frame_source::{DType, FrameSource, InMemorySource, RawFileSource};
use crate::hypercube::{Hypercube, SignalKind};
use ndarray::{ArrayD, IxDyn};
use serde::{Deserialize, Serialize};

/// File formats that [`open`](super::open) recognises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Format {
    /// Gatan DigitalMicrograph 3 (`.dm3`).
    Dm3,
    /// Gatan DigitalMicrograph 4 (`.dm4`).
    Dm4,
    /// MRC2014 (`.mrc`, `.map`, `.mrcs`, `.st`, `.rec`, `.ali`).
    Mrc,
    /// TIFF (`.tif`, `.tiff`), with ImageJ calibration when present.
    Tiff,
    /// NumPy `.npy`.
    Npy,
    /// Quantum Detectors Merlin `.mib` (optionally with a `.hdr` beside it).
    Mib,
    /// FEI / Thermo Fisher TIA series `.ser` (metadata from the sibling `.emi` when present).
    Ser,
    /// Electron Microscopy Dataset `.emd` in HDF5: Thermo Fisher Velox or Berkeley EMD v0.2
    /// (see [`emd`](super::emd)).
    Emd,
    /// Any other HDF5 file (`.h5`, `.hdf5`, HyperSpy `.hspy`): its numeric arrays.
    Hdf5,
    /// A Zarr v3 array (a directory with `zarr.json`; see [`zarr`](super::zarr)).
    Zarr,
}

impl Format {
    /// Lower-case name of the format, e.g. `"dm4"`.
    pub fn name(self) -> &'static str {
        match self {
            Format::Dm3 => "dm3",
            Format::Dm4 => "dm4",
            Format::Mrc => "mrc",
            Format::Tiff => "tiff",
            Format::Npy => "npy",
            Format::Mib => "mib",
            Format::Ser => "ser",
            Format::Emd => "emd",
            Format::Hdf5 => "hdf5",
            Format::Zarr => "zarr",
        }
    }
}

/// One node of a file's original tag tree (DM tag groups, TIA/EMI XML, MRC header fields,
/// TIFF tags, MIB header fields), kept so that nothing the file says is lost.
///
/// Large numeric arrays (pixel data) are not copied into the tree: they appear as
/// [`TagValue::Data`] with their element type, length and byte offset in the file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum TagValue {
    /// An ordered group of named entries; names may be empty (DM lists) or repeated.
    Group(Vec<(String, TagValue)>),
    /// A signed integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// Text.
    Text(String),
    /// A short numeric array (at most [`MAX_INLINE_ARRAY`] elements).
    Numbers(Vec<f64>),
    /// A long array left in the file: element type name, element count and byte offset.
    Data {
        /// Element type, e.g. `"u16"`, `"f32"`, `"struct"`.
        dtype: String,
        /// Number of elements.
        len: u64,
        /// Byte offset of the first element in the file.
        offset: u64,
    },
}

/// Longest numeric array stored inline in a [`TagValue::Numbers`]; longer ones become
/// [`TagValue::Data`].
pub const MAX_INLINE_ARRAY: usize = 256;

impl TagValue {
    /// An empty group.
    pub fn group() -> Self {
        TagValue::Group(Vec::new())
    }

    /// The first entry named `name` of a group (`None` for other variants).
    pub fn get(&self, name: &str) -> Option<&TagValue> {
        match self {
            TagValue::Group(entries) => entries.iter().find(|(n, _)| n == name).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The entry at a `/`-separated path of names, e.g. `"ImageTags/Microscope Info/Voltage"`.
    /// A path component that is a number indexes the group's entries in order (DM lists have
    /// unnamed entries): `"ImageList/1/ImageData"`.
    pub fn get_path(&self, path: &str) -> Option<&TagValue> {
        let mut node = self;
        for part in path.split('/').filter(|p| !p.is_empty()) {
            node = match node.get(part) {
                Some(v) => v,
                None => match (node, part.parse::<usize>()) {
                    (TagValue::Group(entries), Ok(i)) => &entries.get(i)?.1,
                    _ => return None,
                },
            };
        }
        Some(node)
    }

    /// The entries of a group (empty for other variants).
    pub fn entries(&self) -> &[(String, TagValue)] {
        match self {
            TagValue::Group(entries) => entries,
            _ => &[],
        }
    }

    /// The value as a number: integers, floats, booleans, one-element arrays and text that
    /// parses as a number.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            TagValue::Int(v) => Some(*v as f64),
            TagValue::Float(v) => Some(*v),
            TagValue::Bool(v) => Some(f64::from(u8::from(*v))),
            TagValue::Numbers(v) if v.len() == 1 => Some(v[0]),
            TagValue::Text(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// The value as text (only [`TagValue::Text`]).
    pub fn as_str(&self) -> Option<&str> {
        match self {
            TagValue::Text(s) => Some(s),
            _ => None,
        }
    }

    /// Number of nodes in the tree (this one included).
    pub fn node_count(&self) -> usize {
        1 + self
            .entries()
            .iter()
            .map(|(_, v)| v.node_count())
            .sum::<usize>()
    }

    /// Appends an entry to a group (no-op for other variants).
    pub(crate) fn push(&mut self, name: impl Into<String>, value: TagValue) {
        if let TagValue::Group(entries) = self {
            entries.push((name.into(), value));
        }
    }
}

/// Acquisition metadata normalised across formats. Every field is optional: files record
/// different subsets.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// Title of the signal (DM image name, file stem, ...).
    pub title: Option<String>,
    /// Beam (accelerating) energy in keV.
    pub beam_energy_kev: Option<f64>,
    /// Probe convergence semi-angle in mrad.
    pub convergence_semiangle_mrad: Option<f64>,
    /// Detector / spectrometer collection semi-angle in mrad.
    pub collection_semiangle_mrad: Option<f64>,
    /// Indicated magnification (×).
    pub magnification: Option<f64>,
    /// Camera length in mm.
    pub camera_length_mm: Option<f64>,
    /// Pixel dwell time (STEM) or frame exposure time, in µs.
    pub dwell_time_us: Option<f64>,
    /// Acquisition date and time as the file writes it (format varies; ISO 8601 when the file
    /// gives one).
    pub acquisition_date: Option<String>,
    /// Microscope name or model.
    pub microscope: Option<String>,
}

/// What the numbers of a signal's pixels are: one real value per pixel, or several
/// components along a trailing component axis (complex DM images, RGB DM and TIFF images).
///
/// Pixels are always delivered as `f32`; files that store more than one number per pixel get
/// one extra, **last** axis holding the components (numpy's `[y, x, 3]` convention for colour
/// images; the interleaved `[..., 2]` view of complex arrays). That axis counts as a signal
/// axis of the [`FrameSource`] / [`Hypercube`], but [`Signal::kind`] ignores it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Components {
    /// One real value per pixel; no component axis.
    #[default]
    Scalar,
    /// Complex pixels: the last axis (`"component"`, size 2) holds the real part (index 0) and
    /// the imaginary part (index 1), exactly as stored (`complex64` → `f32` is exact).
    Complex,
    /// Colour pixels: the last axis (`"channel"`, size 3) holds red, green and blue in the
    /// file's units (0–255 for 8-bit DM / TIFF RGB, 0–65535 for TIFF colour maps).
    Rgb,
}

impl Components {
    /// Number of values per pixel: the length of the component axis (1 for [`Components::Scalar`], which has none).
    pub fn count(self) -> usize {
        match self {
            Components::Scalar => 1,
            Components::Complex => 2,
            Components::Rgb => 3,
        }
    }

    /// Whether the signal has a trailing component axis.
    pub fn has_axis(self) -> bool {
        self != Components::Scalar
    }

    /// The trailing component axis of this kind (`None` for [`Components::Scalar`]).
    pub fn axis(self) -> Option<Axis> {
        match self {
            Components::Scalar => None,
            Components::Complex => Some(Axis::new("component", 2, 1.0, 0.0, "")),
            Components::Rgb => Some(Axis::new("channel", 3, 1.0, 0.0, "")),
        }
    }
}

/// Where a signal's pixels are: loaded into memory or left in the file.
#[derive(Debug)]
pub enum SignalData {
    /// Loaded and converted to `f32`.
    Loaded(Hypercube<f32>),
    /// Memory-mapped in the file; frames are read on demand through [`FrameSource`].
    Lazy(RawFileSource),
    /// Left in a chunked or compressed container (HDF5, Zarr); frames are decoded on demand through
    /// [`FrameSource`].
    Chunked(ChunkedSource),
}

/// Frames decoded on demand from a chunked or compressed container (an HDF5 data set read by
/// hyperslabs). Reads take `&self` and may run from several threads.
pub struct ChunkedSource(Box<dyn FrameSource>);

impl ChunkedSource {
    /// Wraps a frame source.
    pub fn new(source: Box<dyn FrameSource>) -> Self {
        ChunkedSource(source)
    }
}

impl std::fmt::Debug for ChunkedSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkedSource")
            .field("nav_shape", &self.0.nav_shape())
            .field("sig_shape", &self.0.sig_shape())
            .finish()
    }
}

impl FrameSource for ChunkedSource {
    fn nav_shape(&self) -> &[usize] {
        self.0.nav_shape()
    }
    fn sig_shape(&self) -> &[usize] {
        self.0.sig_shape()
    }
    fn read_frames(&self, start: usize, out: &mut [f32]) -> Result<()> {
        self.0.read_frames(start, out)
    }
    fn axes(&self) -> Option<&[Axis]> {
        self.0.axes()
    }
}

/// One calibrated data set of a file (a file may hold several, e.g. a DM file with an image
/// and a spectrum, or a TIA acquisition with several detectors).
#[derive(Debug)]
pub struct Signal {
    /// Title (DM image name, detector name, file stem).
    pub title: String,
    /// Calibrated axes in array order (numpy order, navigation first, `[y, x]` for images).
    pub axes: Vec<Axis>,
    /// Number of leading navigation axes; the rest are signal axes.
    pub nav_dims: usize,
    /// Element type stored in the file (pixels are delivered as `f32`; integers above 2^24
    /// and `f64` values are rounded).
    pub original_dtype: DType,
    /// The pixels.
    pub data: SignalData,
    /// Whether the last axis holds the components of complex or colour pixels (see
    /// [`Components`]); [`Components::Scalar`] for ordinary real-valued data.
    pub components: Components,
    /// Normalised acquisition metadata.
    pub metadata: Metadata,
    /// This signal's original tags (e.g. DM `ImageTags`).
    pub tags: TagValue,
}

impl Signal {
    /// Array shape, navigation axes first.
    pub fn shape(&self) -> Vec<usize> {
        self.axes.iter().map(|a| a.size).collect()
    }

    /// Signal kind from the navigation / signal dimensionality (see [`SignalKind`]); a
    /// trailing component axis ([`Components`]) is not counted, so an RGB or complex image is
    /// an [`SignalKind::Image`].
    pub fn kind(&self) -> SignalKind {
        let sig = self
            .axes
            .len()
            .saturating_sub(self.nav_dims)
            .saturating_sub(usize::from(self.components.has_axis()));
        match (self.nav_dims, sig) {
            (0, 2) => SignalKind::Image,
            (0, 1) => SignalKind::Spectrum,
            (1, 2) => SignalKind::ImageSeries,
            (1, 1) => SignalKind::SpectrumSeries,
            (2, 1) => SignalKind::SpectrumImage,
            (2, 2) => SignalKind::FourDStem,
            _ => SignalKind::Other,
        }
    }

    /// Whether the pixels are left in the file (memory-mapped or chunked) rather than loaded.
    pub fn is_lazy(&self) -> bool {
        matches!(self.data, SignalData::Lazy(_) | SignalData::Chunked(_))
    }

    /// The pixels as a [`FrameSource`] (frames = signal-shaped blocks over the navigation
    /// axes), without loading lazy data.
    pub fn frame_source(&self) -> Box<dyn FrameSource + '_> {
        match &self.data {
            SignalData::Loaded(cube) => Box::new(InMemorySource::new(cube.view())),
            SignalData::Lazy(source) => Box::new(source_ref(source)),
            SignalData::Chunked(source) => Box::new(source_ref(source)),
        }
    }

    /// The pixels as an in-memory [`Hypercube`] (reads all frames of lazy data: check
    /// [`shape`](Self::shape) first for very large files).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if the element count overflows, or the reader's errors.
    pub fn to_hypercube(&self) -> Result<Hypercube<f32>> {
        match &self.data {
            SignalData::Loaded(cube) => Ok(cube.clone()),
            SignalData::Lazy(_) | SignalData::Chunked(_) => {
                let source = self.frame_source();
                let shape = self.shape();
                let n = shape
                    .iter()
                    .try_fold(1usize, |a, &b| a.checked_mul(b))
                    .ok_or_else(|| Error::invalid("shape", format!("{shape:?} overflows")))?;
                let mut buf = vec![0.0f32; n];
                if n > 0 {
                    source.read_frames(0, &mut buf)?;
                }
                let data = ArrayD::from_shape_vec(IxDyn(&shape), buf).map_err(|_| {
                    Error::ShapeMismatch {
                        expected: shape.clone(),
                        found: vec![n],
                    }
                })?;
                Hypercube::with_axes(data, self.axes.clone(), self.nav_dims)
            }
        }
    }

    /// Consumes the signal and returns its pixels as a [`Hypercube`] (no copy when loaded).
    ///
    /// # Errors
    /// As [`to_hypercube`](Self::to_hypercube).
    pub fn into_hypercube(self) -> Result<Hypercube<f32>> {
        match self.data {
            SignalData::Loaded(cube) => Ok(cube),
            SignalData::Lazy(_) | SignalData::Chunked(_) => self.to_hypercube(),
        }
    }
}

/// A borrowed [`FrameSource`] as a boxed one.
fn source_ref<S: FrameSource>(source: &S) -> impl FrameSource + '_ {
    struct Ref<'a, S>(&'a S);
    impl<S: FrameSource> FrameSource for Ref<'_, S> {
        fn nav_shape(&self) -> &[usize] {
            self.0.nav_shape()
        }
        fn sig_shape(&self) -> &[usize] {
            self.0.sig_shape()
        }
        fn read_frames(&self, start: usize, out: &mut [f32]) -> Result<()> {
            self.0.read_frames(start, out)
        }
        fn axes(&self) -> Option<&[Axis]> {
            self.0.axes()
        }
    }
    Ref(source)
}

/// The contents of an opened file: one or more calibrated signals and the file's tag tree.
#[derive(Debug)]
pub struct Dataset {
    /// The detected format.
    pub format: Format,
    /// The data sets in file order (thumbnails excluded).
    pub signals: Vec<Signal>,
    /// The whole original tag tree of the file.
    pub tags: TagValue,
}

impl Dataset {
    /// The first signal, or [`Error::EmptyInput`] for a file that holds none.
    pub fn first(&self) -> Result<&Signal> {
        self.signals.first().ok_or(Error::EmptyInput {
            what: "signals in the file",
        })
    }

    /// Consumes the data set and returns its first signal as a [`Hypercube`].
    ///
    /// # Errors
    /// [`Error::EmptyInput`] if there is no signal, or [`Signal::into_hypercube`]'s errors.
    pub fn into_first_hypercube(self) -> Result<Hypercube<f32>> {
        self.signals
            .into_iter()
            .next()
            .ok_or(Error::EmptyInput {
                what: "signals in the file",
            })?
            .into_hypercube()
    }
}
