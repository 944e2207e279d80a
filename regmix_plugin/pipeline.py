"""``regmix run``: every stage in order, into one run directory, resumable after a kill.

Stages, each the module's own function with the previous stage's artifact::

    data (only with a ``synthetic`` section) -> domains -> sample -> sweep -> collect -> fit
      -> optimize -> emit -> evaluate (only with an ``evaluate`` section) -> report

A stage that finishes writes ``<run_dir>/stages/<stage>.json`` last, holding a fingerprint of the
config sections it reads and of its input files. On a rerun a stage whose marker matches is
skipped; a changed config or input reruns it and everything after it. Stages are resumable inside
as well: the sweep never retrains a finished proxy, every file is written atomically.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from regmix_plugin.config import from_dict, load_study, resolve_path, to_dict
from regmix_plugin.errors import ConfigError, RegMixError
from regmix_plugin.io import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

STAGES = (
    "data",
    "domains",
    "sample",
    "sweep",
    "collect",
    "fit",
    "optimize",
    "emit",
    "evaluate",
    "report",
)
#: Bumped when a stage's outputs change meaning, so old markers no longer match.
PIPELINE_VERSION = 1


@dataclass(kw_only=True, frozen=True)
class EvaluateConfig:
    """The ``evaluate`` section: train proxies on the chosen mixture and the baselines, compare.

    Each is trained with the study's ``proxy`` settings (the same seed as the sweep), and their
    measured ``target`` loss is compared. The best sweep proxy is not retrained: its metrics, from
    the same settings and seed, are reused.
    """

    target: str
    """Metric to compare, a column of ``results.csv`` (e.g. ``target_loss/target``)."""
    baselines: list[str] = field(default_factory=lambda: ["token_prior", "uniform", "best_proxy"])
    """Baselines to train beside the chosen mixture: token_prior, uniform, best_proxy."""

    def __post_init__(self) -> None:
        unknown = sorted(set(self.baselines) - {"token_prior", "uniform", "best_proxy"})
        if unknown:
            raise ValueError(
                f"baselines {unknown} are unknown; choose from token_prior, uniform, best_proxy"
            )


@dataclass(frozen=True)
class Stage:
    """One stage: its config sections, its input artifacts (run-dir relative) and its action."""

    name: str
    sections: tuple[str, ...]
    inputs: tuple[str, ...]
    action: Callable[[Context], dict[str, Any]]


@dataclass
class Context:
    """What every stage sees: the study, its config file and the run directory."""

    study: dict[str, Any]
    config_path: Path
    run_dir: Path
    dry_run: bool = False


# -- stage actions ---------------------------------------------------------------------------------


def _data(ctx: Context) -> dict[str, Any]:
    from regmix_plugin.synthetic import SyntheticConfig, generate

    cfg = from_dict(SyntheticConfig, ctx.study["synthetic"], "synthetic")
    corpus = generate(cfg, ctx.study["_config_dir"])
    return {"num_tokens": corpus.num_tokens, "hidden_weights": corpus.hidden_weights}


def _domains(ctx: Context) -> dict[str, Any]:
    from regmix_plugin.domains import format_catalogue, load_catalogue

    catalogue = load_catalogue(ctx.study)
    text = format_catalogue(catalogue)
    atomic_write_text(ctx.run_dir / "domains.txt", text + "\n")
    print(text)
    return {"domains": catalogue.names, "num_tokens": catalogue.token_counts().tolist()}


def _sample(ctx: Context) -> dict[str, Any]:
    from regmix_plugin.mixtures import sample_study

    path = sample_study(ctx.study, ctx.run_dir)
    return {"mixtures": str(path.name)}


def _sweep(ctx: Context) -> dict[str, Any]:
    from regmix_plugin.sweep.runner import run_sweep

    result = run_sweep(ctx.study, config_path=ctx.config_path)
    if not result.ok:
        status = result.status
        failed = [r.mixture_id for r in status.by_state("failed")]
        if not failed:
            raise RegMixError(
                f"the sweep is submitted and not finished ({len(status.by_state('done'))} of "
                f"{status.num_total} runs done; sweep.wait is false): follow it with `regmix "
                f"status {ctx.run_dir}` and rerun `regmix run` when it is done"
            )
        raise RegMixError(
            f"the sweep did not finish: {len(failed)} failed run(s) {failed[:5]}; see "
            f"`regmix status {ctx.run_dir}` and the runs' train.log, then rerun `regmix run` "
            "(finished proxies are kept)"
        )
    return {"num_runs": result.status.num_total}


def _collect(ctx: Context) -> dict[str, Any]:
    from regmix_plugin.sweep.collect import collect_runs, write_results

    collected = collect_runs(ctx.run_dir / "sweep")
    write_results(collected, ctx.run_dir / "results.csv")
    return {"num_complete": collected.num_complete}


def _fit_config(study: Mapping[str, Any]) -> Any:
    from regmix_plugin.regression import FitConfig

    return from_dict(FitConfig, study.get("fit") or {}, "fit")


def _fit(ctx: Context) -> dict[str, Any]:
    from regmix_plugin.regression import fit
    from regmix_plugin.tables import read_table

    cfg = _fit_config(ctx.study)
    mixtures = read_table(ctx.run_dir / "mixtures.csv")
    results = read_table(ctx.run_dir / "results.csv")
    summary = fit(mixtures, results, list(cfg.targets), cfg, ctx.run_dir / "model")
    return {"targets": [t.target for t in summary.targets]}


def _optimize(ctx: Context) -> dict[str, Any]:
    from regmix_plugin.optimize import optimize_study

    result = optimize_study(
        ctx.study,
        model_dir=ctx.run_dir / "model",
        out=ctx.run_dir / "weights.yaml",
        results_path=ctx.run_dir / "results.csv",
        mixtures_path=ctx.run_dir / "mixtures.csv",
    )
    return {"weights": dict(result.weights)}


def _emit(ctx: Context) -> dict[str, Any]:
    from regmix_plugin.emit import emit_study

    result = emit_study(ctx.study, weights_path=ctx.run_dir / "weights.yaml")
    for line in result.warnings:
        log.warning("%s", line)
    return {"files": [p.name for p in result.files]}


def _evaluate(ctx: Context) -> dict[str, Any]:
    from regmix_plugin.domains import load_catalogue
    from regmix_plugin.mixtures import load_weights_yaml, mixture_id
    from regmix_plugin.proxy.train import train_proxy
    from regmix_plugin.tables import read_table

    cfg = from_dict(EvaluateConfig, ctx.study["evaluate"], "evaluate")
    catalogue = load_catalogue(ctx.study)
    names = catalogue.names
    results = read_table(ctx.run_dir / "results.csv")
    if cfg.target not in results.columns:
        raise ConfigError(
            f"evaluate.target {cfg.target!r} is not a column of results.csv; "
            f"choose one of {results.columns}"
        )
    candidates: dict[str, dict[str, float]] = {
        "chosen": load_weights_yaml(ctx.run_dir / "weights.yaml")
    }
    if "token_prior" in cfg.baselines:
        shares = catalogue.token_shares()
        candidates["token_prior"] = dict(zip(names, map(float, shares), strict=True))
    if "uniform" in cfg.baselines:
        candidates["uniform"] = {n: 1.0 / len(names) for n in names}
    runs: dict[str, dict[str, Any]] = {}
    if "best_proxy" in cfg.baselines:
        column = results.column(cfg.target)
        if np.all(np.isnan(column)):
            raise RegMixError(f"results.csv has no measured {cfg.target!r}: nothing to compare")
        best = int(np.nanargmin(column))
        mixtures = read_table(ctx.run_dir / "mixtures.csv")
        best_id = results.ids[best]
        row = mixtures.row(best_id)
        runs["best_proxy"] = {
            "mixture_id": best_id,
            "weights": dict(zip(mixtures.columns, map(float, row), strict=True)),
            "target_loss": float(column[best]),
            "trained": "reused from the sweep (same settings and seed)",
        }
    for label, weights in candidates.items():
        mid = mixture_id(weights)
        metrics = train_proxy(ctx.study, weights, mid, ctx.run_dir / "evaluate" / label)
        runs[label] = {
            "mixture_id": mid,
            "weights": weights,
            "target_loss": float(metrics["metrics"][cfg.target]),
            "trained": "trained now",
        }
    out: dict[str, Any] = {"target": cfg.target, "runs": runs}
    hidden = _hidden_weights(ctx)
    if hidden is not None:
        out["hidden_weights"] = hidden
        for r in runs.values():
            r["l1_to_planted"] = float(
                sum(abs(r["weights"].get(n, 0.0) - hidden[n]) for n in hidden)
            )
    chosen = runs["chosen"]["target_loss"]
    others = {k: v["target_loss"] for k, v in runs.items() if k != "chosen"}
    out["chosen_beats_all"] = bool(all(chosen < v for v in others.values()))
    atomic_write_json(ctx.run_dir / "evaluation.json", out)
    print(_format_evaluation(out))
    return {"chosen_beats_all": out["chosen_beats_all"]}


def _hidden_weights(ctx: Context) -> dict[str, float] | None:
    if "synthetic" not in ctx.study:
        return None
    from regmix_plugin.synthetic import SyntheticConfig

    cfg = from_dict(SyntheticConfig, ctx.study["synthetic"], "synthetic")
    return dict(cfg.hidden_weights)


def _format_evaluation(ev: Mapping[str, Any]) -> str:
    lines = [f"measured {ev['target']} of proxies trained on each mixture:"]
    for name, r in ev["runs"].items():
        extra = f"  L1 to planted optimum {r['l1_to_planted']:.3f}" if "l1_to_planted" in r else ""
        lines.append(f"  {name:<12} {r['target_loss']:.4f}{extra}")
    lines.append(
        "the chosen mixture "
        + ("beats" if ev["chosen_beats_all"] else "does NOT beat")
        + " every baseline"
    )
    return "\n".join(lines)


def _report(ctx: Context) -> dict[str, Any]:
    from regmix_plugin.report import ReportConfig, write_report

    cfg = from_dict(ReportConfig, ctx.study.get("report") or {}, "report")
    html_path, md_path = write_report(ctx.run_dir, cfg, study=ctx.study)
    print(f"report: {html_path}")
    return {"html": html_path.name, "markdown": md_path.name}


PIPELINE: tuple[Stage, ...] = (
    Stage("data", ("synthetic",), (), _data),
    Stage("domains", ("domains",), (), _domains),
    Stage("sample", ("domains", "sample"), (), _sample),
    Stage("sweep", ("domains", "proxy", "sweep"), ("mixtures.csv",), _sweep),
    Stage("collect", ("sweep",), ("mixtures.csv",), _collect),
    Stage("fit", ("fit",), ("mixtures.csv", "results.csv"), _fit),
    Stage("optimize", ("domains", "optimize"), ("model", "results.csv"), _optimize),
    Stage("emit", ("domains", "emit"), ("weights.yaml",), _emit),
    Stage("evaluate", ("domains", "proxy", "evaluate"), ("weights.yaml", "results.csv"), _evaluate),
    Stage("report", ("report",), (), _report),
)
assert tuple(s.name for s in PIPELINE) == STAGES


# -- bookkeeping -----------------------------------------------------------------------------------


def _hash_path(path: Path, h: Any) -> None:
    if path.is_dir():
        for p in sorted(path.rglob("*")):
            if p.is_file() and not p.name.startswith("."):
                h.update(str(p.relative_to(path)).encode())
                h.update(p.read_bytes())
    elif path.is_file():
        h.update(path.read_bytes())
    else:
        h.update(b"<missing>")


def stage_fingerprint(stage: Stage, ctx: Context) -> str:
    """Hash of the stage's config sections, its input files and the pipeline version."""
    h = hashlib.sha256()
    sections = {s: ctx.study.get(s) for s in stage.sections}
    h.update(
        json.dumps([PIPELINE_VERSION, stage.name, sections], sort_keys=True, default=str).encode()
    )
    for name in stage.inputs:
        h.update(name.encode())
        _hash_path(ctx.run_dir / name, h)
    return h.hexdigest()[:16]


