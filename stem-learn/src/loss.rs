//! Numerically stable segmentation losses on logits.

use crate::error::{Error, Result};
use crate::ops::{sigmoid, softplus};
use candle_core::Tensor;

fn same_shape(logits: &Tensor, targets: &Tensor, what: &'static str) -> Result<()> {
    if logits.dims() != targets.dims() {
        return Err(Error::ShapeMismatch {
            what,
            expected: logits.dims().to_vec(),
            found: targets.dims().to_vec(),
        });
    }
    if logits.elem_count() == 0 {
        return Err(Error::param("logits", "empty tensor"));
    }
    Ok(())
}

/// Mean binary cross-entropy of `logits` against `targets` in [0, 1] (same shape):
/// `mean(softplus(x) − x·t)`, equal to `−t·ln σ(x) − (1−t)·ln(1−σ(x))` but finite for any
/// logit (candle's `binary_cross_entropy_with_logit` goes through `ln σ(x)` and gives
/// NaN/inf once σ saturates). Gradient `(σ(x) − t)/N`.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let x = Tensor::new(&[200f32, -200.], &Device::Cpu).unwrap();
/// let t = Tensor::new(&[0f32, 0.], &Device::Cpu).unwrap();
/// let l = stem_learn::loss::bce_with_logits(&x, &t).unwrap().to_scalar::<f32>().unwrap();
/// assert_eq!(l, 100.0); // (200 + 0) / 2
/// ```
pub fn bce_with_logits(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    same_shape(logits, targets, "bce_with_logits targets")?;
    let l = (softplus(logits)? - (logits * targets)?)?;
    Ok(l.mean_all()?)
}

/// Soft Dice loss `1 − (2·Σ σ(x)·t + ε) / (Σ σ(x) + Σ t + ε)` over all elements, with
/// smoothing `eps` (> 0, e.g. 1). 0 for a perfect prediction, near 1 for disjoint masks.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let t = Tensor::new(&[1f32, 0., 1., 0.], &Device::Cpu).unwrap();
/// let x = ((&t * 60.0).unwrap() - 30.0).unwrap(); // confident and right
/// let d = stem_learn::loss::dice_loss(&x, &t, 1.0).unwrap().to_scalar::<f32>().unwrap();
/// assert!(d < 1e-6);
/// ```
pub fn dice_loss(logits: &Tensor, targets: &Tensor, eps: f64) -> Result<Tensor> {
    same_shape(logits, targets, "dice_loss targets")?;
    if !(eps > 0.0 && eps.is_finite()) {
        return Err(Error::param(
            "eps",
            format!("must be finite and > 0, got {eps}"),
        ));
    }
    let p = sigmoid(logits)?;
    let inter = (&p * targets)?.sum_all()?;
    let denom = ((p.sum_all()? + targets.sum_all()?)? + eps)?;
    let ratio = ((inter * 2.0)? + eps)?.div(&denom)?;
    Ok(ratio.affine(-1.0, 1.0)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::gradcheck::{check, rand_t};

    #[test]
    fn bce_matches_naive_formula_where_naive_is_finite() {
        let x = (rand_t(&[40], 1) * 5.0).unwrap();
        let t = rand_t(&[40], 2).affine(0.5, 0.5).unwrap();
        let ours = bce_with_logits(&x, &t).unwrap().to_scalar::<f64>().unwrap();
        let xv = x.to_vec1::<f64>().unwrap();
        let tv = t.to_vec1::<f64>().unwrap();
        let naive: f64 = xv
            .iter()
            .zip(&tv)
            .map(|(&x, &t)| {
                let s = 1.0 / (1.0 + (-x).exp());
                -(t * s.ln() + (1.0 - t) * (1.0 - s).ln())
            })
            .sum::<f64>()
            / 40.0;
        // The two forms differ only by rounding for |x| <= 5.
        assert!((ours - naive).abs() < 1e-12, "{ours} vs {naive}");
    }

    #[test]
    fn losses_have_correct_finite_gradients() {
        let x = (rand_t(&[2, 1, 4, 4], 3) * 6.0).unwrap();
        let t = rand_t(&[2, 1, 4, 4], 4).affine(0.5, 0.5).unwrap();
        let tt = t.clone();
        let err = check(std::slice::from_ref(&x), move |v| {
            bce_with_logits(&v[0], &tt).unwrap().reshape(1).unwrap()
        });
        assert!(err < 1e-7, "bce {err}");
        let err = check(std::slice::from_ref(&x), move |v| {
            dice_loss(&v[0], &t, 1.0).unwrap().reshape(1).unwrap()
        });
        assert!(err < 1e-7, "dice {err}");
    }

    #[test]
    fn saturated_logits_give_finite_loss_and_gradient() {
        let x =
            candle_core::Var::new(&[1000f32, -1000., 1000.], &candle_core::Device::Cpu).unwrap();
        let t = Tensor::new(&[1f32, 0., 0.], &candle_core::Device::Cpu).unwrap();
        let l = bce_with_logits(x.as_tensor(), &t).unwrap();
        assert!((l.to_scalar::<f32>().unwrap() - 1000.0 / 3.0).abs() < 1e-3);
        let g = l
            .backward()
            .unwrap()
            .get(x.as_tensor())
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(g, vec![0.0, 0.0, 1.0 / 3.0]);
    }

    #[test]
    fn invalid_inputs_are_typed_errors() {
        let x = rand_t(&[4], 1);
        let t = rand_t(&[5], 1);
        assert!(matches!(
            bce_with_logits(&x, &t),
            Err(Error::ShapeMismatch { .. })
        ));
        assert!(matches!(
            dice_loss(&x, &t, 1.0),
            Err(Error::ShapeMismatch { .. })
        ));
        assert!(matches!(
            dice_loss(&x, &x, 0.0),
            Err(Error::InvalidParameter { .. })
        ));
    }
}
