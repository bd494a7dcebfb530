"""Python peers for bench/tensor (run by run.sh): tensorly tucker (HOOI), a numpy HOOI in the
style of paul-voyles/tensor_svd (ST-HOSVD init + 10 sweeps, Gram-eigen factors), and hyperspy's
Poisson-normalised PCA, on the cubes written by `bench_tensor` (clean_{dose}.npy, noisy_{dose}.npy).
Prints TSV rows: method, dose, psnr_db, wall_s, cpu_s, ranks."""
import sys, time, os
import numpy as np

out = sys.argv[1]
doses = [200, 1000, 10000]


def psnr(clean, est):
    return 10 * np.log10(clean.max() ** 2 / np.mean((clean.astype(np.float64) - est) ** 2))


def timed(f):
    t0, c0 = time.perf_counter(), time.process_time()
    r = f()
    return r, time.perf_counter() - t0, time.process_time() - c0


def top_left(m, r):
    # Gram of the smaller side, symmetric eigensolver (numpy prototype of peer-benchmarks §3).
    if m.shape[0] <= m.shape[1]:
        w, v = np.linalg.eigh(m @ m.T)
        return v[:, ::-1][:, :r]
    w, v = np.linalg.eigh(m.T @ m)
    u = m @ v[:, ::-1][:, :r]
    q, _ = np.linalg.qr(u)
    return q


def unfold(t, k):
    return np.moveaxis(t, k, 0).reshape(t.shape[k], -1)


def mode_dot(t, m, k):
    return np.moveaxis(np.tensordot(m, t, axes=(1, k)), 0, k)


def numpy_hooi(y, ranks, sweeps=10):
    order = sorted(range(y.ndim), key=lambda k: y.shape[k])
    us = [None] * y.ndim
    cur = y
    for k in order:
        us[k] = top_left(unfold(cur, k), ranks[k])
        cur = mode_dot(cur, us[k].T, k)
    for _ in range(sweeps):
        for k in range(y.ndim):
            a = y
            for j in range(y.ndim):
                if j != k:
                    a = mode_dot(a, us[j].T, j)
            us[k] = top_left(unfold(a, k), ranks[k])
    core = y
    for j in range(y.ndim):
        core = mode_dot(core, us[j].T, j)
    x = core
    for j in range(y.ndim):
        x = mode_dot(x, us[j], j)
    return x


import tensorly as tl
from tensorly.decomposition import tucker
import hyperspy.api as hs

print("method\tdose\tpsnr_db\twall_s\tcpu_s\tranks")
for dose in doses:
    clean = np.load(f"{out}/clean_{dose}.npy")
    noisy = np.load(f"{out}/noisy_{dose}.npy").astype(np.float64)
    y3 = noisy.reshape(noisy.shape[0], noisy.shape[1], -1)
    ranks = [32, 22, 4]

    sweeps = []

    def run_tl():
        (core, factors), errors = tucker(y3, rank=ranks, init="svd", n_iter_max=100, tol=1e-4,
                                         svd="randomized_svd", random_state=0,
                                         return_errors=True)
        sweeps.append(len(errors))
        return tl.tucker_to_tensor((core, factors))
    x, w, c = timed(run_tl)
    print(f"tensorly_tucker_32_22_4\t{dose}\t{psnr(clean, x.reshape(clean.shape)):.2f}\t{w:.3f}\t{c:.2f}\t{ranks}\t{sweeps[-1]} sweeps", flush=True)

    x, w, c = timed(lambda: numpy_hooi(y3, ranks))
    print(f"numpy_hooi_32_22_4\t{dose}\t{psnr(clean, x.reshape(clean.shape)):.2f}\t{w:.3f}\t{c:.2f}\t{ranks}", flush=True)

    def run_hs():
        s = hs.signals.Signal2D(noisy.copy())
        s.decomposition(normalize_poissonian_noise=True, algorithm="SVD", output_dimension=16,
                        svd_solver="randomized", print_info=False)
        return s.get_decomposition_model(4).data
    x, w, c = timed(run_hs)
    print(f"hyperspy_kk_pca_4\t{dose}\t{psnr(clean, x):.2f}\t{w:.3f}\t{c:.2f}\t[4]", flush=True)
