#!/usr/bin/env python3
"""Start or stop a real single-node Slurm cluster on localhost, for tests and benchmarks.

    python tools/local_slurm.py start [--prefix DIR] [--cpus N] [--accounting]
    python tools/local_slurm.py stop  [--prefix DIR] [--purge]

Runs ``munged``, ``slurmctld`` and ``slurmd`` (Debian packages ``munge slurmctld slurmd
slurm-client``) as root with every file under ``--prefix``: no systemd, no cgroups
(``proctrack/linuxproc``, ``task/none``). ``--accounting`` adds the accounting database
(Debian packages ``slurmdbd mariadb-server``: a private MariaDB server and ``slurmdbd`` under the
prefix), so that ``sacct`` answers; NeMo-Run's ``SlurmExecutor`` reads job states only from
``sacct``. Job records reach ``sacct`` a few seconds after a job ends. ``--cpus N`` advertises N
single-thread CPUs (``config_overrides``) so that several one-CPU jobs share a small machine.
The ports are picked free at start. Starting is idempotent: a cluster already up under the
prefix is reused. Clients find the cluster through ``SLURM_CONF``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

BINARIES = ("munged", "munge", "unmunge", "slurmctld", "slurmd", "sinfo", "scontrol", "sbatch")
#: More binaries that ``--accounting`` needs.
ACCOUNTING_BINARIES = ("slurmdbd", "sacct", "sacctmgr", "mariadbd", "mariadb-install-db", "mariadb")


class SlurmStartError(RuntimeError):
    """The cluster could not be brought up; the message says which step failed."""


def default_prefix() -> Path:
    """``$TMPDIR/regmix-local-slurm``."""
    return Path(tempfile.gettempdir()) / "regmix-local-slurm"


def missing_requirements(*, accounting: bool = False) -> list[str]:
    """What prevents starting a cluster here (empty when it can be started)."""
    needed = BINARIES + (ACCOUNTING_BINARIES if accounting else ())
    problems = [f"{b} not on PATH" for b in needed if shutil.which(b) is None]
    if os.geteuid() != 0:
        problems.append("not root (slurmd must run as root)")
    return problems


def _alive(pidfile: Path) -> bool:
    try:
        pid = int(pidfile.read_text().strip())
    except (FileNotFoundError, ValueError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wait(what: str, check: Callable[[], bool], timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.2)
    raise SlurmStartError(f"timed out after {timeout:.0f} s waiting for {what}")


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def _ok(cmd: list[str], env: dict[str, str]) -> bool:
    return (
        subprocess.run(cmd, env=env, capture_output=True, timeout=10, check=False).returncode == 0
    )


def env_for(prefix: Path) -> dict[str, str]:
    """The environment clients need (``SLURM_CONF``) on top of this process's."""
    return {**os.environ, "SLURM_CONF": str(prefix / "etc" / "slurm.conf")}


def _node_line(host: str, cpus: int | None) -> tuple[str, str]:
    out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout
    line = out.splitlines()[0]
    fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
    mem = int(fields.get("RealMemory", "1024")) * 9 // 10  # never drained for "Low RealMemory"
    if cpus:
        node = (
            f"NodeName={host} CPUs={cpus} Boards=1 SocketsPerBoard=1 CoresPerSocket={cpus} "
            f"ThreadsPerCore=1 RealMemory={mem}"
        )
        return node, "SlurmdParameters=config_overrides"
    keep = ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore")
    parts = [f"{k}={fields[k]}" for k in keep if k in fields]
    return f"NodeName={host} {' '.join(parts)} RealMemory={mem}", ""


