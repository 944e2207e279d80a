"""The RegMix mixture design: Dirichlet draws around a prior, under epoch caps (``regmix sample``).

Each draw picks a concentration strength ``s`` uniformly from ``num_strengths`` log-spaced values
in ``[min_strength, max_strength]`` and draws ``w ~ Dirichlet(s * p)``, where ``p`` is the
catalogue's prior raised to the power ``temperature`` and renormalised (``temperature`` 1 keeps the
prior, 0 makes it uniform). Small strengths give sparse mixtures, large ones mixtures near ``p``.
Then, per draw:

1. weights under ``min_weight`` are set to 0 and the rest renormalised;
2. the weights are rounded to multiples of ``grid`` by largest remainder, so they sum to exactly 1;
3. the draw is rejected if any domain's weight exceeds its cap ``max_epochs * tokens /
   num_target_tokens`` (the final run would repeat it more than ``max_epochs`` times);
4. duplicates are removed (first draw kept).

``num_mixtures * draw_multiplier`` draws are made; ``num_mixtures`` of the distinct accepted ones
are chosen uniformly at random (kept in draw order). Everything comes from one
``numpy.random.default_rng(seed)``, so a seed gives a byte-identical ``mixtures.csv``.

Replicates (to measure the proxies' seed noise): with ``num_anchor_mixtures`` A > 0 and
``num_seeds`` S >= 2, the first A mixtures (in draw order, so a random subset) are trained S
times. Their extra runs are rows of their own at the end of the table, with the same weights and
the id ``<mixture_id>.s<k>`` (k = 1 .. S-1, :func:`replicate_id`); the run of row ``<id>.s<k>``
trains with proxy seed ``proxy.seed + k``. The seed offsets and the groups of runs that share a
mixture are written beside the table (``mixtures.csv.seeds.json``, :func:`write_replicates`),
where the sweep and ``regmix train-proxy`` read them. The defaults (0 anchors, 1 seed) add no
row and no file: the design stays byte-identical.

The paper's settings (``configs/pile.yaml``): temperature 0.5, 15 strengths from 0.1 to 5, cap
15 x the token share, ``min_weight`` and ``grid`` 2e-4, 100 draws per mixture, 512 mixtures.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from regmix_plugin.blending.apportionment import largest_remainder
from regmix_plugin.config import parse_yaml, read_text_file, to_dict
from regmix_plugin.domains import Catalogue
from regmix_plugin.errors import ConfigError, DataError, InfeasibleError
from regmix_plugin.io import atomic_write_json
from regmix_plugin.simplex import dirichlet_mixed_strengths, tempered
from regmix_plugin.tables import (
    ID_COLUMN,
    WEIGHT_SUM_TOLERANCE,
    Table,
    check_weights_table,
    read_table,
    write_table,
)
from regmix_plugin.textable import format_table

#: Bumped whenever the draws for a given config and seed change.
SAMPLER_VERSION = 1
#: Draws are made in blocks of this many rows (fixed: the random stream depends on it).
_BLOCK = 4096


@dataclass(kw_only=True, frozen=True)
class ActiveSettings:
    """``sample.active``: the rounds of the sequential design (``sample.strategy: active``;
    the acquisition is :mod:`regmix_plugin.active`, docs/active.md)."""

    num_initial: int = 0
    """Mixtures of round 0, the Dirichlet design (0: half of ``sample.num_mixtures``)."""
    pool_multiplier: int = 1
    """Round 0 is thinned to a space-filling subset of ``pool_multiplier`` times as many
    Dirichlet mixtures (greedy maximin in Hellinger distance; 1: the Dirichlet design as is)."""
    num_rounds: int = 4
    """Rounds after round 0, at most (fewer when the stop rule fires)."""
    batch_size: int = 0
    """Mixtures picked per later round (0: the rest of the budget ``sample.num_mixtures``
    split evenly over ``num_rounds``)."""
    num_candidates: int = 20000
    """Simulated candidate mixtures scored by every ensemble member in each round."""
    local_fraction: float = 0.5
    """Share of the candidates drawn around the current best predicted mixtures (the rest
    from the Dirichlet prior, as ``regmix optimize`` draws)."""
    local_concentration: float = 50.0
    """Dirichlet concentration of the local candidates around a centre (larger: closer)."""
    min_distance: float = 0.05
    """Smallest L1 distance between a pick and any other pick or finished mixture."""
    top_k: int = 20
    """Each round's chosen mixture: the mean of the ``top_k`` candidates with the lowest
    ensemble-mean prediction (as ``regmix optimize`` chooses)."""
    stop_weight_tolerance: float = 0.0
    """Stop rule: with a value > 0, the rounds stop when the chosen mixture moved by at most
    this (L1) since the previous round, and its prediction by at most
    ``stop_value_tolerance``; 0: spend the whole budget."""
    stop_value_tolerance: float = 0.0
    """Stop rule: the largest change of the chosen mixture's predicted target that counts as
    not moving (used with ``stop_weight_tolerance`` > 0)."""

    def __post_init__(self) -> None:
        for name in ("num_initial", "batch_size"):
            if getattr(self, name) < 0:
                raise ValueError(f"active.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("pool_multiplier", "num_rounds", "num_candidates", "top_k"):
            if getattr(self, name) < 1:
                raise ValueError(f"active.{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.local_fraction <= 1.0:
            raise ValueError(f"active.local_fraction must be in [0, 1], got {self.local_fraction}")
        if not (math.isfinite(self.local_concentration) and self.local_concentration > 0):
            raise ValueError(
                f"active.local_concentration must be > 0, got {self.local_concentration}"
            )
        for name in ("min_distance", "stop_weight_tolerance", "stop_value_tolerance"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"active.{name} must be a finite number >= 0, got {v}")


@dataclass(kw_only=True, frozen=True)
class SampleConfig:
    """The ``sample`` section: how the proxy mixtures are drawn."""

    num_mixtures: int
    """How many distinct mixtures to write (the paper: 512)."""
    seed: int = 0
    """Seed of ``numpy.random.default_rng``; the same seed gives the same mixtures.csv."""
    temperature: float = 1.0
    """Exponent on the prior before renormalising: 1 keeps it, 0 makes it uniform (paper: 0.5)."""
    min_strength: float = 0.1
    """Smallest Dirichlet concentration strength (multiplies the prior)."""
    max_strength: float = 5.0
    """Largest Dirichlet concentration strength."""
    num_strengths: int = 15
    """How many log-spaced strengths between min and max; each draw picks one uniformly."""
    min_weight: float = 2e-4
    """Weights under this are set to 0 before renormalising and rounding."""
    grid: float = 2e-4
    """Weights are rounded to multiples of this (1/grid must be an integer)."""
    draw_multiplier: int = 100
    """Draws made per requested mixture; the mixtures are chosen among the accepted ones."""
    num_anchor_mixtures: int = 0
    """Mixtures of the design trained ``num_seeds`` times with different proxy seeds, to
    measure the proxies' seed noise (the first ones drawn; 0: none)."""
    num_seeds: int = 1
    """Proxy seeds per anchor mixture (``proxy.seed + k``, k = 0 .. num_seeds-1); with
    ``num_anchor_mixtures`` > 0 it must be >= 2."""
    strategy: Literal["dirichlet", "active"] = "dirichlet"
    """``dirichlet``: the whole design drawn up front (as the paper); ``active``: round 0 from
    the Dirichlet design, later rounds picked by the fitted ensemble (``active``, docs/active.md);
    ``num_mixtures`` is then the whole budget of the rounds."""
    active: ActiveSettings = field(default_factory=ActiveSettings)
    """The rounds of ``strategy: active`` (ignored with ``dirichlet``)."""

    def __post_init__(self) -> None:
        if self.strategy == "active" and self.initial_size() > self.num_mixtures:
            raise ValueError(
                f"active.num_initial {self.active.num_initial} exceeds num_mixtures "
                f"{self.num_mixtures} (the whole budget of the rounds)"
            )
        if self.strategy == "active" and self.num_anchor_mixtures > self.initial_size():
            raise ValueError(
                f"num_anchor_mixtures {self.num_anchor_mixtures} exceeds round 0's "
                f"{self.initial_size()} mixtures (the anchors are drawn in round 0); raise "
                "active.num_initial or lower num_anchor_mixtures"
            )
        if self.num_mixtures < 1:
            raise ValueError(f"num_mixtures must be >= 1, got {self.num_mixtures}")
        if not 0 <= self.num_anchor_mixtures <= self.num_mixtures:
            raise ValueError(
                f"num_anchor_mixtures must be in [0, num_mixtures={self.num_mixtures}], got "
                f"{self.num_anchor_mixtures}"
            )
        if self.num_seeds < 1:
            raise ValueError(f"num_seeds must be >= 1, got {self.num_seeds}")
        if (self.num_anchor_mixtures > 0) != (self.num_seeds > 1):
            raise ValueError(
                f"num_anchor_mixtures {self.num_anchor_mixtures} and num_seeds {self.num_seeds} "
                "repeat nothing: to measure seed noise set both (for example 4 anchors x 3 "
                "seeds), or leave both at their defaults 0 and 1"
            )
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not (0 < self.min_strength <= self.max_strength < math.inf):
            raise ValueError(
                "need 0 < min_strength <= max_strength, got "
                f"min_strength={self.min_strength}, max_strength={self.max_strength}"
            )
        if self.num_strengths < 1:
            raise ValueError(f"num_strengths must be >= 1, got {self.num_strengths}")
        if self.num_strengths == 1 and self.min_strength != self.max_strength:
            raise ValueError(
                "num_strengths is 1 but min_strength != max_strength; set both to the one "
                "strength, or raise num_strengths"
            )
        if not (0 <= self.min_weight < 1):
            raise ValueError(f"min_weight must be in [0, 1), got {self.min_weight}")
        if not (0 < self.grid <= 1):
            raise ValueError(f"grid must be in (0, 1], got {self.grid}")
        units = 1.0 / self.grid
        if abs(units - round(units)) > 1e-6 * units or round(units) > 10**9:
            raise ValueError(
                f"1/grid must be an integer of at most 1e9 (grid {self.grid} gives {units}); "
                "use a grid like 1e-3, 2e-4 or 1e-4"
            )
        if self.draw_multiplier < 1:
            raise ValueError(f"draw_multiplier must be >= 1, got {self.draw_multiplier}")

    def initial_size(self) -> int:
        """Mixtures of the first round: all of them with ``dirichlet``; ``active.num_initial``
        (0: half the budget, at least 1) with ``active``."""
        if self.strategy != "active":
            return self.num_mixtures
        return self.active.num_initial or max(1, self.num_mixtures // 2)

    def round_batch_size(self) -> int:
        """Mixtures picked per later round of ``active`` (``active.batch_size``, or the rest of
        the budget split evenly over the rounds)."""
        if self.active.batch_size:
            return self.active.batch_size
        rest = self.num_mixtures - self.initial_size()
        return max(1, -(-rest // self.active.num_rounds))

    @property
    def num_units(self) -> int:
        """Grid steps in 1: weights are integers out of this."""
        return round(1.0 / self.grid)

    def strengths(self) -> np.ndarray:
        """The log-spaced concentration strengths."""
        if self.num_strengths == 1:
            return np.array([self.min_strength])
        return np.geomspace(self.min_strength, self.max_strength, self.num_strengths)


# -- identities, reading and writing --------------------------------------------------------------


def canonical_weights(weights: Mapping[str, float]) -> str:
    """The canonical text of a mixture: non-zero weights, sorted by name, 12 decimals.

    Zero weights are left out (they do not change the blend); 12 decimals absorb float noise such
    as ``0.30000000000000004``.
    """
    parts = []
    for name in sorted(weights):
        w = float(weights[name])
        if not math.isfinite(w) or w < 0:
            raise DataError(f"weight of {name!r} is {w}; weights must be finite and >= 0")
        text = f"{w:.12f}".rstrip("0").rstrip(".")
        if text not in ("0", ""):
            parts.append(f"{name}={text}")
    return ";".join(parts)


def mixture_id(weights: Mapping[str, float]) -> str:
    """12 hex digits of the SHA-256 of :func:`canonical_weights`: same weights, same id."""
    return hashlib.sha256(canonical_weights(weights).encode("utf-8")).hexdigest()[:12]


@dataclass(frozen=True)
class Mixtures:
    """A mixtures table: ids, domain names and a weight matrix ``[len(ids), len(names)]``."""

    ids: list[str]
    """Mixture ids (``mixture_id``), one per row."""
    names: list[str]
    """Domain names, one per column."""
    weights: np.ndarray
    """float64 ``[len(ids), len(names)]``, rows sum to 1."""

    def __len__(self) -> int:
        return len(self.ids)

    def row(self, mixture: str) -> dict[str, float]:
        """The weights of one mixture as ``{domain: weight}``; an unknown id is a DataError."""
        try:
            i = self.ids.index(mixture)
        except ValueError:
            raise DataError(
                f"mixture {mixture!r} is not in the table ({len(self.ids)} mixtures, e.g. "
                f"{self.ids[:3]})"
            ) from None
        return {n: float(w) for n, w in zip(self.names, self.weights[i], strict=True)}

    def rows(self) -> list[dict[str, float]]:
        """Every mixture as ``{domain: weight}``, in table order."""
        return [{n: float(w) for n, w in zip(self.names, r, strict=True)} for r in self.weights]

    def table(self) -> Table:
        """As a :class:`regmix_plugin.tables.Table` (id column ``mixture_id``)."""
        return Table(ID_COLUMN, list(self.ids), list(self.names), self.weights)


def read_mixtures(
    path: str | os.PathLike[str], *, tolerance: float = WEIGHT_SUM_TOLERANCE
) -> Mixtures:
    """Read a mixtures table (first column the id, one weight column per domain).

    Every weight must be finite and >= 0 and every row must sum to 1 within ``tolerance``
    (the paper's released tables, rounded to 3 decimals, need ``tolerance=0.005``).
    """
    t = read_table(path)
    check_weights_table(t, path, tolerance=tolerance)
    w = t.values
    return Mixtures(ids=t.ids, names=t.columns, weights=w)


def write_mixtures(path: str | os.PathLike[str], mixtures: Mixtures) -> None:
    """Write ``mixtures.csv`` atomically (floats in shortest round-trip form)."""
    write_table(path, mixtures.table())


def load_weights_yaml(path: str | os.PathLike[str]) -> dict[str, float]:
    """The ``weights:`` mapping of a YAML file (the optimizer's ``weights.yaml``).

    Other top-level keys are allowed and ignored. Each weight must be a finite number >= 0;
    whether the names match a catalogue is checked where the weights are used.
    """
    p = Path(path)
    try:
        data = parse_yaml(read_text_file(p, "weights file"), str(p))
    except ConfigError as exc:
        raise DataError(str(exc)) from None
    if not isinstance(data, dict) or "weights" not in data:
        raise DataError(f"{p}: expected a top-level 'weights:' mapping of domain -> weight")
    raw = data["weights"]
    if not isinstance(raw, dict) or not raw:
        raise DataError(f"{p}: 'weights' must be a non-empty mapping of domain -> weight")
    out: dict[str, float] = {}
    for name, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise DataError(f"{p}: weights.{name} is {value!r}, not a number")
        w = float(value)
        if not math.isfinite(w) or w < 0:
            raise DataError(f"{p}: weights.{name} is {w}; weights must be finite and >= 0")
        out[str(name)] = w
    return out


# -- sampling -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SampleResult:
    """The mixtures drawn by :func:`sample_mixtures` and what happened to every draw."""

    mixtures: Mixtures
    """The chosen mixtures, in draw order, then the replicate rows."""
    summary: dict[str, Any] = field(default_factory=dict)
    """Counts and statistics (written as mixtures_summary.json)."""
    replicates: Replicates | None = None
    """The replicate runs of the anchor mixtures (None: no anchors)."""


# -- replicates -----------------------------------------------------------------------------------

_REPLICATE_SEP = ".s"


def replicate_id(mixture: str, k: int) -> str:
    """The row id of the ``k``-th replicate (k >= 1) of a mixture: ``<mixture>.s<k>``."""
    if k < 1:
        raise ValueError(f"replicate index must be >= 1, got {k}")
    return f"{mixture}{_REPLICATE_SEP}{k}"


@dataclass(frozen=True)
class Replicates:
    """The runs of a mixtures table that repeat a mixture with another proxy seed."""

    seed_offsets: dict[str, int]
    """Row id -> offset added to ``proxy.seed`` for its run (rows not listed: 0)."""
    groups: list[list[str]]
    """Row ids that share one mixture (the first is the mixture's own row), one list each."""

    def seed_offset(self, row: str) -> int:
        """The proxy seed offset of a row's run (0 for rows that are not replicates)."""
        return self.seed_offsets.get(row, 0)

    def group_of(self, row: str) -> list[str]:
        """The rows that share ``row``'s mixture (``[row]`` when it is not replicated)."""
        for group in self.groups:
            if row in group:
                return list(group)
        return [row]

    def to_json(self) -> dict[str, Any]:
        """The plain-data form written beside the mixtures table."""
        return {"seed_offsets": dict(self.seed_offsets), "groups": [list(g) for g in self.groups]}


NO_REPLICATES = Replicates(seed_offsets={}, groups=[])


def add_replicates(
    mixtures: Mixtures, num_anchors: int, num_seeds: int
) -> tuple[Mixtures, Replicates]:
    """The table with ``num_seeds - 1`` replicate rows for each of its first ``num_anchors``
    mixtures appended (seed-major: every anchor's ``.s1``, then every ``.s2``), and their seeds."""
    if num_anchors == 0 or num_seeds <= 1:
        return mixtures, NO_REPLICATES
    anchors = list(range(num_anchors))
    ids = list(mixtures.ids)
    rows = [mixtures.weights]
    offsets: dict[str, int] = {}
    for k in range(1, num_seeds):
        for i in anchors:
            rid = replicate_id(mixtures.ids[i], k)
            ids.append(rid)
            offsets[rid] = k
        rows.append(mixtures.weights[anchors])
    groups = [
        [mixtures.ids[i], *(replicate_id(mixtures.ids[i], k) for k in range(1, num_seeds))]
        for i in anchors
    ]
    table = Mixtures(ids=ids, names=list(mixtures.names), weights=np.concatenate(rows))
    return table, Replicates(seed_offsets=offsets, groups=groups)


def write_replicates(path: str | os.PathLike[str], replicates: Replicates) -> None:
    """Write the replicates file (``RunLayout.mixture_seeds``); with none, remove a stale one."""
    p = Path(path)
    if not replicates.seed_offsets:
        p.unlink(missing_ok=True)
        return
    atomic_write_json(p, replicates.to_json())


def read_replicates(path: str | os.PathLike[str], ids: Sequence[str] | None = None) -> Replicates:
    """The replicates file beside a mixtures table (``RunLayout.mixture_seeds``); no file: none.

    Each offset must be an integer >= 0 and each group a list of distinct row ids in at most one
    group; with ``ids`` (the table's rows), every id named must be one of them.
    """
    p = Path(path)
    if not p.is_file():
        return NO_REPLICATES
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{p}: not valid JSON ({exc}); sample again or delete it") from None
    offsets = data.get("seed_offsets") if isinstance(data, dict) else None
    groups = data.get("groups") if isinstance(data, dict) else None
    if not isinstance(offsets, dict) or not isinstance(groups, list):
        raise DataError(f"{p}: expected {{'seed_offsets': {{id: k}}, 'groups': [[id, ...]]}}")
    for rid, k in offsets.items():
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise DataError(f"{p}: seed_offsets.{rid} is {k!r}; it must be an integer >= 0")
    seen: set[str] = set()
    for g in groups:
        if not isinstance(g, list) or not all(isinstance(r, str) for r in g) or len(g) < 2:
            raise DataError(f"{p}: group {g!r} must list two or more row ids")
        if seen & set(g) or len(set(g)) != len(g):
            raise DataError(f"{p}: row id(s) {sorted(seen & set(g)) or g} appear twice")
        seen.update(g)
    if ids is not None:
        unknown = sorted((set(offsets) | seen) - set(ids))
        if unknown:
            raise DataError(
                f"{p}: row id(s) {unknown[:5]} are not in the mixtures table beside it; sample "
                "again (or delete the file when the table was replaced)"
            )
    return Replicates(seed_offsets=dict(offsets), groups=[list(g) for g in groups])


def _round_to_grid(w: np.ndarray, num_units: int) -> np.ndarray:
    """Largest-remainder rounding of rows that sum to 1 into integers that sum to ``num_units``
    (ties to the lower index: :func:`regmix_plugin.blending.largest_remainder`)."""
    return largest_remainder(w * num_units, num_units)


@dataclass
class _Draws:
    """The accepted distinct draws (integer grid units) and what was rejected on the way."""

    kept: list[np.ndarray]
    rejected_by_cap: np.ndarray
    num_draws: int
    num_rejected: int = 0
    num_duplicates: int = 0


def _check_feasible(catalogue: Catalogue, config: SampleConfig) -> None:
    """Caps that sum below 1, or a min_weight that can erase a draw, fail before any draw."""
    names = catalogue.names
    caps = catalogue.max_weights()
    cap_sum = float(np.minimum(caps, 1.0).sum())
    if cap_sum < 1.0:
        detail = ", ".join(f"{n} {c:.4g}" for n, c in zip(names, caps, strict=True))
        raise InfeasibleError(
            f"the domains' weight caps (max_epochs x tokens / num_target_tokens = "
            f"{catalogue.num_target_tokens:,}) sum to {cap_sum:.4f} < 1, so no mixture can respect "
            f"them: {detail}. Raise domains.max_epochs (or a domain's max_epochs), lower "
            "domains.num_target_tokens, or add data"
        )
    if len(names) > 1 and config.min_weight * len(names) > 1.0:
        raise ConfigError(
            f"sample.min_weight {config.min_weight} x {len(names)} domains exceeds 1, so a draw "
            f"could lose every weight; lower sample.min_weight below {1.0 / len(names):.4g}"
        )


def _draw_all(
    rng: np.random.Generator, p: np.ndarray, caps: np.ndarray, config: SampleConfig
) -> _Draws:
    """Every draw of the design, in blocks: threshold, round to the grid, reject over-cap rows
    and duplicates (first kept)."""
    num_units = config.num_units
    strengths = config.strengths()
    unit_caps = np.where(np.isinf(caps), np.inf, caps * num_units)
    draws = _Draws(
        [], np.zeros(len(p), dtype=np.int64), config.num_mixtures * config.draw_multiplier
    )
    seen: set[bytes] = set()
    done = 0
    while done < draws.num_draws:
        m = min(_BLOCK, draws.num_draws - done)
        w = dirichlet_mixed_strengths(rng, p, strengths, m)
        w = np.where(w < config.min_weight, 0.0, w)
        w /= w.sum(axis=1, keepdims=True)
        units = _round_to_grid(w, num_units)
        # A tiny slack so that a weight exactly at its cap is not rejected by float error.
        over = units > unit_caps[None, :] * (1 + 1e-12)
        draws.rejected_by_cap += over.sum(axis=0)
        bad = over.any(axis=1)
        draws.num_rejected += int(bad.sum())
        for row in units[~bad]:
            key = row.tobytes()
            if key in seen:
                draws.num_duplicates += 1
                continue
            seen.add(key)
            draws.kept.append(row)
        done += m
    return draws


def _check_enough(draws: _Draws, catalogue: Catalogue, config: SampleConfig) -> None:
    caps_text = ", ".join(
        f"{n} {int(r)}" for n, r in zip(catalogue.names, draws.rejected_by_cap, strict=True) if r
    )
    if draws.num_rejected == draws.num_draws:
        raise InfeasibleError(
            f"all {draws.num_draws} draws broke a weight cap (draws rejected per domain: "
            f"{caps_text}); the token budget domains.num_target_tokens = "
            f"{catalogue.num_target_tokens:,} is too large for the data under domains.max_epochs. "
            "Raise max_epochs, lower num_target_tokens, or raise sample.temperature toward 1 / "
            "use an explicit prior that respects the caps"
        )
    if len(draws.kept) < config.num_mixtures:
        raise InfeasibleError(
            f"only {len(draws.kept)} distinct mixtures among {draws.num_draws} draws "
            f"({draws.num_rejected} broke a cap, {draws.num_duplicates} were duplicates), fewer "
            f"than sample.num_mixtures = {config.num_mixtures}. Raise sample.draw_multiplier, use "
            "a finer sample.grid, raise sample.min_strength, or ask for fewer mixtures"
        )


def sample_mixtures(catalogue: Catalogue, config: SampleConfig) -> SampleResult:
    """Draw ``config.num_mixtures`` distinct mixtures over ``catalogue`` (see the module doc).

    Raises :class:`InfeasibleError` when the caps sum below 1, when every draw breaks a cap, or
    when fewer distinct mixtures than asked for survive; the message names the settings to change.
    """
    _check_feasible(catalogue, config)
    rng = np.random.default_rng(config.seed)
    p = tempered(catalogue.prior(), config.temperature)
    draws = _draw_all(rng, p, catalogue.max_weights(), config)
    _check_enough(draws, catalogue, config)
    chosen = np.sort(rng.choice(len(draws.kept), size=config.num_mixtures, replace=False))
    weights = np.stack([draws.kept[i] for i in chosen]) / float(config.num_units)
    names = list(catalogue.names)
    ids = [mixture_id(dict(zip(names, r, strict=True))) for r in weights]
    if len(set(ids)) != len(ids):  # 48-bit hash: a collision means a bug, not bad input
        raise AssertionError("mixture id collision among distinct mixtures")
    mixtures = Mixtures(ids=ids, names=names, weights=weights)
    summary = _summary(catalogue, config, mixtures, p, draws)
    table, replicates = add_replicates(mixtures, config.num_anchor_mixtures, config.num_seeds)
    if replicates.groups:
        summary["replicates"] = {
            "num_anchor_mixtures": config.num_anchor_mixtures,
            "num_seeds": config.num_seeds,
            "num_runs": len(table),
        }
    return SampleResult(mixtures=table, summary=summary, replicates=replicates)


def _summary(
    catalogue: Catalogue,
    config: SampleConfig,
    mixtures: Mixtures,
    tempered_prior: np.ndarray,
    draws: _Draws,
) -> dict[str, Any]:
    w = mixtures.weights
    nonzero = (w > 0).sum(axis=1)
    caps = catalogue.max_weights()
    domains = {}
    for j, name in enumerate(mixtures.names):
        col = w[:, j]
        domains[name] = {
            "min": float(col.min()),
            "mean": float(col.mean()),
            "max": float(col.max()),
            "num_nonzero": int((col > 0).sum()),
            "token_share": float(catalogue.token_shares()[j]),
            "prior": float(tempered_prior[j]),
            "max_weight": None if math.isinf(caps[j]) else float(caps[j]),
            "draws_rejected_by_cap": int(draws.rejected_by_cap[j]),
        }
    return {
        "sampler_version": SAMPLER_VERSION,
        "num_mixtures": len(mixtures),
        "num_draws": draws.num_draws,
        "num_rejected": draws.num_rejected,
        "num_duplicates": draws.num_duplicates,
        "num_distinct_accepted": len(draws.kept),
        "nonzero_domains_per_mixture": {
            "min": int(nonzero.min()),
            "mean": float(nonzero.mean()),
            "max": int(nonzero.max()),
            "histogram": {str(k): int((nonzero == k).sum()) for k in np.unique(nonzero)},
        },
        "domains": domains,
        "num_target_tokens": catalogue.num_target_tokens,
        "settings": to_dict(config),
    }


def format_summary(summary: Mapping[str, Any]) -> str:
    """The sampling summary as text: counts, non-zero domains, per-domain min/mean/max."""
    nz = summary["nonzero_domains_per_mixture"]
    lines = [
        f"{summary['num_mixtures']} mixtures from {summary['num_draws']} draws: "
        f"{summary['num_rejected']} broke a cap, {summary['num_duplicates']} duplicates, "
        f"{summary['num_distinct_accepted']} distinct accepted",
        f"non-zero domains per mixture: min {nz['min']}, mean {nz['mean']:.2f}, max {nz['max']}",
    ]
    reps = summary.get("replicates")
    if reps:
        lines.append(
            f"replicates: the first {reps['num_anchor_mixtures']} mixtures x {reps['num_seeds']} "
            f"proxy seeds, {reps['num_runs']} runs in all"
        )
    rows = []
    for name, d in summary["domains"].items():
        cap = "-" if d["max_weight"] is None else f"{min(d['max_weight'], 1.0):.4f}"
        rows.append(
            [
                name,
                *(f"{d[k]:.4f}" for k in ("min", "mean", "max", "prior")),
                cap,
                str(d["draws_rejected_by_cap"]),
            ]
        )
    header = ["domain", "min", "mean", "max", "prior", "cap", "rejected"]
    lines.append(format_table(header, rows, rule=False))
    return "\n".join(lines)
