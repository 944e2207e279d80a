"""Process lifetime: every process a sweep starts dies with the process that started it.

A sweep is a chain of processes: ``regmix sweep`` → worker → proxy command → (under
``torchrun``) one rank per device. If a link is killed with SIGKILL it cannot pass anything on,
so each process asks the kernel itself for a parent-death signal (Linux ``PR_SET_PDEATHSIG``)
at its start, instead of the parent setting it between ``fork`` and ``exec`` (``preexec_fn``,
which CPython documents as unsafe while other threads run):

* the worker calls :func:`die_with_parent` first thing (``REGMIX_PARENT_PID`` names the sweep);
* the worker starts the proxy command through this module's exec wrapper
  (``python -m regmix_plugin.lifetime -- ARGV...``), which sets the signal and then
  ``exec``\\ s the command in the same process;
* a proxy rank under ``torchrun`` (which starts its ranks in a new session, with no
  parent-death signal) calls :func:`guard_torchrun_rank` before building anything.

The parent that died between ``fork`` and the ``prctl`` call is caught by comparing
``getppid()`` with ``REGMIX_PARENT_PID``. The kernel sends the signal when the *thread* that
started the child exits, so parents must start their children from a thread that lives as long
as they do (the main thread). Only the standard library is imported here.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path

#: Environment variable: the pid of the process whose death must kill this one.
PARENT_PID_ENV = "REGMIX_PARENT_PID"

_PR_SET_PDEATHSIG = 1


def _set_parent_death_signal() -> bool:
    """Ask the kernel for SIGKILL when the parent dies; False where that is not possible."""
    if not sys.platform.startswith("linux"):
        return False
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)) == 0
    return False


def expected_parent() -> int | None:
    """The pid in ``REGMIX_PARENT_PID``, or None when unset or not a pid."""
    value = os.environ.get(PARENT_PID_ENV, "")
    return int(value) if value.isdigit() else None


def die_with_parent(parent: int | None = None) -> None:
    """Get SIGKILL when the parent dies; die now if ``parent`` is given and already gone."""
    _set_parent_death_signal()
    if parent is not None and os.getppid() != parent:
        # The parent died before the signal was armed: do what the signal would have done.
        os.kill(os.getpid(), signal.SIGKILL)


def _descends_from(ancestor: int) -> bool:
    """Whether ``ancestor`` is this process's parent, grandparent, ... (read from ``/proc``)."""
    pid = os.getppid()
    for _ in range(64):
        if pid == ancestor:
            return True
        if pid <= 1:
            return False
        try:
            stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
        except OSError:
            return True  # cannot tell (no /proc): do not kill a healthy rank
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return True


def guard_torchrun_rank() -> None:
    """Under ``torchrun``, tie this rank's life to the ``torchrun`` agent that started it.

    The agent may sit below the exec wrapper (``bash -c 'torchrun ...'``), so the check of a
    parent that died early is that the wrapper's pid (``REGMIX_PARENT_PID``) is still an
    ancestor: once the agent is gone the rank hangs under init or a subreaper.
    """
    if "TORCHELASTIC_RUN_ID" not in os.environ:
        return
    _set_parent_death_signal()
    wrapper = expected_parent()
    if wrapper is not None and not _descends_from(wrapper):
        os.kill(os.getpid(), signal.SIGKILL)


def wrapped_argv(argv: list[str]) -> list[str]:
    """``argv`` run through the exec wrapper (same pid, dies with the caller)."""
    return [sys.executable, "-m", "regmix_plugin.lifetime", "--", *argv]


def main(argv: list[str] | None = None) -> int:
    """The exec wrapper: arm the signal, record this pid for ranks, ``exec`` the command."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        print("usage: python -m regmix_plugin.lifetime -- COMMAND [ARG...]", file=sys.stderr)
        return 2
    die_with_parent(expected_parent())
    # Ranks that torchrun starts from this process check that it is still their parent.
    os.environ[PARENT_PID_ENV] = str(os.getpid())
    try:
        os.execvp(args[0], args)
    except OSError as exc:
        print(f"regmix: could not start {args[0]!r}: {exc}", file=sys.stderr)
        return 127
    return 0  # not reached: exec replaced this process


if __name__ == "__main__":
    sys.exit(main())
