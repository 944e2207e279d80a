"""kill -9 during ``regmix fit``, ``regmix optimize`` and ``regmix emit`` (issue 18): the real
process is SIGKILLed mid-stage, the same command is rerun, and the stage's artifact is whole,
byte-identical to an uninterrupted run's, with no temporary file or folder left beside it.

The study is the good workspace of ``bad_input_cases`` (real ``.bin/.idx`` files, a real fitted
LightGBM + GP model); each command runs as ``python -m regmix_plugin``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from bad_input_cases import build_workspace

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = build_workspace(tmp_path_factory.mktemp("good"))
    # Heavier optimize and fit than the bad-input suite's, so that a kill lands inside them.
    study = yaml.safe_load((root / "study.yaml").read_text())
    study["optimize"]["num_candidates"] = 400_000
    study["fit"]["num_members"] = 8
    (root / "study.yaml").write_text(yaml.safe_dump(study, sort_keys=False))
    return root


def _start(argv: list[str], cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "regmix_plugin", *argv],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _run(argv: list[str], cwd: Path) -> None:
    proc = _start(argv, cwd)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]


def _kill_when(
    argv: list[str], cwd: Path, ready: Callable[[], bool], timeout: float, may_finish: bool = False
) -> str:
    """Start ``regmix ARGV``; SIGKILL it as soon as ``ready()`` holds (polled every 2 ms) or
    after ``timeout`` seconds. Returns ``"ready"`` or ``"timeout"`` (the kill landed), or
    ``"finished"`` when it exited first, which fails the test unless ``may_finish``."""
    proc = _start(argv, cwd)
    deadline = time.monotonic() + timeout
    outcome = "timeout"
    while time.monotonic() < deadline and proc.poll() is None:
        if ready():
            outcome = "ready"
            break
        time.sleep(0.002)
    if proc.poll() is not None:
        out = proc.communicate()[0]
        assert may_finish, f"it ended before the kill:\n{out[-3000:]}"
        assert proc.returncode == 0, out[-3000:]
        return "finished"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return outcome


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _temps(folder: Path) -> list[str]:
    """Leftovers of atomic writes: dot-named temporary files and folders, anywhere below."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*") if p.name != ".lock")


def _workspace(good: Path, tmp_path: Path, name: str) -> Path:
    w = tmp_path / name
    shutil.copytree(good, w)
    return w


def test_kill_during_fit(good: Path, tmp_path: Path) -> None:
    w = _workspace(good, tmp_path, "w")
    shutil.rmtree(w / "run" / "model")
    _run(["fit", "study.yaml"], w)  # uninterrupted, in the same folder (paths are recorded)
    reference = _files(w / "run" / "model")
    shutil.rmtree(w / "run" / "model")
    # The model is built in a temporary folder beside model/ and renamed at the end.
    outcome = _kill_when(["fit", "study.yaml"], w, lambda: any((w / "run").glob(".model.*")), 300)
    assert outcome == "ready", "the fit never made its temporary folder"
    assert list((w / "run").glob(".model.*")), "the kill left nothing to clean (test too late)"
    _run(["fit", "study.yaml"], w)
    assert _temps(w / "run" / "model") == [] and not list((w / "run").glob(".model.*"))
    assert _files(w / "run" / "model") == reference


def test_kill_during_optimize(good: Path, tmp_path: Path) -> None:
    w = _workspace(good, tmp_path, "w")
    (w / "run" / "weights.yaml").unlink()
    t0 = time.monotonic()
    _run(["optimize", "study.yaml"], w)
    duration = time.monotonic() - t0
    reference = (w / "run" / "weights.yaml").read_bytes()
    (w / "run" / "weights.yaml").unlink()
    # Kills at several moments inside the run (the simulation, the choice, the write). A rerun can
    # be quicker than the timed one (warm caches, a less busy machine), so a late kill may find
    # it finished: that is allowed, as long as some kills land while it runs.
    landed = 0
    for share in (0.3, 0.5, 0.8, 0.95):
        started = time.monotonic()
        outcome = _kill_when(
            ["optimize", "study.yaml"],
            w,
            lambda s=started, f=share: (  # type: ignore[misc]
                any((w / "run").glob(".weights.yaml.*")) or time.monotonic() - s > f * duration
            ),
            duration * 3,
            may_finish=True,
        )
        landed += outcome != "finished"
        if (w / "run" / "weights.yaml").is_file():
            (w / "run" / "weights.yaml").unlink()  # it finished writing: start clean again
    assert landed >= 1, "every kill missed the run: it finished before them"
    _run(["optimize", "study.yaml"], w)
    assert _temps(w / "run") == []
    assert (w / "run" / "weights.yaml").read_bytes() == reference


def test_kill_during_emit(good: Path, tmp_path: Path) -> None:
    w = _workspace(good, tmp_path, "w")
    blend = w / "run" / "blend"
    shutil.rmtree(blend)
    _run(["emit", "study.yaml", "--weights", "run/weights.yaml"], w)
    reference = _files(blend)
    shutil.rmtree(blend)
    # Files are written one by one, the manifest last: kill once some exist and it does not.
    outcome = _kill_when(
        ["emit", "study.yaml", "--weights", "run/weights.yaml"],
        w,
        lambda: blend.is_dir() and any(blend.iterdir()) and not (blend / "manifest.json").exists(),
        120,
    )
    assert outcome == "ready", "the emit was never caught half-way"
    assert not (blend / "manifest.json").exists()
    _run(["emit", "study.yaml", "--weights", "run/weights.yaml"], w)
    assert _temps(blend) == []
    assert _files(blend) == reference
