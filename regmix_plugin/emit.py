"""Blend configs for every part of the stack, from one mixture (``regmix emit``).

From a mixture (a row of ``mixtures.csv`` or the optimizer's ``weights.yaml``) this writes, into
one folder:

==============================  ==============================================================
file                            use
==============================  ==============================================================
``megatron_lm_data_path.txt``   Megatron-LM ``--data-path W1 P1 W2 P2 ...`` (for a launch line)
``data_args.txt``               Megatron-LM ``--data-args-path``
``per_split_data_args.json``    Megatron-LM ``--per-split-data-args-path``
``mcore_blend.json`` / ``.py``  megatron-core ``BlendedMegatronDatasetConfig(blend=, split=)``
``nemo1_data.yaml``             NeMo 1 ``model.data.data_prefix`` (merge into the model config)
``nemo2_data.py``               NeMo 2 ``llm.PreTrainingDataModule(paths=...)`` snippet
``nemo2_data.yaml``             NeMo 2 / NeMo-Run: the data module's ``_target_`` and arguments
``bridge_dataset.yaml`` / .py   Megatron-Bridge ``GPTDatasetConfig(blend=..., split=...)``
``bridge_per_split_data_args``  Megatron-Bridge ``per_split_data_args_path`` (``.json``: train,
                                valid, test lists; null where ``emit.*_data_path`` is empty)
``data_blend_raw.json``         Nemotron blend (``datasets: [{name, path, weight}]``, one entry
                                per prefix, named by domain)
``blend_summary.txt``           epochs each domain implies for the token budget, and warnings
``weights.yaml``                the mixture itself (domain weights, id)
``manifest.json``               written last: files, mixture id, epochs, warnings
==============================  ==============================================================

A domain with several prefixes splits its weight over them in proportion to their tokens; domains
of weight 0 are left out (Megatron rejects zero weights). Weights are written as given, never
renormalised: the mixture must name every domain and sum to 1.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from regmix_plugin.domains import Catalogue
from regmix_plugin.errors import DataError
from regmix_plugin.io import atomic_write_json, atomic_write_text
from regmix_plugin.layout import BLEND_MANIFEST_FILE, BLEND_WEIGHTS_FILE
from regmix_plugin.mixtures import mixture_id
from regmix_plugin.splits import parse_split
from regmix_plugin.textable import format_table

#: The NeMo 2 data module, as NeMo-Run's YAML serializer names it.
NEMO2_TARGET = "nemo.collections.llm.gpt.data.pre_training.PreTrainingDataModule"
#: Megatron-Bridge's ``per_split_data_args_path`` file (format ``bridge_per_split``).
BRIDGE_PER_SPLIT_FILE = "bridge_per_split_data_args.json"
#: Nemotron's blend file (format ``nemotron``).
NEMOTRON_FILE = "data_blend_raw.json"

Blend = list[tuple[str, float]]


@dataclass(kw_only=True, frozen=True)
class EmitConfig:
    """The ``emit`` section: which blend formats to write and their shared settings."""

    formats: list[str] = field(default_factory=lambda: list(FORMATS))
    """Formats to write: any of megatron_lm, mcore, nemo1, nemo2, bridge, bridge_per_split,
    nemotron (default: all)."""
    split: str = "969,30,1"
    """Megatron split string (train,valid,test) for the formats that draw all splits from the
    blend (mcore, NeMo 1, NeMo 2, Bridge)."""
    num_tokens: int | None = None
    """Token budget for the epochs report; default ``domains.num_target_tokens``."""
    valid_data_path: list[str] = field(default_factory=list)
    """Validation data for ``per_split_data_args.json``: Megatron prefixes, optionally as
    weight/prefix pairs, relative to the config file (empty: no validation split there)."""
    test_data_path: list[str] = field(default_factory=list)
    """Test data for ``per_split_data_args.json``, as ``valid_data_path``."""

    def __post_init__(self) -> None:
        unknown = [f for f in self.formats if f not in FORMATS]
        if unknown:
            raise ValueError(f"formats {unknown} are unknown; choose from {list(FORMATS)}")
        if not self.formats:
            raise ValueError(f"formats is empty; choose from {list(FORMATS)}")
        parse_split(self.split)
        if self.num_tokens is not None and self.num_tokens <= 0:
            raise ValueError(f"num_tokens must be > 0, got {self.num_tokens}")


@dataclass(frozen=True)
class DomainEpochs:
    """What a mixture implies for one domain in a run of a given token budget."""

    name: str
    """The domain."""
    weight: float
    """Its weight in the mixture."""
    num_tokens: int
    """Tokens available in the domain."""
    num_tokens_used: float
    """Tokens the run draws from it (weight x budget)."""
    epochs: float
    """Passes over the domain (tokens used / tokens available)."""
    max_epochs: float | None
    """The domain's cap, if any."""

    @property
    def over_cap(self) -> bool:
        """True when the run repeats the domain more than its cap."""
        return self.max_epochs is not None and self.epochs > self.max_epochs * (1 + 1e-9)


