"""Content fingerprints: one canonical hash for configs, plans, caches and stage markers.

A fingerprint is the SHA-256 of the canonical JSON of plain data (keys sorted, no spaces,
paths and other objects as text), cut to ``length`` hex digits. Files are hashed by content
(:func:`hash_tree`), so a fingerprint changes exactly when what it describes changes.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any


def canonical_json(data: Any) -> str:
    """The canonical JSON text of plain data (sorted keys, compact, non-JSON values as text)."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)


def fingerprint(data: Any, length: int = 16) -> str:
    """``length`` hex digits of the SHA-256 of :func:`canonical_json` of ``data``."""
    return hashlib.sha256(canonical_json(data).encode("utf-8")).hexdigest()[:length]


def hash_tree(path: str | os.PathLike[str], h: Any) -> None:
    """Feed a file, or every file under a folder (sorted, hidden ones skipped), into ``h``.

    A missing path feeds a marker, so "absent" and "empty" differ.
    """
    p = Path(path)
    if p.is_dir():
        for f in sorted(p.rglob("*")):
            rel = f.relative_to(p)
            if f.is_file() and not any(part.startswith(".") for part in rel.parts):
                h.update(str(rel).encode())
                h.update(b"\0")
                h.update(f.read_bytes())
    elif p.is_file():
        h.update(p.read_bytes())
    else:
        h.update(b"<missing>")
