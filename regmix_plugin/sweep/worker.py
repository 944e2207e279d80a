"""The process every launcher starts for a run: ``python -m regmix_plugin.sweep.worker``.

It runs one attempt of each run it is given, in turn::

    python -m regmix_plugin.sweep.worker SWEEP_DIR MIXTURE_ID [MIXTURE_ID ...]
    python -m regmix_plugin.sweep.worker SWEEP_DIR --task-file FILE --index N   # Slurm arrays

For each run it takes the run's ``.lock`` (a run already locked is left alone: another attempt
is running it), skips it if ``DONE`` exists, records the start in ``attempts.json``, runs the
proxy command from ``command.json`` with its output appended to ``train.log``, and then either
writes ``DONE`` (exit 0 and a valid ``metrics.json``) or records the exit code and the tail of
the log. The lock fd is passed to the proxy, so the lock is held until both have exited.

Exit status: 0 when every run given is done, 1 when one failed, 75 when one was locked by
another attempt. It imports nothing heavy: its start-up is part of the sweep's overhead.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from regmix_plugin.io import atomic_write_json
from regmix_plugin.layout import ATTEMPTS_FILE, COMMAND_FILE, DONE_FILE, LOG_FILE, METRICS_FILE
from regmix_plugin.sweep.registry import log_tail, read_json, run_folder, try_lock

EXIT_FAILED = 1
EXIT_LOCKED = 75


def _die_with_parent() -> None:
    """In the child: get SIGKILL when the parent dies (Linux), so no proxy outlives its worker."""
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)


def _metrics_problem(path: Path) -> str:
    """Empty when ``metrics.json`` is complete; otherwise what is wrong with it."""
    if not path.is_file():
        return f"the proxy exited 0 but wrote no {METRICS_FILE}"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return f"{METRICS_FILE} is not valid JSON: {exc}"
    metrics = data.get("metrics") if isinstance(data, dict) else None
    if not isinstance(metrics, dict) or not metrics:
        return f"{METRICS_FILE} has no non-empty 'metrics' mapping"
    bad = [k for k, v in metrics.items() if not isinstance(v, int | float)]
    if bad:
        return f"{METRICS_FILE}: metric(s) {bad} are not numbers"
    return ""


def _job_id() -> str | None:
    if "SLURM_ARRAY_JOB_ID" in os.environ:
        return f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ.get('SLURM_ARRAY_TASK_ID', '')}"
    return os.environ.get("SLURM_JOB_ID")


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
        attempts: list[dict[str, Any]] = []
        if (folder / ATTEMPTS_FILE).is_file():
            attempts = list(read_json(folder / ATTEMPTS_FILE))
        for a in attempts:  # close attempts whose processes were killed
            if "ended_at" not in a:
                a.update(
                    ended_at=None, exit_code=None, error="interrupted (killed, no exit recorded)"
                )
        started = time.time()
        record: dict[str, Any] = {
            "attempt": len(attempts) + 1,
            "started_at": started,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "job_id": _job_id(),
        }
        attempts.append(record)
        atomic_write_json(folder / ATTEMPTS_FILE, attempts)

        env = dict(os.environ)
        env.update(spec.get("env", {}))
        log_path = folder / LOG_FILE
        with log_path.open("ab") as log:
            header = (
                f"\n==== regmix attempt {record['attempt']} of run {mixture_id} "
                f"on {record['host']} "
            )
            log.write((header + time.strftime("%Y-%m-%d %H:%M:%S") + " ====\n").encode())
            log.write(("$ " + " ".join(spec["argv"]) + "\n").encode())
            log.flush()
            try:
                proc = subprocess.Popen(
                    spec["argv"],
                    cwd=spec.get("cwd") or None,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    pass_fds=(lock_fd,),
                    preexec_fn=_die_with_parent,
                )
            except OSError as exc:
                code, error = 127, f"could not start the proxy command: {exc}"
            else:
                # Forward a polite stop (scancel, Ctrl-C) to the proxy, then wait for it.
                def _forward(signum: int, _frame: object) -> None:
                    with contextlib.suppress(ProcessLookupError):
                        proc.send_signal(signum)

                previous = {s: signal.signal(s, _forward) for s in (signal.SIGTERM, signal.SIGINT)}
                try:
                    code = proc.wait()
                finally:
                    for s, h in previous.items():
                        signal.signal(s, h)
                error = "" if code == 0 else f"the proxy exited with code {code}"
                if code == 0:
                    error = _metrics_problem(folder / METRICS_FILE)
                    if error:
                        code = EXIT_FAILED
            log.write(f"==== exit code {code} after {time.time() - started:.1f} s ====\n".encode())
        ended = time.time()
        if code == 0:
            record.update(ended_at=ended, exit_code=0, duration_s=ended - started)
            atomic_write_json(folder / ATTEMPTS_FILE, attempts)
            atomic_write_json(
                folder / DONE_FILE,
                {
                    "mixture_id": mixture_id,
                    "attempt": record["attempt"],
                    "started_at": started,
                    "finished_at": ended,
                    "duration_s": ended - started,
                },
            )
            return 0
        record.update(
            ended_at=ended,
            exit_code=code,
            error=error,
            duration_s=ended - started,
            log_tail=log_tail(log_path),
        )
        atomic_write_json(folder / ATTEMPTS_FILE, attempts)
        return EXIT_FAILED


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status described in the module docstring."""
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