@dataclass(frozen=True)
class EmitResult:
    """What :func:`emit_blends` wrote."""

    out_dir: Path
    """The folder."""
    files: list[Path]
    """Every file written, manifest last."""
    mixture_id: str
    """The mixture's id."""
    blend: Blend
    """The flat Megatron blend (prefix, weight)."""
    epochs: list[DomainEpochs]
    """Per-domain epochs for the token budget."""
    num_tokens: int
    """The token budget the epochs are for."""
    warnings: list[str]
    """One line per domain repeated more than its cap."""


# -- formats --------------------------------------------------------------------------------------


def _flat(blend: Blend) -> list[str]:
    """``[w1, p1, w2, p2, ...]`` as strings: what ``--data-path`` and NeMo's ``paths`` take."""
    out: list[str] = []
    for prefix, w in blend:
        out += [repr(float(w)), prefix]
    return out


def _comment(header: Sequence[str]) -> str:
    return "".join(f"# {line}\n" if line else "#\n" for line in header)


def _megatron_lm(
    blend: Blend,
    per_split: dict[str, Any],
    split: str,
    header: Sequence[str],
    domains: Mapping[str, str],
) -> dict[str, str]:
    line = "--data-path " + " ".join(shlex.quote(x) for x in _flat(blend))
    data_args = "".join(f"{w!r} {p}\n" for p, w in blend)
    return {
        "megatron_lm_data_path.txt": line + "\n",
        "data_args.txt": data_args,
        "per_split_data_args.json": json.dumps(per_split, indent=2) + "\n",
    }


def _mcore(
    blend: Blend,
    per_split: dict[str, Any],
    split: str,
    header: Sequence[str],
    domains: Mapping[str, str],
) -> dict[str, str]:
    prefixes = [p for p, _ in blend]
    weights = [float(w) for _, w in blend]
    py = (
        _comment(header)
        + '"""megatron-core blend: pass BLEND and SPLIT to a BlendedMegatronDatasetConfig.\n\n'
        "    from megatron.core.datasets.gpt_dataset import GPTDatasetConfig\n"
        "    config = GPTDatasetConfig(blend=BLEND, split=SPLIT, random_seed=..., "
        "sequence_length=..., tokenizer=..., reset_position_ids=False, "
        "reset_attention_mask=False, eod_mask_loss=False)\n"
        '"""\n\n'
        f"BLEND = (\n    {json.dumps(prefixes)},\n    {json.dumps(weights)},\n)\n"
        f"SPLIT = {split!r}\n"
    )
    return {
        "mcore_blend.json": json.dumps({"blend": [prefixes, weights], "split": split}, indent=2)
        + "\n",
        "mcore_blend.py": py,
    }


def _nemo1(
    blend: Blend,
    per_split: dict[str, Any],
    split: str,
    header: Sequence[str],
    domains: Mapping[str, str],
) -> dict[str, str]:
    data_prefix: list[Any] = []
    for prefix, w in blend:
        data_prefix += [float(w), prefix]
    doc = {"model": {"data": {"data_prefix": data_prefix, "splits_string": split}}}
    text = _comment(
        [*header, "", "NeMo 1 (megatron_gpt_config.yaml): merge into the model config."]
    )
    return {"nemo1_data.yaml": text + yaml.safe_dump(doc, sort_keys=False, width=1000)}


