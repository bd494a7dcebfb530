"""abTEM 1.0.11 side of the stem-sim benchmark (bench/sim/run.sh).

    python peer.py gen OUT       build SrTiO3 potentials (written for the Rust side) and time abTEM
    python peer.py compare OUT   compare abtem.json/ours.json and the arrays, print the table

Cases (multislice.md §7): SrTiO3 [001], 4x4 cells laterally, atoms shifted +a/4 in z, dz = a/2,
Lobato, infinite projection, 200 kV, 20 mrad soft probe, float32, one configuration.
  cbed   : one position on a Sr column (2a, 2a), 102 cells (204 slices)
  pacbed : 8x8 scan of one cell, 51 cells (102 slices), PixelatedDetector(max_angle="full"), mean
  haadf  : 25x25 scan over 2x2 cells (Nyquist 0.3134918 A), 26 cells (52 slices), HAADF
           [70, 200) at 384^2 / [70, 130) at 256^2 (137 mrad cutoff), plus BF, ABF, ADF
Times are multislice with the potential pre-built (the Rust side also reads the potential).
"""
import json
import os
import sys
import time

import numpy as np

A = 3.905
GPTS = [256, 384]


def atoms_block(nz):
    from ase import Atoms
    frac = np.array([[0, 0, 0], [.5, .5, .5], [.5, .5, 0], [.5, 0, .5], [0, .5, .5]], dtype=float)
    frac[:, 2] = (frac[:, 2] + 0.25) % 1.0
    cell = Atoms("SrTiO3", scaled_positions=frac, cell=[A, A, A], pbc=True)
    return cell * (4, 4, nz)


def timed(f):
    w0, c0 = time.perf_counter(), time.process_time()
    r = f()
    return r, time.perf_counter() - w0, time.process_time() - c0


def gen(out):
    import abtem
    abtem.config.set({"precision": "float32", "diagnostics.progress_bar": False})
    res = {"abtem": abtem.__version__, "cases": []}
    for g in GPTS:
        pots = {}
        for nz in (1, 26, 51, 102):
            p = abtem.Potential(atoms_block(nz), gpts=g, slice_thickness=A / 2,
                                parametrization="lobato", projection="infinite")
            arr, w, c = timed(lambda: p.build(lazy=False))
            pots[nz] = arr
            if nz == 1:
                np.save(os.path.join(out, f"pot_{g}.npy"), np.asarray(arr.array, dtype=np.float32))
        probe = abtem.Probe(energy=200e3, semiangle_cutoff=20)
        probe.grid.match(pots[1])
        hmax = 200 if g >= 384 else 130
        # warm-up (JIT / FFTW plans) on a thin potential
        probe.multislice(pots[1], scan=[(2 * A, 2 * A)], lazy=False)

        def cbed():
            w = probe.multislice(pots[102], scan=[(2 * A, 2 * A)], lazy=False)
            return w.diffraction_patterns(max_angle="full", fftshift=True).array.reshape(g, g)
        arr, w, c = timed(cbed)
        np.save(os.path.join(out, f"abtem_cbed_{g}.npy"), arr)
        res["cases"].append({"case": "cbed", "gpts": g, "wall_s": w, "cpu_s": c, "work": 1 * 204 * g * g})
        print(f"abTEM cbed {g}: {w:.2f} s wall, {c:.2f} s CPU", flush=True)

        def pacbed():
            scan = abtem.GridScan(start=(0, 0), end=(A, A), gpts=8, endpoint=False)
            m = probe.scan(pots[51], scan=scan, detectors=abtem.PixelatedDetector(max_angle="full"),
                           lazy=False)
            return np.asarray(m.array).reshape(64, g, g).mean(0)
        arr, w, c = timed(pacbed)
        np.save(os.path.join(out, f"abtem_pacbed_{g}.npy"), arr)
        res["cases"].append({"case": "pacbed", "gpts": g, "wall_s": w, "cpu_s": c, "work": 64 * 102 * g * g})
        print(f"abTEM pacbed {g}: {w:.2f} s wall, {c:.2f} s CPU", flush=True)

        def haadf():
            scan = abtem.GridScan(start=(0, 0), end=(2 * A, 2 * A), sampling=0.3134918, endpoint=False)
            dets = [abtem.AnnularDetector(70, hmax), abtem.AnnularDetector(0, 20),
                    abtem.AnnularDetector(10, 20), abtem.AnnularDetector(30, 70)]
            ms = probe.scan(pots[26], scan=scan, detectors=dets, lazy=False)
            return np.stack([np.asarray(m.array) for m in ms])
        arr, w, c = timed(haadf)
        np.save(os.path.join(out, f"abtem_haadf_{g}.npy"), arr)
        res["cases"].append({"case": "haadf", "gpts": g, "wall_s": w, "cpu_s": c, "work": 625 * 52 * g * g})
        print(f"abTEM haadf {g}: {w:.2f} s wall, {c:.2f} s CPU", flush=True)
    with open(os.path.join(out, "abtem.json"), "w") as f:
        json.dump(res, f, indent=1)


def rel_l2(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def load_cases(out, prefix):
    """Cases from <prefix>.json, <prefix>_<gpts>.json or (abTEM, interrupted run) the gen log."""
    cases = []
    for name in [f"{prefix}.json"] + [f"{prefix}_{g}.json" for g in GPTS]:
        p = os.path.join(out, name)
        if os.path.exists(p):
            cases += json.load(open(p))["cases"]
    log = os.path.join(out, "abtem_gen.log")
    if prefix == "abtem" and not cases and os.path.exists(log):
        work = {"cbed": 204, "pacbed": 64 * 102, "haadf": 625 * 52}
        for line in open(log):
            p = line.replace(":", "").split()
            if len(p) >= 7 and p[0] == "abTEM":
                g = int(p[2])
                cases.append({"case": p[1], "gpts": g, "wall_s": float(p[3]), "cpu_s": float(p[6]),
                              "work": work[p[1]] * g * g})
    return cases


def compare(out):
    ab = {"abtem": "1.0.11", "cases": load_cases(out, "abtem")}
    ours = {"cases": load_cases(out, "ours")}
    key = lambda c: (c["case"], c["gpts"])
    o = {key(c): c for c in ours["cases"]}
    print(f"abTEM {ab['abtem']} (float32, FFTW 1 thread, dask 2 workers) vs stem-sim (f32, rayon)")
    print("| case | gpts | abTEM wall s | abTEM CPU s | ours wall s | ours CPU s | wall ratio | CPU ratio | rel L2 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for c in ab["cases"]:
        k = key(c)
        if k not in o:
            continue
        r = o[k]
        a = np.load(os.path.join(out, f"abtem_{c['case']}_{c['gpts']}.npy"))
        b = np.load(os.path.join(out, f"ours_{c['case']}_{c['gpts']}.npy"))
        a = np.swapaxes(a, -1, -2)  # abTEM (x, y) -> (y, x)
        err = rel_l2(b, a)
        print(f"| {c['case']} | {c['gpts']} | {c['wall_s']:.2f} | {c['cpu_s']:.2f} | {r['wall_s']:.2f} | "
              f"{r['cpu_s']:.2f} | {c['wall_s'] / r['wall_s']:.2f}x | {c['cpu_s'] / max(r['cpu_s'], 1e-9):.2f}x | {err:.1e} |")


if __name__ == "__main__":
    {"gen": gen, "compare": compare}[sys.argv[1]](sys.argv[2])
