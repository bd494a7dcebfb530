//! Labelled datasets as reproducible recipes.
//!
//! A [`Recipe`] (serde JSON, a few kB) names a [`Generator`] with its parameters, a degradation
//! [`Chain`], a sample count and a seed. [`Dataset`] turns it into samples deterministically:
//! sample `i` draws its generator parameters from `ChaCha8Rng::seed_from_u64(seed)` on stream
//! `i` and then the chain with a seed drawn from that stream, so any sample can be made alone
//! ([`Dataset::sample`]), streamed for training without storing ([`Dataset::iter`]), or written
//! to disk with a manifest and the SHA-256 of every file ([`Dataset::write`]). The same recipe
//! gives the same bytes on any thread count.
//!
//! Generators ([`Generator`], `#[non_exhaustive]`, internally tagged by `"kind"`):
//!
//! | kind | generator | payload |
//! |---|---|---|
//! | `lattice` | [`LatticeGenerator`]: fast incoherent model of a 2-D [`CellSpec`] (Gaussian or Airy columns, `Σ Z^n`) | image |
//! | `domains` | [`DomainGenerator`]: polarisation domains with domain and boundary maps | image |
//! | `series` | [`SeriesGenerator`]: frames of one specimen with known shifts and scan distortions | image |
//! | `multislice_adf` | [`AdfGenerator`]: multislice ADF of a `structure::Structure` (vacancies, substitutions, frozen phonons), detected beam fraction per pixel | image |
//! | `incoherent_adf` | [`AdfGenerator`]: the fast model of the same structure, probe intensity \|ψ\|² as kernel | image |
//! | `pacbed` | [`PacbedGenerator`]: PACBED thickness series from one multislice pass per drawn tilt | [`Payload::Stack`] |
//! | `cube_4d` | [`Cube4dGenerator`]: 4D-STEM across a chemical interface, noisy + clean | [`Payload::Cube`] |
//!
//! The stack and cube payloads are written as extra NPY files (see [`SampleEntry`]); the
//! degradation chain only acts on 2-D images, so recipes of those kinds take none.
//!
//! ```
//! use stem_sim::dataset::{Dataset, Recipe};
//! use stem_core::Parallelism;
//!
//! let recipe: Recipe = serde_json::from_str(r#"{
//!     "name": "sto-small", "seed": 1, "count": 3,
//!     "generator": {"kind": "lattice", "cell": {"preset": "srtio3001"}, "shape": [64, 64],
//!                   "rotation_deg": [0, 90], "mask_radius_a": 0.5},
//!     "degradations": [{"kind": "poisson", "dose": {"counts_per_px": 100}}]
//! }"#)?;
//! let data = Dataset::new(recipe, Parallelism::Auto)?;
//! let samples: Vec<_> = data.iter().collect::<Result<_, _>>()?;
//! assert_eq!(samples.len(), 3);
//! assert_eq!(samples[1], data.sample(1)?); // random access = streaming
//! assert!(samples[0].labels.len() > 10);
//! assert!(samples[0].labels.mask("columns").is_some());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod adf;
mod crystal;
mod cube;
mod domains;
mod lattice;
mod pacbed;
mod render;
mod series;
mod store;
#[cfg(test)]
mod tests;

pub use adf::AdfGenerator;
pub use crystal::{
    AtomSubstitution, COLUMN_TOLERANCE_A, CrystalSpec, ProbeSpec, ProjectedColumn, Vacancy,
    column_name, project_columns,
};
pub use cube::{Cube4dGenerator, ElementSwap};
pub use domains::{DomainGenerator, DomainLayout};
pub use lattice::{LatticeGenerator, Substitution};
pub use pacbed::PacbedGenerator;
pub use render::{
    CellPreset, CellSpec, ColumnProfile, bessel_j1, class_names, electron_wavelength_a,
};
pub use series::{SeriesGenerator, distort_frame, distort_image};
pub use store::{CubeEntry, FileEntry, MANIFEST_FORMAT, Manifest, SampleEntry, StackEntry};

