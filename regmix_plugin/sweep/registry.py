"""The run registry: one folder per proxy run inside the sweep folder, and its state.

Layout of a sweep folder (``<run_dir>/sweep/``)::

    sweep.json                 fingerprint of the config parts that define the runs
    study.yaml                 the resolved study every proxy reads (``{config}``)
    mixtures.csv               the mixtures this sweep trains (ids `regmix collect` expects)
    runs/<mixture_id>/
        blend.yaml             the mixture's weights per domain
        command.json           the proxy command, its environment and threads
        submitted.json         the launcher's last submission (job id), written by the driver
        attempts.json          one record per attempt: start, end, exit code, tail of the log
        train.log              the proxy's output, every attempt appended
        metrics.json           written by the proxy
        DONE                   completion marker, written last
        .lock                  held (flock) while an attempt runs

Only the worker (:mod:`regmix_plugin.sweep.worker`) writes ``attempts.json`` and ``DONE``, and
only while it holds ``.lock``; the driver writes the rest before launching. A run's state is
read from the files alone, so ``regmix status`` works from any shell while a sweep runs. The
file names are defined in :mod:`regmix_plugin.layout`.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import json
import math
import os
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from regmix_plugin.errors import DataError
from regmix_plugin.io import read_json_lines
from regmix_plugin.layout import (
    ATTEMPTS_FILE,
    DONE_FILE,
    LOCK_FILE,
    LOG_FILE,
    MIXTURES_FILE,
    SUBMITTED_FILE,
    SWEEP_FILE,
    TIMINGS_FILE,
    RunLayout,
    sweep_run_folder,
    sweep_runs_dir,
)

#: Version of the sweep folder layout, recorded in sweep.json.
LAYOUT_VERSION = 1
LOG_TAIL_LINES = 20

STATES = ("done", "running", "failed", "pending")


def runs_dir(sweep_dir: str | os.PathLike[str]) -> Path:
    """The folder holding one sub-folder per run."""
    return sweep_runs_dir(Path(sweep_dir))


def run_folder(sweep_dir: str | os.PathLike[str], mixture_id: str) -> Path:
    """The folder of one run."""
    return sweep_run_folder(Path(sweep_dir), mixture_id)


def resolve_sweep_dir(path: str | os.PathLike[str]) -> Path:
    """Accept a sweep folder or a study's run_dir (holding ``sweep/``); fail with what was seen."""
    p = Path(path)
    for sweep_dir in (p, RunLayout(p).sweep_dir):
        if (sweep_dir / SWEEP_FILE).is_file():
            if not isinstance(read_json(sweep_dir / SWEEP_FILE), dict):
                raise DataError(f"{sweep_dir / SWEEP_FILE}: not a sweep record (a JSON object)")
            return sweep_dir
    if not p.exists():
        raise DataError(f"{str(p)!r} does not exist; pass a sweep folder (<run_dir>/sweep)")
    raise DataError(
        f"{str(p)!r} is not a sweep folder: it holds no {SWEEP_FILE} (nor sweep/{SWEEP_FILE}); "
        "start one with `regmix sweep CONFIG`"
    )


def read_json(path: Path) -> Any:
    """Read a JSON file written by the registry; a corrupt one is a DataError naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc}); delete it to rerun this unit") from exc


def log_tail(path: Path, num_lines: int = LOG_TAIL_LINES, max_bytes: int = 16384) -> str:
    """The last lines of a log file (reads at most ``max_bytes`` from its end)."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except FileNotFoundError:
        return ""
    lines = data.decode("utf-8", errors="replace").splitlines()
    return "\n".join(lines[-num_lines:])


@contextlib.contextmanager
def try_lock(run_dir: Path, *, create: bool = True) -> Iterator[int | None]:
    """Hold the run's ``.lock`` (non-blocking flock): yields its fd, or None when another holds it.

    The lock is released when the fd is closed, also when its holder is killed, so a lock can
    never outlive the processes of an attempt.
    """
    path = run_dir / LOCK_FILE
    if not create and not path.exists():
        yield -1  # never locked: nobody can hold it
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                yield None
                return
            raise
        yield fd
    finally:
        os.close(fd)


def is_locked(run_dir: Path) -> bool:
    """Whether an attempt of this run is running now (its lock is held)."""
    with try_lock(run_dir, create=False) as fd:
        return fd is None


