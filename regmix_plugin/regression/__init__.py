"""Regression from mixture weights to metrics: ``regmix fit`` and ``regmix predict``.

Python API (see :mod:`regmix_plugin.regression.fitting`)::

    summary = fit(mixtures, results, targets, FitConfig(), out_dir)   # tables from read_table
    model = load_model(out_dir)
    y = model.predict(x, target)            # x: weights in model.domains order
    table = predict_table(model, mixtures)  # by domain name

Command line::

    regmix fit --mixtures mixtures.csv --results results.csv [--target COLUMN ...] --out model/
               [--config study.yaml]        # the study's `fit` section; defaults otherwise
    regmix predict --model model/ --mixtures candidates.csv --out predictions.csv
"""

from __future__ import annotations

import argparse
import logging

from regmix_plugin.regression.fitting import (
    DEFAULT_REGRESSOR,
    CVMetrics,
    FitConfig,
    FitSummary,
    FittedModel,
    TargetSummary,
    align_columns,
    fit,
    load_model,
    predict_table,
)
from regmix_plugin.regression.regressors import REGRESSORS, RegressorSettings

__all__ = [
    "DEFAULT_REGRESSOR",
    "REGRESSORS",
    "CVMetrics",
    "FitConfig",
    "FitSummary",
    "FittedModel",
    "RegressorSettings",
    "TargetSummary",
    "align_columns",
    "command_fit",
    "command_predict",
    "configure_fit",
    "configure_predict",
    "fit",
    "load_model",
    "predict_table",
]

log = logging.getLogger(__name__)


def configure_fit(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``regmix fit``."""
    parser.add_argument(
        "--mixtures", required=True, help="mixtures CSV (id column, one per domain)"
    )
    parser.add_argument("--results", required=True, help="results CSV (id column, one per metric)")
    parser.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="COLUMN",
        help="metric column to fit (repeatable); default: fit.targets, else every column",
    )
    parser.add_argument("--out", required=True, help="model folder to write")
    parser.add_argument(
        "--config", help="study YAML whose `fit` section sets the regressor and its settings"
    )


def command_fit(args: argparse.Namespace) -> int:
    """Run ``regmix fit``."""
    from regmix_plugin.config import load_study
    from regmix_plugin.tables import read_table

    config = FitConfig.from_study(load_study(args.config)) if args.config else FitConfig()
    summary = fit(
        read_table(args.mixtures), read_table(args.results), args.target, config, args.out
    )
    print(
        f"regressor {summary.regressor}; {len(summary.domains)} domains; model in {summary.out_dir}"
    )
    print(
        f"{config.num_folds}-fold cross-validated metrics on the training rows "
        "(mean ± std over folds):"
    )
    print(summary.table())
    for name, reason in summary.skipped.items():
        print(f"skipped {name}: {reason}")
    return 0


def configure_predict(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``regmix predict``."""
    parser.add_argument("--model", required=True, help="model folder written by `regmix fit`")
    parser.add_argument("--mixtures", required=True, help="mixtures CSV to score")
    parser.add_argument("--out", required=True, help="predictions CSV to write")
    parser.add_argument(
        "--target", action="append", default=[], metavar="COLUMN", help="only these targets"
    )


def command_predict(args: argparse.Namespace) -> int:
    """Run ``regmix predict``."""
    from regmix_plugin.tables import read_table, write_table

    model = load_model(args.model)
    table = predict_table(model, read_table(args.mixtures), args.target or None)
    write_table(args.out, table)
    print(f"wrote {len(table.ids)} rows x {len(table.columns)} target(s) to {args.out}")
    return 0
