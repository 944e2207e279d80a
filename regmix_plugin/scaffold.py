"""``regmix init``: a commented study YAML from a folder of Megatron ``.bin/.idx`` prefixes.

One domain per prefix (or, with ``per_folder``, per sub-folder: every prefix under it), token
counts read from the ``.idx`` headers and shown in comments, proxy and sweep defaults for the
machine it runs on (GPUs or not). Bad input is a clear error: a folder with no prefixes, an
unreadable prefix (named), two prefixes that would give the same domain name.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from regmix_plugin.errors import ConfigError, DataError
from regmix_plugin.indexed import read_index_counts

_SUFFIX = re.compile(r"_text_document$")
_BAD = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class FoundDomain:
    """A domain found in the data folder."""

    name: str
    prefixes: list[str]
    num_tokens: int
    num_documents: int
    token_bytes: int


@dataclass(frozen=True)
class Machine:
    """What the study's defaults are sized for."""

    num_gpus: int
    num_cpus: int


def detect_machine() -> Machine:
    """GPUs visible to torch (0 without CUDA) and the CPU cores of this process."""
    num_gpus = 0
    try:
        import torch

        num_gpus = int(torch.cuda.device_count()) if torch.cuda.is_available() else 0
    except ImportError:  # pragma: no cover - torch is a dependency
        num_gpus = 0
    return Machine(num_gpus=num_gpus, num_cpus=len(os.sched_getaffinity(0)))


def domain_name(prefix: Path, root: Path, per_folder: bool) -> str:
    """The domain of a prefix: its sub-folder (``per_folder``) or its file name, without
    Megatron's ``_text_document`` suffix, in the characters a domain name allows."""
    rel = prefix.relative_to(root)
    raw = rel.parts[0] if per_folder and len(rel.parts) > 1 else _SUFFIX.sub("", rel.name)
    return _BAD.sub("_", raw).strip("_") or "domain"


def find_domains(data_dir: Path, *, per_folder: bool = False) -> list[FoundDomain]:
    """Every prefix under ``data_dir`` (recursively), grouped into domains, sorted by name."""
    if not data_dir.is_dir():
        raise ConfigError(f"{data_dir} is not a folder; pass the folder holding your .bin/.idx")
    prefixes = sorted(p.with_suffix("") for p in data_dir.rglob("*.idx"))
    if not prefixes:
        raise DataError(
            f"{data_dir} holds no Megatron prefix (no .idx file, searched recursively); point "
            "regmix init at the folder written by Megatron's preprocess_data.py"
        )
    groups: dict[str, list[Path]] = {}
    for prefix in prefixes:
        groups.setdefault(domain_name(prefix, data_dir, per_folder), []).append(prefix)
    if not per_folder:
        clashes = {n: ps for n, ps in groups.items() if len(ps) > 1}
        if clashes:
            name, ps = next(iter(sorted(clashes.items())))
            raise ConfigError(
                f"prefixes {[str(p.relative_to(data_dir)) for p in ps]} would all be domain "
                f"{name!r}; rename them, or pass --per-folder to make each sub-folder a domain"
            )
    out = []
    for name, members in sorted(groups.items()):
        counts = [read_index_counts(p) for p in members]  # a bad file fails here, named
        out.append(
            FoundDomain(
                name=name,
                prefixes=[str(p) for p in members],
                num_tokens=sum(c.num_tokens for c in counts),
                num_documents=sum(c.num_documents for c in counts),
                token_bytes=max(c.token_bytes for c in counts),
            )
        )
    return out


def _vocab_size(found: list[FoundDomain], vocab_size: int | None) -> int:
    if vocab_size is not None:
        if vocab_size < 2:
            raise ConfigError(f"--vocab-size must be at least 2, got {vocab_size}")
        return vocab_size
    widest = max(d.token_bytes for d in found)
    if widest > 2:
        raise ConfigError(
            f"the tokens are {widest}-byte integers, so the vocabulary may exceed 65,536: pass "
            "--vocab-size with your tokenizer's vocabulary size"
        )
    return 256 if widest == 1 else 65_536


def _rel(path: str, base: Path) -> str:
    rel = os.path.relpath(path, base)
    return path if rel.startswith("..") and os.path.isabs(path) else rel


def study_text(
    found: list[FoundDomain],
    *,
    config_dir: Path,
    targets: dict[str, str],
    machine: Machine,
    vocab_size: int | None = None,
    run_dir: str = "runs/study",
) -> str:
    """The commented study YAML (paths relative to ``config_dir``, where it will be written)."""
    total = sum(d.num_tokens for d in found)
    vocab = _vocab_size(found, vocab_size)
    gpu = machine.num_gpus > 0
    target_keys = [f"target_loss/{n}" for n in targets] or [
        f"val_loss/{max(found, key=lambda d: d.num_tokens).name}"
    ]
    lines = [
        "# A RegMix study written by `regmix init`: edit it, then `regmix run <this file>`.",
        "# Relative paths are relative to this file.",
        f"run_dir: {run_dir}",
        "",
        "domains:",
        f"  num_target_tokens: {total}   # the final run's token budget: sets the epoch caps",
        "  max_epochs: 4                 # cap on passes over any domain in the final run",
        "  entries:",
    ]
    for d in found:
        share = d.num_tokens / total
        prefixes = yaml.safe_dump(
            [_rel(p, config_dir) for p in d.prefixes], default_flow_style=True
        )
        lines.append(
            f"    - {{name: {d.name}, prefixes: {prefixes.strip()}}}   "
            f"# {d.num_tokens:,} tokens ({share:.1%}), {d.num_documents:,} documents"
        )
    lines += [
        "",
        "sample:",
        f"  num_mixtures: {64 if gpu else 32}          # proxies to train (the paper: 512)",
        "  seed: 0",
        "  temperature: 0.5",
        "",
        "proxy:",
        f"  preset: {'1m' if gpu else 'tiny'}                 # tiny | cpu-small | 1m | 60m",
        f"  vocab_size: {vocab}   # your tokenizer's vocabulary (token ids must be below it)",
        f"  seq_length: {2048 if gpu else 128}",
        f"  num_tokens: {int(1e9) if gpu else 1_000_000}        # training tokens per proxy",
        f"  micro_batch_size: {16 if gpu else 8}",
        f"  global_batch_size: {64 if gpu else 16}",
        '  split: "98,2,0"',
    ]
    if targets:
        lines.append("  targets:                 # what to optimise: held-out text you care about")
        lines += [f"    {n}: [{_rel(p, config_dir)}]" for n, p in targets.items()]
    concurrent = machine.num_gpus if gpu else max(1, machine.num_cpus // 2)
    local = (
        f"{{num_concurrent: {concurrent}, num_devices_per_proxy: 1}}"
        if gpu
        else f"{{num_concurrent: {concurrent}}}"
    )
    lines += [
        "",
        "sweep:",
        "  launcher: local            # local | nemo_run | slurm",
        f"  local: {local}",
        "",
        "fit:",
        f"  targets: {yaml.safe_dump(target_keys, default_flow_style=True).strip()}",
        "",
        "optimize:",
        f"  target: {target_keys[0]}"
        + ("" if targets else "   # no --target given: the largest domain's validation loss"),
        "",
        "evaluate:",
        f"  target: {target_keys[0]}",
        "",
    ]
    return "\n".join(lines)