pub use crate::degrade::Payload;
use crate::degrade::{Chain, Sample};
use crate::error::{Error, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use stem_core::{Parallelism, Progress};

/// What makes the clean, labelled samples. JSON: an object with `"kind"` and the variant's
/// fields.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Generator {
    /// Atom-finding images ([`LatticeGenerator`]).
    Lattice(LatticeGenerator),
    /// Domain images ([`DomainGenerator`]).
    Domains(DomainGenerator),
    /// Image series: sample i is frame i ([`SeriesGenerator`]).
    Series(SeriesGenerator),
    /// Multislice ADF images of a crystal structure ([`AdfGenerator`]).
    MultisliceAdf(AdfGenerator),
    /// The fast incoherent model of the same structures ([`AdfGenerator`]).
    IncoherentAdf(AdfGenerator),
    /// PACBED thickness series at drawn tilts ([`PacbedGenerator`]; stack payload).
    Pacbed(PacbedGenerator),
    /// 4D-STEM cubes across an interface with their clean version ([`Cube4dGenerator`];
    /// cube payload).
    #[serde(rename = "cube_4d")]
    Cube4d(Cube4dGenerator),
}

impl Generator {
    /// Checks the generator's parameters.
    pub fn validate(&self) -> Result<()> {
        match self {
            Generator::Lattice(g) => g.validate(),
            Generator::Domains(g) => g.validate(),
            Generator::Series(g) => g.validate(),
            Generator::MultisliceAdf(g) | Generator::IncoherentAdf(g) => g.validate(),
            Generator::Pacbed(g) => g.validate(),
            Generator::Cube4d(g) => g.validate(),
        }
    }
}

/// A dataset recipe: everything needed to regenerate the data bit for bit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// Name (used in the manifest).
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Master seed.
    pub seed: u64,
    /// Number of samples (≥ 1, ≤ 10⁸).
    pub count: usize,
    /// The generator.
    pub generator: Generator,
    /// Degradations applied to every sample, in order.
    #[serde(default)]
    pub degradations: Chain,
}

impl Recipe {
    /// Checks the count, the generator and the chain.
    pub fn validate(&self) -> Result<()> {
        if self.count == 0 || self.count > 100_000_000 {
            return Err(Error::invalid(
                "count",
                format!("must be 1 ..= 1e8, got {}", self.count),
            ));
        }
        self.generator.validate()?;
        if let Generator::Series(g) = &self.generator {
            g.check_margin(self.count)?;
        }
        if matches!(self.generator, Generator::Pacbed(_) | Generator::Cube4d(_))
            && !self.degradations.0.is_empty()
        {
            return Err(Error::invalid(
                "degradations",
                "pacbed and cube_4d samples carry a stack/cube payload that the 2-D degradation \
                 chain cannot transform; leave it empty (cube_4d has its own dose_e_per_pattern)",
            ));
        }
        self.degradations.validate()
    }

    /// Reads a recipe from a JSON file.
    pub fn from_json_file(path: impl AsRef<std::path::Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|e| Error::InvalidFile {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }
}

/// Forwards only cancellation (the inner scans must not restart the caller's progress stage).
struct CancelOnly<'a>(&'a dyn Progress);

impl Progress for CancelOnly<'_> {
    fn is_cancelled(&self) -> bool {
        self.0.is_cancelled()
    }
}

/// Stream of the specimen of a series (all frames share it).
const SPECIMEN_STREAM: u64 = u64::MAX;

/// A validated recipe, ready to generate.
#[derive(Clone, Debug)]
pub struct Dataset {
    recipe: Recipe,
    parallelism: Parallelism,
    /// The specimen of a series, rendered once.
    specimen: std::sync::OnceLock<Sample>,
}

