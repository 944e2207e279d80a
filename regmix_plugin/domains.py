"""The domain catalogue: domain names -> Megatron prefixes, with token counts from ``.idx`` headers.

A study's ``domains:`` section lists the training domains. Each domain names one or more Megatron
dataset prefixes (a prefix is a path without ``.bin``/``.idx``; globs allowed) or, for planning
without data, gives its ``num_tokens`` directly. Token and document counts come from the ``.idx``
headers; the ``.bin`` files are never read (only their size is checked against the header)::

    domains:
      num_target_tokens: 25e9      # token budget of the final run (sets the epoch caps)
      max_epochs: 4                # default cap on passes over any one domain (omit: uncapped)
      prior: token_shares          # or {arxiv: 0.2, web: 0.8}: the Dirichlet prior of `sample`
      entries:
        - name: arxiv
          prefixes: [data/arxiv/*_text_document]
        - name: web
          prefixes: [data/web_a_text_document, data/web_b_text_document]
          max_epochs: 1

The token shares are the default prior. A domain's weight cap for a run of ``N`` tokens is
``max_epochs * num_tokens / N``: above it the run would repeat the domain more than ``max_epochs``
times.
"""

from __future__ import annotations

import glob
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from regmix_plugin.config import to_dict
from regmix_plugin.errors import ConfigError, DataError
from regmix_plugin.fingerprint import fingerprint
from regmix_plugin.indexed import read_index_counts
from regmix_plugin.tables import WEIGHT_SUM_TOLERANCE
from regmix_plugin.textable import format_table

_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")
_GLOB_CHARS = frozenset("*?[")


@dataclass(kw_only=True, frozen=True)
class DomainConfig:
    """One entry of ``domains.entries``."""

    name: str
    """The domain's name: letters, digits, ``_``, ``.`` and ``-`` (a column of mixtures.csv)."""
    prefixes: list[str] = field(default_factory=list)
    """Megatron prefixes (paths without ``.bin``/``.idx``), globs allowed, relative to the config
    file. Leave empty only for a planning domain that gives ``num_tokens``."""
    num_tokens: int | None = None
    """Planning without files: the domain's token count. Only when ``prefixes`` is empty."""
    num_documents: int | None = None
    """Planning without files: the domain's document count (optional, with ``num_tokens``)."""
    max_epochs: float | None = None
    """Cap on passes over this domain in the final run; overrides ``domains.max_epochs``."""

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise ValueError(
                f"domain name {self.name!r} may hold only letters, digits, '_', '.' and '-'"
            )
        if self.prefixes and self.num_tokens is not None:
            raise ValueError(
                f"domain {self.name!r} gives both prefixes and num_tokens; token counts come from "
                "the .idx files, so drop num_tokens (it is only for planning without data)"
            )
        if not self.prefixes and self.num_tokens is None:
            raise ValueError(
                f"domain {self.name!r} gives neither prefixes nor num_tokens; list its Megatron "
                "prefixes (or give num_tokens to plan without data)"
            )
        if self.num_documents is not None and self.num_tokens is None:
            raise ValueError(
                f"domain {self.name!r}: num_documents goes with num_tokens (planning only); "
                "with prefixes the counts come from the .idx files"
            )
        if self.num_tokens is not None and self.num_tokens <= 0:
            raise ValueError(f"domain {self.name!r}: num_tokens must be > 0, got {self.num_tokens}")
        if self.num_documents is not None and self.num_documents < 0:
            raise ValueError(
                f"domain {self.name!r}: num_documents must be >= 0, got {self.num_documents}"
            )
        _check_max_epochs(self.max_epochs, f"domain {self.name!r}: max_epochs")
        for p in self.prefixes:
            if p.endswith((".bin", ".idx")):
                raise ValueError(
                    f"domain {self.name!r}: prefix {p!r} ends in .bin/.idx; give the prefix "
                    f"without the extension ({p[:-4]!r})"
                )