@dataclass
class RunRecord:
    """What the files say about one run."""

    mixture_id: str
    state: str
    num_attempts: int = 0
    exit_code: int | None = None
    error: str = ""
    log_tail: str = ""
    started_at: float | None = None
    duration_s: float | None = None
    job_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain-data form (for ``--json``)."""
        return dict(self.__dict__)


def attempt_times(folder: Path) -> dict[int, dict[str, Any]]:
    """Attempt number -> ``started_at`` (and, once it ended, ``duration_s``), from the run's
    timings log (``timings.jsonl``; the run's records hold no times)."""
    times: dict[int, dict[str, Any]] = {}
    for line in read_json_lines(folder / TIMINGS_FILE):
        if not isinstance(line, dict) or not isinstance(line.get("attempt"), int):
            continue
        entry = times.setdefault(line["attempt"], {})
        if line.get("event") == "attempt_start":
            entry["started_at"] = line.get("time")
        elif line.get("event") == "attempt_end":
            entry["duration_s"] = line.get("duration_s")
    return times


def _ended(attempt: dict[str, Any]) -> bool:
    """Whether an attempt recorded its end (``ended_at``: the records of earlier versions)."""
    return bool(attempt.get("ended")) or "ended_at" in attempt


def read_run(sweep_dir: str | os.PathLike[str], mixture_id: str) -> RunRecord:
    """The state of one run from its folder: done, running, failed or pending."""
    folder = run_folder(sweep_dir, mixture_id)
    attempts: list[dict[str, Any]] = []
    if (folder / ATTEMPTS_FILE).is_file():
        attempts = read_json(folder / ATTEMPTS_FILE)
        if not isinstance(attempts, list) or not all(isinstance(a, dict) for a in attempts):
            raise DataError(
                f"{folder / ATTEMPTS_FILE}: not a list of attempt records; delete it to rerun "
                "this unit"
            )
    submitted = read_json(folder / SUBMITTED_FILE) if (folder / SUBMITTED_FILE).is_file() else {}
    rec = RunRecord(
        mixture_id, "pending", num_attempts=len(attempts), job_id=submitted.get("job_id")
    )
    last = attempts[-1] if attempts else None
    times = attempt_times(folder)
    last_times = times.get(len(attempts), {}) if last is not None else {}
    if (folder / DONE_FILE).is_file():
        done = read_json(folder / DONE_FILE)
        done_times = times.get(done.get("attempt", len(attempts)), {})
        rec.state = "done"
        rec.duration_s = done_times.get("duration_s", done.get("duration_s"))
        rec.started_at = done_times.get("started_at", done.get("started_at"))
        rec.exit_code = 0
        return rec
    if folder.is_dir() and is_locked(folder):
        rec.state = "running"
        if last is not None:
            rec.started_at = last_times.get("started_at", last.get("started_at"))
        return rec
    if last is not None:
        if _ended(last):
            rec.state = "failed"
            rec.exit_code = last.get("exit_code")
            rec.error = last.get("error", "")
            rec.log_tail = last.get("log_tail", "")
            rec.duration_s = last_times.get("duration_s", last.get("duration_s"))
        else:
            # The attempt's processes are gone without recording an end: killed (SIGKILL,
            # node failure, Slurm time limit). The next attempt resumes or restarts it.
            rec.state = "failed"
            rec.error = "interrupted: the attempt ended without recording an exit (killed?)"
            rec.log_tail = log_tail(folder / LOG_FILE)
        rec.started_at = last_times.get("started_at", last.get("started_at"))
    # A submission newer than the last attempt means it waits in a queue: pending.
    if submitted and (last is None or submitted.get("submitted_at", 0) > (rec.started_at or 0)):
        rec.state = "pending"
    return rec


@dataclass
class SweepStatus:
    """Counts and per-run records of a sweep, plus an ETA estimate."""

    sweep_dir: Path
    records: list[RunRecord]
    counts: dict[str, int] = field(default_factory=dict)
    eta_s: float | None = None

    @property
    def num_total(self) -> int:
        """Runs in the sweep."""
        return len(self.records)

    @property
    def finished(self) -> bool:
        """Whether every run is done."""
        return self.counts.get("done", 0) == self.num_total

    def by_state(self, state: str) -> list[RunRecord]:
        """The records in one state."""
        return [r for r in self.records if r.state == state]


def sweep_mixture_ids(sweep_dir: str | os.PathLike[str]) -> list[str]:
    """The mixture ids of a sweep, from its ``mixtures.csv`` (plus any extra run folders).

    Only the id column is read (with the csv module: this module stays free of numpy, for the
    worker's start-up).
    """
    sd = Path(sweep_dir)
    ids: list[str] = []
    if (sd / MIXTURES_FILE).is_file():
        with (sd / MIXTURES_FILE).open(newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        ids = [r[0].strip() for r in rows[1:] if r and r[0].strip()]
    if runs_dir(sd).is_dir():
        known = set(ids)
        ids += sorted(p.name for p in runs_dir(sd).iterdir() if p.is_dir() and p.name not in known)
    return ids


def sweep_status(
    sweep_dir: str | os.PathLike[str],
    mixture_ids: list[str] | None = None,
    *,
    concurrency: int | None = None,
) -> SweepStatus:
    """Read every run's state (done / running / failed / pending) and estimate the time left
    (``concurrency``: how many runs the launcher runs at once, when known)."""
    sd = resolve_sweep_dir(sweep_dir)
    ids = sweep_mixture_ids(sd) if mixture_ids is None else mixture_ids
    records = [read_run(sd, i) for i in ids]
    counts = {s: 0 for s in STATES}
    for r in records:
        counts[r.state] += 1
    return SweepStatus(sd, records, counts, estimate_eta(records, concurrency=concurrency))


def estimate_eta(
    records: list[RunRecord], now: float | None = None, *, concurrency: int | None = None
) -> float | None:
    """Seconds left: the median duration of finished runs times the work left, over concurrency.

    The concurrency is the launcher's (``concurrency``, capped by the runs left) when given:
    right after a run ends its slot is empty for a moment, and dividing by the runs running then
    would double a 2-slot sweep's estimate. Otherwise the number of runs running now.
    None until a run has finished (nothing to extrapolate from).
    """
    now = time.time() if now is None else now
    durations = [r.duration_s for r in records if r.state == "done" and r.duration_s]
    if not durations:
        return None
    typical = statistics.median(durations)
    running = [r for r in records if r.state == "running"]
    waiting = [r for r in records if r.state in ("pending", "failed")]
    work = len(waiting) * typical
    for r in running:
        elapsed = now - r.started_at if r.started_at else 0.0
        work += max(0.0, typical - elapsed)
    parallel = len(running)
    if concurrency is not None:
        parallel = max(parallel, min(concurrency, len(running) + len(waiting)))
    return work / max(1, parallel)


def format_duration(seconds: float | None) -> str:
    """``1h02m``, ``3m05s``, ``12s``; ``?`` for unknown."""
    if seconds is None or math.isnan(seconds):
        return "?"
    s = round(seconds)
    if s >= 3600:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def progress_line(status: SweepStatus, width: int = 30) -> str:
    """One line: a bar, the counts and the ETA."""
    total = max(1, status.num_total)
    done = status.counts.get("done", 0)
    filled = round(width * done / total)
    bar = "#" * filled + "-" * (width - filled)
    c = status.counts
    return (
        f"[{bar}] {done}/{status.num_total} done, {c.get('running', 0)} running, "
        f"{c.get('failed', 0)} failed, {c.get('pending', 0)} pending, "
        f"ETA {format_duration(status.eta_s)}"
    )


def format_status(status: SweepStatus, *, verbose: bool = False) -> str:
    """The text ``regmix status`` prints: the progress line, then running and failed runs."""
    lines = [f"sweep {status.sweep_dir}", progress_line(status)]
    now = time.time()
    for r in status.by_state("running"):
        elapsed = format_duration(now - r.started_at) if r.started_at else "?"
        lines.append(f"  running  {r.mixture_id}  attempt {r.num_attempts}, {elapsed} so far")
    for r in status.by_state("failed"):
        lines.append(
            f"  failed   {r.mixture_id}  after {r.num_attempts} attempt(s), exit code "
            f"{r.exit_code if r.exit_code is not None else 'none'}: {r.error or 'see train.log'}"
        )
        if r.log_tail:
            tail = r.log_tail.splitlines()[-(LOG_TAIL_LINES if verbose else 5) :]
            lines += [f"           | {t}" for t in tail]
    if verbose:
        for r in status.by_state("pending"):
            queued = f" (queued as job {r.job_id})" if r.job_id else ""
            lines.append(f"  pending  {r.mixture_id}{queued}")
    return "\n".join(lines)