impl Dataset {
    /// Validates the recipe. `parallelism` sets the threads of [`Dataset::sample`],
    /// [`Dataset::iter`] and [`Dataset::write`]; results never depend on it.
    pub fn new(recipe: Recipe, parallelism: Parallelism) -> Result<Self> {
        recipe.validate()?;
        Ok(Dataset {
            recipe,
            parallelism,
            specimen: std::sync::OnceLock::new(),
        })
    }

    /// The recipe.
    pub fn recipe(&self) -> &Recipe {
        &self.recipe
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.recipe.count
    }

    /// Always false (a recipe has at least one sample).
    pub fn is_empty(&self) -> bool {
        self.recipe.count == 0
    }

    fn rng(&self, stream: u64) -> ChaCha8Rng {
        let mut rng = ChaCha8Rng::seed_from_u64(self.recipe.seed);
        rng.set_stream(stream);
        rng
    }

    /// Sample `index` (clean generation, then the degradation chain).
    ///
    /// Errors: `index ≥ len` ([`Error::InvalidParameter`]) and generation errors.
    pub fn sample(&self, index: usize) -> Result<Sample> {
        if index >= self.len() {
            return Err(Error::invalid(
                "index",
                format!("{index} is not below the sample count {}", self.len()),
            ));
        }
        self.parallelism
            .install(|| self.sample_here(index))
            .map_err(Error::from)?
    }

    pub(crate) fn sample_here(&self, index: usize) -> Result<Sample> {
        self.sample_cancellable(index, &stem_core::NoProgress)
    }

    /// As [`Dataset::sample`] on the current pool; the multislice kinds check `cancel` before
    /// every probe position (only its `is_cancelled` is used).
    pub(crate) fn sample_cancellable(&self, index: usize, cancel: &dyn Progress) -> Result<Sample> {
        let cancel = CancelOnly(cancel);
        let mut rng = self.rng(index as u64);
        let mut sample = match &self.recipe.generator {
            Generator::Lattice(g) => g.generate(&mut rng)?,
            Generator::Domains(g) => g.generate(&mut rng)?,
            Generator::Series(g) => {
                let specimen = match self.specimen.get() {
                    Some(s) => s,
                    None => {
                        let s = g.specimen_with_margin(&mut self.rng(SPECIMEN_STREAM))?;
                        self.specimen.get_or_init(|| s)
                    }
                };
                g.frame(specimen, index, &mut rng)?
            }
            Generator::MultisliceAdf(g) => g.generate_with(&mut rng, true, &cancel)?,
            Generator::IncoherentAdf(g) => g.generate_incoherent(&mut rng)?,
            Generator::Pacbed(g) => g.generate_with(&mut rng, &cancel)?,
            Generator::Cube4d(g) => g.generate_with(&mut rng, &cancel)?,
        };
        let chain_seed: u64 = rng.random();
        self.recipe.degradations.apply(&mut sample, chain_seed)?;
        Ok(sample)
    }

    /// The undistorted reference of generators that have one (the specimen window of a
    /// series), without degradations; `None` otherwise.
    pub fn reference(&self) -> Result<Option<Sample>> {
        self.parallelism
            .install(|| self.reference_here())
            .map_err(Error::from)?
    }

    pub(crate) fn reference_here(&self) -> Result<Option<Sample>> {
        match &self.recipe.generator {
            Generator::Series(g) => g.reference(&mut self.rng(SPECIMEN_STREAM)).map(Some),
            _ => Ok(None),
        }
    }

    /// Streams the samples in order, generating each on demand (nothing is stored).
    pub fn iter(&self) -> impl Iterator<Item = Result<Sample>> + '_ {
        (0..self.len()).map(|i| self.sample(i))
    }

    /// Writes every sample to `dir` (created if missing) as NPY files plus `manifest.json`
    /// (see [`Manifest`]); reports one unit per sample to `progress` and stops with
    /// `Error::Core(Cancelled)` when it asks to.
    pub fn write(&self, dir: &std::path::Path, progress: &dyn Progress) -> Result<Manifest> {
        store::write(self, dir, progress)
    }

    pub(crate) fn parallelism(&self) -> Parallelism {
        self.parallelism
    }
}
