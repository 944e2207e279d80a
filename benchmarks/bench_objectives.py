"""Objectives and do-no-harm constraints on the RegMix paper's released data (issue 12, Show).

One model per released loss (13 Pile validation losses) is fitted on the paper's 512 training
mixtures, then ``regmix_plugin.optimize.optimize`` chooses a mixture for

    (a)  Pile-CC loss alone (the paper's target)
    (b)  the mean of all 13 losses, each normalised by its spread over the training mixtures
    (c)  Pile-CC loss with every other loss at most 1% above the token prior's prediction
    (a') Pile-CC loss alone with (c)'s draws (to separate the constraints from the draws)

and prints the three mixtures side by side, the distances between them, each target's predicted
change against the token prior, and every constraint of (c) at its answer under the fitted model.

    python benchmarks/bench_objectives.py [--num-candidates 20000]

Cheap settings (stated because they differ from ``regmix optimize``'s defaults): LightGBM with
200 rounds at learning rate 0.05 (not rounds by 5-fold CV, not the lgbm_gp default: fitting 13
targets that way takes minutes on the 2 shared cores), no ensemble, 20,000 candidates per
choice, no iterative search. (c)'s constraints admit only a neighbourhood of the token prior
(under this model no draw at the default strengths 0.1..5 meets all twelve), so (c) and (a')
draw at Dirichlet strengths 300..3000 around the prior.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_trees import DATA, PILE_SHARES

from regmix_plugin.config import from_dict
from regmix_plugin.optimize import OptimizeConfig, OptimizeResult, optimize
from regmix_plugin.regression import FitConfig, fit, load_model
from regmix_plugin.tables import read_table

PILE_CC = "metric/the_pile_pile_cc_val_loss"
FIT = {
    "regressor": "lightgbm",
    "num_members": 0,
    "num_folds": 2,
    "settings": {
        "lightgbm": {"select_rounds": False, "num_boost_round": 200, "learning_rate": 0.05}
    },
}
NEAR_PRIOR = {"min_strength": 300.0, "max_strength": 3000.0}


def choices(targets: list[str], num: int) -> dict[str, dict]:
    """The optimize sections of (a), (b), (c) and (a')."""
    common = {"num_candidates": num, "top_k": 100, "search": {"enabled": False}}
    constraints = [{"target": t, "max_increase": 0.01} for t in targets if t != PILE_CC]
    return {
        "a": {**common, "target": PILE_CC},
        "b": {**common, "objective": {"terms": [{"target": t} for t in targets]}},
        "c": {**common, **NEAR_PRIOR, "target": PILE_CC, "constraints": constraints},
        "a'": {**common, **NEAR_PRIOR, "target": PILE_CC},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-candidates", type=int, default=20_000)
    args = parser.parse_args()
    mixtures = read_table(DATA / "train_mixture_1m.csv")
    results = read_table(DATA / "train_pile_loss_1m.csv")
    targets = list(results.columns)
    prior = np.asarray(PILE_SHARES) / sum(PILE_SHARES)
    names = list(mixtures.columns)
    lower, upper = np.zeros(len(names)), np.ones(len(names))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        fit(mixtures, results, targets, from_dict(FitConfig, FIT, "fit"), Path(tmp) / "model")
        print(f"fitted {len(targets)} targets in {time.perf_counter() - t0:.1f} s")
        model = load_model(Path(tmp) / "model")
        out: dict[str, OptimizeResult] = {}
        for label, section in choices(targets, args.num_candidates).items():
            t0 = time.perf_counter()
            config = from_dict(OptimizeConfig, section, f"optimize ({label})")
            out[label] = optimize(model, prior, names, lower, upper, config, results=results)
            print(f"({label}) chosen in {time.perf_counter() - t0:.1f} s")
        print_comparison(out, names, model, prior, targets)


def print_comparison(
    out: dict[str, OptimizeResult], names: list[str], model, prior: np.ndarray, targets: list[str]
) -> None:
    """The mixtures, their distances, each target's predicted change, (c)'s constraints."""
    labels = list(out)
    w = {k: np.array([r.weights[d] for d in names]) for k, r in out.items()}
    print("\n| domain | token prior | " + " | ".join(f"({k})" for k in labels) + " |")
    print("|---|---|" + "---|" * len(labels))
    for j, d in enumerate(names):
        cells = " | ".join(f"{w[k][j]:.3f}" for k in labels)
        print(f"| {d.removeprefix('train_the_pile_')} | {prior[j]:.3f} | {cells} |")
    print("\nL1 distance between the chosen mixtures (max 2):")
    for i, a in enumerate(labels):
        for b in labels[i + 1 :]:
            print(f"  ({a}) vs ({b}): {np.abs(w[a] - w[b]).sum():.3f}")
    print("\npredicted loss (relative change against the token prior's prediction):")
    print("| target | token prior | " + " | ".join(f"({k})" for k in labels) + " |")
    print("|---|---|" + "---|" * len(labels))
    for t in targets:
        ref = float(model.predict(prior[None, :], t)[0])
        cells = []
        for k in labels:
            v = float(model.predict(w[k][None, :], t)[0])
            cells.append(f"{v:.4f} ({100 * (v - ref) / ref:+.2f}%)")
        short = t.removeprefix("metric/the_pile_").removesuffix("_val_loss")
        print(f"| {short} | {ref:.4f} | " + " | ".join(cells) + " |")
    summary = out["c"].objective or {}
    held = [c["holds"] for c in summary.get("constraints", [])]
    print(f"\n(c): {sum(held)} of {len(held)} constraints hold at its answer (fitted model):")
    for c in summary.get("constraints", []):
        print(
            f"  {c['constraint']}: {c['chosen_predicted']:.4f} <= {c['upper']:.4f} "
            f"(slack {c['slack']:.4f}{', binds' if c['binds'] else ''}): "
            f"{'holds' if c['holds'] else 'VIOLATED'}"
        )
    if not all(held):
        raise SystemExit("a constraint of (c) does not hold at its answer")


if __name__ == "__main__":
    main()
