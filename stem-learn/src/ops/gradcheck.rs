//! Finite-difference gradient checks in f64 (test helper).

use candle_core::{Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A seeded random f64 tensor with entries in [-1, 1).
pub fn rand_t(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// Max relative error between the analytic gradients of `loss = Σ f(inputs)·R` (R a fixed
/// random weight) and central finite differences (step 1e-6), over every input element.
pub fn check(inputs: &[Tensor], f: impl Fn(&[Tensor]) -> Tensor) -> f64 {
    let vars: Vec<Var> = inputs
        .iter()
        .map(|t| Var::from_tensor(t).unwrap())
        .collect();
    let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let out = f(&ts);
    let r = rand_t(out.dims(), 999);
    let loss = (&out * &r).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    let eval = |xs: &[Tensor]| -> f64 {
        let o = f(xs);
        (&o * &r)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    };
    let eps = 1e-6;
    let mut worst: f64 = 0.0;
    for (i, v) in vars.iter().enumerate() {
        let g = grads
            .get(v.as_tensor())
            .map(|g| g.flatten_all().unwrap().to_vec1::<f64>().unwrap())
            .unwrap_or_else(|| vec![0.0; v.elem_count()]);
        let base = inputs[i].flatten_all().unwrap().to_vec1::<f64>().unwrap();
        for (j, gj) in g.iter().enumerate() {
            let mut plus = base.clone();
            plus[j] += eps;
            let mut minus = base.clone();
            minus[j] -= eps;
            let mut xs: Vec<Tensor> = inputs.to_vec();
            xs[i] = Tensor::from_vec(plus, inputs[i].dims(), &Device::Cpu).unwrap();
            let fp = eval(&xs);
            xs[i] = Tensor::from_vec(minus, inputs[i].dims(), &Device::Cpu).unwrap();
            let fm = eval(&xs);
            let fd = (fp - fm) / (2.0 * eps);
            let err = (fd - gj).abs() / (1.0 + fd.abs().max(gj.abs()));
            worst = worst.max(err);
        }
    }
    worst
}
