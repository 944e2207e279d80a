"""The quickstart with the active design and half the proxies against the 40-proxy Dirichlet
quickstart (issue 13): the measured target loss of each study's chosen mixture, paired by seed.

1. Runs both studies up to the chosen mixture (``regmix run CONFIG --to optimize``; a finished
   run folder is reused): ``configs/quickstart.yaml`` (40 Dirichlet proxies) and
   ``configs/quickstart-active.yaml`` (20 proxies in rounds). ``--design-seed S`` sets
   ``sample.seed`` of both (run folders ``runs/quickstart-designS`` and
   ``runs/quickstart-active-designS``; S = 0 reuses the bundled run folders).
2. Trains a proxy on each chosen mixture and on the planted weights with ``--seeds`` proxy seeds,
   the same seeds for all three (``proxy.seed + 1000 + k``, the evaluate stage's seeds), so that
   run k of every mixture shares its initial weights and data order.
3. Reports mean +- std per mixture and the paired difference active - Dirichlet with its 95%
   Student t-interval over seeds; "better"/"worse" only where the interval excludes zero.
   The planted weights are the floor both are measured against.

    python benchmarks/bench_active_quickstart.py [--seeds 8] [--design-seed 0] [--out FILE]

The seeds measure the noise of training a proxy on a fixed mixture; the variation of each study's
own choice with its design seed is measured only by rerunning with other ``--design-seed`` values.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
STUDIES = {"dirichlet": "quickstart.yaml", "active": "quickstart-active.yaml"}


def _run_dir(name: str, design_seed: int) -> Path:
    base = "quickstart" if name == "dirichlet" else "quickstart-active"
    suffix = "" if design_seed == 0 else f"-design{design_seed}"
    return REPO / "runs" / f"{base}{suffix}"


def _choose(name: str, design_seed: int) -> Path:
    """Run the study up to ``optimize`` (skipped when its weights.yaml exists); its run folder."""
    run_dir = _run_dir(name, design_seed)
    if not (run_dir / "weights.yaml").is_file():
        config = REPO / "configs" / STUDIES[name]
        overrides = [] if design_seed == 0 else ["--set", f"sample.seed={design_seed}"]
        overrides += ["--set", f"run_dir={run_dir}"] if design_seed else []
        cmd = [sys.executable, "-m", "regmix_plugin", "run", str(config), "--to", "optimize"]
        subprocess.run([*cmd, *overrides], check=True, cwd=REPO)
    return run_dir


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--design-seed", type=int, default=0)
    parser.add_argument("--num-concurrent", type=int, default=2)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "out" / "active_qs.json"))
    args = parser.parse_args()

    from regmix_plugin.domains import load_catalogue
    from regmix_plugin.evaluate import paired_comparison
    from regmix_plugin.mixtures import load_weights_yaml
    from regmix_plugin.proxy.pool import ProxyJob, train_proxies
    from regmix_plugin.study import load_study

    runs = {name: _choose(name, args.design_seed) for name in STUDIES}
    study = load_study(REPO / "configs" / STUDIES["dirichlet"])
    proxy = study.require("proxy")
    catalogue = load_catalogue(study.require("domains"))
    synthetic = study.require("synthetic")
    mixtures = {name: load_weights_yaml(runs[name] / "weights.yaml") for name in STUDIES}
    mixtures["planted"] = dict(synthetic.hidden_weights)
    num_proxies = {
        name: len((runs[name] / "mixtures.csv").read_text().splitlines()) - 1 for name in STUDIES
    }
    seeds = [proxy.seed + 1000 + k for k in range(args.seeds)]
    out_root = REPO / "runs" / f"bench-active-quickstart-design{args.design_seed}"
    jobs = [
        ProxyJob(
            proxy=dataclasses.replace(proxy, seed=seed),
            weights=weights,
            mixture_id=name,
            out_dir=out_root / f"{name}_seed{seed}",
            label=f"{name} seed {seed}",
        )
        for name, weights in mixtures.items()
        for seed in seeds
    ]
    metrics = iter(
        train_proxies(
            jobs,
            catalogue,
            eval_cache=out_root / "eval-cache",
            num_concurrent=args.num_concurrent,
        )
    )
    target = study.require("evaluate").target
    losses = {name: [float(next(metrics)["metrics"][target]) for _ in seeds] for name in mixtures}
    # The evaluate stage's paired t-interval, with active as the "baseline": active - Dirichlet.
    paired = paired_comparison(losses["active"], losses["dirichlet"])
    diffs = [a - d for a, d in zip(losses["active"], losses["dirichlet"], strict=True)]
    mean, low, high = paired.mean_difference, paired.lo, paired.hi
    verdict = {"loses": "active better", "beats": "active worse"}.get(
        paired.verdict, paired.verdict
    )
    planted = mixtures["planted"]
    result: dict[str, Any] = {
        "target": target,
        "design_seed": args.design_seed,
        "seeds": seeds,
        "num_proxies": num_proxies,
        "mixtures": mixtures,
        "l1_to_planted": {
            name: sum(abs(w[d] - planted[d]) for d in planted) for name, w in mixtures.items()
        },
        "losses": losses,
        "active_minus_dirichlet": {
            "per_seed": diffs,
            "mean": mean,
            "interval_95": [low, high],
            "verdict": verdict,
        },
    }
    print(f"{target}, {len(seeds)} proxy seeds, design seed {args.design_seed}")
    print("| mixture | proxies | L1 to planted | mean | std |")
    print("|---|---|---|---|---|")
    for name, values in losses.items():
        n = num_proxies.get(name, "-")
        l1 = result["l1_to_planted"][name]
        print(
            f"| {name} | {n} | {l1:.3f} | {statistics.fmean(values):.4f} | "
            f"{statistics.stdev(values):.4f} |"
        )
    print(
        f"active - Dirichlet: {mean:+.4f} [{low:+.4f}, {high:+.4f}] (95% paired t-interval): "
        f"{verdict}"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
