"""Skip-or-fail for tests that need a heavy optional environment (NeMo venv, Slurm, chromium).

Locally a missing environment skips the test. CI sets ``REGMIX_REQUIRE_ALL=1`` (``.ci/run``), and
then a missing environment fails the test instead, so that a broken install cannot pass as skips.

    from _requirements import require_or_skip
    require_or_skip(shutil.which("sbatch") is not None, "Slurm client tools are not installed")
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

#: Set to 1 to turn every missing-requirement skip into a failure.
REQUIRE_ALL_ENV = "REGMIX_REQUIRE_ALL"
#: Path of the NeMo venv's python; default ``.venv-nemo/bin/python`` in the repository.
NEMO_PYTHON_ENV = "REGMIX_NEMO_PYTHON"
REPO_ROOT = Path(__file__).resolve().parents[1]


def require_all() -> bool:
    """True when missing requirements must fail (``REGMIX_REQUIRE_ALL=1``)."""
    return os.environ.get(REQUIRE_ALL_ENV, "").strip() not in ("", "0", "false", "no")


def require_or_skip(condition: bool, reason: str) -> None:
    """Return if ``condition`` holds; else skip, or fail when ``REGMIX_REQUIRE_ALL=1``."""
    if condition:
        return
    if require_all():
        pytest.fail(
            f"{reason} ({REQUIRE_ALL_ENV}=1: a missing requirement fails instead of skipping)",
            pytrace=False,
        )
    pytest.skip(reason)


def nemo_python() -> Path | None:
    """The NeMo venv's python: ``$REGMIX_NEMO_PYTHON``, else ``.venv-nemo/bin/python`` if built."""
    configured = os.environ.get(NEMO_PYTHON_ENV)
    if configured:
        p = Path(configured)
        return p if p.is_file() else None
    default = REPO_ROOT / ".venv-nemo" / "bin" / "python"
    return default if default.is_file() else None


def require_nemo_python() -> Path:
    """The NeMo venv's python, or skip/fail with the command that builds it."""
    p = nemo_python()
    require_or_skip(
        p is not None,
        f"the NeMo environment is missing: run `make nemo-env`, or set {NEMO_PYTHON_ENV} to the "
        "python of an environment with nemo-toolkit[llm,run]==2.7.3",
    )
    assert p is not None
    return p
