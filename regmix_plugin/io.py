"""Atomic file writes: a reader never sees a half-written file, a crash leaves none behind."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from regmix_plugin.errors import ConfigError


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on success ``os.replace`` it onto ``path``.

    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open supports modes 'w' and 'wb', not {mode!r}")
    target = Path(path)
    if target.is_dir():
        raise ConfigError(
            f"cannot write the file {str(target)!r}: it is a folder; choose a file path"
        )
    check_output_path(target, "the output path")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        f: IO[Any]
        if mode == "wb":
            f = os.fdopen(fd, "wb")
        else:
            f = os.fdopen(fd, "w", encoding="utf-8", newline="")
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_open(path, "w") as f:
        f.write(text)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def remove_stale_temps(target: str | os.PathLike[str]) -> list[Path]:
    """Remove what a killed writer of ``target`` left beside it: ``.<name>.*`` temporary files
    (:func:`atomic_open`) and folders (a model folder built aside, ``.<name>.old``).

    Called by the next run of the stage that writes ``target``; returns what it removed.
    """
    import shutil

    t = Path(target)
    if not t.parent.is_dir():
        return []
    removed = []
    for p in sorted(t.parent.glob(f".{t.name}.*")):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        removed.append(p)
    return removed


def remove_stale_temps_in(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files :func:`atomic_open` left inside ``folder`` when a writer was
    killed (``.<name>.*.tmp``); returns what it removed."""
    f = Path(folder)
    if not f.is_dir():
        return []
    removed = []
    for p in sorted(f.glob(".*.tmp")):
        if p.is_file():
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
            removed.append(p)
    return removed


def check_output_folder(path: str | os.PathLike[str], setting: str) -> None:
    """An output folder must not be a file, nor lie under one: a ConfigError naming ``setting``
    (``--out``), before anything is written, rather than an OSError half-way."""
    p = Path(path)
    check_output_path(p, setting)
    if p.exists() and not p.is_dir():
        raise ConfigError(f"{setting} {str(p)!r} is a file, not a folder; choose a folder path")


def check_output_path(path: str | os.PathLike[str], setting: str) -> None:
    """An output path must not lie under an existing file (``--out model.yaml/x``), and must
    not itself be a folder when a file is written there."""
    p = Path(path)
    for parent in p.parents:
        if parent.exists() and not parent.is_dir():
            raise ConfigError(
                f"{setting} {str(p)!r} lies under {str(parent)!r}, which is a file, not a folder; "
                "choose another path"
            )


def append_json_line(path: str | os.PathLike[str], record: Any) -> None:
    """Append ``record`` as one JSON line to the log file ``path`` (created if absent).

    For logs only (timings): a line cut by a kill is skipped by :func:`read_json_lines`.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("a", encoding="utf-8") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")


def read_json_lines(path: str | os.PathLike[str]) -> list[Any]:
    """The records of a JSON-lines log (none when it is absent); unreadable lines are skipped."""
    p = Path(path)
    if not p.is_file():
        return []
    out = []
    for line in p.read_text(encoding="utf-8", errors="replace").splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            out.append(json.loads(line))
    return out
