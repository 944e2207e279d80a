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

import argparse
import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import shlex
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from regmix_plugin.config import from_dict, load_study, resolve_path, to_dict
from regmix_plugin.errors import ConfigError, DataError
from regmix_plugin.io import atomic_write_json, atomic_write_text
from regmix_plugin.sweep.config import SweepConfig
from regmix_plugin.sweep.registry import (
    COMMAND_FILE,
    DONE_FILE,
    LAYOUT_VERSION,
    SWEEP_FILE,
    SweepStatus,
    format_status,
    progress_line,
    read_json,
    run_folder,
    sweep_status,
)
from regmix_plugin.tables import Table, read_table, write_table

log = logging.getLogger(__name__)

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_WEIGHT_TOLERANCE = 1e-6


@dataclass
class RunSpec:
    """One proxy run: its mixture and the command that trains it."""

    mixture_id: str
    weights: dict[str, float]
    folder: Path
    argv: list[str]


@dataclass
class SweepPlan:
    """Everything a launcher needs: the folders, the settings and one spec per run."""

    sweep_dir: Path
    run_dir: Path
    cwd: Path
    config_path: Path
    settings: SweepConfig
    domains: list[str]
    mixtures: Table
    runs: dict[str, RunSpec]
    env: dict[str, str]
    fingerprint: str
    description: dict[str, Any]
    study: dict[str, Any] = field(default_factory=dict)


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
def load_settings(study: Mapping[str, Any]) -> SweepConfig:
    """The ``sweep:`` section as a :class:`SweepConfig`, with paths resolved against the config."""
    settings = from_dict(SweepConfig, study.get("sweep"), "sweep")
    base = study.get("_config_dir", ".")
    changes: dict[str, Any] = {}
    if settings.mixtures is not None:
        changes["mixtures"] = resolve_path(settings.mixtures, base)
    if settings.collect.results is not None:
        changes["collect"] = dataclasses.replace(
            settings.collect, results=resolve_path(settings.collect.results, base)
        )
    return dataclasses.replace(settings, **changes) if changes else settings


def study_run_dir(study: Mapping[str, Any]) -> Path:
    """The study's ``run_dir``, resolved against the config file's folder."""
    if "run_dir" not in study:
        raise ConfigError("the config has no run_dir; add `run_dir: runs/my-study`")
    return resolve_path(study["run_dir"], study.get("_config_dir", ".")).resolve()


def check_mixtures(table: Table, domains: list[str], path: Path) -> None:
    """A mixtures table must have exactly the catalogue's domains and rows that sum to 1."""
    missing = [d for d in domains if d not in table.columns]
    extra = [c for c in table.columns if c not in domains]
    if missing or extra:
        raise DataError(
            f"{path} does not match the domain catalogue: columns missing {missing}, "
            f"not in the catalogue {extra} (catalogue: {domains}). Redraw it with "
            "`regmix sample CONFIG`, or fix the domains section of the config"
        )
    if not table.ids:
        raise DataError(f"{path} has no mixtures; draw some with `regmix sample CONFIG`")
    for i, mid in enumerate(table.ids):
        if not _ID_RE.match(mid):
            raise DataError(
                f"{path}: mixture id {mid!r} cannot name a run folder (use letters, digits, . _ -)"
            )
        row = table.values[i]
        if not all(math.isfinite(x) for x in row) or (row < 0).any():
            raise DataError(
                f"{path}: mixture {mid} has a missing or negative weight: {row.tolist()}"
            )
        if abs(float(row.sum()) - 1.0) > _WEIGHT_TOLERANCE:
            raise DataError(
                f"{path}: weights of mixture {mid} sum to {float(row.sum())!r}, not 1 "
                f"(tolerance {_WEIGHT_TOLERANCE}); regmix does not renormalise silently, "
                "fix the row"
            )


