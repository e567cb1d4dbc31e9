"""gvae.linalg against its peers at the sizes of the banded linear algebra's targets, each pair interleaved
(gvae, peer, gvae, peer, ...) so that the machine's drift hits both alike; the minimum and median of each.

    python benchmarks/bench_linalg.py [--repeats 7] [--only single|batch|torch]

- ``single``: one system, n = 100,000, l = u = 2, against ``scipy.linalg.solve_banded`` (LAPACK's gbsv),
  and the symmetric positive definite one of two off-diagonals against ``solveh_banded`` (pbsv): run it
  under ``taskset -c 0`` for the one-thread row (this script holds NumPy's BLAS and gvae to one thread).
- ``batch``: 10,000 systems, n = 256, l = u = 3, against a Python loop of SciPy's solve_banded and against
  ``torch.linalg.solve`` and ``jax.numpy.linalg.solve`` on the dense matrices (float64).
- ``torch``: forward and backward through ``gvae.torch.linalg.solveh_banded`` at n = 4,096 with three
  off-diagonals (four bands), against ``torch.linalg.cholesky`` and ``cholesky_solve`` on the dense matrix;
  the values and gradients compared in float64.
"""
import os
import statistics
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # (before NumPy loads its BLAS)

import numpy as np  # noqa: E402
import scipy.linalg as sl  # noqa: E402

from cpu_model import cpu_model  # noqa: E402  (benchmarks/cpu_model.py, beside this script)
from gvae import kernels, linalg  # noqa: E402
from gvae.io.arguments import ArgumentParser  # noqa: E402


def paired(first, second, repeats):
    """Alternate the two calls ``repeats`` times each (after one untimed call of each); their times (s)."""
    first(), second()
    times = ([], [])
    for _ in range(repeats):
        for fn, out in ((first, times[0]), (second, times[1])):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return times


def row(name, times, reference=None):
    """A table row: the minimum and median of ``times``, and with gvae's ``reference`` times the ratio of
    the medians, gvae's over this row's (below 1: gvae faster)."""
    best, median = min(times), statistics.median(times)
    ratio = "" if reference is None else f"{statistics.median(reference) / median:8.3g}"
    print(f"| {name:<46} | {best * 1e3:10.3f} | {median * 1e3:10.3f} | {ratio:>8} |")


def header(title):
    print(f"\n{title}\n\n| what | min ms | median ms | gvae / this |\n| --- | --- | --- | --- |")


def _general(rng, batch, n, lower, upper):
    ab = rng.standard_normal(batch + (lower + upper + 1, n))
    ab[..., upper, :] += 0.5  # (pivoting still happens: the diagonal does not dominate)
    return ab


def single(repeats):
    rng = np.random.default_rng(0)
    n = 100_000
    ab, b = _general(rng, (), n, 2, 2), rng.standard_normal(n)
    header(f"One system, n = {n:,}, l = u = 2, float64")
    ours, theirs = paired(lambda: linalg.solve_banded((2, 2), ab, b), lambda: sl.solve_banded((2, 2), ab, b), repeats)
    np.testing.assert_allclose(linalg.solve_banded((2, 2), ab, b), sl.solve_banded((2, 2), ab, b), rtol=1e-8,
                               atol=1e-8)
    row("gvae.linalg.solve_banded", ours)
    row("scipy.linalg.solve_banded (LAPACK gbsv)", theirs, ours)
    spd = rng.standard_normal((3, n)) * 0.3
    spd[2] = 2.0 + rng.random(n)
    ours, theirs = paired(lambda: linalg.solveh_banded(spd, b), lambda: sl.solveh_banded(spd, b), repeats)
    row("gvae.linalg.solveh_banded, u = 2", ours)
    row("scipy.linalg.solveh_banded (LAPACK pbsv)", theirs, ours)


