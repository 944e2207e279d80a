"""Launcher ``local``: N workers as child processes of ``regmix sweep`` on this machine.

Each worker gets ``SIGKILL`` when the sweep process dies: it arms Linux's
``PR_SET_PDEATHSIG`` itself at its start (``REGMIX_PARENT_PID``, see
:mod:`regmix_plugin.lifetime`), and so do its proxy and the proxy's torchrun ranks, so
killing the sweep never leaves proxies running unseen; a rerun resumes them.

Devices: with ``num_devices_per_proxy: 0`` every proxy gets ``CUDA_VISIBLE_DEVICES=""`` and
runs on the CPU. Otherwise each slot owns ``num_devices_per_proxy`` of the GPUs this process
sees (the entries of the parent's ``CUDA_VISIBLE_DEVICES``, else 0 .. count-1), set as that
slot's ``CUDA_VISIBLE_DEVICES``; asking for more devices than there are is an error, not a
silent fall-back to the CPU. A proxy needing more than one device is started with torchrun.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from regmix_plugin.errors import ConfigError, LaunchError
from regmix_plugin.lifetime import PARENT_PID_ENV
from regmix_plugin.sweep.launchers import worker_argv

if TYPE_CHECKING:
    from regmix_plugin.sweep.config import LocalSettings
    from regmix_plugin.sweep.runner import SweepPlan


def visible_gpus(environ: Mapping[str, str], gpu_count: int) -> list[str]:
    """The GPU ids this process may hand out, as ``CUDA_VISIBLE_DEVICES`` entries.

    ``gpu_count`` is what CUDA counts here (which already honours the parent's
    ``CUDA_VISIBLE_DEVICES``): with that variable set, its first ``gpu_count`` entries (ids or
    UUIDs); otherwise ``0 .. gpu_count - 1``.
    """
    parent = environ.get("CUDA_VISIBLE_DEVICES")
    if parent is None:
        return [str(i) for i in range(gpu_count)]
    entries = [e.strip() for e in parent.split(",") if e.strip()]
    return entries[:gpu_count]


def device_slots(
    settings: LocalSettings, environ: Mapping[str, str], gpu_count: int
) -> list[list[str]]:
    """Slot -> the ``CUDA_VISIBLE_DEVICES`` entries it owns (empty lists: CPU slots).

    ``sweep.local.devices`` are positions in the GPUs this process sees (default ``0 .. N-1``);
    a position beyond them is a :class:`ConfigError` naming the setting.
    """
    n, per = settings.effective_concurrency, settings.num_devices_per_proxy
    if per == 0:
        return [[] for _ in range(n)]
    visible = visible_gpus(environ, gpu_count)
    wanted: Sequence[int] = settings.devices or range(n * per)
    seen = (
        f"CUDA_VISIBLE_DEVICES={environ['CUDA_VISIBLE_DEVICES']!r}"
        if "CUDA_VISIBLE_DEVICES" in environ
        else "no CUDA_VISIBLE_DEVICES"
    )
    beyond = [d for d in wanted if d >= len(visible)]
    if beyond:
        what = (
            f"sweep.local.devices lists {list(settings.devices)}"
            if settings.devices
            else f"sweep.local.num_concurrent {settings.num_concurrent} x num_devices_per_proxy "
            f"{per} needs {n * per} GPU(s)"
        )
        raise ConfigError(
            f"{what}, but this process sees {len(visible)} GPU(s) ({seen}, {gpu_count} counted "
            "by CUDA); lower sweep.local.num_concurrent, fix sweep.local.devices, or set "
            "num_devices_per_proxy: 0 to train on the CPU"
        )
    return [[visible[d] for d in wanted[i * per : (i + 1) * per]] for i in range(n)]


def cuda_device_count() -> int:
    """GPUs CUDA sees from this process (torch is imported only when a sweep asks for GPUs)."""
    import torch

    return int(torch.cuda.device_count())


class LocalLauncher:
    """Child processes, at most ``sweep.local.num_concurrent`` at once."""

    rounds = False

    def __init__(self, plan: SweepPlan) -> None:
        self.settings = plan.settings.local
        self._procs: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
        self._changed = threading.Event()
        count = cuda_device_count() if self.settings.num_devices_per_proxy else 0
        # slot -> the CUDA_VISIBLE_DEVICES entries it owns (empty on the CPU)
        self._slots = device_slots(self.settings, os.environ, count)

    def capacity(self) -> int | None:
        """The number of slots."""
        return len(self._slots)

    def _free_slot(self) -> int:
        used = {slot for _, slot in self._procs.values()}
        for i in range(len(self._slots)):
            if i not in used:
                return i
        raise AssertionError("submit called with no free slot")

    def _env(self, slot: int) -> dict[str, str]:
        env = dict(os.environ)
        # An empty list hides every GPU: a CPU slot must not land on cuda:0 with device auto.
        env["CUDA_VISIBLE_DEVICES"] = ",".join(self._slots[slot])
        env[PARENT_PID_ENV] = str(os.getpid())
        return env

    def preview(self, plan: SweepPlan, mixture_ids: list[str]) -> str:
        """The worker command of each run and the proxy command it runs."""
        lines = [f"local: {len(mixture_ids)} run(s), {len(self._slots)} at a time"]
        for i, mid in enumerate(mixture_ids):
            slot = i % len(self._slots)
            devices = self._slots[slot]
            prefix = f"CUDA_VISIBLE_DEVICES={shlex.quote(','.join(devices))} "
            lines.append(f"  {prefix}{shlex.join(worker_argv(plan, [mid]))}")
            lines.append(f"    runs: {shlex.join(plan.runs[mid].argv)}")
        return "\n".join(lines)

    def submit(self, plan: SweepPlan, mixture_ids: list[str]) -> None:
        """Start one worker per run, each in a free slot."""
        for mid in mixture_ids:
            slot = self._free_slot()
            folder = plan.runs[mid].folder
            try:
                # The worker's own messages (the proxy's go to train.log) land in worker.log.
                with (folder / "worker.log").open("ab") as out:
                    proc = subprocess.Popen(
                        worker_argv(plan, [mid]),
                        env=self._env(slot),
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
            except OSError as exc:
                raise LaunchError(f"could not start the worker of run {mid}: {exc}") from exc
            self._procs[mid] = (proc, slot)
            threading.Thread(target=self._watch, args=(proc,), daemon=True).start()

    def _watch(self, proc: subprocess.Popen[bytes]) -> None:
        proc.wait()
        self._changed.set()

    def in_flight(self, plan: SweepPlan) -> set[str]:
        """Runs whose worker has not exited."""
        for mid in [m for m, (p, _) in self._procs.items() if p.poll() is not None]:
            del self._procs[mid]
        return set(self._procs)

    def wait_for_change(self, timeout: float) -> None:
        """Wake as soon as a worker exits."""
        self._changed.wait(timeout)
        self._changed.clear()

    def close(self) -> None:
        """Stop the workers still running (SIGTERM, then SIGKILL after 30 s): they are processes
        of this sweep. Their runs resume from their checkpoints when the sweep is rerun."""
        for proc, _ in self._procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc, _ in self._procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        self._procs.clear()
