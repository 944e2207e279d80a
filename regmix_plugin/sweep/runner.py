"""``regmix sweep``: train one proxy per mixture of ``mixtures.csv`` through a launcher.

The sweep is planned from the study config (catalogue, mixtures, ``sweep:`` section), its
folder is checked against the config that made it (a fingerprint of the parts that define the
runs), each run's folder gets its blend, resolved config and command, and then the launcher
starts a worker per unfinished run. While waiting, runs that fail are retried up to
``sweep.num_retries`` times, then reported with their exit code and the tail of their log.
Killing the sweep at any moment loses nothing finished: a rerun skips runs with ``DONE`` and
relaunches the rest (a proxy resumes from its checkpoint).
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import sys
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from regmix_plugin.config import to_dict
from regmix_plugin.errors import ConfigError, DataError
from regmix_plugin.fingerprint import fingerprint
from regmix_plugin.io import atomic_write_json, atomic_write_text
from regmix_plugin.layout import (
    BLEND_FILE,
    COMMAND_FILE,
    DONE_FILE,
    MIXTURES_FILE,
    SWEEP_FILE,
    SWEEP_STUDY_FILE,
    seeds_file,
    sweep_run_folder,
)
from regmix_plugin.sweep.config import SweepConfig
from regmix_plugin.sweep.registry import LAYOUT_VERSION, SweepStatus, read_json, sweep_status
from regmix_plugin.tables import Table, check_weights_table, read_table, write_table

log = logging.getLogger(__name__)

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass
class RunSpec:
    """One proxy run: its mixture and the command that trains it."""

    mixture_id: str
    weights: dict[str, float]
    folder: Path
    argv: list[str]
    seed: int = 0
    """The proxy seed of this run (``{seed}``): the study's proxy seed plus the row's offset."""
    harness_argv: list[str] | None = None
    """``sweep.harness_command`` rendered for this run (None: no harness after training)."""


@dataclass
class SweepPlan:
    """Everything a launcher needs: the folders, the settings and one spec per run."""

    sweep_dir: Path
    """The sweep folder."""
    cwd: Path
    """Where each proxy command runs (the config file's folder)."""
    source: Path
    """The config file the study came from (for messages)."""
    settings: SweepConfig
    """The ``sweep`` section."""
    domains: list[str]
    """Catalogue order: the columns of the sweep's mixtures table."""
    mixtures: Table
    """The mixtures this sweep trains, in catalogue column order."""
    runs: dict[str, RunSpec]
    """One spec per mixture id."""
    env: dict[str, str]
    """Environment variables of every proxy."""
    fingerprint: str
    """Hash of ``description``: a sweep folder holds runs of one fingerprint only."""
    description: dict[str, Any]
    """What defines the runs (domains, data, proxy settings, command)."""
    study_text: str
    """The resolved study (YAML) every proxy reads (``{config}``)."""
    seed_offsets: dict[str, int] = field(default_factory=dict)
    """Replicate runs: row id -> offset of its proxy seed (written beside the sweep's mixtures
    table, where ``regmix train-proxy --mixtures`` reads it)."""
    replicate_groups: list[list[str]] = field(default_factory=list)
    """Replicate runs: the rows that share one mixture, one list per mixture."""


@dataclass
class SweepResult:
    """What ``run_sweep`` did: the final status, and the runs that are left failed."""

    status: SweepStatus
    launched: list[str]
    failed: list[str]
    dry_run_text: str = ""

    @property
    def ok(self) -> bool:
        """Every run is done."""
        return self.status.finished


# ---------------------------------------------------------------- settings and checks
def check_mixtures(table: Table, domains: list[str], path: Path) -> None:
    """A mixtures table must have exactly the catalogue's domains, clean rows and ids that can
    name run folders."""
    check_weights_table(table, path, domains=domains)
    for mid in table.ids:
        if not _ID_RE.match(mid):
            raise DataError(
                f"{path}: mixture id {mid!r} cannot name a run folder (use letters, digits, . _ -)"
            )


def _python_prefix(settings: SweepConfig) -> list[str]:
    """``{python}``: the interpreter, or torchrun when a proxy spans several devices."""
    per = {
        "local": settings.local.num_devices_per_proxy,
        "slurm": settings.slurm.num_gpus_per_task,
        "nemo_run": settings.nemo_run.num_gpus_per_node,
    }[settings.launcher]
    if per > 1:
        return [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={per}",
        ]
    return [sys.executable]


def render_command(settings: SweepConfig, values: Mapping[str, str]) -> list[str]:
    """The argv of one run: the template with every value quoted, then split like a shell."""
    quoted = {k: shlex.quote(v) for k, v in values.items()}
    quoted["python"] = shlex.join(_python_prefix(settings))
    return shlex.split(settings.command.format(**quoted))


def render_harness(settings: SweepConfig, values: Mapping[str, str]) -> list[str] | None:
    """The argv of ``sweep.harness_command`` for one run (None when it is unset)."""
    if settings.harness_command is None:
        return None
    quoted = {k: shlex.quote(v) for k, v in values.items()}
    quoted["python"] = shlex.join(_python_prefix(settings))
    return shlex.split(settings.harness_command.format(**quoted))


# ---------------------------------------------------------------- planning
def make_plan(
    *,
    settings: SweepConfig,
    sweep_dir: Path,
    mixtures_path: Path,
    domains: list[str],
    description: Mapping[str, Any],
    study_text: str,
    cwd: Path,
    source: Path,
    base_seed: int = 0,
    seed_offsets: Mapping[str, int] | None = None,
    replicate_groups: Sequence[Sequence[str]] = (),
) -> SweepPlan:
    """Plan a sweep (no file is written).

    ``description`` holds what defines the runs (the proxy settings, the data); with the domains,
    the command and the layout version it makes the sweep's fingerprint. ``study_text`` is the
    resolved study every proxy reads; ``cwd`` where the proxy commands run. ``base_seed`` (the
    proxy seed) plus a row's ``seed_offsets`` entry (0 when absent) is the run's ``{seed}``;
    ``replicate_groups`` the rows that share a mixture (copied beside the sweep's table).
    """
    offsets = dict(seed_offsets or {})
    _check_seed_passing(settings, offsets)
    if not mixtures_path.is_file():
        raise DataError(
            f"mixtures table {str(mixtures_path)!r} does not exist; run `regmix sample CONFIG` "
            "first, or set sweep.mixtures"
        )
    table = read_table(mixtures_path)
    check_mixtures(table, domains, mixtures_path)
    # The sweep's own copy, in catalogue column order, is what the proxies read.
    ordered = Table(table.id_column, list(table.ids), list(domains), table.select(domains))
    threads = str(settings.num_threads_per_proxy)
    env = {
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "PYTHONUNBUFFERED": "1",
        **settings.env,
    }
    runs: dict[str, RunSpec] = {}
    for i, mid in enumerate(ordered.ids):
        folder = sweep_run_folder(sweep_dir, mid)
        values = {
            "config": str(sweep_dir / SWEEP_STUDY_FILE),
            "mixture_id": mid,
            "mixtures": str(sweep_dir / MIXTURES_FILE),
            "run_dir": str(folder),
            "blend": str(folder / BLEND_FILE),
            "threads": threads,
            "seed": str(base_seed + offsets.get(mid, 0)),
        }
        weights = {d: float(w) for d, w in zip(domains, ordered.values[i], strict=True)}
        argv = render_command(settings, values)
        runs[mid] = RunSpec(
            mid,
            weights,
            folder,
            argv,
            base_seed + offsets.get(mid, 0),
            render_harness(settings, values),
        )
    full = {
        "layout": LAYOUT_VERSION,
        "domains": list(domains),
        **description,
        "command": settings.command,
        **({"harness_command": settings.harness_command} if settings.harness_command else {}),
    }
    return SweepPlan(
        sweep_dir=sweep_dir,
        cwd=cwd,
        source=source,
        settings=settings,
        domains=list(domains),
        mixtures=ordered,
        runs=runs,
        env=env,
        fingerprint=fingerprint(to_dict(full)),
        description=full,
        study_text=study_text,
        seed_offsets={k: v for k, v in offsets.items() if k in runs},
        replicate_groups=[list(g) for g in replicate_groups],
    )


def _check_seed_passing(settings: SweepConfig, offsets: Mapping[str, int]) -> None:
    """Replicate runs need their seed: through ``{seed}`` or ``regmix train-proxy``, which reads
    it beside ``--mixtures``. Any other command would train every replicate with one seed."""
    if not any(offsets.values()) or "{seed}" in settings.command:
        return
    if "train-proxy" in settings.command and "{mixtures}" in settings.command:
        return
    raise ConfigError(
        "the mixtures table has replicate runs (sample.num_anchor_mixtures x num_seeds) but "
        "sweep.command passes no {seed}: every replicate would train with the same seed. Add "
        "{seed} to sweep.command (for example `--seed {seed}`)"
    )


# ---------------------------------------------------------------- the sweep folder
def check_fingerprint(plan: SweepPlan, *, force_mix: bool, write: bool) -> None:
    """Refuse a sweep folder made by a different config, unless told to mix them."""
    path = plan.sweep_dir / SWEEP_FILE
    if not path.is_file():
        if write:
            atomic_write_json(
                path,
                {
                    "layout": LAYOUT_VERSION,
                    "fingerprint": plan.fingerprint,
                    "config": str(plan.source),
                    "description": to_dict(plan.description),
                    "mixed_in": [],
                },
            )
        return
    recorded = read_json(path)
    if recorded.get("fingerprint") == plan.fingerprint or plan.fingerprint in recorded.get(
        "mixed_in", []
    ):
        return
    old = recorded.get("description", {})
    new = to_dict(plan.description)
    differ = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if not (force_mix or plan.settings.force_mix):
        raise ConfigError(
            f"sweep folder {plan.sweep_dir} was made by a different config "
            f"({recorded.get('config')}, fingerprint {recorded.get('fingerprint')}; now "
            f"{plan.fingerprint}); these parts differ: {differ}. Its runs would not be comparable "
            "with new ones. Use another run_dir, or pass --force-mix (sweep.force_mix: true) "
            "to mix them anyway"
        )
    log.warning("mixing runs of a different config into %s (differs in %s)", plan.sweep_dir, differ)
    if write:
        recorded.setdefault("mixed_in", []).append(plan.fingerprint)
        atomic_write_json(path, recorded)


def _write_if_changed(path: Path, text: str) -> None:
    try:
        if path.read_text(encoding="utf-8") == text:
            return
    except FileNotFoundError:
        pass
    atomic_write_text(path, text)


def prepare_runs(plan: SweepPlan) -> None:
    """Write the sweep's mixtures and, for each unfinished run, its blend, config and command."""
    plan.sweep_dir.mkdir(parents=True, exist_ok=True)
    mixtures_file = plan.sweep_dir / MIXTURES_FILE
    if mixtures_file.is_file():
        old = read_table(mixtures_file)
        merged_ids = list(old.ids) + [i for i in plan.mixtures.ids if i not in set(old.ids)]
        if merged_ids != list(old.ids) or old.columns != plan.mixtures.columns:
            rows = {i: plan.mixtures.row(i) for i in plan.mixtures.ids}
            if old.columns == plan.mixtures.columns:
                rows.update({i: old.row(i) for i in old.ids if i not in rows})
            keep = [i for i in merged_ids if i in rows]
            write_table(
                mixtures_file,
                Table(plan.mixtures.id_column, keep, plan.mixtures.columns, _stack(rows, keep)),
            )
    else:
        write_table(mixtures_file, plan.mixtures)
    _write_seed_offsets(seeds_file(mixtures_file), plan.seed_offsets, plan.replicate_groups)
    _write_if_changed(plan.sweep_dir / SWEEP_STUDY_FILE, plan.study_text)
    for spec in plan.runs.values():
        if (spec.folder / DONE_FILE).is_file():
            continue
        spec.folder.mkdir(parents=True, exist_ok=True)
        _write_if_changed(
            spec.folder / BLEND_FILE,
            json.dumps({"mixture_id": spec.mixture_id, "weights": spec.weights}, indent=2) + "\n",
        )
        command = {"argv": spec.argv, "env": plan.env, "cwd": str(plan.cwd)}
        if spec.harness_argv is not None:
            command["harness_argv"] = spec.harness_argv
        _write_if_changed(spec.folder / COMMAND_FILE, json.dumps(command, indent=2) + "\n")


def _write_seed_offsets(path: Path, offsets: Mapping[str, int], groups: list[list[str]]) -> None:
    """The sweep's copy of the replicate seeds, merged with earlier rows like its mixtures
    (a group is keyed by its first row, the mixture's own)."""
    old = read_json(path) if path.is_file() else {}
    merged = {**old.get("seed_offsets", {}), **offsets}
    if not merged:
        return
    by_first = {g[0]: list(g) for g in old.get("groups", [])}
    by_first.update({g[0]: list(g) for g in groups})
    text = json.dumps({"seed_offsets": merged, "groups": list(by_first.values())}, indent=2)
    _write_if_changed(path, text + "\n")


def _stack(rows: Mapping[str, Any], ids: list[str]) -> Any:
    import numpy as np

    return np.stack([np.asarray(rows[i], dtype=np.float64) for i in ids])


# ---------------------------------------------------------------- running
Progress = Callable[[SweepStatus], None]


def execute(plan: SweepPlan, *, progress: Progress | None = None) -> SweepResult:
    """Launch every unfinished run and (if ``sweep.wait``) wait, retrying failures."""
    from regmix_plugin.sweep.launchers import get_launcher

    settings = plan.settings
    ids = list(plan.runs)
    max_attempts = 1 + settings.num_retries
    tries: Counter[str] = Counter()
    launched: list[str] = []
    given_up: set[str] = set()
    launcher = get_launcher(plan)
    try:
        while True:
            in_flight = launcher.in_flight(plan)
            status = sweep_status(plan.sweep_dir, ids, concurrency=launcher.capacity())
            records = {r.mixture_id: r for r in status.records}
            todo: list[str] = []
            for mid in ids:
                r = records[mid]
                if r.state in ("done", "running") or mid in in_flight or mid in given_up:
                    continue
                if tries[mid] >= max_attempts:
                    given_up.add(mid)
                    continue
                todo.append(mid)
            if progress is not None:
                progress(status)
            busy = bool(in_flight) or status.counts["running"] > 0
            if not todo and not busy:
                break
            submitted = False
            if todo and not (launcher.rounds and in_flight):
                cap = launcher.capacity()
                batch = todo if cap is None else todo[: max(0, cap - len(in_flight))]
                if batch:
                    launcher.submit(plan, batch)
                    for mid in batch:
                        tries[mid] += 1
                        if mid not in launched:
                            launched.append(mid)
                    submitted = True
                    if not settings.wait:
                        break
            if not submitted:
                launcher.wait_for_change(settings.poll_interval_s)
    finally:
        if settings.wait:
            launcher.close()
    status = sweep_status(plan.sweep_dir, ids)
    failed = [r.mixture_id for r in status.records if r.state in ("failed", "pending")]
    if not settings.wait:
        failed = []
    return SweepResult(status, launched, failed)


def dry_run_text(plan: SweepPlan) -> str:
    """What the sweep would launch (settings, folder, the launcher's preview); launches nothing."""
    from regmix_plugin.sweep.launchers import get_launcher

    todo = [m for m in plan.runs if not (plan.runs[m].folder / DONE_FILE).is_file()]
    return "\n".join(
        [
            f"# sweep folder: {plan.sweep_dir} (fingerprint {plan.fingerprint})",
            f"# {len(plan.runs) - len(todo)} of {len(plan.runs)} run(s) done; would launch:",
            get_launcher(plan).preview(plan, todo) if todo else "(nothing to launch)",
        ]
    )


def run_sweep(
    plan: SweepPlan, *, force_mix: bool = False, progress: Progress | None = None
) -> SweepResult:
    """Check the sweep folder against the plan, write the runs' files, launch and (with
    ``sweep.wait``) wait, retrying failures."""
    check_fingerprint(plan, force_mix=force_mix, write=True)
    prepare_runs(plan)
    return execute(plan, progress=progress)
