"""Exact-ratio ``build_blend_indices`` against megatron-core's ``build_blending_indices``.

Same weights (a seeded Dirichlet(1) draw per K), same N, same run: median time of repeats, the
time ratio (Megatron / ours), peak memory of the output arrays, and the largest prefix deviation
``max_{n,k} |count_k(n) - w_k n|`` of both. Prints a Markdown table and writes JSON to
``benchmarks/out/bench_blend.json``.

    python benchmarks/bench_blend.py --quick      # N in {1e6, 1e7}, one repeat of slow cells
    python benchmarks/bench_blend.py              # K in {2, 17, 100, 1000}, N in {1e6, 1e7, 1e8}
"""

from __future__ import annotations

import argparse
import platform
import resource
import statistics
import time
from pathlib import Path

import numpy as np

from regmix_plugin.blending import build_blend_indices, max_prefix_deviation
from regmix_plugin.io import atomic_write_json

OUT = Path(__file__).resolve().parent / "out"


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _time(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def bench_cell(k: int, n: int, repeats: int, threads: int) -> dict[str, float | int]:
    from megatron.core.datasets.helpers_cpp import build_blending_indices

    w = np.random.default_rng(k).dirichlet(np.ones(k))

    def ours():
        return build_blend_indices(w, n, num_threads=threads)

    def megatron():
        index = np.zeros(n, dtype=np.int16)
        sample = np.zeros(n, dtype=np.int64)
        build_blending_indices(index, sample, w, k, n, False)
        return index, sample

    # Megatron's cost grows with K * N: fewer repeats for the slow cells.
    slow_repeats = 1 if k * n >= 1e10 else repeats
    t_ours, (o_index, _) = _time(ours, repeats)
    t_meg, (m_index, _) = _time(megatron, slow_repeats)
    return {
        "K": k,
        "N": n,
        "ours_s": t_ours,
        "megatron_s": t_meg,
        "speedup": t_meg / t_ours,
        "ours_output_mib": (o_index.nbytes + n * 8) / 2**20,
        "megatron_output_mib": (m_index.nbytes + n * 8) / 2**20,
        "ours_max_dev": max_prefix_deviation(o_index, w),
        "megatron_max_dev": max_prefix_deviation(m_index, w),
        "peak_rss_mib": _peak_rss_mib(),
        "repeats": repeats,
        "megatron_repeats": slow_repeats,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N in {1e6, 1e7} only")
    parser.add_argument("--repeats", type=int, default=3, help="repeats per cell (median)")
    parser.add_argument("--threads", type=int, default=0, help="sampler threads (0: all cores)")
    args = parser.parse_args()
    sizes = [10**6, 10**7] if args.quick else [10**6, 10**7, 10**8]
    rows = []
    print(
        "| K | N | ours (s) | Megatron (s) | speed-up | output MiB ours / Megatron "
        "| max prefix dev. ours | max prefix dev. Megatron |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in sizes:
        for k in (2, 17, 100, 1000):
            r = bench_cell(k, n, args.repeats, args.threads)
            rows.append(r)
            print(
                f"| {k} | {n:.0e} | {r['ours_s']:.3f} | {r['megatron_s']:.3f} | "
                f"{r['speedup']:.1f}x | "
                f"{r['ours_output_mib']:.0f} / {r['megatron_output_mib']:.0f} "
                f"| {r['ours_max_dev']:.6f} | {r['megatron_max_dev']:.6f} |",
                flush=True,
            )
    atomic_write_json(
        OUT / ("bench_blend_quick.json" if args.quick else "bench_blend.json"),
        {
            "machine": platform.processor() or platform.machine(),
            "threads": args.threads,
            "rows": rows,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
