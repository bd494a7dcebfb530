//! Velox EDS spectrum streams (`Data/SpectrumStream/<uuid>`) decoded into spectrum images.
//!
//! The encoding, worked out from the files and their JSON metadata (every hypothesis below was
//! checked against the six HyperSpy test files, array for array against RosettaSciIO's output):
//!
//! * `Data` is a flat `uint16` array (`AcquisitionSettings/StreamEncoding = "uint16"`, stored
//!   `[n, 1]`) of X-ray events in acquisition order. An event is its energy channel
//!   (`0 .. bincount`, `AcquisitionSettings/bincount`, 4096 in practice); the value `65535`
//!   marks the **end** of a scan pixel. Pixels follow in raster order (x fastest, then y), frame
//!   after frame, so the `k`-th pixel of the stream (counted by the markers before it) is frame
//!   `k / (h·w)`, row `(k mod h·w) / w`, column `k mod w`.
//! * The scan is `Scan/ScanSize` (the full raster, e.g. 128 × 128) restricted to
//!   `Scan/ScanArea` (fractions `left`, `right`, `top`, `bottom`): `w = (right − left)·width`,
//!   `h = (bottom − top)·height` (`AcquisitionSettings/RasterScanDefinition` when the metadata has
//!   no scan). The HAADF image acquired with the spectra has the same `[h, w]`.
//! * The number of frames is what the stream holds: `⌈markers / (h·w)⌉`. A stream that stops
//!   within a frame (acquisition stopped) leaves the rest of that frame empty; events after the
//!   last complete frame's final marker (a frame begun but not ended) are dropped and counted
//!   in the tags (`SpectrumStream/dropped_events`). `FrameLocationTable`, when present, holds
//!   the stream index where each frame starts; it is checked against the markers.
//! * Calibration: `y`, `x` from `BinaryResult/PixelSize` and `Offset` (m → nm) as for images;
//!   energy from the analytical detector's `Dispersion` and `OffsetEnergy` (eV → keV).
//! * A file holds one stream per EDS detector (four for a Super-X with separate detectors).
//!   Streams of the same scan and energy axis are summed by default
//!   ([`EdsStreamOptions::sum_detectors`]); frames are summed by default
//!   ([`EdsStreamOptions::sum_frames`]). Streams without a scan (a point spectrum, whose sum is
//!   also stored under `Data/Spectrum`) are listed as skipped.
//!
//! The event array is read into memory (2 bytes per event, bounded like every HDF5 read by
//! the file size); the dense spectrum image `[y, x, channel]` (`f32` counts, exact below
//! 2^24 per bin) is built when it is smaller than [`OpenOptions::lazy_threshold_bytes`],
//! otherwise spectra are histogrammed on demand through
//! [`FrameSource`] ([`SignalData::Chunked`]), from an index of marker positions.
//!
//! [`OpenOptions::lazy_threshold_bytes`]: crate::io::OpenOptions::lazy_threshold_bytes

use super::{
    Ctx, MAX_TAG_NODES, h5err, jnum, json_tag, jstr, last_name, parse_json, read_into, shape_of,
    velox_common_metadata, velox_energy_axis, velox_metadata, velox_scan_axes,
};
use crate::axis::Axis;
use crate::error::{Error, Result};
use crate::frame_source::{DType, FrameSource, check_read};
use crate::hypercube::Hypercube;
use crate::io::dataset::{ChunkedSource, Components, Signal, SignalData, TagValue};
use hdf5_reader::group::Group;
use ndarray::{ArrayD, IxDyn};
use rayon::prelude::*;

/// The stream value that ends a scan pixel.
pub const PIXEL_MARKER: u16 = u16::MAX;

/// Largest scan (h · w pixels) accepted from a stream's metadata (8192 × 8192).
pub const MAX_SCAN_PIXELS: usize = 1 << 26;

