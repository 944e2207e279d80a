"""Active (sequential) mixture design against the Dirichlet design, on the paper's released data.

The oracle plays the true loss: the project's default regressor (``lgbm_gp``, no ensemble)
fitted once on all 768 released 1M-parameter rows (512 train + 256 held-out), target Pile-CC
validation loss. A proxy run of mixture ``w`` returns ``oracle(w) + e``, ``e ~ N(0, sigma^2)``,
with ``sigma`` the oracle's own cross-validated RMSE on those rows (an upper estimate of the
seed noise: the released data has no replicate runs, so model error is counted as noise).

For each budget B (proxies) and repetition r (seeded by r):

- Dirichlet: ``sample_mixtures`` with the paper's design settings (``configs/pile.yaml``:
  temperature 0.5, 15 strengths 0.1..5, grid 2e-4, epoch caps 15 x the token share), B mixtures.
- Active: round 0 = B/2 of the same design (thinned from a pool 4x as large), then
  ``--rounds`` rounds of ``regmix_plugin.active.propose_round`` (batch Thompson sampling over a
  bootstrap ensemble) until B proxies are spent.

In-loop surrogate (cheap but faithful): the GP part of the default regressor (``gp``: Matérn
5/2 on standardised log-weights, hyperparameters by maximum likelihood) with a 16-member
bootstrap ensemble (shared hyperparameters, per-member dual coefficients), as ``regmix fit``
builds it. Both designs then choose their mixture the same way: the surrogate fitted on all
their B rows, 20,000 simulated candidates (half from the prior, half around the best), the mean
of the 20 lowest. Regret = oracle(chosen) - the oracle's own optimum under the same bounds (its
lowest value over 400,000 simulated candidates with three rounds of local refinement).

    python benchmarks/bench_active.py [--reps 20] [--budgets 16 32 64 128 256] [--out t.md]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from regmix_plugin.active import choose_mixture, draw_candidates, propose_round
from regmix_plugin.domains import load_catalogue
from regmix_plugin.mixtures import ActiveSettings
from regmix_plugin.regression import FitConfig, fit, load_model
from regmix_plugin.regression.regressors import RegressorSettings, make_regressor
from regmix_plugin.regression.uncertainty import bootstrap_counts
from regmix_plugin.simplex import tempered
from regmix_plugin.study import load_study
from regmix_plugin.tables import Table, read_table

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "benchmarks" / "data" / "regmix_paper"
TARGET = "metric/the_pile_pile_cc_val_loss"
NUM_MEMBERS = 16


def paper_tables() -> tuple[Table, np.ndarray]:
    """All 768 released 1M rows (weights in the training columns' order) and their losses."""
    xs, ys = [], []
    for mix, loss in (
        ("train_mixture_1m", "train_pile_loss_1m"),
        ("test_mixture_1m", "test_pile_loss_1m"),
    ):
        m, r = read_table(DATA / f"{mix}.csv"), read_table(DATA / f"{loss}.csv")
        if m.ids != r.ids:
            raise SystemExit(f"{mix} and {loss} disagree on ids")
        w = m.values / m.values.sum(axis=1, keepdims=True)  # released rounded to 3 decimals
        xs.append(w)
        ys.append(r.column(TARGET))
    cols = read_table(DATA / "train_mixture_1m.csv").columns
    x = np.concatenate(xs)
    ids = [str(i) for i in range(len(x))]
    return Table("mixture_id", ids, cols, x), np.concatenate(ys)


class Oracle:
    """The true loss: ``lgbm_gp`` fitted on every released row; noise sigma = its CV RMSE."""

    def __init__(self, table: Table, y: np.ndarray, folder: Path) -> None:
        results = Table("mixture_id", table.ids, [TARGET], y[:, None])
        summary = fit(table, results, [TARGET], FitConfig(num_members=0), folder)
        self.model = load_model(folder)
        self.sigma = float(np.sqrt(summary.targets[0].cv.mse_mean))
        self.chosen = summary.targets[0].chosen

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict(np.ascontiguousarray(x), TARGET))


