"""Fixtures of the sweep tests: study configs on real ``.bin/.idx`` domains, and a real Slurm.

``make_sweep`` writes a study YAML (domains on real corpora, a tiny proxy section, a ``sweep``
section) and its ``mixtures.csv``. The ``fake_command`` template runs ``fake_proxy.py``, a
stand-in used only for the launcher and fault mechanics; the tests that check results run the
real ``regmix train-proxy``. ``slurm_cluster`` starts a single-node Slurm cluster on localhost
with ``tools/local_slurm.py`` for the session and stops it at the end.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sweep_helpers import DOMAINS, REPO, VOCAB, SweepFixture


@pytest.fixture
def make_sweep(make_corpus: Callable[..., dict[str, str]], tmp_path: Path) -> SweepFixture:
    """A study over three real domains; call ``.write(sweep_section)`` to (re)write it."""
    prefixes = make_corpus({d: 120 for d in DOMAINS}, vocab=VOCAB, mean_len=64)
    return SweepFixture(tmp_path, prefixes)


def _load_local_slurm() -> Any:
    spec = importlib.util.spec_from_file_location("local_slurm", REPO / "tools" / "local_slurm.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["local_slurm"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def local_slurm() -> Any:
    """The ``tools/local_slurm.py`` module."""
    return _load_local_slurm()


@pytest.fixture(scope="session")
def slurm_cluster(local_slurm: Any) -> Iterator[dict[str, str]]:
    """A real single-node Slurm cluster for the session; ``SLURM_CONF`` is set while it runs."""
    from _requirements import require_or_skip

    problems = local_slurm.missing_requirements()
    require_or_skip(not problems, f"no local Slurm cluster possible: {problems}")
    # munged wants every folder above its socket world-traversable; pytest's are 0700.
    prefix = Path(tempfile.mkdtemp(prefix="regmix-test-slurm-"))
    prefix.chmod(0o755)
    env = local_slurm.start(prefix, cpus=4)
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = env["SLURM_CONF"]
    try:
        yield env
    finally:
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old
        local_slurm.stop(prefix, purge=True)