def fingerprint_of(description: Mapping[str, Any]) -> str:
    """A short hash of the canonical JSON of the parts that define the runs."""
    canonical = json.dumps(to_dict(description), sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


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


# ---------------------------------------------------------------- planning
def make_plan(
    *,
    study: Mapping[str, Any],
    config_path: str | os.PathLike[str],
    domains: list[str],
    settings: SweepConfig | None = None,
    mixtures_path: str | os.PathLike[str] | None = None,
) -> SweepPlan:
    """Plan a sweep for the given catalogue domain names (no file is written)."""
    settings = load_settings(study) if settings is None else settings
    run_dir = study_run_dir(study)
    sweep_dir = run_dir / "sweep"
    config_path = Path(config_path).resolve()
    if mixtures_path is None:
        mixtures_path = settings.mixtures or run_dir / "mixtures.csv"
    mixtures_path = Path(mixtures_path)
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
        folder = run_folder(sweep_dir, mid)
        values = {
            "config": str(config_path),
            "mixture_id": mid,
            "mixtures": str(sweep_dir / "mixtures.csv"),
            "run_dir": str(folder),
            "blend": str(folder / "blend.yaml"),
            "threads": threads,
        }
        weights = {d: float(w) for d, w in zip(domains, ordered.values[i], strict=True)}
        runs[mid] = RunSpec(mid, weights, folder, render_command(settings, values))
    from regmix_plugin.proxy.runtime import planned_placement
    from regmix_plugin.sweep.launchers import devices_per_proxy

    description = {
        "layout": LAYOUT_VERSION,
        "domains": list(domains),
        "domains_section": study.get("domains"),
        "proxy": study.get("proxy"),
        # What `device: auto` / `precision: auto` resolve to: CPU and GPU runs never mix.
        "placement": planned_placement(study.get("proxy"), devices_per_proxy(settings)),
        "command": settings.command,
    }
    clean_study = {k: v for k, v in study.items() if not k.startswith("_")}
    clean_study["run_dir"] = str(run_dir)
    clean_study["sweep"] = to_dict(settings)
    return SweepPlan(
        sweep_dir=sweep_dir,
        run_dir=run_dir,
        cwd=Path(study.get("_config_dir", ".")).resolve(),
        config_path=config_path,
        settings=settings,
        domains=list(domains),
        mixtures=ordered,
        runs=runs,
        env=env,
        fingerprint=fingerprint_of(description),
        description=description,
        study=clean_study,
    )


def plan_sweep(
    config_path: str | os.PathLike[str], *, study: Mapping[str, Any] | None = None
) -> SweepPlan:
    """Plan the sweep of a study config: its catalogue, mixtures and ``sweep:`` section."""
    from regmix_plugin.domains import load_catalogue

    study = load_study(Path(config_path)) if study is None else study
    settings = load_settings(study)  # a bad sweep section fails before the catalogue is read
    catalogue = load_catalogue(study)
    return make_plan(
        study=study, config_path=config_path, domains=list(catalogue.names), settings=settings
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
                    "created_at": time.time(),
                    "config": str(plan.config_path),
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
    mixtures_file = plan.sweep_dir / "mixtures.csv"
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
    config_text = (
        f"# resolved study config of this sweep (from {plan.config_path});\n"
        f"# relative paths are relative to {plan.cwd}\n"
        + yaml.safe_dump(plan.study, sort_keys=False)
    )
    for spec in plan.runs.values():
        if (spec.folder / DONE_FILE).is_file():
            continue
        spec.folder.mkdir(parents=True, exist_ok=True)
        _write_if_changed(
            spec.folder / "blend.yaml",
            yaml.safe_dump(
                {"mixture_id": spec.mixture_id, "weights": spec.weights}, sort_keys=False
            ),
        )
        _write_if_changed(spec.folder / "config.yaml", config_text)
        command = {"argv": spec.argv, "env": plan.env, "cwd": str(plan.cwd)}
        _write_if_changed(spec.folder / COMMAND_FILE, json.dumps(command, indent=2) + "\n")


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
            status = sweep_status(plan.sweep_dir, ids)
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


def run_sweep(
    study: Mapping[str, Any] | str | os.PathLike[str],
    *,
    config_path: str | os.PathLike[str] | None = None,
    dry_run: bool = False,
    force_mix: bool = False,
    progress: Progress | None = None,
    plan: SweepPlan | None = None,
) -> SweepResult:
    """Run (or, with ``dry_run``, describe) the sweep of a study.

    ``study`` is a config path or a study mapping from :func:`regmix_plugin.config.load_study`
    (then ``config_path``, the file the proxies read, is required). ``plan`` skips planning.
    """
    if plan is None:
        if isinstance(study, str | os.PathLike):
            config_path = study if config_path is None else config_path
            plan = plan_sweep(config_path)
        else:
            if config_path is None:
                raise TypeError(
                    "run_sweep(study_mapping) needs config_path= (the file proxies read)"
                )
            plan = plan_sweep(config_path, study=study)
    check_fingerprint(plan, force_mix=force_mix, write=not dry_run)
    if dry_run:
        from regmix_plugin.sweep.launchers import get_launcher

        todo = [m for m in plan.runs if not (plan.runs[m].folder / DONE_FILE).is_file()]
        text = "\n".join(
            [
                "# sweep settings (resolved)",
                yaml.safe_dump({"sweep": to_dict(plan.settings)}, sort_keys=False).rstrip(),
                f"# sweep folder: {plan.sweep_dir} (fingerprint {plan.fingerprint})",
                f"# {len(plan.runs) - len(todo)} of {len(plan.runs)} run(s) done; would launch:",
                get_launcher(plan).preview(plan, todo) if todo else "(nothing to launch)",
            ]
        )
        status = SweepStatus(plan.sweep_dir, [], {}, None)
        return SweepResult(status, [], [], dry_run_text=text)
    prepare_runs(plan)
    return execute(plan, progress=progress)


# ---------------------------------------------------------------- CLI
def configure_sweep(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``regmix sweep``."""
    parser.add_argument("config", help="the study config (YAML)")
    parser.add_argument(
        "--dry-run", action="store_true", help="print what would be launched, launch nothing"
    )
    parser.add_argument(
        "--force-mix",
        action="store_true",
        help="accept a sweep folder made by a different config (sweep.force_mix)",
    )


class _ProgressPrinter:
    """A progress bar on stderr: redrawn in place on a terminal, a line every 30 s otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last_line = ""
        self.last_time = 0.0

    def __call__(self, status: SweepStatus) -> None:
        line = progress_line(status)
        now = time.monotonic()
        if self.tty:
            if line != self.last_line or now - self.last_time > 1:
                sys.stderr.write("\r" + line.ljust(len(self.last_line)))
                sys.stderr.flush()
                self.last_line, self.last_time = line, now
        elif (
            line.split(", ETA")[0] != self.last_line.split(", ETA")[0] or now - self.last_time > 30
        ):
            print(line, file=sys.stderr, flush=True)
            self.last_line, self.last_time = line, now

    def finish(self) -> None:
        if self.tty and self.last_line:
            sys.stderr.write("\n")


def command_sweep(args: argparse.Namespace) -> int:
    """``regmix sweep CONFIG``: 0 when every run is done, 1 when some failed."""
    printer = _ProgressPrinter()
    try:
        result = run_sweep(
            args.config, dry_run=args.dry_run, force_mix=args.force_mix, progress=printer
        )
    finally:
        printer.finish()
    if args.dry_run:
        print(result.dry_run_text)
        return 0
    status = result.status
    if not status.finished and not result.failed:
        print(progress_line(status))
        print(
            f"launched {len(result.launched)} run(s); follow them with "
            f"`regmix status {status.sweep_dir}`"
        )
        return 0
    print(format_status(status))
    if result.failed:
        print(
            f"{len(result.failed)} run(s) not done after the retries (sweep.num_retries="
            f"{read_settings_retries(args.config)}): {', '.join(result.failed)}. Fix the cause "
            "(see each run's train.log) and rerun `regmix sweep`; finished runs are kept",
            file=sys.stderr,
        )
        return 1
    return 0


def read_settings_retries(config: str) -> int:
    """The configured retry count (for messages)."""
    return load_settings(load_study(config)).num_retries
