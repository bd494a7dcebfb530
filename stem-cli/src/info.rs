//! `stem info FILE`: what a microscope file holds — format, data sets, shapes, calibrated axes
//! and key metadata (optionally the whole original tag tree as JSON).

use crate::CliError;
use clap::Args;
use std::path::PathBuf;
use stem_core::io::{Components, Dataset, Signal, SignalData, open};

/// Arguments of `stem info`.
#[derive(Args, Debug)]
pub struct InfoArgs {
    /// The file to describe (DM3/DM4, MRC, TIFF, NPY, MIB, TIA .ser, EMD / HDF5, or a Zarr v3
    /// array directory).
    pub file: PathBuf,
    /// Also print the original tag tree as JSON.
    #[arg(long)]
    pub tags: bool,
}

/// Formats one signal's description (no trailing newline).
pub fn describe_signal(index: usize, s: &Signal) -> String {
    let mut out = format!(
        "[{index}] {:?} \"{}\": shape {:?} ({} navigation + {} signal axes{}), stored as {:?}{}\n",
        s.kind(),
        s.title,
        s.shape(),
        s.nav_dims,
        s.axes
            .len()
            .saturating_sub(s.nav_dims)
            .saturating_sub(usize::from(s.components.has_axis())),
        if s.components.has_axis() {
            " + 1 component axis"
        } else {
            ""
        },
        s.original_dtype,
        match s.data {
            SignalData::Lazy(_) => ", memory-mapped",
            SignalData::Chunked(_) => ", read on demand from chunks",
            _ => "",
        }
    );
    let last = s.axes.len().saturating_sub(1);
    for (i, a) in s.axes.iter().enumerate() {
        let role = if i < s.nav_dims {
            "nav"
        } else if i == last && s.components.has_axis() {
            "comp"
        } else {
            "sig"
        };
        out += &format!(
            "    axis {i} ({role}) {:<8} size {:>6}  scale {:<12} offset {:<12} {}\n",
            a.name,
            a.size,
            format!("{:.6}", a.scale),
            format!("{:.6}", a.offset),
            a.units
        );
    }
    match s.components {
        Components::Complex => {
            out += &format!("    components: complex, axis {last} = (real, imaginary)\n")
        }
        Components::Rgb => {
            out += &format!("    components: RGB colour, axis {last} = (red, green, blue)\n")
        }
        _ => {}
    }
    // Spectra: the energy axis in words (EDS / EELS channels in eV or keV).
    if let Some(e) = s.axes.get(s.nav_dims..).and_then(|sig| match sig {
        [e] if matches!(e.units.as_str(), "eV" | "keV") => Some(e),
        _ => None,
    }) {
        out += &format!(
            "    energy: {} channels, {:.4} to {:.4} {} ({:.6} {} per channel)\n",
            e.size,
            e.offset,
            e.coordinate(e.size.saturating_sub(1)),
            e.units,
            e.scale,
            e.units
        );
    }
    // Velox EDS spectrum streams: frames, events and detectors behind the spectrum image.
    if let Some(st) = s.tags.get("SpectrumStream") {
        let num = |k: &str| st.get(k).and_then(|t| t.as_f64()).unwrap_or(0.0);
        let dets: Vec<&str> = st
            .get("detectors")
            .map(|d| d.entries().iter().filter_map(|(_, v)| v.as_str()).collect())
            .unwrap_or_default();
        out += &format!(
            "    EDS spectrum stream: {} frame(s) {}, {} events ({} dropped), detector(s) {}\n",
            num("frames"),
            if s.nav_dims == 3 { "kept" } else { "summed" },
            num("events"),
            num("dropped_events"),
            dets.join(", ")
        );
    }
    let m = &s.metadata;
    let mut fields = Vec::new();
    let mut num = |name: &str, v: Option<f64>, unit: &str| {
        if let Some(v) = v {
            fields.push(format!("{name} {v} {unit}"));
        }
    };
    num("beam energy", m.beam_energy_kev, "keV");
    num(
        "convergence semi-angle",
        m.convergence_semiangle_mrad,
        "mrad",
    );
    num("collection semi-angle", m.collection_semiangle_mrad, "mrad");
    num("magnification", m.magnification, "x");
    num("camera length", m.camera_length_mm, "mm");
    num("dwell time", m.dwell_time_us, "µs");
    if let Some(d) = &m.acquisition_date {
        fields.push(format!("acquired {d}"));
    }
    if let Some(d) = &m.microscope {
        fields.push(format!("microscope {d}"));
    }
    if !fields.is_empty() {
        out += &format!("    metadata: {}\n", fields.join("; "));
    }
    out.trim_end().to_string()
}

/// Formats the description of a whole data set.
pub fn describe(path: &std::path::Path, ds: &Dataset) -> String {
    let mut out = format!(
        "{}: {} file, {} data set(s), {} tags\n",
        path.display(),
        ds.format.name(),
        ds.signals.len(),
        ds.tags.node_count()
    );
    for (i, s) in ds.signals.iter().enumerate() {
        out += &describe_signal(i, s);
        out.push('\n');
    }
    // Data sets the reader recognised but does not decode (e.g. Velox compressed spectrum
    // images, point EDS streams).
    if let Some(skipped) = ds.tags.get("skipped") {
        for (name, why) in skipped.entries() {
            out += &format!("    skipped {name}: {}\n", why.as_str().unwrap_or(""));
        }
    }
    out
}

