"""Validation losses of runs made outside regmix: Megatron-LM/NeMo logs and TensorBoard events.

Megatron-LM (and Megatron-Bridge) print each evaluation as::

     validation loss at iteration 1000 | lm loss value: 3.210000E+00 | lm loss PPL: 2.47E+01 |

and log TensorBoard scalars ``lm loss validation`` (one validation set) or
``lm loss validation <dataset>`` (``--multiple-validation-sets``); NeMo/Lightning log
``val_loss`` and, with several validation loaders, ``val_loss/dataloader_idx_<i>``. Each parser
returns ``{dataset name or None: (step, value)}`` keeping the last evaluation; :func:`run_metrics`
maps dataset names to domains (``sweep.collect.dataset_names``) and names the metrics
``val_loss/<domain>`` (``val_loss`` for a single unnamed set), as ``regmix train-proxy`` does.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from regmix_plugin.errors import DataError, require
from regmix_plugin.sweep.config import CollectSettings

#: dataset name (None: the one unnamed validation set) -> (step, value)
Found = dict[str | None, tuple[float, float]]

_NUMBER = r"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|nan|inf)"
_VALUE_RE = re.compile(rf"(?P<key>[^|]+?) value: (?P<value>{_NUMBER})")
_ITER_RE = re.compile(r"iteration\s+(\d+)")
_SINGLE_TAGS = ("lm loss validation", "val_loss", "validation_loss")
_TEST_RE = re.compile(r"\btest\b", re.IGNORECASE)


def _keep_last(found: Found, name: str | None, step: float, value: float) -> None:
    if name not in found or step >= found[name][0]:
        found[name] = (step, value)


def parse_megatron_log(text: str, settings: CollectSettings) -> Found:
    """Validation losses from ``validation loss at ... | <key> value: x |`` lines.

    The dataset of a line comes from ``settings.log_dataset_pattern`` over its prefix, or from a
    key ``<log_loss_key> <dataset>``; lines about test data are skipped. The step is the
    iteration in the prefix, or the line's position (the end-of-training evaluation comes last).
    """
    found: Found = {}
    dataset_re = re.compile(settings.log_dataset_pattern)
    key_base = settings.log_loss_key
    for lineno, line in enumerate(text.splitlines()):
        at = line.find("validation loss at ")
        if at < 0:
            continue
        rest = line[at + len("validation loss at ") :]
        prefix, _, values = rest.partition("|")
        if _TEST_RE.search(prefix):
            continue
        m_iter = _ITER_RE.search(prefix)
        # Order by iteration when given; evaluations without one (end of training) sort last.
        step = float(m_iter.group(1)) if m_iter else math.inf
        m_ds = dataset_re.search(prefix)
        for m in _VALUE_RE.finditer(values):
            key = m.group("key").strip()
            value = float(m.group("value"))
            if key == key_base:
                name = m_ds.group("dataset") if m_ds else None
            elif key.startswith(key_base + " "):
                name = key[len(key_base) + 1 :].strip()
            else:
                continue
            # equal steps (repeated end-of-training lines): the later line wins
            _keep_last(found, name, step if math.isfinite(step) else 1e18 + lineno, value)
    return found


def read_tensorboard(folder: Path, settings: CollectSettings) -> Found:
    """Validation losses from the TensorBoard event files under ``folder`` (recursively)."""
    files = sorted(folder.rglob("events.out.tfevents.*"))
    if not files:
        return {}
    accumulator = require(
        "tensorboard.backend.event_processing.event_accumulator", extra="tensorboard"
    )
    patterns = [re.compile(p) for p in settings.tag_patterns]
    found: Found = {}
    for path in files:
        acc = accumulator.EventAccumulator(str(path), size_guidance={accumulator.SCALARS: 0})
        try:
            acc.Reload()
        except Exception as exc:  # a truncated file of a killed run: say which one
            raise DataError(f"{path}: cannot read this TensorBoard event file: {exc}") from exc
        for tag in acc.Tags().get("scalars", []):
            name: str | None
            if tag in _SINGLE_TAGS:
                name = None
            else:
                for pat in patterns:
                    m = pat.match(tag)
                    if m:
                        name = m.group("dataset")
                        break
                else:
                    continue
            events = acc.Scalars(tag)
            if events:
                last = max(events, key=lambda e: (e.step, e.wall_time))
                _keep_last(found, name, float(last.step), float(last.value))
    return found


def domain_of(dataset: str, settings: CollectSettings) -> str:
    """The domain a dataset name stands for: the configured mapping, else its basename."""
    if dataset in settings.dataset_names:
        return settings.dataset_names[dataset]
    base = dataset.rstrip("/").rsplit("/", 1)[-1]
    return settings.dataset_names.get(base, base)


def run_metrics(folder: Path, settings: CollectSettings) -> tuple[dict[str, float], list[str]]:
    """Metrics of one externally launched run: ``({metric: value}, [files read])``.

    Values from TensorBoard take precedence over log lines (logs round to 7 digits).
    """
    merged: dict[str, float] = {}
    sources: list[str] = []
    logs: list[Path] = []
    for pattern in settings.log_globs:
        logs += [p for p in folder.rglob(pattern) if p.is_file()]
    for path in sorted(set(logs)):
        found = parse_megatron_log(path.read_text(encoding="utf-8", errors="replace"), settings)
        if found:
            sources.append(str(path))
        for name, (_, value) in found.items():
            merged[_metric(name, settings)] = value
    if settings.tensorboard:
        found = read_tensorboard(folder, settings)
        if found:
            sources.append(f"{folder} (TensorBoard)")
        for name, (_, value) in found.items():
            merged[_metric(name, settings)] = value
    return merged, sources


def _metric(name: str | None, settings: CollectSettings) -> str:
    return "val_loss" if name is None else f"val_loss/{domain_of(name, settings)}"