def batch(repeats):
    rng = np.random.default_rng(1)
    count, n, lower, upper = 10_000, 256, 3, 3
    ab, b = _general(rng, (count,), n, lower, upper), rng.standard_normal((count, n))
    header(f"{count:,} systems, n = {n}, l = u = {lower}, float64, {kernels.get_threads()} gvae thread(s)")
    ours, loop = paired(lambda: linalg.solve_banded((lower, upper), ab, b),
                        lambda: [sl.solve_banded((lower, upper), ab[i], b[i]) for i in range(count)], repeats)
    row("gvae.linalg.solve_banded, one batched call", ours)
    row("a Python loop of scipy.linalg.solve_banded", loop, ours)
    dense = np.zeros((count, n, n))
    for i in range(n):
        for j in range(max(0, i - lower), min(n, i + upper + 1)):
            dense[:, i, j] = ab[:, upper + i - j, j]
    try:
        import torch
        torch.set_num_threads(kernels.get_threads())
        A, B = torch.from_numpy(dense), torch.from_numpy(b)
        _, peer = paired(lambda: linalg.solve_banded((lower, upper), ab, b), lambda: torch.linalg.solve(A, B),
                         max(1, repeats // 3))
        row("torch.linalg.solve on the dense matrices", peer, ours)
    except ImportError:
        print("| torch.linalg.solve | (PyTorch not installed) | | |")
    try:
        import jax
        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp
        A, B = jnp.asarray(dense), jnp.asarray(b)
        solve = jax.jit(jnp.linalg.solve)
        _, peer = paired(lambda: linalg.solve_banded((lower, upper), ab, b),
                         lambda: solve(A, B[..., None]).block_until_ready(), max(1, repeats // 3))
        row("jax.numpy.linalg.solve (jit) on the dense matrices", peer, ours)
    except ImportError:
        print("| jax.numpy.linalg.solve | (JAX not installed) | | |")


def torch_route(repeats):
    import torch
    import gvae.torch.linalg as tl
    torch.set_num_threads(kernels.get_threads())
    rng = np.random.default_rng(2)
    n, w = 4096, 3
    band = rng.standard_normal((w + 1, n)) * 0.3
    band[w] = 2.0 * w + 1.0 + rng.random(n)
    dense = np.zeros((n, n))
    for i in range(n):
        for j in range(i, min(n, i + w + 1)):
            dense[i, j] = dense[j, i] = band[w + i - j, j]
    b = rng.standard_normal(n)
    header(f"Forward and backward of x = A^-1 b, A symmetric positive definite, n = {n:,}, {w + 1} bands, float64")

    def ours():
        ab, rhs = torch.tensor(band, requires_grad=True), torch.tensor(b, requires_grad=True)
        x = tl.solveh_banded(ab, rhs)
        (x * x).sum().backward()
        return x, ab.grad, rhs.grad

    def theirs():
        A, rhs = torch.tensor(dense, requires_grad=True), torch.tensor(b, requires_grad=True)
        x = torch.cholesky_solve(rhs[:, None], torch.linalg.cholesky(A))[:, 0]
        (x * x).sum().backward()
        return x, A.grad, rhs.grad

    mine, dense_route = ours(), theirs()
    gA = dense_route[1].numpy()
    want_band = np.zeros_like(band)  # the dense gradient summed onto the stored triangle
    for i in range(n):
        for j in range(i, min(n, i + w + 1)):
            want_band[w + i - j, j] = gA[i, j] + (gA[j, i] if i != j else 0.0)
    for got, want in ((mine[0], dense_route[0]), (mine[2], dense_route[2])):
        np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(mine[1].numpy(), want_band, rtol=1e-10, atol=1e-12)
    print("(values, gradient in b and in the band: the dense route's to 1e-10)")
    fast, slow = paired(ours, theirs, max(1, repeats // 3))
    row("gvae.torch.linalg.solveh_banded", fast)
    row("torch.linalg.cholesky + cholesky_solve (dense)", slow, fast)


def main():
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=1, help="gvae's threads (and torch's)")
    p.add_argument("--only", choices=["single", "batch", "torch"], action="append")
    args = p.parse_args()
    kernels.set_threads(args.threads)
    print(f"CPU: {cpu_model()}; gvae threads {args.threads}")
    for name in args.only or ["single", "batch", "torch"]:
        {"single": single, "batch": batch, "torch": torch_route}[name](args.repeats)


if __name__ == "__main__":
    main()