def _marker(ctx: Context, stage: Stage) -> Path:
    return ctx.run_dir / "stages" / f"{stage.name}.json"


def stage_is_done(stage: Stage, ctx: Context) -> bool:
    """True when the stage's completion marker matches its current fingerprint."""
    path = _marker(ctx, stage)
    if not path.is_file():
        return False
    try:
        return bool(
            json.loads(path.read_text()).get("fingerprint") == stage_fingerprint(stage, ctx)
        )
    except json.JSONDecodeError:
        return False


def _applies(stage: Stage, study: Mapping[str, Any]) -> bool:
    if stage.name == "data":
        return "synthetic" in study
    if stage.name == "evaluate":
        return "evaluate" in study
    return True


def select_stages(study: Mapping[str, Any], start: str | None, stop: str | None) -> list[Stage]:
    """The stages from ``start`` to ``stop`` (inclusive) that apply to this study."""
    for value, flag in ((start, "--from"), (stop, "--to")):
        if value is not None and value not in STAGES:
            raise ConfigError(f"{flag} {value!r} is not a stage; stages are {list(STAGES)}")
    i = STAGES.index(start) if start else 0
    j = STAGES.index(stop) if stop else len(STAGES) - 1
    if i > j:
        raise ConfigError(
            f"--from {start} comes after --to {stop}; stages run in order {list(STAGES)}"
        )
    return [s for s in PIPELINE[i : j + 1] if _applies(s, study)]


