"""Sweep overhead per proxy: launch and bookkeeping time beside the proxy's own time.

    python benchmarks/bench_sweep.py [--launchers local,slurm] [--num-proxies 3] [--repeats 2]

For each launcher it runs ``regmix sweep`` (the CLI, as a user would) over ``--num-proxies``
real tiny CPU proxies (``regmix train-proxy`` on a synthetic ``.bin/.idx`` corpus), one proxy
at a time, and measures

* the sweep's wall time ``T`` (from starting the command to its exit),
* each proxy's own time ``d_i`` (its process, start to exit, recorded by the worker),

so the overhead per proxy is ``(T - sum d_i) / N``: the CLI start, planning, the run
folders, starting the worker, the launcher (``sbatch``, scheduling, ``squeue`` polls) and the
markers. It is reported in seconds and as a share of a one-minute proxy (the target is < 5 %).
Each configuration is repeated ``--repeats`` times in fresh folders; medians are reported.
Slurm runs on a single-node cluster started with ``tools/local_slurm.py`` (needs root and the
Debian packages); it is skipped with a note when that is not possible.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from regmix_plugin.sweep.registry import attempt_times

REPO = Path(__file__).resolve().parents[1]
PROXY_MINUTE_S = 60.0
DOMAINS = ("a", "b", "c")
TINY_PROXY: dict[str, Any] = {
    "preset": "tiny",
    "vocab_size": 96,
    "seq_length": 32,
    "num_tokens": 32 * 16 * 10,
    "micro_batch_size": 8,
    "global_batch_size": 16,
    "lr": 3e-3,
    "split": "80,20,0",
    "num_eval_tokens": 512,
    "log_interval": 5,
    "num_threads": 1,
}


def _write_study(root: Path, launcher: str, num_proxies: int) -> Path:
    from regmix_plugin.corpus import write_indexed_dataset
    from regmix_plugin.mixtures import mixture_id

    rng = np.random.default_rng(0)
    entries = []
    for i, name in enumerate(DOMAINS):
        prefix = root / "data" / f"{name}_text_document"
        docs = [
            rng.integers(i * 32, (i + 1) * 32, size=int(rng.integers(32, 128))) for _ in range(120)
        ]
        write_indexed_dataset(prefix, docs)
        entries.append({"name": name, "prefixes": [str(prefix)]})
    sweep: dict[str, Any] = {"launcher": launcher, "num_retries": 0}
    if launcher == "local":
        sweep["local"] = {"num_concurrent": 1}
    else:
        sweep["slurm"] = {"num_array_concurrent": 1, "time": "00:30:00"}
    study = {
        "run_dir": "run",
        "domains": {"num_target_tokens": 10**6, "entries": entries},
        "proxy": TINY_PROXY,
        "sweep": sweep,
    }
    config = root / "study.yaml"
    config.write_text(yaml.safe_dump(study, sort_keys=False))
    weights = rng.dirichlet(np.ones(len(DOMAINS)), size=num_proxies)
    lines = ["mixture_id," + ",".join(DOMAINS)]
    for w in weights:
        w = np.round(w, 6)
        w[-1] = round(1.0 - float(w[:-1].sum()), 6)
        mapping = dict(zip(DOMAINS, (float(x) for x in w), strict=True))
        lines.append(mixture_id(mapping) + "," + ",".join(repr(float(x)) for x in w))
    (root / "run").mkdir()
    (root / "run" / "mixtures.csv").write_text("\n".join(lines) + "\n")
    return config


def _one(launcher: str, num_proxies: int, env: dict[str, str] | None) -> dict[str, float]:
    root = Path(tempfile.mkdtemp(prefix=f"bench-sweep-{launcher}-"))
    root.chmod(0o755)
    try:
        config = _write_study(root, launcher, num_proxies)
        cmd = [sys.executable, "-m", "regmix_plugin", "sweep", str(config)]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"sweep failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        own = []
        for folder in (root / "run" / "sweep" / "runs").iterdir():
            own += [t["duration_s"] for t in attempt_times(folder).values() if "duration_s" in t]
        assert len(own) == num_proxies, own
        overhead = (wall - sum(own)) / num_proxies
        return {
            "sweep_wall_s": wall,
            "proxy_own_s": statistics.median(own),
            "overhead_per_proxy_s": overhead,
            "overhead_share_of_tiny_proxy": overhead / statistics.median(own),
            "overhead_share_of_1min_proxy": overhead / PROXY_MINUTE_S,
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _start_slurm() -> tuple[Any, Path, dict[str, str]] | str:
    spec = importlib.util.spec_from_file_location("local_slurm", REPO / "tools" / "local_slurm.py")
    assert spec is not None and spec.loader is not None
    local_slurm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(local_slurm)
    problems = local_slurm.missing_requirements()
    if problems:
        return "; ".join(problems)
    prefix = Path(tempfile.mkdtemp(prefix="bench-slurm-"))
    prefix.chmod(0o755)
    env = local_slurm.start(prefix, cpus=2)
    return local_slurm, prefix, env


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print a table and write ``benchmarks/out/bench_sweep.json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--launchers", default="local,slurm")
    parser.add_argument("--num-proxies", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    results: dict[str, Any] = {}
    for launcher in args.launchers.split(","):
        env = None
        cluster = None
        if launcher == "slurm":
            started = _start_slurm()
            if isinstance(started, str):
                results[launcher] = {"skipped": started}
                print(f"slurm: skipped ({started})")
                continue
            cluster = started
            env = started[2]
        try:
            runs = [_one(launcher, args.num_proxies, env) for _ in range(args.repeats)]
        finally:
            if cluster is not None:
                cluster[0].stop(cluster[1], purge=True)
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        results[launcher] = {"median": med, "runs": runs}
        share_1min = 100 * med["overhead_share_of_1min_proxy"]
        share_tiny = 100 * med["overhead_share_of_tiny_proxy"]
        print(
            f"{launcher:6s} proxy own {med['proxy_own_s']:6.2f} s | sweep overhead per proxy "
            f"{med['overhead_per_proxy_s']:5.2f} s = {share_1min:4.1f} % of a 1-min proxy "
            f"({share_tiny:4.1f} % of this tiny one); "
            f"median of {args.repeats} sweeps x {args.num_proxies} proxies"
        )
    out = REPO / "benchmarks" / "out" / "bench_sweep.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"num_proxies": args.num_proxies, **results}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