/// How Velox EDS spectrum streams become signals (see the [module docs](self)).
///
/// ```
/// use stem_core::io::emd::EdsStreamOptions;
/// let o = EdsStreamOptions::default();
/// assert!(o.sum_frames && o.sum_detectors);
/// assert_eq!(o.energy_bin, 1);
/// assert!(EdsStreamOptions { energy_bin: 0, ..o }.validate().is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdsStreamOptions {
    /// Sum the frames into one spectrum image `[y, x, channel]` (default); otherwise keep them,
    /// `[frame, y, x, channel]`.
    pub sum_frames: bool,
    /// Sum the streams of all detectors that share the scan and energy axis into one signal
    /// titled `"EDS"` (default); otherwise one signal per detector, titled with its name.
    pub sum_detectors: bool,
    /// Energy channels summed into one output channel (default 1: none). Output channel `k`
    /// holds input channels `k·bin .. (k+1)·bin`; the energy axis keeps its offset (the energy
    /// of input channel 0) and its scale is multiplied by `bin`. Must be in 1..=65535.
    pub energy_bin: usize,
}

impl Default for EdsStreamOptions {
    fn default() -> Self {
        EdsStreamOptions {
            sum_frames: true,
            sum_detectors: true,
            energy_bin: 1,
        }
    }
}

impl EdsStreamOptions {
    /// Checks the options.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if `energy_bin` is 0 or above 65535.
    pub fn validate(&self) -> Result<()> {
        if self.energy_bin == 0 || self.energy_bin > usize::from(u16::MAX) {
            return Err(Error::invalid(
                "energy_bin",
                format!("{} is not in 1..=65535", self.energy_bin),
            ));
        }
        Ok(())
    }
}

/// Why an event stream cannot be indexed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BadEvent {
    /// Position in the stream.
    pub(crate) index: usize,
    /// The value found.
    pub(crate) value: u16,
}

/// Positions of the pixel markers of `events`, checking that every other value is a channel
/// below `channels`.
pub(crate) fn index_stream(events: &[u16], channels: usize) -> Result<Vec<usize>, BadEvent> {
    let mut markers = Vec::new();
    for (index, &value) in events.iter().enumerate() {
        if value == PIXEL_MARKER {
            markers.push(index);
        } else if usize::from(value) >= channels {
            return Err(BadEvent { index, value });
        }
    }
    Ok(markers)
}

/// One indexed event stream.
#[derive(Debug)]
pub(crate) struct IndexedStream {
    events: Vec<u16>,
    markers: Vec<usize>,
}

impl IndexedStream {
    /// The events (channels) of stream pixel `p` (frame-major pixel counter); empty past the
    /// end of the stream.
    fn pixel(&self, p: usize) -> &[u16] {
        let n = self.markers.len();
        if p > n {
            return &[];
        }
        let start = if p == 0 { 0 } else { self.markers[p - 1] + 1 };
        let end = if p < n {
            self.markers[p]
        } else {
            self.events.len()
        };
        self.events.get(start..end).unwrap_or(&[])
    }
}

/// Spectra histogrammed on demand from one or more indexed streams (summed).
#[derive(Debug)]
pub(crate) struct EdsSource {
    streams: Vec<IndexedStream>,
    /// Pixels per frame (h · w).
    npix: usize,
    /// Frames held by the streams.
    frames: usize,
    keep_frames: bool,
    bin: usize,
    nav_shape: Vec<usize>,
    sig_shape: Vec<usize>,
    axes: Vec<Axis>,
}

impl EdsSource {
    /// Builds the source; `streams` were indexed for `channels` channels.
    /// Builds the source from streams indexed for `energy.size · bin` channels or fewer;
    /// `energy` is the (binned) output energy axis.
    pub(crate) fn new(
        streams: Vec<IndexedStream>,
        y: Axis,
        x: Axis,
        energy: Axis,
        options: &EdsStreamOptions,
    ) -> Self {
        let (h, w) = (y.size, x.size);
        let npix = h.saturating_mul(w).max(1);
        let frames = streams
            .iter()
            .map(|s| s.markers.len().div_ceil(npix))
            .max()
            .unwrap_or(0)
            .max(1);
        let bin = options.energy_bin.max(1);
        let sig_shape = vec![energy.size];
        let (nav_shape, axes) = if options.sum_frames {
            (vec![h, w], vec![y, x, energy])
        } else {
            (
                vec![frames, h, w],
                vec![Axis::pixels("frame", frames), y, x, energy],
            )
        };
        EdsSource {
            streams,
            npix,
            frames,
            keep_frames: !options.sum_frames,
            bin,
            nav_shape,
            sig_shape,
            axes,
        }
    }

