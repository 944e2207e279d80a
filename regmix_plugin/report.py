"""The run report: one HTML page and its Markdown twin, with plots, from a run directory.

``regmix report RUN_DIR`` reads the artifacts the stages left (``mixtures.csv``, ``results.csv``,
``model/``, ``weights.yaml``, ``blend/``, ``evaluation.json``, ``transfer.json``) and writes
``report.html``, ``report.md`` and the figures under ``report_files/``. It leads with the answer:
the recommended mixture, its predicted target (with an interval and the probability of beating
each baseline when the model has ensemble members), the target's seed noise and signal-to-noise
(when the model was fitted with replicates), the rank transfer (when measured) and the measured
evaluation; then the detail. A stage that has not run yet shows as such; the report never fails
because a later stage is missing.
"""

from __future__ import annotations

import html
import json
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from regmix_plugin.config import parse_yaml, read_text_file
from regmix_plugin.domains import Catalogue
from regmix_plugin.errors import ConfigError, DataError, RegMixError
from regmix_plugin.io import atomic_write_bytes, atomic_write_text
from regmix_plugin.layout import REPORT_FILES_DIR, RunLayout
from regmix_plugin.tables import Table, read_table

log = logging.getLogger(__name__)


@dataclass(kw_only=True, frozen=True)
class ReportConfig:
    """The ``report`` section."""

    title: str = "RegMix run report"
    """Heading of the page."""
    max_blend_chars: int = 6000
    """Longest blend file shown in full; longer ones are cut with a pointer to the file."""
    min_snr: float = 2.0
    """A target whose signal-to-noise ratio (its spread across mixtures over one proxy seed's
    noise, measured on replicated mixtures) is below this is called too noisy to regress on."""
    interval_level: float = 0.9
    """Coverage of the predicted target's interval (with an ensemble model)."""

    def __post_init__(self) -> None:
        if self.max_blend_chars < 100:
            raise ValueError(f"max_blend_chars must be at least 100, got {self.max_blend_chars}")
        if not self.min_snr >= 0:
            raise ValueError(f"min_snr must be >= 0, got {self.min_snr}")
        if not 0.0 < self.interval_level < 1.0:
            raise ValueError(f"interval_level must be in (0, 1), got {self.interval_level}")


# -- page model ------------------------------------------------------------------------------------


@dataclass
class Section:
    """A titled part of the report: paragraphs, a table, figures and code blocks, in that order."""

    title: str
    paragraphs: list[str] = field(default_factory=list)
    table: tuple[list[str], list[list[str]]] | None = None
    figures: list[tuple[str, str]] = field(default_factory=list)  # (file name, caption)
    code: list[tuple[str, str]] = field(default_factory=list)  # (caption, text)


def _fmt(x: Any, digits: int = 4) -> str:
    if isinstance(x, float | np.floating):
        if math.isnan(x):
            return "–"
        return f"{x:.{digits}f}"
    return str(x)