class GPEnsemble:
    """The in-loop surrogate: GP + bootstrap members (as ``regmix fit`` builds its ensemble)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, seed: int) -> None:
        self.gp = make_regressor("gp", RegressorSettings())
        self.gp.fit(x, y)
        self.gp.fit_members(x, y, bootstrap_counts(len(y), NUM_MEMBERS, seed))

    def members(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.gp.predict_members(x))


class Problem:
    """Bounds, prior and design settings of the paper (``configs/pile.yaml``)."""

    def __init__(self, names: list[str]) -> None:
        study = load_study(ROOT / "configs" / "pile.yaml")
        self.catalogue = load_catalogue(study.require("domains"))
        cat = [n for n in self.catalogue.names]
        self.order = [cat.index(c.removeprefix("train_the_pile_")) for c in names]
        self.sample = study.require("sample")
        self.prior = tempered(self.catalogue.prior(), self.sample.temperature)[self.order]
        self.strengths = self.sample.strengths()
        self.lower = np.zeros(len(names))
        self.upper = np.minimum(self.catalogue.max_weights()[self.order], 1.0)

    def design(self, n: int, seed: int, pool: int = 1) -> np.ndarray:
        from regmix_plugin.active import initial_design

        cfg = replace(
            self.sample,
            num_mixtures=n,
            seed=seed,
            draw_multiplier=20,
            strategy="active",
            active=ActiveSettings(num_initial=n, pool_multiplier=pool),
        )
        return initial_design(self.catalogue, cfg).mixtures.weights[:, self.order]

    def candidates(
        self, rng: np.random.Generator, num: int, centres: np.ndarray | None
    ) -> np.ndarray:
        return draw_candidates(
            rng, self.prior, self.strengths, self.lower, self.upper, num, centres=centres,
            local_fraction=0.5 if centres is not None else 0.0,
        )  # fmt: skip


def final_choice(problem: Problem, x: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """The mixture a design chooses: the surrogate's mean, simulated candidates, top-20 mean."""
    model = GPEnsemble(x, y, seed)
    rng = np.random.default_rng([seed, 99])
    glob = problem.candidates(rng, 10000, None)
    mean = model.members(glob).mean(axis=0)
    centres = glob[np.argsort(mean)[:20]]
    cands = np.concatenate([glob, problem.candidates(rng, 20000, centres)[-10000:]])
    return choose_mixture(model.members(cands).mean(axis=0), cands, 20)


def oracle_optimum(problem: Problem, oracle: Oracle) -> float:
    rng = np.random.default_rng(12345)
    cands = problem.candidates(rng, 400000, None)
    best = float("inf")
    for _ in range(4):
        v = oracle(cands)
        best = min(best, float(v.min()))
        centres = cands[np.argsort(v)[:50]]
        cands = draw_candidates(
            rng, problem.prior, problem.strengths, problem.lower, problem.upper, 100000,
            centres=centres, local_fraction=1.0, concentration=300.0,
        )  # fmt: skip
    return best


