"""Debian packages as text sources: install, version and file list, through dpkg and apt-get.

Only the ordinary clients are used: ``dpkg-query`` for versions and file lists, ``apt-get`` (as
root) to install what is missing. File lists are the package's own (``dpkg-query -L``), sorted,
regular files only (symbolic links are skipped, so no file is read twice under two names).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from regmix_plugin.errors import DataError

log = logging.getLogger(__name__)


def package_version(package: str) -> str | None:
    """The installed version of ``package``, or None when it is not installed."""
    if shutil.which("dpkg-query") is None:
        return None
    done = subprocess.run(
        ["dpkg-query", "-W", "-f", "${db:Status-Abbrev}\t${Version}", package],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        return None
    status, _, version = done.stdout.partition("\t")
    return version.strip() if status.startswith("ii") else None


def missing_packages(packages: Sequence[str]) -> list[str]:
    """The packages of ``packages`` that are not installed, sorted."""
    return sorted({p for p in packages if package_version(p) is None})


def is_root() -> bool:
    """True when this process may run apt-get."""
    return hasattr(os, "geteuid") and os.geteuid() == 0


def install_packages(packages: Sequence[str], *, install: bool = True) -> list[str]:
    """Make sure every package is installed; return the ones this call installed.

    Missing packages are installed as root with ``apt-get update`` (once) and ``apt-get install
    -y --no-install-recommends``. Without root, or with ``install=False``, a missing package is a
    :class:`DataError` that gives the command to run.
    """
    missing = missing_packages(packages)
    if not missing:
        return []
    command = "apt-get update && apt-get install -y --no-install-recommends " + " ".join(missing)
    if not install or not is_root() or shutil.which("apt-get") is None:
        raise DataError(f"the Debian packages {missing} are not installed; as root run: {command}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log.info("installing Debian packages %s", " ".join(missing))
    for argv in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
    ):
        done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            raise DataError(f"`{' '.join(argv)}` failed: {done.stderr.strip()[-2000:]}")
    still = missing_packages(missing)
    if still:
        raise DataError(f"apt-get ran but {still} are still not installed; run: {command}")
    return missing


def package_files(package: str) -> list[str]:
    """The regular files (not links, not folders) that ``package`` installed, sorted."""
    done = subprocess.run(
        ["dpkg-query", "-L", package], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise DataError(f"dpkg-query -L {package} failed: {done.stderr.strip()}")
    files = []
    for line in done.stdout.splitlines():
        p = Path(line.strip())
        if line.strip() and p.is_file() and not p.is_symlink():
            files.append(str(p))
    return sorted(set(files))
