"""Launcher ``nemo_run``: a NeMo-Run experiment of ``run.Script`` tasks per round.

With ``executor: local`` (``run.LocalExecutor``) the runs are shared out over
``num_concurrent`` lanes, one task per lane, each lane training its runs one after another
(NeMo-Run starts every task of an experiment at once, so lanes are what bound concurrency).
With ``executor: slurm`` (``run.SlurmExecutor`` over a ``LocalTunnel``; it reads job states
from ``sacct``, so the cluster needs accounting) every run is its own task and Slurm queues
them. Either way each task runs the regmix worker, so markers and retries are the same as with
the other launchers. The experiments are kept under ``<sweep>/nemorun/``.
"""

from __future__ import annotations

import os
import shlex
import threading
import time
from typing import TYPE_CHECKING, Any

from regmix_plugin.errors import LaunchError, require
from regmix_plugin.sweep.launchers import cpu_only_env_line, worker_argv

if TYPE_CHECKING:
    from regmix_plugin.sweep.runner import SweepPlan


class NemoRunLauncher:
    """Runs the workers as the tasks of NeMo-Run experiments (one experiment per round)."""

    rounds = True

    def __init__(self, plan: SweepPlan) -> None:
        self.settings = plan.settings.nemo_run
        self.run = require("nemo_run", extra="nemo-run")
        # Not "nemo_run": NeMo-Run's SlurmExecutor (0.11) rewrites every "/nemo_run" in its
        # sbatch script (its container run folder) to the job folder when no container is used.
        self.base_dir = plan.sweep_dir / "nemorun"
        self._thread: threading.Thread | None = None
        self._ids: set[str] = set()
        self._error: BaseException | None = None

    def capacity(self) -> int | None:
        """No limit here: lanes (local) or Slurm (slurm) bound what runs at once."""
        return None

    def tasks(self, plan: SweepPlan, mixture_ids: list[str]) -> list[tuple[str, list[str]]]:
        """(task name, its runs): lanes for the local executor, one run per task on Slurm."""
        if self.settings.executor == "local":
            n = min(self.settings.num_concurrent, len(mixture_ids))
            lanes = [mixture_ids[i::n] for i in range(n)]
            return [(f"lane-{i}", lane) for i, lane in enumerate(lanes)]
        return [(f"run-{mid}", [mid]) for mid in mixture_ids]

    def _executor(self, plan: SweepPlan) -> Any:
        run, s = self.run, self.settings
        if s.executor == "local":
            return run.LocalExecutor(env_vars={})
        kwargs: dict[str, Any] = {
            "account": s.account,
            "partition": s.partition,
            "time": s.time,
            "nodes": 1,
            "ntasks_per_node": 1,
            # NeMo-Run writes each task's sbatch script under the experiment's folder
            # (<base_dir>/experiments/...) and submits it from <job_dir>/<title>/<id>/: the
            # tunnel's job_dir must be that experiments folder or sbatch finds no script.
            "tunnel": run.LocalTunnel(job_dir=str(self.base_dir / "experiments")),
            "packager": run.Packager(),
        }
        if s.num_gpus_per_node:
            kwargs["gpus_per_node"] = s.num_gpus_per_node
        if s.container_image:
            kwargs["container_image"] = s.container_image
            kwargs["container_mounts"] = list(s.container_mounts)
        return run.SlurmExecutor(**kwargs)

    def lane_devices(self) -> list[list[str]]:
        """Local executor: lane -> its ``CUDA_VISIBLE_DEVICES`` entries, placed as ``local``."""
        from regmix_plugin.sweep.config import LocalSettings
        from regmix_plugin.sweep.launchers.local import cuda_device_count, device_slots

        per = self.settings.num_gpus_per_node
        lanes = LocalSettings(
            num_concurrent=self.settings.num_concurrent, num_devices_per_proxy=per
        )
        return device_slots(lanes, os.environ, cuda_device_count() if per else 0)

    def _script(self, plan: SweepPlan, mixture_ids: list[str], devices: list[str] | None) -> str:
        lines = [f"cd {shlex.quote(str(plan.cwd))}"]
        if devices is not None:  # local executor: this lane's GPUs, or none (the CPU)
            lines.append(f"export CUDA_VISIBLE_DEVICES={shlex.quote(','.join(devices))}")
        else:
            lines += cpu_only_env_line(plan.settings)
        lines.append(f"exec {shlex.join(worker_argv(plan, mixture_ids))}")
        script = "\n".join(lines) + "\n"
        if self.settings.executor == "slurm" and "/nemo_run" in script:
            raise LaunchError(
                "NeMo-Run's SlurmExecutor replaces every '/nemo_run' in a job script with the job "
                f"folder, and this task's script has one:\n{script}Move the study (or python) to "
                "a path without a folder named nemo_run*, or use sweep.launcher: slurm"
            )
        return script

    def scripts(self, plan: SweepPlan, mixture_ids: list[str]) -> list[tuple[str, str]]:
        """(task name, its script) of each task of one experiment."""
        tasks = self.tasks(plan, mixture_ids)
        if self.settings.executor == "local":
            lanes = self.lane_devices()
            return [
                (name, self._script(plan, ids, lanes[i])) for i, (name, ids) in enumerate(tasks)
            ]
        return [(name, self._script(plan, ids, None)) for name, ids in tasks]

    def preview(self, plan: SweepPlan, mixture_ids: list[str]) -> str:
        """The experiment's tasks and the script of each."""
        lines = [
            f"nemo_run: experiment {self.settings.experiment_name!r} with executor "
            f"{self.settings.executor!r} under {self.base_dir}"
        ]
        for name, script in self.scripts(plan, mixture_ids):
            lines.append(f"  task {name}: run.Script(inline=...) with")
            lines += [f"    {line}" for line in script.splitlines()]
        return "\n".join(lines)

    def submit(self, plan: SweepPlan, mixture_ids: list[str]) -> None:
        """Build the experiment and run it in a background thread (NeMo-Run's run() blocks)."""
        if self._thread is not None and self._thread.is_alive():
            raise AssertionError("submit while an experiment is still running")
        self._error = None
        scripts = self.scripts(plan, mixture_ids)
        executor = self._executor(plan)
        self.base_dir.mkdir(parents=True, exist_ok=True)
        run = self.run

        def _go() -> None:
            try:
                with run.Experiment(
                    self.settings.experiment_name,
                    executor=executor,
                    base_dir=str(self.base_dir),
                    clean_mode=True,
                    enable_goodbye_message=False,
                    skip_status_at_exit=True,
                    log_level="WARN",
                ) as exp:
                    for name, script in scripts:
                        exp.add(run.Script(inline=script), name=name)
                    exp.run(detach=False)
            except BaseException as exc:  # reported by in_flight on the driver's thread
                self._error = exc

        self._ids = set(mixture_ids)
        self._thread = threading.Thread(target=_go, name="nemo-run-experiment", daemon=True)
        self._thread.start()

    def in_flight(self, plan: SweepPlan) -> set[str]:
        """The runs of the experiment while it runs."""
        if self._error is not None:
            err, self._error = self._error, None
            raise LaunchError(f"NeMo-Run could not run the experiment: {err}") from err
        if self._thread is not None and self._thread.is_alive():
            return set(self._ids)
        return set()

    def wait_for_change(self, timeout: float) -> None:
        """Wake when the experiment ends, or after ``timeout``."""
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout)
        else:
            time.sleep(timeout)

    def close(self) -> None:
        """Nothing to release (the experiment thread is a daemon); started tasks are left to
        NeMo-Run. On Slurm they go on and a rerun adopts their runs; a rerun finds a run that is
        still going by its lock and leaves it alone."""
