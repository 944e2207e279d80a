"""Scoring speed: LightGBM's ``Booster.predict`` against the compiled evaluator (``_trees``).

The model is the paper's LightGBM (learning rate 0.01, 1000 rounds, seed 42) fitted on the
paper's 512 training mixtures; the candidates are drawn as ``regmix optimize`` draws them
(Dirichlet around the Pile's token shares). Both scorers run on the same candidates, alternately,
``--repeats`` times; the table gives medians and the ratio, and the largest absolute difference
between the two (the target is at most 1e-9).

    python benchmarks/bench_trees.py [--num-candidates 1000000] [--repeats 3] [--threads 2]

``--whole-model`` also times the default regressor (``lgbm_gp``: trees + GP) end to end on the
same candidates, since the fast path covers only its tree part.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import lightgbm as lgb
import numpy as np

from regmix_plugin.optimize import dirichlet
from regmix_plugin.regression.trees import CompiledTrees
from regmix_plugin.tables import read_table

DATA = Path(__file__).resolve().parent / "data" / "regmix_paper"
TARGET = "metric/the_pile_pile_cc_val_loss"
#: The Pile token shares the paper used as its prior (its README), training-column order.
PILE_SHARES = [
    0.113285273, 0.079608651, 0.003913491, 0.185375901, 0.051081359, 0.015962925,
    0.101750772, 0.003707518, 0.066529351, 0.001750772, 0.027085479, 0.236869207,
    0.01184346, 0.007929969, 0.008032956, 0.038825953, 0.046446962,
]  # fmt: skip


def candidates(n: int, seed: int) -> np.ndarray:
    """Mixtures drawn as ``regmix optimize`` draws them around the Pile's token shares."""
    prior = np.asarray(PILE_SHARES) / sum(PILE_SHARES)
    rng = np.random.default_rng(seed)
    strength = rng.uniform(0.1, 5.0, size=(n, 1))
    return np.ascontiguousarray(dirichlet(rng, strength * prior[None, :]))


def _time(fn, repeats: int) -> tuple[float, list[float], np.ndarray]:
    times, out = [], np.zeros(0)
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-candidates", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--whole-model", action="store_true")
    args = parser.parse_args()

    x = read_table(DATA / "train_mixture_1m.csv").values
    y = read_table(DATA / "train_pile_loss_1m.csv").column(TARGET)
    params = {
        "objective": "regression",
        "learning_rate": 0.01,
        "seed": 42,
        "verbosity": -1,
        "num_threads": args.threads,
    }
    booster = lgb.train(params, lgb.Dataset(x, y), num_boost_round=1000)
    compiled = CompiledTrees.from_booster(booster)
    cands = candidates(args.num_candidates, seed=0)
    n = args.num_candidates
    print(
        f"model: {compiled.num_trees} trees; {n:,} candidates x {cands.shape[1]} domains; "
        f"{args.threads} thread(s); {args.repeats} repeats, alternating",
        flush=True,
    )
    lgb_times: list[float] = []
    our_times: list[float] = []
    ref = ours = np.zeros(0)
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        ref = booster.predict(cands, num_threads=args.threads)
        lgb_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ours = compiled.predict(cands, num_threads=args.threads)
        our_times.append(time.perf_counter() - t0)
    diff = float(np.max(np.abs(ours - ref)))
    lgb_med, our_med = statistics.median(lgb_times), statistics.median(our_times)
    print("| scorer | median s | all runs s |")
    print("|---|---|---|")
    print(
        f"| LightGBM Booster.predict | {lgb_med:.2f} | {', '.join(f'{t:.2f}' for t in lgb_times)} |"
    )
    print(
        f"| regmix _trees (compiled) | {our_med:.2f} | {', '.join(f'{t:.2f}' for t in our_times)} |"
    )
    print(f"speed-up (median ratio): {lgb_med / our_med:.1f}x; max |difference| = {diff:.3g}")

    if args.whole_model:
        from regmix_plugin.regression import FitConfig, fit, load_model

        mixtures = read_table(DATA / "train_mixture_1m.csv")
        results = read_table(DATA / "train_pile_loss_1m.csv")
        with tempfile.TemporaryDirectory() as tmp:
            fit(mixtures, results, [TARGET], FitConfig(), Path(tmp) / "model")
            model = load_model(Path(tmp) / "model")
            part = model.model(TARGET)
            whole, times, _ = _time(lambda: model.predict(cands, TARGET), args.repeats)
            print(
                f"whole default model (lgbm_gp, weight {part.weight}): median {whole:.2f} s "  # type: ignore[attr-defined]
                f"for {n:,} candidates ({', '.join(f'{t:.2f}' for t in times)})"
            )
            gp_med, _, _ = _time(lambda: part.gp.predict(cands), args.repeats)  # type: ignore[attr-defined]
            print(f"  of which the GP part: median {gp_med:.2f} s")


if __name__ == "__main__":
    main()
