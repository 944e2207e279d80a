"""The real-text study end to end (issue 15): does the mixture RegMix picks on small proxies still
win on a model with 4x the parameters and 4x the tokens, beyond the seed noise?

Stages (each resumable: a finished run's ``metrics.json`` is kept and skipped on rerun):

1. the corpus (``regmix realtext build``) when its manifest is missing (root);
2. ``regmix run CONFIG``: sample, the sweep of proxies, collect, fit, optimize, emit, evaluate,
   report (one seed, the sweep's);
   with the evaluate stage (the chosen mixture and the baselines: token prior, uniform, best
   sweep proxy, each with ``evaluate.num_seeds`` seeds) and the transfer stage (sweep mixtures
   spread over the predicted target retrained at the ``transfer.proxy`` size; Spearman rho with
   its bootstrap interval);
3. large scale, seeds: the four compared mixtures at the ``transfer.proxy`` size with the
   evaluation's seeds;
4. statistics: mean and std of the target loss per mixture and scale, the paired difference of
   each baseline to the chosen mixture (per seed) with a 95% t-interval ("beats" only when it
   excludes zero), and the transfer stage's record. Printed as tables and written to ``--out``
   (JSON).

``plan`` prints the time arithmetic from a measured proxy (``--proxy-seconds``) instead.

    python benchmarks/bench_realtext.py plan --proxy-seconds 48 --large-seconds 210
    python benchmarks/bench_realtext.py run --config configs/realtext.yaml

Runs ``--num-concurrent`` trainings at a time, one thread each. The study is sized for a 2-core
machine and about 2 hours; see docs/realtext.md.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
COMPARED = ("chosen", "token_prior", "uniform", "best_proxy")


def _absolute_study(config: Path) -> dict[str, Any]:
    """The study YAML with every relative path made absolute (so copies can live elsewhere)."""
    study = yaml.safe_load(config.read_text())
    base = config.resolve().parent

    def absolute(p: str) -> str:
        return str((base / p).resolve())

    study["run_dir"] = absolute(study["run_dir"])
    for entry in study["domains"]["entries"]:
        entry["prefixes"] = [absolute(p) for p in entry.get("prefixes", [])]
    targets = study["proxy"].get("targets", {})
    study["proxy"]["targets"] = {k: [absolute(p) for p in v] for k, v in targets.items()}
    return study


def _variant(study: dict[str, Any], folder: Path, name: str, **proxy: Any) -> Path:
    """Write a copy of the study with ``proxy`` settings overridden; return its path."""
    copy = json.loads(json.dumps(study))
    for key, value in proxy.items():
        copy["proxy"][key] = value
    path = folder / f"{name}.yaml"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(copy, sort_keys=False))
    return path


def _train(config: Path, weights: dict[str, float], out: Path) -> float:
    """Train one proxy with ``regmix train-proxy`` (skipped when done); its target loss."""
    metrics = out / "metrics.json"
    if not metrics.is_file():
        out.mkdir(parents=True, exist_ok=True)
        wfile = out / "weights.yaml"
        wfile.write_text(yaml.safe_dump({"weights": weights}, sort_keys=True))
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
        with open(out / "train.log", "w") as log:
            subprocess.run(
                [sys.executable, "-m", "regmix_plugin", "train-proxy", str(config), "--weights",
                 str(wfile), "--out", str(out)],
                check=True, env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
    data = json.loads(metrics.read_text())
    target = next(k for k in data["metrics"] if k.startswith("target_loss/"))
    return float(data["metrics"][target])


def _train_all(jobs: list[tuple[Path, dict[str, float], Path]], workers: int) -> list[float]:
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda job: _train(*job), jobs))


def _compare(losses: dict[str, list[float]]) -> dict[str, Any]:
    """Mean/std per mixture and the paired difference of each baseline to the chosen mixture
    (``evaluate.paired_comparison``: two-sided 95% t-interval over the seeds)."""
    from regmix_plugin.evaluate import paired_comparison

    out: dict[str, Any] = {"mixtures": {}, "paired_vs_chosen": {}}
    for name, values in losses.items():
        sd = statistics.stdev(values) if len(values) > 1 else math.nan
        out["mixtures"][name] = {"mean": statistics.fmean(values), "std": sd, "values": values}
    for name, values in losses.items():
        if name == "chosen":
            continue
        p = paired_comparison(values, losses["chosen"])
        out["paired_vs_chosen"][name] = {
            "mean_baseline_minus_chosen": p.mean_difference,
            "lo95": -math.inf if p.lo is None else p.lo,
            "hi95": math.inf if p.hi is None else p.hi,
            "chosen_beats": p.verdict == "beats", "baseline_beats": p.verdict == "loses",
        }  # fmt: skip
    return out


def _table(title: str, comparison: dict[str, Any]) -> str:
    rows = [title, f"  {'mixture':<12}{'mean':>9}{'std':>9}   baseline - chosen (95% CI)"]
    for name, m in comparison["mixtures"].items():
        p = comparison["paired_vs_chosen"].get(name)
        ci = (
            f"{p['mean_baseline_minus_chosen']:+.4f} [{p['lo95']:+.4f}, {p['hi95']:+.4f}]"
            + (" chosen beats" if p["chosen_beats"] else "")
            if p
            else ""
        )
        rows.append(f"  {name:<12}{m['mean']:>9.4f}{m['std']:>9.4f}   {ci}")
    return "\n".join(rows)


def _compared_weights(run_dir: Path) -> dict[str, dict[str, float]]:
    evaluation = json.loads((run_dir / "evaluation.json").read_text())
    return {k: evaluation["runs"][k]["weights"] for k in COMPARED if k in evaluation["runs"]}


def _large_overrides(study: dict[str, Any]) -> dict[str, Any]:
    """The transfer section's proxy overrides, ``model`` merged with the sweep's."""
    large = json.loads(json.dumps(study["transfer"]["proxy"]))
    if "model" in large:
        large["model"] = {**study["proxy"].get("model", {}), **large["model"]}
    return large


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every stage of the study; returns the results written to ``args.out``."""
    config = Path(args.config)
    study = _absolute_study(config)
    data_dir = Path(study["proxy"]["targets"][next(iter(study["proxy"]["targets"]))][0]).parent
    started = time.perf_counter()
    if not (data_dir / "manifest.json").is_file():
        subprocess.run(
            [sys.executable, "-m", "regmix_plugin", "realtext", "build", str(data_dir)], check=True
        )
    # The pipeline: sweep, fit, optimize, emit, evaluate (proxy scale, with seeds), transfer.
    subprocess.run([sys.executable, "-m", "regmix_plugin", "run", str(config)], check=True)
    run_dir = Path(study["run_dir"])
    bench = run_dir / "bench"
    compared = _compared_weights(run_dir)
    evaluation = json.loads((run_dir / "evaluation.json").read_text())
    transfer = json.loads((run_dir / "transfer.json").read_text())
    seeds = [int(s) for s in evaluation["seeds"]]
    large = _large_overrides(study)
    # The paper's experiment at small scale: the compared mixtures at the larger size, with the
    # evaluation's seeds.
    jobs, keys = [], []
    for s in seeds:
        large_cfg = _variant(study, bench / "configs", f"large_seed{s}", seed=s, **large)
        for name, w in compared.items():
            jobs.append((large_cfg, w, bench / "large" / f"{name}_seed{s}"))
            keys.append((name, s))
    losses = dict(zip(keys, _train_all(jobs, args.num_concurrent), strict=True))
    scales = {
        "small": {name: list(evaluation["runs"][name]["target_losses"]) for name in compared},
        "large": {name: [losses[(name, s)] for s in seeds] for name in compared},
    }
    result = {
        "config": str(config),
        "seeds": seeds,
        "large": large,
        "small_scale": _compare(scales["small"]),
        "large_scale": _compare(scales["large"]),
        "transfer": transfer,
        "wall_time_s": time.perf_counter() - started,
    }
    print(_table("proxy scale (target loss)", result["small_scale"]))
    print(_table("large scale (target loss)", result["large_scale"]))
    interval, rank = transfer.get("interval", {}), transfer.get("chosen_rank", {})
    print(
        f"transfer (see {run_dir / 'transfer.json'}): Spearman rho "
        f"{transfer.get('spearman_rho')} [{interval.get('lo')}, {interval.get('hi')}] "
        f"({interval.get('level')} interval); the chosen mixture ranks {rank.get('small')} of "
        f"{rank.get('of')} at the proxy scale and {rank.get('large')} at the large scale"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return result


def plan(args: argparse.Namespace) -> dict[str, Any]:
    """The study's time arithmetic from measured single-run times (core-seconds per run)."""
    p, big, w = args.proxy_seconds, args.large_seconds, args.num_concurrent
    units = {
        "sweep": (args.num_proxies, p),
        "evaluate (proxy scale, seeds x 4 mixtures)": (args.seeds * 4, p),
        "transfer (large scale)": (args.num_transfer, big),
        "large scale, seeds x 4 mixtures": (args.seeds * 4, big),
    }
    total = sum(n * s for n, s in units.values()) + args.fixed_seconds
    for name, (n, s) in units.items():
        print(f"{name:<44}{n:>4} runs x {s:>6.0f} s = {n * s:>7.0f} s")
    print(f"{'fit, optimize, emit, report':<44}{args.fixed_seconds:>27.0f} s")
    print(f"total {total:.0f} core-seconds; {total / w / 60:.0f} min wall with {w} at a time")
    return {"core_seconds": total, "wall_minutes": total / w / 60}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", choices=["run", "plan"])
    parser.add_argument("--config", default=str(REPO / "configs" / "realtext.yaml"))
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "out" / "realtext.json"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--num-transfer", type=int, default=8)
    parser.add_argument("--num-proxies", type=int, default=64)
    parser.add_argument("--num-concurrent", type=int, default=2)
    parser.add_argument("--proxy-seconds", type=float, default=48.0)
    parser.add_argument("--large-seconds", type=float, default=210.0)
    parser.add_argument("--fixed-seconds", type=float, default=300.0)
    args = parser.parse_args()
    (run if args.mode == "run" else plan)(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
