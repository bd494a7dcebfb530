//! A small U-Net segmentor (AtomAI `Segmentor`-like, sized for CPU).

use crate::error::{Error, Result};
use crate::ops::{
    Conv2dParams, conv2d, leaky_relu, max_pool2x2, upsample_bilinear2x, upsample_nearest2x,
};
use crate::params::ParamStore;
use candle_core::Tensor;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// How the decoder doubles the resolution before its 1×1 convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Upsample {
    /// Nearest neighbour ×2.
    Nearest,
    /// Bilinear ×2 (half-pixel centres), AtomAI's default.
    Bilinear,
}

/// U-Net architecture.
///
/// Encoder level `i` (0-based, `i < depth`) has `base_filters·2^i` channels and ends in a 2×2
/// max-pool; the bottleneck has `base_filters·2^depth`. Each decoder level upsamples ×2,
/// applies a 1×1 conv, concatenates the skip connection and runs a conv block. Blocks are
/// 3×3 conv (zero "same" padding) → leaky ReLU(0.01): one layer at level 0, two elsewhere, as
/// AtomAI's `[1, 2, 2, 3]` minus BatchNorm (no batch statistics, so inference on tiles equals
/// inference on the whole image). The head is a 1×1 conv giving logits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UNetConfig {
    /// Input channels. Default 1.
    pub in_channels: usize,
    /// Output channels (classes; 1 = binary segmentation with BCE). Default 1.
    pub out_channels: usize,
    /// Channels of the first level. Default 8.
    pub base_filters: usize,
    /// Number of 2×2 poolings (input sizes must be multiples of `2^depth`). Default 3.
    pub depth: usize,
    /// Decoder upsampling. Default bilinear.
    pub upsample: Upsample,
    /// Slope of the leaky ReLU for negative inputs. Default 0.01.
    pub leaky_slope: f64,
}

impl Default for UNetConfig {
    fn default() -> Self {
        UNetConfig {
            in_channels: 1,
            out_channels: 1,
            base_filters: 8,
            depth: 3,
            upsample: Upsample::Bilinear,
            leaky_slope: 0.01,
        }
    }
}

impl UNetConfig {
    /// Checks the fields.
    pub fn validate(&self) -> Result<()> {
        for (name, v, max) in [
            ("in_channels", self.in_channels, 64),
            ("out_channels", self.out_channels, 64),
            ("base_filters", self.base_filters, 256),
            ("depth", self.depth, 6),
        ] {
            if v == 0 || v > max {
                return Err(Error::param(
                    name,
                    format!("must lie in 1..={max}, got {v}"),
                ));
            }
        }
        if !(self.leaky_slope.is_finite() && (0.0..1.0).contains(&self.leaky_slope)) {
            return Err(Error::param(
                "leaky_slope",
                format!("must lie in [0, 1), got {}", self.leaky_slope),
            ));
        }
        Ok(())
    }

    /// Input sizes must be multiples of this (`2^depth`).
    pub fn size_multiple(&self) -> usize {
        1 << self.depth
    }
}

#[derive(Clone, Debug)]
struct Conv {
    w: Tensor,
    b: Tensor,
    p: Conv2dParams,
}

impl Conv {
    /// He-uniform weights (`bound = √(6/fan_in)`, for ReLU-like activations without
    /// normalisation) and zero bias.
    fn new(
        ps: &mut ParamStore,
        name: &str,
        cin: usize,
        cout: usize,
        k: usize,
        rng: &mut ChaCha8Rng,
    ) -> Result<Self> {
        let fan_in = (cin * k * k) as f64;
        let w = ps.uniform(
            &format!("{name}.weight"),
            &[cout, cin, k, k],
            (6.0 / fan_in).sqrt(),
            rng,
        )?;
        let b = ps.uniform(&format!("{name}.bias"), &[cout], 0.0, rng)?;
        Ok(Conv {
            w,
            b,
            p: Conv2dParams::same(k, 1),
        })
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        conv2d(x, &self.w, Some(&self.b), self.p)
    }
}

/// A U-Net whose parameters live in a [`ParamStore`].
#[derive(Clone, Debug)]
pub struct UNet {
    config: UNetConfig,
    params: ParamStore,
    enc: Vec<Vec<Conv>>,
    bottleneck: Vec<Conv>,
    up: Vec<Conv>,
    dec: Vec<Vec<Conv>>,
    head: Conv,
}