def cluster_up(prefix: Path, *, accounting: bool = False) -> bool:
    """Whether a cluster started under ``prefix`` is running and its node usable."""
    state = prefix / "state"
    daemons = ["slurmctld.pid", "slurmd.pid"] + (["slurmdbd.pid"] if accounting else [])
    if not all(_alive(state / f) for f in daemons):
        return False
    env = env_for(prefix)
    out = subprocess.run(
        ["sinfo", "-h", "-o", "%T"],
        env=env,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return out.returncode == 0 and any(
        s.strip().rstrip("*") in ("idle", "mixed", "allocated") for s in out.stdout.splitlines()
    )


def _start_database(prefix: Path, port: int) -> None:
    """A private MariaDB server under ``prefix/mysql`` with the ``slurm`` user slurmdbd uses."""
    db, logs = prefix / "mysql", prefix / "log"
    if not (db / "data" / "mysql").is_dir():
        with open(logs / "mariadb-install.log", "wb") as log:
            subprocess.run(
                [
                    "mariadb-install-db",
                    "--no-defaults",
                    f"--datadir={db / 'data'}",
                    "--user=root",
                    "--skip-test-db",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                check=True,
            )
    sock = db / "mysqld.sock"
    subprocess.Popen(
        [
            "mariadbd",
            "--no-defaults",
            f"--datadir={db / 'data'}",
            "--user=root",
            f"--socket={sock}",
            f"--port={port}",
            "--bind-address=127.0.0.1",
            f"--pid-file={db / 'mysqld.pid'}",
            f"--log-error={logs / 'mariadb.log'}",
            "--innodb-buffer-pool-size=64M",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    client = ["mariadb", "--no-defaults", "-S", str(sock), "-u", "root"]
    _wait("mariadbd", lambda: _ok([*client, "-e", "SELECT 1"], dict(os.environ)), 60)
    _wait("mariadbd's pid file", lambda: _alive(db / "mysqld.pid"), 10)
    sql = (
        "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';"
        "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1'; FLUSH PRIVILEGES;"
    )
    subprocess.run([*client, "-e", sql], check=True, capture_output=True)


def _start_dbd(prefix: Path, dbd_port: int, db_port: int, sock: Path) -> None:
    """``slurmdbd`` on ``dbd_port`` over the MariaDB on ``db_port``; waits for sacctmgr."""
    etc, state, logs = prefix / "etc", prefix / "state", prefix / "log"
    conf = etc / "slurmdbd.conf"
    conf.write_text(
        f"""# written by tools/local_slurm.py
AuthType=auth/munge
AuthInfo=socket={sock}
DbdHost=localhost
DbdPort={dbd_port}
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={db_port}
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
LogFile={logs / "slurmdbd.log"}
PidFile={state / "slurmdbd.pid"}
"""
    )
    conf.chmod(0o600)  # slurmdbd refuses a config others can read
    env = env_for(prefix)
    subprocess.run(["slurmdbd"], env=env, check=True, capture_output=True)
    _wait(
        "slurmdbd (sacctmgr show cluster)",
        lambda: _ok(["sacctmgr", "-n", "show", "cluster"], env),
        60,
    )


def start(
    prefix: Path | None = None, *, cpus: int | None = None, accounting: bool = False
) -> dict[str, str]:
    """Bring the cluster up (or reuse it); returns the client environment.

    ``accounting``: also a MariaDB server and ``slurmdbd``, so that ``sacct`` answers.
    """
    prefix = (prefix or default_prefix()).resolve()
    problems = missing_requirements(accounting=accounting)
    if problems:
        raise SlurmStartError("cannot start a local Slurm cluster: " + "; ".join(problems))
    if cluster_up(prefix, accounting=accounting):
        return env_for(prefix)
    closed = [
        str(p) for p in (prefix, *prefix.parents) if p.exists() and not p.stat().st_mode & 0o001
    ]
    if closed:
        raise SlurmStartError(
            f"munged needs every folder above its socket to be o+x; not so: {closed}. "
            "Use a --prefix under a world-traversable folder (the default is $TMPDIR)"
        )
    stop(prefix)
    etc, state, logs, munge_dir = (prefix / d for d in ("etc", "state", "log", "munge"))
    for d in (etc, state / "ctld", state / "d", logs, munge_dir):
        d.mkdir(parents=True, exist_ok=True)
    munge_dir.chmod(0o755)  # munged refuses a socket folder others cannot traverse
    host = socket.gethostname().split(".")[0]
    ctld_port, slurmd_port, dbd_port, db_port = _free_ports(4)
    node, extra = _node_line(host, cpus)
    sock = munge_dir / "munge.socket.2"
    # Connections to slurmdbd take the munge socket from AccountingStoragePass, not AuthInfo.
    accounting_lines = (
        "AccountingStorageType=accounting_storage/slurmdbd\nAccountingStorageHost=localhost\n"
        f"AccountingStoragePort={dbd_port}\nAccountingStoragePass={sock}"
        if accounting
        else "AccountingStorageType=accounting_storage/none"
    )
    conf = f"""# written by tools/local_slurm.py
ClusterName=regmix
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={sock}
StateSaveLocation={state / "ctld"}
SlurmdSpoolDir={state / "d"}
SlurmctldPidFile={state / "slurmctld.pid"}
SlurmdPidFile={state / "slurmd.pid"}
SlurmctldLogFile={logs / "slurmctld.log"}
SlurmdLogFile={logs / "slurmd.log"}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
{accounting_lines}
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
MinJobAge=300
{extra}
{node} NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""
    (etc / "slurm.conf").write_text(conf)
    env = env_for(prefix)

    key = munge_dir / "munge.key"
    if not key.is_file():
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
    subprocess.run(
        [
            "munged",
            f"--key-file={key}",
            f"--socket={sock}",
            f"--pid-file={munge_dir / 'munged.pid'}",
            f"--seed-file={munge_dir / 'munged.seed'}",
            f"--log-file={logs / 'munged.log'}",
        ],
        check=True,
        capture_output=True,
    )

    def munge_works() -> bool:
        cred = subprocess.run(["munge", "-n", "-S", str(sock)], capture_output=True, check=True)
        return (
            subprocess.run(
                ["unmunge", "-S", str(sock)], input=cred.stdout, capture_output=True, check=False
            ).returncode
            == 0
        )

    _wait("munged", munge_works, 15)
    if accounting:
        _start_database(prefix, db_port)
        _start_dbd(prefix, dbd_port, db_port, sock)
    subprocess.run(["slurmctld"], env=env, check=True, capture_output=True)
    _wait("slurmctld (scontrol ping)", lambda: _ok(["scontrol", "ping"], env), 30)
    subprocess.run(["slurmd"], env=env, check=True, capture_output=True)
    try:
        _wait("the node to become idle", lambda: cluster_up(prefix, accounting=accounting), 60)
    except SlurmStartError as exc:
        tail = ""
        for name in ("slurmctld.log", "slurmd.log", "slurmdbd.log"):
            with contextlib.suppress(FileNotFoundError):
                tail += f"\n--- {name}\n" + "\n".join((logs / name).read_text().splitlines()[-10:])
        raise SlurmStartError(f"{exc}{tail}") from None
    return env


def stop(prefix: Path | None = None, *, purge: bool = False) -> None:
    """Stop what ``start`` started, by pid file (newest first); ``purge`` removes the prefix."""
    prefix = (prefix or default_prefix()).resolve()
    for pidfile in (
        prefix / "state" / "slurmd.pid",
        prefix / "state" / "slurmctld.pid",
        prefix / "state" / "slurmdbd.pid",
        prefix / "mysql" / "mysqld.pid",
        prefix / "munge" / "munged.pid",
    ):
        if not _alive(pidfile):
            continue
        pid = int(pidfile.read_text().strip())
        os.kill(pid, signal.SIGTERM)
        end = time.monotonic() + 20
        while time.monotonic() < end and _alive(pidfile):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 0)
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(FileNotFoundError):
            pidfile.unlink()
    if purge:
        shutil.rmtree(prefix, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """Command line: start or stop."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("start", "stop"))
    parser.add_argument("--prefix", type=Path, default=None, help="where config, state, logs live")
    parser.add_argument("--cpus", type=int, default=None, help="CPUs to advertise")
    parser.add_argument("--purge", action="store_true", help="stop: also delete the prefix")
    parser.add_argument(
        "--accounting", action="store_true", help="start: also MariaDB + slurmdbd (sacct)"
    )
    args = parser.parse_args(argv)
    if args.action == "stop":
        stop(args.prefix, purge=args.purge)
        return 0
    try:
        env = start(args.prefix, cpus=args.cpus, accounting=args.accounting)
    except SlurmStartError as exc:
        print(f"local_slurm: {exc}", file=sys.stderr)
        return 1
    print(f"export SLURM_CONF={env['SLURM_CONF']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