@dataclass(kw_only=True, frozen=True)
class DomainsConfig:
    """The ``domains`` section of a study config."""

    entries: list[DomainConfig]
    """The domains, in the order of the columns of mixtures.csv."""
    num_target_tokens: int
    """Token budget of the final run: with each domain's tokens it sets the epoch caps."""
    max_epochs: float | None = None
    """Default cap on passes over any one domain in the final run (none: uncapped)."""
    prior: str | dict[str, float] = "token_shares"
    """The Dirichlet prior of ``sample``: ``token_shares``, or a mapping domain -> weight that
    names every domain and sums to 1."""

    def __post_init__(self) -> None:
        if not self.entries:
            raise ValueError("entries is empty; list at least one domain")
        names = [d.name for d in self.entries]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate domain name(s) {dup}; each domain must appear once")
        if self.num_target_tokens <= 0:
            raise ValueError(f"num_target_tokens must be > 0, got {self.num_target_tokens}")
        _check_max_epochs(self.max_epochs, "max_epochs")
        if isinstance(self.prior, str):
            if self.prior != "token_shares":
                raise ValueError(
                    f"prior {self.prior!r} is unknown; use 'token_shares' or a mapping "
                    "domain -> weight"
                )
        else:
            _check_weights(self.prior, names, "prior", positive=True)


def _check_max_epochs(value: float | None, where: str) -> None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise ValueError(f"{where} must be a positive number (or omitted), got {value}")


def _check_weights(
    weights: Mapping[str, float],
    names: Sequence[str],
    where: str,
    *,
    positive: bool = False,
    tolerance: float = WEIGHT_SUM_TOLERANCE,
) -> None:
    """Raise ``ValueError`` unless ``weights`` names exactly ``names``, is finite and sums to 1."""
    unknown = [n for n in weights if n not in names]
    if unknown:
        raise ValueError(
            f"{where} names unknown domain(s) {unknown}; the domains are {list(names)}"
        )
    missing = [n for n in names if n not in weights]
    if missing:
        raise ValueError(
            f"{where} gives no weight for domain(s) {missing}; give every domain a weight "
            "(0 leaves a domain out)" + (", and every prior must be > 0" if positive else "")
        )
    for n in names:
        w = float(weights[n])
        if not math.isfinite(w) or w < 0 or (positive and w == 0):
            limit = "> 0" if positive else ">= 0"
            raise ValueError(f"{where}: weight of {n!r} is {w}; it must be finite and {limit}")
    total = math.fsum(float(weights[n]) for n in names)
    if abs(total - 1.0) > tolerance:
        raise ValueError(
            f"{where}: the weights sum to {total!r}, not 1 (tolerance {tolerance:g}); fix them "
            "so that they sum to 1 (nothing is renormalised silently)"
        )


@dataclass(frozen=True)
class Domain:
    """One resolved domain of the catalogue."""

    name: str
    """The domain's name."""
    prefixes: list[str]
    """Resolved absolute prefixes, sorted, globs expanded (empty for a planning domain)."""
    prefix_tokens: list[int]
    """Tokens of each prefix, in the order of ``prefixes``."""
    prefix_documents: list[int]
    """Documents of each prefix, in the order of ``prefixes``."""
    num_tokens: int
    """Tokens of the domain (from the ``.idx`` headers, or as configured when planning)."""
    num_documents: int | None
    """Documents of the domain; None for a planning domain that does not give them."""
    max_epochs: float | None
    """The effective cap on passes over the domain (its own or the section default)."""
    patterns: list[str] = field(default_factory=list)
    """The prefixes as written in the config."""

    @property
    def is_planning(self) -> bool:
        """True when the domain has no files (``num_tokens`` given directly)."""
        return not self.prefixes