def resolve_sections(study: Mapping[str, Any]) -> dict[str, Any]:
    """Build every section's dataclass up front, so a typo fails before hours of proxies.

    Returns the resolved config: every section with its defaults filled in, as plain data.
    """
    from regmix_plugin.domains import DomainsConfig
    from regmix_plugin.emit import emit_config
    from regmix_plugin.mixtures import sample_config
    from regmix_plugin.optimize import optimize_config
    from regmix_plugin.proxy.config import proxy_config
    from regmix_plugin.report import ReportConfig
    from regmix_plugin.sweep.runner import load_settings

    if "domains" not in study:
        raise ConfigError("the config has no `domains` section; name the domains and their data")
    resolved: dict[str, Any] = {"run_dir": study.get("run_dir")}
    if "synthetic" in study:
        from regmix_plugin.synthetic import SyntheticConfig

        resolved["synthetic"] = from_dict(SyntheticConfig, study["synthetic"], "synthetic")
    resolved["domains"] = from_dict(DomainsConfig, study["domains"], "domains")
    resolved["sample"] = sample_config(study)
    resolved["proxy"] = proxy_config(dict(study))
    resolved["sweep"] = load_settings(study)
    resolved["fit"] = _fit_config(study)
    resolved["optimize"] = optimize_config(study)
    resolved["emit"] = emit_config(study)
    if "evaluate" in study:
        resolved["evaluate"] = from_dict(EvaluateConfig, study["evaluate"], "evaluate")
    resolved["report"] = from_dict(ReportConfig, study.get("report") or {}, "report")
    return {k: to_dict(v) for k, v in resolved.items()}


