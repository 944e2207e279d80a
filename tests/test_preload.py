"""The local launcher's preloaded workers (``sweep.local.preload``): a CPU proxy forked from a
worker that has imported torch and megatron-core trains exactly what a fresh interpreter trains.

Real CPU proxies (megatron-core ``GPTModel`` on real synthetic ``.bin/.idx`` files) through the
real local launcher: the same study swept once with ``preload: true`` and once with ``false``
must give byte-identical ``metrics.json`` and checkpoints for every run, every ``train.log`` of
the first must say that its proxy was forked and none of the second; and a sweep killed with
SIGKILL while forked proxies train leaves no process of it behind.
"""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from test_reproducible import STUDY

pytestmark = pytest.mark.slow

FORKED = "(forked from the sweep worker"


def _write(folder: Path, preload: bool, num_tokens: int = 2048) -> Path:
    study = copy.deepcopy(STUDY)
    study["sweep"]["local"]["preload"] = preload
    study["proxy"]["num_tokens"] = num_tokens
    study["proxy"]["keep_checkpoint"] = True
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "study.yaml"
    config.write_text(yaml.safe_dump(study, sort_keys=False))
    return config


def _sweep(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "regmix_plugin", "run", str(config), "--to", "sweep"],
        cwd=config.parent,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )


def test_forked_proxies_train_what_fresh_interpreters_train(tmp_path: Path) -> None:
    # Both sweeps in the same folder (metrics.json names the data files): the first run
    # folder is moved aside before the second sweep.
    runs = {}
    for preload in (True, False):
        config = _write(tmp_path, preload)
        proc = _sweep(config)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        moved = (tmp_path / "run").rename(tmp_path / f"run-{preload}")
        runs[preload] = sorted((moved / "sweep" / "runs").iterdir())
    assert [r.name for r in runs[True]] == [r.name for r in runs[False]]
    assert len(runs[True]) == STUDY["sample"]["num_mixtures"]
    for forked, fresh in zip(runs[True], runs[False], strict=True):
        assert (forked / "metrics.json").read_bytes() == (fresh / "metrics.json").read_bytes()
        checkpoints = sorted(p.relative_to(fresh) for p in (fresh / "checkpoint").rglob("*"))
        assert checkpoints, f"{fresh} kept no checkpoint"
        for rel in checkpoints:
            if (fresh / rel).is_file():
                assert (forked / rel).read_bytes() == (fresh / rel).read_bytes(), rel
        assert FORKED in (forked / "train.log").read_text()
        assert FORKED not in (fresh / "train.log").read_text()


def _processes_naming(text: str) -> list[int]:
    """Pids of live processes (not zombies) whose command line contains ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if text in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def test_sigkill_of_the_sweep_kills_forked_proxies(tmp_path: Path) -> None:
    config = _write(tmp_path / "kill", True, num_tokens=2048 * 64)
    sweep_dir = config.parent / "run" / "sweep"
    proc = subprocess.Popen(
        [sys.executable, "-m", "regmix_plugin", "run", str(config), "--to", "sweep"],
        cwd=config.parent,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        end = time.monotonic() + 300
        forked = False
        while not forked and proc.poll() is None and time.monotonic() < end:
            time.sleep(0.2)
            logs = sweep_dir.glob("runs/*/train.log")
            forked = any(FORKED in p.read_text(errors="replace") for p in logs)
        assert forked, "no proxy was forked before the time limit"
        time.sleep(2.0)  # the proxy is training now
        workers = _processes_naming(str(sweep_dir))
        assert len(workers) >= 2  # a serving worker and the proxy forked from it, at least
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    end = time.monotonic() + 15
    while _processes_naming(str(sweep_dir)) and time.monotonic() < end:
        time.sleep(0.1)
    assert _processes_naming(str(sweep_dir)) == []