/// Runs `stem info`.
pub fn run(args: &InfoArgs) -> Result<(), CliError> {
    let ds = open(&args.file)?;
    print!("{}", describe(&args.file, &ds));
    if args.tags {
        let json = serde_json::to_string_pretty(&ds.tags)
            .map_err(|e| CliError::Argument(format!("cannot serialise tags: {e}")))?;
        println!("{json}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;
    use stem_core::Axis;

    #[test]
    fn describes_a_calibrated_tiff() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.tif");
        let image = Array2::from_shape_fn((3, 4), |(y, x)| (y + x) as f32);
        let axes = [
            Axis::new("y", 3, 0.5, 0.0, "nm"),
            Axis::new("x", 4, 0.5, 0.0, "nm"),
        ];
        stem_core::io::tiff::write_tiff(&path, image.view(), &axes).unwrap();
        let ds = open(&path).unwrap();
        let text = describe(&path, &ds);
        assert!(text.contains("tiff file, 1 data set(s)"), "{text}");
        assert!(text.contains("Image"), "{text}");
        assert!(text.contains("shape [3, 4]"), "{text}");
        assert!(text.contains("scale 0.500000"), "{text}");
        assert!(text.contains(" nm"), "{text}");
    }

    fn signal(shape: &[usize], axes: Vec<Axis>, nav_dims: usize, components: Components) -> Signal {
        let data = ndarray::ArrayD::<f32>::zeros(ndarray::IxDyn(shape));
        let cube = stem_core::Hypercube::with_axes(data, axes.clone(), nav_dims).unwrap();
        Signal {
            title: "t".into(),
            axes,
            nav_dims,
            original_dtype: stem_core::frame_source::DType::F32,
            data: SignalData::Loaded(cube),
            components,
            metadata: Default::default(),
            tags: stem_core::io::TagValue::group(),
        }
    }

    #[test]
    fn shows_the_component_axis_of_complex_and_rgb_images() {
        let yx = || {
            vec![
                Axis::new("y", 2, 1.0, 0.0, "nm"),
                Axis::new("x", 3, 1.0, 0.0, "nm"),
            ]
        };
        let mut axes = yx();
        axes.extend(Components::Complex.axis());
        let text = describe_signal(0, &signal(&[2, 3, 2], axes, 0, Components::Complex));
        assert!(text.contains("Image"), "{text}");
        assert!(
            text.contains("(0 navigation + 2 signal axes + 1 component axis)"),
            "{text}"
        );
        assert!(
            text.contains("components: complex, axis 2 = (real, imaginary)"),
            "{text}"
        );
        assert!(text.contains("axis 2 (comp) component"), "{text}");
        let mut axes = yx();
        axes.extend(Components::Rgb.axis());
        let text = describe_signal(0, &signal(&[2, 3, 3], axes, 0, Components::Rgb));
        assert!(text.contains("components: RGB colour, axis 2"), "{text}");
        let text = describe_signal(0, &signal(&[2, 3], yx(), 0, Components::Scalar));
        assert!(!text.contains("components"), "{text}");
    }

    #[test]
    fn shows_the_energy_axis_and_stream_of_an_eds_spectrum_image() {
        let axes = vec![
            Axis::new("y", 2, 1.0, 0.0, "nm"),
            Axis::new("x", 2, 1.0, 0.0, "nm"),
            Axis::new("energy", 4096, 0.005, -1.0, "keV"),
        ];
        let mut s = signal(&[2, 2, 4096], axes, 2, Components::Scalar);
        use stem_core::io::TagValue;
        s.tags = TagValue::Group(vec![(
            "SpectrumStream".into(),
            TagValue::Group(vec![
                ("frames".into(), TagValue::Int(2)),
                ("events".into(), TagValue::Int(3562739)),
                ("dropped_events".into(), TagValue::Int(0)),
                (
                    "detectors".into(),
                    TagValue::Group(vec![
                        (String::new(), TagValue::Text("SuperXG21".into())),
                        (String::new(), TagValue::Text("SuperXG22".into())),
                    ]),
                ),
            ]),
        )]);
        let text = describe_signal(0, &s);
        assert!(text.contains("SpectrumImage"), "{text}");
        // -1 + 4095 × 0.005 = 19.475 keV.
        assert!(
            text.contains(
                "energy: 4096 channels, -1.0000 to 19.4750 keV (0.005000 keV per channel)"
            ),
            "{text}"
        );
        assert!(
            text.contains("EDS spectrum stream: 2 frame(s) summed, 3562739 events (0 dropped), detector(s) SuperXG21, SuperXG22"),
            "{text}"
        );
    }

    #[test]
    fn describes_a_chunked_array_and_skipped_data_sets() {
        use stem_core::frame_source::InMemorySource;
        use stem_core::io::TagValue;
        use stem_core::io::zarr::{ZarrWriteConfig, write_zarr};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cube.zarr");
        let data = ndarray::ArrayD::from_elem(ndarray::IxDyn(&[2, 3, 4, 4]), 1.0f32);
        let cube = stem_core::Hypercube::new(data, 2).unwrap();
        write_zarr(
            &InMemorySource::new(cube.view()),
            &path,
            &ZarrWriteConfig::default(),
            &stem_core::NoProgress,
        )
        .unwrap();
        let mut ds = open(&path).unwrap();
        ds.tags = TagValue::Group(vec![(
            "skipped".into(),
            TagValue::Group(vec![(
                "Data/SpectrumStream/x".into(),
                TagValue::Text("EDS spectrum stream".into()),
            )]),
        )]);
        let text = describe(&path, &ds);
        assert!(text.contains("zarr file, 1 data set(s)"), "{text}");
        assert!(text.contains("FourDStem"), "{text}");
        assert!(text.contains("read on demand from chunks"), "{text}");
        assert!(
            text.contains("skipped Data/SpectrumStream/x: EDS spectrum stream"),
            "{text}"
        );
    }
}
