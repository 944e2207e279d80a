"""Regression quality on the RegMix paper's released tables (part 5 of the regression issue).

Every regressor is fitted with ``regmix_plugin.regression.fit`` on the 512 training rows only;
each setting it chooses (LightGBM rounds, GP hyperparameters, blend weight) comes from k-fold
cross-validation on those rows. Then, once, Spearman rho x 100 between predicted and true
Pile-CC loss on the 256 held-out mixtures, with the losses of 1M- and 60M-parameter models.

    python benchmarks/bench_paper.py [--out table.md]

Prints a Markdown table (regressor, CV Spearman on the training rows, test 1M, test 60M, fit
seconds) beside the paper's figures (LightGBM 98.45 / 98.64, linear 90.08 / 89.26; the
paper stopped LightGBM early on the test rows themselves), then the honest comparison
(issue 11, part 6): ours minus each fair baseline, Spearman x 100 on the held-out rows, with a
paired bootstrap 90% interval over the 256 test rows. Fair: fitted without any test row. For
reference, LightGBM early-stopped on the test rows (the paper's protocol) is reproduced and
marked as tuned on test data; it is not a fair baseline.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import lightgbm as lgb
import numpy as np

from regmix_plugin.config import from_dict
from regmix_plugin.regression import FitConfig, align_columns, fit, load_model
from regmix_plugin.regression.fitting import spearman
from regmix_plugin.regression.uncertainty import paired_spearman_difference
from regmix_plugin.tables import Table, read_table

DATA = Path(__file__).resolve().parent / "data" / "regmix_paper"
TARGET = "metric/the_pile_pile_cc_val_loss"

#: (label, fit config) in table order.
RUNS: list[tuple[str, dict]] = [
    ("linear (paper's baseline)", {"regressor": "linear", "num_members": 0}),
    (
        "LightGBM, paper settings, 1000 rounds",
        {
            "regressor": "lightgbm",
            "num_members": 0,
            "settings": {"lightgbm": {"select_rounds": False}},
        },
    ),
    (
        "LightGBM, paper settings, rounds by 5-fold CV",
        {"regressor": "lightgbm", "num_members": 0},
    ),
    ("GP on log-weights (Matérn 5/2, ARD)", {"regressor": "gp", "num_members": 0}),
    (
        "ours: lgbm_gp (LightGBM + GP, weight by 5-fold CV)",
        {"regressor": "lgbm_gp", "num_members": 0},
    ),
]
OURS = RUNS[-1][0]


def early_stopped_on_test(
    mixtures: np.ndarray, y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray
) -> np.ndarray:
    """The paper's protocol, for reference only: LightGBM (its settings) early-stopped on the
    test rows themselves (the 1M losses), 3 rounds of patience as the paper's script."""
    params = {"objective": "regression", "learning_rate": 0.01, "seed": 42, "verbosity": -1}
    booster = lgb.train(
        params,
        lgb.Dataset(mixtures, y),
        num_boost_round=1000,
        valid_sets=[lgb.Dataset(test_x, test_y)],
        callbacks=[lgb.early_stopping(3, verbose=False)],
    )
    return np.asarray(booster.predict(test_x, num_iteration=booster.best_iteration))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="also write the Markdown table here")
    parser.add_argument(
        "--only", action="append", default=[], help="run only regressors with this name"
    )
    args = parser.parse_args()

    mixtures = read_table(DATA / "train_mixture_1m.csv")
    results = read_table(DATA / "train_pile_loss_1m.csv")
    test_x = read_table(DATA / "test_mixture_1m.csv")
    truth = {size: read_table(DATA / f"test_pile_loss_{size}.csv") for size in ("1m", "60m")}
    rows = [
        "| regressor | CV Spearman x100 (train, 5-fold) | test 1M | test 60M | fit s |",
        "|---|---|---|---|---|",
        "| paper: linear | – | 90.08 | 89.26 | – |",
        "| paper: LightGBM (stopped early on the test rows) | – | 98.45 | 98.64 | – |",
    ]
    print("\n".join(rows), flush=True)
    preds: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, data in RUNS:
            if args.only and data["regressor"] not in args.only:
                continue
            config = from_dict(FitConfig, data, "fit")
            t0 = time.perf_counter()
            summary = fit(mixtures, results, [TARGET], config, Path(tmp) / "model")
            seconds = time.perf_counter() - t0
            model = load_model(Path(tmp) / "model")
            x = align_columns(test_x, model.domains)
            pred = model.predict(x, TARGET)
            preds[label] = pred
            scores = []
            for size in ("1m", "60m"):
                t = truth[size]
                if t.ids != test_x.ids:
                    raise SystemExit(f"test tables disagree on ids ({size})")
                scores.append(100 * spearman(pred, t.column(TARGET)))
            cv = summary.targets[0].cv
            chosen = summary.targets[0].chosen
            detail = {k: v for k, v in chosen.items() if k in ("num_rounds", "weight")}
            if "lightgbm" in chosen:
                detail["num_rounds"] = chosen["lightgbm"]["num_rounds"]
            note = f" ({', '.join(f'{k} {v}' for k, v in detail.items())})" if detail else ""
            row = (
                f"| {label}{note} | {100 * cv.spearman_mean:.2f} ± {100 * cv.spearman_std:.2f} "
                f"| {scores[0]:.2f} | {scores[1]:.2f} | {seconds:.0f} |"
            )
            rows.append(row)
            print(row, flush=True)
    rows += honest_comparison(preds, mixtures, results, test_x, truth)
    if args.out:
        Path(args.out).write_text("\n".join(rows) + "\n", encoding="utf-8")


def honest_comparison(
    preds: dict[str, np.ndarray], mixtures: Table, results: Table, test_x: Table, truth: dict
) -> list[str]:
    """Ours minus each baseline with a paired bootstrap 90% interval (printed as it goes)."""
    x = align_columns(test_x, mixtures.columns)
    y1m = truth["1m"].column(TARGET)
    preds[
        "LightGBM early-stopped ON THE TEST ROWS (paper's protocol; tuned on test data, not fair)"
    ] = early_stopped_on_test(mixtures.values, results.column(TARGET), x, y1m)
    out = [
        "",
        "| baseline | test 1M | test 60M | ours - baseline 1M [90% paired bootstrap] | 60M |",
        "|---|---|---|---|---|",
        "| paper: LightGBM, its reported figures (early-stopped on the test rows) | 98.45 "
        "| 98.64 | – | – |",
    ]
    print("\n".join(out), flush=True)
    if OURS not in preds:
        return out
    for label, pred in preds.items():
        if label == OURS:
            continue
        cells = [f"{100 * spearman(pred, truth[s].column(TARGET)):.2f}" for s in ("1m", "60m")]
        for s in ("1m", "60m"):
            d, lo, hi = paired_spearman_difference(preds[OURS], pred, truth[s].column(TARGET))
            cells.append(f"{100 * d:+.2f} [{100 * lo:+.2f}, {100 * hi:+.2f}]")
        row = f"| {label} | {' | '.join(cells)} |"
        out.append(row)
        print(row, flush=True)
    return out


if __name__ == "__main__":
    main()
