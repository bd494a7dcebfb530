//! The small CNN regressor: conv blocks, a flattened low-resolution map and two dense layers.

use crate::error::{Error, Result};
use crate::ops::{Conv2dParams, conv2d, leaky_relu, max_pool2x2};
use crate::params::ParamStore;
use candle_core::Tensor;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Architecture of one PACBED regressor.
///
/// Block `i` is a 3×3 "same" convolution to `filters[i]` channels, leaky ReLU and 2×2
/// max-pooling, so an `input_px` input ends as a `filters.last()` × (`input_px / 2^n`)²
/// map. That map is flattened (keeping the spatial layout, which carries the tilt direction),
/// followed by a dense layer of `hidden` units with leaky ReLU (the *features* used by the
/// out-of-distribution test) and a dense layer to the 3 outputs
/// `[thickness, tilt_y, tilt_x]` (scaled, see `PacbedModelConfig`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PacbedNetConfig {
    /// Input side in px (a multiple of `2^filters.len()`; default 48).
    pub input_px: usize,
    /// Output channels per block (1 ..= 6 blocks, each 1 ..= 256; default `[8, 16, 32, 32]`).
    pub filters: Vec<usize>,
    /// Width of the feature layer (1 ..= 1024; default 64).
    pub hidden: usize,
    /// Negative slope of the leaky ReLUs (0 ..= 1; default 0.01).
    pub leaky_slope: f64,
}

impl Default for PacbedNetConfig {
    fn default() -> Self {
        PacbedNetConfig {
            input_px: 48,
            filters: vec![8, 16, 32, 32],
            hidden: 64,
            leaky_slope: 0.01,
        }
    }
}

/// Number of network outputs: thickness, tilt y, tilt x.
pub const N_OUTPUTS: usize = 3;

impl PacbedNetConfig {
    /// Checks the ranges listed on the fields and that `input_px` is a positive multiple of
    /// `2^filters.len()`.
    pub fn validate(&self) -> Result<()> {
        if self.filters.is_empty()
            || self.filters.len() > 6
            || self.filters.iter().any(|&f| f == 0 || f > 256)
        {
            return Err(Error::param(
                "filters",
                format!(
                    "need 1 ..= 6 blocks of 1 ..= 256 channels, got {:?}",
                    self.filters
                ),
            ));
        }
        let m = 1usize << self.filters.len();
        if self.input_px == 0 || self.input_px % m != 0 || self.input_px > 1024 {
            return Err(Error::param(
                "input_px",
                format!(
                    "must be a positive multiple of 2^blocks = {m} (<= 1024), got {}",
                    self.input_px
                ),
            ));
        }
        if !(1..=1024).contains(&self.hidden) {
            return Err(Error::param(
                "hidden",
                format!("must be 1 ..= 1024, got {}", self.hidden),
            ));
        }
        if !(0.0..=1.0).contains(&self.leaky_slope) {
            return Err(Error::param(
                "leaky_slope",
                format!("must be 0 ..= 1, got {}", self.leaky_slope),
            ));
        }
        Ok(())
    }

    /// Side of the last feature map in px.
    pub fn final_side(&self) -> usize {
        self.input_px >> self.filters.len()
    }

    /// Length of the flattened last map.
    pub fn flat_len(&self) -> usize {
        let s = self.final_side();
        self.filters.last().copied().unwrap_or(0) * s * s
    }
}

/// One PACBED regressor with its parameters.
#[derive(Clone, Debug)]
pub struct PacbedNet {
    config: PacbedNetConfig,
    params: ParamStore,
    convs: Vec<(Tensor, Tensor)>,
    fc1: (Tensor, Tensor),
    fc2: (Tensor, Tensor),
}

