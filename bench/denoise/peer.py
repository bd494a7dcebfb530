"""Peers for bench/denoise (issue #5): skimage NLM and bm3d 4.0.3 on the inputs written by
`stem-denoise/examples/bench_denoise.rs`, scored together with our outputs.

Settings as in peer-benchmarks.md §2: Anscombe A(y) = 2 sqrt(y + 3/8), sigma = 1, closed-form
exact unbiased inverse (Makitalo & Foi 2011); bm3d profile 'np'; skimage
denoise_nl_means(fast_mode=True, patch_size=7, patch_distance=22, h=0.8) (lattice-spanning window,
h = 0.8 sigma as its docs recommend; no per-image tuning).
Metrics (§1.3): PSNR with peak = max(clean); SSIM skimage defaults with data_range = max - min;
heavy-column RMS error (arg-max in 7x7 window + log-parabola), columns > 12 px from the border.
"""
import csv
import os
import sys
import time

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from skimage.restoration import denoise_nl_means
import bm3d


def anscombe(y):
    return 2.0 * np.sqrt(y + 3.0 / 8.0)


def inverse(d):
    d = np.maximum(d, 1e-6)
    s = np.sqrt(1.5)
    y = d**2 / 4 + 0.25 * s / d - 11.0 / 8.0 / d**2 + 5.0 / 8.0 * s / d**3 - 1.0 / 8.0
    return np.maximum(y, 0.0)


def column_rms(img, heavy):
    ny, nx = img.shape
    errs = []
    for y, x in heavy:
        if y <= 12 or x <= 12 or y >= ny - 1 - 12 or x >= nx - 1 - 12:
            continue
        cy, cx = int(round(y)), int(round(x))
        win = img[cy - 3:cy + 4, cx - 3:cx + 4]
        k = np.argmax(win)
        py, px = cy - 3 + k // 7, cx - 3 + k % 7
        ln = lambda a, b: np.log(max(float(img[a, b]), 1e-3))

        def off(a, b, c):
            den = a - 2 * b + c
            return float(np.clip(0.5 * (a - c) / den, -1, 1)) if den < 0 else 0.0

        ry = py + off(ln(py - 1, px), ln(py, px), ln(py + 1, px))
        rx = px + off(ln(py, px - 1), ln(py, px), ln(py, px + 1))
        errs.append((ry - y) ** 2 + (rx - x) ** 2)
    return float(np.sqrt(np.mean(errs)))


def timed(f):
    t0, c0 = time.perf_counter(), time.process_time()
    r = f()
    return r, time.perf_counter() - t0, time.process_time() - c0


def main(out):
    heavy = np.load(os.path.join(out, "heavy_columns.npy"))
    ours_times = {}
    with open(os.path.join(out, "ours_times.csv")) as fh:
        for row in csv.DictReader(fh):
            ours_times[(row["method"], row["dose"])] = (float(row["wall_s"]), float(row["cpu_s"]), row["h"])
    methods = sorted({m for m, _ in ours_times})
    rows = []
    for dose in ["5", "20", "100"]:
        clean = np.load(os.path.join(out, f"clean_{dose}.npy")).astype(np.float64)
        noisy = np.load(os.path.join(out, f"noisy_{dose}.npy")).astype(np.float64)
        peak, rng = clean.max(), clean.max() - clean.min()

        def score(name, est, wall, cpu, note=""):
            p = peak_signal_noise_ratio(clean, est, data_range=peak)
            s = structural_similarity(clean, est, data_range=rng)
            c = column_rms(est, heavy)
            rows.append((dose, name, p, s, c, wall, cpu, note))

        score("noisy", noisy, 0, 0)
        z = anscombe(noisy)
        est, w, c = timed(lambda: inverse(bm3d.bm3d(z, sigma_psd=1.0, profile="np")))
        score("bm3d 4.0.3 (np, Anscombe)", est, w, c)
        bm3d_wall = w
        est, w, c = timed(lambda: inverse(denoise_nl_means(z, patch_size=7, patch_distance=22, h=0.8,
                                                          sigma=1.0, fast_mode=True, preserve_range=True)))
        score("skimage NLM (p7, d22, h0.8)", est, w, c)
        for m in methods:
            wall, cpu, h = ours_times[(m, dose)]
            est = np.load(os.path.join(out, f"ours_{m}_{dose}.npy")).astype(np.float64)
            score("ours " + m, est, wall, cpu, f"h={h}" if h[:1].isdigit() else h)
        rows.append((dose, "_bm3d_wall", 0, 0, 0, bm3d_wall, 0, ""))
    print("| dose | method | PSNR dB | SSIM | heavy-column RMS px | wall s | CPU s | wall / bm3d | note |")
    print("|---|---|---|---|---|---|---|---|---|")
    bm = {r[0]: r[5] for r in rows if r[1] == "_bm3d_wall"}
    for dose, name, p, s, c, w, cpu, note in rows:
        if name.startswith("_"):
            continue
        ratio = f"{w / bm[dose]:.3f}" if w > 0 else "–"
        print(f"| {dose} | {name} | {p:.2f} | {s:.4f} | {c:.3f} | {w:.3f} | {cpu:.3f} | {ratio} | {note} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "out"))
