"""Fixtures of the proxy tests (helpers in ``proxy_corpus.py``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from proxy_corpus import study_dict, write_band_corpus


@pytest.fixture(scope="module")
def band_corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Three domains of 200 documents each, written once per module."""
    folder = tmp_path_factory.mktemp("corpus")
    return write_band_corpus(folder, {"a": 200, "b": 200, "c": 200})


@pytest.fixture
def make_study(tmp_path: Path) -> Callable[..., dict[str, Any]]:
    """Factory: ``make_study(docs={"a": 200, ...}, **proxy_overrides)`` writes its own corpus."""

    def make(docs: dict[str, int] | None = None, **proxy: Any) -> dict[str, Any]:
        prefixes = write_band_corpus(tmp_path / "data", docs or {"a": 200, "b": 200, "c": 200})
        return study_dict(prefixes, tmp_path, **proxy)

    return make
