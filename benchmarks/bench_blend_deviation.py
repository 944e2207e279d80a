"""Worst prefix deviation of megatron-core's sampler and ours over random weight vectors.

For each of 60 random weight vectors (K from 3 to 100, Dirichlet concentration 0.1 to 1, every
weight at least 1e-6), both samplers build 200,000 samples; the script prints the largest
``max_n,k |count_k(n) - w_k n|`` each reached.

    python benchmarks/bench_blend_deviation.py
"""

from __future__ import annotations

import numpy as np
from megatron.core.datasets import helpers_cpp

from regmix_plugin.blending import build_blend_indices, max_prefix_deviation

NUM_TRIALS = 60
NUM_SAMPLES = 200_000


def main() -> None:
    rng = np.random.default_rng(0)
    worst = {"megatron": 0.0, "ours": 0.0}
    for _ in range(NUM_TRIALS):
        k = int(rng.choice([3, 5, 17, 50, 100]))
        w = rng.dirichlet(np.full(k, float(rng.choice([0.1, 0.3, 1.0]))))
        w = np.maximum(w, 1e-6)
        w /= w.sum()
        dataset_index = np.zeros(NUM_SAMPLES, dtype=np.int16)
        sample_index = np.zeros(NUM_SAMPLES, dtype=np.int64)
        helpers_cpp.build_blending_indices(dataset_index, sample_index, w, k, NUM_SAMPLES, False)
        megatron = max_prefix_deviation(dataset_index.astype(np.int32), w)
        ours = max_prefix_deviation(build_blend_indices(w, NUM_SAMPLES)[0], w)
        worst["megatron"] = max(worst["megatron"], megatron)
        worst["ours"] = max(worst["ours"], ours)
    print(
        f"{NUM_TRIALS} random weight vectors, {NUM_SAMPLES:,} samples each: worst prefix "
        f"deviation megatron-core {worst['megatron']:.3f}, ours {worst['ours']:.6f} (< 1)"
    )


if __name__ == "__main__":
    main()
