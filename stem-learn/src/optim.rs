//! AdamW with checkpointable state and learning-rate schedules.

use crate::error::{Error, Result};
use crate::params::ParamStore;
use candle_core::Tensor;
use candle_core::backprop::GradStore;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// AdamW hyper-parameters (Loshchilov & Hutter 2019, decoupled weight decay).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    /// Peak learning rate. Default 1e-3 (AtomAI's Adam default).
    pub lr: f64,
    /// First-moment decay. Default 0.9.
    pub beta1: f64,
    /// Second-moment decay. Default 0.999.
    pub beta2: f64,
    /// Denominator guard. Default 1e-8.
    pub eps: f64,
    /// Decoupled weight decay per step (multiplied by the learning rate). Default 0 (= Adam).
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

impl AdamWConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(Error::param(
                "lr",
                format!("must be finite and > 0, got {}", self.lr),
            ));
        }
        for (name, b) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return Err(Error::param(name, format!("must lie in [0, 1), got {b}")));
            }
        }
        if !(self.eps > 0.0 && self.eps.is_finite()) {
            return Err(Error::param(
                "eps",
                format!("must be finite and > 0, got {}", self.eps),
            ));
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return Err(Error::param(
                "weight_decay",
                format!("must be finite and >= 0, got {}", self.weight_decay),
            ));
        }
        Ok(())
    }
}

/// Learning-rate schedule: the factor applied to [`AdamWConfig::lr`] at each step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LrSchedule {
    /// Factor 1 throughout.
    Constant,
    /// Linear warm-up over `warmup_steps`, then cosine decay to `min_factor` at `total_steps`.
    Cosine {
        /// Steps of linear warm-up from 0 to 1.
        warmup_steps: u64,
        /// Step at which the factor reaches `min_factor` (and stays).
        total_steps: u64,
        /// Final factor in [0, 1].
        min_factor: f64,
    },
}

impl LrSchedule {
    /// The learning-rate factor at 0-based `step`.
    ///
    /// ```
    /// use stem_learn::optim::LrSchedule;
    /// let s = LrSchedule::Cosine { warmup_steps: 10, total_steps: 110, min_factor: 0.0 };
    /// assert!((s.factor(4) - 0.5).abs() < 1e-12);   // warm-up: (4 + 1) / 10
    /// assert!((s.factor(60) - 0.5).abs() < 1e-12);  // half-way through the cosine
    /// assert_eq!(s.factor(500), 0.0);
    /// ```
    pub fn factor(&self, step: u64) -> f64 {
        match *self {
            LrSchedule::Constant => 1.0,
            LrSchedule::Cosine {
                warmup_steps,
                total_steps,
                min_factor,
            } => {
                if step < warmup_steps {
                    (step + 1) as f64 / warmup_steps as f64
                } else if step >= total_steps {
                    min_factor
                } else {
                    let span = (total_steps - warmup_steps).max(1) as f64;
                    let t = (step - warmup_steps) as f64 / span;
                    min_factor + (1.0 - min_factor) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
                }
            }
        }
    }

    /// Checks the fields.
    pub fn validate(&self) -> Result<()> {
        if let LrSchedule::Cosine {
            warmup_steps,
            total_steps,
            min_factor,
        } = *self
        {
            if !(0.0..=1.0).contains(&min_factor) {
                return Err(Error::param(
                    "min_factor",
                    format!("must lie in [0, 1], got {min_factor}"),
                ));
            }
            if warmup_steps > total_steps {
                return Err(Error::param(
                    "warmup_steps",
                    format!("{warmup_steps} exceeds total_steps {total_steps}"),
                ));
            }
        }
        Ok(())
    }
}

/// AdamW whose moments and step count can be saved and restored (candle-nn's are private).
#[derive(Clone, Debug)]
pub struct AdamW {
    config: AdamWConfig,
    step: u64,
    m: BTreeMap<String, Tensor>,
    v: BTreeMap<String, Tensor>,
}

impl AdamW {
    /// A fresh optimizer (step 0, zero moments). Validates the config.
    pub fn new(config: AdamWConfig) -> Result<Self> {
        config.validate()?;
        Ok(AdamW {
            config,
            step: 0,
            m: BTreeMap::new(),
            v: BTreeMap::new(),
        })
    }

    /// Number of updates applied so far.
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &AdamWConfig {
        &self.config
    }

