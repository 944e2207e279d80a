"""The ``sweep:`` section of a study config: which launcher trains the proxies, and how.

Example::

    sweep:
      launcher: slurm            # local | nemo_run | slurm
      num_retries: 2             # extra attempts of a failed run within one `regmix sweep`
      num_threads_per_proxy: 4   # OMP_NUM_THREADS of each proxy
      env: {HF_HOME: /scratch/hf}
      slurm:
        partition: batch
        account: my-account
        time: "02:00:00"
        num_gpus_per_task: 1
        num_array_concurrent: 16   # the %16 of --array=0-511%16

Built with :func:`regmix_plugin.config.from_dict`; unknown keys and wrong types are errors naming
the dotted key, bad values are rejected in ``__post_init__``.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field
from pathlib import Path

#: Placeholders a ``sweep.command`` template may use.
COMMAND_FIELDS = (
    "python",
    "config",
    "mixture_id",
    "mixtures",
    "run_dir",
    "blend",
    "threads",
    "seed",
)

#: The proxy command each run executes (``regmix train-proxy``), as a template.
DEFAULT_COMMAND = (
    "{python} -m regmix_plugin train-proxy {config} --mixture {mixture_id} "
    "--mixtures {mixtures} --out {run_dir}"
)

#: The launchers ``sweep.launcher`` may name (their factories: ``sweep.launchers.LAUNCHERS``).
LAUNCHER_NAMES = ("local", "nemo_run", "slurm")

_SLURM_TIME = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$")


def _check_count(name: str, value: int, minimum: int) -> None:
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


@dataclass(kw_only=True, frozen=True)
class LocalSettings:
    """``sweep.local``: proxies run as child processes of ``regmix sweep`` on this machine."""

    num_concurrent: int = 1
    """How many proxies run at the same time."""

    num_devices_per_proxy: int = 0
    """Accelerators per proxy: 0 runs on the CPU; above 1 each proxy is started with torchrun."""

    devices: list[int] = field(default_factory=list)
    """Device ordinals to share out (``CUDA_VISIBLE_DEVICES``); empty: 0 .. N-1 as needed."""

    preload: bool = True
    """CPU slots: fork each proxy of the built-in ``train-proxy`` command from a worker that has
    imported torch and megatron-core once, instead of a fresh interpreter per proxy."""

    def __post_init__(self) -> None:
        _check_count("sweep.local.num_concurrent", self.num_concurrent, 1)
        _check_count("sweep.local.num_devices_per_proxy", self.num_devices_per_proxy, 0)
        if self.devices and self.num_devices_per_proxy == 0:
            raise ValueError(
                "sweep.local.devices is set but sweep.local.num_devices_per_proxy is 0; "
                "set num_devices_per_proxy to the devices each proxy needs"
            )
        if self.devices and len(self.devices) < self.num_devices_per_proxy:
            raise ValueError(
                f"sweep.local.devices lists {len(self.devices)} device(s), fewer than "
                f"num_devices_per_proxy={self.num_devices_per_proxy}"
            )
        if len(set(self.devices)) != len(self.devices):
            raise ValueError(f"sweep.local.devices has duplicates: {self.devices}")

    @property
    def effective_concurrency(self) -> int:
        """Concurrent proxies, limited by the devices listed (if any)."""
        if self.devices and self.num_devices_per_proxy:
            return max(1, min(self.num_concurrent, len(self.devices) // self.num_devices_per_proxy))
        return self.num_concurrent


@dataclass(kw_only=True, frozen=True)
class SlurmSettings:
    """``sweep.slurm``: one ``sbatch`` job array per round, one array task per mixture."""

    partition: str | None = None
    """``--partition``; None leaves it to the cluster's default partition."""

    account: str | None = None
    """``--account``; None leaves it to the user's default account."""

    time: str = "01:00:00"
    """``--time`` limit of each proxy, in Slurm's format (``HH:MM:SS``, ``D-HH:MM``)."""

    num_cpus_per_task: int | None = None
    """``--cpus-per-task`` of each proxy; None: ``sweep.num_threads_per_proxy`` per rank, that is
    times ``num_gpus_per_task`` when the task has GPUs (one rank per GPU), else once."""

    num_gpus_per_task: int = 0
    """``--gres=gpu:N`` of each proxy; above 1 the proxy is started with torchrun."""

    mem: str | None = None
    """``--mem`` of each proxy (for example ``16G``); None: the partition's default."""

    num_array_concurrent: int = 0
    """The ``%N`` limit of the array (tasks running at once); 0: no limit."""

    job_name: str = "regmix-proxy"
    """``--job-name`` of the arrays."""

    extra_sbatch_lines: list[str] = field(default_factory=list)
    """More ``#SBATCH`` options, without the prefix (for example ``--qos=low``)."""

    setup_lines: list[str] = field(default_factory=list)
    """Shell lines run before the proxy in each task (``module load``, ``source venv``)."""

    sbatch: str = "sbatch"
    """The ``sbatch`` executable (a name on PATH or a path)."""

    squeue: str = "squeue"
    """The ``squeue`` executable, used to follow the submitted arrays."""

    def __post_init__(self) -> None:
        if self.num_cpus_per_task is not None:
            _check_count("sweep.slurm.num_cpus_per_task", self.num_cpus_per_task, 1)
        _check_count("sweep.slurm.num_gpus_per_task", self.num_gpus_per_task, 0)
        _check_count("sweep.slurm.num_array_concurrent", self.num_array_concurrent, 0)
        if not _SLURM_TIME.match(self.time):
            raise ValueError(
                f"sweep.slurm.time {self.time!r} is not a Slurm time limit; use HH:MM:SS or D-HH:MM"
            )
        for line in self.extra_sbatch_lines:
            if "\n" in line or not line.strip().startswith("-"):
                raise ValueError(
                    f"sweep.slurm.extra_sbatch_lines: {line!r} must be one sbatch option "
                    "such as '--qos=low' (the '#SBATCH ' prefix is added)"
                )
        if not self.job_name or any(c.isspace() for c in self.job_name):
            raise ValueError(f"sweep.slurm.job_name {self.job_name!r} must be one word")