@dataclass(frozen=True)
class Catalogue:
    """The resolved domain catalogue of a study."""

    domains: list[Domain]
    """The domains, in config order (the column order of mixtures.csv)."""
    num_target_tokens: int
    """Token budget of the final run."""
    config: DomainsConfig
    """The section it was built from."""

    @property
    def names(self) -> list[str]:
        """Domain names in catalogue order."""
        return [d.name for d in self.domains]

    def domain(self, name: str) -> Domain:
        """The domain called ``name``; an unknown name is a :class:`ConfigError`."""
        for d in self.domains:
            if d.name == name:
                return d
        raise ConfigError(f"unknown domain {name!r}; the catalogue has {self.names}")

    def token_counts(self) -> np.ndarray:
        """Tokens per domain (int64), catalogue order."""
        return np.array([d.num_tokens for d in self.domains], dtype=np.int64)

    def token_shares(self) -> np.ndarray:
        """Each domain's share of all tokens (float64, sums to 1)."""
        counts = self.token_counts().astype(np.float64)
        return counts / counts.sum()

    def prior(self) -> np.ndarray:
        """The configured Dirichlet prior (float64, catalogue order, sums to 1, all > 0)."""
        if isinstance(self.config.prior, str):
            return self.token_shares()
        p = np.array([float(self.config.prior[n]) for n in self.names], dtype=np.float64)
        return p / p.sum()

    def max_epochs(self) -> np.ndarray:
        """Per-domain epoch caps (inf where uncapped)."""
        return np.array(
            [math.inf if d.max_epochs is None else d.max_epochs for d in self.domains],
            dtype=np.float64,
        )

    def max_weights(self, num_tokens: int | None = None) -> np.ndarray:
        """Per-domain weight caps for a run of ``num_tokens`` (default ``num_target_tokens``).

        ``max_epochs * domain tokens / num_tokens``, inf where uncapped.
        """
        n = self.num_target_tokens if num_tokens is None else num_tokens
        if n <= 0:
            raise ConfigError(f"the token budget must be > 0, got {n}")
        return self.max_epochs() * self.token_counts().astype(np.float64) / float(n)

    def epochs(self, weights: Mapping[str, float], num_tokens: int | None = None) -> np.ndarray:
        """Passes over each domain that ``weights`` implies for a run of ``num_tokens`` tokens."""
        n = self.num_target_tokens if num_tokens is None else num_tokens
        w = self.weight_vector(weights, tolerance=math.inf)
        return w * float(n) / self.token_counts().astype(np.float64)

    def weight_vector(
        self, weights: Mapping[str, float], *, tolerance: float = WEIGHT_SUM_TOLERANCE
    ) -> np.ndarray:
        """``weights`` as a vector in catalogue order, checked: every domain, finite, >= 0, sum 1.

        Raises :class:`DataError` for unknown or missing domains, bad values, or a sum off 1 by
        more than ``tolerance``.
        """
        try:
            _check_weights(weights, self.names, "the mixture", tolerance=tolerance)
        except ValueError as exc:
            raise DataError(str(exc)) from None
        return np.array([float(weights[n]) for n in self.names], dtype=np.float64)

    def blend(
        self, weights: Mapping[str, float], *, tolerance: float = WEIGHT_SUM_TOLERANCE
    ) -> list[tuple[str, float]]:
        """The flat Megatron blend of a mixture: ``(prefix, weight)`` pairs in catalogue order.

        A domain's weight is split over its prefixes in proportion to their tokens; domains of
        weight 0 are left out (Megatron rejects zero weights). The weights are not renormalised:
        ``weights`` must name every domain and sum to 1 (within ``tolerance``).
        """
        w = self.weight_vector(weights, tolerance=tolerance)
        out: list[tuple[str, float]] = []
        for d, wd in zip(self.domains, w, strict=True):
            if wd == 0.0:
                continue
            if d.is_planning:
                raise ConfigError(
                    f"domain {d.name!r} has no prefixes (it gives num_tokens for planning), so "
                    "it cannot be blended; list its Megatron prefixes in domains.entries"
                )
            total = float(d.num_tokens)
            for prefix, tokens in zip(d.prefixes, d.prefix_tokens, strict=True):
                if tokens > 0:
                    out.append((prefix, float(wd) * tokens / total))
        return out


def _resolve_prefixes(entry: DomainConfig, index: int) -> list[str]:
    """The entry's prefixes (absolute, as :mod:`regmix_plugin.study` resolved them), globs
    expanded against ``.idx`` files, sorted."""
    where = f"domains.entries[{index}] ({entry.name!r}).prefixes"
    found: set[str] = set()
    for pattern in entry.prefixes:
        full = os.path.normpath(pattern)
        if any(c in _GLOB_CHARS for c in full):
            matches = sorted(m[: -len(".idx")] for m in glob.glob(f"{full}.idx"))
            if not matches:
                raise DataError(
                    f"{where}: pattern {pattern!r} matches no .idx file; fix the pattern or the "
                    "paths in the config (relative paths are relative to the config file)"
                )
            found.update(os.path.abspath(m) for m in matches)
        else:
            if not Path(f"{full}.idx").is_file():
                raise DataError(
                    f"{where}: prefix {pattern!r} has no index file {full}.idx; fix the path "
                    "(relative paths are relative to the config file)"
                )
            found.add(os.path.abspath(full))
    return sorted(found)


