//! Element-wise activations with analytic, numerically stable backward passes.

use super::{Data, Elem, data};
use crate::error::{Error, Result};
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

#[derive(Clone, Copy, Debug)]
enum Act {
    Sigmoid,
    Softplus,
    LeakyRelu(f64),
}

fn sigmoid_f(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

impl Act {
    fn f(self, x: f64) -> f64 {
        match self {
            Act::Sigmoid => sigmoid_f(x),
            Act::Softplus => x.max(0.0) + (-x.abs()).exp().ln_1p(),
            Act::LeakyRelu(a) => {
                if x > 0.0 {
                    x
                } else {
                    a * x
                }
            }
        }
    }
    fn df(self, x: f64) -> f64 {
        match self {
            Act::Sigmoid => {
                let s = sigmoid_f(x);
                s * (1.0 - s)
            }
            Act::Softplus => sigmoid_f(x),
            Act::LeakyRelu(a) => {
                if x > 0.0 {
                    1.0
                } else {
                    a
                }
            }
        }
    }
}

const CHUNK: usize = 1 << 14;

fn map<T: Elem>(x: &[T], f: impl Fn(f64) -> f64 + Sync) -> Vec<T> {
    let mut out = vec![T::default(); x.len()];
    out.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(o, i)| {
            for (o, &i) in o.iter_mut().zip(i) {
                *o = T::from_f64(f(i.to_f64()));
            }
        });
    out
}

fn map2<T: Elem>(x: &[T], g: &[T], f: impl Fn(f64) -> f64 + Sync) -> Vec<T> {
    let mut out = vec![T::default(); x.len()];
    out.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK).zip(g.par_chunks(CHUNK)))
        .for_each(|(o, (i, g))| {
            for ((o, &i), &g) in o.iter_mut().zip(i).zip(g) {
                *o = T::from_f64(f(i.to_f64()) * g.to_f64());
            }
        });
    out
}

impl CustomOp1 for Act {
    fn name(&self) -> &'static str {
        "stem-activation"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let a = *self;
        let st = match data(s, l, "activation")? {
            Data::F32(x) => f32::wrap(map(x, |v| a.f(v))),
            Data::F64(x) => f64::wrap(map(x, |v| a.f(v))),
        };
        Ok((st, l.shape().clone()))
    }
    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(
            arg.contiguous()?
                .apply_op2_no_bwd(&grad.contiguous()?, &ActGrad(*self))?,
        ))
    }
}

struct ActGrad(Act);

impl CustomOp2 for ActGrad {
    fn name(&self) -> &'static str {
        "stem-activation-bwd"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let a = self.0;
        if l1.shape() != l2.shape() {
            candle_core::bail!("activation-bwd: shapes {:?} vs {:?}", l1.dims(), l2.dims());
        }
        let st = match (
            data(s1, l1, "activation-bwd")?,
            data(s2, l2, "activation-bwd")?,
        ) {
            (Data::F32(x), Data::F32(g)) => f32::wrap(map2(x, g, |v| a.df(v))),
            (Data::F64(x), Data::F64(g)) => f64::wrap(map2(x, g, |v| a.df(v))),
            _ => candle_core::bail!("activation-bwd: dtype mismatch"),
        };
        Ok((st, l1.shape().clone()))
    }
}

fn apply(x: &Tensor, a: Act) -> Result<Tensor> {
    Ok(x.contiguous()?.apply_op1(a)?)
}

/// Logistic sigmoid `1 / (1 + e^(−x))`, evaluated without overflow for any `x`; backward
/// `σ(x)(1 − σ(x))`.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let x = Tensor::new(&[-1000f32, 0., 1000.], &Device::Cpu).unwrap();
/// let y: Vec<f32> = stem_learn::ops::sigmoid(&x).unwrap().to_vec1().unwrap();
/// assert_eq!(y, vec![0., 0.5, 1.]);
/// ```
pub fn sigmoid(x: &Tensor) -> Result<Tensor> {
    apply(x, Act::Sigmoid)
}

/// Softplus `ln(1 + e^x) = max(x, 0) + ln(1 + e^(−|x|))` (stable for any `x`; candle has none);
/// backward `σ(x)`.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let x = Tensor::new(&[-1000f64, 0., 1000.], &Device::Cpu).unwrap();
/// let y: Vec<f64> = stem_learn::ops::softplus(&x).unwrap().to_vec1().unwrap();
/// assert_eq!(y[0], 0.0);
/// assert!((y[1] - 2f64.ln()).abs() < 1e-15);
/// assert_eq!(y[2], 1000.0);
/// ```
pub fn softplus(x: &Tensor) -> Result<Tensor> {
    apply(x, Act::Softplus)
}

/// Leaky ReLU `x` for `x > 0`, `slope·x` otherwise (AtomAI uses slope 0.01); backward 1 or
/// `slope` (`slope` at exactly 0, as PyTorch).
///
/// ```
/// use candle_core::{Device, Tensor};
/// let x = Tensor::new(&[-2f32, 3.], &Device::Cpu).unwrap();
/// let y: Vec<f32> = stem_learn::ops::leaky_relu(&x, 0.5).unwrap().to_vec1().unwrap();
/// assert_eq!(y, vec![-1., 3.]);
/// ```
pub fn leaky_relu(x: &Tensor, slope: f64) -> Result<Tensor> {
    if !slope.is_finite() {
        return Err(Error::param(
            "slope",
            format!("must be finite, got {slope}"),
        ));
    }
    apply(x, Act::LeakyRelu(slope))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::gradcheck::{check, rand_t};

    #[test]
    fn gradients_match_finite_differences() {
        // Scale so that inputs span the saturated ranges too (|x| up to 8).
        let x = (rand_t(&[3, 50], 21) * 8.0).unwrap();
        for (name, f) in [
            ("sigmoid", sigmoid as fn(&Tensor) -> Result<Tensor>),
            ("softplus", softplus),
            ("leaky", |t: &Tensor| leaky_relu(t, 0.01)),
        ] {
            let err = check(std::slice::from_ref(&x), |t| f(&t[0]).unwrap());
            // Smooth functions: central-difference truncation error ~h² ≈ 1e-12, rounding ~1e-10.
            assert!(err < 1e-7, "{name}: {err}");
        }
    }

    #[test]
    fn saturated_values_are_finite_and_exact() {
        let x = Tensor::new(&[-800f64, -40., 40., 800.], &candle_core::Device::Cpu).unwrap();
        let s = sigmoid(&x).unwrap().to_vec1::<f64>().unwrap();
        assert!(s.iter().all(|v| v.is_finite()));
        assert!((s[1] - (-40f64).exp()).abs() < 1e-30);
        let sp = softplus(&x).unwrap().to_vec1::<f64>().unwrap();
        assert_eq!(sp[3], 800.0);
        assert!((sp[1] - (-40f64).exp()).abs() < 1e-30);
        assert!(matches!(
            leaky_relu(&x, f64::NAN),
            Err(Error::InvalidParameter { .. })
        ));
    }
}
