//! The MLP VAE: encoder `w² → h → h → (μ, log σ²)` and decoder `d → h → h → w²`, tanh.

use crate::error::Result;
use crate::params::ParamStore;
use candle_core::Tensor;
use rand_chacha::ChaCha8Rng;

/// The network weights (a pyroVED / AtomAI `fcEncoderNet`/`fcDecoderNet`-shaped MLP).
#[derive(Debug)]
pub(crate) struct Mlp {
    pub params: ParamStore,
    enc: [(Tensor, Tensor); 3],
    dec: [(Tensor, Tensor); 3],
    pub latent_dim: usize,
}

fn layer(
    ps: &mut ParamStore,
    name: &str,
    fan_in: usize,
    fan_out: usize,
    rng: &mut ChaCha8Rng,
) -> Result<(Tensor, Tensor)> {
    // PyTorch's nn.Linear default: U(−1/√fan_in, 1/√fan_in) for weights and biases.
    let b = 1.0 / (fan_in as f64).sqrt();
    let w = ps.uniform(&format!("{name}.w"), &[fan_in, fan_out], b, rng)?;
    let bias = ps.uniform(&format!("{name}.b"), &[1, fan_out], b, rng)?;
    Ok((w, bias))
}

fn apply(x: &Tensor, l: &(Tensor, Tensor)) -> Result<Tensor> {
    Ok(x.matmul(&l.0)?.broadcast_add(&l.1)?)
}

impl Mlp {
    pub fn new(
        pixels: usize,
        hidden: usize,
        latent_dim: usize,
        rng: &mut ChaCha8Rng,
    ) -> Result<Self> {
        let mut ps = ParamStore::new();
        let enc = [
            layer(&mut ps, "enc0", pixels, hidden, rng)?,
            layer(&mut ps, "enc1", hidden, hidden, rng)?,
            layer(&mut ps, "enc2", hidden, 2 * latent_dim, rng)?,
        ];
        let dec = [
            layer(&mut ps, "dec0", latent_dim, hidden, rng)?,
            layer(&mut ps, "dec1", hidden, hidden, rng)?,
            layer(&mut ps, "dec2", hidden, pixels, rng)?,
        ];
        Ok(Mlp {
            params: ps,
            enc,
            dec,
            latent_dim,
        })
    }

    /// `x` `[b, w²]` → (μ `[b, d]`, log σ² `[b, d]`).
    pub fn encode(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let h = apply(x, &self.enc[0])?.tanh()?;
        let h = apply(&h, &self.enc[1])?.tanh()?;
        let o = apply(&h, &self.enc[2])?;
        let d = self.latent_dim;
        Ok((o.narrow(1, 0, d)?, o.narrow(1, d, d)?))
    }

    /// `z` `[b, d]` → mean reconstruction `[b, w²]`.
    pub fn decode(&self, z: &Tensor) -> Result<Tensor> {
        let h = apply(z, &self.dec[0])?.tanh()?;
        let h = apply(&h, &self.dec[1])?.tanh()?;
        apply(&h, &self.dec[2])
    }
}