    /// Events kept (inside the frames) and dropped (after the last frame's end).
    fn event_counts(&self) -> (u64, u64) {
        let (mut kept, mut dropped) = (0u64, 0u64);
        let end = self.frames * self.npix;
        for s in &self.streams {
            let total = (s.events.len() - s.markers.len()) as u64;
            let extra: u64 = (end..=s.markers.len())
                .map(|p| s.pixel(p).len() as u64)
                .sum();
            kept += total - extra;
            dropped += extra;
        }
        (kept, dropped)
    }

    /// Adds the spectrum of navigation index `nav` to `out` (zeroed by the caller).
    fn spectrum_into(&self, nav: usize, out: &mut [f32]) {
        let add = |p: usize, out: &mut [f32]| {
            for s in &self.streams {
                for &c in s.pixel(p) {
                    if let Some(o) = out.get_mut(usize::from(c) / self.bin) {
                        *o += 1.0;
                    }
                }
            }
        };
        if self.keep_frames {
            // [frame, y, x] row-major is the stream's pixel counter.
            add(nav, out);
        } else {
            for f in 0..self.frames {
                add(f * self.npix + nav, out);
            }
        }
    }
}

impl FrameSource for EdsSource {
    fn nav_shape(&self) -> &[usize] {
        &self.nav_shape
    }

    fn sig_shape(&self) -> &[usize] {
        &self.sig_shape
    }

    fn read_frames(&self, start: usize, out: &mut [f32]) -> Result<()> {
        let count = check_read(self, start, out.len())?;
        let len = out.len() / count;
        out.par_chunks_mut(len).enumerate().for_each(|(k, o)| {
            o.fill(0.0);
            self.spectrum_into(start + k, o);
        });
        Ok(())
    }

    fn axes(&self) -> Option<&[Axis]> {
        Some(&self.axes)
    }
}

/// What a stream's metadata says about its scan.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Scan {
    /// `h × w` pixels.
    Raster(usize, usize),
    /// No scan (a point spectrum).
    Point,
}

/// The scan `[h, w]` of a stream from its metadata (`Scan/ScanSize` within `Scan/ScanArea`),
/// else the acquisition settings' `RasterScanDefinition`.
fn stream_scan(m: &serde_json::Value, acq: &serde_json::Value) -> Option<Scan> {
    let size = match (
        jnum(m, "Scan/ScanSize/width"),
        jnum(m, "Scan/ScanSize/height"),
    ) {
        (Some(w), Some(h)) => (w, h),
        _ => (
            jnum(acq, "RasterScanDefinition/Width")?,
            jnum(acq, "RasterScanDefinition/Height")?,
        ),
    };
    let (w, h) = size;
    if !(w >= 0.0 && h >= 0.0 && w <= MAX_SCAN_PIXELS as f64 && h <= MAX_SCAN_PIXELS as f64) {
        return None;
    }
    if w < 1.0 || h < 1.0 {
        return Some(Scan::Point);
    }
    let frac = |a: &str, b: &str| -> Option<f64> {
        let (lo, hi) = (jnum(m, a)?, jnum(m, b)?);
        ((0.0..=1.0).contains(&lo) && lo < hi && hi <= 1.0 + 1e-9).then_some(hi - lo)
    };
    let fw = frac("Scan/ScanArea/left", "Scan/ScanArea/right").unwrap_or(1.0);
    let fh = frac("Scan/ScanArea/top", "Scan/ScanArea/bottom").unwrap_or(1.0);
    let (w, h) = ((w * fw).round(), (h * fh).round());
    if w < 1.0 || h < 1.0 {
        return None;
    }
    Some(Scan::Raster(h as usize, w as usize))
}

/// One decoded `Data/SpectrumStream/<uuid>` group.
struct StreamInfo {
    path: String,
    detector: String,
    meta: serde_json::Value,
    acq: serde_json::Value,
    scan: (usize, usize),
    channels: usize,
    energy: Axis,
    stream: IndexedStream,
}