def _file_stat(path: str) -> list[int]:
    """``[size, mtime_ns]`` of a file, ``[-1, -1]`` when it is missing."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return [-1, -1]
    return [int(st.st_size), int(st.st_mtime_ns)]


def prefix_files(prefix: str) -> dict[str, list[int]]:
    """Size and modification time (ns) of a prefix's ``.bin`` and ``.idx``."""
    return {"bin": _file_stat(f"{prefix}.bin"), "idx": _file_stat(f"{prefix}.idx")}


def data_signature(config: DomainsConfig, extra_prefixes: Sequence[str] = ()) -> list[Any]:
    """What the catalogue's data looks like on disk, from ``stat`` alone (no file is read).

    Globs are expanded; each prefix gives its ``.bin``/``.idx`` sizes and modification times.
    It changes when a prefix is added, removed or rewritten: the pipeline's ``domains`` stage
    hashes it, so changed data reruns exactly the stages that read the catalogue.
    """
    out: list[Any] = []
    for i, entry in enumerate(config.entries):
        try:
            prefixes = _resolve_prefixes(entry, i) if entry.prefixes else []
        except DataError as exc:
            prefixes = [f"<unresolved: {exc}>"]
        out.append([entry.name, [[p, prefix_files(p)] for p in prefixes]])
    out.append(["<extra>", [[p, prefix_files(p)] for p in extra_prefixes]])
    return out


#: Catalogues built in this process, by config and data signature: the ``.idx`` headers of a
#: study are read once per process, however many stages ask.
_CATALOGUES: dict[str, Catalogue] = {}


def load_catalogue(config: DomainsConfig) -> Catalogue:
    """Build the catalogue of a ``domains`` section (its prefixes already absolute).

    Expands globs and reads token and document counts from every ``.idx`` header, once per
    process for the same section and unchanged files. Raises :class:`ConfigError` for a prefix
    in two domains and :class:`DataError` for missing or corrupt files.
    """
    key = fingerprint([to_dict(config), data_signature(config)], length=64)
    cached = _CATALOGUES.get(key)
    if cached is not None:
        return cached
    catalogue = _build_catalogue(config)
    _CATALOGUES[key] = catalogue
    return catalogue


def _planning_domain(entry: DomainConfig, max_epochs: float | None) -> Domain:
    assert entry.num_tokens is not None
    return Domain(
        name=entry.name,
        prefixes=[],
        prefix_tokens=[],
        prefix_documents=[],
        num_tokens=entry.num_tokens,
        num_documents=entry.num_documents,
        max_epochs=max_epochs,
    )


def _build_catalogue(cfg: DomainsConfig) -> Catalogue:
    domains: list[Domain] = []
    owner: dict[str, str] = {}
    for i, entry in enumerate(cfg.entries):
        max_epochs = entry.max_epochs if entry.max_epochs is not None else cfg.max_epochs
        if not entry.prefixes:
            domains.append(_planning_domain(entry, max_epochs))
            continue
        prefixes = _resolve_prefixes(entry, i)
        for p in prefixes:
            if p in owner:
                raise ConfigError(
                    f"prefix {p!r} belongs to both domain {owner[p]!r} and domain "
                    f"{entry.name!r}; a prefix may belong to one domain only"
                )
            owner[p] = entry.name
        counts = [read_index_counts(p) for p in prefixes]
        num_tokens = sum(c.num_tokens for c in counts)
        if num_tokens == 0:
            raise DataError(
                f"domain {entry.name!r}: its prefixes {prefixes} hold no tokens; remove the "
                "domain or point it at data"
            )
        domains.append(
            Domain(
                name=entry.name,
                prefixes=prefixes,
                prefix_tokens=[c.num_tokens for c in counts],
                prefix_documents=[c.num_documents for c in counts],
                num_tokens=num_tokens,
                num_documents=sum(c.num_documents for c in counts),
                max_epochs=max_epochs,
                patterns=list(entry.prefixes),
            )
        )
    return Catalogue(domains=domains, num_target_tokens=cfg.num_target_tokens, config=cfg)


