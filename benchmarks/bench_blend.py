"""Exact-ratio ``build_blend_indices`` against megatron-core's ``build_blending_indices``.

Same weights (a seeded Dirichlet(1) draw per K), same N, same run. Per cell, the variants run
in alternating rounds (the order rotates each round), and each figure is the median over rounds:

- ``megatron``: megatron-core's single-threaded C++ loop (its int16 and int64 outputs allocated
  with ``np.zeros``, as its builder does);
- ``ours 1``: ours on one thread (the fair comparison with megatron-core's loop);
- ``ours all``: ours on every core (``num_threads=0``);
- ``floor``: the physical floor, writing our two output arrays once (``np.empty`` of the same
  dtypes, then ``fill``: the page faults and the memory traffic, no computation).

Wall-clock seconds, and the process CPU seconds beside them (on a shared machine the CPU time is
less disturbed by other jobs; in a VM it still counts time the host took the core away). Also
the output bytes per sample and the largest prefix deviation of both samplers, and the load
average before and after. Prints a Markdown table; writes JSON to ``benchmarks/out/``.

    python benchmarks/bench_blend.py --quick   # N = 1e7
    python benchmarks/bench_blend.py           # K in {2, 17, 100, 1000}, N = 1e8
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from regmix_plugin.blending import build_blend_indices, index_dtype, max_prefix_deviation
from regmix_plugin.io import atomic_write_json

OUT = Path(__file__).resolve().parent / "out"
VARIANTS = ("megatron", "ours_1", "ours_all", "floor")


def _variants(k: int, n: int) -> dict[str, Callable[[], Any]]:
    from megatron.core.datasets.helpers_cpp import build_blending_indices

    w = np.random.default_rng(k).dirichlet(np.ones(k))
    dtype = index_dtype(k)

    def megatron() -> tuple[np.ndarray, np.ndarray]:
        index = np.zeros(n, dtype=np.int16)
        sample = np.zeros(n, dtype=np.int64)
        build_blending_indices(index, sample, w, k, n, False)
        return index, sample

    def floor() -> tuple[np.ndarray, np.ndarray]:
        index = np.empty(n, dtype=dtype)
        sample = np.empty(n, dtype=np.int64)
        index.fill(1)
        sample.fill(1)
        return index, sample

    return {
        "megatron": megatron,
        "ours_1": lambda: build_blend_indices(w, n, num_threads=1),
        "ours_all": lambda: build_blend_indices(w, n, num_threads=0),
        "floor": floor,
    }


def bench_cell(k: int, n: int, rounds: int, megatron_rounds: int) -> dict[str, Any]:
    fns = _variants(k, n)
    wall: dict[str, list[float]] = {v: [] for v in VARIANTS}
    cpu: dict[str, list[float]] = {v: [] for v in VARIANTS}
    outputs: dict[str, np.ndarray] = {}
    for r in range(rounds):
        order = VARIANTS[r % len(VARIANTS) :] + VARIANTS[: r % len(VARIANTS)]
        for name in order:
            if name == "megatron" and r >= megatron_rounds:
                continue
            t0, c0 = time.perf_counter(), time.process_time()
            index, _ = fns[name]()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
            if name in ("megatron", "ours_1"):
                outputs[name] = index
            del index, _
    w = np.random.default_rng(k).dirichlet(np.ones(k))
    row: dict[str, Any] = {"K": k, "N": n, "rounds": rounds, "megatron_rounds": megatron_rounds}
    for name in VARIANTS:
        row[f"{name}_s"] = statistics.median(wall[name])
        row[f"{name}_cpu_s"] = statistics.median(cpu[name])
        row[f"{name}_all_s"] = wall[name]
    row["speedup_1"] = row["megatron_s"] / row["ours_1_s"]
    row["speedup_all"] = row["megatron_s"] / row["ours_all_s"]
    row["speedup_1_cpu"] = row["megatron_cpu_s"] / row["ours_1_cpu_s"]
    row["ours_bytes_per_sample"] = index_dtype(k).itemsize + 8
    row["megatron_bytes_per_sample"] = 2 + 8
    row["ours_max_dev"] = max_prefix_deviation(outputs["ours_1"], w)
    row["megatron_max_dev"] = max_prefix_deviation(outputs["megatron"], w)
    return row


def _print_row(r: dict[str, Any]) -> None:
    print(
        f"| {r['K']} | {r['N']:.0e} | {r['megatron_s']:.3f} ({r['megatron_cpu_s']:.2f}) "
        f"| {r['ours_1_s']:.3f} ({r['ours_1_cpu_s']:.2f}) "
        f"| {r['ours_all_s']:.3f} ({r['ours_all_cpu_s']:.2f}) | {r['floor_s']:.3f} "
        f"| {1e9 * r['ours_1_cpu_s'] / r['N']:.1f} / {1e9 * r['megatron_cpu_s'] / r['N']:.1f} "
        f"| {r['speedup_1']:.1f}x "
        f"({r['speedup_1_cpu']:.1f}x) | {r['speedup_all']:.1f}x "
        f"| {r['ours_bytes_per_sample']} / {r['megatron_bytes_per_sample']} "
        f"| {r['ours_max_dev']:.6f} / {r['megatron_max_dev']:.6f} | {r['load']} |",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 1e7 instead of 1e8")
    parser.add_argument("--sizes", type=float, nargs="*", help="N values (overrides --quick)")
    parser.add_argument("--ks", type=int, nargs="*", default=[2, 17, 100, 1000])
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per cell")
    parser.add_argument(
        "--slow-megatron-rounds",
        type=int,
        default=1,
        help="megatron-core's rounds in cells with K * N >= 1e11 (its loop is O(K N))",
    )
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes] if args.sizes else [10**7 if args.quick else 10**8]
    threads = os.cpu_count()
    print(
        f"cores: {threads}; ours 1 thread and all {threads}; megatron-core: 1 thread; "
        f"{args.rounds} alternating rounds, medians; load average (1, 5, 15 min) at start: "
        + ", ".join(f"{x:.1f}" for x in os.getloadavg())
    )
    print(
        "| K | N | Megatron s (CPU s) | ours 1 thread s (CPU s) | ours all threads s (CPU s) "
        "| floor s | CPU ns/sample ours 1 / Megatron "
        "| speed-up 1 thread (CPU time) | speed-up all | bytes/sample ours / Megatron "
        "| max prefix dev. ours / Megatron | load avg before -> after |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    rows = []
    for n in sizes:
        for k in args.ks:
            before = os.getloadavg()[0]
            slow = k * n >= 1e11
            r = bench_cell(k, n, args.rounds, args.slow_megatron_rounds if slow else args.rounds)
            r["load"] = f"{before:.1f} -> {os.getloadavg()[0]:.1f}"
            rows.append(r)
            _print_row(r)
    atomic_write_json(
        OUT / ("bench_blend_quick.json" if args.quick else "bench_blend.json"),
        {"machine": platform.processor() or platform.machine(), "cores": threads, "rows": rows},
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