/// Reads every stream under `Data/SpectrumStream` and turns them into spectrum images
/// (summed over detectors when [`EdsStreamOptions::sum_detectors`]). Streams that cannot be
/// decoded for a valid reason are listed in `skipped`.
pub(super) fn read_streams(
    kind_group: &Group,
    ctx: &Ctx<'_>,
    skipped: &mut TagValue,
) -> Result<Vec<Signal>> {
    let members = kind_group.groups().map_err(|e| h5err(ctx.err_path, e))?;
    let mut groups: Vec<Vec<StreamInfo>> = Vec::new();
    for g in members {
        let path = format!("Data/SpectrumStream/{}", last_name(g.name()));
        match read_stream(&g, path.clone(), ctx) {
            Ok(info) => {
                let same = |o: &StreamInfo| {
                    o.scan == info.scan && o.channels == info.channels && o.energy == info.energy
                };
                let pos = if ctx.eds.sum_detectors {
                    groups.iter().position(|grp| same(&grp[0]))
                } else {
                    None
                };
                match pos {
                    Some(i) => groups[i].push(info),
                    None => groups.push(vec![info]),
                }
            }
            Err(Error::Unsupported { what }) => {
                log::warn!("{}: {path} skipped: {what}", ctx.err_path.display());
                skipped.push(path, TagValue::Text(what));
            }
            Err(e) => return Err(e),
        }
    }
    groups.into_iter().map(|g| stream_signal(g, ctx)).collect()
}

/// Reads and indexes one stream group.
fn read_stream(g: &Group, path: String, ctx: &Ctx<'_>) -> Result<StreamInfo> {
    let bad = |r: String| Error::invalid_file(ctx.err_path, format!("{path}: {r}"));
    let ds = g.dataset("Data").map_err(|e| h5err(ctx.err_path, e))?;
    let dtype = super::dtype_of(ds.dtype());
    if dtype != Some(DType::U16) {
        return Err(Error::Unsupported {
            what: format!(
                "EDS spectrum stream of {} elements (only uint16 streams are known)",
                dtype.map_or_else(
                    || super::type_name(ds.dtype()).to_string(),
                    |d| { super::dtype_name(d).to_string() }
                )
            ),
        });
    }
    let shape = shape_of(&ds).ok_or_else(|| bad("stream shape overflows".into()))?;
    let n = match shape[..] {
        [n] | [n, 1] => n,
        _ => return Err(bad(format!("stream of shape {shape:?} is not [n, 1]"))),
    };
    let meta = velox_metadata(g, ctx).unwrap_or(serde_json::Value::Null);
    let acq = g
        .dataset("AcquisitionSettings")
        .ok()
        .and_then(|d| d.read_strings().ok())
        .and_then(|s| s.into_iter().next())
        .and_then(|s| parse_json(s.as_bytes()))
        .unwrap_or(serde_json::Value::Null);
    let channels = match jnum(&acq, "bincount") {
        None => {
            return Err(Error::Unsupported {
                what: "EDS spectrum stream without a channel count (bincount)".into(),
            });
        }
        Some(c) if c >= 1.0 && c < f64::from(PIXEL_MARKER) + 1.0 && c.fract() == 0.0 => c as usize,
        Some(c) => return Err(bad(format!("bincount {c} is not in 1..=65535"))),
    };
    let (h, w) = match stream_scan(&meta, &acq) {
        Some(Scan::Raster(h, w)) if h.saturating_mul(w) <= MAX_SCAN_PIXELS => (h, w),
        Some(Scan::Raster(h, w)) => {
            return Err(bad(format!(
                "scan of {h} x {w} pixels exceeds {MAX_SCAN_PIXELS} pixels"
            )));
        }
        Some(Scan::Point) => {
            return Err(Error::Unsupported {
                what: "EDS spectrum stream of a point acquisition (its spectrum is the \
                       Data/Spectrum signal)"
                    .into(),
            });
        }
        None => {
            return Err(Error::Unsupported {
                what: "EDS spectrum stream without a scan size in its metadata".into(),
            });
        }
    };
    let bytes = (n as u64).saturating_mul(2);
    if bytes > ctx.max_bytes {
        return Err(bad(format!(
            "stream of {n} events ({bytes} bytes) exceeds what the file can hold ({} bytes)",
            ctx.max_bytes
        )));
    }
    let mut events = vec![0u16; n];
    match read_into(&ds, DType::U16, None, &mut events) {
        Ok(true) => {}
        Ok(false) => return Err(bad("short read of the event stream".into())),
        Err(e) => return Err(h5err(ctx.err_path, e)),
    }
    let markers = index_stream(&events, channels).map_err(|b| {
        bad(format!(
            "stream value {} at index {} is neither a channel below {channels} nor the pixel \
             marker {PIXEL_MARKER}",
            b.value, b.index
        ))
    })?;
    // FrameLocationTable: the stream index where each frame starts.
    if let Ok(flt) = g.dataset("FrameLocationTable")
        && let Some(starts) = super::small_numbers(&flt, 1 << 20)
    {
        let npix = h * w;
        for (k, &start) in starts.iter().enumerate() {
            let want = if k == 0 {
                Some(0)
            } else {
                k.checked_mul(npix)
                    .filter(|&m| m <= markers.len())
                    .map(|m| markers[m - 1] + 1)
            };
            if let Some(want) = want
                && start != want as f64
            {
                return Err(bad(format!(
                    "FrameLocationTable says frame {k} starts at event {start}, the pixel \
                     markers put it at {want}"
                )));
            }
        }
    }
    let energy = velox_energy_axis(&meta, channels);
    let detector = jstr(&meta, "BinaryResult/Detector").unwrap_or_else(|| "EDS".into());
    Ok(StreamInfo {
        path,
        detector,
        meta,
        acq,
        scan: (h, w),
        channels,
        energy,
        stream: IndexedStream { events, markers },
    })
}