impl PacbedNet {
    /// Builds the network with He-uniform weights (`√(6/fan_in)`; output layer `1/√fan_in`)
    /// and zero biases drawn from `ChaCha8Rng::seed_from_u64(seed)` in a fixed order.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use stem_learn::pacbed::{PacbedNet, PacbedNetConfig};
    /// let net = PacbedNet::new(PacbedNetConfig::default(), 1).unwrap();
    /// let x = Tensor::zeros((2, 1, 48, 48), DType::F32, &Device::Cpu).unwrap();
    /// let (y, f) = net.forward(&x).unwrap();
    /// assert_eq!((y.dims(), f.dims()), (&[2, 3][..], &[2, 64][..]));
    /// ```
    pub fn new(config: PacbedNetConfig, seed: u64) -> Result<Self> {
        config.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut ps = ParamStore::new();
        let mut convs = Vec::new();
        let mut cin = 1;
        for (i, &f) in config.filters.iter().enumerate() {
            let fan = (cin * 9) as f64;
            let w = ps.uniform(
                &format!("conv{i}.weight"),
                &[f, cin, 3, 3],
                (6.0 / fan).sqrt(),
                &mut rng,
            )?;
            let b = ps.uniform(&format!("conv{i}.bias"), &[f], 0.0, &mut rng)?;
            convs.push((w, b));
            cin = f;
        }
        let flat = config.flat_len();
        let w1 = ps.uniform(
            "fc1.weight",
            &[config.hidden, flat],
            (6.0 / flat as f64).sqrt(),
            &mut rng,
        )?;
        let b1 = ps.uniform("fc1.bias", &[config.hidden], 0.0, &mut rng)?;
        let w2 = ps.uniform(
            "fc2.weight",
            &[N_OUTPUTS, config.hidden],
            1.0 / (config.hidden as f64).sqrt(),
            &mut rng,
        )?;
        let b2 = ps.uniform("fc2.bias", &[N_OUTPUTS], 0.0, &mut rng)?;
        Ok(PacbedNet {
            config,
            params: ps,
            convs,
            fc1: (w1, b1),
            fc2: (w2, b2),
        })
    }

    /// The architecture.
    pub fn config(&self) -> &PacbedNetConfig {
        &self.config
    }

    /// The parameters (for the optimizer and bundles).
    pub fn params(&self) -> &ParamStore {
        &self.params
    }

    /// Outputs `[b, 3]` and features `[b, hidden]` for inputs `[b, 1, input_px, input_px]`.
    pub fn forward(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let n = self.config.input_px;
        let dims = x.dims();
        if dims.len() != 4 || dims[1] != 1 || dims[2] != n || dims[3] != n || dims[0] == 0 {
            return Err(Error::ShapeMismatch {
                what: "PACBED net input [b, 1, n, n]",
                expected: vec![0, 1, n, n],
                found: dims.to_vec(),
            });
        }
        let b = dims[0];
        let mut h = x.clone();
        for (w, bias) in &self.convs {
            h = conv2d(&h, w, Some(bias), Conv2dParams::same(3, 1))?;
            h = leaky_relu(&h, self.config.leaky_slope)?;
            h = max_pool2x2(&h)?;
        }
        let h = h.reshape((b, self.config.flat_len()))?;
        let f = h.matmul(&self.fc1.0.t()?)?.broadcast_add(&self.fc1.1)?;
        let f = leaky_relu(&f, self.config.leaky_slope)?;
        let y = f.matmul(&self.fc2.0.t()?)?.broadcast_add(&self.fc2.1)?;
        Ok((y, f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn validation_rules() {
        let ok = PacbedNetConfig::default();
        for bad in [
            PacbedNetConfig {
                filters: vec![],
                ..ok.clone()
            },
            PacbedNetConfig {
                filters: vec![8; 7],
                input_px: 128,
                ..ok.clone()
            },
            PacbedNetConfig {
                filters: vec![8, 0],
                ..ok.clone()
            },
            PacbedNetConfig {
                input_px: 40,
                ..ok.clone()
            },
            PacbedNetConfig {
                hidden: 0,
                ..ok.clone()
            },
            PacbedNetConfig {
                leaky_slope: -0.1,
                ..ok.clone()
            },
        ] {
            assert!(matches!(
                PacbedNet::new(bad, 0),
                Err(Error::InvalidParameter { .. })
            ));
        }
        let net = PacbedNet::new(ok, 0).unwrap();
        let x = Tensor::zeros((1, 1, 32, 32), DType::F32, &Device::Cpu).unwrap();
        assert!(matches!(net.forward(&x), Err(Error::ShapeMismatch { .. })));
    }

    #[test]
    fn seeded_weights() {
        let a = PacbedNet::new(PacbedNetConfig::default(), 3)
            .unwrap()
            .params()
            .snapshot();
        let b = PacbedNet::new(PacbedNetConfig::default(), 3)
            .unwrap()
            .params()
            .snapshot();
        let c = PacbedNet::new(PacbedNetConfig::default(), 4)
            .unwrap()
            .params()
            .snapshot();
        let v = |m: &std::collections::BTreeMap<String, Tensor>| {
            m["conv1.weight"]
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        assert_eq!(v(&a), v(&b));
        assert_ne!(v(&a), v(&c));
    }
}
