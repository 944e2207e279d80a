"""Helpers of the proxy tests: a corpus of real ``.bin/.idx`` domains, a tiny proxy config.

The corpus is written once per test module by megatron-core's writer: each domain draws its
tokens uniformly from its own band of ids, so a proxy's loss on a domain says how much of that
domain it has seen.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from regmix_plugin.corpus import write_indexed_dataset
from regmix_plugin.domains import load_catalogue
from regmix_plugin.proxy.train import train_proxy
from regmix_plugin.study import StudyConfig, study_from_dict

VOCAB = 96
NUM_BANDS = 3


def write_band_corpus(folder: Path, docs: dict[str, int], *, seed: int = 0) -> dict[str, str]:
    """Write one prefix per domain; domain ``i`` uses token ids of band ``i % NUM_BANDS``."""
    rng = np.random.default_rng(seed)
    band = VOCAB // NUM_BANDS
    out = {}
    for i, (name, num_docs) in enumerate(docs.items()):
        lo = (i % NUM_BANDS) * band
        documents = [
            rng.integers(lo, lo + band, size=int(rng.integers(32, 96))) for _ in range(num_docs)
        ]
        prefix = folder / f"{name}_text_document"
        write_indexed_dataset(prefix, documents)
        out[name] = str(prefix)
    return out


def study_dict(prefixes: dict[str, str], config_dir: Path, **proxy: Any) -> dict[str, Any]:
    """A loaded-study dict over ``prefixes`` with a tiny ``proxy`` section (plus ``proxy``)."""
    section: dict[str, Any] = {
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
        "num_threads": 1,
    }
    section.update(proxy)
    return {
        "run_dir": str(config_dir / "run"),
        "domains": {
            "num_target_tokens": 10**6,
            "entries": [{"name": n, "prefixes": [p]} for n, p in prefixes.items()],
        },
        "proxy": section,
    }


def as_study(study: dict[str, Any] | StudyConfig, config_dir: Path | None = None) -> StudyConfig:
    """A study dict (relative paths relative to ``config_dir``, default: its run_dir's parent)
    as the typed study ``regmix`` builds from a YAML file."""
    if isinstance(study, StudyConfig):
        return study
    base = config_dir or Path(study["run_dir"]).parent
    return study_from_dict(study, base / "study.yaml")


def train(
    study: dict[str, Any] | StudyConfig, weights: dict[str, float], mixture_id: str, out: Path
) -> dict[str, Any]:
    """Train one proxy of a study, as ``regmix train-proxy`` does."""
    s = as_study(study)
    shared = s.layout.eval_cache if s.run_dir is not None else None
    return train_proxy(
        s.require("proxy"),
        load_catalogue(s.require("domains")),
        weights,
        mixture_id,
        out,
        eval_cache=shared,
    )