@dataclass(kw_only=True, frozen=True)
class NemoRunSettings:
    """``sweep.nemo_run``: a NeMo-Run experiment of script tasks."""

    executor: str = "local"
    """``local`` (``run.LocalExecutor``) or ``slurm`` (``run.SlurmExecutor``, needs sacct)."""

    num_concurrent: int = 1
    """Local executor: tasks (lanes) at once; each lane trains its share of the mixtures in turn.
    With ``num_gpus_per_node`` set, lane i owns GPUs i*N .. i*N+N-1 of the machine (its
    ``CUDA_VISIBLE_DEVICES``), placed as by ``sweep.local``."""

    experiment_name: str = "regmix-sweep"
    """Title of the NeMo-Run experiments (they are kept under the sweep folder)."""

    account: str | None = None
    """Slurm executor: ``account`` (NeMo-Run requires it)."""

    partition: str | None = None
    """Slurm executor: ``partition``."""

    time: str = "01:00:00"
    """Slurm executor: time limit of each proxy."""

    num_gpus_per_node: int = 0
    """GPUs of each proxy: ``gpus_per_node`` of the Slurm executor, the lane's share of the
    machine's GPUs with the local executor; 0 trains on the CPU; above 1 the proxy uses
    torchrun."""

    container_image: str | None = None
    """Slurm executor: container image (pyxis), or None to run on the host."""

    container_mounts: list[str] = field(default_factory=list)
    """Slurm executor: container mounts ``src:dst``."""

    def __post_init__(self) -> None:
        if self.executor not in ("local", "slurm"):
            raise ValueError(
                f"sweep.nemo_run.executor {self.executor!r} is not supported; "
                "use 'local' or 'slurm'"
            )
        _check_count("sweep.nemo_run.num_concurrent", self.num_concurrent, 1)
        _check_count("sweep.nemo_run.num_gpus_per_node", self.num_gpus_per_node, 0)
        if self.executor == "slurm" and not self.account:
            raise ValueError(
                "sweep.nemo_run.account is required with executor 'slurm' (NeMo-Run's "
                "SlurmExecutor needs it); set it, or use launcher 'slurm' of regmix itself"
            )
        if not _SLURM_TIME.match(self.time):
            raise ValueError(f"sweep.nemo_run.time {self.time!r} is not a Slurm time limit")


@dataclass(kw_only=True, frozen=True)
class CollectSettings:
    """``sweep.collect``: how ``regmix collect`` reads runs, including runs made outside regmix.

    Runs launched by a team's own Megatron-LM or NeMo scripts are read from their logs
    (Megatron-LM's ``validation[-<name>] loss at ... | <key> value: <x> |`` lines) and TensorBoard
    event files. Each
    source gives a *dataset name* (from a tag or a log line), mapped to a domain by
    ``dataset_names`` (identity for names not listed), and stored as ``val_loss/<domain>``.
    """

    log_globs: list[str] = field(default_factory=lambda: ["*.log", "*.out", "*.txt"])
    """File patterns, inside each run folder (recursively), parsed as training logs."""

    tensorboard: bool = True
    """Also read TensorBoard event files (``events.out.tfevents.*``) under each run folder."""

    tag_patterns: list[str] = field(
        default_factory=lambda: [
            r"^lm loss validation-(?P<dataset>.+?)(?<! vs samples)(?<! ppl)$",
            r"^val_loss/(?P<dataset>.+)$",
            r"^val_loss_(?P<dataset>.+)$",
        ]
    )
    """Regular expressions over TensorBoard tags; group ``dataset`` names the validation set.
    The first is Megatron-LM's ``lm loss validation-<name>`` (``--multiple-validation-sets``)."""

    log_loss_key: str = "lm loss"
    """The loss key in Megatron log lines (``<key> value: x``)."""

    dataset_names: dict[str, str] = field(default_factory=dict)
    """Dataset name (tag/log) -> domain, for example ``{dataloader_idx_0: arxiv}``."""

    harness_results: bool = True
    """Also read lm-evaluation-harness ``results_*.json`` files under each run folder into
    ``eval/<task>/<metric>`` columns (:mod:`regmix_plugin.sweep.harness`)."""

    results: Path | None = None
    """Where ``regmix collect`` writes the table; None: ``<run_dir>/results.csv``."""

    def __post_init__(self) -> None:
        for i, pat in enumerate(self.tag_patterns):
            try:
                compiled = re.compile(pat)
            except re.error as exc:
                raise ValueError(
                    f"sweep.collect pattern {pat!r} is not a valid regex: {exc}"
                ) from exc
            if "dataset" not in compiled.groupindex:
                raise ValueError(
                    f"sweep.collect.tag_patterns[{i}] {pat!r} needs a named group (?P<dataset>...)"
                )
        if not self.log_globs and not self.tensorboard:
            raise ValueError(
                "sweep.collect: log_globs is empty and tensorboard is false; nothing to read"
            )


