"""The layer contracts of ``make check`` (import-linter): they hold, and a wrong-way import fails.

The contracts live in ``pyproject.toml`` (``[tool.importlinter]``). The second test copies the
package, adds one import that closes a cycle across the layers, and runs the real
``lint-imports`` on the copy: it must fail and name the offending import.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT), "--config", str(REPO / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _copy_package(tmp_path: Path) -> Path:
    root = tmp_path / "copy"
    shutil.copytree(
        REPO / "regmix_plugin",
        root / "regmix_plugin",
        ignore=shutil.ignore_patterns("*.so", "__pycache__"),
    )
    return root


def test_the_contracts_hold(tmp_path: Path) -> None:
    proc = _lint(_copy_package(tmp_path))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert ", 0 broken." in proc.stdout, proc.stdout[-2000:]


def test_a_deliberate_cycle_breaks_them(tmp_path: Path) -> None:
    root = _copy_package(tmp_path)
    tables = root / "regmix_plugin" / "tables.py"
    # tables (core) importing the pipeline closes a cycle: pipeline -> ... -> tables -> pipeline.
    tables.write_text(tables.read_text() + "\nfrom regmix_plugin import pipeline  # noqa\n")
    proc = _lint(root)
    assert proc.returncode != 0
    assert "regmix_plugin.tables is not allowed to import regmix_plugin.pipeline" in proc.stdout
