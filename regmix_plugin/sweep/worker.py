"""The process every launcher starts for a run: ``python -m regmix_plugin.sweep.worker``.

It runs one attempt of each run it is given, in turn::

    python -m regmix_plugin.sweep.worker SWEEP_DIR MIXTURE_ID [MIXTURE_ID ...]
    python -m regmix_plugin.sweep.worker SWEEP_DIR --task-file FILE --index N   # Slurm arrays

For each run it takes the run's ``.lock`` (a run already locked is left alone: another attempt
is running it), skips it if ``DONE`` exists, records the start in ``attempts.json``, runs the
proxy command from ``command.json`` with its output appended to ``train.log``, and then either
writes ``DONE`` (exit 0 and a ``metrics.json`` whose metrics are all finite numbers) or records
the exit code, the reason (a diverged proxy's NaN/inf losses, or the ``failure`` the proxy wrote
into ``metrics.json``) and the tail of the log. The lock fd is passed to the proxy, so the lock
is held until both have exited.

Started by the local launcher (``REGMIX_PARENT_PID`` set), the worker asks for SIGKILL when the
sweep dies, at its own start; it starts the proxy through the exec wrapper of
:mod:`regmix_plugin.lifetime`, which does the same for the proxy (no ``preexec_fn``).

Exit status: 0 when every run given is done, 1 when one failed, 75 when one was locked by
another attempt. It imports nothing heavy: its start-up is part of the sweep's overhead.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, BinaryIO

from regmix_plugin.io import append_json_line, atomic_write_json
from regmix_plugin.layout import (
    ATTEMPTS_FILE,
    COMMAND_FILE,
    DONE_FILE,
    LOG_FILE,
    METRICS_FILE,
    TIMINGS_FILE,
)
from regmix_plugin.lifetime import (
    PARENT_PID_ENV,
    die_with_parent,
    expected_parent,
    wrapped_argv,
)
from regmix_plugin.sweep.registry import log_tail, read_json, run_folder, try_lock

EXIT_FAILED = 1
EXIT_LOCKED = 75


def _metrics_problem(path: Path) -> str:
    """Empty when ``metrics.json`` is complete; otherwise what is wrong with it.

    A metric that is NaN or infinite (a diverged proxy) makes the run failed, with that reason:
    it would otherwise become an empty cell of the results table, or an ``inf`` in it.
    """
    if not path.is_file():
        return f"the proxy exited 0 but wrote no {METRICS_FILE}"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return f"{METRICS_FILE} is not valid JSON: {exc}"
    if isinstance(data, dict) and data.get("failure"):
        return str(data["failure"])
    metrics = data.get("metrics") if isinstance(data, dict) else None
    if not isinstance(metrics, dict) or not metrics:
        return f"{METRICS_FILE} has no non-empty 'metrics' mapping"
    bad = [k for k, v in metrics.items() if not isinstance(v, int | float) or isinstance(v, bool)]
    if bad:
        return f"{METRICS_FILE}: metric(s) {bad} are not numbers"
    diverged = {k: v for k, v in metrics.items() if not math.isfinite(v)}
    if diverged:
        shown = ", ".join(f"{k} = {v}" for k, v in sorted(diverged.items()))
        return (
            f"diverged: {METRICS_FILE} has non-finite loss(es) {shown}; lower proxy.lr or "
            "check the data of those domains"
        )
    return ""


def _failure_reason(path: Path) -> str:
    """The ``failure`` a proxy wrote into ``metrics.json`` before exiting non-zero, if any."""
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and data.get("failure"):
            return str(data["failure"])
    return ""


def _job_id() -> str | None:
    if "SLURM_ARRAY_JOB_ID" in os.environ:
        return f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ.get('SLURM_ARRAY_TASK_ID', '')}"
    return os.environ.get("SLURM_JOB_ID")


def _open_attempt(folder: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Close the attempts a kill left open, append this one; returns (all, this one).

    ``attempts.json`` holds no times, hosts or pids (two runs of a study write the same bytes):
    when and where each attempt ran goes to the run's timings log (``timings.jsonl``).
    """
    attempts: list[dict[str, Any]] = []
    if (folder / ATTEMPTS_FILE).is_file():
        attempts = list(read_json(folder / ATTEMPTS_FILE))
    for a in attempts:
        if not a.get("ended") and "ended_at" not in a:  # ended_at: records before 0.x
            a.update(ended=True, exit_code=None, error="interrupted (killed, no exit recorded)")
    record: dict[str, Any] = {"attempt": len(attempts) + 1, "ended": False}
    started = time.time()
    append_json_line(
        folder / TIMINGS_FILE,
        {
            "event": "attempt_start",
            "attempt": record["attempt"],
            "time": started,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "job_id": _job_id(),
        },
    )
    record["_started_at"] = started
    attempts.append(record)
    _write_attempts(folder, attempts)
    return attempts, record


def _write_attempts(folder: Path, attempts: list[dict[str, Any]]) -> None:
    """``attempts.json`` without the in-memory fields (``_started_at``)."""
    atomic_write_json(
        folder / ATTEMPTS_FILE,
        [{k: v for k, v in a.items() if not k.startswith("_")} for a in attempts],
    )


def _proxy_env(spec: dict[str, Any]) -> dict[str, str]:
    """The proxy's environment: ours, the run's, and our pid for the exec wrapper to die with."""
    env = dict(os.environ)
    env.update(spec.get("env", {}))
    env[PARENT_PID_ENV] = str(os.getpid())
    return env