@dataclass(kw_only=True, frozen=True)
class SweepConfig:
    """The ``sweep:`` section: launcher, retries, environment and per-launcher settings."""

    launcher: str = "local"
    """Launcher name: ``local``, ``nemo_run`` or ``slurm``."""

    command: str = DEFAULT_COMMAND
    """Command template of one proxy run; placeholders: {python}, {config}, {mixture_id},
    {mixtures}, {run_dir}, {blend}, {threads}, {seed} (the run's proxy seed: ``proxy.seed``
    plus the replicate's offset, see ``sample.num_seeds``; ``regmix train-proxy`` finds it
    without {seed}, beside ``--mixtures``)."""

    harness_command: str | None = None
    """Run after each proxy trained successfully (same placeholders as ``command``), in the same
    environment, its output appended to ``train.log``; for example lm-evaluation-harness
    (``lm_eval ... --output_path {run_dir}/lm_eval``), whose ``results_*.json`` ``regmix collect``
    reads into ``eval/<task>/<metric>`` columns. If it fails, the run fails (and is retried)."""

    num_retries: int = 1
    """Extra attempts of a failed run within one ``regmix sweep`` before it is reported failed."""

    num_threads_per_proxy: int = 1
    """``OMP_NUM_THREADS`` (and MKL's) of each proxy."""

    env: dict[str, str] = field(default_factory=dict)
    """Extra environment variables of each proxy."""

    wait: bool = True
    """Wait for the runs (with a progress bar) and retry failures; false: launch and return."""

    poll_interval_s: float = 1.0
    """Seconds between looks at the runs while waiting."""

    force_mix: bool = False
    """Accept a sweep folder made by a different config (same as ``--force-mix``)."""

    mixtures: Path | None = None
    """The mixtures table; None: ``<run_dir>/mixtures.csv`` (written by ``regmix sample``)."""

    local: LocalSettings = field(default_factory=LocalSettings)
    """Settings of launcher ``local``."""

    slurm: SlurmSettings = field(default_factory=SlurmSettings)
    """Settings of launcher ``slurm``."""

    nemo_run: NemoRunSettings = field(default_factory=NemoRunSettings)
    """Settings of launcher ``nemo_run``."""

    collect: CollectSettings = field(default_factory=CollectSettings)
    """Settings of ``regmix collect``."""

    def __post_init__(self) -> None:
        if self.launcher not in LAUNCHER_NAMES:
            raise ValueError(
                f"sweep.launcher {self.launcher!r} is unknown; choose one of {list(LAUNCHER_NAMES)}"
            )
        _check_count("sweep.num_retries", self.num_retries, 0)
        _check_count("sweep.num_threads_per_proxy", self.num_threads_per_proxy, 1)
        if not self.poll_interval_s > 0:
            raise ValueError(f"sweep.poll_interval_s must be > 0, got {self.poll_interval_s}")
        names = _template_fields("sweep.command", self.command)
        if self.harness_command is not None:
            _template_fields("sweep.harness_command", self.harness_command)
        if "run_dir" not in names:
            raise ValueError(
                "sweep.command must pass {run_dir} to the proxy (its output folder, where "
                "metrics.json is written)"
            )
        if not self.wait and (
            self.launcher == "local"
            or (self.launcher == "nemo_run" and self.nemo_run.executor == "local")
        ):
            raise ValueError(
                "sweep.wait: false needs a launcher whose runs outlive `regmix sweep` "
                "(slurm, or nemo_run with executor slurm); set wait: true"
            )
        for key in self.env:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
                raise ValueError(f"sweep.env: {key!r} is not a valid environment variable name")


def _template_fields(key: str, template: str) -> list[str]:
    """The placeholders of the command template ``key`` (``sweep.command``,
    ``sweep.harness_command``): a valid template using only :data:`COMMAND_FIELDS`."""
    try:
        names = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise ValueError(f"{key} {template!r} is not a valid template: {exc}") from exc
    unknown = sorted({n for n in names if n not in COMMAND_FIELDS})
    if unknown:
        raise ValueError(
            f"{key} uses unknown placeholder(s) {unknown}; allowed: {list(COMMAND_FIELDS)}"
        )
    return names
