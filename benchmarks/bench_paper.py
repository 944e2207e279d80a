"""Regression quality on the RegMix paper's released tables (part 5 of the regression issue).

Every regressor is fitted with ``regmix_plugin.regression.fit`` on the 512 training rows only;
each setting it chooses (LightGBM rounds, GP hyperparameters, blend weight) comes from k-fold
cross-validation on those rows. Then, once, Spearman rho x 100 between predicted and true
Pile-CC loss on the 256 held-out mixtures, with the losses of 1M- and 60M-parameter models.

    python benchmarks/bench_paper.py [--out table.md]

Prints a Markdown table (regressor, CV Spearman on the training rows, test 1M, test 60M, fit
seconds) beside the paper's figures (LightGBM 98.45 / 98.64, linear 90.08 / 89.26; the
paper stopped LightGBM early on the test rows themselves).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from regmix_plugin.config import from_dict
from regmix_plugin.regression import FitConfig, align_columns, fit, load_model
from regmix_plugin.regression.fitting import spearman
from regmix_plugin.tables import read_table

DATA = Path(__file__).resolve().parent / "data" / "regmix_paper"
TARGET = "metric/the_pile_pile_cc_val_loss"

#: (label, fit config) in table order.
RUNS: list[tuple[str, dict]] = [
    ("linear (paper's baseline)", {"regressor": "linear"}),
    (
        "LightGBM, paper settings, 1000 rounds",
        {"regressor": "lightgbm", "settings": {"lightgbm": {"select_rounds": False}}},
    ),
    ("LightGBM, paper settings, rounds by 5-fold CV", {"regressor": "lightgbm"}),
    ("GP on log-weights (Matérn 5/2, ARD)", {"regressor": "gp"}),
    ("ours: lgbm_gp (LightGBM + GP, weight by 5-fold CV)", {"regressor": "lgbm_gp"}),
]


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
    if args.out:
        Path(args.out).write_text("\n".join(rows) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
