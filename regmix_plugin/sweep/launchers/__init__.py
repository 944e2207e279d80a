"""Launchers: how the runs of a sweep are started. A small protocol plus a name registry.

Every launcher starts the same worker (:mod:`regmix_plugin.sweep.worker`) for each run, so the
run folders, markers and retries behave the same whichever launcher is used; a launcher only
decides *where* the worker runs (a child process, a NeMo-Run task, a Slurm array task) and
reports which runs it still has in flight. Heavy dependencies (``nemo_run``) are imported when
the launcher is built, and a missing one fails with the ``pip install`` line.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from regmix_plugin.sweep.config import SweepConfig
    from regmix_plugin.sweep.runner import SweepPlan


class Launcher(Protocol):
    """What the sweep driver needs from a launcher."""

    #: True: new work is submitted only when nothing is in flight (rounds: Slurm arrays,
    #: NeMo-Run experiments). False: whenever a slot frees up (local processes).
    rounds: bool

    def capacity(self) -> int | None:
        """How many runs may be in flight at once; None: no limit of the launcher's own."""
        ...

    def preview(self, plan: SweepPlan, mixture_ids: list[str]) -> str:
        """What ``submit`` would do (commands, scripts), for ``--dry-run``; launches nothing."""
        ...

    def submit(self, plan: SweepPlan, mixture_ids: list[str]) -> None:
        """Start the worker for each run (without waiting for it)."""
        ...

    def in_flight(self, plan: SweepPlan) -> set[str]:
        """Runs this launcher (or an earlier driver, e.g. queued Slurm jobs) still has going."""
        ...

    def wait_for_change(self, timeout: float) -> None:
        """Block up to ``timeout`` seconds, returning early when a run may have ended."""
        ...

    def close(self) -> None:
        """The sweep is leaving (done, an error, Ctrl-C): release what the launcher holds.

        Runs that live in a scheduler (Slurm arrays, NeMo-Run tasks on Slurm) go on, and a rerun
        of ``regmix sweep`` adopts them. Runs that are processes of this sweep (launcher
        ``local``; NeMo-Run's local executor) are stopped; a rerun resumes them from their
        checkpoints. Each launcher's ``close`` says which it does.
        """
        ...


LauncherFactory = Callable[["SweepPlan"], Launcher]


def _local(plan: SweepPlan) -> Launcher:
    from regmix_plugin.sweep.launchers.local import LocalLauncher

    return LocalLauncher(plan)


def _slurm(plan: SweepPlan) -> Launcher:
    from regmix_plugin.sweep.launchers.slurm import SlurmLauncher

    return SlurmLauncher(plan)


def _nemo_run(plan: SweepPlan) -> Launcher:
    from regmix_plugin.sweep.launchers.nemo_run import NemoRunLauncher

    return NemoRunLauncher(plan)


#: Launcher name (``sweep.launcher``) -> factory; the names are ``sweep.config.LAUNCHER_NAMES``.
LAUNCHERS: dict[str, LauncherFactory] = {"local": _local, "slurm": _slurm, "nemo_run": _nemo_run}


def get_launcher(plan: SweepPlan) -> Launcher:
    """Build the launcher named by ``plan.settings.launcher``."""
    return LAUNCHERS[plan.settings.launcher](plan)


def devices_per_proxy(settings: SweepConfig) -> int:
    """Accelerators each proxy of the sweep gets from its launcher; 0: it runs on the CPU."""
    return {
        "local": settings.local.num_devices_per_proxy,
        "slurm": settings.slurm.num_gpus_per_task,
        "nemo_run": settings.nemo_run.num_gpus_per_node,
    }[settings.launcher]


def cpu_only_env_line(settings: SweepConfig) -> list[str]:
    """The shell line that hides every GPU from a proxy given none (empty when it has some)."""
    return [] if devices_per_proxy(settings) else ["export CUDA_VISIBLE_DEVICES="]


def worker_argv(plan: SweepPlan, mixture_ids: list[str]) -> list[str]:
    """The worker command line for some runs (one after the other)."""
    return [sys.executable, "-m", "regmix_plugin.sweep.worker", str(plan.sweep_dir), *mixture_ids]
