"""Validation losses of runs made outside regmix: Megatron-LM/NeMo logs and TensorBoard events.

Megatron-LM (``megatron.training``, also in megatron-core's 0.19 wheel) prints each evaluation
of each validation set as one line (``evaluate_and_print_results``)::

     validation loss at iteration 1000 | lm loss value: 3.210000E+00 | lm loss PPL: 2.47E+01 |
     validation-arxiv loss at iteration 1000 | lm loss value: 3.210000E+00 | ...

the second form with ``--multiple-validation-sets``: ``-<name>`` from ``--validation-set-names``
(else ``-<index>``). The end-of-training evaluation says ``at iteration N on validation set`` and
the test set ``at iteration N on test set`` (skipped here). Its TensorBoard scalars are ``lm loss
validation`` or ``lm loss validation-<name>`` (plus ``... vs samples`` and ``... ppl`` variants,
not read); its test-set evaluation reuses the validation tags at the same step, after the
validation values, so the first value of the last step is taken. NeMo/Lightning log ``val_loss``
and, with several validation loaders, ``val_loss/dataloader_idx_<i>``. Each parser returns
``{dataset name or None: (step, value)}`` keeping the last evaluation; :func:`run_metrics` maps
dataset names to domains (``sweep.collect.dataset_names``) and names the metrics
``val_loss/<domain>`` (``val_loss`` for a single unnamed set), as ``regmix train-proxy`` does.
"""

from __future__ import annotations

import re
from pathlib import Path

from regmix_plugin.errors import DataError, require
from regmix_plugin.sweep.config import CollectSettings

#: dataset name (None: the one unnamed validation set) -> (step, value)
Found = dict[str | None, tuple[float, float]]

_NUMBER = r"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|nan|inf)"
_VALUE_RE = re.compile(rf"(?P<key>[^|]+?) value: (?P<value>{_NUMBER})")
#: Megatron-LM's evaluation line: `` validation[-<name>] loss at <prefix> | <values>``.
_LINE_RE = re.compile(
    r"\bvalidation(?:-(?P<dataset>\S+))? loss at (?P<prefix>[^|]*)\|(?P<values>.*)"
)
_ITER_RE = re.compile(r"iteration\s+(\d+)")
_SINGLE_TAGS = ("lm loss validation", "val_loss", "validation_loss")
_TEST_RE = re.compile(r"\btest\b", re.IGNORECASE)


def _keep_last(found: Found, name: str | None, step: float, value: float) -> None:
    if name not in found or step >= found[name][0]:
        found[name] = (step, value)


def parse_megatron_log(text: str, settings: CollectSettings) -> Found:
    """Validation losses from Megatron-LM's ``validation[-<name>] loss at ...`` lines.

    The dataset is the line's ``-<name>`` (None without one); the value is the one of
    ``settings.log_loss_key``; lines about the test set are skipped. The step is the iteration
    in the prefix; the end-of-training evaluation (same iteration, ``on validation set``) wins
    over an earlier line of that iteration.
    """
    found: Found = {}
    key_base = settings.log_loss_key
    for lineno, line in enumerate(text.splitlines()):
        m_line = _LINE_RE.search(line)
        if m_line is None:
            continue
        prefix = m_line.group("prefix")
        if _TEST_RE.search(prefix):
            continue
        m_iter = _ITER_RE.search(prefix)
        # Order by iteration when given; evaluations without one sort last, in file order.
        step = float(m_iter.group(1)) if m_iter else 1e18 + lineno
        name = m_line.group("dataset")
        for m in _VALUE_RE.finditer(m_line.group("values")):
            if m.group("key").strip() == key_base:
                # equal steps (the end-of-training line repeats the last iteration): later wins
                _keep_last(found, name, step, float(m.group("value")))
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
                # The first event of the last step: Megatron-LM writes its test-set evaluation
                # under the same tag and step, after the validation set's.
                top = max(e.step for e in events)
                last = next(e for e in events if e.step == top)
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
