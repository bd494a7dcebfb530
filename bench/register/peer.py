"""Peer side of the stem-register benchmark (bench/register/run.sh).

Reads the series written by `cargo run --release -p stem-register --example bench_register`,
runs the peers on the same frames and scores everything the same way:

* rigid: scikit-image `phase_cross_correlation` (normalization=None, Gaussian sigma 2 px
  pre-smoothing, upsample 100 and 20; and skimage's default phase normalisation, upsample 100)
  and pystackreg TRANSLATION (reference='first'); shift error vs the true relative shifts;
* non-rigid: scikit-image `optical_flow_ilk` after the best rigid alignment (radius 12, sigma 1.5
  pre-smoothing, 2 passes against the evolving mean), as in peer-benchmarks.md section 4;
* averages: PSNR vs the undistorted specimen (40 px border excluded, peak = specimen max), each
  average placed in specimen coordinates by one global phase-correlation shift (the gauge).
"""
import sys
import time
import numpy as np
from scipy import ndimage
from skimage.registration import phase_cross_correlation, optical_flow_ilk
from skimage.transform import warp
from pystackreg import StackReg

out = sys.argv[1] if len(sys.argv) > 1 else "bench/register/out"
frames = np.load(f"{out}/frames.npy").astype(np.float64)
specimen = np.load(f"{out}/specimen.npy").astype(np.float64)
truth = np.load(f"{out}/truth_shifts.npy")
n, ny, nx = frames.shape


def shift_errors(est):
    e = np.hypot(est[1:, 0] - truth[1:, 0], est[1:, 1] - truth[1:, 1])
    return np.sqrt(np.mean(e**2)), e.max(), int((e > 5).sum())


def fourier_shift(img, s):
    return np.real(np.fft.ifftn(ndimage.fourier_shift(np.fft.fftn(img), s)))


def psnr(img):
    b = 40
    r = specimen[b:-b, b:-b]
    t = img[b:-b, b:-b]
    return 10 * np.log10(r.max() ** 2 / np.mean((r - t) ** 2))


def placed_psnr(avg):
    s, _, _ = phase_cross_correlation(
        ndimage.gaussian_filter(specimen, 2), ndimage.gaussian_filter(avg, 2),
        upsample_factor=100, normalization=None)
    return psnr(fourier_shift(avg, s))


def rigid_mean(shifts):
    return np.mean([fourier_shift(frames[k], shifts[k]) for k in range(n)], axis=0)


def timed(f):
    c0, t0 = time.process_time(), time.perf_counter()
    r = f()
    return r, time.perf_counter() - t0, time.process_time() - c0


rows = []


def pcc(sigma, up, norm):
    def run():
        fs = [ndimage.gaussian_filter(f, sigma) for f in frames] if sigma > 0 else frames
        est = np.zeros((n, 2))
        for k in range(1, n):
            est[k], _, _ = phase_cross_correlation(fs[0], fs[k], upsample_factor=up, normalization=norm)
        return est
    return run


results = {}
for name, (sig, up, norm) in {
    "skimage PCC, normalization=None, sigma 2, upsample 100": (2, 100, None),
    "skimage PCC, normalization=None, sigma 2, upsample 20": (2, 20, None),
    "skimage PCC, normalization='phase' (default), upsample 100": (0, 100, "phase"),
}.items():
    best = None
    for _ in range(2):
        est, t, c = timed(pcc(sig, up, norm))
        if best is None or t < best[1]:
            best = (est, t, c)
    results[name] = best


def stackreg():
    sr = StackReg(StackReg.TRANSLATION)
    tm = sr.register_stack(frames, reference="first")
    # pystackreg's translation is the negative of the shift convention used here
    return np.stack([-tm[:, 1, 2], -tm[:, 0, 2]], axis=1)


est, t, c = timed(stackreg)
results["pystackreg TRANSLATION, reference='first'"] = (est, t, c)
ours_shifts = np.load(f"{out}/ours_rigid_shifts.npy")
times = np.load(f"{out}/ours_times.npy")