def _to_markdown(title: str, sections: list[Section]) -> str:
    out = [f"# {title}", ""]
    for s in sections:
        out += [f"## {s.title}", ""]
        for p in s.paragraphs:
            out += [p, ""]
        if s.table:
            head, rows = s.table
            out.append("| " + " | ".join(head) + " |")
            out.append("|" + "|".join("---" for _ in head) + "|")
            out += ["| " + " | ".join(r) + " |" for r in rows]
            out.append("")
        for name, caption in s.figures:
            out += [f"![{caption}]({REPORT_FILES_DIR}/{name})", ""]
        for caption, text in s.code:
            out += [f"**{caption}**", "", "```", text.rstrip(), "```", ""]
    return "\n".join(out)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{border-bottom:2px solid #444}h2{margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;
text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
img{max-width:100%;border:1px solid #eee}figure{margin:1em 0}figcaption{color:#555;font-size:90%}
pre{background:#f6f8fa;padding:10px;overflow-x:auto;font-size:85%}
nav a{margin-right:1em}
"""

# Marks the page once every image has decoded: a headless browser can read it from the DOM.
_IMAGE_CHECK = """
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute('data-images-total', imgs.length);
  document.body.setAttribute('data-images-rendered', ok);
});
"""


def _to_html(title: str, sections: list[Section]) -> str:
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title><style>{_CSS}</style>",
        f"<script>{_IMAGE_CHECK}</script></head><body>",
        f"<h1>{e(title)}</h1><nav>",
    ]
    parts += [f'<a href="#s{i}">{e(s.title)}</a>' for i, s in enumerate(sections)]
    parts.append("</nav>")
    for i, s in enumerate(sections):
        parts.append(f'<section id="s{i}"><h2>{e(s.title)}</h2>')
        parts += [f"<p>{e(p)}</p>" for p in s.paragraphs]
        if s.table:
            head, rows = s.table
            parts.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr>")
            parts += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows]
            parts.append("</table>")
        for name, caption in s.figures:
            parts.append(
                f'<figure><img src="{REPORT_FILES_DIR}/{e(name)}" alt="{e(caption)}">'
                f"<figcaption>{e(caption)}</figcaption></figure>"
            )
        for caption, text in s.code:
            parts.append(f"<p><b>{e(caption)}</b></p><pre>{e(text)}</pre>")
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


# -- figures ---------------------------------------------------------------------------------------


class _Figures:
    """Saves matplotlib figures as PNGs under ``report_files/`` (atomically)."""

    def __init__(self, folder: Path) -> None:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt

        self.plt = plt
        self.folder = folder

    def save(self, name: str, draw: Callable[[Any], None], size: tuple[float, float]) -> str:
        import io

        fig = self.plt.figure(figsize=size, dpi=100)
        try:
            draw(fig)
            fig.tight_layout()
            buf = io.BytesIO()
            fig.savefig(buf, format="png")
        finally:
            self.plt.close(fig)
        atomic_write_bytes(self.folder / name, buf.getvalue())
        return name


# -- the sections ----------------------------------------------------------------------------------


def _read_optional_table(path: Path) -> Table | None:
    return read_table(path) if path.is_file() else None


def _design_section(layout: RunLayout, figs: _Figures) -> Section:
    s = Section("Mixture design")
    mixtures = _read_optional_table(layout.mixtures)
    if mixtures is None:
        s.paragraphs.append("mixtures.csv is not there yet: run `regmix sample`.")
        return s
    from regmix_plugin.mixtures import read_replicates

    replicates = read_replicates(layout.mixture_seeds, mixtures.ids)
    distinct = [i for i, rid in enumerate(mixtures.ids) if not replicates.seed_offset(rid)]
    w = mixtures.values[distinct]
    nonzero = (w > 0).sum(axis=1)
    s.paragraphs.append(
        f"{len(w)} mixtures over {len(mixtures.columns)} domains; non-zero domains per "
        f"mixture: min {nonzero.min()}, median {int(np.median(nonzero))}, max {nonzero.max()}."
    )
    if replicates.groups:
        s.paragraphs.append(
            f"{len(replicates.groups)} of them trained more than once, with other proxy seeds "
            f"({len(mixtures.ids) - len(w)} replicate runs), to measure the seed noise."
        )
    s.table = (
        ["domain", "min", "mean", "max", "share of mixtures > 0"],
        [
            [d, _fmt(w[:, j].min(), 3), _fmt(w[:, j].mean(), 3), _fmt(w[:, j].max(), 3),
             f"{(w[:, j] > 0).mean():.0%}"]
            for j, d in enumerate(mixtures.columns)
        ],
    )  # fmt: skip

    def draw(fig: Any) -> None:
        ax = fig.add_subplot(1, 1, 1)
        rng = np.random.default_rng(0)
        for j in range(w.shape[1]):
            ax.scatter(j + rng.uniform(-0.25, 0.25, len(w)), w[:, j], s=6, alpha=0.5)
        ax.boxplot(w, positions=range(w.shape[1]), widths=0.6, showfliers=False)
        ax.set_xticks(range(w.shape[1]), mixtures.columns, rotation=45, ha="right")
        ax.set_ylabel("weight")
        ax.set_title("Coverage of the mixture design (one dot per proxy mixture)")

    s.figures.append((figs.save("design.png", draw, (9, 4)), "Per-domain weights of the proxies"))
    return s


#: Share of weight moved onto one domain when measuring what the model learned about it.
EFFECT_SHIFT = 0.1


def _learned_effects(layout: RunLayout, target: str, domains: list[str]) -> dict[str, float] | None:
    """Per domain: the mean change of the prediction when 10% of the weight moves onto it.

    Model-agnostic (it asks the fitted model, whatever the regressor), averaged over the proxy
    mixtures: negative means more of that domain lowers the predicted target.
    """
    mixtures = _read_optional_table(layout.mixtures)
    if mixtures is None or any(d not in mixtures.columns for d in domains):
        return None
    from regmix_plugin.regression import load_model

    model = load_model(layout.model_dir)
    x = mixtures.select(domains)
    base = model.predict(x, target)
    effects = {}
    for k, name in enumerate(domains):
        moved = (1 - EFFECT_SHIFT) * x
        moved[:, k] += EFFECT_SHIFT
        effects[name] = float(np.mean(model.predict(moved, target) - base))
    return effects


def _model_section(layout: RunLayout, figs: _Figures) -> Section:
    s = Section("Regression: cross-validated fit and what it learned")
    meta = _load_json(layout.model_metadata)
    if not meta:
        s.paragraphs.append("No model yet: run `regmix fit`.")
        return s
    from regmix_plugin.regression.fitting import CV_PREDICTIONS_FILE

    domains = list(meta["domains"])
    s.paragraphs.append(f"Regressor {meta.get('regressor')} over {len(domains)} domains.")
    rows = []
    for index, (target, info) in enumerate(meta.get("targets", {}).items()):
        cv = info.get("cv", {})

        def pm(key: str, cv: Mapping[str, float] = cv) -> str:
            mean, std = cv.get(f"{key}_mean", math.nan), cv.get(f"{key}_std", math.nan)
            return f"{100 * mean:.2f} ± {100 * std:.2f}"

        mse = f"{cv.get('mse_mean', math.nan):.3g}"
        rows.append([target, str(info.get("num_rows", "")), pm("spearman"), pm("pearson"), mse])
        s.paragraphs += [f"{target}: {note}" for note in info.get("notes", [])]
        folder = layout.model_dir / info["folder"]
        cv_path = folder / CV_PREDICTIONS_FILE
        if cv_path.is_file():
            table = read_table(cv_path)
            m, p = table.column("measured"), table.column("predicted")
            s.figures.append(
                (figs.save(f"cv_{index}.png", _scatter_drawer(m, p, target), (5, 5)),
                 f"Out-of-fold predicted vs measured, {target}")
            )  # fmt: skip
        effects = _learned_effects(layout, target, domains)
        if effects is not None:
            kind = f"change of predicted {target} when {EFFECT_SHIFT:.0%} of weight moves onto it"
            s.figures.append(
                (figs.save(f"effects_{index}.png", _barh_drawer(effects, kind, target),
                           (7, 0.35 * len(effects) + 1.5)),
                 f"What the regressor learned per domain: {kind} (mean over the proxy mixtures)")
            )  # fmt: skip
    s.table = (["target", "rows", "CV Spearman ×100", "CV Pearson ×100", "CV MSE"], rows)
    return s


def _scatter_drawer(m: np.ndarray, p: np.ndarray, target: str) -> Callable[[Any], None]:
    def draw(fig: Any) -> None:
        ax = fig.add_subplot(1, 1, 1)
        ax.scatter(m, p, s=12, alpha=0.7)
        lo, hi = float(min(m.min(), p.min())), float(max(m.max(), p.max()))
        ax.plot([lo, hi], [lo, hi], "k--", lw=1)
        ax.set_xlabel("measured")
        ax.set_ylabel("predicted (out of fold)")
        ax.set_title(f"Cross-validation: {target}")

    return draw


def _barh_drawer(values: Mapping[str, float], kind: str, target: str) -> Callable[[Any], None]:
    names = list(values)
    v = np.array([values[n] for n in names])

    def draw(fig: Any) -> None:
        ax = fig.add_subplot(1, 1, 1)
        order = np.argsort(v)
        ax.barh([names[i] for i in order], v[order])
        ax.set_xlabel(kind)
        ax.set_title(f"What the regressor learned per domain: {target}")

    return draw


def _weights_section(layout: RunLayout, figs: _Figures) -> Section:
    s = Section("Chosen mixture and baselines")
    path = layout.weights
    if not path.is_file():
        s.paragraphs.append("No chosen mixture yet: run `regmix optimize`.")
        return s
    doc = _load_yaml_mapping(path)
    chosen: dict[str, float] = {str(k): float(v) for k, v in (doc.get("weights") or {}).items()}
    names = list(chosen)
    series: dict[str, np.ndarray] = {"chosen": np.array([chosen[n] for n in names])}
    evaluation = _load_json(layout.evaluation) or {}
    for label, run in (evaluation.get("runs") or {}).items():
        if label != "chosen" and isinstance(run.get("weights"), Mapping):
            series[str(label)] = np.array([float(run["weights"].get(n, 0.0)) for n in names])
    if evaluation.get("hidden_weights"):
        hidden = evaluation["hidden_weights"]
        series["planted optimum"] = np.array([float(hidden.get(n, 0.0)) for n in names])
    rows = [[n, *(_fmt(v[i], 3) for v in series.values())] for i, n in enumerate(names)]
    s.table = (["domain", *series], rows)
    predicted = doc.get("predicted") or {}
    if predicted:
        s.paragraphs.append(
            f"Predicted {doc.get('target', 'target')} ({doc.get('method', '')}): "
            + ", ".join(f"{k} {_fmt(float(v))}" for k, v in predicted.items())
        )

    def draw(fig: Any) -> None:
        ax = fig.add_subplot(1, 1, 1)
        width = 0.8 / len(series)
        for i, (label, v) in enumerate(series.items()):
            ax.bar(np.arange(len(names)) + i * width, v, width, label=label)
        ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names, rotation=45, ha="right")
        ax.set_ylabel("weight")
        ax.legend()
        ax.set_title("The chosen mixture beside the baselines")

    s.figures.append((figs.save("weights.png", draw, (9, 4)), "Chosen mixture and baselines"))
    return s


def _evaluation_section(layout: RunLayout) -> Section | None:
    evaluation = _load_json(layout.evaluation)
    if not evaluation:
        return None
    n = evaluation.get("num_seeds", 1)
    s = Section(f"Measured: proxies trained on each compared mixture ({n} seed(s))")
    runs = evaluation.get("runs", {})
    comparisons = evaluation.get("comparisons") or {}
    level = float(evaluation.get("level", 0.95))
    rows = []
    for name, r in runs.items():
        c = comparisons.get(name)
        rows.append(
            [
                name,
                _mean_std(r),
                "–" if c is None else _fmt(c["mean_difference"]),
                "–" if c is None else _interval(c.get("lo"), c.get("hi")),
                "–" if c is None else str(c["verdict"]),
                _fmt(r.get("l1_to_planted", math.nan), 3),
            ]
        )
    s.table = (
        [
            "mixture",
            "target loss, mean ± std",
            "minus chosen (paired)",
            f"{level:.0%} interval",
            "chosen",
            "L1 to planted optimum",
        ],
        rows,
    )
    s.paragraphs.append(
        f"Seeds {evaluation.get('seeds', [])}; interval: {evaluation.get('interval', 'paired')}. "
        "The chosen mixture beats a baseline only where the interval excludes zero."
    )
    if "chosen_beats_all" in evaluation:
        verdict = "beats" if evaluation["chosen_beats_all"] else "does NOT beat"
        s.paragraphs.append(
            f"The chosen mixture {verdict} every baseline on the measured target loss."
        )
    return s


def _rounds_section(layout: RunLayout) -> Section | None:
    """``sample.strategy: active``: the mixtures each round added, and how the chosen mixture
    (before the round's picks) and its interval moved round by round."""
    record = _load_json(layout.rounds)
    if not record or not isinstance(record.get("rounds"), list):
        return None
    s = Section("Rounds of the active design")
    rows = []
    for e in record["rounds"]:
        ids = list(e.get("ids", []))
        added = f"{len(ids)}: " + ", ".join(ids[:4]) + (" …" if len(ids) > 4 else "")
        chosen = e.get("chosen") or {}
        top = sorted(chosen.items(), key=lambda kv: -kv[1])[:4]
        interval = e.get("interval")
        rows.append(
            [
                str(e.get("round", "?")),
                added if ids else "0" + (f" ({e['stopped']})" if e.get("stopped") else ""),
                ", ".join(f"{n} {w:.3f}" for n, w in top) if top else "– (Dirichlet design)",
                _fmt(e.get("predicted", math.nan)),
                "–" if not interval else f"[{_fmt(interval[0])}, {_fmt(interval[1])}]",
            ]
        )
    rows += _final_round_row(layout)
    s.table = (
        ["round", "mixtures added", "chosen before the round (largest weights)", "predicted",
         "interval (ensemble)"],
        rows,
    )  # fmt: skip
    s.paragraphs.append(
        "Round 0 is the Dirichlet design; each later round's chosen mixture and interval come from "
        "the ensemble fitted on the runs finished before it, which then picked the round's "
        "mixtures (batch Thompson sampling over the members, docs/active.md). The final answer "
        "is the optimize stage's, fitted on every round."
    )
    if record.get("stopped"):
        s.paragraphs.append(f"The rounds stopped early: {record['stopped']}.")
    return s


def _final_round_row(layout: RunLayout) -> list[list[str]]:
    """The optimize stage's answer on every round's runs, as the rounds table's last row."""
    if not layout.weights.is_file():
        return []
    doc = _load_yaml_mapping(layout.weights)
    weights = doc.get("weights") or {}
    top = sorted(weights.items(), key=lambda kv: -float(kv[1]))[:4]
    chosen = ((doc.get("uncertainty") or {}).get("predicted") or {}).get("chosen") or {}
    predicted = (doc.get("predicted") or {}).get("chosen", math.nan)
    interval = "–"
    if "lo" in chosen and "hi" in chosen:
        interval = f"[{_fmt(float(chosen['lo']))}, {_fmt(float(chosen['hi']))}] (predictive)"
    return [
        [
            "final (optimize)",
            "–",
            ", ".join(f"{n} {float(w):.3f}" for n, w in top),
            _fmt(float(predicted)),
            interval,
        ]
    ]


def _mean_std(r: Mapping[str, Any]) -> str:
    mean = r.get("mean", r.get("target_loss"))
    if mean is None:
        return "not measured"
    std = r.get("std")
    return _fmt(float(mean)) + ("" if std is None else f" ± {_fmt(float(std))}")


def _interval(lo: Any, hi: Any) -> str:
    if lo is None or hi is None:
        return "– (one seed)"
    return f"[{float(lo):+.4f}, {float(hi):+.4f}]"


# -- the answer first ------------------------------------------------------------------------------


@dataclass
class _Predicted:
    """The model's view of the chosen mixture and the baselines."""

    point: dict[str, float]
    """label -> the predicted target (weights.yaml)."""
    interval: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    """label -> (mean, lo, hi) of the ensemble's predictive interval (with members only)."""
    beats: dict[str, float] = field(default_factory=dict)
    """baseline -> share of members predicting the chosen mixture lower (ties half)."""


def _predicted(layout: RunLayout, doc: Mapping[str, Any], level: float) -> _Predicted:
    """Predictions of the chosen mixture and the optimizer's baselines; with a model whose
    targets have ensemble members (``num_members`` / ``predict_members`` /
    ``predict_interval``), their intervals and the paired probabilities of beating."""
    target = doc.get("target")
    predicted = doc.get("predicted") or {}
    labels = ["chosen", *(doc.get("baselines") or {})]
    out = _Predicted(point={k: float(predicted[k]) for k in labels if k in predicted})
    if target is None or not layout.model_metadata.is_file():
        return out
    from regmix_plugin.regression import load_model

    try:
        model = load_model(layout.model_dir)
    except RegMixError as exc:
        log.warning("report: no intervals, the model does not load: %s", exc)
        return out
    members_of = getattr(model, "num_members", None)
    if target not in model.targets and doc.get("objective"):
        return _objective_predicted(out, doc)
    if members_of is None or target not in model.targets or members_of(target) < 2:
        return out
    weights = {"chosen": doc.get("weights") or {}}
    weights.update({k: b.get("weights") or {} for k, b in (doc.get("baselines") or {}).items()})
    x = np.array([[float(weights[k].get(d, 0.0)) for d in model.domains] for k in labels])
    mean, lo, hi = getattr(model, "predict_interval")(x, target, level=level)  # noqa: B009
    members = np.asarray(getattr(model, "predict_members")(x, target))  # noqa: B009
    for i, k in enumerate(labels):
        out.interval[k] = (float(mean[i]), float(lo[i]), float(hi[i]))
        if i:
            wins = (members[:, 0] < members[:, i]).mean() + 0.5 * (
                members[:, 0] == members[:, i]
            ).mean()
            out.beats[k] = float(wins)
    return out


def _objective_predicted(out: _Predicted, doc: Mapping[str, Any]) -> _Predicted:
    """An objective is no fitted target: its intervals are those ``optimize`` wrote."""
    u = doc.get("uncertainty") or {}
    for k, p in (u.get("predicted") or {}).items():
        out.interval[k] = (float(p["mean"]), float(p["lo"]), float(p["hi"]))
    out.beats.update({k: float(v) for k, v in (u.get("probability_chosen_beats") or {}).items()})
    return out


def _objective_section(layout: RunLayout) -> Section | None:
    """The objective, each constraint (does it hold, does it bind at the chosen mixture) and
    each target's predicted change against the references (only with an objective or
    constraints)."""
    from regmix_plugin.objectives import objective_table

    if not layout.weights.is_file():
        return None
    summary = _load_yaml_mapping(layout.weights).get("objective")
    if not isinstance(summary, Mapping):
        return None
    paragraphs, table = objective_table(summary)
    return Section("Objective and constraints", paragraphs=paragraphs, table=table)


def _noise(layout: RunLayout, target: str | None) -> dict[str, Any] | None:
    """The target's seed noise from the model's metadata (fitted with replicates), if any."""
    meta = _load_json(layout.model_metadata) or {}
    info = (meta.get("targets") or {}).get(target) if target else None
    noise = info.get("noise") if isinstance(info, Mapping) else None
    if isinstance(noise, Mapping) and noise.get("sigma") is not None:
        return dict(noise)
    return None


def _answer_section(layout: RunLayout, cfg: ReportConfig) -> Section:
    s = Section("The answer")
    if not layout.weights.is_file():
        s.paragraphs.append("No recommended mixture yet: run `regmix optimize`.")
        return s
    doc = _load_yaml_mapping(layout.weights)
    target = doc.get("target")
    weights = {str(k): float(v) for k, v in (doc.get("weights") or {}).items()}
    s.paragraphs.append(
        "Recommended mixture: "
        + ", ".join(f"{k} {_fmt(v, 3)}" for k, v in sorted(weights.items(), key=lambda kv: -kv[1]))
    )
    pred = _predicted(layout, doc, cfg.interval_level)
    if "chosen" in pred.interval:
        mean, lo, hi = pred.interval["chosen"]
        s.paragraphs.append(
            f"Predicted {target}: {_fmt(pred.point.get('chosen', mean))} (ensemble mean "
            f"{_fmt(mean)}, {cfg.interval_level:.0%} interval [{_fmt(lo)}, {_fmt(hi)}])."
        )
    elif "chosen" in pred.point:
        s.paragraphs.append(
            f"Predicted {target}: {_fmt(pred.point['chosen'])} (no interval: the model was "
            "fitted without an ensemble)."
        )
    if pred.beats:
        s.paragraphs.append(
            "Probability that the chosen mixture beats each baseline (paired over the "
            "ensemble's members): " + ", ".join(f"{k} {v:.0%}" for k, v in pred.beats.items()) + "."
        )
    s.paragraphs += _noise_lines(_noise(layout, target), target, cfg.min_snr)
    s.paragraphs += _transfer_lines(_load_json(layout.transfer))
    s.paragraphs += _evaluation_lines(_load_json(layout.evaluation))
    return s


def _noise_lines(noise: Mapping[str, Any] | None, target: Any, min_snr: float) -> list[str]:
    if noise is None:
        return []
    sigma, snr = float(noise["sigma"]), float(noise["snr"])
    line = (
        f"Proxy seed noise of {target}: sigma {_fmt(sigma)} (from {noise.get('num_groups')} "
        f"replicated mixtures); signal-to-noise {snr:.1f} (spread across mixtures "
        f"{_fmt(float(noise.get('spread', math.nan)))} over sigma)."
    )
    if snr < min_snr:
        line += (
            f" Warning: signal-to-noise {snr:.1f} is below {min_snr}: the target is too "
            "noisy to regress on; train the proxies longer, on more tokens, or pick a target "
            "that the mixture moves more."
        )
    return [line]


def _transfer_lines(record: Mapping[str, Any] | None) -> list[str]:
    if not record:
        return []
    iv = record.get("interval") or {}
    rank = record.get("chosen_rank") or {}
    line = (
        f"Rank transfer to the larger proxy: Spearman rho {_fmt(record.get('spearman_rho'), 3)}, "
        f"{float(iv.get('level', 0.9)):.0%} interval [{_fmt(iv.get('lo'), 3)}, "
        f"{_fmt(iv.get('hi'), 3)}] over {rank.get('of')} mixtures; the chosen mixture ranks "
        f"{rank.get('small')} at the sweep's scale and {rank.get('large')} at the larger one."
    )
    if record.get("proxies_too_small"):
        line += (
            f" The proxies are too small for this target: the lower end of the interval is "
            f"below {record.get('min_rho')}."
        )
    return [line]


def _evaluation_lines(ev: Mapping[str, Any] | None) -> list[str]:
    if not ev or "runs" not in ev:
        return []
    comparisons = ev.get("comparisons") or {}
    parts = []
    for name, r in ev["runs"].items():
        text = f"{name} {_mean_std(r)}"
        c = comparisons.get(name)
        if c is not None:
            text += f" ({c['verdict']}: {name} - chosen {_interval(c.get('lo'), c.get('hi'))})"
        parts.append(text)
    return [
        f"Measured {ev.get('target')} with {ev.get('num_seeds', 1)} seed(s), mean ± std: "
        + "; ".join(parts)
        + "."
    ]


def _epochs_section(layout: RunLayout, catalogue: Catalogue | None) -> Section:
    s = Section("Implied epochs per domain")
    manifest = _load_json(layout.blend_manifest)
    if not manifest or "epochs" not in manifest:
        s.paragraphs.append("No blend configs yet: run `regmix emit`.")
        return s
    s.paragraphs.append(f"For a run of {int(manifest.get('num_tokens', 0)):,} tokens.")
    caps: dict[str, float | None] = {}
    if catalogue is not None:
        caps = {d.name: d.max_epochs for d in catalogue.domains}
    blend_weights = _load_yaml_mapping(layout.blend_weights).get("weights") or {}
    rows = []
    for name, epochs in manifest["epochs"].items():
        cap = caps.get(name)
        weight = blend_weights.get(name)
        rows.append(
            [name, "–" if weight is None else _fmt(float(weight), 4), _fmt(float(epochs), 3),
             "–" if cap is None else _fmt(float(cap), 1)]
        )  # fmt: skip
    s.table = (["domain", "weight", "epochs", "cap"], rows)
    s.paragraphs += [f"Warning: {w}" for w in manifest.get("warnings", [])]
    return s


def _schedule_section(layout: RunLayout) -> Section | None:
    """The chosen phase schedule (``weights.yaml``'s ``schedule``): weights and epochs of each
    domain per phase and in total, and the best single mixture of the same search."""
    doc = _load_yaml_mapping(layout.weights)
    sched = doc.get("schedule")
    if not isinstance(sched, Mapping):
        return None
    s = Section("The chosen schedule")
    phases = [str(p) for p in sched.get("phases") or []]
    shares = [float(x) for x in sched.get("shares") or []]
    mixtures = sched.get("mixtures") or {}
    epochs = sched.get("epochs") or {}
    s.paragraphs.append(
        "Phases (share of the run's tokens): "
        + ", ".join(f"{p} {_fmt(x, 3)}" for p, x in zip(phases, shares, strict=False))
        + "."
    )
    pred = doc.get("predicted") or {}
    if "chosen" in pred and "best_single_mixture" in pred:
        s.paragraphs.append(
            f"Predicted {doc.get('target')}: schedule {_fmt(float(pred['chosen']))}, best single "
            f"mixture of the same search {_fmt(float(pred['best_single_mixture']))}."
        )
    single = sched.get("best_single_mixture") or {}
    header = ["domain", *(f"w {p}" for p in phases), *(f"epochs {p}" for p in phases)]
    header += ["epochs total", "best single w"]
    rows = []
    for name, e in epochs.items():
        rows.append(
            [
                str(name),
                *(_fmt(float((mixtures.get(p) or {}).get(name, 0.0)), 4) for p in phases),
                *(_fmt(float(e.get(p, 0.0)), 3) for p in phases),
                _fmt(float(e.get("total", 0.0)), 3),
                _fmt(float(single.get(name, 0.0)), 4) if single else "–",
            ]
        )
    s.table = (header, rows)
    return s


def _load_yaml_mapping(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = parse_yaml(read_text_file(path, "artifact"), str(path))
    except ConfigError as exc:
        raise DataError(str(exc)) from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a YAML mapping, got {type(data).__name__}")
    return data


def _blend_section(layout: RunLayout, cfg: ReportConfig) -> Section:
    s = Section("Blend configs to copy")
    folder = layout.blend_dir
    manifest = _load_json(layout.blend_manifest)
    if not manifest:
        s.paragraphs.append("No blend configs yet: run `regmix emit`.")
        return s
    for name in manifest.get("files", []):
        p = folder / name
        if not p.is_file() or p == layout.blend_manifest:
            continue
        text = p.read_text(encoding="utf-8", errors="replace")
        if len(text) > cfg.max_blend_chars:
            text = text[: cfg.max_blend_chars] + f"\n... (cut; the whole file is {p})"
        s.code.append((f"{folder.name}/{name}", text))
    return s


def _load_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError:
        log.warning("%s is not valid JSON; left out of the report", path)
        return None
    return data if isinstance(data, dict) else None


# -- the stage -------------------------------------------------------------------------------------


def write_report(
    layout: RunLayout, cfg: ReportConfig, *, catalogue: Catalogue | None = None
) -> tuple[Path, Path]:
    """Write the HTML report and its Markdown twin (and their figures) into the run folder.

    ``catalogue`` gives the epoch caps for the epochs table. A folder holding none of a run's
    artifacts is a :class:`DataError` (a report of nothing helps nobody).
    """
    run = layout.root
    if not run.is_dir():
        raise DataError(f"run directory {str(run)!r} does not exist; pass the run_dir of a study")
    if not any(p.exists() for p in (layout.mixtures, layout.model_dir, layout.weights)):
        raise DataError(
            f"{run} holds no artifact of a study (no {layout.mixtures.name}, "
            f"{layout.model_dir.name}/ or {layout.weights.name}); pass a study's run_dir, or run "
            "`regmix run CONFIG` first"
        )
    figs = _Figures(layout.report_files)
    sections: list[Section] = []
    for build in (
        lambda: _answer_section(layout, cfg),
        lambda: _objective_section(layout),
        lambda: _schedule_section(layout),
        lambda: _design_section(layout, figs),
        lambda: _rounds_section(layout),
        lambda: _model_section(layout, figs),
        lambda: _weights_section(layout, figs),
        lambda: _evaluation_section(layout),
        lambda: _epochs_section(layout, catalogue),
        lambda: _blend_section(layout, cfg),
    ):
        try:
            section = build()
        except RegMixError as exc:  # a broken artifact shows in the report, never kills it
            section = Section("(section failed)", paragraphs=[str(exc)])
        if section is not None:
            sections.append(section)
    html_path, md_path = layout.report_html, layout.report_markdown
    atomic_write_text(html_path, _to_html(cfg.title, sections))
    atomic_write_text(md_path, _to_markdown(cfg.title, sections))
    return html_path, md_path