impl UNet {
    /// Builds the network with weights drawn from `ChaCha8Rng::seed_from_u64(seed)` in a fixed
    /// order (equal seeds give bit-identical weights).
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use stem_learn::unet::{UNet, UNetConfig};
    /// let net = UNet::new(UNetConfig::default(), 1).unwrap();
    /// let x = Tensor::zeros((2, 1, 32, 40), DType::F32, &Device::Cpu).unwrap();
    /// assert_eq!(net.forward(&x).unwrap().dims(), &[2, 1, 32, 40]);
    /// ```
    pub fn new(config: UNetConfig, seed: u64) -> Result<Self> {
        config.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut ps = ParamStore::new();
        let f = |i: usize| config.base_filters << i;
        let mut enc = Vec::new();
        let mut cin = config.in_channels;
        for i in 0..config.depth {
            let n = if i == 0 { 1 } else { 2 };
            let mut block = Vec::new();
            for j in 0..n {
                block.push(Conv::new(
                    &mut ps,
                    &format!("enc{i}.conv{j}"),
                    cin,
                    f(i),
                    3,
                    &mut rng,
                )?);
                cin = f(i);
            }
            enc.push(block);
        }
        let mut bottleneck = Vec::new();
        for j in 0..2 {
            bottleneck.push(Conv::new(
                &mut ps,
                &format!("bottleneck.conv{j}"),
                cin,
                f(config.depth),
                3,
                &mut rng,
            )?);
            cin = f(config.depth);
        }
        let mut up = Vec::new();
        let mut dec = Vec::new();
        for i in (0..config.depth).rev() {
            up.push(Conv::new(
                &mut ps,
                &format!("up{i}"),
                f(i + 1),
                f(i),
                1,
                &mut rng,
            )?);
            let n = if i == 0 { 1 } else { 2 };
            let mut block = Vec::new();
            let mut c = 2 * f(i);
            for j in 0..n {
                block.push(Conv::new(
                    &mut ps,
                    &format!("dec{i}.conv{j}"),
                    c,
                    f(i),
                    3,
                    &mut rng,
                )?);
                c = f(i);
            }
            dec.push(block);
        }
        let head = Conv::new(&mut ps, "head", f(0), config.out_channels, 1, &mut rng)?;
        Ok(UNet {
            config,
            params: ps,
            enc,
            bottleneck,
            up,
            dec,
            head,
        })
    }

    /// The architecture.
    pub fn config(&self) -> &UNetConfig {
        &self.config
    }

    /// The parameters (for the optimizer, checkpoints and bundles).
    pub fn params(&self) -> &ParamStore {
        &self.params
    }

    fn block(&self, convs: &[Conv], mut x: Tensor) -> Result<Tensor> {
        for c in convs {
            x = leaky_relu(&c.forward(&x)?, self.config.leaky_slope)?;
        }
        Ok(x)
    }

    /// Logits `[b, out_channels, h, w]` for an input `[b, in_channels, h, w]` (f32) whose `h`
    /// and `w` are multiples of `2^depth`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (_, c, h, w) = x.dims4().map_err(|_| Error::ShapeMismatch {
            what: "U-Net input [b, c, h, w]",
            expected: vec![0, self.config.in_channels, 0, 0],
            found: x.dims().to_vec(),
        })?;
        let m = self.config.size_multiple();
        if c != self.config.in_channels || h % m != 0 || w % m != 0 || h == 0 || w == 0 {
            return Err(Error::ShapeMismatch {
                what: "U-Net input [b, c, h, w] (h, w multiples of 2^depth)",
                expected: vec![
                    0,
                    self.config.in_channels,
                    h.div_ceil(m).max(1) * m,
                    w.div_ceil(m).max(1) * m,
                ],
                found: x.dims().to_vec(),
            });
        }
        let mut skips = Vec::new();
        let mut x = x.clone();
        for block in &self.enc {
            x = self.block(block, x)?;
            skips.push(x.clone());
            x = max_pool2x2(&x)?;
        }
        x = self.block(&self.bottleneck, x)?;
        for ((up, block), skip) in self.up.iter().zip(&self.dec).zip(skips.iter().rev()) {
            x = match self.config.upsample {
                Upsample::Nearest => upsample_nearest2x(&x)?,
                Upsample::Bilinear => upsample_bilinear2x(&x)?,
            };
            x = up.forward(&x)?;
            x = Tensor::cat(&[&x, skip], 1)?;
            x = self.block(block, x)?;
        }
        self.head.forward(&x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn shapes_and_validation() {
        assert!(
            UNet::new(
                UNetConfig {
                    depth: 0,
                    ..Default::default()
                },
                0
            )
            .is_err()
        );
        assert!(
            UNet::new(
                UNetConfig {
                    base_filters: 0,
                    ..Default::default()
                },
                0
            )
            .is_err()
        );
        assert!(
            UNet::new(
                UNetConfig {
                    leaky_slope: 2.0,
                    ..Default::default()
                },
                0
            )
            .is_err()
        );
        let net = UNet::new(
            UNetConfig {
                base_filters: 4,
                depth: 2,
                ..Default::default()
            },
            0,
        )
        .unwrap();
        let x = Tensor::zeros((1, 1, 12, 20), DType::F32, &Device::Cpu).unwrap();
        assert_eq!(net.forward(&x).unwrap().dims(), &[1, 1, 12, 20]);
        let bad = Tensor::zeros((1, 1, 10, 20), DType::F32, &Device::Cpu).unwrap();
        assert!(matches!(
            net.forward(&bad),
            Err(Error::ShapeMismatch { .. })
        ));
        let bad = Tensor::zeros((1, 2, 12, 20), DType::F32, &Device::Cpu).unwrap();
        assert!(matches!(
            net.forward(&bad),
            Err(Error::ShapeMismatch { .. })
        ));
    }

    #[test]
    fn same_seed_same_weights() {
        let a = UNet::new(UNetConfig::default(), 5)
            .unwrap()
            .params()
            .snapshot();
        let b = UNet::new(UNetConfig::default(), 5)
            .unwrap()
            .params()
            .snapshot();
        for (k, t) in &a {
            let d = (t - &b[k])
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert_eq!(d, 0.0, "{k}");
        }
    }
}
