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

import contextlib
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


class _Slot:
    """One slot's serving worker and the run it is on."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.current: str | None = None
        """The run handed to the worker and not yet answered."""


class LocalLauncher:
    """Child processes, at most ``sweep.local.num_concurrent`` at once: one serving worker per
    slot (``python -m regmix_plugin.sweep.worker SWEEP_DIR --serve``), handed one run at a time
    on its standard input. With ``sweep.local.preload`` (the default) a CPU slot's worker forks
    its proxies from an interpreter that has imported torch and megatron-core once
    (:mod:`regmix_plugin.sweep.worker`)."""

    rounds = False

    def __init__(self, plan: SweepPlan) -> None:
        self.settings = plan.settings.local
        self._lock = threading.Lock()
        self._changed = threading.Event()
        count = cuda_device_count() if self.settings.num_devices_per_proxy else 0
        # slot -> the CUDA_VISIBLE_DEVICES entries it owns (empty on the CPU)
        self._slots = device_slots(self.settings, os.environ, count)
        self._workers: list[_Slot | None] = [None] * len(self._slots)

    def capacity(self) -> int | None:
        """The number of slots."""
        return len(self._slots)

    def _free_slot(self) -> int:
        with self._lock:
            for i, worker in enumerate(self._workers):
                if worker is None or worker.current is None:
                    return i
        raise AssertionError("submit called with no free slot")

    def _env(self, slot: int) -> dict[str, str]:
        env = dict(os.environ)
        # An empty list hides every GPU: a CPU slot must not land on cuda:0 with device auto.
        env["CUDA_VISIBLE_DEVICES"] = ",".join(self._slots[slot])
        env[PARENT_PID_ENV] = str(os.getpid())
        return env

    def _argv(self, plan: SweepPlan) -> list[str]:
        """The serving worker's command line."""
        preload = ["--preload"] if self.settings.preload else []
        return [*worker_argv(plan, []), "--serve", *preload]

    def preview(self, plan: SweepPlan, mixture_ids: list[str]) -> str:
        """The serving worker of each slot, and the proxy command of each run."""
        lines = [f"local: {len(mixture_ids)} run(s), {len(self._slots)} at a time"]
        for slot, devices in enumerate(self._slots):
            prefix = f"CUDA_VISIBLE_DEVICES={shlex.quote(','.join(devices))} "
            lines.append(f"  slot {slot}: {prefix}{shlex.join(self._argv(plan))}")
        for mid in mixture_ids:
            lines.append(f"    {mid} runs: {shlex.join(plan.runs[mid].argv)}")
        return "\n".join(lines)

    def _start(self, plan: SweepPlan, slot: int) -> _Slot:
        """Start the serving worker of ``slot`` (its messages before a run go to stderr)."""
        try:
            proc = subprocess.Popen(
                self._argv(plan),
                env=self._env(slot),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
        except OSError as exc:
            raise LaunchError(f"could not start the sweep worker of slot {slot}: {exc}") from exc
        worker = _Slot(proc)
        threading.Thread(target=self._read_answers, args=(worker,), daemon=True).start()
        return worker

    def submit(self, plan: SweepPlan, mixture_ids: list[str]) -> None:
        """Hand each run to the worker of a free slot (starting it when it is not running)."""
        for mid in mixture_ids:
            slot = self._free_slot()
            worker = self._workers[slot]
            if worker is None or worker.proc.poll() is not None:
                worker = self._workers[slot] = self._start(plan, slot)
            with self._lock:
                worker.current = mid
            try:
                assert worker.proc.stdin is not None
                worker.proc.stdin.write(f"{mid}\n".encode())
                worker.proc.stdin.flush()
            except OSError as exc:  # the worker died between the poll and the write
                with self._lock:
                    worker.current = None
                raise LaunchError(f"could not hand run {mid} to its sweep worker: {exc}") from exc

    def _read_answers(self, worker: _Slot) -> None:
        """A worker's answers (``<id> <status>``); its exit ends the run it was on."""
        assert worker.proc.stdout is not None
        for line in worker.proc.stdout:
            with self._lock:
                if line.split()[:1] == [(worker.current or "").encode()]:
                    worker.current = None
            self._changed.set()
        worker.proc.wait()
        with self._lock:
            worker.current = None
        self._changed.set()

    def in_flight(self, plan: SweepPlan) -> set[str]:
        """Runs handed to a worker and not yet answered."""
        with self._lock:
            return {w.current for w in self._workers if w is not None and w.current is not None}

    def wait_for_change(self, timeout: float) -> None:
        """Wake as soon as a run ends."""
        self._changed.wait(timeout)
        self._changed.clear()

    def close(self) -> None:
        """Stop the workers (their input closed; SIGTERM to those on a run, SIGKILL after 30 s):
        they are processes of this sweep. Their runs resume from their checkpoints on rerun."""
        workers = [w for w in self._workers if w is not None]
        for w in workers:
            with contextlib.suppress(OSError):
                assert w.proc.stdin is not None
                w.proc.stdin.close()
            if w.current is not None and w.proc.poll() is None:
                w.proc.terminate()
        for w in workers:
            try:
                w.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait()
        self._workers = [None] * len(self._slots)
