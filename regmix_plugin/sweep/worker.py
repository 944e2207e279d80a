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

**Serve mode** (``--serve``, the local launcher's default, ``sweep.local.preload``): one worker
per slot lives as long as the sweep and reads mixture ids from its standard input, one per line,
answering ``<id> <exit status>`` on its standard output when that run's attempt has ended. Its
own messages go to each run's ``worker.log`` as before. On a CPU slot, when a run's command is
the built-in ``python -m regmix_plugin train-proxy ...`` (the default ``sweep.command``), the
worker imports torch and megatron-core once, at its first such run, and then starts each proxy
by ``fork`` from itself instead of a fresh interpreter: a proxy process that starts with its
imports done (they cost about 7 CPU seconds per proxy on a small CPU machine, a third of a
quickstart proxy). The child is the same proxy: it arms its parent-death signal, gets the run's
working directory, environment and ``train.log`` as standard output and error, and runs
``regmix train-proxy`` with the command's arguments. Any other command, a GPU slot, an
environment that differs from the one the imports were made with, or a worker that has started
a thread takes the ``exec`` path above.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, NoReturn

from regmix_plugin.io import append_json_line, atomic_write_json
from regmix_plugin.layout import (
    ATTEMPTS_FILE,
    COMMAND_FILE,
    DONE_FILE,
    LOG_FILE,
    METRICS_FILE,
    TIMINGS_FILE,
    WORKER_LOG_FILE,
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


class _Preload:
    """Serve mode's state: whether forking preloaded proxies is allowed and what was loaded."""

    enabled = False
    """Set by ``--serve`` on a CPU slot: the fork path may be used."""
    base_env: dict[str, str] | None = None
    """The worker's environment before the first preloaded run changed it."""
    run_env: dict[str, str] | None = None
    """The run environment the imports were made with (None: nothing imported yet)."""
    answers_fd: int | None = None
    """The file descriptor serve mode answers on (closed in a forked proxy)."""


_BUILTIN_PROXY = ["-m", "regmix_plugin", "train-proxy"]


def _is_builtin_proxy(argv: list[str]) -> bool:
    """Whether ``argv`` is ``<this python> -m regmix_plugin train-proxy ...``."""
    return (
        len(argv) > 4
        and os.path.realpath(argv[0]) == os.path.realpath(sys.executable)
        and argv[1:4] == _BUILTIN_PROXY
    )


def _single_threaded() -> bool:
    """Whether this process has one thread (fork is safe only then); False where unknown."""
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False


def _fork_ready(spec: dict[str, Any]) -> bool:
    """Whether this run's proxy may be forked from this worker; imports torch and megatron-core
    at the first run that may (with that run's environment, so thread variables apply)."""
    if not _Preload.enabled or not _is_builtin_proxy(list(spec["argv"])):
        return False
    run_env = {str(k): str(v) for k, v in spec.get("env", {}).items()}
    if _Preload.run_env is None:
        _Preload.base_env = dict(os.environ)
        os.environ.update(run_env)
        # By name: the worker's start-up stays light (an import-linter contract); the proxy's
        # modules load here, once, at the first run that forks.
        importlib.import_module("regmix_plugin.proxy.train").preload_modules()
        _Preload.run_env = run_env
    return _Preload.run_env == run_env and _single_threaded()


def _proxy_env(spec: dict[str, Any]) -> dict[str, str]:
    """The proxy's environment: ours, the run's, and our pid for the exec wrapper to die with."""
    env = dict(_Preload.base_env if _Preload.base_env is not None else os.environ)
    env.update(spec.get("env", {}))
    env[PARENT_PID_ENV] = str(os.getpid())
    return env


def _forked_proxy(spec: dict[str, Any], log: BinaryIO, worker_pid: int) -> NoReturn:
    """In the forked child: become the proxy (``regmix train-proxy ARGS``); never returns."""
    code = 1
    try:
        die_with_parent(worker_pid)
        for s in (signal.SIGTERM, signal.SIGINT):
            signal.signal(s, signal.SIG_DFL)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        if _Preload.answers_fd is not None:
            os.close(_Preload.answers_fd)
        if spec.get("cwd"):
            os.chdir(spec["cwd"])
        os.environ.clear()
        os.environ.update(_proxy_env(spec))
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
        sys.stderr.reconfigure(line_buffering=True)  # type: ignore[union-attr]
        code = importlib.import_module("regmix_plugin.cli").main(list(spec["argv"][3:]))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # the child must never return into the worker's loop
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _run_proxy(
    spec: dict[str, Any], log: BinaryIO, lock_fd: int, *, fork: bool = False
) -> tuple[int, str]:
    """Run the proxy command (through the exec wrapper, or with ``fork`` forked from this
    preloaded worker, see :func:`_fork_ready`) with SIGTERM/SIGINT forwarded to it."""
    if fork:
        log.flush()
        worker_pid = os.getpid()
        pid = os.fork()
        if pid == 0:
            _forked_proxy(spec, log, worker_pid)
        with _signals_forwarded(lambda signum: os.kill(pid, signum)):
            _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status), ""  # -N for a signal, as subprocess reports
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

    with _signals_forwarded(proc.send_signal):
        return proc.wait(), ""


@contextlib.contextmanager
def _signals_forwarded(send: Callable[[int], None]) -> Iterator[None]:
    """SIGTERM and SIGINT received by this worker are passed to ``send`` (to the proxy)
    meanwhile."""

    def _forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            send(signum)

    previous = {s: signal.signal(s, _forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


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
        forked = _fork_ready(spec)
        if forked:
            log.write(b"(forked from the sweep worker, torch and megatron-core imported)\n")
        log.flush()
        code, error = _judge(folder, *_run_proxy(spec, log, lock_fd, fork=forked))
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


@contextlib.contextmanager
def _stderr_to(path: Path) -> Iterator[None]:
    """File descriptor 2 (and so ``sys.stderr``) appended to ``path`` while the block runs."""
    sys.stderr.flush()
    saved = os.dup(2)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as sink:
        os.dup2(sink.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def serve(sweep_dir: Path, *, preload: bool) -> int:
    """Serve mode: run the mixture ids read from stdin, answering ``<id> <status>`` on stdout."""
    answers = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    _Preload.answers_fd = answers.fileno()
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)  # a stray print must not corrupt the answers
    os.close(null)
    # Forking is for CPU slots only: a GPU proxy must initialise CUDA in a fresh process.
    _Preload.enabled = preload and os.environ.get("CUDA_VISIBLE_DEVICES") == ""
    try:
        for line in sys.stdin:
            mixture_id = line.strip()
            if not mixture_id:
                continue
            try:
                with _stderr_to(run_folder(sweep_dir, mixture_id) / WORKER_LOG_FILE):
                    code = run_one(sweep_dir, mixture_id)
            except Exception as exc:  # an answer must always come back; the reason to stderr
                print(f"regmix worker: run {mixture_id}: {exc}", file=sys.stderr)
                code = EXIT_FAILED
            answers.write(f"{mixture_id} {code}\n")
    except KeyboardInterrupt:  # Ctrl-C reaches every process of the terminal: the sweep reports
        return 130
    return 0


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
    parser.add_argument(
        "--serve", action="store_true", help="read mixture ids from stdin (the local launcher)"
    )
    parser.add_argument(
        "--preload",
        action="store_true",
        help="with --serve: fork CPU proxies of the built-in command from this worker",
    )
    args = parser.parse_args(argv)
    if args.serve:
        return serve(args.sweep_dir, preload=args.preload)
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
