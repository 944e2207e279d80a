"""The default regressor at scale (issue 17, part 4): fit time at 512 and 5,000 rows, scoring
time per million candidates, Spearman on the paper's held-out mixtures.

- 512 rows: the paper's training rows (Pile-CC loss of the 1M proxies).
- 5,000 rows: synthetic rows of the paper's shape: mixtures drawn as ``regmix optimize`` draws
  them (Dirichlet around the Pile's token shares, strength uniform in [0.1, 5]), losses from
  the 512-row model plus normal noise with its out-of-fold RMSE.
- Fit: ``regmix_plugin.regression.fit`` with the default config, without the ensemble
  (``num_members 0``) and with it (32 members); wall and CPU seconds (the CPU time of every
  thread of the process: less sensitive to other jobs on a shared machine).
- The anchor: the GP part as it was fitted before (scikit-learn's ``GaussianProcessRegressor``,
  the same kernel and bounds) against ours on the same rows, alternating, ``--repeats`` times
  (512 rows only: scikit-learn's cubic fit at 5,000 rows takes hours).
- Scoring: 1,000,000 candidates, whole model (trees + GP), GP part compiled against the numpy
  path it replaces (today's), alternating, medians.

    python benchmarks/bench_regression_scale.py [--rows 512 5000] [--repeats 3] [--out t.md]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

# The paper's data, its target column and the candidate draws are bench_trees.py's.
from bench_trees import DATA, TARGET, candidates

from regmix_plugin.config import from_dict
from regmix_plugin.regression import FitConfig, align_columns, fit, load_model
from regmix_plugin.regression.fitting import spearman
from regmix_plugin.regression.regressors import GPRegressor, GPSettings
from regmix_plugin.tables import Table, read_table


def timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """Wall and CPU (every thread of the process) seconds of ``fn()``, and its value."""
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w0, time.process_time() - c0, out


def sklearn_gp_fit(x: np.ndarray, y: np.ndarray) -> None:
    """The GP part as fitted before this change (scikit-learn, same kernel and bounds)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

    f = np.log(x + 1e-3)
    z = (f - f.mean(0)) / f.std(0)
    kernel = ConstantKernel(1.0, (1e-3, 1e3)) * Matern(
        np.full(x.shape[1], 3.0), (1e-2, 1e3), nu=2.5
    ) + WhiteKernel(1e-2, (1e-6, 1.0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        GaussianProcessRegressor(kernel).fit(z, (y - y.mean()) / y.std())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[512, 5000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--members", type=int, default=32)
    parser.add_argument("--num-candidates", type=int, default=1_000_000)
    parser.add_argument("--out")
    parser.add_argument(
        "--score-model", help="only time scoring with this fitted model folder (lgbm_gp)"
    )
    parser.add_argument(
        "--gp-fit-anchor", action="store_true", help="only time the GP fit, ours vs before"
    )
    parser.add_argument(
        "--ensemble-only", action="store_true", help="skip the fit without the ensemble"
    )
    args = parser.parse_args()
    if args.score_model:
        score_only(Path(args.score_model), candidates(args.num_candidates, 0), args.repeats)
        return
    if args.gp_fit_anchor:
        x = read_table(DATA / "train_mixture_1m.csv").values
        y = read_table(DATA / "train_pile_loss_1m.csv").column(TARGET)
        ours, theirs = [], []
        for _ in range(args.repeats):
            ours.append(timed(lambda: GPRegressor(GPSettings()).fit(x, y))[:2])
            theirs.append(timed(lambda: sklearn_gp_fit(x, y))[:2])
        for name, r in (("ours", ours), ("scikit-learn (before)", theirs)):
            print(
                f"GP fit on 512 rows, {name}: wall {', '.join(f'{t[0]:.1f}' for t in r)} s; "
                f"CPU {', '.join(f'{t[1]:.1f}' for t in r)} s"
            )
        return

    mixtures = read_table(DATA / "train_mixture_1m.csv")
    results = read_table(DATA / "train_pile_loss_1m.csv")
    test = read_table(DATA / "test_mixture_1m.csv")
    truth = {s: read_table(DATA / f"test_pile_loss_{s}.csv").column(TARGET) for s in ("1m", "60m")}
    cands = candidates(args.num_candidates, seed=0)
    lines = [
        f"machine: {os.cpu_count()} cores, load average at start {os.getloadavg()[0]:.1f}; "
        f"{args.num_candidates:,} candidates",
        "",
        "| rows | ensemble | fit wall s | fit CPU s | score 1M wall s | score 1M CPU s "
        "| Spearman 1M | 60M |",
        "|---|---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    anchor_lines: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        reference: Any = None
        for num_rows in args.rows:
            if num_rows == len(mixtures.ids):
                mix, res = mixtures, results
            else:
                if reference is None:
                    fit(mixtures, results, [TARGET], FitConfig(num_members=0), Path(tmp) / "ref")
                    reference = load_model(Path(tmp) / "ref")
                x = candidates(num_rows, seed=num_rows)
                sd = float(reference.meta["targets"][TARGET]["ensemble"]["oof_rmse"])
                y = reference.predict(x, TARGET) + sd * np.random.default_rng(1).standard_normal(
                    num_rows
                )
                ids = [f"s{i}" for i in range(num_rows)]
                mix = Table("index", ids, mixtures.columns, x)
                res = Table("index", ids, [TARGET], y[:, None])
            for members in sorted({0, args.members} - ({0} if args.ensemble_only else set())):
                cfg = from_dict(FitConfig, {"num_members": members}, "fit")
                folder = Path(tmp) / f"m{num_rows}_{members}"
                wall, cpu, _ = timed(lambda: fit(mix, res, [TARGET], cfg, folder))  # noqa: B023
                model = load_model(folder)
                scores = [
                    timed(lambda: model.predict(cands, TARGET))  # noqa: B023
                    for _ in range(args.repeats)
                ]
                score = statistics.median(t[0] for t in scores)
                score_cpu = statistics.median(t[1] for t in scores)
                pred = model.predict(align_columns(test, model.domains), TARGET)
                row = (
                    f"| {num_rows} | {members or 'none'} | {wall:.1f} | {cpu:.1f} | {score:.2f} "
                    f"| {score_cpu:.2f} "
                    f"| {100 * spearman(pred, truth['1m']):.2f} "
                    f"| {100 * spearman(pred, truth['60m']):.2f} |"
                )
                lines.append(row)
                print(row, flush=True)
            more = anchors(num_rows, mix, res, load_model(folder), cands, args.repeats)
            print("\n".join(more), flush=True)
            anchor_lines += more
    lines += ["", *anchor_lines]
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")


def score_only(folder: Path, cands: np.ndarray, repeats: int) -> None:
    """Whole model, and its GP part compiled against numpy: wall and CPU s, alternating."""
    model = load_model(folder)
    gp = model.model(TARGET).gp  # type: ignore[attr-defined]
    runs: dict[str, list[tuple[float, float]]] = {"whole": [], "gp compiled": [], "gp numpy": []}
    for _ in range(repeats):
        runs["whole"].append(timed(lambda: model.predict(cands, TARGET))[:2])
        runs["gp compiled"].append(timed(lambda: gp.predict(cands))[:2])
        runs["gp numpy"].append(timed(lambda: gp.predict_numpy(cands))[:2])
    print(f"{len(cands):,} candidates, {os.cpu_count()} threads, load {os.getloadavg()[0]:.1f}")
    for name, r in runs.items():
        print(
            f"- {name}: wall median {statistics.median(t[0] for t in r):.2f} s, CPU median "
            f"{statistics.median(t[1] for t in r):.2f} s "
            f"(wall runs {', '.join(f'{t[0]:.2f}' for t in r)})"
        )


def anchors(
    num_rows: int, mix: Table, res: Table, model: Any, cands: np.ndarray, repeats: int
) -> list[str]:
    """GP fit (ours against scikit-learn's) and GP scoring (compiled against numpy)."""
    x, y = mix.values, res.column(TARGET)
    out = [f"{num_rows} rows, GP part alone, {repeats} alternating repeats (wall s):"]
    if num_rows <= 1024:
        ours, theirs = [], []
        for _ in range(repeats):
            ours.append(timed(lambda: GPRegressor(GPSettings()).fit(x, y))[0])
            theirs.append(timed(lambda: sklearn_gp_fit(x, y))[0])
        out.append(
            f"- fit: ours median {statistics.median(ours):.1f} "
            f"({', '.join(f'{t:.1f}' for t in ours)}); "
            f"scikit-learn (before) {statistics.median(theirs):.1f} "
            f"({', '.join(f'{t:.1f}' for t in theirs)})"
        )
    gp = model.model(TARGET).gp
    comp, nump = [], []
    a = b = np.zeros(0)
    for _ in range(repeats):
        t, _, a = timed(lambda: gp.predict(cands))
        comp.append(t)
        t, _, b = timed(lambda: gp.predict_numpy(cands))
        nump.append(t)
    out.append(
        f"- score {len(cands):,} ({len(gp.state['train_z'])} GP points): compiled median "
        f"{statistics.median(comp):.2f} ({', '.join(f'{t:.2f}' for t in comp)}); numpy (before) "
        f"{statistics.median(nump):.2f} ({', '.join(f'{t:.2f}' for t in nump)}); "
        f"max |difference| {float(np.max(np.abs(a - b))):.2g}"
    )
    return out


if __name__ == "__main__":
    main()