def _nemo2(
    blend: Blend,
    per_split: dict[str, Any],
    split: str,
    header: Sequence[str],
    domains: Mapping[str, str],
) -> dict[str, str]:
    paths = _flat(blend)
    py = (
        _comment(header) + '"""NeMo 2 data module for this mixture.\n\n'
        "In a NeMo-Run recipe: ``recipe.data.paths = PATHS; recipe.data.split = SPLIT``, or\n"
        "``recipe.data = data_config(seq_length=..., global_batch_size=...)``.\n"
        '"""\n\n'
        f"PATHS = {json.dumps(paths, indent=4)}\n"
        f"SPLIT = {split!r}\n\n\n"
        "def data_config(**kwargs):\n"
        '    """``run.Config`` of ``llm.PreTrainingDataModule`` on this blend."""\n'
        "    import nemo_run as run\n"
        "    from nemo.collections import llm\n\n"
        "    return run.Config(llm.PreTrainingDataModule, paths=PATHS, split=SPLIT, **kwargs)\n\n\n"
        "def data_module(**kwargs):\n"
        '    """``llm.PreTrainingDataModule`` on this blend (checks that the files exist)."""\n'
        "    from nemo.collections import llm\n\n"
        "    return llm.PreTrainingDataModule(paths=PATHS, split=SPLIT, **kwargs)\n"
    )
    doc = {"_target_": NEMO2_TARGET, "paths": paths, "split": split}
    text = _comment(
        [
            *header,
            "",
            "NeMo 2 / NeMo-Run: load this mapping, pop _target_, and set",
            "  recipe.data = run.Config(llm.PreTrainingDataModule, **mapping, seq_length=...)",
            "(nemo-run 0.11's YamlSerializer cannot parse PreTrainingDataModule's `paths` type).",
        ]
    )
    return {
        "nemo2_data.py": py,
        "nemo2_data.yaml": text + yaml.safe_dump(doc, sort_keys=False, width=1000),
    }


def _bridge(
    blend: Blend,
    per_split: dict[str, Any],
    split: str,
    header: Sequence[str],
    domains: Mapping[str, str],
) -> dict[str, str]:
    prefixes = [p for p, _ in blend]
    weights = [float(w) for _, w in blend]
    doc = {"dataset": {"blend": [prefixes, weights], "split": split}}
    text = _comment(
        [
            *header,
            "",
            "Megatron-Bridge: merge into the ConfigContainer (the dataset is a GPTDatasetConfig).",
        ]
    )
    py = (
        _comment(header) + '"""Megatron-Bridge dataset settings for this mixture.\n\n'
        "    from megatron.bridge.training.config import GPTDatasetConfig\n"
        "    cfg.dataset = GPTDatasetConfig(blend=BLEND, split=SPLIT, random_seed=..., "
        "sequence_length=..., reset_position_ids=False, reset_attention_mask=False, "
        "eod_mask_loss=False)\n\n"
        "or, with the recipes' helper,\n\n"
        "    from megatron.bridge.recipes.utils.dataset_utils import "
        "get_blend_fields_from_data_paths\n"
        "    blend, blend_per_split, split = get_blend_fields_from_data_paths("
        "data_paths=DATA_PATHS)\n"
        '"""\n\n'
        f"BLEND = (\n    {json.dumps(prefixes)},\n    {json.dumps(weights)},\n)\n"
        f"SPLIT = {split!r}\n"
        f"DATA_PATHS = {json.dumps(_flat(blend), indent=4)}\n"
    )
    return {
        "bridge_dataset.yaml": text + yaml.safe_dump(doc, sort_keys=False, width=1000),
        "bridge_dataset.py": py,
    }


def _bridge_per_split(
    blend: Blend,
    per_split: dict[str, Any],
    split: str,
    header: Sequence[str],
    domains: Mapping[str, str],
) -> dict[str, str]:
    """Megatron-Bridge ``per_split_data_args_path``: train, valid and test data lists."""
    doc = {part: per_split[part] for part in ("train", "valid", "test")}
    return {BRIDGE_PER_SPLIT_FILE: json.dumps(doc, indent=2) + "\n"}


def _nemotron(
    blend: Blend,
    per_split: dict[str, Any],
    split: str,
    header: Sequence[str],
    domains: Mapping[str, str],
) -> dict[str, str]:
    """Nemotron's ``data_blend_raw.json`` (single-blend mode): one entry per prefix."""
    per_domain: dict[str, int] = {}
    for prefix, _ in blend:
        per_domain[domains[prefix]] = per_domain.get(domains[prefix], 0) + 1
    seen: dict[str, int] = {}
    entries = []
    for prefix, w in blend:
        domain = domains[prefix]
        i = seen.get(domain, 0)
        seen[domain] = i + 1
        name = domain if per_domain[domain] == 1 else f"{domain}-{i}"
        entries.append({"name": name, "path": prefix, "weight": float(w)})
    return {NEMOTRON_FILE: json.dumps({"datasets": entries}, indent=2) + "\n"}


