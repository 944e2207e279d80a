"""A synthetic multi-domain corpus whose best training mixture is known by construction.

Each domain is its own first-order Markov (bigram) token process over a shared vocabulary, with a
sparse random transition matrix. The *target* validation set is drawn from a hidden mixture ``h``
of those processes: each target document comes from domain ``k`` with probability ``h_k``. A
language model trained on mixture ``w`` learns (roughly) the ``w``-weighted mixture of the bigram
processes, and its cross-entropy on the target is lowest when ``w`` is near ``h``: the quickstart's
planted optimum.

Domain sizes are chosen so that the token prior differs from ``h``; neither the prior nor uniform
weights are the answer. Everything is written as real ``.bin/.idx`` files by megatron-core's writer.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from regmix_plugin.config import to_dict
from regmix_plugin.corpus import write_indexed_dataset
from regmix_plugin.errors import ConfigError
from regmix_plugin.fingerprint import fingerprint as content_fingerprint
from regmix_plugin.io import atomic_write_json

log = logging.getLogger(__name__)

#: Bumped whenever the generator's output for a given config changes.
GENERATOR_VERSION = 1
TARGET_NAME = "target"


@dataclass(kw_only=True, frozen=True)
class SyntheticConfig:
    """Settings of the planted-optimum corpus (YAML section ``synthetic``)."""

    data_dir: str = "data"
    """Where the ``.bin/.idx`` files go, relative to the config file."""
    domains: dict[str, int]
    """Domain name -> number of documents (sizes set the token prior)."""
    hidden_weights: dict[str, float]
    """The planted optimum: the mixture the target set is drawn from (sums to 1)."""
    vocab_size: int = 64
    """Tokens are ids in ``[0, vocab_size)``."""
    mean_document_tokens: int = 256
    """Documents have a length uniform in ``[mean/2, 3*mean/2]``."""
    num_target_documents: int = 400
    """Documents in the target validation set."""
    sparsity: float = 0.1
    """Dirichlet concentration of each transition row: smaller means more distinct domains."""
    seed: int = 1234
    """Seed of the transition matrices and of the documents."""

    def __post_init__(self) -> None:
        if not self.domains:
            raise ValueError("synthetic.domains is empty; name at least two domains")
        if set(self.hidden_weights) != set(self.domains):
            raise ValueError(
                f"synthetic.hidden_weights names {sorted(self.hidden_weights)} but "
                f"synthetic.domains names {sorted(self.domains)}; give one hidden weight per domain"
            )
        w = np.array(list(self.hidden_weights.values()), dtype=float)
        if not np.all(np.isfinite(w)) or np.any(w < 0) or abs(w.sum() - 1) > 1e-9:
            raise ValueError(
                f"synthetic.hidden_weights must be >= 0 and sum to 1, got sum {w.sum()}"
            )
        if any(n <= 0 for n in self.domains.values()):
            raise ValueError("synthetic.domains: every domain needs at least one document")
        if not 2 <= self.vocab_size <= 65_000:
            raise ValueError(f"synthetic.vocab_size must be in [2, 65000], got {self.vocab_size}")
        if self.mean_document_tokens < 2 or self.num_target_documents < 1 or self.sparsity <= 0:
            raise ValueError(
                "synthetic: mean_document_tokens >= 2, num_target_documents >= 1, sparsity > 0"
            )


@dataclass(frozen=True)
class SyntheticCorpus:
    """What :func:`generate` wrote: one prefix per domain, the target prefix and the answer."""

    prefixes: dict[str, str]
    target_prefix: str
    hidden_weights: dict[str, float]
    num_tokens: dict[str, int] = field(default_factory=dict)


def _transition_matrices(cfg: SyntheticConfig, rng: np.random.Generator) -> list[np.ndarray]:
    v = cfg.vocab_size
    return [rng.dirichlet(np.full(v, cfg.sparsity), size=v) for _ in cfg.domains]


def _documents(
    transitions: np.ndarray, num_docs: int, mean_len: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Sample ``num_docs`` documents of one bigram process, all documents advanced in parallel."""
    v = transitions.shape[0]
    lengths = rng.integers(max(2, mean_len // 2), max(3, 3 * mean_len // 2 + 1), size=num_docs)
    tokens = np.empty((num_docs, int(lengths.max())), dtype=np.uint16)
    cdf = np.cumsum(transitions, axis=1)
    cdf[:, -1] = 1.0
    state = rng.integers(0, v, size=num_docs)
    tokens[:, 0] = state
    for t in range(1, tokens.shape[1]):
        u = rng.random(num_docs)
        state = np.minimum((u[:, None] > cdf[state]).sum(axis=1), v - 1)
        tokens[:, t] = state
    return [tokens[i, : lengths[i]].copy() for i in range(num_docs)]


def fingerprint(cfg: SyntheticConfig) -> str:
    """Hash of the settings and the generator version: identical corpora have identical prints."""
    return content_fingerprint({"v": GENERATOR_VERSION, **to_dict(cfg)})


def generate(cfg: SyntheticConfig, base_dir: str | Path) -> SyntheticCorpus:
    """Write the corpus under ``base_dir/cfg.data_dir`` (skipped when already there, same print)."""
    out = Path(base_dir) / cfg.data_dir
    names = list(cfg.domains)
    prefixes = {n: str(out / f"{n}_text_document") for n in names}
    target_prefix = str(out / f"{TARGET_NAME}_text_document")
    manifest = out / "synthetic.json"
    fp = fingerprint(cfg)
    if manifest.is_file():
        try:
            old = json.loads(manifest.read_text())
        except json.JSONDecodeError:
            old = {}
        complete = all(
            Path(f"{p}.{ext}").is_file()
            for p in [*prefixes.values(), target_prefix]
            for ext in ("bin", "idx")
        )
        if old.get("fingerprint") == fp and complete:
            log.info("synthetic corpus already in %s (fingerprint %s)", out, fp)
            return SyntheticCorpus(
                prefixes, target_prefix, dict(cfg.hidden_weights), old["num_tokens"]
            )
    if TARGET_NAME in cfg.domains:
        raise ConfigError(f"synthetic.domains: {TARGET_NAME!r} is reserved for the target set")
    rng = np.random.default_rng(cfg.seed)
    transitions = _transition_matrices(cfg, rng)
    num_tokens: dict[str, int] = {}
    for name, mat in zip(names, transitions, strict=True):
        docs = _documents(mat, cfg.domains[name], cfg.mean_document_tokens, rng)
        num_tokens[name] = write_indexed_dataset(prefixes[name], docs, dtype=np.uint16)
    # Target documents: each from domain k with probability h_k, in a random order.
    h = np.array([cfg.hidden_weights[n] for n in names])
    origin = rng.choice(len(names), size=cfg.num_target_documents, p=h)
    target_docs: list[np.ndarray] = [np.empty(0, dtype=np.uint16)] * cfg.num_target_documents
    for k, mat in enumerate(transitions):
        idx = np.flatnonzero(origin == k)
        for i, doc in zip(
            idx, _documents(mat, len(idx), cfg.mean_document_tokens, rng), strict=True
        ):
            target_docs[i] = doc
    num_tokens[TARGET_NAME] = write_indexed_dataset(target_prefix, target_docs, dtype=np.uint16)
    atomic_write_json(
        manifest,
        {
            "fingerprint": fp,
            "generator_version": GENERATOR_VERSION,
            "hidden_weights": dict(cfg.hidden_weights),
            "num_tokens": num_tokens,
            "config": to_dict(cfg),
        },
    )
    log.info("wrote synthetic corpus to %s: %s", out, num_tokens)
    return SyntheticCorpus(prefixes, target_prefix, dict(cfg.hidden_weights), num_tokens)


def target_cross_entropy(cfg: SyntheticConfig, weights: dict[str, float]) -> float:
    """The Bayes-optimal bigram model's target loss for training mixture ``weights`` (nats/token).

    The loss an infinitely trained bigram model of the ``weights``-mixture would reach on the
    target; the planted optimum minimises it at ``weights == hidden_weights``.
    """
    rng = np.random.default_rng(cfg.seed)
    transitions = _transition_matrices(cfg, rng)
    names = list(cfg.domains)
    stationary = []
    for mat in transitions:
        vals, vecs = np.linalg.eig(mat.T)
        s = np.abs(np.real(vecs[:, np.argmax(np.real(vals))]))
        stationary.append(s / s.sum())
    w = np.array([weights[n] for n in names])
    h = np.array([cfg.hidden_weights[n] for n in names])
    joint = sum(wk * s[:, None] * m for wk, s, m in zip(w, stationary, transitions, strict=True))
    model = joint / joint.sum(axis=1, keepdims=True)
    log_model = np.log(np.maximum(model, 1e-300))
    return float(
        -sum(
            hk * (s[:, None] * m * log_model).sum()
            for hk, s, m in zip(h, stationary, transitions, strict=True)
        )
    )