/// The spectrum image of one group of streams (same scan and energy axis), loaded or on
/// demand.
fn stream_signal(group: Vec<StreamInfo>, ctx: &Ctx<'_>) -> Result<Signal> {
    let Some(first) = group.first() else {
        return Err(Error::EmptyInput {
            what: "EDS spectrum streams",
        });
    };
    let bin = ctx.eds.energy_bin.max(1);
    let (h, w) = first.scan;
    let mut energy = first.energy.clone();
    energy.size = first.channels.div_ceil(bin);
    energy.scale *= bin as f64;
    let (y, x) = velox_scan_axes(&first.meta, h, w);
    let title = if group.len() > 1 {
        "EDS".to_string()
    } else {
        first.detector.clone()
    };
    let metadata = velox_common_metadata(&first.meta, &title);
    let mut budget = MAX_TAG_NODES;
    let mut tags = json_tag(&first.meta, &mut budget);
    if !matches!(tags, TagValue::Group(_)) {
        tags = TagValue::group();
    }
    let mut info = TagValue::group();
    let mut paths = TagValue::group();
    let mut detectors = TagValue::group();
    for s in &group {
        paths.push("", TagValue::Text(s.path.clone()));
        detectors.push("", TagValue::Text(s.detector.clone()));
    }
    let acq = json_tag(&first.acq, &mut budget);
    let streams: Vec<IndexedStream> = group.into_iter().map(|s| s.stream).collect();
    let source = EdsSource::new(streams, y, x, energy, &ctx.eds);
    let (kept, dropped) = source.event_counts();
    info.push("streams", paths);
    info.push("detectors", detectors);
    info.push("frames", TagValue::Int(source.frames as i64));
    info.push("events", TagValue::Int(kept as i64));
    info.push("dropped_events", TagValue::Int(dropped as i64));
    info.push("AcquisitionSettings", acq);
    tags.push("SpectrumStream", info);

    let axes = source.axes.clone();
    let nav_dims = source.nav_shape.len();
    let shape: Vec<usize> = axes.iter().map(|a| a.size).collect();
    let n = shape
        .iter()
        .try_fold(1usize, |a, &b| a.checked_mul(b))
        .ok_or_else(|| Error::invalid_file(ctx.err_path, format!("{shape:?} overflows")))?;
    let bytes = (n as u64).saturating_mul(4);
    let data = if ctx.lazy && bytes >= ctx.lazy_threshold {
        SignalData::Chunked(ChunkedSource::new(Box::new(source)))
    } else {
        if bytes > ctx.max_bytes {
            return Err(Error::invalid_file(
                ctx.err_path,
                format!(
                    "EDS spectrum image {shape:?} needs {bytes} bytes, more than the file \
                     justifies ({} bytes): open it lazily or bin the energy axis",
                    ctx.max_bytes
                ),
            ));
        }
        let mut buf = vec![0.0f32; n];
        source.read_frames(0, &mut buf)?;
        let arr = ArrayD::from_shape_vec(IxDyn(&shape), buf).map_err(|_| Error::ShapeMismatch {
            expected: shape.clone(),
            found: vec![n],
        })?;
        SignalData::Loaded(Hypercube::with_axes(arr, axes.clone(), nav_dims)?)
    };
    Ok(Signal {
        title,
        axes,
        nav_dims,
        original_dtype: DType::U16,
        data,
        components: Components::Scalar,
        metadata,
        tags,
    })
}