def run_pipeline(
    config_path: str | Path,
    *,
    start: str | None = None,
    stop: str | None = None,
    dry_run: bool = False,
    force: bool = False,
) -> dict[str, Any]:
    """Run the study's stages in order; return ``{stage: "done" | "skipped" | "would run"}``."""
    config_path = Path(config_path).resolve()
    study = load_study(config_path)
    if "run_dir" not in study:
        raise ConfigError(f"{config_path}: no `run_dir`; say where the study's outputs go")
    run_dir = resolve_path(study["run_dir"], study["_config_dir"])
    ctx = Context(study, config_path, run_dir, dry_run)
    resolved = resolve_sections(study)
    stages = select_stages(study, start, stop)
    if dry_run:
        return _dry_run(ctx, stages, resolved)
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_resolved(ctx, resolved)
    outcome: dict[str, Any] = {}
    timings: dict[str, float] = {}
    for stage in stages:
        if not force and stage_is_done(stage, ctx):
            log.info("stage %s: done before, skipped", stage.name)
            outcome[stage.name] = "skipped"
            continue
        log.info("stage %s: running", stage.name)
        t0 = time.perf_counter()
        info = stage.action(ctx)
        timings[stage.name] = time.perf_counter() - t0
        atomic_write_json(
            _marker(ctx, stage),
            {
                "stage": stage.name,
                "fingerprint": stage_fingerprint(stage, ctx),
                "seconds": round(timings[stage.name], 3),
                "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "info": info,
            },
        )
        log.info("stage %s: done in %.1f s", stage.name, timings[stage.name])
        outcome[stage.name] = "done"
    if timings:
        print("stage times: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    return outcome


def _write_resolved(ctx: Context, resolved: Mapping[str, Any]) -> None:
    """The config as run (every default filled in), beside the outputs, and where it came from."""
    atomic_write_text(
        ctx.run_dir / "config.resolved.yaml",
        f"# regmix run of {ctx.config_path.name}, every default filled in; relative paths are "
        "relative to that file\n" + yaml.safe_dump(dict(resolved), sort_keys=False),
    )
    atomic_write_json(ctx.run_dir / "run.json", {"config_path": str(ctx.config_path)})


def _dry_run(ctx: Context, stages: list[Stage], resolved: Mapping[str, Any]) -> dict[str, Any]:
    print(f"# resolved config ({ctx.config_path.name}, defaults filled in), run_dir {ctx.run_dir}")
    print(yaml.safe_dump(dict(resolved), sort_keys=False).rstrip())
    outcome: dict[str, Any] = {}
    print("# stages")
    for stage in stages:
        state = "done, would skip" if stage_is_done(stage, ctx) else "would run"
        outcome[stage.name] = state
        print(f"  {stage.name:<9} {state}")
    if any(s.name == "sweep" for s in stages) and (ctx.run_dir / "mixtures.csv").is_file():
        from regmix_plugin.sweep.runner import run_sweep

        print(run_sweep(ctx.study, config_path=ctx.config_path, dry_run=True).dry_run_text)
    return outcome


def configure_run(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``regmix run``."""
    parser.add_argument("config", help="study YAML (see configs/quickstart.yaml)")
    parser.add_argument("--from", dest="start", choices=STAGES, help="first stage to run")
    parser.add_argument("--to", dest="stop", choices=STAGES, help="last stage to run")
    parser.add_argument(
        "--dry-run", action="store_true", help="print the resolved config and the stage plan"
    )
    parser.add_argument(
        "--force", action="store_true", help="rerun the selected stages even when done"
    )


def command_run(args: argparse.Namespace) -> int:
    """``regmix run CONFIG [--from STAGE] [--to STAGE] [--dry-run] [--force]``."""
    run_pipeline(
        args.config, start=args.start, stop=args.stop, dry_run=args.dry_run, force=args.force
    )
    return 0