def catalogue_record(catalogue: Catalogue) -> dict[str, Any]:
    """The catalogue as plain data (the ``domains`` stage's ``catalogue.json``): per domain and
    prefix its documents, tokens, and the ``.bin``/``.idx`` sizes and modification times."""
    return {
        "num_target_tokens": catalogue.num_target_tokens,
        "domains": [
            {
                "name": d.name,
                "num_tokens": d.num_tokens,
                "num_documents": d.num_documents,
                "max_epochs": d.max_epochs,
                "prefixes": [
                    {
                        "prefix": p,
                        "num_tokens": t,
                        "num_documents": n,
                        **{
                            f"{ext}_{k}": v
                            for ext, (size, mtime) in prefix_files(p).items()
                            for k, v in (("bytes", size), ("mtime_ns", mtime))
                        },
                    }
                    for p, t, n in zip(d.prefixes, d.prefix_tokens, d.prefix_documents, strict=True)
                ],
            }
            for d in catalogue.domains
        ],
    }


def _shown(path: str, base: Path | None) -> str:
    """A path as the user wrote it: relative to ``base`` when it lies under it."""
    if base is not None:
        rel = os.path.relpath(path, base)
        if not rel.startswith(".."):
            return rel
    return path


def format_catalogue(catalogue: Catalogue, base: Path | None = None) -> str:
    """The catalogue as a text table: domain, prefixes, documents, tokens, share (and caps).

    Prefixes under ``base`` (the config file's folder) are shown relative to it.
    """
    shares = catalogue.token_shares()
    prior = catalogue.prior()
    caps = catalogue.max_weights()
    explicit_prior = not isinstance(catalogue.config.prior, str)
    header = ["domain", "prefixes", "documents", "tokens", "share"]
    if explicit_prior:
        header.append("prior")
    header += ["max_epochs", "max_weight"]
    rows: list[list[str]] = []
    for d, s, p, c in zip(catalogue.domains, shares, prior, caps, strict=True):
        if d.is_planning:
            pref = "(planning: num_tokens)"
        elif len(d.prefixes) == 1:
            pref = _shown(d.patterns[0] if len(d.patterns) == 1 else d.prefixes[0], base)
        else:
            pref = f"{len(d.prefixes)}: {', '.join(_shown(p, base) for p in d.patterns)}"
        row = [
            d.name,
            pref,
            "-" if d.num_documents is None else f"{d.num_documents:,}",
            f"{d.num_tokens:,}",
            f"{s:.4f}",
        ]
        if explicit_prior:
            row.append(f"{p:.4f}")
        row += [
            "-" if d.max_epochs is None else f"{d.max_epochs:g}",
            "-" if math.isinf(c) else f"{min(c, 1.0):.4f}",
        ]
        rows.append(row)
    num_docs = [d.num_documents for d in catalogue.domains]
    total = ["total", "", "", f"{int(catalogue.token_counts().sum()):,}", "1.0000"]
    if all(n is not None for n in num_docs):
        total[2] = f"{sum(n for n in num_docs if n is not None):,}"
    total += [""] * (len(header) - len(total))
    numeric = {"documents", "tokens", "share", "prior", "max_epochs", "max_weight"}
    out = [format_table(header, rows, numeric=[h in numeric for h in header], footer=[total])]
    out.append(
        f"target run: {catalogue.num_target_tokens:,} tokens; "
        f"prior: {'explicit' if explicit_prior else 'token shares'}"
    )
    if np.all(np.isfinite(caps)) and caps.sum() < 1.0:
        out.append(
            f"warning: the weight caps sum to {caps.sum():.4f} < 1, so no mixture respects "
            "them; raise max_epochs or lower num_target_tokens"
        )
    return "\n".join(out)
