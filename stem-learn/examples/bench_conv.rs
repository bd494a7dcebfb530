//! Convolution forward + backward: stem-learn's im2col + GEMM op vs candle 0.11's stock CPU
//! `conv2d`, on the layer shapes of the U-Net (batch 8), and one U-Net training step.
//!
//! `cargo run --release -p stem-learn --example bench_conv -- [repeats]`
//!
//! The upstream gradient is a fixed random tensor `r` injected by a tiny custom op
//! ([`InjectGrad`]: forward returns a dummy scalar, backward returns `r` as `∂L/∂y`), so both
//! paths see the same dense `∂L/∂y` and the time measured is the convolution's forward and
//! backward inside candle's autograd (including candle's own gradient bookkeeping), not the
//! cost of a loss. (Until 2026-11-22 the loss was `Σ y·r`, whose backward runs candle's
//! strided broadcast multiply over the whole output: 20–40 CPU-ms per layer on both sides.)
//!
//! Prints wall and CPU time (summed over the process's threads, from
//! `/proc/self/task/*/schedstat`) per forward+backward, the speed-up and the max abs difference
//! of outputs and gradients between the two paths.

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Shape, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Instant;
use stem_learn::loss::bce_with_logits;
use stem_learn::ops::{Conv2dParams, conv2d};
use stem_learn::unet::{UNet, UNetConfig};

fn cpu_ns() -> u64 {
    let mut t = 0;
    if let Ok(rd) = std::fs::read_dir("/proc/self/task") {
        for e in rd.flatten() {
            if let Ok(s) = std::fs::read_to_string(e.path().join("schedstat")) {
                t += s
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    t
}

fn rand_t(shape: &[usize], rng: &mut ChaCha8Rng) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn maxdiff(a: &Tensor, b: &Tensor) -> f32 {
    if a.dims() != b.dims() {
        return f32::NAN; // the input layer: candle computes an input gradient, we skip it
    }
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

type Out = (Tensor, Tensor, Tensor);

/// Gradient injection: `L = 0` in the forward pass, `∂L/∂y = r` in the backward pass (valid as
/// the root of `backward`, where candle seeds `∂L/∂L = 1`).
#[derive(Clone)]
struct InjectGrad(Tensor);

impl CustomOp1 for InjectGrad {
    fn name(&self) -> &'static str {
        "inject-grad"
    }
    fn cpu_fwd(&self, _s: &CpuStorage, _l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        Ok((CpuStorage::F32(vec![0.0]), Shape::from(())))
    }
    fn bwd(&self, _y: &Tensor, _l: &Tensor, _g: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(self.0.clone()))
    }
}

fn time(repeats: usize, f: &dyn Fn() -> Out) -> (f64, f64, Out) {
    let mut out = f(); // warm-up
    let (w0, c0) = (Instant::now(), cpu_ns());
    for _ in 0..repeats {
        out = f();
    }
    let wall = w0.elapsed().as_secs_f64() / repeats as f64;
    let cpu = (cpu_ns() - c0) as f64 * 1e-9 / repeats as f64;
    (wall, cpu, out)
}

fn main() {
    let repeats: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    println!(
        "threads: RAYON_NUM_THREADS={:?}",
        std::env::var("RAYON_NUM_THREADS").ok()
    );
    println!(
        "| layer (fwd+bwd, batch 8) | candle wall ms | candle CPU ms | ours wall ms | ours CPU ms | speed-up wall | speed-up CPU | max |Δ| y / dx / dw |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let layers = [
        (
            "3x3 1->16 @128^2 (input layer)",
            [8, 1, 128, 128],
            16,
            3,
            false,
        ),
        ("3x3 16->16 @128^2", [8, 16, 128, 128], 16, 3, true),
        ("3x3 32->32 @64^2", [8, 32, 64, 64], 32, 3, true),
        ("3x3 64->64 @32^2", [8, 64, 32, 32], 64, 3, true),
        ("1x1 32->16 @128^2", [8, 32, 128, 128], 16, 1, true),
    ];
    let (mut tc, mut to, mut twc, mut two) = (0.0, 0.0, 0.0, 0.0);
    for (name, xs, cout, k, input_grad) in layers {
        let x = Var::from_tensor(&rand_t(&xs, &mut rng)).unwrap();
        let w = Var::from_tensor(&rand_t(&[cout, xs[1], k, k], &mut rng)).unwrap();
        let r = rand_t(&[xs[0], cout, xs[2], xs[3]], &mut rng);
        let pad = k / 2;
        // The input layer's input needs no gradient: use a plain tensor there (both paths).
        let xin = if input_grad {
            x.as_tensor().clone()
        } else {
            x.as_tensor().detach()
        };
        let run = |ours: bool| -> Out {
            let y = if ours {
                conv2d(&xin, w.as_tensor(), None, Conv2dParams::same(k, 1)).unwrap()
            } else {
                xin.conv2d(w.as_tensor(), pad, 1, 1, 1).unwrap()
            };
            let g = y
                .apply_op1(InjectGrad(r.clone()))
                .unwrap()
                .backward()
                .unwrap();
            let gx = g
                .get(&xin)
                .cloned()
                .unwrap_or_else(|| Tensor::zeros(1, DType::F32, &Device::Cpu).unwrap());
            (y, gx, g.get(w.as_tensor()).unwrap().clone())
        };
        let (cw, cc, co) = time(repeats, &|| run(false));
        let (ow, oc, oo) = time(repeats, &|| run(true));
        tc += cc;
        to += oc;
        twc += cw;
        two += ow;
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1}x | {:.1}x | {:.1e} / {:.1e} / {:.1e} |",
            cw * 1e3,
            cc * 1e3,
            ow * 1e3,
            oc * 1e3,
            cw / ow,
            cc / oc,
            maxdiff(&co.0, &oo.0),
            maxdiff(&co.1, &oo.1),
            maxdiff(&co.2, &oo.2)
                / co.2
                    .abs()
                    .unwrap()
                    .max_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap(),
        );
    }
    println!(
        "| total of the layers | {:.1} | {:.1} | {:.1} | {:.1} | {:.1}x | {:.1}x | |",
        twc * 1e3,
        tc * 1e3,
        two * 1e3,
        to * 1e3,
        twc / two,
        tc / to
    );
    // One U-Net training step (forward + backward of BCE) with our ops.
    for (nf, size) in [(8usize, 64usize), (16, 64), (16, 128)] {
        let net = UNet::new(
            UNetConfig {
                base_filters: nf,
                depth: 3,
                ..Default::default()
            },
            1,
        )
        .unwrap();
        let x = rand_t(&[8, 1, size, size], &mut rng);
        let t = rand_t(&[8, 1, size, size], &mut rng)
            .affine(0.5, 0.5)
            .unwrap();
        let step = || -> Out {
            let l = bce_with_logits(&net.forward(&x).unwrap(), &t).unwrap();
            let _g = l.backward().unwrap();
            (l.clone(), l.clone(), l)
        };
        let (w, c, _) = time(repeats, &step);
        println!(
            "U-Net nf={nf} depth 3, batch 8x1x{size}x{size}: {:.3} s wall, {:.3} CPU-s per training step",
            w, c
        );
    }
}
