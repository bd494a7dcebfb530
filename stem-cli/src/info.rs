//! `stem info FILE`: what a microscope file holds — format, data sets, shapes, calibrated axes
//! and key metadata (optionally the whole original tag tree as JSON).

use crate::CliError;
use clap::Args;
use std::path::PathBuf;
use stem_core::io::{Dataset, Signal, SignalData, open};

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
        "[{index}] {:?} \"{}\": shape {:?} ({} navigation + {} signal axes), stored as {:?}{}\n",
        s.kind(),
        s.title,
        s.shape(),
        s.nav_dims,
        s.axes.len() - s.nav_dims,
        s.original_dtype,
        match s.data {
            SignalData::Lazy(_) => ", memory-mapped",
            SignalData::Chunked(_) => ", read on demand from chunks",
            _ => "",
        }
    );
    for (i, a) in s.axes.iter().enumerate() {
        let role = if i < s.nav_dims { "nav" } else { "sig" };
        out += &format!(
            "    axis {i} ({role}) {:<8} size {:>6}  scale {:<12} offset {:<12} {}\n",
            a.name,
            a.size,
            format!("{:.6}", a.scale),
            format!("{:.6}", a.offset),
            a.units
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
    // Data sets the reader recognised but does not decode (EMD spectrum streams, complex data).
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
