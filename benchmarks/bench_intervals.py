"""Prediction intervals on the RegMix paper's data (issue 11, part 2).

Fits the default regressor (``lgbm_gp``) with its bootstrap ensemble on the paper's 512 training
mixtures only, then, once, on the 256 held-out mixtures:

- coverage: the share of held-out losses (1M-parameter proxies) inside their predicted 90%
  interval (target 85-95%), and the mean interval width; also with the members' spread alone
  (no residual term), to show why the residual term is there;
- Spearman x 100 of the ensemble mean and of the model of every row (today's default) against
  the held-out 1M and 60M losses, with a paired bootstrap 90% interval on the difference.

    python benchmarks/bench_intervals.py [--members 32] [--out table.md] [--keep DIR]

The 60M losses are another model size: their coverage is printed for information only (the
interval is of the 1M proxies' loss).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from regmix_plugin.config import from_dict
from regmix_plugin.regression import FitConfig, align_columns, fit, load_model
from regmix_plugin.regression.fitting import spearman
from regmix_plugin.regression.uncertainty import paired_spearman_difference, predictive_interval
from regmix_plugin.tables import read_table

DATA = Path(__file__).resolve().parent / "data" / "regmix_paper"
TARGET = "metric/the_pile_pile_cc_val_loss"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=32)
    parser.add_argument("--out", help="also write the Markdown table here")
    parser.add_argument("--keep", help="keep the fitted model in this folder")
    args = parser.parse_args()

    mixtures = read_table(DATA / "train_mixture_1m.csv")
    results = read_table(DATA / "train_pile_loss_1m.csv")
    test = read_table(DATA / "test_mixture_1m.csv")
    truth = {s: read_table(DATA / f"test_pile_loss_{s}.csv").column(TARGET) for s in ("1m", "60m")}
    config = from_dict(FitConfig, {"num_members": args.members}, "fit")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep) if args.keep else Path(tmp) / "model"
        t0, c0 = time.perf_counter(), time.process_time()
        fit(mixtures, results, [TARGET], config, folder)
        fit_s = time.perf_counter() - t0
        print(f"fit: {fit_s:.0f} s wall, {time.process_time() - c0:.0f} s CPU", flush=True)
        model = load_model(folder)
        x = align_columns(test, model.domains)
        table = interval_table(model, x, truth, fit_s, args.members)
    print("\n".join(table), flush=True)
    if args.out:
        Path(args.out).write_text("\n".join(table) + "\n", encoding="utf-8")


def interval_table(
    model: Any, x: np.ndarray, truth: dict[str, np.ndarray], fit_s: float, num_members: int
) -> list[str]:
    """The coverage and Spearman tables."""
    point = model.predict(x, TARGET)
    t0 = time.perf_counter()
    members = model.predict_members(x, TARGET)
    members_s = time.perf_counter() - t0
    ens = model.meta["targets"][TARGET]["ensemble"]
    sd, oof_rmse = float(ens["residual_sd"]), float(ens["oof_rmse"])
    rows = [
        f"default regressor lgbm_gp, {num_members} bootstrap members; fit {fit_s:.0f} s "
        f"(everything: CV, model of every row, members); members' predictions on 256 rows "
        f"{members_s:.2f} s; residual sd calibrated out of bag (90%) {sd:.4g}, "
        f"out-of-fold RMSE {oof_rmse:.4g}",
        "",
        "| 90% interval | held-out coverage 1M | mean width | coverage 60M (info) |",
        "|---|---|---|---|",
    ]
    variants = (
        ("shipped: FittedModel.predict_interval (members + calibrated residual)", None),
        ("members + out-of-fold RMSE", oof_rmse),
        ("members only", 0.0),
    )
    for label, resid in variants:
        if resid is None:
            mean, lo, hi = model.predict_interval(x, TARGET, 0.9)
        else:
            mean, lo, hi = predictive_interval(members, resid, 0.9)
        cov = {s: float(np.mean((truth[s] >= lo) & (truth[s] <= hi))) for s in truth}
        rows.append(
            f"| {label} | {100 * cov['1m']:.1f}% | {float(np.mean(hi - lo)):.4f} "
            f"| {100 * cov['60m']:.1f}% |"
        )
    mean = members.mean(axis=0)
    rows += [
        "",
        "| Spearman x100 | ensemble mean | model of every row (today) "
        "| difference [90% paired bootstrap] |",
        "|---|---|---|---|",
    ]
    for s in ("1m", "60m"):
        d, dlo, dhi = paired_spearman_difference(mean, point, truth[s])
        rows.append(
            f"| held-out {s.upper()} | {100 * spearman(mean, truth[s]):.2f} "
            f"| {100 * spearman(point, truth[s]):.2f} "
            f"| {100 * d:+.2f} [{100 * dlo:+.2f}, {100 * dhi:+.2f}] |"
        )
    return rows


if __name__ == "__main__":
    main()
