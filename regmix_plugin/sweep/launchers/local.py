"""Launcher ``local``: N workers as child processes of ``regmix sweep`` on this machine.

Each worker gets ``SIGKILL`` when the sweep process dies (Linux ``PR_SET_PDEATHSIG``), and the
worker passes that on to its proxy, so killing the sweep never leaves proxies running unseen; a
rerun resumes them. With ``num_devices_per_proxy`` set, each slot owns its devices
(``CUDA_VISIBLE_DEVICES``) and a proxy needing more than one is started with torchrun.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import threading
from typing import TYPE_CHECKING

from regmix_plugin.errors import LaunchError
from regmix_plugin.sweep.launchers import worker_argv
from regmix_plugin.sweep.worker import _die_with_parent

if TYPE_CHECKING:
    from regmix_plugin.sweep.runner import SweepPlan


class LocalLauncher:
    """Child processes, at most ``sweep.local.num_concurrent`` at once."""

    rounds = False

    def __init__(self, plan: SweepPlan) -> None:
        self.settings = plan.settings.local
        self._procs: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
        self._changed = threading.Event()
        n = self.settings.effective_concurrency
        per = self.settings.num_devices_per_proxy
        devices = self.settings.devices or list(range(n * per))
        # slot -> the devices it owns (empty on the CPU)
        self._slots: list[list[int]] = [devices[i * per : (i + 1) * per] for i in range(n)]

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
        if self._slots[slot]:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(d) for d in self._slots[slot])
        return env

    def preview(self, plan: SweepPlan, mixture_ids: list[str]) -> str:
        """The worker command of each run and the proxy command it runs."""
        lines = [f"local: {len(mixture_ids)} run(s), {len(self._slots)} at a time"]
        for i, mid in enumerate(mixture_ids):
            slot = i % len(self._slots)
            devices = self._slots[slot]
            prefix = f"CUDA_VISIBLE_DEVICES={','.join(map(str, devices))} " if devices else ""
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
                        preexec_fn=_die_with_parent,
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
        """Stop the workers still running (the sweep is leaving); their runs resume on rerun."""
        for proc, _ in self._procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc, _ in self._procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        self._procs.clear()
