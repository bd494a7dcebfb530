//! Named parameters with seeded initialisation.

use crate::error::{Error, Result};
use candle_core::{DType, Device, Tensor, Var};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// The trainable parameters of a model, by name (sorted, so iteration order is fixed).
///
/// Values are created from a seeded [`ChaCha8Rng`] (candle's CPU RNG cannot be seeded), so
/// equal seeds give bit-identical initial weights.
#[derive(Clone, Debug, Default)]
pub struct ParamStore {
    vars: BTreeMap<String, Var>,
}

impl ParamStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an f32 parameter of `shape` drawn uniformly from `[−bound, bound)` (PyTorch's default
    /// for conv layers uses `bound = 1/√fan_in`). Errors if the name exists or `bound` is not
    /// finite and ≥ 0.
    pub fn uniform(
        &mut self,
        name: &str,
        shape: &[usize],
        bound: f64,
        rng: &mut ChaCha8Rng,
    ) -> Result<Tensor> {
        if !(bound.is_finite() && bound >= 0.0) {
            return Err(Error::param(
                "bound",
                format!("must be finite and >= 0, got {bound}"),
            ));
        }
        let n: usize = shape.iter().product();
        let b = bound as f32;
        let v: Vec<f32> = (0..n)
            .map(|_| {
                if b > 0.0 {
                    rng.random_range(-b..b)
                } else {
                    0.0
                }
            })
            .collect();
        self.insert(name, Tensor::from_vec(v, shape, &Device::Cpu)?)
    }

    /// Adds a parameter with the given initial value. Errors if the name exists.
    pub fn insert(&mut self, name: &str, value: Tensor) -> Result<Tensor> {
        if self.vars.contains_key(name) {
            return Err(Error::param(
                "name",
                format!("parameter {name} exists already"),
            ));
        }
        let var = Var::from_tensor(&value.to_dtype(DType::F32)?)?;
        let t = var.as_tensor().clone();
        self.vars.insert(name.to_string(), var);
        Ok(t)
    }

    /// The parameter called `name`.
    pub fn get(&self, name: &str) -> Option<&Var> {
        self.vars.get(name)
    }

    /// All parameters in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Var)> {
        self.vars.iter()
    }

    /// Number of parameter tensors.
    pub fn len(&self) -> usize {
        self.vars.len()
    }

    /// Whether there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }

    /// Total number of scalar parameters.
    pub fn num_scalars(&self) -> usize {
        self.vars.values().map(|v| v.elem_count()).sum()
    }

    /// A copy of every value, by name (detached from the graph).
    pub fn snapshot(&self) -> BTreeMap<String, Tensor> {
        self.vars
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().detach()))
            .collect()
    }

    /// Overwrites every parameter from `values` (in place: tensors handed out earlier see the new
    /// values). Errors if a name is missing or a shape differs; extra names are ignored.
    pub fn load(&self, values: &BTreeMap<String, Tensor>) -> Result<()> {
        for (name, var) in &self.vars {
            let v = values.get(name).ok_or_else(|| Error::InvalidBundle {
                path: "<memory>".into(),
                reason: format!("missing parameter {name}"),
            })?;
            if v.dims() != var.dims() {
                return Err(Error::ShapeMismatch {
                    what: "parameter",
                    expected: var.dims().to_vec(),
                    found: v.dims().to_vec(),
                });
            }
            var.set(&v.to_dtype(DType::F32)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn seeded_init_is_reproducible_and_bounded() {
        let mk = |seed| {
            let mut s = ParamStore::new();
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            s.uniform("a", &[3, 4], 0.5, &mut rng).unwrap();
            s.snapshot()["a"]
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        assert_eq!(mk(1), mk(1));
        assert_ne!(mk(1), mk(2));
        assert!(mk(1).iter().all(|v| v.abs() <= 0.5));
    }

    #[test]
    fn validation_rules() {
        let mut s = ParamStore::new();
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        assert!(matches!(
            s.uniform("a", &[2], f64::NAN, &mut rng),
            Err(Error::InvalidParameter { .. })
        ));
        s.uniform("a", &[2], 1.0, &mut rng).unwrap();
        assert!(matches!(
            s.uniform("a", &[2], 1.0, &mut rng),
            Err(Error::InvalidParameter { .. })
        ));
        let mut bad = BTreeMap::new();
        bad.insert(
            "a".to_string(),
            Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
        );
        assert!(matches!(s.load(&bad), Err(Error::ShapeMismatch { .. })));
        assert!(matches!(
            s.load(&BTreeMap::new()),
            Err(Error::InvalidBundle { .. })
        ));
    }
}