def _run_proxy(spec: dict[str, Any], log: BinaryIO, lock_fd: int) -> tuple[int, str]:
    """Run the proxy command (through the exec wrapper) with SIGTERM/SIGINT forwarded to it."""
    try:
        proc = subprocess.Popen(
            wrapped_argv(list(spec["argv"])),
            cwd=spec.get("cwd") or None,
            env=_proxy_env(spec),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=(lock_fd,),
        )
    except OSError as exc:
        return 127, f"could not start the proxy command: {exc}"

    def _forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signum)

    previous = {s: signal.signal(s, _forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        code = proc.wait()
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    return code, ""


def _judge(folder: Path, code: int, error: str) -> tuple[int, str]:
    """(exit code, reason): a zero exit needs a complete, finite ``metrics.json``."""
    if error:
        return code, error
    if code != 0:
        reason = _failure_reason(folder / METRICS_FILE)
        return code, f"the proxy exited with code {code}" + (f": {reason}" if reason else "")
    problem = _metrics_problem(folder / METRICS_FILE)
    return (EXIT_FAILED, problem) if problem else (0, "")


def _attempt(
    folder: Path, mixture_id: str, spec: dict[str, Any], lock_fd: int, record: dict[str, Any]
) -> tuple[int, str]:
    """Run the proxy once with its output appended to ``train.log``; returns (code, reason)."""
    with (folder / LOG_FILE).open("ab") as log:
        header = (
            f"\n==== regmix attempt {record['attempt']} of run {mixture_id} on "
            f"{socket.gethostname()} "
        )
        log.write((header + time.strftime("%Y-%m-%d %H:%M:%S") + " ====\n").encode())
        log.write(("$ " + " ".join(spec["argv"]) + "\n").encode())
        log.flush()
        code, error = _judge(folder, *_run_proxy(spec, log, lock_fd))
        if code == 0 and spec.get("harness_argv"):  # sweep.harness_command, after training
            log.write(("$ " + " ".join(spec["harness_argv"]) + "\n").encode())
            log.flush()
            code, error = _run_proxy({**spec, "argv": spec["harness_argv"]}, log, lock_fd)
            if code != 0 and not error:
                error = f"the harness command (sweep.harness_command) exited with code {code}"
        seconds = time.time() - record["_started_at"]
        log.write(f"==== exit code {code} after {seconds:.1f} s ====\n".encode())
        if error:
            log.write(f"==== failed: {error} ====\n".encode())
    return code, error


def _close_attempt(
    folder: Path,
    mixture_id: str,
    attempts: list[dict[str, Any]],
    record: dict[str, Any],
    code: int,
    error: str,
) -> int:
    """Record the attempt's end (its times in the timings log), and ``DONE`` when it
    succeeded; returns the worker's status."""
    started, ended = record["_started_at"], time.time()
    append_json_line(
        folder / TIMINGS_FILE,
        {
            "event": "attempt_end",
            "attempt": record["attempt"],
            "time": ended,
            "duration_s": ended - started,
            "exit_code": code,
        },
    )
    if code == 0:
        record.update(ended=True, exit_code=0)
        _write_attempts(folder, attempts)
        atomic_write_json(
            folder / DONE_FILE, {"mixture_id": mixture_id, "attempt": record["attempt"]}
        )
        return 0
    record.update(ended=True, exit_code=code, error=error, log_tail=log_tail(folder / LOG_FILE))
    _write_attempts(folder, attempts)
    return EXIT_FAILED


def run_one(sweep_dir: Path, mixture_id: str) -> int:
    """One attempt of one run; returns 0 (done), EXIT_FAILED or EXIT_LOCKED."""
    folder = run_folder(sweep_dir, mixture_id)
    if not (folder / COMMAND_FILE).is_file():
        print(
            f"regmix worker: {folder / COMMAND_FILE} is missing; rerun `regmix sweep`",
            file=sys.stderr,
        )
        return EXIT_FAILED
    with try_lock(folder) as lock_fd:
        if lock_fd is None:
            print(f"regmix worker: run {mixture_id} is locked by another attempt", file=sys.stderr)
            return EXIT_LOCKED
        if (folder / DONE_FILE).is_file():
            return 0
        spec = read_json(folder / COMMAND_FILE)
        attempts, record = _open_attempt(folder)
        code, error = _attempt(folder, mixture_id, spec, lock_fd, record)
        return _close_attempt(folder, mixture_id, attempts, record, code, error)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status described in the module docstring."""
    # Started by `regmix sweep` (launcher local): die with it, even when it is SIGKILLed.
    if expected_parent() is not None:
        die_with_parent(expected_parent())
    parser = argparse.ArgumentParser(prog="python -m regmix_plugin.sweep.worker")
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("mixture_ids", nargs="*")
    parser.add_argument("--task-file", type=Path, help="file of mixture ids, one per line")
    parser.add_argument("--index", type=int, help="0-based line of --task-file to run")
    args = parser.parse_args(argv)
    ids = list(args.mixture_ids)
    if args.task_file is not None:
        lines = [s.strip() for s in args.task_file.read_text().splitlines() if s.strip()]
        if args.index is None or not 0 <= args.index < len(lines):
            print(
                f"regmix worker: --index {args.index} outside 0..{len(lines) - 1}", file=sys.stderr
            )
            return 2
        ids.append(lines[args.index])
    if not ids:
        parser.error("give mixture ids or --task-file/--index")
    worst = 0
    for mixture_id in ids:
        code = run_one(args.sweep_dir, mixture_id)
        worst = code if code and (worst == 0 or code == EXIT_FAILED) else worst
    return worst


if __name__ == "__main__":
    sys.exit(main())
