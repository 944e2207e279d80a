"""Regression from mixture weights to metrics: ``regmix fit`` and ``regmix predict``.

Python API (see :mod:`regmix_plugin.regression.fitting`)::

    summary = fit(mixtures, results, targets, FitConfig(), out_dir)   # tables from read_table
    model = load_model(out_dir)
    y = model.predict(x, target)            # x: weights in model.domains order
    table = predict_table(model, mixtures)  # by domain name

Command line (:mod:`regmix_plugin.commands`)::

    regmix fit CONFIG                       # the run folder's mixtures and results -> model/
    regmix fit --mixtures mixtures.csv --results results.csv [--target COLUMN ...] --out model/
               [--config study.yaml]        # the study's `fit` section; defaults otherwise
    regmix predict --model model/ --mixtures candidates.csv --out predictions.csv
"""

from __future__ import annotations

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
    "fit",
    "load_model",
    "predict_table",
]