def run_active(
    problem: Problem,
    oracle: Oracle,
    budget: int,
    seed: int,
    settings: ActiveSettings,
    rounds: int,
    initial: float = 0.5,
) -> np.ndarray:
    n0 = max(8, round(budget * initial))
    x = problem.design(n0, seed, pool=4)
    noise = np.random.default_rng([seed, 7])
    y = oracle(x) + noise.normal(0, oracle.sigma, len(x))
    batch = -(-(budget - n0) // rounds)
    r = 0
    while len(x) < budget:
        r += 1
        model = GPEnsemble(x, y, seed + r)
        prop = propose_round(
            model.members, x, prior=problem.prior, strengths=problem.strengths,
            lower=problem.lower, upper=problem.upper, settings=settings,
            batch_size=min(batch, budget - len(x)), seed=seed, round_index=r,
        )  # fmt: skip
        if len(prop.picks) == 0:
            break
        x = np.concatenate([x, prop.picks])
        y = np.concatenate([y, oracle(prop.picks) + noise.normal(0, oracle.sigma, len(prop.picks))])
    return final_choice(problem, x, y, seed)


def run_dirichlet(problem: Problem, oracle: Oracle, budget: int, seed: int) -> np.ndarray:
    x = problem.design(budget, seed)
    y = oracle(x) + np.random.default_rng([seed, 7]).normal(0, oracle.sigma, len(x))
    return final_choice(problem, x, y, seed)


def quartiles(v: list[float]) -> str:
    q = np.quantile(v, [0.25, 0.5, 0.75])
    return f"{1000 * q[1]:.1f} [{1000 * q[0]:.1f}, {1000 * q[2]:.1f}]"


def median_interval(diff: list[float], level: float = 0.9) -> tuple[float, float]:
    """Percentile bootstrap interval of the median paired difference (2000 resamples, seed 0)."""
    rng = np.random.default_rng(0)
    d = np.asarray(diff)
    meds = np.median(d[rng.integers(0, len(d), size=(2000, len(d)))], axis=1)
    lo, hi = np.quantile(meds, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--budgets", type=int, nargs="+", default=[16, 32, 64, 128, 256])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--min-distance", type=float, default=0.05)
    parser.add_argument("--local-fraction", type=float, default=0.5)
    parser.add_argument("--initial", type=float, default=0.5, help="round 0's share of B")
    parser.add_argument("--concentration", type=float, default=50.0)
    parser.add_argument("--designs", nargs="+", default=["dirichlet", "active"])
    parser.add_argument("--first-seed", type=int, default=0, help="repetition r uses seed first+r")
    parser.add_argument("--out")
    parser.add_argument("--json", help="also write every repetition's regret here")
    args = parser.parse_args()
    t_start = time.perf_counter()
    table, y = paper_tables()
    problem = Problem(table.columns)
    with tempfile.TemporaryDirectory() as tmp:
        oracle = Oracle(table, y, Path(tmp) / "oracle")
        best = oracle_optimum(problem, oracle)
        settings = ActiveSettings(
            num_candidates=20000,
            min_distance=args.min_distance,
            local_fraction=args.local_fraction,
            local_concentration=args.concentration,
        )
        threads = os.environ.get("OMP_NUM_THREADS", "default")
        head = (
            f"oracle: lgbm_gp on {len(y)} rows ({oracle.chosen.get('weight', '')} blend), noise "
            f"sigma {oracle.sigma:.4f} (its 5-fold CV RMSE); optimum {best:.4f}; "
            f"{args.reps} reps (seeds {args.first_seed}..{args.first_seed + args.reps - 1}), "
            f"rounds {args.rounds}, round 0 {args.initial:g} of B, min_distance "
            f"{args.min_distance:g}, local {args.local_fraction:g} x concentration "
            f"{args.concentration:g}; OMP threads: {threads}"
        )
        print(head, flush=True)
        regret: dict[tuple[str, int], list[float]] = {}
        for b in args.budgets:
            for rep in range(args.first_seed, args.first_seed + args.reps):  # same seeds
                for design in args.designs:
                    if design == "dirichlet":
                        w = run_dirichlet(problem, oracle, b, rep)
                    else:
                        w = run_active(problem, oracle, b, rep, settings, args.rounds, args.initial)
                    regret.setdefault((design, b), []).append(float(oracle(w[None, :])[0]) - best)
            shown = " ".join(f"{d} {quartiles(regret[(d, b)])}" for d in args.designs)
            print(
                f"B={b}: {shown} ({time.perf_counter() - t_start:.0f} s)",
                flush=True,
            )
    rows = [
        head,
        "",
        "regret x 1000 (oracle loss of the chosen mixture minus the oracle's optimum): median "
        "[25%, 75%] over repetitions; paired: active better in k of n repetitions",
        "",
        "| proxies | Dirichlet | active | active - Dirichlet: median of paired differences "
        "[90% bootstrap] | active better |",
        "|---|---|---|---|---|",
    ]
    for b in args.budgets if len(args.designs) == 2 else []:
        d, a = regret[("dirichlet", b)], regret[("active", b)]
        diff = [ai - di for ai, di in zip(a, d, strict=True)]
        wins = sum(x < 0 for x in diff)
        lo, hi = median_interval(diff)
        rows.append(
            f"| {b} | {quartiles(d)} | {quartiles(a)} | {1000 * statistics.median(diff):+.1f} "
            f"[{1000 * lo:+.1f}, {1000 * hi:+.1f}] | {wins}/{len(diff)} |"
        )
    rows.append(f"\ntotal {time.perf_counter() - t_start:.0f} s")
    print("\n".join(rows))
    if args.out:
        Path(args.out).write_text("\n".join(rows) + "\n", encoding="utf-8")
    if args.json:
        raw = {f"{design}@{b}": values for (design, b), values in regret.items()}
        Path(args.json).write_text(json.dumps({"head": head, "regret": raw}, indent=1) + "\n")


if __name__ == "__main__":
    main()