FormatWriter = Callable[
    [Blend, dict[str, Any], str, Sequence[str], Mapping[str, str]], dict[str, str]
]

#: Blend formats by name: each returns ``{file name: text}``.
FORMATS: dict[str, FormatWriter] = {
    "megatron_lm": _megatron_lm,
    "mcore": _mcore,
    "nemo1": _nemo1,
    "nemo2": _nemo2,
    "bridge": _bridge,
    "bridge_per_split": _bridge_per_split,
    "nemotron": _nemotron,
}


# -- epochs ---------------------------------------------------------------------------------------


def domain_epochs(
    catalogue: Catalogue, weights: Mapping[str, float], num_tokens: int
) -> list[DomainEpochs]:
    """Per-domain epochs that ``weights`` implies for a run of ``num_tokens`` tokens."""
    w = catalogue.weight_vector(weights, tolerance=math.inf)
    return [
        DomainEpochs(
            name=d.name,
            weight=float(wd),
            num_tokens=d.num_tokens,
            num_tokens_used=float(wd) * num_tokens,
            epochs=float(wd) * num_tokens / d.num_tokens,
            max_epochs=d.max_epochs,
        )
        for d, wd in zip(catalogue.domains, w, strict=True)
    ]


def epoch_warnings(epochs: Sequence[DomainEpochs], num_tokens: int) -> list[str]:
    """One line per domain that the run repeats more than its cap."""
    return [
        f"WARNING: domain {e.name!r} is repeated {e.epochs:.2f} times in a {num_tokens:,}-token "
        f"run, over its cap of {e.max_epochs:g} epochs (weight {e.weight:.4g}, "
        f"{e.num_tokens:,} tokens available)"
        for e in epochs
        if e.over_cap
    ]


def split_warnings(catalogue: Catalogue, blend: Blend, split: str) -> list[str]:
    """One line per blended prefix whose share of a split holds no document.

    megatron-core gives split part ``i`` of a prefix with ``n`` documents the documents
    ``[round(a_i n), round(b_i n))`` (``a``, ``b`` the cumulative shares); an empty part cannot
    give the samples asked of it, and megatron-core then fails or loops when it builds that split.
    """
    shares = parse_split(split)
    bounds = [0.0, *itertools.accumulate(shares)]
    documents = {
        p: n for d in catalogue.domains for p, n in zip(d.prefixes, d.prefix_documents, strict=True)
    }
    out = []
    for prefix, _ in blend:
        n = documents.get(prefix)
        if n is None:
            continue
        for part, name in enumerate(("train", "validation", "test")):
            if shares[part] <= 0:
                continue
            if round(bounds[part] * n) == round(bounds[part + 1] * n):
                out.append(
                    f"WARNING: prefix {prefix} has {n:,} documents: split {split!r} leaves its "
                    f"{name} part empty, and megatron-core cannot build that split from it; "
                    f"set emit.split to give the {name} part a larger share, or 0 to leave it out"
                )
    return out


def format_epochs(epochs: Sequence[DomainEpochs], num_tokens: int) -> str:
    """The epochs table: domain, weight, tokens available, tokens used, epochs, cap."""
    header = ["domain", "weight", "tokens", "tokens_used", "epochs", "max_epochs", ""]
    rows = [
        [
            e.name,
            f"{e.weight:.4f}",
            f"{e.num_tokens:,}",
            f"{e.num_tokens_used:,.0f}",
            f"{e.epochs:.3f}",
            "-" if e.max_epochs is None else f"{e.max_epochs:g}",
            "OVER CAP" if e.over_cap else "",
        ]
        for e in epochs
    ]
    out = [f"epochs for a run of {num_tokens:,} tokens", format_table(header, rows, rule=False)]
    out += epoch_warnings(epochs, num_tokens)
    return "\n".join(out) + "\n"


# -- the stage ------------------------------------------------------------------------------------


def _split_data_path(values: Sequence[str], where: str) -> list[str] | None:
    """A Megatron data-path list with its (absolute) prefixes checked; None when empty."""
    if not values:
        return None
    pairs = is_weighted_data_path(values)
    out: list[str] = []
    for i, v in enumerate(values):
        if pairs and i % 2 == 0:
            out.append(repr(float(v)))
            continue
        if not Path(f"{v}.idx").is_file() or not Path(f"{v}.bin").is_file():
            raise DataError(
                f"{where}: prefix {v!r} has no .idx/.bin; fix the path (relative paths are "
                "relative to the config file)"
            )
        out.append(os.path.abspath(v))
    return out


