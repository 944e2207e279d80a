"""A stand-in proxy for the launcher and fault mechanics tests only (not for results).

It behaves like ``regmix train-proxy`` where the sweep machinery can see it: it trains in
steps (sleeping), keeps a checkpoint it resumes from, can be killed at any moment, exits 0
without training when its ``metrics.json`` is complete, and writes ``metrics.json`` atomically
with a flat ``metrics`` mapping. Every start is appended to ``starts.log`` so tests can count
how often a run was trained.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--mixture", required=True)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--step-s", type=float, default=0.1)
    parser.add_argument("--fail-times", type=int, default=0, help="fail on the first K starts")
    parser.add_argument("--domains", default="a,b")
    parser.add_argument(
        "--diverge", action="store_true", help="report a NaN and an infinite loss (diverged)"
    )
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    metrics_path = out / "metrics.json"
    if metrics_path.is_file():
        return 0
    _atomic_write(out / "proxy.pid", str(os.getpid()))
    ckpt = out / "checkpoint" / "step"
    step = int(ckpt.read_text()) if ckpt.is_file() else 0
    with (out / "starts.log").open("a") as f:
        f.write(f"{step}\n")
    num_starts = len((out / "starts.log").read_text().split())
    print(f"fake proxy {args.mixture}: start {num_starts} from step {step}", flush=True)
    if num_starts <= args.fail_times:
        print("fake proxy: failing on purpose", file=sys.stderr, flush=True)
        return 3
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    while step < args.steps:
        time.sleep(args.step_s)
        step += 1
        _atomic_write(ckpt, str(step))
        print(f"step {step}", flush=True)
    seed = int(hashlib.sha256(args.mixture.encode()).hexdigest()[:8], 16)
    metrics = {
        f"val_loss/{d}": 2.0 + ((seed >> i) % 97) / 100
        for i, d in enumerate(args.domains.split(","))
    }
    metrics["target_loss/avg"] = sum(metrics.values()) / len(metrics)
    if args.diverge:  # json.dumps writes these as NaN / Infinity, as a careless proxy would
        first, second = list(metrics)[:2]
        metrics[first], metrics[second] = float("nan"), float("inf")
    _atomic_write(
        metrics_path,
        json.dumps({"mixture_id": args.mixture, "metrics": metrics, "num_steps": step}) + "\n",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