    /// One update of every parameter that has a gradient, at learning rate `lr_factor · lr`:
    /// `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`,
    /// `θ ← θ − lr·(m̂/(√v̂ + ε) + λθ)` with bias-corrected `m̂, v̂`.
    pub fn step(&mut self, params: &ParamStore, grads: &GradStore, lr_factor: f64) -> Result<()> {
        self.step += 1;
        let c = &self.config;
        let lr = c.lr * lr_factor;
        let bc1 = 1.0 - c.beta1.powi(self.step as i32);
        let bc2 = 1.0 - c.beta2.powi(self.step as i32);
        for (name, var) in params.iter() {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let m = match self.m.get(name) {
                Some(m) => ((m * c.beta1)? + (g * (1.0 - c.beta1))?)?,
                None => (g * (1.0 - c.beta1))?,
            };
            let v = match self.v.get(name) {
                Some(v) => ((v * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?,
                None => (g.sqr()? * (1.0 - c.beta2))?,
            };
            let mhat = (&m / bc1)?;
            let vhat = (&v / bc2)?;
            let upd = (mhat / (vhat.sqrt()? + c.eps)?)?;
            let theta = var.as_tensor();
            let new = if c.weight_decay > 0.0 {
                ((theta * (1.0 - lr * c.weight_decay))? - (upd * lr)?)?
            } else {
                (theta - (upd * lr)?)?
            };
            var.set(&new)?;
            self.m.insert(name.clone(), m);
            self.v.insert(name.clone(), v);
        }
        Ok(())
    }

    /// The state as named tensors (`m.<name>`, `v.<name>`) plus the step count.
    pub fn state(&self) -> (BTreeMap<String, Tensor>, u64) {
        let mut out = BTreeMap::new();
        for (k, t) in &self.m {
            out.insert(format!("m.{k}"), t.clone());
        }
        for (k, t) in &self.v {
            out.insert(format!("v.{k}"), t.clone());
        }
        (out, self.step)
    }

    /// Restores a state saved by [`state`](Self::state).
    pub fn restore(&mut self, tensors: &BTreeMap<String, Tensor>, step: u64) {
        self.m.clear();
        self.v.clear();
        for (k, t) in tensors {
            if let Some(n) = k.strip_prefix("m.") {
                self.m.insert(n.to_string(), t.clone());
            } else if let Some(n) = k.strip_prefix("v.") {
                self.v.insert(n.to_string(), t.clone());
            }
        }
        self.step = step;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};
    use rand::SeedableRng;

    #[test]
    fn first_step_matches_hand_computation() {
        // After one step, m̂ = g and v̂ = g², so θ moves by lr·g/(|g| + ε) ≈ lr·sign(g).
        let mut ps = ParamStore::new();
        ps.insert("w", Tensor::new(&[1f32, -2.0], &Device::Cpu).unwrap())
            .unwrap();
        let w = ps.get("w").unwrap().as_tensor().clone();
        let loss = (&w * &Tensor::new(&[3f32, -0.5], &Device::Cpu).unwrap())
            .unwrap()
            .sum_all()
            .unwrap();
        let grads = loss.backward().unwrap();
        let mut opt = AdamW::new(AdamWConfig {
            lr: 0.1,
            weight_decay: 0.5,
            ..Default::default()
        })
        .unwrap();
        opt.step(&ps, &grads, 1.0).unwrap();
        let v = ps.get("w").unwrap().as_tensor().to_vec1::<f32>().unwrap();
        // θ(1 − lr·λ) − lr·sign(g): 1·0.95 − 0.1 = 0.85; −2·0.95 + 0.1 = −1.8.
        assert!(
            (v[0] - 0.85).abs() < 1e-6 && (v[1] + 1.8).abs() < 1e-6,
            "{v:?}"
        );
        assert_eq!(opt.step_count(), 1);
    }

    #[test]
    fn minimises_a_quadratic() {
        let mut ps = ParamStore::new();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        ps.uniform("x", &[5], 2.0, &mut rng).unwrap();
        let mut opt = AdamW::new(AdamWConfig {
            lr: 0.05,
            ..Default::default()
        })
        .unwrap();
        for _ in 0..400 {
            let x: &Var = ps.get("x").unwrap();
            let loss = (x.as_tensor() - 0.7)
                .unwrap()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap();
            let g = loss.backward().unwrap();
            opt.step(&ps, &g, 1.0).unwrap();
        }
        let x = ps.get("x").unwrap().as_tensor().to_vec1::<f32>().unwrap();
        // Adam oscillates within ~lr of the optimum at the end; 0.01 is well inside that.
        assert!(x.iter().all(|v| (v - 0.7).abs() < 0.01), "{x:?}");
    }

    #[test]
    fn validation_rules() {
        assert!(
            AdamW::new(AdamWConfig {
                lr: 0.0,
                ..Default::default()
            })
            .is_err()
        );
        assert!(
            AdamW::new(AdamWConfig {
                beta1: 1.0,
                ..Default::default()
            })
            .is_err()
        );
        assert!(
            AdamW::new(AdamWConfig {
                beta2: -0.1,
                ..Default::default()
            })
            .is_err()
        );
        assert!(
            AdamW::new(AdamWConfig {
                eps: 0.0,
                ..Default::default()
            })
            .is_err()
        );
        assert!(
            AdamW::new(AdamWConfig {
                weight_decay: -1.0,
                ..Default::default()
            })
            .is_err()
        );
        let s = LrSchedule::Cosine {
            warmup_steps: 5,
            total_steps: 2,
            min_factor: 0.1,
        };
        assert!(s.validate().is_err());
        let s = LrSchedule::Cosine {
            warmup_steps: 0,
            total_steps: 2,
            min_factor: 1.5,
        };
        assert!(s.validate().is_err());
    }
}
