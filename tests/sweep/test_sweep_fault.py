"""Fault test: SIGKILL the sweep (and a proxy) at random moments, rerun, lose nothing finished."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sweep_helpers import fake_command

from regmix_plugin.sweep.registry import sweep_status

NUM_CYCLES = 5


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _proxy_pids(sweep_dir: Path) -> dict[str, int]:
    out = {}
    for f in sweep_dir.glob("runs/*/proxy.pid"):
        try:
            pid = int(f.read_text())
        except (FileNotFoundError, ValueError):
            continue
        if _alive(pid):
            out[f.parent.name] = pid
    return out


def _done_snapshot(sweep_dir: Path) -> dict[str, tuple[bytes, int, int]]:
    """run -> (DONE bytes, DONE mtime, trainings so far) for every finished run."""
    snap = {}
    for done in sweep_dir.glob("runs/*/DONE"):
        starts = done.parent / "starts.log"
        snap[done.parent.name] = (
            done.read_bytes(),
            done.stat().st_mtime_ns,
            len(starts.read_text().split()) if starts.is_file() else 0,
        )
    return snap


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_no_finished_run(make_sweep, record_property) -> None:
    rng = random.Random(int(os.environ.get("REGMIX_FAULT_SEED", "1234")))
    section = {
        "launcher": "local",
        "command": fake_command(steps=8, step_s=0.15),
        "poll_interval_s": 0.1,
        "num_retries": 0,
        "local": {"num_concurrent": 2},
    }
    s = make_sweep.write(section, num_mixtures=6)
    cmd = [sys.executable, "-m", "regmix_plugin", "sweep", str(s.config)]
    counts = {"sweep_kills": 0, "proxy_kills": 0, "finished_at_kill": 0, "orphans": 0}
    finished: dict[str, tuple[bytes, int, int]] = {}
    killed_proxies: set[str] = set()
    for cycle in range(NUM_CYCLES):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # wait until the sweep has proxies in flight (its start-up is not what we test) ...
        end = time.monotonic() + 20
        while not _proxy_pids(s.sweep_dir) and proc.poll() is None and time.monotonic() < end:
            time.sleep(0.02)
        # ... then kill it at a random moment; in the first cycle and at random, a proxy first
        deadline = time.monotonic() + rng.uniform(0.0, 2.5)
        kill_proxy = cycle == 0 or rng.random() < 0.5
        kill_proxy_at = time.monotonic() + rng.uniform(0.0, 0.6) if kill_proxy else None
        while time.monotonic() < deadline and proc.poll() is None:
            if kill_proxy_at is not None and time.monotonic() >= kill_proxy_at:
                running = _proxy_pids(s.sweep_dir)
                if running:
                    mid, pid = sorted(running.items())[0]
                    os.kill(pid, signal.SIGKILL)  # a proxy dies in the middle of its run
                    killed_proxies.add(mid)
                    counts["proxy_kills"] += 1
                    kill_proxy_at = None
            time.sleep(0.02)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            counts["sweep_kills"] += 1
        proc.wait()
        # the workers and proxies die with the sweep (PR_SET_PDEATHSIG): none keeps running
        end = time.monotonic() + 10
        while _proxy_pids(s.sweep_dir) and time.monotonic() < end:
            time.sleep(0.05)
        counts["orphans"] += len(_proxy_pids(s.sweep_dir))
        snap = _done_snapshot(s.sweep_dir)
        for mid, old in finished.items():
            assert snap[mid] == old, f"finished run {mid} was touched by a later sweep"
        finished.update(snap)
    counts["finished_at_kill"] = len(finished)

    # the final rerun completes the sweep
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    status = sweep_status(s.sweep_dir)
    assert status.finished, status.counts
    after = _done_snapshot(s.sweep_dir)
    for mid, old in finished.items():
        assert after[mid] == old, f"finished run {mid} was trained again"
    # interrupted runs: resumed from their checkpoint (a start at step > 0) or restarted cleanly
    resumed = restarted = 0
    for mid in s.ids:
        starts = [int(x) for x in (s.sweep_dir / "runs" / mid / "starts.log").read_text().split()]
        metrics = json.loads((s.sweep_dir / "runs" / mid / "metrics.json").read_text())
        assert metrics["num_steps"] == 8  # trained to the end exactly once in total
        if len(starts) > 1:
            resumed += any(x > 0 for x in starts[1:])
            restarted += all(x == 0 for x in starts[1:])
        attempts = json.loads((s.sweep_dir / "runs" / mid / "attempts.json").read_text())
        assert attempts[-1]["exit_code"] == 0
        assert all(a["ended"] for a in attempts)  # interrupted attempts are closed
    counts.update(interrupted_resumed=resumed, interrupted_restarted=restarted, runs=len(s.ids))
    assert counts["orphans"] == 0
    assert counts["proxy_kills"] >= 1 and resumed + restarted >= 1
    record_property("fault_counts", counts)
    print("fault test counts:", json.dumps(counts))
