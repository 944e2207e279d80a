"""Helpers of the stack tests: launching ranks; the exact-ratio property checked from scratch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
HOSTS = Path(__file__).resolve().parent / "hosts"


def free_port() -> int:
    """A TCP port free right now on localhost (for torchrun's rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env(**extra: str) -> dict[str, str]:
    """This process's environment with the worktree first on PYTHONPATH, one thread per rank."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.update({"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}, **extra)
    return env


def torchrun(
    python: str | Path,
    entry: list[str],
    *,
    nproc: int = 2,
    timeout: float = 600,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run --nproc-per-node N ENTRY...`` (gloo via the script)."""
    cmd = [
        str(python),
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        str(nproc),
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(free_port()),
        *entry,
    ]
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env or child_env()
    )


def rank_results(out: Path, world_size: int = 2) -> list[dict]:
    """The ``rank<r>.json`` files a host script wrote, in rank order."""
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(world_size)]


def max_prefix_deviation(index: list[int] | np.ndarray, weights: list[float]) -> float:
    """Largest ``|count_k(first n samples) - w_k n|`` over every prefix ``n`` and dataset ``k``.

    Computed here from the sequence alone; the exact-ratio sampler promises < 1.
    """
    idx = np.asarray(index, dtype=np.int64)
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    onehot = np.zeros((len(idx), len(w)))
    onehot[np.arange(len(idx)), idx] = 1.0
    counts = np.cumsum(onehot, axis=0)
    n = np.arange(1, len(idx) + 1, dtype=np.float64)[:, None]
    return float(np.abs(counts - n * w).max())