def is_weighted_data_path(values: Sequence[str]) -> bool:
    """Whether a Megatron data-path list is ``weight prefix weight prefix ...`` pairs (else it
    lists prefixes only)."""
    return len(values) % 2 == 0 and all(_is_number(v) for v in values[0::2])


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _header(
    mid: str, source: str, epochs: list[DomainEpochs], num_tokens: int, warnings: list[str]
) -> list[str]:
    """The comment lines at the top of every emitted file."""
    return [
        f"regmix emit: mixture {mid}" + (f" ({source})" if source else ""),
        f"epochs for a {num_tokens:,}-token run (see blend_summary.txt):",
        *(
            f"  {e.name}: weight {e.weight:.4g}, {e.epochs:.3f} epochs"
            + ("" if e.max_epochs is None else f" (cap {e.max_epochs:g})")
            for e in epochs
            if e.weight > 0
        ),
        *warnings,
    ]


def _write_all(out: Path, texts: Mapping[str, str], manifest: dict[str, Any]) -> list[Path]:
    """Write every file atomically, stale files of an earlier emit removed, the manifest last."""
    manifest_path = out / BLEND_MANIFEST_FILE
    _remove_stale(out, manifest_path, set(texts))
    files = []
    for fname, text in texts.items():
        atomic_write_text(out / fname, text)
        files.append(out / fname)
    atomic_write_json(manifest_path, manifest)
    files.append(manifest_path)
    return files


def emit_blends(
    catalogue: Catalogue,
    weights: Mapping[str, float],
    out_dir: str | os.PathLike[str],
    config: EmitConfig | None = None,
    *,
    source: str = "",
) -> EmitResult:
    """Write every configured blend format for ``weights`` into ``out_dir``.

    ``weights`` must name every catalogue domain and sum to 1 (:class:`DataError` otherwise).
    Every file is generated before any is written; each is written atomically, and
    ``manifest.json`` last.
    """
    config = config or EmitConfig()
    blend = catalogue.blend(weights)
    if not blend:
        raise DataError("the mixture has no non-zero weight; nothing to blend")
    mid = mixture_id(weights)
    num_tokens = config.num_tokens or catalogue.num_target_tokens
    epochs = domain_epochs(catalogue, weights, num_tokens)
    empty_splits = split_warnings(catalogue, blend, config.split)
    warnings = epoch_warnings(epochs, num_tokens) + empty_splits
    header = _header(mid, source, epochs, num_tokens, warnings)
    per_split = {
        "train": _flat(blend),
        "valid": _split_data_path(config.valid_data_path, "emit.valid_data_path"),
        "test": _split_data_path(config.test_data_path, "emit.test_data_path"),
    }
    domains = {p: d.name for d in catalogue.domains for p in d.prefixes}
    texts: dict[str, str] = {}
    for name in config.formats:
        texts.update(FORMATS[name](blend, per_split, config.split, header, domains))
    summary = f"mixture {mid}" + (f" ({source})" if source else "") + "\n"
    texts["blend_summary.txt"] = (
        summary + format_epochs(epochs, num_tokens) + "".join(f"{w}\n" for w in empty_splits)
    )
    weights_doc = {
        "mixture_id": mid,
        "source": source,
        "weights": {n: float(weights[n]) for n in catalogue.names},
    }
    texts[BLEND_WEIGHTS_FILE] = yaml.safe_dump(weights_doc, sort_keys=False)
    manifest = {
        "mixture_id": mid,
        "source": source,
        "formats": list(config.formats),
        "files": sorted(texts),
        "split": config.split,
        "num_tokens": num_tokens,
        "epochs": {e.name: e.epochs for e in epochs},
        "warnings": warnings,
    }
    out = Path(out_dir)
    return EmitResult(
        out_dir=out,
        files=_write_all(out, texts, manifest),
        mixture_id=mid,
        blend=blend,
        epochs=epochs,
        num_tokens=num_tokens,
        warnings=warnings,
    )


def _remove_stale(out: Path, manifest_path: Path, keep: set[str]) -> None:
    """Remove files an earlier emit listed in its manifest that this one does not write."""
    if not manifest_path.is_file():
        return
    try:
        old = json.loads(manifest_path.read_text(encoding="utf-8")).get("files", [])
    except (ValueError, AttributeError):
        return
    for fname in old:
        if isinstance(fname, str) and fname not in keep and "/" not in fname:
            with contextlib.suppress(FileNotFoundError):
                (out / fname).unlink()
