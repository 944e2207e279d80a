"""Launcher ``slurm``: one ``sbatch`` job array per round, one array task per run.

Each round writes ``slurm/array-<k>.sh`` (the batch script) and ``slurm/array-<k>.ids`` (task
index -> mixture id) into the sweep folder and submits it with ``sbatch --parsable``; the job id
goes into ``slurm/jobs.json`` and each run's ``submitted.json``. Runs are followed with
``squeue`` (no accounting database needed) and the run folders' markers: a task that left the
queue without ``DONE`` failed, and is resubmitted in the next round while retries are left. A
rerun of ``regmix sweep`` adopts the arrays still queued instead of submitting them twice.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from regmix_plugin.errors import LaunchError
from regmix_plugin.io import atomic_write_json, atomic_write_text
from regmix_plugin.layout import SUBMITTED_FILE
from regmix_plugin.sweep.launchers import cpu_only_env_line
from regmix_plugin.sweep.registry import read_json, run_folder

if TYPE_CHECKING:
    from regmix_plugin.sweep.runner import SweepPlan

JOBS_FILE = "jobs.json"


class SlurmLauncher:
    """Job arrays through ``sbatch``, followed through ``squeue``."""

    rounds = True

    def __init__(self, plan: SweepPlan) -> None:
        self.settings = plan.settings.slurm
        self.folder = plan.sweep_dir / "slurm"
        self._squeue_failures = 0

    def capacity(self) -> int | None:
        """No limit here: the array's ``%N`` and the cluster decide."""
        return None

    # ---------------------------------------------------------------- the batch script
    def cpus_per_task(self, plan: SweepPlan) -> int:
        """``--cpus-per-task``: the setting, else the proxy's threads times its ranks."""
        s = self.settings
        if s.num_cpus_per_task is not None:
            return s.num_cpus_per_task
        return max(1, s.num_gpus_per_task) * plan.settings.num_threads_per_proxy

    def script(self, plan: SweepPlan, ids_file: Path, num_tasks: int) -> str:
        """The ``sbatch`` script of one array over ``num_tasks`` runs."""
        s = self.settings
        limit = f"%{s.num_array_concurrent}" if s.num_array_concurrent else ""
        opts = [
            f"--job-name={s.job_name}",
            f"--array=0-{num_tasks - 1}{limit}",
            f"--output={self.folder / 'logs' / '%A_%a.out'}",
            "--ntasks=1",
            f"--cpus-per-task={self.cpus_per_task(plan)}",
            f"--time={s.time}",
        ]
        if s.partition:
            opts.append(f"--partition={s.partition}")
        if s.account:
            opts.append(f"--account={s.account}")
        if s.mem:
            opts.append(f"--mem={s.mem}")
        if s.num_gpus_per_task:
            opts.append(f"--gres=gpu:{s.num_gpus_per_task}")
        opts += [line.strip() for line in s.extra_sbatch_lines]
        worker = [
            shlex.quote(sys.executable),
            "-m",
            "regmix_plugin.sweep.worker",
            shlex.quote(str(plan.sweep_dir)),
            "--task-file",
            shlex.quote(str(ids_file)),
            "--index",
            '"$SLURM_ARRAY_TASK_ID"',
        ]
        lines = [
            "#!/bin/bash",
            f"# regmix sweep of {plan.sweep_dir}: one task per mixture id in {ids_file.name}",
            *[f"#SBATCH {o}" for o in opts],
            "set -eo pipefail",
            *cpu_only_env_line(plan.settings),
            *s.setup_lines,
            f"cd {shlex.quote(str(plan.cwd))}",
            "exec " + " ".join(worker),
            "",
        ]
        return "\n".join(lines)

    def _next_round(self) -> int:
        existing = [p.stem for p in self.folder.glob("array-*.sh")]
        nums = [int(s.split("-", 1)[1]) for s in existing if s.split("-", 1)[1].isdigit()]
        return max(nums, default=-1) + 1

    def preview(self, plan: SweepPlan, mixture_ids: list[str]) -> str:
        """The sbatch command and script that would be submitted."""
        ids_file = self.folder / f"array-{self._next_round()}.ids"
        script = self.script(plan, ids_file, len(mixture_ids))
        return "\n".join(
            [
                f"slurm: {len(mixture_ids)} run(s) in one array: {self.settings.sbatch} --parsable "
                f"{ids_file.with_suffix('.sh')}",
                f"--- {ids_file.name}: " + " ".join(mixture_ids),
                f"--- {ids_file.with_suffix('.sh').name}",
                script,
                "--- each task runs the worker, which runs the proxy:",
                *[f"  {mid}: {shlex.join(plan.runs[mid].argv)}" for mid in mixture_ids],
            ]
        )

    # ---------------------------------------------------------------- submit
    def _sbatch_path(self) -> str:
        found = shutil.which(self.settings.sbatch)
        if found is None:
            raise LaunchError(
                f"sbatch not found: {self.settings.sbatch!r} is not an executable on PATH. Run the "
                "sweep on a Slurm login node, set sweep.slurm.sbatch to its path, or choose "
                "sweep.launcher: local"
            )
        return found

    def submit(self, plan: SweepPlan, mixture_ids: list[str]) -> None:
        """Write the script and submit the array; record the job id."""
        sbatch = self._sbatch_path()
        k = self._next_round()
        (self.folder / "logs").mkdir(parents=True, exist_ok=True)
        ids_file = self.folder / f"array-{k}.ids"
        script_file = ids_file.with_suffix(".sh")
        atomic_write_text(ids_file, "\n".join(mixture_ids) + "\n")
        atomic_write_text(script_file, self.script(plan, ids_file, len(mixture_ids)))
        try:
            proc = subprocess.run(
                [sbatch, "--parsable", str(script_file)],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise LaunchError(f"{sbatch} {script_file} could not run: {exc}") from exc
        if proc.returncode != 0:
            raise LaunchError(
                f"sbatch rejected {script_file} (exit code {proc.returncode}): "
                f"{(proc.stderr or proc.stdout).strip()}. Fix the sweep.slurm settings "
                "(partition, account, time, extra_sbatch_lines) and rerun `regmix sweep`"
            )
        job_id = proc.stdout.strip().split(";")[0]
        if not job_id.isdigit():
            raise LaunchError(f"sbatch printed {proc.stdout.strip()!r}, expected a job id")
        now = time.time()
        jobs = self._jobs()
        jobs.append(
            {"job_id": job_id, "ids_file": ids_file.name, "ids": mixture_ids, "submitted_at": now}
        )
        atomic_write_json(self.folder / JOBS_FILE, jobs)
        for i, mid in enumerate(mixture_ids):
            atomic_write_json(
                run_folder(plan.sweep_dir, mid) / SUBMITTED_FILE,
                {"launcher": "slurm", "job_id": f"{job_id}_{i}", "submitted_at": now},
            )

    def _jobs(self) -> list[dict[str, Any]]:
        path = self.folder / JOBS_FILE
        return list(read_json(path)) if path.is_file() else []

    # ---------------------------------------------------------------- follow
    def queued_tasks(self) -> set[tuple[str, str]] | None:
        """(array job id, task id) of our arrays still in squeue; None when squeue failed."""
        squeue = shutil.which(self.settings.squeue)
        if squeue is None:
            raise LaunchError(
                f"squeue not found: {self.settings.squeue!r} is not on PATH; set sweep.slurm.squeue"
            )
        ours = {j["job_id"] for j in self._jobs()}
        if not ours:
            return set()
        try:
            proc = subprocess.run(
                [squeue, "-h", "-r", "-j", ",".join(sorted(ours)), "-o", "%F|%K|%T"],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        if proc.returncode != 0:
            # squeue exits 1 ("Invalid job id") once every job of the list has been purged.
            if "Invalid job id" in proc.stderr:
                return set()
            return None
        out: set[tuple[str, str]] = set()
        for line in proc.stdout.splitlines():
            parts = line.strip().split("|")
            if len(parts) == 3 and parts[0] in ours:
                out.add((parts[0], parts[1]))
        return out

    def in_flight(self, plan: SweepPlan) -> set[str]:
        """Runs whose array task is still pending or running in Slurm."""
        tasks = self.queued_tasks()
        if tasks is None:
            # squeue hiccup: assume nothing ended rather than resubmitting live work.
            self._squeue_failures += 1
            if self._squeue_failures > 30:
                raise LaunchError("squeue failed 30 times in a row; is slurmctld reachable?")
            return {mid for j in self._jobs() for mid in j["ids"]}
        self._squeue_failures = 0
        live: set[str] = set()
        for job in self._jobs():
            for i, mid in enumerate(job["ids"]):
                if (job["job_id"], str(i)) in tasks:
                    live.add(mid)
        return live

    def wait_for_change(self, timeout: float) -> None:
        """Slurm has no push notifications: sleep."""
        time.sleep(timeout)

    def close(self) -> None:
        """Nothing held: submitted arrays go on, and a rerun adopts them."""