print()
print("| rigid method | shift error RMS / max (px) | gross (> 5 px) | time wall / CPU (s) | average PSNR (dB) |")
print("|---|---|---|---|---|")
r, m, g = shift_errors(ours_shifts)
ours_rigid_avg = np.load(f"{out}/ours_rigid_mean.npy").astype(np.float64)
print(f"| **stem-register rigid** (defaults) | {r:.4f} / {m:.4f} | {g} | {times[0]:.3f} / {times[1]:.3f} | {placed_psnr(ours_rigid_avg):.2f} |")
for name, (est, t, c) in results.items():
    r, m, g = shift_errors(est)
    print(f"| {name} | {r:.4f} / {m:.4f} | {g} | {t:.3f} / {c:.3f} | {placed_psnr(rigid_mean(est)):.2f} |")
print(f"| oracle rigid (true effective shifts) | 0 | 0 | - | {placed_psnr(rigid_mean(truth)):.2f} |")

# non-rigid peer: optical flow after rigid alignment
best_rigid = results["skimage PCC, normalization=None, sigma 2, upsample 100"][0]


def ilk():
    aligned = np.array([fourier_shift(frames[k], best_rigid[k]) for k in range(n)])
    ref = aligned.mean(axis=0)
    rr, cc = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    warped = aligned
    for _ in range(2):
        ref_s = ndimage.gaussian_filter(ref, 1.5)
        out_frames = []
        for k in range(n):
            v, u = optical_flow_ilk(ref_s, ndimage.gaussian_filter(aligned[k], 1.5), radius=12)
            out_frames.append(warp(aligned[k], np.array([rr + v, cc + u]), mode="edge", order=1))
        warped = np.array(out_frames)
        ref = warped.mean(axis=0)
    return ref


ilk_avg, t_ilk, c_ilk = timed(ilk)
ours_nr = np.load(f"{out}/ours_nonrigid_mean.npy").astype(np.float64)
ours_med = np.load(f"{out}/ours_nonrigid_median.npy").astype(np.float64)
oracle_nr = np.load(f"{out}/oracle_nonrigid_mean.npy").astype(np.float64)
print()
print("| non-rigid method | average PSNR (dB), one global shift gauge | time wall / CPU (s) |")
print("|---|---|---|")
print(f"| **stem-register** rigid + scan-line (defaults), mean | {placed_psnr(ours_nr):.2f} | {times[2]:.2f} / {times[3]:.2f} |")
print(f"| **stem-register** rigid + scan-line (defaults), median | {placed_psnr(ours_med):.2f} | (same run) |")
try:
    lp = np.load(f"{out}/ours_scanline_lattice_mean.npy").astype(np.float64)
    print(f"| **stem-register** rigid + scan-line + lattice prior (opt-in `--lattice-prior`; removes real strain too), mean | {placed_psnr(lp):.2f} | (scan-line run + lattice fit) |")
except FileNotFoundError:
    pass
for name, f in [("rigid + dense (match-series style, defaults)", "ours_dense"), ("rigid + scan-line + dense", "ours_scanline_dense")]:
    try:
        m = np.load(f"{out}/{f}_mean.npy").astype(np.float64)
        md = np.load(f"{out}/{f}_median.npy").astype(np.float64)
        tt = np.load(f"{out}/{f}_times.npy")
    except FileNotFoundError:
        continue
    print(f"| **stem-register** {name}, mean | {placed_psnr(m):.2f} | {tt[0]:.2f} / {tt[1]:.2f} |")
    print(f"| **stem-register** {name}, median | {placed_psnr(md):.2f} | (same run) |")
print(f"| skimage optical_flow_ilk after rigid PCC (radius 12, sigma 1.5, 2 passes) | {placed_psnr(ilk_avg):.2f} | {t_ilk:.2f} / {c_ilk:.2f} |")
print(f"| oracle non-rigid (true row fields, bicubic) | {psnr(oracle_nr):.2f} | - |")
