"""Fixtures of the proxy tests: a study over real ``.bin/.idx`` domains and a tiny proxy config."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

VOCAB = 96


@pytest.fixture
def make_study(
    make_corpus: Callable[..., dict[str, str]], tmp_path: Path
) -> Callable[..., dict[str, Any]]:
    """Factory: a loaded-study dict with ``domains`` (real prefixes) and a tiny ``proxy`` section.

    ``make_study(docs={"a": 200, "b": 200}, **proxy_overrides)``.
    """

    def make(docs: dict[str, int] | None = None, **proxy: Any) -> dict[str, Any]:
        prefixes = make_corpus(docs or {"a": 200, "b": 200, "c": 200}, vocab=VOCAB, mean_len=64)
        section = {
            "preset": "tiny",
            "vocab_size": VOCAB,
            "seq_length": 32,
            "num_tokens": 32 * 16 * 30,
            "micro_batch_size": 8,
            "global_batch_size": 16,
            "lr": 3e-3,
            "split": "80,20,0",
            "num_eval_tokens": 1024,
            "log_interval": 5,
            "num_threads": 2,
        }
        section.update(proxy)
        return {
            "run_dir": str(tmp_path / "run"),
            "domains": {
                "num_target_tokens": 10**6,
                "entries": [{"name": n, "prefixes": [p]} for n, p in prefixes.items()],
            },
            "proxy": section,
            "_config_dir": str(tmp_path),
        }

    return make
