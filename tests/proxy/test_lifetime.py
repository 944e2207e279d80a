"""The exec wrapper and parent-death guards of ``regmix_plugin.lifetime`` (real processes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from regmix_plugin.lifetime import PARENT_PID_ENV, _descends_from, wrapped_argv

REPO = Path(__file__).resolve().parents[2]


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), **extra}


def test_wrapper_execs_the_command_in_its_own_process() -> None:
    probe = "import os; print(os.getpid(), os.environ['REGMIX_PARENT_PID'], os.getppid())"
    done = subprocess.run(
        wrapped_argv([sys.executable, "-c", probe]),
        env=_env(**{PARENT_PID_ENV: str(os.getpid())}),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    pid, recorded, parent = (int(x) for x in done.stdout.split())
    assert recorded == pid  # exec kept the pid, which torchrun ranks will check for
    assert parent == os.getpid()


def test_wrapper_whose_parent_is_already_gone_dies_at_once() -> None:
    # REGMIX_PARENT_PID names a process that is not the parent: as if the parent had died
    # between fork and the prctl call. The wrapper must kill itself, not run the command.
    done = subprocess.run(
        wrapped_argv([sys.executable, "-c", "print('ran')"]),
        env=_env(**{PARENT_PID_ENV: "1"}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == -signal.SIGKILL
    assert "ran" not in done.stdout


def test_wrapper_reports_a_command_that_does_not_exist() -> None:
    done = subprocess.run(
        wrapped_argv(["/nonexistent/regmix-proxy"]),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 127 and "/nonexistent/regmix-proxy" in done.stderr


def test_ancestry_walk() -> None:
    assert _descends_from(os.getppid())
    assert not _descends_from(os.getpid())  # a process is not its own ancestor
